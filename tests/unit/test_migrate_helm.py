"""``falco-operator migrate-helm``: the falco chart's values files -> the exact Falco, Config, Plugin and Rulesfile
objects, and the exact list of values not mapped."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import yaml

from falco_operator.api import Config, Falco, Plugin, Rulesfile
from falco_operator.artifacts.kept_config import kept_config_problem
from falco_operator.artifacts.validation import check_config
from falco_operator.cli import build_parser, main
from falco_operator.migrate import migrate
from falco_operator.migrate.chart_defaults import CHART_DEFAULTS
from falco_operator.migrate.command import run_migrate
from falco_operator.migrate.findings import NO_MAPPING
from falco_operator.migrate.refs import UnresolvedRef, resolve
from falco_operator.migrate.values import ValuesProblem, helm_merge, read_values

Json = dict[str, Any]
HELM = Path(__file__).resolve().parents[1] / "data" / "helm"
KINDS: dict[str, Any] = {"Falco": Falco, "Rulesfile": Rulesfile, "Plugin": Plugin, "Config": Config}
ARTIFACT = "artifact.falcosecurity.dev/v1alpha1"
FALCO_RULES = {"ociArtifact": {"reference": "ghcr.io/falcosecurity/rules/falco-rules:5", "refreshInterval": "168h"},
               "priority": 10}  # fmt: skip
K8SAUDIT_RULES = "ghcr.io/falcosecurity/plugins/ruleset/k8saudit:0.16"
K8SAUDIT_PLUGIN = "ghcr.io/falcosecurity/plugins/plugin/k8saudit:0.16"
JSON_PLUGIN = "ghcr.io/falcosecurity/plugins/plugin/json:0.7"
# The chart mounts every enabled engine's socket; the operator's own mounts cover all but podman's.
PODMAN_SOCKET: Json = {
    "spec": {
        "volumes": [{"name": "container-engine-socket-0", "hostPath": {"path": "/run/podman/podman.sock"}}],
        "containers": [{"name": "falco", "volumeMounts": [
            {"name": "container-engine-socket-0", "mountPath": "/host/run/podman/podman.sock"}]}],
    }
}  # fmt: skip


def container_plugin() -> Json:
    """The container plugin as the chart configures it by default: its collectors.containerEngine settings, the
    image's library (the chart's pluginRef, container 0.7.1, is what the Falco 0.44.1 image ships)."""
    engine = CHART_DEFAULTS["collectors"]["containerEngine"]
    init = {"label_max_len": 100, "with_size": False, "hooks": ["create"], "engines": engine["engines"]}
    return {"config": {"name": "container", "libraryPath": "libcontainer.so", "initConfig": init}}


def run(file: str, **options: Any) -> tuple[dict[tuple[str, str], Json], list[str]]:
    """The migration of a test values file: the objects by (kind, name), checked against the API models, and the
    values not mapped."""
    migration = migrate(read_values((HELM / file).read_bytes()), **options)
    objects: dict[tuple[str, str], Json] = {}
    for manifest in migration.manifests:
        KINDS[manifest["kind"]].model_validate(manifest)
        if manifest["kind"] == "Config":
            check_config(manifest["spec"]["config"])
        key = (manifest["kind"], manifest["metadata"]["name"])
        assert key not in objects
        objects[key] = manifest
    assert migration.manifests[0]["kind"] == "Falco"
    return objects, [str(finding) for finding in migration.findings]


def specs(objects: dict[tuple[str, str], Json]) -> dict[tuple[str, str], Json]:
    for (kind, _), manifest in objects.items():
        assert manifest["apiVersion"] == (ARTIFACT if kind != "Falco" else "instance.falcosecurity.dev/v1alpha1")
    return {key: manifest["spec"] for key, manifest in objects.items()}


def test_the_packaged_defaults_are_the_charts_values_file() -> None:
    assert read_values((HELM / "values.yaml").read_bytes()) == CHART_DEFAULTS


def test_chart_defaults_give_imagedefaults_with_falco_rules_followed_from_oci() -> None:
    objects, findings = run("values.yaml")
    assert specs(objects) == {
        ("Falco", "falco"): {"engine": {"kind": "auto"}, "imageDefaults": True, "podTemplateSpec": PODMAN_SOCKET},
        ("Plugin", "container"): container_plugin(),
        ("Rulesfile", "falco-rules"): FALCO_RULES,
    }
    assert objects[("Falco", "falco")]["metadata"] == {"name": "falco", "namespace": "falco"}
    assert findings == []


def test_an_empty_values_file_is_the_chart_defaults(tmp_path: Path) -> None:
    (HELM / "values.yaml").read_bytes()
    assert migrate(read_values(b"")) == migrate(read_values((HELM / "values.yaml").read_bytes()))


def test_release_name_and_namespace_name_the_objects() -> None:
    objects, _ = run("values.yaml", release="prod", namespace="security")
    assert {(k, m["metadata"]["name"], m["metadata"]["namespace"]) for (k, _), m in objects.items()} == {
        ("Falco", "prod-falco", "security"),
        ("Plugin", "container", "security"),
        ("Rulesfile", "falco-rules", "security"),
    }
    assert run("values.yaml", release="falco-prod")[0].keys() >= {("Falco", "falco-prod")}


def test_custom_rules_become_one_inline_rulesfile_per_file_after_the_default_rules() -> None:
    objects, findings = run("custom-rules.yaml")
    custom = read_values((HELM / "custom-rules.yaml").read_bytes())["customRules"]
    assert specs(objects) == {
        ("Falco", "falco"): {"engine": {"kind": "auto"}, "version": "0.44.1", "imageDefaults": True,
                             "podTemplateSpec": PODMAN_SOCKET},
        ("Config", "falco-values"): {"config": {
            "priority": "notice", "json_output": True,
            "file_output": {"enabled": True, "keep_alive": False, "filename": "/var/log/falco/events.json"}}},
        ("Plugin", "container"): container_plugin(),
        ("Rulesfile", "falco-rules"): FALCO_RULES,
        ("Rulesfile", "00-overrides"): {"inlineRules": custom["00-overrides.yaml"], "priority": 50},
        ("Rulesfile", "rules-nginx"): {"inlineRules": custom["rules-nginx.yaml"], "priority": 50},
    }  # fmt: skip
    assert findings == []


def test_sidekick_is_reported_and_falco_sends_to_where_the_chart_would() -> None:
    objects, findings = run("sidekick.yaml")
    http_output = {**CHART_DEFAULTS["falco"]["http_output"], "enabled": True, "url": "http://falco-falcosidekick:2801"}
    metrics = {"enabled": True, "interval": "1h", "output_rule": False, "rules_counters_enabled": True,
               "resource_utilization_enabled": True, "state_counters_enabled": True,
               "kernel_event_counters_enabled": True, "libbpf_stats_enabled": True, "convert_memory_to_mb": True,
               "include_empty_values": False, "kernel_event_counters_per_cpu_enabled": False,
               "plugins_metrics_enabled": True, "kernel_iter_event_counters_enabled": True,
               "jemalloc_stats_enabled": False}  # fmt: skip
    assert specs(objects) == {
        ("Falco", "falco"): {
            "engine": {"kind": "auto"}, "imageDefaults": True, "podTemplateSpec": PODMAN_SOCKET,
            "services": [{"name": "metrics", "type": "ClusterIP", "ports": [
                {"name": "metrics", "port": 8765, "targetPort": 8765, "protocol": "TCP"}]}],
            "monitoring": {"serviceMonitor": {}},
        },
        ("Config", "falco-values"): {"config": {"json_output": True, "http_output": http_output, "metrics": metrics}},
        ("Plugin", "container"): container_plugin(),
        ("Rulesfile", "falco-rules"): FALCO_RULES,
    }  # fmt: skip
    assert kept_config_problem({"metrics": metrics}) is None
    assert [finding.split(":")[0] for finding in findings] == [
        "falcosidekick.config.slack.webhookurl",
        "falcosidekick.enabled",
        "falcosidekick.webui.enabled",
        "grafana.dashboards.enabled",
        "serviceMonitor.interval",
    ]
    assert "does not deploy Falcosidekick" in findings[1]


def test_kmod_driver_with_a_mirror() -> None:
    objects, findings = run("kmod.yaml")
    assert specs(objects) == {
        ("Falco", "falco"): {
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "20%"}},
            "engine": {"kind": "kmod", "bufSizePreset": 6, "dropFailedExit": True},
            "imageDefaults": True,
            "podTemplateSpec": {"spec": {
                "containers": [{
                    "name": "falco", "image": "registry.example.com/mirror/falco:0.44.1", "imagePullPolicy": "Always",
                    "volumeMounts": [{"name": "container-engine-socket-0",
                                      "mountPath": "/host/run/podman/podman.sock"}]}],
                "imagePullSecrets": [{"name": "mirror-pull"}],
                "volumes": [{"name": "container-engine-socket-0", "hostPath": {"path": "/run/podman/podman.sock"}}],
                "initContainers": [{
                    "name": "driver-loader", "image": "registry.example.com/mirror/falco-driver-loader:0.44.1",
                    "env": [{"name": "FALCOCTL_DRIVER_REPOS", "value": "https://drivers.example.com/falco"}]}],
            }},
        },
        ("Plugin", "container"): container_plugin(),
        ("Rulesfile", "falco-rules"): FALCO_RULES,
    }  # fmt: skip
    assert findings == [
        "falcoctl.image.registry: the operator runs no falcoctl: its artifact agent pulls the Rulesfiles' and "
        "Plugins' OCI sources"
    ]


def test_scheduling_values_become_first_class_fields() -> None:
    objects, findings = run("scheduling.yaml")
    falco = specs(objects)[("Falco", "falco")]
    assert falco == {
        "engine": {"kind": "modern_ebpf", "cpusForEachBuffer": 4, "leastPrivileged": True},
        "imageDefaults": True,
        "tolerations": [
            {"operator": "Exists", "effect": "NoSchedule"},
            {"key": "dedicated", "operator": "Equal", "value": "security", "effect": "NoExecute"},
        ],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [
                {"key": "node.kubernetes.io/instance-type", "operator": "NotIn", "values": ["t3.nano"]}]}]}}},
        "priorityClassName": "system-node-critical",
        # Helm merges maps: the chart's cpu limit stays.
        "resources": {"requests": {"cpu": "200m", "memory": "1Gi"}, "limits": {"cpu": "1000m", "memory": "2Gi"}},
        "podTemplateSpec": {
            "metadata": {"labels": {"team": "security"}},
            "spec": {
                "containers": [{
                    "name": "falco",
                    "env": [{"name": "TZ", "value": "Europe/Rome"}],
                    "args": ["/usr/bin/falco", "--disable-cri-async"],
                    "volumeMounts": [
                        {"name": "host-logs", "mountPath": "/var/log/falco"},
                        {"name": "container-engine-socket-0", "mountPath": "/host/run/podman/podman.sock"},
                    ],
                }],
                "volumes": [
                    {"name": "host-logs", "hostPath": {"path": "/var/log/falco"}},
                    {"name": "container-engine-socket-0", "hostPath": {"path": "/run/podman/podman.sock"}},
                ],
            },
        },
    }  # fmt: skip
    assert set(objects) == {("Falco", "falco"), ("Plugin", "container"), ("Rulesfile", "falco-rules")}
    assert findings == [
        "serviceAccount.annotations.eks.amazonaws.com/role-arn: the operator creates each Falco's ServiceAccount "
        "and its RBAC"
    ]


def test_k8saudit_with_services_on_a_deployment() -> None:
    objects, findings = run("k8saudit-services.yaml")
    assert specs(objects) == {
        ("Falco", "falco"): {
            "type": "Deployment", "replicas": 2, "engine": {"kind": "nodriver"},
            "services": [{"name": "k8saudit-webhook", "type": "NodePort", "ports": [
                {"name": "webhook", "port": 9765, "targetPort": 9765, "protocol": "TCP", "nodePort": 30007}]}],
        },
        ("Config", "falco-values"): {"config": {"webserver": {
            "enabled": True, "listen_port": 8765, "k8s_healthz_endpoint": "/healthz",
            "prometheus_metrics_enabled": True, "ssl_enabled": False, "threadiness": 2}}},
        ("Plugin", "k8saudit"): {"ociArtifact": {"reference": K8SAUDIT_PLUGIN}, "config": {
            "name": "k8saudit", "libraryPath": "libk8saudit.so", "initConfig": {"maxEventSize": 262144},
            "openParams": "http://:9765/k8s-audit"}},
        ("Plugin", "json"): {"ociArtifact": {"reference": JSON_PLUGIN},
                             "config": {"name": "json", "libraryPath": "libjson.so", "initConfig": ""}},
        ("Rulesfile", "k8saudit-rules"): {
            "ociArtifact": {"reference": K8SAUDIT_RULES, "refreshInterval": "24h"}, "priority": 10},
    }  # fmt: skip
    assert findings == ["services.0.externalTrafficPolicy: spec.services entries take name, type and ports only"]


def test_the_charts_k8saudit_examples() -> None:
    objects, findings = run("values-k8saudit.yaml")
    assert specs(objects) == {
        ("Falco", "falco"): {
            "type": "Deployment", "replicas": 1, "engine": {"kind": "nodriver"},
            "services": [{"name": "k8saudit-webhook", "type": "NodePort", "ports": [
                {"port": 9765, "protocol": "TCP", "nodePort": 30007}]}],
        },
        ("Plugin", "k8saudit"): {"ociArtifact": {"reference": K8SAUDIT_PLUGIN}, "config": {
            "name": "k8saudit", "libraryPath": "libk8saudit.so", "initConfig": "",
            "openParams": "http://:9765/k8s-audit"}},
        ("Plugin", "json"): {"ociArtifact": {"reference": JSON_PLUGIN},
                             "config": {"name": "json", "libraryPath": "libjson.so", "initConfig": ""}},
        ("Rulesfile", "k8saudit-rules"): {
            "ociArtifact": {"reference": K8SAUDIT_RULES, "refreshInterval": "168h"}, "priority": 10},
    }  # fmt: skip
    assert findings == []
    objects, findings = run("values-syscall-k8saudit.yaml")
    assert specs(objects)[("Falco", "falco")]["engine"] == {"kind": "kmod"}
    assert specs(objects)[("Plugin", "k8saudit")]["ociArtifact"] == {
        "reference": K8SAUDIT_PLUGIN,
        "refreshInterval": "168h",
    }
    assert list(objects) == [("Falco", "falco"), ("Plugin", "k8saudit"), ("Plugin", "json"), ("Plugin", "container"),
                             ("Rulesfile", "falco-rules"), ("Rulesfile", "k8saudit-rules")]  # fmt: skip
    assert specs(objects)[("Rulesfile", "k8saudit-rules")]["priority"] == 11
    assert findings == []


@pytest.mark.parametrize(
    ("values", "finding"),
    [
        ({"some": {"new": "value"}}, f"some.new: {NO_MAPPING}"),
        ({"falco": {"watch_config_files": False}}, "falco.watch_config_files: a Config cannot set it: hot reload"),
        ({"falco": {"webserver": {"ssl_enabled": True}}}, "falco.webserver: a config fragment that sets webserver"),
        ({"driver": {"kind": "ebpf"}}, "driver.kind: the chart refuses 'ebpf'"),
        ({"driver": {"kind": "auto", "modernEbpf": {"leastPrivileged": True}}},
         "driver.modernEbpf.leastPrivileged: the chart applies it to modern_ebpf only"),
        ({"driver": {"kind": "modern_ebpf", "kmod": {"bufSizePreset": 2}}},
         "driver.kmod.bufSizePreset: the chart ignores it with driver.kind modern_ebpf"),
        ({"driver": {"kind": "auto", "kmod": {"bufSizePreset": 2}}},
         "driver.kmod.bufSizePreset: spec.engine has one bufSizePreset"),
        ({"driver": {"kind": "kmod", "loader": {"enabled": False}}}, "driver.loader.enabled: the operator always"),
        ({"falcoctl": {"config": {"artifact": {"install": {"refs": ["acme-rules:1"]}}}}},
         "falcoctl.config.artifact.install.refs: 'acme-rules:1' is not in the falcosecurity index"),
        ({"certs": {"server": {"key": "K", "crt": "C"}, "ca": {"crt": "A"}}}, "certs.ca.crt: migrate-helm writes no"),
        ({"collectors": {"kubernetes": {"enabled": True}}}, "collectors.kubernetes.enabled: the chart also installs"),
        ({"falcoHostnameEnv": False}, "falcoHostnameEnv: the operator always sets FALCO_HOSTNAME"),
        ({"metrics": {"interval": "5m"}}, "metrics.interval: ignored while metrics.enabled is false"),
    ],
)  # fmt: skip
def test_values_without_an_equivalent_are_reported(values: Json, finding: str) -> None:
    findings = [str(f) for f in migrate(values).findings]
    assert any(f.startswith(finding) for f in findings), findings


def test_k8smeta_plugin_points_at_the_metacollector_of_the_release() -> None:
    migration = migrate({"collectors": {"kubernetes": {"enabled": True}}}, release="sec", namespace="ops")
    plugin = next(m for m in migration.manifests if m["metadata"]["name"] == "k8smeta")
    assert plugin["spec"] == {
        "ociArtifact": {"reference": "ghcr.io/falcosecurity/plugins/plugin/k8smeta:0.4.1"},
        "config": {"name": "k8smeta", "libraryPath": "libk8smeta.so", "initConfig": {
            "collectorHostname": "sec-k8s-metacollector.ops.svc", "collectorPort": 45000,
            "nodeName": "${FALCO_K8S_NODE_NAME}", "verbosity": "info", "hostProc": "/host"}},
    }  # fmt: skip


def test_a_falco_without_falcoctl_loads_the_images_rules() -> None:
    values = {"falcoctl": {"artifact": {"install": {"enabled": False}, "follow": {"enabled": False}}}}
    migration = migrate(values)
    assert [m["kind"] for m in migration.manifests] == ["Falco", "Plugin"]
    assert migration.manifests[0]["spec"]["imageDefaults"] is True


def test_a_changed_container_plugin_ref_is_pulled() -> None:
    values = {"collectors": {"containerEngine": {"pluginRef": "ghcr.io/falcosecurity/plugins/plugin/container:0.8.0",
                                                  "engines": {"podman": {"enabled": False}}}}}  # fmt: skip
    manifests = migrate(values).manifests
    plugin = next(m for m in manifests if m["kind"] == "Plugin")
    assert plugin["spec"]["ociArtifact"] == {"reference": "ghcr.io/falcosecurity/plugins/plugin/container:0.8.0"}
    assert "podTemplateSpec" not in manifests[0]["spec"]


def test_helm_merge_deep_merges_maps_replaces_lists_and_null_removes() -> None:
    defaults = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert helm_merge(defaults, {"a": {"c": [3]}, "d": None}) == {"a": {"b": 1, "c": [3]}}
    assert defaults == {"a": {"b": 1, "c": [1, 2]}, "d": 1}


def test_refs_resolve_to_their_index_repositories() -> None:
    assert resolve("k8saudit-rules:0.16").reference == K8SAUDIT_RULES
    assert resolve("falco-rules").reference == "ghcr.io/falcosecurity/rules/falco-rules:latest"
    full = resolve("ghcr.io/falcosecurity/plugins/ruleset/k8saudit:0.16")
    assert (full.name, full.type) == ("k8saudit-rules", "rulesfile")
    mine = resolve("registry.example.com/acme/plugin/magic:1.0")
    assert (mine.name, mine.type, mine.reference) == ("magic", "plugin", "registry.example.com/acme/plugin/magic:1.0")
    with pytest.raises(UnresolvedRef):
        resolve("registry.example.com/acme/magic:1.0")


def test_values_are_read_safely() -> None:
    with pytest.raises(ValuesProblem, match="anchors and aliases"):
        read_values(b"a: &x [1]\nb: *x\n")
    with pytest.raises(ValuesProblem, match="mapping"):
        read_values(b"- 1\n")


def test_the_command_prints_manifests_and_lists_what_it_cannot_map(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    args = build_parser().parse_args(["migrate-helm", str(HELM / "sidekick.yaml"), "--name", "x", "--namespace", "y"])
    assert run_migrate(args, out, err) == 0
    text = out.getvalue()
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert header[1] == "# Values not mapped (5):"
    assert header[2].startswith("#   falcosidekick.config.slack.webhookurl: configures the falcosidekick subchart")
    documents = [d for d in yaml.safe_load_all(text) if d]
    assert [(d["kind"], d["metadata"]["name"], d["metadata"]["namespace"]) for d in documents] == [
        ("Falco", "x-falco", "y"), ("Config", "x-falco-values", "y"), ("Plugin", "container", "y"),
        ("Rulesfile", "falco-rules", "y")]  # fmt: skip
    assert documents[1]["spec"]["config"]["http_output"]["url"] == "http://x-falco-falcosidekick:2801"
    lines = err.getvalue().splitlines()
    assert len(lines) == 5
    assert all(line.startswith("migrate-helm: not mapped: ") for line in lines)
    missing = tmp_path / "missing.yaml"
    err = io.StringIO()
    assert run_migrate(build_parser().parse_args(["migrate-helm", str(missing)]), io.StringIO(), err) == 1
    assert "missing.yaml" in err.getvalue()


def test_custom_rules_print_as_yaml_blocks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate-helm", str(HELM / "custom-rules.yaml")]) == 0
    out = capsys.readouterr().out
    assert "  inlineRules: |-\n    - rule: Terminal shell in container\n" in out


def test_help_says_what_it_does(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["migrate-helm", "--help"])
    assert "falco chart" in capsys.readouterr().out
