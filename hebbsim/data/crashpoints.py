"""Deterministic pause points for crash tests of the run store and checkpoints.

With ``HEBBSIM_TEST_STALL="<stage>:<epoch>:<marker file>"`` in the environment, the writer
creates the marker file and sleeps when it reaches ``stage`` while writing ``epoch``, so a test
can SIGKILL it at exactly that moment. Stages: ``copy`` (run file copied to its temporary
file), ``append`` (temporary run file half written), ``publish`` (temporary run file complete,
not yet renamed), ``published`` (run file renamed, checkpoint not yet written), ``checkpoint``
(temporary checkpoint complete, not yet renamed). Without the variable this is a no-op.

With ``HEBBSIM_TEST_FAULT="<stage>:<epoch>"`` the writer raises ``OSError(ENOSPC)`` (a full
disk) at :func:`fault_point` ``stage`` while writing ``epoch`` — to test what an I/O error in
the middle of a write leaves behind. Stages: ``copy``, ``append``, ``publish``, ``checkpoint``.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

STALL_ENV = "HEBBSIM_TEST_STALL"
FAULT_ENV = "HEBBSIM_TEST_FAULT"


def stall_point(stage: str, epoch: int) -> None:
    """Pause here (for a test to kill the process) if ``HEBBSIM_TEST_STALL`` names this point."""
    spec = os.environ.get(STALL_ENV)
    if not spec:
        return
    want_stage, want_epoch, marker = spec.split(":", 2)
    if want_stage == stage and int(want_epoch) == epoch:
        Path(marker).write_text(f"{stage} {epoch}\n")
        time.sleep(600)


def fault_point(stage: str, epoch: int) -> None:
    """Raise ``OSError(ENOSPC)`` here if ``HEBBSIM_TEST_FAULT`` names this point."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    want_stage, want_epoch = spec.split(":", 1)
    if want_stage == stage and int(want_epoch) == epoch:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC) + f" (injected at {stage}, epoch {epoch})")
