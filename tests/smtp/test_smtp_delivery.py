"""Outbound delivery (`postoffice.smtp.delivery.deliver`) to scripted remote servers on loopback, found
through a real DNS server where the destination matters: MX order and fallback, STARTTLS, per-recipient
replies, SIZE/8BITMIME/SMTPUTF8/DSN, dropped and stalled connections, several messages over one connection."""

from __future__ import annotations

import asyncio
import random
import socket
import ssl
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from io import BufferedIOBase
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postoffice.net.tls import generate_self_signed
from postoffice.smtp.delivery import (
    HostTls,
    OutgoingMessage,
    OutgoingRecipient,
    RecipientOutcome,
    TlsSession,
    _DotStuffer,
    deliver,
    outcomes_for_dns_error,
    unverified_context,
)
from postoffice.smtp.mx import Host, MxResolver, PermanentDnsError
from tests.support import smtp_peer
from tests.support.dns_server import DnsServer, Zones
from tests.support.smtp_peer import Script, SmtpPeer, can_bind

pytestmark = pytest.mark.timeout(30)

T = TypeVar("T")
HELO = "out.sender.test"
NET = "127.0.19."  # ephemeral-port peers; port 25 peers use 127.0.18.x (see the first test)
FAST = {"connect_timeout": 3.0, "command_timeout": 3.0, "data_timeout": 3.0}
NO_8BITMIME = ("PIPELINING", "SIZE 10485760", "SMTPUTF8", "ENHANCEDSTATUSCODES")


# -- the stand-ins -------------------------------------------------------------------------------------------


class RecordingPeer(SmtpPeer):
    """A scripted peer that keeps every line the client sent (`lines`) and the clients' addresses
    (`clients`), and answers the verbs in `intercept` itself (see RecordingFile)."""

    def __init__(self, host: str, port: int, script: Script, tls_context: ssl.SSLContext | None) -> None:
        super().__init__(host, port, script, tls_context)
        self.lines: list[bytes] = []
        self.clients: list[str] = []
        self.intercept: dict[str, str] = {}


class RecordingFile:
    """The peer handler's rfile: records every line the client sent (commands and data) and answers the
    verbs in `peer.intercept` itself (AUTH, or a refused EHLO), which the scripted peer does not know."""

    def __init__(self, raw: BufferedIOBase, handler: RecordingHandler) -> None:
        self._raw = raw
        self._handler = handler

    def readline(self, limit: int = -1) -> bytes:
        peer = self._handler.recording_peer
        while True:
            line = self._raw.readline(limit)
            with peer.lock:
                peer.lines.append(line)
            verb = line.split(b" ", 1)[0].strip().upper().decode("ascii", "replace")
            reply = peer.intercept.get(verb)
            if reply is None:
                return line
            self._handler._send(reply)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


class RecordingHandler(smtp_peer._Handler):
    """The scripted peer's handler, with every received line recorded (MAIL/RCPT parameters) and the client's
    source address kept. The STARTTLS branch assigns a new rfile: the property wraps that one too."""

    @property
    def rfile(self) -> Any:
        return self._recording_rfile

    @rfile.setter
    def rfile(self, raw: BufferedIOBase) -> None:
        self._recording_rfile = RecordingFile(raw, self)

    @property
    def recording_peer(self) -> RecordingPeer:
        peer = self.peer
        assert isinstance(peer, RecordingPeer)  # `peers` makes only those
        return peer

    def setup(self) -> None:
        super().setup()
        peer = self.recording_peer
        with peer.lock:
            peer.clients.append(self.client_address[0])


def commands(peer: RecordingPeer, verb: str) -> list[str]:
    with peer.lock:
        lines = list(peer.lines)
    return [
        line.decode("utf-8").rstrip("\r\n") for line in lines if line.upper().startswith(verb.encode() + b" ")
    ]


@contextmanager
def peers(
    *scripts: Script, port: int = 0, tls: ssl.SSLContext | None = None, first: int = 2, net: str = NET
) -> Iterator[list[RecordingPeer]]:
    """Peers on net+first, net+first+1, ... all on one port (`deliver` takes one port for all hosts)."""
    for _ in range(20):
        created: list[RecordingPeer] = []
        try:
            bind_port = port
            for i, script in enumerate(scripts):
                peer = RecordingPeer(f"{net}{first + i}", bind_port, script, tls)
                created.append(peer)
                bind_port = peer.port
        except OSError:
            for peer in created:
                peer._server.server_close()
            if port:
                raise
            continue
        break
    else:
        raise OSError("no common free port")
    for peer in created:
        peer._server.RequestHandlerClass = RecordingHandler
        peer.start()
    try:
        yield created
    finally:
        with ThreadPoolExecutor(len(created)) as pool:  # each stop waits up to 0.5 s for its serve loop
            list(pool.map(SmtpPeer.stop, created))


def free_port_elsewhere(address: str, port: int) -> bool:
    """Nothing listens on address:port (a connection there is refused)."""
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((address, port)) != 0


def run(coro: Coroutine[Any, Any, T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, 15)

    return asyncio.run(bounded())


def message(
    *recipients: str, body: bytes = b"Subject: hi\r\n\r\nHello.\r\n", **kwargs: Any
) -> OutgoingMessage:
    kwargs.setdefault("sender", "alice@sender.test")
    return OutgoingMessage(
        recipients=[OutgoingRecipient(r) for r in recipients], data=body, size=len(body), **kwargs
    )


def host_for(peer: SmtpPeer, name: str = "peer.test") -> Host:
    return Host(name, 0, [peer.host])


def send(
    hosts: list[Host], messages: list[OutgoingMessage], port: int, **kwargs: Any
) -> list[list[RecipientOutcome]]:
    options = {**FAST, **kwargs}
    return run(deliver(hosts, messages, helo_name=HELO, port=port, **options))


def statuses(outcomes: list[RecipientOutcome]) -> list[tuple[str, str, int, str | None]]:
    return [(o.address, o.status, o.code, o.enhanced) for o in outcomes]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    generate_self_signed("peer.test", cert, key)
    return cert, key


@pytest.fixture
def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


ZONES = Zones(
    [
        ("dest.test.", "MX", "10 mx1.dest.test."),
        ("dest.test.", "MX", "20 mx2.dest.test."),
        ("dest.test.", "MX", "30 mx3.dest.test."),
        ("mx1.dest.test.", "A", "127.0.18.2"),
        ("mx2.dest.test.", "A", "127.0.18.3"),
        ("mx3.dest.test.", "A", "127.0.18.4"),
        ("implicit.test.", "A", "127.0.19.40"),
        ("six.test.", "MX", "10 mx.six.test."),
        ("mx.six.test.", "AAAA", "::1"),
    ]
)


@pytest.fixture(scope="module")
def dns_port() -> Iterator[int]:
    with DnsServer(ZONES) as server:
        yield server.port


def resolve(dns_port: int, domain: str, **kwargs: Any) -> list[Host]:
    resolver = MxResolver(["127.0.0.1"], port=dns_port, timeout=2, lifetime=4, rng=random.Random(0), **kwargs)
    return run(resolver.destinations(domain))


# -- destinations and connections ----------------------------------------------------------------------------


def test_mx_order_on_port_25_skips_a_refusing_host_and_a_421_greeting(dns_port: int) -> None:
    """The real shape: MX lookup, then port 25 on three "hosts" (127.0.18.2-4)."""
    if not all(can_bind(f"127.0.18.{i}") for i in (2, 3, 4)) or not free_port_elsewhere("127.0.18.2", 25):
        pytest.fail("127.0.18.2-4 port 25 must be bindable (tests run as root on Linux)")
    try:
        context = peers(
            Script(replies={"connect": "421 4.3.2 busy, try later"}),
            Script(),
            port=25,
            first=3,
            net="127.0.18.",
        )
        running = context.__enter__()
    except OSError:
        pytest.fail("port 25 on 127.0.18.3-4 is taken by another process")
    try:
        busy, good = running
        hosts = resolve(dns_port, "dest.test")
        assert [h.name for h in hosts] == ["mx1.dest.test", "mx2.dest.test", "mx3.dest.test"]
        (outcomes,) = send(hosts, [message("bob@dest.test")], port=25)
        (outcome,) = outcomes
        assert outcome.status == "delivered"
        assert outcome.code == 250
        assert outcome.enhanced == "2.0.0"
        assert outcome.remote_mta == "mx3.dest.test"
        assert outcome.remote_reply
        assert busy.connections == 1
        assert busy.received == []
        assert [r.recipients for r in good.received] == [["bob@dest.test"]]
        assert good.received[0].helo == HELO
    finally:
        context.__exit__(None, None, None)


def test_when_every_address_fails_all_recipients_are_temporary_with_the_last_error() -> None:
    with peers(Script(replies={"connect": "554 5.7.1 go away"})) as (hostile,):
        refusing = Host("mx1.peer.test", 10, [f"{NET}9"])  # nothing listens there
        assert free_port_elsewhere(f"{NET}9", hostile.port)
        (outcomes,) = send(
            [refusing, host_for(hostile, "mx2.peer.test")],
            [message("a@peer.test", "b@peer.test")],
            hostile.port,
        )
    assert [(o.status, o.code, o.enhanced, o.text) for o in outcomes] == [
        ("temporary", 554, "4.7.1", "go away"),  # deferred, so the class follows the status
    ] * 2
    assert outcomes[0].remote_mta == "mx2.peer.test"
    assert outcomes[0].remote_reply
    (outcomes,) = send([refusing], [message("a@peer.test")], hostile.port)
    assert outcomes[0].status == "temporary"
    assert outcomes[0].enhanced == "4.4.1"
    assert "connect to mx1.peer.test[127.0.19.9]" in outcomes[0].text
    assert not outcomes[0].remote_reply
    (outcomes,) = send([], [message("a@peer.test")], 25)
    assert outcomes[0].status == "temporary"


def test_a_stalled_greeting_times_out_and_the_next_address_is_tried() -> None:
    with peers(Script(replies={"connect": "stall"}), Script()) as (stalled, good):
        started = time.monotonic()
        (outcomes,) = send(
            [Host("peer.test", 0, [stalled.host, good.host])],
            [message("a@peer.test")],
            good.port,
            connect_timeout=0.5,
        )
        assert time.monotonic() - started < 3
    assert outcomes[0].status == "delivered"
    assert len(good.received) == 1


def test_without_mx_the_domains_own_address_is_used(dns_port: int) -> None:
    with peers(Script(), first=40) as (peer,):
        hosts = resolve(dns_port, "implicit.test")
        assert hosts == [Host("implicit.test", 0, ["127.0.19.40"])]
        (outcomes,) = send(hosts, [message("x@implicit.test")], peer.port)
    assert outcomes[0].status == "delivered"
    assert outcomes[0].remote_mta == "implicit.test"


def test_delivery_over_ipv6_to_an_aaaa_address(dns_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        pytest.fail("this test needs the IPv6 loopback address ::1")

    class Server6(smtp_peer._Server):
        address_family = socket.AF_INET6

    monkeypatch.setattr(smtp_peer, "_Server", Server6)
    hosts = resolve(dns_port, "six.test", ip_versions=(6, 4))
    assert hosts == [Host("mx.six.test", 10, ["::1"])]
    with peers(Script(), net="::", first=1) as (peer,):
        (outcomes,) = send(hosts, [message("v6@six.test")], peer.port)
    assert outcomes[0].status == "delivered"
    assert len(peer.received) == 1


def test_local_address_is_the_source_of_the_connection() -> None:
    with peers(Script()) as (peer,):
        (outcomes,) = send([host_for(peer)], [message("a@peer.test")], peer.port, local_address=f"{NET}77")
        assert outcomes[0].status == "delivered"
        assert peer.clients == [f"{NET}77"]


def test_helo_is_used_when_ehlo_is_refused() -> None:
    with peers(Script()) as (peer,):
        peer.intercept["EHLO"] = "502 5.5.1 EHLO not implemented"
        (outcomes,) = send([host_for(peer)], [message("a@peer.test")], peer.port)
        assert commands(peer, "HELO") == [f"HELO {HELO}"]
    assert outcomes[0].status == "delivered"
    assert peer.received[0].helo == HELO


# -- TLS -----------------------------------------------------------------------------------------------------


def test_starttls_is_used_when_offered(server_tls: ssl.SSLContext) -> None:
    with peers(Script(), tls=server_tls) as (peer,):
        (outcomes,) = send([host_for(peer)], [message("a@peer.test")], peer.port)
        assert commands(peer, "EHLO") == [f"EHLO {HELO}", f"EHLO {HELO}"]  # again after TLS (RFC 3207 4.2)
        literal = Host(f"[{peer.host}]", 0, [peer.host])  # an address literal: no SNI, still TLS
        (literal_outcomes,) = send([literal], [message("b@peer.test")], peer.port)
    assert outcomes[0].status == literal_outcomes[0].status == "delivered"
    assert [r.tls for r in peer.received] == [True, True]


def test_plaintext_when_starttls_is_not_offered_or_tls_is_none(server_tls: ssl.SSLContext) -> None:
    with peers(Script(starttls=False), Script(), tls=server_tls) as (plain, offering):
        (outcomes,) = send([host_for(plain)], [message("a@peer.test")], plain.port)
        (outcomes2,) = send([host_for(offering)], [message("a@peer.test")], offering.port, tls="none")
    assert outcomes[0].status == outcomes2[0].status == "delivered"
    assert not plain.received[0].tls
    assert not offering.received[0].tls


def test_a_failed_handshake_falls_back_to_plaintext_on_a_new_connection(server_tls: ssl.SSLContext) -> None:
    server_tls.maximum_version = ssl.TLSVersion.TLSv1_2
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    client.minimum_version = ssl.TLSVersion.TLSv1_3  # no common version: the handshake fails
    with peers(Script(), tls=server_tls) as (peer,):
        (outcomes,) = send([host_for(peer)], [message("a@peer.test")], peer.port, tls_context=client)
    assert outcomes[0].status == "delivered"
    assert peer.connections == 2
    assert not peer.received[0].tls


def test_required_tls_verifies_the_certificate_and_never_falls_back(
    server_tls: ssl.SSLContext, certificate: tuple[Path, Path]
) -> None:
    trusting = ssl.create_default_context(cafile=str(certificate[0]))
    with peers(Script(), Script(starttls=False), tls=server_tls) as (peer, plain):
        (ok,) = send(
            [host_for(peer)], [message("a@peer.test")], peer.port, tls="required", tls_context=trusting
        )
        (untrusted,) = send([host_for(peer)], [message("b@peer.test")], peer.port, tls="required")
        (wrong_name,) = send(
            [host_for(peer, "other.test")],
            [message("c@peer.test")],
            peer.port,
            tls="required",
            tls_context=trusting,
        )
        (no_tls,) = send([host_for(plain)], [message("d@peer.test")], plain.port, tls="required")
    assert ok[0].status == "delivered"
    assert peer.received[0].tls
    assert [r.recipients for r in peer.received] == [["a@peer.test"]]
    assert (untrusted[0].status, untrusted[0].enhanced) == ("temporary", "4.7.5")
    assert (wrong_name[0].status, wrong_name[0].enhanced) == ("temporary", "4.7.5")
    assert (no_tls[0].status, no_tls[0].enhanced) == ("temporary", "4.7.4")
    assert plain.received == []


def test_a_host_tls_requirement_applies_to_its_host_only_and_every_connection_is_reported(
    server_tls: ssl.SSLContext, certificate: tuple[Path, Path]
) -> None:
    """`host_tls` (the DANE / MTA-STS layer's per-host answer): a host that must verify against a CA we do
    not trust is skipped (4.7.5, no plaintext fallback) and the next host is used as usual; each
    connection's TLS goes to `on_tls` with its RFC 8460 result type."""
    sessions: list[TlsSession] = []
    verifying = ssl.create_default_context()  # the system's CAs: the peers' self-signed certificate fails
    with peers(Script(), Script(), Script(starttls=False), tls=server_tls) as (strict, easy, plain):
        hosts = [host_for(strict, "mx1.peer.test"), host_for(easy, "mx2.peer.test")]
        requirement = {"mx1.peer.test": HostTls(True, verifying)}
        (outcomes,) = send(
            hosts,
            [message("a@peer.test")],
            strict.port,
            host_tls=lambda host: requirement.get(host.name),
            on_tls=sessions.append,
        )
        (plain_outcomes,) = send(
            [host_for(plain, "mx3.peer.test")], [message("b@peer.test")], plain.port, on_tls=sessions.append
        )
    assert outcomes[0].status == "delivered"
    assert strict.received == []
    assert strict.connections == 1  # no second, plaintext, try
    assert easy.received[0].tls
    assert plain_outcomes[0].status == "delivered"
    assert [(s.host.name, s.tls, s.failure, s.enforced) for s in sessions] == [
        ("mx1.peer.test", False, "certificate-not-trusted", True),
        ("mx2.peer.test", True, None, False),
        ("mx3.peer.test", False, "starttls-not-supported", False),
    ]


def test_a_chain_check_is_enforced_or_only_reported(
    server_tls: ssl.SSLContext, certificate: tuple[Path, Path]
) -> None:
    """The check after the handshake sees the peer's certificate (DER); a failed enforced check ends the
    attempt with 4.7.5, a failed reported-only check (MTA-STS "testing") lets the mail go."""
    leaf = ssl.PEM_cert_to_DER_cert(certificate[0].read_text())
    seen: list[list[bytes]] = []
    sessions: list[TlsSession] = []

    def refuse(chain: list[bytes]) -> tuple[str, str] | None:
        seen.append(chain)
        return "validation-failure", "no TLSA record matches"

    with peers(Script(), tls=server_tls) as (peer,):
        (enforced,) = send(
            [host_for(peer)],
            [message("a@peer.test")],
            peer.port,
            host_tls=lambda host: HostTls(True, unverified_context(), check=refuse),
            on_tls=sessions.append,
        )
        (reported,) = send(
            [host_for(peer)],
            [message("b@peer.test")],
            peer.port,
            host_tls=lambda host: HostTls(False, None, check=refuse, enforce=False),
            on_tls=sessions.append,
        )
        (passed,) = send(
            [host_for(peer)],
            [message("c@peer.test")],
            peer.port,
            host_tls=lambda host: HostTls(True, unverified_context(), check=lambda chain: None),
            on_tls=sessions.append,
        )
    assert (enforced[0].status, enforced[0].enhanced) == ("temporary", "4.7.5")
    assert "no TLSA record matches" in enforced[0].text
    assert reported[0].status == passed[0].status == "delivered"
    assert [r.recipients for r in peer.received] == [["b@peer.test"], ["c@peer.test"]]
    assert seen[0][0] == leaf
    assert [(s.failure, s.enforced) for s in sessions] == [
        ("validation-failure", True),
        ("validation-failure", False),
        (None, False),
    ]


def test_smarthost_auth_only_over_tls(server_tls: ssl.SSLContext) -> None:
    extensions = (*Script().extensions, "AUTH PLAIN")
    with peers(
        Script(extensions=extensions), Script(extensions=extensions, starttls=False), tls=server_tls
    ) as (
        tls_peer,
        plain_peer,
    ):
        for peer in (tls_peer, plain_peer):
            peer.intercept["AUTH"] = "235 2.7.0 authenticated"
        (ok,) = send([host_for(tls_peer)], [message("a@peer.test")], tls_peer.port, auth=("relay", "s3cret"))
        (refused,) = send(
            [host_for(plain_peer)], [message("a@peer.test")], plain_peer.port, auth=("relay", "pw")
        )
        assert len(commands(tls_peer, "AUTH")) == 1
        assert commands(plain_peer, "AUTH") == []
    assert ok[0].status == "delivered"
    assert refused[0].status == "temporary"
    assert "without TLS" in refused[0].text


# -- replies per stage ---------------------------------------------------------------------------------------


def test_rcpt_4xx_and_5xx_apply_to_that_recipient_only() -> None:
    script = Script(
        rcpt_replies={"busy@peer.test": "451 4.2.1 mailbox busy", "gone@peer.test": "550 5.1.1 no such user"}
    )
    with peers(script) as (peer,):
        (outcomes,) = send(
            [host_for(peer)], [message("ok@peer.test", "busy@peer.test", "gone@peer.test")], peer.port
        )
    assert statuses(outcomes) == [
        ("ok@peer.test", "delivered", 250, "2.0.0"),
        ("busy@peer.test", "temporary", 451, "4.2.1"),
        ("gone@peer.test", "permanent", 550, "5.1.1"),
    ]
    assert outcomes[2].text == "no such user"
    assert outcomes[2].remote_reply
    assert [r.recipients for r in peer.received] == [["ok@peer.test"]]


def test_no_data_when_no_recipient_was_accepted() -> None:
    with peers(Script(replies={"rcpt": "550 5.1.1 nobody here"})) as (peer,):
        (outcomes,) = send([host_for(peer)], [message("a@peer.test", "b@peer.test")], peer.port)
        assert b"RSET\r\n" in peer.lines
        assert b"DATA\r\n" not in peer.lines
    assert [o.status for o in outcomes] == ["permanent", "permanent"]


@pytest.mark.parametrize(
    ("stage", "reply", "status"),
    [
        ("mail", "451 4.3.0 try later", "temporary"),
        ("mail", "553 5.7.1 sender rejected", "permanent"),
        ("data", "451 4.3.0 not now", "temporary"),
        ("data", "554 5.5.1 no data for you", "permanent"),
        ("dot", "452 4.3.1 out of space", "temporary"),
        ("dot", "554 5.7.1 looks like spam", "permanent"),
    ],
)
def test_mail_data_and_dot_replies_apply_to_all_accepted_recipients(
    stage: str, reply: str, status: str
) -> None:
    script = Script(replies={stage: reply}, rcpt_replies={"gone@peer.test": "550 5.1.1 no such user"})
    with peers(script) as (peer,):
        (outcomes,) = send(
            [host_for(peer)], [message("a@peer.test", "b@peer.test", "gone@peer.test")], peer.port
        )
    code, enhanced, text = reply.split(" ", 2)
    expected = [(status, int(code), enhanced, text)] * 2
    if stage != "mail":  # after MAIL was refused, no RCPT was sent
        expected.append(("permanent", 550, "5.1.1", "no such user"))
    else:
        expected.append((status, int(code), enhanced, text))
    assert [(o.status, o.code, o.enhanced, o.text) for o in outcomes] == expected
    assert peer.received == []


@pytest.mark.parametrize("stage", ["rcpt", "data", "dot"])
def test_a_connection_dropped_mid_transaction_leaves_open_recipients_temporary(stage: str) -> None:
    with peers(Script(replies={stage: "drop"}, rcpt_replies={"gone@peer.test": "550 5.1.1 no"})) as (peer,):
        first, second = send(
            [host_for(peer)], [message("gone@peer.test", "a@peer.test"), message("c@peer.test")], peer.port
        )
    assert first[0].status == "permanent"
    assert (first[1].status, first[1].code, first[1].enhanced) == ("temporary", 421, "4.4.2")
    assert "lost connection with peer.test" in first[1].text
    assert not first[1].remote_reply
    assert second[0].status == "temporary"
    assert peer.connections == 1


def test_a_stalled_reply_times_out() -> None:
    with peers(Script(replies={"dot": "stall"})) as (peer,):
        started = time.monotonic()
        (outcomes,) = send([host_for(peer)], [message("a@peer.test")], peer.port, data_timeout=0.5)
        assert time.monotonic() - started < 3
    assert outcomes[0].status == "temporary"
    assert "timed out" in outcomes[0].text


def test_421_on_rcpt_ends_the_session() -> None:
    with peers(Script(rcpt_replies={"b@peer.test": "421 4.3.2 shutting down"})) as (peer,):
        first, second = send(
            [host_for(peer)],
            [message("a@peer.test", "b@peer.test", "c@peer.test"), message("d@peer.test")],
            peer.port,
        )
    assert [(o.status, o.code) for o in first] == [("temporary", 421)] * 3
    assert second[0].status == "temporary"
    assert peer.received == []


# -- extensions ----------------------------------------------------------------------------------------------


def test_size_over_the_announced_limit_is_permanent_without_sending() -> None:
    big = message("a@peer.test", body=b"Subject: big\r\n\r\n" + b"x" * 2000 + b"\r\n")
    small = message("b@peer.test")
    with peers(Script(extensions=("SIZE 1000", "8BITMIME"))) as (peer,):
        big_outcomes, small_outcomes = send([host_for(peer)], [big, small], peer.port)
        assert commands(peer, "MAIL") == [f"MAIL FROM:<alice@sender.test> SIZE={small.size}"]
    assert statuses(big_outcomes) == [("a@peer.test", "permanent", 552, "5.3.4")]
    assert "exceeds the size limit 1000" in big_outcomes[0].text
    assert not big_outcomes[0].remote_reply
    assert small_outcomes[0].status == "delivered"


def test_8bit_content_needs_8bitmime() -> None:
    eight = message("a@peer.test", body="Subject: ü\r\n\r\nGrüße\r\n".encode(), eight_bit=True)
    with peers(Script(extensions=NO_8BITMIME), Script()) as (without, with_8bit):
        (refused, plain) = send([host_for(without)], [eight, message("b@peer.test")], without.port)
        (accepted,) = send([host_for(with_8bit)], [eight], with_8bit.port)
        assert commands(with_8bit, "MAIL")[0].endswith(" BODY=8BITMIME")
    assert statuses(refused) == [("a@peer.test", "permanent", 554, "5.6.3")]
    assert "8BITMIME" in refused[0].text
    assert plain[0].status == "delivered"
    assert [r.recipients for r in without.received] == [["b@peer.test"]]
    assert accepted[0].status == "delivered"
    assert with_8bit.received[0].data == eight.data


def test_smtputf8_is_required_for_non_ascii_addresses_and_utf8_headers() -> None:
    no_utf8 = ("SIZE 10485760", "8BITMIME", "ENHANCEDSTATUSCODES")
    mixed = message("дмитрий@peer.test", "bob@bücher.test")
    headers = message(
        "bob@peer.test", smtputf8=True, eight_bit=True, body="Subject: Grüße\r\n\r\nx\r\n".encode()
    )
    with peers(Script(extensions=no_utf8), Script()) as (without, with_utf8):
        mixed_out, headers_out = send([host_for(without)], [mixed, headers], without.port)
        assert commands(without, "RCPT") == ["RCPT TO:<bob@xn--bcher-kva.test>"]  # A-label, no SMTPUTF8
        (utf8_out,) = send([host_for(with_utf8)], [mixed], with_utf8.port)
        assert commands(with_utf8, "MAIL") == [f"MAIL FROM:<alice@sender.test> SIZE={mixed.size} SMTPUTF8"]
        assert commands(with_utf8, "RCPT") == ["RCPT TO:<дмитрий@peer.test>", "RCPT TO:<bob@bücher.test>"]
    assert statuses(mixed_out) == [
        ("дмитрий@peer.test", "permanent", 553, "5.6.7"),
        ("bob@bücher.test", "delivered", 250, "2.0.0"),
    ]
    assert statuses(headers_out) == [("bob@peer.test", "permanent", 554, "5.6.9")]
    assert [o.status for o in utf8_out] == ["delivered", "delivered"]


def test_dsn_parameters_are_passed_only_when_dsn_is_offered() -> None:
    data = b"Subject: dsn\r\n\r\nx\r\n"
    dsn_message = OutgoingMessage(
        sender="alice@sender.test",
        recipients=[
            OutgoingRecipient("a@peer.test", notify="success,failure", orcpt="rfc822;A+B=c@peer.test"),
            OutgoingRecipient("b@peer.test", notify="NEVER"),
        ],
        data=data,
        size=len(data),
        envid="queue id 42",
        ret="hdrs",
    )
    with peers(Script(extensions=(*Script().extensions, "DSN")), Script()) as (dsn, plain):
        (with_dsn,) = send([host_for(dsn)], [dsn_message], dsn.port)
        (without,) = send([host_for(plain)], [dsn_message], plain.port)
        assert commands(dsn, "MAIL") == [
            f"MAIL FROM:<alice@sender.test> SIZE={len(data)} RET=HDRS ENVID=queue+20id+2042"
        ]
        assert commands(dsn, "RCPT") == [
            "RCPT TO:<a@peer.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;A+2BB+3Dc@peer.test",
            "RCPT TO:<b@peer.test> NOTIFY=NEVER",
        ]
        assert commands(plain, "MAIL") == [f"MAIL FROM:<alice@sender.test> SIZE={len(data)}"]
        assert commands(plain, "RCPT") == ["RCPT TO:<a@peer.test>", "RCPT TO:<b@peer.test>"]
    assert [o.remote_dsn for o in with_dsn] == [True, True]
    assert [o.remote_dsn for o in without] == [False, False]


def test_null_sender_and_bad_addresses() -> None:
    bounce = message("a@peer.test", "not an address", sender="")
    with peers(Script()) as (peer,):
        (outcomes,) = send([host_for(peer)], [bounce], peer.port)
        (bad_sender,) = send([host_for(peer)], [message("x@peer.test", sender="bad sender@x")], peer.port)
        assert commands(peer, "MAIL") == [f"MAIL FROM:<> SIZE={bounce.size}"]
    assert statuses(outcomes) == [
        ("a@peer.test", "delivered", 250, "2.0.0"),
        ("not an address", "permanent", 553, "5.1.3"),
    ]
    assert statuses(bad_sender) == [("x@peer.test", "permanent", 553, "5.1.7")]


# -- the connection and the data -----------------------------------------------------------------------------


def test_several_messages_share_one_connection_with_rset_after_an_abandoned_one() -> None:
    script = Script(rcpt_replies={"gone@peer.test": "550 5.1.1 no"})
    batch = [message("a@peer.test"), message("gone@peer.test"), message("b@peer.test", "c@peer.test")]
    with peers(script) as (peer,):
        results = send([host_for(peer)], batch, peer.port)
        assert peer.lines.count(b"RSET\r\n") == 1
        assert b"QUIT\r\n" in peer.lines
    assert [[o.status for o in outcomes] for outcomes in results] == [
        ["delivered"],
        ["permanent"],
        ["delivered", "delivered"],
    ]
    assert peer.connections == 1
    assert [r.recipients for r in peer.received] == [["a@peer.test"], ["b@peer.test", "c@peer.test"]]


def test_a_streamed_message_is_dot_stuffed_and_arrives_intact() -> None:
    lines = [b"Subject: stream\r\n", b"\r\n"] + [b".line %d with a leading dot\r\n" % i for i in range(20000)]
    body = b"".join(lines) + b"..\r\n.\r\n"
    pieces = [body[i : i + 7777] for i in range(0, len(body), 7777)]  # boundaries anywhere, also before dots
    produced: list[int] = []

    async def source() -> AsyncIterator[bytes]:
        for piece in pieces:
            produced.append(len(piece))
            yield piece

    streamed = OutgoingMessage("alice@sender.test", [OutgoingRecipient("a@peer.test")], source, len(body))
    with peers(Script()) as (peer,):
        (outcomes,) = send([host_for(peer)], [streamed], peer.port)
    assert outcomes[0].status == "delivered"
    assert peer.received[0].data == body
    assert len(produced) == len(pieces)


def test_a_failing_message_source_aborts_the_connection_and_defers() -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"Subject: x\r\n\r\n"
        raise OSError("disk on fire")

    failing = OutgoingMessage("alice@sender.test", [OutgoingRecipient("a@peer.test")], broken, 100)
    with peers(Script()) as (peer,):
        first, second = send([host_for(peer)], [failing, message("b@peer.test")], peer.port)
    assert (first[0].status, first[0].enhanced) == ("temporary", "4.3.0")
    assert "disk on fire" in first[0].text
    assert second[0].status == "temporary"
    assert peer.received == []


@given(st.lists(st.lists(st.sampled_from([b"a", b".", b"\r", b"\n", b"\r\n"]), max_size=20).map(b"".join)))
def test_dot_stuffing_over_any_chunking_round_trips(chunks: list[bytes]) -> None:
    stuffer = _DotStuffer()
    wire = b"".join(stuffer.feed(chunk) for chunk in chunks) + stuffer.finish()
    whole = b"".join(chunks)
    normalized = whole.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if normalized and not normalized.endswith(b"\r\n"):
        normalized += b"\r\n"
    assert wire.endswith(b".\r\n")
    lines = wire[:-3].split(b"\r\n")
    assert all(not line.startswith(b".") or line.startswith(b"..") for line in lines)
    unstuffed = b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)
    assert unstuffed == normalized
    assert b"\r" not in wire.replace(b"\r\n", b"")
    assert b"\n" not in wire.replace(b"\r\n", b"")


def test_dns_errors_become_outcomes_for_every_recipient() -> None:
    error = PermanentDnsError(556, "5.1.10", "domain x.test does not accept mail (null MX)")
    outcomes = outcomes_for_dns_error(message("a@x.test", "b@x.test"), error)
    assert [(o.status, o.code, o.enhanced) for o in outcomes] == [("permanent", 556, "5.1.10")] * 2


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="helo_name must be an ASCII host name"):
        run(deliver([], [message("a@x.test")], helo_name="bad name"))
    with pytest.raises(ValueError, match="tls must be"):
        run(deliver([], [message("a@x.test")], helo_name=HELO, tls="sometimes"))  # type: ignore[arg-type]  # wrong on purpose


def test_the_aiosmtplib_internals_we_rely_on_are_there() -> None:
    """Flow control for streamed DATA uses SMTPProtocol._drain_helper (docs/decisions/0018): without it a
    large message would be buffered whole. An aiosmtplib upgrade that drops it must fail here."""
    from aiosmtplib.protocol import SMTPProtocol

    assert callable(getattr(SMTPProtocol, "_drain_helper", None))
    assert callable(getattr(SMTPProtocol, "read_response", None))
