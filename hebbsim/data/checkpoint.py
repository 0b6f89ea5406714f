"""Checkpoints: everything a run needs to continue bit-identically, in one ``.npz`` file.

A checkpoint holds named numpy arrays (weights, biases, optimizer state, persistent states)
and a JSON-serialisable ``meta`` dict (epoch, RNG state, parameter file). It is written
atomically — a temporary file in the same folder, ``fsync``, then ``os.replace`` — so a run
killed at any moment leaves either the previous checkpoint or the new one, never a torn file.
It is written and read with ``allow_pickle=False``: a checkpoint cannot execute code.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from ..errors import HebbsimError
from .atomic import replace_durably
from .crashpoints import stall_point

META_KEY = "__meta__"


class CheckpointError(HebbsimError):
    """A checkpoint is missing, unreadable or does not belong to the run being resumed."""


def checkpoint_path(run_path: str | Path) -> Path:
    """The checkpoint beside a run file: ``runs/x.h5`` → ``runs/x.ckpt.npz``."""
    run_path = Path(run_path)
    return run_path.with_name(run_path.stem + ".ckpt.npz")


def save_checkpoint(path: str | Path, arrays: dict[str, np.ndarray], meta: dict) -> Path:
    """Write ``arrays`` and ``meta`` to ``path`` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    payload = {k: np.asarray(v) for k, v in arrays.items()}
    payload[META_KEY] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(tmp, "wb") as f:
        np.savez(f, allow_pickle=False, **payload)
        f.flush()
        os.fsync(f.fileno())
    stall_point("checkpoint", int(meta.get("epoch", -1)))
    replace_durably(tmp, path)
    return path


def load_checkpoint(path: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """Read a checkpoint written by :func:`save_checkpoint`: ``(arrays, meta)``."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from None
    try:
        meta = json.loads(arrays.pop(META_KEY).tobytes().decode())
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} has no valid metadata ({err})") from None
    return arrays, meta
