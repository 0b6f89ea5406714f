"""Cost of recording a run (issue: run store, point 7) at the default ``[record]`` settings.

Runs ``examples/mnist_loop.toml`` (784-500-10 loop, batch 20, 40 free + 10 nudged steps) for a
few epochs on a training subset, in one process:

- **recording on**: ``hebbsim.run`` with the default ``[record]`` section, timing every part of
  the recording as it runs (probe trajectories, loop alignment, run-file append + publish,
  checkpoint) by wrapping those functions;
- **recording off**: the same training (same seed, same data) as a bare loop of
  ``train_epoch`` + ``evaluate`` with no store and no checkpoint.

It reports the recording time per epoch, its share of the epoch, the file size per epoch
(compressed bytes per variable, from HDF5) and the cost of publishing a file of the size a full
30-epoch run reaches (copy + fsync + rename, the store's per-epoch price of crash safety).

    HEBBSIM_DATA=../shared/data python benchmarks/bench_recording.py --train-subset 6000 --epochs 2
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import h5py
import numpy as np

import hebbsim
from hebbsim.data import store as store_mod
from hebbsim.data.datasets import load_dataset
from hebbsim.data.params import load_params
from hebbsim.dynamics.params import init_params
from hebbsim.simulate import runner
from hebbsim.simulate.engines import make_engine
from hebbsim.simulate.recording import ProbeRecorder
from hebbsim.simulate.trainer import Trainer

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mnist_loop.toml"
TIMES: dict[str, list[float]] = defaultdict(list)


def timed(name, fn):
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            TIMES[name].append(time.perf_counter() - t0)
    return wrapper


def instrument() -> None:
    """Time each part of the recording where the runner calls it."""
    ProbeRecorder.record = timed("probe trajectories", ProbeRecorder.record)
    store_mod.RunStore.append = timed("run-file append + publish", store_mod.RunStore.append)
    runner.save_checkpoint = timed("checkpoint", runner.save_checkpoint)
    runner.loop_alignment = timed("loop alignment", runner.loop_alignment)
    Trainer.train_epoch = timed("train", Trainer.train_epoch)
    Trainer.evaluate = timed("evaluate", Trainer.evaluate)


def bare_training(cfg, epochs: int) -> list[float]:
    """Seconds per epoch of the same training with no recording at all."""
    net = cfg.build_network()
    data = load_dataset("mnist")
    n_tr = cfg.data.train_subset
    x, y = data.x_train[:n_tr], data.y_train[:n_tr]
    rng = np.random.default_rng(cfg.learning.seed)
    model = init_params(net, rng, np.float32)
    trainer = Trainer(cfg, net, make_engine("numba", net, cfg.dynamics.dt), model, len(x), rng)
    out = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        trainer.train_epoch(x, y, progress=False)
        trainer.evaluate(data.x_test, data.y_test)
        out.append(time.perf_counter() - t0)
    return out


def storage(path: Path) -> dict[str, int]:
    """Compressed bytes each variable occupies in an HDF5 file."""
    sizes = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: sizes.__setitem__(name, obj.id.get_storage_size())
                     if isinstance(obj, h5py.Dataset) else None)
    return sizes


def publish_cost(n_bytes: int, folder: Path, repeats: int = 3) -> float:
    """Seconds to copy, fsync and rename a file of ``n_bytes`` (what each epoch's publish does)."""
    src, tmp, dst = folder / "big.h5", folder / "big.h5.tmp", folder / "published.h5"
    src.write_bytes(os.urandom(n_bytes))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        shutil.copyfile(src, tmp)
        fd = os.open(tmp, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        os.replace(tmp, dst)
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-subset", type=int, default=6000)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        tmp = Path(tmp)
        overrides = [f"data.train_subset={args.train_subset}", f"learning.epochs={args.epochs}",
                     f'record.path="{tmp / "run.h5"}"']
        cfg = load_params(EXAMPLE, overrides)
        print(f"machine: {platform.node()}, {os.cpu_count()} cores, {platform.processor() or platform.machine()}")
        print(f"{EXAMPLE.name} {' '.join(overrides[:2])}; record: {cfg.record.model_dump(exclude={'path'})}")
        bare_training(load_params(EXAMPLE, [f"data.train_subset={min(200, args.train_subset)}"]), 1)  # warm up
        off = bare_training(cfg, args.epochs)
        instrument()
        t0 = time.perf_counter()
        ds = hebbsim.run(cfg, progress=False, log=None)
        total_on = time.perf_counter() - t0
        n = ds.sizes["epoch"]
        rec_parts = {k: sum(v) / n for k, v in TIMES.items() if k not in ("train", "evaluate")}
        rec = sum(rec_parts.values())
        work = (sum(TIMES["train"]) + sum(TIMES["evaluate"])) / n
        print(f"recording off: {np.mean(off):.2f} s/epoch (train + evaluate; epochs: "
              f"{', '.join(f'{t:.2f}' for t in off)})")
        print(f"recording on:  {work:.2f} s/epoch train + evaluate, {rec:.3f} s/epoch recording "
              f"= {100 * rec / work:.1f}% of the epoch; whole hebbsim.run {total_on:.1f} s for {n} epochs")
        for k, v in rec_parts.items():
            print(f"    {k:28s} {1000 * v:7.1f} ms/epoch")
        sizes = storage(tmp / "run.h5")
        file_size = (tmp / "run.h5").stat().st_size
        states = sum(v for k, v in sizes.items() if k.startswith("state_"))
        weights = sum(v for k, v in sizes.items() if k.startswith(("weight_", "bias_")))
        n_snap = ds.sizes["snapshot"]
        batch = sizes["batch_loss"] + sizes["batch_epoch"] + sizes["iteration"]
        per_epoch = states / n + weights / n_snap / cfg.record.weights_every
        print(f"file: {file_size / 1e6:.2f} MB after {n} epochs ({n_snap} weight snapshots); probe states "
              f"{states / n / 1e6:.3f} MB/epoch, one weight snapshot {weights / n_snap / 1e6:.3f} MB, "
              f"batch losses {batch / n / 1e3:.1f} kB/epoch at {args.train_subset} samples")
        full_batches = 60000 / cfg.learning.batch_size / (args.train_subset / cfg.learning.batch_size)
        full_per_epoch = per_epoch + batch / n * full_batches
        print(f"full MNIST run: {full_per_epoch / 1e6:.3f} MB/epoch (states + snapshots every "
              f"{cfg.record.weights_every} epochs + batch losses), {30 * full_per_epoch / 1e6:.1f} MB after 30 epochs")
        cost = publish_cost(int(30 * full_per_epoch), tmp)
        print(f"publish (copy + fsync + rename) of a {30 * full_per_epoch / 1e6:.1f} MB file: {1000 * cost:.0f} ms")


if __name__ == "__main__":
    main()
