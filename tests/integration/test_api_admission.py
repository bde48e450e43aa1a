"""The generated CRDs at the real API server: seed examples, bad objects, round trips."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kr8s.asyncio
import pytest
from ruamel.yaml import YAML

from e2e.controlplane import ControlPlane
from e2e.kube import call, request
from e2e.scenarios.admission import BAD_OBJECTS, BadObject
from falco_operator.api import (
    ALL_KINDS,
    ArtifactReport,
    ArtifactReportSpec,
    ArtifactReportStatus,
    Condition,
    Config,
    ConfigSpec,
    Falco,
    FalcoRule,
    FalcoRuleSpec,
    FalcoSpec,
    FalcoStatus,
    ImageRef,
    KubeObject,
    LabelSelector,
    ObjectMeta,
    Plugin,
    PluginConfig,
    PluginSpec,
    Registry,
    ReportedArtifact,
    Rulesfile,
    RulesfileSpec,
    RulesOCIArtifact,
)
from falco_operator.api.base import LabelSelectorRequirement
from falco_operator.api.falco import DeploymentStrategy, Engine, FalcoRulesSelection, RollingUpdate
from falco_operator.api.oci import OCIArtifact, RegistryAuth, RegistryTLS, SecretRef

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("crds")]

SEED_DIR = Path(__file__).resolve().parents[2] / "manifests" / "samples"
KINDS = {info.kind: info for info in ALL_KINDS}


def collection(kind: str, namespace: str) -> str:
    info = KINDS[kind]
    return f"/apis/{info.group}/v1alpha1/namespaces/{namespace}/{info.plural}"


def load_seed(name: str) -> dict[str, Any]:
    document: dict[str, Any] = YAML(typ="safe").load((SEED_DIR / name).read_text())
    return document


async def create(api: kr8s.asyncio.Api, namespace: str, document: dict[str, Any]) -> tuple[int, Any]:
    """Create as ``kubectl`` does by default: server-side field validation in Strict mode."""
    body = copy.deepcopy(document)
    body["metadata"]["namespace"] = namespace
    return await request(
        api, "POST", collection(body["kind"], namespace), body=body, params={"fieldValidation": "Strict"}
    )


ACCEPTED_SEEDS = [
    "01-falco-sample.yaml",
    "02-falco-deployment.yaml",
    "03-falco-custom-podtemplate.yaml",
    "04-rulesfile-oci.yaml",
    "05-rulesfile-inline.yaml",
    "06-plugin-container.yaml",
    "07-config-label-selector.yaml",
    "09-falcorule-bash.yaml",
]


def test_seed_directory_has_the_documented_examples() -> None:
    assert sorted(p.name for p in SEED_DIR.glob("0*.yaml")) == sorted(
        [*ACCEPTED_SEEDS, "08-rulesfile-selector-invalid-name.yaml"]
    )


@pytest.mark.parametrize("seed", ACCEPTED_SEEDS)
async def test_seed_example_is_accepted(api: kr8s.asyncio.Api, namespace: str, seed: str) -> None:
    document = load_seed(seed)
    status, body = await create(api, namespace, document)
    assert status == 201, body
    for field, value in document["spec"].items():
        assert body["spec"][field] == value, f"{field} changed at admission"


async def test_seed_with_uppercase_name_is_rejected_and_accepted_once_renamed(
    api: kr8s.asyncio.Api, namespace: str
) -> None:
    document = load_seed("08-rulesfile-selector-invalid-name.yaml")
    status, body = await create(api, namespace, document)
    assert status == 422, body
    assert 'metadata.name: Invalid value: "CustomRulesForSpecificNode"' in body["message"]
    assert "a lowercase RFC 1123 subdomain" in body["message"]

    document["metadata"]["name"] = "custom-rules-for-specific-node"
    status, body = await create(api, namespace, document)
    assert status == 201, body
    assert body["spec"]["selector"] == {"matchLabels": {"kubernetes.io/hostname": "node1"}}


@pytest.mark.parametrize("case", BAD_OBJECTS, ids=lambda case: case.id)
async def test_bad_object_is_rejected_with_a_message_naming_field_and_problem(
    api: kr8s.asyncio.Api, namespace: str, case: BadObject
) -> None:
    info = KINDS[case.kind]
    document: dict[str, Any] = {"apiVersion": info.api_version, "kind": case.kind, "metadata": {"name": case.name}}
    if not case.omit_spec:
        document["spec"] = case.spec
    status, body = await create(api, namespace, document)
    assert status == case.code, f"{case.id}: expected {case.code}, got {status}: {body}"
    for fragment in case.expect:
        assert fragment in body["message"], f"{case.id}: {fragment!r} not in {body['message']!r}"
    assert "should match" not in body["message"], f"{case.id}: a raw pattern in {body['message']!r}"


def test_kubectl_finds_every_kind_by_category_and_short_name(control_plane: ControlPlane) -> None:
    resources = control_plane.kubectl("api-resources", "--categories=falcosecurity", "-o", "name").stdout.split()
    assert sorted(resources) == sorted(info.crd_name for info in ALL_KINDS)
    artifacts = control_plane.kubectl("api-resources", "--categories=artifacts", "-o", "name").stdout.split()
    assert "falcos.instance.falcosecurity.dev" not in artifacts
    assert "rulesfiles.artifact.falcosecurity.dev" in artifacts
    short = control_plane.kubectl("get", "falco", "-A", check=False)
    assert short.returncode == 0, short.stderr


def _meta(name: str) -> ObjectMeta:
    return ObjectMeta(name=name, labels={"team": "security"})


def _condition(kind: str) -> Condition:
    return Condition(
        type=kind, status="True", observed_generation=1, last_transition_time="2026-01-01T00:00:00Z",
        reason="Done", message="all good",
    )  # fmt: skip


ROUND_TRIPS: list[KubeObject] = [
    Falco(
        metadata=_meta("full"),
        spec=FalcoSpec(
            type="Deployment",
            replicas=2,
            version="0.44.1",
            strategy=DeploymentStrategy(type="RollingUpdate", rolling_update=RollingUpdate(max_unavailable="25%")),
            engine=Engine(kind="nodriver"),
            falco_rules=FalcoRulesSelection(namespace_selector=LabelSelector(match_labels={"falco": "on"})),
            pod_template_spec={
                "metadata": {"labels": {"extra": "yes"}},
                "spec": {
                    "tolerations": [{"operator": "Exists"}],
                    "initContainers": [{"name": "artifact-operator", "image": "agent:dev"}],
                },
            },
        ),
        status=FalcoStatus(
            resource_type="Deployment",
            version="0.44.1",
            desired_replicas=2,
            available_replicas=2,
            unavailable_replicas=0,
            updated_replicas=2,
            observed_generation=1,
            conditions=[_condition("Reconciled")],
        ),
    ),
    Falco(metadata=_meta("empty")),
    Rulesfile(
        metadata=_meta("oci"),
        spec=RulesfileSpec(
            oci_artifact=RulesOCIArtifact(
                image=ImageRef(repository="falcosecurity/rules/falco-rules", tag="4"),
                registry=Registry(
                    name="localhost:5000", auth=RegistryAuth(secret_ref=SecretRef(name="creds")), plain_http=True
                ),
                refresh_interval="1h",
            ),
            priority=10,
            selector=LabelSelector(
                match_expressions=[LabelSelectorRequirement(key="zone", operator="In", values=["a"])]
            ),
            instance_selector=LabelSelector(match_labels={"tier": "prod"}),
        ),
    ),
    Rulesfile(metadata=_meta("inline"), spec=RulesfileSpec(inline_rules=[{"list": "shells", "items": ["bash"]}])),
    Plugin(
        metadata=_meta("container"),
        spec=PluginSpec(
            oci_artifact=OCIArtifact(
                reference="ghcr.io/falcosecurity/plugins/plugin/container:0.2.4",
                registry=Registry(tls=RegistryTLS(insecure_skip_verify=True)),
            ),
            config=PluginConfig(init_config={"label_max_len": 100, "hooks": ["create"]}, open_params=""),
        ),
    ),
    Config(metadata=_meta("structured"), spec=ConfigSpec(config={"libs_logger": {"enabled": True}}, priority=60)),
    FalcoRule(
        metadata=_meta("bash"),
        spec=FalcoRuleSpec(rule="shell", condition="proc.name = bash", priority="warning", tags=["shell"]),
    ),
    ArtifactReport(
        metadata=_meta("agent-pod"),
        spec=ArtifactReportSpec(node_name="node1", instance="falco"),
        status=ArtifactReportStatus(
            artifacts=[ReportedArtifact(kind="Rulesfile", name="oci", generation=1, state="Loaded", files=["a"])]
        ),
    ),
]


@pytest.mark.parametrize("model", ROUND_TRIPS, ids=lambda m: f"{m.kind}-{m.metadata.name}")
async def test_object_from_model_reads_back_equal(api: kr8s.asyncio.Api, namespace: str, model: KubeObject) -> None:
    wire = model.to_wire()
    status_part = wire.pop("status", None)
    status, body = await create(api, namespace, wire)
    assert status == 201, body
    path = f"{collection(model.kind, namespace)}/{model.metadata.name}"
    if status_part is not None:
        body["status"] = status_part
        await call(api, "PUT", f"{path}/status", body=body)
    read = type(model).model_validate(await call(api, "GET", path))
    assert read.model_dump(exclude={"metadata"}) == model.model_dump(exclude={"metadata"})
    assert read.metadata.labels == model.metadata.labels


async def test_server_applies_the_documented_defaults(api: kr8s.asyncio.Api, namespace: str) -> None:
    bare = {
        "apiVersion": "artifact.falcosecurity.dev/v1alpha1",
        "kind": "Rulesfile",
        "metadata": {"name": "defaults"},
        "spec": {
            "ociArtifact": {"image": {"repository": "falcosecurity/rules/falco-rules"}},
            "configMapRef": {"name": "rules"},
        },
    }
    status, body = await create(api, namespace, bare)
    assert status == 201, body
    assert body["spec"]["priority"] == 50
    assert body["spec"]["ociArtifact"]["image"]["tag"] == "latest"
    assert body["spec"]["configMapRef"]["key"] == "rules.yaml"
    config = {
        "apiVersion": "artifact.falcosecurity.dev/v1alpha1",
        "kind": "Config",
        "metadata": {"name": "defaults"},
        "spec": {"configMapRef": {"name": "cfg"}},
    }
    status, body = await create(api, namespace, config)
    assert status == 201, body
    assert body["spec"]["configMapRef"]["key"] == "config.yaml"
    parsed = Config.model_validate(body)
    assert parsed.spec.priority == ConfigSpec(config_map_ref={"name": "cfg"}).priority == 50
