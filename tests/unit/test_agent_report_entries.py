"""The report's entries kept from pass to pass: the status built with them is the one built from scratch."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from artifact_agent.report import ReportedEntries, report_status
from falco_operator.api.plain_report import FalcoProbe, ReportedAnalysis
from falco_operator.artifacts import ArtifactKey, Delivered, Outcome, Unavailable
from falco_operator.artifacts.model import State

DIRECTORIES = {"rules": Path("/etc/falco/rules.d"), "config": Path("/etc/falco/config.d"),
               "plugins": Path("/var/lib/falco-artifacts/plugins")}  # fmt: skip
KINDS = {"Rulesfile": "rules", "Config": "config", "Plugin": "plugins"}
STATES: list[State] = ["Installed", "Loaded", "Invalid", "Pending", "Failed", "Refused"]


class Sequence:
    """Passes of an agent: each changes a few artifacts' outcomes (or nothing), sometimes one's signer, refresh
    problem or verdict; artifacts come and go."""

    def __init__(self, seed: int) -> None:
        self.chance = random.Random(seed)
        self.outcomes: dict[ArtifactKey, Outcome] = {}
        self.problems: dict[ArtifactKey, Unavailable] = {}
        self.signers: dict[ArtifactKey, tuple[str, str]] = {}
        self.analyses: dict[ArtifactKey, ReportedAnalysis] = {}
        for _ in range(self.chance.randint(1, 12)):
            self.change()

    def outcome(self, key: ArtifactKey) -> Outcome:
        chance = self.chance
        directory = KINDS[key.kind]
        # New bytes objects with the same content half of the time: entries are compared by content.
        content = chance.choice([b"a: 1\n", b"b: 2\n", bytes(bytearray(b"a: 1\n"))])
        files = {(directory, f"50-01-{key.name}-{chance.choice(['inline', 'configmap'])}.yaml"): content}
        delivered = Delivered(files if chance.random() < 0.8 else {}, {"name": key.name} if key.kind == "Plugin"
                              else None, chance.choice([None, "sha256:" + "e" * 64, "sha256:" + "f" * 64]))  # fmt: skip
        reason, message = chance.choice([None, "Loaded", "NotLoaded"]), chance.choice([None, "ok", "m" * 1500])
        return Outcome(key, chance.choice([None, 1, 2]), chance.choice(STATES), delivered, reason, message)

    def change(self) -> None:
        chance = self.chance
        key = ArtifactKey(chance.choice(list(KINDS)), f"a{chance.randint(0, 15)}")
        what = chance.random()
        if what < 0.1:
            self.outcomes.pop(key, None)
        elif what < 0.7:
            self.outcomes[key] = self.outcome(key)
        elif what < 0.8:
            self.problems[key] = Unavailable("Pending", "Unreachable", chance.choice(["down", "x" * 2000]))
        elif what < 0.9:
            self.signers[key] = (chance.choice(["sha256:" + "e" * 64, "sha256:other"]), "sha256:f1")
        else:
            self.analyses[key] = ReportedAnalysis(generation=chance.choice([1, 2]),
                                                  result=chance.choice(["Passed", "Failed"]),
                                                  message=chance.choice([None, "m" * 2000]))  # fmt: skip

    def status(self, entries: ReportedEntries | None, falco: FalcoProbe | None) -> dict[str, object]:
        outcomes = list(self.outcomes.values())
        self.chance.shuffle(outcomes)
        return report_status(outcomes, DIRECTORIES, falco, self.problems, None, self.signers, self.analyses,
                             entries=entries)  # fmt: skip


@pytest.mark.parametrize("seed", range(25))
def test_the_status_built_with_kept_entries_is_the_status_built_from_scratch(seed: int) -> None:
    passes = Sequence(seed)
    entries = ReportedEntries()
    for _ in range(60):
        for _ in range(passes.chance.choice([0, 0, 1, 1, 2, 5])):
            passes.change()
        falco = passes.chance.choice([None, FalcoProbe(reachable=True, version="0.44.1")])
        kept = passes.status(entries, falco)
        fresh = passes.status(None, falco)
        assert json.dumps(kept) == json.dumps(fresh)  # the same bytes written, keys in the same order


def test_an_unchanged_outcome_reuses_its_entry_and_a_changed_one_does_not() -> None:
    key = ArtifactKey("Rulesfile", "r")
    installed = Outcome(key, 1, "Installed", Delivered({("rules", "50-01-r-inline.yaml"): b"a: 1\n"}))
    entries = ReportedEntries()
    first = report_status([installed], DIRECTORIES, entries=entries)["artifacts"]
    again = report_status([installed], DIRECTORIES, entries=entries)["artifacts"]
    loaded = report_status([Outcome(key, 1, "Loaded", installed.delivered)], DIRECTORIES, entries=entries)
    assert again[0] is first[0]
    assert loaded["artifacts"][0]["state"] == "Loaded"
