"""Checkpoints: exact round trip, atomic replacement, no pickle, a manifest that refuses any change."""

import io
import json
import zipfile

import numpy as np
import pytest

from hebbsim.data.checkpoint import (MANIFEST_KEY, META_KEY, CheckpointError, checkpoint_path, load_checkpoint,
                                     save_checkpoint)
from hebbsim.data.crashpoints import FAULT_ENV


@pytest.fixture
def saved(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"weight/x_to_h1": rng.random((3, 4), dtype=np.float32), "optimizer/t": np.array(7),
              "persistent/h1": rng.random((5, 3))}
    meta = {"epoch": 2, "rng": rng.bit_generator.state, "parameters": "[network]\nlayers = [1, 2]\n"}
    return save_checkpoint(tmp_path / "r.ckpt.npz", arrays, meta, {"name": "r.h5", "epochs": 2}), arrays, meta


def _rewrite(path, change):
    """Rewrite the archive's members as plain .npy entries after ``change(members)`` (a dict
    name → array), the way someone editing a checkpoint by hand would."""
    with np.load(path) as npz:
        members = {k: npz[k] for k in npz.files}
    change(members)
    buf = io.BytesIO()
    np.savez(buf, **members)
    path.write_bytes(buf.getvalue())


def _json(a):
    return json.loads(a.tobytes().decode())


def test_round_trip_is_exact_and_keeps_json_meta(saved, tmp_path):
    path, arrays, meta = saved
    back, back_meta = load_checkpoint(path)
    assert back.keys() == arrays.keys()
    for k, v in arrays.items():
        np.testing.assert_array_equal(back[k], v)
        assert back[k].dtype == v.dtype
    assert back_meta == meta  # 128-bit PCG64 state integers survive JSON
    assert not (tmp_path / "r.ckpt.npz.tmp").exists()


def test_checkpoint_path_is_the_whole_run_file_name(tmp_path):
    assert checkpoint_path(tmp_path / "runs" / "mnist.h5") == tmp_path / "runs" / "mnist.h5.ckpt.npz"
    assert checkpoint_path("x.h5") != checkpoint_path("x.nc")  # two run files never share a checkpoint


def test_object_arrays_are_refused_and_a_torn_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="pickle"):
        save_checkpoint(tmp_path / "a.npz", {"x": np.array([{"a": 1}], dtype=object)}, {})
    (tmp_path / "b.npz").write_bytes(b"PK\x03\x04 torn")
    with pytest.raises(CheckpointError, match="checkpoint .*b.npz"):
        load_checkpoint(tmp_path / "b.npz")


@pytest.mark.parametrize("content,message", [
    (b"", "is empty"),
    (b"\x80\x04\x95garbage that np.load would try to unpickle", "not a hebbsim checkpoint"),
    (bytes(range(256)) * 40, "not a hebbsim checkpoint"),
])
def test_garbage_is_refused_without_mentioning_pickles(tmp_path, content, message):
    path = tmp_path / "g.ckpt.npz"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as err:
        load_checkpoint(path)
    assert "allow_pickle" not in str(err.value) and str(path) in str(err.value)


def test_a_directory_or_a_missing_file_is_refused(tmp_path):
    (tmp_path / "d.ckpt.npz").mkdir()
    with pytest.raises(CheckpointError, match="not a regular file"):
        load_checkpoint(tmp_path / "d.ckpt.npz")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "none.ckpt.npz")


def test_a_pickled_member_is_refused(saved):
    path = saved[0]
    _rewrite(path, lambda m: m.update({"weight/x_to_h1": np.array([{"evil": 1}], dtype=object)}))
    with pytest.raises(CheckpointError, match="never loads pickled data") as err:
        load_checkpoint(path)
    assert "allow_pickle" not in str(err.value)


@pytest.mark.parametrize("change,message", [
    (lambda m: m.pop("weight/x_to_h1"), "'weight/x_to_h1' is missing"),
    (lambda m: m.update({"weight/x_to_h1": np.zeros((4, 3), np.float32)}), "'weight/x_to_h1' is <f4\\[4, 3\\]"),
    (lambda m: m.update({"persistent/h1": m["persistent/h1"].astype(np.float32)}), "'persistent/h1' is <f4"),
    (lambda m: m.update({"extra": np.zeros(2)}), "'extra' is not listed"),
    (lambda m: m["weight/x_to_h1"].__setitem__((0, 0), 5.0), "digest mismatch"),
    (lambda m: m.update({META_KEY: np.frombuffer(json.dumps({**_json(m[META_KEY]), "epoch": 1}).encode(),
                                                 np.uint8)}), "epoch 1, the manifest says 2"),
    (lambda m: m.update({MANIFEST_KEY: np.frombuffer(json.dumps({**_json(m[MANIFEST_KEY]), "epoch": 1,
                                                                 }).encode(), np.uint8),
                         META_KEY: np.frombuffer(json.dumps({**_json(m[META_KEY]), "epoch": 1}).encode(),
                                                 np.uint8)}), "digest mismatch"),
    (lambda m: m.pop(MANIFEST_KEY), "has no manifest"),
    (lambda m: m.update({MANIFEST_KEY: np.frombuffer(b"{not json", np.uint8)}), "damaged manifest"),
])
def test_anything_that_disagrees_with_the_manifest_is_refused(saved, change, message):
    path = saved[0]
    _rewrite(path, change)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_a_byte_flip_anywhere_is_caught(saved):
    path = saved[0]
    good = path.read_bytes()
    caught = 0
    positions = np.random.default_rng(1).choice(len(good), 40, replace=False)
    for pos in positions:
        bad = bytearray(good)
        bad[pos] ^= 0x55
        path.write_bytes(bytes(bad))
        try:
            load_checkpoint(path)
        except CheckpointError:
            caught += 1
        else:  # a flip in zip padding or an unused header field changes no array: still the same state
            arrays, meta = load_checkpoint(path)
            for k, v in saved[1].items():
                np.testing.assert_array_equal(arrays[k], v)
            assert meta == saved[2]
    assert caught >= 20, caught  # measured: 29 of 40 flips hit data or headers


def test_a_full_disk_leaves_the_previous_checkpoint_and_no_temporary_file(saved, monkeypatch):
    path, arrays, meta = saved
    before = path.read_bytes()
    monkeypatch.setenv(FAULT_ENV, "checkpoint:3")
    with pytest.raises(CheckpointError, match="No space left on device.*previous checkpoint is unchanged"):
        save_checkpoint(path, arrays, {**meta, "epoch": 3})
    assert path.read_bytes() == before
    assert not path.with_name(path.name + ".tmp").exists()
    assert zipfile.is_zipfile(path) and load_checkpoint(path)[1]["epoch"] == 2
