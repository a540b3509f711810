"""Real mail-sending programs from Debian (`make deps` installs them) and Python's smtplib against the
submission listeners of a real server: STARTTLS on "submission" (587) and implicit TLS on "submissions"
(465, RFC 8314), each with AUTH PLAIN and AUTH LOGIN. Every client is told to trust data_dir/tls/cert.pem,
so each run also checks the certificate (its SAN covers 127.0.0.1).

Each delivery is checked on its own: a unique Subject and body per test, found in the recipient's INBOX by
reading the store directly, and compared byte for byte. Also: a wrong password, MAIL without AUTH, relaying
through port 25 and a sender that is not the account are refused, and mail to another domain is queued.

One server serves the whole module (every check is keyed by its own token); its resolver points at a
closed port, so the queue runner's MX lookups for queued mail fail fast and temporarily."""

from __future__ import annotations

import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.harness import DataDir, ServerProcess, cli, make_data_dir, serving
from tests.integration.mailcheck import body_after_trace, inbox_messages

pytestmark = pytest.mark.interop

SENDER = "demo@example.test"
PASSWORD = "demo-secret-pw"
RECIPIENT = "other@example.test"
TIMEOUT = 60

TLS_MODES = ("starttls", "implicit")
MECHANISMS = ("PLAIN", "LOGIN")


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: `make deps` installs it")
    return path


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (UDP and TCP), so DNS queries there fail at once."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
            udp.bind(("127.0.0.1", 0))
            port: int = udp.getsockname()[1]
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> DataDir:
    data = make_data_dir(tmp_path_factory.mktemp("submission") / "data", users=("demo", "other"))
    text = data.config.read_text()
    for key, value in (("nameservers", '["127.0.0.1"]'), ("dns_port", str(closed_port()))):
        line = next(line for line in text.splitlines() if line.startswith(f"{key} = "))
        text = text.replace(line, f"{key} = {value}", 1)
    data.config.write_text(text)
    return data


@pytest.fixture(scope="module")
def server(data: DataDir) -> Iterator[ServerProcess]:
    with serving(data) as proc:
        yield proc


def cert(data: DataDir) -> str:
    return str(data.root / "tls" / "cert.pem")


def port_of(server: ServerProcess, tls: str) -> int:
    return server.port("submission" if tls == "starttls" else "submissions")


class Message:
    """A complete message with a unique token in Subject, Message-ID and body. It carries Date and
    Message-ID itself, so no client has a reason to add headers, and a body with leading dots, so each
    client's dot-stuffing is exercised."""

    def __init__(self, label: str, recipient: str = RECIPIENT) -> None:
        self.token = f"{label}-{uuid.uuid4().hex[:12]}"
        self.subject = f"submission interop {self.token}"
        self.recipient = recipient
        self.body = (
            f"Body of {self.token}.\r\n"
            ".a line that starts with a dot\r\n..and one with two\r\n.\r\nlast line\r\n"
        ).encode()
        self.headers = (
            f"From: {SENDER}\r\nTo: {recipient}\r\nSubject: {self.subject}\r\n"
            f"Date: Mon, 01 Jan 2024 12:00:00 +0000\r\nMessage-ID: <{self.token}@example.test>\r\n"
        ).encode()
        self.raw = self.headers + b"\r\n" + self.body

    def file(self, directory: Path, *, final_newline: bool = True) -> Path:
        """The message as a file; swaks wants it without the last line's CRLF (it sends CRLF "." itself)."""
        path = directory / f"{self.token}.eml"
        path.write_bytes(self.raw if final_newline else self.raw.removesuffix(b"\r\n"))
        return path

    def stored(self, data: DataDir) -> list[bytes]:
        """Every message in the recipient's INBOX that carries this token in its Subject."""
        needle = f"Subject: {self.subject}\r\n".encode()
        return [raw for _, raw in inbox_messages(data.root, self.recipient) if needle in raw]

    def nowhere(self, data: DataDir) -> bool:
        return all(
            self.token.encode() not in raw
            for address in (SENDER, RECIPIENT)
            for _, raw in inbox_messages(data.root, address)
        )


def queued_ids(data: DataDir) -> set[int]:
    """IDs in `postoffice queue list` (its table rows start with the ID)."""
    lines = cli("queue", "list", config=data.config).splitlines()
    return {int(line.split()[0]) for line in lines if line.split() and line.split()[0].isdigit()}


def run(
    cmd: list[str], *, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, input=stdin, env=env, capture_output=True, text=True, timeout=TIMEOUT)


def output(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


# -- the clients: each sends `message` and returns its transcript (stdout + stderr) and exit status -------


def send_swaks(
    server: ServerProcess,
    data: DataDir,
    tmp: Path,
    message: Message,
    tls: str,
    mechanism: str,
    password: str = PASSWORD,
) -> subprocess.CompletedProcess[str]:
    return run(
        [
            need("swaks"),
            "--server",
            f"127.0.0.1:{port_of(server, tls)}",
            "--tls" if tls == "starttls" else "--tls-on-connect",
            "--tls-verify",
            "--tls-ca-path",
            cert(data),
            "--auth",
            mechanism,
            "--auth-user",
            SENDER,
            "--auth-password",
            password,
            "--from",
            SENDER,
            "--to",
            message.recipient,
            "--data",
            "@" + str(message.file(tmp, final_newline=False)),
        ]
    )


def send_msmtp(
    server: ServerProcess,
    data: DataDir,
    tmp: Path,
    message: Message,
    tls: str,
    mechanism: str,
    password: str = PASSWORD,
) -> subprocess.CompletedProcess[str]:
    config = tmp / "msmtprc"
    config.write_text(
        "defaults\n"
        "account submission\n"
        "host 127.0.0.1\n"
        f"port {port_of(server, tls)}\n"
        "tls on\n"
        f"tls_starttls {'on' if tls == 'starttls' else 'off'}\n"
        f"tls_trust_file {cert(data)}\n"
        f"auth {mechanism.lower()}\n"
        f"user {SENDER}\n"
        f"password {password}\n"
        f"from {SENDER}\n"
        "account default : submission\n"
    )
    config.chmod(0o600)  # msmtp refuses a readable file that holds a password
    return run(
        [need("msmtp"), "--file", str(config), "--debug", "--", message.recipient],
        stdin=message.raw.decode(),
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp), "LC_ALL": "C"},
    )


def send_curl(
    server: ServerProcess,
    data: DataDir,
    tmp: Path,
    message: Message,
    tls: str,
    mechanism: str,
    password: str = PASSWORD,
) -> subprocess.CompletedProcess[str]:
    url = (
        f"smtp://127.0.0.1:{port_of(server, tls)}/localhost"
        if tls == "starttls"
        else f"smtps://127.0.0.1:{port_of(server, tls)}/localhost"
    )
    return run(
        [
            need("curl"),
            "-sS",
            "-v",
            *(["--ssl-reqd"] if tls == "starttls" else []),
            "--cacert",
            cert(data),
            "--user",
            f"{SENDER}:{password}",
            "--login-options",
            f"AUTH={mechanism}",
            "--mail-from",
            SENDER,
            "--mail-rcpt",
            message.recipient,
            "--upload-file",
            str(message.file(tmp)),
            url,
        ]
    )


def send_snail(
    server: ServerProcess,
    data: DataDir,
    tmp: Path,
    message: Message,
    tls: str,
    mechanism: str,
    password: str = PASSWORD,
) -> subprocess.CompletedProcess[str]:
    # s-nail composes the message itself (its own headers, our subject and body); v15-compat lets the URL
    # carry the credentials, with the "@" of the user name percent-encoded.
    credentials = f"{SENDER.replace('@', '%40')}:{password}"
    scheme = "smtp" if tls == "starttls" else "smtps"
    return run(
        [
            need("s-nail"),
            "-:/",  # no configuration files
            "-v",
            "-v",
            "-Sv15-compat",
            "-Sttycharset=us-ascii",
            "-Ssendwait",  # wait for the SMTP exchange: its failure is our exit status
            "-Snosave",  # and no ~/dead.letter when it fails
            # s-nail matches only DNS names of the certificate's SAN, not its IP address: connect by name
            f"-Smta={scheme}://{credentials}@localhost:{port_of(server, tls)}",
            *(["-Ssmtp-use-starttls"] if tls == "starttls" else []),
            f"-Ssmtp-auth={mechanism.lower()}",
            f"-Stls-ca-file={cert(data)}",
            "-Stls-ca-no-defaults",
            "-Stls-verify=strict",
            "-Shostname=localhost",
            f"-Sfrom={SENDER}",
            "-s",
            message.subject,
            "-.",
            message.recipient,
        ],
        stdin=message.body.decode().replace("\r\n", "\n"),
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp), "LC_ALL": "C"},
    )


def send_smtplib(
    server: ServerProcess,
    data: DataDir,
    tmp: Path,
    message: Message,
    tls: str,
    mechanism: str,
    password: str = PASSWORD,
) -> subprocess.CompletedProcess[str]:
    context = ssl.create_default_context(cafile=cert(data))
    transcript: list[str] = []
    code = 0
    smtp: smtplib.SMTP = (
        smtplib.SMTP("127.0.0.1", port_of(server, tls), timeout=TIMEOUT)
        if tls == "starttls"
        else smtplib.SMTP_SSL("127.0.0.1", port_of(server, tls), timeout=TIMEOUT, context=context)
    )
    try:
        if tls == "starttls":
            smtp.starttls(context=context)
        smtp.ehlo()
        offered = smtp.esmtp_features.get("auth", "").upper().split()
        transcript.append(f"AUTH offered: {offered}")
        assert mechanism in offered, offered
        # smtplib's login() would choose the mechanism itself; auth() forces ours
        smtp.user, smtp.password = SENDER, password
        authenticator = smtp.auth_plain if mechanism == "PLAIN" else smtp.auth_login
        transcript.append(repr(smtp.auth(mechanism, authenticator)))
        transcript.append(repr(smtp.sendmail(SENDER, [message.recipient], message.raw)))
    except smtplib.SMTPResponseException as error:
        text = error.smtp_error
        transcript.append(f"{error.smtp_code} {text.decode() if isinstance(text, bytes) else text}")
        code = 1
    except smtplib.SMTPException as error:
        transcript.append(repr(error))
        code = 1
    finally:
        smtp.close()
    return subprocess.CompletedProcess(["smtplib"], code, "\n".join(transcript), "")


Sender = Callable[..., subprocess.CompletedProcess[str]]
CLIENTS: dict[str, Sender] = {
    "swaks": send_swaks,
    "msmtp": send_msmtp,
    "curl": send_curl,
    "s-nail": send_snail,
    "smtplib": send_smtplib,
}
# What each client prints when it sends the AUTH command (None: no transcript; smtplib is forced above).
AUTH_LINE: dict[str, str | None] = {
    "swaks": "~> AUTH {}",
    "msmtp": "--> AUTH {}",
    "curl": "> AUTH {}",
    "s-nail": ">>> AUTH {}",
    "smtplib": None,
}


# -- delivery: every client x both ports x both mechanisms -------------------------------------------------


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("tls", TLS_MODES)
@pytest.mark.parametrize("client", list(CLIENTS))
def test_client_submits_over_tls_with_auth_and_the_message_arrives_intact(
    server: ServerProcess, data: DataDir, tmp_path: Path, client: str, tls: str, mechanism: str
) -> None:
    message = Message(f"{client}-{tls}-{mechanism}")
    proc = CLIENTS[client](server, data, tmp_path, message, tls, mechanism)
    assert proc.returncode == 0, output(proc)
    auth_line = AUTH_LINE[client]
    if auth_line is not None:
        assert auth_line.format(mechanism) in proc.stdout + proc.stderr, output(proc)

    [stored] = message.stored(data)  # delivery to a local account is done when the 250 comes
    head = stored.split(b"\r\n\r\n", 1)[0]
    assert b" with ESMTPSA id " in head, head  # RFC 3848: over TLS, authenticated
    if client == "s-nail":
        # s-nail writes its own header block; the body must still arrive byte for byte
        assert stored.split(b"\r\n\r\n", 1)[1] == message.body, stored
        assert f"From: {SENDER}\r\n".encode() in head, head
    else:
        assert body_after_trace(stored) == message.raw, stored


# -- refusals ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("client", ["swaks", "curl", "msmtp", "s-nail", "smtplib"])
def test_wrong_password_is_refused_and_nothing_is_delivered(
    server: ServerProcess, data: DataDir, tmp_path: Path, client: str
) -> None:
    message = Message(f"{client}-badpw")
    tls = "implicit" if client in ("curl", "s-nail") else "starttls"
    proc = CLIENTS[client](server, data, tmp_path, message, tls, "PLAIN", password="not-the-password")
    assert proc.returncode != 0, output(proc)
    assert "535 5.7.8" in proc.stdout + proc.stderr, output(proc)
    assert message.nowhere(data)


def swaks_reply(proc: subprocess.CompletedProcess[str], reply: str) -> bool:
    """swaks marks an unexpected reply "<**" (plaintext) or "<~*" (inside TLS)."""
    return re.search(rf"(?m)^<[*~]\* {re.escape(reply)}", proc.stdout) is not None


def swaks_without_auth(
    server: ServerProcess, port: str, message: Message, *extra: str
) -> subprocess.CompletedProcess[str]:
    return run(
        [
            need("swaks"),
            "--server",
            f"127.0.0.1:{server.port(port)}",
            "--from",
            SENDER,
            "--to",
            message.recipient,
            "--header",
            f"Subject: {message.subject}",
            "--body",
            message.body.decode(),
            *extra,
        ]
    )


def test_port_25_refuses_to_relay_to_a_foreign_domain(server: ServerProcess, data: DataDir) -> None:
    before = queued_ids(data)
    message = Message("relay-25", recipient="victim@elsewhere.test")
    proc = swaks_without_auth(server, "smtp", message)
    assert proc.returncode != 0, output(proc)
    assert swaks_reply(proc, "554 5.7.1"), output(proc)
    assert queued_ids(data) == before


@pytest.mark.parametrize("tls", ["starttls", "plaintext"])
def test_submission_without_auth_gets_530(server: ServerProcess, data: DataDir, tls: str) -> None:
    message = Message(f"noauth-{tls}")
    proc = swaks_without_auth(server, "submission", message, *(["--tls"] if tls == "starttls" else []))
    assert proc.returncode != 0, output(proc)
    assert swaks_reply(proc, "530 5.7.0"), output(proc)
    assert message.nowhere(data)


def test_auth_is_not_offered_before_starttls(server: ServerProcess) -> None:
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=TIMEOUT) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("starttls")
        assert not smtp.has_extn("auth"), smtp.esmtp_features


@pytest.mark.parametrize("forged", ["envelope", "header"])
def test_sender_other_than_the_account_is_refused_with_553(
    server: ServerProcess, data: DataDir, tmp_path: Path, forged: str
) -> None:
    message = Message(f"forged-{forged}")
    if forged == "header":
        message.raw = message.raw.replace(f"From: {SENDER}".encode(), b"From: other@example.test", 1)
    proc = run(
        [
            need("swaks"),
            "--server",
            f"127.0.0.1:{server.port('submission')}",
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            SENDER,
            "--auth-password",
            PASSWORD,
            "--from",
            "other@example.test" if forged == "envelope" else SENDER,
            "--to",
            message.recipient,
            "--data",
            "@" + str(message.file(tmp_path, final_newline=False)),
        ]
    )
    assert proc.returncode != 0, output(proc)
    assert swaks_reply(proc, "553 5.7.1"), output(proc)
    assert message.nowhere(data)


# -- mail for another domain goes to the queue -------------------------------------------------------------


def test_mail_for_a_remote_recipient_is_accepted_into_the_queue(
    server: ServerProcess, data: DataDir, tmp_path: Path
) -> None:
    before = queued_ids(data)
    message = Message("remote", recipient="someone@remote.test")
    proc = send_msmtp(server, data, tmp_path, message, "starttls", "PLAIN")
    assert proc.returncode == 0, output(proc)
    [new] = queued_ids(data) - before  # queued before the 250: no wait needed
    shown = cli("queue", "show", str(new), config=data.config)
    assert f"sender:    <{SENDER}>" in shown, shown
    assert "<someone@remote.test> pending" in shown, shown
    assert message.nowhere(data)


# -- SCRAM (decision 0068) ----------------------------------------------------------------------------------


@pytest.mark.parametrize("tls", TLS_MODES)
def test_msmtp_submits_with_scram_sha_256(
    server: ServerProcess, data: DataDir, tmp_path: Path, tls: str
) -> None:
    """msmtp authenticates through GNU SASL's SCRAM (an implementation that is not ours): the account's secret
    was made when `postoffice user add` set its password. The server proves itself too: GNU SASL checks the
    server's final message, and msmtp fails when it is wrong."""
    message = Message(f"msmtp-scram-{tls}")
    proc = send_msmtp(server, data, tmp_path, message, tls, "SCRAM-SHA-256")
    assert proc.returncode == 0, output(proc)
    assert "AUTH SCRAM-SHA-256" in proc.stdout + proc.stderr, output(proc)
    assert len(message.stored(data)) == 1
    wrong = Message(f"msmtp-scram-bad-{tls}")
    proc = send_msmtp(server, data, tmp_path, wrong, tls, "SCRAM-SHA-256", password="not-the-password")
    assert proc.returncode != 0, output(proc)
    assert "535 5.7.8" in proc.stdout + proc.stderr, output(proc)
    assert wrong.nowhere(data)
