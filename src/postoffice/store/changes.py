"""Change notifications of a store object: the subscribers of `MailStore.subscribe` and `subscribe_queue`,
and their dispatch on the event loop. Backend-neutral: a backend hands it the events of each commit, from
whatever thread or source learns of them (the SQLite writer thread after its COMMIT; another backend could
feed it from LISTEN/NOTIFY), and the bus calls the subscribers on the loop.

Invariants (docs/decisions/0037)
- Events are handed over only after the commit that made the change, and are dispatched on the event loop
  in the order they were handed over: a subscriber that reads the store when called sees the change.
- One subscriber's exception is logged and does not keep the event from the others.
- "queue" events (`ChangeEvent.kind`, account 0) go to the queue subscribers only, once per batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from postoffice.store.api import ChangeEvent

log = logging.getLogger("postoffice.store")


class ChangeBus:
    """Subscribers per account and for the queue, called on `loop` (the loop of the store's callers, set by
    the backend when it is used; events before that have no one to reach and are dropped)."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._subscribers: dict[int, list[Callable[[ChangeEvent], None]]] = {}
        self._queue_subscribers: list[Callable[[], None]] = []
        self._everyone: list[Callable[[ChangeEvent], None]] = []  # `subscribe_all`

    def publish_threadsafe(self, events: list[ChangeEvent]) -> None:
        """Hand over the events of one commit, from any thread; they are dispatched on the loop."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self.dispatch, events)
        except RuntimeError:
            pass

    def dispatch(self, events: list[ChangeEvent]) -> None:
        """Call the subscribers of `events` (on the event loop)."""
        queue_changed = False
        for event in events:
            if event.kind == "queue":  # not an account's change: for `subscribe_queue` only
                queue_changed = True
                continue
            for callback in [*self._subscribers.get(event.account_id, ()), *self._everyone]:
                try:
                    callback(event)
                except Exception:
                    log.exception("change subscriber failed")
        if queue_changed:
            for queue_callback in list(self._queue_subscribers):
                try:
                    queue_callback()
                except Exception:
                    log.exception("queue subscriber failed")

    def subscribe(self, account_id: int, callback: Callable[[ChangeEvent], None]) -> Callable[[], None]:
        self._subscribers.setdefault(account_id, []).append(callback)

        def unsubscribe() -> None:
            callbacks = self._subscribers.get(account_id, [])
            if callback in callbacks:
                callbacks.remove(callback)
            if not callbacks:
                self._subscribers.pop(account_id, None)

        return unsubscribe

    def subscribe_all(self, callback: Callable[[ChangeEvent], None]) -> Callable[[], None]:
        self._everyone.append(callback)

        def unsubscribe() -> None:
            if callback in self._everyone:
                self._everyone.remove(callback)

        return unsubscribe

    def subscribe_queue(self, callback: Callable[[], None]) -> Callable[[], None]:
        self._queue_subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._queue_subscribers:
                self._queue_subscribers.remove(callback)

        return unsubscribe
