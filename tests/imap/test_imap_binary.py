"""BINARY (RFC 3516): FETCH BINARY[part]<partial>, BINARY.PEEK, BINARY.SIZE and APPEND of a literal8."""

from __future__ import annotations

import base64

from tests.imap.conftest import DEMO, ImapServer, Raw

PAYLOAD = b"\x00\x01binary\x00data\xff" * 3


def _mime() -> bytes:
    encoded = base64.encodebytes(PAYLOAD).replace(b"\n", b"\r\n")
    return (
        b"From: a@remote.test\r\nTo: demo@example.test\r\nSubject: bin\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"caf=C3=A9 =\r\nlatte\r\n"
        b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + encoded
        + b"--b\r\nContent-Type: application/x-odd\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n"
        b"begin 644 x\r\n`\r\nend\r\n"
        b"--b--\r\n"
    )


def _read_response(raw: Raw, tag: str) -> bytes:
    """Everything up to the tagged line, as bytes (literal8 data may hold NUL and CRLF)."""
    data = raw.buf
    while (b"\r\n" + tag.encode() + b" ") not in data:
        chunk = raw.sock.recv(65536)
        assert chunk
        data += chunk
    end = data.index(b"\r\n", data.index(b"\r\n" + tag.encode() + b" ") + 2) + 2
    raw.buf = data[end:]
    return data[:end]


def test_fetch_binary_decodes_and_uses_literal8_only_for_nul(imap_server: ImapServer) -> None:
    imap_server.deliver(DEMO, _mime())
    raw = Raw(imap_server)
    assert "BINARY" in raw.greeting.split()
    raw.login()
    raw.command("s", "SELECT INBOX")
    raw.send(b"f1 FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1] BINARY.SIZE[2])\r\n")
    out = _read_response(raw, "f1")
    assert b"BINARY[1] {11}\r\n" + "café latte".encode() in out
    assert b"BINARY.SIZE[1] 11" in out and b"BINARY.SIZE[2] %d" % len(PAYLOAD) in out
    assert b"f1 OK" in out
    raw.send(b"f2 FETCH 1 (BINARY.PEEK[2] BINARY.PEEK[2]<2.6>)\r\n")
    out = _read_response(raw, "f2")
    assert b"BINARY[2] ~{%d}\r\n" % len(PAYLOAD) + PAYLOAD in out
    assert b"BINARY[2]<2> {6}\r\nbinary" in out
    # PEEK did not set \Seen; BINARY without PEEK does, and reports FLAGS
    assert "\\Seen" not in raw.command("f3", "FETCH 1 (FLAGS)")[0]
    raw.send(b"f4 FETCH 1 (BINARY[1])\r\n")
    out = _read_response(raw, "f4")
    assert b"\\Seen" in out
    # an encoding the server cannot decode: NO [UNKNOWN-CTE]
    assert raw.command("f5", "FETCH 1 (BINARY.PEEK[3])")[-1].startswith("f5 NO [UNKNOWN-CTE]")
    assert raw.command("f6", "FETCH 1 (BINARY.SIZE[3])")[-1].startswith("f6 NO [UNKNOWN-CTE]")
    raw.close()


def test_append_literal8_keeps_binary_octets(imap_server: ImapServer) -> None:
    data = b"Subject: raw\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00\x01\x02 body\r\n"
    raw = Raw(imap_server)
    raw.login()
    raw.send(b"a1 APPEND INBOX ~{%d+}\r\n%s\r\n" % (len(data), data))
    assert raw.until_tagged("a1")[-1].startswith("a1 OK [APPENDUID ")
    messages = imap_server.call(imap_server.store.list_messages(imap_server.mailbox_id(DEMO, "INBOX")))
    assert imap_server.call(imap_server.store.read_content(messages[0].content_id)) == data
    raw.command("s", "SELECT INBOX")
    raw.send(b"f1 FETCH 1 BINARY.PEEK[1]\r\n")
    assert b"BINARY[1] ~{10}\r\n\x00\x01\x02 body\r\n" in _read_response(raw, "f1")
    raw.close()


def test_binary_of_a_text_part_has_crlf_line_ends_and_a_matching_size(imap_server: ImapServer) -> None:
    """RFC 9051 7.5.2: textual sections go with CRLF, also when the decoded text had bare LF or CR."""
    body = base64.encodebytes(b"line1\nline2\rline3\r\n").replace(b"\n", b"\r\n")
    imap_server.deliver(
        DEMO,
        b"From: a@remote.test\r\nSubject: lf\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + body,
    )
    raw = Raw(imap_server)
    raw.login()
    raw.command("s", "SELECT INBOX")
    raw.send(b"f FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1])\r\n")
    data = _read_response(raw, "f")
    assert b"BINARY[1] {21}\r\nline1\r\nline2\r\nline3\r\n" in data
    assert b"BINARY.SIZE[1] 21" in data
    raw.close()
