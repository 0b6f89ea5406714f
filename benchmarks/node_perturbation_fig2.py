"""Seed 003's Fig. 2 A–C from one sweep over the noise level c_h (node perturbation against
feedback alignment): per epoch, for each feedback route, (A) the relative error between B and the
forward weights it feeds back along, (B) their sign congruence, (C) the angle between the rule's
update of the forward weights into that layer and the true gradient (``grad_alignment``, on the
probe samples). One line per c_h; feedback alignment (the point with ``feedback_lr = 0``) dashed.
Rows: the route into the top hidden layer, then the routes below it (each row's angle is that of
the forward projection into the layer the route feeds).

    python benchmarks/node_perturbation_fig2.py runs/sweep_mnist_node_perturbation docs/node_perturbation_fig2.png

The sweep: examples/sweep_mnist_node_perturbation.toml (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import hebbsim  # noqa: E402

SIGMA = "sigma"  # the sweep's dimension: dynamics.noise.sigma


def draw(sweep, out: str):
    ds = sweep.isel(seed=0) if "seed" in sweep.dims else sweep
    routes = list(ds.feedback.values)  # e.g. h2_to_h1, o_to_h2: the route into h2 first
    routes.sort(key=lambda r: r.split("_to_")[1], reverse=True)
    learned = list(ds.projection.values)
    into = {r: next(p for p in learned if p.endswith("_to_" + r.split("_to_")[1])) for r in routes}
    lrs = ds.feedback_lr.values
    sigmas = ds[SIGMA].values
    np_points = [i for i in range(len(sigmas)) if lrs[i] > 0]
    colours = plt.cm.viridis(np.linspace(0.0, 0.85, max(len(np_points), 1)))
    epochs = ds.epoch.values
    fig, axes = plt.subplots(len(routes), 3, figsize=(11, 3.1 * len(routes)), squeeze=False, sharex=True)
    panels = [("feedback_error", "relative error of B vs W", 1.0),
              ("feedback_sign_congruence", "sign congruence (%)", 100.0),
              ("grad_alignment", "update vs true gradient (°)", 1.0)]
    for row, route in enumerate(routes):
        src, dst = route.split("_to_")
        for col, (var, title, scale) in enumerate(panels):
            ax = axes[row, col]
            sel = {"projection": into[route]} if var == "grad_alignment" else {"feedback": route}
            for k, i in enumerate(np_points):
                y = ds[var].isel({SIGMA: i}).sel(sel).values * scale
                ax.plot(epochs, y, "o-", ms=3, color=colours[k], label=f"NP, $c_h$ = {sigmas[i]:g}")
            for i in range(len(sigmas)):
                if lrs[i] == 0:
                    y = ds[var].isel({SIGMA: i}).sel(sel).values * scale
                    ax.plot(epochs, y, "k--", label="FA (B fixed)")
            if var == "feedback_error":
                ax.set_yscale("log")
            ax.set_title(f"{'ABC'[col]}: {title}" if row == 0 else title, fontsize=10)
            if col == 0:
                ax.set_ylabel(f"route {src} → {dst}\n(update of W into {dst})")
            if row == len(routes) - 1:
                ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Feedback learned by node perturbation vs feedback alignment (seed 003 Fig. 2 A–C)", fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    from PIL import Image  # matplotlib's own dependency: a 64-colour palette keeps the PNG small for docs/

    with Image.open(out) as img:
        small = img.convert("RGB").quantize(colors=64)
    small.save(out, optimize=True)
    return fig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep", help="the sweep folder (examples/sweep_mnist_node_perturbation.toml's output)")
    ap.add_argument("out", help="the PNG to write")
    args = ap.parse_args()
    draw(hebbsim.open_sweep(args.sweep), args.out)


if __name__ == "__main__":
    main()
