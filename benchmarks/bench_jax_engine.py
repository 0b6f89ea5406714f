"""Epoch time of the jax engine (issue: jax engine, point 7), on whatever device JAX sees.

Case: sigprop loop 784-1500-1500-10, 100 free + 20 nudged steps, batch 256, float32, ep_chl,
MNIST. Times ``--batches`` training steps after one warm-up step (which compiles) and
extrapolates to a 60k-sample epoch. On a GPU, run the full epoch with ``--batches 0``.
``--batch-size`` changes the batch (same rates); on an NVIDIA GPU the utilisation and memory
use are sampled (NVML, every 100 ms) during the timed part only.

    HEBBSIM_DATA=../shared/data python benchmarks/bench_jax_engine.py [--batches 5] [--report-every 50]

Prints one JSON line (device, compile time, seconds per batch, seconds per 60k epoch, GPU
utilisation), and with ``--report-every`` a partial line every that many batches (so that a
run stopped by a time limit still reports).
"""

from __future__ import annotations

import argparse
import json
import threading
import time

import jax
import numpy as np

from hebbsim.data.datasets import load_dataset
from hebbsim.data.params import load_params
from hebbsim.dynamics.params import init_params
from hebbsim.simulate.engines import engine_from_params
from hebbsim.simulate.trainer import Trainer

CASE = {
    "network": {"layers": [784, 1500, 1500, 10], "topology": "loop", "clip_states": True},
    "dynamics": {"engine": "jax", "dtype": "float32", "dt": 0.5, "free_steps": 100, "nudge_steps": 20,
                 "beta": 1.0, "random_sign_beta": True},
    "learning": {"rule": "ep_chl", "lr": [0.1, 0.05, 0.05, 0.05], "batch_size": 256},
    "data": {"dataset": "mnist"},
}


class GpuSampler:
    """Samples the first NVIDIA GPU's utilisation (% of time a kernel ran) and used memory with
    NVML in a background thread; does nothing where NVML is missing (CPU runs)."""

    def __init__(self, period_s: float = 0.1):
        self.period_s, self.util, self.mem_mib = period_s, [], []
        self._stop = threading.Event()
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml, self._handle = pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:  # no NVML here: nothing to sample
            self._nvml = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(self.period_s):
            self.util.append(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu)
            self.mem_mib.append(self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used / 2**20)

    def start(self):
        if self._nvml is not None:
            self._thread.start()
        return self

    def summary(self) -> dict:
        """Mean/median utilisation (%) and peak used memory (MiB) over the samples so far."""
        if not self.util:
            return {}
        u = np.asarray(self.util, dtype=float)
        return {"gpu_util_mean_pct": round(float(u.mean()), 1), "gpu_util_median_pct": float(np.median(u)),
                "gpu_util_samples": len(u), "gpu_mem_peak_mib": round(max(self.mem_mib))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=5, help="timed batches (0: the whole epoch)")
    ap.add_argument("--engine", default="jax", choices=["jax", "numba"])
    ap.add_argument("--batch-size", type=int, default=CASE["learning"]["batch_size"])
    ap.add_argument("--report-every", type=int, default=0, help="print a partial result every this many batches")
    args = ap.parse_args()
    cfg = load_params(CASE, [f"dynamics.engine=\"{args.engine}\"", f"learning.batch_size={args.batch_size}"])
    net = cfg.build_network()
    data = load_dataset("mnist")
    x, y = data.x_train.astype(np.float32), data.y_train
    rng = np.random.default_rng(0)
    trainer = Trainer(cfg, net, engine_from_params(cfg, net), init_params(net, rng), len(x), rng)
    bs = cfg.learning.batch_size
    order = rng.permutation(len(x))

    def step(k):
        idx = order[(k * bs) % len(x):][:bs]
        out = trainer.train_step(x[idx], y[idx], idx)
        return float(out["loss"])  # waits for the device

    t0 = time.perf_counter()
    step(0)
    compile_s = time.perf_counter() - t0
    n = args.batches or -(-len(x) // bs) - 1
    gpu = GpuSampler().start()

    def report(k, t0, final):
        per_batch = (time.perf_counter() - t0) / k
        print(json.dumps({
            "engine": args.engine, "device": str(jax.devices()[0]) if args.engine == "jax" else "cpu",
            "batch_size": bs, "first_step_s": round(compile_s, 2), "timed_batches": k,
            "s_per_batch": round(per_batch, 5), "s_per_60k_epoch": round(per_batch * len(x) / bs, 2),
            "final": final, "timed_until_unix": round(time.time(), 1), **gpu.summary(),
        }), flush=True)

    t0 = time.perf_counter()
    for k in range(1, n + 1):
        step(k)
        if args.report_every and k % args.report_every == 0 and k < n:
            report(k, t0, False)
    report(n, t0, True)


if __name__ == "__main__":
    main()
