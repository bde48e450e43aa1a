"""OCI sources end to end: a real registry (TLS, htpasswd), the operator granting Secrets, agents as real
processes with pod-bound tokens pulling, caching, following tags, keeping the last good files through passing
failures and removing them when the registry refuses them."""

from __future__ import annotations

import base64
import json
import secrets
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx
import kr8s.asyncio
import pytest

from e2e.agent import AgentProcess, falco_pods, rule
from e2e.controlplane import ControlPlane
from e2e.controlplane.cluster import free_port
from e2e.falco import FalcoBinaries, run_falco
from e2e.kube import call, request
from e2e.oci_artifacts import (
    RULES_CONFIG,
    RULES_LAYER,
    hostile_layer,
    push_plugin,
    push_rules,
    push_rules_layer,
    tar_gz,
)
from e2e.operator import RunningOperator
from e2e.registry import Registry, start_registry
from e2e.wait import wait_for
from falco_operator.artifacts import plugin_library_file_name
from falco_operator.artifacts.oci import GRANT_RULE, REGISTRY_HOSTS_ANNOTATION, machine_architecture
from tests.integration.agent_support import (
    ARTIFACT_API,
    create,
    entry,
    patch,
    report,
    running_agents,
    seed,
    wait_entry,
    wait_files,
)

Json = dict[str, Any]
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("crds")]
RULES_REPOSITORY = "falcosecurity/rules/falco-rules"
PLUGIN_REPOSITORY = "falcosecurity/plugins/plugin/container"


def agent_args(registry: Registry) -> tuple[str, ...]:
    return (f"--registry-ca={registry.ca}", "--pull-retry-max=1", "--pull-timeout=2", "--pull-deadline=10",
            "--allow-private-registries")  # fmt: skip


PLAIN_REGISTRY_ARGS = ("--pull-retry-max=1", "--pull-timeout=2", "--pull-deadline=10", "--allow-private-registries")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def create_secret(
    api: kr8s.asyncio.Api, namespace: str, name: str, data: dict[str, str], *, type_: str = "Opaque",
    labels: dict[str, str] | None = None, hosts: str | None = None,
) -> None:  # fmt: skip
    annotations = {REGISTRY_HOSTS_ANNOTATION: hosts} if hosts else {}
    body = {"metadata": {"name": name, "labels": labels or {}, "annotations": annotations}, "type": type_,
            "data": {key: b64(value) for key, value in data.items()}}  # fmt: skip
    await call(api, "POST", f"/api/v1/namespaces/{namespace}/secrets", body=body)


async def update_secret(api: kr8s.asyncio.Api, namespace: str, name: str, data: dict[str, str]) -> None:
    body = {"data": {key: b64(value) for key, value in data.items()}}
    await call(api, "PATCH", f"/api/v1/namespaces/{namespace}/secrets/{name}", body=body,
               content_type="application/merge-patch+json")  # fmt: skip


def docker_config(registry: Registry, password: str | None = None) -> dict[str, str]:
    auth = b64(f"{registry.username}:{password or registry.password}")
    return {".dockerconfigjson": json.dumps({"auths": {f"https://{registry.host}/v1/": {"auth": auth}}})}


def rules_text(name: str) -> bytes:
    return rule(name, "evt.type = open and proc.name = nope").encode()


async def artifact_status(api: kr8s.asyncio.Api, namespace: str, plural: str, name: str) -> Json:
    _, body = await request(api, "GET", f"{ARTIFACT_API}/namespaces/{namespace}/{plural}/{name}")
    return (body or {}).get("status") or {}


def condition(status: Json, kind: str) -> Json:
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), {})


async def test_seed_examples_04_and_06_pull_from_a_private_registry(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path,
    oci_registry: Registry, falco_binaries: FalcoBinaries,
) -> None:  # fmt: skip
    rules = rules_text("from_oci")
    rules_digest = push_rules(oci_registry, RULES_REPOSITORY, "latest", rules)
    container = falco_binaries.container_plugin.read_bytes()
    libraries = {"amd64": container, "arm64": b"\x7fELF not this machine"}
    if machine_architecture() == "arm64":
        libraries = {"amd64": b"\x7fELF not this machine", "arm64": container}
    plugin_digest = push_plugin(oci_registry, PLUGIN_REPOSITORY, "0.2.4", libraries)
    await create_secret(api, namespace, "registry", docker_config(oci_registry),
                        type_="kubernetes.io/dockerconfigjson")  # fmt: skip

    pods = await falco_pods(api, namespace, "falco")
    rulesfile = seed("04-rulesfile-oci.yaml")
    rulesfile["spec"]["ociArtifact"] = {
        "reference": f"{oci_registry.host}/{RULES_REPOSITORY}:latest",
        "pullSecret": {"secretName": "registry"},
    }
    await create(api, namespace, rulesfile)
    plugin = seed("06-plugin-container.yaml")
    plugin["spec"]["ociArtifact"] = {
        "reference": f"{oci_registry.host}/{PLUGIN_REPOSITORY}:0.2.4",
        "pullSecret": {"secretName": "registry"},
    }
    await create(api, namespace, plugin)
    port = free_port()
    async with running_agents(control_plane, tmp_path, namespace, "falco", pods, ["node1"],
                              {"node1": f"http://127.0.0.1:{port}"}, agent_args(oci_registry)) as agents:  # fmt: skip
        agent = agents["node1"]
        files = await wait_files(agent, agent.rules_dir, lambda f: bool(f), "the OCI rules file", timeout=20)
        assert files == {"50-01-falco-rules-oci.yaml": rules}
        libraries_on_disk = await wait_files(agent, agent.plugins_dir, lambda f: bool(f), "the plugin library")
        library = plugin_library_file_name("container", container)
        assert libraries_on_disk == {library: container}, "this machine's architecture, named by its content"
        fragment = agent.files(agent.config_dir)["99-03-plugins-config-inline.yaml"].decode()
        assert f"library_path: {agent.plugins_dir}/{library}\n" in fragment
        assert "init_config:\n    label_max_len: '100'\n    with_size: 'false'\n" in fragment

        rules_entry = await wait_entry(api, agent, "Rulesfile", "falco-rules", lambda e: e.get("state") == "Installed",
                                       "rules installed")  # fmt: skip
        assert rules_entry["digest"] == rules_digest
        plugin_entry = entry(await report(api, agent), "Plugin", "container")
        assert plugin_entry["digest"] == plugin_digest, "the index digest the tag resolves to"
        status = await wait_for(partial(artifact_status, api, namespace, "rulesfiles", "falco-rules"),
                                lambda s: s.get("resolvedDigest") == rules_digest, what="resolvedDigest")  # fmt: skip
        assert condition(status, "ResolvedRefs")["status"] == "True"

        # Real Falco loads the pulled container plugin with the rendered config.
        with run_falco(tmp_path / "falco", agent.rules_dir, agent.config_dir, agent.plugins_dir,
                       binaries=falco_binaries, web_port=port) as falco:  # fmt: skip
            await falco.wait_healthy()
            assert falco.log().count("Loaded plugin 'container@") == 1
            await wait_entry(api, agent, "Plugin", "container", lambda e: e.get("state") == "Loaded", "plugin loaded")
            # A new library under the same tag: a new digest, a new fragment, and Falco loads the plugin again.
            rebuilt = container + b"\0" * 64
            libraries = {arch: rebuilt if data == container else data for arch, data in libraries.items()}
            new_digest = push_plugin(oci_registry, PLUGIN_REPOSITORY, "0.2.4", libraries)
            await patch(api, namespace, "Plugin", "container", {"spec": {"ociArtifact": {"refreshInterval": "1m"}}})
            await wait_files(agent, agent.plugins_dir, lambda f: f == {plugin_library_file_name("container", rebuilt):
                             rebuilt}, "the new library, under its own name, alone")  # fmt: skip
            await wait_for(partial(anyio.to_thread.run_sync, falco.log), lambda log: log.count(
                "Loaded plugin 'container@") == 2, timeout=20, what="Falco loading the new library")  # fmt: skip
            loaded = await wait_entry(api, agent, "Plugin", "container",
                                      lambda e: e.get("digest") == new_digest and e.get("state") == "Loaded",
                                      "new plugin digest loaded")  # fmt: skip
            assert loaded["generation"] == 2
            assert falco.reload_failures() == 0


async def test_credentials_in_every_form_and_a_wrong_password_keeps_the_last_good_files(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path,
    oci_registry: Registry,
) -> None:  # fmt: skip
    repository = f"t{secrets.token_hex(3)}/{RULES_REPOSITORY}"
    first, second = rules_text("first"), rules_text("second")
    push_rules(oci_registry, repository, "1", first)
    push_rules(oci_registry, repository, "2", second)
    user, password = oci_registry.username or "", oci_registry.password or ""
    await create_secret(api, namespace, "basic", {"username": user, "password": password},
                        type_="kubernetes.io/basic-auth", hosts=f"ghcr.io,{oci_registry.host}")  # fmt: skip
    await create_secret(api, namespace, "custom-keys", {"user": user, "token": password},
                        labels={"artifact.falcosecurity.dev/pull-secret": "true"}, hosts=oci_registry.host)  # fmt: skip
    await create_secret(api, namespace, "unbound", {"username": user, "password": password},
                        type_="kubernetes.io/basic-auth")  # fmt: skip
    await create_secret(api, namespace, "elsewhere", {"username": user, "password": password},
                        type_="kubernetes.io/basic-auth", hosts="ghcr.io")  # fmt: skip
    await create_secret(api, namespace, "docker", docker_config(oci_registry), type_="kubernetes.io/dockerconfigjson")
    await create_secret(api, namespace, "wrong", docker_config(oci_registry, "not-the-password"),
                        type_="kubernetes.io/dockerconfigjson")  # fmt: skip
    pods = await falco_pods(api, namespace, "falco")
    image = {"repository": repository, "tag": "1"}
    forms = {
        "basic": {"image": image, "registry": {"name": oci_registry.host, "auth": {"secretRef": {"name": "basic"}}}},
        "custom": {"reference": f"{oci_registry.host}/{repository}:1",
                   "pullSecret": {"secretName": "custom-keys", "usernameKey": "user", "passwordKey": "token"}},
        "docker": {"reference": f"{oci_registry.host}/{repository}:1", "pullSecret": {"secretName": "docker"}},
    }  # fmt: skip
    # Secrets that do not name this registry: their credentials must go nowhere.
    refused = {
        secret: {"image": image, "registry": {"name": oci_registry.host, "auth": {"secretRef": {"name": secret}}}}
        for secret in ("unbound", "elsewhere")
    }
    for name, oci in {**forms, **refused}.items():
        await create(api, namespace, {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Rulesfile",
                                      "metadata": {"name": name}, "spec": {"ociArtifact": oci}})  # fmt: skip
    async with running_agents(control_plane, tmp_path, namespace, "falco", pods, ["node1"],
                              extra_args=agent_args(oci_registry)) as agents:  # fmt: skip
        agent = agents["node1"]
        expected = {f"50-01-{name}-oci.yaml": first for name in forms}
        await wait_files(agent, agent.rules_dir, lambda files: files == expected, "three forms pulled", timeout=20)
        for name, says in (("unbound", f"annotate it with {REGISTRY_HOSTS_ANNOTATION}={oci_registry.host}"),
                           ("elsewhere", f"is for ghcr.io (its {REGISTRY_HOSTS_ANNOTATION} annotation), not "
                                         f"{oci_registry.host}")):  # fmt: skip
            unbound = await wait_entry(api, agent, "Rulesfile", name, lambda e: e.get("state") == "Failed", "Failed")
            assert unbound["reason"] == "SecretNotForRegistry"
            assert says in unbound["message"]
            status = await wait_for(partial(artifact_status, api, namespace, "rulesfiles", name),
                                    lambda s: condition(s, "ResolvedRefs").get("status") == "False",
                                    what="ResolvedRefs=False")  # fmt: skip
            assert condition(status, "ResolvedRefs")["reason"] == "SecretNotForRegistry"

        # Wrong credentials for a new tag: Failed with the registry's reason, the files of tag 1 stay.
        await patch(api, namespace, "Rulesfile", "docker", {"spec": {"ociArtifact": {
            "reference": f"{oci_registry.host}/{repository}:2", "pullSecret": {"secretName": "wrong"}}}})  # fmt: skip
        failed = await wait_entry(api, agent, "Rulesfile", "docker",
                                  lambda e: (e.get("generation"), e.get("state")) == (2, "Failed"), "Fail")  # fmt: skip
        assert failed["reason"] == "Unauthorized"
        assert "refused the credentials" in failed["message"]
        assert failed["message"].endswith("the last good files stay")
        assert agent.files(agent.rules_dir)["50-01-docker-oci.yaml"] == first
        status = await wait_for(partial(artifact_status, api, namespace, "rulesfiles", "docker"),
                                lambda s: condition(s, "ResolvedRefs").get("reason") == "Unauthorized",
                                what="ResolvedRefs=False Unauthorized")  # fmt: skip
        assert condition(status, "ResolvedRefs")["status"] == "False"

        # Fixing the Secret recovers at the next retry: nothing is restarted.
        await update_secret(api, namespace, "wrong", docker_config(oci_registry))
        await wait_files(agent, agent.rules_dir, lambda f: f.get("50-01-docker-oci.yaml") == second,
                         "the fixed Secret used", timeout=20)  # fmt: skip
        await wait_entry(api, agent, "Rulesfile", "docker", lambda e: e.get("state") == "Installed", "Installed")


async def test_a_secret_that_is_not_for_registries_is_never_granted(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path,
    oci_registry: Registry,
) -> None:  # fmt: skip
    repository = f"t{secrets.token_hex(3)}/{RULES_REPOSITORY}"
    push_rules(oci_registry, repository, "latest", rules_text("guarded"))
    await create_secret(api, namespace, "database", {"username": "app", "password": "hunter2"})
    pods = await falco_pods(api, namespace, "falco")
    await create(api, namespace, {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Rulesfile",
                                  "metadata": {"name": "exfiltrate"}, "spec": {"ociArtifact": {
                                      "reference": f"{oci_registry.host}/{repository}:latest",
                                      "pullSecret": {"secretName": "database"}}}})  # fmt: skip
    role_path = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles/falco"
    async with running_agents(control_plane, tmp_path, namespace, "falco", pods, ["node1"],
                              extra_args=agent_args(oci_registry)) as agents:  # fmt: skip
        agent = agents["node1"]
        refused = await wait_entry(api, agent, "Rulesfile", "exfiltrate", lambda e: e.get("state") == "Failed",
                                   "Failed")  # fmt: skip
        assert refused["reason"] == "SecretNotGranted"
        assert GRANT_RULE in refused["message"]
        _, role = await request(api, "GET", role_path)
        assert all("secrets" not in rule_["resources"] for rule_ in role["rules"]), role["rules"]
        status = await wait_for(partial(artifact_status, api, namespace, "rulesfiles", "exfiltrate"),
                                lambda s: condition(s, "ResolvedRefs").get("status") == "False",
                                what="ResolvedRefs=False")  # fmt: skip
        assert condition(status, "ResolvedRefs")["reason"] == "SecretNotGranted"
        assert agent.files(agent.rules_dir) == {}


async def test_moved_tags_are_followed_and_a_restart_downloads_nothing(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path,
) -> None:  # fmt: skip
    registry = start_registry(tmp_path / "registry", tls=False, auth=False)
    try:
        repository = f"t{secrets.token_hex(3)}/{RULES_REPOSITORY}"
        version_1, version_2 = rules_text("version_1"), rules_text("version_2")
        push_rules(registry, repository, "stable", version_1)
        pods = await falco_pods(api, namespace, "falco")
        await create(api, namespace, {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Rulesfile",
                                      "metadata": {"name": "moving"}, "spec": {"ociArtifact": {
                                          "image": {"repository": repository, "tag": "stable"},
                                          "registry": {"name": registry.host, "plainHTTP": True},
                                          "refreshInterval": "1m"}}})  # fmt: skip
        name = "50-01-moving-oci.yaml"
        # Requests get 10 s: a request cut short on a busy machine would download a blob twice, and this test counts
        # the downloads.
        args = ("--pull-retry-max=1", "--pull-timeout=10", "--pull-deadline=30", "--allow-private-registries")
        async with running_agents(control_plane, tmp_path, namespace, "falco", pods, ["node1"],
                                  extra_args=args) as agents:  # fmt: skip
            agent = agents["node1"]
            await wait_files(agent, agent.rules_dir, lambda f: f.get(name) == version_1, "version 1", timeout=20)
            moved = push_rules(registry, repository, "stable", version_2)
            # A spec change resolves the tag again at once (the timed refresh: tests/integration/test_oci_pulls.py).
            await patch(api, namespace, "Rulesfile", "moving", {"spec": {"ociArtifact": {"refreshInterval": "2m"}}})
            await wait_files(agent, agent.rules_dir, lambda f: f.get(name) == version_2, "the moved tag", timeout=30)
            await wait_entry(api, agent, "Rulesfile", "moving", lambda e: e.get("digest") == moved, "new digest")
            assert registry.blob_downloads(repository) == 4  # each digest's config and layer, once
            assert agent.metric("falco_artifact_agent_pulls_total", result="success") == 2
            agent.stop()

            agent.start()
            await agent.wait_ready()
            await wait_for(partial(_pulls_answered, agent), lambda count: count >= 1, what="a pull after restart")
            assert agent.files(agent.rules_dir) == {name: version_2}
            assert registry.blob_downloads(repository) == 4, "an unchanged digest (config, layer) is not fetched again"
            assert agent.metric("falco_artifact_agent_pulls_total", result="cached") >= 1

            # The registry goes away and the artifact changes, its source not: resolving it again fails, and what
            # was pulled stays Installed, the report saying apart why it may be stale (as after a failed refresh).
            registry.stop()
            await patch(api, namespace, "Rulesfile", "moving", {"spec": {"ociArtifact": {"refreshInterval": "3m"}}})
            stale = await wait_entry(api, agent, "Rulesfile", "moving",
                                     lambda e: e.get("generation") == 3 and "refreshProblem" in e,
                                     "refreshProblem")  # fmt: skip
            assert (stale["state"], stale["digest"]) == ("Installed", moved)
            assert stale["refreshProblem"]["reason"] == "Unreachable"
            assert stale["refreshProblem"]["message"].endswith("; the content pulled before stays")
            assert agent.files(agent.rules_dir) == {name: version_2}
            # The status says it too: the content stays counted as installed, ResolvedRefs says why it may be stale.
            stale_status = await wait_for(
                partial(artifact_status, api, namespace, "rulesfiles", "moving"),
                lambda status: condition(status, "ResolvedRefs").get("reason") == "Unreachable",
                what="the refresh problem in the Rulesfile's ResolvedRefs",
            )
            assert (stale_status["nodes"]["installed"], stale_status["nodes"]["failed"]) == (1, 0)
            assert "could not be resolved again on 1 node(s)" in condition(stale_status, "ResolvedRefs")["message"]
            registry.start()
            await wait_entry(api, agent, "Rulesfile", "moving", lambda e: "refreshProblem" not in e,
                             "the problem gone once the registry is back")  # fmt: skip

            # The registry goes away and the agent restarts: what the source resolved to before is still what is
            # delivered (the cache remembers it), Installed with the refresh problem, not Failed.
            agent.stop()
            registry.stop()
            agent.start()
            await agent.wait_ready()
            down = await wait_entry(api, agent, "Rulesfile", "moving", lambda e: "refreshProblem" in e,
                                    "the refresh problem after a restart while the registry is down")  # fmt: skip
            assert (down["state"], down["digest"]) == ("Installed", moved)
            assert down["refreshProblem"]["reason"] == "Unreachable"
            assert agent.files(agent.rules_dir) == {name: version_2}
            restarted = await wait_for(
                partial(artifact_status, api, namespace, "rulesfiles", "moving"),
                lambda status: condition(status, "ResolvedRefs").get("reason") == "Unreachable",
                what="ResolvedRefs after the restart",
            )
            assert (restarted["nodes"]["installed"], restarted["nodes"]["failed"]) == (1, 0)
            registry.start()
            await wait_entry(api, agent, "Rulesfile", "moving", lambda e: "refreshProblem" not in e,
                             "the problem gone once the registry is back")  # fmt: skip
    finally:
        registry.stop()


async def _pulls_answered(agent: AgentProcess) -> float:
    return sum(agent.metric("falco_artifact_agent_pulls_total", result=r) for r in ("success", "cached", "failure"))


async def test_broken_artifacts_are_refused_and_nothing_is_written(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path,
    oci_registry: Registry,
) -> None:  # fmt: skip
    repository = f"t{secrets.token_hex(3)}/{RULES_REPOSITORY}"
    push_rules_layer(oci_registry, repository, "symlink", hostile_layer("symlink"))
    push_rules(oci_registry, repository, "rules", rules_text("not_a_plugin"))
    await create_secret(api, namespace, "registry", docker_config(oci_registry), type_="kubernetes.io/dockerconfigjson")
    pods = await falco_pods(api, namespace, "falco")
    reference = f"{oci_registry.host}/{repository}"
    await create(
        api,
        namespace,
        {
            "apiVersion": "artifact.falcosecurity.dev/v1alpha1",
            "kind": "Rulesfile",
            "metadata": {"name": "hostile"},
            "spec": {"ociArtifact": {"reference": f"{reference}:symlink", "pullSecret": {"secretName": "registry"}}},
        },
    )
    await create(
        api,
        namespace,
        {
            "apiVersion": "artifact.falcosecurity.dev/v1alpha1",
            "kind": "Plugin",
            "metadata": {"name": "confused"},
            "spec": {"ociArtifact": {"reference": f"{reference}:rules", "pullSecret": {"secretName": "registry"}}},
        },
    )
    async with running_agents(control_plane, tmp_path, namespace, "falco", pods, ["node1"],
                              extra_args=agent_args(oci_registry)) as agents:  # fmt: skip
        agent = agents["node1"]
        hostile = await wait_entry(api, agent, "Rulesfile", "hostile", lambda e: e.get("state") == "Failed", "Failed")
        assert hostile["reason"] == "RefusedArchive"
        assert "links are refused" in hostile["message"]
        confused = await wait_entry(api, agent, "Plugin", "confused", lambda e: e.get("state") == "Failed", "Failed")
        assert confused["reason"] == "WrongMediaType"
        assert "is a rules artifact, not a plugin artifact" in confused["message"]
        assert agent.files(agent.rules_dir) == {}
        assert agent.files(agent.plugins_dir) == {}
        assert "99-03-plugins-config-inline.yaml" not in agent.files(agent.config_dir)


async def test_a_registry_that_hangs_holds_back_only_its_own_artifacts(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path,
) -> None:  # fmt: skip
    hanging = start_registry(tmp_path / "hanging", tls=False, auth=False)
    working = start_registry(tmp_path / "working", tls=False, auth=False)
    try:
        for registry in (hanging, working):
            push_rules(registry, RULES_REPOSITORY, "latest", rules_text("from_" + registry.host.replace(".", "_")))
        hanging.pause()
        pods = await falco_pods(api, namespace, "falco")
        for index, registry in enumerate((hanging, hanging, hanging, working)):
            oci = {"image": {"repository": RULES_REPOSITORY}, "registry": {"name": registry.host, "plainHTTP": True}}
            await create(api, namespace, {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Rulesfile",
                                          "metadata": {"name": f"r{index}"}, "spec": {"ociArtifact": oci}})  # fmt: skip
        # Three pulls hang on one registry with a concurrency of two: the fourth still gets a slot soon enough.
        args = ("--pull-concurrency=2", "--pull-timeout=3", "--pull-deadline=5", "--pull-retry-max=1",
                "--allow-private-registries")  # fmt: skip
        async with running_agents(control_plane, tmp_path, namespace, "falco", pods, ["node1"],
                                  extra_args=args) as agents:  # fmt: skip
            agent = agents["node1"]
            files = await wait_files(agent, agent.rules_dir, lambda f: "50-01-r3-oci.yaml" in f, "r3", timeout=30)
            assert list(files) == ["50-01-r3-oci.yaml"]
            stuck = await wait_entry(api, agent, "Rulesfile", "r0", lambda e: e.get("state") == "Failed", "Failed")
            assert stuck["reason"] == "Timeout"
            hanging.resume()
            await wait_files(agent, agent.rules_dir, lambda f: len(f) == 4, "all four once it answers", timeout=30)
    finally:
        hanging.stop()
        working.stop()


async def test_a_tag_deleted_while_the_agent_is_down_is_not_served_after_its_restart(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path,
) -> None:  # fmt: skip
    registry = start_registry(tmp_path / "registry", tls=False, auth=False)
    try:
        repository = f"t{secrets.token_hex(3)}/{RULES_REPOSITORY}"
        digest = push_rules(registry, repository, "stable", rules_text("deleted_later"))
        pods = await falco_pods(api, namespace, "falco")
        oci = {"image": {"repository": repository, "tag": "stable"},
               "registry": {"name": registry.host, "plainHTTP": True}, "refreshInterval": "1m"}  # fmt: skip
        await create(api, namespace, {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Rulesfile",
                                      "metadata": {"name": "deleted"}, "spec": {"ociArtifact": oci}})  # fmt: skip
        async with running_agents(control_plane, tmp_path, namespace, "falco", pods, ["node1"],
                                  extra_args=PLAIN_REGISTRY_ARGS) as agents:  # fmt: skip
            agent = agents["node1"]
            await wait_files(agent, agent.rules_dir, lambda f: list(f) == ["50-01-deleted-oci.yaml"], "the tag's file",
                             timeout=20)  # fmt: skip
            agent.stop()
            async with httpx.AsyncClient() as http:
                deleted = await http.delete(f"{registry.url}/v2/{repository}/manifests/{digest}")
            assert deleted.status_code == 202, deleted.text
            agent.start()
            await agent.wait_ready()
            # The restarted agent's pull gets the registry's 404: a refusal, not a passing failure; the digest the
            # tag named before is withdrawn, as an artifact that no longer applies.
            gone = await wait_entry(api, agent, "Rulesfile", "deleted", lambda e: e.get("state") == "Failed", "Failed")
            assert gone["reason"] == "NotFound"
            assert gone["message"].endswith("; the files delivered before are removed (a refusal, not a passing "
                                            "failure)"), gone["message"]  # fmt: skip
            assert "refreshProblem" not in gone
            assert agent.files(agent.rules_dir) == {}
            status = await wait_for(partial(artifact_status, api, namespace, "rulesfiles", "deleted"),
                                    lambda s: condition(s, "ResolvedRefs").get("reason") == "NotFound",
                                    what="ResolvedRefs=False NotFound")  # fmt: skip
            assert (status["nodes"]["installed"], status["nodes"]["failed"]) == (0, 1)
            assert condition(status, "Programmed")["status"] == "False"
    finally:
        registry.stop()


async def test_a_rules_artifact_whose_oci_config_is_over_64_kib_is_withheld_saying_why(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path,
) -> None:  # fmt: skip
    registry = start_registry(tmp_path / "registry", tls=False, auth=False)
    try:
        repository = f"t{secrets.token_hex(3)}/{RULES_REPOSITORY}"
        oversized = json.dumps({"name": "r", "version": "1.0.0", "requirements": [], "description": "x" * 70_000,
                                "dependencies": [{"name": "container", "version": "0.7.1"}]}).encode()  # fmt: skip
        layer = tar_gz({"falco_rules.yaml": rules_text("needs_container")})
        registry.push_artifact(repository, "oversized", layer, RULES_LAYER, oversized, RULES_CONFIG)
        pods = await falco_pods(api, namespace, "falco")
        oci = {"image": {"repository": repository, "tag": "oversized"},
               "registry": {"name": registry.host, "plainHTTP": True}}  # fmt: skip
        await create(api, namespace, {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Rulesfile",
                                      "metadata": {"name": "oversized"}, "spec": {"ociArtifact": oci}})  # fmt: skip
        async with running_agents(control_plane, tmp_path, namespace, "falco", pods, ["node1"],
                                  extra_args=PLAIN_REGISTRY_ARGS) as agents:  # fmt: skip
            agent = agents["node1"]
            # What the artifact needs (the container plugin) is unknown: it is withheld, saying why.
            withheld = await wait_entry(api, agent, "Rulesfile", "oversized", lambda e: e.get("state") == "Failed",
                                        "Failed")  # fmt: skip
            assert withheld["reason"] == "ConfigUnreadable"
            assert f"is {len(oversized)} bytes, over the 65536-byte limit" in withheld["message"]
            status = await wait_for(partial(artifact_status, api, namespace, "rulesfiles", "oversized"),
                                    lambda s: condition(s, "ResolvedRefs").get("reason") == "ConfigUnreadable",
                                    what="ResolvedRefs=False ConfigUnreadable")  # fmt: skip
            assert condition(status, "ResolvedRefs")["status"] == "False"
            assert "so it is not delivered" in condition(status, "ResolvedRefs")["message"]
            assert agent.files(agent.rules_dir) == {}
    finally:
        registry.stop()
