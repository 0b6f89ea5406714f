"""Seed 002's table from the run files of ``benchmarks/seed002_mnist.sh``, one folder per seed.

    python benchmarks/seed002_table.py runs/seed002 runs/seed002_seed2 [--figure docs/seed002_curves.png]

Prints two Markdown tables: per run (rule, seed, epochs, test error after the last epoch, the
best epoch — picked on the test set, so not a result —, train error, test error at epochs
10 / 25 / 50 / 75, median seconds per epoch), and per rule over the seeds (mean ± sample
standard deviation of the last epoch's test error of the runs that hold all their epochs),
beside seed 002's figures. With
``--figure`` it draws every run's test-error curve.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import hebbsim
from hebbsim.analysis.rundata import parameters
from hebbsim.data.params import load_params

# label written by benchmarks/seed002_mnist.sh → (row name, seed 002's test error in percent)
RULES = {
    "bp": ("`bp`", None),
    "fa": ("`fa`", None),
    "dfa": ("`dfa`", None),
    "drtp": ("`drtp`", None),
    "fa_strategy_s1": ("`fa_strategy` s1", 1.96),
    "fa_strategy_s2": ("`fa_strategy` s2", 1.95),
    "fa_strategy_s3": ("`fa_strategy` s3", 2.03),
    "fa_strategy_s1_aux": ("`fa_strategy` s1, auxiliary", 1.66),
    "fa_strategy_s2_aux": ("`fa_strategy` s2, auxiliary", 1.86),
    "fa_strategy_s3_aux": ("`fa_strategy` s3, auxiliary", 1.87),
}
CHECKPOINTS = (10, 25, 50, 75)


def curves(folders: list[str]) -> dict[str, list[dict]]:
    """For every label, one record per run file found: seed, test/train error curves (percent),
    seconds per epoch."""
    out: dict[str, list[dict]] = {}
    for folder in folders:
        for label in RULES:
            path = Path(folder) / f"{label}.h5"
            if not path.exists():
                continue
            with hebbsim.open_run(str(path)) as ds:
                test = ds["test_error"].values * 100.0
                done = np.isfinite(test)
                if not done.any():
                    continue
                out.setdefault(label, []).append({
                    "seed": int(ds.attrs["seed"]), "test": test[done],
                    "complete": bool(done.sum() == load_params(parameters(ds)).learning.epochs),
                    "train": ds["train_error"].values[done] * 100.0, "seconds": ds["epoch_time"].values[done]})
    return out


def per_run_table(runs: dict[str, list[dict]]) -> str:
    lines = ["| rule | seed | epochs | test error, last epoch | best (epoch) | train error | test error at epoch "
             + " / ".join(map(str, CHECKPOINTS)) + " | s / epoch (median) |",
             "| --- |" + " --- |" * 7]
    for label, records in runs.items():
        for r in sorted(records, key=lambda r: r["seed"]):
            test = r["test"]
            best = int(np.argmin(test))
            at = " / ".join(f"{test[k - 1]:.2f}" if k <= len(test) else "–" for k in CHECKPOINTS)
            lines.append(f"| {RULES[label][0]} | {r['seed']} | {len(test)} | **{test[-1]:.2f} %** | "
                         f"{test[best]:.2f} % ({best + 1}) | {r['train'][-1]:.2f} % | {at} | "
                         f"{np.median(r['seconds']):.1f} |")
    return "\n".join(lines)


def per_rule_table(runs: dict[str, list[dict]]) -> str:
    lines = ["| rule | seeds (epochs) | test error, last epoch: mean ± sd | each seed | seed 002 |",
             "| --- | --- | --- | --- | --- |"]
    for label, records in runs.items():
        # a run still going (or stopped) is in the per-run table, not in the mean
        records = sorted((r for r in records if r["complete"]), key=lambda r: r["seed"])
        if not records:
            continue
        final = np.array([r["test"][-1] for r in records])
        spread = f" ± {final.std(ddof=1):.2f}" if len(final) > 1 else ""
        epochs = ", ".join(str(len(r["test"])) for r in records)
        paper = RULES[label][1]
        lines.append(f"| {RULES[label][0]} | {len(final)} ({epochs}) | **{final.mean():.2f}{spread} %** | "
                     f"{' / '.join(f'{v:.2f}' for v in final)} | {'–' if paper is None else f'{paper:.2f} %'} |")
    return "\n".join(lines)


def figure(runs: dict[str, list[dict]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for label, records in runs.items():
        auxiliary = label.endswith("_aux")
        ax = axes[int(auxiliary)]
        # a strategy keeps its colour in both panels
        colour = colours[list(RULES).index(label.removesuffix("_aux")) % len(colours)]
        for j, r in enumerate(sorted(records, key=lambda r: r["seed"])):
            ax.plot(np.arange(1, len(r["test"]) + 1), r["test"], color=colour, ls="-" if j == 0 else "--", lw=1.1,
                    label=RULES[label][0].replace("`", "") if j == 0 else None)
    for ax, title in zip(axes, ("error sent to every layer", "auxiliary errors (each layer its own)")):
        ax.set_ylim(1.4, 3.0)
        ax.set_xlabel("epoch")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("MNIST test error (%)")
    fig.suptitle("seed 002's protocol, 784-800-800-10, B ~ U(−½, ½) (solid: seed 1, dashed: seed 2 and on)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", help="output folders of benchmarks/seed002_mnist.sh, one per seed")
    parser.add_argument("--figure", help="also draw the test-error curves into this PNG")
    args = parser.parse_args()
    runs = curves(args.folders)
    print(per_run_table(runs), "", per_rule_table(runs), sep="\n")
    if args.figure:
        figure(runs, args.figure)


if __name__ == "__main__":
    main()
