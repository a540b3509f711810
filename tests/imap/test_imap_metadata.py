"""METADATA and METADATA-SERVER (RFC 5464, decision 0067): GETMETADATA with MAXSIZE and DEPTH, SETMETADATA
with strings, literals and literal8, NIL to remove, the server's entries ("") and the mailboxes', the entry
name rules (BAD), the limits (NO [METADATA MAXSIZE n], NO [METADATA TOOMANY]), the read-only /shared/admin,
and annotations following RENAME and going with DELETE."""

from __future__ import annotations

import pytest

from postoffice.imap import commands_metadata
from postoffice.imap.commands_metadata import MAX_ENTRIES, MAX_VALUE_SIZE
from postoffice.store import MetadataLimits
from tests.imap.transcript import OTHER, ImapHarness, Transcript, session


def with_literal(raw: Transcript, tag: str, head: bytes, value: bytes, tail: bytes = b")") -> list[str]:
    """`head` then `value` as a non-synchronizing literal (`~{n+}` when it holds NUL), then `tail`."""
    marker = b"~{%d+}" if b"\x00" in value else b"{%d+}"
    raw.send(tag.encode() + b" " + head + b" " + marker % len(value) + b"\r\n" + value + tail + b"\r\n")
    return raw.until_tagged(tag)


def test_metadata_and_metadata_server_are_advertised(imap: ImapHarness) -> None:
    raw = imap.connect()
    assert {"METADATA", "METADATA-SERVER"} <= set(raw.command("c", "CAPABILITY")[0].split())
    # RFC 5464 4.2 and 4.3: only in the authenticated and selected states
    assert raw.command("g", 'GETMETADATA "" /shared/comment')[-1].startswith("g BAD")
    raw.login()
    assert {"METADATA", "METADATA-SERVER"} <= set(raw.command("c2", "CAPABILITY")[0].split())
    raw.close()


def test_server_annotations_and_the_read_only_admin_entry(imap: ImapHarness) -> None:
    raw = session(imap)
    assert raw.command("a", 'GETMETADATA "" /shared/admin') == [
        '* METADATA "" (/shared/admin "mailto:postmaster@example.test")',
        "a OK GETMETADATA completed",
    ]
    assert raw.command("b", 'SETMETADATA "" (/shared/admin "mailto:me@example.test")')[-1].startswith(
        "b NO [NOPERM]"
    )
    assert raw.command("b2", 'SETMETADATA "" (/SHARED/ADMIN/x "y")')[-1].startswith("b2 NO [NOPERM]")
    assert raw.command("c", 'SETMETADATA "" (/shared/comment "Shared comment")') == [
        "c OK SETMETADATA completed"
    ]
    assert raw.command("d", 'GETMETADATA "" /shared/comment') == [
        '* METADATA "" (/shared/comment "Shared comment")',
        "d OK GETMETADATA completed",
    ]
    # a server entry is not a mailbox entry, and a name without a value is answered NIL
    assert (
        raw.command("e", "GETMETADATA INBOX /shared/comment")[0] == '* METADATA "INBOX" (/shared/comment NIL)'
    )
    # DEPTH over the server's entries takes the computed one too
    assert raw.command("f", 'GETMETADATA "" (DEPTH 1) /shared')[0] == (
        '* METADATA "" (/shared NIL /shared/admin "mailto:postmaster@example.test" '
        '/shared/comment "Shared comment")'
    )
    raw.close()
    # the server entries are the account's own: another account does not see them (decision 0067)
    other = session(imap, OTHER)
    assert other.command("g", 'GETMETADATA "" /shared/comment')[0] == '* METADATA "" (/shared/comment NIL)'
    other.close()


def test_mailbox_annotations_set_get_and_remove_as_the_rfc_examples(imap: ImapHarness) -> None:
    raw = session(imap)
    assert raw.command(
        "a", 'SETMETADATA INBOX (/private/comment "My own comment" /shared/comment "This one is for you!")'
    ) == ["a OK SETMETADATA completed"]  # no METADATA response (RFC 5464 4.3)
    assert raw.command("b", 'GETMETADATA "INBOX" /private/comment') == [
        '* METADATA "INBOX" (/private/comment "My own comment")',
        "b OK GETMETADATA completed",
    ]
    expected = '* METADATA "INBOX" (/shared/comment "This one is for you!" /private/comment "My own comment")'
    assert raw.command("c", 'GETMETADATA "INBOX" (/shared/comment /private/comment)')[0] == expected
    # several entries without parentheses, as RFC 5464 4.4.1's examples send them
    assert raw.command("d", "GETMETADATA INBOX /shared/comment /private/comment")[0] == expected
    # names are case-insensitive, answered lower-case; an entry asked twice comes once
    assert raw.command("e", "GETMETADATA inbox (/PRIVATE/Comment /private/comment)")[0] == (
        '* METADATA "INBOX" (/private/comment "My own comment")'
    )
    assert raw.command("f", "SETMETADATA INBOX (/Private/COMMENT NIL)") == ["f OK SETMETADATA completed"]
    assert raw.command("g", "GETMETADATA INBOX (/private/comment /shared/comment)")[0] == (
        '* METADATA "INBOX" (/private/comment NIL /shared/comment "This one is for you!")'
    )
    raw.close()
    # another account's INBOX is its own
    other = session(imap, OTHER)
    assert (
        other.command("h", "GETMETADATA INBOX /shared/comment")[0]
        == '* METADATA "INBOX" (/shared/comment NIL)'
    )
    other.close()


def test_values_as_literals_literal8_and_quoted_strings(imap: ImapHarness) -> None:
    raw = session(imap)
    two_lines = b"My new comment across\r\ntwo lines."
    assert with_literal(raw, "a", b"SETMETADATA INBOX (/private/comment", two_lines) == [
        "a OK SETMETADATA completed"
    ]
    raw.send(b"b GETMETADATA INBOX /private/comment\r\n")
    assert raw.response("b") == (
        b'* METADATA "INBOX" (/private/comment {33}\r\n' + two_lines + b")\r\nb OK GETMETADATA completed\r\n"
    )
    binary = b"\x00\x01\xff binary \x00"
    assert with_literal(raw, "c", b"SETMETADATA INBOX (/private/vendor/example/blob", binary) == [
        "c OK SETMETADATA completed"
    ]
    raw.send(b"d GETMETADATA INBOX /private/vendor/example/blob\r\n")
    assert raw.response("d") == (
        b'* METADATA "INBOX" (/private/vendor/example/blob ~{12}\r\n'
        + binary
        + b")\r\nd OK GETMETADATA completed\r\n"
    )
    assert raw.command("e", r'SETMETADATA INBOX (/shared/comment "say \"hi\" \\ bye" /private/empty "")')[
        -1
    ] == ("e OK SETMETADATA completed")
    assert raw.command("f", "GETMETADATA INBOX (/shared/comment /private/empty)")[0] == (
        r'* METADATA "INBOX" (/shared/comment "say \"hi\" \\ bye" /private/empty "")'
    )
    raw.close()


def test_maxsize_leaves_out_long_values_and_tells_the_longest(imap: ImapHarness) -> None:
    raw = session(imap)
    long_value, longer_value = b"x" * 2199, b"y" * 3000
    with_literal(
        raw, "a", b"SETMETADATA INBOX (/shared/comment", long_value, b' /private/comment "My own comment")'
    )
    with_literal(raw, "b", b"SETMETADATA INBOX (/shared/vendor/example/other", longer_value)
    assert raw.command("c", 'GETMETADATA "INBOX" (MAXSIZE 1024) (/shared/comment /private/comment)') == [
        '* METADATA "INBOX" (/private/comment "My own comment")',
        "c OK [METADATA LONGENTRIES 2199] GETMETADATA completed",
    ]
    # the options before the mailbox name, as RFC 5464's grammar has them; the longest left out is told
    reply = raw.command("d", "GETMETADATA (MAXSIZE 1024 DEPTH infinity) INBOX /shared")
    assert reply == [
        '* METADATA "INBOX" (/shared NIL)',
        "d OK [METADATA LONGENTRIES 3000] GETMETADATA completed",
    ]
    # nothing left out: no response code
    assert raw.command("e", "GETMETADATA INBOX (MAXSIZE 2199) /shared/comment")[-1] == (
        "e OK GETMETADATA completed"
    )
    raw.close()


def test_depth_0_1_and_infinity(imap: ImapHarness) -> None:
    raw = session(imap)
    raw.command(
        "a",
        'SETMETADATA INBOX (/private/filters/values/small "SMALLER 5000" '
        '/private/filters/values/boss "FROM \\"boss@example.com\\"" /private/filters/values/boss/note "n" '
        '/private/filters/other "o")',
    )
    assert raw.command("b", "GETMETADATA INBOX (/private/filters/values)")[0] == (
        '* METADATA "INBOX" (/private/filters/values NIL)'  # DEPTH 0 when not given
    )
    assert raw.command("c", 'GETMETADATA "INBOX" (DEPTH 1) (/private/filters/values)') == [
        '* METADATA "INBOX" (/private/filters/values NIL /private/filters/values/boss '
        '"FROM \\"boss@example.com\\"" /private/filters/values/small "SMALLER 5000")',
        "c OK GETMETADATA completed",
    ]
    assert raw.command("d", "GETMETADATA INBOX (DEPTH infinity) /private/filters")[0] == (
        '* METADATA "INBOX" (/private/filters NIL /private/filters/other "o" /private/filters/values/boss '
        '"FROM \\"boss@example.com\\"" /private/filters/values/boss/note "n" '
        '/private/filters/values/small "SMALLER 5000")'
    )
    # overlapping requests answer each entry once
    reply = raw.command(
        "e", "GETMETADATA INBOX (DEPTH 1) (/private/filters/values/boss /private/filters/values)"
    )
    assert reply[0] == (
        '* METADATA "INBOX" (/private/filters/values/boss "FROM \\"boss@example.com\\"" '
        '/private/filters/values/boss/note "n" /private/filters/values NIL '
        '/private/filters/values/small "SMALLER 5000")'
    )
    assert raw.command("f", "GETMETADATA INBOX (DEPTH 0) /private/filters/other")[0] == (
        '* METADATA "INBOX" (/private/filters/other "o")'
    )
    raw.close()


@pytest.mark.parametrize(
    "command",
    [
        "GETMETADATA INBOX /private/c*mment",
        'GETMETADATA INBOX "/private/com%ment"',
        "GETMETADATA INBOX /private//comment",
        "GETMETADATA INBOX /private/comment/",
        "GETMETADATA INBOX /comment",
        "GETMETADATA INBOX private/comment",
        "GETMETADATA INBOX /privateer/comment",
        'GETMETADATA INBOX "/private/com\tment"',
        "GETMETADATA INBOX /private/" + "x" * 1020,
        "GETMETADATA INBOX (DEPTH 2) /private",
        "GETMETADATA INBOX (MAXSIZE -1) /private",
        "GETMETADATA INBOX (DEPTH 1 DEPTH 1) /private",
        "GETMETADATA INBOX (PARTIAL 1:2) /private",
        "GETMETADATA INBOX",
        'SETMETADATA INBOX (/private "x")',
        'SETMETADATA INBOX (/shared/vendor/example "x")',
        "SETMETADATA INBOX (/private/comment x)",
        "SETMETADATA INBOX ()",
        'SETMETADATA INBOX /private/comment "x"',
        'SETMETADATA "" (/private/c%mment "x")',
    ],
)
def test_invalid_entry_names_and_arguments_are_bad(imap: ImapHarness, command: str) -> None:
    raw = session(imap)
    assert raw.command("t", command)[-1].startswith("t BAD"), command
    raw.close()


def test_names_within_the_rules_are_taken(imap: ImapHarness) -> None:
    raw = session(imap)
    assert raw.command("a", 'SETMETADATA INBOX (/shared/vendor/example/x "1" "/private/with space" "2")')[
        -1
    ] == ("a OK SETMETADATA completed")
    assert (
        raw.command("b", "GETMETADATA INBOX (/shared /private)")[0]
        == '* METADATA "INBOX" (/shared NIL /private NIL)'
    )
    assert raw.command("c", 'GETMETADATA INBOX "/private/with space"')[0] == (
        '* METADATA "INBOX" ("/private/with space" "2")'
    )
    raw.close()


def test_a_value_over_the_limit_is_no_metadata_maxsize(imap: ImapHarness) -> None:
    raw = session(imap)
    largest = b"v" * MAX_VALUE_SIZE
    assert with_literal(raw, "a", b"SETMETADATA INBOX (/private/large", largest) == [
        "a OK SETMETADATA completed"
    ]
    # one octet more: read (the command fits its line limit), refused by the value limit
    reply = with_literal(
        raw, "b", b'SETMETADATA INBOX (/private/comment "kept" /private/larger', largest + b"v"
    )
    assert reply[-1].startswith(f"b NO [METADATA MAXSIZE {MAX_VALUE_SIZE}]")
    # longer than a command may be: refused before the literal, with the same code and no "+"
    raw.send(b"c SETMETADATA INBOX (/private/larger {70000}\r\n")
    assert raw.until_tagged("c")[-1].startswith(f"c NO [METADATA MAXSIZE {MAX_VALUE_SIZE}]")
    raw.send(b"d SETMETADATA INBOX (/private/larger {70000+}\r\n" + b"v" * 70000 + b")\r\n")
    assert raw.until_tagged("d")[-1].startswith(f"d NO [METADATA MAXSIZE {MAX_VALUE_SIZE}]")
    # nothing of the refused commands was set
    assert raw.command("e", "GETMETADATA INBOX (/private/comment /private/larger)")[0] == (
        '* METADATA "INBOX" (/private/comment NIL /private/larger NIL)'
    )
    assert raw.command("f", "GETMETADATA INBOX (MAXSIZE 0) /private/large")[-1] == (
        f"f OK [METADATA LONGENTRIES {MAX_VALUE_SIZE}] GETMETADATA completed"
    )
    assert raw.command("n", "NOOP") == ["n OK NOOP completed"]  # the session goes on
    raw.close()


def test_too_many_annotations_is_no_metadata_toomany_and_changes_nothing(imap: ImapHarness) -> None:
    raw = session(imap)
    entries = " ".join(f'/private/n{i} "v"' for i in range(MAX_ENTRIES))
    assert raw.command("a", f"SETMETADATA INBOX ({entries})") == ["a OK SETMETADATA completed"]
    assert raw.command("b", 'SETMETADATA INBOX (/private/n0 "changed" /private/new "x")')[-1].startswith(
        "b NO [METADATA TOOMANY]"
    )
    assert raw.command("c", "GETMETADATA INBOX (/private/n0 /private/new)")[0] == (
        '* METADATA "INBOX" (/private/n0 "v" /private/new NIL)'
    )
    # replacing, and a removal with an addition, stay within the count
    assert raw.command("d", 'SETMETADATA INBOX (/private/n0 "changed" /private/n1 NIL /private/new "x")')[
        -1
    ] == ("d OK SETMETADATA completed")
    # another mailbox and the server count apart
    assert raw.command("e", 'SETMETADATA Drafts (/private/comment "x")')[-1] == "e OK SETMETADATA completed"
    assert raw.command("f", f'SETMETADATA "" ({entries})')[-1] == "f OK SETMETADATA completed"
    assert raw.command("g", 'SETMETADATA "" (/shared/comment "x")')[-1].startswith("g NO [METADATA TOOMANY]")
    raw.close()


def test_the_account_limit_is_no_metadata_toomany(imap: ImapHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        commands_metadata,
        "LIMITS",
        MetadataLimits(max_value_size=MAX_VALUE_SIZE, max_entries=10, max_account_octets=100),
    )
    raw = session(imap)
    raw.command("m", "CREATE Work")
    assert (
        raw.command("a", f'SETMETADATA Work (/private/comment "{"x" * 70}")')[-1]
        == "a OK SETMETADATA completed"
    )
    assert raw.command("b", f'SETMETADATA Drafts (/private/comment "{"x" * 20}")')[-1].startswith(
        "b NO [METADATA TOOMANY]"
    )
    # the annotations of a deleted mailbox count no more: they went with it
    raw.command("d", "DELETE Work")
    assert raw.command("c", f'SETMETADATA Drafts (/private/comment "{"x" * 20}")')[-1] == (
        "c OK SETMETADATA completed"
    )
    raw.close()


def test_a_mailbox_must_exist(imap: ImapHarness) -> None:
    raw = session(imap)
    assert raw.command("a", "GETMETADATA Nowhere /private/comment")[-1].startswith("a NO [NONEXISTENT]")
    assert raw.command("b", 'SETMETADATA Nowhere (/private/comment "x")')[-1].startswith("b NO [NONEXISTENT]")
    assert raw.command("c", 'SETMETADATA "&Jjo" (/private/comment "x")')[-1].startswith("c NO [NONEXISTENT]")
    raw.close()


def test_annotations_follow_rename_and_go_with_delete(imap: ImapHarness) -> None:
    raw = session(imap)
    raw.command("a", "CREATE Work/2026")
    raw.command("b", 'SETMETADATA Work (/private/comment "work")')
    raw.command("c", 'SETMETADATA Work/2026 (/shared/comment "year")')
    raw.command("d", 'SETMETADATA INBOX (/private/comment "inbox")')
    assert raw.command("e", "RENAME Work Job")[-1] == "e OK RENAME completed"
    assert (
        raw.command("f", "GETMETADATA Job /private/comment")[0]
        == '* METADATA "Job" (/private/comment "work")'
    )
    assert raw.command("g", "GETMETADATA Job/2026 /shared/comment")[0] == (
        '* METADATA "Job/2026" (/shared/comment "year")'
    )
    # RFC 5464 4.1: renaming INBOX copies its annotations and INBOX keeps them
    assert raw.command("h", "RENAME INBOX Old")[-1] == "h OK RENAME completed"
    assert (
        raw.command("i", "GETMETADATA Old /private/comment")[0]
        == '* METADATA "Old" (/private/comment "inbox")'
    )
    assert raw.command("j", "GETMETADATA INBOX /private/comment")[0] == (
        '* METADATA "INBOX" (/private/comment "inbox")'
    )
    # DELETE takes them: a mailbox created with the name again starts without (nor does CREATE inherit)
    raw.command("k", "DELETE Job/2026")
    raw.command("l", "CREATE Job/2026")
    assert raw.command("m", "GETMETADATA Job/2026 /shared/comment")[0] == (
        '* METADATA "Job/2026" (/shared/comment NIL)'
    )
    raw.close()


def test_no_unsolicited_metadata_and_enable_metadata_enables_nothing(imap: ImapHarness) -> None:
    raw = session(imap)
    assert raw.command("e", "ENABLE METADATA METADATA-SERVER") == ["* ENABLED", "e OK ENABLE completed"]
    raw.command("s", "SELECT INBOX")
    other = session(imap)
    other.command("a", 'SETMETADATA INBOX (/shared/comment "changed by another session")')
    other.command("b", 'SETMETADATA "" (/shared/comment "changed too")')
    assert raw.command("n", "NOOP") == ["n OK NOOP completed"]
    # in the selected state both commands work
    assert raw.command("g", "GETMETADATA INBOX /shared/comment")[0] == (
        '* METADATA "INBOX" (/shared/comment "changed by another session")'
    )
    assert raw.command("h", "SETMETADATA INBOX (/shared/comment NIL)") == ["h OK SETMETADATA completed"]
    other.close()
    raw.close()


def test_mailbox_names_are_answered_as_the_session_writes_them(imap: ImapHarness) -> None:
    raw = session(imap)
    raw.command("a", 'CREATE "Entw&APw-rfe"')
    raw.command("b", 'SETMETADATA "Entw&APw-rfe" (/private/comment "plain")')
    assert raw.command("c", 'GETMETADATA "Entw&APw-rfe" /private/comment')[0] == (
        '* METADATA "Entw&APw-rfe" (/private/comment "plain")'
    )
    raw.command("u", "ENABLE UTF8=ACCEPT")
    raw.send('d SETMETADATA "Entwürfe" (/private/comment "été")\r\n'.encode())
    assert raw.until_tagged("d") == ["d OK SETMETADATA completed"]
    raw.send(b'e GETMETADATA "Entw\xc3\xbcrfe" /private/comment\r\n')
    assert raw.response("e").split(b"\r\n")[0] == '* METADATA "Entwürfe" (/private/comment "été")'.encode()
    raw.close()
    # without UTF-8, an 8-bit value goes as a literal
    rev1 = session(imap)
    rev1.send(b'f GETMETADATA "Entw&APw-rfe" /private/comment\r\n')
    assert rev1.response("f").split(b"\r\n")[:2] == [
        b'* METADATA "Entw&APw-rfe" (/private/comment {5}',
        "été)".encode(),
    ]
    rev1.close()
    assert imap.failures() == []


def test_private_specialuse_is_the_mailboxs_special_use_and_read_only(imap: ImapHarness) -> None:
    """RFC 6154 section 4: /private/specialuse is tied to the special-use attribute LIST shows."""
    raw = session(imap)
    assert raw.command("a", "GETMETADATA Sent /private/specialuse") == [
        '* METADATA "Sent" (/private/specialuse "\\\\Sent")',
        "a OK GETMETADATA completed",
    ]
    raw.command("c", "CREATE Later")
    assert (
        raw.command("d", "GETMETADATA Later (DEPTH infinity) /private")[0]
        == '* METADATA "Later" (/private NIL)'
    )
    assert raw.command("e", "GETMETADATA INBOX /private/specialuse")[0] == (
        '* METADATA "INBOX" (/private/specialuse NIL)'
    )
    assert raw.command("f", 'SETMETADATA Later (/private/specialuse "\\\\Junk")')[-1].startswith(
        "f NO [NOPERM]"
    )
    assert raw.command("g", "SETMETADATA Sent (/PRIVATE/SPECIALUSE NIL)")[-1].startswith("g NO [NOPERM]")
    assert raw.command("h", "GETMETADATA Sent (DEPTH 1) /private")[0] == (
        '* METADATA "Sent" (/private NIL /private/specialuse "\\\\Sent")'
    )
    raw.close()
