"""A real OCI registry on loopback for tests: Debian's ``docker-registry`` (the CNCF distribution server).

``start_registry`` runs it with TLS from a fresh test CA and htpasswd authentication (or plain HTTP, with or
without authentication); ``push_*`` publish artifacts with the uploader of `falco-operator push` (oras-py); the
access log tells which blobs were downloaded.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from falco_operator.artifacts.oci.credentials import Credentials
from falco_operator.artifacts.oci.packing import Blob, PackedIndex, PackedManifest, Platform
from falco_operator.artifacts.oci.publishing import Destination, Publisher

from .controlplane.cluster import free_port
from .controlplane.pki import create_server_pki
from .controlplane.processes import popen, terminate

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
BINARIES = ("docker-registry", "registry")


def find_registry_binary() -> str:
    for name in BINARIES:
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError(
        "no OCI registry binary: install Debian's docker-registry package (apt-get install docker-registry), "
        "which .ci/run does"
    )


def find_htpasswd() -> str:
    found = shutil.which("htpasswd")
    if not found:
        raise RuntimeError("no htpasswd: install Debian's apache2-utils package, which .ci/run does")
    return found


@dataclass
class Registry:
    host: str
    """``127.0.0.1:<port>``."""
    directory: Path
    ca: Path | None
    username: str | None
    password: str | None
    process: subprocess.Popen[bytes] | None = None
    args: list[str] = field(default_factory=list)

    @property
    def plain_http(self) -> bool:
        return self.ca is None

    @property
    def log_path(self) -> Path:
        return self.directory / "registry.log"

    @property
    def url(self) -> str:
        return f"{'http' if self.plain_http else 'https'}://{self.host}"

    # -- lifecycle ----------------------------------------------------------------------------------------

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = popen(self.args, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the registry exited: {self.log_path.read_text()[-2000:]}")
            if self._answers():
                return
            time.sleep(0.05)
        raise RuntimeError(f"the registry did not answer within 30 s: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None:
            self.resume()
            terminate(self.process, grace=5)
            self.process = None

    def pause(self) -> None:
        """Stop answering while keeping the port open: connections are accepted and never served."""
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGCONT)

    def _answers(self) -> bool:
        try:
            urllib.request.urlopen(f"{self.url}/v2/", timeout=2, context=self._ssl())
        except urllib.error.HTTPError as error:
            return error.code == 401
        except OSError:
            return False
        return True

    def _ssl(self) -> ssl.SSLContext | None:
        return ssl.create_default_context(cafile=str(self.ca)) if self.ca else None

    # -- publishing -----------------------------------------------------------------------------------------

    def publisher(self, repository: str) -> Publisher:
        """The push command's uploader (oras-py), logged in to this registry for ``repository``."""
        credentials = Credentials(self.username, self.password) if self.username and self.password else None
        return Publisher(Destination(self.host, repository, plain_http=self.plain_http,
                                     ca_file=str(self.ca) if self.ca else None, credentials=credentials))  # fmt: skip

    def push_artifact(
        self, repository: str, tag: str, layer: bytes, layer_type: str, config: bytes, config_type: str
    ) -> str:
        """One manifest with one layer made by the caller (broken ones too); returns the manifest digest."""
        manifest = PackedManifest(Blob(config_type, config), (Blob(layer_type, layer),))
        return self.publisher(repository).push_manifest(manifest, tag)

    def push_index(self, repository: str, tag: str, platforms: dict[str, tuple[bytes, str, bytes, str]]) -> str:
        """An image index with one manifest per ``linux/<arch>``; returns the index digest."""
        manifests = tuple(
            (Platform("linux", architecture), PackedManifest(Blob(config_type, config), (Blob(layer_type, layer),)))
            for architecture, (layer, layer_type, config, config_type) in sorted(platforms.items())
        )
        return self.publisher(repository).push_index(PackedIndex(manifests), tag)

    # -- inspection -----------------------------------------------------------------------------------------

    def blob_downloads(self, repository: str | None = None) -> int:
        """GET requests for blobs answered with content so far (from the access log)."""
        path = re.escape(repository) if repository else "[^ ]+"
        pattern = re.compile(rf'"GET /v2/{path}/blobs/sha256:[0-9a-f]+ HTTP/[0-9.]+" 20[06] ')
        return len(pattern.findall(self.log_path.read_text(errors="replace")))

    def corrupt_blob(self, digest: str, data: bytes) -> None:
        """Replace a stored blob's bytes behind the registry's back (it serves them under the old digest)."""
        hex_digest = digest.removeprefix("sha256:")
        path = self.directory / "storage" / "docker/registry/v2/blobs/sha256" / hex_digest[:2] / hex_digest / "data"
        path.write_bytes(data)


def start_registry(directory: Path, *, tls: bool = True, auth: bool = True, address: str = "127.0.0.1") -> Registry:
    """A registry process on ``address`` (loopback unless pods of a real node must reach it)."""
    binary = find_registry_binary()
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    host = f"{address}:{port}"
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
        "storage": {"filesystem": {"rootdirectory": str(directory / "storage")}, "delete": {"enabled": True}},
        "http": {"addr": host, "secret": secrets.token_hex(16)},
    }
    ca = None
    if tls:
        ca, server = create_server_pki(directory / "pki", "registry")
        config["http"]["tls"] = {"certificate": str(server.cert), "key": str(server.key)}
    username = password = None
    if auth:
        username, password = "falco-e2e", secrets.token_hex(12)
        htpasswd = directory / "htpasswd"
        hashed = subprocess.run([find_htpasswd(), "-Bbn", username, password], check=True, capture_output=True)
        htpasswd.write_bytes(hashed.stdout)
        config["auth"] = {"htpasswd": {"realm": "falco-e2e", "path": str(htpasswd)}}
    config_path = directory / "config.yml"
    config_path.write_text(json.dumps(config))  # JSON is YAML
    registry = Registry(host, directory, ca, username, password, args=[binary, "serve", str(config_path)])
    registry.start()
    return registry
