"""The Falco's ``spec.registries`` end to end: the operator renders the CA volume and the agent's flags into the pods;
agents started with the flags of their pod (the projected ConfigMaps written where the kubelet would put them) pull
from a registry with a private CA, and from mirrors of a host that does not exist."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import anyio
import kr8s.asyncio
import pytest

from e2e.agent import wait_falco_pods
from e2e.controlplane import ControlPlane
from e2e.controlplane.cluster import free_port
from e2e.kube import call
from e2e.oci_artifacts import push_rules
from e2e.operator import RunningOperator
from e2e.registry import Registry, start_registry
from e2e.wait import wait_for
from falco_operator.instance.podtemplate import AGENT_CONTAINER
from falco_operator.instance.registries import REGISTRY_CA_DIR, REGISTRY_CA_VOLUME
from tests.integration.agent_support import create, running_agents, wait_entry, wait_files
from tests.integration.test_oci_agent import (
    PLAIN_REGISTRY_ARGS,
    artifact_status,
    condition,
    create_secret,
    rules_text,
)

Json = dict[str, Any]
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("crds")]
FALCO_API = "/apis/instance.falcosecurity.dev/v1alpha1"
REPOSITORY = "team/rules"


async def falco_with_registries(api: kr8s.asyncio.Api, namespace: str, registries: list[Json]) -> dict[str, Json]:
    body = {"apiVersion": "instance.falcosecurity.dev/v1alpha1", "kind": "Falco", "metadata": {"name": "falco"},
            "spec": {"registries": registries}}  # fmt: skip
    await call(api, "POST", f"{FALCO_API}/namespaces/{namespace}/falcos", body=body)
    return await wait_falco_pods(api, namespace, "falco")


async def create_ca_config_map(api: kr8s.asyncio.Api, namespace: str, name: str, registry: Registry) -> None:
    assert registry.ca is not None
    body = {"metadata": {"name": name}, "data": {"ca.crt": registry.ca.read_text()}}
    await call(api, "POST", f"/api/v1/namespaces/{namespace}/configmaps", body=body)


async def agent_registry_args(api: kr8s.asyncio.Api, namespace: str, pod: Json, volume_dir: Path) -> tuple[str, ...]:
    """The registry flags of the pod's agent container, with the pod's projected CA volume written into
    ``volume_dir`` as the kubelet would (each ConfigMap key at its item's path) and the flags pointing there."""
    spec = pod["spec"]
    agent = next(c for c in spec["containers"] + spec.get("initContainers", []) if c["name"] == AGENT_CONTAINER)
    volume = next((v for v in spec["volumes"] if v["name"] == REGISTRY_CA_VOLUME), None)
    await anyio.Path(volume_dir).mkdir(parents=True, exist_ok=True)
    for source in (volume or {}).get("projected", {}).get("sources", []):
        config_map = await call(api, "GET", f"/api/v1/namespaces/{namespace}/configmaps/{source['configMap']['name']}")
        for item in source["configMap"]["items"]:
            await anyio.Path(volume_dir / item["path"]).write_text(config_map["data"][item["key"]])
    return tuple(arg.replace(REGISTRY_CA_DIR, str(volume_dir)) for arg in agent.get("args", [])
                 if arg.startswith("--registry-"))  # fmt: skip


def rulesfile(name: str, reference: str, secret: str | None = None) -> Json:
    oci: Json = {"reference": reference}
    if secret:
        oci["pullSecret"] = {"secretName": secret}
    return {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Rulesfile", "metadata": {"name": name},
            "spec": {"ociArtifact": oci}}  # fmt: skip


async def test_a_registry_with_a_private_ca_is_trusted_through_its_ca_bundle_and_refused_without_it(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path,
) -> None:  # fmt: skip
    corp = await anyio.to_thread.run_sync(lambda: start_registry(tmp_path / "corp", auth=False))
    try:
        rules = rules_text("corp_rules")
        await anyio.to_thread.run_sync(push_rules, corp, REPOSITORY, "1", rules)
        await create_ca_config_map(api, namespace, "corp-ca", corp)
        pods = await falco_with_registries(
            api, namespace, [{"host": corp.host, "caBundle": {"configMapRef": {"name": "corp-ca"}}}]
        )
        args = await agent_registry_args(api, namespace, pods["node1"], tmp_path / "volume")
        assert args == (f"--registry-host-ca={corp.host}={tmp_path / 'volume'}/0.pem",)
        await create(api, namespace, rulesfile("corp", f"{corp.host}/{REPOSITORY}:1"))
        async with (
            running_agents(control_plane, tmp_path / "with", namespace, "falco", pods, ["node1"],
                           extra_args=(*PLAIN_REGISTRY_ARGS, *args)) as trusting,
            running_agents(control_plane, tmp_path / "without", namespace, "falco", pods, ["node2"],
                           extra_args=PLAIN_REGISTRY_ARGS) as untrusting,
        ):  # fmt: skip
            agent = trusting["node1"]
            files = await wait_files(agent, agent.rules_dir, bool, "rules from the private-CA registry", timeout=20)
            assert files == {"50-01-corp-oci.yaml": rules}

            refused = await wait_entry(api, untrusting["node2"], "Rulesfile", "corp",
                                       lambda e: e.get("state") == "Failed", "Failed")  # fmt: skip
            assert refused["reason"] == "UntrustedCertificate"
            message = refused["message"]
            assert f"TLS: {corp.host} presents a certificate the agent does not trust" in message
            assert "spec.registries" in message
            assert untrusting["node2"].files(untrusting["node2"].rules_dir) == {}
            status = await wait_for(partial(artifact_status, api, namespace, "rulesfiles", "corp"),
                                    lambda s: condition(s, "ResolvedRefs").get("reason") == "UntrustedCertificate",
                                    what="ResolvedRefs=False UntrustedCertificate")  # fmt: skip
            assert condition(status, "ResolvedRefs")["status"] == "False"

        # The bundle's file absent (its ConfigMap not there yet): that host's artifacts say so; once the kubelet
        # writes the file, the next retry trusts it, with no restart.
        late = tmp_path / "late-volume"
        late_args = tuple(arg.replace(str(tmp_path / "volume"), str(late)) for arg in args)
        async with running_agents(control_plane, tmp_path / "late", namespace, "falco", pods, ["node3"],
                                  extra_args=(*PLAIN_REGISTRY_ARGS, *late_args)) as agents:  # fmt: skip
            agent = agents["node3"]
            missing = await wait_entry(api, agent, "Rulesfile", "corp", lambda e: e.get("state") == "Failed", "Failed")
            assert missing["reason"] == "RegistryCAUnusable"
            assert f"the CA bundle for {corp.host} ({late}/0.pem) is missing" in missing["message"]
            await anyio.Path(late).mkdir()
            await anyio.Path(late / "0.pem").write_bytes(await anyio.Path(tmp_path / "volume" / "0.pem").read_bytes())
            files = await wait_files(agent, agent.rules_dir, bool, "rules once the CA file appears", timeout=20)
            assert files == {"50-01-corp-oci.yaml": rules}
    finally:
        corp.stop()


async def test_mirrors_serve_a_reference_written_for_a_host_that_does_not_exist(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path,
) -> None:  # fmt: skip
    mirror = await anyio.to_thread.run_sync(lambda: start_registry(tmp_path / "mirror"))
    try:
        rules = rules_text("mirrored_rules")
        await anyio.to_thread.run_sync(push_rules, mirror, REPOSITORY, "1", rules)
        await create_ca_config_map(api, namespace, "mirror-ca", mirror)
        down = f"127.0.0.1:{free_port()}"  # nothing listens: the first mirror fails, the next one is asked
        corp = "registry.corp.invalid:5000"
        await create_secret(api, namespace, "corp", {"username": mirror.username or "",
                                                     "password": mirror.password or ""},
                            type_="kubernetes.io/basic-auth", hosts=corp)  # fmt: skip
        pods = await falco_with_registries(api, namespace, [
            {"host": corp, "mirrors": [down, mirror.host], "mirrorsOnly": True, "credentialsToMirrors": True},
            {"host": mirror.host, "caBundle": {"configMapRef": {"name": "mirror-ca"}}},
        ])  # fmt: skip
        args = await agent_registry_args(api, namespace, pods["node1"], tmp_path / "volume")
        assert args == (f"--registry-mirror={corp}={down}", f"--registry-mirror={corp}={mirror.host}",
                        f"--registry-mirrors-only={corp}", f"--registry-credentials-to-mirrors={corp}",
                        f"--registry-host-ca={mirror.host}={tmp_path / 'volume'}/1.pem")  # fmt: skip
        # The same flags without the entry's word on credentials: the mirror is asked with none.
        no_credentials = tuple(a for a in args if not a.startswith("--registry-credentials-to-mirrors"))
        await create(api, namespace, rulesfile("corp", f"{corp}/{REPOSITORY}:1", secret="corp"))
        async with (
            running_agents(control_plane, tmp_path / "with", namespace, "falco", pods, ["node1"],
                           extra_args=(*PLAIN_REGISTRY_ARGS, *args)) as sending,
            running_agents(control_plane, tmp_path / "without", namespace, "falco", pods, ["node2"],
                           extra_args=(*PLAIN_REGISTRY_ARGS, *no_credentials)) as keeping,
        ):  # fmt: skip
            agent = sending["node1"]
            files = await wait_files(agent, agent.rules_dir, bool, "rules from the mirror", timeout=20)
            assert files == {"50-01-corp-oci.yaml": rules}
            entry = await wait_entry(api, agent, "Rulesfile", "corp", lambda e: e.get("state") == "Installed",
                                     "Installed")  # fmt: skip
            assert entry.get("digest", "").startswith("sha256:")

            refused = await wait_entry(api, keeping["node2"], "Rulesfile", "corp",
                                       lambda e: e.get("state") == "Failed", "Failed")  # fmt: skip
            message = refused["message"]
            assert f"no host serves {corp}/{REPOSITORY}:1 (tried in order: {down}: " in message
            assert (
                f"{mirror.host}: {mirror.host} asks for credentials and the artifact names none (the artifact's "
                f"credentials are for {corp}: its spec.registries entry sends them to mirrors only with "
                "credentialsToMirrors)" in message
            )
            assert f"; {corp}: " not in message, "mirrorsOnly: the host itself is never asked"
            assert keeping["node2"].files(keeping["node2"].rules_dir) == {}
    finally:
        mirror.stop()
