"""Bugs a review found in the Sieve extensions of decision 0090, at delivery (real SMTP sessions into the real
store; tests/sieve/test_sieve_delivery.py has the helpers), each kept as a test."""

from __future__ import annotations

from pathlib import Path

from postoffice.delivery.pipeline import DeliveryPipeline
from postoffice.sieve.stage import SieveStage
from postoffice.spam.rspamd import RspamdClient, ScanRequest, Verdict
from postoffice.spam.settings import SpamConfig
from postoffice.spam.stage import SpamStage
from tests.delivery.harness import DEMO, HOSTNAME, Harness, message
from tests.sieve.test_sieve_delivery import activate, h, queued, send, subjects  # noqa: F401 (fixture h)


class ScoringClient(RspamdClient):
    """rspamd's client answering a fixed score (the real SpamStage runs on it)."""

    def __init__(self, score: float) -> None:
        super().__init__("http://127.0.0.1:9", timeout=1)
        self.score = score

    async def check(self, source, size: int, request: ScanRequest) -> Verdict:  # type: ignore[no-untyped-def]
        return Verdict(self.score, 15.0, "add header", {"X": self.score})


def test_spamtest_sees_the_score_of_the_real_spam_stage(tmp_path: Path) -> None:
    """Decision 0090 / RFC 5235 3.1: spamtest is the spam stage's score; "0" means "not tested". The real
    SpamStage never sets plan.spam_score, so a scanned message with score 9 >= junk_score 6 tests "0"."""
    harness = Harness(tmp_path)
    try:
        stage = SpamStage(
            SpamConfig(rspamd_url="http://127.0.0.1:9", junk_score=6.0), ScoringClient(9.0), HOSTNAME
        )
        harness.pipeline = DeliveryPipeline(
            harness.store, [stage, SieveStage(harness.store, HOSTNAME)], hostname=HOSTNAME
        )
        harness.call(harness.store.create_mailbox(harness.ids[DEMO], "Tested"))
        harness.call(harness.store.create_mailbox(harness.ids[DEMO], "Untested"))
        activate(
            harness,
            DEMO,
            'require ["spamtest", "fileinto"];\r\n'
            'if spamtest :is "0" { fileinto "Untested"; } else { fileinto "Tested"; }\r\n',
        )
        send(harness, message("scored 9"))
        assert subjects(harness, DEMO, "Untested") == []
        assert subjects(harness, DEMO, "Tested") == ["scored 9"]
    finally:
        harness.stop()


def test_vacation_reads_the_header_as_edited(h: Harness) -> None:  # noqa: F811
    """RFC 5293 section 7: tests and actions "such as exists, header, or vacation" that examine header fields
    MUST examine the header as modified so far. The reply's subject comes from the unedited header."""
    activate(
        h,
        DEMO,
        'require ["editheader", "vacation"];\r\n'
        'deleteheader "subject";\r\naddheader "Subject" "edited subject";\r\n'
        'vacation :days 1 "away";\r\n',
    )
    send(h, message("original subject"))
    ((_entry, reply),) = queued(h)
    assert str(reply["Subject"]) == "Auto: edited subject", str(reply["Subject"])


def test_redirect_of_an_edited_header_does_not_carry_our_return_path(h: Harness) -> None:  # noqa: F811
    """forwarding.py strips the final-delivery Return-Path from what leaves (RFC 5321 4.4); with a Rewrite it
    strips only a Return-Path at the very top, and the edited header has the added field (or the account's
    prepended fields) above it."""
    activate(
        h,
        DEMO,
        'require ["editheader"];\r\naddheader "X-Seen" "yes";\r\nredirect "far@outside.example";\r\n',
    )
    send(h, message("edited then redirected"))
    ((_entry, forwarded),) = queued(h)
    assert forwarded["X-Seen"] == "yes"
    assert forwarded.get_all("Return-Path") is None, forwarded.get_all("Return-Path")


def test_quota_counts_every_copy_with_its_own_edited_header(h: Harness) -> None:  # noqa: F811
    """apply_quotas sizes every copy with the first copy's header (recipient.rewrite) times `copies`; a later
    copy with a large edited header is stored over the quota (the store does not check it again)."""
    h.call(h.store.update_account(DEMO, quota=1_000_000))
    h.call(h.store.create_mailbox(h.ids[DEMO], "Big"))
    big = "x" * 2000
    script = (
        'require ["editheader", "fileinto", "variables"];\r\n'
        f'set "a" "{big}";\r\n'
        "keep;\r\n" + 'addheader "X-Pad" "${a}";\r\n' * 600 + 'fileinto "Big";\r\n'
    )
    activate(h, DEMO, script)
    send(h, message("padded"))
    stored = [info.size for box in ("INBOX", "Big") for info in h.messages(DEMO, box)]
    assert sum(stored) <= 1_000_000, f"stored {stored} octets with a quota of 1000000"


def test_an_edited_header_keeps_the_lines_the_parser_reads_as_body(h: Harness) -> None:  # noqa: F811
    """The Rewrite replaces everything up to the first empty line (or the whole message when there is none)
    with the fields iter_raw_fields found; a line in that range that is no field (the store's parser and IMAP
    take it as the start of the body) is dropped. A message without an empty line loses its whole body."""
    activate(h, DEMO, 'require ["editheader"];\r\naddheader "X-Edited" "yes";\r\n')
    raw = (
        b"From: someone@remote.example\r\nTo: demo@example.test\r\nSubject: no separator\r\n"
        b"This is the body, written by a broken mailer\r\nsecond line\r\n"
    )
    send(h, raw)
    ((info,),) = [h.messages(DEMO)]
    stored = h.content(info)
    assert stored.startswith(b"X-Edited: yes\r\n")
    assert b"This is the body" in stored, stored.decode()


def test_metadata_in_an_included_script_is_read(h: Harness) -> None:  # noqa: F811
    """SieveStage._run reads the store's metadata only when the *main* script requires mboxmetadata
    (required(program)); an included script's metadata tests always see "no entry"."""
    from postoffice.store import MetadataLimits
    from tests.sieve.test_sieve_delivery import LIMITS

    account = h.ids[DEMO]
    h.call(h.store.create_mailbox(account, "Tickets"))
    inbox = h.call(h.store.get_mailbox(account, "INBOX"))
    assert inbox is not None
    limits = MetadataLimits(max_value_size=1024, max_entries=10, max_account_octets=65536)
    h.call(h.store.set_metadata(account, inbox.id, {"/private/filing": b"tickets"}, limits))
    h.call(
        h.store.put_sieve_script(
            account,
            "filing",
            'require ["fileinto", "mboxmetadata"];\r\n'
            'if metadata :is "INBOX" "/private/filing" "tickets" { fileinto "Tickets"; }\r\n',
            LIMITS,
        )
    )
    activate(h, DEMO, 'require "include";\r\ninclude :personal "filing";\r\n')
    send(h, message("via include"))
    assert subjects(h, DEMO, "Tickets") == ["via include"]
