"""Teaching rspamd from what people do (docs/decisions/0086): a message moved or copied into a mailbox with
the \\Junk attribute is learned as spam, one moved or copied out of Junk (anywhere but Trash) as ham.

Implementation notes
- One place hears every such move, whoever made it (IMAP COPY and MOVE, the webmail, JMAP later): the
  store's change events (`MailStore.subscribe_all`), whose "added" events of `copy_messages` name the source
  mailbox. New mail that delivery files into Junk is not a move and teaches nothing (rspamd put it there).
- Asynchronous: the event only queues the work (at most MAX_PENDING moves waiting; beyond, a move is not
  learned and a warning is logged); one task reads each message and posts it to rspamd's controller
  (`/learnspam`, `/learnham`), one at a time, so a mass move costs the server one request at a time. rspamd
  answers 208 for a message it has learned already, which is no error; a message above MAX_LEARN_SIZE is
  skipped. A failure is logged and the work goes on: learning is best effort, never a reason to refuse a
  move.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from postoffice.store import ChangeEvent, StoreError

if TYPE_CHECKING:
    from postoffice.store import MailStore

log = logging.getLogger("postoffice.spam")

#: Moves waiting to be learned at most.
MAX_PENDING = 1000
#: Octets of a message learned at most (spam is small; rspamd itself skips large messages).
MAX_LEARN_SIZE = 10 * 1024 * 1024


class RspamdController:
    """Posts messages to an rspamd controller's learning endpoints."""

    def __init__(self, url: str, *, timeout: float, password: str = "") -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"an rspamd controller address is http://host:port, not {url!r}")
        self.host, self.port = parts.hostname, parts.port or 11334
        self.timeout, self.password = timeout, password

    async def learn(self, kind: str, data: bytes) -> int:
        """POST /learnspam or /learnham; the HTTP status (200 learned, 208 learned before, 204 too small).
        OSError or TimeoutError when rspamd cannot be asked."""
        async with asyncio.timeout(self.timeout):
            reader, writer = await asyncio.open_connection(self.host, self.port)
            try:
                head = [f"POST /learn{kind} HTTP/1.1", f"Host: {self.host}", "Connection: close"]
                head.append(f"Content-Length: {len(data)}")
                if self.password:
                    head.append(f"Password: {self.password}")
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
                await writer.drain()
                status = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
        parts = status.split(b" ", 2)
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


class SpamLearner:
    """Hears moves into and out of Junk and teaches rspamd (see the module notes)."""

    def __init__(self, store: MailStore, controller: RspamdController) -> None:
        self.store = store
        self.controller = controller
        self._pending: asyncio.Queue[tuple[int, int, int, tuple[int, ...]]] = asyncio.Queue(MAX_PENDING)
        self._unsubscribe: object = None
        self._task: asyncio.Task[None] | None = None
        self.learned = 0

    def start(self) -> None:
        self._unsubscribe = self.store.subscribe_all(self._heard)
        self._task = asyncio.get_running_loop().create_task(self._work(), name="spam-learner")

    async def stop(self) -> None:
        if callable(self._unsubscribe):
            self._unsubscribe()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def idle(self) -> None:
        """Until every move heard so far has been learned (tests)."""
        await self._pending.join()

    def _heard(self, event: ChangeEvent) -> None:
        source = event.extra.get("copied_from")
        if event.kind != "added" or not isinstance(source, int) or not event.uids:
            return
        try:
            self._pending.put_nowait((event.account_id, source, event.mailbox_id, event.uids))
        except asyncio.QueueFull:
            log.warning(
                "spam learning: too many moves waiting; one of %d messages is not learned", len(event.uids)
            )

    async def _work(self) -> None:
        while True:
            account_id, source, target, uids = await self._pending.get()
            try:
                await self._learn(account_id, source, target, uids)
            except Exception:
                log.exception("spam learning failed")
            finally:
                self._pending.task_done()

    async def _learn(self, account_id: int, source: int, target: int, uids: Sequence[int]) -> None:
        uses = {m.id: (m.special_use or "") for m in await self.store.list_mailboxes(account_id)}
        into_junk, from_junk = "\\Junk" in uses.get(target, ""), "\\Junk" in uses.get(source, "")
        if into_junk and not from_junk:
            kind = "spam"
        elif from_junk and not into_junk and "\\Trash" not in uses.get(target, ""):
            kind = "ham"
        else:
            return
        try:
            messages = await self.store.get_messages(target, uids)
        except StoreError as exc:
            log.warning("spam learning: the moved messages cannot be read: %s", exc)
            return
        for info in messages:
            if info.size > MAX_LEARN_SIZE:
                continue
            data = await self.store.read_content(info.content_id)
            try:
                status = await self.controller.learn(kind, data)
            except (OSError, TimeoutError) as exc:
                log.warning("spam learning: rspamd cannot be asked: %s", exc or type(exc).__name__)
                return
            if status in (200, 208, 204):
                self.learned += status == 200
                log.info(
                    "spam learning: account_id=%d uid=%d learned as %s (%d)",
                    account_id,
                    info.uid,
                    kind,
                    status,
                )
            else:
                log.warning("spam learning: rspamd answered %d to learn%s", status, kind)
