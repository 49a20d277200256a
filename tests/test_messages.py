"""What the command line says (issue 19, point 5): the right noun for the data, a model file that
is not a .keras zip named as what it is, and nvmkit's warnings as one clean line."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

from nvmkit.cli import app
from nvmkit.core.errors import ConfigError, NvmkitWarning

keras = pytest.importorskip("keras")
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def flat(text: str) -> str:
    """The output with every run of white space one space (a table title may wrap)."""
    return " ".join(text.split())


def _files(folder, sample_shape):
    """A tiny .npz of samples shaped ``sample_shape`` (two classes) and a one-layer .keras model
    that reads them, in ``folder``."""
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 1, (40, *sample_shape)).astype(np.float32)
    y = (x.reshape(40, -1)[:, 0] > 0.5).astype(np.int64)
    np.savez(folder / "data.npz", x_train=x[:30], y_train=y[:30], x_test=x[30:], y_test=y[30:])
    inp = keras.Input(sample_shape)
    h = keras.layers.Flatten()(inp) if len(sample_shape) > 1 else inp
    keras.Model(inp, keras.layers.Dense(2, activation="softmax")(h)).save(folder / "m.keras")
    return folder / "m.keras", folder / "data.npz"


def _hdf5_model(path):
    """A Keras model saved in the legacy HDF5 format, under the name ``path`` (e.g. x.keras)."""
    inp = keras.Input((4,))
    h5 = path.with_suffix(".h5")
    keras.Model(inp, keras.layers.Dense(2)(inp)).save(h5)
    path.write_bytes(h5.read_bytes())
    h5.unlink()
    assert path.read_bytes()[:4] == b"\x89HDF"
    return path


@pytest.mark.parametrize("shape, noun", [((12,), "samples"), ((6, 6), "images"), ((6, 6, 3), "images")])
def test_a_data_file_of_feature_vectors_counts_test_samples(tmp_path, shape, noun):
    """Fails if a run on feature vectors (N, F) says "test images" (or images say "samples")."""
    model, data = _files(tmp_path, shape)
    res = invoke("run", "--model", model, "--dataset", data, "--trials", 1, "--energy", "none",
                 "--noise", "none")
    assert res.exit_code == 0, res.output
    text = flat(res.output)
    assert f"(data file, 10 test {noun})" in text, text
    other = "images" if noun == "samples" else "samples"
    assert f"test {other}" not in text, text


def test_an_hdf5_model_file_is_named_as_such(tmp_path):
    """Fails if a model saved in Keras 2's HDF5 format under a .keras name is answered with
    Keras's "File not found" or a bare "not a .keras (zip) file": the line names HDF5, says how
    to convert it, and stays one line with exit code 2."""
    from nvmkit import load_model_file

    bad = _hdf5_model(tmp_path / "old.keras")
    with pytest.raises(ConfigError, match=r"is an HDF5 file \(Keras 2's \.h5 format\), not a \.keras \(zip\) file") as exc:
        load_model_file(bad)
    # the fix for an HDF5 file: Keras reads it only under an .h5 name, and then without safe mode
    assert "\n" not in str(exc.value) and "rename it to .h5" in str(exc.value)
    assert "without safe mode" in str(exc.value) and ".save('model.keras')" in str(exc.value)
    _, data = _files(tmp_path, (4,))
    res = invoke("run", "--model", bad, "--dataset", data, "--trials", 1)
    assert res.exit_code == 2, res.output
    errors = [line for line in res.output.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and "HDF5" in errors[0], res.output
    assert "Traceback" not in res.output
    assert "not found" not in res.output.lower()


@pytest.mark.parametrize("content, kind", [
    ("hdf5", "an HDF5 file (Keras 2's .h5 format), not a .keras (zip) file"),
    (b"", "an empty file, not a .keras (zip) file"),
    (b"not a model", "not a .keras (zip) file"),
])
def test_a_cached_file_that_is_not_a_keras_zip_is_named_in_the_warning(tmp_path, content, kind):
    """Fails if the model cache's warning for a foreign file says "unreadable (ValueError)"
    (Keras's misleading "File not found" behind it) instead of what the file is."""
    from nvmkit.workflow import training

    path = tmp_path / "cached.keras"
    if content == "hdf5":
        _hdf5_model(path)
    else:
        path.write_bytes(content)
    assert training.not_a_keras_zip(path) == kind
    with pytest.warns(NvmkitWarning) as rec:
        assert training._load(path, None) is None
    (w,) = rec
    assert str(w.message) == f"cached model {path} is unreadable: {kind}; retraining and replacing it"
    assert issubclass(w.category, UserWarning)  # filters on UserWarning keep catching it


def test_the_cli_prints_a_cache_warning_as_one_line(tmp_path, monkeypatch):
    """The bug: `nvmkit run` printed the cache's warning in Python's format, with nvmkit's own
    source file and line and the `warnings.warn(...)` line of code in front of it. Trains a tiny
    MLP into an empty cache, puts an HDF5 file in its place, and runs again: the warning must be
    one line `warning: cached model ... HDF5 ...; retraining and replacing it`, and the run goes
    on (it retrains and reports). Other warnings keep Python's format (checked outside the CLI)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("NVMKIT_CACHE_DIR", str(cache))
    args = ("run", "--dataset", "mnist", "--source", "sample", "--network", "mlp:hidden=8",
            "--epochs", 1, "--trials", 1, "--energy", "none", "--noise", "none",
            "--set", 'scenarios=["digital"]')
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    assert "warning" not in first.output
    assert "test images" in flat(first.output)  # the embedded MNIST sample: images
    (cached,) = cache.glob("*.keras")
    _hdf5_model(tmp_path / "old.keras")
    cached.write_bytes((tmp_path / "old.keras").read_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("default")  # as a user's Python shows it (pytest may record it otherwise)
        again = invoke(*args)
    assert again.exit_code == 0, again.output
    lines = [line for line in again.output.splitlines() if "unreadable" in line or "warning:" in line]
    assert len(lines) == 1, again.output
    (line,) = lines
    assert line.startswith("warning: cached model "), line
    assert line.endswith("is unreadable: an HDF5 file (Keras 2's .h5 format), not a .keras (zip) file; "
                         "retraining and replacing it"), line
    # Python's format would put "<nvmkit file>.py:LINE: UserWarning: " before it and the
    # warnings.warn(...) line of code after it (a library's warnings, e.g. Keras's own
    # DeprecationWarning under numpy 2, keep that format and may appear)
    for noise in ("UserWarning", "NvmkitWarning", "training.py", "pipeline.py", "warnings.warn"):
        assert noise not in again.output, again.output
    assert cached.read_bytes()[:2] == b"PK"  # retrained and replaced by a .keras zip


def test_warnings_as_lines_passes_other_warnings_on(capsys):
    """Only nvmkit's own warnings are reformatted: a library's go, unchanged, to whatever showed
    warnings before (Python's format by default), and the override ends with the command."""
    from nvmkit.cli.app import warnings_as_lines

    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: \
            seen.append((str(message), category, filename))
        before = warnings.showwarning
        with warnings_as_lines():
            warnings.warn("from nvmkit", NvmkitWarning)
            warnings.warn("from a library", DeprecationWarning)
        assert warnings.showwarning is before
    assert seen == [("from a library", DeprecationWarning, __file__)]
    assert capsys.readouterr().err == "warning: from nvmkit\n"
