"""Alignment of the forward_gradient rule with the exact gradient against ε and window length.

8-12-4 feed-forward network of additive sigmoid neurons (float64, numba engine), 16 samples at
their free fixed point. For each (ε, perturb_time) the rule's update averaged over
``--draws`` perturbations per sample is compared (cosine) with −∇L from implicit
differentiation, per projection; the gated network is shown for comparison.

    PYTHONPATH=. python benchmarks/fg_alignment.py --out docs/fg_alignment.png
    PYTHONPATH=. python benchmarks/fg_alignment.py --convergence   # cosine against draws, two seeds
"""

from __future__ import annotations

import argparse

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from hebbsim.analysis import gradients as G  # noqa: E402
from hebbsim.dynamics import forward_gradient as fg  # noqa: E402
from hebbsim.dynamics import rhs  # noqa: E402
from hebbsim.dynamics.network import build_network  # noqa: E402
from hebbsim.dynamics.params import init_params  # noqa: E402
from hebbsim.rules.forward_gradient import window as fg_window  # noqa: E402
from hebbsim.simulate.engines.numba_engine import NumbaEngine  # noqa: E402

DT = 0.1


def problem(neuron: str):
    rng = np.random.default_rng(0)
    net = build_network([8, 12, 4], "feedforward", rho="sigmoid", neuron=neuron)
    params = init_params(net, 1, np.float64)
    for b in params.biases.values():
        b[:] = rng.uniform(-0.5, 0.5, size=b.shape)
    x, d = rng.random((16, 8)), np.eye(4)[rng.integers(0, 4, 16)]
    system = NumbaEngine(net, DT, np.float64).clamp(params, x)
    free = system.relax(rhs.zero_states(net, 16, np.float64), 100_000, tol=1e-13).states
    return net, system, free, d, G.implicit_gradient(net, params, x, d, free)


def alignment(net, system, free, d, exact, eps, T, draws, seed=0):
    rng = np.random.default_rng(seed)
    perturb = ("h1", "o")
    reward, learn, perturbed = fg.masks(perturb, "global", draws, len(d))
    u = {p: rng.standard_normal((draws * len(d), net.sizes[p])) for p in perturb}
    _, e = fg_window(system, free, draws, fg.perturbation_current(u, eps, perturbed), d, {}, reward, learn,
                                   int(round(T / DT)))
    g = fg.fg_gradients(e, eps, draws * len(d))
    return {k: G.cosine(g[k], exact[k]) for k in ("W_x_to_h1", "W_h1_to_o")}


def convergence(draws=(500, 2000, 8000, 32000), seeds=(0, 1)) -> None:
    """Cosine of the Monte Carlo mean against the number of draws (ε = 1e-3, T = 4), per neuron
    model and draw seed: does it converge to the exact expectation, and how fast."""
    for neuron in ("gated", "additive"):
        net, system, free, d, exact = problem(neuron)
        for n in draws:
            print(neuron, n, [{k: round(v, 3) for k, v in alignment(net, system, free, d, exact, 1e-3, 4.0, n, s).items()}
                              for s in seeds], flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--draws", type=int, default=2000)
    ap.add_argument("--out", default="docs/fg_alignment.png")
    ap.add_argument("--convergence", action="store_true", help="only print the cosine against draws")
    args = ap.parse_args()
    jax.config.update("jax_enable_x64", True)
    if args.convergence:
        convergence()
        return
    windows = [0.2, 0.5, 1.0, 2.0, 4.0, 8.0]
    epsilons = [1e-4, 1e-3, 1e-2, 1e-1, 0.3, 1.0]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for neuron, style in (("additive", "-o"), ("gated", "--s")):
        net, system, free, d, exact = problem(neuron)
        by_t = [alignment(net, system, free, d, exact, 1e-3, T, args.draws) for T in windows]
        by_e = [alignment(net, system, free, d, exact, e, 4.0, args.draws) for e in epsilons]
        for key, colour in (("W_x_to_h1", "C0"), ("W_h1_to_o", "C1")):
            axes[0].plot(windows, [a[key] for a in by_t], style, color=colour, label=f"{key} ({neuron})")
            axes[1].plot(epsilons, [a[key] for a in by_e], style, color=colour, label=f"{key} ({neuron})")
        print(neuron, "by perturb_time", [{k: round(v, 3) for k, v in a.items()} for a in by_t])
        print(neuron, "by epsilon", [{k: round(v, 3) for k, v in a.items()} for a in by_e])
    axes[0].set(xscale="log", xlabel="perturb_time (ε = 1e-3)", ylabel="cosine with −∇L",
                title=f"window length ({args.draws} draws × 16 samples)")
    axes[1].set(xscale="log", xlabel="ε (perturb_time = 4)", title="perturbation amplitude")
    for ax in axes:
        ax.axhline(0.9, color="grey", lw=0.5)
        ax.set_ylim(-0.05, 1.02)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)


if __name__ == "__main__":
    main()
