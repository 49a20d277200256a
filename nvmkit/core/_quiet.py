"""Keep TensorFlow's C++ start-up chatter off stderr.

TensorFlow's native libraries print INFO lines (oneDNN, missing CUDA) before its logging is set up,
so no environment variable silences them; while a plugin or Keras is imported we point file
descriptor 2 at a temp file and replay its content only if the import fails.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile


@contextlib.contextmanager
def quiet_stderr(executing_tensorflow: bool = False):
    """``executing_tensorflow``: the block runs TensorFlow's own module, which the import system
    has already put in ``sys.modules`` (nvmkit's import hook, ``nvmkit/__init__.py``)."""
    if "tensorflow" in sys.modules and not executing_tensorflow:  # the chatter happens once per process
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
            if "tensorflow" in sys.modules:
                # the first device query prints a CUDA error on machines without a GPU
                sys.modules["tensorflow"].config.list_physical_devices()
        except KeyboardInterrupt:  # the user stopped it: the chatter explains nothing
            raise
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def import_keras():
    with quiet_stderr():
        import tensorflow  # noqa: F401
        import keras
    return keras
