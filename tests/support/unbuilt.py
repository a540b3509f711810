"""A protocol registered but not built, for the tests of what the config and the server do with such a
protocol: every real protocol is built now (ManageSieve was the last), so this one is made up."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from postoffice.net.service import Service, StandardPort
from postoffice.protocols import SERVICES

SIEVE: Service[None] = Service(
    name="sieve",
    purpose="a made-up protocol that is not built",
    ports=(StandardPort("sieve", 4191, "starttls", enabled=True),),
)


@pytest.fixture
def unbuilt_protocol() -> Iterator[Service[None]]:
    """Registers `SIEVE` (no factory) for the test."""
    SERVICES["sieve"] = SIEVE
    try:
        yield SIEVE
    finally:
        del SERVICES["sieve"]
