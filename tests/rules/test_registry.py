"""The rule registry: names, tables and defaults come from the rules themselves."""

import pytest

from hebbsim.data.params import ParameterError, load_params
from hebbsim.rules import RULES, Rule, make_rule, register
from hebbsim.rules.contrastive import ContrastiveRule

BASE = {"network": {"layers": [64, 12, 10], "topology": "feedforward"}}


def test_every_shipped_rule_is_registered_under_its_own_name():
    assert set(RULES) >= {"ep_chl", "ep_chl_classic", "forward_gradient", "fa", "dfa", "drtp", "fa_strategy"}
    for name, cls in RULES.items():
        assert issubclass(cls, Rule) and cls.name == name
        assert cls.__module__ == f"hebbsim.rules.{name}"  # one module per rule


def test_a_name_is_registered_once():
    with pytest.raises(ValueError, match="already registered"):
        register(type("Again", (ContrastiveRule,), {"name": "ep_chl"}))


def test_a_rules_table_is_validated_by_its_own_model_and_refused_under_another_rule():
    cfg = load_params({**BASE, "learning": {"rule": "forward_gradient", "forward_gradient": {"epsilon": 0.05}}})
    rule = make_rule(cfg, cfg.build_network())
    assert rule.options.epsilon == 0.05 and rule.plan.epsilon == 0.05
    with pytest.raises(ParameterError, match="learning.forward_gradient is given but learning.rule = 'ep_chl'"):
        load_params({**BASE, "learning": {"rule": "ep_chl", "forward_gradient": {"epsilon": 0.05}}})
    with pytest.raises(ParameterError, match="learning.rule = 'fa_typo': not a learning rule; use one of bp, dfa, drtp, ep_chl"):
        load_params({**BASE, "learning": {"rule": "fa_typo"}})


def test_phases_neuron_and_cost_defaults_are_the_rules():
    ep = load_params({**BASE, "dynamics": {"symmetric_nudging": True}})
    assert ep.phases == ("free", "nudged", "nudged_minus") and ep.network.neuron == "gated"
    fg = load_params({**BASE, "learning": {"rule": "forward_gradient"}})
    # a forward_gradient run records only what it runs: no nudged phase at a β it never uses
    assert fg.phases == ("free",) and fg.network.neuron == "additive" and fg.learning.cost == "rate_mse"
    with pytest.raises(ParameterError, match="records free"):
        load_params({**BASE, "learning": {"rule": "forward_gradient"}, "record": {"phases": ["nudged"]}})
