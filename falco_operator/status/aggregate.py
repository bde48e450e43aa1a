"""An artifact's status, a pure function of the artifact, the agents it targets and their reports.

Each agent (one per Falco pod) reports every artifact that applies to it. For the artifact's current generation
an agent is *installed* when it reports Installed or Loaded, *loaded* when Falco confirmed it (Loaded), *failed*
when it reports Invalid or Failed or when its Falco refused the reload that would load it (Refused: written, never
programmed), and waiting otherwise (no report yet, an older generation, Pending).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..artifacts.audience import Audience
from ..artifacts.oci import PULL_FAILURE_REASONS
from ..artifacts.setinvariant import DEPENDENCY_GONE, DEPENDENCY_PENDING, REQUIREMENTS_NOT_MET
from ..kube.conditions import with_transition_times

Json = dict[str, Any]
MAX_NAMED = 5
MAX_DETAIL_CHARS = 512
"""The longest message quoted from one agent's report; reports are the agents' words and can be long."""
MAX_REASON_CHARS = 128
MAX_CONDITION_CHARS = 4096
"""The longest condition message: a status the API server refuses (its CRD caps a message at 32 KiB) would stay
stale and be retried forever, so every message is cut well under that."""
DEPENDENCY_REASONS = {DEPENDENCY_GONE, DEPENDENCY_PENDING, REQUIREMENTS_NOT_MET}
"""Reasons an agent gives for an artifact it withholds because of the rest of the set (see the set invariant)."""
UNRESOLVED_REASONS = {"ConfigMapNotFound", "ConfigMapKeyNotFound", "Forbidden", "Unsupported", *PULL_FAILURE_REASONS}


@dataclass(frozen=True)
class Agent:
    """The agent of one scheduled Falco pod."""

    pod: str
    node: str
    node_labels: Mapping[str, str] = field(default_factory=dict)
    falco_labels: Mapping[str, str] = field(default_factory=dict)
    falco: str = ""
    """The name of the Falco the pod belongs to."""


@dataclass(frozen=True)
class Target:
    """What the status needs to know of an artifact."""

    kind: str
    name: str
    generation: int
    audience: Audience = field(default_factory=Audience)
    invalid: str | None = None
    """A problem the operator found in the artifact itself (inline content), before any agent."""
    config_map_sha256: str | None = None
    """The SHA-256 of the artifact's ConfigMap content now (None: no ConfigMap source, or none to read): an agent
    that reports other content from it has not installed the current content yet."""


def targeted(target: Target, agents: Iterable[Agent]) -> list[Agent]:
    return [agent for agent in agents if target.audience.includes(agent.falco, agent.falco_labels, agent.node_labels)]


def report_entry(report: Json | None, kind: str, name: str) -> Json | None:
    for item in ((report or {}).get("status") or {}).get("artifacts") or []:
        if item.get("kind") == kind and item.get("name") == name:
            return dict(item)
    return None


def named(nodes: Sequence[str]) -> str:
    """Up to five node names, then ``(+N more)``."""
    more = f" (+{len(nodes) - MAX_NAMED} more)" if len(nodes) > MAX_NAMED else ""
    return ", ".join(nodes[:MAX_NAMED]) + more


def grouped(nodes: Sequence[str], detail: Mapping[str, str]) -> str:
    """Nodes grouped by what they say, in order of first appearance: ``node1, node2, node3: msg; node4: other``.

    Up to five groups are shown, each naming up to five nodes; the rest are counted. A thousand nodes failing
    for one reason is one line, not a thousand repetitions of it.
    """
    groups: dict[str, list[str]] = {}
    for node in nodes:
        groups.setdefault(clipped(detail.get(node, ""), MAX_DETAIL_CHARS), []).append(node)
    shown = [f"{named(members)}: {text}" if text else named(members)
             for text, members in list(groups.items())[:MAX_NAMED]]  # fmt: skip
    hidden = sum(len(members) for members in list(groups.values())[MAX_NAMED:])
    more = f"; (+{hidden} more nodes with other messages)" if hidden else ""
    return "; ".join(shown) + more


def clipped(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying so."""
    return text if len(text) <= limit else text[: limit - 14] + " ... (clipped)"


def _condition(kind: str, ok: bool, reason: str, message: str, generation: int) -> Json:
    return {"type": kind, "status": "True" if ok else "False", "reason": clipped(reason, MAX_REASON_CHARS),
            "message": clipped(message, MAX_CONDITION_CHARS),
            "observedGeneration": generation}  # fmt: skip


def artifact_status(
    target: Target, agents: Iterable[Agent], reports: Mapping[str, Json], old: Json | None, now: str
) -> Json:
    """The full ``status`` (absent fields as None, so a merge patch removes them)."""
    generation = target.generation
    chosen = sorted(targeted(target, agents), key=lambda agent: agent.node)
    installed: list[str] = []
    loaded: list[str] = []
    failed: list[str] = []
    waiting: list[str] = []
    not_loaded: list[str] = []
    failures: dict[str, str] = {}
    refused: list[str] = []
    unresolved: Json | None = None
    stale: dict[str, str] = {}
    stale_reason: str | None = None
    invalid: Json | None = None
    digests = set()
    delivered: dict[str, list[str]] = {}  # installed OCI digests, and the nodes that deliver each
    signers: set[str | None] = set()  # who signed what the installed agents deliver (None: no policy there)
    older: list[str] = []
    unmet: dict[str, str] = {}
    unmet_reason: str | None = None
    for agent in chosen:
        entry = report_entry(reports.get(agent.pod), target.kind, target.name)
        if entry is None or entry.get("generation") != generation:
            waiting.append(agent.node)
            continue
        state = entry.get("state")
        if entry.get("reason") in DEPENDENCY_REASONS and state in ("Failed", "Pending"):
            unmet[agent.node] = str(entry.get("message") or entry.get("reason"))
            unmet_reason = unmet_reason or str(entry.get("reason"))
        if state in ("Installed", "Loaded", "Refused") and _older_config_map(target, entry):
            waiting.append(agent.node)  # this generation, but the ConfigMap changed since the agent wrote it
            older.append(agent.node)
            continue
        if entry.get("digest"):
            digests.add(str(entry["digest"]))
            if state in ("Installed", "Loaded"):
                delivered.setdefault(str(entry["digest"]), []).append(agent.node)
        if state in ("Installed", "Loaded"):
            signers.add(str(entry["signer"]) if entry.get("signer") else None)
            installed.append(agent.node)
            (loaded if state == "Loaded" else not_loaded).append(agent.node)
            problem = entry.get("refreshProblem")
            if isinstance(problem, dict):
                stale[agent.node] = str(problem.get("message") or problem.get("reason"))
                stale_reason = stale_reason or str(problem.get("reason") or "RefreshFailed")
        elif state == "Refused":
            failed.append(agent.node)
            refused.append(agent.node)
            failures[agent.node] = str(entry.get("message") or "Falco refused the reload that would load it")
        elif state in ("Invalid", "Failed"):
            failed.append(agent.node)
            failures[agent.node] = str(entry.get("message") or entry.get("reason") or state)
            if state == "Invalid" and invalid is None:
                invalid = entry
            if entry.get("reason") in UNRESOLVED_REASONS and unresolved is None:
                unresolved = entry
        else:
            waiting.append(agent.node)
    total = len(chosen)
    counts = f"{len(installed)}/{total} agents installed it, Falco loaded it on {len(loaded)}"
    if total == 0:
        message = "no Falco agent in this namespace is selected by this artifact"
        programmed = _condition("Programmed", False, "NoAgents", message, generation)
    elif failed:
        # Refused alone: Falco itself turned the content down on every failing node (its log says why).
        reason, verb = ("Refused", "Falco refused it on") if len(refused) == len(failed) else ("Failed", "failed on")
        programmed = _condition("Programmed", False, reason, f"{counts}; {verb} {grouped(failed, failures)}",
                                generation)  # fmt: skip
    elif waiting:
        note = f" ({named(older)}: an older content of the ConfigMap)" if older else ""
        programmed = _condition("Programmed", False, "Pending", f"{counts}; waiting for {named(waiting)}{note}",
                                generation)  # fmt: skip
    elif len(delivered) > 1:
        # A moved tag that some agents followed and others not yet: the Falcos do not run one content.
        spread = "; ".join(f"{named(nodes)}: {digest}" for digest, nodes in sorted(delivered.items()))
        programmed = _condition("Programmed", False, "Pending", f"{counts}; the agents deliver different digests "
                                f"of the source ({spread}); each follows a moved tag at its next refresh",
                                generation)  # fmt: skip
    else:
        suffix = f"; not loaded by Falco on {named(not_loaded)}" if not_loaded else ""
        programmed = _condition("Programmed", True, "Programmed", counts + suffix, generation)
    if target.invalid:
        valid = _condition("Valid", False, "InvalidContent", target.invalid, generation)
    elif invalid is not None:
        valid = _condition("Valid", False, str(invalid.get("reason") or "Invalid"), str(invalid.get("message")),
                           generation)  # fmt: skip
    else:
        valid = _condition("Valid", True, "Valid", "no agent found a problem in this generation", generation)
    if unresolved is not None:
        resolved = _condition("ResolvedRefs", False, str(unresolved.get("reason")), str(unresolved.get("message")),
                              generation)  # fmt: skip
    elif stale:
        # The content resolved before is still delivered (Programmed says so); the source no longer resolves.
        stale_nodes = sorted(stale)
        message = f"the source could not be resolved again on {len(stale_nodes)} node(s), which keep the content "
        message += f"resolved before: {grouped(stale_nodes, stale)}"
        resolved = _condition("ResolvedRefs", False, stale_reason or "RefreshFailed", message, generation)
    else:
        resolved = _condition("ResolvedRefs", True, "Resolved", "every source could be read", generation)
    if unmet:
        message = f"not written on {len(unmet)} node(s): {grouped(sorted(unmet), unmet)}"
        dependencies = _condition("DependenciesSatisfied", False, unmet_reason or "DependencyPending", message,
                                  generation)  # fmt: skip
    else:
        dependencies = _condition("DependenciesSatisfied", True, "Satisfied",
                                  "every macro, list and plugin it needs is there", generation)  # fmt: skip
    conditions = with_transition_times([resolved, programmed, valid, dependencies], (old or {}).get("conditions"),
                                       now)  # fmt: skip
    nodes = {"targeted": total, "installed": len(installed), "loaded": len(loaded), "failed": len(failed),
             "summary": f"{len(installed)}/{total}"}  # fmt: skip
    digest = next(iter(digests)) if len(digests) == 1 else None
    # The signer when every installed agent verified the same keys' signatures (None otherwise, removed by the patch).
    signer = next(iter(signers)) if len(signers) == 1 else None
    return {"observedGeneration": generation, "resolvedDigest": digest, "signer": signer, "nodes": nodes,
            "conditions": conditions}  # fmt: skip


def _older_config_map(target: Target, entry: Json) -> bool:
    """Whether the agent wrote other ConfigMap content than the ConfigMap holds now (an agent that does not say
    what it wrote, from before the field existed, is taken at its generation)."""
    written = entry.get("configMapSha256")
    return bool(target.config_map_sha256 and written and written != target.config_map_sha256)


WARNED_CONDITIONS = ("Valid", "ResolvedRefs", "DependenciesSatisfied")


def warnings_to_record(old: Json | None, new: Json) -> list[tuple[str, str]]:
    """(reason, note) of a Warning Event for each of ``Valid`` and ``ResolvedRefs`` that has just turned False,
    or is False now for another reason or message than before. An unchanged problem records nothing again, also
    after an operator restart (the live status remembers it), so a quiet cluster sees no Event."""
    before = {c.get("type"): c for c in (old or {}).get("conditions") or []}
    records = []
    for condition in new.get("conditions") or []:
        if condition.get("type") not in WARNED_CONDITIONS or condition.get("status") != "False":
            continue
        previous = before.get(condition["type"]) or {}
        if (previous.get("status"), previous.get("reason"), previous.get("message")) != (
            "False",
            condition.get("reason"),
            condition.get("message"),
        ):
            records.append((str(condition["reason"]), str(condition["message"])))
    return records


def same_status(live: Json | None, desired: Json) -> bool:
    """Whether writing ``desired`` would change nothing (fields set to None are absent on the server)."""
    return bool(_without_none(live or {}) == _without_none(desired))


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_none(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_none(item) for item in value]
    return value


ROLLING = ("Progressing", "Paused")
ROLLED_BACK = ("Halted", "Aborted")


def with_rollout(status: Json, rollout: Json | None, old: Json | None, now: str) -> Json:
    """``status`` with its ``rollout`` part, and Programmed told by the rollout while the current generation runs
    on a step's nodes only (``RollingOut``) or on none after a halt or an abort (``RolledBack``). The node counts
    keep their meaning: agents at the current generation."""
    result = {**status, "rollout": rollout}
    generation = status.get("observedGeneration")
    if rollout is None or rollout.get("candidateGeneration") != generation:
        return result
    phase, stable = rollout.get("phase"), rollout.get("stableGeneration")
    if phase in ROLLING:
        nodes = list(rollout.get("nodes") or [])
        others = max(0, int((status.get("nodes") or {}).get("targeted") or 0) - len(nodes))
        where = named(nodes) if nodes else "no node yet"
        message = (f"step {rollout.get('step')}/{rollout.get('steps')}: generation {generation} on {where}; "
                   f"generation {stable} on the other {others} node(s)")  # fmt: skip
        if phase == "Paused":
            message += " (paused)"
        programmed = _condition("Programmed", False, "RollingOut", message, int(generation or 0))
    elif phase in ROLLED_BACK:
        programmed = _condition("Programmed", False, "RolledBack", str(rollout.get("message") or phase),
                                int(generation or 0))  # fmt: skip
    else:
        return result
    (programmed,) = with_transition_times([programmed], (old or {}).get("conditions"), now)
    result["conditions"] = [programmed if c.get("type") == "Programmed" else c for c in status.get("conditions") or []]
    return result
