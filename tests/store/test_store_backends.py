"""The `[store] backend` setting offers exactly the registered backends."""

from __future__ import annotations

from postoffice.settings import declared
from postoffice.store.backends import BACKENDS
from postoffice.store.settings import StoreConfig


def test_the_backend_setting_offers_exactly_the_registered_backends() -> None:
    assert set(declared(StoreConfig).setting("backend").choices) == set(BACKENDS)
