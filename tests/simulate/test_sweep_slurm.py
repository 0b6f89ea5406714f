"""Sweeps through a real SLURM (the single-node cluster of scripts/slurm/start.sh): the same
results as on the local cluster, and a point whose job is cancelled mid-run finishes in
another job, bit-identical to an uninterrupted run.

In CI (``CI=true``) SLURM must be up (.ci/run starts it); elsewhere these tests are skipped
when it is not."""

import os
import shutil
import subprocess

import numpy as np
import pytest

import hebbsim
from hebbsim.simulate.sweep_file import load_sweep
from hebbsim.simulate.sweep_index import SweepIndex
from hebbsim.simulate.sweep_worker import held_epochs, read_attempts

from test_sweep import FOUR, LONG, direct_run, kill_when, run_in_thread, sweep_dict


def _slurm_up() -> str | None:
    """None if SLURM runs jobs here, else why not."""
    if shutil.which("sbatch") is None:
        return "sbatch is not installed (start a test cluster with scripts/slurm/start.sh, as root)"
    try:
        out = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "scontrol ping timed out"
    if out.returncode != 0 or "UP" not in out.stdout:
        return f"slurmctld is not up ({' '.join(out.stdout.split())}); run scripts/slurm/start.sh"
    return None


@pytest.fixture(scope="module")
def slurm():
    why = _slurm_up()
    if why and os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"SLURM is required in CI: {why}")
    if why:
        pytest.skip(why)


def _jobs(name="hebbsim-sweep") -> list[str]:
    out = subprocess.run(["squeue", "-h", "-n", name, "-o", "%i"], capture_output=True, text=True, check=True)
    return out.stdout.split()


@pytest.mark.slow
def test_slurm_sweep_gives_the_local_results(slurm, tmp_path):
    local = hebbsim.sweep(sweep_dict(tmp_path / "local", **FOUR), progress=False)
    batch = hebbsim.sweep(sweep_dict(tmp_path / "slurm", **FOUR), cluster="slurm", progress=False)
    assert local.complete and batch.complete
    attempts = [read_attempts(tmp_path / "slurm" / r.file)[0] for r in batch.index.points.values()]
    assert all(a["job"] for a in attempts)  # ran inside SLURM jobs
    assert list((tmp_path / "slurm" / "logs").glob("hebbsim-sweep-*.err"))
    a, b = hebbsim.open_sweep(tmp_path / "local"), hebbsim.open_sweep(tmp_path / "slurm")
    assert a.test_error.shape == b.test_error.shape == (2, 2, 2)
    for name in a.data_vars:
        if name not in ("epoch_time", "wall_time"):
            np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    assert not _jobs()  # the sweep's jobs ended with it


@pytest.mark.slow
def test_scancelled_job_point_finishes_in_another_job_bit_identically(slurm, tmp_path, assert_same_run):
    sweep = sweep_dict(tmp_path / "sweep", set=LONG, cluster={"workers": 1, "walltime": "00:10:00"})
    (point,) = load_sweep(sweep).points
    thread, result = run_in_thread(sweep, cluster="slurm")
    cancelled = kill_when(point.path, 2, lambda a: subprocess.run(["scancel", a["job"]], check=True))
    thread.join(300)
    assert result["sweep"].complete
    attempts = read_attempts(point.path)
    assert attempts[0]["job"] == cancelled["job"] and attempts[-1]["job"] != cancelled["job"]
    assert 2 <= attempts[-1]["from_epoch"] < 8  # continued from its checkpoint in the new job
    assert held_epochs(point.path) == 8
    assert_same_run(direct_run(tmp_path, point), point.path)
    assert SweepIndex.load(tmp_path / "sweep").points[point.name].status == "done"


def test_a_job_slurm_refuses_is_reported_before_anything_runs(slurm, tmp_path, capsys):
    from hebbsim.simulate.cli import main
    import tomli_w

    from test_sweep import BASE

    (tmp_path / "base.toml").write_text(tomli_w.dumps(BASE))
    (tmp_path / "sweep.toml").write_text(tomli_w.dumps({"base": "base.toml", "output": str(tmp_path / "out"),
                                                        "cluster": {"kind": "slurm", "queue": "nosuchpartition"}}))
    assert main(["sweep", str(tmp_path / "sweep.toml")]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("hebbsim: error: cluster: SLURM refuses the worker job (") and "partition" in err.lower()
    assert not _jobs() and not list((tmp_path / "out" / "points").glob("*.h5"))
