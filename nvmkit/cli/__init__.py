"""The ``nvmkit`` command line: one module per command group, each a thin layer over the Python API.

Every command module registers itself on :data:`nvmkit.cli.app.app` when imported; this module
imports them all, once, and is the console script's entry point.
"""

from __future__ import annotations

from nvmkit.cli import devices, energy, plugins, reproduce, run, sweep  # noqa: F401  (registration)
from nvmkit.cli.app import app, plugins_app


def main() -> None:
    app()


__all__ = ["app", "main", "plugins_app"]
