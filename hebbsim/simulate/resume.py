"""``--resume``: continue a run from its checkpoint, refusing anything that would not be the same run.

A checkpoint is accepted only if (:mod:`hebbsim.data.checkpoint` checks the first two):

- it is a readable archive of arrays (no pickles) with a manifest;
- its arrays' names, shapes and dtypes and its digest match the manifest, and its epoch the
  manifest's epoch;
- its arrays are the ones this run's trainer holds (names, shapes, dtypes): a checkpoint
  missing a weight or optimizer array, or with a wrong-shaped one, is refused;
- its parameters equal the run's, :data:`MAY_CHANGE` aside;
- the run file holds at least its epoch, its digest is the one the run file recorded for that
  epoch (attribute ``checkpoint_digests``) and the run file's metrics of that epoch are the ones
  the checkpoint recorded: a checkpoint with a rewound epoch, or of another run, is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tomllib
from pathlib import Path

import numpy as np

from ..data.checkpoint import CheckpointError, load_checkpoint_with_manifest
from ..data.params import RunParams, load_params
from ..data.store import METRICS, RunStore, StoreError
from ..errors import HebbsimError

MAY_CHANGE = ("learning.epochs", "dynamics.threads")
"""Parameters a resumed run may change."""

logger = logging.getLogger(__name__)


class ResumeError(HebbsimError):
    """A run cannot be resumed as asked; the message names the fix."""


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(_flatten(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def parameter_differences(old_toml: str, new_toml: str) -> dict[str, tuple]:
    """Dotted keys whose values differ between two parameter files: key → (old, new).

    ``old_toml`` (a checkpoint's, perhaps written by an older hebbsim) is read as this version
    reads it first, so that a key added since is at its default — the behaviour the old version
    had — and not a difference; if it no longer validates, it is compared as written."""
    old_parsed = tomllib.loads(old_toml)
    try:
        old_parsed = tomllib.loads(load_params(old_parsed).to_toml())
    except HebbsimError:
        pass  # e.g. a key removed since: the comparison names it
    old, new = _flatten(old_parsed), _flatten(tomllib.loads(new_toml))
    return {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}


def metrics_digest(metrics: dict[str, float]) -> str:
    """SHA-256 (hex, 16 digits) of an epoch's scalars :data:`METRICS`, exactly (as stored, float64)."""
    values = [[name, float(np.float64(metrics[name])).hex()] for name in sorted(METRICS)]
    return hashlib.sha256(json.dumps(values).encode()).hexdigest()[:16]


def _start_over(store: RunStore) -> str:
    return (f"To start this run over, run it with --overwrite (this replaces {store.path}), or set another "
            "record.path")


def _same_arrays(expected: dict[str, np.ndarray], arrays: dict[str, np.ndarray]) -> list[str]:
    """How a checkpoint's arrays differ from what the trainer holds (names, shapes, dtype kinds)."""
    problems = [f"{k!r} is missing" for k in sorted(set(expected) - set(arrays))]
    problems += [f"{k!r} does not belong to this run" for k in sorted(set(arrays) - set(expected))]
    for k in sorted(set(expected) & set(arrays)):
        want, have = np.asarray(expected[k]), arrays[k]
        if want.shape != have.shape:
            problems.append(f"{k!r} has shape {have.shape}, this run's is {want.shape}")
        elif want.dtype.kind != have.dtype.kind or (want.ndim and want.dtype != have.dtype):
            problems.append(f"{k!r} has dtype {have.dtype}, this run's is {want.dtype}")
    return problems


def resume_point(cfg: RunParams, store: RunStore, ckpt: Path, trainer, log=None) -> int:
    """Restore ``trainer`` from the checkpoint ``ckpt`` and return the last completed epoch
    (0 when there is neither a checkpoint nor a run file with epochs: the run starts from
    scratch). ``log`` is called with each message (besides :mod:`logging`)."""
    say = log or logger.info
    if not ckpt.exists():
        held = store.epochs() if store.path.exists() else 0
        if held:
            raise ResumeError(f"cannot resume {store.path}: it holds {held} epochs but has no checkpoint {ckpt} "
                              "(deleted, or written by an older hebbsim), so its training cannot be continued "
                              f"bit-identically. {_start_over(store)}")
        say(f"no checkpoint {ckpt}: starting from epoch 1")
        return 0
    try:
        arrays, meta, manifest = load_checkpoint_with_manifest(ckpt)
    except CheckpointError as err:
        raise ResumeError(f"cannot resume {store.path}: {err}. Restore the checkpoint from a backup, or start "
                          f"over. {_start_over(store)}") from None
    try:
        diff = {k: v for k, v in parameter_differences(meta["parameters"], cfg.to_toml()).items()
                if k not in MAY_CHANGE}
        epoch = int(meta["epoch"])
        trainer_meta = meta["trainer"]
    except (KeyError, TypeError, ValueError, tomllib.TOMLDecodeError) as err:
        raise ResumeError(f"cannot resume {store.path}: checkpoint {ckpt} has incomplete metadata ({err!r}). "
                          f"{_start_over(store)}") from None
    if diff:
        lines = "\n".join(f"  {k}: checkpoint {a!r}, now {b!r}" for k, (a, b) in diff.items())
        raise ResumeError(
            f"cannot resume {store.path}: the parameters differ from the checkpoint's ({ckpt}) in\n{lines}\n"
            f"Only {', '.join(MAY_CHANGE)} may change on resume. Resume with the checkpoint's parameters "
            f"(the run file's 'parameters' attribute), or start a new run without --resume "
            f"(with another record.path, or --overwrite)."
        )
    if epoch > cfg.learning.epochs:
        raise ResumeError(f"cannot resume {store.path}: its checkpoint is at epoch {epoch}, beyond "
                          f"learning.epochs = {cfg.learning.epochs}; ask for at least {epoch} epochs")
    problems = _same_arrays(trainer.state_dict()[0], arrays)
    if problems:
        raise ResumeError(f"cannot resume {store.path}: checkpoint {ckpt} does not hold this run's state: "
                          + "; ".join(problems) + f". {_start_over(store)}")
    try:
        held = store.epochs() if store.path.exists() else 0
    except StoreError as err:
        raise ResumeError(f"cannot resume: {err}. Its checkpoint ({ckpt}, epoch {epoch}) cannot restore the "
                          f"records of the epochs before it. Restore the run file, or move it aside and start "
                          f"over ({_start_over(store)})") from None
    if held < epoch:
        raise ResumeError(f"cannot resume {store.path}: the run file holds {held} epochs but the checkpoint "
                          f"{ckpt} is at epoch {epoch} (the file was replaced or deleted). {_start_over(store)}")
    if held > cfg.learning.epochs:
        raise ResumeError(f"cannot resume {store.path}: the run file already holds {held} epochs, more than "
                          f"learning.epochs = {cfg.learning.epochs}; ask for at least {held} epochs")
    _check_run_file(store, ckpt, epoch, manifest)
    trainer.load_state_dict(arrays, trainer_meta)
    say(f"resuming {store.path} after epoch {epoch}")
    return epoch


def _check_run_file(store: RunStore, ckpt: Path, epoch: int, manifest: dict) -> None:
    """The checkpoint belongs to this run file at ``epoch``: the digest the run file recorded for
    that epoch and the epoch's metrics match the checkpoint's manifest."""
    recorded = str(store.attrs().get("checkpoint_digests", "")).split()
    if len(recorded) >= epoch and recorded[epoch - 1] != str(manifest.get("digest", ""))[:16]:
        raise ResumeError(f"cannot resume {store.path}: checkpoint {ckpt} (epoch {epoch}) is not the one this run "
                          f"file recorded for epoch {epoch} (it belongs to another run, or its epoch was changed). "
                          f"{_start_over(store)}")
    want = manifest.get("run_file", {}).get("metrics")
    if want is not None and metrics_digest(store.epoch_metrics(epoch)) != want:
        raise ResumeError(f"cannot resume {store.path}: its metrics of epoch {epoch} are not the ones checkpoint "
                          f"{ckpt} was written with (the run file or the checkpoint belongs to another run). "
                          f"{_start_over(store)}")
