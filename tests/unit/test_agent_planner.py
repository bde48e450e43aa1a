"""The agent's planning step: the rule-set check is reached once per distinct set of rules files, so passes started
by an answer from Falco (or a report change, a relabel) do not check unchanged rules again; and within the check
budget, so a set that takes too long to check refuses the file that made it slow and keeps its last good files."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import pytest

from artifact_agent.confirmation import UNKNOWN, FalcoView, confirm
from artifact_agent.planner import PassPlanner
from falco_operator.api.plain import Rulesfile
from falco_operator.artifacts import (
    RULES_DIR,
    Artifact,
    ArtifactKey,
    Delivered,
    Plan,
    Problem,
    RulesFileView,
    sha256_hex,
)
from falco_operator.artifacts.budget import BudgetedChecks
from falco_operator.artifacts.rules import LoadContext, incremental, rules_set_check

PLUGINS = "/usr/share/falco/plugins"


@pytest.fixture
def set_checks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every real check of rules files, counted by the files checked together (the real check still does the
    work; ``incremental`` checks a group of files that use each other's names, and remembers it)."""
    calls: list[int] = []
    real = incremental._check_group

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(args[0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(incremental, "_check_group", counting)
    return calls


def rulesfile(name: str, text: str, generation: int = 1) -> Rulesfile:
    return Rulesfile.from_wire({"metadata": {"name": name, "generation": generation},
                                     "spec": {"inlineRules": text}})  # fmt: skip


def rule_using(macro: str) -> str:
    return f"- rule: r\n  desc: d\n  condition: {macro}\n  output: o\n  priority: NOTICE\n"


def macros_and_rule(unique: str, field: str = "proc.name") -> list[Artifact]:
    base = rulesfile("base", f"- macro: {unique}\n  condition: {field} = sh\n")
    return [base, rulesfile("uses", rule_using(unique))]


def remembered(result: Plan) -> dict[ArtifactKey, Delivered]:
    """What the agent keeps as last good after a pass."""
    return {outcome.key: outcome.delivered for outcome in result.outcomes if not outcome.delivered.empty}


def loaded_by_falco(result: Plan) -> FalcoView:
    rules = {name: sha256_hex(data) for outcome in result.outcomes
             for (directory, name), data in outcome.delivered.files.items() if directory == RULES_DIR}  # fmt: skip
    return FalcoView(reachable=True, version="0.44.1", rules=rules)


def states(outcomes: Sequence[Any]) -> dict[str, tuple[str, str]]:
    return {outcome.key.name: (outcome.state, outcome.message) for outcome in outcomes}


@pytest.mark.anyio
async def test_a_pass_where_only_falcos_answer_changed_does_not_check_the_rules_set_again(
    set_checks: list[int],
) -> None:
    planner = PassPlanner(PLUGINS, rules_set_check)
    artifacts = macros_and_rule(f"m_{uuid.uuid4().hex}")
    first = await planner.plan(artifacts, {}, {})
    before = states(confirm(first.outcomes, UNKNOWN))
    # Falco answers: it loaded both files. The agent's next pass plans the same artifacts with its last good files.
    second = await planner.plan(artifacts, {}, remembered(first))
    after = states(confirm(second.outcomes, loaded_by_falco(first)))
    assert set_checks == [2], "one check of the two files, reused by the second pass"
    assert second.directories == first.directories
    assert {name: state for name, (state, _) in before.items()} == {"base": "Installed", "uses": "Installed"}
    assert {name: state for name, (state, _) in after.items()} == {"base": "Loaded", "uses": "Loaded"}


@pytest.mark.anyio
async def test_a_changed_rules_file_is_checked_again_and_a_refusal_is_reused_as_it_was(set_checks: list[int]) -> None:
    planner = PassPlanner(PLUGINS, rules_set_check)
    unique = f"m_{uuid.uuid4().hex}"
    good = macros_and_rule(unique)
    first = await planner.plan(good, {}, {})
    broken = macros_and_rule(unique, field="proc.nam")
    refused = [await planner.plan(broken, {}, remembered(first)) for _ in range(3)]
    # The good set, then the changed set, and once more without the plugins this set configures (the error is in
    # the content, not a missing plugin); checked again with base's last good file, the set is the good one.
    assert set_checks == [2, 2, 2]
    for result in refused:
        assert result.directories == first.directories, "the last good files stay"
        base_state, base_message = states(result.outcomes)["base"]
        assert base_state == "Invalid"
        assert "unknown field proc.nam" in base_message
        assert base_message.endswith("; the last good files stay")
        assert states(result.outcomes)["uses"][0] == "Installed"


SLOW = "# takes long to check\n"
TOO_LONG = ("checking this content took longer than 0.3 s; simplify it (shorter conditions and outputs, fewer macros) "
            "or split it into several smaller ones")  # fmt: skip


def slow_for_marked_files(
    views: Sequence[RulesFileView], context: LoadContext | None = None
) -> Mapping[ArtifactKey, Problem]:
    """The real check, which holds its thread 1.5 s for a set that holds a marked file (as a huge file would)."""
    if any(SLOW in (view.text or "") for view in views):
        time.sleep(1.5)
    return rules_set_check(views, context)


async def planned_while_ticking(planner: PassPlanner, *args: Any) -> tuple[Plan, float, float]:
    """The plan, the seconds it took, and the longest stall of the event loop meanwhile."""
    ticks: list[float] = []

    async def tick() -> None:
        while True:
            ticks.append(time.monotonic())
            await anyio.sleep(0.05)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(tick)
        started = time.monotonic()
        result = await planner.plan(*args)
        waited = time.monotonic() - started
        tasks.cancel_scope.cancel()
    assert len(ticks) >= 4
    return result, waited, max(later - earlier for earlier, later in itertools.pairwise(ticks))


@pytest.mark.anyio
async def test_a_rules_file_whose_set_check_overruns_the_budget_is_invalid_and_its_last_good_files_stay() -> None:
    planner = PassPlanner(PLUGINS, slow_for_marked_files, BudgetedChecks(budget=0.3))
    unique = f"m_{uuid.uuid4().hex}"
    base, uses = macros_and_rule(unique)
    first = await planner.plan([base, uses], {}, {})
    hostile = rulesfile("uses", rule_using(unique) + SLOW, generation=2)
    second, waited, stall = await planned_while_ticking(planner, [base, hostile], {}, remembered(first))
    assert waited < 1.0, f"waited {waited:.2f} s for a 0.3 s budget"
    assert stall < 0.25, f"the event loop stalled {stall:.2f} s"
    assert states(second.outcomes) == {
        "base": ("Installed", "wrote 50-03-base-inline.yaml"),
        "uses": ("Invalid", f"50-03-uses-inline.yaml: {TOO_LONG}; the last good files stay"),
    }
    assert second.directories == first.directories
    assert [(outcome.key.name, outcome.reason) for outcome in second.outcomes if outcome.state == "Invalid"] == [
        ("uses", "InvalidRules")
    ]
    started = time.monotonic()
    third = await planner.plan([base, hostile], {}, remembered(second))
    assert time.monotonic() - started < 0.2, "the verdict is remembered: no second wait for the same files"
    assert states(third.outcomes) == states(second.outcomes)


@pytest.mark.anyio
async def test_of_several_new_rules_files_only_the_one_that_overruns_the_budget_is_refused() -> None:
    planner = PassPlanner(PLUGINS, slow_for_marked_files, BudgetedChecks(budget=0.3))
    unique = f"m_{uuid.uuid4().hex}"
    base, uses = macros_and_rule(unique)
    hostile = rulesfile("hostile", f"- list: {unique}_l\n  items: [a]\n{SLOW}")
    result, waited, stall = await planned_while_ticking(planner, [base, hostile, uses], {}, {})
    assert waited < 1.2, f"waited {waited:.2f} s: the whole set and the hostile file alone, 0.3 s each"
    assert stall < 0.25, f"the event loop stalled {stall:.2f} s"
    assert states(result.outcomes) == {
        "base": ("Installed", "wrote 50-03-base-inline.yaml"),
        "hostile": ("Invalid", f"50-03-hostile-inline.yaml: {TOO_LONG}"),
        "uses": ("Installed", "wrote 50-03-uses-inline.yaml"),
    }
    assert sorted(result.directories[RULES_DIR]) == ["50-03-base-inline.yaml", "50-03-uses-inline.yaml"]


@pytest.mark.anyio
async def test_then_gets_the_plan_in_the_planning_thread_and_its_failure_is_the_pass_failure() -> None:
    planner = PassPlanner(PLUGINS, rules_set_check)
    artifacts = macros_and_rule(f"m_{uuid.uuid4().hex}")
    seen: list[tuple[Plan, int]] = []
    loop_thread = threading.get_ident()

    result = await planner.plan(artifacts, {}, {}, then=lambda planned: seen.append((planned, threading.get_ident())))
    [(given, thread)] = seen
    assert given is result
    assert thread != loop_thread, "written off the event loop"

    def refuse(_: Plan) -> None:
        raise OSError("read-only file system")

    with pytest.raises(OSError, match="read-only"):
        await planner.plan(artifacts, {}, remembered(result), then=refuse)
