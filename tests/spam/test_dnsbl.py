"""DNS blocklists (RFC 5782, docs/decisions/0089): the query names for IPv4 and IPv6, what the answers mean
(listings, refused-query codes, answers that are no blocklist's), the zone names the config accepts, and the
lookups against a real DNS server on loopback: TXT reasons, failures and silence that list nothing within the
deadline, the cache of listings, clear answers and failures."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postoffice.net.dns import DnsResolver
from postoffice.spam.dnsbl import (
    CLEAR_TTL,
    FAILED_TTL,
    MAX_REASON,
    MIN_TTL,
    DnsblChecker,
    ZoneResult,
    address_of,
    client_address,
    interpret,
    listed_zones,
    query_name,
    reason_text,
)
from postoffice.spam.screen import InboundScreen
from postoffice.spam.settings import MAX_ZONE_LENGTH, zone_problem
from tests.support.dns_server import DnsServer, Zones

ZONE = "bl.test"


# -- query names (RFC 5782 sections 2.1 and 2.4) ------------------------------------------------------------
def test_an_ipv4_address_is_asked_with_its_octets_reversed() -> None:
    assert query_name("192.0.2.99", "bl.example") == "99.2.0.192.bl.example"
    assert query_name("127.0.0.2", ZONE) == "2.0.0.127.bl.test"


def test_an_ipv6_address_is_asked_with_its_32_nibbles_reversed() -> None:
    # RFC 5782 section 2.4's example: 2001:db8:1:2:3:4:567:89ab
    assert query_name("2001:db8:1:2:3:4:567:89ab", "ugly.example.com") == (
        "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ugly.example.com"
    )
    assert query_name("::1", ZONE) == "1" + ".0" * 31 + ".bl.test"


def test_an_ipv4_mapped_ipv6_address_is_asked_as_its_ipv4_address() -> None:
    assert query_name("::ffff:192.0.2.7", ZONE) == "7.2.0.192.bl.test"


def test_something_that_is_no_address_is_refused() -> None:
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        query_name("mail.example", ZONE)


@given(st.ip_addresses())
def test_the_query_name_names_the_address_it_was_made_for(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    asked = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    expected = asked or address
    name = query_name(str(address), ZONE)
    assert address_of(name, ZONE) == str(expected)
    assert len(name.split(".")) == (4 if expected.version == 4 else 32) + len(ZONE.split("."))


# -- what an answer means ------------------------------------------------------------------------------------
def test_answers_in_127_8_are_listings_with_their_codes() -> None:
    assert interpret(["127.0.0.2"]) == ("listed", ("127.0.0.2",))
    assert interpret(["127.0.0.10", "127.0.0.4", "127.0.0.4"]) == ("listed", ("127.0.0.4", "127.0.0.10"))


def test_refused_query_codes_are_untrusted_not_listings() -> None:
    # Spamhaus: 127.255.255.254 (a public resolver asked), .255 (too many queries), .252 (typo in the zone)
    for code in ("127.255.255.252", "127.255.255.254", "127.255.255.255", "127.0.0.1"):
        assert interpret([code]) == ("untrusted", (code,))


def test_answers_outside_127_8_are_no_blocklist_answer() -> None:
    # a lapsed zone whose domain now has a wildcard A record would otherwise list the whole internet
    assert interpret(["192.0.2.1"]) == ("untrusted", ("192.0.2.1",))


def test_a_listing_beside_a_refusal_code_still_lists() -> None:
    assert interpret(["127.255.255.254", "127.0.0.3"]) == ("listed", ("127.0.0.3",))


def test_no_records_is_clear() -> None:
    assert interpret([]) == ("clear", ())


@given(st.lists(st.ip_addresses(v=4), max_size=6))
def test_a_listing_is_always_a_loopback_address_and_never_a_refusal_code(
    addresses: list[ipaddress.IPv4Address],
) -> None:
    status, codes = interpret(str(a) for a in addresses)
    loopback = ipaddress.ip_network("127.0.0.0/8")
    refusals = [ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("127.255.255.0/24")]
    listings = [a for a in addresses if a in loopback and not any(a in r for r in refusals)]
    assert (status == "listed") == bool(listings)
    if status == "listed":
        assert set(codes) == {str(a) for a in listings}
    assert (status == "clear") == (not addresses)


def test_a_reason_is_one_printable_line_of_bounded_length() -> None:
    assert reason_text([b"Listed; see ", b"https://bl.test/q?ip=1"]) == "Listed; see https://bl.test/q?ip=1"
    assert reason_text([b"bad\r\n250 fake\x00 reply \xff"]) == "bad 250 fake reply ?"
    assert len(reason_text([b"x" * 1000])) == MAX_REASON


@given(st.lists(st.binary(max_size=300), max_size=4))
def test_any_txt_record_makes_a_safe_reply_fragment(strings: list[bytes]) -> None:
    text = reason_text(strings)
    assert len(text) <= MAX_REASON
    assert all(" " <= c <= "~" for c in text)
    assert text == text.strip()


# -- zone names of the config --------------------------------------------------------------------------------
def test_the_zones_blocklists_publish_are_accepted_and_other_strings_refused() -> None:
    for zone in (
        "zen.spamhaus.org",
        "bl.spamcop.net",
        "b.barracudacentral.org",
        "list.dnswl.org",
        "x_y.test",
    ):
        assert zone_problem(zone) is None, zone
    assert zone_problem("") == "an empty zone"
    assert zone_problem("localhost") == "a single label"
    assert zone_problem("-bad.example") is not None
    assert zone_problem("bad-.example") is not None
    assert zone_problem("sp ace.example") is not None
    assert zone_problem("a..example") is not None
    assert zone_problem("ex\u00e4mple.org") is not None  # A-labels only
    assert zone_problem("a" * 63 + ".example") is None
    assert zone_problem("a" * 64 + ".example") is not None
    assert zone_problem(("a" * 60 + ".") * 3 + "example") is not None  # no room for an IPv6 query name


_LABEL = st.from_regex(r"[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?", fullmatch=True)


@given(st.lists(_LABEL, min_size=2, max_size=5))
def test_every_well_formed_zone_short_enough_is_accepted(labels: list[str]) -> None:
    zone = ".".join(labels)
    assert (zone_problem(zone) is None) == (len(zone) <= MAX_ZONE_LENGTH)
    if zone_problem(zone) is None:
        assert len(query_name("2001:db8::1", zone)) <= 253


@given(st.text(max_size=80))
def test_a_zone_accepted_is_made_of_dns_labels(text: str) -> None:
    if zone_problem(text) is None:
        assert text.isascii()
        assert all(label and label[0] != "-" and label[-1] != "-" for label in text.split("."))
        assert all(c.isalnum() or c in "-_." for c in text)


# -- lookups against a DNS server on loopback ----------------------------------------------------------------
RECORDS = [
    # RFC 5782 section 5: 127.0.0.2 is every list's test entry
    ("2.0.0.127.bl.test.", "A", "127.0.0.2"),
    ("2.0.0.127.bl.test.", "TXT", '"Listed for testing; see https://bl.test/lookup?127.0.0.2"'),
    ("3.0.0.127.bl.test.", "A", "127.0.0.4"),
    ("4.0.0.127.bl.test.", "A", "127.255.255.254"),
    ("5.0.0.127.bl.test.", "A", "198.51.100.1"),
    ("2.0.0.127.other.test.", "A", "127.0.0.3"),
    (query_name("2001:db8::25", "v6.test") + ".", "A", "127.0.0.2"),
    # a name in each zone, so that other names are NXDOMAIN
    ("bl.test.", "TXT", '"zone"'),
    ("other.test.", "TXT", '"zone"'),
    ("v6.test.", "TXT", '"zone"'),
    ("slow.test.", "TXT", '"zone"'),
]


@pytest.fixture(scope="module")
def dns_server() -> Iterator[DnsServer]:
    zones = Zones(RECORDS, ttl=600)
    zones.fail("2.0.0.127.broken.test.")
    zones.never_answer("2.0.0.127.slow.test.")
    with DnsServer(zones) as server:
        yield server


def checker(server: DnsServer, zones: tuple[str, ...], timeout: float = 5.0, **kw: object) -> DnsblChecker:
    resolver = DnsResolver(["127.0.0.1"], port=server.port, timeout=min(timeout, 2.0), lifetime=timeout)
    return DnsblChecker(zones, resolver, timeout=timeout, **kw)  # type: ignore[arg-type]


def test_a_listed_address_gets_its_codes_and_reason_from_each_zone(dns_server: DnsServer) -> None:
    results = asyncio.run(checker(dns_server, (ZONE, "other.test", "v6.test")).check("127.0.0.2"))
    assert results == [
        ZoneResult(
            ZONE, "listed", ("127.0.0.2",), "Listed for testing; see https://bl.test/lookup?127.0.0.2"
        ),
        ZoneResult("other.test", "listed", ("127.0.0.3",), ""),
        ZoneResult("v6.test", "clear"),
    ]
    assert listed_zones(results) == (ZONE, "other.test")


def test_an_ipv6_client_is_looked_up_by_its_nibbles(dns_server: DnsServer) -> None:
    found = asyncio.run(checker(dns_server, ("v6.test",)).check("2001:db8::25"))
    assert found == [ZoneResult("v6.test", "listed", ("127.0.0.2",), "")]
    assert asyncio.run(checker(dns_server, ("v6.test",)).check("2001:db8::26"))[0].status == "clear"


def test_an_address_not_listed_is_clear(dns_server: DnsServer) -> None:
    assert asyncio.run(checker(dns_server, (ZONE,)).check("127.0.0.9")) == [ZoneResult(ZONE, "clear")]


def test_a_refused_query_code_lists_nothing_and_warns_once(
    dns_server: DnsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "postoffice.spam")
    lookups = checker(dns_server, (ZONE,))

    async def twice() -> list[ZoneResult]:
        first = await lookups.check("127.0.0.4")
        second = await lookups.check("127.0.0.5")
        return first + second

    first, second = asyncio.run(twice())
    assert first == ZoneResult(ZONE, "untrusted", ("127.255.255.254",))
    assert second == ZoneResult(ZONE, "untrusted", ("198.51.100.1",))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "127.255.255.254" in warnings[0]
    assert "not listed" in warnings[0]


def test_a_failing_or_silent_blocklist_lists_nothing_within_the_deadline(
    dns_server: DnsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "postoffice.spam")
    lookups = checker(dns_server, ("broken.test", "slow.test", ZONE), timeout=0.5)
    started = time.monotonic()
    results = asyncio.run(lookups.check("127.0.0.2"))
    took = time.monotonic() - started
    assert [r.status for r in results] == ["failed", "failed", "listed"]
    assert "SERVFAIL" in results[0].reason
    assert results[1].reason == "no answer within 0.5 s"
    assert took < 2.0  # the zones are asked at once, each within the deadline
    assert sum("treated as not listed" in r.getMessage() for r in caplog.records) == 2


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_results_are_cached_for_their_bounded_ttl(dns_server: DnsServer) -> None:
    clock = Clock()
    lookups = checker(dns_server, (ZONE, "broken.test"), clock=clock)
    queries = dns_server.zones.queries

    def asked(ip: str) -> int:
        before = len(queries)
        asyncio.run(lookups.check(ip))
        return len(queries) - before

    assert asked("127.0.0.2") == 3  # A and TXT in bl.test, A in broken.test (SERVFAIL)
    assert asked("127.0.0.2") == 0
    assert asked("127.0.0.9") == 2
    clock.now += FAILED_TTL
    assert asked("127.0.0.2") == 1  # the failure again; the listing (TTL 600) is still kept
    clock.now += CLEAR_TTL - FAILED_TTL
    assert asked("127.0.0.9") == 2  # "not listed" and the failure, both gone
    clock.now += 600 - CLEAR_TTL
    assert asked("127.0.0.2") == 3
    assert MIN_TTL <= 600


def test_concurrent_connections_from_one_address_share_one_lookup(dns_server: DnsServer) -> None:
    lookups = checker(dns_server, ("other.test",))
    queries = dns_server.zones.queries

    async def together() -> list[list[ZoneResult]]:
        return list(await asyncio.gather(*(lookups.check("127.0.0.2") for _ in range(5))))

    before = len(queries)
    results = asyncio.run(together())
    assert all(r == results[0] for r in results)
    assert [q for q in queries[before:] if q[0].endswith("other.test.")] == [
        ("2.0.0.127.other.test.", "A"),
        ("2.0.0.127.other.test.", "TXT"),
    ]


def test_a_cancelled_check_leaves_a_lookup_another_check_waits_for(dns_server: DnsServer) -> None:
    lookups = checker(dns_server, ("slow.test",), timeout=0.3)

    async def scenario() -> list[ZoneResult]:
        left = asyncio.ensure_future(lookups.check("127.0.0.2"))
        stays = asyncio.ensure_future(lookups.check("127.0.0.2"))
        await asyncio.sleep(0)  # one step: both checks have joined the lookup (the loop runs tasks in order)
        left.cancel()
        with pytest.raises(asyncio.CancelledError):
            await left
        return await stays  # the same lookup, finished by its deadline

    before = len(dns_server.zones.queries)
    assert asyncio.run(scenario())[0].reason == "no answer within 0.3 s"
    assert dns_server.zones.queries[before:] == [("2.0.0.127.slow.test.", "A")]  # asked once, not cancelled


class Hanging:
    """A resolver that never answers; each query a task of its own, ended only by cancelling it."""

    def __init__(self, expected: int) -> None:
        self.asked: list[str] = []
        self.queries: set[asyncio.Task[object]] = set()
        self.expected = expected
        self.all_asked = asyncio.Event()

    async def query(self, name: str, rdtype: str) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.queries.add(task)
        self.asked.append(name)
        if len(self.asked) == self.expected:
            self.all_asked.set()
        await asyncio.Event().wait()


def test_lookups_end_with_the_last_session_waiting_for_them() -> None:
    """Sessions that hang up leave no lookups behind: a blocklist that never answers and clients that
    connect from ever new addresses (one IPv6 /64) cannot make lookups pile up to their timeout."""

    async def scenario() -> tuple[int, int, list[bool]]:
        resolver = Hanging(expected=2 * 100)
        lookups = DnsblChecker(("a.test", "b.test"), resolver, timeout=60.0)
        screen = InboundScreen(dnsbl=lookups, dnsbl_exempt=())
        sessions = [screen.connected(f"2001:db8::{n:x}") for n in range(1, 101)]
        await resolver.all_asked.wait()
        in_flight = lookups.in_flight
        for session in sessions:
            session.close()  # every client hangs up
        done, _ = await asyncio.wait(resolver.queries)
        return in_flight, lookups.in_flight, [query.cancelled() for query in done]

    in_flight, after, cancelled = asyncio.run(scenario())
    assert (in_flight, after) == (200, 0)
    assert all(cancelled)


def test_a_shared_lookup_ends_when_its_last_session_leaves() -> None:
    async def scenario() -> tuple[int, int, bool]:
        resolver = Hanging(expected=1)
        lookups = DnsblChecker(("a.test",), resolver, timeout=60.0)
        first, second = (asyncio.ensure_future(lookups.check("192.0.2.7")) for _ in range(2))
        await resolver.all_asked.wait()
        (query,) = resolver.queries
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first
        still = lookups.in_flight
        second.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await second
        await asyncio.wait([query])
        return still, lookups.in_flight, query.cancelled()

    assert asyncio.run(scenario()) == (1, 0, True)


def test_beyond_max_in_flight_a_client_is_not_listed_and_a_warning_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "postoffice.spam")

    async def scenario() -> tuple[list[list[ZoneResult]], int]:
        resolver = Hanging(expected=3)
        lookups = DnsblChecker((ZONE,), resolver, timeout=60.0, max_in_flight=3)
        waiting = [asyncio.ensure_future(lookups.check(f"192.0.2.{n}")) for n in range(1, 4)]
        await resolver.all_asked.wait()
        refused = [await lookups.check(f"192.0.2.{n}") for n in range(4, 7)]  # at once, not looked up
        asked = len(resolver.asked)
        for check in waiting:
            check.cancel()
        await asyncio.wait(resolver.queries)
        assert lookups.in_flight == 0
        return refused, asked

    refused, asked = asyncio.run(scenario())
    assert asked == 3
    assert refused == [[ZoneResult(ZONE, "failed", reason="3 lookups in flight")]] * 3
    assert all(listed_zones(result) == () for result in refused)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "3 lookups in flight" in warnings[0]
    assert "treated as not listed" in warnings[0]


def test_a_scoped_address_is_asked_without_its_scope() -> None:
    assert query_name("fe80::1%eth0", ZONE) == query_name("fe80::1", ZONE)
    assert str(client_address("fe80::1%eth0")) == "fe80::1"
    assert str(client_address("::ffff:192.0.2.7")) == "192.0.2.7"
