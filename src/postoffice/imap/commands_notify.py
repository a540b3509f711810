"""IMAP NOTIFY (RFC 5465, with RFC 7377's subtree-one): NOTIFY SET [STATUS] and NOTIFY NONE, and the
notifications they ask for, also while no command is in progress (docs/decisions/0072).

What it implements
- NOTIFY SET replaces the session's notifications (3.1); NOTIFY NONE turns every one off. A SET is an
  implicit NOOP (3.1): the selected mailbox's changes so far are told first, under the events asked for
  until then. With STATUS, a STATUS response for every mailbox (but the selected one) that gets message
  events, before the tagged OK (3.1).
- Refusals: an event this server does not support (AnnotationChange: there is no ANNOTATE; any event-ext)
  is NO [BADEVENT (the supported events)] (3.1, not BAD); MessageNew without MessageExpunge or the other way
  round, FlagChange without both (section 5), two SELECTED / SELECTED-DELAYED groups, an event other than a
  message event with one of them (6.1), fetch attributes anywhere but with MessageNew of SELECTED /
  SELECTED-DELAYED (section 8), MessageNew twice in a group: BAD. Mailbox names that name no mailbox are
  kept (a later CREATE of the name matches them) and never expanded as patterns (6.6); a name that is not
  modified UTF-7 matches nothing.
- Mailbox specifiers (section 6): personal and inboxes (6.3: the server cannot tell which mailboxes mail
  may be delivered to, Sieve files anywhere: inboxes is personal), subscribed (re-evaluated when the
  subscriptions change, 6.4), subtree, subtree-one (RFC 7377: the mailbox and its children), mailboxes.
  Groups are taken in order: for a mailbox, the first matching group that says NONE stops the search;
  otherwise every matching group adds its events. Only SELECTED / SELECTED-DELAYED give message events of
  the selected mailbox (3.1), whatever else names it; its other events come from the other groups.
- The selected mailbox (`SessionState.selected_events`, state.py): EXISTS and the fetch attributes of
  MessageNew (5.2, `NotifyState.new_messages`; rendered as by FETCH, never setting \\Seen), EXPUNGE or
  VANISHED (5.3), FETCH (UID FLAGS [MODSEQ]) for FlagChange (5.1), and nothing the group does not ask for,
  also at the end of commands (3.1: without SELECTED, no message events for the selected mailbox: a
  snapshot). The one exception: a command that expunged messages itself (EXPUNGE, UID EXPUNGE, MOVE,
  REPLACE) answers with every expunge. With SELECTED they are told as soon as no command is in progress
  (6.1.1); with SELECTED-DELAYED expunges wait for a command that allows them (6.1.2). During FETCH, STORE,
  SEARCH, SORT and THREAD expunges wait in any case (RFC 9051 7.5.1).
- Other mailboxes: one STATUS per mailbox with its counts at the time it is sent, however many changes came
  (MESSAGES UIDNEXT UIDVALIDITY UNSEEN, HIGHESTMODSEQ once CONDSTORE is enabled or with FlagChange: 5.1-5.3);
  MailboxName (5.4): a LIST response per name, \\NonExistent once deleted, an extended LIST with OLDNAME
  for a rename; SubscriptionChange (5.5): a LIST response with \\Subscribed while subscribed; attributes as
  LIST computes them. MailboxMetadataChange and ServerMetadataChange (5.6, 5.7: required with METADATA):
  an unsolicited METADATA response naming the changed (or removed) entries, without values (RFC 5464 4.4),
  no ENABLE METADATA needed.
- What this session's own command changed is left out (section 5 SHOULD): the mailbox it creates, deletes,
  renames or subscribes, the annotations it sets, the mailbox it appends, copies or moves to, and the FETCH
  of MessageNew for what it added to the selected mailbox (5.2 SHOULD NOT); its EXISTS and EXPUNGE stay.
- When: the store's change notifications reach `NotifyState.on_change` (through `SessionState.on_change`),
  which only records what is to be told and asks the glue to wake up; `push` writes it when no command is
  in progress (`Need.NOTIFY` of the protocol core), and during IDLE (section 4: the same events as NOTIFY).
- Bounded (5.8): what waits to be told is one entry per mailbox, name and annotation, at most
  `pending_limit` of them (twice `max_mailboxes`, plus 1024); past it, or when more than `MAX_NEW_FETCH`
  new messages would each need a FETCH, or when the store fails, the session gets
  "* OK [NOTIFICATIONOVERFLOW]" and behaves as after NOTIFY NONE.
- CONDSTORE / QRESYNC / UIDONLY: STATUS has HIGHESTMODSEQ once CONDSTORE is on; fetch attributes with MODSEQ
  make NOTIFY a CONDSTORE enabling command; expunges are VANISHED after QRESYNC or UIDONLY, FETCH
  responses UIDFETCH after UIDONLY (RFC 9586).
- Not built: ACL rights (5.9, \\NoAccess), the fetch attributes of CONTEXT's UPDATE (section 7).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import Any

from postoffice.imap import commands_message, wire
from postoffice.imap import parser as p
from postoffice.imap.acl import normalise
from postoffice.imap.commands_mailbox import SEPARATOR, _attributes, _mailbox_tree
from postoffice.imap.sequence import SequenceSet, format_sequence_set
from postoffice.imap.state import (
    NO_EVENTS,
    CommandFailed,
    Done,
    SelectedEvents,
    SessionState,
    State,
    bad,
    no,
)
from postoffice.store import ChangeEvent, NotFound, StoreError

log = logging.getLogger("postoffice.imap")

#: The events this server reports (RFC 5465 section 5; BADEVENT lists them). AnnotationChange needs ANNOTATE
#: (RFC 5257), which is not offered.
SUPPORTED_EVENTS = (
    "MessageNew",
    "MessageExpunge",
    "FlagChange",
    "MailboxName",
    "SubscriptionChange",
    "MailboxMetadataChange",
    "ServerMetadataChange",
)
BADEVENT = "BADEVENT (" + " ".join(SUPPORTED_EVENTS) + ")"
_MESSAGE_EVENTS = frozenset(p.NotifyEvent.MESSAGE_EVENTS)
_SELECTED_FILTERS = ("SELECTED", "SELECTED-DELAYED")
#: The message events of the store's change kinds.
_EVENT_OF_KIND = {"added": "MessageNew", "expunged": "MessageExpunge", "flags": "FlagChange"}
#: More new messages than this at once, each to be FETCHed for MessageNew, is NOTIFICATIONOVERFLOW (5.8).
MAX_NEW_FETCH = 1000
#: `NotifyState.events_for` remembers this many names (then starts again).
_CACHE_NAMES = 4096


def pending_limit(max_mailboxes: int) -> int:
    """How many mailboxes, names and annotations may wait to be told before NOTIFICATIONOVERFLOW (5.8): a
    STATUS for every mailbox and a LIST for every name of an account fit, with room for annotations."""
    return 2 * max_mailboxes + 1024


# ------------------------------------------------------------------------------------------- the spec


class _Group:
    """A compiled event group of another mailbox specifier than SELECTED (section 6)."""

    __slots__ = ("events", "kind", "names")

    def __init__(self, group: p.NotifyGroup) -> None:
        self.kind = "PERSONAL" if group.filter == "INBOXES" else group.filter  # 6.3: inboxes is personal
        self.names = frozenset(normalise(m.name) for m in group.mailboxes if m.valid)
        self.events = frozenset(e.name for e in group.events)

    def matches(self, name: str, subscribed: Collection[str]) -> bool:
        kind = self.kind
        if kind == "PERSONAL":  # 6.2: every mailbox of the account (there are no others)
            return True
        if kind == "SUBSCRIBED":  # 6.4
            return name in subscribed
        if name in self.names:  # MAILBOXES (6.6), and SUBTREE, SUBTREE-ONE: the mailbox itself
            return True
        if kind == "SUBTREE":  # 6.5: any mailbox below
            parts = name.split(SEPARATOR)
            return any(SEPARATOR.join(parts[:i]) in self.names for i in range(1, len(parts)))
        if kind == "SUBTREE-ONE":  # RFC 7377: the children, not their children
            parent, sep, _ = name.rpartition(SEPARATOR)
            return bool(sep) and parent in self.names
        return False


class NotifySpec:
    """What one NOTIFY SET asks for, compiled: the selected mailbox's events, MessageNew's fetch attributes,
    and the other groups in order."""

    def __init__(self, groups: tuple[p.NotifyGroup, ...]) -> None:
        self.selected = NO_EVENTS
        self.fetch: tuple[p.FetchItem, ...] = ()
        others: list[_Group] = []
        for group in groups:
            if group.filter in _SELECTED_FILTERS:
                names = {e.name for e in group.events}
                self.selected = SelectedEvents(
                    new="MessageNew" in names,
                    expunge="MessageExpunge" in names,
                    flags="FlagChange" in names,
                    delayed=group.filter == "SELECTED-DELAYED",
                )
                self.fetch = next((e.fetch for e in group.events if e.name == "MessageNew"), ())
            else:
                others.append(_Group(group))
        self.groups = tuple(others)
        #: ServerMetadataChange is no mailbox's: any group that names it asks for it (5.7)
        self.server_metadata = any("ServerMetadataChange" in g.events for g in others)

    def events_for(self, name: str, subscribed: Collection[str]) -> frozenset[str]:
        """The events asked for the mailbox `name` (not as the selected mailbox)."""
        found: set[str] = set()
        for group in self.groups:
            if group.matches(name, subscribed):
                if not group.events:  # NONE: not this mailbox, whatever later groups say
                    break
                found |= group.events
        return frozenset(found)


def check_groups(groups: tuple[p.NotifyGroup, ...]) -> None:
    """The rules of RFC 5465 that the grammar does not say: NO [BADEVENT] first (3.1), then BAD."""
    for group in groups:
        for event in group.events:
            if event.name not in SUPPORTED_EVENTS:
                raise no(f"The event {event.name} is not supported", BADEVENT)
    selected = [group for group in groups if group.filter in _SELECTED_FILTERS]
    if len(selected) > 1:
        raise bad("Only one SELECTED or SELECTED-DELAYED event group is allowed (RFC 5465 6.1)")
    for group in groups:
        names = [event.name for event in group.events]
        if ("MessageNew" in names) != ("MessageExpunge" in names):
            raise bad("MessageNew and MessageExpunge go together (RFC 5465 section 5)")
        if "FlagChange" in names and "MessageNew" not in names:
            raise bad("FlagChange needs MessageNew and MessageExpunge (RFC 5465 section 5)")
        if names.count("MessageNew") > 1:
            raise bad("MessageNew is given twice in one event group")
        if group.filter in _SELECTED_FILTERS:
            other = [name for name in names if name not in _MESSAGE_EVENTS]
            if other:
                raise bad(f"{other[0]} cannot be used with {group.filter} (RFC 5465 6.1)")
        elif any(event.fetch for event in group.events):
            raise bad("Fetch attributes go only with MessageNew of SELECTED or SELECTED-DELAYED (RFC 5465 8)")


# ----------------------------------------------------------------------------------------- the state

#: `NotifyState.lists`: a name created since the client was last told (it knows no old name of it)
_CREATED = ""


class NotifyState:
    """A session's NOTIFY after NOTIFY SET (`SessionState.notifications`): what is asked for, the account's
    mailbox names and subscriptions as the change notifications leave them, and what waits to be told."""

    def __init__(
        self, session: SessionState, spec: NotifySpec, names: dict[int, str], subscribed: set[str]
    ) -> None:
        self.session = session
        self.spec = spec
        self.names = names  # mailbox id -> name, for every mailbox of the account
        self.subscribed = subscribed
        self.limit = pending_limit(session.settings.max_mailboxes)
        self.status: dict[int, None] = {}  # mailboxes whose STATUS is to be sent
        #: names whose LIST is to be sent, each with the old name of a rename, _CREATED, or None
        self.lists: dict[str, str | None] = {}
        self.metadata: dict[int, set[str]] = {}  # annotations changed, by mailbox id (0: the server's)
        self.metadata_count = 0
        self.overflow = False
        #: (mailbox id, UID) of what the session's own command added to the selected mailbox (no FETCH)
        self.own_new: set[tuple[int, int]] = set()
        self._events: dict[str, frozenset[str]] = {}

    @property
    def pending(self) -> int:
        return len(self.status) + len(self.lists) + self.metadata_count

    def events_for(self, name: str) -> frozenset[str]:
        found = self._events.get(name)
        if found is None:
            if len(self._events) >= _CACHE_NAMES:
                self._events.clear()
            found = self._events[name] = self.spec.events_for(name, self.subscribed)
        return found

    # -- what arrives (on the event loop, between any two awaits: never writes) --------------------------

    def on_change(self, event: ChangeEvent) -> bool:
        if self.overflow:
            return False
        kind = event.kind
        if kind == "mailbox":
            told = self._mailbox_changed(event)
        elif kind == "subscription":
            told = self._subscription_changed(event)
        elif kind == "metadata":
            told = self._metadata_changed(event)
        else:
            told = self._message_changed(event)
        if told and self.pending > self.limit:
            self._overflow()
        return told

    def _overflow(self) -> None:
        self.overflow = True
        self.status.clear()
        self.lists.clear()
        self.metadata.clear()
        self.metadata_count = 0

    def _message_changed(self, event: ChangeEvent) -> bool:
        name_of_event = _EVENT_OF_KIND.get(event.kind)
        if name_of_event is None:
            return False
        name = self.names.get(event.mailbox_id)
        view = self.session.view
        if view is not None and view.mailbox_id == event.mailbox_id:
            # the selected mailbox's changes are told through its view (`selected_events`); what the
            # session's own command adds to it gets no FETCH for MessageNew (5.2)
            if event.kind == "added" and name is not None and _own(self.session.command, name, _ADDS_TO):
                if len(self.own_new) > MAX_NEW_FETCH:
                    self.own_new.clear()
                self.own_new.update((event.mailbox_id, uid) for uid in event.uids)
            return False
        if name is None or name_of_event not in self.events_for(name):
            return False
        if event.kind == "added" and _own(self.session.command, name, _ADDS_TO):
            return False  # section 5: the session's own APPEND, COPY, MOVE (or RENAME INBOX) to it
        self.status[event.mailbox_id] = None
        return True

    def _mailbox_changed(self, event: ChangeEvent) -> bool:
        extra = event.extra
        command = self.session.command
        lists = self.lists
        if "created" in extra:
            name = str(extra["created"])
            self.names[event.mailbox_id] = name
            if "MailboxName" not in self.events_for(name) or _creates(command, name):
                return False
            lists.setdefault(name, _CREATED)
            return True
        renamed = extra.get("renamed")
        if isinstance(renamed, tuple) and len(renamed) == 2:
            old, new = str(renamed[0]), str(renamed[1])
            self.names[event.mailbox_id] = new
            if "MailboxName" not in self.events_for(old) | self.events_for(new):
                return False
            if isinstance(command, p.Rename):
                return False  # section 5: the session's own RENAME
            before = lists.pop(old, None)
            # told once, under the name the client knew (a name renamed twice), or as created (one the client
            # has not heard of yet)
            lists[new] = before if before is not None else old
            return True
        if "deleted" in extra:
            name = str(extra["deleted"])
            self.names.pop(event.mailbox_id, None)
            self.status.pop(event.mailbox_id, None)
            self.metadata_count -= len(self.metadata.pop(event.mailbox_id, ()))
            if "MailboxName" not in self.events_for(name) or _own(command, name, (p.Delete,)):
                return False
            before = lists.pop(name, None)
            if before == _CREATED:
                return False  # came and went before the client heard of it
            lists[before if before is not None else name] = None  # \NonExistent (5.4)
            return True
        return False

    def _subscription_changed(self, event: ChangeEvent) -> bool:
        name = str(event.extra.get("name", ""))
        if event.extra.get("subscribed"):
            self.subscribed.add(name)
        else:
            self.subscribed.discard(name)
        self._events.clear()  # SUBSCRIBED (6.4) matches other mailboxes now
        # before or after the change the name was subscribed: the SUBSCRIBED specifier covers it
        events = self.spec.events_for(name, (*self.subscribed, name))
        if "SubscriptionChange" not in events or _own(self.session.command, name, _SUBSCRIBES):
            return False
        self.lists.setdefault(name, None)
        return True

    def _metadata_changed(self, event: ChangeEvent) -> bool:
        entries = event.extra.get("entries", ())
        if not isinstance(entries, tuple):
            return False
        command = self.session.command
        if event.mailbox_id == 0:
            if not self.spec.server_metadata:
                return False
            if isinstance(command, p.SetMetadata) and command.mailbox.name == "":
                return False  # section 5: the session's own SETMETADATA
        else:
            name = self.names.get(event.mailbox_id)
            if name is None or "MailboxMetadataChange" not in self.events_for(name):
                return False
            if isinstance(command, p.SetMetadata) and normalise(command.mailbox.name) == name:
                return False
        changed = self.metadata.setdefault(event.mailbox_id, set())
        before = len(changed)
        changed.update(str(entry) for entry in entries)
        self.metadata_count += len(changed) - before
        return True

    # -- what is told (while no command is in progress, in IDLE, or in NOTIFY's own answer) ---------------

    async def flush(self) -> None:
        """Send what waits: LIST responses, then STATUS, then METADATA. What arrives meanwhile waits for
        the next time."""
        if self.lists:
            await self._send_lists()
        if self.status:
            await self._send_statuses()
        if self.metadata:
            self._send_metadata()

    async def _send_lists(self) -> None:
        session = self.session
        lists, self.lists = self.lists, {}
        account = session.logged_in_account.id
        existing, parents, _ = _mailbox_tree(await session.store.list_mailboxes(account))
        subscribed = {normalise(name) for name in await session.store.list_subscriptions(account)}
        for name in sorted(lists, key=lambda n: (n != "INBOX", n)):
            attributes = " ".join(_attributes(name, existing, parents, subscribed))
            line = f"LIST ({attributes}) ".encode() + b'"/" ' + session.mailbox_name(name)
            old = lists[name]
            if old:  # RFC 5465 5.4: an extended LIST response (RFC 5258) with OLDNAME
                line += b' ("OLDNAME" (' + session.mailbox_name(old) + b"))"
            session.untagged(line)

    async def _send_statuses(self) -> None:
        session = self.session
        status, self.status = self.status, {}
        view = session.view
        named = sorted(
            ((name, mailbox_id) for mailbox_id in status if (name := self.names.get(mailbox_id)) is not None),
            key=lambda item: (item[0] != "INBOX", item[0]),
        )
        for name, mailbox_id in named:
            if view is not None and view.mailbox_id == mailbox_id:
                continue  # selected since: its changes are told through the view
            await send_status(session, mailbox_id, name, self.events_for(name))

    def _send_metadata(self) -> None:
        session = self.session
        metadata, self.metadata = self.metadata, {}
        self.metadata_count = 0
        for mailbox_id, entries in sorted(metadata.items()):
            name = "" if mailbox_id == 0 else self.names.get(mailbox_id)
            if name is None or not entries:
                continue
            # RFC 5464 4.4: the entries that changed, without values (also for one removed: 5465 5.6)
            items = b" ".join(wire.astring(entry) for entry in sorted(entries))
            session.untagged(b"METADATA " + session.mailbox_name(name) + b" " + items)

    async def new_messages(self, uids: list[int]) -> None:
        """RFC 5465 5.2: after the EXISTS of new messages in the selected mailbox, the FETCH that MessageNew
        asked for. Rendered as FETCH renders, except that no \\Seen is set (BODY[] is taken as BODY.PEEK[]:
        5.2 asks clients not to use such attributes; the server does not act on them)."""
        session = self.session
        view = session.view
        fetch = self.spec.fetch
        if not fetch or view is None or self.overflow:
            return
        own, mailbox_id = self.own_new, view.mailbox_id
        if own:
            announced = [(mailbox_id, uid) for uid in uids]
            uids = [uid for uid in uids if (mailbox_id, uid) not in own]  # 5.2: not for its own APPEND's
            own.difference_update(announced)
            if not uids:
                return
        if len(uids) > MAX_NEW_FETCH:
            overflow(session)
            return
        command = p.Fetch("*", SequenceSet.parse(format_sequence_set(uids)), fetch, uid=True)
        read_only, view.read_only = view.read_only, True  # no \Seen from these FETCH responses
        try:
            await commands_message.fetch(session, command)
        except (CommandFailed, StoreError) as exc:
            # an undecodable BINARY part, a message gone meanwhile: the client fetches it itself
            log.info("imap client %s: NOTIFY MessageNew FETCH left out: %s", session.transport.peer_ip, exc)
        finally:
            view.read_only = read_only


_ADDS_TO: tuple[type[p.Command], ...] = (p.Append, p.Copy, p.Move, p.Replace, p.Rename)
_SUBSCRIBES: tuple[type[p.Command], ...] = (p.Subscribe, p.Unsubscribe)


def _own(command: p.Command | None, name: str, kinds: tuple[type[p.Command], ...]) -> bool:
    """`command` (the session's, running) is one of `kinds` and changes the mailbox `name`: its own change
    (RFC 5465 section 5: SHOULD not be told). RENAME's target is its new name (RENAME INBOX moves the
    messages there)."""
    if not isinstance(command, kinds):
        return False
    target: Any = command.new_name if isinstance(command, p.Rename) else getattr(command, "mailbox", None)
    return isinstance(target, p.MailboxName) and target.valid and normalise(target.name) == name


def _creates(command: p.Command | None, name: str) -> bool:
    """CREATE and RENAME make the new name and the superiors it lacks (RFC 9051 6.3.4, 6.3.6)."""
    if isinstance(command, p.Create):
        target = command.mailbox
    elif isinstance(command, p.Rename):
        target = command.new_name
    else:
        return False
    made = normalise(target.name)
    return made == name or made.startswith(name + SEPARATOR)


# ------------------------------------------------------------------------------------------ responses


async def send_status(session: SessionState, mailbox_id: int, name: str, events: Iterable[str]) -> None:
    """The STATUS of a mailbox other than the selected one (RFC 5465 3.1, 5.1-5.3): MESSAGES UIDNEXT
    UIDVALIDITY UNSEEN, and HIGHESTMODSEQ once CONDSTORE is enabled (5.2, 5.3: MUST) or for FlagChange (3.1:
    the server supports CONDSTORE). Nothing for a mailbox gone meanwhile."""
    events = set(events)
    if not events & _MESSAGE_EVENTS:
        return
    try:
        state = await session.store.mailbox_status(mailbox_id)
    except NotFound:
        return
    info = state.mailbox
    text = f"MESSAGES {info.messages} UIDNEXT {info.uidnext} UIDVALIDITY {info.uidvalidity}"
    text += f" UNSEEN {state.unseen}"
    if session.condstore or "FlagChange" in events:
        text += f" HIGHESTMODSEQ {max(state.highest_modseq, 1)}"  # RFC 7162 3.1.7: never 0
    session.untagged(b"STATUS " + session.mailbox_name(name) + f" ({text})".encode())


def overflow(session: SessionState) -> None:
    """RFC 5465 5.8: "* OK [NOTIFICATIONOVERFLOW]", then as if NOTIFY NONE had just been received."""
    session.untagged("OK [NOTIFICATIONOVERFLOW] Too many changes at once; NOTIFY is off as after NOTIFY NONE")
    session.notifications = None
    session.selected_events = NO_EVENTS


async def push(session: SessionState, *, selected: bool = True) -> None:
    """Tell what waits (no command is in progress, or IDLE): the selected mailbox's changes the NOTIFY asks
    for (unless `selected` is False: IDLE has told them), then the other mailboxes'. A store failure ends
    NOTIFY with NOTIFICATIONOVERFLOW (5.8: the server is unable to tell)."""
    state = session.notifications
    if not isinstance(state, NotifyState):
        return
    if state.overflow:
        overflow(session)
        return
    view = session.view
    try:
        if selected and view is not None:
            await session.sync(False, unsolicited=True)
            if session.state is State.LOGOUT:  # the selected mailbox was deleted: BYE
                return
        await state.flush()
    except StoreError as exc:
        log.warning("imap client %s: NOTIFY stopped: %s", session.transport.peer_ip, exc)
        if view is not None:
            view.dirty = True  # read again at the next command
        if session.notifications is state:
            overflow(session)


# -------------------------------------------------------------------------------------------- NOTIFY


async def _names(session: SessionState) -> tuple[dict[int, str], set[str]]:
    """The account's mailboxes by id and its subscriptions, read with no change notified meanwhile (else
    read again: the notifications keep them current only from the moment they are installed)."""
    account = session.logged_in_account.id
    store = session.store
    for _ in range(3):
        seen = session.changes_seen
        mailboxes = await store.list_mailboxes(account)
        subscribed = {normalise(name) for name in await store.list_subscriptions(account)}
        if session.changes_seen == seen:
            break
    return {m.id: m.name for m in mailboxes}, subscribed


async def notify(session: SessionState, command: p.Notify) -> Done:
    previous = session.notifications
    if command.groups is None:
        # RFC 5465 3.1: no events at all from now on, for the selected mailbox too
        session.notifications = None
        session.selected_events = NO_EVENTS
        return Done("NOTIFY completed")
    check_groups(command.groups)
    spec = NotifySpec(command.groups)
    # 3.1: an implicit NOOP: the changes so far, as the client asked for them until now
    if isinstance(previous, NotifyState) and not previous.overflow:
        await previous.flush()
    view = session.view
    if view is not None:
        view.dirty = True
        await session.sync(True)
        if session.state is State.LOGOUT:
            return Done("NOTIFY completed")
    if any(isinstance(i, p.FetchAttribute) and i.name == "MODSEQ" for i in spec.fetch):
        session.enable_condstore()  # RFC 7162 3.1: it asks for MODSEQ in FETCH responses
    names, subscribed = await _names(session)
    state = NotifyState(session, spec, names, subscribed)
    session.notifications = state  # from here on, changes wait in `state` (also those during the STATUS)
    session.selected_events = spec.selected
    if command.status:
        # 3.1: a STATUS for every mailbox (not the selected one) with message events, before the tagged OK
        selected_id = session.view.mailbox_id if session.view is not None else None
        for mailbox_id, name in sorted(names.items(), key=lambda item: (item[1] != "INBOX", item[1])):
            if mailbox_id != selected_id:
                await send_status(session, mailbox_id, name, state.events_for(name))
    return Done("NOTIFY completed")


Handler = Callable[[SessionState, Any], Awaitable[Done]]

HANDLERS: dict[type[p.Command], Handler] = {p.Notify: notify}
