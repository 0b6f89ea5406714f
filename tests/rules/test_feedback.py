"""The feedback-alignment family (fa, dfa, drtp, fa_strategy): the continuous rules are their
discrete counterparts in the small-β limit, both engines agree, and bad settings are refused."""

import numpy as np
import pytest

import hebbsim
from hebbsim.analysis.alignment import cosine
from hebbsim.data.params import ParameterError, load_params
from hebbsim.dynamics import rhs
from hebbsim.dynamics.loss import one_hot
from hebbsim.dynamics.nonlinearities import rho, rho_prime
from hebbsim.dynamics.params import init_params
from hebbsim.dynamics.plasticity import delta_rule
from hebbsim.rules import make_rule
from hebbsim.simulate.engines import make_engine

VARIANTS = [
    ("fa", {}), ("dfa", {}), ("drtp", {}),
    ("fa_strategy", {"strategy": "s1"}), ("fa_strategy", {"strategy": "s2"}), ("fa_strategy", {"strategy": "s3"}),
    ("fa_strategy", {"strategy": "s1", "auxiliary": True}), ("fa_strategy", {"strategy": "s3", "auxiliary": True}),
]


def setup(rule, options, rho_name="tanh", beta=1e-6, layers=(64, 20, 15, 12, 10), cost=None, seed=0):
    learning = {"rule": rule, **({rule: options} if options else {})}
    if cost:
        learning["cost"] = cost
    cfg = load_params({"network": {"layers": list(layers), "rho": rho_name, "feedback": {"scale": 0.5}},
                       "dynamics": {"dtype": "float64", "dt": 0.2, "free_steps": 600, "nudge_steps": 600,
                                    "beta": beta},
                       "learning": learning})
    net = cfg.build_network()
    params = init_params(net, np.random.default_rng(seed), np.float64)
    rng = np.random.default_rng(seed + 1)
    x = rng.uniform(0, 1, (8, layers[0]))
    d = one_hot(rng.integers(0, 10, 8), 10, np.float64)
    return cfg, net, params, x, d


def continuous_update(cfg, net, params, x, d, engine="numba"):
    rule = make_rule(cfg, net)
    eng = make_engine(engine, net, cfg.dynamics.dt, "float64")
    system = eng.clamp(rule.inference_params(params), x)
    result = rule.batch(system, params, rule.init_state(np.random.default_rng(0), np.float64), x, d,
                        rhs.zero_states(net, len(x), np.float64), {"beta": cfg.dynamics.beta})
    return rule, result


@pytest.mark.parametrize("rule,options", VARIANTS, ids=[f"{r}-{o}" for r, o in VARIANTS])
def test_the_continuous_rule_is_its_discrete_counterpart_at_small_beta(rule, options):
    cfg, net, params, x, d = setup(rule, options)
    r, result = continuous_update(cfg, net, params, x, d)
    free = result.free.states
    discrete = delta_rule(net, rhs.rates(net, free, x), r.discrete_deltas(params, free, x, d))
    for p in net.learned:
        k = f"W_{p.name}"
        assert cosine(result.grads[k], discrete[k]) > 0.999999, k
        assert np.linalg.norm(result.grads[k]) / np.linalg.norm(discrete[k]) == pytest.approx(1, rel=1e-4), k


def test_the_free_phase_is_the_forward_pass_and_the_deltas_are_the_textbook_ones():
    """Hand-written FA and DFA on a 2-hidden-layer tanh network with a linear output."""
    for rule in ("fa", "dfa", "drtp"):
        cfg, net, params, x, d = setup(rule, {}, layers=(64, 9, 7, 10))
        _, result = continuous_update(cfg, net, params, x, d)
        W = {p.name: params.weight(p) for p in net.projections}
        b = params.biases
        a1 = x @ W["x_to_h1"].T + b["h1"]
        a2 = np.tanh(a1) @ W["h1_to_h2"].T + b["h2"]
        ao = np.tanh(a2) @ W["h2_to_o"].T + b["o"]
        free = result.free.states
        for got, want in ((free["h1"], a1), (free["h2"], a2), (free["o"], ao)):
            np.testing.assert_allclose(got, want, atol=1e-10)
        e = ao - d  # state_mse: the error of a linear output
        if rule == "fa":
            d2 = (1 - np.tanh(a2) ** 2) * (e @ W["o_to_h2"].T)
            d1 = (1 - np.tanh(a1) ** 2) * (d2 @ W["h2_to_h1"].T)
        else:
            u = e if rule == "dfa" else d
            d2 = (1 - np.tanh(a2) ** 2) * (u @ W["o_to_h2"].T)
            d1 = (1 - np.tanh(a1) ** 2) * (u @ W["o_to_h1"].T)
        want = {"W_x_to_h1": d1.T @ x / 8, "W_h1_to_h2": d2.T @ np.tanh(a1) / 8, "W_h2_to_o": e.T @ np.tanh(a2) / 8}
        for k, v in want.items():
            assert cosine(result.grads[k], v) > 0.999999, (rule, k)
            np.testing.assert_allclose(result.grads[k], v, rtol=1e-4, atol=1e-9)


def test_auxiliary_errors_read_each_layer_through_its_own_direct_matrix():
    cfg, net, params, x, d = setup("fa_strategy", {"strategy": "s1", "auxiliary": True}, layers=(64, 9, 7, 10))
    rule = make_rule(cfg, net)
    free = rhs.zero_states(net, 8, np.float64)
    free = make_engine("numba", net, 0.2, "float64").clamp(rule.inference_params(params), x).relax(free, 600).states
    deltas = rule.discrete_deltas(params, free, x, d)
    B1, B2, Bt = params.weights["o_to_h1"], params.weights["o_to_h2"], params.weights["h2_to_h1"]
    e2 = np.tanh(free["h2"]) @ B2 - d
    e1 = np.tanh(free["h1"]) @ B1 - d
    d2 = rho_prime(free["h2"], "tanh") * (e2 @ B2.T)  # top layer: one route (direct = above)
    d1 = rho_prime(free["h1"], "tanh") * 0.5 * (e1 @ B1.T + d2 @ Bt.T)
    np.testing.assert_allclose(deltas["h2"], d2, atol=1e-12)
    np.testing.assert_allclose(deltas["h1"], d1, atol=1e-12)


def test_s3_is_one_top_down_sweep_with_the_direct_errors_from_below():
    """Hand-written s3 on three hidden layers: h3 hears its direct route and h2's direct error,
    h2 the swept h3, its direct route and h1's direct error, h1 the swept h2 and its direct route."""
    cfg, net, params, x, d = setup("fa_strategy", {"strategy": "s3"}, layers=(64, 9, 8, 7, 10))
    rule = make_rule(cfg, net)
    free = make_engine("numba", net, 0.2, "float64").clamp(rule.inference_params(params), x).relax(
        rhs.zero_states(net, 8, np.float64), 600).states
    deltas = rule.discrete_deltas(params, free, x, d)
    W = params.weights
    e = free["o"] - d
    rp = {h: rho_prime(free[h], "tanh") for h in ("h1", "h2", "h3")}
    direct = {h: rp[h] * (e @ W[f"o_to_{h}"].T) for h in ("h1", "h2")}
    d3 = rp["h3"] * 0.5 * (e @ W["o_to_h3"].T + direct["h2"] @ W["h2_to_h3_below"].T)
    d2 = rp["h2"] * (e @ W["o_to_h2"].T + d3 @ W["h3_to_h2"].T + direct["h1"] @ W["h1_to_h2_below"].T) / 3
    d1 = rp["h1"] * 0.5 * (e @ W["o_to_h1"].T + d2 @ W["h2_to_h1"].T)
    for h, want in (("h3", d3), ("h2", d2), ("h1", d1)):
        np.testing.assert_allclose(deltas[h], want, atol=1e-12)


def test_s3_settles_under_seed_002s_feedback_scale():
    """B ~ U(-1/2, 1/2) (seed 002): a live route from below would close the loop h1 ⇄ h2 with a
    gain far above 1. The nudged phase still settles, onto the discrete sweep."""
    cfg, net, params, x, d = setup("fa_strategy", {"strategy": "s3"}, layers=(64, 60, 60, 10))
    rng = np.random.default_rng(7)
    for p in net.projections:
        if p.kind == "fixed":
            params.weights[p.name] = rng.uniform(-0.5, 0.5, params.weights[p.name].shape)
    r, result = continuous_update(cfg, net, params, x, d)
    free = result.free.states
    discrete = delta_rule(net, rhs.rates(net, free, x), r.discrete_deltas(params, free, x, d))
    for p in net.learned:
        k = f"W_{p.name}"
        assert np.isfinite(result.grads[k]).all(), k
        assert cosine(result.grads[k], discrete[k]) > 0.999999, k


@pytest.mark.parametrize("cost", ["rate_mse"])
def test_the_output_error_is_the_cost_gradient_of_the_output_state(cost):
    cfg, net, params, x, d = setup("dfa", {}, rho_name="sigmoid", cost=cost, layers=(64, 9, 10))
    _, result = continuous_update(cfg, net, params, x, d)
    so = result.free.states["o"]
    e = rho_prime(so, "sigmoid") * (rho(so, "sigmoid") - d)
    want = e.T @ rho(result.free.states["h1"], "sigmoid") / 8
    np.testing.assert_allclose(result.grads["W_h1_to_o"], want, rtol=1e-4, atol=1e-10)


def test_the_network_infers_without_its_feedback():
    cfg, net, params, x, d = setup("fa", {})
    rule = make_rule(cfg, net)
    silent = rule.inference_params(params)
    for p in net.projections:
        if p.kind == "fixed":
            assert not silent.weights[p.name].any() and params.weights[p.name].any()
        else:
            assert silent.weights[p.name] is params.weights[p.name]


def test_settings_a_feedback_rule_cannot_run_are_refused_in_one_line():
    base = {"network": {"layers": [64, 12, 10]}}
    with pytest.raises(ParameterError, match="trains a feed-forward chain"):
        load_params({"network": {"layers": [64, 12, 10], "topology": "loop"}, "learning": {"rule": "dfa"}})
    with pytest.raises(ParameterError, match="receive no feedback route"):
        load_params({"network": {"layers": [64, 12, 10], "topology": "feedforward"}, "learning": {"rule": "fa"}})
    with pytest.raises(ParameterError, match="averages the routes below, direct"):
        load_params({"network": {"layers": [64, 12, 12, 10], "topology": "direct_feedback"},
                     "learning": {"rule": "fa_strategy", "fa_strategy": {"strategy": "s2"}}})
    with pytest.raises(ParameterError, match="h1 has no route from the output"):
        load_params({"network": {"layers": [64, 12, 12, 10], "topology": "mixed_feedback",
                                 "feedback": {"routes": ["below", "above"]}}, "learning": {"rule": "fa"}})
    with pytest.raises(ParameterError, match="strategy = 's4'"):
        load_params({**base, "learning": {"rule": "fa_strategy", "fa_strategy": {"strategy": "s4"}}})
    cfg = load_params({**base, "learning": {"rule": "fa_strategy", "fa_strategy": {"strategy": "s3"}}})
    assert cfg.network.topology == "mixed_feedback" and cfg.network.feedback.routes == ["below", "direct", "above"]
    assert load_params({**base, "learning": {"rule": "fa"}}).network.topology == "random_feedback"
    assert load_params({**base, "learning": {"rule": "drtp"}}).network.topology == "direct_feedback"


def test_mixed_feedback_routes_are_projections_of_the_network():
    cfg = load_params({"network": {"layers": [64, 12, 11, 10]},
                       "learning": {"rule": "fa_strategy", "fa_strategy": {"strategy": "s3"}}})
    names = [p.name for p in cfg.build_network().projections if p.kind == "fixed"]
    assert names == ["o_to_h1", "h2_to_h1", "h1_to_h2_below", "o_to_h2"]


def one_epoch(rule, options, engine, tiny_run):
    learning = {"rule": rule, "lr": 0.2, "epochs": 1, "batch_size": 16, "beta": 0.1}
    if options:
        learning[rule] = options
    p = tiny_run(engine)
    p["network"] = {"layers": [64, 16, 12, 10], "rho": "tanh"}
    p["learning"] = learning
    p["dynamics"] = {"engine": engine, "dtype": "float64", "free_steps": 30, "nudge_steps": 20, "dt": 0.5,
                     "beta": 0.1}
    p["learning"].pop("beta")
    return hebbsim.run(p, progress=False, log=None)


@pytest.mark.parametrize("rule,options", [pytest.param("dfa", {}, marks=pytest.mark.slow),
                                          pytest.param("fa", {}, marks=pytest.mark.slow),
                                          pytest.param("drtp", {}, marks=pytest.mark.slow),
                                          pytest.param("fa_strategy", {"strategy": "s3", "auxiliary": True},
                                                       marks=pytest.mark.slow)])
def test_numba_and_jax_train_the_same_weights(rule, options, tiny_run):
    runs = {e: one_epoch(rule, options, e, tiny_run) for e in ("numba", "jax")}
    for name in runs["numba"].data_vars:
        if name.startswith("weight_"):
            np.testing.assert_allclose(runs["jax"][name].values, runs["numba"][name].values, atol=1e-10, rtol=0)
    loss = runs["numba"].batch_loss.values
    assert loss[-5:].mean() < loss[:5].mean()  # it learns within the epoch


def test_the_run_file_records_the_angle_between_each_feedback_matrix_and_its_forward_map(tiny_run):
    from hebbsim.analysis.alignment import angle
    from hebbsim.analysis.plots import plot_feedback_alignment

    p = tiny_run(learning__rule="dfa", learning__lr=0.1, learning__epochs=2, record__weights_every=1)
    p["network"] = {"layers": [64, 16, 12, 10], "rho": "tanh"}
    p["dynamics"] = {"free_steps": 30, "nudge_steps": 20, "beta": 0.1}
    ds = hebbsim.run(p, progress=False, log=None)
    assert ds.feedback_alignment.dims == ("epoch", "feedback")
    assert list(ds.feedback.values) == ["o_to_h1", "o_to_h2"]
    last = ds.isel(snapshot=-1)
    W = {k: last[f"weight_{k}"].values.astype(np.float64) for k in ("h1_to_h2", "h2_to_o", "o_to_h1", "o_to_h2")}
    want = {"o_to_h1": angle(W["h2_to_o"] @ W["h1_to_h2"], W["o_to_h1"].T), "o_to_h2": angle(W["h2_to_o"], W["o_to_h2"].T)}
    for k, v in want.items():
        assert float(ds.feedback_alignment.isel(epoch=-1).sel(feedback=k)) == pytest.approx(v, abs=1e-9)
        assert v < 89  # DFA's signature: the forward weights come to align with the feedback
    assert plot_feedback_alignment(ds).get_title().startswith("feedback alignment")


@pytest.mark.parametrize("rule,options", [("fa", {}), ("fa_strategy", {"strategy": "s3", "auxiliary": True})])
def test_on_the_reference_engine_the_rule_is_its_discrete_form(rule, options):
    """The same batch through the continuous rule (numba, β → 0) and through the discrete
    reference (the jitted feed-forward engine): the same update."""
    cfg, net, params, x, d = setup(rule, options)
    _, continuous = continuous_update(cfg, net, params, x, d)
    r = make_rule(cfg, net)
    ref = make_engine("reference", net, cfg.dynamics.dt, "float64")
    result = r.batch(ref.clamp(r.inference_params(params), x), ref.to_device(params), r.init_state(None, np.float64),
                     x, d, rhs.zero_states(net, len(x), np.float64), {"beta": cfg.dynamics.beta})
    assert set(result.phases) == {"free"}
    for p in net.learned:
        k = f"W_{p.name}"
        assert cosine(np.asarray(result.grads[k]), continuous.grads[k]) > 0.999999, k
        np.testing.assert_allclose(np.asarray(result.grads[k]), continuous.grads[k], rtol=2e-4, atol=1e-8)


@pytest.mark.parametrize("engine", ["reference", "numba"])
def test_grad_alignment_grades_every_layer_of_fa_with_transposed_feedback_as_exact(engine):
    """With B = Wᵀ on every route, feedback alignment's update is backprop's, so the recorded
    angle to −∇L is 0 in every layer. On the reference engine the lower layers' angle was ≈ 90°
    until the probes took the discrete form's update: a nudged phase there is a forward pass that
    drops the routes between hidden layers, so only the layer under the output learned anything."""
    from hebbsim.analysis.gradients import gradient_alignment

    cfg, net, params, x, d = setup("fa", {}, beta=1e-6)
    for p in net.projections:
        if p.kind == "fixed":
            params.weights[p.name] = params.weights[f"{p.dst}_to_{p.src}"].T.copy()
    rule = make_rule(cfg, net)
    eng = make_engine(engine, net, cfg.dynamics.dt, "float64")
    angles = gradient_alignment(rule, eng, params, x, d, cfg.dynamics.beta, 600, 600)
    assert set(angles) == {p.name for p in net.learned} and len(angles) == 4
    assert max(angles.values()) < 0.01, angles
