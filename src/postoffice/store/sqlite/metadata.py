"""IMAP METADATA annotations in the SQLite store (RFC 5464; docs/decisions/0067).

Table `metadata` (schema 22): one row per annotation, (account_id, mailbox_id, name, value), mailbox_id 0
for the account's server entries (`SERVER`). Entry names are case-insensitive (RFC 5464 section 3.2): they
are kept lower-case (ASCII folding; IMAP allows ASCII names only), so a lookup is an exact key.

Implementation notes
- A read takes each asked name and, with a depth, the names below it as one range of the primary key:
  "/a/" <= name < "/a0" ("0" follows "/" in ASCII), so DEPTH infinity of one entry never reads the others.
- `set_metadata` runs as one request of the single writer thread, so its checks of `MetadataLimits` (the
  mailbox's count, the account's octets) and its changes are one transaction: concurrent sessions cannot go
  over a limit together, and a refused change changes nothing (RFC 5464 section 4.3: when one annotation
  fails to be set, none is).
- The rows of a mailbox go with it (`MailboxesMixin.delete_mailbox`), the account's with it
  (`DirectoryMixin.remove_account`); RENAME keeps mailbox ids, so the annotations of a renamed mailbox and of
  its inferiors follow with no write; renaming INBOX copies INBOX's rows to the new mailbox and keeps them on
  INBOX (RFC 5464 section 4.1).
- A change publishes a "metadata" event (`ChangeEvent.extra["entries"]`: the names whose value changed;
  mailbox_id SERVER for the server's entries), for IMAP NOTIFY's MailboxMetadataChange and
  ServerMetadataChange (RFC 5465 5.6, 5.7; decision 0072). Setting a value an entry has already, or removing
  one that is not there, changes nothing and publishes nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence

from postoffice.store.api import (
    ChangeEvent,
    MetadataLimits,
    MetadataTooLarge,
    MetadataTooMany,
    NotFound,
)
from postoffice.store.sqlite.base import SqliteBase

#: The mailbox_id of an account's server annotations (mailbox ids start at 1).
SERVER = 0

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold_name(name: str) -> str:
    """An entry name as kept: ASCII letters lower-case (RFC 5464 section 3.2: names are case-insensitive)."""
    return name.translate(_ASCII_LOWER)


def _octets(name: str, value: bytes) -> int:
    """What an annotation counts against `MetadataLimits.max_account_octets`: its name and value."""
    return len(name.encode("utf-8", "surrogatepass")) + len(value)


class MetadataMixin(SqliteBase):
    async def get_metadata(
        self, account_id: int, mailbox_id: int | None, names: Sequence[str], depth: int | None = 0
    ) -> dict[str, bytes]:
        target = SERVER if mailbox_id is None else mailbox_id
        wanted = list(dict.fromkeys(fold_name(name) for name in names))

        def q(conn: sqlite3.Connection) -> dict[str, bytes]:
            found: dict[str, bytes] = {}
            for name in wanted:
                row = conn.execute(
                    "SELECT value FROM metadata WHERE account_id = ? AND mailbox_id = ? AND name = ?",
                    (account_id, target, name),
                ).fetchone()
                if row is not None:
                    found[name] = bytes(row[0])
                if depth == 0:
                    continue
                below = name + "/"
                for child, value in conn.execute(
                    "SELECT name, value FROM metadata "
                    "WHERE account_id = ? AND mailbox_id = ? AND name >= ? AND name < ? ORDER BY name",
                    (account_id, target, below, name + "0"),
                ):
                    if depth is None or "/" not in child[len(below) :]:
                        found[str(child)] = bytes(value)
            return found

        return await self._read(q)

    async def set_metadata(
        self,
        account_id: int,
        mailbox_id: int | None,
        entries: Mapping[str, bytes | None],
        limits: MetadataLimits,
    ) -> None:
        target = SERVER if mailbox_id is None else mailbox_id
        changes: dict[str, bytes | None] = {}
        for name, value in entries.items():
            changes[fold_name(name)] = value  # in order: of two spellings of one name the last wins
        for value in changes.values():
            if value is not None and len(value) > limits.max_value_size:
                raise MetadataTooLarge(
                    f"annotation values are limited to {limits.max_value_size} octets",
                    limit=limits.max_value_size,
                )

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> None:
            if (
                mailbox_id is not None
                and conn.execute(
                    "SELECT 1 FROM mailboxes WHERE id = ? AND account_id = ?", (mailbox_id, account_id)
                ).fetchone()
                is None
            ):
                raise NotFound(f"no mailbox {mailbox_id} of account {account_id}")
            values = {
                str(name): bytes(value)
                for name, value in conn.execute(
                    "SELECT name, value FROM metadata WHERE account_id = ? AND mailbox_id = ?",
                    (account_id, target),
                )
            }
            before = {name: _octets(name, value) for name, value in values.items()}
            after = dict(before)
            for name, value in changes.items():
                if value is None:
                    after.pop(name, None)
                else:
                    after[name] = _octets(name, value)
            if len(after) > limits.max_entries and len(after) > len(before):
                where = "the server" if mailbox_id is None else "a mailbox"
                raise MetadataTooMany(f"{where} may have at most {limits.max_entries} annotations")
            (account_total,) = conn.execute(
                "SELECT coalesce(sum(length(CAST(name AS BLOB)) + length(value)), 0) FROM metadata "
                "WHERE account_id = ?",
                (account_id,),
            ).fetchone()
            total = int(account_total) - sum(before.values()) + sum(after.values())
            if total > limits.max_account_octets and total > int(account_total):
                raise MetadataTooMany(
                    f"the annotations of an account are limited to {limits.max_account_octets} octets"
                )
            for name, value in changes.items():
                if value is None:
                    conn.execute(
                        "DELETE FROM metadata WHERE account_id = ? AND mailbox_id = ? AND name = ?",
                        (account_id, target, name),
                    )
                else:
                    conn.execute(
                        "INSERT INTO metadata (account_id, mailbox_id, name, value) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (account_id, mailbox_id, name) DO UPDATE SET value = excluded.value",
                        (account_id, target, name, value),
                    )
            changed = tuple(name for name, value in changes.items() if values.get(name) != value)
            if changed:  # IMAP NOTIFY's MailboxMetadataChange / ServerMetadataChange (RFC 5465 5.6, 5.7)
                events.append(ChangeEvent("metadata", account_id, target, extra={"entries": changed}))

        await self._write(tx)
