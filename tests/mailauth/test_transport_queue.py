"""Outbound transport security end to end through the queue (docs/decisions/0057): a real store, the queue
runner, "remote" servers on loopback with certificates of the tests' own, and DNS from loopback servers: a
plain one for MTA-STS (with a policy served over HTTPS), and nsd + unbound with DNSSEC-signed zones for DANE.

- MTA-STS "enforce": a server whose certificate is not for its name gets nothing (deferred, 4.7.5); one with a
  right certificate gets the mail over TLS. "testing": the mail goes anyway. Every connection is counted for
  the TLS report, with the policy and the failure type.
- DANE: a server whose certificate matches the TLSA record gets the mail; one that does not match gets
  nothing, even though MTA-STS would not have asked for anything (DANE needs no CA).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import ssl
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from postoffice.mailauth.mtasts import MemoryPolicyCache, MtaSts
from postoffice.mailauth.reporting import ReportCounter
from postoffice.mailauth.transport import TransportSecurity, dane_enabled
from postoffice.net.dns import DnsResolver
from postoffice.smtp.mx import MxResolver
from postoffice.smtp.queue import QueueRunner
from postoffice.smtp.settings import QueueConfig
from postoffice.store import MailStore, OutboundMessage, OutboundRecipient, QueuedMessage, open_store
from tests.support.dane_certs import Issued, make_ca, make_server, tlsa, tlsa_text, write_chain
from tests.support.dns_server import DnsServer, Zones
from tests.support.dnssec import DnssecDns
from tests.support.smtp_peer import Script, SmtpPeer, free_port_on

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")
HOSTNAME = "out.example.test"


def server_context(directory: Path, leaf: Issued, *chain: Issued) -> ssl.SSLContext:
    cert, key = write_chain(directory, leaf, *chain)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


class PolicyServer:
    """HTTPS on 127.0.0.1: answers /.well-known/mta-sts.txt with the policy of the Host header's domain."""

    def __init__(self, context: ssl.SSLContext, policies: dict[str, str]) -> None:
        self.context = context
        self.policies = policies
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            host = next(
                line.split(":", 1)[1].strip()
                for line in head.split("\r\n")
                if line.lower().startswith("host:")
            )
            body = self.policies[host.split(":")[0].removeprefix("mta-sts.")].encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, StopIteration, KeyError):
            pass
        finally:
            writer.close()


def policy(mode: str, *mx: str) -> str:
    return f"version: STSv1\r\nmode: {mode}\r\n" + "".join(f"mx: {m}\r\n" for m in mx) + "max_age: 86400\r\n"


async def queue_to(store: MailStore, *messages: str | tuple[str, bool, str]) -> None:
    """Queue one message to each address; a tuple is (address, REQUIRETLS, an extra header line)."""
    for spec in messages:
        address, require_tls, extra = (spec, False, "") if isinstance(spec, str) else spec
        head = f"From: a@example.test\r\nTo: {address}\r\nSubject: to {address}\r\n"
        data = (head + (extra + "\r\n" if extra else "") + "\r\nhello\r\n").encode()
        outbound = OutboundMessage("a@example.test", [OutboundRecipient(address)], require_tls=require_tls)
        await store.enqueue(data, len(data), outbound)


async def run_queue(
    tmp: Path,
    port: int,
    resolver: MxResolver,
    make_transport: Callable[[MailStore], TransportSecurity],
    *messages: str | tuple[str, bool, str],
) -> tuple[list[QueuedMessage], dict[str, int], list[bytes]]:
    """Queue a message to each address, one pass of the runner; what is left queued, the TLS report lines
    counted ("domain type mx result": count), and the delivery status notices queued."""
    store = open_store(tmp / "store.sqlite3")
    try:
        await store.add_domain("example.test")
        await queue_to(store, *messages)
        transport = make_transport(store)
        transport.counter = ReportCounter(store, flush_interval=3600)
        config = QueueConfig(delivery_port=port, connect_timeout=5, command_timeout=5, first_retry=600)
        runner = QueueRunner(store, hostname=HOSTNAME, config=config, resolver=resolver, transport=transport)
        await runner.run_once()
        await runner.idle()
        await transport.counter.flush()
        lines: dict[str, int] = {}
        for report in await store.pending_reports("2999-01-01"):
            for key, count in report.lines:
                line = json.loads(key)
                lines[f"{report.domain} {line['type']} {line['mx']} {line['result'] or 'ok'}"] = count
        queue = await store.queue_list()
        notices = [await store.queue_read(m.id) for m in queue if m.sender == ""]
        return [m for m in queue if m.sender], lines, notices
    finally:
        await store.close()


def pending(queue: list[QueuedMessage]) -> dict[str, tuple[str, str | None]]:
    return {r.address: (r.status, r.last_enhanced) for m in queue for r in m.recipients}


# -- MTA-STS -----------------------------------------------------------------------------------------------


@dataclass
class StsWorld:
    """Domains with MTA-STS policies (and one without), their MX hosts on loopback with certificates from a
    test CA, the DNS, and the certificate for the policy host."""

    root: Path
    ca: Issued
    dns: DnsServer
    port: int
    peers: dict[str, SmtpPeer]
    web: Issued
    zones: Zones

    def received(self, name: str, local: str) -> list[tuple[list[str], bool, str]]:
        """What the MX of `name` received for `local`@: (recipients, over TLS, the MAIL parameters)."""
        return [
            (r.recipients, r.tls, r.mail_params)
            for r in self.peers[name].received
            if any(address.startswith(local + "@") for address in r.recipients)
        ]

    def deliver(
        self, *messages: str | tuple[str, bool, str]
    ) -> tuple[list[QueuedMessage], dict[str, int], list[bytes]]:
        async def main() -> tuple[list[QueuedMessage], dict[str, int], list[bytes]]:
            server = PolicyServer(
                server_context(Path(tempfile.mkdtemp(dir=self.root)), self.web, self.ca), POLICIES
            )
            await server.start()
            try:
                resolver = DnsResolver(["127.0.0.1"], port=self.dns.port, timeout=2, lifetime=4)
                client = ssl.create_default_context(cafile=str(self.root / "ca.pem"))
                sts = MtaSts(resolver, MemoryPolicyCache(), context=client, port=server.port)
                cafile = str(self.root / "ca.pem")
                return await run_queue(
                    Path(tempfile.mkdtemp(dir=self.root)),
                    self.port,
                    MxResolver(resolver=resolver),
                    lambda store: TransportSecurity(mta_sts=sts, ca_file=cafile, port=self.port),
                    *messages,
                )
            finally:
                await server.stop()

        return asyncio.run(asyncio.wait_for(main(), 45))


#: name -> (MX address, the policy's mode or None, whether the MX certificate is for its name, REQUIRETLS)
STS_HOSTS = {
    "good": ("127.0.22.2", "enforce", True, True),
    "wrong": ("127.0.22.3", "enforce", False, True),
    "trial": ("127.0.22.4", "testing", False, False),
    "trialok": ("127.0.22.5", "testing", True, True),
    "nopolicy": ("127.0.22.6", None, True, True),
    "norequire": ("127.0.22.7", "enforce", True, False),
}
POLICIES = {
    f"{name}.test": policy(mode, f"mx.{name}.test" if name != "wrong" else "*.wrong.test")
    for name, (_address, mode, _right, _requiretls) in STS_HOSTS.items()
    if mode is not None
}


@pytest.fixture(scope="module")
def sts_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StsWorld]:
    root = tmp_path_factory.mktemp("sts")
    ca = make_ca("Test CA")
    (root / "ca.pem").write_bytes(ca.pem())
    port = free_port_on(*(address for address, *_rest in STS_HOSTS.values()))
    zones = Zones()
    for name, (address, mode, _right, _requiretls) in STS_HOSTS.items():
        zones.add(f"{name}.test.", "MX", f"10 mx.{name}.test.")
        zones.add(f"mx.{name}.test.", "A", address)
        if mode is not None:
            zones.add(f"_mta-sts.{name}.test.", "TXT", '"v=STSv1; id=20261207"')
            zones.add(f"mta-sts.{name}.test.", "A", "127.0.0.1")
    web = make_server([f"mta-sts.{name}.test" for name in STS_HOSTS], ca)
    with ExitStack() as stack:
        dns = stack.enter_context(DnsServer(zones))
        peers = {}
        for name, (address, _mode, right, requiretls) in STS_HOSTS.items():
            names = [f"mx.{name}.test"] if right else ["somewhere.else.test"]
            context = server_context(Path(tempfile.mkdtemp(dir=root)), make_server(names, ca), ca)
            extensions = (*Script().extensions, "REQUIRETLS") if requiretls else Script().extensions
            peers[name] = SmtpPeer(address, port, Script(extensions=extensions), tls_context=context).start()
            stack.callback(peers[name].stop)
        yield StsWorld(root, ca, dns, port, peers, web, zones)


def test_mta_sts_enforce_refuses_a_wrong_certificate_and_testing_only_reports_it(sts_world: StsWorld) -> None:
    queue, lines, _notices = sts_world.deliver("bob@good.test", "bob@wrong.test", "bob@trial.test")
    assert [(r, tls) for r, tls, _mail in sts_world.received("good", "bob")] == [(["bob@good.test"], True)]
    assert sts_world.received("wrong", "bob") == []  # the certificate is not for mx.wrong.test: nothing sent
    assert pending(queue) == {"bob@wrong.test": ("pending", "4.7.5")}
    assert [(r, tls) for r, tls, _mail in sts_world.received("trial", "bob")] == [(["bob@trial.test"], True)]
    assert lines == {
        "good.test sts mx.good.test ok": 1,
        "wrong.test sts mx.wrong.test certificate-host-mismatch": 1,
        "trial.test sts mx.trial.test certificate-host-mismatch": 1,
    }


def test_a_policy_that_cannot_be_fetched_is_reported_and_mail_goes_as_without_one(
    sts_world: StsWorld,
) -> None:
    """RFC 8461 section 5 / RFC 8460 section 4.3.2: the policy host's certificate is not for its name (our
    web certificate does not name mta-sts.badweb.test): no policy, delivery as usual, and a report line."""
    sts_world.zones.add("badweb.test.", "MX", "10 mx.nopolicy.test.")
    sts_world.zones.add("_mta-sts.badweb.test.", "TXT", '"v=STSv1; id=1"')
    sts_world.zones.add("mta-sts.badweb.test.", "A", "127.0.0.1")
    queue, lines, _notices = sts_world.deliver("gina@badweb.test")
    assert [r for r, _tls, _params in sts_world.received("nopolicy", "gina")] == [["gina@badweb.test"]]
    assert queue == []
    assert lines == {
        "badweb.test sts  sts-webpki-invalid": 1,
        "badweb.test no-policy-found mx.nopolicy.test ok": 1,
    }


def test_tls_required_no_lets_a_message_past_the_recipients_policy(sts_world: StsWorld) -> None:
    """RFC 8689 section 3: the sender's "TLS-Required: No" overrides an MTA-STS policy that would stop the
    message (here: the MX certificate is not for its name); TLS is still used."""
    queue, _lines, _notices = sts_world.deliver(
        ("carol@wrong.test", False, "TLS-Required: No"), "dave@wrong.test"
    )
    assert [(r, tls) for r, tls, _mail in sts_world.received("wrong", "carol")] == [
        (["carol@wrong.test"], True)
    ]
    assert sts_world.received("wrong", "dave") == []
    assert pending(queue) == {"dave@wrong.test": ("pending", "4.7.5")}


def test_requiretls_goes_only_to_an_authenticated_host_that_offers_it(sts_world: StsWorld) -> None:
    """RFC 8689 section 4.2.1: a REQUIRETLS message goes with MAIL ... REQUIRETLS to an MX host named by an
    MTA-STS policy (of any mode) over TLS with a certificate for its name, to a server that offers
    REQUIRETLS; otherwise it is returned (5.7.30), or deferred while the certificate is wrong. The header
    field TLS-Required: No does not weaken it."""
    queue, _lines, notices = sts_world.deliver(
        ("erin@good.test", True, "TLS-Required: No"),
        ("erin@trialok.test", True, ""),
        ("erin@trial.test", True, ""),
        ("erin@nopolicy.test", True, ""),
        ("erin@norequire.test", True, ""),
        "frank@good.test",
    )
    assert [(r, tls, params.split()[-1]) for r, tls, params in sts_world.received("good", "erin")] == [
        (["erin@good.test"], True, "REQUIRETLS")
    ]
    assert [(r, tls, params.split()[-1]) for r, tls, params in sts_world.received("trialok", "erin")] == [
        (["erin@trialok.test"], True, "REQUIRETLS")
    ]
    for name in ("trial", "nopolicy", "norequire"):
        assert sts_world.received(name, "erin") == [], name
    assert "REQUIRETLS" not in sts_world.received("good", "frank")[0][2]  # only when asked for
    # named by its policy, but the certificate is wrong: deferred
    assert pending(queue) == {"erin@trial.test": ("pending", "4.7.5")}
    # nothing vouches for nopolicy's MX host; norequire's server does not offer REQUIRETLS: returned, with
    # the header only (RFC 8689 section 5)
    reports = [email.message_from_bytes(n, policy=email.policy.default) for n in notices]
    failed = {
        part.get("Final-Recipient", "").split(";")[-1].strip(): part.get("Status")
        for notice in reports
        for part in notice.walk()
        if part.get("Final-Recipient")
    }
    assert failed == {"erin@nopolicy.test": "5.7.30", "erin@norequire.test": "5.7.30"}
    assert all(b"text/rfc822-headers" in n and b"\r\n\r\nhello" not in n for n in notices)


# -- DANE --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dane_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("dane")
    hosts = {"match": "127.0.23.2", "mismatch": "127.0.23.3", "plain": "127.0.23.4"}
    port = free_port_on(*hosts.values())
    leaf = make_server(["mx.match.signed.test"])  # self-signed: only the TLSA record vouches for it
    stranger = make_server(["mx.mismatch.signed.test"])
    records = [
        ("match.signed.test.", "MX", "10 mx.match.signed.test."),
        ("mx.match.signed.test.", "A", hosts["match"]),
        (f"_{port}._tcp.mx.match.signed.test.", "TLSA", tlsa_text(tlsa(3, 1, 1, leaf))),
        ("mismatch.signed.test.", "MX", "10 mx.mismatch.signed.test."),
        ("mx.mismatch.signed.test.", "A", hosts["mismatch"]),
        (f"_{port}._tcp.mx.mismatch.signed.test.", "TLSA", tlsa_text(tlsa(3, 1, 1, make_server(["x.test"])))),
        ("plain.signed.test.", "MX", "10 mx.plain.signed.test."),
        ("mx.plain.signed.test.", "A", hosts["plain"]),
    ]
    with ExitStack() as stack:
        dns = stack.enter_context(DnssecDns({"signed.test.": records}, signed={"signed.test."}))
        peers = {}
        for name, address in hosts.items():
            (root / name).mkdir()
            context = server_context(root / name, stranger if name == "mismatch" else leaf)
            peers[name] = SmtpPeer(address, port, tls_context=context).start()
            stack.callback(peers[name].stop)
        yield {"dns": dns, "peers": peers, "port": port}


def test_dane_delivers_to_a_matching_certificate_and_never_to_a_mismatch(
    tmp_path: Path, dane_world: dict[str, Any]
) -> None:
    dns: DnssecDns = dane_world["dns"]
    port: int = dane_world["port"]
    peers: dict[str, SmtpPeer] = dane_world["peers"]

    async def main() -> tuple[list[QueuedMessage], dict[str, int], list[bytes]]:
        resolver = dns.resolver()
        return await run_queue(
            tmp_path,
            port,
            MxResolver(resolver=resolver),
            lambda store: TransportSecurity(dane_resolver=resolver, port=port),
            "bob@match.signed.test",
            "bob@mismatch.signed.test",
            "bob@plain.signed.test",
        )

    queue, lines, _notices = asyncio.run(asyncio.wait_for(main(), 45))
    assert [(r.recipients, r.tls) for r in peers["match"].received] == [(["bob@match.signed.test"], True)]
    assert peers["mismatch"].received == []
    assert pending(queue) == {"bob@mismatch.signed.test": ("pending", "4.7.5")}
    assert [(r.recipients, r.tls) for r in peers["plain"].received] == [(["bob@plain.signed.test"], True)]
    assert lines == {
        "match.signed.test tlsa mx.match.signed.test ok": 1,
        "mismatch.signed.test tlsa mx.mismatch.signed.test validation-failure": 1,
        "plain.signed.test no-policy-found mx.plain.signed.test ok": 1,
    }


def test_dane_is_on_by_default_only_with_a_resolver_on_this_machine() -> None:
    assert dane_enabled("auto", ["127.0.0.1", "::1"])
    assert not dane_enabled("auto", ["127.0.0.1", "192.0.2.53"])
    assert dane_enabled("on", ["192.0.2.53"])
    assert not dane_enabled("off", ["127.0.0.1"])
