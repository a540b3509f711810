"""IMAP command parser round trips: commands generated from the typed structures, written out as a client
would (random case, atoms, quoted strings, synchronizing and non-synchronizing literals), parse back to the
same structure."""

from __future__ import annotations

import datetime
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.imap.mutf7 import encode_mutf7
from postoffice.imap.parser import (
    Command,
    CommandReader,
    Copy,
    Create,
    Fetch,
    FetchAttribute,
    FetchBinary,
    FetchBinarySize,
    FetchBody,
    FetchItem,
    List,
    Login,
    MailboxName,
    Move,
    NeedContinuation,
    Partial,
    Search,
    SearchAnd,
    SearchDate,
    SearchFlag,
    SearchHeader,
    SearchKey,
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
    Status,
    Store,
    StoreMode,
)
from postoffice.imap.sequence import SequenceRange, SequenceSet

MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
ATOM_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!#&'+,/:;<=>?@^`|~$")

texts = st.text(st.characters(exclude_categories=["Cs", "Cc"]), max_size=12)
ascii_texts = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12)


@st.composite
def wire_string(draw: st.DrawFn, value: str, *, atom_ok: bool = True) -> bytes:
    """Write `value` as an atom, a quoted string or a literal: whichever is allowed and drawn."""
    data = value.encode()
    choices = ["literal", "literal+"]
    if data.isascii() and "\r" not in value and "\n" not in value:
        choices.append("quoted")
    if atom_ok and value and set(value) <= ATOM_SAFE and value.upper() != "NIL":
        choices.append("atom")
    kind = draw(st.sampled_from(choices))
    if kind == "atom":
        return data
    if kind == "quoted":
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d%s}\r\n%s" % (len(data), b"+" if kind == "literal+" else b"", data)


def case(draw: st.DrawFn, word: str) -> bytes:
    return draw(st.sampled_from([word, word.lower(), word.title()])).encode()


@st.composite
def mailboxes(draw: st.DrawFn) -> tuple[MailboxName, bytes]:
    name = draw(texts | st.sampled_from(["INBOX", "inbox", "Sent", "a&b", "Données/été"]))
    raw = encode_mutf7(name)
    # the parser hands out names in NFC (RFC 9051 5.1: Net-Unicode), whatever form the client sent
    name = unicodedata.normalize("NFC", name)
    expected = MailboxName("INBOX" if name.upper() == "INBOX" else name, raw)
    return expected, draw(wire_string(raw))


@st.composite
def sequence_sets(draw: st.DrawFn) -> tuple[SequenceSet, bytes]:
    if draw(st.booleans()) and draw(st.booleans()):
        return SequenceSet.SAVED, b"$"
    numbers = st.none() | st.integers(1, 2**32 - 1)
    ranges = draw(
        st.lists(st.tuples(numbers, numbers, st.booleans()), min_size=1, max_size=4).map(
            lambda rs: tuple(SequenceRange(a, a if single else b) for a, b, single in rs)
        )
    )
    s = SequenceSet(ranges)
    return s, str(s).encode()


@st.composite
def search_keys(draw: st.DrawFn, depth: int = 0) -> tuple[SearchKey, bytes]:
    kinds = ["flag", "text", "header", "keyword", "date", "size", "seq", "uid", "modseq"]
    if depth < 4:
        kinds += ["not", "or", "and"]
    kind = draw(st.sampled_from(kinds))
    if kind == "flag":
        name = draw(st.sampled_from(sorted(SearchFlag.NAMES)))
        return SearchFlag(name), case(draw, name)
    if kind == "text":
        name = draw(st.sampled_from(sorted(SearchText.NAMES)))
        value = draw(texts)
        return SearchText(name, value), case(draw, name) + b" " + draw(wire_string(value))
    if kind == "header":
        field = draw(st.sampled_from(["Subject", "X-Spam", "Message-ID"]))
        value = draw(texts)
        return SearchHeader(field, value), b"HEADER " + draw(wire_string(field)) + b" " + draw(
            wire_string(value)
        )
    if kind == "keyword":
        keyword = draw(st.sampled_from(["$Forwarded", "foo", "\\Seen"]))
        present = draw(st.booleans())
        return SearchKeyword(keyword, present), (b"KEYWORD " if present else b"UNKEYWORD ") + keyword.encode()
    if kind == "date":
        name = draw(st.sampled_from(sorted(SearchDate.NAMES)))
        date = draw(st.dates(datetime.date(1900, 1, 1), datetime.date(9999, 12, 31)))
        text = f"{date.day}-{MONTHS[date.month - 1]}-{date.year:04d}".encode()
        if draw(st.booleans()):
            text = b'"' + text + b'"'
        return SearchDate(name, date), case(draw, name) + b" " + text
    if kind == "size":
        name = draw(st.sampled_from(["LARGER", "SMALLER"]))
        n = draw(st.integers(0, 2**40))
        return SearchSize(name, n), case(draw, name) + b" %d" % n
    if kind in ("seq", "uid"):
        s, text = draw(sequence_sets())
        if kind == "seq":
            return SearchSequence(s), text
        return SearchUid(s), b"UID " + text
    if kind == "modseq":
        n = draw(st.integers(0, 2**63 - 1))
        if draw(st.booleans()):
            return SearchModSeq(n, ("/flags/\\Seen", "all")), b'MODSEQ "/flags/\\\\Seen" all %d' % n
        return SearchModSeq(n), b"MODSEQ %d" % n
    if kind == "not":
        key, text = draw(search_keys(depth + 1))
        return SearchNot(key), b"NOT " + text
    if kind == "or":
        a, ta = draw(search_keys(depth + 1))
        b, tb = draw(search_keys(depth + 1))
        return SearchOr(a, b), b"OR " + ta + b" " + tb
    parts = draw(st.lists(search_keys(depth + 1), min_size=1, max_size=3))
    return SearchAnd(tuple(k for k, _ in parts)), b"(" + b" ".join(t for _, t in parts) + b")"


@st.composite
def fetch_items(draw: st.DrawFn) -> tuple[FetchItem, bytes]:
    kind = draw(st.sampled_from(["attr", "body", "binary", "size"]))
    part = tuple(draw(st.lists(st.integers(1, 30), max_size=3)))
    partial = draw(st.none() | st.builds(Partial, st.integers(0, 2**40), st.integers(1, 2**40)))
    peek = draw(st.booleans())
    if kind == "attr":
        name = draw(st.sampled_from(sorted(FetchAttribute.NAMES)))
        return FetchAttribute(name), case(draw, name)
    if kind in ("binary", "size"):
        item: FetchItem = FetchBinarySize(part) if kind == "size" else FetchBinary(part, partial, peek)
        return item, str(item).encode()
    texts_ok = [
        None,
        SectionText.HEADER,
        SectionText.TEXT,
        SectionText.HEADER_FIELDS,
        SectionText.HEADER_FIELDS_NOT,
    ]
    if part:
        texts_ok.append(SectionText.MIME)
    text = draw(st.sampled_from(texts_ok))
    fields: tuple[str, ...] = ()
    if text in (SectionText.HEADER_FIELDS, SectionText.HEADER_FIELDS_NOT):
        fields = tuple(
            draw(st.lists(st.sampled_from(["Date", "From", "X-Y", "Subject"]), min_size=1, max_size=3))
        )
    body = FetchBody(Section(part, text, fields), partial, peek)
    return body, str(body).encode()


def flags(draw: st.DrawFn) -> tuple[tuple[str, ...], bytes]:
    values = draw(st.lists(st.sampled_from(["\\Seen", "\\Deleted", "\\Draft", "$Junk", "work"]), max_size=4))
    return tuple(values), b"(" + " ".join(values).encode() + b")"


@st.composite
def commands(draw: st.DrawFn) -> tuple[Command, bytes]:
    tag = draw(st.text(st.sampled_from("abcXYZ0129.]"), min_size=1, max_size=6))
    t = tag.encode()
    kind = draw(
        st.sampled_from(["login", "select", "status", "copy", "fetch", "store", "search", "list", "create"])
    )
    uid = draw(st.booleans())
    u = b"UID " if uid else b""
    if kind == "login":
        user, password = draw(texts), draw(texts)
        return Login(tag, user, password), t + b" LOGIN " + draw(wire_string(user)) + b" " + draw(
            wire_string(password)
        )
    if kind == "select":
        mailbox, text = draw(mailboxes())
        return Select(tag, mailbox), t + b" " + case(draw, "SELECT") + b" " + text
    if kind == "create":
        mailbox, text = draw(mailboxes())
        return Create(tag, mailbox), t + b" CREATE " + text
    if kind == "status":
        mailbox, text = draw(mailboxes())
        items = tuple(draw(st.lists(st.sampled_from(sorted(Status.ITEMS)), min_size=1, max_size=4)))
        return Status(tag, mailbox, items), t + b" STATUS " + text + b" (" + " ".join(items).encode() + b")"
    if kind == "copy":
        s, stext = draw(sequence_sets())
        mailbox, text = draw(mailboxes())
        cls = draw(st.sampled_from([Copy, Move]))
        return cls(tag, s, mailbox, uid), t + b" " + u + cls.NAME.encode() + b" " + stext + b" " + text
    if kind == "fetch":
        s, stext = draw(sequence_sets())
        fetched = draw(st.lists(fetch_items(), min_size=1, max_size=4))
        changed = draw(st.none() | st.integers(0, 2**63 - 1))
        text = t + b" " + u + b"FETCH " + stext + b" (" + b" ".join(i for _, i in fetched) + b")"
        if changed is not None:
            text += b" (CHANGEDSINCE %d)" % changed
        return Fetch(tag, s, tuple(i for i, _ in fetched), changed, False, uid), text
    if kind == "store":
        s, stext = draw(sequence_sets())
        mode = draw(st.sampled_from(list(StoreMode)))
        silent = draw(st.booleans())
        values, ftext = flags(draw)
        unchanged = draw(st.none() | st.integers(0, 2**63 - 1))
        text = t + b" " + u + b"STORE " + stext
        if unchanged is not None:
            text += b" (UNCHANGEDSINCE %d)" % unchanged
        text += b" " + mode.value.encode() + (b"FLAGS.SILENT " if silent else b"FLAGS ") + ftext
        return Store(tag, s, mode, values, silent, unchanged, uid), text
    if kind == "search":
        keys = draw(st.lists(search_keys(), min_size=1, max_size=3))
        ret = draw(
            st.none()  # each option once (RFC 5267 4.4: one ALL at most)
            | st.lists(st.sampled_from(sorted(Search.RETURN_OPTIONS)), max_size=3, unique=True).map(tuple)
        )
        charset = draw(st.sampled_from([None, "UTF-8", "US-ASCII"]))
        text = t + b" " + u + b"SEARCH"
        if ret is not None:
            text += b" RETURN (" + " ".join(ret).encode() + b")"
        if charset:
            text += b" CHARSET " + charset.encode()
        text += b" " + b" ".join(k for _, k in keys)
        return Search(tag, tuple(k for k, _ in keys), charset, ret, uid), text
    reference, rtext = draw(mailboxes())
    reference = MailboxName(reference.raw if reference.name == "INBOX" else reference.name, reference.raw)
    pattern, ptext = draw(mailboxes())
    pattern = MailboxName(pattern.raw if pattern.name == "INBOX" else pattern.name, pattern.raw)
    return List(tag, reference, (pattern,)), t + b" LIST " + rtext + b" " + ptext


@settings(max_examples=500, deadline=None)
@given(commands())
def test_generated_commands_parse_back_to_the_same_structure(generated: tuple[Command, bytes]) -> None:
    expected, text = generated
    reader = CommandReader()
    reader.feed(text + b"\r\n")
    events = []
    while (event := reader.next()) is not None:
        if not isinstance(event, NeedContinuation):
            events.append(event)
    assert events == [expected]
