"""The numba engine's GEMMs and BLAS thread pools, and case (b) against its GEMM floor (issue 19
point 4), every figure measured in one process, the settings interleaved over ``--repeats``
rounds so that the machine's load hits them alike.

With PyPI wheels two OpenBLAS libraries are loaded: numpy's and scipy's (which numba's
``np.dot`` calls), each with a pool as large as the machine. Settings of the engine:

- ``np.dot, default pools``: the kernels' products through numba's ``np.dot`` (scipy's BLAS),
  both pools at the cores: the engine before 2026-11-28;
- ``numpy GEMM, default pools``: the kernels call numpy's GEMM
  (:mod:`hebbsim.simulate.engines.numba_blas`), both pools at the cores;
- ``numpy GEMM, runner's pools``: what ``hebbsim run`` does now
  (:func:`hebbsim.simulate.engines.blas_pools.engine_blas_pools`: numpy's pool at the cores,
  scipy's at 1).

For each: case (b) of bench_numba_engine.py (symmetric 784-1500-1500-10, 100 + 20 + 20 steps,
batch 128, ``--batches`` training batches extrapolated to a 60k epoch) and the Euler kernel's
GEMM rate (100 free steps). Once per round, the GEMM floor: the epoch's products (469 batches ×
140 steps × two 128×1500×1500 GEMMs = 75.6 TFLOP) at numpy's sgemm rate on exactly the kernel's
sequence of products, from Python, with scipy's pool at one thread. And the runner's setting
with a tolerance-terminated free phase (``dynamics.tol = --tol``), with the free steps it took.

    HEBBSIM_DATA=../shared/data python benchmarks/blas_threads.py [--batches 6] [--repeats 3] [--tol 1e-3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
from threadpoolctl import ThreadpoolController  # noqa: E402

import bench_numba_engine as bench  # noqa: E402
from hebbsim.data.datasets import load_dataset  # noqa: E402
from hebbsim.simulate.engines import numba_engine  # noqa: E402
from hebbsim.simulate.engines.blas_pools import blas_libraries, blas_owner, cores, engine_blas_pools  # noqa: E402

LAYERS, FREE, NUDGE, BATCH = [784, 1500, 1500, 10], 100, 20, 128


def pools() -> dict[str, ThreadpoolController]:
    ctl = ThreadpoolController()
    return {blas_owner(lib["filepath"]): ctl.select(filepath=lib["filepath"]) for lib in blas_libraries(ctl)}


def size(lib, numpy: int, scipy: int) -> None:
    lib["numpy"].limit(limits=numpy)
    lib["scipy"].limit(limits=scipy)


def free_steps_counted():
    """Record the steps every free phase takes (a tolerance may end it early)."""
    taken = []
    relax = numba_engine.NumbaClamped.relax

    def counting(self, *args, **kwargs):
        out = relax(self, *args, **kwargs)
        if kwargs.get("phase", "free") == "free":
            taken.append(out.steps)
        return out

    numba_engine.NumbaClamped.relax = counting
    return taken, lambda: setattr(numba_engine.NumbaClamped, "relax", relax)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tol", type=float, default=1e-3)
    args = ap.parse_args()
    import scipy.linalg.cython_blas  # noqa: F401  (numba's np.dot library, loaded before sizing the pools)

    lib, n_cores = pools(), cores()
    data = load_dataset("mnist")
    cfg = bench.config(LAYERS, FREE, NUDGE, BATCH)
    cfg_tol = bench.config(LAYERS, FREE, NUDGE, BATCH, tol=args.tol)
    for numpy_blas in (True, False):  # compile both
        bench.epoch_time(cfg, data, 1, numpy_blas)
    epoch_flops = (60000 // BATCH + 1) * (FREE + 2 * NUDGE) * 2 * 2 * BATCH * 1500 * 1500
    settings = {"np.dot, default pools": (False, None), "numpy GEMM, default pools": (True, None),
                "numpy GEMM, runner's pools": (True, "runner")}
    print(json.dumps({"cores": n_cores, "libraries": {k: v.info()[0]["version"] for k, v in lib.items()},
                      "epoch_tflop": round(epoch_flops / 1e12, 1)}), flush=True)
    for rnd in range(args.repeats):
        size(lib, n_cores, 1)
        _, sgemm, _ = bench.gemm_ratio(LAYERS, BATCH, 100, repeats=2)
        floor = epoch_flops / sgemm / 1e9
        print(json.dumps({"round": rnd, "numpy_sgemm_gflops": round(sgemm, 1), "floor_s": round(floor, 1)}),
              flush=True)
        for name, (numpy_blas, how) in settings.items():
            size(lib, n_cores, n_cores)
            with engine_blas_pools("numba") if how == "runner" else contextlib.nullcontext():
                epoch, _ = bench.epoch_time(cfg, data, args.batches, numpy_blas)
                kernel, _, _ = bench.gemm_ratio(LAYERS, BATCH, 100, repeats=2, numpy_blas=numpy_blas)
            print(json.dumps({"round": rnd, "setting": name, "s_per_epoch": round(epoch, 1),
                              "over_floor": round(epoch / floor, 3), "kernel_gflops": round(kernel, 1),
                              "kernel_over_sgemm": round(kernel / sgemm, 3)}), flush=True)
        size(lib, n_cores, n_cores)
        taken, undo = free_steps_counted()
        with engine_blas_pools("numba"):
            epoch, _ = bench.epoch_time(cfg_tol, data, args.batches)
        undo()
        print(json.dumps({"round": rnd, "setting": f"numpy GEMM, runner's pools, dynamics.tol = {args.tol:g}",
                          "s_per_epoch": round(epoch, 1), "over_floor": round(epoch / floor, 3),
                          "free_steps_mean": round(float(np.mean(taken[1:])), 1)}), flush=True)


if __name__ == "__main__":
    main()
