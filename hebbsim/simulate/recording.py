"""What a run records besides its metrics (docs/guide.md, Run files): probe trajectories (the per-batch losses come
with each epoch's :class:`hebbsim.simulate.training.EpochStats`).

Probe trajectories go through the engine API only (``engine.clamp(...).relax(...)``), so every
engine is recorded the same way: at the end of each epoch the probe samples run through the
phases of a training batch, with ``relax`` called in chunks of ``record.every_steps`` steps and
the state kept after each chunk — a free phase from zero states (not from persistent states),
a nudged phase with +β from the free end state and, with symmetric nudging, one with −β
(whatever ``random_sign_beta`` drew for the training batches). ``tol`` is 0 here: every phase
runs its full number of steps.
"""

from __future__ import annotations

import numpy as np

from ..data.datasets import Dataset
from ..data.params import RunParams
from ..data.store import RunLayout
from ..dynamics import rhs
from ..dynamics.loss import one_hot
from ..dynamics.network import OUTPUT, Network
from ..dynamics.params import Params
from ..errors import HebbsimError
from .engines.base import ClampedSystem, Engine, States


def choose_probes(n: int, count: int, spacing: str) -> np.ndarray:
    """Indices of ``count`` probe samples among ``n``: evenly spaced from the first to the last
    (``"even"``) or the first ``count`` (``"first"``)."""
    if count > n:
        raise HebbsimError(f"record.probes = {count}, but the probe split holds only {n} samples; "
                           "lower record.probes")
    if spacing == "first":
        return np.arange(count)
    return np.unique(np.round(np.linspace(0, n - 1, count)).astype(np.int64)) if count else np.arange(0)


def step_grid(every: int, phase_steps: dict[str, int]) -> np.ndarray:
    """Recorded Euler steps: 0, every, 2·every, … up to the longest phase, plus each phase's
    last step (so the end state of every phase is recorded). Phase p uses the steps ≤ its length."""
    longest = max(phase_steps.values())
    return np.array(sorted(set(range(0, longest + 1, every)) | set(phase_steps.values())), dtype=np.int64)


class ProbeRecorder:
    """Runs the probe samples through the phases of a training batch and keeps their states."""

    def __init__(self, cfg: RunParams, net: Network, data: Dataset):
        rec, dyn = cfg.record, cfg.dynamics
        x, y = (data.x_test, data.y_test) if rec.probe_split == "test" else (data.x_train, data.y_train)
        self.index = choose_probes(len(x), rec.probes, rec.probe_spacing)
        self.x, self.labels = x[self.index], y[self.index]
        self.net = net
        self.populations = tuple(rec.populations if rec.populations is not None
                                 else [p.name for p in net.dynamic_populations]) if len(self.index) else ()
        self.phases = tuple(rec.phases if rec.phases is not None else cfg.phases) if self.populations else ()
        self.phase_steps = {p: (dyn.free_steps if p == "free" else dyn.nudge_steps) for p in cfg.phases}
        self.steps = step_grid(rec.every_steps, {p: self.phase_steps[p] for p in self.phases}) \
            if self.phases else np.arange(0)
        self.beta = dyn.beta
        self.label_smoothing = cfg.learning.label_smoothing

    def record(self, rule, engine: Engine, params: Params) -> dict[str, dict[str, np.ndarray]]:
        """States ``pop → phase → (steps of the phase, probe, unit)`` with the current parameters,
        in the phases ``rule`` runs (its nudged phases at ``+dynamics.beta``)."""
        if not self.phases:
            return {}
        n = len(self.index)
        x = self.x.astype(engine.dtype)
        system = engine.clamp(rule.inference_params(params), x)
        target = one_hot(self.labels, self.net.sizes[OUTPUT], engine.dtype, self.label_smoothing)
        out: dict[str, dict[str, np.ndarray]] = {pop: {} for pop in self.populations}
        free = self._phase(system, rhs.zero_states(self.net, n, engine.dtype), "free", 0.0, None, out)
        nudged = rule.nudged_phases(system, params, x, target, free, self.beta) if self.phases != ("free",) else {}
        for phase, how in nudged.items():
            if phase in self.phases:
                self._phase(how.system, free, phase, how.beta, how.target, out)
        return out

    def _phase(self, system: ClampedSystem, start: States, phase: str, beta: float, target, out) -> States:
        n_steps = self.phase_steps[phase]
        if phase not in self.phases:
            return system.relax(start, n_steps, beta=beta, target=target, tol=0.0, phase=phase).states
        grid = self.steps[self.steps <= n_steps]
        traj = {pop: np.empty((len(grid), *start[pop].shape), dtype=start[pop].dtype) for pop in self.populations}
        states, done = start, 0
        for k, step in enumerate(grid):
            if step > done:
                states = system.relax(states, int(step - done), beta=beta, target=target, tol=0.0,
                                      phase=phase).states
                done = int(step)
            for pop in self.populations:
                traj[pop][k] = states[pop]
        for pop in self.populations:
            out[pop][phase] = traj[pop]
        return states


def spike_trains(rule, probes: ProbeRecorder, params: Params, state) -> dict[str, np.ndarray]:
    """The probe samples' spike trains ``pop → (time_step, probe, unit)`` (int8) of a rule with
    spiking layers (sigprop with ``spiking = true``); empty for other rules or without probes."""
    pops = getattr(rule, "spiking_populations", ())
    if not pops or not len(probes.index) or not probes.populations:
        return {}
    trains = rule.jitted("spike_trains")(params, state, probes.x.astype(rule.cfg.dynamics.dtype))
    return {pop: np.asarray(trains[pop]).astype(np.int8) for pop in pops}


def run_layout(cfg: RunParams, net: Network, probes: ProbeRecorder, loop_projections: tuple[str, ...],
               params: Params, feedback_projections: tuple[str, ...] = (), rule=None) -> RunLayout:
    """The fixed part of this run's file (``rule``: its early exits and spiking layers, if any)."""
    spiking = tuple(getattr(rule, "spiking_populations", ()))
    return RunLayout(
        populations=dict(net.sizes),
        phases=cfg.phases,
        steps=probes.steps,
        dt=cfg.dynamics.dt,
        probe=probes.index,
        probe_split=cfg.record.probe_split,
        probe_label=probes.labels,
        probe_input=probes.x.astype(cfg.dynamics.dtype),
        recorded=probes.populations,
        weights={name: (net.projection(name).src, net.projection(name).dst) for name in params.weights},
        loop_projections=loop_projections,
        dtype=cfg.dynamics.dtype,
        grad_alignment=cfg.record.grad_alignment,
        feedback_projections=feedback_projections,
        exits=tuple(getattr(rule, "exits", ())),
        spiking=spiking,
        time_steps=rule.options.time_steps if spiking else 0,
    )

