"""Staged rollouts (issue #28), accepted end to end: a control plane of its own with five simulated nodes, the
operator as users run it, an agent and a real Falco (``nodriver``) per node.

Falco ``nodriver`` emits a synthetic ``scapevent`` every 100 ms, so a rule ``condition: evt.num >= 0`` matches ten
times a second on every node that loads it (``falcosecurity_falco_rules_matches_total{rule_name="every event"}``):
the flooding candidate. The other rules here never match. What a node runs is read from its Falco
(``falcosecurity_falco_sha256_rules_files_info``) for Rulesfiles and from its config directory for a Config (Falco
lists no fragments in its metrics); writes are counted in the API server's audit log and on a watch.

Every rollout has two steps, ``{nodes: 1}`` then ``{percent: 100}``; the first step's node is predicted from the
contract's ranking (sha256 of "<uid>/<generation>/<node>"), so the other nodes are watched from before the edit.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

import anyio
import kr8s.asyncio
import pytest

from e2e.agent import falco_pods, rule, rulesfile
from e2e.audit import AuditMark, describe
from e2e.controlplane import ControlPlane
from e2e.falco import FalcoBinaries
from e2e.kube import call
from e2e.metrics import scrape, value
from e2e.operator import plane_with_crds
from e2e.wait import wait_for
from falco_operator.api.plain import ROLLOUT_ANNOTATION, SNAPSHOT_KEY
from tests.integration.agent_support import create, delete, patch
from tests.integration.rollout_support import (
    MATCHES,
    Fleet,
    History,
    OperatorProcess,
    Probe,
    Rig,
    condition,
    entry_log,
    events_about,
    first_nodes,
    get_artifact,
    installed_config_sha,
    loaded_rules_sha,
    rollout_of,
    rule_matches,
    stable_watch,
    watched,
)

Json = dict[str, Any]
pytestmark = pytest.mark.anyio
NODES = [f"node{index}" for index in range(1, 6)]
NAMESPACE = "rollout"
QUIET = "evt.type = open and proc.name = never-runs-here"
FLOOD_RULE = "every event"
FLOOD = "evt.num >= 0"
TWO_STEPS = [{"nodes": 1}, {"percent": 100}]
ANALYSIS_SECONDS = 10
"""A step's analysis where the step should pass: the shortest the API allows."""
HALT_ANALYSIS_SECONDS = 30
"""A step's analysis where a check should fail: longer, so that "halted within one analysis interval" means
something (the agent needs 10 s of measurements before it may call a rate too high)."""
STATUS_WRITES_PER_STEP = 3
"""The bound on status writes per step: the step's start, and the agents' reports (installed, loaded) gathered."""
REPORT_WRITES_PER_NODE = 4
"""The bound on one node's report writes for a whole two-step rollout: installed, loaded, the verdict, one spare
(a node outside a step delivers what it delivered: nothing to report)."""
FIGURES: dict[str, str] = {}
"""Figures for docs/performance.md, printed by each test (``pytest -s``)."""


def rollout_spec(analysis_seconds: int, **limits: float) -> Json:
    return {"steps": TWO_STEPS, "analysis": {"duration": f"{analysis_seconds}s", **limits}}


def figure(key: str, text: str) -> None:
    FIGURES[key] = text
    print(f"\n[rollout figures] {key}: {text}")


# -- fixtures: a control plane with five nodes, the operator, five agents and five Falcos ------------------


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with plane_with_crds(tmp_path_factory.mktemp("rollout-plane"), NODES) as started:
        yield started


@pytest.fixture(scope="module")
def operator_process(plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    process = OperatorProcess(plane, tmp_path_factory.mktemp("rollout-operator"))
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
async def fleet(
    plane: ControlPlane, operator_process: OperatorProcess, falco_binaries: FalcoBinaries,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Fleet]:  # fmt: skip
    api = await kr8s.asyncio.api(kubeconfig=str(plane.kubeconfig), namespace="default")
    await call(api, "POST", "/api/v1/namespaces", body={"metadata": {"name": NAMESPACE}})
    pods = await falco_pods(api, NAMESPACE, "falco", nodes=len(NODES))
    running = Fleet(plane, api, NAMESPACE, "falco", tmp_path_factory.mktemp("rollout-nodes"), falco_binaries,
                    operator_process)  # fmt: skip
    try:
        await running.add(NODES, pods)
        yield running
    finally:
        running.close()
        if api._session is not None:
            await api._session.aclose()


# -- waiting on the API and on the nodes ------------------------------------------------------------------


async def wait_artifact(
    fleet: Fleet, kind: str, name: str, accept: Callable[[Json], bool], what: str, timeout: float = 60
) -> Json:
    return await wait_for(partial(get_artifact, fleet.api, fleet.namespace, kind, name), accept, timeout=timeout,
                          what=f"{kind} {name}: {what}")  # fmt: skip


def in_phase(phase: str, **fields: Any) -> Callable[[Json], bool]:
    def accept(obj: Json) -> bool:
        rollout = rollout_of(obj)
        return rollout.get("phase") == phase and all(rollout.get(key) == item for key, item in fields.items())

    return accept


async def wait_on(rig: Rig, probe: Probe, name: str, accept: Callable[[str | None], bool], what: str,
                  timeout: float = 60) -> str:  # fmt: skip
    seen = await wait_for(partial(probe, rig, name), accept, timeout=timeout, interval=0.1,
                          what=f"{rig.node}: {what}")  # fmt: skip
    assert seen is not None
    return seen


async def stable_everywhere(fleet: Fleet, kind: str, name: str, probe: Probe, nodes: list[str]) -> str:
    """Wait until the first generation (rolled out at once) is Succeeded and every node runs it; its SHA-256."""
    await wait_artifact(fleet, kind, name, in_phase("Succeeded", stableGeneration=1), "generation 1 Succeeded")
    shas = {node: await wait_on(fleet.rigs[node], probe, name, bool, "generation 1") for node in nodes}
    assert len(set(shas.values())) == 1, shas
    return next(iter(shas.values()))


def other_than(sha: str) -> Callable[[str | None], bool]:
    return lambda seen: seen is not None and seen not in ("", sha)


async def halted_events(fleet: Fleet, name: str) -> list[Json]:
    return [event for event in await events_about(fleet.api, fleet.namespace, name)
            if event.get("reason") == "RolloutHalted"]  # fmt: skip


def match_rate(matches: list[tuple[float, float]], node: str, landed_at: float) -> str:
    """What Falco counted for the flooding rule while the candidate ran: ``matches`` is (time, counter) samples."""
    if len(matches) < 2:
        return f"{len(matches)} sample(s) of {MATCHES} on {node}"
    (first_at, first), (last_at, last) = matches[0], matches[-1]
    rate = (last - first) / max(last_at - first_at, 0.1)
    return (f'{MATCHES}{{rule_name="{FLOOD_RULE}"}} on {node}: {last:.0f} after {last_at - landed_at:.1f}s, '
            f"{rate:.1f}/s")  # fmt: skip


async def rollouts_total(fleet: Fleet, kind: str, result: str) -> float:
    return value(await scrape(fleet.operator.current.metrics_url), "falco_operator_rollouts_total", kind=kind,
                 result=result)  # fmt: skip


# -- 1 and 5: a two-step rollout that passes ---------------------------------------------------------------


@dataclass
class TwoStepRun:
    """What happened during one two-step rollout of Rulesfile ``canary``, recorded for the tests that follow."""

    first: list[str]
    stable: str
    candidate: str = ""
    step1: Json = field(default_factory=dict)
    history: History = field(default_factory=History)
    violations: list[str] = field(default_factory=list)
    samples: dict[str, int] = field(default_factory=dict)
    patched_at: float = 0.0
    patched_wall: float = 0.0
    step2_wall: float = 0.0
    landed_at: float = 0.0
    step2_at: float = 0.0
    succeeded_at: float = 0.0
    writes: list[Json] = field(default_factory=list)
    pods: dict[str, str] = field(default_factory=dict)
    bystander: str = ""
    """A node outside step 1, whose report entries are kept in ``bystander_entries`` from the edit to the end."""
    bystander_entries: list[Json] = field(default_factory=list)


@pytest.fixture(scope="module")
async def two_steps(fleet: Fleet) -> TwoStepRun:
    name = "canary"
    await create(
        fleet.api, NAMESPACE, rulesfile(name, rule("canary v1", QUIET), rollout=rollout_spec(ANALYSIS_SECONDS))
    )
    stable = await stable_everywhere(fleet, "Rulesfile", name, loaded_rules_sha, NODES)
    uid = (await get_artifact(fleet.api, NAMESPACE, "Rulesfile", name))["metadata"]["uid"]
    run = TwoStepRun(first_nodes(uid, 2, NODES, 1), stable)
    run.pods = {rig.agent.pod: node for node, rig in fleet.rigs.items()}
    others = [node for node in NODES if node not in run.first]
    await anyio.sleep(3)  # the first generation's late writes land before the mark
    mark = AuditMark.now(fleet.plane.state.audit_log)
    run.bystander = others[0]
    async with (
        watched(fleet.plane, NAMESPACE, "Rulesfile", name) as history,
        entry_log(fleet.api, fleet.rigs[run.bystander].agent, "Rulesfile", name) as bystander,
    ):
        run.history, run.bystander_entries = history, bystander.entries
        async with stable_watch(fleet, "Rulesfile", name, stable, loaded_rules_sha, others) as watch:
            run.patched_at, run.patched_wall = time.monotonic(), time.time()
            await patch(fleet.api, NAMESPACE, "Rulesfile", name, {"spec": {"inlineRules": rule("canary v2", QUIET)}})
            step1 = in_phase("Progressing", candidateGeneration=2, step=1)
            run.step1 = await wait_artifact(fleet, "Rulesfile", name, step1, "step 1 of generation 2")
            run.candidate = await wait_on(fleet.rigs[run.first[0]], loaded_rules_sha, name, other_than(stable),
                                          "generation 2 loaded")  # fmt: skip
            run.landed_at = time.monotonic()
            await wait_artifact(fleet, "Rulesfile", name, lambda obj: rollout_of(obj).get("step") == 2 or
                                rollout_of(obj).get("phase") == "Succeeded", "step 2")  # fmt: skip
            run.step2_at, run.step2_wall = time.monotonic(), time.time()
            run.violations, run.samples = list(watch.violations), dict(watch.samples)
        succeeded = in_phase("Succeeded", stableGeneration=2)
        await wait_artifact(fleet, "Rulesfile", name, succeeded, "generation 2 Succeeded")
        run.succeeded_at = time.monotonic()
        for node in NODES:
            await wait_on(fleet.rigs[node], loaded_rules_sha, name, lambda seen: seen == run.candidate, "generation 2")
        await anyio.sleep(3)  # late writes for the rollout would land within this
        run.writes = mark.writes_since(namespace=NAMESPACE)
    return run


async def test_a_two_step_rollout_lands_on_the_first_steps_node_then_on_all_once_the_analysis_passed(
    fleet: Fleet, two_steps: TwoStepRun
) -> None:
    run = two_steps
    first = run.first[0]
    step1 = rollout_of(run.step1)
    assert step1["nodes"] == run.first, f"the contract's ranking picks {run.first}; status.rollout = {step1}"
    assert (step1["stableGeneration"], step1["steps"]) == (1, 2), step1
    assert step1.get("stepStartedAt"), step1
    programmed = condition(run.step1, "Programmed")
    assert (programmed.get("status"), programmed.get("reason")) == ("False", "RollingOut"), programmed
    assert run.candidate != run.stable

    # The other four Falcos ran generation 1 throughout step 1 (each polled about once a second, 0.2 s apart).
    assert not run.violations, run.violations
    assert all(run.samples.get(node, 0) >= 5 for node in NODES if node != first), run.samples
    step1_seconds = run.step2_at - run.landed_at
    assert step1_seconds >= ANALYSIS_SECONDS - 1, f"step 1 passed after {step1_seconds:.1f}s of analysis"

    # status.rollout showed each step, in order.
    seen = [(r.get("phase"), r.get("stableGeneration"), r.get("step"), tuple(sorted(r.get("nodes") or [])))
            for r in run.history.rollouts(run.patched_at)]  # fmt: skip
    expected = [("Progressing", 1, 1, (first,)), ("Progressing", 1, 2, tuple(NODES)), ("Succeeded", 2, None, ())]
    assert [item for item in seen if item in expected] == expected, run.history.describe(run.patched_at)
    done = await get_artifact(fleet.api, NAMESPACE, "Rulesfile", "canary")
    assert condition(done, "Programmed").get("status") == "True", done["status"]
    assert done["status"]["nodes"]["loaded"] == len(NODES), done["status"]

    # The stable generation is kept in the snapshot the operator owns.
    snapshot_name = rollout_of(done)["snapshot"]
    assert snapshot_name == "canary-rulesfile-stable"
    snapshot = await call(fleet.api, "GET", f"/api/v1/namespaces/{NAMESPACE}/configmaps/{snapshot_name}")
    kept = json.loads(snapshot["data"][SNAPSHOT_KEY])
    assert (kept["kind"], kept["metadata"]["name"], kept["metadata"]["generation"]) == ("Rulesfile", "canary", 2)
    assert "canary v2" in kept["spec"]["inlineRules"]
    assert snapshot["metadata"]["labels"]["artifact.falcosecurity.dev/snapshot-of"] == "Rulesfile.canary"
    assert snapshot["metadata"]["ownerReferences"][0]["uid"] == done["metadata"]["uid"]

    reasons = [event["reason"] for event in await events_about(fleet.api, NAMESPACE, "canary")]
    assert "RolloutStep" in reasons, reasons
    assert "RolloutSucceeded" in reasons, reasons
    assert await rollouts_total(fleet, "Rulesfile", "succeeded") >= 1
    figure(
        "two steps",
        f"edit to candidate loaded on {first}: {run.landed_at - run.patched_at:.1f}s; step 1 "
        f"(analysis {ANALYSIS_SECONDS}s) passed after {step1_seconds:.1f}s; edit to Succeeded: "
        f"{run.succeeded_at - run.patched_at:.1f}s; Falco samples of the other nodes during step 1: {run.samples}",
    )


async def test_a_rollout_writes_a_bounded_status_per_step_and_nothing_once_it_succeeded(
    fleet: Fleet, two_steps: TwoStepRun
) -> None:
    run = two_steps
    status_writes = [w for w in run.writes if w["objectRef"].get("resource") == "rulesfiles"
                     and w["objectRef"].get("subresource") == "status"]  # fmt: skip
    assert {w["user"]["username"] for w in status_writes} == {fleet.operator.current.username}, "one writer"
    per_phase: dict[str, int] = {}
    for version in run.history.status_changes(run.patched_at):
        rollout = version.rollout
        if rollout.get("phase") == "Progressing":
            key = f"step {rollout.get('step')}"
        else:
            key = f"{rollout.get('phase')} (generation {rollout.get('stableGeneration')})"
        per_phase[key] = per_phase.get(key, 0) + 1
    assert len(status_writes) == sum(per_phase.values()), f"writes that changed nothing? {describe(status_writes)}"
    assert per_phase.get("step 1", 0) <= STATUS_WRITES_PER_STEP, per_phase
    assert per_phase.get("step 2", 0) <= STATUS_WRITES_PER_STEP, per_phase
    assert per_phase.get("Succeeded (generation 2)", 0) <= STATUS_WRITES_PER_STEP, per_phase
    assert set(per_phase) <= {"step 1", "step 2", "Succeeded (generation 2)"}, per_phase

    figure("status writes", f"per phase of a two-step rollout: {per_phase} (bound {STATUS_WRITES_PER_STEP} per step)")

    mark = AuditMark.now(fleet.plane.state.audit_log)
    await anyio.sleep(10)
    writes = mark.writes_since(namespace=NAMESPACE)
    assert writes == [], describe(writes)


def wall_time(write: Json) -> float:
    return datetime.fromisoformat(write["stageTimestamp"].replace("Z", "+00:00")).timestamp()


async def test_an_agent_writes_its_report_only_when_its_node_takes_part_in_a_step(two_steps: TwoStepRun) -> None:
    run = two_steps
    reports: dict[str, int] = {}
    during_step1: dict[str, int] = {}
    for write in run.writes:
        if write["objectRef"].get("resource") != "artifactreports":
            continue
        node = run.pods.get(write["objectRef"].get("name", ""), "?")
        reports[node] = reports.get(node, 0) + 1
        if run.patched_wall <= wall_time(write) < run.step2_wall and node not in run.first:
            during_step1[node] = during_step1.get(node, 0) + 1
    bystander = [
        {key: item.get(key) for key in ("generation", "state", "reason", "message", "analysis")}
        for item in run.bystander_entries
    ]
    figure("report writes", f"per node for a two-step rollout: {reports} (bound {REPORT_WRITES_PER_NODE}); by "
           f"nodes outside step 1 during step 1: {during_step1} (expected none)")  # fmt: skip
    assert not during_step1, f"{run.bystander}'s report entries from the edit on: {bystander}"
    assert all(count <= REPORT_WRITES_PER_NODE for count in reports.values()), reports


# -- 2: a flooding candidate is halted at the first step ---------------------------------------------------


async def test_a_candidate_that_matches_every_event_is_halted_at_the_first_step_and_rolled_back(
    fleet: Fleet,
) -> None:
    name = "flood"
    spec = rollout_spec(HALT_ANALYSIS_SECONDS, maxRuleRate=1)
    await create(fleet.api, NAMESPACE, rulesfile(name, rule("flood quiet", QUIET), rollout=spec))
    try:
        stable = await stable_everywhere(fleet, "Rulesfile", name, loaded_rules_sha, NODES)
        uid = (await get_artifact(fleet.api, NAMESPACE, "Rulesfile", name))["metadata"]["uid"]
        first = first_nodes(uid, 2, NODES, 1)[0]
        rig = fleet.rigs[first]
        others = [node for node in NODES if node != first]
        halted_before = await rollouts_total(fleet, "Rulesfile", "halted")
        async with stable_watch(fleet, "Rulesfile", name, stable, loaded_rules_sha, others) as watch:
            patched_at = time.monotonic()
            await patch(fleet.api, NAMESPACE, "Rulesfile", name, {"spec": {"inlineRules": rule(FLOOD_RULE, FLOOD)}})
            await wait_on(rig, loaded_rules_sha, name, other_than(stable), "the flooding candidate loaded")
            landed_at = time.monotonic()
            matches: list[tuple[float, float]] = []

            async def halted() -> Json:
                count = await rule_matches(rig, FLOOD_RULE)
                if count:
                    matches.append((time.monotonic(), count))
                return await get_artifact(fleet.api, NAMESPACE, "Rulesfile", name)

            obj = await wait_for(halted, in_phase("Halted"), timeout=HALT_ANALYSIS_SECONDS + 30, interval=0.5,
                                 what="the rollout Halted")  # fmt: skip
            halted_at = time.monotonic()
            await wait_on(rig, loaded_rules_sha, name, lambda seen: seen == stable, "back on the stable generation")
            back_at = time.monotonic()
            await anyio.sleep(2)
        fired = match_rate(matches, first, landed_at)
        rollout = rollout_of(obj)
        message = rollout.get("message") or ""
        for expected in (first, "RuleRate", FLOOD_RULE):
            assert expected in message, f"{expected!r} not in {message!r}; {fired}"
        assert (rollout.get("candidateGeneration"), rollout.get("nodes")) == (2, None), rollout
        assert rollout.get("stableGeneration") == 1, rollout
        assert back_at - landed_at < HALT_ANALYSIS_SECONDS, (
            f"rolled back {back_at - landed_at:.1f}s after the candidate landed (analysis {HALT_ANALYSIS_SECONDS}s); "
            f"{fired}")  # fmt: skip
        assert not watch.violations, watch.verdict()
        assert all(watch.samples.get(node, 0) >= 5 for node in others), watch.samples
        programmed = condition(await get_artifact(fleet.api, NAMESPACE, "Rulesfile", name), "Programmed")
        assert (programmed.get("status"), programmed.get("reason")) == ("False", "RolledBack"), programmed
        events = await wait_for(partial(halted_events, fleet, name), bool, what="a RolloutHalted Event")
        assert events[0]["type"] == "Warning", events[0]
        assert first in events[0]["note"], events[0]
        assert await rollouts_total(fleet, "Rulesfile", "halted") == halted_before + 1
        figure(
            "halt on the alert rate",
            f"{fired}; status message {message!r}; edit to candidate loaded: "
            f"{landed_at - patched_at:.1f}s; loaded to Halted: {halted_at - landed_at:.1f}s; loaded to the stable "
            f"generation back in Falco: {back_at - landed_at:.1f}s (analysis {HALT_ANALYSIS_SECONDS}s)",
        )
    finally:
        await delete(fleet.api, NAMESPACE, "Rulesfile", name)


# -- 3: a candidate Falco refuses is halted the same way ---------------------------------------------------


async def test_a_candidate_falco_refuses_is_halted_at_the_first_step_and_rolled_back(fleet: Fleet) -> None:
    name = "matching"
    spec = {"config": {"rule_matching": "first"}, "rollout": rollout_spec(HALT_ANALYSIS_SECONDS)}
    config = {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Config", "metadata": {"name": name},
              "spec": spec}  # fmt: skip
    await create(fleet.api, NAMESPACE, config)
    try:
        stable = await stable_everywhere(fleet, "Config", name, installed_config_sha, NODES)
        uid = (await get_artifact(fleet.api, NAMESPACE, "Config", name))["metadata"]["uid"]
        first = first_nodes(uid, 2, NODES, 1)[0]
        rig = fleet.rigs[first]
        others = [node for node in NODES if node != first]
        failures = {node: fleet.rigs[node].falco.reload_failures() for node in NODES}
        halted_before = await rollouts_total(fleet, "Config", "halted")
        async with stable_watch(fleet, "Config", name, stable, installed_config_sha, others) as watch:
            patched_at = time.monotonic()
            # Valid to the operator and the agents; Falco refuses the reload (unknown rule matching strategy).
            await patch(fleet.api, NAMESPACE, "Config", name, {"spec": {"config": {"rule_matching": "bogus"}}})
            await wait_on(rig, installed_config_sha, name, other_than(stable), "the candidate installed")
            landed_at = time.monotonic()

            async def refusals() -> int:
                return rig.falco.reload_failures()

            await wait_for(refusals, lambda seen: seen > failures[first], what=f"{first}'s Falco refusing the reload")
            refused_at = time.monotonic()
            obj = await wait_artifact(fleet, "Config", name, in_phase("Halted"), "the rollout Halted")
            halted_at = time.monotonic()
            await wait_on(rig, installed_config_sha, name, lambda seen: seen == stable, "back on the stable")
            back_at = time.monotonic()
            await anyio.sleep(2)
        rollout = rollout_of(obj)
        message = rollout.get("message") or ""
        assert 'Unknown rule matching strategy "bogus"' in rig.falco.log()
        assert first in message, message
        assert (rollout.get("candidateGeneration"), rollout.get("nodes")) == (2, None), rollout
        assert back_at - landed_at < HALT_ANALYSIS_SECONDS, f"rolled back after {back_at - landed_at:.1f}s"
        assert not watch.violations, watch.verdict()
        assert {node: fleet.rigs[node].falco.reload_failures() for node in others} == {
            node: failures[node] for node in others}, "the other Falcos never saw the candidate"  # fmt: skip
        events = await wait_for(partial(halted_events, fleet, name), bool, what="a RolloutHalted Event")
        assert events[0]["type"] == "Warning", events[0]
        assert first in events[0]["note"], events[0]
        assert await rollouts_total(fleet, "Config", "halted") == halted_before + 1
        figure(
            "halt on a refusal",
            f"status message {message!r}; edit to candidate installed: "
            f"{landed_at - patched_at:.1f}s; installed to Falco's refusal: {refused_at - landed_at:.1f}s; to Halted: "
            f"{halted_at - landed_at:.1f}s; to the stable fragment back: {back_at - landed_at:.1f}s",
        )
    finally:
        await delete(fleet.api, NAMESPACE, "Config", name)


# -- 4: an operator restart and a new node in the middle of a rollout --------------------------------------


async def test_a_paused_rollout_survives_an_operator_restart_and_a_new_node_gets_the_stable_generation(
    fleet: Fleet,
) -> None:
    name = "resume"
    new_node = "node6"
    await create(
        fleet.api, NAMESPACE, rulesfile(name, rule("resume v1", QUIET), rollout=rollout_spec(ANALYSIS_SECONDS))
    )
    stable = await stable_everywhere(fleet, "Rulesfile", name, loaded_rules_sha, NODES)
    uid = (await get_artifact(fleet.api, NAMESPACE, "Rulesfile", name))["metadata"]["uid"]
    first = first_nodes(uid, 2, NODES, 1)
    others = [node for node in NODES if node not in first]
    async with (
        watched(fleet.plane, NAMESPACE, "Rulesfile", name) as history,
        stable_watch(fleet, "Rulesfile", name, stable, loaded_rules_sha, others) as watch,
    ):
        started_at = time.monotonic()
        await patch(fleet.api, NAMESPACE, "Rulesfile", name, {"spec": {"inlineRules": rule("resume v2", QUIET)}})
        await wait_artifact(fleet, "Rulesfile", name, in_phase("Progressing", candidateGeneration=2, step=1), "step 1")
        await patch(
            fleet.api, NAMESPACE, "Rulesfile", name, {"metadata": {"annotations": {ROLLOUT_ANNOTATION: "pause"}}}
        )
        paused = rollout_of(await wait_artifact(fleet, "Rulesfile", name, in_phase("Paused"), "Paused"))
        assert paused["nodes"] == first, paused
        candidate = await wait_on(fleet.rigs[first[0]], loaded_rules_sha, name, other_than(stable), "generation 2")

        fleet.operator.restart()
        added = await fleet.add_node(new_node)
        watch.join(new_node)
        await wait_on(added, loaded_rules_sha, name, lambda seen: seen == stable, "the stable generation")
        after = await wait_artifact(fleet, "Rulesfile", name, lambda obj: (obj.get("status") or {}).get(
            "nodes", {}).get("targeted") == len(NODES) + 1, "six nodes targeted")  # fmt: skip
        assert rollout_of(after) == paused, f"before the restart {paused}, after {rollout_of(after)}"
        await anyio.sleep(3)
        assert await loaded_rules_sha(fleet.rigs[first[0]], name) == candidate
        assert await loaded_rules_sha(added, name) == stable

        await patch(fleet.api, NAMESPACE, "Rulesfile", name, {"metadata": {"annotations": {ROLLOUT_ANNOTATION: None}}})
        step2 = await wait_artifact(fleet, "Rulesfile", name, lambda obj: rollout_of(obj).get("step") == 2 or
                                    rollout_of(obj).get("phase") == "Succeeded", "step 2 after resuming")  # fmt: skip
        violations = list(watch.violations)
    done = await wait_artifact(fleet, "Rulesfile", name, in_phase("Succeeded", stableGeneration=2), "Succeeded")
    for node in [*NODES, new_node]:
        await wait_on(fleet.rigs[node], loaded_rules_sha, name, lambda seen: seen == candidate, "generation 2")
    assert not violations, violations
    steps = [(r.get("phase"), r.get("step"), tuple(r.get("nodes") or [])) for r in history.rollouts(started_at)]
    assert all(nodes == tuple(first) for phase, step, nodes in steps if step == 1), history.describe(started_at)
    if rollout_of(step2).get("step") == 2:
        assert sorted(rollout_of(step2)["nodes"]) == sorted([*NODES, new_node]), rollout_of(step2)
    assert rollout_of(done).get("stableGeneration") == 2
    figure(
        "restart",
        f"paused at step 1 on {first}; operator restarted and {new_node} added; {history.describe(started_at)}",
    )
