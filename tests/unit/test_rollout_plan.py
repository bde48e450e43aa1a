"""The rollout state machine and node choice (pure): scenarios, then properties over seeded random sequences of
node sets, reports, annotations and edits."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from falco_operator.api.rollout import Rollout, RolloutStatus, RolloutStep
from falco_operator.rollout.effective import delivers_live
from falco_operator.rollout.plan import MAX_FAILURE_CHARS, Decision, Inputs, advance, choose, failure, ranked, wanted

Json = dict[str, Any]
NODES = frozenset(f"node{index}" for index in range(1, 6))
TWO_STEPS = Rollout.model_validate({"steps": [{"nodes": 1}, {"percent": 100}], "analysis": {"duration": "30s"}})
SNAPSHOT = "r-rulesfile-stable"


def inputs(live: RolloutStatus | None, generation: int, **changes: Any) -> Inputs:
    base: Json = {"kind": "Rulesfile", "rollout": TWO_STEPS, "uid": "uid-1", "generation": generation,
                  "live": live, "targeted": NODES, "snapshot": SNAPSHOT, "now": "2026-12-06T10:00:00Z"}  # fmt: skip
    return Inputs(**(base | changes))


def verdicts(nodes: Sequence[str], generation: int, result: str = "Passed", **extra: Any) -> dict[str, list[Json]]:
    analysis = {"generation": generation, "result": result, **extra}
    return {node: [{"kind": "Rulesfile", "name": "r", "generation": generation, "state": "Loaded",
                    "analysis": analysis}] for node in nodes}  # fmt: skip


def stable(generation: int = 1) -> RolloutStatus:
    return RolloutStatus(phase="Succeeded", stable_generation=generation, snapshot=SNAPSHOT)


def started(generation: int = 2) -> RolloutStatus:
    decision = advance(inputs(stable(), generation))
    assert decision.status is not None
    return decision.status


def test_the_first_generation_goes_everywhere_and_becomes_stable_once_programmed() -> None:
    assert advance(inputs(None, 1)) == Decision(None)
    decision = advance(inputs(None, 1, programmed=True))
    assert decision.promote == 1
    assert decision.status == RolloutStatus(phase="Succeeded", stable_generation=1, snapshot=SNAPSHOT)
    assert advance(inputs(decision.status, 1, programmed=True)) == Decision(decision.status), "steady: no change"


def test_an_edit_starts_step_one_on_the_first_ranked_node() -> None:
    decision = advance(inputs(stable(), 2))
    status = decision.status
    assert status is not None
    assert (status.phase, status.candidate_generation, status.stable_generation, status.step, status.steps) == (
        "Progressing", 2, 1, 1, 2)  # fmt: skip
    assert status.nodes == ranked("uid-1", 2, NODES)[:1]
    assert status.step_started_at == "2026-12-06T10:00:00Z"
    assert [event[1] for event in decision.events] == ["RolloutStep"]
    assert decision.running


def test_steps_pass_on_verdicts_and_the_last_promotes() -> None:
    status = started()
    assert status.nodes is not None
    waiting = advance(inputs(status, 2, entries=verdicts(status.nodes, 1)))
    assert waiting == Decision(status), "a verdict on another generation does not count"
    second = advance(inputs(status, 2, entries=verdicts(status.nodes, 2)))
    assert second.status is not None
    assert (second.status.step, sorted(second.status.nodes or [])) == (2, sorted(NODES))
    assert set(status.nodes) <= set(second.status.nodes or []), "step-1 nodes stay chosen"
    assert [event[1] for event in second.events] == ["RolloutStep"]
    done = advance(inputs(second.status, 2, entries=verdicts(sorted(NODES), 2)))
    assert done.promote == 2
    assert done.status == RolloutStatus(phase="Succeeded", stable_generation=2, snapshot=SNAPSHOT)
    assert done.results == ("succeeded",)
    assert [event[1] for event in done.events] == ["RolloutSucceeded"]


def test_a_failed_verdict_halts_with_the_node_check_and_figures() -> None:
    status = started()
    assert status.nodes is not None
    node = status.nodes[0]
    figures = 'rule "every event" matched 10.1/s over 12s (limit 1/s)'
    decision = advance(inputs(status, 2, entries=verdicts([node], 2, "Failed", check="RuleRate", message=figures)))
    assert decision.status is not None
    assert decision.status.phase == "Halted"
    assert decision.status.nodes is None
    assert f"{node}: RuleRate: {figures}" in (decision.status.message or "")
    assert decision.results == ("halted",)
    assert decision.events[0][:2] == ("Warning", "RolloutHalted")
    again = advance(inputs(decision.status, 2, entries=verdicts([node], 2, "Passed")))
    assert again == Decision(decision.status), "Halted is final for the generation"


@pytest.mark.parametrize("state", ["Failed", "Refused", "Invalid"])
def test_a_candidate_node_failing_the_content_halts(state: str) -> None:
    status = started()
    assert status.nodes is not None
    entries = {status.nodes[0]: [{"kind": "Rulesfile", "name": "r", "generation": 2, "state": state,
                                  "message": "Falco said no"}]}  # fmt: skip
    decision = advance(inputs(status, 2, entries=entries))
    assert decision.status is not None
    assert decision.status.phase == "Halted"
    assert f"{state}: Falco said no" in (decision.status.message or "")


def test_pause_holds_the_step_resume_continues_abort_ends() -> None:
    status = started()
    assert status.nodes is not None
    passed = verdicts(status.nodes, 2)
    paused = advance(inputs(status, 2, entries=passed, annotation="pause"))
    assert paused.status is not None
    assert (paused.status.phase, paused.status.step, paused.status.nodes) == ("Paused", 1, status.nodes)
    assert advance(inputs(paused.status, 2, entries=passed, annotation="pause")).status == paused.status
    resumed = advance(inputs(paused.status, 2, entries=passed))
    assert resumed.status is not None
    assert (resumed.status.phase, resumed.status.step) == ("Progressing", 2)
    aborted = advance(inputs(resumed.status, 2, annotation="abort"))
    assert aborted.status is not None
    assert (aborted.status.phase, aborted.status.nodes, aborted.results) == ("Aborted", None, ("aborted",))
    assert [event[1] for event in aborted.events] == ["RolloutAborted"]


def test_a_new_edit_supersedes_a_running_rollout_and_starts_from_the_stable() -> None:
    status = started(2)
    decision = advance(inputs(status, 3))
    assert decision.status is not None
    assert (decision.status.candidate_generation, decision.status.stable_generation, decision.status.step) == (3, 1, 1)
    assert decision.results == ("superseded",)
    halted = RolloutStatus(phase="Halted", stable_generation=1, candidate_generation=2, snapshot=SNAPSHOT)
    after_halt = advance(inputs(halted, 3))
    assert after_halt.status is not None
    assert after_halt.status.phase == "Progressing"
    assert after_halt.results == ()


def test_without_a_snapshot_a_change_goes_everywhere_at_once() -> None:
    over = RolloutStatus(phase="Succeeded", stable_generation=1, message="over the cap")
    decision = advance(inputs(over, 2))
    assert decision.status is not None
    assert (decision.status.phase, decision.status.stable_generation) == ("Succeeded", 2)
    assert delivers_live(artifact(2, decision.status), "node1")
    retry = advance(inputs(decision.status, 2, programmed=True))
    assert retry.promote == 2, "a smaller generation may be snapshotted again"


def test_removing_the_rollout_removes_its_status() -> None:
    assert advance(inputs(started(), 3, rollout=None)) == Decision(None)


def test_a_node_leaving_the_step_is_dropped_and_a_joining_node_is_not_added_mid_step() -> None:
    status = started()
    assert status.nodes is not None
    leaving = status.nodes[0]
    joined = NODES - {leaving} | {"node9"}
    decision = advance(inputs(status, 2, targeted=joined))
    assert decision.status is not None
    assert decision.status.nodes, "the emptied step starts over on a targeted node"
    assert leaving not in decision.status.nodes
    status2 = advance(inputs(status, 2, targeted=NODES | {"node9"})).status
    assert status2 is not None
    assert status2.nodes == status.nodes, "node9 joined mid-step: it gets the stable generation"


def test_wanted_and_choose() -> None:
    assert wanted(RolloutStep(percent=25), 5) == 2
    assert wanted(RolloutStep(percent=100), 5) == 5
    assert wanted(RolloutStep(nodes=10), 5) == 5
    assert wanted(RolloutStep(percent=1), 0) == 0
    first = choose("u", 2, RolloutStep(nodes=2), NODES, ())
    assert first == sorted(ranked("u", 2, NODES)[:2])
    third = choose("u", 2, RolloutStep(nodes=3), NODES, first)
    assert len(third) == 3
    assert set(first) <= set(third)
    assert ranked("u", 2, NODES) != ranked("u", 3, NODES) or ranked("v", 2, NODES) != ranked("u", 2, NODES)


def artifact(generation: int, status: RolloutStatus | None) -> Json:
    rollout = status.model_dump(by_alias=True, exclude_none=True) if status else None
    return {"metadata": {"generation": generation}, "spec": {"rollout": TWO_STEPS.model_dump(by_alias=True)},
            "status": {"rollout": rollout} if rollout else {}}  # fmt: skip


def through_the_wire(status: RolloutStatus | None) -> RolloutStatus | None:
    """What an operator restarted reads back."""
    if status is None:
        return None
    return RolloutStatus.model_validate(status.model_dump(by_alias=True, mode="json", exclude_none=True))


def random_entries(rng: random.Random, nodes: frozenset[str], generation: int) -> Mapping[str, list[Json]]:
    entries: dict[str, list[Json]] = {}
    for node in nodes:
        roll = rng.random()
        if roll < 0.35:
            continue
        result = "Failed" if roll > 0.97 else "Passed"
        seen = generation if rng.random() > 0.1 else generation - 1
        entries[node] = [{"kind": "Rulesfile", "name": "r", "generation": seen, "state": "Loaded",
                          "analysis": {"generation": seen, "result": result, "check": "RuleRate"}}]  # fmt: skip
    return entries


@pytest.mark.parametrize("seed", range(60))
def test_properties_over_random_sequences(seed: int) -> None:
    rng = random.Random(seed)
    pool = [f"node{index}" for index in range(1, 13)]
    rollout = Rollout(steps=[RolloutStep(nodes=rng.randint(1, 3))] + [RolloutStep(percent=rng.choice([25, 50, 100]))
                             for _ in range(rng.randint(0, 2))])  # fmt: skip
    generation, live, targeted = 1, None, frozenset(rng.sample(pool, 5))
    for _ in range(120):
        if rng.random() < 0.1:
            targeted = frozenset(rng.sample(pool, rng.randint(0, 8)))
        if rng.random() < 0.05:
            generation += 1
        annotation = rng.choices([None, "pause", "abort"], [0.9, 0.07, 0.03])[0]
        step_inputs = Inputs(kind="Rulesfile", rollout=rollout, uid=f"uid-{seed}", generation=generation,
                             live=live, targeted=targeted, entries=random_entries(rng, targeted, generation),
                             annotation=annotation, programmed=rng.random() < 0.5, snapshot=SNAPSHOT,
                             now=f"t{_}")  # fmt: skip
        decision = advance(step_inputs)
        assert advance(step_inputs) == decision, "deterministic"
        restarted = advance(Inputs(**{**step_inputs.__dict__, "live": through_the_wire(live)}))
        assert restarted == decision, "an operator restarted decides the same"
        status = decision.status
        if status is not None and status.phase in ("Progressing", "Paused"):
            nodes = status.nodes or []
            assert set(nodes) <= targeted, "only targeted nodes run the candidate"
            assert status.candidate_generation == generation
            assert status.snapshot is not None
            assert status.stable_generation is not None
            assert 1 <= (status.step or 0) <= len(rollout.steps)
            restarted_step = status.step_started_at == step_inputs.now  # every node of the step had left
            if (
                live is not None
                and live.candidate_generation == generation
                and live.step == status.step
                and not (restarted_step and not set(live.nodes or []) & targeted)
            ):
                assert set(nodes) <= set(live.nodes or []), "no node is added in the middle of a step"
            if live is not None and live.candidate_generation == generation and (status.step or 0) > (live.step or 0):
                assert set(live.nodes or []) & targeted <= set(nodes), "chosen nodes stay chosen"
                assert annotation is None, "no step passes while paused or aborted"
            if status.step_started_at == step_inputs.now and targeted:
                same = live is not None and live.candidate_generation == generation
                kept: set[str] = set(live.nodes or []) & targeted if same and live is not None else set()
                want = wanted(rollout.steps[(status.step or 1) - 1], len(targeted))
                assert len(nodes) == max(want, len(kept)), "a step starts on as many nodes as it wants"
        if status is not None and status.phase in ("Halted", "Aborted"):
            assert status.nodes is None
            assert not any(delivers_live(artifact(generation, status), node) for node in pool)
        if status is not None and status.phase == "Succeeded" and live is not None and live.phase == "Progressing":
            assert live.step == len(rollout.steps), "promoted only after the last step"
            assert "succeeded" in decision.results
        for node in pool:
            if delivers_live(artifact(generation, status), node) and status is not None and status.phase != "Succeeded":
                assert node in (status.nodes or [])
        live = status


def test_a_halt_message_stays_bounded_whatever_a_report_says() -> None:
    huge = "x" * 100_000
    verdict = {"analysis": {"generation": 4, "result": "Failed", "check": "RuleRate", "message": huge}}
    refused = {"generation": 4, "state": "Refused", "message": huge}
    for entry in (verdict, refused):
        message = failure("node-a", [entry], 4)
        assert message is not None
        assert message.startswith("node-a: ")
        assert len(message) <= MAX_FAILURE_CHARS
    assert failure("node-a", [{"generation": 4, "state": "Loaded"}], 4) is None
