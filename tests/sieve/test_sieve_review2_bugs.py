"""Bugs a second review found in the Sieve extensions, the delivery stage and the rspamd client: hostile
messages and scripts never fail a delivery (nested comments, dates at the end of time, 5,000-digit numbers,
odd charsets, non-ASCII digits, NUL in names), ihave and variables, references without white space, :matches
without quadratic Python steps, expired duplicate records pruned, UTF-8 notifications, chunked and
unbounded HTTP answers from rspamd, and the test-suite runner on an included script that does not parse."""

from __future__ import annotations

import asyncio
import io
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from postoffice.delivery.pipeline import DeliveryPipeline
from postoffice.sieve.checker import check
from postoffice.sieve.grammar import parse
from postoffice.sieve.interpreter import FileInto, Outcome, SieveMessage, run
from postoffice.sieve.matching import glob, wildcard
from postoffice.sieve.stage import SieveStage
from postoffice.spam.rspamd import RspamdClient, ScanRequest
from postoffice.store import Delivery, DuplicateMark
from tests.delivery.harness import DEMO, HOSTNAME, OTHER, Harness, message
from tests.sieve.test_sieve_delivery import SENDER, activate, queued, send, subjects


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    harness.pipeline = DeliveryPipeline(
        harness.store, [SieveStage(harness.store, HOSTNAME, global_scripts=tmp_path)], hostname=HOSTNAME
    )
    yield harness
    harness.stop()


def raw(extra: bytes, subject: str = "hostile", body: bytes = b"body\r\n") -> bytes:
    return (
        b"From: "
        + SENDER.encode()
        + b"\r\nTo: "
        + DEMO.encode()
        + b"\r\nSubject: "
        + subject.encode()
        + b"\r\nMessage-ID: <"
        + subject.encode()
        + b"@sender.example>\r\n"
        + extra
        + b"\r\n"
        + body
    )


def folded(name: bytes, value: bytes, width: int = 900) -> bytes:
    lines = [value[i : i + width] for i in range(0, len(value), width)]
    return name + b": " + b"\r\n ".join(lines) + b"\r\n"


def delivered_to_both(h: Harness, data: bytes) -> None:
    """The message goes to DEMO (with the script) and OTHER (without): a stage exception is 451 for both."""
    send(h, data, to=(DEMO, OTHER))  # smtplib.SMTPDataError 451 when the Sieve stage raises
    assert len(subjects(h, OTHER)) == 1
    assert len(subjects(h, DEMO)) == 1


# -- exceptions that escape the stage on an attacker's message (451 for every recipient) ----------------


def test_address_test_on_a_header_of_nested_comments(h: Harness) -> None:
    # email.utils.getaddresses recurses once per "(": RecursionError, which the stage does not catch.
    activate(h, DEMO, 'require "fileinto"; if address :domain "Cc" "example.com" { fileinto "X"; }')
    delivered_to_both(h, raw(folded(b"Cc", b"(" * 3000)))


def test_vacation_on_a_to_of_nested_comments(h: Harness) -> None:
    # vacation_refusal reads To/Cc with getaddresses too: the same RecursionError in _carry_out.
    activate(h, DEMO, 'require "vacation"; vacation "away";')
    delivered_to_both(h, raw(folded(b"Cc", b"(" * 3000)))


def test_date_test_on_a_date_at_the_end_of_time(h: Harness) -> None:
    # RFC 5260 4.1: a date that cannot be used is left out; astimezone() raises OverflowError instead.
    activate(h, DEMO, 'require ["date", "fileinto"]; if date :is "date" "year" "2020" { fileinto "X"; }')
    delivered_to_both(h, raw(b"Date: Fri, 31 Dec 9999 23:59:59 -1400\r\n"))


def test_ascii_numeric_on_a_header_of_5000_digits(h: Harness) -> None:
    # matching.numeric: int() of more than 4300 digits raises ValueError (Python's int_max_str_digits); the
    # header test decodes adjacent encoded-words into one run of 6000 digits.
    activate(
        h,
        DEMO,
        'require ["comparator-i;ascii-numeric", "fileinto"];\r\n'
        'if header :comparator "i;ascii-numeric" :is "X-Priority" "1" { fileinto "X"; }',
    )
    word = b"=?us-ascii?q?" + b"9" * 60 + b"?="
    delivered_to_both(h, raw(b"X-Priority: " + b"\r\n ".join([word] * 100) + b"\r\n"))


def test_body_text_of_a_part_in_charset_idna(h: Harness) -> None:
    # _part_text catches LookupError only; bytes.decode("idna", "replace") raises UnicodeError.
    activate(h, DEMO, 'require ["body", "fileinto"]; if body :text :contains "x" { fileinto "X"; }')
    delivered_to_both(h, raw(b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=idna\r\n"))


# -- exceptions a script alone raises (every delivery to the account, and its co-recipients, 451) --------


def test_a_match_variable_reference_with_a_superscript_digit(h: Harness) -> None:
    # RFC 5229 3: num-variable = 1*DIGIT (ASCII); "²".isdigit() is True and int("²") raises ValueError.
    activate(h, DEMO, 'require ["variables", "fileinto"]; fileinto "a${\u00b2}";')
    delivered_to_both(h, raw(b""))


def test_include_global_of_a_name_with_a_nul(h: Harness) -> None:
    # the checker refuses control characters in a literal name, but the run expands variables: Path.stat()
    # raises ValueError ("embedded null byte"), not OSError.
    activate(
        h,
        DEMO,
        'require ["include", "variables", "encoded-character"];\r\n'
        'set "n" "x${hex:00}"; include :global :optional "${n}";',
    )
    send(h, raw(b""), to=(DEMO, OTHER))
    assert len(subjects(h, OTHER)) == 1
    # a name that cannot be a script's is the script's error: the message is kept and the account told
    assert subjects(h, DEMO) == ["hostile", 'Your mail filter "main" failed']


# -- RFC violations ---------------------------------------------------------------------------------------


def outcome(script: str, data: bytes = b"Subject: hi\r\n\r\nbody\r\n") -> Outcome:
    return run(check(parse(script)), SieveMessage.from_bytes(data, SENDER, DEMO))


def test_variables_enabled_by_ihave_are_expanded_in_its_block() -> None:
    # RFC 5463 section 4: in the block of a true ihave the extension may be used as if required; the checker
    # accepts set and "${a}" there, but the run expands only when "variables" is in a require.
    done = outcome(
        'require ["ihave", "fileinto"]; if ihave "variables" { set "a" "Lists"; fileinto "${a}"; }'
    )
    assert done.actions == [FileInto("Lists")]


def test_a_reference_with_white_space_is_not_a_reference() -> None:
    # RFC 5229 section 3: variable-ref = "${" [namespace] variable-name "}", no white space; "${ a }" is text.
    done = outcome('require ["variables", "fileinto"]; set "a" "b"; fileinto "x${ a }";')
    assert done.actions == [FileInto("x${ a }")]


# -- time ------------------------------------------------------------------------------------------------


def test_matches_finds_each_run_between_stars_at_its_leftmost_place() -> None:
    # a 300-character key against a 64 KiB header was len(key) * len(value) Python steps (seconds on the
    # event loop); the runs between the stars are now searched by the regular expression engine. What is
    # checked here is the answer on such inputs (timings are the benchmarks' business, not the tests').
    assert not glob(wildcard("*" + "a" * 300 + "b"), "a" * 65536)
    assert glob(wildcard("*" + "a" * 300 + "b"), "a" * 65536 + "b")
    assert glob(wildcard("*a?c*a?c*"), "xxabcyyaXc")
    assert not glob(wildcard("*a?c*a?c*"), "xxabcyyaX")


# -- the duplicate table ----------------------------------------------------------------------------------


def test_expired_duplicate_records_are_pruned(h: Harness) -> None:
    # decision 0084: keys are remembered 12 h by default, at most 7 days; but a row was only ever replaced
    # when the same key came again: every distinct Message-ID stayed in sieve_duplicates for ever.
    account = h.ids[DEMO]
    h.call(h.store.commit_delivery(Delivery([], duplicates=[DuplicateMark(account, "old", 0)])))  # expired
    h.call(h.store.commit_delivery(Delivery([], duplicates=[DuplicateMark(account, "new", 3600)])))
    with sqlite3.connect(f"file:{h.root / 'mail.sqlite3'}?mode=ro", uri=True) as conn:
        keys = [row[0] for row in conn.execute("SELECT key FROM sieve_duplicates")]
    assert keys == ["new"]


# -- notifications ----------------------------------------------------------------------------------------


def test_notify_to_a_utf8_address_is_written_and_queued_as_utf8(h: Harness) -> None:
    # RFC 6068 section 2 lets a mailto URI hold a percent-encoded UTF-8 address; the notification writes it
    # as an RFC 2047 encoded-word inside the addr-spec (RFC 2047 section 5 forbids) and queues it without
    # SMTPUTF8 (the fix made for vacation in f36a5c3 was not made here).
    activate(h, DEMO, 'require "enotify"; notify "mailto:j%C3%B6rg@example.net";')
    send(h, message("hello"))
    ((entry, _note),) = queued(h)
    assert entry.smtputf8
    data = h.call(h.store.queue_read(entry.id))
    assert b"=?utf-8?" not in data.partition(b"\r\n\r\n")[0]


# -- the rspamd client ------------------------------------------------------------------------------------

ANSWER = b'{"score": 7.5, "required_score": 15, "action": "add header", "symbols": {}}'


async def _check_against(respond: bytes | list[bytes]) -> float:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        for piece in [respond] if isinstance(respond, bytes) else respond:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.05)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        client = RspamdClient(f"http://127.0.0.1:{port}", timeout=5)
        data = message("x")
        verdict = await client.check(io.BytesIO(data), len(data), ScanRequest(None, None, SENDER, [DEMO]))
        return verdict.score
    finally:
        server.close()


def test_rspamd_answer_in_chunked_transfer_coding() -> None:
    # RFC 9112 section 7.1: an HTTP/1.1 recipient MUST be able to parse chunked; the chunk sizes go to json.
    body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(ANSWER), ANSWER)
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + body
    assert asyncio.run(_check_against(answer)) == 7.5


def test_rspamd_answer_without_content_length_in_two_segments() -> None:
    # without Content-Length the body ends at the close (RFC 9112 6.3); StreamReader.read(n) returns what
    # has arrived so far, so a body in two TCP segments is cut: "not what its protocol says".
    head = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"
    assert asyncio.run(_check_against([head + ANSWER[:20], ANSWER[20:]])) == 7.5


# -- the test suite runner --------------------------------------------------------------------------------


def test_svtest_runner_survives_an_included_script_that_does_not_parse(tmp_path: Path) -> None:
    from tests.sieve.testsuite import run_file

    (tmp_path / "included").mkdir()
    (tmp_path / "included" / "broken.sieve").write_text("if true {\n")
    case = tmp_path / "a.svtest"
    case.write_text('require "vnd.dovecot.testsuite"; require "include";\ntest "inc" { include "broken"; }\n')
    report = run_file(case)  # SieveSyntaxError escapes run_file
    assert not report.passed
