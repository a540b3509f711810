"""Contract: every write is durable when it returns. After each write method returns, another store object
opened on the same store (another process) reads its effect, and so does a store opened again after both
were closed (a restart). (Durability across a crash or a power loss is the backend's own test: for SQLite,
tests/integration/test_durability.py kills the server between the reply and anything else.)"""

from __future__ import annotations

import io
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import pytest

from postoffice.store import (
    Delivery,
    LoginGuardEntry,
    MailStore,
    MessageText,
    NewCopy,
    OutboundMessage,
    OutboundRecipient,
    QueueUpdate,
    RecipientResult,
)
from postoffice.store.api import AppendItem
from tests.store.contract.harness import Backend, accounts, covers, deliver, message, parse

S = MailStore
T = TypeVar("T")
U = TypeVar("U")
RAW = message("durable", "caf\u00e9 \x00 bytes\r\n")
FAR = time.time() + 86_400


@dataclass
class World:
    """What every case starts from (ids as the store gave them)."""

    demo: int
    other: int
    inbox: int
    work: int
    queue_id: int
    recipient_id: int


async def setup(store: MailStore) -> World:
    demo, other = await accounts(store, "demo", "other")
    await store.add_domain("empty.example")
    await store.add_alias("alias@example.test", ["demo@example.test"])
    inbox = await store.get_mailbox(demo, "INBOX")
    work = await store.create_mailbox(demo, "Work")
    assert inbox is not None
    await deliver(store, message("one"), [demo])
    await deliver(store, message("deleted"), [demo], flags=["\\Deleted"])
    out = OutboundMessage("demo@example.test", [OutboundRecipient("x@remote.example")], next_attempt=FAR)
    queue_id = await store.enqueue(message("queued"), len(message("queued")), out)
    queued = await store.queue_get(queue_id)
    assert queued is not None
    now = time.time()
    await store.login_guard_save(
        [
            LoginGuardEntry("client", "192.0.2.1", "", now + 3600, now),
            LoginGuardEntry("pair", "192.0.2.1", "demo@example.test", now + 3600, now),
        ],
        now,
    )
    return World(demo, other, inbox.id, work.id, queue_id, queued.recipients[0].id)


async def uids(store: MailStore, mailbox_id: int) -> list[int]:
    return [m.uid for m in await store.list_messages(mailbox_id)]


async def newest_bytes(store: MailStore, mailbox_id: int) -> bytes:
    messages = await store.list_messages(mailbox_id)
    return await store.read_content(messages[-1].content_id) if messages else b""


Write = Callable[[MailStore, World], Awaitable[object]]
Check = Callable[[MailStore, World], Awaitable[bool]]


async def _account_is(store: MailStore, address: str, present: bool) -> bool:
    return (await store.get_account(address) is not None) == present


async def _guard(store: MailStore) -> set[str]:
    return {e.kind for e in await store.login_guard_entries(time.time())}


def _outbound() -> OutboundMessage:
    return OutboundMessage("demo@example.test", [OutboundRecipient("y@remote.example")])


#: (method, the write, what any store object reads afterwards)
CASES: list[tuple[Callable[..., object], Write, Check]] = [
    (
        S.add_domain,
        lambda s, w: s.add_domain("new.example"),
        lambda s, w: _has(s.list_domains(), lambda ds: "new.example" in [d.name for d in ds]),
    ),
    (
        S.remove_domain,
        lambda s, w: s.remove_domain("empty.example"),
        lambda s, w: _has(s.list_domains(), lambda ds: "empty.example" not in [d.name for d in ds]),
    ),
    (
        S.add_account,
        lambda s, w: s.add_account("new@example.test", "h"),
        lambda s, w: _account_is(s, "new@example.test", True),
    ),
    (
        S.set_password,
        lambda s, w: s.set_password("demo@example.test", "changed"),
        lambda s, w: _has(
            s.get_account("demo@example.test"), lambda a: a is not None and a.password_hash == "changed"
        ),
    ),
    (
        S.remove_account,
        lambda s, w: s.remove_account("other@example.test"),
        lambda s, w: _account_is(s, "other@example.test", False),
    ),
    (
        S.add_alias,
        lambda s, w: s.add_alias("team@example.test", ["other@example.test"]),
        lambda s, w: _has(s.resolve_recipient("team@example.test"), lambda r: r.account_ids == [w.other]),
    ),
    (
        S.remove_alias,
        lambda s, w: s.remove_alias("alias@example.test"),
        lambda s, w: _has(s.get_alias("alias@example.test"), lambda a: a is None),
    ),
    (
        S.create_mailbox,
        lambda s, w: s.create_mailbox(w.demo, "New"),
        lambda s, w: _has(s.get_mailbox(w.demo, "New"), lambda m: m is not None),
    ),
    (
        S.delete_mailbox,
        lambda s, w: s.delete_mailbox(w.demo, "Work"),
        lambda s, w: _has(s.get_mailbox(w.demo, "Work"), lambda m: m is None),
    ),
    (
        S.rename_mailbox,
        lambda s, w: s.rename_mailbox(w.demo, "Work", "Play"),
        lambda s, w: _has(s.get_mailbox(w.demo, "Play"), lambda m: m is not None and m.id == w.work),
    ),
    (
        S.set_subscribed,
        lambda s, w: s.set_subscribed(w.demo, "Work", True),
        lambda s, w: _has(s.list_subscriptions(w.demo), lambda names: "Work" in names),
    ),
    (
        S.claim_recent,
        lambda s, w: s.claim_recent(w.inbox),
        lambda s, w: _has(s.mailbox_status(w.inbox), lambda st: st.recent == 0),
    ),
    (
        S.deliver,
        lambda s, w: deliver(s, RAW, [w.demo]),
        lambda s, w: _has(newest_bytes(s, w.inbox), lambda data: data == RAW),
    ),
    (
        S.append,
        lambda s, w: s.append(w.work, io.BytesIO(RAW), parse(RAW), ["\\Seen"]),
        lambda s, w: _has(newest_bytes(s, w.work), lambda data: data == RAW),
    ),
    (
        S.append_many,
        lambda s, w: s.append_many(w.work, [AppendItem(io.BytesIO(RAW), parse(RAW))] * 2),
        lambda s, w: _has(uids(s, w.work), lambda found: found == [1, 2]),
    ),
    (
        S.copy_messages,
        lambda s, w: s.copy_messages(w.inbox, [1], w.work, move=True),
        lambda s, w: _both(uids(s, w.inbox), uids(s, w.work), lambda a, b: a == [2] and b == [1]),
    ),
    (
        S.expunge,
        lambda s, w: s.expunge(w.inbox, [1]),
        lambda s, w: _has(s.changes_since(w.inbox, 0), lambda c: c.expunged == [1]),
    ),
    (
        S.expunge_deleted,
        lambda s, w: s.expunge_deleted(w.inbox),
        lambda s, w: _has(uids(s, w.inbox), lambda found: found == [1]),
    ),
    (
        S.store_flags,
        lambda s, w: s.store_flags(w.inbox, [1], ["\\Flagged", "$Done"], "add"),
        lambda s, w: _has(s.list_messages(w.inbox), lambda ms: ms[0].flags == {"\\Flagged", "$Done"}),
    ),
    (
        S.commit_delivery,
        lambda s, w: s.commit_delivery(
            Delivery(
                [MessageText(io.BytesIO(RAW), parse(RAW))],
                [NewCopy(w.demo, mailbox="Work", flags=("$Kept",))],
                _outbound(),
                record=QueueUpdate(w.queue_id, [RecipientResult(w.recipient_id, "delivered")]),
            )
        ),
        lambda s, w: _both(
            s.list_messages(w.work),
            s.queue_list(),
            lambda ms, q: [m.flags for m in ms] == [{"$Kept"}] and [m.id for m in q] != [w.queue_id] != [],
        ),
    ),
    (
        S.submit,
        lambda s, w: s.submit(io.BytesIO(RAW), parse(RAW), [w.other], _outbound()),
        lambda s, w: _has(s.queue_stats(), lambda q: q.messages == 2),
    ),
    (
        S.enqueue,
        lambda s, w: s.enqueue(RAW, len(RAW), _outbound()),
        lambda s, w: _has(s.queue_list(), lambda q: len(q) == 2 and q[1].size == len(RAW)),
    ),
    (
        S.queue_record,
        lambda s, w: s.queue_record(
            w.queue_id,
            [RecipientResult(w.recipient_id, "pending", 451, next_attempt=FAR + 1, attempted_at=1.0)],
        ),
        lambda s, w: _has(s.queue_get(w.queue_id), lambda q: q is not None and q.recipients[0].attempts == 1),
    ),
    (
        S.queue_delete,
        lambda s, w: s.queue_delete(w.queue_id),
        lambda s, w: _has(s.queue_get(w.queue_id), lambda q: q is None),
    ),
    (
        S.queue_retry,
        lambda s, w: s.queue_retry(w.queue_id),
        lambda s, w: _has(s.queue_due(time.time(), 10), lambda due: [q.id for q in due] == [w.queue_id]),
    ),
    (
        S.login_guard_save,
        lambda s, w: s.login_guard_save(
            [LoginGuardEntry("account", "", "other@example.test", time.time() + 3600, time.time())],
            time.time(),
        ),
        lambda s, w: _has(_guard(s), lambda kinds: kinds == {"client", "pair", "account"}),
    ),
    (
        S.login_guard_unlock,
        lambda s, w: s.login_guard_unlock(client="192.0.2.1"),
        lambda s, w: _has(_guard(s), lambda kinds: kinds == set()),
    ),
]


async def _has(read: Awaitable[T], holds: Callable[[T], bool]) -> bool:
    return holds(await read)


async def _both(a: Awaitable[T], b: Awaitable[U], holds: Callable[[T, U], bool]) -> bool:
    return holds(await a, await b)


@covers(*{method for method, _, _ in CASES})
@pytest.mark.parametrize(("method", "write", "check"), CASES, ids=[m.__name__ for m, _, _ in CASES])
def test_a_write_is_visible_to_another_store_object_and_after_reopening_once_it_returns(
    backend: Backend, method: Callable[..., object], write: Write, check: Check
) -> None:
    async def scenario(store: MailStore) -> World:
        world = await setup(store)
        assert not await check(store, world), "the check must fail before the write"
        await write(store, world)
        other = backend.open()  # opened after the write returned: another process
        try:
            assert await check(other, world)
            assert await check(store, world)
        finally:
            await other.close()
        return world

    world = backend.run(scenario)

    async def reopened(store: MailStore) -> None:
        assert await check(store, world)

    backend.run(reopened)


def test_every_write_method_has_a_durability_case() -> None:
    writes = {
        "add_domain",
        "remove_domain",
        "add_account",
        "set_password",
        "remove_account",
        "add_alias",
        "remove_alias",
        "create_mailbox",
        "delete_mailbox",
        "rename_mailbox",
        "set_subscribed",
        "claim_recent",
        "commit_delivery",
        "deliver",
        "append",
        "append_many",
        "copy_messages",
        "expunge",
        "expunge_deleted",
        "store_flags",
        "submit",
        "enqueue",
        "queue_record",
        "queue_delete",
        "queue_retry",
        "login_guard_save",
        "login_guard_unlock",
    }
    assert {method.__name__ for method, _, _ in CASES} == writes
