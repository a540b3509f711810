"""POP3 on a real server process: real sockets, real TLS (STLS on the pop3 port, implicit TLS on pop3s), mail
delivered over SMTP first, results checked independently in the store file."""

from __future__ import annotations

import base64
import poplib
import re
import signal
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from scramp import ScramClient

from postoffice.net.tls_exporter import tls_exporter
from tests.integration.harness import DataDir, ServerProcess
from tests.integration.mailcheck import body_after_trace, inbox_messages
from tests.support.mail import send_smtp, text_message
from tests.support.scram import PLUS_HEADER, b64, plus_client_final

pytestmark = pytest.mark.integration

DEMO = "demo@example.test"
DEMO_PW = "demo-secret-pw"


message = text_message


def deliver(server: ServerProcess, *messages: bytes, to: str = DEMO) -> None:
    send_smtp(server.port("smtp"), *messages, to=to)


def tls_context(data: DataDir) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(data.root / "tls" / "cert.pem"))


def stuffed(stored: bytes) -> bytes:
    """What RETR must put on the wire for `stored` (RFC 1939 section 3)."""
    out = re.sub(rb"(?m)^\.", b"..", stored)
    return out + (b"" if out.endswith(b"\r\n") else b"\r\n") + b".\r\n"


class Raw:
    """A raw POP3 client socket for protocol edge cases."""

    def __init__(self, port: int, *, context: ssl.SSLContext | None = None) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock: socket.socket = context.wrap_socket(sock, server_hostname="127.0.0.1") if context else sock
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> str:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; buffered {self.buf[:200]!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def until_terminator(self) -> bytes:
        """The raw octets of a multi-line reply body, terminator included."""
        while True:
            if self.buf.startswith(b".\r\n"):
                end = 3
                break
            index = self.buf.find(b"\r\n.\r\n")
            if index >= 0:
                end = index + 5
                break
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("closed in a multi-line reply")
            self.buf += chunk
        data, self.buf = self.buf[:end], self.buf[end:]
        return data

    def multiline(self) -> list[str]:
        lines = []
        while (line := self.line()) != ".":
            lines.append(line[1:] if line.startswith(".") else line)
        return lines

    def command(self, line: str) -> str:
        self.send(line.encode() + b"\r\n")
        return self.line()

    def stls(self, context: ssl.SSLContext) -> None:
        assert self.command("STLS").startswith("+OK")
        assert not self.buf
        self.sock = context.wrap_socket(self.sock, server_hostname="127.0.0.1")

    def login(self, user: str = DEMO, password: str = DEMO_PW) -> str:
        assert self.command(f"USER {user}").startswith("+OK")
        return self.command(f"PASS {password}")

    def closed_by_server(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except (ConnectionError, ssl.SSLError):
            return True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw_tls(server: ServerProcess, data_dir: DataDir) -> Iterator[Raw]:
    """A greeted connection on the implicit-TLS port."""
    raw = Raw(server.port("pop3s"), context=tls_context(data_dir))
    assert raw.line() == "+OK Postoffice POP3 server ready"
    yield raw
    raw.close()


def pop3s(server: ServerProcess, data: DataDir) -> poplib.POP3_SSL:
    client = poplib.POP3_SSL("127.0.0.1", server.port("pop3s"), context=tls_context(data), timeout=60)
    client.user(DEMO)
    client.pass_(DEMO_PW)
    return client


# ------------------------------------------------------------------------------------------ real clients


def test_poplib_with_stls_lists_retrieves_and_deletes(server: ServerProcess, data_dir: DataDir) -> None:
    sent = [message("first", "one\r\n.leading dot\r\n"), message("second", "two\r\n")]
    deliver(server, *sent)
    stored = inbox_messages(data_dir.root, DEMO)
    client = poplib.POP3("127.0.0.1", server.port("pop3"), timeout=60)
    assert "STLS" in client.capa()
    assert "USER" not in client.capa()
    client.stls(tls_context(data_dir))
    assert "USER" in client.capa()
    assert "STLS" not in client.capa()
    client.user(DEMO)
    client.pass_(DEMO_PW)
    assert client.stat() == (2, sum(len(data) for _, data in stored))
    _, listing, _ = client.list()
    assert listing == [f"{i + 1} {len(data)}".encode() for i, (_, data) in enumerate(stored)]
    _, uidls, _ = client.uidl()
    uids = [uid for uid, _ in stored]
    assert [line.split()[1].split(b".")[1] for line in uidls] == [str(uid).encode() for uid in uids]
    _, lines, _ = client.retr(1)
    assert b"\r\n".join(lines) + b"\r\n" == stored[0][1]
    assert body_after_trace(b"\r\n".join(lines) + b"\r\n") == sent[0]
    _, top, _ = client.top(2, 0)
    assert top[-1] == b""
    assert b"Subject: second" in top
    assert b"two" not in top
    client.dele(1)
    client.quit()
    assert [uid for uid, _ in inbox_messages(data_dir.root, DEMO)] == [uids[1]]


def test_poplib_on_pop3s_keeps_mail_without_dele(server: ServerProcess, data_dir: DataDir) -> None:
    deliver(server, message("kept"))
    client = pop3s(server, data_dir)
    _, lines, _ = client.retr(1)
    assert body_after_trace(b"\r\n".join(lines) + b"\r\n") == message("kept")
    client.quit()
    assert len(inbox_messages(data_dir.root, DEMO)) == 1


# ---------------------------------------------------------------------------------------- raw sessions


def test_pipelined_commands_are_answered_in_order(server: ServerProcess, raw_tls: Raw) -> None:
    deliver(server, message("a"), message("b"))
    raw_tls.send(
        f"CAPA\r\nUSER {DEMO}\r\nPASS {DEMO_PW}\r\nSTAT\r\nLIST\r\nUIDL 2\r\nRETR 1\r\nTOP 2 0\r\nNOOP\r\n"
        "QUIT\r\n".encode()
    )
    assert raw_tls.line().startswith("+OK Capability")
    assert "PIPELINING" in raw_tls.multiline()
    assert raw_tls.line() == "+OK Send PASS"
    assert raw_tls.line().startswith("+OK Logged in, maildrop has 2 messages")
    assert re.fullmatch(r"\+OK 2 \d+", raw_tls.line())
    assert raw_tls.line().startswith("+OK 2 messages")
    assert len(raw_tls.multiline()) == 2
    assert re.fullmatch(r"\+OK 2 \d+\.\d+", raw_tls.line())
    assert raw_tls.line().endswith("octets")
    assert "Subject: a" in raw_tls.multiline()
    assert raw_tls.line() == "+OK Top of message follows"
    assert raw_tls.multiline()[-1] == ""
    assert raw_tls.line() == "+OK"
    assert raw_tls.line().startswith("+OK localhost POP3 server signing off")


def test_dropped_connection_removes_nothing(server: ServerProcess, data_dir: DataDir, raw_tls: Raw) -> None:
    deliver(server, message("a"), message("b"))
    assert raw_tls.login().startswith("+OK")
    assert raw_tls.command("DELE 1") == "+OK Message 1 deleted"
    assert raw_tls.command("DELE 2") == "+OK Message 2 deleted"
    raw_tls.close()  # no QUIT: RFC 1939 section 6, no UPDATE
    client = pop3s(server, data_dir)  # also proves the maildrop lock was released
    assert client.stat()[0] == 2
    client.quit()
    assert len(inbox_messages(data_dir.root, DEMO)) == 2


def test_dele_quit_removes_durably_and_unique_ids_survive_a_restart(
    server: ServerProcess, data_dir: DataDir
) -> None:
    deliver(server, message("a"), message("b"), message("c"))
    client = pop3s(server, data_dir)
    _, before, _ = client.uidl()
    client.dele(2)
    assert client.quit().startswith(b"+OK")
    remaining = inbox_messages(data_dir.root, DEMO)
    assert len(remaining) == 2
    assert b"Subject: b\r\n" not in b"".join(data for _, data in remaining)
    server.stop()
    restarted = ServerProcess(data_dir).start()
    try:
        client = pop3s(restarted, data_dir)
        _, after, _ = client.uidl()
        client.quit()
    finally:
        restarted.stop()
    ids_before = [line.split()[1] for line in before]
    assert [line.split()[1] for line in after] == [ids_before[0], ids_before[2]]


def test_second_session_gets_in_use(server: ServerProcess, data_dir: DataDir, raw_tls: Raw) -> None:
    assert raw_tls.login().startswith("+OK Logged in")
    other = Raw(server.port("pop3s"), context=tls_context(data_dir))
    other.line()
    assert other.login() == "-ERR [IN-USE] Maildrop already locked by another session"
    assert other.command("NOOP").startswith("-ERR")  # still in AUTHORIZATION
    assert raw_tls.command("QUIT").startswith("+OK")
    assert other.login().startswith("+OK Logged in")
    other.close()


def test_auth_plain_with_and_without_initial_response(server: ServerProcess, data_dir: DataDir) -> None:
    plain = base64.b64encode(f"\0{DEMO}\0{DEMO_PW}".encode()).decode()
    raw = Raw(server.port("pop3s"), context=tls_context(data_dir))
    raw.line()
    assert raw.command(f"AUTH PLAIN {plain}").startswith("+OK Logged in")
    raw.command("QUIT")
    raw.close()
    raw = Raw(server.port("pop3s"), context=tls_context(data_dir))
    raw.line()
    assert raw.command("AUTH PLAIN") == "+ "
    assert raw.command(plain).startswith("+OK Logged in")
    raw.close()


def test_auth_login_bad_base64_and_cancel(raw_tls: Raw) -> None:
    b64 = base64.b64encode
    assert raw_tls.command("AUTH LOGIN") == f"+ {b64(b'Username:').decode()}"
    assert raw_tls.command("*") == "-ERR Authentication cancelled"
    assert raw_tls.command("AUTH LOGIN") == f"+ {b64(b'Username:').decode()}"
    assert raw_tls.command("@@not base64@@") == "-ERR Invalid base64, authentication aborted"
    assert raw_tls.command("AUTH LOGIN").startswith("+ ")
    assert raw_tls.command(b64(DEMO.encode()).decode()) == f"+ {b64(b'Password:').decode()}"
    assert raw_tls.command(b64(DEMO_PW.encode()).decode()).startswith("+OK Logged in")


def test_plaintext_login_is_refused_before_stls(server: ServerProcess, data_dir: DataDir) -> None:
    raw = Raw(server.port("pop3"))
    raw.line()
    raw.send(b"CAPA\r\n")
    assert raw.line().startswith("+OK")
    capa = raw.multiline()
    assert "STLS" in capa
    assert "USER" not in capa
    assert not any(c.startswith("SASL") for c in capa)
    refused = raw.command(f"USER {DEMO}")
    assert refused.startswith("-ERR [AUTH] Plaintext authentication disallowed")
    assert "STLS" in refused
    assert raw.command("AUTH PLAIN").startswith("-ERR [AUTH] Plaintext")
    raw.stls(tls_context(data_dir))
    assert raw.login().startswith("+OK Logged in")
    raw.close()


def test_wrong_password_is_an_auth_error(raw_tls: Raw) -> None:
    started = time.monotonic()
    assert raw_tls.login(password="wrong") == "-ERR [AUTH] Authentication failed"
    assert time.monotonic() - started >= 0.5  # the authenticator's failure delay
    assert raw_tls.login().startswith("+OK Logged in")  # still in AUTHORIZATION, may try again


def test_lockout_after_repeated_failures(tmp_path: Path) -> None:
    from tests.integration.harness import make_data_dir

    data = make_data_dir(tmp_path / "data")
    text = data.config.read_text()
    text = re.sub(r"(?m)^failure_delay = .*$", "failure_delay = 0", text)
    text = re.sub(r"(?m)^ip_max_failures = .*$", "ip_max_failures = 3", text)
    data.config.write_text(text)
    server = ServerProcess(data).start()
    try:
        raw = Raw(server.port("pop3s"), context=tls_context(data))
        raw.line()
        for _ in range(3):
            assert raw.login(password="wrong") == "-ERR [AUTH] Authentication failed"
        locked = raw.login()  # the right password, but this address is locked out now
        assert locked.startswith("-ERR [SYS/TEMP] Too many failed logins")
        raw.close()
    finally:
        assert server.stop() == 0


def test_a_5_mb_message_is_retrieved_byte_exact(
    server: ServerProcess, data_dir: DataDir, raw_tls: Raw
) -> None:
    line = b"0123456789abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ.0123456789\r\n"
    body = (line + b".starts with a dot\r\n") * (5 * 1024 * 1024 // (len(line) + 20))
    deliver(server, message("big").replace(b"Hello.\r\n", b"") + body)
    ((_, stored),) = inbox_messages(data_dir.root, DEMO)
    assert len(stored) > 5_000_000
    assert raw_tls.login().startswith("+OK")
    assert raw_tls.command("RETR 1") == f"+OK {len(stored)} octets"
    assert raw_tls.until_terminator() == stuffed(stored)
    assert raw_tls.command("NOOP") == "+OK"


def test_top_0_and_top_n(server: ServerProcess, data_dir: DataDir, raw_tls: Raw) -> None:
    deliver(server, message("top", "l1\r\n.l2\r\nl3\r\n"))
    ((_, stored),) = inbox_messages(data_dir.root, DEMO)
    header = stored[: stored.index(b"\r\n\r\n") + 4]
    assert raw_tls.login().startswith("+OK")
    assert raw_tls.command("TOP 1 0") == "+OK Top of message follows"
    assert raw_tls.until_terminator() == stuffed(header)
    assert raw_tls.command("TOP 1 2") == "+OK Top of message follows"
    assert raw_tls.until_terminator() == stuffed(header + b"l1\r\n.l2\r\n")
    assert raw_tls.command("TOP 1 10") == "+OK Top of message follows"
    assert raw_tls.until_terminator() == stuffed(stored)


def test_mail_arriving_during_a_session_shows_in_the_next(
    server: ServerProcess, data_dir: DataDir, raw_tls: Raw
) -> None:
    deliver(server, message("before"))
    assert raw_tls.login().startswith("+OK Logged in, maildrop has 1 message")
    deliver(server, message("during"))
    assert raw_tls.command("STAT").startswith("+OK 1 ")
    assert raw_tls.command("RETR 2").startswith("-ERR No such message")
    assert raw_tls.command("QUIT").startswith("+OK")
    client = pop3s(server, data_dir)
    assert client.stat()[0] == 2
    client.quit()


def test_shutdown_tells_idle_sessions_and_removes_nothing(
    server: ServerProcess, data_dir: DataDir, raw_tls: Raw
) -> None:
    deliver(server, message("a"))
    assert raw_tls.login().startswith("+OK")
    assert raw_tls.command("DELE 1").startswith("+OK")
    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)
    assert raw_tls.line() == "-ERR [SYS/TEMP] server shutting down"
    assert raw_tls.closed_by_server()
    assert server.stop() == 0
    assert len(inbox_messages(data_dir.root, DEMO)) == 1


def test_malformed_input_gets_errors_not_tracebacks(raw_tls: Raw) -> None:
    raw_tls.send(b"\xff\xfe\xfd\r\nUSER \xc3\x28\r\n" + b"A" * 400 + b"\r\nRETR 1\r\n\x00\r\n")
    assert raw_tls.line() == "-ERR Unknown command"
    assert raw_tls.line() == "-ERR Invalid UTF-8 in command arguments"
    assert raw_tls.line() == "-ERR Line too long"
    assert raw_tls.line() == "-ERR RETR is not valid before login"
    assert raw_tls.line() == "-ERR Invalid character in command line"
    assert raw_tls.command("QUIT").startswith("+OK")


def test_auth_scram_and_scram_plus_through_the_server(server: ServerProcess, data_dir: DataDir) -> None:
    """SCRAM-SHA-256 with scramp once a password login made the secret (decision 0068); -PLUS bound to the
    tls-exporter both ends read on this TLS 1.3 connection; a wrong password refused."""
    raw = Raw(server.port("pop3s"), context=tls_context(data_dir))
    raw.line()
    assert raw.login().startswith("+OK")  # makes the account's SCRAM secret
    raw.command("QUIT")
    raw.close()
    for password, expected in ((DEMO_PW, "+OK Logged in"), ("wrong password", "-ERR [AUTH]")):
        raw = Raw(server.port("pop3s"), context=tls_context(data_dir))
        raw.line()
        client = ScramClient(["SCRAM-SHA-256"], DEMO, password)
        first = raw.command(
            f"AUTH SCRAM-SHA-256 {base64.b64encode(client.get_client_first().encode()).decode()}"
        )
        client.set_server_first(base64.b64decode(first[2:]).decode())
        reply = raw.command(base64.b64encode(client.get_client_final().encode()).decode())
        if reply.startswith("+ "):
            client.set_server_final(base64.b64decode(reply[2:]).decode())
            reply = raw.command("")
        assert reply.startswith(expected), reply
        raw.close()
    raw = Raw(server.port("pop3s"), context=tls_context(data_dir))
    raw.line()
    binding = tls_exporter(raw.sock)  # type: ignore[arg-type]
    assert binding is not None
    bare = f"n={DEMO},r=popnonce"
    challenge = raw.command(f"AUTH SCRAM-SHA-256-PLUS {b64(PLUS_HEADER + bare.encode())}")
    final, expected = plus_client_final(DEMO_PW, binding, bare, base64.b64decode(challenge[2:]).decode())
    assert base64.b64decode(raw.command(b64(final.encode()))[2:]).decode() == expected
    assert raw.command("").startswith("+OK Logged in")
    raw.close()
