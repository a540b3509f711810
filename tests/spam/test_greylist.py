"""Greylisting (RFC 6647, docs/decisions/0089) without I/O and with the store: the triplet's network and
keys, each decision on a moved clock (new, early, passed, known, expired, allowlisted, limited), what is
written, the bound on a network's new triplets, the automatic allowlist counting deliveries (not
recipients, nor concurrent retries), refreshes with a short expiry, the exempt networks, a real store's
records across a reopen, and a store that fails."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postoffice.spam.greylist import (
    REFRESH,
    Greylist,
    GreylistDecision,
    GreylistKeys,
    GreylistPolicy,
    Outcome,
    client_key,
    client_network,
    decide,
    pending_key,
    triplet_key,
)
from postoffice.store import GreylistEntry, MailStore, StoreError, open_store

T_ = TypeVar("T_")
POLICY = GreylistPolicy(delay=300, retry_window=86400, expiry=35 * 86400, auto_allowlist=3)
KEYS = GreylistKeys.of("192.0.2.0/24", "ann@remote.example", "demo@example.test")
T = KEYS.triplet
C = client_key("192.0.2.0/24")
P = pending_key("192.0.2.0/24")
WINDOW = POLICY.delay + POLICY.retry_window


def decide_with(
    now: float,
    triplet: GreylistEntry | None,
    network: GreylistEntry | None = None,
    *,
    pending: GreylistEntry | None = None,
    policy: GreylistPolicy = POLICY,
) -> GreylistDecision:
    """`decide` for KEYS with these records."""
    records = {e.key: e for e in (triplet, network, pending) if e is not None}
    return decide(now, policy, KEYS, records)


# -- the triplet -------------------------------------------------------------------------------------------
def test_an_ipv4_client_counts_by_its_24_and_an_ipv6_client_by_its_64() -> None:
    assert client_network("192.0.2.77") == "192.0.2.0/24"
    assert client_network("::ffff:192.0.2.77") == "192.0.2.0/24"
    assert client_network("2001:db8:1:2:aaaa::25") == "2001:db8:1:2::/64"
    assert client_network("fe80::1%eth0") == "fe80::/64"  # a scoped link-local address: without its scope


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
    assert bounce == triplet_key("192.0.2.0/24", "<>", "demo@example.test")


def test_a_triplet_key_has_a_fixed_size_and_keeps_no_address() -> None:
    long = triplet_key(
        "2001:db8:1:2::/64", "x" * 64 + "@" + "y" * 190 + ".example", "z" * 64 + "@example.test"
    )
    assert len(long) == len('t "2001:db8:1:2::/64" ') + 32
    assert T.startswith('t "192.0.2.0/24" ')
    assert "ann" not in T
    assert "demo" not in T


_ADDRESS = st.text(alphabet=st.sampled_from('ab @".\\ '), max_size=8)


@given(_ADDRESS, _ADDRESS, _ADDRESS, _ADDRESS)
def test_different_triplets_never_share_a_key(s1: str, r1: str, s2: str, r2: str) -> None:
    same = (s1.lower() or "<>", r1.lower()) == (s2.lower() or "<>", r2.lower())
    assert (triplet_key("n", s1, r1) == triplet_key("n", s2, r2)) == same


# -- decisions on a moved clock ----------------------------------------------------------------------------
def test_a_new_triplet_is_refused_for_the_delay_and_recorded() -> None:
    decision = decide_with(1000.0, None)
    assert (decision.accept, decision.outcome, decision.retry_after) == (False, "new", 300)
    assert decision.writes == (
        GreylistEntry(T, 1000.0, 0, 1000.0, 1000.0 + WINDOW),
        GreylistEntry(P, 1000.0, 1, 1000.0, 1000.0 + WINDOW),  # the network's first new triplet
    )
    counted = GreylistEntry(P, 900.0, 7, 950.0, 900.0 + WINDOW)
    assert decide_with(1000.0, None, pending=counted).writes[1] == GreylistEntry(
        P, 900.0, 8, 1000.0, 900 + WINDOW
    )


def test_an_early_retry_is_refused_and_does_not_restart_the_clock() -> None:
    waiting = GreylistEntry(T, 1000.0, 0, 1000.0, 1000.0 + 300 + 86400)
    decision = decide_with(1200.0, waiting)
    assert (decision.accept, decision.outcome, decision.retry_after, decision.writes) == (
        False,
        "early",
        100,
        (),
    )


def test_a_retry_after_the_delay_passes_and_counts_for_its_network() -> None:
    waiting = GreylistEntry(T, 1000.0, 0, 1000.0, 1000.0 + 300 + 86400)
    decision = decide_with(1300.0, waiting)
    assert (decision.accept, decision.outcome) == (True, "passed")
    expires = 1300.0 + POLICY.expiry
    assert decision.writes == (
        GreylistEntry(T, 1000.0, 1, 1300.0, expires),
        GreylistEntry(C, 1300.0, 1, 1300.0, expires),
    )
    counted = GreylistEntry(C, 500.0, 1, 900.0, 5000.0)
    again = decide_with(1300.0, waiting, counted)
    assert again.writes[1] == GreylistEntry(C, 500.0, 2, 1300.0, expires)


def test_a_network_counts_one_pass_per_delay_not_one_per_recipient() -> None:
    """One message retried to several recipients passes several triplets at once: one delivery for the
    automatic allowlist (postgrey's count), not one per recipient."""
    waiting = GreylistEntry(T, 1000.0, 0, 1000.0, 1000.0 + WINDOW)
    just_counted = GreylistEntry(C, 500.0, 1, 1300.0 - POLICY.delay + 1, 1300.0 + POLICY.expiry)
    decision = decide_with(1300.0, waiting, just_counted)
    assert (decision.accept, decision.outcome) == (True, "passed")
    assert decision.writes == (GreylistEntry(T, 1000.0, 1, 1300.0, 1300.0 + POLICY.expiry),)
    a_delay_ago = GreylistEntry(C, 500.0, 1, 1300.0 - POLICY.delay, 1300.0 + POLICY.expiry)
    assert decide_with(1300.0, waiting, a_delay_ago).writes[1].passes == 2


def test_a_triplet_that_passed_is_accepted_and_refreshed_at_most_hourly() -> None:
    passed = GreylistEntry(T, 1000.0, 1, 1300.0, 1300.0 + POLICY.expiry)
    soon = decide_with(1300.0 + REFRESH - 1, passed)
    assert (soon.accept, soon.outcome, soon.writes) == (True, "known", ())
    later = decide_with(1300.0 + REFRESH, passed)
    now = 1300.0 + REFRESH
    assert later.writes == (GreylistEntry(T, 1000.0, 1, now, now + POLICY.expiry),)


def test_with_an_expiry_under_two_hours_a_record_is_refreshed_after_half_of_it() -> None:
    """A steady correspondent stays known with any expiry: the record is pushed forward after half of it."""
    short = GreylistPolicy(delay=300, retry_window=86400, expiry=1800, auto_allowlist=0)
    t0 = 1_800_000_000.0
    passed = GreylistEntry(T, t0 - 400, 1, t0, t0 + short.expiry)
    assert decide_with(t0 + 899, passed, policy=short).writes == ()
    at_1000 = decide_with(t0 + 1000, passed, policy=short)
    assert (at_1000.outcome, at_1000.writes) == (
        "known",
        (GreylistEntry(T, t0 - 400, 1, t0 + 1000, t0 + 2800),),
    )
    at_2000 = decide_with(t0 + 2000, at_1000.writes[0], policy=short)  # 1000 s after the last message
    assert (at_2000.accept, at_2000.outcome) == (True, "known")
    allowlisted = GreylistPolicy(delay=300, retry_window=86400, expiry=1800, auto_allowlist=1)
    network = GreylistEntry(C, t0, 1, t0, t0 + 1800)
    assert decide_with(t0 + 1000, None, network, policy=allowlisted).writes[0].expires == t0 + 2800


def test_beyond_max_pending_new_triplets_of_a_network_are_refused_and_not_recorded() -> None:
    capped = GreylistPolicy(delay=300, retry_window=86400, expiry=86400, auto_allowlist=3, max_pending=2)
    full = GreylistEntry(P, 900.0, 2, 950.0, 900.0 + WINDOW)
    decision = decide_with(1000.0, None, pending=full, policy=capped)
    assert (decision.accept, decision.outcome, decision.retry_after, decision.writes) == (
        False,
        "limited",
        300,
        (),
    )
    # triplets already recorded go on as before, and an allowlisted network is not counted at all
    waiting = GreylistEntry(T, 1000.0, 0, 1000.0, 1000.0 + WINDOW)
    assert decide_with(1300.0, waiting, pending=full, policy=capped).outcome == "passed"
    allowlisted = GreylistEntry(C, 0.0, 3, 100.0, 100.0 + POLICY.expiry)
    assert decide_with(1000.0, None, allowlisted, pending=full, policy=capped).outcome == "allowlisted"
    # once the window is over, the count starts again
    later = decide_with(900.0 + WINDOW, None, pending=full, policy=capped)
    assert later.outcome == "new"
    assert later.writes[1] == GreylistEntry(P, 900.0 + WINDOW, 1, 900.0 + WINDOW, 900.0 + 2 * WINDOW)


def test_an_expired_record_starts_the_triplet_again() -> None:
    waiting = GreylistEntry(T, 1000.0, 0, 1000.0, 1000.0 + 300 + 86400)
    late = 1000.0 + 300 + 86400
    decision = decide_with(late, waiting)
    assert (decision.accept, decision.outcome) == (False, "new")
    assert decision.writes[0].first_seen == late


def test_a_network_with_enough_passed_triplets_is_no_longer_greylisted() -> None:
    two = GreylistEntry(C, 0.0, 2, 100.0, 100.0 + POLICY.expiry)
    assert decide_with(200.0, None, two).outcome == "new"
    three = GreylistEntry(C, 0.0, 3, 100.0, 100.0 + POLICY.expiry)
    decision = decide_with(200.0, None, three)
    assert (decision.accept, decision.outcome, decision.writes) == (True, "allowlisted", ())
    never = GreylistPolicy(delay=300, retry_window=86400, expiry=86400, auto_allowlist=0)
    assert decide_with(200.0, None, GreylistEntry(C, 0.0, 99, 100.0, 9e9), policy=never).outcome == "new"


def test_with_no_delay_the_first_try_is_still_refused_and_the_next_passes() -> None:
    quick = GreylistPolicy(delay=0, retry_window=60, expiry=86400, auto_allowlist=0)
    first = decide_with(10.0, None, policy=quick)
    assert not first.accept
    assert decide_with(10.0, first.writes[0], policy=quick).outcome == "passed"


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


def with_store(path: Path, scenario: Callable[[MailStore], Awaitable[T_]]) -> T_:
    async def run() -> T_:
        store = open_store(path)
        try:
            return await scenario(store)
        finally:
            await store.close()

    return asyncio.run(run())


RECIPIENTS = [f"user{n}@example.test" for n in range(5)]


def test_one_message_retried_to_five_recipients_does_not_allowlist_its_network(tmp_path: Path) -> None:
    clock = Clock(1_800_000_000.0)
    policy = GreylistPolicy(delay=300, retry_window=86400, expiry=35 * 86400, auto_allowlist=5)

    async def scenario(store: MailStore) -> tuple[list[Outcome], list[Outcome], Outcome, int]:
        grey = Greylist(store, policy, clock=clock)
        first = [(await grey.check("203.0.113.9", "bulk@spam.example", r)).outcome for r in RECIPIENTS]
        clock.now += 300
        retry = [(await grey.check("203.0.113.9", "bulk@spam.example", r)).outcome for r in RECIPIENTS]
        other = await grey.check("203.0.113.200", "other@elsewhere.example", "victim@example.test")
        key = client_key("203.0.113.0/24")
        return first, retry, other.outcome, (await store.greylist_entries([key], clock.now))[key].passes

    first, retry, other, passes = with_store(tmp_path / "mail.sqlite3", scenario)
    assert (first, retry) == (["new"] * 5, ["passed"] * 5)
    assert (other, passes) == ("new", 1)


def test_concurrent_checks_of_one_network_lose_no_count(tmp_path: Path) -> None:
    """Two connections of one sending server retrying one triplet at once count it once; new triplets
    tried at once are each counted against the network's bound."""
    clock = Clock(1_800_000_000.0)
    capped = GreylistPolicy(delay=300, retry_window=86400, expiry=35 * 86400, auto_allowlist=5, max_pending=3)

    async def scenario(store: MailStore) -> tuple[list[str], list[str], int]:
        grey = Greylist(store, capped, clock=clock)
        assert (await grey.check("198.51.100.7", "a@sender.example", "demo@example.test")).outcome == "new"
        clock.now += 301
        both = await asyncio.gather(
            grey.check("198.51.100.7", "a@sender.example", "demo@example.test"),
            grey.check("198.51.100.8", "a@sender.example", "demo@example.test"),
        )
        many = await asyncio.gather(*(grey.check("198.51.100.9", "b@sender.example", r) for r in RECIPIENTS))
        key = client_key("198.51.100.0/24")
        passes = (await store.greylist_entries([key], clock.now))[key].passes
        return [d.outcome for d in both], [d.outcome for d in many], passes

    both, many, passes = with_store(tmp_path / "mail.sqlite3", scenario)
    assert (sorted(both), passes) == (["known", "passed"], 1)
    assert sorted(many) == ["limited"] * 3 + ["new"] * 2  # 1 + 2 new triplets: the bound; 3 not recorded


def test_a_store_that_fails_to_read_lets_the_recipient_pass(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "mail.sqlite3"
    with_store(path, lambda store: store.greylist_entries(["x"], 0.0))  # made, with its schema
    caplog.set_level(logging.WARNING, "postoffice.spam")

    async def scenario(store: MailStore) -> str:
        await store.greylist_entries(["x"], 0.0)  # the reader is open
        with contextlib.closing(sqlite3.connect(path)) as other:
            other.execute("DROP TABLE greylist")
            other.commit()
        with pytest.raises(StoreError):
            await store.greylist_entries([T], 0.0)
        return (await Greylist(store, POLICY).check("192.0.2.7", "a@x.example", "demo@example.test")).outcome

    assert with_store(path, scenario) == "unavailable"
    assert any("the store failed" in r.getMessage() for r in caplog.records)
