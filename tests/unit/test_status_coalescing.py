"""When an artifact's status is written (pure): at a new generation, when every targeted agent has settled, or when
the window for more reports expired; with the real aggregation computing the statuses."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from falco_operator.kube import Request
from falco_operator.status import Agent, Target, artifact_status
from falco_operator.status.coalescing import (
    COST_SHARE,
    MAX_WINDOW,
    WINDOW,
    Decision,
    Memory,
    StatusCoalescer,
    decide,
    settled,
)

Json = dict[str, Any]
NOW = "2026-11-24T12:00:00Z"
TARGET = Target("Rulesfile", "rules", 2)


def entry(state: str, generation: int = 2, reason: str | None = None, kind: str = "Rulesfile") -> Json:
    return {"kind": kind, "name": "rules", "generation": generation, "state": state, "reason": reason or state}


def report(*entries: Json) -> Json:
    return {"status": {"artifacts": list(entries)}}


def fleet(count: int) -> list[Agent]:
    return [Agent(f"pod-{i}", f"node{i:04d}") for i in range(count)]


def never() -> bool:
    raise AssertionError("settled() asked although the answer does not depend on it")


class Run:
    """One artifact's reconciles, each computing the status with the real aggregation and deciding on it."""

    def __init__(self, agents: list[Agent], target: Target = TARGET) -> None:
        self.agents, self.target = agents, target
        self.reports: dict[str, Json] = {}
        self.live: Json | None = None
        self.memory: Memory | None = Memory()
        self.writes: list[tuple[float, str, Json]] = []

    def reconcile(self, now: float) -> Decision:
        desired = artifact_status(self.target, self.agents, self.reports, self.live, NOW)
        decision = decide(self.memory, self.live, desired,
                          lambda: settled(self.target, self.agents, self.reports, desired), now)  # fmt: skip
        self.memory = decision.memory
        if decision.write:
            self.live = desired
            self.writes.append((now, decision.why, desired))
        return decision


def programmed(status: Json) -> str:
    return next(str(c["status"]) for c in status["conditions"] if c["type"] == "Programmed")


def rollout(count: int, spread: float, batching: float = 0.2) -> tuple[Run, float]:
    """A new generation, then every agent's one Loaded report evenly over ``spread`` seconds; the artifact is
    reconciled ``batching`` after the first report since its last reconcile, and when a window expires. Returns
    the run and the time of the last report."""
    run = Run(fleet(count))
    run.live = artifact_status(Target("Rulesfile", "rules", 1), run.agents, {}, None, NOW)
    run.reconcile(0.0)  # the new generation
    arrivals = [0.05 + spread * index / max(count - 1, 1) for index in range(count)]
    due: float | None = None
    recheck: float | None = None
    index, now = 0, 0.0
    while index < count or due is not None or recheck is not None:
        upcoming = [t for t in (due, recheck, arrivals[index] if index < count else None) if t is not None]
        now = min(upcoming)
        if index < count and arrivals[index] == now:
            run.reports[run.agents[index].pod] = report(entry("Loaded"))
            index += 1
            due = due if due is not None else now + batching
            continue
        due = recheck = None
        decision = run.reconcile(now)
        recheck = now + decision.recheck_after if decision.recheck_after is not None else None
    return run, arrivals[-1]


def test_a_new_generation_is_written_at_once_and_the_rest_when_the_last_agent_reported() -> None:
    for count in (3, 100, 2000):
        run, last = rollout(count, spread=1.5)
        assert [why for _, why, _ in run.writes] == ["generation", "settled"], count
        when, _, status = run.writes[-1]
        assert programmed(status) == "True"
        assert status["nodes"]["loaded"] == count
        assert when - last <= 0.2 + 1e-9, "Programmed one batching delay after the last report"


@pytest.mark.parametrize(("count", "spread"), [(300, 15.0), (200, 30.0), (2000, 60.0)])
def test_a_slow_rollout_writes_progress_in_growing_windows(count: int, spread: float) -> None:
    run, last = rollout(count, spread)
    whys = [why for _, why, _ in run.writes]
    assert whys[0] == "generation"
    assert whys[-1] == "settled"
    windows = [b - a for (a, _, _), (b, why, _) in itertools.pairwise(run.writes) if why == "window"]
    assert len(windows) <= 5, windows  # 2, 4, 8, 16, 16 s (each from a first difference, one batching late)
    assert all(later >= earlier - 0.2 for earlier, later in itertools.pairwise(windows)), windows
    assert max(windows) <= MAX_WINDOW + 0.5  # the window, after the reconcile that saw the next difference
    assert run.writes[-1][0] - last <= 0.2 + 1e-9


def test_an_unsettled_difference_waits_for_the_window_then_is_written_as_known() -> None:
    run = Run(fleet(3))
    run.live = artifact_status(TARGET, run.agents, {}, None, NOW)
    run.reports["pod-0"] = report(entry("Loaded"))
    held = run.reconcile(10.0)
    assert (held.write, held.why, held.recheck_after) == (False, "held", WINDOW)
    run.reports["pod-1"] = report(entry("Loaded"))
    again = run.reconcile(11.0)
    assert (again.write, again.recheck_after) == (False, WINDOW - 1.0), "the window runs from the first difference"
    written = run.reconcile(12.0)
    assert (written.write, written.why) == (True, "window")
    assert run.live is not None
    assert run.live["nodes"]["installed"] == 2


def test_the_window_doubles_only_for_differences_right_after_a_window_write() -> None:
    memory = Memory(since=0.0)
    first = decide(memory, {"observedGeneration": 2}, {"observedGeneration": 2, "x": 1}, lambda: False, WINDOW)
    assert first.why == "window"
    soon = decide(first.memory, {"observedGeneration": 2, "x": 1}, {"observedGeneration": 2, "x": 2},
                  lambda: False, WINDOW + 0.5)  # fmt: skip
    assert soon.recheck_after == 2 * WINDOW
    later = decide(first.memory, {"observedGeneration": 2, "x": 1}, {"observedGeneration": 2, "x": 2},
                   lambda: False, WINDOW + 60.0)  # fmt: skip
    assert later.recheck_after == WINDOW, "a difference long after the last write starts a new change"


def test_what_counts_as_settled() -> None:
    agents = fleet(3)
    loaded = {agent.pod: report(entry("Loaded")) for agent in agents}

    def is_settled(reports: dict[str, Json], target: Target = TARGET) -> bool:
        return settled(target, agents, reports, artifact_status(target, agents, reports, None, NOW))

    assert is_settled(loaded)
    assert not is_settled({**loaded, "pod-2": report(entry("Loaded", generation=1))}), "an older generation"
    assert not is_settled({**loaded, "pod-2": report(entry("Pending"))})
    assert not is_settled({key: value for key, value in loaded.items() if key != "pod-2"}), "no report yet"
    assert is_settled({**loaded, "pod-2": report(entry("Failed", reason="PullFailed"))})
    assert is_settled({**loaded, "pod-2": report(entry("Refused"))})
    assert not is_settled({**loaded, "pod-2": report(entry("Installed", reason="NotLoaded"))}), "Falco to confirm"
    assert is_settled({**loaded, "pod-2": report(entry("Installed"))}), "nothing more expected from its Falco"
    config = Target("Config", "rules", 2)
    assert is_settled({agent.pod: report(entry("Installed", kind="Config")) for agent in agents}, config)
    assert settled(TARGET, [], {}, artifact_status(TARGET, [], {}, None, NOW)), "no agents: nothing to wait for"


def test_during_a_staged_rollout_settled_means_each_agent_runs_what_the_rollout_gives_it() -> None:
    agents = fleet(3)
    step = {"candidateGeneration": 2, "stableGeneration": 1, "phase": "Progressing", "nodes": ["node0000"]}

    def is_settled(reports: dict[str, Json], rollout: Json) -> bool:
        desired = {**artifact_status(TARGET, agents, reports, None, NOW), "rollout": rollout}
        return settled(TARGET, agents, reports, desired)

    kept = {"pod-1": report(entry("Loaded", generation=1)), "pod-2": report(entry("Loaded", generation=1))}
    assert is_settled({"pod-0": report(entry("Loaded")), **kept}, step)
    assert not is_settled({"pod-0": report(entry("Loaded", generation=1)), **kept}, step), "the step's node waits"
    assert not is_settled({"pod-0": report(entry("Installed", reason="NotLoaded")), **kept}, step)
    assert is_settled({"pod-0": report(entry("Loaded", generation=1)), **kept}, {**step, "phase": "Halted"})
    assert not is_settled({"pod-0": report(entry("Loaded")), **kept}, {**step, "phase": "Aborted"}), "rolling back"
    assert not is_settled({"pod-0": report(entry("Loaded")), **kept}, {**step, "phase": "Succeeded"}), "everywhere"


def test_no_difference_no_write_and_the_first_look_after_a_start_writes_at_once() -> None:
    status = {"observedGeneration": 2, "nodes": {"installed": 1}}
    same = decide(Memory(since=5.0), status, dict(status), never, 6.0)
    assert (same.write, same.memory.since) == (False, None)
    first = decide(None, status, {**status, "nodes": {"installed": 2}}, never, 0.0)
    assert (first.write, first.why) == (True, "first")
    new_generation = decide(Memory(), status, {"observedGeneration": 3}, never, 0.0)
    assert (new_generation.write, new_generation.why) == (True, "generation")
    step = decide(Memory(), status, {**status, "nodes": {}, "rollout": {"step": 1, "nodes": ["node1"]}}, never, 0.0)
    assert (step.write, step.why) == (True, "rollout")
    unchanged = {**status, "rollout": {"step": 1}}
    assert decide(Memory(), unchanged, {**unchanged, "nodes": {}}, lambda: False, 0.0).why == "held"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_coalescer_believes_its_own_write_until_the_cache_has_it_and_spaces_costly_reconciles() -> None:
    clock = Clock()
    coalescer = StatusCoalescer(clock)
    key = Request("ns", "rules")
    cached: Json = {"metadata": {"resourceVersion": "7"}, "status": {"observedGeneration": 1}}
    assert coalescer.hold_off(key) is None
    coalescer.started(key)
    clock.now += 0.05  # a computation of 50 ms
    desired = {"observedGeneration": 2}
    decision = coalescer.decide(key, cached["status"], desired, never)
    assert decision.write
    assert decision.why == "first"
    assert abs((coalescer.hold_off(key) or 0.0) - (0.05 / COST_SHARE - 0.05)) < 1e-9
    assert coalescer.believed(key, cached) == {"observedGeneration": 1}, "a write not made is not believed"
    coalescer.wrote(key, decision, cached, desired)
    assert coalescer.believed(key, cached) == desired, "the cache has not seen the write yet"
    caught_up = {"metadata": {"resourceVersion": "8"}, "status": {"observedGeneration": 2, "seen": True}}
    assert coalescer.believed(key, caught_up) == caught_up["status"]
    clock.now += 1.0
    assert coalescer.hold_off(key) is None
    coalescer.forget(key)
    assert coalescer.decide(key, desired, {"observedGeneration": 2, "x": 1}, never).why == "first"


def test_a_failed_write_is_not_remembered_so_the_retry_writes() -> None:
    coalescer = StatusCoalescer(Clock())
    key = Request("ns", "rules")
    old, desired = {"observedGeneration": 2}, {"observedGeneration": 2, "x": 1}
    assert coalescer.decide(key, old, desired, never).write, "first look"
    # patch_status raised: wrote() was not called; the retry still writes at once.
    assert coalescer.decide(key, old, desired, never).why == "first"
