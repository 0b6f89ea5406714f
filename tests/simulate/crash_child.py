"""The run a crash test kills (a helper module, importable by a multiprocessing forkserver)."""

import os

import hebbsim
from hebbsim.data.crashpoints import STALL_ENV

PRELOAD = ["hebbsim.simulate.runner", "hebbsim.data.datasets", "sklearn.datasets", "xarray", "h5netcdf",
           "dask.array", "crash_child"]
"""Modules a forkserver imports once, so a killed run starts in a fraction of a second."""


def train(params: dict, log: str, stall: str | None) -> None:
    """Run ``params``, logging to the file ``log``; pause at ``stall`` (see hebbsim.data.crashpoints)."""
    if stall:
        os.environ[STALL_ENV] = stall
    else:
        os.environ.pop(STALL_ENV, None)
    with open(log, "w", buffering=1) as out:
        hebbsim.run(params, progress=False, log=lambda msg: print(msg, file=out, flush=True))
