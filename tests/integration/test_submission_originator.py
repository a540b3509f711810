"""Submission on a real server process: who a message says it is from (From, Sender, Resent-*), envelope
addresses with characters no address may hold, client bytes that must never reach a reply unescaped, and the
Received header's TLS clause.

One server serves the module; every check uses its own connection (STARTTLS and AUTH PLAIN on the
submission port, as a mail client does). The account is demo@example.test; it also owns the alias
demo.alias@example.test, but not other@example.test (another account) nor team@example.test (a list alias
of both)."""

from __future__ import annotations

import base64
import re
import socket
import ssl
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.integration.harness import DataDir, ServerProcess, cli, make_data_dir
from tests.integration.mailcheck import inbox_messages
from tests.smtp.originator_corpus import CORPUS

pytestmark = pytest.mark.integration

DEMO = "demo@example.test"
PASSWORD = "demo-secret-pw"
#: RFC 5321 4.2 reply line: code, "-" or " ", textstring (HT, SP, printable US-ASCII); 4.5.3.1.5: at most 512
#: octets with the CRLF.
REPLY_LINE = re.compile(rb"[2-5][0-9][0-9][ -][\t\x20-\x7e]*")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> DataDir:
    data = make_data_dir(tmp_path_factory.mktemp("originator") / "data", users=("demo", "other"))
    cli("alias", "add", "demo.alias@example.test", DEMO, config=data.config)
    cli("alias", "add", "team@example.test", DEMO, "other@example.test", config=data.config)
    text = data.config.read_text()
    text, count = re.subn(r"(?m)^max_messages_per_hour = .*$", "max_messages_per_hour = 100000", text)
    assert count == 1
    data.config.write_text(text)
    return data


@pytest.fixture(scope="module")
def server(data: DataDir) -> Iterator[ServerProcess]:
    proc = ServerProcess(data).start()
    try:
        yield proc
    finally:
        if proc.proc is not None and proc.proc.poll() is None:
            assert proc.stop() == 0, proc.log()
    assert "Traceback" not in proc.log(), proc.log()


class Client:
    """A raw SMTP client: sends octets as given, and checks every reply line's form (RFC 5321 4.2)."""

    def __init__(self, port: int) -> None:
        self.sock: socket.socket = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buf = b""
        assert self.reply()[0] == 220

    def reply(self) -> tuple[int, bytes]:
        """One reply: its code and its last line's text (after the code)."""
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"closed; buffered {self.buf!r}")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            assert REPLY_LINE.fullmatch(line), line
            assert len(line) + 2 <= 512, line
            if line[3:4] == b" ":
                return int(line[:3]), line[4:]

    def command(self, line: bytes) -> tuple[int, bytes]:
        self.sock.sendall(line + b"\r\n")
        return self.reply()

    def starttls_and_login(self) -> None:
        assert self.command(b"EHLO client.test")[0] == 250
        assert self.command(b"STARTTLS")[0] == 220
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        self.sock = context.wrap_socket(self.sock, server_hostname="localhost")
        assert self.command(b"EHLO client.test")[0] == 250
        token = base64.b64encode(f"\0{DEMO}\0{PASSWORD}".encode())
        assert self.command(b"AUTH PLAIN " + token)[0] == 235

    def data(self, message: bytes) -> tuple[int, bytes]:
        code, text = self.command(b"DATA")
        assert code == 354, text
        self.sock.sendall(re.sub(rb"(?m)^\.", b"..", message) + b"\r\n.\r\n")
        return self.reply()

    def close(self) -> None:
        self.sock.close()


def submission(server: ServerProcess) -> Client:
    client = Client(server.port("submission"))
    client.starttls_and_login()
    return client


def submit(server: ServerProcess, header: bytes, *, mail: bytes = b"MAIL FROM:<demo@example.test>") -> bytes:
    """Submit a message with this header block; the reply to the end of data as "code enhanced"."""
    client = submission(server)
    try:
        assert client.command(mail)[0] == 250
        assert client.command(b"RCPT TO:<other@example.test>")[0] == 250
        code, text = client.data(header + b"\r\nBody.\r\n")
        return f"{code} {text[:5].decode()}".encode()
    finally:
        client.close()


@pytest.mark.parametrize(("header", "expected"), [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS])
def test_from_sender_and_resent_from_must_be_the_accounts_own(
    server: ServerProcess, header: bytes, expected: bytes
) -> None:
    assert submit(server, header + b"To: other@example.test\r\nSubject: corpus\r\n") == expected


def test_a_refusal_names_the_address_escaped_and_never_kills_the_session(server: ServerProcess) -> None:
    client = submission(server)
    try:
        client.command(b"MAIL FROM:<demo@example.test>")
        client.command(b"RCPT TO:<other@example.test>")
        code, text = client.data(b"From: demo@example.test\x01\r\nSubject: x\r\n\r\nx\r\n")
        assert code == 553
        assert text.startswith(b"5.7.1 ")
        code, text = client.command(b"MAIL FROM:<demo@example.test>")  # the session goes on
        assert code == 250
        client.command(b"RCPT TO:<other@example.test>")
        code, text = client.data("From: Bob <bob\u2028@example.test>\r\n\r\nx\r\n".encode())
        assert code == 553
        assert b"\xe2" not in text
        client.command(b"MAIL FROM:<demo@example.test> SMTPUTF8")
        client.command(b"RCPT TO:<other@example.test>")
        code, text = client.data("From: Böb <böb@remote.test>\r\n\r\nx\r\n".encode())
        assert code == 553
        assert b"b\\x{F6}b@remote.test" in text
    finally:
        client.close()
    assert "Traceback" not in server.log()


def test_an_smtputf8_submission_may_use_a_non_ascii_from_it_owns(
    server: ServerProcess, data: DataDir
) -> None:
    cli("alias", "add", "démo@example.test", DEMO, config=data.config)
    client = submission(server)
    try:
        assert client.command("MAIL FROM:<démo@example.test> SMTPUTF8".encode())[0] == 250
        assert client.command(b"RCPT TO:<other@example.test>")[0] == 250
        code, _ = client.data("From: Démo <démo@example.test>\r\nSubject: utf8\r\n\r\nx\r\n".encode())
        assert code == 250
    finally:
        client.close()


# -- envelope addresses: characters no address may hold (RFC 6531, RFC 8264) ---------------------------------

BAD_CHARACTERS = [
    "\u0085",
    "\u2028",
    "\u2029",
    "\u202e",
    "\u200f",
    "\u2066",
    "\u200b",
    "\ufeff",
    "\u00ad",
    "\ue000",
]


@pytest.mark.parametrize("char", BAD_CHARACTERS, ids=[f"U+{ord(c):04X}" for c in BAD_CHARACTERS])
def test_envelope_addresses_with_control_or_invisible_characters_are_refused_on_25_and_587(
    server: ServerProcess, char: str
) -> None:
    mx = Client(server.port("smtp"))
    try:
        assert mx.command(b"EHLO client.test")[0] == 250
        code, text = mx.command(f"MAIL FROM:<bob{char}@remote.test> SMTPUTF8".encode())
        assert (code, text[:5]) == (553, b"5.1.7"), text
        assert f"U+{ord(char):04X}".encode() in text
        assert mx.command(b"MAIL FROM:<bob@remote.test> SMTPUTF8")[0] == 250
        code, text = mx.command(f"RCPT TO:<demo{char}@example.test>".encode())
        assert (code, text[:5]) == (553, b"5.1.3"), text
    finally:
        mx.close()
    client = submission(server)
    try:
        code, text = client.command(f"MAIL FROM:<demo{char}@example.test> SMTPUTF8".encode())
        assert (code, text[:5]) == (553, b"5.1.7"), text
        assert client.command(b"MAIL FROM:<demo@example.test> SMTPUTF8")[0] == 250
        code, text = client.command(f"RCPT TO:<bob{char}@remote.test>".encode())
        assert (code, text[:5]) == (553, b"5.1.3"), text
    finally:
        client.close()


# -- arbitrary client octets: always a well-formed reply, never a traceback ----------------------------------


def _one_line(data: bytes) -> bytes:
    return data.replace(b"\r", b"").replace(b"\n", b"")


class Reconnecting:
    """One connection reused across Hypothesis examples, replaced after the server's 421 (too many errors).
    A connection closed without a reply fails the test (Client.reply raises ConnectionError)."""

    def __init__(self, server: ServerProcess, *, login: bool) -> None:
        self.server = server
        self.login = login
        self.client: Client | None = None

    def command(self, line: bytes) -> int:
        if self.client is None:
            if self.login:
                self.client = submission(self.server)
            else:
                self.client = Client(self.server.port("smtp"))
                assert self.client.command(b"EHLO fuzz.test")[0] == 250
        code, _ = self.client.command(line)
        if code == 421:
            self.drop()
        return code

    def data(self, message: bytes) -> int:
        assert self.client is not None
        return self.client.data(message)[0]

    def drop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


@pytest.fixture(scope="module")
def connections(server: ServerProcess) -> Iterator[tuple[Reconnecting, Reconnecting]]:
    mx, sub = Reconnecting(server, login=False), Reconnecting(server, login=True)
    try:
        yield mx, sub
    finally:
        mx.drop()
        sub.drop()


#: Octets for an envelope address: arbitrary, UTF-8 text, or a local part of UTF-8 text in our domain.
_ENVELOPE = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=100).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.text(max_size=40).map(lambda s: (s + "@example.test").encode("utf-8", "surrogatepass")),
)


@settings(max_examples=150)
@given(sender=_ENVELOPE, recipient=_ENVELOPE, utf8=st.booleans())
def test_arbitrary_octets_in_mail_and_rcpt_get_well_formed_replies(
    server: ServerProcess,
    connections: tuple[Reconnecting, Reconnecting],
    sender: bytes,
    recipient: bytes,
    utf8: bool,
) -> None:
    for conn in connections:
        try:
            if conn.command(b"RSET") != 250:
                continue
            suffix = b" SMTPUTF8" if utf8 else b""
            if conn.command(b"MAIL FROM:<" + _one_line(sender) + b">" + suffix) == 250:
                for line in (b"RCPT TO:<" + _one_line(recipient) + b">", b"RCPT TO:" + _one_line(recipient)):
                    if conn.command(line) == 421:
                        break
        except BaseException:
            conn.drop()
            raise
    assert "Traceback" not in server.log()


_FIELD_NAMES = st.sampled_from(
    [b"From", b"FROM", b"from", b"From ", b"Sender", b"Resent-From", b"Resent-Sender"]
)


@settings(max_examples=150)
@given(
    fields=st.lists(st.tuples(_FIELD_NAMES, _ENVELOPE), min_size=1, max_size=4),
    body=st.binary(max_size=64),
)
def test_arbitrary_octets_in_originator_fields_get_well_formed_replies(
    server: ServerProcess,
    connections: tuple[Reconnecting, Reconnecting],
    fields: list[tuple[bytes, bytes]],
    body: bytes,
) -> None:
    conn = connections[1]
    try:
        code = conn.command(b"MAIL FROM:<demo@example.test>")
        if code == 421:  # the previous examples' refusals reached max_errors: a new connection
            code = conn.command(b"MAIL FROM:<demo@example.test>")
        assert code == 250
        assert conn.command(b"RCPT TO:<demo@example.test>") == 250
        header = b"".join(name + b":" + value + b"\r\n" for name, value in fields)
        assert conn.data(header + b"\r\n" + body) in (250, 553, 554)
    except BaseException:
        conn.drop()
        raise
    assert "Traceback" not in server.log()


# -- the Received header ------------------------------------------------------------------------------------


def test_the_received_header_states_tls_in_the_usual_form(server: ServerProcess, data: DataDir) -> None:
    client = submission(server)
    try:
        client.command(b"MAIL FROM:<demo@example.test>")
        client.command(b"RCPT TO:<other@example.test>")
        assert client.data(b"From: demo@example.test\r\nSubject: tls clause\r\n\r\nx\r\n")[0] == 250
    finally:
        client.close()
    stored = [raw for _, raw in inbox_messages(data.root, "other@example.test") if b"tls clause" in raw]
    head = re.sub(rb"\r\n[ \t]+", b" ", stored[-1].split(b"\r\n\r\n", 1)[0]).decode()
    unfolded = next(line for line in head.split("\r\n") if line.startswith("Received:"))
    match = re.search(r"\(using (TLSv1\.[23]) with cipher ([A-Z0-9_-]+) \((\d+)/(\d+) bits\)\)", unfolded)
    assert match is not None, unfolded
    assert "version=" not in unfolded
    assert "(using (" not in unfolded
    assert _comments_balanced(unfolded)


def _comments_balanced(text: str) -> bool:
    """RFC 5322 3.2.2: every "(" closed (comments nest); no ")" without its "("."""
    depth = 0
    for ch in text:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0
