"""What a Dask worker does with one sweep point: run it, or continue it from its checkpoint.

:func:`run_point` is the task the sweep submits. It is safe to run again at any moment after
the process running it was killed (SIGKILL, ``scancel``, walltime, worker lifetime):

- one writer per point: an exclusive ``flock`` on ``<run>.sweeplock`` (released by the kernel
  when the holder dies), so a point rescheduled while a lost worker still runs waits for it
  (instead of failing on the run's own one-writer lock);
- a checkpoint beside the run file → ``hebbsim.run(..., resume=True)`` continues after the
  last completed epoch, bit-identically (docs/guide.md); no checkpoint → the point starts over (a
  run file without a checkpoint holds no epoch that could be continued);
- a run file that already holds every epoch is not run again.

Every start is counted in ``<run>.attempts.json`` (host, process, SLURM/PBS job) and
announced to the client as a Dask event (topic :data:`EVENT_TOPIC`). The run's log lines go
to ``<run>.log``.

This module imports nothing heavy at the top: numba reads ``NUMBA_CACHE_DIR`` when it is
first imported, which must happen after :func:`_worker_environment` set it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

EVENT_TOPIC = "hebbsim-sweep"
TASK_PREFIX = "hebbsim-point"
"""Dask key prefix of sweep tasks (``hebbsim-point-<hash>-<try>``); its expected duration is set
long so that adaptive clusters ask for one worker per unfinished point."""

WORKER_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
    # JAX on CPU: one intra-op thread; on a GPU: allocate as needed (several workers may share it)
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
    "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
}
"""Environment of every worker process: one BLAS/numba/XLA thread (docs/engines.md: an
oversubscribed OpenBLAS makes an epoch 5–10× slower)."""

JOB_ID_VARS = ("SLURM_JOB_ID", "PBS_JOBID")


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().name)
    except (ImportError, ValueError):
        return f"pid{os.getpid()}"


def _worker_environment() -> None:
    """Pin BLAS/numba threads and give this worker its own numba cache folder (numba issue
    4807: processes writing one cache index at once can corrupt it). Only effective for what
    is not imported yet; the cluster also sets :data:`WORKER_ENV` before the worker starts."""
    for k, v in WORKER_ENV.items():
        os.environ.setdefault(k, v)
    if "numba" not in sys.modules and "HEBBSIM_SHARED_NUMBA_CACHE" not in os.environ:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in _worker_name())
        root = Path(tempfile.gettempdir()) / f"hebbsim-numba-{os.getuid()}"
        os.environ["NUMBA_CACHE_DIR"] = str(root / f"{socket.gethostname()}-{safe}")
    with contextlib.suppress(ImportError):
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    if "MALLOC_TRIM_THRESHOLD_" in os.environ:
        heap_allocations()


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest; arrays below it come from the reusable heap
TRIM_THRESHOLD = 256 * 2**20


def heap_allocations() -> bool:
    """Let glibc serve arrays below 32 MiB from its heap again; ``False`` off glibc.

    A Dask nanny starts its worker with ``MALLOC_TRIM_THRESHOLD_=65536`` (its
    ``distributed.nanny.pre-spawn-environ``, against fragmentation in long-lived workers). Any
    such setting turns off glibc's adaptive mmap threshold, so every array over 128 KiB becomes
    a fresh ``mmap`` that the kernel zero-fills page by page: a reference-engine epoch (many
    small jitted steps) ran 2-2.5x slower in a worker than in a plain process. A sweep point is
    one run in one process, which glibc's heap serves well. The local cluster does not set the
    variable (:func:`~hebbsim.simulate.sweep_cluster.dask_settings`); nannies started by a job
    script (SLURM, PBS) read Dask's defaults, so the worker resets the thresholds itself."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


@contextlib.contextmanager
def point_lock(run_path: Path, poll: float = 1.0):
    """Hold an exclusive lock on ``<run>.sweeplock`` while the point runs (waiting for a holder). File systems without
    ``flock`` (some Lustre mounts) run unlocked, with a warning in the point's log."""
    import fcntl

    log = logging.getLogger("hebbsim.sweep")
    lock = run_path.with_name(run_path.name + ".sweeplock")  # not the runner's own <run>.lock
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited:
                    holder = lock.read_text().strip() or "another process"
                    log.warning("point %s is locked by %s (a lost worker?); waiting", run_path.stem, holder)
                    waited = True
                time.sleep(poll)
            except OSError as err:
                if err.errno not in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                log.warning("cannot lock %s (%s): running without the one-writer lock", lock, err.strerror)
                break
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{socket.gethostname()} pid {os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the flock


def attempts_path(run_path: Path) -> Path:
    return run_path.with_name(run_path.name + ".attempts.json")


def read_attempts(run_path: Path) -> list[dict]:
    """Every start of a point so far (oldest first): time, host, pid, worker, job, epoch."""
    try:
        return json.loads(attempts_path(run_path).read_text())
    except (FileNotFoundError, ValueError):
        return []


def _record_attempt(run_path: Path, entry: dict) -> int:
    from ..data.atomic import replace_durably

    history = read_attempts(run_path) + [entry]
    tmp = attempts_path(run_path).with_suffix(".tmp")
    tmp.write_text(json.dumps(history, indent=1))
    replace_durably(tmp, attempts_path(run_path))
    return len(history)


def held_epochs(run_path: Path) -> int:
    """Epochs a run file holds (0 when it does not exist or cannot be read)."""
    import h5py

    try:
        with h5py.File(run_path, "r") as f:
            return int(f["epoch"].shape[0])
    except (OSError, KeyError):
        return 0


def _event(**msg) -> None:
    with contextlib.suppress(ImportError, ValueError):
        from distributed import get_worker

        worker = get_worker()
        worker.log_event(EVENT_TOPIC, {**msg, "worker": worker.address})


@contextlib.contextmanager
def _point_log(run_path: Path):
    """Send the run's output (printed lines and ``hebbsim`` log records) to ``<run>.log``."""
    logger = logging.getLogger("hebbsim")
    with open(run_path.with_name(run_path.name + ".log"), "a", buffering=1) as f:
        handler = logging.StreamHandler(f)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        level = logger.level
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        try:
            with contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
                yield f
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)


def run_point(task: dict) -> dict:
    """Run (or continue) one point. ``task``: ``name`` (the point), ``params`` (its validated
    parameters as a dict, ``record.path`` absolute). Returns ``epochs``, ``wall_time`` (s, this
    attempt), ``test_error`` (last epoch), ``attempt`` and ``host``; raises what the run raised."""
    _worker_environment()
    path = Path(task["params"]["record"]["path"])
    epochs = int(task["params"]["learning"]["epochs"])
    path.parent.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname()
    with point_lock(path):
        from ..data.checkpoint import checkpoint_path

        resume = checkpoint_path(path).is_file()
        held = held_epochs(path)
        start_epoch = held if resume else 0
        job = next((os.environ[v] for v in JOB_ID_VARS if v in os.environ), None)
        attempt = _record_attempt(path, {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": host,
                                         "pid": os.getpid(), "worker": _worker_name(), "job": job,
                                         "from_epoch": start_epoch})
        _event(point=task["name"], event="start", attempt=attempt, host=host, pid=os.getpid(), job=job)
        t0 = time.perf_counter()
        if held >= epochs:  # finished before (its result never reached a client)
            return {"epochs": held, "wall_time": 0.0, "test_error": _last_test_error(path),
                    "attempt": attempt, "host": host}
        if not resume and path.exists():
            _set_aside(path, held)
        from .runner import run

        with _point_log(path) as log:
            log.write(f"--- attempt {attempt} on {host} pid {os.getpid()} job {job}: "
                      f"{'resuming after epoch ' + str(start_epoch) if resume else 'starting'}\n")
            ds = run(task["params"], resume=resume, progress=False)
            n, test_error = int(ds.sizes["epoch"]), float(ds.test_error[-1])
            ds.close()
        return {"epochs": n, "wall_time": time.perf_counter() - t0, "test_error": test_error,
                "attempt": attempt, "host": host}


def _set_aside(path: Path, held: int) -> None:
    """A run file without a checkpoint cannot be continued: the point was killed before its
    first checkpoint (the file holds no epoch: removed) or the checkpoint was deleted (the
    file is kept as ``<run>.orphan-<time>``; never deleted with data in it)."""
    if held == 0:
        path.unlink()
        return
    aside = path.with_name(f"{path.name}.orphan-{time.strftime('%Y%m%dT%H%M%S')}")
    os.replace(path, aside)
    logging.getLogger("hebbsim.sweep").warning("%s has %d epochs but no checkpoint: kept as %s, starting over",
                                               path, held, aside.name)


def _last_test_error(path: Path) -> float:
    import h5py

    with h5py.File(path, "r") as f:
        return float(f["test_error"][-1])
