"""Checkpoints: everything a run needs to continue bit-identically, in one ``.npz`` file.

A checkpoint holds named numpy arrays (weights, biases, optimizer state, persistent states)
and a JSON-serialisable ``meta`` dict (epoch, RNG state, parameter file). It is written
atomically — a temporary file in the same folder, ``fsync``, then ``os.replace`` — so a run
killed at any moment leaves either the previous checkpoint or the new one, never a torn file.
It is written and read with ``allow_pickle=False``: a checkpoint cannot execute code.

**Manifest.** Beside the arrays a checkpoint stores a manifest: every array's name, shape and
dtype, the epoch, a SHA-256 digest of the arrays and ``meta`` (:func:`checkpoint_digest`) and
the state of the run file it belongs to (its name, the epochs it held, a digest of the last
epoch's metrics). :func:`load_checkpoint` refuses a checkpoint whose arrays or epoch do not
match its manifest; :mod:`hebbsim.simulate.resume` checks the manifest against the trainer
and the run file. A missing array, a rewound epoch or a checkpoint of another run cannot
resume silently.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from ..errors import HebbsimError
from .atomic import replace_durably
from .crashpoints import fault_point, stall_point

META_KEY = "__meta__"
MANIFEST_KEY = "__manifest__"
FORMAT = "hebbsim-checkpoint/2"
SUFFIX = ".ckpt.npz"


class CheckpointError(HebbsimError):
    """A checkpoint is missing, unreadable or does not belong to the run being resumed."""


def checkpoint_path(run_path: str | Path) -> Path:
    """The checkpoint beside a run file: ``runs/x.h5`` → ``runs/x.h5.ckpt.npz`` (the whole file
    name, so ``x.h5`` and ``x.nc`` never share a checkpoint)."""
    run_path = Path(run_path)
    return run_path.with_name(run_path.name + SUFFIX)


def checkpoint_digest(arrays: dict[str, np.ndarray], meta: dict) -> str:
    """SHA-256 (hex) of every array's name, dtype, shape and bytes (in name order) and of
    ``meta`` (canonical JSON): two checkpoints with the same digest restore the same run."""
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(json.dumps([k, a.dtype.str, list(a.shape)]).encode())
        h.update(a.tobytes())
    h.update(json.dumps(meta, sort_keys=True).encode())
    return h.hexdigest()


def _json_array(obj) -> np.ndarray:
    return np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8)


def save_checkpoint(path: str | Path, arrays: dict[str, np.ndarray], meta: dict,
                    run_file: dict | None = None) -> Path:
    """Write ``arrays``, ``meta`` and their manifest to ``path`` atomically (temporary file,
    fsync, rename). ``run_file`` describes the run file's state the checkpoint belongs to
    (``{"name", "epochs", "metrics"}``; stored in the manifest). On an I/O error (a full disk)
    the temporary file is removed, the previous checkpoint is left as it was and a
    :class:`CheckpointError` says so."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    payload = {k: np.asarray(v) for k, v in arrays.items()}
    for k, v in payload.items():
        if v.dtype.hasobject:
            raise ValueError(f"checkpoint array {k!r} holds Python objects; checkpoints never hold pickles")
    manifest = {
        "format": FORMAT,
        "epoch": meta.get("epoch"),
        "arrays": {k: {"shape": list(v.shape), "dtype": v.dtype.str} for k, v in payload.items()},
        "digest": checkpoint_digest(payload, meta),
        "run_file": run_file or {},
    }
    payload[META_KEY] = _json_array(meta)
    payload[MANIFEST_KEY] = _json_array(manifest)
    epoch = int(meta.get("epoch", -1))
    try:
        with open(tmp, "wb") as f:
            np.savez(f, allow_pickle=False, **payload)
            fault_point("checkpoint", epoch)
            f.flush()
            os.fsync(f.fileno())
        stall_point("checkpoint", epoch)
        replace_durably(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise CheckpointError(
            f"cannot write checkpoint {path}: {err.strerror or err}; the previous checkpoint is unchanged "
            "(free some space or fix the folder, then continue with --resume)") from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


def _describe_garbage(path: Path) -> str:
    size = path.stat().st_size
    if size == 0:
        return "is empty (0 bytes)"
    with open(path, "rb") as f:
        if f.read(4) == b"PK\x03\x04":
            return f"is torn (an incomplete .npz archive, {size} bytes)"
    return f"is not a hebbsim checkpoint (not an .npz archive; {size} bytes)"


def _read_json(arrays: dict[str, np.ndarray], key: str, path: Path):
    try:
        return json.loads(arrays.pop(key).tobytes().decode())
    except KeyError:
        raise CheckpointError(f"checkpoint {path} has no {key.strip('_')} (it was not written by this version "
                              "of hebbsim)") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"checkpoint {path} has a damaged {key.strip('_')} ({err})") from None


def load_checkpoint(path: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """Read and verify a checkpoint written by :func:`save_checkpoint`: ``(arrays, meta)``.

    Refused with a :class:`CheckpointError`: a missing, empty, non-archive or torn file; an
    object (pickled) array; no or a damaged manifest; arrays whose names, shapes or dtypes
    differ from the manifest's; a digest or epoch that does not match."""
    arrays, meta, _ = load_checkpoint_with_manifest(path)
    return arrays, meta


def load_checkpoint_with_manifest(path: str | Path) -> tuple[dict[str, np.ndarray], dict, dict]:
    """:func:`load_checkpoint`, also returning the verified manifest."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a regular file")
    try:
        if not zipfile.is_zipfile(path):  # np.load would fall back to unpickling ("allow_pickle")
            raise CheckpointError(f"checkpoint {path} {_describe_garbage(path)}")
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except CheckpointError:
        raise
    except ValueError as err:
        if "pickle" in str(err):
            raise CheckpointError(f"checkpoint {path} holds an object array; hebbsim never loads pickled data "
                                  "(this is not a hebbsim checkpoint)") from None
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from None
    except Exception as err:  # a damaged archive fails in many ways (zipfile, zlib, struct, numpy header)
        raise CheckpointError(f"cannot read checkpoint {path} (torn or damaged): {type(err).__name__}: {err}") \
            from None
    meta = _read_json(arrays, META_KEY, path)
    manifest = _read_json(arrays, MANIFEST_KEY, path)
    problems = verify_manifest(arrays, meta, manifest)
    if problems:
        raise CheckpointError(f"checkpoint {path} does not match its manifest: " + "; ".join(problems))
    return arrays, meta, manifest


def verify_manifest(arrays: dict[str, np.ndarray], meta: dict, manifest: dict) -> list[str]:
    """What is inconsistent between a checkpoint's arrays, ``meta`` and manifest (empty: nothing)."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return [f"unknown format {manifest.get('format') if isinstance(manifest, dict) else manifest!r} "
                f"(expected {FORMAT})"]
    if not isinstance(meta, dict):
        return ["its metadata is not a table"]
    listed = manifest.get("arrays", {})
    problems = [f"array {k!r} is missing" for k in sorted(set(listed) - set(arrays))]
    problems += [f"array {k!r} is not listed" for k in sorted(set(arrays) - set(listed))]
    for k in sorted(set(listed) & set(arrays)):
        want, a = listed[k], arrays[k]
        if list(a.shape) != list(want.get("shape", [])) or a.dtype.str != want.get("dtype"):
            problems.append(f"array {k!r} is {a.dtype.str}{list(a.shape)}, the manifest says "
                            f"{want.get('dtype')}{want.get('shape')}")
    if manifest.get("epoch") != meta.get("epoch"):
        problems.append(f"epoch {meta.get('epoch')!r}, the manifest says {manifest.get('epoch')!r}")
    if not problems and checkpoint_digest(arrays, meta) != manifest.get("digest"):
        problems.append("its arrays or metadata were changed after it was written (digest mismatch)")
    return problems
