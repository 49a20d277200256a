"""A bias row that sets a crossbar's weight scale is said: the weights then use a fraction of the
conductance range, so every device error is larger relative to them (a folded BatchNormalization
with large shifts does this). Said once per conversion, with the worst layer and the fix."""

import warnings

import keras
import numpy as np
import pytest

from nvmkit.core.errors import NvmkitWarning
from nvmkit.engine.convert import convert
from nvmkit.engine.crossbar_config import CrossbarConfig
from nvmkit_plugins.devices.ideal import IdealDevice

L = keras.layers


def dense_model(bias: float):
    model = keras.Sequential([keras.Input((4,)), L.Dense(3, name="big"), L.Dense(2, name="small")])
    model.get_layer("big").kernel.assign(np.full((4, 3), 0.1, "f4"))
    model.get_layer("big").bias.assign(np.full(3, bias, "f4"))
    model.get_layer("small").kernel.assign(np.full((3, 2), 0.1, "f4"))
    model.get_layer("small").bias.assign(np.full(2, 0.35, "f4"))  # 3.5x: below the threshold
    return model


def test_a_dominating_bias_row_is_said_once_with_the_worst_layer_and_the_fix():
    with pytest.warns(NvmkitWarning) as seen:
        convert(dense_model(bias=0.8), IdealDevice())
    (w,) = [w for w in seen if "bias row" in str(w.message)]
    assert str(w.message).startswith("convert: in 1 layer(s) the bias row sets the crossbar's "
                                     "weight scale, up to 8x the largest weight (layer 'big')")
    assert "12% of the conductance range" in str(w.message)
    assert "mapping.bias='digital'" in str(w.message)


@pytest.mark.parametrize("bias, mapping", [(0.35, "row"), (0.8, "digital")])
def test_no_word_when_the_weights_set_the_scale_or_the_bias_is_digital(bias, mapping):
    config = CrossbarConfig.from_dict({"mapping": {"bias": mapping}})
    with warnings.catch_warnings():
        warnings.simplefilter("error", NvmkitWarning)
        convert(dense_model(bias=bias), IdealDevice(), config)


def test_training_settings_the_crossbar_layer_lacks_are_said_once():
    """A regularizer, a constraint or an LSTM's dropouts act only in training, and the analog twin
    does not apply them: training through the device would run without them without a word."""
    model = keras.Sequential([keras.Input((5, 3)),
                              L.LSTM(4, dropout=0.2, recurrent_dropout=0.1, name="rnn"),
                              L.Dense(3, kernel_regularizer="l2", kernel_constraint="max_norm",
                                      name="reg"),
                              L.Dense(2, name="plain")])
    with pytest.warns(NvmkitWarning) as seen:
        convert(model, IdealDevice())
    (w,) = [w for w in seen if "training settings" in str(w.message)]
    msg = str(w.message)
    assert "'rnn' (dropout=0.2, recurrent_dropout=0.1)" in msg
    assert "'reg' (kernel_constraint, kernel_regularizer)" in msg
    assert "plain" not in msg


def test_no_word_for_a_plain_model():
    model = keras.Sequential([keras.Input((5, 3)), L.LSTM(4), L.Dense(2)])
    with warnings.catch_warnings():
        warnings.simplefilter("error", NvmkitWarning)
        convert(model, IdealDevice())
