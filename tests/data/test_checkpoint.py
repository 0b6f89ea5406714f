"""Checkpoints: exact round trip, atomic replacement, no pickle."""

import numpy as np
import pytest

from hebbsim.data.checkpoint import CheckpointError, checkpoint_path, load_checkpoint, save_checkpoint


def test_round_trip_is_exact_and_keeps_json_meta(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"weight/x_to_h1": rng.random((3, 4), dtype=np.float32), "optimizer/t": np.array(7),
              "persistent/h1": rng.random((5, 3))}
    meta = {"epoch": 2, "rng": rng.bit_generator.state, "parameters": "[network]\nlayers = [1, 2]\n"}
    path = save_checkpoint(tmp_path / "r.ckpt.npz", arrays, meta)
    back, back_meta = load_checkpoint(path)
    assert back.keys() == arrays.keys()
    for k, v in arrays.items():
        np.testing.assert_array_equal(back[k], v)
        assert back[k].dtype == v.dtype
    assert back_meta == meta  # 128-bit PCG64 state integers survive JSON
    assert not (tmp_path / "r.ckpt.npz.tmp").exists()


def test_checkpoint_path_sits_beside_the_run_file(tmp_path):
    assert checkpoint_path(tmp_path / "runs" / "mnist.h5") == tmp_path / "runs" / "mnist.ckpt.npz"


def test_object_arrays_are_refused_and_a_torn_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="pickle"):
        save_checkpoint(tmp_path / "a.npz", {"x": np.array([{"a": 1}], dtype=object)}, {})
    (tmp_path / "b.npz").write_bytes(b"PK\x03\x04 torn")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "b.npz")
