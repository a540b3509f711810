"""IMAP NOTIFY (RFC 5465, with RFC 7377's subtree-one): NOTIFY SET [STATUS] and NOTIFY NONE, and the
notifications they ask for, also while no command is in progress (docs/decisions/0072, 0077).

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
- Mailbox specifiers (section 6): personal (6.2: the personal namespace, never `Shared/...`) and inboxes
  (6.3: the server cannot tell which mailboxes mail may be delivered to, Sieve files anywhere: inboxes is
  personal), subscribed (re-evaluated when the subscriptions change, 6.4), subtree, subtree-one (RFC 7377:
  the mailbox and its children), mailboxes.
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
- Other accounts' mailboxes shared with the session (RFC 4314, decision 0073), when a group may match them
  (SUBSCRIBED, or a `Shared/...` name given to SUBTREE, SUBTREE-ONE, MAILBOXES: `NotifySpec.watches_shared`):
  their owners' change notifications are followed, one subscription per owner (`follow_owners`; the store
  publishes a change to its owner's subscribers only), and told under the client's names. Events need "l"
  and "r" (section 5): a named mailbox with "l" alone gets a LIST with \\NoAccess at NOTIFY SET (3.1 MUST),
  one without "l" nothing. A change of rights ("acl" change events, to the owner's and to the grantee's
  subscribers) has the shared mailboxes read again before anything is told (`flush`): monitoring stops and
  starts again with them (5.9 MUST), and the client gets a LIST with \\NoAccess when it loses access (5.9;
  with \\NonExistent when "l" went: 5.4 takes that for a deletion), one without when \\NoAccess was told
  and access came back (5.9), or when "l" came and MailboxName is asked for (5.4: a creation).
  `_access_changed` is the one place of those rules. The owner's subscriptions and annotations are not told.
- CONTEXT=SEARCH / CONTEXT=SORT (section 7): the new messages' FETCH is one response per message with
  MessageNew's attributes and those of the UPDATE searches it joined (`new_messages` with `extra`,
  `fetch_new`; `imap.commands_context` calls it between the EXISTS and the ESEARCH ADDTO).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from postoffice.imap import acl, commands_message, wire
from postoffice.imap import parser as p
from postoffice.imap.acl import in_namespace, normalise, shared_name
from postoffice.imap.commands_mailbox import SEPARATOR, _attributes, _mailbox_tree, send_status
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
#: What the STATUS of a mailbox with message events gives (5.1-5.3), HIGHESTMODSEQ added when it is due.
_STATUS_ITEMS: tuple[str, ...] = ("MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN")
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
        if kind == "PERSONAL":  # 6.2: the personal namespace, every mailbox of the account (not Shared/...)
            return not in_namespace(name)
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
        #: a group may match mailboxes other accounts share (`Shared/...`, decision 0073): SUBSCRIBED, or a
        #: name in the shared namespace given to SUBTREE, SUBTREE-ONE or MAILBOXES (6.2: PERSONAL never does)
        self.watches_shared = any(
            g.events and (g.kind == "SUBSCRIBED" or any(map(in_namespace, g.names))) for g in others
        )

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


@dataclass(frozen=True)
class SharedBox:
    """A mailbox another account shares with the session (RFC 4314, decision 0073), as NOTIFY follows it: its
    owner (account id and address), the client's name for it (`Shared/<local part>/<name>`) and the
    session's rights on it."""

    owner_id: int
    owner: str
    name: str
    rights: str

    @property
    def observed(self) -> bool:
        return _observed(self.rights)


def _observed(rights: str) -> bool:
    """RFC 5465 section 5: "All event types ... require the 'l' and 'r' rights ... on all observed
    mailboxes"."""
    return "l" in rights and "r" in rights


async def shared_boxes(session: SessionState) -> dict[int, SharedBox]:
    """The mailboxes other accounts share with the session, by id (those whose owner's local part cannot be
    named are not offered, decision 0073)."""
    found: dict[int, SharedBox] = {}
    for shared in await session.store.shared_mailboxes(session.logged_in_account.id):
        name = shared_name(shared.owner, shared.mailbox.name)
        if name is not None:
            found[shared.mailbox.id] = SharedBox(shared.mailbox.account_id, shared.owner, name, shared.rights)
    return found


class NotifyState:
    """A session's NOTIFY after NOTIFY SET (`SessionState.notifications`): what is asked for, the account's
    mailbox names and subscriptions as the change notifications leave them, the mailboxes other accounts
    share with it (when a group may match them), and what waits to be told."""

    def __init__(
        self,
        session: SessionState,
        spec: NotifySpec,
        names: dict[int, str],
        subscribed: set[str],
        shared: dict[int, SharedBox] | None = None,
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
        self._events: dict[str, frozenset[str]] = {}
        #: other accounts' mailboxes shared with the session, by id (only when `spec.watches_shared`)
        self.shared = shared if shared is not None else {}
        #: the change subscriptions of the accounts that own them, one per owner (their changes are published
        #: to their own subscribers only): owner id -> unsubscribe
        self.owners: dict[int, Callable[[], None]] = {}
        #: the rights on shared mailboxes changed (or an owner made a mailbox, which may inherit its parent's
        #: entries): read them again before anything is told (`flush`)
        self.rights_changed = False
        #: names the client was told \NoAccess of (3.1, 5.9), until it is told of access again
        self.no_access: set[str] = set()
        #: names of mailboxes the session's own command made in another account (section 5: not told)
        self.own_made: set[str] = set()
        #: the owners' renames and deletes received (one that comes while the rights are read again has them
        #: read once more: the read may have been made before its change)
        self.owner_events = 0

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
        if kind == "acl":  # an entry of a mailbox changed that the account owns or may have rights on
            told = self._rights_changed()
        elif kind == "mailbox":
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
        return name is not None and self._message_event(event.mailbox_id, name, name_of_event)

    def _message_event(self, mailbox_id: int, name: str, name_of_event: str) -> bool:
        """A message of a mailbox other than the selected one (the selected mailbox's changes are told through
        its view, `selected_events`; what the session's own command adds to it has no FETCH for MessageNew,
        `SessionState.own_added`): its STATUS, when the event is asked for."""
        view = self.session.view
        if view is not None and view.mailbox_id == mailbox_id:
            return False
        if name_of_event not in self.events_for(name):
            return False
        if name_of_event == "MessageNew" and _own(self.session.command, name, _ADDS_TO):
            return False  # section 5: the session's own APPEND, COPY, MOVE (or RENAME INBOX) to it
        self.status[mailbox_id] = None
        return True

    def _mailbox_changed(self, event: ChangeEvent) -> bool:
        extra = event.extra
        command = self.session.command
        lists = self.lists
        if "created" in extra:
            name = str(extra["created"])
            self.names[event.mailbox_id] = name
            if _creates(command, name):
                return False
            told = "MailboxName" in self.events_for(name)
            if told:
                lists.setdefault(name, _CREATED)
            return self._parent_affected(name) or told
        renamed = extra.get("renamed")
        if isinstance(renamed, tuple) and len(renamed) == 2:
            old, new = str(renamed[0]), str(renamed[1])
            self.names[event.mailbox_id] = new
            return self._renamed(old, new)
        if "deleted" in extra:
            name = str(extra["deleted"])
            self.names.pop(event.mailbox_id, None)
            self.status.pop(event.mailbox_id, None)
            self.metadata_count -= len(self.metadata.pop(event.mailbox_id, ()))
            return self._deleted(name)
        return False

    def _renamed(self, old: str, new: str) -> bool:
        """MailboxName (5.4): one extended LIST with OLDNAME, for the name the client knew."""
        if "MailboxName" not in self.events_for(old) | self.events_for(new):
            return False
        if isinstance(self.session.command, p.Rename):
            return False  # section 5: the session's own RENAME
        if old in self.no_access:
            self.no_access.discard(old)
            self.no_access.add(new)
        lists = self.lists
        before = lists.pop(old, None)
        # told once, under the name the client knew (a name renamed twice), or as created (one the client has
        # not heard of yet)
        lists[new] = before if before is not None else old
        return True

    def _deleted(self, name: str) -> bool:
        """MailboxName (5.4): a LIST with \\NonExistent."""
        self.no_access.discard(name)
        if _own(self.session.command, name, (p.Delete,)):
            return False
        told = False
        if "MailboxName" in self.events_for(name):
            lists = self.lists
            before = lists.pop(name, None)
            if before != _CREATED:  # (else it came and went before the client heard of it)
                lists[before if before is not None else name] = None  # \NonExistent (5.4)
                told = True
        return self._parent_affected(name) or told

    def _parent_affected(self, name: str) -> bool:
        """5.4: "If a mailbox is created or deleted, the mailbox itself and its direct parent (whether it is
        an existing mailbox or not) are considered to be affected": a LIST of the parent too (its
        \\HasChildren may have changed), when MailboxName is asked for it."""
        parent = name.rpartition(SEPARATOR)[0]
        if not parent or "MailboxName" not in self.events_for(parent):
            return False
        self.lists.setdefault(parent, None)
        return True

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

    # -- other accounts' mailboxes shared with the session (RFC 4314, decision 0073; RFC 5465 3.1, 5.9) ------

    def follow_owners(self) -> None:
        """Hear of the changes of every account that shares a mailbox with the session, and of no other: its
        changes are published to its own subscribers only. One subscription per owner, however many
        mailboxes it shares; the events of its other mailboxes cost a lookup each."""
        wanted = {shared.owner_id for shared in self.shared.values()}
        for owner_id in [owner_id for owner_id in self.owners if owner_id not in wanted]:
            self.owners.pop(owner_id)()
        for owner_id in wanted - self.owners.keys():
            self.owners[owner_id] = self.session.store.subscribe(owner_id, self._owner_changed)

    def close(self) -> None:
        for unsubscribe in self.owners.values():
            unsubscribe()
        self.owners.clear()

    def _owner_changed(self, event: ChangeEvent) -> None:
        """A change of an account that shares mailboxes with the session (on the event loop; never writes).
        Its subscriptions and annotations are none of the session's (5.5-5.7: METADATA of another account's
        mailbox is refused, decision 0073)."""
        if self.overflow or self.session.notifications is not self:
            return
        kind = event.kind
        if kind == "acl":
            told = self._rights_changed()
        elif kind == "mailbox":
            told = self._shared_mailbox_changed(event)
        elif kind in _EVENT_OF_KIND:
            shared = self.shared.get(event.mailbox_id)
            told = (
                shared is not None
                and shared.observed
                and self._message_event(event.mailbox_id, shared.name, _EVENT_OF_KIND[kind])
            )
        else:
            return
        if told:
            if self.pending > self.limit:
                self._overflow()
            self.session.wake()

    def _rights_changed(self) -> bool:
        if not self.spec.watches_shared:
            return False
        self.rights_changed = True
        return True

    def _shared_mailbox_changed(self, event: ChangeEvent) -> bool:
        extra = event.extra
        if "created" in extra:
            # a new mailbox of an owner may have inherited its parent's entries (RFC 4314 section 4): read the
            # rights again before telling (a name it gives access to is a creation, 5.4)
            owner = next((s.owner for s in self.shared.values() if s.owner_id == event.account_id), None)
            name = shared_name(owner, str(extra["created"])) if owner is not None else None
            if name is not None and _creates(self.session.command, name):
                if len(self.own_made) >= self.limit:
                    self.own_made.clear()
                self.own_made.add(name)  # section 5: the session's own CREATE
            return self._rights_changed()
        shared = self.shared.get(event.mailbox_id)
        if shared is None:
            return False
        self.owner_events += 1
        renamed = extra.get("renamed")
        if isinstance(renamed, tuple) and len(renamed) == 2:
            new = shared_name(shared.owner, str(renamed[1]))
            if new is None:  # pragma: no cover - the owner's local part was nameable a moment ago
                return False
            self.shared[event.mailbox_id] = dataclasses.replace(shared, name=new)  # (STATUS: by id)
            return "l" in shared.rights and self._renamed(shared.name, new)  # 5.4: LISTable mailboxes
        if "deleted" in extra:
            del self.shared[event.mailbox_id]
            self.status.pop(event.mailbox_id, None)
            return "l" in shared.rights and self._deleted(shared.name)
        return False

    def tell_no_access(self) -> None:
        """RFC 5465 3.1: a mailbox the groups name that the client "can LIST ... but ... doesn't have another
        right required for processing of the specified event(s)" (section 5: "r") gets an untagged extended
        LIST response with \\NoAccess. (Names the client cannot LIST are ignored, as 3.1 requires.)"""
        for shared in self.shared.values():
            if "l" in shared.rights and not shared.observed and self.events_for(shared.name):
                self.no_access.add(shared.name)
                self.lists.setdefault(shared.name, None)

    async def _read_rights(self) -> None:
        """After an ACL change: the shared mailboxes read again, monitoring stopped or started again, and the
        client told as 5.9 and 5.4 say, for every mailbox its groups watch (`_access_changed`)."""
        self.rights_changed = False
        seen = self.owner_events
        before, after = self.shared, await shared_boxes(self.session)
        if self.owner_events != seen:
            self.rights_changed = True  # (a rename or a delete meanwhile: read again next time)
        self.shared = after
        for mailbox_id in before.keys() | after.keys():
            old, new = before.get(mailbox_id), after.get(mailbox_id)
            if new is None or not new.observed:
                self.status.pop(mailbox_id, None)  # 5.9: "the server MUST stop monitoring"
            if old is not None and new is not None and old.name != new.name and old.name in self.no_access:
                self.no_access.discard(old.name)  # (renamed meanwhile)
                self.no_access.add(new.name)
            if new is not None:
                self._access_changed(new.name, old.rights if old is not None else "", new.rights)
            elif old is not None:
                self._access_changed(old.name, old.rights, "")
        self.own_made.clear()
        if len(self.no_access) > self.limit:
            self.no_access.clear()  # (bounded: at worst a later grant is not told, as if none was before)
        self.follow_owners()

    def _access_changed(self, name: str, old: str, new: str) -> None:
        """What the client hears when its rights on a watched mailbox go from `old` to `new`:
        - access ("l" and "r", section 5) lost: LIST with \\NoAccess (5.9: "SHOULD return the LIST response
          with the \\NoAccess name attribute if and when the mailbox loses the 'l' right"; also when "r"
          goes, as 3.1 uses it), and \\NonExistent when "l" went (5.4: "revocation of the 'l' right ...
          MUST be considered mailbox ... deletion"; LIST computes it);
        - access given back: a LIST without \\NoAccess when \\NoAccess was told (5.9), or with MailboxName
          when "l" is new (5.4: "granting ... MUST be considered mailbox creation");
        - "l" given without "r": with MailboxName, LIST with \\NoAccess (a creation the client cannot watch).
        Monitoring itself follows the rights at every event (`SharedBox.observed`)."""
        events = self.events_for(name)
        if not events or name in self.own_made:
            return
        had, has = _observed(old), _observed(new)
        had_l, has_l = "l" in old, "l" in new
        if had == has and had_l == has_l:
            return
        naming = "MailboxName" in events
        if has:
            if name in self.no_access or (naming and not had_l):
                self.no_access.discard(name)
                self.lists.setdefault(name, None)
        elif had or (had_l and not has_l) or (naming and has_l and not had_l):
            self.no_access.add(name)
            self.lists.setdefault(name, None)
        if naming and had_l != has_l:
            self._parent_affected(name)  # a creation or a deletion (5.4): its parent is affected too

    def _name_of(self, mailbox_id: int) -> str | None:
        """The client's name for a mailbox NOTIFY watches: the account's own, or an observed shared one."""
        name = self.names.get(mailbox_id)
        if name is not None:
            return name
        shared = self.shared.get(mailbox_id)
        return shared.name if shared is not None and shared.observed else None

    # -- what is told (while no command is in progress, in IDLE, or in NOTIFY's own answer) ---------------

    async def flush(self) -> None:
        """Send what waits: LIST responses, then STATUS, then METADATA (after the rights on shared mailboxes,
        when they changed, are read again). What arrives meanwhile waits for the next time."""
        if self.rights_changed:
            await self._read_rights()
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
        if any(map(in_namespace, lists)):  # the mailboxes shared with the session too (decision 0073)
            mailboxes = (await acl.listing(session)).mailboxes
        else:
            mailboxes = await session.store.list_mailboxes(account)
        existing, parents, _ = _mailbox_tree(mailboxes)
        subscribed = {normalise(name) for name in await session.store.list_subscriptions(account)}
        for name in sorted(lists, key=lambda n: (n != "INBOX", n)):
            found = _attributes(name, existing, parents, subscribed)
            if name in self.no_access:  # RFC 5465 3.1, 5.9 (mbx-list-oflag, section 8)
                found.append("\\NoAccess")
            attributes = " ".join(found)
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
            ((name, mailbox_id) for mailbox_id in status if (name := self._name_of(mailbox_id)) is not None),
            key=lambda item: (item[0] != "INBOX", item[0]),
        )
        for name, mailbox_id in named:
            if view is not None and view.mailbox_id == mailbox_id:
                continue  # selected since: its changes are told through the view
            await _send_status(session, mailbox_id, name, self.events_for(name))

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

    async def new_messages(
        self, uids: list[int], extra: Mapping[int, Sequence[p.FetchItem]] | None = None
    ) -> None:
        """RFC 5465 5.2: after the EXISTS of new messages in the selected mailbox, the FETCH that MessageNew
        asked for, none for what the session added itself (5.2: SHOULD NOT; `SessionState.own_added`), in
        one response per message with the attributes of the UPDATE searches it joined (`extra`, section 7:
        "SHOULD be combined into a single FETCH response"). Rendered by `fetch_new`."""
        session = self.session
        wanted: dict[int, list[p.FetchItem]] = {}
        fetch = self.spec.fetch
        if fetch and uids and not self.overflow:
            mine = [uid for uid in uids if uid not in session.own_added]
            if len(mine) > MAX_NEW_FETCH:
                overflow(session)
            else:
                wanted = {uid: list(fetch) for uid in mine}
        for uid, items in (extra or {}).items():
            wanted.setdefault(uid, []).extend(items)
        await fetch_new(session, wanted)


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


async def _send_status(session: SessionState, mailbox_id: int, name: str, events: Iterable[str]) -> None:
    """The STATUS of a mailbox other than the selected one (RFC 5465 3.1, 5.1-5.3): MESSAGES UIDNEXT
    UIDVALIDITY UNSEEN, and HIGHESTMODSEQ once CONDSTORE is enabled (5.2, 5.3: MUST) or for FlagChange (3.1:
    the server supports CONDSTORE), made as every STATUS response is (`commands_mailbox.send_status`).
    Nothing for a mailbox gone meanwhile."""
    events = set(events)
    if not events & _MESSAGE_EVENTS:
        return
    items = _STATUS_ITEMS
    if session.condstore or "FlagChange" in events:
        items += ("HIGHESTMODSEQ",)
    try:
        await send_status(session, mailbox_id, name, items)
    except NotFound:
        return


async def fetch_new(session: SessionState, wanted: Mapping[int, Sequence[p.FetchItem]]) -> None:
    """FETCH responses no FETCH command asked for (RFC 5465 5.2, section 7): for each UID of the selected
    mailbox, one response with its attributes, each once (5.2: "The server SHOULD avoid sending duplicate
    data"; BODY[x] and BODY.PEEK[x] are one). Rendered as FETCH renders them, with the view taken as
    read-only for that moment, so that nothing sets \\Seen (5.2 asks clients not to use such attributes;
    the server does not act on them). More than MAX_NEW_FETCH messages at once are left to the client (it
    knows them from EXISTS and ADDTO), as is one that cannot be rendered (an undecodable BINARY part, a
    message gone meanwhile)."""
    view = session.view
    if view is None or not wanted:
        return
    if len(wanted) > MAX_NEW_FETCH:
        log.info("imap client %s: %d new messages, no FETCH of them", session.transport.peer_ip, len(wanted))
        return
    groups: dict[tuple[p.FetchItem, ...], list[int]] = {}
    for uid, items in wanted.items():
        if uid in view and uid not in view.gone:
            groups.setdefault(_distinct(items), []).append(uid)
    read_only, view.read_only = view.read_only, True  # no \Seen from these FETCH responses
    try:
        for items, uids in groups.items():
            command = p.Fetch("*", SequenceSet.parse(format_sequence_set(sorted(uids))), items, uid=True)
            try:
                await commands_message.fetch(session, command)
            except (CommandFailed, StoreError) as exc:
                log.info("imap client %s: FETCH of new messages left out: %s", session.transport.peer_ip, exc)
    finally:
        view.read_only = read_only


def _distinct(items: Sequence[p.FetchItem]) -> tuple[p.FetchItem, ...]:
    """`items` in order, each once; a body section asked for with and without .PEEK once, as .PEEK (the
    response names it the same)."""
    found: dict[p.FetchItem, None] = {}
    for item in items:
        if isinstance(item, p.FetchBody | p.FetchBinary) and not item.peek:
            item = dataclasses.replace(item, peek=True)
        found.setdefault(item, None)
    return tuple(found)


def overflow(session: SessionState) -> None:
    """RFC 5465 5.8: "* OK [NOTIFICATIONOVERFLOW]", then as if NOTIFY NONE had just been received."""
    session.untagged("OK [NOTIFICATIONOVERFLOW] Too many changes at once; NOTIFY is off as after NOTIFY NONE")
    if session.notifications is not None:
        session.notifications.close()
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


async def _names(
    session: SessionState, with_shared: bool
) -> tuple[dict[int, str], set[str], dict[int, SharedBox]]:
    """The account's mailboxes by id, its subscriptions and (`with_shared`) the mailboxes others share with
    it, read with no change of the account notified meanwhile (else read again: the notifications keep them
    current only from the moment they are installed; a change of rights is the grantee's too, decision
    0077)."""
    account = session.logged_in_account.id
    store = session.store
    shared: dict[int, SharedBox] = {}
    for _ in range(3):
        seen = session.changes_seen
        mailboxes = await store.list_mailboxes(account)
        subscribed = {normalise(name) for name in await store.list_subscriptions(account)}
        if with_shared:
            shared = await shared_boxes(session)
        if session.changes_seen == seen:
            break
    return {m.id: m.name for m in mailboxes}, subscribed, shared


async def notify(session: SessionState, command: p.Notify) -> Done:
    previous = session.notifications
    if command.groups is None:
        # RFC 5465 3.1: no events at all from now on, for the selected mailbox too
        if previous is not None:
            previous.close()
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
    # other accounts' mailboxes only when a group may match them (decision 0077)
    names, subscribed, shared = await _names(session, spec.watches_shared)
    if session.notifications is not None:
        session.notifications.close()
    state = NotifyState(session, spec, names, subscribed, shared)
    session.notifications = state  # from here on, changes wait in `state` (also those during the STATUS)
    state.follow_owners()
    session.selected_events = spec.selected
    state.tell_no_access()  # 3.1: \NoAccess for the named mailboxes the client may LIST but not watch
    if state.lists:
        await state.flush()
    if command.status:
        # 3.1: a STATUS for every mailbox (not the selected one) with message events, before the tagged OK
        selected_id = session.view.mailbox_id if session.view is not None else None
        watched = [*names.items(), *((i, s.name) for i, s in shared.items() if s.observed)]
        for mailbox_id, name in sorted(watched, key=lambda item: (item[1] != "INBOX", item[1])):
            if mailbox_id != selected_id:
                await _send_status(session, mailbox_id, name, state.events_for(name))
    return Done("NOTIFY completed")


Handler = Callable[[SessionState, Any], Awaitable[Done]]

HANDLERS: dict[type[p.Command], Handler] = {p.Notify: notify}
