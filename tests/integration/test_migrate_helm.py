"""``falco-operator migrate-helm`` on the falco chart's default values, applied to the local control plane with the
operator running: the DaemonSet and falco.yaml it renders hold the chart's facts (templates of charts/falco 9.1.0
with its default values, driver.kind auto): control-plane tolerations, a privileged falco container with the host
mounts of the auto driver, the driver loader init container (privileged, kernel headers and modules mounted),
engine.kind modern_ebpf in the ConfigMap's falco.yaml (the loader then picks), falco-rules:5 followed from its
OCI repository and the container plugin with the chart's engines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kr8s.asyncio
import pytest
import yaml

from e2e.controlplane import ControlPlane
from e2e.kube import call, request
from e2e.operator import RunningOperator
from e2e.wait import wait_for
from falco_operator.migrate import migrate
from falco_operator.migrate.chart_defaults import CHART_DEFAULTS
from falco_operator.migrate.output import render
from falco_operator.migrate.values import read_values

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("crds")]
Json = dict[str, Any]
HELM = Path(__file__).resolve().parents[1] / "data" / "helm"
FALCO_API = "/apis/instance.falcosecurity.dev/v1alpha1"
ARTIFACT_API = "/apis/artifact.falcosecurity.dev/v1alpha1"
# The chart's falco container, driver auto with its loader: these host paths (pod-template.tpl).
CHART_FALCO_HOST_MOUNTS = {"/host/proc", "/host/etc", "/host/dev", "/sys/module", "/sys/kernel"}
# The chart's driver loader init container mounts these to find or build the module.
CHART_LOADER_MOUNTS = {"/host/proc", "/host/boot", "/host/lib/modules", "/host/usr", "/host/etc"}


def chart_sockets() -> list[str]:
    """Where the chart mounts the container engines' sockets in the falco container (/host + the socket)."""
    engines = CHART_DEFAULTS["collectors"]["containerEngine"]["engines"]
    return [
        f"/host{socket}" for engine in engines.values() if engine["enabled"] for socket in engine.get("sockets", [])
    ]


def by_name(items: list[Json] | None) -> dict[str, Json]:
    return {item["name"]: item for item in items or []}


async def test_the_charts_defaults_migrated_run_the_charts_falco(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path
) -> None:
    migration = migrate(read_values((HELM / "values.yaml").read_bytes()), namespace=namespace)
    assert migration.findings == []
    printed = tmp_path / "migrated.yaml"
    printed.write_text(render("values.yaml", migration.manifests, migration.findings))
    control_plane.kubectl("apply", "--server-side", "--field-manager=migrate-helm-test", "-f", str(printed))

    async def daemonset() -> Json | None:
        status, body = await request(api, "GET", f"/apis/apps/v1/namespaces/{namespace}/daemonsets/falco")
        return body if status == 200 else None

    ds = await wait_for(daemonset, lambda d: d is not None, what="the Falco's DaemonSet", timeout=60)
    assert ds is not None
    pod = ds["spec"]["template"]["spec"]

    chart_tolerations = {(t["key"], t["effect"]) for t in CHART_DEFAULTS["tolerations"]}
    assert {(t["key"], t["effect"]) for t in pod["tolerations"]} == chart_tolerations

    falco = by_name(pod["containers"])["falco"]
    assert falco["securityContext"]["privileged"] is True
    assert falco["image"] == "docker.io/falcosecurity/falco:0.44.1"
    chart_resources = CHART_DEFAULTS["resources"]
    assert chart_resources == {"requests": {"cpu": "100m", "memory": "512Mi"},
                               "limits": {"cpu": "1000m", "memory": "1024Mi"}}  # fmt: skip
    assert falco["resources"] == {
        "requests": {"cpu": "100m", "memory": "512Mi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }
    mounts = {m["mountPath"] for m in falco["volumeMounts"]}
    assert mounts >= CHART_FALCO_HOST_MOUNTS
    uncovered = [s for s in chart_sockets() if not any(s == m or s.startswith(f"{m}/") for m in mounts)]
    assert uncovered == []
    volumes = by_name(pod["volumes"])
    for mount in falco["volumeMounts"]:
        if mount["mountPath"] in CHART_FALCO_HOST_MOUNTS:
            assert volumes[mount["name"]]["hostPath"]["path"] == mount["mountPath"].removeprefix("/host")

    loader = by_name(pod["initContainers"])["driver-loader"]
    assert "auto" in loader["args"]
    assert loader["securityContext"]["privileged"] is True
    assert {m["mountPath"] for m in loader["volumeMounts"]} >= CHART_LOADER_MOUNTS

    config_map = await call(api, "GET", f"/api/v1/namespaces/{namespace}/configmaps/falco")
    falco_yaml = yaml.safe_load(config_map["data"]["falco.yaml"])
    assert falco_yaml["engine"]["kind"] == "modern_ebpf"  # as the chart's ConfigMap says for auto
    # imageDefaults: the image's falco_rules.yaml first (the falco-rules Rulesfile replaces it once pulled).
    assert falco_yaml["rules_files"] == ["/etc/falco/falco_rules.yaml", "/etc/falco/rules.d"]
    assert "image-defaults" in by_name(pod["initContainers"])

    rules = await call(api, "GET", f"{ARTIFACT_API}/namespaces/{namespace}/rulesfiles/falco-rules")
    assert rules["spec"]["ociArtifact"] == {"reference": "ghcr.io/falcosecurity/rules/falco-rules:5",
                                            "refreshInterval": CHART_DEFAULTS["falcoctl"]["config"]["artifact"]
                                            ["follow"]["every"]}  # fmt: skip
    plugin = await call(api, "GET", f"{ARTIFACT_API}/namespaces/{namespace}/plugins/container")
    engine = CHART_DEFAULTS["collectors"]["containerEngine"]
    assert plugin["spec"]["config"] == {
        "name": "container",
        "libraryPath": "libcontainer.so",
        "initConfig": {"label_max_len": engine["labelMaxLen"], "with_size": engine["withSize"],
                       "hooks": engine["hooks"], "engines": engine["engines"]},
    }  # fmt: skip

    async def falco_status() -> Json:
        result: Json = await call(api, "GET", f"{FALCO_API}/namespaces/{namespace}/falcos/falco")
        return result

    await wait_for(
        falco_status,
        lambda f: ((f.get("status") or {}).get("artifacts") or {}).get("selected") == 2,
        what="the Falco selecting the migrated Rulesfile and Plugin",
        timeout=60,
    )


REALISTIC = ("custom-rules.yaml", "sidekick.yaml", "kmod.yaml", "scheduling.yaml", "k8saudit-services.yaml",
             "values-k8saudit.yaml", "values-syscall-k8saudit.yaml")  # fmt: skip


async def served_falco_fields(api: kr8s.asyncio.Api) -> set[str]:
    crd = await call(
        api, "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/falcos.instance.falcosecurity.dev"
    )
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return set(schema["properties"]["spec"]["properties"])


@pytest.mark.parametrize("values_file", REALISTIC)
async def test_every_migrated_object_passes_the_api_servers_validation(
    api: kr8s.asyncio.Api, namespace: str, control_plane: ControlPlane, tmp_path: Path, values_file: str
) -> None:
    """The schemas and CEL rules of the CRDs accept what the migration prints (strict field validation: no field
    is dropped). spec.services and spec.monitoring come from other branches: until the CRD serves them they are
    left out here, so the test checks them once it does."""
    migration = migrate(read_values((HELM / values_file).read_bytes()), namespace=namespace)
    served = await served_falco_fields(api)
    falco = migration.manifests[0]
    for field in ("services", "monitoring"):
        if field not in served:
            falco["spec"].pop(field, None)
    printed = tmp_path / "migrated.yaml"
    printed.write_text(render(values_file, migration.manifests, migration.findings))
    result = control_plane.kubectl("apply", "--server-side", "--dry-run=server", "--validate=strict",
                                   "--field-manager=migrate-helm-test", "-f", str(printed))  # fmt: skip
    assert result.stdout.count("serverside-applied (server dry run)") == len(migration.manifests), result.stdout
