"""CATENATE (RFC 4469): APPEND and REPLACE of messages put together from TEXT literals and the octets that
URLs name, with MULTIAPPEND, URLAUTH-authorized URLs, APPENDLIMIT, and every refusal storing nothing."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postoffice.store import StoreError
from tests.imap.conftest import DEMO, OTHER, message
from tests.imap.transcript import ImapHarness, Transcript, session

BODY = "First line.\r\nSecond line.\r\n"
MULTIPART = (
    b"From: Sender <sender@remote.test>\r\nTo: demo@example.test\r\nSubject: parts\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n"
    b"--b1\r\nContent-Type: text/plain\r\n\r\nThe text part.\r\n"
    b"--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"AAECAw==\r\n--b1--\r\n"
)


def contents(imap: ImapHarness, mailbox: str, address: str = DEMO) -> list[bytes]:
    messages = imap.call(imap.store.list_messages(imap.mailbox_id(address, mailbox)))
    return [imap.call(imap.store.read_content(m.content_id)) for m in messages]


def uidvalidity(imap: ImapHarness, mailbox: str, address: str = DEMO) -> int:
    info = imap.call(imap.store.get_mailbox(imap.account_ids[address], mailbox))
    assert info is not None
    return info.uidvalidity


def send(raw: Transcript, tag: bytes, text: bytes) -> list[str]:
    raw.send(tag + b" " + text + b"\r\n")
    return raw.until_tagged(tag.decode())


def text(data: bytes) -> bytes:
    return b"TEXT {%d+}\r\n" % len(data) + data


def test_catenate_is_advertised(imap: ImapHarness) -> None:
    raw = session(imap)
    assert "CATENATE" in raw.command("c", "CAPABILITY")[0].split()


def test_text_and_urls_make_one_message_in_order(imap: ImapHarness) -> None:
    original = message("original", BODY)
    imap.deliver(DEMO, original)
    v = uidvalidity(imap, "INBOX")
    raw = session(imap)
    raw.command("s", "SELECT INBOX")
    reply = send(
        raw,
        b"a",
        b"APPEND Drafts (\\Draft) CATENATE ("
        + text(b"Subject: forwarded\r\n")
        + b' URL "/INBOX;UIDVALIDITY=%d/;UID=1/;SECTION=HEADER.FIELDS%%20(FROM%%20To)"' % v
        + b" URL ;UID=1/;SECTION=TEXT/;PARTIAL=0.13 "
        + text(b"--\r\n")
        + b' URL "imap://localhost/INBOX/;UID=1/;SECTION=TEXT/;PARTIAL=13")',
    )
    assert reply[-1].startswith(f"a OK [APPENDUID {uidvalidity(imap, 'Drafts')} 1]")
    header_fields = b"From: Sender <sender@remote.test>\r\nTo: demo@example.test\r\n\r\n"
    assert contents(imap, "Drafts") == [
        b"Subject: forwarded\r\n" + header_fields + b"First line.\r\n" + b"--\r\n" + b"Second line.\r\n"
    ]
    # RFC 4469 section 3: reading a part sets no flag on it
    assert raw.command("f", "UID FETCH 1 (FLAGS)")[0] == "* 1 FETCH (UID 1 FLAGS (\\Recent))"


def test_urls_in_the_authenticated_state_and_relative_to_the_top(imap: ImapHarness) -> None:
    imap.deliver(DEMO, message("in drafts", BODY), "Drafts")
    raw = session(imap)
    reply = send(raw, b"a", b"APPEND INBOX CATENATE (URL Drafts/;UID=1 URL /Drafts/;UID=1/;SECTION=1)")
    assert reply[-1].startswith("a OK [APPENDUID")
    assert contents(imap, "INBOX") == [message("in drafts", BODY) + BODY.encode()]
    # without a selected mailbox a URL that leaves the mailbox out names nothing
    assert send(raw, b"b", b"APPEND INBOX CATENATE (URL ;UID=1)")[-1] == (
        "b NO [BADURL ;UID=1] The URL names no message this session may read"
    )


def test_a_relative_mailbox_is_a_sibling_of_the_selected_one(imap: ImapHarness) -> None:
    raw = session(imap)
    raw.command("c1", "CREATE Work/a")
    raw.command("c2", "CREATE Work/b")
    imap.deliver(DEMO, message("sibling", BODY), "Work/b")
    raw.command("s", "SELECT Work/a")
    assert send(raw, b"a", b"APPEND INBOX CATENATE (URL b/;UID=1/;SECTION=TEXT)")[-1].startswith("a OK")
    assert contents(imap, "INBOX") == [BODY.encode()]


def test_the_first_bad_url_is_named_and_nothing_is_stored(imap: ImapHarness) -> None:
    imap.deliver(DEMO, message("one", BODY))
    v = uidvalidity(imap, "INBOX")
    raw = session(imap)
    raw.command("s", "SELECT INBOX")
    bad_urls = [
        b"/INBOX;UIDVALIDITY=%d/;UID=1" % (v + 1),  # another UIDVALIDITY
        b"/INBOX/;UID=7",  # no such message
        b"/INBOX/;UID=1/;SECTION=4.1",  # no such part
        b"/INBOX/;UID=1/;SECTION=BOGUS",
        b"/Nowhere/;UID=1",
        b"imap://elsewhere.test/INBOX/;UID=1",  # another server
        b"imap://other%40example.test@localhost/INBOX/;UID=1",  # another account, no URLAUTH
        b"/INBOX",  # a mailbox, not a message
        b"imap://localhost/",
        b"http://localhost/INBOX/;UID=1",
    ]
    for n, url in enumerate(bad_urls):
        reply = send(
            raw, b"t%d" % n, b'APPEND INBOX CATENATE (URL ";UID=1" TEXT {2+}\r\nok URL "%s" URL "x")' % url
        )
        assert reply[-1] == f"t{n} NO [BADURL {url.decode()}] The URL names no message this session may read"
    # a URL with characters a response code cannot carry is echoed percent-encoded (RFC 4469 erratum 2002)
    reply = send(raw, b"e", b'APPEND INBOX CATENATE (URL "a]b c")')
    assert reply[-1].startswith("e NO [BADURL a%5Db%20c] ")
    assert contents(imap, "INBOX") == [message("one", BODY)]
    assert imap.failures() == []


def test_multiappend_with_catenate_is_all_or_nothing(imap: ImapHarness) -> None:
    imap.deliver(DEMO, message("one", BODY))
    raw = session(imap)
    raw.command("s", "SELECT INBOX")
    first = message("literal", "x\r\n")
    reply = send(
        raw,
        b"a",
        b"APPEND Drafts {%d+}\r\n%s CATENATE (URL ;UID=1/;SECTION=HEADER) CATENATE (URL ;UID=9)"
        % (len(first), first),
    )
    assert reply[-1].startswith("a NO [BADURL ;UID=9]")
    assert contents(imap, "Drafts") == []
    reply = send(
        raw,
        b"b",
        b"APPEND Drafts {%d+}\r\n%s CATENATE (URL ;UID=1/;SECTION=HEADER %s) (\\Seen) CATENATE (%s)"
        % (len(first), first, text(b"new body\r\n"), text(b"Subject: only\r\n\r\n")),
    )
    assert re.fullmatch(r"b OK \[APPENDUID \d+ 1:3\] APPEND completed", reply[-1])
    header = message("one", BODY)[: message("one", BODY).index(b"\r\n\r\n") + 4]
    assert contents(imap, "Drafts") == [first, header + b"new body\r\n", b"Subject: only\r\n\r\n"]


def test_synchronizing_text_literals_get_continuations(imap: ImapHarness) -> None:
    imap.deliver(DEMO, message("one", BODY))
    raw = session(imap)
    raw.command("s", "SELECT INBOX")
    raw.send(b"b APPEND INBOX CATENATE (URL ;UID=1/;SECTION=HEADER TEXT {5}\r\n")
    assert raw.line() == "+ Ready for literal data"
    raw.send(b"Body. URL {20}\r\n")
    assert raw.line() == "+ Ready for literal data"
    raw.send(b";UID=1/;SECTION=TEXT)\r\n")
    assert raw.until_tagged("b")[-1].startswith("b OK")
    header = message("one", BODY)[: message("one", BODY).index(b"\r\n\r\n") + 4]
    assert contents(imap, "INBOX")[-1] == header + b"Body." + BODY.encode()


def test_a_bad_url_before_a_synchronizing_text_is_told_instead_of_the_continuation(imap: ImapHarness) -> None:
    imap.deliver(DEMO, message("one", BODY))
    raw = session(imap)
    raw.command("s", "SELECT INBOX")
    raw.send(b"a APPEND INBOX CATENATE (URL ;UID=1 URL ;UID=5 TEXT {5}\r\n")
    assert raw.line() == "a NO [BADURL ;UID=5] The URL names no message this session may read"
    assert raw.command("n", "NOOP") == ["n OK NOOP completed"]  # the client gave the command up
    assert contents(imap, "INBOX") == [message("one", BODY)]


def test_a_urlauth_url_of_another_account(imap: ImapHarness) -> None:
    imap.deliver(OTHER, message("theirs", BODY))
    v = uidvalidity(imap, "INBOX", OTHER)
    other = session(imap, OTHER)
    rump = (
        f"imap://other%40example.test@localhost/INBOX;UIDVALIDITY={v}/;UID=1/;SECTION=TEXT;URLAUTH=authuser"
    )
    (line, _) = other.command("g", f'GENURLAUTH "{rump}" INTERNAL')
    url = line.split('"')[1]
    raw = session(imap)
    reply = send(
        raw, b"a", b'APPEND INBOX CATENATE (%s URL "%s")' % (text(b"Subject: x\r\n\r\n"), url.encode())
    )
    assert reply[-1].startswith("a OK [APPENDUID")
    assert contents(imap, "INBOX") == [b"Subject: x\r\n\r\n" + BODY.encode()]
    # a rump is no authorization, and a token for another section does not fit this one
    forged = url.replace(";SECTION=TEXT", ";SECTION=HEADER")
    for n, bad in enumerate([rump, forged]):
        assert send(raw, b"b%d" % n, b'APPEND INBOX CATENATE (URL "%s")' % bad.encode())[-1].startswith(
            f"b{n} NO [BADURL {bad}]"
        )


def test_appendlimit_counts_the_whole_catenated_message(imap_small_limit: ImapHarness) -> None:
    imap = imap_small_limit  # append_limit 2000
    imap.deliver(DEMO, message("big", "x" * 1500 + "\r\n"))
    raw = session(imap)
    raw.command("s", "SELECT INBOX")
    # TEXT literals: refused before the one that passes the limit is read (no "+" for it)
    raw.send(b"a APPEND INBOX CATENATE (TEXT {1200}\r\n")
    assert raw.line() == "+ Ready for literal data"
    raw.send(b"y" * 1200 + b" TEXT {900}\r\n")
    assert raw.line() == "a NO [TOOBIG] The message would be larger than the APPENDLIMIT of 2000 octets"
    # a URL's octets count as they are read
    reply = send(raw, b"b", b"APPEND INBOX CATENATE (%s URL ;UID=1)" % text(b"z" * 600))
    assert (
        reply[-1] == "b NO [TOOBIG] The catenated message would be larger than the APPENDLIMIT of 2000 octets"
    )
    assert len(contents(imap, "INBOX")) == 1
    assert send(raw, b"c", b"APPEND INBOX CATENATE (URL ;UID=1 %s)" % text(b"ok"))[-1].startswith("c OK")
    assert imap.failures() == []


def test_replace_with_catenate_of_the_message_it_replaces(imap: ImapHarness) -> None:
    draft = message("draft", BODY)
    imap.deliver(DEMO, draft, "Drafts", ("\\Draft",))
    raw = session(imap)
    raw.command("s", "SELECT Drafts")
    reply = send(
        raw, b"r", b"REPLACE 1 Drafts (\\Draft) CATENATE (URL ;UID=1/;SECTION=HEADER %s)" % text(b"New.")
    )
    assert reply[0].startswith("* OK [APPENDUID ")
    assert "* 1 EXPUNGE" in reply
    assert reply[-1] == "r OK REPLACE completed"
    assert contents(imap, "Drafts") == [draft[: draft.index(b"\r\n\r\n") + 4] + b"New."]


def test_refusals(imap: ImapHarness) -> None:
    imap.deliver(DEMO, message("one", BODY))
    raw = session(imap)
    assert send(raw, b"a", b"APPEND Nowhere CATENATE (%s)" % text(b"x"))[-1].startswith("a NO [TRYCREATE]")
    assert send(raw, b"b", b"APPEND Nowhere CATENATE (URL /INBOX/;UID=1)")[-1].startswith("b NO [TRYCREATE]")
    assert send(raw, b"c", b"APPEND INBOX CATENATE (TEXT {0+}\r\n)")[-1].startswith("c NO")  # empty
    assert send(raw, b"d", b"APPEND INBOX CATENATE (UTF8 (~{2+}\r\nhi))")[-1].startswith("d BAD")  # no ENABLE
    assert send(raw, b"e", b"APPEND INBOX CATENATE ()")[-1].startswith("e BAD")
    assert send(raw, b"f", b"REPLACE 1 INBOX CATENATE (%s)" % text(b"x"))[-1].startswith(
        "f BAD"
    )  # not selected
    raw.command("x", "EXAMINE INBOX")
    assert send(raw, b"g", b"REPLACE 1 INBOX CATENATE (%s)" % text(b"x"))[-1].startswith("g NO [READ-ONLY]")
    assert contents(imap, "INBOX") == [message("one", BODY)]
    assert raw.command("n", "NOOP")[-1] == "n OK NOOP completed"  # the session goes on
    assert imap.failures() == []


def test_utf8_parts_after_enable(imap: ImapHarness) -> None:
    imap.deliver(DEMO, message("one", BODY))
    raw = session(imap)
    raw.command("e", "ENABLE UTF8=ACCEPT")
    data = "Subject: Grüße\r\n\r\n".encode()
    reply = send(
        raw,
        b"a",
        b"APPEND INBOX CATENATE (UTF8 (~{%d+}\r\n%s) URL /INBOX/;UID=1/;SECTION=TEXT)"
        % (
            len(data),
            data,
        ),
    )
    assert reply[-1].startswith("a OK")
    assert contents(imap, "INBOX")[-1] == data + BODY.encode()


def test_a_message_larger_than_a_chunk_is_copied_whole(imap: ImapHarness) -> None:
    body = "".join(f"line {n:07d} of a long message\r\n" for n in range(12_000))  # about 400 KiB
    original = message("long", body)
    imap.deliver(DEMO, original)
    raw = session(imap)
    assert send(raw, b"a", b"APPEND Drafts CATENATE (URL /INBOX/;UID=1)")[-1].startswith("a OK")
    assert contents(imap, "Drafts") == [original]


def test_a_mime_part_of_a_multipart_message(imap: ImapHarness) -> None:
    imap.deliver(DEMO, MULTIPART)
    raw = session(imap)
    reply = send(
        raw, b"a", b"APPEND Drafts CATENATE (URL /INBOX/;UID=1/;SECTION=2.MIME URL /INBOX/;UID=1/;SECTION=2)"
    )
    assert reply[-1].startswith("a OK")
    # copied as stored: no transfer decoding (RFC 4469 section 3)
    assert contents(imap, "Drafts") == [
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAw=="
    ]


def test_catenate_replace_gets_replaces_answers_before_a_literal_is_read(imap: ImapHarness) -> None:
    """One set of checks before any literal of APPEND or REPLACE (`ImapProtocol._open_append`): a CATENATE
    TEXT literal of REPLACE is refused as REPLACE's message literal is, with no "+" for it (decision 0076)."""
    imap.deliver(DEMO, message("one", BODY))
    raw = session(imap)
    raw.command("s", "SELECT INBOX")
    raw.send(b"a REPLACE 7 INBOX {5}\r\n")
    plain = raw.until_tagged("a")
    raw.send(b"b REPLACE 7 INBOX CATENATE (TEXT {5}\r\n")
    catenated = raw.until_tagged("b")
    assert plain == ["a BAD Invalid message sequence number: 7"]
    assert catenated == ["b BAD Invalid message sequence number: 7"]
    # with URLs alone there is no literal: the same answer when the command is complete
    reply = send(raw, b"c", b"REPLACE 7 INBOX CATENATE (URL ;UID=1)")
    assert reply == ["c BAD Invalid message sequence number: 7"]
    raw.command("u", "UNSELECT")
    raw.command("e", "ENABLE UIDONLY")
    raw.command("s2", "SELECT INBOX")
    raw.send(b"d REPLACE 1 INBOX {5}\r\n")
    plain = raw.until_tagged("d")
    raw.send(b"f REPLACE 1 INBOX CATENATE (TEXT {5}\r\n")
    catenated = raw.until_tagged("f")
    assert plain == ["d BAD [UIDREQUIRED] Message numbers are not allowed once UIDONLY is enabled"]
    assert catenated == ["f BAD [UIDREQUIRED] Message numbers are not allowed once UIDONLY is enabled"]
    raw.send(b"g UID REPLACE 9 INBOX CATENATE (TEXT {5}\r\n")
    assert raw.until_tagged("g") == ["g NO There is no message with UID 9"]
    reply = send(raw, b"h", b"REPLACE 1 INBOX CATENATE (URL /INBOX/;UID=1)")
    assert reply == ["h BAD [UIDREQUIRED] Message numbers are not allowed once UIDONLY is enabled"]
    reply = send(raw, b"i", b"UID REPLACE 9 INBOX CATENATE (URL /INBOX/;UID=1)")
    assert reply == ["i NO There is no message with UID 9"]
    assert raw.command("n", "NOOP")[-1] == "n OK NOOP completed"  # the client gave the commands up
    assert contents(imap, "INBOX") == [message("one", BODY)]
    assert imap.failures() == []


def test_a_store_failure_before_a_literal_is_logged_alike_for_append_and_catenate(
    imap: ImapHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = session(imap)

    async def unavailable(account_id: int, name: str) -> None:
        raise StoreError("database is locked")

    monkeypatch.setattr(imap.store, "get_mailbox", unavailable)
    raw.send(b"a APPEND Drafts {5}\r\n")
    assert raw.until_tagged("a") == ["a NO [UNAVAILABLE] Temporary failure, try again"]
    raw.send(b"b APPEND Drafts CATENATE (TEXT {5}\r\n")
    assert raw.until_tagged("b") == ["b NO [UNAVAILABLE] Temporary failure, try again"]
    logged = [r.getMessage() for r in imap.failures()]
    assert logged == ["imap client 127.0.0.1: APPEND lookup failed: database is locked"] * 2
    assert all(r.exc_info is None for r in imap.failures())  # a refusal, not a traceback


FRAGMENTS = st.sampled_from(
    [
        b"a APPEND INBOX CATENATE (",
        b"b APPEND Drafts (\\Seen) CATENATE (",
        b"c REPLACE 1 INBOX CATENATE (",
        b"d URLFETCH ",
        b"e GENURLAUTH ",
        b"f RESETKEY INBOX",
        b"g SELECT INBOX",
        b"URL ;UID=1",
        b"URL /INBOX/;UID=1/;SECTION=TEXT",
        b'URL "imap://demo%40example.test@localhost/INBOX/;UID=1;URLAUTH=authuser"',
        b" INTERNAL",
        b"TEXT {3}\r\nabc",
        b"TEXT {4+}\r\nabcd",
        b"TEXT {0}\r\n",
        b"UTF8 (~{2+}\r\nhi)",
        b"URL {6+}\r\n;UID=1",
        b' ("x" BINARY BODYPARTSTRUCTURE)',
        b")",
        b" ",
        b"{5}\r\nhello",
        b"\r\n",
    ]
)
TAGGED = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\+]+ (OK|NO|BAD) .*')
LITERAL_AT_END = re.compile(rb"~?\{(\d+)\}$")


def response_lines(data: bytes) -> list[bytes]:
    """The response lines in `data`, each with the literals in it left out (their octets skipped)."""
    lines: list[bytes] = []
    line = b""
    while data:
        end = data.find(b"\r\n")
        assert end >= 0, data[:200]
        line += data[:end]
        data = data[end + 2 :]
        literal = LITERAL_AT_END.search(line)
        if literal is None:
            lines.append(line)
            line = b""
        else:
            data = data[int(literal.group(1)) :]
    return lines


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunks=st.lists(FRAGMENTS | st.binary(max_size=12), max_size=14))
def test_catenate_and_urlauth_fragments_get_protocol_answers(imap: ImapHarness, chunks: list[bytes]) -> None:
    if not contents(imap, "INBOX"):
        imap.deliver(DEMO, message("one", BODY))
    raw = session(imap)
    raw.send(b"".join(chunks) + b"\r\nzz9 LOGOUT\r\n")
    for line in response_lines(raw.buf):
        assert line[:2] in (b"* ", b"+ ") or TAGGED.fullmatch(line), line
    raw.close()
    assert imap.failures() == []
