"""Is nvmkit's training bit-reproducible, and what would TensorFlow's deterministic kernels change?

Trains one bundled network on the embedded MNIST sample several times, each in a fresh process, as
``nvmkit.workflow.training.train`` does it (seeded with ``keras.utils.set_random_seed``, no model
cache), under four settings: TensorFlow's defaults; with
``tf.config.experimental.enable_op_determinism()``; with one intra-op and one inter-op thread (as
on a machine with another core count); and both. Prints, per run, the training time, the test
accuracy and how far its weights and test predictions are from the first default run.

    python benchmarks/training_determinism.py --network cnn --epochs 8 --sigma-neu 0.1

Timings share the machine with whatever else runs: compare them within one invocation only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

MODES = {"default": (False, False), "deterministic ops": (True, False), "1 thread": (False, True),
         "deterministic ops, 1 thread": (True, True)}


def _train(network: str, epochs: int, sigma_neu: float, deterministic: bool, one_thread: bool, out: str) -> None:
    import numpy as np
    import tensorflow as tf

    if deterministic:
        tf.config.experimental.enable_op_determinism()
    if one_thread:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    import time

    from nvmkit import digital_accuracy, get_registry, load_dataset
    from nvmkit.workflow.training import train

    ds = load_dataset("mnist", source="sample")
    mapper = get_registry().create("network", network, {})
    started = time.perf_counter()
    model = train(mapper, ds, {"epochs": epochs, "sigma_neu": sigma_neu}, seed=0, use_cache=False,
                  cache_dir=Path(out) / "cache")
    seconds = time.perf_counter() - started
    x = mapper.prepare(ds.x_test)
    np.savez(Path(out) / "weights.npz", *model.get_weights())
    np.save(Path(out) / "predictions.npy", model.predict(x, verbose=0).argmax(1))
    (Path(out) / "run.json").write_text(json.dumps(
        {"seconds": seconds, "accuracy": digital_accuracy(model, x, ds.y_test)}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--network", default="mlp", help="a bundled network: mlp, cnn or rnn")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--sigma-neu", type=float, default=0.0, help="training noise before each ReLU")
    ap.add_argument("--repeats", type=int, default=2, help="runs of the default and deterministic settings")
    ap.add_argument("--_child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child:
        det, thread, out = args._child
        _train(args.network, args.epochs, args.sigma_neu, det == "1", thread == "1", out)
        return 0

    import numpy as np

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (det, thread) in MODES.items():
            for i in range(args.repeats if not thread else 1):
                out = Path(tmp) / f"{len(runs)}"
                out.mkdir()
                subprocess.run([sys.executable, __file__, "--network", args.network, "--epochs", str(args.epochs),
                                "--sigma-neu", str(args.sigma_neu), "--_child", str(int(det)), str(int(thread)),
                                str(out)], check=True, stderr=subprocess.DEVNULL)
                w = np.load(out / "weights.npz")
                runs.append((f"{name} #{i + 1}", json.loads((out / "run.json").read_text()),
                             [w[k] for k in w.files], np.load(out / "predictions.npy")))
    _, _, w0, p0 = runs[0]
    print(f"{args.network}, {args.epochs} epochs, sigma_neu {args.sigma_neu:g}, embedded MNIST sample, seed 0")
    print(f"{'run':32} {'train s':>8} {'accuracy':>9} {'same bits':>10} {'max |dw|':>10} {'predictions changed':>20}")
    for name, info, w, p in runs:
        same = all(np.array_equal(a, b) for a, b in zip(w0, w))
        dw = max(float(np.abs(a - b).max()) for a, b in zip(w0, w))
        print(f"{name:32} {info['seconds']:8.2f} {info['accuracy']:9.4f} {str(same):>10} {dw:10.3g} "
              f"{int((p != p0).sum()):>10} of {len(p0)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
