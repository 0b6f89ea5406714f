"""Probe trajectories through the engine API, the [record] section, and bounded memory."""

import tracemalloc

import numpy as np
import pytest

import hebbsim
from hebbsim.data.datasets import load_dataset
from hebbsim.data.params import ParameterError, load_params
from hebbsim.dynamics import rhs
from hebbsim.dynamics.loss import one_hot
from hebbsim.dynamics.params import init_params
from hebbsim.errors import HebbsimError
from hebbsim.simulate.engines import make_engine
from hebbsim.simulate.recording import ProbeRecorder, choose_probes, step_grid
from hebbsim.rules import make_rule


def test_probe_states_are_the_phases_relaxed_in_one_go_at_every_recorded_step(tiny_run):
    cfg = load_params(tiny_run(), ["record.every_steps=3", "dynamics.symmetric_nudging=true", "record.probes=5"])
    net = cfg.build_network()
    rec = ProbeRecorder(cfg, net, load_dataset("digits"))
    engine = make_engine("numba", net, cfg.dynamics.dt)
    params = init_params(net, 0)
    out = rec.record(make_rule(cfg, net), engine, params)
    assert list(rec.steps) == [0, 3, 6, 9, 12, 15, 18, 20]  # every 3 steps, plus the free phase's last (20)
    assert set(out) == {"h1", "o"} and set(out["o"]) == {"free", "nudged", "nudged_minus"}
    system = engine.clamp(params, rec.x)
    zero = rhs.zero_states(net, 5)
    for k, step in enumerate(rec.steps):
        want = system.relax(zero, int(step)).states if step else zero
        for pop in ("h1", "o"):
            np.testing.assert_array_equal(out[pop]["free"][k], want[pop])
    free = system.relax(zero, 20).states
    d = one_hot(rec.labels, 10)
    for phase, beta in (("nudged", 1.0), ("nudged_minus", -1.0)):
        assert out["o"][phase].shape == (3, 5, 10)  # steps 0, 3, 6 of the 6-step nudged phase
        np.testing.assert_array_equal(out["o"][phase][0], free["o"])
        want = system.relax(free, 6, beta=beta, target=d).states["o"]
        np.testing.assert_array_equal(out["o"][phase][-1], want)


def test_probe_choice_and_step_grid():
    np.testing.assert_array_equal(choose_probes(100, 5, "even"), [0, 25, 50, 74, 99])
    np.testing.assert_array_equal(choose_probes(100, 3, "first"), [0, 1, 2])
    assert len(choose_probes(10, 0, "even")) == 0
    with pytest.raises(HebbsimError, match="record.probes = 11"):
        choose_probes(10, 11, "even")
    np.testing.assert_array_equal(step_grid(4, {"free": 10, "nudged": 3}), [0, 3, 4, 8, 10])


def test_record_section_is_validated(tiny_run):
    with pytest.raises(ParameterError, match="'h7' is not a recordable population"):
        load_params(tiny_run(), ['record.populations=["h7"]'])
    with pytest.raises(ParameterError, match="nudged_minus needs dynamics.symmetric_nudging"):
        load_params(tiny_run(), ['record.phases=["free", "nudged_minus"]'])
    with pytest.raises(ParameterError, match="record.compression"):
        load_params(tiny_run(), ['record.compression="bz2"'])
    with pytest.raises(ParameterError, match="record.every_steps"):
        load_params(tiny_run(), ["record.every_steps=0"])
    with pytest.raises(ParameterError, match="unknown key"):
        load_params(tiny_run(), ["record.probe=3"])


def test_chosen_populations_and_phases_only(tiny_run):
    ds = hebbsim.run(tiny_run(record__populations=["o"], record__phases=["nudged"], record__probes=3,
                              record__probe_spacing="first", record__every_steps=5, learning__epochs=1,
                              record__compression="lzf"), progress=False, log=None)
    assert [v for v in ds.data_vars if v.startswith("state_")] == ["state_o"]
    assert list(ds.probe.values) == [0, 1, 2] and list(ds.step.values) == [0, 5, 6]
    assert ds.state_o.sel(phase="free").isnull().all()
    assert ds.state_o.sel(phase="nudged").notnull().all()


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_number_of_epochs(tiny_run):
    def peak(epochs):
        p = tiny_run(f"m{epochs}", learning__epochs=epochs, data__train_subset=100, record__probes=100,
                     record__every_steps=1, record__weights_every=1)
        tracemalloc.start()
        try:
            hebbsim.run(p, progress=False, log=None)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    one_epoch = 2 * 21 * 100 * (32 + 10) * 4  # bytes of probe states one epoch records
    hebbsim.run(tiny_run("warm", learning__epochs=1), progress=False, log=None)
    short, long = peak(2), peak(6)
    assert long < short + one_epoch / 4, (short, long)  # measured: 0.93 MB vs 0.96 MB
    assert long < 3 * one_epoch
