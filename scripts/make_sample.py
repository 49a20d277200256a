"""Write the stratified samples of MNIST and Fashion-MNIST that ship inside nvmkit.

    python scripts/make_sample.py --source ../shared/datasets

Each sample holds the same number of images per class (drawn without replacement with a fixed seed, kept
in canonical order) as uint8, plus the indices they came from (``train_index``, ``test_index``) so anyone
can check them against the full set. Output: ``nvmkit/data_sample/{mnist,fashion-mnist}.npz``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from nvmkit.workflow.data import DATASETS, NUM_CLASSES, read_raw

OUT_DIR = Path(__file__).resolve().parents[1] / "nvmkit" / "data_sample"
SEED = 839866  # the seed document's id, so the choice is fixed and traceable


def stratified_indices(y: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """``total / NUM_CLASSES`` indices of every class, sorted."""
    if total % NUM_CLASSES:
        raise SystemExit(f"sample size {total} is not a multiple of {NUM_CLASSES} classes")
    per_class = total // NUM_CLASSES
    picks = [rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in range(NUM_CLASSES)]
    return np.sort(np.concatenate(picks))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, type=Path, help="Keras-cache-layout folder with the full sets")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help=f"output folder (default {OUT_DIR})")
    parser.add_argument("--train", type=int, default=4000, help="training images per data set")
    parser.add_argument("--test", type=int, default=1000, help="test images per data set")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    total = 0
    for name in DATASETS:
        rng = np.random.default_rng([args.seed, DATASETS.index(name)])
        x_train, y_train, x_test, y_test = read_raw(name, args.source)
        train_index = stratified_indices(y_train, args.train, rng)
        test_index = stratified_indices(y_test, args.test, rng)
        path = args.out / f"{name}.npz"
        np.savez_compressed(
            path,
            x_train=x_train[train_index],
            y_train=y_train[train_index].astype(np.uint8),
            x_test=x_test[test_index],
            y_test=y_test[test_index].astype(np.uint8),
            train_index=train_index.astype(np.uint16),
            test_index=test_index.astype(np.uint16),
        )
        size = path.stat().st_size
        total += size
        print(f"{path}: {len(train_index)} train + {len(test_index)} test images, {size / 1e6:.2f} MB")
    print(f"total {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
