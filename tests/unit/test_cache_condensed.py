"""What the operator's informers keep of workloads, and the keys every cached object shares."""

from __future__ import annotations

import copy
import json
from typing import Any

from falco_operator.kube.condensed import DIGESTS, condense_workload, condensed_digests
from falco_operator.kube.informer import shared_keys

Json = dict[str, Any]


def daemonset(image: str = "falco:1") -> Json:
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "f", "namespace": "ns", "uid": "u1", "generation": 3, "labels": {"a": "b"},
                     "annotations": {"falco-operator/applied-hash": "abc"}},
        "spec": {"selector": {"matchLabels": {"a": "b"}},
                 "template": {"spec": {"containers": [{"name": "falco", "image": image}]}}},
        "status": {"desiredNumberScheduled": 3, "numberAvailable": 2, "observedGeneration": 3},
    }  # fmt: skip


def test_a_condensed_workload_keeps_metadata_status_and_replicas_and_a_digest_of_its_spec() -> None:
    deployment = daemonset() | {"kind": "Deployment"}
    deployment["spec"] = {**deployment["spec"], "replicas": 2}
    condensed = condense_workload(copy.deepcopy(deployment))
    assert condensed["metadata"] == deployment["metadata"]
    assert condensed["status"] == deployment["status"]
    assert condensed["spec"] == {"replicas": 2}
    assert set(condensed_digests(condensed) or {}) == {"spec"}
    assert condensed_digests(daemonset()) is None
    assert len(json.dumps(condensed)) < len(json.dumps(deployment))


def test_the_digest_follows_any_change_of_the_spec_and_only_of_the_spec() -> None:
    first = condense_workload(daemonset())[DIGESTS]["spec"]
    assert condense_workload(daemonset())[DIGESTS]["spec"] == first
    assert condense_workload(daemonset("evil/falco:1"))[DIGESTS]["spec"] != first
    restatused = daemonset()
    restatused["status"]["numberAvailable"] = 3
    restatused["metadata"]["resourceVersion"] = "99"
    assert condense_workload(restatused)[DIGESTS]["spec"] == first
    reordered = daemonset()
    reordered["spec"] = dict(reversed(list(reordered["spec"].items())))
    assert condense_workload(reordered)[DIGESTS]["spec"] == first


def test_cached_objects_share_one_copy_of_each_key_and_keep_their_content() -> None:
    text = json.dumps(daemonset())
    first, second = shared_keys(json.loads(text)), shared_keys(json.loads(text))
    assert first == second == json.loads(text)
    first_keys = {key: key for key in first["metadata"]}
    assert all(first_keys[key] is key for key in second["metadata"])
    assert next(iter(first["spec"]["template"]["spec"]["containers"][0])) is next(
        iter(second["spec"]["template"]["spec"]["containers"][0])
    )
