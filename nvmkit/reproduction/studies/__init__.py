"""Bundled study files for ``nvmkit reproduce`` (see :mod:`nvmkit.reproduction.study`)."""
