"""``bp``: the exact gradient of the batch-mean cost through the reference engine's forward pass."""

import jax
import numpy as np
import pytest

from hebbsim.analysis.gradients import implicit_gradient
from hebbsim.data.datasets import load_dataset
from hebbsim.data.params import ParameterError, load_params
from hebbsim.dynamics import rhs
from hebbsim.dynamics.loss import one_hot
from hebbsim.dynamics.params import init_params
from hebbsim.rules import RuleState, make_rule
from hebbsim.simulate.engines import engine_from_params
from hebbsim.simulate.trainer import Trainer

LAYERS = [64, 9, 7, 10]  # digits' shape (the parameters check it)


@pytest.fixture(autouse=True)
def _x64():
    jax.config.update("jax_enable_x64", True)


def _setup(cost="softmax_cross_entropy", topology=None, batch=11, seed=0):
    network = {"layers": LAYERS, "rho": "tanh"} | ({"topology": topology} if topology else {})
    cfg = load_params({"network": network, "dynamics": {"engine": "reference", "dtype": "float64"},
                       "learning": {"rule": "bp", "cost": cost}})
    net = cfg.build_network()
    rng = np.random.default_rng(seed)
    params = init_params(net, rng, np.float64)
    for b in params.biases.values():
        b[:] = rng.normal(0.0, 0.3, size=b.shape)
    x = rng.random((batch, 64))
    labels = rng.integers(0, 10, batch)
    return cfg, net, params, x, one_hot(labels, 10, np.float64)


def _backprop_by_hand(params, x, d):
    """Textbook backprop of x → tanh h1 → tanh h2 → linear o, softmax cross-entropy, batch mean."""
    w1, w2, w3 = (params.weights[k] for k in ("x_to_h1", "h1_to_h2", "h2_to_o"))
    b1, b2, b3 = (params.biases[k] for k in ("h1", "h2", "o"))
    h1 = np.tanh(x @ w1.T + b1)
    h2 = np.tanh(h1 @ w2.T + b2)
    z = h2 @ w3.T + b3
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    d3 = (p - d) / len(x)
    d2 = (d3 @ w3) * (1 - h2**2)
    d1 = (d2 @ w2) * (1 - h1**2)
    return {"W_h2_to_o": d3.T @ h2, "b_o": d3.sum(0), "W_h1_to_h2": d2.T @ h1, "b_h2": d2.sum(0),
            "W_x_to_h1": d1.T @ x, "b_h1": d1.sum(0)}


def _bp(cfg, net, params, x, d, mask=None):
    engine = engine_from_params(cfg, net)
    rule = make_rule(cfg, net)
    system = engine.clamp(params, x)
    out = rule.batch(system, params, RuleState(), x, d, rhs.zero_states(net, len(x), np.float64), {}, mask)
    return {k: np.asarray(v) for k, v in out.grads.items()}, out


def test_defaults_and_engine():
    cfg, net, *_ = _setup()
    assert (cfg.network.topology, cfg.network.neuron, cfg.dynamics.free_steps) == ("feedforward", "additive", 1)
    with pytest.raises(ParameterError, match=r"^dynamics.engine = 'jax': learning.rule = 'bp' .* set dynamics.engine"):
        load_params({"network": {"layers": [64, 9, 10]}, "learning": {"rule": "bp"}, "dynamics": {"engine": "jax"}})


@pytest.mark.slow
def test_bp_is_backprop_by_hand_softmax_cross_entropy():
    cfg, net, params, x, d = _setup()
    got, out = _bp(cfg, net, params, x, d)
    want = _backprop_by_hand(params, x, d)
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-10 * max(1.0, np.abs(want[k]).max()), err_msg=k)
    assert tuple(out.phases) == ("free",) and out.free.steps == 1
    # padded rows (mask 0) change nothing: the mean runs over the real samples
    pad = np.concatenate([x, np.random.default_rng(9).random((3, 64))])
    dpad = np.concatenate([d, np.eye(10)[:3]])
    masked, _ = _bp(cfg, net, params, pad, dpad, np.r_[np.ones(len(x)), np.zeros(3)])
    for k in want:
        np.testing.assert_allclose(masked[k], want[k], rtol=0, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("cost", ["softmax_cross_entropy", "state_mse", "rate_mse"])
def test_bp_is_the_exact_gradient_at_the_fixed_point(cost):
    """The implicit-function gradient of hebbsim.analysis (the one every rule is graded against)
    at the continuous feed-forward network's fixed point is bp's update, for every cost."""
    cfg, net, params, x, d = _setup(cost)
    got, out = _bp(cfg, net, params, x, d)
    exact = implicit_gradient(net, params, x, d, {k: np.asarray(v) for k, v in out.free.states.items()})
    for k in got:
        np.testing.assert_allclose(got[k], np.asarray(exact[k]), rtol=0, atol=1e-10, err_msg=k)


def test_feedback_projections_do_not_enter_bp():
    """On random_feedback the fixed B matrices carry nothing forward, so bp is the same update."""
    cfg, net, params, x, d = _setup(topology="random_feedback")
    assert any(p.kind == "fixed" for p in net.projections)
    got, _ = _bp(cfg, net, params, x, d)
    want = _backprop_by_hand(params, x, d)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-10, err_msg=k)


def test_one_epoch_of_bp_on_digits_lowers_the_loss():
    data = load_dataset("digits")
    cfg = load_params({"network": {"layers": [64, 32, 10], "rho": "tanh"},
                       "dynamics": {"engine": "reference", "dtype": "float64"},
                       "learning": {"rule": "bp", "cost": "softmax_cross_entropy", "lr": 0.1, "batch_size": 16,
                                    "seed": 2}})
    net = cfg.build_network()
    rng = np.random.default_rng(2)
    trainer = Trainer(cfg, net, engine_from_params(cfg, net), init_params(net, rng, np.float64), len(data.x_train),
                      rng)
    err0, loss0 = trainer.evaluate(data.x_train, data.y_train)
    stats = trainer.train_epoch(data.x_train, data.y_train, progress=False, epoch=1)
    err1, loss1 = trainer.evaluate(data.x_train, data.y_train)
    assert loss0 > 2.0 and err0 > 0.7  # ≈ log 10 and chance at Glorot init
    assert loss1 < 0.5 * loss0 and err1 < 0.15, (loss0, loss1, err1)
    assert stats.batch_loss[-20:].mean() < 0.5 * stats.batch_loss[:20].mean()
    assert trainer.n_traces == 1  # the short last batch is padded, not retraced
