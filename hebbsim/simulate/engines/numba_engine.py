"""The CPU engine: batched explicit Euler compiled with numba (docs/engines.md)."""

from __future__ import annotations

import numpy as np

from ...dynamics.network import INPUT, OUTPUT, Network
from ...dynamics.loss import COST_CODES
from ...dynamics.nonlinearities import RHO_CODES
from ...dynamics.params import Params
from ...errors import DivergenceError
from .base import Relaxation, States, divergence_advice
from ...dynamics.forward_gradient import eligibility_projections
from .numba_kernels import euler_kernel, window_kernel


class NumbaEngine:
    """Explicit Euler at fixed ``dt`` on the CPU, float32 by default.

    Kernels are compiled on first use and cached on disk (``numba`` ``cache=True``), so a
    second run does not recompile.
    """

    name = "numba"

    def __init__(self, net: Network, dt: float, dtype=np.float32):
        self.net = net
        self.dt = float(dt)
        self.dtype = np.dtype(dtype)
        self._pops = [p.name for p in net.dynamic_populations]
        self._index = {name: k for k, name in enumerate(self._pops)}
        self._internal = [p for p in net.projections if p.src != INPUT]
        self._inputs = [p for p in net.projections if p.src == INPUT]
        self._proj_src = np.array([self._index[p.src] for p in self._internal], dtype=np.int64)
        self._proj_dst = np.array([self._index[p.dst] for p in self._internal], dtype=np.int64)
        self._inv_leak = np.array([1.0 / p.leak for p in net.dynamic_populations], dtype=np.float64)
        self._out = self._index[OUTPUT]
        build = (RHO_CODES[net.rho], net.neuron == "gated", bool(net.clip_states), COST_CODES[net.cost])
        self._kernel = euler_kernel(*build)
        self._window_kernel = window_kernel(*build)

    def clamp(self, params: Params, x: np.ndarray, extra_current: States | None = None) -> "NumbaClamped":
        """Fix the input ``x`` (batch, n_x) and the parameters for the phases of one batch.

        ``extra_current`` adds a current held constant over the phases (e.g. a perturbation).
        """
        return NumbaClamped(self, params, np.ascontiguousarray(x, dtype=self.dtype), extra_current)


class NumbaClamped:
    def __init__(self, engine: NumbaEngine, params: Params, x: np.ndarray, extra_current: States | None):
        self.engine = engine
        dt = engine.dtype
        batch = x.shape[0]
        static = {name: np.broadcast_to(params.biases[name].astype(dt), (batch, size)).copy()
                  for name, size in ((p.name, p.size) for p in engine.net.dynamic_populations)}
        for p in engine._inputs:
            static[p.dst] += x @ params.weight(p).T.astype(dt, copy=False)
        if extra_current:
            for name, c in extra_current.items():
                static[name] += c
        self.batch = batch
        self.x = x
        self.static = tuple(static[n] for n in engine._pops)
        # transposed, contiguous (n_src, n_dst): one copy per batch, reused by every step
        self.weights_t = tuple(np.ascontiguousarray(params.weight(p).T, dtype=dt) for p in engine._internal)
        if not self.weights_t:  # numba needs a typed (non-empty) tuple
            self.weights_t = (np.zeros((1, 1), dtype=dt),)
        sizes = [s.shape[1] for s in self.static]
        self._rates = tuple(np.empty((batch, n), dtype=dt) for n in sizes)
        self._currents = tuple(np.empty((batch, n), dtype=dt) for n in sizes)
        self._scratch = tuple(np.empty((batch, sizes[d]), dtype=dt) for d in engine._proj_dst) or (
            np.empty((1, 1), dtype=dt),
        )

    def relax(self, states: States, n_steps: int, *, beta: float = 0.0, target=None, tol: float = 0.0,
              phase: str = "free") -> Relaxation:
        e = self.engine
        s = tuple(np.array(states[n], dtype=e.dtype, order="C", copy=True) for n in e._pops)
        tgt = (np.ascontiguousarray(target, dtype=e.dtype) if target is not None
               else np.zeros((self.batch, s[e._out].shape[1]), dtype=e.dtype))
        steps, res, bad_step, bad_pop = e._kernel(
            s, self.static, self.weights_t, e._proj_src, e._proj_dst, e._inv_leak,
            self._rates, self._currents, self._scratch, e._out, tgt, float(beta), e.dt,
            int(n_steps), float(tol),
        )
        if bad_step >= 0:  # the kernel counts from 0; the error names the step as the k-th
            raise DivergenceError(phase, int(bad_step) + 1, e._pops[bad_pop],
                                  advice=divergence_advice(e.net, e.dt, phase))
        return Relaxation(dict(zip(e._pops, s)), int(steps), float(res))

    def perturbed_window(self, free: States, copies: int, extra: States, target, readouts: dict,
                         reward_mask: dict, learn_mask: dict, n_steps: int, phase: str = "perturbed"):
        """The ``forward_gradient`` window (:mod:`hebbsim.dynamics.forward_gradient`): from the
        free states (B rows, tiled ``copies`` times) with the held current ``extra`` and the
        masks (``copies·B`` rows), ``n_steps`` Euler steps that integrate the eligibility.
        Returns ``(Relaxation of the tiled states, eligibility keyed like Params.trainable)``."""
        e = self.engine
        dt = e.dtype
        rows = copies * self.batch
        pops = e._pops
        tile = lambda a: np.ascontiguousarray(np.tile(np.asarray(a, dtype=dt), (copies, 1)))  # noqa: E731
        s = tuple(tile(free[n]) for n in pops)
        static = tuple(tile(st) for st in self.static)
        for name, c in extra.items():
            static[e._index[name]][...] += np.asarray(c, dtype=dt)
        sizes = [a.shape[1] for a in s]
        n_cls = np.asarray(target).shape[1]
        col = lambda m: np.ascontiguousarray(  # noqa: E731
            np.stack([np.asarray(m[n], dt) if n in m else np.zeros(rows, dt) for n in pops], axis=1))
        readout_w, readout_b = [], []
        for n, size in zip(pops, sizes):
            ro = readouts.get(n) if n in reward_mask else None
            if n in reward_mask and ro is None:
                readout_w.append(np.eye(n_cls, size, dtype=dt))
                readout_b.append(np.zeros((1, n_cls), dt))
            elif ro is None:
                readout_w.append(np.zeros((n_cls, size), dt))
                readout_b.append(np.zeros((1, n_cls), dt))
            else:
                readout_w.append(np.ascontiguousarray(ro[0], dtype=dt))
                readout_b.append(np.asarray(ro[1], dt).reshape(-1, n_cls).copy())  # (groups, n_cls)
        groups = np.array([b.shape[0] for b in readout_b], dtype=np.int64)
        internal, _ = eligibility_projections(e.net, tuple(learn_mask))
        mine = {p.name for p in internal}
        learned = np.array([p.name in mine for p in e._internal], dtype=np.int64)
        elig_t = tuple(np.zeros(w.shape, dt) for w in self.weights_t)
        v = tuple(np.zeros((rows, n), dt) for n in sizes)
        bad_step, bad_pop = e._window_kernel(
            s, static, self.weights_t, e._proj_src, e._proj_dst, e._inv_leak,
            tuple(np.empty((rows, n), dt) for n in sizes), tuple(np.empty((rows, n), dt) for n in sizes),
            tuple(np.empty((rows, sizes[d]), dt) for d in e._proj_dst) or (np.empty((1, 1), dt),),
            tuple(np.empty((rows, n), dt) for n in sizes),
            tuple(readout_w), tuple(np.ascontiguousarray(w.T) for w in readout_w), tuple(readout_b),
            np.array([n in reward_mask for n in pops], dtype=np.int64), col(reward_mask), col(learn_mask),
            tile(target), np.empty((rows, n_cls), dt), tuple(np.empty((rows, n), dt) for n in sizes),
            np.empty(rows, dt), learned, elig_t, tuple(np.empty(w.shape, dt) for w in elig_t), v,
            e.dt, int(n_steps), groups, tuple(np.empty((rows, g), dt) for g in groups), e._out,
        )
        if bad_step >= 0:
            raise DivergenceError(phase, int(bad_step) + 1, pops[bad_pop], advice=divergence_advice(e.net, e.dt, phase))
        out = {f"W_{p.name}": elig_t[k].T for k, p in enumerate(e._internal) if p.name in mine}
        folded = {n: v[k].reshape(copies, self.batch, -1).sum(axis=0) for k, n in enumerate(pops) if n in learn_mask}
        for p in e._inputs:
            if p.kind == "learned" and p.dst in learn_mask:
                out[f"W_{p.name}"] = folded[p.dst].T @ self.x
        out.update({f"b_{n}": folded[n].sum(axis=0) for n in folded})
        return Relaxation(dict(zip(pops, s)), int(n_steps), float("nan")), out
