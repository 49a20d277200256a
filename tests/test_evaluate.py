"""Monte Carlo accuracy: agreement with Keras, reproducibility, trial independence, statistics."""

import math
import statistics

import keras
import numpy as np
import pytest

from nvmkit.engine.convert import analog_layers, convert
from nvmkit.engine.crossbar_config import CrossbarConfig
from nvmkit.core.errors import ConfigError
from nvmkit.engine.evaluate import MEMORY_BUDGET, AccuracyResult, auto_batch_size, digital_accuracy, monte_carlo
from nvmkit.core.noise import NoiseInjector

from test_analog import IDEAL, NOCLIP, Ideal, ProgOnly, randomize

L = keras.layers
N = 300


class Both(ProgOnly):
    """Programming error and read noise."""

    name = "test-both"

    def read_sigma(self, g):
        return np.full_like(g, self.frac * self.g_range)


class AddNoise(NoiseInjector):
    """Additive Gaussian pixel noise, clipped to [0, 1]."""

    name = "test-add"

    def __init__(self, sigma=0.3):
        self.sigma = sigma

    def apply(self, x, rng):
        return np.clip(x + rng.normal(0, self.sigma, x.shape), 0, 1).astype("f4")


def prepare(images):  # (N, 6, 6) -> 4 time steps of 9 pixels, as the RNN mapper does
    return images.reshape(len(images), 4, 9)


@pytest.fixture(scope="module")
def rnn_task():
    model = randomize(keras.Sequential([
        keras.Input((4, 9)), L.SimpleRNN(8, activation="relu"), L.Dense(3), L.Activation("softmax")]), 2)
    # inputs in [0, 1] all share a positive mean that would swamp random weights: centre the
    # weights so decisions depend on the pixels' deviations and all classes occur
    k, r, b, w, c = model.get_weights()
    model.set_weights([k - k.mean(0), r / 2, 0 * b, w - w.mean(1, keepdims=True), 0 * c])
    rng = np.random.default_rng(1)
    x = rng.random((N, 6, 6)).astype("f4")
    # labels the clean model gets right two times in three: room to fall and to rise
    y = model.predict(prepare(x), verbose=0).argmax(axis=1)
    y[::3] = rng.integers(0, 3, len(y[::3]))
    return model, x, y


def test_ideal_device_matches_keras_accuracy(rnn_task):
    model, x, y = rnn_task
    ref = digital_accuracy(model, prepare(x), y)
    assert 0.6 < ref < 0.95
    res = monte_carlo(convert(model, Ideal(), IDEAL, trials=3), x, y, trials=3, seed=0,
                      prepare=prepare, batch_size=64)
    assert res.mean == ref and res.std == 0 and res.per_trial == [ref] * 3
    assert (res.trials, res.n_test) == (3, N)
    onehot = monte_carlo(convert(model, Ideal(), IDEAL), x, np.eye(3)[y], trials=1, seed=0,
                         prepare=prepare)
    assert onehot.mean == ref and np.isnan(onehot.ci95[0]) and onehot.std == 0


def test_reproducible_under_seed_and_ci_is_the_t_interval_of_the_trials(rnn_task):
    model, x, y = rnn_task
    net = convert(model, Both(0.05), NOCLIP, trials=5)
    run = lambda seed: monte_carlo(net, x, y, trials=5, seed=seed, injector=AddNoise(),  # noqa: E731
                                   prepare=prepare, batch_size=128)
    a, b, c = run(7), run(7), run(8)
    assert a.per_trial == b.per_trial and a.to_dict() == b.to_dict()
    assert a.per_trial != c.per_trial
    assert len(set(a.per_trial)) > 1  # trials differ
    # the interval computed here from the per-trial accuracies alone (statistics module, a
    # tabulated quantile), not from the result's own mean and std: fails on a wrong centre, a
    # ddof=0 std or a normal quantile in place of Student's t
    mean, sd = statistics.fmean(a.per_trial), statistics.stdev(a.per_trial)
    t_975_4dof = 2.7764451  # Student t quantile, 4 degrees of freedom
    half = t_975_4dof * sd / math.sqrt(5)
    assert 0 < mean - half and mean + half < 1  # not clipped to [0, 1] here
    assert a.ci95 == pytest.approx((mean - half, mean + half), rel=1e-6)
    assert a.mean == pytest.approx(mean, rel=1e-12)
    assert a.std == pytest.approx(sd, rel=1e-9)


def test_noise_lowers_accuracy(rnn_task):
    model, x, y = rnn_task
    ref = digital_accuracy(model, prepare(x), y)
    clean = convert(model, Ideal(), IDEAL, trials=4)
    ext = monte_carlo(clean, x, y, trials=4, seed=0, injector=AddNoise(0.5), prepare=prepare)
    internal = monte_carlo(convert(model, Both(0.2), NOCLIP, trials=4), x, y, trials=4, seed=0,
                           prepare=prepare)
    # with N=300 a trial's accuracy has binomial std <= 0.03: a drop of 0.1 is well outside it
    assert ext.mean < ref - 0.1 and internal.mean < ref - 0.1
    assert len(set(ext.per_trial)) > 1  # fresh test-set noise in each trial


def test_trial_k_does_not_depend_on_trial_count(rnn_task):
    # programming error and test-set noise come from per-trial streams; no read noise here
    model, x, y = rnn_task
    nets = {k: convert(model, ProgOnly(0.1), NOCLIP, trials=k) for k in (2, 3)}
    run = lambda k, bs: monte_carlo(nets[k], x, y, trials=k, seed=3, injector=AddNoise(),  # noqa: E731
                                    prepare=prepare, batch_size=bs)
    two, three = run(2, 1000), run(3, 1000)
    assert two.per_trial == three.per_trial[:2]
    assert len(set(three.per_trial)) > 1
    no_noise = lambda bs: monte_carlo(nets[3], x, y, trials=3, seed=3, prepare=prepare,  # noqa: E731
                                      batch_size=bs)
    assert no_noise(7).per_trial == no_noise(1000).per_trial  # batching changes nothing


def test_every_trial_is_programmed_from_its_own_stream(rnn_task):
    """The programmed weights of two trials differ by two independent programming errors.

    Fails if monte_carlo programs every trial from the same stream (all trials identical: the
    spread across trials, and so the reported std, would come from read and test-set noise only).
    ProgOnly gives each cell sigma = frac * g_range; a weight is a differential pair, so its error
    is sqrt(2) * frac * g_range * current_to_weight and the difference of two trials sqrt(2) times
    that. The sample std of n such differences has std expected / sqrt(2 n); allow 5 of those."""
    from nvmkit.engine.crossbar import Crossbar

    model, x, y = rnn_task
    frac, trials = 0.05, 8
    net = convert(model, ProgOnly(frac), NOCLIP, trials=trials, seed=123)
    monte_carlo(net, x[:16], y[:16], trials=trials, seed=0, prepare=prepare)
    for layer in analog_layers(net):
        for core, w, b in layer.core_weights():
            d = core.delta.numpy().astype(np.float64)  # programmed minus user weights, per trial
            d = d[1::2] - d[0::2]  # disjoint pairs of trials: independent differences
            xbar = Crossbar(w, b if core.has_bias else None, ProgOnly(frac), NOCLIP)
            expected = 2 * frac * xbar.device.g_range * xbar.current_to_weight
            assert abs(d.std() - expected) < 5 * expected / np.sqrt(2 * d.size), layer.name


def test_batch_bounded_by_memory():
    m = randomize(keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(16, 3, padding="same"),
                                    L.Flatten(), L.Dense(2)]), 2)
    net = convert(m, Ideal(), IDEAL)
    bs = auto_batch_size(net, trials=10, n_test=10**9)
    assert bs == MEMORY_BUDGET // (4 * 10 * 8 * 8 * 16)
    assert auto_batch_size(net, trials=10, n_test=10**9, limit=100) == 100
    assert auto_batch_size(net, trials=10, n_test=50, limit=100) == 50


def test_converters_calibrated_automatically(rnn_task):
    model, x, y = rnn_task
    cfg = CrossbarConfig.from_dict({**IDEAL.to_dict(), "converters": {"dac_bits": 8, "adc_bits": 8}})
    net = convert(model, Ideal(), cfg, trials=2, calibration_data=prepare(x[:256]))
    res = monte_carlo(net, x, y, trials=2, seed=0, prepare=prepare)
    ref = digital_accuracy(model, prepare(x), y)
    # 8-bit converters must cost less than the test set's own sampling uncertainty: one binomial
    # standard error sqrt(p (1 - p) / N) (0.025 at p = 0.75, N = 300; measured: 1 image of 300).
    # Uncalibrated or badly calibrated converters (clipping) cost several times more; so do 4 bits.
    assert abs(res.mean - ref) < np.sqrt(ref * (1 - ref) / N)


def test_bad_arguments():
    m = randomize(keras.Sequential([keras.Input((3,)), L.Dense(2)]), 3)
    net = convert(m, Ideal(), IDEAL)
    x = np.zeros((4, 3), "f4")
    with pytest.raises(ConfigError, match="trials"):
        monte_carlo(net, x, np.zeros(4), trials=0, seed=0)
    with pytest.raises(ConfigError, match="labels"):
        monte_carlo(net, x, np.zeros(3), trials=1, seed=0)
    with pytest.raises(ConfigError, match="trials=1.*asked for 2"):
        monte_carlo(net, x, np.zeros(4), trials=2, seed=0)
    with pytest.raises(ConfigError, match="converted with nvmkit.convert"):
        monte_carlo(object(), x, np.zeros(4), trials=1, seed=0)


def test_result_round_trip():
    r = AccuracyResult.from_trials([0.9, 0.92, 0.91], n_test=100)
    d = r.to_dict()
    assert d["ci95"] == list(r.ci95) and d["mean"] == r.mean and d["ci_method"] == "student-t"
    assert "91.00%" in str(r)


def test_ci95_of_a_known_case():
    """Accuracies 0.90, 0.92, 0.91: mean 0.91, sample std 0.01 exactly (squared deviations
    1e-4 + 1e-4 + 0 over 2 degrees of freedom). With 2 degrees of freedom Student's t has a
    closed-form quantile: its CDF is 1/2 + t / (2 sqrt(2 + t^2)), so t_p = (2p - 1) / sqrt(2 p
    (1 - p)) = 4.3027 for p = 0.975. Fails on a ddof=0 std (0.0082), a normal quantile (1.96),
    the wrong degrees of freedom (t for 3: 3.18) or a wrong centre."""
    r = AccuracyResult.from_trials([0.90, 0.92, 0.91], n_test=100)
    p = 0.975
    t = (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    assert t == pytest.approx(4.302652729749462, rel=1e-12)  # printed tables: 4.303
    half = t * 0.01 / math.sqrt(3)
    assert r.ci95 == pytest.approx((0.91 - half, 0.91 + half), rel=1e-9)
    assert (r.mean, r.std) == pytest.approx((0.91, 0.01), rel=1e-9)


def test_ci95_stays_within_0_and_1():
    """Fails if the Student-t interval is reported past the possible accuracies: with 2 trials
    (t = 12.71) accuracies 0.1 and 0.8 give 0.45 +- 12.71 * 0.495 / sqrt(2) = 0.45 +- 4.45,
    a bound below 0% and one above 100% (the CLI printed such bounds, e.g. [-18.37, 36.27]%)."""
    r = AccuracyResult.from_trials([0.1, 0.8], n_test=100)
    assert r.ci95 == (0.0, 1.0)
    narrow = AccuracyResult.from_trials([0.9, 0.92, 0.91], n_test=100)  # well inside: unchanged
    assert narrow.ci95[1] - narrow.ci95[0] == pytest.approx(2 * 4.30265273 * 0.01 / np.sqrt(3), rel=1e-6)


class Recording(AddNoise):
    """AddNoise that records the shapes it is given."""

    name = "test-recording"
    shapes: list = []

    def apply(self, x, rng):
        Recording.shapes.append(x.shape)
        return super().apply(x, rng)


class Squeezing(AddNoise):
    name = "test-squeezing"

    def apply(self, x, rng):
        return super().apply(x, rng).reshape(len(x), -1)


def test_injectors_receive_images_n_h_w_and_must_keep_the_shape(rnn_task):
    # the contract of NoiseInjector.apply and of `nvmkit plugins check`: a batch of images
    # (N, H, W), before prepare reshapes them; flattened input is refused, a changed shape named
    model, x, y = rnn_task
    net = convert(model, Ideal(), IDEAL, trials=2)
    Recording.shapes = []
    monte_carlo(net, x, y, trials=2, seed=0, injector=Recording(), prepare=prepare, batch_size=128)
    assert Recording.shapes and all(len(s) == 3 and s[1:] == (6, 6) for s in Recording.shapes)
    assert sum(s[0] for s in Recording.shapes) == 2 * N  # every image, once per trial
    with pytest.raises(ConfigError, match=r"images shaped \(N, H, W\), got \(300, 36\)"):
        monte_carlo(net, x.reshape(N, 36), y, trials=2, seed=0, injector=AddNoise(),
                    prepare=lambda a: a.reshape(len(a), 4, 9))
    with pytest.raises(ConfigError, match="noise 'test-squeezing' returned shape"):
        monte_carlo(net, x, y, trials=2, seed=0, injector=Squeezing(), prepare=prepare)


@pytest.fixture
def tf_log_messages():
    """Every message TensorFlow's logger emits during the test (its retracing warning among them)."""
    import logging

    class Seen(logging.Handler):
        def __init__(self):
            super().__init__()
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    seen = Seen()
    tf_log = logging.getLogger("tensorflow")
    tf_log.addHandler(seen)
    yield seen.messages
    tf_log.removeHandler(seen)


def test_many_fresh_models_evaluate_without_tf_function_retracing(tf_log_messages):
    # regression: digital_accuracy and the training's noise-site probe called model.predict, which
    # traces a tf.function per new model (and again for the last, smaller batch); a sweep's worker
    # evaluating one new model per point flooded stderr with "triggered tf.function retracing"
    from nvmkit.workflow.training import noise_site_stats

    rng = np.random.default_rng(0)
    x = rng.random((600, 12), dtype=np.float32)  # 512 + 88: two batch shapes per model
    y = rng.integers(0, 3, 600)
    for seed in range(6):
        keras.utils.set_random_seed(seed)
        model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(8, activation="relu"),
                                  keras.layers.Dense(3)])
        acc = digital_accuracy(model, x, y)
        ref = np.asarray(model(x, training=False)).argmax(-1)
        assert acc == np.mean(ref == y)
        (site,) = noise_site_stats(model, x)
        assert site.fan_in == 12
        assert model.predict_function is None  # nothing compiled for a one-off evaluation
    assert not [m for m in tf_log_messages if "retracing" in m], tf_log_messages


def test_many_fresh_converted_models_evaluate_without_tf_function_retracing(tf_log_messages):
    """Fails if TensorFlow's "triggered tf.function retracing" warning reaches the log: monte_carlo
    wraps each converted model in its own tf.function, TensorFlow counts their traces together (same
    Python code) and from the sixth model warned on stderr (a sweep over a user's model, per point)."""
    rng = np.random.default_rng(0)
    x = rng.random((90, 4, 3), dtype=np.float32)  # batch 64 + 26: two batch shapes per model
    y = rng.integers(0, 3, 90)
    for seed in range(6):
        keras.utils.set_random_seed(seed)
        model = randomize(keras.Sequential([keras.Input((12,)), L.Dense(8, activation="relu"),
                                            L.Dense(3)]), seed)
        ref = digital_accuracy(model, x.reshape(90, 12), y)
        net = convert(model, Ideal(), IDEAL, trials=2)
        res = monte_carlo(net, x, y, trials=2, seed=0, batch_size=64,
                          prepare=lambda a: a.reshape(len(a), 12))
        assert res.per_trial == [ref, ref]  # an ideal crossbar: the model's own decisions
    assert not [m for m in tf_log_messages if "retracing" in m], tf_log_messages
