"""The engine's BLAS pool gets the threads, every other BLAS pool one, for the time of a run."""

import pytest
from threadpoolctl import ThreadpoolController

import hebbsim
from hebbsim.simulate.engines.blas_pools import blas_owner, engine_blas_pools


def _threads() -> dict[str, int]:
    return {lib["filepath"]: lib["num_threads"] for lib in ThreadpoolController().info() if lib["user_api"] == "blas"}


def test_the_engines_pool_gets_the_threads_the_others_one_then_all_are_restored():
    import scipy.linalg.cython_blas  # noqa: F401

    before = _threads()
    owners = {path: blas_owner(path) for path in before}
    with engine_blas_pools("numba", threads=3) as pools:
        inside = _threads()
        if len(before) == 1:  # numpy and scipy share one library: it is the engine's
            assert list(inside.values()) == [3]
        else:
            assert sorted(owners.values()) == ["numpy", "scipy"], owners  # PyPI wheels: one library each
            # the numba kernels call numpy's GEMM (numba_blas): numpy's pool computes, scipy's rests
            assert {owners[p]: n for p, n in inside.items()} == {"numpy": 3, "scipy": 1}
            assert pools.busy.startswith("numpy's ") and "(the engine's)" in pools.describe()
    assert _threads() == before
    with engine_blas_pools("reference") as pools:  # numpy's pool does the work and keeps its size
        inside = _threads()
        for path, n in inside.items():
            assert n == (before[path] if owners[path] == "numpy" or len(before) == 1 else 1)
    assert _threads() == before


def test_a_run_records_its_blas_threads_and_scipys_pool_is_one_thread_while_it_trains(tiny_run, monkeypatch):
    from hebbsim.simulate import trainer as trainer_module

    seen = []
    epoch = trainer_module.Trainer.train_epoch

    def spy(self, *args, **kwargs):
        seen.append(_threads())
        return epoch(self, *args, **kwargs)

    monkeypatch.setattr(trainer_module.Trainer, "train_epoch", spy)
    p = tiny_run("threads", learning__epochs=1, dynamics__threads=2)
    ds = hebbsim.run(p, progress=False, log=None)
    owners = {path: blas_owner(path) for path in seen[0]}
    if len(seen[0]) > 1:
        assert {owners[path]: n for path, n in seen[0].items()} == {"numpy": 2, "scipy": 1}
    assert "2 threads (the engine's)" in ds.attrs["blas_threads"]


@pytest.mark.parametrize("threads", [0, -1, "two"])
def test_bad_thread_counts_are_refused_naming_the_key(tiny_run, threads):
    with pytest.raises(hebbsim.errors.HebbsimError, match="dynamics.threads"):
        hebbsim.run(tiny_run("bad", dynamics__threads=threads), progress=False, log=None)
