"""The set invariant against real Falco: every set the planner writes is one Falco accepts, and a running Falco
loads what is written after a dependency leaves (case 1), a plugin name is taken (case 2) or a rule uses a macro
of a later file (case 9), then keeps loading later changes (before the set invariant Falco refused those reloads
and every later change with them)."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from artifact_agent.materializer import Directories, Materializer
from e2e.falco import RELOAD_FAILURE_LINE, SHARED_FALCO, FalcoBinaries, RunningFalco, run_falco, write_yaml
from e2e.falco_verdict import FalcoVerdict, verdict_from_output
from e2e.wait import wait_for
from falco_operator.api import Engine
from falco_operator.api.plain import Rulesfile
from falco_operator.artifacts import (
    CONFIG_DIR,
    PLUGINS_CONFIG_FILE,
    ArtifactKey,
    Delivered,
    Plan,
    plan,
    sha256_hex,
)
from falco_operator.artifacts.rules import rules_set_check
from falco_operator.instance.falcoconfig import base_config
from tests.set_sequences import PLUGINS_DIR, plugin_object, sequence, written_rules

pytestmark = pytest.mark.anyio
SEEDS = 150
MACRO_M = "- macro: m\n  condition: evt.num > 0\n"
USES_M = "- rule: uses m\n  desc: d\n  condition: m and evt.num < 9\n  output: o\n  priority: NOTICE\n"
LATER = "- rule: later\n  desc: d\n  condition: evt.num = 7\n  output: o\n  priority: NOTICE\n"


def libraries(binaries: FalcoBinaries) -> dict[str, str]:
    shared = SHARED_FALCO / "plugins"
    return {"container": str(binaries.container_plugin), "k8saudit": str(shared / "libk8saudit.so"),
            "json": str(shared / "libjson.so")}  # fmt: skip


def falco_validates(binaries: FalcoBinaries, result: Plan, workdir: Path) -> FalcoVerdict:
    """``falco -V`` on the written rules files in load order, with the written config fragments (the plugins)."""
    workdir.mkdir(parents=True)
    (workdir / "config.d").mkdir()
    for name, data in result.directories[CONFIG_DIR].items():
        (workdir / "config.d" / name).write_bytes(data)
    command = [str(binaries.falco), "-c", str(_validation_config(workdir)), "-o", "json_output=true"]
    for name, data in written_rules(result):
        (workdir / name).write_bytes(data)
        command += ["-V", str(workdir / name)]
    if not written_rules(result):
        (workdir / "empty.yaml").write_text("[]\n")
        command += ["-V", str(workdir / "empty.yaml")]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    if run.returncode != 0 and "{" not in run.stdout and "Error: " not in run.stderr:
        # Falco stopped before judging any rules file (two plugins of one name: "Runtime error: ...").
        return FalcoVerdict(False, [], {}, (run.stdout + run.stderr).strip().splitlines()[-1])
    return verdict_from_output(run.returncode, run.stdout, run.stderr)


def _validation_config(workdir: Path) -> Path:
    config = base_config(Engine(kind="nodriver")) | {"rules_files": [], "config_files": [str(workdir / "config.d")],
                                        "log_stderr": True, "log_syslog": False}  # fmt: skip
    config["webserver"] = config["webserver"] | {"enabled": False}
    config["metrics"] = config["metrics"] | {"enabled": False}
    return write_yaml(workdir / "falco.yaml", config)


def test_falco_accepts_every_set_the_planner_writes(falco_binaries: FalcoBinaries, tmp_path: Path) -> None:
    judged: dict[bytes, str] = {}
    for seed in range(SEEDS):
        history: list[str] = []
        for step in sequence(seed, 8, libraries(falco_binaries)):
            history.append(step.what)
            written = repr(sorted(step.result.directories[CONFIG_DIR].items()) + written_rules(step.result)).encode()
            if written in judged:
                continue
            verdict = falco_validates(falco_binaries, step.result, tmp_path / f"{len(judged)}")
            judged[written] = f"seed {seed}: " + "; ".join(history)
            assert verdict.successful, (f"Falco refuses the set written after {judged[written]}: "
                                        f"{verdict.failure or verdict.errors()}")  # fmt: skip
    assert len(judged) > 100, f"only {len(judged)} distinct sets"


# -- the cases on a running Falco -------------------------------------------------------------------------------


class Node:
    """The agent's planning and writing, pass by pass, over directories a real Falco reads."""

    def __init__(self, tmp_path: Path) -> None:
        self.directories = Directories(tmp_path / "rules.d", tmp_path / "config.d", tmp_path / "plugins")
        self.materializer = Materializer(self.directories)
        self.last_good: Mapping[ArtifactKey, Delivered] = {}
        self.result: Plan | None = None

    def write(self, artifacts: Sequence[Any]) -> Plan:
        self.result = plan(artifacts, {}, self.last_good, plugins_dir=PLUGINS_DIR, rules_set_check=rules_set_check)
        self.last_good = self.result.remembered
        self.materializer.apply(self.result.directories)
        return self.result

    def rules_hashes(self) -> dict[str, str]:
        assert self.result is not None
        return {name: sha256_hex(data) for name, data in written_rules(self.result)}


def rulesfile(name: str, text: str, priority: int = 50, generation: int = 1) -> Rulesfile:
    return Rulesfile.from_wire({"metadata": {"name": name, "generation": generation},
                                "spec": {"inlineRules": text, "priority": priority}})  # fmt: skip


async def loads_what_is_written(falco: RunningFalco, node: Node, reloads: int) -> int:
    """Falco reloads after the swap, without refusing it, and runs exactly the written rules files."""
    failures = falco.reload_failures()

    async def counts() -> tuple[int, int]:
        assert falco.alive(), falco.log()[-3000:]
        return falco.reload_count(), falco.reload_failures()

    seen = await wait_for(counts, lambda seen: seen != (reloads, failures), interval=0.05,
                          what="Falco's reload after the swap")  # fmt: skip
    refusals = [line for line in falco.log().splitlines() if RELOAD_FAILURE_LINE in line]
    assert seen[1] == failures, f"Falco refused the written set: {refusals[-1]}"
    await falco.wait_healthy()
    await falco.wait_rules(node.rules_hashes(), timeout=15)
    assert falco.reload_failures() == failures, falco.log()[-3000:]
    return falco.reload_count()


async def keeps_loading_later_changes(falco: RunningFalco, node: Node, artifacts: list[Any], reloads: int) -> None:
    node.write([*artifacts, rulesfile("later", LATER, priority=90)])
    assert "90-03-later-inline.yaml" in node.rules_hashes()
    await loads_what_is_written(falco, node, reloads)


def outcome(node: Node, name: str) -> tuple[str, str | None]:
    assert node.result is not None
    found = next(o for o in node.result.outcomes if o.key.name == name)
    return found.state, found.reason


async def test_case_1_falco_reloads_without_a_dependent_whose_dependency_was_deleted(
    falco_binaries: FalcoBinaries, tmp_path: Path
) -> None:
    node = Node(tmp_path)
    base, team = rulesfile("base", MACRO_M, priority=10), rulesfile("team", USES_M)
    node.write([base, team])
    with run_falco(tmp_path / "falco", *node.directories.by_kind().values(), binaries=falco_binaries) as falco:
        await falco.wait_rules(node.rules_hashes())
        reloads = falco.reload_count()
        node.write([team])  # base deleted
        assert outcome(node, "team") == ("Failed", "DependencyGone")
        reloads = await loads_what_is_written(falco, node, reloads)
        await keeps_loading_later_changes(falco, node, [team], reloads)


async def test_case_2_falco_reloads_when_a_second_plugin_takes_a_delivered_plugin_name(
    falco_binaries: FalcoBinaries, tmp_path: Path
) -> None:
    node = Node(tmp_path)
    libs = libraries(falco_binaries)
    b = plugin_object("b", 1, "container", libs)
    node.write([b, rulesfile("rules", LATER.replace("later", "first"))])
    with run_falco(tmp_path / "falco", *node.directories.by_kind().values(), binaries=falco_binaries) as falco:
        await falco.wait_rules(node.rules_hashes())
        assert "Loaded plugin 'container@" in falco.log()
        reloads = falco.reload_count()
        a = plugin_object("a", 1, "container", libs)
        node.write([a, b, rulesfile("rules", LATER.replace("later", "second"), generation=2)])
        assert outcome(node, "b") == ("Invalid", "NameConflict")
        fragment = (node.directories.config / PLUGINS_CONFIG_FILE).read_text()
        assert fragment.count("- container") == 1, fragment
        reloads = await loads_what_is_written(falco, node, reloads)
        await keeps_loading_later_changes(falco, node, [a, b], reloads)
        assert falco.alive()


async def test_case_9_falco_loads_the_set_without_a_rule_using_a_macro_of_a_later_file(
    falco_binaries: FalcoBinaries, tmp_path: Path
) -> None:
    node = Node(tmp_path)
    base = rulesfile("base", MACRO_M, priority=70)
    node.write([base])
    with run_falco(tmp_path / "falco", *node.directories.by_kind().values(), binaries=falco_binaries) as falco:
        await falco.wait_rules(node.rules_hashes())
        reloads = falco.reload_count()
        early = rulesfile("team", USES_M, priority=60)  # the priority of the generated FalcoRules file
        node.write([base, early])
        assert outcome(node, "team") == ("Invalid", "InvalidRules")
        assert list(node.rules_hashes()) == ["70-03-base-inline.yaml"]
        await keeps_loading_later_changes(falco, node, [base, early], reloads)
        reloads = falco.reload_count()
        node.write([base, rulesfile("team", USES_M, priority=80, generation=2)])
        assert outcome(node, "team") == ("Installed", "Installed")
        await loads_what_is_written(falco, node, reloads)
