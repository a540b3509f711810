"""IMAP sequence sets (RFC 9051 section 9 `sequence-set`, RFC 3501 section 9, RFC 5182 `$`).

    sequence-set = (seq-number / seq-range) ["," sequence-set] / "$"
    seq-range    = seq-number ":" seq-number
    seq-number   = nz-number / "*"                 ; nz-number: 1 .. 4294967295

Implementation notes
- `SequenceSet.parse` keeps the set as written (ranges in order, `*` as None, reversed ranges as written), so
  a set can be echoed; `resolve(largest)` turns it into sorted, merged, inclusive intervals of real numbers.
- "*" is the largest number in use (RFC 9051 section 6.4.8 and 9: "the largest number in use"). So a range is
  the same whichever end is written first ("5:1" is 1:5), and `n:*` with n > largest is `largest:n`, which
  contains `largest`: "10:*" in a mailbox of 5 messages is 5:10, i.e. message 5 (RFC 9051 section 9, the note
  under `seq-range`). In an empty mailbox (largest == 0) "*" stands for no message: ranges that use it resolve
  to nothing and `*` alone is empty.
- Resolution does not clip at `largest`: for UIDs, numbers above the largest UID simply match nothing; for
  message sequence numbers the server must answer BAD for numbers above the message count
  (`exceeds(largest)` says so).
- `$` (SEARCHRES, RFC 5182) is `SequenceSet.SAVED`; it cannot be resolved here (the session substitutes its
  saved result) and `resolve` raises ValueError for it.
- `format_sequence_set` gives the compact form used in COPYUID, APPENDUID (RFC 4315) and ESEARCH ALL (RFC
  4731): "1:3,7".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import ClassVar

__all__ = ["MAX_NUMBER", "SequenceRange", "SequenceSet", "format_sequence_set"]

MAX_NUMBER = 0xFFFFFFFF
"""nz-number is a 32-bit unsigned value (RFC 9051 section 9 `number`)."""

_SEQ_NUMBER = r"(?:[1-9][0-9]{0,9}|\*)"
_SEQ_SET = re.compile(rf"{_SEQ_NUMBER}(?::{_SEQ_NUMBER})?(?:,{_SEQ_NUMBER}(?::{_SEQ_NUMBER})?)*")


@dataclass(frozen=True)
class SequenceRange:
    """One element of a sequence set: `start:end` as written, or a single number when start == end.

    None stands for "*".
    """

    start: int | None
    end: int | None

    def __str__(self) -> str:
        a = "*" if self.start is None else str(self.start)
        if self.start == self.end:
            return a
        b = "*" if self.end is None else str(self.end)
        return f"{a}:{b}"

    def resolve(self, largest: int) -> tuple[int, int] | None:
        """The inclusive interval (low, high), or None when it uses "*" and largest == 0."""
        if (self.start is None or self.end is None) and largest <= 0:
            return None
        a = largest if self.start is None else self.start
        b = largest if self.end is None else self.end
        return (a, b) if a <= b else (b, a)


@dataclass(frozen=True)
class SequenceSet:
    """A parsed sequence set. `saved` is True for "$" (RFC 5182), and then `ranges` is empty."""

    ranges: tuple[SequenceRange, ...]
    saved: bool = False

    SAVED: ClassVar[SequenceSet]  # "$", set below

    @classmethod
    def parse(cls, text: str) -> SequenceSet:
        """Parse RFC 9051 `sequence-set` or "$"; ValueError when `text` is not one."""
        if text == "$":
            return cls.SAVED
        if not _SEQ_SET.fullmatch(text):
            raise ValueError(f"invalid sequence set {text!r}")
        ranges = []
        for element in text.split(","):
            first, _, second = element.partition(":")
            start = None if first == "*" else int(first)
            end = start if not second else (None if second == "*" else int(second))
            for n in (start, end):
                if n is not None and n > MAX_NUMBER:
                    raise ValueError(f"number {n} in sequence set is above 4294967295")
            ranges.append(SequenceRange(start, end))
        return cls(tuple(ranges))

    @classmethod
    def of(cls, *numbers: int) -> SequenceSet:
        """A set of the given numbers (each 1..MAX_NUMBER), compacted into ranges."""
        return cls.parse(format_sequence_set(numbers)) if numbers else cls(())

    def __str__(self) -> str:
        return "$" if self.saved else ",".join(str(r) for r in self.ranges)

    @property
    def uses_star(self) -> bool:
        return any(r.start is None or r.end is None for r in self.ranges)

    def resolve(self, largest: int) -> list[tuple[int, int]]:
        """Sorted, merged, inclusive intervals; "*" is `largest` (see the module docstring)."""
        if self.saved:
            raise ValueError("'$' must be replaced by the saved search result before resolving")
        intervals = sorted(i for r in self.ranges if (i := r.resolve(largest)) is not None)
        merged: list[tuple[int, int]] = []
        for low, high in intervals:
            if merged and low <= merged[-1][1] + 1:
                if high > merged[-1][1]:
                    merged[-1] = (merged[-1][0], high)
            else:
                merged.append((low, high))
        return merged

    def numbers(self, largest: int) -> Iterator[int]:
        """Every number in the set, ascending, without duplicates (beware of huge UID ranges)."""
        for low, high in self.resolve(largest):
            yield from range(low, high + 1)

    def contains(self, number: int, largest: int) -> bool:
        return any(low <= number <= high for low, high in self.resolve(largest))

    def exceeds(self, largest: int) -> bool:
        """True when a number written in the set is above `largest` (BAD for message sequence numbers)."""
        return any(n is not None and n > largest for r in self.ranges for n in (r.start, r.end))


SequenceSet.SAVED = SequenceSet((), saved=True)


def format_sequence_set(numbers: Iterable[int], *, sort: bool = True) -> str:
    """Compact form of `numbers`: "1:3,7". With sort=False the order is kept and only ascending runs of
    consecutive numbers are joined (for COPYUID, whose two sets correspond element by element)."""
    values = sorted(set(numbers)) if sort else list(numbers)
    parts: list[str] = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        parts.append(str(values[i]) if i == j else f"{values[i]}:{values[j]}")
        i = j + 1
    return ",".join(parts)
