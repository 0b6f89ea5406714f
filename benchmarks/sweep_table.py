"""The last epoch's test error of every point of one or more sweeps, over seeds, as Markdown.

    python benchmarks/sweep_table.py runs/sweep_mnist_loop_augment runs/sweep_mnist_symmetric_augment

One row per point without its seed (every swept value but the seed): the test error after the
last epoch as mean ± sample standard deviation over the seeds, each seed's figure, the best
epoch's mean (picked on the test set: a curve's shape, not a result), the training error after
the last epoch, and the mean training time (Σ epoch times) and wall time per run. Points still
running or failed are left out and named.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

import hebbsim


def rows(folder: str) -> list[str]:
    ds = hebbsim.open_sweep(folder)
    others = [d for d in ds["status"].dims if d != "seed"]
    out = []
    for values in itertools.product(*(ds[d].values for d in others)):
        point = ds.sel(dict(zip(others, values)))
        done = point["status"].values == "done"
        if not done.all():
            missing = [int(s) for s, ok in zip(point.seed.values, done) if not ok]
            print(f"({folder} {dict(zip(others, values))}: seeds {missing} not done, left out)")
        point = point.isel(seed=np.flatnonzero(done))
        if not point.sizes["seed"]:
            continue
        test = 100 * point["test_error"].values  # (seed, epoch)
        last = test[:, -1]
        sd = f" ± {last.std(ddof=1):.2f}" if len(last) > 1 else ""
        label = ", ".join(f"{d} {v}" for d, v in zip(others, values)) or Path(folder).name
        out.append(f"| {label} | {len(last)} | {test.shape[1]} | **{last.mean():.2f}{sd} %** | "
                   f"{' / '.join(f'{v:.2f}' for v in last)} | {test.mean(axis=0).min():.2f} % | "
                   f"{100 * point['train_error'].values[:, -1].mean():.2f} % | "
                   f"{point['epoch_time'].values.sum(axis=1).mean():.0f} | {point['wall_time'].values.mean():.0f} |")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", help="sweep folders")
    args = ap.parse_args(argv)
    print("| point | seeds | epochs | test error, last epoch: mean ± sd | each seed | best epoch of the mean curve "
          "| train error, last | training (s, mean) | wall (s, mean) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for folder in args.folders:
        print("\n".join(rows(folder)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
