"""``hebbsim.run``: parameters in, a trained network's run file out (opened as an xarray Dataset).

Every epoch: train, evaluate the test set, run the probe samples through the phases, then
append the epoch to the run file (:mod:`hebbsim.data.store`) and write the checkpoint
(:mod:`hebbsim.data.checkpoint`) — in that order, so a checkpoint never runs ahead of the
file; a resumed run redoes (and rewrites) an epoch published before its checkpoint.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from ..analysis.alignment import loop_alignment, loop_paths
from ..data.checkpoint import checkpoint_path, save_checkpoint
from ..data.datasets import Dataset, load_dataset
from ..data.params import RunParams, load_params
from ..data.store import EpochRecord, RunStore, open_run
from ..dynamics.params import init_params
from .engines import engine_from_params
from ..dynamics.loss import one_hot
from ..dynamics.network import OUTPUT
from .provenance import now, provenance
from .recording import ProbeRecorder, run_layout
from .resume import resume_point
from ..rules import rule_class
from ..rules.contrastive import ContrastiveRule
from .trainer import make_trainer


def _subset(data: Dataset, cfg: RunParams) -> Dataset:
    n_tr, n_te = cfg.data.train_subset, cfg.data.test_subset
    if n_tr is None and n_te is None:
        return data
    return Dataset(data.name, data.x_train[:n_tr], data.y_train[:n_tr], data.x_test[:n_te], data.y_test[:n_te],
                   data.n_classes)


def _grad_alignment(cfg: RunParams, net, engine, params, probes) -> dict[str, float]:
    """SPEC §4 gradient alignment on the probe samples (EP rules; empty unless asked for)."""
    rule = rule_class(cfg.learning.rule)
    if not cfg.record.grad_alignment or not issubclass(rule, ContrastiveRule) or not len(probes.index):
        return {}
    from ..analysis.gradients import ep_gradient_alignment  # imports JAX: only when asked for

    dyn = cfg.dynamics
    d = one_hot(probes.labels, net.sizes[OUTPUT], engine.dtype)
    return ep_gradient_alignment(net, engine, params, probes.x.astype(engine.dtype), d, rule.estimator,
                                 dyn.beta, 10 * (dyn.eval_steps or dyn.free_steps), dyn.nudge_steps)


def run(params: str | Path | dict | RunParams, overrides: list[str] | None = None, *, resume: bool = False,
        progress: bool = True, log=print) -> xr.Dataset:
    """Train the network described by ``params``, write its run file and return it opened.

    ``params`` is a parameter file path, a dict with its contents or a validated
    :class:`RunParams`; ``overrides`` are ``"section.key=value"`` strings. With ``resume``,
    continue from the checkpoint beside the run file (``<run>.ckpt.npz``) after its last
    completed epoch; only ``learning.epochs`` may differ from the checkpoint's parameters.
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
    probes = ProbeRecorder(cfg, net, data)
    cycles = loop_paths(net)
    rec = cfg.record
    store = RunStore(rec.path, rec.compression, rec.compression_level)
    ckpt = checkpoint_path(rec.path)

    start = resume_point(cfg, store, ckpt, trainer, log) if resume else 0
    attrs = {}
    if start == 0:
        ckpt.unlink(missing_ok=True)
        projections = tuple(p.name for p in net.learned) if rec.grad_alignment else tuple(cycles)
        store.create(run_layout(cfg, net, probes, projections, model),
                     provenance(cfg.to_toml(), engine.name, dtype.name, cfg.learning.seed), model.weights,
                     model.biases)
    else:
        attrs["resumed_at"] = " ".join(filter(None, [store.attrs().get("resumed_at", ""), now()]))

    epochs = tqdm(range(start + 1, cfg.learning.epochs + 1), desc="epochs", disable=not progress, unit="epoch")
    for epoch in epochs:
        t0 = time.perf_counter()
        stats = trainer.train_epoch(x_train, data.y_train, progress=progress, desc=f"epoch {epoch}", epoch=epoch)
        elapsed = time.perf_counter() - t0
        test_error, test_loss = trainer.evaluate(x_test, data.y_test)
        t1 = time.perf_counter()
        snapshot = epoch % rec.weights_every == 0 or epoch == cfg.learning.epochs
        store.append(EpochRecord(
            epoch=epoch,
            metrics={"train_error": stats.error, "train_loss": stats.loss, "test_error": test_error,
                     "test_loss": test_loss, "epoch_time": elapsed},
            residual=stats.residual,
            batch_loss=stats.batch_loss,
            states=probes.record(engine, model),
            loop_alignment=loop_alignment(net, model, cycles),
            grad_alignment=_grad_alignment(cfg, net, engine, model, probes),
            weights=model.weights if snapshot else None,
            biases=model.biases if snapshot else None,
        ), {**attrs, "end_time": now()})
        arrays, meta = trainer.state_dict()
        save_checkpoint(ckpt, arrays, {"epoch": epoch, "parameters": cfg.to_toml(), "trainer": meta})
        msg = (f"epoch {epoch:3d}  train error {100 * stats.error:6.2f}%  loss {stats.loss:.4f}  "
               f"test error {100 * test_error:6.2f}%  ({elapsed:.1f} s; recording {time.perf_counter() - t1:.2f} s)")
        if progress:
            epochs.write(msg)
        elif log:
            log(msg)
    if log:
        log(f"run file: {store.path}")
    return open_run(store.path)
