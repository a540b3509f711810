"""The admin pages (issue 12) against a real server: only an account with the admin role gets in (403 for
every admin URL otherwise), and each operation does what the command line's does: domains, accounts (a
generated password shown once and usable over IMAP; disabled accounts refused; deletion after the address is
typed again), aliases (mail reaches the target), the outbound queue (last error, retry, delete)."""

from __future__ import annotations

import re
import smtplib
import ssl
import time
from collections.abc import Iterator

import pytest

from tests.integration.harness import DataDir, ServerProcess, make_data_dir
from tests.support.mail import send_smtp, text_message
from tests.web.client import WebClient
from tests.web.conftest import grant_admin, imap_login, set_settings

pytestmark = pytest.mark.integration

DEMO, OTHER = "demo@example.test", "other@example.test"
ADMIN_GETS = [
    "/admin",
    "/admin/domains",
    "/admin/accounts",
    "/admin/aliases",
    "/admin/queue",
    "/admin/dns",
    "/admin/queue/1",
]
ADMIN_POSTS = ["/admin/domains", "/admin/accounts", "/admin/aliases", "/admin/queue"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DataDir, ServerProcess]]:
    data = make_data_dir(tmp_path_factory.mktemp("admin") / "data", users=("demo", "other"))
    set_settings(data, "auth", failure_delay=0.0)
    # outbound mail waits in the queue: the smarthost is a closed port
    set_settings(
        data, "queue", smarthost="127.0.0.1", smarthost_port=9, smarthost_tls="none", first_retry=3600
    )

    grant_admin(data, DEMO)
    process = ServerProcess(data).start()
    try:
        yield data, process
    finally:
        process.stop()


def signed_in(data: DataDir, process: ServerProcess, address: str, password: str | None = None) -> WebClient:
    client = WebClient.of(process, data)
    assert client.login(address, password or data.passwords[address]).status == 303
    return client


def test_every_admin_url_is_403_for_an_account_without_the_role(
    server: tuple[DataDir, ServerProcess],
) -> None:
    data, process = server
    visitor = WebClient.of(process, data)
    for path in ADMIN_GETS:
        reply = visitor.get(path)
        assert reply.status == 303, path
        assert reply.header("location").startswith("/login"), path
    other = signed_in(data, process, OTHER)
    token = other.csrf(other.get("/settings"))
    assert "/admin" not in other.get("/settings").text  # no link either
    for path in ADMIN_GETS:
        assert other.get(path).status == 403, path
    for path in ADMIN_POSTS:
        reply = other.post(
            path, {"csrf": token, "action": "add", "name": "evil.test", "address": "x@example.test"}
        )
        assert reply.status == 403, path
    admin = signed_in(data, process, DEMO)
    assert 'href="/admin"' in admin.get("/settings").text
    for path in ADMIN_GETS[:-1]:
        assert admin.get(path).status == 200, path
    assert admin.get("/admin/queue/999999").status == 404
    # CSRF applies to the admin's own posts too
    assert admin.post("/admin/domains", {"action": "add", "name": "nocsrf.test"}).status == 403


def test_status_shows_listeners_certificate_and_counts(server: tuple[DataDir, ServerProcess]) -> None:
    data, process = server
    page = signed_in(data, process, DEMO).get("/admin").text
    assert f"<td>imaps</td><td>imap</td><td>{process.port('imaps')}</td>" in page
    assert "Postoffice 0." in page
    assert "self-signed" in page
    assert re.search(r"<dt>Accounts</dt><dd>\d+</dd>", page)


def test_domains_and_accounts_through_the_same_operations_as_the_cli(
    server: tuple[DataDir, ServerProcess],
) -> None:
    data, process = server
    admin = signed_in(data, process, DEMO)
    token = admin.csrf(admin.get("/admin/domains"))
    assert (
        admin.post("/admin/domains", {"csrf": token, "action": "add", "name": "Team.Example"}).status == 303
    )
    assert (
        admin.post("/admin/domains", {"csrf": token, "action": "add", "name": "not a domain"}).status == 400
    )
    listed = admin.get("/admin/domains").text
    assert re.search(r"<td>team\.example</td><td>0</td><td>0</td>", listed)
    # plus-addressing off and on again
    plus = {"csrf": token, "action": "plus-off", "name": "example.test"}
    assert admin.post("/admin/domains", plus).status == 303
    assert re.search(r"<td>example\.test</td>.*?plus-state\">off<", admin.get("/admin/domains").text, re.S)
    assert admin.post("/admin/domains", dict(plus, action="plus-on")).status == 303
    assert "plus-addressing on domain=example.test by=web:demo@example.test" in process.log()
    assert re.search(r"<td>example\.test</td><td>2</td>", listed)
    # an account with a generated password, shown once, that opens IMAP
    added = admin.post(
        "/admin/accounts", {"csrf": token, "action": "add", "address": "new@team.example", "password": ""}
    )
    assert added.status == 200
    shown = re.search(r'<code class="secret">([^<]+)</code>', added.text)
    assert shown is not None
    password = shown.group(1)
    assert password not in admin.get("/admin/accounts").text  # only in that one answer
    assert imap_login(data, process, "new@team.example", password)
    assert (
        admin.post("/admin/domains", {"csrf": token, "action": "remove", "name": "team.example"}).status
        == 400
    )
    # disabled: no IMAP, no web; enabled again
    assert (
        admin.post(
            "/admin/accounts", {"csrf": token, "action": "disable", "address": "new@team.example"}
        ).status
        == 303
    )
    assert not imap_login(data, process, "new@team.example", password)
    refused = WebClient.of(process, data).login("new@team.example", password)
    assert refused.status == 401
    assert "This account is disabled." in refused.text
    assert 'class="account-row disabled" data-address="new@team.example"' in admin.get("/admin/accounts").text
    assert (
        admin.post(
            "/admin/accounts", {"csrf": token, "action": "enable", "address": "new@team.example"}
        ).status
        == 303
    )
    assert imap_login(data, process, "new@team.example", password)
    # a new password, shown once; the old one stops working
    reset = admin.post("/admin/accounts", {"csrf": token, "action": "reset", "address": "new@team.example"})
    fresh = re.search(r'<code class="secret">([^<]+)</code>', reset.text)
    assert fresh is not None
    assert imap_login(data, process, "new@team.example", fresh.group(1))
    assert not imap_login(data, process, "new@team.example", password)
    # the admin role; the admin cannot disable, demote or delete itself into an installation without one
    assert (
        admin.post(
            "/admin/accounts", {"csrf": token, "action": "grant", "address": "new@team.example"}
        ).status
        == 303
    )
    assert re.search(
        r'data-address="new@team\.example">.*?admin-badge', admin.get("/admin/accounts").text, re.S
    )
    assert (
        admin.post(
            "/admin/accounts", {"csrf": token, "action": "revoke", "address": "new@team.example"}
        ).status
        == 303
    )
    assert admin.post("/admin/accounts", {"csrf": token, "action": "revoke", "address": DEMO}).status == 400
    assert admin.post("/admin/accounts", {"csrf": token, "action": "disable", "address": DEMO}).status == 400
    # deleting asks for the address again
    wrong = {"csrf": token, "action": "delete", "address": "new@team.example", "confirm": "new@team"}
    assert admin.post("/admin/accounts", wrong).status == 400
    right = dict(wrong, confirm="NEW@team.example")
    assert admin.post("/admin/accounts", right).status == 303
    assert "new@team.example" not in admin.get("/admin/accounts").text
    # the domain's postmaster alias (made with its first account) goes before the domain can
    assert (
        admin.post("/admin/domains", {"csrf": token, "action": "remove", "name": "team.example"}).status
        == 400
    )
    postmaster = {"csrf": token, "action": "remove", "source": "postmaster@team.example"}
    assert admin.post("/admin/aliases", postmaster).status == 303
    assert (
        admin.post("/admin/domains", {"csrf": token, "action": "remove", "name": "team.example"}).status
        == 303
    )
    log = process.log()
    assert "account added account=new@team.example admin=no by=web:demo@example.test" in log
    assert "account removed account=new@team.example by=web:demo@example.test" in log
    assert "domain removed domain=team.example by=web:demo@example.test" in log
    assert password not in log


def test_aliases_deliver_to_their_targets(server: tuple[DataDir, ServerProcess]) -> None:
    data, process = server
    admin = signed_in(data, process, DEMO)
    token = admin.csrf(admin.get("/admin/aliases"))
    form = {"csrf": token, "action": "add", "source": "sales@example.test", "targets": "other@example.test"}
    assert admin.post("/admin/aliases", form).status == 303
    assert re.search(
        r"<td>sales@example\.test</td><td>other@example\.test</td>", admin.get("/admin/aliases").text
    )
    assert admin.post("/admin/aliases", dict(form, source="bad alias")).status == 400
    send_smtp(process.port("smtp"), text_message("for sales", "order\r\n"), to="sales@example.test")
    other = signed_in(data, process, OTHER)
    assert "for sales" in other.get(other.get("/").header("location")).text
    assert (
        admin.post(
            "/admin/aliases", {"csrf": token, "action": "remove", "source": "sales@example.test"}
        ).status
        == 303
    )
    assert "sales@example.test" not in admin.get("/admin/aliases").text


def test_the_queue_shows_the_last_error_and_retries_and_deletes(
    server: tuple[DataDir, ServerProcess],
) -> None:
    data, process = server
    context = ssl.create_default_context(cafile=str(data.root / "tls" / "cert.pem"))
    with smtplib.SMTP("localhost", process.port("submission"), timeout=30) as smtp:
        smtp.starttls(context=context)
        smtp.login(DEMO, data.passwords[DEMO])
        smtp.sendmail(DEMO, ["someone@far.test"], b"From: demo@example.test\r\nSubject: out\r\n\r\nout\r\n")
    admin = signed_in(data, process, DEMO)
    deadline = time.monotonic() + 30
    page = admin.get("/admin/queue").text
    while "queue-row" not in page or "<small>" not in page:  # queued, then tried once (connection refused)
        assert time.monotonic() < deadline, page[-2000:]
        page = admin.get("/admin/queue").text
    assert "someone@far.test" in page
    found = re.search(r'<a href="/admin/queue/(\d+)">', page)
    assert found is not None
    shown = admin.get(f"/admin/queue/{found.group(1)}").text
    assert "someone@far.test" in shown
    assert re.search(r"<td>pending</td><td>1</td>", shown)
    token = admin.csrf(admin.get("/admin/queue"))
    assert admin.post("/admin/queue", {"csrf": token, "action": "retry", "id": found.group(1)}).status == 303
    assert admin.post("/admin/queue", {"csrf": token, "action": "delete", "id": found.group(1)}).status == 303
    assert "someone@far.test" not in admin.get("/admin/queue").text
    assert f"queue delete id={found.group(1)} by=web:demo@example.test" in process.log()


def test_accounts_show_storage_used_and_set_the_quota_and_sending_limit(
    server: tuple[DataDir, ServerProcess],
) -> None:
    """Storage used of quota and the sending limit per account, a form that sets both (the operation the CLI
    uses, logged with who asked), in both languages; the running server applies a new quota at once (452
    4.2.2 at RCPT) and the webmail's drafts are refused over quota (507)."""
    data, process = server
    send_smtp(process.port("smtp"), text_message("sized", "x" * 3000 + "\r\n", to=OTHER), to=OTHER)
    admin = signed_in(data, process, DEMO)
    token = admin.csrf(admin.get("/admin/accounts"))
    form = {"csrf": token, "action": "limits", "address": OTHER, "quota": "2M", "send_limit": "20"}
    assert admin.post("/admin/accounts", form).status == 303

    def row(address: str, page: str) -> str:
        found = re.search(rf'data-address="{re.escape(address)}">(.*?)</tr>', page, re.S)
        assert found is not None, address
        return found.group(1)

    page = admin.get("/admin/accounts").text
    other_row = row(OTHER, page)
    assert re.search(r">\d+(\.\d)? KB of 2 MB<", other_row), other_row
    assert "20 per hour" in other_row
    assert 'name="quota" value="2M"' in other_row
    assert 'name="send_limit" value="20"' in other_row
    assert "default (500 per hour)" in row(DEMO, page)  # [submission] max_messages_per_hour
    assert "limits set account=other@example.test quota=2097152 send_limit=20 by=web:demo@example.test" in (
        process.log()
    )
    chinese = admin.get("/admin/accounts", headers={"Accept-Language": "zh-CN"}).text
    assert "每小时 20 封" in row(OTHER, chinese)
    assert "保存限额" in chinese
    refused = admin.post("/admin/accounts", dict(form, quota="lots"))
    assert refused.status == 400
    assert "Quota: a size such as 500M or 2G (0: none); sending limit: messages per hour." in refused.text

    assert admin.post("/admin/accounts", dict(form, quota="1K")).status == 303
    assert "full" in row(OTHER, admin.get("/admin/accounts").text)
    with smtplib.SMTP("127.0.0.1", process.port("smtp"), timeout=30) as smtp:
        smtp.ehlo()
        assert smtp.mail("someone@remote.test")[0] == 250
        code, text = smtp.rcpt(OTHER)
    assert (code, text[:5]) == (452, b"4.2.2")
    other = signed_in(data, process, OTHER)
    draft = {"csrf": other.csrf(other.get("/settings")), "subject": "a draft", "body": "text"}
    saved = other.post("/drafts", draft, headers={"Accept": "application/json"})
    assert (saved.status, saved.text) == (507, '{"error":"your mailbox is full: delete some mail first"}')

    assert admin.post("/admin/accounts", dict(form, quota="0", send_limit="0")).status == 303
    assert other.post("/drafts", draft, headers={"Accept": "application/json"}).status == 200
    page = admin.get("/admin/accounts").text
    assert "default (500 per hour)" in row(OTHER, page)
    assert " of " not in row(OTHER, page)
