"""Checks of user content cost little and never hold the event loop: they run in worker threads within a time
budget, and each distinct content is parsed once (the planner used to parse every rules file twice per pass, and
the operator again on every reconcile)."""

from __future__ import annotations

import itertools
import time
import uuid
from typing import Any

import anyio
import pytest

from falco_operator.api.plain import Config, Rulesfile
from falco_operator.artifacts import plan, validation, yamldoc
from falco_operator.artifacts.budget import BudgetedChecks, OverBudget
from falco_operator.artifacts.rules import rules_set_check

PLUGINS = "/usr/share/falco/plugins"


def rule_text(name: str) -> str:
    return f"- rule: {name}\n  desc: d\n  condition: evt.num > 0\n  output: o\n  priority: NOTICE\n"


@pytest.fixture
def yaml_loads(monkeypatch: pytest.MonkeyPatch) -> list[bytes | str]:
    """Every real YAML parse the validation makes, counted (the real loader still does the work)."""
    loaded: list[bytes | str] = []
    real = yamldoc.load_yaml

    def counting(content: bytes | str) -> Any:
        loaded.append(content)
        return real(content)

    monkeypatch.setattr(validation, "load_yaml", counting)
    return loaded


def test_planning_twice_parses_each_distinct_content_once(yaml_loads: list[bytes | str]) -> None:
    unique = uuid.uuid4().hex  # content no earlier test has parsed
    rules = [Rulesfile.from_wire({"metadata": {"name": f"r{i}", "generation": 1},
                                       "spec": {"inlineRules": rule_text(f"{unique}-{i}")}})
             for i in range(3)]  # fmt: skip
    same_as_r0 = Rulesfile.from_wire({"metadata": {"name": "copy", "generation": 1},
                                           "spec": {"inlineRules": rule_text(f"{unique}-0")}})  # fmt: skip
    settings = Config.from_wire({"metadata": {"name": "c", "generation": 1},
                                      "spec": {"config": f"log_level: info  # {unique}\n"}})  # fmt: skip
    for _ in range(2):
        result = plan([*rules, same_as_r0, settings], {}, {}, plugins_dir=PLUGINS, rules_set_check=rules_set_check)
        assert {outcome.state for outcome in result.outcomes} == {"Installed"}
    assert len(yaml_loads) == 4, "three distinct rules files and one config, each parsed once in two passes"


def test_an_invalid_content_is_remembered_too(yaml_loads: list[bytes | str]) -> None:
    broken = f"- rule: {uuid.uuid4().hex}\n  desc: [\n"
    for _ in range(3):
        with pytest.raises(validation.Invalid, match="invalid YAML"):
            validation.parse_rules(broken)
    assert len(yaml_loads) == 1


@pytest.mark.anyio
async def test_a_check_over_budget_is_refused_while_the_event_loop_keeps_running() -> None:
    checks: BudgetedChecks[str] = BudgetedChecks(budget=0.3)
    runs: list[float] = []
    ticks: list[float] = []

    def slow_check() -> str:
        runs.append(time.monotonic())
        time.sleep(1.5)  # a check that holds its thread, as a huge document would
        return "judged"

    async def tick() -> None:
        while True:
            ticks.append(time.monotonic())
            await anyio.sleep(0.05)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(tick)
        started = time.monotonic()
        with pytest.raises(OverBudget, match=r"took longer than 0.3 s; simplify it"):
            await checks.run("content", slow_check)
        waited = time.monotonic() - started
        with pytest.raises(OverBudget):
            await checks.run("content", slow_check)  # remembered: no second thread for the same content
        tasks.cancel_scope.cancel()
    assert waited < 1.0, f"waited {waited:.2f} s for a 0.3 s budget"
    assert len(runs) == 1
    gaps = [later - earlier for earlier, later in itertools.pairwise(ticks)]
    assert len(ticks) >= 4
    assert max(gaps) < 0.25, f"the event loop stalled {max(gaps):.2f} s"
    assert await checks.run("other", lambda: "judged") == "judged"
