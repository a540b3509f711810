"""The loopback stand-ins for the internet (DNS server, scripted SMTP peers) work with real clients."""

from __future__ import annotations

from pathlib import Path

import dns.resolver
import pytest

from tests.support.dns_server import DnsServer, Zones


def resolver_for(server: DnsServer) -> dns.resolver.Resolver:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = server.port
    resolver.lifetime = 5
    return resolver


def test_mx_a_null_mx_nodata_and_nxdomain() -> None:
    zones = Zones(
        [
            ("example.org.", "MX", "10 mx1.example.org."),
            ("example.org.", "MX", "20 mx2.example.org."),
            ("mx1.example.org.", "A", "127.0.0.2"),
            ("mx2.example.org.", "AAAA", "::1"),
            ("nullmx.test.", "MX", "0 ."),
        ]
    )
    with DnsServer(zones) as server:
        r = resolver_for(server)
        mx = sorted((rr.preference, rr.exchange.to_text()) for rr in r.resolve("example.org", "MX"))
        assert mx == [(10, "mx1.example.org."), (20, "mx2.example.org.")]
        assert [rr.address for rr in r.resolve("mx1.example.org", "A")] == ["127.0.0.2"]
        assert [rr.address for rr in r.resolve("mx2.example.org", "AAAA", tcp=True)] == ["::1"]
        (null,) = r.resolve("nullmx.test", "MX")
        assert null.preference == 0
        assert null.exchange.to_text() == "."
        with pytest.raises(dns.resolver.NoAnswer):
            r.resolve("mx1.example.org", "MX")
        with pytest.raises(dns.resolver.NXDOMAIN):
            r.resolve("nothing.example.org", "A")
        assert ("example.org.", "MX") in zones.queries


def test_the_scripted_peer_accepts_over_starttls_and_misbehaves_on_demand(tmp_path: Path) -> None:
    import smtplib
    import ssl

    from postoffice.net.tls import generate_self_signed
    from tests.support.smtp_peer import Script, SmtpPeer

    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    generate_self_signed("peer.test", cert, key)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    client_ctx.check_hostname = False
    with SmtpPeer(
        "127.0.0.2", 0, Script(rcpt_replies={"busy@peer.test": "451 4.2.1 later"}), server_ctx
    ) as peer:
        with smtplib.SMTP(peer.host, peer.port) as smtp:
            smtp.starttls(context=client_ctx)
            refused = smtp.sendmail(
                "a@example.test", ["ok@peer.test", "busy@peer.test"], b"Subject: x\r\n\r\n.hi\r\n"
            )
        assert refused == {"busy@peer.test": (451, b"4.2.1 later")}
        (got,) = peer.received
        assert got.tls
        assert got.recipients == ["ok@peer.test"]
        assert got.data == b"Subject: x\r\n\r\n.hi\r\n"
    with SmtpPeer("127.0.0.3", 0, Script(replies={"dot": "554 5.7.1 no"})) as peer:
        with smtplib.SMTP(peer.host, peer.port) as smtp, pytest.raises(smtplib.SMTPDataError):
            smtp.sendmail("a@example.test", ["x@peer.test"], b"Subject: y\r\n\r\nz\r\n")
        assert peer.received == []
