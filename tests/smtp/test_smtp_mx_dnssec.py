"""`MxResolver` and DNSSEC (RFC 7672 section 2.2.1 and 2.2.2: when DANE may apply to an MX host) against a
real validating resolver in front of signed and unsigned zones (tests/support/dnssec.py): `Host.secure` only
when the MX RRset and the host's address records validated, `Host.expanded_name` for CNAME'd hosts, bogus
data as a temporary failure, and nothing secure without DNSSEC."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from postoffice.smtp.mx import Host, MxResolver, TemporaryDnsError
from tests.support.dnssec import DnssecDns
from tests.support.mail import run_bounded

pytestmark = pytest.mark.timeout(60)

ZONES = {
    "signed.test.": [
        ("signed.test.", "MX", "10 mx.signed.test."),
        ("signed.test.", "MX", "20 mx.plain.test."),  # a backup MX in an unsigned zone
        ("mx.signed.test.", "A", "192.0.2.1"),
        ("mx.signed.test.", "AAAA", "2001:db8::1"),
        # the implicit MX: no MX records, an address
        ("implicit.signed.test.", "A", "192.0.2.2"),
        # an MX host that is a CNAME (RFC 5321 forbids it; it happens)
        ("alias.signed.test.", "MX", "10 mail.signed.test."),
        ("mail.signed.test.", "CNAME", "real.signed.test."),
        ("real.signed.test.", "A", "192.0.2.3"),
        # a host whose address records were tampered with, beside a good one
        ("tampered.signed.test.", "MX", "10 bad.signed.test."),
        ("tampered.signed.test.", "MX", "20 mx.signed.test."),
        ("bad.signed.test.", "A", "192.0.2.4"),
        ("broken.signed.test.", "A", "192.0.2.5"),
        # the MX host in a signed child zone and in an unsigned child zone
        ("deep.signed.test.", "MX", "10 mx.child.signed.test."),
        ("deep.signed.test.", "MX", "20 mx.unsigned.signed.test."),
    ],
    "child.signed.test.": [("mx.child.signed.test.", "A", "192.0.2.6")],
    "unsigned.signed.test.": [("mx.unsigned.signed.test.", "A", "192.0.2.7")],
    "plain.test.": [
        ("mx.plain.test.", "A", "192.0.2.8"),
        ("plain.test.", "MX", "10 mx.signed.test."),  # an unsigned MX RRset naming a signed host
    ],
}
SIGNED = {"signed.test.", "child.signed.test."}
BOGUS = {
    "signed.test.": [
        ("bad.signed.test.", "A", "192.0.2.66"),  # spoils the RRset's signature
        ("broken.signed.test.", "MX", "10 mx.signed.test."),  # an MX RRset without a signature
    ]
}


@pytest.fixture(scope="module")
def dnssec() -> Iterator[DnssecDns]:
    with DnssecDns(ZONES, signed=SIGNED, bogus=BOGUS) as dns:
        yield dns


def mx(dnssec: DnssecDns, *, dnssec_on: bool = True) -> MxResolver:
    return MxResolver(resolver=dnssec.resolver(dnssec=dnssec_on), rng=random.Random(1))


def test_hosts_reached_through_validated_records_are_secure(dnssec: DnssecDns) -> None:
    hosts = run_bounded(mx(dnssec).destinations("signed.test"))
    assert hosts == [
        Host("mx.signed.test", 10, ["192.0.2.1", "2001:db8::1"], secure=True),
        Host("mx.plain.test", 20, ["192.0.2.8"], secure=False),  # its addresses are not signed
    ]


def test_an_unsigned_mx_rrset_makes_every_host_insecure(dnssec: DnssecDns) -> None:
    """RFC 7672 section 2.2.1: whoever can forge the MX RRset chooses the host; a signed host proves
    nothing then."""
    assert run_bounded(mx(dnssec).destinations("plain.test")) == [
        Host("mx.signed.test", 10, ["192.0.2.1", "2001:db8::1"], secure=False)
    ]


def test_the_implicit_mx_is_secure_with_a_validated_denial_and_addresses(dnssec: DnssecDns) -> None:
    assert run_bounded(mx(dnssec).destinations("implicit.signed.test")) == [
        Host("implicit.signed.test", 0, ["192.0.2.2"], secure=True)
    ]


def test_a_cname_host_is_secure_with_its_expanded_name(dnssec: DnssecDns) -> None:
    assert run_bounded(mx(dnssec).destinations("alias.signed.test")) == [
        Host("mail.signed.test", 10, ["192.0.2.3"], secure=True, expanded_name="real.signed.test")
    ]


def test_delegated_zones_are_secure_through_a_ds_and_insecure_without(dnssec: DnssecDns) -> None:
    assert run_bounded(mx(dnssec).destinations("deep.signed.test")) == [
        Host("mx.child.signed.test", 10, ["192.0.2.6"], secure=True),
        Host("mx.unsigned.signed.test", 20, ["192.0.2.7"], secure=False),
    ]


def test_bogus_addresses_skip_the_host_and_a_bogus_mx_rrset_defers(dnssec: DnssecDns) -> None:
    """A validating resolver answers SERVFAIL for bogus data: that host is not used now (RFC 7672 section
    2.1.1), the others are; when the MX RRset itself is bogus, the delivery waits."""
    assert run_bounded(mx(dnssec).destinations("tampered.signed.test")) == [
        Host("mx.signed.test", 20, ["192.0.2.1", "2001:db8::1"], secure=True)
    ]
    with pytest.raises(TemporaryDnsError) as failure:
        run_bounded(mx(dnssec).destinations("broken.signed.test"))
    assert failure.value.enhanced == "4.4.3"


def test_without_dnssec_no_host_is_secure(dnssec: DnssecDns) -> None:
    hosts = run_bounded(mx(dnssec, dnssec_on=False).destinations("signed.test"))
    assert [(host.name, host.secure) for host in hosts] == [
        ("mx.signed.test", False),
        ("mx.plain.test", False),
    ]
    assert run_bounded(mx(dnssec, dnssec_on=False).destinations("[192.0.2.9]")) == [
        Host("[192.0.2.9]", 0, ["192.0.2.9"])
    ]
