"""The contract suite covers the whole store API and runs for every backend: a public `MailStore` method
without a contract test, or a registered backend without a harness, fails here."""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
from pathlib import Path

import pytest

from postoffice.store import MailStore, StoreError, open_store
from postoffice.store.backends import BACKENDS, PathSettings, backend_name
from tests.store import contract
from tests.store.contract.harness import HARNESSES


def public_methods() -> set[str]:
    return {name for name, value in vars(MailStore).items() if callable(value) and not name.startswith("_")}


def covered_methods() -> dict[str, list[str]]:
    covered: dict[str, list[str]] = {}
    for info in pkgutil.iter_modules(contract.__path__):
        if not info.name.startswith("test_"):
            continue
        module = importlib.import_module(f"{contract.__name__}.{info.name}")
        for name, value in vars(module).items():
            for method in getattr(value, "store_methods", ()):
                covered.setdefault(method, []).append(f"{info.name}.{name}")
    return covered


def test_every_public_store_method_has_a_contract_test() -> None:
    covered = covered_methods()
    assert len(public_methods()) >= 60
    assert sorted(public_methods() - set(covered)) == []
    assert sorted(set(covered) - public_methods()) == []  # no stale names


def test_every_registered_backend_has_a_contract_harness() -> None:
    assert sorted(HARNESSES) == sorted(BACKENDS)


def test_open_store_takes_the_backend_from_the_settings(tmp_path: Path) -> None:
    """`open_store(config.store)`: the backend is named by the settings ("sqlite" when they name none, as
    the `[store]` section of today's config files); an unknown name is a StoreError that lists the known."""

    class Settings:  # the shape of config.StoreConfig, without a backend setting
        path = tmp_path / "store" / "mail.sqlite3"
        spool_dir = tmp_path / "spool"
        min_free_space = 0
        disk_reserve = 0

    assert backend_name(Settings()) == "sqlite"

    async def opened() -> None:
        store = open_store(Settings())
        try:
            await store.add_domain("example.test")
        finally:
            await store.close()
        again = open_store(Settings.path)  # the same store, by path
        try:
            assert [d.name for d in await again.list_domains()] == ["example.test"]
        finally:
            await again.close()

    asyncio.run(opened())
    with pytest.raises(StoreError, match=r"unknown store backend 'nosuch' \(known: sqlite\)"):
        open_store(PathSettings(tmp_path / "x", backend="nosuch"))
    with pytest.raises(TypeError):
        open_store(Settings(), min_free_space=1)
