"""One writer per run: an exclusive lock beside the run file (``runs/x.h5`` → ``runs/x.h5.lock``).

The lock is an advisory ``flock`` on the lock file, which the operating system releases when
the holder ends in any way (SIGKILL included), so a killed run never leaves a stale lock. The
file holds the holder's pid, host and start time, which a refused second writer reports.
(``flock`` on network file systems is only as good as the file system's locking; on a single
machine and on Lustre/GPFS/NFSv4 it is exclusive.)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from pathlib import Path

from ..errors import HebbsimError


class RunLockedError(HebbsimError):
    """Another process is writing this run (or the run's lock file cannot be created)."""


def lock_path(run_path: str | Path) -> Path:
    run_path = Path(run_path)
    return run_path.with_name(run_path.name + ".lock")


class RunLock:
    """``with RunLock(path):`` — hold the run file's lock, or raise :class:`RunLockedError`."""

    def __init__(self, run_path: str | Path):
        self.run_path = Path(run_path)
        self.path = lock_path(run_path)
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self._acquire()
        except (OSError, ValueError) as err:  # the run's folder cannot be made or written (or a bad name)
            raise RunLockedError(f"record.path = {self.run_path}: cannot create the run's lock file {self.path} "
                                 f"({getattr(err, 'strerror', None) or err}); choose a record.path in a folder "
                                 "you can write") from None

    def _acquire(self) -> None:
        if not self.run_path.name or os.path.isdir(self.run_path):
            raise RunLockedError(f"record.path = {self.run_path}: is a folder; give a file name, e.g. "
                                 f"{self.run_path / 'run.h5'}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(10):  # retry if the file we locked was removed by a holder releasing it
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown process"
                os.close(fd)
                raise RunLockedError(
                    f"record.path = {self.run_path}: another hebbsim process is writing this run ({holder}); "
                    "one run file has one writer. Wait for it to finish (or stop it), or choose another "
                    "record.path") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()} since "
                              f"{time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode(), 0)
                self._fd = fd
                return
            os.close(fd)
        raise RunLockedError(f"record.path = {self.run_path}: cannot take the lock {self.path}")

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            with contextlib.suppress(OSError):  # before unlocking: a waiting writer then re-checks the inode
                self.path.unlink()
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
