"""The registry side of a pull, over httpx: resolve a reference to a digest, choose the platform, fetch the layer.

Why httpx and not oras-py, which the tests use to push: oras-py is synchronous (requests), downloads blobs without
checking their digest or size, has no platform choice for image indexes and no per-request timeout, and importing
it costs the agent about 10 MiB of resident memory (measured: httpx 18 MiB, oras-py on top of it 10 MiB) in a
sidecar that runs on every node. The registry protocol needed for pulling is small: manifests, blobs, and the
two authentication challenges (Basic, and Bearer tokens from the realm the registry names).

Every failure is a ``PullFailed`` with a short reason (``Unauthorized``, ``NotFound``, ``Timeout``,
``DigestMismatch``, ``WrongMediaType``, ...; all of them in ``failures``) and a message a user can act on.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import anyio
import anyio.to_thread
import certifi
import httpx

from ...api.ocirefs import OCILocation
from ...records import record
from .addresses import AddressRefused, guarded_pool
from .archive import ArchiveFile, ArchiveRefused, extract_single_file
from .credentials import Credentials
from .failures import CONFIG_UNREADABLE, PullFailed
from .media import INDEXES, MANIFESTS, ArtifactType, type_of_layer
from .media import machine_architecture as machine_architecture
from .signatures import (
    BUNDLE,
    MAX_PAYLOAD_BYTES,
    MAX_SIGNATURE_LAYERS,
    SignedPayload,
    bundle_signatures,
    keyless_annotations,
    referrers_tag,
    signature_layers,
    signature_tag,
)

Json = dict[str, Any]
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_TOKEN_ANSWER_BYTES = 64 * 1024
MAX_CONFIG_BYTES = 64 * 1024
"""The largest artifact config blob read (falcoctl's are a few hundred bytes: name, version, requirements)."""
UNTRUSTED_CERTIFICATE = "UntrustedCertificate"
"""The registry's (or token service's) certificate does not verify against the CAs trusted for its host."""
_ACCEPT = ", ".join((*MANIFESTS, *INDEXES))


def http_client(
    *,
    timeout: float,
    insecure: bool = False,
    extra_ca: str | None = None,
    allow_private: bool = False,
    host_ca: str | None = None,
) -> httpx.AsyncClient:
    """A client for registries: the system's trusted CAs plus ``extra_ca`` and ``host_ca`` (PEM files; the second
    is trusted for one host, so a client with it serves only that host), or no verification at
    all for artifacts that ask for ``insecureSkipVerify``. ``timeout`` bounds every connect, read and write. Every
    connection (registry, token realm, redirect) goes only to public addresses unless ``allow_private``
    (``addresses``)."""
    if insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context = ssl.create_default_context(cafile=certifi.where())
        context.load_default_certs()
        for ca in (extra_ca, host_ca):
            if ca:
                context.load_verify_locations(cafile=ca)
    transport = httpx.AsyncHTTPTransport(verify=context, trust_env=False)
    # httpx takes no network backend; its transport's pool is replaced by one whose connections are checked.
    transport._pool = guarded_pool(context, allow_private)
    return httpx.AsyncClient(transport=transport, timeout=timeout, trust_env=False)


@record(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int


@record(frozen=True)
class Resolved:
    digest: str
    """What the reference resolves to (an index's digest for a multi-platform artifact): the digest reported."""
    layer: Descriptor
    """The layer of the chosen platform's manifest that holds the file."""
    config: Descriptor | None = None
    """The chosen manifest's config blob when it is of the artifact kind's config type (falcoctl's: name,
    version, requirements)."""


@record(frozen=True)
class Pulled:
    digest: str
    file: ArchiveFile
    downloaded: int
    """Bytes of blobs downloaded (the layer; manifests are not counted)."""


class RegistrySession:
    """One pull's conversation with one registry: answers its authentication challenge once and reuses the
    answer. Credentials are never sent over plain HTTP or without certificate checks, and only to the registry and
    the token realm it names."""

    def __init__(self, http: httpx.AsyncClient, location: OCILocation, credentials: Credentials | None) -> None:
        self._http = http
        self._location = location
        self._credentials = credentials
        scheme = "http" if location.plain_http else "https"
        self._base = f"{scheme}://{location.registry}/v2/{location.repository}"
        self._authorization: str | None = None

    @property
    def reference(self) -> str:
        return self._location.reference

    async def resolve(self, kind: ArtifactType, architecture: str) -> Resolved:
        """The digest the reference names now, and the layer this machine needs from it."""
        location = self._location
        requested = location.digest or location.tag or "latest"
        digest, manifest = await self._manifest(requested, expected=location.digest)
        top = digest
        media_type = str(manifest.get("mediaType") or "")
        if media_type in INDEXES or "manifests" in manifest:
            chosen = _platform_manifest(manifest, architecture, self.reference)
            digest, manifest = await self._manifest(chosen, expected=chosen)
        return Resolved(top, _layer(manifest, kind, self.reference), _config(manifest, kind))

    async def artifact_config(self, resolved: Resolved) -> Json | None:
        """The artifact's config (falcoctl writes ``name``, ``version``, ``dependencies``, ``requirements``),
        digest checked; None when the manifest has none of the kind's config type. A config that can never be read
        (over ``MAX_CONFIG_BYTES``, not a JSON object) fails with ``CONFIG_UNREADABLE``, a download that fails
        with its own reason."""
        config = resolved.config
        if config is None:
            return None
        if config.size > MAX_CONFIG_BYTES:
            raise PullFailed(CONFIG_UNREADABLE, f"the config of {self.reference} is {config.size} bytes, over the "
                                                f"{MAX_CONFIG_BYTES}-byte limit")  # fmt: skip
        async with self._request("GET", f"{self._base}/blobs/{config.digest}", {}) as response:
            _raise_for_status(response, self.reference)
            body = await _read_capped(response, config.size, "artifact config")
        if "sha256:" + hashlib.sha256(body).hexdigest() != config.digest:
            raise PullFailed("DigestMismatch", f"the config of {self.reference} does not have digest {config.digest}")
        try:
            value = json.loads(body)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise PullFailed(CONFIG_UNREADABLE, f"the config of {self.reference} is not a JSON object")
        return value

    async def fetch(self, resolved: Resolved, kind: ArtifactType, max_bytes: int, spool: Path) -> Pulled:
        """Download the layer into a file in ``spool`` (digest and size checked while it streams), take the
        artifact's file out of it into another (at most ``max_bytes``, in a worker thread), and read that one:
        only the file taken out is ever in memory, once. Both spool files are removed."""
        layer = resolved.layer
        if layer.size > max_bytes:
            raise PullFailed("TooLarge", f"the layer of {self.reference} is {layer.size} bytes, over the "
                                         f"{max_bytes}-byte limit")  # fmt: skip
        await anyio.Path(spool).mkdir(parents=True, exist_ok=True)
        stem = f"{layer.digest.partition(':')[2][:16]}.{secrets.token_hex(4)}.tmp"
        layer_path, file_path = spool / f".layer-{stem}", spool / f".file-{stem}"
        try:
            await self._blob(layer, layer_path)
            name = await anyio.to_thread.run_sync(
                extract_single_file, layer_path, kind.file_suffixes, max_bytes, file_path
            )
            data = await anyio.Path(file_path).read_bytes()
        except ArchiveRefused as refused:
            raise PullFailed("RefusedArchive", f"{self.reference}: {refused}") from None
        finally:
            with anyio.CancelScope(shield=True):
                for path in (layer_path, file_path):
                    await anyio.Path(path).unlink(missing_ok=True)
        return Pulled(resolved.digest, ArchiveFile(name, data), layer.size)

    async def signatures(self, digest: str) -> list[SignedPayload] | None:
        """The cosign signatures of ``digest`` (the ``sha256-<hex>.sig`` tag's simple signing layers, each
        payload digest checked); None when the registry has no such tag."""
        try:
            _, manifest = await self._manifest(signature_tag(digest), expected=None)
        except PullFailed as failed:
            if failed.reason == "NotFound":
                return None
            raise
        signed: list[SignedPayload] = []
        keyless = keyless_annotations(manifest)
        for layer_digest, size, signature in signature_layers(manifest):
            if size > MAX_PAYLOAD_BYTES:
                continue
            payload = await self._small_blob(layer_digest, size, "signature payload")
            certificate, log_entry = keyless.get(layer_digest, (None, None))
            signed.append(SignedPayload(payload, signature, certificate=certificate, log_entry=log_entry))
        return signed

    async def bundle_signatures(self, digest: str) -> list[SignedPayload] | None:
        """The signatures in the Sigstore bundles that refer to ``digest`` (OCI 1.1 referrers: the referrers API,
        else the referrers tag schema); None when the registry lists no referrer of it at all."""
        index = await self._referrers(digest)
        if index is None:
            return None
        signed: list[SignedPayload] = []
        entries = [entry for entry in index.get("manifests") or [] if isinstance(entry, dict)]
        bundles = [entry for entry in entries if entry.get("artifactType") == BUNDLE and entry.get("digest")]
        for entry in bundles[:MAX_SIGNATURE_LAYERS]:
            _, manifest = await self._manifest(str(entry["digest"]), expected=str(entry["digest"]))
            if (manifest.get("subject") or {}).get("digest") != digest:
                continue  # a referrer of another digest listed here proves nothing about this one
            for layer in manifest.get("layers") or []:
                if not isinstance(layer, dict) or layer.get("mediaType") != BUNDLE:
                    continue
                try:
                    layer_digest, size = str(layer["digest"]), int(layer["size"])
                except (KeyError, TypeError, ValueError):
                    continue
                if size <= MAX_PAYLOAD_BYTES:
                    signed += bundle_signatures(await self._small_blob(layer_digest, size, "signature bundle"))
        return signed if bundles else None

    async def _referrers(self, digest: str) -> Json | None:
        url = f"{self._base}/referrers/{digest}?{urlencode({'artifactType': BUNDLE})}"
        async with self._request("GET", url, {"Accept": INDEXES[0]}) as response:
            if response.is_success:
                body = await _read_capped(response, MAX_MANIFEST_BYTES, "referrers index")
                try:
                    index = json.loads(body)
                except ValueError:
                    index = None
                if isinstance(index, dict):
                    return index
                raise PullFailed("InvalidManifest", f"the referrers of {self.reference} are not a JSON index")
            if response.status_code not in (400, 404, 405):
                _raise_for_status(response, self.reference)
        try:  # no referrers API: the referrers tag schema
            _, index = await self._manifest(referrers_tag(digest), expected=None)
        except PullFailed as failed:
            if failed.reason == "NotFound":
                return None
            raise
        return index

    async def _small_blob(self, digest: str, size: int, what: str) -> bytes:
        async with self._request("GET", f"{self._base}/blobs/{digest}", {}) as response:
            _raise_for_status(response, self.reference)
            body = await _read_capped(response, size, what)
        if "sha256:" + hashlib.sha256(body).hexdigest() != digest:
            raise PullFailed("DigestMismatch", f"a {what} of {self.reference} does not have digest {digest}")
        return body

    # -- protocol -----------------------------------------------------------------------------------------

    async def _manifest(self, reference: str, *, expected: str | None) -> tuple[str, Json]:
        url = f"{self._base}/manifests/{reference}"
        async with self._request("GET", url, {"Accept": _ACCEPT}) as response:
            if response.status_code == 404:
                raise PullFailed("NotFound", f"{self._location.registry} has no {self._location.repository}:"
                                             f"{reference} (unknown repository, tag or digest)")  # fmt: skip
            _raise_for_status(response, self.reference)
            body = await _read_capped(response, MAX_MANIFEST_BYTES, "manifest")
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        announced = response.headers.get("Docker-Content-Digest")
        for claimed in (expected, announced):
            if claimed and claimed.startswith("sha256:") and claimed != digest:
                raise PullFailed("DigestMismatch", f"the manifest of {self.reference} has digest {digest}, "
                                                   f"not {claimed}")  # fmt: skip
        try:
            manifest = json.loads(body)
        except ValueError:
            raise PullFailed("InvalidManifest", f"the manifest of {self.reference} is not JSON") from None
        if not isinstance(manifest, dict):
            raise PullFailed("InvalidManifest", f"the manifest of {self.reference} is not a JSON object")
        return digest, manifest

    async def _blob(self, layer: Descriptor, path: Path) -> None:
        """Stream the blob into ``path``, its size and digest checked on the way."""
        url = f"{self._base}/blobs/{layer.digest}"
        hasher = hashlib.sha256()
        received = 0
        async with self._request("GET", url, {}) as response, await anyio.open_file(path, "wb") as file:
            _raise_for_status(response, self.reference)
            async for chunk in response.aiter_bytes():
                received += len(chunk)
                if received > layer.size:
                    raise PullFailed("DigestMismatch", f"the layer {layer.digest} of {self.reference} is longer "
                                                       f"than the {layer.size} bytes its manifest says")  # fmt: skip
                hasher.update(chunk)
                await file.write(chunk)
        actual = "sha256:" + hasher.hexdigest()
        if received != layer.size or actual != layer.digest:
            raise PullFailed("DigestMismatch", f"the layer of {self.reference} arrived as {actual} ({received} "
                                               f"bytes), not {layer.digest} ({layer.size} bytes)")  # fmt: skip

    def _request(self, method: str, url: str, headers: Mapping[str, str]) -> _Exchange:
        return _Exchange(self, method, url, dict(headers))

    async def _send(self, method: str, url: str, headers: dict[str, str]) -> httpx.Response:
        response = await self._send_once(method, url, headers)
        if response.status_code == 401:
            challenge = response.headers.get("WWW-Authenticate", "")
            await response.aclose()
            await self._answer(challenge)
            response = await self._send_once(method, url, headers)
            if response.status_code == 401:
                await response.aclose()
                raise PullFailed("Unauthorized", f"{self._location.registry} refused the credentials for "
                                                 f"{self.reference} (401)")  # fmt: skip
        return response

    async def _send_once(self, method: str, url: str, headers: dict[str, str]) -> httpx.Response:
        if self._authorization:
            headers = {**headers, "Authorization": self._authorization}
        request = self._http.build_request(method, url, headers=headers)
        try:
            return await self._http.send(request, stream=True, follow_redirects=True)
        except httpx.TimeoutException:
            raise PullFailed("Timeout", f"{self._location.registry} did not answer in time") from None
        except httpx.HTTPError as error:
            untrusted = untrusted_certificate(error, self._location.registry)
            if untrusted is not None:
                raise untrusted from None
            raise PullFailed("Unreachable", f"cannot reach {self._location.registry}: {error}") from None
        except AddressRefused as refused:
            raise PullFailed("RefusedAddress", f"{self.reference}: {refused.message}") from None

    async def _answer(self, challenge: str) -> None:
        scheme, params = parse_challenge(challenge)
        credentials = self._credentials
        if credentials is not None and self._location.plain_http:
            raise PullFailed("InsecureCredentials", f"{self._location.registry} asks for credentials over plain "
                                                    "HTTP; credentials are never sent without TLS")  # fmt: skip
        if credentials is not None and self._location.insecure_skip_verify:
            raise PullFailed("InsecureCredentials", f"{self._location.registry} asks for credentials and "
                             "tls.insecureSkipVerify is on: credentials are never sent to a registry whose certificate "
                             "is not checked; give the agents its CA (--registry-ca) and turn insecureSkipVerify "
                             "off")  # fmt: skip
        if scheme == "basic":
            if credentials is None:
                raise PullFailed("Unauthorized", f"{self._location.registry} asks for credentials and the "
                                                 "artifact names none")  # fmt: skip
            self._authorization = _basic(credentials)
        elif scheme == "bearer":
            self._authorization = "Bearer " + await self._token(params, credentials)
        else:
            raise PullFailed("Unauthorized", f"{self._location.registry} asks for an unsupported authentication "
                                             f"scheme {challenge!r}")  # fmt: skip

    async def _token(self, params: Mapping[str, str], credentials: Credentials | None) -> str:
        realm = params.get("realm")
        if not realm:
            raise PullFailed("Unauthorized", f"{self._location.registry} asks for a token without a realm")
        scheme = urlsplit(realm).scheme
        if credentials is not None and scheme != "https":
            raise PullFailed("InsecureCredentials", f"the token realm {realm} is not HTTPS; credentials are "
                                                    "never sent without TLS")  # fmt: skip
        if scheme != "https" and not (scheme == "http" and self._location.plain_http):
            raise PullFailed("InsecureTokenRealm", f"{self._location.registry} sends the agent for a token to "
                             f"{realm}, which is not HTTPS; a registry reached over TLS must hand out tokens over "
                             "TLS (only a plainHTTP registry may name a plain-HTTP token service)")  # fmt: skip
        query = {"scope": params.get("scope") or f"repository:{self._location.repository}:pull"}
        if params.get("service"):
            query["service"] = params["service"]
        headers = {"Authorization": _basic(credentials)} if credentials else {}
        try:
            async with self._http.stream("GET", f"{realm}?{urlencode(query)}", headers=headers) as response:
                if response.status_code in (401, 403):
                    raise PullFailed("Unauthorized", f"the token service of {self._location.registry} refused the "
                                                     f"credentials ({response.status_code})")  # fmt: skip
                if not response.is_success:  # not the registry's word on the artifact (a 404 is no NotFound)
                    raise PullFailed("RegistryError", f"the token service {realm} answered {response.status_code}")
                body = await _read_capped(response, MAX_TOKEN_ANSWER_BYTES, "token service's answer")
        except httpx.TimeoutException:
            raise PullFailed("Timeout", f"the token service {realm} did not answer in time") from None
        except httpx.HTTPError as error:
            untrusted = untrusted_certificate(error, f"the token service {realm}")
            if untrusted is not None:
                raise untrusted from None
            raise PullFailed("Unreachable", f"cannot reach the token service {realm}: {error}") from None
        except AddressRefused as refused:
            raise PullFailed("RefusedAddress", f"the token service of {self._location.registry}: "
                                               f"{refused.message}") from None  # fmt: skip
        try:
            answer = json.loads(body)
            return str(answer.get("token") or answer["access_token"])
        except (ValueError, KeyError, AttributeError):
            raise PullFailed("Unauthorized", f"the token service {realm} answered without a token") from None


class _Exchange:
    """``async with`` around a streamed response, so every exit closes it."""

    def __init__(self, session: RegistrySession, method: str, url: str, headers: dict[str, str]) -> None:
        self._session, self._method, self._url, self._headers = session, method, url, headers
        self._response: httpx.Response | None = None

    async def __aenter__(self) -> httpx.Response:
        self._response = await self._session._send(self._method, self._url, self._headers)
        return self._response

    async def __aexit__(self, *_: object) -> None:
        if self._response is not None:
            await self._response.aclose()


def untrusted_certificate(error: BaseException, peer: str) -> PullFailed | None:
    """``UntrustedCertificate`` when the TLS handshake failed because the certificate is not trusted (the cause
    somewhere in the chain httpx wraps), with the verifier's words and where a CA goes; None for other errors."""
    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, ssl.SSLCertVerificationError):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return None
    detail = cause.verify_message or str(cause)
    return PullFailed(UNTRUSTED_CERTIFICATE, f"TLS: {peer} presents a certificate the agent does not trust "
                      f"({detail}); give its CA in the Falco's spec.registries (caBundle of this host)")  # fmt: skip


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="https://x/token",service="x"`` → (``bearer``, {realm: ..., service: ...})."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    position = 0
    while position < len(rest):
        equals = rest.find("=", position)
        if equals < 0:
            break
        key = rest[position:equals].strip().strip(",").strip().lower()
        position = equals + 1
        if position < len(rest) and rest[position] == '"':
            end = rest.find('"', position + 1)
            end = len(rest) if end < 0 else end
            params[key] = rest[position + 1 : end]
            position = end + 1
        else:
            end = rest.find(",", position)
            end = len(rest) if end < 0 else end
            params[key] = rest[position:end].strip()
            position = end
        comma = rest.find(",", position)
        position = len(rest) if comma < 0 else comma + 1
    return scheme.lower(), params


def _basic(credentials: Credentials) -> str:
    token = base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()
    return f"Basic {token}"


def _platform_manifest(index: Json, architecture: str, reference: str) -> str:
    available = []
    for entry in index.get("manifests") or []:
        if not isinstance(entry, dict):
            continue
        platform_ = entry.get("platform") or {}
        available.append(f"{platform_.get('os')}/{platform_.get('architecture')}")
        if platform_.get("os") == "linux" and platform_.get("architecture") == architecture and entry.get("digest"):
            return str(entry["digest"])
    raise PullFailed("NoPlatform", f"{reference} has no linux/{architecture} manifest (it has: "
                                   f"{', '.join(available) or 'none'})")  # fmt: skip


def _layer(manifest: Json, kind: ArtifactType, reference: str) -> Descriptor:
    layers = [layer for layer in manifest.get("layers") or [] if isinstance(layer, dict)]
    for layer in layers:
        if layer.get("mediaType") == kind.layer:
            try:
                return Descriptor(kind.layer, str(layer["digest"]), int(layer["size"]))
            except (KeyError, TypeError, ValueError):
                raise PullFailed(
                    "InvalidManifest", f"the {kind.label} layer of {reference} has no digest or size"
                ) from None
    found = sorted({str(layer.get("mediaType")) for layer in layers})
    other = next((type_of_layer(media) for media in found if type_of_layer(media)), None)
    if other is not None:
        message = f"{reference} is a {other.label} artifact, not a {kind.label} artifact"
    else:
        message = f"{reference} has no layer of media type {kind.layer} (it has: {', '.join(found) or 'none'})"
    raise PullFailed("WrongMediaType", message)


def _config(manifest: Json, kind: ArtifactType) -> Descriptor | None:
    config = manifest.get("config")
    if not isinstance(config, dict) or config.get("mediaType") != kind.config:
        return None
    try:
        return Descriptor(kind.config, str(config["digest"]), int(config["size"]))
    except (KeyError, TypeError, ValueError):
        return None


def _raise_for_status(response: httpx.Response, reference: str) -> None:
    if response.is_success:
        return
    host = response.request.url.host
    if response.status_code == 403:
        raise PullFailed("Forbidden", f"{host} denies access to {reference} (403)")
    if response.status_code == 404:  # a manifest's 404 is NotFound (``_manifest``): only that says the tag is gone
        raise PullFailed("BlobNotFound", f"{host} has no blob the manifest of {reference} names (404)")
    raise PullFailed("RegistryError", f"{host} answered {response.status_code} for {reference}")


async def _read_capped(response: httpx.Response, limit: int, what: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise PullFailed("TooLarge", f"the {what} is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
