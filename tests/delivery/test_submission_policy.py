"""The submission policy as a service (postoffice.delivery.submission, docs/decisions/0041), called as the
webmail and JMAP will call it (`check`, the whole message at once) and as SMTP does (a step per command),
against a real store: sender ownership, From/Sender/Resent-*, limits, the Date and Message-ID fixes, and
refusals that carry no protocol type. The SMTP replies built from them are proved by the submission tests
(tests/integration/test_submission_*.py, tests/smtp/test_smtp_originator.py)."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from postoffice.delivery.plan import Refusal
from postoffice.delivery.submission import (
    FORBIDDEN_FROM,
    FORBIDDEN_MAIL_FROM,
    FORBIDDEN_TO_SEND,
    INVALID_EMAIL,
    TOO_MANY_RECIPIENTS,
    SendingLimiter,
    SubmissionDecision,
    SubmissionPolicy,
)
from postoffice.message import parse_message
from postoffice.store import Account, MailStore, open_store


class World:
    def __init__(self, path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.store: MailStore = open_store(path)
        self.demo: Account = self.loop.run_until_complete(self._populate())
        self.clock = 1000.0
        self.policy = SubmissionPolicy(
            self.store,
            hostname="mx.example.test",
            limiter=SendingLimiter(2, clock=lambda: self.clock),
            max_recipients=3,
        )

    async def _populate(self) -> Account:
        await self.store.add_domain("example.test")
        demo = await self.store.add_account("demo@example.test", "hash")
        await self.store.add_account("other@example.test", "hash")
        await self.store.add_alias("me@example.test", ["demo@example.test"])
        return demo

    def check(
        self, raw: bytes, *, sender: str = "demo@example.test", recipients: int = 1
    ) -> SubmissionDecision:
        source = io.BytesIO(raw)
        return self.loop.run_until_complete(
            self.policy.check(self.demo, sender, recipients, source, parse_message(source))
        )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path / "mail.sqlite3")
    try:
        yield w
    finally:
        w.loop.run_until_complete(w.store.close())
        w.loop.close()


def header(*fields: str) -> bytes:
    return ("".join(f + "\r\n" for f in fields) + "\r\nHello.\r\n").encode()


COMPLETE = header("From: Demo <me@example.test>", "Date: Mon, 1 Jan 2024 00:00:00 +0000", "Message-ID: <1@x>")


def test_an_owned_complete_message_is_accepted_as_it_is(world: World) -> None:
    decision = world.check(COMPLETE)
    assert decision.accepted
    assert decision.refusal is None
    assert decision.header_fields == b""


def test_date_and_message_id_are_the_fields_to_add_when_missing(world: World) -> None:
    decision = world.check(header("From: demo@example.test", "Subject: bare"))
    assert decision.accepted
    fields = decision.header_fields.decode().split("\r\n")
    assert fields[0].startswith("Date: ")
    assert fields[1].startswith("Message-ID: <")
    assert fields[1].endswith("@mx.example.test>")
    assert fields[2] == ""


@pytest.mark.parametrize(
    ("raw", "sender", "expected"),
    [
        (COMPLETE, "other@example.test", (553, "5.7.1", FORBIDDEN_MAIL_FROM)),
        (COMPLETE, "", (553, "5.7.1", FORBIDDEN_MAIL_FROM)),  # nobody owns the null sender
        (header("From: other@example.test"), "demo@example.test", (553, "5.7.1", FORBIDDEN_FROM)),
        (
            header("From: demo@example.test", "Sender: other@example.test"),
            "demo@example.test",
            (553, "5.7.1", FORBIDDEN_FROM),
        ),
        (
            header("From: demo@example.test", "Resent-From: other@example.test"),
            "demo@example.test",
            (553, "5.7.1", FORBIDDEN_FROM),
        ),
        (header("Subject: no From"), "demo@example.test", (553, "5.7.1", FORBIDDEN_FROM)),
        (
            b"From: demo@example.test\r\nnot a field\r\n\r\nx\r\n",
            "demo@example.test",
            (554, "5.6.0", INVALID_EMAIL),
        ),
    ],
    ids=["envelope sender", "null sender", "From", "Sender", "Resent-From", "no From", "malformed header"],
)
def test_refusals_say_why_in_terms_every_front_end_maps(
    world: World, raw: bytes, sender: str, expected: tuple[int, str, str]
) -> None:
    refusal = world.check(raw, sender=sender).refusal
    assert isinstance(refusal, Refusal)
    assert refusal.permanent
    assert (refusal.code, refusal.enhanced, refusal.reason) == expected
    assert refusal.text  # says which field or address


def test_too_many_recipients_and_the_hourly_limit(world: World) -> None:
    refusal = world.check(COMPLETE, recipients=4).refusal
    assert refusal is not None
    assert (refusal.code, refusal.enhanced, refusal.reason) == (
        452,
        "4.5.3",
        TOO_MANY_RECIPIENTS,
    )
    assert world.policy.check_recipients(2) is None
    assert world.policy.check_recipients(3) is not None
    assert world.check(COMPLETE, recipients=3).accepted
    world.policy.sent(world.demo)
    assert world.check(COMPLETE).accepted  # checking counts nothing: only a stored message does
    world.policy.sent(world.demo)
    refusal = world.check(COMPLETE).refusal
    assert refusal is not None
    assert not refusal.permanent
    assert (refusal.code, refusal.enhanced, refusal.reason) == (450, "4.7.1", FORBIDDEN_TO_SEND)
    world.clock += 3601  # the window slides
    assert world.check(COMPLETE).accepted


def test_the_message_may_start_after_the_front_ends_own_fields(world: World) -> None:
    """SMTP checks its spool, which starts with the trace fields it wrote (`start`)."""
    trace = b"Received: from authenticated user\r\n\tby mx.example.test; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    source = io.BytesIO(trace + COMPLETE)
    decision = world.loop.run_until_complete(
        world.policy.check_message(world.demo, source, parse_message(source), start=len(trace))
    )
    assert decision.accepted


def test_the_policy_and_the_pipeline_load_no_protocol_glue() -> None:
    """The webmail and JMAP import the policy and the pipeline: neither may pull in an SMTP session, the
    protocol core, the listeners or IMAP."""
    code = (
        "import sys, postoffice.delivery.submission, postoffice.delivery.pipeline\n"
        "glue = ('postoffice.smtp.server', 'postoffice.smtp.protocol', 'postoffice.smtp.queue', "
        "'postoffice.net', 'postoffice.imap', 'postoffice.pop')\n"
        "bad = [m for m in sys.modules if m.startswith(glue)]\n"
        "print(','.join(sorted(bad)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
