"""The run store on its own: schema, appends, replacing epochs, readers while writing (no engine)."""

import numpy as np
import pytest
import xarray as xr

from hebbsim.data.store import METRICS, EpochRecord, RunLayout, RunStore, StoreError, open_run, run_schema

SIZES = {"x": 4, "h1": 3, "o": 2}
STEPS = np.array([0, 2, 4, 5])


def layout(**changes) -> RunLayout:
    kw = dict(populations=SIZES, phases=("free", "nudged"), steps=STEPS, dt=0.5, probe=np.array([0, 7, 9]),
              probe_split="test", probe_label=np.array([1, 0, 1]), probe_input=np.zeros((3, 4), np.float32),
              recorded=("h1", "o"), weights={"x_to_h1": ("x", "h1"), "h1_to_o": ("h1", "o"), "o_to_h1": ("o", "h1")},
              loop_projections=("h1_to_o", "o_to_h1"), dtype="float32")
    kw.update(changes)
    return RunLayout(**kw)


def weights(value: float):
    w = {"x_to_h1": np.full((3, 4), value, np.float32), "h1_to_o": np.full((2, 3), value, np.float32),
         "o_to_h1": np.full((3, 2), value, np.float32)}
    return w, {"h1": np.full(3, value, np.float32), "o": np.full(2, value, np.float32)}


def record(epoch: int, n_batches: int = 5, snapshot: bool = False) -> EpochRecord:
    rng = np.random.default_rng(epoch)
    states = {pop: {"free": rng.random((4, 3, n), dtype=np.float32), "nudged": rng.random((3, 3, n), dtype=np.float32)}
              for pop, n in (("h1", 3), ("o", 2))}
    w, b = weights(epoch) if snapshot else (None, None)
    return EpochRecord(epoch=epoch, metrics={k: epoch / 10 for k in METRICS}, residual={"free": 1e-3, "nudged": 2e-3},
                       batch_loss=np.full(n_batches, float(epoch)), states=states,
                       loop_alignment={"h1_to_o": 80.0 + epoch, "o_to_h1": 70.0 + epoch}, weights=w, biases=b)


@pytest.fixture
def store(tmp_path):
    s = RunStore(tmp_path / "run.h5")
    s.create(layout(), {"parameters": "[network]\n", "engine": "test", "seed": 1}, *weights(0.0))
    return s


def test_appended_epochs_read_back_eagerly_and_lazily(store):
    recs = [record(k, snapshot=(k == 2)) for k in (1, 2, 3)]
    for r in recs:
        store.append(r, {"end_time": f"t{r.epoch}"})
    for ds in (open_run(store.path), xr.open_dataset(store.path, engine="h5netcdf", chunks={})):
        assert list(ds.epoch.values) == [1, 2, 3]
        assert list(ds.snapshot.values) == [0, 2]
        assert list(ds.phase.values) == ["free", "nudged"]
        assert ds.state_h1.dims == ("epoch", "phase", "step", "probe", "h1_unit")
        assert ds.weight_x_to_h1.dims == ("snapshot", "h1_unit", "x_unit")
        assert ds.batch_loss.dims == ("iteration",) and ds.sizes["iteration"] == 15
        np.testing.assert_array_equal(ds.batch_epoch.values, np.repeat([1, 2, 3], 5))
        np.testing.assert_array_equal(ds.iteration.values, np.arange(1, 16))
        for r in recs:
            e = ds.sel(epoch=r.epoch)
            np.testing.assert_array_equal(e.state_o.sel(phase="free").values, r.states["o"]["free"])
            nudged = e.state_h1.sel(phase="nudged").values
            np.testing.assert_array_equal(nudged[:3], r.states["h1"]["nudged"])
            assert np.isnan(nudged[3:]).all()  # past the nudged phase's last step
            assert float(e.train_error) == r.epoch / 10
            assert float(e.loop_alignment.sel(projection="o_to_h1")) == 70.0 + r.epoch
        np.testing.assert_array_equal(ds.weight_h1_to_o.sel(snapshot=2).values, np.full((2, 3), 2, np.float32))
        assert ds.attrs["end_time"] == "t3" and ds.attrs["engine"] == "test" and ds.attrs["schema"]
        for name in ds.variables:
            if name not in ("phase", "projection"):
                assert "units" in ds[name].attrs, name
            assert ds[name].attrs.get("description"), name
    assert ds.state_o.chunks is not None


def test_empty_run_file_opens_lazily(store):
    ds = open_run(store.path, chunks={})
    assert ds.sizes["epoch"] == 0 and list(ds.snapshot.values) == [0]
    assert ds.train_error.shape == (0,)


def test_appending_an_epoch_again_replaces_it_and_everything_after(store):
    for k in (1, 2, 3):
        store.append(record(k, snapshot=True))
    store.append(record(2, n_batches=4, snapshot=True))  # a resumed run redoes epoch 2
    ds = open_run(store.path)
    assert list(ds.epoch.values) == [1, 2]
    assert list(ds.snapshot.values) == [0, 1, 2]
    np.testing.assert_array_equal(ds.batch_epoch.values, [1] * 5 + [2] * 4)
    np.testing.assert_array_equal(ds.iteration.values, np.arange(1, 10))


def test_append_refuses_a_gap(store):
    with pytest.raises(StoreError, match="holds only 0 epochs"):
        store.append(record(2))


def test_readers_never_block_the_writer_and_keep_their_view(store):
    store.append(record(1))
    reader = open_run(store.path)  # held open across the next append
    store.append(record(2))
    assert reader.sizes["epoch"] == 1 and float(reader.train_error[0]) == 0.1  # still the old, complete file
    assert list(open_run(store.path).epoch.values) == [1, 2]
    assert not store.tmp.exists()


def test_no_probe_recording_means_no_state_variables(tmp_path):
    s = RunStore(tmp_path / "r.h5", compression="none")
    s.create(layout(recorded=(), probe=np.arange(0), probe_label=np.arange(0), probe_input=np.zeros((0, 4)),
                    steps=np.arange(0), loop_projections=()), {}, *weights(0.0))
    r = record(1)
    r.states, r.loop_alignment = {}, {}
    s.append(r)
    schema = run_schema(open_run(s.path))
    assert not any(k.startswith("state_") for k in schema)
    assert "probe" not in {d for dims in schema.values() for d in dims}
    assert "loop_alignment" not in schema and schema["train_error"] == ("epoch",)
