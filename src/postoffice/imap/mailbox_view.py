"""The selected mailbox as one IMAP session sees it: message sequence numbers, UIDs, flags and \\Recent.

Implements the session-side bookkeeping of RFC 9051 sections 2.3.1.2 (message sequence numbers), 5.2 (mailbox
size and message status updates) and 7.5.1 (EXPUNGE), and RFC 3501 section 2.3.2 (\\Recent). Sans-IO: the
session gives it the store's snapshot at SELECT (`MailStore.snapshot`, shared with every other session that
selected the mailbox at the same MODSEQ) and then what changed after the highest MODSEQ it has read
(`MailStore.changes_since`, applied by `apply`); it answers with what to tell the client.

Invariants
- `uids` is the mailbox as the client knows it, in sequence-number order (sequence number n is `uids[n-1]`);
  UIDs only increase along the list, so lookups are binary searches.
- A message expunged by anyone stays in `uids` (and is in `gone`) until the session may report it
  (`take_expunges`): sequence numbers never shift under a command that uses them (RFC 9051 section 7.5.1).
- New messages are only appended at the end, so EXISTS never decreases without EXPUNGE responses before it.
- The flags held are those the client was last told (or is about to be told, `flag_updates`), so each flag
  change is reported once.
- Copy on write: `uids` and the flags column are the snapshot's own until the first change, so sessions that
  only read a mailbox share one copy (an idle session costs a few hundred octets, not 12 per message).
"""

from __future__ import annotations

import bisect
import itertools
from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

from postoffice.imap.sequence import SequenceSet
from postoffice.store import MailboxInfo, MessageInfo
from postoffice.store.api import MailboxChanges, MailboxSnapshot

#: What FETCH needs of one message: (sequence number, UID, flags, content id, size, internal date).
Entry = tuple[int, int, frozenset[str], int, int, float]


class InvalidSequence(ValueError):
    """A message sequence number above the number of messages (the client must get BAD)."""


#: `flags_text` keeps the texts of at most this many flag combinations, of at most FLAGS_TEXT_CHARS
#: characters together: the keywords in them are client data (docs/decisions/0043).
FLAGS_TEXT_ENTRIES = 1024
FLAGS_TEXT_CHARS = 1 << 20
_flags_texts: dict[tuple[frozenset[str], bool], str] = {}
_flags_text_chars = [0]


def flags_text(flags: frozenset[str], recent: bool = False) -> str:
    """The flag-list contents of a FETCH FLAGS response, cached per flag combination (interned by the
    store): sorted, with \\Recent last when `recent`."""
    key = (flags, recent)
    text = _flags_texts.get(key)
    if text is not None:
        return text
    names = sorted(flags)
    if recent:
        names.append("\\Recent")
    text = " ".join(names)
    if len(text) <= FLAGS_TEXT_CHARS:
        if len(_flags_texts) >= FLAGS_TEXT_ENTRIES or _flags_text_chars[0] + len(text) > FLAGS_TEXT_CHARS:
            _flags_texts.clear()
            _flags_text_chars[0] = 0
        _flags_texts[key] = text
        _flags_text_chars[0] += len(text)
    return text


#: `MailboxView.columns` finds UIDs one by one when it is asked for fewer than 1 / FEW_FACTOR of the view.
FEW_FACTOR = 32


class Columns(NamedTuple):
    """`MailboxView.columns`: one list per field, index i for the i-th UID asked about."""

    seqs: list[int]
    content_ids: list[int]
    sizes: list[int]
    internaldates: list[float]


class MailboxView:
    def __init__(self, snapshot: MailboxSnapshot, *, read_only: bool, recent: Iterable[int] = ()) -> None:
        self.info: MailboxInfo = snapshot.mailbox
        self.mailbox_id = snapshot.mailbox.id
        self.read_only = read_only
        self._base = snapshot
        self.uids: array[int] = snapshot.uids  # the snapshot's until `_own` copies it
        self._flags: Sequence[frozenset[str]] = snapshot.flags
        self._modseqs: array[int] = snapshot.modseqs  # each message's MODSEQ (RFC 7162), as `uids`
        if len(self._modseqs) != len(self.uids):  # a snapshot made without them (unknown: 0)
            self._modseqs = array("q", bytes(8 * len(self.uids)))
        self._owned = False
        self._added: dict[int, MessageInfo] = {}  # messages that are not in the snapshot
        self.gone: set[int] = set()
        self.recent: set[int] = set(recent)
        self.reported_exists = len(self.uids)
        self.reported_recent = len(self.recent)
        self.flag_updates: set[int] = set()  # UIDs whose FLAGS the client has yet to be told
        self.dirty = False  # the store reported a change not yet read back
        # The highest MODSEQ read back: every change up to it is in `uids`, the flags and `gone`, so the next
        # read asks the store only for what changed after it (`apply`).
        self.modseq = snapshot.modseq
        # Keywords the client was told about in FLAGS / PERMANENTFLAGS (RFC 9051 section 7.3.5)
        self.keywords: set[str] = set(snapshot.keywords)
        #: CONDSTORE is on (RFC 7162 3.1): a new MODSEQ is news even when the flags ended as they were
        self.report_modseq = False
        #: The highest MODSEQ up to which every change, expunges included, has been told to the client: below
        #: any expunge still held back (`gone`); the HIGHESTMODSEQ a QRESYNC client may resume from (3.2)
        self.full_modseq = snapshot.modseq
        #: What FETCH THREADID and SAVEDATE read (RFC 8474, RFC 8514), by UID: neither ever changes
        self.infos: dict[int, MessageInfo] = {}

    def _own(self) -> list[frozenset[str]]:
        """The columns, copied from the snapshot (which other sessions share) before the first change."""
        flags = self._flags
        if self._owned and isinstance(flags, list):
            return flags
        self.uids = self.uids[:]
        self._modseqs = self._modseqs[:]
        owned = self._flags = list(flags)
        self._owned = True
        return owned

    # -- lookups -----------------------------------------------------------------------------------------
    @property
    def exists(self) -> int:
        return len(self.uids)

    def _index(self, uid: int) -> int | None:
        i = bisect.bisect_left(self.uids, uid)
        return i if i < len(self.uids) and self.uids[i] == uid else None

    def seq_of(self, uid: int) -> int | None:
        i = self._index(uid)
        return None if i is None else i + 1

    def __contains__(self, uid: int) -> bool:
        return self._index(uid) is not None

    def flags(self, uid: int) -> frozenset[str]:
        i = self._index(uid)
        return self._flags[i] if i is not None else frozenset()

    def modseq_of(self, uid: int) -> int:
        """The message's MODSEQ as this session last read it (RFC 7162); 0 for a UID not in the view."""
        i = self._index(uid)
        return self._modseqs[i] if i is not None and i < len(self._modseqs) else 0

    def unannounced_keywords(self, uids: Iterable[int]) -> set[str]:
        """Keywords on these messages that the client has not been told about in a FLAGS response yet."""
        found: set[str] = set()
        for uid in uids:
            found.update(f for f in self.flags(uid) if not f.startswith("\\") and f not in self.keywords)
        return found

    def resolve(self, sequence: SequenceSet, *, uid: bool) -> list[int]:
        """The UIDs a sequence set names, ascending. Message numbers above EXISTS raise InvalidSequence (BAD,
        RFC 9051 section 9 `seq-number`); UIDs that do not exist are silently left out (section 6.4.9)."""
        uids = self.uids
        out: list[int] = []
        if uid:
            largest = uids[-1] if uids else 0
            for low, high in sequence.resolve(largest):
                start = bisect.bisect_left(uids, low)
                stop = bisect.bisect_right(uids, high)
                out.extend(uids[start:stop])
            return out
        if sequence.exceeds(len(uids)):
            raise InvalidSequence("message sequence number out of range")
        for low, high in sequence.resolve(len(uids)):
            out.extend(uids[low - 1 : high])
        return out

    def positions(self, uids: list[int]) -> Iterator[tuple[int, int, frozenset[str]]]:
        """(sequence number, UID, flags) of `uids` (ascending, all in the view), walking the view once."""
        column, flags = self.uids, self._flags
        i = bisect.bisect_left(column, uids[0]) if uids else 0
        for uid in uids:
            if column[i] != uid:
                i = bisect.bisect_left(column, uid, i)
            yield i + 1, uid, flags[i]
            i += 1

    def entries(self, uids: list[int]) -> Iterator[Entry]:
        """(sequence number, UID, flags, content id, size, internal date) of `uids` (ascending, all in the
        view), walking the view and the snapshot once each."""
        base = self._base
        base_uids = base.uids
        content_ids: Sequence[int] = base.content_ids
        sizes: Sequence[int] = base.sizes
        dates: Sequence[float] = base.internaldates
        j = 0
        for seq, uid, flags in self.positions(uids):
            added = self._added.get(uid) if self._added else None
            if added is not None:
                yield seq, uid, flags, added.content_id, added.size, added.internaldate
                continue
            if j >= len(base_uids) or base_uids[j] != uid:
                j = bisect.bisect_left(base_uids, uid, j)
            yield seq, uid, flags, content_ids[j], sizes[j], dates[j]
            j += 1

    def columns(self, uids: list[int]) -> Columns:
        """Sequence numbers, content ids, sizes and internal dates of `uids` (ascending, all in the view), as
        columns: what `entries` gives, without a tuple per message (SORT and THREAD of 100,000 messages)."""
        base = self._base
        added = self._added
        # Messages added after the snapshot have UIDs above all of its own (UIDs only grow): they end `uids`
        cut = bisect.bisect_right(uids, base.uids[-1]) if base.uids else 0
        head, tail = uids[:cut], uids[cut:]
        if not all(uid in added for uid in tail):
            entries = list(self.entries(uids))  # not expected: the general walk
            return Columns(
                [e[0] for e in entries],
                [e[3] for e in entries],
                [e[4] for e in entries],
                [e[5] for e in entries],
            )
        # A few UIDs are found by bisection; many by one pass over the view with a set (bisection on an array
        # makes an int object per step: for most of a large mailbox slower than the pass)
        few = len(uids) * FEW_FACTOR < len(self.uids)
        if len(uids) == len(self.uids):  # every message: sequence number = position + 1
            seqs = list(range(1, len(uids) + 1))
        elif few:
            seqs = [bisect.bisect_left(self.uids, uid) + 1 for uid in uids]
        else:
            asked = set(uids)
            seqs = list(itertools.compress(range(1, len(self.uids) + 1), map(asked.__contains__, self.uids)))
        news = [added[uid] for uid in tail]
        content_ids: Sequence[int] = base.content_ids
        sizes: Sequence[int] = base.sizes
        dates: Sequence[float] = base.internaldates
        if few:
            where = [bisect.bisect_left(base.uids, uid) for uid in head]
            content_ids = [content_ids[i] for i in where]
            sizes = [sizes[i] for i in where]
            dates = [dates[i] for i in where]
        elif len(head) != len(base.uids):  # a subset of the snapshot's messages (C loops, no tuples)
            wanted = set(head)
            mask = list(map(wanted.__contains__, base.uids))
            content_ids = list(itertools.compress(content_ids, mask))
            sizes = list(itertools.compress(sizes, mask))
            dates = list(itertools.compress(dates, mask))
        return Columns(
            seqs,
            [*content_ids, *(m.content_id for m in news)],
            [*sizes, *(m.size for m in news)],
            [*dates, *(m.internaldate for m in news)],
        )

    def flags_of(self, uid: int, *, with_recent: bool) -> str:
        """The contents of the FLAGS list to send for `uid`."""
        return flags_text(self.flags(uid), with_recent and uid in self.recent)

    # -- updates -----------------------------------------------------------------------------------------
    def vanish(self) -> None:
        """The mailbox no longer exists: every message is gone."""
        self.dirty = False
        self.gone.update(self.uids)
        self.flag_updates.clear()

    def apply(self, changes: MailboxChanges) -> list[int]:
        """Take what changed in the store after `modseq` (`MailStore.changes_since`), at a cost in proportion
        to the changes. Returns the new UIDs. (`dirty` is the caller's to clear, before it reads: see
        `SessionState.read_back`.)"""
        if not self.gone:
            self.full_modseq = self.modseq  # what was read before this: all told, or about to be
        expunged: Iterable[int] = changes.expunged
        if changes.present is not None:  # tombstones were pruned after `modseq`: absent means expunged (0069)
            present = set(changes.present)
            expunged = [uid for uid in self.uids if uid not in present]
        for uid in expunged:
            if uid in self:
                self.gone.add(uid)
                self.flag_updates.discard(uid)
        last = self.uids[-1] if self.uids else 0
        new: list[int] = []
        for message in changes.messages:  # UID order
            uid = message.uid
            i = self._index(uid) if uid <= last else None
            if i is not None:
                if uid in self.gone:
                    continue
                if self._flags[i] == message.flags:
                    if self._modseqs[i] != message.modseq:  # changed and changed back: a new MODSEQ
                        self._own()
                        self._modseqs[i] = message.modseq
                        if self.report_modseq:
                            self.flag_updates.add(uid)
                    continue
                self._own()[i] = message.flags
                self._modseqs[i] = message.modseq
                self.flag_updates.add(uid)
            elif uid > last:
                self._own().append(message.flags)
                self._modseqs.append(message.modseq)
                self.uids.append(uid)
                self._added[uid] = message
                new.append(uid)
        self.modseq = max(self.modseq, changes.highest_modseq)
        return new

    def mark_gone(self, uids: Iterable[int]) -> None:
        for uid in uids:
            if uid in self:
                self.gone.add(uid)
                self.flag_updates.discard(uid)

    def take_expunges(self) -> list[int]:
        """Remove the gone messages; their sequence numbers in the order to send EXPUNGE responses (each one
        valid at the moment it is sent: highest first, so no number shifts under a later one)."""
        return self._remove_gone()[0]

    def take_vanished(self) -> list[int]:
        """Remove the gone messages; their UIDs, ascending (for one VANISHED response, RFC 7162 3.2.10)."""
        return self._remove_gone()[1]

    def _remove_gone(self) -> tuple[list[int], list[int]]:
        if not self.gone:
            self.full_modseq = self.modseq
            return [], []
        gone = self.gone
        keep = [uid not in gone for uid in self.uids]
        # Only the first `reported_exists` messages were announced (new ones are appended, and told by the
        # next EXISTS): one that came and went before that is forgotten without a word, as if never seen.
        told = self.reported_exists
        seqs = [i + 1 for i, kept in enumerate(keep) if not kept and i < told]
        removed = [
            uid for i, (uid, kept) in enumerate(zip(self.uids, keep, strict=True)) if not kept and i < told
        ]
        self.uids = array(self.uids.typecode, itertools.compress(self.uids, keep))
        self._modseqs = array(self._modseqs.typecode, itertools.compress(self._modseqs, keep))
        self._flags = list(itertools.compress(self._flags, keep))
        self._owned = True
        for uid in gone:
            self._added.pop(uid, None)
            self.recent.discard(uid)
        self.gone = set()
        self.reported_exists -= len(seqs)
        self.full_modseq = self.modseq
        return seqs[::-1], removed
