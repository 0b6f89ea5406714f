"""The compiled Euler kernel integrates exactly the reference right-hand side."""

import numpy as np
import pytest

from hebbsim.dynamics import rhs
from hebbsim.dynamics.network import TOPOLOGIES, build_network
from hebbsim.dynamics.nonlinearities import RHO_NAMES
from hebbsim.dynamics.params import init_params
from hebbsim.errors import DivergenceError
from hebbsim.simulate.engines.numba_engine import NumbaEngine


def _random_problem(net, rng, batch=7):
    params = init_params(net, 0, np.float64)
    for b in params.biases.values():
        b[:] = rng.normal(scale=0.3, size=b.shape)
    x = rng.random((batch, net.sizes["x"]))
    d = np.eye(net.sizes["o"])[np.arange(batch) % net.sizes["o"]]
    return params, x, d


CASES = [(t, "gated", "hard_sigmoid") for t in TOPOLOGIES] + [
    ("loop", n, r) for n in ("gated", "additive") for r in RHO_NAMES if (n, r) != ("gated", "hard_sigmoid")
]


@pytest.mark.parametrize("topology,neuron,rho", CASES)
def test_kernel_matches_reference_euler(topology, neuron, rho, rng):
    net = build_network([6, 5, 4, 3], topology, rho=rho, neuron=neuron, clip_states=rho == "hard_sigmoid",
                        leak=[1.0, 0.7, 1.3])
    params, x, d = _random_problem(net, rng)
    states = rhs.zero_states(net, len(x), np.float64)
    ref = states
    for _ in range(25):
        ref = rhs.euler_step(net, params, ref, x, 0.3, beta=0.7, target=d)
    out = NumbaEngine(net, 0.3, np.float64).clamp(params, x).relax(states, 25, beta=0.7, target=d)
    assert out.steps == 25
    for k in ref:
        np.testing.assert_allclose(out.states[k], ref[k], rtol=0, atol=1e-12)
    prev = rhs.zero_states(net, len(x), np.float64)
    for _ in range(24):
        prev = rhs.euler_step(net, params, prev, x, 0.3, beta=0.7, target=d)
    np.testing.assert_allclose(out.residual, rhs.residual(prev, ref, 0.3), rtol=1e-9)


def test_float32_close_to_float64(rng):
    net = build_network([6, 5, 3], "loop", clip_states=True)
    params, x, d = _random_problem(net, rng)
    s0 = rhs.zero_states(net, len(x), np.float64)
    a = NumbaEngine(net, 0.5, np.float64).clamp(params, x).relax(s0, 40).states
    b = NumbaEngine(net, 0.5, np.float32).clamp(params.astype(np.float32), x).relax(s0, 40).states
    for k in a:
        assert b[k].dtype == np.float32
        np.testing.assert_allclose(b[k], a[k], atol=1e-5)


def test_tolerance_stops_early_at_a_fixed_point(rng):
    net = build_network([6, 5, 3], "symmetric", rho="sigmoid")
    params, x, d = _random_problem(net, rng)
    out = NumbaEngine(net, 0.2, np.float64).clamp(params, x).relax(rhs.zero_states(net, 7, np.float64), 10_000, tol=1e-9)
    assert out.steps < 10_000
    assert out.residual < 1e-9
    ds = rhs.drift(net, params, out.states, x)
    assert max(np.abs(v).max() for v in ds.values()) < 1e-8


def test_non_finite_state_names_phase_step_population(rng):
    net = build_network([6, 5, 3], "loop", rho="tanh", neuron="additive")
    params, x, d = _random_problem(net, rng)
    params = params.astype(np.float32)
    params.weights["h1_to_o"][:] = 3e38  # the current into o overflows float32 once h1 fires
    with pytest.raises(DivergenceError) as err:
        NumbaEngine(net, 0.5, np.float32).clamp(params, x).relax(rhs.zero_states(net, 7), 50, phase="nudged")
    assert err.value.phase == "nudged"
    assert err.value.population == "o"
    assert err.value.step in (2, 3)  # h1 fires from step 1 on; the float32 GEMM overflows soon after
    assert "nudged phase" in str(err.value)
