"""``atomic_write``: the one way nvmkit writes a file a user keeps (result, table, figure, report).

A reader never sees a half-written file and a failed write leaves nothing behind: the content goes
to a hidden temporary file in the same folder (so the rename cannot cross file systems), is flushed
to disk, and replaces the target with ``os.replace``. The file gets the mode any other program would
give it (``0o666`` less the umask, e.g. ``0o644``), not the ``0o600`` of ``tempfile.mkstemp``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process's umask, read without changing it where Linux allows (``/proc/self/status``)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    with _umask_lock:  # elsewhere the only way to read it is to set it and set it back
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def atomic_write(path, data: bytes | str | Callable[[Path], object]) -> Path:
    """Write ``data`` to ``path`` atomically with the normal file mode; return ``path``.

    ``data`` is bytes, a str (written as UTF-8), or a callable that writes the file at the
    temporary path it is given (e.g. ``lambda tmp: fig.savefig(tmp, format="png")``; the temporary
    name ends with ``path``'s suffix, for writers that insist on one). Any exception, from the
    callable or the file system, removes the temporary file and propagates; ``path`` is then as it was.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    tmp = Path(tmp_name)
    try:
        if callable(data):
            os.close(fd)
            data(tmp)
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data.encode("utf-8") if isinstance(data, str) else bytes(data))
        # the content must be on disk before the rename makes it the file, or a crash could leave
        # an empty file under the final name
        sync_fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(sync_fd)
        finally:
            os.close(sync_fd)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable; not possible everywhere
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path
