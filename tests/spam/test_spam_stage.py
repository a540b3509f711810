"""The spam stage with the real rspamd from Debian (docs/decisions/0086), through real SMTP sessions on port
25 into the real store: GTUBE is refused at DATA or filed into Junk by the thresholds, clean mail reaches the
Inbox with the result fields on top, Sieve sees them, and a filter that is down, hangs or talks nonsense
never loses mail (or defers it, when configured so)."""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
import logging
import smtplib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from postoffice.delivery.pipeline import DeliveryPipeline
from postoffice.sieve.stage import SieveStage
from postoffice.spam.rspamd import RspamdClient
from postoffice.spam.settings import SpamConfig
from postoffice.spam.stage import SpamStage
from postoffice.store import SieveLimits
from tests.delivery.harness import DEMO, HOSTNAME, OTHER, Harness, message
from tests.support.rspamd import GTUBE, Rspamd, running_rspamd

SENDER = "someone@remote.example"


@pytest.fixture(scope="module")
def rspamd() -> Iterator[Rspamd]:
    with running_rspamd() as started:
        yield started


def harness(tmp_path: Path, url: str, **settings: object) -> Harness:
    h = Harness(tmp_path)
    config = dataclasses.replace(SpamConfig(rspamd_url=url), **settings)  # type: ignore[arg-type]
    stage = SpamStage(config, RspamdClient(url, timeout=config.timeout), HOSTNAME)
    h.pipeline = DeliveryPipeline(h.store, [stage, SieveStage(h.store, HOSTNAME)], hostname=HOSTNAME)
    return h


@pytest.fixture
def h(tmp_path: Path, rspamd: Rspamd) -> Iterator[Harness]:
    made = harness(tmp_path, rspamd.url)
    yield made
    made.stop()


def spam(subject: str = "buy now", sender: str = SENDER) -> bytes:
    return message(subject, sender=sender).replace(b"body of", GTUBE.encode() + b"\r\nbody of")


def send(h: Harness, raw: bytes, to: tuple[str, ...] = (DEMO,)) -> None:
    with smtplib.SMTP("127.0.0.1", h.smtp("mx")) as smtp:
        smtp.sendmail(SENDER, list(to), raw)


def copies(h: Harness, address: str, mailbox: str = "INBOX") -> list[email.message.EmailMessage]:
    found = []
    for info in h.messages(address, mailbox):
        parsed = email.message_from_bytes(h.content(info), policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        found.append(parsed)
    return found


def test_gtube_is_refused_at_data_and_nothing_is_stored(h: Harness) -> None:
    with smtplib.SMTP("127.0.0.1", h.smtp("mx")) as smtp, pytest.raises(smtplib.SMTPDataError) as refused:
        smtp.sendmail(SENDER, [DEMO, OTHER], spam())
    assert refused.value.smtp_code == 550
    assert refused.value.smtp_error == b"5.7.1 Message rejected as spam"
    assert copies(h, DEMO) == []
    assert copies(h, OTHER) == []


def test_clean_mail_reaches_the_inbox_with_the_result_fields(h: Harness) -> None:
    send(h, message("lunch tomorrow"), to=(DEMO, OTHER))
    for address in (DEMO, OTHER):
        (copy,) = copies(h, address)
        assert copy["Subject"] == "lunch tomorrow"
        assert copy["X-Spam-Status"].startswith("No, score=")
        assert float(copy["X-Spam-Score"]) < 6
        assert copy["X-Spamd-Result"].startswith("False; ")
    assert h.messages(DEMO)[0].content_id == h.messages(OTHER)[0].content_id  # one text for both


def test_above_the_junk_score_mail_goes_to_junk_and_sieve_sees_the_fields(
    tmp_path: Path, rspamd: Rspamd
) -> None:
    h = harness(tmp_path, rspamd.url, reject_score=100.0, junk_score=10.0)
    try:
        other = h.ids[OTHER]
        h.call(h.store.create_mailbox(other, "Spam-by-me"))
        h.call(
            h.store.put_sieve_script(
                other,
                "s",
                'require "fileinto"; if header :contains "X-Spam-Status" "Yes" { fileinto "Spam-by-me"; }',
                SieveLimits(4, 10000, 10000),
            )
        )
        h.call(h.store.activate_sieve_script(other, "s"))
        send(h, spam(), to=(DEMO, OTHER))
        send(h, message("fine"), to=(DEMO,))
        (junk,) = copies(h, DEMO, "Junk")
        assert junk["X-Spam-Status"].startswith("Yes, score=15.00")
        assert "GTUBE" in junk["X-Spamd-Result"]
        assert [c["Subject"] for c in copies(h, DEMO)] == ["fine"]
        assert [c["Subject"] for c in copies(h, OTHER, "Spam-by-me")] == ["buy now"]  # the script decided
    finally:
        h.stop()


def test_submitted_mail_is_not_scanned(h: Harness) -> None:
    assert h.pipeline.stages[0].name == "spam"
    with smtplib.SMTP("127.0.0.1", h.smtp("submission")) as smtp:
        smtp.login(DEMO, "delivery-test-pw")
        smtp.sendmail(DEMO, [OTHER], spam("my own", sender=DEMO))
    (copy,) = copies(h, OTHER)
    assert copy["X-Spam-Status"] is None


class BrokenFilter:
    """A TCP listener on loopback that plays a broken rspamd: it accepts and then answers nonsense, or
    never answers (until released)."""

    def __init__(self, answer: bytes | None) -> None:
        self.answer = answer
        self.release = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            if self.answer is None:
                await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 30)
            else:
                writer.write(self.answer)
                await writer.drain()
            writer.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    def stop(self) -> None:
        self.release.set()
        asyncio.run_coroutine_threadsafe(self._close(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def _close(self) -> None:
        self.server.close()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        await asyncio.gather(*others, return_exceptions=True)


def closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once it is closed


@pytest.mark.parametrize(
    "answer", [None, b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nnot json!", b"garbage\r\n"]
)
def test_a_filter_that_hangs_or_talks_nonsense_delivers_unfiltered(
    tmp_path: Path, answer: bytes | None, caplog: pytest.LogCaptureFixture
) -> None:
    broken = BrokenFilter(answer)
    h = harness(tmp_path, f"http://127.0.0.1:{broken.port}", timeout=1.0)
    try:
        with caplog.at_level(logging.WARNING, logger="postoffice.spam"):
            send(h, spam("unscanned"))
        (copy,) = copies(h, DEMO)
        assert copy["Subject"] == "unscanned"
        assert copy["X-Spam-Status"] is None
        assert "spam filter failed" in caplog.text
        assert "delivered unfiltered" in caplog.text
    finally:
        h.stop()
        broken.stop()


def test_a_filter_that_is_down_defers_the_mail_when_configured_to(tmp_path: Path) -> None:
    h = harness(tmp_path, f"http://127.0.0.1:{closed_port()}", on_failure="tempfail")
    try:
        with (
            smtplib.SMTP("127.0.0.1", h.smtp("mx")) as smtp,
            pytest.raises(smtplib.SMTPDataError) as deferred,
        ):
            smtp.sendmail(SENDER, [DEMO], message("later"))
        assert deferred.value.smtp_code == 451
        assert copies(h, DEMO) == []
    finally:
        h.stop()
