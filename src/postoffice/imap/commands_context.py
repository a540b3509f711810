"""IMAP CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267 section 4): searches kept up to date for the client
(RETURN (UPDATE)) and the CANCELUPDATE command. The other two return options are answered where the
searching commands are (`commands_message.search`, `commands_sort.sort`, `search.esearch_response`):
CONTEXT is a hint and changes nothing (4.2), PARTIAL m:n gives the results at those positions (4.4).

What a client sees (docs/decisions/0070)
- `tag SEARCH RETURN (UPDATE ...) keys` (or UID SEARCH, SORT, UID SORT) answers as without UPDATE, and from
  then on, while the mailbox stays selected and until `CANCELUPDATE "tag"`, the changes to the set of
  matching messages come unsolicited: `* ESEARCH (TAG "tag") [UID] REMOVEFROM (pos set ...) ADDTO (pos set
  ...)`, sequence numbers or UIDs as the command used (4.3.2). A SEARCH context's result is in mailbox order
  and its updates use position 0 (4.3.3, 4.3.4: the client places or finds them itself); a SORT context's
  give the positions in the sort order, runs of consecutive positions as one pair, processed in the order
  they appear (each position is valid when its pair is processed).
- Limits (4.3.1, RFC 5267 section 6): at most MAX_UPDATE_CONTEXTS per session; beyond, and for a search whose
  result changes with the clock alone (OLDER, YOUNGER: RFC 5032), the command is answered in full with an
  untagged `NO [NOUPDATE "tag"]` and no updates. UPDATE with a tag whose updates are still live is BAD
  (4.3); so is CANCELUPDATE with a tag that is not quoted (section 5); an unknown tag is NO.

When updates are sent (invariants: 4.3.3, 4.3.4; RFC 9051 7.5.1)
- Only through the session's sync (`SessionState.sync`, the SearchUpdates hooks): at the end of every command,
  in IDLE, and before EXPUNGE or VANISHED wherever those are sent (MOVE's too).
- REMOVEFROM for expunged messages comes at once, also while EXPUNGE is held back during FETCH, STORE and
  SEARCH (appendix A.3): their sequence numbers stay valid until the EXPUNGE, which always comes after.
- ADDTO (and REMOVEFROM for a message whose flags took it out) comes after the EXISTS and the FETCH FLAGS of
  the same sync, so every sequence number in it is one the client knows.
- After a NOTIFY (RFC 5465; decision 0077) the updates go with the events of the selected mailbox it asks
  for (5.1-5.3: ADDTO and REMOVEFROM "will also be generated" with FlagChange, MessageNew, MessageExpunge):
  without FlagChange a message whose flag change the client was not told of is not looked at again (it
  waits, as the FETCH FLAGS does: a later NOTIFY SET with FlagChange tells both); without MessageNew no new
  message is announced, so none is named; without MessageExpunge (a snapshot, NOTIFY NONE) REMOVEFROM waits
  for the EXPUNGE the session's own command sends, and with SELECTED-DELAYED for a command (6.1.2).
- `UPDATE (fetch-att ...)` (RFC 5465 section 7): a new message (never looked at before) that joins a result
  is fetched with those attributes, between its EXISTS and the ESEARCH (section 7's order; 5.2 says the
  other, erratum 4833 allows either), in one FETCH response with NOTIFY's MessageNew attributes and those of
  the other searches it joined (5.2 SHOULD; rendered by `commands_notify.fetch_new`, never setting \\Seen).
  None for a message that joins by a flag change ("No untagged FETCH response SHOULD be returned"), nor for
  what the session added itself (section 1: "appended in another session"; `SessionState.own_added`).

How a context follows the mailbox (appendix B; bounded work and memory)
- The search program is kept as it was translated when the command ran: sequence numbers, `*` and `$` are
  what they meant then (4.3, errata to RFC 3501). Only \\Recent (RECENT, NEW, OLD: IMAP4rev1) is translated
  again, from the view of the moment, with the numbers of the command's time kept for that.
- The result is kept as UIDs (an array: 4 octets a message) in the requested order. What the view reads
  back names the messages to look at again (`note`): new messages always, changed ones only when the program
  tests flags or MODSEQ. Those few are evaluated in the store's index at the next sync (the program ANDed
  with their UIDs); more than RERUN_THRESHOLD of them, and the whole search runs again, the difference is
  sent. Expunged messages leave without a store read.
- A SORT context places each new message by a binary search over its result, comparing what the sort keys
  of the two messages are (a message's sort keys never change: content, size and dates are fixed; only its
  sequence number moves, which the client follows from EXPUNGE); more than RESORT_THRESHOLD new members at
  once, and the members are sorted again.
- A store failure while updating leaves the changes pending for the next sync.
"""

from __future__ import annotations

import bisect
import logging
from array import array
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from postoffice.imap import parser as p
from postoffice.imap import search as search_mod
from postoffice.imap.mailbox_view import MailboxView
from postoffice.imap.sequence import format_sequence_set
from postoffice.imap.state import Done, SessionState, bad, no
from postoffice.store import StoreError
from postoffice.store.api import MailboxChanges
from postoffice.store.criteria import All, And, Criteria, HasFlag, ModSeq, Not, Or, UidIn

log = logging.getLogger("postoffice.imap")

#: Searches kept up to date at once in one session (RFC 5267 4.3.1: at least one, "SHOULD provide more").
MAX_UPDATE_CONTEXTS = 8
#: More changed messages than this before one sync, and a context's search runs again over the mailbox.
RERUN_THRESHOLD = 256
#: More new members of a SORT context than this in one sync, and its members are sorted again.
RESORT_THRESHOLD = 64

_UIDS = "I" if array("I").itemsize >= 4 else "L"  # UIDs are 32-bit (RFC 9051 2.3.1.1)


class Ordering(Protocol):
    """A SORT's order over the messages of a view (`commands_sort.SortOrder`)."""

    reverse: tuple[bool, ...]

    async def values(self, view: MailboxView, uids: list[int]) -> list[tuple[Any, ...]]:
        """What the sort keys compare of each of `uids` (ascending, in the view), one tuple per message."""

    async def sorted(self, view: MailboxView, uids: list[int]) -> list[int]:
        """`uids` (ascending, in the view) in the sort order."""


class _Place:
    """A message's place in a SORT order: its values under the keys, each ascending or REVERSE, then its UID
    (messages equal under every key stay in mailbox order, RFC 5256 section 3)."""

    __slots__ = ("reverse", "uid", "values")

    def __init__(self, values: tuple[Any, ...], reverse: tuple[bool, ...], uid: int) -> None:
        self.values = values
        self.reverse = reverse
        self.uid = uid

    def __lt__(self, other: _Place) -> bool:
        for mine, theirs, reverse in zip(self.values, other.values, self.reverse, strict=True):
            if mine != theirs:
                return bool(mine > theirs) if reverse else bool(mine < theirs)
        return self.uid < other.uid


def _tests_flags(criteria: Criteria) -> bool:
    """Whether a message's flags or MODSEQ can change whether it matches (else only new messages can)."""
    if isinstance(criteria, HasFlag | ModSeq):
        return True
    if isinstance(criteria, Not):
        return _tests_flags(criteria.criterion)
    if isinstance(criteria, Or):
        return _tests_flags(criteria.left) or _tests_flags(criteria.right)
    if isinstance(criteria, And):
        return any(_tests_flags(term) for term in criteria.terms)
    return False


class _Program:
    """A searching command's keys as the store evaluates them: fixed when the command ran, except \\Recent."""

    def __init__(
        self, session: SessionState, command: p.Search | p.Sort, criteria: Criteria, saved: Sequence[int]
    ) -> None:
        view = session.selected_view
        recent = not session.rev2 and any(
            isinstance(k, p.SearchFlag) and k.name in ("RECENT", "NEW", "OLD")
            for k in search_mod.all_keys(command.keys)
        )
        self.fixed: Criteria | None = None if recent else criteria
        self.keys = command.keys
        self.charset = command.charset
        # what sequence numbers, "*" and "$" meant when the command ran (only kept when translating again)
        self.uids_by_seq: Sequence[int] = array(_UIDS, view.uids) if recent else ()
        self.saved: list[int] | None = list(saved) if recent else None
        self.tests_flags = _tests_flags(criteria)

    def criteria(self, view: MailboxView) -> Criteria:
        if self.fixed is not None:
            return self.fixed
        return search_mod.to_criteria(
            self.keys,
            uids_by_seq=self.uids_by_seq,
            saved=self.saved,
            recent=view.recent,
            charset=self.charset,
        )


class _Context:
    """One search kept up to date: its result (UIDs in the requested order) and what is left to look at."""

    def __init__(
        self,
        tag: str,
        uid: bool,
        program: _Program,
        members: Sequence[int],
        ordering: Ordering | None,
        high: int,
        fetch: tuple[p.FetchItem, ...] = (),
    ) -> None:
        self.tag = tag
        self.uid = uid
        self.program = program
        self.ordering = ordering  # None: a SEARCH, in mailbox order
        self.fetch = fetch  # RFC 5465 section 7: what to FETCH of a new message that joins the result
        self.members = array(_UIDS, members)
        # the members ascending, for lookups (a SEARCH's members are that already)
        self.by_uid = self.members if ordering is None else array(_UIDS, sorted(members))
        self.pending: set[int] = set()  # messages to look at again
        self.rerun = False  # too many of those: search again
        self.high = high  # every message up to this UID was looked at; above it, messages are new

    def has(self, uid: int) -> bool:
        by_uid = self.by_uid
        i = bisect.bisect_left(by_uid, uid)
        return i < len(by_uid) and by_uid[i] == uid

    def response(self, data: str) -> bytes:
        quoted = self.tag.replace("\\", "\\\\").replace('"', '\\"')
        return f'* ESEARCH (TAG "{quoted}"){" UID" if self.uid else ""} {data}\r\n'.encode()


def _discard(ascending: array[int], uids: list[int]) -> None:
    """Take `uids` (ascending, all present) out of an ascending array, in place."""
    if len(uids) <= 32:
        for uid in uids:
            del ascending[bisect.bisect_left(ascending, uid)]
        return
    leaving = set(uids)
    ascending[:] = array(ascending.typecode, (u for u in ascending if u not in leaving))


def _insert(ascending: array[int], uids: list[int]) -> None:
    """Put `uids` (none present) into an ascending array, in place."""
    if len(uids) <= 32:
        for uid in uids:
            bisect.insort(ascending, uid)
        return
    ascending[:] = array(ascending.typecode, sorted([*ascending, *uids]))


def _told(view: MailboxView) -> int:
    """The highest UID the client was told of: the view's messages up to it were announced (EXISTS)."""
    return view.uids[view.reported_exists - 1] if view.reported_exists else 0


def _runs(positions: Sequence[int]) -> list[tuple[int, int]]:
    """Runs of consecutive positions (ascending): (first index into `positions`, length)."""
    runs: list[tuple[int, int]] = []
    for i, position in enumerate(positions):
        if runs and position == positions[i - 1] + 1:
            start, length = runs[-1]
            runs[-1] = (start, length + 1)
        else:
            runs.append((i, 1))
    return runs


async def _place(
    ordering: Ordering, view: MailboxView, kept: list[int], added: list[int]
) -> tuple[array[int], list[int]]:
    """A SORT context's new members in order (`kept`, in order, and `added`, ascending), and the positions of
    `added` among them, ascending."""
    if len(added) > RESORT_THRESHOLD:
        everything = await ordering.sorted(view, sorted([*kept, *added]))
        joining = set(added)
        return array(_UIDS, everything), [i for i, u in enumerate(everything) if u in joining]
    reverse = ordering.reverse
    memo: dict[int, _Place] = {}

    async def place(uid: int) -> _Place:
        found = memo.get(uid)
        if found is None:
            (values,) = await ordering.values(view, [uid])
            found = memo[uid] = _Place(values, reverse, uid)
        return found

    newcomers = sorted(
        _Place(values, reverse, uid)
        for uid, values in zip(added, await ordering.values(view, added), strict=True)
    )
    members = list(kept)
    positions: list[int] = []
    low = 0
    for newcomer in newcomers:  # in their order: each goes after the one before it
        high = len(members)
        while low < high:
            middle = (low + high) // 2
            if await place(members[middle]) < newcomer:
                low = middle + 1
            else:
                high = middle
        members.insert(low, newcomer.uid)
        memo[newcomer.uid] = newcomer
        positions.append(low)
        low += 1
    return array(_UIDS, members), positions


class LiveSearches:
    """The session's searches kept up to date (`SessionState.search_updates`; see the module docstring)."""

    def __init__(self, session: SessionState) -> None:
        self.session = session
        self.contexts: dict[str, _Context] = {}

    # -- the hooks of SessionState (SearchUpdates) -----------------------------------------------------------
    def note(self, changes: MailboxChanges) -> None:
        if not changes.messages:
            return
        for context in self.contexts.values():
            if context.rerun:
                continue
            if context.program.tests_flags:
                uids = [m.uid for m in changes.messages]
            else:
                high = context.high
                uids = [m.uid for m in changes.messages if m.uid > high]
            if len(context.pending) + len(uids) > RERUN_THRESHOLD:
                context.rerun = True
                context.pending = set()
            else:
                context.pending.update(uids)

    def remove_gone(self) -> None:
        view = self.session.view
        if view is None or not view.gone:
            return
        for context in self.contexts.values():
            gone = sorted(u for u in view.gone if context.has(u))
            context.pending.difference_update(view.gone)
            if gone:
                self.session.send(context.response(self._remove(context, view, gone)))

    async def update(self, new_uids: list[int]) -> None:
        session = self.session
        view = session.view
        if view is None:
            return
        answers: list[tuple[_Context, str]] = []
        #: RFC 5465 section 7: the fetch attributes of the searches each new message joined
        joined: dict[int, list[p.FetchItem]] = {}
        for context in list(self.contexts.values()):
            if not context.pending and not context.rerun:
                context.high = max(context.high, _told(view))
                continue
            high = context.high
            try:
                data, added = await self._refresh(context, view)
            except StoreError as exc:  # the changes stay pending: the next sync tries again
                log.warning(
                    "imap client %s: search %s not updated: %s",
                    session.transport.peer_ip,
                    context.tag,
                    exc,
                )
                continue
            if data:
                answers.append((context, data))
            if context.fetch:
                # a new message (never looked at before), not one a flag change brought in: "No untagged
                # FETCH response SHOULD be returned if a message becomes a member ... due to flag ...
                # changes"; nor what this session added itself (section 1: "in another session")
                for uid in added:
                    if uid > high and uid not in session.own_added:
                        joined.setdefault(uid, []).extend(context.fetch)
        # section 7: "the EXISTS response MUST precede any FETCH responses, and together they MUST precede the
        # ESEARCH response" (5.2 says the FETCH follows ADDTO; erratum 4833: either; this is section 7's
        # order); MessageNew's and these attributes in one FETCH response per message (5.2 SHOULD)
        notifications = session.notifications
        if notifications is not None:
            await notifications.new_messages(new_uids, joined)
        elif joined:
            await _fetch_joined(session, joined)
        for context, data in answers:
            session.send(context.response(data))

    # -- keeping a context -----------------------------------------------------------------------------------
    async def _refresh(self, context: _Context, view: MailboxView) -> tuple[str, list[int]]:
        """Look at the pending messages again (or the whole mailbox); the REMOVEFROM and ADDTO data to send,
        and the UIDs added. Only messages the client was told of (EXISTS) are looked at: the others stay
        pending. Without FlagChange for the selected mailbox (RFC 5465 5.1: ADDTO and REMOVEFROM go with that
        event), a message whose flag change the client has not been told of stays pending too, and the gone
        ones are `remove_gone`'s (5.3). Nothing of the context changes before the last store read is over."""
        gone = view.gone
        told = _told(view)
        criteria = context.program.criteria(view)
        # flag changes not told (`SessionState.sync` keeps them without FlagChange): not yet for this context
        held = view.flag_updates if not self.session.selected_events.flags else set()
        high = context.high
        if context.rerun:
            if isinstance(criteria, All):
                matches = [u for u in view.uids[: view.reported_exists] if u not in gone]
            else:
                found = await self.session.store.search(view.mailbox_id, criteria)
                matches = [u for u in found if u <= told and u in view and u not in gone]
            matched = set(matches)
            waiting = {u for u in held if u <= high}
            staying = matched | gone | waiting  # (the gone ones are `remove_gone`'s)
            removed = [u for u in context.by_uid if u <= told and u not in staying]
            added = [u for u in matches if not context.has(u) and u not in waiting]
            later = {u for u in view.uids[view.reported_exists :] if u not in gone} | waiting
        else:
            waiting = {u for u in context.pending if u in held and u <= high}
            later = {u for u in context.pending if u > told} | waiting
            candidates = sorted(
                u for u in context.pending if u <= told and u in view and u not in gone and u not in waiting
            )
            if not candidates or isinstance(criteria, All):
                matched = set(candidates)
            else:
                restricted = And((criteria, UidIn.of(candidates)))
                matched = set(await self.session.store.search(view.mailbox_id, restricted))
            removed = [u for u in candidates if u not in matched and context.has(u)]
            added = [u for u in candidates if u in matched and not context.has(u)]
        placed: tuple[array[int], list[int]] | None = None
        if added and context.ordering is not None:
            leaving = set(removed)
            kept = [u for u in context.members if u not in leaving]
            placed = await _place(context.ordering, view, kept, added)
        context.pending = later
        context.rerun = False
        context.high = max(context.high, told)
        parts = []
        if removed:
            parts.append(self._remove(context, view, removed))
        if added:
            parts.append(self._add(context, view, added, placed))
        return " ".join(parts), added

    def _number(self, context: _Context, view: MailboxView) -> Callable[[int], int]:
        if context.uid:
            return int
        seq_of = view.seq_of

        def number(uid: int) -> int:
            seq = seq_of(uid)
            if seq is None:  # pragma: no cover - members are always in the view
                raise RuntimeError(f"UID {uid} of a search result is not in the view")
            return seq

        return number

    def _remove(self, context: _Context, view: MailboxView, removed: list[int]) -> str:
        """Take `removed` (ascending, all members) out of the context; the REMOVEFROM data item (4.3.4)."""
        number = self._number(context, view)
        if context.ordering is None:
            data = f"REMOVEFROM (0 {format_sequence_set(map(number, removed))})"
            _discard(context.members, removed)
            return data
        leaving = set(removed)
        members = context.members
        positions = [i for i, u in enumerate(members) if u in leaving]
        pairs = []
        taken = 0
        for first, length in _runs(positions):
            run = [members[i] for i in positions[first : first + length]]
            # 1-based, in the list as it is when this pair is processed (the runs before it are gone)
            pairs.append(
                f"{positions[first] - taken + 1} {format_sequence_set(map(number, run), sort=False)}"
            )
            taken += length
        context.members = array(_UIDS, (u for u in members if u not in leaving))
        _discard(context.by_uid, removed)
        return f"REMOVEFROM ({' '.join(pairs)})"

    def _add(
        self,
        context: _Context,
        view: MailboxView,
        added: list[int],
        placed: tuple[array[int], list[int]] | None,
    ) -> str:
        """Put `added` (ascending, none a member) into the context; the ADDTO data item (4.3.3)."""
        number = self._number(context, view)
        if context.ordering is None or placed is None:
            _insert(context.members, added)
            return f"ADDTO (0 {format_sequence_set(map(number, added))})"
        members, positions = placed
        pairs = []
        for first, length in _runs(positions):
            run = [members[i] for i in positions[first : first + length]]
            # the final positions: every member before a run is there when its pair is processed
            pairs.append(f"{positions[first] + 1} {format_sequence_set(map(number, run), sort=False)}")
        context.members = members
        _insert(context.by_uid, added)
        return f"ADDTO ({' '.join(pairs)})"


# --------------------------------------------------------------------------------- the searching commands


def wants_updates(command: p.Search | p.Sort) -> bool:
    return command.return_options is not None and "UPDATE" in command.return_options


def check_tag(session: SessionState, command: p.Search | p.Sort) -> None:
    """Before a searching command runs: RFC 5267 4.3, UPDATE with the tag of a search still being updated
    "SHALL" be BAD (before anything); and UPDATE's fetch attributes with MODSEQ make it a CONDSTORE enabling
    command (RFC 7162 3.1: HIGHESTMODSEQ before its own responses)."""
    live = session.search_updates
    if wants_updates(command) and isinstance(live, LiveSearches) and command.tag in live.contexts:
        raise bad(
            f"Tag reuse: the search tagged {command.tag} is still being updated (CANCELUPDATE it first)"
        )
    if any(isinstance(item, p.FetchAttribute) and item.name == "MODSEQ" for item in command.update_fetch):
        session.enable_condstore()


def start(
    session: SessionState,
    command: p.Search | p.Sort,
    criteria: Criteria,
    saved: Sequence[int],
    members: Sequence[int],
    ordering: Ordering | None = None,
) -> None:
    """Keep the search of `command` (answered already) up to date: `criteria` and `saved` are what its keys
    and `$` were when it ran, `members` its matches as UIDs in the requested order (ascending for SEARCH;
    `ordering` is a SORT's). Or say why not (4.3.1: NOUPDATE)."""
    if not wants_updates(command):
        return
    live = session.search_updates
    if not isinstance(live, LiveSearches):
        live = LiveSearches(session)
    reason = None
    if any(isinstance(k, p.SearchWithin) for k in search_mod.all_keys(command.keys)):
        reason = "OLDER and YOUNGER change with the clock: this search is not updated"
    elif len(live.contexts) >= MAX_UPDATE_CONTEXTS:
        reason = f"Too many searches are updated already (at most {MAX_UPDATE_CONTEXTS})"
    if reason is not None:
        session.untagged(f'NO [NOUPDATE "{command.tag}"] {reason}')
        return
    view = session.selected_view
    program = _Program(session, command, criteria, saved)
    high = view.uids[-1] if view.uids else 0
    fetch = command.update_fetch  # RFC 5465 section 7 (MODSEQ among them enabled CONDSTORE: `check_tag`)
    live.contexts[command.tag] = _Context(command.tag, command.uid, program, members, ordering, high, fetch)
    session.search_updates = live


async def cancel_update(session: SessionState, command: p.CancelUpdate) -> Done:
    """CANCELUPDATE (RFC 5267 4.3.5): no more updates for the searches these tags name. A tag that names none
    is NO, and then nothing is cancelled."""
    live = session.search_updates
    contexts = live.contexts if isinstance(live, LiveSearches) else {}
    for tag in command.tags:
        if tag not in contexts:
            raise no(f'No search tagged "{tag}" is being updated')
    for tag in command.tags:
        contexts.pop(tag, None)
    if not contexts:
        session.search_updates = None
    return Done("CANCELUPDATE completed, no further updates")


HANDLERS: dict[type[p.Command], Callable[[SessionState, Any], Awaitable[Done]]] = {
    p.CancelUpdate: cancel_update,
}


async def _fetch_joined(session: SessionState, joined: dict[int, list[p.FetchItem]]) -> None:
    """Without a NOTIFY, the FETCH of RFC 5465 section 7 alone, rendered as NOTIFY's MessageNew FETCH is."""
    from postoffice.imap import commands_notify  # here: commands_notify -> commands_message -> this module

    await commands_notify.fetch_new(session, joined)
