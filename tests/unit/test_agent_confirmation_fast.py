"""The quick answers of ``confirmation`` agree with what confirming every outcome says."""

from __future__ import annotations

import random

import pytest

from artifact_agent.confirmation import FalcoView, _Digests, confirm, loads_expected
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
