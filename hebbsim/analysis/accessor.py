"""The ``Dataset.hebbsim`` accessor: the plots of :mod:`hebbsim.analysis.plots` and the summary
of :mod:`hebbsim.analysis.report` as methods of a run or sweep Dataset::

    ds = hebbsim.open_run("runs/quickstart.h5")
    ds.hebbsim.plot_learning_curves()
    ds.hebbsim.plot_loop_alignment()
    print(ds.hebbsim.summary())

Registered when :mod:`hebbsim.analysis` is imported (which :func:`hebbsim.open_run` does);
matplotlib is imported only when a plot is drawn.
"""

from __future__ import annotations

import functools

import xarray as xr

_PLOTS = ("plot_errors", "plot_loss", "plot_learning_curves", "plot_loop_alignment", "plot_grad_alignment",
          "plot_feedback_alignment", "plot_feedback_agreement", "plot_probe_trajectories", "plot_exit_errors",
          "plot_spike_trains", "plot_weight_norms", "plot_update_norms", "plot_residuals", "plot_error_vs_parameter")


@xr.register_dataset_accessor("hebbsim")
class HebbsimAccessor:
    """Plots and summaries of a hebbsim run or sweep (``ds.hebbsim.<name>(...)``)."""

    def __init__(self, ds: xr.Dataset):
        self._ds = ds

    def __getattr__(self, name: str):
        if name not in _PLOTS:
            raise AttributeError(f"Dataset.hebbsim has no attribute {name!r}; plots: {', '.join(_PLOTS)}")
        from . import plots

        return functools.partial(getattr(plots, name), self._ds)

    def __dir__(self):
        return [*_PLOTS, "summary", "loop_alignment_from_init"]

    def summary(self) -> dict:
        """Parameters, final and best errors, timings and provenance
        (:func:`hebbsim.analysis.report.summarize`)."""
        from .report import summarize

        return summarize(self._ds)

    def loop_alignment_from_init(self) -> xr.DataArray:
        """``loop_alignment`` with epoch 0 (the initial weights) in front."""
        from .rundata import loop_alignment_from_init

        return loop_alignment_from_init(self._ds)
