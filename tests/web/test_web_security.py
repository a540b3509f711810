"""Two-step login, app passwords, recent logins and identities through the web (decision 0052), against a
real server: enrolment with a code computed here from the secret the page shows, the login's second step,
the main password refused by IMAP once TOTP is on while an app password works, recovery codes once each,
turning it off with the password; identities that must be owned, sent as with their name, Reply-To and
signature."""

from __future__ import annotations

import email
import email.policy
import html
import imaplib
import re
import smtplib
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from postoffice.auth import factors
from tests.integration.harness import DataDir, ServerProcess
from tests.web.client import Reply, WebClient
from tests.web.conftest import imap_login, start_web_server

pytestmark = pytest.mark.integration

DEMO, OTHER, THIRD = "demo@example.test", "other@example.test", "third@example.test"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DataDir, ServerProcess]]:
    # many wrong passwords and codes from one address on purpose: no lockout of 127.0.0.1 here
    data, process = start_web_server(tmp_path_factory.mktemp("security"), ip_max_failures=1000)
    try:
        yield data, process
    finally:
        process.stop()


def secret_on(page: Reply) -> str:
    match = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page.text)
    assert match is not None, page.text[:500]
    return match.group(1).replace(" ", "")


def current_code(secret: str, offset: int = 0) -> str:
    return factors.totp_code(secret, factors.totp_step(time.time()) + offset)


def code_step_login(client: WebClient, user: str, password: str, code: str) -> Reply:
    first = client.login(user, password)
    assert first.status == 200, first.status
    assert 'action="/login/code"' in first.text
    assert "__Host-postoffice-2fa" in client.cookies
    token = re.search(r'name="login_token" value="([^"]+)"', first.text)
    assert token is not None
    return client.post("/login/code", {"login_token": token.group(1), "code": code})


def test_enrolling_totp_then_logging_in_with_a_code_and_mail_programs_with_app_passwords(
    server: tuple[DataDir, ServerProcess],
) -> None:
    data, process = server
    password = data.passwords[OTHER]
    web = WebClient.of(process, data)
    assert web.login(OTHER, password).status == 303
    settings = web.get("/settings")
    assert "/settings/two-factor" in settings.text
    token = web.csrf(settings)

    # an app password before TOTP: shown once, works for IMAP next to the main password
    made = web.post("/settings/app-passwords", {"csrf": token, "name": "Laptop mail", "password": "wrong"})
    assert made.status == 400  # a signed-in browser alone does not make one
    assert 'id="new-app-password"' not in made.text
    made = web.post("/settings/app-passwords", {"csrf": token, "name": "Laptop mail", "password": password})
    assert made.status == 200
    assert made.header("cache-control") == "no-store"
    found = re.search(r'id="new-app-password">([a-z0-9 ]+)<', made.text)
    assert found is not None
    app_password = found.group(1)
    assert imap_login(data, process, OTHER, app_password)
    assert imap_login(data, process, OTHER, password)
    assert app_password not in web.get("/settings").text  # never shown again
    assert "Laptop mail" in web.get("/settings").text

    # enrolment: the same secret until it is confirmed; a wrong code changes nothing
    page = web.get("/settings/two-factor")
    assert page.status == 200
    assert "<svg" in page.text
    secret = secret_on(page)
    assert secret_on(web.get("/settings/two-factor")) == secret
    wrong = "000000" if current_code(secret) != "000000" else "111111"
    assert (
        web.post("/settings/two-factor", {"csrf": token, "code": wrong, "password": password}).status == 400
    )
    right = {"csrf": token, "code": current_code(secret)}
    assert web.post("/settings/two-factor", {**right, "password": "not it"}).status == 400  # password too
    assert 'href="/settings/two-factor"' in web.get("/settings").text  # still off
    confirmed = web.post("/settings/two-factor", {**right, "password": password})
    assert confirmed.status == 200
    codes = re.findall(r"<li><code>([a-z0-9]{5}-[a-z0-9]{5})</code></li>", confirmed.text)
    assert len(codes) == 10
    assert "two-factor login on account=other@example.test" in process.log()

    # the mail protocols: the main password no longer, the app password still
    assert not imap_login(data, process, OTHER, password)
    assert imap_login(data, process, OTHER, app_password)

    # the web: password, then a code; a code used once is not accepted again
    fresh = WebClient.of(process, data)
    code = current_code(secret, 1)  # the next step's: the confirming one is used up
    done = code_step_login(fresh, OTHER, password, code)
    assert done.status == 303
    assert done.header("location").startswith("/box/")
    assert fresh.get("/settings").status == 200
    replay = WebClient.of(process, data)
    assert code_step_login(replay, OTHER, password, code).status == 401
    assert replay.get("/settings").status == 303  # not signed in
    # a recovery code, once
    rescue = WebClient.of(process, data)
    assert code_step_login(rescue, OTHER, password, codes[0].upper()).status == 303
    again = WebClient.of(process, data)
    assert code_step_login(again, OTHER, password, codes[0]).status == 401
    assert "9 recovery codes left" in web.get("/settings").text
    # a code without the password step is nothing
    stranger = WebClient.of(process, data)
    stranger.get("/login")
    assert stranger.post("/login/code", {"login_token": "x", "code": current_code(secret)}).status == 403

    # recent logins show the protocols and outcomes
    logins = html.unescape(web.get("/settings").text)
    assert "IMAP" in logins
    assert "app password Laptop mail" in logins
    assert "wrong password or code" in logins

    # turning it off needs the password
    assert web.post("/settings/two-factor/off", {"csrf": token, "password": "nope"}).status == 400
    assert web.post("/settings/two-factor/off", {"csrf": token, "password": password}).status == 303
    assert imap_login(data, process, OTHER, password)
    assert WebClient.of(process, data).login(OTHER, password).status == 303  # one step again

    # revoking the app password closes it
    listed = web.get("/settings").text
    app_id = re.search(r'name="id" value="(\d+)"><button type="submit" class="tool danger">Revoke', listed)
    assert app_id is not None
    assert web.post("/settings/app-passwords/revoke", {"csrf": token, "id": app_id.group(1)}).status == 303
    assert not imap_login(data, process, OTHER, app_password)
    assert web.post("/settings/app-passwords/revoke", {"csrf": token, "id": app_id.group(1)}).status == 404


def test_the_second_step_ends_after_five_wrong_codes(server: tuple[DataDir, ServerProcess]) -> None:
    data, process = server
    password = data.passwords[THIRD]
    web = WebClient.of(process, data)
    assert web.login(THIRD, password).status == 303
    token = web.csrf(web.get("/settings"))
    secret = secret_on(web.get("/settings/two-factor"))
    enrol = {"csrf": token, "code": current_code(secret), "password": password}
    assert web.post("/settings/two-factor", enrol).status == 200
    try:
        client = WebClient.of(process, data)
        first = client.login(THIRD, password)
        for attempt in range(5):
            login_token = re.search(r'name="login_token" value="([^"]+)"', first.text)
            assert login_token is not None
            first = client.post("/login/code", {"login_token": login_token.group(1), "code": "abcde-fghij"})
            assert first.status == 401
            assert ('action="/login/code"' in first.text) == (attempt < 4)
        assert 'action="/login"' in first.text  # back to the password
    finally:
        assert web.post("/settings/two-factor/off", {"csrf": token, "password": password}).status == 303


def test_identities_must_be_owned_and_messages_go_out_with_their_name_reply_to_and_signature(
    server: tuple[DataDir, ServerProcess],
) -> None:
    data, process = server
    web = WebClient.of(process, data)
    assert web.login(DEMO, data.passwords[DEMO]).status == 303
    token = web.csrf(web.get("/settings"))
    refused = web.post("/settings/identities", {"csrf": token, "address": OTHER, "name": "Not me"})
    assert refused.status == 400  # another account's address
    for bad_id in ("²", "9" * 30, "x"):
        assert web.post("/settings/identities", {"csrf": token, "id": bad_id, "address": DEMO}).status == 400
        assert web.post("/settings/identities/delete", {"csrf": token, "id": bad_id}).status == 404
        assert web.post("/settings/app-passwords/revoke", {"csrf": token, "id": bad_id}).status == 404
    bad_reply_to = {"csrf": token, "address": DEMO, "reply_to": "not an address"}
    assert web.post("/settings/identities", bad_reply_to).status == 400
    saved = web.post(
        "/settings/identities",
        {
            "csrf": token,
            "address": "Demo@Example.test.",  # saved in its canonical form
            "name": "Demo Person",
            "reply_to": "replies@example.test",
            "signature": "Demo Person\r\nExample Ltd",
            "default": "1",
        },
    )
    assert saved.status == 303
    compose = web.get("/compose")
    assert "Demo Person &lt;demo@example.test&gt;" in compose.text
    assert "\n-- \nDemo Person\nExample Ltd\n" in html.unescape(compose.text)
    identity = re.search(r'<option value="(\d+)" selected>', compose.text)
    assert identity is not None
    sent = web.post_multipart(
        "/compose",
        {
            "csrf": token,
            "identity": identity.group(1),
            "to": OTHER,
            "subject": "from an identity",
            "body": "Hello\n\n-- \nDemo Person\nExample Ltd\n",
        },
    )
    assert sent.status == 303, sent.text[:300]
    context = ssl.create_default_context(cafile=str(data.root / "tls" / "cert.pem"))
    with imaplib.IMAP4_SSL("localhost", process.port("imaps"), ssl_context=context, timeout=30) as imap:
        imap.login(OTHER, data.passwords[OTHER])
        imap.select("INBOX")
        _, found = imap.search(None, "SUBJECT", '"from an identity"')
        (number,) = found[0].split()
        _, parts = imap.fetch(number, "(BODY.PEEK[])")
        raw = parts[0]
        assert isinstance(raw, tuple)
        message = email.message_from_bytes(raw[1], policy=email.policy.default)
    assert str(message["from"]) == "Demo Person <demo@example.test>"
    assert str(message["reply-to"]) == "replies@example.test"
    body = message.get_body(("plain",))
    assert body is not None
    assert body.get_content().replace("\r\n", "\n").endswith("-- \nDemo Person\nExample Ltd\n")
    # removing it: the account's own address again, no Reply-To
    assert web.post("/settings/identities/delete", {"csrf": token, "id": identity.group(1)}).status == 303
    assert web.post("/settings/identities/delete", {"csrf": token, "id": identity.group(1)}).status == 404
    assert '<select id="identity"' not in web.get("/compose").text


def test_smtp_submission_takes_an_app_password(server: tuple[DataDir, ServerProcess], tmp_path: Path) -> None:
    data, process = server
    web = WebClient.of(process, data)
    assert web.login(DEMO, data.passwords[DEMO]).status == 303
    token = web.csrf(web.get("/settings"))
    made = web.post(
        "/settings/app-passwords", {"csrf": token, "name": "Phone", "password": data.passwords[DEMO]}
    )
    found = re.search(r'id="new-app-password">([a-z0-9 ]+)<', made.text)
    assert found is not None
    context = ssl.create_default_context(cafile=str(data.root / "tls" / "cert.pem"))
    with smtplib.SMTP_SSL("localhost", process.port("submissions"), context=context, timeout=30) as smtp:
        assert smtp.login(DEMO, found.group(1))[0] == 235
    again = {"csrf": token, "name": "Phone", "password": data.passwords[DEMO]}
    assert web.post("/settings/app-passwords", again).status == 400  # same name


def test_a_password_change_with_totp_on_works_and_revokes_the_app_passwords(tmp_path: Path) -> None:
    data, process = start_web_server(tmp_path, ip_max_failures=1000)
    try:
        password = data.passwords[OTHER]
        web = WebClient.of(process, data)
        assert web.login(OTHER, password).status == 303
        token = web.csrf(web.get("/settings"))
        made = web.post("/settings/app-passwords", {"csrf": token, "name": "Phone", "password": password})
        found = re.search(r'id="new-app-password">([a-z0-9 ]+)<', made.text)
        assert found is not None
        secret = secret_on(web.get("/settings/two-factor"))
        enrol = {"csrf": token, "code": current_code(secret), "password": password}
        assert web.post("/settings/two-factor", enrol).status == 200
        assert imap_login(data, process, OTHER, found.group(1))
        new = "a new and long password"
        change = {"csrf": token, "current": password, "new": new, "repeat": new}
        assert web.post("/settings/password", change).status == 303
        assert not imap_login(data, process, OTHER, found.group(1))  # revoked with the change
        assert "<td>Phone</td>" not in web.get("/settings").text
        assert "app_passwords_revoked=1" in process.log()
        assert code_step_login(WebClient.of(process, data), OTHER, new, current_code(secret, 1)).status == 303
    finally:
        process.stop()
