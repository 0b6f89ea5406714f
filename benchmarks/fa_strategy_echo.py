r"""Where a hidden layer's error signal comes from in seed 002's strategies (docs/benchmarks.md,
*Discrete references (seed 002 protocol)*): how much of the first hidden layer's :math:`\delta_1`
is its own direct error come back.

In strategy ``s3`` the second hidden layer hears the first one's direct error
:math:`\hat\delta_1 = \rho'(a_1) \odot B_1 u_1` through the route from below :math:`\hat B`, and the
first one hears the second's whole :math:`\delta_2` through the route from above :math:`\tilde B`;
so :math:`\delta_1` holds :math:`\rho'(a_1) \odot \tfrac12 \tilde B(\rho'(a_2) \odot \tfrac13 \hat B
\hat\delta_1)`, its own direct error sent up and back down through two fixed random matrices.
For each run file this prints, on 1000 training samples at the run's last checkpoint (float64,
the discrete form :meth:`FeedbackRule.discrete_deltas`): the norms of h1's direct part, its part
from above and the echo inside that part, the cosine of :math:`\delta_1` with h1's direct error
direction :math:`\rho'(a_1) \odot B_1 u_1` (with auxiliary errors: the gradient of h1's own
auxiliary loss), and the mean size of the output error :math:`e` and of h1's :math:`u_1`.

    HEBBSIM_DATA=../shared/data python benchmarks/fa_strategy_echo.py runs/seed002/fa_strategy_s3_aux.h5 \
        runs/seed002/fa_strategy_s3.h5 runs/seed002/fa_strategy_s1_aux.h5
"""

from __future__ import annotations

import argparse

import numpy as np

import hebbsim
from hebbsim.analysis.alignment import cosine
from hebbsim.analysis.rundata import parameters
from hebbsim.data.datasets import load_dataset
from hebbsim.data.params import load_params
from hebbsim.dynamics import rhs
from hebbsim.dynamics.loss import cost_gradient, one_hot
from hebbsim.dynamics.network import OUTPUT
from hebbsim.dynamics.nonlinearities import rho_prime
from hebbsim.rules import make_rule
from hebbsim.simulate.engines import make_engine

from fa_continuous_limits import last_params


def echo_table(run_file: str, samples: int = 1000) -> dict:
    with hebbsim.open_run(run_file) as run:
        cfg = load_params(parameters(run), ["dynamics.dtype='float64'"])
    net = cfg.build_network()
    rule = make_rule(cfg, net)
    params = last_params(run_file, net, from_checkpoint=True)
    data = load_dataset(cfg.data.dataset, cfg.data.root)
    idx = np.random.default_rng(0).choice(len(data.x_train), samples, replace=False)
    x = np.asarray(data.x_train[idx], np.float64)
    d = one_hot(np.asarray(data.y_train[idx]), data.n_classes, np.float64)
    engine = make_engine("reference", net, cfg.dynamics.dt, "float64")
    free = engine.clamp(rule.inference_params(params), x).relax(rhs.zero_states(net, samples, np.float64), 1).states
    deltas = rule.discrete_deltas(params, free, x, d)
    e = cost_gradient(net, free[OUTPUT], d)
    signals = rule.output_signals(params, free, rhs.rates(net, free, x), e, d)
    direct = rule.direct_errors(params, free, signals)
    h1, h2 = net.hidden[0], net.hidden[1]
    rp1, rp2 = rho_prime(free[h1], net.rho), rho_prime(free[h2], net.rho)
    w1 = rule.route_weight(h1)
    from_output = [p for p in rule._routes(h1) if p.src == OUTPUT]
    from_above = [p for p in rule._routes(h1) if rule._live(p)]
    own = rp1 * (signals[h1] @ params.weight(from_output[0]).T)  # h1's direct error direction
    row = {"direct": np.linalg.norm(w1 * own), "above": 0.0, "echo": 0.0}
    if from_above:
        row["above"] = np.linalg.norm(rp1 * w1 * (deltas[h2] @ params.weight(from_above[0]).T))
        for p in rule._routes(h2):
            if p.tag == "below":
                from_below = rp2 * rule.route_weight(h2) * (direct[p.src] @ params.weight(p).T)
                row["echo"] = np.linalg.norm(rp1 * w1 * (from_below @ params.weight(from_above[0]).T))
    row["cos"] = cosine(deltas[h1], own)
    row["e"] = np.abs(e).sum(1).mean()
    row["u1"] = np.abs(signals[h1]).sum(1).mean()
    fs = cfg.learning.fa_strategy
    row["label"] = f"{fs.strategy}{' + auxiliary' if fs.auxiliary else ''}"
    return row


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="fa_strategy run files with their checkpoints")
    ap.add_argument("--samples", type=int, default=1000)
    args = ap.parse_args(argv)
    print("| strategy | ‖direct part of δ₁‖ | ‖part from above‖ | of which echo of h1's own direct error | "
          "cos(δ₁, h1's direct error) | mean Σ|e| | mean Σ|u₁| |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for run in args.runs:
        r = echo_table(run, args.samples)
        print(f"| {r['label']} | {r['direct']:.3g} | {r['above']:.3g} | {r['echo']:.3g} | {r['cos']:+.2f} | "
              f"{r['e']:.4f} | {r['u1']:.4f} |")


if __name__ == "__main__":
    main()
