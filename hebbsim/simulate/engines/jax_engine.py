r"""The JAX engine: the model of :mod:`hebbsim.dynamics.rhs` integrated with diffrax (docs/engines.md).

The vector field *is* :func:`hebbsim.dynamics.rhs.drift` (traced), for one sample, and the
solve is ``vmap``-ed over the batch and ``jit``-compiled; it runs on CPU, or on a GPU with
``jax[cuda12]`` installed.

Solvers:

- ``euler``: explicit Euler at the fixed ``dt``, followed by the model's projection
  (:func:`hebbsim.dynamics.rhs.project`, the ``clip_states`` clip) after every step — step for
  step what the numba engine computes;
- ``tsit5`` / ``dopri5``: adaptive Runge–Kutta with a PID step-size controller
  (``rtol``/``atol``); they integrate the ODE itself and so do not allow ``clip_states``
  (a clip after each step is part of the Euler *map*, not of the ODE).

Time is integrated in units of ``dt`` (:math:`\tau = t/\mathrm{dt}`, vector field
:math:`\mathrm{dt}\cdot f`), so "``n`` steps" is the exact interval :math:`[0, n]` whatever
``dt`` is and no step is lost or gained to rounding.

Differences from the numba engine, by design: with ``tol > 0`` every sample stops on its own
(``vmap``), where numba stops the batch once all its samples are at rest; an adaptive
solver's residual is max |ds/dt| at the final state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ...dynamics import rhs
from ...dynamics.network import Network
from ...dynamics.params import Params
from ...errors import HebbsimError
from .base import SOLVERS, Relaxation, States, diverged


jax.tree_util.register_pytree_node(
    Params, lambda p: ((p.weights, p.biases), None), lambda _, children: Params(*children)
)


class ProjectedEuler(diffrax.Euler):
    """Explicit Euler followed by a projection of the new state (the model's ``clip_states``)."""

    project: Callable = eqx.field(static=True)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        y1, y_error, _, solver_state, result = super().step(terms, t0, t1, y0, args, solver_state, made_jump)
        y1 = self.project(y1)
        return y1, y_error, dict(y0=y0, y1=y1), solver_state, result


@dataclass(frozen=True)
class _Args:
    """What the vector field of one sample needs besides the state."""

    params: Params
    x: jax.Array
    target: jax.Array | None
    beta: jax.Array
    extra: dict | None


jax.tree_util.register_dataclass(_Args, data_fields=["params", "x", "target", "beta", "extra"], meta_fields=[])


class JaxEngine:
    """diffrax integration of the model under ``jit`` + ``vmap``, float32 by default.

    ``float64`` turns on ``jax_enable_x64`` for the process (JAX's only way to get 64-bit
    arrays). Several processes sharing one GPU should set
    ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` (JAX otherwise grabs 75 % of the GPU's memory).
    """

    name = "jax"
    jit_batches = True  # a whole training batch is one compiled XLA program

    def __init__(self, net: Network, dt: float, dtype="float32", solver: str = "euler", rtol: float = 1e-6,
                 atol: float = 1e-8, max_steps: int = 100_000):
        if solver not in SOLVERS:
            raise ValueError(f"dynamics.solver = {solver!r} is not allowed; use one of {', '.join(SOLVERS)}")
        if solver != "euler" and net.clip_states:
            raise HebbsimError(
                f"dynamics.solver = {solver!r} integrates the ODE and cannot clip states after each step; "
                "set network.clip_states = false or dynamics.solver = 'euler'"
            )
        self.dtype = np.dtype(dtype)
        if self.dtype == np.float64:
            jax.config.update("jax_enable_x64", True)
        self.net, self.dt, self.solver = net, float(dt), solver
        self.rtol, self.atol, self.max_steps = rtol, atol, max_steps
        self._relax = jax.jit(self.solve, static_argnames=("tol",))

    # -- conversions -------------------------------------------------------------------------
    def to_device(self, tree):
        """numpy (or JAX) arrays → JAX arrays; floating-point ones in the engine dtype."""
        def put(a):
            floating = jnp.issubdtype(jnp.result_type(a), jnp.floating)
            return jnp.asarray(a, dtype=self.dtype if floating else None)

        return jax.tree_util.tree_map(put, tree)

    # -- the model ------------------------------------------------------------------------------
    def _vector_field(self, tau, y, args: _Args):
        ds = rhs.drift(self.net, args.params, y, args.x, args.beta, args.target, args.extra)
        return {k: self.dt * v for k, v in ds.items()}

    def _step_residual(self, y, args: _Args):
        """max |Δs|/dt of the Euler step that would start at ``y`` (0 at a fixed point; a unit
        held at a bound by the clip counts as at rest)."""
        ds = self._vector_field(0.0, y, args)
        new = rhs.project(self.net, {k: y[k] + ds[k] for k in y})
        return rhs.max_abs({k: new[k] - y[k] for k in y}) / self.dt

    def _solve_one(self, y0: States, args: _Args, n_steps, tol: float):
        """Relax one sample for ``n_steps`` (dt units); returns (state, steps, residual)."""
        term = diffrax.ODETerm(self._vector_field)
        saveat = diffrax.SaveAt(t1=True)
        common = dict(saveat=saveat, args=args, adjoint=diffrax.ForwardMode(), max_steps=None, throw=False)
        if self.solver == "euler":
            # n − 1 steps with diffrax and the last by hand: the residual is then that of the last
            # step taken, as in the numba engine, at no extra cost.
            event = None
            if tol > 0:
                event = diffrax.Event(lambda t, y, args, **kw: self._step_residual(y, args) < tol)
            sol = diffrax.diffeqsolve(
                term, ProjectedEuler(partial(rhs.project, self.net)), t0=0.0,
                t1=jnp.maximum(n_steps - 1, 0).astype(self.dtype), dt0=1.0, y0=y0, event=event, **common,
            )
            y = jax.tree_util.tree_map(lambda a: a[-1], sol.ys)
            ds = self._vector_field(0.0, y, args)
            last = rhs.project(self.net, {k: y[k] + ds[k] for k in y})
            residual = rhs.max_abs({k: last[k] - y[k] for k in y}) / self.dt
            return last, sol.stats["num_steps"] + 1, residual
        solver = diffrax.Tsit5() if self.solver == "tsit5" else diffrax.Dopri5()
        event = None
        if tol > 0:
            event = diffrax.Event(
                lambda t, y, args, **kw: rhs.max_abs(self._vector_field(t, y, args)) / self.dt < tol
            )
        sol = diffrax.diffeqsolve(
            term, solver, t0=0.0, t1=jnp.asarray(n_steps, self.dtype), dt0=None, y0=y0, event=event,
            stepsize_controller=diffrax.PIDController(rtol=self.rtol, atol=self.atol), **common,
        )
        y = jax.tree_util.tree_map(lambda a: a[-1], sol.ys)
        return y, sol.stats["num_steps"], rhs.max_abs(self._vector_field(0.0, y, args)) / self.dt

    def solve(self, params: Params, states: States, x, n_steps, beta=0.0, target=None, extra=None, *,
              tol: float = 0.0):
        """Relax a batch (traceable). Returns ``(states, steps, residual, finite)``: the final
        states, the most steps any sample took, the largest residual and, per population,
        whether every state stayed finite."""
        args = _Args(params, x, target, jnp.asarray(beta, self.dtype), extra)
        axes = _Args(None, 0, None if target is None else 0, None,
                     None if extra is None else {k: 0 for k in extra})
        one = jax.vmap(self._solve_one, in_axes=(0, axes, None, None))
        y, steps, residual = one(states, args, jnp.asarray(n_steps), tol)
        finite = {k: jnp.all(jnp.isfinite(v)) for k, v in y.items()}
        return y, jnp.max(steps), jnp.max(residual), finite

    def scan(self, step, carry, n_steps: int):
        """``carry ← step(carry)`` ``n_steps`` times with ``lax.scan`` (traceable)."""
        return jax.lax.scan(lambda c, _: (step(c), None), carry, None, length=n_steps)[0]

    def acceleration(self, name: str):
        return None  # XLA fuses the scanned reference step itself

    def clamp(self, params: Params, x, extra_current: States | None = None) -> "JaxClamped":
        """Fix the input ``x`` (batch, n_x) and the parameters for the phases of one batch."""
        return JaxClamped(self, params, x, extra_current)

    def locate_divergence(self, params: Params, states: States, x, n_steps: int, beta=0.0, target=None,
                          extra=None) -> tuple[int, str]:
        """Replay a phase that ended non-finite, step by step with the reference Euler map, and
        return (first non-finite step, population). Only called after a failure."""
        p = jax.tree_util.tree_map(np.asarray, params)
        s = {k: np.asarray(v, dtype=self.dtype) for k, v in states.items()}
        x, target = np.asarray(x), None if target is None else np.asarray(target)
        extra = None if extra is None else {k: np.asarray(v) for k, v in extra.items()}
        with np.errstate(all="ignore"):
            for step in range(1, n_steps + 1):
                s = rhs.euler_step(self.net, p, s, x, self.dt, float(beta), target, extra)
                for name, v in s.items():
                    if not np.all(np.isfinite(v)):
                        return step, name
        return n_steps, next(iter(states))


class JaxClamped:
    """A batch with its input clamped; :meth:`relax` works eagerly and under ``jit``."""

    def __init__(self, engine: JaxEngine, params: Params, x, extra_current: States | None):
        self.engine = engine
        self._tracing = isinstance(x, jax.core.Tracer)
        self.params = params if self._tracing else engine.to_device(params)
        self.x = x if self._tracing else jnp.asarray(x, dtype=engine.dtype)
        self.extra = (None if extra_current is None else
                      extra_current if self._tracing else engine.to_device(extra_current))

    def relax(self, states: States, n_steps: int, *, beta=0.0, target=None, tol: float = 0.0,
              phase: str = "free") -> Relaxation:
        e = self.engine
        if not self._tracing:
            states = e.to_device(states)
            target = None if target is None else jnp.asarray(target, e.dtype)
        y, steps, residual, finite = e._relax(self.params, states, self.x, n_steps, beta, target, self.extra,
                                              tol=tol)
        if self._tracing:
            return Relaxation(y, steps, residual, finite)
        if not all(bool(v) for v in finite.values()):
            step, pop = e.locate_divergence(self.params, states, self.x, n_steps, beta, target, self.extra)
            raise diverged(e, phase, step, pop)
        return Relaxation(y, int(steps), float(residual))

    def finish(self, states: States, n_steps: int, phase: str, hint: str = "") -> Relaxation:
        finite = {k: jnp.all(jnp.isfinite(v)) for k, v in states.items()}
        if self._tracing:
            return Relaxation(states, n_steps, jnp.nan, finite)
        bad = [k for k, v in finite.items() if not bool(v)]
        if bad:
            raise diverged(self.engine, phase, n_steps, bad[0], hint)
        return Relaxation(states, n_steps, float("nan"))
