"""Contract: the outbound queue (docs/decisions/0017): submit (local copies and queued message in one
transaction), due order, recorded results, DSNs queued with the results that caused them, local copies
recorded with their results, retry/delete/stats, large messages, ids never reused, byte-exact storage."""

from __future__ import annotations

import io
import time

import pytest

from postoffice.message import parse_message
from postoffice.store import (
    GeneratedMessage,
    LocalCopy,
    MailStore,
    NotFound,
    OutboundMessage,
    OutboundRecipient,
    QueueStats,
    RecipientResult,
    StoreError,
    SubmitResult,
)
from tests.store.contract.harness import Backend, covers

S = MailStore


def message(subject: str = "hello", body: str = "body text\r\n") -> bytes:
    return f"From: demo@example.test\r\nTo: x@remote.example\r\nSubject: {subject}\r\n\r\n{body}".encode()


def outbound(
    *addresses: str,
    sender: str = "demo@example.test",
    next_attempt: float | None = None,
    account_id: int | None = None,
    eight_bit: bool = False,
    smtp_id: str | None = None,
    require_tls: bool = False,
) -> OutboundMessage:
    recipients = [OutboundRecipient(a) for a in addresses or ("x@remote.example",)]
    return OutboundMessage(
        sender,
        recipients,
        account_id=account_id,
        eight_bit=eight_bit,
        next_attempt=next_attempt,
        smtp_id=smtp_id,
        require_tls=require_tls,
    )


async def demo_account(store: MailStore) -> int:
    await store.add_domain("example.test")
    return (await store.add_account("demo@example.test", "hash")).id


async def submit(
    store: MailStore, raw: bytes, account_ids: list[int], out: OutboundMessage | None
) -> SubmitResult:
    return await store.submit(io.BytesIO(raw), parse_message(io.BytesIO(raw)), account_ids, out)


@covers(S.submit, S.queue_get, S.queue_read, S.subscribe_queue)
def test_submit_delivers_local_copies_and_queues_remote_recipients_in_one_commit(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        account_id = await demo_account(store)
        raw = message("both")
        woken: list[bool] = []
        store.subscribe_queue(lambda: woken.append(True))
        out = OutboundMessage(
            "demo@example.test",
            [
                OutboundRecipient(
                    "a@remote.example", orcpt="rfc822;a@remote.example", notify="SUCCESS,FAILURE"
                ),
                OutboundRecipient("b@other.example"),
            ],
            envid="QQ314159",
            ret="hdrs",
            account_id=account_id,
            eight_bit=True,
        )
        result = await submit(store, raw, [account_id], out)
        assert len(result.copies) == 1
        assert result.queue_id is not None
        copy = result.copies[0]
        (stored,) = await store.list_messages(copy.mailbox_id)
        assert await store.read_content(stored.content_id) == raw

        queued = await store.queue_get(result.queue_id)
        assert queued is not None
        assert (queued.sender, queued.envid, queued.ret, queued.account_id) == (
            "demo@example.test",
            "QQ314159",
            "HDRS",
            account_id,
        )
        assert (queued.size, queued.smtputf8, queued.eight_bit) == (len(raw), False, True)
        assert [(r.address, r.orcpt, r.notify, r.status, r.attempts) for r in queued.recipients] == [
            ("a@remote.example", "rfc822;a@remote.example", "SUCCESS,FAILURE", "pending", 0),
            ("b@other.example", None, None, "pending", 0),
        ]
        assert all(r.next_attempt <= time.time() and r.first_attempt is None for r in queued.recipients)
        assert await store.queue_read(result.queue_id) == raw
        assert woken == [True]

    backend.run(scenario)


@covers(S.submit, S.queue_list)
def test_submit_with_only_local_or_only_remote_recipients(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        account_id = await demo_account(store)
        local = await submit(store, message("local"), [account_id], None)
        assert len(local.copies) == 1
        assert local.queue_id is None
        assert await store.queue_list() == []
        remote = await submit(store, message("remote"), [], outbound())
        assert remote.copies == []
        assert remote.queue_id is not None
        assert [m.id for m in await store.queue_list()] == [remote.queue_id]
        nothing = await submit(store, message("nothing"), [], None)
        assert nothing.copies == []
        assert nothing.queue_id is None
        with pytest.raises(ValueError, match="at least one recipient"):
            await submit(store, message("no recipients"), [], OutboundMessage("demo@example.test", []))

    backend.run(scenario)


class ShortOnSecondRead(io.BytesIO):
    """Whole for the first reader (the local copy), 100 bytes short for the second (the queued copy)."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.rewinds = 0

    def seek(self, offset: int, whence: int = 0) -> int:
        self.rewinds += 1
        if self.rewinds == 2:
            self.truncate(len(self.getvalue()) - 100)
        return super().seek(offset, whence)


@covers(S.submit, S.queue_stats)
@pytest.mark.parametrize(
    ("local", "source_kind"),
    [(True, "short"), (True, "short-for-the-queue"), (False, "short")],
    ids=["local-and-remote", "local-written-then-queue-fails", "remote-only"],
)
def test_a_submit_that_fails_while_writing_leaves_neither_copies_nor_queued_message(
    backend: Backend, local: bool, source_kind: str
) -> None:
    async def scenario(store: MailStore) -> None:
        account_id = await demo_account(store)
        raw = message("short", body="x" * 5000)
        parsed = parse_message(io.BytesIO(raw))
        # the source ends before parsed.size: the transaction fails
        source = io.BytesIO(raw[:-100]) if source_kind == "short" else ShortOnSecondRead(raw)
        with pytest.raises(StoreError):
            await store.submit(source, parsed, [account_id] if local else [], outbound())
        if isinstance(source, ShortOnSecondRead):
            assert source.rewinds == 2  # the local copy was written whole before the queued one failed
        inbox = await store.get_mailbox(account_id, "INBOX")
        assert inbox is not None
        assert inbox.messages == 0
        assert inbox.uidnext == 1
        assert await store.list_messages(inbox.id) == []
        assert await store.queue_list() == []
        assert await store.queue_stats() == QueueStats(0, 0, None)
        # and the store works on: the same message with a whole source goes through
        assert (await submit(store, raw, [account_id], outbound())).queue_id is not None

    backend.run(scenario)


@covers(S.submit, S.deliver)
def test_deliver_is_submit_without_an_outbound_message(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        account_id = await demo_account(store)
        raw = message("deliver")
        copies = await store.deliver(
            io.BytesIO(raw), parse_message(io.BytesIO(raw)), [account_id, account_id]
        )
        result = await submit(store, raw, [account_id], None)
        assert [c.uid for c in copies] == [1]
        assert [c.uid for c in result.copies] == [2]
        assert await store.queue_list() == []

    backend.run(scenario)


@covers(S.enqueue, S.queue_due, S.queue_record)
def test_queue_due_gives_messages_with_a_due_pending_recipient_oldest_first(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        now = time.time()
        first = await store.enqueue(message("1"), len(message("1")), outbound(next_attempt=now - 10))
        later = await store.enqueue(message("2"), len(message("2")), outbound(next_attempt=now + 3600))
        third = await store.enqueue(message("3"), len(message("3")), outbound("p@r.example", "q@r.example"))
        fourth = await store.enqueue(message("4"), len(message("4")), outbound())
        due = await store.queue_due(time.time(), 10)
        assert [m.id for m in due] == [first, third, fourth]
        assert [r.address for r in due[1].recipients] == ["p@r.example", "q@r.example"]
        assert [m.id for m in await store.queue_due(time.time(), 2)] == [first, third]
        assert [m.id for m in await store.queue_due(now + 7200, 10)] == [first, later, third, fourth]
        # a message with one recipient final and one pending is still due; one with none pending is not
        (r1, r2) = due[1].recipients
        delivered = RecipientResult(r1.id, "delivered", 250, "2.0.0", "ok", "mx", attempted_at=time.time())
        await store.queue_record(third, [delivered])
        retry = RecipientResult(due[0].recipients[0].id, "pending", 451, next_attempt=now + 600)
        await store.queue_record(first, [retry])
        assert [m.id for m in await store.queue_due(time.time(), 10)] == [third, fourth]
        third_now = await store.queue_get(third)
        assert third_now is not None
        assert [r.status for r in third_now.recipients] == ["delivered", "pending"]
        assert third_now.pending == (third_now.recipients[1],)
        assert r2.id == third_now.recipients[1].id

    backend.run(scenario)


@covers(S.queue_record)
def test_recorded_results_update_recipients_and_the_message_goes_when_all_are_final(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        raw = message("results")
        queue_id = await store.enqueue(raw, len(raw), outbound("a@r.example", "b@r.example", "c@r.example"))
        queued = await store.queue_get(queue_id)
        assert queued is not None
        a, b, c = queued.recipients
        t1 = time.time()
        recorded = await store.queue_record(
            queue_id,
            [
                RecipientResult(
                    a.id, "delivered", 250, "2.0.0", "queued as 1", "mx.r.example", attempted_at=t1
                ),
                RecipientResult(b.id, "pending", 451, "4.3.0", "try later", "mx.r.example", t1 + 300, t1),
                RecipientResult(c.id, "pending", None, None, "connection refused", None, t1 + 300, t1),
            ],
        )
        ra, rb, rc = recorded.recipients
        assert (ra.status, ra.attempts, ra.first_attempt, ra.last_attempt) == ("delivered", 1, t1, t1)
        assert (ra.last_code, ra.last_enhanced, ra.last_text, ra.remote_mta) == (
            250,
            "2.0.0",
            "queued as 1",
            "mx.r.example",
        )
        assert (rb.status, rb.attempts, rb.next_attempt, rb.last_code) == ("pending", 1, t1 + 300, 451)
        assert (rc.last_code, rc.last_text, rc.remote_mta) == (None, "connection refused", None)
        assert recorded.next_attempt == t1 + 300

        t2 = t1 + 300
        again = await store.queue_record(
            queue_id,
            [RecipientResult(b.id, "pending", 421, "4.4.2", "timeout", "mx2.r.example", t2 + 900, t2)],
        )
        rb = again.recipients[1]
        assert (rb.attempts, rb.first_attempt, rb.last_attempt, rb.last_code, rb.remote_mta) == (
            2,
            t1,
            t2,
            421,
            "mx2.r.example",
        )
        # a decision without an attempt (e.g. a delay warning sent) keeps the counts and the last reply
        warned = await store.queue_record(
            queue_id, [RecipientResult(b.id, "pending", next_attempt=t2 + 900, delay_warned=True)]
        )
        assert (warned.recipients[1].attempts, warned.recipients[1].last_code) == (2, 421)
        assert warned.recipients[1].delay_warned is True

        final = await store.queue_record(
            queue_id,
            [
                RecipientResult(
                    b.id, "failed", 550, "5.1.1", "no such user", "mx.r.example", attempted_at=t2
                ),
                RecipientResult(c.id, "expired"),
            ],
        )
        assert [r.status for r in final.recipients] == ["delivered", "failed", "expired"]
        assert final.recipients[2].last_text == "connection refused"  # kept for the DSN
        assert await store.queue_get(queue_id) is None
        with pytest.raises(NotFound):
            await store.queue_read(queue_id)
        assert await store.queue_stats() == QueueStats(0, 0, None)

    backend.run(scenario)


@covers(S.queue_record, S.queue_delete)
def test_keep_leaves_a_finished_message_in_the_queue(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        raw = message("keep")
        queue_id = await store.enqueue(raw, len(raw), outbound())
        queued = await store.queue_get(queue_id)
        assert queued is not None
        done = await store.queue_record(
            queue_id, [RecipientResult(queued.recipients[0].id, "delivered", 250)], keep=True
        )
        assert done.pending == ()
        assert done.next_attempt is None
        assert await store.queue_read(queue_id) == raw
        assert await store.queue_due(time.time() + 10**6, 10) == []
        assert await store.queue_delete(queue_id) is True
        assert await store.queue_delete(queue_id) is False

    backend.run(scenario)


@covers(S.queue_record)
def test_a_final_recipient_never_changes_and_a_refused_record_changes_nothing(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        raw = message("final")
        queue_id = await store.enqueue(raw, len(raw), outbound("a@r.example", "b@r.example"))
        queued = await store.queue_get(queue_id)
        assert queued is not None
        a, b = queued.recipients
        await store.queue_record(queue_id, [RecipientResult(a.id, "failed", 550, attempted_at=time.time())])
        with pytest.raises(StoreError):
            await store.queue_record(
                queue_id,
                [
                    RecipientResult(b.id, "delivered", 250, attempted_at=time.time()),
                    RecipientResult(a.id, "delivered", 250, attempted_at=time.time()),
                ],
            )
        with pytest.raises(NotFound):
            await store.queue_record(queue_id, [RecipientResult(10**9, "delivered")])
        with pytest.raises(NotFound):
            await store.queue_record(10**9, [])
        with pytest.raises(ValueError, match="not a queue status"):
            await store.queue_record(queue_id, [RecipientResult(b.id, "bounced")])
        with pytest.raises(
            ValueError, match="needs its next attempt time"
        ):  # pending needs its next attempt time
            await store.queue_record(queue_id, [RecipientResult(b.id, "pending")])
        after = await store.queue_get(queue_id)
        assert after is not None
        assert [(r.status, r.attempts) for r in after.recipients] == [("failed", 1), ("pending", 0)]

    backend.run(scenario)


def dsn_for(recipient: str) -> GeneratedMessage:
    data = (
        b"From: MAILER-DAEMON@mail.example.test\r\nTo: " + recipient.encode() + b"\r\n"
        b"Subject: Undelivered Mail Returned to Sender\r\nAuto-Submitted: auto-replied\r\n\r\nreport\r\n"
    )
    return GeneratedMessage(data, OutboundMessage("", [OutboundRecipient(recipient)]))


@covers(S.queue_record, S.subscribe_queue)
def test_a_dsn_is_queued_in_the_same_transaction_as_the_failure_that_caused_it(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        raw = message("bounce me")
        queue_id = await store.enqueue(raw, len(raw), outbound("a@r.example", "b@r.example"))
        queued = await store.queue_get(queue_id)
        assert queued is not None
        a, b = queued.recipients
        woken: list[bool] = []
        store.subscribe_queue(lambda: woken.append(True))

        # refused as a whole (b is unknown to this message): neither the result nor the DSN is stored
        with pytest.raises(NotFound):
            await store.queue_record(
                queue_id,
                [
                    RecipientResult(a.id, "failed", 550, attempted_at=time.time()),
                    RecipientResult(-1, "failed"),
                ],
                bounces=[dsn_for("demo@example.test")],
            )
        assert [m.id for m in await store.queue_list()] == [queue_id]

        dsn = dsn_for("demo@example.test")
        recorded = await store.queue_record(
            queue_id,
            [
                RecipientResult(
                    a.id, "failed", 550, "5.1.1", "no such user", "mx.r.example", None, time.time()
                ),
                RecipientResult(b.id, "failed", 554, "5.7.1", "rejected", "mx.r.example", None, time.time()),
            ],
            bounces=[dsn],
        )
        assert [r.status for r in recorded.recipients] == ["failed", "failed"]
        (bounce,) = await store.queue_list()
        assert bounce.id != queue_id
        assert (bounce.sender, bounce.account_id, bounce.size) == ("", None, len(dsn.data))
        assert [r.address for r in bounce.recipients] == ["demo@example.test"]
        assert await store.queue_read(bounce.id) == dsn.data
        assert woken == [True]

        # recording the same failure again cannot queue the DSN twice
        with pytest.raises(NotFound):
            await store.queue_record(queue_id, [RecipientResult(a.id, "failed")], bounces=[dsn])
        assert len(await store.queue_list()) == 1

        # a DSN never has a sender, and a message with the null sender (the DSN itself) gets none
        with pytest.raises(ValueError, match="must have the null sender"):
            await store.queue_record(
                bounce.id, [], bounces=[GeneratedMessage(b"x", outbound(sender="postmaster@example.test"))]
            )
        with pytest.raises(StoreError):
            await store.queue_record(
                bounce.id,
                [RecipientResult(bounce.recipients[0].id, "failed", 550)],
                bounces=[dsn_for("nobody@example.test")],
            )
        assert len(await store.queue_list()) == 1

    backend.run(scenario)


@covers(S.queue_retry, S.queue_delete, S.queue_stats)
def test_retry_delete_and_stats(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        future = time.time() + 3600
        before = time.time()
        m1 = await store.enqueue(
            message("1"), len(message("1")), outbound("a@r.example", next_attempt=future)
        )
        two = outbound("b@r.example", "c@r.example", next_attempt=future)
        m2 = await store.enqueue(message("2"), len(message("2")), two)
        stats = await store.queue_stats()
        assert (stats.messages, stats.recipients_pending) == (2, 3)
        assert stats.oldest_created is not None
        assert before <= stats.oldest_created <= time.time()
        assert await store.queue_due(time.time(), 10) == []

        woken: list[bool] = []
        store.subscribe_queue(lambda: woken.append(True))
        assert await store.queue_retry(m1) == 1
        assert [m.id for m in await store.queue_due(time.time(), 10)] == [m1]
        assert await store.queue_retry() == 3
        assert [m.id for m in await store.queue_due(time.time(), 10)] == [m1, m2]
        assert woken == [True, True]
        with pytest.raises(NotFound):
            await store.queue_retry(10**9)

        assert await store.queue_delete(m1) is True
        assert await store.queue_get(m1) is None
        with pytest.raises(NotFound):
            await store.queue_read(m1)
        assert (await store.queue_stats()).messages == 1
        assert await store.queue_delete(m2) is True
        assert await store.queue_stats() == QueueStats(0, 0, None)
        assert await store.queue_retry() == 0

    backend.run(scenario)


@covers(S.queue_open, S.queue_read)
def test_a_large_message_is_queued_and_streamed_byte_exact(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        account_id = await demo_account(store)
        body = b"".join(b"%08d \xc3\xa9t\xc3\xa9 line of the large message\r\n" % i for i in range(60_000))
        raw = message("large").replace(b"body text\r\n", b"") + body
        assert len(raw) > 2 * 1024 * 1024
        result = await submit(store, raw, [account_id], outbound(eight_bit=True))
        assert result.queue_id is not None
        assert await store.queue_read(result.queue_id) == raw
        chunks = [chunk async for chunk in store.queue_open(result.queue_id, chunk_size=256 * 1024)]
        assert len(chunks) > 1
        assert max(len(c) for c in chunks) <= 256 * 1024
        assert b"".join(chunks) == raw
        (stored,) = await store.list_messages(result.copies[0].mailbox_id)
        assert await store.read_content(stored.content_id) == raw
        small = await store.enqueue(b"tiny\r\n", 6, outbound())
        assert [c async for c in store.queue_open(small, chunk_size=4)] == [b"tiny", b"\r\n"]
        with pytest.raises(NotFound):
            async for _ in store.queue_open(10**9):
                pass

    backend.run(scenario)


@covers(S.enqueue, S.queue_read, S.queue_open)
@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"no header, no line end",
        b"Subject: bare LF\n\nbody\nlast",
        b"Subject: bare CR\r\rbody\r",
        b"Subject: dots\r\n\r\n.\r\n..\r\n.",
        b"Subject: nul and 8-bit\r\n\r\n\x00\xff\xfe\x80 \xc3\xa9\r\n",
        bytes(range(256)) * 8,
    ],
    ids=["empty", "no-header", "bare-lf", "bare-cr", "dots", "nul-8bit", "all-bytes"],
)
def test_queued_bytes_never_change(backend: Backend, raw: bytes) -> None:
    async def scenario(store: MailStore) -> None:
        queue_id = await store.enqueue(raw, len(raw), outbound())
        assert await store.queue_read(queue_id) == raw
        assert b"".join([c async for c in store.queue_open(queue_id, chunk_size=7)]) == raw
        with_bytes = await store.enqueue(io.BytesIO(raw), len(raw), outbound())
        assert await store.queue_read(with_bytes) == raw
        queued = await store.queue_get(queue_id)
        assert queued is not None
        assert queued.size == len(raw)

    backend.run(scenario)


@covers(S.queue_get)
def test_the_queue_survives_reopening_and_a_removed_account_leaves_its_mail_queued(backend: Backend) -> None:
    ids: list[int] = []

    async def first(store: MailStore) -> None:
        account_id = await demo_account(store)
        result = await submit(store, message("kept"), [], outbound(account_id=account_id))
        assert result.queue_id is not None
        ids.append(result.queue_id)
        await store.remove_account("demo@example.test")

    async def second(store: MailStore) -> None:
        queued = await store.queue_get(ids[0])
        assert queued is not None
        assert queued.account_id is None
        assert await store.queue_read(ids[0]) == message("kept")

    backend.run(first)
    backend.run(second)


@covers(S.enqueue)
def test_queue_ids_are_never_reused_not_even_once_the_queue_is_empty(backend: Backend) -> None:
    """Issue 9 item 16: an INTEGER PRIMARY KEY alone gave id 1 again to the next message once the queue was
    empty. Ids now come from a counter that only grows, across restarts too."""
    ids: list[int] = []

    async def first(store: MailStore) -> None:
        for _ in range(2):
            raw = message("one at a time")
            queue_id = await store.enqueue(
                raw, len(raw), outbound(smtp_id="6B15704DA1E00012C", require_tls=True)
            )
            queued = await store.queue_get(queue_id)
            assert queued is not None
            assert queued.smtp_id == "6B15704DA1E00012C"
            assert queued.require_tls  # RFC 8689 REQUIRETLS, kept with the message
            assert await store.queue_delete(queue_id)
            assert await store.queue_stats() == QueueStats(0, 0, None)
            ids.append(queue_id)

    async def after_restart(store: MailStore) -> None:
        raw = message("after a restart")
        ids.append(await store.enqueue(raw, len(raw), outbound()))
        queued = await store.queue_get(ids[-1])
        assert queued is not None
        assert queued.smtp_id is None
        assert not queued.require_tls

    backend.run(first)
    backend.run(after_restart)
    assert ids == sorted(set(ids))
    assert len(ids) == 3


@covers(S.queue_record)
def test_a_local_copy_is_delivered_in_the_transaction_that_records_it(backend: Backend) -> None:
    """Queued mail for our own users (bounces): the mailbox copy and the result commit together, so a crash
    between them cannot deliver it twice; a record that fails delivers nothing."""

    async def scenario(store: MailStore) -> None:
        account_id = await demo_account(store)
        raw = message("bounce for a local user")
        queue_id = await store.enqueue(raw, len(raw), outbound("demo@example.test", sender=""))
        queued = await store.queue_get(queue_id)
        assert queued is not None
        (recipient,) = queued.recipients
        copy = LocalCopy(io.BytesIO(raw), parse_message(io.BytesIO(raw)), [account_id])
        done = [RecipientResult(recipient.id, "delivered", 250, "2.0.0", "ok", attempted_at=time.time())]
        await store.queue_record(queue_id, done, local_copy=copy)
        inbox = await store.get_mailbox(account_id, "INBOX")
        assert inbox is not None
        (stored,) = await store.list_messages(inbox.id)
        assert await store.read_content(stored.content_id) == raw
        assert await store.queue_get(queue_id) is None
        # again: the recipient is final, the call fails as a whole, no second copy appears
        again = await store.enqueue(raw, len(raw), outbound("demo@example.test", sender=""))
        other = await store.queue_get(again)
        assert other is not None
        final = [
            RecipientResult(other.recipients[0].id, "failed", 550, "5.1.1", "x", attempted_at=time.time())
        ]
        await store.queue_record(again, final, keep=True)
        with pytest.raises(StoreError):
            await store.queue_record(
                again, [RecipientResult(other.recipients[0].id, "delivered")], local_copy=copy
            )
        assert len(await store.list_messages(inbox.id)) == 1

    backend.run(scenario)


@covers(S.queue_due)
def test_queue_due_leaves_out_the_messages_in_flight(backend: Backend) -> None:
    async def scenario(store: MailStore) -> None:
        await demo_account(store)
        ids = [await store.enqueue(message(f"m{n}"), len(message(f"m{n}")), outbound()) for n in range(3)]
        due = await store.queue_due(time.time() + 1, 10, exclude=[ids[1]])
        assert [m.id for m in due] == [ids[0], ids[2]]
        assert [m.id for m in await store.queue_due(time.time() + 1, 1, exclude=[ids[0]])] == [ids[1]]

    backend.run(scenario)
