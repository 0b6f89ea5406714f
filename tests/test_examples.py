"""The example scripts run as plain scripts."""

import os
import subprocess
import sys
from pathlib import Path

import hebbsim

REPO = Path(__file__).resolve().parents[1]


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
