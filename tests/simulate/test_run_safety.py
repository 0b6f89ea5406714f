"""Nothing lost, nothing silently wrong: existing runs are refused, one writer per run,
checkpoints that cannot lie, I/O errors and truncated files handled, a NaN keeps every epoch."""

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tomli_w

import hebbsim
from hebbsim.data.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from hebbsim.data.crashpoints import FAULT_ENV
from hebbsim.data.runlock import RunLock, RunLockedError, lock_path
from hebbsim.data.store import StoreError, StoreWriteError
from hebbsim.errors import DivergenceError, HebbsimError, RunExistsError
from hebbsim.simulate import runner
from hebbsim.simulate.cli import main
from hebbsim.simulate.resume import ResumeError

REPO = Path(__file__).resolve().parents[2]
QUIET = dict(progress=False)


def _digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _toml(p: dict, folder: Path) -> Path:
    f = folder / "p.toml"
    f.write_text(tomli_w.dumps(p))
    return f


# --------------------------------------------------------------------------- no overwritten runs


def test_an_existing_run_is_refused_naming_resume_and_overwrite(tiny_run, tmp_path, capsys):
    p = tiny_run(learning__epochs=2)
    path = Path(p["record"]["path"])
    hebbsim.run(p, **QUIET)
    kept = _digest(path), _digest(checkpoint_path(path))
    with pytest.raises(RunExistsError) as err:
        hebbsim.run(p, ["learning.epochs=1"], **QUIET)
    assert "--resume" in str(err.value) and "--overwrite" in str(err.value) and "holding 2 epochs" in str(err.value)
    f = _toml(p, tmp_path)
    assert main(["run", str(f), "--set", "learning.epochs=1", "--no-progress"]) == 2
    out = capsys.readouterr().err.strip().splitlines()
    assert out[-1].startswith(f"hebbsim: error: record.path = {path}: a run file holding 2 epochs already exists")
    assert (_digest(path), _digest(checkpoint_path(path))) == kept  # nothing touched

    assert main(["run", str(f), "--set", "learning.epochs=1", "--overwrite", "--no-progress"]) == 0
    assert list(hebbsim.open_run(path).epoch.values) == [1]
    assert load_checkpoint(checkpoint_path(path))[1]["epoch"] == 1
    # a checkpoint alone (its run file deleted) is refused too
    path.unlink()
    with pytest.raises(RunExistsError, match="a checkpoint .* already exists"):
        hebbsim.run(p, **QUIET)
    with pytest.raises(HebbsimError, match="exclude each other"):
        hebbsim.run(p, resume=True, overwrite=True, **QUIET)
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(f), "--resume", "--overwrite"])
    assert exit_.value.code == 2


def test_resume_of_a_run_file_without_checkpoint_is_refused(tiny_run):
    p = tiny_run(learning__epochs=1)
    path = Path(p["record"]["path"])
    hebbsim.run(p, **QUIET)
    checkpoint_path(path).unlink()
    with pytest.raises(ResumeError, match="holds 1 epochs but has no checkpoint.*--overwrite"):
        hebbsim.run(p, ["learning.epochs=2"], resume=True, **QUIET)
    assert list(hebbsim.open_run(path).epoch.values) == [1]


def test_x_h5_and_x_nc_have_their_own_checkpoints(tiny_run, tmp_path):
    a = tiny_run(learning__epochs=1)
    b = tiny_run(learning__epochs=1, learning__seed=9)
    b["record"]["path"] = str(tmp_path / "run.nc")
    hebbsim.run(a, **QUIET)
    hebbsim.run(b, **QUIET)
    ca, cb = checkpoint_path(a["record"]["path"]), checkpoint_path(b["record"]["path"])
    assert ca != cb and ca.is_file() and cb.is_file()
    for p in (a, b):
        assert list(hebbsim.run(p, ["learning.epochs=2"], resume=True, **QUIET).epoch.values) == [1, 2]


# --------------------------------------------------------------------------- one writer per run


def test_a_second_writer_is_refused_with_the_holders_pid_and_host(tiny_run, tmp_path):
    p = tiny_run(learning__epochs=1)
    path = Path(p["record"]["path"])
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from hebbsim.data.runlock import RunLock
            RunLock({str(path)!r}).acquire()
            print("held", flush=True)
            time.sleep(120)
        """)], stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError) as err:
            hebbsim.run(p, **QUIET)
        assert f"pid {holder.pid} on host {socket.gethostname()}" in str(err.value)
        with pytest.raises(RunLockedError):
            hebbsim.run(p, resume=True, **QUIET)
        assert not path.exists() and not checkpoint_path(path).exists()
    finally:
        holder.kill()  # SIGKILL: the operating system releases the lock, none is left stale
        holder.wait()
    assert list(hebbsim.run(p, **QUIET).epoch.values) == [1]
    assert not lock_path(path).exists()


def test_the_lock_is_exclusive_within_one_process_too(tmp_path):
    with RunLock(tmp_path / "r.h5"):
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
            RunLock(tmp_path / "r.h5").acquire()
    with RunLock(tmp_path / "r.h5"):  # released: free again
        pass


# --------------------------------------------------------------------------- checkpoints that cannot lie

HARD = dict(learning__optimizer="adam", learning__lr=[0.01, 0.005, 0.005], learning__epochs=3,
            dynamics__persistent_states=True)


@pytest.fixture(scope="module")
def _two_epochs_once(tmp_path_factory, tiny_params):
    path = tmp_path_factory.mktemp("two_epochs") / "run.h5"
    p = tiny_params(path, **HARD)
    hebbsim.run(p, ["learning.epochs=2"], **QUIET)
    return p, path, {f: f.read_bytes() for f in (path, checkpoint_path(path))}


@pytest.fixture
def two_epochs(_two_epochs_once):
    """A run stopped after 2 of its 3 epochs: (parameters, run file, checkpoint) — trained once,
    restored byte for byte for each test (its record.path is part of its parameters)."""
    p, path, pristine = _two_epochs_once
    for f in path.parent.iterdir():
        shutil.rmtree(f) if f.is_dir() else f.unlink()
    for f, data in pristine.items():
        f.write_bytes(data)
    return p, path, checkpoint_path(path)


def _resave(ckpt: Path, change) -> None:
    """Rewrite a checkpoint through save_checkpoint (so its own manifest is consistent)."""
    arrays, meta = load_checkpoint(ckpt)
    change(arrays, meta)
    save_checkpoint(ckpt, arrays, meta)


@pytest.mark.parametrize("damage,message", [
    (lambda c: c.write_bytes(b""), "is empty"),
    (lambda c: (c.unlink(), c.mkdir()), "not a regular file"),
    (lambda c: c.write_bytes(os.urandom(5000)), "not a hebbsim checkpoint"),
    (lambda c: c.write_bytes(c.read_bytes()[:3000]), "is torn"),
    (lambda c: _resave(c, lambda a, m: a.pop("weight/x_to_h1")), "'weight/x_to_h1' is missing"),
    (lambda c: _resave(c, lambda a, m: [a.pop(k) for k in list(a) if k.startswith("optimizer/v/")]),
     "'optimizer/v/W_x_to_h1' is missing"),
    (lambda c: _resave(c, lambda a, m: a.update({"weight/h1_to_o": a["weight/h1_to_o"][:, :5]})),
     "'weight/h1_to_o' has shape \\(10, 5\\), this run's is \\(10, 32\\)"),
    (lambda c: _resave(c, lambda a, m: m.update({"epoch": 1})), "not the one this run file recorded for epoch 1"),
    (lambda c: _resave(c, lambda a, m: a["weight/x_to_h1"].__imul__(0.5)),
     "not the one this run file recorded for epoch 2"),
])
def test_a_damaged_or_inconsistent_checkpoint_is_refused(two_epochs, damage, message, capsys):
    p, path, ckpt = two_epochs
    kept = _digest(path)
    damage(ckpt)
    with pytest.raises(ResumeError, match=message) as err:
        hebbsim.run(p, resume=True, **QUIET)
    assert "allow_pickle" not in str(err.value) and "--overwrite" in str(err.value)
    assert _digest(path) == kept
    assert main(["run", str(_toml(p, path.parent)), "--resume", "--no-progress"]) == 2
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert err_lines[-1].startswith("hebbsim: error: cannot resume") and "Traceback" not in "".join(err_lines)


def test_an_older_consistent_checkpoint_still_resumes(two_epochs, tiny_run, assert_same_run):
    """The digest check refuses lies, not legitimate states: the epoch-1 checkpoint of the same
    run (as after a kill between publishing epoch 2 and writing its checkpoint) resumes."""
    p, path, ckpt = two_epochs
    q = tiny_run("one", **HARD)
    hebbsim.run(q, ["learning.epochs=1"], **QUIET)
    full = tiny_run("full", **HARD)
    hebbsim.run(full, **QUIET)
    # epoch 1's checkpoint of an identical run (its parameters differ only in record.path):
    arrays, meta = load_checkpoint(checkpoint_path(q["record"]["path"]))
    meta["parameters"] = load_checkpoint(ckpt)[1]["parameters"]
    save_checkpoint(ckpt, arrays, meta)
    hebbsim.run(p, resume=True, **QUIET)
    assert_same_run(full["record"]["path"], path)


# --------------------------------------------------------------------------- I/O errors


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_params):
    path = tmp_path_factory.mktemp("reference") / "run.h5"
    hebbsim.run(tiny_params(path, **HARD), **QUIET)
    return path


@pytest.mark.parametrize("stage,held,ckpt_epoch", [
    ("copy", 1, 1), ("append", 1, 1), ("publish", 1, 1), ("checkpoint", 2, 1)])
def test_a_write_error_keeps_the_published_file_and_resume_continues(stage, held, ckpt_epoch, tiny_run, reference,
                                                                     monkeypatch, assert_same_run):
    p = tiny_run(**HARD)
    path = Path(p["record"]["path"])
    monkeypatch.setenv(FAULT_ENV, f"{stage}:2")
    error = StoreWriteError if stage != "checkpoint" else HebbsimError
    with pytest.raises(error, match="No space left on device.*--resume"):
        hebbsim.run(p, **QUIET)
    assert list(hebbsim.open_run(path).epoch.values) == list(range(1, held + 1))
    assert load_checkpoint(checkpoint_path(path))[1]["epoch"] == ckpt_epoch
    assert sorted(f.name for f in path.parent.iterdir()) == ["run.h5", "run.h5.ckpt.npz"]  # no temporary file, no lock
    monkeypatch.delenv(FAULT_ENV)
    hebbsim.run(p, resume=True, **QUIET)
    assert_same_run(reference, path)


def _can_mount_tmpfs(folder: Path) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    folder.mkdir(exist_ok=True)
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True)
    if ok.returncode == 0:
        subprocess.run(["umount", str(folder)], check=True)
    return ok.returncode == 0


@pytest.mark.slow
def test_a_full_disk_stops_cleanly_and_resume_continues(tiny_run, tmp_path):
    """On a real 1.7 MB tmpfs (needs root; writing the first epoch peaks at ~1.36 MB in use, the
    second at ~2 MB): a clean one-line error (before this, HDF5 failed inside its close and the
    process segfaulted), then --resume on a larger disk finishes."""
    disk = tmp_path / "disk"
    if not _can_mount_tmpfs(disk):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    p = tiny_run(learning__epochs=8, record__weights_every=1, record__every_steps=1, record__compression="none")
    p["record"]["path"] = str(disk / "run.h5")
    f = _toml(p, tmp_path)
    cmd = [sys.executable, "-m", "hebbsim.simulate.cli", "run", str(f)]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1700k", "tmpfs", str(disk)], check=True)
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert res.returncode == 2, res.stderr
        assert "Traceback" not in res.stderr and "Exception ignored" not in res.stderr, res.stderr
        last = res.stderr.strip().splitlines()[-1]
        assert last.startswith("hebbsim: error: cannot write epoch") and "No space left on device" in last
        held = hebbsim.open_run(disk / "run.h5").load().sizes["epoch"]
        assert 1 <= held < 8 and load_checkpoint(checkpoint_path(disk / "run.h5"))[1]["epoch"] == held
        assert sorted(x.name for x in disk.iterdir()) == ["run.h5", "run.h5.ckpt.npz"]
        subprocess.run(["mount", "-o", "remount,size=20m", str(disk)], check=True)
        res = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, env=env, timeout=300)
        assert res.returncode == 0, res.stderr
        assert f"resuming {disk / 'run.h5'} after epoch {held}" in res.stderr
        assert list(hebbsim.open_run(disk / "run.h5").epoch.values) == list(range(1, 9))
    finally:
        subprocess.run(["umount", "-l", str(disk)])


# --------------------------------------------------------------------------- truncated run files


@pytest.mark.parametrize("keep", [0, 100, 0.5, -4096])
def test_a_truncated_run_file_is_a_store_error_and_resume_refuses(two_epochs, keep, capsys):
    p, path, ckpt = two_epochs
    data = path.read_bytes()
    n = int(keep * len(data)) if isinstance(keep, float) else keep if keep >= 0 else len(data) + keep
    path.write_bytes(data[:n])
    with pytest.raises(StoreError) as err:
        hebbsim.open_run(path).load()
    msg = str(err.value)
    assert str(path) in msg and f"({n} bytes)" in msg and "copy it again" in msg
    assert main(["run", str(_toml(p, path.parent)), "--resume", "--no-progress"]) == 2
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert err_lines[-1].startswith(f"hebbsim: error: cannot resume: cannot open run file {path}")
    assert "Traceback" not in "\n".join(err_lines)
    assert path.read_bytes() == data[:n] and ckpt.is_file()  # nothing replaced


# --------------------------------------------------------------------------- a NaN in a later epoch


def test_a_nan_in_a_later_epoch_keeps_every_completed_epoch(tiny_run, monkeypatch, capsys):
    """An injected fault: before epoch 3 a weight becomes NaN, so its first free phase diverges."""
    p = tiny_run(learning__epochs=4)
    path = Path(p["record"]["path"])
    make = runner.make_trainer

    def poisoned(*args, **kwargs):
        trainer = make(*args, **kwargs)
        train_epoch = trainer.train_epoch

        def train(x, y, *a, epoch=None, **k):
            if epoch == 3:
                next(iter(trainer.params.weights.values()))[0, 0] = np.nan
            return train_epoch(x, y, *a, epoch=epoch, **k)

        trainer.train_epoch = train
        return trainer

    monkeypatch.setattr(runner, "make_trainer", poisoned)
    assert main(["run", str(_toml(p, path.parent)), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "keeps the 2 completed epochs" in err and err.strip().splitlines()[-1].startswith("hebbsim: error: non-finite")
    ds = hebbsim.open_run(path).load()
    assert list(ds.epoch.values) == [1, 2] and np.isfinite(ds.train_loss.values).all()
    assert load_checkpoint(checkpoint_path(path))[1]["epoch"] == 2
    assert sorted(f.name for f in path.parent.iterdir()) == ["p.toml", "run.h5", "run.h5.ckpt.npz"]
    monkeypatch.setattr(runner, "make_trainer", make)
    with pytest.raises(DivergenceError):  # the Python API raises the same error
        monkeypatch.setattr(runner, "make_trainer", poisoned)
        hebbsim.run(p, ["learning.epochs=4"], resume=True, **QUIET)
    monkeypatch.setattr(runner, "make_trainer", make)
    assert list(hebbsim.run(p, resume=True, **QUIET).epoch.values) == [1, 2, 3, 4]


# --------------------------------------------------------------------------- record.path that cannot be a run file


def test_a_record_path_that_cannot_hold_a_run_is_one_clear_line(tiny_run, tmp_path, capsys):
    (tmp_path / "regular").write_text("")
    f = _toml(tiny_run(learning__epochs=1), tmp_path)
    for value, says in [("", "give a run file name"), (".", "give a run file name"), (str(tmp_path), "is a folder"),
                        (str(tmp_path / "regular" / "x.h5"), "is a file, not a folder"),
                        (str(tmp_path / ("a" * 300 + ".h5")), "longer than 255 bytes")]:
        assert main(["run", str(f), "--set", f"record.path={value!r}".replace("'", '"')]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("hebbsim: error: record.path = ") and says in err[0], err
    assert sorted(x.name for x in tmp_path.iterdir()) == ["p.toml", "regular"]
