"""The run file's schema (SPEC §5) depends on the network and [record], never on the engine."""

import numpy as np
import pytest

import hebbsim
from hebbsim.data.store import run_schema
from hebbsim.simulate.engines import make_engine

EPOCH_STATE = ("epoch", "phase", "step", "probe")
TINY_LOOP_SCHEMA = {
    "epoch": ("epoch",), "iteration": ("iteration",), "batch_epoch": ("iteration",), "snapshot": ("snapshot",),
    "phase": ("phase",), "step": ("step",), "probe": ("probe",), "probe_label": ("probe",),
    "projection": ("projection",),
    "train_error": ("epoch",), "test_error": ("epoch",), "train_loss": ("epoch",), "test_loss": ("epoch",),
    "epoch_time": ("epoch",), "residual": ("epoch", "phase"), "batch_loss": ("iteration",),
    "loop_alignment": ("epoch", "projection"),
    "weight_x_to_h1": ("snapshot", "h1_unit", "x_unit"), "weight_h1_to_o": ("snapshot", "o_unit", "h1_unit"),
    "weight_o_to_h1": ("snapshot", "h1_unit", "o_unit"), "bias_h1": ("snapshot", "h1_unit"),
    "bias_o": ("snapshot", "o_unit"), "probe_input": ("probe", "x_unit"),
    "state_h1": (*EPOCH_STATE, "h1_unit"), "state_o": (*EPOCH_STATE, "o_unit"),
}


def test_schema_of_a_loop_run(tiny_run):
    ds = hebbsim.run(tiny_run(learning__epochs=1), progress=False, log=None)
    assert run_schema(ds) == TINY_LOOP_SCHEMA
    assert list(ds.phase.values) == ["free", "nudged"]
    # 30 equal batches of 10: the batch losses average to the epoch's training loss
    assert ds.sizes["iteration"] == 30
    np.testing.assert_allclose(ds.batch_loss.mean().item(), ds.train_loss.item(), rtol=1e-6)  # float32 sums


def test_numba_and_jax_runs_have_the_same_schema(tiny_run):
    from hebbsim.data.params import load_params

    try:
        make_engine("jax", load_params(tiny_run()).build_network(), 0.5)
    except ValueError as err:
        if "not available yet" in str(err):
            pytest.skip(f"the jax engine is not available yet ({err})")
        raise
    schemas = {}
    for engine in ("numba", "jax"):
        ds = hebbsim.run(tiny_run(engine, learning__epochs=1, dynamics__engine=engine), progress=False, log=None)
        schemas[engine] = run_schema(ds)
        assert ds.attrs["engine"] == engine
    assert schemas["jax"] == schemas["numba"]
