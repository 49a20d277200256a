"""A cheap stand-in point runner for the sweep tests: deterministic in the configuration, no training.

Selected with ``NVMKIT_SWEEP_RUNNER=sweep_fake:run`` (this folder on PYTHONPATH). Each call appends
one line to ``$SWEEP_FAKE_LOG`` (if set) before it sleeps ``$SWEEP_FAKE_SLEEP`` seconds, so a test can
count how many points were started and kill a sweep mid-point (``$SWEEP_FAKE_PIDS``, if set, gets the
pid of the process that ran each point); a point whose noise spec contains
``$SWEEP_FAKE_FAIL`` raises.
"""

from __future__ import annotations

import hashlib
import json
import os
import time

import numpy as np


def run(config: dict) -> dict:
    text = json.dumps(config, sort_keys=True)
    log = os.environ.get("SWEEP_FAKE_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(hashlib.sha256(text.encode()).hexdigest()[:16] + "\n")
    pids = os.environ.get("SWEEP_FAKE_PIDS")
    if pids:  # which process ran the point: a test checks that workers die with the sweep
        with open(pids, "a") as fh:
            fh.write(f"{os.getpid()}\n")
    time.sleep(float(os.environ.get("SWEEP_FAKE_SLEEP", "0")))
    noise = config.get("noise")  # the run configuration's table {name, params}, or None
    name = noise["name"] if noise else ""
    level = float(next(iter(noise["params"].values()), 0.0)) if noise else 0.0
    fail = os.environ.get("SWEEP_FAKE_FAIL")
    if fail and noise and fail in name:
        raise RuntimeError(f"fake failure on {name}:{level:g}")
    seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
    rng = np.random.default_rng(seed)
    trials = int(config.get("trials", 3))
    accuracy = {}
    base = 0.95 - 0.4 * level
    for scenario in ("digital", "internal", "external", "both"):
        if scenario in ("external", "both") and not noise:
            continue
        n = 1 if scenario == "digital" else trials
        per = (base - 0.01 * ("internal" in scenario or scenario == "both") + 0.005 * rng.standard_normal(n))
        per = [float(x) for x in per]
        m, s = float(np.mean(per)), float(np.std(per, ddof=1)) if n > 1 else 0.0
        accuracy[scenario] = {"mean": m, "std": s, "ci95": [m - 2 * s, m + 2 * s], "per_trial": per, "trials": n}
    net = config["network"]["name"]
    total = {"mlp": 4.2e-9, "rnn": 3.6e-8, "cnn": 4.8e-7}.get(net, 1e-8)
    resolved = json.loads(text)
    if noise:
        resolved["noise"] = {"name": name, "params": {"sigma": level}}
    else:
        resolved["noise"] = None
    return {
        "config": resolved,
        "seed": config.get("seed", 0),
        "dataset": {"name": config["dataset"]["name"], "sample": True, "source": "fake", "n_train": 0, "n_test": 0},
        "accuracy": accuracy,
        "energy": {"estimator": "fake", "total_J": total, "by_component_J": {"vmm": total}},
        "versions": {"nvmkit": "test"},
        "wall_time_s": 0.01,
        "nvmkit_version": "test",
    }
