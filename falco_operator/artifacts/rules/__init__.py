"""Falco rules validated as Falco loads them: the condition language, references across files, fields.

One code path for the agent (before it writes), the operator (``Valid`` on a Rulesfile) and ``falco-operator
lint`` (users' pipelines).
"""

from .condition import ConditionError, Node, Position, parse_condition
from .fields import FieldCatalogue
from .ruleset import Finding, LoadContext, RulesFile, check_rule_set
from .setcheck import rules_set_check, standalone_problem

__all__ = [
    "ConditionError",
    "FieldCatalogue",
    "Finding",
    "LoadContext",
    "Node",
    "Position",
    "RulesFile",
    "check_rule_set",
    "parse_condition",
    "rules_set_check",
    "standalone_problem",
]
