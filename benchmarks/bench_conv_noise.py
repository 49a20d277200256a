"""Where a noisy convolution's read spends its time (issue 21, point 9): the pieces of the read
of the default CNN's first layer with SONOS (a 3x3 convolution, 1 input channel, 32 outputs) on
2,000 images (43 million outputs), each timed alone under ``tf.function`` in one process, best of
``--repeats``: the layer's own convolution, the convolution of ``x**2`` with the cell variances
(SONOS's read noise depends on each cell's state), the random words, the words turned into
normals, and the whole noise (normals plus the scaled sum, as the read adds it).

    python benchmarks/bench_conv_noise.py
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np
import tensorflow as tf

import nvmkit.engine.ops as xops


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()

    shape = (args.images, 26, 26, 32)
    seed = keras.random.SeedGenerator(1)
    rng = np.random.default_rng(0)
    y = tf.constant(rng.random(shape, dtype=np.float32))
    s2 = tf.constant(rng.random(shape, dtype=np.float32))
    x = tf.constant(rng.random((args.images, 28, 28, 1), dtype=np.float32))
    k = tf.constant(rng.random((3, 3, 1, 32), dtype=np.float32))

    def normals():
        sh, n, w = xops._words(shape, seed)
        return xops._samples(w, n, sh, "float32", transform=xops.box_muller_pairs)

    pieces = {
        "convolution of x": lambda: tf.nn.conv2d(x, k, 1, "VALID"),
        "convolution of x**2 with the variances": lambda: tf.nn.conv2d(tf.square(x), k, 1, "VALID"),
        "random words": lambda: xops._words(shape, seed)[2],
        "words -> normals": normals,
        "whole noise (normals, scale, sum)": lambda: xops._add_read_noise(y, seed, s2=s2),
    }
    print(f"first layer of the default CNN, {args.images} images ({np.prod(shape) / 1e6:.1f} M outputs), "
          f"best of {args.repeats}")
    for name, fn in pieces.items():
        f = tf.function(fn)
        f().numpy()  # trace, compile
        best = float("inf")
        for _ in range(args.repeats):
            time.sleep(0.2)
            t = time.perf_counter()
            f().numpy()
            best = min(best, time.perf_counter() - t)
        print(f"  {name:42s} {best * 1e3:7.1f} ms")


if __name__ == "__main__":
    main()
