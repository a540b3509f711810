"""Row-level steps that several writes share, run inside the caller's transaction: a new mailbox (with a
UIDVALIDITY from the store-wide counter), a message row (UID from the mailbox, MODSEQ from the account),
copies that share a content, deletions that leave tombstones and free a content with its last reference,
and the ENVELOPE / BODYSTRUCTURE forms kept with each content (docs/decisions/0016, 0036).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from postoffice.directory.address import normalize_address
from postoffice.message import ParsedMessage, envelope_addresses
from postoffice.message.imap_forms import ImapRendering, render_imap_forms
from postoffice.message.sort_fields import SortFields, sort_fields
from postoffice.message.threads import thread_keys
from postoffice.store.api import MailboxInfo, MessageInfo
from postoffice.store.criteria import ENVELOPE_ADDRESS_FIELDS
from postoffice.store.sqlite.columns import columns_to_flags
from postoffice.store.sqlite.keywords import keep_keywords

log = logging.getLogger("postoffice.store")


def render_kept_forms(parsed: ParsedMessage) -> ImapRendering | None:
    """The IMAP renderings kept with a content (None if rendering fails: FETCH then renders from the parse,
    and a delivery never fails for it). Kept as Dovecot keeps imap.envelope and imap.bodystructure in its
    cache; rendered by `postoffice.message.imap_forms`, so the store needs no protocol package."""
    try:
        return render_imap_forms(parsed)
    except Exception:  # pragma: no cover - the renderer takes any parse; this guards delivery regardless
        log.exception("cannot render the IMAP summary of a message")
        return None


def insert_kept_forms(conn: sqlite3.Connection, content_id: int, rendering: ImapRendering | None) -> None:
    if rendering is not None:
        conn.execute(
            "INSERT OR REPLACE INTO content_imap (id, envelope, bodystructure, envelope_utf8, "
            "bodystructure_utf8) VALUES (?, ?, ?, ?, ?)",
            (
                content_id,
                rendering.envelope,
                rendering.bodystructure,
                rendering.envelope_utf8,
                rendering.bodystructure_utf8,
            ),
        )


def address_rows(parsed: ParsedMessage) -> set[tuple[int, str]]:
    """(envelope field index, normalised address) of the content's From, To, Cc and Bcc lists (the rows of
    content_addresses, which `Address` criteria search)."""
    found: set[tuple[int, str]] = set()
    for index in ENVELOPE_ADDRESS_FIELDS.values():
        for _name, written in envelope_addresses(parsed.envelope, (index,)):
            address = normalize_address(written)
            if len(address) <= 320:
                found.add((index, address))
    return found


def insert_addresses(conn: sqlite3.Connection, content_id: int, parsed: ParsedMessage) -> None:
    conn.executemany(
        "INSERT OR IGNORE INTO content_addresses (address, content_id, field) VALUES (?, ?, ?)",
        [(address, content_id, field) for field, address in address_rows(parsed)],
    )


def insert_sort_fields(conn: sqlite3.Connection, content_id: int, parsed: ParsedMessage) -> None:
    """The content's row of content_sort (what IMAP SORT and THREAD compare)."""
    f = sort_fields(parsed)
    conn.execute(
        "INSERT OR REPLACE INTO content_sort (id, sent, subject, from_mailbox, from_display, to_mailbox, "
        "to_display, cc_mailbox, message_id, refs) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            content_id,
            f.sent,
            f.subject,
            f.from_mailbox,
            f.from_display,
            f.to_mailbox,
            f.to_display,
            f.cc_mailbox,
            f.message_id,
            " ".join(f.references),
        ),
    )


SORT_FIELDS_SQL = (
    "SELECT id, sent, subject, from_mailbox, from_display, to_mailbox, to_display, cc_mailbox, message_id, "
    "refs FROM content_sort"
)


#: the column of content_sort that holds each field of SortFields (SORT_FIELDS_SQL's, in its order)
_SORT_COLUMNS = dict(
    zip(
        SortFields._fields,
        SORT_FIELDS_SQL[len("SELECT id, ") : -len(" FROM content_sort")].split(", "),
        strict=True,
    )
)


class SortColumnsReader(NamedTuple):
    """How `MailStore.sort_columns` reads some fields: the SQL column list, and the rows made into tables."""

    sql: str
    names: tuple[str, ...]

    def tables(self, rows: Iterable[tuple[Any, ...]]) -> dict[str, dict[int, Any]]:
        """{field: {content id: value}} of rows `SELECT id, <sql> ...`, each value as `sort_fields_row` makes
        it (a REAL column gives floats, and an INTEGER PRIMARY KEY ints, as they are)."""
        table = list(rows)
        found: dict[str, dict[int, Any]] = {}
        for index, name in enumerate(self.names, 1):
            if name == "references":
                found[name] = {row[0]: tuple(row[index].split()) for row in table}
            else:
                found[name] = {row[0]: row[index] for row in table}
        return found


def sort_columns_reader(names: Sequence[str]) -> SortColumnsReader:
    """The reader of the SortFields fields `names`; ValueError for a name that is not one."""
    unknown = [name for name in names if name not in _SORT_COLUMNS]
    if unknown or not names:
        raise ValueError(f"no sort fields {unknown}")
    return SortColumnsReader(", ".join(_SORT_COLUMNS[name] for name in names), tuple(names))


def sort_fields_row(row: sqlite3.Row | tuple[Any, ...]) -> tuple[int, SortFields]:
    """(content id, fields) of a row of SORT_FIELDS_SQL."""
    cid, sent, subject, from_mailbox, from_display, to_mailbox, to_display, cc_mailbox, message_id, refs = row
    return int(cid), SortFields(
        None if sent is None else float(sent),
        subject,
        from_mailbox,
        from_display,
        to_mailbox,
        to_display,
        cc_mailbox,
        message_id,
        tuple(refs.split()),
    )


def create_mailbox_row(conn: sqlite3.Connection, account_id: int, name: str, special_use: str | None) -> int:
    """A new mailbox with the next UIDVALIDITY of the store-wide counter (never reused); returns its id.

    Its id is never one a deleted mailbox had either (`meta.next_mailbox_id`, above every id in use when it
    was first needed): SQLite alone gives the highest id again once its mailbox is deleted, and a session,
    a cache or a form that still holds the old id would then reach a new mailbox, maybe another account's
    (the review of decision 0073 found COPY, STORE and APPEND doing so)."""
    uidvalidity = conn.execute(
        "UPDATE meta SET value = value + 1 WHERE key = 'next_uidvalidity' RETURNING value - 1"
    ).fetchone()[0]
    conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('next_mailbox_id', 1)")
    mailbox_id = conn.execute(
        "UPDATE meta SET value = max(value, (SELECT coalesce(max(id), 0) + 1 FROM mailboxes)) + 1 "
        "WHERE key = 'next_mailbox_id' RETURNING value - 1"
    ).fetchone()[0]
    conn.execute(
        "INSERT INTO mailboxes (id, account_id, name, special_use, uidvalidity) VALUES (?, ?, ?, ?, ?)",
        (mailbox_id, account_id, name, special_use, uidvalidity),
    )
    return int(mailbox_id)


MAILBOX_SQL = (
    "SELECT id, account_id, name, special_use, uidvalidity, uidnext, message_count, total_size, "
    "EXISTS (SELECT 1 FROM subscriptions s WHERE s.account_id = mailboxes.account_id AND s.name = "
    "mailboxes.name), recent_uid FROM mailboxes"
)


#: The columns of a `MessageInfo`, in `message_info`'s order.
MESSAGE_COLUMNS = (
    "id, mailbox_id, uid, flags, keywords, internaldate, size, modseq, content_id, thread_id, savedate"
)


def message_info(r: Sequence[Any]) -> MessageInfo:
    return MessageInfo(
        r[0], r[1], r[2], columns_to_flags(r[3], r[4]), r[5], r[6], r[7], r[8], r[9], r[10] or r[5]
    )


def mailbox_info(row: Sequence[Any]) -> MailboxInfo:
    return MailboxInfo(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], bool(row[8]), row[9])


def append_row(
    conn: sqlite3.Connection,
    account_id: int,
    mailbox_id: int,
    content_id: int,
    bits: int,
    keywords: str,
    internaldate: float,
    size: int,
    thread_id: int,
) -> tuple[int, int]:
    """A message row for `content_id` with the mailbox's next UID and the account's next MODSEQ, in the
    conversation `thread_id` (`thread_for`); returns (uid, modseq)."""
    modseq = conn.execute(
        "UPDATE accounts SET highest_modseq = highest_modseq + 1 WHERE id = ? RETURNING highest_modseq",
        (account_id,),
    ).fetchone()[0]
    uid = conn.execute(
        "UPDATE mailboxes SET uidnext = uidnext + 1, message_count = message_count + 1, "
        "total_size = total_size + ?, highest_modseq = ? WHERE id = ? RETURNING uidnext - 1",
        (size, modseq, mailbox_id),
    ).fetchone()[0]
    conn.execute(
        "INSERT INTO messages (mailbox_id, uid, content_id, flags, keywords, internaldate, size, modseq, "
        "thread_id, savedate) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (mailbox_id, uid, content_id, bits, keywords, internaldate, size, modseq, thread_id, time.time()),
    )
    return int(uid), int(modseq)


def parsed_thread_keys(parsed: ParsedMessage) -> list[int]:
    return thread_keys(parsed.message_id, parsed.references, parsed.subject)


def thread_for(conn: sqlite3.Connection, account_id: int, keys: Sequence[int]) -> int:
    """The conversation of a new message of the account with these `postoffice.message.threads` keys: the
    one an earlier message recorded under any of them (the first key first: the message's own id), else a
    new one from the store-wide counter; the keys are recorded for the messages to come (decision 0047)."""
    known: dict[int, int] = {}
    if keys:
        marks = ",".join("?" * len(keys))  # at most 21 keys (message.threads.REFERENCES_KEPT + 1)
        sql = f"SELECT key, thread_id FROM thread_keys WHERE account_id = ? AND key IN ({marks})"  # noqa: S608
        known = {int(k): int(t) for k, t in conn.execute(sql, (account_id, *keys))}
    thread_id = next((known[key] for key in keys if key in known), None)
    if thread_id is None:
        thread_id = int(
            conn.execute(
                "UPDATE meta SET value = value + 1 WHERE key = 'next_thread_id' RETURNING value - 1"
            ).fetchone()[0]
        )
    conn.executemany(
        "INSERT OR IGNORE INTO thread_keys (account_id, key, thread_id) VALUES (?, ?, ?)",
        [(account_id, key, thread_id) for key in keys],
    )
    return thread_id


def copy_rows(
    conn: sqlite3.Connection,
    source_id: int,
    uids: list[int],
    target_id: int,
    allowed_keywords: set[str] | None = None,
    *,
    bits: int = -1,
) -> list[tuple[int, int]]:
    """COPY: the messages `uids` of the source into the target with new UIDs, flags and internal dates kept,
    the content shared; returns (source uid, new uid) pairs, leaving out UIDs that do not exist. With
    `allowed_keywords`, the copies keep only those keywords (the target's keyword limit, keywords.py), and
    only the system flags in the mask `bits` (IMAP ACL, decision 0073). A copy into another account's
    mailbox (a shared one) goes into that account's conversation for it (`thread_for`)."""
    account_id, source_account = (
        int(conn.execute("SELECT account_id FROM mailboxes WHERE id = ?", (mailbox,)).fetchone()[0])
        for mailbox in (target_id, source_id)
    )
    pairs: list[tuple[int, int]] = []
    for uid in uids:
        row = conn.execute(
            "SELECT content_id, flags, keywords, internaldate, size, thread_id FROM messages "
            "WHERE mailbox_id = ? AND uid = ?",
            (source_id, uid),
        ).fetchone()
        if row is None:
            continue
        content_id, flag_bits, keywords, internaldate, size, thread_id = row
        conn.execute("UPDATE contents SET refcount = refcount + 1 WHERE id = ?", (content_id,))
        if source_account != account_id:
            (parsed,) = conn.execute("SELECT parsed FROM contents WHERE id = ?", (content_id,)).fetchone()
            thread_id = thread_for(conn, account_id, parsed_thread_keys(ParsedMessage.from_json(str(parsed))))
        new_uid, _ = append_row(
            conn,
            account_id,
            target_id,
            int(content_id),
            int(flag_bits) & bits,
            keep_keywords(str(keywords), allowed_keywords),
            float(internaldate),
            int(size),
            int(thread_id),  # within the account the conversation goes with the message
        )
        pairs.append((uid, new_uid))
    return pairs


def delete_messages(
    conn: sqlite3.Connection, mailbox_id: int, uids: list[int] | None, *, tombstones: bool
) -> tuple[list[int], int]:
    """Remove the messages `uids` (None: all) of a mailbox, with tombstones at one new MODSEQ when asked;
    a content goes with its last reference. Returns (the UIDs removed, the MODSEQ, 0 without tombstones)."""
    if uids is None:
        rows = conn.execute(
            "SELECT uid, content_id, size FROM messages WHERE mailbox_id = ? ORDER BY uid", (mailbox_id,)
        ).fetchall()
    else:
        rows = []
        for uid in uids:
            r = conn.execute(
                "SELECT uid, content_id, size FROM messages WHERE mailbox_id = ? AND uid = ?",
                (mailbox_id, uid),
            ).fetchone()
            if r is not None:
                rows.append(r)
    if not rows:
        return [], 0
    modseq = 0
    if tombstones:
        modseq = conn.execute(
            "UPDATE accounts SET highest_modseq = highest_modseq + 1 "
            "WHERE id = (SELECT account_id FROM mailboxes WHERE id = ?) RETURNING highest_modseq",
            (mailbox_id,),
        ).fetchone()[0]
    total = 0
    now = time.time()
    for uid, content_id, size in rows:
        conn.execute("DELETE FROM messages WHERE mailbox_id = ? AND uid = ?", (mailbox_id, uid))
        if tombstones:
            conn.execute(
                "INSERT OR REPLACE INTO tombstones (mailbox_id, uid, modseq, expunged_at) "
                "VALUES (?, ?, ?, ?)",
                (mailbox_id, uid, modseq, now),
            )
        left = conn.execute(
            "UPDATE contents SET refcount = refcount - 1 WHERE id = ? RETURNING refcount", (content_id,)
        ).fetchone()[0]
        if left <= 0:
            conn.execute("DELETE FROM contents WHERE id = ?", (content_id,))
            conn.execute("DELETE FROM content_data WHERE id = ?", (content_id,))
            conn.execute("DELETE FROM content_imap WHERE id = ?", (content_id,))
            conn.execute("DELETE FROM content_search WHERE rowid = ?", (content_id,))
            conn.execute("DELETE FROM content_addresses WHERE content_id = ?", (content_id,))
            conn.execute("DELETE FROM content_sort WHERE id = ?", (content_id,))
        total += size
    conn.execute(
        "UPDATE mailboxes SET message_count = message_count - ?, total_size = total_size - ?, "
        "highest_modseq = max(highest_modseq, ?) WHERE id = ?",
        (len(rows), total, modseq, mailbox_id),
    )
    return [int(r[0]) for r in rows], int(modseq)
