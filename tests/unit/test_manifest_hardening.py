"""What the shipped manifests and the Falco pod grant: least privilege for the operator and the agent."""

from __future__ import annotations

from falco_operator.api import Falco
from falco_operator.instance.options import BuildOptions
from falco_operator.instance.podtemplate import agent_container
from falco_operator.manifests import manager_objects, rbac_objects


def test_leases_are_granted_in_the_operators_namespace_only() -> None:
    objects = rbac_objects()
    cluster_rules = objects["rbac/role.yaml"]["rules"]
    assert not [rule for rule in cluster_rules if "leases" in rule["resources"]]
    role = objects["rbac/leader_election_role.yaml"]
    assert (role["kind"], role["metadata"]["namespace"]) == ("Role", "falco-operator-system")
    assert role["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                              "verbs": ["get", "create", "update"]}]  # fmt: skip


def test_the_operator_pod_meets_the_restricted_pod_security_level() -> None:
    objects = manager_objects()
    labels = objects["manager/namespace.yaml"]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    pod = objects["manager/deployment.yaml"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]["securityContext"]
    assert container == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                         "capabilities": {"drop": ["ALL"]}}  # fmt: skip


def test_the_agent_runs_unprivileged() -> None:
    falco = Falco.model_validate({"metadata": {"name": "f", "namespace": "n"}, "spec": {}})
    security = agent_container(falco, BuildOptions(agent_image="agent:1"))["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 65532
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}


def test_every_rule_of_the_operator_is_justified_in_the_security_doc() -> None:
    from pathlib import Path

    from falco_operator.instance.rbac import OPERATOR_RULES

    doc = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    table = doc.split("## The operator's ClusterRole, rule by rule", 1)[1]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    for rule in OPERATOR_RULES:
        row = next((r for r in rows if all(f"`{resource}`" in r.split("|")[1] for resource in rule["resources"])), None)
        assert row is not None, f"no line for {rule['resources']}"
        assert [verb.strip() for verb in row.split("|")[2].split(",")] == rule["verbs"], row
