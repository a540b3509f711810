"""The filter and vacation-reply settings over HTTP, against a real server (docs/decisions/0088): a rule made
with the form is stored as the active Sieve script and files mail delivered over SMTP; a script a ManageSieve
client wrote keeps its text when rules are added through the web; the text editor refuses a script with an
error and shows its line and column; the vacation form stores a vacation reply; stale forms, missing CSRF
tokens and scripts over the size limit change nothing."""

from __future__ import annotations

import html
import imaplib
import re
import ssl
from collections.abc import Iterator

import pytest
from sievelib.managesieve import Client

from tests.integration.harness import DataDir, ServerProcess, make_data_dir
from tests.support.mail import send_smtp, text_message
from tests.web.client import Reply, WebClient
from tests.web.conftest import set_settings

pytestmark = pytest.mark.integration

#: The size limit of one script on this module's server (small, so that the limit can be reached).
MAX_SCRIPT = 8192


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DataDir, ServerProcess]]:
    users = ("demo", "other", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
    data = make_data_dir(tmp_path_factory.mktemp("filters") / "data", users=users)
    set_settings(data, "auth", failure_delay=0.0)
    set_settings(data, "sieve", max_script_size=MAX_SCRIPT)
    process = ServerProcess(data).start()
    try:
        yield data, process
    finally:
        assert process.stop() == 0, process.log()


def logged_in(server: tuple[DataDir, ServerProcess], address: str, language: str = "en") -> WebClient:
    data, process = server
    client = WebClient.of(process, data)
    client.cookies["lang"] = language
    reply = client.login(address, data.passwords[address])
    assert reply.status == 303, reply.text[:500]
    return client


def sieve(server: tuple[DataDir, ServerProcess], address: str, monkeypatch: pytest.MonkeyPatch) -> Client:
    """sievelib's ManageSieve client, logged in as `address` over STARTTLS."""
    data, process = server
    monkeypatch.setenv("SSL_CERT_FILE", str(data.root / "tls" / "cert.pem"))
    client = Client("localhost", process.port("managesieve"))
    assert client.connect(address, data.passwords[address], starttls=True, authmech="PLAIN"), client.errmsg
    return client


def active_script(
    server: tuple[DataDir, ServerProcess], address: str, monkeypatch: pytest.MonkeyPatch
) -> str:
    """The account's active script as a ManageSieve client reads it (sievelib: LF line ends, no final one)."""
    client = sieve(server, address, monkeypatch)
    try:
        active, _others = client.listscripts()
        assert active is not None, "no active script"
        text = client.getscript(active)
        assert isinstance(text, str)
        return text
    finally:
        client.logout()


def form_values(page: Reply) -> dict[str, str]:
    """The csrf and version fields of a page's first form."""
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    version = re.search(r'name="version" value="(\d+)"', page.text)
    assert csrf is not None, page.text[:500]
    assert version is not None, page.text[:500]
    return {"csrf": csrf.group(1), "version": version.group(1)}


def post_rule(client: WebClient, fields: dict[str, str], index: str = "new") -> Reply:
    page = client.get("/settings/filters/new" if index == "new" else f"/settings/filters/{index}")
    assert page.status == 200, page.text[:500]
    base = {"index": index, "name": "", "match": "all", "field": "from", "header": "", "op": "contains"}
    return client.post("/settings/filters", {**form_values(page), **base, "value": "", **fields})


def hidden(page: Reply) -> dict[str, str]:
    """The index and block fields of a rule's form (which rule it edits)."""
    return {n: html.unescape(v) for n, v in re.findall(r'name="(index|block)" value="([^"]*)"', page.text)}


def imap(server: tuple[DataDir, ServerProcess], address: str) -> imaplib.IMAP4_SSL:
    data, process = server
    context = ssl.create_default_context(cafile=str(data.root / "tls" / "cert.pem"))
    connection = imaplib.IMAP4_SSL("localhost", process.port("imaps"), ssl_context=context, timeout=30)
    connection.login(address, data.passwords[address])
    return connection


def test_a_rule_made_with_the_form_is_the_active_script_and_files_mail_delivered_over_smtp(
    server: tuple[DataDir, ServerProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    _data, process = server
    client = logged_in(server, "demo@example.test")
    page = client.get("/settings")
    assert (
        client.post("/folders", {"csrf": client.csrf(page), "action": "create", "name": "Work"}).status == 303
    )
    reply = post_rule(
        client,
        {
            "name": "From the boss",
            "field": "subject",
            "op": "contains",
            "value": "[project]",
            "move": "1",
            "folder": "Work",
            "flag": "1",
            "stop": "1",
        },
    )
    assert (reply.status, reply.header("location")) == (303, "/settings/filters?done=saved")
    script = active_script(server, "demo@example.test", monkeypatch)
    assert script == (
        'require ["fileinto", "imap4flags"];\n\n'
        "# rule:[From the boss]\n"
        'if header :contains "subject" "[project]" {\n'
        '  addflag "\\\\Flagged";\n'
        '  fileinto "Work";\n'
        "  stop;\n"
        "}"
    )
    listing = client.get("/settings/filters")
    assert "From the boss" in listing.text
    assert "Move to Work" in listing.text

    send_smtp(process.port("smtp"), text_message("[project] kick-off"), text_message("lunch"))
    with imap(server, "demo@example.test") as mailbox:
        assert mailbox.select("Work")[1] == [b"1"]
        fetched = mailbox.fetch("1", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")[1][0]
        assert isinstance(fetched, tuple)
        assert b"\\Flagged" in fetched[0]
        assert b"[project] kick-off" in fetched[1]
        assert mailbox.select("INBOX")[1] == [b"1"]


def test_a_script_from_a_managesieve_client_keeps_its_text_when_rules_are_added_moved_and_deleted(
    server: tuple[DataDir, ServerProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    address = "other@example.test"
    mine = (
        'require ["fileinto", "variables", "envelope"];\n'
        "# Written with sieve-connect\n"
        'if envelope :matches "from" "*@lists.example" { set "list" "${1}"; fileinto "Lists"; }\n'
        'elsif header :contains "x-spam" "yes" { discard; }\n'
        "/* the end */\n"
    )
    client = sieve(server, address, monkeypatch)
    try:
        assert client.putscript("mine", mine), client.errmsg
        assert client.setactive("mine")
    finally:
        client.logout()
    web = logged_in(server, address)
    listing = web.get("/settings/filters")
    assert "Advanced rule" in listing.text
    reply = post_rule(web, {"name": "Big", "field": "size", "op": "over", "value": "5 MB", "discard": "1"})
    assert reply.status == 303, reply.text[:2000]
    reply = post_rule(web, {"field": "from", "op": "is", "value": "ceo@example.org", "read": "1"})
    assert reply.status == 303
    after = active_script(server, address, monkeypatch)
    body = mine.removesuffix("/* the end */\n")
    # the require names what the rules need besides what it named; everything else is as it was
    assert after.startswith(
        'require ["fileinto", "variables", "envelope", "imap4flags"];\n' + body.split("\n", 1)[1]
    ), after
    assert after.endswith(
        '# rule:[Big]\nif size :over 5242880 {\n  discard;\n}\n\nif address :is "from" "ceo@example.org" {\n'
        '  addflag "\\\\Seen";\n}\n/* the end */'
    ), after

    listing = web.get("/settings/filters")
    indexes = re.findall(r'name="index" value="(\d+)"', listing.text)
    assert len(indexes) == 3  # the advanced if/elsif, and the two rules
    values = form_values(listing)
    moved = web.post("/settings/filters/arrange", {**values, "index": indexes[2], "action": "up"})
    assert (moved.status, moved.header("location")) == (303, "/settings/filters?done=moved")
    after_move = active_script(server, address, monkeypatch)
    assert after_move.index("ceo@example.org") < after_move.index("size :over")
    assert after_move.index("envelope :matches") < after_move.index("ceo@example.org")

    listing = web.get("/settings/filters")
    first = re.findall(r'name="index" value="(\d+)"', listing.text)[0]
    deleted = web.post(
        "/settings/filters/arrange", {**form_values(listing), "index": first, "action": "delete"}
    )
    assert deleted.status == 303
    final = active_script(server, address, monkeypatch)
    assert "envelope" not in final
    assert "variables" not in final
    assert final.startswith('require ["imap4flags"];\n')  # what the two rules need, and no more
    assert "ceo@example.org" in final
    assert "size :over 5242880" in final


def test_the_text_editor_refuses_a_script_with_an_error_and_shows_its_line_and_column(
    server: tuple[DataDir, ServerProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    address = "third@example.test"
    web = logged_in(server, address)
    page = web.get("/settings/filters/script")
    assert page.status == 200
    good = 'require "fileinto";\r\nif header :is "subject" "x" {\r\n  fileinto "Trash";\r\n}\r\n'
    saved = web.post("/settings/filters/script", {**form_values(page), "script": good})
    assert (saved.status, saved.header("location")) == (303, "/settings/filters/script?done=saved")
    assert active_script(server, address, monkeypatch) == good.replace("\r\n", "\n").rstrip("\n")

    page = web.get("/settings/filters/script")
    bad = 'require "fileinto";\r\nif header :is "subject" "x" {\r\n  fileinto "Trash" "Junk";\r\n}\r\n'
    refused = web.post("/settings/filters/script", {**form_values(page), "script": bad})
    assert refused.status == 400
    text = html.unescape(refused.text)
    assert re.search(r"Line 3, column 20: fileinto takes 1 positional arguments", text), text[:3000]
    assert 'data-error-line="3"' in refused.text
    assert 'data-error-column="20"' in refused.text
    assert re.search(r'<span class="at-fault">3</span>', refused.text)  # the line number marked
    assert (
        '<span class="excerpt-line caret-line"><span class="excerpt-number"></span>' + " " * 19 + "^" in text
    )
    assert 'fileinto "Trash" "Junk"' in text  # what was typed is shown again
    assert active_script(server, address, monkeypatch) == good.replace("\r\n", "\n").rstrip("\n")

    unparsed = web.post(
        "/settings/filters/script", {**form_values(page), "script": "if true {\r\n  keep;\r\n"}
    )
    assert unparsed.status == 400
    assert "Line 3, column 1:" in html.unescape(unparsed.text)


def test_the_vacation_form_stores_a_vacation_reply_and_turning_it_off_keeps_the_text(
    server: tuple[DataDir, ServerProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    address = "fourth@example.test"
    web = logged_in(server, address)
    page = web.get("/settings/vacation")
    assert page.status == 200
    assert 'id="vacation-on"' in page.text
    fields = {
        "on": "1",
        "first_day": "2099-07-01",
        "last_day": "2099-07-14",
        "subject": "Away",
        "text": "I am away until 14 July.\r\nAda",
        "days": "3",
        "addresses": "ada@example.test, ada.l@example.test",
    }
    saved = web.post("/settings/vacation", {**form_values(page), **fields})
    assert (saved.status, saved.header("location")) == (303, "/settings/vacation?done=on")
    script = active_script(server, address, monkeypatch)
    assert script == (  # the one reply: no guard needed (decision 0088)
        'require ["date", "relational", "vacation"];\n\n'
        'if allof (currentdate :value "ge" "date" "2099-07-01", '
        'currentdate :value "le" "date" "2099-07-14") {\n'
        '  vacation :days 3 :subject "Away" :addresses ["ada@example.test", "ada.l@example.test"] text:\n'
        "I am away until 14 July.\nAda\n.\n;\n}"
    )
    shown = web.get("/settings/vacation")
    assert re.search(r'id="vacation-on" role="switch" checked', shown.text)
    assert 'value="2099-07-14"' in shown.text
    assert "From Jul 1, 2099 to Jul 14, 2099" in shown.text

    off = web.post("/settings/vacation", {**form_values(shown), **fields, "on": ""})
    assert (off.status, off.header("location")) == (303, "/settings/vacation?done=off")
    assert "vacation" not in active_script(server, address, monkeypatch)
    again = web.get("/settings/vacation")
    assert not re.search(r'id="vacation-on" role="switch" checked', again.text)
    assert "I am away until 14 July." in again.text
    assert 'value="Away"' in again.text

    wrong = web.post("/settings/vacation", {**form_values(again), **fields, "last_day": "2099-06-01"})
    assert wrong.status == 400
    assert "The last day comes before the first day." in html.unescape(wrong.text)


def test_forms_made_from_an_older_script_or_without_a_token_change_nothing(
    server: tuple[DataDir, ServerProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    address = "fifth@example.test"
    web = logged_in(server, address)
    page = web.get("/settings/filters/new")
    stale = form_values(page)
    assert post_rule(web, {"value": "a@example.org", "flag": "1"}).status == 303
    before = active_script(server, address, monkeypatch)
    fields = {
        "index": "new",
        "match": "all",
        "field": "from",
        "header": "",
        "op": "is",
        "value": "b@example.org",
    }
    refused = web.post("/settings/filters", {**stale, **fields, "read": "1"})
    assert refused.status == 409
    assert "changed elsewhere meanwhile" in refused.text
    assert active_script(server, address, monkeypatch) == before

    fresh = form_values(web.get("/settings/filters/new"))
    no_token = web.post("/settings/filters", {"version": fresh["version"], **fields, "read": "1"})
    assert no_token.status == 403
    invalid = web.post("/settings/filters", {**fresh, **fields, "read": "1", "value": "${x}"})
    assert invalid.status == 400
    assert "cannot contain" in html.unescape(invalid.text)
    nothing = web.post("/settings/filters", {**fresh, **fields})
    assert nothing.status == 400
    assert "Choose at least one thing" in nothing.text
    missing = web.post("/settings/filters", {**fresh, **fields, "move": "1", "folder": "Nowhere"})
    assert missing.status == 400
    assert "Choose a folder." in missing.text
    assert active_script(server, address, monkeypatch) == before


def test_a_script_larger_than_the_limit_is_refused_with_a_clear_message(
    server: tuple[DataDir, ServerProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    address = "sixth@example.test"
    web = logged_in(server, address, language="zh_CN")
    page = web.get("/settings/filters/script")
    large = "".join(f'if header :is "subject" "{n:05d}" {{ discard; }}\r\n' for n in range(300))
    assert len(large) > MAX_SCRIPT
    refused = web.post("/settings/filters/script", {**form_values(page), "script": large})
    assert refused.status == 400
    assert "8 KB" in refused.text
    assert "过滤器" in refused.text
    assert web.get("/settings/filters").status == 200
    client = sieve(server, address, monkeypatch)
    try:
        assert client.listscripts() == (None, [])
    finally:
        client.logout()


def test_the_settings_page_links_the_filters_and_the_vacation_reply(
    server: tuple[DataDir, ServerProcess],
) -> None:
    web = logged_in(server, "demo@example.test", language="zh_CN")
    page = web.get("/settings")
    assert 'href="/settings/filters"' in page.text
    assert 'href="/settings/vacation"' in page.text
    assert "过滤器和自动回复" in page.text


# ---------------------------------------------------------------------------- review of 4d8d2a1 (regressions)


def test_odd_digits_in_the_vacation_days_and_the_script_line_are_refused_not_a_server_error(
    server: tuple[DataDir, ServerProcess],
) -> None:
    """Review of 4d8d2a1, 7 and 8: "²" passed str.isdigit and failed int(): a 500."""
    web = logged_in(server, "seventh@example.test")
    page = web.get("/settings/vacation")
    fields = {"on": "1", "text": "away", "subject": "", "addresses": "", "first_day": "", "last_day": ""}
    reply = web.post("/settings/vacation", {**form_values(page), **fields, "days": "\u00b2"})
    assert reply.status == 400
    assert "Reply to a sender again after 1 to 90 days." in reply.text
    assert web.get("/settings/filters/script?line=%C2%B2").status == 200
    assert 'data-focus-line="2"' in web.get("/settings/filters/script?line=2").text


def test_saving_a_rule_form_again_after_a_409_edits_the_same_rule_not_the_one_now_in_its_place(
    server: tuple[DataDir, ServerProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review of 4d8d2a1, 4: the 409 form had the new version and the old block number: saving it again
    overwrote the rule now at that number. The 409 form is made for the same rule at its new number."""
    address = "seventh@example.test"
    web = logged_in(server, address)
    assert post_rule(web, {"name": "Alpha", "field": "subject", "value": "alpha", "flag": "1"}).status == 303
    assert post_rule(web, {"name": "Beta", "field": "subject", "value": "beta", "read": "1"}).status == 303
    listing = web.get("/settings/filters")
    _alpha, beta = re.findall(r'name="index" value="(\d+)"', listing.text)
    tab = web.get(f"/settings/filters/{beta}")  # one tab edits Beta
    moved = web.post("/settings/filters/arrange", {**form_values(listing), "index": beta, "action": "up"})
    assert moved.status == 303  # another moves Beta up, so that Alpha has Beta's number now
    edit = {"name": "Beta renamed", "match": "all", "field": "subject", "header": "", "op": "contains"}
    edit |= {"value": "beta", "read": "1"}
    first = web.post("/settings/filters", {**form_values(tab), **hidden(tab), **edit})
    assert first.status == 409
    assert "changed elsewhere meanwhile" in first.text
    assert 'value="Beta renamed"' in first.text  # what was typed is kept
    second = web.post("/settings/filters", {**form_values(first), **hidden(first), **edit})
    assert second.status == 303
    script = active_script(server, address, monkeypatch)
    assert script.index("# rule:[Beta renamed]") < script.index("# rule:[Alpha]")
    assert 'if header :contains "subject" "alpha"' in script
    assert "rule:[Beta]" not in script


def test_a_stale_edit_of_a_rule_that_was_deleted_meanwhile_is_a_409_with_the_list(
    server: tuple[DataDir, ServerProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review of 4d8d2a1, 4: the number was looked at before the version: a 404, or another rule edited."""
    address = "eighth@example.test"
    web = logged_in(server, address)
    assert post_rule(web, {"name": "A", "field": "subject", "value": "a", "flag": "1"}).status == 303
    assert post_rule(web, {"name": "B", "field": "subject", "value": "b", "flag": "1"}).status == 303
    listing = web.get("/settings/filters")
    first, second = re.findall(r'name="index" value="(\d+)"', listing.text)
    tab_b = web.get(f"/settings/filters/{second}")
    tab_a = web.get(f"/settings/filters/{first}")
    deleted = web.post(
        "/settings/filters/arrange", {**form_values(listing), "index": second, "action": "delete"}
    )
    assert deleted.status == 303
    before = active_script(server, address, monkeypatch)
    fields = {"name": "Changed", "match": "all", "field": "subject", "header": "", "op": "contains"}
    fields |= {"value": "b", "flag": "1"}
    for tab in (tab_b, tab_a):
        reply = web.post("/settings/filters", {**form_values(tab), **hidden(tab), **fields})
        assert reply.status == 409
        assert active_script(server, address, monkeypatch) == before
    gone = web.post("/settings/filters", {**form_values(tab_b), "index": second, **fields})
    assert gone.status == 409
    assert "the filter you edited was changed or deleted" in html.unescape(gone.text)
    assert 'class="rule-list"' in gone.text  # the list, as it is now: nothing to save again by mistake
    assert active_script(server, address, monkeypatch) == before


def test_a_folder_name_with_an_ampersand_is_escaped_once_in_the_rule_list(
    server: tuple[DataDir, ServerProcess],
) -> None:
    """Review of 4d8d2a1, 9: the folder's label (markup already) was escaped again: "R&amp;amp;D"."""
    web = logged_in(server, "ninth@example.test")
    page = web.get("/settings")
    assert web.post("/folders", {"csrf": web.csrf(page), "action": "create", "name": "R&D"}).status == 303
    assert post_rule(web, {"field": "subject", "value": "x", "move": "1", "folder": "R&D"}).status == 303
    chip = re.search(r'<li class="chip chip-move">(.*?)</li>', web.get("/settings/filters").text)
    assert chip is not None
    assert chip.group(1) == "Move to R&amp;D"


def test_a_second_automatic_reply_is_refused_while_a_hand_written_one_is_unguarded(
    server: tuple[DataDir, ServerProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review of 4d8d2a1, 1: with a vacation another program wrote, a reply from the forms made a script
    that failed at delivery (two vacations in one run); the vacation page said "the first one wins"."""
    address = "tenth@example.test"
    mine = (
        'require ["vacation", "fileinto"];\n'
        'if header :contains "subject" "help" { vacation :days 1 :from "tenth@example.test" "We got it."; }\n'
    )
    client = sieve(server, address, monkeypatch)
    try:
        assert client.putscript("mine", mine), client.errmsg
        assert client.setactive("mine")
    finally:
        client.logout()
    web = logged_in(server, address)
    page = web.get("/settings/vacation")
    assert "the vacation reply cannot be turned on" in page.text
    assert "first one wins" not in page.text
    fields = {"on": "1", "text": "away", "subject": "", "addresses": "", "first_day": "", "last_day": ""}
    refused = web.post("/settings/vacation", {**form_values(page), **fields, "days": "7"})
    assert refused.status == 400
    assert "A message may get only one automatic reply" in refused.text
    rule = {"field": "subject", "value": "x", "reply": "1", "reply_text": "Thanks."}
    assert post_rule(web, rule).status == 400
    assert post_rule(web, {**rule, "reply": ""} | {"flag": "1"}).status == 303  # no reply: no problem
    script = active_script(server, address, monkeypatch)
    assert script.count("vacation :days") == 1
    assert mine.splitlines()[1] in script
