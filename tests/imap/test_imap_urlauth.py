"""URLAUTH (RFC 4467) and URLAUTH=BINARY (RFC 5524): GENURLAUTH's checks, URLFETCH of what a URL names for the
access identifiers this server honours, NIL for every URL that is not valid (and no word on why), RESETKEY,
and the extended URLFETCH's BINARY, BODY and BODYPARTSTRUCTURE."""

from __future__ import annotations

import base64
import datetime
from typing import Any

import pytest

from postoffice.imap import fetch as fetch_module
from postoffice.imap import urlauth
from tests.imap.conftest import DEMO, OTHER, message
from tests.imap.transcript import ImapHarness, Transcript, session

BODY = "Si vis pacem, para bellum.\r\n"
BINARY_PART = bytes(range(256)) * 4
MULTIPART = (
    b"From: Joe <joe@example.test>\r\nTo: fred@example.test\r\nSubject: parts\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n"
    b"--b1\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"Caf=C3=A9 au lait.\r\n"
    b"--b1\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    + base64.encodebytes(BINARY_PART).replace(b"\n", b"\r\n")
    + b"--b1\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-blurdybloop\r\n\r\n"
    b"xyz\r\n--b1--\r\n"
)
USER = "demo%40example.test"


def uidvalidity(imap: ImapHarness, mailbox: str = "INBOX", address: str = DEMO) -> int:
    info = imap.call(imap.store.get_mailbox(imap.account_ids[address], mailbox))
    assert info is not None
    return info.uidvalidity


def generate(raw: Transcript, *rumps: str) -> list[str]:
    """GENURLAUTH of the rumps with INTERNAL: the authorized URLs."""
    reply = raw.command("g", "GENURLAUTH " + " ".join(f'"{rump}" INTERNAL' for rump in rumps))
    assert reply[-1] == "g OK GENURLAUTH completed", reply
    (line,) = reply[:-1]
    assert line.startswith("* GENURLAUTH ")
    urls = line.split('"')[1::2]
    assert len(urls) == len(rumps)
    for url, rump in zip(urls, rumps, strict=True):
        mechanism_and_token = url[len(rump) :]
        assert url.startswith(rump)
        assert mechanism_and_token.startswith(":INTERNAL:01")
        assert len(mechanism_and_token) == len(":INTERNAL:") + 66  # version + HMAC-SHA256 in hex
    return urls


def fetch(raw: Transcript, *urls: str) -> bytes:
    """URLFETCH of the URLs (each quoted, or as given when it starts with "("): the response octets."""
    args = " ".join(u if u.startswith("(") else f'"{u}"' for u in urls)
    raw.send(f"f URLFETCH {args}\r\n".encode())
    return raw.response("f")


def nil(url: str) -> bytes:
    return b'* URLFETCH "' + url.encode() + b'" NIL\r\n'


def literal(data: bytes) -> bytes:
    return b"{%d}\r\n%s" % (len(data), data)


def test_urlauth_is_advertised_and_select_names_the_mechanism(imap: ImapHarness) -> None:
    raw = session(imap)
    capabilities = raw.command("c", "CAPABILITY")[0].split()
    assert "URLAUTH" in capabilities
    assert "URLAUTH=BINARY" in capabilities
    assert "* OK [URLMECH INTERNAL] URLAUTH mechanisms" in raw.command("s", "SELECT INBOX")


def test_generated_url_fetches_the_section_for_the_access_it_names(imap: ImapHarness) -> None:
    imap.deliver(DEMO, message("hello", BODY))
    v = uidvalidity(imap)
    demo, other = session(imap), session(imap, OTHER)
    base = f"imap://{USER}@localhost/INBOX;UIDVALIDITY={v}/;UID=1/;SECTION=TEXT"
    authuser, anonymous, mine, submit = generate(
        demo,
        base + ";URLAUTH=authuser",
        base + ";URLAUTH=anonymous",
        base + ";URLAUTH=user+other%40example.test",
        base + ";urlauth=submit+demo%40example.test",
    )
    body = literal(BODY.encode())
    for url in (authuser, anonymous, mine):
        assert (
            fetch(other, url)
            == b'* URLFETCH "' + url.encode() + b'" ' + body + b"\r\nf OK URLFETCH completed\r\n"
        )
    # user+other is for the other account only; submit+ is for a submission server (none speaks IMAP here)
    assert fetch(demo, mine, submit, authuser) == (
        nil(mine) + nil(submit) + b'* URLFETCH "' + authuser.encode() + b'" ' + body + b"\r\n"
        b"f OK URLFETCH completed\r\n"
    )
    assert imap.failures() == []


def test_every_invalid_url_is_nil(imap: ImapHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    imap.deliver(DEMO, message("hello", BODY))
    demo = session(imap)
    demo.command("c", "CREATE Gone")
    imap.deliver(DEMO, message("soon gone", BODY), "Gone")
    expire = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    good, gone, expiring = generate(
        demo,
        f"imap://{USER}@localhost/INBOX/;UID=1;URLAUTH=authuser",
        f"imap://{USER}@localhost/Gone/;UID=1;URLAUTH=authuser",
        f"imap://{USER}@localhost/INBOX/;UID=1;EXPIRE={expire};URLAUTH=authuser",
    )
    demo.command("d", "DELETE Gone")
    demo.command("c2", "CREATE Gone")  # the same name again: a new mailbox, a new key
    imap.deliver(DEMO, message("new", BODY), "Gone")
    token = good.rsplit(":", 1)[1]
    bad = [
        good[:-1] + ("0" if good[-1] != "0" else "1"),  # another token
        good.replace(";UID=1", ";UID=2"),  # another message
        good.replace("INBOX", "Nowhere"),  # a mailbox that does not exist
        good.replace(USER, "nobody%40example.test"),  # an account that does not exist
        good.replace(USER, "other%40example.test"),  # another account (its key)
        good.replace("localhost", "elsewhere.test"),  # another server
        good.replace(":INTERNAL:", ":XSAMPLE:"),
        good.rsplit(":", 2)[0],  # a rump
        f"imap://{USER}@localhost/INBOX;URLAUTH=authuser:INTERNAL:{token}",  # a mailbox, not a message
        f"/INBOX/;UID=1;URLAUTH=authuser:INTERNAL:{token}",  # not absolute
        "not a URL at all",
        gone,
    ]
    other = session(imap, OTHER)
    assert fetch(other, *bad) == b"".join(nil(url) for url in bad) + b"f OK URLFETCH completed\r\n"
    assert fetch(other, expiring).endswith(b"\r\n" + BODY.encode() + b"\r\nf OK URLFETCH completed\r\n")
    monkeypatch.setattr(
        urlauth, "now", lambda: datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=2)
    )
    assert fetch(other, expiring) == nil(expiring) + b"f OK URLFETCH completed\r\n"
    assert imap.failures() == []


def test_genurlauth_checks_every_rump_and_answers_bad(imap: ImapHarness) -> None:
    imap.deliver(DEMO, message("hello", BODY))
    v = uidvalidity(imap)
    demo = session(imap)
    good = f"imap://{USER}@localhost/INBOX/;UID=1;URLAUTH=authuser"
    past = "2001-01-01T00:00:00Z"
    bad = [
        "imap://localhost/INBOX/;UID=1;URLAUTH=authuser",  # no user: the key's owner must be named
        "imap://other%40example.test@localhost/INBOX/;UID=1;URLAUTH=authuser",  # another account
        f"imap://{USER}@elsewhere.test/INBOX/;UID=1;URLAUTH=authuser",
        f"imap://{USER}@localhost/Nowhere/;UID=1;URLAUTH=authuser",
        f"imap://{USER}@localhost/INBOX;UIDVALIDITY={v + 1}/;UID=1;URLAUTH=authuser",
        f"imap://{USER}@localhost/INBOX/;UID=2;URLAUTH=authuser",
        f"imap://{USER}@localhost/INBOX/;UID=1/;SECTION=3;URLAUTH=authuser",
        f"imap://{USER}@localhost/INBOX/;UID=1;EXPIRE={past};URLAUTH=authuser",
        f"imap://{USER}@localhost/INBOX/;UID=1",  # no ;URLAUTH=
        good + ":INTERNAL:" + "0" * 66,  # already authorized
        "/INBOX/;UID=1;URLAUTH=authuser",
        "imap://localhost",
    ]
    for n, rump in enumerate(bad):
        reply = demo.command(f"b{n}", f'GENURLAUTH "{good}" INTERNAL "{rump}" INTERNAL')
        assert reply[0].startswith(f"b{n} BAD "), (rump, reply)  # and no GENURLAUTH response: all or none
    assert demo.command("m", f'GENURLAUTH "{good}" XSAMPLE')[0].startswith("m NO ")
    assert imap.failures() == []


def test_resetkey_makes_old_urls_fail_and_tells_the_sessions_that_selected_the_mailbox(
    imap: ImapHarness,
) -> None:
    imap.deliver(DEMO, message("hello", BODY))
    imap.deliver(DEMO, message("draft", BODY), "Drafts")
    demo, watcher, other = session(imap), session(imap), session(imap, OTHER)
    inbox, drafts = generate(
        demo,
        f"imap://{USER}@localhost/INBOX/;UID=1;URLAUTH=authuser",
        f"imap://{USER}@localhost/Drafts/;UID=1;URLAUTH=authuser",
    )
    watcher.command("s", "SELECT INBOX")
    assert demo.command("r", "RESETKEY INBOX INTERNAL") == ["r OK [URLMECH INTERNAL] URLAUTH key reset"]
    assert watcher.command("n", "NOOP") == [
        "* OK [URLMECH INTERNAL] URLAUTH key reset",
        "n OK NOOP completed",
    ]
    assert fetch(other, inbox, drafts).startswith(nil(inbox) + b'* URLFETCH "' + drafts.encode() + b'" {')
    (again,) = generate(demo, f"imap://{USER}@localhost/INBOX/;UID=1;URLAUTH=authuser")
    assert again != inbox
    assert fetch(other, again).endswith(BODY.encode() + b"\r\nf OK URLFETCH completed\r\n")
    # every key: every URL fails; the watcher hears of it while it idles
    watcher.send(b"i IDLE\r\n")
    assert watcher.line() == "+ idling"
    demo.command("s", "SELECT Drafts")  # a session that issues RESETKEY with a mailbox selected hears it too
    assert demo.command("r2", "RESETKEY") == [
        "* OK [URLMECH INTERNAL] URLAUTH keys reset",
        "r2 OK All URLAUTH keys removed",
    ]
    watcher.wait()
    assert watcher.line() == "* OK [URLMECH INTERNAL] URLAUTH key reset"
    assert fetch(other, again, drafts) == nil(again) + nil(drafts) + b"f OK URLFETCH completed\r\n"
    assert demo.command("r3", "RESETKEY Nowhere") == [
        "r3 NO [NONEXISTENT] Mailbox does not exist (or is not this account's)"
    ]
    assert demo.command("r4", "RESETKEY INBOX XSAMPLE")[0].startswith("r4 NO ")


def test_urlfetch_binary_bodypartstructure_and_body(imap: ImapHarness) -> None:
    imap.deliver(DEMO, MULTIPART)
    demo = session(imap)
    base = f"imap://{USER}@localhost/INBOX/;UID=1/;SECTION="
    text, image, unknown, header = generate(
        demo,
        base + "1;URLAUTH=authuser",
        base + "2;URLAUTH=authuser",
        base + "3;URLAUTH=authuser",
        base + "HEADER;URLAUTH=authuser",
    )
    other = session(imap, OTHER)
    # RFC 5524 section 3.2: BINARY decoded (a literal8 for data with NUL), BODYPARTSTRUCTURE of what is sent
    assert fetch(other, f'("{image}" BODYPARTSTRUCTURE BINARY)') == (
        b'* URLFETCH "'
        + image.encode()
        + b'" (BODYPARTSTRUCTURE ("IMAGE" "PNG" NIL NIL NIL "BINARY" 1024 NIL'
        b" NIL NIL NIL)) (BINARY ~{1024}\r\n" + BINARY_PART + b")\r\nf OK URLFETCH completed\r\n"
    )
    assert fetch(other, f'("{text}" BINARY BODYPARTSTRUCTURE)') == (
        b'* URLFETCH "' + text.encode() + b'" (BINARY {14}\r\nCaf\xc3\xa9 au lait.)'
        b' (BODYPARTSTRUCTURE ("TEXT" "PLAIN" ("charset" "us-ascii") NIL NIL "BINARY" 14 1 NIL NIL NIL NIL))'
        b"\r\nf OK URLFETCH completed\r\n"
    )
    # an encoding this server cannot undo: BINARY NIL, the structure as stored
    response = fetch(other, f'("{unknown}" BINARY BODYPARTSTRUCTURE)')
    assert response.startswith(
        b'* URLFETCH "' + unknown.encode() + b'" (BINARY NIL) (BODYPARTSTRUCTURE ("TEXT"'
    )
    assert b'"X-BLURDYBLOOP" 3 1' in response
    # BODY and the plain forms: the octets as stored
    plain = b"Caf=C3=A9 au lait."
    assert fetch(other, f'("{text}" BODY)', f'("{text}")', text) == (
        b'* URLFETCH "' + text.encode() + b'" (BODY ' + literal(plain) + b")\r\n"
        b'* URLFETCH "' + text.encode() + b'" ' + literal(plain) + b"\r\n"
        b'* URLFETCH "' + text.encode() + b'" ' + literal(plain) + b"\r\nf OK URLFETCH completed\r\n"
    )
    # a header is no MIME part: no body structure, so the URL is NIL when one is asked for
    assert fetch(other, f'("{header}" BODYPARTSTRUCTURE)', f'("{header}" BINARY)').startswith(
        nil(header) + b'* URLFETCH "' + header.encode() + b'" (BINARY {'
    )
    for n, args in enumerate([f'("{text}" BINARY BODY)', f'("{text}" BODY BODY)', f'("{text}" CONVERTED)']):
        assert demo.command(f"x{n}", f"URLFETCH {args}")[0].startswith(f"x{n} BAD ")
    assert imap.failures() == []


def test_partial_and_a_large_message_streamed(imap: ImapHarness) -> None:
    body = "".join(f"line {n:07d} of a long message\r\n" for n in range(12_000))  # about 400 KiB
    original = message("long", body)
    imap.deliver(DEMO, original)
    demo = session(imap)
    whole, part = generate(
        demo,
        f"imap://{USER}@localhost/INBOX/;UID=1;URLAUTH=anonymous",
        f"imap://{USER}@localhost/INBOX/;UID=1/;SECTION=TEXT/;PARTIAL=33.10;URLAUTH=anonymous",
    )
    response = fetch(session(imap, OTHER), whole, part)
    assert response == (
        b'* URLFETCH "' + whole.encode() + b'" ' + literal(original) + b"\r\n"
        b'* URLFETCH "'
        + part.encode()
        + b'" '
        + literal(body.encode()[33:43])
        + b"\r\nf OK URLFETCH completed\r\n"
    )


def test_a_utf8_mailbox_name_and_a_renamed_mailbox(imap: ImapHarness) -> None:
    demo = session(imap)
    demo.command("c", "CREATE Entw&APw-rfe")
    imap.deliver(DEMO, message("draft", BODY), "Entwürfe")
    (url,) = generate(demo, f"imap://{USER}@localhost/Entw%C3%BCrfe/;UID=1;URLAUTH=authuser")
    other = session(imap, OTHER)
    assert fetch(other, url).endswith(BODY.encode() + b"\r\nf OK URLFETCH completed\r\n")
    assert demo.command("r", "RENAME Entw&APw-rfe Old")[-1] == "r OK RENAME completed"
    assert fetch(other, url) == nil(url) + b"f OK URLFETCH completed\r\n"  # the URL names the old name


def test_urlfetch_does_not_set_seen_nor_touch_the_selected_mailbox(imap: ImapHarness) -> None:
    imap.deliver(DEMO, message("hello", BODY))
    demo = session(imap)
    demo.command("s", "SELECT INBOX")
    (url,) = generate(demo, f"imap://{USER}@localhost/INBOX/;UID=1;URLAUTH=user+demo%40example.test")
    assert fetch(demo, url).endswith(b"f OK URLFETCH completed\r\n")
    assert demo.command("t", "FETCH 1 (FLAGS)")[0] == "* 1 FETCH (FLAGS (\\Recent))"


def test_urlfetch_locates_each_urls_section_once(imap: ImapHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    """The section a URL names is found once, when the URL is resolved, and every read of it (its size, its
    chunks, BINARY, BODYPARTSTRUCTURE) goes from there (decision 0076)."""
    imap.deliver(DEMO, MULTIPART)
    demo = session(imap)
    base = f"imap://{USER}@localhost/INBOX/;UID=1/;SECTION="
    text, fields = generate(
        demo, base + "1;URLAUTH=authuser", base + "HEADER.FIELDS%20(Subject);URLAUTH=authuser"
    )
    located: list[object] = []
    locate = fetch_module.locate_section

    def counting(*args: Any) -> Any:
        located.append(args[1])
        return locate(*args)

    monkeypatch.setattr(fetch_module, "locate_section", counting)
    other = session(imap, OTHER)
    response = fetch(other, text, f'("{text}" BODYPARTSTRUCTURE BINARY)', f'("{text}" BODY)', fields)
    assert response.endswith(b"Subject: parts\r\n\r\n\r\nf OK URLFETCH completed\r\n")
    assert b"(BINARY {14}\r\nCaf\xc3\xa9 au lait.)" in response
    assert b"(BODY {18}\r\nCaf=C3=A9 au lait.)" in response
    assert len(located) == 4  # one per URL
