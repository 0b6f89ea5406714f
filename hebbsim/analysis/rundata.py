"""Reading run files for analysis: which runs, sweep dimensions and phases a Dataset holds, the
network a run trained, and quantities recomputed from its weight snapshots.

A *run* is what :func:`hebbsim.open_run` returns; a *sweep* is a Dataset of the same variables
with extra dimensions, one per swept parameter and ``seed`` (what ``hebbsim.open_sweep``
returns). Any dimension that is not one of a run file's own (:data:`RUN_DIMS`, ``<pop>_unit``)
is taken for a swept parameter.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

RUN_DIMS = frozenset({"epoch", "phase", "step", "probe", "projection", "feedback", "iteration", "snapshot",
                      "exit", "time_step"})
"""The dimensions of one run file (besides ``<pop>_unit``)."""

SEED = "seed"

RunLike = xr.Dataset | str | Path
Runs = RunLike | Sequence[RunLike] | Mapping[str, RunLike]


class NotApplicable(ValueError):
    """The plot or quantity does not apply to this run (e.g. loop alignment of a feed-forward
    network, probe trajectories of a run that recorded none, anything before its first epoch)."""


def as_dataset(data: RunLike) -> xr.Dataset:
    """A Dataset as it is, or the run file at a path opened (lazily, nothing read yet)."""
    if isinstance(data, xr.Dataset):
        return data
    from ..data.store import open_run

    return open_run(data)


def label_of(ds: xr.Dataset, default: str = "") -> str:
    """A short label for a run: its file name without suffix, else ``default``."""
    source = ds.encoding.get("source")
    return Path(source).stem if source else default


def as_runs(data: Runs) -> dict[str, xr.Dataset]:
    """``label → Dataset`` from one run or sweep (label ''), a sequence of them (labelled by
    file name) or a mapping ``label → run``."""
    if isinstance(data, (xr.Dataset, str, Path)):
        return {"": as_dataset(data)}
    if isinstance(data, Mapping):
        return {str(k): as_dataset(v) for k, v in data.items()}
    out: dict[str, xr.Dataset] = {}
    for k, item in enumerate(data):
        ds = as_dataset(item)
        label = label_of(ds, f"run {k + 1}")
        out[label if label not in out else f"{label} ({k + 1})"] = ds
    return out


def sweep_dims(obj: xr.Dataset | xr.DataArray) -> tuple[str, ...]:
    """The dimensions that are not a run file's own: swept parameters and ``seed``."""
    return tuple(str(d) for d in obj.dims if d not in RUN_DIMS and not str(d).endswith("_unit"))


def is_sweep(ds: xr.Dataset) -> bool:
    return bool(sweep_dims(ds))


def n_epochs(ds: xr.Dataset) -> int:
    return int(ds.sizes.get("epoch", 0))


def training_phases(ds: xr.Dataset) -> list[str]:
    """The phases a training batch actually ran: those with a recorded residual. (A
    forward-gradient run has a ``nudged`` entry in the phase coordinate, and probe states for
    it, but trains without a nudged phase: its residual is NaN.)"""
    if "phase" not in ds.coords:
        return []
    phases = [str(p) for p in ds.phase.values]
    if "residual" not in ds or n_epochs(ds) == 0:
        return phases[:1]
    finite = np.isfinite(ds.residual.values)
    axis = tuple(i for i, d in enumerate(ds.residual.dims) if d != "phase")
    ran = finite.any(axis=axis) if axis else finite
    return [p for p, r in zip(phases, ran) if r]


def parameters(ds: xr.Dataset) -> dict:
    """The run's parameter file (the ``parameters`` attribute, TOML) as a dict ({} if none)."""
    text = ds.attrs.get("parameters")
    return tomllib.loads(text) if isinstance(text, str) else {}


def network_of(ds: xr.Dataset):
    """The :class:`hebbsim.dynamics.network.Network` the run trained, built from its stored
    parameter file; None if this version of hebbsim cannot read that file."""
    from ..data.params import load_params
    from ..errors import HebbsimError

    try:
        return load_params(parameters(ds)).build_network()
    except (HebbsimError, ValueError, KeyError, TypeError):
        return None


def snapshot_loop_alignment(ds: xr.Dataset) -> xr.DataArray:
    """Loop alignment (docs/model.md, degrees) of every stored weight snapshot, recomputed from the
    weights: ``(snapshot, projection)``. Snapshot 0 is the initialisation, which the run's
    per-epoch ``loop_alignment`` does not hold (seed 000's Fig. 4 starts there, near 90°)."""
    from ..dynamics.params import Params
    from .alignment import loop_alignment, loop_paths

    net = network_of(ds)
    if net is None:
        raise NotApplicable("the run's parameter file cannot be read by this hebbsim version")
    paths = loop_paths(net)
    stored = {p.name for p in net.projections if f"weight_{p.name}" in ds}
    paths = {m: chain for m, chain in paths.items()
             if m in stored and all(p.name in stored or p.kind == "tied" for p in chain)}
    if not paths or "snapshot" not in ds.dims or ds.sizes["snapshot"] == 0:
        raise NotApplicable("no projection on a directed cycle, or no stored weights")
    names = list(paths)
    if "projection" in ds.coords:  # the run file's order
        names = [str(p) for p in ds.projection.values if str(p) in paths]
    values = np.full((ds.sizes["snapshot"], len(names)), np.nan)
    for k in range(ds.sizes["snapshot"]):
        weights = {name: ds[f"weight_{name}"].isel(snapshot=k).values for name in stored}
        angles = loop_alignment(net, Params(weights, {}), {m: paths[m] for m in names})
        values[k] = [angles[m] for m in names]
    return xr.DataArray(values, dims=("snapshot", "projection"),
                        coords={"snapshot": ds.snapshot.values, "projection": names},
                        name="loop_alignment", attrs=dict(ds.loop_alignment.attrs) if "loop_alignment" in ds else {})


def loop_alignment_from_init(ds: xr.Dataset) -> xr.DataArray:
    """The run's ``loop_alignment(epoch, projection)`` with an epoch 0 in front: the angles of
    the initial weights (recomputed from snapshot 0; omitted where it cannot be)."""
    if "loop_alignment" not in ds:
        raise NotApplicable("the run has no loop_alignment: its network has no learned projection on a cycle")
    la = ds.loop_alignment
    if is_sweep(ds):  # recomputing every point's snapshots is not worth it here
        return la
    try:
        init = snapshot_loop_alignment(ds).sel(snapshot=0)
    except (NotApplicable, KeyError):
        return la
    init = init.reindex(projection=la.projection.values).drop_vars("snapshot").expand_dims(epoch=[0])
    return xr.concat([init, la], dim="epoch").assign_attrs(la.attrs)


def projection_label(name: str) -> str:
    """``"h2_to_o"`` → ``"h2 → o"``."""
    src, sep, dst = str(name).partition("_to_")
    return f"{src} → {dst}" if sep else str(name)


def last_finite(da: xr.DataArray, dim: str = "epoch") -> xr.DataArray:
    """The last finite value along ``dim`` (each point of a running or partly failed sweep has
    completed a different number of epochs); NaN where there is none."""
    ok = np.isfinite(da)
    n = da.sizes[dim]
    if n == 0:
        return xr.full_like(da.sum(dim), np.nan, dtype=np.float64)
    last = (n - 1 - ok.isel({dim: slice(None, None, -1)}).argmax(dim))
    out = da.isel({dim: last})
    return out.where(ok.any(dim)).drop_vars(dim, errors="ignore")
