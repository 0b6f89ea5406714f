# %% [markdown]
# # Explore a run file
#
# Opens a hebbsim run file (also while the run is still writing: the file is only ever
# replaced whole) and plots the learning curves and the probe samples' trajectories in the
# free and nudged phases. Run it as a script or cell by cell (VS Code, Jupyter with jupytext):
#
#     python examples/explore_run.py runs/quickstart.h5 [OUT_DIR]
#
# or with `HEBBSIM_RUN=runs/quickstart.h5 HEBBSIM_PLOTS=plots python examples/explore_run.py`.
# PNGs go to OUT_DIR (default: the run file's folder).

# %%
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import hebbsim  # noqa: E402

args = [a for a in sys.argv[1:] if not a.startswith("-")]  # ignore options an IDE may pass
path = Path(args[0] if args else os.environ.get("HEBBSIM_RUN", "runs/quickstart.h5"))
out = Path(args[1] if len(args) > 1 else os.environ.get("HEBBSIM_PLOTS", path.parent))
out.mkdir(parents=True, exist_ok=True)

ds = hebbsim.open_run(path, chunks={})  # lazy: nothing is read until plotted
print(ds)
print(f"{ds.sizes['epoch']} epochs; final test error {100 * float(ds.test_error[-1]):.2f}%")

# %% [markdown]
# ## Learning curves
# Errors and losses per epoch, and the loss of every training batch (placed at the fraction
# of the epoch it ended).

# %%
fig, (ax_err, ax_loss) = plt.subplots(1, 2, figsize=(10, 3.5))
(100 * ds.train_error).plot(ax=ax_err, marker="o", label="train")
(100 * ds.test_error).plot(ax=ax_err, marker="o", label="test")
ax_err.set_ylabel("error (%)")
ax_err.legend()
epoch_of = ds.batch_epoch.values
_, first, count = np.unique(epoch_of, return_index=True, return_counts=True)
within = np.arange(len(epoch_of)) - np.repeat(first, count)  # batch number within its epoch
position = epoch_of - 1 + (within + 1) / np.repeat(count, count)
ax_loss.plot(position, ds.batch_loss, lw=0.5, alpha=0.5, label="batch")
ax_loss.plot(ds.epoch, ds.train_loss, marker="o", label="train (epoch mean)")
ax_loss.plot(ds.epoch, ds.test_loss, marker="o", label="test")
ax_loss.set_xlabel("epoch")
ax_loss.set_ylabel("loss 0.5‖ρ(s_o) − d‖²")
ax_loss.legend()
fig.tight_layout()
fig.savefig(out / "learning_curves.png", dpi=100)

# %% [markdown]
# ## Probe trajectories
# The output units of the first probe sample at the last epoch: the free phase relaxes from
# zero; the nudged phase starts from the free end state and pulls the target unit up.

# %%
states = [v for v in ds.data_vars if v.startswith("state_")]
if "state_o" in ds:
    last = ds.state_o.isel(epoch=-1, probe=0).load()
    label = int(ds.probe_label[0])
    phases = [str(p) for p in ds.phase.values if last.sel(phase=p).notnull().any()]
    fig, axes = plt.subplots(1, len(phases), figsize=(5 * len(phases), 3.5), sharey=True, squeeze=False)
    dt = float(ds.step.attrs.get("dt", 1.0))
    for ax, phase in zip(axes[0], phases):
        traj = last.sel(phase=phase).dropna("step", how="all")
        for unit in range(traj.sizes["o_unit"]):
            ax.plot(traj.step * dt, traj.isel(o_unit=unit), lw=2.5 if unit == label else 1,
                    label=f"o{unit}" + (" (target)" if unit == label else ""))
        ax.set_title(f"{phase} phase, probe {int(ds.probe[0])}, epoch {int(ds.epoch[-1])}")
        ax.set_xlabel("time (step × dt)")
    axes[0][0].set_ylabel("state s_o")
    axes[0][-1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "probe_trajectories.png", dpi=100)
else:
    print(f"no output-state recording in this run (recorded: {states})")

# %% [markdown]
# ## Loop alignment
# Angle between each projection on a loop and the map the rest of the loop applies (SPEC §4).

# %%
if "loop_alignment" in ds:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for proj in ds.projection.values:
        ds.loop_alignment.sel(projection=proj).plot(ax=ax, marker="o", label=str(proj))
    ax.axhline(90, color="gray", lw=0.8, ls="--")
    ax.set_ylabel("loop alignment (°)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "loop_alignment.png", dpi=100)

print(f"plots written to {out}")
