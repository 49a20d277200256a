"""Wire resistance (IR drop) of crossbar tiles: a first-order model in Keras ops.

**Circuit** (CrossSim's array topology, sandialabs/cross-sim ``simulator/circuits/array``; Xiao et
al., "On the accuracy of analog neural network inference accelerators", IEEE Circuits and Systems
Magazine 22(4), 2022, Fig. 21): each tile is its own array. Row ``i`` is driven at voltage
``V_i`` from its left end and its wire runs past the cells ``p = 0, 1, ...`` of the tile's physical
columns, a segment of resistance ``r_row`` before each cell; column ``p`` runs past the rows
``i = 0 .. M-1`` to a virtual ground below the last row, a segment of ``r_col`` below each cell.
Cell ``(i, p)`` is a linear conductance ``G_ip`` between its row node and its column node; the
output of column ``p`` is the current into its virtual ground. Differential pairs are interleaved
(G+ of weight column ``j`` at physical column ``2j``, G- at ``2j + 1``: both see nearly the same
drop, CrossSim's "interleaved" option) and subtracted after the array; the offset scheme's
reference column is the ideal one the engine always assumed. A tile of ``m < tile_rows`` used rows
(the last row block of a layer) or fewer columns is an array of exactly that size (unused cells
carry no current; the used ones sit next to the drivers and the virtual ground).

**Model.** The network is linear in the inputs, so its outputs are ``y = V @ G_eff`` with a
transfer matrix that depends only on the conductances and wire resistances. Write the cell
currents as ``I = I0 - L(I)``, ``I0_ip = G_ip V_i`` (ideal wires), where ``L(I)_ip = G_ip (r_row
sum_q I_iq (min(p, q) + 1) + r_col sum_k I_kp (M - max(i, k)))`` is the drop across cell
``(i, p)`` caused by the currents ``I`` (the row wire up to ``p`` carries the currents of the
cells at and beyond each segment; the column wire below ``i`` those at and above it). Then
``I = sum_n (-L)^n I0`` (Neumann series) and the first-order model keeps ``I0 - L(I0)``. Its column
sums are again a product with the inputs, ``y1 = V @ (G * (1 - D))``, with

    D_ip = r_row R(G)_ip + r_col Q(G)_ip,
    R(G)_ip = sum_{s <= p} sum_{q >= s} G_iq     (a suffix sum, then a prefix sum along the row),
    Q(G)_ip = sum_{s >= i} sum_{k <= s} G_kp     (a prefix sum, then a suffix sum down the column):

``D_ip`` is the fraction of the drive lost across cell ``(i, p)`` when every row is driven at
the same voltage. So the read costs four cumulative sums and a few element-wise products over the
(K, rows, cols) weights per forward call, never a batch x rows x cols tensor, and it is
differentiable in the weights (training sees the drop).

**Error bound.** With ``kappa = max_ip D_ip`` (:func:`max_drop`) and the weighted norm
``|X| = max_ip |X_ip| / G_ip``, ``|L(X)| <= kappa |X|`` and ``|I0| = max_i |V_i|``, so for
``kappa < 1`` the series converges and the neglected terms sum to at most ``kappa^2 / (1 - kappa)``
per cell: the first-order output of every physical column is within
``kappa^2 / (1 - kappa) * max_i |V_i| * sum_i G_ip`` of the exact one, i.e. that fraction of the
column's current at full-scale input. The engine refuses programmed states with ``kappa`` above
:data:`MAX_DROP` = 0.2 (bound 5%); ``tests/test_wires.py`` checks the bound against a nodal solve
of small arrays for the worst input sign pattern. Smaller tiles or lower wire resistance bring
``kappa`` down.

Conductances reach siemens through the device's ``units`` (``uS``; a read current in ``nA`` at
``read_voltage`` is ``I / V``); a device with abstract conductances (``physical_units = False``,
e.g. ``synaptic``) has no siemens behind it and is refused.
"""

from __future__ import annotations

import math

import numpy as np

from nvmkit.core.device import Device, _AMPERES, _SIEMENS
from nvmkit.core.errors import ConfigError

#: The largest first-order fractional drop across a cell (``kappa``) the model accepts: its output
#: error is then at most kappa^2 / (1 - kappa) = 5% of a column's full-scale current.
MAX_DROP = 0.2

#: Words of the refusal's message that say a point lies beyond the model (``nvmkit reproduce`` tells
#: such points from failures by them).
OUT_OF_RANGE = "the first-order IR-drop model is valid for"


def error_bound(kappa: float) -> float:
    """The first-order model's output error as a fraction of the column's full-scale current."""
    return kappa * kappa / (1.0 - kappa) if kappa < 1 else math.inf


def siemens_per_unit(device: Device, owner: str = "crossbar") -> float:
    """Siemens per unit of the device's conductances (``uS``, or a read current per read volt)."""
    if not device.physical_units:
        raise ConfigError(f"{owner}: wire resistance needs conductances in siemens, and device "
                          f"'{device.name}' has abstract ones; use a physical device (reram, sonos, "
                          "...) or set wires.row_resistance and wires.col_resistance to 0")
    if device.units in _SIEMENS:
        return _SIEMENS[device.units]
    if device.units in _AMPERES:
        return _AMPERES[device.units] / device.read_voltage
    raise ConfigError(f"{owner}: device '{device.name}' states conductances in {device.units!r}, which "
                      f"wire resistance cannot convert to siemens; use one of "
                      f"{', '.join([*_SIEMENS, *_AMPERES])}")


def pair_conductances(w, common, differential: bool):
    """The cells of each weight in weight units, (..., 2) for a differential pair (G+, G-), (..., 1)
    for the offset scheme. ``common`` is what ``w`` does not carry: G+ + G- - |w| (differential) or
    G - w (offset), both in weight units."""
    from keras import ops

    if differential:
        half = 0.5 * common
        return ops.stack([ops.relu(w) + half, ops.relu(-w) + half], axis=-1)
    return ops.expand_dims(w + common, -1)


def drop_fraction(g, r_row: float, r_col: float, siemens, row_axis: int, col_axis: int):
    """``D = r_row s R(g) + r_col s Q(g)`` (module docstring) for tiles ``g`` whose rows lie along
    ``row_axis`` (the virtual ground after the last) and physical columns along ``col_axis`` (the
    driver before the first); ``siemens`` (``s``) is siemens per unit of ``g``, the resistances are
    in ohm (Python numbers: a zero one costs nothing)."""
    from keras import ops

    from nvmkit.engine.ops import double_cumsum

    d = None
    if r_row:
        d = double_cumsum(g, col_axis, suffix_first=True) * (r_row * siemens)
    if r_col:
        dc = double_cumsum(g, row_axis, suffix_first=False) * (r_col * siemens)
        d = dc if d is None else d + dc
    return ops.zeros_like(g) if d is None else d


class WireModel:
    """The first-order IR drop of one weight matrix on its tiles.

    ``rows`` crossbar rows (bias row last) by ``groups * per_group`` columns, where each group of
    ``per_group`` columns is its own crossbar (1 group, or one per channel of a depthwise layer);
    tiles of ``tile_rows`` x ``tile_cols`` weight columns cut both. ``siemens`` is siemens per
    weight unit, so ``r * siemens`` is the dimensionless drop per unit of the cells in weight units.
    """

    def __init__(self, *, rows: int, cols: int, tile_rows: int, tile_cols: int, differential: bool,
                 row_resistance: float, col_resistance: float, groups: int = 1):
        self.rows, self.cols, self.groups = int(rows), int(cols), int(groups)
        if self.cols % self.groups:
            raise ValueError(f"{cols} columns do not split into {groups} groups")
        self.per_group = self.cols // self.groups
        self.tile_rows, self.tile_cols = int(tile_rows), int(tile_cols)
        self.differential = bool(differential)
        self.row_resistance, self.col_resistance = float(row_resistance), float(col_resistance)
        self.n_row_blocks = -(-self.rows // self.tile_rows)
        self.n_col_blocks = -(-self.per_group // self.tile_cols)

    # -- tiling ---------------------------------------------------------------------------------
    def _tiles(self, x):
        """(K, rows, cols, d) -> (K, row blocks, tile_rows, groups, col blocks, tile_cols * d): the
        last row block padded with empty rows above its used ones, the columns after theirs."""
        from keras import ops

        k, d = x.shape[0], x.shape[-1]
        tr, tc = self.tile_rows, self.tile_cols
        x = ops.reshape(x, (k, self.rows, self.groups, self.per_group, d))
        pad_c = self.n_col_blocks * tc - self.per_group
        if pad_c:
            x = ops.pad(x, ((0, 0), (0, 0), (0, 0), (0, pad_c), (0, 0)))
        pad_r = self.n_row_blocks * tr - self.rows
        if pad_r:
            full = (self.n_row_blocks - 1) * tr
            zeros = ops.zeros((k, pad_r, *x.shape[2:]), dtype=x.dtype)
            x = ops.concatenate([x[:, :full], zeros, x[:, full:]], axis=1)
        return ops.reshape(x, (k, self.n_row_blocks, tr, self.groups, self.n_col_blocks, tc * d))

    def _untile(self, x, d: int):
        """The inverse of :meth:`_tiles` for a (K, blocks, tile_rows, groups, col blocks,
        tile_cols * d) tensor -> (K, rows, cols, d)."""
        from keras import ops

        k, tr, tc = x.shape[0], self.tile_rows, self.tile_cols
        x = ops.reshape(x, (k, self.n_row_blocks * tr, self.groups, self.n_col_blocks * tc, d))
        pad_r = self.n_row_blocks * tr - self.rows
        if pad_r:
            full = (self.n_row_blocks - 1) * tr
            x = ops.concatenate([x[:, :full], x[:, full + pad_r:]], axis=1)
        if self.n_col_blocks * tc != self.per_group:
            x = x[:, :, :, :self.per_group]
        return ops.reshape(x, (k, self.rows, self.cols, d))

    def _drop(self, cells, siemens):
        return drop_fraction(cells, self.row_resistance, self.col_resistance, siemens, row_axis=2, col_axis=5)

    # -- the read -------------------------------------------------------------------------------
    def effective_weights(self, w, common, siemens):
        """Weights ``w`` (K, rows, cols) as the tiles with resistive wires read them (first order):
        ``w`` minus each pair's ``G+ D+ - G- D-`` (or ``G D`` for the offset scheme), in weight
        units. ``common`` (K|1, rows, cols) as in :func:`pair_conductances`; ``siemens`` siemens
        per weight unit (a scalar tensor: it changes with each programming's weight scale)."""
        pair = pair_conductances(w, common, self.differential)
        d = pair.shape[-1]
        cells = self._tiles(pair)
        loss = self._untile(cells * self._drop(cells, siemens), d)
        if self.differential:
            return w - (loss[..., 0] - loss[..., 1])
        return w - loss[..., 0]

    def drops(self, w, common, siemens) -> np.ndarray:
        """``D`` of every cell (K, rows, cols, cells per weight) as numpy: see :func:`max_drop`."""
        from keras import ops

        pair = pair_conductances(ops.convert_to_tensor(w), ops.convert_to_tensor(common), self.differential)
        cells = self._tiles(pair)
        return ops.convert_to_numpy(self._untile(self._drop(cells, siemens), pair.shape[-1]))

    def max_drop(self, w, common, siemens) -> float:
        """``kappa``: the largest first-order fractional drop across a cell of any tile and trial."""
        return float(np.max(self.drops(w, common, siemens)))


def check_range(drops: list[tuple[str, "WireModel", float]]) -> None:
    """Refuse a programming whose largest first-order drop (``kappa``, over every layer's tiles and
    trials: ``(layer, model, kappa)`` triples) exceeds :data:`MAX_DROP`, naming that layer."""
    if not drops:
        return
    owner, model, kappa = max(drops, key=lambda d: d[2])
    if not kappa <= MAX_DROP:
        raise ConfigError(
            f"{owner}: wire resistance drops up to {kappa:.0%} of the drive across a cell of its "
            f"{model.tile_rows} x {model.tile_cols} tiles, beyond the {MAX_DROP:.0%} {OUT_OF_RANGE}; "
            "use smaller tiles (mapping.tile_rows, mapping.tile_cols) or lower wires.row_resistance / "
            "wires.col_resistance")
