"""REPLACE and UID REPLACE (RFC 8508): the new message is stored, the APPENDUID comes in an untagged OK, the
original is expunged (EXPUNGE or VANISHED), in the same mailbox or another; and every refusal leaves the
original where it was and stores nothing."""

from __future__ import annotations

from tests.imap.conftest import DEMO, message
from tests.imap.transcript import ImapHarness, Transcript

DRAFT = b"From: demo@example.test\r\nSubject: draft, second version\r\n\r\nBetter words.\r\n"


def replace(raw: Transcript, tag: str, head: str, data: bytes = DRAFT) -> list[str]:
    raw.send(f"{tag} {head} {{{len(data)}+}}\r\n".encode() + data + b"\r\n")
    return raw.until_tagged(tag)


def contents(imap: ImapHarness, mailbox: str) -> list[tuple[int, bytes]]:
    messages = imap.call(imap.store.list_messages(imap.mailbox_id(DEMO, mailbox)))
    return [(m.uid, imap.call(imap.store.read_content(m.content_id))) for m in messages]


def test_replace_is_advertised(imap: ImapHarness) -> None:
    raw = imap.connect()
    raw.login()
    assert "REPLACE" in raw.command("c", "CAPABILITY")[0].split()
    raw.close()


def test_replace_in_the_selected_mailbox(imap: ImapHarness) -> None:
    imap.deliver(DEMO, message("first draft"), "Drafts", ("\\Draft",))
    imap.deliver(DEMO, message("other"), "Drafts")
    raw = imap.connect()
    raw.login()
    selected = raw.command("s", "SELECT Drafts")
    (uidvalidity,) = [line.split()[3].rstrip("]") for line in selected if "[UIDVALIDITY" in line]
    reply = replace(raw, "r", "REPLACE 1 Drafts (\\Draft \\Seen)")
    assert reply == [
        f"* OK [APPENDUID {uidvalidity} 3] Replacement message ready",
        "* 1 EXPUNGE",
        "* 2 EXISTS",
        "* 2 RECENT",  # the other message and the new one
        "r OK REPLACE completed",
    ]
    assert [uid for uid, _ in contents(imap, "Drafts")] == [2, 3]
    assert contents(imap, "Drafts")[1][1] == DRAFT
    assert raw.command("f", "UID FETCH 3 (FLAGS)")[0] == "* 2 FETCH (UID 3 FLAGS (\\Draft \\Seen \\Recent))"
    raw.close()


def test_uid_replace_into_another_mailbox_with_qresync(imap: ImapHarness) -> None:
    imap.deliver(DEMO, message("a"))
    imap.deliver(DEMO, message("b"))
    raw = imap.connect()
    raw.login()
    raw.command("e", "ENABLE QRESYNC")
    raw.command("s", "SELECT INBOX")
    reply = replace(raw, "r", "UID REPLACE 2 Drafts")
    assert reply[0].startswith("* OK [APPENDUID ")
    assert reply[0].endswith(" 1] Replacement message ready")
    assert "* VANISHED 2" in reply
    assert reply[-1].startswith("r OK [HIGHESTMODSEQ ")
    assert [uid for uid, _ in contents(imap, "INBOX")] == [1]
    assert contents(imap, "Drafts") == [(1, DRAFT)]
    raw.close()


def test_refusals_store_nothing_and_keep_the_original(imap: ImapHarness) -> None:
    imap.deliver(DEMO, message("a"))
    raw = imap.connect()
    raw.login()
    assert replace(raw, "n", "REPLACE 1 INBOX")[-1].startswith("n BAD")  # not selected
    raw.command("x", "EXAMINE INBOX")
    assert replace(raw, "x2", "REPLACE 1 INBOX")[-1].startswith("x2 NO [READ-ONLY]")
    raw.command("s", "SELECT INBOX")
    assert replace(raw, "a", "REPLACE 2 INBOX")[-1].startswith("a BAD")  # no message 2
    assert replace(raw, "b", "UID REPLACE 9 INBOX")[-1].startswith("b NO")  # no UID 9
    assert replace(raw, "c", "REPLACE 1 Nowhere")[-1].startswith("c NO [TRYCREATE]")
    assert replace(raw, "d", "REPLACE 1 INBOX", b"")[-1].startswith("d NO")  # an empty message
    # one message only: the second literal is a syntax error, after which nothing is stored
    raw.send(b"e REPLACE 1 INBOX {5+}\r\nhello {5+}\r\nworld\r\n")
    assert raw.until_tagged("e")[-1].startswith("e BAD")
    # a synchronizing literal is refused before it is sent: no "+" comes
    raw.send(b"f REPLACE 7 INBOX {5}\r\n")
    assert raw.until_tagged("f") == ["f BAD Invalid message sequence number: 7"]
    assert contents(imap, "INBOX") == [(1, message("a"))]
    assert [uid for uid, _ in contents(imap, "Drafts")] == []
    assert raw.command("z", "NOOP")[-1] == "z OK NOOP completed"
    raw.close()


def test_a_message_expunged_by_another_session_is_not_replaced(imap: ImapHarness) -> None:
    imap.deliver(DEMO, message("a"))
    imap.deliver(DEMO, message("b"))
    raw = imap.connect()
    raw.login()
    raw.command("s", "SELECT INBOX")
    other = imap.connect()
    other.login()
    other.command("s", "SELECT INBOX")
    other.command("d", "STORE 1 +FLAGS (\\Deleted)")
    other.command("e", "EXPUNGE")
    reply = replace(raw, "r", "REPLACE 1 Drafts")  # message 1 is still numbered for this session
    assert reply[-1].startswith("r NO [EXPUNGEISSUED]"), reply
    assert contents(imap, "Drafts") == []
    assert "* 1 EXPUNGE" in reply  # told with the NO (a REPLACE may send EXPUNGE)
    other.close()
    raw.close()
