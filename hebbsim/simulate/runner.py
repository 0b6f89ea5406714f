"""``hebbsim.run``: parameters in, a trained network's run file out (opened as an xarray Dataset).

Every epoch: train, evaluate the test set, run the probe samples through the phases, then
append the epoch to the run file (:mod:`hebbsim.data.store`) and write the checkpoint
(:mod:`hebbsim.data.checkpoint`) — in that order, so a checkpoint never runs ahead of the
file; a resumed run redoes (and rewrites) an epoch published before its checkpoint.

Before any work: the run's lock is taken (one writer per run file, :mod:`hebbsim.data.runlock`)
and an existing run file or checkpoint is refused unless ``resume`` or ``overwrite`` says what
to do with it — a run never destroys an earlier run's data by accident.

Messages go through :mod:`logging` (logger ``hebbsim.simulate.runner``): one INFO line per
epoch; only the command line configures handlers. Progress bars (tqdm) are drawn when stderr
is a terminal, unless ``progress`` says otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import xarray as xr
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from ..analysis.alignment import feedback_agreement, feedback_alignment, feedback_paths, loop_alignment, loop_paths
from ..data.augment import augment_rng, shift_images
from ..data.checkpoint import checkpoint_digest, checkpoint_path, save_checkpoint
from ..data.datasets import IMAGE_SHAPES, Dataset, load_dataset
from ..data.params import RunParams, load_params
from ..data.runlock import RunLock
from ..data.store import EpochRecord, RunStore, StoreError, open_run
from ..dynamics.params import init_params
from ..errors import DivergenceError, HebbsimError, RunExistsError
from .engines import engine_from_params
from .engines.blas_pools import BlasPools, engine_blas_pools
from ..dynamics.loss import one_hot
from ..dynamics.network import OUTPUT
from .health import TrainingHealth
from .preflight import check_memory, check_record_path
from .provenance import now, provenance
from .recording import ProbeRecorder, run_layout, spike_trains
from .resume import metrics_digest, resume_point
from ..rules.contrastive import ContrastiveRule
from .trainer import make_trainer

logger = logging.getLogger(__name__)


def _subset(data: Dataset, cfg: RunParams) -> Dataset:
    n_val = cfg.data.validation
    if n_val is not None:  # the last n_val training samples stand in for the test set
        if n_val >= len(data.x_train):
            raise HebbsimError(f"data.validation = {n_val}: the training set holds {len(data.x_train)} samples; hold "
                               "out fewer, so that some are left to train on")
        cut = len(data.x_train) - n_val
        data = Dataset(data.name, data.x_train[:cut], data.y_train[:cut], data.x_train[cut:], data.y_train[cut:],
                       data.n_classes)
    n_tr, n_te = cfg.data.train_subset, cfg.data.test_subset
    if n_tr is not None or n_te is not None:
        data = Dataset(data.name, data.x_train[:n_tr], data.y_train[:n_tr], data.x_test[:n_te], data.y_test[:n_te],
                       data.n_classes)
    return data.standardized() if cfg.data.standardize else data


def _augmented(cfg: RunParams, x_train: np.ndarray, epoch: int) -> np.ndarray:
    """Epoch ``epoch``'s training inputs: ``x_train`` itself, or its images moved by ``data.augment_shift``."""
    k = cfg.data.augment_shift
    if not k:
        return x_train
    return shift_images(x_train, IMAGE_SHAPES[cfg.data.dataset], k, augment_rng(cfg.learning.seed, epoch))


def _grad_alignment(cfg: RunParams, rule, engine, params, probes) -> dict[str, float]:
    """Gradient alignment on the probe samples (docs/model.md; contrastive rules; empty unless asked for)."""
    if not cfg.record.grad_alignment or not isinstance(rule, ContrastiveRule) or not len(probes.index):
        return {}
    from ..analysis.gradients import gradient_alignment  # imports JAX: only when asked for

    dyn = cfg.dynamics
    d = one_hot(probes.labels, rule.net.sizes[OUTPUT], engine.dtype, cfg.learning.label_smoothing)
    return gradient_alignment(rule, engine, params, probes.x.astype(engine.dtype), d, dyn.beta,
                              10 * (dyn.eval_steps or dyn.free_steps), dyn.nudge_steps)


def _refuse_existing(store: RunStore, ckpt: Path) -> None:
    """Refuse to start a new run over an existing run file or checkpoint."""
    found = [p for p in (store.path, ckpt) if p.exists()]
    if not found:
        return
    try:
        held = f" holding {store.epochs()} epochs" if store.path.is_file() else ""
    except StoreError:
        held = " (damaged)"
    what = f"a run file{held}" if store.path.exists() else f"a checkpoint ({ckpt})"
    raise RunExistsError(
        f"record.path = {store.path}: {what} already exists. Continue it with --resume, replace it with "
        "--overwrite (hebbsim.run(..., resume=True / overwrite=True)), or choose another record.path "
        "(e.g. --set record.path='\"runs/other.h5\"')")


def _progress_wanted(progress: bool | None) -> bool:
    """Progress bars: as asked, else only when stderr is a terminal or in a Jupyter notebook
    (tqdm.auto draws a widget there) — never in a batch job's log."""
    if progress is None:
        return sys.stderr.isatty() or _in_notebook()
    return bool(progress)


def _in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (not merely a process that imported ipykernel)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def run(params: str | Path | dict | RunParams, overrides: list[str] | None = None, *, resume: bool = False,
        overwrite: bool = False, progress: bool | None = None,
        log: Callable[[str], object] | None = None) -> xr.Dataset:
    """Train the network described by ``params``, write its run file and return it opened.

    ``params`` is a parameter file path, a dict with its contents or a validated
    :class:`RunParams`; ``overrides`` are ``"section.key=value"`` strings.

    - ``resume``: continue from the checkpoint beside the run file (``<run>.ckpt.npz``) after
      its last completed epoch; only ``learning.epochs`` and ``dynamics.threads`` may differ
      from the checkpoint's parameters. Without a run file and checkpoint the run starts from epoch 1.
    - ``overwrite``: replace an existing run file and checkpoint. Without ``resume`` or
      ``overwrite`` an existing run file (or checkpoint) is refused
      (:class:`hebbsim.errors.RunExistsError`) before any work starts.
    - ``progress``: progress bars on stderr; ``None`` (default) draws them only when stderr is a
      terminal (or in a Jupyter notebook). Without bars each epoch is one log line.
    - ``log``: an extra callable that receives every progress message (kept for scripts written
      before hebbsim logged through :mod:`logging`; logger ``hebbsim.simulate.runner``).

    One process writes a run file at a time: a second one is refused
    (:class:`hebbsim.data.runlock.RunLockedError`).
    """
    if resume and overwrite:
        raise HebbsimError("--resume and --overwrite exclude each other: --resume continues the run file, "
                           "--overwrite replaces it")
    cfg = load_params(params, overrides)
    check_record_path(cfg, params if isinstance(params, (str, Path)) else None)
    store = RunStore(cfg.record.path, cfg.record.compression, cfg.record.compression_level)
    progress = _progress_wanted(progress)
    # with bars, log lines go through tqdm.write so that they do not break a bar
    redirect = logging_redirect_tqdm(loggers=[logging.getLogger("hebbsim"), logging.root]) if progress \
        else contextlib.nullcontext()
    with RunLock(store.path), redirect:
        if not resume and not overwrite:
            _refuse_existing(store, checkpoint_path(store.path))
        try:
            with engine_blas_pools(cfg.dynamics.engine, cfg.dynamics.threads) as pools:
                return _run_locked(cfg, store, resume, progress, log, pools)
        except DivergenceError:
            with contextlib.suppress(HebbsimError):
                held = store.epochs()
                logger.warning(f"{store.path} keeps the {held} completed epochs; its checkpoint is at epoch {held}")
            raise


def _run_locked(cfg: RunParams, store: RunStore, resume: bool, progress: bool, log, pools: BlasPools) -> xr.Dataset:
    def say(msg: str, level: int = logging.INFO) -> None:
        logger.log(level, msg)
        if log is not None:
            log(msg)

    net = cfg.build_network()
    dtype = np.dtype(cfg.dynamics.dtype)
    data = _subset(load_dataset(cfg.data.dataset, cfg.data.root, download=cfg.data.download), cfg)
    check_memory(cfg, net, len(data.x_train))
    rng = np.random.default_rng(cfg.learning.seed)
    model = init_params(net, rng, dtype)
    engine = engine_from_params(cfg, net)
    trainer = make_trainer(cfg, net, engine, model, len(data.x_train), rng)
    x_train, x_test = data.x_train.astype(dtype), data.x_test.astype(dtype)
    probes = ProbeRecorder(cfg, net, data)
    cycles = loop_paths(trainer.rule.loop_view(model, trainer.state)[0])
    feedback = feedback_paths(net)
    rec = cfg.record
    ckpt = checkpoint_path(store.path)

    start = resume_point(cfg, store, ckpt, trainer, say) if resume else 0
    attrs = {"blas_threads": pools.describe()}  # this process's pools (a resumed run may have others)
    digests: list[str] = []  # per epoch: the checkpoint's digest (run file attribute checkpoint_digests)
    if start == 0:
        try:
            ckpt.unlink(missing_ok=True)
        except OSError as err:  # e.g. a directory in its place
            raise HebbsimError(f"cannot remove the old checkpoint {ckpt}: {err.strerror}; remove it by hand") from None
        projections = tuple(dict.fromkeys([*(p.name for p in net.learned), *cycles])) if rec.grad_alignment \
            else tuple(cycles)
        store.create(run_layout(cfg, net, probes, projections, model, tuple(feedback), trainer.rule),
                     provenance(cfg.to_toml(), engine.name, dtype.name, cfg.learning.seed), model.weights,
                     model.biases)
    else:
        held = store.attrs()
        attrs["resumed_at"] = " ".join(filter(None, [held.get("resumed_at", ""), now()]))
        digests = str(held.get("checkpoint_digests", "")).split()[:start]

    logger.debug(f"data {data.name}: {len(data.x_train)} training and {len(data.x_test)} test samples; network "
                 f"{dict(net.sizes)}; {len(probes.index)} probe samples; checkpoint {ckpt}")
    if start >= cfg.learning.epochs:
        say(f"run file {store.path} already holds all {start} epochs: nothing to train (raise learning.epochs, "
            f"e.g. --set learning.epochs={start + 10}, to continue it)")
    else:
        say(f"run file {store.path}: epochs {start + 1} to {cfg.learning.epochs} ({cfg.learning.rule}, "
            f"{engine.name} engine, {dtype.name})")
        logger.debug(f"BLAS threads: {pools.describe()}")  # also the run file's blas_threads attribute

    health = TrainingHealth(net, model)
    health.warnings = [w for w in str(store.attrs().get("warnings", "")).split("\n") if w] if start else []
    lrs = trainer.optimizer.lrs
    epochs = tqdm(range(start + 1, cfg.learning.epochs + 1), desc="epochs", disable=not progress, unit="epoch")
    for epoch in epochs:
        t0 = time.perf_counter()
        stats = trainer.train_epoch(_augmented(cfg, x_train, epoch), data.y_train, progress=progress,
                                    desc=f"epoch {epoch}", epoch=epoch)
        elapsed = time.perf_counter() - t0
        test_error, test_loss = trainer.evaluate(x_test, data.y_test)
        exit_error = trainer.exit_errors(x_test, data.y_test)  # sigprop's early exits (else empty)
        t1 = time.perf_counter()
        snapshot = epoch % rec.weights_every == 0 or epoch == cfg.learning.epochs
        for warning in health.check(epoch, model, lrs):
            say(warning, logging.WARNING)
        if health.warnings:
            attrs["warnings"] = "\n".join(health.warnings)
        arrays, meta = trainer.state_dict()  # before the append: the run file records the checkpoint's digest
        meta = {"epoch": epoch, "parameters": cfg.to_toml(), "trainer": meta}
        digests[epoch - 1:] = [checkpoint_digest(arrays, meta)[:16]]
        metrics = {"train_error": stats.error, "train_loss": stats.loss, "test_error": test_error,
                   "test_loss": test_loss, "epoch_time": elapsed}
        agreement = feedback_agreement(net, model, feedback)
        store.append(EpochRecord(
            epoch=epoch,
            metrics=metrics,
            residual=stats.residual,
            phase_steps=stats.steps,
            batch_loss=stats.batch_loss,
            states=probes.record(trainer.rule, engine, model),
            loop_alignment=loop_alignment(*trainer.rule.loop_view(model, trainer.state), cycles),
            grad_alignment=_grad_alignment(cfg, trainer.rule, engine, model, probes),
            feedback_alignment=feedback_alignment(net, model, feedback),
            feedback_error={k: v[0] for k, v in agreement.items()},
            feedback_sign_congruence={k: v[1] for k, v in agreement.items()},
            weights=model.weights if snapshot else None,
            biases=model.biases if snapshot else None,
            exit_error=exit_error,
            spikes=spike_trains(trainer.rule, probes, model, trainer.state),
        ), {**attrs, "end_time": now(), "checkpoint_digests": " ".join(digests)})
        t2 = time.perf_counter()
        save_checkpoint(ckpt, arrays, meta, {"name": store.path.name, "epochs": epoch,
                                             "metrics": metrics_digest(metrics)})
        logger.debug(f"epoch {epoch}: probes recorded and run file appended in {t2 - t1:.3f} s, "
                     f"checkpoint written in {time.perf_counter() - t2:.3f} s")
        ended_early = (f"; free phase {stats.steps['free']:.1f} steps"
                       if cfg.dynamics.tol > 0 and "free" in stats.steps else "")
        say(f"epoch {epoch:3d}/{cfg.learning.epochs}  train error {100 * stats.error:6.2f}%  loss {stats.loss:.4f}  "
            f"test error {100 * test_error:6.2f}%  ({elapsed:.1f} s; recording {time.perf_counter() - t1:.2f} s"
            f"{ended_early})")
    say(f"run file: {store.path}")
    return open_run(store.path)

