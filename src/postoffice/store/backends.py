"""Store backends by name, and what `open_store` reads from the `[store]` settings (docs/decisions/0037).

A backend is a package that provides `open_backend(settings) -> MailStore` and passes the contract suite
(tests/store/contract, which runs for every name registered here). Adding one is its own package, one line
in `BACKENDS` and one in the contract suite's list of backends to test; nothing outside the store changes,
because every protocol reaches mail only through `MailStore`, including cross-process change detection
(`resolve_recipient`, `login_guard_generation`) and change notifications (`subscribe`, `subscribe_queue`).

Backends are imported when opened, so that importing the store API loads no database driver.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from postoffice.store.api import StoreError
from postoffice.store.space import DEFAULT_MIN_FREE, DEFAULT_RESERVE

if TYPE_CHECKING:
    from postoffice.store.api import MailStore

#: Backend name (the `backend` setting) -> the module that provides `open_backend(settings)`.
BACKENDS: dict[str, str] = {
    "sqlite": "postoffice.store.sqlite",
}
DEFAULT_BACKEND = "sqlite"


class StoreSettings(Protocol):
    """What `open_store` reads from the `[store]` settings (`config.StoreConfig` is one). `backend` is read
    when present (default "sqlite"); a backend may read further settings of its own the same way."""

    @property
    def path(self) -> Path: ...

    @property
    def min_free_space(self) -> int: ...

    @property
    def disk_reserve(self) -> int: ...


@dataclass(frozen=True)
class PathSettings:
    """`open_store(path)`: the SQLite store at `path` (the CLI's `init`, tests, benchmarks)."""

    path: Path
    min_free_space: int = DEFAULT_MIN_FREE
    disk_reserve: int = DEFAULT_RESERVE
    backend: str = DEFAULT_BACKEND


def backend_name(settings: StoreSettings) -> str:
    return str(getattr(settings, "backend", None) or DEFAULT_BACKEND)


def open_backend(settings: StoreSettings) -> MailStore:
    """Open the store `settings` describe with the backend they name (StoreError for an unknown one)."""
    name = backend_name(settings)
    module_name = BACKENDS.get(name)
    if module_name is None:
        known = ", ".join(sorted(BACKENDS))
        raise StoreError(f"unknown store backend {name!r} (known: {known})")
    opener = importlib.import_module(module_name).open_backend
    store: MailStore = opener(settings)
    return store
