"""Running checked Sieve scripts (RFC 5228 sections 2.7-2.10, 4, 5; RFC 3894 copy; RFC 5429 reject): the
tests against a message and its envelope, and the actions and implicit keep that come out."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.sieve import interpreter
from postoffice.sieve.checker import check
from postoffice.sieve.grammar import SieveSyntaxError, parse
from postoffice.sieve.interpreter import (
    MAX_REDIRECTS,
    Discard,
    FileInto,
    Keep,
    Outcome,
    Redirect,
    Reject,
    SieveMessage,
    SieveRuntimeError,
    Vacation,
    run,
    vacation_refusal,
)

REQUIRE = 'require ["fileinto", "copy", "envelope", "reject", "ereject", "comparator-i;ascii-numeric"];\r\n'
MESSAGE = (
    b"From: =?utf-8?q?Zo=C3=AB?= <Zoe@Example.ORG>\r\n"
    b'To: team@lists.example.org, "Bob" <bob@example.net>\r\n'
    b"Subject: [dev] Weekly =?utf-8?b?5byA5Lya?=\r\n"
    b"List-Id: Dev <dev.lists.example.org>\r\n"
    b"X-Spam-Level: 12\r\n"
    b"X-Tricky: a*b?c\r\n"
    b"\r\n" + b"body\r\n" * 100
)


def outcome(script: str, raw: bytes = MESSAGE, **envelope: str) -> Outcome:
    message = SieveMessage.from_bytes(
        raw, envelope.get("sender", "zoe@example.org"), envelope.get("to", "me@x")
    )
    return run(check(parse(REQUIRE + script)), message)


def test_no_action_keeps_the_message_and_fileinto_cancels_the_implicit_keep() -> None:
    assert outcome("").delivered_to() == ["INBOX"]
    moved = outcome('fileinto "Lists";')
    assert (moved.actions, moved.implicit_keep) == ([FileInto("Lists")], False)
    assert moved.delivered_to() == ["Lists"]
    copied = outcome('fileinto :copy "Lists"; redirect :copy "a@x";')
    assert copied.implicit_keep
    assert copied.delivered_to() == ["Lists", "INBOX"]
    assert copied.actions == [FileInto("Lists", True), Redirect("a@x", True)]


def test_keep_discard_stop_and_duplicates() -> None:
    assert outcome("discard;").delivered_to() == []
    both = outcome("keep; discard;")  # the explicit keep already kept it
    assert both.actions == [Keep(), Discard()]
    assert both.delivered_to() == ["INBOX"]
    assert outcome('stop; fileinto "Never";').delivered_to() == ["INBOX"]
    twice = outcome('fileinto "A"; fileinto "A"; keep; keep; fileinto "INBOX";')  # section 2.10.3
    assert twice.actions == [FileInto("A"), Keep(), FileInto("INBOX")]
    assert twice.delivered_to() == ["A", "INBOX"]


def test_if_elsif_else_take_the_first_branch_that_holds() -> None:
    script = (
        'if header :contains "Subject" "nothing" { fileinto "1"; }\r\n'
        'elsif header :contains "subject" "WEEKLY" { fileinto "2"; }\r\n'
        'elsif true { fileinto "3"; }\r\n'
        'else { fileinto "4"; }\r\n'
        'if false { fileinto "5"; } else { fileinto "6"; }\r\n'
    )
    assert outcome(script).delivered_to() == ["2", "6"]


@pytest.mark.parametrize(
    ("test", "holds"),
    [
        ('header :is "Subject" "[dev] Weekly 开会"', True),  # encoded words decoded (section 5.7)
        ('header :is "subject" "[DEV] WEEKLY 开会"', True),  # i;ascii-casemap by default
        ('header :comparator "i;octet" :is "Subject" "[DEV] WEEKLY 开会"', False),
        ('header :contains ["X-None", "List-Id"] "dev.lists"', True),
        ('header :matches "Subject" "[dev]*"', True),  # "[" and "]" are not special
        ('header :matches "Subject" "dev*"', False),  # the whole value must match
        ('header :matches "Subject" "?dev? *"', True),
        ('header :matches "X-Tricky" "a\\\\*b\\\\?c"', True),  # quoted wildcards match themselves
        ('header :matches "X-Tricky" "a\\\\*b\\\\?x"', False),
        ('header :comparator "i;ascii-numeric" :is "X-Spam-Level" "012"', True),
        ('address :is "From" "zoe@example.org"', True),
        ('address :domain :is "To" "example.net"', True),
        ('address :localpart :is "To" "team"', True),
        ('address :all :contains "To" "Bob"', True),
        ('address :is "To" "Bob"', False),  # display names are not addresses
        ('envelope :is "from" "zoe@example.org"', True),
        ('envelope :domain :is "to" "x"', True),
        ('exists ["From", "List-Id"]', True),
        ('exists ["From", "X-None"]', False),
        ("size :over 500", True),
        ("size :under 500", False),
        ('allof (true, not false, anyof (false, exists "To"))', True),
        ("anyof (false, not true)", False),
    ],
)
def test_tests(test: str, holds: bool) -> None:
    assert outcome(f'if {test} {{ fileinto "hit"; }}').delivered_to() == (["hit"] if holds else ["INBOX"])


def test_the_null_reverse_path_is_the_empty_string() -> None:
    assert outcome('if envelope :is "from" "" { discard; }', sender="").delivered_to() == []


def test_reject_and_its_conflicts() -> None:
    rejected = outcome('reject "No thanks.";')
    assert (rejected.actions, rejected.delivered_to()) == ([Reject("No thanks.")], [])
    assert outcome('ereject "No.";').actions == [Reject("No.", True)]
    for script in ('reject "a"; fileinto "x";', 'reject "a"; keep;', 'reject "a"; ereject "b";'):
        with pytest.raises(SieveRuntimeError):
            outcome(script)


def test_too_many_redirects_is_a_runtime_error() -> None:
    script = "".join(f'redirect "r{n}@x";' for n in range(MAX_REDIRECTS))
    assert len(outcome(script).actions) == MAX_REDIRECTS
    with pytest.raises(SieveRuntimeError, match="redirects"):
        outcome(script + 'redirect "one-more@x";')


def _reference(pattern: str, text: str) -> bool:
    """`:matches` by a regular expression (fine for the short keys of the property test)."""
    out, escaped = [], False
    for ch in pattern:
        if escaped:
            out.append(re.escape(ch))
            escaped = False
        elif ch == "\\":
            escaped = True
        else:
            out.append({"*": ".*", "?": "."}.get(ch, re.escape(ch)))
    return re.fullmatch("".join(out), text, re.DOTALL) is not None


@settings(max_examples=500)
@given(st.text("ab*?\\", max_size=8), st.text("ab*?\\", max_size=10))
def test_matches_agrees_with_a_regular_expression(pattern: str, text: str) -> None:
    assert interpreter._glob(interpreter._wildcard(pattern), text) == _reference(pattern, text)


def test_matches_takes_bounded_steps_on_keys_that_would_make_a_regular_expression_backtrack() -> None:
    key = "*a" * 30 + "b"
    value = "a" * 5000
    assert not interpreter._glob(interpreter._wildcard(key), value)
    raw = b"Subject: " + value.encode() + b"\r\n\r\nx\r\n"
    assert outcome(f'if header :matches "Subject" "{key}" {{ discard; }}', raw).delivered_to() == ["INBOX"]


# ------------------------------------------------------------------------------------- vacation (RFC 5230)

PERSONAL = b"From: Zoe <zoe@example.org>\r\nTo: Me <me@example.test>\r\nSubject: Lunch?\r\n\r\nHi\r\n"


def vacation_of(
    script: str, raw: bytes = PERSONAL, sender: str = "zoe@example.org"
) -> tuple[Outcome, str | None]:
    """The outcome of `script` (after require "vacation") and why its Vacation may not be sent."""
    message = SieveMessage.from_bytes(raw, sender, "me@example.test")
    result = run(check(parse('require ["vacation", "vacation-seconds", "reject"];\r\n' + script)), message)
    (vacation,) = [a for a in result.actions if isinstance(a, Vacation)]
    return result, vacation_refusal(message, vacation, ["me@example.test"])


def test_vacation_keeps_the_message_and_holds_its_arguments() -> None:
    result, refusal = vacation_of(
        'vacation :days 3 :subject "Away" :from "me@example.test" :addresses ["alias@example.test"] :mime '
        ':handle "h1" "Back soon.";'
    )
    assert result.delivered_to() == ["INBOX"]
    assert result.actions == [
        Vacation("Back soon.", "Away", "me@example.test", ("alias@example.test",), True, "h1", 3 * 86400)
    ]
    assert refusal is None


def first_vacation(script: str) -> Vacation:
    (vacation,) = [a for a in vacation_of(script)[0].actions if isinstance(a, Vacation)]
    return vacation


def test_vacation_periods_and_handles() -> None:
    periods = {
        args: first_vacation(f'vacation {args} "x";').seconds
        for args in ("", ":days 0", ":seconds 0", ":days 1000")
    }
    assert periods == {"": 7 * 86400, ":days 0": 86400, ":seconds 0": 0, ":days 1000": 90 * 86400}
    handles = {first_vacation(f'vacation {args} "x";').handle for args in ("", ':subject "s"', ":mime")}
    assert len(handles) == 3  # each reply that differs is another reply (RFC 5230 4.2)
    assert first_vacation('vacation "x";').handle == first_vacation('vacation "x";').handle


@pytest.mark.parametrize(
    ("raw", "sender", "why"),
    [
        (PERSONAL, "", "null"),
        (PERSONAL, "me@example.test", "the recipient"),
        (PERSONAL, "MAILER-DAEMON@example.org", "program"),
        (PERSONAL, "owner-dev@lists.example.org", "program"),
        (PERSONAL, "dev-request@lists.example.org", "program"),
        (b"Auto-Submitted: auto-replied\r\n" + PERSONAL, "zoe@example.org", "Auto-Submitted"),
        (b"Precedence: bulk\r\n" + PERSONAL, "zoe@example.org", "Precedence"),
        (b"List-Id: <dev.lists.example.org>\r\n" + PERSONAL, "zoe@example.org", "mailing list"),
        (PERSONAL.replace(b"me@example.test", b"someone@example.test"), "zoe@example.org", "none of"),
    ],
)
def test_no_vacation_reply_where_rfc_3834_forbids_it(raw: bytes, sender: str, why: str) -> None:
    _result, refusal = vacation_of('vacation "x";', raw, sender)
    assert refusal is not None
    assert why in refusal


def test_a_vacation_reply_to_an_alias_and_auto_submitted_no() -> None:
    raw = b"Auto-Submitted: no\r\n" + PERSONAL.replace(b"me@example.test", b"alias@example.test")
    assert vacation_of('vacation :addresses "alias@example.test" "x";', raw)[1] is None


def test_vacation_conflicts() -> None:
    for script in ('vacation "a"; vacation "b";', 'vacation "a"; reject "no";'):
        with pytest.raises(SieveRuntimeError):
            vacation_of(script)


# -- imap4flags (RFC 5232) --------------------------------------------------------------------------------


def test_flag_commands_change_the_internal_variable_that_keep_and_fileinto_use() -> None:
    script = (
        'require "imap4flags";\r\n'
        'setflag ["\\\\Seen", "$Work  later"];\r\n'  # a string may hold several flags
        'addflag "\\\\seen $Important";\r\n'  # flag names are case-insensitive: once
        'fileinto "A";\r\n'
        'removeflag "LATER";\r\n'
        'fileinto :flags "\\\\Flagged" "B";\r\n'
        "keep;\r\n"
        'addflag "$Last";\r\n'
    )
    found = outcome(script)
    assert found.actions == [
        FileInto("A", flags=("\\Seen", "$Work", "later", "$Important")),
        FileInto("B", flags=("\\Flagged",)),
        Keep(("\\Seen", "$Work", "$Important")),
    ]
    assert found.flags == ("\\Seen", "$Work", "$Important", "$Last")  # what the implicit keep would use
    assert outcome('require "imap4flags"; setflag "a"; setflag "";').flags == ()


@pytest.mark.parametrize(
    ("test", "holds"),
    [
        ('hasflag "$work"', True),
        ('hasflag ["x", "\\\\SEEN"]', True),
        ('hasflag :contains "ork"', True),
        ('hasflag :matches "$*k"', True),
        ('hasflag :comparator "i;octet" "$work"', False),
        ('hasflag "later"', False),
        ('hasflag ""', False),
    ],
)
def test_hasflag_matches_each_flag_of_the_internal_variable(test: str, holds: bool) -> None:
    script = f'require "imap4flags"; setflag "\\\\Seen $Work"; if {test} {{ discard; }}'
    assert (outcome(script).delivered_to() == []) == holds


def test_imap4flags_needs_its_require() -> None:
    for script in (
        'setflag "a";',
        'keep :flags "a";',
        'if hasflag "a" { stop; }',
        'fileinto :flags "a" "B";',
    ):
        with pytest.raises(SieveSyntaxError, match="imap4flags"):
            check(parse(REQUIRE + script))
