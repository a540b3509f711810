"""Exclusive maildrop access for POP3 and POP2 (RFC 1939 section 8: one session per maildrop).

The lock is process state, not store state: a crash releases it, which is right since a crashed session
removed nothing (deletions happen only in the UPDATE state, after QUIT).
"""

from __future__ import annotations


class MaildropLocks:
    def __init__(self) -> None:
        self._held: set[int] = set()

    def acquire(self, account_id: int) -> bool:
        """True when the caller now holds the maildrop; False when another session has it ([IN-USE])."""
        if account_id in self._held:
            return False
        self._held.add(account_id)
        return True

    def release(self, account_id: int) -> None:
        self._held.discard(account_id)

    def held(self, account_id: int) -> bool:
        return account_id in self._held
