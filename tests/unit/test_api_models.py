"""API models: both shapes of a field normalize to one meaning; selectors and defaults behave as documented."""

from __future__ import annotations

import pytest

from falco_operator.api import (
    Falco,
    FalcoSpec,
    LabelSelector,
    LabelSelectorRequirement,
    OCIArtifact,
    Plugin,
    Rulesfile,
    parse_reference,
)

DIGEST = "sha256:" + "b" * 64


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        (
            "ghcr.io/falcosecurity/rules/falco-rules:latest",
            ("ghcr.io", "falcosecurity/rules/falco-rules", "latest", None),
        ),
        ("localhost:5000/rules/custom", ("localhost:5000", "rules/custom", "latest", None)),
        ("reg:5000/falco:0.44.1", ("reg:5000", "falco", "0.44.1", None)),
        (f"quay.io/a/b@{DIGEST}", ("quay.io", "a/b", None, DIGEST)),
        (f"quay.io/a/b:1.0@{DIGEST}", ("quay.io", "a/b", "1.0", DIGEST)),
        ("falcosecurity/rules:3", ("ghcr.io", "falcosecurity/rules", "3", None)),
        ("localhost/rules:3", ("localhost", "rules", "3", None)),
    ],
)
def test_parse_reference_splits_host_repository_tag_and_digest(
    reference: str, expected: tuple[str, str, str | None, str | None]
) -> None:
    assert parse_reference(reference) == expected


def test_parse_reference_rejects_what_the_crd_rejects() -> None:
    with pytest.raises(ValueError, match="invalid OCI reference"):
        parse_reference("ghcr.io/Falco Rules")


def test_seed_and_current_oci_forms_give_the_same_location_and_credentials() -> None:
    seed = OCIArtifact.model_validate(
        {
            "reference": "localhost:5000/falcosecurity/rules/falco-rules:4",
            "pullSecret": {"secretName": "creds", "usernameKey": "user"},
            "registry": {"plainHTTP": True},
        }
    )
    current = OCIArtifact.model_validate(
        {
            "image": {"repository": "falcosecurity/rules/falco-rules", "tag": "4"},
            "registry": {"name": "localhost:5000", "plainHTTP": True, "auth": {"secretRef": {"name": "creds"}}},
        }
    )
    assert seed.location() == current.location()
    assert seed.location().reference == "localhost:5000/falcosecurity/rules/falco-rules:4"
    assert seed.location().plain_http
    seed_credentials, current_credentials = seed.credentials(), current.credentials()
    assert seed_credentials is not None
    assert current_credentials is not None
    assert seed_credentials.username_key == "user"
    assert current_credentials.username_key == "username"
    assert seed_credentials.secret_name == current_credentials.secret_name == "creds"


def test_image_tag_that_is_a_digest_pins_the_digest_and_registry_defaults_to_ghcr() -> None:
    artifact = OCIArtifact.model_validate(
        {"image": {"repository": "falcosecurity/plugins/plugin/k8smeta", "tag": DIGEST}}
    )
    location = artifact.location()
    assert (location.registry, location.tag, location.digest) == ("ghcr.io", None, DIGEST)
    assert location.reference.endswith(f"@{DIGEST}")


def test_seed_inline_rules_under_oci_artifact_are_inline_rules_and_no_oci_source() -> None:
    seed = Rulesfile.model_validate(
        {"metadata": {"name": "r"}, "spec": {"ociArtifact": {"inline": "- list: a\n  items: []"}}}
    )
    assert seed.spec.inline() == "- list: a\n  items: []"
    assert seed.spec.oci() is None
    current = Rulesfile.model_validate({"metadata": {"name": "r"}, "spec": {"inlineRules": [{"list": "a"}]}})
    assert current.spec.inline() == [{"list": "a"}]
    assert current.spec.priority == 50


def test_falco_defaults_to_a_daemonset_with_modern_ebpf_and_a_deployment_to_nodriver() -> None:
    assert Falco.model_validate({"metadata": {"name": "f"}, "spec": {}}).spec.engine_kind == "modern_ebpf"
    deployment = FalcoSpec.model_validate({"type": "Deployment"})
    assert (deployment.workload_type, deployment.engine_kind) == ("Deployment", "nodriver")
    assert FalcoSpec.model_validate({"type": "Deployment", "engine": {"kind": "kmod"}}).engine_kind == "kmod"


def test_plugin_name_defaults_to_the_object_name() -> None:
    plugin = Plugin.model_validate({"metadata": {"name": "container"}, "spec": {}})
    assert plugin.plugin_name == "container"
    named = Plugin.model_validate({"metadata": {"name": "c"}, "spec": {"config": {"name": "k8smeta"}}})
    assert named.plugin_name == "k8smeta"


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        (LabelSelector(), {"a": "1"}, True),
        (LabelSelector(match_labels={"kubernetes.io/hostname": "node1"}), {"kubernetes.io/hostname": "node1"}, True),
        (LabelSelector(match_labels={"kubernetes.io/hostname": "node1"}), {"kubernetes.io/hostname": "node2"}, False),
        (
            LabelSelector(match_expressions=[LabelSelectorRequirement(key="z", operator="In", values=["a"])]),
            {"z": "a"},
            True,
        ),
        (LabelSelector(match_expressions=[LabelSelectorRequirement(key="z", operator="In", values=["a"])]), {}, False),
        (
            LabelSelector(match_expressions=[LabelSelectorRequirement(key="z", operator="NotIn", values=["a"])]),
            {},
            True,
        ),
        (LabelSelector(match_expressions=[LabelSelectorRequirement(key="z", operator="Exists")]), {"z": ""}, True),
        (
            LabelSelector(match_expressions=[LabelSelectorRequirement(key="z", operator="DoesNotExist")]),
            {"z": ""},
            False,
        ),
    ],
)
def test_label_selector_matches_as_kubernetes_does(
    selector: LabelSelector, labels: dict[str, str], matches: bool
) -> None:
    assert selector.matches(labels) is matches


def test_to_wire_uses_camel_case_and_leaves_unset_fields_out() -> None:
    wire = Falco.model_validate({"metadata": {"name": "f"}, "spec": {"type": "Deployment", "replicas": 2}}).to_wire()
    assert wire == {
        "apiVersion": "instance.falcosecurity.dev/v1alpha1",
        "kind": "Falco",
        "metadata": {"name": "f"},
        "spec": {"type": "Deployment", "replicas": 2},
    }
