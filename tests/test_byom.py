"""Your own model and data, end to end: a functional model with BatchNormalization and a residual
Add, saved to .keras, with a generated 16 x 16 x 3 .npz, through `nvmkit run`, `nvmkit energy`
and a two-point sweep; the checks that refuse bad data before any work; energy from the
converted graph for any model."""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nvmkit.cli import app
from nvmkit.core.errors import ConfigError, DataError

keras = pytest.importorskip("keras")
runner = CliRunner()
CLASSES = 3


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _images(rng, n):
    """16 x 16 x 3 uint8 images whose class is their brightest channel."""
    y = rng.integers(0, CLASSES, n)
    x = rng.integers(0, 60, (n, 16, 16, 3)).astype(np.uint8)
    for c in range(CLASSES):
        x[y == c, :, :, c] += 150
    return x, y


def _resnet_block_model(seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((16, 16, 3))
    # named layers: Keras's default names depend on how many models the process built before
    h = keras.layers.Conv2D(4, 3, padding="same", name="conv_a")(inp)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.ReLU()(h)
    r = keras.layers.Conv2D(4, 3, padding="same", name="conv_b")(h)
    h = keras.layers.ReLU()(keras.layers.Add(name="residual")([h, r]))
    h = keras.layers.GlobalAveragePooling2D()(h)
    out = keras.layers.Dense(CLASSES, activation="softmax", name="head")(h)
    model = keras.Model(inp, out)
    # BatchNormalization statistics that are not the identity, so folding them matters
    bn = model.get_layer("bn")
    bn.moving_mean.assign(np.linspace(-0.2, 0.3, 4).astype("float32"))
    bn.moving_variance.assign(np.linspace(0.5, 2.0, 4).astype("float32"))
    return model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("byom")
    rng = np.random.default_rng(0)
    (xtr, ytr), (xte, yte) = _images(rng, 64), _images(rng, 32)
    np.savez(root / "data.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    model = _resnet_block_model()
    model.save(root / "m.keras")
    scores = np.asarray(model(xte.astype("float32") / 255, training=False))
    return {"root": root, "model": root / "m.keras", "data": root / "data.npz",
            "x_test": xte, "y_test": yte, "digital": float(np.mean(scores.argmax(-1) == yte))}


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cli_run_energy_and_sweep_on_own_model_and_npz(files, tmp_path):
    """Point 5. Fails if: the data file's uint8 images are not divided by 255 or are reshaped
    wrongly (digital accuracy differs from Keras's own on x / 255), the record names the files by
    path only (sha256 missing or of the wrong file), the run's energy is priced from another
    footprint than `nvmkit energy --model` (totals differ), or a sweep over the model file does
    not store, resume and plot its points."""
    out = tmp_path / "r.json"
    res = invoke("run", "--model", files["model"], "--dataset", files["data"], "--device", "reram",
                 "--trials", 2, "-o", out)
    assert res.exit_code == 0, res.output
    rec = json.loads(out.read_text())
    assert rec["config"]["model"]["sha256"] == _sha(files["model"])
    assert rec["config"]["dataset"]["sha256"] == _sha(files["data"])
    assert "network" not in rec["config"]  # the model file is the network, not the default mlp
    assert rec["dataset"]["sample_shape"] == [16, 16, 3] and rec["dataset"]["classes"] == CLASSES
    assert rec["dataset"]["scaling"] == "auto"
    assert rec["accuracy"]["digital"]["mean"] == pytest.approx(files["digital"], abs=1e-12)
    for scenario in ("internal", "external", "both"):
        assert rec["accuracy"][scenario]["trials"] == 2
    assert rec["timing"]["train_epochs"] == 0  # deployed as it is

    energy = invoke("energy", "--model", files["model"], "--device", "reram", "--json")
    assert energy.exit_code == 0, energy.output
    report = json.loads(energy.output)
    assert report["total_J"] == pytest.approx(rec["energy"]["total_J"], rel=1e-12)
    layers = {t["layer"] for t in report["terms"]}
    assert {"conv_a", "conv_b", "head", "residual"} <= layers  # both convs, the readout, the residual
    assert "bn" not in layers  # folded into conv_a: no digital work of its own

    exp = tmp_path / "exp.toml"
    exp.write_text(f'[experiment]\nname = "mine"\n[base]\nmodel = "{files["model"].as_posix()}"\n'
                   f'dataset = "{files["data"].as_posix()}"\ntrials = 2\nscenarios = ["digital", "both"]\n'
                   '[grid]\ndevice = ["reram", "sonos"]\n')
    db = tmp_path / "mine.db"
    res = invoke("sweep", exp, "--db", db)
    assert res.exit_code == 0, res.output
    assert "2 rows written" in res.output
    res = invoke("sweep", exp, "--db", db)
    assert res.exit_code == 0 and "2 already in" in res.output, res.output
    table = invoke("results", "--db", db, "--json")
    assert table.exit_code == 0, table.output
    rows = json.loads(table.output)
    assert sorted(r["device"] for r in rows) == ["reram", "sonos"]
    assert all(r["network"] == "m.keras" for r in rows)
    res = invoke("plot", "--db", db, "--out", tmp_path / "plots", "--kind", "energy")
    assert res.exit_code == 0 and (tmp_path / "plots" / "energy.png").is_file(), res.output


def test_rerun_refuses_a_changed_model_file(files, tmp_path):
    """Fails if a result re-run silently uses a model file that changed since it was recorded."""
    model = tmp_path / "m.keras"
    model.write_bytes(files["model"].read_bytes())
    out = tmp_path / "r.json"
    res = invoke("run", "--model", model, "--dataset", files["data"], "--trials", 1, "--noise", "none",
                 "--dry-run")
    assert res.exit_code == 0, res.output
    cfg = tmp_path / "c.toml"
    cfg.write_text(res.output)
    _resnet_block_model(seed=1).save(model)  # other weights, same path
    res = invoke("run", cfg, "-o", out)
    assert res.exit_code == 2 and "has changed since it was recorded" in res.output, res.output
    assert not out.exists()


def _npz(path, xtr, ytr, xte=None, yte=None):
    np.savez(path, x_train=xtr, y_train=ytr, x_test=xtr if xte is None else xte,
             y_test=ytr if yte is None else yte)
    return path


@pytest.mark.parametrize("make,needle", [
    (lambda p: _npz(p, np.zeros((4, 28, 28), np.uint8), np.arange(4) % 3),
     "samples are shaped (28, 28) but model"),
    (lambda p: _npz(p, np.zeros((4, 16, 16, 3), np.uint8), np.arange(4)),
     "labels up to 3 but the model outputs 3 classes"),
    (lambda p: _npz(p, np.full((4, 16, 16, 3), 2.0, np.float32), np.arange(4) % 3),
     "outside [0, 1]"),
    (lambda p: _npz(p, np.zeros((4, 16, 16, 3), np.uint16), np.arange(4) % 3), "uint16"),
    (lambda p: _npz(p, np.zeros((4, 16, 16, 3), np.uint8), np.arange(4) - 1), "negative label"),
    (lambda p: _npz(p, np.zeros((4, 16, 16, 3), np.uint8), np.arange(4) % 3,
                    np.zeros((2, 16, 16, 1), np.uint8), np.arange(2)), "same sample shape"),
])
def test_bad_data_is_one_line_before_any_work(files, tmp_path, make, needle):
    """Fails if a data/model mismatch reaches the engine (a Keras traceback, or a run that
    evaluates nonsense) instead of one line naming the fix, exit code 2, no result written."""
    data = make(tmp_path / "bad.npz")
    out = tmp_path / "r.json"
    res = invoke("run", "--model", files["model"], "--dataset", data, "--trials", 1, "-o", out)
    assert res.exit_code == 2, res.output
    assert needle in res.output and "Traceback" not in res.output
    assert not out.exists()


def test_unscaled_data_needs_declaring_and_then_has_no_test_set_noise(files, tmp_path):
    """Fails if scaling 'none' feeds values unchanged but still runs [0, 1] test-set noise on
    them, or if it rescales them."""
    from nvmkit import RunConfig, run
    from nvmkit.workflow.data import load_data_file

    x = np.random.default_rng(1).normal(size=(6, 16, 16, 3)).astype(np.float32)
    data = _npz(tmp_path / "raw.npz", x, np.arange(6) % 3)
    ds = load_data_file(data, scaling="none")
    np.testing.assert_array_equal(ds.x_train, x)
    cfg = {"model": str(files["model"]), "dataset": {"file": str(data), "scaling": "none"}, "trials": 1}
    with pytest.raises(ConfigError, match="scaling is none"):
        run(RunConfig.from_dict(cfg))
    res = run(RunConfig.from_dict({**cfg, "noise": "none", "scenarios": ["digital"]}))
    scores = np.asarray(keras.saving.load_model(files["model"])(x, training=False))
    assert res.accuracy["digital"]["mean"] == pytest.approx(np.mean(scores.argmax(-1) == np.arange(6) % 3))


def test_ideal_crossbar_reproduces_the_model_from_the_python_api(files):
    """The Python API path (nvmkit.run with model and dataset file). Fails if the analog path
    feeds the model differently from the digital one (with the ideal device and crossbar the
    converted model equals the original, so every trial's accuracy equals the digital one)."""
    from nvmkit import RunConfig, run

    res = run(RunConfig.from_dict({"model": str(files["model"]), "dataset": str(files["data"]),
                                   "device": "ideal", "noise": "none", "trials": 2,
                                   "scenarios": ["digital", "internal"],
                                   "crossbar": {"nonideal": {"programming_error": False,
                                                             "read_noise": False, "quantize": False}}}))
    assert res.accuracy["internal"]["per_trial"] == [res.accuracy["digital"]["mean"]] * 2


def test_training_a_model_file_only_when_asked(files, tmp_path):
    """Fails if --epochs is ignored for a model file (train_epochs 0), if the user's file is
    overwritten by the training, or if a one-trial result cannot be written (its undefined 95%
    CI was a NaN, which strict JSON refuses: a traceback after the whole run)."""
    before = _sha(files["model"])
    out = tmp_path / "r.json"
    res = invoke("run", "--model", files["model"], "--dataset", files["data"], "--epochs", 2,
                 "--trials", 1, "--noise", "none", "--energy", "none", "-o", out)
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["timing"]["train_epochs"] == 2
    assert _sha(files["model"]) == before


@pytest.mark.parametrize("sample,model_input,ok", [
    ((28, 28), (28, 28, 1), True),   # a channel axis of size 1 added
    ((28, 28), (784,), True),        # flattened into a vector input
    ((16, 16, 3), (16, 16, 3), True),
    ((16, 16, 3), (48, 16), False),  # same size, other layout: never reshaped blindly
    ((28, 28), (28, 28, 3), False),
])
def test_samples_fit_the_model_input_or_are_refused(sample, model_input, ok):
    from nvmkit.workflow.user_model import ModelInput

    inp = keras.Input(model_input)
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Flatten()(inp)))
    if not ok:
        with pytest.raises(DataError, match="samples are shaped"):
            ModelInput.of(model, sample)
        return
    feed = ModelInput.of(model, sample)
    x = np.arange(2 * np.prod(sample), dtype=np.float32).reshape(2, *sample)
    assert feed.prepare(x).shape == (2, *model_input)
    view = feed.noise_view(x)
    assert view.ndim == 3 and np.array_equal(feed.prepare(view), feed.prepare(x))


# -- energy for any model -----------------------------------------------------------------------

def test_a_third_party_network_plugin_is_priced():
    """Fails if energy still needs an architecture builder per network family: a plugin nvmkit
    has never heard of (a residual CNN) is priced from its converted graph."""
    import pluggy

    from nvmkit import NetworkMapper, hookimpl
    from nvmkit.core import hookspecs
    from nvmkit.core.registry import Registry
    from nvmkit.reproduction import energy_table as et

    class Residual(NetworkMapper):
        name = "residual-test"

        def __init__(self, filters=4):
            self.filters = filters

        def build(self, input_shape, num_classes, sigma_neu=0.0, seed=0):
            inp = keras.Input((*input_shape, 1))
            h = keras.layers.Conv2D(self.filters, 3, padding="same", activation="relu")(inp)
            h = keras.layers.Add()([h, keras.layers.Conv2D(self.filters, 3, padding="same")(h)])
            out = keras.layers.Dense(num_classes)(keras.layers.Flatten()(h))
            return keras.Model(inp, out)

        def prepare(self, x):
            return x[..., None]

    class Plugin:
        @hookimpl
        def nvmkit_network_mappers(self):
            return [Residual]

    pm = pluggy.PluginManager("nvmkit")
    pm.add_hookspecs(hookspecs)
    pm.register(Plugin(), name="residual-test")
    for name in ("nvmkit_plugins.devices.reram", "nvmkit_plugins.energy.crossbar"):
        pm.register(__import__(name, fromlist=["x"]), name=name)
    report = et.energy_report("residual-test:filters=2", "reram", registry=Registry(pm))
    # MACs per inference, from the architecture: two 3x3 convs over 28 x 28 positions, and the
    # readout (bias rows excluded from neither: the crossbar counts its bias row as a MAC row)
    macs = 28 * 28 * ((9 * 1 + 1) * 2 + (9 * 2 + 1) * 2) + (28 * 28 * 2 + 1) * 10
    assert report.counts_by_component()["vmm"] == macs


def test_monte_carlo_names_the_missing_prepare():
    """Fails if monte_carlo on a CNN without ``prepare`` ends in a Keras shape error (it showed
    a shape like (1, 1, 1000, 28, 28) and pointed at a mapper the user does not have) instead of
    one line naming the fix."""
    from nvmkit import convert, create_from_spec, monte_carlo

    inp = keras.Input((28, 28, 1))
    model = keras.Model(inp, keras.layers.Dense(10)(keras.layers.Flatten()(keras.layers.Conv2D(2, 3)(inp))))
    net = convert(model, create_from_spec("device", "ideal"), trials=2)
    x, y = np.zeros((5, 28, 28), np.float32), np.zeros(5, int)
    with pytest.raises(ConfigError, match=r"takes inputs shaped \(28, 28, 1\).*prepare=lambda a: a\[\.\.\., None\]"):
        monte_carlo(net, x, y, trials=2, seed=0)
    assert monte_carlo(net, x, y, trials=2, seed=0, prepare=lambda a: a[..., None]).trials == 2


def test_sweep_points_follow_file_content_not_folder(files, tmp_path):
    """Fails if a sweep point's identity holds the files' paths (moving them would redo a whole
    sweep) or ignores their content (a retrained model would be skipped as already done)."""
    import shutil

    from nvmkit import RunConfig, resolve
    from nvmkit.sweeps.experiment import model_key, point_key

    def keys(model, data):
        r = resolve(RunConfig.from_dict({"model": str(model), "dataset": str(data)}))
        return point_key(r), model_key(r)

    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.copy(files["model"], moved / "m.keras")
    shutil.copy(files["data"], moved / "data.npz")
    assert keys(files["model"], files["data"]) == keys(moved / "m.keras", moved / "data.npz")
    _resnet_block_model(seed=2).save(moved / "m.keras")
    assert keys(files["model"], files["data"])[0] != keys(moved / "m.keras", moved / "data.npz")[0]


def test_a_folder_as_dataset_names_data_dir(tmp_path):
    """Fails if `--dataset FOLDER` reads as an unknown set name instead of pointing at --data-dir."""
    res = invoke("run", "--dataset", tmp_path, "--dry-run")
    assert res.exit_code == 2 and "--data-dir FOLDER" in res.output, res.output


def test_feature_vectors_run_with_test_set_noise(tmp_path):
    """Fails if data that are not images (feature vectors (N, F)) cannot take test-set noise
    (the injectors take (N, H, W)) or reach the model in another shape."""
    from nvmkit import RunConfig, run

    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, (40, 12)).astype(np.float32)
    y = (x[:, 0] > 0.5).astype(np.int64)
    _npz(tmp_path / "vec.npz", x, y)
    inp = keras.Input((12,))
    keras.Model(inp, keras.layers.Dense(2, activation="softmax")(inp)).save(tmp_path / "v.keras")
    res = run(RunConfig.from_dict({"model": str(tmp_path / "v.keras"), "dataset": str(tmp_path / "vec.npz"),
                                   "noise": "gaussian:0.1", "trials": 2, "device": "reram"}))
    assert set(res.accuracy) == {"digital", "internal", "external", "both"}
    assert res.dataset["sample_shape"] == [12]


@pytest.mark.parametrize("content", [b"x_train,y_train\n1,2\n", "zip without arrays"])
def test_a_bad_own_data_file_says_how_to_write_one(tmp_path, content):
    """Fails if a user's own .npz (text, or an archive lacking the arrays) is answered with the
    bundled-data hint "delete ... and re-download or re-copy it": nothing of the user's can be
    re-downloaded; the line must say how to write a file nvmkit reads (np.savez with the four names)."""
    from nvmkit.workflow.data import load_data_file

    path = tmp_path / "mine.npz"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        np.savez(path, x=np.zeros(3))
    with pytest.raises(DataError) as exc:
        load_data_file(path)
    msg = str(exc.value)
    assert "\n" not in msg and "re-download" not in msg, msg
    assert "np.savez(" in msg and "x_train=..., y_train=..., x_test=..., y_test=..." in msg, msg


def test_energy_refuses_model_with_network(files):
    """Fails if `energy --model m.keras --network cnn` prices the model and silently ignores
    --network, while `run` refuses the same pair."""
    res = invoke("energy", "--model", files["model"], "--network", "cnn")
    assert res.exit_code == 2 and "drop --network" in res.output and "Traceback" not in res.output, res.output
    run = invoke("run", "--model", files["model"], "--network", "cnn", "--dry-run")
    assert run.exit_code == 2 and "drop" in run.output


def test_a_model_file_that_is_not_a_zip_is_named_as_such(tmp_path):
    """Fails if a text file named bad.keras reaches Keras, whose answer is a misleading
    "File not found": the line must say it is not a .keras (zip) file, exit 2."""
    bad = tmp_path / "bad.keras"
    bad.write_text("not a model\n")
    res = invoke("run", "--model", bad, "--trials", 1, "-o", tmp_path / "r.json")
    assert res.exit_code == 2 and not (tmp_path / "r.json").exists(), res.output
    assert "is not a .keras (zip) file" in res.output and "not found" not in res.output.lower(), res.output
    from nvmkit import load_model_file

    with pytest.raises(ConfigError, match=r"not a \.keras \(zip\) file"):
        load_model_file(bad)


# -- relative paths in files: read from the file's folder, recorded relative to the result ----------
def _vector_files(folder):
    """A tiny .npz of feature vectors and a one-layer .keras model that reads them, in ``folder``."""
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 1, (40, 12)).astype(np.float32)
    y = (x[:, 0] > 0.5).astype(np.int64)
    folder.mkdir(parents=True, exist_ok=True)
    _npz(folder / "vec.npz", x, y)
    inp = keras.Input((12,))
    keras.Model(inp, keras.layers.Dense(2, activation="softmax")(inp)).save(folder / "v.keras")


def _device_table(folder):
    """The table device's bundled default table, copied into ``folder`` as a user's file."""
    from importlib.resources import files as resource_files

    src = resource_files("nvmkit_plugins.devices") / "table_sonos_default.toml"
    (folder / "dev.toml").write_text(src.read_text())


def test_a_run_config_in_a_subfolder_reads_its_sibling_files(tmp_path, monkeypatch):
    """The bug: relative paths in a configuration TOML were read from the working folder, so
    `nvmkit run sub/cfg.toml` run from the parent did not find sub/vec.npz, sub/v.keras or the
    device table sub/dev.toml (a plugin parameter). Fails if any of them is read from elsewhere,
    or if the dry run prints paths that do not name them from the working folder."""
    sub = tmp_path / "sub"
    _vector_files(sub)
    _device_table(sub)
    (sub / "cfg.toml").write_text('model = "v.keras"\ndataset = "vec.npz"\ntrials = 2\n'
                                  'scenarios = ["digital", "internal"]\nenergy = "none"\n'
                                  'device = "table:file=dev.toml"\n')
    monkeypatch.chdir(tmp_path)
    res = invoke("run", "sub/cfg.toml", "-o", "r.json")
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "r.json").read_text())
    assert rec["config"]["model"] == {"file": "sub/v.keras", "sha256": _sha(sub / "v.keras")}
    assert rec["config"]["dataset"]["file"] == "sub/vec.npz"
    assert rec["config"]["device"]["params"]["file"] == "sub/dev.toml"
    dry = invoke("run", "sub/cfg.toml", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert 'file = "sub/vec.npz"' in dry.output and 'file = "sub/dev.toml"' in dry.output, dry.output


def test_a_result_reruns_from_another_working_folder(tmp_path, monkeypatch):
    """The bug: a result JSON recorded `--model v.keras --dataset vec.npz` as typed (relative to
    the folder the run started in), so `cd elsewhere && nvmkit run ../out/result.json` failed to
    find them. Fails if the result records an absolute path or one relative to the old working
    folder, if the rerun reads other files, or if it does not reproduce every trial (same seed)."""
    proj = tmp_path / "proj"
    _vector_files(proj)
    (proj / "out").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(proj)
    res = invoke("run", "--model", "v.keras", "--dataset", "vec.npz", "--trials", 2, "--device", "reram",
                 "--energy", "none", "-o", "out/result.json")
    assert res.exit_code == 0, res.output
    first = json.loads((proj / "out" / "result.json").read_text())
    # relative to the result's own folder, with the files' hashes as before
    assert first["config"]["model"] == {"file": "../v.keras", "sha256": _sha(proj / "v.keras")}
    assert first["config"]["dataset"]["file"] == "../vec.npz"
    assert first["config"]["dataset"]["sha256"] == _sha(proj / "vec.npz")

    monkeypatch.chdir(tmp_path / "elsewhere")
    res = invoke("run", "../proj/out/result.json", "-o", "again.json")
    assert res.exit_code == 0, res.output
    again = json.loads((tmp_path / "elsewhere" / "again.json").read_text())
    assert again["config"]["model"]["file"] == "../proj/v.keras"  # relative to again.json's folder
    for scenario in ("digital", "internal", "external", "both"):
        assert again["accuracy"][scenario]["per_trial"] == first["accuracy"][scenario]["per_trial"]


def test_rebase_paths_keeps_absolute_and_home_paths_when_reading(tmp_path, monkeypatch):
    """Fails if reading a file's paths joins an absolute or `~` path to the file's folder, if
    writing leaves a relative path relative to the working folder instead of to the written file's
    folder, or if writing turns an absolute path the user gave into a relative one (which breaks
    when the result is copied elsewhere)."""
    from nvmkit.workflow.config import rebase_paths

    absolute = str(tmp_path / "a.npz")
    read = rebase_paths({"dataset": {"file": absolute, "data_dir": None}, "model": {"file": "~/m.keras"},
                         "output": "r.json"}, source="sub")
    assert read["dataset"]["file"] == absolute and read["model"]["file"] == "~/m.keras"
    assert read["output"] == str(Path("sub") / "r.json")
    written = rebase_paths({"dataset": {"file": absolute}}, target=tmp_path / "out")
    assert written["dataset"]["file"] == absolute
    monkeypatch.chdir(tmp_path)
    written = rebase_paths({"dataset": {"file": "a.npz"}}, target=tmp_path / "out")
    assert written["dataset"]["file"] == "../a.npz"
    # a linked data folder keeps the name it was given (its real location is not written)
    (tmp_path / "real").mkdir()
    (tmp_path / "linked").symlink_to(tmp_path / "real", target_is_directory=True)
    written = rebase_paths({"dataset": {"file": "linked/d.npz"}}, target=tmp_path / "out")
    assert written["dataset"]["file"] == "../linked/d.npz"


def test_rebase_paths_writes_a_path_on_another_drive_absolute(tmp_path, monkeypatch):
    """Windows: a result written to D: naming a file on C: cannot name it relatively, and a path
    relative to the working folder would be read from D: later: the absolute path must be
    written. Simulated with a drive split that puts the target on its own drive. Fails if the
    cross-drive branch returns the path relative to the working folder or the source."""
    import nvmkit.workflow.config as config

    target = str(tmp_path / "out")
    real_split = os.path.splitdrive
    monkeypatch.setattr(config.os.path, "splitdrive",
                        lambda p: ("D:", p) if str(p).startswith(target) else ("C:", p))
    monkeypatch.chdir(tmp_path)
    assert real_split(target) == ("", target)  # POSIX: no drives of its own
    written = config.rebase_paths({"dataset": {"file": "sub/a.npz"}}, target=target)
    assert written["dataset"]["file"] == str(tmp_path / "sub" / "a.npz")
    read = config.rebase_paths({"model": {"file": "m.keras"}}, source="cfg", target=target)
    assert read["model"]["file"] == str(tmp_path / "cfg" / "m.keras")


def test_a_model_files_trials_beyond_memory_are_refused_before_fine_tuning(files, tmp_path):
    """A user's model is counted before any work: --trials 10**9 with --epochs is refused before
    the fine-tuning (the bug: the training ran, then the programming died of memory)."""
    res = invoke("run", "--model", files["model"], "--dataset", files["data"], "--epochs", 2,
                 "--trials", 10**9, "--noise", "none", "--energy", "none", "-o", tmp_path / "r.json")
    assert res.exit_code == 2, res.output
    assert "use fewer trials" in res.output and "training" not in res.output, res.output
