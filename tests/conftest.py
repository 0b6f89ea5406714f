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
