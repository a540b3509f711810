"""IMAP access control (RFC 4314) and the shared namespace: the one place where a mailbox name becomes a
mailbox, the session's own or another account's that is shared with it, and where the rights a command needs
are checked (docs/decisions/0073).

What it implements
- Rights (RFC 4314 section 2.1): `l r s w i p k x t e a`, kept in that order; the obsolete `c` and `d`
  (2.1.1) stand for `k x` and `t e` when a client sends them (`parse_rights`), and are added to every
  MYRIGHTS, ACL and LISTRIGHTS answer when any of their members is there (`rights_text`). The owner of a
  mailbox has every right on it; other accounts of its domain have what its access control list gives them
  (`MailStore.my_rights`).
- Identifiers (section 3): prepared with SASLprep (RFC 4013, as a query: the identifier is only matched
  against existing accounts), then "anyone" (in any case) or an address in the canonical form LOGIN uses; a
  bare local part is an address of the owner's domain (`prepare_identifier`). Failing SASLprep, or empty:
  BAD.
- The shared namespace (RFC 2342 "other users"): another account's mailbox `Work` is
  `Shared/<local part>/Work` (`SHARED_PREFIX`; the owner is in the user's own domain). `Shared` and every
  name below it belong to the namespace: no personal mailbox is created or renamed there (NO [CANNOT]).
- Resolution (`find`, `mailbox`, `listing`): a name resolves to a `Target`, the mailbox with the client's name
  for it and the session's rights on it. A mailbox of another account that the user has no right on is not
  found; one the command needs a right for that the user lacks is NO [NOPERM] when the user may see it (`l`),
  else answered as if it did not exist (section 6: "the same error that would be used if the mailbox did not
  exist"): NO [NONEXISTENT], or [TRYCREATE] where that is the answer for a missing target.
- What each command needs (section 4, `require`): the command modules name the right where they run.
  SELECT is READ-ONLY without any of `i e s w t` (5.2, `writable`). Flags (section 4, STORE): `s` for
  \\Seen, `t` for \\Deleted, `w` for every other flag and keyword (`settable`, `allowed_flags`,
  `state.permitted_flags`).
- The rights on another account's selected mailbox are read at SELECT and again only after the store
  published a change of its access control list (an "acl" event, before the writer's SETACL is answered), so
  an ACL change applies to the next command of every session and a command reads the rights at most once
  (`selected_rights`, docs/decisions/0076; no I/O for the session's own mailbox). They are checked before
  every command and every update of the mailbox (`SessionState.shared_access`, 5.1.1): BYE once "r" is gone,
  PERMANENTFLAGS again when the rights changed.
- APPENDUID and COPYUID are not given without "r" on the target (RFC 4315 sections 3 and 5).
"""

from __future__ import annotations

import dataclasses
import stringprep
import unicodedata
from dataclasses import dataclass

from postoffice.directory.address import normalize_address
from postoffice.imap import wire
from postoffice.imap.state import FLAG_RIGHTS, SessionState, bad, may_set, no
from postoffice.store import ACL_ANYONE, ACL_RIGHTS, MailboxInfo

#: Where other accounts' mailboxes are: `Shared/<local part>/<mailbox>` (NAMESPACE's "other users" prefix).
SHARED_ROOT = "Shared"
SHARED_PREFIX = SHARED_ROOT + "/"
SEPARATOR = "/"
#: Every right (RFC 4314 2.1), what an owner has.
ALL_RIGHTS = ACL_RIGHTS
#: The obsolete rights of RFC 2086 (RFC 4314 2.1.1) and the rights they stand for: "c" create (as mutt reads
#: it, with "x"), "d" delete messages.
OBSOLETE = {"c": "kx", "d": "te"}
#: RFC 4314 5.2: with none of these a SELECT is READ-ONLY (\\Seen is shared, so "s" changes shared state).
WRITE_RIGHTS = "iewst"
#: RFC 4314 section 4 "Any": MYRIGHTS needs one of these.
ANY_RIGHTS = "lrikxa"
#: The RIGHTS= capability (2.1): the rights beyond RFC 2086's.
RIGHTS_CAPABILITY = "RIGHTS=texk"


# ------------------------------------------------------------------------------------------------- rights


def parse_rights(letters: str) -> str:
    """Rights a client sent (SETACL), as kept: "c" and "d" stand for their members (2.1.1); BAD for a right
    that is not supported (3.1: an unrecognized right MUST be BAD, never ignored)."""
    wanted: set[str] = set()
    for letter in letters:
        if letter in OBSOLETE:
            wanted.update(OBSOLETE[letter])
        elif letter in ALL_RIGHTS:
            wanted.add(letter)
        else:
            raise bad(f"The {letter} right is not supported")
    return "".join(right for right in ALL_RIGHTS if right in wanted)


def rights_text(rights: str) -> str:
    """Rights as MYRIGHTS, ACL and LISTRIGHTS give them: with "c" and "d" after the others when any of their
    members is there (2.1.1: "the server MUST also include" them), "a" last: "lrswipkxtecda"."""
    text = "".join(right for right in ALL_RIGHTS[:-1] if right in rights)
    text += "".join(name for name, members in OBSOLETE.items() if set(members) & set(rights))
    return text + ("a" if "a" in rights else "")


def writable(rights: str) -> bool:
    """SELECT is READ-WRITE (RFC 4314 5.2)."""
    return bool(set(rights) & set(WRITE_RIGHTS))


def settable(rights: str) -> list[str] | None:
    """The flags the rights let a user set, for the store (`\\*`: every keyword); None when they are all."""
    if all(right in rights for right in "stw"):
        return None
    flags = [flag for flag, right in FLAG_RIGHTS.items() if right in rights]
    if "w" in rights:
        flags += ["\\Answered", "\\Flagged", "\\Draft", "\\*"]
    return flags


def store_settable(flags: list[str], replace: bool, rights: str) -> list[str] | None:
    """What STORE passes the store as `settable` (None: every flag). NO [NOPERM] only when the user may change
    none of the flags it names (a replace names them all): a STORE "SHOULD NOT fail if the user has rights to
    modify at least one flag specified" (RFC 4314 section 4)."""
    changeable = settable(rights)
    if changeable is not None and (not changeable if replace else flags and not allowed_flags(flags, rights)):
        raise no("Permission denied: the s, w or t right is needed for these flags", "NOPERM")
    return changeable


def allowed_flags(flags: list[str], rights: str) -> list[str]:
    """The flags of `flags` the rights let a user set (APPEND and COPY drop the others, section 4)."""
    return [flag for flag in flags if may_set(flag, rights)]


# ------------------------------------------------------------------------------------------ identifiers


def saslprep(text: str) -> str | None:
    """RFC 4013 SASLprep of a query string (unassigned code points allowed): None when it is prohibited."""
    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c for c in text if not stringprep.in_table_b1(c)
    )  # 2.1: non-ASCII spaces to SPACE, "commonly mapped to nothing" removed
    prepared = unicodedata.normalize("NFKC", mapped)  # 2.2
    prohibited = (
        stringprep.in_table_c12,
        stringprep.in_table_c21_c22,
        stringprep.in_table_c3,
        stringprep.in_table_c4,
        stringprep.in_table_c5,
        stringprep.in_table_c6,
        stringprep.in_table_c7,
        stringprep.in_table_c8,
        stringprep.in_table_c9,
    )
    if any(test(c) for c in prepared for test in prohibited):  # 2.3
        return None
    if any(stringprep.in_table_d1(c) for c in prepared):  # 2.4: RFC 3454 section 6
        if any(stringprep.in_table_d2(c) for c in prepared):
            return None
        if not (stringprep.in_table_d1(prepared[0]) and stringprep.in_table_d1(prepared[-1])):
            return None
    return prepared


def prepare_identifier(identifier: str, domain: str) -> str:
    """An identifier as the store names it: "anyone", or a canonical address (a bare local part is one of
    `domain`), "-" in front for negative rights. BAD when SASLprep refuses it or it is empty (section 3)."""
    prepared = saslprep(identifier)
    negative = prepared is not None and prepared.startswith("-")
    name = prepared[1:] if prepared is not None and negative else prepared
    if not name:
        raise bad("Invalid identifier (RFC 4314 section 3: SASLprep)")
    if name.lower() == ACL_ANYONE:
        name = ACL_ANYONE
    else:
        name = normalize_address(name if "@" in name else f"{name}@{domain}")
    return ("-" if negative else "") + name


# --------------------------------------------------------------------------------------- the namespace


def normalise(name: str) -> str:
    """INBOX in any case as the first level, no trailing separator: how every IMAP command reads a name."""
    name = name.rstrip(SEPARATOR) if name.endswith(SEPARATOR) else name
    head, sep, rest = name.partition(SEPARATOR)
    return "INBOX" + sep + rest if head.upper() == "INBOX" else name


def in_namespace(name: str) -> bool:
    """`name` is the shared namespace's (its root or below), never a personal mailbox."""
    return name == SHARED_ROOT or name.startswith(SHARED_PREFIX)


def split_shared(name: str) -> tuple[str, str] | None:
    """`Shared/<local part>/<mailbox>` -> (local part, mailbox name as its owner has it), else None."""
    if not name.startswith(SHARED_PREFIX):
        return None
    local, sep, rest = name[len(SHARED_PREFIX) :].partition(SEPARATOR)
    if not local or not sep or not rest:
        return None
    return local, normalise(rest)


def shared_name(owner: str, name: str) -> str | None:
    """The client's name for the mailbox `name` of `owner` (an address); None when the local part has "/"."""
    local = owner.rpartition("@")[0]
    if not local or SEPARATOR in local:
        return None
    return SHARED_PREFIX + local + SEPARATOR + name


@dataclass(frozen=True)
class Target:
    """A mailbox as a command sees it: the store's `info` (its name is its owner's), the name the client
    knows it by, the session's rights on it, and its owner's address."""

    info: MailboxInfo
    name: str
    rights: str
    owner: str
    own: bool  # the session's own mailbox (it has every right on it)

    @property
    def shown(self) -> MailboxInfo:
        """`info` under the client's name; without the special use of another account's mailbox (a client
        must not take someone else's \\Sent for its own)."""
        if self.own:
            return self.info
        return dataclasses.replace(self.info, name=self.name, special_use=None)


async def find(session: SessionState, name: str) -> Target | None:
    """The mailbox the client names `name`, if there is one the session has any right on."""
    account = session.logged_in_account
    name = normalise(name)
    if not in_namespace(name):
        info = await session.store.get_mailbox(account.id, name)
        return None if info is None else Target(info, info.name, ALL_RIGHTS, account.address, True)
    parts = split_shared(name)
    if parts is None:
        return None
    local, rest = parts
    owner = f"{local}@{account.domain}"
    for shared in await session.store.shared_mailboxes(account.id, owner=owner, name=rest):
        if shared.owner.rpartition("@")[0] == local:  # the owner's exact name, not another spelling of it
            name = SHARED_PREFIX + local + SEPARATOR + shared.mailbox.name
            return Target(shared.mailbox, name, shared.rights, shared.owner, False)
    return None


def _needed(need: str) -> str:
    if len(need) == 1:
        return f"the {need} right is needed"
    return f"the {', '.join(need[:-1])} and {need[-1]} rights are needed"


def require(target: Target | None, need: str, missing: str = "NONEXISTENT") -> Target:
    """`target` when the session has every right of `need` on it; else NO [NOPERM] when the user may see it,
    or the answer for a mailbox that does not exist (RFC 4314 section 6: no existence leaks)."""
    if target is not None and all(right in target.rights for right in need):
        return target
    if target is not None and "l" in target.rights:
        raise no(f"Permission denied: {_needed(need)}", "NOPERM")
    raise no("Mailbox does not exist", missing)


def require_any(target: Target | None) -> Target:
    """`target` when the session has one of "l r i k x a" on it (section 4 "Any": MYRIGHTS, and GETQUOTAROOT
    here), else the answer for a mailbox that does not exist (section 6: no existence leaks)."""
    if target is None or not set(target.rights) & set(ANY_RIGHTS):
        raise no("Mailbox does not exist", "NONEXISTENT")
    return target


async def mailbox(session: SessionState, name: str, need: str, missing: str = "NONEXISTENT") -> Target:
    """`find` and `require` in one: the mailbox a command acts on, with the rights it needs."""
    return require(await find(session, name), need, missing)


@dataclass(frozen=True)
class Listing:
    """What LIST and LSUB show: the mailboxes under the client's names (the session's own, then those shared
    with it that it may look up, `l`), and the session's rights on each, by name."""

    mailboxes: list[MailboxInfo]
    rights: dict[str, str]


async def listing(session: SessionState) -> Listing:
    account = session.logged_in_account
    own = [m for m in await session.store.list_mailboxes(account.id) if not in_namespace(m.name)]
    rights = {m.name: ALL_RIGHTS for m in own}
    shown = list(own)
    for shared in await session.store.shared_mailboxes(account.id):
        name = shared_name(shared.owner, shared.mailbox.name)
        if name is None or "l" not in shared.rights:  # RFC 4314 section 4: LIST needs "l"
            continue
        shown.append(dataclasses.replace(shared.mailbox, name=name, special_use=None))
        rights[name] = shared.rights
    return Listing(shown, rights)


async def creatable(session: SessionState, name: str, *, special_use: bool = False) -> tuple[int, str]:
    """Where CREATE (or RENAME's new name) puts the mailbox `name`: (owner account id, the name in that
    account). A personal name outside the namespace is the session's own; in another account it needs `k` on
    the nearest existing parent (RFC 4314 section 4; no top-level mailbox is made there, and no special use
    is given to another account's mailbox). NO [CANNOT] for the namespace's own names, NO [NOPERM] else."""
    account = session.logged_in_account
    name = normalise(name)
    if not in_namespace(name):
        return account.id, name
    parts = split_shared(name)
    if parts is None:
        raise no(f"{SHARED_ROOT} and the names of its accounts are the shared namespace's", "CANNOT")
    if special_use:
        raise no("Special-use attributes are not given to another account's mailboxes", "CANNOT")
    local, rest = parts
    shared = {
        s.mailbox.name: s
        for s in await session.store.shared_mailboxes(account.id, owner=f"{local}@{account.domain}")
        if s.owner.rpartition("@")[0] == local
    }
    if shared:
        owner_id = next(iter(shared.values())).mailbox.account_id
        existing = {m.name for m in await session.store.list_mailboxes(owner_id)}
        components = rest.split(SEPARATOR)
        for depth in range(len(components) - 1, 0, -1):
            parent = SEPARATOR.join(components[:depth])
            if parent in existing:
                if parent in shared and "k" in shared[parent].rights:
                    return owner_id, rest
                break
    raise no("Permission denied: the k right on the parent mailbox is needed", "NOPERM")


async def renamable(session: SessionState, old: str, new: str) -> tuple[int, str, str]:
    """RENAME's (account, old name, new name) in that account: `x` on the mailbox and what CREATE needs for
    the new name (section 4), both in one account (NO [CANNOT] across accounts)."""
    target = require(await find(session, old), "x")
    owner, name = await creatable(session, new)
    if owner != target.info.account_id:
        raise no("A mailbox cannot be renamed into another account", "CANNOT")
    return owner, target.info.name, name


def myrights_response(session: SessionState, name: str, rights: str) -> bytes:
    """`MYRIGHTS <mailbox> <rights>` (RFC 4314 3.8; RFC 8440's LIST RETURN (MYRIGHTS) too)."""
    return b"MYRIGHTS " + session.mailbox_name(name) + b" " + wire.astring(rights_text(rights))


async def selected_rights(session: SessionState) -> str:
    """The session's rights on the selected mailbox now: all of them on its own, else those the session read,
    read again after a change of the mailbox's access control list (`SessionState.selected_rights`)."""
    if session.selected_owner is None:
        return ALL_RIGHTS
    return await session.selected_rights()


async def require_selected(session: SessionState, need: str) -> str:
    """The selected mailbox's rights, NO [NOPERM] unless they include `need` (the user has selected it, so
    its existence is no secret)."""
    rights = await selected_rights(session)
    if not all(right in rights for right in need):
        raise no(f"Permission denied: {_needed(need)}", "NOPERM")
    return rights


async def rights_on(session: SessionState, info: MailboxInfo) -> str:
    """The session's rights on a mailbox it found before (APPEND reads them again when the message is in), by
    its id: also for one of the session's own, whose id may have gone to another account's new mailbox while
    the message came in (SQLite gives a deleted mailbox's id again). "" when there is no such mailbox."""
    return (await session.store.my_rights(session.logged_in_account.id, [info.id])).get(info.id, "")


async def append_target(session: SessionState, name: str, *, replacing: bool) -> MailboxInfo:
    """The mailbox APPEND (or REPLACE) stores into: `i` on it (section 4), and for REPLACE `t` and `e` on the
    selected mailbox, whose message it expunges (RFC 8508's append and expunge, with RFC 4314's rights for
    both). A missing or invisible mailbox is NO [TRYCREATE] (RFC 9051 6.3.12)."""
    target = await mailbox(session, name, "i", "TRYCREATE")
    if replacing:
        await require_selected(session, "te")
    return target.info
