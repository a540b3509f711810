"""Independent checks of what the server stored: read the SQLite store directly (read-only), not via the
server."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def store_path(data_root: Path) -> Path:
    return data_root / "store" / "mail.sqlite3"


def inbox_messages(data_root: Path, address: str, mailbox: str = "INBOX") -> list[tuple[int, bytes]]:
    """(uid, bytes) of every message in the mailbox, in UID order, read straight from the database file."""
    conn = sqlite3.connect(f"file:{store_path(data_root)}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT m.uid, d.data FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id "
            "JOIN accounts a ON a.id = b.account_id JOIN content_data d ON d.id = m.content_id "
            "WHERE a.address = ? AND b.name = ? ORDER BY m.uid",
            (address, mailbox),
        ).fetchall()
        return [(int(uid), bytes(data)) for uid, data in rows]
    finally:
        conn.close()


def body_after_trace(stored: bytes) -> bytes:
    """The message as the client sent it: strip the Return-Path and Received lines we prepended."""
    lines = stored.split(b"\r\n")
    assert lines[0].startswith(b"Return-Path: <"), stored[:200]
    i = 1
    assert lines[i].startswith(b"Received: "), stored[:400]
    i += 1
    while lines[i].startswith((b"\t", b" ")):
        i += 1
    return b"\r\n".join(lines[i:])


def integrity_ok(data_root: Path) -> bool:
    conn = sqlite3.connect(f"file:{store_path(data_root)}?mode=ro", uri=True)
    try:
        result: str = conn.execute("PRAGMA integrity_check").fetchone()[0]
        return result == "ok"
    finally:
        conn.close()
