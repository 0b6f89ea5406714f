"""The jax/diffrax engine is pinned to the numba engine (SPEC §6) and converges like Euler should."""

import numpy as np
import pytest

import hebbsim
from hebbsim.data.datasets import load_dataset
from hebbsim.data.params import ParameterError, load_params
from hebbsim.dynamics import rhs
from hebbsim.dynamics.network import TOPOLOGIES, build_network
from hebbsim.dynamics.params import init_params
from hebbsim.errors import DivergenceError, HebbsimError
from hebbsim.simulate.engines import make_engine
from hebbsim.simulate.engines.jax_engine import JaxEngine
from hebbsim.simulate.engines.numba_engine import NumbaEngine
from hebbsim.simulate.trainer import Trainer


def _problem(net, rng, batch=7, dtype=np.float64):
    params = init_params(net, 0, np.float64)
    for b in params.biases.values():
        b[:] = rng.normal(scale=0.3, size=b.shape)
    x = rng.random((batch, net.sizes["x"]))
    d = np.eye(net.sizes["o"])[np.arange(batch) % net.sizes["o"]]
    return params.astype(dtype), x.astype(dtype), d.astype(dtype)


CASES = [(t, "gated", "hard_sigmoid", True) for t in TOPOLOGIES] + [
    ("loop", "gated", "sigmoid4", False), ("symmetric", "additive", "tanh", False), ("loop", "additive", "sigmoid", True),
]
# the default run: every other case (each compiles a kernel and a jax program); CI all
CASES = [c if i % 2 == 0 else pytest.param(*c, marks=pytest.mark.slow) for i, c in enumerate(CASES)]


@pytest.mark.parametrize("topology,neuron,rho,clip", CASES)
def test_free_and_nudged_states_agree_with_numba_float64(topology, neuron, rho, clip, rng):
    net = build_network([6, 5, 4, 3], topology, rho=rho, neuron=neuron, clip_states=clip, leak=[1.0, 0.7, 1.3])
    params, x, d = _problem(net, rng)
    s0 = rhs.zero_states(net, len(x), np.float64)
    a = NumbaEngine(net, 0.3, np.float64).clamp(params, x)
    b = JaxEngine(net, 0.3, "float64").clamp(params, x)
    fa, fb = a.relax(s0, 30), b.relax(s0, 30)
    na = a.relax(fa.states, 10, beta=0.7, target=d, phase="nudged")
    nb = b.relax(fb.states, 10, beta=0.7, target=d, phase="nudged")
    for ra, rb in ((fa, fb), (na, nb)):
        assert ra.steps == rb.steps
        for k in ra.states:
            np.testing.assert_allclose(np.asarray(rb.states[k]), ra.states[k], rtol=0, atol=1e-5)  # SPEC §6
            np.testing.assert_allclose(np.asarray(rb.states[k]), ra.states[k], rtol=0, atol=1e-12)  # measured ~1e-16
        assert rb.residual == pytest.approx(ra.residual, rel=1e-9)


def test_free_states_agree_with_numba_float32(rng):
    net = build_network([6, 5, 4, 3], "loop", clip_states=True)
    params, x, d = _problem(net, rng, dtype=np.float32)
    s0 = rhs.zero_states(net, len(x), np.float32)
    fa = NumbaEngine(net, 0.5, np.float32).clamp(params, x).relax(s0, 40)
    fb = JaxEngine(net, 0.5, "float32").clamp(params, x).relax(s0, 40)
    for k in fa.states:
        assert np.asarray(fb.states[k]).dtype == np.float32
        np.testing.assert_allclose(np.asarray(fb.states[k]), fa.states[k], rtol=0, atol=1e-3)


def _trainer(engine_name, cfg, net, n_train):
    rng = np.random.default_rng(5)
    params = init_params(net, rng, np.dtype(cfg.dynamics.dtype))
    engine = make_engine(engine_name, net, cfg.dynamics.dt, cfg.dynamics.dtype)
    return Trainer(cfg, net, engine, params, n_train, rng)


@pytest.mark.parametrize("rule,optimizer", [("ep_chl", "sgd"), ("ep_chl_classic", "adam")])
def test_one_epoch_gives_the_same_weights_on_both_engines(rule, optimizer):
    cfg = load_params({
        "network": {"layers": [64, 24, 10], "topology": "loop", "clip_states": True},
        "dynamics": {"dt": 0.5, "free_steps": 15, "nudge_steps": 5, "beta": 0.5, "dtype": "float64",
                     "random_sign_beta": True, "persistent_states": True, "symmetric_nudging": True},
        "learning": {"rule": rule, "optimizer": optimizer, "lr": 0.05 if optimizer == "sgd" else 0.002,
                     "batch_size": 16, "momentum": 0.0},
        "data": {"dataset": "digits"},
    })
    net = cfg.build_network()
    data = load_dataset("digits")
    x, y = data.x_train[:120], data.y_train[:120]  # 7 full batches and a short one of 8
    a, b = _trainer("numba", cfg, net, len(x)), _trainer("jax", cfg, net, len(x))
    sa, sb = a.train_epoch(x, y, progress=False), b.train_epoch(x, y, progress=False)
    assert sa.error == sb.error and sa.loss == pytest.approx(sb.loss, rel=1e-9)
    wa, wb = a.state_dict()[0], b.state_dict()[0]
    assert set(wa) == set(wb)
    moved = 0.0
    for k in wa:
        np.testing.assert_allclose(wb[k], wa[k], rtol=0, atol=1e-4, err_msg=k)  # SPEC §6
        np.testing.assert_allclose(wb[k], wa[k], rtol=0, atol=1e-10, err_msg=k)  # measured ~1e-15
    for name, w in a.params.weights.items():
        moved = max(moved, np.abs(w - init_params(net, np.random.default_rng(5), np.float64).weights[name]).max())
    assert moved > 1e-3  # the epoch did train


def test_the_training_step_is_compiled_once_per_run():
    """... a learning-rate schedule included: its factor is data, not a constant of the program."""
    cfg = load_params({
        "network": {"layers": [64, 16, 10], "topology": "symmetric"},
        "dynamics": {"engine": "jax", "free_steps": 8, "nudge_steps": 3, "random_sign_beta": True},
        "learning": {"batch_size": 32, "lr_schedule": "cosine", "epochs": 3},
        "data": {"dataset": "digits"},
    })
    net = cfg.build_network()
    data = load_dataset("digits")
    x, y = data.x_train[:150].astype(np.float32), data.y_train[:150]  # last batch: 22 samples
    tr = _trainer("jax", cfg, net, len(x))
    for epoch in (1, 2, 3):
        tr.train_epoch(x, y, progress=False, epoch=epoch)
    assert tr.n_traces == 1
    assert float(tr.optimizer.state["lr_scale"]) == pytest.approx(0.25)  # cosine at 3 of 3


@pytest.mark.slow
def test_euler_error_against_adaptive_diffrax_halves_with_dt(rng):
    net = build_network([6, 5, 4, 3], "loop", rho="sigmoid", neuron="gated")
    params, x, d = _problem(net, rng)
    for w in params.weights.values():
        w *= 3.0  # strong coupling: a curved trajectory, not a near-linear decay
    s0 = rhs.zero_states(net, len(x), np.float64)
    horizon = 2.0
    ref = JaxEngine(net, 0.1, "float64", solver="tsit5", rtol=1e-11, atol=1e-12).clamp(params, x).relax(
        s0, round(horizon / 0.1))
    errors = []
    for dt in (0.1, 0.05, 0.025, 0.0125):
        out = JaxEngine(net, dt, "float64").clamp(params, x).relax(s0, round(horizon / dt))
        errors.append(max(np.abs(np.asarray(out.states[k]) - np.asarray(ref.states[k])).max() for k in s0))
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert np.all((ratios > 1.8) & (ratios < 2.2)), (errors, ratios)  # first order: the error halves


@pytest.mark.slow
def test_dopri5_and_tsit5_agree(rng):
    net = build_network([6, 5, 3], "symmetric", rho="sigmoid")
    params, x, d = _problem(net, rng)
    s0 = rhs.zero_states(net, len(x), np.float64)
    a = JaxEngine(net, 0.5, "float64", solver="tsit5", rtol=1e-10, atol=1e-12).clamp(params, x).relax(s0, 20)
    b = JaxEngine(net, 0.5, "float64", solver="dopri5", rtol=1e-10, atol=1e-12).clamp(params, x).relax(s0, 20)
    for k in s0:
        np.testing.assert_allclose(np.asarray(a.states[k]), np.asarray(b.states[k]), atol=1e-8)
    assert 0 < a.steps < 200  # adaptive: far fewer steps than Euler would need


def test_tolerance_stops_each_sample_at_its_fixed_point(rng):
    net = build_network([6, 5, 3], "symmetric", rho="sigmoid")
    params, x, d = _problem(net, rng)
    for solver in ("euler", "tsit5"):
        out = JaxEngine(net, 0.2, "float64", solver=solver, rtol=1e-10, atol=1e-12).clamp(params, x).relax(
            rhs.zero_states(net, 7, np.float64), 10_000, tol=1e-9)
        assert out.steps < (10_000 if solver == "euler" else 1_000)
        ds = rhs.drift(net, params, {k: np.asarray(v) for k, v in out.states.items()}, x)
        assert max(np.abs(v).max() for v in ds.values()) < 1e-8


def test_non_finite_state_names_phase_step_population(rng):
    net = build_network([6, 5, 3], "loop", rho="tanh", neuron="additive")
    params, x, d = _problem(net, rng, dtype=np.float32)
    params.weights["h1_to_o"][:] = 3e38
    with pytest.raises(DivergenceError) as err:
        JaxEngine(net, 0.5, "float32").clamp(params, x).relax(rhs.zero_states(net, 7), 50, phase="nudged")
    assert (err.value.phase, err.value.population) == ("nudged", "o")
    assert err.value.step in (1, 2, 3)  # when float32 overflows depends on the summation order


def test_divergence_during_compiled_training_stops_with_a_named_error():
    cfg = load_params({
        "network": {"layers": [64, 8, 10], "topology": "loop", "rho": "tanh", "neuron": "additive"},
        "dynamics": {"engine": "jax", "dt": 0.5, "free_steps": 10, "nudge_steps": 3},
        "learning": {"batch_size": 10},
        "data": {"dataset": "digits"},
    })
    net = cfg.build_network()
    data = load_dataset("digits")
    tr = _trainer("jax", cfg, net, 50)
    tr.params.weights["h1_to_o"][:] = 3e38  # the current into o overflows float32 once h1 fires
    with pytest.raises(DivergenceError) as err:
        tr.train_epoch(data.x_train[:50].astype(np.float32), data.y_train[:50], progress=False)
    assert (err.value.phase, err.value.population) == ("free", "o") and err.value.step in (1, 2)


def test_adaptive_solver_refuses_clipped_states_and_the_numba_engine():
    base = {"network": {"layers": [64, 8, 10], "clip_states": True}, "data": {"dataset": "digits"},
            "dynamics": {"engine": "jax", "solver": "tsit5"}}
    with pytest.raises(ParameterError, match="clip_states"):
        load_params(base)
    with pytest.raises(ParameterError, match="needs dynamics.engine = 'jax'"):
        load_params(base, ["network.clip_states=false", "dynamics.engine=\"numba\""])
    with pytest.raises(HebbsimError, match="clip_states"):
        JaxEngine(build_network([4, 3, 2], clip_states=True), 0.5, solver="dopri5")


@pytest.mark.slow
def test_a_run_on_the_jax_engine_learns_like_numba(tmp_path):
    p = {
        "network": {"layers": [64, 32, 10], "topology": "loop", "clip_states": True},
        "dynamics": {"dt": 0.5, "free_steps": 20, "nudge_steps": 6, "beta": 1.0, "dtype": "float64"},
        "learning": {"lr": [0.1, 0.05, 0.05], "batch_size": 10, "epochs": 3, "seed": 3},
        "data": {"dataset": "digits", "train_subset": 300, "test_subset": 100},
    }
    runs = {}
    for engine in ("numba", "jax"):
        p["record"] = {"path": str(tmp_path / f"{engine}.h5")}
        p["dynamics"]["engine"] = engine
        runs[engine] = hebbsim.run(p, progress=False, log=None)
    assert runs["jax"].attrs["engine"] == "jax"
    np.testing.assert_allclose(runs["jax"].test_error.values, runs["numba"].test_error.values, atol=0)
    np.testing.assert_allclose(runs["jax"].train_loss.values, runs["numba"].train_loss.values, rtol=1e-9)
    loss = runs["jax"].train_loss.values
    assert loss[-1] < 0.9 * loss[0], loss  # and it learns


@pytest.mark.parametrize("dtype,weight", [("float64", 1e308), ("float32", 3e38)])
def test_both_engines_name_the_same_step_and_population_of_a_divergence(dtype, weight):
    """Steps are counted from 1 on both engines (measured: step 10 in float64, 3 in float32)."""
    net = build_network([6, 5, 3], "loop", rho="tanh", neuron="additive")
    params = init_params(net, 0, np.dtype(dtype))
    params.weights["h1_to_o"][:] = weight
    x = np.random.default_rng(0).random((7, 6)).astype(dtype)
    found = []
    for engine in (NumbaEngine(net, 0.5, dtype), JaxEngine(net, 0.5, dtype)):
        with pytest.raises(DivergenceError) as err:
            engine.clamp(params, x).relax(rhs.zero_states(net, 7, dtype), 50, phase="free")
        found.append((err.value.step, err.value.population))
    assert found[0] == found[1] and found[0][0] > 1, found
