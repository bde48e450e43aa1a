"""`falco-operator push` as a pipeline runs it (the command in its own process) against the loopback registry
(TLS from a test CA, htpasswd, credentials from a docker config file): what it uploads reads back as falcoctl's
layout, the agent's puller takes the file out, a Rulesfile pinned to the printed digest is delivered by an agent
and loaded by real Falco, and a file Falco would refuse never reaches the registry."""

from __future__ import annotations

import base64
import json
import os
import secrets
import ssl
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import kr8s.asyncio
import pytest

from e2e.agent import falco_pods, rule
from e2e.controlplane import ControlPlane
from e2e.controlplane.cluster import free_port
from e2e.falco import FalcoBinaries, run_falco
from e2e.operator import RunningOperator
from e2e.registry import Registry
from e2e.wait import wait_for
from falco_operator.api.ocirefs import OCILocation
from falco_operator.artifacts import sha256_hex
from falco_operator.artifacts.oci import PLUGIN, RULES, ArtifactType, Credentials, RegistrySession, http_client
from falco_operator.artifacts.oci.archive import single_file
from falco_operator.artifacts.oci.media import (
    OCI_INDEX,
    OCI_MANIFEST,
    PLUGIN_CONFIG,
    PLUGIN_LAYER,
    RULES_CONFIG,
    RULES_LAYER,
)
from falco_operator.artifacts.oci.registry import machine_architecture
from tests.integration.agent_support import create, running_agents, wait_entry, wait_files
from tests.integration.test_oci_agent import agent_args, artifact_status, condition, create_secret, docker_config

Json = dict[str, Any]
pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]
RULES_WITH_REQUIREMENTS = b"""\
- required_engine_version: 0.50.0
- required_plugin_versions:
  - name: container
    version: 0.2.0
- list: pushed_shells
  items: [bash, sh]
"""


def _docker_config(directory: Path, registry: Registry, password: str | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{registry.username}:{password or registry.password}".encode()).decode()
    (directory / "config.json").write_text(json.dumps({"auths": {registry.host: {"auth": auth}}}))
    return directory


def push(registry: Registry, docker_dir: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """The command in its own process, as a pipeline runs it; HOME is empty so only DOCKER_CONFIG is read."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DOCKER_CONFIG": str(docker_dir), "HOME": str(docker_dir)}
    tls = ["--plain-http"] if registry.plain_http else [f"--ca-file={registry.ca}"]
    return subprocess.run([sys.executable, "-m", "falco_operator", "push", *arguments, *tls], env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


def pushed_digest(result: subprocess.CompletedProcess[str], reference: str) -> str:
    assert result.returncode == 0, result.stderr
    printed = result.stdout.strip()
    assert printed.startswith(f"{reference}@sha256:"), printed
    return printed.rsplit("@", 1)[1]


def _repository() -> str:
    return f"pipelines/{secrets.token_hex(4)}/my-rules"


async def _get(registry: Registry, path: str, accept: str | None = None) -> httpx.Response:
    headers = {"Accept": accept} if accept else {}
    verify = ssl.create_default_context(cafile=str(registry.ca))
    async with httpx.AsyncClient(verify=verify, auth=(registry.username or "", registry.password or ""),
                                 timeout=10) as client:  # fmt: skip
        response = await client.get(f"{registry.url}/v2/{path}", headers=headers)
    response.raise_for_status()
    return response


async def _pull(registry: Registry, repository: str, digest: str, kind: ArtifactType) -> tuple[str, str, bytes]:
    """The agent's own puller, by digest: (resolved digest, file name, file bytes)."""
    location = OCILocation(registry.host, repository, None, digest, plain_http=registry.plain_http)
    credentials = Credentials(registry.username or "", registry.password or "")
    async with http_client(timeout=10, extra_ca=str(registry.ca), allow_private=True) as http:
        session = RegistrySession(http, location, credentials)
        resolved = await session.resolve(kind, machine_architecture())
        with tempfile.TemporaryDirectory() as spool:
            pulled = await session.fetch(resolved, kind, 1 << 26, Path(spool))
    return pulled.digest, pulled.file.name, pulled.file.data


def _storage(registry: Registry) -> set[str]:
    root = registry.directory / "storage"
    return {str(path.relative_to(root)) for path in root.rglob("*")} if root.exists() else set()


async def test_a_pushed_rules_file_reads_back_as_falcoctl_lays_it_out(oci_registry: Registry, tmp_path: Path) -> None:
    repository = _repository()
    rules = tmp_path / "my_rules.yaml"
    rules.write_bytes(RULES_WITH_REQUIREMENTS)
    reference = f"{oci_registry.host}/{repository}:v1.4.0"
    result = push(oci_registry, _docker_config(tmp_path / "docker", oci_registry), reference, str(rules))
    digest = pushed_digest(result, reference)

    by_tag = await _get(oci_registry, f"{repository}/manifests/v1.4.0", OCI_MANIFEST)
    assert by_tag.headers["Docker-Content-Digest"] == digest, "the tag names the printed digest"
    manifest = by_tag.json()
    assert manifest["mediaType"] == OCI_MANIFEST
    assert manifest["config"]["mediaType"] == RULES_CONFIG
    config = (await _get(oci_registry, f"{repository}/blobs/{manifest['config']['digest']}")).json()
    assert config == {
        "name": "my-rules", "version": "1.4.0",
        "dependencies": [{"name": "container", "version": "0.2.0"}],
        "requirements": [{"name": "engine_version_semver", "version": "0.50.0"}],
    }, "name from the repository, version from the tag, the rest from the file"  # fmt: skip
    [layer] = manifest["layers"]
    assert layer["mediaType"] == RULES_LAYER
    blob = (await _get(oci_registry, f"{repository}/blobs/{layer['digest']}")).content
    assert single_file(blob, (".yaml",), 1 << 20).data == RULES_WITH_REQUIREMENTS
    assert await _pull(oci_registry, repository, digest, RULES) == (digest, "my_rules.yaml", RULES_WITH_REQUIREMENTS)

    again = push(oci_registry, tmp_path / "docker", reference, str(rules))
    assert pushed_digest(again, reference) == digest, "the same file pushes to the same digest"


async def test_a_file_falco_would_refuse_is_refused_before_anything_is_uploaded(
    oci_registry: Registry, tmp_path: Path
) -> None:  # fmt: skip
    repository = _repository()
    bad = tmp_path / "bad_rules.yaml"
    bad.write_bytes(rule("broken", "evt.type = open and not_a_known_macro").encode())
    before = _storage(oci_registry)
    result = push(oci_registry, _docker_config(tmp_path / "docker", oci_registry),
                  f"{oci_registry.host}/{repository}:1.0.0", str(bad))  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "not_a_known_macro" in result.stderr
    assert "nothing was uploaded" in result.stderr
    assert result.stdout == ""
    assert _storage(oci_registry) == before, "no new blob, manifest, tag or upload session"
    with pytest.raises(httpx.HTTPStatusError):
        await _get(oci_registry, f"{repository}/manifests/1.0.0", OCI_MANIFEST)


async def test_credentials_the_registry_refuses_exit_3(oci_registry: Registry, tmp_path: Path) -> None:
    rules = tmp_path / "ok.yaml"
    rules.write_bytes(b"- list: ok\n  items: [a]\n")
    docker = _docker_config(tmp_path / "docker", oci_registry, password="wrong")
    result = push(oci_registry, docker, f"{oci_registry.host}/{_repository()}:1.0.0", str(rules))
    assert result.returncode == 3, result.stderr
    assert "refused" in result.stderr
    assert "UNAUTHORIZED" in result.stderr
    assert "credentials for this registry in the docker config file" in result.stderr


async def test_a_plugin_is_pushed_as_an_index_with_one_platform(
    oci_registry: Registry, tmp_path: Path, falco_binaries: FalcoBinaries
) -> None:  # fmt: skip
    repository = f"pipelines/{secrets.token_hex(4)}/container"
    library = falco_binaries.container_plugin.read_bytes()
    platform = f"linux/{machine_architecture()}"
    reference = f"{oci_registry.host}/{repository}:0.2.4"
    docker = _docker_config(tmp_path / "docker", oci_registry)
    library_argument = f"--platform={platform}={falco_binaries.container_plugin}"
    result = push(oci_registry, docker, reference, "--type=plugin", library_argument, "--plugin-api-version=3.10.0")
    digest = pushed_digest(result, reference)

    index = await _get(oci_registry, f"{repository}/manifests/0.2.4", OCI_INDEX)
    assert index.headers["Docker-Content-Digest"] == digest
    [entry] = index.json()["manifests"]
    assert entry["platform"] == {"os": "linux", "architecture": machine_architecture()}
    manifest = (await _get(oci_registry, f"{repository}/manifests/{entry['digest']}", OCI_MANIFEST)).json()
    assert manifest["config"]["mediaType"] == PLUGIN_CONFIG
    assert [layer["mediaType"] for layer in manifest["layers"]] == [PLUGIN_LAYER]
    config = (await _get(oci_registry, f"{repository}/blobs/{manifest['config']['digest']}")).json()
    assert config == {"name": "container", "version": "0.2.4",
                      "requirements": [{"name": "plugin_api_version", "version": "3.10.0"}]}  # fmt: skip
    pulled = await _pull(oci_registry, repository, digest, PLUGIN)
    assert pulled == (digest, falco_binaries.container_plugin.name, library)


@pytest.mark.usefixtures("crds")
async def test_a_rulesfile_pinned_to_the_printed_digest_is_loaded_by_real_falco(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path,
    oci_registry: Registry, falco_binaries: FalcoBinaries,
) -> None:  # fmt: skip
    repository = _repository()
    rules = rule("pushed_by_pipeline", "evt.type = open and proc.name = nope").encode()
    path = tmp_path / "pipeline_rules.yaml"
    path.write_bytes(rules)
    reference = f"{oci_registry.host}/{repository}:2.0.0"
    pinned = push(oci_registry, _docker_config(tmp_path / "docker", oci_registry), reference, str(path))
    digest = pushed_digest(pinned, reference)
    await create_secret(api, namespace, "registry", docker_config(oci_registry), type_="kubernetes.io/dockerconfigjson")
    pods = await falco_pods(api, namespace, "falco")
    await create(api, namespace, {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Rulesfile",
                                  "metadata": {"name": "pipeline"}, "spec": {"ociArtifact": {
                                      "reference": pinned.stdout.strip(),
                                      "pullSecret": {"secretName": "registry"}}}})  # fmt: skip
    port = free_port()
    async with running_agents(control_plane, tmp_path, namespace, "falco", pods, ["node1"],
                              {"node1": f"http://127.0.0.1:{port}"}, agent_args(oci_registry)) as agents:  # fmt: skip
        agent = agents["node1"]
        files = await wait_files(agent, agent.rules_dir, lambda f: bool(f), "the pushed rules file", timeout=20)
        [(name, data)] = files.items()
        assert data == rules
        status = await wait_for(partial(artifact_status, api, namespace, "rulesfiles", "pipeline"),
                                lambda s: s.get("resolvedDigest") == digest, what="resolvedDigest")  # fmt: skip
        assert condition(status, "ResolvedRefs")["status"] == "True"
        with run_falco(tmp_path / "falco", agent.rules_dir, agent.config_dir, agent.plugins_dir,
                       binaries=falco_binaries, web_port=port) as falco:  # fmt: skip
            await falco.wait_healthy()
            await falco.wait_rules({name: sha256_hex(rules)})
            loaded = await wait_entry(api, agent, "Rulesfile", "pipeline", lambda e: e.get("state") == "Loaded",
                                      "rules loaded by Falco")  # fmt: skip
            assert loaded["digest"] == digest
            assert falco.reload_failures() == 0
