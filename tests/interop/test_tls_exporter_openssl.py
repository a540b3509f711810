"""The tls-exporter channel binding our server reads (`postoffice.net.tls_exporter`, through ctypes) is the
one OpenSSL's own client computes for the same connection: `openssl s_client -keymatexport
EXPORTER-Channel-Binding -keymatexportlen 32` against a TLS 1.3 server socket of ours. And on TLS 1.2 there
is none (RFC 9266 needs the extended master secret there, which we cannot see)."""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from postoffice.net.tls_exporter import tls_exporter


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("exporter")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost", "-days", "1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def serve_once(context: ssl.SSLContext, found: dict[str, bytes | None]) -> int:
    listener = socket.create_server(("127.0.0.1", 0))
    port = int(listener.getsockname()[1])

    def run() -> None:
        conn, _ = listener.accept()
        listener.close()
        with context.wrap_socket(conn, server_side=True) as tls:
            found["server"] = tls_exporter(tls)
            tls.sendall(b"bye\n")

    threading.Thread(target=run, daemon=True).start()
    return port


def s_client(port: int, *options: str) -> str:
    done = subprocess.run(
        [
            *("openssl", "s_client", "-connect", f"127.0.0.1:{port}", *options),
            *("-keymatexport", "EXPORTER-Channel-Binding", "-keymatexportlen", "32"),
        ],
        input=b"",
        capture_output=True,
        timeout=30,
        check=False,
    )
    return done.stdout.decode("ascii", "replace")


def test_our_exporter_is_openssls(certificate: tuple[Path, Path]) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    found: dict[str, bytes | None] = {}
    out = s_client(serve_once(context, found), "-tls1_3")
    match = re.search(r"Keying material: ([0-9A-F]{64})", out)
    assert match is not None, out
    server = found.get("server")
    assert server is not None
    assert server.hex().upper() == match.group(1)


def test_no_binding_on_tls_1_2(certificate: tuple[Path, Path]) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    found: dict[str, bytes | None] = {}
    out = s_client(serve_once(context, found), "-tls1_2")
    assert "Keying material" in out  # openssl has one for TLS 1.2; we refuse to use it
    assert found == {"server": None}
