"""SCRAM-SHA-256 and SCRAM-SHA-256-PLUS against GNU SASL's own client (`gsasl`, Debian's, on GnuTLS: an
implementation that shares nothing with ours), on IMAP and SMTP submission after STARTTLS. -PLUS binds to
the tls-exporter of the TLS 1.3 connection as GnuTLS computes it (RFC 9266). A client that says it could
bind while the server offers -PLUS ("y") must be refused (RFC 5802 section 6): gsasl does that when told to
use the plain mechanism with channel binding on, so that is tested too."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import DataDir, ServerProcess, make_data_dir

USER = "demo@example.test"
PASSWORD = "demo-secret-pw"  # make_data_dir's


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> DataDir:
    return make_data_dir(tmp_path_factory.mktemp("gsasl") / "data", users=("demo",))


@pytest.fixture(scope="module")
def server(data: DataDir) -> Iterator[ServerProcess]:
    proc = ServerProcess(data).start()
    try:
        yield proc
    finally:
        assert proc.stop() == 0, proc.log()


def gsasl(server: ServerProcess, data: DataDir, protocol: str, mechanism: str, *extra: str) -> str:
    """Run gsasl's client; its output (the exchange, with --verbose), and a last line "rc=N"."""
    tool = shutil.which("gsasl")
    assert tool is not None, "gsasl is installed by the Makefile (Debian package gsasl)"
    port = server.port("imap" if protocol == "imap" else "submission")
    done = subprocess.run(
        [
            *(tool, f"--{protocol}", "--connect", f"127.0.0.1:{port}", "--starttls"),
            *("--x509-ca-file", str(Path(data.root) / "tls" / "cert.pem")),
            *("-m", mechanism, "-a", USER, "-p", extra[0] if extra else PASSWORD, "--verbose", *extra[1:]),
        ],
        input=b"",
        capture_output=True,
        timeout=60,
        check=False,
    )
    text = (done.stdout + done.stderr).decode("utf-8", "replace")
    return f"{text}rc={done.returncode}"


@pytest.mark.parametrize("protocol", ["imap", "smtp"])
def test_gsasl_logs_in_with_scram_sha_256_plus(server: ServerProcess, data: DataDir, protocol: str) -> None:
    out = gsasl(server, data, protocol, "SCRAM-SHA-256-PLUS")
    assert out.endswith("rc=0"), out
    assert "(TLS1.3)" in out, out
    assert (". OK [CAPABILITY" if protocol == "imap" else "235 2.7.0") in out, out


@pytest.mark.parametrize("protocol", ["imap", "smtp"])
def test_gsasl_scram_sha_256_without_binding_and_the_downgrade_rule(
    server: ServerProcess, data: DataDir, protocol: str
) -> None:
    out = gsasl(server, data, protocol, "SCRAM-SHA-256", PASSWORD, "--no-cb")  # gs2 flag "n"
    assert out.endswith("rc=0"), out
    # channel binding on, the plain mechanism chosen: gsasl sends "y" although the server offers -PLUS
    out = gsasl(server, data, protocol, "SCRAM-SHA-256")
    assert not out.endswith("rc=0"), out
    out = gsasl(server, data, protocol, "SCRAM-SHA-256-PLUS", "not the password")
    assert not out.endswith("rc=0"), out
