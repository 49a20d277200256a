"""Errors that are the user's to fix.

Anything raised as :class:`NvmkitError` is shown by the CLI as one line (no traceback) and
exits non-zero, so its message must say what went wrong *and* how to fix it.
"""


class NvmkitError(Exception):
    """A mistake in the user's input, configuration, data or plugin set-up."""


class ConfigError(NvmkitError, ValueError):
    """A parameter or configuration value is invalid."""


class PluginError(NvmkitError, LookupError):
    """A plugin is unknown, duplicated or broken."""


class DataError(NvmkitError, OSError):
    """A data set is missing, truncated or corrupt."""


class NvmkitWarning(UserWarning):
    """Something the user should know that does not stop the work (a cached model retrained, a
    cache that cannot be written). The CLI prints it as one line, ``warning: ...``, not in
    Python's warning format with nvmkit's source file in front of it."""
