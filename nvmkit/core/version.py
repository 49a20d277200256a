"""nvmkit's version, as installed (recorded in every result, model cache entry and report)."""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("nvmkit")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
