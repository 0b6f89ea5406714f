"""``sigprop``: layer-local losses (no gradient crosses a layer boundary), L_pred with the label
reconstruction, early exits, the target generator as rule state, IF neurons, the run file."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hebbsim
from hebbsim.data.params import ParameterError, load_params
from hebbsim.dynamics.loss import one_hot
from hebbsim.dynamics.params import init_params
from hebbsim.dynamics.spiking import integrate_and_fire
from hebbsim.rules import make_rule
from hebbsim.rules.sigprop import GENERATOR
from hebbsim.simulate.engines import engine_from_params
from hebbsim.simulate.trainer import Trainer

LAYERS = [64, 9, 7, 10]  # digits' shape (the parameters check it)


@pytest.fixture(autouse=True)
def _x64():
    jax.config.update("jax_enable_x64", True)


def _setup(batch=12, seed=0, **options):
    cfg = load_params({"network": {"layers": LAYERS, "rho": "tanh"},
                       "dynamics": {"engine": "reference", "dtype": "float64"},
                       "learning": {"rule": "sigprop", "sigprop": options}})
    net = cfg.build_network()
    rng = np.random.default_rng(seed)
    params = init_params(net, rng, np.float64)
    for b in params.biases.values():
        b[:] = rng.normal(0.0, 0.3, size=b.shape)
    rule = make_rule(cfg, net)
    state = rule.init_state(rng, np.float64)
    x = rng.random((batch, 64))
    labels = rng.integers(0, 4, batch)  # few classes: every batch holds several samples of a class
    return cfg, net, rule, params, state, x, labels, one_hot(labels, 10, np.float64)


def _flat(rule, params, state):
    return {k: jnp.asarray(v) for k, v in {**params.trainable(rule.net), **state.learned}.items()}


OWN = {"h1": {"W_x_to_h1", "b_h1", GENERATOR}, "h2": {"W_h1_to_h2", "b_h2"}, "o": {"W_h2_to_o", "b_o"}}

_SPIKING = {"spiking": True, "time_steps": 5, "threshold": 0.5}
VARIANTS = [{}, {"prediction": "classification_layer"}, {"comparison": "l2", "loss": "l2"},
            pytest.param(_SPIKING, marks=pytest.mark.slow),
            pytest.param(_SPIKING | {"spiking_gradient": "voltage"}, marks=pytest.mark.slow),
            pytest.param(_SPIKING | {"prediction": "classification_layer"}, marks=pytest.mark.slow)]


def test_defaults_and_engine():
    cfg, net, *_ = _setup()
    assert (cfg.network.topology, cfg.network.neuron, cfg.learning.cost) == ("feedforward", "additive",
                                                                             "softmax_cross_entropy")
    opt = cfg.learning.sigprop
    assert (opt.loss, opt.comparison, opt.prediction, opt.target_generator, opt.spiking) == (
        "pred", "dot", "output_target", "learned", False)
    with pytest.raises(ParameterError, match=r"^dynamics.engine = 'jax': learning.rule = 'sigprop' .* set dynamics"):
        load_params({"network": {"layers": [64, 9, 10]}, "learning": {"rule": "sigprop"}, "dynamics": {"engine": "jax"}})
    with pytest.raises(ParameterError, match=r"learning.sigprop.comparison"):
        load_params({"network": {"layers": [64, 9, 10]}, "dynamics": {"engine": "reference"},
                     "learning": {"rule": "sigprop", "sigprop": {"comparison": "cosine"}}})


@pytest.mark.parametrize("options", VARIANTS, ids=["default", "classification_layer", "l2", "spiking", "spiking_voltage",
                                                   "spiking_classification_layer"])
def test_no_gradient_crosses_a_layer_boundary(options):
    """The Jacobian structure: layer i's loss has a nonzero gradient for layer i's own parameters
    only (S_1 belongs to h1), and perturbing a later layer's loss leaves earlier updates as they
    are. Without the stop-gradients (``local=False``) the later losses do reach earlier layers —
    so the test would catch a leak."""
    cfg, net, rule, params, state, x, labels, d = _setup(**options)
    flat = _flat(rule, params, state)

    @jax.jit
    def jacobian_rows(f):
        """Per layer, the gradient of its loss; the summed update with the later losses scaled
        by 1 and by 7; and the output loss's gradient without the stop-gradients."""
        per = {layer: jax.grad(lambda g: rule.layer_losses(g, state, x, d)[layer])(f)  # noqa: B023
               for layer in ("h1", "h2", "o")}
        scaled = [jax.grad(lambda g: sum((1.0 if k == "h1" else w) * v  # noqa: B023
                                         for k, v in rule.layer_losses(g, state, x, d).items()))(f) for w in (1.0, 7.0)]
        leak = jax.grad(lambda g: rule.layer_losses(g, state, x, d, local=False)["o"])(f)
        return per, scaled, leak

    per, (base, bent), leak = jacobian_rows(flat)
    for layer, g in per.items():
        for key, v in g.items():
            norm = float(jnp.abs(v).max())
            if key in OWN[layer]:
                assert norm > 1e-8, (layer, key)
            else:
                assert norm == 0.0, (layer, key)
    # perturb the later losses: the earlier layers' updates are bit-identical
    for key in OWN["h1"]:
        np.testing.assert_array_equal(np.asarray(base[key]), np.asarray(bent[key]))
    assert not np.allclose(np.asarray(base["W_h2_to_o"]), np.asarray(bent["W_h2_to_o"]))
    # without the stop-gradients the output's loss reaches layer 1 — except through spikes that
    # carry no derivative at all (voltage only): there the layers are separate by construction
    crossing = float(jnp.abs(leak["W_x_to_h1"]).max())
    if options.get("spiking_gradient") == "voltage":
        assert crossing == 0.0
    else:
        assert crossing > 1e-8


def _lpred_by_hand(h, t, labels, comparison="dot", tau=1.0):
    """seed 000 eq. 9 in numpy: CE of every h_n against the batch's targets t_m, the labels
    reconstructed as the samples of n's class (rows normalised)."""
    o = -(h @ t.T) if comparison == "dot" else ((h[:, None, :] - t[None, :, :]) ** 2).sum(-1)
    z = -o / tau
    logp = z - z.max(1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
    ystar = (labels[:, None] == labels[None, :]).astype(float)
    ystar /= ystar.sum(1, keepdims=True)
    return float(-(ystar * logp).sum(1).mean())


@pytest.mark.parametrize("comparison, tau", [("dot", 1.0), ("l2", 3.0)])
def test_lpred_and_the_interleaved_streams_by_hand(comparison, tau):
    cfg, net, rule, params, state, x, labels, d = _setup(comparison=comparison, temperature=tau)
    w1, w2, w3 = (params.weights[k] for k in ("x_to_h1", "h1_to_h2", "h2_to_o"))
    b1, b2, b3 = (params.biases[k] for k in ("h1", "h2", "o"))
    s = state.learned[GENERATOR]
    h1, t1 = np.tanh(x @ w1.T + b1), np.tanh(d @ s.T)  # eq. 1
    h2, t2 = np.tanh(h1 @ w2.T + b2), np.tanh(t1 @ w2.T + b2)  # eq. 2-3: the same layer for both
    ho, to = np.tanh(h2 @ w3.T + b3), np.tanh(t2 @ w3.T + b3)
    got = jax.jit(lambda f: rule.layer_losses(f, state, x, d))(_flat(rule, params, state))
    for pop, (h, t) in {"h1": (h1, t1), "h2": (h2, t2), "o": (ho, to)}.items():
        np.testing.assert_allclose(float(got[pop]), _lpred_by_hand(h, t, labels, comparison, tau), rtol=1e-12)
    # early exits (eq. 8): the nearest class target, the targets of all classes through the chain
    eye = np.eye(10)
    tc = {"h1": np.tanh(eye @ s.T)}
    tc["h2"] = np.tanh(tc["h1"] @ w2.T + b2)
    tc["o"] = np.tanh(tc["h2"] @ w3.T + b3)
    scores = rule.jitted("exit_scores")(params, state, jnp.asarray(x))
    for pop, h in {"h1": h1, "h2": h2, "o": ho}.items():
        o = -(h @ tc[pop].T) if comparison == "dot" else ((h[:, None] - tc[pop][None]) ** 2).sum(-1)
        np.testing.assert_allclose(np.asarray(scores[pop]), -o / tau, rtol=1e-10, atol=1e-12)


def test_padding_is_masked_out_of_rows_and_candidate_targets():
    cfg, net, rule, params, state, x, labels, d = _setup()
    flat = _flat(rule, params, state)
    rng = np.random.default_rng(5)
    xp = np.concatenate([x, rng.random((4, 64))])
    dp = np.concatenate([d, np.eye(10)[[0, 1, 2, 3]]])
    mask = np.r_[np.ones(len(x)), np.zeros(4)]
    a = jax.jit(lambda f: rule.layer_losses(f, state, x, d))(flat)
    b = jax.jit(lambda f: rule.layer_losses(f, state, xp, dp, mask))(flat)
    for k in a:
        np.testing.assert_allclose(float(a[k]), float(b[k]), rtol=1e-12)


@pytest.mark.parametrize("generator", ["learned", "fixed"])
def test_target_generator_is_rule_state(generator):
    cfg, net, rule, params, state, x, labels, d = _setup(target_generator=generator)
    engine = engine_from_params(cfg, net)
    trainer = Trainer(cfg, net, engine, params, 60, np.random.default_rng(1))
    s0 = (trainer.state.learned if generator == "learned" else trainer.state.fixed)[GENERATOR].copy()
    assert s0.shape == (9, 10)
    rng = np.random.default_rng(2)
    xs, ys = rng.random((60, 64)), rng.integers(0, 10, 60)
    trainer.train_epoch(xs, ys, progress=False)
    arrays, meta = trainer.state_dict()
    assert f"rule/{GENERATOR}" in arrays
    moved = not np.array_equal(arrays[f"rule/{GENERATOR}"], s0)
    assert moved == (generator == "learned")


def test_integrate_and_fire_by_hand():
    rng = np.random.default_rng(0)
    cur = rng.normal(0.4, 0.5, (6, 3, 5))
    for reset in ("zero", "subtract"):
        z, v = integrate_and_fire(jnp.asarray(cur), 1.0, reset)
        vv, zs, vs = np.zeros((3, 5)), [], []
        for c in cur:
            vv = vv + c
            s = (vv > 1.0).astype(float)
            zs.append(s), vs.append(vv.copy())
            vv = vv * (1 - s) if reset == "zero" else vv - s
        np.testing.assert_array_equal(np.asarray(z), np.array(zs))
        np.testing.assert_allclose(np.asarray(v), np.array(vs), rtol=1e-12)
    # the surrogate derivative of one step: dz/dI = 1/(1 + k|I - theta|)^2; none with "voltage"
    one = lambda i, g: integrate_and_fire(i[None, None, None], 1.0, gradient=g, slope=5.0)[0].sum()  # noqa: E731
    assert float(jax.grad(one)(jnp.asarray(0.8), "surrogate")) == pytest.approx(1 / (1 + 5 * 0.2) ** 2)
    assert float(jax.grad(one)(jnp.asarray(0.8), "voltage")) == 0.0


@pytest.mark.slow
def test_run_file_holds_exit_errors_and_spike_trains(tmp_path):
    cfg = {"network": {"layers": [64, 20, 10], "rho": "tanh"}, "dynamics": {"engine": "reference"},
           "learning": {"rule": "sigprop", "optimizer": "adam", "lr": 0.002, "batch_size": 50, "epochs": 2,
                        "sigprop": {"spiking": True, "time_steps": 3}},
           "data": {"dataset": "digits", "train_subset": 300, "test_subset": 100},
           "record": {"path": str(tmp_path / "run.h5"), "probes": 3}}
    ds = hebbsim.run(cfg, progress=False)
    assert list(ds.exit.values) == ["h1", "o"]
    assert ds.exit_error.dims == ("epoch", "exit") and ds.exit_error.attrs["units"] == "1"
    assert "long_name" in ds.exit_error.attrs
    # the last exit is the network's prediction
    np.testing.assert_allclose(ds.exit_error.sel(exit="o").values, ds.test_error.values)
    assert ds.spikes_h1.dims == ("epoch", "time_step", "probe", "h1_unit") and ds.spikes_h1.dtype == np.int8
    assert list(ds.time_step.values) == [1, 2, 3]
    assert set(np.unique(ds.spikes_h1.values)) <= {0, 1} and int(ds.spikes_h1.sum()) > 0
    # the spikes are the network's for the probe inputs, with the checkpoint's parameters and S_1
    from hebbsim.data.checkpoint import checkpoint_path, load_checkpoint
    from hebbsim.dynamics.params import Params
    from hebbsim.rules import RuleState

    arrays, _ = load_checkpoint(checkpoint_path(tmp_path / "run.h5"))
    run_cfg = load_params(cfg)
    rule = make_rule(run_cfg, run_cfg.build_network())
    params = Params({k: arrays[f"weight/{k}"] for k in ("x_to_h1", "h1_to_o")},
                    {k: arrays[f"bias/{k}"] for k in ("h1", "o")})
    state = RuleState(learned={GENERATOR: arrays[f"rule/{GENERATOR}"]})
    trains = rule.spike_trains(params, state, jnp.asarray(ds.probe_input.values, jnp.float32))
    np.testing.assert_array_equal(np.asarray(trains["h1"]), ds.spikes_h1.isel(epoch=-1).values)


@pytest.mark.slow
@pytest.mark.parametrize("example", ["digits_sigprop", "digits_sigprop_spiking"])
def test_the_digits_examples_reach_ten_percent_in_a_minute(example, tmp_path):
    import time
    from pathlib import Path

    jax.config.update("jax_enable_x64", False)  # the examples' float32, as the command line runs them
    path = Path(__file__).resolve().parents[2] / "examples" / f"{example}.toml"
    cfg = load_params(path, overrides=[f"record.path={tmp_path / 'run.h5'}"])
    assert cfg.learning.rule == "sigprop" and cfg.data.dataset == "digits"
    assert cfg.learning.sigprop.spiking == example.endswith("spiking")
    t0 = time.perf_counter()
    ds = hebbsim.run(cfg, progress=False)
    assert time.perf_counter() - t0 < 60
    assert float(ds.test_error.isel(epoch=-1)) <= 0.10
    assert float(ds.exit_error.isel(epoch=-1).max()) < 0.5  # every early exit predicts
    if cfg.learning.sigprop.spiking:
        assert int(ds.spikes_h1.isel(epoch=-1).sum()) > 0


@pytest.mark.parametrize("generator", ["learned", pytest.param("fixed", marks=pytest.mark.slow)])
def test_the_run_file_holds_fig4s_loop_alignment_of_the_discrete_rule(tmp_path, generator):
    """The target generator S_1 (classes → h1) closes the chain into seed 000's loop: the run
    file's loop_alignment holds, per epoch, each learned projection on x→h1→h2→o→(S_1)→h1
    against the product of the others (S_1 itself only when it learns), as for the loop network."""
    from hebbsim.analysis.alignment import angle
    from hebbsim.data.checkpoint import checkpoint_path, load_checkpoint

    cfg = {"network": {"layers": [64, 12, 9, 10], "rho": "tanh"}, "dynamics": {"engine": "reference"},
           "learning": {"rule": "sigprop", "optimizer": "adam", "lr": 0.003, "batch_size": 50, "epochs": 2,
                        "sigprop": {"target_generator": generator}},
           "data": {"dataset": "digits", "train_subset": 300, "test_subset": 100},
           "record": {"path": str(tmp_path / "run.h5"), "probes": 0}}
    ds = hebbsim.run(cfg, progress=False)
    arrays, _ = load_checkpoint(checkpoint_path(tmp_path / "run.h5"))
    w1, w2, s = arrays["weight/h1_to_h2"], arrays["weight/h2_to_o"], arrays[f"rule/{GENERATOR}"]
    expected = {"h1_to_h2": angle(w1.T, s @ w2), "h2_to_o": angle(w2.T, w1 @ s)}
    if generator == "learned":
        expected["o_to_h1"] = angle(s.T, w2 @ w1)
    assert sorted(ds.projection.values) == sorted(expected)
    assert ds.loop_alignment.dims == ("epoch", "projection")
    for name, value in expected.items():
        assert ds.loop_alignment.sel(projection=name).values[-1] == pytest.approx(value, abs=1e-4)
    assert ds.loop_alignment.sel(projection="h1_to_h2").values[0] != ds.loop_alignment.sel(
        projection="h1_to_h2").values[-1]  # recorded per epoch, not once


def test_dropout_drops_what_a_unit_passes_up_not_its_own_loss():
    """With ``dropout`` the batch draws a factor 0 or 1/(1 − p) per unit, sample and stream:
    a unit dropped for every sample of both streams sends nothing to the layer above (that
    layer's weights from it get no update), its own layer's loss still sees it whole (layer 1's
    update equals the one without dropout), and factors of 1 are the rule without dropout."""
    cfg, net, rule, params, state, x, labels, d = _setup(dropout=0.5)
    draws = rule.draw(np.random.default_rng(0), len(x), np.float64)
    keep = draws["keep"]
    assert set(keep) == {"h/h1", "t/h1", "h/h2", "t/h2"}
    factors = np.concatenate([v.ravel() for v in keep.values()])
    assert set(np.unique(factors)) == {0.0, 2.0} and 0.4 < (factors == 0).mean() < 0.6
    flat = _flat(rule, params, state)
    grad = jax.jit(lambda f, k: jax.grad(lambda g: sum(rule._losses(rule.streams(g, state, x, d, keep=k), d,
                                                                    None).values()))(f))
    ones = {k: np.ones_like(v) for k, v in keep.items()}
    plain = grad(flat, None)
    for key, v in grad(flat, ones).items():
        np.testing.assert_allclose(np.asarray(v), np.asarray(plain[key]), rtol=0, atol=1e-14)
    dropped = {k: v.copy() for k, v in ones.items()}
    dropped["h/h1"][:, 3] = dropped["t/h1"][:, 3] = 0.0
    g = grad(flat, dropped)
    assert float(jnp.abs(g["W_h1_to_h2"][:, 3]).max()) == 0.0
    assert float(jnp.abs(g["W_h1_to_h2"]).max()) > 1e-6
    for key in OWN["h1"]:
        np.testing.assert_array_equal(np.asarray(g[key]), np.asarray(plain[key]))
    assert not np.allclose(np.asarray(grad(flat, keep)["W_h2_to_o"]), np.asarray(plain["W_h2_to_o"]))
    with pytest.raises(ParameterError, match=r"learning.sigprop.dropout"):
        _setup(dropout=1.0)


@pytest.mark.slow
def test_dropout_resumes_bit_identically(tmp_path, assert_same_run):
    def cfg(name, epochs=2, **sigprop):
        return {"network": {"layers": [64, 16, 12, 10], "rho": "tanh"}, "dynamics": {"engine": "reference"},
                "learning": {"rule": "sigprop", "optimizer": "adam", "lr": 0.002, "batch_size": 50, "epochs": epochs,
                             "sigprop": {"prediction": "classification_layer", **sigprop}},
                "data": {"dataset": "digits", "train_subset": 300, "test_subset": 100},
                "record": {"path": str(tmp_path / f"{name}.h5"), "probes": 2, "weights_every": 1}}

    ds = hebbsim.run(cfg("full", dropout=0.3), progress=False, log=None)
    hebbsim.run(cfg("part", 1, dropout=0.3), progress=False, log=None)
    hebbsim.run(cfg("part", dropout=0.3), resume=True, progress=False, log=None)
    assert_same_run(tmp_path / "full.h5", tmp_path / "part.h5")
    assert ds.sizes["epoch"] == 2
