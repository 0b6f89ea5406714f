"""Run files: per-epoch metrics, final weights and provenance as an xarray Dataset in HDF5.

This is the minimal store of the core (rewritten atomically after every epoch: write to a
temporary file, then rename, so a run killed at any moment leaves the previous complete
file). The streaming store of SPEC §5 replaces it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import xarray as xr


def write_run(path: str | Path, ds: xr.Dataset) -> Path:
    """Write ``ds`` to ``path`` (HDF5 through h5netcdf) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        ds.to_netcdf(tmp, engine="h5netcdf", invalid_netcdf=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def open_run(path: str | Path, **kwargs) -> xr.Dataset:
    """Open a run file as an xarray Dataset (``chunks={}`` opens it lazily with dask)."""
    return xr.open_dataset(path, engine="h5netcdf", **kwargs)
