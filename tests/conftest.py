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


@pytest.fixture
def tiny_run(tmp_path):
    """Parameters (a dict) of a tiny digits run writing ``tmp_path/<name>.h5``; keyword
    arguments ``section__key=value`` change single keys."""
    import copy

    def make(name: str = "run", **changes) -> dict:
        p = copy.deepcopy(TINY_RUN)
        p["record"] = {"path": str(tmp_path / f"{name}.h5")}
        for key, value in changes.items():
            section, field = key.split("__")
            p.setdefault(section, {})[field] = value
        return p

    return make
