"""Schema 24 (IMAP ACL, RFC 4314; docs/decisions/0073): a version 23 store gets the `acl` table, empty, and
access control lists work on it; schema 25 (docs/decisions/0076): a version 24 store gets `acl_names`."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from postoffice.store import AclEntry, open_store
from postoffice.store.sqlite import SCHEMA_VERSION


def test_a_version_23_store_gets_the_acl_table(tmp_path: Path) -> None:
    path = tmp_path / "v23.sqlite3"

    async def make() -> None:
        store = open_store(path)
        try:
            await store.add_domain("example.test")
            await store.add_account("owner@example.test", "hash")
            await store.add_account("fred@example.test", "hash")
        finally:
            await store.close()

    asyncio.run(make())
    conn = sqlite3.connect(path)
    conn.executescript("DROP TABLE acl; UPDATE meta SET value = 23 WHERE key = 'schema_version';")
    conn.commit()
    conn.close()

    async def share() -> tuple[list[AclEntry], dict[int, str]]:
        store = open_store(path)
        try:
            owner = await store.get_account("owner@example.test")
            fred = await store.get_account("fred@example.test")
            assert owner is not None
            assert fred is not None
            inbox = await store.get_mailbox(owner.id, "INBOX")
            assert inbox is not None
            before = await store.get_acl(inbox.id)
            await store.set_acl(inbox.id, "fred@example.test", "lr")
            assert before == []
            return await store.get_acl(inbox.id), await store.my_rights(fred.id, [inbox.id])
        finally:
            await store.close()

    entries, rights = asyncio.run(share())
    assert entries == [AclEntry("fred@example.test", "lr")]
    assert list(rights.values()) == ["lr"]
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_a_version_24_store_gets_the_acl_names_table(tmp_path: Path) -> None:
    """Schema 25 (docs/decisions/0076): `acl_names`, empty; the entries there are kept."""
    path = tmp_path / "v24.sqlite3"

    async def make() -> None:
        store = open_store(path)
        try:
            await store.add_domain("example.test")
            owner = await store.add_account("owner@example.test", "hash")
            await store.add_account("fred@example.test", "hash")
            inbox = await store.get_mailbox(owner.id, "INBOX")
            assert inbox is not None
            await store.set_acl(inbox.id, "fred@example.test", "lr")
        finally:
            await store.close()

    asyncio.run(make())
    conn = sqlite3.connect(path)
    conn.executescript("DROP TABLE acl_names; UPDATE meta SET value = 24 WHERE key = 'schema_version';")
    conn.commit()
    conn.close()

    async def share() -> list[AclEntry]:
        store = open_store(path)
        try:
            owner = await store.get_account("owner@example.test")
            assert owner is not None
            inbox = await store.get_mailbox(owner.id, "INBOX")
            assert inbox is not None
            await store.set_acl(inbox.id, "nobody@example.test", "l")
            return await store.get_acl(inbox.id)
        finally:
            await store.close()

    assert asyncio.run(share()) == [AclEntry("fred@example.test", "lr"), AclEntry("nobody@example.test", "l")]
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("SELECT address, rights FROM acl_names").fetchall() == [("nobody@example.test", "l")]
    conn.close()
