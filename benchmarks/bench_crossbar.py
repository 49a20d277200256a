"""Speed and memory of the analog forward pass against the digital one (issue 3's Speed target).

A 784-256-128-10 ReLU MLP (random He-initialised float32 weights) classifies 10,000 inputs drawn
uniformly from [0, 1]. Timed: the digital float32 forward pass in numpy, and the analog forward
pass through nvmkit crossbars (generic device, differential pairs, bias row, 1152 x 256 tiles)
with programming error, with read noise, and with both at 2.5% of the conductance range. Each
case runs ``--repeats`` times, interleaved with the others so that load from other processes
hits every case alike; the best time counts. Ratios are to the digital pass of the same run.

Extra rows (no target, for information): state-dependent read noise (the SONOS fits, where the
output-space variance needs the extra ``x**2`` matmul) and 10 Monte Carlo trials at once (ratio
to 10 digital passes). Peak memory is measured with tracemalloc (numpy reports its buffers to
it) in a separate, untimed pass.

    python benchmarks/bench_crossbar.py            # the issue's setting
    python benchmarks/bench_crossbar.py --json     # machine-readable
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tracemalloc

import numpy as np

from nvmkit.engine.crossbar import Crossbar
from nvmkit.engine.crossbar_config import CrossbarConfig
from nvmkit_plugins.devices.generic import GenericDevice
from nvmkit_plugins.devices.sonos import SONOS

SIZES = (784, 256, 128, 10)
SIGMA = 0.025  # of the conductance range


def make_mlp(rng):
    layers = []
    for n_in, n_out in zip(SIZES[:-1], SIZES[1:]):
        w = (rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)).astype(np.float32)
        b = (0.01 * rng.standard_normal(n_out)).astype(np.float32)
        layers.append((w, b))
    return layers


def digital_forward(layers, x):
    h = x
    for i, (w, b) in enumerate(layers):
        h = h @ w
        h += b
        if i < len(layers) - 1:
            np.maximum(h, 0, out=h)
    return h


def analog_forward(programmed, x, rng):
    h = x
    for i, pc in enumerate(programmed):
        h = pc.read(h, rng)
        if i < len(programmed) - 1:
            np.maximum(h, 0, out=h)
    return h


def build(layers, device, prog: bool, read: bool, trials: int, rng):
    cfg = CrossbarConfig.from_dict({"nonideal": {"programming_error": prog, "read_noise": read}})
    return [Crossbar(w, b, device, cfg, name=f"dense{i}").program(rng, trials)
            for i, (w, b) in enumerate(layers)]


def peak_mib(fn) -> float:
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    layers = make_mlp(rng)
    x = rng.random((args.batch, SIZES[0]), dtype=np.float32)
    generic = GenericDevice(sigma_prog=SIGMA, sigma_read=SIGMA)

    t0 = time.perf_counter()
    nets = {
        "programming error": build(layers, generic, True, False, 1, rng),
        "read noise": build(layers, generic, False, True, 1, rng),
        "both": build(layers, generic, True, True, 1, rng),
    }
    program_s = (time.perf_counter() - t0) / 3
    extra = {
        "both, state-dependent read noise (SONOS)": (build(layers, SONOS(), True, True, 1, rng), 1),
        "both, 10 trials at once": (build(layers, generic, True, True, 10, rng), 10),
    }
    cases = {"digital": (lambda: digital_forward(layers, x), 1)}
    for label, net in nets.items():
        cases[label] = (lambda net=net: analog_forward(net, x[None], rng), 1)
    for label, (net, k) in extra.items():
        cases[label] = (lambda net=net: analog_forward(net, x[None], rng), k)

    best = {label: float("inf") for label in cases}
    for _ in range(args.repeats):
        for label, (fn, _) in cases.items():
            t = time.perf_counter()
            fn()
            best[label] = min(best[label], time.perf_counter() - t)
    peaks = {label: peak_mib(fn) for label, (fn, _) in cases.items()}

    dig = best["digital"]
    rows = []
    for label, (_, k) in cases.items():
        rows.append({
            "case": label,
            "seconds": best[label],
            "ratio": best[label] / (dig * k),
            "peak_MiB": peaks[label],
            "target": label in nets,
        })
    full_tensor_mib = args.batch * SIZES[0] * SIZES[1] * 4 / 2**20
    result = {
        "batch": args.batch,
        "network": "-".join(map(str, SIZES)),
        "sigma_of_range": SIGMA,
        "repeats": args.repeats,
        "programming_seconds_per_network": program_s,
        "input_MiB": x.nbytes / 2**20,
        "batch_x_rows_x_cols_MiB_first_layer": full_tensor_mib,
        "cases": rows,
        "all_targets_met": all(r["ratio"] < 3 for r in rows if r["target"]),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['network']} ReLU MLP, {args.batch} inputs in [0, 1], float32, "
              f"best of {args.repeats}; noise {SIGMA:.1%} of range")
        print(f"{'case':44s} {'time (ms)':>10s} {'ratio':>7s} {'peak MiB':>9s}")
        for r in rows:
            mark = " (target < 3)" if r["target"] else ""
            print(f"{r['case']:44s} {1e3 * r['seconds']:10.1f} {r['ratio']:7.2f} "
                  f"{r['peak_MiB']:9.1f}{mark}")
        print(f"input batch {result['input_MiB']:.1f} MiB; a batch x rows x cols tensor of the first "
              f"layer would be {full_tensor_mib:,.0f} MiB; programming one network "
              f"{1e3 * program_s:.0f} ms")
        print("all analog ratios < 3:", "yes" if result["all_targets_met"] else "NO")
    return 0 if result["all_targets_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
