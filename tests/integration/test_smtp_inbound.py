"""Inbound SMTP on a real server process: real sockets, real TLS, the real store."""

from __future__ import annotations

import smtplib
import socket
import ssl
import threading
from email.message import EmailMessage

import pytest

from tests.integration.harness import DataDir, ServerProcess, cli
from tests.integration.mailcheck import body_after_trace, inbox_messages

pytestmark = pytest.mark.integration


def raw_message(subject: str = "test", body: str = "Hello.\r\n", to: str = "demo@example.test") -> bytes:
    return (
        f"From: sender@remote.test\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@remote.test>\r\n\r\n{body}"
    ).encode()


class Raw:
    """A raw SMTP client socket for protocol edge cases."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> tuple[int, list[str]]:
        """One complete (possibly multi-line) reply."""
        lines: list[str] = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"closed after {lines!r}")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            text = line.decode()
            lines.append(text)
            if len(text) < 4 or text[3] != "-":
                return int(text[:3]), lines

    def command(self, line: str) -> tuple[int, list[str]]:
        self.send(line.encode() + b"\r\n")
        return self.reply()

    def close(self) -> None:
        self.sock.close()


def test_smtplib_delivers_to_the_inbox_byte_exact_with_trace_headers(
    server: ServerProcess, data_dir: DataDir
) -> None:
    raw = raw_message("byte exact", body="Line one\r\n.dot line\r\n\r\nlast\r\n")
    with smtplib.SMTP("127.0.0.1", server.port(), local_hostname="client.remote.test") as smtp:
        code, _ = smtp.ehlo()
        assert code == 250
        for ext in (
            "pipelining",
            "size",
            "8bitmime",
            "smtputf8",
            "enhancedstatuscodes",
            "starttls",
            "chunking",
        ):
            assert smtp.has_extn(ext), ext
        smtp.sendmail("sender@remote.test", ["demo@example.test"], raw)
    ((uid, stored),) = inbox_messages(data_dir.root, "demo@example.test")
    assert uid == 1
    assert body_after_trace(stored) == raw
    assert stored.startswith(
        b"Return-Path: <sender@remote.test>\r\nReceived: from client.remote.test ([127.0.0.1])"
    )
    assert b"for <demo@example.test>" in stored


def test_a_helo_name_that_is_not_a_domain_cannot_forge_a_trace_hop(
    server: ServerProcess, data_dir: DataDir
) -> None:
    """RFC 5321 4.4: the From-domain of Received is a domain or address literal; an EHLO argument carrying
    header structure is not copied into it (it made "from x) by evil.example (...); Mon, 1 Jan 2001 ...")."""
    forged = "x) by evil.example (via [1.2.3.4]); Mon, 1 Jan 2001"
    raw = raw_message("forged hop")
    with smtplib.SMTP("127.0.0.1", server.port(), local_hostname=forged) as smtp:
        smtp.sendmail("sender@remote.test", ["demo@example.test"], raw)
    stored = next(m for _, m in inbox_messages(data_dir.root, "demo@example.test") if b"forged hop" in m)
    received = stored.split(b"\r\n\tby ", 1)[0].split(b"\r\n")[-1]
    hint = b"x??by?evil.example??via?[1.2.3.4]???Mon??1?Jan?2001"
    assert received == b"Received: from [127.0.0.1] ([127.0.0.1] helo=" + hint + b")"
    assert stored.count(b"\tby ") == 1
    assert b"evil.example (" not in stored


def test_unknown_user_and_foreign_domain_are_refused_at_rcpt(server: ServerProcess) -> None:
    with smtplib.SMTP("127.0.0.1", server.port()) as smtp:
        smtp.ehlo()
        smtp.mail("sender@remote.test")
        code, msg = smtp.rcpt("nobody@example.test")
        assert code == 550
        assert msg.startswith(b"5.1.1")
        code, msg = smtp.rcpt("victim@elsewhere.test")
        assert code == 554
        assert msg.startswith(b"5.7.1")
        assert b"Relay" in msg
        code, _ = smtp.rcpt("demo@example.test")
        assert code == 250


def test_aliases_catch_all_and_plus_addressing_store_one_copy_per_mailbox(
    server: ServerProcess, data_dir: DataDir
) -> None:
    cli(
        "alias", "add", "team@example.test", "demo@example.test", "other@example.test", config=data_dir.config
    )
    cli("alias", "add", "@example.test", "other@example.test", config=data_dir.config)
    raw = raw_message("fan out")
    with smtplib.SMTP("127.0.0.1", server.port()) as smtp:
        refused = smtp.sendmail(
            "sender@remote.test",
            ["team@example.test", "demo+news@example.test", "DEMO@example.test", "anything@example.test"],
            raw,
        )
        assert refused == {}
    demo = inbox_messages(data_dir.root, "demo@example.test")
    other = inbox_messages(data_dir.root, "other@example.test")
    assert len(demo) == 1
    assert len(other) == 1
    assert body_after_trace(demo[0][1]) == raw
    # several recipients: the Received header does not name one
    assert b"\tfor <" not in demo[0][1]


def test_starttls_upgrade_is_recorded_in_the_received_header(
    server: ServerProcess, data_dir: DataDir
) -> None:
    context = ssl.create_default_context(cafile=str(data_dir.root / "tls" / "cert.pem"))
    raw = raw_message("over tls")
    with smtplib.SMTP("localhost", server.port()) as smtp:
        smtp.ehlo()
        smtp.starttls(context=context)
        code, _ = smtp.ehlo()
        assert code == 250
        assert not smtp.has_extn("starttls")
        smtp.sendmail("sender@remote.test", ["demo@example.test"], raw)
    ((_, stored),) = inbox_messages(data_dir.root, "demo@example.test")
    assert b"with ESMTPS" in stored
    assert b"(using TLSv1.3 with cipher " in stored or b"(using TLSv1.2 with cipher " in stored
    assert body_after_trace(stored) == raw


def test_pipelined_transaction_is_answered_in_order(server: ServerProcess, data_dir: DataDir) -> None:
    c = Raw(server.port())
    assert c.reply()[0] == 220
    assert c.command("EHLO pipeline.test")[0] == 250
    body = raw_message("pipelined")
    c.send(
        b"MAIL FROM:<s@remote.test>\r\nRCPT TO:<nobody@example.test>\r\n"
        b"RCPT TO:<demo@example.test>\r\nDATA\r\n"
    )
    assert [c.reply()[0] for _ in range(4)] == [250, 550, 250, 354]
    c.send(body + b".\r\nQUIT\r\n")
    assert c.reply()[0] == 250
    assert c.reply()[0] == 221
    c.close()
    ((_, stored),) = inbox_messages(data_dir.root, "demo@example.test")
    assert body_after_trace(stored) == body


def test_bdat_chunks_make_one_message(server: ServerProcess, data_dir: DataDir) -> None:
    body = raw_message("chunked")
    first, second = body[:20], body[20:]
    c = Raw(server.port())
    c.reply()
    c.command("EHLO chunks.test")
    assert c.command("MAIL FROM:<s@remote.test>")[0] == 250
    assert c.command("RCPT TO:<demo@example.test>")[0] == 250
    c.send(f"BDAT {len(first)}\r\n".encode() + first)
    assert c.reply()[0] == 250
    c.send(f"BDAT {len(second)} LAST\r\n".encode() + second)
    code, lines = c.reply()
    assert code == 250, lines
    c.command("QUIT")
    c.close()
    ((_, stored),) = inbox_messages(data_dir.root, "demo@example.test")
    assert body_after_trace(stored) == body


@pytest.mark.parametrize("smuggle", [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n"])
def test_smtp_smuggling_sequences_never_end_the_message(
    server: ServerProcess, data_dir: DataDir, smuggle: bytes
) -> None:
    c = Raw(server.port())
    c.reply()
    c.command("EHLO smuggler.test")
    c.command("MAIL FROM:<s@remote.test>")
    c.command("RCPT TO:<demo@example.test>")
    assert c.command("DATA")[0] == 354
    c.send(
        b"Subject: first\r\n\r\nhello"
        + smuggle
        + b"MAIL FROM:<evil@remote.test>\r\nRCPT TO:<other@example.test>\r\nDATA\r\n"
        + b"Subject: smuggled\r\n\r\nx\r\n.\r\n"
    )
    code, _ = c.reply()
    assert code == 250
    assert c.command("QUIT")[0] == 221
    c.close()
    demo = inbox_messages(data_dir.root, "demo@example.test")
    assert len(demo) == 1
    assert b"Subject: smuggled" in demo[0][1]  # it is part of the one message, not a second transaction
    assert inbox_messages(data_dir.root, "other@example.test") == []


def test_commands_pipelined_behind_starttls_are_discarded(server: ServerProcess, data_dir: DataDir) -> None:
    c = Raw(server.port())
    c.reply()
    c.command("EHLO inject.test")
    c.send(b"STARTTLS\r\nMAIL FROM:<evil@remote.test>\r\nRCPT TO:<demo@example.test>\r\n")
    code, _ = c.reply()
    assert code == 220
    assert c.buf == b""
    context = ssl.create_default_context(cafile=str(data_dir.root / "tls" / "cert.pem"))
    tls = context.wrap_socket(c.sock, server_hostname="localhost")
    c.sock = tls
    # The injected MAIL/RCPT were dropped: a new EHLO is needed and no transaction is open.
    code, _ = c.command("RCPT TO:<demo@example.test>")
    assert code == 503
    assert c.command("EHLO inject.test")[0] == 250
    assert c.command("RCPT TO:<demo@example.test>")[0] == 503
    c.command("QUIT")
    c.close()


def test_malformed_and_unknown_commands_get_errors_and_the_session_goes_on(server: ServerProcess) -> None:
    c = Raw(server.port())
    c.reply()
    assert c.command("FOO bar")[0] == 500
    assert c.command("EHLO")[0] == 501
    assert c.command("EHLO ok.test")[0] == 250
    assert c.command("MAIL FROM:missing-brackets")[0] == 501
    assert c.command("MAIL FROM:<a@b.test> BOGUS=1")[0] == 555
    c.send(b"NOOP " + b"x" * 600 + b"\r\n")
    code, lines = c.reply()
    assert code == 500, lines
    c.send(b"\xff\xfe\r\n")
    assert c.reply()[0] in (500, 501)
    assert c.command("NOOP")[0] == 250
    assert c.command("QUIT")[0] == 221
    c.close()


def test_sigterm_lets_a_transaction_in_flight_finish_and_tells_idle_sessions_421(
    server: ServerProcess, data_dir: DataDir
) -> None:
    busy, idle = Raw(server.port()), Raw(server.port())
    for c in (busy, idle):
        c.reply()
        c.command("EHLO shutdown.test")
    busy.command("MAIL FROM:<s@remote.test>")
    busy.command("RCPT TO:<demo@example.test>")
    assert busy.command("DATA")[0] == 354
    assert server.proc is not None
    server.proc.terminate()
    # the idle session is told at once
    code, _ = idle.reply()
    assert code == 421
    body = raw_message("in flight")
    busy.send(body + b".\r\n")
    assert busy.reply()[0] == 250
    assert server.proc.wait(60) == 0
    ((_, stored),) = inbox_messages(data_dir.root, "demo@example.test")
    assert body_after_trace(stored) == body
    busy.close()
    idle.close()


def test_a_connection_over_the_per_address_cap_closes_that_address_oldest_idle_one_with_421(
    data_dir: DataDir,
) -> None:
    """Over the cap, the address's oldest connection waiting for a command makes room (docs/decisions/0028);
    a refusal (421 instead of the greeting) is left for when no connection can make room."""
    text = data_dir.config.read_text().replace("max_connections_per_ip = 20", "max_connections_per_ip = 2")
    data_dir.config.write_text(text)
    proc = ServerProcess(data_dir).start()
    try:
        keep = [Raw(proc.port()) for _ in range(2)]
        for c in keep:
            assert c.reply()[0] == 220
        extra = Raw(proc.port())
        assert extra.reply()[0] == 220
        code, lines = keep[0].reply()
        assert code == 421, lines
        assert lines[0].startswith("421 4.7.0 "), lines
        assert keep[1].command("NOOP")[0] == 250
        assert extra.command("NOOP")[0] == 250
        extra.close()
        for c in keep:
            c.close()
    finally:
        assert proc.stop() == 0


def test_a_transaction_log_line_names_id_client_sender_recipients_size_and_result(
    server: ServerProcess, data_dir: DataDir
) -> None:
    with smtplib.SMTP("127.0.0.1", server.port()) as smtp:
        msg = EmailMessage()
        msg["From"] = "s@remote.test"
        msg["To"] = "demo@example.test"
        msg["Subject"] = "logged"
        msg.set_content("x")
        smtp.send_message(msg)
    assert server.stop() == 0
    lines = [line for line in server.log().splitlines() if "smtp id=" in line]
    assert len(lines) == 1
    line = lines[0]
    for part in (
        "client=127.0.0.1",
        "from=<s@remote.test>",
        "to=<demo@example.test>",
        "size=",
        "result=",
        "duration=",
    ):
        assert part in line, line


def test_concurrent_clients_all_get_their_mail_stored(server: ServerProcess, data_dir: DataDir) -> None:
    errors: list[BaseException] = []

    def sender(n: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", server.port()) as smtp:
                for i in range(10):
                    smtp.sendmail("s@remote.test", ["demo@example.test"], raw_message(f"c{n} m{i}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stored = inbox_messages(data_dir.root, "demo@example.test")
    assert [uid for uid, _ in stored] == list(range(1, 81))
    subjects = sorted(body_after_trace(s).split(b"\r\n")[2] for _, s in stored)
    assert subjects == sorted(f"Subject: c{n} m{i}".encode() for n in range(8) for i in range(10))


def test_smtputf8_addresses_and_8bit_headers_are_delivered_intact(
    server: ServerProcess, data_dir: DataDir
) -> None:
    data_dir.add_user("jürgen@example.test", "jürgen-secret-pw")
    raw = (
        "From: José Müller <josé@remote.test>\r\nTo: jürgen@example.test\r\nSubject: Grüße aus Köln ☕\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nSchöne Grüße!\r\n"
    ).encode()
    c = Raw(server.port())
    c.reply()
    c.command("EHLO utf8.test")
    assert c.command("MAIL FROM:<josé@remote.test> SMTPUTF8 BODY=8BITMIME")[0] == 250
    assert c.command("RCPT TO:<jürgen@example.test>")[0] == 250
    assert c.command("DATA")[0] == 354
    c.send(raw + b".\r\n")
    assert c.reply()[0] == 250
    # without SMTPUTF8 a non-ASCII address is refused (RFC 6531 section 3.5)
    assert c.command("MAIL FROM:<josé@remote.test>")[0] == 550
    c.command("QUIT")
    c.close()
    ((_, stored),) = inbox_messages(data_dir.root, "jürgen@example.test")
    assert body_after_trace(stored) == raw
    assert stored.startswith("Return-Path: <josé@remote.test>\r\n".encode())
    assert b"with UTF8SMTP" in stored


def test_a_silent_client_is_told_421_at_the_timeout_and_nothing_half_received_is_stored(
    data_dir: DataDir,
) -> None:
    text = data_dir.config.read_text()
    text = text.replace("command_timeout = 300", "command_timeout = 0.5").replace(
        "data_timeout = 180", "data_timeout = 0.5"
    )
    data_dir.config.write_text(text)
    proc = ServerProcess(data_dir).start()
    try:
        idle = Raw(proc.port())
        idle.reply()
        idle.command("EHLO slow.test")
        code, lines = idle.reply()  # nothing sent: the server speaks first when its timer runs out
        assert code == 421, lines
        assert lines[0].startswith("421 4.4.2"), lines
        assert idle.sock.recv(10) == b""
        idle.close()

        mid_data = Raw(proc.port())
        mid_data.reply()
        mid_data.command("EHLO slow.test")
        mid_data.command("MAIL FROM:<s@remote.test>")
        mid_data.command("RCPT TO:<demo@example.test>")
        assert mid_data.command("DATA")[0] == 354
        mid_data.send(b"Subject: never finished\r\n\r\npart of a body")
        code, _ = mid_data.reply()
        assert code == 421
        mid_data.close()
    finally:
        assert proc.stop() == 0
    assert inbox_messages(data_dir.root, "demo@example.test") == []


def test_helo_clients_and_malformed_mime_are_accepted_and_stored_byte_exact(
    server: ServerProcess, data_dir: DataDir
) -> None:
    raw = (
        b"From: old@remote.test\r\nTo: demo@example.test\r\nSubject: broken mime\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="never-closed"\r\nContent-Type: also/duplicated\r\n'
        b"garbage header line without colon\r\n\r\n"
        b"--never-closed\r\nContent-Type: text/plain; charset=klingon\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!\r\n--never-closed\r\n"
        b"Content-Type: message/rfc822\r\n\r\n\xff\xfe binary junk \x00 with a NUL\r\n"
    )
    c = Raw(server.port())
    c.reply()
    code, lines = c.command("HELO old-client.test")
    assert code == 250
    assert len(lines) == 1
    assert c.command("MAIL FROM:<old@remote.test>")[0] == 250
    assert c.command("RCPT TO:<demo@example.test>")[0] == 250
    assert c.command("DATA")[0] == 354
    c.send(raw + b".\r\n")
    assert c.reply()[0] == 250
    c.command("QUIT")
    c.close()
    ((_, stored),) = inbox_messages(data_dir.root, "demo@example.test")
    assert body_after_trace(stored) == raw
    assert b"with SMTP id" in stored


def test_a_message_over_the_size_limit_gets_552_and_the_session_goes_on(data_dir: DataDir) -> None:
    text = data_dir.config.read_text().replace("max_message_size = 52428800", "max_message_size = 10000")
    data_dir.config.write_text(text)
    proc = ServerProcess(data_dir).start()
    try:
        with smtplib.SMTP("127.0.0.1", proc.port()) as smtp:
            smtp.ehlo()
            assert smtp.esmtp_features["size"] == "10000"
            with pytest.raises(smtplib.SMTPSenderRefused) as declared:
                # smtplib declares SIZE= itself when the server offers SIZE
                smtp.sendmail("s@remote.test", ["demo@example.test"], raw_message(body="x" * 20000))
            assert declared.value.smtp_code == 552
            # undeclared: the data is read to its end and refused
            smtp.mail("s@remote.test")
            smtp.rcpt("demo@example.test")
            code, msg = smtp.data(raw_message(body="y" * 20000))
            assert code == 552
            assert msg.startswith(b"5.3.4")
            smtp.sendmail("s@remote.test", ["demo@example.test"], raw_message("small"))
    finally:
        assert proc.stop() == 0
    ((_, stored),) = inbox_messages(data_dir.root, "demo@example.test")
    assert body_after_trace(stored) == raw_message("small")
