"""``hebbsim.sweep``: run every point of a sweep file on a Dask cluster, skipping what is done.

The client (this process) validates every point, writes the sweep folder's index, submits one
Dask task per unfinished point (:func:`~hebbsim.simulate.sweep_worker.run_point`) and follows
them: a point whose worker dies is rescheduled by Dask and continues from its checkpoint in
another worker (or job); a point whose run raises is submitted again up to ``retries`` times,
then marked failed with its message while the others go on. The index (``index.json``) is
rewritten as points start and finish; ``hebbsim sweep --status DIR`` prints it and
:func:`~hebbsim.simulate.sweep_dataset.open_sweep` opens the results as one Dataset.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..errors import HebbsimError
from pydantic import ValidationError

from .sweep_cluster import check_batch_system, dask_settings, make_cluster
from .sweep_file import ClusterConfig, Point, SweepError, SweepSpec, load_sweep
from .sweep_index import SweepIndex
from .sweep_worker import EVENT_TOPIC, TASK_PREFIX, held_epochs, run_point

log = logging.getLogger("hebbsim.sweep")

LOCK_NAME = ".sweep.lock"
STATUS_EVERY = 60.0  # seconds between status log lines when there is no progress bar
SAVE_EVERY = 5.0  # seconds between index writes while nothing finishes


class SweepBusyError(HebbsimError):
    """Another process is running the same sweep folder."""


@dataclass
class Sweep:
    """A sweep's folder and index, as :func:`sweep` left them."""

    folder: Path
    index: SweepIndex
    dashboard: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        return self.index.counts()

    @property
    def complete(self) -> bool:
        """Every point is done."""
        return self.counts["done"] == len(self.index.points)

    def open(self, **kwargs):
        """The results as one lazy xarray Dataset (:func:`hebbsim.open_sweep`)."""
        from .sweep_dataset import open_sweep

        return open_sweep(self.folder, **kwargs)

    def table(self) -> str:
        return self.index.table()

    def __repr__(self) -> str:
        return f"Sweep({str(self.folder)!r}: {self.index.summary()})"


@contextlib.contextmanager
def sweep_lock(folder: Path):
    """One client per sweep folder: an exclusive ``flock`` on ``<folder>/.sweep.lock``."""
    import fcntl

    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = path.read_text().strip() or "another process"
            raise SweepBusyError(f"{folder} is being run by another hebbsim sweep ({holder}); wait for it or "
                                 "watch it with: hebbsim sweep --status " + str(folder)) from None
        except OSError as err:
            if err.errno not in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            log.warning("cannot lock %s (%s): make sure only one hebbsim sweep runs this folder", path, err.strerror)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def sweep(sweep_file: str | Path | dict, *, cluster: str | None = None, workers: int | None = None,
          output: str | Path | None = None, client=None, progress: bool | None = None,
          poll: float = 1.0) -> Sweep:
    """Run a sweep file's unfinished points and return the sweep's state.

    ``sweep_file``: a sweep file (TOML) or a dict with its contents (see
    :mod:`hebbsim.simulate.sweep_file`). ``cluster`` (``"local"``, ``"slurm"``, ``"pbs"``) and
    ``workers`` (points at once) override the file's ``[cluster]`` table; ``output`` its
    folder. ``client``: a ``distributed.Client`` of a cluster of your own (e.g. inside one
    allocation); give its workers one thread each. ``progress``: a progress bar (default: on
    a terminal); else log lines. Every point is validated before anything runs."""
    spec = load_sweep(sweep_file, output)
    update = {k: v for k, v in (("kind", cluster), ("workers", workers)) if v is not None}
    if update:
        try:
            spec.cluster = ClusterConfig.model_validate({**spec.cluster.model_dump(), **update})
        except ValidationError as err:
            e = err.errors()[0]
            raise SweepError(f"cluster.{e['loc'][0]} = {e['input']!r}: {e['msg']}") from None
    if client is None:
        check_batch_system(spec.cluster.kind)
    (spec.folder / "points").mkdir(parents=True, exist_ok=True)
    with sweep_lock(spec.folder):
        index = SweepIndex.from_spec(spec)
        index.save()
        todo = [p for p in spec.points if index.points[p.name].status != "done"]
        done = len(spec.points) - len(todo)
        log.info("sweep %s: %d points, %d done, %d to run", spec.folder, len(spec.points), done, len(todo))
        dashboard = None
        if todo:
            execution = _Execution(spec, index, progress if progress is not None else sys.stderr.isatty(), poll)
            execution.run(todo, client)
            dashboard = execution.dashboard
        index.refresh()
        index.save()
        log.info("sweep %s: %s", spec.folder, index.summary())
    return Sweep(spec.folder, index, dashboard)


def _task(point: Point) -> dict:
    # to_toml drops tables that do not apply to the rule; the worker validates the dict again
    return {"name": point.name, "params": tomllib.loads(point.params.to_toml())}


def _is_killed_worker(exc: BaseException) -> bool:
    from distributed.scheduler import KilledWorker

    return isinstance(exc, KilledWorker)


def _describe(exc: BaseException, allowed_failures: int) -> str:
    if _is_killed_worker(exc):
        n = allowed_failures + 1
        return (f"KilledWorker: its worker died {n} time{'s' if n > 1 else ''} while running it without progress (killed, "
                "out of memory, or its job ended); see the worker/job logs")
    return f"{type(exc).__name__}: {exc}".strip()


class _Execution:
    """Submit the unfinished points, follow them, keep the index up to date."""

    def __init__(self, spec: SweepSpec, index: SweepIndex, progress: bool, poll: float):
        self.spec, self.index, self.progress, self.poll = spec, index, progress, poll
        self.points = {p.name: p for p in spec.points}
        self.submissions: dict[str, int] = {}  # point → submissions in this launch
        self.errors: dict[str, int] = {}  # point → attempts that raised in this launch
        self.current: dict[str, str] = {}  # point → key of its current task
        self.started: dict[str, dict] = {}  # point → its latest start event
        self.submitted_at: dict[str, int] = {}  # point → epochs its run file held when it was submitted
        self.dashboard: str | None = None

    # -- events from workers ----------------------------------------------------------------
    def _on_event(self, event) -> None:
        _, msg = event
        if isinstance(msg, dict) and msg.get("event") == "start":
            self.started[msg["point"]] = msg

    def _submit(self, client, point: Point):
        n = self.submissions.get(point.name, 0) + 1
        self.submissions[point.name] = n
        # the digit right after the prefix ends Dask's key prefix: every task is "hebbsim-point"
        key = f"{TASK_PREFIX}-{n}-{point.digest}"
        self.current[point.name] = key
        self.submitted_at[point.name] = held_epochs(point.path)
        self.started.pop(point.name, None)
        return client.submit(run_point, _task(point), key=key, pure=False)

    # -- the loop ---------------------------------------------------------------------------
    def run(self, todo: list[Point], client=None) -> None:
        from distributed import Client

        with dask_config(self.spec.cluster):
            cluster = own_client = None
            try:
                if client is None:
                    cluster = make_cluster(self.spec.cluster, self.spec.folder, len(todo))
                    client = own_client = Client(cluster)
                self._follow(client, todo)
            finally:
                for rec in self.index.points.values():
                    if rec.status == "running":
                        rec.status = "pending"
                self.index.refresh([p.name for p in todo])
                self.index.save()
                if own_client is not None:
                    with contextlib.suppress(Exception):
                        own_client.close()
                if cluster is not None:
                    with contextlib.suppress(Exception):
                        cluster.close()

    def _follow(self, client, todo: list[Point]) -> None:
        from distributed import as_completed
        from tqdm.auto import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        self.dashboard = _dashboard(client)
        kind = self.spec.cluster.kind
        log.info("running %d points on %s%s", len(todo), kind if client.cluster is not None else "your cluster",
                 f"; Dask dashboard: {self.dashboard}" if self.dashboard else "")
        client.subscribe_topic(EVENT_TOPIC, self._on_event)
        futures = {}
        for p in todo:
            futures[self._submit(client, p)] = p
        pending = as_completed(list(futures))
        counts = self.index.counts()
        bar = tqdm(total=len(self.index.points), initial=counts["done"] + counts["failed"], unit="point",
                   desc="sweep", disable=not self.progress, dynamic_ncols=True, file=sys.stderr)
        last_save = last_status = time.monotonic()
        redirect = logging_redirect_tqdm([log]) if self.progress else contextlib.nullcontext()
        with redirect:
            try:
                while not pending.is_empty():
                    finished = pending.next_batch(block=False)
                    for f in finished:
                        point = futures.pop(f)
                        if self._finished(f, point):
                            g = self._submit(client, point)
                            futures[g] = point
                            pending.add(g)
                        bar.update(int(self.index.points[point.name].status in ("done", "failed")))
                    self._mark_running(client, futures.values())
                    now = time.monotonic()
                    if finished or now - last_save > SAVE_EVERY:
                        self.index.save()
                        last_save = now
                    if self.progress:
                        bar.set_postfix_str(self._running_text(), refresh=True)
                    elif now - last_status > STATUS_EVERY:
                        log.info("sweep: %s%s", self.index.summary(), self._running_text(counts=False))
                        last_status = now
                    if not finished:
                        time.sleep(self.poll)
            finally:
                bar.close()
                with contextlib.suppress(Exception):
                    client.unsubscribe_topic(EVENT_TOPIC)

    def _mark_running(self, client, points) -> None:
        """A point runs when its current task announced its start on a worker that is still
        there; its epochs are read from its run file."""
        workers = set(client.scheduler_info().get("workers", {}))
        for point in points:
            rec = self.index.points[point.name]
            msg = self.started.get(point.name)
            running = msg is not None and msg.get("worker") in workers
            rec.status = "running" if running else "pending"
            if running:
                rec.host = msg.get("host")
                rec.attempts = msg.get("attempt", rec.attempts)
        self.index.refresh([p.name for p in points if self.index.points[p.name].status == "running"])

    def _running_text(self, counts: bool = True) -> str:
        """``2 running, 0 failed | lr=0.1_seed=1 3/30 | …``: the running points and their epochs."""
        c = self.index.counts()
        running = [r for r in self.index.points.values() if r.status == "running"]
        parts = [f"{c['running']} running, {c['failed']} failed"] if counts else [""]
        parts += [f"{r.label or r.name} {r.epochs}/{r.epochs_wanted}" for r in running[:4]]
        return " | ".join(parts) + (" …" if len(running) > 4 else "")

    def _finished(self, future, point: Point) -> bool:
        """Record a finished task; True if the point is to be submitted again."""
        rec = self.index.points[point.name]
        self.started.pop(point.name, None)
        if future.status == "finished":
            r = future.result()
            rec.status, rec.error = "done", None
            rec.epochs, rec.test_error, rec.host = r["epochs"], r["test_error"], r["host"]
            rec.wall_time += r["wall_time"]
            self.index.refresh([point.name])
            log.info("point %s done: %d epochs, test error %.2f %%, %.1f s (attempt %d on %s)", point.name,
                     r["epochs"], 100 * r["test_error"], r["wall_time"], r["attempt"], r["host"])
            return False
        try:
            exc = future.exception()
        except Exception as err:  # cancelled: the scheduler lost it
            exc = err
        rec.error = _describe(exc, self.spec.cluster.allowed_failures)
        self.index.refresh([point.name])
        if _is_killed_worker(exc) and rec.epochs > self.submitted_at.get(point.name, 0):
            # its jobs ended (walltime) while it made progress: a long run crossing many jobs
            log.warning("point %s: its workers died %d times; it got from epoch %d to %d: continuing",
                        point.name, self.spec.cluster.allowed_failures + 1, self.submitted_at[point.name], rec.epochs)
            rec.status = "pending"
            return True
        n = self.errors[point.name] = self.errors.get(point.name, 0) + 1
        if n <= self.spec.retries:
            log.warning("point %s: %s; running it again (retry %d of %d)", point.name, rec.error, n,
                        self.spec.retries)
            rec.status = "pending"
            return True
        rec.status = "failed"
        log.error("point %s failed after %d attempts: %s", point.name, n, rec.error)
        return False


def _dashboard(client) -> str | None:
    try:
        import bokeh  # noqa: F401  (the dashboard needs it)
    except ImportError:
        return None
    with contextlib.suppress(Exception):
        return client.dashboard_link
    return None


@contextlib.contextmanager
def dask_config(cfg: ClusterConfig):
    import dask

    with dask.config.set(dask_settings(cfg)):
        yield
