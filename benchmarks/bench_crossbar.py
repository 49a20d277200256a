"""Speed of the analog forward pass against the digital one (issue 3's Speed target, issue 11's point 9).

Targets (ratio to the digital pass, issue 21, point 9): the MLP with read noise at most 1.5, the
MLP through 8-bit converters alone (no device effect; calibrated on its own inputs) at most 1.3,
the default CNN with SONOS at most 3; the other MLP cases at most 3 (issue 3).

Every case runs through the engine (``nvmkit.convert``: programming once in numpy, the read in
Keras ops) under ``tf.function`` (as ``predict`` does), against the digital forward pass of the
same Keras model timed in the same run (the faster of Keras and, for the MLP, numpy). Cases: a
784-256-128-10 ReLU MLP (random He-initialised float32 weights) on 10,000 inputs drawn uniformly
from [0, 1] with programming error, read noise and both at 2.5% of the conductance range
(generic device, differential pairs, bias row, 1152 x 256 tiles; the targets), state-dependent
read noise (the SONOS fits, where the output-space variance needs the extra ``x**2`` product),
the same with the IR drop of 0.5-ohm wire segments on 256 x 256 tiles (SONOS; issue 21's target:
at most 3x the digital pass), 10 Monte Carlo trials at once on the 10,000 inputs, the default CNN (32-64 conv, dense 128), a small ResNet-style CNN
and a two-layer LSTM on 28 x 28 inputs. ``--mnist-eval`` adds the full 10,000-image evaluation
of the default CNN with 10 trials.

Timing: each case's analog pass and its digital candidates run in turn, ``--repeats // 2`` rounds
(at least 2) after one warm-up call each, and the best time of each counts: interleaving puts both
sides under the same load of a shared machine (timed one after the other, a load change between
them moved a ratio by nearly 2x). Each timed call starts 0.3 s after the previous one ended, so
that numpy's spinning BLAS threads do not steal the cores of the TensorFlow call after them
(``--settle``). Every timed call does the whole work of its side. With ``K``
trials the analog pass reads ``B * K`` rows; its digital baseline is the faster of ``K`` digital
passes over the ``B`` inputs, timed as one block, and one digital pass over the same ``B * K``
rows (each in Keras and, for the MLP, numpy): the same work as the analog pass, timed as it is
(not ``K`` times the best single pass).

The numpy engine these ratios were once compared with is gone (issue 11, point 7: one engine);
``benchmarks/compare_numpy_engine.py`` runs its benchmark from its last commit next to this one's.

The ``CPU`` column is the same ratio in CPU time (all threads of the process, best of the
rounds): on a machine shared with other work the wall times of both sides move with the load,
by up to 2x, while the CPU time a pass takes moves much less. ``--only TEXT...`` keeps the cases
whose name contains one of the texts; ``--compare-ops FILE`` also times each case with the read
path of another version of ``nvmkit/engine/ops.py`` in the same rounds (a before/after of a
change to the read path).

    python benchmarks/bench_crossbar.py            # the issue's setting
    python benchmarks/bench_crossbar.py --json     # machine-readable
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from nvmkit.engine.crossbar_config import CrossbarConfig
from nvmkit_plugins.devices.generic import GenericDevice
from nvmkit_plugins.devices.sonos import SONOS

SIZES = (784, 256, 128, 10)
SIGMA = 0.025  # of the conductance range
# Pause before every timed call (--settle). numpy's BLAS (OpenBLAS) keeps its worker threads
# spinning for a while after a matrix product returns; a TensorFlow call started in that window
# shares the cores with them, so without the pause whichever side follows numpy is penalised (the
# analog side, in the interleaving below). `--settle 0` shows the effect (README, Performance).
SETTLE_SECONDS = 0.3


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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--mnist-eval", action="store_true",
                    help="also time 10,000 images x 10 trials of the default CNN")
    ap.add_argument("--data-dir", default=None,
                    help="folder with the full mnist.npz for --mnist-eval (default: nvmkit's search; "
                         "the embedded 1,000-image sample if none)")
    ap.add_argument("--mnist-only", action="store_true", help="with --mnist-eval: only that timing")
    ap.add_argument("--mlp-only", action="store_true",
                    help="only the MLP cases (benchmarks/compare_numpy_engine.py runs these)")
    ap.add_argument("--only", nargs="+", default=None, metavar="TEXT",
                    help="only the cases whose name contains one of these texts (e.g. '8-bit' 'CNN both')")
    ap.add_argument("--settle", type=float, default=SETTLE_SECONDS,
                    help="seconds to wait before each timed call (default 0.3; see SETTLE_SECONDS)")
    ap.add_argument("--before", action="store_true",
                    help="also time, in the same rounds, the cases issue 21 sped up as they were before it: "
                         "the MLP's converters with the straight-through expression built at inference, "
                         "and the noisy passes with the former sampler (48 bits a pair, whole draws)")
    ap.add_argument("--compare-ops", default=None, metavar="FILE",
                    help="also time, in the same rounds, each case with the read path of another version "
                         "of nvmkit/engine/ops.py (e.g. `git show COMMIT:nvmkit/engine/ops.py > ops_then.py`): "
                         "its read, read_conv and quantize traced in place of today's")
    ap.add_argument("--noise-parts", action="store_true",
                    help="also time where the MLP read-noise pass spends its time: the pass with its "
                         "noise replaced by ones after drawing the same random words, and by ones alone")
    args = ap.parse_args(argv)
    if args.settle < 0:
        ap.error("--settle must be 0 or more seconds")

    rng = np.random.default_rng(args.seed)
    layers = make_mlp(rng)
    rows = keras_engine_cases(args, layers, rng)
    result = {
        "batch": args.batch,
        "network": "-".join(map(str, SIZES)),
        "sigma_of_range": SIGMA,
        "repeats": max(2, args.repeats // 2),
        "cases": rows,
        "all_targets_met": all(r["ratio"] <= r["target"] for r in rows if r.get("target")),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"engine (nvmkit.convert), best of {result['repeats']}; noise {SIGMA:.1%} of range; "
              "ratio to the digital pass of the same model")
        print(f"{'case':46s} {'digital ms':>10s} {'analog ms':>10s} {'ratio':>6s} {'CPU':>5s}  digital baseline")
        for r in rows:
            mark = f" (target <= {r['target']:g})" if r.get("target") else ""
            dig = "-" if r["digital_seconds"] is None else f"{1e3 * r['digital_seconds']:.1f}"
            ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
            cpu_ratio = f"{r['cpu_ratio']:.2f}" if r.get("cpu_ratio") else "-"
            print(f"{r['case']:46s} {dig:>10s} {1e3 * r['seconds']:10.1f} "
                  f"{ratio:>6s} {cpu_ratio:>5s}  {r.get('digital_baseline', '')}{mark}")
        print("all target ratios met:", "yes" if result["all_targets_met"] else "NO")
    return 0 if result["all_targets_met"] else 1


def keras_engine_cases(args, layers, rng) -> list[dict]:
    """The same physics through converted Keras models (see the module docstring)."""
    import keras
    import tensorflow as tf

    from nvmkit.engine.convert import convert, repeat_trials

    L = keras.layers
    repeats = max(2, args.repeats // 2)

    cpu: dict = {}  # the best CPU time (all threads) of each callable of the last best_interleaved

    def best_interleaved(fns):
        """Best time of each callable, the callables run in turn (see the module docstring);
        the best CPU time of each is left in ``cpu``."""
        cpu.clear()
        for fn in fns.values():
            fn()  # trace / warm up
        times = {name: float("inf") for name in fns}
        for _ in range(repeats):
            for name, fn in fns.items():
                time.sleep(args.settle)  # let the previous call's thread pool go idle
                c, t = time.process_time(), time.perf_counter()
                fn()
                t, c = time.perf_counter() - t, time.process_time() - c
                times[name] = min(times[name], t)
                cpu[name] = min(cpu.get(name, float("inf")), c)
        return times

    mlp = keras.Sequential([keras.Input((SIZES[0],)), L.Dense(SIZES[1], activation="relu"),
                            L.Dense(SIZES[2], activation="relu"), L.Dense(SIZES[3])])
    mlp.set_weights([a for wb in layers for a in wb])
    cnn = keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(32, 3, activation="relu"),
                            L.MaxPooling2D(), L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(),
                            L.Flatten(), L.Dense(128, activation="relu"), L.Dense(10)])
    inp = keras.Input((28, 28, 1))
    h = L.ReLU()(L.BatchNormalization()(L.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(inp)))
    for _ in range(2):
        r = L.ReLU()(L.BatchNormalization()(L.Conv2D(16, 3, padding="same", use_bias=False)(h)))
        r = L.BatchNormalization()(L.Conv2D(16, 3, padding="same", use_bias=False)(r))
        h = L.ReLU()(L.Add()([h, r]))
    resnet = keras.Model(inp, L.Dense(10)(L.GlobalAveragePooling2D()(h)))
    lstm = keras.Sequential([keras.Input((28, 28)), L.LSTM(64, return_sequences=True), L.LSTM(64),
                             L.Dense(10)])
    # keras.io's text-classification Transformer block (its projections on crossbars, the
    # attention digital), on 28 rows of an image as 28 tokens of 28 features
    inp = keras.Input((28, 28))
    t = L.Dense(32)(inp)
    t = L.LayerNormalization()(t + L.MultiHeadAttention(num_heads=2, key_dim=32)(t, t))
    t = L.LayerNormalization()(t + L.Dense(32)(L.Dense(64, activation="relu")(t)))
    transformer = keras.Model(inp, L.Dense(10)(L.GlobalAveragePooling1D()(t)))
    generic = GenericDevice(sigma_prog=SIGMA, sigma_read=SIGMA)
    cfg = lambda prog, read: CrossbarConfig.from_dict(  # noqa: E731
        {"nonideal": {"programming_error": prog, "read_noise": read}})
    wired = CrossbarConfig.from_dict({"mapping": {"tile_rows": 256, "tile_cols": 256},
                                      "wires": {"row_resistance": 0.5, "col_resistance": 0.5}})
    unwired = CrossbarConfig.from_dict({"mapping": {"tile_rows": 256, "tile_cols": 256}})
    x_mlp = rng.random((args.batch, SIZES[0]), dtype=np.float32)
    x_img = rng.random((2000, 28, 28, 1), dtype=np.float32)
    conv8 = CrossbarConfig.from_dict({  # the converters alone (issue 21, point 9)
        "nonideal": {"programming_error": False, "read_noise": False, "quantize": False,
                     "clip_conductance": False},
        "converters": {"dac_bits": 8, "adc_bits": 8}})
    cases = [  # label, model, x, device, config, trials, numpy digital, target ratio (or None)
        ("MLP programming error", mlp, x_mlp, generic, cfg(True, False), 1, True, 3),
        ("MLP read noise", mlp, x_mlp, generic, cfg(False, True), 1, True, 1.5),
        ("MLP both", mlp, x_mlp, generic, cfg(True, True), 1, True, 3),
        ("MLP 8-bit DAC and ADC, no device effect", mlp, x_mlp, generic, conv8, 1, True, 1.3),
        ("MLP both, state-dependent read noise (SONOS)", mlp, x_mlp, SONOS(), cfg(True, True), 1, True, None),
        # issue 21: the IR drop of 0.5-ohm wire segments on 256 x 256 tiles, first order (wires.py)
        ("MLP both + IR drop (SONOS, 0.5 ohm, 256x256 tiles)", mlp, x_mlp, SONOS(), wired, 1, True, 3),
        ("MLP both (SONOS, 256x256 tiles), ideal wires", mlp, x_mlp, SONOS(), unwired, 1, True, None),
        # all 10,000 inputs x 10 trials, as the former numpy engine's case: with 1,000 inputs ten
        # Keras passes took 27 ms against 45 ms for one pass over the same 10,000 rows (a small-
        # batch advantage, likely the CPU cache, that the analog pass over B*K rows cannot have)
        ("MLP both, 10 trials at once", mlp, x_mlp, generic, cfg(True, True), 10, True, None),
        ("CNN both (SONOS)", cnn, x_img, SONOS(), cfg(True, True), 1, False, 3),
        ("CNN both (SONOS), 10 trials at once", cnn, x_img[:200], SONOS(), cfg(True, True), 10, False, None),
        ("ResNet-style CNN both (SONOS)", resnet, x_img[:1000], SONOS(), cfg(True, True), 1, False, None),
        ("2-layer LSTM both (SONOS)", lstm, x_img[:1000, ..., 0], SONOS(), cfg(True, True), 1, False, None),
        ("Transformer block both (SONOS)", transformer, x_img[:1000, ..., 0], SONOS(), cfg(True, True), 1,
         False, None),
    ]
    rows = []
    if args.mlp_only:
        cases = [c for c in cases if c[1] is mlp]
    if args.only:
        cases = [c for c in cases if any(t in c[0] for t in args.only)]
    for label, model, x, device, config, k, numpy_digital, target in ([] if args.mnist_only else cases):
        xt = tf.constant(x)
        xr = tf.constant(repeat_trials(x, k))
        digital_fn = tf.function(lambda z, m=model: m(z, training=False))
        analog = convert(model, device, config, trials=k, seed=args.seed,
                         calibration_data=x[:2000] if config.converters.adc_bits else None)
        fn = tf.function(lambda z, m=analog: m(z, training=False))
        fns = {"analog": lambda: fn(xr).numpy(),
               "keras": lambda: [digital_fn(xt).numpy() for _ in range(k)]}
        before = _before_issue_21(analog, config, xr) if args.before and target else None
        if before is not None:
            fns["analog, before issue 21"] = before
        if args.compare_ops:
            fns["analog, other ops.py"] = _with_other_ops(args.compare_ops, analog, xr)
        if k > 1:
            fns["keras, B*K rows"] = lambda: digital_fn(xr).numpy()
        if numpy_digital:
            xr_np = repeat_trials(x, k)
            fns["numpy"] = lambda: [digital_forward(layers, x) for _ in range(k)]
            if k > 1:
                fns["numpy, B*K rows"] = lambda: digital_forward(layers, xr_np)
        times = best_interleaved(fns)
        new = times.pop("analog")
        old = times.pop("analog, before issue 21", None)
        other = times.pop("analog, other ops.py", None)
        baseline = min(times, key=times.get)
        dig = times[baseline]
        cpu_dig = min(v for n, v in cpu.items() if not n.startswith("analog"))
        rows.append({"case": label, "trials": k, "batch": len(x), "seconds": new,
                     "digital_seconds": dig, "digital_baseline": baseline, "ratio": new / dig,
                     "cpu_ratio": cpu["analog"] / cpu_dig, "target": target})
        if old is not None:
            rows.append({"case": f"  the same before issue 21", "trials": k, "batch": len(x),
                         "seconds": old, "digital_seconds": dig, "digital_baseline": baseline,
                         "ratio": old / dig, "cpu_ratio": cpu["analog, before issue 21"] / cpu_dig,
                         "target": None})
        if other is not None:
            rows.append({"case": f"  the same, {args.compare_ops}", "trials": k, "batch": len(x),
                         "seconds": other, "digital_seconds": dig, "digital_baseline": baseline,
                         "ratio": other / dig, "cpu_ratio": cpu["analog, other ops.py"] / cpu_dig,
                         "target": None})
    if args.noise_parts and not args.mnist_only:
        rows.extend(_noise_parts(mlp, x_mlp, generic, cfg(False, True), args.seed, best_interleaved))
    if not args.mnist_only:
        rows.append(_programming_time(mlp, SONOS(), cfg(True, True), args.seed))
    if args.mnist_eval:
        rows.append(_mnist_eval(args, cnn))
    if args.mnist_only:
        rows = rows[-1:]
    return rows


def _before_issue_21(analog, config, xr):
    """The converted model's pass as it was before issue 21 (its point 9), traced with the engine
    patched back: converters building the straight-through expression at inference too, and
    read noise from the former sampler (``bench_sampler.former_standard_normal``) added in
    separate passes; None when the case has neither."""
    import tensorflow as tf
    from keras import ops

    import nvmkit.engine.ops as engine_ops
    from bench_sampler import former_standard_normal

    converters = config.converters.dac_bits is not None or config.converters.adc_bits is not None
    if not converters and not config.nonideal.read_noise:
        return None

    def former_noise(y, seed, s2=None, row_sd=None, col_sd=None, bias=None, s2_bias=None):
        if bias is not None:  # the bias row's current, then added in a pass of its own
            y = y + bias
        if s2_bias is not None:
            s2 = s2 + s2_bias
        z = former_standard_normal(ops.shape(y), seed, y.dtype)
        noise = ops.sqrt(s2) * z if s2 is not None else row_sd * (z * col_sd)
        return y + ops.stop_gradient(noise)

    saved = engine_ops.builds_gradient, engine_ops._add_read_noise
    engine_ops.builds_gradient = lambda training: True
    engine_ops._add_read_noise = former_noise
    try:
        fn = tf.function(lambda z: analog(z, training=False))
        fn(xr)  # traced now, with the former code
    finally:
        engine_ops.builds_gradient, engine_ops._add_read_noise = saved
    return lambda: fn(xr).numpy()


def _with_other_ops(path, analog, xr):
    """The converted model's pass traced with the read path (``read``, ``read_conv``,
    ``quantize``) of the ops.py at ``path``: the same model, variables and inputs."""
    import importlib.util

    import tensorflow as tf

    import nvmkit.engine.ops as engine_ops

    spec = importlib.util.spec_from_file_location("_other_ops", path)
    other = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(other)
    names = ("read", "read_conv", "quantize")
    saved = {n: getattr(engine_ops, n) for n in names}
    for n in names:
        setattr(engine_ops, n, getattr(other, n))
    try:
        fn = tf.function(lambda z: analog(z, training=False))
        fn(xr)  # traced now, with the other code
    finally:
        for n, f in saved.items():
            setattr(engine_ops, n, f)
    return lambda: fn(xr).numpy()


def _noise_parts(mlp, x, device, config, seed, best_interleaved) -> list[dict]:
    """The MLP read-noise pass as it is, with its noise replaced by ones after drawing the same
    random words (the random generator's share), and by ones alone (no random numbers at all):
    the differences split the noise's cost into the generator, the transform with the noise's
    sum (one fused pass) and the rest."""
    import tensorflow as tf
    from keras import ops

    import nvmkit.engine.ops as engine_ops
    from nvmkit.engine.convert import convert

    def words_then_ones(y, sd, s2=None, row_sd=None, col_sd=None, bias=None, s2_bias=None):
        _, _, w = engine_ops._words(ops.shape(y), sd)  # every word is drawn; one reaches the result
        return (y if bias is None else y + bias) + 1.0 + 0.0 * ops.cast(w[0, 0], y.dtype)

    xt = tf.constant(x)
    real = engine_ops._add_read_noise
    variants = {"as is": real, "random words only": words_then_ones,
                "ones": lambda y, sd, s2=None, row_sd=None, col_sd=None, bias=None, s2_bias=None:
                (y if bias is None else y + bias) + 1.0}
    fns = {}
    try:
        for name, noise in variants.items():
            engine_ops._add_read_noise = noise  # traced now, so each function keeps its own
            model = convert(mlp, device, config, trials=1, seed=seed)
            fn = tf.function(lambda z, m=model: m(z, training=False))
            fn(xt)
            fns[name] = lambda f=fn: f(xt).numpy()
    finally:
        engine_ops._add_read_noise = real
    times = best_interleaved(fns)
    return [{"case": f"MLP read noise, noise: {name}", "trials": 1, "batch": len(x),
             "seconds": t, "digital_seconds": times["as is"], "digital_baseline": "the pass as is",
             "ratio": t / times["as is"], "target": False} for name, t in times.items()]


def _programming_time(mlp, device, config, seed) -> dict:
    """One programming of the MLP's crossbars (numpy, on the host; all effects, SONOS), best of 5."""
    from nvmkit.engine.convert import convert, reprogram

    model = convert(mlp, device, config, trials=1, seed=seed)
    best = float("inf")
    for s in range(5):
        t = time.perf_counter()
        reprogram(model, seed + s)
        best = min(best, time.perf_counter() - t)
    return {"case": "programming the MLP once (numpy, SONOS, all effects)", "trials": 1, "batch": 0,
            "seconds": best, "digital_seconds": None, "digital_baseline": "", "ratio": None,
            "target": False}


def _mnist_eval(args, cnn) -> dict:
    """10,000 test images x 10 trials of the default CNN (SONOS, all effects): monte_carlo, and the
    bare forward passes in batches of 500."""
    import tensorflow as tf

    from nvmkit.engine.convert import convert, repeat_trials
    from nvmkit.engine.evaluate import monte_carlo
    from nvmkit.workflow.data import load_dataset

    ds = load_dataset("mnist", args.data_dir)
    x = (ds.x_test[:10_000] / np.float32(255)).astype(np.float32)[..., None]
    y = ds.y_test[:10_000]
    t = time.perf_counter()
    analog = convert(cnn, SONOS(), CrossbarConfig(), trials=10, seed=args.seed)
    monte_carlo(analog, x, y, trials=10, seed=args.seed)
    mc = time.perf_counter() - t
    t = time.perf_counter()
    fn = tf.function(lambda z: analog(z, training=False))
    for s in range(0, len(x), 500):
        fn(tf.constant(repeat_trials(x[s:s + 500], 10))).numpy()
    new = time.perf_counter() - t
    return {"case": f"MNIST {len(x)} images x 10 trials, default CNN (SONOS)", "trials": 10,
            "batch": len(x), "seconds": new, "digital_seconds": None, "ratio": None,
            "monte_carlo_seconds": mc, "target": False}


if __name__ == "__main__":
    sys.exit(main())
