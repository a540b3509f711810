"""The webmail's search box parser (postoffice.web.query): what each form means, and that no input makes it
fail or grow without bound (property tests)."""

from __future__ import annotations

import datetime

from hypothesis import given
from hypothesis import strategies as st

from postoffice.store import Address, And, Date, HasFlag, Not, Or, Text
from postoffice.web.query import MAX_TERMS, parse_query


def test_each_form() -> None:
    q = parse_query('from:ada subject:"lunch plans" is:unread -spam 会议')
    assert q.criteria == And(
        (
            Text(("header", "from"), "ada"),
            Text(("header", "subject"), "lunch plans"),
            HasFlag("\\Seen", False),
            Not(Text("text", "spam")),
            Text("text", "会议"),
        )
    )
    assert not q.all_folders
    q = parse_query("to:bob is:flagged before:2024-01-02 after:2023-12-01 has:attachment in:all")
    assert q.criteria == And(
        (
            Or(Text(("header", "to"), "bob"), Text(("header", "cc"), "bob")),
            HasFlag("\\Flagged", True),
            Date("internal", "before", datetime.date(2024, 1, 2)),
            Date("internal", "since", datetime.date(2023, 12, 1)),
        )
    )
    assert q.all_folders
    assert q.has_attachment is True
    assert parse_query("-has:attachment").has_attachment is False
    assert parse_query("before:yesterday").criteria == And((Text("text", "before:yesterday"),))
    assert parse_query("").criteria == And(())


def test_a_whole_address_is_searched_exactly_and_anything_else_as_text() -> None:
    assert parse_query("from:Ada@Example.org").criteria == And((Address(("from",), "Ada@Example.org"),))
    assert parse_query("to:<bob@example.org>").criteria == And((Address(("to", "cc"), "bob@example.org"),))
    assert parse_query("-cc:carol@example.org").criteria == And((Not(Address(("cc",), "carol@example.org")),))
    assert parse_query("from:ada@localhost").criteria == And((Text(("header", "from"), "ada@localhost"),))
    assert parse_query("from:@example.org").criteria == And((Text(("header", "from"), "@example.org"),))
    assert parse_query("from:example.org").criteria == And((Text(("header", "from"), "example.org"),))
    assert parse_query('"unterminated phrase').criteria == And((Text("text", "unterminated phrase"),))


@given(st.text(max_size=2000))
def test_any_text_parses_to_bounded_criteria(text: str) -> None:
    query = parse_query(text)
    assert isinstance(query.criteria, And)
    assert len(query.criteria.terms) <= MAX_TERMS
    for term in query.criteria.terms:
        inner = term.criterion if isinstance(term, Not) else term
        if isinstance(inner, Text):
            assert inner.needle
            assert "\x00" not in inner.needle
