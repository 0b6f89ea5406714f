"""What limits node perturbation's estimate of ∂L/∂I (issue 13 point 6): on a trained network
(a run's checkpoint), ``n`` training images, the exact ∂L/∂I_j of every hidden unit (``jax.grad``
of the forward pass by the unit's input current) against the estimate λ̂_j
(docs/rules.md), averaged over K noisy repetitions per sample, for several noise levels c_h:

* discrete: λ̂ = (L̃ − L) ξ / c_h, one Gaussian current c_h ξ per unit (the reference engine);
* continuous: λ̂ = (L̃ − L) ξ(T) / c_h², the numba engine's noisy phase with Ornstein–Uhlenbeck
  noise of correlation time ``tau`` (the rule's own ``perturbation_estimate``).

Per hidden layer: ``cos`` — the mean over samples of cos(λ̂, ∂L/∂I) (the estimate's noise: one
sample's λ̂ is one random direction plus the gradient's share); ``gain`` — the least-squares
slope of λ̂ on ∂L/∂I over all samples and units (its bias: 1 unbiased; < 1 the quasi-static
attenuation of a current that moves during the phase, or curvature at large c_h).

    python benchmarks/node_perturbation_limits.py RUN.h5.ckpt.npz [--n 500] [--layers 784 50 20 10]
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

from hebbsim.data.checkpoint import load_checkpoint  # noqa: E402
from hebbsim.data.datasets import load_dataset  # noqa: E402
from hebbsim.data.params import load_params  # noqa: E402
from hebbsim.dynamics import rhs  # noqa: E402
from hebbsim.dynamics.loss import cost, one_hot  # noqa: E402
from hebbsim.dynamics.network import OUTPUT  # noqa: E402
from hebbsim.dynamics.noise import NoiseModel, draw_phase, noise_generator  # noqa: E402
from hebbsim.dynamics.params import Params  # noqa: E402
from hebbsim.rules import make_rule  # noqa: E402
from hebbsim.simulate.engines import engine_from_params  # noqa: E402


def config(layers, engine: str, sigma: float, tau: float = 20.0):
    dyn = {"engine": engine, "dtype": "float64", "noise": {"kind": "white" if engine == "reference" else "ou",
                                                            "sigma": sigma, "tau": tau}}
    if engine != "reference":
        dyn.update(dt=0.5, free_steps=30, nudge_steps=20, beta=0.1)
    return load_params({"network": {"layers": list(layers), "rho": "sigmoid"}, "dynamics": dyn,
                        "learning": {"rule": "node_perturbation", "cost": "rate_mse"}, "data": {"dataset": "mnist"}})


def scores(lam: dict, exact: dict) -> dict:
    out = {}
    for h, g in exact.items():
        est = np.asarray(lam[h])
        cos = (est * g).sum(1) / (np.linalg.norm(est, axis=1) * np.linalg.norm(g, axis=1) + 1e-300)
        out[h] = (float(cos.mean()), float((est * g).sum() / (g * g).sum()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--layers", type=int, nargs="+", default=[784, 50, 20, 10])
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.01, 0.05, 0.2, 0.5])
    ap.add_argument("--repeats", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--taus", type=float, nargs="+", default=[5.0, 20.0, 80.0])
    args = ap.parse_args()
    arrays, _ = load_checkpoint(args.checkpoint)
    params = Params({k[7:]: arrays[k].astype(np.float64) for k in arrays if k.startswith("weight/")},
                    {k[5:]: arrays[k].astype(np.float64) for k in arrays if k.startswith("bias/")})
    data = load_dataset("mnist")
    x = data.x_train[: args.n].astype(np.float64)
    d = one_hot(data.y_train[: args.n], 10, np.float64)

    ref_cfg = config(args.layers, "reference", 0.05)
    net = ref_cfg.build_network()
    ref = engine_from_params(ref_cfg, net)
    hidden = net.hidden

    xj = jax.numpy.asarray(x)  # traced through: the forward pass's array module follows x

    def total_loss(extra):
        return cost(net, ref.forward(params, xj, extra)[OUTPUT], d).sum()

    zero = {h: np.zeros((args.n, net.sizes[h])) for h in hidden}
    exact = {h: np.asarray(g) for h, g in jax.grad(total_loss)(zero).items()}
    clean = np.asarray(cost(net, ref.forward(params, x)[OUTPUT], d))
    rng = np.random.default_rng(0)
    print(f"{args.n} samples; |∂L/∂I| per unit, mean: " + ", ".join(f"{h} {np.abs(exact[h]).mean():.2e}" for h in hidden))
    print("discrete: c_h, K, then per layer: mean cos(λ̂, ∂L/∂I), gain")
    for sigma in args.sigmas:
        for k in args.repeats:
            lam = {h: 0.0 for h in hidden}
            for _ in range(k):
                xi = {h: rng.standard_normal((args.n, net.sizes[h])) for h in hidden}
                noisy = np.asarray(cost(net, ref.forward(params, x, {h: sigma * xi[h] for h in hidden})[OUTPUT], d))
                lam = {h: lam[h] + (noisy - clean)[:, None] * xi[h] / sigma / k for h in hidden}
            print(f"  {sigma:5g} {k:3d}  " + "  ".join(f"{h}: {c:.3f} {g:.3f}" for h, (c, g) in scores(lam, exact).items()))
    print("continuous (numba, OU noise, dt 0.5, 30 steps): c_h, tau, K, per layer: mean cos, gain")
    for sigma in (0.05,):
        for tau in args.taus:
            cfg = config(args.layers, "numba", sigma, tau)
            engine = engine_from_params(cfg, net)
            rule = make_rule(cfg, net)
            model = NoiseModel.from_config(cfg.dynamics.noise, net.hidden)
            init = rhs.zero_states(net, args.n, np.float64)
            gen = noise_generator(1)
            for k in args.repeats[:3]:
                lam = {h: 0.0 for h in hidden}
                for _ in range(k):
                    noise = draw_phase(gen, model, net.sizes, 30, args.n, np.float64)
                    system = engine.clamp(rule.inference_params(params), x, noise={"noisy": noise})
                    free = system.relax(init, 30).states
                    est, _, _ = rule.perturbation_estimate(system, init, cost(net, free[OUTPUT], d), d, {})
                    lam = {h: lam[h] + np.asarray(est[h]) / k for h in hidden}
                print(f"  {sigma:5g} {tau:5g} {k:3d}  "
                      + "  ".join(f"{h}: {c:.3f} {g:.3f}" for h, (c, g) in scores(lam, exact).items()))


if __name__ == "__main__":
    main()
