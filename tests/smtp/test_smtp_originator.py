"""The originator check of submission (delivery.originator, through the submission policy service
delivery.submission.SubmissionPolicy.check_message) on the shared corpus, against a real store; and property
tests: arbitrary field values never raise anything but a refusal, and whatever a lenient reader (the
store's ENVELOPE, the stdlib `email` package) shows as an author of an accepted message is among the
addresses the account had to own."""

from __future__ import annotations

import asyncio
import email
import email.policy
import io
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from postoffice.delivery.originator import (
    MAX_ADDRESSES,
    Claim,
    OriginatorRefused,
    mentions,
    read_claims,
)
from postoffice.delivery.submission import SubmissionPolicy, unowned_claim
from postoffice.message import parse_message
from postoffice.store import Account, MailStore, open_store
from tests.smtp.originator_corpus import CORPUS

TRACE = b"Received: from authenticated user\r\n\tby mx.example.test; Mon, 1 Jan 2024 00:00:00 +0000\r\n"


def spooled(header: bytes, body: bytes = b"Body.\r\n") -> io.BytesIO:
    """The spool as the session writes it: our trace field first, line ends normalised to CRLF by the
    protocol core (a lone CR or LF is a line end, docs/decisions/0004)."""
    message = (header + b"\r\n" + body).replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    return io.BytesIO(TRACE + message)


def claims(header: bytes, *, smtputf8: bool = False) -> list[Claim]:
    return read_claims(spooled(header), len(TRACE), smtputf8=smtputf8)


class Directory:
    """A real store with the corpus's accounts and aliases, on a loop of its own."""

    def __init__(self, path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.store: MailStore = open_store(path)
        self.demo: Account = self.loop.run_until_complete(self._populate())

    async def _populate(self) -> Account:
        await self.store.add_domain("example.test")
        demo = await self.store.add_account("demo@example.test", "hash")
        await self.store.add_account("other@example.test", "hash")
        await self.store.add_alias("demo.alias@example.test", ["demo@example.test"])
        await self.store.add_alias("team@example.test", ["demo@example.test", "other@example.test"])
        return demo

    def verdict(self, header: bytes, *, smtputf8: bool = False) -> bytes:
        """What the session answers at the end of data, as "code enhanced"."""
        spool = spooled(header)
        policy = SubmissionPolicy(self.store, hostname="mx.example.test")
        decision = self.loop.run_until_complete(
            policy.check_message(self.demo, spool, parse_message(spool), start=len(TRACE), smtputf8=smtputf8)
        )
        refused = decision.refusal
        return b"250 2.0.0" if refused is None else f"{refused.code} {refused.enhanced}".encode()

    def close(self) -> None:
        self.loop.run_until_complete(self.store.close())
        self.loop.close()


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Directory]:
    d = Directory(tmp_path_factory.mktemp("originator") / "mail.sqlite3")
    try:
        yield d
    finally:
        d.close()


@pytest.mark.parametrize(("header", "expected"), [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS])
def test_corpus(directory: Directory, header: bytes, expected: bytes) -> None:
    assert directory.verdict(header + b"To: other@example.test\r\nSubject: corpus\r\n") == expected


def test_refusals_say_what_is_wrong_without_quoting_raw_octets(directory: Directory) -> None:
    with pytest.raises(OriginatorRefused) as refused:
        claims(b"From: demo@example.test\x01\r\n")
    assert refused.value.reply == (553, "5.7.1", "From header field cannot be parsed: control character 0x01")
    with pytest.raises(OriginatorRefused) as refused:
        claims(b"From: demo@example.test\r\nFrom: other@example.test\r\n")
    assert "more than one From" in refused.value.reply[2]
    reply = directory.loop.run_until_complete(
        unowned_claim(
            directory.store, directory.demo, claims(b'From: "other@example.test" <demo@example.test>\r\n')
        )
    )
    assert reply is not None
    assert reply.reply == (
        553,
        "5.7.1",
        "From header field shows <other@example.test> in a display name or comment; "
        "that address is not owned by demo@example.test",
    )


def test_smtputf8_allows_non_ascii_addresses_but_never_disallowed_characters() -> None:
    assert [c.address for c in claims("From: Jörg <jörg@example.test>\r\n".encode(), smtputf8=True)] == [
        "jörg@example.test"
    ]
    with pytest.raises(OriginatorRefused, match="U\\+202E"):
        claims("From: jörg\u202e@example.test\r\n".encode(), smtputf8=True)
    with pytest.raises(OriginatorRefused, match="U\\+00A0"):
        claims("From: <jörg\u00a0x@example.test>\r\n".encode(), smtputf8=True)


def test_addresses_in_display_names_are_found_however_they_are_disguised() -> None:
    assert mentions(["other@example.test"]) == ["other@example.test"]
    assert mentions(["=?utf-8?q?other=40example=2Etest?="]) == ["other@example.test"]
    assert mentions(["other\uff20example\u3002test"]) == ["other@example.test"]  # fullwidth @, ideographic .
    assert mentions(["oth\u200ber@exa\u00admple.test"]) == ["other@example.test"]  # invisible characters
    assert mentions(["'other@example.test'."]) == ["other@example.test"]
    assert mentions(["Demo (@demo)", "Alice @ Home", "a@localhost", "Dr. J. Demo"]) == []


def test_every_originator_field_and_address_is_bounded() -> None:
    many = ", ".join(f"demo{i}@example.test" for i in range(MAX_ADDRESSES + 1)).encode()
    with pytest.raises(OriginatorRefused, match="Too many addresses"):
        claims(b"From: " + many + b"\r\nSender: demo@example.test\r\n")
    with pytest.raises(OriginatorRefused, match="too long"):
        claims(b"From: Demo" + b" x" * 20000 + b" <demo@example.test>\r\n")
    with pytest.raises(OriginatorRefused, match="Too many originator header fields"):
        claims(b"From: demo@example.test\r\n" + b"Resent-From: demo@example.test\r\n" * (MAX_ADDRESSES + 1))
    with pytest.raises(OriginatorRefused, match="address too long"):
        claims(b"From: " + b"d" * 65 + b"@example.test\r\n")


def test_a_long_header_block_is_read_to_its_end_in_linear_time() -> None:
    """A From hidden after 200,000 other fields is still found (and refused: it is the second); and reading
    such a header is not pathological (a generous bound)."""
    header = b"From: demo@example.test\r\n" + b"X-Filler: some text here\r\n" * 200_000
    started = time.monotonic()
    with pytest.raises(OriginatorRefused, match="more than one From"):
        claims(header + b"From: other@example.test\r\n")
    assert time.monotonic() - started < 10
    very_long_line = b"X-Long: " + b"x" * 1_000_000 + b"\r\n"
    assert [c.address for c in claims(b"From: demo@example.test\r\n" + very_long_line)] == [
        "demo@example.test"
    ]


# -- properties ----------------------------------------------------------------------------------------------

#: Pieces of which originator field values are made: every special of RFC 5322 3.2.3, words, quoted strings
#: with escapes, comments, encoded words, folding, controls, non-ASCII, and addresses of both accounts.
_PIECES = st.sampled_from(
    [
        "demo@example.test",
        "other@example.test",
        "demo",
        "other",
        "example.test",
        "Demo User",
        '"Demo, User"',
        '"other@example.test"',
        '"a\\"b"',
        "(comment)",
        "(other@example.test)",
        "(nested (comment))",
        "=?utf-8?q?other=40example.test?=",
        "=?utf-8?b?ZGVtbw==?=",
        "<",
        ">",
        "@",
        ",",
        ":",
        ";",
        ".",
        "[127.0.0.1]",
        "\\",
        '"',
        "(",
        ")",
        " ",
        "\t",
        "\r\n ",
        "\r\n",
        "\x00",
        "\x01",
        "\u202e",
        "\u2028",
        "é",
        "\uff20",
        "@relay.test:",
    ]
)
_DISPLAY = st.sampled_from(
    ["", "Demo ", '"Demo, User" ', "=?utf-8?q?D=C3=A9mo?= ", "Dr. J. Demo ", '"other@example.test" ', "(c) "]
)
_ADDRESS = st.sampled_from(
    [
        "demo@example.test",
        "other@example.test",
        '"demo"@example.test',
        "demo.alias@example.test",
        "demo@Example.TEST",
        "demo(c)@example.test",
        " demo @ example.test ",
    ]
)
_MAILBOX = st.tuples(_DISPLAY, _ADDRESS, st.booleans()).map(
    lambda t: f"{t[0]}<{t[1]}>" if t[0] or t[2] else t[1]
)
_MAILBOX_LIST = st.one_of(_MAILBOX, st.lists(_MAILBOX, min_size=2, max_size=3).map(", ".join))
#: Field values: well-formed lists, the same with a piece inserted somewhere, and any sequence of pieces.
_VALUES = st.one_of(
    _MAILBOX_LIST,
    st.tuples(_MAILBOX_LIST, st.integers(0, 120), _PIECES).map(lambda t: t[0][: t[1]] + t[2] + t[0][t[1] :]),
    st.lists(_PIECES, max_size=12).map("".join),
)
#: Names of further fields (a second From is always refused: the @examples have one).
_NAMES = st.sampled_from(["Sender", "Sender", "Resent-From", "Resent-Sender", "To", "X-From"])


def _normal(address: str) -> str:
    """Addresses compare case-insensitively here; a needless quoted local part is the same address."""
    local, _, domain = address.rpartition("@")
    if len(local) > 1 and local[0] == local[-1] == '"':
        local = local[1:-1]
    return f"{local}@{domain}".lower()


def _shown_authors(message: bytes) -> set[str]:
    """What lenient readers take for the authors: the store's ENVELOPE From and Sender (what IMAP clients
    show), and the stdlib `email` package's From, Sender and Resent-From."""
    shown: set[str] = set()
    envelope = parse_message(io.BytesIO(message)).envelope
    for index in (2, 3):  # from, sender
        for entry in envelope[index] or []:
            if entry[2] and entry[3]:
                shown.add(_normal(f"{entry[2]}@{entry[3]}"))
    parsed = email.message_from_bytes(message, policy=email.policy.default)
    for name in ("From", "Sender", "Resent-From", "Resent-Sender"):
        try:
            fields = parsed.get_all(name) or []
        except (AttributeError, IndexError, TypeError, ValueError):
            # the stdlib's own parser fails on some display names (e.g. `" a@b ".`: a CPython bug in
            # _header_value_parser): a reader that fails shows no author from the field
            continue
        for field in fields:
            for address in getattr(field, "addresses", ()):
                if address.username and address.domain:
                    # the stdlib keeps 8-bit octets as surrogate escapes
                    text = address.addr_spec.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                    shown.add(_normal(text))
    return shown


@settings(max_examples=1500)
@given(
    fields=st.tuples(
        st.tuples(st.sampled_from(["From", "FROM", "from", "From "]), _VALUES),
        st.lists(st.tuples(_NAMES, _VALUES), max_size=2),
    ).map(lambda t: [t[0], *t[1]]),
    smtputf8=st.booleans(),
)
@example(fields=[("From", "demo@example.test"), ("From", "other@example.test")], smtputf8=False)
@example(fields=[("From", '"Demo\\" <other@example.test>" <demo@example.test>')], smtputf8=False)
@example(fields=[("From ", "other@example.test")], smtputf8=False)
def test_what_readers_show_as_author_is_always_checked(fields: list[tuple[str, str]], smtputf8: bool) -> None:
    header = "".join(f"{name}:{value}\r\n" for name, value in fields).encode("utf-8", "surrogatepass")
    try:
        found = claims(header, smtputf8=smtputf8)
    except OriginatorRefused as refusal:
        code, enhanced, text = refusal.reply
        assert (code, enhanced) in ((553, "5.7.1"), (554, "5.6.0"))
        assert text.isascii()
        assert text.isprintable()
        event("refused: " + text.split(":")[0][:40])
        return
    event("accepted")
    checked = {_normal(c.address) for c in found}
    message = spooled(header).getvalue()[len(TRACE) :]
    assert _shown_authors(message) <= checked
    assert any(c.field == "From" and not c.mentioned for c in found)


@settings(max_examples=500)
@given(header=st.binary(max_size=400), smtputf8=st.booleans())
def test_arbitrary_octets_give_claims_or_a_refusal(header: bytes, smtputf8: bool) -> None:
    try:
        found = claims(header, smtputf8=smtputf8)
    except OriginatorRefused:
        return
    for claim in found:
        local, at, domain = claim.address.rpartition("@")
        assert at
        assert local
        assert domain
        assert smtputf8 or claim.address.isascii()
