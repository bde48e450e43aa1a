"""When the status reconciler writes an artifact's status: when the change it follows has settled, not on a timer.

Reports reconcile an artifact soon after they arrive (a short batching delay in the work queue), and each reconcile
computes the whole status, but a status that differs from the live one is written only when

- its ``observedGeneration`` changes (the new generation seen: written at once), or its ``rollout`` does (the
  agents read which nodes run the candidate from it: written at once),
- it has settled: every targeted agent reported the current generation in a final state (Loaded; Invalid, Failed,
  Refused; Installed with nothing more to expect from Falco, as for a Config), or
- the window since the first unwritten difference expired: what is known is written, and a difference that keeps
  coming right after such a write gets twice the window, up to ``MAX_WINDOW``, so a rollout that spreads over
  a long time still costs few writes.

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
"""Seconds an unsettled difference may wait for more reports before what is known is written."""
MAX_WINDOW = 16.0
EARLY_ENOUGH = 0.001
"""A window this close to its end has expired (a recheck a rounding error early would only recheck again)."""
COST_SHARE = 0.1
"""The share of a core one artifact's reconciles may take: an artifact whose status costs 20 ms to compute (about
2,000 agents) is computed again at most every 200 ms however fast reports arrive."""
AWAITING_FALCO = "NotLoaded"
"""The reason of an ``Installed`` entry whose agent still expects its Falco to confirm it (``Loaded``)."""
FINAL_STATES = ("Loaded", "Invalid", "Failed", "Refused")
Why = Literal["same", "first", "generation", "rollout", "settled", "window", "held"]


@dataclass(frozen=True)
class Memory:
    """What the reconciler remembers of one artifact between reconciles (monotonic seconds)."""

    since: float | None = None
    """When the computed status first differed from the live one without being written (None: no difference)."""
    window: float = WINDOW
    """How long the difference found at ``since`` may wait."""
    last_write: float | None = None
    expired: float | None = None
    """The window whose expiry caused the last write (None: the last write was not a window's)."""


@dataclass(frozen=True)
class Decision:
    write: bool
    why: Why
    memory: Memory
    recheck_after: float | None = None
    """Seconds until the window expires, when the difference is held."""


def decide(memory: Memory | None, old: Json | None, desired: Json, settled: Callable[[], bool], now: float) -> Decision:
    """Whether to write ``desired`` over ``old`` now. ``settled`` is asked only when the answer depends on it."""
    if same_status(old, desired):
        return Decision(False, "same", replace(memory or Memory(), since=None))
    if memory is None:
        return _written(Memory(), "first", now)
    if (old or {}).get("observedGeneration") != desired.get("observedGeneration"):
        return _written(memory, "generation", now)
    if not same_status({"rollout": (old or {}).get("rollout")}, {"rollout": desired.get("rollout")}):
        return _written(memory, "rollout", now)  # the agents follow status.rollout: a step waits for no window
    if settled():
        return _written(memory, "settled", now)
    if memory.since is None:
        memory = replace(memory, since=now, window=_next_window(memory, now))
    assert memory.since is not None
    remaining = memory.since + memory.window - now
    if remaining < EARLY_ENOUGH:
        return _written(memory, "window", now)
    return Decision(False, "held", memory, remaining)


def _written(memory: Memory, why: Why, now: float) -> Decision:
    expired = memory.window if why == "window" else None
    return Decision(True, why, Memory(since=None, window=memory.window, last_write=now, expired=expired))


def _next_window(memory: Memory, now: float) -> float:
    """``WINDOW``, or twice the last window when this difference follows right after that window's write."""
    if memory.expired is not None and memory.last_write is not None and now - memory.last_write < memory.expired:
        return min(2 * memory.expired, MAX_WINDOW)
    return WINDOW


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

    def forget(self, request: Request) -> None:
        self._records.pop(request, None)
