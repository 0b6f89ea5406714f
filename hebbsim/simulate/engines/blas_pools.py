"""The BLAS thread pools of a training process, sized on purpose (docs/engines.md, Threads).

With numpy and scipy from PyPI wheels a process loads two OpenBLAS libraries, each with its own
pool of threads: numpy's and scipy's (which numba's ``np.dot`` calls). An OpenBLAS worker thread
busy-waits for a while after a call returns, so when both pools work in turn, the pool that has
just worked spins on the cores the other one needs: on a 2-core machine numpy's products ran at
a third of their rate right after the Euler kernel's (docs/benchmarks.md, BLAS threads). The
numba kernels therefore call numpy's own GEMM (:mod:`hebbsim.simulate.engines.numba_blas`), and
:func:`engine_blas_pools` gives the threads to the library the engine computes with and one
thread to every other BLAS library, for the time of a run, restoring the pools afterwards.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# which package's wheel ships the library (its folder: numpy.libs, scipy.libs; or a package dir)
_OWNERS = ("numpy", "scipy")


def blas_owner(filepath: str) -> str | None:
    """``numpy`` or ``scipy`` when the BLAS library at ``filepath`` ships with that package's wheel."""
    parts = Path(filepath).parts
    for owner in _OWNERS:
        if f"{owner}.libs" in parts or owner in parts:
            return owner
    return None


def blas_libraries(controller=None) -> list[dict]:
    """The BLAS libraries loaded in this process: threadpoolctl's info dict of each (``filepath``,
    ``num_threads``, ``internal_api``, ``version``), read through ``controller`` if given."""
    if controller is None:
        from threadpoolctl import ThreadpoolController

        controller = ThreadpoolController()
    return [lib for lib in controller.info() if lib["user_api"] == "blas"]


def cores() -> int:
    """The cores this process may run on (its CPU affinity: a SLURM allocation's, a taskset's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass(frozen=True)
class BlasPools:
    """How a run's BLAS pools were sized: ``pools`` every BLAS library's ``(label, threads)``
    (label: whose library, its implementation and version, e.g. "scipy's openblas 0.3.30"),
    ``busy`` the label of the library the engine's hot loop calls (``None`` when it could not
    be told apart: then every pool got the engine's threads)."""

    engine: str
    busy: str | None
    pools: tuple[tuple[str, int], ...]

    def describe(self) -> str:
        """One line for the log and the run file's ``blas_threads`` attribute."""
        parts = [f"{label}: {n} thread{'s' if n != 1 else ''}" + (" (the engine's)" if label == self.busy else "")
                 for label, n in self.pools]
        return "; ".join(parts) or "no BLAS library loaded"


@contextlib.contextmanager
def engine_blas_pools(engine: str, threads: int | None = None) -> Iterator[BlasPools]:
    """Size the process's BLAS pools for ``engine`` while the ``with`` block runs.

    The library the engine computes with gets ``threads`` (``None``: the size its pool has,
    e.g. the machine's cores, ``OPENBLAS_NUM_THREADS``, or 1 in a sweep worker), every other
    BLAS library 1 thread. That library is numpy's, for the numba engine too when its kernels
    can call numpy's GEMM (:func:`hebbsim.simulate.engines.numba_blas.numpy_gemm`), else scipy's
    (numba's ``np.dot``). The jax engine's XLA threads are not BLAS pools and are left alone.
    When numpy and scipy share one library (conda, a system OpenBLAS or MKL) there is one pool
    and it gets ``threads``.

    Args:
        engine: the engine's name (``numba``, ``jax``, ``reference``).
        threads: the engine's BLAS threads, ≥ 1, or ``None`` to keep the pool's size.
    """
    from threadpoolctl import ThreadpoolController

    wanted = "numpy"
    if engine == "numba":
        import scipy.linalg.cython_blas  # noqa: F401  (numba's np.dot calls it: load its library now)

        from .numba_blas import numpy_gemm

        wanted = "numpy" if numpy_gemm("float32") is not None else "scipy"
    ctl = ThreadpoolController()
    blas = blas_libraries(ctl)
    owners = [blas_owner(lib["filepath"]) for lib in blas]
    if len(blas) == 1:
        busy_index = 0
    elif owners.count(wanted) == 1:
        busy_index = owners.index(wanted)
    else:
        busy_index = None  # cannot tell the engine's library apart: size every pool alike
    sizes = []
    for k, lib in enumerate(blas):
        own = threads if threads is not None else lib["num_threads"]
        sizes.append(own if busy_index is None or k == busy_index else 1)
    limiters = [ctl.select(filepath=lib["filepath"]).limit(limits=n) for lib, n in zip(blas, sizes)]
    labels = [f"{owners[k] + chr(39) + 's' if owners[k] else Path(lib['filepath']).name} "
              f"{lib.get('internal_api', 'blas')} {lib.get('version')}" for k, lib in enumerate(blas)]
    try:
        yield BlasPools(engine, labels[busy_index] if busy_index is not None else None, tuple(zip(labels, sizes)))
    finally:
        for limiter in limiters:
            limiter.restore_original_limits()
