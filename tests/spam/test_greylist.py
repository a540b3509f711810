"""Greylisting (RFC 6647, docs/decisions/0089) without I/O and with the store: the triplet's network and
keys, each decision on a moved clock (new, early, passed, known, expired, allowlisted), what is written, the
exempt networks, and a real store's records across a reopen."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from postoffice.spam.greylist import (
    REFRESH,
    Greylist,
    GreylistPolicy,
    client_key,
    client_network,
    decide,
    triplet_key,
)
from postoffice.store import GreylistEntry, MailStore, open_store

POLICY = GreylistPolicy(delay=300, retry_window=86400, expiry=35 * 86400, auto_allowlist=3)
T = triplet_key("192.0.2.0/24", "ann@remote.example", "demo@example.test")
C = client_key("192.0.2.0/24")


# -- the triplet -------------------------------------------------------------------------------------------
def test_an_ipv4_client_counts_by_its_24_and_an_ipv6_client_by_its_64() -> None:
    assert client_network("192.0.2.77") == "192.0.2.0/24"
    assert client_network("::ffff:192.0.2.77") == "192.0.2.0/24"
    assert client_network("2001:db8:1:2:aaaa::25") == "2001:db8:1:2::/64"


@given(st.ip_addresses(), st.integers(min_value=0, max_value=255))
def test_every_address_of_one_network_makes_the_same_triplet(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, low: int
) -> None:
    network = client_network(str(address))
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    assert (mapped or address) in ipaddress.ip_network(network)
    assert ipaddress.ip_network(network).prefixlen == (24 if (mapped or address).version == 4 else 64)
    neighbour = ipaddress.ip_network(network)[low]  # another address of the same /24 or /64
    assert client_network(str(neighbour)) == network


def test_sender_and_recipient_compare_without_case_and_the_null_sender_is_its_own() -> None:
    assert triplet_key("192.0.2.0/24", "Ann@Remote.Example", "DEMO@example.test") == T
    bounce = triplet_key("192.0.2.0/24", "", "demo@example.test")
    assert bounce != T
    assert '"<>"' in bounce


_ADDRESS = st.text(alphabet=st.sampled_from('ab @".\\ '), max_size=8)


@given(_ADDRESS, _ADDRESS, _ADDRESS, _ADDRESS)
def test_different_triplets_never_share_a_key(s1: str, r1: str, s2: str, r2: str) -> None:
    same = (s1.lower() or "<>", r1.lower()) == (s2.lower() or "<>", r2.lower())
    assert (triplet_key("n", s1, r1) == triplet_key("n", s2, r2)) == same


# -- decisions on a moved clock ----------------------------------------------------------------------------
def test_a_new_triplet_is_refused_for_the_delay_and_recorded() -> None:
    decision = decide(1000.0, POLICY, T, None, C, None)
    assert (decision.accept, decision.outcome, decision.retry_after) == (False, "new", 300)
    assert decision.writes == (GreylistEntry(T, 1000.0, 0, 1000.0, 1000.0 + 300 + 86400),)


def test_an_early_retry_is_refused_and_does_not_restart_the_clock() -> None:
    waiting = GreylistEntry(T, 1000.0, 0, 1000.0, 1000.0 + 300 + 86400)
    decision = decide(1200.0, POLICY, T, waiting, C, None)
    assert (decision.accept, decision.outcome, decision.retry_after, decision.writes) == (
        False,
        "early",
        100,
        (),
    )


def test_a_retry_after_the_delay_passes_and_counts_for_its_network() -> None:
    waiting = GreylistEntry(T, 1000.0, 0, 1000.0, 1000.0 + 300 + 86400)
    decision = decide(1300.0, POLICY, T, waiting, C, None)
    assert (decision.accept, decision.outcome) == (True, "passed")
    expires = 1300.0 + POLICY.expiry
    assert decision.writes == (
        GreylistEntry(T, 1000.0, 1, 1300.0, expires),
        GreylistEntry(C, 1300.0, 1, 1300.0, expires),
    )
    counted = GreylistEntry(C, 500.0, 1, 900.0, 5000.0)
    again = decide(1300.0, POLICY, T, waiting, C, counted)
    assert again.writes[1] == GreylistEntry(C, 500.0, 2, 1300.0, expires)


def test_a_triplet_that_passed_is_accepted_and_refreshed_at_most_hourly() -> None:
    passed = GreylistEntry(T, 1000.0, 1, 1300.0, 1300.0 + POLICY.expiry)
    soon = decide(1300.0 + REFRESH - 1, POLICY, T, passed, C, None)
    assert (soon.accept, soon.outcome, soon.writes) == (True, "known", ())
    later = decide(1300.0 + REFRESH, POLICY, T, passed, C, None)
    now = 1300.0 + REFRESH
    assert later.writes == (GreylistEntry(T, 1000.0, 1, now, now + POLICY.expiry),)


def test_an_expired_record_starts_the_triplet_again() -> None:
    waiting = GreylistEntry(T, 1000.0, 0, 1000.0, 1000.0 + 300 + 86400)
    late = 1000.0 + 300 + 86400
    decision = decide(late, POLICY, T, waiting, C, None)
    assert (decision.accept, decision.outcome) == (False, "new")
    assert decision.writes[0].first_seen == late


def test_a_network_with_enough_passed_triplets_is_no_longer_greylisted() -> None:
    two = GreylistEntry(C, 0.0, 2, 100.0, 100.0 + POLICY.expiry)
    assert decide(200.0, POLICY, T, None, C, two).outcome == "new"
    three = GreylistEntry(C, 0.0, 3, 100.0, 100.0 + POLICY.expiry)
    decision = decide(200.0, POLICY, T, None, C, three)
    assert (decision.accept, decision.outcome, decision.writes) == (True, "allowlisted", ())
    never = GreylistPolicy(delay=300, retry_window=86400, expiry=86400, auto_allowlist=0)
    assert decide(200.0, never, T, None, C, GreylistEntry(C, 0.0, 99, 100.0, 9e9)).outcome == "new"


def test_with_no_delay_the_first_try_is_still_refused_and_the_next_passes() -> None:
    quick = GreylistPolicy(delay=0, retry_window=60, expiry=86400, auto_allowlist=0)
    first = decide(10.0, quick, T, None, C, None)
    assert not first.accept
    assert decide(10.0, quick, T, first.writes[0], C, None).outcome == "passed"


# -- with the store ----------------------------------------------------------------------------------------
class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_greylisting_with_the_store_survives_a_reopen_and_exempts_its_networks(tmp_path: Path) -> None:
    path = tmp_path / "mail.sqlite3"
    clock = Clock(1_000_000.0)

    async def first(store: MailStore) -> list[str]:
        grey = Greylist(store, POLICY, exempt=("127.0.0.0/8", "198.51.100.0/24"), clock=clock)
        outcomes: list[str] = [
            (await grey.check("192.0.2.10", "ann@remote.example", "demo@example.test")).outcome
        ]
        clock.now += 299
        outcomes.append((await grey.check("192.0.2.11", "ann@remote.example", "demo@example.test")).outcome)
        outcomes.append((await grey.check("127.0.0.1", "ann@remote.example", "demo@example.test")).outcome)
        outcomes.append((await grey.check("198.51.100.9", "x@y.example", "demo@example.test")).outcome)
        return outcomes

    async def second(store: MailStore) -> list[str]:
        grey = Greylist(store, POLICY, clock=clock)
        clock.now += 1
        outcomes: list[str] = [
            (await grey.check("192.0.2.12", "ANN@remote.example", "demo@example.test")).outcome
        ]
        outcomes.append((await grey.check("192.0.2.12", "ann@remote.example", "demo@example.test")).outcome)
        return outcomes

    async def run(scenario: Callable[[MailStore], Awaitable[list[str]]]) -> list[str]:
        store = open_store(path)
        try:
            return await scenario(store)
        finally:
            await store.close()

    assert asyncio.run(run(first)) == ["new", "early", "exempt", "exempt"]
    assert asyncio.run(run(second)) == ["passed", "known"]
