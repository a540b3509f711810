"""A protocol registered but not built (as ManageSieve will be until it is), for the tests of what the config
and the server do with such a protocol: since the web is built, no real protocol is in that state."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from postoffice.net.service import Service, StandardPort
from postoffice.protocols import SERVICES

SIEVE: Service[None] = Service(
    name="sieve",
    purpose="Sieve scripts managed by mail programs",
    ports=(StandardPort("sieve", 4190, "starttls", enabled=True),),
)


@pytest.fixture
def unbuilt_protocol() -> Iterator[Service[None]]:
    """Registers `SIEVE` (no factory) for the test."""
    SERVICES["sieve"] = SIEVE
    try:
        yield SIEVE
    finally:
        del SERVICES["sieve"]
