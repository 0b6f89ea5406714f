"""Plots of runs and sweeps (docs/model.md, docs/guide.md), built on matplotlib and xarray.

Every function takes a run — an :class:`xarray.Dataset` from :func:`hebbsim.open_run` or
``hebbsim.open_sweep``, or a run file's path — and an optional matplotlib ``ax`` (``axes`` for
the multi-panel ones), draws into it and returns it (multi-panel ones return the Figure). The
learning-curve and alignment plots also take several runs at once: a list of runs/paths
(labelled by file name) or a dict ``label → run``. On a sweep, the ``seed`` dimension is drawn as
a mean with a min–max band and every other swept parameter as one line per value.

They work on whatever a run file holds at the moment: a run that is still writing or was
killed (the epochs published so far; an empty panel saying so before the first), a one-epoch
run (markers, integer epoch ticks), a run with no nudged phase (forward gradient: only the
phases training ran are drawn). A plot that cannot apply to a run (loop alignment of a network
without a cycle, probe trajectories of a run that recorded none) raises
:class:`~hebbsim.analysis.rundata.NotApplicable`.

The same functions are methods of the ``Dataset.hebbsim`` accessor
(:mod:`hebbsim.analysis.accessor`): ``ds.hebbsim.plot_learning_curves()``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .rundata import (SEED, NotApplicable, Runs, as_dataset, as_runs, last_finite, loop_alignment_from_init,
                      n_epochs, projection_label, sweep_dims, training_phases)

__all__ = [
    "plot_errors", "plot_loss", "plot_learning_curves", "plot_loop_alignment", "plot_grad_alignment",
    "plot_feedback_alignment", "plot_feedback_agreement",
    "plot_probe_trajectories", "plot_exit_errors", "plot_spike_trains", "plot_weight_norms", "plot_update_norms",
    "plot_residuals", "plot_error_vs_parameter", "NotApplicable",
]

LINESTYLES = ("-", "--", ":", "-.")
MARKER_EPOCHS = 40  # mark every epoch's point up to this many epochs


def _axes(ax: Axes | None, figsize=(5.5, 3.6)) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def _no_data(ax: Axes, what: str) -> Axes:
    ax.text(0.5, 0.5, what, ha="center", va="center", transform=ax.transAxes, color="0.4")
    return ax


def _epoch_axis(ax: Axes) -> None:
    """Integer epoch ticks; at least two epochs wide (one epoch's points sit mid-axis)."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    lo, hi = ax.get_xlim()
    if hi - lo < 2:
        mid = (lo + hi) / 2
        ax.set_xlim(mid - 1, mid + 1)
    ax.set_xlabel("epoch")


def _points(da: xr.DataArray) -> list[tuple[str, xr.DataArray]]:
    """Split a DataArray over its swept dimensions other than ``seed``: ``(label, sub-array)``
    per point, the label naming the point (``"lr=0.1, beta=0.5"``; '' for one run)."""
    dims = [d for d in sweep_dims(da) if d != SEED]
    if not dims:
        return [("", da)]
    out = []
    for position in itertools.product(*(range(da.sizes[d]) for d in dims)):
        sel = dict(zip(dims, position))
        label = ", ".join(f"{d}={_fmt(da[d].values[k]) if d in da.coords else k}" for d, k in sel.items())
        out.append((label, da.isel(sel)))
    return out


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{float(v):g}"
    return str(v.item() if hasattr(v, "item") else v)


def _line(ax: Axes, x, da: xr.DataArray, label: str, **style) -> None:
    """One curve; over a ``seed`` dimension the mean and a min–max band (NaNs ignored)."""
    if SEED in da.dims:
        n = da.sizes[SEED]
        mean, lo, hi = da.mean(SEED), da.min(SEED), da.max(SEED)
        (line,) = ax.plot(x, mean.values, label=f"{label} (mean of {n} seeds)" if label else f"mean of {n} seeds",
                          **style)
        ax.fill_between(x, lo.values, hi.values, color=line.get_color(), alpha=0.2, lw=0)
    else:
        ax.plot(x, da.values, label=label or None, **style)


def _legend(ax: Axes) -> None:
    """A legend inside the axes, or beside it when it is long (it would hide the curves)."""
    if len(ax.get_legend_handles_labels()[1]) > 5:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    else:
        ax.legend(fontsize="small")


def _join(*parts: str) -> str:
    return ", ".join(p for p in parts if p)


def _marker(ds: xr.Dataset) -> dict:
    return {"marker": "o", "ms": 3.5} if n_epochs(ds) <= MARKER_EPOCHS else {}


def _finish(ax: Axes, ylabel: str, title: str) -> Axes:
    """The common end of an epoch plot: y label, integer epoch ticks, legend, title."""
    ax.set_ylabel(ylabel)
    _epoch_axis(ax)
    ax.legend(fontsize="small")
    ax.set_title(title)
    return ax


# -- learning curves ----------------------------------------------------------------------------
def _split_curves(ax: Axes, runs: dict, splits: Sequence[str], suffix: str, scale: float = 1.0) -> bool:
    """``<split>_<suffix>`` per epoch for every run and sweep point: one colour per point, solid
    test, dashed train. Returns whether anything was drawn."""
    colors = itertools.cycle(plt.rcParams["axes.prop_cycle"].by_key()["color"])
    drawn = False
    for run_label, ds in runs.items():
        present = [split for split in splits if f"{split}_{suffix}" in ds]
        if n_epochs(ds) == 0 or not present:
            continue
        for point, _ in _points(ds[f"{present[0]}_{suffix}"]):
            color = next(colors)
            for split in present:
                sub = dict(_points(ds[f"{split}_{suffix}"]))[point]
                style = {"ls": "-" if split == "test" else "--", "color": color, **_marker(ds)}
                _line(ax, ds.epoch.values, scale * sub, _join(run_label, point, split), **style)
                drawn = True
    return drawn


def plot_errors(data: Runs, ax: Axes | None = None, *, splits: Sequence[str] = ("train", "test")) -> Axes:
    """Training and test error (%) per epoch: solid test, dashed train; one colour per run or
    sweep point, a band over seeds."""
    ax = _axes(ax)
    if not _split_curves(ax, as_runs(data), splits, "error", 100.0):
        return _no_data(ax, "no completed epoch yet")
    return _finish(ax, "error (%)", "classification error")


def _batch_positions(batch_epoch: np.ndarray) -> np.ndarray:
    """Where each training batch ends, in epochs (batch j of n in epoch e → e − 1 + j/n)."""
    _, first, count = np.unique(batch_epoch, return_index=True, return_counts=True)
    within = np.arange(len(batch_epoch)) - np.repeat(first, count)
    return batch_epoch - 1 + (within + 1) / np.repeat(count, count)


COST_LABELS = {"state_mse": "½‖s_o − d‖²", "rate_mse": "½‖ρ(s_o) − d‖²",
               "softmax_cross_entropy": "−Σ d log softmax(s_o)"}


def cost_label(ds: xr.Dataset) -> str:
    """The run's output cost C (``learning.cost`` of its stored parameters), as a formula."""
    import tomllib

    try:
        cost = tomllib.loads(str(ds.attrs.get("parameters", "")))["learning"].get("cost")
    except (tomllib.TOMLDecodeError, KeyError):
        cost = None
    return COST_LABELS.get(cost, "C")


def plot_loss(data: Runs, ax: Axes | None = None, *, batches: bool = True) -> Axes:
    """Training loss (epoch mean, and every batch's loss placed where the batch ended) and test
    loss per epoch: the run's output cost C at the free fixed point (docs/model.md, Costs)."""
    ax = _axes(ax)
    runs = as_runs(data)
    for ds in runs.values():
        single = len(runs) == 1 and not sweep_dims(ds)
        if batches and single and n_epochs(ds) and "batch_loss" in ds and ds.sizes.get("iteration", 0):
            ax.plot(_batch_positions(ds.batch_epoch.values), ds.batch_loss.values, lw=0.5, alpha=0.4,
                    color="0.5", label="training batches")
    if not _split_curves(ax, runs, ("train", "test"), "loss"):
        return _no_data(ax, "no completed epoch yet")
    labels = {cost_label(ds) for ds in runs.values()}
    return _finish(ax, f"loss C = {labels.pop()}" if len(labels) == 1 else "loss C", "loss")


def plot_learning_curves(data: Runs, axes: Sequence[Axes] | None = None) -> Figure:
    """Error (%) and loss per epoch side by side (:func:`plot_errors`, :func:`plot_loss`)."""
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    plot_errors(data, axes[0])
    plot_loss(data, axes[1])
    return axes[0].figure


# -- alignment ----------------------------------------------------------------------------------
def _mark_90(ax: Axes) -> None:
    ax.axhline(90, color="0.3", lw=0.9, ls=(0, (4, 3)), zorder=0)
    ax.annotate("90°: no alignment", xy=(1, 90), xycoords=("axes fraction", "data"), xytext=(-4, 3),
                textcoords="offset points", ha="right", va="bottom", fontsize="small", color="0.3")
    lo, hi = ax.get_ylim()
    lo, hi = min(lo, 85), max(hi, 90)
    ax.set_ylim(lo, max(hi, 90 + 0.12 * (hi - lo)))  # room for the label above the line


def _plot_angles(data: Runs, ax: Axes | None, var: str, title: str, initial: bool, unit: str = "°") -> Axes:
    """One line per projection (or feedback matrix) and run of the per-epoch ``var``; angles
    (``unit = "°"``) get the 90° line."""
    ax = _axes(ax)
    runs = as_runs(data)
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    color_of: dict[str, str] = {}
    drawn = False
    for (run_label, ds), ls in zip(runs.items(), itertools.cycle(LINESTYLES)):
        if var not in ds:
            continue
        if n_epochs(ds) == 0:
            continue
        da = loop_alignment_from_init(ds) if (var == "loop_alignment" and initial) else ds[var]
        dim = "feedback" if var.startswith("feedback_") else "projection"
        for point, sub in _points(da):
            for proj in sub[dim].values:
                one = sub.sel({dim: proj})
                if not np.isfinite(one.values).any():  # e.g. x_to_h1: on no cycle
                    continue
                color = color_of.setdefault(str(proj), palette[len(color_of) % len(palette)])
                style = {"ls": ls, "color": color, **_marker(ds)}
                _line(ax, one.epoch.values, one, _join(projection_label(proj), run_label, point), **style)
                drawn = True
    if not drawn:
        if not any(var in ds for ds in runs.values()):
            raise NotApplicable(f"no {var} in this run")
        return _no_data(ax, "no completed epoch yet")
    ax.set_ylabel(f"{title} ({unit})" if unit else title)
    _epoch_axis(ax)
    if unit == "°":
        _mark_90(ax)
    _legend(ax)
    return ax


def plot_loop_alignment(data: Runs, ax: Axes | None = None, *, initial: bool = True) -> Axes:
    """Loop alignment (seed 000, Fig. 4): for every learned projection M on a cycle, the angle
    between Mᵀ and the product of the other projections around the cycle, per epoch; one colour
    per projection, one line style per run; 90° (no alignment) marked. With ``initial`` the
    angles of the initial weights are drawn at epoch 0 (recomputed from weight snapshot 0)."""
    ax = _plot_angles(data, ax, "loop_alignment", "loop alignment", initial)
    ax.set_title("loop alignment: angle(Mᵀ, rest of the loop)")
    return ax


def plot_feedback_alignment(data: Runs, ax: Axes | None = None) -> Axes:
    """Feedback alignment's signature per epoch: for every fixed feedback matrix B, the angle
    between Bᵀ and the learned forward map it feeds back along (docs/model.md); 90° marked."""
    ax = _plot_angles(data, ax, "feedback_alignment", "feedback alignment", False)
    ax.set_title("feedback alignment: angle(forward map, Bᵀ)")
    return ax


def plot_feedback_agreement(data: Runs, axes=None):
    """Seed 003 Fig. 2 A–B per epoch: for every fixed feedback matrix B, the relative error
    ‖Bᵀ − M‖/‖M‖ against its forward map M (left) and the fraction of agreeing signs (right).
    Returns the figure (``axes``: two Axes to draw into instead)."""
    if not any("feedback_error" in ds for ds in as_runs(data).values()):
        raise NotApplicable("no feedback_error in this run")
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    _plot_angles(data, axes[0], "feedback_error", "relative error ‖Bᵀ − M‖/‖M‖", False, unit="")
    axes[0].set_title("feedback: relative error")
    _plot_angles(data, axes[1], "feedback_sign_congruence", "sign congruence", False, unit="")
    axes[1].axhline(0.5, color="0.3", lw=0.9, ls=(0, (4, 3)), zorder=0)
    axes[1].set_title("feedback: sign congruence (0.5: chance)")
    return axes[0].figure


def plot_grad_alignment(data: Runs, ax: Axes | None = None) -> Axes:
    """Angle between each learned projection's update and −∇_W L (exact) per epoch (docs/model.md;
    runs with ``record.grad_alignment = true``); 90° marked."""
    ax = _plot_angles(data, ax, "grad_alignment", "gradient alignment", False)
    ax.set_title("gradient alignment: angle(ΔW, −∇_W L)")
    return ax


# -- probe trajectories -------------------------------------------------------------------------
def _one_run(data, what: str) -> xr.Dataset:
    ds = as_dataset(data)
    if sweep_dims(ds):
        raise NotApplicable(f"{what} shows one run: select a point first (ds.sel(...))")
    return ds


def _most_nudged_probe(ds: xr.Dataset, epoch: int, phases: list[str]) -> int:
    """The probe whose output moves most in the first nudged phase (a correctly classified
    probe with saturated output rates does not move at all: nothing to see)."""
    var = "state_o" if "state_o" in ds else next(v for v in ds.data_vars if str(v).startswith("state_"))
    if len(phases) < 2:
        return 0
    s = ds[var].isel(epoch=epoch).load()
    free = s.sel(phase="free").dropna("step", how="all").isel(step=-1)
    move = abs(s.sel(phase=phases[1]) - free).max(["step", str(var).removeprefix("state_") + "_unit"])
    return int(np.argmax(move.fillna(0).values))


def plot_probe_trajectories(data, axes: Sequence[Axes] | None = None, *, population: str = "o",
                            probe: int | None = None, epoch: int = -1, max_units: int = 10) -> Figure:
    """States of one probe sample through the phases of a training batch at the end of an
    epoch (``epoch``: position, −1 = last). The free phase is drawn as the state s(t) from zero;
    each nudged phase as its departure s(t) − s* from the free fixed point s* (the nudge moves
    states by a few percent, invisible on the free phase's scale). ``probe``: position of the
    probe sample; by default the one whose output the nudge moves most. For the output
    population the target unit is drawn thick; for others the ``max_units`` units that the
    nudge moves most (that move most in the free phase if there is no nudge)."""
    ds = _one_run(data, "plot_probe_trajectories")
    var = f"state_{population}"
    if var not in ds:
        raise NotApplicable(f"the run recorded no states of population {population!r}")
    phases = training_phases(ds)
    if n_epochs(ds):  # only the phases whose probe states were recorded (record.phases)
        at = ds[var].isel(epoch=epoch)
        have = at.notnull().any([d for d in at.dims if d != "phase"]).values
        phases = [p for p in phases if have[list(ds.phase.values).index(p)]]
        if "free" not in phases:
            raise NotApplicable("the run did not record the free phase's probe states (record.phases)")
    ncols = max(len(phases), 1)
    if axes is None:
        _, axes = plt.subplots(1, ncols, figsize=(4.6 * ncols, 3.6), layout="constrained", squeeze=False)
        axes = list(axes[0])
    if n_epochs(ds) == 0:
        _no_data(axes[0], "no completed epoch yet")
        return axes[0].figure
    chosen = probe is None
    probe = _most_nudged_probe(ds, epoch, phases) if chosen else probe
    states = ds[var].isel(epoch=epoch, probe=probe).load()
    time = ds["time"] if "time" in ds.coords else ds.step * float(ds.step.attrs.get("dt", 1.0))
    label = int(ds.probe_label.isel(probe=probe)) if "probe_label" in ds.coords else None
    unit_dim = f"{population}_unit"
    free = states.sel(phase="free").dropna("step", how="all")
    fixed_point = free.isel(step=-1)
    panels = {"free": free}
    for phase in phases[1:]:
        panels[phase] = states.sel(phase=phase).dropna("step", how="all") - fixed_point
    moved = [abs(p).max("step") for name, p in panels.items() if name != "free"]
    nudge_moves = bool(moved) and float(sum(moved).max()) > 0
    movement = sum(moved) if moved and float(sum(moved).max()) > 0 else abs(free).max("step")
    units = list(np.argsort(-movement.values)[:max_units])
    if population == "o" and label is not None and label not in units:
        units[-1:] = [label]
    title_of = {"free": "free phase: s(t)", "nudged": "nudged (+β): s(t) − s*",
                "nudged_minus": "nudged (−β): s(t) − s*", "perturbed": "perturbed: s(t) − s*"}
    for ax, (phase, traj) in zip(axes, panels.items()):
        t = time.sel(step=traj.step).values
        for u in sorted(units):
            target = population == "o" and u == label
            ax.plot(t, traj.isel({unit_dim: u}).values, lw=2.4 if target else 1,
                    label=f"{population}[{u}]" + (" (target)" if target else ""), zorder=3 if target else 2)
        if phase != "free":
            ax.axhline(0, color="0.5", lw=0.7)
            if not np.nanmax(np.abs(traj.values), initial=0) > 0:
                ax.text(0.5, 0.62, "no departure: the output already sits\nat the target (saturated rates)",
                        ha="center", va="center", transform=ax.transAxes, color="0.35", fontsize="small")
        ax.set_title(title_of.get(phase, phase), fontsize="medium")
        ax.set_xlabel("time (units of τ)")
    axes[0].set_ylabel(f"state s_{population}")
    if len(axes) > 1:
        axes[1].set_ylabel(f"s_{population} − s*_{population}")
    axes[-1].legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1))
    fig = axes[0].figure
    fig.suptitle(f"probe {int(ds.probe.values[probe])} (label {label}), epoch {int(ds.epoch.values[epoch])}"
                 + (f" — of {ds.sizes['probe']} probes, the one the nudge moves most" if chosen and nudge_moves
                    else ""), fontsize="medium")
    return fig


# -- sigprop: early exits and spike trains -------------------------------------------------------
def plot_exit_errors(data, ax: Axes | None = None) -> Axes:
    """Test error (%) of every early exit per epoch (sigprop, seed 000 eq. 8): the class read
    at each hidden layer hᵢ by comparing it with the targets' representations there, and at the
    output (the network's prediction, ``test_error``)."""
    ds = _one_run(data, "plot_exit_errors")
    if "exit_error" not in ds:
        raise NotApplicable("the run has no early exits (sigprop records them)")
    ax = _axes(ax)
    if n_epochs(ds) == 0:
        return _no_data(ax, "no completed epoch yet")
    for name in ds.exit.values:
        ax.plot(ds.epoch.values, 100.0 * ds.exit_error.sel(exit=name).values, label=f"exit at {name}", **_marker(ds))
    return _finish(ax, "test error (%)", "early exits")


def plot_spike_trains(data, axes: Sequence[Axes] | None = None, *, probe: int = 0, epoch: int = -1,
                      max_units: int = 40) -> Figure:
    """Spike trains of one probe sample after an epoch (``epoch``: position, −1 = last), one
    panel per spiking population: a tick where unit u spiked at time step t. The units that
    fire are ordered by spike count (most first, then by first spike) and ``max_units`` of them
    are drawn evenly spaced along that order, so that the raster spans every spike count and not
    only the saturated units; the title counts the units that fire and gives the population's
    firing rate (spikes per unit and time step). ``probe``: position of the probe sample."""
    ds = _one_run(data, "plot_spike_trains")
    pops = [str(v).removeprefix("spikes_") for v in ds.data_vars if str(v).startswith("spikes_")]
    if not pops:
        raise NotApplicable("the run recorded no spike trains (sigprop with spiking = true records them)")
    if axes is None:
        _, axes = plt.subplots(1, len(pops), figsize=(3.4 * len(pops), 3.8), layout="constrained", squeeze=False)
        axes = list(axes[0])
    if n_epochs(ds) == 0:
        _no_data(axes[0], "no completed epoch yet")
        return axes[0].figure
    steps = ds.time_step.values
    for ax, pop in zip(axes, pops):
        train = ds[f"spikes_{pop}"].isel(epoch=epoch, probe=probe).values.astype(np.int64)  # (time_step, unit)
        count = train.sum(0)
        first = np.where(count > 0, train.argmax(0), len(steps))
        firing = np.lexsort((first, -count))[: int((count > 0).sum())]
        units = firing[np.unique(np.linspace(0, len(firing) - 1, min(max_units, len(firing))).round().astype(int))] \
            if len(firing) else firing
        for row, u in enumerate(units):
            t = steps[train[:, u] > 0]
            ax.plot(t, np.full(len(t), row), "|", color="k", ms=max(2.0, 7.0 * min(1.0, 20 / max(len(units), 1))), mew=1.4)
        ax.set_yticks(range(len(units)), [str(u) for u in units], fontsize=5 if len(units) <= 40 else 3)
        ax.set_ylim(max(len(units), 1) - 0.2, -0.8)  # the most active unit on top
        ax.set_xticks(steps)
        ax.set_xlim(steps[0] - 0.5, steps[-1] + 0.5)
        ax.set_xlabel("time step")
        ax.set_title(f"{pop}: {len(firing)} of {len(count)} units fire\n"
                     f"rate {train.mean():.3f} spikes / unit / step", fontsize="small")
    axes[0].set_ylabel("unit (most spikes first)")
    label = int(ds.probe_label.isel(probe=probe)) if "probe_label" in ds.coords else None
    fig = axes[0].figure
    fig.suptitle(f"spike trains of probe {int(ds.probe.values[probe])} (label {label}), "
                 f"epoch {int(ds.epoch.values[epoch])}", fontsize="medium")
    return fig


# -- weights, updates, residuals ----------------------------------------------------------------
def _weight_vars(ds: xr.Dataset) -> list[str]:
    return [str(v) for v in ds.data_vars if str(v).startswith("weight_")]


def _fro(da: xr.DataArray) -> xr.DataArray:
    dims = [d for d in da.dims if str(d).endswith("_unit")]
    return np.sqrt((da.astype(np.float64) ** 2).sum(dims))


def plot_weight_norms(data, ax: Axes | None = None) -> Axes:
    """Frobenius norm ‖W‖_F of every stored projection at each weight snapshot (epoch 0 =
    initialisation)."""
    ds = _one_run(data, "plot_weight_norms")
    ax = _axes(ax)
    names = _weight_vars(ds)
    if not names or ds.sizes.get("snapshot", 0) == 0:
        raise NotApplicable("the run stores no weights")
    for name in names:
        ax.plot(ds.snapshot.values, _fro(ds[name]).values, marker="o", ms=3.5,
                label=projection_label(name.removeprefix("weight_")))
    return _finish(ax, "‖W‖_F", "weight norms (stored snapshots)")


def plot_update_norms(data, ax: Axes | None = None) -> Axes:
    """Relative change of every learned projection per epoch, ‖W_k − W_j‖_F / ‖W_j‖_F / (k − j)
    between consecutive snapshots j < k, drawn at k (log scale; fixed projections, which never
    change, are left out)."""
    ds = _one_run(data, "plot_update_norms")
    ax = _axes(ax)
    if ds.sizes.get("snapshot", 0) < 2:
        raise NotApplicable("fewer than two weight snapshots")
    epochs = ds.snapshot.values
    gap = np.diff(epochs).astype(np.float64)
    drawn = False
    for name in _weight_vars(ds):
        w = ds[name].values.astype(np.float64)
        w = w.reshape(len(w), -1)
        delta = np.linalg.norm(np.diff(w, axis=0), axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = delta / np.linalg.norm(w[:-1], axis=1) / np.where(gap > 0, gap, np.nan)
        if not np.any(rel > 0):  # a fixed projection
            continue
        ax.plot(epochs[1:], rel, marker="o", ms=3.5, label=projection_label(name.removeprefix("weight_")))
        drawn = True
    if not drawn:
        raise NotApplicable("no stored projection changed")
    ax.set_yscale("log")
    return _finish(ax, "‖ΔW‖_F / ‖W‖_F per epoch", "update size (between snapshots)")


def plot_residuals(data, ax: Axes | None = None) -> Axes:
    """Convergence residual max|ds/dt| at the end of each phase training ran (mean over the
    epoch's batches), log scale: how far from rest each phase ended."""
    ds = _one_run(data, "plot_residuals")
    ax = _axes(ax)
    if "residual" not in ds:
        raise NotApplicable("the run has no residual")
    if n_epochs(ds) == 0:
        return _no_data(ax, "no completed epoch yet")
    if np.all(ds.residual.values == 0):  # the reference engine: every phase is its fixed point
        raise NotApplicable("every phase ended exactly at rest (residual 0: one feed-forward sweep)")
    for phase in training_phases(ds):
        ax.plot(ds.epoch.values, ds.residual.sel(phase=phase).values, label=phase, **_marker(ds))
    ax.set_yscale("log")
    return _finish(ax, "max |ds/dt| at the phase's end", "convergence residual")


# -- sweeps -------------------------------------------------------------------------------------
def plot_error_vs_parameter(data, parameter: str | None = None, ax: Axes | None = None, *,
                            variable: str = "test_error", epoch: int | str = "final") -> Axes:
    """A sweep's error (%) against one swept parameter: at the ``epoch`` (``"final"``: the last
    epoch each point completed, ``"best"``: each point's lowest, or an epoch number); mean over
    ``seed`` with min–max error bars, one line per value of any other swept parameter. Log x
    axis for positive values spanning more than a factor 20; strings become categories."""
    ds = as_dataset(data)
    dims = [d for d in sweep_dims(ds[variable]) if d != SEED]
    if not dims:
        raise NotApplicable("not a sweep: no swept parameter besides seed")
    parameter = parameter or dims[0]
    if parameter not in dims:
        raise ValueError(f"parameter = {parameter!r}: the swept parameters are {dims}")
    ax = _axes(ax)
    da = 100 * ds[variable]
    if epoch == "best":
        da = da.min("epoch")
    elif epoch == "final":  # each point's last completed epoch (points of a running sweep differ)
        da = last_finite(da)
    else:
        da = da.sel(epoch=epoch)
    x = ds[parameter].values if parameter in ds.coords else np.arange(ds.sizes[parameter])
    categorical = x.dtype.kind in "OUSb"
    xpos = np.arange(len(x)) if categorical else x.astype(np.float64)
    rest = [d for d in dims if d != parameter]
    for values in itertools.product(*(range(ds.sizes[d]) for d in rest)):
        sel = dict(zip(rest, values))
        sub = da.isel(sel).transpose(parameter, ...)
        label = ", ".join(f"{d}={_fmt(ds[d].values[k]) if d in ds.coords else k}" for d, k in sel.items())
        if SEED in sub.dims:
            mean, lo, hi = sub.mean(SEED).values, sub.min(SEED).values, sub.max(SEED).values
            ax.errorbar(xpos, mean, yerr=[mean - lo, hi - mean], marker="o", capsize=3,
                        label=_join(label, f"mean of {sub.sizes[SEED]} seeds, min–max"))
        else:
            ax.plot(xpos, sub.values, marker="o", label=label or None)
    if categorical:
        ax.set_xticks(xpos, [str(v) for v in x])
    elif np.all(xpos > 0) and xpos.max() / xpos.min() > 20:
        ax.set_xscale("log")
    ax.set_xlabel(parameter)
    which = {"final": "final", "best": "best"}.get(str(epoch), f"epoch {epoch}")
    ax.set_ylabel(f"{which} {variable.replace('_', ' ')} (%)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    ax.set_title(f"{variable.replace('_', ' ')} against {parameter}")
    return ax
