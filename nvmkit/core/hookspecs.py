"""The complete list of nvmkit's extension points.

A plugin is any module or object with functions named like the hooks below and decorated with
``nvmkit.hookimpl``. It reaches nvmkit through the ``nvmkit`` entry-point group of its
distribution (see docs/plugins.md); the bundled plugins arrive the same way.

Every hook returns a list of classes. Each class subclasses the matching abstract type from the
core and sets a unique ``name``: that name is what users write on the command line
(``--device reram``, ``--noise gaussian:0.1``).
"""

import pluggy

hookspec = pluggy.HookspecMarker("nvmkit")
hookimpl = pluggy.HookimplMarker("nvmkit")


@hookspec
def nvmkit_devices():
    """Return device models: subclasses of :class:`nvmkit.core.device.Device`.

    A device model says which conductances a memory cell can hold (``g_min``, ``g_max``, levels),
    how far a programmed conductance lands from its target (programming error), how much a read
    fluctuates (read noise), how it drifts with time, and what one read costs in energy.
    """


@hookspec
def nvmkit_noise_injectors():
    """Return test-set noise injectors: subclasses of :class:`nvmkit.core.noise.NoiseInjector`.

    An injector perturbs a whole batch of input images, float32 (N, H, W) with values in [0, 1],
    at once but each image on its own, drawing all of its randomness from the
    ``numpy.random.Generator`` it is given (see ``NoiseInjector.apply``).
    """


@hookspec
def nvmkit_network_mappers():
    """Return network mappers: subclasses of :class:`nvmkit.core.network.NetworkMapper`.

    A mapper builds a trainable Keras model for a data set (with optional noise-injection
    regularisation before each ReLU), supplies its training defaults and shapes the input the way
    the network reads it (for example, the RNN's T time steps).
    """


@hookspec
def nvmkit_energy_estimators():
    """Return energy estimators: subclasses of :class:`nvmkit.core.energy.EnergyEstimator`.

    An estimator turns a deployed network's footprint (tiles, reads per inference, neuron
    activations) and its device into energy per inference, broken down by layer and component.
    """
