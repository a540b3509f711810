"""Contract: `MailStore.search` (RFC 9051 6.4.4, matching rules in `postoffice.store.criteria`): every
criterion, exact NOT/OR, escaping, case folding, text beyond the parser's search-text cap, and random
criteria trees against a brute-force oracle that decodes every message again (`search_corpus`)."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, example, given, settings

import postoffice.message.parser as mime_parser
from postoffice.store import (
    Address,
    All,
    And,
    Criteria,
    Date,
    HasFlag,
    MailStore,
    Not,
    NotFound,
    Or,
    Size,
    Text,
    UidIn,
)
from tests.store.contract.harness import BACKEND_NAMES, Backend, covers
from tests.store.contract.search_corpus import (
    CORPUS,
    GRUSS,
    SMALL_SEARCH_TEXT,
    Mailbox,
    criteria_trees,
)
from tests.support.bounds import CALL_BOUND, bounded

S = MailStore


@pytest.fixture(scope="module", params=BACKEND_NAMES)
def box(request: pytest.FixtureRequest, make_backend: Callable[[str], Backend]) -> Iterator[Mailbox]:
    """The corpus in one mailbox of a store of each backend, delivered with a small cap on the search text
    so that every longer text is cut in the index and found only from the message bytes."""
    mailbox = Mailbox(make_backend(request.param).open())
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mime_parser, "MAX_SEARCH_TEXT", SMALL_SEARCH_TEXT)
        mailbox.run(mailbox.fill())
    try:
        yield mailbox
    finally:
        mailbox.run(mailbox.store.close())


def check(box: Mailbox, c: Criteria) -> list[int]:
    got = box.search(c)
    assert got == box.expected(c), c
    return got


@covers(S.search)
def test_the_corpus_has_truncated_texts_so_the_fallback_is_exercised(box: Mailbox) -> None:
    async def truncated() -> int:
        messages = await box.store.list_messages(box.mailbox_id)
        parsed = await box.store.get_parsed_many([m.content_id for m in messages])
        return sum(p.search_truncated for p in parsed.values())

    assert box.run(truncated()) >= 3  # "big", "long text", "long multipart"


@covers(S.search)
def test_system_flags_and_keywords(box: Mailbox) -> None:
    assert check(box, HasFlag("\\Seen")) == [
        box.uid_of(s) for s in ("Quarterly report", "multipart", "kelvin", "latin")
    ]
    assert check(box, HasFlag("\\SEEN")) == check(box, HasFlag("\\Seen"))
    assert len(check(box, HasFlag("\\Seen", False))) == len(CORPUS) - 4
    # keywords compare exactly, as STORE stores them
    assert check(box, HasFlag("Work")) == [box.uid_of(s) for s in (GRUSS, "Mike's kayak")]
    assert check(box, HasFlag("work")) == [box.uid_of("custom"), box.uid_of("Mike's kayak")]
    assert check(box, HasFlag("$Label1")) == [box.uid_of("multipart"), box.uid_of("long text")]
    assert check(box, HasFlag("\\Unknown")) == []
    assert len(check(box, HasFlag("\\Unknown", False))) == len(CORPUS)
    with pytest.raises(ValueError, match=r"\\Recent is session state"):
        box.search(HasFlag("\\Recent"))


@covers(S.search)
def test_internal_dates_compare_the_utc_calendar_date(box: Mailbox) -> None:
    on = check(box, Date("internal", "on", datetime.date(2023, 1, 3)))
    assert on == [box.uid_of(GRUSS)]  # 23:59:59 UTC
    assert check(box, Date("internal", "before", datetime.date(2023, 1, 1))) == [box.uid_of("kelvin")]
    since = check(box, Date("internal", "since", datetime.date(2023, 2, 1)))
    assert since == [box.uid_of("percent"), box.uid_of("no percent"), box.uid_of("no date")]


@covers(S.search)
def test_sent_dates_use_the_header_zone_and_a_message_without_date_matches_only_under_not(
    box: Mailbox,
) -> None:
    # 3 Jan 23:30 -0800 is 4 Jan in UTC; 4 Jan 00:30 +1400 is 3 Jan in UTC: the header's own zone counts
    on3 = check(box, Date("sent", "on", datetime.date(2023, 1, 3)))
    assert box.uid_of(GRUSS) in on3
    assert box.uid_of("multipart") not in on3
    assert box.uid_of("multipart") in check(box, Date("sent", "on", datetime.date(2023, 1, 4)))
    no_date = box.uid_of("no date")
    for op in ("before", "on", "since"):
        crit = Date("sent", op, datetime.date(2023, 1, 4))
        assert no_date not in check(box, crit)
        assert no_date in check(box, Not(crit))


@covers(S.search)
def test_size_larger_and_smaller(box: Mailbox) -> None:
    big = box.uid_of("big")
    assert big in check(box, Size("larger", 3000))
    assert big not in check(box, Size("smaller", 3000))
    size = next(m.size for m in box.messages if m.uid == big)
    assert big not in check(box, Size("larger", size))
    assert big in check(box, Size("smaller", size + 1))


@covers(S.search)
def test_uid_ranges_singles_wide_ranges_and_out_of_range(box: Mailbox) -> None:
    uids = [m.uid for m in box.messages]
    assert check(box, UidIn(((1, 4294967295),))) == uids
    assert check(box, UidIn(((2, 2), (5, 7), (1000, 2000)))) == [2, 5, 6, 7]
    assert check(box, UidIn.of(uids[::2])) == uids[::2]
    assert check(box, UidIn(())) == []
    assert check(box, Not(UidIn(((3, 4294967295),)))) == [1, 2]


@covers(S.search)
def test_header_fields_match_only_their_own_field(box: Mailbox) -> None:
    assert check(box, Text(("header", "from"), "Jörg")) == [box.uid_of(GRUSS)]
    assert check(box, Text(("header", "from"), "example.de")) == check(
        box, Text(("header", "FROM"), "EXAMPLE.DE")
    )
    assert check(box, Text(("header", "cc"), "carol")) == [box.uid_of(GRUSS)]
    assert check(box, Text(("header", "bcc"), "secret")) == [box.uid_of("multipart")]
    # "demo" is in To of most messages, never in Subject
    assert check(box, Text(("header", "subject"), "demo")) == []
    assert check(box, Text(("header", "subject"), "grüsse")) == []  # simple folding: ß is not ss
    assert check(box, Text(("header", "subject"), "GRÜßE")) == [box.uid_of(GRUSS)]
    assert check(box, Text(("header", "X-Custom"), "priority-42")) == [box.uid_of("custom")]
    # HEADER name "" means: the field is present (RFC 9051 6.4.4), also with an empty value
    assert check(box, Text(("header", "x-custom"), "")) == [box.uid_of("custom"), box.uid_of("empty custom")]
    assert check(box, Text(("header", "date"), "")) == [
        m.uid for m in box.messages if m.sent_date or any(n == "Date" for n, _ in m.fields)
    ]
    assert check(box, Text(("header", "X-Missing"), "")) == []


@covers(S.search)
def test_address_fields_match_without_comments_and_folding(box: Mailbox) -> None:
    """SEARCH FROM user-from@domain.org finds "From: <user-from (comment)@ (comment) domain.org>"; the
    header text still matches as written; other fields are not read as addresses."""
    uid = box.uid_of("obfuscated")
    for field, needle in [
        ("from", "user-from@domain.org"),
        ("FROM", "<USER-FROM@DOMAIN.ORG>"),
        ("from", "(comment)@ (comment) dom"),  # the header text as written
        ("to", "some.one@example.net"),
        ("to", '"Some  One" <some.one@example.net>'),
        ("to", "carol@example.com"),
        ("cc", "Folded <folded-user@example.org>"),
        ("cc", "folded-user@example.org"),
        ("bcc", "a@b.example"),
        ("bcc", "Jörg <j@c.example>"),
    ]:
        assert check(box, Text(("header", field), needle)) == [uid], (field, needle)
    assert check(box, Text(("header", "to"), "user-from@domain.org")) == []
    assert check(box, Text(("header", "x-addr"), "x@y.example")) == []  # not an address field
    assert check(box, Text("headers", "user-from@domain.org")) == []  # nor the whole header text
    assert check(box, Text(("header", "from"), "user-fromdomain")) == []


@covers(S.search)
def test_whole_addresses_match_exactly_in_the_fields_named(box: Mailbox) -> None:
    """`Address`: the envelope's From/To/Cc/Bcc hold the address (case-insensitive, IDNA domain); no
    substring matches, no other field, no other account's copy; the same in a search for the newest."""
    uid = box.uid_of("obfuscated")
    for fields, address in [
        (("from",), "user-from@domain.org"),
        (("from",), "USER-FROM@Domain.Org"),
        (("to",), "some.one@example.net"),
        (("to", "cc"), "folded-user@example.org"),
        (("bcc",), "a@b.example"),
    ]:
        assert check(box, Address(fields, address)) == [uid], (fields, address)
    assert check(box, Address(("to",), "user-from@domain.org")) == []
    assert check(box, Address(("from",), "ser-from@domain.org")) == []  # never a substring
    assert check(box, Address(("from",), "user-from@domain.or")) == []
    alice = check(box, Address(("from",), "alice@example.org"))
    assert alice
    assert check(box, Not(Address(("from",), "alice@example.org"))) == box.expected(
        Not(Address(("from",), "alice@example.org"))
    )
    assert check(box, And((Address(("from",), "alice@example.org"), HasFlag("\\Seen")))) == box.expected(
        And((Address(("from",), "alice@example.org"), HasFlag("\\Seen")))
    )
    newest = box.run(box.store.search(box.mailbox_id, Address(("from",), "alice@example.org"), newest=1))
    assert newest == alice[-1:]
    with pytest.raises(ValueError, match="fields"):
        Address(("subject",), "a@b.example")


@covers(S.search)
def test_percent_and_underscore_in_needles_are_literal(box: Mailbox) -> None:
    assert check(box, Text("body", "100% sure_thing")) == [box.uid_of("percent")]
    assert check(box, Text("body", "100%")) == [box.uid_of("percent")]
    assert check(box, Text("body", "e_t")) == [box.uid_of("percent")]
    assert check(box, Text("body", "%")) == [box.uid_of("percent")]
    assert check(box, Text("body", "_")) == [box.uid_of("percent")]


@covers(S.search)
def test_case_insensitive_including_non_ascii(box: Mailbox) -> None:
    multipart = box.uid_of("multipart")
    assert check(box, Text("body", "grüsse")) == [multipart]
    # final sigma folds like any sigma
    assert check(box, Text("body", "σίσυφοσ")) == [multipart, box.uid_of("long multipart")]
    assert check(box, Text("body", "ΣΊΣΥΦΟΣ,")) == [multipart]
    assert check(box, Text("body", "STRASSE")) == []
    assert check(box, Text("body", "STRAẞE")) == [multipart]  # capital sharp s folds to ß
    assert check(box, Text("text", "CAFÉ CRÈME")) == [box.uid_of("latin")]
    # K KELVIN SIGN and long s fold to ASCII k and s
    assert check(box, Text("body", "kelvin")) == [box.uid_of("kelvin")]
    assert check(box, Text("body", "song s")) == [box.uid_of("kelvin")]
    assert check(box, Text("body", "NUMBERS ARE")) == [box.uid_of("Quarterly report")]


@covers(S.search)
def test_short_needles_scan_and_are_still_exact(box: Mailbox) -> None:
    for needle in ("a", "Ab", "ü", "Σ", "k", "s ", "1"):
        for field in ("body", "text", "headers", ("header", "subject")):
            check(box, Text(field, needle))


@covers(S.search)
def test_nul_in_text_does_not_hide_what_follows(box: Mailbox) -> None:
    assert check(box, Text("body", "after nul")) == [box.uid_of("nul")]
    assert check(box, Text("body", "\ufffdafter")) == [box.uid_of("nul")]


@covers(S.search)
def test_text_beyond_the_search_text_cap_is_found_from_the_message_bytes(box: Mailbox) -> None:
    long_text = box.uid_of("long text")
    assert check(box, Text("body", "needle-at-the-end")) == [long_text]
    assert check(box, Text("text", "ÜNÏCÖDÉ-TAIL")) == [long_text]
    assert check(box, Text("body", "zzzz")) == [box.uid_of("big")]
    # across the join of two parts, and inside a base64 part past the cap
    assert check(box, Text("body", "first part \nsecond")) == [box.uid_of("long multipart")]
    assert check(box, Text("body", "σίσυφος-ending")) == [box.uid_of("long multipart")]
    assert check(box, Not(Text("body", "needle-at-the-end"))) == [
        m.uid for m in box.messages if m.uid != long_text
    ]


@covers(S.search)
def test_embedded_message_text_is_body_text(box: Mailbox) -> None:
    fwd = box.uid_of("Fwd: inner")
    assert check(box, Text("body", "embedded body words")) == [fwd]
    assert check(box, Text(("header", "subject"), "inner subject")) == []  # top-level header only


@covers(S.search)
def test_not_or_and_nesting_is_exact(box: Mailbox) -> None:
    seen, flagged = HasFlag("\\Seen"), HasFlag("\\Flagged")
    subject = Text(("header", "subject"), "kelvin")
    check(box, Or(seen, Not(flagged)))
    check(box, Not(Or(seen, subject)))
    check(box, And((Not(seen), Or(subject, Date("sent", "before", datetime.date(2023, 1, 3))))))
    check(box, Not(Not(Or(Text("body", "zz"), Not(And(()))))))
    check(box, And((All(),) * 1500))  # balanced SQL: no "expression tree too large"


@covers(S.search)
def test_empty_needles_match_everything_but_header_presence(box: Mailbox) -> None:
    assert check(box, Text("body", "")) == [m.uid for m in box.messages]
    assert check(box, Text("text", "")) == [m.uid for m in box.messages]


@covers(S.search)
def test_unknown_mailbox_is_not_found(box: Mailbox) -> None:
    with pytest.raises(NotFound):
        box.run(box.store.search(999999, All()))


@covers(S.search)
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(criteria_trees)
@example(c=Text("body", "needle-at-the-END"))
@example(c=Not(Text("text", "Σίσυφος-ENDING")))
def test_random_criteria_trees_give_what_a_brute_force_evaluator_gives(box: Mailbox, c: Criteria) -> None:
    assert box.search(c) == box.expected(c)


@covers(S.search)
def test_many_uid_terms_are_merged_into_one(box: Mailbox) -> None:
    """And/Or of thousands of UID sets (what a long SEARCH line of sequence sets gives) costs one term."""
    many_and = And(tuple(UidIn(((1, 30 - i % 7),)) for i in range(10_000)))
    assert bounded(CALL_BOUND, box.search, many_and) == box.expected(many_and)
    chain: Criteria = UidIn(((1, 1),))
    for i in range(2, 40):
        chain = Or(UidIn(((i, i),)), chain)
    assert bounded(CALL_BOUND, box.search, chain) == box.expected(chain)
    assert check(box, And((UidIn(((1, 5),)), UidIn(((7, 9),)), HasFlag("\\Seen")))) == []


@covers(S.search)
def test_newest_gives_the_highest_matching_uids_ascending(box: Mailbox) -> None:
    for criteria in (All(), HasFlag("\\Seen"), Text("text", "e"), Not(HasFlag("\\Seen"))):
        everything = check(box, criteria)
        for n in (0, 1, 3, len(everything), len(everything) + 5):
            newest = box.run(box.store.search(box.mailbox_id, criteria, newest=n))
            assert newest == (everything[-n:] if n else []), (criteria, n)
