"""Data loaders: embedded sample, Keras-cache folders, the full shared sets, corrupt files, download path."""

from __future__ import annotations

import gzip
import importlib.util
import struct
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from nvmkit.workflow.data import DATASETS, Dataset, load_dataset, read_raw
from nvmkit.core.errors import ConfigError, DataError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
needs_shared = pytest.mark.skipif(not (SHARED / "mnist.npz").is_file(), reason="shared/datasets not present")
FASHION = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """No test may see the real ~/.keras or a user's NVMKIT_DATA_DIR."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("NVMKIT_DATA_DIR", raising=False)
    monkeypatch.delenv("KERAS_HOME", raising=False)
    return home


def _arrays(n_train=30, n_test=20, seed=0):
    rng = np.random.default_rng(seed)
    x_train = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    x_test = rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)
    x_train[0, 0, 0], x_train[0, 0, 1] = 0, 255  # the extremes must map to exactly 0 and 1
    y_train = (np.arange(n_train) % 10).astype(np.uint8)
    y_test = (np.arange(n_test) % 10).astype(np.uint8)
    return x_train, y_train, x_test, y_test


def write_mnist(folder: Path, arrays=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    x_train, y_train, x_test, y_test = arrays or _arrays()
    path = folder / "mnist.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def idx_bytes(arr: np.ndarray, magic: int | None = None) -> bytes:
    magic = (0x0803 if arr.ndim == 3 else 0x0801) if magic is None else magic
    return gzip.compress(struct.pack(f">I{arr.ndim}I", magic, *arr.shape) + arr.tobytes())


def write_fashion(folder: Path, arrays=None) -> Path:
    sub = folder / "fashion-mnist"
    sub.mkdir(parents=True, exist_ok=True)
    x_train, y_train, x_test, y_test = arrays or _arrays(seed=1)
    for (img, lab), x, y in ((FASHION["train"], x_train, y_train), (FASHION["test"], x_test, y_test)):
        (sub / img).write_bytes(idx_bytes(x))
        (sub / lab).write_bytes(idx_bytes(y))
    return sub


WRITERS = {"mnist": write_mnist, "fashion-mnist": write_fashion}


def assert_well_formed(ds: Dataset, n_train: int, n_test: int) -> None:
    assert ds.x_train.shape == (n_train, 28, 28) and ds.x_test.shape == (n_test, 28, 28)
    assert ds.y_train.shape == (n_train,) and ds.y_test.shape == (n_test,)
    assert ds.x_train.dtype == np.float32 and ds.x_test.dtype == np.float32
    assert ds.y_train.dtype == np.int64 and ds.y_test.dtype == np.int64
    for x in (ds.x_train, ds.x_test):
        assert 0.0 <= x.min() and x.max() <= 1.0
    assert ds.num_classes == 10 and ds.input_shape == (28, 28)


def assert_one_line_error(exc: pytest.ExceptionInfo, *needles: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"


# --- the embedded sample ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", DATASETS)
def test_sample_is_stratified_and_well_formed(name):
    ds = load_dataset(name, source="sample")
    assert ds.is_sample and ds.source == "embedded sample" and ds.name == name
    assert_well_formed(ds, 4000, 1000)
    np.testing.assert_array_equal(np.bincount(ds.y_train, minlength=10), np.full(10, 400))
    np.testing.assert_array_equal(np.bincount(ds.y_test, minlength=10), np.full(10, 100))
    # Real images, not blanks: MNIST/Fashion mean pixel is ~0.13/~0.29; the max must reach full white.
    assert 0.1 < ds.x_train.mean() < 0.4 and ds.x_train.max() == 1.0


@pytest.mark.parametrize("name", DATASETS)
def test_auto_falls_back_to_sample_when_nothing_is_found(name):
    ds = load_dataset(name)
    assert ds.is_sample and ds.source == "embedded sample"


@needs_shared
@pytest.mark.parametrize("name", DATASETS)
def test_sample_is_a_subset_of_the_full_set(name):
    x_train, y_train, x_test, y_test = read_raw(name, SHARED)
    raw = resources.files("nvmkit.workflow.data_sample").joinpath(f"{name}.npz").read_bytes()
    with np.load(__import__("io").BytesIO(raw)) as npz:
        tr, te = npz["train_index"].astype(np.int64), npz["test_index"].astype(np.int64)
        np.testing.assert_array_equal(npz["x_train"], x_train[tr])
        np.testing.assert_array_equal(npz["y_train"], y_train[tr])
        np.testing.assert_array_equal(npz["x_test"], x_test[te])
        np.testing.assert_array_equal(npz["y_test"], y_test[te])
    assert len(np.unique(tr)) == 4000 and len(np.unique(te)) == 1000


# --- full data sets in ../shared/datasets ----------------------------------------------------------


@needs_shared
@pytest.mark.parametrize("name", DATASETS)
def test_full_shared_sets(name):
    ds = load_dataset(name, SHARED)
    assert not ds.is_sample and str(SHARED) in ds.source
    assert_well_formed(ds, 60000, 10000)
    # Both sets are close to balanced: every class holds 9-12 % of the training set.
    counts = np.bincount(ds.y_train, minlength=10)
    assert counts.min() > 5400 and counts.max() < 6800


# --- synthetic Keras-cache folders -----------------------------------------------------------------


@pytest.mark.parametrize("name", DATASETS)
def test_explicit_folder_scales_pixels_exactly(name, tmp_path):
    arrays = _arrays(seed=3)
    WRITERS[name](tmp_path / "data", arrays)
    ds = load_dataset(name, tmp_path / "data")
    assert not ds.is_sample
    assert_well_formed(ds, 30, 20)
    np.testing.assert_array_equal(ds.x_train, arrays[0].astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(ds.y_test, arrays[3])
    assert ds.x_train[0, 0, 0] == 0.0 and ds.x_train[0, 0, 1] == 1.0


@pytest.mark.parametrize("name", DATASETS)
def test_env_var_folder_is_used(name, tmp_path, monkeypatch):
    WRITERS[name](tmp_path / "envdata")
    monkeypatch.setenv("NVMKIT_DATA_DIR", str(tmp_path / "envdata"))
    ds = load_dataset(name)
    assert not ds.is_sample and str(tmp_path / "envdata") in ds.source


def test_env_var_wins_over_keras_cache(tmp_path, monkeypatch, isolated_home):
    write_mnist(isolated_home / ".keras" / "datasets", _arrays(n_train=10))
    write_mnist(tmp_path / "envdata", _arrays(n_train=40))
    monkeypatch.setenv("NVMKIT_DATA_DIR", str(tmp_path / "envdata"))
    assert len(load_dataset("mnist").x_train) == 40


def test_env_var_naming_no_folder_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("NVMKIT_DATA_DIR", str(tmp_path / "typo"))
    with pytest.raises(DataError) as exc:
        load_dataset("mnist")
    assert_one_line_error(exc, "NVMKIT_DATA_DIR", "typo")


@pytest.mark.parametrize("name", DATASETS)
def test_keras_cache_in_home_is_used(name, isolated_home):
    WRITERS[name](isolated_home / ".keras" / "datasets")
    ds = load_dataset(name)
    assert not ds.is_sample and ".keras" in ds.source


def test_keras_home_env_is_honoured(tmp_path, monkeypatch):
    write_fashion(tmp_path / "kh" / "datasets")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    assert not load_dataset("fashion-mnist").is_sample


@pytest.mark.parametrize("name", DATASETS)
def test_explicit_folder_without_data_is_an_error_not_the_sample(name, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as exc:
        load_dataset(name, tmp_path / "empty")
    assert_one_line_error(exc, str(tmp_path / "empty"), "--data-dir")
    with pytest.raises(DataError) as exc:
        load_dataset(name, tmp_path / "nowhere", source="full")
    assert_one_line_error(exc, "does not exist", "nowhere")


def test_name_is_normalised_and_unknown_names_fail():
    assert load_dataset("Fashion_MNIST", source="sample").name == "fashion-mnist"
    with pytest.raises(ConfigError) as exc:
        load_dataset("cifar10")
    assert_one_line_error(exc, "mnist", "fashion-mnist", "cifar10")
    with pytest.raises(ConfigError) as exc:
        load_dataset("mnist", source="web")
    assert_one_line_error(exc, "auto", "full", "sample")


# --- corrupt files ---------------------------------------------------------------------------------


def test_truncated_gzip(tmp_path):
    sub = write_fashion(tmp_path)
    path = sub / FASHION["train"][0]
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(DataError) as exc:
        load_dataset("fashion-mnist", tmp_path)
    assert_one_line_error(exc, str(path), "truncated", "re-download")


def test_file_that_is_not_gzip(tmp_path):
    sub = write_fashion(tmp_path)
    path = sub / FASHION["test"][1]
    path.write_bytes(b"<html>not found</html>")
    with pytest.raises(DataError) as exc:
        load_dataset("fashion-mnist", tmp_path)
    assert_one_line_error(exc, str(path), "re-download")


def test_wrong_idx_magic(tmp_path):
    sub = write_fashion(tmp_path)
    x_train = _arrays(seed=1)[0]
    (sub / FASHION["train"][0]).write_bytes(idx_bytes(x_train, magic=0x0801))
    with pytest.raises(DataError) as exc:
        load_dataset("fashion-mnist", tmp_path)
    assert_one_line_error(exc, "magic", FASHION["train"][0])


def test_idx_size_disagreeing_with_header(tmp_path):
    sub = write_fashion(tmp_path)
    y = _arrays(seed=1)[1]
    header = struct.pack(">II", 0x0801, len(y) + 5)
    (sub / FASHION["train"][1]).write_bytes(gzip.compress(header + y.tobytes()))
    with pytest.raises(DataError) as exc:
        load_dataset("fashion-mnist", tmp_path)
    assert_one_line_error(exc, FASHION["train"][1], "header")


def test_image_and_label_counts_disagree(tmp_path):
    sub = write_fashion(tmp_path)
    (sub / FASHION["test"][1]).write_bytes(idx_bytes(np.zeros(7, np.uint8)))
    with pytest.raises(DataError) as exc:
        load_dataset("fashion-mnist", tmp_path)
    assert_one_line_error(exc, "7 labels")


def test_incomplete_fashion_folder(tmp_path):
    sub = write_fashion(tmp_path)
    (sub / FASHION["test"][0]).unlink()
    with pytest.raises(DataError) as exc:
        load_dataset("fashion-mnist", tmp_path)
    assert_one_line_error(exc, "incomplete", FASHION["test"][0])


def test_garbage_npz(tmp_path):
    (tmp_path / "mnist.npz").write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", tmp_path)
    assert_one_line_error(exc, str(tmp_path / "mnist.npz"), "re-download")


@pytest.mark.parametrize("content", [b"hello, this is text\n", b"<!DOCTYPE html><html>404</html>", b""],
                         ids=["text", "html", "empty"])
def test_file_that_is_not_an_npz_says_so_without_pickle_advice(tmp_path, content):
    # regression: np.load took a text file named mnist.npz for pickled data and the error passed on
    # its advice to load it with allow_pickle
    (tmp_path / "mnist.npz").write_bytes(content)
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", tmp_path)
    assert_one_line_error(exc, f"{tmp_path / 'mnist.npz'} is not a valid .npz file", "re-download")
    assert "pickle" not in str(exc.value)


def test_npz_with_pickled_arrays_is_refused_not_unpickled(tmp_path):
    x_train, y_train, x_test, y_test = _arrays()
    np.savez(tmp_path / "mnist.npz", x_train=x_train, y_train=y_train, x_test=x_test,
             y_test=np.array([{"label": 1}] * len(y_test), dtype=object))
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", tmp_path)
    assert_one_line_error(exc, "holds pickled Python objects, which nvmkit never loads", str(tmp_path / "mnist.npz"))
    assert "allow_pickle" not in str(exc.value)


def test_bare_npy_named_npz(tmp_path):
    np.save(tmp_path / "x.npy", _arrays()[0])
    (tmp_path / "x.npy").rename(tmp_path / "mnist.npz")
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", tmp_path)
    assert_one_line_error(exc, ".npy", str(tmp_path / "mnist.npz"))


def test_truncated_npz(tmp_path):
    path = tmp_path / "mnist.npz"
    x_train, y_train, x_test, y_test = _arrays()
    np.savez_compressed(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    path.write_bytes(path.read_bytes()[:-300])
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", tmp_path)
    assert_one_line_error(exc, str(path))


@pytest.mark.parametrize(
    "change, needle",
    [
        (lambda a: (a[0], a[1], a[2][:, :27], a[3]), "(N, 28, 28)"),
        (lambda a: (a[0].astype(np.float64), a[1], a[2], a[3]), "uint8"),
        (lambda a: (a[0], np.where(a[1] == 9, 10, a[1]).astype(np.uint8), a[2], a[3]), "0..9"),
        (lambda a: (a[0], a[1][:-1], a[2], a[3]), "labels"),
    ],
    ids=["shape", "dtype", "label-range", "label-count"],
)
def test_npz_with_wrong_content(tmp_path, change, needle):
    write_mnist(tmp_path, change(_arrays()))
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", tmp_path)
    assert_one_line_error(exc, needle, str(tmp_path / "mnist.npz"))


def test_npz_missing_an_array(tmp_path):
    x_train, y_train, x_test, _ = _arrays()
    np.savez(tmp_path / "mnist.npz", x_train=x_train, y_train=y_train, x_test=x_test)
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", tmp_path)
    assert_one_line_error(exc, "y_test")


def test_corrupt_file_in_keras_cache_is_reported_not_skipped(isolated_home):
    cache = isolated_home / ".keras" / "datasets"
    cache.mkdir(parents=True)
    (cache / "mnist.npz").write_bytes(b"garbage")
    with pytest.raises(DataError):
        load_dataset("mnist")


# --- source="full": Keras download -----------------------------------------------------------------


@pytest.fixture
def keras_utils(monkeypatch):
    keras = pytest.importorskip("keras")
    return keras.utils


@pytest.mark.parametrize("name", DATASETS)
def test_full_offline_names_the_three_ways(name, keras_utils, monkeypatch):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://example: None -- [Errno -3]\nTemporary failure")

    monkeypatch.setattr(keras_utils, "get_file", offline)
    with pytest.raises(DataError) as exc:
        load_dataset(name, source="full")
    assert_one_line_error(exc, "--data-dir DIR", "NVMKIT_DATA_DIR", "~/.keras/datasets", "download failed")


def test_full_downloads_into_the_keras_cache(keras_utils, monkeypatch, isolated_home):
    calls = []

    def fake_get_file(fname, origin=None, file_hash=None, cache_dir=None, cache_subdir="datasets", **kw):
        calls.append((fname, origin, cache_dir, cache_subdir))
        target = Path(cache_dir) / cache_subdir
        write_fashion(target.parent)  # writes every file at once; later calls just find them
        return str(target / fname)

    monkeypatch.setattr(keras_utils, "get_file", fake_get_file)
    ds = load_dataset("fashion-mnist", source="full")
    assert not ds.is_sample and ds.source == "keras download"
    assert_well_formed(ds, 30, 20)
    assert {c[0] for c in calls} == {f for pair in FASHION.values() for f in pair}
    assert all(c[1].endswith(c[0]) and Path(c[2]) == isolated_home / ".keras" for c in calls)
    # The next run finds the cached copy without downloading.
    assert load_dataset("fashion-mnist", source="full").source.endswith("fashion-mnist")


def test_full_never_hands_a_local_mnist_to_keras(keras_utils, monkeypatch, isolated_home):
    def must_not_download(*args, **kwargs):
        raise AssertionError("Keras would hash-check and delete the local mnist.npz")

    monkeypatch.setattr(keras_utils, "get_file", must_not_download)
    path = write_mnist(isolated_home / ".keras" / "datasets")
    ds = load_dataset("mnist", source="full")
    assert ds.source == str(path) and path.is_file()


# --- the sample-making script ----------------------------------------------------------------------


def test_make_sample_script_is_stratified_and_reproducible(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "make_sample", Path(__file__).resolve().parents[1] / "scripts" / "make_sample.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    arrays = _arrays(n_train=200, n_test=100, seed=5)
    write_mnist(tmp_path / "src", arrays)
    write_fashion(tmp_path / "src", arrays)
    for out in ("a", "b"):
        args = ["--source", str(tmp_path / "src"), "--out", str(tmp_path / out), "--train", "50", "--test", "20"]
        script.main(args)
    for name in DATASETS:
        with np.load(tmp_path / "a" / f"{name}.npz") as a, np.load(tmp_path / "b" / f"{name}.npz") as b:
            for key in a.files:
                np.testing.assert_array_equal(a[key], b[key])
            np.testing.assert_array_equal(np.bincount(a["y_train"], minlength=10), np.full(10, 5))
            np.testing.assert_array_equal(np.bincount(a["y_test"], minlength=10), np.full(10, 2))
            np.testing.assert_array_equal(a["x_train"], arrays[0][a["train_index"]])
