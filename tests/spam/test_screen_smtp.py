"""DNS blocklists and greylisting in real SMTP sessions (docs/decisions/0089): port 25 listeners on loopback
with the real store and delivery pipeline (the built-in spam stage included), blocklists served by a DNS
server on loopback, clients connecting from 127.0.0.2 (RFC 5782's test address, listed) or 127.0.0.1 (not
listed), and greylisting on a clock the test moves. The default exemptions of loopback networks are emptied
so that loopback clients are checked."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import smtplib
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from postoffice.net.dns import DnsResolver
from postoffice.net.listener import Connection, ListenerSpec
from postoffice.smtp.server import SmtpServerSettings, SmtpSession
from postoffice.spam.dnsbl import DnsblChecker
from postoffice.spam.greylist import Greylist, GreylistPolicy, triplet_key
from postoffice.spam.screen import MAX_GREYLISTED, InboundScreen, always_reachable
from postoffice.spam.settings import SpamConfig
from postoffice.spam.stage import SpamStage
from tests.delivery.harness import DEMO, HOSTNAME, OTHER, PASSWORD, THIRD, Harness, message
from tests.support.dns_server import DnsServer, Zones

LISTED, CLEAN = "127.0.0.2", "127.0.0.1"
POSTMASTER, ABUSE = "postmaster@example.test", "abuse@example.test"
SENDER = "ann@remote.example"
REASON = "Listed for testing; see https://bl.test/lookup?127.0.0.2"

RECORDS = [
    ("2.0.0.127.bl.test.", "A", "127.0.0.2"),
    ("2.0.0.127.bl.test.", "TXT", f'"{REASON}"'),
    ("bl.test.", "TXT", '"a blocklist"'),
    ("slow.test.", "TXT", '"a blocklist that never answers"'),
]


@pytest.fixture(scope="module")
def dns_server() -> Iterator[DnsServer]:
    zones = Zones(RECORDS)
    zones.never_answer("2.0.0.127.slow.test.")
    zones.never_answer("1.0.0.127.slow.test.")
    with DnsServer(zones) as server:
        yield server


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class ScreenedHarness(Harness):
    """The delivery harness with the built-in spam stage and port 25 listeners that screen their clients."""

    def __init__(self, root: Path, **spam: object) -> None:
        super().__init__(root)
        self.config = SpamConfig(**spam)  # type: ignore[arg-type]
        self.pipeline.stages = (SpamStage(self.config, None, HOSTNAME),)
        self.clock = Clock()
        postmaster = self.call(self.store.get_alias(POSTMASTER))  # made with the domain (RFC 5321 4.5.1)
        assert postmaster is not None
        assert postmaster.targets == (DEMO,)
        self.call(self.store.add_alias(ABUSE, [OTHER]))

    def screen(
        self,
        dns_server: DnsServer,
        *,
        zones: tuple[str, ...] = ("bl.test",),
        timeout: float = 5.0,
        **grey: float,
    ) -> InboundScreen:
        resolver = DnsResolver(
            ["127.0.0.1"], port=dns_server.port, timeout=min(timeout, 2.0), lifetime=timeout
        )
        greylist = None
        if grey:
            policy = GreylistPolicy(
                delay=grey.get("delay", 300),
                retry_window=86400,
                expiry=35 * 86400,
                auto_allowlist=int(grey.get("auto_allowlist", 0)),
            )
            greylist = Greylist(self.store, policy, exempt=(), clock=self.clock)
        return InboundScreen(
            dnsbl=DnsblChecker(zones, resolver, timeout=timeout) if zones else None,
            dnsbl_action=self.config.dnsbl_action,
            dnsbl_exempt=(),
            greylist=greylist,
        )

    def listen(self, screen: InboundScreen, mode: str = "mx") -> int:
        """A listener whose sessions ask `screen`; its port."""
        settings = SmtpServerSettings(hostname=HOSTNAME, spool_dir=self.root, mode=mode)
        spec = ListenerSpec(mode, "smtp" if mode == "mx" else "submission", "127.0.0.1", 0, "none")

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            conn = Connection(reader, writer, spec, lambda: None, self._shutting_down)
            with contextlib.suppress(Exception):
                await SmtpSession(
                    conn,
                    settings,
                    self.store,
                    authenticator=self.authenticator,
                    pipeline=self.pipeline,
                    policy=self.policy,
                    screen=screen,
                ).run()
            await conn.close()

        async def start() -> int:
            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            self._servers.append(server)
            return int(server.sockets[0].getsockname()[1])

        return self.call(start())

    def copies(self, address: str, mailbox: str = "INBOX") -> list[email.message.EmailMessage]:
        found = []
        for info in self.messages(address, mailbox):
            parsed = email.message_from_bytes(self.content(info), policy=email.policy.default)
            assert isinstance(parsed, email.message.EmailMessage)
            found.append(parsed)
        return found


@pytest.fixture
def make(tmp_path: Path) -> Iterator[list[ScreenedHarness]]:
    made: list[ScreenedHarness] = []
    yield made
    for h in made:
        h.stop()


def harness(made: list[ScreenedHarness], root: Path, **spam: object) -> ScreenedHarness:
    h = ScreenedHarness(root, **spam)
    made.append(h)
    return h


def client(port: int, source: str) -> smtplib.SMTP:
    smtp = smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=30)
    smtp.ehlo("client.test")
    return smtp


# -- DNS blocklists ------------------------------------------------------------------------------------------
def test_a_listed_client_is_refused_at_rcpt_and_still_reaches_postmaster_and_abuse(
    tmp_path: Path, make: list[ScreenedHarness], dns_server: DnsServer
) -> None:
    h = harness(make, tmp_path)
    port = h.listen(h.screen(dns_server))
    with client(port, LISTED) as smtp:
        assert smtp.mail(SENDER)[0] == 250
        code, text = smtp.rcpt(DEMO)
        assert code == 554
        refusal = f"5.7.1 <{DEMO}>: Service unavailable; client [127.0.0.2] blocked using bl.test; {REASON}"
        assert text == refusal.encode()
        assert smtp.rcpt(POSTMASTER)[0] == 250
        assert smtp.rcpt(ABUSE)[0] == 250
        assert smtp.data(message("please delist us", sender=SENDER, to=POSTMASTER))[0] == 250
    (postmaster,) = h.copies(DEMO)  # postmaster@ is demo's alias: in the Inbox, not refused, not in Junk
    assert postmaster["Subject"] == "please delist us"
    assert postmaster["X-Spam-Status"] == "No, score=3.00 required=6.00"
    assert "RBL_BL_TEST(3.00)" in postmaster["X-Spamd-Result"]
    assert [c["Subject"] for c in h.copies(OTHER)] == ["please delist us"]


def test_a_client_not_listed_delivers(
    tmp_path: Path, make: list[ScreenedHarness], dns_server: DnsServer
) -> None:
    h = harness(make, tmp_path)
    port = h.listen(h.screen(dns_server))
    with client(port, CLEAN) as smtp:
        smtp.sendmail(SENDER, [DEMO], message("hello", sender=SENDER))
    (copy,) = h.copies(DEMO)
    assert copy["X-Spam-Status"] == "No, score=0.00 required=6.00"


def test_under_the_junk_action_a_listed_client_delivers_into_junk(
    tmp_path: Path, make: list[ScreenedHarness], dns_server: DnsServer
) -> None:
    h = harness(make, tmp_path, dnsbl_action="junk")
    port = h.listen(h.screen(dns_server))
    with client(port, LISTED) as smtp:
        smtp.sendmail(SENDER, [DEMO, OTHER], message("cheap pills", sender=SENDER))
    for address in (DEMO, OTHER):
        assert h.copies(address) == []
        (junk,) = h.copies(address, "Junk")
        assert junk["X-Spam-Status"] == "Yes, score=3.00 required=6.00"
        assert "RBL_BL_TEST" in junk["X-Spamd-Result"]


def test_a_blocklist_that_never_answers_delays_rcpt_only_until_the_deadline(
    tmp_path: Path, make: list[ScreenedHarness], dns_server: DnsServer
) -> None:
    h = harness(make, tmp_path)
    port = h.listen(h.screen(dns_server, zones=("slow.test", "bl.test"), timeout=0.5))
    for source, expected in ((CLEAN, 250), (LISTED, 554)):
        with client(port, source) as smtp:
            smtp.mail(SENDER)
            started = time.monotonic()
            assert smtp.rcpt(DEMO)[0] == expected  # the silent zone lists nothing; the other one still counts
            assert time.monotonic() - started < 3.0


def test_submission_is_never_looked_up_nor_greylisted(
    tmp_path: Path, make: list[ScreenedHarness], dns_server: DnsServer
) -> None:
    h = harness(make, tmp_path)
    port = h.listen(h.screen(dns_server, delay=300), mode="submission")
    with client(port, LISTED) as smtp:
        smtp.login(DEMO, PASSWORD)
        smtp.sendmail(DEMO, [OTHER], message("from a user", sender=DEMO))
    (copy,) = h.copies(OTHER)
    assert copy["X-Spam-Status"] is None  # and no stage judged it: it is the users' own mail


def test_postmaster_and_abuse_are_recognised_in_any_case_and_bare() -> None:
    for address in ("postmaster@example.test", "PostMaster@Example.Test", "Postmaster", "abuse@x.example"):
        assert always_reachable(address), address
    for address in ("demo@example.test", "postmaster.x@example.test", "abuse", "x@postmaster.example"):
        assert not always_reachable(address), address


# -- greylisting ---------------------------------------------------------------------------------------------
def test_a_new_triplet_gets_451_until_the_delay_has_passed(
    tmp_path: Path, make: list[ScreenedHarness], dns_server: DnsServer
) -> None:
    h = harness(make, tmp_path)
    port = h.listen(h.screen(dns_server, zones=(), delay=300))

    def attempt(rcpt: str = DEMO, sender: str = SENDER) -> tuple[int, bytes]:
        with client(port, CLEAN) as smtp:
            smtp.mail(sender)
            reply = smtp.rcpt(rcpt)
            if reply[0] == 250:
                assert (
                    smtp.data(message("greylisted mail", sender=sender or "mailer-daemon@remote.example"))[0]
                    == 250
                )
            return reply

    assert attempt() == (451, f"4.7.1 <{DEMO}>: Greylisted, try again in 300 seconds".encode())
    h.clock.now += 100
    assert attempt() == (
        451,
        f"4.7.1 <{DEMO}>: Greylisted, try again in 200 seconds".encode(),
    )  # not restarted
    assert h.copies(DEMO) == []
    h.clock.now += 200
    assert attempt()[0] == 250
    assert attempt()[0] == 250  # known now
    assert len(h.copies(DEMO)) == 2
    assert attempt(OTHER)[0] == 451  # another recipient is another triplet
    assert attempt(DEMO, sender="")[0] == 451  # and so is a bounce: the null sender is greylisted too
    h.clock.now += 300
    assert attempt(DEMO, sender="")[0] == 250


def test_a_network_whose_triplets_passed_often_enough_is_no_longer_greylisted(
    tmp_path: Path, make: list[ScreenedHarness], dns_server: DnsServer
) -> None:
    h = harness(make, tmp_path)
    port = h.listen(h.screen(dns_server, zones=(), delay=60, auto_allowlist=2))

    def rcpt(address: str) -> int:
        with client(port, CLEAN) as smtp:
            smtp.mail(SENDER)
            return smtp.rcpt(address)[0]

    assert [rcpt(DEMO), rcpt(OTHER)] == [451, 451]
    h.clock.now += 60
    assert [rcpt(DEMO), rcpt(OTHER)] == [250, 250]  # two triplets passed: one delivery counted
    assert rcpt(THIRD) == 451
    h.clock.now += 60
    assert rcpt(THIRD) == 250  # a second delivery, a delay after the first
    assert rcpt(POSTMASTER) == 250  # a new triplet, but its network has shown it retries


def test_listed_clients_are_refused_before_greylisting_and_unknown_users_leave_no_record(
    tmp_path: Path, make: list[ScreenedHarness], dns_server: DnsServer
) -> None:
    h = harness(make, tmp_path)
    port = h.listen(h.screen(dns_server, delay=300))
    with client(port, LISTED) as smtp:
        smtp.mail(SENDER)
        assert smtp.rcpt(DEMO)[0] == 554
        assert smtp.rcpt(POSTMASTER)[0] == 451  # reachable, but greylisted like anyone
    with client(port, CLEAN) as smtp:
        smtp.mail(SENDER)
        assert smtp.rcpt("nobody@example.test")[0] == 550
    keys = h.call(h.store.greylist_entries([triplet_key("127.0.0.0/24", SENDER, "nobody@example.test")], 0.0))
    assert keys == {}


def test_a_session_that_tries_pair_after_pair_is_ended_and_its_records_are_bounded(
    tmp_path: Path, make: list[ScreenedHarness], dns_server: DnsServer
) -> None:
    """One session (pipelining RSET, MAIL with a new sender, RCPT) gets 451 for MAX_GREYLISTED recipients,
    then 421 4.7.0 and the end of the connection: it cannot add records at its command rate."""
    h = harness(make, tmp_path)
    port = h.listen(h.screen(dns_server, zones=(), delay=300))
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        replies = sock.makefile("rb")
        replies.readline()
        sock.sendall(b"EHLO flood.example\r\n")
        while not replies.readline().startswith(b"250 "):
            pass
        sock.sendall(
            b"".join(
                f"RSET\r\nMAIL FROM:<r{n}@spam.example>\r\nRCPT TO:<{DEMO}>\r\n".encode() for n in range(100)
            )
        )
        lines = replies.read().split(b"\r\n")  # until the server closes
    codes = [line[:3] for line in lines if line]
    assert codes.count(b"451") == MAX_GREYLISTED
    assert codes[-1] == b"421"
    assert lines[-2].startswith(b"421 4.7.0 ")
    with contextlib.closing(sqlite3.connect(tmp_path / "mail.sqlite3")) as db:
        rows = db.execute("SELECT count(*) FROM greylist WHERE key LIKE 't %'").fetchone()[0]
    assert rows == MAX_GREYLISTED
