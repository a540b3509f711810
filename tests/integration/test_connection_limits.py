"""Connections that never log in, on a real `postoffice run` process (issue 9, docs/decisions/0028): idle
connections from many addresses cannot lock users out, clients that do not log in are closed at the login
deadline, commands and message data trickled a byte at a time meet their deadline; and the listeners offer
only AEAD suites with TLS 1.2 (docs/decisions/0029).

No sleeps as synchronisation: each step waits for the server's own reply or close, bounded by a timeout. The
trickling clients pace their bytes; that pace is the attack being tested.
"""

from __future__ import annotations

import imaplib
import re
import select
import smtplib
import socket
import ssl
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.integration.harness import DataDir, ServerProcess, make_data_dir
from tests.integration.mailcheck import inbox_messages

pytestmark = pytest.mark.integration

USER = "demo@example.test"
PASSWORD = "demo-secret-pw"  # make_data_dir's password for "demo"
STEP = 20.0  # the longest any one step may take
LOGIN_TIMEOUT = 3.0  # short, yet long enough for a TLS handshake and an argon2 check on a busy machine


def set_option(text: str, section: str, key: str, value: str) -> str:
    """`key = value` in `[section]` of the config `postoffice init` wrote (it names every key)."""
    pattern = re.compile(rf"(?ms)^(\[{re.escape(section)}\]\n.*?^){re.escape(key)} = [^\n]*$")
    text, count = pattern.subn(rf"\g<1>{key} = {value}", text, count=1)
    assert count == 1, f"no {key} in [{section}]"
    return text


def start(data: DataDir, options: list[tuple[str, str, str]]) -> ServerProcess:
    text = data.config.read_text()
    for section, key, value in options:
        text = set_option(text, section, key, value)
    data.config.write_text(text)
    return ServerProcess(data).start()


def stop(server: ServerProcess) -> None:
    if server.proc is not None and server.proc.poll() is None:
        assert server.stop() == 0, server.log()
    else:
        server.kill()


class Line:
    """A blocking line client on a raw socket, optionally from another loopback address or over TLS."""

    def __init__(self, port: int, source: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=STEP, source_address=(source, 0))
        self.sock: socket.socket = tls.wrap_socket(sock, server_hostname="localhost") if tls else sock
        self.buf = b""

    def line(self) -> bytes:
        """The next line (CRLF included); b"" when the server closed the connection first (a reset counts:
        a socket the server closed with bytes of ours still unread, a trickled one, answers with RST)."""
        while b"\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                rest, self.buf = self.buf, b""
                return rest
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line + b"\n"

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def until(self, prefix: bytes, send: bytes | None = None) -> bytes:
        """Send, then read lines up to the one starting with `prefix`, and return it."""
        if send is not None:
            self.send(send)
        while not (line := self.line()).startswith(prefix):
            assert line, f"closed while waiting for {prefix!r}"
        return line

    def close(self) -> None:
        self.sock.close()


def client_tls(data: DataDir) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(data.root / "tls" / "cert.pem"))


def message(subject: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = USER
    msg["To"] = USER
    msg["Subject"] = subject
    msg.set_content("Hello.")
    return msg.as_bytes()


# -- the attack of the issue: idle connections from 25 addresses ---------------------------------------------


def test_idle_connections_from_25_addresses_do_not_lock_out_imap_and_submission_users(tmp_path: Path) -> None:
    """Issue 9: 500 idle connections (20 per address from 25 loopback addresses) made every new SMTP client
    get 421 and every new IMAP client BYE. With the default caps (500 per service, 20 per address) a user
    still logs in over IMAP and submission, and a session already in IDLE is not touched."""
    data = make_data_dir(tmp_path / "data")
    # the flood must still be there when the user comes: only the eviction may make room
    server = start(data, [("limits", "login_timeout", "600")])
    tls = client_tls(data)
    flood: dict[str, list[Line]] = {"imap": [], "submission": []}
    idler: Line | None = None
    try:
        idler = Line(server.port("imaps"), tls=tls)
        idler.until(b"* OK")
        idler.until(b"a OK", f'a LOGIN "{USER}" "{PASSWORD}"\r\n'.encode())
        idler.until(b"b OK", b"b SELECT INBOX\r\n")
        idler.until(b"+ ", b"c IDLE\r\n")

        for n in range(25):
            for name in flood:
                for _ in range(20):
                    flood[name].append(Line(server.port(name), source=f"127.0.0.{n + 2}"))
        for conn in flood["imap"]:
            assert conn.line().startswith(b"* OK")
        for conn in flood["submission"]:
            assert conn.line().startswith(b"220")

        with imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=tls, timeout=STEP) as imap:
            assert imap.login(USER, PASSWORD)[0] == "OK"
            assert imap.select("INBOX")[0] == "OK"
            imap.logout()
        with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=STEP) as smtp:
            smtp.starttls(context=tls)
            smtp.login(USER, PASSWORD)
            smtp.sendmail(USER, [USER], message("through the flood"))

        # the IDLE session is still there and hears of the new message
        assert re.match(rb"\* 1 EXISTS", idler.until(b"* 1 EXISTS"))
        idler.until(b"c OK", b"DONE\r\n")

        # room was made by closing connections that had not logged in, each told why
        for name, goodbye in (("imap", b"* BYE [UNAVAILABLE] "), ("submission", b"421 4.7.0 ")):
            readable, _, _ = select.select([c.sock for c in flood[name]], [], [], STEP)
            closed = [c for c in flood[name] if c.sock in readable]
            assert closed
            for conn in closed:
                assert conn.line().startswith(goodbye)
                assert conn.line() == b""
    finally:
        for conn in [*flood["imap"], *flood["submission"], *([idler] if idler else [])]:
            conn.close()
        stop(server)
    log = server.log()
    assert "that has not logged in" in log
    assert "not built yet" not in log  # issue 9 item 18: the default config starts nothing it cannot


# -- one server with short deadlines -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def short(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, DataDir]]:
    data = make_data_dir(tmp_path_factory.mktemp("short") / "data")
    server = start(
        data,
        [
            ("limits", "login_timeout", str(LOGIN_TIMEOUT)),
            ("smtp", "command_timeout", "1"),
            ("smtp", "data_timeout", "1"),
            ("listeners.pop2", "enabled", "true"),
            ("pop3", "max_connections_per_ip", "2"),
        ],
    )
    try:
        yield server, data
    finally:
        stop(server)


def test_clients_that_do_not_log_in_in_time_are_told_and_closed_but_port_25_and_users_are_not(
    short: tuple[ServerProcess, DataDir],
) -> None:
    """Issue 9: an unauthenticated IMAP connection was kept for the full 30-minute autologout. The deadline
    counts from the connection, however busy the client keeps it (the submission client sends NOOPs)."""
    server, data = short
    tls = client_tls(data)
    user = imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=tls, timeout=STEP)
    mx = Line(server.port("smtp"))
    clients = {name: Line(server.port(name)) for name in ("imap", "pop3", "pop2", "submission")}
    try:
        assert user.login(USER, PASSWORD)[0] == "OK"
        assert mx.until(b"220")
        assert mx.until(b"250 ", b"EHLO mx.remote.test\r\n")
        greetings = {"imap": b"* OK", "pop3": b"+OK", "pop2": b"+ POP2", "submission": b"220"}
        for name, client in clients.items():
            assert client.line().startswith(greetings[name])
        goodbyes = {
            "submission": b"421 4.4.2 localhost Login took too long, closing connection\r\n",
            "imap": b"* BYE Autologout; login took too long\r\n",
            "pop3": b"-ERR [SYS/TEMP] login took too long\r\n",
            "pop2": b"- login took too long\r\n",
        }
        for name, goodbye in goodbyes.items():
            client = clients[name]
            # NOOPs within the 1 s command deadline keep port 25 open; the login deadline comes anyway
            answer = keep_busy(client, also=mx) if name == "submission" else client.line()
            assert answer == goodbye
            assert client.line() == b""
        # opened before those, so open for longer than the login timeout: port 25 has no login deadline,
        # and a user who logged in has none either
        assert mx.until(b"250", b"NOOP\r\n").startswith(b"250 ")
        assert user.noop()[0] == "OK"
    finally:
        for client in (mx, *clients.values()):
            client.close()
        user.logout()


def test_a_pop_client_at_its_cap_makes_room_by_closing_its_own_oldest_connection(
    short: tuple[ServerProcess, DataDir],
) -> None:
    """POP3 and POP2 share one pool; at the per-address cap (2 here) the address's oldest pre-login
    connection is told why and closed, and the new one is served."""
    server, _ = short
    source = "127.0.0.7"
    pop2 = Line(server.port("pop2"), source=source)
    pop3 = Line(server.port("pop3"), source=source)
    newer = [pop2, pop3]
    try:
        assert pop2.line().startswith(b"+ POP2")
        assert pop3.line().startswith(b"+OK")
        for goodbye, old in (
            (b"- too many connections, closing this one; try again later\r\n", pop2),
            (b"-ERR [SYS/TEMP] too many connections, closing this one; try again later\r\n", pop3),
        ):
            conn = Line(server.port("pop3"), source=source)
            newer.append(conn)
            assert conn.line().startswith(b"+OK")
            assert old.line() == goodbye
            assert old.line() == b""
        assert newer[-1].until(b"+OK", b"CAPA\r\n")
    finally:
        for conn in newer:
            conn.close()


def keep_busy(conn: Line, also: Line, every: float = 0.3) -> bytes:
    """Send NOOP on `conn` and `also` every `every` seconds, reading their 250s, until `conn` is told
    something else; that answer. `also` must answer 250 all along."""
    for _ in range(int(STEP / every)):
        for client in (conn, also):
            client.send(b"NOOP\r\n")
            answer = client.line()
            if client is conn and not answer.startswith(b"250"):
                return answer
            assert answer.startswith(b"250 "), answer
        readable, _, _ = select.select([conn.sock], [], [], every)
        if readable:
            return conn.line()
    return b""


def trickle(conn: Line, data: bytes, every: float = 0.2) -> tuple[int, bytes]:
    """Send `data` one byte every `every` seconds until the server answers; (bytes sent, its answer)."""
    for sent in range(len(data)):
        conn.send(data[sent : sent + 1])
        readable, _, _ = select.select([conn.sock], [], [], every)
        if readable:
            return sent + 1, conn.line()
    return len(data), b""


def test_a_command_trickled_byte_by_byte_meets_the_command_deadline(
    short: tuple[ServerProcess, DataDir],
) -> None:
    """Issue 9: the SMTP command timeout was per read, so one byte every 5 s kept a session alive."""
    server, _ = short
    conn = Line(server.port("smtp"))
    try:
        conn.until(b"220")
        line = b"EHLO " + b"x" * 40 + b"\r\n"  # 9 s at one byte per 0.2 s; the deadline is 1 s
        sent, answer = trickle(conn, line)
        assert answer.startswith(b"421 4.4.2 "), answer
        assert sent < len(line)
        assert conn.line() == b""
    finally:
        conn.close()


def test_message_data_trickled_byte_by_byte_meets_the_data_deadline(
    short: tuple[ServerProcess, DataDir],
) -> None:
    server, data = short
    before = len(inbox_messages(data.root, USER))
    conn = Line(server.port("smtp"))
    try:
        conn.until(b"220")
        conn.until(b"250 ", b"EHLO mx.remote.test\r\n")
        conn.until(b"250", b"MAIL FROM:<sender@remote.test>\r\n")
        conn.until(b"250", f"RCPT TO:<{USER}>\r\n".encode())
        conn.until(b"354", b"DATA\r\n")
        body = b"Subject: slow\r\n\r\n" + b"x" * 40 + b"\r\n.\r\n"  # 12 s; data deadline 1 s
        sent, answer = trickle(conn, body)
        assert answer.startswith(b"421 4.4.2 "), answer
        assert sent < len(body)
        assert conn.line() == b""
    finally:
        conn.close()
    assert len(inbox_messages(data.root, USER)) == before


@pytest.mark.parametrize("listener", ["imaps", "submissions"])
def test_a_tls12_client_offering_only_cbc_suites_is_refused_and_an_aead_one_served(
    short: tuple[ServerProcess, DataDir], listener: str
) -> None:
    """Issue 9: TLS 1.2 offered ECDHE-RSA-AES128-SHA256 and ECDHE-RSA-AES256-SHA384."""
    server, data = short

    def tls12(ciphers: str) -> ssl.SSLContext:
        context = client_tls(data)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(ciphers)
        return context

    with pytest.raises(ssl.SSLError):
        Line(server.port(listener), tls=tls12("ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES256-SHA384"))
    conn = Line(server.port(listener), tls=tls12("ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES128-GCM-SHA256"))
    try:
        assert conn.line()
        assert isinstance(conn.sock, ssl.SSLSocket)
        assert conn.sock.cipher() == ("ECDHE-RSA-AES128-GCM-SHA256", "TLSv1.2", 128)
    finally:
        conn.close()
