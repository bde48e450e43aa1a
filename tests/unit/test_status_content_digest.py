"""The status matches the agents' reports by content, not by generation alone (pure): a ConfigMap edited since an
agent wrote it, and a moved tag some agents followed and others not, keep an artifact from being Programmed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from artifact_agent.report import report_status
from falco_operator.api.plain import Rulesfile
from falco_operator.artifacts import Content, Medium, artifact_key, plan, sha256_hex
from falco_operator.status import Agent, Target, artifact_status

NOW = "2026-12-06T00:00:00Z"
OLD, NEW = b"- list: a\n  items: [x]\n", b"- list: a\n  items: [x, y]\n"


def entry(state: str = "Installed", **extra: Any) -> dict[str, Any]:
    return {"kind": "Rulesfile", "name": "rules", "generation": 1, "state": state, **extra}


def reports(*entries: dict[str, Any]) -> dict[str, Any]:
    return {f"pod-{index}": {"status": {"artifacts": [item]}} for index, item in enumerate(entries, start=1)}


AGENTS = [Agent(f"pod-{index}", f"node{index}") for index in (1, 2, 3)]


def programmed(status: dict[str, Any]) -> tuple[str, str, str]:
    found = next(c for c in status["conditions"] if c["type"] == "Programmed")
    return found["status"], found["reason"], found["message"]


def test_an_agent_that_wrote_an_older_configmap_content_has_not_installed_the_current_one() -> None:
    target = Target("Rulesfile", "rules", 1, config_map_sha256=sha256_hex(NEW))
    status = artifact_status(target, AGENTS, reports(
        entry("Loaded", configMapSha256=sha256_hex(NEW)), entry(configMapSha256=sha256_hex(NEW)),
        entry("Loaded", configMapSha256=sha256_hex(OLD)),  # a stopped agent: same generation, older content
    ), None, NOW)  # fmt: skip
    assert status["nodes"] == {"targeted": 3, "installed": 2, "loaded": 1, "failed": 0, "summary": "2/3"}
    assert programmed(status) == ("False", "Pending", "2/3 agents installed it, Falco loaded it on 1; waiting for "
                                  "node3 (node3: an older content of the ConfigMap)")  # fmt: skip
    # An agent that does not say what it wrote (from before the field) is taken at its generation.
    legacy = artifact_status(target, AGENTS, reports(*[entry() for _ in AGENTS]), None, NOW)
    assert programmed(legacy)[:2] == ("True", "Programmed")
    # Without a ConfigMap to compare with (inline or OCI content, or none could be read), the generation decides.
    inline = artifact_status(Target("Rulesfile", "rules", 1), AGENTS, reports(
        *[entry(configMapSha256=sha256_hex(OLD)) for _ in AGENTS]), None, NOW)  # fmt: skip
    assert programmed(inline)[:2] == ("True", "Programmed")


def test_agents_that_deliver_different_digests_of_one_generation_are_not_programmed() -> None:
    old, new = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    status = artifact_status(Target("Rulesfile", "rules", 1), AGENTS, reports(
        entry("Loaded", digest=new), entry("Loaded", digest=old), entry("Loaded", digest=new)), None, NOW)  # fmt: skip
    assert programmed(status)[:2] == ("False", "Pending")
    assert f"different digests of the source (node2: {old}; node1, node3: {new})" in programmed(status)[2]
    assert status["resolvedDigest"] is None
    same = artifact_status(Target("Rulesfile", "rules", 1), AGENTS, reports(
        *[entry("Loaded", digest=new) for _ in AGENTS]), None, NOW)  # fmt: skip
    assert (programmed(same)[0], same["resolvedDigest"]) == ("True", new)


def test_the_agent_reports_the_sha256_of_the_configmap_content_it_wrote() -> None:
    spec = {"configMapRef": {"name": "cm"}, "inlineRules": OLD.decode()}
    artifact = Rulesfile.from_wire({"metadata": {"name": "rules", "generation": 1}, "spec": spec})
    outcomes = plan([artifact], {(artifact_key(artifact), Medium.CONFIGMAP): Content(NEW)}, {}, plugins_dir="/p")
    status = report_status(outcomes.outcomes, {"rules": Path("/r"), "config": Path("/c"), "plugins": Path("/p")})
    (reported,) = status["artifacts"]
    assert reported["configMapSha256"] == sha256_hex(NEW)
    assert reported["sha256"] != sha256_hex(NEW)  # two files: the ConfigMap's and the inline one
