"""Measurements sampled from a device model, as a lab would record them from real cells.

Used to check the fit by recovery (a model's cells, measured, must give back the model's curves)
and to make the walk-through's example file. Each cell is programmed once: G = T + sigma_P(T, t) z
with one z per cell (so a cell keeps its deviation as the spread widens), drifted to
drift(G, t), then read ``reads`` times with fresh noise of std sigma_R at every read. The engine
clips programmed states to [g_min, g_max]; real measurements are not clipped, and neither are these
(so pick targets where the model's spread keeps conductances >= 0).
"""

from __future__ import annotations

import numpy as np

from nvmkit.core.component import check_int
from nvmkit.core.errors import ConfigError
from nvmkit.fit.measurements import Measurements


def sample_measurements(device, targets, cells: int, reads: int = 1, times=(0.0,), seed: int = 0) -> Measurements:
    """``cells`` cells per target, each read ``reads`` times at every time in ``times`` (s)."""
    cells = check_int("sample_measurements", "cells", cells, minimum=1)
    reads = check_int("sample_measurements", "reads", reads, minimum=1)
    targets = np.asarray(targets, dtype=np.float64)
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or len(times) == 0 or times[0] != 0:
        raise ConfigError("sample_measurements: times must start at 0 (the programming reference)")
    rng = np.random.default_rng(seed)
    K = len(targets)
    target = np.repeat(targets, cells)  # (K * cells,)
    z = rng.standard_normal(K * cells)
    cols: dict[str, list] = {"target": [], "measured": [], "cell": [], "read": [], "time": []}
    cell_id = np.array([f"c{i}" for i in range(K * cells)])
    for t in times:
        g = target + np.asarray(device.programming_sigma(target.astype(np.float32), t), np.float64) * z
        g = np.asarray(device.drift(g, t), np.float64) if t > 0 else g
        sigma_r = np.asarray(device.read_sigma(g.astype(np.float32)), np.float64)
        measured = g[:, None] + sigma_r[:, None] * rng.standard_normal((K * cells, reads))
        cols["target"].append(np.repeat(target, reads))
        cols["measured"].append(measured.ravel())
        cols["cell"].append(np.repeat(cell_id, reads))
        cols["read"].append(np.tile(np.arange(reads), K * cells))
        cols["time"].append(np.full(K * cells * reads, t))
    data = {k: np.concatenate(v) for k, v in cols.items()}
    return Measurements(units=device.units, origin=f"sampled from device '{device.name}'", **data)
