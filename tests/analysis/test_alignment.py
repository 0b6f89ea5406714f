"""Loop alignment (SPEC §4): which projections are on a loop, and the angle to the loop map."""

import numpy as np
import pytest

from hebbsim.analysis.alignment import angle, loop_alignment, loop_paths
from hebbsim.dynamics.network import Projection, build_network
from hebbsim.dynamics.params import init_params


def test_loop_topology_pairs_the_loop_with_the_forward_projection():
    net = build_network([6, 5, 3], "loop")
    paths = loop_paths(net)
    assert {k: [p.name for p in v] for k, v in paths.items()} == {"h1_to_o": ["o_to_h1"], "o_to_h1": ["h1_to_o"]}
    params = init_params(net, 0)
    got = loop_alignment(net, params, paths)
    expected = angle(params.weights["h1_to_o"].T, params.weights["o_to_h1"])
    assert got == {"h1_to_o": expected, "o_to_h1": expected}
    params.weights["o_to_h1"][...] = params.weights["h1_to_o"].T  # a perfectly aligned loop
    assert loop_alignment(net, params)["h1_to_o"] < 1e-3


def test_three_cycle_uses_the_product_of_the_other_projections():
    # the SPEC's example: cycle h1 -> h2 -> o -> h1, M = W_{o<-h2}: loop map W_{h2<-h1} W_{h1<-o}
    projs = [Projection("x", "h1"), Projection("h1", "h2"), Projection("h2", "o"), Projection("o", "h1", "fixed")]
    net = build_network([5, 4, 3, 2], projections=projs)
    params = init_params(net, 1)
    w = params.weights
    paths = loop_paths(net)
    assert set(paths) == {"h1_to_h2", "h2_to_o"}  # x_to_h1 is on no cycle; o_to_h1 is not learned
    assert [p.name for p in paths["h2_to_o"]] == ["o_to_h1", "h1_to_h2"]
    expected = angle(w["h2_to_o"].T, w["h1_to_h2"].astype(np.float64) @ w["o_to_h1"])
    assert loop_alignment(net, params)["h2_to_o"] == expected


def test_symmetric_feedback_is_aligned_and_feedforward_has_no_loops():
    net = build_network([6, 5, 4, 3], "symmetric")
    got = loop_alignment(net, init_params(net, 2))
    assert set(got) == {"h1_to_h2", "h2_to_o"} and max(got.values()) < 1e-3
    assert loop_paths(build_network([6, 5, 3], "feedforward")) == {}


def test_angle():
    assert angle(np.array([1.0, 0]), np.array([0, 2.0])) == 90.0
    assert angle(np.array([1.0, 1]), -np.array([1.0, 1])) == pytest.approx(180.0, abs=1e-5)
    assert np.isnan(angle(np.zeros(2), np.ones(2)))
