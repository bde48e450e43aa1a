"""Pure builders of the Falco controller: pod template, versions, RBAC, status."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from artifact_agent.cli import build_parser
from falco_operator.api import Falco
from falco_operator.artifacts.plugins import ARTIFACT_PLUGINS_DIR, FALCO_PLUGINS_DIR
from falco_operator.instance.naming import cluster_object_name, object_labels
from falco_operator.instance.options import BuildOptions, supports_native_sidecar
from falco_operator.instance.rbac import (
    References,
    agent_rules,
    artifact_references,
    build_cluster_role,
    build_cluster_role_binding,
)
from falco_operator.instance.reconciler import desired_objects
from falco_operator.instance.status import desired_status, transitions
from falco_operator.instance.version import falco_version, parse_image
from falco_operator.instance.workload import build_workload, falco_yaml

Json = dict[str, Any]
DIGEST = "sha256:" + "c" * 64


def make(spec: Json | None = None, labels: dict[str, str] | None = None, name: str = "f") -> tuple[Falco, Json]:
    raw = {
        "apiVersion": "instance.falcosecurity.dev/v1alpha1",
        "kind": "Falco",
        "metadata": {"name": name, "namespace": "ns", "uid": "uid-1", "labels": labels or {}, "generation": 1},
        "spec": spec or {},
    }
    return Falco.model_validate(raw), raw


def pod_spec(workload: Json) -> Json:
    spec: Json = workload["spec"]["template"]["spec"]
    return spec


def by_name(items: list[Json]) -> dict[str, Json]:
    return {item["name"]: item for item in items}


@pytest.mark.parametrize(
    ("image", "repository", "tag", "digest"),
    [
        ("reg:5000/falco:x", "reg:5000/falco", "x", None),
        ("reg:5000/falco", "reg:5000/falco", None, None),
        (f"falco@{DIGEST}", "falco", None, DIGEST),
        (f"docker.io/falcosecurity/falco:0.44.1@{DIGEST}", "docker.io/falcosecurity/falco", "0.44.1", DIGEST),
    ],
)
def test_parse_image_survives_registry_ports_and_digests(
    image: str, repository: str, tag: str | None, digest: str | None
) -> None:
    reference = parse_image(image)
    assert (reference.repository, reference.tag, reference.digest) == (repository, tag, digest)


def test_falco_version_prefers_the_user_image_tag_then_spec_then_default() -> None:
    assert falco_version("reg:5000/falco:x", "0.40.0", "0.44.1") == "x"
    assert falco_version(f"falco@{DIGEST}", "0.40.0", "0.44.1") == "0.40.0"
    assert falco_version(None, None, "0.44.1") == "0.44.1"


def test_default_daemonset_runs_privileged_falco_with_the_agent_as_native_sidecar() -> None:
    falco, raw = make()
    workload = build_workload(falco, raw, BuildOptions(agent_image="agent:1"))
    assert workload["kind"] == "DaemonSet"
    spec = pod_spec(workload)
    falco_container = by_name(spec["containers"])["falco"]
    assert falco_container["securityContext"] == {"privileged": True}
    assert {e["name"] for e in falco_container["env"]} == {"HOST_ROOT", "FALCO_HOSTNAME", "FALCO_K8S_NODE_NAME"}
    assert by_name(falco_container["env"])["HOST_ROOT"] == {"name": "HOST_ROOT", "value": "/host"}
    assert {"name": "proc-fs", "mountPath": "/host/proc", "readOnly": True} in falco_container["volumeMounts"]
    agent = by_name(spec["initContainers"])["artifact-operator"]
    assert agent["restartPolicy"] == "Always"
    assert agent["image"] == "agent:1"
    assert "driver-loader" not in by_name(spec["initContainers"])
    assert spec["automountServiceAccountToken"] is False
    assert {t["key"] for t in spec["tolerations"]} == {
        "node-role.kubernetes.io/control-plane",
        "node-role.kubernetes.io/master",
    }
    assert workload["metadata"]["ownerReferences"][0]["uid"] == "uid-1"


def test_old_api_servers_get_the_agent_as_a_regular_container_with_the_seed_override_moved_along() -> None:
    falco, raw = make(
        {"podTemplateSpec": {"spec": {"initContainers": [{"name": "artifact-operator", "image": "mine"}]}}}
    )
    spec = pod_spec(build_workload(falco, raw, BuildOptions(native_sidecar=False)))
    agent = by_name(spec["containers"])["artifact-operator"]
    assert agent["image"] == "mine"
    assert "restartPolicy" not in agent
    assert "startupProbe" not in agent
    assert "initContainers" not in spec


@pytest.mark.parametrize(("engine", "configured"), [("kmod", "kmod"), ("auto", "modern_ebpf")])
def test_kernel_module_drivers_get_a_driver_loader_of_the_falco_version(engine: str, configured: str) -> None:
    falco, raw = make({"engine": {"kind": engine}, "version": "0.43.0"})
    loader = by_name(pod_spec(build_workload(falco, raw, BuildOptions()))["initContainers"])["driver-loader"]
    assert loader["image"] == "docker.io/falcosecurity/falco-driver-loader:0.43.0"
    assert loader["args"] == [engine]
    assert f"kind: {configured}" in falco_yaml(falco)


def test_plugin_only_deployment_is_neither_privileged_nor_host_mounted() -> None:
    falco, raw = make({"type": "Deployment", "replicas": 2})
    workload = build_workload(falco, raw, BuildOptions())
    assert (workload["kind"], workload["spec"]["replicas"]) == ("Deployment", 2)
    spec = pod_spec(workload)
    falco_container = by_name(spec["containers"])["falco"]
    assert "securityContext" not in falco_container
    assert not [v for v in spec["volumes"] if "hostPath" in v]
    assert not [m for m in falco_container["volumeMounts"] if m["mountPath"].startswith("/host")]
    # Nothing is mounted at /host, so Falco must read its own /proc: HOST_ROOT is set empty (the official image sets
    # HOST_ROOT=/host, and Falco exits when /host/proc is missing).
    assert by_name(falco_container["env"])["HOST_ROOT"] == {"name": "HOST_ROOT", "value": ""}
    assert "tolerations" not in spec
    assert "kind: nodriver" in falco_yaml(falco)


def test_falco_logs_to_stderr_so_kubectl_logs_shows_its_start_and_reloads() -> None:
    from ruamel.yaml import YAML

    config = YAML(typ="safe").load(falco_yaml(make({})[0]))
    assert (config["log_stderr"], config["log_syslog"], config["log_level"]) == (True, False, "info")


def test_config_hash_changes_with_falco_yaml_only() -> None:
    def config_hash(spec: Json) -> str:
        falco, raw = make(spec)
        return str(build_workload(falco, raw, BuildOptions())["spec"]["template"]["metadata"]["annotations"][
            "instance.falcosecurity.dev/config-hash"])  # fmt: skip

    assert config_hash({}) == config_hash({"version": "0.40.0"})
    assert config_hash({}) != config_hash({"engine": {"kind": "kmod"}})


def test_labels_propagate_except_excluded_globs_and_selector_labels_stay() -> None:
    labels = object_labels("f", {"team": "sec", "argocd.argoproj.io/instance": "x", "app.kubernetes.io/instance": "y"},
                           ("argocd.argoproj.io/*",))  # fmt: skip
    assert labels == {"team": "sec", "app.kubernetes.io/name": "falco", "app.kubernetes.io/instance": "f",
                      "app.kubernetes.io/managed-by": "falco-operator"}  # fmt: skip


def test_cluster_objects_of_two_falcos_never_collide() -> None:
    assert cluster_object_name("a-b", "c") != cluster_object_name("a", "b-c")


def test_agent_role_has_no_secret_rule_without_references_and_only_named_ones_with() -> None:
    without = agent_rules("f", References())
    assert all(rule.get("resourceNames", ["x"]) for rule in without), "an empty resourceNames grants everything"
    assert not [r for r in without if {"secrets", "configmaps"} & set(r["resources"])]
    with_refs = agent_rules("f", References(configmaps=("cm",), secrets=("s",)))
    assert {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["s"], "verbs": ["get"]} in with_refs
    configmaps = {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["cm"],
                  "verbs": ["get", "list", "watch"]}  # fmt: skip
    assert configmaps in with_refs


def test_references_follow_instance_selectors_and_both_credential_shapes() -> None:
    falco, _ = make(labels={"tier": "prod"})
    artifacts = [
        {"kind": "Rulesfile", "metadata": {"name": "a"},
         "spec": {"ociArtifact": {"reference": "r.io/x:1", "pullSecret": {"secretName": "seed-creds"}},
                  "configMapRef": {"name": "rules-cm"}}},
        {"kind": "Plugin", "metadata": {"name": "p"},
         "spec": {"ociArtifact": {"image": {"repository": "x"},
                                  "registry": {"auth": {"secretRef": {"name": "creds"}}}}}},
        {"kind": "Config", "metadata": {"name": "c"}, "spec": {"configMapRef": {"name": "cfg"}}},
        {"kind": "Rulesfile", "metadata": {"name": "other"},
         "spec": {"configMapRef": {"name": "not-mine"}, "instanceSelector": {"matchLabels": {"tier": "dev"}}}},
    ]  # fmt: skip
    assert artifact_references(falco, artifacts) == References(("cfg", "rules-cm"), ("creds", "seed-creds"))


def test_references_are_read_again_for_a_new_resource_version_only() -> None:
    """Every Falco of a namespace reads every artifact of it at each reconcile: what an artifact generation
    references is remembered by uid and resourceVersion."""
    falco, _ = make(labels={"tier": "prod"})

    def rulesfile(version: str, configmap: str, tier: str = "prod") -> dict[str, Any]:
        return {
            "kind": "Rulesfile",
            "metadata": {"name": "a", "uid": "u-a", "resourceVersion": version},
            "spec": {"configMapRef": {"name": configmap}, "instanceSelector": {"matchLabels": {"tier": tier}}},
        }

    assert artifact_references(falco, [rulesfile("1", "first")]) == References(("first",))
    assert artifact_references(falco, [rulesfile("2", "second")]) == References(("second",))
    assert artifact_references(falco, [rulesfile("3", "second", tier="dev")]) == References()
    other, _ = make(labels={"tier": "dev"})  # the same generation judged for another Falco: its own audience
    assert artifact_references(other, [rulesfile("3", "second", tier="dev")]) == References(("second",))


def test_desired_objects_cover_identity_rbac_config_service_and_workload_in_order() -> None:
    falco, raw = make()
    kinds = [resource.kind for resource, _ in desired_objects(falco, raw, BuildOptions(), References())]
    assert kinds == ["ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "ConfigMap",
                     "Service", "DaemonSet"]  # fmt: skip


def test_status_counts_conditions_and_transition_times() -> None:
    workload = {"metadata": {"generation": 2},
                "status": {"observedGeneration": 2, "desiredNumberScheduled": 3, "numberAvailable": 3,
                           "updatedNumberScheduled": 3}}  # fmt: skip
    first = desired_status(kind="DaemonSet", workload=workload, version="0.44.1", error=None, generation=1, old=None,
                           now="t1")  # fmt: skip
    assert (first["desiredReplicas"], first["availableReplicas"], first["unavailableReplicas"]) == (3, 3, 0)
    assert {c["type"]: c["status"] for c in first["conditions"]} == {"Reconciled": "True", "Available": "True",
                                                                     "Progressing": "False"}  # fmt: skip
    same = desired_status(kind="DaemonSet", workload=workload, version="0.44.1", error=None, generation=1, old=first,
                          now="t2")  # fmt: skip
    assert same == first, "an unchanged status is byte-equal, so nothing is written"
    failed = desired_status(kind="DaemonSet", workload=workload, version="0.44.1", error="rejected", generation=1,
                            old=first, now="t3")  # fmt: skip
    reconciled = next(c for c in failed["conditions"] if c["type"] == "Reconciled")
    assert (reconciled["status"], reconciled["reason"], reconciled["lastTransitionTime"]) == (
        "False",
        "ApplyFailed",
        "t3",
    )
    assert transitions(first, failed) == [("Reconciled", "False", "ApplyFailed", "rejected")]


def test_native_sidecars_from_kubernetes_1_29() -> None:
    assert not supports_native_sidecar(1, 28)
    assert supports_native_sidecar(1, 29)
    assert supports_native_sidecar(2, 0)


def test_projection_treats_zero_values_the_api_server_omits_as_present() -> None:
    from falco_operator.kube import project

    desired = {"spec": {"readOnly": False, "replicas": 0, "name": "x", "enabled": True}}
    assert project({"spec": {"name": "x", "enabled": True}}, desired) == desired
    assert project({"spec": {"name": "x"}}, desired) != desired


def test_cluster_scoped_rbac_carries_only_the_operators_labels() -> None:
    labels = {"rbac.authorization.k8s.io/aggregate-to-admin": "true"}
    labelled = Falco.model_validate({"metadata": {"name": "f", "namespace": "ns", "uid": "u", "labels": labels}})
    for built in (build_cluster_role(labelled, BuildOptions()), build_cluster_role_binding(labelled, BuildOptions())):
        assert set(built["metadata"]["labels"]) == {
            "app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by",
            "instance.falcosecurity.dev/falco-namespace", "instance.falcosecurity.dev/falco-name",
        }  # fmt: skip


def test_a_rollout_in_progress_is_no_warning_until_its_deadline() -> None:
    rolling = {"metadata": {"generation": 3},
               "status": {"observedGeneration": 3, "desiredNumberScheduled": 3, "numberAvailable": 2,
                          "numberUnavailable": 1, "updatedNumberScheduled": 1}}  # fmt: skip
    done = {"metadata": {"generation": 3},
            "status": {"observedGeneration": 3, "desiredNumberScheduled": 3, "numberAvailable": 3,
                       "updatedNumberScheduled": 3}}  # fmt: skip
    steady = desired_status(kind="DaemonSet", workload=done, version="v", error=None, generation=2, old=None,
                            now="2026-11-24T10:00:00Z")  # fmt: skip
    started = desired_status(kind="DaemonSet", workload=rolling, version="v", error=None, generation=3, old=steady,
                             now="2026-11-24T10:00:10Z")  # fmt: skip
    available = {c["type"]: c for c in started["conditions"]}["Available"]
    assert (available["status"], available["reason"]) == ("False", "RollingOut")
    assert [t for t in transitions(steady, started) if t[0] == "Available"] == [
        ("Available", "False", "RollingOut", "2/3 pods available while the rollout progresses")
    ], "reported as a change, but not a reason worth a warning"
    late = desired_status(kind="DaemonSet", workload=rolling, version="v", error=None, generation=3, old=started,
                          now="2026-11-24T10:10:11Z")  # fmt: skip
    overdue = {c["type"]: c for c in late["conditions"]}["Available"]
    assert (overdue["status"], overdue["reason"]) == ("False", "ProgressDeadlineExceeded")
    assert [t[:3] for t in transitions(started, late)] == [("Available", "False", "ProgressDeadlineExceeded")]
    assert transitions(late, late) == [], "warned once"


@pytest.mark.parametrize("spec", [{}, {"type": "Deployment"}])
def test_the_images_plugins_stay_visible_and_the_agents_libraries_are_where_both_containers_see_them(
    spec: Json,
) -> None:
    falco, raw = make(spec)
    pod = pod_spec(build_workload(falco, raw, BuildOptions()))
    containers = by_name(pod["containers"] + pod.get("initContainers", []))
    falco_mounts = {m["mountPath"]: m["name"] for m in containers["falco"]["volumeMounts"]}
    # Nothing over the image's /usr/share/falco/plugins (the official image ships libcontainer.so there).
    assert not [path for path in falco_mounts if path.startswith(FALCO_PLUGINS_DIR)]
    # The agent writes where its default --plugins-dir says, into an emptyDir Falco sees at the same path.
    agent_dir = str(build_parser().parse_args([]).plugins_dir)
    assert agent_dir == ARTIFACT_PLUGINS_DIR
    agent_mounts = {m["mountPath"]: m["name"] for m in containers["artifact-operator"]["volumeMounts"]}
    assert falco_mounts[agent_dir] == agent_mounts[agent_dir]
    assert {"name": falco_mounts[agent_dir], "emptyDir": {}} in pod["volumes"]


def loaded_config(falco: Falco) -> Json:
    from ruamel.yaml import YAML

    config: Json = YAML(typ="safe").load(falco_yaml(falco))
    return config


@pytest.mark.parametrize("native_sidecar", [True, False])
@pytest.mark.parametrize("engine", ["kmod", "modern_ebpf"])
def test_image_defaults_copies_the_images_rules_before_the_agent_starts_and_loads_them_first(
    native_sidecar: bool, engine: str
) -> None:
    falco, raw = make({"imageDefaults": True, "engine": {"kind": engine}, "version": "0.43.0"})
    options = BuildOptions(native_sidecar=native_sidecar, allow_private_registries=True)
    pod = pod_spec(build_workload(falco, raw, options))
    init_names = [c["name"] for c in pod["initContainers"]]
    copier = by_name(pod["initContainers"])["image-defaults"]
    if native_sidecar:
        assert init_names.index("image-defaults") < init_names.index("artifact-operator")
    else:
        assert "artifact-operator" in by_name(pod["containers"])
    if engine == "kmod":
        assert init_names.index("driver-loader") < init_names.index("image-defaults")
    assert "restartPolicy" not in copier, "a regular init container: done before the agent starts"
    assert copier["image"] == "docker.io/falcosecurity/falco:0.43.0" == by_name(pod["containers"])["falco"]["image"]
    assert copier["command"] == ["/bin/sh", "-c", "cp /etc/falco/falco_rules.yaml /image-defaults/falco_rules.yaml"]
    security = copier["securityContext"]
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert not security.get("privileged")
    assert copier["volumeMounts"] == [{"name": "image-defaults", "mountPath": "/image-defaults"}]
    assert {"name": "image-defaults", "emptyDir": {}} in pod["volumes"]

    agent = by_name(pod["containers"] + pod["initContainers"])["artifact-operator"]
    assert agent["args"] == ["--allow-private-registries", "--image-defaults-dir=/etc/falco/image-defaults"]
    mount = {"name": "image-defaults", "mountPath": "/etc/falco/image-defaults", "readOnly": True}
    assert mount in agent["volumeMounts"]
    assert not [m for m in by_name(pod["containers"])["falco"]["volumeMounts"] if m["name"] == "image-defaults"]

    config = loaded_config(falco)
    assert config["rules_files"] == ["/etc/falco/falco_rules.yaml", "/etc/falco/rules.d"]
    assert (config["load_plugins"], config["plugins"]) == ([], []), "the agent writes the plugins fragment"
    # The fragment by which the agent drops the image's rules for a delivered falco-rules overrides rules_files.
    assert config["config_files"] == [
        "/etc/falco/config.d",
        {"path": "/etc/falco/config.d/99-03-image-rules-replaced-inline.yaml", "strategy": "override"},
    ]


def test_image_defaults_copies_from_the_users_falco_image() -> None:
    overlay = {"spec": {"containers": [{"name": "falco", "image": "reg:5000/falco:mine", "imagePullPolicy": "Never"}]}}
    falco, raw = make({"imageDefaults": True, "podTemplateSpec": overlay})
    pod = pod_spec(build_workload(falco, raw, BuildOptions()))
    copier = by_name(pod["initContainers"])["image-defaults"]
    falco_container = by_name(pod["containers"])["falco"]
    assert (copier["image"], copier["imagePullPolicy"]) == ("reg:5000/falco:mine", "Never")
    assert (falco_container["image"], falco_container["imagePullPolicy"]) == ("reg:5000/falco:mine", "Never")


@pytest.mark.parametrize("spec", [{}, {"type": "Deployment"}, {"engine": {"kind": "kmod"}}])
@pytest.mark.parametrize("native_sidecar", [True, False])
def test_a_falco_without_image_defaults_keeps_its_pod_template_and_falco_yaml(spec: Json, native_sidecar: bool) -> None:
    options = BuildOptions(native_sidecar=native_sidecar)
    unset, unset_raw = make(spec)
    off, off_raw = make({**spec, "imageDefaults": False})
    assert build_workload(unset, unset_raw, options) == build_workload(off, off_raw, options)
    assert falco_yaml(unset) == falco_yaml(off)
    assert loaded_config(unset)["rules_files"] == ["/etc/falco/rules.d"]
    assert loaded_config(unset)["config_files"] == ["/etc/falco/config.d"]
    pod = pod_spec(build_workload(unset, unset_raw, options))
    assert "image-defaults" not in json.dumps(pod)
    agent = by_name(pod["containers"] + pod.get("initContainers", []))["artifact-operator"]
    assert "args" not in agent


def test_turning_image_defaults_on_adds_the_copy_and_rolls_the_pods_and_nothing_else() -> None:
    options = BuildOptions()
    before = build_workload(*make({}), options)["spec"]["template"]
    after = build_workload(*make({"imageDefaults": True}), options)["spec"]["template"]
    assert after["metadata"] != before["metadata"], "falco.yaml changed: its hash in the template rolls the pods"
    stripped = copy.deepcopy(after["spec"])
    stripped["initContainers"] = [c for c in stripped["initContainers"] if c["name"] != "image-defaults"]
    stripped["volumes"].remove({"name": "image-defaults", "emptyDir": {}})
    agent = by_name(stripped["initContainers"])["artifact-operator"]
    agent["volumeMounts"].remove({"name": "image-defaults", "mountPath": "/etc/falco/image-defaults", "readOnly": True})
    assert agent.pop("args") == ["--image-defaults-dir=/etc/falco/image-defaults"]
    assert stripped == before["spec"]


def test_the_image_defaults_sample_is_a_falco_that_loads_the_images_rules() -> None:
    from pathlib import Path

    from ruamel.yaml import YAML

    sample = Path(__file__).resolve().parents[2] / "manifests" / "samples" / "10-falco-image-defaults.yaml"
    raw = YAML(typ="safe").load(sample.read_text())
    raw["metadata"] |= {"namespace": "default", "uid": "uid-1"}  # as the API server gives it
    falco = Falco.model_validate(raw)
    assert falco.spec.loads_image_defaults
    assert "image-defaults" in by_name(pod_spec(build_workload(falco, raw, BuildOptions()))["initContainers"])


def test_the_agent_reads_the_copy_where_the_init_container_writes_it() -> None:
    from falco_operator.artifacts.image_defaults import IMAGE_RULES_FILE_NAME, IMAGE_RULES_PATH

    falco, raw = make({"imageDefaults": True})
    pod = pod_spec(build_workload(falco, raw, BuildOptions()))
    containers = by_name(pod["initContainers"])
    agent, copier = containers["artifact-operator"], containers["image-defaults"]
    agent_dir = build_parser().parse_args(agent["args"]).image_defaults_dir
    (agent_mount,) = [m for m in agent["volumeMounts"] if m["mountPath"] == str(agent_dir)]
    (copier_mount,) = copier["volumeMounts"]
    assert agent_mount["name"] == copier_mount["name"]
    assert copier["command"][-1].endswith(f" {copier_mount['mountPath']}/{IMAGE_RULES_FILE_NAME}")
    assert loaded_config(falco)["rules_files"][0] == IMAGE_RULES_PATH
