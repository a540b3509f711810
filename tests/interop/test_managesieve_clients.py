"""ManageSieve (RFC 5804) against clients that are not ours, on a real `postoffice run`: sievelib's client
(a Python library that mail tools use) and Debian's sieve-connect (Perl, the command-line client people
use). Each stores, lists, reads, activates, renames and deletes scripts over STARTTLS; a script stored this
way then filters mail delivered on port 25; the limits answer with their response codes."""

from __future__ import annotations

import base64
import imaplib
import shutil
import smtplib
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from scramp import ScramClient
from sievelib.managesieve import Client

from postoffice.net.tls_exporter import tls_exporter
from tests.integration.harness import DataDir, ServerProcess, make_data_dir
from tests.support.scram import PLUS_HEADER, plus_client_final

USER = "demo@example.test"
PASSWORD = "demo-secret-pw"  # make_data_dir's
OTHER = "other@example.test"

FILTER = 'require ["fileinto"];\r\nif header :contains "subject" "[list]" {\r\n  fileinto "Junk";\r\n}\r\n'


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> DataDir:
    return make_data_dir(tmp_path_factory.mktemp("managesieve") / "data", users=("demo", "other"))


@pytest.fixture(scope="module")
def server(data: DataDir) -> Iterator[ServerProcess]:
    proc = ServerProcess(data).start()
    try:
        yield proc
    finally:
        assert proc.stop() == 0, proc.log()


@pytest.fixture
def client(server: ServerProcess, data: DataDir, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    monkeypatch.setenv("SSL_CERT_FILE", str(Path(data.root) / "tls" / "cert.pem"))  # our self-signed one
    sieve = Client("localhost", server.port("managesieve"))
    assert sieve.connect(USER, PASSWORD, starttls=True, authmech="PLAIN"), sieve.errmsg
    yield sieve
    for name in sieve.listscripts()[1]:
        sieve.deletescript(name)
    sieve.setactive("")
    for name in sieve.listscripts()[1]:
        sieve.deletescript(name)
    sieve.logout()


def test_sievelib_manages_scripts_and_the_active_one_filters_delivery(
    client: Client, server: ServerProcess
) -> None:
    assert client.get_implementation() == "Postoffice"
    assert {"fileinto", "vacation", "imap4flags"} <= set(client.get_sieve_capabilities())
    assert client.havespace("main", len(FILTER))
    assert client.putscript("main", FILTER)
    assert client.putscript("spare", "keep;\r\n")
    assert client.setactive("main")
    active, others = client.listscripts()
    assert (active, sorted(others)) == ("main", ["spare"])
    assert client.getscript("main") == FILTER.replace("\r\n", "\n").rstrip(
        "\n"
    )  # sievelib joins lines with LF
    assert client.renamescript("spare", "Spare")
    assert not client.deletescript("main")  # the active one: NO (ACTIVE)
    assert b"ACTIVE" in (client.errcode or b"") or b"active" in client.errmsg.lower()
    assert client.deletescript("Spare")
    assert client.listscripts() == ("main", [])

    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as smtp:
        smtp.sendmail("a@sender.example", [USER], b"Subject: [list] news\r\n\r\nhello\r\n")
        smtp.sendmail("a@sender.example", [USER], b"Subject: personal\r\n\r\nhello\r\n")
    context = ssl.create_default_context(cafile=str(Path(server.data.root) / "tls" / "cert.pem"))
    with imaplib.IMAP4_SSL("localhost", server.port("imaps"), ssl_context=context) as imap:
        imap.login(USER, PASSWORD)
        assert imap.select("Junk")[1] == [b"1"]
        assert imap.select("INBOX")[1] == [b"1"]


def test_a_script_with_an_error_is_refused_with_its_line(client: Client) -> None:
    assert not client.putscript("bad", 'require "fileinto";\r\nfileinto "x" "y";\r\n')
    assert b"line 2" in client.errmsg
    assert not client.checkscript("frobnicate;")
    assert b"unknown command" in client.errmsg
    assert client.checkscript("keep;")
    assert client.listscripts() == (None, [])


def sieve_connect(server: ServerProcess, data: DataDir, *args: str, stdin: str = "") -> str:
    tool = shutil.which("sieve-connect")
    assert tool is not None, "sieve-connect is installed by the Makefile (Debian package sieve-connect)"
    done = subprocess.run(
        [
            tool,
            *("--server", "localhost", "--port", str(server.port("managesieve"))),
            *("--user", USER, "--passwordfd", "0", "--authmech", "PLAIN"),
            *("--tlscafile", str(Path(data.root) / "tls" / "cert.pem")),
            *args,
        ],
        input=(PASSWORD + "\n" + stdin).encode(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    return (done.stdout + done.stderr).decode("utf-8", "replace") + f"rc={done.returncode}"


def test_sieve_connect_uploads_lists_downloads_activates_and_deletes(
    server: ServerProcess, data: DataDir, tmp_path: Path
) -> None:
    local = tmp_path / "vacation.sieve"
    local.write_text('require "vacation";\nvacation :days 2 "Away this week.";\n')
    out = sieve_connect(server, data, "--upload", "--localsieve", str(local), "--remotesieve", "away")
    assert out.endswith("rc=0"), out
    out = sieve_connect(server, data, "--activate", "--remotesieve", "away")
    assert out.endswith("rc=0"), out
    out = sieve_connect(server, data, "--list")
    assert out.endswith("rc=0"), out
    assert "away" in out
    assert "ACTIVE" in out or "active" in out
    fetched = tmp_path / "fetched.sieve"
    out = sieve_connect(server, data, "--download", "--remotesieve", "away", "--localsieve", str(fetched))
    assert out.endswith("rc=0"), out
    assert fetched.read_bytes().replace(b"\r\n", b"\n") == local.read_bytes()
    out = sieve_connect(server, data, "--deactivate")
    assert out.endswith("rc=0"), out
    out = sieve_connect(server, data, "--delete", "--remotesieve", "away")
    assert out.endswith("rc=0"), out
    assert "away" not in sieve_connect(server, data, "--list").replace("rc=0", "")


class Raw:
    """A ManageSieve connection by hand: STARTTLS, then lines and responses."""

    def __init__(self, server: ServerProcess, data: DataDir) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port("managesieve")), timeout=30)
        self.file = self.sock.makefile("rb")
        self.until_done()
        self.send(b"STARTTLS\r\n")
        assert self.until_done()[-1].startswith("OK")
        context = ssl.create_default_context(cafile=str(Path(data.root) / "tls" / "cert.pem"))
        self.tls = context.wrap_socket(self.sock, server_hostname="localhost")
        self.file = self.tls.makefile("rb")
        self.capabilities = self.until_done()

    def send(self, data: bytes) -> None:
        (self.tls if hasattr(self, "tls") else self.sock).sendall(data)

    def line(self) -> str:
        return self.file.readline().decode().rstrip("\r\n")

    def until_done(self) -> list[str]:
        lines = [self.line()]
        while not lines[-1].startswith(("OK", "NO", "BYE")):
            lines.append(self.line())
        return lines

    def close(self) -> None:
        self.send(b"LOGOUT\r\n")
        self.until_done()
        self.tls.close()


def quoted(data: bytes) -> bytes:
    return b'"' + base64.b64encode(data) + b'"'


def test_scram_sha_256_and_plus_with_the_server_final_message_in_the_ok(
    server: ServerProcess, data: DataDir
) -> None:
    raw = Raw(server, data)
    assert '"SASL" "SCRAM-SHA-256-PLUS SCRAM-SHA-256 PLAIN LOGIN"' in raw.capabilities
    raw.send(b'AUTHENTICATE "PLAIN" ' + quoted(f"\0{OTHER}\0other-secret-pw".encode()) + b"\r\n")
    assert raw.until_done() == ['OK "Logged in."']  # a password login makes the SCRAM secret
    raw.close()

    raw = Raw(server, data)
    client = ScramClient(["SCRAM-SHA-256"], OTHER, "other-secret-pw")
    raw.send(b'AUTHENTICATE "SCRAM-SHA-256" ' + quoted(client.get_client_first().encode()) + b"\r\n")
    client.set_server_first(base64.b64decode(raw.line().strip('"')).decode())
    raw.send(quoted(client.get_client_final().encode()) + b"\r\n")
    (ok,) = raw.until_done()
    assert ok.startswith('OK (SASL "'), ok
    assert ok.endswith('") "Logged in."'), ok
    client.set_server_final(base64.b64decode(ok.split('"')[1]).decode())  # raises if the proof is wrong
    raw.send(b'PUTSCRIPT "s" "keep;"\r\n')
    assert raw.until_done() == ['OK "Putscript completed."']
    raw.close()

    raw = Raw(server, data)
    binding = tls_exporter(raw.tls)
    assert binding is not None
    bare = f"n={OTHER},r=plusclientnonce"
    raw.send(b'AUTHENTICATE "SCRAM-SHA-256-PLUS" ' + quoted(PLUS_HEADER + bare.encode()) + b"\r\n")
    final, expected = plus_client_final(
        "other-secret-pw", binding, bare, base64.b64decode(raw.line().strip('"')).decode()
    )
    raw.send(quoted(final.encode()) + b"\r\n")
    (ok,) = raw.until_done()
    assert ok == f'OK (SASL "{base64.b64encode(expected.encode()).decode()}") "Logged in."'
    raw.close()

    raw = Raw(server, data)
    client = ScramClient(["SCRAM-SHA-256"], OTHER, "wrong password")
    raw.send(b'AUTHENTICATE "SCRAM-SHA-256" ' + quoted(client.get_client_first().encode()) + b"\r\n")
    client.set_server_first(base64.b64decode(raw.line().strip('"')).decode())
    raw.send(quoted(client.get_client_final().encode()) + b"\r\n")
    assert raw.until_done() == ['NO "Authentication failed."']
    raw.close()
