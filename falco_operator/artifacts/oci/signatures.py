"""cosign signatures of an OCI artifact, verified offline with a public key, by the digest a reference resolved to.

cosign's key-based layout: the signatures of ``<repo>@sha256:<hex>`` are the layers of the manifest tagged
``sha256-<hex>.sig`` in the same repository. Each layer is a *simple signing* payload
(``application/vnd.dev.cosign.simplesigning.v1+json``) whose ``critical.image.docker-manifest-digest`` names the
signed digest; its ``dev.cosignproject.cosign/signature`` annotation holds the base64 signature of the payload's
bytes (ECDSA P-256 with SHA-256, DER; or Ed25519ph, Ed25519 over the bytes' SHA-512, as cosign signs with an
Ed25519 key; pure Ed25519 is accepted too).

A key is satisfied when one layer's signature verifies with it *and* its payload names the digest verified. The
verdicts are reasons of a failed pull: ``SignatureMissing`` (no signature manifest for the digest) and
``SignatureInvalid`` (signatures, none of them by the key for this digest).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import TYPE_CHECKING, Any, TypeAlias

from ...records import record
from .ed25519ph import verify_ed25519ph

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

# cryptography (about 9 MiB resident) is imported by the functions that verify: an agent whose artifacts ask for
# no verification never loads it.

SIGNATURE_MISSING = "SignatureMissing"
SIGNATURE_INVALID = "SignatureInvalid"
KEY_UNAVAILABLE = "VerificationKeyUnavailable"
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
LOG_ENTRY_ANNOTATION = "dev.sigstore.cosign/bundle"
MAX_SIGNATURE_LAYERS = 32
"""Signature layers looked at, at most (each signing appends one)."""
MAX_PAYLOAD_BYTES = 64 * 1024
"""The largest simple signing payload read (cosign's are a few hundred bytes)."""
PublicKey: TypeAlias = "ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey"


class KeyProblem(Exception):
    """A verification key that cannot be used (not PEM, not a public key, an algorithm cosign keys do not use)."""


@record(frozen=True)
class VerificationKey:
    source: str
    """Where it was read (``ConfigMap cosign (key cosign.pub)``), for messages."""
    public_key: PublicKey
    fingerprint: str
    """``sha256:<hex>`` of the key's DER SubjectPublicKeyInfo: what a verified artifact reports as its signer."""


@record(frozen=True)
class SignedPayload:
    payload: bytes
    """The bytes signed: a simple signing payload, or a DSSE envelope's pre-authentication encoding."""
    signature: str
    """The signature over ``payload`` (base64)."""
    names: str | None = None
    """The digest the signed statement names (a bundle's in-toto subject); None: read it from a simple signing
    ``payload``."""
    bundle: bytes | None = None
    """The Sigstore bundle the signature came from (its certificate and transparency-log entries: keyless)."""
    certificate: str | None = None
    """The ``.sig`` layout's certificate of a keyless signature (PEM, ``dev.sigstore.cosign/certificate``)."""
    log_entry: str | None = None
    """The ``.sig`` layout's transparency-log entry (JSON, ``dev.sigstore.cosign/bundle``)."""

    @property
    def signed_digest(self) -> str | None:
        return self.names if self.names is not None else signed_digest(self.payload)


BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
"""A Sigstore bundle, cosign v3's default: an OCI 1.1 referrer of the signed digest (``subject``), found through the
referrers API or, where the registry has none, the referrers tag schema (an index tagged ``sha256-<hex>``)."""
IN_TOTO = "application/vnd.in-toto+json"
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"


def referrers_tag(digest: str) -> str:
    """The referrers tag schema's tag for ``digest``: ``sha256-<hex>``."""
    algorithm, _, hex_ = digest.partition(":")
    return f"{algorithm}-{hex_}"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what a DSSE signature signs."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def bundle_signatures(bundle: bytes) -> list[SignedPayload]:
    """The DSSE signatures of a Sigstore bundle whose statement is cosign's signature of an image (key-based:
    no certificate is looked at), each with the digest its in-toto subject names; [] for anything else."""
    try:
        document = json.loads(bundle)
        envelope = document["dsseEnvelope"]
        if envelope.get("payloadType") != IN_TOTO:
            return []
        payload = base64.b64decode(envelope["payload"], validate=True)
        statement = json.loads(payload)
        if statement.get("predicateType") != COSIGN_SIGN_PREDICATE:
            return []
        subjects = [s["digest"]["sha256"] for s in statement.get("subject") or [] if isinstance(s, dict)]
        signatures = [str(entry["sig"]) for entry in envelope.get("signatures") or [] if isinstance(entry, dict)]
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        return []
    if len(subjects) != 1:
        return []
    message = pae(IN_TOTO, payload)
    return [SignedPayload(message, signature, f"sha256:{subjects[0]}", bundle) for signature in signatures]


def load_key(pem: bytes, source: str) -> VerificationKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as error:
        raise KeyProblem(f"{source} does not hold a PEM public key ({error})") from None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise KeyProblem(f"{source} holds an ECDSA key on {key.curve.name}; cosign keys are P-256 (secp256r1)")
    elif not isinstance(key, ed25519.Ed25519PublicKey):
        raise KeyProblem(f"{source} holds a {type(key).__name__}; only ECDSA P-256 and Ed25519 keys are accepted")
    return VerificationKey(source, key, key_fingerprint(key))


def key_fingerprint(key: PublicKey) -> str:
    from cryptography.hazmat.primitives import serialization

    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def signature_tag(digest: str) -> str:
    """The tag cosign writes the signatures of ``digest`` under: ``sha256-<hex>.sig``."""
    algorithm, _, hex_ = digest.partition(":")
    return f"{algorithm}-{hex_}.sig"


def signature_layers(manifest: dict[str, Any]) -> list[tuple[str, int, str]]:
    """The simple signing layers of a signature manifest: (digest, size, base64 signature)."""
    found: list[tuple[str, int, str]] = []
    for layer in manifest.get("layers") or []:
        if not isinstance(layer, dict) or layer.get("mediaType") != SIMPLE_SIGNING:
            continue
        signature = (layer.get("annotations") or {}).get(SIGNATURE_ANNOTATION)
        try:
            found.append((str(layer["digest"]), int(layer["size"]), str(signature)))
        except (KeyError, TypeError, ValueError):
            continue
        if len(found) >= MAX_SIGNATURE_LAYERS:
            break
    return [entry for entry in found if entry[2] and entry[2] != "None"]


def keyless_annotations(manifest: dict[str, Any]) -> dict[str, tuple[str | None, str | None]]:
    """The certificate (PEM) and transparency-log entry (JSON) annotations of each signature layer, by digest."""
    found: dict[str, tuple[str | None, str | None]] = {}
    for layer in manifest.get("layers") or []:
        if not isinstance(layer, dict) or not isinstance(layer.get("annotations"), dict):
            continue
        annotations = layer["annotations"]
        certificate, entry = annotations.get(CERTIFICATE_ANNOTATION), annotations.get(LOG_ENTRY_ANNOTATION)
        found[str(layer.get("digest"))] = (
            certificate if isinstance(certificate, str) and certificate else None,
            entry if isinstance(entry, str) and entry else None,
        )
    return found


def signed_digest(payload: bytes) -> str | None:
    """The digest a simple signing payload names, or None when it is not one."""
    try:
        document = json.loads(payload)
        critical = document["critical"]
        if critical.get("type") != "cosign container image signature":
            return None
        return str(critical["image"]["docker-manifest-digest"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def signature_verifies(key: PublicKey, payload: bytes, signature_b64: str) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
        else:
            key.verify(signature, payload)
    except InvalidSignature:
        # cosign signs with Ed25519ph (pre-hashed) for Ed25519 keys; pure Ed25519 is accepted too.
        if not isinstance(key, ed25519.Ed25519PublicKey):
            return False
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return verify_ed25519ph(raw, signature, payload)
    return True


def judge(digest: str, reference: str, signed: list[SignedPayload], key: VerificationKey) -> tuple[bool, str]:
    """Whether ``key`` signed ``digest`` among these payloads, and else why not (a ``SignatureInvalid`` message)."""
    other_digests: set[str] = set()
    for item in signed:
        if not signature_verifies(key.public_key, item.payload, item.signature):
            continue
        named = item.signed_digest
        if named == digest:
            return True, ""
        if named:
            other_digests.add(named)
    if other_digests:
        return False, (f"{reference} resolves to {digest}, but the signature by key {key.fingerprint} ({key.source}) "
                       f"found for it is of {', '.join(sorted(other_digests))}: it is not delivered")  # fmt: skip
    return False, (f"none of the {len(signed)} signature(s) of {reference} ({digest}) verifies with key "
                   f"{key.fingerprint} ({key.source}): it is not delivered")  # fmt: skip
