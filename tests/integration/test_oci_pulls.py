"""The agent's OCI pulls in this process (``OCIPulls``), against a real registry and the real API server (for
Secrets): what happens at each refresh, with a refresh floor lowered so that tests need not wait a minute."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx
import kr8s.asyncio
import pytest

from artifact_agent.metrics import AgentMetrics
from artifact_agent.oci_cache import source_name
from artifact_agent.oci_sources import OCISources
from artifact_agent.pulls import OCIPulls, PullSettings, pull_request
from e2e.controlplane import ControlPlane
from e2e.oci_artifacts import (
    RULES_CONFIG,
    RULES_LAYER,
    gzip_bomb,
    hostile_layer,
    push_rules,
    push_rules_layer,
    rules_config,
    tar_gz,
)
from e2e.registry import Registry, start_registry
from e2e.wait import wait_for
from falco_operator.api.plain import Rulesfile
from falco_operator.artifacts import ArtifactKey, Content, Resolution, Unavailable
from falco_operator.kube import Client, promtext
from tests.integration.test_oci_agent import create_secret, docker_config, update_secret

pytestmark = pytest.mark.anyio
Json = dict[str, Any]
KEY = ArtifactKey("Rulesfile", "followed")


def rulesfile(oci: Json, generation: int = 1) -> Rulesfile:
    return Rulesfile.from_wire({"metadata": {"name": KEY.name, "generation": generation},
                                     "spec": {"ociArtifact": oci}})  # fmt: skip


def quick_settings(cache: Path, **settings: Any) -> PullSettings:
    defaults: Json = {"min_refresh": 0.2, "retry_initial": 0.2, "retry_max": 0.5, "request_timeout": 2.0,
                      "allow_private": True}  # fmt: skip
    return PullSettings(cache_dir=cache, **{**defaults, **settings})


@asynccontextmanager
async def running_pulls(
    control_plane: ControlPlane, namespace: str, cache: Path, **settings: Any
) -> AsyncIterator[OCIPulls]:
    client = await Client.connect(kubeconfig=str(control_plane.kubeconfig), field_manager="test", direct=True)
    pulls = OCIPulls(client, namespace, quick_settings(cache, **settings), AgentMetrics(promtext.Registry()),
                     lambda: None)  # fmt: skip
    try:
        async with anyio.create_task_group() as group:
            await group.start(pulls.run)
            yield pulls
            group.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await client.close()


async def answer(pulls: OCIPulls, accept: Callable[[Resolution | None], bool], what: str) -> Resolution | None:
    async def probe() -> Resolution | None:
        return pulls.resolve(KEY)

    return await wait_for(probe, accept, timeout=15, interval=0.05, what=what)


def holds(data: bytes) -> Callable[[Resolution | None], bool]:
    return lambda result: isinstance(result, Content) and result.data == data


def failed(reason: str) -> Callable[[Resolution | None], bool]:
    return lambda result: isinstance(result, Unavailable) and (result.state, result.reason) == ("Failed", reason)


def withdrawn(reason: str) -> Callable[[Resolution | None], bool]:
    return lambda result: failed(reason)(result) and isinstance(result, Unavailable) and result.withdrawn


def answered(result: Resolution | None) -> bool:
    """Content, or a failure: no longer pending."""
    return isinstance(result, Content) or (isinstance(result, Unavailable) and result.state == "Failed")


def source_of(artifact: Rulesfile) -> str:
    request = pull_request(artifact)
    assert request is not None
    return request.source


async def delete_manifest(registry: Registry, repository: str, digest: str) -> None:
    """Delete a manifest, and with it every tag that names it (the registry answers 404 for them from then on)."""
    async with httpx.AsyncClient() as http:
        deleted = await http.delete(f"{registry.url}/v2/{repository}/manifests/{digest}")
    assert deleted.status_code == 202, deleted.text


async def cache_names(cache: Path) -> list[str]:
    return sorted(os.listdir(cache))


@pytest.fixture
def plain_registry(tmp_path: Path) -> Any:
    registry = start_registry(tmp_path / "registry", tls=False, auth=False)
    try:
        yield registry
    finally:
        registry.stop()


async def test_a_refresh_follows_a_moved_tag_without_any_spec_change(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, plain_registry: Registry
) -> None:
    repository = f"t{secrets.token_hex(3)}/rules"
    push_rules(plain_registry, repository, "stable", b"- list: one\n  items: []\n")
    oci = followed_tag(plain_registry, repository)
    async with running_pulls(control_plane, namespace, tmp_path / "cache", min_refresh=0.5) as pulls:
        pulls.want([rulesfile(oci)])
        await answer(pulls, holds(b"- list: one\n  items: []\n"), "the first pull")
        moved = push_rules(plain_registry, repository, "stable", b"- list: two\n  items: []\n")
        result = await answer(pulls, holds(b"- list: two\n  items: []\n"), "the moved tag")
        assert isinstance(result, Content)
        assert result.digest == moved


async def test_by_default_a_small_rules_layer_cannot_expand_past_4_mib(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, plain_registry: Registry
) -> None:
    repository = f"t{secrets.token_hex(3)}/rules"
    bomb = gzip_bomb(5 << 20)
    assert len(bomb) < 64 * 1024
    push_rules_layer(plain_registry, repository, "bomb", bomb)
    oci = {"image": {"repository": repository, "tag": "bomb"},
           "registry": {"name": plain_registry.host, "plainHTTP": True}}  # fmt: skip
    async with running_pulls(control_plane, namespace, tmp_path / "cache") as pulls:
        pulls.want([rulesfile(oci)])
        result = await answer(pulls, lambda r: isinstance(r, Unavailable) and r.state == "Failed", "the refusal")
    assert isinstance(result, Unavailable)
    assert result.reason == "RefusedArchive"
    assert "expands to more than the 4194304-byte limit" in result.message
    assert sorted(os.listdir(tmp_path / "cache")) == [], "no layer file left behind"


async def test_a_refresh_that_fails_keeps_the_content_and_its_cache_entry_and_says_why(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, plain_registry: Registry
) -> None:
    repository = f"t{secrets.token_hex(3)}/rules"
    rules = b"- list: kept\n  items: []\n"
    digest = push_rules(plain_registry, repository, "stable", rules)
    oci = followed_tag(plain_registry, repository)
    cache = tmp_path / "cache"
    async with running_pulls(control_plane, namespace, cache, min_refresh=0.3) as pulls:
        pulls.want([rulesfile(oci)])
        await answer(pulls, holds(rules), "the first pull")
        cached = sorted(os.listdir(cache))
        assert cached[1] == "rules-" + digest.removeprefix("sha256:")
        assert [name.split("-")[0] for name in cached] == ["config", "rules", "source"], (
            "the artifact's config, its file, and what the tag named"
        )

        plain_registry.stop()
        await wait_for(partial(_problems, pulls), lambda problems: KEY in problems, timeout=15, what="a problem")
        problem = pulls.refresh_problems()[KEY]
        assert (problem.state, problem.reason) == ("Failed", "Unreachable")
        assert f"cannot reach {plain_registry.host}" in problem.message
        result = pulls.resolve(KEY)
        assert isinstance(result, Content), "what was pulled stays delivered"
        assert (result.data, result.digest) == (rules, digest)
        await anyio.sleep(1)  # more failed refreshes: still the same
        assert pulls.resolve(KEY) == result
        assert sorted(os.listdir(cache)) == cached, "the cache entry stays"

        plain_registry.start()
        await wait_for(partial(_problems, pulls), lambda problems: not problems, timeout=15, what="recovery")
        assert pulls.resolve(KEY) == result


@pytest.mark.parametrize(("outage", "reason"), [("stopped", "Unreachable"), ("paused", "Timeout")])
async def test_an_agent_that_restarts_while_the_registry_is_down_delivers_what_it_pulled_before(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, plain_registry: Registry, outage: str, reason: str
) -> None:
    repository = f"t{secrets.token_hex(3)}/rules"
    rules = b"- list: pulled_before\n  items: []\n"
    digest = push_rules(plain_registry, repository, "stable", rules)
    oci = followed_tag(plain_registry, repository)
    cache = tmp_path / "cache"
    async with running_pulls(control_plane, namespace, cache, min_refresh=0.3) as pulls:
        pulls.want([rulesfile(oci)])
        await answer(pulls, holds(rules), "the first pull")
    if outage == "stopped":
        plain_registry.stop()
    else:
        plain_registry.pause()
    async with running_pulls(control_plane, namespace, cache, min_refresh=0.3) as pulls:  # the agent restarted
        pulls.want([rulesfile(oci, generation=2)])
        result = await answer(pulls, lambda r: r is not None and not isinstance(r, Unavailable), "an answer")
        assert isinstance(result, Content), "a passing failure after a restart is not a failed delivery"
        assert (result.data, result.digest) == (rules, digest)
        problem = pulls.refresh_problems()[KEY]
        assert problem.reason == reason
        # Another source (another tag) has no content pulled before: it fails.
        other = {**oci, "image": {"repository": repository, "tag": "other"}}
        pulls.want([rulesfile(other, generation=3)])
        other_failed = await answer(pulls, failed(reason), "the other tag")
        assert isinstance(other_failed, Unavailable)
        if outage == "stopped":
            plain_registry.start()
        else:
            plain_registry.resume()


async def test_an_agent_that_restarts_after_its_tag_was_deleted_no_longer_serves_the_old_digest(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, plain_registry: Registry
) -> None:
    repository = f"t{secrets.token_hex(3)}/rules"
    rules = b"- list: deleted_later\n  items: []\n"
    digest = push_rules(plain_registry, repository, "stable", rules)
    oci = followed_tag(plain_registry, repository)
    cache = tmp_path / "cache"
    async with running_pulls(control_plane, namespace, cache, min_refresh=0.3) as pulls:
        pulls.want([rulesfile(oci)])
        await answer(pulls, holds(rules), "the first pull")
    await delete_manifest(plain_registry, repository, digest)

    async with running_pulls(control_plane, namespace, cache, min_refresh=0.3) as pulls:  # the agent restarted
        pulls.want([rulesfile(oci, generation=2)])
        result = await answer(pulls, answered, "an answer")
        assert withdrawn("NotFound")(result), f"the deleted tag's digest is not served: {result}"
        assert pulls.refresh_problems() == {}
        await wait_for(partial(cache_names, cache), lambda names: names == [], timeout=5,
                       what="the source forgotten and its digest pruned")  # fmt: skip

    plain_registry.stop()
    async with running_pulls(control_plane, namespace, cache, min_refresh=0.3) as pulls:  # again, the registry down
        pulls.want([rulesfile(oci, generation=3)])
        result = await answer(pulls, answered, "an answer")
        assert failed("Unreachable")(result), f"nothing to fall back on: {result}"
    plain_registry.start()

    async with running_pulls(control_plane, namespace, cache, min_refresh=0.3) as pulls:
        pulls.want([rulesfile(oci, generation=4)])
        gone = await answer(pulls, answered, "an answer")
        assert failed("NotFound")(gone)
        restored = push_rules(plain_registry, repository, "stable", rules)
        result = await answer(pulls, holds(rules), "the tag pushed again, at the next retry")
        assert isinstance(result, Content)
        assert result.digest == restored


async def test_after_a_restart_every_artifact_of_a_deleted_tag_is_withdrawn(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, plain_registry: Registry
) -> None:
    """Two Rulesfiles follow one tag (one source): after a restart the first one's failure forgets what the source
    resolved to, and the second must be withdrawn all the same."""
    repository = f"t{secrets.token_hex(3)}/rules"
    rules = b"- list: shared\n  items: []\n"
    digest = push_rules(plain_registry, repository, "stable", rules)
    artifacts = [named_rulesfile(name, plain_registry, repository) for name in ("first", "second")]
    keys = [ArtifactKey("Rulesfile", name) for name in ("first", "second")]
    cache = tmp_path / "cache"

    def results(pulls: OCIPulls) -> Callable[[], Awaitable[list[Resolution | None]]]:
        async def probe() -> list[Resolution | None]:
            return [pulls.resolve(key) for key in keys]

        return probe

    async with running_pulls(control_plane, namespace, cache, min_refresh=0.3) as pulls:
        pulls.want(artifacts)
        await wait_for(results(pulls), lambda now: all(holds(rules)(r) for r in now), timeout=15, what="both pulled")
    await delete_manifest(plain_registry, repository, digest)

    async with running_pulls(control_plane, namespace, cache, min_refresh=0.3) as pulls:  # the agent restarted
        pulls.want(artifacts)
        now = await wait_for(results(pulls), lambda now: all(answered(r) for r in now), timeout=15, what="answers")
        assert all(withdrawn("NotFound")(result) for result in now), f"both withdrawn: {now}"
        await anyio.sleep(1)  # retries (the source forgotten by now) keep them withdrawn
        assert all(withdrawn("NotFound")(pulls.resolve(key)) for key in keys)
        restored = push_rules(plain_registry, repository, "stable", rules)
        await wait_for(results(pulls), lambda now: all(holds(rules)(r) for r in now), timeout=15, what="pushed again")
        assert {result.digest for key in keys if isinstance(result := pulls.resolve(key), Content)} == {restored}


async def test_a_moved_tag_whose_layer_the_registry_lost_keeps_the_content_pulled_before(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, plain_registry: Registry
) -> None:
    """The tag names a new manifest whose layer blob answers 404: refused content (``BlobNotFound``), not the tag
    gone (``NotFound``), so what the tag named before stays delivered."""
    repository = f"t{secrets.token_hex(3)}/rules"
    rules = b"- list: before\n  items: []\n"
    digest = push_rules(plain_registry, repository, "stable", rules)
    oci = followed_tag(plain_registry, repository)
    async with running_pulls(control_plane, namespace, tmp_path / "cache", min_refresh=0.3) as pulls:
        pulls.want([rulesfile(oci)])
        await answer(pulls, holds(rules), "the first pull")
        layer = tar_gz({"falco_rules.yaml": b"- list: after\n  items: []\n"})
        push_rules_layer(plain_registry, repository, "stable", layer)
        async with httpx.AsyncClient() as http:
            url = f"{plain_registry.url}/v2/{repository}/blobs/sha256:{hashlib.sha256(layer).hexdigest()}"
            deleted = await http.delete(url)
        assert deleted.status_code == 202, deleted.text
        await wait_for(partial(_problems, pulls), lambda problems: KEY in problems, timeout=15, what="a problem")
        assert pulls.refresh_problems()[KEY].reason == "BlobNotFound"
        result = pulls.resolve(KEY)
        assert isinstance(result, Content), f"what the tag named before stays delivered: {result}"
        assert (result.data, result.digest) == (rules, digest)


def needy_config(padding: int = 0) -> bytes:
    """falcoctl's config of a rules artifact that needs the container plugin, padded to ``padding`` more bytes."""
    config = json.loads(rules_config())
    config["dependencies"] = [{"name": "container", "version": "0.7.1"}]
    return json.dumps({**config, **({"description": "x" * padding} if padding else {})}).encode()


async def test_a_rules_artifact_whose_config_cannot_be_read_is_not_delivered_without_its_needs(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, plain_registry: Registry
) -> None:
    prefix = f"t{secrets.token_hex(3)}"
    rules = b"- list: needs_container\n  items: []\n"
    layer = tar_gz({"falco_rules.yaml": rules})
    oversized, garbled = needy_config(64 * 1024), b"\x00 not JSON " * 64
    assert len(oversized) > 64 * 1024
    plain_registry.push_artifact(f"{prefix}/oversized", "1", layer, RULES_LAYER, oversized, RULES_CONFIG)
    plain_registry.push_artifact(f"{prefix}/garbled", "1", layer, RULES_LAYER, garbled, RULES_CONFIG)
    plain_registry.push_artifact(f"{prefix}/moving", "1", layer, RULES_LAYER, needy_config(), RULES_CONFIG)

    def oci(repository: str) -> Json:
        return {"image": {"repository": f"{prefix}/{repository}", "tag": "1"},
                "registry": {"name": plain_registry.host, "plainHTTP": True}, "refreshInterval": "1s"}  # fmt: skip

    cache = tmp_path / "cache"
    async with running_pulls(control_plane, namespace, cache, min_refresh=0.3) as pulls:
        pulls.want([rulesfile(oci("oversized"))])
        result = await answer(pulls, answered, "an answer")
        assert failed("ConfigUnreadable")(result), f"withheld, not delivered without its needs: {result}"
        assert isinstance(result, Unavailable)
        assert f"is {len(oversized)} bytes, over the 65536-byte limit" in result.message, result.message
        assert result.message.endswith("declares cannot be checked, so it is not delivered")
        await anyio.sleep(1.5)  # retries every 0.2 to 0.5 s
        assert pulls.resolve(KEY) == result
        assert plain_registry.blob_downloads(f"{prefix}/oversized") == 0, "neither its config nor its layer"

        pulls.want([rulesfile(oci("garbled"), generation=2)])
        result = await answer(pulls, lambda r: failed("ConfigUnreadable")(r) and "JSON" in getattr(r, "message", ""),
                              "the garbled config refused")  # fmt: skip
        await anyio.sleep(1.5)
        assert plain_registry.blob_downloads(f"{prefix}/garbled") == 1, "its config once, not at every retry"

        # A tag that moves to an artifact whose config cannot be read: the content pulled before stays.
        pulls.want([rulesfile(oci("moving"), generation=3)])
        before = await answer(pulls, holds(rules), "the readable artifact")
        assert pulls.artifact_needs(), "its config's dependency is known"
        plain_registry.push_artifact(f"{prefix}/moving", "1", layer, RULES_LAYER, needy_config(70_000),
                                     RULES_CONFIG)  # fmt: skip
        await wait_for(partial(_problems, pulls), lambda problems: KEY in problems, timeout=15, what="a problem")
        assert pulls.refresh_problems()[KEY].reason == "ConfigUnreadable"
        assert pulls.resolve(KEY) == before

    # A config whose download fails (the registry serves other bytes) is withheld too, and not remembered: once
    # the registry serves it right, the artifact is delivered.
    digest = plain_registry.push_artifact(f"{prefix}/flaky", "1", layer, RULES_LAYER, needy_config(), RULES_CONFIG)
    config_digest = "sha256:" + hashlib.sha256(needy_config()).hexdigest()
    plain_registry.corrupt_blob(config_digest, needy_config().replace(b"container", b"CONTAINER"))
    async with running_pulls(control_plane, namespace, tmp_path / "cache-2", min_refresh=0.3) as pulls:
        pulls.want([rulesfile(oci("flaky"))])
        result = await answer(pulls, answered, "an answer")
        assert failed("ConfigUnreadable")(result), result
        assert isinstance(result, Unavailable)
        assert "cannot be downloaded (DigestMismatch: " in result.message, result.message
        plain_registry.corrupt_blob(config_digest, needy_config())
        delivered = await answer(pulls, holds(rules), "the config served right")
        assert isinstance(delivered, Content)
        assert delivered.digest == digest


async def _problems(pulls: OCIPulls) -> dict[ArtifactKey, Unavailable]:
    return pulls.refresh_problems()


async def test_a_password_changed_to_a_wrong_one_is_noticed_at_the_next_refresh_and_keeps_the_content(
    api: kr8s.asyncio.Api, control_plane: ControlPlane, namespace: str, tmp_path: Path, oci_registry: Registry
) -> None:
    repository = f"t{secrets.token_hex(3)}/rules"
    rules = b"- list: guarded\n  items: []\n"
    push_rules(oci_registry, repository, "stable", rules)
    await create_secret(api, namespace, "pull", docker_config(oci_registry), type_="kubernetes.io/dockerconfigjson")
    oci = {"reference": f"{oci_registry.host}/{repository}:stable", "pullSecret": {"secretName": "pull"},
           "refreshInterval": "1s"}  # fmt: skip
    async with running_pulls(control_plane, namespace, tmp_path / "cache", min_refresh=0.3,
                             extra_ca=str(oci_registry.ca)) as pulls:  # fmt: skip
        pulls.want([rulesfile(oci)])
        content = await answer(pulls, holds(rules), "the first pull")
        # The registry still takes the credentials read before; the Secret now holds a wrong password. Credentials
        # lapse on their own (expired tokens): the registry's 401 keeps what was pulled, and says the refresh fails.
        await update_secret(api, namespace, "pull", docker_config(oci_registry, "not-the-password"))
        await wait_for(partial(_problems, pulls), lambda problems: KEY in problems, timeout=15, what="a problem")
        problem = pulls.refresh_problems()[KEY]
        assert problem.reason == "Unauthorized"
        assert "Secret pull does not authenticate to" in problem.message, problem.message
        assert await answer(pulls, holds(rules), "the content kept") == content

        await update_secret(api, namespace, "pull", docker_config(oci_registry))
        assert await answer(pulls, holds(rules), "the fix seen") == content


async def test_moved_tags_leave_only_their_current_digest_in_the_cache_while_another_artifact_fails_for_good(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, plain_registry: Registry
) -> None:
    """A's tag moves twice while B never resolves (its tag does not exist), C's tag moves to an archive the agent
    refuses (C keeps serving its last good digest) and D's tag is deleted (D's content is withdrawn): the cache ends
    with A's current digest and C's, not A's old ones nor D's."""
    prefix = f"t{secrets.token_hex(3)}"
    a_rules = [f"- list: a{version}\n  items: []\n".encode() for version in range(3)]
    c_rules, d_rules = b"- list: c\n  items: []\n", b"- list: d\n  items: []\n"
    a_digests = [push_rules(plain_registry, f"{prefix}/a", "stable", a_rules[0])]
    c_digest = push_rules(plain_registry, f"{prefix}/c", "stable", c_rules)
    d_digest = push_rules(plain_registry, f"{prefix}/d", "stable", d_rules)
    keys = {name: ArtifactKey("Rulesfile", name) for name in "abcd"}
    artifacts = [named_rulesfile(name, plain_registry, f"{prefix}/{name}") for name in "abcd"]
    cache = tmp_path / "cache"
    cache.mkdir()
    leftovers = [cache / ".layer-0123456789abcdef.0a1b2c3d.tmp", cache / ".download-0011223344556677"]
    leftovers[0].write_bytes(b"half a layer an earlier agent was downloading")
    leftovers[1].mkdir()

    async with running_pulls(control_plane, namespace, cache, min_refresh=0.3) as pulls:

        async def results() -> dict[str, Resolution | None]:
            return {name: pulls.resolve(key) for name, key in keys.items()}

        def settled_with(a_data: bytes, d_gone: bool) -> Callable[[dict[str, Resolution | None]], bool]:
            def accept(now: dict[str, Resolution | None]) -> bool:
                failed = isinstance(now["b"], Unavailable) and now["b"].reason == "NotFound"
                d = withdrawn("NotFound")(now["d"]) if d_gone else holds(d_rules)(now["d"])
                return holds(a_data)(now["a"]) and failed and holds(c_rules)(now["c"]) and d

            return accept

        pulls.want(artifacts)
        await wait_for(results, settled_with(a_rules[0], False), timeout=15, interval=0.05, what="the first answers")
        push_rules_layer(plain_registry, f"{prefix}/c", "stable", hostile_layer("symlink"))
        await delete_manifest(plain_registry, f"{prefix}/d", d_digest)
        await wait_for(partial(_problems, pulls), lambda problems: keys["c"] in problems, timeout=15, what="C fails")
        assert pulls.refresh_problems()[keys["c"]].reason == "RefusedArchive"
        for version in (1, 2):
            a_digests.append(push_rules(plain_registry, f"{prefix}/a", "stable", a_rules[version]))
            await wait_for(results, settled_with(a_rules[version], True), timeout=15, interval=0.05, what="A moved")

        async def cached() -> set[str]:
            return {name.partition("-")[2] for name in os.listdir(cache) if not name.startswith(("source-", "."))}

        hexes = [digest.removeprefix("sha256:") for digest in a_digests]
        expected = {hexes[2], c_digest.removeprefix("sha256:")}
        await wait_for(cached, lambda now: now == expected, timeout=5, what="only the referenced digests cached")
        assert {name for name in os.listdir(cache) if name.startswith(("rules-", "config-"))} == {
            f"{label}-{hex_digest}" for label in ("rules", "config") for hex_digest in expected
        }
        sources = {name for name in os.listdir(cache) if name.startswith("source-")}
        assert sources == {source_name(source_of(artifacts[index])) for index in (0, 2)}, "A's and C's"
        assert not any(leftover.exists() for leftover in leftovers), "an interrupted download's files are gone"
        now = await results()
        assert isinstance(now["c"], Content)
        assert now["c"].digest == c_digest, "C's last good digest stays delivered, and cached"

        # What was read of configs stays bounded too: once only A is followed, only A's current digest is known.
        pulls.want([artifacts[0]])

        async def configs_known() -> tuple[set[str], set[str]]:
            return set(pulls._configs_read), set(pulls._unkept_configs)

        await wait_for(configs_known, lambda known: known == ({a_digests[2]}, set()), timeout=5,
                       what="only A's current config known")  # fmt: skip


async def test_the_agents_oci_sources_start_the_pulls_with_the_first_oci_artifact_and_forward_to_them(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, plain_registry: Registry
) -> None:
    """The agent's stand-in for the pulls (``OCISources``): inline artifacts alone start nothing and leave the cache
    as it is; the first OCI artifact starts the pulls in the stand-in's task group, and from then on everything goes
    to them: the answer, the prune after it, and the stop (and prune) of an artifact no longer wanted."""
    repository = f"t{secrets.token_hex(3)}/rules"
    rules = b"- list: lazy\n  items: []\n"
    digest = push_rules(plain_registry, repository, "stable", rules)
    cache = tmp_path / "cache"
    cache.mkdir()
    leftover = cache / ".download-0011223344556677"
    leftover.mkdir()
    inline = Rulesfile.from_wire({"metadata": {"name": "inline", "generation": 1},
                                  "spec": {"inlineRules": "- list: inline\n  items: []\n"}})  # fmt: skip
    client = await Client.connect(kubeconfig=str(control_plane.kubeconfig), field_manager="test", direct=True)
    sources = OCISources(client, namespace, quick_settings(cache), AgentMetrics(promtext.Registry()), lambda: None)

    async def result() -> Resolution | None:
        return sources.resolve(KEY)

    try:
        async with anyio.create_task_group() as group:
            await group.start(sources.run)
            sources.want([inline], policy_generation=1)
            await sources.wait_settled()
            assert sources.pulls is None
            assert sources.resolve(KEY) is None
            assert sources.settled()
            assert leftover.exists(), "no OCI artifact: the cache is not touched"

            sources.want([inline, rulesfile(followed_tag(plain_registry, repository))], policy_generation=1)
            assert sources.pulls is not None
            assert not sources.settled()
            with anyio.fail_after(15):
                await sources.wait_settled()
            await wait_for(result, holds(rules), timeout=15, interval=0.05, what="the pull's answer")
            assert f"rules-{digest.removeprefix('sha256:')}" in await cache_names(cache)
            assert not leftover.exists(), "the prune after the answer"

            sources.want([inline], policy_generation=1)
            assert sources.resolve(KEY) is None
            assert not [name for name in await cache_names(cache) if name.startswith(("rules-", "source-"))]
            group.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await client.close()


def followed_tag(registry: Registry, repository: str) -> dict[str, Any]:
    """An OCI source that follows ``repository:stable`` on a plain-HTTP registry, resolved again every second."""
    return {"image": {"repository": repository, "tag": "stable"},
            "registry": {"name": registry.host, "plainHTTP": True}, "refreshInterval": "1s"}  # fmt: skip


def named_rulesfile(name: str, registry: Registry, repository: str) -> Rulesfile:
    oci = followed_tag(registry, repository)
    return Rulesfile.from_wire({"metadata": {"name": name, "generation": 1}, "spec": {"ociArtifact": oci}})
