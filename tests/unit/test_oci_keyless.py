"""Keyless verification against a test CA playing Fulcio, a test trusted root and a test transparency-log key.

The bundles are built here with ``cryptography`` as cosign v3 writes them (Sigstore bundle v0.3: a leaf certificate,
a DSSE envelope of cosign's in-toto statement, a ``dsse`` Rekor entry with its signed entry timestamp)."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from falco_operator.api import Falco
from falco_operator.api.oci import Verification
from falco_operator.api.ocirefs import KeylessSource
from falco_operator.artifacts.oci.keyless import (
    CERTIFICATE_IDENTITY_MISMATCH,
    CERTIFICATE_UNTRUSTED,
    TRANSPARENCY_LOG_UNVERIFIED,
    KeylessPolicy,
    TrustedRootProblem,
    certificate_issuer,
    identity_pattern_error,
    load_trusted_root,
)
from falco_operator.artifacts.oci.keyless import (
    judge_keyless as judge_signed,
)
from falco_operator.artifacts.oci.signatures import (
    COSIGN_SIGN_PREDICATE,
    IN_TOTO,
    SignedPayload,
    bundle_signatures,
    pae,
)
from falco_operator.instance.rbac import artifact_references

DIGEST = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64
IDENTITY = "https://github.com/acme/rules/.github/workflows/release.yml@refs/heads/main"
ISSUER = "https://token.actions.githubusercontent.com"
SIGNED_AT = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
NOW = SIGNED_AT + timedelta(days=30)  # long after the leaf (valid 10 minutes) expired, as with Fulcio


@dataclass
class CA:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate


def make_ca(name: str, not_before: datetime = SIGNED_AT - timedelta(days=365), days: int = 3650) -> CA:
    key = ec.generate_private_key(ec.SECP384R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(not_before)
        .not_valid_after(not_before + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA384())
    )  # fmt: skip
    return CA(key, certificate)


def utf8_der(text: str) -> bytes:
    raw = text.encode()
    return bytes([0x0C, len(raw)]) + raw


Leaf = tuple[ec.EllipticCurvePrivateKey, x509.Certificate]


def make_leaf(ca: CA, identity: str = IDENTITY, issuer: str = ISSUER, email: bool = False,
              not_before: datetime = SIGNED_AT - timedelta(minutes=1)) -> Leaf:  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    name: x509.GeneralName = x509.RFC822Name(identity) if email else x509.UniformResourceIdentifier(identity)
    certificate = (
        x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(ca.certificate.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_before + timedelta(minutes=10))
        .add_extension(x509.SubjectAlternativeName([name]), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .add_extension(x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.57264.1.8"), utf8_der(issuer)),
                       critical=False)
        .sign(ca.key, hashes.SHA384())
    )  # fmt: skip
    return key, certificate


def der_b64(certificate: x509.Certificate) -> str:
    return base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()


class Log:
    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        der = self.key.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)  # fmt: skip
        self.der, self.key_id = der, hashlib.sha256(der).digest()

    def entry(self, signature: str, leaf: x509.Certificate, at: datetime, index: int = 7) -> dict[str, object]:
        verifier = base64.b64encode(leaf.public_bytes(serialization.Encoding.PEM)).decode()
        body = {"apiVersion": "0.0.1", "kind": "dsse",
                "spec": {"signatures": [{"signature": signature, "verifier": verifier}]}}  # fmt: skip
        body_b64 = base64.b64encode(json.dumps(body).encode()).decode()
        integrated = int(at.timestamp())
        signed = json.dumps({"body": body_b64, "integratedTime": integrated, "logID": self.key_id.hex(),
                             "logIndex": index}, sort_keys=True, separators=(",", ":")).encode()  # fmt: skip
        promise = self.key.sign(signed, ec.ECDSA(hashes.SHA256()))
        return {"logIndex": str(index), "logId": {"keyId": base64.b64encode(self.key_id).decode()},
                "kindVersion": {"kind": "dsse", "version": "0.0.1"}, "integratedTime": str(integrated),
                "inclusionPromise": {"signedEntryTimestamp": base64.b64encode(promise).decode()},
                "canonicalizedBody": body_b64}  # fmt: skip


def trusted_root(cas: list[CA], logs: list[Log]) -> bytes:
    document = {
        "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "certificateAuthorities": [
            {"subject": {"commonName": "test"}, "certChain": {"certificates": [{"rawBytes": der_b64(ca.certificate)}]},
             "validFor": {"start": "2020-01-01T00:00:00Z"}} for ca in cas
        ],
        "tlogs": [
            {"baseUrl": "https://rekor.test", "hashAlgorithm": "SHA2_256",
             "publicKey": {"rawBytes": base64.b64encode(log.der).decode(), "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                           "validFor": {"start": "2020-01-01T00:00:00Z"}},
             "logId": {"keyId": base64.b64encode(log.key_id).decode()}} for log in logs
        ],
    }  # fmt: skip
    return json.dumps(document).encode()


def make_bundle(key: ec.EllipticCurvePrivateKey, leaf: x509.Certificate, digest: str = DIGEST,
                log: Log | None = None, logged_at: datetime = SIGNED_AT) -> bytes:  # fmt: skip
    subject = {"name": "r", "digest": {"sha256": digest.partition(":")[2]}}
    statement = {"_type": "https://in-toto.io/Statement/v1", "predicateType": COSIGN_SIGN_PREDICATE,
                 "subject": [subject], "predicate": {}}  # fmt: skip
    payload = json.dumps(statement).encode()
    signature = base64.b64encode(key.sign(pae(IN_TOTO, payload), ec.ECDSA(hashes.SHA256()))).decode()
    entries = [log.entry(signature, leaf, logged_at)] if log else []
    document = {
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"certificate": {"rawBytes": der_b64(leaf)}, "tlogEntries": entries},
        "dsseEnvelope": {"payload": base64.b64encode(payload).decode(), "payloadType": IN_TOTO,
                         "signatures": [{"sig": signature}]},
    }  # fmt: skip
    return json.dumps(document).encode()


def judge_keyless(
    digest: str, reference: str, bundles: list[bytes], policy: KeylessPolicy, now: datetime
) -> tuple[str | None, str, str]:
    """The verdict on these bundles as the registry delivers them: one signed payload per DSSE signature."""
    return judge_signed(digest, reference, [item for raw in bundles for item in bundle_signatures(raw)], policy, now)


def policy(root: bytes, identity: str | None = IDENTITY, regexp: str | None = None,
           issuer: str = ISSUER) -> KeylessPolicy:  # fmt: skip
    source = KeylessSource("root", "trusted_root.json", identity, regexp, issuer)
    return KeylessPolicy(source, load_trusted_root(root, str(source)))


@pytest.fixture(scope="module")
def fulcio() -> CA:
    return make_ca("test-fulcio")


@pytest.fixture(scope="module")
def rekor() -> Log:
    return Log()


def test_right_identity_is_verified(fulcio: CA, rekor: Log) -> None:
    key, leaf = make_leaf(fulcio)
    bundle = make_bundle(key, leaf, log=rekor)
    root = trusted_root([fulcio], [rekor])
    assert judge_keyless(DIGEST, "r:1", [bundle], policy(root), NOW)[0] == IDENTITY
    signer, _, _ = judge_keyless(DIGEST, "r:1", [bundle], policy(root, None, r"https://github\.com/acme/.*"), NOW)
    assert signer == IDENTITY
    # the bundle as the registry's referrers deliver it: the key-based reader keeps it for the keyless check
    assert bundle_signatures(bundle)[0].bundle == bundle


def test_email_identity(fulcio: CA, rekor: Log) -> None:
    key, leaf = make_leaf(fulcio, "dev@example.com", "https://accounts.google.com", email=True)
    root = trusted_root([fulcio], [rekor])
    verdict = judge_keyless(DIGEST, "r:1", [make_bundle(key, leaf, log=rekor)],
                            policy(root, "dev@example.com", issuer="https://accounts.google.com"), NOW)  # fmt: skip
    assert verdict[0] == "dev@example.com"


def test_another_identity_is_refused(fulcio: CA, rekor: Log) -> None:
    key, leaf = make_leaf(fulcio, "https://github.com/mallory/rules/.github/workflows/x.yml@refs/heads/main")
    root = trusted_root([fulcio], [rekor])
    signer, reason, message = judge_keyless(DIGEST, "r:1", [make_bundle(key, leaf, log=rekor)], policy(root), NOW)
    assert (signer, reason) == (None, CERTIFICATE_IDENTITY_MISMATCH)
    assert "mallory" in message
    assert IDENTITY in message
    # a regexp matches the whole name: a prefix of it is not enough
    regexp = policy(root, None, r"https://github\.com/acme/rules")
    _, reason, _ = judge_keyless(DIGEST, "r:1", [make_bundle(*make_leaf(fulcio), log=rekor)], regexp, NOW)
    assert reason == CERTIFICATE_IDENTITY_MISMATCH


def test_another_issuer_is_refused(fulcio: CA, rekor: Log) -> None:
    key, leaf = make_leaf(fulcio, issuer="https://gitlab.com")
    root = trusted_root([fulcio], [rekor])
    signer, reason, message = judge_keyless(DIGEST, "r:1", [make_bundle(key, leaf, log=rekor)], policy(root), NOW)
    assert (signer, reason) == (None, CERTIFICATE_IDENTITY_MISMATCH)
    assert "https://gitlab.com" in message


def test_certificate_of_another_ca_is_refused(fulcio: CA, rekor: Log) -> None:
    impostor = make_ca("test-fulcio")  # the same name, another key
    key, leaf = make_leaf(impostor)
    root = trusted_root([fulcio], [rekor])
    signer, reason, _ = judge_keyless(DIGEST, "r:1", [make_bundle(key, leaf, log=rekor)], policy(root), NOW)
    assert (signer, reason) == (None, CERTIFICATE_UNTRUSTED)


def test_chain_expired_at_signing_time_is_refused(rekor: Log) -> None:
    expired = make_ca("old-fulcio", not_before=SIGNED_AT - timedelta(days=400), days=365)
    key, leaf = make_leaf(expired)
    root = trusted_root([expired], [rekor])
    signer, reason, _ = judge_keyless(DIGEST, "r:1", [make_bundle(key, leaf, log=rekor)], policy(root), NOW)
    assert (signer, reason) == (None, CERTIFICATE_UNTRUSTED)


def test_leaf_outside_its_validity_at_the_logged_time_is_refused(fulcio: CA, rekor: Log) -> None:
    key, leaf = make_leaf(fulcio)
    logged_late = SIGNED_AT + timedelta(hours=1)  # the leaf lives 10 minutes
    root = trusted_root([fulcio], [rekor])
    bundle = make_bundle(key, leaf, log=rekor, logged_at=logged_late)
    assert judge_keyless(DIGEST, "r:1", [bundle], policy(root), NOW)[1] == CERTIFICATE_UNTRUSTED


def test_transparency_log_entry_is_required_when_the_root_lists_logs(fulcio: CA, rekor: Log) -> None:
    key, leaf = make_leaf(fulcio)
    root = trusted_root([fulcio], [rekor])
    assert judge_keyless(DIGEST, "r:1", [make_bundle(key, leaf)], policy(root), NOW)[1] == TRANSPARENCY_LOG_UNVERIFIED
    stranger = Log()
    by_stranger = make_bundle(key, leaf, log=stranger)
    assert judge_keyless(DIGEST, "r:1", [by_stranger], policy(root), NOW)[1] == TRANSPARENCY_LOG_UNVERIFIED
    # an entry whose promise was signed for another body
    good = json.loads(make_bundle(key, leaf, log=rekor))
    other = json.loads(make_bundle(key, leaf, log=rekor))
    good["verificationMaterial"]["tlogEntries"][0]["inclusionPromise"] = other["verificationMaterial"]["tlogEntries"][
        0
    ]["inclusionPromise"]
    forged = json.dumps(good).encode()
    assert judge_keyless(DIGEST, "r:1", [forged], policy(root), NOW)[1] == TRANSPARENCY_LOG_UNVERIFIED


def test_without_logs_the_certificates_must_be_valid_now(fulcio: CA) -> None:
    root = trusted_root([fulcio], [])
    key, fresh = make_leaf(fulcio, not_before=NOW - timedelta(minutes=1))
    assert judge_keyless(DIGEST, "r:1", [make_bundle(key, fresh)], policy(root), NOW)[0] == IDENTITY
    key, old = make_leaf(fulcio)
    assert judge_keyless(DIGEST, "r:1", [make_bundle(key, old)], policy(root), NOW)[1] == CERTIFICATE_UNTRUSTED


def test_signature_of_another_digest_or_tampered_is_refused(fulcio: CA, rekor: Log) -> None:
    key, leaf = make_leaf(fulcio)
    root = trusted_root([fulcio], [rekor])
    assert judge_keyless(DIGEST, "r:1", [make_bundle(key, leaf, OTHER, rekor)], policy(root), NOW)[1] == (
        "SignatureInvalid"
    )
    stranger, _ = make_leaf(fulcio)
    assert judge_keyless(DIGEST, "r:1", [make_bundle(stranger, leaf, log=rekor)], policy(root), NOW)[1] == (
        "SignatureInvalid"
    )
    # one good bundle among refused ones is enough
    good = make_bundle(key, leaf, log=rekor)
    assert judge_keyless(DIGEST, "r:1", [make_bundle(stranger, leaf, log=rekor), good], policy(root), NOW)[0]


def test_trusted_root_and_regexp_problems() -> None:
    with pytest.raises(TrustedRootProblem, match="no certificate authority"):
        load_trusted_root(b'{"certificateAuthorities": []}', "ConfigMap r")
    with pytest.raises(TrustedRootProblem, match="not a Sigstore trusted root"):
        load_trusted_root(b"not json", "ConfigMap r")
    assert identity_pattern_error(r"https://github\.com/.*") is None
    assert identity_pattern_error("(unclosed") is not None
    assert identity_pattern_error("(a)\\1") is not None, "backreferences are not RE2"


def test_legacy_issuer_extension(fulcio: CA) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(fulcio.certificate.subject)
        .public_key(key.public_key()).serial_number(1).not_valid_before(SIGNED_AT)
        .not_valid_after(SIGNED_AT + timedelta(minutes=10))
        .add_extension(x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.57264.1.1"), ISSUER.encode()),
                       critical=False)
        .sign(fulcio.key, hashes.SHA384())
    )  # fmt: skip
    assert certificate_issuer(certificate) == ISSUER


def test_policy_shape() -> None:
    root = {"configMapRef": {"name": "sigstore"}}
    keyless = Verification.model_validate({"keyless": {"identity": IDENTITY, "issuer": ISSUER, "trustedRoot": root}})
    source = keyless.key_source()
    assert isinstance(source, KeylessSource)
    assert (source.kind, source.name, source.key) == ("ConfigMap", "sigstore", "trusted_root.json")


def tagged_signature(key: ec.EllipticCurvePrivateKey, leaf: x509.Certificate, log: Log | None) -> SignedPayload:
    """A ``.sig`` layout layer: simple signing payload, certificate annotation, Rekor bundle annotation."""
    critical = {"identity": {"docker-reference": "r"}, "image": {"docker-manifest-digest": DIGEST},
                "type": "cosign container image signature"}  # fmt: skip
    payload = json.dumps({"critical": critical, "optional": None}).encode()
    signature = base64.b64encode(key.sign(payload, ec.ECDSA(hashes.SHA256()))).decode()
    entry = None
    if log is not None:
        logged = log.entry(signature, leaf, SIGNED_AT)
        body = json.loads(base64.b64decode(str(logged["canonicalizedBody"])))
        assert body["kind"] == "dsse"
        rekord = {"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": {"signature": {"content": signature}}}
        body_b64 = base64.b64encode(json.dumps(rekord).encode()).decode()
        integrated = int(SIGNED_AT.timestamp())
        signed = json.dumps({"body": body_b64, "integratedTime": integrated, "logID": log.key_id.hex(), "logIndex": 3},
                            sort_keys=True, separators=(",", ":")).encode()  # fmt: skip
        promise = base64.b64encode(log.key.sign(signed, ec.ECDSA(hashes.SHA256()))).decode()
        logged_payload = {"body": body_b64, "integratedTime": integrated, "logIndex": 3, "logID": log.key_id.hex()}
        entry = json.dumps({"SignedEntryTimestamp": promise, "Payload": logged_payload})
    certificate = leaf.public_bytes(serialization.Encoding.PEM).decode()
    return SignedPayload(payload, signature, certificate=certificate, log_entry=entry)


def test_sig_layout_with_certificate_annotation(fulcio: CA, rekor: Log) -> None:
    key, leaf = make_leaf(fulcio)
    root = policy(trusted_root([fulcio], [rekor]))
    assert judge_signed(DIGEST, "r:1", [tagged_signature(key, leaf, rekor)], root, NOW)[0] == IDENTITY
    assert judge_signed(DIGEST, "r:1", [tagged_signature(key, leaf, None)], root, NOW)[1] == (
        TRANSPARENCY_LOG_UNVERIFIED
    )
    other_key, other_leaf = make_leaf(fulcio, "https://example.com/other")
    assert judge_signed(DIGEST, "r:1", [tagged_signature(other_key, other_leaf, rekor)], root, NOW)[1] == (
        CERTIFICATE_IDENTITY_MISMATCH
    )


def test_the_agents_are_granted_the_trusted_root_config_maps_by_name() -> None:
    keyless = {"identity": IDENTITY, "issuer": ISSUER, "trustedRoot": {"configMapRef": {"name": "admin-root"}}}
    falco = Falco.model_validate({"metadata": {"name": "falco", "namespace": "ns"},
                                  "spec": {"artifactVerification": {"keyless": keyless}}})  # fmt: skip
    team = {**keyless, "trustedRoot": {"configMapRef": {"name": "team-root", "key": "root.json"}}}
    rulesfile = {"kind": "Rulesfile", "metadata": {"name": "r"},
                 "spec": {"ociArtifact": {"reference": "r.example/rules:1", "verify": {"keyless": team}}}}  # fmt: skip
    references = artifact_references(falco, [rulesfile])
    assert (references.configmaps, references.secrets) == (("admin-root", "team-root"), ())
