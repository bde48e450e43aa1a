"""Certificates and keys for the local control plane: one CA, serving and client certificates, SA keys."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=30)


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: KeyPair
    apiserver: KeyPair
    admin: KeyPair
    controller_manager: KeyPair
    scheduler: KeyPair
    service_account_key: Path
    service_account_pub: Path


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _issue(
    directory: Path,
    stem: str,
    subject: x509.Name,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    server_names: tuple[str, ...] = (),
    server_ips: tuple[str, ...] = (),
    client: bool = False,
) -> tuple[KeyPair, x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = (ca[0].subject, ca[1]) if ca else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
    )
    if ca is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [ExtendedKeyUsageOID.SERVER_AUTH]
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        alternative_names: list[x509.GeneralName] = [x509.DNSName(name) for name in server_names]
        alternative_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips]
        if alternative_names:
            builder = builder.add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
    cert = builder.sign(issuer_key, hashes.SHA256())
    pair = KeyPair(directory / f"{stem}.crt", directory / f"{stem}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(pair.key, key)
    return pair, cert, key


def create_pki(directory: Path) -> Pki:
    """Write a fresh CA and every certificate the control plane needs into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_pair, ca_cert, ca_key = _issue(directory, "ca", _name("falco-operator-e2e-ca"), None)
    ca = (ca_cert, ca_key)
    apiserver, _, _ = _issue(
        directory,
        "apiserver",
        _name("kube-apiserver"),
        ca,
        server_names=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"),
        server_ips=("127.0.0.1", "10.0.0.1"),
    )
    admin, _, _ = _issue(directory, "admin", _name("e2e-admin", "system:masters"), ca, client=True)
    controller_manager, _, _ = _issue(
        directory, "controller-manager", _name("system:kube-controller-manager"), ca, client=True
    )
    scheduler, _, _ = _issue(directory, "scheduler", _name("system:kube-scheduler"), ca, client=True)
    sa_key = ec.generate_private_key(ec.SECP256R1())
    sa_key_path = directory / "sa.key"
    sa_pub_path = directory / "sa.pub"
    _write_key(sa_key_path, sa_key)
    sa_pub_path.write_bytes(
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return Pki(ca_pair, apiserver, admin, controller_manager, scheduler, sa_key_path, sa_pub_path)


def create_server_pki(directory: Path, common_name: str) -> tuple[Path, KeyPair]:
    """A fresh CA and one server certificate for ``localhost`` and ``127.0.0.1`` (a loopback test server)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_pair, ca_cert, ca_key = _issue(directory, "ca", _name(f"{common_name}-ca"), None)
    server, _, _ = _issue(
        directory,
        "server",
        _name(common_name),
        (ca_cert, ca_key),
        server_names=("localhost",),
        server_ips=("127.0.0.1",),
    )
    return ca_pair.cert, server


def issue_client(directory: Path, ca: KeyPair, stem: str, common_name: str, organization: str | None = None) -> KeyPair:
    """A client certificate signed by an existing CA (``ca`` as files): a node's or a component's identity."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{ca.key}: the harness CA key is an EC key")
    directory.mkdir(parents=True, exist_ok=True)
    pair, _, _ = _issue(directory, stem, _name(common_name, organization), (ca_cert, ca_key), client=True)
    return pair
