"""The selected mailbox as one IMAP session sees it: message sequence numbers, UIDs, flags and \\Recent.

Implements the session-side bookkeeping of RFC 9051 sections 2.3.1.2 (message sequence numbers), 5.2 (mailbox
size and message status updates) and 7.5.1 (EXPUNGE), and RFC 3501 section 2.3.2 (\\Recent). Sans-IO: the
session gives it the store's message list at SELECT and then what changed after the highest MODSEQ it has read
(`MailStore.changes_since`, applied by `apply`); it answers with what to tell the client.

Invariants
- `uids` is the mailbox as the client knows it, in sequence-number order (sequence number n is `uids[n-1]`);
  UIDs only increase along the list, so lookups are binary searches.
- A message expunged by anyone stays in `uids` (and is in `gone`) until the session may report it
  (`take_expunges`): sequence numbers never shift under a command that uses them (RFC 9051 section 7.5.1).
- New messages are only appended at the end, so EXISTS never decreases without EXPUNGE responses before it.
- `messages` holds the flags the client was last told (or is about to be told, `flag_updates`), so each flag
  change is reported once.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from postoffice.imap.sequence import SequenceSet
from postoffice.store import MailboxInfo, MessageInfo
from postoffice.store.api import MailboxChanges


class InvalidSequence(ValueError):
    """A message sequence number above the number of messages (the client must get BAD)."""


class MailboxView:
    def __init__(
        self, info: MailboxInfo, messages: list[MessageInfo], *, read_only: bool, recent: Iterable[int] = ()
    ) -> None:
        self.info = info
        self.mailbox_id = info.id
        self.read_only = read_only
        self.uids: list[int] = [m.uid for m in messages]
        self.messages: dict[int, MessageInfo] = {m.uid: m for m in messages}
        self.gone: set[int] = set()
        self.recent: set[int] = set(recent)
        self.reported_exists = len(self.uids)
        self.reported_recent = len(self.recent)
        self.flag_updates: set[int] = set()  # UIDs whose FLAGS the client has yet to be told
        self.dirty = False  # the store reported a change not yet read back
        # The highest MODSEQ read back: every change up to it is in `uids`, `messages` and `gone`, so the next
        # read asks the store only for what changed after it (`apply`).
        self.modseq = max((m.modseq for m in messages), default=0)
        # Keywords the client was told about in FLAGS / PERMANENTFLAGS (RFC 9051 section 7.3.5)
        self.keywords: set[str] = {f for m in messages for f in m.flags if not f.startswith("\\")}

    def unannounced_keywords(self, uids: Iterable[int]) -> set[str]:
        """Keywords on these messages that the client has not been told about in a FLAGS response yet."""
        found: set[str] = set()
        for uid in uids:
            message = self.messages.get(uid)
            if message is not None:
                found.update(f for f in message.flags if not f.startswith("\\") and f not in self.keywords)
        return found

    # -- lookups -----------------------------------------------------------------------------------------
    @property
    def exists(self) -> int:
        return len(self.uids)

    def seq_of(self, uid: int) -> int | None:
        i = bisect.bisect_left(self.uids, uid)
        return i + 1 if i < len(self.uids) and self.uids[i] == uid else None

    def resolve(self, sequence: SequenceSet, *, uid: bool) -> list[int]:
        """The UIDs a sequence set names, ascending. Message numbers above EXISTS raise InvalidSequence (BAD,
        RFC 9051 section 9 `seq-number`); UIDs that do not exist are silently left out (section 6.4.9)."""
        if uid:
            largest = self.uids[-1] if self.uids else 0
            out: list[int] = []
            for low, high in sequence.resolve(largest):
                start = bisect.bisect_left(self.uids, low)
                stop = bisect.bisect_right(self.uids, high)
                out.extend(self.uids[start:stop])
            return out
        if sequence.exceeds(len(self.uids)):
            raise InvalidSequence("message sequence number out of range")
        result: list[int] = []
        for low, high in sequence.resolve(len(self.uids)):
            result.extend(self.uids[low - 1 : high])
        return result

    def flags_of(self, uid: int, *, with_recent: bool) -> list[str]:
        message = self.messages.get(uid)
        flags = sorted(message.flags) if message is not None else []
        if with_recent and uid in self.recent:
            flags.append("\\Recent")
        return flags

    # -- updates -----------------------------------------------------------------------------------------
    def refresh(self, messages: list[MessageInfo]) -> list[int]:
        """Take the store's current list: note expunged messages as `gone`, flag changes in `flag_updates`,
        and append new messages. Returns the new UIDs."""
        self.dirty = False
        current = {m.uid: m for m in messages}
        for uid in self.uids:
            if uid in self.gone:
                continue
            now = current.get(uid)
            if now is None:
                self.gone.add(uid)
                self.flag_updates.discard(uid)
                continue
            before = self.messages.get(uid)
            if before is None or before.flags != now.flags:
                self.flag_updates.add(uid)
            self.messages[uid] = now
        last = self.uids[-1] if self.uids else 0
        new = [m.uid for m in messages if m.uid > last]
        for uid in new:
            self.uids.append(uid)
            self.messages[uid] = current[uid]
        self.modseq = max(self.modseq, max((m.modseq for m in messages), default=0))
        return new

    def apply(self, changes: MailboxChanges) -> list[int]:
        """Take what changed in the store after `modseq` (`MailStore.changes_since`), with the same outcome
        as `refresh` with the whole list, at a cost in proportion to the changes. Returns the new UIDs."""
        self.dirty = False
        for uid in changes.expunged:
            if uid in self.messages:
                self.gone.add(uid)
                self.flag_updates.discard(uid)
        last = self.uids[-1] if self.uids else 0
        new: list[int] = []
        for message in changes.messages:  # UID order
            uid = message.uid
            before = self.messages.get(uid)
            if before is not None:
                if uid in self.gone:
                    continue
                if before.flags != message.flags:
                    self.flag_updates.add(uid)
                self.messages[uid] = message
            elif uid > last:
                self.uids.append(uid)
                self.messages[uid] = message
                new.append(uid)
        self.modseq = max(self.modseq, changes.highest_modseq)
        return new

    def mark_gone(self, uids: Iterable[int]) -> None:
        for uid in uids:
            if uid in self.messages:
                self.gone.add(uid)
                self.flag_updates.discard(uid)

    def take_expunges(self) -> list[int]:
        """Remove the gone messages; their sequence numbers in the order to send EXPUNGE responses (each one
        valid at the moment it is sent: highest first, so no number shifts under a later one)."""
        if not self.gone:
            return []
        seqs = [i + 1 for i, uid in enumerate(self.uids) if uid in self.gone]
        self.uids = [uid for uid in self.uids if uid not in self.gone]
        for uid in self.gone:
            self.messages.pop(uid, None)
            self.recent.discard(uid)
        self.gone.clear()
        self.reported_exists -= len(seqs)
        return sorted(seqs, reverse=True)
