"""Mailboxes of an account in the SQLite store (RFC 9051 6.3): create, delete, rename (INBOX's messages move,
6.3.6), subscriptions (names, which may name no mailbox), STATUS/SELECT counts and the \\Recent claim.

UIDVALIDITY values come from meta.next_uidvalidity, which only grows; UIDs come from mailboxes.uidnext, which
only grows; so neither is ever reused, not after expunge, mailbox deletion or a crash (the counters are
written in the same transaction as the rows that use them).
"""

from __future__ import annotations

import sqlite3

from postoffice.store.api import (
    METADATA_ACCOUNT_OCTETS,
    AlreadyExists,
    ChangeEvent,
    LimitExceeded,
    MailboxInfo,
    MailboxStatus,
    NotFound,
    StoreError,
)
from postoffice.store.sqlite.acl import copy_parent_acl
from postoffice.store.sqlite.base import SqliteBase
from postoffice.store.sqlite.columns import FLAG_BITS, HIERARCHY_SEPARATOR, normalize_mailbox
from postoffice.store.sqlite.rows import (
    MAILBOX_SQL,
    copy_rows,
    create_mailbox_row,
    delete_messages,
    mailbox_info,
)

#: The partial index messages_unseen answers these (schema.sql: the condition must be written so, literally).
UNSEEN_OF_MAILBOX = "SELECT count(*), min(uid) FROM messages WHERE mailbox_id = ? AND flags & 1 = 0"
#: Mailboxes whose unseen count is kept in memory at most (then the cache starts again).
UNSEEN_CACHE_MAILBOXES = 100_000
if FLAG_BITS["\\seen"] != 1:
    raise RuntimeError("the unseen index assumes \\Seen is bit 1 of messages.flags")


class MailboxesMixin(SqliteBase):
    @staticmethod
    def _check_mailbox_count(conn: sqlite3.Connection, account_id: int, limit: int | None) -> None:
        if limit is None:
            return
        (count,) = conn.execute(
            "SELECT count(*) FROM mailboxes WHERE account_id = ?", (account_id,)
        ).fetchone()
        if count >= limit:
            raise LimitExceeded(f"an account may have at most {limit} mailboxes")

    async def list_mailboxes(self, account_id: int) -> list[MailboxInfo]:
        def q(conn: sqlite3.Connection) -> list[MailboxInfo]:
            rows = conn.execute(
                MAILBOX_SQL + " WHERE account_id = ? ORDER BY name != 'INBOX', name", (account_id,)
            )
            return [mailbox_info(r) for r in rows]

        return await self._read(q)

    async def get_mailbox(self, account_id: int, name: str) -> MailboxInfo | None:
        name = normalize_mailbox(name)

        def q(conn: sqlite3.Connection) -> MailboxInfo | None:
            row = conn.execute(
                MAILBOX_SQL + " WHERE account_id = ? AND name = ?", (account_id, name)
            ).fetchone()
            return None if row is None else mailbox_info(row)

        return await self._read_small(q, single=True)  # one row by a unique index

    async def create_mailbox(
        self, account_id: int, name: str, special_use: str | None = None, *, max_mailboxes: int | None = None
    ) -> MailboxInfo:
        name = normalize_mailbox(name)
        if not name or name.startswith(HIERARCHY_SEPARATOR) or HIERARCHY_SEPARATOR * 2 in name:
            raise StoreError(f"not a valid mailbox name: {name!r}")
        name = name.rstrip(HIERARCHY_SEPARATOR)

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> MailboxInfo:
            if conn.execute(
                "SELECT 1 FROM mailboxes WHERE account_id = ? AND name = ?", (account_id, name)
            ).fetchone():
                raise AlreadyExists(f"mailbox {name} exists already")
            if (
                special_use is not None
                and conn.execute(
                    "SELECT 1 FROM mailboxes WHERE account_id = ? AND special_use = ?",
                    (account_id, special_use),
                ).fetchone()
            ):
                raise AlreadyExists(f"another mailbox has the special use {special_use}")
            self._check_mailbox_count(conn, account_id, max_mailboxes)
            mailbox_id = create_mailbox_row(conn, account_id, name, special_use)
            copy_parent_acl(conn, account_id, name, mailbox_id)  # RFC 4314 4: CREATE inherits (decision 0073)
            events.append(ChangeEvent("mailbox", account_id, mailbox_id, extra={"created": name}))
            row = conn.execute(MAILBOX_SQL + " WHERE id = ?", (mailbox_id,)).fetchone()
            return mailbox_info(row)

        return await self._write(tx)

    async def delete_mailbox(self, account_id: int, name: str) -> None:
        name = normalize_mailbox(name)
        if name == "INBOX":
            raise StoreError("INBOX cannot be deleted")

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> None:
            row = conn.execute(
                "SELECT id FROM mailboxes WHERE account_id = ? AND name = ?", (account_id, name)
            ).fetchone()
            if row is None:
                raise NotFound(f"no mailbox {name}")
            mailbox_id = int(row[0])
            delete_messages(conn, mailbox_id, None, tombstones=False)
            conn.execute("DELETE FROM tombstones WHERE mailbox_id = ?", (mailbox_id,))
            # RFC 5464 4.1: a mailbox made later with this name does not inherit the annotations
            conn.execute(
                "DELETE FROM metadata WHERE account_id = ? AND mailbox_id = ?", (account_id, mailbox_id)
            )
            conn.execute("DELETE FROM acl WHERE mailbox_id = ?", (mailbox_id,))  # RFC 4314 4: MUST
            conn.execute("DELETE FROM acl_names WHERE mailbox_id = ?", (mailbox_id,))
            conn.execute("DELETE FROM mailboxes WHERE id = ?", (mailbox_id,))
            self._recent_claimed.pop(mailbox_id, None)  # (its id is never given again: decision 0075)
            events.append(ChangeEvent("mailbox", account_id, mailbox_id, extra={"deleted": name}))

        await self._write(tx)

    async def rename_mailbox(
        self, account_id: int, old_name: str, new_name: str, *, max_mailboxes: int | None = None
    ) -> None:
        old_name, new_name = (
            normalize_mailbox(old_name),
            normalize_mailbox(new_name).rstrip(HIERARCHY_SEPARATOR),
        )
        if not new_name or new_name == "INBOX" or HIERARCHY_SEPARATOR * 2 in new_name:
            raise StoreError(f"cannot rename to {new_name!r}")
        below = new_name.startswith(old_name + HIERARCHY_SEPARATOR) and old_name != "INBOX"  # INBOX: see tx
        if new_name == old_name or below:
            raise StoreError("a mailbox cannot be renamed to itself or below itself")

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> None:
            source = conn.execute(
                "SELECT id FROM mailboxes WHERE account_id = ? AND name = ?", (account_id, old_name)
            ).fetchone()
            if source is None:
                raise NotFound(f"no mailbox {old_name}")
            if conn.execute(
                "SELECT 1 FROM mailboxes WHERE account_id = ? AND name = ?", (account_id, new_name)
            ).fetchone():
                raise AlreadyExists(f"mailbox {new_name} exists already")
            if old_name == "INBOX":
                # RFC 9051 section 6.3.6: the messages move to a new mailbox, INBOX stays (empty), and
                # INBOX's inferiors are not renamed.
                self._check_mailbox_count(conn, account_id, max_mailboxes)
                target = create_mailbox_row(conn, account_id, new_name, None)
                events.extend(self._move_all(conn, account_id, int(source[0]), target))
                _copy_inbox_metadata(conn, account_id, int(source[0]), target)
                events.append(ChangeEvent("mailbox", account_id, target, extra={"created": new_name}))
                return
            prefix = old_name + HIERARCHY_SEPARATOR
            rows = conn.execute(
                "SELECT id, name FROM mailboxes "
                "WHERE account_id = ? AND (name = ? OR substr(name, 1, ?) = ?)",
                (account_id, old_name, len(prefix), prefix),
            ).fetchall()
            for mailbox_id, name in rows:
                renamed = new_name + name[len(old_name) :]
                if (
                    renamed != new_name
                    and conn.execute(
                        "SELECT 1 FROM mailboxes WHERE account_id = ? AND name = ?", (account_id, renamed)
                    ).fetchone()
                ):
                    raise AlreadyExists(f"mailbox {renamed} exists already")
                conn.execute("UPDATE mailboxes SET name = ? WHERE id = ?", (renamed, mailbox_id))
                events.append(
                    ChangeEvent("mailbox", account_id, int(mailbox_id), extra={"renamed": (name, renamed)})
                )

        await self._write(tx)

    def _move_all(
        self, conn: sqlite3.Connection, account_id: int, source_id: int, target_id: int
    ) -> list[ChangeEvent]:
        """Every message of source into target (new UIDs, same contents and flags), source left empty; the
        expunge from the source as an event (sessions that have it selected must see the messages go)."""
        uids = [
            int(r[0]) for r in conn.execute("SELECT uid FROM messages WHERE mailbox_id = ?", (source_id,))
        ]
        copy_rows(conn, source_id, uids, target_id)
        removed, modseq = delete_messages(conn, source_id, uids, tombstones=True)
        return [ChangeEvent("expunged", account_id, source_id, tuple(removed), modseq)] if removed else []

    async def set_subscribed(
        self, account_id: int, name: str, subscribed: bool, *, max_subscriptions: int | None = None
    ) -> None:
        name = normalize_mailbox(name)

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> None:
            if subscribed:
                if (
                    max_subscriptions is not None
                    and not conn.execute(
                        "SELECT 1 FROM subscriptions WHERE account_id = ? AND name = ?", (account_id, name)
                    ).fetchone()
                ):
                    (count,) = conn.execute(
                        "SELECT count(*) FROM subscriptions WHERE account_id = ?", (account_id,)
                    ).fetchone()
                    if count >= max_subscriptions:
                        raise LimitExceeded(f"an account may have at most {max_subscriptions} subscriptions")
                cursor = conn.execute(
                    "INSERT OR IGNORE INTO subscriptions (account_id, name) VALUES (?, ?)", (account_id, name)
                )
            else:
                cursor = conn.execute(
                    "DELETE FROM subscriptions WHERE account_id = ? AND name = ?", (account_id, name)
                )
            if cursor.rowcount > 0:  # a change (IMAP NOTIFY's SubscriptionChange, RFC 5465 5.5)
                events.append(
                    ChangeEvent("subscription", account_id, 0, extra={"name": name, "subscribed": subscribed})
                )

        await self._write(tx)

    async def list_subscriptions(self, account_id: int) -> list[str]:
        def q(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT name FROM subscriptions WHERE account_id = ? ORDER BY name", (account_id,)
            )
            return [str(r[0]) for r in rows]

        return await self._read(q)

    async def mailbox_status(self, mailbox_id: int) -> MailboxStatus:
        def q(conn: sqlite3.Connection) -> MailboxStatus:
            row = conn.execute(MAILBOX_SQL + " WHERE id = ?", (mailbox_id,)).fetchone()
            if row is None:
                raise NotFound(f"no mailbox {mailbox_id}")
            mailbox = mailbox_info(row)
            unseen, first_unseen = conn.execute(UNSEEN_OF_MAILBOX, (mailbox_id,)).fetchone()
            modseq, recent_uid = conn.execute(
                "SELECT highest_modseq, recent_uid FROM mailboxes WHERE id = ?", (mailbox_id,)
            ).fetchone()
            recent = conn.execute(
                "SELECT count(*) FROM messages WHERE mailbox_id = ? AND uid > ?", (mailbox_id, recent_uid)
            ).fetchone()[0]
            keywords: set[str] = set()
            for (kw,) in conn.execute(
                "SELECT DISTINCT keywords FROM messages WHERE mailbox_id = ? AND keywords != ''",
                (mailbox_id,),
            ):
                keywords.update(kw.split(" "))
            return MailboxStatus(
                mailbox, int(unseen), first_unseen, int(modseq), int(recent), tuple(sorted(keywords))
            )

        return await self._read(q)

    async def unseen_counts(self, account_id: int) -> dict[int, int]:
        """Counted from the partial index of unseen messages, and kept per mailbox with the mailbox's state
        (UIDVALIDITY, HIGHESTMODSEQ, message count, UIDNEXT: every change of a flag, every message added or
        removed changes one of them), so that a folder list counts again only what changed (30,000 unseen of
        100,000 messages: 4.6 ms each time before)."""

        def q(conn: sqlite3.Connection) -> dict[int, int]:
            found: dict[int, int] = {}
            cache = self._unseen_cache
            if len(cache) > UNSEEN_CACHE_MAILBOXES:
                cache.clear()
            for mailbox_id, *state in conn.execute(
                "SELECT id, uidvalidity, highest_modseq, message_count, uidnext FROM mailboxes "
                "WHERE account_id = ?",
                (account_id,),
            ).fetchall():
                key = tuple(int(v) for v in state)
                kept = cache.get(mailbox_id)
                if kept is not None and kept[0] == key:
                    count = kept[1]
                else:
                    count = int(conn.execute(UNSEEN_OF_MAILBOX, (mailbox_id,)).fetchone()[0])
                    cache[mailbox_id] = (key, count)
                if count:
                    found[int(mailbox_id)] = count
            return found

        return await self._read(q)

    async def claim_recent(self, mailbox_id: int, up_to: int | None = None) -> int:
        """RFC 3501 \\Recent goes to exactly one session: returns the lowest UID that is recent for the
        caller (every UID at or above it that exists now), and marks everything below UIDNEXT as claimed.

        With `up_to`, a claim that `_recent_claimed` shows was made already for every UID up to it is
        answered from there, with no write: when a message arrives, each session of the mailbox asks, and
        only the first one needs the writer (bench/imap_sync_stress.py: 4 claims in 5 were such). The
        cache holds what a claim transaction wrote, set in that transaction (the writer thread), and it only
        grows: a claim is never taken back, and a mailbox id is never given again (decision 0075)."""
        claimed = self._recent_claimed.get(mailbox_id)
        if up_to is not None and claimed is not None and claimed >= up_to:
            return claimed + 1

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> int:
            row = conn.execute(
                "SELECT recent_uid, uidnext FROM mailboxes WHERE id = ?", (mailbox_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no mailbox {mailbox_id}")
            recent_uid, uidnext = int(row[0]), int(row[1])
            if recent_uid != uidnext - 1:  # nothing new: no write, so the commit has nothing to sync
                conn.execute("UPDATE mailboxes SET recent_uid = ? WHERE id = ?", (uidnext - 1, mailbox_id))
            self._recent_claimed[mailbox_id] = uidnext - 1
            return recent_uid + 1

        return await self._write(tx, durable=False)  # decision 0074


def _copy_inbox_metadata(conn: sqlite3.Connection, account_id: int, inbox: int, target: int) -> None:
    """RENAME INBOX: RFC 5464 4.1 says INBOX's annotations SHOULD be copied to the new mailbox (and stay on
    INBOX); not when the copy would take the account past METADATA_ACCOUNT_OCTETS, or each RENAME INBOX would
    add another copy (decision 0067)."""
    octets = "coalesce(sum(length(CAST(name AS BLOB)) + length(value)), 0)"
    total, inbox_octets = conn.execute(
        f"SELECT {octets}, (SELECT {octets} FROM metadata WHERE account_id = ? AND mailbox_id = ?) "  # noqa: S608
        "FROM metadata WHERE account_id = ?",
        (account_id, inbox, account_id),
    ).fetchone()
    if int(total) + int(inbox_octets) <= METADATA_ACCOUNT_OCTETS:
        conn.execute(
            "INSERT INTO metadata (account_id, mailbox_id, name, value) "
            "SELECT account_id, ?, name, value FROM metadata WHERE account_id = ? AND mailbox_id = ?",
            (target, account_id, inbox),
        )
