"""hebbsim: continuous-time neural networks that learn with local rules.

``hebbsim.run(params)`` trains a network from a parameter file and returns an xarray
Dataset; ``hebbsim.open_run(path)`` opens a stored run.
"""

__version__ = "0.1.0"


def run(params, overrides=None, **kwargs):
    from .simulate.runner import run as _run

    return _run(params, overrides, **kwargs)


def open_run(path, **kwargs):
    from .data.store import open_run as _open

    return _open(path, **kwargs)


# -- sweeps (SPEC §8) ---------------------------------------------------------------------------
def sweep(sweep_file, **kwargs):
    """Run a sweep file's unfinished points on Dask (see :func:`hebbsim.simulate.sweep.sweep`)."""
    from .simulate.sweep import sweep as _sweep

    return _sweep(sweep_file, **kwargs)


def open_sweep(folder, **kwargs):
    """A sweep folder's runs as one lazy xarray Dataset (:func:`hebbsim.simulate.sweep_dataset.open_sweep`)."""
    from .simulate.sweep_dataset import open_sweep as _open

    return _open(folder, **kwargs)
