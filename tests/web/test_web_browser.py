"""The webmail in a real browser (Debian's Chromium through Playwright): log in, read a plain, an HTML and a
Chinese message, a hostile HTML mail that must run and load nothing, the Chinese interface, a phone in dark
mode. Screenshots of the main screens go to build/screenshots/."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright import sync_api  # a test extra: missing, these tests fail rather than skip

from tests.integration.harness import DataDir, ServerProcess
from tests.support.mail import send_smtp, text_message
from tests.web.browser import SCREENSHOTS, Canary, launch

pytestmark = pytest.mark.integration


DEMO = "demo@example.test"


def hostile(canary: Canary) -> bytes:
    """A corpus of known sanitiser bypasses; every remote reference points at the canary."""
    c = canary.url
    svg = f'<svg xmlns="http://www.w3.org/2000/svg"><image href="{c("/data-svg")}"/></svg>'
    lines = [
        f'<html><head><base href="{c("/base/")}">',
        f'<meta http-equiv="refresh" content="0;url={c("/refresh")}">',
        f'<link rel="stylesheet" href="{c("/link.css")}">',
        f"<style>@import url({c('/import.css')}); body{{background:url({c('/bg')})}}</style>",
        f'<script src="{c("/script.js")}"></script><script>fetch("{c("/fetch")}");alert(1)</script></head>',
        '<body onload="alert(2)"><p>Hostile mail</p>',
        f'<img src="{c("/pixel.gif")}" width="1" height="1">',
        f'<img srcset="{c("/srcset.png")} 2x" src="data:,">',
        f'<p style="background-image:url({c("/style-url")});--x:url({c("/var")});',
        'background:var(--x)">styled</p>',
        '<svg><animate onbegin="alert(3)" attributeName="x" dur="1s"/>',
        f'<image href="{c("/svg-image")}"/></svg>',
        '<noscript><p title="</noscript><img src=x onerror=alert(4)>"></p></noscript>',
        f'<math><mtext><table><mglyph><style><img src="{c("/mxss")}" onerror="alert(5)">',
        f'<a href="javascript:alert(6)">click</a><iframe src="{c("/iframe")}"></iframe>',
        f'<object data="{c("/object")}"></object><embed src="{c("/embed")}">',
        f'<video poster="{c("/poster")}"></video><form action="{c("/form")}"><input name=x></form>',
        f'<img src="data:image/svg+xml;base64,{base64.b64encode(svg.encode()).decode()}">',
        "</body></html>",
    ]
    html = "\n".join(lines)
    return (
        b"From: Mallory <mallory@remote.test>\r\nTo: demo@example.test\r\nSubject: hostile html\r\n"
        b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <hostile@remote.test>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n" + html.encode()
    )


@pytest.fixture(scope="module")
def canary() -> Iterator[Canary]:
    server = Canary()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def mail(web_server: tuple[DataDir, ServerProcess], canary: Canary) -> tuple[DataDir, ServerProcess]:
    data, server = web_server
    port = server.port("smtp")
    send_smtp(
        port,
        text_message("Lunch on Friday?", "Hi,\r\n\r\nShall we have lunch on Friday at noon?\r\n\r\nAda\r\n"),
        text_message("Quarterly report", "The report is attached in spirit.\r\n"),
        hostile(canary),
        text_message("会议通知", "各位同事：\r\n\r\n明天上午十点在三楼会议室开会。\r\n\r\n张三\r\n"),
        to=DEMO,
    )
    return data, server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        instance = launch(playwright)
        try:
            yield instance
        finally:
            instance.close()


def new_page(browser: Any, server: ServerProcess, **options: Any) -> Any:
    context = browser.new_context(ignore_https_errors=True, **options)
    page = context.new_page()
    page.base = f"https://localhost:{server.port('https')}"
    return page


def shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=False)


def desktop(browser: Any, data: DataDir, server: ServerProcess) -> Any:
    """A logged-in page on a desktop-sized screen, in English."""
    page = new_page(browser, server, viewport={"width": 1280, "height": 800}, locale="en-US")
    log_in(page, data)
    return page


def start_message(page: Any, to: str, subject: str) -> None:
    page.click(".compose-button")
    page.fill("#to", to)
    page.fill("#subject", subject)


def send_and_open(page: Any, subject: str) -> None:
    """Send the message being written (to the account itself) and open it when it has arrived."""
    page.click("button.primary")
    page.wait_for_selector(".notice")
    page.locator(".message-row", has_text=subject).locator("a").click()
    page.wait_for_selector("article.reader")


def log_in(page: Any, data: DataDir, address: str = DEMO) -> None:
    page.goto(page.base + "/")
    page.fill("#username", address)
    page.fill("#password", data.passwords[address])
    page.click("button[type=submit]")
    page.wait_for_selector(".messages, .list-header ~ .empty")


def test_log_in_and_read_a_plain_message(browser: Any, mail: tuple[DataDir, ServerProcess]) -> None:
    data, server = mail
    page = new_page(browser, server, viewport={"width": 1280, "height": 800}, locale="en-US")
    page.goto(page.base + "/")
    assert page.url.endswith("/login")
    shot(page, "login-desktop-en")
    log_in(page, data)
    assert page.title().startswith("Inbox")
    rows = page.locator(".message-row")
    assert rows.count() >= 4
    assert page.locator(".message-row.unread").count() >= 4
    shot(page, "inbox-desktop-en")
    page.click("text=Lunch on Friday?")
    page.wait_for_selector(".reader")
    assert "Shall we have lunch on Friday at noon?" in page.inner_text(".mail-text")
    shot(page, "message-desktop-en")
    page.click(".reader-bar .back")
    row = page.locator(".message-row", has_text="Lunch on Friday?")
    assert "unread" not in (row.get_attribute("class") or "")
    page.context.close()


def test_a_hostile_html_mail_runs_nothing_and_loads_nothing(
    browser: Any, mail: tuple[DataDir, ServerProcess], canary: Canary
) -> None:
    data, server = mail
    page = new_page(browser, server, viewport={"width": 1280, "height": 800})
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    finished: list[str] = []  # requests that got an answer (blocked ones fail: CSP, sandbox)
    page.context.on("requestfinished", lambda request: finished.append(request.url))
    log_in(page, data)
    page.click("text=hostile html")
    frame_element = page.wait_for_selector("iframe.mail-html")
    frame = frame_element.content_frame()
    frame.wait_for_load_state("load")
    assert "Hostile mail" in frame.inner_text("body")
    page.wait_for_timeout(
        500
    )  # not a synchronisation: gives a would-be delayed load (meta refresh 0) its chance
    shot(page, "hostile-html-desktop")
    assert dialogs == []
    assert canary.hits == []
    assert not [url for url in finished if f":{canary.port}" in url]
    # the person allows this message's images: now (and only now) the pixel loads; still no script
    page.click(".images-blocked a")
    frame = page.wait_for_selector("iframe.mail-html").content_frame()
    frame.wait_for_load_state("load")
    page.wait_for_timeout(300)  # not a synchronisation: lets a late request show up before asserting
    assert "/pixel.gif" in canary.hits
    assert dialogs == []
    assert not [hit for hit in canary.hits if hit in ("/script.js", "/fetch", "/iframe", "/object", "/form")]
    page.context.close()


def test_the_chinese_interface_and_a_chinese_message(
    browser: Any, mail: tuple[DataDir, ServerProcess]
) -> None:
    data, server = mail
    page = new_page(browser, server, viewport={"width": 1280, "height": 800}, locale="zh-CN")
    page.goto(page.base + "/login")
    assert page.inner_text("h1") == "登录你的邮箱"
    shot(page, "login-desktop-zh")
    log_in(page, data)
    assert page.inner_text(".list-header h1") == "收件箱"
    assert page.locator(".folder", has_text="已发送").count() == 1
    shot(page, "inbox-desktop-zh")
    page.click("text=会议通知")
    page.wait_for_selector(".mail-text")
    assert "明天上午十点在三楼会议室开会。" in page.inner_text(".mail-text")
    page.context.close()


def test_a_phone_in_dark_mode(browser: Any, mail: tuple[DataDir, ServerProcess]) -> None:
    data, server = mail
    page = new_page(
        browser,
        server,
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        color_scheme="dark",
        locale="en-US",
    )
    log_in(page, data)
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background != "rgb(246, 247, 249)"  # the dark palette, not the light one
    assert not page.is_visible(".sidebar .folders") or page.evaluate(
        "document.querySelector('.sidebar').getBoundingClientRect().right <= 0"
    )
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390  # nothing wider than the phone
    shot(page, "inbox-phone-dark")
    page.click(".menu-toggle")
    page.locator(".sidebar.open").wait_for()
    page.wait_for_timeout(300)  # the slide-in transition (0.2 s), for the screenshot only
    shot(page, "folders-phone-dark")
    page.context.close()


def test_new_mail_appears_without_a_reload_and_shortcuts_work(
    browser: Any, mail: tuple[DataDir, ServerProcess]
) -> None:
    data, server = mail
    page = new_page(browser, server, viewport={"width": 1280, "height": 800}, locale="en-US")
    log_in(page, data)
    navigations: list[str] = []
    page.on(
        "framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None
    )
    before = page.locator(".message-row").count()
    title = page.title()
    send_smtp(server.port("smtp"), text_message("Arrived while you looked", "live\r\n"), to=DEMO)
    # within two seconds (the bound), without a reload
    page.locator(".message-row", has_text="Arrived while you looked").wait_for(timeout=2000)
    assert page.locator(".message-row").count() == before + 1
    assert page.title() != title  # the unread count in the title follows
    assert navigations == []
    page.keyboard.press("?")
    assert page.is_visible("#help")
    shot(page, "shortcuts-desktop-en")
    page.keyboard.press("Escape")
    assert not page.is_visible("#help")
    page.keyboard.press("j")
    assert "cursor" in (page.locator(".message-row").first.get_attribute("class") or "")
    page.keyboard.press("o")
    page.wait_for_selector(".reader")
    assert page.inner_text(".reader-subject") == "Arrived while you looked"
    page.context.close()


def test_write_with_an_attachment_receive_reply_search_move_and_delete(
    browser: Any, mail: tuple[DataDir, ServerProcess], tmp_path: Path
) -> None:
    data, server = mail
    page = new_page(browser, server, viewport={"width": 1280, "height": 800}, locale="en-US")
    log_in(page, data)
    attachment = tmp_path / "plan 计划.txt"
    attachment.write_text("step one\nstep two\n", encoding="utf-8")
    page.click(".compose-button")
    page.fill("#to", DEMO)  # to self: it comes back into the Inbox
    page.fill("#subject", "Browser round trip")
    page.fill("#body", "Written in the browser.")
    page.set_input_files("#attachments", str(attachment))
    shot(page, "compose-desktop-en")
    page.click("button.primary")
    page.wait_for_selector(".notice")
    assert "Message sent." in page.inner_text(".notice")
    row = page.locator(".message-row", has_text="Browser round trip")
    row.wait_for(timeout=5000)
    row.locator("a").click()
    page.wait_for_selector(".reader")
    assert "Written in the browser." in page.inner_text(".mail-text")
    assert page.inner_text(".attachments .file-name") == "plan 计划.txt"
    page.click("a.reply")
    page.wait_for_selector("#body")
    assert page.input_value("#subject") == "Re: Browser round trip"
    assert "> Written in the browser." in page.input_value("#body")
    page.fill("#body", "A reply.\n" + page.input_value("#body"))
    page.click("button.primary")
    page.wait_for_selector(".notice")
    conversation = page.locator(".message-row", has_text="Re: Browser round trip")
    conversation.wait_for(timeout=5000)
    # one row for the conversation: the original and the reply in the Inbox, both sent copies in Sent
    sync_api.expect(conversation.locator(".thread-count")).to_have_text("4")
    assert page.locator(".message-row", has_text="Browser round trip").count() == 1
    shot(page, "conversation-desktop-en")
    page.fill(".search input", "subject:round trip")
    page.keyboard.press("Enter")
    found = page.locator(".message-row .subject")
    sync_api.expect(found).to_have_count(2)
    subjects = found.all_inner_texts()
    assert sorted(subjects) == ["Browser round trip", "Re: Browser round trip"]
    page.goto(page.base + "/")
    page.wait_for_selector(".messages")
    page.locator(".message-row", has_text="Re: Browser round trip").locator("input.select").check()
    page.select_option(".move select", label="Archive")
    page.click("button[value=move]")
    # the whole conversation
    sync_api.expect(page.locator(".message-row", has_text="Browser round trip")).to_have_count(0)
    page.click(".folder:has-text('Archive')")
    page.locator(".message-row", has_text="Re: Browser round trip").wait_for()
    page.locator(".message-row", has_text="Re: Browser round trip").locator("input.select").check()
    page.click("button[value=delete]")
    page.click(".folder:has-text('Trash')")
    page.locator(".message-row", has_text="Re: Browser round trip").wait_for()
    page.context.close()


def test_a_draft_is_saved_while_typing_resumed_and_gone_once_sent(
    browser: Any, mail: tuple[DataDir, ServerProcess]
) -> None:
    data, server = mail
    page = new_page(browser, server, viewport={"width": 1280, "height": 800}, locale="en-US")
    log_in(page, data)
    page.click(".compose-button")
    page.fill("#to", "other@example.test")
    page.fill("#bcc", "third@example.test")
    page.fill("#subject", "Half-written")
    page.type("#body", "First thoughts")
    page.locator(".draft-status", has_text="Draft saved").wait_for(timeout=10000)
    draft_uid = page.locator("[name=draft_uid]")
    first = draft_uid.input_value()
    assert first.isdigit()
    page.type("#body", ", and more")  # saved again: the first version is replaced, not kept
    sync_api.expect(draft_uid).not_to_have_value(first, timeout=10000)
    page.click(".folder:has-text('Drafts')")
    page.locator(".message-row", has_text="Half-written").wait_for()
    assert page.locator(".message-row", has_text="Half-written").count() == 1
    page.locator(".message-row", has_text="Half-written").locator("a").click()
    page.click("a.edit-draft")
    page.wait_for_selector("#body")
    assert page.input_value("#subject") == "Half-written"
    assert page.input_value("#bcc") == "third@example.test"
    assert page.input_value("#body").startswith("First thoughts, and more")
    page.click("button.primary")
    page.wait_for_selector(".notice")
    page.click(".folder:has-text('Drafts')")
    sync_api.expect(page.locator(".message-row", has_text="Half-written")).to_have_count(0)
    page.context.close()


def test_formatted_text_from_the_editor_arrives_as_html(
    browser: Any, mail: tuple[DataDir, ServerProcess]
) -> None:
    page = desktop(browser, *mail)
    start_message(page, DEMO, "Formatted hello")
    page.check("input[name=format][value=html]")
    editor = page.locator(".editor")
    editor.click()
    page.keyboard.type("plain then ")
    page.click("button[data-command=bold]")
    page.keyboard.type("bold words")
    shot(page, "compose-formatted-desktop-en")
    send_and_open(page, "Formatted hello")
    frame = page.wait_for_selector("iframe.mail-html").content_frame()
    frame.wait_for_load_state("load")
    assert frame.inner_html("body").count("<b>bold words</b>") == 1
    page.context.close()


def test_files_dropped_on_the_form_are_sent_as_attachments(
    browser: Any, mail: tuple[DataDir, ServerProcess]
) -> None:
    page = desktop(browser, *mail)
    start_message(page, DEMO, "Dropped files")
    transfer = page.evaluate_handle(
        """() => { const t = new DataTransfer();
        t.items.add(new File(["x".repeat(300000)], "dropped one.bin", { type: "application/octet-stream" }));
        t.items.add(new File(["second"], "dropped two.txt", { type: "text/plain" }));
        return t; }"""
    )
    page.dispatch_event(".compose-form", "drop", {"dataTransfer": transfer})
    sync_api.expect(page.locator(".chosen-files li")).to_have_count(2)
    send_and_open(page, "Dropped files")
    names = page.locator(".attachments .file-name")
    sync_api.expect(names).to_have_text(["dropped one.bin", "dropped two.txt"])
    page.context.close()


def test_flags_and_expunges_by_an_imap_client_show_without_a_reload(
    browser: Any, mail: tuple[DataDir, ServerProcess]
) -> None:
    import imaplib
    import ssl

    data, server = mail
    send_smtp(
        server.port("smtp"),
        text_message("Changed over IMAP", "x\r\n"),
        text_message("Expunged over IMAP", "y\r\n"),
        to=DEMO,
    )
    page = new_page(browser, server, viewport={"width": 1280, "height": 800}, locale="en-US")
    log_in(page, data)
    changed = page.locator(".message-row", has_text="Changed over IMAP")
    assert "unread" in (changed.get_attribute("class") or "")
    context = ssl.create_default_context(cafile=str(data.root / "tls" / "cert.pem"))
    with imaplib.IMAP4_SSL("localhost", server.port("imaps"), ssl_context=context, timeout=30) as imap:
        imap.login(DEMO, data.passwords[DEMO])
        imap.select("INBOX")
        _, found = imap.uid("SEARCH", "SUBJECT", '"Changed over IMAP"')
        imap.uid("STORE", found[0].split()[0], "+FLAGS", "(\\Seen \\Flagged)")
        _, found = imap.uid("SEARCH", "SUBJECT", '"Expunged over IMAP"')
        imap.uid("STORE", found[0].split()[0], "+FLAGS", "(\\Deleted)")
        imap.expunge()
    # within two seconds, without a reload
    page.locator(".message-row:not(.unread)", has_text="Changed over IMAP").wait_for(timeout=2000)
    page.locator(".message-row", has_text="Changed over IMAP").locator(".marker.flagged").wait_for(
        timeout=2000
    )
    page.locator(".message-row", has_text="Expunged over IMAP").wait_for(state="detached", timeout=2000)
    page.context.close()


def test_screenshots_are_written(mail: tuple[DataDir, ServerProcess]) -> None:
    assert isinstance(SCREENSHOTS, Path)


def test_settings_in_english_and_chinese_on_a_desktop_and_a_phone(
    browser: Any, mail: tuple[DataDir, ServerProcess]
) -> None:
    """The settings page: the mail-program settings of the running listeners, the profile download, the
    password form a password manager understands, the signed-in browsers."""
    data, server = mail
    page = desktop(browser, data, server)
    page.click("a.settings-link")
    page.wait_for_selector(".settings")
    assert page.inner_text(".settings h1") == "Settings"
    rows = page.locator("#programs .server-table tbody tr")
    assert rows.count() == 6
    assert str(server.port("imaps")) in rows.first.inner_text()
    assert page.get_attribute("#current-password", "autocomplete") == "current-password"
    assert page.get_attribute("#new-password", "autocomplete") == "new-password"
    assert page.locator(".this-session").count() == 1
    with page.expect_download() as download:
        page.click("a[href='/settings/profile.mobileconfig']")
    assert download.value.suggested_filename == "example.test.mobileconfig"
    shot(page, "settings-desktop-en")
    page.context.close()
    phone = new_page(
        browser, server, viewport={"width": 390, "height": 844}, locale="zh-CN", color_scheme="dark"
    )
    log_in(phone, data)
    phone.goto(phone.base + "/settings")
    phone.wait_for_selector(".settings")
    assert phone.inner_text(".settings h1") == "设置"
    assert "修改密码" in phone.inner_text("#password")
    overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0  # nothing wider than the phone
    shot(phone, "settings-phone-zh-dark")
    phone.context.close()


def test_admin_pages_for_an_administrator_in_english_and_chinese(
    browser: Any, mail: tuple[DataDir, ServerProcess]
) -> None:
    """The admin pages as an administrator sees them (the role granted on the command line, seen at the next
    request): status, accounts (a new one with a generated password shown once), domains, aliases, queue; a
    phone in Chinese."""
    from tests.integration.harness import cli

    data, server = mail
    page = desktop(browser, data, server)
    page.goto(page.base + "/admin")
    assert "403" in page.inner_text("main")  # not an administrator yet
    cli("user", "admin", "grant", DEMO, config=data.config)
    try:
        page.goto(page.base + "/settings")
        page.click("a.admin-link")
        page.wait_for_selector(".admin-nav")
        assert page.inner_text(".admin h1") == "Administration"
        assert page.locator(".facts dt", has_text="Version").count() == 1
        shot(page, "admin-status-desktop-en")
        page.click(".admin-nav a[href='/admin/accounts']")
        page.fill("input[name=address][type=email]", "new.person@example.test")
        page.click("button[value=add]")
        secret = page.locator(".generated .secret")
        secret.wait_for()
        assert len(secret.inner_text()) == 20
        assert page.locator(".account-row[data-address='new.person@example.test']").count() == 1
        shot(page, "admin-accounts-desktop-en")
        page.click(".admin-nav a[href='/admin/aliases']")
        page.fill("input[name=source][type=text]", "team@example.test")
        page.fill("input[name=targets]", "demo@example.test, new.person@example.test")
        page.click("button[value=add]")
        page.locator(".alias-row", has_text="team@example.test").wait_for()
        page.click(".admin-nav a[href='/admin/domains']")
        sync_api.expect(page.locator(".domain-row", has_text="example.test")).to_have_count(1)
        page.click(".admin-nav a[href='/admin/queue']")
        page.wait_for_selector(".admin .empty")
        page.context.close()
        phone = new_page(browser, server, viewport={"width": 390, "height": 844}, locale="zh-CN")
        log_in(phone, data)
        phone.goto(phone.base + "/admin/accounts")
        phone.wait_for_selector(".admin-nav")
        assert phone.inner_text(".admin h1") == "管理"
        assert phone.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
        shot(phone, "admin-accounts-phone-zh")
        phone.context.close()
    finally:
        cli("user", "admin", "revoke", DEMO, config=data.config, check=False)


def test_two_step_login_enrolled_with_a_computed_code_and_an_app_password_used_by_imap(
    browser: Any, mail: tuple[DataDir, ServerProcess]
) -> None:
    """Turn on TOTP the way a person does (the key from the page into an "app": here the code computed from
    it), keep the recovery codes, make an app password and log in with it from a real IMAP client while the
    password alone is refused there; then the browser login asks for a code (on a phone, in Chinese)."""
    import imaplib
    import re
    import ssl
    import time

    from postoffice.auth import factors
    from tests.integration.harness import cli

    data, server = mail
    third = "third@example.test"
    page = new_page(browser, server, viewport={"width": 1280, "height": 900}, locale="en-US")
    log_in(page, data, third)
    try:
        page.goto(page.base + "/settings#security")
        page.click("#two-factor-on")
        page.wait_for_selector(".qr svg")
        secret = page.inner_text("#totp-secret").replace(" ", "")
        shot(page, "two-factor-enrol-desktop-en")
        page.fill("#totp-code", factors.totp_code(secret, factors.totp_step(time.time())))
        page.fill("#totp-password", data.passwords[third])
        page.click("button.primary")
        page.wait_for_selector("#recovery-codes")
        assert page.locator("#recovery-codes li").count() == 10
        shot(page, "two-factor-recovery-codes-desktop-en")
        page.click("a.primary")
        page.fill("#app-password-name", "Thunderbird")
        page.fill("#app-password-password", data.passwords[third])
        page.click("#app-passwords ~ form button[type=submit]")
        app_password = page.inner_text("#new-app-password")
        assert re.fullmatch(r"[a-z0-9]{4}( [a-z0-9]{4}){3}", app_password)
        context = ssl.create_default_context(cafile=str(data.root / "tls" / "cert.pem"))
        with imaplib.IMAP4_SSL("localhost", server.port("imaps"), ssl_context=context, timeout=30) as imap:
            assert imap.login(third, app_password)[0] == "OK"
            assert imap.select("INBOX")[0] == "OK"
        with (
            imaplib.IMAP4_SSL("localhost", server.port("imaps"), ssl_context=context, timeout=30) as imap,
            pytest.raises(imaplib.IMAP4.error),
        ):
            imap.login(third, data.passwords[third])
        page.goto(page.base + "/settings#security")
        assert "Thunderbird" in page.inner_text(".app-passwords")
        assert "IMAP" in page.inner_text(".app-passwords")  # its last use
        assert "app password Thunderbird" in page.inner_text(".logins")
        page.locator("#security").screenshot(path=str(SCREENSHOTS / "settings-security-desktop-en.png"))
        page.context.close()

        phone = new_page(browser, server, viewport={"width": 390, "height": 844}, locale="zh-CN")
        phone.goto(phone.base + "/")
        phone.fill("#username", third)
        phone.fill("#password", data.passwords[third])
        phone.click("button[type=submit]")
        phone.wait_for_selector("#code")
        assert phone.inner_text("h1") == "输入验证码"
        shot(phone, "login-code-phone-zh")
        phone.fill("#code", factors.totp_code(secret, factors.totp_step(time.time()) + 1))
        phone.click("button[type=submit]")
        phone.wait_for_selector(".messages, .list-header ~ .empty")
        phone.context.close()
    finally:
        cli("user", "two-factor-off", third, config=data.config)


def test_an_identity_with_a_signature_is_offered_when_writing(
    browser: Any, mail: tuple[DataDir, ServerProcess]
) -> None:
    data, server = mail
    page = new_page(browser, server, viewport={"width": 1280, "height": 900}, locale="en-US")
    log_in(page, data, "other@example.test")
    page.goto(page.base + "/settings#identities")
    form = page.locator("#new-identity")
    form.locator("input[name=name]").fill("Other Person")
    form.locator("textarea[name=signature]").fill("Other Person\nPostoffice tester")
    form.locator("button[type=submit]").click()
    page.locator(".identity summary", has_text="Other Person").wait_for()
    page.locator("#identities").screenshot(path=str(SCREENSHOTS / "settings-identities-desktop-en.png"))
    page.goto(page.base + "/compose")
    assert page.locator("#identity option:checked").inner_text() == "Other Person <other@example.test>"
    assert page.input_value("#body").endswith("-- \nOther Person\nPostoffice tester\n")
    page.context.close()
