"""Conversations in the SQLite store: the 11 -> 12 migration gives stored messages the conversations delivery
would have given them; base subjects and keys (`postoffice.message.threads`). What every backend must do is
tests/store/contract/test_threads.py."""

from __future__ import annotations

import asyncio
import io
import sqlite3
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from postoffice.message import parse_message
from postoffice.message.threads import (
    REFERENCES_KEPT,
    THREAD_REFERENCES_KEPT,
    base_subject,
    references_of,
    thread_keys,
    thread_references,
)
from postoffice.store import MailStore, open_store
from postoffice.store.sqlite import SCHEMA_VERSION


def mail(mid: str, subject: str, refs: str = "") -> bytes:
    head = f"From: a@example.org\r\nSubject: {subject}\r\nMessage-ID: <{mid}@x>\r\n"
    if refs:
        head += "References: " + "\r\n ".join(f"<{r}@x>" for r in refs.split()) + "\r\n"
    return f"{head}\r\nbody\r\n".encode()


MESSAGES = [
    ("a", "Plans", ""),
    ("b", "Re: Plans", "a"),
    ("x", "Other", ""),
    ("d", "Re: Plans", "a b c"),
    ("c", "Re: Plans", "a b"),
    ("y", "Re: Other", "x"),
    ("z", "Plans", ""),
]


def partition(path: Path) -> list[list[int]]:
    conn = sqlite3.connect(path)
    try:
        groups: dict[int, list[int]] = {}
        for uid, thread in conn.execute("SELECT uid, thread_id FROM messages ORDER BY uid"):
            assert thread != 0
            groups.setdefault(thread, []).append(uid)
        return sorted(groups.values())
    finally:
        conn.close()


def test_a_version_11_store_gets_the_conversations_delivery_gives(tmp_path: Path) -> None:
    path = tmp_path / "v11.sqlite3"

    async def fill() -> None:
        store: MailStore = open_store(path)
        try:
            await store.add_domain("example.test")
            account = await store.add_account("demo@example.test", "x")
            inbox = await store.get_mailbox(account.id, "INBOX")
            assert inbox is not None
            for mid, subject, refs in MESSAGES:
                raw = mail(mid, subject, refs)
                await store.append(inbox.id, io.BytesIO(raw), parse_message(io.BytesIO(raw)), ())
        finally:
            await store.close()

    asyncio.run(fill())
    delivered = partition(path)
    assert delivered == [[1, 2, 4, 5], [3, 6], [7]]
    conn = sqlite3.connect(path)
    # what version 11 wrote: no thread column, table or counter, and no References in the stored structure
    conn.executescript(
        """
        DROP INDEX messages_thread;
        ALTER TABLE messages DROP COLUMN thread_id;
        DROP TABLE thread_keys;
        DELETE FROM meta WHERE key = 'next_thread_id';
        UPDATE contents SET parsed = json_remove(parsed, '$.references');
        UPDATE meta SET value = 11 WHERE key = 'schema_version';
        """
    )
    conn.commit()
    conn.close()

    asyncio.run(open_store(path).close())
    assert partition(path) == delivered
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("SELECT value FROM meta WHERE key = 'next_thread_id'").fetchone()[0] == 4
    assert conn.execute("SELECT count(*) FROM thread_keys").fetchone()[0] == 7  # (base subject, id) pairs
    conn.close()


def test_base_subjects_lose_reply_prefixes_blobs_and_forward_wrappers() -> None:
    cases = {
        "Re: hello": "hello",
        "RE: Re: re[2]: Hello  world": "hello world",
        "Fwd: [Fwd: hello] (fwd)": "hello",
        "[list] Re: hello": "hello",
        "Re: [list] hello": "hello",
        "[list]": "[list]",
        "Aw: WG: SV: VS: Antw: hello": "hello",
        "回复: 答复：转发: 你好": "你好",
        "Re:": "",
        "": "",
        "Reply about the report": "reply about the report",
    }
    assert {subject: base_subject(subject) for subject in cases} == cases


def test_long_references_keep_the_root_and_the_nearest_ancestors() -> None:
    ids = " ".join(f"<m{n}@x>" for n in range(100))
    kept = references_of("<m99@x>", ids)
    assert len(kept) == REFERENCES_KEPT
    assert kept[0] == "<m0@x>"
    assert kept[-1] == "<m99@x>"
    parsed = parse_message(io.BytesIO(mail("new", "Re: x", " ".join(f"m{n}" for n in range(100)))))
    assert parsed.references == kept


def test_thread_references_are_references_as_written_else_the_first_in_reply_to() -> None:
    """RFC 5256 section 4, REFERENCES step 1.A: References' ids in order (repeats too); In-Reply-To only when
    References has no valid id, and then only its first; at most THREAD_REFERENCES_KEPT (first and last)."""
    assert thread_references("<other@x>", "<a@x> <b@x>\r\n <a@x>") == ["<a@x>", "<b@x>", "<a@x>"]
    assert thread_references("<p@x> <q@x>", "") == ["<p@x>"]
    assert thread_references("<p@x>", "no valid id here") == ["<p@x>"]
    assert thread_references("", "") == []
    long = " ".join(f"<m{n}@x>" for n in range(300))
    kept = thread_references("", long)
    assert len(kept) == THREAD_REFERENCES_KEPT
    assert kept[0] == "<m0@x>"
    assert kept[1:] == [f"<m{n}@x>" for n in range(300 - THREAD_REFERENCES_KEPT + 1, 300)]
    parsed = parse_message(io.BytesIO(mail("new", "Re: x", "a b a")))
    assert parsed.thread_references == ["<a@x>", "<b@x>", "<a@x>"]
    assert parsed.references == ["<a@x>", "<b@x>"]


@given(st.text(max_size=200), st.text(max_size=200))
def test_keys_and_base_subjects_take_any_text(subject: str, field: str) -> None:
    base = base_subject(subject)
    assert len(base) <= len(subject.casefold())
    keys = thread_keys(field, references_of(field, field), subject)
    assert all(-(2**63) <= key < 2**63 for key in keys)
    assert len(keys) <= REFERENCES_KEPT + 1
    assert len(thread_references(field, field)) <= THREAD_REFERENCES_KEPT
