"""How fast a trained network's free phase settles, and what ending it early costs in accuracy
(issue 19 point 4: "a convergence criterion that ends phases early at equal accuracy").

Reads a run's checkpoint (``<run>.h5.ckpt.npz``: the weights of its last completed epoch) and its
parameter file (the run file's ``parameters`` attribute), relaxes the free phase from zero
states on ``--samples`` *training* images (the last ones: the test set is not looked at) on the
numba engine, and reports after every ``--every`` steps: the residual ``max |Δs|/dt`` (mean over
batches of each batch's maximum), the error of the prediction read out at that step, and the
share of predictions that already agree with the one at the run's own ``eval_steps`` (or
``free_steps``). With ``--tol`` also the steps a tolerance-terminated free phase takes per
batch (``dynamics.tol``: it ends once the whole batch's residual is below it).

    HEBBSIM_DATA=../shared/data python benchmarks/settling.py runs/mnist_loop2x1500.h5 [--samples 2000]
    HEBBSIM_DATA=../shared/data python benchmarks/settling.py RUN --init    # the run's initial weights instead
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import xarray as xr

from hebbsim.analysis.rundata import parameters
from hebbsim.data.checkpoint import checkpoint_path, load_checkpoint
from hebbsim.data.datasets import load_dataset
from hebbsim.data.params import load_params
from hebbsim.dynamics import rhs
from hebbsim.dynamics.loss import prediction
from hebbsim.dynamics.network import OUTPUT
from hebbsim.dynamics.params import init_params
from hebbsim.simulate.engines.numba_engine import NumbaEngine
from hebbsim.simulate.phases import free_phase
from hebbsim.simulate.trainer import make_trainer


def load_run(run: str, initial: bool = False):
    """``(cfg, trainer, epoch)``: the run's parameters and a numba-engine trainer holding its
    last completed epoch (its checkpoint, loaded as ``--resume`` loads it), or with
    ``initial`` the run's initial weights (epoch 0)."""
    with xr.open_dataset(run, engine="h5netcdf") as ds:
        cfg = load_params(parameters(ds))
    net = cfg.build_network()
    dtype = np.dtype(cfg.dynamics.dtype)
    rng = np.random.default_rng(cfg.learning.seed)  # drawn as the runner draws them
    arrays, meta = ({}, {"epoch": 0}) if initial else load_checkpoint(checkpoint_path(run))
    # per-sample buffers (persistent states, a rule's) are as long as the training set they saw
    n_train = next((len(v) for k, v in arrays.items() if k.startswith(("buffer/", "persistent/"))), 1)
    trainer = make_trainer(cfg, net, NumbaEngine(net, cfg.dynamics.dt, dtype), init_params(net, rng, dtype),
                           n_train, rng)
    if not initial:
        trainer.load_state_dict(arrays, meta["trainer"])
    return cfg, trainer, int(meta["epoch"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a run file whose checkpoint (RUN.ckpt.npz) sits beside it")
    ap.add_argument("--samples", type=int, default=2000, help="training images, the last ones of the set")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--every", type=int, default=10, help="report every this many steps")
    ap.add_argument("--steps", type=int, default=200, help="relax this long in all")
    ap.add_argument("--tol", type=float, nargs="*", default=[1e-2, 3e-3, 1e-3])
    ap.add_argument("--init", action="store_true", help="the run's initial weights instead of the checkpoint's")
    args = ap.parse_args()

    cfg, trainer, epoch = load_run(args.run, args.init)
    net, engine = trainer.net, trainer.engine
    params = trainer.rule.inference_params(trainer.params)
    reference_steps = cfg.dynamics.eval_steps or cfg.dynamics.free_steps
    data = load_dataset(cfg.data.dataset)
    x, y = data.x_train[-args.samples:].astype(engine.dtype), data.y_train[-args.samples:]

    marks = list(range(args.every, args.steps + 1, args.every))
    residual = np.zeros(len(marks))
    predicted = np.zeros((len(marks), len(x)), dtype=np.int64)
    tol_steps = {tol: [] for tol in args.tol}
    n_batches = 0
    for start in range(0, len(x), args.batch):
        xb = x[start:start + args.batch]
        system = engine.clamp(params, xb)
        states = rhs.zero_states(net, len(xb), engine.dtype)
        for k in range(len(marks)):
            out = free_phase(system, states, args.every)
            states = out.states
            residual[k] += out.residual
            predicted[k, start:start + len(xb)] = prediction(net, np.asarray(states[OUTPUT]))
        for tol in args.tol:
            tol_steps[tol].append(free_phase(system, rhs.zero_states(net, len(xb), engine.dtype), args.steps, tol).steps)
        n_batches += 1
    residual /= n_batches
    at_reference = marks.index(reference_steps) if reference_steps in marks else len(marks) - 1
    print(json.dumps({"run": args.run, "epoch": epoch, "layers": list(cfg.network.layers),
                      "dt": cfg.dynamics.dt, "samples": len(x), "batch": args.batch,
                      "reference_steps": marks[at_reference]}))
    print("| free steps | residual max \\|Δs\\|/dt | training error | agrees with step "
          f"{marks[at_reference]} |\n| --- | --- | --- | --- |")
    for k, m in enumerate(marks):
        err = float(np.mean(predicted[k] != y))
        agree = float(np.mean(predicted[k] == predicted[at_reference]))
        print(f"| {m} | {residual[k]:.2e} | {100 * err:.2f} % | {100 * agree:.2f} % |")
    for tol, steps in tol_steps.items():
        print(f"tol = {tol:g}: {np.mean(steps):.1f} free steps on average (min {min(steps)}, max {max(steps)})")


if __name__ == "__main__":
    main()
