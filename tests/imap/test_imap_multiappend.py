"""MULTIAPPEND (RFC 3502): several messages in one APPEND, all or nothing, APPENDUID with a UID set."""

from __future__ import annotations

from typing import Any

import pytest

from postoffice.store import StoreError
from postoffice.store.sqlite.store import SqliteMailStore
from tests.imap.conftest import DEMO, message
from tests.imap.transcript import ImapHarness


def _uids(imap: ImapHarness, mailbox: str) -> list[int]:
    messages = imap.call(imap.store.list_messages(imap.mailbox_id(DEMO, mailbox)))
    return [m.uid for m in messages]


def test_multiappend_stores_every_message_and_reports_a_uid_set(imap: ImapHarness) -> None:
    raw = imap.connect()
    assert "MULTIAPPEND" in raw.greeting.split()
    raw.login()
    one, two, three = message("one"), message("two"), message("three")
    raw.send(b"a1 APPEND Drafts (\\Draft) {%d}\r\n" % len(one))
    assert raw.line().startswith("+ ")
    raw.send(
        one + b' (\\Seen) "01-Jan-2024 10:00:00 +0000" {%d+}\r\n%s {%d}\r\n' % (len(two), two, len(three))
    )
    assert raw.line().startswith("+ ")
    raw.send(three + b"\r\n")
    reply = raw.until_tagged("a1")
    info = imap.call(imap.store.get_mailbox(imap.account_ids[DEMO], "Drafts"))
    assert info is not None
    assert reply[-1] == f"a1 OK [APPENDUID {info.uidvalidity} 1:3] APPEND completed"
    messages = imap.call(imap.store.list_messages(info.id))
    assert [m.flags for m in messages] == [frozenset({"\\Draft"}), frozenset({"\\Seen"}), frozenset()]
    contents = [imap.call(imap.store.read_content(m.content_id)) for m in messages]
    assert contents == [one, two, three]
    raw.close()


def test_multiappend_with_a_bad_second_message_keeps_nothing(imap: ImapHarness) -> None:
    raw = imap.connect()
    raw.login()
    one = message("one")
    # a syntax error after the first message: the whole command fails, nothing is stored
    raw.send(b"a1 APPEND INBOX {%d+}\r\n%s (\\Seen) BOGUS {3+}\r\nabc\r\n" % (len(one), one))
    assert raw.until_tagged("a1")[-1].startswith("a1 BAD")
    assert _uids(imap, "INBOX") == []
    raw.close()


def test_multiappend_over_the_limit_refuses_all(imap_small_limit: ImapHarness) -> None:
    raw = imap_small_limit.connect()
    raw.login()
    one = message("one")
    raw.send(b"a1 APPEND INBOX {%d+}\r\n%s {5000}\r\n" % (len(one), one))
    assert raw.until_tagged("a1")[-1].startswith("a1 NO [TOOBIG]")
    assert raw.command("a2", "NOOP")[-1].startswith("a2 OK")
    assert _uids(imap_small_limit, "INBOX") == []
    raw.close()


def test_multiappend_store_failure_on_a_later_message_rolls_back_the_whole_command(
    imap: ImapHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One store transaction for all messages: when writing the second message's bytes fails, the first one
    is rolled back with it, and a session watching the mailbox never sees it come and go."""
    store = imap.store
    assert isinstance(store, SqliteMailStore)  # the backend's own write step fails
    real_write = store._write_content
    calls = 0

    def failing_write(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise StoreError("disk full")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(store, "_write_content", failing_write)
    watcher = imap.connect()
    watcher.login()
    watcher.command("s", "SELECT INBOX")
    raw = imap.connect()
    raw.login()
    one, two = message("one"), message("two")
    raw.send(b"a1 APPEND INBOX {%d+}\r\n%s {%d+}\r\n%s\r\n" % (len(one), one, len(two), two))
    assert raw.until_tagged("a1")[-1].startswith("a1 NO [UNAVAILABLE]")
    assert calls == 2
    assert _uids(imap, "INBOX") == []
    assert watcher.command("n", "NOOP") == ["n OK NOOP completed"]  # no EXISTS, no EXPUNGE
    monkeypatch.setattr(store, "_write_content", real_write)
    raw.send(b"a2 APPEND INBOX {%d+}\r\n%s\r\n" % (len(one), one))
    info = imap.call(store.get_mailbox(imap.account_ids[DEMO], "INBOX"))
    assert info is not None
    # the failed command used no UID: UIDs are allocated in the transaction that was rolled back
    assert raw.until_tagged("a2")[-1] == f"a2 OK [APPENDUID {info.uidvalidity} 1] APPEND completed"
    raw.close()
    watcher.close()
