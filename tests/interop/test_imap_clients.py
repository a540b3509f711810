"""Real IMAP clients from Debian (`make deps` installs them) and from PyPI against a real `postoffice run`:
curl (STARTTLS on the imap port, implicit TLS on imaps), mbsync (isync), neomutt, getmail6, offlineimap3,
imapclient and imaplib. Mail arrives over SMTP; every test checks the effect independently, in the store's
database file (read-only) or the client's local Maildir, never only through the client that made it."""

from __future__ import annotations

import email
import imaplib
import os
import re
import shutil
import sqlite3
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from imapclient import IMAPClient

from postoffice.store import SYSTEM_FLAGS
from tests.integration.harness import DataDir, ServerProcess
from tests.integration.mailcheck import inbox_messages, store_path
from tests.support.mail import send_smtp, text_message

pytestmark = pytest.mark.interop

DEMO = "demo@example.test"
DEMO_PW = "demo-secret-pw"
CLIENT_TIMEOUT = 120
T = TypeVar("T")


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: `make deps` installs it")
    return path


def cacert(data: DataDir) -> str:
    return str(data.root / "tls" / "cert.pem")


def tls_context(data: DataDir) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cacert(data))


def deliver(server: ServerProcess, *subjects: str) -> None:
    """One message per subject over SMTP to demo; the 250 comes only after the store's commit."""
    messages = [
        text_message(
            subject,
            f"body of {subject}\r\n.leading dot\r\n",
            sender=f"{subject.replace(' ', '-')}@remote.test",
            date=f"Mon, 0{n + 1} Jun 2026 10:00:00 +0000",
        )
        for n, subject in enumerate(subjects)
    ]
    send_smtp(server.port("smtp"), *messages)


@dataclass(frozen=True)
class Stored:
    uid: int
    subject: str
    flags: frozenset[str]
    data: bytes


def store_state(data: DataDir, address: str = DEMO) -> dict[str, list[Stored]]:
    """Every mailbox of the account with its messages (UID order), straight from the database file."""
    conn = sqlite3.connect(f"file:{store_path(data.root)}?mode=ro", uri=True)
    try:
        boxes = conn.execute(
            "SELECT b.id, b.name FROM mailboxes b JOIN accounts a ON a.id = b.account_id WHERE a.address = ?",
            (address,),
        ).fetchall()
        state: dict[str, list[Stored]] = {}
        for box_id, name in boxes:
            rows = conn.execute(
                "SELECT m.uid, m.flags, m.keywords, d.data FROM messages m "
                "JOIN content_data d ON d.id = m.content_id WHERE m.mailbox_id = ? ORDER BY m.uid",
                (box_id,),
            ).fetchall()
            state[name] = [
                Stored(
                    int(uid),
                    str(email.message_from_bytes(bytes(blob))["Subject"]),
                    frozenset([f for i, f in enumerate(SYSTEM_FLAGS) if bits & (1 << i)] + keywords.split()),
                    bytes(blob),
                )
                for uid, bits, keywords, blob in rows
            ]
        return state
    finally:
        conn.close()


def without_tuid(data: bytes) -> bytes:
    """mbsync marks the copies it makes with an X-TUID header line to find them again (isync docs)."""
    return re.sub(rb"(?m)^X-TUID: [^\r\n]*\r?\n", b"", data, count=1)


def by_subject(messages: list[Stored]) -> dict[str, Stored]:
    return {m.subject: m for m in messages}


def as_crlf(data: bytes) -> bytes:
    """Maildir files hold LF line ends; the store holds CRLF."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@dataclass(frozen=True)
class MaildirMessage:
    path: Path
    subject: str
    flags: str  # the Maildir info letters, "" for a message in new/ or without info

    @property
    def data(self) -> bytes:
        return self.path.read_bytes()


def maildir_messages(folder: Path) -> dict[str, MaildirMessage]:
    """The messages of one Maildir folder by subject."""
    out = {}
    for sub in ("new", "cur"):
        if not (folder / sub).is_dir():
            continue
        for path in (folder / sub).iterdir():
            info = path.name.partition(":2,")[2] if ":2," in path.name else ""
            subject = str(email.message_from_bytes(path.read_bytes())["Subject"])
            out[subject] = MaildirMessage(path, subject, info)
    return out


def set_maildir_flags(message: MaildirMessage, flags: str) -> None:
    """What a Maildir mail reader does when the user changes flags: rename into cur/ with new info."""
    base = message.path.name.partition(":2,")[0]
    message.path.rename(message.path.parent.parent / "cur" / f"{base}:2,{''.join(sorted(flags))}")


def write_maildir_message(folder: Path, name: str, flags: str, text: str) -> None:
    for sub in ("cur", "new", "tmp"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "cur" / f"{name}:2,{flags}").write_bytes(text.encode())


def run_client(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HOME=str(home))
    return subprocess.run(args, capture_output=True, text=True, timeout=CLIENT_TIMEOUT, env=env)


@pytest.fixture
def admin(server: ServerProcess, data_dir: DataDir) -> Iterator[imaplib.IMAP4_SSL]:
    """A second, independent IMAP connection (imaplib over imaps) for server-side changes."""
    conn = imaplib.IMAP4_SSL("localhost", server.port("imaps"), ssl_context=tls_context(data_dir), timeout=60)
    conn.login(DEMO, DEMO_PW)
    try:
        yield conn
    finally:
        conn.logout()


def ok(result: tuple[str, list[T]]) -> list[T]:
    status, data = result
    assert status == "OK", data
    return data


OTHER = "other@example.test"
OTHER_PW = "other-secret-pw"
#: demo's folder "Team" as other names it (decision 0073: `Shared/<owner's local part>/<mailbox>`).
SHARED_TEAM = "Shared/demo/Team"


def share_team(admin: imaplib.IMAP4_SSL, rights: str = "lrswi") -> None:
    """demo (the owner, over imaplib) makes "Team" with "team one" and "team two" (\\Seen) and gives other
    these rights on it with SETACL (RFC 4314), as test_mbsync_syncs_a_folder_another_account_shares does."""
    ok(admin.create("Team"))
    ok(admin.append("Team", "", None, b"From: a@b.test\r\nSubject: team one\r\n\r\none\r\n"))
    ok(admin.append("Team", "(\\Seen)", None, b"From: a@b.test\r\nSubject: team two\r\n\r\ntwo\r\n"))
    ok(admin.setacl("Team", OTHER, rights))
    assert ok(admin.getacl("Team")) == [f'"Team" {DEMO} lrswipkxtecda {OTHER} {rights}'.encode()]


# ---------------------------------------------------------------------------------------------------- curl


def curl(*args: str, user: str = DEMO, password: str = DEMO_PW) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [need("curl"), "-sS", "-u", f"{user}:{password}", "--connect-to", "localhost::127.0.0.1:", *args],
        capture_output=True,
        timeout=CLIENT_TIMEOUT,
    )


@pytest.mark.parametrize("scheme", ["imap", "imaps"])
def test_curl_lists_examines_fetches_and_searches(
    scheme: str, server: ServerProcess, data_dir: DataDir
) -> None:
    deliver(server, "curl one", "curl two")
    stored = [data for _, data in inbox_messages(data_dir.root, DEMO)]
    base = f"{scheme}://localhost:{server.port(scheme)}/"
    tls = ["--ssl-reqd", "--cacert", cacert(data_dir)] if scheme == "imap" else ["--cacert", cacert(data_dir)]

    listing = curl(*tls, "-v", base)
    assert listing.returncode == 0, listing.stderr
    if scheme == "imap":
        assert b"STARTTLS" in listing.stderr
    lines = listing.stdout.decode().splitlines()
    assert '* LIST (\\HasNoChildren) "/" "INBOX"' in lines
    assert '* LIST (\\HasNoChildren \\Trash) "/" "Trash"' in lines

    examined = curl(*tls, "-X", "EXAMINE INBOX", base)
    assert examined.returncode == 0, examined.stderr
    assert "* 2 EXISTS" in examined.stdout.decode().splitlines()

    for uid, expected in enumerate(stored, 1):
        got = curl(*tls, f"{base}INBOX;UID={uid}")
        assert got.returncode == 0, got.stderr
        assert got.stdout == expected

    found = curl(*tls, "-X", "SEARCH FROM curl-two", f"{base}INBOX")
    assert found.returncode == 0, found.stderr
    assert found.stdout.decode().splitlines() == ["* SEARCH 2"]
    assert curl(*tls, "-X", "SEARCH SUBJECT nothing-like-this", f"{base}INBOX").stdout == b"* SEARCH\r\n"

    # curl fetched the messages with BODY[] in a selected (read-write) mailbox: both are \Seen now.
    assert [m.flags for m in store_state(data_dir)["INBOX"]] == [frozenset({"\\Seen"})] * 2


def test_curl_sends_no_password_before_starttls(server: ServerProcess, data_dir: DataDir) -> None:
    deliver(server, "curl plain")
    got = curl("-v", f"imap://localhost:{server.port('imap')}/INBOX;UID=1")
    assert got.returncode != 0
    assert b"LOGIN" not in got.stderr.split(b"LOGINDISABLED")[-1]
    assert b"AUTHENTICATE" not in got.stderr
    assert store_state(data_dir)["INBOX"][0].flags == frozenset()


def test_curl_lists_and_fetches_from_a_shared_folder(
    server: ServerProcess, data_dir: DataDir, admin: imaplib.IMAP4_SSL
) -> None:
    """other's curl sees demo's shared folder in its LIST and fetches from it by its shared name."""
    deliver(server, "private")  # in demo's INBOX, which is not shared
    share_team(admin)
    base = f"imaps://localhost:{server.port('imaps')}/"
    tls = ["--cacert", cacert(data_dir)]

    listing = curl(*tls, base, user=OTHER, password=OTHER_PW)
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.decode().splitlines()
    assert '* LIST (\\HasNoChildren) "/" "Shared/demo/Team"' in lines, lines
    assert '* LIST (\\Noselect \\HasChildren) "/" "Shared/demo"' in lines, lines
    assert not [line for line in lines if "Shared/demo/INBOX" in line]  # not shared: not listed
    # a URL naming the namespace prefix is a LIST with it as the reference: LIST "Shared" *
    below = curl(*tls, f"{base}Shared/", user=OTHER, password=OTHER_PW)
    assert below.returncode == 0, below.stderr
    assert below.stdout.decode().splitlines() == [
        '* LIST (\\Noselect \\HasChildren) "/" "Shared"',
        '* LIST (\\Noselect \\HasChildren) "/" "Shared/demo"',
        '* LIST (\\HasNoChildren) "/" "Shared/demo/Team"',
    ]
    found = curl(*tls, "-X", "SEARCH UNSEEN", f"{base}{SHARED_TEAM}", user=OTHER, password=OTHER_PW)
    assert found.returncode == 0, found.stderr
    assert found.stdout.decode().splitlines() == ["* SEARCH 1"]

    stored = by_subject(store_state(data_dir)["Team"])
    got = curl(*tls, f"{base}{SHARED_TEAM};UID={stored['team one'].uid}", user=OTHER, password=OTHER_PW)
    assert got.returncode == 0, got.stderr
    assert got.stdout == stored["team one"].data
    # curl's BODY[] in the read-write selection (other has "s") set \Seen, in demo's own folder.
    assert by_subject(store_state(data_dir)["Team"])["team one"].flags == {"\\Seen"}
    denied = curl(*tls, f"{base}Shared/demo/INBOX;UID=1", user=OTHER, password=OTHER_PW)
    assert denied.returncode != 0
    assert denied.stdout == b""


# -------------------------------------------------------------------------------------------------- mbsync


def mbsync(
    server: ServerProcess,
    data: DataDir,
    home: Path,
    *,
    user: str = DEMO,
    password: str = DEMO_PW,
    patterns: str = "*",
) -> str:
    binary = need("mbsync")
    local = home / "mail"
    local.mkdir(parents=True, exist_ok=True)
    rc = home / "mbsyncrc"
    rc.write_text(
        "IMAPAccount demo\n"
        f"Host localhost\nPort {server.port('imaps')}\nUser {user}\nPass {password}\n"
        f"SSLType IMAPS\nCertificateFile {cacert(data)}\n\n"
        "IMAPStore remote\nAccount demo\n\n"
        f"MaildirStore local\nPath {local}/\nInbox {local}/INBOX\nSubFolders Verbatim\n\n"
        f"Channel demo\nFar :remote:\nNear :local:\nPatterns {patterns}\n"
        "Create Both\nRemove None\nExpunge Both\nSyncState *\n"
    )
    proc = run_client([binary, "-V", "-c", str(rc), "-a"], home)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def test_mbsync_two_way_sync_of_folders_flags_and_deletions(
    server: ServerProcess, data_dir: DataDir, admin: imaplib.IMAP4_SSL, tmp_path: Path
) -> None:
    deliver(server, "sync zero", "sync one", "sync two")
    ok(admin.create("Work"))
    ok(admin.append("Work", "", None, b"From: a@b.test\r\nSubject: work keep\r\n\r\nkeep\r\n"))
    ok(admin.append("Work", "", None, b"From: a@b.test\r\nSubject: work drop\r\n\r\ndrop\r\n"))

    home = tmp_path / "mbsync"
    mbsync(server, data_dir, home)
    local = home / "mail"
    inbox = maildir_messages(local / "INBOX")
    assert set(inbox) == {"sync zero", "sync one", "sync two"}
    stored = by_subject(store_state(data_dir)["INBOX"])
    for subject, message in inbox.items():
        assert without_tuid(as_crlf(message.data)) == stored[subject].data
    assert set(maildir_messages(local / "Work")) == {"work keep", "work drop"}
    assert (local / "Trash").is_dir()
    assert (local / "Sent").is_dir()

    # Near-side changes: a new folder with a flagged message, flags on one message, another deleted.
    write_maildir_message(
        local / "Projects", "1.local", "F", "From: me@example.test\nSubject: local note\n\nlocal body\n"
    )
    set_maildir_flags(inbox["sync one"], "FS")
    inbox["sync two"].path.unlink()
    # Far-side changes through another connection: a new nested folder, flags, a deletion.
    ok(admin.create("Work/Reports"))
    ok(admin.append("Work/Reports", "(\\Answered)", None, b"From: a@b.test\r\nSubject: report\r\n\r\nr\r\n"))
    ok(admin.select("INBOX"))
    ok(admin.uid("STORE", str(stored["sync zero"].uid), "+FLAGS", "(\\Seen $Label1)"))
    ok(admin.select("Work"))
    [numbers] = ok(admin.search(None, "SUBJECT", '"work drop"'))
    assert numbers == b"2"
    ok(admin.store("2", "+FLAGS", "\\Deleted"))
    ok(admin.expunge())
    ok(admin.close())

    mbsync(server, data_dir, home)
    state = store_state(data_dir)
    inbox_now = by_subject(state["INBOX"])
    assert set(inbox_now) == {"sync zero", "sync one"}
    assert inbox_now["sync one"].flags == {"\\Seen", "\\Flagged"}
    assert "\\Seen" in inbox_now["sync zero"].flags
    [note] = state["Projects"]
    assert note.subject == "local note"
    assert note.flags == {"\\Flagged"}
    assert without_tuid(note.data) == b"From: me@example.test\r\nSubject: local note\r\n\r\nlocal body\r\n"
    assert [m.subject for m in state["Work"]] == ["work keep"]

    local_inbox = maildir_messages(local / "INBOX")
    assert set(local_inbox) == {"sync zero", "sync one"}
    assert "S" in local_inbox["sync zero"].flags
    assert set(maildir_messages(local / "Work")) == {"work keep"}
    [report] = maildir_messages(local / "Work" / "Reports").values()
    assert report.subject == "report"
    assert report.flags == "R"

    # A third run has nothing left to do and changes nothing.
    mbsync(server, data_dir, home)
    assert store_state(data_dir) == state


def test_mbsync_syncs_a_folder_another_account_shares(
    server: ServerProcess, data_dir: DataDir, admin: imaplib.IMAP4_SSL, tmp_path: Path
) -> None:
    """IMAP ACL (RFC 4314, decision 0073): demo shares a folder with other through SETACL; other's mbsync,
    with a pattern for the shared namespace only, gets it as Shared/demo/Team, and its flag change and its
    new message go back into demo's folder."""
    ok(admin.create("Team"))
    ok(admin.append("Team", "", None, b"From: a@b.test\r\nSubject: team one\r\n\r\none\r\n"))
    ok(admin.append("Team", "(\\Seen)", None, b"From: a@b.test\r\nSubject: team two\r\n\r\ntwo\r\n"))
    ok(admin.setacl("Team", "other@example.test", "lrswi"))
    assert ok(admin.getacl("Team")) == [b'"Team" demo@example.test lrswipkxtecda other@example.test lrswi']

    home = tmp_path / "mbsync-other"
    output = mbsync(
        server, data_dir, home, user="other@example.test", password="other-secret-pw", patterns="Shared/*"
    )
    local = home / "mail"
    team = maildir_messages(local / "Shared" / "demo" / "Team")
    assert set(team) == {"team one", "team two"}, output
    assert team["team two"].flags == "S"
    assert not (local / "Shared" / "demo" / "INBOX").exists()  # not shared: not listed, not synced

    set_maildir_flags(team["team one"], "S")
    write_maildir_message(
        local / "Shared" / "demo" / "Team",
        "1.other",
        "",
        "From: other@example.test\nSubject: from other\n\nhi\n",
    )
    mbsync(server, data_dir, home, user="other@example.test", password="other-secret-pw", patterns="Shared/*")
    shared = by_subject(store_state(data_dir)["Team"])
    assert set(shared) == {"team one", "team two", "from other"}
    assert shared["team one"].flags == {"\\Seen"}
    assert without_tuid(shared["from other"].data) == (
        b"From: other@example.test\r\nSubject: from other\r\n\r\nhi\r\n"
    )
    assert "Team" not in store_state(data_dir, "other@example.test")  # nothing was made in other's account


# ------------------------------------------------------------------------------------------------- neomutt


def neomutt(
    server: ServerProcess,
    data: DataDir,
    home: Path,
    keys: str,
    *,
    user: str = DEMO,
    password: str = DEMO_PW,
    spoolfile: str = "INBOX",
) -> subprocess.CompletedProcess[bytes]:
    """neomutt in batch: it opens `spoolfile` (a name under the account's imaps:// folder), runs `keys`."""
    binary = need("neomutt")
    script = need("script")  # neomutt needs a terminal; script(1) gives it a pseudo-terminal
    home.mkdir()
    muttrc = home / "muttrc"
    muttrc.write_text(
        f'set folder = "imaps://{user.replace("@", "%40")}@localhost:{server.port("imaps")}/"\n'
        f'set spoolfile = "+{spoolfile}"\n'
        f'set imap_user = "{user}"\nset imap_pass = "{password}"\n'
        f'set ssl_ca_certificates_file = "{cacert(data)}"\nset ssl_force_tls = yes\n'
        f'set certificate_file = "{home}/certs"\n'
        'set header_cache = ""\nset message_cachedir = ""\n'
        "set mail_check = 0\nset timeout = 1\nset wait_key = no\nset mark_old = no\n"
        "set delete = yes\nset quit = yes\nset move = no\nset sort = date\nset confirmappend = no\n"
    )
    command = f"{binary} -n -F {muttrc} -e 'push \"{keys}\"'"
    proc = subprocess.run(
        [script, "-qec", command, "/dev/null"],
        capture_output=True,
        timeout=CLIENT_TIMEOUT,
        env=dict(os.environ, HOME=str(home), TERM="dumb"),
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    return proc


def test_neomutt_reads_flags_and_deletes_in_batch(
    server: ServerProcess, data_dir: DataDir, tmp_path: Path
) -> None:
    deliver(server, "mutt zero", "mutt one", "mutt two", "mutt three")
    keys = (
        "<search>mutt one<enter><display-message><exit>"
        "<search>mutt two<enter><flag-message>"
        "<search>mutt zero<enter><delete-message>"
        "<search>mutt three<enter><save-message>=Archive<enter>"
        "<sync-mailbox><quit>"
    )
    neomutt(server, data_dir, tmp_path / "mutt", keys)
    state = store_state(data_dir)
    inbox = by_subject(state["INBOX"])
    assert set(inbox) == {"mutt one", "mutt two"}
    assert inbox["mutt one"].flags == {"\\Seen"}
    assert inbox["mutt two"].flags == {"\\Flagged"}
    [saved] = state["Archive"]  # save-message: UID COPY, then \Deleted and EXPUNGE in INBOX
    assert saved.subject == "mutt three"


def test_neomutt_opens_a_shared_folder_reads_and_flags(
    server: ServerProcess, data_dir: DataDir, admin: imaplib.IMAP4_SSL, tmp_path: Path
) -> None:
    """other's neomutt opens demo's shared folder by its name (it asks MYRIGHTS, then SELECTs it), reads a
    message and flags it; demo sees both flags."""
    share_team(admin)
    keys = (
        "<search>team one<enter><display-message><exit>"
        "<search>team one<enter><flag-message>"
        "<sync-mailbox><quit>"
    )
    home = tmp_path / "mutt-other"
    neomutt(server, data_dir, home, keys, user=OTHER, password=OTHER_PW, spoolfile=SHARED_TEAM)
    team = by_subject(store_state(data_dir)["Team"])
    assert team["team one"].flags == {"\\Seen", "\\Flagged"}
    assert team["team two"].flags == {"\\Seen"}
    # demo, the owner, sees the flags through its own connection too
    ok(admin.select("Team", readonly=True))
    flags = ok(admin.uid("FETCH", str(team["team one"].uid), "(FLAGS)"))
    assert isinstance(flags[0], bytes)
    assert set(imaplib.ParseFlags(flags[0])) == {b"\\Seen", b"\\Flagged"}
    assert "Team" not in store_state(data_dir, OTHER)


# ------------------------------------------------------------------------------------------------ getmail6


@pytest.fixture
def world_writable_dir() -> Iterator[Path]:
    """getmail refuses to deliver as root; it delivers as `nobody` then, who must be able to write here."""
    path = Path(tempfile.mkdtemp(prefix="imap-interop-"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def getmail(
    server: ServerProcess,
    data: DataDir,
    home: Path,
    *,
    delete: bool,
    login: str = DEMO,
    password: str = DEMO_PW,
    mailbox: str = "INBOX",
) -> list[bytes]:
    binary = need("getmail")
    maildir = home / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    for path in [home, *home.rglob("*")]:
        path.chmod(0o777)
    user = "user = nobody\n" if os.geteuid() == 0 else ""
    rc = home / "getmailrc"
    rc.write_text(
        "[retriever]\n"
        f"type = SimpleIMAPSSLRetriever\nserver = localhost\nport = {server.port('imaps')}\n"
        f'username = {login}\npassword = {password}\nca_certs = {cacert(data)}\nmailboxes = ("{mailbox}",)\n'
        "record_mailbox = false\n"
        f"\n[destination]\ntype = Maildir\npath = {maildir}/\n{user}"
        f"\n[options]\ndelete = {'true' if delete else 'false'}\nread_all = true\n"
        "delivered_to = false\nreceived = false\nverbose = 2\n"
    )
    proc = run_client([binary, "--rcfile", str(rc), "--getmaildir", str(home)], home)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return sorted(as_crlf(path.read_bytes()) for path in (maildir / "new").iterdir())


@pytest.mark.parametrize("delete", [False, True])
def test_getmail_over_imaps(
    delete: bool, server: ServerProcess, data_dir: DataDir, world_writable_dir: Path
) -> None:
    deliver(server, "getmail one", "getmail two")
    stored = [data for _, data in inbox_messages(data_dir.root, DEMO)]
    assert getmail(server, data_dir, world_writable_dir, delete=delete) == sorted(stored)
    after = store_state(data_dir)["INBOX"]
    if delete:
        assert after == []
    else:
        assert [m.data for m in after] == stored


@pytest.mark.parametrize(("delete", "rights"), [(False, "lr"), (True, "lrswited")])
def test_getmail_retrieves_from_a_shared_folder(
    delete: bool,
    rights: str,
    server: ServerProcess,
    data_dir: DataDir,
    admin: imaplib.IMAP4_SSL,
    world_writable_dir: Path,
) -> None:
    """other's getmail, with demo's shared folder as its one mailbox, retrieves both messages: with only "lr"
    (it EXAMINEs when it keeps the mail), or, with delete, through SELECT, UID STORE (\\Deleted \\Seen) and
    EXPUNGE, which "t", "e" and "s" allow, removing them from demo's folder."""
    share_team(admin, rights)
    stored = store_state(data_dir)["Team"]
    home = world_writable_dir
    got = getmail(server, data_dir, home, delete=delete, login=OTHER, password=OTHER_PW, mailbox=SHARED_TEAM)
    # getmail writes the envelope sender as Return-Path; an APPENDed message has none, so it is "<unknown>".
    assert [m.removeprefix(b"Return-Path: <unknown>\r\n") for m in got] == sorted(m.data for m in stored)
    assert store_state(data_dir)["Team"] == ([] if delete else stored)
    assert "Team" not in store_state(data_dir, OTHER)


# -------------------------------------------------------------------------------------------- offlineimap


def offlineimap(
    server: ServerProcess,
    data: DataDir,
    home: Path,
    *,
    user: str = DEMO,
    password: str = DEMO_PW,
    remote_options: str = "",
) -> str:
    """One offlineimap run (`remote_options`: more lines for the IMAP repository); its output."""
    binary = need("offlineimap")
    rc = home / "offlineimaprc"
    rc.write_text(
        "[general]\naccounts = demo\n"
        f"metadata = {home}/meta\nui = basic\n\n"
        "[Account demo]\nlocalrepository = local\nremoterepository = remote\n\n"
        f"[Repository local]\ntype = Maildir\nlocalfolders = {home}/mail\n\n"
        "[Repository remote]\ntype = IMAP\nremotehost = localhost\n"
        f"remoteport = {server.port('imaps')}\nremoteuser = {user}\nremotepass = {password}\n"
        f"ssl = yes\nsslcacertfile = {cacert(data)}\n{remote_options}"
    )
    proc = run_client([binary, "-c", str(rc), "-o", "-u", "basic"], home)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "ERROR" not in output, output
    return output


def test_offlineimap_syncs_to_a_maildir_and_back(
    server: ServerProcess, data_dir: DataDir, admin: imaplib.IMAP4_SSL, tmp_path: Path
) -> None:
    deliver(server, "oi zero", "oi one", "oi two")
    ok(admin.create("Lists"))
    ok(admin.append("Lists", "(\\Flagged)", None, b"From: l@b.test\r\nSubject: list post\r\n\r\npost\r\n"))
    home = tmp_path / "oi"
    home.mkdir()
    offlineimap(server, data_dir, home)
    local = home / "mail"
    inbox = maildir_messages(local / "INBOX")
    stored = by_subject(store_state(data_dir)["INBOX"])
    assert set(inbox) == {"oi zero", "oi one", "oi two"}
    for subject, message in inbox.items():
        assert as_crlf(message.data) == stored[subject].data
    [post] = maildir_messages(local / "Lists").values()
    assert post.subject == "list post"
    assert "F" in post.flags

    # Back to the server: a flag change, a deletion and a new message in the local Maildir.
    set_maildir_flags(inbox["oi one"], "RS")
    inbox["oi two"].path.unlink()
    write_maildir_message(
        local / "INBOX", "1.local", "S", "From: me@example.test\nSubject: oi local\n\nwritten offline\n"
    )
    offlineimap(server, data_dir, home)
    after = by_subject(store_state(data_dir)["INBOX"])
    assert set(after) == {"oi zero", "oi one", "oi local"}
    assert after["oi one"].flags == {"\\Seen", "\\Answered"}
    assert after["oi local"].flags == {"\\Seen"}
    assert b"written offline\r\n" in after["oi local"].data
    assert set(maildir_messages(local / "INBOX")) == {"oi zero", "oi one", "oi local"}


def test_offlineimap_syncs_a_shared_folder_both_ways(
    server: ServerProcess, data_dir: DataDir, admin: imaplib.IMAP4_SSL, tmp_path: Path
) -> None:
    """other's offlineimap, with a folderfilter for the shared namespace, syncs demo's shared folder into a
    Maildir (offlineimap's local separator is "."), and its flag change and new message go back to demo."""
    share_team(admin)
    home = tmp_path / "oi-other"
    home.mkdir()
    options = "folderfilter = lambda folder: folder.startswith('Shared/')\n"
    output = offlineimap(server, data_dir, home, user=OTHER, password=OTHER_PW, remote_options=options)
    local = home / "mail"
    assert sorted(path.name for path in local.iterdir()) == ["Shared.demo.Team"], output
    team = maildir_messages(local / "Shared.demo.Team")
    stored = by_subject(store_state(data_dir)["Team"])
    assert set(team) == {"team one", "team two"}, output
    for subject, message in team.items():
        assert as_crlf(message.data) == stored[subject].data
    assert team["team two"].flags == "S"

    set_maildir_flags(team["team one"], "FS")
    write_maildir_message(
        local / "Shared.demo.Team", "1.other", "", "From: other@example.test\nSubject: from other\n\nhi\n"
    )
    offlineimap(server, data_dir, home, user=OTHER, password=OTHER_PW, remote_options=options)
    shared = by_subject(store_state(data_dir)["Team"])
    assert set(shared) == {"team one", "team two", "from other"}
    assert shared["team one"].flags == {"\\Seen", "\\Flagged"}
    assert b"Subject: from other\r\n\r\nhi\r\n" in shared["from other"].data
    assert "Team" not in store_state(data_dir, OTHER)


# -------------------------------------------------------------------------------------- imapclient, imaplib


def test_imapclient_fetch_store_copy_move_expunge(server: ServerProcess, data_dir: DataDir) -> None:
    deliver(server, "ic zero", "ic one", "ic two", "ic three")
    stored = inbox_messages(data_dir.root, DEMO)
    with IMAPClient("localhost", server.port("imaps"), ssl_context=tls_context(data_dir), timeout=60) as c:
        c.login(DEMO, DEMO_PW)
        selected = c.select_folder("INBOX")
        assert selected[b"EXISTS"] == 4
        fetched = c.fetch([uid for uid, _ in stored], ["BODY.PEEK[]", "RFC822.SIZE", "FLAGS"])
        for uid, data in stored:
            assert fetched[uid][b"BODY[]"] == data
            assert fetched[uid][b"RFC822.SIZE"] == len(data)
            assert fetched[uid][b"FLAGS"] == (b"\\Recent",)
        uids = [uid for uid, _ in stored]
        c.add_flags(uids[1], [b"\\Flagged", b"$Important"])
        c.set_flags(uids[2], [b"\\Answered"])
        assert c.search(["FLAGGED"]) == [uids[1]]
        c.copy(uids[1], "Archive")
        c.move(uids[2], "Trash")
        c.delete_messages(uids[0])
        c.expunge()
        assert c.search(["ALL"]) == [uids[1], uids[3]]

    state = store_state(data_dir)
    assert [m.subject for m in state["INBOX"]] == ["ic one", "ic three"]
    assert state["INBOX"][0].flags == {"\\Flagged", "$Important"}
    [archived] = state["Archive"]
    assert archived.subject == "ic one"
    assert archived.flags == {"\\Flagged", "$Important"}
    assert archived.data == stored[1][1]
    [trashed] = state["Trash"]
    assert trashed.subject == "ic two"
    assert trashed.flags == {"\\Answered"}


def test_imapclient_finds_a_shared_folder_through_namespace_and_reads_it(
    server: ServerProcess, data_dir: DataDir, admin: imaplib.IMAP4_SSL
) -> None:
    """other's imapclient takes the "other users" prefix from NAMESPACE (RFC 2342), lists demo's shared folder
    under it, selects it and fetches from it; a STORE it makes is in demo's folder."""
    deliver(server, "private")  # in demo's INBOX, which is not shared
    share_team(admin)
    stored = store_state(data_dir)["Team"]
    with IMAPClient("localhost", server.port("imaps"), ssl_context=tls_context(data_dir), timeout=60) as c:
        c.login(OTHER, OTHER_PW)
        namespace = c.namespace()
        assert namespace.personal == (("", "/"),)
        assert namespace.other == (("Shared/", "/"),)
        assert namespace.shared is None
        [(prefix, delimiter)] = namespace.other
        listed = c.list_folders(prefix)
        assert listed == [
            ((b"\\Noselect", b"\\HasChildren"), delimiter.encode(), "Shared/demo"),
            ((b"\\HasNoChildren",), delimiter.encode(), SHARED_TEAM),
        ], listed
        assert c.list_folders(prefix, "%") == [((b"\\Noselect", b"\\HasChildren"), b"/", "Shared/demo")]
        selected = c.select_folder(SHARED_TEAM)
        assert selected[b"EXISTS"] == 2
        assert b"READ-WRITE" in selected
        uids = [m.uid for m in stored]
        assert c.search(["ALL"]) == uids
        fetched = c.fetch(uids, ["BODY.PEEK[]", "FLAGS"])
        for message in stored:
            assert fetched[message.uid][b"BODY[]"] == message.data
        assert set(fetched[uids[1]][b"FLAGS"]) >= {b"\\Seen"}
        c.add_flags(uids[0], [b"\\Flagged"])
        assert c.search(["FLAGGED"]) == [uids[0]]
        assert c.folder_exists("Shared/demo/INBOX") is False
    assert by_subject(store_state(data_dir)["Team"])["team one"].flags == {"\\Flagged"}


def test_imapclient_idle_reports_a_delivery_within_a_second(server: ServerProcess, data_dir: DataDir) -> None:
    deliver(server, "before idle")
    with IMAPClient("localhost", server.port("imaps"), ssl_context=tls_context(data_dir), timeout=60) as c:
        c.login(DEMO, DEMO_PW)
        assert c.select_folder("INBOX")[b"EXISTS"] == 1
        c.idle()
        deliver(server, "during idle")  # returns after the server's 250, that is after the commit
        deadline = time.monotonic() + 1.0
        seen: list[tuple[object, ...]] = []
        while not any(r[1:2] == (b"EXISTS",) for r in seen):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no EXISTS within 1 s of the delivery; got {seen}"
            seen += c.idle_check(timeout=remaining)
        assert (2, b"EXISTS") in seen
        c.idle_done()
        fetched = c.fetch([2], ["ENVELOPE"])
        assert fetched[2][b"ENVELOPE"].subject == b"during idle"
    assert len(inbox_messages(data_dir.root, DEMO)) == 2


def test_imaplib_over_starttls(server: ServerProcess, data_dir: DataDir) -> None:
    deliver(server, "lib zero", "lib one", "lib two")
    stored = inbox_messages(data_dir.root, DEMO)
    conn = imaplib.IMAP4("localhost", server.port("imap"), timeout=60)
    try:
        assert "LOGINDISABLED" in conn.capabilities
        ok(conn.starttls(tls_context(data_dir)))
        ok(conn.login(DEMO, DEMO_PW))
        assert ok(conn.select("INBOX")) == [b"3"]
        data = ok(conn.uid("FETCH", str(stored[0][0]), "(BODY[])"))
        assert isinstance(data[0], tuple)
        assert data[0][1] == stored[0][1]
        ok(conn.uid("STORE", str(stored[1][0]), "+FLAGS.SILENT", "(\\Draft)"))
        ok(conn.copy("2:3", "Drafts"))
        ok(conn.uid("MOVE", str(stored[2][0]), "Junk"))
        ok(conn.store("2", "+FLAGS", "(\\Deleted)"))
        # imaplib hands back every EXPUNGE it has collected: MOVE's (3), then EXPUNGE's own (2).
        assert ok(conn.expunge()) == [b"3", b"2"]
        assert conn.logout()[0] == "BYE"
    finally:
        if conn.state != "LOGOUT":
            conn.shutdown()
    state = store_state(data_dir)
    inbox = state["INBOX"]
    assert [(m.subject, m.flags) for m in inbox] == [("lib zero", frozenset({"\\Seen"}))]
    assert [(m.subject, m.flags) for m in state["Drafts"]] == [
        ("lib one", frozenset({"\\Draft"})),
        ("lib two", frozenset()),
    ]
    assert [m.subject for m in state["Junk"]] == ["lib two"]
