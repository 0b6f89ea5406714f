r"""The reference engine: the discrete, feed-forward network of the textbook rules (backprop,
feedback alignment and its relatives), run through the same trainer, run store and checkpoint as
the continuous-time engines (``dynamics.engine = "reference"``; docs/engines.md).

A phase with :math:`\beta = 0` returns, in one sweep, the exact fixed point of the network's
feed-forward chain x → h1 → … → hL → o of *learned* projections
(:func:`hebbsim.simulate.engines.feedforward.feedforward_chain`):

.. math::  s_j = r_j\Big(\sum_{p\ \mathrm{learned},\ \mathrm{dst}(p) = j} W_p\,\rho(s_{\mathrm{src}(p)}) + b_j
           + e_j\Big)

in population order (:math:`r_j` the leak, :math:`e_j` a held extra current), whatever the
initial states and the number of steps asked for: :class:`Relaxation` ``steps = 1``,
``residual = 0``. Fixed and tied projections — the feedback paths of ``random_feedback``,
``direct_feedback``, ``symmetric`` or a fixed loop — are *ignored*: they carry no current in the
forward pass (a rule's discrete form reads its fixed feedback matrices from the parameters
itself). This is the free phase of the continuous network exactly when that network has no
feedback, and the phase the continuous rules run with their feedback switched off.

A nudged phase (:math:`\beta \ne 0`) has no feed-forward counterpart: asking for one is refused
(a rule runs here only through its discrete form, ``Rule.discrete``). Networks without a
feed-forward chain (a learned loop) or with ``gated`` neurons are refused when the engine is
made. Everything else is the jax engine's: arrays on the JAX device, whole training batches
compiled with ``jax.jit`` (``jit_batches``), ``scan`` = ``lax.scan``;
:meth:`ReferenceEngine.forward` is differentiable (the ``bp`` rule takes ``jax.grad`` of it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ...dynamics.network import INPUT, Network
from ...dynamics.nonlinearities import rho, xp_of
from ...dynamics.params import Params
from ...errors import HebbsimError
from .base import Relaxation, States
from .feedforward import feedforward_chain
from .jax_engine import JaxClamped, JaxEngine


def forward_pass(net: Network, chain: dict, params: Params, x, extra: States | None = None) -> States:
    """The states of the feed-forward chain (module docstring) for the input ``x`` (batch, n_x):
    array methods only, so it runs on numpy and on (traced) JAX arrays."""
    xp = xp_of(x)
    rates = {INPUT: x}
    out = {}
    for pop in net.dynamic_populations:
        current = params.biases[pop.name]
        if extra is not None and pop.name in extra:
            current = current + extra[pop.name]
        for p in chain[pop.name]:
            current = current + rates[p.src] @ params.weight(p).T
        s = pop.leak * xp.broadcast_to(current, (x.shape[0], pop.size))
        if net.clip_states:  # the fixed point of the clipped Euler map is the clipped s = r·I
            s = xp.clip(s, 0.0, 1.0)
        out[pop.name] = s
        rates[pop.name] = rho(s, net.rho)
    return out


class ReferenceEngine(JaxEngine):
    """Feed-forward passes on JAX (see the module docstring); refuses, with one line, a network
    without a feed-forward chain of learned projections or with ``gated`` neurons."""

    name = "reference"
    jit_batches = True

    def __init__(self, net: Network, dt: float, dtype="float32"):
        try:
            self.chain = feedforward_chain(net)
        except ValueError as err:
            raise HebbsimError(str(err)) from None
        super().__init__(net, dt, dtype)

    def forward(self, params: Params, x, extra: States | None = None) -> States:
        """The fixed point of the feed-forward chain (traceable and differentiable)."""
        return forward_pass(self.net, self.chain, params, x, extra)

    def solve(self, params: Params, states: States, x, n_steps, beta=0.0, target=None, extra=None, noise=None, *,
              tol: float = 0.0):
        """The phase in one sweep (``states``, ``n_steps``, ``target`` and ``tol`` play no part).
        Returns ``(states, 1, 0, finite)`` like :meth:`JaxEngine.solve`."""
        y = {k: v.astype(self.dtype) for k, v in self.forward(params, x, extra).items()}
        finite = {k: jnp.all(jnp.isfinite(v)) for k, v in y.items()}
        return y, jnp.asarray(1), jnp.zeros((), self.dtype), finite

    def clamp(self, params: Params, x, extra_current: States | None = None, noise: dict | None = None
              ) -> "ReferenceClamped":
        """As the jax engine's; ``noise`` must be empty (feed-forward passes integrate no dynamics)."""
        if noise:
            raise ValueError("the reference engine integrates no noisy dynamics; a discrete rule draws its own "
                             "perturbations")
        return ReferenceClamped(self, params, x, extra_current)

    def locate_divergence(self, params: Params, states: States, x, n_steps: int, beta=0.0, target=None,
                          extra=None, noise=None) -> tuple[int, str]:
        """The first population of the sweep whose state is not finite (the step is always 1)."""
        p = jax.tree_util.tree_map(np.asarray, params)
        extra = None if extra is None else {k: np.asarray(v) for k, v in extra.items()}
        with np.errstate(all="ignore"):
            out = forward_pass(self.net, self.chain, p, np.asarray(x, self.dtype), extra)
        return 1, next((k for k, v in out.items() if not np.all(np.isfinite(v))), next(iter(out)))


class ReferenceClamped(JaxClamped):
    """A batch with its input clamped on the reference engine: :meth:`relax` is the forward pass."""

    def relax(self, states: States, n_steps: int, *, beta=0.0, target=None, tol: float = 0.0,
              phase: str = "free", noise=None) -> Relaxation:
        if isinstance(beta, jax.core.Tracer) or float(beta) != 0.0:
            raise HebbsimError(
                f"the {phase} phase asks for a nudge (beta != 0), which has no discrete form: dynamics.engine = "
                "'reference' computes feed-forward passes only; run this learning rule on dynamics.engine = 'numba' "
                "or 'jax'")
        return super().relax(states, n_steps, tol=tol, phase=phase)

