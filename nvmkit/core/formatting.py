"""How nvmkit writes a length of time, in the CLI and in reports alike."""

from __future__ import annotations


def duration(seconds: float) -> str:
    """``42 s``, ``12.5 min`` or ``2.25 h``: seconds below two minutes, minutes below two hours."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"
