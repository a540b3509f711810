"""An account's recent logins (issue 12: "recent logins (time, protocol, address)"), written by the
`Authenticator` for every login attempt with the name of an existing account, whatever the protocol.

Implementation notes
- Mail programs log in again every few minutes, each a store write: an event equal to one recorded by this
  process less than `COALESCE_SECONDS` ago (same account, protocol, client, result and method) is not written
  again. The list therefore shows each distinct client and outcome at least every quarter of an hour, and a
  burst of failures as one line per client (the log has every attempt).
- A failure to write is logged and never fails the login: the history is a convenience, the log is the record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from postoffice.store import LoginEvent, MailStore, StoreError

log = logging.getLogger("postoffice.auth")

COALESCE_SECONDS = 900.0
_MAX_REMEMBERED = 10_000


class LoginHistory:
    def __init__(self, store: MailStore, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self._recent: dict[tuple[int, str, str, str, str], float] = {}

    async def record(self, account_id: int, protocol: str, client: str, result: str, method: str) -> None:
        now = self._clock()
        key = (account_id, protocol, client, result, method)
        last = self._recent.get(key)
        if last is not None and 0 <= now - last < COALESCE_SECONDS:
            return
        if len(self._recent) >= _MAX_REMEMBERED:
            self._recent.clear()
        self._recent[key] = now
        try:
            await self._store.record_login(account_id, LoginEvent(now, protocol, client, result, method))
        except StoreError as exc:
            log.warning("recording a login failed: %s", exc)
