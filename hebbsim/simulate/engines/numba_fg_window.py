"""The numba engine's fused ``forward_gradient`` window (an acceleration of
:func:`hebbsim.rules.forward_gradient.window`, which otherwise scans
:func:`hebbsim.dynamics.forward_gradient.window_step`): packs the window's arrays for
:func:`hebbsim.simulate.engines.numba_kernels.window_kernel` and unpacks its eligibility.
``tests/simulate/test_kernel_contract.py`` pins it to the reference for every build."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ...dynamics.forward_gradient import eligibility_projections
from .base import Relaxation, States, diverged
from .numba_kernels import window_kernel

if TYPE_CHECKING:
    from .numba_engine import NumbaClamped


def fused_window(system: "NumbaClamped", free: States, copies: int, extra: States, target, readouts: dict,
                 reward_mask: dict, learn_mask: dict, n_steps: int, phase: str = "perturbed"):
    """The ``forward_gradient`` window (:mod:`hebbsim.dynamics.forward_gradient`): from the
    free states (B rows, tiled ``copies`` times) with the held current ``extra`` and the
    masks (``copies·B`` rows), ``n_steps`` Euler steps that integrate the eligibility.
    Returns ``(Relaxation of the tiled states, eligibility keyed like Params.trainable)``."""
    e = system.engine
    dt = e.dtype
    rows = copies * system.batch
    pops = e._pops
    tile = lambda a: np.ascontiguousarray(np.tile(np.asarray(a, dtype=dt), (copies, 1)))  # noqa: E731
    s = tuple(tile(free[n]) for n in pops)
    static = tuple(tile(st) for st in system.static)
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
    elig_t = tuple(np.zeros(w.shape, dt) for w in system.weights_t)
    v = tuple(np.zeros((rows, n), dt) for n in sizes)
    bad_step, bad_pop = window_kernel(*e._build)(
        s, static, system.weights_t, e._proj_src, e._proj_dst, e._inv_leak,
        tuple(np.empty((rows, n), dt) for n in sizes), tuple(np.empty((rows, n), dt) for n in sizes),
        tuple(np.empty((rows, sizes[d]), dt) for d in e._proj_dst) or (np.empty((1, 1), dt),),
        tuple(np.empty((rows, n), dt) for n in sizes),
        tuple(readout_w), tuple(np.ascontiguousarray(w.T) for w in readout_w), tuple(readout_b),
        np.array([n in reward_mask for n in pops], dtype=np.int64), col(reward_mask), col(learn_mask),
        tile(target), np.empty((rows, n_cls), dt), tuple(np.empty((rows, n), dt) for n in sizes),
        np.empty(rows, dt), learned, elig_t, tuple(np.empty(w.shape, dt) for w in elig_t), v,
        e.dt, int(n_steps), groups, tuple(np.empty((rows, g), dt) for g in groups), e._out, e.gemm,
    )
    if bad_step >= 0:
        raise diverged(e, phase, int(bad_step) + 1, pops[bad_pop])
    out = {f"W_{p.name}": elig_t[k].T for k, p in enumerate(e._internal) if p.name in mine}
    folded = {n: v[k].reshape(copies, system.batch, -1).sum(axis=0) for k, n in enumerate(pops) if n in learn_mask}
    for p in e._inputs:
        if p.kind == "learned" and p.dst in learn_mask:
            out[f"W_{p.name}"] = folded[p.dst].T @ system.x
    out.update({f"b_{n}": folded[n].sum(axis=0) for n in folded})
    return Relaxation(dict(zip(pops, s)), int(n_steps), float("nan")), out
