"""Speed of the read-noise sampler against the one it replaced (issue 21, point 9).

``nvmkit.engine.ops.standard_normal`` takes one 32-bit random word a Box-Muller pair (an 18-bit
radius, a 14-bit angle); until issue 21 it took three words for two pairs (two 24-bit radii and
two 16-bit angles), kept below as ``former_standard_normal`` for this comparison only. Both are
timed in turn under ``tf.function`` at several sizes (best of ``--repeats`` each), in one process,
so that both see the same load; the ratio new / former is what to read on a shared machine.

    python benchmarks/bench_sampler.py
    python benchmarks/bench_sampler.py --sizes 1000000 43000000
"""

from __future__ import annotations

import argparse
import math
import time

import keras
import tensorflow as tf
from keras import ops

import nvmkit.engine.ops as xops


def former_standard_normal(shape, seed, dtype="float32"):
    """The sampler before issue 21: three random words for two pairs (two 24-bit radii from the
    first two words' high bits, both 16-bit angles from the third word), the draw transformed
    whole."""
    shape, n, _ = xops.normal_words_shape(shape)
    if not isinstance(n, int):
        raise ValueError("former_standard_normal: static shapes only (the benchmarks trace them)")
    w = xops.random_words((3, (n + 3) // 4), seed)
    k = ops.cast(ops.right_shift(w[:2], 8), "float32")
    u = k * (2.0**-24) + (0.5 + 2.0**-24)
    r = ops.sqrt(-2.0 * ops.log(u))
    shifts = ops.convert_to_tensor([[0], [16]], dtype="int32")
    j = ops.bitwise_and(ops.right_shift(ops.expand_dims(w[2], 0), shifts), 0xFFFF)
    theta = ops.cast(j, "float32") * (2.0 * math.pi / 65536) + math.pi / 65536
    z = ops.concatenate([r * ops.cos(theta), r * ops.sin(theta)], axis=0)
    z = ops.reshape(z, (-1,))[:n]
    if dtype != "float32":
        z = ops.cast(z, dtype)
    return ops.reshape(z, shape)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 4_000_000, 16_000_000])
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args(argv)
    gen = keras.random.SeedGenerator(1)
    print(f"{'normals':>12s} {'former ns/normal':>17s} {'new ns/normal':>14s} {'new / former':>13s}")
    for n in args.sizes:
        fns = {"former": tf.function(lambda n=n: former_standard_normal((n,), gen)),
               "new": tf.function(lambda n=n: xops.standard_normal((n,), gen))}
        for fn in fns.values():
            fn()  # trace
        best = {k: float("inf") for k in fns}
        for _ in range(args.repeats):
            for k, fn in fns.items():
                time.sleep(0.05)
                t = time.perf_counter()
                fn().numpy()
                best[k] = min(best[k], time.perf_counter() - t)
        print(f"{n:12d} {1e9 * best['former'] / n:17.2f} {1e9 * best['new'] / n:14.2f} "
              f"{best['new'] / best['former']:13.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
