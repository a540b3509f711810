"""Deliveries in the SQLite store: `commit_delivery` writes a whole `Delivery` in one write request, so in one
savepoint of the writer's transaction (all or nothing): the distinct texts (one content each, shared by the
copies that name it), the message rows with their own mailbox, flags and keywords, the queue entry for
remote recipients, generated DSNs, Sieve vacation replies that are due (`sieve_vacation` records when the
last went), reports of Sieve script errors (once per script version), and the delivery results of a queued
message that the delivery completes.

The order inside the request is that of the queue's own bookkeeping before this part existed: results
first (a recipient that is final already fails the request before anything is written), then the copies,
then what is queued, then the recorded message is read back and removed when every recipient is final.
"""

from __future__ import annotations

import dataclasses
import io
import sqlite3
import time

from postoffice.store.api import (
    ChangeEvent,
    DeliveredCopy,
    Delivery,
    DeliveryResult,
    NotFound,
    QueuedMessage,
    VacationReply,
)
from postoffice.store.sqlite.base import SqliteBase
from postoffice.store.sqlite.columns import flags_to_columns, normalize_mailbox
from postoffice.store.sqlite.rows import append_row, parsed_thread_keys, thread_for


class DeliveryMixin(SqliteBase):
    async def commit_delivery(self, delivery: Delivery) -> DeliveryResult:
        delivery.check()
        if delivery.empty:
            return DeliveryResult([])
        # prepared on the event loop, as before: JSON of the structures, flag columns
        uses: dict[int, int] = {}
        for copy in delivery.copies:
            uses[copy.text] = uses.get(copy.text, 0) + 1
        stored = {
            index: dataclasses.replace(
                delivery.texts[index].parsed, search_headers="", search_text=""
            ).to_json()
            for index in uses
        }
        columns = {copy.flags: flags_to_columns(copy.flags) for copy in delivery.copies}
        keys = {index: parsed_thread_keys(delivery.texts[index].parsed) for index in uses}
        when = time.time() if delivery.internaldate is None else delivery.internaldate
        notice_json = {
            notice.script_id: dataclasses.replace(
                notice.text.parsed, search_headers="", search_text=""
            ).to_json()
            for notice in delivery.notices
        }
        fcc_json = {
            n: dataclasses.replace(reply.fcc.text.parsed, search_headers="", search_text="").to_json()
            for n, reply in enumerate(delivery.vacations)
            if reply.fcc is not None
        }
        record = delivery.record

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> DeliveryResult:
            if record is not None:
                self._record_rows(conn, record.queue_id, record.results, bounces=bool(delivery.generated))
            contents: dict[int, int] = {}
            for index, parsed_json in stored.items():
                text = delivery.texts[index]
                contents[index] = self._insert_content(
                    conn, text.source, text.parsed, parsed_json, uses[index]
                )
            copies: list[DeliveredCopy] = []
            threads: dict[tuple[int, int], int] = {}  # (account, text): one conversation for all its copies
            for copy in delivery.copies:
                mailbox_id = _target_mailbox(
                    conn, copy.account_id, copy.mailbox, copy.special_use, copy.or_inbox
                )
                bits, keywords = columns[copy.flags]
                size = delivery.texts[copy.text].parsed.size
                thread = threads.get((copy.account_id, copy.text))
                if thread is None:
                    thread = threads[copy.account_id, copy.text] = thread_for(
                        conn, copy.account_id, keys[copy.text]
                    )
                uid, modseq = append_row(
                    conn, copy.account_id, mailbox_id, contents[copy.text], bits, keywords, when, size, thread
                )
                copies.append(DeliveredCopy(copy.account_id, mailbox_id, uid))
                events.append(ChangeEvent("added", copy.account_id, mailbox_id, (uid,), modseq))
            queue_id = None
            if delivery.outbound is not None:
                first = delivery.texts[0]
                queue_id = self._enqueue_rows(
                    conn, events, first.source, first.parsed.size, delivery.outbound
                )
            now = time.time()
            replies = []
            for n, reply in enumerate(delivery.vacations):
                if not _vacation_due(conn, reply, now):
                    continue
                replies.append(reply.message)
                if reply.fcc is not None:  # RFC 8580: the copy only of a reply that goes
                    fcc = reply.fcc
                    content = self._insert_content(conn, fcc.text.source, fcc.text.parsed, fcc_json[n], 1)
                    box = _target_mailbox(conn, reply.account_id, fcc.mailbox, fcc.special_use, True)
                    thread = thread_for(conn, reply.account_id, parsed_thread_keys(fcc.text.parsed))
                    bits, keywords = flags_to_columns(fcc.flags)
                    size = fcc.text.parsed.size
                    uid, modseq = append_row(
                        conn, reply.account_id, box, content, bits, keywords, now, size, thread
                    )
                    events.append(ChangeEvent("added", reply.account_id, box, (uid,), modseq))
            for generated in (*delivery.generated, *delivery.forwards, *replies):
                self._enqueue_rows(
                    conn, events, io.BytesIO(generated.data), len(generated.data), generated.outbound, now
                )
            for account_id in {mark.account_id for mark in delivery.duplicates}:  # what expired goes
                conn.execute(
                    "DELETE FROM sieve_duplicates WHERE account_id = ? AND expires <= ?", (account_id, now)
                )
            # RFC 7352 3.3: :last starts the period again, else the first expiry stays
            for mark in delivery.duplicates:
                conn.execute(
                    "INSERT INTO sieve_duplicates (account_id, key, expires) VALUES (?, ?, ?) "
                    "ON CONFLICT (account_id, key) DO UPDATE SET expires = excluded.expires "
                    "WHERE ? OR sieve_duplicates.expires <= ?",
                    (mark.account_id, mark.key, now + mark.seconds, mark.last, now),
                )
            for notice in delivery.notices:
                reported = conn.execute(
                    "UPDATE sieve_scripts SET error_reported = 1 WHERE id = ? AND version = ? "
                    "AND error_reported = 0",
                    (notice.script_id, notice.version),
                ).rowcount
                if reported:  # the first delivery to meet this version's error tells the account
                    content = self._insert_content(
                        conn, notice.text.source, notice.text.parsed, notice_json[notice.script_id], 1
                    )
                    inbox = _target_mailbox(conn, notice.account_id, "INBOX", None, False)
                    thread = thread_for(conn, notice.account_id, parsed_thread_keys(notice.text.parsed))
                    bits, keywords = flags_to_columns(())
                    uid, modseq = append_row(
                        conn,
                        notice.account_id,
                        inbox,
                        content,
                        bits,
                        keywords,
                        when,
                        notice.text.parsed.size,
                        thread,
                    )
                    events.append(ChangeEvent("added", notice.account_id, inbox, (uid,), modseq))
            recorded: QueuedMessage | None = None
            if record is not None:
                (recorded,) = self._queued_messages(conn, [record.queue_id])
                if not record.keep and not recorded.pending:
                    self._delete_queued(conn, record.queue_id)
            return DeliveryResult(copies, queue_id, recorded)

        return await self._write(tx, grows=delivery.grows())


def _vacation_due(conn: sqlite3.Connection, reply: VacationReply, now: float) -> bool:
    """Whether `reply` goes (no reply went to its sender with its handle within its period); if so, its time
    is recorded. A period of 0 replies every time (RFC 6131 section 2)."""
    sender = reply.sender.lower()
    row = conn.execute(
        "SELECT sent FROM sieve_vacation WHERE account_id = ? AND handle = ? AND sender = ?",
        (reply.account_id, reply.handle, sender),
    ).fetchone()
    if row is not None and reply.period > 0 and now - float(row[0]) < reply.period:
        return False
    conn.execute(
        "INSERT INTO sieve_vacation (account_id, handle, sender, sent) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (account_id, handle, sender) DO UPDATE SET sent = excluded.sent",
        (reply.account_id, reply.handle, sender, now),
    )
    # what no period can still need goes (the longest is 90 days: sieve.interpreter.VACATION_MAX_SECONDS)
    conn.execute(
        "DELETE FROM sieve_vacation WHERE account_id = ? AND sent < ?", (reply.account_id, now - 91 * 86400)
    )
    return True


def _target_mailbox(
    conn: sqlite3.Connection, account_id: int, name: str, special_use: str | None, or_inbox: bool
) -> int:
    """The mailbox of a copy (`NewCopy`): by special use, else by name, else INBOX when allowed."""
    if special_use is not None:
        row = conn.execute(
            "SELECT id FROM mailboxes WHERE account_id = ? AND special_use = ? COLLATE NOCASE "
            "ORDER BY id LIMIT 1",
            (account_id, special_use),
        ).fetchone()
        if row is not None:
            return int(row[0])
    mailbox = normalize_mailbox(name)
    row = conn.execute(
        "SELECT id FROM mailboxes WHERE account_id = ? AND name = ?", (account_id, mailbox)
    ).fetchone()
    if row is None and or_inbox and mailbox != "INBOX":
        row = conn.execute(
            "SELECT id FROM mailboxes WHERE account_id = ? AND name = 'INBOX'", (account_id,)
        ).fetchone()
    if row is None:
        raise NotFound(f"account {account_id} has no mailbox {mailbox}")
    return int(row[0])
