"""Durable, atomic file replacement: how run files and checkpoints are published.

A file is written under a temporary name in the destination's folder, flushed to the device
(``fsync``) and renamed over the destination (``os.replace``, atomic on POSIX file systems);
the folder is then fsynced so the rename itself survives a power cut. A reader therefore sees
the old file or the new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def fsync_path(path: str | Path) -> None:
    """Flush a file (or a folder's entries) to the storage device."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(tmp: Path, path: Path) -> None:
    """Atomically move a written, fsynced ``tmp`` over ``path`` and make the rename durable."""
    os.replace(tmp, path)
    with contextlib.suppress(OSError):  # some file systems cannot fsync a folder; the rename is still atomic
        fsync_path(path.parent)
