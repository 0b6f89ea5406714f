"""The fused numba kernels are an acceleration, not a second model: for every build they compile
(ρ × neuron × clip × cost, each with numpy's GEMM and with numba's ``np.dot``,
:mod:`hebbsim.simulate.engines.numba_blas`) they must reproduce the reference of :mod:`hebbsim.dynamics` —
:func:`hebbsim.dynamics.rhs.euler_step` for the Euler kernel and
:func:`hebbsim.dynamics.forward_gradient.integrate_window` for the forward-gradient window.

The default run checks a covering subset (every value of every factor at least once, every pair
of clip × cost); the full product is ``slow`` (CI runs it)."""

import itertools

import numpy as np
import pytest

from hebbsim.dynamics import forward_gradient as fg
from hebbsim.dynamics import rhs
from hebbsim.dynamics.loss import COST_CODES
from hebbsim.dynamics.network import NEURON_MODELS, build_network
from hebbsim.dynamics.nonlinearities import RHO_NAMES
from hebbsim.dynamics.params import init_params
from hebbsim.rules.forward_gradient import window as fg_window
from hebbsim.simulate.engines.numba_engine import NumbaEngine

# the costs the kernels compile a nudge for (softmax cross-entropy runs on numba only without one)
BUILDS = list(itertools.product(RHO_NAMES, NEURON_MODELS, (False, True), COST_CODES, (True, False)))
COVERING = [("hard_sigmoid", "gated", True, "state_mse", True), ("sigmoid", "additive", False, "rate_mse", False),
            ("tanh", "gated", False, "state_mse", False), ("sigmoid4", "additive", True, "rate_mse", True)]
PARAMS = [pytest.param(*b, marks=() if b in COVERING else pytest.mark.slow) for b in BUILDS]
DT = 0.3


def _problem(rho, neuron, clip, cost, topology="loop", batch=5):
    rng = np.random.default_rng(0)
    net = build_network([6, 5, 4, 3], topology, rho=rho, neuron=neuron, clip_states=clip, cost=cost,
                        leak=[1.0, 0.7, 1.3])
    params = init_params(net, 0, np.float64)
    for b in params.biases.values():
        b[:] = rng.normal(0.3, 0.4, size=b.shape)
    x = rng.random((batch, 6))
    d = np.eye(3)[np.arange(batch) % 3]
    return net, params, x, d, rng


@pytest.mark.parametrize("rho,neuron,clip,cost,numpy_blas", PARAMS)
def test_euler_kernel_is_the_reference_euler_map(rho, neuron, clip, cost, numpy_blas):
    net, params, x, d, _ = _problem(rho, neuron, clip, cost)
    ref = rhs.zero_states(net, len(x), np.float64)
    for _ in range(20):
        ref = rhs.euler_step(net, params, ref, x, DT, beta=0.8, target=d)
    out = NumbaEngine(net, DT, np.float64, numpy_blas=numpy_blas).clamp(params, x).relax(
        rhs.zero_states(net, len(x), np.float64), 20, beta=0.8, target=d)
    for k in ref:
        np.testing.assert_allclose(out.states[k], ref[k], rtol=0, atol=1e-12)


@pytest.mark.parametrize("rho,neuron,clip,cost,numpy_blas", PARAMS)
def test_window_kernel_is_the_reference_window(rho, neuron, clip, cost, numpy_blas):
    net, params, x, d, rng = _problem(rho, neuron, clip, cost, "feedforward")
    system = NumbaEngine(net, DT, np.float64, numpy_blas=numpy_blas).clamp(params, x)
    free = system.relax(rhs.zero_states(net, len(x), np.float64), 30).states
    perturb, k = ("h1", "h2", "o"), 2
    copies = len(perturb) * k
    reward, learn, perturbed = fg.masks(perturb, "local_greedy", k, len(x))
    extra = fg.perturbation_current({p: rng.standard_normal((copies * len(x), net.sizes[p])) for p in perturb},
                                    0.3, perturbed)
    readouts = {p: (rng.normal(size=(3, net.sizes[p])), rng.normal(size=3)) for p in ("h1", "h2")}
    ref_s, ref_e = fg.integrate_window(net, params, free, x, copies, extra, d, readouts, reward, learn, DT, 7)
    got, got_e = fg_window(system, free, copies, extra, d, readouts, reward, learn, 7)
    assert set(got_e) == set(ref_e)
    # (a block can have nothing to learn: gated hard_sigmoid outputs outside [0, 1] have ρ' = 0)
    assert max(np.abs(v).max() for v in ref_e.values()) > 0
    for key in ref_e:
        scale = np.abs(ref_e[key]).max()
        np.testing.assert_allclose(got_e[key], ref_e[key], rtol=0, atol=1e-11 * scale)
    for key in ref_s:
        np.testing.assert_allclose(got.states[key], ref_s[key], rtol=0, atol=1e-12)
