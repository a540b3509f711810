"""Keyword limits (docs/decisions/0043): STORE and APPEND of a keyword new to the mailbox that is longer than
`max_keyword_length`, or beyond `max_mailbox_keywords`, are NO [LIMIT] (RFC 5530) and change nothing;
PERMANENTFLAGS offers \\* only while new keywords may be created (RFC 9051 section 7.1); COPY and MOVE leave
out the keywords that do not fit; keywords a mailbox has already (data from before the limits) are never
refused. And the memory a large keyword list costs: no cache keeps a copy of every list it has seen."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from postoffice.imap import mailbox_view
from postoffice.imap.session import ImapSettings
from postoffice.store.sqlite import columns
from tests.imap.conftest import DEMO, _harness, message
from tests.imap.transcript import ImapHarness, Transcript

MAX_KEYWORDS = 4
MAX_LENGTH = 40
SYSTEM = "\\Seen \\Answered \\Flagged \\Deleted \\Draft"


@pytest.fixture
def imap_limited(tmp_path: Path) -> Iterator[ImapHarness]:
    settings = ImapSettings(
        hostname="localhost",
        spool_dir=tmp_path,
        max_mailbox_keywords=MAX_KEYWORDS,
        max_keyword_length=MAX_LENGTH,
    )
    yield from _harness(tmp_path, settings)


def _selected(server: ImapHarness, mailbox: str = "INBOX") -> tuple[Transcript, list[str]]:
    raw = server.connect()
    raw.login()
    reply = raw.command("s0", f"SELECT {mailbox}")
    assert reply[-1].startswith("s0 OK"), reply
    return raw, reply


def _flags(server: ImapHarness, mailbox: str = "INBOX") -> list[frozenset[str]]:
    mailbox_id = server.mailbox_id(DEMO, mailbox)
    return [m.flags for m in server.call(server.store.list_messages(mailbox_id))]


def test_default_keyword_limits() -> None:
    settings = ImapSettings()
    assert (settings.max_keyword_length, settings.max_mailbox_keywords) == (128, 256)


def test_a_keyword_longer_than_the_limit_is_no_limit_and_changes_nothing(imap_limited: ImapHarness) -> None:
    imap_limited.deliver(DEMO, message("one"))
    raw, _ = _selected(imap_limited)
    too_long, longest = "k" * (MAX_LENGTH + 1), "k" * MAX_LENGTH
    reply = raw.command("t1", f"STORE 1 +FLAGS (\\Seen {too_long})")
    assert reply == [f"t1 NO [LIMIT] Keywords are limited to {MAX_LENGTH} characters"]
    assert raw.command("t2", f"STORE 1 FLAGS ({too_long})")[-1].startswith("t2 NO [LIMIT]")
    assert _flags(imap_limited) == [frozenset()]  # \Seen was not stored either
    reply = raw.command("t3", f"STORE 1 +FLAGS ({longest})")
    assert reply[-1] == "t3 OK STORE completed"
    assert f"FLAGS ({longest} \\Recent)" in reply[-2]
    assert raw.command("t4", f"STORE 1 -FLAGS ({too_long})")[-1] == "t4 OK STORE completed"  # removal
    raw.close()


def test_keywords_beyond_the_mailbox_limit_are_no_limit_and_permanentflags_drops_the_star(
    imap_limited: ImapHarness,
) -> None:
    for subject in ("one", "two"):
        imap_limited.deliver(DEMO, message(subject))
    raw, select = _selected(imap_limited)
    assert f"* OK [PERMANENTFLAGS ({SYSTEM} \\*)] Flags permitted" in select
    assert raw.command("a1", "STORE 1 +FLAGS.SILENT (k1 k2 k3)")[-1] == "a1 OK STORE completed"
    reply = raw.command("a2", "STORE 2 +FLAGS.SILENT (k4)")  # the fourth: no more may be created
    assert reply == [
        f"* FLAGS ({SYSTEM} k1 k2 k3 k4)",
        f"* OK [PERMANENTFLAGS ({SYSTEM} k1 k2 k3 k4)] Flags permitted",
        "a2 OK STORE completed",
    ]
    assert raw.command("a3", "STORE 2 +FLAGS (\\Flagged k5)") == [
        f"a3 NO [LIMIT] A mailbox may have at most {MAX_KEYWORDS} keywords"
    ]
    assert _flags(imap_limited) == [{"k1", "k2", "k3"}, {"k4"}]
    assert raw.command("a4", "STORE 2 +FLAGS.SILENT (k1 k2)")[-1] == "a4 OK STORE completed"  # known ones
    # no message carries k4 any more: a new keyword fits again
    assert raw.command("a5", "STORE 2 -FLAGS.SILENT (k4)")[-1] == "a5 OK STORE completed"
    assert raw.command("a6", "STORE 1 +FLAGS.SILENT (k5)")[-1] == "a6 OK STORE completed"
    other, select = _selected(imap_limited)  # k4 is gone, k5 came: still four, still no \*
    assert f"* OK [PERMANENTFLAGS ({SYSTEM} k1 k2 k3 k5)] Flags permitted" in select
    raw.close()
    other.close()


def test_append_of_a_keyword_over_a_limit_is_no_limit_and_stores_nothing(imap_limited: ImapHarness) -> None:
    imap_limited.deliver(DEMO, message("one"), flags=("k1", "k2", "k3"))
    raw = imap_limited.connect()
    raw.login()
    data = message("appended")
    too_long = "x" * (MAX_LENGTH + 1)
    raw.send(b"p1 APPEND INBOX (%s) {%d+}\r\n%s\r\n" % (too_long.encode(), len(data), data))
    assert raw.until_tagged("p1") == [f"p1 NO [LIMIT] Keywords are limited to {MAX_LENGTH} characters"]
    # MULTIAPPEND: all or nothing (RFC 3502); the second message would bring the fifth keyword
    raw.send(b"p2 APPEND INBOX (k1 k4) {%d+}\r\n%s (k5) {%d+}\r\n%s\r\n" % (len(data), data, len(data), data))
    assert raw.until_tagged("p2") == [f"p2 NO [LIMIT] A mailbox may have at most {MAX_KEYWORDS} keywords"]
    assert len(_flags(imap_limited)) == 1
    raw.send(b"p3 APPEND INBOX (k1 k4) {%d+}\r\n%s\r\n" % (len(data), data))
    assert raw.until_tagged("p3")[-1].startswith("p3 OK [APPENDUID")
    assert _flags(imap_limited) == [{"k1", "k2", "k3"}, {"k1", "k4"}]
    raw.close()


def test_copy_and_move_into_a_mailbox_full_of_keywords_leave_out_what_does_not_fit(
    imap_limited: ImapHarness,
) -> None:
    """A COPY or MOVE is never refused for keywords (like Dovecot): the copies keep the keywords the target
    has, and new ones in sorted order while it has room; a too long one is left out too."""
    imap_limited.deliver(DEMO, message("there"), mailbox="Archive", flags=("$Label1", "$Label2"))
    imap_limited.deliver(DEMO, message("one"), flags=("$Label1", "b", "a"))
    imap_limited.deliver(DEMO, message("two"), flags=("\\Flagged", "c", "x" * (MAX_LENGTH + 1)))
    raw, _ = _selected(imap_limited)
    assert raw.command("c1", "COPY 1:2 Archive")[-1].startswith("c1 OK [COPYUID")
    assert _flags(imap_limited, "Archive") == [{"$Label1", "$Label2"}, {"$Label1", "a", "b"}, {"\\Flagged"}]
    assert raw.command("m1", "MOVE 2 Archive")[-1] == "m1 OK MOVE completed"
    assert _flags(imap_limited, "Archive")[-1] == {"\\Flagged"}
    assert raw.command("c2", "COPY 1 Trash")[-1].startswith("c2 OK [COPYUID")  # an empty target: all fit
    assert _flags(imap_limited, "Trash") == [{"$Label1", "a", "b"}]
    raw.close()


def test_keywords_a_mailbox_has_already_stay_usable_and_the_star_is_not_offered(
    imap_limited: ImapHarness,
) -> None:
    """Data from before the limits (or from a larger limit): more keywords than allowed, one too long."""
    old = ["k1", "k2", "k3", "k4", "k5", "L" * (MAX_LENGTH + 10)]
    imap_limited.deliver(DEMO, message("old"), flags=tuple(old))
    imap_limited.deliver(DEMO, message("new"))
    raw, select = _selected(imap_limited)
    listed = " ".join(sorted(old))
    assert f"* FLAGS ({SYSTEM} {listed})" in select
    assert f"* OK [PERMANENTFLAGS ({SYSTEM} {listed})] Flags permitted" in select  # no \*
    assert raw.command("o1", f"STORE 2 +FLAGS.SILENT (k5 {old[-1]})")[-1] == "o1 OK STORE completed"
    assert raw.command("o2", "STORE 2 +FLAGS.SILENT (k6)")[-1].startswith("o2 NO [LIMIT]")
    assert raw.command("o3", f"STORE 1:2 FLAGS.SILENT (k1 {old[-1]})")[-1] == "o3 OK STORE completed"
    assert _flags(imap_limited) == [{"k1", old[-1]}] * 2
    raw.close()


def test_storing_large_keywords_keeps_no_copy_of_every_keyword_list(tmp_path: Path) -> None:
    """The tester's run: each STORE adds one long keyword to a message (limits raised out of the way). Every
    flag combination the store read went into an lru_cache of 4096, keyed by the whole keyword list, so
    memory grew by the list at each STORE and was never given back: 300 STOREs of 60,000-character keywords
    held 2.67 GB. The caches are bounded by the characters they hold (FLAG_CACHE_CHARS, FLAGS_TEXT_CHARS)."""
    settings = ImapSettings(
        hostname="localhost", spool_dir=tmp_path, max_keyword_length=10**6, max_mailbox_keywords=10**6
    )
    for server in _harness(tmp_path, settings):
        server.deliver(DEMO, message("one"))
        raw, _ = _selected(server)
        stores, length = 30, 20_000
        gc.collect()
        tracemalloc.start()
        try:
            for i in range(stores):
                reply = raw.command(f"s{i}", f"STORE 1 +FLAGS (K{i}{'k' * length})")
                assert reply[-1] == f"s{i} OK STORE completed"
                reply = raw.command(f"f{i}", "FETCH 1 FLAGS")  # flags_text of every combination
                assert reply[-1] == f"f{i} OK FETCH completed"
            del reply
            gc.collect()
            held, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        final_list = stores * length  # the message's keywords at the end: 0.6 MB
        # before: about 30 lists of 0.3 MB on average, twice (the column string and its split) = 18 MB
        assert held < 8 * final_list, held
        raw.close()


def test_the_flag_caches_are_bounded_by_the_characters_they_hold() -> None:
    for i in range(40):
        keywords = f"K{i}" + "k" * 100_000
        assert columns.columns_to_flags(1, keywords) == {"\\Seen", keywords}
        assert mailbox_view.flags_text(frozenset({keywords})) == keywords
    assert sum(len(k) for _, k in columns._flag_sets) <= columns.FLAG_CACHE_CHARS
    assert sum(len(text) for text in mailbox_view._flags_texts.values()) <= mailbox_view.FLAGS_TEXT_CHARS
    assert columns.columns_to_flags(3, "a b") == {"\\Seen", "\\Answered", "a", "b"}
    assert columns.columns_to_flags(3, "a b") is columns.columns_to_flags(3, "a b")  # still a cache
