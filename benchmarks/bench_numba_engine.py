"""Speed of the numba engine on MNIST (issue: core, point 9).

Measures, in one process on this machine:

(a) symmetric EP 784-512-10, 40 free + 15 (+β) + 15 (−β) steps, batch 20: a full 60k-sample
    training epoch (ep_chl_classic updates included);
(b) symmetric EP 784-1500-1500-10, 100 free + 20 + 20 steps, batch 128: ``--batches-b``
    training batches, extrapolated to 60k samples;
and the ratio of the matmul FLOP/s the Euler loop performs to this machine's numpy float32
GEMM rate at the same shapes, measured right after (numpy doing exactly the same sequence of
products, with ``out=``, from Python).

    HEBBSIM_DATA=../shared/data python benchmarks/bench_numba_engine.py
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from hebbsim.data.datasets import load_dataset
from hebbsim.data.params import load_params
from hebbsim.dynamics import rhs
from hebbsim.dynamics.params import init_params
from hebbsim.simulate.engines.blas_pools import engine_blas_pools
from hebbsim.simulate.engines.numba_engine import NumbaEngine
from hebbsim.simulate.trainer import Trainer


def config(layers, free, nudge, batch, **dynamics):
    return load_params({
        "network": {"layers": layers, "topology": "symmetric", "rho": "hard_sigmoid", "clip_states": True},
        "dynamics": {"dt": 0.5, "free_steps": free, "nudge_steps": nudge, "beta": 0.5, "symmetric_nudging": True,
                     **dynamics},
        "learning": {"rule": "ep_chl_classic", "lr": [0.1] * (len(layers) - 1), "batch_size": batch},
        "data": {"dataset": "mnist"},
    })


def epoch_time(cfg, data, n_batches=None, numpy_blas=True):
    net = cfg.build_network()
    rng = np.random.default_rng(0)
    engine = NumbaEngine(net, cfg.dynamics.dt, np.float32, numpy_blas=numpy_blas)
    trainer = Trainer(cfg, net, engine, init_params(net, rng), len(data.x_train), rng)
    bs = cfg.learning.batch_size
    x, y = data.x_train, data.y_train
    trainer.train_step(x[:bs], y[:bs], np.arange(bs))  # compile / warm up
    n = n_batches or len(x) // bs
    t0 = time.perf_counter()
    for k in range(n):
        idx = np.arange(k * bs, (k + 1) * bs) % len(x)
        trainer.train_step(x[idx], y[idx], idx)
    per_batch = (time.perf_counter() - t0) / n
    return per_batch * len(x) / bs, n


def gemm_ratio(layers, batch, steps, repeats=3, numpy_blas=True):
    """Euler-loop matmul FLOP/s of the engine divided by numpy's sgemm FLOP/s on the same products."""
    cfg = config(layers, steps, 1, batch)
    net = cfg.build_network()
    params = init_params(net, 0)
    engine = NumbaEngine(net, 0.5, np.float32, numpy_blas=numpy_blas)
    x = np.random.default_rng(0).random((batch, layers[0]), dtype=np.float32)
    system = engine.clamp(params, x)
    s0 = rhs.zero_states(net, batch)
    system.relax(s0, 2)
    internal = [p for p in net.projections if p.src != "x"]
    flops = steps * sum(2 * batch * net.sizes[p.src] * net.sizes[p.dst] for p in internal)
    rates = {p: np.random.default_rng(1).random((batch, net.sizes[p.src]), dtype=np.float32) for p in internal}
    wts = {p: np.ascontiguousarray(params.weight(p).T) for p in internal}
    outs = {p: np.empty((batch, net.sizes[p.dst]), np.float32) for p in internal}
    t_engine, t_numpy = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        system.relax(s0, steps)
        t_engine.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for _ in range(steps):
            for p in internal:
                np.matmul(rates[p], wts[p], out=outs[p])
        t_numpy.append(time.perf_counter() - t0)
    te, tn = min(t_engine), min(t_numpy)
    return flops / te / 1e9, flops / tn / 1e9, tn / te


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches-b", type=int, default=20)
    args = ap.parse_args()
    data = load_dataset("mnist")
    print(f"machine: {platform.processor() or platform.machine()}, numpy {np.__version__}")
    with engine_blas_pools("numba") as pools:  # the epochs run with the BLAS pools `hebbsim run` gives them
        print(f"BLAS threads: {pools.describe()}")
        ta, na = epoch_time(config([784, 512, 10], 40, 15, 20), data)
        print(f"(a) 784-512-10 symmetric, 40+15+15 steps, batch 20: {ta:.1f} s per 60k epoch ({na} batches timed)")
        tb, nb = epoch_time(config([784, 1500, 1500, 10], 100, 20, 128), data, args.batches_b)
    print(f"(b) 784-1500-1500-10 symmetric, 100+20+20 steps, batch 128: {tb:.1f} s per 60k epoch "
          f"(extrapolated from {nb} batches)")
    for layers, batch in (([784, 1500, 1500, 10], 128), ([784, 512, 10], 20)):
        eng, ref, ratio = gemm_ratio(layers, batch, 100)
        print(f"GEMM ratio {'-'.join(map(str, layers))} batch {batch}: engine {eng:.1f} GFLOP/s, "
              f"numpy sgemm {ref:.1f} GFLOP/s on the same products, ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
