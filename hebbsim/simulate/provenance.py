"""Provenance attributes stored in every run file (SPEC §5, global attrs)."""

from __future__ import annotations

import datetime as _dt
import platform
import subprocess
from pathlib import Path

from .. import __version__


def git_commit() -> str:
    """The commit of the hebbsim source tree, with ``-dirty`` if it has changes; '' if none."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return ""


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def provenance(params_toml: str, engine: str, dtype: str, seed: int) -> dict[str, str | int]:
    return {
        "parameters": params_toml,
        "hebbsim_version": __version__,
        "git_commit": git_commit(),
        "engine": engine,
        "dtype": dtype,
        "seed": seed,
        "host": platform.node(),
        "python": platform.python_version(),
        "start_time": now(),
    }
