"""When an artifact's status is written (pure): at a new generation, when every targeted agent has settled, when a
failure shows, or as progress (once a change's first window expired, then at most once a minute); with the real
aggregation computing the statuses."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from falco_operator.kube import Request
from falco_operator.status import Agent, Target, artifact_status
from falco_operator.status.coalescing import (
    AWAITED_KEPT,
    COST_SHARE,
    PROGRESS_INTERVAL,
    WINDOW,
    Decision,
    Memory,
    StatusCoalescer,
    awaited,
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
        self.awaited: set[str] = set()

    def reconcile(self, now: float) -> Decision:
        desired = artifact_status(self.target, self.agents, self.reports, self.live, NOW)
        self.awaited = awaited(self.target, self.agents, self.reports, None) or set()  # as the coalescer keeps it
        decision = decide(self.memory, self.live, desired,
                          lambda: settled(self.target, self.agents, self.reports, desired), now)  # fmt: skip
        self.memory = decision.memory
        if decision.write:
            self.live = desired
            self.writes.append((now, decision.why, desired))
        return decision

    def whys(self) -> list[str]:
        return [why for _, why, _ in self.writes]


def programmed(status: Json) -> str:
    return next(str(c["status"]) for c in status["conditions"] if c["type"] == "Programmed")


def replay(run: Run, arrivals: list[tuple[float, str, Json]], batching: float = 0.2) -> Run:
    """Reports arriving at the given times (seconds, pod, report), reconciled as the status controller does:
    ``batching`` after the first report since the last reconcile, at once for the last awaited agent's report,
    and when a held difference is due; until every report arrived and nothing is due."""
    pending = sorted(arrivals, key=lambda arrival: arrival[0])
    due: float | None = None
    recheck: float | None = None
    while pending or due is not None or recheck is not None:
        upcoming = [t for t in (due, recheck, pending[0][0] if pending else None) if t is not None]
        now = min(upcoming)
        assert now < 3600, "a difference held forever"
        if pending and pending[0][0] == now:
            _, pod, body = pending.pop(0)
            run.reports[pod] = body
            last = pod in run.awaited and not run.awaited - {pod}
            run.awaited.discard(pod)
            if not last:
                due = due if due is not None else now + batching
                continue
        due = recheck = None
        decision = run.reconcile(now)
        recheck = now + decision.recheck_after if decision.recheck_after is not None else None
    return run


def new_generation(count: int) -> Run:
    run = Run(fleet(count))
    run.live = artifact_status(Target("Rulesfile", "rules", 1), run.agents, {}, None, NOW)
    run.reconcile(0.0)  # the new generation
    return run


def evenly(run: Run, spread: float, state: str = "Loaded") -> list[tuple[float, str, Json]]:
    count = len(run.agents)
    return [(0.05 + spread * index / max(count - 1, 1), agent.pod, report(entry(state)))
            for index, agent in enumerate(run.agents)]  # fmt: skip


def test_a_new_generation_is_written_at_once_and_the_rest_as_soon_as_the_last_agent_reported() -> None:
    for count in (3, 100, 2000):
        run = new_generation(count)
        arrivals = evenly(run, spread=1.5)
        replay(run, arrivals)
        assert run.whys() == ["generation", "settled"], count
        when, _, status = run.writes[-1]
        assert programmed(status) == "True"
        assert status["nodes"]["loaded"] == count
        # The last report reconciles at once when the computation before it waited for at most AWAITED_KEPT
        # pods: at 2,000 reports in 1.5 s, over a hundred arrive in one batching delay, and the last waits for it.
        if count * 0.2 / 1.5 <= AWAITED_KEPT:
            assert when == arrivals[-1][0], "the last awaited report reconciles at once: no batching delay"
        else:
            assert arrivals[-1][0] < when <= arrivals[-1][0] + 0.2 + 1e-9


@pytest.mark.parametrize("count", [3, 100, 2000])
@pytest.mark.parametrize("spread", [5.0, 15.0, 45.0])
def test_the_writes_of_a_change_do_not_grow_with_the_agents_or_the_spread_of_their_reports(
    count: int, spread: float
) -> None:
    """Reports spread by the API server's refusals and the agents' retries: in clumps, at random, over up to 45 s."""
    run = new_generation(count)
    rng = random.Random(count * 1000 + int(spread))
    times = [0.3, 0.3 + spread] + [rng.choice([0.3, 0.5, 1.0]) + rng.random() ** 2 * spread for _ in range(count - 2)]
    arrivals = [(when, agent.pod, report(entry("Loaded"))) for when, agent in zip(times, run.agents, strict=True)]
    replay(run, arrivals)
    assert run.whys() == ["generation", "progress", "settled"], count
    _, progress, last = (when for when, _, _ in run.writes)
    assert progress - min(when for when, _, _ in arrivals) <= WINDOW + 0.2 + 1e-9, "one window after the first report"
    assert last == max(when for when, _, _ in arrivals)
    assert programmed(run.writes[-1][2]) == "True"


def test_a_change_that_settles_within_the_window_costs_two_writes() -> None:
    run = new_generation(100)
    replay(run, evenly(run, spread=WINDOW - 0.5))
    assert run.whys() == ["generation", "settled"]


def test_a_long_change_shows_its_progress_once_a_minute_and_a_stalled_one_stops_writing() -> None:
    run = new_generation(100)
    # One report every 3 s for five minutes: never settled, never quiet.
    arrivals = [(1.0 + 3.0 * index, agent.pod, report(entry("Loaded"))) for index, agent in enumerate(run.agents)]
    replay(run, arrivals)
    progress = [when for when, why, _ in run.writes if why == "progress"]
    assert progress[0] == 1.0 + 0.2 + WINDOW, "a window after the reconcile that saw the first report"
    assert all(later - earlier >= PROGRESS_INTERVAL - 1e-9 for earlier, later in itertools.pairwise(progress)), progress
    assert len(progress) <= 1 + (arrivals[-1][0] - progress[0]) // PROGRESS_INTERVAL
    assert run.whys()[-1] == "settled"

    stalled = new_generation(100)
    reported = [(0.5 + 0.1 * index, agent.pod, report(entry("Loaded"))) for index, agent in enumerate(stalled.agents)]
    replay(stalled, reported[:-1])  # the last agent never reports
    assert stalled.whys() == ["generation", "progress", "progress"], "then nothing: the status stopped changing"
    assert stalled.writes[-1][2]["nodes"]["loaded"] == 99
    assert stalled.writes[-1][0] - stalled.writes[-2][0] == pytest.approx(PROGRESS_INTERVAL)


def test_a_failure_is_written_a_window_after_it_showed() -> None:
    run = new_generation(100)
    arrivals = evenly(run, spread=20.0)
    failed_at, pod, _ = arrivals[50]
    arrivals[50] = (failed_at, pod, report(entry("Invalid", reason="InvalidRules")))
    replay(run, arrivals)
    assert run.whys() == ["generation", "progress", "failure", "settled"]
    when, _, status = run.writes[2]
    assert failed_at + WINDOW <= when <= failed_at + WINDOW + 0.2 + 1e-9
    assert {c["type"]: c["status"] for c in status["conditions"]}["Valid"] == "False"
    assert programmed(status) == "False"


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
    assert (written.write, written.why) == (True, "progress")
    assert run.live is not None
    assert run.live["nodes"]["installed"] == 2


def test_later_progress_waits_the_interval_and_a_settled_write_starts_a_new_change() -> None:
    old, new = {"observedGeneration": 2, "x": 1}, {"observedGeneration": 2, "x": 2}
    first = decide(Memory(since=0.0), {"observedGeneration": 2}, old, lambda: False, WINDOW)
    assert (first.why, first.memory.progress) == ("progress", 1)
    soon = decide(first.memory, old, new, lambda: False, WINDOW + 0.5)
    assert soon.recheck_after == PROGRESS_INTERVAL - 0.5
    done = decide(first.memory, old, new, lambda: True, WINDOW + 1.0)
    assert (done.why, done.memory.progress) == ("settled", 0)
    after = decide(done.memory, new, {"observedGeneration": 2, "x": 3}, lambda: False, WINDOW + 2.0)
    assert after.recheck_after == WINDOW, "a difference after a settled write starts a new change"


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


def test_the_last_awaited_report_is_told_apart() -> None:
    coalescer = StatusCoalescer(Clock())
    key = Request("ns", "rules")
    assert not coalescer.reported(key, "pod-0"), "nothing computed yet"
    agents = fleet(3)
    loaded = {"pod-0": report(entry("Loaded")), "pod-1": report(entry("Installed", reason="NotLoaded"))}
    coalescer.awaiting(key, awaited(TARGET, agents, loaded, None))
    assert not coalescer.reported(key, "pod-0"), "not awaited"
    assert not coalescer.reported(key, "pod-1")
    assert coalescer.reported(key, "pod-2"), "the last one"
    assert not coalescer.reported(key, "pod-2"), "once"
    rollout = {"candidateGeneration": 2, "stableGeneration": 1, "phase": "Progressing", "nodes": ["node0000"]}
    kept = {"pod-1": report(entry("Loaded", generation=1)), "pod-2": report(entry("Loaded", generation=1))}
    assert awaited(TARGET, agents, kept, rollout) == {"pod-0"}, "the step's node, to run the candidate"


def test_an_artifact_awaiting_many_pods_is_remembered_by_none_of_them() -> None:
    """1,000 Rulesfiles each awaiting 1,500 pods held 130 MiB of sets: beyond AWAITED_KEPT nothing is kept, and
    the reports reconcile after the batching delay; once the computation awaits few enough, the last reconciles at
    once again."""
    coalescer = StatusCoalescer(Clock())
    key = Request("ns", "rules")
    agents = fleet(AWAITED_KEPT + 1)
    assert awaited(TARGET, agents, {}, None) is None
    coalescer.awaiting(key, awaited(TARGET, agents, {}, None))
    assert not any(coalescer.reported(key, agent.pod) for agent in agents)
    loaded = {agent.pod: report(entry("Loaded")) for agent in agents[1:]}
    coalescer.awaiting(key, awaited(TARGET, agents, loaded, None))
    assert coalescer.reported(key, agents[0].pod)
    everyone = {agent.pod: report(entry("Loaded")) for agent in agents}
    coalescer.awaiting(key, awaited(TARGET, agents, everyone, None))
    assert not coalescer.reported(key, agents[0].pod), "none awaited: nothing to tell apart"


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
