"""The CPU engine: batched explicit Euler compiled with numba (docs/engines.md)."""

from __future__ import annotations

import numpy as np

from ...dynamics.network import INPUT, OUTPUT, Network
from ...dynamics.loss import COST_CODES
from ...dynamics.noise import NOISE_CODES, NoiseModel, PhaseNoise
from ...dynamics.nonlinearities import RHO_CODES
from ...dynamics.params import Params
from ...errors import HebbsimError
from .base import Relaxation, States, check_noise, diverged
from .numba_blas import numpy_gemm
from .numba_kernels import euler_kernel


class NumbaEngine:
    """Explicit Euler at fixed ``dt`` on the CPU, float32 by default.

    Kernels are compiled on first use and cached on disk (``numba`` ``cache=True``), so a
    second run does not recompile.

    With a ``noise`` model, a phase given noise draws runs a second kernel specialised to the
    noise kind (Euler–Maruyama, :mod:`hebbsim.dynamics.noise`); a phase without runs the
    noise-free kernel, so clean phases are bit-identical to those of an engine without noise.

    The kernels' products call numpy's own BLAS (:mod:`hebbsim.simulate.engines.numba_blas`);
    ``numpy_blas=False`` makes them use numba's ``np.dot`` (scipy's BLAS), as they do anyway
    where numpy's BLAS cannot be called from compiled code.
    """

    name = "numba"
    jit_batches = False  # phases are compiled kernels; the rest of a batch runs eagerly on numpy

    def __init__(self, net: Network, dt: float, dtype=np.float32, noise: NoiseModel | None = None,
                 numpy_blas: bool = True):
        self.net = net
        self.noise = noise
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
        # the kernels' GEMM: numpy's BLAS (one library, one thread pool for the process), or
        # numba's np.dot (scipy's BLAS) where numpy's cannot be called or numpy_blas is False
        self.gemm = numpy_gemm(self.dtype) if numpy_blas else None
        # the kernels implement the nudge of the costs in COST_CODES; with another cost (softmax
        # cross-entropy) only phases with β = 0 run here (relax refuses a nudge), so the build of
        # state_mse serves and no kernel is compiled for a force it never applies
        self.kernel_nudge = net.cost in COST_CODES  # the kernels have this cost's force
        build = (RHO_CODES[net.rho], net.neuron == "gated", bool(net.clip_states),
                 COST_CODES.get(net.cost, COST_CODES["state_mse"]))
        self._build = build  # the specialisation of every kernel this engine compiles
        self._kernel = euler_kernel(*build)
        # the noise-free kernel never reads its noise arguments: typed placeholders
        self._quiet = (np.zeros(len(self._pops), np.int64), (np.zeros((1, 1, 1), self.dtype),),
                       (np.zeros((1, 1), self.dtype),), 0.0, 1.0)
        if noise is not None:
            self._noisy_kernel = euler_kernel(*build, NOISE_CODES[noise.kind])
            self._noisy = np.array([name in noise.populations for name in self._pops], dtype=np.int64)

    def to_device(self, tree):
        """The engine works on host (numpy) arrays: nothing to move."""
        return tree

    def scan(self, step, carry, n_steps: int):
        """``carry ← step(carry)`` ``n_steps`` times, eagerly (the reference speed: a rule with a
        fused kernel uses :meth:`acceleration` instead)."""
        for _ in range(n_steps):
            carry = step(carry)
        return carry

    def acceleration(self, name: str):
        if name == "forward_gradient.window" and self.kernel_nudge:  # its reward is the kernels' cost
            from .numba_fg_window import fused_window

            return fused_window
        return None

    def clamp(self, params: Params, x: np.ndarray, extra_current: States | None = None,
              noise: dict[str, PhaseNoise] | None = None) -> "NumbaClamped":
        """Fix the input ``x`` (batch, n_x) and the parameters for the phases of one batch.

        ``extra_current`` adds a current held constant over the phases (e.g. a perturbation);
        ``noise`` binds the batch's noise draws by phase name.
        """
        return NumbaClamped(self, params, np.ascontiguousarray(x, dtype=self.dtype), extra_current, noise)

    def _noise_arguments(self, noise: PhaseNoise, batch: int) -> tuple:
        """``(noisy, z, xi, kick, decay)`` of the noisy kernel: per population the increments
        (C-contiguous, engine dtype) and a fresh copy of the OU current (the kernel advances it in
        place), placeholders for quiet populations."""
        m = self.noise
        z, xi = [], []
        for name, size in zip(self._pops, (p.size for p in self.net.dynamic_populations)):
            if name in m.populations:
                z.append(np.ascontiguousarray(noise.z[name], dtype=self.dtype))
                xi.append(np.array(noise.xi0[name], dtype=self.dtype, order="C", copy=True) if m.kind == "ou"
                          else np.zeros((1, 1), self.dtype))
            else:
                z.append(np.zeros((1, 1, 1), self.dtype))
                xi.append(np.zeros((1, 1), self.dtype))
        return self._noisy, tuple(z), tuple(xi), m.kick(self.dt), m.decay(self.dt)


class NumbaClamped:
    def __init__(self, engine: NumbaEngine, params: Params, x: np.ndarray, extra_current: States | None,
                 noise: dict[str, PhaseNoise] | None = None):
        self.engine, self.params = engine, params
        self.noise = dict(noise or {})
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
              phase: str = "free", noise: PhaseNoise | None = None) -> Relaxation:
        e = self.engine
        if beta != 0 and not e.kernel_nudge:
            raise HebbsimError(
                f"the {phase} phase nudges the output (beta = {float(beta):g}) with learning.cost = {e.net.cost!r}, "
                f"whose force the numba kernels do not implement (they do {', '.join(COST_CODES)}); "
                "use dynamics.engine = 'jax' or another learning.cost")
        s = tuple(np.array(states[n], dtype=e.dtype, order="C", copy=True) for n in e._pops)
        tgt = (np.ascontiguousarray(target, dtype=e.dtype) if target is not None
               else np.zeros((self.batch, s[e._out].shape[1]), dtype=e.dtype))
        if check_noise(e, noise, int(n_steps), self.batch, tol):
            kernel, noise_args = e._noisy_kernel, e._noise_arguments(noise, self.batch)
        else:
            kernel, noise_args = e._kernel, e._quiet
        steps, res, bad_step, bad_pop = kernel(
            s, self.static, self.weights_t, e._proj_src, e._proj_dst, e._inv_leak,
            self._rates, self._currents, self._scratch, e._out, tgt, float(beta), e.dt,
            int(n_steps), float(tol), *noise_args, e.gemm,
        )
        if bad_step >= 0:  # the kernel counts from 0; the error names the step as the k-th
            raise diverged(e, phase, int(bad_step) + 1, e._pops[bad_pop])
        return Relaxation(dict(zip(e._pops, s)), int(steps), float(res))

    def finish(self, states: States, n_steps: int, phase: str, hint: str = "") -> Relaxation:
        e = self.engine
        for name, v in states.items():
            if not np.all(np.isfinite(v)):
                raise diverged(e, phase, n_steps, name, hint)
        return Relaxation(states, n_steps, float("nan"))
