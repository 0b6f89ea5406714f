"""The angle hebbsim records between symmetric EP's update and the exact gradient
(``record.grad_alignment``), per ρ: 0° is the right answer at small β (the rule is exact).

    python benchmarks/cost_alignment.py [--beta 1e-3]

Prints one line per ρ with the angle of every learned projection after one epoch on a digits
subset (float64). Run on a checkout before the one-cost change to see the old figures.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import hebbsim


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--beta", type=float, default=1e-3)
    args = ap.parse_args()
    for rho in ("hard_sigmoid", "sigmoid", "sigmoid4", "tanh"):
        with tempfile.TemporaryDirectory() as tmp:
            ds = hebbsim.run({
                "network": {"layers": [64, 12, 8, 10], "topology": "symmetric", "rho": rho,
                            "clip_states": rho == "hard_sigmoid"},  # its kink at 0 needs the clip
                "dynamics": {"dtype": "float64", "dt": 0.2, "free_steps": 60, "nudge_steps": 400,
                             "beta": args.beta},
                "learning": {"rule": "ep_chl_classic", "lr": 0.05, "batch_size": 16, "epochs": 1},
                "data": {"dataset": "digits", "train_subset": 32, "test_subset": 32},
                "record": {"path": str(Path(tmp) / "run.h5"), "probes": 8, "grad_alignment": True},
            }, progress=False, log=None)
            angles = {str(p): round(float(a), 2) for p, a in zip(ds.projection.values, ds.grad_alignment[-1].values)}
            ds.close()
        print(f"{rho:13s} {angles}", flush=True)


if __name__ == "__main__":
    main()
