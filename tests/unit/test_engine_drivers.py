"""Drivers and scheduling: the rendered pod and falco.yaml for each ``engine.kind``, the least-privileged mode and the
scheduling fields, checked against what the falcosecurity ``falco`` chart (9.1.0, Falco 0.44.1) renders for the same
choice (facts of its ``pod-template.tpl`` and ``_helpers.tpl``: mounts, capabilities, init containers, engine
section)."""

from __future__ import annotations

from typing import Any

import pytest
from ruamel.yaml import YAML

from falco_operator.api import Falco
from falco_operator.instance.options import BuildOptions
from falco_operator.instance.workload import build_workload, falco_yaml

Json = dict[str, Any]


def make(spec: Json) -> tuple[Falco, Json]:
    raw = {
        "apiVersion": "instance.falcosecurity.dev/v1alpha1",
        "kind": "Falco",
        "metadata": {"name": "f", "namespace": "ns", "uid": "uid-1", "generation": 1},
        "spec": spec,
    }
    return Falco.model_validate(raw), raw


def pod(spec: Json) -> Json:
    falco, raw = make(spec)
    template: Json = build_workload(falco, raw, BuildOptions())["spec"]["template"]["spec"]
    return template


def containers(pod_spec: Json) -> dict[str, Json]:
    return {c["name"]: c for c in pod_spec["containers"] + pod_spec.get("initContainers", [])}


def mounts(container: Json) -> dict[str, Json]:
    """Mount path -> the mount, without the name (volume names are ours, paths are the facts)."""
    return {m["mountPath"]: {k: v for k, v in m.items() if k != "name"} for m in container["volumeMounts"]}


def host_paths(pod_spec: Json) -> dict[str, str]:
    """Volume name -> host path."""
    return {v["name"]: v["hostPath"]["path"] for v in pod_spec["volumes"] if "hostPath" in v}


def host_mounts(pod_spec: Json, container: Json) -> dict[str, tuple[str, bool]]:
    """Mount path -> (host path, read-only) of the container's hostPath mounts."""
    paths = host_paths(pod_spec)
    return {
        m["mountPath"]: (paths[m["name"]], bool(m.get("readOnly")))
        for m in container["volumeMounts"]
        if m["name"] in paths
    }


def engine_section(spec: Json) -> Json:
    config: Json = YAML(typ="safe").load(falco_yaml(make(spec)[0]))
    engine: Json = config["engine"]
    return engine


RUNTIME_SOCKET_DIRS = {"/host/var/run", "/host/run/containerd", "/host/run/crio", "/host/run/host-containerd",
                       "/host/run/k3s/containerd"}  # fmt: skip

# What the chart mounts into the falco container per driver kind (its loader enabled, as by default).
CHART_FALCO_HOST_MOUNTS: dict[str, dict[str, tuple[str, bool]]] = {
    "modern_ebpf": {"/host/proc": ("/proc", True), "/host/etc": ("/etc", True), "/sys/kernel": ("/sys/kernel", True)},
    "kmod": {"/host/proc": ("/proc", True), "/host/etc": ("/etc", True), "/host/dev": ("/dev", True),
             "/sys/module": ("/sys/module", False)},
    "auto": {"/host/proc": ("/proc", True), "/host/etc": ("/etc", True), "/host/dev": ("/dev", True),
             "/sys/module": ("/sys/module", False), "/sys/kernel": ("/sys/kernel", True)},
}  # fmt: skip
# The chart's driver-loader init container (kmod, auto): what it reads of the host.
CHART_LOADER_HOST_MOUNTS = {"/host/proc": ("/proc", True), "/host/boot": ("/boot", True),
                            "/host/lib/modules": ("/lib/modules", False), "/host/usr": ("/usr", True),
                            "/host/etc": ("/etc", True)}  # fmt: skip


@pytest.mark.parametrize("kind", ["modern_ebpf", "kmod", "auto"])
def test_the_falco_container_sees_the_host_paths_the_chart_mounts_for_the_driver_plus_the_runtime_sockets(
    kind: str,
) -> None:
    pod_spec = pod({"engine": {"kind": kind}})
    falco = containers(pod_spec)["falco"]
    seen = host_mounts(pod_spec, falco)
    assert {path: seen[path] for path in seen if path not in RUNTIME_SOCKET_DIRS} == CHART_FALCO_HOST_MOUNTS[kind]
    assert set(seen) >= RUNTIME_SOCKET_DIRS, "the container plugin reaches the engines' sockets"
    assert falco["securityContext"] == {"privileged": True}
    assert {"name": "HOST_ROOT", "value": "/host"} in falco["env"]


def test_modern_ebpf_runs_without_a_driver_loader_as_in_the_chart() -> None:
    pod_spec = pod({"engine": {"kind": "modern_ebpf"}})
    assert set(containers(pod_spec)) == {"falco", "artifact-operator"}
    assert engine_section({"engine": {"kind": "modern_ebpf"}}) == {"kind": "modern_ebpf"}


def test_kmod_gets_the_privileged_driver_loader_with_the_host_paths_it_builds_the_module_from() -> None:
    pod_spec = pod({"engine": {"kind": "kmod"}, "version": "0.44.1"})
    loader = containers(pod_spec)["driver-loader"]
    assert loader["image"] == "docker.io/falcosecurity/falco-driver-loader:0.44.1"
    assert loader["args"] == ["kmod"]
    assert loader["securityContext"] == {"privileged": True}
    assert host_mounts(pod_spec, loader) == CHART_LOADER_HOST_MOUNTS
    assert mounts(loader)["/root/.falco"] == {"mountPath": "/root/.falco"}
    assert mounts(containers(pod_spec)["falco"])["/root/.falco"] == {"mountPath": "/root/.falco"}, "shares the module"
    # The operator sets engine.kind itself: the loader is told not to write it.
    assert {"name": "FALCOCTL_DRIVER_CONFIG_UPDATE_FALCO", "value": "false"} in loader["env"]
    assert {"name": "HOST_ROOT", "value": "/host"} in loader["env"]
    assert engine_section({"engine": {"kind": "kmod"}}) == {"kind": "kmod"}
    # Init containers run in order: the module is loaded before the agent (and so before Falco) starts.
    assert [c["name"] for c in pod_spec["initContainers"]] == ["driver-loader", "artifact-operator"]


def test_auto_lets_the_loader_write_its_choice_into_a_fragment_falco_reads_and_rewrites_no_configmap() -> None:
    pod_spec = pod({"engine": {"kind": "auto"}})
    loader, falco = containers(pod_spec)["driver-loader"], containers(pod_spec)["falco"]
    assert loader["args"] == ["auto"]
    assert host_mounts(pod_spec, loader) == CHART_LOADER_HOST_MOUNTS
    assert not [e for e in loader["env"] if e["name"].startswith("FALCOCTL_DRIVER_CONFIG")], (
        "no namespace or ConfigMap: falcoctl writes a file, it does not touch the operator's ConfigMap"
    )
    loader_mounts = {m["mountPath"]: m["name"] for m in loader["volumeMounts"]}
    falco_mounts = {m["mountPath"]: m for m in falco["volumeMounts"]}
    assert falco_mounts["/etc/falco/driver"] == {"name": loader_mounts["/etc/falco/config.d"],
                                                 "mountPath": "/etc/falco/driver", "readOnly": True}  # fmt: skip
    assert loader_mounts["/etc/falco/falco.yaml"] == "falco-yaml", "falcoctl reads engine.kind from our falco.yaml"
    config = YAML(typ="safe").load(falco_yaml(make({"engine": {"kind": "auto"}})[0]))
    assert config["config_files"][0] == "/etc/falco/driver/engine-kind-falcoctl.yaml"
    assert config["engine"] == {"kind": "modern_ebpf"}, "a kernel driver kind, or falcoctl leaves it alone"
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    assert volumes[loader_mounts["/etc/falco/config.d"]] == {"name": "driver-config", "emptyDir": {}}


def test_least_privileged_modern_ebpf_has_the_charts_capabilities_an_unconfined_apparmor_profile_and_no_privilege() -> (
    None
):
    pod_spec = pod({"engine": {"kind": "modern_ebpf", "leastPrivileged": True}})
    falco = containers(pod_spec)["falco"]
    context = falco["securityContext"]
    assert "privileged" not in context
    assert sorted(context["capabilities"]["add"]) == ["BPF", "PERFMON", "SYS_PTRACE", "SYS_RESOURCE"]
    assert context["appArmorProfile"] == {"type": "Unconfined"}
    assert all(not c.get("securityContext", {}).get("privileged") for c in containers(pod_spec).values())
    assert host_mounts(pod_spec, falco)["/sys/kernel"] == ("/sys/kernel", True)


def test_nodriver_is_neither_privileged_nor_host_mounted() -> None:
    pod_spec = pod({"engine": {"kind": "nodriver"}})
    assert not host_paths(pod_spec)
    assert "securityContext" not in containers(pod_spec)["falco"]
    assert engine_section({"engine": {"kind": "nodriver"}}) == {"kind": "nodriver"}


@pytest.mark.parametrize(
    ("engine", "section"),
    [
        ({"kind": "modern_ebpf", "bufSizePreset": 3, "cpusForEachBuffer": 1, "dropFailedExit": True},
         {"kind": "modern_ebpf",
          "modern_ebpf": {"buf_size_preset": 3, "cpus_for_each_buffer": 1, "drop_failed_exit": True}}),
        ({"kind": "kmod", "bufSizePreset": 6, "dropFailedExit": False},
         {"kind": "kmod", "kmod": {"buf_size_preset": 6, "drop_failed_exit": False}}),
        ({"kind": "auto", "bufSizePreset": 5, "cpusForEachBuffer": 0},
         {"kind": "modern_ebpf", "modern_ebpf": {"buf_size_preset": 5, "cpus_for_each_buffer": 0},
          "kmod": {"buf_size_preset": 5}}),
        ({"kind": "modern_ebpf", "leastPrivileged": True}, {"kind": "modern_ebpf"}),
    ],
)  # fmt: skip
def test_typed_engine_options_render_as_falcos_engine_section_and_only_when_set(engine: Json, section: Json) -> None:
    assert engine_section({"engine": engine}) == section


def test_an_engine_option_rolls_the_pods_through_the_config_hash() -> None:
    def config_hash(spec: Json) -> str:
        falco, raw = make(spec)
        annotations = build_workload(falco, raw, BuildOptions())["spec"]["template"]["metadata"]["annotations"]
        value: str = annotations["instance.falcosecurity.dev/config-hash"]
        return value

    assert config_hash({"engine": {"kind": "modern_ebpf"}}) != config_hash(
        {"engine": {"kind": "modern_ebpf", "bufSizePreset": 6}}
    )


CHART_TOLERATIONS = [
    {"effect": "NoSchedule", "key": "node-role.kubernetes.io/master"},
    {"effect": "NoSchedule", "key": "node-role.kubernetes.io/control-plane"},
]


def _tolerated(tolerations: list[Json]) -> set[tuple[str, str]]:
    return {(t["key"], t["effect"]) for t in tolerations}


def test_a_daemonset_tolerates_what_the_chart_tolerates_by_default_and_a_deployment_nothing() -> None:
    assert _tolerated(pod({})["tolerations"]) == _tolerated(CHART_TOLERATIONS)
    assert "tolerations" not in pod({"type": "Deployment"})


def test_scheduling_fields_reach_the_pod_and_an_empty_toleration_list_means_none() -> None:
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]}]}}}  # fmt: skip
    tolerations = [{"operator": "Exists"}]
    pod_spec = pod({"tolerations": tolerations, "nodeSelector": {"falco": "yes"}, "affinity": affinity,
                    "priorityClassName": "system-node-critical"})  # fmt: skip
    assert pod_spec["tolerations"] == tolerations
    assert pod_spec["nodeSelector"] == {"falco": "yes"}
    assert pod_spec["affinity"] == affinity
    assert pod_spec["priorityClassName"] == "system-node-critical"
    assert "tolerations" not in pod({"tolerations": []})
    assert not {"nodeSelector", "affinity", "priorityClassName"} & set(pod({}))


def test_resources_replace_the_falco_containers_defaults_whole_and_leave_the_agent_alone() -> None:
    resources = {"requests": {"cpu": "200m", "memory": "256Mi"}}
    pod_spec = pod({"resources": resources})
    assert containers(pod_spec)["falco"]["resources"] == resources
    assert (
        containers(pod_spec)["artifact-operator"]["resources"] == containers(pod({}))["artifact-operator"]["resources"]
    )
    assert containers(pod({}))["falco"]["resources"] == {"requests": {"cpu": "100m", "memory": "512Mi"},
                                                        "limits": {"cpu": "1", "memory": "1Gi"}}  # fmt: skip


def test_the_pod_template_spec_is_merged_over_the_scheduling_fields_and_wins() -> None:
    pod_spec = pod({
        "tolerations": [{"operator": "Exists"}], "nodeSelector": {"a": "1"}, "priorityClassName": "high",
        "resources": {"limits": {"memory": "2Gi"}},
        "podTemplateSpec": {"spec": {"tolerations": [{"key": "k", "operator": "Exists"}], "nodeSelector": {"b": "2"},
                                     "priorityClassName": "low",
                                     "containers": [{"name": "falco", "resources": {"limits": {"cpu": "2"}}}]}},
    })  # fmt: skip
    assert pod_spec["tolerations"] == [{"key": "k", "operator": "Exists"}], "tolerations are replaced whole"
    assert pod_spec["nodeSelector"] == {"b": "2"}, "nodeSelector is replaced whole"
    assert pod_spec["priorityClassName"] == "low"
    assert containers(pod_spec)["falco"]["resources"] == {"limits": {"memory": "2Gi", "cpu": "2"}}
