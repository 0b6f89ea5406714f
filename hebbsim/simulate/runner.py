"""``hebbsim.run``: parameters in, a trained network's learning curves out (an xarray Dataset)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from ..data.datasets import Dataset, load_dataset
from ..data.params import RunParams, load_params
from ..data.store import write_run
from ..dynamics.params import Params, init_params
from .engines import engine_from_params
from .provenance import now, provenance
from .training import make_trainer

PHASES = ("free", "nudged", "nudged_minus")


def _subset(data: Dataset, cfg: RunParams) -> Dataset:
    n_tr, n_te = cfg.data.train_subset, cfg.data.test_subset
    if n_tr is None and n_te is None:
        return data
    return Dataset(data.name, data.x_train[:n_tr], data.y_train[:n_tr], data.x_test[:n_te], data.y_test[:n_te],
                   data.n_classes)


def metrics_dataset(history: list[dict], params: Params, attrs: dict) -> xr.Dataset:
    """The run's Dataset: per-epoch metrics, per-phase residuals and the latest weights."""
    epochs = np.array([h["epoch"] for h in history], dtype=np.int64)
    col = lambda k: np.array([h[k] for h in history], dtype=np.float64)  # noqa: E731
    res = np.array([[h["residual"].get(p, np.nan) for p in PHASES] for h in history],
                   dtype=np.float64).reshape(len(history), len(PHASES))
    data_vars = {
        "train_error": ("epoch", col("train_error"), {"units": "1", "description": "fraction of training samples misclassified at the free fixed point during the epoch"}),
        "test_error": ("epoch", col("test_error"), {"units": "1", "description": "fraction of test samples misclassified at the free fixed point (started from zeros)"}),
        "train_loss": ("epoch", col("train_loss"), {"units": "1", "description": "mean 0.5*||rho(s_o) - d||^2 over the training samples"}),
        "test_loss": ("epoch", col("test_loss"), {"units": "1", "description": "mean 0.5*||rho(s_o) - d||^2 over the test samples"}),
        "epoch_time": ("epoch", col("epoch_time"), {"units": "s", "description": "wall time of the training pass"}),
        "residual": (("epoch", "phase"), res, {"units": "1/time", "description": "mean over batches of max|ds/dt| at the end of each phase"}),
    }
    snapshot = epochs[-1:] if len(epochs) else np.array([0])
    for name, w in params.weights.items():
        src, dst = name.split("_to_")
        data_vars[f"weight_{name}"] = (("snapshot", f"{dst}_unit", f"{src}_unit"), w[None].astype(np.float64),
                                       {"units": "1", "description": f"weights of projection {src} -> {dst} (latest snapshot)"})
    for pop, b in params.biases.items():
        data_vars[f"bias_{pop}"] = (("snapshot", f"{pop}_unit"), b[None].astype(np.float64), {"units": "1"})
    ds = xr.Dataset(data_vars, coords={"epoch": epochs, "phase": list(PHASES), "snapshot": snapshot}, attrs=attrs)
    return ds


def run(params: str | Path | dict | RunParams, overrides: list[str] | None = None, *, progress: bool = True,
        log=print) -> xr.Dataset:
    """Train the network described by ``params`` and return (and store) its Dataset.

    ``params`` is a parameter file path, a dict with its contents or a validated
    :class:`RunParams`; ``overrides`` are ``"section.key=value"`` strings.
    """
    cfg = load_params(params, overrides)
    net = cfg.build_network()
    dtype = np.dtype(cfg.dynamics.dtype)
    data = _subset(load_dataset(cfg.data.dataset, cfg.data.root, download=cfg.data.download), cfg)
    rng = np.random.default_rng(cfg.learning.seed)
    model = init_params(net, rng, dtype)
    engine = engine_from_params(cfg, net)
    trainer = make_trainer(cfg, net, engine, model, len(data.x_train), rng)
    x_train, x_test = data.x_train.astype(dtype), data.x_test.astype(dtype)
    attrs = provenance(cfg.to_toml(), engine.name, dtype.name, cfg.learning.seed)
    path = Path(cfg.record.path)
    history: list[dict] = []
    ds = metrics_dataset(history, model, attrs)
    epochs = tqdm(range(1, cfg.learning.epochs + 1), desc="epochs", disable=not progress, unit="epoch")
    for epoch in epochs:
        t0 = time.perf_counter()
        stats = trainer.train_epoch(x_train, data.y_train, progress=progress, desc=f"epoch {epoch}")
        elapsed = time.perf_counter() - t0
        test_error, test_loss = trainer.evaluate(x_test, data.y_test)
        history.append({"epoch": epoch, "train_error": stats.error, "train_loss": stats.loss,
                        "test_error": test_error, "test_loss": test_loss, "epoch_time": elapsed,
                        "residual": stats.residual})
        attrs["end_time"] = now()
        ds = metrics_dataset(history, model, attrs)
        write_run(path, ds)
        msg = (f"epoch {epoch:3d}  train error {100 * stats.error:6.2f}%  loss {stats.loss:.4f}  "
               f"test error {100 * test_error:6.2f}%  ({elapsed:.1f} s)")
        if progress:
            epochs.write(msg)
        elif log:
            log(msg)
    if log:
        log(f"run file: {path}")
    return ds
