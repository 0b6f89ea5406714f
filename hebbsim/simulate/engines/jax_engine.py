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

Noise (:mod:`hebbsim.dynamics.noise`): a noisy phase is the SDE
``MultiTerm(ODETerm(drift), ControlTerm(diffusion, W))`` solved by the same projected Euler
solver (Euler–Maruyama) at the fixed ``dt``. ``W`` is a Brownian motion in model time: the
phase's pre-drawn increments (:class:`PhaseNoise` ``z``, the ones the numba engine integrates:
``W`` is their piecewise-linear path on the step grid, and a step takes its increment exactly), or a
``diffrax.VirtualBrownianTree`` per sample (:class:`BrownianTrees`), which can be evaluated at
any time, e.g. by a finer reference solve on the same path. The diffusion is a
``lineax.FunctionLinearOperator``: ``σ`` on the noisy populations' states (white), or, for the
OU current, carried as extra state ``ξ`` beside the states,
:math:`\xi \leftarrow \xi - (1-a)\,\xi + \sigma\sqrt{(1-a^2)/dt}\;\Delta W`, which is the exact OU
transition of the module above written as an Euler–Maruyama step (the numba engine's recursion).

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
import lineax as lx
import numpy as np

from ...dynamics import noise as noise_math
from ...dynamics import rhs
from ...dynamics.network import Network
from ...dynamics.noise import NoiseModel, PhaseNoise
from ...dynamics.params import Params
from ...errors import HebbsimError
from .base import SOLVERS, Relaxation, States, check_noise, diverged


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


class BrownianTrees(eqx.Module):
    """One ``diffrax.VirtualBrownianTree`` per sample over model time ``[0, horizon]`` (resolution
    ``tol``), with values ``{population: (n,)}``: a Brownian path that can be evaluated at any
    time, for :class:`PhaseNoise` ``z`` on the jax engine. :meth:`increments` gives the same
    path's increments on an Euler grid, e.g. for the numba engine.

    ``keys``: one JAX key per sample (``jax.random.split(jax.random.key(seed), batch)``). A
    ``float64`` tree switches on ``jax_enable_x64``, as a float64 engine does: the same key gives
    another path in 32-bit mode."""

    keys: jax.Array
    sizes: tuple[tuple[str, int], ...] = eqx.field(static=True)
    horizon: float = eqx.field(static=True)
    tol: float = eqx.field(static=True)
    dtype: str = eqx.field(static=True, default="float64")

    def __check_init__(self):
        if np.dtype(self.dtype) == np.float64:  # as the engine: float64 trees need JAX's 64-bit mode
            jax.config.update("jax_enable_x64", True)

    def tree(self, key) -> diffrax.VirtualBrownianTree:
        """The Brownian tree of one sample."""
        shape = {pop: jax.ShapeDtypeStruct((n,), jnp.dtype(self.dtype)) for pop, n in self.sizes}
        return diffrax.VirtualBrownianTree(0.0, self.horizon, tol=self.tol, shape=shape, key=key)

    def increments(self, n_steps: int, dt: float) -> dict[str, np.ndarray]:
        """``z[k] = (W((k+1)·dt) − W(k·dt))/√dt`` for ``k < n_steps``: ``(n_steps, batch, n)``
        per population (numpy), the increments the jax engine's Euler steps take from this path.

        Evaluated as the engine evaluates them (:class:`_StepTime` at traced step times): a
        tree's value below its resolution is a Brownian-bridge draw, so a time one rounding
        off (``k·dt`` folded differently by XLA) moves ``W`` by ~1e-8, not ~1e-16."""
        if n_steps * dt > self.horizon * (1 + 1e-12):
            raise ValueError(f"{n_steps} steps of dt = {dt} run past the Brownian trees' horizon {self.horizon}")
        w = _tree_increments(self, jnp.arange(n_steps, dtype=self.dtype), float(dt))  # {pop: (batch, n_steps, n)}
        return {pop: np.asarray(v).transpose(1, 0, 2) / np.sqrt(dt) for pop, v in w.items()}


@partial(jax.jit, static_argnums=2)
def _tree_increments(trees: BrownianTrees, k, dt: float):
    """Every sample's ``W(k+1) − W(k)`` in step time (compiled once per number of steps and
    ``dt``: a VirtualBrownianTree takes seconds to compile)."""
    def one(key):
        path = _StepTime(trees.tree(key), dt)
        return jax.vmap(lambda t: path.evaluate(t, t + 1.0))(k)

    return jax.vmap(one)(trees.keys)


class _GridPath(diffrax.AbstractPath):
    """A Brownian path given by its increments on the step grid (step time): ``inc[k]`` over
    ``[k, k+1]``, linear in between. A whole step's increment is ``inc[k]`` itself (no cumulative
    sum in between), so an Euler step sees exactly the increment the numba engine adds. Only the
    fixed-step solver may use it: increments spanning grid points are not provided."""

    inc: dict  # {pop: (n_steps, n)}
    w: dict  # {pop: (n_steps + 1, n)}: W at the grid points, W(0) = 0

    def __init__(self, inc: dict):
        self.inc = inc
        self.w = {k: jnp.concatenate([jnp.zeros((1,) + v.shape[1:], v.dtype), jnp.cumsum(v, axis=0)])
                  for k, v in inc.items()}

    @property
    def t0(self):
        return 0.0

    @property
    def t1(self):
        return float(next(iter(self.inc.values())).shape[0])

    def _at(self, t):
        n = next(iter(self.inc.values())).shape[0]
        k = jnp.clip(jnp.floor(t), 0, n - 1).astype(jnp.int32)
        return {p: self.w[p][k] + (t - k).astype(v.dtype) * v[k] for p, v in self.inc.items()}

    def evaluate(self, t0, t1=None, left=True):
        """``W(t0)``, or the increment over ``[t0, t1]`` within one grid cell (the fixed-step
        solver's only use: a whole step gets ``inc[k]`` exactly). A general increment costs
        several gathers per step, which made noisy phases ~8x slower than clean ones."""
        del left
        if t1 is None:
            return self._at(t0)
        n = next(iter(self.inc.values())).shape[0]
        k = jnp.clip(jnp.floor(t0), 0, n - 1).astype(jnp.int32)
        return {p: (t1 - t0).astype(v.dtype) * v[k] for p, v in self.inc.items()}


class _StepTime(diffrax.AbstractPath):
    """A path in model time seen in step time (:math:`\tau = t/dt`), as the engine integrates."""

    path: diffrax.AbstractPath
    dt: float = eqx.field(static=True)

    @property
    def t0(self):
        return self.path.t0 / self.dt

    @property
    def t1(self):
        return self.path.t1 / self.dt

    def evaluate(self, t0, t1=None, left=True):
        return self.path.evaluate(t0 * self.dt, None if t1 is None else t1 * self.dt, left)


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
                 atol: float = 1e-8, max_steps: int = 100_000, noise: NoiseModel | None = None):
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
        if noise is not None and solver != "euler":
            raise HebbsimError(f"dynamics.solver = {solver!r} with noise: noisy dynamics are integrated at the fixed "
                               "dt (Euler-Maruyama); set dynamics.solver = 'euler'")
        self.net, self.dt, self.solver, self.noise = net, float(dt), solver, noise
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

    # -- noise ----------------------------------------------------------------------------------
    def _grid_path(self, z: dict) -> diffrax.AbstractPath:
        """One sample's pre-drawn increments ``{pop: (n_steps, n)}`` as a Brownian path in step
        time: ``W(k) = √dt Σ_{i<k} z_i`` at the grid points, linear in between."""
        return _GridPath({k: np.sqrt(self.dt) * v for k, v in z.items()})

    def _sde_terms(self, path: diffrax.AbstractPath) -> diffrax.MultiTerm:
        """The noisy phase as ``MultiTerm(ODETerm, ControlTerm)`` on ``y = (states, ξ)`` in step
        time (``ξ = {}`` for white noise): drift ``dt·f(s)`` (+ ``dt·ξ`` on the OU populations,
        ``−(1−a)ξ`` for ξ), diffusion ``σ`` on the states (white) or ``σ√((1−a²)/dt)`` on ξ (ou)."""
        m, dt = self.noise, self.dt
        noisy = m.populations
        structure = {p: jax.ShapeDtypeStruct((self.net.sizes[p],), self.dtype) for p in noisy}

        if m.kind == "white":
            def drift(t, y, args):
                return self._vector_field(t, y[0], args), {}

            def spread(w, s):
                return {k: m.sigma * w[k] if k in w else jnp.zeros_like(v) for k, v in s.items()}, {}
        else:
            leak = -np.expm1(-dt / m.tau)  # 1 − a
            scale = m.sigma * np.sqrt(-np.expm1(-2.0 * dt / m.tau) / dt)

            def drift(t, y, args):
                s, xi = y
                ds = self._vector_field(t, s, args)
                return {k: v + dt * xi[k] if k in xi else v for k, v in ds.items()}, {k: -leak * v for k, v in xi.items()}

            def spread(w, s):
                return {k: jnp.zeros_like(v) for k, v in s.items()}, {k: scale * w[k] for k in w}

        def diffusion(t, y, args):
            return lx.FunctionLinearOperator(lambda w: spread(w, y[0]), structure)

        return diffrax.MultiTerm(diffrax.ODETerm(drift), diffrax.ControlTerm(diffusion, path))

    def _solve_one_noisy(self, make_path: Callable, y0: States, args: _Args, n_steps, drive, xi0):
        """Euler–Maruyama of one sample for ``n_steps`` (the last step by hand, as in
        :meth:`_solve_one`); returns (state, steps, residual)."""
        path = make_path(drive)
        terms = self._sde_terms(path)
        y = (y0, {} if xi0 is None else xi0)
        project = lambda y: (rhs.project(self.net, y[0]), y[1])  # noqa: E731
        sol = diffrax.diffeqsolve(
            terms, ProjectedEuler(project), t0=0.0, t1=jnp.maximum(n_steps - 1, 0).astype(self.dtype), dt0=1.0, y0=y,
            saveat=diffrax.SaveAt(t1=True), args=args, adjoint=diffrax.ForwardMode(), max_steps=None, throw=False,
        )
        y = jax.tree_util.tree_map(lambda a: a[-1], sol.ys)
        t0 = jnp.maximum(n_steps - 1, 0).astype(self.dtype)
        dy = terms.vf_prod(t0, y, args, terms.contr(t0, t0 + 1.0))
        last = project(jax.tree_util.tree_map(jnp.add, y, dy))
        residual = rhs.max_abs({k: last[0][k] - y[0][k] for k in y[0]}) / self.dt
        return last[0], sol.stats["num_steps"] + 1, residual

    def solve(self, params: Params, states: States, x, n_steps, beta=0.0, target=None, extra=None,
              noise: PhaseNoise | None = None, *, tol: float = 0.0):
        """Relax a batch (traceable). Returns ``(states, steps, residual, finite)``: the final
        states, the most steps any sample took, the largest residual and, per population,
        whether every state stayed finite. ``noise``: the phase's noise (``None``: noise-free)."""
        args = _Args(params, x, target, jnp.asarray(beta, self.dtype), extra)
        axes = _Args(None, 0, None if target is None else 0, None,
                     None if extra is None else {k: 0 for k in extra})
        if noise is None:
            one = jax.vmap(self._solve_one, in_axes=(0, axes, None, None))
            y, steps, residual = one(states, args, jnp.asarray(n_steps), tol)
        else:
            if isinstance(noise.z, BrownianTrees):
                trees = noise.z
                drive, drive_axes = trees.keys, 0
                make_path = lambda key: _StepTime(trees.tree(key), self.dt)  # noqa: E731
            else:
                drive, drive_axes, make_path = noise.z, 1, self._grid_path
            xi0 = noise.xi0 if self.noise.kind == "ou" else None
            one = jax.vmap(partial(self._solve_one_noisy, make_path),
                           in_axes=(0, axes, None, drive_axes, None if xi0 is None else 0))
            y, steps, residual = one(states, args, jnp.asarray(n_steps), drive, xi0)
        finite = {k: jnp.all(jnp.isfinite(v)) for k, v in y.items()}
        return y, jnp.max(steps), jnp.max(residual), finite

    def scan(self, step, carry, n_steps: int):
        """``carry ← step(carry)`` ``n_steps`` times with ``lax.scan`` (traceable)."""
        return jax.lax.scan(lambda c, _: (step(c), None), carry, None, length=n_steps)[0]

    def acceleration(self, name: str):
        return None  # XLA fuses the scanned reference step itself

    def clamp(self, params: Params, x, extra_current: States | None = None,
              noise: dict[str, PhaseNoise] | None = None) -> "JaxClamped":
        """Fix the input ``x`` (batch, n_x) and the parameters for the phases of one batch;
        ``noise`` binds the batch's noise draws by phase name."""
        return JaxClamped(self, params, x, extra_current, noise)

    def locate_divergence(self, params: Params, states: States, x, n_steps: int, beta=0.0, target=None,
                          extra=None, noise: PhaseNoise | None = None) -> tuple[int, str]:
        """Replay a phase that ended non-finite, step by step with the reference Euler map
        (Euler–Maruyama with the phase's ``noise``), and return (first non-finite step,
        population). Only called after a failure."""
        p = jax.tree_util.tree_map(np.asarray, params)
        s = {k: np.asarray(v, dtype=self.dtype) for k, v in states.items()}
        x, target = np.asarray(x), None if target is None else np.asarray(target)
        extra = None if extra is None else {k: np.asarray(v) for k, v in extra.items()}
        z = xi = None
        if noise is not None:
            z = noise.z.increments(n_steps, self.dt) if isinstance(noise.z, BrownianTrees) else noise.z
            z = {k: np.asarray(v) for k, v in z.items()}
            xi = None if noise.xi0 is None else {k: np.asarray(v) for k, v in noise.xi0.items()}
        with np.errstate(all="ignore"):
            for step in range(1, n_steps + 1):
                if z is None:
                    s = rhs.euler_step(self.net, p, s, x, self.dt, float(beta), target, extra)
                else:
                    kicks, xi = noise_math.step_kicks(self.noise, self.dt, {k: v[step - 1] for k, v in z.items()}, xi)
                    s = rhs.noisy_euler_step(self.net, p, s, x, self.dt, kicks, float(beta), target, extra)
                for name, v in s.items():
                    if not np.all(np.isfinite(v)):
                        return step, name
        return n_steps, next(iter(states))


class JaxClamped:
    """A batch with its input clamped; :meth:`relax` works eagerly and under ``jit``."""

    def __init__(self, engine: JaxEngine, params: Params, x, extra_current: States | None,
                 noise: dict[str, PhaseNoise] | None = None):
        self.engine = engine
        self.noise = dict(noise or {})
        self._tracing = isinstance(x, jax.core.Tracer)
        self.params = params if self._tracing else engine.to_device(params)
        self.x = x if self._tracing else jnp.asarray(x, dtype=engine.dtype)
        self.extra = (None if extra_current is None else
                      extra_current if self._tracing else engine.to_device(extra_current))

    def relax(self, states: States, n_steps: int, *, beta=0.0, target=None, tol: float = 0.0,
              phase: str = "free", noise: PhaseNoise | None = None) -> Relaxation:
        e = self.engine
        if noise is not None:
            if not self._tracing:
                check_noise(e, noise, int(n_steps), int(self.x.shape[0]), tol)
                if isinstance(noise.z, BrownianTrees) and n_steps * e.dt > noise.z.horizon * (1 + 1e-12):
                    raise ValueError(f"{n_steps} steps of dt = {e.dt} run past the Brownian trees' horizon "
                                     f"{noise.z.horizon}")
                noise = PhaseNoise(noise.z if isinstance(noise.z, BrownianTrees) else e.to_device(noise.z),
                                   None if noise.xi0 is None else e.to_device(noise.xi0))
            elif e.noise is None or tol > 0:
                raise ValueError("noise needs an engine with a noise model and tol = 0")
        if not self._tracing:
            states = e.to_device(states)
            target = None if target is None else jnp.asarray(target, e.dtype)
        y, steps, residual, finite = e._relax(self.params, states, self.x, n_steps, beta, target, self.extra, noise,
                                              tol=tol)
        if self._tracing:
            return Relaxation(y, steps, residual, finite)
        if not all(bool(v) for v in finite.values()):
            step, pop = e.locate_divergence(self.params, states, self.x, n_steps, beta, target, self.extra, noise)
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
