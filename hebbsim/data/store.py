"""Run files (docs/guide.md, Run files): one HDF5 file per run, written through h5netcdf, appended every epoch.

A run file is a netCDF4-style HDF5 file that ``xarray.open_dataset(path, engine="h5netcdf")``
opens (lazily with ``chunks={}``). Its dimensions:

- ``epoch`` (unlimited), ``iteration`` (unlimited, one per training batch), ``snapshot``
  (unlimited, one per stored set of weights; coordinate = the epoch after which they were
  taken, 0 = initialisation);
- ``phase`` (the phases of a training batch), ``step`` (Euler steps at which probe states are
  recorded), ``probe`` (coordinate = the probe samples' data-set indices), ``<pop>_unit`` for
  every population, ``projection`` (learned projections on a directed cycle).

The store is engine-independent: it takes plain numpy arrays and floats (:class:`EpochRecord`).

**Crash safety (copy, append, publish).** The file at ``path`` is never opened for writing.
Each epoch is appended to a copy (``<path>.tmp``), which is then closed, fsynced and renamed
over ``path`` (``os.replace``, atomic on POSIX). A run killed at any moment therefore leaves
``path`` as it was after the last completed epoch, and readers may open ``path`` at any time,
even while the run writes (they see the epochs published so far). Appending epoch ``k`` first
drops anything the file holds from epoch ``k`` on, so a resumed run rewrites an epoch that was
published before its checkpoint and every epoch is held exactly once.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import h5netcdf
import h5py
import numpy as np
import xarray as xr

from ..dynamics.network import INPUT
from ..errors import HebbsimError
from .atomic import fsync_path, replace_durably
from .crashpoints import fault_point, stall_point

SCHEMA = "hebbsim-run/1"
CONVENTIONS = "CF-1.10"
"""The run file follows the CF metadata conventions: every variable and coordinate has a
``long_name`` (a short label, what xarray puts on plot axes) and udunits-parseable ``units``
(``1`` for fractions and other dimensionless numbers, ``degree`` for angles, ``s`` for wall time;
string-valued coordinates have none, as CF asks); ``description`` says precisely what was
computed. Model time is dimensionless: it is counted in units of the neurons' leak time
constant ``r`` (``time = step * dt``)."""

METRICS: dict[str, tuple[str, str, str]] = {
    "train_error": ("1", "training error",
                    "fraction of training samples misclassified at the free fixed point during the epoch"),
    "test_error": ("1", "test error",
                   "fraction of test samples misclassified at the free fixed point (started from zeros)"),
    "train_loss": ("1", "training loss",
                   "mean 0.5*||rho(s_o) - d||^2 over the training samples (free fixed point, during the epoch)"),
    "test_loss": ("1", "test loss", "mean 0.5*||rho(s_o) - d||^2 over the test samples"),
    "epoch_time": ("s", "epoch wall time", "wall time of the epoch's training pass"),
}
"""Per-epoch scalars: name → (units, long_name, description)."""


class StoreError(HebbsimError):
    """A run file cannot be written, opened or does not fit what is being appended."""


class StoreWriteError(StoreError):
    """Writing an epoch failed (I/O error); the published run file and the checkpoint are as before."""


@dataclass(frozen=True)
class RunLayout:
    """The fixed part of a run file: its fixed dimensions and which variables it holds."""

    populations: dict[str, int]  # every population (the input x included) → number of units
    phases: tuple[str, ...]  # the phase coordinate: the phases of a training batch
    steps: np.ndarray  # the step coordinate: Euler steps at which probe states are recorded
    dt: float  # Euler time step (the step coordinate times dt is the time)
    probe: np.ndarray  # the probe coordinate: probe samples' indices in their split
    probe_split: str  # "test" or "train"
    probe_label: np.ndarray  # (probe,) class labels of the probe samples
    probe_input: np.ndarray  # (probe, x_unit) the probe samples' inputs
    recorded: tuple[str, ...]  # populations with a state_<pop> variable
    weights: dict[str, tuple[str, str]]  # stored projection → (src, dst)
    loop_projections: tuple[str, ...]  # the projection coordinate of loop_alignment (and grad_alignment)
    dtype: str  # dtype of states, weights and biases (the run's dtype)
    grad_alignment: bool = False  # whether the file has grad_alignment(epoch, projection)
    feedback_projections: tuple[str, ...] = ()  # the feedback coordinate of feedback_alignment
    # early exits and spike trains (sigprop, docs/rules.md): the exit coordinate of exit_error,
    # the spiking populations with a spikes_<pop> variable, and their time steps
    exits: tuple[str, ...] = ()
    spiking: tuple[str, ...] = ()
    time_steps: int = 0

    @property
    def records_states(self) -> bool:
        return bool(self.recorded) and len(self.probe) > 0


@dataclass
class EpochRecord:
    """What one epoch appends to a run file (plain numpy arrays and floats)."""

    epoch: int  # 1-based
    metrics: dict[str, float]  # every key of METRICS
    residual: dict[str, float]  # phase → mean over batches of the final max|ds/dt|
    batch_loss: np.ndarray  # (batches,) mean loss of each training batch
    states: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # pop → phase → (steps, probe, unit)
    loop_alignment: dict[str, float] = field(default_factory=dict)  # projection → degrees
    grad_alignment: dict[str, float] = field(default_factory=dict)  # projection → degrees
    feedback_alignment: dict[str, float] = field(default_factory=dict)  # fixed feedback projection → degrees
    feedback_error: dict[str, float] = field(default_factory=dict)  # → relative error of Bᵀ against its forward map
    feedback_sign_congruence: dict[str, float] = field(default_factory=dict)  # → fraction of agreeing signs
    weights: dict[str, np.ndarray] | None = None  # a snapshot after this epoch: projection → (dst, src)
    biases: dict[str, np.ndarray] | None = None  # with the snapshot: population → (unit,)
    exit_error: dict[str, float] = field(default_factory=dict)  # early exit → test error (sigprop)
    spikes: dict[str, np.ndarray] = field(default_factory=dict)  # pop → (time_step, probe, unit) 0/1 (sigprop)
    phase_steps: dict[str, float] = field(default_factory=dict)  # phase → mean over batches of the steps it took


def _filters(compression: str, level: int) -> dict:
    if compression == "gzip":
        return {"compression": "gzip", "compression_opts": level, "shuffle": True}
    if compression == "lzf":
        return {"compression": "lzf", "shuffle": True}
    return {}


def _resize(f: h5py.File, dim: str, size: int) -> None:
    """Resize an unlimited dimension: its dimension scale and every variable attached to it
    (what ``h5netcdf.File.resize_dimension`` does).

    The scale's ``REFERENCE_LIST`` names the attached variables; a variable whose own
    ``DIMENSION_LIST`` names the scale is resized too, so that a missing back-reference can
    never leave a variable shorter than its dimension (seen once in a CI run: an epoch's
    metrics written past the end of a zero-length variable)."""
    scale = f[dim]
    scale.resize((size,))
    done = {scale.name}
    for ref, axis in scale.attrs.get("REFERENCE_LIST", ()):
        f[ref].resize(size, axis)
        done.add(f[ref].name)

    def attached(name: str, obj) -> None:
        if not isinstance(obj, h5py.Dataset) or obj.name in done or "DIMENSION_LIST" not in obj.attrs:
            return
        for axis, refs in enumerate(obj.attrs["DIMENSION_LIST"]):
            if any(f[r].name == scale.name for r in refs) and obj.shape[axis] != size:
                obj.resize(size, axis)

    f.visititems(attached)


def _attrs(var, units: str | None, long_name: str, description: str, **more) -> None:
    """CF attributes of a variable (``units=None``: a string-valued variable, which has none)."""
    if units is not None:
        var.attrs["units"] = units
    var.attrs["long_name"] = long_name
    var.attrs["description"] = description
    for k, v in more.items():
        var.attrs[k] = v


class RunStore:
    """Writes one run file: :meth:`create` it, then :meth:`append` one :class:`EpochRecord`
    per epoch (see the module docstring for why this never leaves a broken file)."""

    def __init__(self, path: str | Path, compression: str = "gzip", compression_level: int = 4):
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        self.filters = _filters(compression, compression_level)

    # -- creating -------------------------------------------------------------------------------
    def create(self, layout: RunLayout, attrs: dict, weights: dict[str, np.ndarray],
               biases: dict[str, np.ndarray]) -> None:
        """Write (and publish) a run file with no epochs and the initial weights as snapshot 0."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._writing(0):
            need = sum(np.asarray(a).nbytes for a in (*weights.values(), *biases.values(), layout.probe_input))
            _check_free_space(self.path.parent, 2 * need + SLACK_BYTES)
            with h5netcdf.File(self.tmp, "w") as f:
                self._define(f, layout, attrs)
            with h5py.File(self.tmp, "a") as f:
                self._write_snapshot(f, 0, weights, biases)
            self._verify(0, 0)
            self._publish(0)

    def _define(self, f: h5netcdf.File, lay: RunLayout, attrs: dict) -> None:
        dims: dict[str, int | None] = {"epoch": None, "iteration": None, "snapshot": None, "phase": len(lay.phases)}
        dims.update({f"{pop}_unit": n for pop, n in lay.populations.items()})
        if lay.records_states:
            dims.update({"step": len(lay.steps), "probe": len(lay.probe)})
        if lay.loop_projections:
            dims["projection"] = len(lay.loop_projections)
        if lay.feedback_projections:
            dims["feedback"] = len(lay.feedback_projections)
        if lay.exits:
            dims["exit"] = len(lay.exits)
        if lay.spiking and lay.records_states:
            dims["time_step"] = lay.time_steps
        f.dimensions = dims
        dtype, z = np.dtype(lay.dtype), self.filters

        v = f.create_variable("epoch", ("epoch",), "i8", chunks=(1024,))
        _attrs(v, "1", "epoch", "training epochs completed (1-based)")
        v = f.create_variable("iteration", ("iteration",), "i8", chunks=(4096,), **z)
        _attrs(v, "1", "training batch", "training batch, counted over the run (1-based)")
        v = f.create_variable("batch_epoch", ("iteration",), "i8", chunks=(4096,), **z)
        _attrs(v, "1", "epoch of the batch", "the epoch a training batch belongs to")
        v = f.create_variable("snapshot", ("snapshot",), "i8", chunks=(256,))
        _attrs(v, "1", "epoch of the weight snapshot", "epoch after which the weights were stored (0: initialisation)")
        v = f.create_variable("phase", ("phase",), h5py.string_dtype(), data=np.array(lay.phases, dtype=object))
        _attrs(v, None, "phase", "phase of a training batch: free (beta = 0), nudged (+beta), nudged_minus (-beta)")

        for name, (units, long_name, description) in METRICS.items():
            v = f.create_variable(name, ("epoch",), "f8", chunks=(1024,), fillvalue=np.nan)
            _attrs(v, units, long_name, description)
        v = f.create_variable("residual", ("epoch", "phase"), "f8", chunks=(256, len(lay.phases)),
                              fillvalue=np.nan)
        _attrs(v, "1", "residual max|ds/dt|", "mean over the epoch's batches of max|ds/dt| at the end of each phase "
                                               "(time in units of the leak time constant)")
        v = f.create_variable("phase_steps", ("epoch", "phase"), "f8", chunks=(256, len(lay.phases)),
                              fillvalue=np.nan)
        _attrs(v, "1", "steps per phase", "mean over the epoch's batches of the Euler (or adaptive solver) steps "
                                          "each phase took: fewer than its step count where dynamics.tol ended it")
        v = f.create_variable("batch_loss", ("iteration",), "f8", chunks=(4096,), fillvalue=np.nan, **z)
        _attrs(v, "1", "batch loss", "mean cost C (learning.cost) of a training batch at its free fixed point",
               coordinates="batch_epoch")
        def per_epoch(name, dim, n, units, long_name, description):
            v = f.create_variable(name, ("epoch", dim), "f8", chunks=(256, n), fillvalue=np.nan)
            _attrs(v, units, long_name, description)

        def names(dim, values, description):
            v = f.create_variable(dim, (dim,), h5py.string_dtype(), data=np.array(values, dtype=object))
            _attrs(v, None, dim, description)
            return len(values)

        if lay.loop_projections:
            n = names("projection", lay.loop_projections, "learned projection on a directed cycle")
            per_epoch("loop_alignment", "projection", n, "degree", "loop alignment",
                      "angle between M^T and the product of the other projections around M's shortest cycle "
                      "(docs/model.md); below 90 the loop carries a useful signal")
            if lay.grad_alignment:
                per_epoch("grad_alignment", "projection", n, "degree", "gradient alignment",
                          "angle between the learning rule's update and -dL/dW (exact, implicit differentiation at the "
                          "free fixed point) on the probe samples (docs/model.md)")
        if lay.feedback_projections:
            n = names("feedback", lay.feedback_projections, "fixed projection B feeding back along the learned "
                                                            "forward path")
            per_epoch("feedback_alignment", "feedback", n, "degree", "feedback alignment",
                      "angle between B^T and the learned forward map M from B's destination back to its source "
                      "(docs/model.md); below 90 the forward weights align with B")
            per_epoch("feedback_error", "feedback", n, "1", "feedback relative error",
                      "||B^T - M||_F / ||M||_F (seed 003 Fig. 2A)")
            per_epoch("feedback_sign_congruence", "feedback", n, "1", "feedback sign congruence",
                      "fraction of the entries of B^T and M with the same sign (seed 003 Fig. 2B)")

        if lay.exits:
            v = f.create_variable("exit", ("exit",), h5py.string_dtype(), data=np.array(lay.exits, dtype=object))
            _attrs(v, None, "early exit", "the layer whose early-exit prediction is scored (the last one is the network's)")
            v = f.create_variable("exit_error", ("epoch", "exit"), "f8", chunks=(256, len(lay.exits)),
                                  fillvalue=np.nan)
            _attrs(v, "1", "early-exit test error", "fraction of test samples misclassified by the layer's early exit "
                   "(sigprop, seed 000 eq. 8: the class whose target at that layer is nearest; a classifier's argmax)")

        for name, (src, dst) in lay.weights.items():
            shape = (lay.populations[dst], lay.populations[src])
            v = f.create_variable(f"weight_{name}", ("snapshot", f"{dst}_unit", f"{src}_unit"), dtype,
                                  chunks=(1, *shape), **z)
            _attrs(v, "1", f"weight {src} → {dst}", f"weights of projection {src} -> {dst}, shape (n_{dst}, n_{src})")
        for pop, n in lay.populations.items():
            if pop == INPUT:  # the clamped input has no bias
                continue
            v = f.create_variable(f"bias_{pop}", ("snapshot", f"{pop}_unit"), dtype, chunks=(1, n), **z)
            _attrs(v, "1", f"bias of {pop}", f"biases of population {pop}")

        if lay.records_states:
            v = f.create_variable("step", ("step",), "i8", data=np.asarray(lay.steps, np.int64))
            _attrs(v, "1", "Euler step", "Euler steps since the start of the phase (time = step * dt)", dt=lay.dt)
            v = f.create_variable("time", ("step",), "f8", data=np.asarray(lay.steps, np.float64) * lay.dt)
            _attrs(v, "1", "time", "time since the start of the phase, step * dt, in units of the leak time "
                                   "constant r")
            v = f.create_variable("probe", ("probe",), "i8", data=np.asarray(lay.probe, np.int64))
            _attrs(v, "1", "probe sample", f"index of the probe sample in the {lay.probe_split} split",
                   split=lay.probe_split)
            v = f.create_variable("probe_label", ("probe",), "i8", data=np.asarray(lay.probe_label, np.int64))
            _attrs(v, "1", "class label", "class label of the probe sample")
            v = f.create_variable("probe_input", ("probe", f"{INPUT}_unit"), dtype, data=lay.probe_input, **z)
            _attrs(v, "1", "probe input", "input of the probe sample (the clamped x)")
            for pop in lay.recorded:
                chunks = (1, 1, len(lay.steps), len(lay.probe), lay.populations[pop])
                v = f.create_variable(f"state_{pop}", ("epoch", "phase", "step", "probe", f"{pop}_unit"), dtype,
                                      chunks=chunks, fillvalue=np.array(np.nan, dtype), **z)
                _attrs(v, "1", f"state s_{pop}", f"state s of population {pop} for the probe samples, during each phase, at the "
                               "end of the epoch (free phase from zeros; nudged phases from the free end state; "
                               "NaN past a phase's last step or for phases not recorded)",
                       coordinates="probe_label time")
            if lay.spiking:
                v = f.create_variable("time_step", ("time_step",), "i8", data=np.arange(1, lay.time_steps + 1))
                _attrs(v, "1", "time step", "time step of the spiking forward pass (1-based)")
            for pop in lay.spiking:
                v = f.create_variable(f"spikes_{pop}", ("epoch", "time_step", "probe", f"{pop}_unit"), "i1",
                                      chunks=(1, lay.time_steps, len(lay.probe), lay.populations[pop]), **z)
                _attrs(v, "1", f"spikes of {pop}", f"spike train (1: a spike) of population {pop} for the probe samples' "
                       "inputs, in the forward pass at the end of the epoch",
                       coordinates="probe_label")
        for k, val in attrs.items():
            f.attrs[k] = val
        f.attrs["Conventions"] = CONVENTIONS
        f.attrs["schema"] = SCHEMA

    # -- appending ------------------------------------------------------------------------------
    def epochs(self) -> int:
        """Number of epochs the published run file holds."""
        try:
            with h5netcdf.File(self.path, "r") as f:
                return f.dimensions["epoch"].size
        except (OSError, KeyError, ValueError, RuntimeError) as err:
            raise StoreError(damaged_message(self.path, err)) from None

    def attrs(self) -> dict:
        """The published run file's global attributes."""
        try:
            with h5netcdf.File(self.path, "r") as f:
                return dict(f.attrs)
        except (OSError, KeyError, ValueError, RuntimeError) as err:
            raise StoreError(damaged_message(self.path, err)) from None

    def epoch_metrics(self, epoch: int) -> dict[str, float]:
        """The published run file's per-epoch scalars (:data:`METRICS`) of ``epoch`` (1-based)."""
        try:
            with h5py.File(self.path, "r") as f:
                return {name: float(f[name][epoch - 1]) for name in METRICS}
        except (OSError, KeyError, ValueError, IndexError, RuntimeError) as err:
            raise StoreError(damaged_message(self.path, err)) from None

    def append(self, rec: EpochRecord, attrs: dict | None = None) -> None:
        """Append one epoch (replacing that epoch and later ones if the file already holds them)
        and publish the file. ``attrs`` updates global attributes (e.g. ``end_time``).

        The file's structure was laid down by :meth:`create` through h5netcdf; appending only
        grows unlimited dimensions and writes data, which plain h5py does without h5netcdf's
        per-write scans of every variable (several times faster)."""
        with self._writing(rec.epoch):
            shutil.copyfile(self.path, self.tmp)
            fault_point("copy", rec.epoch)
            stall_point("copy", rec.epoch)
            self._reserve(_record_bytes(rec))
            self._append(rec, attrs)
            self._verify(rec.epoch, len(rec.batch_loss), rec.metrics)
            self._publish(rec.epoch)

    def _append(self, rec: EpochRecord, attrs: dict | None) -> None:
        with h5py.File(self.tmp, "a") as f:
            self._truncate(f, rec.epoch)
            n = rec.epoch - 1
            _resize(f, "epoch", n + 1)
            f["epoch"][n] = rec.epoch
            phases = list(f["phase"].asstr()[:])
            for pop, by_phase in rec.states.items():
                var = f[f"state_{pop}"]
                for phase, traj in by_phase.items():
                    var[n, phases.index(phase), :len(traj)] = traj
            stall_point("append", rec.epoch)
            fault_point("append", rec.epoch)
            for name in METRICS:
                f[name][n] = rec.metrics[name]
            f["residual"][n] = [rec.residual.get(p, np.nan) for p in phases]
            if "phase_steps" in f:  # run files written before it existed go on without it
                f["phase_steps"][n] = [rec.phase_steps.get(p, np.nan) for p in phases]
            for var, dim in (("loop_alignment", "projection"), ("grad_alignment", "projection"),
                             ("feedback_alignment", "feedback"), ("feedback_error", "feedback"),
                             ("feedback_sign_congruence", "feedback")):
                values = getattr(rec, var)
                if values and var in f:
                    f[var][n] = [values.get(p, np.nan) for p in f[dim].asstr()[:]]
            if rec.exit_error and "exit_error" in f:
                f["exit_error"][n] = [rec.exit_error.get(k, np.nan) for k in f["exit"].asstr()[:]]
            for pop, train in rec.spikes.items():
                if f"spikes_{pop}" in f:
                    f[f"spikes_{pop}"][n] = np.asarray(train, np.int8)
            it0, nb = f["iteration"].shape[0], len(rec.batch_loss)
            _resize(f, "iteration", it0 + nb)
            f["iteration"][it0:] = np.arange(it0 + 1, it0 + nb + 1)
            f["batch_epoch"][it0:] = rec.epoch
            f["batch_loss"][it0:] = rec.batch_loss
            if rec.weights is not None:
                self._write_snapshot(f, rec.epoch, rec.weights, rec.biases or {})
            for k, val in (attrs or {}).items():
                f.attrs[k] = val

    @staticmethod
    def _truncate(f: h5py.File, epoch: int) -> None:
        """Drop whatever the file holds from ``epoch`` on (a resumed run redoes those epochs)."""
        have = f["epoch"].shape[0]
        if have < epoch - 1:
            raise StoreError(f"cannot append epoch {epoch}: the run file holds only {have} epochs")
        if have > epoch - 1:
            _resize(f, "epoch", epoch - 1)
        for dim, coord in (("iteration", "batch_epoch"), ("snapshot", "snapshot")):
            size = f[dim].shape[0]
            if size and f[coord][size - 1] >= epoch:
                _resize(f, dim, int(np.searchsorted(f[coord][:], epoch)))

    @staticmethod
    def _write_snapshot(f: h5py.File, epoch: int, weights: dict[str, np.ndarray],
                        biases: dict[str, np.ndarray]) -> None:
        k = f["snapshot"].shape[0]
        _resize(f, "snapshot", k + 1)
        f["snapshot"][k] = epoch
        for name, w in weights.items():
            f[f"weight_{name}"][k] = w
        for pop, b in biases.items():
            f[f"bias_{pop}"][k] = b

    def _publish(self, epoch: int) -> None:
        fsync_path(self.tmp)
        fault_point("publish", epoch)
        stall_point("publish", epoch)
        replace_durably(self.tmp, self.path)
        stall_point("published", epoch)

    @contextlib.contextmanager
    def _writing(self, epoch: int):
        """Around writing the temporary file and publishing it: on any failure the temporary
        file is removed (the published file is untouched); an I/O error (a full disk, a failing
        device) or an HDF5 error becomes a :class:`StoreWriteError` naming what to do."""
        try:
            yield
        except BaseException as err:
            self._discard_tmp()
            if isinstance(err, (OSError, RuntimeError)):
                what = "the run file" if epoch == 0 else f"epoch {epoch}"
                held = {1: "no epochs", 2: "epoch 1"}.get(epoch, f"epochs 1 to {epoch - 1}")
                kept = ("nothing was published" if epoch == 0 else
                        f"the run file still holds {held}, its checkpoint is unchanged")
                reason = getattr(err, "strerror", None) or str(err)
                raise StoreWriteError(f"cannot write {what} of {self.path}: {reason}; {kept}. Free some space "
                                      "(or fix the folder), then continue with --resume") from err
            raise

    def _reserve(self, nbytes: int) -> None:
        """Reserve ``nbytes`` (twice what the epoch holds uncompressed, plus slack) at the end of
        the temporary file before HDF5 writes to it. HDF5 handles a full disk badly — a failed
        write or close leaves its library state broken (errors at exit, even a segfault) — so
        the space is claimed here, where a full disk is a plain ``OSError``; HDF5 then writes
        into the reserved blocks and, on closing, truncates the file to its real end."""
        size = self.tmp.stat().st_size
        try:
            fd = os.open(self.tmp, os.O_RDWR)
            try:
                os.posix_fallocate(fd, size, 2 * nbytes + SLACK_BYTES)  # only the new blocks
            finally:
                os.close(fd)
        except (AttributeError, OSError) as err:  # no fallocate here (platform, file system): check instead
            if isinstance(err, OSError) and err.errno == errno.ENOSPC:
                raise
            _check_free_space(self.path.parent, 2 * nbytes + SLACK_BYTES)

    def _discard_tmp(self) -> None:
        """Remove a failed temporary file (emptied first: its space is freed even if HDF5 still
        holds it open)."""
        with contextlib.suppress(OSError):
            os.truncate(self.tmp, 0)
        with contextlib.suppress(OSError):
            self.tmp.unlink()

    def _verify(self, epoch: int, n_batches: int, metrics: dict[str, float] | None = None) -> None:
        """Read back what was just written to the temporary file: HDF5 reports some write errors
        (a full disk while flushing its caches) only on stderr, and a damaged file must never be
        published."""
        try:
            with h5py.File(self.tmp, "r") as f:
                ok = f["epoch"].shape[0] == epoch and (epoch == 0 or int(f["epoch"][epoch - 1]) == epoch)
                if ok and epoch:
                    ok = all(np.array_equal(f[k][epoch - 1], v, equal_nan=True) for k, v in (metrics or {}).items())
                    it = f["batch_epoch"]
                    ok = ok and int(np.sum(it[max(0, it.shape[0] - n_batches):] == epoch)) == n_batches
                    f["batch_loss"][max(0, it.shape[0] - n_batches):]  # noqa: B018 (its chunks decompress)
        except (OSError, KeyError, ValueError) as err:
            raise OSError(errno.EIO, f"the written file cannot be read back ({err})") from None
        if not ok:
            raise OSError(errno.EIO, "the written file does not hold what was written")


SLACK_BYTES = 1 << 20
"""Space reserved beyond an epoch's data for HDF5's own structures (chunk indices, headers)."""


def _record_bytes(rec: EpochRecord) -> int:
    """Bytes an epoch's record holds uncompressed (what appending it may add to the file, at most)."""
    arrays = [traj for by_phase in rec.states.values() for traj in by_phase.values()]
    arrays += list((rec.weights or {}).values()) + list((rec.biases or {}).values()) + list(rec.spikes.values())
    return sum(np.asarray(a).nbytes for a in arrays) + 3 * 8 * len(rec.batch_loss) + 64 * 8


def _check_free_space(folder: Path, nbytes: int) -> None:
    """Raise ``OSError(ENOSPC)`` if ``folder``'s file system has less than ``nbytes`` free."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:  # cannot tell: let the write itself find out
        return
    if free < nbytes:
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} ({free} bytes free, about {nbytes} needed)")


def open_run(path: str | Path, **kwargs) -> xr.Dataset:
    """Open a run file as an xarray Dataset; ``chunks={}`` opens it lazily with dask. Safe while
    the run is writing: the file at ``path`` is only ever replaced whole, never modified."""
    path = Path(path).expanduser()
    if not path.exists():
        raise StoreError(f"run file {path} does not exist")
    if not path.is_file():
        raise StoreError(f"run file {path} is not a regular file")
    kwargs.setdefault("decode_timedelta", False)  # epoch_time is in "s": a float, not a timedelta
    from ..analysis import accessor  # noqa: F401  (registers the Dataset.hebbsim plots)

    try:
        return xr.open_dataset(path, engine="h5netcdf", **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise StoreError(damaged_message(path, err)) from None


def damaged_message(path: Path, err: BaseException) -> str:
    """Why a run file cannot be opened, and what to do."""
    size = path.stat().st_size if path.is_file() else 0
    return (f"cannot open run file {path} ({size} bytes): it is damaged or not a hebbsim run file ({err}). "
            "hebbsim only ever publishes complete files, so it was truncated or changed afterwards "
            "(an interrupted copy, a full disk, a failing device): copy it again from its source or a backup")


def run_schema(ds: xr.Dataset) -> dict[str, tuple[str, ...]]:
    """The schema of a run: every variable (coordinates included) → its dimension names."""
    return {str(name): tuple(str(d) for d in ds[name].dims) for name in ds.variables}
