import numpy as np
import pytest

from hebbsim.dynamics.optimizers import Optimizer


def test_sgd_momentum_weight_decay_by_hand():
    w = {"W_a": np.array([1.0, -2.0]), "b_h1": np.array([0.5])}
    opt = Optimizer({"W_a": 0.1, "b_h1": 0.2}, "sgd", momentum=0.5, weight_decay=0.01)
    g = {"W_a": np.array([0.3, 0.1]), "b_h1": np.array([1.0])}
    opt.step(w, g)
    np.testing.assert_allclose(w["W_a"], [1.0 - 0.1 * (0.3 + 0.01), -2.0 - 0.1 * (0.1 - 0.02)])
    np.testing.assert_allclose(w["b_h1"], [0.5 - 0.2 * 1.0])  # no decay on biases
    v = np.array([0.3 + 0.01 * w["W_a"][0], 0.1 + 0.01 * w["W_a"][1]]) + 0.5 * np.array([0.31, 0.08])
    expect = w["W_a"] - 0.1 * v
    opt.step(w, g)
    np.testing.assert_allclose(w["W_a"], expect)


def test_adam_first_steps_by_hand():
    w = {"W_a": np.array([1.0])}
    opt = Optimizer({"W_a": 0.01}, "adam")
    opt.step(w, {"W_a": np.array([2.0])})
    assert w["W_a"][0] == pytest.approx(1.0 - 0.01 * 2.0 / (2.0 + 1e-8))  # first Adam step is ±lr
    opt.step(w, {"W_a": np.array([-1.0])})
    m = (0.9 * 0.2 + 0.1 * -1.0) / (1 - 0.9**2)
    v = (0.999 * 0.004 + 0.001 * 1.0) / (1 - 0.999**2)
    assert w["W_a"][0] == pytest.approx(0.99 - 0.01 * m / (np.sqrt(v) + 1e-8))


def test_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(0)
    grads = [{"W_a": rng.normal(size=3)} for _ in range(4)]
    a, b = {"W_a": np.zeros(3)}, {"W_a": np.zeros(3)}
    opt_a = Optimizer({"W_a": 0.1}, "adam")
    for g in grads[:2]:
        opt_a.step(a, g)
    b["W_a"][:] = a["W_a"]
    opt_b = Optimizer({"W_a": 0.1}, "adam")
    opt_b.load_state_dict({k: v.copy() for k, v in opt_a.state_dict().items()})
    for g in grads[2:]:
        opt_a.step(a, g)
        opt_b.step(b, g)
    np.testing.assert_array_equal(a["W_a"], b["W_a"])


def test_unknown_optimizer():
    with pytest.raises(ValueError, match="sgd"):
        Optimizer({}, "rmsprop")


def test_lr_schedules():
    from hebbsim.dynamics.optimizers import lr_scale

    assert lr_scale("constant", 7, 10) == 1.0
    assert lr_scale("cosine", 1, 10) == pytest.approx(1.0)
    assert lr_scale("cosine", 6, 10) == pytest.approx(0.5)  # half way: cos(π/2) = 0
    assert lr_scale("cosine", 6, 10, final_fraction=0.2) == pytest.approx(0.6)
    assert lr_scale("cosine", 10, 10) == pytest.approx(0.5 * (1 + np.cos(0.9 * np.pi)))
    assert lr_scale("exponential", 3, 10, decay=0.5) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="cosine"):
        lr_scale("linear", 1, 10)


def test_lr_scale_in_state_scales_sgd_and_adam_steps():
    for kind in ("sgd", "adam"):
        a, b = {"W_a": np.ones(2)}, {"W_a": np.ones(2)}
        opt_a, opt_b = Optimizer({"W_a": 0.1}, kind), Optimizer({"W_a": 0.025}, kind)
        opt_a.state = opt_a.init(a)
        opt_a.state["lr_scale"] = np.asarray(0.25)
        g = {"W_a": np.array([0.3, -2.0])}
        opt_a.step(a, g)
        opt_b.step(b, g)
        np.testing.assert_allclose(a["W_a"], b["W_a"])
        assert float(opt_a.state_dict()["lr_scale"]) == 0.25  # part of the checkpoint
