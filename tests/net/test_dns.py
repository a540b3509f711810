"""`net.dns.DnsResolver` against a real DNS server on loopback: the three outcomes every DNS-based check
needs (an answer, NODATA, NXDOMAIN) and a temporary failure for everything else."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import TypeVar

import pytest

from postoffice.net.dns import BadDomainName, DnsResolver, DnsTemporaryFailure, NoSuchDomain, a_label
from tests.support.dns_server import DnsServer, Zones
from tests.support.mail import run_bounded

T = TypeVar("T")


@pytest.fixture(scope="module")
def dns_port() -> Iterator[int]:
    zones = Zones(
        [
            ("example.org.", "MX", "10 mx.example.org."),
            ("mx.example.org.", "A", "192.0.2.1"),
            ("example.org.", "TXT", '"v=spf1 -all"'),
        ]
    )
    with DnsServer(zones) as server:
        yield server.port


run = run_bounded


def test_an_answer_nodata_and_nxdomain_are_told_apart(dns_port: int) -> None:
    resolver = DnsResolver(["127.0.0.1"], port=dns_port, timeout=2, lifetime=4)
    answer = run(resolver.query("example.org", "TXT"))
    assert answer is not None
    assert [r.to_text() for r in answer] == ['"v=spf1 -all"']
    assert run(resolver.query("example.org", "AAAA")) is None  # the name exists, without AAAA records
    with pytest.raises(NoSuchDomain):
        run(resolver.query("nothing.example.org", "A"))


def test_a_server_that_does_not_answer_is_a_temporary_failure() -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound, never answers
    silent.bind(("127.0.0.1", 0))
    try:
        resolver = DnsResolver(["127.0.0.1"], port=silent.getsockname()[1], timeout=0.2, lifetime=0.5)
        with pytest.raises(DnsTemporaryFailure, match="timed out"):
            run(resolver.query("example.org", "MX"))
    finally:
        silent.close()


def test_a_labels() -> None:
    assert a_label("Bücher.example.") == "xn--bcher-kva.example"
    assert a_label("example.org") == "example.org"
    with pytest.raises(BadDomainName):
        a_label("a" * 64 + ".example")


def test_the_blocking_form_answers_alike_and_a_cache_is_shared_for_the_ttl() -> None:
    zones = Zones([("cached.example.", "TXT", '"one"')], ttl=300)
    with DnsServer(zones) as server:
        resolver = DnsResolver(["127.0.0.1"], port=server.port, timeout=2, lifetime=4, cache_size=100)
        first = resolver.query_sync("cached.example", "TXT")
        assert first is not None
        assert [r.to_text() for r in first] == ['"one"']
        with pytest.raises(NoSuchDomain):
            resolver.query_sync("nothing.cached.example", "A")
        asked = len(zones.queries)
        again = run(resolver.query("cached.example", "TXT"))  # from the cache the blocking lookup filled
        assert again is not None
        assert [r.to_text() for r in again] == ['"one"']
        assert len(zones.queries) == asked
        uncached = DnsResolver(["127.0.0.1"], port=server.port, timeout=2, lifetime=4)
        run(uncached.query("cached.example", "TXT"))
        run(uncached.query("cached.example", "TXT"))
        assert len(zones.queries) == asked + 2  # without a cache, every lookup asks
