"""The OCI pull against a real registry (Debian's docker-registry on loopback, TLS and htpasswd): references to
digests, platform choice, credentials, and every way a registry or an artifact can be wrong."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import tempfile
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from e2e.controlplane.pki import create_server_pki
from e2e.oci_artifacts import (
    gzip_bomb,
    hostile_layer,
    push_plugin,
    push_rules,
    push_rules_layer,
    tar_gz,
)
from e2e.registry import Registry, find_registry_binary, start_registry
from falco_operator.api.ocirefs import OCILocation
from falco_operator.artifacts.oci import (
    PLUGIN,
    RULES,
    ArtifactType,
    Credentials,
    Pulled,
    PullFailed,
    RegistrySession,
    http_client,
)

pytestmark = pytest.mark.anyio
RULES_TEXT = b"- list: shells\n  items: [bash, sh]\n"


@pytest.fixture
async def http(oci_registry: Registry) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(timeout=5, extra_ca=str(oci_registry.ca), allow_private=True) as client:
        yield client


def _repository() -> str:
    return f"tests/{secrets.token_hex(4)}/falco-rules"


def _location(
    registry: Registry, repository: str, tag: str | None = "latest", digest: str | None = None
) -> OCILocation:
    return OCILocation(registry.host, repository, tag, digest, plain_http=registry.plain_http)


def _credentials(registry: Registry) -> Credentials:
    assert registry.username
    assert registry.password
    return Credentials(registry.username, registry.password)


async def _pull(
    http: httpx.AsyncClient, location: OCILocation, credentials: Credentials | None, kind: ArtifactType = RULES, *,
    architecture: str = "amd64", max_bytes: int = 1 << 20,
) -> Pulled:  # fmt: skip
    session = RegistrySession(http, location, credentials)
    resolved = await session.resolve(kind, architecture)
    with tempfile.TemporaryDirectory() as spool:
        pulled = await session.fetch(resolved, kind, max_bytes, Path(spool))
        assert not os.listdir(spool), "the layer file is removed once the file is taken out"
    return pulled


async def _failure(*args: object, **kwargs: object) -> PullFailed:
    with pytest.raises(PullFailed) as caught:
        await _pull(*args, **kwargs)  # type: ignore[arg-type]
    return caught.value


async def test_rules_by_tag_and_by_digest(oci_registry: Registry, http: httpx.AsyncClient) -> None:
    repository = _repository()
    digest = push_rules(oci_registry, repository, "1.0", RULES_TEXT)
    pulled = await _pull(http, _location(oci_registry, repository, "1.0"), _credentials(oci_registry))
    assert (pulled.digest, pulled.file.data, pulled.file.name) == (digest, RULES_TEXT, "falco_rules.yaml")
    by_digest = await _pull(http, _location(oci_registry, repository, None, digest), _credentials(oci_registry))
    assert by_digest.file.data == RULES_TEXT
    assert pulled.downloaded == by_digest.downloaded > 0


async def test_plugin_index_gives_this_architecture(oci_registry: Registry, http: httpx.AsyncClient) -> None:
    repository = _repository()
    index = push_plugin(oci_registry, repository, "0.7.1", {"amd64": b"\x7fELF amd64", "arm64": b"\x7fELF arm64"})
    location = _location(oci_registry, repository, "0.7.1")
    for architecture in ("amd64", "arm64"):
        pulled = await _pull(http, location, _credentials(oci_registry), PLUGIN, architecture=architecture)
        assert pulled.digest == index  # the index digest is what the reference resolves to
        assert (pulled.file.name, pulled.file.data) == ("libcontainer.so", f"\x7fELF {architecture}".encode())
    failure = await _failure(http, location, _credentials(oci_registry), PLUGIN, architecture="riscv64")
    assert failure.reason == "NoPlatform"
    assert "linux/amd64, linux/arm64" in failure.message


async def test_credentials_are_required_and_checked(oci_registry: Registry, http: httpx.AsyncClient) -> None:
    repository = _repository()
    push_rules(oci_registry, repository, "latest", RULES_TEXT)
    location = _location(oci_registry, repository)
    anonymous = await _failure(http, location, None)
    assert anonymous.reason == "Unauthorized"
    assert "names none" in anonymous.message
    wrong = await _failure(http, location, Credentials(oci_registry.username or "", "wrong"))
    assert wrong.reason == "Unauthorized"
    assert "refused the credentials" in wrong.message


async def test_unknown_tag_and_repository(oci_registry: Registry, http: httpx.AsyncClient) -> None:
    repository = _repository()
    push_rules(oci_registry, repository, "latest", RULES_TEXT)
    for location in (_location(oci_registry, repository, "nope"), _location(oci_registry, _repository())):
        failure = await _failure(http, location, _credentials(oci_registry))
        assert failure.reason == "NotFound", failure.message


async def test_rules_artifact_is_not_a_plugin(oci_registry: Registry, http: httpx.AsyncClient) -> None:
    repository = _repository()
    push_rules(oci_registry, repository, "latest", RULES_TEXT)
    failure = await _failure(http, _location(oci_registry, repository), _credentials(oci_registry), PLUGIN)
    assert failure.reason == "WrongMediaType"
    assert "is a rules artifact, not a plugin artifact" in failure.message


@pytest.mark.parametrize("hostility", ["symlink", "hardlink", "parent", "absolute", "device", "two-files", "not-gzip"])
async def test_hostile_layers_are_refused(oci_registry: Registry, http: httpx.AsyncClient, hostility: str) -> None:
    repository = _repository()
    push_rules_layer(oci_registry, repository, "latest", hostile_layer(hostility))  # type: ignore[arg-type]
    failure = await _failure(http, _location(oci_registry, repository), _credentials(oci_registry))
    assert failure.reason == "RefusedArchive", failure.message
    expected = {
        "symlink": "link",
        "hardlink": "link",
        "parent": "leaves its directory",
        "absolute": "absolute path",
        "device": "not a regular file",
        "two-files": "exactly one",
        "not-gzip": "not a readable tar.gz",
    }
    assert expected[hostility] in failure.message


async def test_size_caps(oci_registry: Registry, http: httpx.AsyncClient) -> None:
    repository = _repository()
    push_rules_layer(oci_registry, repository, "big", tar_gz({"falco_rules.yaml": secrets.token_bytes(64 * 1024)}))
    push_rules_layer(oci_registry, repository, "bomb", gzip_bomb(8 << 20))
    big = await _failure(http, _location(oci_registry, repository, "big"), _credentials(oci_registry), max_bytes=4096)
    assert big.reason == "TooLarge"
    assert "over the 4096-byte limit" in big.message
    bomb = await _failure(http, _location(oci_registry, repository, "bomb"), _credentials(oci_registry))
    assert bomb.reason == "RefusedArchive"
    assert "expands to more than" in bomb.message


async def test_a_blob_whose_bytes_changed_is_refused(oci_registry: Registry, http: httpx.AsyncClient) -> None:
    repository = _repository()
    layer = tar_gz({"falco_rules.yaml": b"- list: corrupted\n  items: []\n# " + secrets.token_bytes(8).hex().encode()})
    push_rules_layer(oci_registry, repository, "latest", layer)
    oci_registry.corrupt_blob("sha256:" + hashlib.sha256(layer).hexdigest(), layer[:-1] + bytes([layer[-1] ^ 1]))
    failure = await _failure(http, _location(oci_registry, repository), _credentials(oci_registry))
    assert failure.reason == "DigestMismatch", failure.message


async def test_a_registry_that_stops_answering_times_out(oci_registry: Registry) -> None:
    repository = _repository()
    push_rules(oci_registry, repository, "latest", RULES_TEXT)
    async with http_client(timeout=1.0, extra_ca=str(oci_registry.ca), allow_private=True) as http:
        oci_registry.pause()
        try:
            failure = await _failure(http, _location(oci_registry, repository), _credentials(oci_registry))
        finally:
            oci_registry.resume()
    assert failure.reason == "Timeout"
    assert "did not answer in time" in failure.message


async def test_tls_is_verified_unless_skipped(oci_registry: Registry) -> None:
    repository = _repository()
    push_rules(oci_registry, repository, "latest", RULES_TEXT)
    location = _location(oci_registry, repository)
    async with http_client(timeout=5, allow_private=True) as untrusting:
        failure = await _failure(untrusting, location, _credentials(oci_registry))
    assert failure.reason == "UntrustedCertificate"
    assert "presents a certificate the agent does not trust (unable to get local issuer certificate)" in failure.message
    async with http_client(timeout=5, insecure=True, allow_private=True) as skipping:
        assert (await _pull(skipping, location, _credentials(oci_registry))).file.data == RULES_TEXT


async def test_credentials_are_never_sent_when_certificates_are_not_checked(tmp_path: Path) -> None:
    registry = start_registry(tmp_path, tls=True, auth=True)
    try:
        repository = _repository()
        push_rules(registry, repository, "latest", RULES_TEXT)
        location = OCILocation(registry.host, repository, "latest", None, insecure_skip_verify=True)
        async with http_client(timeout=5, insecure=True, allow_private=True) as skipping:
            failure = await _failure(skipping, location, _credentials(registry))
        assert failure.reason == "InsecureCredentials"
        assert "tls.insecureSkipVerify is on: credentials are never sent" in failure.message
        assert "--registry-ca" in failure.message
        # one unauthenticated attempt, answered 401, and no second one carrying the credentials
        assert registry.log_path.read_text().count(f'"GET /v2/{repository}/manifests/latest') == 1
    finally:
        registry.stop()


async def test_credentials_are_never_sent_over_plain_http(tmp_path: Path) -> None:
    registry = start_registry(tmp_path, tls=False, auth=True)
    try:
        repository = _repository()
        push_rules(registry, repository, "latest", RULES_TEXT)
        async with http_client(timeout=5, allow_private=True) as http:
            failure = await _failure(http, _location(registry, repository), _credentials(registry))
        assert failure.reason == "InsecureCredentials"
        assert "never sent without TLS" in failure.message
        # one unauthenticated attempt, answered 401, and no second one carrying the credentials
        assert registry.log_path.read_text().count(f'"GET /v2/{repository}/manifests/latest') == 1
    finally:
        registry.stop()


async def test_plain_http_registry_without_credentials(tmp_path: Path) -> None:
    registry = start_registry(tmp_path, tls=False, auth=False)
    try:
        repository = _repository()
        digest = push_rules(registry, repository, "latest", RULES_TEXT)
        async with http_client(timeout=5, allow_private=True) as http:
            pulled = await _pull(http, _location(registry, repository), None)
        assert (pulled.digest, pulled.file.data) == (digest, RULES_TEXT)
    finally:
        registry.stop()


async def test_a_registry_at_a_private_address_is_refused_before_any_request(oci_registry: Registry) -> None:
    repository = _repository()
    push_rules(oci_registry, repository, "latest", RULES_TEXT)
    port = oci_registry.host.rsplit(":", 1)[1]
    requests_before = oci_registry.log_path.read_text().count('"GET /v2/')
    async with http_client(timeout=5, extra_ca=str(oci_registry.ca)) as http:
        for host, shown in ((oci_registry.host, "127.0.0.1 is a loopback address"),
                            (f"localhost:{port}", "localhost (")):  # fmt: skip
            location = OCILocation(host, repository, "latest", None)
            failure = await _failure(http, location, _credentials(oci_registry))
            assert failure.reason == "RefusedAddress", failure.message
            assert shown in failure.message
            assert "unless it runs with --allow-private-registries" in failure.message
    assert oci_registry.log_path.read_text().count('"GET /v2/') == requests_before


def _token_registry(directory: Path, realm: str) -> Registry:
    """A TLS registry that answers with a Bearer challenge naming ``realm`` (its token service)."""
    directory.mkdir(parents=True)
    ca, server = create_server_pki(directory / "pki", "registry")
    host = f"127.0.0.1:{_free_port()}"
    config = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
        "storage": {"filesystem": {"rootdirectory": str(directory / "storage")}},
        "http": {"addr": host, "secret": secrets.token_hex(16),
                 "tls": {"certificate": str(server.cert), "key": str(server.key)}},
        "auth": {"token": {"realm": realm, "service": "falco-e2e", "issuer": "falco-e2e",
                           "rootcertbundle": str(ca)}},
    }  # fmt: skip
    (directory / "config.yml").write_text(json.dumps(config))
    registry = Registry(host, directory, ca, None, None,
                        args=[find_registry_binary(), "serve", str(directory / "config.yml")])  # fmt: skip
    registry.start()
    return registry


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_tls_registry_cannot_send_the_agent_to_a_plain_http_token_service(tmp_path: Path) -> None:
    with socket.socket() as realm:
        realm.bind(("127.0.0.1", 0))
        realm.listen()
        realm.setblocking(False)
        registry = _token_registry(tmp_path / "registry", f"http://127.0.0.1:{realm.getsockname()[1]}/token")
        try:
            async with http_client(timeout=5, extra_ca=str(registry.ca), allow_private=True) as http:
                failure = await _failure(http, _location(registry, "any/rules"), None)
        finally:
            registry.stop()
        assert failure.reason == "InsecureTokenRealm", failure.message
        assert "which is not HTTPS; a registry reached over TLS must hand out tokens over TLS" in failure.message
        with pytest.raises(BlockingIOError):
            realm.accept()  # the token service was never asked


async def test_a_layer_streams_to_disk_and_only_the_file_taken_out_is_held_in_memory(tmp_path: Path) -> None:
    # Plain HTTP: oras-py's upload of a blob this large over TLS fails against this registry.
    registry = start_registry(tmp_path / "registry", tls=False, auth=False)
    spool = tmp_path / "spool"
    try:
        library = secrets.token_bytes(16 << 20)  # incompressible: the layer is as large as the library
        repository = _repository()
        push_plugin(registry, repository, "big", {"amd64": library})
        async with http_client(timeout=5, allow_private=True) as http:
            session = RegistrySession(http, _location(registry, repository, "big"), None)
            resolved = await session.resolve(PLUGIN, "amd64")
            tracemalloc.start()
            try:
                pulled = await session.fetch(resolved, PLUGIN, 64 << 20, spool)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
    finally:
        registry.stop()
    assert pulled.file.data == library
    assert peak < 1.5 * len(library), f"{peak} bytes at the peak for a {len(library)}-byte library"
    assert os.listdir(spool) == []
