"""The SQLite compilation of SEARCH (`postoffice.store.search`): the SQL functions and LIKE patterns agree
with the matching rules, stay linear, and the 2 -> 3 migration backfills what search needs. (What SEARCH
must answer, for every backend, is tests/store/contract/test_search.py.)"""

from __future__ import annotations

import datetime
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.store import Date, Text, open_store
from postoffice.store.criteria import fold, header_value_matches
from postoffice.store.search import _sql_header_contains, address_patterns, header_fields
from postoffice.store.sqlite import SCHEMA_VERSION
from tests.store.contract.search_corpus import Mailbox
from tests.support.bounds import CALL_BOUND, bounded


# -- migration ---------------------------------------------------------------------------------------------
def test_a_version_2_store_is_migrated_and_backfilled(tmp_path: Path) -> None:
    path = tmp_path / "v2.sqlite3"
    mailbox = Mailbox(open_store(path))
    mailbox.run(mailbox.fill())
    mailbox.run(mailbox.store.close())
    fresh = sqlite3.connect(path)
    columns = fresh.execute("PRAGMA table_info(contents)").fetchall()
    indexes = fresh.execute("PRAGMA index_list(contents)").fetchall()
    # Turn it into what version 2 wrote: the same rows without the version 3 columns, index and NUL fix.
    fresh.executescript(
        """
        DROP INDEX contents_search_truncated;
        ALTER TABLE contents DROP COLUMN sent_date;
        ALTER TABLE contents DROP COLUMN search_truncated;
        UPDATE meta SET value = 2 WHERE key = 'schema_version';
        """
    )
    for rowid, body in fresh.execute(
        "SELECT rowid, body FROM content_search WHERE body LIKE '%before%'"
    ).fetchall():
        fresh.execute(
            "UPDATE content_search SET body = ? WHERE rowid = ?", (body.replace("\ufffd", "\x00"), rowid)
        )
    fresh.commit()
    assert (
        fresh.execute("SELECT count(*) FROM content_search WHERE body LIKE '%after nul%'").fetchone()[0] == 0
    )
    fresh.close()

    again = Mailbox(open_store(path))
    again.messages, again.mailbox_id = mailbox.messages, mailbox.mailbox_id
    try:
        assert again.search(Date("sent", "on", datetime.date(2023, 1, 3))) == again.expected(
            Date("sent", "on", datetime.date(2023, 1, 3))
        )
        assert again.search(Text("body", "after nul")) == [again.uid_of("nul")]
        assert again.search(Text("body", "embedded")) == [again.uid_of("Fwd: inner")]
    finally:
        again.run(again.store.close())
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA table_info(contents)").fetchall() == columns
    assert conn.execute("PRAGMA index_list(contents)").fetchall() == indexes
    conn.close()


_LINES = st.lists(
    st.one_of(
        st.builds(
            lambda name, value: f"{name}:{value}",
            st.sampled_from(["From", "from", "To", "Subject", "X-A", "FROM", "Fro", "From "]),
            st.text(st.sampled_from("ab Xx:@.\u212a"), max_size=8),
        ),
        st.text(st.sampled_from("ab x:@.\t "), max_size=8),  # continuations and junk
    ),
    max_size=8,
)


@given(
    lines=_LINES,
    name=st.sampled_from(["from", "to", "x-a", "fro", "from ", "fröm", ""]),
    needle=st.text(st.sampled_from("abx@.\u212a "), max_size=3),
)
def test_header_contains_agrees_with_parsing_every_field(lines: list[str], name: str, needle: str) -> None:
    """The SQL function parses only the named fields; the answer is that of `header_fields` over all."""
    headers = "\n".join(lines) + "\n"
    folded = fold(needle)
    expected = any(
        n.lower() == name and header_value_matches(name, v, folded) for n, v in header_fields(headers)
    )
    assert bounded(CALL_BOUND, _sql_header_contains, headers, name, folded) == int(expected)


@pytest.mark.parametrize("line", ["From: a@b", "From:", "from: a@b\n z", "X: y\n  z"])
def test_header_contains_is_linear_in_the_number_of_fields(line: str) -> None:
    """Every "From:" line copied the rest of the lines: 20,000 of them took 0.8 s, 40,000 more than 3 s, per
    message searched. "b@a" has its pieces in every field, so every field is looked at."""
    headers = (line + "\n") * (400_000 // (len(line) + 1))
    for needle in ("zzz", "b@a"):
        assert bounded(CALL_BOUND, _sql_header_contains, headers, "from", needle) == 0
        assert bounded(CALL_BOUND, _sql_header_contains, headers + f"From: {needle}\n", "from", needle) == 1
    assert sum(1 for _ in bounded(CALL_BOUND, header_fields, headers)) > 0


_ADDRESS_TOKENS = st.sampled_from(
    [
        "a",
        "bc",
        "user-x",
        "Ü",
        "K",
        "@",
        ".",
        " ",
        "  ",
        "(c)",
        "(a (b))",
        ",",
        "<",
        ">",
        ":",
        ";",
        '"q w"',
        "[1.2]",
        "%",
        "_",
    ]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_ADDRESS_TOKENS, max_size=12).map("".join), st.data())
def test_address_patterns_never_exclude_a_match(value: str, data: st.DataObject) -> None:
    """Every needle that a From value matches (as written, or as `address_text`) passes both LIKE patterns
    that the index and the scan use before the exact check: the patterns are supersets."""
    from postoffice.message.addresses import address_text

    sources = [value, address_text(value)]
    source = data.draw(st.sampled_from(sources))
    start = data.draw(st.integers(0, len(source)))
    needle = source[start : data.draw(st.integers(start, len(source)))]
    if not needle:
        return
    assert header_value_matches("from", value, fold(needle))
    candidates, full, _ = address_patterns(needle)
    conn = sqlite3.connect(":memory:")
    try:
        text = f"From: {value}\nTo: x\n".replace("\x00", "\ufffd")
        like = conn.execute("SELECT ? LIKE ?, ? LIKE ?", (text, candidates, text, "%from:" + full)).fetchone()
    finally:
        conn.close()
    assert like == (1, 1), (value, needle, candidates, full)


def test_newest_walks_the_newest_messages_first_and_falls_back_to_the_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`search(newest=N)`: the first N among the newest PROBE_MESSAGES messages when they hold N matches
    (a common word), else the index's plan over the whole mailbox (a rare word): the same answer."""
    import asyncio
    import io

    import postoffice.store.search as search_mod
    from postoffice.message import parse_message

    monkeypatch.setattr(search_mod, "PROBE_MESSAGES", 5)

    async def scenario() -> None:
        store = open_store(tmp_path / "mail.sqlite3")
        try:
            await store.add_domain("example.test")
            demo = await store.add_account("demo@example.test", "x")
            for n in range(30):
                words = "common" + (" rarity" if n in (2, 7) else "") + (" older" if n < 20 else "")
                raw = f"From: a@b.test\r\nSubject: m{n}\r\n\r\n{words} text\r\n".encode()
                await store.deliver(io.BytesIO(raw), parse_message(io.BytesIO(raw)), [demo.id])
            inbox = await store.get_mailbox(demo.id, "INBOX")
            assert inbox is not None
            for word, newest in (("common", 3), ("rarity", 5), ("older", 4), ("common", 40), ("nothing", 2)):
                everything = await store.search(inbox.id, Text("body", word))
                got = await store.search(inbox.id, Text("body", word), newest=newest)
                assert got == everything[-newest:], (word, newest)
        finally:
            await store.close()

    asyncio.run(scenario())


def test_a_version_13_store_gets_its_address_index(tmp_path: Path) -> None:
    from postoffice.store import Address

    path = tmp_path / "v13.sqlite3"
    mailbox = Mailbox(open_store(path))
    mailbox.run(mailbox.fill())
    criterion = Address(("from", "to", "cc", "bcc"), "carol@example.net")
    before = mailbox.search(criterion)
    assert before
    mailbox.run(mailbox.store.close())
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT count(*) FROM content_addresses").fetchone()[0]
    conn.executescript(
        """
        DROP TABLE content_addresses;
        UPDATE meta SET value = 13 WHERE key = 'schema_version';
        """
    )
    conn.commit()
    conn.close()
    again = Mailbox(open_store(path))
    again.messages, again.mailbox_id = mailbox.messages, mailbox.mailbox_id
    try:
        assert again.search(criterion) == before == again.expected(criterion)
    finally:
        again.run(again.store.close())
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM content_addresses").fetchone()[0] == rows
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == SCHEMA_VERSION
    conn.close()
