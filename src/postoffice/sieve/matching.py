"""Comparators and match types of Sieve (RFC 5228 section 2.7, RFC 4790, RFC 5231 relational, RFC 5229
section 3.2 match variables).

- Comparators: i;octet (code points), i;ascii-casemap (ASCII letters folded; the default), i;ascii-numeric
  (the leading digits as a number; a value without them is positive infinity, equal only to another such
  value: RFC 4790 section 9.1).
- Match types: `:is`, `:contains`, `:matches` ("*" any run, "?" one character, "\\\\" quotes the next
  character), and RFC 5231's `:value "op"` (each value against each key, "gt" meaning value > key under the
  comparator's order) and `:count "op"` (the number of values against each key, compared as a number
  string by the comparator: with i;ascii-numeric, the usual case, numerically).
- `:matches` is a linear-time glob (`glob`), never a backtracking regular expression: a key of many "*" on a
  long header costs at most len(key) * len(value) steps, and a value is compared by its first MAX_MATCHED
  characters. When the caller wants match variables
  (`matches(..., capture=True)`), the parts each wildcard matched come from a second pass that takes, for
  each "*" from the left, the shortest run after which the rest can still match (RFC 5229 section 3.2:
  "[*] *" on "[a] [b] c" gives "a" and "[b] c"), using bit masks of the positions from which the rest of
  the key matches (one big integer per token), so it stays linear in the value's length per token.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import lru_cache

Tags = dict[str, tuple[str, ...] | int | None]

#: Characters of a value `:matches` compares at most (its first ones): the steps of one match are at most
#: this times the key's length.
MAX_MATCHED = 65536

_STAR, _ONE = object(), object()


@lru_cache(maxsize=1024)
def wildcard(pattern: str) -> tuple[object, ...]:
    """A `:matches` key as tokens: _STAR ("*"), _ONE ("?") or a character (a backslash quotes the next)."""
    tokens: list[object] = []
    escaped = False
    for ch in pattern:
        if escaped:
            tokens.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "*":
            if not tokens or tokens[-1] is not _STAR:  # "**" is "*"
                tokens.append(_STAR)
        elif ch == "?":
            tokens.append(_ONE)
        else:
            tokens.append(ch)
    return tuple(tokens)


def glob(tokens: tuple[object, ...], text: str) -> bool:
    """Whether `text` matches the tokens whole. Greedy, going back only to the last "*": at most
    len(tokens) * len(text) steps, whatever the key."""
    p = t = 0
    star, mark = -1, 0
    while t < len(text):
        token = tokens[p] if p < len(tokens) else None
        if token is _ONE or (token is not None and token is not _STAR and token == text[t]):
            p += 1
            t += 1
        elif token is _STAR:
            star, mark = p, t
            p += 1
        elif star >= 0:
            p, mark = star + 1, mark + 1
            t = mark
        else:
            return False
    while p < len(tokens) and tokens[p] is _STAR:
        p += 1
    return p == len(tokens)


def glob_parts(tokens: tuple[object, ...], text: str, original: str) -> list[str] | None:
    """The match variables of a `:matches` that holds (module notes): ${0} the whole value, then what each
    wildcard ("*" and "?") matched, from `original` (the value before folding; same length as `text`)."""
    n = len(text)
    full = (1 << (n + 1)) - 1
    # can[p]: bit t is set when tokens[p:] match text[t:]
    can = [0] * (len(tokens) + 1)
    can[len(tokens)] = 1 << n
    char_masks: dict[str, int] = {}
    for p in range(len(tokens) - 1, -1, -1):
        token, after = tokens[p], can[p + 1]
        if token is _STAR:
            can[p] = ((1 << after.bit_length()) - 1) & full if after else 0
        elif token is _ONE:
            can[p] = after >> 1
        else:
            token = str(token)
            mask = char_masks.get(token)
            if mask is None:
                mask = 0
                for index, ch in enumerate(text):
                    if ch == token:
                        mask |= 1 << index
                char_masks[token] = mask
            can[p] = (after >> 1) & mask
    if not can[0] & 1:
        return None
    parts = [original]
    t = 0
    for p, token in enumerate(tokens):
        if token is _STAR:
            rest = can[p + 1] >> t
            end = t + ((rest & -rest).bit_length() - 1)  # the nearest position from which the rest matches
            parts.append(original[t:end])
            t = end
        elif token is _ONE:
            parts.append(original[t])
            t += 1
        else:
            t += 1
    return parts


def fold(text: str) -> str:
    """i;ascii-casemap: ASCII letters upper-cased, every other character as it is (lengths are kept)."""
    return text.upper() if text.isascii() else "".join(c.upper() if c.isascii() else c for c in text)


def numeric(text: str) -> float:
    """i;ascii-numeric: the leading digits as a number; none: positive infinity (RFC 4790 9.1)."""
    digits = re.match(r"[0-9]+", text)
    return float("inf") if digits is None else int(digits.group())


_RELATIONS: dict[str, Callable[[int], bool]] = {
    "gt": lambda c: c > 0,
    "ge": lambda c: c >= 0,
    "lt": lambda c: c < 0,
    "le": lambda c: c <= 0,
    "eq": lambda c: c == 0,
    "ne": lambda c: c != 0,
}


def comparator_name(tags: Tags) -> str:
    comparator = tags.get("comparator")
    return comparator[0].lower() if isinstance(comparator, tuple) else "i;ascii-casemap"


def compare(name: str, a: str, b: str) -> int:
    """-1, 0 or 1 as `a` sorts before, with or after `b` under the comparator."""
    if name == "i;ascii-numeric":
        x, y = numeric(a), numeric(b)
        return (x > y) - (x < y)
    prepare: Callable[[str], str] = fold if name == "i;ascii-casemap" else str
    u, v = prepare(a), prepare(b)
    return (u > v) - (u < v)


class Matcher:
    """A test's match type and comparator, applied to its values and keys (module notes). `captures` holds
    the match variables of the last `:matches` that held, when the caller asked for them."""

    def __init__(self, tags: Tags, *, capture: bool = False) -> None:
        self.tags = tags
        self.name = comparator_name(tags)
        self.capture = capture and "matches" in tags
        self.captures: list[str] | None = None

    def any(self, values: Sequence[str], keys: Sequence[str]) -> bool:
        tags = self.tags
        if "count" in tags:
            (relation,) = tags["count"] or ("eq",)  # type: ignore[misc]
            count = str(len(values))
            return any(_RELATIONS[str(relation)](compare(self.name, count, key)) for key in keys)
        if "value" in tags:
            (relation,) = tags["value"] or ("eq",)  # type: ignore[misc]
            test = _RELATIONS[str(relation)]
            return any(test(compare(self.name, value, key)) for value in values for key in keys)
        for value in values:
            for key in keys:
                if self.one(value, key):
                    return True
        return False

    def one(self, value: str, key: str) -> bool:
        name, tags = self.name, self.tags
        if "matches" in tags:
            value = value[:MAX_MATCHED]  # a bound on the steps a hostile header can cost (module notes)
            folded = name == "i;ascii-casemap"
            tokens = wildcard(fold(key) if folded else key)
            text = fold(value) if folded else value
            if not glob(tokens, text):
                return False
            if self.capture:
                self.captures = glob_parts(tokens, text, value)
            return True
        if name == "i;ascii-numeric":
            return numeric(value) == numeric(key)  # :is (no substring match is defined for it)
        prepare: Callable[[str], str] = fold if name == "i;ascii-casemap" else str
        if "contains" in tags:
            return prepare(key) in prepare(value)
        return prepare(value) == prepare(key)
