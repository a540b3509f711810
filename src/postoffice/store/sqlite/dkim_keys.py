"""DKIM signing keys (docs/decisions/0056): the table dkim_keys, one row per key of a domain, in states that
only move forward (api.DKIM_KEY_STATES); a removed key keeps its row (its selector is never used again) but
not its private key. The partial unique index dkim_keys_current keeps one pending and one active key per
domain and algorithm, so moves that retire one key and activate another are applied retirements first.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from postoffice.store.api import DKIM_KEY_STATES, AlreadyExists, ChangeEvent, DkimKey, NotFound, StoreError
from postoffice.store.sqlite.base import SqliteBase

_COLUMNS = (
    "k.id, d.name, k.selector, k.algorithm, k.public_key, k.private_key, k.state, k.created, k.changed "
    "FROM dkim_keys k JOIN domains d ON d.id = k.domain_id"
)


def _key(row: Sequence[Any]) -> DkimKey:
    key_id, domain, selector, algorithm, public, private, state, created, changed = row
    return DkimKey(
        int(key_id), domain, selector, algorithm, public, private, state, float(created), float(changed)
    )


class DkimKeysMixin(SqliteBase):
    async def add_dkim_keys(self, keys: Sequence[DkimKey]) -> list[DkimKey]:
        for key in keys:
            if key.state not in ("pending", "active"):
                raise StoreError(f"a new DKIM key is pending or active, not {key.state!r}")

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> list[DkimKey]:
            added: list[DkimKey] = []
            for key in keys:
                row = conn.execute("SELECT id FROM domains WHERE name = ?", (key.domain,)).fetchone()
                if row is None:
                    raise NotFound(f"no domain {key.domain}")
                taken = conn.execute(
                    "SELECT 1 FROM dkim_keys WHERE domain_id = ? AND selector = ?", (row[0], key.selector)
                ).fetchone()
                if taken is not None:
                    raise AlreadyExists(f"the selector {key.selector} of {key.domain} has been used already")
                cursor = conn.execute(
                    "INSERT INTO dkim_keys (domain_id, selector, algorithm, public_key, private_key, state, "
                    "created, changed) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        row[0],
                        key.selector,
                        key.algorithm,
                        key.public_key,
                        key.private_key,
                        key.state,
                        key.created,
                        key.changed,
                    ),
                )
                added.append(dataclasses.replace(key, id=int(cursor.lastrowid or 0)))
            return added

        return await self._write(tx)

    async def dkim_keys(self, domain: str | None = None) -> list[DkimKey]:
        def q(conn: sqlite3.Connection) -> list[DkimKey]:
            if domain is None:
                rows = conn.execute(f"SELECT {_COLUMNS} ORDER BY d.name, k.created, k.id")
            else:
                rows = conn.execute(f"SELECT {_COLUMNS} WHERE d.name = ? ORDER BY k.created, k.id", (domain,))
            return [_key(row) for row in rows]

        return await self._read(q)

    async def set_dkim_key_states(self, states: Mapping[int, str], now: float) -> list[DkimKey]:
        for state in states.values():
            if state not in DKIM_KEY_STATES:
                raise StoreError(f"not a DKIM key state: {state!r}")

        def tx(conn: sqlite3.Connection, events: list[ChangeEvent]) -> list[DkimKey]:
            before: dict[int, DkimKey] = {}
            for key_id in states:
                row = conn.execute(f"SELECT {_COLUMNS} WHERE k.id = ?", (key_id,)).fetchone()
                if row is None:
                    raise NotFound(f"no DKIM key with id {key_id}")
                before[key_id] = _key(row)
            order = DKIM_KEY_STATES.index
            for key_id, key in before.items():
                if order(states[key_id]) < order(key.state):
                    raise StoreError(f"the DKIM key {key.selector} of {key.domain} is {key.state} already")
            # the keys that leave "pending"/"active" first: the unique index sees one current key at a time
            moving = [k for k in before if states[k] != before[k].state]
            for key_id in sorted(moving, key=lambda k: -order(states[k])):
                state = states[key_id]
                if state == "removed":
                    conn.execute(
                        "UPDATE dkim_keys SET state = ?, changed = ?, private_key = '' WHERE id = ?",
                        (state, now, key_id),
                    )
                else:
                    conn.execute(
                        "UPDATE dkim_keys SET state = ?, changed = ? WHERE id = ?", (state, now, key_id)
                    )
            return [_key(conn.execute(f"SELECT {_COLUMNS} WHERE k.id = ?", (k,)).fetchone()) for k in states]

        return await self._write(tx)
