"""Noise on the drive (hebbsim.dynamics.noise, docs/model.md Noise): the stationary statistics the
module's docstring derives, the noise stream and the ``[dynamics.noise]`` table."""

import numpy as np
import pytest
import tomli_w

from hebbsim.data.params import ParameterError, load_params
from hebbsim.dynamics import noise as nz
from hebbsim.dynamics.network import build_network
from hebbsim.dynamics.params import init_params
from hebbsim.simulate.cli import main
from hebbsim.simulate.engines.numba_engine import NumbaEngine

UNITS, BATCH = 2000, 8  # 16 000 independent leaky units: the sample variance to ~1.1 % (one s.d.)


def _leaky_units(leak: float, h: float, model: nz.NoiseModel):
    """``UNITS`` additive neurons with zero weights and bias: each is ds = −s/r dt + noise."""
    net = build_network([1, UNITS, 1], "feedforward", neuron="additive", rho="tanh", leak=leak)
    params = init_params(net, 0, np.float64)
    for a in list(params.weights.values()) + list(params.biases.values()):
        a[:] = 0.0
    engine = NumbaEngine(net, h, np.float64, noise=model)
    return net, engine.clamp(params, np.zeros((BATCH, 1)))


def _stationary_sample(kind: str, sigma: float, leak: float, tau: float, h: float, seed: int = 0, chunk: int = 100):
    """The hidden states after 8 leak times (or 8 τ) from zero: a sample of the stationary law.
    Integrated in phases of ``chunk`` steps (bounded memory); the OU current of one phase
    continues into the next (its last value, :func:`ou_currents`, is the next ``xi0``)."""
    model = nz.NoiseModel(kind, sigma, tau, ("h1",))
    net, system = _leaky_units(leak, h, model)
    rng = nz.noise_generator(seed)
    s = {k: np.zeros((BATCH, size)) for k, size in (("h1", UNITS), ("o", 1))}
    xi = None
    for _ in range(int(np.ceil(8 * max(leak, tau) / h / chunk))):
        noise = nz.draw_phase(rng, model, net.sizes, chunk, BATCH, np.float64)
        if xi is not None:
            noise = noise._replace(xi0=xi)
        s = system.relax(s, chunk, noise=noise).states
        if kind == "ou":
            xi = {"h1": nz.ou_currents(model, h, noise)["h1"][-1]}
    return s["h1"]


@pytest.mark.parametrize("kind,tau", [("white", 1.0), ("ou", 0.5), ("ou", 3.0)])
def test_stationary_variance_of_a_leaky_unit_matches_the_continuous_formula(kind, tau):
    sigma, leak, h = 0.7, 1.0, 0.02
    s = _stationary_sample(kind, sigma, leak, tau, h)
    want = nz.stationary_variance(kind, sigma, leak, tau)  # σ²r/2, σ²r²τ/(r + τ)
    assert abs(s.mean()) < 4 * np.sqrt(want / s.size)
    assert s.var() == pytest.approx(want, rel=0.04)  # 3.6 sampling s.d.; the O(h) bias of the scheme is < 1 %


@pytest.mark.parametrize("kind", ["white", "ou"])
def test_at_a_coarse_step_the_variance_is_the_schemes_not_the_continuous_one(kind):
    """At h = r/2 the scheme's variance is far from the ODE's (white: 4/3 of it) and exactly what
    its recursion predicts: the kernel integrates the documented scheme."""
    sigma, leak, tau, h = 0.7, 1.0, 1.0, 0.5
    s = _stationary_sample(kind, sigma, leak, tau, h, seed=1)
    scheme = nz.scheme_stationary_variance(kind, sigma, leak, h, tau)
    assert abs(scheme / nz.stationary_variance(kind, sigma, leak, tau) - 1) > 0.1
    assert s.var() == pytest.approx(scheme, rel=0.04)


def test_the_scheme_variances_tend_to_the_continuous_ones():
    for kind in ("white", "ou"):
        cont = nz.stationary_variance(kind, 0.3, 2.0, 0.7)
        gaps = [abs(nz.scheme_stationary_variance(kind, 0.3, 2.0, h, 0.7) / cont - 1) for h in (0.1, 0.05, 0.025)]
        assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 0.01
        assert gaps[0] / gaps[1] == pytest.approx(2.0, rel=0.1)  # first order in h


def test_the_ou_current_has_variance_sigma_squared_at_any_step():
    """The exact transition keeps Var ξ = σ² at h = τ, where Euler–Maruyama would double it."""
    model = nz.NoiseModel("ou", 0.4, 1.0, ("h1",))
    noise = nz.draw_phase(nz.noise_generator(3), model, {"h1": 4000}, 6, 10, np.float64)
    xi = nz.ou_currents(model, 1.0, noise)["h1"]  # (7, 10, 4000): ξ_0 … ξ_6
    assert xi.shape == (7, 10, 4000)
    for k in (0, 3, 6):
        assert xi[k].var() == pytest.approx(0.16, rel=0.04)
    lag1 = np.mean(xi[1:] * xi[:-1]) / 0.16
    assert lag1 == pytest.approx(np.exp(-1.0), abs=0.02)  # autocorrelation e^{-h/τ}


def test_the_noise_stream_is_its_own():
    a, b = nz.noise_generator(5), nz.noise_generator(5)
    assert np.array_equal(a.standard_normal(8), b.standard_normal(8))  # reproducible
    run = np.random.default_rng(5).standard_normal(8)
    assert not np.allclose(nz.noise_generator(5).standard_normal(8), run)  # not the run's stream for the same seed


# -- [dynamics.noise] --------------------------------------------------------------------------
BASE = {"network": {"layers": [64, 8, 6, 10]}, "data": {"dataset": "digits"}, "learning": {"seed": 11}}


def test_defaults_resolve_to_every_hidden_population_and_the_run_seed():
    cfg = load_params(BASE, ["dynamics.noise.kind='ou'", "dynamics.noise.sigma=0.2"])
    n = cfg.dynamics.noise
    assert (n.kind, n.sigma, n.tau, n.populations, n.seed) == ("ou", 0.2, 1.0, ["h1", "h2"], 11)
    assert "[dynamics.noise]" in cfg.to_toml()
    again = load_params(dict(__import__("tomllib").loads(cfg.to_toml())))  # the stored file says what ran
    assert again.dynamics.noise == n
    model = nz.NoiseModel.from_config(n, cfg.build_network().hidden)
    assert model == nz.NoiseModel("ou", 0.2, 1.0, ("h1", "h2"))


def test_without_noise_the_stored_parameters_are_the_same_as_before_noise_existed():
    cfg = load_params(BASE)
    assert cfg.dynamics.noise.kind == "none" and "noise" not in cfg.to_toml()
    assert nz.NoiseModel.from_config(cfg.dynamics.noise, ("h1",)) is None


BAD = [
    ({"kind": "pink"}, "dynamics.noise.kind = 'pink': Input should be 'none', 'white' or 'ou'"),
    ({"kind": "white"}, "dynamics.noise.sigma: required with dynamics.noise.kind = 'white'"),
    ({"kind": "white", "sigma": -0.1}, "dynamics.noise.sigma = -0.1: Input should be greater than or equal to 0"),
    ({"kind": "ou", "sigma": 0.1, "tau": 0.0}, "dynamics.noise.tau = 0.0: Input should be greater than 0"),
    ({"kind": "ou", "sigma": 0.1, "populations": ["h1", "h7"]},
     "dynamics.noise.populations = ['h1', 'h7']: give distinct names among the non-input populations h1, h2, o"),
    ({"kind": "white", "sigma": 0.1, "seed": -1}, "dynamics.noise.seed = -1: Input should be greater than or equal"),
    ({"sigma": 0.1}, "dynamics.noise.sigma = 0.1 has no effect with dynamics.noise.kind = 'none'"),
    ({"kind": "white", "sigma": 0.1, "amplitude": 2}, "dynamics.noise.amplitude = 2: unknown key; allowed keys here: "
                                                      "kind, sigma, tau, populations, seed"),
]


@pytest.mark.parametrize("table,message", BAD)
def test_bad_noise_tables_are_refused_in_one_line(table, message):
    with pytest.raises(ParameterError) as err:
        load_params({**BASE, "dynamics": {"noise": table}})
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


@pytest.mark.parametrize("other,message", [
    ({"tol": 1e-3}, "dynamics.tol = 0.001 with dynamics.noise.kind = 'white': noisy dynamics never come to rest"),
    ({"engine": "jax", "solver": "tsit5"}, "dynamics.solver = 'tsit5' with dynamics.noise.kind = 'white'"),
])
def test_settings_noisy_dynamics_cannot_honour_are_refused(other, message):
    with pytest.raises(ParameterError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_params({**BASE, "dynamics": {**other, "noise": {"kind": "white", "sigma": 0.1}}})
    with pytest.raises(ParameterError, match="its perturbed window has no noise term"):
        load_params({**BASE, "learning": {"rule": "forward_gradient"},
                     "dynamics": {"noise": {"kind": "white", "sigma": 0.1}}})


@pytest.mark.parametrize("table,message", BAD[:3] + BAD[4:5])
def test_the_command_line_says_it_in_one_line_with_exit_status_2(table, message, tmp_path, capsys):
    f = tmp_path / "p.toml"
    f.write_text(tomli_w.dumps({**BASE, "dynamics": {"noise": table}, "record": {"path": str(tmp_path / "r.h5")}}))
    assert main(["run", str(f)]) == 2
    out, err = capsys.readouterr()
    assert err.startswith(f"hebbsim: error: {message}") and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "r.h5").exists()  # refused before any work
