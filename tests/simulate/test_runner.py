"""End-to-end training runs on small digits problems."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import xarray as xr

import hebbsim
from hebbsim.simulate.cli import main

def test_loop_with_fixed_random_loop_lowers_training_loss(tiny_run):
    p = tiny_run(network__loop={"kind": "fixed"}, learning__lr=[0.2, 0.1], learning__epochs=10)
    ds = hebbsim.run(p, progress=False, log=None)
    loss, error = ds.train_loss.values, ds.train_error.values
    assert loss[-1] < 0.4 * loss[0], loss  # measured: 0.54 → 0.14
    assert error[-1] < 0.25, error  # chance is 0.9; measured 0.13


def test_run_file_holds_metrics_weights_and_provenance(tiny_run, tmp_path):
    p = tiny_run()
    ds = hebbsim.run(p, progress=False, log=None)
    on_disk = hebbsim.open_run(tmp_path / "run.h5")
    assert list(on_disk.epoch.values) == [1, 2, 3]
    for var in ("train_error", "test_error", "train_loss", "residual", "weight_x_to_h1", "weight_o_to_h1"):
        assert var in on_disk
    assert on_disk.weight_x_to_h1.dims == ("snapshot", "h1_unit", "x_unit")
    assert ((on_disk.test_error >= 0) & (on_disk.test_error <= 1)).all()
    np.testing.assert_array_equal(on_disk.train_error.values, ds.train_error.values)
    for attr in ("parameters", "hebbsim_version", "git_commit", "engine", "dtype", "seed", "host", "start_time",
                 "end_time"):
        assert attr in on_disk.attrs
    assert on_disk.attrs["engine"] == "numba" and on_disk.attrs["seed"] == 3
    assert "topology = \"loop\"" in on_disk.attrs["parameters"]
    lazy = xr.open_dataset(tmp_path / "run.h5", engine="h5netcdf", chunks={})
    assert lazy.train_error.chunks is not None


def test_run_file_counts_the_steps_a_tolerance_saves(tiny_run):
    """``phase_steps``: every phase's full step count without a tolerance; with one, the free phase
    ends early (the tiny loop network settles in well under 200 steps) and the nudged phase,
    which the tolerance does not end, keeps its count."""
    fixed = hebbsim.run(tiny_run("fixed", dynamics__free_steps=200, learning__epochs=2), progress=False, log=None)
    np.testing.assert_array_equal(fixed.phase_steps.sel(phase="free").values, [200, 200])
    np.testing.assert_array_equal(fixed.phase_steps.sel(phase="nudged").values, [6, 6])
    early = hebbsim.run(tiny_run("early", dynamics__free_steps=200, dynamics__tol=1e-3, learning__epochs=2),
                        progress=False, log=None)
    free = early.phase_steps.sel(phase="free").values
    assert np.all((free > 10) & (free < 100)), free
    np.testing.assert_array_equal(early.phase_steps.sel(phase="nudged").values, [6, 6])
    assert early.phase_steps.attrs["long_name"] == "steps per phase"


def test_same_seed_is_bit_reproducible(tiny_run):
    a = hebbsim.run(tiny_run("a", dynamics__persistent_states=True, dynamics__random_sign_beta=True,
                            dynamics__symmetric_nudging=True), progress=False, log=None)
    b = hebbsim.run(tiny_run("b", dynamics__persistent_states=True, dynamics__random_sign_beta=True,
                            dynamics__symmetric_nudging=True), progress=False, log=None)
    np.testing.assert_array_equal(a.weight_x_to_h1.values, b.weight_x_to_h1.values)
    np.testing.assert_array_equal(a.train_loss.values, b.train_loss.values)
    c = hebbsim.run(tiny_run("c", learning__seed=4), progress=False, log=None)
    assert not np.array_equal(a.weight_x_to_h1.values, c.weight_x_to_h1.values)


def test_cli_run_with_overrides_and_errors(tmp_path, capsys):
    f = tmp_path / "p.toml"
    f.write_text(textwrap.dedent(f"""
        [network]
        layers = [64, 16, 10]
        topology = "symmetric"
        [learning]
        lr = [0.1, 0.05]
        epochs = 5
        [data]
        train_subset = 100
        test_subset = 50
        [record]
        path = "{tmp_path / 'cli.h5'}"
    """))
    assert main(["run", str(f), "--set", "learning.epochs=1", "--set", "learning.rule=ep_chl_classic",
                 "--no-progress"]) == 0
    assert len(hebbsim.open_run(tmp_path / "cli.h5").epoch) == 1
    assert main(["run", str(f), "--set", "dynamics.dt=-1", "--no-progress"]) == 2
    assert "dynamics.dt = -1" in capsys.readouterr().err


def test_numba_kernel_is_cached_between_processes(tmp_path):
    code = textwrap.dedent("""
        import numpy as np
        from hebbsim.dynamics.network import build_network
        from hebbsim.dynamics.params import init_params
        from hebbsim.dynamics import rhs
        from hebbsim.simulate.engines.numba_engine import NumbaEngine
        net = build_network([7, 5, 3], "direct_feedback", rho="sigmoid4")
        eng = NumbaEngine(net, 0.5)
        eng.clamp(init_params(net, 0), np.ones((2, 7), np.float32)).relax(rhs.zero_states(net, 2), 3)
        st = eng._kernel.stats
        print(sum(st.cache_hits.values()), sum(st.cache_misses.values()))
    """)
    run = lambda: subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)  # noqa
    run()
    hits, misses = map(int, run().stdout.split())
    assert hits >= 1 and misses == 0


def test_trainer_state_dict_round_trip_continues_bit_identically(tiny_run):
    from hebbsim.data.datasets import load_dataset
    from hebbsim.data.params import load_params
    from hebbsim.dynamics.params import init_params
    from hebbsim.simulate.engines import make_engine
    from hebbsim.simulate.trainer import Trainer

    cfg = load_params(tiny_run(), ["learning.optimizer=\"adam\"", "dynamics.persistent_states=true",
                             "dynamics.random_sign_beta=true"])
    net = cfg.build_network()
    data = load_dataset("digits")
    x, y = data.x_train[:60].astype(np.float32), data.y_train[:60]

    def trainer():
        rng = np.random.default_rng(5)
        params = init_params(net, rng)
        return Trainer(cfg, net, make_engine("numba", net, 0.5), params, len(x), rng)

    a = trainer()
    a.train_epoch(x, y, progress=False)
    arrays, meta = a.state_dict()
    arrays = {k: v.copy() for k, v in arrays.items()}
    a.train_epoch(x, y, progress=False)
    b = trainer()
    b.load_state_dict(arrays, meta)
    b.train_epoch(x, y, progress=False)
    for k, v in a.state_dict()[0].items():
        np.testing.assert_array_equal(b.state_dict()[0][k], v, err_msg=k)


@pytest.mark.parametrize("overrides,words", [
    (["learning.lr=1e30"], "exploded without becoming NaN"),  # weights of 1e29, all finite: exit 0 before
    (["dynamics.dt=3.0", "network.clip_states=false"], "no weight or bias changed"),
])
def test_silent_nonsense_ends_with_a_warning_in_the_log_and_the_run_file(tmp_path, caplog, overrides, words):
    import logging

    with caplog.at_level(logging.WARNING, logger="hebbsim"):
        ds = hebbsim.run("examples/quickstart.toml", overrides + [
            "learning.epochs=2", "record.probes=0", "data.train_subset=100", f"record.path='{tmp_path / 'r.h5'}'"],
            progress=False)
    assert words in ds.attrs["warnings"]
    assert any(words in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_a_healthy_run_has_no_warnings(tmp_path):
    ds = hebbsim.run("examples/quickstart.toml", ["learning.epochs=2", "record.probes=0", "data.train_subset=100",
                                                  f"record.path='{tmp_path / 'r.h5'}'"], progress=False)
    assert "warnings" not in ds.attrs
