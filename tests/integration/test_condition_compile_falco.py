"""Conditions that parse but that Falco refuses when it compiles them (issue 23, case 10), and their neighbours that
it loads: the validator gives real Falco's verdict on each (``falco -V``), and for a refusal the same reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e.falco import FalcoBinaries, validate_rules
from falco_operator.artifacts import parse_rules
from falco_operator.artifacts.rules import RulesFile, check_rule_set

# (condition after "evt.type = open and ", a word of Falco's reason that ours names too, or None: Falco loads it)
CASES = [
    ('proc.name regex "a(b"', "missing )"),
    ('proc.name regex "[z-a]"', "invalid character class range"),
    ('proc.name regex "(?i)bash"', "no argument for repetition operator"),
    ('proc.name regex "\\\\w+"', "invalid escape sequence"),
    ('proc.name regex oneof ("ok", "a(b")', "missing )"),
    ('proc.name regex "^ba.*h$"', None),
    ('proc.name regex "[[:alpha:]]+"', None),
    ("tolower(proc.pid) = 1", "INT64"),
    ("proc.name = toupper(proc.pid)", "INT64"),
    ("b64(fd.sip) = x", "IPADDR"),
    ("basename(evt.buffer) = x", "BYTEBUF"),
    ("len(user.uid) = 0", "UINT32"),
    ("tolower(len(proc.name)) = 3", "UINT64"),
    ("tolower(proc.aname) = bash", "does not support transformers"),
    ("len(fd.cnet) > 1", "does not support transformers"),
    ("tolower(proc.cmdline) contains bash", None),
    ("b64(evt.buffer) = x", None),
    ("len(tolower(proc.name)) = 3", None),
    ("tolower(basename(proc.exepath)) = bash", None),
]


@pytest.mark.parametrize(("condition", "reason"), CASES)
def test_compile_checks_give_falcos_verdict(
    condition: str, reason: str | None, falco_binaries: FalcoBinaries, tmp_path: Path
) -> None:
    text = f"- rule: r\n  desc: d\n  condition: 'evt.type = open and {condition}'\n  output: o\n  priority: WARNING\n"
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    verdict = validate_rules([path], binaries=falco_binaries)
    falcos = "; ".join(str(error.get("message")) for error in verdict.errors())
    errors = [f.message for f in check_rule_set([RulesFile(path.name, parse_rules(text.encode()), text)])
              if f.severity == "error"]  # fmt: skip
    assert verdict.successful is (reason is None), falcos
    assert (errors == []) is (reason is None), errors
    if reason is not None:
        assert reason in falcos
        assert reason in errors[0]
