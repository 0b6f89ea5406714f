"""Every validation path of parameter files and --set overrides names the key, the value and the fix."""

import pytest

from hebbsim.data.params import ParameterError, load_params, parse_override

BASE = {"network": {"layers": [64, 16, 10]}}


def _err(raw, overrides=None):
    with pytest.raises(ParameterError) as e:
        load_params(raw, overrides)
    return str(e.value)


def test_defaults_and_overrides_keep_types():
    p = load_params(BASE, ["dynamics.dt=0.25", "learning.lr=[0.1, 0.05]", "network.topology=symmetric",
                           "dynamics.persistent_states=true"])
    assert p.dynamics.dt == 0.25 and p.network.topology == "symmetric" and p.dynamics.persistent_states is True


def test_unknown_key_lists_allowed_keys():
    msg = _err({"network": {"layers": [64, 16, 10], "toplogy": "loop"}})
    assert "network.toplogy" in msg and "unknown key" in msg and "topology" in msg


def test_unknown_section():
    assert "trainig" in _err({**BASE, "trainig": {}})


def test_wrong_type_names_key_and_value():
    msg = _err({**BASE, "dynamics": {"dt": "0.5"}})
    assert "dynamics.dt = '0.5'" in msg and "number" in msg


def test_out_of_range_value():
    msg = _err({**BASE, "dynamics": {"dt": -1.0}})
    assert "dynamics.dt = -1.0" in msg and "greater than 0" in msg
    assert "learning.batch_size = 0" in _err({**BASE, "learning": {"batch_size": 0}})


def test_bad_choice_lists_allowed_values():
    msg = _err({"network": {"layers": [64, 16, 10], "rho": "relu"}})
    assert "network.rho = 'relu'" in msg and "hard_sigmoid" in msg and "tanh" in msg


def test_learning_rate_count_must_match_learned_projections():
    msg = _err({**BASE, "learning": {"lr": [0.1, 0.2]}})
    assert "x_to_h1, h1_to_o, o_to_h1" in msg and "one value per projection" in msg
    assert "learning rates must be >= 0 (0 freezes a projection)" in _err({**BASE, "learning": {"lr": [0.1, -0.2, 0.1]}})
    assert "exactly the learned projections" in _err({**BASE, "learning": {"lr": {"x_to_h1": 0.1}}})


def test_lr_table_and_bias_rates():
    p = load_params({**BASE, "learning": {"lr": {"x_to_h1": 0.1, "h1_to_o": 0.05, "o_to_h1": 0.01}}})
    rates = p.learning_rates(p.build_network())
    assert rates == {"W_x_to_h1": 0.1, "W_h1_to_o": 0.05, "W_o_to_h1": 0.01, "b_h1": 0.1, "b_o": 0.05}


def test_layers_must_fit_dataset():
    msg = _err({"network": {"layers": [784, 16, 10]}})
    assert "digits" in msg and "64" in msg
    assert "whole number from 1 to" in _err({"network": {"layers": [64, 0, 10]}})


def test_bad_projection_list():
    msg = _err({"network": {"layers": [64, 16, 10], "projections": [{"src": "x", "dst": "h9"}]}})
    assert "h9" in msg


def test_malformed_overrides():
    with pytest.raises(ParameterError, match="section.key=value"):
        parse_override("dynamics.dt")
    with pytest.raises(ParameterError, match="section.key"):
        parse_override("dt=0.5")
    assert parse_override("data.dataset=mnist") == (["data", "dataset"], "mnist")


def test_file_errors(tmp_path):
    with pytest.raises(ParameterError, match="does not exist"):
        load_params(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[network\nlayers = 1")
    with pytest.raises(ParameterError, match="not valid TOML"):
        load_params(bad)
    good = tmp_path / "p.toml"
    good.write_text("[network]\nlayers = [64, 8, 10]\n[learning]\nepochs = 'ten'\n")
    msg = _err(good)
    assert str(good) in msg and "learning.epochs = 'ten'" in msg


def test_parameters_round_trip_through_toml(tmp_path):
    p = load_params(BASE, ["learning.lr=[0.1, 0.05, 0.05]"])
    f = tmp_path / "again.toml"
    f.write_text(p.to_toml())
    assert load_params(f) == p


def test_rule_and_cost_defaults_depend_on_topology_and_rule_and_are_stored():
    """The default rule is the gradient: ep_chl_classic on tied weights, ep_chl on the loop."""
    sym = load_params({"network": {"layers": [64, 16, 10], "topology": "symmetric"}})
    assert sym.learning.rule == "ep_chl_classic" and sym.learning.cost == "state_mse"
    assert load_params(BASE).learning.rule == "ep_chl"  # the loop
    assert load_params(BASE, ["network.topology=random_feedback"]).learning.rule == "ep_chl"
    # an explicit choice is kept
    explicit = load_params({"network": {"layers": [64, 16, 10], "topology": "symmetric"},
                            "learning": {"rule": "ep_chl", "cost": "rate_mse"}})
    assert (explicit.learning.rule, explicit.learning.cost) == ("ep_chl", "rate_mse")
    assert explicit.build_network().cost == "rate_mse"
    fg = load_params({"network": {"layers": [64, 16, 10], "topology": "feedforward"},
                      "learning": {"rule": "forward_gradient"}})
    assert fg.learning.cost == "rate_mse"
    # the stored parameter file says what ran
    assert 'rule = "ep_chl_classic"' in sym.to_toml() and 'cost = "state_mse"' in sym.to_toml()
    assert "learning.cost = 'mse'" in _err(BASE, ["learning.cost=mse"])


def test_bias_learning_rates_default_to_the_first_projection_in_and_can_be_overridden():
    p = load_params({**BASE, "learning": {"lr": [0.1, 0.05, 0.01], "bias_lr": {"o": 0.2}}})
    rates = p.learning_rates(p.build_network())
    assert rates["b_h1"] == 0.1 and rates["b_o"] == 0.2  # h1: x_to_h1's rate; o: overridden
    one = load_params({**BASE, "learning": {"lr": 0.1, "bias_lr": 0.001}})
    assert {k: v for k, v in one.learning_rates(one.build_network()).items() if k.startswith("b_")} == {
        "b_h1": 0.001, "b_o": 0.001}
    msg = _err({**BASE, "learning": {"bias_lr": {"h7": 0.1}}})
    assert "learning.bias_lr" in msg and "'h7'" in msg and "h1, o" in msg
    assert "learning rates must be > 0" in _err({**BASE, "learning": {"bias_lr": -0.1}})


def test_a_zero_rate_freezes_a_projection_but_not_every_one():
    ok = load_params({**BASE, "learning": {"lr": [0.0, 0.1, 0.1]}})
    assert ok.learning_rates(ok.build_network())["W_x_to_h1"] == 0.0
    assert "one > 0" in _err({**BASE, "learning": {"lr": 0.0}})
