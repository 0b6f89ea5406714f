"""Provenance attributes stored in every run file (docs/guide.md, Run files): the parameter file,
hebbsim's version and (only when hebbsim itself runs from a git checkout) its commit, the
versions of the libraries that compute and store the run, the host and the start time."""

from __future__ import annotations

import datetime as _dt
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from .. import __version__

DEPENDENCIES = ("numpy", "numba", "jax", "jaxlib", "diffrax", "equinox", "h5py", "h5netcdf", "xarray")
"""Distributions whose versions a run records (``<name>_version`` attributes)."""

PACKAGE_ROOT = Path(__file__).resolve().parents[2]
"""The folder that holds the ``hebbsim`` package (a source checkout's top level, or site-packages)."""


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=PACKAGE_ROOT, capture_output=True, text=True, timeout=5,
                          check=True).stdout.strip()


def git_commit() -> str:
    """The commit of the hebbsim source tree, with ``-dirty`` if its tracked files have changes;
    '' unless hebbsim itself is a git checkout. A regular install inside some other git
    repository (site-packages of a virtual environment kept in a user's project) is not: the
    package's parent folder must be the repository's top level and hebbsim's own files tracked
    there, whatever the current directory."""
    try:
        top = Path(_git("rev-parse", "--show-toplevel")).resolve()
        if top != PACKAGE_ROOT or not _git("ls-files", "--", "hebbsim/__init__.py"):
            return ""
        commit = _git("rev-parse", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return ""


def dependency_versions() -> dict[str, str]:
    """``{"<name>_version": version}`` for :data:`DEPENDENCIES` (read from the installed
    distributions' metadata, without importing them: importing jax costs seconds);
    ``"not installed"`` for a missing one."""
    out = {}
    for name in DEPENDENCIES:
        try:
            out[f"{name}_version"] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[f"{name}_version"] = "not installed"
    return out


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
        **dependency_versions(),
        "start_time": now(),
    }
