"""Cost of an in-place training epoch against a plain Keras epoch (issue 22, point 7).

The bundled MLP (784-500-10) on MNIST, one epoch over the same images with the same batch size:
plain (the Keras model, SGD, sparse categorical cross-entropy, no XLA, ``fit``) against in-place
(``InPlaceTraining``: forward on the crossbars with read noise, backward through the transposed
crossbars with their own read noise, the update as the device's pulses, deterministic counts,
the default). Both sides are traced first (one batch each); then ``--repeats`` rounds alternate
plain and in-place epochs, so that both meet the same load of a shared machine, and the best
epoch of each side counts (medians printed too). The ratio is in-place / plain, of wall time and
of this process's CPU time.

The update model: ``--device NAME`` takes a registered device that states one; without it, a
stand-in stated here (``StandIn``: linear steps of g_range / 500 with a cycle-to-cycle spread of
30% of the step, device-to-device 10%, at most 50 pulses per update, programming and read
spreads of 1% of the range): the pulse-by-pulse path (not the closed form of a noiseless
constant step), the costly one.

    python benchmarks/bench_in_place.py                        # embedded sample (4,000 images)
    python benchmarks/bench_in_place.py --data-dir ../shared/datasets --images 60000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np


def stand_in():
    from nvmkit.core.device import Device

    class StandIn(Device):
        """A linear update model for timing only (not a physical device)."""

        name = "bench-stand-in"

        def __init__(self):
            self._set_range(1.0, 101.0)
            self.step, self.sigma = 100.0 / 500, 0.3 * 100.0 / 500
            self.pulse_step_d2d, self.max_pulses = 0.1, 50

        def pulse_step(self, g, up):
            g = np.asarray(g, np.float32)
            return np.full_like(g, self.step if up else -self.step)

        def pulse_step_sigma(self, g, up):
            return np.full_like(np.asarray(g, np.float32), self.sigma)

        def programming_sigma(self, g, t=0.0):
            return np.full_like(np.asarray(g, np.float32), 1.0)

        def read_sigma(self, g):
            return np.full_like(np.asarray(g, np.float32), 1.0)

    return StandIn()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed epochs per side")
    ap.add_argument("--images", type=int, default=4000, help="training images per epoch")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--learning-rate", type=float, default=0.05)
    ap.add_argument("--pulses", default="deterministic", choices=("deterministic", "stochastic"))
    ap.add_argument("--device", default=None, help="a registered device with an update model")
    ap.add_argument("--data-dir", default=None, help="full MNIST in the Keras cache layout")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    import keras

    from nvmkit import CrossbarConfig, get_registry, load_dataset
    from nvmkit.engine.in_place import InPlaceTraining

    reg = get_registry()
    ds = load_dataset("mnist", source="full" if args.data_dir else "sample", data_dir=args.data_dir) \
        if args.data_dir else load_dataset("mnist", source="sample")
    mapper = reg.create("network", "mlp", {})
    x = mapper.prepare(ds.x_train[: args.images])
    y = np.asarray(ds.y_train[: args.images])
    device = reg.create("device", args.device, {}) if args.device else stand_in()
    keras.utils.set_random_seed(0)
    plain = mapper.build(ds.input_shape, ds.num_classes, 0.0, 0)
    source = mapper.build(ds.input_shape, ds.num_classes, 0.0, 0)
    plain.compile(optimizer=keras.optimizers.SGD(args.learning_rate), jit_compile=False,
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    trainer = InPlaceTraining(source, device, CrossbarConfig(), seed=0, learning_rate=args.learning_rate,
                              pulses=args.pulses, calibration_data=x[:500])

    def plain_epoch(xs, ys):
        plain.fit(xs, ys, epochs=1, batch_size=args.batch_size, shuffle=True, verbose=0)

    def in_place_epoch(xs, ys):
        trainer.fit(xs, ys, epochs=1, batch_size=args.batch_size)

    sides = {"plain": plain_epoch, "in-place": in_place_epoch}
    for run in sides.values():  # trace: one batch (and the last, partial one)
        run(x[: args.batch_size], y[: args.batch_size])
        rest = len(x) % args.batch_size
        if rest:
            run(x[:rest], y[:rest])
    times: dict[str, list[float]] = {k: [] for k in sides}
    cpu: dict[str, list[float]] = {k: [] for k in sides}
    for _ in range(max(args.repeats, 1)):
        for name, run in sides.items():
            w, c = time.perf_counter(), time.process_time()
            run(x, y)
            times[name].append(time.perf_counter() - w)
            cpu[name].append(time.process_time() - c)
    best = {k: min(v) for k, v in times.items()}
    best_cpu = {k: min(v) for k, v in cpu.items()}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    row = {"network": "mlp 784-500-10", "device": device.name, "pulses": args.pulses,
           "images": len(x), "batch_size": args.batch_size,
           "plain_s": best["plain"], "in_place_s": best["in-place"],
           "ratio": best["in-place"] / best["plain"],
           "ratio_median": statistics.median(times["in-place"]) / statistics.median(times["plain"]),
           "ratio_cpu": best_cpu["in-place"] / best_cpu["plain"],
           "repeats": args.repeats, "load_1min": load}
    if args.json:
        print(json.dumps(row, indent=2))
    else:
        print(f"mlp/{device.name} ({args.pulses}): plain {row['plain_s']:.2f} s, in-place "
              f"{row['in_place_s']:.2f} s per epoch of {len(x)} images (batch {args.batch_size}): "
              f"ratio {row['ratio']:.2f} (medians {row['ratio_median']:.2f}; CPU time "
              f"{row['ratio_cpu']:.2f}); best of {args.repeats}; 1-minute load average "
              f"{load:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
