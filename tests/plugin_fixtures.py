"""Install tiny third-party plugin distributions for a test: a module plus a real ``.dist-info``
folder with ``entry_points.txt`` on ``sys.path``, so importlib.metadata finds them exactly as it
finds a pip-installed package."""

from __future__ import annotations

import contextlib
import sys
import textwrap
from pathlib import Path

TOY_DEVICE = '''
import numpy as np
from nvmkit import Device, hookimpl


class ToyDevice(Device):
    """A toy device for tests: constant programming error."""

    name = "toy"

    def __init__(self, sigma=0.01):
        self.sigma = sigma
        self._set_range(1.0, 10.0)

    def programming_sigma(self, g, t=0.0):
        return np.full_like(g, self.sigma * self.g_range)


@hookimpl
def nvmkit_devices():
    return [ToyDevice]
'''


def make_distribution(root: Path, dist: str, module: str, source: str, entry_name: str) -> Path:
    """Write ``module.py`` and ``dist-0.1.dist-info`` under ``root``; return ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[nvmkit]\n{entry_name} = {module}\n")
    return root


def activate(root: Path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(root))
    import importlib

    importlib.invalidate_caches()
    for mod in list(sys.modules):
        if mod.startswith("toy_"):
            del sys.modules[mod]


@contextlib.contextmanager
def installed(tmp_path: Path, monkeypatch, dist: str, module: str, source: str, entry_name: str):
    """A toy distribution on the path for the ``with`` block: yields the reloaded registry, then
    takes it off and reloads again (later tests must not see its plugins)."""
    from nvmkit.core.registry import get_registry

    activate(make_distribution(tmp_path / "site", dist, module, source, entry_name), monkeypatch)
    try:
        yield get_registry(reload=True)
    finally:
        monkeypatch.undo()
        get_registry(reload=True)
