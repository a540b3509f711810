"""`net.dns.DnsResolver` asking a real validating resolver (unbound, with nsd serving signed and unsigned
zones: tests/support/dnssec.py) for its DNSSEC verdict: the AD bit of answers, denials and cached answers,
bogus data as a temporary failure, and nothing of it when DNSSEC is not asked for."""

from __future__ import annotations

from collections.abc import Iterator

import dns.flags
import dns.rcode
import pytest

from postoffice.net.dns import DnsTemporaryFailure, NoSuchDomain
from tests.support.dnssec import DnssecDns
from tests.support.mail import run_bounded

ZONES = {
    "signed.test.": [
        ("signed.test.", "TXT", '"v=spf1 -all"'),
        ("www.signed.test.", "A", "192.0.2.1"),
        ("spoiled.signed.test.", "A", "192.0.2.5"),
        ("alias.signed.test.", "CNAME", "www.signed.test."),
        ("outside.signed.test.", "CNAME", "www.plain.test."),
    ],
    "child.signed.test.": [("child.signed.test.", "A", "192.0.2.2")],  # signed, DS in signed.test.
    "unsigned.signed.test.": [("unsigned.signed.test.", "A", "192.0.2.3")],  # no DS: provably insecure
    "plain.test.": [("www.plain.test.", "A", "192.0.2.4")],  # no trust anchor at all
}
SIGNED = {"signed.test.", "child.signed.test."}
BOGUS = {
    "signed.test.": [
        ("forged.signed.test.", "A", "192.0.2.66"),  # no signature at all
        ("spoiled.signed.test.", "A", "192.0.2.99"),  # spoils the signature of the RRset
    ]
}


@pytest.fixture(scope="module")
def dnssec() -> Iterator[DnssecDns]:
    with DnssecDns(ZONES, signed=SIGNED, bogus=BOGUS) as dns:
        yield dns


def test_a_signed_answer_is_secure_and_an_unsigned_one_is_not(dnssec: DnssecDns) -> None:
    resolver = dnssec.resolver()
    rrset, secure = run_bounded(resolver.query_checked("signed.test", "TXT"))
    assert rrset is not None
    assert [r.to_text() for r in rrset] == ['"v=spf1 -all"']
    assert secure
    rrset, secure = run_bounded(resolver.query_checked("www.plain.test", "A"))
    assert rrset is not None
    assert [r.to_text() for r in rrset] == ["192.0.2.4"]
    assert not secure


def test_the_chain_of_trust_runs_through_delegations(dnssec: DnssecDns) -> None:
    resolver = dnssec.resolver()
    assert run_bounded(resolver.query_checked("child.signed.test", "A"))[1]  # through the parent's DS
    rrset, secure = run_bounded(resolver.query_checked("unsigned.signed.test", "A"))
    assert rrset is not None  # the parent proves there is no DS: an insecure answer, not a failure
    assert not secure


def test_denials_carry_the_verdict(dnssec: DnssecDns) -> None:
    resolver = dnssec.resolver()
    assert run_bounded(resolver.query_checked("www.signed.test", "AAAA")) == (None, True)  # NODATA
    assert run_bounded(resolver.query_checked("www.plain.test", "AAAA")) == (None, False)
    with pytest.raises(NoSuchDomain) as signed_denial:
        run_bounded(resolver.query_checked("nothing.signed.test", "A"))
    assert signed_denial.value.secure
    with pytest.raises(NoSuchDomain) as plain_denial:
        run_bounded(resolver.query_checked("nothing.plain.test", "A"))
    assert not plain_denial.value.secure


def test_a_cname_chain_is_secure_only_when_every_link_is(dnssec: DnssecDns) -> None:
    resolver = dnssec.resolver()
    rrset, secure = run_bounded(resolver.query_checked("alias.signed.test", "A"))
    assert rrset is not None
    assert rrset.name.to_text() == "www.signed.test."  # the CNAME-expanded owner
    assert secure
    rrset, secure = run_bounded(resolver.query_checked("outside.signed.test", "A"))
    assert rrset is not None
    assert rrset.name.to_text() == "www.plain.test."
    assert not secure


def test_bogus_data_is_a_temporary_failure(dnssec: DnssecDns) -> None:
    resolver = dnssec.resolver()
    for name in ("forged.signed.test", "spoiled.signed.test"):
        with pytest.raises(DnsTemporaryFailure):
            run_bounded(resolver.query_checked(name, "A"))
        with pytest.raises(DnsTemporaryFailure):
            run_bounded(resolver.query(name, "A"))


def test_cached_answers_keep_their_verdict(dnssec: DnssecDns) -> None:
    resolver = dnssec.resolver(cache_size=100)
    assert resolver.cache is not None
    first = run_bounded(resolver.query_checked("signed.test", "TXT"))
    with pytest.raises(NoSuchDomain):
        run_bounded(resolver.query_checked("nothing.signed.test", "TXT"))
    hits = resolver.cache.hits()
    again = run_bounded(resolver.query_checked("signed.test", "TXT"))
    assert again == first
    assert again[1]
    with pytest.raises(NoSuchDomain) as cached_denial:
        run_bounded(resolver.query_checked("nothing.signed.test", "TXT"))
    assert cached_denial.value.secure
    assert run_bounded(resolver.query_checked("www.plain.test", "A"))[1] is False
    assert run_bounded(resolver.query_checked("www.plain.test", "A"))[1] is False
    assert resolver.cache.hits() == hits + 3  # answered from the cache, verdicts and all
    assert resolver.query_sync("signed.test", "TXT") == first[0]  # the blocking form shares the cache


def test_without_dnssec_nothing_is_secure_and_nothing_changes(dnssec: DnssecDns) -> None:
    resolver = dnssec.resolver(dnssec=False)
    assert resolver.arguments[1]["dnssec"] is False
    rrset, secure = run_bounded(resolver.query_checked("signed.test", "TXT"))
    assert rrset is not None
    assert not secure
    with pytest.raises(NoSuchDomain) as denial:
        run_bounded(resolver.query_checked("nothing.signed.test", "A"))
    assert not denial.value.secure
    assert dnssec.resolver().arguments[1]["dnssec"] is True


def test_the_harness_answers_with_the_ad_bit_only_for_validated_data(dnssec: DnssecDns) -> None:
    assert dnssec.ask("www.signed.test.", "A").flags & dns.flags.AD
    assert not dnssec.ask("www.plain.test.", "A").flags & dns.flags.AD
    assert dnssec.ask("forged.signed.test.", "A").rcode() == dns.rcode.SERVFAIL
    assert dnssec.ask("example.com.", "A").rcode() == dns.rcode.REFUSED  # never the internet
