"""How well does the sigprop loop's ep_chl update follow the exact gradient? (issue: jax engine, point 4)

Trains the quickstart network (digits, loop 64-128-10, ep_chl, float64 here) and, before
training and after chosen epochs, takes a fixed batch of training samples, relaxes the free
phase to rest, and compares, per projection, the ep_chl update at β (the training β and a
small one) with −∇_W L from implicit differentiation at that fixed point
(:func:`hebbsim.analysis.gradients.implicit_gradient`). A research figure: no threshold.

    python benchmarks/loop_gradient_angles.py [--epochs 0 1 5 30] [--batch 200]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

from hebbsim.analysis.gradients import angle, implicit_gradient  # noqa: E402
from hebbsim.data.datasets import load_dataset  # noqa: E402
from hebbsim.data.params import load_params  # noqa: E402
from hebbsim.dynamics import rhs  # noqa: E402
from hebbsim.dynamics.loss import one_hot  # noqa: E402
from hebbsim.dynamics.params import init_params  # noqa: E402
from hebbsim.dynamics.plasticity import ep_chl  # noqa: E402
from hebbsim.simulate.engines.numba_engine import NumbaEngine  # noqa: E402
from hebbsim.simulate.trainer import Trainer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def angles(net, params, x, d, betas, dt):
    system = NumbaEngine(net, dt, np.float64).clamp(params, x)
    free = system.relax(rhs.zero_states(net, len(x), np.float64), 20_000, tol=1e-10)
    exact = implicit_gradient(net, params, x, d, free.states)
    rates = lambda s: rhs.rates(net, s, x)  # noqa: E731
    rows = {}
    for beta in betas:
        nudged = system.relax(free.states, 20_000, beta=beta, target=d, tol=1e-10)
        est = ep_chl(net, rates(free.states), rates(nudged.states), beta)
        rows[beta] = {p.name: angle(est[f"W_{p.name}"], exact[f"W_{p.name}"]) for p in net.learned}
    return free.residual, rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, nargs="+", default=[0, 1, 5, 30])
    ap.add_argument("--batch", type=int, default=200)
    args = ap.parse_args()
    cfg = load_params(ROOT / "examples" / "quickstart.toml", ["dynamics.dtype=\"float64\""])
    net = cfg.build_network()
    data = load_dataset("digits")
    x_train = data.x_train.astype(np.float64)
    xb, db = x_train[: args.batch], one_hot(data.y_train[: args.batch], 10, np.float64)
    rng = np.random.default_rng(cfg.learning.seed)
    params = init_params(net, rng, np.float64)
    trainer = Trainer(cfg, net, NumbaEngine(net, cfg.dynamics.dt, np.float64), params, len(x_train), rng)
    betas = (cfg.dynamics.beta, 0.01)
    names = [p.name for p in net.learned]
    print(f"| epoch | test error | free residual | β | " + " | ".join(names) + " |")
    print("| --- " * (4 + len(names)) + "|")
    done = 0
    for epoch in sorted(args.epochs):
        while done < epoch:
            trainer.train_epoch(x_train, data.y_train, progress=False)
            done += 1
        err, _ = trainer.evaluate(data.x_test.astype(np.float64), data.y_test)
        residual, rows = angles(net, trainer.params, xb, db, betas, cfg.dynamics.dt)
        for beta, row in rows.items():
            print(f"| {epoch} | {100 * err:.2f} % | {residual:.1e} | {beta:g} | "
                  + " | ".join(f"{row[n]:.1f}°" for n in names) + " |", flush=True)


if __name__ == "__main__":
    main()
