"""hebbsim: continuous-time neural networks that learn with local rules.

``hebbsim.run(params)`` trains a network from a parameter file and returns an xarray
Dataset; ``hebbsim.open_run(path)`` opens a stored run.

hebbsim logs through :mod:`logging` (loggers under ``"hebbsim"``) and configures no handlers
itself; ``logging.basicConfig(level=logging.INFO)`` shows one line per epoch.
"""

__version__ = "0.1.0"


def run(params, overrides=None, *, resume: bool = False, overwrite: bool = False, progress: bool | None = None,
        **kwargs):
    """Train the network of ``params`` (a TOML file, a dict or RunParams) and return its run as an
    xarray Dataset. ``resume``: continue the run file's checkpoint; ``overwrite``: replace an
    existing run file (without either, an existing run file is refused); ``progress``: progress
    bars (default: only when stderr is a terminal). See :func:`hebbsim.simulate.runner.run`."""
    from .simulate.runner import run as _run

    return _run(params, overrides, resume=resume, overwrite=overwrite, progress=progress, **kwargs)


def open_run(path, **kwargs):
    """Open a run file as an xarray Dataset (``chunks={}``: lazily); a damaged file raises
    :class:`hebbsim.data.store.StoreError` naming the file and what to do."""
    from .data.store import open_run as _open

    return _open(path, **kwargs)


# -- sweeps (docs/hpc.md) ---------------------------------------------------------------------------
def sweep(sweep_file, **kwargs):
    """Run a sweep file's unfinished points on Dask (see :func:`hebbsim.simulate.sweep.sweep`)."""
    from .simulate.sweep import sweep as _sweep

    return _sweep(sweep_file, **kwargs)


def open_sweep(folder, **kwargs):
    """A sweep folder's runs as one lazy xarray Dataset (:func:`hebbsim.simulate.sweep_dataset.open_sweep`)."""
    from .simulate.sweep_dataset import open_sweep as _open

    return _open(folder, **kwargs)
