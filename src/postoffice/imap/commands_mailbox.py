"""IMAP mailbox commands: SELECT, EXAMINE, CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB,
STATUS (RFC 9051 sections 6.3.2-6.3.11, RFC 3501 6.3.1-6.3.10), with CHILDREN (RFC 3348), SPECIAL-USE and
CREATE-SPECIAL-USE (RFC 6154), STATUS=SIZE (RFC 8438) and APPENDLIMIT (RFC 7889).

Implementation notes
- Hierarchy separator "/". The personal namespace is "", the other users' one "Shared/": another account's
  mailbox shared with this one (RFC 4314) is `Shared/<local part>/<name>`; every name is found, and the rights
  each command needs are checked, by `postoffice.imap.acl` (docs/decisions/0073). INBOX is case-insensitive
  (the parser normalises it); every other name is compared exactly.
- Names are sent in modified UTF-7 (RFC 3501 5.1.3) unless the client enabled UTF8=ACCEPT (RFC 6855) or
  IMAP4rev2, then as UTF-8.
- LIST: "*" matches any characters, "%" any but "/" (RFC 9051 6.3.9); a pattern names INBOX in any case only
  where it begins with INBOX ("inbox/%"), elsewhere INBOX is matched as the upper-case string (decision
  0043). A name that exists only as the parent
  of other mailboxes ("a" for "a/b") is listed with \\Noselect when the pattern matches it, and DELETE of such
  a name is NO (6.3.4). Special-use attributes and \\HasChildren / \\HasNoChildren are always sent (RFC
  5258 and RFC 6154 allow them without the CHILDREN / SPECIAL-USE return options).
- Patterns are matched by `ListPattern` in one pass over each name, never by backtracking (a regex with ".*"
  per "*" took 32 s for 50 "*"); the patterns of one command (each after its reference) may have at most
  twice `max_mailbox_name_length` characters together, else NO [LIMIT], and the listing yields to the event
  loop every `LIST_BATCH` names (docs/decisions/0020).
- A name that is not valid modified UTF-7 (`MailboxName.valid`, RFC 3501 5.1.3) names no mailbox: NO
  [NONEXISTENT] where a mailbox must exist, NO [CANNOT] where one would be created or subscribed; a LIST
  pattern of that kind matches what it looks like, decoded leniently or as written against the names'
  modified UTF-7 form (`NamePatterns`, decisions 0020 and 0043).
- Limits (docs/decisions/0021): at most `max_mailboxes` mailboxes and as many subscriptions per account,
  names of at most `max_mailbox_name_length` octets (UTF-8) and `max_mailbox_depth` levels; CREATE, RENAME
  (every renamed inferior counts) and SUBSCRIBE over them are NO [LIMIT] (RFC 5530). The count is checked
  again in the store's transaction, so concurrent sessions cannot go over it.
- LIST-EXTENDED (RFC 5258): several patterns (a name is listed once if any matches); selection options
  SUBSCRIBED (subscribed names, also those that do not exist: \\NonExistent), SPECIAL-USE, REMOTE (no
  effect: there are no remote mailboxes) and RECURSIVEMATCH (with SUBSCRIBED: the matching parent of a
  subscribed name the pattern does not match is listed with ("CHILDINFO" ("SUBSCRIBED"))); return options
  SUBSCRIBED (\\Subscribed), CHILDREN, SPECIAL-USE. LIST-STATUS (RFC 5819): RETURN (STATUS (...)) sends a
  STATUS response after the LIST response of each selectable mailbox.
- DELETE of a mailbox that has children deletes only that mailbox; the children stay (RFC 9051 6.3.4).
  INBOX cannot be deleted. RENAME of INBOX moves its messages to the new name and leaves INBOX empty.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from postoffice.imap import acl, commands_urlauth
from postoffice.imap import parser as p
from postoffice.imap.mailbox_view import MailboxView
from postoffice.imap.mutf7 import MUtf7Error, decode_mutf7, encode_mutf7
from postoffice.imap.objectid import mailbox_objectid
from postoffice.imap.sequence import MAX_NUMBER, SequenceSet
from postoffice.imap.state import (
    CommandFailed,
    Done,
    SessionState,
    State,
    bad,
    highest_modseq,
    no,
    permitted_flags,
)
from postoffice.store import AlreadyExists, LimitExceeded, MailboxInfo, NotFound

SEPARATOR = "/"


def _account_id(session: SessionState) -> int:
    return session.logged_in_account.id


def _is_inbox(name: str) -> bool:
    return name.upper() == "INBOX"


def _check_name(name: str) -> None:
    if not name or name.startswith(SEPARATOR) or (SEPARATOR * 2) in name:
        raise bad("Invalid mailbox name")


def _existing(mailbox: p.MailboxName) -> str:
    """The name of a mailbox that must exist; a name that is not modified UTF-7 cannot (NO, not BAD)."""
    if not mailbox.valid:
        raise no("Mailbox does not exist (the name is not valid modified UTF-7)", "NONEXISTENT")
    return acl.normalise(mailbox.name)


def _new(session: SessionState, mailbox: p.MailboxName) -> str:
    """The name of a mailbox to be created (or subscribed), checked against the name limits."""
    if not mailbox.valid:
        raise no("The name is not valid modified UTF-7 (RFC 3501 section 5.1.3)", "CANNOT")
    name = acl.normalise(mailbox.name)
    _check_name(name)
    _check_limits(session, name)
    return name


def _check_limits(session: SessionState, name: str) -> None:
    settings = session.settings
    if len(name.encode("utf-8", "surrogatepass")) > settings.max_mailbox_name_length:
        raise no(f"Mailbox names are limited to {settings.max_mailbox_name_length} octets", "LIMIT")
    if name.count(SEPARATOR) >= settings.max_mailbox_depth:
        raise no(f"Mailbox names are limited to {settings.max_mailbox_depth} levels", "LIMIT")


def _missing_superiors(name: str, existing: Iterable[str]) -> list[str]:
    """RFC 9051 6.3.4 / 6.3.6: CREATE "a/b/c" (and RENAME to it) SHOULD create "a" and "a/b" if missing."""
    have = set(existing)
    parts = name.split(SEPARATOR)
    superiors = (SEPARATOR.join(parts[:i]) for i in range(1, len(parts)))
    return [s for s in superiors if not _is_inbox(s) and s not in have]


def _check_count(session: SessionState, existing: int, adding: int) -> None:
    if existing + adding > session.settings.max_mailboxes:
        raise _too_many(session)


def _too_many(session: SessionState, what: str = "mailboxes") -> CommandFailed:
    return no(f"An account may have at most {session.settings.max_mailboxes} {what}", "LIMIT")


# ------------------------------------------------------------------------------------------- SELECT


async def select(session: SessionState, command: p.Select | p.Examine) -> Done:
    read_only = isinstance(command, p.Examine)
    condstore, qresync = _select_parameters(session, command.params)
    if session.view is not None:
        # RFC 9051 section 6.3.2: the current mailbox is closed first, also when the new one fails; RFC 7162
        # 3.2.11: a server offering CONDSTORE says so with CLOSED, for every client
        session.close_view()
        session.untagged("OK [CLOSED] Previous mailbox closed")
    if condstore:
        session.enable_condstore()  # after the close: no HIGHESTMODSEQ of the mailbox just closed
    name = _existing(command.mailbox)
    store = session.store
    target = await acl.mailbox(session, name, "r")  # RFC 4314 section 4: SELECT and EXAMINE need "r"
    info = target.info
    read_only = read_only or not acl.writable(target.rights)  # RFC 4314 5.2
    changes_seen = session.changes_seen
    snapshot = await store.snapshot(info.id)  # shared and cached: no read of every message (decision 0016)
    recent: list[int] = []
    mailbox = snapshot.mailbox
    uids = snapshot.uids
    if not session.rev2 and read_only:
        # RFC 3501 2.3.2: a read-only session sees \Recent but does not claim it; a later SELECT still does
        recent = list(uids[bisect.bisect_right(uids, mailbox.recent_uid) :])
    elif not session.rev2 and mailbox.recent_uid < mailbox.uidnext - 1:
        # (when every UID was claimed already there is nothing to claim: no write for this SELECT)
        first_recent = await session.claim_recent(info.id)  # no write, no claim: decision 0030
        recent = list(uids[bisect.bisect_left(uids, first_recent) :])
    view = MailboxView(snapshot, read_only=read_only, recent=recent)
    view.report_modseq = session.condstore
    flags, permanent = session.flag_lists(snapshot.keywords)
    if not target.own:
        permanent = permitted_flags(permanent, target.rights)  # only what the user may set
    session.untagged(f"FLAGS ({flags})")
    if read_only:
        session.untagged("OK [PERMANENTFLAGS ()] No permanent flags in a read-only mailbox")
    else:
        session.untagged(f"OK [PERMANENTFLAGS ({permanent})] Flags permitted")
    session.untagged(f"{view.exists} EXISTS")
    if not session.rev2:
        session.untagged(f"{len(recent)} RECENT")
        first = snapshot.first_unseen_uid
        first_unseen = None if first is None else view.seq_of(first)
        if first_unseen is not None and not session.uidonly:  # a message number (RFC 9586: none sent)
            session.untagged(f"OK [UNSEEN {first_unseen}] First unseen message")
    session.untagged(f"OK [UIDVALIDITY {snapshot.mailbox.uidvalidity}] UIDs valid")
    session.untagged(f"OK [UIDNEXT {snapshot.mailbox.uidnext}] Predicted next UID")
    session.untagged(f"OK [MAILBOXID ({mailbox_objectid(snapshot.mailbox)})] Ok")  # RFC 8474 4.1
    commands_urlauth.selected(session)  # RFC 4467 section 8: OK [URLMECH INTERNAL]
    if session.condstore:  # RFC 7162 3.1.2.1
        session.untagged(f"OK [HIGHESTMODSEQ {highest_modseq(view)}] Highest")
    if session.rev2:
        # RFC 9051 6.3.2: a LIST response with the name, and its attributes accurate
        # (the shared namespace cannot change an own mailbox's attributes: listed only for a shared one)
        mailboxes = (
            await session.store.list_mailboxes(_account_id(session))
            if target.own
            else (await acl.listing(session)).mailboxes
        )
        existing, parents, _ = _mailbox_tree(mailboxes)
        attributes = " ".join(_attributes(target.name, existing, parents, set()))
        session.untagged(f"LIST ({attributes}) ".encode() + b'"/" ' + session.mailbox_name(target.name))
    if qresync is not None:
        await _resynchronise(session, view, qresync)
    # Until `session.view` is set, a change notification finds no view to mark: any that came since the
    # snapshot was asked for (during every await above) makes the view read back at once.
    view.dirty = session.changes_seen != changes_seen
    if not target.own:
        # its changes go to its owner's subscribers (decision 0073): followed from here (not before: a SELECT
        # that fails follows nothing), and the view read back at once, so none made meanwhile is missed
        session.follow(info.account_id, info.id, target.rights)  # what PERMANENTFLAGS told
        view.dirty = True
    session.view = view
    session.state = State.SELECTED
    return Done(f"{command.NAME} completed", "READ-ONLY" if read_only else "READ-WRITE")


@dataclass(frozen=True)
class _Qresync:
    """SELECT / EXAMINE (QRESYNC (uidvalidity modseq [known-uids [seq-match-data]])) (RFC 7162 3.2.5)."""

    uidvalidity: int
    modseq: int
    known: SequenceSet | None


#: MODSEQs are 63-bit (RFC 7162 section 7: mod-sequence-value).
MAX_MODSEQ = 2**63 - 1


def _select_parameters(session: SessionState, params: tuple[p.ExtParam, ...]) -> tuple[bool, _Qresync | None]:
    """What SELECT / EXAMINE asks for: CONDSTORE (RFC 7162 3.1.8), QRESYNC (3.2.5); BAD for anything else
    or malformed, before anything is closed or opened ("the mailbox remains unselected")."""
    condstore = False
    qresync: _Qresync | None = None
    names = [param.name for param in params]
    if len(set(names)) != len(names):
        raise bad("A SELECT parameter is given twice")
    for param in params:
        if param.name == "CONDSTORE" and param.value is None:
            condstore = True
        elif param.name == "QRESYNC":
            if not session.qresync:
                raise bad("QRESYNC is not enabled (RFC 7162 3.2.5: ENABLE QRESYNC first)")
            qresync = _qresync_parameter(param.value, uidonly=session.uidonly)
        else:
            raise bad(f"Unknown SELECT parameter {param.name}")
    return condstore, qresync


def _qresync_parameter(value: p.ExtValue | None, *, uidonly: bool = False) -> _Qresync:
    if not isinstance(value, tuple) or not 2 <= len(value) <= 4:
        raise bad("QRESYNC takes (uidvalidity modseq [known-uids [(sequence-set uid-set)]])")
    uidvalidity, modseq = value[0], value[1]
    if not (isinstance(uidvalidity, str) and uidvalidity.isdigit() and 0 < int(uidvalidity) <= MAX_NUMBER):
        raise bad("QRESYNC: the UIDVALIDITY must be a number from 1 to 4294967295")
    if not (isinstance(modseq, str) and modseq.isdigit() and int(modseq) <= MAX_MODSEQ):
        raise bad("QRESYNC: the MODSEQ must be a number below 2^63")
    rest = list(value[2:])
    known = None
    first = rest[0] if rest else None
    if isinstance(first, str):
        known = _set_without_star(first, "known UIDs")
        rest.pop(0)
    if rest:
        match = rest.pop(0)
        if uidonly:  # RFC 9586: seq-match-data pairs message numbers with UIDs
            raise bad("QRESYNC: no seq-match-data once UIDONLY is enabled", "UIDREQUIRED")
        # seq-match-data: checked, and not needed (every expunge is remembered: VANISHED is exact anyway)
        if not (isinstance(match, tuple) and len(match) == 2 and all(isinstance(x, str) for x in match)):
            raise bad("QRESYNC: seq-match-data is (sequence-set uid-set)")
        numbers, uids = (_set_without_star(str(x), "seq-match-data") for x in match)
        if _count(numbers) != _count(uids):
            raise bad("QRESYNC: the two sets of seq-match-data differ in size")
    if rest:
        raise bad("QRESYNC takes (uidvalidity modseq [known-uids [(sequence-set uid-set)]])")
    return _Qresync(int(uidvalidity), int(modseq), known)


def _set_without_star(text: str, what: str) -> SequenceSet:
    try:
        parsed = SequenceSet.parse(text)
    except ValueError:
        raise bad(f"QRESYNC: the {what} are not a sequence set") from None
    if parsed.saved or parsed.uses_star:
        raise bad(f"QRESYNC: the {what} may not use * or $")
    return parsed


def _count(numbers: SequenceSet) -> int:
    return sum(high - low + 1 for low, high in numbers.resolve(MAX_NUMBER))


async def _resynchronise(session: SessionState, view: MailboxView, qresync: _Qresync) -> None:
    """RFC 7162 3.2.5.1: for the known UIDs, what vanished and what changed since the client's MODSEQ:
    VANISHED (EARLIER) first, then a FETCH with UID, FLAGS and MODSEQ per changed message. Nothing when the
    UIDVALIDITY is not the mailbox's (the client starts afresh)."""
    if qresync.uidvalidity != view.info.uidvalidity or view.info.uidnext <= 1:
        return
    known = qresync.known or SequenceSet.parse(f"1:{view.info.uidnext - 1}")
    await session.send_vanished_earlier(view, known, qresync.modseq)
    ranges = known.resolve(max(view.uids[-1] if view.uids else 0, view.info.uidnext - 1))
    changed = [
        uid
        for uid in view.uids
        if view.modseq_of(uid) > qresync.modseq and any(lo <= uid <= hi for lo, hi in ranges)
    ]
    for seq, uid, _flags in view.positions(changed) if changed else ():
        flags = view.flags_of(uid, with_recent=not session.rev2)
        session.fetch_response(seq, uid, f"FLAGS ({flags}) MODSEQ ({view.modseq_of(uid)})")  # or UIDFETCH


# ------------------------------------------------------------------------------- CREATE DELETE RENAME


async def create(session: SessionState, command: p.Create) -> Done:
    if command.params:
        raise bad("CREATE parameters other than USE are not supported")
    name = _new(session, command.mailbox)
    if len(command.special_use) > 1:
        raise no("Only one special-use attribute per mailbox", "USEATTR")
    # the account it goes in, and its name there: the session's own, or another account's with "k" on the
    # parent (RFC 4314 section 4, decision 0073)
    account, name = await acl.creatable(session, name, special_use=bool(command.special_use))
    existing = {m.name for m in await session.store.list_mailboxes(account)}
    if _is_inbox(name) or name in existing:
        raise no("Mailbox already exists", "ALREADYEXISTS")
    special = command.special_use[0] if command.special_use else None
    superiors = _missing_superiors(name, existing)
    _check_count(session, len(existing), len(superiors) + 1)
    await _create_superiors(session, account, superiors)
    try:
        created = await session.store.create_mailbox(
            account, name, special, max_mailboxes=session.settings.max_mailboxes
        )
    except AlreadyExists:
        if special is not None:
            raise no(f"Another mailbox has {special} already", "USEATTR") from None
        raise no("Mailbox already exists", "ALREADYEXISTS") from None
    except LimitExceeded:  # another session created some meanwhile
        raise _too_many(session) from None
    return Done("CREATE completed", f"MAILBOXID ({mailbox_objectid(created)})")  # RFC 8474 4.1


async def _create_superiors(session: SessionState, account: int, superiors: list[str]) -> None:
    for superior in superiors:
        try:
            await session.store.create_mailbox(
                account, superior, max_mailboxes=session.settings.max_mailboxes
            )
        except AlreadyExists:
            pass  # created meanwhile by another session
        except LimitExceeded:
            raise _too_many(session) from None


async def delete(session: SessionState, command: p.Delete) -> Done:
    name = _existing(command.mailbox)
    if _is_inbox(name):
        raise no("INBOX cannot be deleted", "CANNOT")
    target = await acl.find(session, name)
    if target is None:
        _, parents, _ = _mailbox_tree((await acl.listing(session)).mailboxes)
        if name in parents:
            # RFC 9051 6.3.5: a \Noselect name with inferiors cannot be deleted
            raise no("The name has child mailboxes and is not a mailbox itself", "HASCHILDREN")
        raise no("Mailbox does not exist", "NONEXISTENT")
    info = acl.require(target, "x").info  # RFC 4314 section 4: DELETE needs "x"
    if info.name == "INBOX":  # another account's
        raise no("INBOX cannot be deleted", "CANNOT")
    account, name = info.account_id, info.name
    if session.view is not None and session.view.mailbox_id == info.id:
        # Deleting the selected mailbox: this session leaves the selected state first (other sessions that
        # have it selected get BYE, `SessionState.sync`).
        session.close_view()
        if session.rev2:
            session.untagged("OK [CLOSED] The selected mailbox is being deleted")
    try:
        await session.store.delete_mailbox(account, name)
    except NotFound:
        raise no("Mailbox does not exist", "NONEXISTENT") from None
    return Done("DELETE completed")


async def rename(session: SessionState, command: p.Rename) -> Done:
    old = _existing(command.mailbox)
    new = _new(session, command.new_name)
    # "x" on the mailbox, "k" on the new parent, one account (RFC 4314 section 4); the names in that account
    account, old, new = await acl.renamable(session, old, new)
    store = session.store
    existing = {m.name for m in await store.list_mailboxes(account)}
    if old not in existing:
        raise no("Mailbox does not exist", "NONEXISTENT")
    if _is_inbox(new) or new in existing:
        raise no("Target mailbox already exists", "ALREADYEXISTS")
    if new.startswith(old + SEPARATOR) and old != "INBOX":
        # (renaming INBOX moves its messages only; its inferiors stay, RFC 9051 6.3.6)
        raise no("A mailbox cannot be renamed into itself", "CANNOT")
    if old != "INBOX":
        # the inferiors move with it (RFC 9051 6.3.6): their new names must be within the limits too
        below = old + SEPARATOR
        for name in existing:
            if name.startswith(below):
                _check_limits(session, new + name[len(old) :])
    superiors = _missing_superiors(new, existing)
    # renaming INBOX makes a new mailbox for its messages
    _check_count(session, len(existing), len(superiors) + (old == "INBOX"))
    await _create_superiors(session, account, superiors)
    try:
        await store.rename_mailbox(account, old, new, max_mailboxes=session.settings.max_mailboxes)
    except AlreadyExists:
        raise no("Target mailbox already exists", "ALREADYEXISTS") from None
    except NotFound:
        raise no("Mailbox does not exist", "NONEXISTENT") from None
    except LimitExceeded:
        raise _too_many(session) from None
    return Done("RENAME completed")


async def subscribe(session: SessionState, command: p.Subscribe | p.Unsubscribe) -> Done:
    account = _account_id(session)
    if isinstance(command, p.Unsubscribe):
        await session.store.set_subscribed(account, _existing(command.mailbox), False)
        return Done("UNSUBSCRIBE completed")
    name = _new(session, command.mailbox)
    try:
        await session.store.set_subscribed(
            account, name, True, max_subscriptions=session.settings.max_mailboxes
        )
    except LimitExceeded:
        raise _too_many(session, "subscriptions") from None
    return Done("SUBSCRIBE completed")


# --------------------------------------------------------------------------------------- LIST LSUB


#: Names matched between two yields to the event loop: a LIST over an account of long names must not keep
#: every other session waiting.
LIST_BATCH = 128


class ListPattern:
    """One or more LIST / LSUB patterns (RFC 9051 section 6.3.9), matched in one pass over a name.

    "*" matches zero or more characters, "%" the same without the hierarchy separator; every other character
    matches itself. INBOX (RFC 9051 sections 5.1 and 6.3.9): a pattern that begins with INBOX in any case,
    followed by its end, the separator or a wildcard ("inbox", "Inbox/%", "INBOX*") names INBOX there, so
    those five characters match the first level of a name that is INBOX whatever their case; every other
    pattern matches INBOX as the upper-case string it is ("*X" lists it, "*x" does not; decision 0043).

    The patterns run as one nondeterministic automaton whose states are the bits of an int (the "shift-and"
    method): pattern position i is bit i, each character of the name costs a few operations on that int, and
    nothing backtracks, so a match takes time linear in the length of the name (times the patterns' total
    length in machine words). Runs of wildcards are collapsed first ("**" or "%*" is "*", "%%" is "%"), so
    after a wildcard's position comes a literal one or the end.

    Several patterns share the int: pattern k takes positions off_k .. off_k + len_k, and its accepting bit
    off_k + len_k is in no mask, so no transition leaves it (nothing leaks into pattern k + 1)."""

    __slots__ = ("_accept", "_everything", "_inboxcase", "_literals", "_prefixes", "_star", "_start", "_wild")

    def __init__(self, patterns: Iterable[str]) -> None:
        literals: dict[str, int] = {}
        star = percent = start = accept = inboxcase = 0
        prefixes: list[str] = []
        offset = 0
        self._everything = False  # one of the patterns is "*" (the most common LIST of all)
        for pattern in patterns:
            tokens: list[str] = []
            for char in pattern:
                if char in "*%" and tokens and tokens[-1] in "*%":
                    if char == "*":
                        tokens[-1] = "*"
                    continue
                tokens.append(char)
            self._everything |= tokens == ["*"]
            first_wildcard = next((i for i, t in enumerate(tokens) if t in "*%"), len(tokens))
            prefix = "".join(tokens[:first_wildcard])
            if prefix[:5].upper() == "INBOX" and pattern[5:6] in ("", SEPARATOR, "*", "%"):
                inboxcase |= 0b11111 << offset  # its first five positions take INBOX in any case
            prefixes.append(prefix)
            for i, symbol in enumerate(tokens):  # each a character or a wildcard: the automaton's alphabet
                bit = 1 << (offset + i)
                if symbol == "*":
                    star |= bit
                elif symbol == "%":
                    percent |= bit
                else:
                    literals[symbol] = literals.get(symbol, 0) | bit
            start |= 1 << offset
            accept |= 1 << (offset + len(tokens))
            offset += len(tokens) + 1
        self._literals = literals
        self._star = star  # "*" positions: stay on any character
        self._wild = star | percent  # "%" positions too: stay on any character but the separator
        self._start = start | ((start & self._wild) << 1)
        self._accept = accept
        self._inboxcase = inboxcase
        # A name can only match a pattern it starts with the literal beginning of (INBOX aside): a cheap
        # test that skips most names for the usual patterns ("INBOX/%", "Archive/*").
        self._prefixes = tuple(prefixes)

    def matches(self, name: str) -> bool:
        return self._run(name, ancestors=False) is True

    def deepest_ancestor(self, name: str) -> str | None:
        """The longest superior name of `name` ("a/b" of "a/b/c") that matches, if any."""
        found = self._run(name, ancestors=True)
        return found if isinstance(found, str) else None

    def _run(self, name: str, *, ancestors: bool) -> bool | str | None:
        """Whether `name` matches; with `ancestors`, the deepest matching superior name instead (or None)."""
        if self._everything:
            if ancestors:
                return name.rpartition(SEPARATOR)[0] if SEPARATOR in name else None
            return True
        inbox = name[:5] == "INBOX" and name[5:6] in ("", SEPARATOR)
        if not inbox and not name.startswith(self._prefixes):
            return None if ancestors else False
        literals, star, wild, accept = self._literals, self._star, self._wild, self._accept
        inboxcase = self._inboxcase if inbox else 0
        states = self._start
        found: str | None = None
        for i, char in enumerate(name):
            step = literals.get(char, 0)
            if char == SEPARATOR:
                if ancestors and states & accept:
                    found = name[:i]
                moved = ((states & step) << 1) | (states & star)
            else:
                if inboxcase and i < 5:
                    step |= literals.get(char.lower(), 0) & inboxcase
                moved = ((states & step) << 1) | (states & wild)
            # a wildcard matches nothing too: reaching its position reaches the next one (never a wildcard)
            states = moved | ((moved & wild) << 1)
            if not states:
                break
        if ancestors:
            return found
        return bool(states & accept)


def _check_patterns(patterns: list[str], limit: int) -> None:
    """Bound the matching work of one command: its patterns (each after its reference) together may have
    `limit` characters, twice as many as the longest name (enough to spell any name with wildcards between),
    else NO [LIMIT]."""
    if sum(len(pattern) for pattern in patterns) > limit:
        raise no(f"The patterns of one command are limited to {limit} characters", "LIMIT")


def _pattern_chars(session: SessionState) -> int:
    return 2 * session.settings.max_mailbox_name_length


class NamePatterns:
    """The patterns of one LIST or LSUB, each after its reference (RFC 9051 section 6.3.9), as the client
    meant them.

    A pattern is matched against the mailbox names (Unicode) after decoding from modified UTF-7. One that is
    not valid modified UTF-7 (`MailboxName.valid`) is decoded leniently (decision 0020), and is also matched
    as written against each name's modified UTF-7 form: a client that cut an encoded run with a wildcard
    (`*&Jjo*`, a fragment of `&Jjo-` = U+263A) is searching the names as it sees them, so `&Jjo-x` is listed
    (decision 0043). Only such patterns are matched that way: a valid one like `*k*` must not match the
    letters of an encoded run (`&AOk-` is "é")."""

    __slots__ = ("_decoded", "_encoded")

    def __init__(
        self, reference: p.MailboxName, patterns: Iterable[p.MailboxName], *, utf8: bool, max_chars: int
    ) -> None:
        decoded: list[str] = []
        encoded: list[str] = []
        for pattern in patterns:
            decoded.append(reference.name + pattern.name)
            if not (reference.valid and pattern.valid) and not utf8:
                encoded.append(reference.raw + pattern.raw)
        _check_patterns(decoded, max_chars)  # (see _check_patterns)
        _check_patterns(encoded, max_chars)
        self._decoded = ListPattern(decoded)
        self._encoded = ListPattern(encoded) if encoded else None

    def matches(self, name: str) -> bool:
        if self._decoded.matches(name):
            return True
        return self._encoded is not None and self._encoded.matches(_encoded(name))

    def deepest_ancestor(self, name: str) -> str | None:
        """The deepest superior name of `name` that a pattern matches, if any."""
        found = self._decoded.deepest_ancestor(name)
        if self._encoded is not None:
            other = self._encoded.deepest_ancestor(_encoded(name))
            if other is not None:
                # an encoded run never spans the separator: a prefix that ends at one decodes alone
                other = decode_mutf7(other)
                if found is None or other.count(SEPARATOR) > found.count(SEPARATOR):
                    found = other
        return found


def _encoded(name: str) -> str:
    try:
        return encode_mutf7(name)
    except MUtf7Error:  # a lone surrogate: no client could have written it
        return ""


def _mailbox_tree(mailboxes: list[MailboxInfo]) -> tuple[dict[str, MailboxInfo], set[str], set[str]]:
    """Existing mailboxes by name, names with children, and names that exist only as parents."""
    existing = {m.name: m for m in mailboxes}
    parents: set[str] = set()
    for name in existing:
        parts = name.split(SEPARATOR)
        for i in range(1, len(parts)):
            parents.add(SEPARATOR.join(parts[:i]))
    return existing, parents, parents - existing.keys()


def _attributes(
    name: str, existing: dict[str, MailboxInfo], parents: set[str], subscribed: set[str]
) -> list[str]:
    """The mailbox attributes of a LIST response (RFC 9051 7.3.1, RFC 5258, RFC 6154)."""
    info = existing.get(name)
    attributes = []
    if info is None:
        attributes.append("\\Noselect" if name in parents else "\\NonExistent")
    attributes.append("\\HasChildren" if name in parents else "\\HasNoChildren")
    if info is not None and info.special_use:
        attributes.append(info.special_use)
    if name in subscribed:
        attributes.append("\\Subscribed")
    return attributes


_SELECT_OPTIONS = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
_RETURN_OPTIONS = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS", "MYRIGHTS"})


async def list_mailboxes(session: SessionState, command: p.List) -> Done:
    """LIST, with LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819) and the SPECIAL-USE options (RFC 6154)."""
    select = {option.name for option in command.select_options}
    returns = {option.name for option in command.return_options}
    unknown = (select - _SELECT_OPTIONS) | (returns - _RETURN_OPTIONS)
    if unknown:
        raise bad(f"Unsupported LIST option {' '.join(sorted(unknown))}")
    if "RECURSIVEMATCH" in select and not select - {"RECURSIVEMATCH", "REMOTE"}:
        raise bad("RECURSIVEMATCH needs another selection option")  # RFC 5258 section 3
    status_items = command.return_status
    if status_items is not None:
        _check_status_items(status_items)
        if "HIGHESTMODSEQ" in status_items:
            session.enable_condstore()  # as STATUS (RFC 7162 3.1)
    reference = command.reference.name
    if [pt.name for pt in command.patterns] == [""] and not command.extended:
        # RFC 9051 6.3.9: the hierarchy delimiter and the root of the reference.
        root = reference.split(SEPARATOR, 1)[0] + SEPARATOR if SEPARATOR in reference else ""
        session.untagged(b'LIST (\\Noselect) "/" ' + session.mailbox_name(root))
        return Done("LIST completed")
    given = [pt for pt in command.patterns if pt.name]
    pattern = NamePatterns(command.reference, given, utf8=session.utf8, max_chars=_pattern_chars(session))
    account = _account_id(session)
    listing = await acl.listing(session)  # its own mailboxes and those shared with it (decision 0073)
    existing, parents, implied = _mailbox_tree(listing.mailboxes)
    subscribed: set[str] = set()
    by_subscription = "SUBSCRIBED" in select
    if by_subscription or "SUBSCRIBED" in returns:
        subscribed = {acl.normalise(name) for name in await session.store.list_subscriptions(account)}
    by_special_use = "SPECIAL-USE" in select

    def selected(name: str) -> bool:
        """RFC 5258 section 3: the selection criteria, ANDed; without any, every name is selected."""
        if by_subscription and name not in subscribed:
            return False
        if by_special_use:
            info = existing.get(name)
            return info is not None and info.special_use is not None
        return True

    # Candidates: every name that exists (or is a parent of one) and, with SUBSCRIBED, every subscribed one.
    names = existing.keys() | implied | (subscribed if by_subscription else set())
    recursive = "RECURSIVEMATCH" in select and by_subscription
    listed: dict[str, bool] = {}
    for count, name in enumerate(names, 1):
        if count % LIST_BATCH == 0:
            await asyncio.sleep(0)  # let other sessions run (see LIST_BATCH)
        if not selected(name):
            continue
        if pattern.matches(name):
            listed.setdefault(name, False)
        elif recursive:
            # RFC 5258 section 3.5: the nearest matching parent of a selected name that the pattern does not
            # match is listed too (whatever its own subscription), with CHILDINFO ("SUBSCRIBED").
            ancestor = pattern.deepest_ancestor(name)
            if ancestor is not None:
                listed[ancestor] = True
    for name in sorted(listed, key=lambda n: (n != "INBOX", n)):
        info = existing.get(name)
        attributes = _attributes(name, existing, parents, subscribed)
        line = f"LIST ({' '.join(attributes)}) ".encode() + b'"/" ' + session.mailbox_name(name)
        if listed[name]:
            line += b' ("CHILDINFO" ("SUBSCRIBED"))'
        session.untagged(line)
        rights = listing.rights.get(name, "")
        if status_items is not None and info is not None and selected(name) and "r" in rights:
            # RFC 5819 / RFC 9051 6.3.9.2: right after its LIST response, only for a name that was selected
            # (not for a parent listed only for CHILDINFO), and only with "r" (RFC 4314 section 4: STATUS)
            await send_status(session, info.id, name, status_items)
        if "MYRIGHTS" in returns and info is not None and selected(name):
            session.untagged(acl.myrights_response(session, name, rights))  # RFC 8440 3: each mailbox listed
    return Done("LIST completed")


async def lsub(session: SessionState, command: p.Lsub) -> Done:
    pattern = NamePatterns(
        command.reference, [command.pattern], utf8=session.utf8, max_chars=_pattern_chars(session)
    )
    account = _account_id(session)
    subscribed = await session.store.list_subscriptions(account)
    existing = {m.name for m in (await acl.listing(session)).mailboxes}
    listed: dict[str, str] = {}
    for count, name in enumerate(subscribed, 1):
        if count % LIST_BATCH == 0:
            await asyncio.sleep(0)  # let other sessions run (see LIST_BATCH)
        if pattern.matches(name):
            listed[name] = "" if name in existing else "\\Noselect"
            continue
        # RFC 3501 6.3.9: "%" that matches a parent of a subscribed name lists the parent, as \Noselect
        ancestor = pattern.deepest_ancestor(name)
        if ancestor is not None:
            listed.setdefault(ancestor, "\\Noselect")
    for name in sorted(listed, key=lambda n: (n != "INBOX", n)):
        session.untagged(f"LSUB ({listed[name]}) ".encode() + b'"/" ' + session.mailbox_name(name))
    return Done("LSUB completed")


# ------------------------------------------------------------------------------------------- STATUS


def _check_status_items(items: tuple[str, ...]) -> None:
    """Every STATUS item the parser knows is supported (the parser refuses the others)."""


async def status(session: SessionState, command: p.Status) -> Done:
    _check_status_items(command.items)
    if "HIGHESTMODSEQ" in command.items:
        session.enable_condstore()  # RFC 7162 3.1: a CONDSTORE enabling command
    name = _existing(command.mailbox)
    target = await acl.mailbox(session, name, "r")  # RFC 4314 section 4: STATUS needs "r"
    await send_status(session, target.info.id, target.name, command.items)
    return Done("STATUS completed")


async def send_status(session: SessionState, mailbox_id: int, name: str, items: tuple[str, ...]) -> None:
    """`* STATUS name (item value ...)` of a mailbox from the store's counts now, the items in the order given
    (RFC 9051 6.3.11, 7.3.1): the one place the STATUS response is made, for STATUS, LIST's RETURN (STATUS)
    (RFC 5819) and NOTIFY's STATUS (RFC 5465 5.1-5.3). `name` is the client's name for the mailbox. NotFound
    when the mailbox is gone."""
    state = await session.store.mailbox_status(mailbox_id)
    deleted = deleted_octets = 0
    if "DELETED" in items or "DELETED-STORAGE" in items:
        snapshot = await session.store.snapshot(mailbox_id)
        for index, flags in enumerate(snapshot.flags):
            if "\\Deleted" in flags:
                deleted += 1
                deleted_octets += snapshot.sizes[index]
    values: dict[str, int] = {
        "MESSAGES": state.mailbox.messages,
        "RECENT": state.recent,
        "UIDNEXT": state.mailbox.uidnext,
        "UIDVALIDITY": state.mailbox.uidvalidity,
        "UNSEEN": state.unseen,
        "DELETED": deleted,
        "DELETED-STORAGE": deleted_octets // 1024,  # RFC 9208 4.2: what an EXPUNGE would free, in KiB
        "SIZE": state.mailbox.size,
        "APPENDLIMIT": session.settings.append_limit,
        "HIGHESTMODSEQ": max(state.highest_modseq, 1),  # RFC 7162 3.1.7: 0 only without persistent MODSEQs
    }
    if session.rev2:
        values.pop("RECENT")
    texts = {item: str(value) for item, value in values.items()}
    texts["MAILBOXID"] = f"({mailbox_objectid(state.mailbox)})"  # RFC 8474 4.2
    text = " ".join(f"{item} {texts[item]}" for item in items if item in texts)
    session.untagged(b"STATUS " + session.mailbox_name(name) + f" ({text})".encode())


# ------------------------------------------------------------------------------------------- QUOTA

#: The one quota root of an account (RFC 9208 3.2): every mailbox of the account is under it.
QUOTA_ROOT = ""


async def _quota_line(session: SessionState) -> bytes | None:
    """`QUOTA "" (STORAGE used limit)` in KiB (RFC 9208 5.1), None for an account without a quota."""
    account = _account_id(session)
    use = (await session.store.quota_usage([account])).get(account)
    if use is None:
        return None
    return b'QUOTA "" (STORAGE %d %d)' % (use.used // 1024, use.quota // 1024)


async def getquotaroot(session: SessionState, command: p.GetQuotaRoot) -> Done:
    """RFC 9208 4.1.2: the roots of the mailbox (the account's, when it has a quota) and their QUOTA."""
    name = _existing(command.mailbox)
    target = acl.require_any(await acl.find(session, name))  # as MYRIGHTS: one of "l r i k x a" (RFC 4314 6)
    # another account's mailbox is under its owner's quota, which is not shown to others (decision 0073)
    line = await _quota_line(session) if target.own else None
    session.untagged(b"QUOTAROOT " + session.mailbox_name(name) + (b' ""' if line is not None else b""))
    if line is not None:
        session.untagged(line)
    return Done("GETQUOTAROOT completed")


async def getquota(session: SessionState, command: p.GetQuota) -> Done:
    line = await _quota_line(session) if command.root == QUOTA_ROOT else None
    if line is None:
        raise no("No such quota root", "NONEXISTENT")
    session.untagged(line)
    return Done("GETQUOTA completed")


async def setquota(session: SessionState, command: p.SetQuota) -> Done:
    # QUOTASET is not offered (RFC 9208 4.1.3): an administrator sets quotas (postoffice account quota, the
    # admin pages), never the user
    raise no("Quotas are set by the administrator", "NOPERM")


Handler = Callable[[SessionState, Any], Awaitable[Done]]

HANDLERS: dict[type[p.Command], Handler] = {
    p.Select: select,
    p.Examine: select,
    p.Create: create,
    p.Delete: delete,
    p.Rename: rename,
    p.Subscribe: subscribe,
    p.Unsubscribe: subscribe,
    p.List: list_mailboxes,
    p.Lsub: lsub,
    p.Status: status,
    p.GetQuota: getquota,
    p.GetQuotaRoot: getquotaroot,
    p.SetQuota: setquota,
}
