"""Dask clusters for sweeps: a ``LocalCluster`` on one machine, dask-jobqueue on SLURM and PBS.

Every worker is one process with one thread: it runs one point at a time, and BLAS, numba
and XLA use one thread in it (:data:`~hebbsim.simulate.sweep_worker.WORKER_ENV`, set in the
worker's environment before Python starts: LocalCluster's ``env``, the job script's
prologue). On SLURM/PBS each job runs ``processes`` workers for at most ``lifetime`` (default
90 % of the walltime, less a random stagger): a retiring worker's point is rescheduled and
continues from its checkpoint in another job, and ``adapt`` keeps one worker per unfinished
point, up to ``workers``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import dask

from ..errors import HebbsimError
from .sweep_file import ClusterConfig, duration_seconds
from .sweep_worker import TASK_PREFIX, WORKER_ENV

DEFAULT_GB_PER_WORKER = 4
DEFAULT_MAX_BATCH_WORKERS = 32


SUBMIT = {"slurm": "sbatch", "pbs": "qsub"}


class ClusterError(HebbsimError):
    """The batch system cannot run the sweep's worker jobs as configured."""


def check_batch_system(kind: str) -> None:
    """Fail early (before a scheduler starts) when the batch system's submit command is missing."""
    if kind in SUBMIT and shutil.which(SUBMIT[kind]) is None:
        raise ClusterError(f"cluster.kind = {kind!r}: {SUBMIT[kind]} is not on PATH; run the sweep on a login node "
                           f"of the {kind.upper()} cluster (or inside an allocation), or use --cluster local")


def check_job_script(cluster, kind: str) -> None:
    """SLURM: ``sbatch --test-only`` the worker job script, so that a wrong partition, account
    or size is reported now instead of jobs failing to submit in the background."""
    if kind != "slurm":
        return
    with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as f:
        f.write(cluster.job_script())
    try:
        out = subprocess.run(["sbatch", "--test-only", f.name], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return  # a slow controller is no reason to refuse; real submissions will tell
    finally:
        os.unlink(f.name)
    if out.returncode != 0:
        msg = " ".join((out.stderr or out.stdout).split())
        raise ClusterError(f"cluster: SLURM refuses the worker job ({msg}); check queue, account, walltime, cores and "
                           "memory in [cluster]")


def dask_settings(cfg: ClusterConfig) -> dict:
    """Scheduler settings for long, independent tasks; applied (``dask.config.set``) while the
    scheduler is created and the sweep runs."""
    return {
        # exactly one point per worker thread: no point waits in a busy worker's queue
        "distributed.scheduler.worker-saturation": 1.0,
        # a point is expected to take long, so adapt asks for one worker per unfinished point
        "distributed.scheduler.default-task-durations": {TASK_PREFIX: "1h"},
        "distributed.adaptive.target-duration": "1s",
        # worker deaths (kill, scancel, walltime) during one attempt before it counts as failed
        "distributed.scheduler.allowed-failures": cfg.allowed_failures,
        # glibc's own malloc tuning in the workers: None unsets Dask's (sweep_worker.heap_allocations says why)
        "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    }


def worker_env(cfg: ClusterConfig) -> dict[str, str]:
    return {**WORKER_ENV, **cfg.env}


def _default_workers() -> int:
    with contextlib.suppress(AttributeError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def local_cluster(cfg: ClusterConfig, n_points: int):
    """A ``LocalCluster`` of ``min(workers, n_points)`` single-threaded worker processes."""
    from distributed import LocalCluster

    n = max(1, min(cfg.workers or _default_workers(), n_points))
    return LocalCluster(n_workers=n, threads_per_worker=1, processes=True, env=worker_env(cfg),
                        dashboard_address=cfg.dashboard_address, local_directory=cfg.local_directory,
                        silence_logs=logging.ERROR)


def lifetime_args(walltime: str | None, cfg: ClusterConfig) -> list[str]:
    """``--lifetime``/``--lifetime-stagger`` worker arguments: the configured ones, else from
    the walltime (lifetime + stagger ≤ 90 % of it), else none."""
    lifetime, stagger = cfg.lifetime, cfg.lifetime_stagger
    if lifetime is None and walltime:
        wall = duration_seconds(walltime)
        st = duration_seconds(stagger) if stagger else min(300.0, 0.05 * wall)
        lifetime, stagger = f"{max(60.0, 0.9 * wall - st):.0f}s", f"{st:.0f}s"
    if lifetime is None:
        return []
    # the dask worker CLI reads '600s', not SLURM's '00:10:00'
    args = ["--lifetime", f"{duration_seconds(lifetime):.0f}s"]
    if stagger:
        args += ["--lifetime-stagger", f"{duration_seconds(stagger):.0f}s"]
    return args


def jobqueue_kwargs(cfg: ClusterConfig, folder: Path) -> dict:
    """Keyword arguments of ``SLURMCluster``/``PBSCluster`` for ``cfg``: each job runs
    ``processes`` single-threaded workers on ``cores`` CPUs; unset keys fall back to Dask's
    jobqueue configuration, then to one worker with 4 GB."""
    kind = cfg.kind
    conf = lambda key: dask.config.get(f"jobqueue.{kind}.{key}", None)  # noqa: E731
    processes = cfg.processes or cfg.cores or conf("processes") or conf("cores") or 1
    cores = cfg.cores or max(processes, conf("cores") or 1)
    if cores < processes:
        raise ValueError(f"cluster.cores = {cores} < cluster.processes = {processes}: every worker needs a CPU")
    memory = cfg.memory or conf("memory") or f"{DEFAULT_GB_PER_WORKER * processes}GB"
    walltime = cfg.walltime or conf("walltime")
    env = worker_env(cfg)
    kw = dict(
        cores=processes, processes=processes, memory=memory, walltime=walltime,
        job_name="hebbsim-sweep",
        job_extra_directives=list(cfg.job_extra_directives) or None,
        job_script_prologue=[*(f"export {k}={shlex.quote(v)}" for k, v in env.items()), *cfg.job_script_prologue],
        worker_extra_args=lifetime_args(walltime, cfg) or None,
        log_directory=str(Path(cfg.log_directory) if cfg.log_directory else folder / "logs"),
        python=cfg.python or sys.executable,
        scheduler_options={"dashboard_address": cfg.dashboard_address},
        silence_logs="error",
    )
    for key in ("queue", "account", "local_directory", "interface"):
        if getattr(cfg, key) is not None:
            kw[key] = getattr(cfg, key)
    if kind == "slurm" and cores != processes:
        kw["job_cpu"] = cores
    if kind == "pbs":
        spec = cfg.resource_spec or conf("resource-spec")
        if spec is None and cores != processes:
            from dask_jobqueue.pbs import pbs_format_bytes_ceil

            spec = f"select=1:ncpus={cores}:mem={pbs_format_bytes_ceil(dask.utils.parse_bytes(memory))}"
        if spec is not None:
            kw["resource_spec"] = spec
    return {k: v for k, v in kw.items() if v is not None}


def make_cluster(cfg: ClusterConfig, folder: Path, n_points: int):
    """The cluster ``cfg`` describes, sized for ``n_points`` points to run. A SLURM/PBS cluster
    submits no job yet; it adapts between 0 jobs and enough for ``min(workers, n_points)``."""
    if cfg.kind == "local":
        return local_cluster(cfg, n_points)
    if cfg.kind == "slurm":
        from dask_jobqueue import SLURMCluster as Cluster
    else:
        from dask_jobqueue import PBSCluster as Cluster
    check_batch_system(cfg.kind)
    kw = jobqueue_kwargs(cfg, folder)
    Path(kw["log_directory"]).mkdir(parents=True, exist_ok=True)
    cluster = Cluster(**kw)
    try:
        check_job_script(cluster, cfg.kind)
    except ClusterError:
        cluster.close()
        raise
    workers = min(cfg.workers or DEFAULT_MAX_BATCH_WORKERS, n_points)
    cluster.adapt(minimum_jobs=0, maximum_jobs=max(1, math.ceil(workers / kw["processes"])), interval="2s",
                  wait_count=5)
    return cluster
