"""IMAP sequence sets: parsing, "*" and "$", resolution against a mailbox, compact formatting."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postoffice.imap.sequence import MAX_NUMBER, SequenceRange, SequenceSet, format_sequence_set


def test_parse_keeps_the_set_as_written() -> None:
    s = SequenceSet.parse("1:5,7,9:*,*,5:1")
    assert s.ranges == (
        SequenceRange(1, 5),
        SequenceRange(7, 7),
        SequenceRange(9, None),
        SequenceRange(None, None),
        SequenceRange(5, 1),
    )
    assert str(s) == "1:5,7,9:*,*,5:1"
    assert s.uses_star


def test_saved_result_marker() -> None:
    s = SequenceSet.parse("$")
    assert s is SequenceSet.SAVED
    assert s.saved
    assert str(s) == "$"
    with pytest.raises(ValueError, match=r"'\$' must be replaced by the saved search result"):
        s.resolve(10)


@pytest.mark.parametrize(
    "text", ["", "0", "1,", ",1", "1::2", "1:0", "01", "a", "1 2", "$,1", "1:$", "4294967296", "12345678901"]
)
def test_invalid_sets(text: str) -> None:
    with pytest.raises(ValueError, match="sequence set"):
        SequenceSet.parse(text)


def test_largest_number_is_accepted() -> None:
    assert SequenceSet.parse("4294967295").ranges == (SequenceRange(MAX_NUMBER, MAX_NUMBER),)


@pytest.mark.parametrize(
    ("text", "largest", "intervals"),
    [
        ("2,4:7,9,12:*", 15, [(2, 2), (4, 7), (9, 9), (12, 15)]),  # RFC 9051 section 9, sequence-set
        ("*:4,5:7", 10, [(4, 10)]),  # RFC 9051 section 9, sequence-set
        ("3291:*", 3000, [(3000, 3291)]),  # RFC 9051 section 9, seq-range: includes the last UID
        ("1:5,7,9:*", 12, [(1, 5), (7, 7), (9, 12)]),
        ("5:1", 10, [(1, 5)]),
        ("*", 7, [(7, 7)]),
        ("*:3", 7, [(3, 7)]),
        ("10:*", 5, [(5, 10)]),  # RFC 9051: "*" is the largest number in use, so 10:* is 5:10
        ("1:3,2:6,8,7", 10, [(1, 8)]),  # merged
        ("1:*", 0, []),  # empty mailbox: "*" is no message
        ("3,1:*", 0, [(3, 3)]),
        ("20", 5, [(20, 20)]),  # not clipped (UIDs above the largest match nothing)
    ],
)
def test_resolve(text: str, largest: int, intervals: list[tuple[int, int]]) -> None:
    assert SequenceSet.parse(text).resolve(largest) == intervals


def test_contains_numbers_and_exceeds() -> None:
    s = SequenceSet.parse("2:4,10:*")
    assert list(s.numbers(6)) == [2, 3, 4, 6, 7, 8, 9, 10]  # 10:* is 6:10
    assert s.contains(6, 6)
    assert not s.contains(5, 6)
    assert s.exceeds(6)
    assert not SequenceSet.parse("1:*").exceeds(6)


@pytest.mark.parametrize(
    ("numbers", "text"),
    [([1, 2, 3, 7], "1:3,7"), ([7, 3, 1, 2, 2], "1:3,7"), ([], ""), ([5], "5"), ([1, 3, 5], "1,3,5")],
)
def test_format_compact(numbers: list[int], text: str) -> None:
    assert format_sequence_set(numbers) == text


def test_format_keeping_order_for_copyuid() -> None:
    assert format_sequence_set([5, 6, 7, 1, 2], sort=False) == "5:7,1:2"


@given(st.sets(st.integers(1, MAX_NUMBER), max_size=50))
def test_format_then_parse_round_trip(numbers: set[int]) -> None:
    if not numbers:
        return
    s = SequenceSet.parse(format_sequence_set(numbers))
    assert [n for low, high in s.resolve(1) for n in range(low, high + 1)] == sorted(numbers)
    assert SequenceSet.of(*numbers) == s


@given(
    st.lists(
        st.tuples(st.none() | st.integers(1, 60), st.none() | st.integers(1, 60)), min_size=1, max_size=6
    ),
    st.integers(0, 50),
)
def test_resolve_matches_a_naive_model(ranges: list[tuple[int | None, int | None]], largest: int) -> None:
    s = SequenceSet(tuple(SequenceRange(a, b) for a, b in ranges))
    assert SequenceSet.parse(str(s)) == s
    expected: set[int] = set()
    for a, b in ranges:
        if (a is None or b is None) and largest == 0:
            continue
        lo, hi = sorted((largest if a is None else a, largest if b is None else b))
        expected |= set(range(lo, hi + 1))
    assert list(s.numbers(largest)) == sorted(expected)
    intervals = s.resolve(largest)
    assert all(b1 + 1 < a2 for (_, b1), (a2, _) in itertools.pairwise(intervals))
