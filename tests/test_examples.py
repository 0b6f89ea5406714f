"""The example scripts run as plain scripts."""

import os
import subprocess
import sys
from pathlib import Path

import hebbsim
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_explore_run_plots_a_run(tiny_run, tmp_path):
    p = tiny_run(learning__epochs=2, dynamics__symmetric_nudging=True)
    hebbsim.run(p, progress=False, log=None)
    out = tmp_path / "plots"
    env = dict(os.environ, PYTHONPATH=str(REPO), MPLBACKEND="Agg")
    res = subprocess.run([sys.executable, str(REPO / "examples" / "explore_run.py"), p["record"]["path"], str(out)],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "2 epochs" in res.stdout
    for name in ("learning_curves.png", "probe_trajectories.png", "loop_alignment.png"):
        assert (out / name).stat().st_size > 10_000, name


@pytest.mark.slow
@pytest.mark.parametrize("rule,seconds", [("fa", 60), ("dfa", 60), ("drtp", 60), ("fa_strategy", 60), ("f3", 60),
                                          ("node_perturbation", 120)])
def test_the_digits_example_of_each_feedback_rule_reaches_ten_percent_in_time(rule, seconds, tmp_path):
    import time

    from hebbsim.data.params import load_params

    cfg = load_params(REPO / "examples" / f"digits_{rule}.toml", overrides=[f"record.path={tmp_path / 'run.h5'}"])
    assert cfg.learning.rule == rule and cfg.data.dataset == "digits"
    t0 = time.perf_counter()
    ds = hebbsim.run(cfg, progress=False, log=None)
    assert time.perf_counter() - t0 < seconds
    assert float(ds.test_error.isel(epoch=-1)) <= 0.10


@pytest.mark.parametrize("path", sorted((REPO / "examples").glob("*.toml")), ids=lambda p: p.name)
def test_every_example_file_is_valid(path):
    """Every parameter and sweep file under examples/ validates (a sweep file: every point's
    parameters), so an edit to a base file cannot leave a documented command broken."""
    import tomllib

    from hebbsim.data.params import load_params
    from hebbsim.simulate.sweep_file import load_sweep

    if "base" in tomllib.loads(path.read_text()):
        spec = load_sweep(path)
        assert spec.points
    else:
        load_params(path)
