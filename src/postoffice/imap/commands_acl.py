"""IMAP ACL commands (RFC 4314 section 3): SETACL, DELETEACL, GETACL, LISTRIGHTS, MYRIGHTS, in the
authenticated and selected states; docs/decisions/0073.

What it implements
- SETACL (3.1): "+rights" adds, "-rights" removes, rights alone replace, in one store transaction; the rights
  are checked first (an unknown right is BAD, 3.1; "c" and "d" stand for their members, 2.1.1); an entry
  left without rights is removed. DELETEACL (3.2) removes an entry; one that is not there is no error.
- GETACL (3.3): one ACL response, the owner first with every right (it has them, always), then the entries
  as the store keeps them (canonical addresses, "anyone", "-" for negative ones).
- LISTRIGHTS (3.4, 3.7): the identifier as the client wrote it; the owner gets every right as required and
  none optional, any other identifier of the domain none required and each right optional on its own, "c"
  and "d" listed too (2.1.1), as the RFC's example; an address of another domain can be granted nothing,
  nor can "authenticated" and "anonymous" (other servers' special identifiers, `FOREIGN_IDENTIFIERS`).
- No answer tells whether an address is an account (docs/decisions/0076): SETACL takes any address of the
  owner's domain (RFC 4314 section 2 leaves identifiers to the server), kept as any entry and granting
  nothing until an account has it; another domain's address, and a special identifier, is NO [CANNOT]
  whatever accounts exist; a new entry beyond the store's ACL_MAX_ENTRIES per mailbox is NO [LIMIT].
- MYRIGHTS (3.5, 3.8): the session's rights, with "c" and "d" (`acl.rights_text`).
- Rights needed (section 4): SETACL, DELETEACL, GETACL, LISTRIGHTS need "a"; MYRIGHTS any of "l r i k x a".
  The owner is never an entry: SETACL or DELETEACL of the owner is NO [CANNOT] (its rights cannot change).
  Identifiers are prepared by `acl.prepare_identifier` (SASLprep; BAD when it fails, section 3).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from postoffice.imap import acl, wire
from postoffice.imap import parser as p
from postoffice.imap.state import Done, SessionState, no
from postoffice.store import ACL_ANYONE, LimitExceeded, NotFound

#: SETACL's modes (3.1) as the store names them.
_MODES = {"": "replace", "+": "add", "-": "remove"}
#: Identifiers other servers give a meaning this one does not have (any logged-in user, a client that is not
#: logged in: Dovecot, Cyrus): never taken for a local part of the owner's domain (decision 0076).
FOREIGN_IDENTIFIERS = frozenset({"authenticated", "anonymous"})


async def _target(session: SessionState, mailbox: p.MailboxName, need: str) -> acl.Target:
    if not mailbox.valid:
        raise no("Mailbox does not exist (the name is not valid modified UTF-7)", "NONEXISTENT")
    return await acl.mailbox(session, mailbox.name, need)


def _identifier(session: SessionState, target: acl.Target, identifier: str) -> str:
    """The prepared identifier (BAD when it cannot be); NO [CANNOT] for the owner, whose rights are fixed."""
    prepared = acl.prepare_identifier(identifier, session.logged_in_account.domain)
    if prepared.lstrip("-") == target.owner:
        raise no("The owner of a mailbox has every right on it, always", "CANNOT")
    return prepared


def _foreign(identifier: str) -> bool:
    return identifier.lstrip("-").lower() in FOREIGN_IDENTIFIERS


def _not_grantable() -> Exception:
    """The one answer for an identifier that can have no rights, whatever accounts exist (decision 0076)."""
    return no("Rights are given only to anyone and to addresses of the mailbox owner's domain", "CANNOT")


async def setacl(session: SessionState, command: p.SetAcl) -> Done:
    rights = acl.parse_rights(command.rights)  # BAD for an unknown right, before anything else (3.1)
    target = await _target(session, command.mailbox, "a")
    identifier = _identifier(session, target, command.identifier)
    if _foreign(command.identifier):
        raise _not_grantable()
    try:
        await session.store.set_acl(target.info.id, identifier, rights, _MODES[command.mode])
    except NotFound:  # another domain's address: refused before any account is looked up
        raise _not_grantable() from None
    except LimitExceeded as exc:
        raise no(f"No more entries: {exc}", "LIMIT") from None
    return Done("SETACL completed")


async def deleteacl(session: SessionState, command: p.DeleteAcl) -> Done:
    target = await _target(session, command.mailbox, "a")
    identifier = _identifier(session, target, command.identifier)
    try:
        await session.store.delete_acl(target.info.id, identifier)
    except NotFound:
        pass  # another domain's address: it has no entry to delete
    return Done("DELETEACL completed")


async def getacl(session: SessionState, command: p.GetAcl) -> Done:
    target = await _target(session, command.mailbox, "a")
    entries = await session.store.get_acl(target.info.id)
    utf8 = session.utf8
    parts = [wire.astring(target.owner, utf8=utf8), acl.rights_text(acl.ALL_RIGHTS).encode()]
    for entry in entries:
        parts += [wire.astring(entry.identifier, utf8=utf8), wire.astring(acl.rights_text(entry.rights))]
    session.untagged(b"ACL " + session.mailbox_name(target.name) + b" " + b" ".join(parts))
    return Done("GETACL completed")


async def listrights(session: SessionState, command: p.ListRights) -> Done:
    target = await _target(session, command.mailbox, "a")
    prepared = acl.prepare_identifier(command.identifier, session.logged_in_account.domain)
    name = prepared.lstrip("-")
    head = session.mailbox_name(target.name) + b" " + wire.astring(command.identifier, utf8=session.utf8)
    if name == target.owner:
        rights = [acl.rights_text(acl.ALL_RIGHTS).encode()]  # required, all of them; nothing optional
    elif _foreign(command.identifier):
        rights = [b'""']  # as SETACL refuses it
    elif name == ACL_ANYONE or name.rpartition("@")[2] == target.owner.rpartition("@")[2]:
        optional = [right.encode() for right in acl.rights_text(acl.ALL_RIGHTS)]
        rights = [b'""', *optional]
    else:
        rights = [b'""']  # another domain: nothing can be granted
    session.untagged(b"LISTRIGHTS " + head + b" " + b" ".join(rights))
    return Done("LISTRIGHTS completed")


async def myrights(session: SessionState, command: p.MyRights) -> Done:
    target = acl.require_any(await _target(session, command.mailbox, ""))  # section 4: "Any" of l r i k x a
    session.untagged(acl.myrights_response(session, target.name, target.rights))
    return Done("MYRIGHTS completed")


Handler = Callable[[SessionState, Any], Awaitable[Done]]

HANDLERS: dict[type[p.Command], Handler] = {
    p.SetAcl: setacl,
    p.DeleteAcl: deleteacl,
    p.GetAcl: getacl,
    p.ListRights: listrights,
    p.MyRights: myrights,
}
