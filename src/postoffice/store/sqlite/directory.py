"""Domains, accounts and aliases in the SQLite store, and recipient resolution from an in-memory snapshot of
them (`postoffice.directory.resolver`).

Cross-process change detection: every directory change, by this process or another (the CLI), replaces the
marker file `<store>.directory` after its commit; a lookup stats the marker and reloads the snapshot when it
changed. So CLI changes apply to the next SMTP transaction, without a signal.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

from postoffice.directory.resolver import AddressLookup, Resolution, normalize_address, resolve
from postoffice.plural import counted
from postoffice.store.api import (
    DEFAULT_MAILBOXES,
    PASSWORD_DERIVED_SETTING,
    Account,
    Alias,
    AlreadyExists,
    ChangeEvent,
    Domain,
    NotFound,
    StoreError,
)
from postoffice.store.sqlite.acl import claim_named_entries, mailbox_acl_changed
from postoffice.store.sqlite.base import SqliteBase, T
from postoffice.store.sqlite.markers import ChangeMarker
from postoffice.store.sqlite.rows import create_mailbox_row, delete_messages


class DirectorySnapshot:
    """Domains, accounts and aliases held in memory, so that resolving a recipient costs no I/O."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        rows = conn.execute("SELECT name, plus_addressing FROM domains ORDER BY id").fetchall()
        self.domains = [str(r[0]) for r in rows]
        self.domain_set = set(self.domains)
        self.without_plus = {str(r[0]) for r in rows if not r[1]}
        self.accounts = {str(r[0]): int(r[1]) for r in conn.execute("SELECT address, id FROM accounts")}
        #: account id -> storage quota in octets, only the accounts that have one (`quota_usage`, 0053)
        self.quotas = {
            int(r[0]): int(r[1]) for r in conn.execute("SELECT id, quota FROM accounts WHERE quota > 0")
        }
        self.aliases = {
            str(r[0]): tuple(json.loads(r[1])) for r in conn.execute("SELECT source, targets FROM aliases")
        }

    def lookup(self, addr: str) -> AddressLookup:
        domain = addr.rpartition("@")[2]
        if domain not in self.domain_set:
            return AddressLookup(domain_served=False)
        return AddressLookup(
            True, self.accounts.get(addr), self.aliases.get(addr), domain not in self.without_plus
        )

    def first_domain(self) -> str | None:
        return self.domains[0] if self.domains else None


class DirectoryMixin(SqliteBase):
    _directory_marker: ChangeMarker
    _directory_key: tuple[int, int] | None
    _directory: DirectorySnapshot | None

    async def add_domain(self, name: str) -> Domain:
        name = normalize_address("@" + name).lstrip("@")
        if not name or "@" in name:
            raise StoreError(f"not a domain name: {name!r}")

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> Domain:
            if conn.execute("SELECT 1 FROM domains WHERE name = ?", (name,)).fetchone():
                raise AlreadyExists(f"domain {name} exists already")
            cur = conn.execute("INSERT INTO domains (name, created) VALUES (?, ?)", (name, time.time()))
            return Domain(int(cur.lastrowid or 0), name)

        return await self._write_directory(tx)

    async def remove_domain(self, name: str) -> None:
        name = normalize_address("@" + name).lstrip("@")

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> None:
            row = conn.execute("SELECT id FROM domains WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotFound(f"no domain {name}")
            users = conn.execute("SELECT count(*) FROM accounts WHERE domain_id = ?", (row[0],)).fetchone()[0]
            aliases = conn.execute("SELECT count(*) FROM aliases WHERE domain_id = ?", (row[0],)).fetchone()[
                0
            ]
            if users or aliases:
                raise StoreError(
                    f"domain {name} still has {counted(users, 'account')} and "
                    f"{counted(aliases, 'alias', 'aliases')}; remove them first"
                )
            conn.execute(
                "DELETE FROM dkim_keys WHERE domain_id = ?", (row[0],)
            )  # its signing keys go with it
            conn.execute("DELETE FROM domains WHERE id = ?", (row[0],))

        await self._write_directory(tx)

    async def list_domains(self) -> list[Domain]:
        def q(conn: sqlite3.Connection) -> list[Domain]:
            rows = conn.execute("SELECT id, name, plus_addressing FROM domains ORDER BY name")
            return [Domain(r[0], r[1], bool(r[2])) for r in rows]

        return await self._read(q)

    async def update_domain(self, name: str, *, plus_addressing: bool | None = None) -> Domain:
        name = normalize_address("@" + name).lstrip("@")

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> Domain:
            if plus_addressing is not None:
                conn.execute(
                    "UPDATE domains SET plus_addressing = ? WHERE name = ?", (int(plus_addressing), name)
                )
            row = conn.execute(
                "SELECT id, name, plus_addressing FROM domains WHERE name = ?", (name,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no domain {name}")
            return Domain(int(row[0]), str(row[1]), bool(row[2]))

        return await self._write_directory(tx)

    @staticmethod
    def _domain_id(conn: sqlite3.Connection, domain: str) -> int:
        row = conn.execute("SELECT id FROM domains WHERE name = ?", (domain,)).fetchone()
        if row is None:
            raise NotFound(
                f"domain {domain} is not served here; add it first (postoffice domain add {domain})"
            )
        return int(row[0])

    async def add_account(self, address: str, password_hash: str, *, admin: bool = False) -> Account:
        address = normalize_address(address)
        local, _, domain = address.rpartition("@")
        if not local or not domain:
            raise StoreError(f"not a full address: {address!r}")

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> Account:
            domain_id = self._domain_id(conn, domain)
            if conn.execute("SELECT 1 FROM accounts WHERE address = ?", (address,)).fetchone():
                raise AlreadyExists(f"account {address} exists already")
            created = time.time()
            cur = conn.execute(
                "INSERT INTO accounts (address, domain_id, password_hash, created, admin) "
                "VALUES (?, ?, ?, ?, ?)",
                (address, domain_id, password_hash, created, int(admin)),
            )
            account_id = int(cur.lastrowid or 0)
            claim_named_entries(conn, account_id, address)  # the rights given to its address (decision 0076)
            for name, special_use in DEFAULT_MAILBOXES:
                create_mailbox_row(conn, account_id, name, special_use)
                conn.execute("INSERT INTO subscriptions (account_id, name) VALUES (?, ?)", (account_id, name))
            # RFC 5321 section 4.5.1: every domain accepts mail for postmaster. The first account of a domain
            # receives it, unless postmaster is an account or an alias already (change it with `alias`).
            postmaster = f"postmaster@{domain}"
            if (
                address != postmaster
                and not conn.execute(
                    "SELECT 1 FROM accounts WHERE address = ? UNION SELECT 1 FROM aliases WHERE source = ?",
                    (postmaster, postmaster),
                ).fetchone()
            ):
                conn.execute(
                    "INSERT INTO aliases (source, domain_id, targets) VALUES (?, ?, ?)",
                    (postmaster, domain_id, json.dumps([address])),
                )
            return Account(account_id, address, domain, password_hash, created, admin=admin)

        return await self._write_directory(tx)

    async def update_account(
        self,
        address: str,
        *,
        admin: bool | None = None,
        disabled: bool | None = None,
        quota: int | None = None,
        send_limit: int | None = None,
    ) -> Account:
        address = normalize_address(address)
        if (quota is not None and quota < 0) or (send_limit is not None and send_limit < 0):
            raise ValueError("a quota or sending limit is not negative")

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> Account:
            changes = (("admin", admin), ("disabled", disabled), ("quota", quota), ("send_limit", send_limit))
            for column, value in changes:
                if value is not None:
                    conn.execute(
                        f"UPDATE accounts SET {column} = ? WHERE address = ?",  # noqa: S608 - constant names
                        (int(value), address),
                    )
            if disabled:  # its web sessions end with it
                conn.execute(
                    "DELETE FROM web_sessions WHERE account_id = (SELECT id FROM accounts WHERE address = ?)",
                    (address,),
                )
            row = conn.execute(self._ACCOUNT_SQL + " WHERE a.address = ?", (address,)).fetchone()
            if row is None:
                raise NotFound(f"no account {address}")
            return self._account(row)

        return await self._write_directory(tx)

    async def set_password(self, address: str, password_hash: str) -> None:
        address = normalize_address(address)

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> None:
            cur = conn.execute(
                "UPDATE accounts SET password_hash = ? WHERE address = ?", (password_hash, address)
            )
            if cur.rowcount == 0:
                raise NotFound(f"no account {address}")
            # secrets derived from the old password go with it (the SCRAM secret, decision 0068)
            conn.execute(
                "DELETE FROM account_settings WHERE key = ? AND account_id = "
                "(SELECT id FROM accounts WHERE address = ?)",
                (PASSWORD_DERIVED_SETTING, address),
            )

        await self._write_directory(tx)

    async def remove_account(self, address: str) -> None:
        address = normalize_address(address)

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> None:
            row = conn.execute("SELECT id FROM accounts WHERE address = ?", (address,)).fetchone()
            if row is None:
                raise NotFound(f"no account {address}")
            account_id = row[0]
            mailbox_ids = [
                r[0] for r in conn.execute("SELECT id FROM mailboxes WHERE account_id = ?", (account_id,))
            ]
            for mailbox_id in mailbox_ids:
                delete_messages(conn, mailbox_id, None, tombstones=False)
                conn.execute("DELETE FROM tombstones WHERE mailbox_id = ?", (mailbox_id,))
            conn.execute("DELETE FROM subscriptions WHERE account_id = ?", (account_id,))
            conn.execute("DELETE FROM web_sessions WHERE account_id = ?", (account_id,))
            conn.execute("DELETE FROM account_settings WHERE account_id = ?", (account_id,))
            conn.execute("DELETE FROM thread_keys WHERE account_id = ?", (account_id,))
            conn.execute("DELETE FROM metadata WHERE account_id = ?", (account_id,))
            conn.execute("DELETE FROM sieve_scripts WHERE account_id = ?", (account_id,))
            conn.execute("DELETE FROM sieve_vacation WHERE account_id = ?", (account_id,))
            conn.execute("DELETE FROM sieve_duplicates WHERE account_id = ?", (account_id,))
            # its mailboxes' access control lists, and its rights on others' (decision 0073); the sessions
            # that have one of those mailboxes selected read their rights again (decision 0076)
            changed = mailbox_acl_changed(conn, "l.grantee_id = ? OR m.account_id = ?", (account_id,) * 2)
            events.extend(changed)
            conn.execute(
                "DELETE FROM acl WHERE grantee_id = ? OR mailbox_id IN "
                "(SELECT id FROM mailboxes WHERE account_id = ?)",
                (account_id, account_id),
            )
            conn.execute(
                "DELETE FROM acl_names WHERE mailbox_id IN (SELECT id FROM mailboxes WHERE account_id = ?)",
                (account_id,),
            )
            for table in ("recovery_codes", "app_passwords", "login_events", "identities"):
                conn.execute(f"DELETE FROM {table} WHERE account_id = ?", (account_id,))  # noqa: S608
            conn.execute("DELETE FROM mailboxes WHERE account_id = ?", (account_id,))
            self._recent_claimed.clear()  # the removed mailboxes' claims (their ids are never given again)
            conn.execute("DELETE FROM accounts WHERE id = ?", (account_id,))

        await self._write_directory(tx)

    @staticmethod
    def _account(row: Sequence[Any]) -> Account:
        return Account(
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            bool(row[5]),
            bool(row[6]),
            two_factor=row[7] is not None,
            quota=row[8],
            send_limit=row[9],
        )

    _ACCOUNT_SQL = (
        "SELECT a.id, a.address, d.name, a.password_hash, a.created, a.admin, a.disabled, a.totp_secret, "
        "a.quota, a.send_limit "
        "FROM accounts a JOIN domains d ON d.id = a.domain_id"
    )

    async def get_account(self, address: str) -> Account | None:
        address = normalize_address(address)

        def q(conn: sqlite3.Connection) -> Account | None:
            row = conn.execute(self._ACCOUNT_SQL + " WHERE a.address = ?", (address,)).fetchone()
            return None if row is None else self._account(row)

        return await self._read(q)

    async def get_account_by_id(self, account_id: int) -> Account | None:
        def q(conn: sqlite3.Connection) -> Account | None:
            row = conn.execute(self._ACCOUNT_SQL + " WHERE a.id = ?", (account_id,)).fetchone()
            return None if row is None else self._account(row)

        return await self._read(q)

    async def list_accounts(self, domain: str | None = None) -> list[Account]:
        def q(conn: sqlite3.Connection) -> list[Account]:
            if domain is None:
                rows = conn.execute(self._ACCOUNT_SQL + " ORDER BY a.address")
            else:
                name = normalize_address("@" + domain).lstrip("@")
                rows = conn.execute(self._ACCOUNT_SQL + " WHERE d.name = ? ORDER BY a.address", (name,))
            return [self._account(r) for r in rows]

        return await self._read(q)

    async def add_alias(self, source: str, targets: Sequence[str]) -> Alias:
        source = normalize_address(source)
        _, sep, domain = source.rpartition("@")
        if not sep or not domain:
            raise StoreError(f"an alias source is an address or @domain, not {source!r}")
        clean_targets = tuple(dict.fromkeys(normalize_address(t) for t in targets))
        if not clean_targets:
            raise StoreError("an alias needs at least one target")

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> Alias:
            domain_id = self._domain_id(conn, domain)
            for target in clean_targets:
                t_local, _, t_domain = target.rpartition("@")
                if not t_local or not t_domain:
                    raise StoreError(f"alias target {target!r} is not a full address")
                # a target in a domain not served here is forwarded (docs/decisions/0059)
            if conn.execute("SELECT 1 FROM aliases WHERE source = ?", (source,)).fetchone():
                raise AlreadyExists(f"alias {source} exists already")
            conn.execute(
                "INSERT INTO aliases (source, domain_id, targets) VALUES (?, ?, ?)",
                (source, domain_id, json.dumps(list(clean_targets))),
            )
            return Alias(source, clean_targets)

        return await self._write_directory(tx)

    async def remove_alias(self, source: str) -> None:
        source = normalize_address(source)

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> None:
            if conn.execute("DELETE FROM aliases WHERE source = ?", (source,)).rowcount == 0:
                raise NotFound(f"no alias {source}")

        await self._write_directory(tx)

    async def list_aliases(self) -> list[Alias]:
        def q(conn: sqlite3.Connection) -> list[Alias]:
            rows = conn.execute("SELECT source, targets FROM aliases ORDER BY source")
            return [Alias(r[0], tuple(json.loads(r[1]))) for r in rows]

        return await self._read(q)

    async def get_alias(self, source: str) -> Alias | None:
        source = normalize_address(source)

        def q(conn: sqlite3.Connection) -> Alias | None:
            row = conn.execute("SELECT source, targets FROM aliases WHERE source = ?", (source,)).fetchone()
            return None if row is None else Alias(row[0], tuple(json.loads(row[1])))

        return await self._read(q)

    async def resolve_recipient(self, address: str) -> Resolution:
        """Resolved in memory from a directory snapshot. The snapshot is reloaded when the directory marker
        file (replaced after every committed directory change, by this process or another, e.g. the CLI)
        changes, so changes apply to the next lookup; a stat() per lookup is the whole cost."""
        snapshot = await self._directory_snapshot()
        return resolve(address, snapshot.lookup, snapshot.first_domain)

    async def _directory_snapshot(self) -> DirectorySnapshot:
        key = self._directory_marker.generation()
        if self._directory is None or key is None or key != self._directory_key:
            self._directory = await self._read(DirectorySnapshot)
            self._directory_key = key
        return self._directory

    def _touch_directory_marker(self) -> None:
        self._directory_marker.touch()

    async def _write_directory(self, fn: Callable[[sqlite3.Connection, list[ChangeEvent]], T]) -> T:
        """A directory change: after its commit, replace the marker so every process reloads its snapshot."""
        result = await self._write(fn)  # a failed change changed nothing: no marker, no reloads
        await asyncio.get_running_loop().run_in_executor(self._readers, self._touch_directory_marker)
        return result
