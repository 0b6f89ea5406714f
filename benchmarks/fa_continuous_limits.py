"""What limits a continuous-time feedback-alignment run (docs/benchmarks.md, *Feedback-alignment
family, continuous time, MNIST*): how far its update is from the discrete rule it stands for.

The continuous rule equals its discrete form only in the limit of a small nudge (β → 0), fully
relaxed phases and exact arithmetic (docs/rules.md). This script takes a run's last weight
snapshot and a few training batches and, for each setting below, compares the continuous update
:math:`g` with the discrete one :math:`g^*` (:meth:`FeedbackRule.discrete_deltas` on the exact
forward pass, float64), per learned projection: the cosine :math:`\\cos(g, g^*)` and the norm
ratio :math:`\\lVert g\\rVert / \\lVert g^*\\rVert`, averaged over the batches. Settings: the run's own
(β, dt, free/nudged steps, dtype), then one change each (``--variants``).

    HEBBSIM_DATA=../shared/data python benchmarks/fa_continuous_limits.py \\
        examples/mnist_dfa.toml runs/mnist_dfa.h5 --batches 10
"""

from __future__ import annotations

import argparse
import copy
import tomllib

import h5py
import numpy as np

from hebbsim.analysis.alignment import cosine
from hebbsim.data.checkpoint import checkpoint_path, load_checkpoint
from hebbsim.data.datasets import load_dataset
from hebbsim.data.params import load_params
from hebbsim.dynamics import rhs
from hebbsim.dynamics.loss import one_hot
from hebbsim.dynamics.params import Params
from hebbsim.dynamics.plasticity import delta_rule
from hebbsim.rules import make_rule
from hebbsim.simulate.engines import make_engine

# one change at a time against the run's settings: (label, dynamics overrides)
VARIANTS = {
    "run": {},
    "nudge_steps x2": {"nudge_steps": "x2"},
    "free_steps x2": {"free_steps": "x2"},
    "beta / 10": {"beta": "/10"},
    "beta x 5": {"beta": "x5"},
    "float64": {"dtype": "float64"},
}


def _apply(dyn: dict, change: dict) -> dict:
    out = dict(dyn)
    for key, how in change.items():
        if isinstance(how, str) and how[0] in "x/":
            factor = float(how[1:])
            value = out[key] * factor if how[0] == "x" else out[key] / factor
            out[key] = int(value) if key.endswith("steps") else value
        else:
            out[key] = how
    return out


def last_params(run_file: str, net, from_checkpoint: bool = False) -> Params:
    """The last weight snapshot (and biases) of a run file, or the weights of its checkpoint
    (the last completed epoch), float64."""
    if from_checkpoint:
        arrays, meta = load_checkpoint(checkpoint_path(run_file))
        weights = {p.name: np.asarray(arrays[f"weight/{p.name}"], np.float64) for p in net.projections
                   if p.kind != "tied"}
        biases = {pop.name: np.asarray(arrays[f"bias/{pop.name}"], np.float64) for pop in net.dynamic_populations}
        print(f"{checkpoint_path(run_file)}: weights after epoch {meta.get('epoch', '?')}")
        return Params(weights, biases)
    with h5py.File(run_file, "r") as f:
        weights = {p.name: np.asarray(f[f"weight_{p.name}"][-1], np.float64) for p in net.projections
                   if p.kind != "tied"}
        biases = {pop.name: np.asarray(f[f"bias_{pop.name}"][-1], np.float64) for pop in net.dynamic_populations}
        epoch = int(f["snapshot"][-1])
    print(f"{run_file}: weights of epoch {epoch}")
    return Params(weights, biases)


def update(raw: dict, dyn: dict, params: Params, x, d):
    """The continuous update of one batch with ``dyn`` as the [dynamics] table; also the free states."""
    cfg = load_params({**raw, "dynamics": dyn})
    net = cfg.build_network()
    dtype = np.dtype(cfg.dynamics.dtype)
    p = Params({k: v.astype(dtype) for k, v in params.weights.items()},
               {k: v.astype(dtype) for k, v in params.biases.items()})
    rule = make_rule(cfg, net)
    eng = make_engine("numba", net, cfg.dynamics.dt, cfg.dynamics.dtype)
    system = eng.clamp(rule.inference_params(p), x.astype(dtype))
    result = rule.batch(system, p, rule.init_state(np.random.default_rng(0), dtype), x.astype(dtype),
                        d.astype(dtype), rhs.zero_states(net, len(x), dtype), {"beta": cfg.dynamics.beta})
    return result


def discrete(raw: dict, dyn: dict, params: Params, x, d):
    """The discrete update on the exact forward pass (float64, a free phase relaxed to rounding)."""
    dyn = {**dyn, "dtype": "float64", "free_steps": 400}
    cfg = load_params({**raw, "dynamics": dyn})
    net = cfg.build_network()
    rule = make_rule(cfg, net)
    eng = make_engine("numba", net, cfg.dynamics.dt, "float64")
    free = eng.clamp(rule.inference_params(params), x).relax(rhs.zero_states(net, len(x), np.float64), 400).states
    deltas = rule.discrete_deltas(params, free, x, d)
    return net, delta_rule(net, rhs.rates(net, free, x), deltas)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("params", help="the run's parameter file")
    ap.add_argument("run", help="its run file (the last weight snapshot is used)")
    ap.add_argument("--checkpoint", action="store_true", help="use the run's checkpoint (its last completed epoch)")
    ap.add_argument("--batches", type=int, default=10, help="training batches (fixed: the first ones of a seeded draw)")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    args = ap.parse_args(argv)

    with open(args.params, "rb") as fh:
        raw = tomllib.load(fh)
    raw = copy.deepcopy(raw)
    raw.pop("record", None)
    dyn0 = raw.pop("dynamics")
    cfg = load_params({**raw, "dynamics": dyn0})
    net = cfg.build_network()
    params = last_params(args.run, net, args.checkpoint)
    data = load_dataset(cfg.data.dataset)
    rng = np.random.default_rng(0)
    bs = cfg.learning.batch_size
    idx = rng.choice(len(data.x_train), size=args.batches * bs, replace=False)

    rows = {}
    for label in args.variants:
        dyn = _apply(dyn0, VARIANTS[label])
        cos, ratio, resid = {}, {}, []
        for b in range(args.batches):
            sel = idx[b * bs:(b + 1) * bs]
            x = np.asarray(data.x_train[sel], np.float64)
            d = one_hot(np.asarray(data.y_train[sel]), data.n_classes, np.float64)
            result = update(raw, dyn, params, x, d)
            _, want = discrete(raw, dyn, params, x, d)
            for p in net.learned:
                k = f"W_{p.name}"
                cos.setdefault(k, []).append(cosine(result.grads[k], want[k]))
                ratio.setdefault(k, []).append(np.linalg.norm(result.grads[k]) / np.linalg.norm(want[k]))
            resid.append(float(result.phases["nudged"].residual))
        rows[label] = (dyn, {k: (1 - np.mean(cos[k]), 1 - np.min(cos[k]), np.mean(ratio[k]) - 1) for k in cos}, resid)

    keys = [f"W_{p.name}" for p in net.learned]
    print(f"{args.batches} batches of {bs}; 1 - cos: mean (worst) over the batches, cosine to the discrete update; "
          "|g|/|g*| - 1: mean norm ratio - 1")
    head = " | ".join(f"{k}: 1 - cos, |g|/|g*| - 1" for k in keys)
    print(f"| setting | beta | dt | free | nudged | dtype | {head} | nudged residual |")
    print("|" + " --- |" * (7 + len(keys)))
    for label, (dyn, stats, resid) in rows.items():
        cells = [f"{stats[k][0]:.1e} ({stats[k][1]:.1e}), {stats[k][2]:+.1e}" for k in keys]
        print(f"| {label} | {dyn['beta']:g} | {dyn['dt']:g} | {dyn['free_steps']} | {dyn['nudge_steps']} | "
              f"{dyn.get('dtype', 'float32')} | " + " | ".join(cells) + f" | {np.mean(resid):.1e} |")


if __name__ == "__main__":
    main()
