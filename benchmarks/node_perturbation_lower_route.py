"""Why node perturbation's route between hidden layers does not converge to W (issue 13, seed 003
Fig. 2): on a trained network (a run's checkpoint) with W frozen, fit every feedback route by
*exact* least squares (seed 003 eq. 3, the ridge solution with ε → 0) from N node-perturbation
samples, and watch the fit as N grows.

Per route B (src → dst) and pass over the training set:

* ``rel`` — ‖B − Wᵀ‖_F / ‖W‖_F, seed 003's relative error, of the fit with the *true* error
  δ_src as regressor (Theorem 1's setting) and with the *synthetic* one the rule has, ẽ_src;
* ``signs`` — sign congruence of B and Wᵀ (percent).

At the end, on the test set: the covariance of the true regressor (its eigenvalues, largest
over smallest), the relative error in the norm that matters for learning — what the route
delivers, ‖ρ′(s_dst) ⊙ (B − Wᵀ) δ_src‖ / ‖ρ′(s_dst) ⊙ Wᵀ δ_src‖ summed over samples — and the
angle between the delivered error and the true one, for the fit and for the run's own B.

    python benchmarks/node_perturbation_lower_route.py RUN.h5.ckpt.npz [--passes 5] [--sigma 0.05]

Assumes the discrete form (reference engine), one route per hidden layer (``random_feedback``
or ``direct_feedback``), sigmoid units and the squared error, as examples/mnist_node_perturbation.toml.
"""

from __future__ import annotations

import argparse

import numpy as np

from hebbsim.data.checkpoint import load_checkpoint
from hebbsim.data.datasets import load_dataset
from hebbsim.data.params import load_params
from hebbsim.dynamics.loss import cost, one_hot
from hebbsim.dynamics.network import OUTPUT
from hebbsim.dynamics.nonlinearities import rho_prime
from hebbsim.dynamics.params import Params
from hebbsim.rules import make_rule
from hebbsim.simulate.engines import engine_from_params


def forward_of(net, route):
    """The learned projection that ``route`` (a fixed feedback matrix) feeds back along."""
    return next(p for p in net.learned if p.src == route.dst and p.dst == route.src)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--layers", type=int, nargs="+", default=[784, 50, 20, 10])
    ap.add_argument("--topology", default="random_feedback")
    ap.add_argument("--sigma", type=float, default=0.05, help="c_h")
    ap.add_argument("--passes", type=int, default=5, help="passes over the 60 000 training images")
    ap.add_argument("--chunk", type=int, default=1000)
    args = ap.parse_args()

    cfg = load_params({"network": {"layers": args.layers, "rho": "sigmoid", "topology": args.topology},
                       "dynamics": {"engine": "reference", "dtype": "float64",
                                    "noise": {"kind": "white", "sigma": args.sigma}},
                       "learning": {"rule": "node_perturbation", "cost": "rate_mse"}, "data": {"dataset": "mnist"}})
    net = cfg.build_network()
    rule, engine = make_rule(cfg, net), engine_from_params(cfg, net)
    arrays, _ = load_checkpoint(args.checkpoint)
    params = Params({k[7:]: arrays[k].astype(np.float64) for k in arrays if k.startswith("weight/")},
                    {k[5:]: arrays[k].astype(np.float64) for k in arrays if k.startswith("bias/")})
    routes = [p for p in net.projections if p.kind == "fixed"]
    assert len({p.dst for p in routes}) == len(routes), "one route per hidden layer"
    target = {p.name: params.weights[forward_of(net, p).name].T for p in routes}  # Theorem 1: B → Wᵀ
    exact = Params({**params.weights, **target}, params.biases)  # the routes as backprop's: true deltas

    data = load_dataset("mnist")
    rng = np.random.default_rng(0)
    sigma = args.sigma
    regressors = ("true", "synthetic")
    gram = {(p.name, r): 0.0 for p in routes for r in regressors}
    cross = {(p.name, r): 0.0 for p in routes for r in regressors}

    def fit(name, r):
        n_src = gram[(name, r)].shape[-1]
        return np.linalg.solve(gram[(name, r)] + 1e-9 * np.eye(n_src), cross[(name, r)][..., None])[..., 0]

    def relative(b, w):
        return np.linalg.norm(b - w) / np.linalg.norm(w)

    seen = 0
    print(f"c_h {sigma}; rel = ||B - W^T|| / ||W||, signs = sign congruence; fits by exact least squares")
    for _ in range(args.passes):
        for i in range(0, len(data.x_train), args.chunk):
            x = data.x_train[i:i + args.chunk].astype(np.float64)
            d = one_hot(data.y_train[i:i + args.chunk], net.sizes[OUTPUT], np.float64)
            free = engine.forward(params, x)
            free = {k: np.asarray(v) for k, v in free.items()}
            xi = {h: rng.standard_normal(free[h].shape) for h in net.hidden}
            noisy = np.asarray(engine.forward(params, x, {h: sigma * xi[h] for h in net.hidden})[OUTPUT])
            change = np.asarray(cost(net, noisy, d)) - np.asarray(cost(net, free[OUTPUT], d))
            lam = {h: change[:, None] * xi[h] / sigma for h in net.hidden}
            deltas = {"synthetic": rule.discrete_deltas(params, free, x, d),
                      "true": rule.discrete_deltas(exact, free, x, d)}
            for p in routes:
                gain = rho_prime(free[p.dst], net.rho)
                for r in regressors:
                    u = np.asarray(deltas[r][p.src])
                    gram[(p.name, r)] = gram[(p.name, r)] + np.einsum("bj,ba,bc->jac", gain**2, u, u)
                    cross[(p.name, r)] = cross[(p.name, r)] + np.einsum("bj,bj,ba->ja", gain, lam[p.dst], u)
            seen += len(x)
        line = [f"N = {seen:8d}"]
        for p in routes:
            for r in regressors:
                b = fit(p.name, r)
                line.append(f"{p.name} [{r}]: rel {relative(b, target[p.name]):.3f} "
                            f"signs {100 * np.mean(np.sign(b) == np.sign(target[p.name])):.0f} %")
        print(" | ".join(line), flush=True)

    x = data.x_test.astype(np.float64)
    d = one_hot(data.y_test, net.sizes[OUTPUT], np.float64)
    free = {k: np.asarray(v) for k, v in engine.forward(params, x).items()}
    true = rule.discrete_deltas(exact, free, x, d)
    print("test set: what each route delivers, rho'(s_dst) * (B delta_src), against the true error")
    for p in routes:
        u = np.asarray(true[p.src])
        eig = np.linalg.eigvalsh(u.T @ u / len(u))
        gain = rho_prime(free[p.dst], net.rho)
        want = gain * (u @ target[p.name].T)
        for label, b in (("least-squares fit", fit(p.name, "true")), ("the run's B", params.weights[p.name])):
            got = gain * (u @ b.T)
            cos = (got * want).sum() / np.linalg.norm(got) / np.linalg.norm(want)
            print(f"  {p.name}, {label}: delivered relative error {relative(got, want):.3f}, "
                  f"angle {np.degrees(np.arccos(np.clip(cos, -1, 1))):.1f} deg; "
                  f"Frobenius relative error {relative(b, target[p.name]):.3f}")
        print(f"  {p.name}: covariance of delta_{p.src}, eigenvalues largest/smallest {eig[-1] / eig[0]:.0f}; "
              f"share of the largest {net.sizes[OUTPUT]}: {eig[-net.sizes[OUTPUT]:].sum() / eig.sum():.3f}")


if __name__ == "__main__":
    main()
