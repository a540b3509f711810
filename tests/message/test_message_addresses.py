"""ENVELOPE address lists (RFC 5322 3.4 / 4.4 -> RFC 3501 7.4.2)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.message import addresses
from postoffice.message.addresses import TokenBudget, address_text, parse_address_list
from tests.support.bounds import CALL_BOUND, bounded

END = [None, None, None, None]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("alice@example.com", [[None, None, "alice", "example.com"]]),
        ("Alice Example <alice@example.com>", [["Alice Example", None, "alice", "example.com"]]),
        ('"Example, Alice" <alice@example.com>', [["Example, Alice", None, "alice", "example.com"]]),
        ("John Q. Public <jqp@example.com>", [["John Q. Public", None, "jqp", "example.com"]]),
        # encoded words stay raw in the envelope
        ("=?utf-8?q?J=C3=B6rg?= <j@example.com>", [["=?utf-8?q?J=C3=B6rg?=", None, "j", "example.com"]]),
        # a comment names an address that has no display name
        ("bob@example.com (Bob (the) Builder)", [["Bob (the) Builder", None, "bob", "example.com"]]),
        ("Bob <bob@example.com> (ignored)", [["Bob", None, "bob", "example.com"]]),
        # quoted local parts keep their quotes; the split is at the last "@"
        ('"john doe"@example.com', [[None, None, '"john doe"', "example.com"]]),
        ('"a@b"@example.com', [[None, None, '"a@b"', "example.com"]]),
        ("x@[192.0.2.1]", [[None, None, "x", "[192.0.2.1]"]]),
        # obsolete source route (RFC 5322 4.4)
        ("<@a.example,@b.example:c@d.example>", [[None, "@a.example,@b.example", "c", "d.example"]]),
        # no domain: host is "" (None would mean group syntax)
        ("postmaster", [[None, None, "postmaster", ""]]),
        ("Name <>", [["Name", None, "", ""]]),
        # lenient repairs
        ("A <a@x.example> B <b@x.example>", [["A", None, "a", "x.example"], ["B", None, "b", "x.example"]]),
        ("John Doe john@x.example", [["John Doe", None, "john", "x.example"]]),
        ("a@x.example;b@x.example", [[None, None, "a", "x.example"], [None, None, "b", "x.example"]]),
        (" , ,", None),
        ("", None),
        ("<a@x.example", [[None, None, "a", "x.example"]]),
        # an unterminated quoted string runs to the end: one word, no "@" outside it
        ('"unterminated <a@x.example>', [[None, None, '"unterminated <a@x.example>', ""]]),
    ],
)
def test_mailboxes(value: str, expected: list[list[str | None]] | None) -> None:
    assert parse_address_list(value) == expected


def test_groups_including_empty_and_unterminated_ones() -> None:
    value = "undisclosed-recipients:;, Team: a@x.example, B <b@x.example>; c@x.example, Open: d@x.example"
    assert parse_address_list(value) == [
        [None, None, "undisclosed-recipients", None],
        END,
        [None, None, "Team", None],
        [None, None, "a", "x.example"],
        ["B", None, "b", "x.example"],
        END,
        [None, None, "c", "x.example"],
        [None, None, "Open", None],
        [None, None, "d", "x.example"],
        END,
    ]


def test_a_group_inside_a_group_closes_the_first() -> None:
    assert parse_address_list("A: B: b@x.example;") == [
        [None, None, "A", None],
        END,
        [None, None, "B", None],
        [None, None, "b", "x.example"],
        END,
    ]


def test_limit_keeps_group_markers_balanced() -> None:
    value = "G: " + ", ".join(f"u{i}@x.example" for i in range(10)) + ";"
    result = parse_address_list(value, limit=5)
    assert result == [
        [None, None, "G", None],
        [None, None, "u0", "x.example"],
        [None, None, "u1", "x.example"],
        [None, None, "u2", "x.example"],
        END,
    ]
    assert parse_address_list("a@x.example", limit=0) is None


# -- address_text: the field as SEARCH reads its addresses (issue 9 item 13) -------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<user-from (comment)@ (comment) domain.org>", "<user-from@domain.org>"),
        ("Folded <folded-user @example.org>", "Folded <folded-user@example.org>"),
        ("(lead) carol(c) @ (d) example.com (trail)", "carol@example.com"),
        ("team: a (x) @ b.example, c@d.example;", "team: a@b.example, c@d.example;"),
        ('"Some  One" <some . one @ example (x) . net>', '"Some  One" <some.one@example.net>'),
        ("John (Jr.) Doe <j@x>", "John Doe <j@x>"),
        ("a(c)b@x", "a b@x"),  # words never join: a piece without space, "@" or "." stays as written
        ("(nested (comment) here) x@y", "x@y"),
        ('"unterminated', '"unterminated'),
        ("", ""),
    ],
)
def test_address_text_drops_comments_and_the_cfws_around_at_and_dot(value: str, expected: str) -> None:
    assert address_text(value) == expected


_TOKENS = st.sampled_from(
    [
        "a",
        "bc",
        "Ü",
        "@",
        ".",
        " ",
        "\t",
        "(c)",
        "(",
        ")",
        "\\",
        '"',
        '"q w"',
        "[1.2]",
        "<",
        ">",
        ",",
        ":",
        ";",
    ]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_TOKENS, max_size=20).map("".join))
def test_address_text_pieces_are_in_the_value(value: str) -> None:
    """What the search index relies on: every piece of the result between spaces, "@" and "." is a
    substring of the value, in order."""
    text = bounded(CALL_BOUND, address_text, value)
    position = 0
    for piece in re.split(r"[ @.]+", text):
        found = value.find(piece, position)
        assert found >= 0, (value, text, piece)
        position = found + len(piece)


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(["(", "((((a)", "a (b) @ (c) d . ", '"\\', "\\(", "<a@b>, ", "x" * 999 + " "]))
def test_address_text_is_linear_on_long_fields(unit: str) -> None:
    bounded(CALL_BOUND, address_text, unit * (250_000 // len(unit)))


_OLD_COMMENT_PIECE = re.compile(r"[^()\\]+|\\.?|[()]", re.S)


def reference_comment(value: str, i: int) -> tuple[str, int]:
    """A comment one parenthesis at a time (the implementation before runs were read as one step)."""
    depth = 0
    pieces: list[str] = []
    for m in _OLD_COMMENT_PIECE.finditer(value, i):
        piece = m.group()
        if piece == "(":
            depth += 1
            if depth == 1:
                continue
        elif piece == ")":
            depth -= 1
            if depth == 0:
                return "".join(pieces).strip(), m.end()
        elif piece[0] == "\\":
            piece = piece[1:]
        pieces.append(piece)
    return "".join(pieces).strip(), len(value)


@settings(max_examples=1000, deadline=None)
@given(st.text(alphabet="()\\a ", max_size=20).map(lambda text: "(" + text))
def test_comments_agree_with_the_reference(value: str) -> None:
    assert addresses._comment(value, 0, None) == reference_comment(value, 0)


def test_a_token_budget_bounds_the_work_of_all_fields_together() -> None:
    budget = TokenBudget(10)
    assert parse_address_list("a@b, c@d", budget=budget) == [[None, None, "a", "b"], [None, None, "c", "d"]]
    # 8 tokens used: what is left reads "e@f" (3 tokens) only up to its "@"; nothing after that
    assert parse_address_list("e@f", budget=budget) == [[None, None, "e", ""]]
    assert parse_address_list("g@h", budget=budget) is None
    value = "(" * 200_000 + "x" + ")" * 200_000 + " " + "a (b) @ (c) d . " * 20_000
    assert bounded(CALL_BOUND, parse_address_list, value, 5000, budget=TokenBudget(10_240)) is not None
