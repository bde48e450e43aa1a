"""What an agent's pass reuses from the pass before: artifact models by resourceVersion, condition trees by text."""

from __future__ import annotations

from typing import Any

import pytest

from artifact_agent.selection import ParsedArtifacts, select
from falco_operator.artifacts import parse_artifact
from falco_operator.artifacts.rules import ConditionError, parse_condition
from falco_operator.artifacts.rules.condition import _ParsedConditions

Json = dict[str, Any]


def rulesfile(name: str, version: str | None, rules: str, uid: str | None = "u-1") -> Json:
    metadata: Json = {"name": name, "namespace": "ns", "generation": 1}
    if uid is not None:
        metadata["uid"] = uid
    if version is not None:
        metadata["resourceVersion"] = version
    return {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Rulesfile", "metadata": metadata,
            "spec": {"inlineRules": rules}}  # fmt: skip


def test_an_unchanged_object_is_read_once() -> None:
    parsed = ParsedArtifacts()
    first = parsed.read(rulesfile("a", "10", "- list: x\n  items: []\n"))
    again = parsed.read(rulesfile("a", "10", "- list: x\n  items: []\n"))
    assert first is not None
    assert again is first


def test_a_new_resource_version_is_read_again() -> None:
    parsed = ParsedArtifacts()
    before = parsed.read(rulesfile("a", "10", "- list: x\n  items: []\n"))
    after = parsed.read(rulesfile("a", "11", "- list: y\n  items: []\n"))
    assert before is not None
    assert after is not None
    assert after == parse_artifact(rulesfile("a", "11", "- list: y\n  items: []\n"))
    assert after != before


def test_objects_without_uid_or_version_are_not_kept() -> None:
    parsed = ParsedArtifacts()
    one = parsed.read(rulesfile("a", None, "- list: x\n  items: []\n"))
    two = parsed.read(rulesfile("a", None, "- list: x\n  items: []\n"))
    assert one == two
    assert one is not two
    assert parsed.read(rulesfile("a", "1", "", uid=None)) is not parsed.read(rulesfile("a", "1", "", uid=None))


def test_unreadable_objects_stay_unreadable_and_capacity_holds() -> None:
    parsed = ParsedArtifacts(capacity=2)
    broken = rulesfile("a", "1", "x")
    broken["spec"] = "not a mapping"
    chosen, unreadable = select([broken], {}, {}, "falco", parsed=parsed)
    assert (chosen, unreadable) == ([], [broken])
    kept = [parsed.read(rulesfile(f"r{index}", "1", "", uid=f"u{index}")) for index in range(3)]
    assert parsed.read(rulesfile("r2", "1", "", uid="u2")) is kept[2]
    assert parsed.read(rulesfile("r0", "1", "", uid="u0")) is not kept[0]  # evicted, read again


def test_a_condition_is_parsed_once() -> None:
    text = "evt.type = open and proc.name in (cat, ls) and not fd.name startswith /proc"
    assert parse_condition(text) is parse_condition(text)


def test_a_condition_that_does_not_parse_raises_every_time() -> None:
    for _ in range(2):
        with pytest.raises(ConditionError):
            parse_condition("evt.type = open and")


def test_the_condition_cache_keeps_to_its_budget() -> None:
    cache = _ParsedConditions()
    tree = parse_condition("evt.num > 0")
    cache.put("x" * (cache.MAX_ENTRY_CHARS + 1), tree)
    assert cache.get("x" * (cache.MAX_ENTRY_CHARS + 1)) is None
    size = cache.MAX_ENTRY_CHARS
    texts = [f"{index:04d}".ljust(size, "x") for index in range(cache.MAX_TEXT_CHARS // size + 1)]
    for text in texts:
        cache.put(text, tree)
    assert cache.get(texts[0]) is None
    assert cache.get(texts[-1]) is tree
