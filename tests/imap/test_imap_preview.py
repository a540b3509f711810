"""PREVIEW (RFC 8970): the start of a message's text, at most 256 characters, white space runs made one
space, "" for a message without text, UTF-8 as a literal for a client that has not enabled UTF-8; PREVIEW
(LAZY) answers the same (the text is kept with the message)."""

from __future__ import annotations

import re

from tests.imap.conftest import DEMO, message
from tests.imap.transcript import ImapHarness


def test_preview_is_the_start_of_the_text_lazy_or_not(imap: ImapHarness) -> None:
    imap.deliver(DEMO, message("short", "Hello Joe,\r\n\r\n  do you think we can meet at 3:30?\r\n"))
    imap.deliver(DEMO, message("long", "word " * 200 + "\r\n"))
    imap.deliver(DEMO, message("empty", ""))
    raw = imap.connect()
    raw.login()
    assert "PREVIEW" in raw.command("c", "CAPABILITY")[0].split()
    raw.command("s", "SELECT INBOX")
    reply = raw.command("f", "FETCH 1:3 (PREVIEW)")
    assert reply[0] == '* 1 FETCH (PREVIEW "Hello Joe, do you think we can meet at 3:30?")'
    long = re.fullmatch(r'\* 2 FETCH \(PREVIEW "(.*)"\)', reply[1])
    assert long is not None
    assert len(long.group(1)) == 256
    assert long.group(1).startswith("word word")
    assert reply[2] == '* 3 FETCH (PREVIEW "")'
    lazy = raw.command("l", "UID FETCH 1 (FLAGS PREVIEW (LAZY))")
    assert (
        lazy[0] == '* 1 FETCH (UID 1 FLAGS (\\Recent) PREVIEW "Hello Joe, do you think we can meet at 3:30?")'
    )
    assert raw.command("b", "FETCH 1 (PREVIEW (EAGER))")[-1].startswith("b BAD")
    raw.close()


def test_a_non_ascii_preview_is_a_literal_unless_utf8_is_enabled(imap: ImapHarness) -> None:
    imap.deliver(
        DEMO,
        message("chinese", "").replace(b"\r\n\r\n", b"\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n", 1)
        + "你好，明天见。\r\n".encode(),
    )
    raw = imap.connect()
    raw.login()
    raw.command("s", "SELECT INBOX")
    literal = raw.command("f", "FETCH 1 (PREVIEW)")
    assert literal[0] == f"* 1 FETCH (PREVIEW {{{len('你好，明天见。'.encode())}}}"
    assert literal[1] == "你好，明天见。"
    raw.command("u", "UNSELECT")
    raw.command("e", "ENABLE UTF8=ACCEPT")
    raw.command("s2", "SELECT INBOX")
    assert raw.command("f2", "FETCH 1 (PREVIEW)")[0] == '* 1 FETCH (PREVIEW "你好，明天见。")'
    raw.close()
