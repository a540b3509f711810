"""IMAP access control lists in the SQLite store (RFC 4314; docs/decisions/0073): which accounts of a mailbox
owner's domain may do what with the mailbox.

Table `acl` (schema 24): one row per (mailbox_id, grantee_id, negative) with the rights as letters in
ACL_RIGHTS order; grantee_id 0 is "anyone" (every account of the owner's domain), negative 1 an entry whose
rights are taken away (RFC 4314 section 2: "-identifier"). The owner has every right on its own mailboxes and
never has a row.

Implementation notes
- An account's rights on another account's mailbox: the rights of its entry and of "anyone", without those of
  the negative entries for it and for "-anyone" (`combine`). Only accounts of the owner's domain have any:
  identifiers are resolved against that domain, and `my_rights` gives "" across domains.
- An address of the owner's domain that is no account is taken all the same (docs/decisions/0076: the answer
  must not tell which accounts exist): its entry is kept by address in table `acl_names` (schema 25), grants
  nothing, is shown by `get_acl` as any other, and becomes an `acl` row in the transaction that gives an
  account the address (`claim_named_entries`). A mailbox has at most ACL_MAX_ENTRIES entries, of both kinds.
- `set_acl` reads the entry and writes it back in one request of the writer thread, so "+" and "-"
  modifications (SETACL's) of concurrent sessions never lose each other's rights.
- Rows are keyed by mailbox id: RENAME moves them with the mailbox and its inferiors without a write. DELETE
  of the mailbox removes its rows (`MailboxesMixin.delete_mailbox`), so does removing the account, owner or
  grantee (`DirectoryMixin.remove_account`): an address given to a new account later inherits no rights. A
  new mailbox copies its parent's rows in the transaction that creates it (`copy_parent_acl`, RFC 4314
  section 4: CREATE SHOULD inherit the parent's ACL).
- A change of a mailbox's entries publishes an "acl" ChangeEvent to its owner's subscribers (after the
  commit, as every change): the sessions that have it selected read their rights again (decision 0076);
  and to the subscribers of each account whose rights it changed (`_acl_events`: the grantee, every other
  account of the domain for "anyone"), whose NOTIFY may watch it (decision 0077).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from postoffice.directory.address import normalize_address
from postoffice.store.api import (
    ACL_ANYONE,
    ACL_MAX_ENTRIES,
    ACL_RIGHTS,
    AclEntry,
    ChangeEvent,
    LimitExceeded,
    NotFound,
    SharedMailbox,
    acl_rights,
)
from postoffice.store.sqlite.base import SqliteBase
from postoffice.store.sqlite.columns import HIERARCHY_SEPARATOR, normalize_mailbox
from postoffice.store.sqlite.rows import MAILBOX_SQL, mailbox_info

#: The grantee id of "anyone" (account ids start at 1).
ANYONE = 0
#: Mailbox ids per IN (...) of one query (SQLite allows 32,766 variables; a bound keeps statements small).
_CHUNK = 500


def combine(entries: Iterable[tuple[int, str]]) -> str:
    """The rights that (negative, rights) entries give: the positive ones without the negative ones."""
    granted: set[str] = set()
    taken: set[str] = set()
    for negative, rights in entries:
        (taken if negative else granted).update(rights)
    return "".join(right for right in ACL_RIGHTS if right in granted and right not in taken)


def copy_parent_acl(conn: sqlite3.Connection, account_id: int, name: str, mailbox_id: int) -> None:
    """A new mailbox `name` of the account starts with the entries of its parent mailbox, if it has one."""
    parent = name.rpartition(HIERARCHY_SEPARATOR)[0]
    if not parent:
        return
    for table, grantee in (("acl", "grantee_id"), ("acl_names", "address")):
        conn.execute(
            f"INSERT OR IGNORE INTO {table} (mailbox_id, {grantee}, negative, rights) "  # noqa: S608 - names
            f"SELECT ?, {grantee}, negative, rights FROM {table} "
            "WHERE mailbox_id = (SELECT id FROM mailboxes WHERE account_id = ? AND name = ?)",
            (mailbox_id, account_id, parent),
        )


def claim_named_entries(conn: sqlite3.Connection, account_id: int, address: str) -> None:
    """The entries kept for `address` (no account had it) become the entries of the account that now has it:
    the rights its owners gave that address (docs/decisions/0076)."""
    conn.execute(
        "INSERT OR IGNORE INTO acl (mailbox_id, grantee_id, negative, rights) "
        "SELECT mailbox_id, ?, negative, rights FROM acl_names WHERE address = ?",
        (account_id, address),
    )
    conn.execute("DELETE FROM acl_names WHERE address = ?", (address,))


def mailbox_acl_changed(conn: sqlite3.Connection, where: str, params: Sequence[object]) -> list[ChangeEvent]:
    """An "acl" ChangeEvent to its owner's subscribers for each mailbox with entries that `where` selects (a
    condition on `acl l` joined with `mailboxes m`): made before those entries change."""
    return [
        ChangeEvent("acl", int(owner), int(mailbox_id))
        for mailbox_id, owner in conn.execute(
            "SELECT DISTINCT m.id, m.account_id FROM acl l JOIN mailboxes m ON m.id = l.mailbox_id "  # noqa: S608
            "WHERE " + where,
            tuple(params),
        )
    ]


def _owner(conn: sqlite3.Connection, mailbox_id: int) -> tuple[int, int]:
    """(owner account id, its domain id) of the mailbox; NotFound when there is no such mailbox."""
    row = conn.execute(
        "SELECT m.account_id, a.domain_id FROM mailboxes m JOIN accounts a ON a.id = m.account_id "
        "WHERE m.id = ?",
        (mailbox_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"no mailbox {mailbox_id}")
    return int(row[0]), int(row[1])


@dataclass(frozen=True)
class _Entry:
    """Where the entry of an identifier on a mailbox is kept: table `acl` by grantee id, or `acl_names` by
    address (an address of the owner's domain that is no account)."""

    owner: int
    grantee: int | None  # None: no account has the address
    address: str
    negative: int

    @property
    def table(self) -> str:
        return "acl" if self.grantee is not None else "acl_names"

    @property
    def column(self) -> str:
        return "grantee_id" if self.grantee is not None else "address"

    def where(self, mailbox_id: int) -> tuple[str, tuple[object, ...]]:
        """The condition that selects the entry in `table`, and its parameters (the key, in column order)."""
        grantee = self.grantee if self.grantee is not None else self.address
        return f"mailbox_id = ? AND {self.column} = ? AND negative = ?", (mailbox_id, grantee, self.negative)


def _grantee(conn: sqlite3.Connection, mailbox_id: int, identifier: str) -> _Entry:
    """The entry of an identifier on the mailbox: "anyone", or an address of the owner's domain, "-" in front
    for a negative entry; whether an account has the address or not (decision 0076). NotFound for an unknown
    mailbox and for any other identifier (whatever accounts exist elsewhere); ValueError for the owner."""
    owner, domain = _owner(conn, mailbox_id)
    negative = identifier.startswith("-")
    name = identifier[1:] if negative else identifier
    if name == ACL_ANYONE:
        return _Entry(owner, ANYONE, ACL_ANYONE, int(negative))
    address = normalize_address(name)
    local, _, domain_name = address.rpartition("@")
    row = conn.execute("SELECT name FROM domains WHERE id = ?", (domain,)).fetchone()
    if "@" not in name or not local or row is None or domain_name != str(row[0]):
        raise NotFound(f"{name!r} is not an address of the domain of mailbox {mailbox_id}")
    row = conn.execute("SELECT id FROM accounts WHERE address = ?", (address,)).fetchone()
    if row is not None and int(row[0]) == owner:
        raise ValueError("the owner of a mailbox has every right on it, always")
    return _Entry(owner, int(row[0]) if row is not None else None, address, int(negative))


def _check_room(conn: sqlite3.Connection, mailbox_id: int) -> None:
    """A new entry of the mailbox: LimitExceeded when it has ACL_MAX_ENTRIES (of both kinds) already."""
    count = conn.execute(
        "SELECT (SELECT count(*) FROM acl WHERE mailbox_id = ?) + "
        "(SELECT count(*) FROM acl_names WHERE mailbox_id = ?)",
        (mailbox_id, mailbox_id),
    ).fetchone()[0]
    if int(count) >= ACL_MAX_ENTRIES:
        raise LimitExceeded(f"a mailbox has at most {ACL_MAX_ENTRIES} access control entries")


def _acl_events(conn: sqlite3.Connection, entry: _Entry, mailbox_id: int) -> list[ChangeEvent]:
    """The "acl" events of a changed entry of an account (or of "anyone"): to the owner's subscribers, and to
    those of every account whose rights it changes (the grantee; for "anyone", every other account of the
    owner's domain), whose NOTIFY may watch the mailbox without following its owner yet (RFC 5465 5.4, 5.9;
    docs/decisions/0077)."""
    events = [ChangeEvent("acl", entry.owner, mailbox_id)]
    if entry.grantee == ANYONE:
        events.extend(
            ChangeEvent("acl", int(account_id), mailbox_id)
            for (account_id,) in conn.execute(
                "SELECT id FROM accounts WHERE id != ? AND domain_id = (SELECT domain_id FROM accounts "
                "WHERE id = ?)",
                (entry.owner, entry.owner),
            )
        )
    elif entry.grantee is not None:
        events.append(ChangeEvent("acl", entry.grantee, mailbox_id))
    return events


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


class AclMixin(SqliteBase):
    async def set_acl(self, mailbox_id: int, identifier: str, rights: str, mode: str = "replace") -> str:
        if mode not in ("replace", "add", "remove"):
            raise ValueError(f"bad ACL mode {mode!r}")
        given = acl_rights(rights)

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> str:
            entry = _grantee(conn, mailbox_id, identifier)
            where, key = entry.where(mailbox_id)
            table = entry.table
            row = conn.execute(f"SELECT rights FROM {table} WHERE {where}", key).fetchone()  # noqa: S608
            before = str(row[0]) if row is not None else ""
            if mode == "add":
                after = acl_rights(before + given)
            elif mode == "remove":
                after = "".join(right for right in before if right not in given)
            else:
                after = given
            if after == before:
                return after
            if not after:
                conn.execute(f"DELETE FROM {table} WHERE {where}", key)  # noqa: S608 - fixed names
            elif row is not None:
                conn.execute(f"UPDATE {table} SET rights = ? WHERE {where}", (after, *key))  # noqa: S608
            else:
                _check_room(conn, mailbox_id)
                conn.execute(
                    f"INSERT INTO {table} (mailbox_id, {entry.column}, negative, rights) "  # noqa: S608 - names
                    "VALUES (?, ?, ?, ?)",
                    (*key, after),
                )
            if entry.grantee is not None:  # the rights of accounts changed: their sessions read them again
                events.extend(_acl_events(conn, entry, mailbox_id))
            return after

        return await self._write(tx)

    async def delete_acl(self, mailbox_id: int, identifier: str) -> bool:
        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> bool:
            entry = _grantee(conn, mailbox_id, identifier)
            where, key = entry.where(mailbox_id)
            cur = conn.execute(f"DELETE FROM {entry.table} WHERE {where}", key)  # noqa: S608 - fixed names
            if cur.rowcount > 0 and entry.grantee is not None:
                events.extend(_acl_events(conn, entry, mailbox_id))
            return cur.rowcount > 0

        return await self._write(tx)

    async def get_acl(self, mailbox_id: int) -> list[AclEntry]:
        def q(conn: sqlite3.Connection) -> list[AclEntry]:
            _owner(conn, mailbox_id)
            rows = conn.execute(
                "SELECT l.grantee_id != 0, coalesce(a.address, ''), l.negative, l.rights FROM acl l "
                "LEFT JOIN accounts a ON a.id = l.grantee_id WHERE l.mailbox_id = ? "
                "UNION ALL SELECT 1, address, negative, rights FROM acl_names WHERE mailbox_id = ?",
                (mailbox_id, mailbox_id),
            ).fetchall()
            return [
                AclEntry(("-" if negative else "") + (str(address) or ACL_ANYONE), str(rights))
                for _, address, negative, rights in sorted(rows, key=lambda r: (r[0], str(r[1]), r[2]))
            ]

        return await self._read(q)

    async def my_rights(self, account_id: int, mailbox_ids: Sequence[int]) -> dict[int, str]:
        wanted = list(dict.fromkeys(mailbox_ids))

        def q(conn: sqlite3.Connection) -> dict[int, str]:
            row = conn.execute("SELECT domain_id FROM accounts WHERE id = ?", (account_id,)).fetchone()
            domain = None if row is None else int(row[0])
            found: dict[int, str] = {}
            for chunk in _chunks(wanted):
                marks = ",".join("?" * len(chunk))
                owners = conn.execute(
                    f"SELECT m.id, m.account_id, a.domain_id FROM mailboxes m "  # noqa: S608 - marks only
                    f"JOIN accounts a ON a.id = m.account_id WHERE m.id IN ({marks})",
                    tuple(chunk),
                ).fetchall()
                entries: dict[int, list[tuple[int, str]]] = {}
                for mailbox_id, negative, rights in conn.execute(
                    f"SELECT mailbox_id, negative, rights FROM acl "  # noqa: S608 - marks only
                    f"WHERE grantee_id IN (?, {ANYONE}) AND mailbox_id IN ({marks})",
                    (account_id, *chunk),
                ):
                    entries.setdefault(int(mailbox_id), []).append((int(negative), str(rights)))
                for mailbox_id, owner, owner_domain in owners:
                    if owner == account_id:
                        found[int(mailbox_id)] = ACL_RIGHTS
                    elif owner_domain == domain:
                        found[int(mailbox_id)] = combine(entries.get(int(mailbox_id), ()))
                    else:
                        found[int(mailbox_id)] = ""
            return found

        return await self._read(q)

    async def shared_mailboxes(
        self, account_id: int, owner: str | None = None, name: str | None = None
    ) -> list[SharedMailbox]:
        where = ""
        params: list[object] = []
        if owner is not None:
            where += " AND o.address = ?"
            params.append(normalize_address(owner))
        if name is not None:
            where += " AND m.name = ?"
            params.append(normalize_mailbox(name))

        def q(conn: sqlite3.Connection) -> list[SharedMailbox]:
            entries: dict[int, list[tuple[int, str]]] = {}
            owners: dict[int, str] = {}
            for mailbox_id, address, negative, rights in conn.execute(
                "SELECT m.id, o.address, l.negative, l.rights FROM acl l "  # noqa: S608 - fixed conditions
                "JOIN mailboxes m ON m.id = l.mailbox_id JOIN accounts o ON o.id = m.account_id "
                "WHERE l.grantee_id IN (?, ?) AND m.account_id != ? "
                "AND o.domain_id = (SELECT domain_id FROM accounts WHERE id = ?)" + where,
                (account_id, ANYONE, account_id, account_id, *params),
            ):
                entries.setdefault(int(mailbox_id), []).append((int(negative), str(rights)))
                owners[int(mailbox_id)] = str(address)
            rights_of = {mailbox_id: combine(found) for mailbox_id, found in entries.items()}
            ids = [mailbox_id for mailbox_id, rights in rights_of.items() if rights]
            shared: list[SharedMailbox] = []
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                for row in conn.execute(MAILBOX_SQL + f" WHERE id IN ({marks})", tuple(chunk)):
                    info = mailbox_info(row)
                    shared.append(SharedMailbox(owners[info.id], info, rights_of[info.id]))
            shared.sort(key=lambda s: (s.owner, s.mailbox.name != "INBOX", s.mailbox.name))
            return shared

        return await self._read(q)
