"""Running checked Sieve scripts (RFC 5228 sections 2.7-2.10, 4, 5; RFC 3894 copy; RFC 5429 reject): the
tests against a message and its envelope, and the actions and implicit keep that come out."""

from __future__ import annotations

import base64
import datetime
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.sieve import matching
from postoffice.sieve.checker import check
from postoffice.sieve.grammar import SieveSyntaxError, parse
from postoffice.sieve.interpreter import (
    MAX_REDIRECTS,
    Discard,
    FileInto,
    Keep,
    Notify,
    Outcome,
    Redirect,
    Reject,
    SieveContext,
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
    assert matching.glob(matching.wildcard(pattern), text) == _reference(pattern, text)


def test_matches_takes_bounded_steps_on_keys_that_would_make_a_regular_expression_backtrack() -> None:
    key = "*a" * 30 + "b"
    value = "a" * 5000
    assert not matching.glob(matching.wildcard(key), value)
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


# -- the extensions of issue 15 beyond the base ----------------------------------------------------------


def run_with(
    script: str, raw: bytes = MESSAGE, context: SieveContext | None = None, **envelope: str
) -> Outcome:
    message = SieveMessage.from_bytes(
        raw, envelope.get("sender", "zoe@example.org"), envelope.get("to", "me@x")
    )
    return run(check(parse(script)), message, context)


def filed(outcome: Outcome) -> list[str]:
    return [a.mailbox for a in outcome.actions if isinstance(a, FileInto)]


def test_variables_set_expand_and_take_modifiers_by_precedence() -> None:
    script = (
        'require ["variables", "fileinto"];\r\n'
        'set "name" "Weekly News";\r\n'
        'set :lower :upperfirst "a" "${name}";\r\n'  # lower first, then upperfirst: "Weekly news"
        'set :length "n" "${name}";\r\n'
        'set :quotewildcard "q" "a*b?c\\\\";\r\n'
        'set "Empty" "${unset}${name";\r\n'  # an unset variable is ""; an unclosed reference stays
        'fileinto "${a}/${n}/${q}/${EMPTY}";\r\n'
    )
    assert filed(run_with(script)) == ["Weekly news/11/a\\*b\\?c\\\\/${name"]


def test_match_variables_come_from_the_last_matches_that_held() -> None:
    script = (
        'require ["variables", "fileinto"];\r\n'
        'if header :matches "List-Id" "*<*.*>" { fileinto "lists/${2}"; }\r\n'
        'if header :matches "Subject" "[*] *" { fileinto "${1}:${2}:${0}"; }\r\n'
        'if header :matches "Subject" "no*match" { fileinto "never"; }\r\n'
        'fileinto "again-${1}";\r\n'  # the failed test left the variables as they were
    )
    found = filed(run_with(script))
    assert found == ["lists/dev", "dev:Weekly 开会:[dev] Weekly 开会", "again-dev"]


def test_string_test_and_count_of_non_empty_strings() -> None:
    script = (
        'require ["variables", "relational", "comparator-i;ascii-numeric"];\r\n'
        'set "a" "x"; set "b" "";\r\n'
        'if string :count "eq" :comparator "i;ascii-numeric" ["${a}", "${b}", "y"] "2" { discard; }\r\n'
    )
    assert run_with(script).delivered_to() == []


@pytest.mark.parametrize(
    ("test", "holds"),
    [
        ('header :value "gt" :comparator "i;ascii-numeric" "X-Spam-Level" "9"', True),
        ('header :value "lt" :comparator "i;ascii-numeric" "X-Spam-Level" "9"', False),
        ('header :value "ge" "Subject" "[dev]"', True),  # i;ascii-casemap order
        ('header :count "eq" :comparator "i;ascii-numeric" "To" "1"', True),
        ('address :count "eq" :comparator "i;ascii-numeric" "To" "2"', True),
        ('address :count "gt" :comparator "i;ascii-numeric" ["To", "From"] "2"', True),
        ('header :count "eq" :comparator "i;ascii-numeric" "X-None" "0"', True),
        ('header :value "ne" "X-None" "a"', False),  # no values: nothing to compare
    ],
)
def test_relational_value_and_count(test: str, holds: bool) -> None:
    script = f'require ["relational", "comparator-i;ascii-numeric"]; if {test} {{ discard; }}'
    assert (run_with(script).delivered_to() == []) == holds


@pytest.mark.parametrize(
    ("test", "holds"),
    [
        ('envelope :user "to" "me"', True),
        ('envelope :detail "to" "lists"', True),
        ('address :user "To" "bob"', True),
        ('address :detail "To" ""', False),  # no "+": no detail, not even ""
        ('envelope :detail "to" ""', False),
    ],
)
def test_subaddress_user_and_detail(test: str, holds: bool) -> None:
    script = f'require ["subaddress", "envelope"]; if {test} {{ discard; }}'
    assert (run_with(script, to="me+lists@x").delivered_to() == []) == holds


def test_index_picks_one_occurrence_from_the_start_or_the_end() -> None:
    raw = b"Received: first\r\nReceived: second\r\nReceived: third\r\nSubject: s\r\n\r\nbody\r\n"
    script = (
        'require ["index", "fileinto", "variables"];\r\n'
        'if header :index 2 :matches "Received" "*" { fileinto "${0}"; }\r\n'
        'if header :index 1 :last :matches "Received" "*" { fileinto "${0}"; }\r\n'
        'if header :index 9 :matches "Received" "*" { fileinto "never"; }\r\n'
    )
    assert filed(run_with(script, raw)) == ["second", "third"]


def test_date_and_currentdate_parts_in_a_zone() -> None:
    raw = b"Date: Sun, 31 Dec 2023 23:30:00 -0100\r\nSubject: s\r\n\r\nbody\r\n"
    script = (
        'require ["date", "fileinto", "variables", "relational"];\r\n'
        'if date :zone "+0000" :matches "Date" "iso8601" "*" { fileinto "${0}"; }\r\n'
        'if date :originalzone :matches "Date" "date" "*" { fileinto "${0}"; }\r\n'
        'if date :zone "+0000" :is "date" "weekday" "1" { fileinto "monday"; }\r\n'
        'if date :zone "+0000" :is "date" "julian" "60310" { fileinto "mjd"; }\r\n'
        'if currentdate :zone "+0200" :matches "std11" "*" { fileinto "${0}"; }\r\n'
        'if date :zone "bogus" :matches "Date" "year" "*" { fileinto "never"; }\r\n'
    )
    now = datetime.datetime(2024, 6, 1, 12, 0, tzinfo=datetime.UTC)
    found = filed(run_with(script, raw, SieveContext(now=now)))
    assert found == [
        "2024-01-01T00:30:00+00:00",
        "2023-12-31",
        "monday",
        "mjd",
        "Sat, 01 Jun 2024 14:00:00 +0200",
    ]


def test_body_raw_content_and_text() -> None:
    raw = (
        b"Subject: parts\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.b64encode("café offer".encode())
        + b"\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>Big <b>SALE</b> &amp; more</p>\r\n--b--\r\n"
    )

    def holds(test: str) -> bool:
        return run_with(f'require "body"; if {test} {{ discard; }}', raw).delivered_to() == []

    assert holds('body :contains "café"')  # :text (the default): decoded text parts
    assert holds('body :contains "SALE & more"')  # html as text
    assert not holds('body :contains "<b>"')
    assert holds('body :raw :contains "<b>SALE</b>"')
    assert not holds('body :raw :contains "café"')  # raw: still base64
    assert holds('body :content "text/html" :contains "<b>"')
    assert not holds('body :content "image" :contains "a"')
    assert holds('body :content "text" :contains "offer"')


def test_environment_ihave_and_error() -> None:
    context = SieveContext(environment={"name": "Postoffice", "phase": "during", "remote-ip": "192.0.2.1"})
    script = (
        'require ["environment", "ihave", "fileinto"];\r\n'
        'if environment :is "name" "Postoffice" { fileinto "a"; }\r\n'
        'if environment :matches "remote-ip" "192.0.2.*" { fileinto "b"; }\r\n'
        'if environment :is "nonexistent" "" { fileinto "never"; }\r\n'
        'if ihave "frobnicate" { frobnicate :everything; }\r\n'  # not checked: never run (RFC 5463)
        'elsif ihave ["fileinto", "body"] { fileinto "c"; }\r\n'
    )
    assert filed(run_with(script, context=context)) == ["a", "b", "c"]
    with pytest.raises(SieveRuntimeError, match="my reason"):
        run_with('require "ihave"; error "my reason";')


def test_mailbox_special_use_and_mailboxid_tests_and_fileinto_tags() -> None:
    context = SieveContext(
        mailboxes=frozenset({"INBOX", "Junk", "Work"}),
        special_uses={"Junk": frozenset({"\\junk"})},
        mailbox_ids={"M17": "Work"},
    )
    script = (
        'require ["mailbox", "special-use", "mailboxid", "fileinto"];\r\n'
        'if mailboxexists ["Work", "inbox"] { fileinto :create "New"; }\r\n'
        'if mailboxexists "Nope" { fileinto "never1"; }\r\n'
        'if specialuse_exists "\\\\Junk" { fileinto :specialuse "\\\\Junk" "Spam"; }\r\n'
        'if specialuse_exists "Work" "\\\\Junk" { fileinto "never2"; }\r\n'
        'if mailboxidexists "M17" { fileinto :mailboxid "M17" "Fallback"; }\r\n'
    )
    found = run_with(script, context=context).actions
    assert found == [
        FileInto("New", create=True),
        FileInto("Spam", special_use="\\Junk"),
        FileInto("Fallback", mailbox_id="M17"),
    ]


def test_encoded_character_is_decoded_in_strings_when_required() -> None:
    script = 'require ["encoded-character", "fileinto"]; fileinto "${hex:41 42}${unicode:263a}${hex:zz}";'
    assert filed(run_with(script)) == ["AB☺${hex:zz}"]
    assert filed(run_with('require "fileinto"; fileinto "${hex:41}";')) == ["${hex:41}"]  # not required


def test_match_variable_parts_agree_with_shortest_first_wildcards() -> None:
    for pattern, text, parts in [
        ("*.*", "a.b.c", ["a.b.c", "a", "b.c"]),
        ("?*?", "abcd", ["abcd", "a", "bc", "d"]),
        ("*", "", ["", ""]),
        ("a\\*b*", "a*bzz", ["a*bzz", "zz"]),
    ]:
        tokens = matching.wildcard(pattern)
        assert matching.glob_parts(tokens, text, text) == parts, pattern
    assert matching.glob_parts(matching.wildcard("a*b"), "acc", "acc") is None


def test_duplicate_records_a_key_per_handle_and_value_and_asks_the_context() -> None:
    seen: list[str] = []

    def ask(key: str) -> bool:  # the first key asked is new, the second one was seen
        seen.append(key)
        return len(seen) > 1

    context = SieveContext(seen=ask)
    raw = b"Message-ID: <a@b>\r\nX-Id: 7\r\n\r\nx\r\n"
    script = (
        'require ["duplicate", "fileinto"];\r\n'
        'if duplicate { fileinto "one"; }\r\n'
        'if duplicate :header "x-id" :handle "h" :seconds 999999999 :last { fileinto "two"; }\r\n'
        'if duplicate :header "x-none" { fileinto "never"; }\r\n'
    )
    outcome = run_with(script, raw, context)
    assert filed(outcome) == ["two"]
    assert [(seconds, last) for _key, seconds, last in outcome.duplicates] == [
        (12 * 3600, False),
        (7 * 86400, True),
    ]
    assert len({key for key, _s, _l in outcome.duplicates}) == 2


def includes(scripts: dict[str, str]) -> SieveContext:
    compiled = {name: check(parse(text)) for name, text in scripts.items()}
    return SieveContext(include=lambda name, is_global: compiled.get(("g:" if is_global else "") + name))


def test_include_runs_the_script_in_the_same_result_and_return_ends_only_it() -> None:
    context = includes(
        {
            "a": 'require ["fileinto", "include"]; fileinto "A"; return; fileinto "never";',
            "g:b": 'require "fileinto"; fileinto "B";',
            "stopper": "stop;",
        }
    )
    script = 'require ["include", "fileinto"]; include "a"; include :global "b"; fileinto "C";'
    assert filed(run_with(script, context=context)) == ["A", "B", "C"]
    stopped = 'require ["include", "fileinto"]; include "stopper"; fileinto "never";'
    assert filed(run_with(stopped, context=context)) == []  # stop in an included script ends everything
    assert run_with('require "include"; include :optional "missing";', context=context).implicit_keep
    with pytest.raises(SieveRuntimeError, match="does not exist"):
        run_with('require "include"; include "missing";', context=context)


def test_an_include_loop_is_a_runtime_error_not_a_recursion_error() -> None:
    context = includes({"self": 'require "include"; include "self";'})
    with pytest.raises(SieveRuntimeError, match="too many included scripts"):
        run_with('require "include"; include "self";', context=context)
    context = includes({"once": 'require "include"; include :once "once";'})
    assert run_with('require "include"; include "once";', context=context).implicit_keep


def test_global_variables_are_shared_and_others_are_not() -> None:
    context = includes(
        {
            "set": 'require ["include", "variables"]; global "g"; set "g" "from-include"; set "l" "local";',
        }
    )
    script = (
        'require ["include", "variables", "fileinto"];\r\n'
        'global "g"; set "l" "mine";\r\n'
        'include "set";\r\n'
        'fileinto "${g}/${l}/${global.g}";\r\n'
    )
    assert filed(run_with(script, context=context)) == ["from-include/mine/from-include"]


def test_enotify_tests_actions_and_encodeurl() -> None:
    script = (
        'require ["enotify", "variables", "fileinto"];\r\n'
        'if valid_notify_method "mailto:a@example.org" { fileinto "valid"; }\r\n'
        'if valid_notify_method ["mailto:a@example.org", "xmpp:b@example.org"] { fileinto "never"; }\r\n'
        'if notify_method_capability "mailto:a@example.org" "Online" "maybe" { fileinto "maybe"; }\r\n'
        'set :encodeurl "s" "a b&c";\r\n'
        'notify :importance "1" :message "hi" "mailto:a@example.org?subject=${s}";\r\n'
    )
    found = run_with(script)
    assert filed(found) == ["valid", "maybe"]
    notes = [a for a in found.actions if isinstance(a, Notify)]
    assert notes == [Notify("mailto:a@example.org?subject=a%20b%26c", None, "1", (), "hi")]
    with pytest.raises(SieveRuntimeError, match="cannot be used"):
        run_with('require "enotify"; notify "xmpp:a@example.org";')
