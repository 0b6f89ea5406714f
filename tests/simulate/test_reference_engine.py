"""The reference engine (``dynamics.engine = "reference"``): one sweep is the exact fixed point of
the network's feed-forward chain of learned projections, feedback is ignored, nudges and
networks without a chain are refused, and a run on it writes the same run file as any other."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hebbsim
from hebbsim.data.params import ParameterError, load_params
from hebbsim.dynamics import rhs
from hebbsim.dynamics.network import OUTPUT, Projection, build_network
from hebbsim.dynamics.params import init_params
from hebbsim.errors import HebbsimError
from hebbsim.simulate.engines import make_engine
from hebbsim.simulate.engines.numba_engine import NumbaEngine
from hebbsim.simulate.engines.reference_engine import ReferenceEngine


@pytest.fixture(autouse=True)
def _x64():
    jax.config.update("jax_enable_x64", True)


def _problem(topology="feedforward", rho="tanh", clip=False, leak=(0.7, 1.3, 1.0), seed=0, batch=6):
    rng = np.random.default_rng(seed)
    net = build_network([5, 7, 6, 3], topology, rho=rho, neuron="additive", clip_states=clip, leak=list(leak))
    params = init_params(net, seed, np.float64)
    for b in params.biases.values():
        b[:] = rng.normal(0.2, 0.5, size=b.shape)
    return net, params, rng.random((batch, 5))


def _by_hand(params, x, leak=(0.7, 1.3, 1.0), extra=None):
    """x → h1 → h2 → o with tanh rates, written out."""
    extra = extra or {}
    w = params.weights
    h1 = leak[0] * (x @ w["x_to_h1"].T + params.biases["h1"] + extra.get("h1", 0.0))
    h2 = leak[1] * (np.tanh(h1) @ w["h1_to_h2"].T + params.biases["h2"] + extra.get("h2", 0.0))
    o = leak[2] * (np.tanh(h2) @ w["h2_to_o"].T + params.biases["o"] + extra.get("o", 0.0))
    return {"h1": h1, "h2": h2, "o": o}


def test_one_sweep_is_the_feed_forward_pass_with_leaks_and_held_currents():
    net, params, x = _problem()
    rng = np.random.default_rng(1)
    extra = {"h2": rng.normal(size=(len(x), 6)), "o": rng.normal(size=(len(x), 3))}
    engine = ReferenceEngine(net, 0.5, np.float64)
    start = {k: rng.normal(size=v.shape) for k, v in rhs.zero_states(net, len(x)).items()}  # ignored
    out = engine.clamp(params, x, extra).relax(start, 40)
    want = _by_hand(params, x, extra=extra)
    for k in want:
        np.testing.assert_allclose(np.asarray(out.states[k]), want[k], rtol=0, atol=1e-14)
    assert out.steps == 1 and out.residual == 0.0


@pytest.mark.parametrize("topology,rho,clip", [("feedforward", "tanh", False), ("random_feedback", "sigmoid", False),
                                               ("direct_feedback", "hard_sigmoid", True)])
def test_it_is_the_fixed_point_the_euler_dynamics_reach_without_feedback(topology, rho, clip):
    """The continuous network (numba, Euler to rest) of the same learned weights without the
    fixed feedback rests where the reference engine's sweep lands — feedback is ignored, the
    clip of clip_states included."""
    net, params, x = _problem(topology, rho, clip)
    ref = ReferenceEngine(net, 0.5, np.float64).clamp(params, x).relax(rhs.zero_states(net, len(x)), 1).states
    ff = build_network([5, 7, 6, 3], "feedforward", rho=rho, neuron="additive", clip_states=clip,
                       leak=[0.7, 1.3, 1.0])
    ff_params = type(params)({p.name: params.weights[p.name] for p in ff.projections}, params.biases)
    rest = NumbaEngine(ff, 0.2, np.float64).clamp(ff_params, x).relax(
        rhs.zero_states(ff, len(x), np.float64), 100_000, tol=1e-13)
    assert rest.residual < 1e-12
    for k in rest.states:
        np.testing.assert_allclose(np.asarray(ref[k]), rest.states[k], rtol=0, atol=1e-11)
    if topology != "feedforward":  # with its feedback the continuous network rests elsewhere
        fb = NumbaEngine(net, 0.2, np.float64).clamp(params, x).relax(rhs.zero_states(net, len(x), np.float64),
                                                                      100_000, tol=1e-13).states
        assert np.max(np.abs(fb["h1"] - rest.states["h1"])) > 1e-3


def test_skip_connections_and_a_fixed_loop_are_a_feed_forward_chain():
    net = build_network([4, 5, 3], projections=[
        Projection("x", "h1"), Projection("h1", "o"), Projection("x", "o"), Projection("o", "h1", "fixed")],
        neuron="additive", rho="tanh")
    params = init_params(net, 3, np.float64)
    x = np.random.default_rng(2).random((3, 4))
    s = ReferenceEngine(net, 0.5, np.float64).clamp(params, x).relax(rhs.zero_states(net, 3), 1).states
    h1 = x @ params.weights["x_to_h1"].T
    o = np.tanh(h1) @ params.weights["h1_to_o"].T + x @ params.weights["x_to_o"].T
    np.testing.assert_allclose(np.asarray(s[OUTPUT]), o, rtol=0, atol=1e-14)


def test_networks_without_a_chain_and_nudges_are_refused_in_one_line():
    net, params, x = _problem("loop")  # a learned loop o → h1
    with pytest.raises(HebbsimError, match=r"^network: the learned projection\(s\) o_to_h1 run against") as err:
        make_engine("reference", net, 0.5, "float64")
    assert "\n" not in str(err.value)
    gated = build_network([5, 4, 3], "feedforward", neuron="gated")
    with pytest.raises(HebbsimError, match="network.neuron = 'gated'.*set network.neuron = 'additive'"):
        ReferenceEngine(gated, 0.5)
    net, params, x = _problem()
    system = ReferenceEngine(net, 0.5, np.float64).clamp(params, x)
    d = np.eye(3)[[0, 1, 2, 0, 1, 2]]
    with pytest.raises(HebbsimError, match="nudged phase asks for a nudge.*no discrete form"):
        system.relax(rhs.zero_states(net, len(x)), 10, beta=0.5, target=d, phase="nudged")

    @jax.jit
    def traced(beta):  # a traced β cannot be known to be 0: refused too
        return system.relax(rhs.zero_states(net, len(x)), 10, beta=beta, target=d).states
    with pytest.raises(HebbsimError, match="no discrete form"):
        traced(jnp.asarray(0.0))


def test_under_jit_it_reports_finiteness_and_a_divergence_is_located():
    net, params, x = _problem()
    engine = ReferenceEngine(net, 0.5, np.float64)
    params.weights["h1_to_h2"][0, 0] = np.nan

    def phase(p, xx):
        r = engine.clamp(p, xx).relax(rhs.zero_states(net, len(x)), 1)
        return r.finite, r.steps, r.residual

    finite, steps, residual = jax.jit(phase)(engine.to_device(params), jnp.asarray(x))
    assert {k: bool(v) for k, v in finite.items()} == {"h1": True, "h2": False, "o": False}
    assert int(steps) == 1 and float(residual) == 0.0
    assert engine.locate_divergence(params, rhs.zero_states(net, len(x)), x, 1) == (1, "h2")
    with pytest.raises(hebbsim.errors.DivergenceError, match="h2"):
        engine.clamp(params, x).relax(rhs.zero_states(net, len(x)), 1)


def test_parameters_steps_default_to_one_and_more_are_refused():
    base = {"network": {"layers": [64, 12, 10]}, "learning": {"rule": "bp"}, "dynamics": {"engine": "reference"}}
    cfg = load_params(base)
    assert cfg.dynamics.free_steps == 1 and cfg.phases == ("free",)
    assert load_params(cfg.model_dump(exclude_none=True)).dynamics.free_steps == 1  # a stored file reloads
    with pytest.raises(ParameterError, match=r"^dynamics.eval_steps = 30: .*one feed-forward sweep"):
        load_params(base, ["dynamics.eval_steps=30"])
    with pytest.raises(ParameterError, match=r"^learning.rule = 'ep_chl' has no discrete .* \(bp"):
        load_params(base, ["learning.rule=ep_chl"])


@pytest.mark.slow
def test_a_reference_run_writes_a_one_step_run_file_and_resumes_bit_identically(tmp_path, assert_same_run):
    p = {"network": {"layers": [64, 16, 10], "rho": "tanh"},
         "dynamics": {"engine": "reference", "dtype": "float64"},
         "learning": {"rule": "bp", "cost": "softmax_cross_entropy", "lr": 0.2, "batch_size": 10, "epochs": 2,
                      "seed": 4},
         "data": {"dataset": "digits", "train_subset": 300, "test_subset": 100},
         "record": {"path": str(tmp_path / "a.h5"), "probes": 3, "every_steps": 5, "weights_every": 1}}
    ds = hebbsim.run(p, progress=False)
    assert ds.attrs["engine"] == "reference"
    assert list(ds.phase.values) == ["free"] and list(ds.step.values) == [0, 1]
    np.testing.assert_array_equal(ds.residual.values, 0.0)
    from hebbsim.analysis import plots
    with pytest.raises(plots.NotApplicable, match="residual 0"):  # no empty log-scale plot in reports
        plots.plot_residuals(ds)
    # the recorded probe states: zeros before the sweep, the forward pass after it
    model = hebbsim.data.checkpoint.load_checkpoint(hebbsim.data.checkpoint.checkpoint_path(tmp_path / "a.h5"))[0]
    w = {k.split("/", 1)[1]: v for k, v in model.items() if k.startswith("weight/")}
    b = {k.split("/", 1)[1]: v for k, v in model.items() if k.startswith("bias/")}
    h1 = ds.probe_input.values @ w["x_to_h1"].T + b["h1"]
    o = np.tanh(h1) @ w["h1_to_o"].T + b["o"]
    np.testing.assert_array_equal(ds.state_o.values[-1, 0, 0], 0.0)
    np.testing.assert_allclose(ds.state_o.values[-1, 0, 1], o, rtol=0, atol=1e-12)
    assert ds.test_error.values[-1] < 0.5
    ds.close()
    # the same two epochs as one epoch and a resumed one
    p1 = {**p, "learning": {**p["learning"], "epochs": 1}, "record": {**p["record"], "path": str(tmp_path / "b.h5")}}
    hebbsim.run(p1, progress=False).close()
    hebbsim.run({**p1, "learning": p["learning"]}, resume=True, progress=False).close()
    assert_same_run(tmp_path / "a.h5", tmp_path / "b.h5")


def test_a_validation_split_stands_in_for_the_test_set(tmp_path):
    """data.validation = N: the last N training samples are evaluated instead of the test set
    (what the seed-002 batch size was chosen on), and are not trained on."""
    from hebbsim.data.datasets import load_dataset

    data = load_dataset("digits")
    p = {"network": {"layers": [64, 16, 10], "rho": "tanh"}, "dynamics": {"engine": "reference"},
         "learning": {"rule": "bp", "cost": "softmax_cross_entropy", "lr": 0.2, "epochs": 1},
         "data": {"dataset": "digits", "validation": 200, "train_subset": 300},
         "record": {"path": str(tmp_path / "v.h5"), "probes": 5, "probe_spacing": "first"}}
    ds = hebbsim.run(p, progress=False)
    np.testing.assert_array_equal(ds.probe_input.values, data.x_train[-200:][:5])
    assert ds.sizes["iteration"] == 15  # 300 training samples in batches of 20
    ds.close()
    with pytest.raises(HebbsimError, match=r"^data.validation = 5000: the training set holds \d+ samples"):
        hebbsim.run({**p, "data": {"dataset": "digits", "validation": 5000}}, overwrite=True, progress=False)
