"""Footprints of single layers from plain parameters, without Keras, training or a device.

Whole networks are priced from their converted graph (:func:`nvmkit.engine.convert.analog_footprint`,
through :func:`nvmkit.reproduction.energy_table.energy_report`), which knows every architecture.
These builders give one layer's :class:`~nvmkit.core.footprint.LayerFootprint` by hand, as the
converted graph counts it (checked against it in ``tests/test_energy.py``): for an estimator's
tests and for what-if sizes of a single crossbar.

Conventions (those of the crossbar engine, :mod:`nvmkit.engine.crossbar` and :mod:`nvmkit.engine.convert`):

- a weight matrix of ``n_in (+1 bias row) x n_out`` is cut into tiles of at most
  ``tile_rows x tile_cols`` (default 1152 x 256, Sandia's SONOS array), row blocks outermost;
- ``dense``: read once per inference; ReLU layers count ``n_out`` activations;
- ``conv`` (kernel-wise, im2col): ``kh*kw*C_in (+1)`` rows x ``filters`` columns, read once per
  output position; ``extra`` carries the geometry an unrolled (Toeplitz) estimate needs;
- ``rnn``: ``[W_in; W_rec] (+ bias)`` stacked in ONE crossbar of ``pixels/T + H (+1)`` rows x ``H``
  columns, read at each of the T steps, ``T*H`` activations;
- ``maxpool``: ``pool*pool - 1`` comparisons per output; ``softmax``: one op per class.
"""

from __future__ import annotations

from typing import Sequence

from nvmkit.core.component import check_int
from nvmkit.core.errors import ConfigError
from nvmkit.core.footprint import LayerFootprint, TileShape

TILE_ROWS = 1152  # the engine's default tile (MappingConfig), Sandia's SONOS array size
TILE_COLS = 256
PIXELS = 784


def tile_shapes(rows: int, cols: int, tile_rows: int = TILE_ROWS,
                tile_cols: int = TILE_COLS) -> tuple[TileShape, ...]:
    """The tiles a ``rows x cols`` matrix occupies, in the engine's order (row blocks outer)."""
    rows, cols = check_int("tiles", "rows", rows), check_int("tiles", "cols", cols)
    tile_rows, tile_cols = check_int("tiles", "tile_rows", tile_rows), check_int("tiles", "tile_cols", tile_cols)
    return tuple(TileShape(min(r + tile_rows, rows) - r, min(c + tile_cols, cols) - c)
                 for r in range(0, rows, tile_rows) for c in range(0, cols, tile_cols))


def _shape(name: str, shape: Sequence[int]) -> tuple[int, int, int]:
    """(H, W, C) as Python ints (numpy integers and integral floats accepted)."""
    vals = tuple(shape)
    if len(vals) != 3:
        raise ConfigError(f"{name}: input_shape must be (height, width, channels), got {shape!r}")
    return tuple(check_int(name, "input_shape", int(v) if hasattr(v, "__index__") else v) for v in vals)


def _bias_rows(bias: str) -> int:
    if bias not in ("row", "digital", "none"):
        raise ConfigError(f"bias must be 'row', 'digital' or 'none', got {bias!r}")
    return 1 if bias == "row" else 0


def _crossbar(name, kind, rows, cols, reads, activations, devices_per_weight, tile, extra=None):
    return LayerFootprint(name, kind, tiles=tile_shapes(rows, cols, *tile),
                          devices_per_weight=check_int(name, "devices_per_weight", devices_per_weight),
                          reads_per_inference=reads, n_in=rows, n_out=cols,
                          activations=activations, extra=dict(extra or {}))


def dense_footprint(name: str, n_in: int, n_out: int, *, relu: bool = True, bias: str = "row",
                    devices_per_weight: int = 2, tile: tuple[int, int] = (TILE_ROWS, TILE_COLS)
                    ) -> LayerFootprint:
    """A dense layer ``n_in -> n_out`` read once per inference (``relu``: counts activations)."""
    n_in, n_out = check_int(name, "n_in", n_in), check_int(name, "n_out", n_out)
    return _crossbar(name, "dense", n_in + _bias_rows(bias), n_out, 1, n_out if relu else 0,
                     devices_per_weight, tile)


def conv_output_hw(input_hw: Sequence[int], kernel: int, padding: str = "valid",
                   stride: int = 1) -> tuple[int, int]:
    """Output height and width of a convolution (TensorFlow's 'valid'/'same' rules)."""
    if padding not in ("valid", "same"):
        raise ConfigError(f"padding must be 'valid' or 'same', got {padding!r}")
    if padding == "same":
        return tuple(-(-s // stride) for s in input_hw)
    out = tuple((s - kernel) // stride + 1 for s in input_hw)
    if min(out) < 1:
        raise ConfigError(f"a {kernel}x{kernel} kernel does not fit a {tuple(input_hw)} input; "
                          "use padding='same' or fewer conv blocks")
    return out


def conv_footprint(name: str, input_shape: Sequence[int], filters: int, *, kernel: int = 3,
                   padding: str = "valid", stride: int = 1, relu: bool = True, bias: str = "row",
                   devices_per_weight: int = 2, tile: tuple[int, int] = (TILE_ROWS, TILE_COLS)
                   ) -> LayerFootprint:
    """A Conv2D layer mapped kernel-wise: ``kernel^2 C_in (+1)`` x ``filters``, read per position."""
    h, w, c = _shape(name, input_shape)
    filters, kernel = check_int(name, "filters", filters), check_int(name, "kernel", kernel)
    ho, wo = conv_output_hw((h, w), kernel, padding, check_int(name, "stride", stride))
    positions = ho * wo
    extra = {"kernel": [kernel, kernel], "strides": [stride, stride], "padding": padding,
             "in_channels": c, "filters": filters, "output_positions": positions,
             "input_shape": [h, w, c], "output_shape": [ho, wo, filters]}
    return _crossbar(name, "conv", kernel * kernel * c + _bias_rows(bias), filters, positions,
                     positions * filters if relu else 0, devices_per_weight, tile, extra)


def maxpool_footprint(name: str, input_shape: Sequence[int], pool: int = 2) -> LayerFootprint:
    """Max-pooling (Keras defaults: stride = pool, 'valid'): ``pool^2 - 1`` comparisons per output."""
    h, w, c = _shape(name, input_shape)
    pool = check_int(name, "pool", pool)
    out = (h // pool, w // pool, c)
    if min(out) < 1:
        raise ConfigError(f"{name}: a {pool}x{pool} pool does not fit a {(h, w)} input; use a smaller pool")
    return LayerFootprint(name, "maxpool", digital_ops=out[0] * out[1] * c * (pool * pool - 1),
                          extra={"pool": [pool, pool], "output_shape": list(out)})


def softmax_footprint(name: str, classes: int) -> LayerFootprint:
    """The digital softmax readout: one operation per class (as the deployed network counts it)."""
    return LayerFootprint(name, "softmax", digital_ops=check_int(name, "classes", classes))


def rnn_footprint(name: str, time_steps: int, hidden: int, *, pixels: int = PIXELS,
                  bias: str = "row", devices_per_weight: int = 2,
                  tile: tuple[int, int] = (TILE_ROWS, TILE_COLS)) -> LayerFootprint:
    """The time-multiplexed ReLU RNN: one ``(pixels/T + H (+1)) x H`` crossbar read T times."""
    t = check_int(name, "time_steps", time_steps)
    h = check_int(name, "hidden", hidden)
    pixels = check_int(name, "pixels", pixels)
    if pixels % t:
        valid = ", ".join(str(d) for d in range(1, pixels + 1) if pixels % d == 0)
        raise ConfigError(f"{name}: time_steps={t} does not divide the {pixels} pixels; valid values: {valid}")
    step = pixels // t
    extra = {"time_steps": t, "hidden": h, "inputs_per_step": step}
    return _crossbar(name, "rnn", step + h + _bias_rows(bias), h, t, t * h, devices_per_weight,
                     tile, extra)
