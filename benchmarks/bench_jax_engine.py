"""Epoch time of the jax engine (issue: jax engine, point 7), on whatever device JAX sees.

Case: sigprop loop 784-1500-1500-10, 100 free + 20 nudged steps, batch 256, float32, ep_chl,
MNIST. Times ``--batches`` training steps after one warm-up step (which compiles) and
extrapolates to a 60k-sample epoch. On a GPU, run the full epoch with ``--batches 0``.

    HEBBSIM_DATA=../shared/data python benchmarks/bench_jax_engine.py [--batches 5]

Prints one JSON line (device, compile time, seconds per batch, seconds per 60k epoch).
"""

from __future__ import annotations

import argparse
import json
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=5, help="timed batches (0: the whole epoch)")
    ap.add_argument("--engine", default="jax", choices=["jax", "numba"])
    args = ap.parse_args()
    cfg = load_params(CASE, [f"dynamics.engine=\"{args.engine}\""])
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
    t0 = time.perf_counter()
    for k in range(1, n + 1):
        step(k)
    per_batch = (time.perf_counter() - t0) / n
    print(json.dumps({
        "engine": args.engine, "device": str(jax.devices()[0]) if args.engine == "jax" else "cpu",
        "first_step_s": round(compile_s, 2), "timed_batches": n, "s_per_batch": round(per_batch, 4),
        "s_per_60k_epoch": round(per_batch * len(x) / bs, 1),
    }))


if __name__ == "__main__":
    main()
