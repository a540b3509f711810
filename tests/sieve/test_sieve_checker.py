"""The check of parsed Sieve scripts (RFC 5228 sections 2.7-5, with fileinto, envelope, reject/ereject, copy
and i;ascii-numeric): valid scripts give their nodes with tags gathered by name, invalid ones an error at
the right place."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.sieve.checker import Checked, SieveCheckError, check
from postoffice.sieve.grammar import SieveSyntaxError, parse
from tests.sieve.helpers import assert_refused


def checked(script: str) -> tuple[Checked, ...]:
    return check(parse(script))


def test_a_usual_script_is_checked_with_its_tags_by_name() -> None:
    nodes = checked(
        'require ["fileinto", "copy", "comparator-i;ascii-numeric"];\r\n'
        'if address :domain :is ["From", "Sender"] "example.org" { fileinto :copy "Friends"; }\r\n'
        'elsif header :comparator "i;ascii-numeric" :is "X-Level" "5" { discard; }\r\n'
        'elsif allof (size :over 1M, not exists "List-Id", true) { redirect "x@example.org"; stop; }\r\n'
        "else { keep; }\r\n"
    )
    assert [n.name for n in nodes] == ["require", "if", "elsif", "elsif", "else"]
    address = nodes[1].tests[0]
    assert address == Checked("address", {"domain": None, "is": None}, (("From", "Sender"), ("example.org",)))
    assert nodes[1].block == (Checked("fileinto", {"copy": None}, (("Friends",),)),)
    header = nodes[2].tests[0]
    assert header.tags == {"comparator": ("i;ascii-numeric",), "is": None}
    allof = nodes[3].tests[0]
    assert [t.name for t in allof.tests] == ["size", "not", "true"]
    assert allof.tests[0] == Checked("size", {"over": None}, (1024 * 1024,))
    assert nodes[4].block == (Checked("keep", {}, ()),)


@pytest.mark.parametrize(
    ("script", "line", "column", "words"),
    [
        ('fileinto "x";', 1, 1, 'needs require "fileinto"'),
        ('require "fileinto";\r\nif true { require "copy"; }', 2, 11, "must come before"),
        ('keep;\r\nrequire "fileinto";', 2, 1, "must come before"),
        ('require "nonsense";', 1, 9, 'extension "nonsense" is not supported'),
        ("else { keep; }", 1, 1, 'must follow "if"'),
        ("if true { keep; } keep; else { keep; }", 1, 25, 'must follow "if"'),
        ("frobnicate;", 1, 1, 'unknown command "frobnicate"'),
        ("if frob { }", 1, 4, 'unknown test "frob"'),
        ("if true;", 1, 1, "needs a block"),
        ("keep { }", 1, 1, "takes no block"),
        ("if (true, false) { }", 1, 1, "needs one test"),
        ("if allof true { }", 1, 4, "list of tests in parentheses"),
        ("keep true;", 1, 6, "takes no test"),
        ('if header :is :contains "a" "b" { }', 1, 15, 'cannot go with ":is"'),
        ('if header :is :is "a" "b" { }', 1, 15, "given twice"),
        ('if header :over "a" "b" { }', 1, 11, 'no tag ":over"'),
        ('if header "a" :is "b" { }', 1, 15, "before the positional"),
        ('if header "a" { }', 1, 4, "needs a string list as its argument 2"),
        ('if header "a" "b" "c" { }', 1, 19, "takes 2 positional"),
        ("if size 10 { }", 1, 4, 'exactly one of ":over" and ":under"'),
        ("if size :over :under 10 { }", 1, 4, 'exactly one of ":over" and ":under"'),
        ('if size :over "10" { }', 1, 15, "needs a number"),
        ('redirect ["a@x", "b@x"];', 1, 10, "a single string"),
        ("redirect 5;", 1, 10, "needs a string"),
        (
            'if header :comparator "i;ascii-numeric" "a" "b" { }',
            1,
            23,
            'needs require "comparator-i;ascii-numeric"',
        ),
        ('if header :comparator "a" "b" "c" { }', 1, 23, 'needs require "comparator-a"'),
        ("if header :comparator { }", 1, 11, "needs a string after it"),
        ('redirect :copy "a@x";', 1, 10, 'needs require "copy"'),
        ('if envelope "to" "a@x" { }', 1, 4, 'needs require "envelope"'),
        ('vacation "x";', 1, 1, 'needs require "vacation"'),
        ('require "vacation"; vacation :seconds 5 "x";', 1, 30, 'needs require "vacation-seconds"'),
        (
            'require ["vacation", "vacation-seconds"]; vacation :days 1 :seconds 5 "x";',
            1,
            60,
            'go with ":days"',
        ),
        ('require "vacation"; vacation :days "1" "x";', 1, 36, "needs a number"),
        ('require "vacation"; vacation :addresses 5 "x";', 1, 41, "needs a string list"),
        ('require "relational"; if header :value "xx" "a" "b" { }', 1, 40, "not a relational operator"),
        ('if header :value "gt" "a" "b" { }', 1, 11, 'needs require "relational"'),
        ('require "date"; if date "date" "fortnight" "x" { }', 1, 20, "not a date part"),
        ('require "variables"; set "1x" "v";', 1, 22, "not a variable name"),
        ('require "variables"; set "a.b" "v";', 1, 22, "not a variable name"),
        ('require "variables"; set :lower :upper "a" "v";', 1, 33, 'cannot go with ":lower"'),
        ('require "index"; if header :last "a" "b" { }', 1, 21, '":last" needs ":index"'),
        ('require "index"; if header :index 0 "a" "b" { }', 1, 21, "counts from 1"),
        (
            'require "comparator-i;ascii-numeric";\r\n'
            'if header :contains :comparator "i;ascii-numeric" "a" "b" { }',
            2,
            4,
            "no substring match",
        ),
        ('require "imap4flags"; setflag "var" "\\\\Seen";', 1, 31, 'needs require "variables"'),
        ('if address :user "to" "a" { }', 1, 12, 'needs require "subaddress"'),
        ('require "fileinto"; fileinto :create "x";', 1, 30, 'needs require "mailbox"'),
        (
            'require ["fileinto", "special-use", "mailboxid"]; fileinto :specialuse "J" :mailboxid "M1" "x";',
            1,
            76,
            "cannot go with",
        ),
        ('require "body"; if body :raw :text "x" { }', 1, 30, 'cannot go with ":raw"'),
        ('if string "a" "b" { }', 1, 4, 'needs require "variables"'),
        ('error "x";', 1, 1, 'needs require "ihave"'),
        (
            'require "ihave"; if ihave "fileinto" { fileinto "x"; } frobnicate;',
            1,
            56,
            'unknown command "frobnicate"',
        ),
    ],
)
def test_invalid_scripts_say_what_and_where(script: str, line: int, column: int, words: str) -> None:
    assert_refused(checked, SieveCheckError, script, (line, column), words)


def test_built_in_comparators_need_no_require_and_capabilities_are_case_insensitive() -> None:
    assert checked('if header :comparator "i;octet" "a" "b" { }')[0].tests[0].tags["comparator"] == (
        "i;octet",
    )
    assert checked('if address :comparator "i;ascii-casemap" :all "a" "b" { }')
    assert checked('require "FileInto"; fileinto "x";')[1].name == "fileinto"
    assert checked('require ["envelope", "reject", "ereject"]; reject "no"; ereject "no";')


@settings(max_examples=300)
@given(
    st.lists(
        st.sampled_from(
            [
                'require "fileinto";',
                'require ["copy", "envelope"];',
                "if ",
                "elsif ",
                "else ",
                "{ ",
                "} ",
                "keep; ",
                "stop; ",
                'fileinto :copy "x"; ',
                'header :is "a" "b" ',
                "size :over 1k ",
                "anyof(true, false) ",
                "not ",
                ":contains ",
                '"s" ',
                "5 ",
                "; ",
                'envelope :domain "to" "x" ',
            ]
        ),
        max_size=14,
    ).map("".join)
)
def test_any_script_is_checked_or_refused_with_a_place(script: str) -> None:
    try:
        commands = parse(script)
    except SieveSyntaxError:
        return
    error: SieveCheckError | None = None
    try:
        check(commands)
    except SieveCheckError as exc:
        error = exc
    if error is not None:
        assert error.line >= 1
        assert error.column >= 1
