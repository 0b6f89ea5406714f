r"""Reference gradient estimators in JAX (docs/model.md, *Reference gradients*).

Every learning rule of hebbsim is judged against the gradient of the network's output cost
:math:`C` (:mod:`hebbsim.dynamics.loss`, the same cost the nudge and the recorded loss use) at
the free fixed point,

.. math::  \mathcal L(\theta) = \frac1B \sum_{n=1}^{B} C\big(s_o^{*,n}(\theta), d^n\big) ,

where :math:`s^{*,n}` is sample :math:`n`'s free fixed point. Estimators (all return
:math:`\nabla_\theta \mathcal L`, keyed like :meth:`hebbsim.dynamics.params.Params.trainable`,
the same orientation as the rules' gradient estimates):

- :func:`implicit_gradient` — exact, by the implicit function theorem at the fixed point:
  with :math:`G(s,\theta) = 0` the fixed-point condition,
  :math:`\nabla_\theta\mathcal L = -\lambda^\top \partial_\theta G`, where
  :math:`(\partial_s G)^\top \lambda = \nabla_s \mathcal L`. :math:`G` is the drift
  :math:`f = ds/dt`; with ``clip_states`` a unit held at a bound by the clip is *pinned*
  (its row of :math:`G` is :math:`-(s_i - s_i^*)`: it does not move when :math:`\theta` does).
- :func:`bptt_gradient` — backpropagation through the Euler free phase (the same map the
  engines integrate, :func:`hebbsim.dynamics.rhs.euler_step`); equals the implicit gradient
  once the phase has converged.
- :func:`fg_weight` (FG-W) — weight-perturbed forward gradient: :math:`(\nabla\mathcal L\cdot v)\,v`,
  :math:`v\sim N(0, I)` over all parameters, the directional derivative by ``jax.jvp``
  through the free phase.
- :func:`fg_activity` (FG-A) — activity-perturbed forward gradient: a current
  :math:`u \sim N(0, I)` per neuron and sample, :math:`\hat g_c = (\nabla_c \ell\cdot u)\,u` by
  ``jax.jvp``, and :math:`\hat g_{W_p} = \hat g_{c,\mathrm{dst}}\,\rho(s^*_\mathrm{src})^\top`
  (exact in expectation because :math:`W_p` enters :math:`f` only through the current
  :math:`W_p\rho(s_\mathrm{src})`; a tied copy :math:`W_p^\top` adds its own share).

Both forward-gradient estimators are unbiased: :math:`\mathbb E[vv^\top] = I`.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ..dynamics import rhs
from ..dynamics.loss import cost
from ..dynamics.network import OUTPUT, Network
from ..dynamics.params import Params
from .alignment import angle, cosine  # noqa: F401  (re-exported: the comparisons of this module)
from ..simulate.engines import jax_engine  # noqa: F401  (registers Params as a JAX pytree)

Grads = dict[str, jax.Array]


def _sample_loss(net: Network, states: dict, d) -> jax.Array:
    return cost(net, states[OUTPUT], d)


def _as_jax(params: Params) -> Params:
    return jax.tree_util.tree_map(jnp.asarray, params)


def free_phase(net: Network, params: Params, x, n_steps: int, dt: float, extra=None) -> dict:
    """The Euler free phase from zero states (batched, differentiable: a ``lax.scan`` of
    :func:`hebbsim.dynamics.rhs.euler_step`)."""
    s0 = {p.name: jnp.zeros((x.shape[0], p.size), x.dtype) for p in net.dynamic_populations}

    def step(s, _):
        return rhs.euler_step(net, params, s, x, dt, extra=extra), None

    return jax.lax.scan(step, s0, None, length=n_steps)[0]


def _trainable(net: Network, params: Params) -> dict:
    return {k: jnp.asarray(v) for k, v in params.trainable(net).items()}


def implicit_gradient(net: Network, params: Params, x, d, fixed_point: dict) -> Grads:
    """Exact :math:`\\nabla_\\theta\\mathcal L` at ``fixed_point`` (batched states at rest, e.g. a
    converged free phase) by implicit differentiation; one dense solve per sample."""
    return _implicit_gradient(net, _as_jax(params), jnp.asarray(x), jnp.asarray(d),
                              {k: jnp.asarray(v) for k, v in fixed_point.items()})


@partial(jax.jit, static_argnames=("net",))
def _implicit_gradient(net, params, x, d, fixed_point):
    theta = _trainable(net, params)

    def per_sample(s_star, x1, d1):
        flat_star, unravel = ravel_pytree(s_star)

        def drift_flat(flat, th):
            ds = rhs.drift(net, params.with_trainable(net, th), unravel(flat), x1)
            return ravel_pytree(ds)[0]

        f_star = drift_flat(flat_star, theta)
        if net.clip_states:
            pinned = ((flat_star <= 0.0) & (f_star <= 0.0)) | ((flat_star >= 1.0) & (f_star >= 0.0))
        else:
            pinned = jnp.zeros_like(flat_star, dtype=bool)

        def g(flat, th):
            return jnp.where(pinned, -(flat - flat_star), drift_flat(flat, th))

        jac = jax.jacfwd(g, argnums=0)(flat_star, theta)
        dl_ds = jax.grad(lambda flat: _sample_loss(net, unravel(flat), d1))(flat_star)
        lam = jnp.linalg.solve(jac.T, dl_ds)
        _, vjp = jax.vjp(lambda th: g(flat_star, th), theta)
        return jax.tree_util.tree_map(lambda a: -a, vjp(lam)[0])

    grads = jax.vmap(per_sample)(fixed_point, x, d)
    return {k: jnp.mean(v, axis=0) for k, v in grads.items()}


def batch_loss(net: Network, params: Params, x, d, n_steps: int, dt: float, extra=None) -> jax.Array:
    """:math:`\\mathcal L` after an ``n_steps`` Euler free phase."""
    s = free_phase(net, params, x, n_steps, dt, extra)
    return jnp.mean(cost(net, s[OUTPUT], d))


@partial(jax.jit, static_argnames=("net", "n_steps", "dt"))
def bptt_gradient(net: Network, params: Params, x, d, n_steps: int, dt: float) -> Grads:
    """:math:`\\nabla_\\theta\\mathcal L` by reverse-mode differentiation through the free phase."""
    params = _as_jax(params)
    x, d = jnp.asarray(x), jnp.asarray(d)
    return jax.grad(lambda th: batch_loss(net, params.with_trainable(net, th), x, d, n_steps, dt))(
        _trainable(net, params))


_CHUNK = 250  # draws per compiled call: one compilation serves any number of draws


def _mean_over_draws(chunk_fn, key, n_draws: int, *args) -> Grads:
    keys = jax.random.split(key, -(-n_draws // _CHUNK) * _CHUNK)[:n_draws]
    total, done = None, 0
    for start in range(0, n_draws, _CHUNK):
        k = keys[start:start + _CHUNK]
        n = k.shape[0]
        if n < _CHUNK:  # a short last chunk: pad with repeated keys and weight them out
            k = jnp.concatenate([k, jnp.repeat(k[:1], _CHUNK - n, axis=0)])
        weight = (jnp.arange(_CHUNK) < n).astype(jnp.result_type(float))
        part = chunk_fn(*args, k, weight)
        total = part if total is None else jax.tree_util.tree_map(jnp.add, total, part)
        done += n
    return jax.tree_util.tree_map(lambda a: a / done, total)


@partial(jax.jit, static_argnames=("net", "n_steps", "dt"))
def _fg_weight_chunk(net, params, x, d, n_steps, dt, keys, weight):
    theta = _trainable(net, params)
    flat, unravel = ravel_pytree(theta)
    loss = lambda fl: batch_loss(net, params.with_trainable(net, unravel(fl)), x, d, n_steps, dt)  # noqa: E731

    def one(k):
        v = jax.random.normal(k, flat.shape, flat.dtype)
        return jax.jvp(loss, (flat,), (v,))[1] * v

    return unravel(weight @ jax.vmap(one)(keys))


def fg_weight(net: Network, params: Params, x, d, n_steps: int, dt: float, key, n_draws: int) -> Grads:
    r"""Mean of ``n_draws`` weight-perturbed forward gradients :math:`(\nabla\mathcal L\cdot v)\,v`."""
    return _mean_over_draws(_fg_weight_chunk, key, n_draws, net, _as_jax(params), jnp.asarray(x), jnp.asarray(d),
                            n_steps, float(dt))


@partial(jax.jit, static_argnames=("net", "n_steps", "dt"))
def _fg_activity_chunk(net, params, x, d, n_steps, dt, keys, weight):
    batch = x.shape[0]
    zero = {p.name: jnp.zeros((batch, p.size), x.dtype) for p in net.dynamic_populations}
    rates = rhs.rates(net, free_phase(net, params, x, n_steps, dt), x)

    def per_sample_loss(extra):
        s = free_phase(net, params, x, n_steps, dt, extra)
        return cost(net, s[OUTPUT], d)  # (batch,): each sample's own loss

    def one(k):
        keys = dict(zip(zero, jax.random.split(k, len(zero))))
        u = {name: jax.random.normal(keys[name], z.shape, z.dtype) for name, z in zero.items()}
        dl = jax.jvp(per_sample_loss, (zero,), (u,))[1]  # per-sample directional derivative
        g_c = {name: dl[:, None] * u[name] for name in u}
        out = {f"W_{p.name}": 0.0 for p in net.learned}
        for p in net.projections:  # a tied projection passes its share to its learned partner
            if p.kind == "learned":
                out[f"W_{p.name}"] += g_c[p.dst].T @ rates[p.src] / batch
            elif p.kind == "tied":
                out[f"W_{p.tied_to}"] += (g_c[p.dst].T @ rates[p.src]).T / batch
        out.update({f"b_{name}": jnp.mean(g, axis=0) for name, g in g_c.items()})
        return out

    draws = jax.vmap(one)(keys)
    return {k: jnp.tensordot(weight, v, axes=1) for k, v in draws.items()}


def fg_activity(net: Network, params: Params, x, d, n_steps: int, dt: float, key, n_draws: int) -> Grads:
    """Mean of ``n_draws`` activity-perturbed forward gradients (see the module docstring)."""
    return _mean_over_draws(_fg_activity_chunk, key, n_draws, net, _as_jax(params), jnp.asarray(x),
                            jnp.asarray(d), n_steps, float(dt))


# -- the rules against the exact gradient (docs/model.md, gradient alignment) ----------------------
def gradient_alignment(rule, engine, params: Params, x, d, beta: float, n_free: int, n_nudge: int,
                       tol: float | None = None) -> dict[str, float]:
    """Angle (degrees) between a contrastive rule's update and −∇_W L for every learned
    projection, on the batch ``x``: the rule's free phase is relaxed for up to ``n_free`` steps
    (or to ``tol``), its nudged phase(s) for ``n_nudge`` steps at ``beta``, the exact gradient of
    the network that infers (:meth:`hebbsim.rules.Rule.inference_params`) is taken at the free
    state by :func:`implicit_gradient` (float64).

    The estimate divides state differences by β, so a free phase that is still moving by
    ``tol`` adds an error of order ``tol/β`` to it; the default ``tol`` is therefore as small as
    the engine's precision allows (1e-11 in float64, 1e-6 in float32)."""
    if tol is None:
        tol = 1e-11 if np.dtype(engine.dtype) == np.float64 else 1e-6
    net = rule.net
    inference = rule.inference_params(params)
    system = engine.clamp(inference, x)
    free = system.relax(rhs.zero_states(net, len(x), engine.dtype), n_free, tol=tol)
    est = rule.probe_estimate(system, params, x, d, free.states, beta, n_nudge)
    x64 = np.asarray(x, np.float64)
    with jax.enable_x64(True):  # the reference in float64 whatever the run's dtype
        exact = implicit_gradient(net, inference.astype(np.float64), x64, np.asarray(d, np.float64),
                                  {k: np.asarray(v, np.float64) for k, v in free.states.items()})
    return {p.name: angle(est[f"W_{p.name}"], np.asarray(exact[f"W_{p.name}"])) for p in net.learned}
