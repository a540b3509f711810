"""DANE for outbound SMTP: TLSA records for an MX host, and whether a server's certificate chain matches them.

What it implements
- RFC 7672 (SMTP security via opportunistic DANE TLS), with the TLSA record of RFC 6698, its updates in RFC
  7671 and the mnemonics of RFC 7218: DANE-TA(2), DANE-EE(3); Cert(0), SPKI(1); Full(0), SHA2-256(1),
  SHA2-512(2).
- `lookup` (RFC 7672 sections 2.2 and 2.2.3): the TLSA RRset at `_PORT._tcp.HOST`, only for a host that
  `smtp.mx` found through validated DNS (`Host.secure`: the MX RRset and the host's address records, RFC 7672
  section 2.2.1). Its verdict, `DaneHost.status`:
  - "none": DANE does not apply: an insecure host, an insecure TLSA answer, or a validated denial of TLSA
    records (NXDOMAIN or NODATA). TLS as before (opportunistic); MTA-STS may apply.
  - "authenticate": a validated RRset with usable records: TLS is mandatory and `check_chain` must accept the
    server's chain, or this host must not get the mail (RFC 7672 section 2.2: no fallback to cleartext, nor
    to TLS that is not authenticated).
  - "encrypt": a validated RRset whose records are all unusable: TLS is mandatory, without authentication
    (RFC 7672 section 2.2: the records show that the server does TLS).
  - "temporary": the TLSA lookup failed (SERVFAIL, which is what a validating resolver answers for bogus
    data, a timeout, no server): RFC 7672 sections 2.1.1 and 2.2 treat this host as unreachable for now. Do
    not connect to it at all (neither in cleartext nor with TLS); go on with the next MX host; when no host
    is left, the delivery is deferred (a temporary failure, retried later: never a bounce, never a
    delivery in cleartext).
- CNAMEs (RFC 7672 section 2.2.2, RFC 7671 section 7): when the host's address records came through CNAMEs
  (`Host.expanded_name`, validated like the rest), the TLSA records are looked up first at the expanded name
  and, when that gives no validated RRset (denial or insecure answer), at the host name as written in the MX
  record. A failure at the expanded name stops there ("temporary"), as Postfix does. The name where the
  RRset was found is the TLSA base domain (`DaneHost.base_domain`): it is the name to send as SNI. A CNAME at
  the TLSA name itself is followed by the resolver and must validate like the rest of the answer.
- `check_chain` (RFC 7672 section 3): the chain is authenticated when one usable record matches.
  - DANE-EE(3) (section 3.1.1): the leaf certificate (or its SubjectPublicKeyInfo) matches; nothing else is
    checked: not the names, not the validity dates, not who signed it (RFC 7671 section 5.1).
  - DANE-TA(2) (section 3.1.2): a certificate the server sent above the leaf matches (the record names a
    trust anchor, never the leaf), or a full certificate (2 0 0) or full public key (2 1 0) in the record is
    the anchor even when the server leaves it out. Then the leaf must chain up to that anchor, signature by
    signature, and carry one of `DaneHost.names` as a DNS subjectAltName (section 3.2.2: the MX host name
    and the TLSA base domain; wildcards in the leftmost label match). Validity dates are checked for the
    leaf and the intermediate certificates below the anchor, as in any path validation; not for the anchor
    itself, whose authority comes from the signed TLSA record and not from its dates (RFC 7671 section 5.2;
    Postfix and OpenSSL's DANE do the same). The path is checked by `cryptography.x509.verification`, with
    the anchor as the only trust store (rebuilt as a certificate of its own with the anchor's name and key:
    the dates and extensions of the anchor's certificate play no part, and the store never holds a public
    CA).
  - PKIX-TA(0) and PKIX-EE(1) are unusable for SMTP (section 3.1.3): MTAs agree on no set of public CAs.
    Records with other unknown usages, selectors or matching types, and digests of the wrong length, are
    unusable too (RFC 6698 section 4.1, RFC 7672 section 2.2).
- `peer_chain`: the chain as the server sent it, DER, leaf first (the certificates that take part are found
  by matching, whatever their order).

Choices
- DNSSEC is the resolver's (`net.dns.DnsResolver(dnssec=True)`, the AD bit): this module validates nothing
  itself, so the resolver must be one this host trusts.
- The reference identifiers are the MX host name and the TLSA base domain. RFC 7672 section 3.2.2 also lets
  a client accept the next-hop (recipient) domain; `lookup` does not know it, so a caller that wants it adds
  it to `DaneHost.names`.
- Digest agility (RFC 7671 section 9: prefer the strongest digest and ignore weaker ones when a server
  publishes several) is not done: any usable record that matches is enough. A server that publishes a SHA-256
  and a SHA-512 record of the same key is authenticated by either.

Not supported
- Raw public keys (RFC 7250) instead of certificates.
- DANE for SRV or any port/protocol other than `_PORT._tcp` (`port` is a parameter; the protocol is TCP).
- The mandatory-DANE policies of RFC 7672 section 6 and TLSRPT reports (RFC 8460): the caller's concern.
"""

from __future__ import annotations

import _ssl
import datetime
import hashlib
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import dns.exception
import dns.name
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509 import verification
from dns.rdtypes.ANY.TLSA import TLSA

from postoffice.net.dns import DnsResolver, DnsTemporaryFailure, NoSuchDomain
from postoffice.smtp.mx import Host

__all__ = ["DaneHost", "Tlsa", "check_chain", "classify", "lookup", "peer_chain", "usable"]

# RFC 7218 mnemonics
PKIX_TA, PKIX_EE, DANE_TA, DANE_EE = 0, 1, 2, 3
CERT, SPKI = 0, 1
FULL, SHA2_256, SHA2_512 = 0, 1, 2

_DIGEST_SIZES = {SHA2_256: 32, SHA2_512: 64}

Status = Literal["none", "authenticate", "encrypt", "temporary"]

# dnspython (2.8 and later) refuses a TLSA record whose data is not as long as its matching type's digest,
# and with it the whole response (a FormError, which comes out as a DNS failure: "temporary", the host never
# used). RFC 6698 section 4.1 and RFC 7672 section 2.2 make such a record unusable, nothing more: the others
# in the RRset decide, or TLS without authentication. So dnspython keeps it, and `usable` sets it aside.
if isinstance(getattr(TLSA, "_cert_length_by_mtype", None), dict):
    TLSA._cert_length_by_mtype = {}


@dataclass
class Tlsa:
    """One TLSA record (RFC 6698 section 2.1): certificate usage, selector, matching type, and the
    certificate association data."""

    usage: int
    selector: int
    matching: int
    data: bytes

    def __str__(self) -> str:
        """The presentation form, the data cut short ("3 1 1 2a2413f4...")."""
        data = self.data.hex()
        return f"{self.usage} {self.selector} {self.matching} {data[:16]}{'...' if len(data) > 16 else ''}"


@dataclass
class DaneHost:
    """What DANE asks of one MX host (see the module docstring for each `status`). `records`: the usable
    records (empty unless "authenticate"); `names`: the reference identifiers for DANE-TA(2) name checks;
    `text`: what was found, for logs and delivery notices; `base_domain`: the TLSA base domain, the server
    name to send in SNI when DANE applies ("" when it does not)."""

    status: Status
    records: list[Tlsa]
    names: list[str]
    text: str
    base_domain: str = ""
    #: every record of the validated RRset, usable or not (for logs)
    published: list[Tlsa] = field(default_factory=list)

    @property
    def tls_required(self) -> bool:
        """TLS is mandatory with this host ("authenticate" and "encrypt")."""
        return self.status in ("authenticate", "encrypt")


def usable(record: Tlsa) -> bool:
    """Whether an SMTP client can use the record (RFC 7672 section 3.1: DANE-TA(2) or DANE-EE(3); known
    selector and matching type; a digest of its algorithm's length; full data that is one DER element)."""
    if record.usage not in (DANE_TA, DANE_EE) or record.selector not in (CERT, SPKI):
        return False
    if record.matching == FULL:
        try:
            _tag, _start, end = _der_element(record.data, 0)
        except ValueError:
            return False
        return end == len(record.data)
    return _DIGEST_SIZES.get(record.matching) == len(record.data)


def classify(records: Iterable[Tlsa], names: Sequence[str], base_domain: str, where: str = "") -> DaneHost:
    """The verdict for a validated TLSA RRset: "authenticate" with its usable records, else "encrypt"."""
    published = list(records)
    good = [record for record in published if usable(record)]
    at = f" at {where}" if where else ""
    listed = ", ".join(str(record) for record in published)
    if good:
        text = f"DANE: usable TLSA records{at}: {', '.join(str(record) for record in good)}"
        return DaneHost("authenticate", good, list(names), text, base_domain, published)
    text = f"DANE: TLSA records{at} are all unusable ({listed}): TLS without authentication"
    return DaneHost("encrypt", [], list(names), text, base_domain, published)


async def lookup(resolver: DnsResolver, host: Host, port: int = 25) -> DaneHost:
    """What DANE asks of `host` for a connection to `port` (see the module docstring)."""
    if host.name.startswith("["):
        return DaneHost("none", [], [], f"DANE: {host.name} is an address literal")
    if not resolver.dnssec or not host.secure:
        return DaneHost(
            "none", [], [], f"DANE: the MX or address records of {host.name} are not DNSSEC-signed"
        )
    candidates = [host.expanded_name, host.name] if host.expanded_name else [host.name]
    seen: list[str] = []
    for base in candidates:
        try:
            qname = dns.name.from_text(f"_{port}._tcp.{base}")
        except dns.exception.DNSException:
            seen.append(f"_{port}._tcp.{base}: not a valid name")
            continue
        where = qname.to_text(omit_final_dot=True)
        try:
            rrset, secure = await resolver.query_checked(qname, "TLSA")
        except NoSuchDomain as exc:
            rrset, secure = None, exc.secure
        except DnsTemporaryFailure as exc:
            text = f"DANE: TLSA lookup failed, {host.name} must not be used now: {exc.text}"
            return DaneHost("temporary", [], [], text, base)
        if rrset is None:
            seen.append(f"{where}: {'validated denial' if secure else 'none (not DNSSEC-signed)'}")
            continue
        if not secure:
            seen.append(f"{where}: TLSA records not DNSSEC-signed")
            continue
        names = _unique([host.name.lower(), base.lower()])
        records = [Tlsa(int(r.usage), int(r.selector), int(r.mtype), bytes(r.cert)) for r in rrset]
        return classify(records, names, base, where)
    return DaneHost("none", [], [], f"DANE: no TLSA records for {host.name} ({'; '.join(seen)})")


def check_chain(
    dane: DaneHost, chain: Sequence[bytes], *, now: datetime.datetime | None = None
) -> str | None:
    """None when the server's chain (DER, leaf first, as sent) is authenticated by `dane`'s usable records;
    else why not, in a few words. `now` is the time for DANE-TA(2) validity checks (default: now)."""
    if dane.status != "authenticate" or not dane.records:
        return f"no usable TLSA records to authenticate with (DANE status {dane.status!r})"
    if not chain:
        return "the server sent no certificate"
    leaf = chain[0]
    for record in dane.records:
        if record.usage == DANE_EE and _matches(record, leaf):
            return None
    trust_anchors = [record for record in dane.records if record.usage == DANE_TA]
    if not trust_anchors:
        return f"the server's certificate matches no TLSA record ({_listed(dane.records)})"
    reason = _check_trust_anchor(trust_anchors, chain, dane.names, now or _now())
    if reason is None:
        return None
    if any(record.usage == DANE_EE for record in dane.records):
        return f"the server's certificate matches no DANE-EE record, and DANE-TA: {reason}"
    return f"DANE-TA: {reason}"


def peer_chain(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> list[bytes]:
    """The certificates the server sent, DER, leaf first (for `check_chain`). Python 3.13 has a public
    `get_unverified_chain`; before, the C object behind the SSL object has it (OpenSSL's
    SSL_get_peer_cert_chain); else only the leaf can be had. Empty when the server sent none."""
    public = getattr(ssl_object, "get_unverified_chain", None)
    if public is not None:
        return [bytes(cert) for cert in public() or []]
    inner = getattr(ssl_object, "_sslobj", None)
    private = getattr(inner, "get_unverified_chain", None)
    if private is not None:
        certs = private() or []
        return [cert.public_bytes(_ssl.ENCODING_DER) for cert in certs]
    leaf = ssl_object.getpeercert(binary_form=True)
    return [leaf] if leaf else []


# --- matching ---------------------------------------------------------------------------------------------


def _matches(record: Tlsa, cert: bytes) -> bool:
    """RFC 6698 section 2.1.2/2.1.3: the selected part of `cert` (DER), as is or digested, equals the data."""
    if record.selector == CERT:
        selected = cert
    else:
        try:
            selected = _spki(cert)
        except ValueError:
            return False
    if record.matching == FULL:
        return selected == record.data
    if record.matching == SHA2_256:
        return hashlib.sha256(selected).digest() == record.data
    if record.matching == SHA2_512:
        return hashlib.sha512(selected).digest() == record.data
    return False


def _der_element(data: bytes, offset: int) -> tuple[int, int, int]:
    """The DER element at `offset`: (tag, start of its contents, end). ValueError when it is not one."""
    if offset + 2 > len(data):
        raise ValueError("truncated DER")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise ValueError("multi-byte DER tag")
    length = data[offset + 1]
    start = offset + 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or start + count > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[start : start + count], "big")
        start += count
    end = start + length
    if end > len(data):
        raise ValueError("truncated DER")
    return tag, start, end


def _spki(cert: bytes) -> bytes:
    """The SubjectPublicKeyInfo of a DER certificate, byte for byte as the certificate holds it (RFC 5280
    section 4.1: Certificate = SEQUENCE {tbsCertificate SEQUENCE {[0] version OPTIONAL, serialNumber,
    signature, issuer, validity, subject, subjectPublicKeyInfo, ...}, ...}). Re-encoding the parsed key
    could differ from what the server's operator hashed, so it is cut out, not rebuilt."""
    tag, start, _ = _der_element(cert, 0)
    if tag != 0x30:
        raise ValueError("not a certificate")
    tag, position, tbs_end = _der_element(cert, start)
    if tag != 0x30:
        raise ValueError("not a certificate")
    tag, _, end = _der_element(cert, position)
    if tag == 0xA0:  # explicit version
        position = end
    for expected in (0x02, 0x30, 0x30, 0x30, 0x30):  # serial, signature, issuer, validity, subject
        tag, _, end = _der_element(cert, position)
        if tag != expected or end > tbs_end:
            raise ValueError("not a certificate")
        position = end
    tag, _, end = _der_element(cert, position)
    if tag != 0x30 or end > tbs_end:
        raise ValueError("not a certificate")
    return cert[position:end]


# --- DANE-TA(2) ---------------------------------------------------------------------------------------------

_ParseErrors = (ValueError, TypeError, UnsupportedAlgorithm)
_CERTIFICATE_KEYS = (
    rsa.RSAPublicKey,
    ec.EllipticCurvePublicKey,
    ed25519.Ed25519PublicKey,
    ed448.Ed448PublicKey,
)


# The Web PKI's rules for the extensions (RFC 5280 as the CA/Browser Forum profiles it: basicConstraints,
# keyUsage, serverAuth in an extendedKeyUsage that is present, a subjectAltName in the leaf), except that the
# authorityKeyIdentifier may be missing: it only helps to find the issuer among many, and private CAs, which
# DANE-TA serves, often leave it out.
_AKI_OPTIONAL = (x509.AuthorityKeyIdentifier, verification.Criticality.AGNOSTIC, None)
_CA_POLICY = verification.ExtensionPolicy.webpki_defaults_ca().may_be_present(*_AKI_OPTIONAL)
_EE_POLICY = verification.ExtensionPolicy.webpki_defaults_ee().may_be_present(*_AKI_OPTIONAL)


def _check_trust_anchor(
    records: Sequence[Tlsa], chain: Sequence[bytes], names: Sequence[str], now: datetime.datetime
) -> str | None:
    """RFC 7672 section 3.1.2 (see the module docstring); None when some anchor authenticates the leaf."""
    try:
        leaf = x509.load_der_x509_certificate(chain[0])
    except _ParseErrors:
        return "the server's certificate cannot be parsed"
    parsed: list[tuple[bytes, x509.Certificate]] = []
    for der in chain[1:]:
        try:
            parsed.append((der, x509.load_der_x509_certificate(der)))
        except _ParseErrors:
            continue  # not part of any path we can check; matching it alone proves nothing
    anchors = _anchors(records, leaf, parsed)
    if not anchors:
        return f"no certificate the server sent matches a trust anchor record ({_listed(records)})"
    if not names:
        return "no reference identifier to check the certificate's names against"
    reasons: list[str] = []
    for subject, spki in anchors:
        try:
            store = verification.Store([_anchor_certificate(subject, spki, now)])
        except _ParseErrors as exc:
            reasons.append(f"trust anchor key unusable: {exc}")
            continue
        # the anchor's own certificate is left out of the path: its dates and extensions do not count
        intermediates = [cert for der, cert in parsed if _spki_or_none(der) != spki]
        for name in names:
            try:
                verifier = (
                    verification.PolicyBuilder()
                    .store(store)
                    .time(now)
                    .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICY)
                    .build_server_verifier(x509.DNSName(name))
                )
                verifier.verify(leaf, intermediates)
            except verification.VerificationError as exc:
                reasons.append(f"{name}: {_short(exc)}")
                continue
            except _ParseErrors as exc:
                reasons.append(f"{name}: {exc}")
                continue
            return None
    return "; ".join(_unique(reasons))


def _anchors(
    records: Sequence[Tlsa], leaf: x509.Certificate, parsed: Sequence[tuple[bytes, x509.Certificate]]
) -> list[tuple[x509.Name, bytes]]:
    """The trust anchors the records name, as (subject, SubjectPublicKeyInfo DER): from a matching
    certificate the server sent above the leaf, a full certificate in a 2 0 0 record, or a full key in a
    2 1 0 record (whose name is then that of an issuer in the chain)."""
    anchors: list[tuple[x509.Name, bytes]] = []

    def add(subject: x509.Name, spki: bytes) -> None:
        if (subject, spki) not in anchors:
            anchors.append((subject, spki))

    for der, cert in parsed:
        if any(_matches(record, der) for record in records):
            spki = _spki_or_none(der)
            subject = _name_or_none(cert, "subject")
            if spki is not None and subject is not None:
                add(subject, spki)
    for record in records:
        if record.matching != FULL:
            continue
        if record.selector == CERT:
            try:
                cert = x509.load_der_x509_certificate(record.data)
            except _ParseErrors:
                continue
            spki = _spki_or_none(record.data)
            subject = _name_or_none(cert, "subject")
            if spki is not None and subject is not None:
                add(subject, spki)
        else:
            issuers = [_name_or_none(c, "issuer") for c in (leaf, *(cert for _, cert in parsed))]
            for issuer in _unique_names([i for i in issuers if i is not None]):
                add(issuer, record.data)
    return anchors


def _name_or_none(cert: x509.Certificate, which: str) -> x509.Name | None:
    """A certificate's subject or issuer; None when it cannot be parsed (cryptography parses fields lazily,
    so a malformed name of a certificate that loaded raises only here)."""
    try:
        name: x509.Name = getattr(cert, which)
    except _ParseErrors:
        return None
    return name


def _anchor_certificate(subject: x509.Name, spki: bytes, now: datetime.datetime) -> x509.Certificate:
    """A stand-in certificate for a trust anchor: its name and key, valid around `now`, a CA. Signed by a
    throwaway key: a trust store's own signatures are never checked, only the ones it makes below it."""
    public_key = serialization.load_der_public_key(spki)
    if not isinstance(public_key, _CERTIFICATE_KEYS):
        raise ValueError(f"a {type(public_key).__name__} cannot be a certificate's key")
    signer = ec.generate_private_key(ec.SECP256R1())
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(signer, hashes.SHA256())
    )


# --- helpers ------------------------------------------------------------------------------------------------


def _spki_or_none(cert: bytes) -> bytes | None:
    try:
        return _spki(cert)
    except ValueError:
        return None


def _short(exc: Exception) -> str:
    """cryptography's verification message without the certificate dump it appends."""
    text = str(exc).removeprefix("validation failed: ")
    return text.split(" (encountered processing")[0]


def _listed(records: Iterable[Tlsa]) -> str:
    return ", ".join(str(record) for record in records)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _unique_names(names: Iterable[x509.Name]) -> list[x509.Name]:
    unique: list[x509.Name] = []
    for name in names:
        if name not in unique:
            unique.append(name)
    return unique
