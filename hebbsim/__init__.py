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
