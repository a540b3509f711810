"""Mail for tests, and the ways tests send it: one definition each, shared by the test packages.

- `text_message`: a small RFC 5322 message with the fields the tests look for (Subject, Message-ID).
- `send_smtp`: messages over SMTP to a server on loopback; every 250 comes after the store's commit, so the
  messages are in the mailbox when it returns (no waiting).
- `run_bounded`: an asyncio coroutine run to completion with a bound, so that a hang fails the test instead of
  stopping the suite.
"""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

DEMO = "demo@example.test"
SENDER = "sender@remote.test"


def text_message(
    subject: str, body: str = "Hello.\r\n", *, sender: str = SENDER, to: str = DEMO, date: str | None = None
) -> bytes:
    """`From`, `To`, `Subject`, optionally `Date`, and a `Message-ID` made from the subject, then `body`."""
    date_field = f"Date: {date}\r\n" if date else ""
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n{date_field}"
        f"Message-ID: <{subject.replace(' ', '.')}@remote.test>\r\n\r\n{body}"
    ).encode()


def send_smtp(
    port: int,
    *messages: bytes | str,
    to: str | Sequence[str] = DEMO,
    sender: str = SENDER,
    helo: str | None = None,
    timeout: float = 60,
) -> None:
    """Each message in its own transaction over one SMTP connection to 127.0.0.1:`port`."""
    recipients = [to] if isinstance(to, str) else list(to)
    with smtplib.SMTP("127.0.0.1", port, local_hostname=helo, timeout=timeout) as smtp:
        for message in messages:
            smtp.sendmail(sender, recipients, message)


def run_bounded(coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
    """`asyncio.run(coro)`, failing with TimeoutError after `timeout` seconds."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())
