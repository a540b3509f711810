"""Mail programs that configure themselves (docs/decisions/0049) and the account settings page: Thunderbird's
autoconfig document over HTTP and HTTPS (a client that reads it then connects with what it says and logs
in), Autodiscover for a known request, the Apple profile as a property list; the password change and
"sign out everywhere else"."""

from __future__ import annotations

import http.client
import imaplib
import plistlib
import re
import smtplib
import ssl
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import DataDir, ServerProcess
from tests.web.client import WebClient
from tests.web.conftest import start_web_server

pytestmark = pytest.mark.integration

DEMO, OTHER = "demo@example.test", "other@example.test"
AUTOCONFIG = "/.well-known/autoconfig/mail/config-v1.1.xml"
OUTLOOK_REQUEST = (
    b'<?xml version="1.0" encoding="utf-8"?>\r\n'
    b'<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">'
    b"<Request><EMailAddress>demo@example.test</EMailAddress>"
    b"<AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
    b"</AcceptableResponseSchema></Request></Autodiscover>"
)
RESPONSE_NS = "{http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DataDir, ServerProcess]]:
    data, process = start_web_server(tmp_path_factory.mktemp("setup"))
    try:
        yield data, process
    finally:
        process.stop()


def plain_http(
    server: ServerProcess, method: str, path: str, host: str, body: bytes | None = None
) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port("http"), timeout=30)
    try:
        conn.request(method, path, body=body, headers={"Host": host, "Content-Type": "text/xml"})
        reply = conn.getresponse()
        return reply.status, str(reply.headers.get("content-type", "")), reply.read()
    finally:
        conn.close()


def check_client_config(document: bytes) -> list[dict[str, str]]:
    """The document against Thunderbird's documented format (clientConfig 1.1: emailProvider with domain,
    displayName, incomingServer/outgoingServer with hostname, port, socketType, authentication, username);
    the servers it lists."""
    root = ET.fromstring(document)  # noqa: S314 - our own server's reply
    assert root.tag == "clientConfig"
    assert root.get("version") == "1.1"
    (provider,) = root.findall("emailProvider")
    assert provider.get("id") == "example.test"
    assert [d.text for d in provider.findall("domain")] == ["example.test"]
    assert provider.findtext("displayName")
    servers = []
    for element in provider:
        if element.tag not in ("incomingServer", "outgoingServer"):
            assert element.tag in ("domain", "displayName", "displayShortName"), element.tag
            continue
        fields = {child.tag: child.text or "" for child in element}
        assert set(fields) == {"hostname", "port", "socketType", "authentication", "username"}
        assert fields["socketType"] in ("SSL", "STARTTLS")  # never "plain"
        assert fields["authentication"] == "password-cleartext"
        assert fields["username"] == "%EMAILADDRESS%"
        assert 0 < int(fields["port"]) < 65536
        servers.append({"type": str(element.get("type")), **fields})
    return servers


def test_autoconfig_on_http_and_https_lists_the_running_tls_listeners_implicit_first(
    server: tuple[DataDir, ServerProcess],
) -> None:
    data, process = server
    status, kind, body = plain_http(process, "GET", AUTOCONFIG + "?emailaddress=demo%40example.test", "mail")
    assert status == 200  # port 80 answers it: no redirect
    assert kind.startswith("application/xml")
    servers = check_client_config(body)
    assert [(s["type"], int(s["port"]), s["socketType"]) for s in servers] == [
        ("imap", process.port("imaps"), "SSL"),
        ("imap", process.port("imap"), "STARTTLS"),
        ("pop3", process.port("pop3s"), "SSL"),
        ("pop3", process.port("pop3"), "STARTTLS"),
        ("smtp", process.port("submissions"), "SSL"),
        ("smtp", process.port("submission"), "STARTTLS"),
    ]
    assert {s["hostname"] for s in servers} == {"localhost"}
    # the autoconfig.DOMAIN host name, over HTTPS, without the address
    web = WebClient.of(process, data)
    reply = web.get("/mail/config-v1.1.xml", headers={"Host": "autoconfig.example.test"})
    assert reply.status == 200
    assert check_client_config(reply.body) == servers
    # a domain served elsewhere gets nothing, whatever the address
    assert plain_http(process, "GET", AUTOCONFIG + "?emailaddress=x%40other.example", "h")[0] == 404
    assert web.get("/mail/config-v1.1.xml", headers={"Host": "autoconfig.other.example"}).status == 404
    # other paths on port 80 still redirect
    assert plain_http(process, "GET", "/mail/other.xml", "mail")[0] == 301


def test_a_client_that_reads_autoconfig_connects_with_it_and_logs_in(
    server: tuple[DataDir, ServerProcess],
) -> None:
    """What Thunderbird does with the document: each server as it says (host, port, TLS mode), the full
    address as the user name."""
    data, process = server
    _, _, body = plain_http(process, "GET", AUTOCONFIG + "?emailaddress=demo%40example.test", "mail")
    context = ssl.create_default_context(cafile=str(data.root / "tls" / "cert.pem"))
    password = data.passwords[DEMO]
    tried = set()
    for entry in check_client_config(body):
        user = entry["username"].replace("%EMAILADDRESS%", DEMO)
        host, port, implicit = entry["hostname"], int(entry["port"]), entry["socketType"] == "SSL"
        if entry["type"] == "imap":
            imap = (
                imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=30)
                if implicit
                else imaplib.IMAP4(host, port, timeout=30)
            )
            with imap:
                if not implicit:
                    imap.starttls(context)
                assert imap.login(user, password)[0] == "OK"
        elif entry["type"] == "smtp":
            smtp = (
                smtplib.SMTP_SSL(host, port, context=context, timeout=30)
                if implicit
                else smtplib.SMTP(host, port, timeout=30)
            )
            with smtp:
                if not implicit:
                    smtp.starttls(context=context)
                assert smtp.login(user, password)[0] == 235
        else:
            continue  # POP3: the same listeners' code as IMAP's (tests/interop covers POP3 clients)
        tried.add((entry["type"], implicit))
    assert tried == {("imap", True), ("imap", False), ("smtp", True), ("smtp", False)}


def test_autodiscover_answers_a_known_outlook_request(server: tuple[DataDir, ServerProcess]) -> None:
    data, process = server
    for path in ("/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml"):
        status, kind, body = plain_http(process, "POST", path, "autodiscover.example.test", OUTLOOK_REQUEST)
        assert status == 200
        assert kind.startswith("application/xml")
        root = ET.fromstring(body)  # noqa: S314 - our own server's reply
        account = root.find(f"{RESPONSE_NS}Response/{RESPONSE_NS}Account")
        assert account is not None
        assert account.findtext(f"{RESPONSE_NS}Action") == "settings"
        protocols = [
            {child.tag.removeprefix(RESPONSE_NS): child.text for child in protocol}
            for protocol in account.findall(f"{RESPONSE_NS}Protocol")
        ]
        first = {p["Type"]: p for p in reversed(protocols)}  # the first of each type
        assert first["IMAP"]["Port"] == str(process.port("imaps"))
        assert first["IMAP"]["Encryption"] == "SSL"
        assert first["SMTP"]["Port"] == str(process.port("submissions"))
        assert all(p["LoginName"] == DEMO and p["Server"] == "localhost" for p in protocols)
        assert {p["Encryption"] for p in protocols if p["Type"] == "SMTP"} == {"SSL", "TLS"}
    web = WebClient.of(process, data)
    reply = web.request(
        "POST", "/autodiscover/autodiscover.xml", OUTLOOK_REQUEST, {"Content-Type": "text/xml"}
    )
    assert reply.status == 200
    assert b"<Action>settings</Action>" in reply.body
    # a DTD (entity expansion), another domain, no address: an Autodiscover error, never a traceback
    hostile = (
        b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xxxxxxxx">]>' + OUTLOOK_REQUEST.split(b"?>", 1)[1]
    )
    for body in (
        hostile,
        OUTLOOK_REQUEST.replace(b"example.test", b"other.example"),
        b"<Autodiscover/>",
        b"x",
    ):
        status, _, answer = plain_http(process, "POST", "/autodiscover/autodiscover.xml", "h", body)
        assert status == 200
        assert b"<ErrorCode>600</ErrorCode>" in answer


def test_the_apple_profile_is_a_property_list_for_the_signed_in_account(
    server: tuple[DataDir, ServerProcess],
) -> None:
    data, process = server
    web = WebClient.of(process, data)
    assert web.get("/settings/profile.mobileconfig").status == 303  # to the login first
    assert web.login(DEMO, data.passwords[DEMO]).status == 303
    reply = web.get("/settings/profile.mobileconfig")
    assert reply.status == 200
    assert reply.header("content-type") == "application/x-apple-aspen-config"
    assert 'filename="example.test.mobileconfig"' in reply.header("content-disposition")
    profile = plistlib.loads(reply.body)
    assert profile["PayloadType"] == "Configuration"
    (mail,) = profile["PayloadContent"]
    assert mail["PayloadType"] == "com.apple.mail.managed"
    assert mail["EmailAddress"] == mail["IncomingMailServerUsername"] == DEMO
    assert mail["EmailAccountType"] == "EmailTypeIMAP"
    assert (mail["IncomingMailServerHostName"], mail["IncomingMailServerPortNumber"]) == (
        "localhost",
        process.port("imaps"),
    )
    assert mail["OutgoingMailServerPortNumber"] == process.port("submissions")
    assert mail["IncomingMailServerUseSSL"] is True
    assert "IncomingPassword" not in mail  # the device asks
    assert (
        plistlib.loads(web.get("/settings/profile.mobileconfig").body)["PayloadUUID"]
        == profile["PayloadUUID"]
    )
    settings = web.get("/settings")
    assert settings.status == 200
    assert f"<td>{process.port('imaps')}</td>" in settings.text


def test_changing_the_password_needs_the_current_one_and_signs_out_the_other_browsers(tmp_path: Path) -> None:
    data, process = start_web_server(tmp_path)
    try:
        here, there = WebClient.of(process, data), WebClient.of(process, data)
        old = data.passwords[OTHER]
        assert here.login(OTHER, old).status == 303
        assert there.login(OTHER, old).status == 303
        page = here.get("/settings")
        assert page.text.count('class="session-agent"') == 2
        token = here.csrf(page)
        new = "correct horse battery staple"

        def change(current: str, new_password: str, repeat: str) -> int:
            form = {"csrf": token, "current": current, "new": new_password, "repeat": repeat}
            return here.post("/settings/password", form).status

        assert here.post("/settings/password", {"current": old, "new": new, "repeat": new}).status == 403
        assert change("wrong password", new, new) == 400
        assert change(old, new, new + "x") == 400
        assert change(old, "short", "short") == 400
        assert change(old, OTHER, OTHER) == 400
        assert there.get("/").status == 303  # still signed in: nothing changed yet
        assert there.get("/").header("location").startswith("/box/")
        assert change(old, new, new) == 303
        assert here.get("/settings?done=password").status == 200  # this browser stays signed in
        assert there.get("/").header("location").startswith("/login")  # the other one is out
        context = ssl.create_default_context(cafile=str(data.root / "tls" / "cert.pem"))
        with imaplib.IMAP4_SSL("localhost", process.port("imaps"), ssl_context=context, timeout=30) as imap:
            assert imap.login(OTHER, new)[0] == "OK"
        with (
            imaplib.IMAP4_SSL("localhost", process.port("imaps"), ssl_context=context, timeout=30) as imap,
            pytest.raises(imaplib.IMAP4.error),
        ):
            imap.login(OTHER, old)
        assert "password changed account=other@example.test by=web:other@example.test" in process.log()
        # sign out everywhere else
        again = WebClient.of(process, data)
        assert again.login(OTHER, new).status == 303
        assert here.post("/settings/sessions", {"csrf": token}).status == 303
        assert again.get("/").header("location").startswith("/login")
        assert here.get("/").header("location").startswith("/box/")
    finally:
        process.stop()


def test_export_all_mail_as_mbox_or_maildir_and_import_an_mbox_with_its_flags(tmp_path: Path) -> None:
    import io
    import mailbox
    import zipfile

    from postoffice.transfer.mbox import read_mbox
    from tests.support.mail import send_smtp, text_message

    data, process = start_web_server(tmp_path)
    try:
        send_smtp(
            process.port("smtp"),
            text_message("exported one", "From the start of a line\r\nbody one\r\n"),
            text_message("exported two", "body two\r\n"),
            to=DEMO,
        )
        web = WebClient.of(process, data)
        assert web.login(DEMO, data.passwords[DEMO]).status == 303
        reply = web.get("/settings/export?format=mbox")
        assert reply.status == 200
        assert reply.header("content-type") == "application/zip"
        assert 'filename="mail-demo@example.test-' in reply.header("content-disposition")
        with zipfile.ZipFile(io.BytesIO(reply.body)) as archive:
            names = archive.namelist()
            assert {"INBOX.mbox", "Sent.mbox", "Trash.mbox"} <= set(names)
            (tmp_path / "INBOX.mbox").write_bytes(archive.read("INBOX.mbox"))
        exported = mailbox.mbox(tmp_path / "INBOX.mbox")
        assert sorted(str(m["subject"]) for m in exported) == ["exported one", "exported two"]
        one = next(m for m in exported if m["subject"] == "exported one")
        assert b"\n>From the start of a line" in one.as_bytes()  # mboxrd quoting, for mboxo readers too
        ours = [
            m for m in read_mbox(io.BytesIO((tmp_path / "INBOX.mbox").read_bytes())) if not isinstance(m, int)
        ]
        assert any(b"\r\nFrom the start of a line\r\n" in m.data for m in ours)  # an mboxrd reader unquotes
        maildir = web.get("/settings/export?format=maildir")
        with zipfile.ZipFile(io.BytesIO(maildir.body)) as archive:
            files = [n for n in archive.namelist() if n.startswith("INBOX/cur/") and not n.endswith("/")]
            assert len(files) == 2
            assert all(":2," in n for n in files)
            assert "INBOX/new/" in archive.namelist()
            assert any(b"Subject: exported two" in archive.read(n) for n in files)
        # import an mbox into Archive, keeping the flags it carries
        mbox = (
            b"From someone@example.org Mon Feb  2 10:00:00 2026\n"
            b"From: someone@example.org\nSubject: imported read and flagged\nStatus: RO\nX-Status: F\n\n"
            b">From quoted\nbody\n\n"
            b"From someone@example.org Mon Feb  2 11:00:00 2026\n"
            b"From: someone@example.org\nSubject: imported unread\n\nbody\n\n"
        )
        page = web.get("/settings")
        token = web.csrf(page)
        archive_id = re.search(r'<option value="(\d+)">Archive</option>', page.text)
        assert archive_id is not None
        fields = {"csrf": token, "folder": archive_id.group(1)}
        done = web.post_multipart(
            "/settings/import", fields, [("mbox", "old.mbox", "application/mbox", mbox)]
        )
        assert done.status == 303
        assert "imported=2" in done.header("location")
        wrong = {"csrf": "wrong", "folder": archive_id.group(1)}
        assert (
            web.post_multipart("/settings/import", wrong, [("mbox", "x.mbox", "text/plain", mbox)]).status
            == 403
        )
        context = ssl.create_default_context(cafile=str(data.root / "tls" / "cert.pem"))
        with imaplib.IMAP4_SSL("localhost", process.port("imaps"), ssl_context=context, timeout=30) as imap:
            imap.login(DEMO, data.passwords[DEMO])
            imap.select("Archive", readonly=True)
            _, found = imap.fetch("1:*", "(FLAGS INTERNALDATE BODY.PEEK[])")
            answers = [part for part in found if isinstance(part, tuple)]
            assert len(answers) == 2
            first_meta, first_body = answers[0]
            assert b"\\Seen" in first_meta
            assert b"\\Flagged" in first_meta
            assert b" 2-Feb-2026 10:00:00 +0000" in first_meta
            assert b"Status:" not in first_body
            assert b"X-Status" not in first_body
            assert b"\r\nFrom quoted\r\n" in first_body
            assert b"\\Seen" not in answers[1][0]
    finally:
        process.stop()
