"""Keyless signatures made by the real cosign (v3) with a certificate from a test CA playing Fulcio, verified by
the agent's pulls offline against a test ``trusted_root.json`` in a ConfigMap.

cosign signs with a key and ``--certificate``/``--certificate-chain`` and ``--tlog-upload=false``: the certificate
goes into the Sigstore bundle (``x509CertificateChain``) or the ``.sig`` layer's certificate annotation. The test
trusted root lists the CA only, no transparency log, so the certificates are checked at the present time; the
transparency-log part (required when the trusted root lists logs) is covered by the unit tests, whose bundles are
built with ``cryptography``. The same trusted root is accepted by ``cosign verify --trusted-root`` (offline)."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import kr8s.asyncio
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from e2e.controlplane import ControlPlane
from e2e.cosign import Cosign, KeyPair, ensure_cosign
from e2e.kube import call, request
from e2e.oci_artifacts import push_rules
from e2e.registry import Registry, start_registry
from falco_operator.api.plain import Rulesfile
from falco_operator.artifacts import ArtifactKey, Unavailable
from tests.integration.agent_support import ARTIFACT_API
from tests.integration.test_oci_signatures import answer, failed, holds, running_pulls

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("crds")]
Json = dict[str, object]
IDENTITY = "https://github.com/acme/rules/.github/workflows/release.yml@refs/heads/main"
ISSUER = "https://token.actions.githubusercontent.com"


@pytest.fixture(scope="module")
def cosign(tmp_path_factory: pytest.TempPathFactory) -> Cosign:
    return Cosign(ensure_cosign(), tmp_path_factory.mktemp("cosign"))


@pytest.fixture(scope="module")
def signer(cosign: Cosign) -> KeyPair:
    return cosign.generate_key_pair("signer")


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    running = start_registry(tmp_path / "registry", tls=True, auth=False)
    try:
        yield running
    finally:
        running.stop()


@dataclass(frozen=True)
class SigningCA:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate


def make_ca(name: str, not_before: datetime, not_after: datetime) -> SigningCA:
    key = ec.generate_private_key(ec.SECP384R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA384())
    )  # fmt: skip
    return SigningCA(key, certificate)


def certify(ca: SigningCA, key: KeyPair, directory: Path, identity: str = IDENTITY, issuer: str = ISSUER,
            lifetime: timedelta = timedelta(minutes=10)) -> Path:  # fmt: skip
    """A Fulcio-like leaf for the cosign key pair (cosign refuses a certificate of another key): the identity as
    a URI SAN, code signing, and the issuer in both Fulcio extensions (1.8 DER, 1.1 raw, as Fulcio writes)."""
    public = serialization.load_pem_public_key(key.public.read_bytes())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    now = datetime.now(UTC)
    raw = issuer.encode()
    leaf = (
        x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(ca.certificate.subject).public_key(public)
        .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + lifetime)
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .add_extension(x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.57264.1.8"),
                                                  bytes([0x0C, len(raw)]) + raw), critical=False)
        .add_extension(x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.57264.1.1"), raw), critical=False)
        .sign(ca.key, hashes.SHA384())
    )  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (directory / "chain.pem").write_bytes(ca.certificate.public_bytes(serialization.Encoding.PEM))
    return directory


def trusted_root(cas: list[tuple[SigningCA, str | None]]) -> str:
    """The CAs, each with the end of its validity in the trusted root (None: still in use)."""

    def der(certificate: x509.Certificate) -> str:
        return base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()

    return json.dumps({
        "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "certificateAuthorities": [
            {"subject": {"organization": "test", "commonName": "test-fulcio"}, "uri": "https://fulcio.test",
             "certChain": {"certificates": [{"rawBytes": der(ca.certificate)}]},
             "validFor": {"start": "2020-01-01T00:00:00Z", **({"end": end} if end else {})}} for ca, end in cas
        ],
        "tlogs": [], "ctlogs": [], "timestampAuthorities": [],
    })  # fmt: skip


def sign_keyless(tool: Cosign, key: KeyPair, certificate: Path, image: str, ca: Path | None, tagged: bool) -> None:
    layout = ["--new-bundle-format=false"] if tagged else []
    tool.run("sign", "--key", str(key.private), "--certificate", str(certificate / "leaf.pem"),
               "--certificate-chain", str(certificate / "chain.pem"), "--tlog-upload=false",
               "--use-signing-config=false", "--allow-insecure-registry", *layout, image, ca=ca)  # fmt: skip


def keyless_rulesfile(name: str, host: str, repository: str, policy: Json) -> Json:
    oci: Json = {"image": {"repository": repository, "tag": "1"}, "registry": {"name": host},
                 "refreshInterval": "1m", "verify": {"keyless": policy}}  # fmt: skip
    return {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Rulesfile", "metadata": {"name": name},
            "spec": {"ociArtifact": oci}}  # fmt: skip


async def test_keyless_signatures_by_the_real_cosign(
    control_plane: ControlPlane, api: kr8s.asyncio.Api, namespace: str, tmp_path: Path, registry: Registry,
    cosign: Cosign, signer: KeyPair,
) -> None:  # fmt: skip
    now = datetime.now(UTC)
    fulcio = make_ca("test-fulcio", now - timedelta(days=1), now + timedelta(days=30))
    impostor = make_ca("test-fulcio", now - timedelta(days=1), now + timedelta(days=30))  # same name, other key
    retired = make_ca("retired-fulcio", now - timedelta(days=1), now + timedelta(days=30))
    root = trusted_root([(fulcio, None), (retired, "2021-01-01T00:00:00Z")])
    body = {"metadata": {"name": "sigstore"}, "data": {"trusted_root.json": root}}
    await call(api, "POST", f"/api/v1/namespaces/{namespace}/configmaps", body=body)
    root_file = tmp_path / "trusted_root.json"
    root_file.write_text(root)

    # cosign refuses to sign with a chain expired already: "expired" is a leaf that expires right after signing,
    # and with no transparency log to prove when it signed, the verification (later) refuses it.
    cases = {  # name: (CA, identity, issuer, .sig layout)
        "right": (fulcio, IDENTITY, ISSUER, False),
        "right-tagged": (fulcio, IDENTITY, ISSUER, True),
        "other-identity": (fulcio, "https://github.com/mallory/rules/.github/workflows/x.yml@refs/heads/main",
                           ISSUER, False),
        "other-issuer": (fulcio, IDENTITY, "https://gitlab.com", False),
        "other-ca": (impostor, IDENTITY, ISSUER, False),
        "expired": (fulcio, IDENTITY, ISSUER, True),
        "retired": (retired, IDENTITY, ISSUER, False),
    }  # fmt: skip
    contents: dict[str, bytes] = {}
    artifacts = []
    for name, (ca, identity, issuer, tagged) in cases.items():
        repository = f"t{secrets.token_hex(3)}/rules"
        contents[name] = f"- list: {name.replace('-', '_')}\n  items: []\n".encode()
        digest = push_rules(registry, repository, "1", contents[name])
        lifetime = timedelta(seconds=40) if name == "expired" else timedelta(minutes=10)
        certificate = certify(ca, signer, tmp_path / "certs" / name, identity, issuer, lifetime)
        sign_keyless(cosign, signer, certificate, f"{registry.host}/{repository}@{digest}", registry.ca, tagged)
        policy: Json = {"issuer": ISSUER, "trustedRoot": {"configMapRef": {"name": "sigstore"}}}
        if tagged:
            policy["identityRegexp"] = r"https://github\.com/acme/.*"
        else:
            policy["identity"] = IDENTITY
        artifacts.append(Rulesfile.from_wire(keyless_rulesfile(name, registry.host, repository, policy)))
        if name == "right-tagged":  # the test trusted root is one cosign itself accepts, offline
            cosign.run("verify", "--trusted-root", str(root_file), "--certificate-identity", IDENTITY,
                       "--certificate-oidc-issuer", ISSUER, "--insecure-ignore-tlog=true", "--insecure-ignore-sct=true",
                       "--new-bundle-format=false", "--allow-insecure-registry",
                       f"{registry.host}/{repository}@{digest}", ca=registry.ca)  # fmt: skip

    leaf = x509.load_pem_x509_certificate((tmp_path / "certs" / "expired" / "leaf.pem").read_bytes())
    await anyio.sleep(max(0.0, (leaf.not_valid_after_utc - datetime.now(UTC)).total_seconds() + 1))
    async with running_pulls(control_plane, namespace, tmp_path / "cache", registry) as pulls:
        pulls.want(artifacts)
        for name in ("right", "right-tagged"):
            await answer(pulls, name, holds(contents[name]), f"{name}: verified keyless")
            assert pulls.signers()[ArtifactKey("Rulesfile", name)][1] == IDENTITY
        for name, reason in (("other-identity", "CertificateIdentityMismatch"),
                             ("other-issuer", "CertificateIdentityMismatch"),
                             ("other-ca", "CertificateUntrusted"), ("expired", "CertificateUntrusted"),
                             ("retired", "CertificateUntrusted")):  # fmt: skip
            refused = await answer(pulls, name, failed(reason), f"{name}: refused with {reason}")
            assert isinstance(refused, Unavailable)
            assert "it is not delivered" in refused.message

    policy = {"identity": IDENTITY, "identityRegexp": ".*", "issuer": ISSUER,
              "trustedRoot": {"configMapRef": {"name": "sigstore"}}}  # fmt: skip
    both = keyless_rulesfile("refused", registry.host, "x/rules", policy)
    status, answer_body = await request(api, "POST", f"{ARTIFACT_API}/namespaces/{namespace}/rulesfiles", body=both)
    assert status == 422, answer_body
    assert "exactly one of identity and identityRegexp" in json.dumps(answer_body)
