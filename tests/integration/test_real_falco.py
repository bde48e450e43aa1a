"""Real Falco (nodriver) over directories laid out as Kubernetes lays out ConfigMap volumes: what it loads, when it
reloads, what it refuses, what it says about rules files. These are the facts the agent and the artifact status
rest on; ``e2e/configmap_volume.py`` writes the directories (independently of the agent's own materializer)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from artifact_agent.confirmation import observe
from artifact_agent.layout import GenerationDirectory
from e2e.configmap_volume import ConfigMapVolume, sha256s
from e2e.falco import (
    RELOAD_FAILURE_LINE,
    RELOAD_LINE,
    RELOAD_WITHIN,
    FalcoBinaries,
    RunningFalco,
    container_plugin_config,
    run_falco,
    validate_rules,
)
from e2e.falco_alerts import parse_alerts
from e2e.wait import WaitTimeout, wait_for
from falco_operator.api import Falco
from falco_operator.instance.options import BuildOptions
from falco_operator.instance.podtemplate import falco_container
from falco_operator.kube.http import HttpClient, Response, Timeouts

pytestmark = pytest.mark.anyio
TESTDATA = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "falco-rules"
QUIET = "evt.type = open and proc.name = never-runs-here"


def rules(*names: str, condition: str = QUIET) -> bytes:
    return "".join(
        f"- rule: {name}\n  desc: rule {name}\n  condition: {condition}\n  output: {name} (%proc.name)\n"
        "  priority: NOTICE\n"
        for name in names
    ).encode()


def volumes(tmp_path: Path) -> tuple[ConfigMapVolume, ConfigMapVolume, Path]:
    """The agent's three directories: rules and config as ConfigMap-style volumes, plugins a plain directory."""
    return ConfigMapVolume(tmp_path / "rules.d"), ConfigMapVolume(tmp_path / "config.d"), tmp_path / "plugins"


async def test_falco_loads_exactly_the_visible_files_and_each_swap_is_one_reload(
    tmp_path: Path, falco_binaries: FalcoBinaries
) -> None:
    rules_dir, config_dir, plugins_dir = volumes(tmp_path)
    first = {"10-a.yaml": rules("a"), "20-b.yaml": rules("b")}
    swaps = [
        first | {"30-c.yaml": rules("c")},  # adds a file
        {"10-a.yaml": rules("a"), "30-c.yaml": rules("c")},  # removes one
        {"10-a.yaml": rules("a", "a2"), "30-c.yaml": rules("c")},  # changes one
    ]
    rules_dir.write(first)
    with run_falco(tmp_path / "falco", rules_dir.path, config_dir.path, plugins_dir, binaries=falco_binaries) as falco:
        await falco.wait_rules(sha256s(first))  # the hidden ..<generation>/ and ..data are not loaded
        start = falco.reload_count()
        for number, files in enumerate(swaps, start=1):
            rules_dir.write(files)
            assert rules_dir.visible() == files
            assert await falco.wait_reloaded(start + number - 1) == start + number
            await falco.wait_rules(sha256s(files))
        # Falco reacts within about 0.3 s: a second reload for one of these swaps would have come by now or soon.
        await falco.expect_no_reload(start + len(swaps))
        assert falco.reload_failures() == 0


async def test_a_config_fragment_swap_is_one_reload_and_takes_effect(
    tmp_path: Path, falco_binaries: FalcoBinaries
) -> None:
    rules_dir, config_dir, plugins_dir = volumes(tmp_path)
    # With nodriver Falco still sees a few synthetic events: this rule fires about ten times a second.
    rules_dir.write({"50-noisy.yaml": rules("noisy", condition="evt.num > 0")})
    config_dir.write({"50-output.yaml": b"json_output: false\n"})
    with run_falco(tmp_path / "falco", rules_dir.path, config_dir.path, plugins_dir, binaries=falco_binaries) as falco:

        async def alerts() -> tuple[int, int]:
            """(plain-text, JSON) alerts of the noisy rule so far."""
            lines = falco.log().splitlines()
            return sum(1 for line in lines if ": Notice noisy (" in line), sum(
                1 for line in lines if line.startswith("{") and '"rule":"noisy"' in line
            )

        assert await wait_for(alerts, lambda seen: seen[0] > 0, interval=0.05, what="plain-text alerts") > (0, 0)
        assert (await alerts())[1] == 0
        reloads = falco.reload_count()
        config_dir.write({"50-output.yaml": b"json_output: true\n"})
        assert await falco.wait_reloaded(reloads) == reloads + 1
        await wait_for(alerts, lambda seen: seen[1] > 0, interval=0.05, what="JSON alerts after the swap")
        await falco.expect_no_reload(reloads + 1)
        # Falco 0.44.1 lists its main config file here, not the fragments of a config_files directory: a fragment's
        # load cannot be confirmed from the metrics (the artifact status relies on this).
        main = hashlib.sha256(falco.config_path.read_bytes()).hexdigest()
        assert await falco.config_hashes() == {"falco.yaml": main}


async def test_config_fragments_append_to_lists_replace_mappings_and_a_refused_one_keeps_falco_as_it_was(
    tmp_path: Path, falco_binaries: FalcoBinaries
) -> None:
    rules_dir, config_dir, plugins_dir = volumes(tmp_path)
    plugin = json.dumps(container_plugin_config(falco_binaries))  # JSON is YAML
    fragment = {"10-container.yaml": f"load_plugins: [container]\nplugins:\n  - {plugin}\n".encode()}
    containers = {"50-containers.yaml": rules("in_container", condition="container.id != host and proc.name = nope")}
    rules_dir.write(containers)  # container.* exists only with the plugin: Falco starts only if the fragment works
    config_dir.write(fragment)
    with run_falco(tmp_path / "falco", rules_dir.path, config_dir.path, plugins_dir, binaries=falco_binaries) as falco:
        # The main config says load_plugins: [] and plugins: []; a fragment's lists are appended to them.
        assert (await falco.versions())["plugin_versions"] == {"container": "0.7.1"}
        await falco.wait_rules(sha256s(containers))
        reloads, failures = falco.reload_count(), falco.reload_failures()
        refused = {
            # A fragment's top-level mapping replaces the main config's whole mapping, here dropping
            # prometheus_metrics_enabled (and the port and address with it).
            "20-webserver.yaml": (b"webserver:\n  threadiness: 1\n", "Metrics are enabled with no output configured"),
            # The same plugin named twice in load_plugins (lists append) is fatal.
            "20-again.yaml": (b"load_plugins: [container]\n", "found another plugin with name container"),
            # Every regular file in the directory is a fragment, whatever its name.
            "README": (b"not: [yaml\n", "yaml-cpp: error at line"),
        }
        for name, (content, message) in refused.items():
            config_dir.write(fragment | {name: content})
            failures = await falco.wait_reload_failures(failures)
            assert message in falco.log().rsplit(RELOAD_FAILURE_LINE, 1)[1][:1000], falco.log()[-2000:]
            assert falco.alive()
            assert falco.reload_count() == reloads
            assert (await falco.versions())["plugin_versions"] == {"container": "0.7.1"}
        config_dir.write(fragment)
        assert await falco.wait_reloaded(reloads) == reloads + 1
        assert falco.reload_failures() == failures


async def test_an_invalid_rules_file_makes_falco_refuse_the_whole_reload_and_keep_running(
    tmp_path: Path, falco_binaries: FalcoBinaries
) -> None:
    rules_dir, config_dir, plugins_dir = volumes(tmp_path)
    good = {"10-a.yaml": rules("a")}
    rules_dir.write(good)
    with run_falco(tmp_path / "falco", rules_dir.path, config_dir.path, plugins_dir, binaries=falco_binaries) as falco:
        await falco.wait_rules(sha256s(good))
        reloads = falco.reload_count()
        broken = b"- rule: broken\n  desc: d\n  condition: evt.type = open and\n  output: o\n  priority: NOTICE\n"
        rules_dir.write(good | {"20-broken.yaml": broken, "30-c.yaml": rules("c")})
        await falco.wait_reload_failures(0)
        failure = falco.log().split("Falco internal: hot restart failure: ", 1)[1]
        assert failure.startswith(f"{rules_dir.path}/20-broken.yaml: Invalid"), failure[:1000]
        assert "LOAD_ERR_COMPILE_CONDITION" in failure[:2000]
        # The alert parser of `make e2e` reads this real Falco's output format.
        internal = [a for a in parse_alerts(falco.log()) if a.output.startswith("Falco internal: hot restart failure")]
        assert [a.priority for a in internal] == ["Critical"], falco.log()[-2000:]
        assert falco.alive()
        assert falco.reload_count() == reloads
        assert await falco.rules_hashes() == sha256s(good), "the valid file beside it is not loaded either"

        fixed = good | {"30-c.yaml": rules("c")}
        rules_dir.write(fixed)
        assert await falco.wait_reloaded(reloads) == reloads + 1
        await falco.wait_rules(sha256s(fixed))


async def test_a_change_made_while_falco_restarts_is_missed_until_the_next_change(
    tmp_path: Path, falco_binaries: FalcoBinaries
) -> None:
    """Falco reads the directory early in a restart and watches it again only after loading the rules: a change in
    between raises no event, and stays unloaded until something else changes in the directory (here an empty
    directory made and removed, which neither loader reads). With Falco's default rules the gap is tens of ms."""
    rules_dir, config_dir, plugins_dir = volumes(tmp_path)
    rules_dir.write({"00-falco_rules.yaml": (TESTDATA / "falco_rules.yaml").read_bytes(), "10-a.yaml": rules("a")})
    with run_falco(tmp_path / "falco", rules_dir.path, config_dir.path, plugins_dir, binaries=falco_binaries,
                   load_container_plugin=True, extra_config={"log_level": "debug"}) as falco:  # fmt: skip
        for attempt in range(10):  # retried when the write did not fall inside the gap
            reloads = falco.reload_count()
            read = rules_dir.visible() | {f"20-first-{attempt}.yaml": rules(f"first{attempt}")}
            rules_dir.write(read)
            landed = _write_between_read_and_watch(
                falco, rules_dir, reloads, read | {f"30-second-{attempt}.yaml": rules(f"second{attempt}")}
            )
            await falco.wait_reloaded(reloads)
            if landed:
                break
            # Falco may or may not have seen that write: start again from a settled Falco with everything loaded.
            with contextlib.suppress(WaitTimeout):
                await falco.wait_rules(sha256s(rules_dir.visible()), timeout=RELOAD_WITHIN)
            await nudge(falco, rules_dir)
        else:
            raise AssertionError("no write landed inside a restart in 10 attempts")
        await falco.wait_rules(sha256s(read))
        await falco.expect_no_reload(reloads + 1)
        assert await falco.rules_hashes() == sha256s(read), "the second file is still not loaded"
        await nudge(falco, rules_dir)
        assert falco.reload_count() == reloads + 2


async def nudge(falco: RunningFalco, volume: ConfigMapVolume) -> None:
    """Make an idle Falco read the directory again (one reload), and wait until it has loaded what is visible."""
    reloads = falco.reload_count()
    (volume.path / "..nudge").mkdir()
    (volume.path / "..nudge").rmdir()
    assert await falco.wait_reloaded(reloads) == reloads + 1
    await falco.wait_rules(sha256s(volume.visible()))


def _write_between_read_and_watch(
    falco: RunningFalco, volume: ConfigMapVolume, reloads: int, files: dict[str, bytes]
) -> bool:
    """Write ``files`` as soon as the restart after reload ``reloads`` has read the rules directory (it logs
    "Loading rules from:"); whether it had not yet watched anything again (debug: "Watching ...") when the write
    was done. Blocks (the gap is too short for the event loop's pace), for at most a few seconds."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        restarts = falco.log().split(RELOAD_LINE)
        if len(restarts) > reloads + 1 and "Loading rules from:" in restarts[reloads + 1]:
            volume.write(files)
            return "Watching " not in falco.log().split(RELOAD_LINE)[reloads + 1]
        time.sleep(0.001)
    raise AssertionError(f"Falco did not restart after reload {reloads}:\n{falco.log()[-3000:]}")


def test_falco_accepts_the_published_rules_in_their_documented_order(falco_binaries: FalcoBinaries) -> None:
    verdict = validate_rules([TESTDATA / "falco_rules.yaml", TESTDATA / "falco-incubating_rules.yaml"],
                             binaries=falco_binaries)  # fmt: skip
    assert verdict.successful, verdict.raw
    assert [(Path(r["name"]).name, r["successful"], r["warnings"]) for r in verdict.results] == [
        ("falco_rules.yaml", True, []), ("falco-incubating_rules.yaml", True, [])
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("k8s_audit_rules.yaml", "Plugin requirement not satisfied, must load one of: k8saudit (>= 0.18.0), "
         "k8saudit-aks (>= 0.6.0), k8saudit-eks (>= 0.12.0), k8saudit-gke (>= 0.9.0), k8saudit-ovh (>= 0.6.0)"),
        ("aws_cloudtrail_rules.yaml", "Plugin requirement not satisfied, must load one of: cloudtrail (>= 0.10.0)"),
    ],
    ids=["k8saudit", "cloudtrail"],
)  # fmt: skip
def test_plugin_rule_sets_are_refused_before_any_rule_without_their_plugin(
    falco_binaries: FalcoBinaries, name: str, message: str
) -> None:
    # Only the container plugin is built here. Falco checks required_plugin_versions before judging a rule and
    # stops (exit 1, no per-file JSON): these files cannot be Ok without the k8saudit / cloudtrail plugins.
    verdict = validate_rules([TESTDATA / name], binaries=falco_binaries)
    assert (verdict.successful, verdict.results, verdict.failure) == (False, [], message)


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
    assert verdict.error_codes() == ["LOAD_ERR_COMPILE_CONDITION"], verdict.raw
    assert verdict.error_lines() == [(str(broken), target + 1)]


def test_after_an_invalid_file_falco_reports_every_later_file_invalid_with_the_same_error(
    tmp_path: Path, falco_binaries: FalcoBinaries
) -> None:
    broken = tmp_path / "10-broken.yaml"
    broken.write_bytes(
        b"- rule: broken\n  desc: d\n  condition: evt.type = open and\n  output: o\n  priority: NOTICE\n"
    )
    good = tmp_path / "20-good.yaml"
    good.write_bytes(rules("good"))
    verdict = validate_rules([broken, good], binaries=falco_binaries)
    assert [result["successful"] for result in verdict.results] == [False, False]
    assert [[error["file"] for error in result["errors"]] for result in verdict.results] == [[str(broken)]] * 2
    assert verdict.error_lines() == [(str(broken), 3)]
    assert validate_rules([good], binaries=falco_binaries).successful


async def test_the_agents_nudge_makes_an_idle_falco_read_its_rules_again(
    tmp_path: Path, falco_binaries: FalcoBinaries
) -> None:
    rules_dir = GenerationDirectory(tmp_path / "rules.d")
    rules_dir.swap({"10-a.yaml": rules("a")})
    with run_falco(tmp_path / "falco", rules_dir.path, tmp_path / "config.d", tmp_path / "plugins",
                   binaries=falco_binaries) as falco:  # fmt: skip
        reloads = falco.reload_count()
        rules_dir.nudge()
        assert await falco.wait_reloaded(reloads) == reloads + 1
        await falco.expect_no_reload(reloads + 1)


async def test_the_agents_look_at_falco_asks_versions_only_after_a_reload(
    tmp_path: Path, falco_binaries: FalcoBinaries
) -> None:
    """Falco's version and plugins can change only with a (re)start, which moves its reload timestamp: while that
    stays, the agent's poll reads ``/metrics`` alone; after a reload it asks ``/versions`` again."""
    rules_dir, config_dir, plugins_dir = volumes(tmp_path)
    first, second = {"10-a.yaml": rules("a")}, {"10-a.yaml": rules("a", "a2")}
    rules_dir.write(first)
    asked: list[str] = []

    class Recording(HttpClient):
        async def get(self, url: str, *, timeout: float | Timeouts | None = None) -> Response:
            asked.append(urlsplit(url).path)
            return await super().get(url, timeout=timeout)

    with run_falco(tmp_path / "falco", rules_dir.path, config_dir.path, plugins_dir, binaries=falco_binaries) as falco:
        await falco.wait_rules(sha256s(first))
        url = f"http://127.0.0.1:{falco.web_port}"
        async with Recording(timeout=5) as http:
            view = await observe(http, url)
            assert (asked, view.reachable, view.rules) == (["/metrics", "/versions"], True, sha256s(first))
            assert view.version == (await falco.versions())["falco_version"]
            assert view.reloaded_at is not None

            asked.clear()
            again = await observe(http, url, view)
            assert (asked, again) == (["/metrics"], view)

            start = falco.reload_count()
            rules_dir.write(second)
            await falco.wait_reloaded(start)
            await falco.wait_rules(sha256s(second))
            asked.clear()
            reloaded = await observe(http, url, view)
            assert asked == ["/metrics", "/versions"]
            assert (reloaded.rules, reloaded.version) == (sha256s(second), view.version)
            assert reloaded.reloaded_at is not None
            assert reloaded.reloaded_at > view.reloaded_at


def test_nodriver_falco_serves_with_the_host_root_its_pod_template_gives_and_exits_with_host(
    tmp_path: Path, falco_binaries: FalcoBinaries
) -> None:
    """A ``nodriver`` pod mounts nothing at /host, so its Falco gets an empty HOST_ROOT (not none: the official image
    sets HOST_ROOT=/host); with /host, where no host is mounted, Falco 0.44.1 exits at start."""
    falco = Falco.model_validate({"metadata": {"name": "f", "namespace": "ns"},
                                  "spec": {"type": "Deployment", "engine": {"kind": "nodriver"}}})  # fmt: skip
    container = falco_container(falco, BuildOptions())
    environment = {entry["name"]: entry["value"] for entry in container["env"] if "value" in entry}
    rules_dir, config_dir, plugins_dir = volumes(tmp_path)
    rules_dir.write({"10-a.yaml": rules("a")})
    with run_falco(tmp_path / "falco", rules_dir.path, config_dir.path, plugins_dir, binaries=falco_binaries,
                   environment=environment) as running:  # fmt: skip
        time.sleep(1)  # past opening its event source, where a HOST_ROOT without /proc makes it exit
        assert running.alive(), running.log()[-2000:]
        assert httpx.get(f"http://127.0.0.1:{running.web_port}/healthz", timeout=5).status_code == 200
    # The same config with HOST_ROOT=/host: the web server answers for a moment, then Falco exits.
    assert not Path("/host/proc").exists(), "this machine has /host/proc: no place to see Falco refuse it"
    refused = subprocess.run([str(falco_binaries.falco), "-c", str(running.config_path)], capture_output=True,
                             text=True, timeout=60, env={**os.environ, "HOST_ROOT": "/host"})  # fmt: skip
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "the directory '/host/proc/' doesn't exist" in refused.stdout + refused.stderr
