"""Noisy dynamics on both engines (docs/engines.md, Noise): the numba kernel is the reference
Euler–Maruyama map, the jax engine's diffrax SDE takes the same increments, Euler–Maruyama
converges with strong order 1 (additive noise), noise draws come from their own stream and
resume bit-identically, and without noise everything is what it was before noise existed."""

import hashlib

import numpy as np
import pytest

import hebbsim
from hebbsim.data.checkpoint import checkpoint_path, load_checkpoint
from hebbsim.data.datasets import load_dataset
from hebbsim.data.params import load_params
from hebbsim.dynamics import noise as nz
from hebbsim.dynamics import rhs
from hebbsim.dynamics.network import build_network
from hebbsim.dynamics.params import init_params
from hebbsim.simulate.engines import engine_from_params
from hebbsim.simulate.engines.jax_engine import BrownianTrees, JaxEngine
from hebbsim.simulate.engines.numba_engine import NumbaEngine
from hebbsim.simulate.trainer import Trainer

DT = 0.3


def _problem(rho="sigmoid", neuron="additive", clip=False, cost="state_mse", batch=6, scale=1.0):
    rng = np.random.default_rng(0)
    net = build_network([5, 6, 4, 3], "loop", rho=rho, neuron=neuron, clip_states=clip, cost=cost,
                        leak=[1.0, 0.7, 1.3])
    params = init_params(net, 0, np.float64)
    for w in params.weights.values():
        w *= scale
    for b in params.biases.values():
        b[:] = rng.normal(0.3, 0.4, size=b.shape)
    x = rng.random((batch, 5))
    d = np.eye(3)[np.arange(batch) % 3]
    return net, params, x, d


def _model(kind, populations=("h1", "h2")):
    return nz.NoiseModel(kind, 0.5, 0.8, populations)


def _reference(net, params, x, s, model, noise, n, beta=0.0, target=None):
    """The reference map: :func:`hebbsim.dynamics.noise.step_kicks` + :func:`rhs.noisy_euler_step`."""
    xi = noise.xi0
    for k in range(n):
        kicks, xi = nz.step_kicks(model, DT, {p: v[k] for p, v in noise.z.items()}, xi)
        s = rhs.noisy_euler_step(net, params, s, x, DT, kicks, beta, target)
    return s


BUILDS = [("hard_sigmoid", "gated", True, "state_mse", ("h1", "h2")), ("sigmoid", "additive", False, "rate_mse", ("h2", "o")),
          ("tanh", "gated", False, "state_mse", ("h1",))]
# the default run: every build and every kind once (each case compiles a kernel or a jax program); CI all
KERNEL_CASES = [pytest.param(kind, *b, marks=() if (k + i) % 2 == 0 else pytest.mark.slow)
                for i, kind in enumerate(("white", "ou")) for k, b in enumerate(BUILDS)]
ENGINE_CASES = [c for c in KERNEL_CASES if "tanh" not in c.values]


@pytest.mark.parametrize("kind,rho,neuron,clip,cost,pops", KERNEL_CASES)
def test_noisy_kernel_is_the_reference_euler_maruyama_map(kind, rho, neuron, clip, cost, pops):
    net, params, x, d = _problem(rho, neuron, clip, cost)
    model = _model(kind, pops)
    noise = nz.draw_phase(np.random.default_rng(1), model, net.sizes, 25, len(x), np.float64)
    s0 = rhs.zero_states(net, len(x), np.float64)
    ref = _reference(net, params, x, s0, model, noise, 25, beta=0.8, target=d)
    out = NumbaEngine(net, DT, np.float64, noise=model).clamp(params, x).relax(s0, 25, beta=0.8, target=d, noise=noise)
    clean = _reference(net, params, x, s0, model, noise._replace(z={p: 0 * v for p, v in noise.z.items()},
                                                                  xi0=None if noise.xi0 is None else
                                                                  {p: 0 * v for p, v in noise.xi0.items()}), 25,
                       beta=0.8, target=d)
    assert max(np.abs(ref[k] - clean[k]).max() for k in ref) > 0.05  # the noise does move the states
    for k in ref:
        np.testing.assert_allclose(out.states[k], ref[k], rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind,rho,neuron,clip,cost,pops", ENGINE_CASES)
def test_numba_and_jax_agree_on_the_same_increments_in_float64(kind, rho, neuron, clip, cost, pops):
    net, params, x, d = _problem(rho, neuron, clip, cost)
    model = _model(kind, pops)
    rng = np.random.default_rng(2)
    free_noise = nz.draw_phase(rng, model, net.sizes, 30, len(x), np.float64)
    nudge_noise = nz.draw_phase(rng, model, net.sizes, 10, len(x), np.float64)
    s0 = rhs.zero_states(net, len(x), np.float64)
    a = NumbaEngine(net, DT, np.float64, noise=model).clamp(params, x)
    b = JaxEngine(net, DT, "float64", noise=model).clamp(params, x)
    fa, fb = a.relax(s0, 30, noise=free_noise), b.relax(s0, 30, noise=free_noise)
    na = a.relax(fa.states, 10, beta=0.7, target=d, phase="nudged", noise=nudge_noise)
    nb = b.relax(fb.states, 10, beta=0.7, target=d, phase="nudged", noise=nudge_noise)
    for ra, rb in ((fa, fb), (na, nb)):
        assert ra.steps == rb.steps
        for k in ra.states:
            np.testing.assert_allclose(np.asarray(rb.states[k]), ra.states[k], rtol=0, atol=1e-10)  # measured ~1e-16
        assert rb.residual == pytest.approx(ra.residual, rel=1e-9)


def test_clean_phases_of_a_noisy_engine_are_those_of_a_noise_free_engine():
    net, params, x, d = _problem("hard_sigmoid", "gated", True)
    s0 = rhs.zero_states(net, len(x), np.float64)
    for make in (lambda m: NumbaEngine(net, DT, np.float64, noise=m), lambda m: JaxEngine(net, DT, "float64", noise=m)):
        plain = make(None).clamp(params, x).relax(s0, 20, beta=0.5, target=d)
        noisy_engine = make(_model("ou")).clamp(params, x).relax(s0, 20, beta=0.5, target=d)
        for k in s0:
            np.testing.assert_array_equal(np.asarray(noisy_engine.states[k]), np.asarray(plain.states[k]))


def test_relax_refuses_noise_it_cannot_integrate():
    net, params, x, d = _problem()
    model = _model("white")
    noise = nz.draw_phase(np.random.default_rng(0), model, net.sizes, 5, len(x), np.float64)
    s0 = rhs.zero_states(net, len(x), np.float64)
    with pytest.raises(ValueError, match="without a noise model"):
        NumbaEngine(net, DT, np.float64).clamp(params, x).relax(s0, 5, noise=noise)
    system = NumbaEngine(net, DT, np.float64, noise=model).clamp(params, x)
    with pytest.raises(ValueError, match="never come to rest"):
        system.relax(s0, 5, tol=1e-3, noise=noise)
    with pytest.raises(ValueError, match=r"expected increments of shape \(>= 6, 6, 6\), got \(5, 6, 6\)"):
        system.relax(s0, 6, noise=noise)
    with pytest.raises(ValueError, match="needs xi0"):
        NumbaEngine(net, DT, np.float64, noise=_model("ou")).clamp(params, x).relax(s0, 5, noise=noise)


# -- strong order ------------------------------------------------------------------------------
HORIZON, COARSE = 1.6, (0.2, 0.1, 0.05, 0.025)


def _strong_errors(kind, fine_z, reference, net, params, x, xi0, fine_dt):
    """RMS error at t = HORIZON of the numba engine at each coarse step, on the Brownian path
    whose increments on the fine grid are ``fine_z`` (a coarse increment sums its fine ones)."""
    model = _model(kind)
    s0 = rhs.zero_states(net, len(x), np.float64)
    errors = []
    for h in COARSE:
        m = round(h / fine_dt)
        z = {p: v.reshape(-1, m, *v.shape[1:]).sum(axis=1) / np.sqrt(m) for p, v in fine_z.items()}
        out = NumbaEngine(net, h, np.float64, noise=model).clamp(params, x).relax(
            s0, round(HORIZON / h), noise=nz.PhaseNoise(z, xi0))
        errors.append(np.sqrt(np.mean(np.concatenate(
            [(out.states[k] - np.asarray(reference.states[k])).ravel() ** 2 for k in s0]))))
    return np.array(errors)


def _order(errors) -> float:
    return float(np.polyfit(np.log(COARSE), np.log(errors), 1)[0])


def _strong_problem(kind, batch=32):
    net, params, x, _ = _problem("sigmoid", "additive", batch=batch, scale=2.0)  # curved drift: coupled sigmoid units
    rng = np.random.default_rng(4)
    model = _model(kind)
    xi0 = ({p: model.sigma * rng.standard_normal((batch, net.sizes[p])) for p in model.populations}
           if kind == "ou" else None)
    return net, params, x, model, xi0, rng


@pytest.mark.parametrize("kind", ["white", "ou"])
def test_euler_maruyama_converges_with_strong_order_one_against_a_fine_diffrax_solve(kind):
    """Additive noise: Euler–Maruyama is Milstein's scheme, strong order 1 (order 1/2 would
    halve the error only every fourth refinement). The reference is the jax engine's diffrax
    SDE at dt/64 on the same fine increments."""
    net, params, x, model, xi0, rng = _strong_problem(kind)
    fine_dt = COARSE[0] / 64
    n = round(HORIZON / fine_dt)
    fine_z = {p: rng.standard_normal((n, len(x), net.sizes[p])) for p in model.populations}
    ref = JaxEngine(net, fine_dt, "float64", noise=model).clamp(params, x).relax(
        rhs.zero_states(net, len(x), np.float64), n, noise=nz.PhaseNoise(fine_z, xi0))
    errors = _strong_errors(kind, fine_z, ref, net, params, x, xi0, fine_dt)
    assert 0.85 < _order(errors) < 1.25, errors  # measured 1.08 (white), 1.09 (ou)
    assert np.all(errors[:-1] / errors[1:] > 1.7), errors


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["white", "ou"])
def test_strong_order_one_on_a_virtual_brownian_tree(kind):
    """The same on a ``diffrax.VirtualBrownianTree`` path: the jax engine's reference solve
    queries the trees inside ``diffeqsolve`` (``ControlTerm(..., VirtualBrownianTree)``), the numba
    engine gets their increments; at the reference's own step the two agree to rounding."""
    import jax

    net, params, x, model, xi0, _ = _strong_problem(kind)
    fine_dt = COARSE[0] / 128
    n = round(HORIZON / fine_dt)
    trees = BrownianTrees(jax.random.split(jax.random.key(3), len(x)), tuple((p, net.sizes[p]) for p in model.populations),
                          HORIZON, fine_dt / 4, "float64")
    s0 = rhs.zero_states(net, len(x), np.float64)
    ref = JaxEngine(net, fine_dt, "float64", noise=model).clamp(params, x).relax(s0, n, noise=nz.PhaseNoise(trees, xi0))
    fine_z = trees.increments(n, fine_dt)
    same = NumbaEngine(net, fine_dt, np.float64, noise=model).clamp(params, x).relax(
        s0, n, noise=nz.PhaseNoise(fine_z, xi0))
    for k in s0:
        np.testing.assert_allclose(same.states[k], np.asarray(ref.states[k]), rtol=0, atol=1e-10)  # measured ~1e-14
    errors = _strong_errors(kind, fine_z, ref, net, params, x, xi0, fine_dt)
    assert 0.85 < _order(errors) < 1.25, errors  # measured 1.06 (white and ou)


# -- training ----------------------------------------------------------------------------------
def _noisy_cfg(engine, kind, rule="ep_chl", topology="loop", **noise):
    return load_params({
        "network": {"layers": [64, 12, 10], "topology": topology, "clip_states": topology == "loop"},
        "dynamics": {"engine": engine, "dt": 0.5, "free_steps": 12, "nudge_steps": 4, "dtype": "float64",
                     "random_sign_beta": True, "persistent_states": True, "symmetric_nudging": True,
                     "noise": {"kind": kind, **noise} if kind != "none" else {}},
        "learning": {"rule": rule, "batch_size": 16, "seed": 7, "optimizer": "adam", "lr": 0.003},
        "data": {"dataset": "digits"}})


def _epoch(cfg, n=100):
    net = cfg.build_network()
    rng = np.random.default_rng(cfg.learning.seed)
    params = init_params(net, rng, np.dtype(cfg.dynamics.dtype))
    trainer = Trainer(cfg, net, engine_from_params(cfg, net), params, n, rng)
    data = load_dataset("digits")
    trainer.train_epoch(data.x_train[:n], data.y_train[:n], progress=False)  # 6 batches and a short one of 4
    return trainer.state_dict()


@pytest.mark.slow
@pytest.mark.parametrize("kind,rule,topology", [("white", "ep_chl", "loop"),
                                                pytest.param("ou", "ep_chl_classic", "symmetric", marks=pytest.mark.slow)])
def test_a_noisy_epoch_is_the_same_on_both_engines_and_shifts_no_other_draw(kind, rule, topology):
    (wa, meta_a), (wb, meta_b) = (_epoch(_noisy_cfg(e, kind, rule, topology, sigma=0.2, tau=2.0)) for e in ("numba", "jax"))
    for k in wa:
        np.testing.assert_allclose(wb[k], wa[k], rtol=0, atol=1e-10, err_msg=k)  # measured ~1e-15
    assert meta_a == meta_b and set(meta_a) == {"rng", "noise_rng"}
    clean, clean_meta = _epoch(_noisy_cfg("numba", "none", rule, topology))
    assert clean_meta["rng"] == meta_a["rng"]  # the run's generator drew exactly what it draws without noise
    assert max(np.abs(wa[k] - clean[k]).max() for k in wa if k.startswith("weight/")) > 1e-4  # the noise mattered


def test_resume_with_noise_is_bit_identical(tiny_run, tmp_path, assert_same_run):
    noisy = dict(dynamics__noise={"kind": "ou", "sigma": 0.05, "tau": 1.5, "seed": 4},
                 dynamics__persistent_states=True, learning__epochs=2, record__weights_every=1)
    full = tiny_run("full", **noisy)
    hebbsim.run(full, progress=False, log=None)
    part = tiny_run("part", **noisy)
    hebbsim.run(part, ["learning.epochs=1"], progress=False, log=None)
    hebbsim.run(part, resume=True, progress=False, log=None)
    assert_same_run(full["record"]["path"], part["record"]["path"])
    _, meta = load_checkpoint(checkpoint_path(full["record"]["path"]))
    assert "noise_rng" in meta["trainer"]
    other = tiny_run("other", **{**noisy, "dynamics__noise": {**noisy["dynamics__noise"], "seed": 5}})
    ds = hebbsim.run(other, progress=False, log=None)
    assert ds.train_loss.values[-1] != hebbsim.open_run(full["record"]["path"]).train_loss.values[-1]


# -- noise off ---------------------------------------------------------------------------------
# Digests of the weights after one epoch, computed on main at c8d0bf6 (before noise existed) on
# x86-64 (numpy 2.4 / OpenBLAS, jax 0.10.2) with this very configuration: (sha256[:16], sum).
MAIN_C8D0BF6 = {
    "numba_float32_ep_chl": {
        "bias/h1": ("8cf5ee3710979cb8", -0.042704942577984184), "bias/o": ("6075083dbf1c2e4a", -0.1583014238276519),
        "weight/h1_to_o": ("f6fb7dd88ee07faa", -3.9935378208756447),
        "weight/o_to_h1": ("85674515743a5bbf", -0.0673674838617444),
        "weight/x_to_h1": ("3af05d839230db1a", -2.1440182251972146)},
    "numba_float64_fg": {
        "bias/h1": ("f112f72696db97a5", 0.0023864375259473798), "bias/o": ("37273a2540c104d6", -0.19850567646831163),
        "weight/h1_to_o": ("52c28ef6e57cbbc1", -4.703396744525038),
        "weight/x_to_h1": ("e570ab998181a7ac", -1.2686230416050501)},
    "jax_float64_ep_chl_classic": {
        "bias/h1": ("ea346a4cc784a539", -0.1104212521566222), "bias/o": ("28f84b12ab98f3db", 0.02720465798217205),
        "weight/h1_to_o": ("df3766c405970446", -3.3594328956261226),
        "weight/x_to_h1": ("b645ef6778002e5a", -6.912990066382994)},
}
CASES = {
    "numba_float32_ep_chl": {
        "network": {"layers": [64, 12, 10], "topology": "loop", "clip_states": True},
        "dynamics": {"engine": "numba", "dt": 0.5, "free_steps": 12, "nudge_steps": 4, "beta": 0.5, "dtype": "float32",
                     "random_sign_beta": True, "persistent_states": True, "symmetric_nudging": True},
        "learning": {"rule": "ep_chl", "lr": 0.05, "batch_size": 16, "seed": 7}, "data": {"dataset": "digits"}},
    "numba_float64_fg": {
        "network": {"layers": [64, 12, 10], "topology": "feedforward", "rho": "sigmoid"},
        "dynamics": {"engine": "numba", "dt": 0.5, "free_steps": 12, "dtype": "float64"},
        "learning": {"rule": "forward_gradient", "lr": 0.05, "batch_size": 16, "seed": 7},
        "data": {"dataset": "digits"}},
    "jax_float64_ep_chl_classic": {
        "network": {"layers": [64, 12, 10], "topology": "symmetric", "rho": "sigmoid", "neuron": "additive"},
        "dynamics": {"engine": "jax", "dt": 0.5, "free_steps": 12, "nudge_steps": 4, "dtype": "float64"},
        "learning": {"rule": "ep_chl_classic", "optimizer": "adam", "lr": 0.002, "batch_size": 16, "seed": 7},
        "data": {"dataset": "digits"}},
}


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c != "numba_float32_ep_chl" else c for c in CASES])
def test_noise_off_is_the_result_of_main_bit_for_bit(case):
    """With ``[dynamics.noise]`` absent (and with ``kind = "none"``) one epoch gives the weights
    main gave before noise existed, to the last bit. (A different BLAS or CPU can round
    differently: the sums tell such a machine, close to 1e-12, from a changed computation.)"""
    for cfg in (load_params(CASES[case]), load_params(CASES[case], ["dynamics.noise.kind='none'"])):
        net = cfg.build_network()
        rng = np.random.default_rng(cfg.learning.seed)
        dtype = np.dtype(cfg.dynamics.dtype)
        params = init_params(net, rng, dtype)
        trainer = Trainer(cfg, net, engine_from_params(cfg, net), params, 100, rng)
        data = load_dataset("digits")
        trainer.train_epoch(data.x_train[:100].astype(dtype), data.y_train[:100], progress=False)
        arrays, meta = trainer.state_dict()
        assert set(meta) == {"rng"}
        for key, (digest, total) in MAIN_C8D0BF6[case].items():
            a = np.ascontiguousarray(arrays[key])
            assert float(a.astype(np.float64).sum()) == pytest.approx(total, rel=1e-9, abs=1e-12), key
            assert hashlib.sha256(a.tobytes()).hexdigest()[:16] == digest, key
