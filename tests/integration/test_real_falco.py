"""Real Falco (nodriver) over directories laid out as the agent lays them out: what it loads, when it reloads,
what it refuses. These are the facts the agent and the artifact status rest on."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import anyio
import pytest

from artifact_agent.layout import GenerationDirectory
from e2e.falco import FalcoBinaries, run_falco, validate_rules
from e2e.wait import wait_for

pytestmark = pytest.mark.anyio
TESTDATA = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "falco-rules"
QUIET = "evt.type = open and proc.name = never-runs-here"


def rules(*names: str, condition: str = QUIET) -> bytes:
    return "".join(
        f"- rule: {name}\n  desc: rule {name}\n  condition: {condition}\n  output: {name} (%proc.name)\n"
        "  priority: NOTICE\n"
        for name in names
    ).encode()


def hashes(files: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


def dirs(tmp_path: Path) -> tuple[Path, Path, Path]:
    return tmp_path / "rules.d", tmp_path / "config.d", tmp_path / "plugins"


async def test_falco_loads_exactly_the_visible_files_and_each_swap_is_one_reload(
    tmp_path: Path, falco_binaries: FalcoBinaries
) -> None:
    rules_dir, config_dir, plugins_dir = dirs(tmp_path)
    layout = GenerationDirectory(rules_dir)
    generations = [
        {"10-a.yaml": rules("a")},  # the first generation
        {"10-a.yaml": rules("a"), "20-b.yaml": rules("b"), "30-c.yaml": rules("c")},  # adds two files
        {"20-b.yaml": rules("b"), "30-c.yaml": rules("c")},  # removes one
        {"20-b.yaml": rules("b", "b2"), "30-c.yaml": rules("c")},  # changes one
    ]
    layout.swap(generations[0])
    with run_falco(tmp_path / "falco", rules_dir, config_dir, plugins_dir, binaries=falco_binaries) as falco:
        await falco.wait_healthy()
        await falco.wait_rules(hashes(generations[0]))
        reloads = falco.reload_count()
        for files in generations[1:]:
            assert layout.swap(files)
            reloads = await falco.wait_reloaded(reloads)
            await falco.wait_rules(hashes(files))
        await anyio.sleep(2)  # a second reload for one swap would come within this (Falco reacts in under 0.5 s)
        assert falco.reload_count() == len(generations) - 1, falco.log()[-3000:]
        assert falco.reload_failures() == 0


async def test_a_config_fragment_swap_is_one_reload_and_takes_effect(
    tmp_path: Path, falco_binaries: FalcoBinaries
) -> None:
    rules_dir, config_dir, plugins_dir = dirs(tmp_path)
    GenerationDirectory(rules_dir).swap({"50-noisy.yaml": rules("noisy", condition="evt.num > 0")})
    config = GenerationDirectory(config_dir)
    config.swap({"50-output.yaml": b"json_output: false\n"})
    with run_falco(tmp_path / "falco", rules_dir, config_dir, plugins_dir, binaries=falco_binaries) as falco:
        await falco.wait_healthy()

        async def json_alerts() -> int:
            return sum(1 for line in falco.log().splitlines() if line.startswith("{") and '"rule":"noisy"' in line)

        await wait_for(lambda: anyio.sleep(0.1), lambda _: "noisy (" in falco.log(), what="plain-text alerts")
        assert await json_alerts() == 0
        reloads = falco.reload_count()
        config.swap({"50-output.yaml": b"json_output: true\n"})
        await falco.wait_reloaded(reloads)
        await wait_for(json_alerts, lambda count: count > 0, what="JSON alerts after the fragment changed")
        await anyio.sleep(2)
        assert falco.reload_count() == reloads + 1
        # Falco 0.44 lists its main config file here, not the fragments of config_files: a fragment's load
        # cannot be confirmed from the metrics (the artifact status relies on this).
        assert set(await falco.config_hashes()) == {"falco.yaml"}


async def test_an_invalid_rules_file_makes_falco_refuse_the_whole_reload_and_keep_running(
    tmp_path: Path, falco_binaries: FalcoBinaries
) -> None:
    rules_dir, config_dir, plugins_dir = dirs(tmp_path)
    layout = GenerationDirectory(rules_dir)
    good = {"10-a.yaml": rules("a")}
    layout.swap(good)
    with run_falco(tmp_path / "falco", rules_dir, config_dir, plugins_dir, binaries=falco_binaries) as falco:
        await falco.wait_healthy()
        await falco.wait_rules(hashes(good))
        broken = b"- rule: broken\n  desc: d\n  condition: evt.type = open and\n  output: o\n  priority: NOTICE\n"
        layout.swap(good | {"20-broken.yaml": broken, "30-c.yaml": rules("c")})

        async def failures() -> int:
            return falco.reload_failures()

        await wait_for(failures, lambda count: count > 0, what="a refused hot restart")
        assert "20-broken.yaml" in falco.log().split("hot restart failure", 1)[1][:2000]
        assert falco.alive()
        assert await falco.rules_hashes() == hashes(good), "the valid file beside it was not loaded either"

        fixed = good | {"30-c.yaml": rules("c")}
        layout.swap(fixed)
        await falco.wait_rules(hashes(fixed))


def test_falco_accepts_the_published_rules_in_their_documented_order(falco_binaries: FalcoBinaries) -> None:
    verdict = validate_rules([TESTDATA / "falco_rules.yaml", TESTDATA / "falco-incubating_rules.yaml"],
                             binaries=falco_binaries)  # fmt: skip
    assert verdict.successful, verdict.raw
    assert [Path(result["name"]).name for result in verdict.results] == [
        "falco_rules.yaml", "falco-incubating_rules.yaml"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "plugin"), [("k8s_audit_rules.yaml", "k8saudit (>= 0.18.0)"), ("aws_cloudtrail_rules.yaml", "cloudtrail")]
)
def test_plugin_rule_sets_need_their_plugin_loaded(falco_binaries: FalcoBinaries, name: str, plugin: str) -> None:
    # Only the container plugin is built here: Falco refuses these files before reading a rule, and says why.
    verdict = validate_rules([TESTDATA / name], binaries=falco_binaries)
    assert not verdict.successful
    assert verdict.failure is not None
    assert f"Plugin requirement not satisfied, must load one of: {plugin}" in verdict.failure


def test_a_broken_condition_in_the_default_rules_gets_falcos_error_code_and_line(
    tmp_path: Path, falco_binaries: FalcoBinaries
) -> None:
    lines = (TESTDATA / "falco_rules.yaml").read_text().splitlines(keepends=True)
    target = next(index for index, line in enumerate(lines) if line == "  condition: (evt.num=0)\n")
    lines[target] = "  condition: (evt.num=0 and)\n"
    broken = tmp_path / "falco_rules.yaml"
    broken.write_text("".join(lines))
    verdict = validate_rules([broken], binaries=falco_binaries)
    assert not verdict.successful
    assert verdict.error_codes() == ["LOAD_ERR_COMPILE_CONDITION"], json.dumps(verdict.raw)[:2000]
    assert (str(broken), target + 1) in verdict.error_lines()
