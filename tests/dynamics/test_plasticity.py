"""EP learning rules: exact arithmetic on a tiny network, and agreement with the true gradient."""

import numpy as np
import pytest

from hebbsim.dynamics import rhs
from hebbsim.dynamics.network import build_network
from hebbsim.dynamics.params import init_params
from hebbsim.dynamics.plasticity import ep_chl, ep_chl_classic
from hebbsim.simulate.engines.numba_engine import NumbaEngine


def test_ep_chl_equals_hand_computed_update():
    # x(2) → h1(1) → o(2) with loop o → h1; one sample, rates written out by hand
    net = build_network([2, 1, 2], "loop")
    x = np.array([[0.5, 1.0]])
    free = {"x": x, "h1": np.array([[0.2]]), "o": np.array([[0.1, 0.7]])}
    nudged = {"x": x, "h1": np.array([[0.4]]), "o": np.array([[0.6, 0.5]])}
    beta = 0.5
    g = ep_chl(net, free, nudged, beta)
    # ΔW_ji = (1/β) ρ(s_i⁰)(ρ(s_jᵝ) − ρ(s_j⁰)), g = −ΔW
    np.testing.assert_allclose(g["W_x_to_h1"], -np.array([[0.5 * 0.2, 1.0 * 0.2]]) / 0.5)
    np.testing.assert_allclose(g["W_h1_to_o"], -np.array([[0.2 * 0.5], [0.2 * -0.2]]) / 0.5)
    np.testing.assert_allclose(g["W_o_to_h1"], -np.array([[0.1 * 0.2, 0.7 * 0.2]]) / 0.5)
    np.testing.assert_allclose(g["b_h1"], -np.array([0.2]) / 0.5)
    np.testing.assert_allclose(g["b_o"], -np.array([0.5, -0.2]) / 0.5)
    # symmetric nudging: (ρ⁺ − ρ⁻) ρ⁰ / 2β
    minus = {"x": x, "h1": np.array([[0.1]]), "o": np.array([[0.0, 0.9]])}
    g2 = ep_chl(net, free, nudged, beta, minus)
    np.testing.assert_allclose(g2["W_h1_to_o"], -np.array([[0.2 * 0.6], [0.2 * -0.4]]) / 1.0)


def test_ep_chl_classic_equals_hand_computed_update():
    net = build_network([2, 1, 2], "symmetric")
    x = np.array([[0.5, 1.0], [1.0, 0.0]])
    free = {"x": x, "h1": np.array([[0.2], [0.0]]), "o": np.array([[0.1, 0.7], [1.0, 0.0]])}
    nudged = {"x": x, "h1": np.array([[0.4], [0.5]]), "o": np.array([[0.6, 0.5], [0.5, 0.5]])}
    g = ep_chl_classic(net, free, nudged, 0.25)
    # sample-mean of (ρᵝ_post ρᵝ_pre − ρ⁰_post ρ⁰_pre) / β
    expect = ((0.4 * 0.6 - 0.2 * 0.1) + (0.5 * 0.5 - 0.0 * 1.0)) / 2 / 0.25
    assert g["W_h1_to_o"][0, 0] == pytest.approx(-expect)
    assert "W_o_to_h1" not in g  # tied: shares h1_to_o's parameter
    expect_x = ((0.4 - 0.2) * 0.5 + (0.5 - 0.0) * 1.0) / 2 / 0.25
    assert g["W_x_to_h1"][0, 0] == pytest.approx(-expect_x)


def _fixed_point(net, params, x, beta=0.0, d=None, start=None):
    start = start or rhs.zero_states(net, len(x), np.float64)
    out = NumbaEngine(net, 0.1, np.float64).clamp(params, x).relax(start, 200_000, beta=beta, target=d, tol=1e-13)
    assert out.residual < 1e-12
    return out.states


def test_ep_update_matches_true_gradient_as_beta_to_zero(rng):
    """Scellier & Bengio's theorem: −(1/β)ΔE-contrast → −dC(s*)/dW, with C = ½‖s_o − d‖²."""
    net = build_network([5, 4, 3], "symmetric", rho="sigmoid")
    params = init_params(net, 7, np.float64)
    x = rng.random((3, 5))
    d = np.eye(3)[[0, 1, 2]]
    free = _fixed_point(net, params, x)
    beta = 1e-4
    plus = _fixed_point(net, params, x, beta, d, free)
    minus = _fixed_point(net, params, x, -beta, d, free)
    r = lambda s: rhs.rates(net, s, x)  # noqa: E731
    g = ep_chl_classic(net, r(free), r(plus), beta, r(minus))

    def cost(p):
        s = _fixed_point(net, p, x, start=free)
        return np.mean(0.5 * np.sum((s["o"] - d) ** 2, axis=1))

    h = 1e-5
    for name in ("x_to_h1", "h1_to_o"):
        fd = np.zeros_like(params.weights[name])
        for idx in np.ndindex(fd.shape):
            pp, pm = params.copy(), params.copy()
            pp.weights[name][idx] += h
            pm.weights[name][idx] -= h
            fd[idx] = (cost(pp) - cost(pm)) / (2 * h)
        cos = np.sum(fd * g[f"W_{name}"]) / np.linalg.norm(fd) / np.linalg.norm(g[f"W_{name}"])
        assert cos > 0.9999, (name, cos)
        np.testing.assert_allclose(g[f"W_{name}"], fd, rtol=1e-3, atol=1e-7)
