"""postoffice.imap.search: SEARCH command lines (parsed by the real CommandReader) -> store criteria, and the
SEARCH / ESEARCH responses (RFC 9051 6.4.4, 7.3.4; RFC 4731; RFC 5182)."""

from __future__ import annotations

import datetime
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.imap.parser import CommandReader, Search, SearchSequence
from postoffice.imap.search import (
    SearchBad,
    SearchBadCharset,
    esearch_response,
    result_numbers,
    saved_result,
    search_response,
    to_criteria,
)
from postoffice.imap.sequence import SequenceSet
from postoffice.store import All, And, Criteria, Date, HasFlag, Not, Or, Size, Text, UidIn
from postoffice.store.criteria import Arrived, ModSeq
from tests.support.bounds import CALL_BOUND, bounded

# the session's view: sequence number i has UID UIDS[i - 1]
UIDS = [3, 4, 5, 9, 10, 11, 20]


def command(line: bytes) -> Search:
    reader = CommandReader()
    reader.feed(line + b"\r\n")
    event = reader.next()
    assert isinstance(event, Search), event
    return event


def criteria(
    line: bytes,
    *,
    uids: Sequence[int] = UIDS,
    saved: Sequence[int] | None = None,
    recent: Sequence[int] | None = None,
) -> Criteria:
    cmd = command(line)
    return to_criteria(cmd.keys, uids_by_seq=uids, saved=saved, recent=recent, charset=cmd.charset)


def test_flag_keys_map_to_system_flags() -> None:
    assert criteria(b"a SEARCH ANSWERED UNSEEN") == And((HasFlag("\\Answered"), HasFlag("\\Seen", False)))
    assert criteria(b"a SEARCH deleted") == HasFlag("\\Deleted")
    assert criteria(b"a SEARCH UNDRAFT") == HasFlag("\\Draft", False)
    assert criteria(b"a SEARCH FLAGGED") == HasFlag("\\Flagged")
    assert criteria(b"a SEARCH ALL") == All()


def test_keyword_and_unkeyword() -> None:
    assert criteria(b"a SEARCH KEYWORD $Forwarded UNKEYWORD Work") == And(
        (HasFlag("$Forwarded"), HasFlag("Work", False))
    )


def test_recent_new_old_use_the_sessions_recent_uids() -> None:
    recent = UidIn(((10, 12), (15, 15)))
    assert criteria(b"a SEARCH RECENT", recent=[10, 11, 12, 15]) == recent
    assert criteria(b"a SEARCH NEW", recent=[15, 10, 11, 12]) == And((recent, HasFlag("\\Seen", False)))
    assert criteria(b"a SEARCH OLD", recent=[10, 11, 12, 15]) == Not(recent)
    # nothing recent for this session
    assert criteria(b"a SEARCH RECENT") == Not(All())
    assert criteria(b"a SEARCH OLD") == Not(Not(All()))


def test_dates_sizes_and_text_keys() -> None:
    c = criteria(b'a SEARCH SINCE 1-Feb-1994 SENTBEFORE "5-Jan-2020" ON 2-Mar-2021 SENTON 1-Jan-2000')
    assert c == And(
        (
            Date("internal", "since", datetime.date(1994, 2, 1)),
            Date("sent", "before", datetime.date(2020, 1, 5)),
            Date("internal", "on", datetime.date(2021, 3, 2)),
            Date("sent", "on", datetime.date(2000, 1, 1)),
        )
    )
    assert criteria(b"a SEARCH LARGER 100 SMALLER 5000 BEFORE 1-Jan-2024 SENTSINCE 1-Jan-2023") == And(
        (
            Size("larger", 100),
            Size("smaller", 5000),
            Date("internal", "before", datetime.date(2024, 1, 1)),
            Date("sent", "since", datetime.date(2023, 1, 1)),
        )
    )
    c = criteria(b'a SEARCH BCC a CC b BODY c SUBJECT "" TO e FROM "Smith" TEXT g HEADER Message-ID "<x@y>"')
    assert c == And(
        (
            Text(("header", "bcc"), "a"),
            Text(("header", "cc"), "b"),
            Text("body", "c"),
            Text(("header", "subject"), ""),
            Text(("header", "to"), "e"),
            Text(("header", "from"), "Smith"),
            Text("text", "g"),
            Text(("header", "Message-ID"), "<x@y>"),
        )
    )


def test_utf8_needles_from_literals_and_charset() -> None:
    line = b"a SEARCH CHARSET UTF-8 SUBJECT {6+}\r\nGr\xc3\xbc\xc3\x9f"
    assert criteria(line) == Text(("header", "subject"), "Grüß")
    with pytest.raises(SearchBadCharset):
        to_criteria((), uids_by_seq=UIDS, saved=None, recent=None, charset="KOI8-R")


def test_sequence_sets_are_resolved_to_uids_with_the_sessions_view() -> None:
    """Each range of sequence numbers becomes the UID range from its first to its last message: the store
    has no message between two UIDs of the view that the view lacks (see `test_uid_ranges_...` below)."""
    assert criteria(b"a SEARCH 1:3,6") == UidIn(((3, 5), (11, 11)))
    assert criteria(b"a SEARCH 5:*") == UidIn(((10, 20),))
    assert criteria(b"a SEARCH *") == UidIn(((20, 20),))
    assert criteria(b"a SEARCH 8:*") == UidIn(((20, 20),))  # "*" is 7: the range is 7:8
    assert criteria(b"a SEARCH 1:*", uids=[]) == UidIn(())
    # only 7 messages: in SEARCH a number beyond them is a criterion that matches nothing, not BAD
    assert criteria(b"a SEARCH 8") == UidIn(())
    assert criteria(b"a SEARCH 6:1000") == UidIn(((11, 20),))  # UIDs 11 to 20: messages 6 and 7


def test_uid_sets_use_the_largest_uid_for_star_and_keep_unknown_uids() -> None:
    assert criteria(b"a UID SEARCH UID 4:*") == UidIn(((4, 20),))
    assert criteria(b"a SEARCH UID 100:*") == UidIn(((20, 100),))
    assert criteria(b"a SEARCH UID 1,7:8") == UidIn(((1, 1), (7, 8)))


def test_dollar_is_the_saved_result_or_the_empty_set() -> None:
    assert criteria(b"a SEARCH $", saved=[4, 5, 20]) == UidIn(((4, 5), (20, 20)))
    assert criteria(b"a SEARCH UID $", saved=[9]) == UidIn(((9, 9),))
    assert criteria(b"a SEARCH $") == UidIn(())
    assert criteria(b'a SEARCH CHARSET UTF-8 (OR $ 1,3) TEXT "hello"', saved=[10]) == And(
        (And((Or(UidIn(((10, 10),)), UidIn(((3, 3), (5, 5)))),)), Text("text", "hello"))
    )


def test_not_or_and_nesting() -> None:
    c = criteria(b"a SEARCH OR (ANSWERED DELETED) NOT (UNSEEN LARGER 100) NOT NOT SEEN")
    assert c == And(
        (
            Or(
                And((HasFlag("\\Answered"), HasFlag("\\Deleted"))),
                Not(And((HasFlag("\\Seen", False), Size("larger", 100)))),
            ),
            Not(Not(HasFlag("\\Seen"))),
        )
    )


def test_modseq_is_a_store_criterion_whatever_its_entry() -> None:
    assert criteria(b"a SEARCH MODSEQ 620162338") == ModSeq(620162338)
    assert criteria(b'a SEARCH MODSEQ "/flags/\\\\draft" all 5') == ModSeq(5)  # one MODSEQ per message here


def test_result_numbers_restrict_to_the_view_and_map_to_sequence_numbers() -> None:
    found = [4, 9, 20, 21]  # 21 arrived after the session's last EXISTS
    assert result_numbers(found, UIDS, uid=True) == [4, 9, 20]
    assert result_numbers(found, UIDS, uid=False) == [2, 4, 7]
    assert result_numbers([], UIDS, uid=False) == []


def test_plain_search_response() -> None:
    assert search_response([2, 3, 5]) == b"* SEARCH 2 3 5\r\n"
    assert search_response([]) == b"* SEARCH\r\n"


def test_esearch_min_max_count_all_with_sequence_set_compression() -> None:
    numbers = [2, 3, 4, 7, 9, 10]
    assert (
        esearch_response("A282", numbers, ("MIN", "COUNT"), False)
        == b'* ESEARCH (TAG "A282") MIN 2 COUNT 6\r\n'
    )
    assert (
        esearch_response("A283", numbers, (), False) == b'* ESEARCH (TAG "A283") ALL 2:4,7,9:10\r\n'
    )  # RETURN () is ALL
    assert (
        esearch_response("a", numbers, ("MIN", "MAX", "ALL", "COUNT"), True)
        == b'* ESEARCH (TAG "a") UID MIN 2 MAX 10 ALL 2:4,7,9:10 COUNT 6\r\n'
    )


def test_esearch_without_matches_sends_only_count() -> None:
    assert (
        esearch_response("t", [], ("MIN", "MAX", "ALL", "COUNT"), True)
        == b'* ESEARCH (TAG "t") UID COUNT 0\r\n'
    )
    assert esearch_response("t", [], ("MIN",), False) == b'* ESEARCH (TAG "t")\r\n'


def test_save_alone_sends_no_esearch_and_min_max_save_only_those() -> None:
    assert esearch_response("A301", [1, 2], ("SAVE",), True) == b""
    assert esearch_response("A", [1, 2], ("SAVE", "MIN"), True) == b'* ESEARCH (TAG "A") UID MIN 1\r\n'
    assert saved_result([5, 3, 9], ("SAVE",)) == [3, 5, 9]
    assert saved_result([5, 3, 9], ("SAVE", "MIN")) == [3]
    assert saved_result([5, 3, 9], ("SAVE", "MIN", "MAX")) == [3, 9]
    assert saved_result([5, 3, 9], ("SAVE", "MIN", "COUNT")) == [3, 5, 9]
    assert saved_result([], ("SAVE", "MAX")) == []


def _in_view(c: Criteria, uids: Sequence[int]) -> list[int]:
    assert isinstance(c, UidIn)
    return [u for u in uids if any(low <= u <= high for low, high in c.ranges)]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(1, 60), unique=True, max_size=12).map(sorted),
    st.lists(st.tuples(st.integers(1, 14), st.one_of(st.none(), st.integers(1, 14))), min_size=1, max_size=4),
)
def test_uid_ranges_of_sequence_sets_select_exactly_the_messages_numbered(
    uids: list[int], ranges: list[tuple[int, int | None]]
) -> None:
    """Within the view, the UID ranges select exactly the messages whose sequence numbers are in the set."""
    text = ",".join(f"{a}" if b is None else f"{a}:{b}" for a, b in ranges)
    numbers = {n for a, b in ranges for n in range(min(a, b or a), max(a, b or a) + 1)}
    try:
        c = criteria(b"a SEARCH " + text.encode(), uids=uids)
    except SearchBad:
        assert max(numbers) > len(uids)
        return
    assert _in_view(c, uids) == [u for i, u in enumerate(uids, 1) if i in numbers]


def test_many_sequence_set_keys_on_a_large_mailbox_are_cheap() -> None:
    """2,000 keys of "1:*" on 100,000 messages listed 200 million UIDs (25 s on the event loop)."""
    keys = [SearchSequence(SequenceSet.parse("1:*"))] * 2000  # more than a command may have: the translator
    c = bounded(
        CALL_BOUND, to_criteria, keys, uids_by_seq=range(1, 100_001), saved=None, recent=None, charset=None
    )
    assert isinstance(c, And)
    assert c.terms[0] == UidIn(((1, 100_000),))


def test_older_and_younger_count_seconds_back_from_the_search() -> None:
    """RFC 5032 (WITHIN): seconds, not days, from the moment of the search."""
    keys = command(b"a SEARCH YOUNGER 3600 OLDER 60").keys
    found = to_criteria(keys, uids_by_seq=UIDS, saved=None, recent=None, charset=None, now=10_000.0)
    assert found == And((Arrived("since", 6400.0), Arrived("before", 9940.0)))
    reader = CommandReader()
    reader.feed(b"a SEARCH YOUNGER 0\r\n")
    assert not isinstance(reader.next(), Search)  # an interval is a positive number
