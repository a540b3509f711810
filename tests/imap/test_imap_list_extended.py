"""LIST-EXTENDED (RFC 5258) and LIST-STATUS (RFC 5819): selection and return options, several patterns."""

from __future__ import annotations

import re

from tests.imap.transcript import ImapHarness, Transcript


def _client(imap: ImapHarness) -> Transcript:
    raw = imap.connect()
    caps = raw.greeting.split()
    assert "LIST-EXTENDED" in caps
    assert "LIST-STATUS" in caps
    raw.login()
    for tag, name in (("c1", "Fruit"), ("c2", "Fruit/Apple"), ("c3", "Fruit/Banana"), ("c4", "Veg/Peas")):
        assert raw.command(tag, f"CREATE {name}")[-1].startswith(f"{tag} OK")
    # CREATE made "Veg" too (RFC 9051 6.3.4); deleting it leaves a name that exists only as a parent
    assert raw.command("d1", "DELETE Veg")[-1].startswith("d1 OK")
    return raw


def _ours(reply: list[str]) -> list[str]:
    """The LIST responses for the mailboxes the test made (not the default ones)."""
    return [line for line in reply if '"Fruit' in line or '"Gone"' in line or '"Veg' in line]


def test_several_patterns_and_return_subscribed(imap: ImapHarness) -> None:
    raw = _client(imap)
    raw.command("u1", "SUBSCRIBE Fruit/Apple")
    reply = raw.command("l1", 'LIST "" ("Fruit" "Veg/*" "Fruit") RETURN (SUBSCRIBED CHILDREN)')
    assert reply[:-1] == [
        '* LIST (\\HasChildren) "/" "Fruit"',
        '* LIST (\\HasNoChildren) "/" "Veg/Peas"',
    ]
    reply = raw.command("l2", 'LIST () "" "Fruit/%" RETURN (SUBSCRIBED)')
    assert '* LIST (\\HasNoChildren \\Subscribed) "/" "Fruit/Apple"' in reply
    assert '* LIST (\\HasNoChildren) "/" "Fruit/Banana"' in reply
    # a parent that exists only as a parent is \Noselect
    assert '* LIST (\\Noselect \\HasChildren) "/" "Veg"' in raw.command("l3", 'LIST () "" (Veg)')
    raw.close()


def test_subscribed_selection_shows_nonexistent_names_and_childinfo(imap: ImapHarness) -> None:
    raw = _client(imap)
    raw.command("u1", "SUBSCRIBE Fruit/Banana")
    raw.command("u2", "SUBSCRIBE Gone")
    reply = raw.command("l1", 'LIST (SUBSCRIBED) "" "*"')
    assert _ours(reply) == [
        '* LIST (\\HasNoChildren \\Subscribed) "/" "Fruit/Banana"',
        '* LIST (\\NonExistent \\HasNoChildren \\Subscribed) "/" "Gone"',
    ]
    reply = raw.command("l2", 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"')
    assert _ours(reply) == [
        '* LIST (\\HasChildren) "/" "Fruit" ("CHILDINFO" ("SUBSCRIBED"))',
        '* LIST (\\NonExistent \\HasNoChildren \\Subscribed) "/" "Gone"',
    ]
    assert raw.command("l3", 'LIST (RECURSIVEMATCH) "" "%"')[-1].startswith("l3 BAD")
    assert raw.command("l4", 'LIST (BOGUS) "" "%"')[-1].startswith("l4 BAD")
    raw.close()


def test_special_use_selection(imap: ImapHarness) -> None:
    raw = _client(imap)
    reply = raw.command("l1", 'LIST (SPECIAL-USE) "" "*" RETURN (SPECIAL-USE)')
    assert reply[-1].startswith("l1 OK")
    names = [line for line in reply[:-1]]
    assert names
    assert all("\\HasNoChildren \\" in line for line in names)
    assert not any('"Fruit' in line for line in names)
    raw.close()


def test_list_status_sends_status_after_each_selectable_mailbox(imap: ImapHarness) -> None:
    raw = _client(imap)
    reply = raw.command("l1", 'LIST "" "Veg*" RETURN (STATUS (MESSAGES UIDNEXT))')
    assert reply[:-1] == [
        '* LIST (\\Noselect \\HasChildren) "/" "Veg"',
        '* LIST (\\HasNoChildren) "/" "Veg/Peas"',
        '* STATUS "Veg/Peas" (MESSAGES 0 UIDNEXT 1)',
    ]
    with_modseq = raw.command("l2", 'LIST "" "%" RETURN (STATUS (HIGHESTMODSEQ))')
    assert with_modseq[-1].startswith("l2 OK")
    status = re.compile(r"\* STATUS \"?INBOX\"? \(HIGHESTMODSEQ [1-9]\d*\)")
    assert any(status.fullmatch(line) for line in with_modseq)
    raw.close()


def test_list_status_is_not_sent_for_a_parent_listed_only_for_childinfo(imap: ImapHarness) -> None:
    """RFC 9051 6.3.9.2: STATUS follows only the names that match the selection criteria."""
    raw = _client(imap)
    raw.command("u1", "SUBSCRIBE Fruit/Apple")
    reply = raw.command("l1", 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%" RETURN (STATUS (MESSAGES))')
    assert '* LIST (\\HasChildren) "/" "Fruit" ("CHILDINFO" ("SUBSCRIBED"))' in reply
    assert not any(line.startswith('* STATUS "Fruit"') for line in reply)
    # the extended syntax with an empty pattern lists nothing (not the hierarchy delimiter)
    assert raw.command("l2", 'LIST "" "" RETURN (CHILDREN)') == ["l2 OK LIST completed"]
    raw.close()
