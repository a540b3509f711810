"""TLS for every listener: server SSL contexts that can be reloaded, and self-signed certificates.

Implementation notes
- One server `ssl.SSLContext` is shared by all listeners (STARTTLS and implicit TLS alike, RFC 3207, RFC 2595,
  RFC 8314). Listeners read `TlsContexts.server_context` at each handshake, never keep it: a reload (SIGHUP)
  swaps in a new context for new connections while connections in flight keep the one they started with.
- A reload only swaps when the new certificate and key loaded; on failure the old context stays in service and
  the error is returned and logged. A server must not lose TLS because a renewal left a half-written file.
- TLS 1.2 cipher suites: ECDHE with AES-GCM or ChaCha20-Poly1305 only (`TLS12_CIPHERS`;
  docs/decisions/0029), the RFC 9325 section 4.2 recommendations: forward secrecy and AEAD, no CBC suites
  (Python's default list for servers still offers ECDHE-RSA-AES128-SHA256 and -AES256-SHA384, CBC with
  MAC-then-encrypt, and DHE with the client's choice of group). Every TLS 1.2 implementation since OpenSSL
  1.0.1 has these suites, so the narrower list costs no real client, on port 25 either. TLS 1.3 suites are
  all AEAD; OpenSSL's defaults stay.
- Self-signed certificates use RSA 2048, not ECDSA P-256: ECDSA is smaller and faster, but older mail
  programs and embedded MTAs still lack ECDSA cipher suites, and a first-run certificate should work with
  every client. The handshake cost of RSA 2048 is negligible at one-domain scale.
- The private key is written mode 0600 through a temporary file and rename, so a crash never leaves a partial
  key, and the key is never world-readable even for an instant.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from postoffice.atomicfile import write_atomically

if TYPE_CHECKING:
    from postoffice.net.settings import TlsConfig

log = logging.getLogger("postoffice.net.tls")

_TLS_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}

#: The TLS 1.2 suites a server offers (OpenSSL cipher string): ECDHE key exchange, AEAD encryption.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


class TlsError(Exception):
    """The certificate or key could not be loaded; the message names the file and the reason."""


# -- self-signed certificates --------------------------------------------------------------------------------


def generate_self_signed(
    hostname: str, cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str], days: int = 825
) -> None:
    """Create an RSA 2048 key and a self-signed server certificate for `hostname`, valid `days` days (825
    days is the longest validity that Apple's clients accept for a server certificate).

    SAN: DNS:hostname, DNS:localhost, IP:127.0.0.1 (without duplicates; an IP literal hostname becomes an IP
    SAN). Not a CA; usable only for TLS server authentication. Parent directories are created mode 0700."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    cert_path, key_path = Path(cert_path), Path(key_path)
    hostname = hostname.rstrip(".").lower()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    names: list[x509.GeneralName] = []
    for entry in (hostname, "localhost", "127.0.0.1"):
        try:
            general: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(entry))
        except ValueError:
            general = x509.DNSName(entry)
        if general not in names:
            names.append(general)

    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    public_key = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(
            now - datetime.timedelta(hours=1)
        )  # tolerate clients whose clock is a little behind
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=True,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )

    for directory in {cert_path.parent, key_path.parent}:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_atomically(key_path, key_pem, 0o600)
    write_atomically(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


# -- server contexts -----------------------------------------------------------------------------------------


def build_server_context(
    certificate: str | os.PathLike[str], private_key: str | os.PathLike[str], min_version: str = "TLSv1.2"
) -> ssl.SSLContext:
    """A server context for `certificate` (PEM chain, leaf first) and `private_key`; raises `TlsError`."""
    if min_version not in _TLS_VERSIONS:
        raise TlsError(f"unknown TLS version {min_version!r} (use one of {', '.join(_TLS_VERSIONS)})")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _TLS_VERSIONS[min_version]
    # No TLS compression (CRIME); no client-initiated renegotiation (a cheap CPU DoS, and TLS 1.3 has none).
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.set_ciphers(TLS12_CIPHERS)  # TLS 1.2 only; TLS 1.3 suites (all AEAD) are set apart by OpenSSL
    try:
        context.load_cert_chain(certificate, private_key)
    except FileNotFoundError as exc:
        raise TlsError(f"file not found: {exc.filename or certificate}") from None
    except PermissionError as exc:
        raise TlsError(f"not readable: {exc.filename or certificate}") from None
    except (ssl.SSLError, OSError) as exc:
        raise TlsError(f"cannot load certificate {certificate} with key {private_key}: {exc}") from None
    return context


class TlsContexts:
    """The server's current TLS context, reloadable from the same files (SIGHUP).

    Read `server_context` at every handshake; do not keep it."""

    def __init__(
        self,
        certificate: str | os.PathLike[str],
        private_key: str | os.PathLike[str],
        min_version: str = "TLSv1.2",
    ) -> None:
        self.certificate = Path(certificate)
        self.private_key = Path(private_key)
        self.min_version = min_version
        self._context = build_server_context(self.certificate, self.private_key, min_version)
        self.generation = 1  # increases with every successful reload; for logs and tests

    @classmethod
    def from_config(cls, tls: TlsConfig) -> TlsContexts:
        return cls(tls.certificate, tls.private_key, tls.min_version)

    @property
    def server_context(self) -> ssl.SSLContext:
        return self._context

    def dispatching_context(self) -> ssl.SSLContext:
        """A context for a server that takes one context for good (the web's ASGI server): built from the same
        files and settings, it hands every handshake over to the current `server_context` as soon as the
        client's hello has been read (its SNI callback runs for every hello, with or without a name), so a
        certificate reloaded on SIGHUP applies to the next connection there too."""
        context = build_server_context(self.certificate, self.private_key, self.min_version)

        def hand_over(
            ssl_object: ssl.SSLObject | ssl.SSLSocket, _name: str | None, _ctx: ssl.SSLContext
        ) -> None:
            ssl_object.context = self._context

        context.sni_callback = hand_over
        return context

    def reload(self) -> str | None:
        """Load the files again and swap the new context in. Returns None on success; on failure returns the
        error (also logged) and keeps serving with the previous context."""
        try:
            context = build_server_context(self.certificate, self.private_key, self.min_version)
        except TlsError as exc:
            log.error("TLS reload failed, keeping the previous certificate: %s", exc)
            return str(exc)
        self._context = context
        self.generation += 1
        log.info("TLS certificate reloaded from %s", self.certificate)
        return None


# -- Received headers ----------------------------------------------------------------------------------------


class _HasTlsState(Protocol):
    def version(self) -> str | None: ...

    def cipher(self) -> tuple[str, str, int] | None: ...


def describe_tls(ssl_object: _HasTlsState | None) -> str:
    """The TLS parameters of a connection for log lines, e.g.
    "(version=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384 bits=256)". Empty string when there is no TLS."""
    if ssl_object is None:
        return ""
    cipher = ssl_object.cipher()
    if cipher is None:
        return ""
    name, protocol, bits = cipher
    version = ssl_object.version() or protocol
    return f"(version={version} cipher={name} bits={bits})"


def received_tls_comment(ssl_object: _HasTlsState | None) -> str:
    """The TLS parameters of a connection as a Received header comment in the form Postfix writes and log
    and spam-filter parsers read, e.g. "(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))":
    secret bits / bits of the cipher algorithm. One nested comment, which RFC 5322 3.2.2 allows. Empty
    string when there is no TLS.

    A comment, not RFC 8314's `tls` clause (section 7.4): the cipher name is OpenSSL's, which for TLS 1.2
    is its short form (ECDHE-RSA-AES128-GCM-SHA256), not the IANA name that clause takes; and RFC 8314 4.3
    asks only that the cipher suite be recorded."""
    if ssl_object is None:
        return ""
    cipher = ssl_object.cipher()
    if cipher is None:
        return ""
    name, protocol, bits = cipher
    version = ssl_object.version() or protocol
    algorithm_bits = bits
    context = getattr(ssl_object, "context", None)
    if isinstance(context, ssl.SSLContext):
        for known in context.get_ciphers():
            if known.get("name") == name and isinstance(known.get("alg_bits"), int):
                algorithm_bits = known["alg_bits"]
                break
    return f"(using {version} with cipher {name} ({bits}/{algorithm_bits} bits))"
