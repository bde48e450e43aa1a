"""``spec.registries``: the agent's flags and the pod's CA volume the operator renders, the flags read back into
which CA trusts which host and which hosts serve a reference, in order, with or without credentials."""

from __future__ import annotations

from typing import Any

import pytest

from artifact_agent.cli import build_parser, registry_hosts
from falco_operator.api import Falco
from falco_operator.api.ocirefs import OCILocation
from falco_operator.artifacts.oci.hosts import Endpoint, HostSettings, RegistryHosts
from falco_operator.instance.options import BuildOptions
from falco_operator.instance.podtemplate import AGENT_CONTAINER
from falco_operator.instance.registries import REGISTRY_CA_DIR, REGISTRY_CA_VOLUME
from falco_operator.instance.workload import build_workload

Json = dict[str, Any]
CORP = OCILocation("Registry.Corp:5000", "team/rules", "1", None, plain_http=True, insecure_skip_verify=False)
REGISTRIES: list[Json] = [
    {"host": "Registry.Corp:5000", "caBundle": {"configMapRef": {"name": "corp-ca", "key": "bundle.pem"}},
     "mirrors": ["mirror-a.local:5000", "mirror-b.local"]},
    {"host": "mirror-a.local:5000", "caBundle": {"configMapRef": {"name": "corp-ca"}}},
    {"host": "ghcr.io", "mirrors": ["ghcr-mirror.local"], "mirrorsOnly": True, "credentialsToMirrors": True},
]  # fmt: skip


def pod(spec: Json) -> Json:
    raw = {"apiVersion": "instance.falcosecurity.dev/v1alpha1", "kind": "Falco",
           "metadata": {"name": "f", "namespace": "ns", "uid": "u", "generation": 1}, "spec": spec}  # fmt: skip
    template: Json = build_workload(Falco.model_validate(raw), raw, BuildOptions())["spec"]["template"]["spec"]
    return template


def agent(pod_spec: Json) -> Json:
    return next(c for c in pod_spec["containers"] + pod_spec.get("initContainers", []) if c["name"] == AGENT_CONTAINER)


def hosts_from_pod(pod_spec: Json) -> RegistryHosts:
    return registry_hosts(build_parser().parse_args(agent(pod_spec).get("args", [])))


def test_the_pod_mounts_each_ca_bundle_and_the_agent_reads_back_ca_per_host_and_mirrors_in_order() -> None:
    pod_spec = pod({"registries": REGISTRIES})
    volume = next(v for v in pod_spec["volumes"] if v["name"] == REGISTRY_CA_VOLUME)
    assert volume["projected"]["sources"] == [
        {"configMap": {"name": "corp-ca", "optional": True, "items": [{"key": "bundle.pem", "path": "0.pem"}]}},
        {"configMap": {"name": "corp-ca", "optional": True, "items": [{"key": "ca.crt", "path": "1.pem"}]}},
    ]
    assert {"name": REGISTRY_CA_VOLUME, "mountPath": REGISTRY_CA_DIR, "readOnly": True} in agent(pod_spec)[
        "volumeMounts"
    ]
    hosts = hosts_from_pod(pod_spec)
    assert hosts.hosts == {
        "registry.corp:5000": HostSettings(f"{REGISTRY_CA_DIR}/0.pem", ("mirror-a.local:5000", "mirror-b.local")),
        "mirror-a.local:5000": HostSettings(f"{REGISTRY_CA_DIR}/1.pem"),
        "ghcr.io": HostSettings(None, ("ghcr-mirror.local",), mirrors_only=True, credentials_to_mirrors=True),
    }
    assert hosts.ca_file("REGISTRY.corp:5000") == f"{REGISTRY_CA_DIR}/0.pem"
    assert hosts.ca_file("registry.corp") is None, "a port is part of the host"
    assert hosts.ca_file("mirror-b.local") is None, "a CA is for its own host only"


def test_no_registries_no_volume_no_flags() -> None:
    pod_spec = pod({})
    assert all(v["name"] != REGISTRY_CA_VOLUME for v in pod_spec["volumes"])
    assert not any(arg.startswith("--registry-") for arg in agent(pod_spec).get("args", []))
    assert hosts_from_pod(pod_spec) == RegistryHosts({})


def test_mirrors_first_in_order_then_the_host_with_its_own_transport_and_no_credentials_for_mirrors() -> None:
    hosts = hosts_from_pod(pod({"registries": REGISTRIES}))
    endpoints = hosts.endpoints(CORP)
    mirror = OCILocation("mirror-a.local:5000", "team/rules", "1", None)
    assert endpoints == [
        Endpoint(mirror, mirror_of="Registry.Corp:5000", send_credentials=False),
        Endpoint(OCILocation("mirror-b.local", "team/rules", "1", None), "Registry.Corp:5000", False),
        Endpoint(CORP),
    ]
    assert endpoints[0].location.reference == "mirror-a.local:5000/team/rules:1"


def test_mirrors_only_never_asks_the_host_and_credentials_go_when_the_entry_says_so() -> None:
    hosts = hosts_from_pod(pod({"registries": REGISTRIES}))
    digest = "sha256:" + "a" * 64
    endpoints = hosts.endpoints(OCILocation("ghcr.io", "falcosecurity/rules/falco-rules", None, digest))
    assert endpoints == [
        Endpoint(OCILocation("ghcr-mirror.local", "falcosecurity/rules/falco-rules", None, digest), "ghcr.io", True)
    ]


def test_a_host_without_an_entry_is_asked_alone() -> None:
    other = OCILocation("quay.io", "x/y", "1", None)
    assert RegistryHosts.parse().endpoints(other) == [Endpoint(other)]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--registry-host-ca=registry.corp"], "takes HOST=FILE"),
        (["--registry-host-ca=a=/x", "--registry-host-ca=A=/y"], "a has two CA files"),
        (["--registry-mirror=a=a"], "a cannot be its own mirror"),
        (["--registry-mirror=a=b", "--registry-mirror=a=B"], "b is listed twice as a mirror of a"),
        (["--registry-mirrors-only=a"], "a has no --registry-mirror"),
        (["--registry-credentials-to-mirrors=a"], "a has no --registry-mirror"),
        (["--registry-mirror=a/x=b"], "is not a registry host"),
    ],
)
def test_bad_flags_stop_the_agent_with_what_is_wrong(flags: list[str], message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        registry_hosts(build_parser().parse_args(flags))
