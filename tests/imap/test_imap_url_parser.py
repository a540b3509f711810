"""The IMAP URL parser (RFC 5092, URLAUTH's parts of RFC 4467) and the parser's new command forms (CATENATE,
GENURLAUTH, RESETKEY, URLFETCH): property tests (round trips, never a stray exception) and the RFCs' own
examples."""

from __future__ import annotations

import dataclasses
import datetime
import urllib.parse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.imap.imapurl import ImapUrl, UrlError, format_url, parse_url, resp_text
from postoffice.imap.parser import (
    MAX_CATENATE_PARTS,
    Append,
    AppendData,
    AppendMessage,
    AppendMessageStart,
    CatenateText,
    CatenateTextStart,
    CatenateUrl,
    CommandReader,
    GenUrlAuth,
    MailboxName,
    NeedContinuation,
    ParseError,
    ReaderEvent,
    Replace,
    ResetKey,
    Section,
    SectionText,
    UrlFetch,
    UrlFetchItem,
    parse_section,
)

# ------------------------------------------------------------------------------------------ URL strategies

names = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=12)
hosts = st.from_regex(r"[a-z0-9][a-z0-9.-]{0,15}", fullmatch=True) | st.sampled_from(
    ["[::1]", "[2001:db8::7]"]
)
numbers = st.integers(1, 2**32 - 1)
zones = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(
    lambda m: datetime.timezone(datetime.timedelta(minutes=m))
)
expires = st.datetimes(
    min_value=datetime.datetime(1, 1, 2), max_value=datetime.datetime(9999, 12, 30), timezones=zones
)
mechanisms = st.from_regex(r"[A-Za-z0-9.-]{1,10}", fullmatch=True)
tokens = st.from_regex(r"[0-9a-fA-F]{32,70}", fullmatch=True)


@st.composite
def urlauths(draw: st.DrawFn) -> dict[str, object]:
    access = draw(st.sampled_from(["anonymous", "authuser", "submit", "user"]))
    values: dict[str, object] = {"access": access, "expire": draw(st.none() | expires)}
    if access in ("submit", "user"):
        values["access_user"] = draw(names)
    if draw(st.booleans()):
        values["mechanism"] = draw(mechanisms)
        values["token"] = draw(tokens)
    return values


@st.composite
def message_parts(draw: st.DrawFn, *, uid_required: bool) -> dict[str, object]:
    values: dict[str, object] = {}
    if uid_required or draw(st.booleans()):
        values["uid"] = draw(numbers)
    if draw(st.booleans()):
        values["section"] = draw(names)
    if draw(st.booleans()):
        values["partial"] = (draw(st.integers(0, 2**32 - 1)), draw(st.none() | numbers))
    if not values:
        values["uid"] = draw(numbers)
    if "uid" in values and draw(st.booleans()):
        values.update(draw(urlauths()))
    return values


@st.composite
def urls(draw: st.DrawFn) -> ImapUrl:
    """Every shape `parse_url` gives: a server, a message list, a message part; absolute, absolute-path or
    relative."""
    form = draw(st.sampled_from(["server", "absolute-path", "relative"]))
    values: dict[str, object] = {}
    if form == "server":
        values.update(
            server=True, absolute=True, host=draw(hosts), port=draw(st.none() | st.integers(0, 65535))
        )
        if draw(st.booleans()):
            values["user"] = draw(names)
            values["auth"] = draw(st.none() | st.just("*") | names)
        elif draw(st.booleans()):
            values["auth"] = draw(st.just("*") | names)
        if draw(st.booleans()):
            return ImapUrl(**values)  # type: ignore[arg-type]
    elif form == "absolute-path":
        values["absolute"] = True
    if form == "relative" and draw(st.booleans()):
        values.update(draw(message_parts(uid_required=False)))  # ";UID=..." without a mailbox
        return ImapUrl(**values)  # type: ignore[arg-type]
    values["mailbox"] = draw(names)
    values["uidvalidity"] = draw(st.none() | numbers)
    if draw(st.booleans()):
        values["search"] = draw(st.none() | names)
    else:
        values.update(draw(message_parts(uid_required=True)))
    return ImapUrl(**values)  # type: ignore[arg-type]


@settings(max_examples=1000, deadline=None)
@given(urls())
def test_a_formatted_url_parses_back_to_the_same_url(url: ImapUrl) -> None:
    text = format_url(url)
    parsed = parse_url(text)
    assert parsed == url
    if url.access is not None:  # the rump is the text up to the access identifier, as written
        assert parsed.rump is not None
        assert text.startswith(parsed.rump)
        assert text[len(parsed.rump) :] in ("", f":{url.mechanism}:{url.token}")


#: Mailbox names with characters beyond ASCII (RFC 5092 section 3.2: UTF-8, percent-encoded in the URL).
wide_texts = st.text(st.characters(min_codepoint=0x80, exclude_categories=["Cs"]), min_size=1)
non_ascii_names = st.builds(
    lambda before, wide, after: before + wide + after, names | st.just(""), wide_texts, names | st.just("")
)


@settings(max_examples=500, deadline=None)
@given(non_ascii_names, st.booleans(), numbers)
def test_a_non_ascii_mailbox_name_is_utf8_percent_encoded_and_read_back(
    name: str, absolute: bool, uid: int
) -> None:
    url = ImapUrl(absolute=absolute, mailbox=name, uid=uid)
    text = format_url(url)
    assert text.isascii()
    for c in name:  # each octet of the UTF-8 of a non-ASCII character as %XX, upper-case hex (RFC 3986 2.1)
        if not c.isascii():
            assert "".join(f"%{octet:02X}" for octet in c.encode("utf-8")) in text
    assert parse_url(text) == url
    path = text.removeprefix("/").rpartition("/;UID=")[0]
    assert urllib.parse.unquote(path, errors="strict") == name


@settings(max_examples=2000, deadline=None)
@given(st.text(max_size=80) | st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=80))
def test_any_text_is_a_url_or_a_url_error(text: str) -> None:
    try:
        url = parse_url(text)
    except UrlError:
        return
    assert parse_url(format_url(url)) == url  # what parses is written back in a form that reads the same


@settings(max_examples=1000, deadline=None)
@given(urls(), st.integers(0, 200), st.text(max_size=4))
def test_a_damaged_url_is_a_url_or_a_url_error(url: ImapUrl, at: int, insert: str) -> None:
    text = format_url(url)
    at = at % (len(text) + 1)
    damaged = text[:at] + insert + text[at + len(insert) :]
    try:
        parsed = parse_url(damaged)
    except UrlError:
        return
    assert parse_url(format_url(parsed)) == parsed


def test_the_rfcs_examples_parse() -> None:
    # RFC 4467 section 7 (URLFETCH's example) and RFC 4469 appendix A (CATENATE's)
    url = parse_url(
        "imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=submit+fred:internal:"
        "91354a473744909de610943775f92038"
    )
    assert (url.user, url.host, url.mailbox, url.uid, url.section) == (
        "joe",
        "example.com",
        "INBOX",
        20,
        "1.2",
    )
    assert (url.access, url.access_user, url.mechanism) == ("submit", "fred", "internal")
    assert url.rump == "imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=submit+fred"
    url = parse_url("/INBOX;UIDVALIDITY=785799047/;UID=113330/;section=1.5.9")
    assert (url.absolute, url.mailbox, url.uidvalidity, url.uid, url.section) == (
        True,
        "INBOX",
        785799047,
        113330,
        "1.5.9",
    )
    # RFC 5092 section 7 (relative forms) and a UTF-8 mailbox name
    assert parse_url(";UID=20/;SECTION=1.2") == ImapUrl(uid=20, section="1.2")
    assert parse_url("Drafts/;UID=4").mailbox == "Drafts"
    assert parse_url("imap://h/Entw%C3%BCrfe/;UID=1").mailbox == "Entwürfe"
    assert parse_url(
        "imap://minbari.example.org/gray-council;UIDVALIDITY=385759045?SUBJECT%20shadows"
    ).search == ("SUBJECT shadows")
    expire = parse_url("imap://u@h/INBOX/;UID=1;EXPIRE=2030-01-02T03:04:05+01:00;URLAUTH=anonymous").expire
    assert expire == datetime.datetime(2030, 1, 2, 2, 4, 5, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "imap://",
        "imap:///INBOX",  # no host
        "imap://h:99999/INBOX",
        "imap://a@b@h/INBOX",  # an @ in the user name must be %40
        "imap://h/INBOX;UID=1",  # the "/" before ;UID= is missing
        "imap://h/INBOX/;UID=0",
        "imap://h/INBOX/;UID=4294967296",
        "imap://h/;UID=1",  # an absolute path names its mailbox
        "imap://h/INBOX/;UID=1;URLAUTH=somebody",
        "imap://h/INBOX/;UID=1;URLAUTH=anonymous:internal:abc",  # a token has 32 hex digits or more
        "imap://h/INBOX;URLAUTH=anonymous",  # URLAUTH is for a message (RFC 4467 section 3)
        "imap://h/INBOX/;UID=1;EXPIRE=2030-01-01T00:00:00Z",  # EXPIRE without URLAUTH
        "imap://h/INBOX/;UID=1;EXPIRE=2030-13-01T00:00:00Z;URLAUTH=anonymous",
        "imap://h/IN BOX/;UID=1",
        "imap://h/INBOX%ZZ/;UID=1",
        "imap://h/%FF/;UID=1",  # not UTF-8
        "imap://h/INBOX/;SECTION=1/;UID=2",  # out of order
        "imap://h/INBOX?SUBJECT/;UID=2",
        "Müll/;UID=1",  # an IRI, not a URL
    ],
)
def test_not_urls(text: str) -> None:
    with pytest.raises(UrlError):
        parse_url(text)


def test_badurl_text_is_a_url_resp_text() -> None:
    # RFC 4469 section 5 with erratum 2002: any TEXT-CHAR but "]"
    assert resp_text("/INBOX;UIDVALIDITY=1/;UID=2") == "/INBOX;UIDVALIDITY=1/;UID=2"
    assert resp_text("a]b c\r\nü") == "a%5Db%20c%0D%0A%C3%BC"


@pytest.mark.parametrize(
    ("text", "section"),
    [
        ("1.2", Section((1, 2))),
        ("HEADER", Section((), SectionText.HEADER)),
        ("1.MIME", Section((1,), SectionText.MIME)),
        ("2.HEADER.FIELDS (TO FROM)", Section((2,), SectionText.HEADER_FIELDS, ("TO", "FROM"))),
        ("", Section()),
        ("1.", None),
        ("MIME", None),
        ("1.2]", None),
        ("HEADER.FIELDS {3}", None),
        ("XYZ", None),
    ],
)
def test_a_url_section_is_a_section_spec(text: str, section: Section | None) -> None:
    assert parse_section(text) == section


# ------------------------------------------------------------------------------------------ command forms

ATOM_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!#&'+,/:;<=>?@^`|~$")


@st.composite
def wire_strings(draw: st.DrawFn, value: str) -> bytes:
    data = value.encode()
    choices = ["literal", "literal+", "quoted"]
    if value and set(value) <= ATOM_SAFE and value.upper() != "NIL":
        choices.append("atom")
    kind = draw(st.sampled_from(choices))
    if kind == "atom":
        return data
    if kind == "quoted":
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d%s}\r\n%s" % (len(data), b"+" if kind == "literal+" else b"", data)


url_texts = urls().map(format_url) | st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1
)


def feed(text: bytes, cuts: list[int]) -> list[ReaderEvent]:
    """The reader's events for `text` fed in pieces cut at `cuts`, without NeedContinuation."""
    reader = CommandReader()
    events: list[ReaderEvent] = []
    start = 0
    for cut in [*sorted(cuts), len(text)]:
        reader.feed(text[start:cut])
        start = max(start, cut)
        while (event := reader.next()) is not None:
            if not isinstance(event, NeedContinuation):
                events.append(event)
    return events


def literal(data: bytes, sync: bool) -> bytes:
    return b"{%d%s}\r\n" % (len(data), b"" if sync else b"+") + data


@st.composite
def catenate_appends(draw: st.DrawFn) -> tuple[list[ReaderEvent], bytes]:
    """APPEND (or REPLACE) with literal and CATENATE messages, and the events the reader gives for it."""
    tag = "a1"
    mailbox = MailboxName("INBOX", "INBOX")
    replace = draw(st.none() | st.tuples(numbers, st.booleans()))
    count = 1 if replace is not None else draw(st.integers(1, 3))
    head = b"a1 " + (b"UID " if replace and replace[1] else b"")
    head += b"REPLACE %d INBOX" % replace[0] if replace else b"APPEND INBOX"
    text = head
    events: list[ReaderEvent] = []
    messages: list[AppendMessage] = []
    for index in range(count):
        flags = draw(st.sampled_from([(), ("\\Seen",), ("\\Draft", "$label")]))
        text += b" " + (b"(" + " ".join(flags).encode() + b") " if flags else b"")
        if draw(st.booleans()):
            data = draw(st.binary(min_size=1, max_size=20).filter(lambda d: b"\x00" not in d))
            message = AppendMessage(flags, None, len(data))
            text += literal(data, draw(st.booleans()))
            events += [
                AppendMessageStart(tag, mailbox, index, message, False, replace),
                AppendData(tag, data),
            ]
            messages.append(message)
            continue
        parts: list[CatenateText | CatenateUrl] = []
        pieces: list[bytes] = []
        urls_before: list[str] = []  # the URL parts since the last TEXT (CatenateTextStart.urls)
        for _ in range(draw(st.integers(1, 4))):
            if draw(st.booleans()):
                url = draw(url_texts)
                parts.append(CatenateUrl(url))
                urls_before.append(url)
                pieces.append(draw(st.sampled_from([b"URL ", b"url "])) + draw(wire_strings(url)))
            else:
                data = draw(st.binary(max_size=20).filter(lambda d: b"\x00" not in d))
                sync = draw(st.booleans())
                text_part = CatenateText(len(data))
                events.append(
                    CatenateTextStart(
                        tag,
                        mailbox,
                        index,
                        len(parts),
                        text_part,
                        AppendMessage(flags, None, len(data)),
                        sync,
                        replace,
                        tuple(urls_before),
                    )
                )
                urls_before = []
                if data:
                    events.append(AppendData(tag, data))
                parts.append(text_part)
                pieces.append(b"TEXT " + literal(data, sync))
        text += b"CATENATE (" + b" ".join(pieces) + b")"
        size = sum(p.size for p in parts if isinstance(p, CatenateText))
        messages.append(AppendMessage(flags, None, size, catenate=tuple(parts)))
    # the events' synchronizing flags are what was written: fill them from the text's own literals
    if replace is not None:
        events.append(Replace(tag, mailbox, messages[0], replace[0], replace[1]))
    else:
        events.append(Append(tag, mailbox, tuple(messages)))
    return events, text + b"\r\n"


def _loose(events: list[ReaderEvent]) -> list[object]:
    """Events compared without `synchronizing` (the strategy does not track it for message literals)."""
    out: list[object] = []
    for event in events:
        if isinstance(event, AppendMessageStart):
            out.append(("start", event.index, event.message, event.replace))
        elif isinstance(event, CatenateTextStart):
            out.append(dataclasses.replace(event, synchronizing=False))
        else:
            out.append(event)
    return out


@settings(max_examples=500, deadline=None)
@given(catenate_appends(), st.lists(st.integers(0, 400), max_size=6))
def test_catenate_commands_give_their_events_however_they_are_split(
    generated: tuple[list[ReaderEvent], bytes], cuts: list[int]
) -> None:
    expected, text = generated
    assert _loose(feed(text, cuts)) == _loose(expected)


@st.composite
def urlauth_commands(draw: st.DrawFn) -> tuple[ReaderEvent, bytes]:
    kind = draw(st.sampled_from(["genurlauth", "resetkey", "urlfetch"]))
    if kind == "genurlauth":
        pairs = draw(st.lists(st.tuples(url_texts, mechanisms), min_size=1, max_size=3))
        text = b"g GENURLAUTH " + b" ".join(draw(wire_strings(u)) + b" " + m.encode() for u, m in pairs)
        return GenUrlAuth("g", tuple((u, m.upper()) for u, m in pairs)), text
    if kind == "resetkey":
        if draw(st.booleans()):
            return ResetKey("r"), b"r RESETKEY"
        mechs = draw(st.lists(mechanisms, max_size=3))
        text = b"r RESETKEY " + draw(wire_strings("Drafts")) + b"".join(b" " + m.encode() for m in mechs)
        return ResetKey("r", MailboxName("Drafts", "Drafts"), tuple(m.upper() for m in mechs)), text
    items: list[UrlFetchItem] = []
    pieces: list[bytes] = []
    for url in draw(st.lists(url_texts, min_size=1, max_size=3)):
        written = draw(wire_strings(url))
        if draw(st.booleans()):
            items.append(UrlFetchItem(url))
            pieces.append(written)
            continue
        params = draw(
            st.sampled_from([(), ("BINARY",), ("BODYPARTSTRUCTURE", "BODY"), ("BINARY", "BODYPARTSTRUCTURE")])
        )
        items.append(UrlFetchItem(url, params))
        pieces.append(b"(" + written + b"".join(b" " + p.lower().encode() for p in params) + b")")
    return UrlFetch("u", tuple(items)), b"u URLFETCH " + b" ".join(pieces)


@settings(max_examples=500, deadline=None)
@given(urlauth_commands(), st.lists(st.integers(0, 300), max_size=4))
def test_urlauth_commands_parse_back_however_they_are_split(
    generated: tuple[ReaderEvent, bytes], cuts: list[int]
) -> None:
    expected, text = generated
    assert feed(text + b"\r\n", cuts) == [expected]


FRAGMENTS = st.sampled_from(
    [
        b"a APPEND INBOX CATENATE (",
        b"URL ",
        b'"/INBOX/;UID=1"',
        b"TEXT {3}\r\nabc",
        b"TEXT {2+}\r\nhi",
        b"UTF8 (~{2+}\r\nhi)",
        b"URL {4+}\r\n;U=1",
        b")",
        b" ",
        b"{0}\r\n",
        b"b URLFETCH (",
        b"c GENURLAUTH ",
        b"d RESETKEY ",
        b"BINARY BODY",
        b"\r\n",
    ]
)


@settings(max_examples=1000, deadline=None)
@given(st.lists(FRAGMENTS | st.binary(max_size=8), max_size=16))
def test_catenate_and_urlauth_fragments_never_raise(chunks: list[bytes]) -> None:
    reader = CommandReader(max_line=1024)
    reader.feed(b"".join(chunks) + b"\r\n")
    for _ in range(10_000):
        if reader.next() is None:
            break
    assert reader.buffered_bytes <= reader.max_line + 64 * 1024 + 64


def test_catenate_lists_are_limited() -> None:
    many = b" ".join([b'URL "x"'] * (MAX_CATENATE_PARTS + 1))
    (event,) = feed(b"a APPEND INBOX CATENATE (" + many + b")\r\n", [])
    assert isinstance(event, ParseError)
    assert "at most" in event.message


@pytest.mark.parametrize(
    "line",
    [
        b"a APPEND INBOX CATENATE ()",
        b"a APPEND INBOX CATENATE (URL)",
        b'a APPEND INBOX CATENATE (URL "x" TEXT "abc")',  # TEXT takes a literal
        b'a APPEND INBOX CATENATE URL "x"',
        b'a APPEND INBOX CATENATE (URL "x") extra',
        b'a REPLACE 1 INBOX CATENATE (URL "x") CATENATE (URL "y")',  # one message
        b"b GENURLAUTH",
        b'b GENURLAUTH "url"',
        b'b GENURLAUTH "url" INTERNAL "other"',
        b"c URLFETCH",
        b'c URLFETCH ("url" BINARY BINARY)',
        b'c URLFETCH ("url" BINARY BODY)',
        b'c URLFETCH ("url" CONVERTED)',
        b"d RESETKEY INBOX INT*ERNAL",
    ],
)
def test_malformed_forms_are_parse_errors(line: bytes) -> None:
    (event,) = feed(line + b"\r\n", [])
    assert isinstance(event, ParseError)


def test_a_literal_url_before_a_text_is_read_with_it() -> None:
    text = b'a APPEND INBOX CATENATE (URL {6+}\r\n;UID=1 TEXT {2+}\r\nhi URL "x")\r\n'
    events = feed(text, [])
    assert events[-1] == Append(
        "a",
        MailboxName("INBOX", "INBOX"),
        (AppendMessage((), None, 2, catenate=(CatenateUrl(";UID=1"), CatenateText(2), CatenateUrl("x"))),),
    )
    assert isinstance(events[0], CatenateTextStart)
    assert events[0].part == 1
    assert events[0].urls == (";UID=1",)
