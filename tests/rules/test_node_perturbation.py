"""Node perturbation (seed 003): the feedback B learned from noise-correlated loss changes
converges to the forward weights (its Theorem 1), without learning it is feedback alignment,
and both engines agree on a noisy epoch."""

import numpy as np
import pytest

import hebbsim
from hebbsim.analysis.alignment import feedback_agreement
from hebbsim.data.params import ParameterError, load_params
from hebbsim.dynamics import rhs
from hebbsim.dynamics.loss import one_hot
from hebbsim.dynamics.params import init_params
from hebbsim.rules import make_rule
from hebbsim.simulate.engines import engine_from_params, make_engine
from hebbsim.simulate.trainer import make_trainer


def learned_feedback_error(c_h: float, epochs: int) -> float:
    """Theorem 1's setting: W fixed (every batch a warm-up batch), a shallow sigmoid network,
    B fitted by node perturbation with noise c_h on the hidden drive; the discrete form."""
    cfg = load_params({"network": {"layers": [64, 8, 10], "rho": "sigmoid"},
                       "dynamics": {"engine": "reference", "dtype": "float64", "noise": {"kind": "white", "sigma": c_h}},
                       "learning": {"rule": "node_perturbation", "batch_size": 500, "seed": 2,
                                    "node_perturbation": {"feedback_lr": 1.0, "fit": "ridge", "warmup_batches": 10**9}}})
    net = cfg.build_network()
    rng = np.random.default_rng(2)
    params = init_params(net, rng, np.float64)
    w0 = params.weights["h1_to_o"].copy()
    data = np.random.default_rng(0)
    x, y = data.uniform(0, 1, (20000, 64)), data.integers(0, 10, 20000)
    trainer = make_trainer(cfg, net, engine_from_params(cfg, net), params, len(x), rng)
    for epoch in range(1, epochs + 1):
        trainer.train_epoch(x, y, progress=False, epoch=epoch)
    trainer._sync()
    np.testing.assert_array_equal(params.weights["h1_to_o"], w0)  # W stayed fixed
    return feedback_agreement(net, params)["o_to_h1"][0]


@pytest.mark.slow
def test_learned_feedback_converges_to_the_forward_weights_as_the_perturbation_shrinks():
    small, large = learned_feedback_error(0.01, 20), learned_feedback_error(1.0, 20)
    assert small < 0.06  # seed 003 Theorem 1: B → Wᵀ as c_h → 0 (0.8 % in its Fig. 2 after more iterations)
    assert large > 3 * small  # a large perturbation biases the estimate


def _problem(feedback_lr, engine="numba"):
    cfg = load_params({"network": {"layers": [64, 12, 9, 10], "rho": "tanh"},
                       "dynamics": {"engine": engine, "dtype": "float64", "dt": 0.5, "free_steps": 30,
                                    "nudge_steps": 20, "beta": 0.1,
                                    "noise": {"kind": "ou", "sigma": 0.05, "tau": 20.0}},
                       "learning": {"rule": "node_perturbation", "node_perturbation": {"feedback_lr": feedback_lr}}})
    net = cfg.build_network()
    params = init_params(net, np.random.default_rng(3), np.float64)
    rng = np.random.default_rng(4)
    return cfg, net, params, rng.uniform(0, 1, (6, 64)), one_hot(rng.integers(0, 10, 6), 10, np.float64)


def test_without_learning_the_feedback_the_forward_update_is_feedback_alignments():
    cfg, net, params, x, d = _problem(0.0)
    fa = load_params({**cfg.model_dump(exclude_none=True),
                      "learning": {"rule": "fa"}, "dynamics": {**cfg.dynamics.model_dump(exclude_none=True),
                                                               "noise": {"kind": "none"}}})
    updates = {}
    for c in (cfg, fa):
        rule = make_rule(c, net)
        engine = engine_from_params(c, net)
        noise = {}
        if c.learning.rule == "node_perturbation":
            from hebbsim.dynamics.noise import NoiseModel, draw_phase, noise_generator

            model = NoiseModel.from_config(c.dynamics.noise, net.hidden)
            noise = {"noisy": draw_phase(noise_generator(1), model, net.sizes, c.dynamics.free_steps, 6, np.float64)}
        system = engine.clamp(rule.inference_params(params), x, noise=noise)
        updates[c.learning.rule] = rule.batch(system, params, rule.init_state(None, np.float64), x, d,
                                              rhs.zero_states(net, 6, np.float64), {"beta": 0.1}).grads
    np_grads, fa_grads = updates["node_perturbation"], updates["fa"]
    assert set(np_grads) - set(fa_grads) == {"W_h2_to_h1", "W_o_to_h2"}  # B's own descent directions
    for k, v in fa_grads.items():
        np.testing.assert_array_equal(np_grads[k], v)
    assert all(np.abs(np_grads[k]).max() > 0 for k in ("W_h2_to_h1", "W_o_to_h2"))


def test_node_perturbation_needs_ou_noise_on_every_hidden_population():
    base = {"network": {"layers": [64, 12, 10]}, "learning": {"rule": "node_perturbation"}}
    with pytest.raises(ParameterError, match="set \\[dynamics.noise\\] kind = 'ou'"):
        load_params(base)
    with pytest.raises(ParameterError, match="only 'ou' noise has"):
        load_params({**base, "dynamics": {"noise": {"kind": "white", "sigma": 0.1}}})
    with pytest.raises(ParameterError, match="learns one route per hidden layer"):
        load_params({**base, "network": {"layers": [64, 12, 10], "topology": "mixed_feedback"},
                     "dynamics": {"noise": {"kind": "ou", "sigma": 0.1}}})
    cfg = load_params({**base, "dynamics": {"noise": {"kind": "ou", "sigma": 0.1}}})
    assert cfg.phases == ("free", "noisy", "nudged") and cfg.network.topology == "random_feedback"


@pytest.mark.slow
@pytest.mark.parametrize("baseline", ["clean", "low_pass"])
def test_numba_and_jax_train_the_same_weights_and_feedback_on_a_noisy_epoch(tmp_path, baseline):
    runs = {}
    for engine in ("numba", "jax"):
        cfg, *_ = _problem(0.05, engine)
        raw = cfg.model_dump(exclude_none=True)
        raw["learning"]["node_perturbation"]["baseline"] = baseline
        raw["learning"].update(epochs=1, batch_size=10, lr=0.05)
        raw["data"] = {"dataset": "digits", "train_subset": 100, "test_subset": 20}
        raw["record"] = {"path": str(tmp_path / f"{engine}.h5"), "probes": 2}
        runs[engine] = hebbsim.run(raw, progress=False, log=None)
    for name in runs["numba"].data_vars:
        if name.startswith("weight_"):
            np.testing.assert_allclose(runs["jax"][name].values, runs["numba"][name].values, atol=1e-10, rtol=0)
    assert not np.array_equal(runs["numba"].weight_o_to_h2.values[0], runs["numba"].weight_o_to_h2.values[-1])


# -- the low-pass baseline -----------------------------------------------------------------------
def _reference_problem(baseline, n, sigma=0.05, layers=(64, 5, 4, 10)):
    cfg = load_params({"network": {"layers": list(layers), "rho": "sigmoid"},
                       "dynamics": {"engine": "reference", "dtype": "float64",
                                    "noise": {"kind": "white", "sigma": sigma}},
                       "learning": {"rule": "node_perturbation", "cost": "rate_mse",
                                    "node_perturbation": {"feedback_lr": 0.1, "baseline": baseline,
                                                          "baseline_decay": 0.8}}})
    net = cfg.build_network()
    params = init_params(net, np.random.default_rng(5), np.float64)
    rule = make_rule(cfg, net)
    engine = engine_from_params(cfg, net)
    return cfg, net, params, rule, engine


def _loss(engine, net, params, x, d, extra=None):
    from hebbsim.dynamics.loss import cost
    from hebbsim.dynamics.network import OUTPUT

    s = engine.clamp(params, x, extra).relax(rhs.zero_states(net, len(x), np.float64), 1).states
    return np.asarray(cost(net, s[OUTPUT], d))


def test_the_low_pass_baseline_estimates_the_same_gradient_with_more_variance():
    """One sample, 200 000 noise draws: λ̂ against the clean loss and against a stale baseline
    (the running mean b ≠ L) both average to ∂L/∂I (central differences); the stale one scatters more."""
    from hebbsim.rules.base import RuleState

    n = 200_000
    cfg, net, params, rule, engine = _reference_problem("low_pass", n)
    x = np.tile(np.random.default_rng(6).uniform(0, 1, (1, 64)), (n, 1))
    d = np.tile(one_hot(np.array([1]), 10, np.float64), (n, 1))
    clean = _loss(engine, net, params, x[:1], d[:1])[0]
    exact = {}
    for h in net.hidden:  # ∂L/∂I_j by central differences on the drive
        g = []
        for j in range(net.sizes[h]):
            bump = np.zeros((1, net.sizes[h]))
            bump[0, j] = 1e-5
            g.append((_loss(engine, net, params, x[:1], d[:1], {h: bump})[0]
                      - _loss(engine, net, params, x[:1], d[:1], {h: -bump})[0]) / 2e-5)
        exact[h] = np.array(g)
    draws = rule.draw(np.random.default_rng(7), n, np.float64)
    system = engine.clamp(params, x)
    init = rhs.zero_states(net, n, np.float64)
    stale = clean + 0.02  # what a running mean of earlier batches' noisy losses looks like
    state = RuleState({}, {"batches": np.array(3), "baseline": np.array(stale)})
    clean_losses = _loss(engine, net, params, x, d)
    base = rule.baseline(state, clean_losses)
    assert float(base) == stale  # a later batch: the running mean, not this batch's losses
    low, _, noisy_loss = rule.perturbation_estimate(system, init, base, target=d, draws=draws)
    ref, _, _ = rule.perturbation_estimate(system, init, clean_losses, target=d, draws=draws)
    first = rule.baseline(RuleState({}, {"batches": np.array(0), "baseline": np.array(0.0)}), clean_losses)
    assert float(first) == pytest.approx(clean)  # the first batch: its mean clean loss
    for h in net.hidden:
        lo, cl = np.asarray(low[h]), np.asarray(ref[h])
        for est in (lo, cl):
            m = est.mean(axis=0)
            assert m @ exact[h] / np.linalg.norm(m) / np.linalg.norm(exact[h]) > 0.98, h
            np.testing.assert_allclose(m, exact[h], atol=4 * est.std(axis=0).max() / np.sqrt(n) + 0.05 * np.abs(exact[h]).max())
        assert (lo.var(axis=0) > 5 * cl.var(axis=0)).all()  # the price: (L − b)² ξ²/c² more variance


def test_the_low_pass_baseline_is_updated_after_use_from_the_real_samples_only():
    from hebbsim.rules.base import RuleState

    cfg, net, params, rule, engine = _reference_problem("low_pass", 8)
    rng = np.random.default_rng(8)
    x, d = rng.uniform(0, 1, (8, 64)), one_hot(rng.integers(0, 10, 8), 10, np.float64)
    mask = np.array([1, 1, 1, 1, 1, 1, 0, 0], dtype=np.float64)
    draws = {"beta": 0.1, **rule.draw(np.random.default_rng(9), 8, np.float64)}
    extra = {h: 0.05 * draws["xi"][h] for h in net.hidden}
    noisy, clean = _loss(engine, net, params, x, d, extra), _loss(engine, net, params, x, d)
    system = engine.clamp(rule.inference_params(params), x)
    init = rhs.zero_states(net, 8, np.float64)
    state0 = rule.init_state(None, np.float64)
    assert set(state0.fixed) == {"batches", "baseline"}
    out = rule.batch(system, params, state0, x, d, init, draws, mask).fixed
    # the first batch's baseline is its mean clean loss; then b ← γ b + (1 − γ) mean L̃, padding left out
    np.testing.assert_allclose(out["baseline"], 0.8 * clean[:6].mean() + 0.2 * noisy[:6].mean(), rtol=1e-12)
    later = rule.batch(system, params, RuleState({}, {"batches": np.array(5), "baseline": np.array(0.3)}), x, d, init,
                       draws, mask).fixed
    np.testing.assert_allclose(later["baseline"], 0.8 * 0.3 + 0.2 * noisy[:6].mean(), rtol=1e-12)
    *_, clean_rule, _ = _reference_problem("clean", 8)
    assert "baseline" not in clean_rule.init_state(None, np.float64).fixed


@pytest.mark.slow
def test_resume_with_the_low_pass_baseline_is_bit_identical(tmp_path, assert_same_run):
    from hebbsim.data.checkpoint import checkpoint_path, load_checkpoint

    def raw(name):
        return {"network": {"layers": [64, 12, 10], "rho": "sigmoid"},
                "dynamics": {"engine": "reference", "noise": {"kind": "white", "sigma": 0.05}},
                "learning": {"rule": "node_perturbation", "cost": "rate_mse", "lr": 0.5, "batch_size": 10,
                             "epochs": 2, "seed": 3,
                             "node_perturbation": {"feedback_lr": 0.05, "baseline": "low_pass"}},
                "data": {"dataset": "digits", "train_subset": 200, "test_subset": 50},
                "record": {"path": str(tmp_path / f"{name}.h5"), "probes": 2, "weights_every": 1}}
    hebbsim.run(raw("full"), progress=False, log=None)
    hebbsim.run(raw("part"), ["learning.epochs=1"], progress=False, log=None)
    arrays, _ = load_checkpoint(checkpoint_path(str(tmp_path / "part.h5")))
    b = [k for k in arrays if k.endswith("baseline")]
    assert len(b) == 1 and float(arrays[b[0]]) > 0  # b is in the checkpoint
    hebbsim.run(raw("part"), resume=True, progress=False, log=None)
    assert_same_run(str(tmp_path / "full.h5"), str(tmp_path / "part.h5"))


def test_the_fig2_script_draws_np_against_fa_from_a_sweep_dataset(tmp_path):
    """benchmarks/node_perturbation_fig2.py on a sweep-shaped Dataset (what hebbsim.open_sweep
    returns for examples/sweep_mnist_node_perturbation.toml)."""
    import importlib.util
    from pathlib import Path

    import xarray as xr

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "node_perturbation_fig2.py"
    spec = importlib.util.spec_from_file_location("fig2", path)
    fig2 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fig2)
    rng = np.random.default_rng(0)
    dims = ("sigma", "seed", "epoch")
    ds = xr.Dataset(
        {"feedback_error": (dims + ("feedback",), rng.uniform(0.2, 2, (3, 1, 4, 2))),
         "feedback_sign_congruence": (dims + ("feedback",), rng.uniform(0.5, 1, (3, 1, 4, 2))),
         "grad_alignment": (dims + ("projection",), rng.uniform(0, 90, (3, 1, 4, 3)))},
        coords={"sigma": [0.01, 0.1, 1.0], "feedback_lr": ("sigma", [1.0, 1.0, 0.0]), "seed": [1],
                "epoch": [1, 2, 3, 4], "feedback": ["h2_to_h1", "o_to_h2"],
                "projection": ["x_to_h1", "h1_to_h2", "h2_to_o"]})
    out = tmp_path / "fig2.png"
    fig = fig2.draw(ds, str(out))
    assert out.stat().st_size > 20_000
    assert len(fig.axes) == 6  # 2 routes × (relative error, signs, angle)
    top_angle = fig.axes[2]  # route o → h2: the angle of the update into h2 (h1_to_h2)
    styles = [line.get_linestyle() for line in top_angle.lines]
    assert styles.count("--") == 1 and len(styles) == 3  # FA dashed, one line per NP c_h
    np.testing.assert_allclose(top_angle.lines[0].get_ydata(), ds.grad_alignment.isel(sigma=0, seed=0)
                               .sel(projection="h1_to_h2").values)
    np.testing.assert_allclose(fig.axes[1].lines[2].get_ydata(), 100 * ds.feedback_sign_congruence
                               .isel(sigma=2, seed=0).sel(feedback="o_to_h2").values)
