"""The state of one IMAP session, and everything the command modules see of it. Sans-IO: no asyncio, no
listener, no store backend (docs/decisions/0038).

`SessionState` is a plain object: the protocol state (RFC 9051 section 3), the logged-in account, the
selected mailbox as this session sees it (`MailboxView`), the IMAP4rev2 / UTF-8 modes, the saved search
result (RFC 5182), the queued response octets and the APPEND in progress. The protocol core
(`postoffice.imap.protocol`) owns one and hands it to the command handlers (`imap.commands_mailbox`,
`imap.commands_message`), which import this module and never the core or the connection glue.
It reaches mail through `MailAccess` (`postoffice.imap.access`) and the client through `Transport`, which
it only asks to write (the connection glue in `postoffice.imap.session` reads).

Untagged updates (RFC 9051 sections 5.2, 7.5.1; docs/decisions/0013)
- The store's change notifications (`on_change`) mark the selected view dirty and call `wake` (IDLE waits
  on it); `sync` reads back only what changed after the view's MODSEQ (`MailAccess.changes_since`) and
  queues EXISTS / RECENT / FETCH (FLAGS), and EXPUNGE only when the command allows it: the view holds
  expunged messages back (`MailboxView.gone`) so that sequence numbers never shift under FETCH, STORE or
  SEARCH.
- A keyword new to the mailbox is announced with FLAGS (and PERMANENTFLAGS) before any FETCH that shows it.
  PERMANENTFLAGS offers \\* only while the mailbox may have more keywords (`flag_lists`, decision 0043).
- \\Recent (RFC 3501 2.3.2) is claimed through the store, one session per message; IMAP4rev2 sessions
  neither claim nor show it.
- After ENABLE UIDONLY (RFC 9586; docs/decisions/0066) FETCH responses are UIDFETCH responses
  (`fetch_head`, `fetch_response`) and expunges are told with VANISHED, at the end of every command.
- After a NOTIFY (RFC 5465; docs/decisions/0072) `sync` tells only what `selected_events` asks for, also
  with no command in progress (`unsolicited`); `notifications` (`imap.commands_notify`) hears of every change
  of the account and keeps what is to be told of the other mailboxes; `command` is the command being run.
- Searches kept up to date (RFC 5267 UPDATE; docs/decisions/0070): `search_updates` (`imap.commands_context`)
  hears what `read_back` took, sends REMOVEFROM before any EXPUNGE or VANISHED (and at once while they are
  held back, when the NOTIFY asks for MessageExpunge), and ADDTO after the EXISTS and FETCH of the same
  `sync`, with the FETCH of new messages (NOTIFY's MessageNew and UPDATE's attributes, RFC 5465 section 7)
  between them; `own_added` keeps what the session's own command added, which gets no such FETCH (0077).

Output: `send` and `untagged` queue complete response lines; `flush` hands them to the transport. An
exception raised by the transport's write is kept in `transport_error`: it ends the session and is never
taken for a command's failure.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import IO, Protocol

from postoffice.imap import parser as p
from postoffice.imap import wire
from postoffice.imap.access import MailAccess
from postoffice.imap.mailbox_view import InvalidSequence, MailboxView
from postoffice.imap.mutf7 import encode_mutf7
from postoffice.imap.sequence import SequenceSet, format_sequence_set
from postoffice.imap.settings import ImapSettings
from postoffice.store import SYSTEM_FLAGS, Account, ChangeEvent, MailboxInfo, NotFound, StoreError
from postoffice.store.api import KeywordLimits, MailboxChanges

log = logging.getLogger("postoffice.imap")

#: Above every UID (RFC 9051 section 2.3.1.1: UIDs are 32-bit).
NO_UID = 2**32

#: Queued response octets are written once they reach this size.
FLUSH_THRESHOLD = 256 * 1024


class State(Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


class CommandFailed(Exception):
    """A command's outcome other than OK: `status` "NO" or "BAD", an optional response code (RFC 9051 7.1)."""

    def __init__(self, status: str, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.code = code


def no(text: str, code: str | None = None) -> CommandFailed:
    return CommandFailed("NO", text, code)


def bad(text: str, code: str | None = None) -> CommandFailed:
    return CommandFailed("BAD", text, code)


@dataclass(frozen=True)
class Done:
    """A command's tagged OK; `expunged`: the command removed messages (for HIGHESTMODSEQ, RFC 7162 3.2.7)."""

    text: str
    code: str | None = None
    expunged: bool = False


class Transport(Protocol):
    """The client connection as the core sees it: written to, never read (`postoffice.net.listener.Connection`
    is one; the transcript tests use one in memory)."""

    tls_active: bool

    @property
    def peer_ip(self) -> str: ...

    @property
    def starttls_available(self) -> bool: ...

    async def write(self, data: bytes) -> None: ...

    def mark_logged_in(self) -> None: ...

    def channel_binding(self) -> bytes | None: ...


@dataclass
class AppendSpool:
    """One message of an APPEND, spooled."""

    message: p.AppendMessage
    spool: IO[bytes]
    received: int = 0


@dataclass
class AppendInProgress:
    """The messages of one APPEND command (several with MULTIAPPEND, RFC 3502), in order."""

    tag: str
    mailbox: MailboxInfo
    messages: list[AppendSpool]

    @property
    def current(self) -> AppendSpool:
        return self.messages[-1]

    def close(self) -> None:
        for item in self.messages:
            item.spool.close()


class SearchUpdates(Protocol):
    """The searches kept up to date for the client (RFC 5267 section 4.3, UPDATE; kept by
    `postoffice.imap.commands_context`): told what the view read back, and when it may speak."""

    def note(self, changes: MailboxChanges) -> None:
        """The view took `changes` (`read_back`): these messages may have joined or left a result."""

    def remove_gone(self) -> None:
        """REMOVEFROM for the view's gone messages, before any EXPUNGE or VANISHED tells of them (4.3.4)."""

    async def update(self, new_uids: list[int]) -> None:
        """ADDTO and REMOVEFROM for what changed, after the EXISTS and FETCH of the same sync (4.3.3); before
        them, the FETCH of the messages `new_uids` (just announced by EXISTS) that NOTIFY's MessageNew and the
        UPDATE searches they joined ask for, one per message (RFC 5465 section 7, 5.2; `Notifications`)."""


@dataclass(frozen=True)
class SelectedEvents:
    """Which changes of the selected mailbox the client hears of (RFC 5465 NOTIFY, section 6.1). Until the
    first NOTIFY, every change, at the end of each command (`ALL_EVENTS`); after it, only those its
    SELECTED or SELECTED-DELAYED event group names, also between commands (`imap.commands_notify`)."""

    new: bool = True  # MessageNew: EXISTS (and RECENT)
    expunge: bool = True  # MessageExpunge: EXPUNGE or VANISHED
    flags: bool = True  # FlagChange: FETCH (UID FLAGS)
    delayed: bool = False  # SELECTED-DELAYED: expunges only where a command allows them (6.1.2)


ALL_EVENTS = SelectedEvents()
NO_EVENTS = SelectedEvents(new=False, expunge=False, flags=False)


class Notifications(Protocol):
    """The session's NOTIFY (RFC 5465; kept by `postoffice.imap.commands_notify`): told of every change of the
    account, it keeps what is to be told of other mailboxes until no command is in progress."""

    def on_change(self, event: ChangeEvent) -> bool:
        """A change of the account; True when the client is to hear of it (the glue's wait then ends)."""

    async def new_messages(
        self, uids: list[int], extra: Mapping[int, Sequence[p.FetchItem]] | None = None
    ) -> None:
        """`uids` were just announced by EXISTS: the FETCH the client asked for with MessageNew (5.2), in one
        response per message with the attributes `extra` adds for some (section 7: UPDATE searches)."""

    def close(self) -> None:
        """This NOTIFY is over (replaced, NONE, overflow, the session's end): its change subscriptions go."""


#: The right each system flag needs (RFC 4314 section 4, STORE); every other flag and keyword needs "w"
#: (`postoffice.imap.acl` checks them; here for the PERMANENTFLAGS of another account's mailbox).
FLAG_RIGHTS = {"\\Seen": "s", "\\Deleted": "t"}


def may_set(flag: str, rights: str) -> bool:
    """Whether `rights` let the user set `flag` (RFC 4314 section 4: \\Seen needs s, \\Deleted t, any other
    flag or keyword w)."""
    return FLAG_RIGHTS.get(flag, "w") in rights


def permitted_flags(flags: str, rights: str) -> str:
    """A PERMANENTFLAGS list without the flags `rights` do not let the user set (`\\*` needs "w" as keywords
    do): RFC 4314 5.1.1, PERMANENTFLAGS "MUST accurately reflect the current user's rights"."""
    return " ".join(flag for flag in flags.split() if may_set(flag, rights))


def _nothing() -> None:
    pass


#: `SessionState.own_added` holds at most this many UIDs (then starts again).
OWN_ADDED_LIMIT = 4096


class SessionState:
    def __init__(
        self,
        store: MailAccess,
        settings: ImapSettings,
        transport: Transport,
        *,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.transport = transport
        #: Called when a change to the selected mailbox arrives (the glue's IDLE waits for it).
        self.wake = wake if wake is not None else _nothing
        self.state = State.NOT_AUTHENTICATED
        self.account: Account | None = None
        self.view: MailboxView | None = None
        self.rev2 = False
        self.utf8 = False  # UTF8=ACCEPT or IMAP4rev2 enabled: mailbox names and strings in UTF-8
        #: RFC 7162 3.1: a CONDSTORE enabling command was used; from then on every untagged FETCH carries
        #: MODSEQ and every SELECT / EXAMINE reports HIGHESTMODSEQ, until the connection ends
        self.condstore = False
        #: RFC 7162 3.2: ENABLE QRESYNC was answered; VANISHED replaces EXPUNGE, SELECT takes QRESYNC
        self.qresync = False
        #: RFC 9586: ENABLE UIDONLY was answered; no message number goes either way from then on: UIDFETCH
        #: replaces FETCH (`fetch_head`, `fetch_response`), VANISHED replaces EXPUNGE, and a command that
        #: names messages by number is BAD [UIDREQUIRED] (the protocol core refuses it)
        self.uidonly = False
        #: RFC 5182: the UIDs saved by the last SEARCH RETURN (SAVE); None when there is none (`$` is empty).
        self.saved_result: list[int] | None = None
        #: RFC 5267 4.3: the searches of the selected mailbox kept up to date (UPDATE); None without one
        self.search_updates: SearchUpdates | None = None
        #: RFC 5465: the changes of the selected mailbox the client hears of (all of them until a NOTIFY)
        self.selected_events = ALL_EVENTS
        #: RFC 5465: the session's NOTIFY (the other mailboxes, told between commands); None without one
        self.notifications: Notifications | None = None
        #: The command being run (set by the protocol core): NOTIFY leaves out what it changed (RFC 5465 5)
        self.command: p.Command | None = None
        #: UIDs this session's own APPEND, COPY, MOVE or REPLACE added to the selected mailbox, until their
        #: EXISTS: no FETCH of NOTIFY's MessageNew (RFC 5465 5.2: SHOULD NOT) or of an UPDATE search (section
        #: 1: "appended in another session") for them
        self.own_added: set[int] = set()
        #: Change notifications received; SELECT compares it before and after reading, so that a change
        #: committed while the view was being built is read back at once.
        self.changes_seen = 0
        #: Another session deleted the selected mailbox (`sync` ends the session).
        self.selected_deleted = False
        #: Why the session is ending, when the core ends it (for the log line).
        self.end_reason: str | None = None
        self.pending_append: AppendInProgress | None = None
        #: Untagged responses another session left for this one (RFC 4467 section 7: RESETKEY's URLMECH, told
        #: to every session with the mailbox selected), sent with the next untagged updates (`sync`)
        self.notices: list[str] = []
        #: The exception the transport's write raised: it ends the session (see the module docstring).
        self.transport_error: BaseException | None = None
        self._out = bytearray()
        self._unsubscribe: Callable[[], None] | None = None
        #: The owner of the selected mailbox when it is another account's, shared with this one (RFC 4314,
        #: docs/decisions/0073): its changes are published to its owner's subscribers, so the session follows
        #: that account too while it is selected (`follow`); `postoffice.imap.acl` reads the rights on it.
        self.selected_owner: int | None = None
        #: The rights on it: read at SELECT, and again only after the store published a change of its
        #: access control list ("acl" events set `rights_stale`): at most once per command (decision 0076)
        self.shared_rights = ""
        self.rights_stale = False
        #: The rights its PERMANENTFLAGS last reflected (`shared_access` tells them again when they change)
        self._told_rights = ""
        self._unfollow: Callable[[], None] | None = None

    # ------------------------------------------------------------------------------------------ output

    def send(self, data: bytes) -> None:
        """Complete response lines (CRLF included), queued as they are."""
        self._out += data

    def pending_output(self) -> int:
        return len(self._out)

    def untagged(self, text: str | bytes) -> None:
        self._out += b"* " + (text.encode() if isinstance(text, str) else text) + b"\r\n"

    def discard_output(self) -> None:
        self._out.clear()

    async def flush(self) -> None:
        """Hand the queued octets to the transport (nothing happens when none are queued)."""
        if self._out:
            data = bytes(self._out)
            self._out.clear()
            try:
                await self.transport.write(data)
            except BaseException as exc:
                self.transport_error = exc
                raise

    def mailbox_name(self, name: str) -> bytes:
        """A mailbox name for a response: UTF-8 after UTF8=ACCEPT / IMAP4rev2, else modified UTF-7."""
        if self.utf8:
            return wire.quoted(name, utf8=True)
        return wire.quoted(encode_mutf7(name))

    # ------------------------------------------------------------------------------- login and logout

    @property
    def logged_in_account(self) -> Account:
        """The account of a logged-in session (the core runs such commands only after a login)."""
        account = self.account
        if account is None:
            raise RuntimeError("a command of the authenticated state ran before a login")
        return account

    @property
    def selected_view(self) -> MailboxView:
        """The selected mailbox (the core runs such commands only in the selected state)."""
        view = self.view
        if view is None:
            raise RuntimeError("a command of the selected state ran with no mailbox selected")
        return view

    @property
    def ended(self) -> bool:
        """LOGOUT, a BYE or too many errors: the core reads no more commands."""
        return self.state is State.LOGOUT

    def logged_in(self, account: Account) -> None:
        self.account = account
        self.state = State.AUTHENTICATED
        self._unsubscribe = self.store.subscribe(account.id, self.on_change)

    def close(self) -> None:
        """The session is over: spooled APPEND data and the change subscriptions go."""
        self.discard_append()
        self.unfollow()
        if self.notifications is not None:
            self.notifications.close()
            self.notifications = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def follow(self, owner_id: int, mailbox_id: int, rights: str) -> None:
        """Receive the change notifications of the mailbox being selected when it is another account's (a
        shared one: the store tells its owner's subscribers), until the session leaves it (`close_view`).
        The owner's other mailboxes are none of this session's business (nor of its NOTIFY). `rights`: those
        SELECT found and told (PERMANENTFLAGS); read once more at the end of SELECT (`rights_stale`), since a
        change made before this subscription is never told."""
        self.unfollow()
        self.shared_rights = self._told_rights = rights
        self.rights_stale = True

        def changed(event: ChangeEvent) -> None:
            # for the view only: the owner's names, annotations and other mailboxes never reach the session's
            # NOTIFY, which watches the session's own mailboxes (it would take them for its own)
            if event.mailbox_id == mailbox_id:
                self.changes_seen += 1
                self._selected_changed(event)

        self.selected_owner = owner_id
        self._unfollow = self.store.subscribe(owner_id, changed)

    def unfollow(self) -> None:
        self.selected_owner = None
        if self._unfollow is not None:
            self._unfollow()
            self._unfollow = None

    async def shared_access(self) -> bool:
        """Whether the session may go on with the selected mailbox of another account (RFC 4314 5.1.1; the
        rights are checked before each command and each time changes are told, read again when they have
        changed: `selected_rights`; `postoffice.imap.acl` checks those a command needs). Without "r" the
        session ends: "it MAY send an untagged BYE response and close connection", as when the mailbox is
        deleted: what it would tell next, the user may no longer read. With other rights than before,
        PERMANENTFLAGS again ("SHOULD send ... if they have changed")."""
        view = self.view
        if view is None or self.selected_owner is None:
            return True
        rights = await self.selected_rights()
        if "r" not in rights:
            self.untagged("BYE Access to the selected mailbox was withdrawn by its owner")
            self.end_reason = "selected mailbox no longer readable"
            self.close_view()
            self.state = State.LOGOUT
            return False
        if rights != self._told_rights:
            self._told_rights = rights
            if not view.read_only:
                _, permanent = self.flag_lists(view.keywords)
                self.untagged(f"OK [PERMANENTFLAGS ({permitted_flags(permanent, rights)})] Flags permitted")
        return True

    async def selected_rights(self) -> str:
        """The rights on the selected mailbox of another account: those read last, read again only when the
        store published a change of its access control list since (an "acl" event: `rights_stale`; the event
        reaches the session before the change's writer is answered, so the next command of any session
        honours it), never more than once per command (decision 0076)."""
        view = self.selected_view
        if self.rights_stale:
            self.rights_stale = False  # before the read: a change published during it is read next time
            found = await self.store.my_rights(self.logged_in_account.id, [view.mailbox_id])
            self.shared_rights = found.get(view.mailbox_id, "")
        return self.shared_rights

    # ---------------------------------------------------------------------------------------- updates

    def enable_condstore(self) -> None:
        """A CONDSTORE enabling command (RFC 7162 3.1). The first one with a mailbox selected reports its
        HIGHESTMODSEQ at once, before the command's own responses."""
        if self.condstore:
            return
        self.condstore = True
        view = self.view
        if view is not None:
            view.report_modseq = True
            self.untagged(f"OK [HIGHESTMODSEQ {highest_modseq(view)}] Highest")

    def on_change(self, event: ChangeEvent) -> None:
        self.changes_seen += 1
        notifications = self.notifications
        if notifications is not None and notifications.on_change(event):
            self.wake()
        self._selected_changed(event)

    def _selected_changed(self, event: ChangeEvent) -> None:
        view = self.view
        if view is None or event.mailbox_id != view.mailbox_id:
            return
        if event.kind == "mailbox":
            if "deleted" in event.extra:
                self.selected_deleted = True
                self.wake()
        elif event.kind == "acl":
            if self.selected_owner is not None:  # another account's: the rights are read again (0076)
                self.rights_stale = True
                self.wake()  # RFC 4314 5.1.1: PERMANENTFLAGS again, or BYE, also in IDLE
        elif event.kind not in ("subscription", "metadata"):  # a message of the mailbox changed
            view.dirty = True
            self.wake()

    def added_to_selected(self, uids: Collection[int]) -> None:
        """The running command (APPEND, COPY, MOVE, REPLACE) stored these UIDs in the selected mailbox: they
        are the session's own additions, which NOTIFY and CONTEXT's UPDATE fetch no attributes of (RFC 5465
        5.2, section 7). By the UIDs the store gave the command, so that a delivery to the same mailbox
        meanwhile is not taken for one (the store's change event for them comes before the command resumes,
        but the read-back that tells them only at the command's end)."""
        if len(self.own_added) + len(uids) > OWN_ADDED_LIMIT:
            self.own_added.clear()  # (at worst a FETCH of what it added: bounded memory first)
        if len(uids) <= OWN_ADDED_LIMIT:
            self.own_added.update(uids)

    async def sync(self, allow_expunge: bool, *, expunged: bool = False, unsolicited: bool = False) -> None:
        """Send the untagged updates of the selected mailbox (RFC 9051 section 5.2); EXPUNGE only when
        `allow_expunge` (section 7.5.1). After a NOTIFY, only the changes its SELECTED group asks for
        (`selected_events`, RFC 5465 6.1), and every expunge when the command removed messages itself
        (`expunged`: then its EXPUNGE responses are the command's answer, RFC 9051 6.4.3). `unsolicited`: no
        command is in progress (RFC 5465 section 3): expunges go then with SELECTED (6.1.1), never with
        SELECTED-DELAYED (6.1.2)."""
        view = self.view
        if view is None:
            return
        if self.selected_deleted:
            # RFC 2180 3.3: the mailbox was deleted under this session; like Dovecot, say so and disconnect
            # (the session cannot go on: its messages are gone and its sequence numbers mean nothing).
            self.untagged("BYE The selected mailbox was deleted by another session")
            self.end_reason = "selected mailbox deleted"
            self.close_view()
            self.state = State.LOGOUT
            return
        if self.selected_owner is not None and not await self.shared_access():
            return  # "r" was taken away: BYE, nothing more of the mailbox is told
        for notice in self.notices:
            self.untagged(notice)
        self.notices.clear()
        if view.dirty:
            new = await self.read_back(view)
            if new and not self.rev2 and view.read_only:
                # RFC 3501 2.3.2: a read-only session sees \Recent without claiming it (for a later SELECT)
                view.recent.update(new)
            elif new and not self.rev2:
                # most often another session claimed them already: the store answers without a write
                first_recent = await self.claim_recent(view.mailbox_id, max(new))
                view.recent.update(uid for uid in new if uid >= first_recent)
        events = self.selected_events
        if self.search_updates is not None and events.expunge and not (unsolicited and events.delayed):
            # RFC 5267 4.3.4 and appendix A.3: at once, also while EXPUNGE is held back (numbers stay valid);
            # RFC 5465 5.3: REMOVEFROM goes with the MessageExpunge event, so not without it (a snapshot:
            # with the expunges, `send_expunges`) nor between commands while SELECTED-DELAYED holds it (6.1.2)
            self.search_updates.remove_gone()
        if unsolicited:
            tell_expunges = events.expunge and not events.delayed
        else:  # RFC 9586: no sequence numbers that an expunge could shift
            tell_expunges = (allow_expunge or self.uidonly) and (events.expunge or expunged)
        if tell_expunges:
            self.send_expunges(view)
        told = view.exists if events.new else view.reported_exists  # the messages the client may hear of
        updates = view.flag_updates if events.flags else set()
        self.announce_keywords(view, [*updates, *view.uids[view.reported_exists : told]])
        new_uids: list[int] = []
        if told != view.reported_exists:
            # before the flag updates: one may be for a message read back earlier in this command, which
            # the client knows of only from this EXISTS
            new_uids = list(view.uids[view.reported_exists :])
            view.reported_exists = view.exists
            self.untagged(f"{view.exists} EXISTS")
            if not self.rev2:
                view.reported_recent = len(view.recent)
                self.untagged(f"{view.reported_recent} RECENT")
        for uid in sorted(updates):
            number = view.seq_of(uid)
            if number is not None and number <= told and uid not in view.gone:
                # RFC 9051 7.5.2: an unsolicited FETCH MUST include UID (harmless for IMAP4rev1 clients)
                flags = view.flags_of(uid, with_recent=not self.rev2)
                if self.condstore:  # RFC 7162 3.1: MODSEQ in every untagged FETCH once enabled (UID: 3.2.4)
                    self.fetch_response(number, uid, f"FLAGS ({flags}) MODSEQ ({view.modseq_of(uid)})")
                else:
                    self.fetch_response(number, uid, f"FLAGS ({flags})")
        updates.clear()  # (without FlagChange they wait: a later NOTIFY may ask for them)
        if self.search_updates is not None:
            # RFC 5267 4.3.3: ADDTO after the EXISTS of new messages; RFC 5465 section 7: between them, the
            # FETCH of new messages (MessageNew's attributes and the searches', one response per message)
            await self.search_updates.update(new_uids)
        elif new_uids and self.notifications is not None:
            await self.notifications.new_messages(new_uids)  # RFC 5465 5.2: EXISTS, then the FETCH asked for
        if new_uids and self.own_added:
            self.own_added.difference_update(new_uids)

    def fetch_head(self, seq: int, uid: int) -> bytes:
        """How a FETCH response begins: `* seq FETCH (`, or after ENABLE UIDONLY `* uid UIDFETCH (` (RFC 9586
        section 3.3: every FETCH response, solicited or not, is a UIDFETCH response then)."""
        if self.uidonly:
            return b"* %d UIDFETCH (" % uid
        return b"* %d FETCH (" % seq

    def fetch_response(self, seq: int | None, uid: int, items: str, *, with_uid: bool = True) -> None:
        """Queue `* seq FETCH (UID uid items)` (without `UID uid` when not `with_uid`), or after ENABLE
        UIDONLY `* uid UIDFETCH (items)`: the UID is the response's own number then, and the UID data item
        is sent only when the client asks for it (RFC 9586 3.3). `items` is never empty."""
        if self.uidonly:
            self.untagged(f"{uid} UIDFETCH ({items})")
        elif with_uid:
            self.untagged(f"{seq} FETCH (UID {uid} {items})")
        else:
            self.untagged(f"{seq} FETCH ({items})")

    def send_expunges(self, view: MailboxView) -> None:
        """Report the view's gone messages: one VANISHED with their UIDs after ENABLE QRESYNC (RFC 7162
        3.2.10) or ENABLE UIDONLY (RFC 9586: with or without QRESYNC), else an EXPUNGE per message (RFC 9051
        7.5.1)."""
        if self.search_updates is not None:
            self.search_updates.remove_gone()  # RFC 5267 4.3.4: REMOVEFROM before the expunge is told
        if self.qresync or self.uidonly:
            uids = view.take_vanished()
            if uids:
                self.untagged(f"VANISHED {format_sequence_set(uids)}")
            return
        for seq in view.take_expunges():
            self.untagged(f"{seq} EXPUNGE")

    async def send_vanished_earlier(self, view: MailboxView, known: SequenceSet, modseq: int) -> None:
        """`* VANISHED (EARLIER) uids` (RFC 7162 3.2.6, 3.2.5.1): the UIDs of `known` expunged after
        `modseq` that this session no longer shows (one it still shows, expunged meanwhile, is told live).
        Exact while the store keeps the expunges' records (decision 0061); older than `[store]
        tombstone_days`, every UID of `known` not in the mailbox (decision 0069)."""
        changes = await self.store.changes_since(view.mailbox_id, modseq)
        largest = max(view.uids[-1] if view.uids else 0, view.info.uidnext - 1)
        ranges = [(low, min(high, largest)) for low, high in known.resolve(largest)]
        if changes.present is not None:
            # tombstones after `modseq` were pruned (decision 0069): every UID of `known` that is not here
            # (RFC 7162 3.2.5.1 allows naming UIDs the client never saw)
            absent = _absent(ranges, sorted(set(changes.present).union(view.uids)))
            if absent:
                self.untagged(f"VANISHED (EARLIER) {absent}")
            return
        gone = [u for u in changes.expunged if u not in view and any(lo <= u <= hi for lo, hi in ranges)]
        if gone:
            self.untagged(f"VANISHED (EARLIER) {format_sequence_set(gone)}")

    def closing_highest_modseq(self, expunged: bool) -> int | None:
        """The HIGHESTMODSEQ to give at the end of a command of a QRESYNC session, or None (RFC 7162 3.2):
        while expunges are held back (during FETCH, STORE, SEARCH), one below them, so that a client that
        resumes from it later is told of them; after an EXPUNGE, UID EXPUNGE or MOVE that removed messages,
        the mailbox's (3.2.7, 3.2.9; RFC 6851 4.4)."""
        view = self.view
        if not self.qresync or view is None:
            return None
        if view.gone:
            return max(view.full_modseq, 1)
        return highest_modseq(view) if expunged else None

    def announce_keywords(self, view: MailboxView, uids: list[int]) -> None:
        """A keyword new to the mailbox is announced with FLAGS (and PERMANENTFLAGS when writable) before any
        FETCH response that shows it (RFC 9051 sections 7.3.5 and 7.1), so clients can cache the flag list."""
        new = view.unannounced_keywords(uids)
        if not new:
            return
        view.keywords |= new
        flags, permanent = self.flag_lists(view.keywords)
        self.untagged(f"FLAGS ({flags})")
        if not view.read_only:
            if self.selected_owner is not None:  # another account's: what the rights allow (RFC 4314 5.1.1)
                permanent = permitted_flags(permanent, self.shared_rights)
            self.untagged(f"OK [PERMANENTFLAGS ({permanent})] Flags permitted")

    def flag_lists(self, keywords: Collection[str]) -> tuple[str, str]:
        """The contents of FLAGS and of PERMANENTFLAGS for a mailbox with these keywords. PERMANENTFLAGS has
        \\* (new keywords may be created) only while the mailbox has fewer than `max_mailbox_keywords`: a
        server that cannot create more omits it (RFC 9051 section 7.1, docs/decisions/0043)."""
        flags = " ".join((*SYSTEM_FLAGS, *sorted(keywords)))
        if len(keywords) < self.settings.max_mailbox_keywords:
            return flags, flags + " \\*"
        return flags, flags

    @property
    def keyword_limits(self) -> KeywordLimits:
        """The store checks these when a command gives a mailbox new keywords (docs/decisions/0043)."""
        return KeywordLimits(self.settings.max_mailbox_keywords, self.settings.max_keyword_length)

    async def claim_recent(self, mailbox_id: int, up_to: int | None = None) -> int:
        """`MailStore.claim_recent`, except that a claim the store cannot write (a full disk) claims nothing:
        the mailbox opens all the same, and the messages stay \\Recent for the next session
        (docs/decisions/0030). Returns the first UID that is \\Recent here."""
        try:
            return await self.store.claim_recent(mailbox_id, up_to)
        except NotFound:
            raise
        except StoreError as exc:
            log.warning("imap client %s: \\Recent not claimed: %s", self.transport.peer_ip, exc)
            return NO_UID

    async def read_back(self, view: MailboxView) -> list[int]:
        """Bring `view` up to date with the store: only what changed after the MODSEQ it has seen (every
        message is gone when the mailbox no longer exists). Returns the new UIDs."""
        # Cleared before the read, not after: a change committed while the read is under way marks the view
        # dirty again, and the next sync reads once more (cleared after, that change went unreported until
        # some other change came; bench/imap_sync_stress.py found it)
        view.dirty = False
        try:
            changes = await self.store.changes_since(view.mailbox_id, view.modseq)
        except NotFound:
            view.vanish()
            return []
        new = view.apply(changes)
        if self.search_updates is not None:
            self.search_updates.note(changes)
        return new

    def resolve(self, sequence: SequenceSet, *, uid: bool) -> list[int]:
        view = self.selected_view
        if sequence.saved:
            # RFC 5182 2.1: "$" is the saved result (empty when there is none); expunged UIDs drop out.
            return self.saved_uids()
        try:
            return view.resolve(sequence, uid=uid)
        except InvalidSequence as exc:
            raise bad(f"Invalid message sequence number: {exc}") from None

    def saved_uids(self) -> list[int]:
        """The saved search result (RFC 5182) restricted to the messages still in the view, ascending."""
        view = self.view
        if view is None or not self.saved_result:
            return []
        return [uid for uid in self.saved_result if uid in view and uid not in view.gone]

    def close_view(self) -> None:
        self.view = None
        self.selected_deleted = False
        self.saved_result = None  # RFC 5182 2.1: SELECT, EXAMINE, CLOSE and UNSELECT reset it
        self.search_updates = None  # RFC 5267 4.3: updates cease when the mailbox is no longer selected
        self.own_added.clear()
        self.unfollow()
        if self.state is State.SELECTED:
            self.state = State.AUTHENTICATED

    # ------------------------------------------------------------------------------------------ APPEND

    def take_append(self, tag: str) -> AppendInProgress | None:
        append = self.pending_append
        if append is None or append.tag != tag:
            return None
        self.pending_append = None
        return append

    def discard_append(self) -> None:
        if self.pending_append is not None:
            self.pending_append.close()
            self.pending_append = None


def _absent(ranges: Iterable[tuple[int, int]], kept: list[int]) -> str:
    """The UIDs of `ranges` (inclusive, from 1) that are not in `kept` (ascending), as a sequence set."""
    parts: list[str] = []
    for low, high in ranges:
        low = max(low, 1)
        i = bisect.bisect_left(kept, low)
        while low <= high:
            nxt = kept[i] if i < len(kept) else high + 1
            end = min(nxt - 1, high)
            if end >= low:
                parts.append(str(low) if end == low else f"{low}:{end}")
            low = nxt + 1
            i += 1
    return ",".join(parts)


def highest_modseq(view: MailboxView) -> int:
    """The HIGHESTMODSEQ to report for the view (RFC 7162 3.1.2.1): every change up to it has been read;
    at least 1 (a mod-sequence-value is never 0, also for a mailbox that never changed)."""
    return max(view.modseq, 1)
