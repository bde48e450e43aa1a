"""Pure parts of the control plane harness: the helper go.mod and the simulated kubelet's statuses."""

from __future__ import annotations

from e2e.controlplane.build import KUBERNETES_VERSION, helper_go_mod
from e2e.nodesim import NodeSpec, is_running_and_ready, running_status

KUBERNETES_MOD = """module k8s.io/kubernetes

go 1.26.0

require (
\tk8s.io/api v0.0.0
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
)
"""


def test_helper_go_mod_maps_each_staging_module_to_its_published_version() -> None:
    minor = KUBERNETES_VERSION.removeprefix("v").split(".", 1)[1]
    text = helper_go_mod(KUBERNETES_MOD)
    assert f"\tk8s.io/api => k8s.io/api v0.{minor}" in text
    assert f"\tk8s.io/client-go => k8s.io/client-go v0.{minor}" in text
    assert f"\tk8s.io/kubernetes {KUBERNETES_VERSION}" in text
    assert "go 1.26.0" in text
    assert "./staging" not in text


def test_node_spec_parses_extra_labels_over_the_defaults() -> None:
    spec = NodeSpec.parse("node1:zone=a,kubernetes.io/arch=arm64")
    assert spec.name == "node1"
    assert spec.labels == {
        "kubernetes.io/hostname": "node1",
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "arm64",
        "zone": "a",
    }


def test_running_status_marks_sidecars_running_and_plain_init_containers_completed() -> None:
    pod = {
        "metadata": {"uid": "u1"},
        "spec": {
            "initContainers": [
                {"name": "loader", "image": "l"},
                {"name": "agent", "image": "a", "restartPolicy": "Always"},
            ],
            "containers": [{"name": "main", "image": "m"}],
        },
        "status": {"phase": "Pending"},
    }
    assert not is_running_and_ready(pod)
    status = running_status(pod, "10.244.0.2", "10.250.0.10")
    init = {s["name"]: s for s in status["initContainerStatuses"]}
    assert "terminated" in init["loader"]["state"]
    assert init["agent"]["ready"] is True
    assert status["containerStatuses"][0]["ready"] is True
    assert is_running_and_ready({**pod, "status": status})
