"""Self-signed certificates, server contexts with reload, and the TLS description for Received headers."""

from __future__ import annotations

import ipaddress
import re
import shutil
import socket
import ssl
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from postoffice.net.tls import (
    TlsContexts,
    TlsError,
    build_server_context,
    describe_tls,
    generate_self_signed,
    received_tls_comment,
)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "tls" / "cert.pem", directory / "tls" / "key.pem"
    generate_self_signed("mail.example.test", cert, key)
    return cert, key


def load(cert: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(cert.read_bytes())


def test_certificate_names_the_hostname_localhost_and_loopback(pair: tuple[Path, Path]) -> None:
    san = load(pair[0]).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["mail.example.test", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]


def test_certificate_for_localhost_has_no_duplicate_names(tmp_path: Path) -> None:
    generate_self_signed("localhost", tmp_path / "c.pem", tmp_path / "k.pem")
    san = load(tmp_path / "c.pem").extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert len(list(san)) == 2


def test_certificate_is_a_server_certificate_and_not_a_ca(pair: tuple[Path, Path]) -> None:
    cert = load(pair[0])
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca is False
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature
    assert usage.key_encipherment
    assert not usage.key_cert_sign
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    public_key = cert.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    assert public_key.key_size == 2048
    assert cert.issuer == cert.subject


def test_certificate_validity_follows_days(tmp_path: Path) -> None:
    generate_self_signed("mail.example.test", tmp_path / "c.pem", tmp_path / "k.pem", days=30)
    cert = load(tmp_path / "c.pem")
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 30 * 86400 <= lifetime.total_seconds() <= 30 * 86400 + 7200


def test_private_key_is_mode_0600_and_no_temporary_files_remain(pair: tuple[Path, Path]) -> None:
    key = pair[1]
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert sorted(p.name for p in key.parent.iterdir()) == ["cert.pem", "key.pem"]
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700


def test_regenerating_replaces_the_files(tmp_path: Path) -> None:
    generate_self_signed("a.example.test", tmp_path / "c.pem", tmp_path / "k.pem")
    first = (tmp_path / "k.pem").read_bytes()
    generate_self_signed("b.example.test", tmp_path / "c.pem", tmp_path / "k.pem")
    assert (tmp_path / "k.pem").read_bytes() != first
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600


def handshake(
    server_context: ssl.SSLContext,
    cafile: Path,
    server_hostname: str = "localhost",
    client: ssl.SSLContext | None = None,
    describe: Callable[[ssl.SSLSocket], str] = describe_tls,
) -> tuple[str, str]:
    """A real TLS handshake over 127.0.0.1; returns (client's, server's) `describe` of the connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    result: dict[str, str] = {}

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server_context.wrap_socket(conn, server_side=True) as tls:
                result["server"] = describe(tls)
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError) as exc:
            result["error"] = str(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        if client is None:
            client = ssl.create_default_context(cafile=str(cafile))
            client.verify_flags |= ssl.VERIFY_X509_STRICT
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            client.wrap_socket(raw, server_hostname=server_hostname) as tls,
        ):
            assert tls.recv(2) == b"ok"
            client_side = describe(tls)
    finally:
        thread.join(timeout=10)
        listener.close()
    return client_side, result["server"]


def test_tls_handshake_verifies_the_generated_certificate_by_localhost(pair: tuple[Path, Path]) -> None:
    cert, key = pair
    client_side, server_side = handshake(build_server_context(cert, key), cert)
    assert client_side == server_side
    assert client_side.startswith("(version=TLSv1.")


def test_the_received_comment_has_the_usual_form(pair: tuple[Path, Path]) -> None:
    """Issue 9 item 17: it read "(using (version=TLSv1.3 cipher=... bits=256))"."""
    cert, key = pair
    client_side, server_side = handshake(build_server_context(cert, key), cert, describe=received_tls_comment)
    assert client_side == server_side
    assert re.fullmatch(r"\(using TLSv1\.[23] with cipher [A-Z0-9_-]+ \((\d+)/(\d+) bits\)\)", server_side), (
        server_side
    )
    assert received_tls_comment(None) == ""
    assert received_tls_comment(FakeTls(None, None)) == ""
    fake = FakeTls("TLSv1.2", ("ECDHE-RSA-AES128-GCM-SHA256", "TLSv1.2", 128))
    assert (
        received_tls_comment(fake) == "(using TLSv1.2 with cipher ECDHE-RSA-AES128-GCM-SHA256 (128/128 bits))"
    )


def test_tls_handshake_verifies_the_generated_certificate_by_hostname(pair: tuple[Path, Path]) -> None:
    cert, key = pair
    handshake(build_server_context(cert, key), cert, server_hostname="mail.example.test")


def test_client_refuses_a_name_the_certificate_does_not_carry(pair: tuple[Path, Path]) -> None:
    cert, key = pair
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(build_server_context(cert, key), cert, server_hostname="other.example.test")


def test_min_version_tls13_is_applied(pair: tuple[Path, Path]) -> None:
    context = build_server_context(*pair, min_version="TLSv1.3")
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3
    assert context.options & ssl.OP_NO_COMPRESSION
    client_side, _ = handshake(context, pair[0])
    assert "version=TLSv1.3" in client_side


def tls12_client(cafile: Path, ciphers: str) -> ssl.SSLContext:
    """A TLS 1.2 client that offers only `ciphers`."""
    client = ssl.create_default_context(cafile=str(cafile))
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    client.set_ciphers(ciphers)
    return client


def test_tls12_offers_only_ecdhe_with_aead(pair: tuple[Path, Path]) -> None:
    offered = [c for c in build_server_context(*pair).get_ciphers() if c["protocol"] == "TLSv1.2"]
    names = {c["name"] for c in offered}
    assert {
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-RSA-CHACHA20-POLY1305",
    } <= names
    not_aead = [c["name"] for c in offered if not c["aead"] or c["kea"] != "kx-ecdhe"]
    assert not_aead == []


@pytest.mark.parametrize(
    "ciphers",
    ["ECDHE-RSA-AES128-SHA256", "ECDHE-RSA-AES256-SHA384", "ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES256-SHA384"],
)
def test_a_tls12_client_offering_only_cbc_suites_is_refused(pair: tuple[Path, Path], ciphers: str) -> None:
    cert, key = pair
    with pytest.raises(ssl.SSLError):
        handshake(build_server_context(cert, key), cert, client=tls12_client(cert, ciphers))


@pytest.mark.parametrize(
    "cipher", ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-CHACHA20-POLY1305"]
)
def test_a_tls12_client_gets_each_aead_suite_it_offers(pair: tuple[Path, Path], cipher: str) -> None:
    cert, key = pair
    client_side, _ = handshake(build_server_context(cert, key), cert, client=tls12_client(cert, cipher))
    assert f"version=TLSv1.2 cipher={cipher} " in client_side


def test_building_a_context_from_missing_files_raises_tls_error(tmp_path: Path) -> None:
    with pytest.raises(TlsError, match="not found"):
        build_server_context(tmp_path / "c.pem", tmp_path / "k.pem")


def test_reload_swaps_in_the_new_certificate(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    generate_self_signed("old.example.test", cert, key)
    contexts = TlsContexts(cert, key)
    old_context = contexts.server_context
    old_cert = cert.read_bytes()
    generate_self_signed("new.example.test", cert, key)
    assert contexts.reload() is None
    assert contexts.server_context is not old_context
    assert contexts.generation == 2
    handshake(contexts.server_context, cert, server_hostname="new.example.test")
    (tmp_path / "old.pem").write_bytes(old_cert)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(contexts.server_context, tmp_path / "old.pem", server_hostname="old.example.test")


def test_reload_keeps_the_old_context_when_the_new_files_are_bad(
    tmp_path: Path, pair: tuple[Path, Path]
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    shutil.copy(pair[0], cert)
    shutil.copy(pair[1], key)
    contexts = TlsContexts(cert, key)
    old_context = contexts.server_context
    key.write_text("-----BEGIN PRIVATE KEY-----\nhalf written\n")
    error = contexts.reload()
    assert error
    assert "key" in error
    assert contexts.server_context is old_context
    assert contexts.generation == 1
    handshake(contexts.server_context, cert)  # still serving with the old certificate


def test_reload_keeps_the_old_context_when_the_files_are_gone(
    tmp_path: Path, pair: tuple[Path, Path]
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    shutil.copy(pair[0], cert)
    shutil.copy(pair[1], key)
    contexts = TlsContexts(cert, key)
    old_context = contexts.server_context
    cert.unlink()
    assert contexts.reload() is not None
    assert contexts.server_context is old_context


class FakeTls:
    def __init__(self, version: str | None, cipher: tuple[str, str, int] | None) -> None:
        self._version, self._cipher = version, cipher

    def version(self) -> str | None:
        return self._version

    def cipher(self) -> tuple[str, str, int] | None:
        return self._cipher


def test_describe_tls_gives_version_cipher_and_bits() -> None:
    fake = FakeTls("TLSv1.3", ("TLS_AES_256_GCM_SHA384", "TLSv1.3", 256))
    assert describe_tls(fake) == "(version=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384 bits=256)"


def test_describe_tls_without_tls_is_empty() -> None:
    assert describe_tls(None) == ""
    assert describe_tls(FakeTls(None, None)) == ""
