"""``hebbsim.open_sweep``: a sweep folder's run files as one lazy xarray Dataset.

Every run file of the folder is opened lazily (``chunks={}``: dask arrays, nothing read yet)
and the runs are stacked along the swept dimensions, e.g. ``test_error(lr, seed, epoch)``.
Runs of different lengths are aligned on their coordinates (an outer join): an epoch a run
has not reached, a point that failed or has not started, is NaN. Dimensions a run file has
without a coordinate (``<pop>_unit``) get an integer one, so that networks of different sizes
align too. Per point, the Dataset also holds ``status``, ``attempts`` and ``wall_time`` from
the index. Safe while the sweep runs: a run file is only ever replaced whole, so each run
shows the epochs it had published when it was opened.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import xarray as xr

from ..data.store import StoreError, open_run
from .sweep_index import SweepIndex

log = logging.getLogger("hebbsim.sweep")

RUN_ATTRS_KEPT = ("Conventions", "schema", "hebbsim_version", "engine", "dtype")


def _indexed(ds: xr.Dataset) -> xr.Dataset:
    """Give every dimension without a coordinate an integer one (for outer joins)."""
    missing = {d: np.arange(n) for d, n in ds.sizes.items() if d not in ds.coords}
    return ds.assign_coords(missing) if missing else ds


def open_sweep(folder: str | Path, chunks: dict | None = None) -> xr.Dataset:
    """Open a sweep folder (written by ``hebbsim sweep``) as one Dataset whose dimensions are
    the swept parameters (``seed`` for ``seeds``) followed by the run files' own dimensions.
    ``chunks`` is passed to :func:`hebbsim.open_run` (default ``{}``: lazy, one chunk per
    variable as stored)."""
    index = SweepIndex.load(folder)
    dims = index.dims
    names = [d.name for d in dims]
    pieces, labels = [], []
    for rec in index.points.values():
        path = index.folder / rec.file
        if not path.is_file():
            continue
        try:
            ds = open_run(path, chunks={} if chunks is None else chunks)
        except (OSError, StoreError, ValueError) as err:  # not published yet, or not a run file
            log.warning("open_sweep: skipping %s: %s", path, err)
            continue
        pieces.append(_indexed(ds))
        labels.append(tuple(dims[k].coordinate()[rec.position[n]] for k, n in enumerate(names)))

    coords = {d.name: d.coordinate() for d in dims}
    if pieces:
        # coordinates that differ between runs (time = step·dt when dt is swept) get the point dimension
        stacked = xr.concat(pieces, dim="point", join="outer", coords="different", compat="equals",
                            combine_attrs="drop", data_vars="all")
        if names:
            stacked = stacked.assign_coords({n: ("point", [lab[k] for lab in labels]) for k, n in enumerate(names)})
            if len(names) == 1:  # a single dimension: the point coordinate is that dimension
                ds = stacked.swap_dims(point=names[0])
            else:
                ds = stacked.set_index(point=names).unstack("point")
            ds = ds.reindex(coords).transpose(*names, ...)
        else:
            ds = stacked.isel(point=0, drop=True)
        first = pieces[0].attrs
        ds.attrs = {k: first[k] for k in RUN_ATTRS_KEPT if k in first}
    else:
        ds = xr.Dataset(coords=coords)
    # the other keys of a zip dimension, as coordinates along it
    for d in dims:
        for key in d.keys[1:]:
            ds = ds.assign_coords({key.rsplit(".", 1)[-1]: (d.name, d.coordinate(key))})
        ds[d.name].attrs.update(parameter=", ".join(d.keys), long_name=f"swept parameter {d.keys[0]}")

    shape = tuple(len(d.values) for d in dims)
    status = np.full(shape, "pending", dtype=object)
    attempts = np.zeros(shape, dtype=np.int64)
    wall = np.zeros(shape)
    for rec in index.points.values():
        pos = tuple(rec.position[n] for n in names)
        status[pos], attempts[pos], wall[pos] = rec.status, rec.attempts, rec.wall_time
    ds["status"] = (names, status.astype(str), {"long_name": "point status (pending, running, done, failed)",
                                                "units": "1"})
    ds["attempts"] = (names, attempts, {"long_name": "starts of the point", "units": "1"})
    ds["wall_time"] = (names, wall, {"long_name": "run time of the point, all attempts", "units": "s"})
    ds.attrs.update(sweep=index.sweep, sweep_folder=str(index.folder), sweep_index_updated=index.updated)
    return ds
