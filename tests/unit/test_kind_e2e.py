"""The parts of ``make e2e`` (kind) that need no container engine: tools, kind config, install rendering, the
checks on Falco's metrics and alerts."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from e2e.falco_alerts import parse_alerts, shell_alerts
from e2e.kind import DEFAULT_IMAGE, Missing, find_tools, kind_config, main, render_install
from e2e.scenarios.install import INSTALL
from e2e.scenarios.realpods import expected_rules, reload_timestamp, rules_hashes

ROOT = Path(__file__).resolve().parents[2]
FILE = "50-03-falco-rules-inline.yaml"


def test_missing_tools_stop_with_a_message_that_names_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CONTAINER_ENGINE", raising=False)
    monkeypatch.delenv("KIND", raising=False)
    with pytest.raises(Missing, match="needs docker or podman"):
        find_tools()
    with pytest.raises(Missing, match="needs kind"):
        find_tools({"CONTAINER_ENGINE": "/usr/bin/podman"})
    assert find_tools({"CONTAINER_ENGINE": "/usr/bin/podman", "KIND": "/usr/bin/kind"}) == ("/usr/bin/podman",
                                                                                           "/usr/bin/kind")  # fmt: skip
    assert main([]) == 2


def test_the_kind_cluster_has_a_control_plane_and_two_workers() -> None:
    config = kind_config()
    assert (config["kind"], config["apiVersion"]) == ("Cluster", "kind.x-k8s.io/v1alpha4")
    assert [n["role"] for n in config["nodes"]] == ["control-plane", "worker", "worker"]


def test_the_install_manifest_is_rendered_with_the_image_under_test() -> None:
    original = INSTALL.read_text()
    assert original.count(DEFAULT_IMAGE) == 2, "the operator's image and the agent image it hands to Falco pods"
    rendered = render_install(original, "localhost/falco-operator:e2e")
    assert DEFAULT_IMAGE not in rendered
    documents = [d for d in YAML(typ="safe").load_all(rendered) if d]
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "localhost/falco-operator:e2e"
    assert {"name": "FALCO_OPERATOR_AGENT_IMAGE", "value": "localhost/falco-operator:e2e"} in container["env"]


def test_an_inline_rulesfile_is_expected_byte_for_byte_and_found_in_falcos_metrics() -> None:
    document = YAML(typ="safe").load((ROOT / "manifests" / "samples" / "05-rulesfile-inline.yaml").read_text())
    rules = expected_rules(document)
    assert rules == document["spec"]["ociArtifact"]["inline"].encode()
    digest = hashlib.sha256(rules).hexdigest()
    metrics = (f'falcosecurity_falco_sha256_rules_files_info{{evt_source="syscall",file_name="{FILE}",'
               f'sha256="{digest}"}} 1\n'
               "falcosecurity_falco_reload_timestamp_nanoseconds 1765000000000000000\n")  # fmt: skip
    assert rules_hashes(metrics) == {FILE: digest}
    assert reload_timestamp(metrics) == "1765000000000000000"
    assert reload_timestamp("") is None


def test_the_shell_alert_is_found_in_text_and_json_output() -> None:
    log = (
        "Sat Dec  5 10:00:00 2026: Falco version: 0.44.1\n"
        "10:00:01.123456789: Warning shell in a container (user=root container_id=abc container_name=shell-target "
        "shell=bash parent=runc cmdline=bash -c echo hi)\n"
        "10:00:02.000000001: Warning shell in a container (user=root container_id=def container_name=other "
        "shell=bash parent=runc cmdline=bash)\n"
        '{"output":"shell in a container (container_name=shell-target shell=bash)","priority":"Warning",'
        '"rule":"shell_in_container","time":"2026-12-05T10:00:03.000000000Z"}\n'
    )
    assert [a.priority for a in parse_alerts(log)] == ["Warning", "Warning", "Warning"]
    found = shell_alerts(log, "shell-target")
    assert len(found) == 2
    assert found[1].rule == "shell_in_container"
    assert shell_alerts(log, "nobody") == []
