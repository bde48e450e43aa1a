"""Uploading packed artifacts to a registry with oras-py (synchronous: for the push command and the tests).

Blobs first (those the registry has are skipped), then each platform's manifest by its digest, then the root
manifest or index under the tag. A registry that challenges with ``Basic`` gets the credentials on every request;
one that challenges with ``Bearer`` gets a token from its token service, asked for with the credentials.
"""

from __future__ import annotations

import tempfile
from typing import Any

from ...records import record
from .credentials import Credentials
from .media import OCI_INDEX, OCI_MANIFEST
from .packing import Blob, PackedIndex, PackedManifest


class PublishFailed(Exception):
    """The registry refused or could not be reached; the message says which request and why."""


@record(frozen=True)
class Destination:
    host: str
    """``host[:port]`` of the registry."""
    repository: str
    plain_http: bool = False
    ca_file: str | None = None
    """A CA bundle for a registry whose certificate no public CA signed; None: the system's."""
    credentials: Credentials | None = None


class Publisher:
    def __init__(self, destination: Destination) -> None:
        import oras.provider
        import requests

        self.destination = destination
        verify: bool | str = destination.ca_file or True
        self._scheme = "http" if destination.plain_http else "https"
        backend = "token"
        try:
            probe = requests.get(f"{self._scheme}://{destination.host}/v2/", timeout=30, verify=verify)
        except requests.RequestException as error:
            raise PublishFailed(f"cannot reach the registry {destination.host}: {error}") from None
        if probe.headers.get("Www-Authenticate", "").lower().startswith("basic"):
            backend = "basic"
        self._client: Any = oras.provider.Registry(hostname=destination.host, insecure=destination.plain_http,
                                                   tls_verify=verify, auth_backend=backend)  # fmt: skip
        if destination.credentials is not None:
            self._client.auth.set_basic_auth(destination.credentials.username, destination.credentials.password)

    def push_manifest(self, manifest: PackedManifest, reference: str) -> str:
        """The blobs and the manifest, tagged ``reference``; the manifest's digest."""
        for blob in manifest.blobs:
            self.push_blob(blob)
        return self.put_manifest(manifest.body, OCI_MANIFEST, reference)

    def push_index(self, index: PackedIndex, reference: str) -> str:
        """Every platform's manifest (by digest), then the index tagged ``reference``; the index's digest."""
        for _, manifest in index.manifests:
            self.push_manifest(manifest, manifest.digest)
        return self.put_manifest(index.body, OCI_INDEX, reference)

    def push_blob(self, blob: Blob) -> None:
        import requests

        container = self._container("unused")
        with tempfile.NamedTemporaryFile() as file:
            file.write(blob.data)
            file.flush()
            try:
                response = self._client.upload_blob(file.name, container, blob.descriptor())
            except requests.RequestException as error:
                raise PublishFailed(f"uploading {blob.digest} ({blob.media_type}) failed: {error}") from None
            except ValueError as error:  # oras-py's word for a registry that refused to open an upload
                text = str(error)
                hint = _CREDENTIALS_HINT if "UNAUTHORIZED" in text or "DENIED" in text else ""
                raise PublishFailed(f"the registry refused the upload of blob {blob.digest}{hint}: {text}") from None
        if response.status_code not in (200, 201, 202):
            raise PublishFailed(_refusal(f"the upload of blob {blob.digest} ({blob.media_type})", response))

    def put_manifest(self, body: bytes, media_type: str, reference: str) -> str:
        import requests

        from .packing import digest_of

        container = self._container(reference)
        try:
            response = self._client.do_request(f"{self._scheme}://{container.manifest_url()}", "PUT",
                                               headers={"Content-Type": media_type}, data=body)  # fmt: skip
        except requests.RequestException as error:
            raise PublishFailed(f"uploading the manifest {reference} failed: {error}") from None
        if response.status_code not in (200, 201):
            raise PublishFailed(_refusal(f"the manifest {reference}", response))
        return digest_of(body)

    def _container(self, reference: str) -> Any:
        separator = "@" if reference.startswith("sha256:") else ":"
        return self._client.get_container(f"{self.destination.host}/{self.destination.repository}{separator}"
                                          f"{reference}")  # fmt: skip


_CREDENTIALS_HINT = " (check the credentials for this registry in the docker config file)"


def _refusal(what: str, response: Any) -> str:
    detail = " ".join(str(response.text or "").split())[:500]
    hint = _CREDENTIALS_HINT if response.status_code in (401, 403) else ""
    return f"the registry refused {what}: HTTP {response.status_code}{hint}: {detail}"
