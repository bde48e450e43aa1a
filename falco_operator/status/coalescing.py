"""When the status reconciler writes an artifact's status: when the change it follows has settled, not on a timer.

Reports reconcile an artifact soon after they arrive (a short batching delay in the work queue; at once when the
report is the last one awaited), and each reconcile computes the whole status, but a status that differs from the
live one is written only when

- its ``observedGeneration`` changes (the new generation seen: written at once), or its ``rollout`` does (the
  agents read which nodes run the candidate from it: written at once),
- it has settled: every targeted agent reported the current generation in a final state (Loaded; Invalid, Failed,
  Refused; Installed with nothing more to expect from Falco, as for a Config),
- a failure shows that the live status does not (a condition turns False for another reason than waiting:
  ``Failed``, ``Refused``, ``Valid=False``, ...): written ``WINDOW`` after it was first seen, with the failures
  that came meanwhile,
- or the change progressed without settling: its first progress write ``WINDOW`` after the first unwritten
  difference, any later one ``PROGRESS_INTERVAL`` after the previous write.

A change therefore costs 2 writes when it settles within ``WINDOW`` of its first report (the new generation;
settled), 3 when it takes longer, however many agents report and however long they take to, up to
``PROGRESS_INTERVAL``; a change still unsettled after that (a stalled node, a fleet whose reports the API server
spreads over minutes) adds one write a minute at most, and a change whose status stops changing adds none. Before,
an unsettled difference was written every time a window (2 s doubling to 16 s) expired: at 1,000 and 2,000
simulated agents, whose reports the API server spreads over tens of seconds (429s and retries), that was 4-5 and
6-17 writes per change.

The memory of unwritten differences lives in the reconciler (one small record per artifact); after a restart there
is none, and a difference found then is written at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from ..kube import Request
from .aggregate import ROLLED_BACK, ROLLING, Agent, Target, report_entry, same_status, targeted

Json = dict[str, Any]
WINDOW = 2.0
"""Seconds an unsettled difference may wait for more reports before the change's first progress write, and a
failure before it is written."""
PROGRESS_INTERVAL = 60.0
"""Seconds between a change's later progress writes: a reader of a change that takes longer sees its counts move
once a minute, and the writes to the shared object stay at one a minute however many agents report."""
EARLY_ENOUGH = 0.001
"""A window this close to its end has expired (a recheck a rounding error early would only recheck again)."""
COST_SHARE = 0.1
"""The share of a core one artifact's reconciles may take: an artifact whose status costs 20 ms to compute (about
2,000 agents) is computed again at most every 200 ms however fast reports arrive."""
AWAITED_KEPT = 64
"""The most awaited pods remembered per artifact. The last report awaited reconciles at once only when the
computation before it waited for this many or fewer (reports arriving meanwhile reconcile after the batching delay,
and each of those computations looks again): 1,000 Rulesfiles each awaiting 1,500 pods held 130 MiB of sets."""
AWAITING_FALCO = "NotLoaded"
"""The reason of an ``Installed`` entry whose agent still expects its Falco to confirm it (``Loaded``)."""
FINAL_STATES = ("Loaded", "Invalid", "Failed", "Refused")
WAITING_REASONS = ("Pending", "RollingOut")
"""Reasons of a False condition that say the change goes on, not that something failed."""
Why = Literal["same", "first", "generation", "rollout", "settled", "failure", "progress", "held"]
STARTS_A_CHANGE = ("first", "generation", "rollout", "settled")
"""Writes after which the next difference is a new change (its first progress write ``WINDOW`` later)."""


@dataclass(frozen=True)
class Memory:
    """What the reconciler remembers of one artifact between reconciles (monotonic seconds)."""

    since: float | None = None
    """When the computed status first differed from the live one without being written (None: no difference)."""
    failing_since: float | None = None
    """When the computed status first showed a failure the live one does not (None: none)."""
    last_write: float | None = None
    progress: int = 0
    """Progress and failure writes since the last write that began a change (``STARTS_A_CHANGE``)."""


@dataclass(frozen=True)
class Decision:
    write: bool
    why: Why
    memory: Memory
    recheck_after: float | None = None
    """Seconds until the difference held is due, when one is."""


def decide(memory: Memory | None, old: Json | None, desired: Json, settled: Callable[[], bool], now: float) -> Decision:
    """Whether to write ``desired`` over ``old`` now. ``settled`` is asked only when the answer depends on it."""
    if same_status(old, desired):
        return Decision(False, "same", replace(memory or Memory(), since=None, failing_since=None))
    if memory is None:
        return _written(Memory(), "first", now)
    if (old or {}).get("observedGeneration") != desired.get("observedGeneration"):
        return _written(memory, "generation", now)
    if not same_status({"rollout": (old or {}).get("rollout")}, {"rollout": desired.get("rollout")}):
        return _written(memory, "rollout", now)  # the agents follow status.rollout: a step waits for no window
    if settled():
        return _written(memory, "settled", now)
    since = memory.since if memory.since is not None else now
    failing = (memory.failing_since if memory.failing_since is not None else now) if new_failure(old, desired) else None
    memory = replace(memory, since=since, failing_since=failing)
    if failing is not None and failing + WINDOW - now < EARLY_ENOUGH:
        return _written(memory, "failure", now)
    progress_due = since + WINDOW if memory.progress == 0 else (memory.last_write or since) + PROGRESS_INTERVAL
    if progress_due - now < EARLY_ENOUGH:
        return _written(memory, "progress", now)
    due = min(progress_due, failing + WINDOW) if failing is not None else progress_due
    return Decision(False, "held", memory, due - now)


def _written(memory: Memory, why: Why, now: float) -> Decision:
    progress = 0 if why in STARTS_A_CHANGE else memory.progress + 1
    return Decision(True, why, Memory(last_write=now, progress=progress))


def new_failure(old: Json | None, desired: Json) -> bool:
    """Whether a condition of ``desired`` says something failed (False, for another reason than waiting) where the
    same condition of ``old`` did not, or for another reason."""
    before = {c.get("type"): (c.get("status"), c.get("reason")) for c in (old or {}).get("conditions") or []}
    return any(condition.get("status") == "False" and condition.get("reason") not in WAITING_REASONS
               and before.get(condition.get("type")) != (condition.get("status"), condition.get("reason"))
               for condition in desired.get("conditions") or [])  # fmt: skip


def settled(target: Target, agents: Iterable[Agent], reports: Mapping[str, Json], desired: Json) -> bool:
    """Whether every targeted agent reported, in a final state, the generation it is to run: the current one, or
    during a staged rollout of it the stable one outside the step's nodes (everywhere once it halted or aborted)."""
    rollout = desired.get("rollout") or {}
    if rollout.get("candidateGeneration") == target.generation and rollout.get("phase") in (*ROLLING, *ROLLED_BACK):
        step = set(rollout.get("nodes") or []) if rollout.get("phase") in ROLLING else set()
        stable = rollout.get("stableGeneration")
        return all(_final(report_entry(reports.get(agent.pod), target.kind, target.name),
                          target.generation if agent.node in step else stable)
                   for agent in targeted(target, agents))  # fmt: skip
    nodes = desired.get("nodes") or {}
    installed, loaded, failed = (int(nodes.get(key) or 0) for key in ("installed", "loaded", "failed"))
    if installed + failed < int(nodes.get("targeted") or 0):
        return False  # some agent waits (no report, an older generation or content, Pending)
    if installed == loaded:
        return True
    for agent in targeted(target, agents):
        entry = report_entry(reports.get(agent.pod), target.kind, target.name)
        if entry and entry.get("state") == "Installed" and entry.get("reason") == AWAITING_FALCO:
            return False
    return True


def awaited(
    target: Target, agents: Iterable[Agent], reports: Mapping[str, Json], rollout: Json | None
) -> set[str] | None:
    """The pods of the targeted agents that have not reported, in a final state, the generation they are to run
    (judged as ``settled`` does, by each agent's own report): when the last of them reports, the change may have
    settled, and the artifact is reconciled at once rather than after the batching delay. None when there are more
    than ``AWAITED_KEPT``."""
    rollout = rollout or {}
    phase = rollout.get("phase")
    rolling = rollout.get("candidateGeneration") == target.generation and phase in (*ROLLING, *ROLLED_BACK)
    step = set(rollout.get("nodes") or []) if rolling and phase in ROLLING else set()
    waiting = set()
    for agent in targeted(target, agents):
        generation = target.generation if not rolling or agent.node in step else rollout.get("stableGeneration")
        if not _final(report_entry(reports.get(agent.pod), target.kind, target.name), generation):
            waiting.add(agent.pod)
            if len(waiting) > AWAITED_KEPT:
                return None
    return waiting


def _final(entry: Json | None, generation: Any) -> bool:
    if entry is None or entry.get("generation") != generation:
        return False
    state = entry.get("state")
    return state in FINAL_STATES or (state == "Installed" and entry.get("reason") != AWAITING_FALCO)


@dataclass
class _Record:
    memory: Memory | None = None
    written: Json | None = None
    written_over: str | None = None
    """The resourceVersion the status was computed from when ``written`` was written: while the cache still holds
    it, the cache has not seen that write yet."""
    started: float | None = None
    cost: float = 0.0
    awaited: set[str] | None = None
    """The pods whose reports the last computation still waited for (``awaited``), less those that reported since;
    None when none, or more than ``AWAITED_KEPT``."""


class StatusCoalescer:
    """The per-artifact memory of one status reconciler, and its clock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._records: dict[Request, _Record] = {}

    def hold_off(self, request: Request) -> float | None:
        """Seconds to wait before computing this artifact's status again (None: go ahead): its last computation
        cost ``cost`` seconds, and reconciles of one artifact take at most ``COST_SHARE`` of a core."""
        record = self._records.get(request)
        if record is None or record.started is None:
            return None
        wait = record.started + record.cost / COST_SHARE - self.clock()
        return wait if wait > 0 else None

    def started(self, request: Request) -> float:
        now = self.clock()
        self._records.setdefault(request, _Record()).started = now
        return now

    def believed(self, request: Request, raw: Json) -> Json | None:
        """The live status: the one last written while the cache has not seen that write yet, else the cached one."""
        record = self._records.get(request)
        version = (raw.get("metadata") or {}).get("resourceVersion")
        if record is not None and record.written is not None and record.written_over == version:
            return record.written
        status = raw.get("status")
        return dict(status) if isinstance(status, dict) else None

    def decide(self, request: Request, old: Json | None, desired: Json, settled: Callable[[], bool]) -> Decision:
        """The decision for ``desired``; a write is remembered once ``wrote`` says it succeeded."""
        record = self._records.setdefault(request, _Record())
        decision = decide(record.memory, old, desired, settled, self.clock())
        if not decision.write:
            record.memory = decision.memory
        if record.started is not None:
            record.cost = self.clock() - record.started
        return decision

    def wrote(self, request: Request, decision: Decision, raw: Json, status: Json) -> None:
        record = self._records.setdefault(request, _Record())
        record.memory = decision.memory
        record.written = status
        record.written_over = (raw.get("metadata") or {}).get("resourceVersion")

    def awaiting(self, request: Request, pods: set[str] | None) -> None:
        """The pods whose reports the status computed now waits for (read from the same cache as the status); None:
        too many to remember (``awaited``)."""
        self._records.setdefault(request, _Record()).awaited = pods or None

    def reported(self, request: Request, pod: str) -> bool:
        """Whether the report of ``pod`` that just arrived is the last one awaited: it may settle the change."""
        record = self._records.get(request)
        if record is None or not record.awaited or pod not in record.awaited:
            return False
        record.awaited.discard(pod)
        return not record.awaited

    def forget(self, request: Request) -> None:
        self._records.pop(request, None)
