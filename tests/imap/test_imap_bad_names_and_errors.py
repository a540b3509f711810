"""Names that are not modified UTF-7 get NO, not BAD, and LIST patterns of that kind list what matches; a BAD
never ends a session, only a run of MAX_ERRORS of them announced with BYE (docs/decisions/0020)."""

from __future__ import annotations

import pytest

from postoffice.imap.session import MAX_ERRORS
from tests.imap.conftest import DEMO, message
from tests.imap.transcript import ImapHarness, Transcript

#: The outside tester's name: every printable ASCII special, with a bare "&" (modified UTF-7 wants "&-").
ODD = "!#$&'+,-.0123456789:;<=>?@^_`|[}"
ODD_MUTF7 = ODD.replace("&", "&-")


def _client(server: ImapHarness) -> Transcript:
    raw = server.connect()
    raw.login()
    return raw


def _alive(raw: Transcript, tag: str) -> None:
    assert raw.command(tag, "NOOP")[-1] == f"{tag} OK NOOP completed"


NOT_MUTF7 = [
    (f'SELECT "{ODD}"', "NO [NONEXISTENT]"),
    (f"SELECT {ODD}", "NO [NONEXISTENT]"),
    (f'EXAMINE "{ODD}"', "NO [NONEXISTENT]"),
    ("SELECT &AGE-", "NO [NONEXISTENT]"),  # "a" spelt the non-canonical way
    (f'STATUS "{ODD}" (MESSAGES)', "NO [NONEXISTENT]"),
    (f'DELETE "{ODD}"', "NO [NONEXISTENT]"),
    (f'RENAME "{ODD}" x', "NO [NONEXISTENT]"),
    (f'UNSUBSCRIBE "{ODD}"', "NO [NONEXISTENT]"),
    (f'CREATE "{ODD}"', "NO [CANNOT]"),
    (f'RENAME Junk "{ODD}"', "NO [CANNOT]"),
    (f'SUBSCRIBE "{ODD}"', "NO [CANNOT]"),
    (f'APPEND "{ODD}" {{5+}}\r\nhello', "NO [NONEXISTENT]"),
]


def test_a_name_that_is_not_modified_utf7_is_no_and_the_session_goes_on(imap: ImapHarness) -> None:
    raw = _client(imap)
    for i, (command, reply) in enumerate(NOT_MUTF7):
        answer = raw.command(f"t{i}", command)
        assert answer[-1].startswith(f"t{i} {reply}"), answer
        _alive(raw, f"n{i}")
    account = imap.account_ids[DEMO]
    names = {m.name for m in imap.call(imap.store.list_mailboxes(account))}
    assert names == {"INBOX", "Drafts", "Sent", "Trash", "Junk", "Archive"}
    assert ODD not in imap.call(imap.store.list_subscriptions(account))
    raw.close()


def test_copy_and_move_to_a_name_that_is_not_modified_utf7_are_no(imap: ImapHarness) -> None:
    imap.deliver(DEMO, message("one"))
    raw = _client(imap)
    raw.command("s1", "SELECT INBOX")
    assert raw.command("c1", f'COPY 1 "{ODD}"')[-1].startswith("c1 NO [NONEXISTENT]")
    assert raw.command("c2", f'UID MOVE 1 "{ODD}"')[-1].startswith("c2 NO [NONEXISTENT]")
    assert raw.command("f1", "FETCH 1 UID")[0] == "* 1 FETCH (UID 1)"
    raw.close()


def test_a_list_pattern_that_is_not_modified_utf7_lists_what_matches(imap: ImapHarness) -> None:
    raw = _client(imap)
    assert raw.command("c1", f'CREATE "{ODD_MUTF7}"')[-1].startswith("c1 OK")
    assert raw.command("s1", f'SELECT "{ODD_MUTF7}"')[-1].startswith("s1 OK")
    listed = f'* LIST (\\HasNoChildren) "/" "{ODD_MUTF7}"'
    assert raw.command("l1", f'LIST "" "{ODD}"') == [listed, "l1 OK LIST completed"]
    assert raw.command("l2", f'LIST "" "{ODD_MUTF7}"') == [listed, "l2 OK LIST completed"]
    assert raw.command("l3", 'LIST "" "*&*"') == [listed, "l3 OK LIST completed"]
    assert raw.command("l4", 'LIST "!#$&" "*"') == [listed, "l4 OK LIST completed"]  # the reference too
    assert raw.command("l5", 'LIST "" "&AEE-rchive"')[0].endswith('"Archive"')  # "&AEE-" is "A" ...
    assert raw.command("l6", 'LIST "" "x&y"') == ["l6 OK LIST completed"]  # ... and nothing has "x&y"
    raw.command("u1", f'SUBSCRIBE "{ODD_MUTF7}"')
    assert raw.command("l7", f'LSUB "" "{ODD}"') == [f'* LSUB () "/" "{ODD_MUTF7}"', "l7 OK LSUB completed"]
    raw.close()


def test_bad_replies_spread_over_a_session_never_end_it(imap: ImapHarness) -> None:
    """More BADs than MAX_ERRORS, of every kind, each followed by a command that works: all answered."""
    imap.deliver(DEMO, message("one"))
    raw = _client(imap)
    bad_commands = [
        "FOO",  # unknown command
        "FETCH 1 FLAGS",  # wrong state (not selected)
        "SELECT",  # syntax
        'LIST (BOGUS) "" "*"',  # unsupported option
        "SELECT INBOX (",  # syntax inside a command
        'LOGIN "x" "y"',  # wrong state
    ]
    selected_bad = [
        "FETCH 1000 FLAGS",  # sequence number beyond the mailbox
        "SEARCH FROG",
        "STORE 1 FLAGS (\\*)",
        "UID FETCH 1 BODY[FOO]",
    ]
    tag = 0
    for _round in range(MAX_ERRORS // len(bad_commands) + 2):
        for command in bad_commands:
            tag += 1
            assert raw.command(f"b{tag}", command)[-1].startswith(f"b{tag} BAD"), command
            _alive(raw, f"n{tag}")
    raw.command("s", "SELECT INBOX")
    for _round in range(MAX_ERRORS // len(selected_bad) + 2):
        for command in selected_bad:
            tag += 1
            assert raw.command(f"b{tag}", command)[-1].startswith(f"b{tag} BAD"), command
            assert raw.command(f"f{tag}", "FETCH 1 UID")[-1].startswith(f"f{tag} OK")
    assert tag > 2 * MAX_ERRORS
    raw.close()


def test_a_run_of_bad_commands_ends_with_bye(imap: ImapHarness) -> None:
    raw = _client(imap)
    for i in range(MAX_ERRORS - 1):
        assert raw.command(f"b{i}", "FOO")[-1].startswith(f"b{i} BAD")
    _alive(raw, "n1")  # a command that completes starts the count again
    for i in range(MAX_ERRORS - 1):
        assert raw.command(f"c{i}", "SELECT")[-1].startswith(f"c{i} BAD")
    raw.send(b"last FOO\r\n")
    assert raw.until_tagged("last") == ["last BAD unknown command FOO"]
    assert raw.line() == "* BYE Too many invalid commands"
    with pytest.raises(ConnectionError):
        raw.line()
    raw.close()


def test_bad_text_quoting_8bit_input_is_ascii(imap: ImapHarness) -> None:
    """RFC 9051 section 9: response text is ASCII unless the client enabled UTF-8."""
    raw = _client(imap)
    raw.send("b1 SELECT \u00e9t\u00e9\r\n".encode())
    (line,) = raw.until_tagged("b1")  # (decoded as UTF-8: 8-bit octets would be non-ASCII characters)
    assert line.startswith("b1 BAD "), line
    assert line.isascii(), line
    _alive(raw, "n1")
    raw.close()
