"""The free phase of a symmetric network descends the Hopfield energy."""

import numpy as np
import pytest

from hebbsim.dynamics import rhs
from hebbsim.dynamics.energy import energy
from hebbsim.dynamics.network import build_network
from hebbsim.dynamics.params import init_params
from hebbsim.simulate.engines.numba_engine import NumbaEngine


@pytest.mark.parametrize("rho,clip", [("sigmoid", False), ("hard_sigmoid", True), ("tanh", False)])
def test_free_phase_never_increases_energy(rho, clip, rng):
    net = build_network([10, 8, 6, 4], "symmetric", rho=rho, clip_states=clip)
    params = init_params(net, 3, np.float64)
    for w in params.weights.values():
        w *= 3.0  # strong recurrence: the energy landscape is not trivially convex
    for b in params.biases.values():
        b[:] = rng.normal(scale=0.5, size=b.shape)
    x = rng.random((16, 10))
    system = NumbaEngine(net, 0.05, np.float64).clamp(params, x)
    states = rhs.zero_states(net, 16, np.float64)
    energies = [energy(net, params, states, x)]
    for _ in range(200):
        states = system.relax(states, 1).states
        energies.append(energy(net, params, states, x))
    e = np.array(energies)
    assert np.all(np.diff(e, axis=0) <= 1e-12), np.diff(e, axis=0).max()
    assert np.all(e[-1] < e[0] - 1e-3)  # and it actually moved


def test_drift_is_minus_energy_gradient(rng):
    """ds/dt = −∂F/∂s (F = E + β C) for gated neurons with tied feedback, checked by finite differences."""
    net = build_network([5, 4, 3], "symmetric", rho="sigmoid", leak=[0.8, 1.5])
    params = init_params(net, 0, np.float64)
    x = rng.random((2, 5))
    d = np.eye(3)[[0, 2]]
    s = {k: rng.normal(size=v.shape) for k, v in rhs.zero_states(net, 2, np.float64).items()}
    ds = rhs.drift(net, params, s, x, beta=0.3, target=d)
    h = 1e-6
    for pop in s:
        for i in range(s[pop].shape[1]):
            sp = {k: v.copy() for k, v in s.items()}
            sm = {k: v.copy() for k, v in s.items()}
            sp[pop][:, i] += h
            sm[pop][:, i] -= h
            grad = (energy(net, params, sp, x, 0.3, d) - energy(net, params, sm, x, 0.3, d)) / (2 * h)
            np.testing.assert_allclose(ds[pop][:, i], -grad, atol=1e-7)


def test_energy_rejects_non_symmetric_network():
    net = build_network([5, 4, 3], "loop")
    with pytest.raises(ValueError, match="symmetric"):
        energy(net, init_params(net, 0), rhs.zero_states(net, 1), np.zeros((1, 5)))
