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
import json
import ssl
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
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
from tests.support.smtp_peer import SmtpPeer, free_port_on

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


async def queue_to(store: MailStore, *addresses: str) -> None:
    for address in addresses:
        data = f"From: a@example.test\r\nTo: {address}\r\nSubject: to {address}\r\n\r\nhello\r\n".encode()
        await store.enqueue(data, len(data), OutboundMessage("a@example.test", [OutboundRecipient(address)]))


async def run_queue(
    tmp: Path,
    port: int,
    resolver: MxResolver,
    make_transport: Callable[[MailStore], TransportSecurity],
    *addresses: str,
) -> tuple[list[QueuedMessage], dict[str, int]]:
    """Queue a message to each address, one pass of the runner; what is left queued, and the TLS report lines
    counted ("domain type mx result": count)."""
    store = open_store(tmp / "store.sqlite3")
    try:
        await store.add_domain("example.test")
        await queue_to(store, *addresses)
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
        return await store.queue_list(), lines
    finally:
        await store.close()


def pending(queue: list[QueuedMessage]) -> dict[str, tuple[str, str | None]]:
    return {r.address: (r.status, r.last_enhanced) for m in queue for r in m.recipients}


# -- MTA-STS -----------------------------------------------------------------------------------------------


def test_mta_sts_enforce_refuses_a_wrong_certificate_and_testing_only_reports_it(tmp_path: Path) -> None:
    ca = make_ca("Test CA")
    (tmp_path / "ca.pem").write_bytes(ca.pem())
    hosts = {"good": "127.0.22.2", "wrong": "127.0.22.3", "trial": "127.0.22.4"}
    port = free_port_on(*hosts.values())
    zones = Zones()
    for name, address in hosts.items():
        zones.add(f"{name}.test.", "MX", f"10 mx.{name}.test.")
        zones.add(f"mx.{name}.test.", "A", address)
        zones.add(f"_mta-sts.{name}.test.", "TXT", '"v=STSv1; id=20261207"')
        zones.add(f"mta-sts.{name}.test.", "A", "127.0.0.1")
    policies = {
        "good.test": policy("enforce", "mx.good.test"),
        "wrong.test": policy("enforce", "*.wrong.test"),
        "trial.test": policy("testing", "mx.trial.test"),
    }
    web = make_server([f"mta-sts.{name}.test" for name in hosts], ca)
    with ExitStack() as stack:
        dns = stack.enter_context(DnsServer(zones))
        peers = {}
        for name, address in hosts.items():
            names = [f"mx.{name}.test"] if name == "good" else ["somewhere.else.test"]
            context = server_context(Path(tempfile.mkdtemp(dir=tmp_path)), make_server(names, ca), ca)
            peers[name] = SmtpPeer(address, port, tls_context=context).start()
            stack.callback(peers[name].stop)

        async def main() -> tuple[list[QueuedMessage], dict[str, int]]:
            server = PolicyServer(server_context(Path(tempfile.mkdtemp(dir=tmp_path)), web, ca), policies)
            await server.start()
            try:
                resolver = DnsResolver(["127.0.0.1"], port=dns.port, timeout=2, lifetime=4)
                client = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
                sts = MtaSts(resolver, MemoryPolicyCache(), context=client, port=server.port)
                return await run_queue(
                    tmp_path,
                    port,
                    MxResolver(resolver=resolver),
                    lambda store: TransportSecurity(mta_sts=sts, ca_file=str(tmp_path / "ca.pem"), port=port),
                    "bob@good.test",
                    "bob@wrong.test",
                    "bob@trial.test",
                )
            finally:
                await server.stop()

        queue, lines = asyncio.run(asyncio.wait_for(main(), 45))
    assert [(r.recipients, r.tls) for r in peers["good"].received] == [(["bob@good.test"], True)]
    assert peers["wrong"].received == []  # the certificate is not for mx.wrong.test: nothing sent
    assert pending(queue) == {"bob@wrong.test": ("pending", "4.7.5")}
    assert [(r.recipients, r.tls) for r in peers["trial"].received] == [(["bob@trial.test"], True)]
    assert lines == {
        "good.test sts mx.good.test ok": 1,
        "wrong.test sts mx.wrong.test certificate-host-mismatch": 1,
        "trial.test sts mx.trial.test certificate-host-mismatch": 1,
    }


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

    async def main() -> tuple[list[QueuedMessage], dict[str, int]]:
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

    queue, lines = asyncio.run(asyncio.wait_for(main(), 45))
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
