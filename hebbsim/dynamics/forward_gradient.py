r"""Rate-based forward-gradient learning in continuous time (docs/forward_gradient.md; seed 004 §3.5).

After the free phase (state :math:`s^*`), every perturbed neuron :math:`j` receives a current
:math:`\varepsilon u_j`, :math:`u \sim N(0, 1)` per neuron and sample, held for a window of
``n`` Euler steps (duration ``perturb_time = n·dt``). The reward is
:math:`R(t) = -\mathcal L(s(t))`, and every synapse integrates a three-factor eligibility

.. math::  e_{ji} = \int_{\text{window}} \rho(s_i)\;\dot s_j\;\dot R\;dt,
           \qquad \dot R = \nabla_s R\cdot\dot s, \qquad
           \Delta W_{ji} = \eta\, e_{ji}/\varepsilon^2 ,

with :math:`\dot s` the velocity of the model's own dynamics (:func:`hebbsim.dynamics.rhs.drift`,
the perturbation included) and :math:`\nabla_s R` evaluated at the current state. With
``clip_states`` the velocity is the one the projected Euler step actually takes,
:math:`(\mathrm{clip}(s + \mathrm{dt}\,f) - s)/\mathrm{dt}`: zero for a unit held at a bound. The raw
drift of such a unit is :math:`O(1)` and would make :math:`\dot s_j\dot R` :math:`O(1)` instead of
:math:`O(\varepsilon^2)` — an update :math:`10^4` times the gradient even without perturbation. Biases use
:math:`\rho(s_i) \equiv 1`. As everywhere in :mod:`hebbsim.dynamics`, the rule returns a
*descent direction* :math:`g = -e/(\varepsilon^2 N)` averaged over the ``N`` (sample,
perturbation) pairs; the optimizer does :math:`\theta \leftarrow \theta - \eta g`.
``docs/forward_gradient.md`` derives why :math:`\mathbb E[g]` is, per layer, a positive
multiple of the gradient of the loss with respect to the layer's input currents (FG-A).

Losses (rewards). A *reward population* :math:`l` reads the classes through a linear readout
:math:`y_l = A_l\rho(s_l) + a_l` and has the local loss
:math:`\mathcal L_l = \tfrac12\lVert y_l - d\rVert^2`, so

.. math::  \nabla_{s_l} R_l = -\rho'(s_l)\odot A_l^\top (y_l - d).

The output population has no readout (``None``): its loss is the network's output cost
:math:`C(s_o, d)` (:mod:`hebbsim.dynamics.loss`), so :math:`\nabla_{s_o}R = -\partial C/\partial s_o`.
Modes:

- ``global``: every perturbed population at once, one reward :math:`R = -C`;
- ``local_greedy`` (seed 004 §4): one *block* (population) perturbed at a time, each with its
  own reward :math:`R_l = -\mathcal L_l`; the readout :math:`(A_l, a_l)` of a hidden block learns
  by its own delta rule at the free state, :math:`g_{A_l} = (y_l - d)\,\rho(s_l^*)^\top`,
  :math:`g_{a_l} = y_l - d` (:func:`readout_gradients`).

Batching. An engine integrates the window on a *tiled* batch: copy ``c`` of the ``B``
samples (rows ``c·B … c·B+B−1``) is one (block, perturbation) pair. Per row, a
``reward_mask[pop]`` weight selects the reward and a ``learn_mask[pop]`` weight says whether
the row's eligibility counts for the population's incoming synapses (the perturbed ones:
a population moved only by another population's perturbation does not learn from it).
Padded samples get learn weight 0.

The per-step increment is, with :math:`U_j = \dot s_j \odot \dot R \odot m_j\,dt` (batch × n_j),
:math:`e_p \mathrel{+}= U_\mathrm{dst}^\top\rho(s_\mathrm{src})` for every learned projection between
dynamic populations (a GEMM per projection and step) and :math:`V_j \mathrel{+}= U_j`; the input
rate is constant over the window, so the input projections' eligibility is
:math:`V_\mathrm{dst}^\top x` once at the end and the biases' is :math:`\sum_\text{rows} V_j`
(:func:`finalize`). Everything here uses array methods only: it runs on numpy (the
reference, :func:`integrate_window`) and traced JAX arrays (the jax engine scans
:func:`window_step`); the numba kernel is a fused copy pinned to it by the tests.
"""

from __future__ import annotations

import numpy as np

from . import rhs
from .loss import cost_gradient
from .network import INPUT, OUTPUT, Network
from .nonlinearities import rho, rho_prime, xp_of
from .params import Params

MODES = ("global", "local_greedy")

Readout = tuple | None  # (A (n_classes, n_pop), a (n_classes,)), or None: the identity (output)
Eligibility = dict  # {"V_<pop>": (rows, n), "W_<proj>": (n_dst, n_src)} during the window


# -- losses and rewards -------------------------------------------------------------------------
def n_groups(ro: Readout) -> int:
    """How many groups a readout serves: its bias is ``(n_classes,)`` for one, ``(G, n_classes)``
    for ``G`` groups of consecutive units, each read by its own columns of ``A``."""
    return 1 if ro is None or ro[1].ndim == 1 else ro[1].shape[0]


def _grouped(rate, ro: tuple):
    """``(ρ (rows, G, m), A (n_classes, G, m))`` for a readout of ``G`` groups of ``m`` units."""
    g = n_groups(ro)
    return rate.reshape(rate.shape[0], g, -1), ro[0].reshape(ro[0].shape[0], g, -1)


def readout(rate, ro: Readout):
    """:math:`y = A\\rho + a` (the identity for ``None``); with ``G > 1`` groups,
    :math:`y_g = A_g\\rho_g + a_g` of shape ``(rows, G, n_classes)``."""
    if ro is None:
        return rate
    if n_groups(ro) == 1:
        return rate @ ro[0].T + ro[1].reshape(-1)
    r, a = _grouped(rate, ro)
    xp = xp_of(rate)
    return xp.einsum("bgi,kgi->bgk", r, a) + ro[1]


def _error(rate, ro: Readout, target):
    y = readout(rate, ro)
    return y - (target if y.ndim == 2 else target[:, None, :])


def local_loss(rate, ro: Readout, target):
    """Per-sample :math:`\\tfrac12\\lVert y - d\\rVert^2` (summed over the groups)."""
    err = _error(rate, ro, target)
    return 0.5 * (err**2).reshape(err.shape[0], -1).sum(axis=-1)


def reward_gradient(s, net: Network, ro: Readout, target):
    """:math:`\\nabla_s R = -\\rho'(s)\\odot A^\\top(A\\rho(s) + a - d)` (per row) for a readout,
    :math:`-\\partial C/\\partial s_o` for the output (``ro`` ``None``); with groups, each unit's
    entry is the gradient of its own group's reward."""
    if ro is None:
        return -cost_gradient(net, s, target)
    err = _error(rho(s, net.rho), ro, target)
    if n_groups(ro) == 1:
        back = err @ ro[0]
    else:
        _, a = _grouped(s, ro)
        back = xp_of(s).einsum("bgk,kgi->bgi", err, a).reshape(s.shape)
    return -rho_prime(s, net.rho) * back


def _reward_terms(net: Network, states: rhs.States, ds: rhs.States, readouts: dict, target, reward_mask: dict):
    """Per reward population ``l``, the per-unit terms :math:`m_l\\,\\nabla_{s_l}R_l\\odot\\dot s_l` (rows × n)."""
    return {pop: m[:, None] * reward_gradient(states[pop], net, readouts.get(pop), target) * ds[pop]
            for pop, m in reward_mask.items()}


def _per_group(terms, groups: int):
    """Each unit's group sum of ``terms`` (rows × n), ``groups`` groups of consecutive units."""
    rows, n = terms.shape
    return xp_of(terms).repeat(terms.reshape(rows, groups, -1).sum(axis=-1), n // groups, axis=1)


def reward_rate(net: Network, states: rhs.States, ds: rhs.States, readouts: dict, target, reward_mask: dict):
    """:math:`\\dot R` per row: :math:`\\sum_l m_l\\,\\nabla_{s_l}R_l\\cdot\\dot s_l` over the reward
    populations ``l`` of ``reward_mask``."""
    terms = _reward_terms(net, states, ds, readouts, target, reward_mask)
    return sum(t.sum(axis=-1) for t in terms.values())


def group_reward_rate(net: Network, states: rhs.States, ds: rhs.States, readouts: dict, target, reward_mask: dict,
                      pop: str):
    """Per unit of ``pop``, the reward rate of the group it belongs to,
    :math:`m\\,\\dot R_{g(j)} = m\\sum_{i\\in g(j)}\\nabla_{s_i}R_g\\,\\dot s_i` (``(rows, n)``), for a
    population read by a grouped readout: its groups are perturbed together and each learns
    only from its own loss (local losses, seed 004 §4), so the other groups' perturbations
    are not noise in its update."""
    terms = _reward_terms(net, states, ds, readouts, target, {pop: reward_mask[pop]})
    return _per_group(terms[pop], n_groups(readouts[pop]))


# -- the eligibility ------------------------------------------------------------------------------
def eligibility_projections(net: Network, learn: tuple[str, ...]):
    """The learned projections whose eligibility the window integrates: ``(internal, input)``,
    those from a dynamic population (a GEMM per step) and those from the clamped input."""
    mine = [p for p in net.learned if p.dst in learn]
    return tuple(p for p in mine if p.src != INPUT), tuple(p for p in mine if p.src == INPUT)


def init_eligibility(net: Network, learn: tuple[str, ...], rows: int, like) -> Eligibility:
    xp = xp_of(like)
    internal, _ = eligibility_projections(net, learn)
    sizes = net.sizes
    e = {f"V_{pop}": xp.zeros((rows, sizes[pop]), dtype=like.dtype) for pop in learn}
    e.update({f"W_{p.name}": xp.zeros((sizes[p.dst], sizes[p.src]), dtype=like.dtype) for p in internal})
    return e


def velocity(net: Network, states: rhs.States, ds: rhs.States, dt: float) -> rhs.States:
    """The velocity an Euler step of the drift ``ds`` actually takes: ``ds`` itself, or with
    ``clip_states`` :math:`(\\mathrm{clip}(s + \\mathrm{dt}\\,ds) - s)/\\mathrm{dt}` (a unit the clip
    holds at a bound is at rest, whatever its drift)."""
    if not net.clip_states:
        return ds
    moved = rhs.project(net, {k: states[k] + dt * ds[k] for k in states})
    return {k: (moved[k] - states[k]) / dt for k in states}


def window_step(net: Network, params: Params, states: rhs.States, x, extra: dict, target, readouts: dict,
                reward_mask: dict, learn_mask: dict, dt: float, elig: Eligibility):
    """One Euler step of the perturbed window and its eligibility increment (left Riemann sum:
    rates, velocity and dR/dt at the step's start). Returns ``(states, elig)``."""
    ds = velocity(net, states, rhs.drift(net, params, states, x, extra=extra), dt)
    terms = _reward_terms(net, states, ds, readouts, target, reward_mask)
    rdot = sum(t.sum(axis=-1) for t in terms.values())
    rates = rhs.rates(net, states, x)
    u = {}
    for pop, m in learn_mask.items():
        groups = n_groups(readouts.get(pop))
        own = _per_group(terms[pop], groups) if groups > 1 else rdot[:, None]  # a group learns from its own loss
        u[pop] = ds[pop] * own * (m * dt)[:, None]
    out = {f"V_{pop}": elig[f"V_{pop}"] + u[pop] for pop in learn_mask}
    internal, _ = eligibility_projections(net, tuple(learn_mask))
    for p in internal:
        out[f"W_{p.name}"] = elig[f"W_{p.name}"] + u[p.dst].T @ rates[p.src]
    new = rhs.project(net, {k: states[k] + dt * ds[k] for k in states})
    return new, out


def finalize(net: Network, elig: Eligibility, x, copies: int) -> dict:
    """Eligibilities keyed like ``Params.trainable``, summed over all rows: the internal
    projections' as integrated, the input projections' :math:`V_\\mathrm{dst}^\\top x` (``x`` the
    *untiled* input, ``copies`` tiles of it) and the biases' :math:`\\sum V`."""
    learn = tuple(k[2:] for k in elig if k.startswith("V_"))
    internal, inputs = eligibility_projections(net, learn)
    out = {f"W_{p.name}": elig[f"W_{p.name}"] for p in internal}
    folded = {pop: elig[f"V_{pop}"].reshape((copies, x.shape[0], -1)).sum(axis=0) for pop in learn}
    for p in inputs:
        out[f"W_{p.name}"] = folded[p.dst].T @ x
    out.update({f"b_{pop}": folded[pop].sum(axis=0) for pop in learn})
    return out


def integrate_window(net: Network, params: Params, states: rhs.States, x, copies: int, extra: dict, target,
                     readouts: dict, reward_mask: dict, learn_mask: dict, dt: float, n_steps: int):
    """The reference window (numpy, a Python loop over :func:`window_step`): ``states`` and
    ``x``/``target`` untiled (B rows), ``extra`` and the masks tiled (``copies·B`` rows).
    Returns ``(final tiled states, finalized eligibility)``."""
    tile = lambda a: np.tile(a, (copies, 1))  # noqa: E731
    s = {k: tile(v) for k, v in states.items()}
    xt, dt_target = tile(x), tile(target)
    elig = init_eligibility(net, tuple(learn_mask), len(xt), xt)
    for _ in range(n_steps):
        s, elig = window_step(net, params, s, xt, extra, dt_target, readouts, reward_mask, learn_mask, dt, elig)
    return s, finalize(net, elig, x, copies)


def fg_gradients(elig: dict, epsilon: float, n) -> dict:
    """The descent direction :math:`g = -e/(\\varepsilon^2 N)`, ``N`` the number of (real sample,
    perturbation) pairs."""
    return {k: -v / (epsilon**2 * n) for k, v in elig.items()}


def readout_gradients(pop: str, rate, ro: tuple, target, mask=None) -> dict:
    """Delta rule of a block's readout at the free state, averaged over the (real) samples:
    ``{"readout_W_<pop>": (y - d)ᵀρ, "readout_b_<pop>": Σ(y - d)} / n`` (per group for a
    grouped readout: each group's columns of ``A`` and row of ``a`` from its own error)."""
    err = _error(rate, ro, target)
    n = err.shape[0]
    if mask is not None:
        err, n = err * (mask[:, None] if err.ndim == 2 else mask[:, None, None]), mask.sum()
    if err.ndim == 2:
        return {f"readout_W_{pop}": err.T @ rate / n,
                f"readout_b_{pop}": err.sum(axis=0).reshape(ro[1].shape) / n}
    r, _ = _grouped(rate, ro)
    g_a = xp_of(rate).einsum("bgk,bgi->kgi", err, r).reshape(ro[0].shape)
    return {f"readout_W_{pop}": g_a / n, f"readout_b_{pop}": err.sum(axis=0) / n}


def time_constant_factor(hops: int, n_steps: int, dt: float, leak: float = 1.0) -> float:
    r"""The positive factor :math:`c_k` relating the rule's expected update of a layer ``hops``
    = :math:`k` projections upstream of the output to the exact gradient, in a feed-forward
    network of ``additive`` neurons with one leak :math:`r` (``docs/forward_gradient.md``):
    with :math:`a = 1 - \mathrm{dt}/r`,

    .. math::  c_k = \frac{\mathrm{dt}^{k+1}}{r^{k+1}}\sum_{n=0}^{N-1}\binom{n}{k}a^{2n-k}
               \;\longrightarrow\; 2^{-(k+1)} \quad (\mathrm{dt}\to0,\ N\mathrm{dt}\to\infty).

    This is the share of the layer's own perturbation; downstream layers add cross terms from
    the upstream perturbations (see the docs)."""
    from math import comb

    a = 1.0 - dt / leak
    return dt ** (hops + 1) / leak ** (hops + 1) * sum(comb(n, hops) * a ** (2 * n - hops)
                                                       for n in range(hops, n_steps))


# -- the perturbation plan --------------------------------------------------------------------
def blocks(perturb: tuple[str, ...], mode: str) -> tuple[tuple[str, ...], ...]:
    """The blocks perturbed together: all of ``perturb`` (``global``) or one population each."""
    if mode not in MODES:
        raise ValueError(f"mode = {mode!r} is not allowed; use one of {', '.join(MODES)}")
    return (tuple(perturb),) if mode == "global" else tuple((p,) for p in perturb)


def masks(perturb: tuple[str, ...], mode: str, perturbations: int, batch: int, sample_mask=None,
          dtype=np.float64) -> tuple[dict, dict, dict]:
    """``(reward_mask, learn_mask, perturbed)`` per population for the tiled batch (numpy,
    ``len(blocks)·perturbations`` copies of ``batch`` rows, block-major): which rows take the
    population's reward, which rows' eligibility its synapses keep (``sample_mask`` (batch,)
    zeroes padded samples) and which rows perturb it."""
    bl = blocks(perturb, mode)
    copies = len(bl) * perturbations
    real = np.tile(np.ones(batch, dtype) if sample_mask is None else np.asarray(sample_mask, dtype), copies)
    reward, learn, perturbed = {}, {}, {}
    for k, block in enumerate(bl):
        rows = np.zeros(copies, dtype)
        rows[k * perturbations:(k + 1) * perturbations] = 1.0
        on = np.repeat(rows, batch)
        for pop in block:
            perturbed[pop] = perturbed.get(pop, 0.0) + on
            learn[pop] = learn.get(pop, 0.0) + on * real
        r_pop = OUTPUT if mode == "global" else block[0]
        reward[r_pop] = reward.get(r_pop, 0.0) + on
    return reward, learn, perturbed


def perturbation_current(u: dict, epsilon: float, perturbed: dict) -> dict:
    """The held current :math:`\\varepsilon u` on each row's perturbed block (``u`` tiled)."""
    return {pop: epsilon * u[pop] * perturbed[pop][:, None] for pop in perturbed}
