"""Time to accuracy: how long a recipe takes, end to end, to reach a test error (issue 19 point 3).

    HEBBSIM_DATA=../shared/data python benchmarks/time_to_accuracy.py examples/mnist_loop_augment.toml \
        --target 2.0 [--set learning.seed=2 …] [--out runs/tta]

Runs the parameter file in this process (``hebbsim.run``) and times every epoch from the moment
the script starts (data loading, JIT compilation, evaluation and recording included: what a user
waits for). Prints, per epoch, the test error and the wall clock at the end of that epoch, then
two figures:

- the **run's time**: the whole recipe (its ``learning.epochs``, chosen beforehand on a
  validation split) and its final test error, the honest figure;
- the **first epoch at or below the target**, and when it ended: read off the test set, so it
  says how soon the curve gets there, not a result one could have known in advance.

The run file goes to ``--out``/<name>_seed<seed>.h5 (a fresh file each time: an existing one is
replaced). Every figure is printed as a Markdown table row to paste into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import time
from pathlib import Path

import hebbsim
from hebbsim.data.params import load_params

EPOCH_LINE = re.compile(r"epoch\s+(\d+)/\d+ ")  # the runner's line at the end of each epoch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("params", help="parameter file of the recipe")
    ap.add_argument("--target", type=float, default=2.0, help="test error to reach, percent")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default="runs/time_to_accuracy", help="folder of the run files")
    args = ap.parse_args(argv)

    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    cfg = load_params(args.params, args.sets)
    path = Path(args.out) / f"{Path(args.params).stem}_seed{cfg.learning.seed}.h5"
    path.parent.mkdir(parents=True, exist_ok=True)
    ended: dict[int, float] = {}

    def on_message(msg: str) -> None:
        m = EPOCH_LINE.search(msg)
        if m:
            ended[int(m.group(1))] = time.perf_counter() - t0

    ds = hebbsim.run(cfg, [f'record.path="{path}"'], overwrite=True, progress=False, log=on_message)
    total = time.perf_counter() - t0
    errors = 100 * ds.test_error.values
    print("| epoch | test error (%) | wall clock at its end (s) |\n| --- | --- | --- |")
    for epoch, err in zip(ds.epoch.values, errors):
        print(f"| {epoch} | {err:.2f} | {ended.get(int(epoch), float('nan')):.1f} |")
    first = next((int(e) for e, err in zip(ds.epoch.values, errors) if err <= args.target), None)
    lc = cfg.learning
    print(f"\nmachine: {platform.node()}, {os.cpu_count()} cores; 1-min load average {load_before:.1f} before the "
          f"run, {os.getloadavg()[0]:.1f} after it")
    print("| recipe | seed | epochs | final test error | whole run (s) | first epoch ≤ target | its end (s) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    reached = f"{first} | {ended[first]:.0f}" if first else "— | —"
    print(f"| {args.params} {' '.join(args.sets)} | {lc.seed} | {lc.epochs} | {errors[-1]:.2f} % | {total:.0f} | "
          f"{reached} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
