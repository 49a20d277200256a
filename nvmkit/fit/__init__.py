"""From measured cells to a device model: read measurement files, fit the curves the ``table``
device interpolates, write its file and a figure (``nvmkit devices fit``)."""

from nvmkit.fit.api import fit_device
from nvmkit.fit.device_file import DeviceTable, load_device_table, tabulate_device, write_text_atomic
from nvmkit.fit.estimate import FitResult, estimate
from nvmkit.fit.measurements import Measurements, read_measurements
from nvmkit.fit.synthetic import sample_measurements

__all__ = ["DeviceTable", "FitResult", "Measurements", "estimate", "fit_device", "load_device_table",
           "read_measurements", "sample_measurements", "tabulate_device", "write_text_atomic"]
