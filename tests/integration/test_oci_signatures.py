"""cosign signatures, verified before a byte is written: artifacts pushed as a publisher would, signed by the real
cosign (v3, ``sha256-<hex>.sig`` layout, no transparency log) against a loopback TLS registry, public keys in
ConfigMaps; the agent's pulls in this process for every verdict, and agents as real processes with the operator
and real Falco for what a node ends up loading."""

from __future__ import annotations

import base64
import json
import secrets
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx
import kr8s.asyncio
import pytest

from artifact_agent.metrics import AgentMetrics
from artifact_agent.pulls import OCIPulls, PullSettings
from e2e.agent import falco_pods
from e2e.controlplane import ControlPlane
from e2e.controlplane.cluster import free_port
from e2e.cosign import Cosign, KeyPair, ensure_cosign
from e2e.falco import FalcoBinaries, run_falco
from e2e.kube import call, request
from e2e.oci_artifacts import push_plugin, push_rules
from e2e.operator import RunningOperator
from e2e.registry import OCI_MANIFEST, Registry, start_registry
from e2e.wait import wait_for
from falco_operator.api.plain import Plugin, Rulesfile
from falco_operator.artifacts import ArtifactKey, Content, Resolution, Unavailable
from falco_operator.artifacts.oci import VERIFICATION_KEY_LABEL, grantable
from falco_operator.artifacts.oci.signatures import load_key, signature_tag
from falco_operator.kube import Client, promtext
from tests.integration.agent_support import ARTIFACT_API, create, patch, running_agents, wait_entry, wait_files
from tests.integration.test_artifact_status import rulesfile_warnings
from tests.integration.test_oci_agent import agent_args, artifact_status, condition, rules_text

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("crds")]
Json = dict[str, Any]


@pytest.fixture(scope="module")
def cosign(tmp_path_factory: pytest.TempPathFactory) -> Cosign:
    return Cosign(ensure_cosign(), tmp_path_factory.mktemp("cosign"))


@pytest.fixture(scope="module")
def signer(cosign: Cosign) -> KeyPair:
    return cosign.generate_key_pair("signer")


@pytest.fixture(scope="module")
def stranger(cosign: Cosign) -> KeyPair:
    return cosign.generate_key_pair("stranger")


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    running = start_registry(tmp_path / "registry", tls=True, auth=False)
    try:
        yield running
    finally:
        running.stop()


def fingerprint(key: KeyPair) -> str:
    return load_key(key.public.read_bytes(), "test").fingerprint


async def key_config_map(api: kr8s.asyncio.Api, namespace: str, name: str, key: KeyPair) -> None:
    body = {"metadata": {"name": name}, "data": {"cosign.pub": key.public_pem}}
    await call(api, "POST", f"/api/v1/namespaces/{namespace}/configmaps", body=body)


def signed_rulesfile(
    name: str, registry: Registry, repository: str, tag: str, key_map: str | None, refresh: str = "1m"
) -> Json:
    """``refresh`` under 1m only for objects never sent to the API server (the CRD refuses it)."""
    oci: Json = {"image": {"repository": repository, "tag": tag}, "registry": {"name": registry.host},
                 "refreshInterval": refresh}  # fmt: skip
    if key_map:
        oci["verify"] = {"key": {"configMapRef": {"name": key_map}}}
    return {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Rulesfile", "metadata": {"name": name},
            "spec": {"ociArtifact": oci}}  # fmt: skip


def sign(cosign: Cosign, key: KeyPair, registry: Registry, repository: str, digest: str) -> None:
    cosign.sign(key, f"{registry.host}/{repository}@{digest}", ca=registry.ca)


async def copy_signatures(registry: Registry, repository: str, signed: str, onto: str) -> None:
    """Put the signature manifest of ``signed`` under the signature tag of ``onto`` (a signature of another
    digest, presented as this one's)."""
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(registry.ca))) as http:
        response = await http.get(f"{registry.url}/v2/{repository}/manifests/{signature_tag(signed)}",
                                  headers={"Accept": OCI_MANIFEST})  # fmt: skip
        assert response.status_code == 200, response.text
        put = await http.put(f"{registry.url}/v2/{repository}/manifests/{signature_tag(onto)}",
                             content=response.content, headers={"Content-Type": OCI_MANIFEST})  # fmt: skip
        assert put.status_code == 201, put.text


@asynccontextmanager
async def running_pulls(
    control_plane: ControlPlane, namespace: str, cache: Path, registry: Registry, instance: str | None = None
) -> AsyncIterator[OCIPulls]:
    client = await Client.connect(kubeconfig=str(control_plane.kubeconfig), field_manager="test", direct=True)
    settings = PullSettings(cache_dir=cache, min_refresh=0.3, retry_initial=0.2, retry_max=0.5, request_timeout=5.0,
                            allow_private=True, extra_ca=str(registry.ca))  # fmt: skip
    pulls = OCIPulls(client, namespace, settings, AgentMetrics(promtext.Registry()), lambda: None, instance=instance)
    try:
        async with anyio.create_task_group() as group:
            await group.start(pulls.run)
            yield pulls
            group.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await client.close()


async def answer(
    pulls: OCIPulls, name: str, accept: Callable[[Resolution | None], bool], what: str, kind: str = "Rulesfile"
) -> Resolution:
    async def probe() -> Resolution | None:
        return pulls.resolve(ArtifactKey(kind, name))

    result = await wait_for(probe, accept, timeout=30, interval=0.05, what=what)
    assert result is not None
    return result


def failed(reason: str) -> Callable[[Resolution | None], bool]:
    return lambda result: isinstance(result, Unavailable) and (result.state, result.reason) == ("Failed", reason)


def holds(data: bytes) -> Callable[[Resolution | None], bool]:
    return lambda result: isinstance(result, Content) and result.data == data


async def test_only_what_the_key_signed_for_that_digest_is_pulled(
    control_plane: ControlPlane, api: kr8s.asyncio.Api, namespace: str, tmp_path: Path, registry: Registry,
    cosign: Cosign, signer: KeyPair, stranger: KeyPair,
) -> None:  # fmt: skip
    await key_config_map(api, namespace, "signing-key", signer)
    repository = f"t{secrets.token_hex(3)}/rules"
    version_1, version_2 = b"- list: one\n  items: []\n", b"- list: two\n  items: []\n"
    signed = push_rules(registry, repository, "stable", version_1)
    sign(cosign, signer, registry, repository, signed)
    unsigned = push_rules(registry, repository, "unsigned", b"- list: unsigned\n  items: []\n")
    by_stranger = push_rules(registry, repository, "stranger", b"- list: stranger\n  items: []\n")
    sign(cosign, stranger, registry, repository, by_stranger)
    borrowed = push_rules(registry, repository, "borrowed", b"- list: borrowed\n  items: []\n")
    await copy_signatures(registry, repository, signed, borrowed)

    artifacts = {name: Rulesfile.from_wire(signed_rulesfile(name, registry, repository, tag, "signing-key", "1s"))
                 for name, tag in (("signed", "stable"), ("unsigned", "unsigned"), ("stranger", "stranger"),
                                   ("borrowed", "borrowed"))}  # fmt: skip
    async with running_pulls(control_plane, namespace, tmp_path / "cache", registry) as pulls:
        pulls.want(artifacts.values())
        result = await answer(pulls, "signed", holds(version_1), "the signed artifact")
        assert isinstance(result, Content)
        assert result.digest == signed
        assert pulls.signers()[ArtifactKey("Rulesfile", "signed")] == (signed, fingerprint(signer))

        missing = await answer(pulls, "unsigned", failed("SignatureMissing"), "the unsigned artifact refused")
        assert isinstance(missing, Unavailable)
        assert f"{unsigned}, which has no cosign signature (no tag {signature_tag(unsigned)}" in missing.message
        invalid = await answer(pulls, "stranger", failed("SignatureInvalid"), "another key's signature refused")
        assert isinstance(invalid, Unavailable)
        assert f"verifies with key {fingerprint(signer)} (ConfigMap signing-key (key cosign.pub))" in invalid.message
        other = await answer(pulls, "borrowed", failed("SignatureInvalid"), "another digest's signature refused")
        assert isinstance(other, Unavailable)
        assert f"resolves to {borrowed}, but the signature by key {fingerprint(signer)}" in other.message
        assert f"found for it is of {signed}" in other.message
        cached = {path.name for path in (tmp_path / "cache").rglob("*")}
        for refused in (unsigned, by_stranger, borrowed):
            assert not any(refused.partition(":")[2] in name for name in cached), "nothing of a refused digest kept"

        # The tag moves to an unsigned digest: what was verified before stays, and the refresh says why.
        push_rules(registry, repository, "stable", version_2)

        def kept_with_problem(result: Resolution | None) -> bool:
            problem = pulls.refresh_problems().get(ArtifactKey("Rulesfile", "signed"))
            return holds(version_1)(result) and problem is not None and problem.reason == "SignatureMissing"

        await answer(pulls, "signed", kept_with_problem, "the last good content kept, SignatureMissing")


async def test_a_key_in_a_secret_and_the_shapes_the_api_server_refuses(
    control_plane: ControlPlane, api: kr8s.asyncio.Api, namespace: str, tmp_path: Path, registry: Registry,
    cosign: Cosign, signer: KeyPair,
) -> None:  # fmt: skip
    secret = {"metadata": {"name": "signing-secret", "labels": {VERIFICATION_KEY_LABEL: "true"}},
              "data": {"key.pem": base64.b64encode(signer.public.read_bytes()).decode()}}  # fmt: skip
    await call(api, "POST", f"/api/v1/namespaces/{namespace}/secrets", body=secret)
    assert grantable(await call(api, "GET", f"/api/v1/namespaces/{namespace}/secrets/signing-secret"))
    repository = f"t{secrets.token_hex(3)}/rules"
    data = b"- list: from_secret\n  items: []\n"
    digest = push_rules(registry, repository, "1", data)
    sign(cosign, signer, registry, repository, digest)
    rulesfile = signed_rulesfile("secret-key", registry, repository, "1", None)
    rulesfile["spec"]["ociArtifact"]["verify"] = {"key": {"secretRef": {"name": "signing-secret", "key": "key.pem"}}}
    missing = signed_rulesfile("no-key", registry, repository, "1", "no-such-config-map")
    async with running_pulls(control_plane, namespace, tmp_path / "cache", registry) as pulls:
        pulls.want([Rulesfile.from_wire(rulesfile), Rulesfile.from_wire(missing)])
        await answer(pulls, "secret-key", holds(data), "verified with the key from the Secret")
        gone = await answer(pulls, "no-key", failed("VerificationKeyUnavailable"), "a missing key ConfigMap")
        assert isinstance(gone, Unavailable)
        assert "ConfigMap no-such-config-map (key cosign.pub) does not exist" in gone.message

    for key, message in (({"configMapRef": {"name": "a"}, "secretRef": {"name": "b"}}, "exactly one"),
                         ({}, "exactly one")):  # fmt: skip
        body = signed_rulesfile("refused", registry, repository, "1", None)
        body["spec"]["ociArtifact"]["verify"] = {"key": key}
        status, answer_body = await request(api, "POST", f"{ARTIFACT_API}/namespaces/{namespace}/rulesfiles", body=body)
        assert status == 422, answer_body
        assert message in json.dumps(answer_body)


async def test_cosign_v3_bundles_found_through_the_referrers_tag_schema_are_verified(
    control_plane: ControlPlane, api: kr8s.asyncio.Api, namespace: str, tmp_path: Path, registry: Registry,
    cosign: Cosign, signer: KeyPair, stranger: KeyPair,
) -> None:  # fmt: skip
    """cosign v3's default layout against a registry without a referrers API (Debian's distribution answers 404):
    the bundle's index is tagged sha256-<hex>, and the DSSE envelope's in-toto subject names the digest."""
    await key_config_map(api, namespace, "bundle-key", signer)
    repository = f"t{secrets.token_hex(3)}/rules"
    data = b"- list: bundled\n  items: []\n"
    digest = push_rules(registry, repository, "bundled", data)
    cosign.sign_bundle(signer, f"{registry.host}/{repository}@{digest}", ca=registry.ca)
    by_stranger = push_rules(registry, repository, "stranger", b"- list: stranger\n  items: []\n")
    cosign.sign_bundle(stranger, f"{registry.host}/{repository}@{by_stranger}", ca=registry.ca)
    artifacts = [Rulesfile.from_wire(signed_rulesfile(tag, registry, repository, tag, "bundle-key"))
                 for tag in ("bundled", "stranger")]  # fmt: skip
    async with running_pulls(control_plane, namespace, tmp_path / "cache", registry) as pulls:
        pulls.want(artifacts)
        await answer(pulls, "bundled", holds(data), "the bundle-signed artifact")
        assert pulls.signers()[ArtifactKey("Rulesfile", "bundled")] == (digest, fingerprint(signer))
        refused = await answer(pulls, "stranger", failed("SignatureInvalid"), "another key's bundle refused")
        assert isinstance(refused, Unavailable)
        assert fingerprint(signer) in refused.message


async def test_a_multi_platform_plugin_signed_with_an_ed25519_key_in_both_layouts(
    control_plane: ControlPlane, api: kr8s.asyncio.Api, namespace: str, tmp_path: Path, registry: Registry,
    cosign: Cosign,
) -> None:  # fmt: skip
    """The index digest a plugin's tag resolves to is what is signed and verified; cosign signs with an Ed25519
    key imported into its key format, in the .sig layout and as a bundle referrer."""
    ed_key = cosign.import_ed25519_key_pair("ed25519")
    assert "BEGIN PUBLIC KEY" in ed_key.public_pem
    await key_config_map(api, namespace, "ed25519-key", ed_key)
    repository = f"t{secrets.token_hex(3)}/plugin"
    library = b"\x7fELF a plugin"
    tagged = push_plugin(registry, repository, "tagged", {"amd64": library, "arm64": library})
    cosign.sign(ed_key, f"{registry.host}/{repository}@{tagged}", ca=registry.ca)
    bundled = push_plugin(registry, repository, "bundled", {"amd64": library, "arm64": library + b"\0"})
    cosign.sign_bundle(ed_key, f"{registry.host}/{repository}@{bundled}", ca=registry.ca)
    unsigned = push_plugin(registry, repository, "unsigned", {"amd64": library + b"\1", "arm64": library})
    assert len({tagged, bundled, unsigned}) == 3

    def plugin(tag: str) -> Plugin:
        return Plugin.from_wire({"metadata": {"name": tag}, "spec": {"ociArtifact": {
            "image": {"repository": repository, "tag": tag}, "registry": {"name": registry.host},
            "verify": {"key": {"configMapRef": {"name": "ed25519-key"}}}}}})  # fmt: skip

    async with running_pulls(control_plane, namespace, tmp_path / "cache", registry) as pulls:
        pulls.want([plugin("tagged"), plugin("bundled"), plugin("unsigned")])
        for tag, digest in (("tagged", tagged), ("bundled", bundled)):
            result = await answer(pulls, tag, lambda r: isinstance(r, Content), f"the {tag} plugin", kind="Plugin")
            assert isinstance(result, Content)
            assert (result.digest, result.data) == (digest, library)
            assert pulls.signers()[ArtifactKey("Plugin", tag)] == (digest, fingerprint(ed_key))
        await answer(pulls, "unsigned", failed("SignatureMissing"), "the unsigned plugin", kind="Plugin")


async def test_the_falco_policy_applies_too_and_both_keys_must_have_signed(
    control_plane: ControlPlane, api: kr8s.asyncio.Api, namespace: str, tmp_path: Path, registry: Registry,
    cosign: Cosign, signer: KeyPair, stranger: KeyPair,
) -> None:  # fmt: skip
    await key_config_map(api, namespace, "team-key", signer)
    await key_config_map(api, namespace, "admin-key", stranger)
    falco = {"apiVersion": "instance.falcosecurity.dev/v1alpha1", "kind": "Falco", "metadata": {"name": "guarded"},
             "spec": {"artifactVerification": {"key": {"configMapRef": {"name": "admin-key"}}}}}  # fmt: skip
    await call(api, "POST", f"/apis/instance.falcosecurity.dev/v1alpha1/namespaces/{namespace}/falcos", body=falco)
    repository = f"t{secrets.token_hex(3)}/rules"
    data = b"- list: team\n  items: []\n"
    digest = push_rules(registry, repository, "1", data)
    sign(cosign, signer, registry, repository, digest)
    team = Rulesfile.from_wire(signed_rulesfile("team", registry, repository, "1", "team-key"))
    unverified = Rulesfile.from_wire(signed_rulesfile("bare", registry, repository, "1", None))
    async with running_pulls(control_plane, namespace, tmp_path / "cache", registry, instance="guarded") as pulls:
        pulls.want([team, unverified])
        refused = await answer(pulls, "team", failed("SignatureInvalid"), "the administrator's key is missing")
        assert isinstance(refused, Unavailable)
        assert f"verifies with key {fingerprint(stranger)} (ConfigMap admin-key" in refused.message
        await answer(pulls, "bare", failed("SignatureInvalid"), "an artifact without verify is held to the policy")
        sign(cosign, stranger, registry, repository, digest)
        await answer(pulls, "team", holds(data), "signed by both keys")
        assert pulls.signers()[ArtifactKey("Rulesfile", "team")] == (
            digest,
            f"{fingerprint(signer)}, {fingerprint(stranger)}",
        )
        await answer(pulls, "bare", holds(data), "the artifact without verify, once the administrator's key signed")
        assert pulls.signers()[ArtifactKey("Rulesfile", "bare")] == (digest, fingerprint(stranger)), "its own policy"


async def test_a_node_loads_only_signed_rules_and_keeps_them_when_the_tag_moves_to_unsigned_ones(
    api: kr8s.asyncio.Api, namespace: str, operator: RunningOperator, control_plane: ControlPlane, tmp_path: Path,
    registry: Registry, falco_binaries: FalcoBinaries, cosign: Cosign, signer: KeyPair, stranger: KeyPair,
) -> None:  # fmt: skip
    await key_config_map(api, namespace, "signing-key", signer)
    await key_config_map(api, namespace, "admin-key", stranger)
    repository = f"t{secrets.token_hex(3)}/rules"
    signed_rules, unsigned_rules = rules_text("signed_rule"), rules_text("unsigned_rule")
    digest = push_rules(registry, repository, "stable", signed_rules)
    sign(cosign, signer, registry, repository, digest)
    push_rules(registry, repository, "unsigned", rules_text("never_loaded"))
    pinned_rules = rules_text("pinned_rule")
    pinned = push_rules(registry, repository, "pinned", pinned_rules)
    sign(cosign, signer, registry, repository, pinned)
    pods = await falco_pods(api, namespace, "falco")
    await create(api, namespace, signed_rulesfile("signed", registry, repository, "stable", "signing-key"))
    await create(api, namespace, signed_rulesfile("unsigned", registry, repository, "unsigned", "signing-key"))
    pinned_rulesfile = signed_rulesfile("pinned", registry, repository, pinned, "signing-key")
    del pinned_rulesfile["spec"]["ociArtifact"]["refreshInterval"]  # a digest is never resolved again on its own
    await create(api, namespace, pinned_rulesfile)
    name, pinned_name = "50-01-signed-oci.yaml", "50-01-pinned-oci.yaml"
    port = free_port()
    async with running_agents(control_plane, tmp_path, namespace, "falco", pods, ["node1"],
                              {"node1": f"http://127.0.0.1:{port}"}, agent_args(registry)) as agents:  # fmt: skip
        agent = agents["node1"]
        await wait_files(agent, agent.rules_dir, lambda f: f == {name: signed_rules, pinned_name: pinned_rules},
                         "the signed rules", timeout=30)  # fmt: skip
        with run_falco(tmp_path / "falco", agent.rules_dir, agent.config_dir, agent.plugins_dir,
                       binaries=falco_binaries, web_port=port) as falco:  # fmt: skip
            await falco.wait_healthy()
            loaded = await wait_entry(api, agent, "Rulesfile", "signed", lambda e: e.get("state") == "Loaded",
                                      "the signed rules loaded by Falco")  # fmt: skip
            assert (loaded["digest"], loaded["signer"]) == (digest, fingerprint(signer))
            await wait_for(partial(artifact_status, api, namespace, "rulesfiles", "signed"),
                           lambda s: s.get("signer") == fingerprint(signer), what="the status signer")  # fmt: skip
            refused = await wait_entry(api, agent, "Rulesfile", "unsigned",
                                       lambda e: e.get("reason") == "SignatureMissing", "unsigned refused")  # fmt: skip
            assert refused["state"] == "Failed"
            assert set(agent.files(agent.rules_dir)) == {name, pinned_name}, "nothing written for the unsigned one"
            status = await wait_for(partial(artifact_status, api, namespace, "rulesfiles", "unsigned"),
                                    lambda s: condition(s, "ResolvedRefs").get("reason") == "SignatureMissing",
                                    what="ResolvedRefs=False, SignatureMissing")  # fmt: skip
            assert condition(status, "ResolvedRefs")["status"] == "False"
            warnings = await wait_for(partial(rulesfile_warnings, api, namespace, "unsigned"),
                                      lambda events: any(e.get("reason") == "SignatureMissing" for e in events),
                                      what="a Warning Event SignatureMissing")  # fmt: skip
            assert any("no cosign signature" in (e.get("note") or "") for e in warnings)

            # The tag moves to unsigned rules: the node keeps the signed ones, and the status says why.
            push_rules(registry, repository, "stable", unsigned_rules)
            await patch(api, namespace, "Rulesfile", "signed", {"spec": {"ociArtifact": {"refreshInterval": "2m"}}})
            kept = await wait_entry(api, agent, "Rulesfile", "signed",
                                    lambda e: (e.get("refreshProblem") or {}).get("reason") == "SignatureMissing",
                                    "the moved tag refused")  # fmt: skip
            assert (kept["digest"], kept["state"]) == (digest, "Loaded")
            assert agent.files(agent.rules_dir)[name] == signed_rules
            moved = await wait_for(partial(artifact_status, api, namespace, "rulesfiles", "signed"),
                                   lambda s: condition(s, "ResolvedRefs").get("reason") == "SignatureMissing",
                                   what="the signed Rulesfile's ResolvedRefs says why")  # fmt: skip
            assert "no cosign signature" in condition(moved, "ResolvedRefs")["message"]
            assert falco.reload_failures() == 0

            # The administrator's policy on the Falco names another key: with no change to the artifact, its agents
            # check it again at once; what they load stays (refused new checks keep the last good files).
            await call(api, "PATCH", f"/apis/instance.falcosecurity.dev/v1alpha1/namespaces/{namespace}/falcos/falco",
                       body={"spec": {"artifactVerification": {"key": {"configMapRef": {"name": "admin-key"}}}}},
                       content_type="application/merge-patch+json")  # fmt: skip
            held = await wait_entry(api, agent, "Rulesfile", "pinned",
                                    lambda e: (e.get("refreshProblem") or {}).get("reason") == "SignatureInvalid",
                                    "the Falco's policy applied without any change to the artifact")  # fmt: skip
            assert fingerprint(stranger) in held["refreshProblem"]["message"]
            assert held["state"] == "Loaded"
            assert agent.files(agent.rules_dir) == {name: signed_rules, pinned_name: pinned_rules}
