"""Sweep files: expansion into points, names, validation before anything runs, job scripts."""

import json
import re

import pytest
import tomli_w

from hebbsim.simulate.cli import main
from hebbsim.simulate.sweep_file import SweepError, load_sweep

BASE = {
    "network": {"layers": [64, 32, 10], "topology": "loop", "clip_states": True},
    "dynamics": {"dt": 0.5, "free_steps": 20, "nudge_steps": 6, "beta": 1.0},
    "learning": {"lr": [0.1, 0.05, 0.05], "batch_size": 10, "epochs": 3, "seed": 3},
    "data": {"dataset": "digits", "train_subset": 300, "test_subset": 100},
}


def write_sweep(folder, sweep: dict, base: dict = BASE):
    (folder / "base.toml").write_text(tomli_w.dumps(base))
    f = folder / "sweep.toml"
    f.write_text(tomli_w.dumps({"base": "base.toml", **sweep}))
    return f


def test_grid_zip_and_seeds_expand_in_order_with_readable_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sub = tmp_path / "studies"
    sub.mkdir()
    f = write_sweep(sub, {"output": "out", "seeds": [1, 2],
                          "set": {"learning": {"epochs": 2}},
                          "grid": {"learning": {"lr": [[0.1, 0.05, 0.05], [0.2, 0.1, 0.1]]}},
                          "zip": {"dynamics.dt": [0.5, 0.25], "dynamics.free_steps": [20, 40]}})
    spec = load_sweep(f)
    assert spec.folder == tmp_path / "out"  # output: relative to the working directory
    assert [d.name for d in spec.dims] == ["lr", "dt", "seed"] and spec.shape == (2, 2, 2)
    assert [p.position for p in spec.points][:3] == [(0, 0, 0), (0, 0, 1), (0, 1, 0)]
    p = spec.points[3]  # lr[0], dt = 0.25 with free_steps = 40, seed 2
    assert p.label == "lr=0.1-0.05-0.05_dt=0.25_free_steps=40_seed=2"
    assert re.fullmatch(p.label + r"-[0-9a-f]{10}", p.name)
    assert p.path == tmp_path / "out" / "points" / f"{p.name}.h5"
    cfg = p.params
    assert (cfg.dynamics.dt, cfg.dynamics.free_steps, cfg.learning.seed, cfg.learning.epochs) == (0.25, 40, 2, 2)
    assert cfg.learning.lr == [0.1, 0.05, 0.05] and cfg.network.layers == [64, 32, 10]  # base file kept
    assert len({q.digest for q in spec.points}) == 8
    # the hash ignores learning.epochs (a sweep may be continued for more epochs), nothing else
    more = load_sweep({**json.loads(json.dumps(_as_dict(f))), "set": {"learning.epochs": 9}})
    assert [q.digest for q in more.points] == [q.digest for q in spec.points]
    other = load_sweep({**_as_dict(f), "set": {"learning.epochs": 2, "dynamics.beta": 0.5}})
    assert not {q.digest for q in other.points} & {q.digest for q in spec.points}


def _as_dict(f):
    import tomllib

    d = tomllib.loads(f.read_text())
    d["base"] = str(f.parent / d["base"])
    return d


def test_dimension_names_avoid_clashes_and_run_dimensions(tmp_path):
    spec = load_sweep({"base": BASE, "output": str(tmp_path),
                       "grid": {"learning.lr": [0.1, 0.2], "network.loop.scale": [1.0, 0.5],
                                "network.feedback.scale": [2.0], "learning.forward_gradient.epsilon": [0.01]},
                       "set": {"learning.rule": "forward_gradient", "network.topology": "feedforward"}})
    assert [d.name for d in spec.dims] == ["lr", "network_loop_scale", "network_feedback_scale", "epsilon"]
    # labels stop at 60 characters; the hash keeps names distinct
    assert spec.points[0].label == "lr=0.1_network_loop_scale=1_network_feedback_scale=2_epsilon"
    assert len({p.name for p in spec.points}) == 4


@pytest.mark.parametrize("sweep, message", [
    ({"grid": {"learning.lr": [0.1, 5.0, -1.0]}},
     r"point lr=-1: .*learning.lr = -1.0: learning rates must be >= 0"),
    ({"grid": {"network.layers": [[64, 32, 10], [64, 32, 3]]}, "seeds": [1, 2]},
     r"point layers=64-32-3_seed=1: .*network.layers = \[64, 32, 3\] does not fit .*\n\(1 more points are invalid\)"),
    ({"grid": {"dynamics.dtt": [0.5]}}, r"point dtt=0.5: .*dynamics.dtt = 0.5: unknown key"),
    ({"grid": {"learning.lr": [0.1, 0.1]}}, r"grid.learning.lr = \[0.1, 0.1\]: the value 0.1 repeats"),
    ({"zip": {"dynamics.dt": [0.5, 0.25], "dynamics.free_steps": [20]}}, r"zipped lists must have the same length"),
    ({"grid": {"learning.seed": [1, 2]}}, r"give the seeds as seeds = \[...\]"),
    ({"grid": {"record.path": ["a.h5"]}}, r"record.path cannot be swept"),
    ({"grid": {"lr": [0.1]}}, r"'lr': a swept key is a dotted parameter key"),
    ({"retries": -1}, r"retries = -1: Input should be greater than or equal to 0"),
    ({"cluster": {"kind": "sge"}}, r"cluster.kind = 'sge': Input should be 'local', 'slurm' or 'pbs'"),
    ({"cluster": {"walltime": "two hours"}}, r"'two hours' is not a duration"),
    ({"cluster": {"cpus": 4}}, r"cluster.cpus = 4: unknown key; allowed keys here: kind, workers"),
    ({"grids": {}}, r"grids = \{\}: unknown key; allowed keys here: base, output"),
])
def test_invalid_sweeps_name_the_point_and_the_key(tmp_path, sweep, message):
    with pytest.raises(SweepError, match="(?s)" + message):
        load_sweep({"base": BASE, "output": str(tmp_path / "out"), **sweep})
    assert not (tmp_path / "out").exists()  # nothing was created


def test_cli_rejects_bad_sweeps_with_one_error_line_and_status_2(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    f = write_sweep(tmp_path, {"output": "out", "grid": {"learning.lr": [0.1, -1.0]}})
    assert main(["sweep", str(f)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hebbsim: error: point lr=-1: ") and "Traceback" not in err
    assert "learning.lr = -1.0: learning rates must be >= 0" in err
    assert main(["sweep", str(tmp_path / "missing.toml")]) == 2
    assert capsys.readouterr().err == f"hebbsim: error: sweep file {tmp_path / 'missing.toml'} does not exist\n"
    assert main(["sweep"]) == 2 and "give a sweep file" in capsys.readouterr().err
    assert main(["sweep", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"hebbsim: error: sweep file {tmp_path} is a directory; give a .toml file\n"
    (tmp_path / "binary.toml").write_bytes(b"base = 1\n\xd0\x00")
    assert main(["sweep", str(tmp_path / "binary.toml")]) == 2
    assert capsys.readouterr().err == (f"hebbsim: error: sweep file {tmp_path / 'binary.toml'} is not UTF-8 text "
                                       "(byte 9); TOML files are UTF-8\n")
    assert main(["sweep", "--status", str(tmp_path)]) == 2
    assert f"{tmp_path} is not a sweep folder" in capsys.readouterr().err
    assert main(["sweep", "--status", str(f)]) == 2  # a file, not a folder: one line, not a traceback
    assert capsys.readouterr().err == f"hebbsim: error: {f} is not a sweep folder (it has no index.json)\n"
    assert not (tmp_path / "out").exists()


def test_slurm_job_script_pins_threads_and_sets_lifetime_from_walltime(tmp_path):
    from hebbsim.simulate.sweep_cluster import jobqueue_kwargs
    from dask_jobqueue import SLURMCluster

    spec = load_sweep({"base": BASE, "output": str(tmp_path), "cluster": {
        "kind": "slurm", "queue": "compute", "account": "proj42", "walltime": "02:00:00", "cores": 4,
        "processes": 2, "memory": "16GB", "job_extra_directives": ["--constraint=haswell"],
        "job_script_prologue": ["module load python"], "env": {"HDF5_USE_FILE_LOCKING": "FALSE"}}})
    kw = jobqueue_kwargs(spec.cluster, spec.folder)
    with SLURMCluster(**kw) as cluster:
        script = cluster.job_script()
    for line in ["#SBATCH -p compute", "#SBATCH -A proj42", "#SBATCH -t 02:00:00", "#SBATCH --cpus-per-task=4",
                 "#SBATCH --mem=15G", "#SBATCH --constraint=haswell", "export OPENBLAS_NUM_THREADS=1",
                 "export NUMBA_NUM_THREADS=1", "export HDF5_USE_FILE_LOCKING=FALSE", "module load python"]:
        assert line in script, line
    # two single-threaded workers; lifetime 90 % of 2 h less a 5 min stagger
    assert "--nworkers 2" in script and "--nthreads 1" in script
    assert "--lifetime 6180s --lifetime-stagger 300s" in script
    assert f"#SBATCH -e {tmp_path}/logs/" in script


def test_pbs_job_script(tmp_path):
    from hebbsim.simulate.sweep_cluster import jobqueue_kwargs
    from dask_jobqueue import PBSCluster

    spec = load_sweep({"base": BASE, "output": str(tmp_path), "cluster": {
        "kind": "pbs", "queue": "workq", "account": "proj42", "walltime": "04:00:00", "cores": 8,
        "processes": 4, "memory": "32GB", "lifetime": "03:30:00", "lifetime_stagger": "10m",
        "job_extra_directives": ["-m n"]}})
    with PBSCluster(**jobqueue_kwargs(spec.cluster, spec.folder)) as cluster:
        script = cluster.job_script()
    lines = script.splitlines()
    assert lines[0].startswith("#!/usr/bin/env bash")
    for line in ["#PBS -N hebbsim-sweep", "#PBS -q workq", "#PBS -A proj42", "#PBS -l select=1:ncpus=8:mem=30GB",
                 "#PBS -l walltime=04:00:00", "#PBS -m n", "export OMP_NUM_THREADS=1", "export MKL_NUM_THREADS=1"]:
        assert line in lines, line
    assert "--nworkers 4" in script and "--nthreads 1" in script
    assert "--lifetime 12600s --lifetime-stagger 600s" in script
    assert "--memory-limit 7.45GiB" in script  # 32 GB over 4 workers


def test_example_sweep_files_are_valid():
    from pathlib import Path

    examples = Path(__file__).resolve().parents[2] / "examples"
    digits = load_sweep(examples / "sweep_digits.toml")
    assert [d.name for d in digits.dims] == ["lr", "seed"] and len(digits.points) == 4
    mnist = load_sweep(examples / "sweep_mnist_loop.toml")
    assert mnist.shape == (3, 3) and mnist.cluster.kind == "slurm"
    assert all(p.params.data.dataset == "mnist" and p.epochs == 30 for p in mnist.points)
    # seed 001's Fig. 3: 4 kinds of delayed information × 4 feedback initialisations, F³'s protocol
    for name, epochs in (("sweep_mnist_f3.toml", 100), ("sweep_mnist_f3_short.toml", 20)):
        f3 = load_sweep(examples / name)
        assert f3.shape == (4, 4, 1)  # information × feedback init × seed
        assert {(p.params.learning.f3.information, p.params.network.feedback.init) for p in f3.points} == {
            (i, b) for i in ("error", "loss", "onehot", "softmax")
            for b in ("kaiming_uniform", "trinomial", "binomial", "sign_identity")}
        assert all(p.params.learning.rule == "f3" and p.epochs == epochs and p.params.learning.lr_schedule == "cosine"
                   for p in f3.points)


def test_second_client_on_a_sweep_folder_is_refused(tmp_path):
    import hebbsim
    from hebbsim.simulate.sweep import SweepBusyError, sweep_lock

    (tmp_path / "out").mkdir()
    with sweep_lock(tmp_path / "out"):
        with pytest.raises(SweepBusyError, match=r"is being run by another hebbsim sweep \(pid \d+ on "):
            hebbsim.sweep({"base": BASE, "output": str(tmp_path / "out")}, progress=False)


def test_slurm_defaults_come_from_dask_jobqueue_config_then_one_core_4gb(tmp_path):
    import dask
    from dask_jobqueue import SLURMCluster

    from hebbsim.simulate.sweep_cluster import jobqueue_kwargs

    spec = load_sweep({"base": BASE, "output": str(tmp_path), "cluster": {"kind": "slurm"}})
    with dask.config.set({"jobqueue.slurm.walltime": "01:00:00", "jobqueue.slurm.queue": "short"}):
        kw = jobqueue_kwargs(spec.cluster, spec.folder)
        with SLURMCluster(**kw) as cluster:
            script = cluster.job_script()
    for line in ["#SBATCH -p short", "#SBATCH -t 01:00:00", "#SBATCH --cpus-per-task=1", "#SBATCH --mem=4G"]:
        assert line in script, line
    assert "--nthreads 1" in script and "--lifetime 3060s --lifetime-stagger 180s" in script
