"""MNIST and Fashion-MNIST, read from a Keras-cache-layout folder, Keras's download or the embedded sample.

Both sets are 28x28 grey-level images in 10 classes, 60,000 for training and 10,000 for testing:
MNIST (LeCun, Bottou, Bengio & Haffner, Proc. IEEE 86(11), 1998) and Fashion-MNIST (Xiao, Rasul &
Vollgraf, arXiv:1708.07747, 2017). A folder uses Keras's own cache layout (``~/.keras/datasets``), so a
user's existing Keras cache works unchanged:

* ``mnist.npz``: arrays ``x_train``, ``y_train``, ``x_test``, ``y_test`` (uint8);
* ``fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``: the original IDX files, gzip.

Keras's own MNIST loader checks a hash of the original download and DELETES a local ``mnist.npz`` that
does not match it (e.g. one rebuilt from another source), so this module reads every local file itself and
asks Keras only to download a file that is absent.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from nvmkit.core.errors import ConfigError, DataError

DATASETS = ("mnist", "fashion-mnist")
SOURCES = ("auto", "full", "sample")
NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28)
ENV_VAR = "NVMKIT_DATA_DIR"
SAMPLE_SOURCE = "embedded sample"
DOWNLOAD_SOURCE = "keras download"

_MNIST_FILE = "mnist.npz"
_FASHION_DIR = "fashion-mnist"
_FASHION_FILES = {  # split -> (images, labels), as Keras names them
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_LAYOUT = {
    "mnist": _MNIST_FILE,
    "fashion-mnist": f"{_FASHION_DIR}/{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte.gz",
}
# Where Keras downloads from, and the SHA-256 of the original mnist.npz (keras.datasets.mnist, Keras 3).
_KERAS_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
_MNIST_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
# IDX magic numbers (LeCun's format): 0x00 0x00, type 0x08 = unsigned byte, then the number of dimensions.
_IDX_MAGIC = {3: 0x00000803, 1: 0x00000801}

Split = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # x_train, y_train, x_test, y_test (uint8)


@dataclass
class Dataset:
    """One data set, ready for training: pixels float32 in [0, 1], labels int64.

    ``source`` says where it came from: a file or folder path, ``"embedded sample"`` or
    ``"keras download"``. Results computed on a sample (``is_sample``) must be labelled as such.
    """

    name: str
    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    is_sample: bool
    source: str

    #: for a user's data file: its SHA-256 and how its inputs were scaled (see load_data_file)
    sha256: str | None = None
    scaling: str | None = None

    @property
    def num_classes(self) -> int:
        if self.name in DATASETS:
            return NUM_CLASSES
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x_train.shape[1:])


def load_dataset(
    name: str, data_dir: str | os.PathLike | None = None, *, source: str = "auto"
) -> Dataset:
    """Load ``name`` (one of :data:`DATASETS`).

    ``source="auto"``: the full set from ``data_dir`` if given (missing there is an error), else from
    ``$NVMKIT_DATA_DIR``, else from Keras's cache (``$KERAS_HOME/datasets``, default
    ``~/.keras/datasets``); if none holds it, the embedded stratified sample.
    ``source="full"``: the same folders, then Keras's download; never the sample.
    ``source="sample"``: the embedded sample.
    """
    name = _canonical_name(name)
    if source not in SOURCES:
        raise ConfigError(f"unknown data source {source!r}; choose one of: {', '.join(SOURCES)}")
    if source == "sample":
        return load_sample(name)

    if data_dir is not None:
        folder = check_data_dir(data_dir, _LAYOUT[name])
        found = _read_folder(name, folder)
        if found is None:
            raise DataError(
                f"{name} not found in {folder}: expected {folder / _LAYOUT[name]} (Keras cache layout); "
                f"fix --data-dir, or omit it to use {ENV_VAR}, ~/.keras/datasets or the embedded sample"
            )
        return _as_dataset(name, found[0], is_sample=False, source=found[1])

    for folder in _search_folders():
        found = _read_folder(name, folder)
        if found is not None:
            return _as_dataset(name, found[0], is_sample=False, source=found[1])
    if source == "auto":
        return load_sample(name)
    return _as_dataset(name, _download(name), is_sample=False, source=DOWNLOAD_SOURCE)


def check_data_dir(data_dir: str | os.PathLike, layout: str = "mnist.npz") -> Path:
    """The data folder a user named, or a DataError that names the fix: a command checks its
    --data-dir before any work, rather than each point of a sweep failing on it."""
    folder = Path(data_dir).expanduser()
    if folder.is_file():
        raise DataError(f"--data-dir {folder} is a file; pass the folder that holds it (Keras cache layout: "
                        f"{layout}), or a data file of your own as --dataset {folder}")
    if not folder.is_dir():
        raise DataError(f"data directory {folder} does not exist; pass an existing folder to --data-dir "
                        f"(Keras cache layout: {layout})")
    return folder


def load_sample(name: str) -> Dataset:
    """The stratified sample shipped inside the package (made by ``scripts/make_sample.py``)."""
    name = _canonical_name(name)
    resource = resources.files("nvmkit.workflow.data_sample").joinpath(f"{name}.npz")
    label = f"{SAMPLE_SOURCE} {name}.npz"
    try:
        raw = resource.read_bytes()
    except (FileNotFoundError, OSError):
        raise DataError(
            f"the {label} is missing from this installation; reinstall nvmkit (pip install -e .)"
        ) from None
    arrays = _read_npz(io.BytesIO(raw), label)
    return _as_dataset(name, arrays, is_sample=True, source=SAMPLE_SOURCE)


def read_raw(name: str, folder: str | os.PathLike) -> Split:
    """The uint8 arrays of ``name`` in a Keras-cache-layout ``folder`` (raises DataError if absent)."""
    name = _canonical_name(name)
    found = _read_folder(name, Path(folder))
    if found is None:
        raise DataError(f"{name} not found in {folder}: expected {Path(folder) / _LAYOUT[name]}")
    return found[0]


def _canonical_name(name: str) -> str:
    key = str(name).strip().lower().replace("_", "-")
    if key not in DATASETS:
        raise ConfigError(f"unknown data set {name!r}; choose one of: {', '.join(DATASETS)}")
    return key


def _keras_cache_root() -> Path:
    """Keras's home, resolved as Keras resolves it (KERAS_HOME, else ~/.keras)."""
    return Path(os.environ.get("KERAS_HOME") or "~/.keras").expanduser()


def _search_folders() -> list[Path]:
    folders = []
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        env_dir = Path(env).expanduser()
        # A set variable that names nothing is a typo, not "no data": say so instead of using the sample.
        if not env_dir.is_dir():
            raise DataError(
                f"{ENV_VAR}={env} is not a directory; point it at a Keras-cache-layout folder or unset it"
            )
        folders.append(env_dir)
    folders.append(_keras_cache_root() / "datasets")
    return folders


def _read_folder(name: str, folder: Path) -> tuple[Split, str] | None:
    """(arrays, source path) if ``folder`` holds ``name``, None if it holds none of its files."""
    if name == "mnist":
        path = folder / _MNIST_FILE
        return (_read_npz(path, str(path)), str(path)) if path.is_file() else None
    sub = folder / _FASHION_DIR
    paths = {split: tuple(sub / f for f in files) for split, files in _FASHION_FILES.items()}
    present = [p for pair in paths.values() for p in pair if p.is_file()]
    if not present:
        return None
    if len(present) < 4:
        missing = sorted(p.name for pair in paths.values() for p in pair if not p.is_file())
        raise DataError(
            f"{sub} is incomplete (missing {', '.join(missing)}); copy or re-download all four "
            f"Fashion-MNIST files ({_LAYOUT[name]})"
        )
    x_train, y_train = _read_idx_pair(*paths["train"])
    x_test, y_test = _read_idx_pair(*paths["test"])
    return (x_train, y_train, x_test, y_test), str(sub)


def _fix_hint(where: str) -> str:
    return f"delete {where} and re-download or re-copy it"


def _user_fix_hint(where: str) -> str:
    # a user's own data file has nothing to re-download: say how to write one nvmkit reads
    return (f"write {where} with np.savez({where!r}, x_train=..., y_train=..., x_test=..., y_test=...) "
            "(numeric arrays, integer labels)")


_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip archive's first bytes (an empty one: the second)
_NPY_MAGIC = b"\x93NUMPY"


def _read_npz(file, where: str, check=None, hint=_fix_hint) -> Split:
    # Look at the first bytes before numpy does: for anything that is neither a zip nor a .npy
    # (a text file named mnist.npz, an HTML error page) np.load guesses "pickled data" and its
    # message advises allow_pickle=True, which nvmkit never does with a file it did not write
    head = _head(file, where, hint=hint)
    if not head.startswith(_ZIP_MAGIC + (_NPY_MAGIC,)):
        raise DataError(f"{where} is not a valid .npz file (not a zip archive of .npy arrays); "
                        f"{hint(where)}")
    try:
        npz = np.load(file, allow_pickle=False)
        if not hasattr(npz, "files"):  # a bare .npy array, not an archive
            raise DataError(f"{where} is a single .npy array, not an .npz archive; {hint(where)}")
        with npz:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in npz.files]
            if missing:
                raise DataError(f"{where} lacks array(s) {', '.join(missing)}; {hint(where)}")
            arrays = (npz["x_train"], npz["y_train"], npz["x_test"], npz["y_test"])
    except DataError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc):  # object arrays: loading them would run the file's code
            raise DataError(f"{where} is not a valid .npz file for nvmkit: it holds pickled Python objects, "
                            f"which nvmkit never loads; {hint(where)}") from None
        raise DataError(f"{where} is not a readable .npz archive ({_one_line(exc)}); {hint(where)}") from None
    except (OSError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{where} is not a readable .npz archive ({_one_line(exc)}); {hint(where)}") from None
    check = check or _check_split
    check(arrays[0], arrays[1], where, "train")
    check(arrays[2], arrays[3], where, "test")
    return arrays


def _head(file, where: str, n: int = 6, hint=_fix_hint) -> bytes:
    """The first ``n`` bytes of a path or a binary file object (left at its start)."""
    try:
        if hasattr(file, "read"):
            start = file.tell()
            head = file.read(n)
            file.seek(start)
            return head
        with open(file, "rb") as fh:
            return fh.read(n)
    except OSError as exc:
        raise DataError(f"cannot read {where} ({_one_line(exc)}); {hint(where)}") from None


def _read_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    x = _read_idx(images_path, ndim=3)
    y = _read_idx(labels_path, ndim=1)
    if len(x) != len(y):
        raise DataError(
            f"{images_path} has {len(x)} images but {labels_path} has {len(y)} labels; "
            f"re-download or re-copy both files"
        )
    _check_split(x, y, str(images_path.parent), images_path.name.split("-")[0])
    return x, y


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """One gzip IDX file: big-endian magic, ``ndim`` big-endian int32 sizes, then uint8 data."""
    try:
        data = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path} is truncated or not gzip ({_one_line(exc)}); {_fix_hint(path)}") from None
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path} is too short for an IDX header; {_fix_hint(path)}")
    magic, *dims = np.frombuffer(data, dtype=">u4", count=1 + ndim)
    if int(magic) != _IDX_MAGIC[ndim]:
        raise DataError(
            f"{path} has IDX magic number {int(magic):#010x}, expected {_IDX_MAGIC[ndim]:#010x}; {_fix_hint(path)}"
        )
    dims = tuple(int(d) for d in dims)
    expected = int(np.prod(dims))
    if len(data) - header != expected:
        raise DataError(
            f"{path} holds {len(data) - header} bytes of data but its header says {dims} = {expected}; "
            f"{_fix_hint(path)}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _check_split(x: np.ndarray, y: np.ndarray, where: str, split: str) -> None:
    problem = None
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE:
        problem = f"{split} images are {x.dtype} {x.shape}, expected uint8 (N, 28, 28)"
    elif y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        problem = f"{split} labels are {y.dtype} {y.shape}, expected integers ({len(x)},)"
    elif len(y) == 0:
        problem = f"{split} split is empty"
    elif int(y.min()) < 0 or int(y.max()) >= NUM_CLASSES:
        problem = f"{split} labels span {int(y.min())}..{int(y.max())}, expected 0..{NUM_CLASSES - 1}"
    if problem:
        raise DataError(f"{where}: {problem}; {_fix_hint(where)}")


def _as_dataset(name: str, arrays: Split, *, is_sample: bool, source: str) -> Dataset:
    x_train, y_train, x_test, y_test = arrays
    return Dataset(
        name=name,
        x_train=_scale(x_train),
        y_train=y_train.astype(np.int64),
        x_test=_scale(x_test),
        y_test=y_test.astype(np.int64),
        is_sample=is_sample,
        source=source,
    )


def _scale(x: np.ndarray) -> np.ndarray:
    return np.divide(x, np.float32(255.0), dtype=np.float32)


# -- a user's data file ---------------------------------------------------------------------------

#: how a data file's inputs become model inputs: ``auto``: uint8 is divided by 255, floats must
#: already lie in [0, 1]; ``none``: the values are used as they are (a model that normalises its
#: own input); test-set noise then cannot be applied (the injectors work on [0, 1])
SCALINGS = ("auto", "none")


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (how a result names the model and data files it used)."""
    import hashlib

    path = os.path.expanduser(path)  # "~/data.npz" in a configuration file: the user's home
    try:
        st = os.stat(path)
        # a sweep resolves every point: a large file is hashed once per process, keyed by its
        # identity and times (small files, a model, are hashed afresh: no stale hash on a
        # file system with coarse timestamps)
        key = (str(Path(path).resolve()), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if key in _HASHES:
            return _HASHES[key]
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc.strerror or exc}); check the path") from None
    if st.st_size >= _HASH_CACHE_BYTES:
        _HASHES[key] = h.hexdigest()
    return h.hexdigest()


_HASHES: dict = {}
_HASH_CACHE_BYTES = 16 * 2**20


def load_data_file(path: str | os.PathLike, *, scaling: str = "auto",
                   sha256: str | None = None) -> Dataset:
    """A user's ``.npz`` with ``x_train``, ``y_train``, ``x_test``, ``y_test``.

    Inputs: any shape per sample (images ``(N, H, W)`` or ``(N, H, W, C)``, feature vectors
    ``(N, F)``), the same for both splits; labels: integer class indices ``(N,)``, >= 0.
    ``scaling="auto"``: uint8 inputs are divided by 255; float inputs must lie in [0, 1]
    (anything else is refused: declare ``scaling="none"`` to feed the values unchanged).
    ``sha256``: the file's recorded hash (from a result); a file that changed since is refused.
    Returns a :class:`Dataset` named after the file's stem, float32 inputs, int64 labels.
    """
    if scaling not in SCALINGS:
        raise ConfigError(f"dataset.scaling must be one of {', '.join(SCALINGS)}, got {scaling!r}")
    p = Path(path).expanduser()
    if p.is_dir():
        raise DataError(f"{p} is a folder; pass an .npz file to --dataset, or a Keras-cache-layout "
                        "folder to --data-dir")
    if not p.is_file():
        raise DataError(f"data file {p} does not exist; pass an .npz with x_train, y_train, x_test, y_test")
    digest = file_sha256(p)
    if sha256 is not None and sha256 != digest:
        raise DataError(f"{p} has changed since it was recorded (sha256 {digest[:12]}..., recorded "
                        f"{str(sha256)[:12]}...); restore that file or drop dataset.sha256")
    arrays = _read_npz(p, str(p), check=_check_user_split, hint=_user_fix_hint)
    if arrays[0].shape[1:] != arrays[2].shape[1:]:
        raise DataError(f"{p}: x_train samples are {arrays[0].shape[1:]} but x_test samples are "
                        f"{arrays[2].shape[1:]}; give both splits the same sample shape")
    x_train, x_test = (_scale_user(a, scaling, str(p), split)
                       for a, split in ((arrays[0], "x_train"), (arrays[2], "x_test")))
    return Dataset(name=p.stem, x_train=x_train, y_train=arrays[1].astype(np.int64), x_test=x_test,
                   y_test=arrays[3].astype(np.int64), is_sample=False, source=str(p),
                   sha256=digest, scaling=scaling)


def _check_user_split(x: np.ndarray, y: np.ndarray, where: str, split: str) -> None:
    problem = None
    if x.ndim < 2 or not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        problem = (f"x_{split} is {x.dtype} {x.shape}, expected numbers shaped (N, ...) "
                   "(images (N, H, W[, C]) or vectors (N, F))")
    elif y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        problem = f"y_{split} is {y.dtype} {y.shape}, expected integer class indices ({len(x)},)"
    elif len(y) == 0:
        problem = f"the {split} split is empty"
    elif int(y.min()) < 0:
        problem = f"y_{split} holds a negative label ({int(y.min())}); labels are class indices 0..C-1"
    if problem:
        raise DataError(f"{where}: {problem}")


def _scale_user(x: np.ndarray, scaling: str, where: str, split: str) -> np.ndarray:
    if scaling == "none" or np.issubdtype(x.dtype, np.floating):
        # checked first in either scaling: a NaN has no place in [0, 1], and declaring scaling
        # "none" (the fix the range error names) would not make it usable either
        out = x.astype(np.float32)
        if not np.isfinite(out).all():
            raise DataError(f"{where}: {split} holds NaN or infinite values; clean the data")
        if scaling == "none":
            return out
    if x.dtype == np.uint8:
        return _scale(x)
    if np.issubdtype(x.dtype, np.integer):
        raise DataError(f"{where}: {split} is {x.dtype}; scaling 'auto' takes uint8 pixels (divided by 255) "
                        "or floats in [0, 1]; convert the file, or declare dataset.scaling = \"none\"")
    if out.min() < 0 or out.max() > 1:
        raise DataError(f"{where}: {split} values span {float(out.min()):.4g}..{float(out.max()):.4g}, "
                        "outside [0, 1]; scale them to [0, 1], or declare dataset.scaling = \"none\" "
                        "to feed them unchanged (test-set noise is then unavailable)")
    return out


def _download(name: str) -> Split:
    """Fetch the files with Keras into its cache, then read them like any local folder."""
    root = _keras_cache_root()
    try:
        # Keras falls back to /tmp/.keras when its home is missing or read-only; create it so the
        # download lands where the next run looks.
        (root / "datasets").mkdir(parents=True, exist_ok=True)
    except OSError:
        pass
    fallback = Path("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()) / ".keras"
    target = (root if os.access(root, os.W_OK) else fallback) / "datasets"
    # A file already at Keras's effective target would be hash-checked (and deleted) by Keras: read it here.
    found = _read_folder(name, target)
    if found is not None:
        return found[0]
    try:
        import keras

        if name == "mnist":
            keras.utils.get_file(
                _MNIST_FILE, origin=_KERAS_ORIGIN + _MNIST_FILE, file_hash=_MNIST_SHA256,
                cache_dir=str(root), cache_subdir="datasets",
            )
        else:
            for fname in (f for pair in _FASHION_FILES.values() for f in pair):
                keras.utils.get_file(
                    fname, origin=_KERAS_ORIGIN + fname, cache_dir=str(root),
                    cache_subdir=os.path.join("datasets", _FASHION_DIR),
                )
    except Exception as exc:  # offline, proxy, TLS, missing Keras: all end the same way for the user
        raise DataError(
            f"{name}: no local copy found and Keras's download failed ({_one_line(exc)}); provide it with "
            f"--data-dir DIR, the {ENV_VAR} environment variable, or ~/.keras/datasets "
            f"(Keras cache layout: {_LAYOUT[name]})"
        ) from None
    found = _read_folder(name, target)
    if found is None:
        raise DataError(f"Keras's download of {name} left no files in {target}; retry, or use --data-dir DIR")
    return found[0]


def _one_line(exc: BaseException, limit: int = 160) -> str:
    text = re.sub(r"\s+", " ", str(exc) or type(exc).__name__).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."
