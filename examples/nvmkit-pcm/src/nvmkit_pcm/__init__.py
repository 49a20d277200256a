"""nvmkit-pcm: a phase-change memory device and a Poisson shot-noise injector for nvmkit.

An example of a third-party nvmkit plugin package: it imports only names that ``nvmkit`` exports
and reaches nvmkit through the ``nvmkit`` entry-point group (see pyproject.toml), so after
``pip install nvmkit-pcm`` the device is ``--device pcm`` and the injector ``--noise poisson:0.1``.
"""

from .device import PCM
from .noise import PoissonNoise

__all__ = ["PCM", "PoissonNoise"]
__version__ = "0.1.0"
