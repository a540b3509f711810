"""A corpus of messages that exercises every search criterion, delivered into a store, and a brute-force
oracle: the UIDs a criteria tree must give, computed by decoding every message again with the parser's own
rules, independently of the store (used by the contract suite and the SQLite search tests)."""

from __future__ import annotations

import asyncio
import base64
import datetime
import io
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import strategies as st

import postoffice.message.parser as mime_parser
from postoffice.directory.address import normalize_address
from postoffice.message import parse_message
from postoffice.message.headers import decode_words, iter_fields
from postoffice.store import All, And, Criteria, Date, HasFlag, MailStore, Not, Or, Size, Text, UidIn
from postoffice.store.criteria import ENVELOPE_ADDRESS_FIELDS, Address, fold, header_value_matches

#: The corpus is delivered with this cap on search text, so that every longer text is truncated in the index
#: and found only through the fallback.
SMALL_SEARCH_TEXT = 120
NORMAL_SEARCH_TEXT = mime_parser.MAX_SEARCH_TEXT


def ts(text: str) -> float:
    return datetime.datetime.fromisoformat(text).timestamp()


def simple(
    subject: str, body: str, *, extra: str = "", date: str | None = "Mon, 2 Jan 2023 10:00:00 +0000"
) -> bytes:
    head = "From: Alice Example <alice@example.org>\r\nTo: demo@example.test\r\n"
    if date is not None:
        head += f"Date: {date}\r\n"
    return (head + f"Subject: {subject}\r\n{extra}\r\n{body}").encode()


def b64(text: str) -> str:
    return base64.encodebytes(text.encode()).decode().replace("\n", "\r\n")


GRUSS = "=?utf-8?q?Gr=C3=BC=C3=9Fe_aus_M=C3=BCnchen?="
LONG_TAIL = "lorem ipsum " * 30 + "the needle-at-the-END is here Ünïcödé-tail"

# (raw message, flags, internal date)
CORPUS: list[tuple[bytes, tuple[str, ...], float]] = [
    (simple("Quarterly report", "The numbers are in.\r\n"), ("\\Seen",), ts("2023-01-02T10:00:00+00:00")),
    (
        b"From: =?iso-8859-1?q?J=F6rg_M=FCller?= <joerg@example.de>\r\nTo: demo@example.test\r\n"
        b"Cc: Carol <carol@example.net>\r\nDate: Tue, 3 Jan 2023 23:30:00 -0800\r\n"
        b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe_aus_M=C3=BCnchen?=\r\n\r\nHallo!\r\n",
        ("\\Flagged", "Work"),
        ts("2023-01-03T23:59:59+00:00"),
    ),
    (
        (
            "From: bob@example.org\r\nTo: demo@example.test\r\nBcc: secret@example.test\r\n"
            "Date: Wed, 4 Jan 2023 00:30:00 +1400\r\nSubject: multipart\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n'
            "--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + b64("GRÜSSE und ΣΊΣΥΦΟΣ, straße\r\n")
            + "--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>html part</p>\r\n--b1--\r\n"
        ).encode(),
        ("\\Answered", "\\Seen", "$Label1"),
        ts("2023-01-04T00:00:00+00:00"),
    ),
    (
        simple("custom", "x\r\n", extra="X-Custom: Priority-42\r\n"),
        ("work",),
        ts("2023-01-05T12:00:00+00:00"),
    ),
    (simple("empty custom", "y\r\n", extra="X-Custom:\r\n"), (), ts("2023-01-05T12:00:01+00:00")),
    (simple("percent", "I am 100% sure_thing today\r\n"), ("\\Deleted",), ts("2023-02-01T00:00:00+00:00")),
    (simple("no percent", "I am 100 percent sureXthing\r\n"), ("\\Draft",), ts("2023-02-01T00:00:00+00:00")),
    (simple("no date", "ab cd\r\n", date=None), (), ts("2023-03-01T08:00:00+00:00")),
    (
        simple("kelvin", "Temperature in \u212aelvin and \u017fong s\r\n"),
        ("\\Seen", "\\Flagged"),
        ts("2022-12-31T23:59:59+00:00"),
    ),
    (
        (
            b"From: fwd@example.org\r\nDate: Thu, 5 Jan 2023 09:00:00 +0100\r\nSubject: Fwd: inner\r\n"
            b'Content-Type: multipart/mixed; boundary="o"\r\n\r\n--o\r\nContent-Type: text/plain\r\n\r\n'
            b"see below\r\n--o\r\nContent-Type: message/rfc822\r\n\r\nFrom: inner@example.org\r\n"
            b"Subject: inner subject\r\n\r\nembedded body words\r\n--o--\r\n"
        ),
        (),
        ts("2023-01-05T08:00:00+00:00"),
    ),
    (
        b"From: x@example.org\r\nSubject: latin\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\nUn caf=E9 cr=E8me\r\n",
        ("\\Seen",),
        ts("2023-01-06T00:00:00+00:00"),
    ),
    (simple("nul", "before\x00after NUL\r\n"), (), ts("2023-01-07T00:00:00+00:00")),
    (simple("big", "z" * 3000 + "\r\n"), (), ts("2023-01-08T00:00:00+00:00")),
    (simple("long text", LONG_TAIL + "\r\n"), ("$Label1",), ts("2023-01-09T00:00:00+00:00")),
    (
        (
            "From: long@example.org\r\nSubject: long multipart\r\n"
            'Content-Type: multipart/mixed; boundary="q"\r\n\r\n--q\r\nContent-Type: text/plain\r\n\r\n'
            + "first part " * 20
            + "\r\n--q\r\nContent-Type: text/plain; charset=utf-8\r\n"
            + "Content-Transfer-Encoding: base64\r\n\r\n"
            + b64("second part with Σίσυφος-ENDING and more")
            + "--q--\r\n"
        ).encode(),
        (),
        ts("2023-01-10T00:00:00+00:00"),
    ),
    (simple("Mike's kayak", "spam spam k s K S\r\n"), ("Work", "work"), ts("2023-01-11T00:00:00+00:00")),
    (
        simple("encoded newline", "b\r\n", extra="Comments: =?utf-8?q?line1?=\r\n"),
        ("\\Answered",),
        ts("2023-01-12T00:00:00+00:00"),
    ),
    # addresses written with comments, CFWS around "@" and ".", and folding (issue 9, item 13)
    (
        b"From: <user-from (comment)@ (comment) domain.org>\r\n"
        b'To: "Some  One" <some . one @ example (x) . net>, (lead) carol(c) @ (d) example.com (trail)\r\n'
        b"Cc: Folded\r\n <folded-user\r\n @example.org>\r\n"
        b"Bcc: team: a (x) @ b.example, =?utf-8?q?J=C3=B6rg?= <j (y) @ c.example>;\r\n"
        b"Subject: obfuscated\r\nX-Addr: x (c) @ y.example\r\n\r\nbody\r\n",
        (),
        ts("2023-01-13T00:00:00+00:00"),
    ),
]


@dataclass
class OracleMessage:
    uid: int
    flags: frozenset[str]
    internaldate: float
    size: int
    sent_date: str | None
    fields: list[tuple[str, str]]
    headers: str
    body: str
    envelope: list[Any]


def decode_for_oracle(raw: bytes, uid: int, flags: tuple[str, ...], when: float) -> OracleMessage:
    """Decoded with the parser's own rules and its normal (large) cap, independently of the store."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mime_parser, "MAX_SEARCH_TEXT", NORMAL_SEARCH_TEXT)
        parsed = parse_message(io.BytesIO(raw))
    assert not parsed.search_truncated
    header = raw[: parsed.body.body_start]
    fields = [(name, decode_words(value).strip()) for name, value, _codec in iter_fields(header)]
    return OracleMessage(
        uid,
        frozenset(flags),
        when,
        len(raw),
        parsed.sent_date,
        fields,
        parsed.search_headers,
        parsed.search_text,
        parsed.envelope,
    )


def oracle(c: Criteria, m: OracleMessage) -> bool:
    if isinstance(c, All):
        return True
    if isinstance(c, And):
        return all(oracle(t, m) for t in c.terms)
    if isinstance(c, Or):
        return oracle(c.left, m) or oracle(c.right, m)
    if isinstance(c, Not):
        return not oracle(c.criterion, m)
    if isinstance(c, UidIn):
        return any(low <= m.uid <= high for low, high in c.ranges)
    if isinstance(c, HasFlag):
        if c.flag.startswith("\\"):
            present = c.flag.lower() in {f.lower() for f in m.flags if f.startswith("\\")}
        else:
            present = c.flag in m.flags
        return present == c.present
    if isinstance(c, Size):
        return m.size > c.n if c.op == "larger" else m.size < c.n
    if isinstance(c, Date):
        if c.field == "internal":
            day = datetime.datetime.fromtimestamp(m.internaldate, datetime.UTC).date()
        elif m.sent_date is None:
            return False
        else:
            day = datetime.date.fromisoformat(m.sent_date)
        return {"before": day < c.date, "on": day == c.date, "since": day >= c.date}[c.op]
    if isinstance(c, Address):
        wanted = normalize_address(c.address)
        for name in c.fields:
            entries = m.envelope[ENVELOPE_ADDRESS_FIELDS[name]] or []
            if any(e[2] and e[3] and normalize_address(f"{e[2]}@{e[3]}") == wanted for e in entries):
                return True
        return False
    if isinstance(c, Text):
        needle = fold(c.needle)
        if isinstance(c.field, tuple):
            name = c.field[1].lower()
            return any(n.lower() == name and header_value_matches(name, v, needle) for n, v in m.fields)
        haystacks = {"headers": [m.headers], "body": [m.body], "text": [m.headers, m.body]}[c.field]
        return any(needle in fold(h) for h in haystacks)
    raise AssertionError(c)


class Mailbox:
    """The corpus delivered into a real store, with a loop-per-call helper for sync tests."""

    def __init__(self, store: MailStore) -> None:
        self.store = store
        self.messages: list[OracleMessage] = []
        self.mailbox_id = 0

    def run(self, coro: Any) -> Any:
        return asyncio.run(coro)

    async def fill(self) -> None:
        await self.store.add_domain("example.test")
        demo = await self.store.add_account("demo@example.test", "hash")
        other = await self.store.add_account("other@example.test", "hash")
        inbox = await self.store.get_mailbox(demo.id, "INBOX")
        assert inbox is not None
        self.mailbox_id = inbox.id
        for raw, flags, when in CORPUS:
            parsed = parse_message(io.BytesIO(raw))
            (copy,) = await self.store.deliver(
                io.BytesIO(raw), parsed, [demo.id], flags=flags, internaldate=when
            )
            # a copy for another account: searching one mailbox must not see the other's messages
            await self.store.deliver(io.BytesIO(raw), parsed, [other.id], internaldate=when)
            self.messages.append(decode_for_oracle(raw, copy.uid, flags, when))

    def search(self, c: Criteria) -> list[int]:
        result: list[int] = self.run(self.store.search(self.mailbox_id, c))
        return result

    def expected(self, c: Criteria) -> list[int]:
        return [m.uid for m in self.messages if oracle(c, m)]

    def uid_of(self, subject: str) -> int:
        for (raw, _, _), m in zip(CORPUS, self.messages, strict=True):
            if f"Subject: {subject}\r\n".encode() in raw:
                return m.uid
        raise KeyError(subject)


# -- oracle ------------------------------------------------------------------------------------------------
_NEEDLES = [
    "numbers",
    "NUMBERS ARE",
    "grüße",
    "GRÜSSE",
    "ΣΊΣΥΦΟΣ",
    "σίσυφοσ",
    "straße",
    "100%",
    "sure_thing",
    "e_t",
    "%",
    "kelvin",
    "ong s",
    "example.org",
    "Alice",
    "demo@",
    "Priority",
    "café",
    "html",
    "embedded",
    "needle-at-the-END",
    "ünïcödé-tail",
    "first part \nsecond",
    "Σίσυφος-ENDING",
    "zz",
    "after",
    "Jörg",
    "Subject: ",
    "b",
    "",
    "user-from@domain.org",
    "<user-from@domain.org>",
    "some.one@example.net",
    "one@",
    "carol@example.com",
    "folded-user@example.org",
    "Folded <folded",
    "a@b.example",
    "x@y.example",
    "(comment)",
]
_HEADERS = ["from", "to", "cc", "bcc", "subject", "date", "X-Custom", "Content-Type", "comments", "x-addr"]
_DATES = (
    [datetime.date(2022, 12, 31)]
    + [datetime.date(2023, 1, d) for d in range(1, 13)]
    + [datetime.date(2023, 2, 1)]
)

text_leaves = st.builds(
    Text,
    st.one_of(
        st.sampled_from(["headers", "body", "text"]),
        st.sampled_from(_HEADERS).map(lambda h: ("header", h)),
    ),
    st.one_of(st.sampled_from(_NEEDLES), st.text(alphabet="abeksKSü%_ Σσßẞ\u212a.-\n", max_size=4)),
)
leaves = st.one_of(
    st.just(All()),
    st.lists(st.tuples(st.integers(0, 22), st.integers(0, 4)), max_size=3).map(
        lambda rs: UidIn(tuple((a, a + w) for a, w in rs))
    ),
    st.builds(
        HasFlag,
        st.sampled_from(
            ["\\Seen", "\\answered", "\\Flagged", "\\Deleted", "\\Draft", "Work", "work", "$Label1", "\\X"]
        ),
        st.booleans(),
    ),
    st.builds(
        Date,
        st.sampled_from(["internal", "sent"]),
        st.sampled_from(["before", "on", "since"]),
        st.sampled_from(_DATES),
    ),
    st.builds(Size, st.sampled_from(["larger", "smaller"]), st.integers(100, 3500)),
    text_leaves,
    text_leaves,
)
criteria_trees = st.recursive(
    leaves,
    lambda inner: st.one_of(
        inner.map(Not),
        st.builds(Or, inner, inner),
        st.lists(inner, max_size=3).map(lambda terms: And(tuple(terms))),
    ),
    max_leaves=8,
)
