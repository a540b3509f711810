"""Recipient resolution rules, on an in-memory directory."""

from __future__ import annotations

from collections.abc import Callable

from postoffice.directory.resolver import AddressLookup, resolve

DOMAINS = {"example.test", "other.test"}


def make_lookup(
    accounts: dict[str, int], aliases: dict[str, tuple[str, ...]]
) -> Callable[[str], AddressLookup]:
    def lookup(addr: str) -> AddressLookup:
        domain = addr.rpartition("@")[2]
        if domain not in DOMAINS:
            return AddressLookup(False)
        return AddressLookup(True, accounts.get(addr), aliases.get(addr))

    return lookup


def first() -> str:
    return "example.test"


def test_exact_account_and_unknown_and_foreign() -> None:
    lookup = make_lookup({"demo@example.test": 1}, {})
    assert resolve("Demo@EXAMPLE.test", lookup, first).account_ids == [1]
    assert resolve("nobody@example.test", lookup, first).status == "unknown"
    assert resolve("x@far.test", lookup, first).status == "foreign"


def test_plus_addressing_goes_to_the_base_account() -> None:
    lookup = make_lookup({"demo@example.test": 1}, {})
    r = resolve("demo+lists@example.test", lookup, first)
    assert r.status == "local"
    assert r.account_ids == [1]
    assert resolve("+x@example.test", lookup, first).status == "unknown"


def test_alias_fans_out_once_per_account_and_loops_end() -> None:
    lookup = make_lookup(
        {"a@example.test": 1, "b@example.test": 2},
        {
            "team@example.test": ("a@example.test", "b@example.test", "all@example.test"),
            "all@example.test": ("team@example.test", "a@example.test"),
        },
    )
    r = resolve("team@example.test", lookup, first)
    assert r.status == "local"
    assert r.account_ids == [1, 2]


def test_alias_to_itself_keeps_the_account_copy() -> None:
    lookup = make_lookup(
        {"a@example.test": 1, "b@example.test": 2}, {"a@example.test": ("a@example.test", "b@example.test")}
    )
    assert resolve("a@example.test", lookup, first).account_ids == [1, 2]


def test_catch_all_only_when_nothing_else_matches() -> None:
    lookup = make_lookup({"a@example.test": 1, "b@example.test": 2}, {"@example.test": ("b@example.test",)})
    assert resolve("a@example.test", lookup, first).account_ids == [1]
    assert resolve("zz@example.test", lookup, first).account_ids == [2]
    assert resolve("zz@other.test", lookup, first).status == "unknown"


def test_bare_postmaster_resolves_in_the_first_domain() -> None:
    lookup = make_lookup({}, {"postmaster@example.test": ("a@example.test",), "a@example.test": ()})
    lookup2 = make_lookup({"a@example.test": 7}, {"postmaster@example.test": ("a@example.test",)})
    assert resolve("postmaster", lookup2, first).account_ids == [7]
    assert resolve("POSTMASTER", lookup, first).status == "unknown"
    assert resolve("someone", lookup2, first).status == "unknown"


def test_remote_alias_targets_are_reported_separately() -> None:
    lookup = make_lookup({"a@example.test": 1}, {"fw@example.test": ("a@example.test", "x@far.test")})
    r = resolve("fw@example.test", lookup, first)
    assert r.account_ids == [1]
    assert r.remote == ["x@far.test"]
