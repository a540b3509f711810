"""Certificates for the DANE tests: private CAs, intermediates and server certificates made on the spot, and
the TLSA records (RFC 6698 section 2.1) that name them."""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from postoffice.mailauth.dane import Tlsa

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)


@dataclass
class Issued:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: PrivateKey

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def spki(self) -> bytes:
        return self.cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def new_key(kind: str = "ec") -> PrivateKey:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    # PrintableString country and organisation, like the public CAs' names: the DANE-TA stand-in anchor
    # must keep the encoding for the issuer name to match
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "NL", _ASN1Type.PrintableString),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test", _ASN1Type.PrintableString),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _sign(builder: x509.CertificateBuilder, key: PrivateKey) -> x509.Certificate:
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm)


def make_ca(
    common_name: str,
    issuer: Issued | None = None,
    *,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
    kind: str = "ec",
) -> Issued:
    """A CA certificate: self-signed (a root) without `issuer`, else an intermediate signed by it."""
    key = new_key(kind)
    subject = _name(common_name)
    signer_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - DAY)
        .not_valid_after(not_after or NOW + 30 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()), critical=False
        )
    )
    return Issued(_sign(builder, signer_key), key)


def make_server(
    names: list[str],
    issuer: Issued | None = None,
    *,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
    kind: str = "ec",
    key: PrivateKey | None = None,
    authority_key_id: bool = True,
    common_name: str = "",
) -> Issued:
    """A server certificate for `names` (DNS subjectAltNames; none when empty); self-signed without
    `issuer`. `authority_key_id=False` leaves out that extension, as some private CAs do; `common_name`: the
    subject's (default: the first name)."""
    key = key or new_key(kind)
    common_name = common_name or (names[0] if names else "server")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    signer_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - DAY)
        .not_valid_after(not_after or NOW + 30 * DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    )
    if authority_key_id:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()), critical=False
        )
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name) for name in names]), critical=False
        )
    return Issued(_sign(builder, signer_key), key)


def tlsa(usage: int, selector: int, matching: int, issued: Issued) -> Tlsa:
    """The TLSA record of `issued` with these parameters."""
    selected = issued.der if selector == 0 else issued.spki
    data = {0: selected, 1: hashlib.sha256(selected).digest(), 2: hashlib.sha512(selected).digest()}[matching]
    return Tlsa(usage, selector, matching, data)


def tlsa_text(record: Tlsa) -> str:
    """The record's rdata in zone-file form."""
    return f"{record.usage} {record.selector} {record.matching} {record.data.hex()}"


def write_chain(directory: Path, leaf: Issued, *chain: Issued) -> tuple[Path, Path]:
    """PEM files for `ssl.SSLContext.load_cert_chain`: the leaf and the chain after it; the leaf's key."""
    cert_file = directory / "chain.pem"
    key_file = directory / "key.pem"
    cert_file.write_bytes(leaf.pem() + b"".join(issued.pem() for issued in chain))
    key_file.write_bytes(leaf.key_pem())
    return cert_file, key_file
