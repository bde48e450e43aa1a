"""cosign keyless signatures, verified offline against a Sigstore trusted root the user provides.

A keyless signature is a Sigstore bundle (v0.3) whose verification material is a short-lived leaf certificate
issued by a certificate authority (Fulcio) to an OIDC identity. Verifying it with no network:

1. the signing time: the ``integratedTime`` of a transparency-log entry of the bundle whose *signed entry
   timestamp* (the log's inclusion promise) verifies with a log key of the trusted root valid then, and whose
   canonicalized body carries the signature verified; when the trusted root lists no transparency log, there is no
   signing time to trust, and the certificates must be valid now;
2. the leaf certificate chains, signature by signature, to the certificate chain of a CA of the trusted root that
   is valid at the signing time, and every certificate of the chain is valid then;
3. the leaf's subject alternative name (email or URI) is the identity (or matches the RE2 ``identityRegexp``,
   whole), and its Fulcio issuer extension (OID 1.3.6.1.4.1.57264.1.8, or the legacy .1.1) is the issuer;
4. the DSSE signature verifies with the leaf's key, and the in-toto statement names the digest.

Inclusion proofs with checkpoints are not checked (the signed entry timestamp is), nor timestamp authorities.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any

import re2
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

from ...api.ocirefs import KeylessSource
from ...records import record
from .signatures import COSIGN_SIGN_PREDICATE, IN_TOTO, SignedPayload, pae, signed_digest

CERTIFICATE_IDENTITY_MISMATCH = "CertificateIdentityMismatch"
"""A keyless signature by a certificate of another identity or issuer than the policy's."""
CERTIFICATE_UNTRUSTED = "CertificateUntrusted"
"""A keyless signature whose certificate does not chain to a CA of the trusted root valid at signing time."""
TRANSPARENCY_LOG_UNVERIFIED = "TransparencyLogUnverified"
"""A keyless signature with no transparency-log entry signed by a log of the trusted root (when it lists logs)."""
ISSUER_OID = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
LEGACY_ISSUER_OID = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
MAX_TRUSTED_ROOT_BYTES = 1024 * 1024
MAX_AUTHORITIES = 64
MAX_CHAIN = 8
MAX_TLOG_ENTRIES = 8


class TrustedRootProblem(Exception):
    """A trusted root that cannot be used (not JSON, no certificate authority, a certificate that does not parse)."""


class KeylessRefused(Exception):
    """A keyless signature refused, with its reason (one of the constants above or ``SignatureInvalid``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@record(frozen=True)
class Validity:
    start: datetime | None
    end: datetime | None

    def covers(self, moment: datetime) -> bool:
        return (self.start is None or self.start <= moment) and (self.end is None or moment <= self.end)


@record(frozen=True)
class Authority:
    chain: tuple[x509.Certificate, ...]
    """Leaf-most first: the certificate that issues leaves, then its issuers up to the root."""
    validity: Validity


@record(frozen=True)
class TransparencyLog:
    key_id: bytes
    public_key: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
    validity: Validity


@record(frozen=True)
class TrustedRoot:
    source: str
    authorities: tuple[Authority, ...]
    logs: tuple[TransparencyLog, ...]


@record(frozen=True)
class KeylessPolicy:
    source: KeylessSource
    root: TrustedRoot


def _timestamp(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _validity(raw: object) -> Validity:
    raw = raw if isinstance(raw, dict) else {}
    return Validity(_timestamp(raw.get("start")), _timestamp(raw.get("end")))


def load_trusted_root(document: bytes, source: str) -> TrustedRoot:
    """The CAs and transparency logs of a Sigstore ``trusted_root.json``."""
    if len(document) > MAX_TRUSTED_ROOT_BYTES:
        raise TrustedRootProblem(f"{source} is over {MAX_TRUSTED_ROOT_BYTES} bytes")
    try:
        root = json.loads(document)
        authorities = []
        for entry in (root.get("certificateAuthorities") or [])[:MAX_AUTHORITIES]:
            raw_chain = entry["certChain"]["certificates"][:MAX_CHAIN]
            chain = tuple(x509.load_der_x509_certificate(base64.b64decode(c["rawBytes"])) for c in raw_chain)
            if chain:
                authorities.append(Authority(chain, _validity(entry.get("validFor"))))
        logs = []
        for entry in (root.get("tlogs") or [])[:MAX_AUTHORITIES]:
            key = serialization.load_der_public_key(base64.b64decode(entry["publicKey"]["rawBytes"]))
            if not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
                raise TrustedRootProblem(f"{source} lists a transparency log with a {type(key).__name__} key")
            key_id = base64.b64decode(entry["logId"]["keyId"])
            logs.append(TransparencyLog(key_id, key, _validity(entry["publicKey"].get("validFor"))))
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as error:
        raise TrustedRootProblem(f"{source} is not a Sigstore trusted root ({type(error).__name__}: {error})") from None
    if not authorities:
        raise TrustedRootProblem(f"{source} lists no certificate authority")
    return TrustedRoot(source, tuple(authorities), tuple(logs))


@cache
def _re2_options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False
    options.max_mem = 1 << 20  # a user's pattern: a bounded automaton
    return options


def identity_pattern_error(pattern: str) -> str | None:
    """Why RE2 refuses ``pattern``, or None."""
    try:
        re2.compile(pattern, _re2_options())
    except re2.error as error:
        reason = error.args[0] if error.args else ""
        return reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
    return None


def _identity_matches(source: KeylessSource, names: Sequence[str]) -> bool:
    if source.identity is not None:
        return source.identity in names
    pattern = re2.compile(source.identity_regexp or "", _re2_options())
    return any(pattern.fullmatch(name) is not None for name in names)


def certificate_identities(certificate: x509.Certificate) -> list[str]:
    """The email addresses and URIs of the certificate's subject alternative names."""
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [*names.get_values_for_type(x509.RFC822Name), *names.get_values_for_type(x509.UniformResourceIdentifier)]


def certificate_issuer(certificate: x509.Certificate) -> str | None:
    """The OIDC issuer Fulcio recorded: the DER UTF8String of extension .1.8, else the raw bytes of legacy .1.1."""
    for extension in certificate.extensions:
        if extension.oid == ISSUER_OID and isinstance(extension.value, x509.UnrecognizedExtension):
            return _der_utf8_string(extension.value.value)
    for extension in certificate.extensions:
        if extension.oid == LEGACY_ISSUER_OID and isinstance(extension.value, x509.UnrecognizedExtension):
            return extension.value.value.decode(errors="replace")
    return None


def _der_utf8_string(der: bytes) -> str | None:
    if len(der) < 2 or der[0] != 0x0C:
        return None
    length, start = der[1], 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 3 or len(der) < 2 + count:
            return None
        length, start = int.from_bytes(der[2 : 2 + count], "big"), 2 + count
    if start + length != len(der):
        return None
    return der[start:].decode(errors="replace")


@record(frozen=True)
class KeylessBundle:
    leaf: x509.Certificate
    signatures: tuple[str, ...]
    """The DSSE signatures (base64)."""
    message: bytes
    """The DSSE pre-authentication encoding signed."""
    names: str
    """The digest the in-toto subject names."""
    tlog_entries: tuple[dict[str, Any], ...]


def parse_bundle(bundle: bytes) -> KeylessBundle | None:
    """A Sigstore bundle with a certificate and cosign's DSSE signature of an image; None for anything else."""
    try:
        document = json.loads(bundle)
        material = document["verificationMaterial"]
        if "certificate" in material:
            raw = material["certificate"]["rawBytes"]
        elif "x509CertificateChain" in material:
            raw = material["x509CertificateChain"]["certificates"][0]["rawBytes"]
        else:
            return None
        leaf = x509.load_der_x509_certificate(base64.b64decode(raw))
        envelope = document["dsseEnvelope"]
        if envelope.get("payloadType") != IN_TOTO:
            return None
        payload = base64.b64decode(envelope["payload"], validate=True)
        statement = json.loads(payload)
        if statement.get("predicateType") != COSIGN_SIGN_PREDICATE:
            return None
        subjects = [s["digest"]["sha256"] for s in statement.get("subject") or [] if isinstance(s, dict)]
        signatures = tuple(str(e["sig"]) for e in envelope.get("signatures") or [] if isinstance(e, dict))
        entries = tuple(e for e in material.get("tlogEntries") or [] if isinstance(e, dict))[:MAX_TLOG_ENTRIES]
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, binascii.Error):
        return None
    if len(subjects) != 1 or not signatures:
        return None
    return KeylessBundle(leaf, signatures, pae(IN_TOTO, payload), f"sha256:{subjects[0]}", entries)


def parse_tagged(item: SignedPayload) -> KeylessBundle | None:
    """The ``.sig`` layout's keyless signature: a simple signing payload, its certificate annotation (PEM) and
    its transparency-log entry annotation (``{"SignedEntryTimestamp", "Payload": {body, integratedTime, logIndex,
    logID}}``), in the bundle's shape; None without a certificate."""
    names = signed_digest(item.payload)
    if item.certificate is None or names is None:
        return None
    try:
        leaf = x509.load_pem_x509_certificate(item.certificate.encode())
        entries: tuple[dict[str, Any], ...] = ()
        if item.log_entry is not None:
            logged = json.loads(item.log_entry)
            entry = logged["Payload"]
            entries = ({
                "logId": {"keyId": base64.b64encode(bytes.fromhex(str(entry["logID"]))).decode()},
                "canonicalizedBody": entry["body"], "integratedTime": entry["integratedTime"],
                "logIndex": entry["logIndex"],
                "inclusionPromise": {"signedEntryTimestamp": logged["SignedEntryTimestamp"]},
            },)  # fmt: skip
    except (ValueError, KeyError, TypeError):
        return None
    return KeylessBundle(leaf, (item.signature,), item.payload, names, entries)


def _verifies(key: object, signature: bytes, message: bytes) -> bool:
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            algorithm = hashes.SHA384() if key.curve.key_size >= 384 else hashes.SHA256()
            key.verify(signature, message, ec.ECDSA(algorithm))
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
        else:
            return False
    except InvalidSignature:
        return False
    return True


def _signed_signature(key: object, message: bytes, signatures: Sequence[str]) -> str | None:
    """The first of ``signatures`` (base64) over ``message`` by ``key``."""
    for signature in signatures:
        try:
            raw = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            continue
        if _verifies(key, raw, message):
            return signature
    return None


def _body_carries(body: dict[str, Any], signature: str) -> bool:
    """Whether a Rekor entry body (``dsse`` or ``hashedrekord``) records this signature."""
    spec = body.get("spec") or {}
    if body.get("kind") == "dsse":
        return any(isinstance(s, dict) and s.get("signature") == signature for s in spec.get("signatures") or [])
    if body.get("kind") == "hashedrekord":
        return bool((spec.get("signature") or {}).get("content") == signature)
    return False


def _logged_time(root: TrustedRoot, entries: Sequence[dict[str, Any]], signature: str) -> datetime | None:
    """The integrated time of the first entry whose signed entry timestamp verifies with a log of the trusted root
    (valid then) and whose body records ``signature``."""
    for entry in entries:
        try:
            key_id = base64.b64decode(entry["logId"]["keyId"])
            body_b64 = str(entry["canonicalizedBody"])
            integrated, index = int(entry["integratedTime"]), int(entry["logIndex"])
            promise = base64.b64decode(entry["inclusionPromise"]["signedEntryTimestamp"])
            body = json.loads(base64.b64decode(body_b64))
        except (ValueError, KeyError, TypeError, binascii.Error):
            continue
        if not isinstance(body, dict) or not _body_carries(body, signature):
            continue
        moment = datetime.fromtimestamp(integrated, UTC)
        signed = json.dumps({"body": body_b64, "integratedTime": integrated, "logID": key_id.hex(), "logIndex": index},
                            sort_keys=True, separators=(",", ":")).encode()  # fmt: skip
        for log in root.logs:
            if log.key_id == key_id and log.validity.covers(moment) and _verifies(log.public_key, promise, signed):
                return moment
    return None


def _valid_at(certificate: x509.Certificate, moment: datetime) -> bool:
    return certificate.not_valid_before_utc <= moment <= certificate.not_valid_after_utc


def _chains(leaf: x509.Certificate, authority: Authority, moment: datetime) -> bool:
    if not authority.validity.covers(moment):
        return False
    issued = leaf
    for issuer in authority.chain:
        try:
            issued.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            return False
        issued = issuer
    return all(_valid_at(certificate, moment) for certificate in (leaf, *authority.chain))


def _code_signing(leaf: x509.Certificate) -> bool:
    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return ExtendedKeyUsageOID.CODE_SIGNING in usages


def verify_bundle(bundle: KeylessBundle, digest: str, policy: KeylessPolicy, now: datetime) -> str:
    """The identity that signed ``digest``, or ``KeylessRefused`` saying why this bundle does not prove it."""
    source, root = policy.source, policy.root
    if bundle.names != digest:
        raise KeylessRefused("SignatureInvalid", f"a keyless signature is of {bundle.names}, not {digest}")
    signature = _signed_signature(bundle.leaf.public_key(), bundle.message, bundle.signatures)
    if signature is None:
        raise KeylessRefused("SignatureInvalid", "a keyless signature does not verify with its certificate's key")
    moment, when = now, "now (no transparency log of the trusted root proves when it signed)"
    if root.logs:
        logged = _logged_time(root, bundle.tlog_entries, signature)
        if logged is None:
            raise KeylessRefused(TRANSPARENCY_LOG_UNVERIFIED, f"a keyless signature has no transparency-log entry "
                                 f"signed by a log of {root.source}")  # fmt: skip
        moment, when = logged, "at the signing time the transparency log records"
    if not _code_signing(bundle.leaf) or not any(_chains(bundle.leaf, a, moment) for a in root.authorities):
        raise KeylessRefused(CERTIFICATE_UNTRUSTED, f"a keyless signature's certificate (issued by "
                             f"{bundle.leaf.issuer.rfc4514_string()}) does not chain to a code-signing CA of "
                             f"{root.source} valid {when}, {moment.isoformat()}")  # fmt: skip
    names, issuer = certificate_identities(bundle.leaf), certificate_issuer(bundle.leaf)
    if not _identity_matches(source, names) or issuer != source.issuer:
        raise KeylessRefused(CERTIFICATE_IDENTITY_MISMATCH, f"a keyless signature is by {', '.join(names) or '?'} "
                             f"from issuer {issuer or '?'}, not {source.wanted}")  # fmt: skip
    return source.identity if source.identity is not None else next(n for n in names if _identity_matches(source, [n]))


REFUSAL_ORDER = ("SignatureInvalid", TRANSPARENCY_LOG_UNVERIFIED, CERTIFICATE_UNTRUSTED, CERTIFICATE_IDENTITY_MISMATCH)
"""The most telling refusal wins when several bundles are refused: the one that got furthest."""


def keyless_candidates(signed: Sequence[SignedPayload]) -> list[KeylessBundle]:
    """The keyless signatures among those found: Sigstore bundles with a certificate (each once), and ``.sig``
    layers with a certificate annotation."""
    found: list[KeylessBundle] = []
    seen: set[bytes] = set()
    for item in signed:
        if item.bundle is not None:
            if item.bundle in seen:
                continue
            seen.add(item.bundle)
            parsed = parse_bundle(item.bundle)
        else:
            parsed = parse_tagged(item)
        if parsed is not None:
            found.append(parsed)
    return found


def judge_keyless(
    digest: str, reference: str, signed: Sequence[SignedPayload], policy: KeylessPolicy, now: datetime | None = None
) -> tuple[str | None, str, str]:
    """(signer, reason, message): the identity when one keyless signature proves ``digest`` signed under the
    policy, else None with the furthest refusal's reason and message."""
    moment = now or datetime.now(UTC)
    refusals: list[KeylessRefused] = []
    for parsed in keyless_candidates(signed):
        try:
            return verify_bundle(parsed, digest, policy, moment), "", ""
        except KeylessRefused as refused:
            refusals.append(refused)
        except (ValueError, UnsupportedAlgorithm) as error:  # a certificate's key or extensions that do not parse
            refusals.append(KeylessRefused("SignatureInvalid", f"a keyless signature's certificate is unusable "
                                           f"({error})"))  # fmt: skip
    if not refusals:
        return None, "SignatureInvalid", (f"none of the signatures of {reference} ({digest}) is a keyless one "
                                          f"(with a certificate): it is not delivered")  # fmt: skip
    furthest = max(refusals, key=lambda refused: REFUSAL_ORDER.index(refused.reason))
    return None, furthest.reason, f"{reference} ({digest}): {furthest}; it is not delivered"
