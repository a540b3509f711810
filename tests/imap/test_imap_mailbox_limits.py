"""Mailbox limits (docs/decisions/0021): mailboxes and subscriptions per account, name length in octets and
depth in levels; CREATE, RENAME and SUBSCRIBE over them are NO [LIMIT] (RFC 5530) and change nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from postoffice.imap.session import ImapSettings
from tests.imap.conftest import DEMO, _harness
from tests.imap.transcript import ImapHarness, Transcript

MAX_MAILBOXES = 10  # a new account has 6 (INBOX, Drafts, Sent, Trash, Junk, Archive)
MAX_NAME = 64
MAX_DEPTH = 4


@pytest.fixture
def imap_limited(tmp_path: Path) -> Iterator[ImapHarness]:
    settings = ImapSettings(
        hostname="localhost",
        spool_dir=tmp_path,
        max_mailboxes=MAX_MAILBOXES,
        max_mailbox_name_length=MAX_NAME,
        max_mailbox_depth=MAX_DEPTH,
    )
    yield from _harness(tmp_path, settings)


def names(server: ImapHarness) -> set[str]:
    return {m.name for m in server.call(server.store.list_mailboxes(server.account_ids[DEMO]))}


def _client(server: ImapHarness) -> Transcript:
    raw = server.connect()
    raw.login()
    return raw


def test_default_limits() -> None:
    settings = ImapSettings()
    assert (settings.max_mailboxes, settings.max_mailbox_name_length, settings.max_mailbox_depth) == (
        1000,
        1024,
        32,
    )


def test_create_beyond_the_mailbox_count_is_no_limit(imap_limited: ImapHarness) -> None:
    raw = _client(imap_limited)
    for i in range(MAX_MAILBOXES - 6):
        assert raw.command(f"c{i}", f"CREATE box{i}")[-1].startswith(f"c{i} OK")
    reply = raw.command("x1", "CREATE one-too-many")
    assert reply == ["x1 NO [LIMIT] An account may have at most 10 mailboxes"]
    assert "one-too-many" not in names(imap_limited)
    assert raw.command("d1", "DELETE box0")[-1].startswith("d1 OK")
    assert raw.command("x2", "CREATE one-too-many")[-1].startswith("x2 OK")
    # RENAME INBOX makes a mailbox for INBOX's messages: over the limit too
    assert raw.command("r1", "RENAME INBOX Old")[-1].startswith("r1 NO [LIMIT]")
    assert "Old" not in names(imap_limited)
    assert raw.command("r2", "RENAME box1 renamed")[-1].startswith("r2 OK")  # makes none
    assert raw.command("n1", "NOOP")[-1] == "n1 OK NOOP completed"
    raw.close()


def test_create_that_would_make_too_many_superiors_creates_nothing(imap_limited: ImapHarness) -> None:
    """CREATE a/b/c makes a and a/b as well (RFC 9051 6.3.4): all of them count, and none is made when the
    total is over the limit."""
    raw = _client(imap_limited)
    assert raw.command("c1", "CREATE x/y")[-1].startswith("c1 OK")  # 8 mailboxes now
    before = names(imap_limited)
    assert raw.command("c2", "CREATE a/b/c")[-1].startswith("c2 NO [LIMIT]")
    assert names(imap_limited) == before
    assert raw.command("c3", "CREATE x/y/z")[-1].startswith("c3 OK")  # one more: 9
    assert raw.command("r1", "RENAME x/y/z p/q")[-1].startswith("r1 OK")  # makes p: 10
    assert raw.command("r2", "RENAME p/q s/t/u")[-1].startswith("r2 NO [LIMIT]")  # would make s and s/t
    assert names(imap_limited) == before | {"x/y", "x", "p", "p/q"}
    raw.close()


def test_name_length_counts_utf8_octets(imap_limited: ImapHarness) -> None:
    raw = _client(imap_limited)
    raw.command("e", "ENABLE UTF8=ACCEPT")
    assert raw.command("c1", "CREATE " + "a" * MAX_NAME)[-1].startswith("c1 OK")
    reply = raw.command("c2", "CREATE " + "b" * (MAX_NAME + 1))
    assert reply == ["c2 NO [LIMIT] Mailbox names are limited to 64 octets"]
    # 32 characters, 64 octets: fits; one more character does not
    assert raw.command("c3", 'CREATE "' + "é" * (MAX_NAME // 2) + '"')[-1].startswith("c3 OK")
    assert raw.command("c4", 'CREATE "' + "é" * (MAX_NAME // 2) + 'x"')[-1].startswith("c4 NO [LIMIT]")
    # the whole path counts, not each level
    assert raw.command("c5", "CREATE " + "c" * 40 + "/" + "d" * 40)[-1].startswith("c5 NO [LIMIT]")
    assert raw.command("r1", "RENAME " + "a" * MAX_NAME + " " + "e" * 65)[-1].startswith("r1 NO [LIMIT]")
    assert raw.command("s1", "SUBSCRIBE " + "f" * 65)[-1].startswith("s1 NO [LIMIT]")
    assert not any(n.startswith(("b", "c", "e")) for n in names(imap_limited))
    raw.close()


def test_depth_is_limited_also_for_renamed_inferiors(imap_limited: ImapHarness) -> None:
    raw = _client(imap_limited)
    assert raw.command("c1", "CREATE a/b/c/d")[-1].startswith("c1 OK")  # 4 levels, 10 mailboxes
    assert raw.command("d1", "DELETE a/b/c/d")[-1].startswith("d1 OK")
    reply = raw.command("c2", "CREATE a/b/c/d/e")
    assert reply == ["c2 NO [LIMIT] Mailbox names are limited to 4 levels"]
    # RENAME moves the inferiors: "a" to "x/y" would make x/y/b/c/d, 5 levels
    assert raw.command("c3", "CREATE a/b/c/d")[-1].startswith("c3 OK")
    assert raw.command("d2", "DELETE Junk")[-1].startswith("d2 OK")  # room for x
    before = names(imap_limited)
    assert raw.command("r2", "RENAME a x/y")[-1].startswith("r2 NO [LIMIT]")  # x/y/b/c/d: 5 levels
    assert names(imap_limited) == before
    assert raw.command("r3", "RENAME a x")[-1].startswith("r3 OK")  # x/b/c/d: 4 levels
    assert {"x", "x/b", "x/b/c", "x/b/c/d"} <= names(imap_limited)
    raw.close()


def test_subscriptions_are_limited_like_mailboxes(imap_limited: ImapHarness) -> None:
    raw = _client(imap_limited)
    for i in range(MAX_MAILBOXES - 6):  # the 6 default mailboxes are subscribed
        assert raw.command(f"s{i}", f"SUBSCRIBE gone{i}")[-1].startswith(f"s{i} OK")
    reply = raw.command("x1", "SUBSCRIBE gone-too-far")
    assert reply == ["x1 NO [LIMIT] An account may have at most 10 subscriptions"]
    assert raw.command("x2", "SUBSCRIBE gone1")[-1].startswith("x2 OK")  # already subscribed: no change
    assert raw.command("u1", "UNSUBSCRIBE gone1")[-1].startswith("u1 OK")
    assert raw.command("x3", "SUBSCRIBE gone-too-far")[-1].startswith("x3 OK")
    raw.close()
