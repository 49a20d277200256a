"""Write the walk-through's example measurement file and the ``table`` device's default table.

Both come from nvmkit's SONOS model (Agrawal et al., IEDM 2022; ``nvmkit devices show sonos``):

- ``examples/measurements/sonos_cells.csv``: cells sampled from the model as a lab would measure
  them (nvmkit.fit.sample_measurements): 5 target currents, 300 cells each, 2 reads per cell,
  read right after programming and 1 and 5 days later (about 190 KB);
- ``plugins/devices/table_sonos_default.toml``: the model's own curves tabulated at 9 currents and
  0-5 days (nvmkit.fit.tabulate_device), used by ``--device table`` without a file.

Run from the repository root: ``python scripts/make_example_measurements.py``. Deterministic.
"""

import argparse
from pathlib import Path

import numpy as np

from nvmkit import create_from_spec
from nvmkit.fit import sample_measurements, tabulate_device, write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
DAY = 86400.0


def main(argv: list[str] | None = None) -> None:
    # no options; parsed so that --help explains the script instead of rewriting both files
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    sonos = create_from_spec("device", "sonos")
    cells = sample_measurements(sonos, targets=[50, 200, 400, 800, 1200], cells=300, reads=2,
                                times=[0.0, 1 * DAY, 5 * DAY], seed=2022)
    csv = ROOT / "examples" / "measurements" / "sonos_cells.csv"
    write_text_atomic(csv, cells.to_csv(time_units="days", comment=(
        "Example measurements for docs/devices-from-data.md: 40 nm SONOS cells sampled from nvmkit's\n"
        "SONOS model (Agrawal et al., IEDM 2022) by scripts/make_example_measurements.py, not measured.\n"
        "target and measured: read current at the read voltage; 300 cells per target, 2 reads each,\n"
        "right after programming (time 0) and 1 and 5 days later.")))
    table = tabulate_device(
        sonos, g=[0, 50, 100, 200, 400, 600, 800, 1200, 1600], time=np.arange(6) * DAY,
        description="DEFAULT TABLE of the 'table' device: nvmkit's SONOS model, tabulated (not a fit)",
        source="SONOS of Agrawal et al., IEDM 2022 (nvmkit device 'sonos'), by scripts/make_example_measurements.py")
    write_text_atomic(ROOT / "plugins" / "devices" / "table_sonos_default.toml", table.to_toml())
    print(f"wrote {csv.relative_to(ROOT)} ({csv.stat().st_size / 1024:.0f} KB) and the default table")


if __name__ == "__main__":
    main()
