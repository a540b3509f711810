"""`mailauth.dane.lookup` against a real validating resolver in front of signed and unsigned zones
(tests/support/dnssec.py): the four verdicts of RFC 7672 section 2.2 (authenticate, encrypt, none, temporary),
the CNAME rules for the TLSA base domain (section 2.2.2), and one delivery's worth of DANE from the MX lookup
to a TLS server's chain."""

from __future__ import annotations

import asyncio
import random
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from postoffice.mailauth.dane import DaneHost, check_chain, lookup, peer_chain
from postoffice.smtp.mx import Host, MxResolver
from tests.support.dane_certs import make_ca, make_server, tlsa, tlsa_text, write_chain
from tests.support.dnssec import DnssecDns
from tests.support.mail import run_bounded

pytestmark = pytest.mark.timeout(60)

CA = make_ca("DANE Test CA")
SERVER = make_server(["mx.signed.test"], CA)
EE = tlsa_text(tlsa(3, 1, 1, SERVER))
TA = tlsa_text(tlsa(2, 1, 1, CA))
OTHER = tlsa_text(tlsa(3, 1, 1, make_server(["elsewhere.test"])))

ZONES = {
    "signed.test.": [
        ("mx.signed.test.", "A", "127.0.0.1"),
        ("_25._tcp.mx.signed.test.", "TLSA", EE),
        ("_25._tcp.mx.signed.test.", "TLSA", TA),
        ("_587._tcp.mx.signed.test.", "TLSA", "1 1 1 " + "00" * 32),
        # no TLSA records: none at the name (NXDOMAIN), or another type there (NODATA)
        ("none.signed.test.", "A", "192.0.2.1"),
        ("nodata.signed.test.", "A", "192.0.2.2"),
        ("_25._tcp.nodata.signed.test.", "TXT", '"not a TLSA record"'),
        # only records an SMTP client cannot use
        ("pkix.signed.test.", "A", "192.0.2.3"),
        ("_25._tcp.pkix.signed.test.", "TLSA", "0 0 1 " + "11" * 32),
        ("_25._tcp.pkix.signed.test.", "TLSA", "1 1 1 " + "22" * 32),
        ("_25._tcp.pkix.signed.test.", "TLSA", "3 1 1 " + "33" * 31),
        # a malformed record (a SHA-256 digest one byte short) beside a good one
        ("mixed.signed.test.", "A", "192.0.2.11"),
        ("_25._tcp.mixed.signed.test.", "TLSA", "3 1 1 " + "44" * 31),
        ("_25._tcp.mixed.signed.test.", "TLSA", EE),
        # TLSA records that do not validate (added after signing, below)
        ("bogus.signed.test.", "A", "192.0.2.4"),
        # a CNAME'd host: TLSA at the expanded name first ...
        ("alias.signed.test.", "CNAME", "real.signed.test."),
        ("real.signed.test.", "A", "192.0.2.5"),
        ("_25._tcp.real.signed.test.", "TLSA", EE),
        ("_25._tcp.alias.signed.test.", "TLSA", OTHER),
        # ... then at the name as the MX record has it
        ("alias2.signed.test.", "CNAME", "real2.signed.test."),
        ("real2.signed.test.", "A", "192.0.2.6"),
        ("_25._tcp.alias2.signed.test.", "TLSA", TA),
        # ... and a failure at the expanded name stops there
        ("alias3.signed.test.", "CNAME", "real3.signed.test."),
        ("real3.signed.test.", "A", "192.0.2.7"),
        ("_25._tcp.alias3.signed.test.", "TLSA", EE),
        # the TLSA name itself a CNAME: to a signed RRset, and to one in an unsigned zone
        ("shared.signed.test.", "A", "192.0.2.8"),
        ("_25._tcp.shared.signed.test.", "CNAME", "_tlsa.signed.test."),
        ("_tlsa.signed.test.", "TLSA", TA),
        ("outsourced.signed.test.", "A", "192.0.2.9"),
        ("_25._tcp.outsourced.signed.test.", "CNAME", "_tlsa.unsigned.signed.test."),
    ],
    "unsigned.signed.test.": [("_tlsa.unsigned.signed.test.", "TLSA", TA)],
    "plain.test.": [
        ("mx.plain.test.", "A", "192.0.2.10"),
        ("_25._tcp.mx.plain.test.", "TLSA", EE),
    ],
}
BOGUS = {
    "signed.test.": [
        ("_25._tcp.bogus.signed.test.", "TLSA", EE),
        ("_25._tcp.real3.signed.test.", "TLSA", EE),
    ]
}


@pytest.fixture(scope="module")
def dnssec() -> Iterator[DnssecDns]:
    with DnssecDns(ZONES, signed={"signed.test."}, bogus=BOGUS) as dns:
        yield dns


async def _dane(dnssec: DnssecDns, domain: str, port: int) -> tuple[Host, DaneHost]:
    resolver = dnssec.resolver()
    (host,) = await MxResolver(resolver=resolver, rng=random.Random(1)).destinations(domain)
    return host, await lookup(resolver, host, port)


def dane_for(dnssec: DnssecDns, domain: str, port: int = 25) -> DaneHost:
    """The DANE verdict for the (implicit) MX host of `domain`, through `MxResolver` as delivery does."""
    return run_bounded(_dane(dnssec, domain, port))[1]


def test_usable_records_ask_for_authentication(dnssec: DnssecDns) -> None:
    verdict = dane_for(dnssec, "mx.signed.test")
    assert verdict.status == "authenticate"
    assert sorted(f"{r.usage} {r.selector} {r.matching}" for r in verdict.records) == ["2 1 1", "3 1 1"]
    assert verdict.names == ["mx.signed.test"]
    assert verdict.base_domain == "mx.signed.test"
    assert verdict.tls_required
    assert "_25._tcp.mx.signed.test" in verdict.text


def test_the_port_is_part_of_the_name(dnssec: DnssecDns) -> None:
    verdict = dane_for(dnssec, "mx.signed.test", port=587)
    assert verdict.status == "encrypt"  # only a PKIX-EE record there


def test_a_validated_denial_means_no_dane(dnssec: DnssecDns) -> None:
    for domain in ("none.signed.test", "nodata.signed.test"):
        verdict = dane_for(dnssec, domain)
        assert verdict.status == "none", domain
        assert "validated denial" in verdict.text
        assert not verdict.tls_required


def test_only_unusable_records_ask_for_tls_without_authentication(dnssec: DnssecDns) -> None:
    verdict = dane_for(dnssec, "pkix.signed.test")
    assert verdict.status == "encrypt"
    assert verdict.records == []
    assert len(verdict.published) == 3
    assert verdict.tls_required


def test_a_malformed_record_is_set_aside_not_a_dns_failure(dnssec: DnssecDns) -> None:
    """RFC 6698 section 4.1, RFC 7672 section 2.2: a record with a digest of the wrong length is unusable;
    the rest of the RRset counts (dnspython would refuse the whole response: mailauth/dane.py lets it keep
    the record)."""
    verdict = dane_for(dnssec, "mixed.signed.test")
    assert verdict.status == "authenticate"
    assert [f"{r.usage} {r.selector} {r.matching}" for r in verdict.records] == ["3 1 1"]
    assert len(verdict.published) == 2
    assert check_chain(verdict, [SERVER.der]) is None


def test_a_bogus_tlsa_rrset_makes_the_host_unusable_for_now(dnssec: DnssecDns) -> None:
    verdict = dane_for(dnssec, "bogus.signed.test")
    assert verdict.status == "temporary"
    assert "must not be used" in verdict.text


def test_an_insecure_host_gets_no_dane_even_with_tlsa_records(dnssec: DnssecDns) -> None:
    verdict = dane_for(dnssec, "mx.plain.test")
    assert verdict.status == "none"
    assert "not DNSSEC-signed" in verdict.text
    # whatever the host says, a resolver that does not ask about DNSSEC cannot vouch for anything
    host = Host("mx.signed.test", 10, ["127.0.0.1"], secure=True)
    plain = run_bounded(lookup(dnssec.resolver(dnssec=False), host))
    assert plain.status == "none"
    literal = run_bounded(lookup(dnssec.resolver(), Host("[127.0.0.1]", 0, ["127.0.0.1"], secure=True)))
    assert literal.status == "none"


def test_tlsa_records_at_the_cname_target_come_first(dnssec: DnssecDns) -> None:
    """RFC 7672 section 2.2.2: the expanded name is the TLSA base domain when it has records; both names
    are reference identifiers."""
    verdict = dane_for(dnssec, "alias.signed.test")
    assert verdict.status == "authenticate"
    assert verdict.base_domain == "real.signed.test"
    assert verdict.names == ["alias.signed.test", "real.signed.test"]
    assert [f"{r.usage} {r.selector} {r.matching}" for r in verdict.records] == ["3 1 1"]
    assert check_chain(verdict, [SERVER.der]) is None  # EE, not OTHER at the original name


def test_without_records_at_the_cname_target_the_original_name_counts(dnssec: DnssecDns) -> None:
    verdict = dane_for(dnssec, "alias2.signed.test")
    assert verdict.status == "authenticate"
    assert verdict.base_domain == "alias2.signed.test"
    assert verdict.names == ["alias2.signed.test"]


def test_a_failure_at_the_cname_target_stops_the_search(dnssec: DnssecDns) -> None:
    verdict = dane_for(dnssec, "alias3.signed.test")
    assert verdict.status == "temporary"


def test_a_tlsa_name_may_be_a_cname_if_it_validates(dnssec: DnssecDns) -> None:
    shared = dane_for(dnssec, "shared.signed.test")
    assert shared.status == "authenticate"
    assert shared.base_domain == "shared.signed.test"
    outsourced = dane_for(dnssec, "outsourced.signed.test")
    assert outsourced.status == "none"
    assert "not DNSSEC-signed" in outsourced.text


def test_from_mx_lookup_to_an_authenticated_tls_connection(dnssec: DnssecDns, tmp_path: Path) -> None:
    """What delivery does: the MX host, its DANE verdict, STARTTLS-like TLS with the TLSA base domain as SNI
    and no PKIX verification, the chain the server sent, `check_chain`."""
    (tmp_path / "good").mkdir()
    (tmp_path / "bad").mkdir()
    good_files = write_chain(tmp_path / "good", SERVER, CA)
    bad_files = write_chain(tmp_path / "bad", make_server(["mx.signed.test"]))  # right name, wrong key

    async def deliver(cert_files: tuple[Path, Path]) -> str | None:
        host, verdict = await _dane(dnssec, "mx.signed.test", 25)
        assert host.secure
        assert verdict.status == "authenticate"
        server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_context.load_cert_chain(*cert_files)
        seen_sni: list[str] = []

        def remember_sni(_: ssl.SSLObject, name: str, __: ssl.SSLContext) -> None:
            seen_sni.append(name)

        server_context.sni_callback = remember_sni

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1)
            writer.close()

        server = await asyncio.start_server(handle, host.addresses[0], 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client_context.check_hostname = False
        client_context.verify_mode = ssl.CERT_NONE  # DANE decides, not the PKIX
        try:
            _, writer = await asyncio.open_connection(
                host.addresses[0], port, ssl=client_context, server_hostname=verdict.base_domain
            )
            reason = check_chain(verdict, peer_chain(writer.get_extra_info("ssl_object")))
            writer.write(b"x")
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        finally:
            server.close()
            await server.wait_closed()
        assert seen_sni == ["mx.signed.test"]
        return reason

    assert run_bounded(deliver(good_files)) is None
    reason = run_bounded(deliver(bad_files))
    assert reason is not None
