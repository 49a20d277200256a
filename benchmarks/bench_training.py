"""Cost of device-aware training against plain training (issue 20, point 7).

For each case (the bundled MLP, CNN and RNN at their default sizes, on ReRAM and on SONOS one day
after programming, default crossbar settings), one training epoch over the same images with the same
optimizer (Adam, batch 128, sparse categorical cross-entropy, no XLA, as ``nvmkit run`` trains):
plain (the Keras model) against device-aware (``DeviceAwareTraining``: the converted graph with
the programming drawn in the graph at every mini-batch, read noise at every read). Both sides are
traced first (a one-batch epoch each); then ``--repeats`` rounds alternate plain and
device-aware epochs, so that both meet the same load of a shared machine, and the best epoch of
each side counts (the median is printed too). The ratio is device-aware / plain, of wall time and
of this process's CPU time (the latter less moved by other work on a shared machine).

    python benchmarks/bench_training.py               # the embedded MNIST sample (4,000 images)
    python benchmarks/bench_training.py --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

DAY = 86400.0
CASES = (("mlp", "reram", 0.0), ("mlp", "sonos", DAY), ("cnn", "reram", 0.0), ("cnn", "sonos", DAY),
         ("rnn", "reram", 0.0), ("rnn", "sonos", DAY))


def epoch_seconds(fit, x, y, batch_size: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one epoch."""
    wall, cpu = time.perf_counter(), time.process_time()
    fit(x, y, epochs=1, batch_size=batch_size, shuffle=True, verbose=0)
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed epochs per side and case")
    ap.add_argument("--images", type=int, default=4000, help="training images per epoch")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--only", default=None, help="run only the cases whose 'network/device' contains this")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    import keras

    from nvmkit import CrossbarConfig, get_registry, load_dataset
    from nvmkit.engine.device_aware import DeviceAwareTraining

    reg = get_registry()
    ds = load_dataset("mnist", source="sample")
    x_all, y_all = ds.x_train[: args.images], ds.y_train[: args.images]
    rows = []
    for net, dev, t in CASES:
        label = f"{net}/{dev}" + (" (1 day)" if t else "")
        if args.only and args.only not in label:
            continue
        mapper = reg.create("network", net, {})
        device = reg.create("device", dev, {})
        crossbar = CrossbarConfig.from_dict({"nonideal": {"drift_time": t}})
        x = mapper.prepare(x_all)
        keras.utils.set_random_seed(0)
        plain = mapper.build(ds.input_shape, ds.num_classes, 0.0, 0)
        twin_source = mapper.build(ds.input_shape, ds.num_classes, 0.0, 0)
        trainer = DeviceAwareTraining(twin_source, device, crossbar, seed=0, calibration_data=x[:500])
        compile_args = dict(loss="sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=False)
        plain.compile(optimizer=keras.optimizers.Adam(1e-3), **compile_args)
        trainer.compile(optimizer=keras.optimizers.Adam(1e-3), **compile_args)
        sides = {"plain": plain.fit, "device": trainer.fit}
        for fit in sides.values():  # trace: one batch
            epoch_seconds(fit, x[: args.batch_size], y_all[: args.batch_size], args.batch_size)
        times: dict[str, list[float]] = {k: [] for k in sides}
        cpu: dict[str, list[float]] = {k: [] for k in sides}
        for _ in range(max(args.repeats, 1)):
            for name, fit in sides.items():
                w, c = epoch_seconds(fit, x, y_all, args.batch_size)
                times[name].append(w)
                cpu[name].append(c)
        best = {k: min(v) for k, v in times.items()}
        best_cpu = {k: min(v) for k, v in cpu.items()}
        rows.append({"case": label, "images": len(x), "plain_s": best["plain"], "device_s": best["device"],
                     "plain_median_s": statistics.median(times["plain"]),
                     "device_median_s": statistics.median(times["device"]),
                     "ratio": best["device"] / best["plain"],
                     "ratio_median": statistics.median(times["device"]) / statistics.median(times["plain"]),
                     "plain_cpu_s": best_cpu["plain"], "device_cpu_s": best_cpu["device"],
                     "ratio_cpu": best_cpu["device"] / best_cpu["plain"]})
        if not args.json:
            r = rows[-1]
            print(f"{label:<18} plain {r['plain_s']:7.2f} s  device-aware {r['device_s']:7.2f} s  "
                  f"ratio {r['ratio']:.2f} (medians {r['ratio_median']:.2f}; CPU time "
                  f"{r['plain_cpu_s']:.2f} / {r['device_cpu_s']:.2f} s: {r['ratio_cpu']:.2f})", flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    if args.json:
        print(json.dumps({"rows": rows, "repeats": args.repeats, "load_1min": load}, indent=2))
    else:
        print(f"best of {args.repeats} epochs per side, {args.images} images, batch {args.batch_size}; "
              f"1-minute load average at the end: {load:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
