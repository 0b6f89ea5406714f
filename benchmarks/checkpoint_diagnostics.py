"""What limits a contrastive run's learning, read from its checkpoint (issue 19 point 1: the
2 × 1500 loop network learning slowly). On ``--samples`` *training* images (the last ones; the
test set is not read), with the weights of the run's last completed epoch:

- how many samples carry a learning signal at all: the share whose cost at the free fixed point
  is exactly 0 (with clipped states an output at its one-hot target is at rest, and the
  nudge moves nothing), and the share misclassified;
- how far the nudge reaches: the rms rate change ρ(s^β) − ρ(s⁰) of every population after
  5 … 160 nudged steps at the run's β (steady by the run's ``nudge_steps``, or not);
- how far the weights have moved: Frobenius norms now and at initialisation;
- the rule's update against −∇L (exact, implicit differentiation at the free state), per
  learned projection, in degrees (:func:`hebbsim.analysis.gradients.implicit_gradient`).

    HEBBSIM_DATA=../shared/data python benchmarks/checkpoint_diagnostics.py runs/mnist_loop2x1500.h5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from hebbsim.analysis.alignment import angle  # noqa: E402
from hebbsim.analysis.gradients import implicit_gradient  # noqa: E402
from hebbsim.data.datasets import load_dataset  # noqa: E402
from hebbsim.dynamics import rhs  # noqa: E402
from hebbsim.dynamics.loss import cost, one_hot, prediction  # noqa: E402
from hebbsim.dynamics.network import OUTPUT  # noqa: E402
from hebbsim.dynamics.nonlinearities import rho  # noqa: E402
from hebbsim.simulate.phases import free_phase, nudged_phase  # noqa: E402
from settling import load_run  # noqa: E402

NUDGE_MARKS = (5, 10, 20, 40, 80, 160)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a run file whose checkpoint (RUN.ckpt.npz) sits beside it")
    ap.add_argument("--samples", type=int, default=200, help="training images, the last ones of the set")
    ap.add_argument("--gradient-samples", type=int, default=50,
                    help="of those, the first ones the exact gradient is taken on (its memory grows with units² × samples)")
    args = ap.parse_args()

    initial = load_run(args.run, initial=True)[1].params
    cfg, trainer, epoch = load_run(args.run)
    net, engine, rule, params = trainer.net, trainer.engine, trainer.rule, trainer.params
    data = load_dataset(cfg.data.dataset)
    x = data.x_train[-args.samples:].astype(engine.dtype)
    labels = data.y_train[-args.samples:]
    d = one_hot(labels, net.sizes[OUTPUT], engine.dtype, cfg.learning.label_smoothing)
    system = engine.clamp(rule.inference_params(params), x)
    free = free_phase(system, rhs.zero_states(net, len(x), engine.dtype), 10 * cfg.dynamics.free_steps, 1e-6).states
    print(f"{args.run}: epoch {epoch}, {len(x)} training images, free phase relaxed to max|ds/dt| < 1e-6")

    c = np.asarray(cost(net, free[OUTPUT], d))
    print(f"cost exactly 0 at the free state: {np.mean(c == 0):.1%} of the samples; "
          f"misclassified {np.mean(prediction(net, free[OUTPUT]) != labels):.1%}")

    beta, states, done = cfg.dynamics.beta, free, 0
    print(f"rms rate change after n nudged steps at beta = {beta:g} (the run uses {cfg.dynamics.nudge_steps}):")
    for n in NUDGE_MARKS:
        states = nudged_phase(system, states, d, beta, n - done).states
        done = n
        moved = {k: float(np.sqrt(np.mean((rho(states[k], net.rho) - rho(free[k], net.rho)) ** 2))) for k in states}
        print(f"  {n:4d}: " + ", ".join(f"{k} {v:.2e}" for k, v in moved.items()))

    print("weights, Frobenius norm at initialisation -> now:")
    for p in net.learned:
        print(f"  {p.name}: {np.linalg.norm(initial.weights[p.name]):.1f} -> {np.linalg.norm(params.weights[p.name]):.1f}")

    # the implicit gradient solves one (n × n) system per sample (n: the network's units): a few samples
    m = min(args.gradient_samples, len(x))
    xs, ds_, fs = x[:m], d[:m], {k: v[:m] for k, v in free.items()}
    sub = engine.clamp(rule.inference_params(params), xs)
    estimate = rule.probe_estimate(sub, params, xs, ds_, fs, beta, cfg.dynamics.nudge_steps)
    with jax.enable_x64(True):
        exact = implicit_gradient(net, rule.inference_params(params).astype(np.float64), np.asarray(xs, np.float64),
                                  np.asarray(ds_, np.float64), {k: np.asarray(v, np.float64) for k, v in fs.items()})
    print(f"the rule's update against -dL/dW on the first {m} of them, {int(np.sum(c[:m] > 0))} with a cost "
          "(degrees; nan where none has one, so neither moves):")
    for p in net.learned:
        print(f"  {p.name}: {angle(estimate[f'W_{p.name}'], np.asarray(exact[f'W_{p.name}'])):.1f}")


if __name__ == "__main__":
    main()
