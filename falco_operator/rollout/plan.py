"""The rollout state machine and node choice: a pure function of the artifact's rollout, its live
``status.rollout``, its generation, the targeted nodes, what their agents reported, the annotation and the time.

All the state is in ``status.rollout``, so an operator restarted mid-rollout takes up where it was: the node
choice is a ranking by a hash of (artifact uid, candidate generation, node), the same in every process.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..api.plain import ROLLOUT_ANNOTATION
from ..api.rollout import Rollout, RolloutStatus, RolloutStep
from ..artifacts.messages import capped

Json = dict[str, Any]
FAILED_STATES = ("Failed", "Refused", "Invalid")
MAX_NAMED = 5
MAX_FAILURE_CHARS = 2048
"""A halt's message quotes a report, which the operator does not trust to be short (an agent clips its own at
1,024 characters; a report written by other hands need not): status.rollout.message and the Event stay bounded."""
PAUSE = "pause"
ABORT = "abort"


@dataclass(frozen=True)
class Inputs:
    """What the state machine needs of one artifact."""

    kind: str
    rollout: Rollout | None
    """``spec.rollout``."""
    uid: str
    generation: int
    live: RolloutStatus | None
    """``status.rollout`` as it is now."""
    targeted: frozenset[str]
    """The nodes of the agents the artifact targets."""
    entries: Mapping[str, Sequence[Json]] = field(default_factory=dict)
    """Per node, the report entries of this artifact by the agents on that node."""
    annotation: str | None = None
    programmed: bool = False
    """Whether the current generation is Programmed on every targeted node (the first generation's snapshot)."""
    snapshot: str | None = None
    """The name a promotion's snapshot gets."""
    now: str = ""


@dataclass(frozen=True)
class Decision:
    status: RolloutStatus | None
    """The desired ``status.rollout`` (None: none)."""
    promote: int | None = None
    """A generation to snapshot before the status is written (it becomes the stable one)."""
    events: tuple[tuple[str, str, str], ...] = ()
    """(type, reason, note) of the Events to record once the status is written."""
    results: tuple[str, ...] = ()
    """``falco_operator_rollouts`` results to count once the status is written."""

    @property
    def running(self) -> bool:
        """A step waits for verdicts (the reconciler looks again after a while even without news)."""
        return self.status is not None and self.status.phase in ("Progressing", "Paused")


def ranked(uid: str, generation: int, nodes: Iterable[str]) -> list[str]:
    """``nodes`` in the order a rollout of ``generation`` takes them."""
    return sorted(nodes, key=lambda node: (hashlib.sha256(f"{uid}/{generation}/{node}".encode()).hexdigest(), node))


def wanted(step: RolloutStep, targeted: int) -> int:
    """How many nodes a step runs the candidate on, out of ``targeted``."""
    count = step.nodes if step.nodes is not None else -(-(step.percent or 0) * targeted // 100)
    return min(count, targeted)


def choose(uid: str, generation: int, step: RolloutStep, targeted: frozenset[str], kept: Sequence[str]) -> list[str]:
    """The nodes of a step that starts: those already chosen (still targeted), then the next ones by rank."""
    chosen = [node for node in kept if node in targeted]
    missing = wanted(step, len(targeted)) - len(chosen)
    extra = [node for node in ranked(uid, generation, targeted) if node not in chosen][: max(0, missing)]
    return sorted(chosen + extra)


def named(nodes: Sequence[str]) -> str:
    more = f" (+{len(nodes) - MAX_NAMED} more)" if len(nodes) > MAX_NAMED else ""
    return ", ".join(nodes[:MAX_NAMED]) + more


def failure(node: str, entries: Sequence[Json], candidate: int) -> str | None:
    """``node: Check: figures`` when an agent of ``node`` failed the candidate, else None."""
    for entry in entries:
        analysis = entry.get("analysis") or {}
        if analysis.get("generation") == candidate and analysis.get("result") == "Failed":
            return capped(
                f"{node}: {analysis.get('check') or 'Analysis'}: {analysis.get('message') or 'failed'}",
                MAX_FAILURE_CHARS,
            )
        if entry.get("generation") == candidate and entry.get("state") in FAILED_STATES:
            return capped(
                f"{node}: {entry.get('state')}: {entry.get('message') or entry.get('reason') or 'failed'}",
                MAX_FAILURE_CHARS,
            )
    return None


def passed(entries: Sequence[Json], candidate: int) -> bool:
    """Every agent of a node reported the candidate Passed (a node without an agent's report has not)."""
    return bool(entries) and all(
        (entry.get("analysis") or {}).get("generation") == candidate
        and (entry.get("analysis") or {}).get("result") == "Passed"
        for entry in entries
    )


def advance(inputs: Inputs) -> Decision:
    """The next ``status.rollout``, and what to record about the change."""
    live, generation = inputs.live, inputs.generation
    if inputs.rollout is None:
        return Decision(None)
    if live is None:
        # The first generation with a rollout goes everywhere at once; once programmed it is the stable one.
        if inputs.programmed:
            return _promoted(inputs, generation, None, first=True)
        return Decision(None)
    if live.phase == "Succeeded" and live.stable_generation == generation:
        if live.snapshot is None and inputs.programmed:
            return _promoted(inputs, generation, live, first=True)  # over the cap before: perhaps no longer
        return Decision(live)
    if generation != live.candidate_generation:
        return _started(inputs, live)
    if live.phase in ("Halted", "Aborted", "Succeeded"):
        return Decision(live)
    return _stepped(inputs, live)


def _started(inputs: Inputs, live: RolloutStatus) -> Decision:
    """A new generation: a new rollout from the stable one (superseding one still running)."""
    assert inputs.rollout is not None
    results: tuple[str, ...] = ("superseded",) if live.phase in ("Progressing", "Paused") else ()
    if live.snapshot is None or live.stable_generation is None:
        # No stable content to go back to (over the snapshot cap): the change goes everywhere at once.
        status = RolloutStatus(phase="Succeeded", stable_generation=inputs.generation,
                               message=live.message)  # fmt: skip
        return Decision(status, results=results)
    step = inputs.rollout.steps[0]
    nodes = choose(inputs.uid, inputs.generation, step, inputs.targeted, ())
    status = RolloutStatus(
        phase="Progressing", stable_generation=live.stable_generation, candidate_generation=inputs.generation,
        step=1, steps=len(inputs.rollout.steps), nodes=nodes, step_started_at=inputs.now, snapshot=live.snapshot,
        message=_waiting_message(inputs.rollout, 1, inputs.generation, nodes),
    )  # fmt: skip
    note = f"generation {inputs.generation}: step 1/{status.steps} on {named(nodes) or 'no node yet'}"
    decision = Decision(status, events=(("Normal", "RolloutStep", note),), results=results)
    return _annotated(inputs, decision)


def _stepped(inputs: Inputs, live: RolloutStatus) -> Decision:
    """A rollout of the current generation that is Progressing or Paused."""
    assert inputs.rollout is not None
    candidate = inputs.generation
    nodes = [node for node in live.nodes or [] if node in inputs.targeted]  # nodes that left are no longer chosen
    for node in nodes:
        failed = failure(node, inputs.entries.get(node, ()), candidate)
        if failed is not None:
            status = _final(live, "Halted", f"halted at step {live.step}/{live.steps}: {failed}")
            return Decision(status, events=(("Warning", "RolloutHalted", status.message or ""),), results=("halted",))
    current = live.model_copy(update={"nodes": nodes})
    decision = _annotated(inputs, Decision(current))
    if decision.status is not current or inputs.annotation == PAUSE:
        return decision
    steps = inputs.rollout.steps
    step = min(max(live.step or 1, 1), len(steps))
    update: Json = {"phase": "Progressing"}
    if live.phase == "Paused":
        update["message"] = _waiting_message(inputs.rollout, step, candidate, nodes)
    if not nodes and inputs.targeted:
        # Every node of the step left: the step starts over on other nodes.
        nodes = choose(inputs.uid, candidate, steps[step - 1], inputs.targeted, ())
        update |= {"nodes": nodes, "step_started_at": inputs.now,
                   "message": _waiting_message(inputs.rollout, step, candidate, nodes)}  # fmt: skip
        return Decision(current.model_copy(update=update))
    if nodes and all(passed(inputs.entries.get(node, ()), candidate) for node in nodes):
        if step >= len(steps):
            return _promoted(inputs, candidate, live, first=False)
        nodes = choose(inputs.uid, candidate, steps[step], inputs.targeted, nodes)
        update |= {"step": step + 1, "nodes": nodes, "step_started_at": inputs.now,
                   "message": _waiting_message(inputs.rollout, step + 1, candidate, nodes)}  # fmt: skip
        note = f"generation {candidate}: step {step + 1}/{len(steps)} on {named(nodes)}"
        return Decision(current.model_copy(update=update), events=(("Normal", "RolloutStep", note),))
    return Decision(current.model_copy(update=update))


def _annotated(inputs: Inputs, decision: Decision) -> Decision:
    """The annotation's word on a running rollout: ``abort`` ends it, ``pause`` holds it at its step."""
    status = decision.status
    if status is None or status.phase not in ("Progressing", "Paused"):
        return decision
    if inputs.annotation == ABORT:
        final = _final(status, "Aborted", f"aborted at step {status.step}/{status.steps} by the annotation "
                       f"{ROLLOUT_ANNOTATION}={ABORT}")  # fmt: skip
        return Decision(final, events=(*decision.events, ("Normal", "RolloutAborted", final.message or "")),
                        results=(*decision.results, "aborted"))  # fmt: skip
    if inputs.annotation == PAUSE and status.phase != "Paused":
        message = f"paused at step {status.step}/{status.steps} by the annotation {ROLLOUT_ANNOTATION}={PAUSE}"
        return Decision(status.model_copy(update={"phase": "Paused", "message": message}), events=decision.events,
                        results=decision.results)  # fmt: skip
    return decision


def _final(live: RolloutStatus, phase: Any, message: str) -> RolloutStatus:
    """Halted or Aborted: no node runs the candidate any more (every node swaps back to the stable one)."""
    generation = live.stable_generation
    return live.model_copy(update={"phase": phase, "nodes": None, "step_started_at": None,
                                   "message": f"{message}; every node runs generation {generation}"})  # fmt: skip


def _promoted(inputs: Inputs, generation: int, live: RolloutStatus | None, *, first: bool) -> Decision:
    status = RolloutStatus(phase="Succeeded", stable_generation=generation, snapshot=inputs.snapshot)
    if first:
        return Decision(status, promote=generation)
    note = f"generation {generation} passed {live.steps if live else 0} step(s) and is the stable one"
    return Decision(status, promote=generation, events=(("Normal", "RolloutSucceeded", note),),
                    results=("succeeded",))  # fmt: skip


def _waiting_message(rollout: Rollout, step: int, candidate: int, nodes: Sequence[str]) -> str:
    where = named(nodes) if nodes else "no node (none targeted)"
    return (f"step {step}/{len(rollout.steps)}: generation {candidate} on {where}, waiting for {len(nodes)} "
            f"analysis verdict(s) of {rollout.analysis.duration}")  # fmt: skip


def observed(
    agents: Iterable[tuple[str, str]], reports: Mapping[str, Json], kind: str, name: str
) -> dict[str, list[Json]]:
    """Per node, the report entry about (``kind``, ``name``) of each agent (pod, node) on it (``{}`` for an agent
    that has not reported it)."""
    entries: dict[str, list[Json]] = {}
    for pod, node in agents:
        items = ((reports.get(pod) or {}).get("status") or {}).get("artifacts") or []
        found = next((item for item in items if item.get("kind") == kind and item.get("name") == name), None)
        entries.setdefault(node, []).append(dict(found) if found else {})
    return entries


def annotation_of(raw: Json) -> str | None:
    value = ((raw.get("metadata") or {}).get("annotations") or {}).get(ROLLOUT_ANNOTATION)
    return str(value).strip().lower() if value else None
