"""Our outbound mail verified by independent verifiers from Debian (issue 13; docs/decisions/0056), installed
by `make deps` as the other third-party programs here are: a real server whose domain's DKIM records are
published, exactly as `postoffice dkim records` prints them, in a DNS server on loopback; a message submitted
on port 587 (STARTTLS, AUTH) to a local account and to a remote domain, whose MX is a fake SMTP server on
127.0.0.3; what arrives at both is checked by Mail::DKIM (Perl) and OpenDKIM (`opendkim-testmsg`), neither
of them our code (tests/support/dkim_verifiers.py says how each is pointed at the loopback DNS)."""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import pytest

from tests.integration.harness import DataDir, ServerProcess, cli, make_data_dir
from tests.integration.mailcheck import inbox_messages
from tests.support.dkim_verifiers import mail_dkim, opendkim
from tests.support.dns_server import DnsServer, Record, Zones
from tests.support.smtp_peer import SmtpPeer
from tests.web.conftest import set_settings

pytestmark = pytest.mark.interop

DEMO, OTHER, REMOTE = "demo@example.test", "other@example.test", "bob@remote.test"
PEER = "127.0.0.3"
DEADLINE = 30.0
T = TypeVar("T")

MESSAGE = (
    "From: Demo User <demo@example.test>\r\n"
    f"To: Bob <{REMOTE}>\r\n"
    f"Cc: {OTHER}\r\n"
    "Subject: =?utf-8?q?Caf=C3=A9?= tomorrow\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "Shall we meet at the café at ten?   \r\n"  # trailing white space: relaxed canonicalisation
    "\r\n"
    "-- \r\n"
    "Demo\r\n"
).encode()


def wait_for(what: str, check: Callable[[], T]) -> T:
    end = time.monotonic() + DEADLINE
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


@dataclass
class World:
    data: DataDir
    server: ServerProcess
    peer: SmtpPeer
    dns: DnsServer
    records: list[Record]


def published_records(data: DataDir) -> list[Record]:
    """The zone-file lines `postoffice dkim records` prints, as (name, type, rdata) for the DNS server."""
    printed = cli("dkim", "records", "example.test", config=data.config)
    lines = [line.split(None, 3) for line in printed.splitlines() if line and not line.startswith(";")]
    assert len(lines) == 2, printed
    return [(name, kind, value) for name, _class, kind, value in lines]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    zones = Zones([("remote.test.", "MX", "10 mx.remote.test."), ("mx.remote.test.", "A", PEER)])
    port = free_port(PEER)
    with DnsServer(zones) as dns_server, SmtpPeer(PEER, port) as peer:
        data = make_data_dir(tmp_path_factory.mktemp("dkim-signing") / "data", users=("demo", "other"))
        set_settings(data, "queue", nameservers=["127.0.0.1"], dns_port=dns_server.port, delivery_port=port)
        set_settings(data, "mailauth", sign=True)  # the harness turns it off for other tests
        records = published_records(data)  # made by `postoffice init` for its domain
        for record in records:
            zones.add(*record)
        server = ServerProcess(data).start()
        try:
            yield World(data, server, peer, dns_server, records)
        finally:
            server.stop()


def submit(world: World) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", world.server.port("submission"), timeout=30) as smtp:
        smtp.starttls(context=context)
        smtp.login(DEMO, world.data.passwords[DEMO])
        smtp.sendmail(DEMO, [OTHER, REMOTE], MESSAGE, mail_options=["BODY=8BITMIME"])


def without_signature(message: bytes, algorithm: bytes) -> bytes:
    """The message without its DKIM-Signature field of `algorithm` (to check the other one alone)."""
    head, body = message.split(b"\r\n\r\n", 1)
    fields = re.split(rb"\r\n(?![ \t])", head)
    kept = [f for f in fields if not (f.lower().startswith(b"dkim-signature:") and b"a=" + algorithm in f)]
    assert len(kept) == len(fields) - 1
    return b"\r\n".join(kept) + b"\r\n\r\n" + body


@pytest.fixture(scope="module")
def delivered(world: World) -> tuple[bytes, bytes]:
    """What the remote server received and what the local account keeps, of one submitted message."""
    submit(world)
    [remote] = wait_for("the remote delivery", lambda: world.peer.received)
    [(_uid, local)] = wait_for("the local copy", lambda: inbox_messages(world.data.root, OTHER))
    assert remote.recipients == [REMOTE]
    return remote.data, local


def test_the_message_leaves_with_an_rsa_and_an_ed25519_signature_of_our_domain(
    world: World, delivered: tuple[bytes, bytes]
) -> None:
    remote, local = delivered
    head = remote.split(b"\r\n\r\n")[0]
    signatures = re.findall(rb"(?im)^DKIM-Signature:[^\r\n]*(?:\r\n[ \t][^\r\n]*)*", head)
    assert len(signatures) == 2
    assert b"a=rsa-sha256" in signatures[0]  # RSA on top
    assert b"a=ed25519-sha256" in signatures[1]
    for signature in signatures:
        assert b"d=example.test" in signature
        unfolded = re.sub(rb"\s+", b"", signature)
        assert (
            b"h=from:to:cc:subject:date:message-id:mime-version:content-type:content-transfer-encoding:from;"
            in unfolded
        )
    assert remote.startswith(b"DKIM-Signature:")
    assert local.startswith(b"DKIM-Signature:")  # the local copy is the signed text too
    assert b"dkim: signed id=" in world.server.log().encode()


def test_mail_dkim_verifies_what_the_remote_server_received(
    world: World, delivered: tuple[bytes, bytes]
) -> None:
    remote, local = delivered
    for message in (remote, local):
        results = {
            algorithm: (result, domain, detail)
            for result, domain, _s, algorithm, detail in mail_dkim(message, world.dns.port)
        }
        assert results["rsa-sha256"] == ("pass", "example.test", "pass")
        # Debian 12's Mail::DKIM does not know Ed25519 (a later one verifies it): never a failure
        ed_result, ed_domain, ed_detail = results["ed25519-sha256"]
        assert ed_domain == "example.test"
        assert ed_result == "pass" or "unsupported algorithm" in ed_detail


def test_opendkim_verifies_each_signature_on_its_own(world: World, delivered: tuple[bytes, bytes]) -> None:
    remote, local = delivered
    for message in (remote, local):
        assert opendkim(message, world.records)[0] == 0
        assert opendkim(without_signature(message, b"ed25519-sha256"), world.records)[0] == 0  # RSA alone
        assert opendkim(without_signature(message, b"rsa-sha256"), world.records)[0] == 0  # Ed25519 alone
    # and it is checking: a changed body or a missing key fails
    status, said = opendkim(remote.replace(b"at ten", b"at six"), world.records)
    assert status != 0
    assert "Bad signature" in said
    ed_alone = without_signature(remote, b"rsa-sha256")
    assert opendkim(ed_alone, [r for r in world.records if "k=ed25519" not in r[2]])[0] != 0
