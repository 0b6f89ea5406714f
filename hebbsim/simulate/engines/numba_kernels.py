r"""Compiled explicit-Euler kernel of the network dynamics (the CPU engine's hot loop).

This is the same right-hand side as :func:`hebbsim.dynamics.rhs.drift`, written for speed;
``tests/simulate/test_numba_engine.py`` pins the two together. Design choices:

- The whole phase (all Euler steps) runs inside one compiled call, so small batches pay
  no Python overhead per step.
- Everything that is constant within a phase — the bias and the currents from the clamped
  input, and any held external current — arrives pre-summed in ``static``; the input
  projection (the largest matrix) is therefore never recomputed inside the loop.
- Currents between dynamic populations are BLAS GEMMs on row-major ``(batch, n)`` rates and
  weights stored transposed, ``(n_src, n_dst)``: numpy's own ``cblas_?gemm``, passed in as
  ``gemm`` (:mod:`hebbsim.simulate.engines.numba_blas`; one BLAS library and one thread pool
  for the whole process), or numba's ``np.dot`` where ``gemm`` is ``None``.
- Populations are passed as homogeneous tuples of 2-D arrays, which numba indexes at run
  time without the cost of building typed lists.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import njit

from .numba_blas import dot_into

# reassociation lets LLVM vectorise the reductions; no 'nnan'/'ninf', so non-finite
# values are still detected
_FASTMATH = {"reassoc", "contract"}

# codes of hebbsim.dynamics.nonlinearities.RHO_CODES, hebbsim.dynamics.loss.COST_CODES and
# hebbsim.dynamics.noise.NOISE_CODES
HARD_SIGMOID, SIGMOID, SIGMOID4, TANH = 0, 1, 2, 3
STATE_MSE, RATE_MSE = 0, 1
NO_NOISE, WHITE, OU = 0, 1, 2


@njit(cache=True, inline="always")
def _rho(s, kind):
    if kind == HARD_SIGMOID:
        return min(max(s, 0.0), 1.0)
    if kind == SIGMOID:
        return 0.5 * (1.0 + math.tanh(0.5 * s))
    if kind == SIGMOID4:
        return 0.5 * (1.0 + math.tanh(2.0 * (s - 0.5)))
    return math.tanh(s)


@njit(cache=True, inline="always")
def _rho_prime(s, kind):
    if kind == HARD_SIGMOID:
        return 1.0 if (s >= 0.0 and s <= 1.0) else 0.0
    if kind == SIGMOID:
        r = 0.5 * (1.0 + math.tanh(0.5 * s))
        return r * (1.0 - r)
    if kind == SIGMOID4:
        r = 0.5 * (1.0 + math.tanh(2.0 * (s - 0.5)))
        return 4.0 * r * (1.0 - r)
    t = math.tanh(s)
    return 1.0 - t * t


@njit(cache=True, inline="always")
def _cost_gradient(s, d, cost_kind, rho_kind):
    """∂C/∂s_o of one output unit (hebbsim.dynamics.loss.cost_gradient)."""
    if cost_kind == STATE_MSE:
        return s - d
    return _rho_prime(s, rho_kind) * (_rho(s, rho_kind) - d)


@njit(cache=True, inline="always")
def _first_projection_into(n_pop, proj_dst):
    """Per population, the first projection into it (-1: none). That projection's GEMM writes
    the current directly; later ones go through ``scratch`` and are added."""
    first = np.full(n_pop, -1, dtype=np.int64)
    for p in range(proj_dst.shape[0]):
        if first[proj_dst[p]] < 0:
            first[proj_dst[p]] = p
    return first


@njit(cache=True, inline="always")
def _init_rates(states, rates, currents, first, rho_kind):
    """Rates of the initial states; zero current for populations no projection reaches."""
    for j in range(len(states)):
        s = states[j]
        r = rates[j]
        for b in range(s.shape[0]):
            for i in range(s.shape[1]):
                r[b, i] = _rho(s[b, i], rho_kind)
        if first[j] < 0:
            currents[j][:, :] = 0.0


@njit(cache=True, inline="always")
def _synaptic_currents(rates, weights_t, proj_src, proj_dst, first, currents, scratch, gemm):
    """``currents[d] = Σ_p ρ(s_src(p)) W_pᵀ`` over the projections into each population: one GEMM
    per projection."""
    n_proj = proj_src.shape[0]
    for p in range(n_proj):
        d = proj_dst[p]
        if first[d] == p:
            dot_into(gemm, rates[proj_src[p]], weights_t[p], currents[d])
        else:
            dot_into(gemm, rates[proj_src[p]], weights_t[p], scratch[p])
    for p in range(n_proj):
        d = proj_dst[p]
        if first[d] != p:
            c = currents[d]
            sp = scratch[p]
            for b in range(c.shape[0]):
                for i in range(c.shape[1]):
                    c[b, i] += sp[b, i]


@functools.lru_cache(maxsize=None)
def euler_kernel(rho_kind: int, gated: bool, clip: bool, cost_kind: int = STATE_MSE, noise_kind: int = NO_NOISE):
    """The Euler kernel specialised to one nonlinearity, neuron model, clipping choice, cost and
    noise model.

    Specialising on these (they are constants of a network) removes every branch from the
    element loop, so LLVM vectorises it. Closure constants are part of numba's cache key,
    so each specialisation is compiled once and cached on disk. With ``noise_kind = NO_NOISE``
    the noise branches are dead code: the noise-free kernel is the same machine code as
    before noise existed (its noise arguments are never read).
    """

    @njit(cache=True, fastmath=_FASTMATH)
    def euler_relax(states, static, weights_t, proj_src, proj_dst, inv_leak, rates, currents, scratch,
                    out_idx, target, beta, dt, n_steps, tol, noisy, z, xi, kick, decay, gemm):
        """Integrate ``n_steps`` Euler steps in place on ``states``.

        Stops early once the residual ``max |Δs|/dt < tol`` (``tol <= 0`` never stops early). Returns
        ``(steps_done, residual, bad_step, bad_population)``; ``bad_step >= 0`` means a
        non-finite ds/dt appeared at that step in that population and integration stopped.

        Per step: one GEMM per internal projection (the first projection into a population
        writes its current directly, later ones go through ``scratch``), then one fused pass
        per population that computes ds/dt, updates the state and the rate that the next
        step's GEMMs read. The residual (a max-reduction) is only computed when it is
        needed: every step with a tolerance, else at the last step.

        Noise (:mod:`hebbsim.dynamics.noise`; populations with ``noisy[j]``, increments
        ``z[j][step]``): ``WHITE`` adds ``kick·z`` (``kick = σ√dt``: Euler–Maruyama) to the
        update; ``OU`` adds ``dt·ξ`` and advances the current ``ξ ← decay·ξ + kick·z`` in place
        on ``xi[j]`` (``decay = e^{-dt/τ}``, ``kick = σ√(1 - decay²)``). Both before the clip.
        """
        n_pop = len(states)
        first = _first_projection_into(n_pop, proj_dst)
        _init_rates(states, rates, currents, first, rho_kind)
        residual = np.inf
        inv_dt = 1.0 / dt
        for step in range(n_steps):
            _synaptic_currents(rates, weights_t, proj_src, proj_dst, first, currents, scratch, gemm)
            track = tol > 0.0 or step == n_steps - 1
            residual = 0.0
            for j in range(n_pop):
                s = states[j]
                r = rates[j]
                c = currents[j]
                st = static[j]
                leak = inv_leak[j]
                nudged = j == out_idx and beta != 0.0
                if noise_kind != NO_NOISE:
                    noisy_j = noisy[j] != 0
                    zj = z[j]
                    xij = xi[j]
                else:  # dead code: the noise-free kernel reads no noise argument
                    noisy_j = False
                    zj = z[0]
                    xij = xi[0]
                poison = 0.0  # becomes nan if any ds/dt is inf or nan
                for b in range(s.shape[0]):
                    row_max = 0.0
                    for i in range(s.shape[1]):
                        sv = s[b, i]
                        ds = c[b, i] + st[b, i]
                        if gated:
                            ds *= _rho_prime(sv, rho_kind)
                        ds = ds - sv * leak
                        if nudged:
                            ds -= beta * _cost_gradient(sv, target[b, i], cost_kind, rho_kind)
                        poison += ds * 0.0
                        new = sv + dt * ds
                        if noise_kind == WHITE:
                            if noisy_j:
                                new += kick * zj[step, b, i]
                        elif noise_kind == OU:
                            if noisy_j:
                                xv = xij[b, i]
                                new += dt * xv
                                xij[b, i] = decay * xv + kick * zj[step, b, i]
                        if clip:
                            new = min(max(new, 0.0), 1.0)
                        if track:
                            # the velocity actually taken: a clipped unit pushed against its
                            # bound is at rest, whatever its unclipped drift says
                            row_max = max(row_max, abs(new - sv))
                        sv = new
                        s[b, i] = sv
                        r[b, i] = _rho(sv, rho_kind)
                    residual = max(residual, row_max * inv_dt)
                if poison != 0.0 or poison != poison:
                    return step, np.inf, step, j
            if tol > 0.0 and residual < tol:
                return step + 1, residual, -1, -1
        return n_steps, residual, -1, -1

    return euler_relax


@njit(cache=True, fastmath=_FASTMATH, inline="always")
def _grouped_reward(r, s, ds, a, bias, target, mask, n_groups, rho_kind, back, group_rdot, rdot):
    """A grouped readout's reward rates: per row ``b`` and group ``g`` (units ``g·m … g·m+m−1``),
    ``y = A_g ρ_g + a_g − d``, ``back_g = y A_g`` and ``Ṙ_g = m_b Σ −ρ'(s)·back·ds``, into
    ``group_rdot[b, g]``; their sum joins ``rdot[b]``."""
    n_cls = a.shape[0]
    size = r.shape[1] // n_groups
    y = np.empty(n_cls, r.dtype)
    for b in range(r.shape[0]):
        for g in range(n_groups):
            lo = g * size
            for k in range(n_cls):
                acc = bias[g, k] - target[b, k]
                for i in range(lo, lo + size):
                    acc += a[k, i] * r[b, i]
                y[k] = acc
            rg = 0.0
            for i in range(lo, lo + size):
                acc = 0.0
                for k in range(n_cls):
                    acc += y[k] * a[k, i]
                back[b, i] = acc
                rg -= _rho_prime(s[b, i], rho_kind) * acc * ds[b, i]
            group_rdot[b, g] = mask[b] * rg
            rdot[b] += mask[b] * rg


@functools.lru_cache(maxsize=None)
def window_kernel(rho_kind: int, gated: bool, clip: bool, cost_kind: int = STATE_MSE):
    """The perturbed window of the ``forward_gradient`` rule, specialised like :func:`euler_kernel`:
    Euler steps of the same right-hand side (the held perturbation is part of ``static``) that
    also integrate the eligibility of :mod:`hebbsim.dynamics.forward_gradient`, step by step.
    With ``clip`` the velocity that enters the eligibility is the one the projected (clipped)
    Euler step actually takes, as in :func:`hebbsim.dynamics.forward_gradient.window_step`."""

    @njit(cache=True, fastmath=_FASTMATH)
    def fg_window(states, static, weights_t, proj_src, proj_dst, inv_leak, rates, currents, scratch, drift,
                  readout_w, readout_wt, readout_b, has_reward, reward_mask, learn_mask, target, y, back, rdot,
                  learned, elig_t, elig_scratch, v, dt, n_steps, groups, group_rdot, out_idx, gemm):
        """Integrate ``n_steps`` steps in place on ``states`` and the accumulators ``elig_t`` (one
        ``(n_src, n_dst)`` array per internal projection, used where ``learned[p]``) and ``v``
        (``(rows, n)`` per population). Returns ``(bad_step, bad_population)`` (``-1, -1`` when
        every ds/dt stayed finite).

        Per step: the projections' GEMMs (as in the Euler kernel); ds/dt of every population
        into ``drift`` (states untouched, so rates are still those at the step's start); for
        the output population ``back = ∂C/∂s_o`` and ``Ṙ += m·Σ −back·ds``; for each other
        reward population the readout GEMM ``y = ρ(s)Aᵀ + a``, ``back = (y − d)A`` and
        ``Ṙ += m·Σ −ρ'(s)·back·ds``; ``U = ds·Ṙ·m_learn·dt`` (into ``back``), ``v += U`` and
        ``e_p += ρ(s_src)ᵀU_dst`` (a GEMM per learned projection); then the Euler update.
        """
        n_pop = len(states)
        n_proj = proj_src.shape[0]
        rows = states[0].shape[0]
        first = _first_projection_into(n_pop, proj_dst)
        _init_rates(states, rates, currents, first, rho_kind)
        for step in range(n_steps):
            _synaptic_currents(rates, weights_t, proj_src, proj_dst, first, currents, scratch, gemm)
            for j in range(n_pop):
                s = states[j]
                c = currents[j]
                st = static[j]
                ds_j = drift[j]
                leak = inv_leak[j]
                poison = 0.0
                for b in range(s.shape[0]):
                    for i in range(s.shape[1]):
                        sv = s[b, i]
                        ds = c[b, i] + st[b, i]
                        if gated:
                            ds *= _rho_prime(sv, rho_kind)
                        ds = ds - sv * leak
                        poison += ds * 0.0
                        if clip:  # the velocity actually taken: zero for a unit held at a bound
                            ds = (min(max(sv + dt * ds, 0.0), 1.0) - sv) / dt
                        ds_j[b, i] = ds
                if poison != 0.0 or poison != poison:
                    return step, j
            for b in range(rows):
                rdot[b] = 0.0
            for j in range(n_pop):
                if has_reward[j] == 0:
                    continue
                if j == out_idx:
                    s = states[j]
                    ds_j = drift[j]
                    bk = back[j]
                    for b in range(rows):
                        acc = 0.0
                        for i in range(s.shape[1]):
                            g = _cost_gradient(s[b, i], target[b, i], cost_kind, rho_kind)
                            bk[b, i] = g
                            acc -= g * ds_j[b, i]
                        rdot[b] += reward_mask[b, j] * acc
                    continue
                if groups[j] > 1:
                    _grouped_reward(rates[j], states[j], drift[j], readout_w[j], readout_b[j], target,
                                    reward_mask[:, j], groups[j], rho_kind, back[j], group_rdot[j], rdot)
                    continue
                dot_into(gemm, rates[j], readout_wt[j], y)
                rb = readout_b[j]
                for b in range(rows):
                    for k in range(y.shape[1]):
                        y[b, k] = y[b, k] + rb[0, k] - target[b, k]
                bk = back[j]
                dot_into(gemm, y, readout_w[j], bk)
                s = states[j]
                ds_j = drift[j]
                for b in range(rows):
                    acc = 0.0
                    for i in range(s.shape[1]):
                        acc -= _rho_prime(s[b, i], rho_kind) * bk[b, i] * ds_j[b, i]
                    rdot[b] += reward_mask[b, j] * acc
            for j in range(n_pop):
                bk = back[j]
                ds_j = drift[j]
                vj = v[j]
                if groups[j] > 1:
                    gr = group_rdot[j]
                    size = bk.shape[1] // groups[j]
                    for b in range(rows):
                        for i in range(bk.shape[1]):
                            u = ds_j[b, i] * gr[b, i // size] * learn_mask[b, j] * dt
                            bk[b, i] = u
                            vj[b, i] += u
                    continue
                for b in range(rows):
                    w = rdot[b] * learn_mask[b, j] * dt
                    for i in range(bk.shape[1]):
                        u = ds_j[b, i] * w
                        bk[b, i] = u
                        vj[b, i] += u
            for p in range(n_proj):
                if learned[p]:
                    dot_into(gemm, rates[proj_src[p]].T, back[proj_dst[p]], elig_scratch[p])
                    e = elig_t[p]
                    es = elig_scratch[p]
                    for a in range(e.shape[0]):
                        for i in range(e.shape[1]):
                            e[a, i] += es[a, i]
            for j in range(n_pop):
                s = states[j]
                r = rates[j]
                ds_j = drift[j]
                for b in range(s.shape[0]):
                    for i in range(s.shape[1]):
                        new = s[b, i] + dt * ds_j[b, i]
                        if clip:
                            new = min(max(new, 0.0), 1.0)
                        s[b, i] = new
                        r[b, i] = _rho(new, rho_kind)
        return -1, -1

    return fg_window
