"""Throughput and scheduling overhead of ``hebbsim sweep`` (issue 10, point 8).

Runs the same sweep of ``--points`` digits points (the quickstart loop network 64-128-10, full
digits training set, ``--epochs`` epochs; learning rate × seed) three ways, each into a fresh
folder:

- a LocalCluster with 1 worker and with ``--workers`` workers (default 2): the sweep's wall
  time from submission to the last point's end (the cluster is started and its workers
  connected before the clock starts; the start-up is reported apart), throughput in points
  per minute and the ratio of the two throughputs;
- scheduling overhead per point = (wall time × workers − Σ run time inside the points) / points:
  what the sweep costs beyond the runs themselves (submission, dispatch, result collection,
  idle workers at the end);
- with ``--control``, the same points as plain ``hebbsim.run`` calls in a process pool of 1 and
  of ``--workers`` processes (no Dask): the ratio this machine allows at the moment, to
  compare with when it is shared;
- with ``--slurm``, the same sweep through SLURM (``cluster = "slurm"``: jobs submitted and
  adapted by dask-jobqueue; its wall time includes the jobs' start).

``--walltime-demo`` instead runs one long point through SLURM with a 1-minute walltime and
prints its attempts (the point continues from its checkpoint in a new job).

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_sweep.py --control --slurm
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import hebbsim
from hebbsim.simulate.sweep import dask_config
from hebbsim.simulate.sweep_cluster import make_cluster
from hebbsim.simulate.sweep_file import load_sweep
from hebbsim.simulate.sweep_index import SweepIndex
from hebbsim.simulate.sweep_worker import read_attempts

REPO = Path(__file__).resolve().parents[1]


def sweep_file(out: Path, points: int, epochs: int, workers: int) -> dict:
    seeds = list(range(1, points // 2 + 1))
    return {"base": str(REPO / "examples" / "quickstart.toml"), "output": str(out), "seeds": seeds,
            "set": {"learning.epochs": epochs, "record.probes": 4},
            "grid": {"learning.lr": [[0.1, 0.05, 0.05], [0.05, 0.02, 0.02]]},
            "cluster": {"workers": workers}}


def run_local(root: Path, name: str, workers: int, args) -> dict:
    """The sweep on a LocalCluster of ``workers`` workers, timed from submission."""
    from distributed import Client

    sweep = sweep_file(root / name, args.points, args.epochs, workers)
    spec = load_sweep(sweep)
    t0 = time.perf_counter()
    with dask_config(spec.cluster):
        cluster = make_cluster(spec.cluster, spec.folder, len(spec.points))
        client = Client(cluster)
        client.wait_for_workers(workers)
        startup = time.perf_counter() - t0
        t1 = time.perf_counter()
        result = hebbsim.sweep(sweep, client=client, progress=False, poll=0.2)
        wall = time.perf_counter() - t1
        client.close()
        cluster.close()
    return summarize(name, result, wall, workers, startup)


def _run_one(params: dict) -> float:
    import contextlib

    t0 = time.perf_counter()
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):  # the runner's epoch lines
        hebbsim.run(params, progress=False)
    return time.perf_counter() - t0


def run_bare(root: Path, workers: int, args) -> dict:
    """Control: the same points as plain ``hebbsim.run`` calls in ``workers`` processes (no Dask,
    no index): what this machine allows right now."""
    import multiprocessing
    import tomllib
    from concurrent.futures import ProcessPoolExecutor

    from hebbsim.simulate.sweep_worker import WORKER_ENV

    spec = load_sweep(sweep_file(root / f"bare-{workers}", args.points, args.epochs, workers))
    params = [tomllib.loads(p.params.to_toml()) for p in spec.points]
    for p in params:
        Path(p["record"]["path"]).parent.mkdir(parents=True, exist_ok=True)
    os.environ.update(WORKER_ENV)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        list(pool.map(_run_one, [dict(params[0], record={"path": str(root / f"warm-{workers}-{i}.h5")})
                                 for i in range(workers)]))  # imports and numba caches, as a started cluster
        t0 = time.perf_counter()
        runs = list(pool.map(_run_one, params))
        wall = time.perf_counter() - t0
    n = len(params)
    return {"case": f"bare-{workers}", "workers": workers, "points": n, "wall_s": wall, "startup_s": None,
            "points_per_min": 60 * n / wall, "run_s": sum(runs), "overhead_per_point_s": (wall * workers - sum(runs)) / n}


def run_slurm(root: Path, args) -> dict:
    sweep = sweep_file(root / "slurm", args.points, args.epochs, args.workers)
    t0 = time.perf_counter()
    result = hebbsim.sweep(sweep, cluster="slurm", progress=False, poll=0.2)
    return summarize("slurm", result, time.perf_counter() - t0, args.workers, None)


def summarize(name: str, result, wall: float, workers: int, startup: float | None) -> dict:
    assert result.complete, result.table()
    runs = sum(r.wall_time for r in result.index.points.values())
    n = len(result.index.points)
    return {"case": name, "workers": workers, "points": n, "wall_s": wall, "startup_s": startup,
            "points_per_min": 60 * n / wall, "run_s": runs,
            "overhead_per_point_s": (wall * workers - runs) / n}


def walltime_demo(root: Path) -> None:
    sweep = {"base": str(REPO / "examples" / "quickstart.toml"), "output": str(root / "walltime"),
             "set": {"learning.batch_size": 1, "dynamics.free_steps": 80, "dynamics.nudge_steps": 10,
                     "learning.epochs": 600, "data.train_subset": 600, "record.probes": 2,
                     "network.layers": [64, 32, 10]},
             "cluster": {"kind": "slurm", "workers": 1, "walltime": "00:01:00"}}
    t0 = time.perf_counter()
    result = hebbsim.sweep(sweep, progress=False)
    (rec,) = result.index.points.values()
    print(f"walltime 00:01:00, one point of 600 epochs: {result.index.summary()}, {time.perf_counter() - t0:.0f} s")
    for a in read_attempts(result.folder / rec.file):
        print(f"  job {a['job']}: started {a['time']} from epoch {a['from_epoch']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--slurm", action="store_true", help="also through SLURM (scripts/slurm/start.sh)")
    ap.add_argument("--control", action="store_true",
                    help="also the same points as plain hebbsim.run processes (no Dask): the machine's own ratio")
    ap.add_argument("--walltime-demo", action="store_true", help="only the walltime demonstration (SLURM)")
    ap.add_argument("--keep", help="keep the sweep folders here (default: a temporary folder, removed)")
    args = ap.parse_args()
    root = Path(args.keep or tempfile.mkdtemp(prefix="bench_sweep_"))
    try:
        if args.walltime_demo:
            walltime_demo(root)
            return
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()[0]:.1f}; {args.points} digits points x {args.epochs} epochs")
        rows = [run_local(root, "local-1", 1, args), run_local(root, f"local-{args.workers}", args.workers, args)]
        if args.control:
            rows += [run_bare(root, 1, args), run_bare(root, args.workers, args)]
        if args.slurm:
            rows.append(run_slurm(root, args))
        print("| case | workers | wall time | points/min | Σ run time in points | overhead per point | cluster start |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for r in rows:
            start = f"{r['startup_s']:.1f} s" if r["startup_s"] is not None else "in wall time"
            print(f"| {r['case']} | {r['workers']} | {r['wall_s']:.1f} s | {r['points_per_min']:.2f} | "
                  f"{r['run_s']:.1f} s | {r['overhead_per_point_s']:.2f} s | {start} |")
        print(f"throughput ratio {args.workers} workers / 1 worker: {rows[1]['points_per_min'] / rows[0]['points_per_min']:.2f}")
        if args.control:
            print(f"the same for plain processes (what the machine allows now): "
                  f"{rows[3]['points_per_min'] / rows[2]['points_per_min']:.2f}")
        print(json.dumps(rows))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
