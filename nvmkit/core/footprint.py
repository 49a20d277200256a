"""What a deployed network occupies and does per inference: the contract between the crossbar
engine (which fills it in) and energy estimators (which price it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class TileShape:
    """One physical crossbar tile: active rows (driven inputs) and columns (read outputs)."""

    rows: int
    cols: int


@dataclass(frozen=True)
class LayerFootprint:
    """Per-inference counts for one layer of a deployed network.

    ``kind`` is one of ``dense``, ``conv``, ``rnn`` (analog, with tiles) or ``maxpool``,
    ``flatten``, ``softmax`` (digital). ``reads_per_inference`` is how often every tile of the
    layer is read for one input: 1 for a dense layer, T for the RNN's shared crossbar, the number
    of output positions for a kernel-wise (im2col) conv layer.
    """

    name: str
    kind: str
    tiles: tuple[TileShape, ...] = ()
    devices_per_weight: int = 2  # 2 for a differential pair, 1 for offset mapping
    reads_per_inference: int = 0
    n_in: int = 0  # weight-matrix rows used per read (bias row included when it is analog)
    n_out: int = 0  # weight-matrix columns
    activations: int = 0  # neuron activations (ReLU outputs) per inference
    digital_ops: int = 0  # max-pool comparisons, softmax exponentials, ... per inference
    extra: dict = field(default_factory=dict)
    adc_bits: int | None = None  # resolution of the column ADCs; None: an ideal converter (unstated)

    @property
    def macs_per_inference(self) -> int:
        return self.n_in * self.n_out * self.reads_per_inference

    @property
    def cells(self) -> int:
        return sum(t.rows * t.cols for t in self.tiles) * self.devices_per_weight

    def to_dict(self) -> dict:
        d = asdict(self)
        d["macs_per_inference"] = self.macs_per_inference
        d["cells"] = self.cells
        return d
