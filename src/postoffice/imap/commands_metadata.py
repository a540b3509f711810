"""IMAP METADATA (RFC 5464): GETMETADATA and SETMETADATA, on the server (METADATA-SERVER, mailbox name "")
and on mailboxes (METADATA); docs/decisions/0067.

What it implements
- Entries (section 3.2) are /private and /shared names; the parser checks their syntax (BAD otherwise) and
  gives them lower-case: names are case-insensitive, kept and answered lower-case.
- Who sees what (section 3.3): annotations are only on the account's own mailboxes (another account's, in
  the shared namespace, is NO [CANNOT]: decision 0073), so an account's /shared entries are kept with its
  /private ones and seen by that account only; the server entries are the account's too (what one user
  writes on "the server" no other user reads). Private annotations are supported on every mailbox of the
  account, so [METADATA NOPRIVATE] is never the answer.
- Computed entries, read-only (SETMETADATA of one, or below one, is NO [NOPERM]): the server's /shared/admin
  (3.2.1.1), `mailto:postmaster@<the account's domain>` (RFC 5321 4.5.1: every domain takes mail for
  postmaster); a mailbox's /private/specialuse (RFC 6154 section 4), its special-use attribute as LIST
  gives it, or NIL: the attribute is set by CREATE (USE) only, so the entry never disagrees with LIST and
  no value is taken unchecked. /shared/comment, /private/comment, the vendor trees and any other name are
  stored as given.
- GETMETADATA (4.2): the options MAXSIZE and DEPTH 0 / 1 / infinity; each asked entry comes with its value,
  or NIL when it has none, then the entries below it within DEPTH, in name order, each once; values over
  MAXSIZE are left out and the largest of them is told in OK [METADATA LONGENTRIES n] (4.2.1). One METADATA
  response carries them all; values go quoted when short and plain, as literals otherwise, as literal8
  (~{n}) when they hold NUL (section 5: value = nstring / literal8).
- SETMETADATA (4.3): all or nothing (the store's one transaction); NIL removes; a name given twice: the
  last value wins. Beyond the limits: NO [METADATA MAXSIZE n] for a value over MAX_VALUE_SIZE (also when
  the reader refused its literal for the command's length, `protocol`), NO [METADATA TOOMANY] past
  MAX_ENTRIES on the mailbox (or the account's server entries) or past MAX_ACCOUNT_OCTETS for the account.
  No METADATA response follows (4.3: SHOULD NOT).
- A mailbox that does not exist (or whose name is not modified UTF-7) is NO [NONEXISTENT] (3.3: MUST be NO);
  \\Noselect names are parents without a mailbox row and have no annotations (decision 0067).
- Unsolicited METADATA responses (4.4) are not sent after ENABLE METADATA (4.1; ENABLE enables nothing for
  METADATA here), only to a session whose NOTIFY asks for MailboxMetadataChange or ServerMetadataChange
  (RFC 5465 5.6, 5.7: no ENABLE needed; `imap.commands_notify`, decision 0072).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from postoffice.imap import acl, wire
from postoffice.imap import parser as p
from postoffice.imap.state import Done, SessionState, no
from postoffice.store import MetadataLimits, MetadataTooLarge, MetadataTooMany, NotFound
from postoffice.store.api import METADATA_ACCOUNT_OCTETS

#: Largest annotation value, in octets (RFC 5464 4.1: at least 1024). A command, its literals included, has
#: at most `ImapSettings.max_line` (64 KiB) octets: one value this large fits with a mailbox name and an
#: entry name at their own limits (1024 octets each).
MAX_VALUE_SIZE = 60 * 1024
#: Annotations per mailbox, and server annotations per account (RFC 5464 4.1: at least 10).
MAX_ENTRIES = 100
#: Octets of names and values of all of an account's annotations together (RFC 5464 section 7: a user must
#: not use up the server's space).
MAX_ACCOUNT_OCTETS = METADATA_ACCOUNT_OCTETS
LIMITS = MetadataLimits(
    max_value_size=MAX_VALUE_SIZE, max_entries=MAX_ENTRIES, max_account_octets=MAX_ACCOUNT_OCTETS
)

#: The read-only server entry that says how to reach the administrator (RFC 5464 3.2.1.1).
ADMIN = "/shared/admin"
#: The read-only mailbox entry with the mailbox's special-use attribute (RFC 6154 section 4).
SPECIALUSE = "/private/specialuse"


@dataclass(frozen=True)
class _Target:
    """What a METADATA command names: a mailbox (`mailbox_id`) or the server (None), the name to answer
    with, and its computed entries (read-only: not in the store), present or not."""

    mailbox_id: int | None
    name: str
    computed: dict[str, bytes | None]

    def read_only(self, entry: str) -> bool:
        return any(entry == name or entry.startswith(name + "/") for name in self.computed)


async def _target(session: SessionState, mailbox: p.MailboxName) -> _Target:
    account = session.logged_in_account
    if mailbox.raw == "":
        # RFC 5464 6.2.2: a URI
        return _Target(None, "", {ADMIN: f"mailto:postmaster@{account.domain}".encode()})
    if not mailbox.valid:
        raise no("Mailbox does not exist (the name is not valid modified UTF-7)", "NONEXISTENT")
    if acl.in_namespace(mailbox.name):  # another account's mailbox: not supported (decision 0073)
        raise no("Annotations of another account's mailboxes are not supported", "CANNOT")
    info = await session.store.get_mailbox(account.id, mailbox.name)
    if info is None:
        raise no("Mailbox does not exist", "NONEXISTENT")
    special = info.special_use.encode() if info.special_use else None
    return _Target(info.id, info.name, {SPECIALUSE: special})


def _within(name: str, asked: str, depth: int | None) -> bool:
    """`name` is `asked` or below it within `depth` (RFC 5464 4.2.2: 1 is the children, None everything)."""
    if name == asked:
        return True
    if depth == 0 or not name.startswith(asked + "/"):
        return False
    return depth is None or "/" not in name[len(asked) + 1 :]


def _value(value: bytes, utf8: bool) -> bytes:
    """A value as RFC 5464 section 5 writes it: a literal8 when it holds NUL, else a (quoted) string."""
    if b"\x00" in value:
        return wire.literal(value, binary=True)
    return wire.string(value, utf8=utf8)


async def getmetadata(session: SessionState, command: p.GetMetadata) -> Done:
    account = session.logged_in_account
    target = await _target(session, command.mailbox)
    depth = command.depth
    found = await session.store.get_metadata(account.id, target.mailbox_id, command.entries, depth)
    for entry, computed in target.computed.items():
        if computed is not None and any(_within(entry, asked, depth) for asked in command.entries):
            found[entry] = computed
    items: list[bytes] = []
    answered: set[str] = set()
    longest = 0
    for asked in command.entries:
        below = sorted(n for n in found if n != asked and _within(n, asked, depth)) if depth != 0 else []
        for entry in [asked, *below]:
            if entry in answered:
                continue
            answered.add(entry)
            value = found.get(entry)
            if value is None:
                items.append(wire.astring(entry) + b" " + wire.NIL)
            elif command.max_size is not None and len(value) > command.max_size:
                longest = max(longest, len(value))  # RFC 5464 4.2.1: left out, and told of
            else:
                items.append(wire.astring(entry) + b" " + _value(value, session.utf8))
    if items:
        session.untagged(b"METADATA " + session.mailbox_name(target.name) + b" " + wire.fmt_list(items))
    return Done("GETMETADATA completed", f"METADATA LONGENTRIES {longest}" if longest else None)


async def setmetadata(session: SessionState, command: p.SetMetadata) -> Done:
    account = session.logged_in_account
    target = await _target(session, command.mailbox)
    entries: dict[str, bytes | None] = {}
    for entry, value in command.entries:
        if target.read_only(entry):
            raise no(f"{entry} is read-only: the server computes it", "NOPERM")
        if value is not None and len(value) > MAX_VALUE_SIZE:
            raise no(
                f"Annotation values are limited to {MAX_VALUE_SIZE} octets",
                f"METADATA MAXSIZE {MAX_VALUE_SIZE}",
            )
        entries[entry] = value
    try:
        await session.store.set_metadata(account.id, target.mailbox_id, entries, LIMITS)
    except MetadataTooLarge as exc:
        raise no(
            f"Annotation values are limited to {exc.limit} octets", f"METADATA MAXSIZE {exc.limit}"
        ) from None
    except MetadataTooMany as exc:
        raise no(f"Too many annotations: {exc}", "METADATA TOOMANY") from None
    except NotFound:  # deleted meanwhile by another session
        raise no("Mailbox does not exist", "NONEXISTENT") from None
    return Done("SETMETADATA completed")


Handler = Callable[[SessionState, Any], Awaitable[Done]]

HANDLERS: dict[type[p.Command], Handler] = {
    p.GetMetadata: getmetadata,
    p.SetMetadata: setmetadata,
}
