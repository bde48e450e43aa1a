"""cosign's simple signing layout judged with real keys (ECDSA P-256, Ed25519), and the keys refused."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from falco_operator.api import Falco, Rulesfile
from falco_operator.artifacts.oci.signatures import (
    BUNDLE,
    SIGNATURE_ANNOTATION,
    SIMPLE_SIGNING,
    KeyProblem,
    SignedPayload,
    bundle_signatures,
    judge,
    key_fingerprint,
    load_key,
    pae,
    referrers_tag,
    signature_layers,
    signature_tag,
    signed_digest,
)
from falco_operator.instance.rbac import artifact_references

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32
PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def payload(digest: str) -> bytes:
    critical = {"identity": {"docker-reference": "r.example/rules"}, "image": {"docker-manifest-digest": digest},
                "type": "cosign container image signature"}  # fmt: skip
    return json.dumps({"critical": critical, "optional": None}).encode()


def sign(key: PrivateKey, data: bytes) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return base64.b64encode(key.sign(data, ec.ECDSA(hashes.SHA256()))).decode()
    return base64.b64encode(key.sign(data)).decode()


def pem(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def new_key(algorithm: str) -> PrivateKey:
    if algorithm == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP256R1())


KEYS = ("ecdsa-p256", "ed25519")


@pytest.mark.parametrize("algorithm", KEYS)
def test_a_signature_by_the_key_of_the_digest_verifies_and_nothing_else_does(algorithm: str) -> None:
    signer, stranger = new_key(algorithm), new_key(algorithm)
    key = load_key(pem(signer), "ConfigMap k (key cosign.pub)")
    assert key.fingerprint == key_fingerprint(signer.public_key())
    good = SignedPayload(payload(DIGEST), sign(signer, payload(DIGEST)))
    assert judge(DIGEST, "r/x:1", [good], key) == (True, "")

    by_stranger = SignedPayload(payload(DIGEST), sign(stranger, payload(DIGEST)))
    verified, why = judge(DIGEST, "r/x:1", [by_stranger], key)
    assert not verified
    assert "none of the 1 signature(s)" in why
    assert key.fingerprint in why

    of_other_digest = SignedPayload(payload(OTHER), sign(signer, payload(OTHER)))
    verified, why = judge(DIGEST, "r/x:1", [of_other_digest], key)
    assert not verified
    assert f"is of {OTHER}" in why

    tampered = SignedPayload(payload(DIGEST).replace(b"rules", b"rulez"), good.signature)
    assert not judge(DIGEST, "r/x:1", [tampered], key)[0]
    assert not judge(DIGEST, "r/x:1", [SignedPayload(payload(DIGEST), "not base64!")], key)[0]
    assert judge(DIGEST, "r/x:1", [by_stranger, of_other_digest, good], key)[0], "one good signature is enough"


def test_keys_other_than_p256_and_ed25519_are_refused() -> None:
    with pytest.raises(KeyProblem, match="P-256"):
        load_key(pem(ec.generate_private_key(ec.SECP384R1())), "k")
    rsa_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)  # fmt: skip
    with pytest.raises(KeyProblem, match="only ECDSA P-256 and Ed25519"):
        load_key(rsa_pem, "k")
    with pytest.raises(KeyProblem, match="does not hold a PEM public key"):
        load_key(b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n", "k")


def test_the_signature_manifest_layout() -> None:
    assert signature_tag(DIGEST) == f"sha256-{'ab' * 32}.sig"
    manifest = {"layers": [
        {"mediaType": SIMPLE_SIGNING, "digest": "sha256:1", "size": 10, "annotations": {SIGNATURE_ANNOTATION: "c2ln"}},
        {"mediaType": SIMPLE_SIGNING, "digest": "sha256:2", "size": 10},  # no signature
        {"mediaType": "application/other", "digest": "sha256:3", "size": 10,
         "annotations": {SIGNATURE_ANNOTATION: "x"}},
    ]}  # fmt: skip
    assert signature_layers(manifest) == [("sha256:1", 10, "c2ln")]
    assert signed_digest(payload(DIGEST)) == DIGEST
    assert signed_digest(b'{"critical": {"type": "something else"}}') is None


def test_the_agents_are_granted_the_keys_named_by_artifacts_and_by_the_falco_policy() -> None:
    falco = Falco.model_validate({"metadata": {"name": "falco", "namespace": "ns"}, "spec": {
        "artifactVerification": {"key": {"configMapRef": {"name": "admin-key"}}}}})  # fmt: skip
    rulesfile = {
        "kind": "Rulesfile",
        "metadata": {"name": "r"},
        "spec": {
            "ociArtifact": {
                "reference": "r.example/rules:1",
                "verify": {"key": {"secretRef": {"name": "team-key", "key": "k.pem"}}},
            }
        },
    }
    references = artifact_references(falco, [rulesfile])
    assert (references.configmaps, references.secrets) == (("admin-key",), ("team-key",))
    parsed = Rulesfile.model_validate(rulesfile).spec.oci()
    assert parsed is not None
    assert parsed.verify is not None
    assert str(parsed.verify.key_source()) == "Secret team-key (key k.pem)"


def bundle(key: PrivateKey, digest: str, predicate: str = "https://sigstore.dev/cosign/sign/v1") -> bytes:
    statement = json.dumps({"_type": "https://in-toto.io/Statement/v1", "predicateType": predicate, "predicate": {},
                            "subject": [{"digest": {"sha256": digest.partition(":")[2]}}]}).encode()  # fmt: skip
    signature = sign(key, pae("application/vnd.in-toto+json", statement))
    envelope = {"payload": base64.b64encode(statement).decode(), "payloadType": "application/vnd.in-toto+json",
                "signatures": [{"sig": signature}]}  # fmt: skip
    return json.dumps({"mediaType": BUNDLE, "dsseEnvelope": envelope}).encode()


@pytest.mark.parametrize("algorithm", KEYS)
def test_a_sigstore_bundle_verifies_over_the_dsse_encoding_for_the_digest_its_subject_names(algorithm: str) -> None:
    signer = new_key(algorithm)
    key = load_key(pem(signer), "k")
    assert pae("t", b"ab") == b"DSSEv1 1 t 2 ab"
    assert judge(DIGEST, "r/x:1", bundle_signatures(bundle(signer, DIGEST)), key) == (True, "")
    verified, why = judge(DIGEST, "r/x:1", bundle_signatures(bundle(signer, OTHER)), key)
    assert not verified
    assert f"is of {OTHER}" in why
    assert bundle_signatures(bundle(signer, DIGEST, predicate="https://slsa.dev/provenance/v1")) == [], (
        "an attestation is no signature of the image"
    )
    assert referrers_tag(DIGEST) == f"sha256-{'ab' * 32}"
