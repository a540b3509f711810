"""SORT (RFC 5256 section 3), SORT=DISPLAY (RFC 5957), ESORT (RFC 5267 section 3) and THREAD=ORDEREDSUBJECT /
THREAD=REFERENCES (RFC 5256) through the protocol: the keys, REVERSE, ties in mailbox order, the search keys
that choose the messages, sequence numbers and UIDs, ESEARCH answers, SAVE, MODSEQ, errors, and threads that
follow the mailbox as it changes."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from postoffice.imap import commands_sort, sort_thread
from tests.imap.conftest import DEMO
from tests.imap.transcript import ImapHarness, Transcript


def mail(subject: str = "", **headers: str) -> bytes:
    """A message with the given header fields (underscores in names become hyphens); no Date unless given."""
    fields = {"From": "Sender <sender@remote.test>", "To": DEMO, "Subject": subject}
    fields.update({name.replace("_", "-"): value for name, value in headers.items()})
    head = "".join(f"{name}: {value}\r\n" for name, value in fields.items() if value is not None)
    return f"{head}\r\nbody\r\n".encode()


def date(day: int, hour: int = 12) -> str:
    return f"Tue, {day:02d} Dec 2026 {hour:02d}:00:00 +0000"


def selected(imap: ImapHarness) -> Transcript:
    raw = imap.connect()
    raw.login()
    raw.command("s", "SELECT INBOX")
    return raw


def answer(raw: Transcript, tag: str, command: str, kind: str = "SORT") -> str:
    reply = raw.command(tag, command)
    assert reply[-1].startswith(f"{tag} OK"), reply
    (line,) = [r for r in reply if r.startswith(f"* {kind}")]
    return line


def test_sort_and_thread_are_advertised(imap: ImapHarness) -> None:
    raw = imap.connect()
    caps = raw.command("c", "CAPABILITY")[0].split()
    for cap in ("SORT", "SORT=DISPLAY", "ESORT", "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES"):
        assert cap in caps
    raw.close()


def test_sort_by_each_key_with_ties_in_mailbox_order(imap: ImapHarness) -> None:
    imap.deliver(
        DEMO, mail("Re: banana", From="Zed <zed@x.test>", To="b@x.test", Cc="c2@x.test", Date=date(3))
    )
    imap.deliver(DEMO, mail("apple", From="amy@x.test", To="a@x.test", Date=date(1)) + b"longer body\r\n")
    imap.deliver(
        DEMO, mail("[list] Fwd: Cherry", From="Bob <bob@x.test>", To="", Cc="c1@x.test", Date=date(2))
    )
    imap.deliver(DEMO, mail("Apple (fwd)", From="amy@x.test", To="a@x.test", Date=date(1)))
    raw = selected(imap)
    assert answer(raw, "a", "SORT (SUBJECT) UTF-8 ALL") == "* SORT 2 4 1 3"  # base subjects, ties in order
    assert answer(raw, "b", "SORT (REVERSE SUBJECT) UTF-8 ALL") == "* SORT 3 1 2 4"  # still stable
    assert answer(raw, "c", "SORT (DATE) UTF-8 ALL") == "* SORT 2 4 3 1"
    assert answer(raw, "d", "SORT (FROM) UTF-8 ALL") == "* SORT 2 4 3 1"  # amy, amy, bob, zed
    assert answer(raw, "e", "SORT (DISPLAYFROM) UTF-8 ALL") == "* SORT 2 4 3 1"  # amy@x.test, .., Bob, Zed
    assert (
        answer(raw, "f", "SORT (TO REVERSE SIZE) UTF-8 ALL") == "* SORT 3 2 4 1"
    )  # "" first; a: larger first
    assert answer(raw, "g", "SORT (CC) UTF-8 ALL") == "* SORT 2 4 3 1"  # "", "", c1, c2
    assert answer(raw, "h", "SORT (ARRIVAL) UTF-8 ALL") == "* SORT 1 2 3 4"
    assert answer(raw, "i", "SORT (SIZE SUBJECT) US-ASCII ALL").startswith("* SORT ")
    assert answer(raw, "j", "UID SORT (SUBJECT) UTF-8 ALL") == "* SORT 2 4 1 3"  # UIDs 1-4 here
    raw.close()


def test_the_search_keys_choose_what_is_sorted_and_numbers_follow_the_command(imap: ImapHarness) -> None:
    for subject in ("d", "c", "b", "a"):
        imap.deliver(DEMO, mail(subject, Date=date(1)))
    raw = selected(imap)
    raw.command("x", "STORE 1,3 +FLAGS (\\Deleted)")
    raw.command("e", "EXPUNGE")  # UIDs 2 and 4 are now messages 1 and 2
    assert answer(raw, "a", "SORT (SUBJECT) UTF-8 ALL") == "* SORT 2 1"
    assert answer(raw, "b", "UID SORT (SUBJECT) UTF-8 ALL") == "* SORT 4 2"
    assert answer(raw, "c", "UID SORT (SUBJECT) UTF-8 SUBJECT d") == "* SORT"  # expunged: nothing matches
    assert answer(raw, "d", 'SORT (SUBJECT) UTF-8 OR SUBJECT "a" SUBJECT "c"') == "* SORT 2 1"
    raw.close()


def test_dates_missing_or_invalid_sort_by_the_internal_date(imap: ImapHarness) -> None:
    imap.deliver(DEMO, mail("future", Date="Fri, 01 Jan 2100 00:00:00 +0000"))
    imap.deliver(DEMO, mail("none"))  # the internal date: now, before 2100 and after 1990
    imap.deliver(DEMO, mail("invalid", Date="not a date at all"))
    imap.deliver(DEMO, mail("past", Date="Mon, 01 Jan 1990 00:00:00 +0000"))
    raw = selected(imap)
    assert answer(raw, "a", "SORT (DATE) UTF-8 ALL") == "* SORT 4 2 3 1"
    # 2 and 3 have internal dates a moment apart, or equal (then in mailbox order, also when reversed)
    assert answer(raw, "b", "SORT (REVERSE DATE) UTF-8 ALL") in ("* SORT 1 3 2 4", "* SORT 1 2 3 4")
    raw.close()


def test_strings_collate_as_i_unicode_casemap(imap: ImapHarness) -> None:
    imap.deliver(DEMO, mail("x", From="zoe <z@x.test>"))
    imap.deliver(DEMO, mail("x", From="=?utf-8?q?=C3=89mile?= <e@x.test>"))
    imap.deliver(DEMO, mail("x", From="Eve <v@x.test>"))
    imap.deliver(DEMO, mail("x", From="eva <a@x.test>"))
    raw = selected(imap)
    # Émile titlecased and decomposed is "E" + U+0301 + "MILE": after EVA and EVE (U+0301 > "V"), before ZOE;
    # i;ascii-casemap would put it after zoe
    assert answer(raw, "a", "SORT (DISPLAYFROM) UTF-8 ALL") == "* SORT 4 3 2 1"
    assert answer(raw, "b", "SORT (FROM) UTF-8 ALL") == "* SORT 4 2 3 1"  # a, e, v, z
    raw.close()


def test_esort_answers_with_esearch_in_sort_order(imap: ImapHarness) -> None:
    for subject in ("e", "a", "b", "c", "d", "f"):
        imap.deliver(DEMO, mail(subject))
    raw = selected(imap)
    assert (
        answer(raw, "a", "SORT RETURN (MIN MAX COUNT ALL) (SUBJECT) UTF-8 ALL", "ESEARCH")
        == '* ESEARCH (TAG "a") MIN 2 MAX 6 ALL 2:5,1,6 COUNT 6'
    )
    assert (
        answer(raw, "b", "UID SORT RETURN () (REVERSE SUBJECT) UTF-8 ALL", "ESEARCH")
        == '* ESEARCH (TAG "b") UID ALL 6,1,5,4,3,2'
    )
    assert answer(raw, "c", "SORT RETURN (COUNT) (SUBJECT) UTF-8 SUBJECT zzz", "ESEARCH") == (
        '* ESEARCH (TAG "c") COUNT 0'
    )
    reply = raw.command("d", "SORT RETURN (SAVE) (SUBJECT) UTF-8 SUBJECT a")
    assert reply == ["d OK SORT completed"]  # SAVE alone: no ESEARCH (RFC 5182 2.1)
    assert raw.command("f", "FETCH $ (UID)")[0] == "* 2 FETCH (UID 2)"
    assert raw.command("g", "SORT RETURN (BOGUS) (SUBJECT) UTF-8 ALL")[-1].startswith("g BAD")
    raw.close()


def test_sort_with_a_modseq_key_gives_the_highest_modseq(imap: ImapHarness) -> None:
    imap.deliver(DEMO, mail("b"))
    imap.deliver(DEMO, mail("a"))
    raw = selected(imap)
    raw.command("x", "STORE 2 +FLAGS (\\Flagged)")
    line = answer(raw, "a", "SORT (SUBJECT) UTF-8 MODSEQ 1")
    assert line.startswith("* SORT 2 1 (MODSEQ ")
    highest = int(line.split("MODSEQ ")[1].rstrip(")"))
    fetched = raw.command("f", "FETCH 1:2 (MODSEQ)")
    modseqs = [int(r.split("MODSEQ (")[1].removesuffix("))")) for r in fetched[:-1]]
    assert highest == max(modseqs) == modseqs[1] > modseqs[0]  # message 2 was flagged last
    # ESORT: the MODSEQ of what the answer names; MAX is the last in sort order, message 1
    esort = answer(raw, "m", "SORT RETURN (MAX) (SUBJECT) UTF-8 MODSEQ 1", "ESEARCH")
    assert esort == f'* ESEARCH (TAG "m") MAX 1 MODSEQ {modseqs[0]}'
    raw.close()


def test_bad_sort_and_thread_commands(imap: ImapHarness) -> None:
    imap.deliver(DEMO, mail("a"))
    raw = imap.connect()
    raw.login()
    assert raw.command("n", "SORT (SUBJECT) UTF-8 ALL")[-1].startswith("n BAD")  # not selected
    raw.command("s", "SELECT INBOX")
    assert raw.command("a", "SORT (COLOUR) UTF-8 ALL")[-1].startswith("a BAD")
    assert raw.command("b", "SORT (SUBJECT) ALL")[-1].startswith("b BAD")  # the charset is required
    assert raw.command("c", "SORT () UTF-8 ALL")[-1].startswith("c BAD")
    assert raw.command("d", "SORT (REVERSE) UTF-8 ALL")[-1].startswith("d BAD")
    assert raw.command("e", "SORT (SUBJECT) KOI8-R ALL")[-1] == (
        "e NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset"
    )
    assert raw.command("f", "THREAD FANCY UTF-8 ALL")[-1].startswith("f BAD")
    assert raw.command("g", "THREAD REFERENCES UTF-8")[-1].startswith("g BAD")
    assert raw.command("h", "SORT (SUBJECT) UTF-8 ALL")[-1] == "h OK SORT completed"  # still usable
    raw.close()


def test_thread_references_and_orderedsubject(imap: ImapHarness) -> None:
    imap.deliver(DEMO, mail("Lunch", Message_ID="<a@x>", Date=date(1, 9)))
    imap.deliver(DEMO, mail("Re: Lunch", Message_ID="<b@x>", References="<a@x>", Date=date(1, 10)))
    imap.deliver(DEMO, mail("Other", Message_ID="<c@x>", Date=date(1, 11)))
    imap.deliver(DEMO, mail("Re: Lunch", Message_ID="<d@x>", References="<a@x> <b@x>", Date=date(1, 12)))
    imap.deliver(DEMO, mail("Re: Lunch", Message_ID="<e@x>", References="<a@x>", Date=date(1, 13)))
    # replies to a message that is not here: a dummy parent holds them
    imap.deliver(DEMO, mail("Re: Gone", Message_ID="<f@x>", References="<gone@x>", Date=date(1, 14)))
    imap.deliver(DEMO, mail("Re: Gone", Message_ID="<g@x>", In_Reply_To="<gone@x>", Date=date(1, 15)))
    raw = selected(imap)
    assert answer(raw, "a", "THREAD REFERENCES UTF-8 ALL", "THREAD") == "* THREAD (1 (2 4)(5))(3)((6)(7))"
    assert answer(raw, "b", "THREAD ORDEREDSUBJECT UTF-8 ALL", "THREAD") == "* THREAD (1 (2)(4)(5))(3)(6 7)"
    assert answer(raw, "c", "THREAD REFERENCES UTF-8 SUBJECT lunch", "THREAD") == "* THREAD (1 (2 4)(5))"
    raw.command("x", "STORE 1 +FLAGS (\\Deleted)")
    raw.command("e", "EXPUNGE")  # the root goes: its replies remain, under a dummy, numbered anew
    assert answer(raw, "d", "THREAD REFERENCES UTF-8 ALL", "THREAD") == "* THREAD ((1 3)(4))(2)((5)(6))"
    assert answer(raw, "f", "UID THREAD REFERENCES UTF-8 ALL", "THREAD") == "* THREAD ((2 4)(5))(3)((6)(7))"
    assert answer(raw, "g", "THREAD REFERENCES UTF-8 SUBJECT nothing", "THREAD") == "* THREAD"
    imap.deliver(DEMO, mail("Re: Other", Message_ID="<h@x>", References="<c@x>", Date=date(1, 16)))
    raw.command("n", "NOOP")
    assert answer(raw, "h", "THREAD REFERENCES UTF-8 ALL", "THREAD") == "* THREAD ((1 3)(4))(2 7)((5)(6))"
    raw.close()


def test_a_repeated_sort_follows_the_sequence_numbers_of_the_moment(imap: ImapHarness) -> None:
    """The answers kept for a repeated SORT (decision 0064) never give numbers of an earlier moment."""
    for subject in ("other", "b match", "a match"):
        imap.deliver(DEMO, mail(subject))
    raw = selected(imap)
    for tag in ("a", "b"):  # the second from what was kept
        assert answer(raw, tag, "SORT (SUBJECT) UTF-8 SUBJECT match") == "* SORT 3 2"
        assert answer(raw, tag + "u", "UID SORT (SUBJECT) UTF-8 SUBJECT match") == "* SORT 3 2"
    raw.command("x", "STORE 1 +FLAGS (\\Deleted)")
    raw.command("e", "EXPUNGE")  # the same messages match, under other numbers
    assert answer(raw, "c", "SORT (SUBJECT) UTF-8 SUBJECT match") == "* SORT 2 1"
    assert answer(raw, "d", "UID SORT (SUBJECT) UTF-8 SUBJECT match") == "* SORT 3 2"
    assert answer(raw, "f", "SORT (SUBJECT) UTF-8 ALL") == "* SORT 2 1"
    esort = answer(raw, "g", "SORT RETURN (ALL) (SUBJECT) UTF-8 ALL", "ESEARCH")
    assert esort == '* ESEARCH (TAG "g") ALL 2,1'
    raw.close()


def test_new_mail_is_placed_into_the_last_order_as_a_whole_sort_would(
    imap: ImapHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """New messages are placed into the order kept from the last SORT of the same criteria (commands_sort
    `_order`): equal values, REVERSE, several keys and a mailbox that also lost messages give what a whole
    sort gives (RFC 5256 section 3: ties in mailbox order), and only keys of one direction take that way."""
    whole_sorts: list[int] = []
    real = commands_sort.sorted_order

    def counted(*args: Any) -> list[int]:
        whole_sorts.append(1)
        return real(*args)

    monkeypatch.setattr(commands_sort, "sorted_order", counted)
    rng = random.Random(5)
    kept: list[tuple[int, str]] = []  # (day, subject) of each message, in mailbox order

    def deliver(count: int) -> None:
        for _ in range(count):
            day, subject = rng.choice((1, 2, 3)), rng.choice(("a", "b"))
            imap.deliver(DEMO, mail(subject, Date=date(day)))
            kept.append((day, subject))

    def expected(criteria: list[tuple[str, bool]]) -> str:
        numbers = list(range(1, len(kept) + 1))
        for key, reverse in reversed(criteria):
            field = 0 if key == "DATE" else 1
            numbers.sort(key=lambda n: kept[n - 1][field], reverse=reverse)
        return "* SORT " + " ".join(map(str, numbers))

    commands = {
        "(DATE)": [("DATE", False)],
        "(REVERSE DATE)": [("DATE", True)],
        "(SUBJECT DATE)": [("SUBJECT", False), ("DATE", False)],
        "(REVERSE SUBJECT REVERSE DATE)": [("SUBJECT", True), ("DATE", True)],
        "(SUBJECT REVERSE DATE)": [("SUBJECT", False), ("DATE", True)],  # mixed: always a whole sort
    }
    deliver(12)
    raw = selected(imap)
    for step in range(4):
        for text, criteria in commands.items():
            whole_sorts.clear()
            assert answer(raw, f"s{step}", f"SORT {text} UTF-8 ALL") == expected(criteria), (step, text)
            if 0 < step < 3:  # only new mail since the last SORT: placed, unless the directions differ
                assert len(whole_sorts) == (1 if text == "(SUBJECT REVERSE DATE)" else 0), (step, text)
        deliver(rng.randint(1, 5))
        if step == 2:  # and one message fewer: a whole sort again
            raw.command("x", "STORE 2 +FLAGS (\\Deleted)")
            raw.command("y", "EXPUNGE")
            del kept[1]
        raw.command("n", "NOOP")
    raw.close()


def test_thread_references_links_references_as_written(imap: ImapHarness) -> None:
    """RFC 5256 section 4, step 1.A: the parent is the last id of References, also when In-Reply-To names
    another message, and also when that id was named earlier in the field too (decision 0079)."""
    imap.deliver(DEMO, mail("Plan", Message_ID="<a@x>", Date=date(1, 9)))
    imap.deliver(DEMO, mail("Re: Plan", Message_ID="<b@x>", References="<a@x>", Date=date(1, 10)))
    imap.deliver(
        DEMO, mail("Re: Plan", Message_ID="<c@x>", References="<a@x>", In_Reply_To="<b@x>", Date=date(1, 11))
    )
    imap.deliver(DEMO, mail("Re: Plan", Message_ID="<d@x>", References="<a@x> <b@x> <a@x>", Date=date(1, 12)))
    # no References: the first id of In-Reply-To alone
    imap.deliver(DEMO, mail("Re: Plan", Message_ID="<e@x>", In_Reply_To="<b@x> <a@x>", Date=date(1, 13)))
    raw = selected(imap)
    assert answer(raw, "a", "THREAD REFERENCES UTF-8 ALL", "THREAD") == "* THREAD (1 (2 5)(3)(4))"
    raw.close()


def test_new_mail_is_added_to_the_last_references_threads(
    imap: ImapHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """THREAD=REFERENCES after new mail adds it to the threads kept from the last THREAD (commands_sort
    `_references_answer`) when it can, and the answer is the one the whole algorithm gives, by sequence
    number and by UID; an expunge renumbers: the algorithm runs again."""
    whole_runs: list[int] = []
    real = sort_thread.references_state

    def counted(messages: Any) -> Any:
        whole_runs.append(len(messages))
        return real(messages)

    monkeypatch.setattr(commands_sort, "references_state", counted)
    imap.deliver(DEMO, mail("Lunch", Message_ID="<a@x>", Date=date(1, 9)))
    imap.deliver(DEMO, mail("Other", Message_ID="<c@x>", Date=date(1, 11)))
    raw = selected(imap)
    assert answer(raw, "a", "THREAD REFERENCES UTF-8 ALL", "THREAD") == "* THREAD (1)(2)"
    assert answer(raw, "b", "UID THREAD REFERENCES UTF-8 ALL", "THREAD") == "* THREAD (1)(2)"
    assert whole_runs == [2, 2]
    imap.deliver(DEMO, mail("Re: Lunch", Message_ID="<b@x>", References="<a@x>", Date=date(1, 10)))
    imap.deliver(DEMO, mail("Early", Message_ID="<e@x>", Date=date(1, 8)))  # a new thread, dated first
    raw.command("n", "NOOP")
    assert answer(raw, "c", "THREAD REFERENCES UTF-8 ALL", "THREAD") == "* THREAD (4)(1 3)(2)"
    assert answer(raw, "d", "UID THREAD REFERENCES UTF-8 ALL", "THREAD") == "* THREAD (4)(1 3)(2)"
    assert whole_runs == [2, 2]  # both added to what was kept
    imap.deliver(DEMO, mail("Re: Lunch", Message_ID="<f@x>", References="<gone@x>", Date=date(1, 12)))
    raw.command("n2", "NOOP")  # a reply to a message that is not here: a dummy, so threaded again
    assert answer(raw, "e", "THREAD REFERENCES UTF-8 ALL", "THREAD") == "* THREAD (4)(1 (3)(5))(2)"
    assert whole_runs == [2, 2, 5]
    raw.command("x", "STORE 2 +FLAGS (\\Deleted)")
    raw.command("y", "EXPUNGE")
    imap.deliver(DEMO, mail("Re: Other", Message_ID="<g@x>", References="<c@x>", Date=date(1, 13)))
    raw.command("n3", "NOOP")  # numbers moved: threaded again
    assert answer(raw, "f", "THREAD REFERENCES UTF-8 ALL", "THREAD") == "* THREAD (3)(1 (2)(4))(5)"
    assert whole_runs == [2, 2, 5, 5]
    raw.close()


@pytest.mark.parametrize("criteria", ["DATE", "SUBJECT"])
def test_a_mailbox_larger_than_the_key_cache_sorts_by_its_keys(
    imap: ImapHarness, monkeypatch: pytest.MonkeyPatch, criteria: str
) -> None:
    """The keys a command reads are used before the cache forgets the oldest (KEY_CACHE_SIZE, lowered here
    to 3): a mailbox larger than the cache sorts by every message's own keys."""
    monkeypatch.setattr(commands_sort, "KEY_CACHE_SIZE", 3)
    for day in (6, 5, 4, 3, 2, 1):  # sent dates and subjects fall as the messages arrive
        imap.deliver(DEMO, mail(f"s{day}", Date=date(day)))
    raw = selected(imap)
    assert answer(raw, "o", f"SORT ({criteria}) UTF-8 ALL") == "* SORT 6 5 4 3 2 1"
    assert answer(raw, "t", "THREAD ORDEREDSUBJECT UTF-8 ALL", "THREAD") == "* THREAD (6)(5)(4)(3)(2)(1)"
    raw.close()


class _GatedStore:
    """A MailAccess stand-in for `_forms`: sort_columns answers {field: {cid: "v<cid>"}}, and the read of
    a content id in `hold` waits for `gate`."""

    def __init__(self, hold: set[int]) -> None:
        self.hold = hold
        self.gate = asyncio.Event()

    async def sort_columns(self, content_ids: list[int], names: list[str]) -> dict[str, dict[int, Any]]:
        if self.hold & set(content_ids):
            await self.gate.wait()
        else:
            await asyncio.sleep(0)
        return {name: {cid: f"v{cid}" for cid in content_ids} for name in names}


def test_forms_are_not_lost_to_a_trim_by_a_concurrent_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the forms cache had is taken before the store read: another command that trims the cache while
    this one waits does not turn those messages into "gone" ones (found by a review)."""
    monkeypatch.setattr(commands_sort, "KEY_CACHE_SIZE", 4)

    async def scenario() -> list[Any]:
        gated = _GatedStore(hold={3})
        store: Any = gated
        # a first SORT (FROM) of mailbox A: contents 1 and 2 are cached
        await commands_sort._forms(store, [1, 2], ["from_mailbox"])
        # new mail 3 in mailbox A: SORT (FROM) again, its read of 3 is in flight...
        first = asyncio.ensure_future(commands_sort._forms(store, [1, 2, 3], ["from_mailbox"]))
        await asyncio.sleep(0)
        # ...while another session sorts mailbox B (contents 10-13) by FROM, trimming 1 and 2
        await commands_sort._forms(store, [10, 11, 12, 13], ["from_mailbox"])
        gated.gate.set()
        return (await first)["from_mailbox"]

    assert asyncio.run(scenario()) == ["V1", "V2", "V3"]
