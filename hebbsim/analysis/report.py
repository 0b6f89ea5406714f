"""``hebbsim report RUN.h5|SWEEP_DIR [--out DIR]``: every plot that applies, as PNG, and a summary
as markdown (``summary.md``) and as one self-contained HTML page (``index.html``, the images
inlined as base64) — parameters, final and best errors, timings, provenance.

A run is reported as far as its file goes (a running or killed run: the epochs published so
far; the summary says how many of how many). A folder is reported as a sweep: through
``hebbsim.open_sweep`` where the installed hebbsim has it (swept parameters and seeds as
dimensions: error against each swept parameter, learning curves with seed bands), else as the
run files it holds, side by side.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from ..errors import HebbsimError
from .rundata import SEED, NotApplicable, as_dataset, last_finite, n_epochs, parameters, sweep_dims

PROVENANCE_KEYS = ("hebbsim_version", "git_commit", "engine", "dtype", "seed", "host", "python", "start_time",
                   "end_time", "resumed_at")


class ReportError(HebbsimError):
    """What was asked to be reported is not a run file or a sweep folder."""


@dataclass
class Report:
    """What :func:`write_report` made: the folder, its PNGs (name → path), plots left out
    (name → why) and the summary."""

    out: Path
    images: dict[str, Path] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)

    @property
    def html(self) -> Path:
        return self.out / "index.html"

    @property
    def markdown(self) -> Path:
        return self.out / "summary.md"


# -- summaries ----------------------------------------------------------------------------------
def _pct(x: float) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{100 * x:.2f} %"


def _final_best(da: xr.DataArray) -> tuple[float, float, int | None]:
    v = np.asarray(da.values, np.float64)
    if not np.isfinite(v).any():
        return math.nan, math.nan, None
    k = int(np.nanargmin(v))
    return float(v[np.isfinite(v)][-1]), float(v[k]), int(da.epoch.values[k])


def summarize(data) -> dict:
    """A run's summary: parameters (TOML text), epochs completed of those planned, final and best
    errors and losses, timings and provenance (global attributes, dependency versions included).
    For a sweep (extra dimensions), ``points``: the final and best test error of every point."""
    ds = as_dataset(data)
    params = parameters(ds)
    planned = params.get("learning", {}).get("epochs")
    done = n_epochs(ds)
    out: dict = {"epochs": done, "epochs_planned": planned,
                 "status": (f"{done} epochs" if planned is None else "complete" if done >= planned
                            else f"{done} of {planned} epochs (running, stopped or killed)")}
    if sweep_dims(ds):
        out["points"] = _sweep_points(ds)
    else:
        for var in ("train_error", "test_error", "train_loss", "test_loss"):
            if var in ds and done:
                final, best, at = _final_best(ds[var])
                out[var] = {"final": final, "best": best, "best_epoch": at}
        if "epoch_time" in ds and done:
            t = ds.epoch_time.values.astype(np.float64)
            out["training_time_s"] = float(np.nansum(t))
            out["epoch_time_s"] = {"mean": float(np.nanmean(t)), "min": float(np.nanmin(t)), "max": float(np.nanmax(t))}
        if "loop_alignment" in ds and done:
            final = ds.loop_alignment.isel(epoch=-1)
            out["loop_alignment_final_deg"] = {str(p): float(final.sel(projection=p))
                                               for p in ds.projection.values if np.isfinite(final.sel(projection=p))}
        if "feedback_alignment" in ds and done:
            final = ds.feedback_alignment.isel(epoch=-1)
            out["feedback_alignment_final_deg"] = {str(p): float(final.sel(feedback=p)) for p in ds.feedback.values}
    out["provenance"] = {k: ds.attrs[k] for k in PROVENANCE_KEYS if k in ds.attrs}
    out["versions"] = {k.removesuffix("_version"): v for k, v in ds.attrs.items()
                       if k.endswith("_version") and k != "hebbsim_version"}
    out["parameters"] = ds.attrs.get("parameters", "")
    return out


def _sweep_points(ds: xr.Dataset) -> list[dict]:
    dims = [d for d in sweep_dims(ds.test_error) if d != SEED]
    err = ds.test_error
    if err.sizes.get("epoch", 0) == 0:
        return []
    final = last_finite(err)
    best = err.min("epoch")
    rows = []
    stacked_final = final.stack(_point=dims) if dims else final.expand_dims(_point=[0])
    stacked_best = best.stack(_point=dims) if dims else best.expand_dims(_point=[0])
    for k in range(stacked_final.sizes["_point"]):
        f, b = stacked_final.isel(_point=k), stacked_best.isel(_point=k)
        row = {d: f[d].item() for d in dims}
        fv, bv = np.asarray(f.values, np.float64).ravel(), np.asarray(b.values, np.float64).ravel()
        row.update({"seeds": int(np.isfinite(fv).sum()), "final_mean": float(np.nanmean(fv)) if np.isfinite(fv).any()
                    else math.nan, "final_min": float(np.nanmin(fv)) if np.isfinite(fv).any() else math.nan,
                    "final_max": float(np.nanmax(fv)) if np.isfinite(fv).any() else math.nan,
                    "best_mean": float(np.nanmean(bv)) if np.isfinite(bv).any() else math.nan})
        rows.append(row)
    return rows


# -- plots --------------------------------------------------------------------------------------
def _run_plots(ds: xr.Dataset) -> dict:
    from . import plots

    out = {
        "learning_curves": lambda: plots.plot_learning_curves(ds),
        "loop_alignment": lambda: plots.plot_loop_alignment(ds),
        "grad_alignment": lambda: plots.plot_grad_alignment(ds),
        "feedback_alignment": lambda: plots.plot_feedback_alignment(ds),
        "feedback_agreement": lambda: plots.plot_feedback_agreement(ds),
    }
    for var in sorted(v for v in ds.data_vars if str(v).startswith("state_")):
        pop = str(var).removeprefix("state_")
        out[f"probe_trajectories_{pop}"] = lambda pop=pop: plots.plot_probe_trajectories(ds, population=pop)
    if n_epochs(ds) > 1 and "state_o" in ds:  # early in training the nudge moves outputs most
        out["probe_trajectories_o_epoch_1"] = lambda: plots.plot_probe_trajectories(ds, population="o", epoch=0)
    if "exit_error" in ds:  # sigprop's own plots, only where they apply (not listed as skipped elsewhere)
        out["exit_errors"] = lambda: plots.plot_exit_errors(ds)
    if any(str(v).startswith("spikes_") for v in ds.data_vars):
        out["spike_trains"] = lambda: plots.plot_spike_trains(ds)
    out.update({
        "weight_norms": lambda: plots.plot_weight_norms(ds),
        "update_norms": lambda: plots.plot_update_norms(ds),
        "residuals": lambda: plots.plot_residuals(ds),
    })
    return out


def _sweep_plots(ds: xr.Dataset) -> dict:
    from . import plots

    out = {f"test_error_vs_{d}": (lambda d=d: plots.plot_error_vs_parameter(ds, d))
           for d in sweep_dims(ds.test_error) if d != SEED}
    out.update({f"best_test_error_vs_{d}": (lambda d=d: plots.plot_error_vs_parameter(ds, d, epoch="best"))
                for d in sweep_dims(ds.test_error) if d != SEED})
    out["learning_curves"] = lambda: plots.plot_learning_curves(ds)
    out["loop_alignment"] = lambda: plots.plot_loop_alignment(ds)
    return out


def _runs_plots(runs: dict[str, xr.Dataset]) -> dict:
    from . import plots

    return {"learning_curves": lambda: plots.plot_learning_curves(runs),
            "loop_alignment": lambda: plots.plot_loop_alignment(runs)}


def _draw(makers: dict, out: Path, report: Report) -> None:
    import matplotlib.pyplot as plt

    for name, make in makers.items():
        try:
            drawn = make()
        except NotApplicable as why:
            report.skipped[name] = str(why)
            continue
        fig = drawn if hasattr(drawn, "savefig") else drawn.figure
        path = out / f"{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        report.images[name] = path


# -- writing ------------------------------------------------------------------------------------
def _open_folder(folder: Path) -> tuple[xr.Dataset | None, dict[str, xr.Dataset]]:
    """A sweep folder: one Dataset through ``hebbsim.open_sweep`` if this hebbsim has it, else
    the run files it holds (``label → Dataset``)."""
    import hebbsim

    open_sweep = getattr(hebbsim, "open_sweep", None)
    if open_sweep is not None:
        try:
            sweep = open_sweep(folder)
        except (HebbsimError, OSError, ValueError):
            sweep = None  # not a sweep folder: report the run files it holds
        if isinstance(sweep, xr.Dataset) and "test_error" in sweep:
            return sweep, {}
    from ..data.store import open_run

    runs = {}
    for path in sorted(folder.rglob("*.h5")):
        try:
            runs[str(path.relative_to(folder).with_suffix(""))] = open_run(path)
        except (OSError, ValueError, HebbsimError):
            continue
    if not runs:
        raise ReportError(f"path = {folder}: a folder with no run files (*.h5) in it")
    return None, runs


def write_report(source: str | Path, out: str | Path | None = None) -> Report:
    """Write the report of a run file or a sweep folder to ``out`` (default: ``<run>_report/``
    beside a run file, ``<folder>/report/`` in a sweep folder) and return what was written."""
    source = Path(source)
    if source.is_dir():
        sweep, runs = _open_folder(source)
        out = Path(out) if out else source / "report"
        title = f"hebbsim sweep {source.name}"
    elif source.is_file():
        try:
            ds = as_dataset(source)
        except (OSError, ValueError) as err:
            raise ReportError(f"path = {source}: not a hebbsim run file ({type(err).__name__})") from None
        if "test_error" not in ds:
            raise ReportError(f"path = {source}: not a hebbsim run file (no test_error variable)")
        sweep, runs = None, {}
        out = Path(out) if out else source.with_name(source.stem + "_report")
        title = f"hebbsim run {source.name}"
    else:
        raise ReportError(f"path = {source}: no such run file or sweep folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ReportError(f"out = {out}: cannot write the report there ({err.strerror or err})") from None
    report = Report(out)
    if runs:
        _draw(_runs_plots(runs), out, report)
        report.summary = {"runs": {label: summarize(r) for label, r in runs.items()}}
    elif sweep is not None:
        _draw(_sweep_plots(sweep), out, report)
        report.summary = summarize(sweep)
    else:
        _draw(_run_plots(ds), out, report)
        report.summary = summarize(ds)
    report.markdown.write_text(_markdown(title, report))
    report.html.write_text(_html(title, report))
    return report


# -- rendering ----------------------------------------------------------------------------------
def _summary_rows(s: dict) -> list[tuple[str, str]]:
    rows = [("status", s["status"])]
    for var in ("test_error", "train_error"):
        if var in s:
            v = s[var]
            rows.append((var.replace("_", " "), f"final {_pct(v['final'])}, best {_pct(v['best'])} "
                                                 f"(epoch {v['best_epoch']})"))
    for var in ("test_loss", "train_loss"):
        if var in s:
            rows.append((var.replace("_", " "), f"final {s[var]['final']:.4g}, best {s[var]['best']:.4g}"))
    if "loop_alignment_final_deg" in s:
        rows.append(("loop alignment (final)",
                     ", ".join(f"{k}: {v:.1f}°" for k, v in s["loop_alignment_final_deg"].items())))
    if "feedback_alignment_final_deg" in s:
        rows.append(("feedback alignment (final)",
                     ", ".join(f"{k}: {v:.1f}°" for k, v in s["feedback_alignment_final_deg"].items())))
    if "training_time_s" in s:
        t = s["epoch_time_s"]
        rows.append(("training time", f"{s['training_time_s']:.1f} s ({t['mean']:.2f} s per epoch, "
                                      f"{t['min']:.2f}–{t['max']:.2f} s)"))
    rows += [(k.replace("_", " "), str(v)) for k, v in s["provenance"].items()]
    if s["versions"]:
        rows.append(("versions", ", ".join(f"{k} {v}" for k, v in s["versions"].items())))
    return rows


def _points_table(points: list[dict]) -> list[list[str]]:
    if not points:
        return []
    keys = [k for k in points[0] if k not in ("seeds", "final_mean", "final_min", "final_max", "best_mean")]
    head = [*keys, "seeds", "final test error (mean, min–max)", "best test error (mean)"]
    return [head] + [[str(p[k]) for k in keys] + [str(p["seeds"]),
                     f"{_pct(p['final_mean'])} ({_pct(p['final_min'])} – {_pct(p['final_max'])})",
                     _pct(p["best_mean"])] for p in points]


def _md_table(rows: list[list[str]]) -> str:
    if not rows:
        return ""
    esc = [[c.replace("|", "\\|") for c in r] for r in rows]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + " --- |" * len(esc[0])]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in esc[1:]]) + "\n"


def _sections(report: Report) -> list[tuple[str, list[list[str]] | str]]:
    """(heading, table rows or preformatted text) for the summary, shared by markdown and HTML."""
    s = report.summary
    out: list[tuple[str, list[list[str]] | str]] = []
    if "runs" in s:
        rows = [["run", "status", "final test error", "best test error (epoch)", "engine"]]
        for label, r in s["runs"].items():
            te = r.get("test_error")
            rows.append([label, r["status"], _pct(te["final"]) if te else "—",
                         f"{_pct(te['best'])} ({te['best_epoch']})" if te else "—",
                         str(r["provenance"].get("engine", ""))])
        out.append(("Runs", rows))
        return out
    out.append(("Summary", [["quantity", "value"]] + [[k, v] for k, v in _summary_rows(s)]))
    if s.get("points"):
        out.append(("Sweep points", _points_table(s["points"])))
    if report.skipped:
        out.append(("Plots that do not apply", [["plot", "why"]] + [[k, v] for k, v in report.skipped.items()]))
    if s.get("parameters"):
        out.append(("Parameters", s["parameters"]))
    return out


def _markdown(title: str, report: Report) -> str:
    parts = [f"# {title}\n"]
    for heading, body in _sections(report):
        parts.append(f"## {heading}\n")
        parts.append(f"```toml\n{body.rstrip()}\n```\n" if isinstance(body, str) else _md_table(body))
    parts.append("## Plots\n")
    parts += [f"### {name.replace('_', ' ')}\n\n![{name}]({path.name})\n" for name, path in report.images.items()]
    return "\n".join(parts)


def _html(title: str, report: Report) -> str:
    def table(rows):
        head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    parts = [f"<h1>{html.escape(title)}</h1>"]
    for heading, body in _sections(report):
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        parts.append(f"<pre>{html.escape(body)}</pre>" if isinstance(body, str) else table(body))
    parts.append("<h2>Plots</h2>")
    for name, path in report.images.items():
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        parts.append(f"<figure><img alt='{name}' src='data:image/png;base64,{data}'>"
                     f"<figcaption>{html.escape(name.replace('_', ' '))}</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:left;vertical-align:top}pre{background:#f6f6f6;padding:0.8em;overflow-x:auto}"
             "img{max-width:100%}figure{margin:1em 0}figcaption{color:#555}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")
