import os
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if "HEBBSIM_DATA" not in os.environ and SHARED_DATA.is_dir():
    os.environ["HEBBSIM_DATA"] = str(SHARED_DATA)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


TINY_RUN = {
    "network": {"layers": [64, 32, 10], "topology": "loop", "clip_states": True},
    "dynamics": {"dt": 0.5, "free_steps": 20, "nudge_steps": 6, "beta": 1.0},
    "learning": {"lr": [0.1, 0.05, 0.05], "batch_size": 10, "epochs": 3, "seed": 3},
    "data": {"dataset": "digits", "train_subset": 300, "test_subset": 100},
}


def _tiny_params(path, **changes) -> dict:
    import copy

    p = copy.deepcopy(TINY_RUN)
    p["record"] = {"path": str(path)}
    for key, value in changes.items():
        section, field = key.split("__")
        p.setdefault(section, {})[field] = value
    return p


@pytest.fixture(scope="session")
def tiny_params():
    """``tiny_params(path, section__key=value, …)``: parameters (a dict) of a tiny digits run
    writing its run file to ``path``."""
    return _tiny_params


@pytest.fixture
def tiny_run(tmp_path):
    """``tiny_run(name, section__key=value, …)``: parameters of a tiny digits run writing
    ``tmp_path/<name>.h5``."""
    return lambda name="run", **changes: _tiny_params(tmp_path / f"{name}.h5", **changes)


def _assert_same_run(a_path, b_path):
    """Two run files hold the same epochs with the same values (timings aside), and their
    checkpoints the same arrays and RNG state."""
    import hebbsim
    from hebbsim.data.checkpoint import checkpoint_path, load_checkpoint

    a, b = hebbsim.open_run(a_path), hebbsim.open_run(b_path)
    assert list(b.epoch.values) == list(a.epoch.values) == list(range(1, a.sizes["epoch"] + 1))
    assert list(b.snapshot.values) == list(a.snapshot.values)
    for name in a.data_vars:
        if name != "epoch_time":
            np.testing.assert_array_equal(b[name].values, a[name].values, err_msg=name)
    np.testing.assert_array_equal(b.batch_epoch.values, a.batch_epoch.values)
    arrays_a, meta_a = load_checkpoint(checkpoint_path(a_path))
    arrays_b, meta_b = load_checkpoint(checkpoint_path(b_path))
    assert arrays_a.keys() == arrays_b.keys() and meta_a["trainer"] == meta_b["trainer"]
    for k in arrays_a:
        np.testing.assert_array_equal(arrays_b[k], arrays_a[k], err_msg=k)


@pytest.fixture(scope="session")
def assert_same_run():
    """``assert_same_run(a_path, b_path)``: the two runs' files and checkpoints agree bit for bit."""
    return _assert_same_run
