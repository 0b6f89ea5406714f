"""Learning rules as plug-ins: one module per rule, registered by name.

``RULES`` maps every name a parameter file may give as ``learning.rule`` to its class
(:class:`hebbsim.rules.base.Rule`). Adding a rule is one module plus its tests
(docs/rules.md): subclass ``Rule``, decorate it with :func:`register`, and import the module
below.
"""

from __future__ import annotations

from .base import BatchResult, Rule, RuleState

RULES: dict[str, type[Rule]] = {}


def register(cls: type[Rule]) -> type[Rule]:
    """Class decorator: make ``cls`` available as ``learning.rule = cls.name``."""
    if cls.name in RULES:
        raise ValueError(f"a learning rule named {cls.name!r} is already registered")
    RULES[cls.name] = cls
    return cls


def rule_class(name: str) -> type[Rule]:
    try:
        return RULES[name]
    except KeyError:
        raise ValueError(f"learning.rule = {name!r} is not allowed; use one of {', '.join(RULES)}") from None


def make_rule(cfg, net) -> Rule:
    """The rule ``cfg.learning.rule`` names, set up for ``net``."""
    return rule_class(cfg.learning.rule)(cfg, net)


# the rules hebbsim ships (each module registers itself)
from . import bp, dfa, drtp, ep_chl, ep_chl_classic, f3, fa, fa_strategy, forward_gradient, node_perturbation, sigprop  # noqa: E402,F401,E501

RULE_NAMES = tuple(RULES)

__all__ = ["RULES", "RULE_NAMES", "BatchResult", "Rule", "RuleState", "make_rule", "register", "rule_class"]
