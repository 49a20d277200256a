"""What the converter errors and the chip variation cost (issue 21, points 3-5).

The 784-256-128-10 ReLU MLP of ``bench_crossbar.py`` (random He-initialised weights, generic
device with 2.5% programming error and read noise, 8-bit DAC and ADC calibrated on the inputs,
1152 x 256 tiles) on 10,000 inputs in [0, 1], in three variants timed in turn in the same run
(best of ``--repeats`` interleaved rounds, as ``bench_crossbar.py`` times): the ADCs ideal but for
their bits; with every ADC error on (offset 0.5 LSB, gain error 1%, noise 0.5 LSB); and the
digital Keras pass of the same model. Ratios are against the digital pass. Then one programming
of the MLP's crossbars (``reprogram``, numpy on the host, 10 trials) without and with every chip
effect (range spread, tile spread, gradient, stuck cells, ADC offsets and gains), new chip per
trial and same chip.

    python benchmarks/bench_chip.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np

SIZES = (784, 256, 128, 10)
SIGMA = 0.025
ADC_ERRORS = {"adc_offset": 0.5, "adc_gain_error": 0.01, "adc_noise": 0.5}
CHIP = {"gmin_spread": 0.1, "gmax_spread": 0.1, "tile_spread": 0.05, "gradient": 0.1}
STUCK = {"stuck_at_gmin": 0.01, "stuck_at_gmax": 0.01}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--settle", type=float, default=0.3)
    args = ap.parse_args(argv)

    import keras
    import tensorflow as tf

    from nvmkit.engine.convert import convert, reprogram
    from nvmkit.engine.crossbar_config import CrossbarConfig
    from nvmkit_plugins.devices.generic import GenericDevice

    rng = np.random.default_rng(0)
    L = keras.layers
    mlp = keras.Sequential([keras.Input((SIZES[0],)), L.Dense(SIZES[1], activation="relu"),
                            L.Dense(SIZES[2], activation="relu"), L.Dense(SIZES[3])])
    mlp.set_weights([a for n_in, n_out in zip(SIZES[:-1], SIZES[1:])
                     for a in ((rng.standard_normal((n_in, n_out)) * np.sqrt(2 / n_in)).astype("f4"),
                               (0.01 * rng.standard_normal(n_out)).astype("f4"))])
    x = rng.random((args.batch, SIZES[0]), dtype=np.float32)
    device = GenericDevice(sigma_prog=SIGMA, sigma_read=SIGMA)

    def config(converters=None, chip=None, nonideal=None):
        return CrossbarConfig.from_dict({"converters": {"dac_bits": 8, "adc_bits": 8, **(converters or {})},
                                         "chip": chip or {}, "nonideal": nonideal or {}})

    xt = tf.constant(x)
    fns = {"digital": tf.function(lambda z: mlp(z, training=False))}
    for label, c in (("8-bit ADC", config()), ("8-bit ADC with offset, gain error, noise", config(ADC_ERRORS))):
        model = convert(mlp, device, c, seed=1, calibration_data=x[:500])
        fns[label] = tf.function(lambda z, m=model: m(z, training=False))
    for fn in fns.values():
        fn(xt).numpy()  # trace and warm up
    best = {name: float("inf") for name in fns}
    for _ in range(args.repeats):
        for name, fn in fns.items():
            time.sleep(args.settle)
            t = time.perf_counter()
            fn(xt).numpy()
            best[name] = min(best[name], time.perf_counter() - t)
    print(f"MLP {'-'.join(map(str, SIZES))}, {args.batch} inputs, best of {args.repeats} interleaved rounds")
    print(f"{'case':<44} {'ms':>8} {'x digital':>10}")
    for name, t in best.items():
        print(f"{name:<44} {t * 1e3:8.1f} {t / best['digital']:10.2f}")

    print("\nprogramming the MLP's crossbars once, 10 trials (reprogram, numpy), best of 3")
    cases = {"no chip effect": config(),
             "every chip effect, new chip per trial": config(ADC_ERRORS, CHIP, STUCK),
             "every chip effect, same chip": config(ADC_ERRORS, {**CHIP, "trials": "same-chip"}, STUCK)}
    times = {}
    for name, c in cases.items():
        model = convert(mlp, device, c, trials=10, seed=1, calibration_data=x[:500])
        times[name] = float("inf")
        for s in range(3):
            t = time.perf_counter()
            reprogram(model, 2 + s)
            times[name] = min(times[name], time.perf_counter() - t)
    for name, t in times.items():
        print(f"{name:<44} {t * 1e3:8.1f} ms {t / times['no chip effect']:6.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
