"""DMARC evaluation (RFC 9989; sections as numbered in draft-ietf-dmarc-dmarcbis-41) against a real DNS server
on loopback: policy discovery by the DNS Tree Walk, the Organizational Domain with psd=, relaxed and strict
alignment, p/sp/np, t=y, malformed and duplicate records, DNS failures, the query bound; record parsing and
the Author Domain as properties."""

from __future__ import annotations

import itertools
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from postoffice.mailauth.dmarc import (
    MAX_WALK_QUERIES,
    DmarcRecord,
    DmarcResult,
    check_dmarc,
    from_domain_of,
    parse_record,
    tree_walk_names,
)
from postoffice.net.dns import DnsResolver
from tests.support.dns_server import DnsServer, Zones
from tests.support.mail import run_bounded


@dataclass
class Dns:
    """One test's view of the module's DNS server: what it adds or breaks is removed after the test."""

    zones: Zones
    port: int
    names: set[str]

    def add(self, name: str, rdtype: str, text: str) -> None:
        name = name.rstrip(".") + "."
        self.names.add(name)
        self.zones.add(name, rdtype, text)

    def dmarc(self, domain: str, *records: str) -> None:
        for record in records:
            self.add(f"_dmarc.{domain}", "TXT", f'"{record}"')

    def fail(self, name: str, rcode: str = "SERVFAIL") -> None:
        name = name.rstrip(".") + "."
        self.names.add(name)
        self.zones.fail(name, rcode)

    def check(
        self,
        from_domain: str,
        *,
        spf: tuple[str, str] = ("none", ""),
        dkim: Sequence[str] = (),
    ) -> DmarcResult:
        resolver = DnsResolver(["127.0.0.1"], port=self.port, timeout=1, lifetime=2)
        self.zones.queries.clear()
        return run_bounded(
            check_dmarc(
                resolver, from_domain=from_domain, spf_result=spf[0], spf_domain=spf[1], dkim_passes=dkim
            )
        )

    def asked(self, rdtype: str = "TXT") -> list[str]:
        return [name.rstrip(".") for name, kind in self.zones.queries if kind == rdtype]


@pytest.fixture(scope="module")
def server() -> Iterator[DnsServer]:
    with DnsServer(Zones()) as server:
        yield server


@pytest.fixture
def dns(server: DnsServer) -> Iterator[Dns]:
    view = Dns(server.zones, server.port, set())
    try:
        yield view
    finally:
        for name in view.names:
            server.zones.clear(name)


# -- policy discovery (section 4.10.1) --------------------------------------------------------------------


def test_a_record_at_the_author_domain_applies_its_p(dns: Dns) -> None:
    dns.dmarc("example.org", "v=DMARC1; p=reject; sp=none; np=none")
    result = dns.check("example.org", spf=("fail", "example.org"))
    assert (result.result, result.policy, result.record_domain) == ("fail", "reject", "example.org")
    assert result.reason == "no aligned SPF or DKIM pass"
    assert result.record is not None
    assert result.record.policy == "reject"
    assert dns.asked() == ["_dmarc.example.org"]  # no walk: the author's record, strict facts only


def test_an_spf_pass_for_the_author_domain_itself_passes_with_one_query(dns: Dns) -> None:
    dns.dmarc("example.org", "v=DMARC1; p=reject")
    result = dns.check("Example.ORG", spf=("pass", "example.org"))
    assert (result.result, result.policy, result.from_domain) == ("pass", "none", "example.org")
    assert result.org_domain == ""  # not needed (section 4.10.2's notes), so not looked up
    assert len(dns.zones.queries) == 1


def test_without_a_record_anywhere_the_result_is_none(dns: Dns) -> None:
    dns.add("example.org", "A", "192.0.2.1")
    result = dns.check("mail.example.org", spf=("fail", "example.org"))
    assert (result.result, result.policy, result.record_domain, result.record) == ("none", "none", "", None)
    assert dns.asked() == ["_dmarc.mail.example.org", "_dmarc.example.org", "_dmarc.org"]
    assert result.org_domain == ""


def test_the_tree_walk_finds_the_record_at_a_parent_and_applies_sp(dns: Dns) -> None:
    dns.dmarc("example.org", "v=DMARC1; p=none; sp=reject; np=quarantine")
    dns.add("a.b.example.org", "MX", "10 mx.example.org.")  # exists
    result = dns.check("a.b.example.org", dkim=["example.net"])
    assert (result.result, result.policy) == ("fail", "reject")
    assert (result.record_domain, result.org_domain) == ("example.org", "example.org")
    assert dns.asked() == [
        "_dmarc.a.b.example.org",
        "_dmarc.b.example.org",
        "_dmarc.example.org",
        "_dmarc.org",
    ]
    assert dns.asked("A") == ["a.b.example.org"]  # the existence test (appendix A.4)


def test_a_subdomain_without_sp_gets_p(dns: Dns) -> None:
    dns.dmarc("example.org", "v=DMARC1; p=quarantine")
    dns.add("news.example.org", "A", "192.0.2.7")
    result = dns.check("news.example.org")
    assert (result.result, result.policy) == ("fail", "quarantine")
    assert dns.asked("A") == []  # p, sp and np are all the same: existence cannot change anything


def test_np_applies_to_a_subdomain_that_does_not_exist(dns: Dns) -> None:
    dns.dmarc("example.org", "v=DMARC1; p=none; sp=quarantine; np=reject")
    result = dns.check("ghost.example.org", spf=("pass", "spammer.example"))
    assert (result.result, result.policy, result.record_domain) == ("fail", "reject", "example.org")
    assert dns.asked("A") == ["ghost.example.org"]


def test_without_np_a_nonexistent_subdomain_gets_sp(dns: Dns) -> None:
    dns.dmarc("example.org", "v=DMARC1; p=none; sp=quarantine")
    result = dns.check("ghost.example.org")
    assert (result.result, result.policy) == ("fail", "quarantine")


def test_a_name_with_records_of_other_types_exists(dns: Dns) -> None:
    dns.dmarc("example.org", "v=DMARC1; p=none; np=reject")
    dns.add("txtonly.example.org", "TXT", '"hello"')  # NODATA for A, not NXDOMAIN: it exists
    result = dns.check("txtonly.example.org")
    assert (result.result, result.policy) == ("fail", "none")


def test_the_org_domain_record_applies_not_an_intermediate_one(dns: Dns) -> None:
    # Section 4.10.2 rule 3: the record with the fewest labels makes the Organizational Domain, and the policy
    # comes from the org domain's record (4.10.1; appendix B.4.2).
    dns.dmarc("mail.example.org", "v=DMARC1; p=none")
    dns.dmarc("example.org", "v=DMARC1; p=reject")
    dns.add("a.mail.example.org", "A", "192.0.2.1")
    result = dns.check("a.mail.example.org", spf=("pass", "example.org"))
    assert (result.result, result.org_domain, result.record_domain) == ("pass", "example.org", "example.org")
    assert "SPF pass for example.org" in result.reason
    failed = dns.check("a.mail.example.org")
    assert (failed.result, failed.policy) == ("fail", "reject")


def test_psd_n_makes_its_domain_the_organizational_domain(dns: Dns) -> None:
    dns.dmarc("mail.example.org", "v=DMARC1; p=quarantine; psd=n")
    dns.dmarc("example.org", "v=DMARC1; p=reject")
    dns.add("a.mail.example.org", "A", "192.0.2.1")
    result = dns.check("a.mail.example.org", spf=("pass", "example.org"))
    # example.org is not under mail.example.org: not aligned, and it is not even walked
    assert (result.result, result.policy) == ("fail", "quarantine")
    assert (result.org_domain, result.record_domain) == ("mail.example.org", "mail.example.org")
    assert dns.asked() == ["_dmarc.a.mail.example.org", "_dmarc.mail.example.org"]  # the walk stops at psd=n


def test_psd_y_puts_the_organizational_domain_one_label_below(dns: Dns) -> None:
    # Appendix B.4.3, with the names given there.
    dns.dmarc("bank.example", "v=DMARC1; p=reject; psd=y")
    dns.dmarc("giant.bank.example", "v=DMARC1; p=quarantine")
    passed = dns.check("giant.bank.example", spf=("pass", "mail.giant.bank.example"))
    assert (passed.result, passed.org_domain, passed.record_domain) == (
        "pass",
        "giant.bank.example",
        "giant.bank.example",
    )
    failed = dns.check("giant.bank.example", dkim=["mail.mega.bank.example"])
    assert (failed.result, failed.policy) == ("fail", "quarantine")
    assert "_dmarc.mail.mega.bank.example" not in dns.asked()  # not under giant.bank.example: no walk


def test_the_psd_record_applies_when_the_organizational_domain_has_none(dns: Dns) -> None:
    dns.dmarc("bank.example", "v=DMARC1; p=reject; sp=quarantine; psd=y")
    dns.add("mail.tiny.bank.example", "A", "192.0.2.9")
    result = dns.check("mail.tiny.bank.example", dkim=["other.bank.example"])
    assert (result.result, result.policy) == ("fail", "quarantine")
    assert (result.org_domain, result.record_domain) == ("tiny.bank.example", "bank.example")
    aligned = dns.check("mail.tiny.bank.example", dkim=["other.bank.example", "tiny.bank.example"])
    assert (aligned.result, aligned.org_domain) == ("pass", "tiny.bank.example")
    assert "DKIM pass for tiny.bank.example" in aligned.reason


def test_psd_y_at_the_author_domain_itself_makes_it_its_own_org_domain(dns: Dns) -> None:
    dns.dmarc("bank.example", "v=DMARC1; p=reject; psd=y")
    result = dns.check("bank.example", spf=("pass", "x.bank.example"))
    # x.bank.example's own org domain is itself (one label below the PSD): not aligned with bank.example
    assert (result.result, result.policy, result.org_domain) == ("fail", "reject", "bank.example")


# -- alignment (sections 3.2.10, 4.4) ----------------------------------------------------------------------


def test_spf_relaxed_alignment_passes_and_strict_does_not(dns: Dns) -> None:
    dns.dmarc("example.org", "v=DMARC1; p=reject")
    dns.dmarc("strict.example", "v=DMARC1; p=reject; aspf=s")
    relaxed = dns.check("example.org", spf=("pass", "bounce.example.org"))
    assert (relaxed.result, relaxed.org_domain) == ("pass", "example.org")
    dns.add("bounce.strict.example", "A", "192.0.2.1")
    strict = dns.check("strict.example", spf=("pass", "bounce.strict.example"))
    assert (strict.result, strict.policy) == ("fail", "reject")


def test_dkim_relaxed_alignment_passes_and_strict_does_not(dns: Dns) -> None:
    dns.dmarc("example.org", "v=DMARC1; p=reject")
    dns.dmarc("strict.example", "v=DMARC1; p=reject; adkim=s")
    dns.add("news.example.org", "A", "192.0.2.1")
    dns.add("news.strict.example", "A", "192.0.2.1")
    assert dns.check("news.example.org", dkim=["example.org"]).result == "pass"
    assert dns.check("news.strict.example", dkim=["strict.example"]).result == "fail"
    assert dns.check("news.strict.example", dkim=["strict.example", "news.strict.example"]).result == "pass"


def test_strict_dkim_does_not_stop_relaxed_spf(dns: Dns) -> None:
    dns.dmarc("example.org", "v=DMARC1; p=reject; adkim=s")
    assert (
        dns.check("example.org", spf=("pass", "bounce.example.org"), dkim=["mail.example.org"]).result
        == "pass"
    )


def test_the_result_says_which_methods_were_aligned_for_the_aggregate_report(dns: Dns) -> None:
    """RFC 9990's policy_evaluated has a DKIM and an SPF result each: the evaluation reports both, not only
    the first aligned pass it found."""
    dns.dmarc("example.org", "v=DMARC1; p=reject; adkim=s")
    both = dns.check("example.org", spf=("pass", "example.org"), dkim=["example.org"])
    assert (both.result, both.spf_aligned, both.dkim_aligned) == ("pass", True, True)
    spf_only = dns.check("example.org", spf=("pass", "bounce.example.org"), dkim=["mail.example.org"])
    assert (spf_only.result, spf_only.spf_aligned, spf_only.dkim_aligned) == ("pass", True, False)
    dkim_only = dns.check("example.org", spf=("pass", "other.example"), dkim=["example.org"])
    assert (dkim_only.result, dkim_only.spf_aligned, dkim_only.dkim_aligned) == ("pass", False, True)
    neither = dns.check("example.org", spf=("fail", "example.org"), dkim=["other.example"])
    assert (neither.result, neither.spf_aligned, neither.dkim_aligned) == ("fail", False, False)


def test_spf_counts_only_with_pass(dns: Dns) -> None:
    dns.dmarc("example.org", "v=DMARC1; p=reject")
    for spf_result in ("softfail", "neutral", "fail", "temperror", "none"):
        assert dns.check("example.org", spf=(spf_result, "example.org")).result == "fail"
    assert dns.check("example.org", spf=("PASS", "example.org")).result == "pass"


def test_a_subdomain_with_its_own_psd_n_record_is_not_aligned_with_its_parent(dns: Dns) -> None:
    dns.dmarc("example.org", "v=DMARC1; p=reject")
    dns.dmarc("evil.example.org", "v=DMARC1; p=none; psd=n")  # its own organization (section 11.8)
    result = dns.check("example.org", spf=("pass", "evil.example.org"))
    assert (result.result, result.policy) == ("fail", "reject")


def test_an_unrelated_signing_domain_costs_no_query(dns: Dns) -> None:
    dns.dmarc("example.org", "v=DMARC1; p=reject")
    result = dns.check("example.org", dkim=[f"d{i}.example.net" for i in range(50)])
    assert result.result == "fail"
    assert dns.asked() == ["_dmarc.example.org", "_dmarc.org"]  # the author's walk only


# -- t=y (section 4.7, appendix A.6) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "applied"),
    [
        ("v=DMARC1; p=reject; t=y", "quarantine"),
        ("v=DMARC1; p=quarantine; t=y", "none"),
        ("v=DMARC1; p=none; t=y", "none"),
        ("v=DMARC1; p=reject; t=n", "reject"),
        ("v=DMARC1; p=reject; pct=0", "reject"),  # pct is gone (appendix A.6): an unknown tag
    ],
)
def test_t_y_applies_the_next_lower_policy(dns: Dns, record: str, applied: str) -> None:
    dns.dmarc("example.org", record)
    result = dns.check("example.org")
    assert (result.result, result.policy) == ("fail", applied)
    if "t=y" in record and applied != "none":
        assert "t=y: reject applied as quarantine" in result.reason


def test_t_y_also_lowers_sp_and_np(dns: Dns) -> None:
    dns.dmarc("example.org", "v=DMARC1; p=none; np=reject; t=y")
    assert dns.check("ghost.example.org").policy == "quarantine"


# -- records: several, malformed, split (sections 4.5, 4.7, 4.8, 4.10, 4.10.1) ------------------------------


def test_several_records_at_one_name_count_as_none(dns: Dns) -> None:
    dns.dmarc("example.org", "v=DMARC1; p=reject", "v=DMARC1; p=none")
    result = dns.check("example.org")
    assert (result.result, result.policy) == ("none", "none")
    assert "several records at _dmarc.example.org" in result.reason


def test_several_records_at_the_author_domain_let_the_walk_go_on(dns: Dns) -> None:
    dns.dmarc("sub.example.org", "v=DMARC1; p=none", "v=DMARC1; p=none; rua=mailto:d@example.org")
    dns.dmarc("example.org", "v=DMARC1; p=reject; sp=quarantine")
    dns.add("sub.example.org", "A", "192.0.2.1")
    result = dns.check("sub.example.org")
    assert (result.result, result.policy, result.record_domain) == ("fail", "quarantine", "example.org")


def test_other_txt_records_beside_the_dmarc_record_are_not_counted(dns: Dns) -> None:
    dns.dmarc("example.org", "v=DMARC1; p=reject", "v=spf1 -all", "v=DMARC2; p=none", "p=none; v=DMARC1")
    assert dns.check("example.org").policy == "reject"


def test_the_strings_of_one_txt_record_are_joined(dns: Dns) -> None:
    dns.add("_dmarc.example.org", "TXT", '"v=DMARC1; " "p=rej" "ect"')
    assert dns.check("example.org").policy == "reject"


def test_a_record_without_a_valid_p_and_without_rua_is_a_permerror(dns: Dns) -> None:
    dns.dmarc("example.org", "v=DMARC1; p=rejectt")
    result = dns.check("example.org", spf=("pass", "example.org"))
    assert (result.result, result.policy, result.record_domain) == ("permerror", "none", "example.org")
    assert result.record is not None
    assert result.record.invalid_tags == ("p",)


@pytest.mark.parametrize(
    "record",
    [
        "v=DMARC1; rua=mailto:dmarc@example.org",  # no p at all
        "v=DMARC1; p=bogus; rua=mailto:dmarc@example.org",
        "v=DMARC1; p=reject; sp=bogus; rua=mailto:dmarc@example.org",
        "v=DMARC1; p=reject; np=; rua=mailto:dmarc@example.org, nonsense",
    ],
)
def test_a_record_without_a_valid_policy_but_with_rua_acts_as_p_none(dns: Dns, record: str) -> None:
    dns.dmarc("example.org", record)
    result = dns.check("ghost.example.org")
    assert (result.result, result.policy, result.record_domain) == ("fail", "none", "example.org")
    assert dns.check("example.org", spf=("pass", "example.org")).result == "pass"


def test_a_bad_alignment_tag_falls_back_to_relaxed(dns: Dns) -> None:
    dns.dmarc("example.org", "v=DMARC1; p=reject; aspf=x; adkim=")
    result = dns.check("example.org", spf=("pass", "mail.example.org"))
    assert result.result == "pass"


# -- DNS failures (sections 4.10.1, 5.3.6) ---------------------------------------------------------------


def test_a_failing_author_lookup_is_a_temperror(dns: Dns) -> None:
    dns.fail("_dmarc.example.org")
    result = dns.check("example.org", spf=("pass", "example.org"))
    assert (result.result, result.policy) == ("temperror", "none")
    assert result.reason.startswith("DNS: TXT lookup for _dmarc.example.org failed")


def test_a_failure_during_the_walk_is_a_temperror(dns: Dns) -> None:
    dns.dmarc("example.org", "v=DMARC1; p=reject")
    dns.fail("_dmarc.b.example.org", "REFUSED")
    assert dns.check("a.b.example.org").result == "temperror"


def test_a_failing_existence_test_is_a_temperror(dns: Dns) -> None:
    dns.dmarc("example.org", "v=DMARC1; p=none; np=reject")
    dns.fail("sub.example.org")
    result = dns.check("sub.example.org")
    assert (result.result, result.policy, result.record_domain) == ("temperror", "none", "example.org")


def test_a_failure_does_not_spoil_a_pass_from_another_identifier(dns: Dns) -> None:
    dns.dmarc("example.org", "v=DMARC1; p=reject")
    dns.fail("_dmarc.broken.example.org")
    both = dns.check("example.org", dkim=["broken.example.org", "mail.example.org"])
    assert both.result == "pass"
    only_broken = dns.check("example.org", dkim=["broken.example.org"])
    assert only_broken.result == "temperror"


def test_a_dead_resolver_is_a_temperror() -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        resolver = DnsResolver(["127.0.0.1"], port=silent.getsockname()[1], timeout=0.2, lifetime=0.4)
        result = run_bounded(
            check_dmarc(
                resolver, from_domain="example.org", spf_result="pass", spf_domain="x", dkim_passes=[]
            )
        )
    finally:
        silent.close()
    assert (result.result, result.policy) == ("temperror", "none")
    assert "timed out" in result.reason


# -- bounds and names --------------------------------------------------------------------------------------


def test_a_deep_author_domain_costs_at_most_eight_queries(dns: Dns) -> None:
    # The example of section 4.10: from a name of more than 8 labels straight to its 7 rightmost.
    author = "a.b.c.d.e.f.g.h.i.j.mail.example.com"
    dns.dmarc("com", "v=DMARC1; p=reject; np=quarantine; psd=y")
    result = dns.check(author, dkim=["example.net"])
    assert dns.asked() == [
        f"_dmarc.{name}"
        for name in (
            author,
            "g.h.i.j.mail.example.com",
            "h.i.j.mail.example.com",
            "i.j.mail.example.com",
            "j.mail.example.com",
            "mail.example.com",
            "example.com",
            "com",
        )
    ]
    assert (result.result, result.record_domain, result.org_domain) == ("fail", "com", "example.com")
    assert result.policy == "quarantine"  # the author does not exist: the PSD record's np
    assert len(dns.zones.queries) == MAX_WALK_QUERIES + 1  # with the existence test
    # example.com's own org domain is itself (one label below the psd=y): aligned, and its walk
    # (example.com, com) reuses what the author's walk asked in this check
    aligned = dns.check(author, dkim=["example.com"])
    assert (aligned.result, aligned.org_domain) == ("pass", "example.com")
    assert len(dns.zones.queries) == MAX_WALK_QUERIES


def test_a_name_too_long_for_a_dmarc_label_is_not_asked(dns: Dns) -> None:
    author = ".".join(["a" * 60] * 4)[:250].rstrip(".") + ".example"
    dns.dmarc("example", "v=DMARC1; p=quarantine")
    result = dns.check(author)
    assert result.result == "fail"
    assert f"_dmarc.{author}" not in dns.asked()


def test_an_idn_from_domain_is_evaluated_in_a_labels(dns: Dns) -> None:
    dns.dmarc("xn--bcher-kva.example", "v=DMARC1; p=reject")
    domain = from_domain_of(['"Bücher" <info@Bücher.example>'])
    assert domain == "xn--bcher-kva.example"
    result = dns.check(domain, dkim=["bücher.example"])
    assert (result.result, result.from_domain) == ("pass", "xn--bcher-kva.example")
    unicode_form = dns.check("bücher.example")
    assert (unicode_form.result, unicode_form.policy, unicode_form.from_domain) == (
        "fail",
        "reject",
        "xn--bcher-kva.example",
    )


def test_a_from_domain_that_is_no_host_name_is_a_permerror(dns: Dns) -> None:
    for bad in ("", "exa mple.org", "[192.0.2.1]", "a..b"):
        result = dns.check(bad)
        assert (result.result, result.policy, result.record) == ("permerror", "none", None)
    assert dns.zones.queries == []


# -- parse_record (sections 4.7, 4.8) ---------------------------------------------------------------------


def test_parse_record_reads_every_tag() -> None:
    record = parse_record(
        "v=DMARC1;p=Quarantine; sp = reject ;np=none; adkim=s; aspf=S; t=y; psd=n; fo=1:d;"
        " rua=mailto:agg@example.org!10m, mailto:other@example.net; ruf=mailto:f@example.org; ri=3600;"
    )
    assert record == DmarcRecord(
        raw=record.raw if record else "",
        policy="quarantine",
        subdomain_policy="reject",
        nonexistent_policy="none",
        adkim="s",
        aspf="s",
        testing=True,
        psd="n",
        rua=("mailto:agg@example.org", "mailto:other@example.net"),
        ruf=("mailto:f@example.org",),
        failure_options="1:d",
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "p=reject; v=DMARC1",
        "v=dmarc1; p=reject",
        "v=DMARC1x; p=reject",
        "v=DMARC2",
        "x v=DMARC1",
        "v:DMARC1",
    ],
)
def test_parse_record_refuses_what_does_not_begin_with_v_dmarc1(text: str) -> None:
    assert parse_record(text) is None


def test_parse_record_defaults_and_ignores() -> None:
    record = parse_record(
        "V = DMARC1 ; p=reject; p=none; adkim=x; fo=0:1; rua=not a uri; bogus=1; 9x=1; junk"
    )
    assert record is not None
    assert (record.policy, record.adkim, record.failure_options, record.rua) == (None, "r", "0", ())
    assert set(record.invalid_tags) == {"p", "adkim", "fo", "rua"}
    assert not record.policy_is_valid
    plain = parse_record("v=DMARC1")
    assert plain == DmarcRecord(raw="v=DMARC1")


_TAGS = {
    "p": ["none", "quarantine", "reject"],
    "sp": ["none", "quarantine", "reject"],
    "np": ["none", "quarantine", "reject"],
    "adkim": ["r", "s"],
    "aspf": ["r", "s"],
    "t": ["y", "n"],
    "psd": ["y", "n", "u"],
}


@given(
    st.dictionaries(st.sampled_from(sorted(_TAGS)), st.integers(0, 2)),
    st.sampled_from(["", " ", "\t"]),
    st.booleans(),
)
def test_parse_record_reads_any_valid_combination(chosen: dict[str, int], space: str, upper: bool) -> None:
    values = {name: _TAGS[name][i % len(_TAGS[name])] for name, i in chosen.items()}
    text = "v=DMARC1" + "".join(
        f"{space};{space}{name}{space}={space}{value.upper() if upper else value}"
        for name, value in values.items()
    )
    record = parse_record(text)
    assert record is not None
    assert record.invalid_tags == ()
    assert record.policy == values.get("p")
    assert record.subdomain_policy == values.get("sp")
    assert record.nonexistent_policy == values.get("np")
    assert (record.adkim, record.aspf, record.psd) == (
        values.get("adkim", "r"),
        values.get("aspf", "r"),
        values.get("psd", "u"),
    )
    assert record.testing == (values.get("t") == "y")


@given(st.text())
@example("v=DMARC1;" + ";" * 1000)
@example("v=DMARC1; rua=" + ",".join(["mailto:a@b"] * 200))
@example("v=DMARC1; p=\udcff")
def test_parse_record_never_raises(text: str) -> None:
    record = parse_record(text)
    assert record is None or isinstance(record, DmarcRecord)
    if record is not None:
        assert record.policy in (None, "none", "quarantine", "reject")
        assert record.adkim in ("r", "s")
        assert record.aspf in ("r", "s")
        assert record.psd in ("y", "n", "u")
        assert all(":" in uri and "," not in uri and ";" not in uri for uri in record.rua + record.ruf)


@given(st.from_regex(r"v=DMARC1(;[ \t]*[a-z]{1,5}=[\x20-\x3a\x3c-\x7e]{0,20}){0,8};?", fullmatch=True))
def test_parse_record_takes_every_well_formed_tag_list(text: str) -> None:
    assert parse_record(text) is not None


# -- tree_walk_names (section 4.10) -----------------------------------------------------------------------


@given(st.lists(st.from_regex(r"[a-z0-9]{1,5}", fullmatch=True), min_size=1, max_size=30))
def test_the_tree_walk_is_bounded_and_climbs_to_the_top_level(labels: list[str]) -> None:
    domain = ".".join(labels)
    names = tree_walk_names(domain)
    assert names[0] == domain
    assert names[-1] == labels[-1]
    assert len(names) == min(len(labels), MAX_WALK_QUERIES)
    assert all(earlier.endswith("." + later) for earlier, later in itertools.pairwise(names))
    if len(labels) > MAX_WALK_QUERIES:
        assert names[1].count(".") == 6  # the 7 rightmost labels


# -- from_domain_of (section 5.3.1) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "domain"),
    [
        (["user@Example.ORG"], "example.org"),
        (['"Bank Support" <support@bank.example>'], "bank.example"),
        (['"ceo@bank.example" <x@attacker.example>'], "attacker.example"),  # the address, not the name
        (["a@example.org, B@EXAMPLE.org"], "example.org"),  # one domain, two mailboxes
        (["user@example.org."], "example.org"),
        (["<user@xn--bcher-kva.example>"], "xn--bcher-kva.example"),
        (["user@bücher.example (comment)"], "xn--bcher-kva.example"),
        (["a@example.org, b@example.net"], None),  # several domains (sections 5.3.1, 11.5)
        (["a@example.org", "a@example.org"], None),  # a repeated From field (section 4.4)
        ([], None),
        ([""], None),
        (["undisclosed-recipients:;"], None),
        (["user"], None),
        (["user@[192.0.2.1]"], None),
        (["user@exa_mple.org"], None),
        (["a@example.org, b@[192.0.2.1]"], None),
        (["<>"], None),
        # a field the parser repairs, which a reader could show with another domain: no single domain
        (["b@bank.example a@attacker.example"], None),
        (["a@bank.example@attacker.example"], None),
        (["ceo@bank.example <x@attacker.example>"], None),
        (["<@route.example:a@bank.example>"], None),
        # comments are display text too (display-name attacks are out of scope, 11.4)
        (["x@attacker.example (ceo@bank.example)"], "attacker.example"),
        (["a @ bank . example"], "bank.example"),  # CFWS around "@" and "." (RFC 5322 section 4.4)
        (['"john doe"@bank.example'], "bank.example"),
        (["Team: a@bank.example;"], "bank.example"),
    ],
)
def test_from_domain_of(values: list[str], domain: str | None) -> None:
    assert from_domain_of(values) == domain


@given(st.lists(st.text(), max_size=3))
@example([",".join(f"a{i}@example.org" for i in range(200))])
@example(["(" * 5000 + "a@b.c"])
def test_from_domain_of_never_raises_and_returns_a_host_name(values: list[str]) -> None:
    domain = from_domain_of(values)
    if domain is not None:
        assert domain.isascii()
        assert domain == domain.lower()
        assert all(label and not label.startswith("-") for label in domain.split("."))


@given(
    st.from_regex(r"[a-z0-9][a-z0-9.+_-]{0,10}", fullmatch=True),
    st.lists(st.from_regex(r"[a-z0-9]{1,10}", fullmatch=True), min_size=2, max_size=5),
    st.sampled_from(["{a}", "<{a}>", '"Name" <{a}>', "Name <{a}> (c)", "{a}, {a}"]),
)
def test_from_domain_of_finds_the_one_domain(local: str, labels: list[str], form: str) -> None:
    domain = ".".join(labels)
    assert from_domain_of([form.format(a=f"{local}@{domain.upper()}")]) == domain
