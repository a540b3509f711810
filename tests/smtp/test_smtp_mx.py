"""Destination resolution (RFC 5321 section 5.1, RFC 7505, RFC 6531 IDN) against a real DNS server on
loopback: every test sends real UDP queries to `tests.support.dns_server` and checks what `MxResolver`
makes of them."""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Iterator
from typing import Any, TypeVar

import dns.message
import dns.rcode
import pytest

from postoffice.smtp.mx import Host, MxResolver, PermanentDnsError, TemporaryDnsError, to_a_label
from tests.support.dns_server import DnsServer, Zones
from tests.support.mail import run_bounded

pytestmark = pytest.mark.timeout(30)

T = TypeVar("T")


class FlakyZones(Zones):
    """Zones that answer SERVFAIL for the names in `servfail` (a broken authoritative server)."""

    def __init__(self, *args: Any, servfail: set[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.servfail = servfail

    def answer(self, wire: bytes) -> bytes:
        query = dns.message.from_wire(wire)
        if query.question and query.question[0].name.to_text() in self.servfail:
            self.queries.append((query.question[0].name.to_text(), "SERVFAIL"))
            response = dns.message.make_response(query)
            response.set_rcode(dns.rcode.SERVFAIL)
            return response.to_wire()
        return super().answer(wire)


ZONES = FlakyZones(
    [
        ("example.org.", "MX", "10 mx1.example.org."),
        ("example.org.", "MX", "20 mx2.example.org."),
        ("mx1.example.org.", "A", "192.0.2.1"),
        ("mx1.example.org.", "AAAA", "2001:db8::1"),
        ("mx2.example.org.", "A", "192.0.2.2"),
        ("mx2.example.org.", "A", "192.0.2.22"),
        # equal preferences
        ("equal.test.", "MX", "10 a.equal.test."),
        ("equal.test.", "MX", "10 b.equal.test."),
        ("equal.test.", "MX", "10 c.equal.test."),
        ("equal.test.", "MX", "5 first.equal.test."),
        ("a.equal.test.", "A", "192.0.2.10"),
        ("b.equal.test.", "A", "192.0.2.11"),
        ("c.equal.test.", "A", "192.0.2.12"),
        ("first.equal.test.", "A", "192.0.2.9"),
        # the first MX host has no address at all (NXDOMAIN), the second only a TXT record (NODATA)
        ("skip.test.", "MX", "10 nowhere.skip.test."),
        ("skip.test.", "MX", "20 noaddr.skip.test."),
        ("skip.test.", "MX", "30 mx.skip.test."),
        ("noaddr.skip.test.", "TXT", '"no address here"'),
        ("mx.skip.test.", "A", "192.0.2.30"),
        # no MX: implicit MX
        ("implicit.test.", "A", "192.0.2.40"),
        ("implicit.test.", "AAAA", "2001:db8::40"),
        ("v6only.test.", "AAAA", "2001:db8::41"),
        ("txtonly.test.", "TXT", '"nothing else"'),
        # RFC 7505 null MX
        ("nullmx.test.", "MX", "0 ."),
        # MX hosts that all lack addresses
        ("dead.test.", "MX", "10 gone.dead.test."),
        ("dead.test.", "MX", "20 gone2.dead.test."),
        ("gone2.dead.test.", "TXT", '"x"'),
        # one MX host fails (SERVFAIL), the other resolves
        ("halfbroken.test.", "MX", "10 broken.halfbroken.test."),
        ("halfbroken.test.", "MX", "20 ok.halfbroken.test."),
        ("ok.halfbroken.test.", "A", "192.0.2.50"),
        ("allbroken.test.", "MX", "10 broken.allbroken.test."),
        # IDN: bücher.example
        ("xn--bcher-kva.example.", "MX", "10 mx.xn--bcher-kva.example."),
        ("mx.xn--bcher-kva.example.", "A", "192.0.2.60"),
        # many MX records
        *[("many.test.", "MX", f"{i} mx{i}.many.test.") for i in range(1, 16)],
        *[(f"mx{i}.many.test.", "A", f"192.0.2.{100 + i}") for i in range(1, 16)],
        # we (mail.self.test) are the secondary MX
        ("backup.test.", "MX", "10 primary.backup.test."),
        ("backup.test.", "MX", "20 mail.self.test."),
        ("backup.test.", "MX", "30 tertiary.backup.test."),
        ("primary.backup.test.", "A", "192.0.2.70"),
        ("mail.self.test.", "A", "192.0.2.71"),
        ("tertiary.backup.test.", "A", "192.0.2.72"),
        ("loop.test.", "MX", "10 mail.self.test."),
    ],
    servfail={"broken.halfbroken.test.", "broken.allbroken.test.", "servfail.test."},
)


@pytest.fixture(scope="module")
def dns_port() -> Iterator[int]:
    with DnsServer(ZONES) as server:
        yield server.port


run = run_bounded


def resolver(port: int, **kwargs: Any) -> MxResolver:
    kwargs.setdefault("rng", random.Random(1))
    return MxResolver(["127.0.0.1"], port=port, timeout=2, lifetime=4, **kwargs)


def test_mx_hosts_come_in_preference_order_with_ipv4_before_ipv6(dns_port: int) -> None:
    hosts = run(resolver(dns_port).destinations("example.org"))
    assert [(h.name, h.preference) for h in hosts] == [("mx1.example.org", 10), ("mx2.example.org", 20)]
    assert hosts[0].addresses == ["192.0.2.1", "2001:db8::1"]
    assert sorted(hosts[1].addresses) == ["192.0.2.2", "192.0.2.22"]  # the DNS order, whatever it is


def test_ip_versions_choose_the_families_and_their_order(dns_port: int) -> None:
    (first, _) = run(resolver(dns_port, ip_versions=(6, 4)).destinations("example.org"))
    assert first.addresses == ["2001:db8::1", "192.0.2.1"]
    ZONES.queries.clear()
    (first, _) = run(resolver(dns_port, ip_versions=(4,)).destinations("example.org"))
    assert first.addresses == ["192.0.2.1"]
    assert not [q for q in ZONES.queries if q[1] == "AAAA"]


def test_equal_preferences_are_shuffled_after_the_better_ones(dns_port: int) -> None:
    orders = set()
    for seed in range(30):
        hosts = run(resolver(dns_port, rng=random.Random(seed)).destinations("equal.test"))
        assert hosts[0].name == "first.equal.test"
        assert sorted(h.name for h in hosts[1:]) == ["a.equal.test", "b.equal.test", "c.equal.test"]
        orders.add(tuple(h.name for h in hosts[1:]))
    assert len(orders) > 1  # RFC 5321 5.1: equal preferences randomized


def test_mx_hosts_without_addresses_are_skipped(dns_port: int) -> None:
    hosts = run(resolver(dns_port).destinations("skip.test"))
    assert hosts == [Host("mx.skip.test", 30, ["192.0.2.30"])]


def test_a_domain_without_mx_is_its_own_implicit_mx(dns_port: int) -> None:
    assert run(resolver(dns_port).destinations("implicit.test")) == [
        Host("implicit.test", 0, ["192.0.2.40", "2001:db8::40"])
    ]
    assert run(resolver(dns_port).destinations("v6only.test")) == [Host("v6only.test", 0, ["2001:db8::41"])]


def test_null_mx_is_a_permanent_5_1_10(dns_port: int) -> None:
    with pytest.raises(PermanentDnsError) as info:
        run(resolver(dns_port).destinations("nullmx.test"))
    assert (info.value.code, info.value.enhanced) == (556, "5.1.10")
    assert "null MX" in info.value.text


def test_nxdomain_is_a_permanent_5_1_2(dns_port: int) -> None:
    with pytest.raises(PermanentDnsError) as info:
        run(resolver(dns_port).destinations("nothing.example.org"))
    assert (info.value.code, info.value.enhanced) == (550, "5.1.2")


def test_a_domain_with_neither_mx_nor_address_is_permanent(dns_port: int) -> None:
    with pytest.raises(PermanentDnsError) as info:
        run(resolver(dns_port).destinations("txtonly.test"))
    assert info.value.enhanced == "5.1.2"


def test_mx_hosts_that_all_lack_addresses_are_permanent_5_4_4_and_no_a_fallback(dns_port: int) -> None:
    with pytest.raises(PermanentDnsError) as info:
        run(resolver(dns_port).destinations("dead.test"))
    assert info.value.enhanced == "5.4.4"
    assert "gone.dead.test" in info.value.text


def test_servfail_is_temporary(dns_port: int) -> None:
    with pytest.raises(TemporaryDnsError) as info:
        run(resolver(dns_port).destinations("servfail.test"))
    assert (info.value.code, info.value.enhanced) == (451, "4.4.3")


def test_an_mx_host_that_fails_temporarily_is_skipped_when_another_resolves(dns_port: int) -> None:
    assert run(resolver(dns_port).destinations("halfbroken.test")) == [
        Host("ok.halfbroken.test", 20, ["192.0.2.50"])
    ]
    with pytest.raises(TemporaryDnsError):
        run(resolver(dns_port).destinations("allbroken.test"))


def test_a_nameserver_nobody_listens_on_is_temporary_and_bounded() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(TemporaryDnsError) as info:
        run(MxResolver(["127.0.0.1"], port=port, timeout=0.5, lifetime=1.0).destinations("example.org"))
    assert info.value.enhanced == "4.4.3"
    assert time.monotonic() - started < 3


def test_address_literals_need_no_dns(dns_port: int) -> None:
    ZONES.queries.clear()
    assert run(resolver(dns_port).destinations("[192.0.2.7]")) == [Host("[192.0.2.7]", 0, ["192.0.2.7"])]
    assert run(resolver(dns_port).destinations("[IPv6:2001:DB8::7]")) == [
        Host("[IPv6:2001:DB8::7]", 0, ["2001:db8::7"])
    ]
    assert ZONES.queries == []
    for bad in ("[300.1.1.1]", "[x-tag:stuff]", "[2001:db8::7]"):
        with pytest.raises(PermanentDnsError):
            run(resolver(dns_port).destinations(bad))


def test_idn_domains_are_looked_up_by_their_a_labels(dns_port: int) -> None:
    assert to_a_label("Bücher.example") == "xn--bcher-kva.example"
    assert run(resolver(dns_port).destinations("bücher.example")) == [
        Host("mx.xn--bcher-kva.example", 10, ["192.0.2.60"])
    ]


def test_bad_domain_syntax_is_permanent(dns_port: int) -> None:
    with pytest.raises(PermanentDnsError):
        run(resolver(dns_port).destinations("a" * 64 + ".test"))
    with pytest.raises(PermanentDnsError):
        run(resolver(dns_port).destinations("a..test"))


def test_no_more_than_max_hosts_mx_records_are_followed(dns_port: int) -> None:
    hosts = run(resolver(dns_port).destinations("many.test"))
    assert [h.preference for h in hosts] == list(range(1, 11))
    assert [h.preference for h in run(resolver(dns_port, max_hosts=3).destinations("many.test"))] == [1, 2, 3]


def test_as_an_mx_host_we_only_use_more_preferred_hosts_and_refuse_loops(dns_port: int) -> None:
    local = resolver(dns_port, local_names=["mail.self.test"])
    assert run(local.destinations("backup.test")) == [Host("primary.backup.test", 10, ["192.0.2.70"])]
    with pytest.raises(PermanentDnsError) as info:
        run(local.destinations("loop.test"))
    assert info.value.enhanced == "5.4.6"
