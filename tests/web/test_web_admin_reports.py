"""Reports other servers send about our domains (docs/decisions/0058), end to end against a real server: DMARC
aggregate reports (RFC 9990) and SMTP TLS reports (RFC 8460) mailed over port 25 to postmaster@ are read and
kept as summaries, which `postoffice reports list|show` and the admin page Reports (/admin/reports, one
report at /admin/reports/ID) show; the message that carried them is stored \\Seen, in the account's
"Reports" folder when it has one, while other mail to postmaster stays unread in INBOX; a report sent twice
is kept once. The pages in a real browser, on a desktop and a phone, in English and Chinese (screenshots in
build/screenshots)."""

from __future__ import annotations

import dataclasses
import datetime
import imaplib
import re
import smtplib
import ssl
import time
import zipfile
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from io import BytesIO
from pathlib import Path
from typing import TypeVar

import pytest

from postoffice.mailauth.dmarc_reports import (
    AggregateReport,
    DkimAuth,
    PolicyEvaluated,
    PolicyPublished,
    ReportRecord,
    SpfAuth,
)
from postoffice.mailauth.report_mail import dmarc_report_message, tlsrpt_report_message
from postoffice.mailauth.tlsrpt import FailureDetail, PolicyResult, TlsPolicy, TlsReport
from tests.integration.harness import DataDir, ServerProcess, cli, make_data_dir
from tests.support.mail import text_message
from tests.web.client import WebClient
from tests.web.conftest import grant_admin, set_settings

pytestmark = pytest.mark.integration

T = TypeVar("T")

DEMO, OTHER, KEEPER = "demo@example.test", "other@example.test", "keeper@example.test"
POSTMASTER = "postmaster@example.test"
#: a second domain whose postmaster is KEEPER, who has a "Reports" folder (the first domain's has none)
KEPT_POSTMASTER = "postmaster@second.test"
DEADLINE = 30.0
DATE = datetime.datetime(2024, 3, 2, 6, 30, tzinfo=datetime.UTC)
SAMPLES = Path(__file__).parent.parent / "mailauth" / "data" / "reports"

#: A reporter's DMARC report about example.test: one source that authenticates, one that does not.
DMARC = AggregateReport(
    org_name="mail.receiver.example",
    email="dmarc-reports@receiver.example",
    report_id="1709251200.example.test@receiver.example",
    begin=1709251200,  # 2024-03-01 00:00:00 UTC
    end=1709337599,
    policy=PolicyPublished(domain="example.test", p="none", adkim="r", aspf="r"),
    records=(
        ReportRecord(
            source_ip="192.0.2.10",
            count=12,
            evaluated=PolicyEvaluated("none", "pass", "pass"),
            header_from="example.test",
            envelope_from="example.test",
            dkim=(DkimAuth("example.test", "po2024e", "pass"),),
            spf=(SpfAuth("example.test", "pass"),),
        ),
        ReportRecord(
            source_ip="203.0.113.66",
            count=3,
            evaluated=PolicyEvaluated("none", "fail", "fail"),
            header_from="example.test",
            envelope_from="bulk.example",
            spf=(SpfAuth("bulk.example", "pass"),),
        ),
    ),
)
#: A TLS report about mail to example.test: under its MTA-STS policy 40 sessions encrypted, 2 refused for an
#: expired certificate; 5 more (before the policy was known) without one.
TLS = TlsReport(
    organization_name="Sender Mail Inc.",
    start=datetime.datetime(2024, 3, 1, tzinfo=datetime.UTC),
    end=datetime.datetime(2024, 3, 1, 23, 59, 59, tzinfo=datetime.UTC),
    contact_info="tlsrpt@sender.example",
    report_id="2024-03-01.example.test@sender.example",
    policies=(
        PolicyResult(
            policy=TlsPolicy(
                policy_type="sts",
                policy_domain="example.test",
                policy_strings=("version: STSv1", "mode: enforce", "mx: localhost", "max_age: 86400"),
                mx_hosts=("localhost",),
            ),
            total_successful_session_count=40,
            total_failure_session_count=2,
            failure_details=(
                FailureDetail(
                    result_type="certificate-expired",
                    failed_session_count=2,
                    sending_mta_ip="198.51.100.7",
                    receiving_mx_hostname="localhost",
                    receiving_ip="127.0.0.1",
                ),
            ),
        ),
        PolicyResult(
            policy=TlsPolicy(policy_type="no-policy-found", policy_domain="example.test"),
            total_successful_session_count=5,
            total_failure_session_count=0,
        ),
    ),
)
PLAIN_SUBJECT = "A question for the postmaster"


def dmarc_mail(report: AggregateReport = DMARC, to: str = POSTMASTER) -> bytes:
    return dmarc_report_message(
        report, from_address=report.email, to_address=to, submitter="receiver.example", date=DATE
    )


def tls_mail(report: TlsReport = TLS, to: str = POSTMASTER) -> bytes:
    return tlsrpt_report_message(
        report, from_address="tlsrpt@sender.example", to_address=to, submitter="sender.example", date=DATE
    )


def google_style_zip_mail(subject: str) -> bytes:
    """The RFC 7489 form as a large reporter sends it (tests/mailauth/data/reports), about example.test,
    zipped, as application/zip: the only part of an otherwise empty message."""
    xml = (SAMPLES / "rfc7489-google-style.xml").read_bytes().replace(b"example.org", b"example.test")
    archive = BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("google.com!example.test!1706832000!1706918399.xml", xml)
    message = EmailMessage()
    message["From"] = "noreply-dmarc-support@google.com"
    message["To"] = POSTMASTER
    message["Subject"] = subject
    message["Message-ID"] = "<5717107811868587391@google.com>"
    message.add_attachment(
        archive.getvalue(),
        maintype="application",
        subtype="zip",
        filename="google.com!example.test!1706832000!1706918399.zip",
    )
    return message.as_bytes()


def send(
    process: ServerProcess, message: bytes, to: str = POSTMASTER, sender: str = "reports@remote.test"
) -> None:
    """One message over port 25 (the 250 comes after the store's commit)."""
    with smtplib.SMTP("127.0.0.1", process.port("smtp"), timeout=60) as smtp:
        smtp.sendmail(sender, [to], message)


def wait_for(what: str, check: Callable[[], T | None], deadline: float = DEADLINE) -> T:
    """Poll `check` until it returns something true (bounded); the value."""
    end = time.monotonic() + deadline
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def imap(data: DataDir, process: ServerProcess, address: str) -> imaplib.IMAP4_SSL:
    context = ssl.create_default_context(cafile=str(data.root / "tls" / "cert.pem"))
    client = imaplib.IMAP4_SSL("localhost", process.port("imaps"), ssl_context=context, timeout=30)
    client.login(address, data.passwords[address])
    return client


def mailbox(
    data: DataDir, process: ServerProcess, address: str, name: str = "INBOX"
) -> list[tuple[str, set[str]]]:
    """(Subject, stored flags: not the session's \\Recent) of every message in the mailbox, read without
    changing a flag (EXAMINE)."""
    client = imap(data, process, address)
    try:
        status, counts = client.select(name, readonly=True)
        assert status == "OK", counts
        if int(counts[0] or 0) == 0:
            return []
        status, fetched = client.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert status == "OK"
        found = []
        for item in fetched:
            if not isinstance(item, tuple):
                continue
            flags = re.search(rb"FLAGS \(([^)]*)\)", item[0])
            assert flags is not None, item[0]
            subject = re.sub(rb"\r\n[ \t]+", b" ", item[1]).decode().strip().removeprefix("Subject: ")
            found.append((subject, set(flags.group(1).decode().split()) - {"\\Recent"}))
        return found
    finally:
        client.logout()


def listed(data: DataDir, *options: str) -> dict[str, list[str]]:
    """`postoffice reports list` as {ID: [KIND, DOMAIN, FROM, PERIOD, MESSAGES]} (the columns are two spaces
    apart; a FROM may hold single spaces)."""
    printed = cli("reports", "list", *options, config=data.config)
    lines = printed.splitlines()
    if lines == ["no reports received"]:
        return {}
    assert re.split(r"\s{2,}", lines[0]) == ["ID", "KIND", "DOMAIN", "FROM", "PERIOD", "MESSAGES"], printed
    rows = [re.split(r"\s{2,}", line) for line in lines[1:]]
    return {row[0]: row[1:] for row in rows}


def report_id_of(data: DataDir, reporter: str) -> str:
    """The id `reports list` gives the one report of `reporter`, once it is there."""

    def find() -> str | None:
        ids = [id_ for id_, row in listed(data).items() if row[2] == reporter]
        assert len(ids) <= 1, ids
        return ids[0] if ids else None

    return wait_for(f"the report of {reporter}", find)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DataDir, ServerProcess]]:
    data = make_data_dir(tmp_path_factory.mktemp("admin-reports") / "data", users=("demo", "other", "keeper"))
    set_settings(data, "auth", failure_delay=0.0)
    # RFC 5321 section 4.5.1: the first account of a domain gets its postmaster@ (an alias)
    assert f"{POSTMASTER} -> {DEMO}" in cli("alias", "list", config=data.config)
    cli("domain", "add", "second.test", config=data.config)
    cli("alias", "add", KEPT_POSTMASTER, KEEPER, config=data.config)
    grant_admin(data, DEMO)
    process = ServerProcess(data).start()
    try:
        yield data, process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def delivered(server: tuple[DataDir, ServerProcess]) -> dict[str, str]:
    """The DMARC report, the TLS report and a message that is no report, sent to postmaster@example.test;
    {"dmarc": ID, "tls": ID} as `reports list` numbers them."""
    data, process = server
    send(process, dmarc_mail())
    send(process, tls_mail())
    send(process, text_message(PLAIN_SUBJECT, to=POSTMASTER))
    return {"dmarc": report_id_of(data, DMARC.org_name), "tls": report_id_of(data, TLS.organization_name)}


def admin_client(data: DataDir, process: ServerProcess, address: str = DEMO) -> WebClient:
    client = WebClient.of(process, data)
    assert client.login(address, data.passwords[address]).status == 303
    return client


def page_rows(page: str) -> dict[str, str]:
    """data-id -> the row's text, of the list's rows."""
    found = re.findall(r'<tr class="report-row[^"]*" data-id="(\d+)">(.*?)</tr>', page, re.S)
    return {id_: re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row)).strip() for id_, row in found}


# -- the command line --------------------------------------------------------------------------------------


def test_reports_list_prints_both_reports_with_their_counts(
    server: tuple[DataDir, ServerProcess], delivered: dict[str, str]
) -> None:
    data, _process = server
    rows = listed(data)
    assert rows[delivered["dmarc"]] == [
        "DMARC",
        "example.test",
        "mail.receiver.example",
        "2024-03-01",
        "12 pass, 3 fail",
    ]
    assert rows[delivered["tls"]] == [
        "TLS",
        "example.test",
        "Sender Mail Inc.",
        "2024-03-01",
        "45 ok, 2 failed",
    ]
    assert list(listed(data, "--kind", "dmarc")) == [
        id_ for id_, row in rows.items() if row[0] == "DMARC"
    ]  # newest first, like the whole list
    assert delivered["tls"] in listed(data, "--kind", "tls")
    assert listed(data, "--kind", "tlsrpt") == listed(data, "--kind", "tls")  # the web page's name too
    assert delivered["dmarc"] not in listed(data, "--kind", "tls")
    assert delivered["dmarc"] in listed(data, "--domain", "example.test", "--limit", "100")
    assert listed(data, "--domain", "nowhere.test") == {}
    assert len(listed(data, "--limit", "1")) == 1


def test_reports_show_prints_the_sources_and_the_failures(
    server: tuple[DataDir, ServerProcess], delivered: dict[str, str]
) -> None:
    data, _process = server
    dmarc = cli("reports", "show", delivered["dmarc"], config=data.config).splitlines()
    assert dmarc[0] == f"DMARC aggregate report {DMARC.report_id}"
    assert dmarc[1] == "  from mail.receiver.example, about example.test, 2024-03-01"
    assert dmarc[2] == "  policy p=none; 12 pass, 3 fail"
    table = [line.split() for line in dmarc[3:]]
    assert table == [
        ["SOURCE", "COUNT", "DISPOSITION", "DKIM", "SPF", "FROM"],
        ["192.0.2.10", "12", "none", "pass", "pass", "example.test"],
        ["203.0.113.66", "3", "none", "fail", "fail", "example.test"],
    ]
    tls = cli("reports", "show", delivered["tls"], config=data.config).splitlines()
    assert tls == [
        f"TLS report {TLS.report_id}",
        "  from Sender Mail Inc., about example.test, 2024-03-01",
        "  policy sts for example.test: 40 ok, 2 failed",
        "    2 x certificate-expired at localhost [127.0.0.1]",
        "  policy no-policy-found for example.test: 5 ok, 0 failed",
    ]


# -- the mailbox -------------------------------------------------------------------------------------------


def test_report_messages_are_stored_read_and_other_mail_to_postmaster_unread(
    server: tuple[DataDir, ServerProcess], delivered: dict[str, str]
) -> None:
    data, process = server
    inbox = mailbox(data, process, DEMO)
    dmarc = [flags for subject, flags in inbox if f"Report-ID: <{DMARC.report_id}>" in subject]
    tls = [flags for subject, flags in inbox if f"Report-ID: <{TLS.report_id}>" in subject]
    plain = [flags for subject, flags in inbox if subject == PLAIN_SUBJECT]
    assert dmarc, inbox
    assert all("\\Seen" in flags for flags in dmarc), inbox
    assert tls, inbox
    assert all("\\Seen" in flags for flags in tls), inbox
    assert plain == [set()], inbox  # no report in it: delivered as any other mail
    # a message that is no report to someone else is not read for reports, nor is a report to someone else
    send(process, dmarc_mail(to=OTHER), to=OTHER)
    assert [flags for subject, flags in mailbox(data, process, OTHER) if "Report-ID" in subject] == [set()]


def test_with_a_reports_folder_new_reports_go_there(server: tuple[DataDir, ServerProcess]) -> None:
    data, process = server
    client = imap(data, process, KEEPER)
    try:
        status, reply = client.create("Reports")
        assert status == "OK", reply
    finally:
        client.logout()
    report = AggregateReport(
        org_name="folder.receiver.example",
        email="dmarc@folder.receiver.example",
        report_id="1709251200.second.test@folder.receiver.example",
        begin=DMARC.begin,
        end=DMARC.end,
        policy=PolicyPublished(domain="second.test", p="quarantine"),
        records=(
            ReportRecord("192.0.2.20", 5, PolicyEvaluated("pass", "pass", "pass"), header_from="second.test"),
        ),
    )
    send(process, dmarc_mail(report, to=KEPT_POSTMASTER), to=KEPT_POSTMASTER)
    send(process, text_message("Not a report either", to=KEPT_POSTMASTER), to=KEPT_POSTMASTER)
    filed = mailbox(data, process, KEEPER, "Reports")
    assert [flags for _subject, flags in filed] == [{"\\Seen"}], filed
    assert f"Report-ID: <{report.report_id}>" in filed[0][0]
    assert mailbox(data, process, KEEPER) == [("Not a report either", set())]
    assert listed(data, "--domain", "second.test")[report_id_of(data, report.org_name)][3:] == [
        "2024-03-01",
        "5 pass, 0 fail",
    ]


def test_the_same_report_sent_twice_is_kept_once(server: tuple[DataDir, ServerProcess]) -> None:
    """Reporters often send a report twice: both messages are delivered (read), the summary is kept once.
    The report is Google's shape: RFC 7489 XML, zipped, in an application/zip part."""
    data, process = server
    subject = "Report domain: example.test Submitter: google.com Report-ID: 5717107811868587391"
    send(process, google_style_zip_mail(subject))
    send(process, google_style_zip_mail(subject))
    found = report_id_of(data, "google.com")  # asserts that there is one
    assert listed(data)[found] == ["DMARC", "example.test", "google.com", "2024-02-02", "2 pass, 1 fail"]
    copies = [flags for s, flags in mailbox(data, process, DEMO) if s == subject]
    assert copies == [{"\\Seen"}, {"\\Seen"}]


def test_reports_send_with_nothing_counted_queues_nothing(server: tuple[DataDir, ServerProcess]) -> None:
    data, _process = server
    assert cli("reports", "send", config=data.config) == "0 reports queued\n"


# -- the admin page ----------------------------------------------------------------------------------------


def test_only_an_administrator_sees_the_reports(
    server: tuple[DataDir, ServerProcess], delivered: dict[str, str]
) -> None:
    data, process = server
    paths = ["/admin/reports", "/admin/reports?kind=dmarc", f"/admin/reports/{delivered['dmarc']}"]
    visitor = WebClient.of(process, data)
    for path in paths:
        reply = visitor.get(path)
        assert reply.status == 303, path
        assert reply.header("location").startswith("/login"), path
    other = admin_client(data, process, OTHER)
    for path in paths:
        assert other.get(path).status == 403, path
    assert "/admin/reports" not in other.get("/settings").text
    assert 'href="/admin/reports"' in admin_client(data, process).get("/admin").text


def test_the_page_lists_the_reports_and_filters_by_kind(
    server: tuple[DataDir, ServerProcess], delivered: dict[str, str]
) -> None:
    data, process = server
    admin = admin_client(data, process)
    page = admin.get("/admin/reports")
    assert page.status == 200
    assert 'href="/admin/reports" aria-current="page"' in page.text  # the tab in the admin navigation
    rows = page_rows(page.text)
    assert (
        rows[delivered["dmarc"]] == "DMARC example.test mail.receiver.example 2024-03-01 12 passed, 3 failed"
    )
    assert rows[delivered["tls"]] == "TLS example.test Sender Mail Inc. 2024-03-01 45 encrypted, 2 failed"
    assert f'<tr class="report-row report-fail" data-id="{delivered["dmarc"]}">' in page.text
    assert f'href="/admin/reports/{delivered["dmarc"]}"' in page.text
    dmarc_only = page_rows(admin.get("/admin/reports?kind=dmarc").text)
    assert delivered["dmarc"] in dmarc_only
    assert delivered["tls"] not in dmarc_only
    assert all(row.startswith("DMARC ") for row in dmarc_only.values())
    tls_only = page_rows(admin.get("/admin/reports?kind=tlsrpt").text)
    assert list(tls_only) == [delivered["tls"]]
    assert admin.get("/admin/reports?kind=spam").status == 404
    chinese = admin.get("/admin/reports", headers={"Accept-Language": "zh-CN"}).text
    assert "收到的报告" in chinese
    assert "Reports received" not in chinese


def test_a_report_page_shows_its_rows_and_an_unknown_id_is_404(
    server: tuple[DataDir, ServerProcess], delivered: dict[str, str]
) -> None:
    data, process = server
    admin = admin_client(data, process)
    dmarc = admin.get(f"/admin/reports/{delivered['dmarc']}")
    assert dmarc.status == 200
    text = dmarc.text
    assert "DMARC report about example.test" in text
    assert "From mail.receiver.example, for 2024-03-01 (UTC)." in text
    assert f"Report ID: {DMARC.report_id}" in text
    assert "Published policy: p=none" in text
    assert "12 passed" in text
    assert "3 failed" in text
    rows = re.findall(r'<tr class="report-row( report-fail)?">(.*?)</tr>', text, re.S)
    cells = [(failed, re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)) for failed, row in rows]
    fail = '<strong class="report-bad">fail</strong>'
    assert cells == [
        ("", ["<code>192.0.2.10</code>", "12", "pass", "pass", "none", "example.test"]),
        (" report-fail", ["<code>203.0.113.66</code>", "3", fail, fail, "none", "example.test"]),
    ]
    tls = admin.get(f"/admin/reports/{delivered['tls']}").text
    assert "TLS report about example.test" in tls
    assert "Policy MTA-STS for example.test" in tls
    assert "45 sessions succeeded" in tls
    assert "No MTA-STS or DANE policy for example.test" in tls
    assert '<tr><td colspan="4" class="muted">No failures.</td></tr>' in tls
    rows = re.findall(r'<tr class="report-row report-fail">(.*?)</tr>', tls, re.S)
    assert [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in rows] == [
        ["<code>certificate-expired</code>", "localhost", "<code>127.0.0.1</code>", "2"]
    ]
    assert admin.get("/admin/reports/999999").status == 404
    assert admin.get("/admin/reports/nonsense").status == 404
    chinese = admin.get(f"/admin/reports/{delivered['dmarc']}", headers={"Accept-Language": "zh-CN"}).text
    assert "关于 example.test 的 DMARC 报告" in chinese
    assert '<strong class="report-bad">未通过</strong>' in chinese
    assert '<td data-label="处理方式">无</td>' in chinese  # the disposition "none", and its label on a phone
    assert "没有这份报告" in admin.get("/admin/reports/999999", headers={"Accept-Language": "zh-CN"}).text


def test_a_report_larger_than_its_summary_says_how_much_is_shown(
    server: tuple[DataDir, ServerProcess],
) -> None:
    """A summary keeps the 200 rows with the most messages (report_intake.SUMMARY_ROWS): the page and the
    command line say so, and how many the report had."""
    data, process = server
    many = dataclasses.replace(
        DMARC,
        org_name="big.receiver.example",
        report_id="many-rows.example.test@big.receiver.example",
        records=tuple(
            ReportRecord(
                source_ip=f"198.51.{n // 250}.{n % 250 + 1}",
                count=1000 - n,
                evaluated=PolicyEvaluated("none", "pass", "pass"),
                header_from="example.test",
                envelope_from="example.test",
                spf=(SpfAuth("example.test", "pass"),),
            )
            for n in range(205)
        ),
    )
    send(process, dmarc_mail(many))
    report = report_id_of(data, many.org_name)
    page = admin_client(data, process).get(f"/admin/reports/{report}").text
    assert len(re.findall(r'<tr class="report-row', page)) == 200
    assert "<code>198.51.0.1</code>" in page  # the most messages
    assert "<code>198.51.0.205</code>" not in page  # the fewest: left out
    assert "The 200 rows with the most messages are shown, of 205 in the report." in page
    shown = cli("reports", "show", report, config=data.config)
    assert "(the 200 sources with the most messages; 205 in the report)" in shown


# -- in a browser ------------------------------------------------------------------------------------------


def test_the_pages_in_a_browser_on_a_desktop_and_a_phone_in_english_and_chinese(
    server: tuple[DataDir, ServerProcess], delivered: dict[str, str]
) -> None:
    """How an administrator sees the list and a report of each kind (screenshots for docs/): the rows they
    expect, the failing ones marked, and nothing wider than the screen, the tables included."""
    from playwright import sync_api

    from tests.web.browser import SCREENSHOTS, launch

    data, process = server
    base = f"https://localhost:{process.port('https')}"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    overflow = (
        "Math.max(document.documentElement.scrollWidth - window.innerWidth,"
        " ...[...document.querySelectorAll('.report-table')].map(t => t.scrollWidth - t.clientWidth))"
    )
    widths: list[tuple[str, int]] = []  # how much wider than the screen each page is (or a table than itself)
    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            for device, viewport, scheme in (
                ("desktop", {"width": 1280, "height": 900}, "light"),
                ("phone", {"width": 390, "height": 844}, "light"),
                ("phone-dark", {"width": 390, "height": 844}, "dark"),
            ):
                for language, locale in (("en", "en-US"), ("zh", "zh-CN")):
                    name = f"admin-reports-{device}-{language}"
                    page = browser.new_context(
                        ignore_https_errors=True, viewport=viewport, locale=locale, color_scheme=scheme
                    ).new_page()
                    page.goto(base + "/login")
                    page.fill("#username", DEMO)
                    page.fill("#password", data.passwords[DEMO])
                    page.click("button[type=submit]")
                    page.wait_for_url(re.compile(r".*/box/\d+"))

                    page.goto(base + "/admin/reports")
                    dmarc_row = page.locator(f".report-row[data-id='{delivered['dmarc']}']")
                    assert dmarc_row.locator("a").inner_text() == "example.test"
                    assert "report-fail" in (dmarc_row.get_attribute("class") or "")
                    tls_row = page.locator(f".report-row[data-id='{delivered['tls']}']")
                    assert "Sender Mail Inc." in tls_row.inner_text()
                    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
                    assert (background == "rgb(246, 247, 249)") == (scheme == "light"), background
                    page.screenshot(path=str(SCREENSHOTS / f"{name}-list.png"), full_page=True)
                    widths.append((f"{name}-list", page.evaluate(overflow)))

                    dmarc_row.locator("a").click()
                    page.wait_for_url(f"**/admin/reports/{delivered['dmarc']}")
                    detail = page.locator(".report-detail[data-kind='dmarc'] .report-row")
                    assert detail.count() == 2
                    assert "192.0.2.10" in detail.nth(0).inner_text()
                    assert "203.0.113.66" in page.locator(".report-detail .report-fail").inner_text()
                    page.screenshot(path=str(SCREENSHOTS / f"{name}-dmarc.png"), full_page=True)
                    widths.append((f"{name}-dmarc", page.evaluate(overflow)))

                    page.goto(base + f"/admin/reports/{delivered['tls']}")
                    failure = page.locator(".report-detail[data-kind='tlsrpt'] .report-fail")
                    assert "certificate-expired" in failure.inner_text()
                    page.screenshot(path=str(SCREENSHOTS / f"{name}-tls.png"), full_page=True)
                    widths.append((f"{name}-tls", page.evaluate(overflow)))
                    page.context.close()
        finally:
            browser.close()
    assert [(shot, width) for shot, width in widths if width > 0] == []
