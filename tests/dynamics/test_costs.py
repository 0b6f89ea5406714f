"""One cost C for the nudge, the recorded loss and the exact gradient (docs/model.md, Costs).

Symmetric EP with ``ep_chl_classic`` at small β estimates the gradient of the cost whose force
the nudge is; the exact-gradient reference differentiates the same cost. These tests fail if
any of the three uses another cost (as the rate loss with a state nudge did for sigmoid and tanh).
"""

import jax
import numpy as np
import pytest

from hebbsim.analysis import gradients as G
from hebbsim.dynamics import rhs
from hebbsim.dynamics.loss import COST_CODES, COSTS, cost, cost_gradient
from hebbsim.dynamics.network import OUTPUT, build_network
from hebbsim.dynamics.nonlinearities import RHO_NAMES
from hebbsim.dynamics.params import init_params
from hebbsim.dynamics.plasticity import ep_chl, ep_chl_classic
from hebbsim.simulate.engines.numba_engine import NumbaEngine


@pytest.fixture(autouse=True)
def _x64():
    jax.config.update("jax_enable_x64", True)


def _problem(rho, cost_kind, seed=0, batch=12, layers=(5, 7, 6, 3)):
    rng = np.random.default_rng(seed)
    clip = rho == "hard_sigmoid"
    net = build_network(list(layers), "symmetric", rho=rho, clip_states=clip, cost=cost_kind)
    params = init_params(net, seed + 1, np.float64)
    for b in params.biases.values():
        b[:] = rng.uniform(-0.2, 0.6, size=b.shape)
    x = rng.random((batch, layers[0]))
    d = np.eye(layers[-1])[rng.integers(0, layers[-1], batch)]
    return net, params, x, d


def _relax(net, params, x, init=None, **kw):
    system = NumbaEngine(net, 0.2, np.float64).clamp(params, x)
    init = init if init is not None else rhs.zero_states(net, len(x), np.float64)
    out = system.relax(init, 200_000, tol=1e-13, **kw)
    assert out.residual < 1e-12
    return out.states


@pytest.mark.parametrize("cost_kind", COSTS)
def test_the_nudge_is_minus_beta_times_the_cost_gradient(cost_kind):
    rng = np.random.default_rng(1)
    for rho in RHO_NAMES:
        net, params, x, d = _problem(rho, cost_kind)
        states = {k: rng.normal(0.5, 0.6, size=v.shape) for k, v in rhs.zero_states(net, len(x), np.float64).items()}
        free = rhs.drift(net, params, states, x)
        nudged = rhs.drift(net, params, states, x, beta=0.3, target=d)
        np.testing.assert_allclose(nudged[OUTPUT] - free[OUTPUT], -0.3 * cost_gradient(net, states[OUTPUT], d),
                                   rtol=0, atol=1e-14)
        # ∂C/∂s_o is the derivative of C (central differences, away from hard_sigmoid's kinks)
        s_o, h = states[OUTPUT], 1e-6
        fd = np.stack([(cost(net, s_o + h * e, d) - cost(net, s_o - h * e, d)) / (2 * h)
                       for e in np.eye(s_o.shape[1])], axis=1)
        smooth = (np.abs(s_o) > 1e-3) & (np.abs(s_o - 1) > 1e-3)
        np.testing.assert_allclose(fd[smooth], cost_gradient(net, s_o, d)[smooth], rtol=1e-6, atol=1e-8)


def test_the_two_costs_differ_where_they_should():
    net_s, params, x, d = _problem("sigmoid", "state_mse")
    net_r = build_network([5, 7, 6, 3], "symmetric", rho="sigmoid", cost="rate_mse")
    s_o = np.array([[0.2, -1.0, 3.0]])
    d1 = np.array([[0.0, 0.0, 1.0]])
    assert cost(net_s, s_o, d1)[0] == pytest.approx(0.5 * (0.04 + 1.0 + 4.0))
    r = 1 / (1 + np.exp(-s_o))
    assert cost(net_r, s_o, d1)[0] == pytest.approx(0.5 * np.sum((r - d1) ** 2))


COVERING = [("hard_sigmoid", "state_mse"), ("sigmoid", "rate_mse"), ("tanh", "state_mse"), ("sigmoid4", "rate_mse")]


@pytest.mark.parametrize("rho,cost_kind", [
    pytest.param(r, c, marks=() if (r, c) in COVERING else pytest.mark.slow) for r in RHO_NAMES for c in COST_CODES])
def test_symmetric_ep_is_the_exact_gradient_of_the_cost_for_every_rho(rho, cost_kind):
    net, params, x, d = _problem(rho, cost_kind)
    free = _relax(net, params, x)
    beta = 1e-3
    nudged = _relax(net, params, x, free, beta=beta, target=d)
    rates = lambda s: rhs.rates(net, s, x)  # noqa: E731
    ep = ep_chl_classic(net, rates(free), rates(nudged), beta)
    exact = G.implicit_gradient(net, params, x, d, free)
    for k in exact:
        assert G.cosine(ep[k], exact[k]) > 0.999, (k, G.cosine(ep[k], exact[k]))
        # the size too: EP estimates the gradient itself, not a direction (to O(β))
        np.testing.assert_allclose(np.linalg.norm(ep[k]), np.linalg.norm(exact[k]), rtol=0.02)


@pytest.mark.parametrize("rho,cost_kind", [("sigmoid", "state_mse"), ("tanh", "rate_mse"),
                                           ("tanh", "softmax_cross_entropy"), ("tanh", "sigmoid_cross_entropy")])
def test_the_exact_gradient_is_the_derivative_of_the_cost_at_the_relaxed_fixed_point(rho, cost_kind):
    """Finite differences of the mean cost at the free fixed point, θ ± h: the reference itself."""
    net, params, x, d = _problem(rho, cost_kind, batch=6)
    free = _relax(net, params, x)
    exact = G.implicit_gradient(net, params, x, d, free)

    def mean_cost(p):
        return float(np.mean(cost(net, _relax(net, p, x)[OUTPUT], d)))

    rng = np.random.default_rng(5)
    for key in ("W_x_to_h1", "W_h1_to_h2", "W_h2_to_o", "b_h1"):
        flat = params.trainable(net)
        direction = rng.normal(size=flat[key].shape)
        h = 1e-5
        plus = params.with_trainable(net, {**flat, key: flat[key] + h * direction})
        minus = params.with_trainable(net, {**flat, key: flat[key] - h * direction})
        fd = (mean_cost(plus) - mean_cost(minus)) / (2 * h)
        assert fd == pytest.approx(float(np.vdot(exact[key], direction)), rel=1e-5, abs=1e-10), key


def test_ep_chl_is_off_the_gradient_on_tied_weights_and_ep_chl_classic_is_not():
    """Why the default rule depends on the topology: on tied weights ep_chl drops the
    ρ(s_j⁰)Δρ(s_i) term."""
    net, params, x, d = _problem("tanh", "state_mse")
    free = _relax(net, params, x)
    nudged = _relax(net, params, x, free, beta=1e-3, target=d)
    rates = lambda s: rhs.rates(net, s, x)  # noqa: E731
    exact = G.implicit_gradient(net, params, x, d, free)
    classic = ep_chl_classic(net, rates(free), rates(nudged), 1e-3)
    plain = ep_chl(net, rates(free), rates(nudged), 1e-3)
    for k in ("W_h1_to_h2", "W_h2_to_o"):  # measured: classic 0.02°, ep_chl 27° and 25°
        assert G.angle(classic[k], exact[k]) < 0.5
        assert G.angle(plain[k], exact[k]) > 10.0, (k, G.angle(plain[k], exact[k]))
    # the input projection has no tied partner: there both rules are the same
    assert G.angle(plain["W_x_to_h1"], classic["W_x_to_h1"]) < 0.1


def test_softmax_cross_entropy_is_stable_traces_under_jax_and_predicts_the_largest_logit():
    from scipy.special import log_softmax

    net = build_network([5, 7, 3], "feedforward", rho="tanh", neuron="additive", cost="softmax_cross_entropy")
    rng = np.random.default_rng(3)
    s_o = rng.normal(size=(8, 3)) * np.array([[1.0], [1e3], [1e5], [1.0], [1.0], [50.0], [1.0], [800.0]])
    d = np.eye(3)[rng.integers(0, 3, 8)]
    c = cost(net, s_o, d)
    assert np.all(np.isfinite(c)) and np.all(c >= 0)
    np.testing.assert_allclose(c, -(d * log_softmax(s_o, axis=1)).sum(1), rtol=1e-13, atol=1e-13)
    g = cost_gradient(net, s_o, d)
    np.testing.assert_allclose(g.sum(1), 0.0, atol=1e-13)  # softmax − d: both sum to 1
    # traced: jax.grad of the cost is the gradient the nudge uses
    jg = jax.grad(lambda s: cost(net, s, jax.numpy.asarray(d)).sum())(jax.numpy.asarray(s_o))
    np.testing.assert_allclose(np.asarray(jg), g, rtol=0, atol=1e-13)
    # the class is the largest logit: ρ(s_o) is never what softmax reads
    from hebbsim.dynamics.loss import prediction
    np.testing.assert_array_equal(prediction(net, s_o), s_o.argmax(1))


def test_sigmoid_cross_entropy_is_one_stable_binary_cross_entropy_per_unit():
    net = build_network([5, 7, 3], "feedforward", rho="tanh", neuron="additive", cost="sigmoid_cross_entropy")
    rng = np.random.default_rng(4)
    s_o = rng.normal(size=(6, 3)) * np.array([[1.0], [1e3], [40.0], [1.0], [1e5], [0.1]])
    d = np.eye(3)[rng.integers(0, 3, 6)]
    small = rng.normal(size=(2, 3))
    y = 1 / (1 + np.exp(-small))
    want = -(d[:2] * np.log(y) + (1 - d[:2]) * np.log(1 - y)).sum(1)
    np.testing.assert_allclose(cost(net, small, d[:2]), want, rtol=1e-13)
    c = cost(net, s_o, d)
    assert np.all(np.isfinite(c)) and np.all(c >= 0)
    jg = jax.grad(lambda s: cost(net, s, jax.numpy.asarray(d)).sum())(jax.numpy.asarray(s_o))
    np.testing.assert_allclose(np.asarray(jg), cost_gradient(net, s_o, d), rtol=0, atol=1e-13)


def test_numba_runs_softmax_cross_entropy_free_phases_and_refuses_its_nudge():
    from hebbsim.errors import HebbsimError

    net, params, x, d = _problem("tanh", "softmax_cross_entropy")
    system = NumbaEngine(net, 0.2, np.float64).clamp(params, x)
    free = system.relax(rhs.zero_states(net, len(x), np.float64), 200)
    ref = rhs.zero_states(net, len(x), np.float64)
    for _ in range(200):
        ref = rhs.euler_step(net, params, ref, x, 0.2)
    for k in ref:
        np.testing.assert_allclose(free.states[k], ref[k], rtol=0, atol=1e-12)
    with pytest.raises(HebbsimError, match="learning.cost = 'softmax_cross_entropy', whose force the numba kernels "
                                           "do not implement"):
        system.relax(free.states, 10, beta=0.5, target=d, phase="nudged")


def test_the_jax_engine_nudges_with_softmax_cross_entropy():
    """Where the kernels have no force for it, the jax engine integrates rhs.drift itself: its
    nudged phase is the reference Euler map with −β(softmax(s_o) − d)."""
    from hebbsim.simulate.engines.jax_engine import JaxEngine

    net, params, x, d = _problem("tanh", "softmax_cross_entropy", batch=4)
    start = {k: np.full(v.shape, 0.1) for k, v in rhs.zero_states(net, len(x), np.float64).items()}
    out = JaxEngine(net, 0.2, np.float64).clamp(params, x).relax(start, 15, beta=0.7, target=d)
    ref = start
    for _ in range(15):
        ref = rhs.euler_step(net, params, ref, x, 0.2, beta=0.7, target=d)
    for k in ref:
        np.testing.assert_allclose(np.asarray(out.states[k]), ref[k], rtol=0, atol=1e-12)


@pytest.mark.parametrize("rule", ["ep_chl", "ep_chl_classic", "forward_gradient"])
def test_rules_that_nudge_with_softmax_cross_entropy_are_refused_on_numba_before_any_work(rule):
    from hebbsim.data.params import ParameterError, load_params

    raw = {"network": {"layers": [64, 12, 10], "topology": "feedforward"},
           "learning": {"rule": rule, "cost": "softmax_cross_entropy"}}
    with pytest.raises(ParameterError, match=rf"^learning.cost = 'softmax_cross_entropy': learning.rule = '{rule}' "
                                             r"drives the output .* state_mse and rate_mse only; use dynamics.engine "
                                             r"= 'jax'") as err:
        load_params(raw)
    assert "\n" not in str(err.value)
    assert load_params(raw, ["dynamics.engine=jax"]).learning.cost == "softmax_cross_entropy"


def test_label_smoothing_targets_and_the_recorded_loss(tiny_run):
    """``learning.label_smoothing = ε``: targets (1 − ε)·e_y + ε/n; the recorded test loss is the
    cost against those targets at the free fixed point, recomputed here independently; and the
    training differs from ε = 0 (the nudge pulls towards the smoothed target)."""
    import hebbsim
    from hebbsim.data.datasets import load_dataset
    from hebbsim.data.params import load_params
    from hebbsim.dynamics.loss import one_hot
    from hebbsim.dynamics.params import Params
    from hebbsim.simulate.engines.numba_engine import NumbaEngine
    from hebbsim.simulate.phases import free_phase

    d = one_hot(np.array([2, 0]), 4, np.float64, 0.2)
    np.testing.assert_allclose(d, [[0.05, 0.05, 0.85, 0.05], [0.85, 0.05, 0.05, 0.05]])
    np.testing.assert_array_equal(one_hot(np.array([1]), 3), [[0, 1, 0]])

    p = tiny_run("smooth", learning__label_smoothing=0.1, learning__epochs=2, data__test_subset=60)
    ds = hebbsim.run(p, progress=False, log=None)
    plain = hebbsim.run(tiny_run("plain", learning__epochs=2, data__test_subset=60), progress=False, log=None)
    assert not np.allclose(ds.weight_x_to_h1.values[-1], plain.weight_x_to_h1.values[-1])
    cfg = load_params(p)
    net = cfg.build_network()
    params = Params({k[len("weight_"):]: ds[k].values[-1] for k in ds.data_vars if k.startswith("weight_")},
                    {k[len("bias_"):]: ds[k].values[-1] for k in ds.data_vars if k.startswith("bias_")})
    data = load_dataset("digits")
    x, y = data.x_test[:60].astype(np.float32), data.y_test[:60]
    free = free_phase(NumbaEngine(net, cfg.dynamics.dt).clamp(params, x), rhs.zero_states(net, 60, np.float32),
                      cfg.dynamics.eval_steps or cfg.dynamics.free_steps)
    expected = cost(net, free.states["o"].astype(np.float64), one_hot(y, 10, np.float64, 0.1)).mean()
    assert float(ds.test_loss[-1]) == pytest.approx(expected, rel=1e-5)
    unsmoothed = cost(net, free.states["o"].astype(np.float64), one_hot(y, 10, np.float64)).mean()
    assert abs(expected - unsmoothed) > 1e-3 * expected


def test_label_smoothing_is_refused_where_it_has_no_meaning():
    from hebbsim.data.params import load_params

    with pytest.raises(ValueError, match="learning.label_smoothing = 1.0"):
        load_params({"learning": {"label_smoothing": 1.0}, "data": {"dataset": "digits"},
                     "network": {"layers": [64, 16, 10]}})
