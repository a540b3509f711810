"""Messages in the SQLite store: delivery, APPEND, COPY/MOVE, flags, expunge, reads, SEARCH, and the
mailbox snapshots SELECT shares (docs/decisions/0016).

Message bytes live in the database (content_data), once per distinct message however many recipients share
it (docs/decisions/0002), with the parsed structure (contents.parsed, without the search text), the search
text in the FTS5 table (content_search) and the kept ENVELOPE / BODYSTRUCTURE (content_imap), all written in
the delivery's transaction. MODSEQ is per account and grows with every change of any of its messages
(RFC 7162); expunged messages leave tombstones (mailbox, uid, modseq) for `changes_since`.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import logging
import sqlite3
import time
from array import array
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from typing import IO, Any

from postoffice.message import ParsedMessage
from postoffice.message.imap_forms import ImapRendering
from postoffice.message.sort_fields import SortFields
from postoffice.plural import counted
from postoffice.store.api import (
    AppendItem,
    ChangeEvent,
    DeliveredCopy,
    FlagUpdate,
    KeywordLimits,
    MailboxChanges,
    MailboxInfo,
    MailboxSnapshot,
    MessageInfo,
    NotFound,
    StoreFull,
    advance_snapshot,
    build_snapshot,
    quota_refusal,
)
from postoffice.store.criteria import Criteria
from postoffice.store.search import run_search
from postoffice.store.sqlite.base import SMALL_READ_ROWS, ReadTooLarge, SqliteBase
from postoffice.store.sqlite.columns import FLAG_BITS, columns_to_flags, flags_to_columns
from postoffice.store.sqlite.connection import STREAM_THRESHOLD, write_blob
from postoffice.store.sqlite.keywords import check_keyword_room, keywords_of, keywords_that_fit
from postoffice.store.sqlite.quota import account_quota, account_used, check_quota_room
from postoffice.store.sqlite.rows import (
    MAILBOX_SQL,
    MESSAGE_COLUMNS,
    SORT_FIELDS_SQL,
    append_row,
    copy_rows,
    delete_messages,
    insert_addresses,
    insert_kept_forms,
    insert_sort_fields,
    mailbox_info,
    message_info,
    parsed_thread_keys,
    render_kept_forms,
    sort_columns_reader,
    sort_fields_row,
    thread_for,
)

log = logging.getLogger("postoffice.store")

#: Mailbox snapshots kept for SELECT, in messages over all mailboxes (about 36 octets each).
SNAPSHOT_CACHE_MESSAGES = 1_000_000

#: Octets a COPY/MOVE row counts as for admission (decision 0030): the row and its index entries (the content
#: is shared).
COPY_ROW_SIZE = 256


#: `changes_since` reads on the event loop when at most this many messages changed and as many were expunged
#: (a few hundred rows of an index: well under a millisecond); more go to a reader thread.
SMALL_CHANGES = 200
#: Contents are read on the event loop (`SqliteBase._read_small`) when they are at most SMALL_READ_ROWS and
#: come to at most this many octets in all (the kept renderings, parsed structures and snippets of at most
#: SMALL_READ_ROWS messages always are: `SqliteBase._read_few`).
SMALL_READ_OCTETS = 256 * 1024


def snapshot_of_rows(info: MailboxInfo, highest: int, rows: list[tuple[Any, ...]]) -> MailboxSnapshot:
    """What `build_snapshot` makes of these rows (`MessagesMixin._SNAPSHOT_SQL`, in UID order), column by
    column: the first SELECT of a 100,000-message mailbox reads them all, and a MessageInfo per row cost
    most of its time (100,000 messages: 0.50-0.58 s of CPU, against 0.29-0.32 s here, fetching the rows
    included)."""
    if not rows:
        return build_snapshot(info, highest, [])
    uids, bits, keyword_lists, content_ids, sizes, dates, modseqs = zip(*rows, strict=True)
    pairs = list(zip(bits, keyword_lists, strict=True))
    distinct = {pair: columns_to_flags(*pair) for pair in set(pairs)}
    seen = FLAG_BITS["\\seen"]
    unseen = [i for i, b in enumerate(bits) if not b & seen]
    keywords: set[str] = set()
    for combination in distinct.values():
        keywords.update(f for f in combination if not f.startswith("\\"))
    return MailboxSnapshot(
        info,
        max(highest, max(modseqs)),
        array("I", uids),
        tuple(map(distinct.__getitem__, pairs)),
        array("q", content_ids),
        array("q", sizes),
        array("d", dates),
        len(unseen),
        uids[unseen[0]] if unseen else None,
        frozenset(keywords),
        array("q", modseqs),
    )


class MessagesMixin(SqliteBase):
    #: mailbox id -> the newest snapshot read (LRU, bounded by SNAPSHOT_CACHE_MESSAGES in all)
    _snapshots: collections.OrderedDict[int, MailboxSnapshot]

    async def append(
        self,
        mailbox_id: int,
        source: IO[bytes],
        parsed: ParsedMessage,
        flags: Iterable[str] = (),
        internaldate: float | None = None,
    ) -> DeliveredCopy:
        """IMAP APPEND: one message into one mailbox, durable when it returns."""
        (copy,) = await self.append_many(mailbox_id, [AppendItem(source, parsed, flags, internaldate)])
        return copy

    async def append_many(
        self, mailbox_id: int, messages: Sequence[AppendItem], *, keyword_limits: KeywordLimits | None = None
    ) -> list[DeliveredCopy]:
        """APPEND / MULTIAPPEND: every message in one transaction (RFC 3502: all or none); the storage quota
        checked in it (docs/decisions/0053)."""
        prepared = []
        adding: set[str] = set()
        for item in messages:
            parsed_json = dataclasses.replace(item.parsed, search_headers="", search_text="").to_json()
            bits, keywords = flags_to_columns(item.flags)
            adding.update(keywords.split(" ") if keywords else ())
            when = time.time() if item.internaldate is None else item.internaldate
            keys = parsed_thread_keys(item.parsed)
            prepared.append((item.source, item.parsed, parsed_json, bits, keywords, when, keys))
        sizes = [item.parsed.size for item in messages]

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> list[DeliveredCopy]:
            row = conn.execute("SELECT account_id FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()
            if row is None:
                raise NotFound(f"no mailbox {mailbox_id}")
            account_id = int(row[0])
            check_keyword_room(conn, mailbox_id, adding, keyword_limits)
            check_quota_room(conn, account_id, sum(sizes), max(sizes, default=0))
            copies: list[DeliveredCopy] = []
            for source, parsed, parsed_json, bits, keywords, when, keys in prepared:
                content_id = self._insert_content(conn, source, parsed, parsed_json, 1)
                thread = thread_for(conn, account_id, keys)
                uid, modseq = append_row(
                    conn, account_id, mailbox_id, content_id, bits, keywords, when, parsed.size, thread
                )
                events.append(ChangeEvent("added", account_id, mailbox_id, (uid,), modseq))
                copies.append(DeliveredCopy(account_id, mailbox_id, uid))
            return copies

        return await self._write(tx, grows=sum(item.parsed.size for item in messages))

    async def copy_messages(
        self,
        source_mailbox_id: int,
        uids: Iterable[int],
        target_mailbox_id: int,
        *,
        move: bool = False,
        keyword_limits: KeywordLimits | None = None,
        settable: Collection[str] | None = None,
    ) -> list[tuple[int, int]]:
        """COPY / MOVE (RFC 6851): (source uid, new uid) pairs in source UID order; flags, keywords and
        internal dates are kept (keywords only as far as `keyword_limits` allow in the target), the content is
        shared. A move expunges the sources in the same transaction. The target account's storage quota is
        checked in the transaction, but not for a copy into its \\Trash from its own mailboxes (deleting
        always works) nor for a move within one account (it adds nothing): docs/decisions/0053."""
        wanted = sorted(set(uids))

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> list[tuple[int, int]]:
            accounts = {
                int(mid): int(aid)
                for mid, aid in conn.execute(
                    "SELECT id, account_id FROM mailboxes WHERE id IN (?, ?)",
                    (source_mailbox_id, target_mailbox_id),
                )
            }
            if source_mailbox_id not in accounts or target_mailbox_id not in accounts:
                raise NotFound("no such mailbox")
            allowed = None
            if keyword_limits is not None:
                copied = keywords_of(conn, source_mailbox_id, wanted)
                allowed = keywords_that_fit(conn, target_mailbox_id, copied, keyword_limits)
            bits = -1  # the system flags the copies keep: with `settable`, only those (decision 0073)
            if settable is not None:
                bits = flags_to_columns(settable)[0]
                if "\\*" not in settable:
                    allowed = set()
            target_account = accounts[target_mailbox_id]
            quota = 0
            if not (move and accounts[source_mailbox_id] == target_account):
                (special_use,) = conn.execute(
                    "SELECT special_use FROM mailboxes WHERE id = ?", (target_mailbox_id,)
                ).fetchone()
                # the \Trash exemption is for the account's own deletes: a copy from another account (into a
                # Trash shared with it, IMAP ACL, decision 0073) adds to the owner's mail like any other
                if special_use != "\\Trash" or accounts[source_mailbox_id] != target_account:
                    quota = account_quota(conn, target_account)
            before = account_used(conn, target_account) if quota > 0 else 0
            pairs = copy_rows(conn, source_mailbox_id, wanted, target_mailbox_id, allowed, bits=bits)
            if quota > 0:
                # measured on the rows as copied (source UIDs that are gone add nothing); a copy is refused
                # as over the quota only, never as "too large" on its own (largest=0): it is stored already
                refusal = quota_refusal(quota, before, account_used(conn, target_account) - before, 0)
                if refusal is not None:
                    raise refusal  # the request's savepoint is rolled back: nothing was copied
            if pairs:
                new_uids = tuple(new for _, new in pairs)
                modseq = int(
                    conn.execute(
                        "SELECT highest_modseq FROM mailboxes WHERE id = ?", (target_mailbox_id,)
                    ).fetchone()[0]
                )
                events.append(
                    ChangeEvent(
                        "added",
                        accounts[target_mailbox_id],
                        target_mailbox_id,
                        new_uids,
                        modseq,
                        {"copied_from": source_mailbox_id, "moved": move},
                    )
                )
            if move and pairs:
                removed, modseq = delete_messages(
                    conn, source_mailbox_id, [old for old, _ in pairs], tombstones=True
                )
                events.append(
                    ChangeEvent(
                        "expunged", accounts[source_mailbox_id], source_mailbox_id, tuple(removed), modseq
                    )
                )
            return pairs

        return await self._write(tx, grows=COPY_ROW_SIZE * len(wanted))

    def _insert_content(
        self,
        conn: sqlite3.Connection,
        source: IO[bytes],
        parsed: ParsedMessage,
        parsed_json: str,
        refcount: int,
    ) -> int:
        """The message bytes, its parsed structure (`parsed_json`: without the search text, which lives in the
        FTS table only) and its search text, shared by `refcount` message rows."""
        # the id from a counter, never SQLite's max(id) + 1: a content id is never given twice (IMAP's
        # EMAILID, RFC 8474, is made of it, and must never name another message later)
        content_id = int(
            conn.execute(
                "UPDATE meta SET value = value + 1 WHERE key = 'next_content_id' RETURNING value - 1"
            ).fetchone()[0]
        )
        conn.execute(
            "INSERT INTO contents (id, size, refcount, parsed, created, sent_date, search_truncated) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                content_id,
                parsed.size,
                refcount,
                parsed_json,
                time.time(),
                parsed.sent_date,
                int(parsed.search_truncated),
            ),
        )
        self._write_content(conn, content_id, source, parsed.size)
        insert_kept_forms(conn, content_id, render_kept_forms(parsed))
        # SQLite's LIKE stops at a NUL; no search string can contain one (postoffice.store.criteria)
        conn.execute(
            "INSERT INTO content_search (rowid, headers, body) VALUES (?, ?, ?)",
            (
                content_id,
                parsed.search_headers.replace("\x00", "\ufffd"),
                parsed.search_text.replace("\x00", "\ufffd"),
            ),
        )
        insert_addresses(conn, content_id, parsed)
        insert_sort_fields(conn, content_id, parsed)
        return content_id

    @staticmethod
    def _write_content(conn: sqlite3.Connection, content_id: int, source: IO[bytes], size: int) -> None:
        write_blob(conn, "content_data", content_id, source, size)

    @staticmethod
    def _changes(
        conn: sqlite3.Connection,
        mailbox_id: int,
        modseq: int,
        highest: int,
        horizon: int,
        limit: int | None = None,
    ) -> MailboxChanges:
        """The changes after `modseq`; with `limit`, ReadTooLarge when there are more changed messages or
        expunges than that, or when the whole list of UIDs would be needed (`horizon`: the mailbox's
        vanished_horizon, read by the caller with its highest_modseq)."""
        if highest <= modseq:  # nothing changed (the common case of a poll): no need to look
            return MailboxChanges([], [], highest, None)
        present: list[int] | None = None
        if modseq < horizon:  # some expunges after `modseq` were forgotten
            if limit is not None:
                raise ReadTooLarge
            uids = conn.execute("SELECT uid FROM messages WHERE mailbox_id = ? ORDER BY uid", (mailbox_id,))
            present = [int(r[0]) for r in uids]
        bound = -1 if limit is None else limit + 1
        rows = conn.execute(
            f"SELECT {MESSAGE_COLUMNS} FROM messages INDEXED BY messages_modseq "  # noqa: S608
            "WHERE mailbox_id = ? AND modseq > ? ORDER BY uid LIMIT ?",
            (mailbox_id, modseq, bound),
        ).fetchall()
        expunged = [
            int(r[0])
            for r in conn.execute(
                # by the MODSEQ index: for ORDER BY uid SQLite would rather walk the primary key, that is
                # every expunge of the mailbox in the last `tombstone_days`, at every command's read-back
                "SELECT uid FROM tombstones INDEXED BY tombstones_modseq WHERE mailbox_id = ? AND modseq > ? "
                "ORDER BY uid LIMIT ?",
                (mailbox_id, modseq, bound),
            )
        ]
        if limit is not None and (len(rows) > limit or len(expunged) > limit):
            raise ReadTooLarge
        messages = [message_info(r) for r in rows]
        return MailboxChanges(messages, expunged, max([highest, *(m.modseq for m in messages)]), present)

    async def prune_tombstones(self, before: float) -> int:
        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> int:
            conn.execute(
                "UPDATE mailboxes SET vanished_horizon = max(vanished_horizon, (SELECT max(modseq) FROM "
                "tombstones t WHERE t.mailbox_id = mailboxes.id AND t.expunged_at < ?)) "
                "WHERE id IN (SELECT mailbox_id FROM tombstones WHERE expunged_at < ?)",
                (before, before),
            )
            return int(conn.execute("DELETE FROM tombstones WHERE expunged_at < ?", (before,)).rowcount)

        pruned = await self._write(tx)
        if pruned:
            self._snapshots.clear()  # a cached snapshot may be older than a horizon: read afresh
        return pruned

    async def changes_since(self, mailbox_id: int, modseq: int) -> MailboxChanges:
        """On the event loop when the changes are few (the common case: each IMAP command ends with this
        read when its mailbox changed), else on a reader thread."""

        def q(conn: sqlite3.Connection, limit: int | None = None) -> MailboxChanges:
            row = conn.execute(
                "SELECT highest_modseq, vanished_horizon FROM mailboxes WHERE id = ?", (mailbox_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no mailbox {mailbox_id}")
            return self._changes(conn, mailbox_id, modseq, int(row[0]), int(row[1]), limit)

        return await self._read_small(functools.partial(q, limit=SMALL_CHANGES), q)

    _SNAPSHOT_SQL = (
        "SELECT uid, flags, keywords, content_id, size, internaldate, modseq FROM messages "
        "WHERE mailbox_id = ? ORDER BY uid"
    )

    async def snapshot(self, mailbox_id: int) -> MailboxSnapshot:
        """From the cache when nothing changed; else the cached snapshot advanced by `changes_since` (cost in
        proportion to the changes, plus copying the columns); a full read only the first time."""
        base = self._snapshots.get(mailbox_id)

        def q(conn: sqlite3.Connection) -> MailboxSnapshot:
            row = conn.execute(MAILBOX_SQL + " WHERE id = ?", (mailbox_id,)).fetchone()
            if row is None:
                raise NotFound(f"no mailbox {mailbox_id}")
            info = mailbox_info(row)
            highest, horizon = (
                int(v)
                for v in conn.execute(
                    "SELECT highest_modseq, vanished_horizon FROM mailboxes WHERE id = ?", (mailbox_id,)
                ).fetchone()
            )
            if base is not None and base.mailbox.uidvalidity == info.uidvalidity:  # ids can be reused
                if base.modseq == highest:
                    return base if base.mailbox == info else dataclasses.replace(base, mailbox=info)
                changes = self._changes(conn, mailbox_id, base.modseq, highest, horizon)
                if changes.present is None:  # else some expunges were forgotten: read it whole
                    return advance_snapshot(base, info, changes)
            return snapshot_of_rows(info, highest, conn.execute(self._SNAPSHOT_SQL, (mailbox_id,)).fetchall())

        snapshot = await self._read(q)
        current = self._snapshots.get(mailbox_id)
        if current is None or current.modseq <= snapshot.modseq:
            self._snapshots[mailbox_id] = snapshot
            self._snapshots.move_to_end(mailbox_id)
            total = sum(len(s.uids) for s in self._snapshots.values())
            while total > SNAPSHOT_CACHE_MESSAGES and len(self._snapshots) > 1:
                _, evicted = self._snapshots.popitem(last=False)
                total -= len(evicted.uids)
        return snapshot

    async def imap_renderings(self, content_ids: Sequence[int]) -> dict[int, ImapRendering]:
        wanted = list(dict.fromkeys(content_ids))

        def q(conn: sqlite3.Connection) -> dict[int, ImapRendering]:
            found: dict[int, ImapRendering] = {}
            for start in range(0, len(wanted), 500):  # stay below SQLite's bound-parameter limit
                batch = wanted[start : start + 500]
                marks = ",".join("?" * len(batch))
                # S608: `marks` is "?,?,...": the ids are parameters
                for cid, env, body, env8, body8 in conn.execute(
                    "SELECT id, envelope, bodystructure, envelope_utf8, bodystructure_utf8 "  # noqa: S608
                    f"FROM content_imap WHERE id IN ({marks})",
                    batch,
                ):
                    found[int(cid)] = ImapRendering(env, body, env8, body8)
            return found

        return await self._read_few(q, len(wanted)) if wanted else {}

    async def sort_fields(self, content_ids: Sequence[int]) -> dict[int, SortFields]:
        wanted = list(dict.fromkeys(content_ids))

        def q(conn: sqlite3.Connection) -> dict[int, SortFields]:
            # one statement for any number of ids: a JSON array parameter (no bound-parameter limit)
            rows = conn.execute(
                f"{SORT_FIELDS_SQL} WHERE id IN (SELECT value FROM json_each(?))",  # noqa: S608
                (json.dumps(wanted),),
            )
            return dict(sort_fields_row(r) for r in rows)

        return await self._read_few(q, len(wanted)) if wanted else {}

    async def sort_columns(
        self, content_ids: Sequence[int], names: Sequence[str]
    ) -> dict[str, dict[int, Any]]:
        wanted = list(dict.fromkeys(content_ids))
        read = sort_columns_reader(names)  # ValueError before any read

        def q(conn: sqlite3.Connection) -> dict[str, dict[int, Any]]:
            rows = conn.execute(
                f"SELECT id, {read.sql} FROM content_sort WHERE id IN (SELECT value FROM json_each(?))",  # noqa: S608 - column names of a fixed list
                (json.dumps(wanted),),
            )
            return read.tables(rows)

        return await self._read_few(q, len(wanted)) if wanted else {name: {} for name in read.names}

    async def get_parsed_many(self, content_ids: Sequence[int]) -> dict[int, ParsedMessage]:
        wanted = list(dict.fromkeys(content_ids))

        def q(conn: sqlite3.Connection) -> dict[int, ParsedMessage]:
            # decoded in the reader thread: a batch of large structures is milliseconds of JSON work that
            # must not run on the event loop
            found: dict[int, ParsedMessage] = {}
            for start in range(0, len(wanted), 500):
                batch = wanted[start : start + 500]
                marks = ",".join("?" * len(batch))
                for cid, parsed in conn.execute(
                    f"SELECT id, parsed FROM contents WHERE id IN ({marks})",  # noqa: S608 - "?,?,...": parameters
                    batch,
                ):
                    found[int(cid)] = ParsedMessage.from_json(str(parsed))
            return found

        return await self._read_few(q, len(wanted)) if wanted else {}

    async def expunge_deleted(self, mailbox_id: int, only: Iterable[int] | None = None) -> list[int]:
        return await self._expunge_in_steps(mailbox_id, None if only is None else sorted(set(only)), True)

    async def list_messages(self, mailbox_id: int) -> list[MessageInfo]:
        def q(conn: sqlite3.Connection) -> list[MessageInfo]:
            rows = conn.execute(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE mailbox_id = ? ORDER BY uid",  # noqa: S608
                (mailbox_id,),
            )
            return [message_info(r) for r in rows]

        return await self._read(q)

    async def list_page(self, mailbox_id: int, offset: int, limit: int) -> list[MessageInfo]:
        def q(conn: sqlite3.Connection) -> list[MessageInfo]:
            rows = conn.execute(
                f"SELECT {MESSAGE_COLUMNS} FROM messages "  # noqa: S608
                "WHERE mailbox_id = ? ORDER BY uid DESC LIMIT ? OFFSET ?",
                (mailbox_id, max(0, limit), max(0, offset)),
            )
            return [message_info(r) for r in rows]

        return await self._read(q)

    async def snippets(self, content_ids: Sequence[int], length: int = 200) -> dict[int, str]:
        wanted = sorted(set(content_ids))

        def q(conn: sqlite3.Connection) -> dict[int, str]:
            found: dict[int, str] = {}
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                # FTS5's own copy of the text (content_search_content: c1 = body); only "?" marks put in
                sql = f"SELECT id, substr(c1, 1, ?) FROM content_search_content WHERE id IN ({marks})"  # noqa: S608
                for content_id, text in conn.execute(sql, (length * 4, *chunk)):
                    found[int(content_id)] = " ".join(str(text or "").split())[:length]
            return found

        return await self._read_few(q, len(wanted))

    async def get_messages(self, mailbox_id: int, uids: Iterable[int]) -> list[MessageInfo]:
        wanted = sorted(set(uids))

        def q(conn: sqlite3.Connection) -> list[MessageInfo]:
            found: list[MessageInfo] = []
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                # the only text put in is "?" marks
                where = f"WHERE mailbox_id = ? AND uid IN ({marks}) ORDER BY uid"
                sql = f"SELECT {MESSAGE_COLUMNS} FROM messages {where}"  # noqa: S608
                rows = conn.execute(sql, (mailbox_id, *chunk))
                found += [message_info(r) for r in rows]
            return found

        return await self._read(q)

    async def search(self, mailbox_id: int, criteria: Criteria, *, newest: int | None = None) -> list[int]:
        """Answered by one SQL query from the columns and the FTS5 index (`postoffice.store.search`)."""

        def q(conn: sqlite3.Connection) -> list[int]:
            uids = run_search(conn, mailbox_id, criteria, newest=newest)
            if uids is None:
                raise NotFound(f"no mailbox {mailbox_id}")
            return uids

        return await self._read(q)

    async def get_parsed(self, content_id: int) -> ParsedMessage:
        def q(conn: sqlite3.Connection) -> str:
            row = conn.execute("SELECT parsed FROM contents WHERE id = ?", (content_id,)).fetchone()
            if row is None:
                raise NotFound(f"no content {content_id}")
            return str(row[0])

        return ParsedMessage.from_json(await self._read(q))

    async def read_content(self, content_id: int) -> bytes:
        def q(conn: sqlite3.Connection) -> bytes:
            row = conn.execute("SELECT data FROM content_data WHERE id = ?", (content_id,)).fetchone()
            if row is None:
                raise NotFound(f"no content {content_id}")
            return bytes(row[0])

        return await self._read(q)

    async def read_contents(
        self, content_ids: Sequence[int], *, octets: int | None = None
    ) -> dict[int, bytes]:
        wanted = list(dict.fromkeys(content_ids))
        if not wanted:
            return {}

        def q(conn: sqlite3.Connection) -> dict[int, bytes]:
            found: dict[int, bytes] = {}
            for start in range(0, len(wanted), 500):  # stay below SQLite's bound-parameter limit
                batch = wanted[start : start + 500]
                marks = ",".join("?" * len(batch))
                for cid, data in conn.execute(
                    f"SELECT id, data FROM content_data WHERE id IN ({marks})",  # noqa: S608 - "?,?,...": parameters
                    batch,
                ):
                    found[int(cid)] = bytes(data)
            return found

        if octets is not None:  # the caller knows the sizes: one statement, on the event loop when small
            if len(wanted) <= SMALL_READ_ROWS and octets <= SMALL_READ_OCTETS:
                return await self._read_small(q, single=True)
            return await self._read(q)

        def small(conn: sqlite3.Connection) -> dict[int, bytes]:
            if len(wanted) > SMALL_READ_ROWS:
                raise ReadTooLarge
            marks = ",".join("?" * len(wanted))
            total = conn.execute(
                f"SELECT coalesce(sum(size), 0) FROM contents WHERE id IN ({marks})",  # noqa: S608 - "?,?,...": parameters
                wanted,
            ).fetchone()[0]
            if int(total) > SMALL_READ_OCTETS:
                raise ReadTooLarge
            return q(conn)

        return await self._read_small(small, q)

    async def read_range(self, content_id: int, offset: int, length: int) -> bytes:
        """Incremental blob I/O: only the pages that hold the range are read."""
        offset, length = max(offset, 0), max(length, 0)

        def q(conn: sqlite3.Connection) -> bytes:
            try:
                blob = conn.blobopen("content_data", "data", content_id, readonly=True)
            except sqlite3.OperationalError:
                raise NotFound(f"no content {content_id}") from None
            with blob:
                if offset >= len(blob):
                    return b""
                blob.seek(offset)
                return blob.read(length)

        return await self._read(q) if length else b""

    async def open_content(self, content_id: int, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        def size_of(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT size FROM contents WHERE id = ?", (content_id,)).fetchone()
            if row is None:
                raise NotFound(f"no content {content_id}")
            return int(row[0])

        size = await self._read(size_of)
        if size <= STREAM_THRESHOLD:
            data = await self.read_content(content_id)
            for offset in range(0, len(data), chunk_size):
                yield data[offset : offset + chunk_size]
            return
        async for chunk in self._stream_blob("content_data", content_id, chunk_size):
            yield chunk

    async def expunge(self, mailbox_id: int, uids: Iterable[int]) -> list[int]:
        return await self._expunge_in_steps(mailbox_id, sorted(set(uids)), False)

    async def _expunge_in_steps(
        self, mailbox_id: int, uids: list[int] | None, deleted_only: bool
    ) -> list[int]:
        """Remove the messages `uids` (None: every one; with `deleted_only`, those of them that carry
        \\Deleted) in one transaction. When the disk cannot take that transaction (StoreFull: it needs more
        than the free space and the reserve, decision 0030), in two halves, each on its own the same way
        and committed: the expunge makes progress down to single messages. A message that cannot be
        removed alone raises StoreFull; what was removed before it stays removed (its change events are
        published, so sessions report it)."""
        try:
            return await self._write(self._expunge_tx(mailbox_id, uids, deleted_only))
        except StoreFull:
            if uids is None:
                uids = await self._read(lambda conn: self._expunge_candidates(conn, mailbox_id, deleted_only))
            if len(uids) <= 1:
                raise
        log.warning(
            "not enough disk space to expunge %s of mailbox %d in one transaction: in steps",
            counted(len(uids), "message"),
            mailbox_id,
        )
        half = len(uids) // 2
        removed = await self._expunge_in_steps(mailbox_id, uids[:half], deleted_only)
        return removed + await self._expunge_in_steps(mailbox_id, uids[half:], deleted_only)

    @staticmethod
    def _expunge_candidates(conn: sqlite3.Connection, mailbox_id: int, deleted_only: bool) -> list[int]:
        if deleted_only:
            rows = conn.execute(
                "SELECT uid FROM messages WHERE mailbox_id = ? AND flags & ? != 0 ORDER BY uid",
                (mailbox_id, FLAG_BITS["\\deleted"]),
            )
        else:
            rows = conn.execute("SELECT uid FROM messages WHERE mailbox_id = ? ORDER BY uid", (mailbox_id,))
        return [int(uid) for (uid,) in rows]

    @classmethod
    def _expunge_tx(
        cls, mailbox_id: int, uids: list[int] | None, deleted_only: bool
    ) -> Callable[[sqlite3.Connection, list[ChangeEvent]], list[int]]:
        allowed = None if uids is None else set(uids)

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> list[int]:
            row = conn.execute("SELECT account_id FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()
            if row is None:
                raise NotFound(f"no mailbox {mailbox_id}")
            if deleted_only or uids is None:
                doomed = [
                    uid
                    for uid in cls._expunge_candidates(conn, mailbox_id, deleted_only)
                    if allowed is None or uid in allowed
                ]
            else:
                doomed = uids
            if not doomed:
                return []
            removed, modseq = delete_messages(conn, mailbox_id, doomed, tombstones=True)
            if removed:
                events.append(ChangeEvent("expunged", int(row[0]), mailbox_id, tuple(removed), modseq))
            return removed

        return tx

    async def store_flags(
        self,
        mailbox_id: int,
        uids: Iterable[int],
        flags: Iterable[str],
        mode: str,
        *,
        keyword_limits: KeywordLimits | None = None,
        settable: Collection[str] | None = None,
    ) -> int:
        update = await self._store_flags(mailbox_id, uids, flags, mode, None, keyword_limits, settable)
        return update.modseq

    async def store_flags_unchanged_since(
        self,
        mailbox_id: int,
        uids: Iterable[int],
        flags: Iterable[str],
        mode: str,
        unchanged_since: int,
        *,
        keyword_limits: KeywordLimits | None = None,
        settable: Collection[str] | None = None,
    ) -> FlagUpdate:
        return await self._store_flags(
            mailbox_id, uids, flags, mode, unchanged_since, keyword_limits, settable
        )

    async def _store_flags(
        self,
        mailbox_id: int,
        uids: Iterable[int],
        flags: Iterable[str],
        mode: str,
        unchanged_since: int | None,
        keyword_limits: KeywordLimits | None,
        settable: Collection[str] | None = None,
    ) -> FlagUpdate:
        if mode not in ("add", "remove", "replace"):
            raise ValueError(f"bad flag mode {mode!r}")
        wanted = sorted(set(uids))
        bits, keywords = flags_to_columns(flags)
        new_keywords = set(keywords.split(" ")) if keywords else set()
        # the flags outside `settable` stay as they are (IMAP ACL, decision 0073)
        kept_bits = 0 if settable is None else ~flags_to_columns(settable)[0]
        keep_keywords = settable is not None and "\\*" not in settable

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> FlagUpdate:
            row = conn.execute("SELECT account_id FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()
            if row is None:
                raise NotFound(f"no mailbox {mailbox_id}")
            account_id = int(row[0])
            changes: list[tuple[int, int, str]] = []
            modified: list[int] = []
            added: set[str] = set()
            for uid in wanted:
                r = conn.execute(
                    "SELECT flags, keywords, modseq FROM messages WHERE mailbox_id = ? AND uid = ?",
                    (mailbox_id, uid),
                ).fetchone()
                if r is None:
                    continue
                if unchanged_since is not None and int(r[2]) > unchanged_since:
                    modified.append(uid)
                    continue
                old_bits, old_kw = int(r[0]), set(r[1].split(" ")) if r[1] else set()
                if mode == "add":
                    nb, nk = old_bits | bits, old_kw | new_keywords
                elif mode == "remove":
                    nb, nk = old_bits & ~bits, old_kw - new_keywords
                else:
                    nb, nk = bits, set(new_keywords)
                nb = (nb & ~kept_bits) | (old_bits & kept_bits)
                if keep_keywords:
                    nk = old_kw
                if nb != old_bits or nk != old_kw:
                    changes.append((uid, nb, " ".join(sorted(nk))))
                    added |= nk - old_kw
            check_keyword_room(conn, mailbox_id, added, keyword_limits)
            if not changes:
                highest = conn.execute(
                    "SELECT highest_modseq FROM accounts WHERE id = ?", (account_id,)
                ).fetchone()[0]
                return FlagUpdate(int(highest), tuple(modified))
            modseq = conn.execute(
                "UPDATE accounts SET highest_modseq = highest_modseq + 1 WHERE id = ? "
                "RETURNING highest_modseq",
                (account_id,),
            ).fetchone()[0]
            conn.executemany(
                "UPDATE messages SET flags = ?, keywords = ?, modseq = ? WHERE mailbox_id = ? AND uid = ?",
                [(nb, nk, modseq, mailbox_id, uid) for uid, nb, nk in changes],
            )
            conn.execute("UPDATE mailboxes SET highest_modseq = ? WHERE id = ?", (modseq, mailbox_id))
            events.append(
                ChangeEvent("flags", account_id, mailbox_id, tuple(u for u, _, _ in changes), modseq)
            )
            return FlagUpdate(int(modseq), tuple(modified))

        return await self._write(tx, durable=False)  # decision 0074
