"""The quick answers of ``confirmation`` agree with what confirming every outcome says."""

from __future__ import annotations

import random
import re

import pytest

from artifact_agent.confirmation import RULES_METRIC, FalcoView, _Digests, confirm, loads_expected, parse_rules_hashes
from falco_operator.artifacts import ArtifactKey, Delivered, Outcome, sha256_hex
from falco_operator.artifacts.model import State

STATES: list[State] = ["Installed", "Loaded", "Invalid", "Pending", "Failed", "Refused"]


def outcomes_and_view(chance: random.Random) -> tuple[list[Outcome], FalcoView]:
    outcomes: list[Outcome] = []
    loaded: dict[str, str] = {}
    for index in range(chance.randint(0, 8)):
        kind = chance.choice(["Rulesfile", "Rulesfile", "Config", "Plugin"])
        directory = {"Rulesfile": "rules", "Config": "config", "Plugin": "plugins"}[kind]
        files = {(directory, f"50-{index}-{part}.yaml"): chance.choice([b"a", b"b", b""])
                 for part in range(chance.choice([0, 1, 1, 2]))}  # fmt: skip
        for (_, name), data in files.items():
            if chance.random() < 0.8:
                loaded[name] = sha256_hex(data if chance.random() < 0.85 else b"other")
        state = chance.choice(STATES)
        outcomes.append(Outcome(ArtifactKey(kind, f"a{index}"), 1, state, Delivered(files)))
    return outcomes, FalcoView(reachable=chance.random() < 0.9, rules=loaded)


@pytest.mark.parametrize("seed", range(300))
def test_loads_expected_says_what_confirming_every_outcome_says(seed: int) -> None:
    outcomes, view = outcomes_and_view(random.Random(seed))
    confirmed = confirm(outcomes, view)
    expected = view.reachable and all(o.state != "Installed" or o.key.kind != "Rulesfile" for o in confirmed)
    assert loads_expected(outcomes, view) == expected


def test_digests_stay_right_when_the_memory_is_forgotten() -> None:
    digests = _Digests(max_bytes=10)
    chunks = [bytes([index]) * 4 for index in range(8)] + [b"x" * 20]
    for _ in range(3):
        for chunk in chunks:
            assert digests(chunk) == sha256_hex(chunk)
            assert digests(bytes(bytearray(chunk))) == sha256_hex(chunk)  # an equal copy


def rules_hashes_line_by_line(metrics: str) -> dict[str, str]:
    """The reading ``parse_rules_hashes`` makes, in its plainest form: every line's labels parsed."""
    found: dict[str, str] = {}
    for line in metrics.splitlines():
        match = re.match(r"^" + RULES_METRIC + r"\{(?P<labels>[^}]*)\}", line)
        if match:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match["labels"]))
            if "file_name" in labels and "sha256" in labels:
                found[labels["file_name"]] = labels["sha256"]
    return found


@pytest.mark.parametrize("seed", range(200))
def test_rules_hashes_are_read_as_line_by_line(seed: int) -> None:
    chance = random.Random(seed)
    pieces = ['file_name="a.yaml"', 'file_name="b \\"q\\".yaml"', 'sha256="ab12"', 'sha256="cd34"', 'hostname="n1"',
              "evt_source=x", 'file_name=""']  # fmt: skip
    lines = []
    for _ in range(chance.randint(0, 12)):
        labels = ",".join(chance.sample(pieces, chance.randint(0, 4)))
        metric = chance.choice([RULES_METRIC, RULES_METRIC, "falcosecurity_other", RULES_METRIC + "_x", "#"])
        lines.append(f"{metric}{{{labels}}} 1" if chance.random() < 0.9 else f"{metric} {labels}")
    text = chance.choice(["\n", "\r\n", "\n\n"]).join(lines)
    assert parse_rules_hashes(text) == rules_hashes_line_by_line(text)
