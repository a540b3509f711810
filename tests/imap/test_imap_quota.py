"""The account's storage quota in IMAP (docs/decisions/0053): APPEND and COPY beyond it get NO [OVERQUOTA]
(RFC 9051 section 7.1) and store nothing; deleting always works over quota (MOVE to Trash, and COPY to
Trash, \\Deleted, EXPUNGE as clients without MOVE do), and then APPEND works again. The QUOTA extension
(RFC 9208): GETQUOTAROOT, GETQUOTA, STATUS DELETED-STORAGE; SETQUOTA is the administrator's."""

from __future__ import annotations

from tests.imap.conftest import DEMO, message
from tests.imap.transcript import ImapHarness


def sized(subject: str, octets: int) -> bytes:
    data = message(subject, "")
    return message(subject, "x" * (octets - len(data) - 2) + "\r\n")


def test_append_over_the_quota_gets_overquota_and_deleting_makes_room(imap: ImapHarness) -> None:
    for subject in ("one", "two", "three"):
        imap.deliver(DEMO, sized(subject, 1000))
    imap.call(imap.store.update_account(DEMO, quota=3500))
    client = imap.imaps()
    typ, data = client.capability()
    assert typ == "OK"
    assert b"QUOTA" in data[0].split()
    client.select("INBOX")
    typ, resp = client.append("INBOX", "", None, sized("four", 600))
    assert (typ, resp) == ("NO", [b"[OVERQUOTA] Over the storage quota"])
    typ, resp = client.append("Drafts", "(\\Draft)", None, sized("huge", 3501))
    assert (typ, resp) == ("NO", [b"[OVERQUOTA] Message larger than the storage quota"])
    assert client.append("INBOX", "", None, sized("small", 500))[0] == "OK"  # exactly at the quota
    typ, data = client.search(None, "ALL")
    assert data == [b"1 2 3 4"]
    assert imap.call(imap.store.list_messages(imap.mailbox_id(DEMO, "Drafts"))) == []

    assert client.append("INBOX", "", None, sized("five", 100))[0] == "NO"  # full
    assert client.uid("MOVE", "1", "Trash")[0] == "OK"  # deleting: a move adds nothing
    assert client.uid("COPY", "2", "Trash")[0] == "OK"  # a copy to Trash is never refused
    client.uid("STORE", "2", "+FLAGS.SILENT", "(\\Deleted)")
    assert client.expunge()[0] == "OK"
    client.select("Trash")
    client.store("1:*", "+FLAGS.SILENT", "(\\Deleted)")
    assert client.expunge()[0] == "OK"
    assert client.append("INBOX", "", None, sized("five", 100))[0] == "OK"  # room again
    assert imap.failures() == []
    client.logout()


def test_copy_over_the_quota_copies_nothing_and_the_session_goes_on(imap: ImapHarness) -> None:
    for subject in ("one", "two"):
        imap.deliver(DEMO, sized(subject, 1000))
    imap.call(imap.store.update_account(DEMO, quota=2500))
    raw = imap.connect()
    raw.login()
    raw.command("s", "SELECT INBOX")
    assert raw.command("c1", "UID COPY 1:2 Archive")[-1] == "c1 NO [OVERQUOTA] Over the storage quota"
    assert raw.command("c2", "COPY 1 Archive")[-1] == "c2 NO [OVERQUOTA] Over the storage quota"
    assert imap.call(imap.store.list_messages(imap.mailbox_id(DEMO, "Archive"))) == []
    assert raw.command("m", "MOVE 1:2 Archive")[-1] == "m OK MOVE completed"
    assert raw.command("n", "NOOP")[-1] == "n OK NOOP completed"
    raw.close()


def test_getquotaroot_and_getquota_report_storage_in_kib(imap: ImapHarness) -> None:
    imap.deliver(DEMO, sized("one", 4096))
    raw = imap.connect()
    raw.login()
    caps = raw.command("c", "CAPABILITY")[0].split()
    assert "QUOTA" in caps
    assert "QUOTA=RES-STORAGE" in caps
    assert "QUOTASET" not in caps
    assert raw.command("r0", "GETQUOTAROOT INBOX")[0] == '* QUOTAROOT "INBOX"'  # no quota: no root
    assert raw.command("q0", 'GETQUOTA ""')[-1].startswith("q0 NO [NONEXISTENT]")
    imap.call(imap.store.update_account(DEMO, quota=10 * 1024 * 1024))
    assert raw.command("r1", "GETQUOTAROOT INBOX")[:2] == [
        '* QUOTAROOT "INBOX" ""',
        '* QUOTA "" (STORAGE 4 10240)',
    ]
    assert raw.command("q1", 'GETQUOTA ""')[0] == '* QUOTA "" (STORAGE 4 10240)'
    assert raw.command("q2", 'GETQUOTA "other"')[-1].startswith("q2 NO [NONEXISTENT]")
    assert raw.command("r2", "GETQUOTAROOT Nowhere")[-1].startswith("r2 NO [NONEXISTENT]")
    assert raw.command("s", 'SETQUOTA "" (STORAGE 1)')[-1].startswith("s NO [NOPERM]")
    assert raw.command("s2", 'SETQUOTA "" (STORAGE')[-1].startswith("s2 BAD")
    raw.command("sel", "SELECT INBOX")
    raw.command("d", "STORE 1 +FLAGS.SILENT (\\Deleted)")
    status = raw.command("st", "STATUS INBOX (DELETED DELETED-STORAGE MESSAGES)")
    assert status[0] == '* STATUS "INBOX" (DELETED 1 DELETED-STORAGE 4 MESSAGES 1)'
    raw.close()
