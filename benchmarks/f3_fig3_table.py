"""Seed 001's Fig. 3 from a sweep: F³'s test error per delayed information × feedback initialisation.

    python benchmarks/f3_fig3_table.py runs/sweep_mnist_f3 [--figure docs/f3_fig3.png]

Prints a Markdown table (rows: ``learning.f3.information``, columns: ``network.feedback.init``)
of the test error after the last epoch each point reached, mean ± spread over the sweep's
seeds, and the number of epochs behind each cell; with ``--figure`` also draws it as grouped
bars, in the paper's layout. The sweep file is ``examples/sweep_mnist_f3.toml``.
"""

from __future__ import annotations

import argparse

import numpy as np

import hebbsim
from hebbsim.analysis.rundata import last_finite

INFORMATION = "learning.f3.information"
INIT = "network.feedback.init"


def final_errors(folder: str):
    """``(errors, epochs, infos, inits)``: the test error (percent) after the last epoch each run
    reached, shape (information, init, seed), and how many epochs each run holds."""
    ds = hebbsim.open_sweep(folder)
    names = {d.split(".")[-1]: d for d in ds.dims}
    info_dim, init_dim = names["information"], names["init"]
    err = ds["test_error"].transpose(info_dim, init_dim, ..., "epoch").load() * 100.0  # lazy in the sweep
    final = last_finite(err).values
    epochs = np.isfinite(err).sum("epoch").values
    if final.ndim == 2:  # a sweep without seeds
        final, epochs = final[..., None], epochs[..., None]
    return final, epochs, list(ds[info_dim].values), list(ds[init_dim].values)


def table(final, epochs, infos, inits) -> str:
    lines = ["| information \\ feedback init | " + " | ".join(inits) + " |",
             "| --- |" + " --- |" * len(inits)]
    for i, info in enumerate(infos):
        cells = []
        for j in range(len(inits)):
            values = final[i, j][~np.isnan(final[i, j])]
            if values.size == 0:
                cells.append("–")
                continue
            spread = f" ± {values.std(ddof=1):.2f}" if values.size > 1 else ""
            cells.append(f"{values.mean():.2f}{spread} % ({int(epochs[i, j].max())} ep.)")
        lines.append(f"| {info} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figure(final, epochs, infos, inits, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.8 / len(inits)
    x = np.arange(len(infos))
    means = np.nanmean(final, axis=-1)
    # one failed variant must not flatten the rest: the axis stops at 3x the median, taller bars are cut and labelled
    top = min(np.nanmax(means) * 1.08, 3 * np.nanmedian(means))
    for j, init in enumerate(inits):
        left = x + (j - (len(inits) - 1) / 2) * width
        ax.bar(left, np.minimum(means[:, j], top), width, label=init)
        for xi, m in zip(left, means[:, j]):
            if m > top:
                ax.annotate(f"{m:.1f} %↑", (xi, top), ha="center", va="top", fontsize=8, rotation=90, color="white")
    ax.set_ylim(0, top)
    ax.set_xticks(x, [f"F³-{i}" for i in infos])
    ax.set_ylabel("MNIST test error (%)")
    ax.set_title(f"F³, 784-500-10, {int(np.max(epochs))} epochs: delayed information × feedback initialisation")
    ax.legend(title="feedback init", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", help="the sweep folder of examples/sweep_mnist_f3.toml")
    p.add_argument("--figure", help="also draw the table as grouped bars into this PNG")
    args = p.parse_args(argv)
    final, epochs, infos, inits = final_errors(args.folder)
    print(table(final, epochs, infos, inits))
    if args.figure:
        figure(final, epochs, infos, inits, args.figure)


if __name__ == "__main__":
    main()
