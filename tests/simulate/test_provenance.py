"""Provenance attributes: dependency versions, and a git commit only for a hebbsim checkout."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy
import xarray

import hebbsim
from hebbsim.simulate import provenance

REPO = Path(hebbsim.__file__).resolve().parents[1]


def test_dependency_versions_are_those_installed():
    v = provenance.dependency_versions()
    assert v["numpy_version"] == numpy.__version__ and v["xarray_version"] == xarray.__version__
    assert set(v) >= {f"{n}_version" for n in ("numpy", "numba", "jax", "diffrax", "h5py", "xarray")}


def _git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_no_commit_for_an_install_inside_someone_elses_repository(tmp_path):
    """hebbsim copied into site-packages of a virtual environment that lives in a user's git
    repository must not record the user's commit; a hebbsim checkout records its own."""
    site = tmp_path / "project" / ".venv" / "lib" / "site-packages"
    shutil.copytree(REPO / "hebbsim", site / "hebbsim", ignore=shutil.ignore_patterns("__pycache__"))
    project = tmp_path / "project"
    _git(project, "init", "-q")
    _git(project, "-c", "user.name=u", "-c", "user.email=u@x", "commit", "-q", "--allow-empty", "-m", "user")
    code = "from hebbsim.simulate.provenance import git_commit; print(repr(git_commit()))"
    res = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True,
                         env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}, check=True)
    assert res.stdout.strip() == "''"
    # the same tree as its own repository's top level is a checkout: its commit is recorded
    checkout = tmp_path / "checkout"
    shutil.copytree(site / "hebbsim", checkout / "hebbsim")
    _git(checkout, "init", "-q")
    _git(checkout, "add", "hebbsim")
    _git(checkout, "-c", "user.name=u", "-c", "user.email=u@x", "commit", "-q", "-m", "hebbsim")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=checkout, capture_output=True, text=True).stdout.strip()
    res = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True,
                         env={"PYTHONPATH": str(checkout), "PATH": "/usr/bin:/bin"}, check=True)
    assert res.stdout.strip() == repr(head)
