"""The backends the contract suite runs against, and what its tests share.

Every backend registered in `postoffice.store.backends.BACKENDS` must have an entry in `HARNESSES`: a
function that gives the settings of a fresh, empty store in a directory of its own
(test_contract_coverage.py fails otherwise). A test opens the store with `postoffice.store.open_store`, as
the server does, and may open a second store object on the same settings: that is another process's view.

Every contract test names the `MailStore` methods it proves with `@covers(...)`; test_contract_coverage.py
fails when a public method of `MailStore` has no contract test.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from postoffice.message import ParsedMessage, parse_message
from postoffice.store import DeliveredCopy, MailStore, open_store
from postoffice.store.backends import PathSettings, StoreSettings

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

#: Backend name -> the settings of a fresh store kept in `directory`.
HARNESSES: dict[str, Callable[[Path], StoreSettings]] = {
    "sqlite": lambda directory: PathSettings(directory / "store" / "mail.sqlite3"),
}

BACKEND_NAMES = sorted(HARNESSES)


@dataclass(frozen=True)
class Backend:
    """One store of one backend, for one test: open it as often as the test needs."""

    name: str
    settings: StoreSettings

    def open(self) -> MailStore:
        return open_store(self.settings)

    def run(self, scenario: Callable[[MailStore], Awaitable[T]]) -> T:
        """Open a store object, run `scenario` with it on a new event loop, close it."""

        async def main() -> T:
            store = self.open()
            try:
                return await scenario(store)
            finally:
                await store.close()

        return asyncio.run(main())


def covers(*methods: Callable[..., Any]) -> Callable[[F], F]:
    """Mark a contract test as proving the behaviour of these `MailStore` methods (given as
    `MailStore.deliver`, so that a renamed method is a type error here, not a silently uncovered one)."""

    def mark(test: F) -> F:
        vars(test)["store_methods"] = tuple(m.__name__ for m in methods)  # read by test_contract_coverage
        return test

    return mark


# -- messages and accounts ---------------------------------------------------------------------------------
def message(subject: str = "hello", body: str = "body text\r\n", *, to: str = "demo@example.test") -> bytes:
    return f"From: a@example.org\r\nTo: {to}\r\nSubject: {subject}\r\n\r\n{body}".encode()


def parse(raw: bytes) -> ParsedMessage:
    return parse_message(io.BytesIO(raw))


async def deliver(store: MailStore, raw: bytes, account_ids: list[int], **kw: Any) -> list[DeliveredCopy]:
    return await store.deliver(io.BytesIO(raw), parse(raw), account_ids, **kw)


async def append(
    store: MailStore,
    mailbox_id: int,
    subject: str,
    flags: tuple[str, ...] | list[str] = (),
    when: float | None = None,
) -> DeliveredCopy:
    raw = message(subject, f"body {subject}\r\n")
    return await store.append(mailbox_id, io.BytesIO(raw), parse(raw), flags, when)


async def accounts(store: MailStore, *names: str, domain: str = "example.test") -> list[int]:
    """The domain and one account per name; their ids."""
    await store.add_domain(domain)
    return [(await store.add_account(f"{name}@{domain}", "hash")).id for name in names]


async def inbox_of(store: MailStore, account_id: int, name: str = "INBOX") -> int:
    mailbox = await store.get_mailbox(account_id, name)
    assert mailbox is not None, name
    return mailbox.id
