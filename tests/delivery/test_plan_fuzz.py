"""Property tests of what the pipeline writes for one recipient: a header field a stage prepends
(`plan.header_field`) is either refused with ValueError or is exactly one well-formed field that every
reader sees on top of an unchanged message; a flag a stage sets (`plan.flag`) is refused or stored as given;
and the prefixed text (`pipeline.PrefixedSource`) reads, in any pattern of seeks and reads, as the prefix
followed by the message."""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import io
from collections.abc import Iterator
from pathlib import Path
from typing import IO, cast

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from postoffice.delivery.pipeline import DeliveryPipeline, PrefixedSource
from postoffice.delivery.plan import (
    MAX_LINE_OCTETS,
    REFUSED,
    DeliveryPlan,
    Envelope,
    Message,
    Origin,
    RecipientPlan,
    Refusal,
    header_field,
)
from postoffice.message import parse_message
from postoffice.store import SYSTEM_FLAGS, MailStore, open_store

SETTINGS = settings(max_examples=500, deadline=None)

MESSAGE = b"From: a@example.org\r\nTo: b@example.test\r\nSubject: base\r\n\r\nBody line.\r\n"

NAME_CHARS = st.sampled_from([*"ABCXYZaz09-_:;. \t\x00\x7f\u00e9\r\n"])
VALUE_CHARS = st.sampled_from([*"abc ;=\t\r\n\x00\u00e9\u2028:"])


@SETTINGS
@given(
    st.text(NAME_CHARS, min_size=0, max_size=12),
    st.one_of(st.text(VALUE_CHARS, max_size=40), st.text(max_size=20), st.just("x" * 1200)),
)
@example("X-Test", "folded\r\n\tline")
@example("X-Test", "bad\r\nnot folded")
@example("X-Test", "trailing\r\n")
@example("X-Test", "only\r\n \t")
@example("X Test", "name with a space")
@example("Authentication-Results", "mx.example.test; spf=pass smtp.mailfrom=a@example.org")
def test_a_header_field_is_refused_or_one_well_formed_field_on_top(name: str, value: str) -> None:
    try:
        field = header_field(name, value)
    except ValueError:
        return
    assert field.endswith(b"\r\n")
    lines = field[:-2].split(b"\r\n")
    assert all(len(line) <= MAX_LINE_OCTETS for line in lines)
    assert all(line[:1] in (b" ", b"\t") for line in lines[1:])
    assert b"\x00" not in field
    assert b"\r" not in field.replace(b"\r\n", b"")
    assert b"\n" not in field.replace(b"\r\n", b"")
    text = field + MESSAGE
    parsed = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(text)
    names = [key for key, _ in parsed.items()]
    assert names == [name, "From", "To", "Subject"]  # one field, on top; the others unchanged
    assert parsed.get_payload() == "Body line.\r\n"
    ours = parse_message(io.BytesIO(text))
    assert ours.subject == "base"
    assert ours.size == len(text)


def test_prepended_fields_go_on_top_of_those_before_them() -> None:
    plan = RecipientPlan(1, ["a@example.test"])
    plan.prepend_header("X-First", "1")
    plan.prepend_header("X-Second", "2")
    assert plan.prefix == b"X-Second: 2\r\nX-First: 1\r\n"
    with pytest.raises(ValueError, match="not a header field name"):
        plan.prepend_header("Bad:Name", "x")
    assert plan.prefix == b"X-Second: 2\r\nX-First: 1\r\n"  # nothing half-added


@SETTINGS
@given(
    st.binary(max_size=300),
    st.binary(max_size=3000),
    st.lists(st.tuples(st.integers(-5, 3500), st.integers(-1, 700)), max_size=12),
    st.integers(0, 40),
)
def test_a_prefixed_source_reads_as_the_prefix_then_the_message(
    prefix: bytes, base: bytes, steps: list[tuple[int, int]], wander: int
) -> None:
    spool = io.BytesIO(b"garbage past the end" if not base else base + b"garbage past the end")
    source = PrefixedSource(prefix, spool, len(base))
    whole = prefix + base
    assert source.read() == whole
    for position, size in steps:
        spool.seek(wander)  # another reader moved the shared spool meanwhile
        if position < 0:
            with pytest.raises(ValueError, match="negative seek position"):
                source.seek(position)
            continue
        assert source.seek(position) == position == source.tell()
        got = source.read(size) if size >= 0 else source.read()
        expected = whole[position:] if size < 0 else whole[position : position + size]
        assert got == expected
        assert source.tell() == min(position + len(got), max(position, len(whole)))
    source.seek(0)
    # as the pipeline does: a binary file object (read and seek are all that is used)
    assert parse_message(cast(IO[bytes], source)).size == len(whole)


class FlagStore:
    """One real store for every example: an account, a pipeline, a loop."""

    def __init__(self, path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.store: MailStore = open_store(path)
        self.account = self.loop.run_until_complete(self._account())
        self.pipeline = DeliveryPipeline(self.store, hostname="mx.example.test")

    async def _account(self) -> int:
        await self.store.add_domain("example.test")
        return (await self.store.add_account("demo@example.test", "hash")).id

    def stored_flags(self, plan: RecipientPlan) -> frozenset[str]:
        async def deliver() -> frozenset[str]:
            message = Message(io.BytesIO(MESSAGE), parse_message(io.BytesIO(MESSAGE)))
            whole = DeliveryPlan(Envelope("a@example.org"), Origin("mx"), [plan], [])
            (copy,) = (await self.pipeline.commit(message, whole)).copies
            listed = await self.store.list_messages(copy.mailbox_id)
            return next(m.flags for m in listed if m.uid == copy.uid)

        return self.loop.run_until_complete(deliver())


@pytest.fixture(scope="module")
def flag_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlagStore]:
    fs = FlagStore(tmp_path_factory.mktemp("flags") / "mail.sqlite3")
    try:
        yield fs
    finally:
        fs.loop.run_until_complete(fs.store.close())
        fs.loop.close()


FLAGGY = st.one_of(
    st.text(st.sampled_from([*'\\$abcAB09 ()]{%*"\x00\x7f\u00e9-_.']), max_size=10),
    st.sampled_from(["\\Seen", "\\SEEN", "\\flagged", "\\Recent", "\\Junk", "$Label1", "NonJunk", ""]),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(FLAGGY, max_size=4))
@example(["\\seen", "$Label1"])
@example(["a b"])
@example(["\\Recent"])
def test_a_flag_a_stage_sets_is_refused_or_stored_as_imap_will_show_it(
    flag_store: FlagStore, flags: list[str]
) -> None:
    plan = RecipientPlan(flag_store.account, ["demo@example.test"])
    try:
        plan.add_flags(flags)
    except ValueError:
        assert plan.flags == set()  # all or nothing
        return
    for name in plan.flags:
        assert name in SYSTEM_FLAGS or (
            name and all("\x21" <= c <= "\x7e" and c not in '(){%*"\\]' for c in name)
        )
    assert flag_store.stored_flags(plan) == frozenset(plan.flags)


@pytest.mark.parametrize(
    ("code", "enhanced"),
    [(250, "2.0.0"), (550, "4.7.1"), (452, "5.2.2"), (600, "5.0.0"), (550, "5.7"), (550, "5.٧.1")],
)
def test_a_refusal_is_a_4xx_or_5xx_reply_with_a_matching_enhanced_status(code: int, enhanced: str) -> None:
    with pytest.raises(ValueError, match="not a refusal"):
        Refusal(code, enhanced, "text")
    assert Refusal(452, "4.2.2", "full").permanent is False
    assert Refusal(550, "5.7.1", "no").permanent


def test_a_copy_rejected_without_a_reason_answers_a_plain_refusal() -> None:
    plan = RecipientPlan(1, ["a@example.test"])
    plan.reject()
    assert plan.refusal == REFUSED
    assert (REFUSED.code, REFUSED.enhanced) == (550, "5.7.1")
