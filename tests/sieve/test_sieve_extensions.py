"""The Sieve extensions of the second round (issue 15): editheader (RFC 5293), regex (draft-ietf-sieve-regex),
spamtest/spamtestplus/virustest (RFC 5235), mboxmetadata/servermetadata (RFC 5490) and fcc (RFC 8580), at the
level of the checker and the interpreter; tests/sieve/test_sieve_delivery.py has them at delivery."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.sieve import matching
from postoffice.sieve.checker import SieveCheckError, check
from postoffice.sieve.grammar import parse
from postoffice.sieve.interpreter import (
    MAX_RUN_SECONDS,
    FileInto,
    Keep,
    Notify,
    SieveContext,
    SieveMessage,
    SieveRuntimeError,
    Vacation,
    added_field,
    run,
)

MESSAGE = (
    b"Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    b"From: alice@example.org\r\nSubject: [ticket #12] hello\r\nX-Tag: one\r\nX-Tag: two\r\n"
    b"\r\nbody\r\n"
)


def outcome_of(script: str, context: SieveContext | None = None) -> tuple[object, ...]:
    result = run(check(parse(script)), SieveMessage.from_bytes(MESSAGE, "alice@example.org", "me@x"), context)
    return (*result.actions, result.header)


def test_every_compile_error_is_reported_in_order_with_its_place() -> None:
    script = (
        'require ["editheader", "frob"];\r\nfrob;\r\naddheader "Bad Name" "v";\r\nif nosuch { keep; }\r\n'
    )
    with pytest.raises(SieveCheckError) as raised:
        check(parse(script))
    found = [(e.line, e.message) for e in raised.value.errors]
    assert [line for line, _ in found] == [1, 2, 3, 4]
    assert "frob" in found[0][1]
    assert "unknown command" in found[1][1]
    assert "field name" in found[2][1]
    assert "unknown test" in found[3][1]
    assert raised.value is raised.value.errors[0]


def test_editheader_snapshots_and_protected_fields() -> None:
    script = (
        'require ["editheader", "fileinto", "copy"];\r\n'
        'addheader "X-New" "added";\r\n'
        'fileinto :copy "A";\r\n'
        'deleteheader "received"; deleteheader :index 2 "x-tag";\r\n'
    )
    filed, header = outcome_of(script)
    assert isinstance(filed, FileInto)
    assert filed.header is not None
    assert filed.header[0] == b"X-New: added\r\n"
    assert b"X-Tag: two\r\n" in filed.header
    assert isinstance(header, tuple)
    assert b"X-Tag: two\r\n" not in header
    assert b"X-Tag: one\r\n" in header
    assert header[1].startswith(b"Received:")  # trace fields cannot be deleted (RFC 5293 section 6)


def test_added_fields_are_unfolded_encoded_and_folded() -> None:
    shown, raw = added_field("X-Long", "word " * 40 + "\nnext line\r\n continued")
    assert raw.endswith(b"\r\n")
    assert all(len(line) <= 78 for line in raw.split(b"\r\n"))
    assert "\n" not in shown
    assert shown.endswith("next line continued")
    shown, raw = added_field("Subject", "Grüße")
    assert raw.isascii()
    assert b"=?utf-8?" in raw
    assert shown.startswith("=?utf-8?")
    for name, value in (("Bad Name", "v"), ("X", "a\0b"), ("X", "x" * 5000)):
        with pytest.raises(SieveRuntimeError):
            added_field(name, value)


@pytest.mark.parametrize(
    ("spam", "value", "percent"),
    [
        (None, "0", "0"),
        ((-2.0, 6.0), "1", "0"),
        ((3.0, 6.0), "5", "50"),
        ((6.0, 6.0), "10", "100"),
        ((50.0, 6.0), "10", "100"),
        ((float("nan"), 6.0), "0", "0"),
    ],
)
def test_spamtest_values(spam: tuple[float, float] | None, value: str, percent: str) -> None:
    script = (
        'require ["spamtestplus", "variables", "fileinto"];\r\n'
        'if spamtest :matches "*" { set "v" "${1}"; }\r\n'
        'if spamtest :percent :matches "*" { set "p" "${1}"; }\r\n'
        'fileinto "${v}/${p}";\r\n'
    )
    filed, _header = outcome_of(script, SieveContext(spam=spam))
    assert isinstance(filed, FileInto)
    assert filed.mailbox == f"{value}/{percent}"


def test_metadata_tests_read_the_context() -> None:
    entries = {("INBOX", "/private/a"): "one", ("", "/shared/admin"): "mailto:x@y"}
    context = SieveContext(
        mailboxes=frozenset({"INBOX"}), metadata=lambda box, name: entries.get((box, name.lower()))
    )
    script = (
        'require ["mboxmetadata", "servermetadata", "fileinto"];\r\n'
        'if allof(metadata :is "INBOX" "/private/A" "one", metadataexists "INBOX" "/private/a",\r\n'
        '  not metadataexists "INBOX" "/private/b", servermetadata :contains "/shared/admin" "x@",\r\n'
        '  not metadata :is "Other" "/private/a" "one", not servermetadataexists "admin")\r\n'
        '{ fileinto "yes"; }\r\n'
    )
    filed, _header = outcome_of(script, context)
    assert isinstance(filed, FileInto)
    assert filed.mailbox == "yes"


def test_fcc_on_vacation_and_notify() -> None:
    script = (
        'require ["vacation", "enotify", "fcc", "imap4flags", "mailbox", "special-use"];\r\n'
        'vacation :fcc "Sent" :flags "\\\\Seen" :specialuse "\\\\Sent" "away";\r\n'
        'notify :fcc "Notes" :create "mailto:x@example.net";\r\n'
    )
    vacation, notify, keep_header = outcome_of(script)
    assert isinstance(vacation, Vacation)
    assert isinstance(notify, Notify)
    assert vacation.fcc == FileInto("Sent", flags=("\\Seen",), special_use="\\Sent")
    assert notify.fcc == FileInto("Notes", create=True)
    assert keep_header is None
    for bad in ('vacation :flags "x" "away";', 'require "fcc"; vacation :create "away";'):
        with pytest.raises(SieveCheckError):
            check(parse('require ["vacation", "imap4flags", "mailbox"];\r\n' + bad))


def test_regex_keys_are_checked_and_a_slow_one_is_a_runtime_error() -> None:
    with pytest.raises(SieveCheckError, match="regular expression"):
        check(parse('require "regex"; if header :regex "s" "a(" { keep; }'))
    script = 'require ["regex", "variables"]; set "k" "(a|aa)*c"; if header :regex "x-long" "${k}" { keep; }'
    raw = b"X-Long: " + b"a" * 60 + b"xc\r\n\r\n"
    with pytest.raises(SieveRuntimeError, match="too long"):
        run(check(parse(script)), SieveMessage.from_bytes(raw))
    keep = run(
        check(parse('require "regex"; if header :regex "x-long" "^a{3}" { keep; }')),
        SieveMessage.from_bytes(raw),
    )
    assert keep.actions == [Keep()]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab()[]{}|*+?.^$\\-:,0123456789", max_size=30))
def test_any_key_is_translated_and_compiled_or_refused_with_a_value_error(pattern: str) -> None:
    try:
        compiled = matching.compile_regex(pattern, True)
    except ValueError:
        return
    try:
        compiled.search("ab" * 10, timeout=matching.REGEX_TIMEOUT)
    except TimeoutError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=40))
def test_a_quoted_literal_matches_itself_and_only_where_it_occurs(text: str) -> None:
    quoted = "".join("\\" + c if c in "\\.[]()*+?{}|^$" else c for c in text)
    compiled = matching.compile_regex(quoted, False)
    assert compiled.search("<" + text + ">") is not None
    assert compiled.fullmatch(text) is not None


def test_a_run_has_a_time_limit() -> None:
    script = 'require "regex"; if header :regex "subject" "ticket" { keep; }'
    program = check(parse(script))
    message = SieveMessage.from_bytes(MESSAGE)
    assert run(program, message).actions == [Keep()]
    with pytest.raises(SieveRuntimeError, match="ran longer than 0 s"):
        run(program, message, SieveContext(time_limit=0.0))
    assert MAX_RUN_SECONDS <= 2.0
