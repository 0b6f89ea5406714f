"""How fast the jax engine's batch *could* be: the same model and rule, driven without diffrax.

Case (c) of ``bench_jax_engine.py`` (sigprop loop 784-1500-1500-10, 100 free + 20 nudged
Euler steps, batch 256, float32, ``ep_chl`` + SGD, MNIST). The batch update is hebbsim's own
:func:`hebbsim.simulate.trainer.batch_update` (same phases, rule and optimizer), but each
phase is a ``jax.lax.fori_loop`` over :func:`hebbsim.dynamics.rhs.euler_step` on the whole
batch (one GEMM per projection and step, no ``vmap``, no diffrax step controller or event
machinery). Two drivers:

- ``batch``: one ``jax.jit`` call per batch, as ``Trainer`` drives the engine (host loop);
- ``epoch``: one ``jax.lax.scan`` over all batches of the epoch (no host round trip at all).

The difference between ``bench_jax_engine.py`` and the ``batch`` figure is what the diffrax
integration costs; between ``batch`` and ``epoch``, what the per-batch host round trip costs.
Random-sign β as in the trainer (drawn per batch, passed as data). Only full batches
(234 × 256 = 59 904 samples), timed after one compiling call, extrapolated to 60 000.

    HEBBSIM_DATA=../shared/data python benchmarks/jax_scan_floor.py [--batches 0] [--precision highest]

Prints one JSON line per driver.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from hebbsim.data.datasets import load_dataset
from hebbsim.data.params import load_params
from hebbsim.dynamics import rhs
from hebbsim.dynamics.loss import one_hot
from hebbsim.dynamics.network import OUTPUT
from hebbsim.dynamics.params import init_params
from hebbsim.simulate.engines.base import Relaxation
from hebbsim.simulate.trainer import Trainer, batch_update

from bench_jax_engine import CASE  # the same case (c) as the engine benchmark; run as a script from benchmarks/


class ScanEngine:
    """Projected Euler as a ``fori_loop`` over the batch (traced only; no divergence replay)."""

    name = "jax-scan"

    def __init__(self, net, dt: float, dtype=np.float32):
        self.net, self.dt, self.dtype = net, float(dt), np.dtype(dtype)

    def clamp(self, params, x, extra_current=None):
        return _ScanClamped(self, params, x)


class _ScanClamped:
    def __init__(self, engine: ScanEngine, params, x):
        self.engine, self.params, self.x = engine, params, x

    def relax(self, states, n_steps, *, beta=0.0, target=None, tol=0.0, phase="free"):
        e, net = self.engine, self.engine.net

        def step(_, s):
            return rhs.euler_step(net, self.params, s, self.x, e.dt, beta, target)

        s = jax.lax.fori_loop(0, n_steps - 1, step, states)
        last = step(0, s)  # the last step by hand: its residual, as the engines report it
        residual = rhs.max_abs({k: last[k] - s[k] for k in s}) / e.dt
        finite = {k: jnp.all(jnp.isfinite(v)) for k, v in last.items()}
        return Relaxation(last, n_steps, residual, finite)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=5, help="timed batches (0: the whole epoch)")
    ap.add_argument("--driver", nargs="+", default=["batch", "epoch"], choices=["batch", "epoch"])
    ap.add_argument("--precision", default=None, choices=[None, "default", "high", "highest"],
                    help="jax_default_matmul_precision (None: JAX's default, TF32 on Ampere/Hopper)")
    args = ap.parse_args()
    if args.precision:
        jax.config.update("jax_default_matmul_precision", args.precision)
    cfg = load_params(CASE)
    net = cfg.build_network()
    data = load_dataset("mnist")
    x_all, y_all = data.x_train.astype(np.float32), data.y_train
    rng = np.random.default_rng(0)
    params = init_params(net, rng)
    # Trainer only for its rule and optimizer (the real engine is not used here)
    from hebbsim.simulate.engines import engine_from_params

    trainer = Trainer(cfg, net, engine_from_params(cfg, net), params, len(x_all), rng)
    engine = ScanEngine(net, cfg.dynamics.dt)
    bs = cfg.learning.batch_size
    n_full = len(x_all) // bs
    n = args.batches or n_full
    order = rng.permutation(len(x_all))[: n_full * bs].reshape(n_full, bs)
    xs = jnp.asarray(x_all[order])
    ds = jnp.asarray(one_hot(y_all[order].ravel(), net.sizes[OUTPUT], np.float32).reshape(n_full, bs, -1))
    ls = jnp.asarray(y_all[order])
    betas = jnp.asarray(cfg.dynamics.beta * rng.choice((-1.0, 1.0), n_full), jnp.float32)
    p0 = jax.tree_util.tree_map(jnp.asarray, params)
    o0 = jax.tree_util.tree_map(jnp.asarray, trainer.optimizer.state)

    def update(p, o, x, d, lab, beta):
        p, _, o, free, st = batch_update(trainer.rule, trainer.optimizer, engine, p, trainer.state, o, x, d, lab, None,
                                         {"beta": beta})
        return p, o, free, st

    results = []
    if "batch" in args.driver:
        step = jax.jit(update)
        t0 = time.perf_counter()
        p, o, _, st = step(p0, o0, xs[0], ds[0], ls[0], betas[0])
        float(st["loss"])
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for k in range(1, n + 1):
            p, o, _, st = step(p, o, xs[k % n_full], ds[k % n_full], ls[k % n_full], betas[k % n_full])
            # the trainer reads the finiteness flags after every batch: a host sync per batch
            bool(all(bool(v) for f in st["finite"].values() for v in f.values()))
        per_batch = (time.perf_counter() - t0) / n
        results.append({"driver": "batch", "first_call_s": round(compile_s, 2), "timed_batches": n,
                        "s_per_batch": round(per_batch, 5), "s_per_60k_epoch": round(per_batch * 60000 / bs, 2),
                        "last_loss": float(st["loss"]) / bs})
    if "epoch" in args.driver:
        def body(carry, batch):
            p, o = carry
            p, o, _, st = update(p, o, *batch)
            return (p, o), (st["loss"], st["n_errors"])

        @jax.jit
        def epoch(p, o, xs, ds, ls, betas):
            return jax.lax.scan(body, (p, o), (xs, ds, ls, betas))

        sl = slice(0, n)
        t0 = time.perf_counter()
        (p, o), (loss, _) = epoch(p0, o0, xs[sl], ds[sl], ls[sl], betas[sl])
        float(loss[-1])
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        (p, o), (loss, err) = epoch(p, o, xs[sl], ds[sl], ls[sl], betas[sl])
        float(loss[-1])
        elapsed = time.perf_counter() - t0
        results.append({"driver": "epoch", "first_call_s": round(first, 2), "timed_batches": n,
                        "s_per_batch": round(elapsed / n, 5), "s_per_60k_epoch": round(elapsed / n * 60000 / bs, 2),
                        "train_error_2nd_pass": round(float(jnp.sum(err)) / (n * bs), 4)})
    for r in results:
        r.update(device=str(jax.devices()[0]), precision=args.precision or "jax default")
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
