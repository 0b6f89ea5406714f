"""Checks made before a run starts, against this machine: can the run file be written where
``record.path`` says, and does the run fit in memory? Each failure is one line naming the key,
the value and what to change — never an OS error or a ``MemoryError`` after start-up."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ..data.params import ParameterError, RunParams
from ..dynamics.network import INPUT, Network
from ..rules import rule_class

GIB = 2.0**30


def check_record_path(cfg: RunParams, params_file: str | Path | None = None) -> Path:
    """The run file's path, its folder created; refuse a path that cannot hold a run file."""
    path = Path(cfg.record.path)
    key = f"record.path = {cfg.record.path!r}"
    if len(path.name.encode()) > 255:
        raise ParameterError(f"{key}: the file name is longer than 255 bytes; use a shorter name")
    if path.is_dir():
        raise ParameterError(f"{key}: is a folder; give a file name in it (e.g. '{path / 'run.h5'}') or end the "
                             "path with '/' to write run.h5 there")
    if params_file is not None and path.exists() and path.resolve() == Path(params_file).resolve():
        raise ParameterError(f"{key}: is the parameter file itself; give the run file another name")
    for parent in [path.parent, *path.parent.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise ParameterError(f"{key}: {parent} is a file, not a folder; choose another path")
            break
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ParameterError(f"{key}: its folder {path.parent} cannot be created ({err.strerror})") from None
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise ParameterError(f"{key}: the folder {path.parent} is not writable; choose another path")
    try:  # the name as the file system sees it (length limits, reserved names): create and remove a probe
        probe = path.with_name(path.name + ".probe")
        probe.touch(exist_ok=True)
        probe.unlink()
    except OSError as err:
        reason = "the name is too long" if err.errno == errno.ENAMETOOLONG else err.strerror
        raise ParameterError(f"{key}: cannot create a file there ({reason})") from None
    return path


def memory_estimate(cfg: RunParams, net: Network, n_train: int) -> dict[str, float]:
    """Bytes a run holds at its peak, by what holds them (a generous estimate, not a measurement):
    parameters with their gradients, optimizer moments and the engine's transposed copies; the
    batch's phases (the copies of the batch the rule tiles, e.g. the forward-gradient window); evaluation batches;
    persistent states; the training set in the run's dtype; one epoch of probe trajectories; a batch's
    noise increments under ``[dynamics.noise]``."""
    item = 8 if cfg.dynamics.dtype == "float64" else 4
    sizes = net.sizes
    units = sum(p.size for p in net.dynamic_populations)
    n_x = sizes[INPUT]
    weights = sum(sizes[p.dst] * sizes[p.src] for p in net.projections if p.kind != "tied")
    lc = cfg.learning
    moments = 2 if lc.optimizer == "adam" else 1 if lc.momentum else 0
    rows = lc.batch_size * rule_class(lc.rule).batch_copies(cfg, net)
    dyn = cfg.dynamics
    steps = max(dyn.free_steps, dyn.nudge_steps) // cfg.record.every_steps + 2
    recorded = sum(sizes[p] for p in (cfg.record.populations or [p.name for p in net.dynamic_populations]))
    noise = cfg.dynamics.noise
    # a batch's noise increments, every phase's (drawn in float64, cast, and copied to the device)
    noisy = sum(sizes[p] for p in noise.populations or ()) if noise.kind != "none" else 0
    noise_steps = dyn.free_steps + dyn.nudge_steps * (len(cfg.phases) - 1)
    return {
        "noise draws": lc.batch_size * noise_steps * noisy * (8 + 2 * item),
        "parameters": weights * item * (3 + moments),
        "batch": rows * (n_x + units) * item * 12,
        "evaluation": lc.eval_batch_size * (n_x + units) * item * 6,
        "persistent states": n_train * units * item if dyn.persistent_states else 0,
        "training set": n_train * n_x * (item + 8),
        "probe trajectories": cfg.record.probes * steps * recorded * item * len(cfg.phases),
    }


def physical_memory() -> float:
    """Bytes of memory of this machine (or of the cgroup this process runs in, if smaller)."""
    total = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, float(text))
    return total


def check_memory(cfg: RunParams, net: Network, n_train: int, available: float | None = None) -> dict[str, float]:
    """Refuse a run whose :func:`memory_estimate` exceeds this machine's memory."""
    parts = memory_estimate(cfg, net, n_train)
    need = sum(parts.values())
    have = physical_memory() if available is None else available
    if need > 0.9 * have:
        top = sorted(parts.items(), key=lambda kv: -kv[1])[:3]
        detail = ", ".join(f"{k} {v / GIB:.3g} GiB" for k, v in top)
        raise ParameterError(
            f"network.layers = {cfg.network.layers}, learning.batch_size = {cfg.learning.batch_size}: the run needs "
            f"about {need / GIB:.3g} GiB of memory ({detail}), more than this machine's {have / GIB:.3g} GiB; "
            "use smaller layers, batches, record.probes or learning.forward_gradient.perturbations")
    return parts
