"""FETCH (attributes, sections, \\Seen rules), STORE, COPY and MOVE with COPYUID, SEARCH not yet."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any, cast

import pytest

from tests.imap.conftest import DEMO, message
from tests.imap.transcript import ImapHarness


def flat(resp: Any) -> bytes:
    """imaplib's FETCH data as one byte string (literal octets in place)."""
    out = b""
    for part in resp:
        if isinstance(part, tuple):
            out += b"".join(p for p in part if isinstance(p, bytes))
        elif isinstance(part, bytes):
            out += part
    return out


def test_fetch_items_and_peek(imap: ImapHarness) -> None:
    data = message("fetch me", "Body line.\r\n")
    imap.deliver(DEMO, data)
    client = imap.imaps()
    client.select("INBOX")
    typ, resp = client.fetch("1", "(UID RFC822.SIZE FLAGS ENVELOPE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK"
    head, literal = cast(Any, resp[0])
    assert isinstance(head, bytes)
    assert isinstance(literal, bytes)
    assert b"UID 1" in head
    assert b"RFC822.SIZE %d" % len(data) in head
    assert b'"fetch me"' in head
    assert literal == b"Subject: fetch me\r\n\r\n"
    typ, resp = client.fetch("1", "(FLAGS)")
    assert b"\\Seen" not in flat(resp)  # PEEK did not set \Seen
    typ, resp = client.fetch("1", "(BODY[TEXT])")
    head, literal = cast(Any, resp[0])
    assert literal == b"Body line.\r\n"
    assert b"FLAGS (\\Seen" in flat(resp)
    typ, resp = client.uid("FETCH", "1", "(BODY.PEEK[]<0.4> INTERNALDATE BODYSTRUCTURE)")
    assert cast(Any, resp[0])[1] == data[:4]
    assert b"BODY[]<0>" in flat(resp)
    assert b'BODYSTRUCTURE ("TEXT" "PLAIN"' in flat(resp)
    client.logout()


def test_fetch_bad_sequence_and_unsupported_items(imap: ImapHarness) -> None:
    imap.deliver(DEMO, message("one"))
    raw = imap.connect()
    raw.login()
    raw.command("s1", "SELECT INBOX")
    assert raw.command("f1", "FETCH 5 FLAGS")[-1].startswith("f1 BAD")
    assert raw.command("f2", "UID FETCH 5:9 FLAGS") == ["f2 OK UID FETCH completed"]
    assert raw.command("f3", "FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)")[-1].startswith(
        "f3 BAD"
    )  # no QRESYNC
    assert raw.command("f4", "SEARCH ALL")[-1] == "f4 OK SEARCH completed"


def test_store_modes(imap: ImapHarness) -> None:
    imap.deliver(DEMO, message("one"))
    raw = imap.connect()
    raw.login()
    raw.command("s1", "SELECT INBOX")
    reply = raw.command("t1", "STORE 1 +FLAGS (\\Flagged $Work)")
    assert reply[0] == "* FLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft $Work)"  # a new keyword
    assert reply[2] == "* 1 FETCH (FLAGS ($Work \\Flagged \\Recent))"
    assert (
        raw.command("t2", "UID STORE 1 -FLAGS ($Work)")[0] == "* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))"
    )
    assert raw.command("t3", "STORE 1 FLAGS.SILENT (\\Answered)") == ["t3 OK STORE completed"]
    messages = imap.call(imap.store.list_messages(imap.mailbox_id(DEMO, "INBOX")))
    assert messages[0].flags == frozenset({"\\Answered"})


def test_copy_and_move_with_copyuid(imap: ImapHarness) -> None:
    for subject in ("one", "two"):
        imap.deliver(DEMO, message(subject))
    archive = imap.call(imap.store.get_mailbox(imap.account_ids[DEMO], "Archive"))
    assert archive is not None
    raw = imap.connect()
    raw.login()
    raw.command("s1", "SELECT INBOX")
    reply = raw.command("c1", "COPY 1:2 Archive")
    assert reply[-1] == f"c1 OK [COPYUID {archive.uidvalidity} 1:2 1:2] COPY completed"
    assert raw.command("c2", "COPY 1 Nope")[-1].startswith("c2 NO [TRYCREATE]")
    reply = raw.command("m1", "MOVE 1 Trash")
    assert reply[0].startswith("* OK [COPYUID ")
    assert reply[1] == "* 1 EXPUNGE"
    assert reply[-1] == "m1 OK MOVE completed"
    inbox = imap.call(imap.store.list_messages(imap.mailbox_id(DEMO, "INBOX")))
    assert [m.uid for m in inbox] == [2]


def test_imaplib_copy_round_trip(imap: ImapHarness) -> None:
    imap.deliver(DEMO, message("one"))
    client = imap.imaps()
    client.select("INBOX")
    assert client.copy("1", "Sent")[0] == "OK"
    with_error = client.select("Sent", readonly=True)
    assert with_error == ("OK", [b"1"])
    client.logout()


def _large_message() -> bytes:
    attachment = base64.encodebytes(bytes(range(256)) * 12_000).replace(b"\n", b"\r\n")  # ~4 MiB encoded
    text = b"".join(b"line %d of the text part\r\n" % i for i in range(40_000))  # ~1 MiB
    return (
        b"From: Big <big@remote.test>\r\nTo: demo@example.test\r\nSubject: large\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n'
        + text
        + b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + attachment
        + b"--b--\r\n"
    )


LARGE_ITEMS = (
    "UID RFC822.SIZE FLAGS ENVELOPE BODYSTRUCTURE BODY.PEEK[] BODY.PEEK[]<100.5000> BODY.PEEK[TEXT] "
    "BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[1] BODY.PEEK[2.MIME] BODY.PEEK[3] RFC822.HEADER "
    "BINARY.PEEK[1] BINARY.PEEK[2]<10.20> BINARY.SIZE[2] BINARY.PEEK[]<0.10>"
)


def test_fetch_of_a_large_message_streams_ranges_and_sends_the_same_octets(
    imap: ImapHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message over STREAM_OCTETS is never read whole (ranges are streamed from the store in chunks), and
    the response is octet for octet what the whole-message path sends."""
    from postoffice.imap import commands_message

    data = _large_message()
    assert len(data) > commands_message.STREAM_OCTETS
    imap.deliver(DEMO, data)
    store = imap.store
    whole_reads: list[object] = []
    real_contents = store.read_contents

    async def spying(content_ids: Sequence[int], *, octets: int | None = None) -> dict[int, bytes]:
        whole_reads.append(list(content_ids))
        return await real_contents(content_ids, octets=octets)

    monkeypatch.setattr(store, "read_contents", spying)

    def fetch_bytes(tag: str) -> bytes:
        raw = imap.connect()
        raw.login()
        raw.command("s", "EXAMINE INBOX")
        raw.send(f"{tag} FETCH 1 ({LARGE_ITEMS})\r\n".encode())
        out = raw.response(tag)
        assert out.endswith(f"\r\n{tag} OK FETCH completed\r\n".encode())
        raw.close()
        return out

    streamed = fetch_bytes("f")
    assert whole_reads == []
    monkeypatch.setattr(commands_message, "STREAM_OCTETS", 1 << 40)
    whole = fetch_bytes("f")
    assert len(whole_reads) == 1
    # the one difference: BINARY[] streamed is always a literal8 (NUL could follow; RFC 3516 4.2)
    assert b"BINARY[]<0> ~{10}\r\n" in streamed
    assert b"BINARY[]<0> {10}\r\n" in whole
    assert streamed.replace(b"BINARY[]<0> ~{10}", b"BINARY[]<0> {10}") == whole
    assert b"BODY[] {%d}\r\n" % len(data) in streamed
    assert data in streamed
