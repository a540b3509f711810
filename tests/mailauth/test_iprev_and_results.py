"""iprev (RFC 8601 section 3) against a DNS server on loopback, and the Authentication-Results field as we
write and read it (RFC 8601 section 2.2: ";" separates results only outside quoted-strings and comments, so
no text a client chose, such as its HELO name, is read as a result)."""

from __future__ import annotations

from collections.abc import Iterator

import dns.reversename
import pytest
from hypothesis import given
from hypothesis import strategies as st

from postoffice.delivery.plan import header_field
from postoffice.mailauth.dkim_verify import DkimResult
from postoffice.mailauth.iprev import IprevResult, check_iprev
from postoffice.mailauth.results import (
    ResultInfo,
    authserv_id_of,
    claims_our_id,
    format_results,
    from_domain_of_results,
    parse_results,
    read_results,
    results_by_method,
    results_summary,
)
from postoffice.net.dns import DnsResolver
from tests.support.dns_server import DnsServer, Zones
from tests.support.mail import run_bounded

ZONES = Zones(
    [
        ("5.2.0.192.in-addr.arpa.", "PTR", "mail.sender.example."),
        ("mail.sender.example.", "A", "192.0.2.5"),
        ("6.2.0.192.in-addr.arpa.", "PTR", "liar.sender.example."),
        ("liar.sender.example.", "A", "192.0.2.99"),
        (dns.reversename.from_address("2001:db8::1").to_text(), "PTR", "v6.sender.example."),
        ("v6.sender.example.", "AAAA", "2001:db8::1"),
    ]
)


@pytest.fixture(scope="module")
def resolver() -> Iterator[DnsResolver]:
    with DnsServer(ZONES) as server:
        yield DnsResolver(["127.0.0.1"], port=server.port, timeout=1, lifetime=2)


def test_iprev_passes_only_when_the_name_gives_the_address_back(resolver: DnsResolver) -> None:
    assert run_bounded(check_iprev(resolver, "192.0.2.5")) == IprevResult(
        "pass", "192.0.2.5", "mail.sender.example", ""
    )
    liar = run_bounded(check_iprev(resolver, "192.0.2.6"))
    assert (liar.result, liar.name) == ("fail", "")
    assert "liar.sender.example" in liar.reason
    assert run_bounded(check_iprev(resolver, "192.0.2.7")).reason == "no PTR record"
    assert run_bounded(check_iprev(resolver, "2001:db8::1")).result == "pass"
    assert run_bounded(check_iprev(resolver, "not an address")).result == "permerror"


def test_iprev_without_dns_is_a_temporary_error() -> None:
    resolver = DnsResolver(["127.0.0.1"], port=9, timeout=0.1, lifetime=0.2)
    assert run_bounded(check_iprev(resolver, "192.0.2.5")).result == "temperror"


def test_the_field_lists_every_method_and_reads_back() -> None:
    value = format_results(
        "mx.example.test",
        iprev=IprevResult("pass", "192.0.2.5", "mail.sender.example", ""),
        spf=[
            ("pass", "smtp.mailfrom", "sender.example", ""),
            ("none", "smtp.helo", "mail.sender.example", ""),
        ],
        dkim=[
            DkimResult(
                "fail", "sender.example", "sel", "rsa-sha256", "abcdefghijkl", "body hash did not verify"
            )
        ],
        dmarc=("pass", "sender.example", ""),
    )
    assert value == (
        "mx.example.test;\r\n"
        "\tiprev=pass (mail.sender.example) policy.iprev=192.0.2.5;\r\n"
        "\tspf=pass smtp.mailfrom=sender.example;\r\n"
        "\tspf=none smtp.helo=mail.sender.example;\r\n"
        "\tdkim=fail (body hash did not verify) header.d=sender.example header.s=sel header.a=rsa-sha256 "
        "header.b=abcdefghijkl;\r\n"
        "\tdmarc=pass header.from=sender.example"
    )
    header_field("Authentication-Results", value)  # a well-formed field
    assert read_results(value) == {"iprev": "pass", "spf": "pass", "dkim": "fail", "dmarc": "pass"}
    assert authserv_id_of(value) == "mx.example.test"
    empty = format_results("mx.example.test", iprev=None, spf=[], dkim=[], dmarc=None)
    assert read_results(empty) == {"spf": "none", "dkim": "none", "dmarc": "none"}


def test_an_arriving_field_with_our_authserv_id_is_recognised_whatever_its_spelling() -> None:
    assert claims_our_id(" MX.Example.Test; spf=pass smtp.mailfrom=x", "mx.example.test")
    assert claims_our_id("(a comment) mx.example.test ; dkim=pass", "mx.example.test")
    assert claims_our_id("mx.example.test; none", "mx.example.test")
    assert not claims_our_id("other.example; spf=pass", "mx.example.test")
    assert not claims_our_id("mx.example.test.evil; spf=pass", "mx.example.test")


@given(st.text(max_size=80), st.text(max_size=80), st.text(max_size=80))
def test_any_values_make_a_well_formed_field(domain: str, reason: str, selector: str) -> None:
    value = format_results(
        "mx.example.test",
        iprev=IprevResult("fail", domain, "", reason),
        spf=[("fail", "smtp.mailfrom", domain, reason)],
        dkim=[DkimResult("permerror", domain, selector, "x", "", reason)],
        dmarc=("fail", domain, reason),
    )
    try:
        header_field("Authentication-Results", value)
    except ValueError:
        # only values no SMTP message can carry (NUL, bare CR/LF in what we quote) may fail here
        assert any(ch in domain + selector for ch in "\x00\r\n")
    assert read_results(value) == {"iprev": "fail", "spf": "fail", "dkim": "permerror", "dmarc": "fail"}
    assert authserv_id_of(value) == "mx.example.test"
    assert from_domain_of_results(value) == domain.lower()
    summary = results_summary(
        iprev=IprevResult("fail", domain, "", reason),
        spf=[("fail", "smtp.mailfrom", domain, reason)],
        dkim=[DkimResult("permerror", domain, selector, "x", "", reason)],
        dmarc=("fail", domain, reason),
    )
    assert {method: tuple(found) for method, found in results_by_method(value).items()} == summary


def test_semicolons_in_quoted_strings_and_comments_separate_nothing() -> None:
    value = (
        '"mx.example.test" 1; spf=none (null sender; dkim=pass) smtp.mailfrom="x;dkim=pass;dmarc=pass";\r\n'
        '\tdkim=fail (a (nested; dkim=pass) comment) reason="b\\";dkim=pass" header.d=bank.example;\r\n'
        "\tdmarc/1=fail (x\\) still; a comment) header.from=bank.example"
    )
    assert parse_results(value) == (
        "mx.example.test",
        [
            ResultInfo("spf", "none", (("smtp.mailfrom", "x;dkim=pass;dmarc=pass"),)),
            ResultInfo("dkim", "fail", (("header.d", "bank.example"),)),
            ResultInfo("dmarc", "fail", (("header.from", "bank.example"),)),
        ],
    )
    assert read_results(value) == {"spf": "none", "dkim": "fail", "dmarc": "fail"}
    assert claims_our_id(value, "MX.example.test")
    # an unterminated quoted-string or comment runs to the end
    assert read_results('mx; spf=pass smtp.mailfrom="a;dkim=pass') == {"spf": "pass"}
    assert read_results("mx; spf=pass (a;dkim=pass") == {"spf": "pass"}


def test_the_verified_domain_is_the_dmarc_results_header_from() -> None:
    value = format_results(
        "mx.example.test",
        iprev=None,
        spf=[("none", "smtp.mailfrom", "x header.from=paypal.example", "")],
        dkim=[],
        dmarc=("pass", "Sender.Example", ""),
    )
    assert from_domain_of_results(value) == "sender.example"
    assert from_domain_of_results("mx; spf=pass header.from=a.example") == ""  # no DMARC result
