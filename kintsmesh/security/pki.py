"""The installation's own certificate authority and the server certificates it signs (TLS for PostgreSQL
and the other listeners). Made with ``cryptography`` on the first ``stack up``; nothing is downloaded.
Clients verify servers against ``ca.pem`` (host names and addresses are in each certificate)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kintsmesh.security.secrets import create_once, private_folder

CA_DAYS = 3650
SERVER_DAYS = 825
LOCAL_HOSTS = ("localhost", "127.0.0.1")


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Kintsmesh installation")])


def certificate_authority(secrets: Path) -> KeyPair:
    """The local CA (created once): ``ca.pem`` is what every client trusts."""
    folder = private_folder(secrets)
    pair = KeyPair(folder / "ca.pem", folder / "ca.key")
    if pair.cert.exists() and pair.key.exists():
        return pair
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(timezone.utc)
    name = _name("Kintsmesh local CA")
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    create_once(pair.key, _pem_key(key))
    create_once(pair.cert, cert.public_bytes(serialization.Encoding.PEM))
    return pair


def server_certificate(secrets: Path, name: str, hosts: tuple[str, ...] = LOCAL_HOSTS,
                       client_auth: bool = False) -> KeyPair:
    """``<name>.pem`` / ``<name>.key``: a server certificate for ``hosts`` signed by the local CA (created once),
    its common name ``name``; with ``client_auth`` it also authenticates its holder as a client (mTLS)."""
    folder = private_folder(secrets)
    pair = KeyPair(folder / f"{name}.pem", folder / f"{name}.key")
    if pair.cert.exists() and pair.key.exists():
        return pair
    authority = certificate_authority(secrets)
    ca_key = serialization.load_pem_private_key(authority.key.read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(authority.cert.read_bytes())
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt.append(x509.DNSName(host))
    now = datetime.now(timezone.utc)
    usages = [ExtendedKeyUsageOID.SERVER_AUTH, *([ExtendedKeyUsageOID.CLIENT_AUTH] if client_auth else [])]
    cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=SERVER_DAYS))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .sign(ca_key, hashes.SHA256()))
    create_once(pair.key, _pem_key(key))
    create_once(pair.cert, cert.public_bytes(serialization.Encoding.PEM))
    return pair
