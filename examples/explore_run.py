# %% [markdown]
# # Explore a run file
#
# Opens a hebbsim run file (also while the run is still writing: the file is only ever
# replaced whole) and draws it with the plotting API (`hebbsim.analysis.plots`, also
# available as `ds.hebbsim.plot_…()`): learning curves, loop alignment, the probe samples'
# trajectories in the free and nudged phases, weight and update norms, residuals. Run it as a
# script or cell by cell (VS Code, Jupyter with jupytext):
#
#     python examples/explore_run.py runs/quickstart.h5 [OUT_DIR]
#
# or with `HEBBSIM_RUN=runs/quickstart.h5 HEBBSIM_PLOTS=plots python examples/explore_run.py`.
# PNGs go to OUT_DIR (default: the run file's folder). `hebbsim report RUN.h5` writes the same
# plots with a summary page; examples/notebooks/ has the notebook versions.

# %%
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import hebbsim  # noqa: E402
from hebbsim.analysis import plots  # noqa: E402

args = [a for a in sys.argv[1:] if not a.startswith("-")]  # ignore options an IDE may pass
path = Path(args[0] if args else os.environ.get("HEBBSIM_RUN", "runs/quickstart.h5"))
out = Path(args[1] if len(args) > 1 else os.environ.get("HEBBSIM_PLOTS", path.parent))
out.mkdir(parents=True, exist_ok=True)

ds = hebbsim.open_run(path, chunks={})  # lazy: nothing is read until plotted
print(ds)
summary = ds.hebbsim.summary()
n = summary["epochs"]
print(f"{n} epoch{'' if n == 1 else 's'} ({summary['status']})")
if "test_error" in summary:
    te = summary["test_error"]
    print(f"final test error {100 * te['final']:.2f}%, best {100 * te['best']:.2f}% (epoch {te['best_epoch']})")


def save(drawn, name: str) -> None:
    fig = drawn if isinstance(drawn, plt.Figure) else drawn.figure
    fig.savefig(out / f"{name}.png", dpi=100)
    plt.close(fig)


# %% [markdown]
# ## Learning curves
# Error (%) and loss per epoch; every training batch's loss is placed at the fraction of the
# epoch where it ended.

# %%
save(ds.hebbsim.plot_learning_curves(), "learning_curves")

# %% [markdown]
# ## Probe trajectories
# The output units of the first probe sample at the last epoch: the free phase relaxes from
# zero; the nudged phase is drawn as its departure from the free fixed point.

# %%
try:
    save(ds.hebbsim.plot_probe_trajectories(population="o"), "probe_trajectories")
except plots.NotApplicable as why:
    print(f"no probe trajectories: {why}")

# %% [markdown]
# ## Loop alignment
# Angle between each projection on a loop and the map the rest of the loop applies (docs/model.md),
# from the initial weights (epoch 0) on; below 90° the loop carries a useful learning signal.

# %%
for name in ("plot_loop_alignment", "plot_weight_norms", "plot_update_norms", "plot_residuals"):
    try:
        save(getattr(ds.hebbsim, name)(), name.removeprefix("plot_"))
    except plots.NotApplicable as why:
        print(f"{name}: {why}")

print(f"plots written to {out}")
