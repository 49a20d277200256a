"""Where a read spends its time (issue 21, point 9), each piece timed alone under
``tf.function`` in one process, best of ``--repeats``:

- the read of the default CNN's first layer with SONOS (a 3x3 convolution, 1 input channel, 32
  outputs) on 2,000 images (43 million outputs): the layer's own convolution, the convolution of
  ``x**2`` with the cell variances (SONOS's read noise depends on each cell's state), the random
  words, the words turned into normals, the whole noise (normals plus the scaled sum, as the
  read adds it), and what the read now does for so small a layer instead of the second
  convolution and the whole noise: the variance map summed tap by tap inside the noise's pass
  (``DIRECT_VARIANCE_ROWS`` in ``nvmkit/engine/ops.py``);
- the IR-drop correction of the benchmark MLP's three weight matrices (785 x 256, 257 x 128,
  129 x 10 with their bias rows, differential pairs, 256 x 256 tiles, 0.5 ohm wires):
  ``WireModel.effective_weights``, which every read of a layer with resistive wires computes;
- the read noise of the benchmark MLP's three layers on 10,000 inputs (state-independent, one
  std per column, as ``bench_crossbar.py``'s "MLP read noise"): its random words, the inputs'
  norms, and the whole noise.

    python benchmarks/bench_read_parts.py
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np
import tensorflow as tf

import nvmkit.engine.ops as xops
from nvmkit.engine.wires import WireModel


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
    v = tf.reshape(k, (9, 32))  # the cell variances in patch order

    def normals():
        sh, n, w = xops._words(shape, seed)
        return xops._samples(w, n, sh, "float32", transform=xops.box_muller_pairs)

    pieces = {
        "convolution of x": lambda: tf.nn.conv2d(x, k, 1, "VALID"),
        "convolution of x**2 with the variances": lambda: tf.nn.conv2d(tf.square(x), k, 1, "VALID"),
        "random words": lambda: xops._words(shape, seed)[2],
        "words -> normals": normals,
        "whole noise (normals, scale, sum)": lambda: xops._add_read_noise(y, seed, s2=s2),
        "variance map tap by tap + whole noise": lambda: xops._add_read_noise_from_taps(
            y, seed, x, v, None, ((3, 3), (1, 1), (1, 1), "valid")),
    }
    def timed(fn) -> float:
        f = tf.function(fn)
        done = lambda out: [o.numpy() for o in tf.nest.flatten(out)]  # noqa: E731
        done(f())  # trace, compile
        best = float("inf")
        for _ in range(args.repeats):
            time.sleep(0.2)
            t = time.perf_counter()
            done(f())
            best = min(best, time.perf_counter() - t)
        return best * 1e3

    print(f"first layer of the default CNN, {args.images} images ({np.prod(shape) / 1e6:.1f} M outputs), "
          f"best of {args.repeats}")
    for name, fn in pieces.items():
        print(f"  {name:42s} {timed(fn):7.1f} ms")

    print("read noise of the benchmark MLP (state-independent, as bench_crossbar's 'MLP read noise'), "
          "its three layers on 10,000 inputs")
    outs = [(1, 10_000, n) for n in (256, 128, 10)]
    ys = [tf.constant(rng.random(s, dtype=np.float32)) for s in outs]
    xs = [tf.constant(rng.random((1, 10_000, n), dtype=np.float32)) for n in (784, 256, 128)]
    cols = [tf.constant(rng.random((1, 1, s[-1]), dtype=np.float32)) for s in outs]

    def row_sd(x):
        return tf.sqrt(xops.sum_of_squares(x) + 1.0)  # the inputs' norms, the bias row at 1

    mlp = {
        "random words": lambda: [xops._words(y.shape, seed)[2] for y in ys],
        "norms of the inputs": lambda: [row_sd(x) for x in xs],
        "whole noise (words, norms, normals, sum)": lambda: [
            xops._add_read_noise(y, seed, row_sd=row_sd(x), col_sd=c) for x, y, c in zip(xs, ys, cols)],
    }
    for name, fn in mlp.items():
        print(f"  {name:42s} {timed(fn):7.1f} ms")

    print("IR-drop correction (WireModel.effective_weights) of the MLP's weight matrices, 0.5 ohm, 256x256 tiles")
    for rows, cols in ((785, 256), (257, 128), (129, 10)):
        wires = WireModel(rows=rows, cols=cols, tile_rows=256, tile_cols=256, differential=True,
                          row_resistance=0.5, col_resistance=0.5)
        w = tf.constant(rng.standard_normal((1, rows, cols)).astype(np.float32) * 0.1)
        common = tf.constant(np.full((1, rows, cols), 0.05, np.float32))
        siemens = tf.constant(1e-6)
        ms = timed(lambda wires=wires, w=w, common=common: wires.effective_weights(w, common, siemens))
        print(f"  {rows} x {cols:<4d}{'':31s} {ms:7.1f} ms")


if __name__ == "__main__":
    main()
