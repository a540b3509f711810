"""The admin page of DNS records (/admin/dns, docs/decisions/0051) against a real server whose resolver is a
DNS server on loopback: the records to publish with the ports the listeners are bound to, "Check now" with
each record right, missing or wrong and what was found, in English and Chinese; 404 for a domain not
served. (The 403 for accounts without the admin role is in test_web_admin.py, with every admin URL.)"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.integration.harness import DataDir, ServerProcess, cli, make_data_dir
from tests.support.dns_server import DnsServer, Zones
from tests.web.client import WebClient
from tests.web.conftest import grant_admin, set_settings

pytestmark = pytest.mark.integration

DEMO = "demo@example.test"
ZONES = Zones()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DataDir, ServerProcess]]:
    with DnsServer(ZONES) as dns_server:
        data = make_data_dir(tmp_path_factory.mktemp("admin-dns") / "data", users=("demo",))
        set_settings(data, "auth", failure_delay=0.0)
        set_settings(data, "queue", nameservers=["127.0.0.1"], dns_port=dns_server.port)

        grant_admin(data, DEMO)
        process = ServerProcess(data).start()
        try:
            yield data, process
        finally:
            process.stop()


def dkim_records(data: DataDir, algorithm: str) -> list[tuple[str, str, str]]:
    """The DKIM records of example.test's keys of `algorithm`, from `postoffice dkim records`."""
    printed = cli("dkim", "records", "example.test", config=data.config)
    lines = [line.split(None, 3) for line in printed.splitlines() if line and not line.startswith(";")]
    return [(name, kind, value) for name, _in, kind, value in lines if f"k={algorithm};" in value]


def admin_client(data: DataDir, process: ServerProcess) -> WebClient:
    client = WebClient.of(process, data)
    assert client.login(DEMO, data.passwords[DEMO]).status == 303
    return client


def rows(page: str) -> dict[tuple[str, str], str]:
    """(name, type) -> status of every record row on the page."""
    found = re.findall(
        r'<tr class="dns-row" data-name="([^"]+)" data-type="([^"]+)" data-status="([^"]+)"', page
    )
    return {(name, kind): status for name, kind, status in found}


def test_the_page_lists_the_records_with_the_bound_ports(server: tuple[DataDir, ServerProcess]) -> None:
    data, process = server
    page = admin_client(data, process).get("/admin/dns")
    assert page.status == 200
    text = page.text
    assert 'href="/admin/dns" aria-current="page"' in text
    assert "<code>10 localhost.</code>" in text
    assert f"<code>0 1 {process.port('imaps')} localhost.</code>" in text
    assert f"<code>10 1 {process.port('submission')} localhost.</code>" in text
    assert "<code>&#34;v=spf1 mx ~all&#34;</code>" in text
    listed = rows(text)
    assert listed[("example.test.", "MX")] == "unchecked"
    assert listed[("_autodiscover._tcp.example.test.", "SRV")] == "unchecked"
    # the DKIM keys `init` made (docs/decisions/0056)
    dkim = sorted(
        name for name, kind in listed if name.endswith("._domainkey.example.test.") and kind == "TXT"
    )
    assert len(dkim) == 2
    assert all(listed[(name, "TXT")] == "unchecked" for name in dkim)
    assert "&#34;v=DKIM1; k=ed25519; p=" in text
    assert "DKIM: the RSA key that signs the domain&#39;s mail now (RFC 6376)." in text
    # MTA-STS (RFC 8461) and TLS reporting (RFC 8460): the policy the https listener serves
    assert listed[("_mta-sts.example.test.", "TXT")] == "unchecked"
    assert listed[("mta-sts.example.test.", "CNAME")] == "unchecked"
    assert listed[("_smtp._tls.example.test.", "TXT")] == "unchecked"
    assert "MTA-STS (RFC 8461), mode testing; the id changes whenever the policy does." in text
    assert "not yet" not in text
    assert "Mail for the domain is delivered to this server (RFC 5321 section 5.1)." in text


def test_check_now_marks_each_record_right_missing_or_wrong(server: tuple[DataDir, ServerProcess]) -> None:
    data, process = server
    for record in [
        ("example.test.", "MX", "10 localhost."),
        ("example.test.", "TXT", '"v=spf1 mx ~all"'),
        ("example.test.", "TXT", '"v=spf1 a ~all"'),
        ("_imaps._tcp.example.test.", "SRV", f"0 1 {process.port('imaps')} localhost."),
        ("_submissions._tcp.example.test.", "SRV", "0 1 465 localhost."),  # the standard port, not ours
        ("autoconfig.example.test.", "CNAME", "localhost."),
        ("localhost.", "A", "127.0.0.1"),
        *dkim_records(data, "ed25519"),  # the Ed25519 key as `postoffice dkim records` prints it
    ]:
        ZONES.add(*record)
    admin = admin_client(data, process)
    page = admin.get("/admin/dns?domain=example.test&check=1")
    assert page.status == 200
    checked = rows(page.text)
    assert checked[("example.test.", "MX")] == "ok"
    assert checked[("autoconfig.example.test.", "CNAME")] == "ok"
    assert checked[("_imaps._tcp.example.test.", "SRV")] == "ok"
    assert checked[("example.test.", "TXT")] == "wrong"
    assert checked[("_submissions._tcp.example.test.", "SRV")] == "wrong"
    assert checked[("_dmarc.example.test.", "TXT")] == "missing"
    assert checked[("autodiscover.example.test.", "CNAME")] == "missing"
    dkim = {
        name: status for (name, kind), status in checked.items() if name.endswith("._domainkey.example.test.")
    }
    assert sorted(dkim.values()) == ["missing", "ok"]  # the RSA key is not in DNS, the Ed25519 one is
    assert (
        "Several SPF records: receivers treat that as a permanent error (RFC 7208 section 3.2)." in page.text
    )
    assert "found: <code>0 1 465 localhost.</code>" in page.text
    assert f"Expected localhost port {process.port('submissions')}." in page.text
    assert "Some records are missing or wrong." in page.text
    # the same page in Chinese
    chinese = admin.get("/admin/dns?domain=example.test&check=1", headers={"Accept-Language": "zh-CN"}).text
    assert "立即检查" in chinese
    assert "有多条 SPF 记录" in chinese
    assert "缺失" in chinese


def test_a_domain_not_served_is_404(server: tuple[DataDir, ServerProcess]) -> None:
    data, process = server
    admin = admin_client(data, process)
    assert admin.get("/admin/dns?domain=nowhere.test&check=1").status == 404
    assert admin.get("/admin/dns?domain=not%20a%20domain").status == 404


def test_the_page_in_a_browser_after_a_check_on_a_desktop_and_a_phone(
    server: tuple[DataDir, ServerProcess],
) -> None:
    """How an administrator sees it (screenshots for docs/): after "Check now", with records right, wrong
    and missing; nothing wider than a phone."""
    from playwright import sync_api

    from tests.web.browser import SCREENSHOTS, launch

    data, process = server
    ZONES.add("example.test.", "MX", "10 localhost.")
    ZONES.add("_imap._tcp.example.test.", "SRV", f"10 1 {process.port('imap')} localhost.")
    base = f"https://localhost:{process.port('https')}"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            for name, viewport, locale in (
                ("admin-dns-desktop-en", {"width": 1280, "height": 900}, "en-US"),
                ("admin-dns-phone-zh", {"width": 390, "height": 844}, "zh-CN"),
            ):
                page = browser.new_context(
                    ignore_https_errors=True, viewport=viewport, locale=locale
                ).new_page()
                page.goto(base + "/login")
                page.fill("#username", DEMO)
                page.fill("#password", data.passwords[DEMO])
                page.click("button[type=submit]")
                page.wait_for_url(re.compile(r".*/box/\d+"))
                page.goto(base + "/admin/dns")
                page.locator(".dns-domain button.primary").click()
                page.wait_for_selector(".dns-summary")
                mx = page.locator(".dns-row[data-name='example.test.'][data-type='MX']")
                assert mx.get_attribute("data-status") == "ok"
                dmarc = page.locator(".dns-row[data-name='_dmarc.example.test.'][data-type='TXT']")
                assert dmarc.get_attribute("data-status") == "missing"
                assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
                page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=False)
                page.context.close()
        finally:
            browser.close()
