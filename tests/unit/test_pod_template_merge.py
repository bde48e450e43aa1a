"""Merging a user's PodTemplateSpec overlay over the generated default template."""

from __future__ import annotations

import copy
from typing import Any

from falco_operator.instance.merge import ATOMIC_FIELDS, LIST_KEYS, merge_pod_template


def default_template() -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app.kubernetes.io/name": "falco"}, "annotations": {"checksum/config": "abc"}},
        "spec": {
            "serviceAccountName": "falco",
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}],
            "initContainers": [
                {
                    "name": "artifact-operator",
                    "image": "agent:1",
                    "args": ["--init"],
                    "env": [{"name": "FALCO_NAME", "value": "falco"}, {"name": "MODE", "value": "init"}],
                    "volumeMounts": [{"name": "rules", "mountPath": "/etc/falco/rules.d"}],
                }
            ],
            "containers": [
                {
                    "name": "falco",
                    "image": "falco:1",
                    "command": ["/usr/bin/falco"],
                    "args": ["-c", "/etc/falco/falco.yaml"],
                    "securityContext": {"privileged": True},
                    "resources": {"requests": {"cpu": "100m", "memory": "512Mi"}},
                    "ports": [{"name": "web", "containerPort": 8765}],
                    "env": [{"name": "HOST_ROOT", "value": "/host"}],
                    "volumeMounts": [
                        {"name": "rules", "mountPath": "/etc/falco/rules.d"},
                        {"name": "proc", "mountPath": "/host/proc", "readOnly": True},
                    ],
                }
            ],
            "volumes": [{"name": "rules", "emptyDir": {}}, {"name": "proc", "hostPath": {"path": "/proc"}}],
        },
    }


def container(template: dict[str, Any], name: str, kind: str = "containers") -> dict[str, Any]:
    matches = [c for c in template["spec"][kind] if c["name"] == name]
    assert len(matches) == 1
    result: dict[str, Any] = matches[0]
    return result


def test_overlay_fields_win_and_the_rest_of_each_container_is_kept() -> None:
    base = default_template()
    overlay = {
        "spec": {
            "initContainers": [
                {"name": "artifact-operator", "image": "my-custom-artifact-image:latest", "imagePullPolicy": "Always"}
            ],
            "containers": [{"name": "falco", "tty": True, "image": "my-custom-falco-image:latest"}],
        }
    }

    merged = merge_pod_template(base, overlay)

    init = container(merged, "artifact-operator", "initContainers")
    assert init == {
        **container(base, "artifact-operator", "initContainers"),
        "image": "my-custom-artifact-image:latest",
        "imagePullPolicy": "Always",
    }
    falco = container(merged, "falco")
    assert falco == {**container(base, "falco"), "image": "my-custom-falco-image:latest", "tty": True}
    assert falco["securityContext"] == {"privileged": True}
    assert falco["ports"] == [{"name": "web", "containerPort": 8765}]
    assert merged["spec"]["volumes"] == base["spec"]["volumes"]


def test_new_container_volume_and_env_var_are_appended_after_the_base_ones() -> None:
    base = default_template()
    overlay = {
        "spec": {
            "containers": [
                {"name": "sidecar", "image": "busybox"},
                {"name": "falco", "env": [{"name": "EXTRA", "value": "1"}]},
            ],
            "volumes": [{"name": "scratch", "emptyDir": {}}],
        }
    }

    merged = merge_pod_template(base, overlay)

    assert [c["name"] for c in merged["spec"]["containers"]] == ["falco", "sidecar"]
    assert [v["name"] for v in merged["spec"]["volumes"]] == ["rules", "proc", "scratch"]
    assert container(merged, "falco")["env"] == [
        {"name": "HOST_ROOT", "value": "/host"},
        {"name": "EXTRA", "value": "1"},
    ]


def test_env_merges_by_name_with_the_overlay_value_winning() -> None:
    base = default_template()
    overlay = {
        "spec": {
            "initContainers": [
                {
                    "name": "artifact-operator",
                    "env": [{"name": "MODE", "value": "watch"}, {"name": "NEW", "value": "x"}],
                }
            ]
        }
    }

    merged = merge_pod_template(base, overlay)

    assert container(merged, "artifact-operator", "initContainers")["env"] == [
        {"name": "FALCO_NAME", "value": "falco"},
        {"name": "MODE", "value": "watch"},
        {"name": "NEW", "value": "x"},
    ]


def test_env_value_from_is_merged_into_the_matching_item() -> None:
    base = {"spec": {"containers": [{"name": "c", "env": [{"name": "A", "value": "1"}]}]}}
    overlay = {"spec": {"containers": [{"name": "c", "env": [{"name": "A", "valueFrom": {"fieldRef": {}}}]}]}}

    merged = merge_pod_template(base, overlay)

    assert merged["spec"]["containers"][0]["env"] == [{"name": "A", "value": "1", "valueFrom": {"fieldRef": {}}}]


def test_volume_mounts_merge_by_mount_path() -> None:
    base = default_template()
    overlay = {
        "spec": {
            "containers": [
                {
                    "name": "falco",
                    "volumeMounts": [
                        {"name": "proc", "mountPath": "/host/proc", "readOnly": False},
                        {"name": "rules", "mountPath": "/extra/rules"},
                    ],
                }
            ]
        }
    }

    merged = merge_pod_template(base, overlay)

    assert container(merged, "falco")["volumeMounts"] == [
        {"name": "rules", "mountPath": "/etc/falco/rules.d"},
        {"name": "proc", "mountPath": "/host/proc", "readOnly": False},
        {"name": "rules", "mountPath": "/extra/rules"},
    ]


def test_ports_merge_by_container_port_and_protocol_defaulting_to_tcp() -> None:
    base = default_template()
    overlay = {
        "spec": {
            "containers": [
                {
                    "name": "falco",
                    "ports": [
                        {"containerPort": 8765, "protocol": "TCP", "hostPort": 8765},
                        {"containerPort": 8765, "protocol": "UDP"},
                    ],
                }
            ]
        }
    }

    merged = merge_pod_template(base, overlay)

    assert container(merged, "falco")["ports"] == [
        {"name": "web", "containerPort": 8765, "protocol": "TCP", "hostPort": 8765},
        {"containerPort": 8765, "protocol": "UDP"},
    ]


def test_atomic_fields_are_replaced_whole() -> None:
    base = default_template()
    overlay = {
        "spec": {
            "nodeSelector": {"pool": "security"},
            "tolerations": [{"operator": "Exists"}],
            "containers": [{"name": "falco", "command": ["/bin/sh"], "args": ["-x"]}],
        }
    }

    merged = merge_pod_template(base, overlay)

    assert merged["spec"]["nodeSelector"] == {"pool": "security"}
    assert merged["spec"]["tolerations"] == [{"operator": "Exists"}]
    assert container(merged, "falco")["command"] == ["/bin/sh"]
    assert container(merged, "falco")["args"] == ["-x"]
    assert {"nodeSelector", "tolerations", "args", "command"} <= ATOMIC_FIELDS


def test_unkeyed_lists_are_replaced_whole() -> None:
    base = {"spec": {"containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "a"}}]}]}}
    overlay = {"spec": {"containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "b"}}]}]}}

    merged = merge_pod_template(base, overlay)

    assert merged["spec"]["containers"][0]["envFrom"] == [{"secretRef": {"name": "b"}}]


def test_maps_merge_recursively() -> None:
    base = default_template()
    overlay = {
        "metadata": {"labels": {"team": "sec"}, "annotations": {"checksum/config": "def", "note": "x"}},
        "spec": {
            "affinity": {"nodeAffinity": {}},
            "containers": [
                {"name": "falco", "resources": {"limits": {"memory": "1Gi"}}, "securityContext": {"runAsUser": 0}}
            ],
        },
    }

    merged = merge_pod_template(base, overlay)

    assert merged["metadata"] == {
        "labels": {"app.kubernetes.io/name": "falco", "team": "sec"},
        "annotations": {"checksum/config": "def", "note": "x"},
    }
    assert merged["spec"]["affinity"] == {"nodeAffinity": {}}
    falco = container(merged, "falco")
    assert falco["resources"] == {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}}
    assert falco["securityContext"] == {"privileged": True, "runAsUser": 0}


def test_none_overlay_values_are_ignored() -> None:
    base = default_template()
    overlay = {"metadata": {"labels": None}, "spec": {"serviceAccountName": None, "containers": [{"name": "falco"}]}}

    assert merge_pod_template(base, overlay) == base


def test_overlay_volume_with_another_source_replaces_the_base_source() -> None:
    base = default_template()
    overlay = {"spec": {"volumes": [{"name": "rules", "hostPath": {"path": "/srv/rules", "type": "Directory"}}]}}

    merged = merge_pod_template(base, overlay)

    assert merged["spec"]["volumes"] == [
        {"name": "rules", "hostPath": {"path": "/srv/rules", "type": "Directory"}},
        {"name": "proc", "hostPath": {"path": "/proc"}},
    ]


def test_inputs_are_not_mutated_and_result_shares_no_objects_with_them() -> None:
    base = default_template()
    overlay = {
        "metadata": {"labels": {"team": "sec"}},
        "spec": {
            "tolerations": [{"operator": "Exists"}],
            "containers": [{"name": "falco", "env": [{"name": "X", "value": "1"}]}, {"name": "new", "args": ["a"]}],
        },
    }
    base_before, overlay_before = copy.deepcopy(base), copy.deepcopy(overlay)

    merged = merge_pod_template(base, overlay)
    merged["metadata"]["labels"]["mutated"] = "yes"
    merged["spec"]["tolerations"].append({"key": "k"})
    container(merged, "falco")["env"].append({"name": "Y"})
    container(merged, "falco")["securityContext"]["privileged"] = False
    container(merged, "new")["args"].append("b")

    assert base == base_before
    assert overlay == overlay_before


def test_empty_overlay_returns_an_equal_copy() -> None:
    base = default_template()

    merged = merge_pod_template(base, {})

    assert merged == base
    assert merged is not base
    assert merged["spec"] is not base["spec"]


def test_keyed_list_with_an_item_missing_its_key_is_replaced_whole() -> None:
    base = {"spec": {"containers": [{"name": "falco", "env": [{"name": "A", "value": "1"}]}]}}
    overlay = {"spec": {"containers": [{"name": "falco", "env": [{"value": "no-name"}]}]}}

    merged = merge_pod_template(base, overlay)

    assert merged["spec"]["containers"][0]["env"] == [{"value": "no-name"}]


def test_malformed_base_list_is_replaced_by_the_overlay() -> None:
    base = {"spec": {"containers": [{"image": "nameless"}, "not-a-map"]}}
    overlay = {"spec": {"containers": [{"name": "falco", "image": "falco:2"}]}}

    merged = merge_pod_template(base, overlay)

    assert merged["spec"]["containers"] == [{"name": "falco", "image": "falco:2"}]


def test_list_keys_cover_the_documented_fields() -> None:
    assert LIST_KEYS["volumeMounts"] == ("mountPath",)
    assert LIST_KEYS["ports"] == ("containerPort", "protocol")
    assert LIST_KEYS["hostAliases"] == ("ip",)
    assert LIST_KEYS["readinessGates"] == ("conditionType",)
    assert LIST_KEYS["resizePolicy"] == ("resourceName",)
    assert "envFrom" not in LIST_KEYS
