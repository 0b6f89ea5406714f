"""Sweeps on a Dask LocalCluster: every point once, bit-identical to single runs; re-launch runs
only what is missing; failing points are retried, then marked failed while the others finish;
a SIGKILLed worker's point continues from its checkpoint; one Dataset over all points."""

import copy
import json
import os
import signal
import threading
import time
import tomllib

import numpy as np
import pytest

import hebbsim
from hebbsim.data.checkpoint import checkpoint_path
from hebbsim.simulate.cli import main
from hebbsim.simulate.sweep_index import SweepIndex
from hebbsim.simulate.sweep_worker import held_epochs, read_attempts

BASE = {
    "network": {"layers": [64, 32, 10], "topology": "loop", "clip_states": True},
    "dynamics": {"dt": 0.5, "free_steps": 20, "nudge_steps": 6, "beta": 1.0},
    "learning": {"lr": [0.1, 0.05, 0.05], "batch_size": 10, "epochs": 2, "seed": 3},
    "data": {"dataset": "digits", "train_subset": 300, "test_subset": 100},
    "record": {"probes": 4},
}

FOUR = {"seeds": [1, 2], "grid": {"learning.lr": [[0.1, 0.05, 0.05], [0.05, 0.02, 0.02]]},
        "cluster": {"workers": 2}}
"""A 4-point digits sweep: learning rate × seed."""

# slow points for the kill tests: about 0.3 s per epoch on an idle core, 8 epochs
LONG = {"learning.batch_size": 1, "dynamics.free_steps": 80, "dynamics.nudge_steps": 10, "learning.epochs": 8,
        "data.train_subset": 600}


def sweep_dict(out, **more) -> dict:
    return {"base": copy.deepcopy(BASE), "output": str(out), **copy.deepcopy(more)}


def direct_run(tmp_path, point, name="direct"):
    """The point run on its own with hebbsim.run (same parameters, another file)."""
    params = json.loads(json.dumps(point.params.model_dump(mode="json", exclude_none=True)))
    params["learning"].pop("forward_gradient", None)
    params["record"]["path"] = str(tmp_path / f"{name}.h5")
    hebbsim.run(params, progress=False)
    return params["record"]["path"]


@pytest.mark.slow  # 10-15 s warm; each new worker compiles numba's kernels once from a cold cache
def test_local_sweep_runs_each_point_once_as_hebbsim_run_would(tmp_path, assert_same_run):
    out = tmp_path / "sweep"
    result = hebbsim.sweep(sweep_dict(out, **FOUR), progress=False)
    assert result.complete and result.counts == {"pending": 0, "running": 0, "done": 4, "failed": 0}
    index = SweepIndex.load(out)
    assert [r.attempts for r in index.points.values()] == [1, 1, 1, 1]
    assert all(r.wall_time > 0 and r.epochs == 2 for r in index.points.values())

    from hebbsim.simulate.sweep_file import load_sweep

    spec = load_sweep(sweep_dict(out, **FOUR))
    p = spec.points[3]  # lr = [0.05, 0.02, 0.02], seed 2
    assert p.params.learning.seed == 2 and p.params.learning.lr == [0.05, 0.02, 0.02]
    assert_same_run(direct_run(tmp_path, p), p.path)

    ds = hebbsim.open_sweep(out)
    assert ds.test_error.dims == ("lr", "seed", "epoch") and ds.test_error.shape == (2, 2, 2)
    assert list(ds.seed.values) == [1, 2] and list(ds.lr.values) == ["[0.1, 0.05, 0.05]", "[0.05, 0.02, 0.02]"]
    for q in spec.points:
        one = hebbsim.open_run(q.path)
        np.testing.assert_array_equal(ds.test_error[q.position].values, one.test_error.values)
        np.testing.assert_array_equal(ds.weight_x_to_h1[q.position].values, one.weight_x_to_h1.values)
    assert (ds.status.values == "done").all() and (ds.attempts.values == 1).all()

    # re-launch: nothing runs again, no file is rewritten
    mtimes = {q.name: q.path.stat().st_mtime_ns for q in spec.points}
    again = hebbsim.sweep(sweep_dict(out, **FOUR), progress=False)
    assert again.complete and {q.name: q.path.stat().st_mtime_ns for q in spec.points} == mtimes
    assert [len(read_attempts(q.path)) for q in spec.points] == [1, 1, 1, 1]


@pytest.mark.slow
def test_more_epochs_continue_every_point_and_open_sweep_aligns_epochs(tmp_path):
    """Raising learning.epochs keeps the points (same hash) and continues them from their
    checkpoints; while one is behind, open_sweep shows NaN at the epochs it does not have."""
    out = tmp_path / "sweep"
    sweep = sweep_dict(out, seeds=[1, 2], cluster={"workers": 2})
    hebbsim.sweep(sweep, progress=False)
    from hebbsim.simulate.sweep_file import load_sweep

    longer = {**sweep, "set": {"learning.epochs": 3}}
    spec = load_sweep(longer)
    first = spec.points[0]
    # one point runs its third epoch outside the sweep (as if the sweep were half way)
    hebbsim.run(tomllib.loads(first.params.to_toml()), resume=True, progress=False)
    ds = hebbsim.open_sweep(out)
    assert ds.sizes["epoch"] == 3 and np.isnan(float(ds.test_error.sel(seed=2, epoch=3)))
    assert not np.isnan(float(ds.test_error.sel(seed=1, epoch=3)))

    hebbsim.sweep(longer, progress=False)
    for q in spec.points:
        attempts = [a["from_epoch"] for a in read_attempts(q.path)]
        assert attempts == ([0] if q is first else [0, 2])  # the first was complete: not run again
        assert held_epochs(q.path) == 3
    # the same learning curve and final weights as a 3-epoch run (the stored snapshots differ:
    # the 2-epoch run also kept its last weights, at epoch 2)
    a, b = hebbsim.open_run(direct_run(tmp_path, spec.points[1])), hebbsim.open_run(spec.points[1].path)
    for name in ("test_error", "train_loss", "batch_loss", "state_o"):
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    np.testing.assert_array_equal(a.weight_x_to_h1.sel(snapshot=3).values, b.weight_x_to_h1.sel(snapshot=3).values)


@pytest.mark.slow
def test_failing_point_is_retried_then_marked_failed_while_the_others_finish(tmp_path, capsys, monkeypatch):
    """A point whose run raises (MNIST missing on the 'compute node') is run 1 + retries times,
    marked failed with its message; the sweep goes on; open_sweep has NaN for it."""
    monkeypatch.chdir(tmp_path)
    import tomli_w

    (tmp_path / "base.toml").write_text(tomli_w.dumps(BASE))
    sweep = {"base": "base.toml", "output": "out", "retries": 1, "seeds": [1],
             "set": {"data.download": False, "data.root": str(tmp_path / "no-data")},
             "zip": {"data.dataset": ["digits", "mnist"], "network.layers": [[64, 32, 10], [784, 32, 10]]},
             "cluster": {"workers": 2, "env": {"XDG_CACHE_HOME": str(tmp_path / "cache"), "HEBBSIM_DATA": ""}}}
    (tmp_path / "sweep.toml").write_text(tomli_w.dumps(sweep))
    assert main(["sweep", "sweep.toml", "--no-progress"]) == 1  # not complete
    table = capsys.readouterr().out
    index = SweepIndex.load(tmp_path / "out")
    digits, mnist = index.points.values()
    assert digits.status == "done" and digits.attempts == 1 and digits.error is None
    assert mnist.status == "failed" and mnist.attempts == 2
    assert mnist.error.startswith("DataError: MNIST file(s) missing")
    assert "failed" in table and "DataError: MNIST file(s) missing" in table
    ds = hebbsim.open_sweep(tmp_path / "out")
    assert list(ds.dataset.values) == ["digits", "mnist"] and list(ds.layers.values) == ["[64, 32, 10]",
                                                                                        "[784, 32, 10]"]
    err = ds.test_error.sel(seed=1)
    assert not np.isnan(err.sel(dataset="digits")).any() and np.isnan(err.sel(dataset="mnist")).all()
    assert list(ds.status.sel(seed=1).values) == ["done", "failed"]

    assert main(["sweep", "--status", "out"]) == 0
    assert "1 done, 0 failed" not in capsys.readouterr().out


def kill_when(path, epochs: int, kill, timeout: float = 120.0) -> dict:
    """Wait until the run file ``path`` holds ``epochs`` epochs, then call ``kill(attempt)``
    with the running attempt's record (host, pid, job); return that record."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if held_epochs(path) >= epochs and read_attempts(path):
            attempt = read_attempts(path)[-1]
            kill(attempt)
            return attempt
        time.sleep(0.05)
    raise AssertionError(f"{path} never reached {epochs} epochs")


def run_in_thread(sweep: dict, **kwargs):
    result = {}
    thread = threading.Thread(target=lambda: result.update(sweep=hebbsim.sweep(sweep, progress=False, **kwargs)))
    thread.start()
    return thread, result


@pytest.mark.slow
def test_sigkilled_worker_point_continues_from_its_checkpoint_bit_identically(tmp_path, assert_same_run):
    """With allowed_failures = 0 Dask gives the point up at its worker's first death; the sweep
    submits it again without counting an error because it made progress (with the default,
    Dask reschedules it itself: the scancel test in test_sweep_slurm.py)."""
    from hebbsim.simulate.sweep_file import load_sweep

    sweep = sweep_dict(tmp_path / "sweep", set=LONG, retries=0, cluster={"workers": 1, "allowed_failures": 0})
    (point,) = load_sweep(sweep).points
    thread, result = run_in_thread(sweep)
    killed = kill_when(point.path, 2, lambda a: os.kill(a["pid"], signal.SIGKILL))
    thread.join(300)
    assert result["sweep"].complete
    attempts = read_attempts(point.path)
    assert len(attempts) == 2 and attempts[0]["pid"] == killed["pid"] != attempts[1]["pid"]
    assert 2 <= attempts[1]["from_epoch"] < 8  # continued, not started over
    assert held_epochs(point.path) == 8
    assert hebbsim.open_run(point.path).attrs.get("resumed_at")
    assert_same_run(direct_run(tmp_path, point), point.path)
    assert SweepIndex.load(tmp_path / "sweep").points[point.name].attempts == 2


@pytest.mark.slow
def test_point_whose_worker_dies_without_progress_fails_after_its_retries(tmp_path):
    from hebbsim.simulate.sweep_file import load_sweep

    sweep = sweep_dict(tmp_path / "sweep", set=LONG, retries=0, cluster={"workers": 1, "allowed_failures": 0})
    (point,) = load_sweep(sweep).points
    thread, result = run_in_thread(sweep)
    kill_when(point.path, 0, lambda a: os.kill(a["pid"], signal.SIGKILL))  # during its first epoch
    thread.join(300)
    rec = result["sweep"].index.points[point.name]
    assert rec.status == "failed" and rec.epochs == 0 and rec.attempts == 1
    assert rec.error.startswith("KilledWorker: its worker died 1 time while running it without progress")


# -- workers allocate like plain processes -----------------------------------------------------
PAGE_FAULTS = """
import resource, sys, numpy as np
if sys.argv[1] == "worker":
    from hebbsim.simulate.sweep_worker import _worker_environment
    _worker_environment()
warm = [np.ones(2**17) for _ in range(3)]
del warm
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):
    a = np.ones(2**17)  # 1 MiB: over glibc's static mmap threshold
    del a
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="glibc/Linux only")
def test_a_worker_reuses_heap_memory_even_when_its_nanny_set_malloc_trim_threshold():
    """Dask nannies start workers with MALLOC_TRIM_THRESHOLD_=65536, which makes every array
    over 128 KiB a fresh, zero-filled mmap (256 page faults per MiB): 2-2.5x slower epochs. The
    worker's set-up gives glibc its heap back."""
    import subprocess
    import sys

    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536"}

    def faults(mode):
        out = subprocess.run([sys.executable, "-c", PAGE_FAULTS, mode], env=env, capture_output=True, text=True,
                             check=True)
        return int(out.stdout.split()[-1])

    assert faults("plain") > 200 * 200  # the nanny's setting: a fresh mapping per array
    assert faults("worker") < 2000


@pytest.mark.slow
def test_local_cluster_workers_start_without_dasks_malloc_setting():
    from distributed import Client

    from hebbsim.simulate.sweep import dask_config
    from hebbsim.simulate.sweep_file import ClusterConfig
    from hebbsim.simulate.sweep_cluster import local_cluster

    cfg = ClusterConfig(workers=1)
    with dask_config(cfg), local_cluster(cfg, 1) as cluster, Client(cluster) as client:
        env = client.submit(lambda: dict(os.environ), pure=False).result()
    assert "MALLOC_TRIM_THRESHOLD_" not in env
    assert env["OPENBLAS_NUM_THREADS"] == "1"
