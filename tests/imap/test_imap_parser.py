"""IMAP command parser: the RFC examples (RFC 9051 / RFC 3501 section 6 and the extension RFCs) and syntax
errors, as tables of command lines and the exact typed result. Framing, literals, limits, modes and the
property tests are in test_imap_parser_framing.py; generated round trips in test_imap_parser_roundtrip.py."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.imap.parser import (
    MAX_METADATA_ENTRY_LENGTH,
    Append,
    AppendData,
    AppendMessage,
    AppendMessageStart,
    Authenticate,
    Capability,
    Check,
    Close,
    Command,
    CommandReader,
    Copy,
    Create,
    Delete,
    Enable,
    Examine,
    Expunge,
    ExtParam,
    Fetch,
    FetchAttribute,
    FetchBinary,
    FetchBinarySize,
    FetchBody,
    GetMetadata,
    Id,
    Idle,
    List,
    LiteralTooLarge,
    Login,
    Logout,
    Lsub,
    MailboxName,
    Move,
    Namespace,
    NeedContinuation,
    Noop,
    ParseError,
    Partial,
    ReaderEvent,
    Rename,
    Replace,
    Search,
    SearchAnd,
    SearchDate,
    SearchFlag,
    SearchHeader,
    SearchKeyword,
    SearchModSeq,
    SearchNot,
    SearchOr,
    SearchSequence,
    SearchSize,
    SearchText,
    SearchUid,
    Section,
    SectionText,
    Select,
    SetMetadata,
    Sort,
    StartTls,
    Status,
    Store,
    StoreMode,
    Subscribe,
    Thread,
    UidExpunge,
    Unselect,
    Unsubscribe,
    UnsupportedCharset,
)
from postoffice.imap.sequence import SequenceSet


def mb(name: str, raw: str | None = None) -> MailboxName:
    return MailboxName(name, name if raw is None else raw)


def seq(text: str) -> SequenceSet:
    return SequenceSet.parse(text)


def f(*names: str) -> tuple[FetchAttribute, ...]:
    return tuple(FetchAttribute(n) for n in names)


def parse(data: bytes, *, utf8: bool = False) -> list[ReaderEvent]:
    """All events for `data` except NeedContinuation (the test plays a server that always sends "+")."""
    reader = CommandReader()
    reader.utf8 = utf8
    reader.feed(data)
    events = []
    while (event := reader.next()) is not None:
        if not isinstance(event, NeedContinuation):
            events.append(event)
    return events


def parse_one(line: bytes, *, utf8: bool = False) -> ReaderEvent:
    events = parse(line + b"\r\n", utf8=utf8)
    assert len(events) == 1, events
    return events[0]


D = datetime.date
TZ = datetime.timezone

RFC_EXAMPLES: list[tuple[bytes, ReaderEvent]] = [
    # RFC 9051 / RFC 3501 section 6.1: any state
    (b"abcd CAPABILITY", Capability("abcd")),
    (b"a002 NOOP", Noop("a002")),
    (b"A023 LOGOUT", Logout("A023")),
    # 6.2: not authenticated
    (b"a002 STARTTLS", StartTls("a002")),
    (b"A001 AUTHENTICATE GSSAPI", Authenticate("A001", "GSSAPI")),
    (b"a001 authenticate plain AGZyZWQAZmF0IG1hbg==", Authenticate("a001", "PLAIN", b"\x00fred\x00fat man")),
    (b"a001 AUTHENTICATE EXTERNAL =", Authenticate("a001", "EXTERNAL", b"")),  # RFC 4959 empty response
    (b"a001 LOGIN SMITH SESAME", Login("a001", "SMITH", "SESAME")),
    (b'a001 LOGIN "fred" "fat \\"man\\" \\\\o/"', Login("a001", "fred", 'fat "man" \\o/')),
    # 6.3: authenticated
    (b"t2 ENABLE CONDSTORE X-GOOD-IDEA", Enable("t2", ("CONDSTORE", "X-GOOD-IDEA"))),  # RFC 5161
    (b"A142 SELECT INBOX", Select("A142", mb("INBOX"))),
    (b"A142 select inbox", Select("A142", mb("INBOX", "inbox"))),
    (b"A142 SELECT INBOX (CONDSTORE)", Select("A142", mb("INBOX"), (ExtParam("CONDSTORE"),))),  # RFC 7162
    (
        b"A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))",
        Select(
            "A02",
            mb("INBOX"),
            (ExtParam("QRESYNC", ("67890007", "20050715194045000", "41,43:211,214:541")),),
        ),
    ),
    (b"A932 EXAMINE blurdybloop", Examine("A932", mb("blurdybloop"))),
    (b"A003 CREATE owatagusiam/", Create("A003", mb("owatagusiam/"))),
    (b"A004 CREATE owatagusiam/blurdybloop", Create("A004", mb("owatagusiam/blurdybloop"))),
    (b"t1 CREATE MySpecial (USE (\\Drafts \\Sent))", Create("t1", mb("MySpecial"), ("\\Drafts", "\\Sent"))),
    (b"A683 DELETE blurdybloop", Delete("A683", mb("blurdybloop"))),
    (b"A683 RENAME blurdybloop sarasoop", Rename("A683", mb("blurdybloop"), mb("sarasoop"))),
    (b"A685 RENAME foo zowie", Rename("A685", mb("foo"), mb("zowie"))),
    (b"A002 SUBSCRIBE #news.comp.mail.mime", Subscribe("A002", mb("#news.comp.mail.mime"))),
    (b"A002 UNSUBSCRIBE #news.comp.mail.mime", Unsubscribe("A002", mb("#news.comp.mail.mime"))),
    (b'A101 LIST "" ""', List("A101", mb(""), (mb(""),))),
    (b'A102 LIST #news.comp.mail.misc ""', List("A102", mb("#news.comp.mail.misc"), (mb(""),))),
    (b"A202 LIST ~/Mail/ %", List("A202", mb("~/Mail/"), (mb("%"),))),
    (b'A02 LIST "" *', List("A02", mb(""), (mb("*"),))),
    (b"A03 LIST foo/ bar]*%", List("A03", mb("foo/"), (mb("bar]*%"),))),
    # RFC 5258 LIST-EXTENDED
    (
        b'A01 LIST (SUBSCRIBED) "" "*"',
        List("A01", mb(""), (mb("*"),), (ExtParam("SUBSCRIBED"),), extended=True),
    ),
    (
        b'A02 LIST (subscribed RECURSIVEMATCH) "" "%" RETURN (CHILDREN)',
        List(
            "A02",
            mb(""),
            (mb("%"),),
            (ExtParam("SUBSCRIBED"), ExtParam("RECURSIVEMATCH")),
            (ExtParam("CHILDREN"),),
            True,
        ),
    ),
    (
        b'C04 LIST "" ("INBOX" "Drafts" "Sent/%")',
        List("C04", mb(""), (mb("INBOX"), mb("Drafts"), mb("Sent/%")), extended=True),
    ),
    (b'A03 LIST () "" %', List("A03", mb(""), (mb("%"),), extended=True)),
    (
        b'A01 LIST "" % RETURN (STATUS (MESSAGES UNSEEN))',  # RFC 5819
        List(
            "A01",
            mb(""),
            (mb("%"),),
            return_options=(ExtParam("STATUS", ("MESSAGES", "UNSEEN")),),
            extended=True,
        ),
    ),
    (
        b'A04 LIST (SPECIAL-USE) "" "*" RETURN (SPECIAL-USE SUBSCRIBED)',  # RFC 6154
        List(
            "A04",
            mb(""),
            (mb("*"),),
            (ExtParam("SPECIAL-USE"),),
            (ExtParam("SPECIAL-USE"), ExtParam("SUBSCRIBED")),
            True,
        ),
    ),
    (b'A002 LSUB "#news." "comp.mail.*"', Lsub("A002", mb("#news."), mb("comp.mail.*"))),
    (b"A001 NAMESPACE", Namespace("A001")),
    (
        b"A042 STATUS blurdybloop (UIDNEXT MESSAGES)",
        Status("A042", mb("blurdybloop"), ("UIDNEXT", "MESSAGES")),
    ),
    (
        b"A043 STATUS INBOX (size highestmodseq APPENDLIMIT deleted MAILBOXID)",
        Status("A043", mb("INBOX"), ("SIZE", "HIGHESTMODSEQ", "APPENDLIMIT", "DELETED", "MAILBOXID")),
    ),
    (b"A002 IDLE", Idle("A002")),
    # 6.4: selected
    (b"FXXZ CHECK", Check("FXXZ")),
    (b"A341 CLOSE", Close("A341")),
    (b"A342 UNSELECT", Unselect("A342")),
    (b"A202 EXPUNGE", Expunge("A202")),
    (b"A003 UID EXPUNGE 3000:3002", UidExpunge("A003", seq("3000:3002"))),
    (
        b'A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"',
        Search(
            "A282",
            (
                SearchFlag("FLAGGED"),
                SearchDate("SINCE", D(1994, 2, 1)),
                SearchNot(SearchText("FROM", "Smith")),
            ),
            return_options=("MIN", "COUNT"),
        ),
    ),
    (
        b'A283 SEARCH RETURN () FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"',
        Search(
            "A283",
            (
                SearchFlag("FLAGGED"),
                SearchDate("SINCE", D(1994, 2, 1)),
                SearchNot(SearchText("FROM", "Smith")),
            ),
            return_options=(),
        ),
    ),
    (
        b'A284 SEARCH TEXT "string not in mailbox"',
        Search("A284", (SearchText("TEXT", "string not in mailbox"),)),
    ),
    (
        b'A301 UID SEARCH RETURN (SAVE) FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"',  # RFC 5182
        Search(
            "A301",
            (
                SearchFlag("FLAGGED"),
                SearchDate("SINCE", D(1994, 2, 1)),
                SearchNot(SearchText("FROM", "Smith")),
            ),
            return_options=("SAVE",),
            uid=True,
        ),
    ),
    (
        b"A302 UID FETCH $ (UID FLAGS)",
        Fetch("A302", SequenceSet.SAVED, f("UID", "FLAGS"), uid=True),
    ),
    (
        b'A303 SEARCH CHARSET UTF-8 (OR $ 1,3000:3021) TEXT "hello"',
        Search(
            "A303",
            (
                SearchAnd((SearchOr(SearchSequence(SequenceSet.SAVED), SearchSequence(seq("1,3000:3021"))),)),
                SearchText("TEXT", "hello"),
            ),
            charset="UTF-8",
        ),
    ),
    (
        b"A1 SEARCH OR (ANSWERED DELETED) (UNSEEN LARGER 100) SMALLER 5 uid 1:* 4:2",
        Search(
            "A1",
            (
                SearchOr(
                    SearchAnd((SearchFlag("ANSWERED"), SearchFlag("DELETED"))),
                    SearchAnd((SearchFlag("UNSEEN"), SearchSize("LARGER", 100))),
                ),
                SearchSize("SMALLER", 5),
                SearchUid(seq("1:*")),
                SearchSequence(seq("4:2")),
            ),
        ),
    ),
    (
        b'A2 SEARCH HEADER Message-ID "<x@y>" KEYWORD $Forwarded UNKEYWORD \\Seen BEFORE "5-Jan-2020"',
        Search(
            "A2",
            (
                SearchHeader("Message-ID", "<x@y>"),
                SearchKeyword("$Forwarded"),
                SearchKeyword("\\Seen", present=False),
                SearchDate("BEFORE", D(2020, 1, 5)),
            ),
        ),
    ),
    (
        b"A3 search sentbefore 01-jan-2000 senton 9-Dec-1999 sentsince 10-Sep-1999 on 1-Jan-2001 all",
        Search(
            "A3",
            (
                SearchDate("SENTBEFORE", D(2000, 1, 1)),
                SearchDate("SENTON", D(1999, 12, 9)),
                SearchDate("SENTSINCE", D(1999, 9, 10)),
                SearchDate("ON", D(2001, 1, 1)),
                SearchFlag("ALL"),
            ),
        ),
    ),
    (
        b'A4 SEARCH BCC a CC b BODY c SUBJECT "" TO e NEW OLD RECENT SEEN DRAFT UNDRAFT UNANSWERED UNDELETED '
        b"UNFLAGGED",
        Search(
            "A4",
            (
                SearchText("BCC", "a"),
                SearchText("CC", "b"),
                SearchText("BODY", "c"),
                SearchText("SUBJECT", ""),
                SearchText("TO", "e"),
                *(
                    SearchFlag(n)
                    for n in [
                        "NEW",
                        "OLD",
                        "RECENT",
                        "SEEN",
                        "DRAFT",
                        "UNDRAFT",
                        "UNANSWERED",
                        "UNDELETED",
                        "UNFLAGGED",
                    ]
                ),
            ),
        ),
    ),
    (
        b'a SEARCH MODSEQ "/flags/\\\\draft" all 620162338',  # RFC 7162 section 3.1.5
        Search("a", (SearchModSeq(620162338, ("/flags/\\draft", "all")),)),
    ),
    (b"a SEARCH MODSEQ 0", Search("a", (SearchModSeq(0),))),
    (
        b"A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])",
        Fetch(
            "A654",
            seq("2:4"),
            (FetchAttribute("FLAGS"), FetchBody(Section((), SectionText.HEADER_FIELDS, ("DATE", "FROM")))),
        ),
    ),
    (b"A999 UID FETCH 4827313:4828442 FLAGS", Fetch("A999", seq("4827313:4828442"), f("FLAGS"), uid=True)),
    (
        b"a FETCH 1 ALL",
        Fetch("a", seq("1"), f("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"), macro="ALL"),
    ),
    (b"a FETCH 1 fast", Fetch("a", seq("1"), f("FLAGS", "INTERNALDATE", "RFC822.SIZE"), macro="FAST")),
    (
        b"a FETCH 1:* FULL",
        Fetch("a", seq("1:*"), f("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"), macro="FULL"),
    ),
    (
        b"a FETCH 1 (envelope flags internaldate rfc822.size body bodystructure uid rfc822 rfc822.header "
        b"rfc822.text modseq)",
        Fetch(
            "a",
            seq("1"),
            f(
                "ENVELOPE",
                "FLAGS",
                "INTERNALDATE",
                "RFC822.SIZE",
                "BODY",
                "BODYSTRUCTURE",
                "UID",
                "RFC822",
                "RFC822.HEADER",
                "RFC822.TEXT",
                "MODSEQ",
            ),
        ),
    ),
    (
        b"a FETCH 3 (BODY[] BODY.PEEK[TEXT]<0.2048> BODY[1.2.MIME] BODY[4.2.HEADER.FIELDS.NOT (Subject X-A)] "
        b"BODY[3.HEADER] BODY[2.TEXT] body[1]<10.1>)",
        Fetch(
            "a",
            seq("3"),
            (
                FetchBody(Section()),
                FetchBody(Section((), SectionText.TEXT), Partial(0, 2048), peek=True),
                FetchBody(Section((1, 2), SectionText.MIME)),
                FetchBody(Section((4, 2), SectionText.HEADER_FIELDS_NOT, ("Subject", "X-A"))),
                FetchBody(Section((3,), SectionText.HEADER)),
                FetchBody(Section((2,), SectionText.TEXT)),
                FetchBody(Section((1,)), Partial(10, 1)),
            ),
        ),
    ),
    (
        b"t FETCH 1 (BINARY.PEEK[1]<0.1024> BINARY[] BINARY[1.2] BINARY.SIZE[2])",  # RFC 3516
        Fetch(
            "t",
            seq("1"),
            (
                FetchBinary((1,), Partial(0, 1024), peek=True),
                FetchBinary(()),
                FetchBinary((1, 2)),
                FetchBinarySize((2,)),
            ),
        ),
    ),
    (
        b"s100 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)",  # RFC 7162 section 3.1.4.1
        Fetch("s100", seq("1:*"), f("FLAGS"), changed_since=12345, uid=True),
    ),
    (
        b"A03 UID FETCH 1:* FLAGS (CHANGEDSINCE 12345 VANISHED)",  # RFC 7162 section 3.2.6
        Fetch("A03", seq("1:*"), f("FLAGS"), changed_since=12345, vanished=True, uid=True),
    ),
    (
        b"A003 STORE 2:4 +FLAGS (\\Deleted)",
        Store("A003", seq("2:4"), StoreMode.ADD, ("\\Deleted",)),
    ),
    (
        b"A004 STORE 1 FLAGS.SILENT \\seen $Junk",
        Store("A004", seq("1"), StoreMode.REPLACE, ("\\Seen", "$Junk"), silent=True),
    ),
    (b"A005 STORE 1 -flags ()", Store("A005", seq("1"), StoreMode.REMOVE, ())),
    (
        b"a103 UID STORE 6,4,8 (UNCHANGEDSINCE 12121230045) +FLAGS.SILENT (\\Deleted)",  # RFC 7162
        Store("a103", seq("6,4,8"), StoreMode.ADD, ("\\Deleted",), True, 12121230045, uid=True),
    ),
    (b"A003 COPY 2:4 MEETING", Copy("A003", seq("2:4"), mb("MEETING"))),
    (b"a UID COPY 1:3 Trash", Copy("a", seq("1:3"), mb("Trash"), uid=True)),
    (b"a MOVE 1:3 Trash", Move("a", seq("1:3"), mb("Trash"))),  # RFC 6851
    (b"a UID MOVE 42:69 foo", Move("a", seq("42:69"), mb("foo"), uid=True)),
    # RFC 2971
    (
        b'a023 ID ("name" "sodr" "version" "19.34" "vendor" "Pink Floyd Music Limited")',
        Id("a023", (("name", "sodr"), ("version", "19.34"), ("vendor", "Pink Floyd Music Limited"))),
    ),
    (b"a023 ID NIL", Id("a023", None)),
    (b'a024 ID ("name" NIL)', Id("a024", (("name", None),))),
    (b"a025 ID ()", Id("a025", ())),
    # modified UTF-7 mailbox names (RFC 3501 section 5.1.3)
    (b"A1 SELECT &ZeVnLIqe-", Select("A1", mb("日本語", "&ZeVnLIqe-"))),
    (
        b'A1 CREATE "~peter/mail/&U,BTFw-/&ZeVnLIqe-"',
        Create("A1", mb("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-")),
    ),
    (b"A1 SELECT Tom&-Jerry", Select("A1", mb("Tom&Jerry", "Tom&-Jerry"))),
    # not (canonical) modified UTF-7: a valid astring naming no mailbox (NO, not BAD; decision 0020) ...
    (b"A1 SELECT Tom&Jerry", Select("A1", MailboxName("Tom&Jerry", "Tom&Jerry", valid=False))),
    (b"A1 SELECT &AGE-", Select("A1", MailboxName("&AGE-", "&AGE-", valid=False))),
    # ... and a pattern or reference that matches what it looks like
    (
        b'A1 LIST "&AGE-" "Tom&Jerry*"',
        List("A1", MailboxName("a", "&AGE-", valid=False), (MailboxName("Tom&Jerry*", "Tom&Jerry*", False),)),
    ),
    # tags may contain "]"; INBOX only case-folded alone
    (b"a]1 SELECT Inbox/Sub", Select("a]1", mb("Inbox/Sub"))),
]


@pytest.mark.parametrize(("line", "expected"), RFC_EXAMPLES, ids=[e[0][:50].decode() for e in RFC_EXAMPLES])
def test_rfc_example_commands_parse_to_typed_commands(line: bytes, expected: ReaderEvent) -> None:
    assert parse_one(line) == expected


LITERAL_EXAMPLES: list[tuple[bytes, list[ReaderEvent]]] = [
    # RFC 3501 section 6.2.3 (and 9051 6.2.3): LOGIN with synchronizing literals
    (b"A001 LOGIN {11}\r\nFRED FOOBAR {7}\r\nfat man\r\n", [Login("A001", "FRED FOOBAR", "fat man")]),
    (b"A001 LOGIN {4+}\r\nfred {7+}\r\nfat man\r\n", [Login("A001", "fred", "fat man")]),
    (b"A001 LOGIN {0}\r\n {0}\r\n\r\n", [Login("A001", "", "")]),
    # RFC 3501 section 6.4.4: SEARCH with CHARSET and a literal
    (
        b"A284 SEARCH CHARSET UTF-8 TEXT {6}\r\nXXXXXX\r\n",
        [Search("A284", (SearchText("TEXT", "XXXXXX"),), charset="UTF-8")],
    ),
    (
        "A285 SEARCH CHARSET UTF-8 TEXT {12}\r\nотпуск\r\n".encode(),  # RFC 9051 section 6.4.4
        [Search("A285", (SearchText("TEXT", "отпуск"),), charset="UTF-8")],
    ),
    (
        b"A286 SEARCH CHARSET us-ascii HEADER {7+}\r\nX-Thing {2}\r\nab SEEN\r\n",
        [Search("A286", (SearchHeader("X-Thing", "ab"), SearchFlag("SEEN")), charset="US-ASCII")],
    ),
    (b"A1 SELECT {5}\r\ninbox\r\n", [Select("A1", mb("INBOX", "inbox"))]),
    (
        b"A1 FETCH 1 BODY[HEADER.FIELDS ({4}\r\nDATE {4+}\r\nFROM)]\r\n",
        [Fetch("A1", seq("1"), (FetchBody(Section((), SectionText.HEADER_FIELDS, ("DATE", "FROM"))),))],
    ),
    (b"A1 RENAME {1}\r\na {1}\r\nb\r\n", [Rename("A1", mb("a"), mb("b"))]),
]


@pytest.mark.parametrize(
    ("data", "expected"), LITERAL_EXAMPLES, ids=[e[0][:30].decode() for e in LITERAL_EXAMPLES]
)
def test_commands_with_literals(data: bytes, expected: list[ReaderEvent]) -> None:
    assert parse(data) == expected


def test_append_rfc_example_streams_the_message() -> None:
    message = (
        b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\nFrom: Fred Foobar <foobar@Blurdybloop.example>\r\n"
        b"Subject: afternoon meeting\r\n\r\nHello Joe, do you think we can meet at 3:30 tomorrow?\r\n"
    )
    data = b"A003 APPEND saved-messages (\\Seen) {%d}\r\n%s\r\n" % (len(message), message)
    reader = CommandReader()
    reader.feed(data)
    events = []
    while (event := reader.next()) is not None:
        events.append(event)
    spec = AppendMessage(("\\Seen",), None, len(message))
    assert events == [
        events[0],
        NeedContinuation("A003", len(message)),
        events[2],
        Append("A003", mb("saved-messages"), (spec,)),
    ]
    start, chunk = events[0], events[2]
    assert isinstance(start, AppendMessageStart)
    assert start.mailbox == mb("saved-messages")
    assert start.message == spec
    assert isinstance(chunk, AppendData)
    assert chunk.data == message


def test_append_with_date_time_multiappend_binary_and_utf8() -> None:
    data = (
        b'A1 APPEND Drafts (\\Draft $MDNSent) " 7-Feb-1994 21:52:25 -0800" {3+}\r\nabc'
        b" ~{2+}\r\nxy"
        b' "17-Jul-1996 02:44:25 +0530" UTF8 (~{4+}\r\n\xc3\xa9t\xc3)'
        b" () {0+}\r\n\r\n"
    )
    events = [e for e in parse(data) if isinstance(e, Append)]
    tz_pst = TZ(-datetime.timedelta(hours=8))
    tz_ist = TZ(datetime.timedelta(hours=5, minutes=30))
    assert events == [
        Append(
            "A1",
            mb("Drafts"),
            (
                AppendMessage(
                    ("\\Draft", "$MDNSent"), datetime.datetime(1994, 2, 7, 21, 52, 25, tzinfo=tz_pst), 3
                ),
                AppendMessage((), None, 2, binary=True),
                AppendMessage((), datetime.datetime(1996, 7, 17, 2, 44, 25, tzinfo=tz_ist), 4, True, True),
                AppendMessage((), None, 0),
            ),
        )
    ]


def test_utf8_mode_takes_utf8_mailbox_names_and_quoted_strings() -> None:
    assert parse_one('A1 SELECT "Données/été"'.encode(), utf8=True) == Select("A1", mb("Données/été"))
    # "&" is an ordinary character of a UTF-8 name
    assert parse_one(b"A1 SELECT Tom&Jerry", utf8=True) == Select("A1", mb("Tom&Jerry"))
    assert parse_one('A1 SEARCH SUBJECT "café"'.encode(), utf8=True) == Search(
        "A1", (SearchText("SUBJECT", "café"),)
    )


ERRORS: list[tuple[bytes, str | None, str]] = [
    (b"A1 FOO", "A1", "unknown command FOO"),
    (b"A1 UID NOOP", "A1", "unknown command UID NOOP"),
    (b"A1", "A1", "missing command"),
    (b"* NOOP", None, "invalid tag"),
    (b"A+1 NOOP", None, "invalid tag"),
    (b"A1 NOOP now", "A1", "NOOP takes no arguments"),
    (b"A1  NOOP", "A1", "expected a command name"),
    (b"A1 LOGIN fred", "A1", "expected a space"),
    (b'A1 LOGIN fred "unterminated', "A1", "unterminated or invalid quoted string"),
    (b'A1 LOGIN fred "bad \\x escape"', "A1", "unterminated or invalid quoted string"),
    (b"A1 LOGIN fred {5}x", "A1", "followed by CRLF"),
    (b'A1 SELECT "caf\xc3\xa9"', "A1", "8-bit characters in a quoted string"),
    (b"A1 SELECT INBOX (", "A1", "expected a parameter name"),
    (b"A1 FETCH 0 FLAGS", "A1", "invalid sequence set"),
    (b"A1 FETCH 1:4294967296 FLAGS", "A1", "above 4294967295"),
    (b"A1 FETCH 1 BODY[MIME]", "A1", "MIME needs a part number"),
    (b"A1 FETCH 1 BODY[HEADER.FIELDS ()]", "A1", "expected a header field name"),
    (b"A1 FETCH 1 BODY[HEADER.FIELDS]", "A1", "expected a space"),
    (b"A1 FETCH 1 BODY[0]", "A1", "invalid part number 0"),
    (b"A1 FETCH 1 BODY[1.]", "A1", "invalid section"),
    (b"A1 FETCH 1 BODY[FOO]", "A1", "invalid section FOO"),
    (b"A1 FETCH 1 BODY[]<5>", "A1", "expected '.'"),
    (b"A1 FETCH 1 BODY[]<5.0>", "A1", "non-zero"),
    (b"A1 FETCH 1 BODY.PEEK", "A1", "unknown fetch item BODY.PEEK"),
    (b"A1 FETCH 1 BINARY[TEXT]", "A1", "part numbers only"),
    (b"A1 FETCH 1 BINARY.SIZE[1]<0.5>", "A1", "expected a space but found '<0.5>'"),
    (b"A1 FETCH 1 (FLAGS", "A1", "expected a space"),
    (b"A1 FETCH 1 FLAGS (VANISHED)", "A1", "invalid fetch modifier VANISHED"),
    (b"A1 UID FETCH 1 FLAGS (VANISHED)", "A1", "VANISHED needs CHANGEDSINCE"),
    (b"A1 STORE 1 FLAGS", "A1", "expected a space"),
    (b"A1 STORE 1 LABELS (x)", "A1", "expected FLAGS"),
    (b"A1 STORE 1 FLAGS (\\*)", "A1", "expected a flag name"),
    (b"A1 SEARCH", "A1", "expected a space"),
    (b"A1 SEARCH FROG", "A1", "unknown search key FROG"),
    (b"A1 SEARCH SINCE 31-Feb-2020", "A1", "invalid date 31-Feb-2020"),
    (b"A1 SEARCH SINCE 1-Foo-2020", "A1", "invalid date"),
    (b"A1 SEARCH SINCE 2020-01-01", "A1", "expected a date"),
    (b"A1 SEARCH OR SEEN", "A1", "expected a space"),
    (b"A1 SEARCH RETURN (FOO) ALL", "A1", "unknown SEARCH RETURN option FOO"),
    (b"A1 SEARCH " + b"(" * 70 + b"ALL" + b")" * 70, "A1", "nested too deeply"),
    (b"A1 SEARCH " + b"NOT " * 70 + b"ALL", "A1", "nested too deeply"),
    (b"A1 STATUS INBOX (MESSAGES FOO)", "A1", "unknown status item"),
    (b"A1 STATUS INBOX ()", "A1", "non-empty list"),
    (b"A1 LIST foo", "A1", "expected a space"),
    (b'A1 LIST "" * FOO', "A1", "expected RETURN"),
    (b"A1 APPEND INBOX", "A1", "expected a space"),
    (b"A1 APPEND INBOX (\\Seen)", "A1", "expected a space"),
    (b'A1 APPEND INBOX "1-Jan-2020 25:00:00 +0000" {1}', "A1", "invalid date-time"),
    (b"A1 APPEND INBOX UTF8 ({1}", "A1", "literal8"),
    (b"A1 LOGIN ~{1}", "A1", "literal8 (~{n}) is only allowed for APPEND"),
    (b"A1 ENABLE", "A1", "at least one capability"),
    (b"A1 AUTHENTICATE PLAIN AB=C", "A1", "invalid base64"),
    (b"A1 CREATE foo (USE Drafts)", "A1", "special-use attributes"),
    (b'A1 ID ("name")', "A1", "expected a space"),
    (b"A1 SELECT a\x01b", "A1", "found '\\x01b'"),
]


@pytest.mark.parametrize(
    ("line", "tag", "reason"),
    ERRORS,
    ids=[e[0][:40].decode("latin-1") for e in ERRORS],
)
def test_syntax_errors_give_parse_error_with_reason(line: bytes, tag: str | None, reason: str) -> None:
    events = parse(line + b"\r\n")
    assert len(events) == 1, events
    event = events[0]
    assert isinstance(event, ParseError), event
    assert event.tag == tag
    assert reason in event.message


def test_quoted_control_characters_in_mailbox_names_are_refused() -> None:
    event = parse_one(b'A1 SELECT "a\tb"')
    assert isinstance(event, ParseError)
    assert "control character" in event.message


def test_unsupported_search_charset_is_a_typed_error() -> None:
    assert parse_one(b"A1 SEARCH CHARSET KOI8-R TEXT x") == UnsupportedCharset("A1", "KOI8-R")
    assert parse_one(b'A1 UID SEARCH CHARSET "iso-8859-1" ALL') == UnsupportedCharset("A1", "ISO-8859-1")


def test_search_literal_must_be_utf8() -> None:
    event = parse(b"A1 SEARCH TEXT {2}\r\n\xff\xfe\r\n")[0]
    assert isinstance(event, ParseError)
    assert "UTF-8" in event.message


def test_command_names_and_uid_variants_report_their_name() -> None:
    def name(line: bytes) -> str:
        command = parse_one(line)
        assert isinstance(command, Command)
        return command.name

    assert name(b"a uid fetch 1 uid") == "UID FETCH"
    assert name(b"a fetch 1 uid") == "FETCH"
    assert name(b"a uid expunge 1") == "UID EXPUNGE"
    assert name(b"a Expunge") == "EXPUNGE"


def test_section_validity_rules() -> None:
    with pytest.raises(ValueError, match="MIME needs a part number"):
        Section((), SectionText.MIME)
    with pytest.raises(ValueError, match=r"HEADER\.FIELDS\[\.NOT\] needs at least one field name"):
        Section((), SectionText.HEADER_FIELDS)
    with pytest.raises(ValueError, match=r"only they take fields"):
        Section((), SectionText.TEXT, ("Date",))
    with pytest.raises(ValueError, match="section part numbers are positive"):
        Section((0,))
    assert str(Section((1, 2), SectionText.HEADER_FIELDS_NOT, ("A", "B"))) == "[1.2.HEADER.FIELDS.NOT (A B)]"
    assert str(FetchBody(Section(), Partial(0, 10), peek=True)) == "BODY.PEEK[]<0.10>"


# -- numbers at the bounds of their grammar (RFC 9051 section 9; docs/decisions/0043) --------------------
N32, N64 = 2**32 - 1, 2**63 - 1


@pytest.mark.parametrize(
    ("line", "accepted"),
    [
        # partial = "<" number64 "." nz-number64 ">" (RFC 9051; RFC 3501 had 32-bit `number`): the tester's
        # <0.4294967296> is valid IMAP4rev2, and clipped to the message like any other length
        (b"A1 FETCH 1 BODY.PEEK[]<0.4294967296>", True),
        (b"A1 FETCH 1 BODY.PEEK[]<%d.%d>" % (N64, N64), True),
        (b"A1 FETCH 1 BODY.PEEK[]<%d.1>" % (N64 + 1), False),
        (b"A1 FETCH 1 BODY.PEEK[]<0.%d>" % (N64 + 1), False),
        (b"A1 FETCH 1 BINARY.PEEK[1]<0.%d>" % (N64 + 1), False),
        (b"A1 FETCH 1 BODY[]<0.0>", False),  # nz-number64
        # section-part = nz-number *("." nz-number): 32-bit
        (b"A1 FETCH 1 BODY[%d]" % N32, True),
        (b"A1 FETCH 1 BODY[%d]" % (N32 + 1), False),
        (b"A1 FETCH 1 BINARY.SIZE[1.%d]" % (N32 + 1), False),
        # seq-number = nz-number / "*": message numbers and UIDs are 32-bit
        (b"A1 FETCH %d FLAGS" % N32, True),
        (b"A1 FETCH %d FLAGS" % (N32 + 1), False),
        (b"A1 UID FETCH 1:%d FLAGS" % (N32 + 1), False),
        (b"A1 UID STORE %d +FLAGS (a)" % (N32 + 1), False),
        (b"A1 UID COPY %d INBOX" % (N32 + 1), False),
        (b"A1 UID EXPUNGE %d" % (N32 + 1), False),
        (b"A1 SEARCH UID %d" % (N32 + 1), False),
        (b"A1 SEARCH %d" % (N32 + 1), False),
        (b"A1 FETCH 1" + b"0" * 5000 + b" FLAGS", False),  # more digits than int() converts
        # LARGER / SMALLER number64 (RFC 9051)
        (b"A1 SEARCH LARGER %d" % N64, True),
        (b"A1 SEARCH SMALLER %d" % (N64 + 1), False),
    ],
)
def test_numbers_beyond_their_grammar_are_bad(line: bytes, accepted: bool) -> None:
    event = parse_one(line)
    assert isinstance(event, ParseError) != accepted, event


def test_a_literal_size_beyond_number64_is_bad_not_toobig() -> None:
    """literal = "{" number64 ["+"] "}" (RFC 9051 section 9): a larger size is a syntax error (BAD), where a
    size within number64 above the limit is LiteralTooLarge (NO [TOOBIG] for APPEND)."""
    for line in (b"A1 APPEND INBOX {%d}\r\n" % (N64 + 1), b"A1 LOGIN {%d}\r\n" % (N64 + 1)):
        reader = CommandReader()
        reader.feed(line + b"A2 NOOP\r\n")
        first = reader.next()
        assert isinstance(first, ParseError), first
        assert "number64" in first.message, first
        assert reader.next() == Noop("A2")  # a synchronizing literal was never sent: the session goes on
    reader = CommandReader()
    reader.feed(b"A1 APPEND INBOX {%d}\r\n" % N64)
    assert isinstance(reader.next(), LiteralTooLarge)


def test_sort_and_thread_commands() -> None:
    """RFC 5256 SORT and THREAD (a charset is required), RFC 5267 ESORT's RETURN, RFC 5957's DISPLAY keys."""
    sort = parse_one(b'a UID SORT RETURN (MIN COUNT) (REVERSE date displayFROM) "utf-8" UNSEEN FROM x')
    assert sort == Sort(
        "a",
        (("DATE", True), ("DISPLAYFROM", False)),
        "UTF-8",
        (SearchFlag("UNSEEN"), SearchText("FROM", "x")),
        ("MIN", "COUNT"),
        True,
    )
    assert sort.name == "UID SORT"
    assert parse_one(b"b THREAD references US-ASCII ALL") == Thread(
        "b", "REFERENCES", "US-ASCII", (SearchFlag("ALL"),), False
    )
    assert parse_one(b"c SORT (SUBJECT) KOI8-R ALL") == UnsupportedCharset("c", "KOI8-R")
    for bad_line in (
        b"d SORT (SUBJECT) UTF-8",  # no search key
        b"d SORT (SUBJECT) KOI8-R",  # no search key: BAD before the charset is judged
        b"d SORT SUBJECT UTF-8 ALL",  # the criteria must be a list
        b"d SORT () UTF-8 ALL",
        b"d SORT (REVERSE) UTF-8 ALL",
        b"d SORT (REVERSE REVERSE DATE) UTF-8 ALL",
        b"d SORT (SUBJECT) ALL",  # the charset is required: ALL is read as one, then no key
        b"d SORT RETURN (PARTIAL 1:10 ALL) (DATE) UTF-8 ALL",  # RFC 5267 4.4: PARTIAL or ALL, not both
        b"d THREAD (REFERENCES) UTF-8 ALL",
        b"d THREAD ORDEREDSUBJECT UTF-8",
        b"d THREAD JWZ UTF-8 ALL",
        b"d SORT (" + b"DATE " * 40 + b"SIZE) UTF-8 ALL",
    ):
        event = parse_one(bad_line)
        assert isinstance(event, ParseError), (bad_line, event)


@settings(max_examples=300, deadline=None)
@given(
    keys=st.lists(
        st.sampled_from(
            ["ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"]
        ),
        min_size=1,
        max_size=9,
    ),
    reverse=st.lists(st.booleans(), min_size=9, max_size=9),
    tail=st.binary(max_size=40),
)
def test_sort_parses_what_it_is_given_or_answers_bad(
    keys: list[str], reverse: list[bool], tail: bytes
) -> None:
    criteria = " ".join(("REVERSE " if r else "") + k for k, r in zip(keys, reverse, strict=False))
    command = parse_one(f"t SORT ({criteria}) UTF-8 ALL".encode())
    assert isinstance(command, Sort)
    assert command.criteria == tuple(zip(keys, reverse[: len(keys)], strict=True))
    line = tail.translate(None, b"\r\n{")  # no line ends, no literals: one line, one event
    events = parse(f"t SORT ({criteria}) UTF-8 ".encode() + line + b"\r\n")
    assert len(events) == 1
    assert isinstance(events[0], Sort | ParseError)


def test_replace_streams_its_message_as_append_does() -> None:
    """RFC 8508: [UID] REPLACE n mailbox message, one message, through the APPEND streaming events."""
    events = parse(b"a UID REPLACE 4 {6}\r\nDrafts (\\Seen) {5}\r\nhello\r\n")
    message = AppendMessage(("\\Seen",), None, 5)
    drafts = MailboxName("Drafts", "Drafts")
    assert events == [
        AppendMessageStart("a", drafts, 0, message, True, (4, True)),
        AppendData("a", b"hello"),
        Replace("a", drafts, message, 4, True),
    ]
    assert Replace("a", drafts, message, 4, True).name == "UID REPLACE"
    zero = parse_one(b"b REPLACE 0 INBOX {5}")
    assert isinstance(zero, ParseError)
    assert "non-zero" in zero.message
    second = parse(b"c REPLACE 1 INBOX {5+}\r\nhello {5+}\r\nworld\r\n")
    assert isinstance(second[-1], ParseError)
    assert "one message" in second[-1].message


def test_getmetadata_options_entries_and_the_rfc_examples() -> None:
    """RFC 5464 4.2: the options before the mailbox (its grammar) or after it (its examples), entries as a
    list or one or more names; names lower-case, each once; DEPTH 0 when not given."""
    inbox, server = mb("INBOX"), mb("")
    cases = [
        (b'a GETMETADATA "" /shared/comment', GetMetadata("a", server, ("/shared/comment",))),
        (
            b"a GETMETADATA inbox /Private/Comment",
            GetMetadata("a", mb("INBOX", "inbox"), ("/private/comment",)),
        ),
        (
            b'a GETMETADATA "INBOX" (/shared/comment /private/comment /SHARED/COMMENT)',
            GetMetadata("a", inbox, ("/shared/comment", "/private/comment")),
        ),
        (
            b"a GETMETADATA INBOX /private/comment /shared/comment",
            GetMetadata("a", inbox, ("/private/comment", "/shared/comment")),
        ),
        (
            b'a GETMETADATA "INBOX" (MAXSIZE 1024) (/shared/comment /private/comment)',
            GetMetadata("a", inbox, ("/shared/comment", "/private/comment"), 1024),
        ),
        (
            b'a GETMETADATA "INBOX" (DEPTH 1) (/private/filters/values)',
            GetMetadata("a", inbox, ("/private/filters/values",), None, 1),
        ),
        (
            b"a GETMETADATA (depth Infinity maxsize 0) INBOX /private",
            GetMetadata("a", inbox, ("/private",), 0, None),
        ),
        (b"a GETMETADATA INBOX (DEPTH 0) (/shared)", GetMetadata("a", inbox, ("/shared",), None, 0)),
        (b'a GETMETADATA INBOX "/private/with space"', GetMetadata("a", inbox, ("/private/with space",))),
    ]
    for line, expected in cases:
        assert parse_one(line) == expected, line
    long_name = "/private/" + "x" * (MAX_METADATA_ENTRY_LENGTH - len("/private/"))
    assert parse_one(f"a GETMETADATA INBOX {long_name}".encode()) == GetMetadata("a", inbox, (long_name,))


def test_setmetadata_values_nil_strings_literals_and_literal8() -> None:
    """RFC 5464 4.3 and section 5: value = nstring / literal8; the RFC's multi-line literal example."""
    inbox = mb("INBOX")
    two_lines = b"My new comment across\r\ntwo lines."
    assert parse(b"a SETMETADATA INBOX (/private/comment {33}\r\n" + two_lines + b")\r\n") == [
        SetMetadata("a", inbox, (("/private/comment", two_lines),))
    ]
    line = b'a SETMETADATA INBOX (/private/comment NIL /Shared/Comment "This one is for you!")'
    assert parse_one(line) == SetMetadata(
        "a", inbox, (("/private/comment", None), ("/shared/comment", b"This one is for you!"))
    )
    data = b'a SETMETADATA "" (/shared/vendor/example/blob ~{3+}\r\n\x00\xff\x00 /private/x "")\r\n'
    assert parse(data) == [
        SetMetadata("a", mb(""), (("/shared/vendor/example/blob", b"\x00\xff\x00"), ("/private/x", b"")))
    ]
    # NUL only in a literal8; a literal8 elsewhere stays refused
    assert isinstance(parse(b"a SETMETADATA INBOX (/private/x {1+}\r\n\x00)\r\n")[-1], ParseError)
    assert isinstance(parse(b"a SETMETADATA INBOX ~{5+}\r\nINBOX (/private/x NIL)\r\n")[-1], ParseError)
    # 8-bit in a quoted value only after UTF8=ACCEPT
    assert isinstance(parse_one('a SETMETADATA INBOX (/private/x "été")'.encode()), ParseError)
    assert parse_one('a SETMETADATA INBOX (/private/x "été")'.encode(), utf8=True) == SetMetadata(
        "a", inbox, (("/private/x", "été".encode()),)
    )


@pytest.mark.parametrize(
    "line",
    [
        b"a GETMETADATA INBOX /private/c*mment",
        b'a GETMETADATA INBOX "/private/c%mment"',
        b'a GETMETADATA INBOX "/private/\x01"',
        b"a GETMETADATA INBOX {12}\r\n/private/\xc3\xa9t",
        b"a GETMETADATA INBOX /private//comment",
        b"a GETMETADATA INBOX /private/",
        b"a GETMETADATA INBOX /",
        b"a GETMETADATA INBOX /comment",
        b"a GETMETADATA INBOX /privates/comment",
        b"a GETMETADATA INBOX private/comment",
        b"a GETMETADATA INBOX /private/" + b"x" * MAX_METADATA_ENTRY_LENGTH,
        b"a GETMETADATA INBOX ()",
        b"a GETMETADATA INBOX",
        b"a GETMETADATA INBOX (DEPTH 2) /private",
        b"a GETMETADATA INBOX (DEPTH 01) /private",
        b"a GETMETADATA INBOX (MAXSIZE) /private",
        b"a GETMETADATA INBOX (MAXSIZE 4294967296) /private",
        b"a GETMETADATA INBOX (MAXSIZE 1 MAXSIZE 2) /private",
        b"a GETMETADATA INBOX (NOTANOPTION 1) /private",
        b"a GETMETADATA (DEPTH 1) INBOX (DEPTH 1) /private",
        b"a GETMETADATA INBOX (/private/a /private/b",
        b'a SETMETADATA INBOX (/private "x")',
        b'a SETMETADATA INBOX (/shared/vendor/example "x")',
        b'a SETMETADATA INBOX (/private/vendor "x")',
        b"a SETMETADATA INBOX (/private/x atom)",
        b"a SETMETADATA INBOX (/private/x)",
        b"a SETMETADATA INBOX ()",
        b'a SETMETADATA INBOX /private/x "v"',
        b'a SETMETADATA INBOX (/private/x "v") extra',
    ],
)
def test_metadata_syntax_and_entry_name_errors_are_bad(line: bytes) -> None:
    """RFC 5464 3.2: invalid entry names are BAD in every command; section 5 for the rest."""
    events = parse(line + b"\r\n")
    assert isinstance(events[-1], ParseError), (line, events)


def test_a_setmetadata_literal_over_the_line_limit_names_its_command() -> None:
    """The reader refuses a literal beyond the command's room; the server answers SETMETADATA's with NO
    [METADATA MAXSIZE n] (RFC 5464 4.3), so the event says which command it was."""
    reader = CommandReader(max_line=2048)
    reader.feed(b"a SETMETADATA INBOX (/private/x {5000}\r\nb NOOP\r\n")
    event = reader.next()
    assert isinstance(event, LiteralTooLarge)
    assert (event.tag, event.size, event.command) == ("a", 5000, "SETMETADATA")
    assert reader.next() == Noop("b")
    reader.feed(b"c login {5000}\r\n")
    event = reader.next()
    assert isinstance(event, LiteralTooLarge)
    assert event.command == "LOGIN"


_METADATA_ARGUMENT_BYTES = st.lists(
    st.one_of(
        st.sampled_from(
            [b" ", b"(", b")", b'"', b"\\", b"NIL", b"/", b"private", b"shared", b"vendor", b"comment", b"*"]
        ),
        st.sampled_from([b"%", b"MAXSIZE", b"DEPTH", b"infinity", b"0", b"1", b"INBOX", b'""', b"~{1+}"]),
        st.sampled_from([b"{2+}", b"{0}", b"\x00", b"\xc3\xa9", b"\r\n", b"\n", b"\t", b"~", b"{"]),
        st.binary(max_size=6),
    ),
    max_size=24,
).map(b"".join)


@settings(max_examples=500, deadline=None)
@given(command=st.sampled_from([b"GETMETADATA", b"SETMETADATA"]), arguments=_METADATA_ARGUMENT_BYTES)
def test_random_metadata_arguments_give_a_command_or_a_parse_error(command: bytes, arguments: bytes) -> None:
    """Whatever follows GETMETADATA or SETMETADATA, the reader gives commands or ParseErrors (or the literal
    events around them), never an exception; a typed result holds only names that follow the rules."""
    reader = CommandReader(max_line=4096)
    reader.feed(b"t " + command + b" " + arguments + b"\r\nz NOOP\r\n")
    events = []
    while (event := reader.next()) is not None:
        events.append(event)
        assert len(events) < 100
    expected = GetMetadata | SetMetadata | Noop | ParseError | NeedContinuation | LiteralTooLarge
    for event in events:
        assert isinstance(event, expected)
        names = (
            event.entries
            if isinstance(event, GetMetadata)
            else [name for name, _ in event.entries]
            if isinstance(event, SetMetadata)
            else []
        )
        for name in names:
            assert name == name.lower()
            assert name.split("/")[1] in ("private", "shared")
            assert not any(char in name for char in "*%\t")
            assert "//" not in name
            assert not name.endswith("/")
