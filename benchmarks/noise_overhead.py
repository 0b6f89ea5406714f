"""What noise costs a training batch on each engine: the seconds per batch of `ep_chl` on MNIST
(784-500-10 loop, batch 20, 60 free + 12 nudged steps, float32) without noise, with white noise
and with an OU current on h1 — the host draws of the increments included. The three settings
are interleaved (each repetition times all three), so their ratios come from one run.

    HEBBSIM_DATA=../shared/data python benchmarks/noise_overhead.py numba 50 3
    HEBBSIM_DATA=../shared/data python benchmarks/noise_overhead.py jax 50 3
"""
import json
import sys
import time

import numpy as np

from hebbsim.data.datasets import load_dataset
from hebbsim.data.params import load_params
from hebbsim.dynamics.params import init_params
from hebbsim.simulate.engines import engine_from_params
from hebbsim.simulate.trainer import Trainer

NOISE = {"none": {}, "white": {"kind": "white", "sigma": 0.05}, "ou": {"kind": "ou", "sigma": 0.05, "tau": 2.0}}


def trainer(engine: str, noise: dict, n: int) -> Trainer:
    cfg = load_params({
        "network": {"layers": [784, 500, 10], "topology": "loop", "clip_states": True},
        "dynamics": {"engine": engine, "dt": 0.5, "free_steps": 60, "nudge_steps": 12, "noise": noise},
        "learning": {"rule": "ep_chl", "batch_size": 20, "seed": 1},
        "data": {"dataset": "mnist"}})
    net = cfg.build_network()
    rng = np.random.default_rng(1)
    return Trainer(cfg, net, engine_from_params(cfg, net), init_params(net, rng, np.float32), n, rng)


def main(engine: str, batches: int, reps: int) -> None:
    data = load_dataset("mnist")
    n = 20 * batches
    x, y = data.x_train[:n].astype(np.float32), data.y_train[:n]
    trainers = {k: trainer(engine, v, n) for k, v in NOISE.items()}
    for t in trainers.values():  # compile (numba kernels, the jax step) outside the timing
        t.train_epoch(x[:40], y[:40], progress=False)
    times = {k: [] for k in NOISE}
    for _ in range(reps):
        for k, t in trainers.items():
            t0 = time.perf_counter()
            t.train_epoch(x, y, progress=False)
            times[k].append((time.perf_counter() - t0) / batches)
    best = {k: min(v) for k, v in times.items()}
    print(json.dumps({"engine": engine, "ms_per_batch": {k: round(1e3 * v, 2) for k, v in best.items()},
                      "ratio_to_none": {k: round(v / best["none"], 3) for k, v in best.items()}}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
