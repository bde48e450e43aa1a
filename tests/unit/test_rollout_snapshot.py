"""The snapshot ConfigMap of a stable generation, and Programmed during a rollout."""

from __future__ import annotations

import base64
import json
from typing import Any

from falco_operator.api import Falco, Plugin, Rulesfile
from falco_operator.api.plain import SNAPSHOT_CONTENT_KEY, SNAPSHOT_KEY
from falco_operator.instance.rbac import artifact_references
from falco_operator.rollout.snapshot import MAX_SNAPSHOT_BYTES, Snapshot, Unbuildable, build, label_value, pinned
from falco_operator.status.aggregate import with_rollout

Json = dict[str, Any]
DIGEST = "sha256:" + "ab" * 32


def raw(kind: str, spec: Json) -> Json:
    return {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": kind,
            "metadata": {"name": "r", "namespace": "ns", "uid": "u-1", "generation": 4}, "spec": spec}  # fmt: skip


def test_oci_sources_are_pinned_to_the_digest_in_either_form() -> None:
    seed = {"reference": "registry.local:5000/rules/x:v1", "pullSecret": {"secretName": "s"}, "refreshInterval": "5m"}
    assert pinned(seed, DIGEST) == {
        "reference": f"registry.local:5000/rules/x@{DIGEST}",
        "pullSecret": {"secretName": "s"},
    }
    image = {"image": {"repository": "rules/x", "tag": "v1"}, "verify": {"key": {"configMapRef": {"name": "k"}}},
             "registry": {"name": "reg.example", "plainHTTP": True, "auth": {"secretRef": {"name": "a"}}}}  # fmt: skip
    result = pinned(image, DIGEST)
    assert result == {"reference": f"reg.example/rules/x@{DIGEST}", "verify": image["verify"],
                      "registry": {"plainHTTP": True, "auth": {"secretRef": {"name": "a"}}}}  # fmt: skip
    assert Plugin.model_validate(raw("Plugin", {"ociArtifact": result})).spec.oci_artifact is not None
    assert pinned({"image": {"repository": "falcosecurity/rules"}}, DIGEST)["reference"] == (
        f"ghcr.io/falcosecurity/rules@{DIGEST}")  # fmt: skip


def test_a_snapshot_keeps_the_spec_the_configmap_bytes_and_is_owned_by_the_artifact() -> None:
    spec = {"configMapRef": {"name": "cm", "key": "rules.yaml"}, "priority": 40, "rollout": {"steps": [{"nodes": 1}]}}
    built = build(raw("Rulesfile", spec), 4, "r-rulesfile-stable", digest=None, config_map_content=b"- list: l\n")
    assert isinstance(built, Snapshot)
    body = built.body
    assert body["metadata"]["name"] == "r-rulesfile-stable"
    assert body["metadata"]["namespace"] == "ns"
    assert body["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "falco-operator",
                                          "artifact.falcosecurity.dev/snapshot-of": "Rulesfile.r"}  # fmt: skip
    owner = body["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Rulesfile", "r", "u-1")
    artifact = json.loads(body["data"][SNAPSHOT_KEY])
    assert artifact["metadata"] == {"name": "r", "generation": 4}
    assert Rulesfile.model_validate(artifact).spec.priority == 40
    assert base64.b64decode(body["binaryData"][SNAPSHOT_CONTENT_KEY]) == b"- list: l\n"


def test_what_cannot_be_snapshotted() -> None:
    oci = {"ociArtifact": {"reference": "ghcr.io/a/b:1"}}
    assert isinstance(build(raw("Rulesfile", oci), 4, "n", digest=None, config_map_content=None), Unbuildable)
    assert isinstance(build(raw("Rulesfile", oci), 4, "n", digest=DIGEST, config_map_content=None), Snapshot)
    cm = {"configMapRef": {"name": "cm"}}
    assert isinstance(build(raw("Rulesfile", cm), 4, "n", digest=None, config_map_content=None), Unbuildable)
    big = build(raw("Rulesfile", cm), 4, "n", digest=None, config_map_content=b"x" * MAX_SNAPSHOT_BYTES)
    assert isinstance(big, Unbuildable)
    assert big.too_large
    assert "512 KiB" in big.reason


def test_label_values_stay_within_63_characters() -> None:
    assert label_value("Rulesfile.short") == "Rulesfile.short"
    long = label_value("Rulesfile." + "a" * 100)
    assert len(long) <= 63
    assert long != label_value("Rulesfile." + "a" * 99 + "b")


def conditions(reason: str = "Pending") -> list[Json]:
    return [{"type": "Programmed", "status": "False", "reason": reason, "message": "m", "observedGeneration": 4,
             "lastTransitionTime": "t0"}, {"type": "Valid", "status": "True", "reason": "Valid"}]  # fmt: skip


def test_programmed_says_rolling_out_then_rolled_back() -> None:
    status = {"observedGeneration": 4, "nodes": {"targeted": 5}, "conditions": conditions()}
    rollout = {"phase": "Progressing", "stableGeneration": 3, "candidateGeneration": 4, "step": 1, "steps": 2,
               "nodes": ["node-a"]}  # fmt: skip
    result = with_rollout(status, rollout, {"conditions": conditions()}, "t1")
    programmed = result["conditions"][0]
    assert (programmed["status"], programmed["reason"]) == ("False", "RollingOut")
    assert programmed["message"] == "step 1/2: generation 4 on node-a; generation 3 on the other 4 node(s)"
    assert programmed["lastTransitionTime"] == "t0", "still False: the transition time stays"
    assert result["rollout"] == rollout
    halted = {**rollout, "phase": "Halted", "nodes": None, "message": "halted at step 1/2: node-a: RuleRate: 10/s"}
    back = with_rollout(status, halted, None, "t1")["conditions"][0]
    assert (back["reason"], back["message"]) == ("RolledBack", halted["message"])
    stable = {"phase": "Succeeded", "stableGeneration": 4, "snapshot": "s"}
    assert with_rollout(status, stable, None, "t1")["conditions"] == status["conditions"]
    assert with_rollout(status, None, None, "t1") == {**status, "rollout": None}


def test_the_agents_of_a_falco_may_read_the_snapshots_of_the_artifacts_in_a_rollout_it_loads() -> None:
    def falco(name: str) -> Falco:
        return Falco.model_validate({"apiVersion": "instance.falcosecurity.dev/v1alpha1", "kind": "Falco",
                                     "metadata": {"name": name, "namespace": "ns"}, "spec": {}})  # fmt: skip

    rollout = {"steps": [{"nodes": 1}]}
    artifacts = [
        raw("Rulesfile", {"inlineRules": "- list: l\n  items: []\n", "rollout": rollout}),
        {**raw("Config", {"config": {"a": 1}, "rollout": rollout, "instanceSelector": {"matchLabels": {"x": "y"}}}),
         "metadata": {"name": "elsewhere"}},
        {**raw("Config", {"config": {"a": 1}}), "metadata": {"name": "plain"}},
    ]  # fmt: skip
    assert artifact_references(falco("f"), artifacts).configmaps == ("r-rulesfile-stable",)
