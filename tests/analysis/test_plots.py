"""Plots (hebbsim.analysis.plots), the Dataset.hebbsim accessor and ``hebbsim report``: what is
drawn is the run's data, on every kind of run (one epoch, running, killed, no nudged phase,
sweep)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tomli_w  # noqa: E402
import xarray as xr  # noqa: E402

import hebbsim  # noqa: E402
from hebbsim.analysis import plots  # noqa: E402
from hebbsim.analysis.report import summarize, write_report  # noqa: E402
from hebbsim.analysis.rundata import NotApplicable, is_sweep, snapshot_loop_alignment, training_phases  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_params):
    """A 3-epoch loop run with every snapshot, a one-epoch run and a forward-gradient run."""
    d = tmp_path_factory.mktemp("runs")
    hebbsim.run(tiny_params(d / "loop.h5", record__weights_every=1), progress=False, log=None)
    hebbsim.run(tiny_params(d / "one.h5", learning__epochs=1), progress=False, log=None)
    hebbsim.run(tiny_params(d / "fg.h5", learning__epochs=2, learning__rule="forward_gradient",
                            network__topology="feedforward", network__rho="tanh", network__clip_states=False,
                            learning__lr=[0.05, 0.05],
                            learning__forward_gradient={"epsilon": 0.01, "perturb_time": 2.0, "perturbations": 2}),
                progress=False, log=None)
    yield {k: hebbsim.open_run(d / f"{k}.h5") for k in ("loop", "one", "fg")}
    plt.close("all")


def _lines(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def test_errors_are_the_runs_errors_in_percent_with_integer_epoch_ticks(runs):
    ds = runs["loop"]
    ax = plots.plot_errors(ds)
    lines = _lines(ax)
    np.testing.assert_allclose(lines["test"].get_ydata(), 100 * ds.test_error.values)
    np.testing.assert_allclose(lines["train"].get_ydata(), 100 * ds.train_error.values)
    np.testing.assert_array_equal(lines["test"].get_xdata(), [1, 2, 3])
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)


def test_a_one_epoch_run_is_drawn_mid_axis(runs):
    ds = runs["one"]
    fig = ds.hebbsim.plot_learning_curves()  # the accessor
    ax = fig.axes[0]
    assert _lines(ax)["test"].get_ydata()[0] == pytest.approx(100 * float(ds.test_error[0]))
    lo, hi = ax.get_xlim()
    assert lo < 1 < hi and hi - lo >= 2
    loss = _lines(fig.axes[1])
    # every batch's loss at the fraction of the epoch where it ended
    np.testing.assert_allclose(loss["training batches"].get_xdata(), np.arange(1, 31) / 30)


def test_a_run_before_its_first_epoch_gives_empty_panels(runs):
    empty = runs["loop"].isel(epoch=slice(0, 0), iteration=slice(0, 0))  # what a reader sees after create
    ax = plots.plot_errors(empty)
    assert not ax.get_lines() and "no completed epoch" in ax.texts[0].get_text()
    assert "no completed epoch" in plots.plot_loop_alignment(empty).texts[0].get_text()
    fig = plots.plot_probe_trajectories(empty)
    assert "no completed epoch" in fig.axes[0].texts[0].get_text()
    assert summarize(empty)["status"] == "0 of 3 epochs (running, stopped or killed)"


def test_loop_alignment_starts_at_the_initial_weights(runs):
    ds = runs["loop"]
    recomputed = snapshot_loop_alignment(ds)
    assert list(recomputed.snapshot.values) == [0, 1, 2, 3]
    # the recomputation from the stored weights is the run's own per-epoch record
    np.testing.assert_allclose(recomputed.sel(snapshot=[1, 2, 3]).values,
                               ds.loop_alignment.sel(projection=recomputed.projection).values, atol=1e-9)
    ax = plots.plot_loop_alignment(ds)
    line = _lines(ax)["o → h1"]
    np.testing.assert_array_equal(line.get_xdata(), [0, 1, 2, 3])
    assert line.get_ydata()[0] == pytest.approx(float(recomputed.sel(snapshot=0, projection="o_to_h1")))
    assert 80 < line.get_ydata()[0] < 90  # random initial weights: nearly orthogonal
    assert any(l.get_ydata()[0] == 90 for l in ax.get_lines() if len(set(l.get_ydata())) == 1)  # 90° marked


def test_learned_and_fixed_loops_side_by_side(runs):
    ax = plots.plot_loop_alignment({"learned": runs["loop"], "fixed": runs["one"]})
    labels = set(_lines(ax))
    assert {"o → h1, learned", "o → h1, fixed"} <= labels
    assert _lines(ax)["o → h1, fixed"].get_linestyle() != _lines(ax)["o → h1, learned"].get_linestyle()


def test_probe_trajectories_show_the_nudge_as_departure_from_the_free_fixed_point(runs):
    ds = runs["loop"]
    fig = plots.plot_probe_trajectories(ds, probe=1)
    free_ax, nudged_ax = fig.axes[:2]
    label = int(ds.probe_label[1])
    state = ds.state_o.isel(epoch=-1, probe=1)
    free = state.sel(phase="free").dropna("step", how="all")
    target = _lines(nudged_ax)[f"o[{label}] (target)"]
    want = (state.sel(phase="nudged").dropna("step", how="all") - free.isel(step=-1)).isel(o_unit=label)
    np.testing.assert_allclose(target.get_ydata(), want.values)
    np.testing.assert_allclose(target.get_xdata(), want.step.values * 0.5)  # time = step * dt
    assert target.get_ydata()[0] == 0 and target.get_ydata()[-1] > 0  # the nudge pulls the target up
    np.testing.assert_allclose(_lines(free_ax)[f"o[{label}] (target)"].get_ydata(), free.isel(o_unit=label).values)


def test_forward_gradient_run_has_no_nudged_panel(runs):
    ds = runs["fg"]
    assert training_phases(ds) == ["free"]
    fig = plots.plot_probe_trajectories(ds)
    assert len(fig.axes) == 1
    assert [l.get_label() for l in plots.plot_residuals(ds).get_lines()] == ["free"]
    with pytest.raises(NotApplicable):
        plots.plot_loop_alignment(ds)


def test_weight_and_update_norms(runs):
    ds = runs["loop"]
    lines = _lines(plots.plot_weight_norms(ds))
    w = ds.weight_x_to_h1.values.astype(np.float64)
    np.testing.assert_allclose(lines["x → h1"].get_ydata(), np.linalg.norm(w.reshape(4, -1), axis=1))
    lines = _lines(plots.plot_update_norms(ds))
    want = np.linalg.norm(w[2] - w[1]) / np.linalg.norm(w[1])
    assert lines["x → h1"].get_ydata()[1] == pytest.approx(want)


def _fake_sweep(ds: xr.Dataset) -> xr.Dataset:
    """The shape hebbsim.open_sweep documents: swept parameters and seed as dimensions."""
    pts = []
    for lr in (0.01, 0.1, 1.0):
        seeds = [ds.test_error.copy(data=ds.test_error.values * lr + 0.01 * s) for s in range(3)]
        pts.append(xr.concat(seeds, dim=xr.DataArray([1, 2, 3], dims="seed", name="seed")))
    err = xr.concat(pts, dim=xr.DataArray([0.01, 0.1, 1.0], dims="lr", name="lr"))
    return xr.Dataset({"test_error": err, "train_error": err + 0.05, "train_loss": err, "test_loss": err})


def test_sweep_error_against_a_parameter_with_seed_band(runs):
    sweep = _fake_sweep(runs["loop"])
    ax = plots.plot_error_vs_parameter(sweep)
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "lr"
    final = 100 * sweep.test_error.isel(epoch=-1)
    line = ax.get_lines()[0]
    np.testing.assert_allclose(line.get_xdata(), [0.01, 0.1, 1.0])
    np.testing.assert_allclose(line.get_ydata(), final.mean("seed").values)
    best = plots.plot_error_vs_parameter(sweep, "lr", epoch="best").get_lines()[0]
    np.testing.assert_allclose(best.get_ydata(), 100 * sweep.test_error.min("epoch").mean("seed").values)
    # learning curves of a sweep: a mean line per point and a band over seeds
    ax = plots.plot_errors(sweep)
    test = _lines(ax)["lr=0.1, test (mean of 3 seeds)"]
    np.testing.assert_allclose(test.get_ydata(), 100 * sweep.test_error.sel(lr=0.1).mean("seed").values)
    assert len(ax.collections) == 6  # bands: 3 points × (train, test)
    with pytest.raises(NotApplicable):
        plots.plot_error_vs_parameter(runs["loop"])


@pytest.mark.slow
def test_report_of_a_run_while_it_writes_and_after_it_is_killed(tmp_path, tiny_params):
    """A real run paused while appending its second epoch (epoch 1 published), reported; then
    SIGKILLed there and reported again; every PNG is a real image."""
    params = tiny_params(tmp_path / "run.h5", learning__epochs=3)
    (tmp_path / "p.toml").write_text(tomli_w.dumps(params))
    marker = tmp_path / "stalled"
    env = dict(os.environ, PYTHONPATH=str(REPO), HEBBSIM_TEST_STALL=f"append:2:{marker}",
               OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    child = subprocess.Popen([sys.executable, "-m", "hebbsim.simulate.cli", "run", str(tmp_path / "p.toml"),
                              "--no-progress"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(600):
            if marker.exists() or child.poll() is not None:
                break
            time.sleep(0.1)
        assert marker.exists(), child.stderr.read().decode() if child.poll() is not None else "no stall"
        running = write_report(tmp_path / "run.h5", tmp_path / "running")
        assert running.summary["epochs"] == 1 and "1 of 3 epochs" in running.summary["status"]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    env.pop("HEBBSIM_TEST_STALL")
    res = subprocess.run([sys.executable, "-m", "hebbsim.simulate.cli", "report", str(tmp_path / "run.h5"),
                          "--out", str(tmp_path / "killed")], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    out = tmp_path / "killed"
    for name in ("learning_curves", "loop_alignment", "probe_trajectories_o", "probe_trajectories_h1",
                 "weight_norms", "residuals"):
        img = plt.imread(out / f"{name}.png")
        assert img.shape[0] > 300 and img.std() > 0.05, name  # a drawn figure, not a blank one
    page = (out / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 6 and "src='http" not in page
    md = (out / "summary.md").read_text()
    assert "| update_norms | fewer than two weight snapshots |" in md  # only the initial weights so far
    assert "1 of 3 epochs" in md and "![loop_alignment](loop_alignment.png)" in md
    assert f"{100 * float(hebbsim.open_run(tmp_path / 'run.h5').test_error[0]):.2f} %" in md


def test_report_refuses_what_is_not_a_run(runs, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for bad in (tmp_path / "missing.h5", REPO / "examples" / "quickstart.toml"):
        res = subprocess.run([sys.executable, "-m", "hebbsim.simulate.cli", "report", str(bad)], env=env,
                             capture_output=True, text=True)
        assert res.returncode == 2 and res.stderr.startswith("hebbsim: error: ") and str(bad) in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
        assert "Traceback" not in res.stderr
    (tmp_path / "a_file").write_text("")
    res = subprocess.run([sys.executable, "-m", "hebbsim.simulate.cli", "report", runs["one"].encoding["source"],
                          "--out", str(tmp_path / "a_file")], env=env, capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.startswith(f"hebbsim: error: out = {tmp_path / 'a_file'}: "), res.stderr


def test_report_of_a_folder_of_runs(runs, tmp_path):
    folder = Path(runs["loop"].encoding["source"]).parent
    rep = write_report(folder, tmp_path / "folder")
    assert set(rep.summary["runs"]) >= {"loop", "one", "fg"}
    assert set(rep.images) == {"learning_curves", "loop_alignment"}


def test_the_default_probe_is_the_one_the_nudge_moves_most(runs):
    ds = runs["loop"]
    s = ds.state_o.isel(epoch=-1)
    free_end = s.sel(phase="free").dropna("step", how="all").isel(step=-1)
    move = abs(s.sel(phase="nudged") - free_end).max(["step", "o_unit"]).values
    fig = plots.plot_probe_trajectories(ds)
    assert f"probe {int(ds.probe[np.argmax(move)])} " in fig._suptitle.get_text()


def test_report_of_a_sweep_folder(runs, tmp_path, monkeypatch):
    """A folder that ``hebbsim.open_sweep`` opens is reported as a sweep (error against each
    swept parameter, learning curves with seed bands, a table of points)."""
    sweep = _fake_sweep(runs["loop"])
    folder = tmp_path / "sweep"
    folder.mkdir()
    monkeypatch.setattr(hebbsim, "open_sweep", lambda path: sweep, raising=False)
    rep = write_report(folder)
    assert rep.out == folder / "report"
    assert set(rep.images) == {"test_error_vs_lr", "best_test_error_vs_lr", "learning_curves"}
    assert rep.skipped == {"loop_alignment": "no loop_alignment in this run"}
    points = rep.summary["points"]
    assert [p["lr"] for p in points] == [0.01, 0.1, 1.0] and all(p["seeds"] == 3 for p in points)
    final = sweep.test_error.isel(epoch=-1)
    assert points[1]["final_mean"] == pytest.approx(float(final.sel(lr=0.1).mean()))
    assert "| 0.1 | 3 |" in rep.markdown.read_text()


def test_probe_trajectories_draw_only_the_recorded_phases(tmp_path, tiny_params):
    ds = hebbsim.run(tiny_params(tmp_path / "r.h5", learning__epochs=1, dynamics__symmetric_nudging=True,
                                 record__phases=["free", "nudged_minus"]), progress=False, log=None)
    fig = plots.plot_probe_trajectories(ds, probe=0)
    assert [ax.get_title() for ax in fig.axes[:2]] == ["free phase: s(t)", "nudged (−β): s(t) − s*"]
    assert len([ax for ax in fig.axes if ax.get_lines()]) == 2
    ds = hebbsim.run(tiny_params(tmp_path / "n.h5", learning__epochs=1, record__phases=["nudged"]),
                     progress=False, log=None)
    with pytest.raises(NotApplicable, match="free phase"):
        plots.plot_probe_trajectories(ds)


def test_report_of_a_one_epoch_run_and_of_a_forward_gradient_run(runs, tmp_path):
    one = write_report(runs["one"].encoding["source"], tmp_path / "one")
    assert set(one.images) == {"learning_curves", "loop_alignment", "probe_trajectories_h1", "probe_trajectories_o",
                               "weight_norms", "update_norms", "residuals"}
    assert one.summary["status"] == "complete" and one.summary["epochs"] == 1
    fg = write_report(runs["fg"].encoding["source"], tmp_path / "fg")
    # a feed-forward network: no cycle, no feedback
    assert set(fg.skipped) == {"loop_alignment", "grad_alignment", "feedback_alignment", "feedback_agreement"}
    assert "probe_trajectories_o_epoch_1" in fg.images
    img = plt.imread(fg.images["probe_trajectories_o"])
    assert img.shape[1] < 700  # one panel: the free phase only (no nudged phase in training)


@pytest.fixture(scope="module")
def spiking_run(tmp_path_factory):
    """Two epochs of spiking sigprop on a slice of digits: early exits and spike trains."""
    path = tmp_path_factory.mktemp("sigprop") / "spiking.h5"
    cfg = {"network": {"layers": [64, 20, 10], "rho": "tanh"}, "dynamics": {"engine": "reference"},
           "learning": {"rule": "sigprop", "optimizer": "adam", "lr": 0.002, "batch_size": 50, "epochs": 2,
                        "sigprop": {"spiking": True, "time_steps": 3, "threshold": 0.5}},
           "data": {"dataset": "digits", "train_subset": 300, "test_subset": 100},
           "record": {"path": str(path), "probes": 3, "weights_every": 1}}
    hebbsim.run(cfg, progress=False, log=None)
    return hebbsim.open_run(path)


def test_a_sigprop_run_is_one_run_and_its_exits_and_spike_trains_are_drawn(spiking_run, runs, tmp_path):
    ds = spiking_run
    assert not is_sweep(ds)  # exit and time_step are a run file's own dimensions, not swept parameters
    ax = plots.plot_exit_errors(ds)
    assert [line.get_label() for line in ax.get_lines()] == ["exit at h1", "exit at o"]
    for line, name in zip(ax.get_lines(), ds.exit.values):
        np.testing.assert_allclose(line.get_ydata(), 100 * ds.exit_error.sel(exit=name).values)
    fig = plots.plot_spike_trains(ds, probe=1, max_units=4)
    for panel, pop in zip(fig.axes, ["h1", "o"]):
        train = ds[f"spikes_{pop}"].isel(epoch=-1, probe=1).values
        count = train.sum(0)
        shown = [int(t.get_text()) for t in panel.get_yticklabels()]
        assert len(shown) == min(4, int((count > 0).sum())) > 0
        # ordered by spike count, most first, and spread over the firing units' counts: the
        # most and the least active firing unit are both drawn
        assert list(count[shown]) == sorted(count[shown], reverse=True)
        assert count[shown[0]] == count.max() and count[shown[-1]] == count[count > 0].min()
        for row, (line, unit) in enumerate(zip(panel.get_lines(), shown)):
            np.testing.assert_array_equal(line.get_xdata(), ds.time_step.values[train[:, unit] > 0])
            assert set(line.get_ydata()) == {row}
    for plot in (plots.plot_exit_errors, plots.plot_spike_trains):
        with pytest.raises(NotApplicable):
            plot(runs["loop"])
    rep = write_report(ds.encoding["source"], tmp_path / "report")
    assert {"exit_errors", "spike_trains", "probe_trajectories_h1", "weight_norms"} <= set(rep.images), rep.skipped
