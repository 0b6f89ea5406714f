"""A run killed with SIGKILL at any moment leaves a readable run file holding every completed
epoch, and ``resume`` then finishes with the uninterrupted run's weights, bit for bit.

The run goes in a subprocess (forked from a multiprocessing forkserver that has imported
hebbsim, so each start costs a fraction of a second); deterministic kill points use the store's pause points
(:mod:`hebbsim.data.crashpoints`): the run pauses there, the test sees the marker file and
kills it — inside the HDF5 write of an epoch, between the copy and the write, before and
after the rename, inside the checkpoint write, and during the creation of the file. Two more
kills land at random moments of a running epoch.
"""

import multiprocessing
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import hebbsim
from hebbsim.data.checkpoint import checkpoint_path, load_checkpoint

import crash_child

CHANGES = dict(learning__epochs=6, dynamics__persistent_states=True, dynamics__random_sign_beta=True,
               learning__optimizer="adam", learning__lr=[0.01, 0.005, 0.005], record__weights_every=2)

# (pause point, epoch, epochs the run file must hold after the kill, checkpoint epoch)
PAUSES = [
    ("publish", 0, None, None),  # creating the run file: nothing published yet
    ("copy", 2, 1, 1),  # run file copied to <run>.h5.tmp, nothing appended yet
    ("append", 3, 2, 2),  # inside the HDF5 write of epoch 3 (temporary file half written)
    ("publish", 2, 1, 1),  # temporary file complete and fsynced, not yet renamed
    ("published", 4, 4, 3),  # epoch 4 renamed into place, its checkpoint not yet written
    ("checkpoint", 5, 5, 4),  # inside the checkpoint write (temporary checkpoint complete)
]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_params):
    """The uninterrupted run."""
    path = tmp_path_factory.mktemp("reference") / "run.h5"
    hebbsim.run(tiny_params(path, **CHANGES), progress=False, log=None)
    return path


@pytest.fixture(scope="module")
def forkserver():
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(crash_child.PRELOAD)
    return ctx


def _start(ctx, params: dict, log: Path, stall: str | None = None) -> multiprocessing.Process:
    log.write_text("")
    proc = ctx.Process(target=crash_child.train, args=(params, str(log), stall), daemon=True)
    proc.start()
    return proc


def _wait_for(condition, proc: multiprocessing.Process, log: Path, timeout: float = 60.0) -> None:
    t0 = time.monotonic()
    while not condition():
        if not proc.is_alive():
            pytest.fail(f"the run ended (exit code {proc.exitcode}) before the kill point:\n{log.read_text()}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            pytest.fail(f"kill point not reached in {timeout} s:\n{log.read_text()}")
        time.sleep(0.002)


def _kill(proc: multiprocessing.Process) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(timeout=30)
    assert proc.exitcode == -signal.SIGKILL


def _logged_epochs(log: Path) -> int:
    return sum(line.startswith("epoch") for line in log.read_text().splitlines())


def _check_after_kill(path: Path, at_least: int, exactly: int | None = None) -> int:
    """The run file opens (eagerly and lazily), holds epochs 1..m exactly once with
    m >= the epochs logged as complete, and every value in it can be read."""
    ds = hebbsim.open_run(path)
    m = ds.sizes["epoch"]
    assert list(ds.epoch.values) == list(range(1, m + 1))
    assert m >= at_least and (exactly is None or m == exactly), (m, at_least, exactly)
    ds.load()
    assert np.isfinite(ds.train_error.values).all() and (ds.batch_epoch.values <= m).all()
    lazy = xr.open_dataset(path, engine="h5netcdf", chunks={})
    np.testing.assert_array_equal(lazy.state_h1.values, ds.state_h1.values)
    return m


@pytest.fixture(scope="module")
def paused_runs(tmp_path_factory, tiny_params, forkserver):
    """One subprocess per pause point, all started at once (their start-up, mostly imports,
    overlaps); each pauses at its point until its test kills it."""
    runs = {}
    for stage, epoch, *_ in PAUSES:
        folder = tmp_path_factory.mktemp(f"{stage}{epoch}")
        params = tiny_params(folder / "run.h5", **CHANGES)
        marker, log = folder / "paused", folder / "run.log"
        runs[stage, epoch] = (_start(forkserver, params, log, f"{stage}:{epoch}:{marker}"), params, marker, log)
    yield runs
    for proc, *_ in runs.values():
        if proc.is_alive():
            proc.kill()
            proc.join()


@pytest.mark.parametrize("stage,epoch,held,ckpt_epoch", PAUSES, ids=[f"{s}@{e}" for s, e, *_ in PAUSES])
def test_kill_at_a_pause_point_then_resume(stage, epoch, held, ckpt_epoch, paused_runs, reference, assert_same_run):
    proc, params, marker, log = paused_runs[stage, epoch]
    path = Path(params["record"]["path"])
    _wait_for(marker.exists, proc, log)
    if stage == "append":  # the run is alive and half-way through writing: readers see the last epoch
        assert list(xr.open_dataset(path, engine="h5netcdf", chunks={}).epoch.values) == [1, 2]
    _kill(proc)
    if held is None:
        assert not path.exists() and not checkpoint_path(path).exists()
    else:
        _check_after_kill(path, _logged_epochs(log), held)
        assert load_checkpoint(checkpoint_path(path))[1]["epoch"] == ckpt_epoch
    if stage in ("copy", "append", "publish"):
        assert path.with_name("run.h5.tmp").exists()  # the kill left a torn temporary file behind
    hebbsim.run(params, resume=True, progress=False, log=None)
    assert_same_run(reference, path)
    assert not path.with_name("run.h5.tmp").exists()


@pytest.mark.parametrize("seed", [0, 1])
def test_kill_at_a_random_moment_then_resume(seed, tmp_path, tiny_params, reference, assert_same_run, forkserver):
    path = tmp_path / "run.h5"
    params = tiny_params(path, **CHANGES)
    log = tmp_path / "run.log"
    proc = _start(forkserver, params, log)
    _wait_for(lambda: _logged_epochs(log) >= 1, proc, log)
    time.sleep(np.random.default_rng(seed).uniform(0.0, 0.25))  # an epoch takes about 0.1 s here
    if not proc.is_alive():
        pytest.fail(f"the run finished before the random kill:\n{log.read_text()}")
    _kill(proc)
    _check_after_kill(path, _logged_epochs(log))
    hebbsim.run(params, resume=True, progress=False, log=None)
    assert_same_run(reference, path)
