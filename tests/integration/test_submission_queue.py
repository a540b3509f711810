"""Submission (587/465) and outbound delivery through the durable queue, against the internet rebuilt on
loopback: a real DNS server (tests/support/dns_server.py) and "remote" mail servers on 127.0.0.2,
127.0.0.3, ... (tests/support/smtp_peer.py), with a real `postoffice run` process.

Every wait polls an observable effect (a peer's received list, the queue, a mailbox) up to a deadline; none
is a fixed sleep."""

from __future__ import annotations

import email
import email.policy
import re
import smtplib
import ssl
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from tests.integration.harness import DataDir, ServerProcess, cli, make_data_dir
from tests.integration.mailcheck import inbox_messages
from tests.support.dns_server import DnsServer, Zones
from tests.support.smtp_peer import Script, SmtpPeer, free_port_on

pytestmark = pytest.mark.integration

DEMO = "demo@example.test"
PASSWORD = "demo-secret-pw"
DEADLINE = 30.0
T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T], deadline: float = DEADLINE) -> T:
    """Poll `check` until it returns something true (bounded); the value."""
    end = time.monotonic() + deadline
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Internet:
    """DNS zones and peers; the Postoffice config points its resolver and delivery port here."""

    def __init__(self) -> None:
        self.zones = Zones(
            [
                ("remote.test.", "MX", "10 mx1.remote.test."),
                ("remote.test.", "MX", "20 mx2.remote.test."),
                ("mx1.remote.test.", "A", "127.0.0.2"),  # nothing listens there: connection refused
                ("mx2.remote.test.", "A", "127.0.0.3"),
                ("nomx.test.", "A", "127.0.0.4"),
                ("nullmx.test.", "MX", "0 ."),
                ("fails.test.", "MX", "10 mx.fails.test."),
                ("mx.fails.test.", "A", "127.0.0.5"),
                ("other.test.", "MX", "10 mx.other.test."),
                ("mx.other.test.", "A", "127.0.0.6"),  # a second Postoffice instance
            ]
        )
        self.dns = DnsServer(self.zones).start()
        self.port = free_port_on("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6")
        self.mx2 = SmtpPeer("127.0.0.3", self.port, tls_context=_peer_tls()).start()
        self.nomx = SmtpPeer("127.0.0.4", self.port).start()
        self.fails = SmtpPeer("127.0.0.5", self.port, Script(rcpt_replies={})).start()

    def stop(self) -> None:
        for peer in (self.mx2, self.nomx, self.fails):
            peer.stop()
        self.dns.stop()


_TLS: ssl.SSLContext | None = None


def _peer_tls() -> ssl.SSLContext:
    """The "remote" server's certificate (self-signed: opportunistic TLS does not verify it)."""
    global _TLS
    if _TLS is None:
        from postoffice.net.tls import generate_self_signed

        directory = Path(tempfile.mkdtemp(prefix="postoffice-peer-tls-"))
        generate_self_signed("mx2.remote.test", directory / "cert.pem", directory / "key.pem")
        _TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        _TLS.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    return _TLS


@pytest.fixture
def internet() -> Iterator[Internet]:
    net = Internet()
    try:
        yield net
    finally:
        net.stop()


def _toml(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return f'"{value}"' if isinstance(value, str) else str(value)


def configure(data: DataDir, internet: Internet, **queue: object) -> None:
    settings = {
        "nameservers": ["127.0.0.1"],
        "dns_port": internet.dns.port,
        "delivery_port": internet.port,
        "first_retry": 1,
        "max_retry_interval": 2,
        "connect_timeout": 5,
        "command_timeout": 10,
        **queue,
    }
    text = data.config.read_text()
    for key, value in settings.items():
        rendered = _toml(value)
        text, count = re.subn(rf"(?m)^{key} = .*$", f"{key} = {rendered}", text, count=1)
        assert count == 1, key
    data.config.write_text(text)


@pytest.fixture
def server(tmp_path: Path, internet: Internet, request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    data = make_data_dir(tmp_path / "data", users=("demo", "other"))
    configure(data, internet, **getattr(request, "param", {}))
    proc = ServerProcess(data).start()
    try:
        yield proc
    finally:
        proc.stop()


def submit(
    server: ServerProcess,
    recipients: list[str],
    *,
    subject: str = "hello",
    sender: str = DEMO,
    header_from: str | None = None,
    extra: str = "",
    mail_options: tuple[str, ...] = (),
    rcpt_options: tuple[str, ...] = (),
) -> None:
    body = (
        f"From: {header_from or sender}\r\nTo: {', '.join(recipients)}\r\nSubject: {subject}\r\n{extra}\r\n"
        f"Body of {subject}.\r\n"
    )
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=30) as smtp:
        smtp.starttls(context=context)
        smtp.login(DEMO, PASSWORD)
        smtp.sendmail(sender, recipients, body.encode(), mail_options, rcpt_options)


def queue_empty(server: ServerProcess) -> bool:
    return "0 messages" in cli("queue", "list", config=server.data.config)


def inbox(server: ServerProcess, address: str = DEMO) -> list[bytes]:
    return [raw for _, raw in inbox_messages(server.data.root, address)]


# -- submission and delivery by MX ---------------------------------------------------------------------------


def test_submission_delivers_locally_and_to_the_next_mx_over_starttls(
    server: ServerProcess, internet: Internet
) -> None:
    submit(server, ["other@example.test", "bob@remote.test"], subject="mixed")
    [local] = wait_for("the local copy", lambda: inbox(server, "other@example.test"))
    received = wait_for("delivery to mx2", lambda: internet.mx2.received)
    [message] = received  # mx1 refused the connection: the next MX by preference took it
    assert message.recipients == ["bob@remote.test"]
    assert message.mail_from == DEMO
    assert message.tls  # STARTTLS whenever offered
    for raw in (local, message.data):
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert parsed["Subject"] == "mixed"
        assert parsed["Message-ID"]
        assert parsed["Date"]
        assert "127.0.0.1" not in str(parsed["Received"])  # no client address in the trace
    assert b"Return-Path" not in message.data.split(b"\r\n\r\n")[0]
    wait_for("an empty queue", lambda: queue_empty(server))


def test_a_domain_without_mx_is_delivered_to_its_address(server: ServerProcess, internet: Internet) -> None:
    submit(server, ["carol@nomx.test"], subject="implicit mx")
    [message] = wait_for("delivery by A record", lambda: internet.nomx.received)
    assert message.recipients == ["carol@nomx.test"]


def _report(raw: bytes) -> email.message.EmailMessage:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/report"
    assert parsed.get_param("report-type") == "delivery-status"
    return parsed


def _status_fields(report: email.message.EmailMessage) -> str:
    part = next(p for p in report.walk() if p.get_content_type() == "message/delivery-status")
    return "\n".join(str(sub) for sub in part.get_payload())


def test_a_permanent_failure_bounces_to_the_sender(server: ServerProcess, internet: Internet) -> None:
    internet.fails.script.rcpt_replies["nobody@fails.test"] = "550 5.1.1 no such user"
    submit(server, ["nobody@fails.test"], subject="doomed")
    [bounce] = wait_for("the bounce", lambda: inbox(server))
    report = _report(bounce)
    assert report["From"].addresses[0].username == "MAILER-DAEMON"
    assert report["Auto-Submitted"] == "auto-replied"
    fields = _status_fields(report)
    assert "Final-Recipient: rfc822; nobody@fails.test" in fields
    assert "Action: failed" in fields
    assert "Status: 5.1.1" in fields
    assert "550 5.1.1 no such user" in fields
    assert "Subject: doomed" in bounce.decode()  # the original header comes back
    wait_for("an empty queue", lambda: queue_empty(server))


def test_requiretls_on_submission_is_kept_and_not_relaxed(server: ServerProcess, internet: Internet) -> None:
    """RFC 8689: a mail program asks for REQUIRETLS on 587 (after STARTTLS); remote.test's MX has TLS but
    nothing vouches for its name (no DNSSEC, no MTA-STS) and it does not offer REQUIRETLS, so the message is
    returned with 5.7.30 and only its header, never sent in a weaker way."""
    submit(server, ["bob@remote.test"], subject="secret plans", mail_options=("REQUIRETLS",))
    [bounce] = wait_for("the bounce", lambda: inbox(server))
    fields = _status_fields(_report(bounce))
    assert "Final-Recipient: rfc822; bob@remote.test" in fields
    assert "Status: 5.7.30" in fields
    assert "Subject: secret plans" in bounce.decode()  # the header comes back
    assert "Body of secret plans" not in bounce.decode()  # the content does not (RFC 8689 section 5)
    assert internet.mx2.received == []
    wait_for("an empty queue", lambda: queue_empty(server))


def test_an_alias_forwards_to_an_outside_address_with_srs_and_an_arc_seal(
    server: ServerProcess, internet: Internet
) -> None:
    """Decision 0059: mail from another server to an alias of ours that names an outside address is
    forwarded through the queue: an SRS envelope sender in our domain, our Received field, an ARC set signed
    with the domain's RSA key (made by `postoffice init`), no Return-Path."""
    cli("alias", "add", "fwd@example.test", "bob@remote.test", config=server.data.config)
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as smtp:
        smtp.sendmail(
            "carol@elsewhere.example",
            ["fwd@example.test"],
            b"From: carol@elsewhere.example\r\nTo: fwd@example.test\r\n"
            b"Subject: passing through\r\n\r\nhi\r\n",
        )
    [received] = wait_for("the forward at mx2", lambda: internet.mx2.received)
    assert received.recipients == ["bob@remote.test"]
    assert re.fullmatch(
        r"SRS0=[^=]{4}=[A-Z2-7]{2}=elsewhere\.example=carol@example\.test", received.mail_from
    )
    head = received.data.split(b"\r\n\r\n", 1)[0].decode()
    names = [line.split(":", 1)[0] for line in head.split("\r\n") if line[:1] not in (" ", "\t")]
    # (the harness's servers do not check senders: no Authentication-Results; the AAR says "none")
    assert names[:4] == ["ARC-Seal", "ARC-Message-Signature", "ARC-Authentication-Results", "Received"]
    assert "Return-Path" not in names
    assert "d=example.test" in head
    wait_for("an empty queue", lambda: queue_empty(server))


def test_a_null_mx_bounces_at_once(server: ServerProcess, internet: Internet) -> None:
    submit(server, ["x@nullmx.test"], subject="null mx")
    [bounce] = wait_for("the bounce", lambda: inbox(server))
    assert "Action: failed" in _status_fields(_report(bounce))


def test_a_temporary_failure_is_retried_until_it_succeeds(server: ServerProcess, internet: Internet) -> None:
    internet.fails.script.rcpt_replies["later@fails.test"] = "451 4.3.0 try again later"
    submit(server, ["later@fails.test"], subject="retried")
    wait_for(
        "a first, failed attempt",
        lambda: "attempts=1" in cli("queue", "show", "1", config=server.data.config),
    )
    del internet.fails.script.rcpt_replies["later@fails.test"]
    [message] = wait_for("the retry's delivery", lambda: internet.fails.received)
    assert message.recipients == ["later@fails.test"]
    wait_for("an empty queue", lambda: queue_empty(server))
    assert inbox(server) == []  # no bounce, no delay notice


@pytest.mark.parametrize("server", [{"max_age": 2}], indirect=True)
def test_a_message_that_keeps_failing_expires_and_bounces(server: ServerProcess, internet: Internet) -> None:
    internet.fails.script.rcpt_replies["stuck@fails.test"] = "451 4.3.0 try again later"
    submit(server, ["stuck@fails.test"], subject="expires")
    [bounce] = wait_for("the expiry bounce", lambda: inbox(server))
    fields = _status_fields(_report(bounce))
    assert "Action: failed" in fields
    assert "Status: 4.4.7" in fields
    wait_for("an empty queue", lambda: queue_empty(server))


@pytest.mark.parametrize("server", [{"relay_networks": ["127.0.0.1/32"]}], indirect=True)
def test_no_bounce_for_a_message_from_the_null_sender(server: ServerProcess, internet: Internet) -> None:
    """Relayed on port 25 from a relay network with MAIL FROM:<>: the failure is dropped, not bounced."""
    internet.fails.script.rcpt_replies["nobody@fails.test"] = "550 5.1.1 no such user"
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as smtp:
        smtp.sendmail("<>", ["nobody@fails.test"], b"Subject: from nobody\r\n\r\nbody\r\n")
    wait_for("an empty queue", lambda: queue_empty(server))
    assert inbox(server) == []
    assert inbox(server, "other@example.test") == []
    assert "result=failed" in server.log()


def test_notify_success_gets_a_relayed_report(server: ServerProcess, internet: Internet) -> None:
    submit(server, ["carol@nomx.test"], subject="tell me", rcpt_options=("NOTIFY=SUCCESS",))
    wait_for("the delivery", lambda: internet.nomx.received)
    [report] = wait_for("the success report", lambda: inbox(server))
    fields = _status_fields(_report(report))
    assert "Action: relayed" in fields
    assert "Status: 2.0.0" in fields


# -- submission policy ---------------------------------------------------------------------------------------


def test_submission_enforces_auth_sender_and_from(server: ServerProcess, internet: Internet) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=30) as smtp:
        smtp.ehlo()
        assert "auth" not in smtp.esmtp_features  # no AUTH before TLS
        smtp.starttls(context=context)
        smtp.ehlo()
        assert "PLAIN" in smtp.esmtp_features["auth"]
        assert "dsn" in smtp.esmtp_features
        assert smtp.mail(DEMO)[0] == 530  # authentication required
        smtp.rset()
        with pytest.raises(smtplib.SMTPAuthenticationError):
            smtp.login(DEMO, "wrong password")
        smtp.login(DEMO, PASSWORD)
        code, text = smtp.mail("other@example.test")
        assert (code, text[:5]) == (553, b"5.7.1")
        smtp.rset()
        assert smtp.mail(DEMO)[0] == 250
        assert smtp.rcpt("bob@remote.test")[0] == 250
        code, text = smtp.data(b"From: other@example.test\r\nSubject: spoof\r\n\r\nx\r\n")
        assert (code, text[:5]) == (553, b"5.7.1")
    # port 25 is not a relay
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as smtp:
        smtp.ehlo()
        smtp.mail("someone@elsewhere.test")
        code, _ = smtp.rcpt("bob@remote.test")
        assert code == 554
    assert internet.mx2.received == []


@pytest.mark.parametrize("server", [{"max_messages_per_hour": 2}], indirect=True)
def test_sending_limits_per_account(server: ServerProcess, internet: Internet) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=30) as smtp:
        smtp.starttls(context=context)
        smtp.login(DEMO, PASSWORD)
        smtp.mail(DEMO)
        codes = [smtp.rcpt(f"r{i}@remote.test")[0] for i in range(101)]
        assert codes[:100] == [250] * 100
        assert codes[100] == 452
        smtp.rset()
        for n in range(2):
            smtp.sendmail(DEMO, ["carol@nomx.test"], f"From: {DEMO}\r\nSubject: {n}\r\n\r\nx\r\n".encode())
        code, text = smtp.mail(DEMO)  # the third message within the hour
        assert (code, text[:5]) == (450, b"4.7.1")


# -- delay notices, a crash with mail in the queue, a second Postoffice as the remote ------------------------


@pytest.mark.parametrize("server", [{"delay_warning_after": 1}], indirect=True)
def test_a_delay_notice_goes_out_once_and_delivery_goes_on(server: ServerProcess, internet: Internet) -> None:
    internet.fails.script.rcpt_replies["slow@fails.test"] = "451 4.7.0 greylisted"
    submit(server, ["slow@fails.test"], subject="slow")
    [notice] = wait_for("the delay notice", lambda: inbox(server))
    fields = _status_fields(_report(notice))
    assert "Action: delayed" in fields
    assert "Will-Retry-Until:" in fields
    wait_for("more attempts", lambda: "attempts=3" in cli("queue", "show", "1", config=server.data.config))
    del internet.fails.script.rcpt_replies["slow@fails.test"]
    wait_for("the delivery", lambda: internet.fails.received)
    wait_for("an empty queue", lambda: queue_empty(server))
    assert len(inbox(server)) == 1  # one notice, no failure report


def test_kill_9_with_mail_in_the_queue_loses_and_duplicates_nothing(
    server: ServerProcess, internet: Internet
) -> None:
    """The remote stalls before its greeting, so every message is in the queue (acknowledged to the client
    with 250) while the server is killed; after the restart each arrives exactly once, byte for byte."""
    internet.fails.script.replies["connect"] = "stall"
    subjects = [f"crash {n}" for n in range(8)]
    for subject in subjects:
        submit(server, [f"{subject.replace(' ', '')}@fails.test"], subject=subject)
    wait_for("a stalled delivery", lambda: internet.fails.connections > 0)
    server.kill()  # SIGKILL
    internet.fails.script.replies.clear()
    internet.fails.release.set()
    restarted = ServerProcess(server.data).start()
    try:
        wait_for("every message delivered", lambda: len(internet.fails.received) >= len(subjects))
        wait_for("an empty queue", lambda: queue_empty(restarted))
    finally:
        restarted.stop()
    by_subject = {
        email.message_from_bytes(r.data, policy=email.policy.default)["Subject"]: r.data
        for r in internet.fails.received
    }
    assert sorted(by_subject) == sorted(subjects)
    assert len(internet.fails.received) == len(subjects)
    for subject, data in by_subject.items():
        assert data.endswith(f"\r\n\r\nBody of {subject}.\r\n".encode())  # intact


def test_delivery_to_a_second_postoffice_instance(
    server: ServerProcess, internet: Internet, tmp_path: Path
) -> None:
    remote = make_data_dir(tmp_path / "remote", domain="other.test", users=("zoe",))
    text = remote.config.read_text()
    start = text.index("[listeners.smtp]")
    end = text.index("[listeners.", start + 1)
    block = text[start:end].replace('address = "127.0.0.1"', 'address = "127.0.0.6"')
    block = re.sub(r"(?m)^port = 0$", f"port = {internet.port}", block)
    remote.config.write_text(text[:start] + block + text[end:])
    peer = ServerProcess(remote).start()
    try:
        submit(server, ["zoe@other.test"], subject="between two postoffices")
        [raw] = wait_for("the other instance's mailbox", lambda: inbox(peer, "zoe@other.test"))
    finally:
        peer.stop()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == "between two postoffices"
    assert parsed["Return-Path"] == f"<{DEMO}>"
    received = parsed.get_all("Received")
    assert received is not None
    assert "with ESMTPS" in str(received[0])  # STARTTLS between the two
    wait_for("an empty queue", lambda: queue_empty(server))


def test_queue_ids_are_unique_and_lead_back_to_the_submission(
    server: ServerProcess, internet: Internet
) -> None:
    """Issue 9 items 15 and 16: the submission was logged "250 delivered" when it was queued, and the queue
    gave id 1 again once it was empty; nothing linked a delivery to its submission."""
    submissions: list[tuple[str, str]] = []
    for n in range(2):
        submit(server, [f"carol{n}@nomx.test"], subject=f"one by one {n}")

        def delivered(count: int = n + 1) -> bool:
            return len(internet.nomx.received) >= count

        wait_for("the delivery", delivered)
        wait_for("an empty queue", lambda: queue_empty(server))
        log = server.log()
        submissions = re.findall(r"smtp id=(\w+) .*result='250 queued \(queue id=(\d+)\)'", log)
        assert len(submissions) == n + 1, log
    (smtp1, queue1), (smtp2, queue2) = submissions
    assert queue1 != queue2
    assert smtp1 != smtp2
    deliveries = re.findall(
        r"queue id=(\d+) smtp_id=(\w+) from=<[^>]*> to=<([^>]*)> .*result=delivered", server.log()
    )
    assert deliveries == [(queue1, smtp1, "carol0@nomx.test"), (queue2, smtp2, "carol1@nomx.test")]
    # a message for local recipients only is delivered, not queued
    submit(server, ["other@example.test"], subject="local only")
    wait_for("the local copy", lambda: inbox(server, "other@example.test"))
    assert re.search(r"to=<other@example.test> .*result='250 delivered'", server.log())


@pytest.mark.parametrize("server", [{"first_retry": 3600, "max_retry_interval": 3600}], indirect=True)
def test_queue_cli_lists_shows_retries_and_deletes(server: ServerProcess, internet: Internet) -> None:
    internet.fails.script.rcpt_replies["a@fails.test"] = "451 4.3.0 not now"
    internet.fails.script.rcpt_replies["b@fails.test"] = "451 4.3.0 not now"
    submit(server, ["a@fails.test"], subject="first")
    submit(server, ["b@fails.test"], subject="second")
    config = server.data.config
    wait_for("both tried once", lambda: cli("queue", "list", config=config).count(" in ") >= 2)
    listing = cli("queue", "list", config=config)
    assert "2 messages, 2 recipients pending" in listing
    assert f"<{DEMO}>" in listing
    smtp_ids = re.findall(r"smtp id=(\w+) .*queue id=", server.log())
    assert len(smtp_ids) == 2
    assert all(smtp_id in listing for smtp_id in smtp_ids)
    shown = cli("queue", "show", "1", config=config)
    assert "last: 451 4.3.0 not now" in shown
    assert f"smtp id:   {smtp_ids[0]}" in shown
    del internet.fails.script.rcpt_replies["a@fails.test"]
    assert "1 recipient due now" in cli("queue", "retry", "1", config=config)  # instead of in an hour
    [message] = wait_for("the retried delivery", lambda: internet.fails.received)
    assert message.recipients == ["a@fails.test"]
    assert "deleted queued message 2" in cli("queue", "delete", "2", config=config)
    wait_for("an empty queue", lambda: queue_empty(server))
    assert inbox(server) == []  # deleting sends nothing
    assert "queue id=1" in server.log()
    assert "result=pending" in server.log()


def test_everything_through_a_smarthost_with_starttls_and_auth(tmp_path: Path, internet: Internet) -> None:
    """The smarthost is a second Postoffice: the runner connects to its submission port, verifies its
    certificate against the configured CA file, authenticates, and the smarthost delivers."""
    relay = make_data_dir(tmp_path / "relay", users=("demo",))  # the same account exists at the smarthost
    cli("domain", "add", "other.test", config=relay.config)
    relay.add_user("zoe@other.test", "zoe-secret-pw")
    smarthost = ServerProcess(relay).start()
    try:
        data = make_data_dir(tmp_path / "data", users=("demo",))
        configure(
            data,
            internet,
            smarthost="localhost",
            smarthost_port=smarthost.port("submission"),
            smarthost_username=DEMO,
            smarthost_password=PASSWORD,
            smarthost_ca_file=str(relay.root / "tls" / "cert.pem"),
        )
        server = ServerProcess(data).start()
        try:
            submit(server, ["zoe@other.test"], subject="via the smarthost")
            [raw] = wait_for("delivery by the smarthost", lambda: inbox(smarthost, "zoe@other.test"))
            wait_for("an empty queue", lambda: queue_empty(server))
        finally:
            server.stop()
    finally:
        smarthost.stop()
    received = email.message_from_bytes(raw, policy=email.policy.default).get_all("Received")
    assert received is not None
    assert "with ESMTPSA" in str(received[0])  # the smarthost saw TLS and AUTH
    assert "result=delivered" in server.log()
    assert "relay=localhost" in server.log()
