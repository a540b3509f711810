"""The web listeners at the HTTP level, against a real server: the redirect from port 80, login through the
shared authenticator, sessions and their cookies, CSRF, the security headers, cross-account ids, limits
(docs/decisions/0046)."""

from __future__ import annotations

import base64
import contextlib
import email
import email.policy
import html
import http.client
import re
import socket
import ssl
import time
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest

from tests.integration.harness import DataDir, ServerProcess
from tests.support.mail import send_smtp, text_message
from tests.web.client import WebClient, set_cookie_values
from tests.web.conftest import set_settings, start_web_server

pytestmark = pytest.mark.integration

DEMO, OTHER = "demo@example.test", "other@example.test"

HOSTILE_HTML = (
    b"From: Mallory <mallory@remote.test>\r\nTo: demo@example.test\r\nSubject: hostile html\r\n"
    b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <hostile@remote.test>\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n\r\n"
    b'<p onclick="alert(1)">Hello<script>alert(2)</script></p><img src="http://127.0.0.1:9/pixel.gif">'
    b'<a href="javascript:alert(3)">x</a><base href="http://evil.example/"><form action="/logout">'
    b'<svg><animate onbegin="alert(4)"/></svg><meta http-equiv="refresh" content="0;url=http://evil">\r\n'
)


def _gb2312_word(text: str) -> bytes:
    return b"=?gb2312?B?" + base64.b64encode(text.encode("gb2312")) + b"?="


CHINESE_GB2312 = (
    b"From: " + _gb2312_word("张三") + b" <zhang@remote.test>\r\nTo: demo@example.test\r\n"
    b"Subject: " + _gb2312_word("你好，世界杯") + b"\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    b"Message-ID: <gb@remote.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=gb2312\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n\r\n" + "你好，世界！这是一封中文邮件。\r\n".encode("gb18030")
)


@pytest.fixture(scope="module")
def mail(web_server: tuple[DataDir, ServerProcess]) -> tuple[DataDir, ServerProcess]:
    data, server = web_server
    port = server.port("smtp")
    send_smtp(port, text_message("plain hello", "Plain body line.\r\n"), to=DEMO)
    send_smtp(port, HOSTILE_HTML, CHINESE_GB2312, to=DEMO)
    send_smtp(port, text_message("for other only", "secret of other\r\n"), to=OTHER)
    return data, server


def logged_in(data: DataDir, server: ServerProcess, address: str = DEMO) -> WebClient:
    client = WebClient.of(server, data)
    reply = client.login(address, data.passwords[address])
    assert reply.status == 303, reply.text[:500]
    return client


def inbox_path(client: WebClient) -> str:
    home = client.get("/")
    assert home.status == 303
    return home.header("location")


def uid_of(client: WebClient, box: str, subject: str) -> str:
    page = client.get(box).text
    row = rf'href="{box}/(\d+)">\s*<span class="sender">[^<]*</span>\s*'
    count = r'(?:<span class="thread-count"[^>]*>\d+</span>\s*)?'
    match = re.search(row + rf'(?:<span class="subject-line">)?{count}<span class="subject">{subject}', page)
    assert match is not None, f"{subject!r} not listed"
    return match.group(1)


def test_port_80_redirects_every_request_to_the_same_path_on_https(
    web_server: tuple[DataDir, ServerProcess],
) -> None:
    _, server = web_server
    conn = http.client.HTTPConnection("127.0.0.1", server.port("http"), timeout=30)
    conn.request("GET", "/box/7?page=2", headers={"Host": "mail.example.test"})
    reply = conn.getresponse()
    reply.read()
    assert reply.status == 301
    assert reply.headers["location"] == f"https://mail.example.test:{server.port('https')}/box/7?page=2"
    conn.request("POST", "/login", body=b"x=1", headers={"Host": "mail.example.test:80"})
    reply = conn.getresponse()
    reply.read()
    assert reply.status == 308  # the method and body are kept
    conn.request("GET", "//evil.example/x", headers={"Host": "evil.example/@x y"})
    reply = conn.getresponse()
    reply.read()
    assert reply.headers["location"] == f"https://localhost:{server.port('https')}/"  # never elsewhere
    conn.close()


def test_login_page_headers_and_cookie_flags(web_server: tuple[DataDir, ServerProcess]) -> None:
    data, server = web_server
    client = WebClient.of(server, data)
    page = client.get("/login")
    assert page.status == 200
    assert 'autocomplete="current-password"' in page.text
    assert '<form method="post" action="/login"' in page.text
    csp = page.header("content-security-policy")
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert "frame-ancestors 'none'" in csp
    assert "default-src 'none'" in csp
    assert page.header("strict-transport-security").startswith("max-age=")
    assert page.header("x-content-type-options") == "nosniff"
    assert page.header("referrer-policy") == "no-referrer"
    assert page.header("cache-control") == "no-store"
    [cookie] = set_cookie_values(page.headers)
    assert cookie.startswith("__Host-postoffice-login=")
    for flag in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
        assert flag in cookie
    assert "<script>" not in page.text  # no inline script anywhere
    assert re.search(r"<script[^>]*>[^<]", page.text) is None


def test_login_logout_and_the_session_cookie(mail: tuple[DataDir, ServerProcess]) -> None:
    data, server = mail
    client = WebClient.of(server, data)
    assert client.get("/").header("location") == "/login"
    wrong = client.login(DEMO, "not-the-password")
    assert wrong.status == 401
    assert "Wrong email address or password." in wrong.text
    assert "__Host-postoffice" not in client.cookies
    ok = client.login(DEMO, data.passwords[DEMO])
    assert ok.status == 303
    box = inbox_path(client)
    assert ok.header("location") == box  # straight to the Inbox, not through "/"
    session_cookie = next(c for c in set_cookie_values(ok.headers) if c.startswith("__Host-postoffice="))
    for flag in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
        assert flag in session_cookie
    page = client.get(box)
    assert page.status == 200
    for subject in ("plain hello", "hostile html", "你好，世界杯"):
        assert subject in page.text
    assert "for other only" not in page.text
    assert '<span class="snippet"> – Plain body line.</span>' in page.text  # the text's beginning
    token = client.csrf(page)
    refused = client.post("/logout", {"csrf": "wrong"})
    assert refused.status == 403
    assert client.get(box).status == 200  # still logged in
    assert client.post("/logout", {"csrf": token}).status == 303
    assert client.get(box).status == 303  # to the login page
    stolen = WebClient.of(server, data)
    stolen.cookies["__Host-postoffice"] = session_cookie.split("=", 1)[1].split(";")[0]
    assert stolen.get(box).status == 303  # the old cookie is worth nothing after logout


def test_a_cross_site_post_is_refused(mail: tuple[DataDir, ServerProcess]) -> None:
    data, server = mail
    client = logged_in(data, server)
    token = client.csrf(client.get(inbox_path(client)))
    evil = client.post("/logout", {"csrf": token}, headers={"Origin": "https://evil.example"})
    assert evil.status == 403
    fetched = client.post("/logout", {"csrf": token}, headers={"Sec-Fetch-Site": "cross-site"})
    assert fetched.status == 403
    no_form = client.request(
        "POST", "/login", b"{}", {"Content-Type": "application/json", "Origin": client.origin}
    )
    assert no_form.status in (403, 415)
    login_without_token = client.post("/login", {"username": DEMO, "password": data.passwords[DEMO]})
    assert login_without_token.status == 403


def test_no_open_redirect_after_login(mail: tuple[DataDir, ServerProcess]) -> None:
    data, server = mail
    box = inbox_path(logged_in(data, server))
    for target, expected in (
        ("//evil.example/", box),
        ("https://evil.example/", box),
        ("/\\evil.example", box),
        ("/box/1?page=2", "/box/1?page=2"),
    ):
        client = WebClient.of(server, data)
        reply = client.login(DEMO, data.passwords[DEMO], next=target)
        assert reply.header("location") == expected, target


def test_another_accounts_mailbox_message_and_body_are_not_found(mail: tuple[DataDir, ServerProcess]) -> None:
    data, server = mail
    other = logged_in(data, server, OTHER)
    other_box = inbox_path(other)
    other_uid = uid_of(other, other_box, "for other only")
    demo = logged_in(data, server)
    demo_box = inbox_path(demo)
    assert demo_box != other_box
    for path in (
        other_box,
        f"{other_box}/{other_uid}",
        f"{other_box}/{other_uid}/body",
        f"{other_box}?page=2",
    ):
        reply = demo.get(path)
        assert reply.status == 404, path
        assert "secret of other" not in reply.text
    assert demo.get("/box/999999").status == 404
    assert demo.get(f"{demo_box}/999999").status == 404
    assert demo.get("/box/999999/1", headers={"Accept": "application/json"}).text.startswith('{"error"')


def test_reading_a_message_marks_it_read_and_shows_chinese_from_gb2312(
    mail: tuple[DataDir, ServerProcess],
) -> None:
    data, server = mail
    client = logged_in(data, server)
    box = inbox_path(client)
    before = client.get(box).text
    uid = uid_of(client, box, "你好，世界杯")
    assert f'class="message-row unread" data-uid="{uid}"' in before
    page = client.get(f"{box}/{uid}")
    assert page.status == 200
    assert "你好，世界！这是一封中文邮件。" in page.text
    assert "张三" in page.text
    after = client.get(box).text
    assert f'class="message-row" data-uid="{uid}"' in after


def test_remote_images_for_one_message_or_always_for_a_sender(mail: tuple[DataDir, ServerProcess]) -> None:
    data, server = mail
    client = logged_in(data, server)
    box = inbox_path(client)
    uid = uid_of(client, box, "hostile html")
    page = client.get(f"{box}/{uid}")
    assert "Always show images from mallory@remote.test" in page.text
    blocked = client.get(f"{box}/{uid}/body").header("content-security-policy")
    assert "img-src data: 'self';" in blocked
    once = client.get(f"{box}/{uid}/body?images=1").header("content-security-policy")
    assert "img-src data: 'self' https: http:;" in once
    assert "script-src" not in once  # default-src 'none' still forbids every script
    token = client.csrf(page)
    trusted = client.post("/images", {"csrf": token, "sender": "mallory@remote.test", "back": f"{box}/{uid}"})
    assert trusted.status == 303
    assert "https: http:" in client.get(f"{box}/{uid}/body").header("content-security-policy")
    assert "are always shown" in client.get(f"{box}/{uid}").text
    other = logged_in(data, server, OTHER)  # another account's choice is its own
    assert other.get(f"{box}/{uid}/body").status == 404
    client.post("/images", {"csrf": token, "sender": "mallory@remote.test", "trust": "0", "back": "/"})
    assert "https: http:" not in client.get(f"{box}/{uid}/body").header("content-security-policy")


def test_hostile_html_is_sanitised_and_framed_with_its_own_policy(
    mail: tuple[DataDir, ServerProcess],
) -> None:
    data, server = mail
    client = logged_in(data, server)
    box = inbox_path(client)
    uid = uid_of(client, box, "hostile html")
    page = client.get(f"{box}/{uid}")
    assert '<iframe class="mail-html" sandbox="allow-popups allow-popups-to-escape-sandbox"' in page.text
    body = client.get(f"{box}/{uid}/body")
    assert body.status == 200
    csp = body.header("content-security-policy")
    assert "default-src 'none'" in csp
    assert "img-src data:" in csp
    assert "sandbox" in csp
    lowered = body.text.lower()
    for bad in ("<script", "onclick", "onbegin", "javascript:", "<base", "<form", "<svg", "http-equiv"):
        assert bad not in lowered, bad
    assert "Hello" in body.text


def test_the_language_follows_accept_language_and_the_switch(mail: tuple[DataDir, ServerProcess]) -> None:
    data, server = mail
    client = WebClient.of(server, data)
    chinese = client.get("/login", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"})
    assert '<html lang="zh-CN">' in chinese.text
    assert "登录你的邮箱" in chinese.text
    english = client.get("/login", headers={"Accept-Language": "fr, en;q=0.5, zh;q=0.1"})
    assert "Sign in to your mail" in english.text
    switched = client.post("/lang", {"lang": "zh_CN", "back": "/login"})
    assert switched.status == 303
    assert switched.header("location") == "/login"
    assert "登录你的邮箱" in client.get("/login", headers={"Accept-Language": "en"}).text


def test_an_oversized_form_is_refused(mail: tuple[DataDir, ServerProcess]) -> None:
    data, server = mail
    client = WebClient.of(server, data)
    client.get("/login")
    reply = client.post("/login", {"username": "x" * (2 * 1024 * 1024)})
    assert reply.status == 413


def test_lockouts_apply_to_the_web_as_to_imap(tmp_path: Path) -> None:
    data, server = start_web_server(tmp_path, account_max_failures=3, ip_max_failures=100)
    try:
        client = WebClient.of(server, data)
        for _ in range(3):
            assert client.login(DEMO, "wrong").status == 401
        locked = client.login(DEMO, data.passwords[DEMO])
        assert locked.status == 401
        assert "Too many failed logins" in locked.text
        import imaplib

        context = ssl.create_default_context(cafile=str(data.root / "tls" / "cert.pem"))
        imaps = server.port("imaps")
        with (
            imaplib.IMAP4_SSL("localhost", imaps, ssl_context=context, timeout=30) as imap,
            pytest.raises(imaplib.IMAP4.error),
        ):
            imap.login(DEMO, data.passwords[DEMO])  # the same lockout, from the same address
    finally:
        server.stop()


def test_connection_caps_and_the_request_head_deadline(tmp_path: Path) -> None:
    data, server = start_web_server(tmp_path)
    server.stop()
    set_settings(data, "web", max_connections_per_ip=3, request_timeout=1.0)
    server = ServerProcess(data).start()
    try:
        port = server.port("http")
        idle = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(3)]
        fourth = socket.create_connection(("127.0.0.1", port), timeout=30)
        assert fourth.recv(200).startswith(b"HTTP/1.1 503 ")
        fourth.close()
        started = time.monotonic()
        idle[0].sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # a head that never ends
        assert idle[0].recv(100) == b""  # closed by the server at the deadline
        assert time.monotonic() - started < 20
        for sock in idle:
            sock.close()
    finally:
        server.stop()


def listed_subjects(client: WebClient, box: str) -> list[str]:
    return re.findall(r'<span class="subject">([^<]*)</span>', client.get(box).text)


def folder_path(client: WebClient, page_text: str, label: str) -> str:
    match = re.search(
        rf'<a href="(/box/\d+)" class="folder[^"]*"[^>]*>\s*<span[^>]*></span>\s*'
        rf'<span class="folder-name">{label}</span>',
        page_text,
    )
    assert match is not None, label
    return match.group(1)


def test_archive_delete_to_trash_delete_for_good_and_mark_unread(tmp_path: Path) -> None:
    data, server = start_web_server(tmp_path)
    try:
        send_smtp(server.port("smtp"), *(text_message(f"act {n}", "x\r\n") for n in range(4)), to=DEMO)
        client = logged_in(data, server)
        box = inbox_path(client)
        page = client.get(box)
        token = client.csrf(page)
        archive, trash = folder_path(client, page.text, "Archive"), folder_path(client, page.text, "Trash")
        uids = {subject: uid_of(client, box, subject) for subject in ("act 0", "act 1", "act 2", "act 3")}
        refused = client.post(f"{box}/act", {"uid": uids["act 0"], "action": "archive"})
        assert refused.status == 403  # no CSRF token
        moved = client.post(
            f"{box}/act", {"csrf": token, "uid": uids["act 0"], "action": "archive", "back": box}
        )
        assert moved.status == 303
        assert moved.header("location") == box
        assert "act 0" not in listed_subjects(client, box)
        assert listed_subjects(client, archive) == ["act 0"]
        form = urlencode(
            [("csrf", token), ("uid", uids["act 1"]), ("uid", uids["act 2"]), ("action", "delete")]
        )
        deleted = client.request(
            "POST",
            f"{box}/act",
            form.encode(),
            {"Content-Type": "application/x-www-form-urlencoded", "Origin": client.origin},
        )
        assert deleted.status == 303
        assert sorted(listed_subjects(client, trash)) == ["act 1", "act 2"]
        trash_uid = uid_of(client, trash, "act 1")
        assert (
            client.post(f"{trash}/act", {"csrf": token, "uid": trash_uid, "action": "delete"}).status == 303
        )
        assert listed_subjects(client, trash) == ["act 2"]  # deleted from Trash for good
        client.get(f"{box}/{uids['act 3']}")  # read it
        client.post(f"{box}/act", {"csrf": token, "uid": uids["act 3"], "action": "unread"})
        assert re.search(rf'class="message-row unread" data-uid="{uids["act 3"]}"', client.get(box).text)
        other = logged_in(data, server, OTHER)
        other_token = other.csrf(other.get(inbox_path(other)))
        stolen = other.post(f"{box}/act", {"csrf": other_token, "uid": uids["act 3"], "action": "delete"})
        assert stolen.status == 404  # another account's folder
        assert "act 3" in listed_subjects(client, box)
    finally:
        server.stop()


def test_the_live_update_stream_tells_of_new_mail_and_ends_when_the_server_stops(tmp_path: Path) -> None:
    data, server = start_web_server(tmp_path)
    stopped = False
    try:
        client = logged_in(data, server)
        context = ssl.create_default_context(cafile=str(client.cafile))
        conn = http.client.HTTPSConnection("localhost", client.port, context=context, timeout=30)
        cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
        conn.request("GET", "/events", headers={"Cookie": cookie, "Accept": "text/event-stream"})
        response = conn.getresponse()
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.readline() == b"retry: 2000\n"
        assert response.readline() == b"\n"
        send_smtp(server.port("smtp"), text_message("live one", "x\r\n"), to=DEMO)
        assert response.readline() == b"event: change\n"
        assert response.readline() == b"data: {}\n"
        server.stop(timeout=20)  # an open stream must not hold the shutdown (30 s grace) up
        stopped = True
        with contextlib.suppress(http.client.IncompleteRead, ssl.SSLError, ConnectionError):
            assert response.read() in (b"\n", b"")  # the end of the event, then of the stream
        conn.close()
        anonymous = WebClient.of(server, data)
        assert anonymous.port == client.port
    finally:
        if not stopped:
            server.stop()


def test_search_words_fields_flags_chinese_and_scope(mail: tuple[DataDir, ServerProcess]) -> None:
    data, server = mail
    client = logged_in(data, server)
    box = inbox_path(client)
    folder_id = box.rsplit("/", 1)[1]

    def found(query: str, scope: str = folder_id) -> list[str]:
        page = client.get(f"/search?q={quote(query)}&in={scope}")
        assert page.status == 200
        return re.findall(r'<span class="subject">([^<]*)</span>', page.text)

    assert found("Plain body line") == ["plain hello"]
    assert found("from:mallory") == ["hostile html"]
    assert found("subject:plain") == ["plain hello"]
    assert found("中文邮件") == ["你好，世界杯"]  # the body of the GB2312 message, searched as Chinese
    assert "for other only" not in found("secret of other", "")  # another account's mail is never found
    assert found("nothing-matches-this") == []
    assert "Nothing found." in client.get(f"/search?q=zzzz&in={folder_id}").text
    other = logged_in(data, server, OTHER)
    assert other.get(f"/search?q=plain&in={folder_id}").status == 404  # not their folder


def imap_fetch(data: DataDir, server: ServerProcess, address: str, mailbox: str = "INBOX") -> list[bytes]:
    """Every message of `mailbox` as an IMAP client sees it."""
    import imaplib

    context = ssl.create_default_context(cafile=str(data.root / "tls" / "cert.pem"))
    with imaplib.IMAP4_SSL("localhost", server.port("imaps"), ssl_context=context, timeout=30) as imap:
        imap.login(address, data.passwords[address])
        imap.select(mailbox, readonly=True)
        _, found = imap.uid("SEARCH", "ALL")
        messages = []
        for uid in found[0].split():
            _, parts = imap.uid("FETCH", uid, "(FLAGS BODY.PEEK[])")
            messages += [part[0] + b"\n" + part[1] for part in parts if isinstance(part, tuple)]
        return messages


def test_compose_send_with_attachment_and_bcc_then_reply(tmp_path: Path) -> None:
    data, server = start_web_server(tmp_path)
    try:
        demo = logged_in(data, server)
        compose = demo.get("/compose")
        assert compose.status == 200
        token = demo.csrf(compose)
        attachment = b"%PDF-1.4 pretend\n" * 100
        fields = {
            "csrf": token,
            "to": "Other Person <other@example.test>",
            "cc": "",
            "bcc": "third@example.test",
            "subject": "周报 and plans",
            "body": "Hello Other,\n\nthe report is attached.\n",
        }
        refused = demo.post_multipart("/compose", {**fields, "csrf": "wrong"})
        assert refused.status == 403
        unknown = demo.post_multipart("/compose", {**fields, "to": "nobody@example.test"})
        assert unknown.status == 400
        assert "Not sent" in unknown.text
        sent = demo.post_multipart(
            "/compose", fields, [("attachments", "报告 2024.pdf", "application/pdf", attachment)]
        )
        assert sent.status == 303, sent.text[:300]
        assert sent.header("location").endswith("?sent=1")
        assert "Message sent." in demo.get(sent.header("location")).text
        [received] = imap_fetch(data, server, OTHER)
        assert b"From: demo@example.test" in received
        assert b"Bcc" not in received
        assert b"third@example.test" not in received
        parsed = email.message_from_bytes(received.split(b"\n", 1)[1], policy=email.policy.default)
        assert parsed["subject"] == "周报 and plans"
        [part] = list(parsed.iter_attachments())
        assert part.get_filename() == "报告 2024.pdf"
        assert part.get_content() == attachment
        assert len(imap_fetch(data, server, "third@example.test")) == 1  # the Bcc recipient got it
        [kept] = imap_fetch(data, server, DEMO, "Sent")
        sent_folder = folder_path(demo, demo.get(inbox_path(demo)).text, "Sent")
        assert '<span class="sender">To: Other Person</span>' in demo.get(sent_folder).text
        assert b"\\Seen" in kept.split(b"\n", 1)[0]
        # the reply, from the other side
        other = logged_in(data, server, OTHER)
        box = inbox_path(other)
        uid = uid_of(other, box, "周报 and plans")
        form = other.get(f"/compose?reply={box.rsplit('/', 1)[1]}/{uid}")
        assert '<option value="demo@example.test">' in form.text  # completion: who wrote to them
        assert 'value="demo@example.test"' in form.text
        assert 'value="Re: 周报 and plans"' in form.text
        assert "&gt; the report is attached." in form.text
        reply_to = re.search(r'name="in_reply_to" value="([^"]+)"', form.text)
        assert reply_to is not None
        assert html.unescape(reply_to.group(1)) == parsed["message-id"]
        hidden = re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form.text)
        fields = {name: html.unescape(value) for name, value in hidden}
        body = re.search(r"<textarea[^>]*>(.*)</textarea>", form.text, re.S)
        assert body is not None
        fields.update(
            to="demo@example.test",
            subject="Re: 周报 and plans",
            body="Thanks!\n" + html.unescape(body.group(1)),
        )
        assert other.post_multipart("/compose", fields).status == 303
        replies = [m for m in imap_fetch(data, server, DEMO) if b"In-Reply-To" in m]
        assert len(replies) == 1
        assert parsed["message-id"].encode() in replies[0]
        demo_box = inbox_path(demo)
        reply_uid = uid_of(demo, demo_box, "Re: 周报 and plans")
        reading = demo.get(f"{demo_box}/{reply_uid}").text
        thread = re.search(r'<ol class="thread-list">(.*?)</ol>', reading, re.S)
        assert thread is not None  # the conversation, with demo's own message from Sent
        assert "周报 and plans" in thread.group(1)
        assert "Sent" in thread.group(1)
        assert demo.post("/view", {"view": "flat", "back": f"{demo_box}/{reply_uid}"}).status == 303
        assert 'class="thread-list"' not in demo.get(f"{demo_box}/{reply_uid}").text
        assert re.search(rf'data-uid="{uid}"', other.get(box).text)
        # forward as an attachment: the original goes whole, as message/rfc822
        forward = other.get(f"/compose?forward={box.rsplit('/', 1)[1]}/{uid}&attach=1")
        assert "goes with it as an attachment" in forward.text
        hidden = re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', forward.text)
        fields = {name: html.unescape(value) for name, value in hidden}
        fields.update(to="third@example.test", subject="Fwd: 周报 and plans", body="FYI")
        assert other.post_multipart("/compose", fields).status == 303
        forwarded = [m for m in imap_fetch(data, server, "third@example.test") if b"FYI" in m]
        assert len(forwarded) == 1
        outer = email.message_from_bytes(forwarded[0].split(b"\n", 1)[1], policy=email.policy.default)
        [attached] = [p for p in outer.walk() if p.get_content_type() == "message/rfc822"]
        assert isinstance(attached, EmailMessage)
        inner = attached.get_content()
        assert isinstance(inner, EmailMessage)
        assert inner["subject"] == "周报 and plans"
        assert inner["from"] == "demo@example.test"
        assert "marker answered" in other.get(box).text  # \Answered on the original
    finally:
        server.stop()


def test_attachments_download_with_their_names_and_cid_images_show(tmp_path: Path) -> None:
    data, server = start_web_server(tmp_path)
    try:
        png = base64.b64decode(
            "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
        )
        message = EmailMessage()
        message["From"] = "ada@remote.test"
        message["To"] = DEMO
        message["Subject"] = "pictures"
        message.set_content("see the picture")
        message.add_alternative('<p>Look: <img src="cid:pic1@remote.test"></p>', subtype="html")
        html_part = message.get_body(preferencelist=("html",))
        assert isinstance(html_part, EmailMessage)
        html_part.add_related(png, "image", "png", cid="<pic1@remote.test>")
        message.add_attachment(png, maintype="image", subtype="png", filename="照片 1.png")
        message.add_attachment(
            b"<svg onload='alert(1)'/>", maintype="image", subtype="svg+xml", filename="x.svg"
        )
        send_smtp(server.port("smtp"), message.as_bytes(), to=DEMO)
        client = logged_in(data, server)
        box = inbox_path(client)
        uid = uid_of(client, box, "pictures")
        page = client.get(f"{box}/{uid}").text
        links = dict(
            (html.unescape(name), href)
            for href, name in re.findall(r'<a class="file-name" href="([^"]+)"[^>]*>([^<]+)</a>', page)
        )
        assert set(links) == {"照片 1.png", "x.svg"}
        photo = client.get(links["照片 1.png"])
        assert photo.status == 200
        assert photo.body == png
        assert photo.header("content-type") == "image/png"
        assert photo.header("content-disposition") == (
            "inline; filename=\"__ 1.png\"; filename*=UTF-8''%E7%85%A7%E7%89%87%201.png"
        )
        assert "default-src 'none'" in photo.header("content-security-policy")
        saved = client.get(links["照片 1.png"] + "?download=1")
        assert saved.header("content-disposition").startswith("attachment;")
        assert saved.header("content-type") == "application/octet-stream"
        svg = client.get(links["x.svg"])
        assert svg.header("content-type") == "application/octet-stream"  # never rendered: it could script
        assert svg.header("content-disposition").startswith("attachment;")
        frame = client.get(f"{box}/{uid}/body").text
        match = re.search(r'src="(/box/\d+/\d+/cid/[^"]+)"', frame)
        assert match is not None
        inline = client.get(html.unescape(match.group(1)))
        assert inline.status == 200
        assert inline.body == png
        other = logged_in(data, server, OTHER)
        assert other.get(links["照片 1.png"]).status == 404
        assert client.get(f"{box}/{uid}/part/999").status == 404
    finally:
        server.stop()


def test_folders_are_created_renamed_deleted_and_trash_emptied(tmp_path: Path) -> None:
    data, server = start_web_server(tmp_path)
    try:
        send_smtp(
            server.port("smtp"),
            text_message("to trash", "See https://example.org/x.\r\n> quoted\r\n"),
            to=DEMO,
        )
        client = logged_in(data, server)
        box = inbox_path(client)
        page = client.get(box)
        token = client.csrf(page)
        assert (
            client.post("/folders", {"csrf": token, "action": "create", "name": "Projects/2026"}).status
            == 303
        )
        page = client.get(box)
        projects = folder_path(client, page.text, "2026")
        renamed = client.post(
            "/folders",
            {"csrf": token, "action": "rename", "folder": projects.rsplit("/", 1)[1], "name": "Plans"},
        )
        assert renamed.status == 303
        assert folder_path(client, client.get(box).text, "Plans") == projects  # same folder, new name
        inbox_id = box.rsplit("/", 1)[1]
        assert client.post("/folders", {"csrf": token, "action": "delete", "folder": inbox_id}).status == 400
        assert (
            client.post(
                "/folders", {"csrf": token, "action": "delete", "folder": projects.rsplit("/", 1)[1]}
            ).status
            == 303
        )
        assert client.get(projects).status == 404
        assert client.post("/folders", {"action": "create", "name": "x"}).status == 403  # CSRF
        uid = uid_of(client, box, "to trash")
        message = client.get(f"{box}/{uid}").text
        assert (
            '<a href="https://example.org/x" target="_blank" rel="noopener noreferrer nofollow">' in message
        )
        assert '<details class="quoted">' in message
        raw = client.get(f"{box}/{uid}/raw")
        assert raw.header("content-type") == "text/plain; charset=utf-8"
        assert b"Subject: to trash" in raw.body
        client.post(f"{box}/act", {"csrf": token, "uid": uid, "action": "delete"})
        trash = folder_path(client, client.get(box).text, "Trash")
        assert listed_subjects(client, trash) == ["to trash"]
        trash_id = trash.rsplit("/", 1)[1]
        assert client.post("/folders", {"csrf": token, "action": "empty", "folder": inbox_id}).status == 400
        assert client.post("/folders", {"csrf": token, "action": "empty", "folder": trash_id}).status == 303
        assert listed_subjects(client, trash) == []
    finally:
        server.stop()


def test_pages_never_nest_forms_or_repeat_ids(mail: tuple[DataDir, ServerProcess]) -> None:
    """A form inside a form is dropped by the HTML parser, and the outer one ends early (which once cut the
    message list out of its form): every page is checked."""
    from html.parser import HTMLParser

    class Checker(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.depth = 0
            self.nested = False
            self.ids: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "form":
                self.nested = self.nested or self.depth > 0
                self.depth += 1
            self.ids += [value for name, value in attrs if name == "id" and value]

        def handle_endtag(self, tag: str) -> None:
            if tag == "form":
                self.depth -= 1

    data, server = mail
    client = logged_in(data, server)
    box = inbox_path(client)
    uid = uid_of(client, box, "plain hello")
    for path in (
        box,
        f"{box}/{uid}",
        "/compose",
        f"/compose?reply={box.rsplit('/', 1)[1]}/{uid}",
        "/search?q=x",
    ):
        checker = Checker()
        checker.feed(client.get(path).text)
        assert not checker.nested, path
        assert len(checker.ids) == len(set(checker.ids)), path


def test_error_pages_are_translated_and_never_a_traceback(mail: tuple[DataDir, ServerProcess]) -> None:
    data, server = mail
    client = logged_in(data, server)
    english = client.get("/box/999999")
    assert english.status == 404
    assert "no such folder" in english.text
    chinese = client.get("/box/999999", headers={"Accept-Language": "zh-CN"})
    assert chinese.status == 404
    assert "没有这个文件夹" in chinese.text
    missing = client.get("/nothing/here", headers={"Accept-Language": "zh-CN"})
    assert missing.status == 404
    assert "未找到" in missing.text
    for reply in (english, chinese, missing):
        assert "Traceback" not in reply.text


def reply_message(subject: str, mid: str, parents: list[str], sender: str = "peer@remote.test") -> bytes:
    references = " ".join(f"<{p}@remote.test>" for p in parents)
    return (
        f"From: {sender}\r\nTo: {DEMO}\r\nSubject: {subject}\r\nMessage-ID: <{mid}@remote.test>\r\n"
        f"In-Reply-To: <{parents[-1]}@remote.test>\r\nReferences: {references}\r\n\r\nreply {mid}\r\n"
    ).encode()


def test_conversations_span_pages_and_folders_and_act_as_one(tmp_path: Path) -> None:
    """A conversation is one row wherever its messages are on the folder's pages, counting the person's own
    reply in Sent; pages go older and back newer; an action on the row acts on all its messages in the
    folder; another account's conversation id reaches nothing (docs/decisions/0047)."""
    import imaplib

    data, server = start_web_server(tmp_path)
    try:
        port = server.port("smtp")
        send_smtp(port, text_message("Budget 2027", "first\r\n"), to=DEMO)  # <Budget.2027@remote.test>
        send_smtp(port, *(text_message(f"filler {n}", "x\r\n") for n in range(60)), to=DEMO)
        context = ssl.create_default_context(cafile=str(data.root / "tls" / "cert.pem"))
        with imaplib.IMAP4_SSL("localhost", server.port("imaps"), ssl_context=context, timeout=30) as imap:
            imap.login(DEMO, data.passwords[DEMO])
            own = reply_message("Re: Budget 2027", "own", ["Budget.2027"], sender=DEMO)
            assert imap.append("Sent", "(\\Seen)", None, own)[0] == "OK"
        send_smtp(port, reply_message("RE: Budget 2027", "late", ["Budget.2027", "own"]), to=DEMO)
        client = logged_in(data, server)
        box = inbox_path(client)
        first = client.get(box).text
        rows = re.findall(r'<li class="message-row[^"]*" data-uid="(\d+)">', first)
        assert len(rows) == 50
        assert listed_subjects(client, box)[0] == "RE: Budget 2027"  # the conversation, at its newest
        head = re.search(r'name="thread" value="(\d+)"', first)
        assert head is not None
        assert re.search(r'class="thread-count"[^>]*>3</span>', first)  # 2 in the Inbox, 1 in Sent
        assert "Budget 2027" not in listed_subjects(client, box)[1:]
        older = re.search(r'href="\?before=(\d+)" rel="next"', first)
        assert older is not None
        second = client.get(f"{box}?before={older.group(1)}").text
        subjects = re.findall(r'<span class="subject">([^<]*)</span>', second)
        assert len(subjects) == 11  # 61 conversations: the rest, without the Budget one again
        assert "Budget 2027" not in subjects
        assert 'rel="next"' not in second
        newer = re.search(r'href="\?after=(\d+)" rel="prev"', second)
        assert newer is not None
        back = client.get(f"{box}?after={newer.group(1)}").text
        assert re.findall(r'data-uid="(\d+)"', back) == rows
        # archive the conversation row: both Inbox messages go, the Sent copy stays
        token = client.csrf(client.get(box))
        archive = folder_path(client, first, "Archive")
        assert (
            client.post(
                f"{box}/act", {"csrf": token, "thread": head.group(1), "action": "archive", "back": box}
            ).status
            == 303
        )
        assert not any("Budget" in s for s in listed_subjects(client, box))
        assert sorted(listed_subjects(client, archive)) == ["RE: Budget 2027"]  # one row: the conversation
        assert len(re.findall(r'data-uid="\d+"', client.get(archive).text)) == 1
        assert client.post("/view", {"view": "flat", "back": archive}).status == 303
        assert sorted(listed_subjects(client, archive)) == ["Budget 2027", "RE: Budget 2027"]
        sent = folder_path(client, first, "Sent")
        assert listed_subjects(client, sent) == ["Re: Budget 2027"]
        # another account names demo's conversation in its own folder: nothing of demo's moves
        other = logged_in(data, server, OTHER)
        other_box = inbox_path(other)
        other_token = other.csrf(other.get(other_box))
        assert (
            other.post(
                f"{other_box}/act", {"csrf": other_token, "thread": head.group(1), "action": "delete"}
            ).status
            == 303
        )
        assert sorted(listed_subjects(client, archive)) == ["Budget 2027", "RE: Budget 2027"]
        # search results come 50 a page, newest first, with the way to the older ones and back
        first_results = client.get("/search?q=subject%3Afiller").text
        assert len(re.findall(r'class="message-row', first_results)) == 50
        assert "filler 59" in first_results
        assert 'href="/search?q=subject%3Afiller&page=2" rel="next"' in first_results
        second_results = client.get("/search?q=subject%3Afiller&page=2").text
        assert len(re.findall(r'class="message-row', second_results)) == 10
        assert "filler 0<" in second_results
        assert 'rel="next"' not in second_results
        assert 'href="/search?q=subject%3Afiller&page=1" rel="prev"' in second_results
        assert client.get("/search?q=subject%3Afiller&page=x").status == 200  # a bad page is the first
    finally:
        server.stop()
