"""``--resume``: continue a run from its checkpoint, refusing anything that would not be the same run."""

from __future__ import annotations

import tomllib
from pathlib import Path

from ..data.checkpoint import load_checkpoint
from ..data.params import RunParams
from ..data.store import RunStore
from ..errors import HebbsimError
from .trainer import Trainer

MAY_CHANGE = ("learning.epochs",)
"""Parameters a resumed run may change."""


class ResumeError(HebbsimError):
    """A run cannot be resumed as asked; the message names the fix."""


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(_flatten(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def parameter_differences(old_toml: str, new_toml: str) -> dict[str, tuple]:
    """Dotted keys whose values differ between two parameter files: key → (old, new)."""
    old, new = _flatten(tomllib.loads(old_toml)), _flatten(tomllib.loads(new_toml))
    return {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}


def resume_point(cfg: RunParams, store: RunStore, ckpt: Path, trainer: Trainer, log=None) -> int:
    """Restore ``trainer`` from the checkpoint ``ckpt`` and return the last completed epoch
    (0 when there is no checkpoint: the run starts from scratch)."""
    if not ckpt.is_file():
        if log:
            log(f"no checkpoint {ckpt}: starting from epoch 1")
        return 0
    arrays, meta = load_checkpoint(ckpt)
    diff = {k: v for k, v in parameter_differences(meta["parameters"], cfg.to_toml()).items() if k not in MAY_CHANGE}
    if diff:
        lines = "\n".join(f"  {k}: checkpoint {a!r}, now {b!r}" for k, (a, b) in diff.items())
        raise ResumeError(
            f"cannot resume {store.path}: the parameters differ from the checkpoint's ({ckpt}) in\n{lines}\n"
            f"Only {', '.join(MAY_CHANGE)} may change on resume. Resume with the checkpoint's parameters "
            f"(the run file's 'parameters' attribute), or start a new run without --resume "
            f"(or with another record.path)."
        )
    epoch = int(meta["epoch"])
    if epoch > cfg.learning.epochs:
        raise ResumeError(f"cannot resume {store.path}: its checkpoint is at epoch {epoch}, beyond "
                          f"learning.epochs = {cfg.learning.epochs}; ask for at least {epoch} epochs")
    held = store.epochs() if store.path.is_file() else 0
    if held < epoch:
        raise ResumeError(f"cannot resume {store.path}: the run file holds {held} epochs but the checkpoint "
                          f"{ckpt} is at epoch {epoch} (the file was replaced or deleted); start over "
                          "without --resume")
    if held > cfg.learning.epochs:
        raise ResumeError(f"cannot resume {store.path}: the run file already holds {held} epochs, more than "
                          f"learning.epochs = {cfg.learning.epochs}; ask for at least {held} epochs")
    trainer.load_state_dict(arrays, meta["trainer"])
    if log:
        log(f"resuming {store.path} after epoch {epoch}")
    return epoch
