"""BINARY (RFC 3516): FETCH BINARY[part]<partial>, BINARY.PEEK, BINARY.SIZE and APPEND of a literal8."""

from __future__ import annotations

import base64

from tests.imap.conftest import DEMO
from tests.imap.transcript import ImapHarness

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


def test_fetch_binary_decodes_and_uses_literal8_only_for_nul(imap: ImapHarness) -> None:
    imap.deliver(DEMO, _mime())
    raw = imap.connect()
    assert "BINARY" in raw.greeting.split()
    raw.login()
    raw.command("s", "SELECT INBOX")
    raw.send(b"f1 FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1] BINARY.SIZE[2])\r\n")
    out = raw.response("f1")
    assert b"BINARY[1] {11}\r\n" + "café latte".encode() in out
    assert b"BINARY.SIZE[1] 11" in out
    assert b"BINARY.SIZE[2] %d" % len(PAYLOAD) in out
    assert b"f1 OK" in out
    raw.send(b"f2 FETCH 1 (BINARY.PEEK[2] BINARY.PEEK[2]<2.6>)\r\n")
    out = raw.response("f2")
    assert b"BINARY[2] ~{%d}\r\n" % len(PAYLOAD) + PAYLOAD in out
    assert b"BINARY[2]<2> {6}\r\nbinary" in out
    # PEEK did not set \Seen; BINARY without PEEK does, and reports FLAGS
    assert "\\Seen" not in raw.command("f3", "FETCH 1 (FLAGS)")[0]
    raw.send(b"f4 FETCH 1 (BINARY[1])\r\n")
    out = raw.response("f4")
    assert b"\\Seen" in out
    # an encoding the server cannot decode: NO [UNKNOWN-CTE]
    assert raw.command("f5", "FETCH 1 (BINARY.PEEK[3])")[-1].startswith("f5 NO [UNKNOWN-CTE]")
    assert raw.command("f6", "FETCH 1 (BINARY.SIZE[3])")[-1].startswith("f6 NO [UNKNOWN-CTE]")
    raw.close()


def test_append_literal8_keeps_binary_octets(imap: ImapHarness) -> None:
    data = b"Subject: raw\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00\x01\x02 body\r\n"
    raw = imap.connect()
    raw.login()
    raw.send(b"a1 APPEND INBOX ~{%d+}\r\n%s\r\n" % (len(data), data))
    assert raw.until_tagged("a1")[-1].startswith("a1 OK [APPENDUID ")
    messages = imap.call(imap.store.list_messages(imap.mailbox_id(DEMO, "INBOX")))
    assert imap.call(imap.store.read_content(messages[0].content_id)) == data
    raw.command("s", "SELECT INBOX")
    raw.send(b"f1 FETCH 1 BINARY.PEEK[1]\r\n")
    assert b"BINARY[1] ~{10}\r\n\x00\x01\x02 body\r\n" in raw.response("f1")
    raw.close()


#: 30 octets with a bare LF, a bare CR and a CRLF in the middle (the outside tester's case: BINARY.SIZE 32)
TEXT = b"first line\nsecond\rthird\r\nend!!"
assert len(TEXT) == 30


def _odd_lines(data: bytes, width: int = 10) -> bytes:
    """Base64 in lines of `width` characters (not a multiple of 4), CRLF after each."""
    encoded = base64.b64encode(data)
    return b"".join(encoded[i : i + width] + b"\r\n" for i in range(0, len(encoded), width))


def _text_parts(filler: bytes = b"") -> bytes:
    """Part 1: text/plain in base64 with odd line lengths; part 2: the same text in quoted-printable with a
    soft line break and escaped line ends; part 3 (optional): a large filler."""
    qp = b"first line=0Asecond=0Dthird=\r\n=0D=0Aend!!"
    out = (
        b"From: a@remote.test\r\nSubject: text\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + _odd_lines(TEXT)
        + b"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        + qp
        + b"\r\n"
    )
    if filler:
        out += b"--b\r\nContent-Type: application/octet-stream\r\n\r\n" + filler + b"\r\n"
    return out + b"--b--\r\n"


def _check_decoded_text(imap: ImapHarness) -> None:
    raw = imap.connect()
    raw.login()
    raw.command("s", "SELECT INBOX")
    for part in (1, 2):
        raw.send(
            b"f FETCH 1 (BINARY.SIZE[%d] BINARY.PEEK[%d] BINARY.PEEK[%d]<5.14>)\r\n" % (part, part, part)
        )
        data = raw.response("f")
        # the decoded octets exactly, as a literal (a quoted string cannot hold CR or LF, RFC 9051 4.3)
        assert b"BINARY.SIZE[%d] 30 " % part in data
        assert b"BINARY[%d] {30}\r\n" % part + TEXT + b" " in data
        assert b"BINARY[%d]<5> {14}\r\n" % part + TEXT[5:19] + b")" in data
    raw.close()


def test_binary_of_a_base64_text_part_with_odd_lines_is_the_decoded_octets(imap: ImapHarness) -> None:
    """A text part decoded from base64 (lines not a multiple of 4 characters) or quoted-printable is sent
    as decoded: no line end is added or rewritten, and BINARY.SIZE and partial ranges agree with it."""
    imap.deliver(DEMO, _text_parts())
    _check_decoded_text(imap)


def test_binary_of_a_large_message_is_the_decoded_octets_too(imap: ImapHarness) -> None:
    """The same parts in a message over STREAM_OCTETS, whose sections are read by range from the store."""
    from postoffice.imap import commands_message

    data = _text_parts(filler=(b"y" * 78 + b"\r\n") * (commands_message.STREAM_OCTETS // 80 + 10))
    assert len(data) > commands_message.STREAM_OCTETS
    imap.deliver(DEMO, data)
    _check_decoded_text(imap)


def test_binary_with_nul_is_a_literal8_and_without_nul_a_plain_literal(imap: ImapHarness) -> None:
    """RFC 3516 4.2 / RFC 9051 4.3: NUL needs a literal8 (~{n}); CR and LF need a literal (never quoted)."""
    body = b"From: a@remote.test\r\nSubject: nul\r\nMIME-Version: 1.0\r\n"
    body += b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    for payload in (b"a\x00b", b"\r", b"\n", b"ok"):
        body += b"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        body += base64.b64encode(payload) + b"\r\n"
    imap.deliver(DEMO, body + b"--b--\r\n")
    raw = imap.connect()
    raw.login()
    raw.command("s", "SELECT INBOX")
    raw.send(b"f FETCH 1 (BINARY.PEEK[1] BINARY.PEEK[2] BINARY.PEEK[3] BINARY.PEEK[4])\r\n")
    data = raw.response("f")
    assert b"BINARY[1] ~{3}\r\na\x00b " in data
    assert b"BINARY[2] {1}\r\n\r " in data
    assert b"BINARY[3] {1}\r\n\n " in data
    assert b"BINARY[4] {2}\r\nok)" in data
    raw.close()
