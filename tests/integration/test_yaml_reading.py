"""Where the two YAML readers of ``artifacts/yamldoc.py`` differ, real Falco decides which one is right."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e.falco import FalcoBinaries, validate_rules
from falco_operator.artifacts import parse_rules
from falco_operator.artifacts.rules import RulesFile, check_rule_set
from falco_operator.artifacts.yamldoc import YamlProblem, round_trip_load

BLANK_LINE_WITH_SPACES = (
    "- macro: m\n  condition: >\n  \n    (fd.name in (a, b) or\n      fd.directory in (/etc))\n"
    "- rule: r\n  desc: d\n  condition: evt.type = open and m\n  output: o\n  priority: INFO\n"
)


def test_a_block_scalar_that_starts_with_a_blank_line_of_spaces_loads_as_in_falco(
    falco_binaries: FalcoBinaries, tmp_path: Path
) -> None:
    """ruamel refuses it ("unreadable"); libyaml, like Falco's yaml-cpp, reads it."""
    path = tmp_path / "rules.yaml"
    path.write_text(BLANK_LINE_WITH_SPACES)
    assert validate_rules([path], binaries=falco_binaries).successful
    with pytest.raises(YamlProblem, match="unreadable"):
        round_trip_load(BLANK_LINE_WITH_SPACES)
    items = parse_rules(BLANK_LINE_WITH_SPACES.encode())
    assert items[0]["condition"] == "\n(fd.name in (a, b) or\n  fd.directory in (/etc))\n"
    assert [f for f in check_rule_set([RulesFile("rules.yaml", items)]) if f.severity == "error"] == []
