"""Comparators and match types of Sieve (RFC 5228 section 2.7, RFC 4790, RFC 5231 relational, RFC 5229
section 3.2 match variables).

- Comparators: i;octet (code points), i;ascii-casemap (ASCII letters folded; the default), i;ascii-numeric
  (the leading digits as a number; a value without them is positive infinity, equal only to another such
  value: RFC 4790 section 9.1).
- Match types: `:is`, `:contains`, `:matches` ("*" any run, "?" one character, "\\\\" quotes the next
  character), and RFC 5231's `:value "op"` (each value against each key, "gt" meaning value > key under the
  comparator's order) and `:count "op"` (the number of values against each key, compared as a number
  string by the comparator: with i;ascii-numeric, the usual case, numerically).
- `:matches` (`glob`) never backtracks across "*": the runs between the stars are found one after the other,
  each at its leftmost place, by the regular expression engine as fixed-length patterns (C speed); a value is
  compared by its first MAX_MATCHED characters. When the caller wants match variables
  (`matches(..., capture=True)`), the parts each wildcard matched come from a second pass that takes, for
  each "*" from the left, the shortest run after which the rest can still match (RFC 5229 section 3.2:
  "[*] *" on "[a] [b] c" gives "a" and "[b] c"), using bit masks of the positions from which the rest of
  the key matches (one big integer per token), so it stays linear in the value's length per token.
- `:regex` (draft-ietf-sieve-regex-01): the key is a POSIX extended regular expression (IEEE Std 1003.1
  section 9.4), translated into the `regex` module's syntax by `ere` (bracket expressions with their POSIX
  classes, a backslash quoting the character after it, "(?" refused) and searched with POSIX
  leftmost-longest semantics; i;ascii-casemap matches ASCII letters in either case, i;octet as written (the
  two comparators the draft allows). Each search has REGEX_TIMEOUT seconds (the engine backtracks: a
  pattern such as "(a|a)*b" could otherwise take exponential time); a search that runs out is
  `RegexTimeout`, which the interpreter reports as a run-time error (the message is kept); all the searches
  of one run share the run's time (`Matcher(deadline=...)`). The match
  variables are the whole match, then each group ("" for one that took no part).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from functools import lru_cache

import regex

Tags = dict[str, tuple[str, ...] | int | None]

#: Characters of a value `:matches` compares at most (its first ones): the steps of one match are at most
#: this times the key's length.
MAX_MATCHED = 65536

_STAR, _ONE = object(), object()

#: Seconds one `:regex` search may take (module notes).
REGEX_TIMEOUT = 0.25
#: Characters of a `:regex` key at most.
MAX_REGEX = 4096
#: POSIX's RE_DUP_MAX (the largest count of an interval, as glibc's), and the atoms a key may expand to
#: (`ere`: the module expands intervals when it compiles, in time and memory).
RE_DUP_MAX = 255
MAX_EXPANSION = 20000
#: The character classes of POSIX bracket expressions (IEEE Std 1003.1 section 9.3.5).
_CLASSES = frozenset(
    {
        "alpha",
        "digit",
        "alnum",
        "upper",
        "lower",
        "space",
        "blank",
        "punct",
        "print",
        "graph",
        "cntrl",
        "xdigit",
    }
)


class RegexTimeout(Exception):
    """A `:regex` search took longer than REGEX_TIMEOUT (module notes)."""


def _bracket(pattern: str, start: int) -> tuple[str, int]:
    """The bracket expression that opens at `start` (just after "[") in the `regex` module's syntax, and
    where it ends (after its "]"); ValueError when it does not end or names an unknown class."""
    i, n = start, len(pattern)
    out = ["["]
    if i < n and pattern[i] == "^":
        out.append("^")
        i += 1
    first = True
    while True:
        if i >= n:
            raise ValueError("a bracket expression does not end")
        ch = pattern[i]
        if ch == "]" and not first:
            return "".join(out) + "]", i + 1
        first = False
        if ch == "[" and i + 1 < n and pattern[i + 1] in ":=.":
            kind = pattern[i + 1]
            end = pattern.find(kind + "]", i + 2)
            if end < 0:
                raise ValueError(f"[{kind} does not end")
            name = pattern[i + 2 : end]
            if kind == ":":
                if name not in _CLASSES:
                    raise ValueError(f'"{name}" is not a character class')
                out.append(f"[:{name}:]")
            elif len(name) == 1:  # [=a=] and [.a.] of one character: that character
                out.append(regex.escape(name))
            else:
                raise ValueError(f"[{kind}{name}{kind}] is not supported")
            i = end + 2
            continue
        if ch == "-" and len(out) > 1 and out[-1] not in ("[", "^") and i + 1 < n and pattern[i + 1] != "]":
            out.append("-")  # a range between the characters on either side
        else:
            out.append(regex.escape(ch, special_only=False) if not ch.isalnum() else ch)
        i += 1


def ere(pattern: str) -> str:
    """A POSIX extended regular expression in the `regex` module's syntax (module notes); ValueError for one
    that is not valid, or uses what POSIX leaves undefined and the module reads differently: a duplication
    symbol after another one (the module's possessive and lazy forms), at the start, or after "(", "|" or
    "^" (its verbs such as "(*FAIL)"). "$" is the end of the value (`\\Z`: the module's "$" also matches
    before a final newline). Intervals are at most RE_DUP_MAX (255) and the pattern's size once the module
    has expanded its intervals at most MAX_EXPANSION atoms (it expands them when compiling, without bound)."""
    if len(pattern) > MAX_REGEX:
        raise ValueError(f"longer than {MAX_REGEX} characters")
    out: list[str] = []
    # the expansion estimate: atoms of the current group so far, and of the last atom (a group counts whole)
    size, last = 0, 0
    stack: list[tuple[int, int]] = []
    quantifiable = False  # whether a duplication symbol may follow (an atom or a group just ended)
    i, n = 0, len(pattern)

    def atom(text: str) -> None:
        nonlocal size, last, quantifiable
        out.append(text)
        size, last, quantifiable = size + 1, 1, True

    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= n:
                raise ValueError("it ends in a backslash")
            quoted = pattern[i + 1]
            atom(quoted if quoted.isalnum() else regex.escape(quoted, special_only=False))
            i += 2
            continue
        if ch == "[":
            text, i = _bracket(pattern, i + 1)
            atom(text)
            continue
        if ch == "(":
            if pattern.startswith("(?", i):
                raise ValueError('"(?" is not a POSIX regular expression')
            stack.append((size, last))
            size, last, quantifiable = 0, 0, False
            out.append("(")
            i += 1
            continue
        if ch == ")":
            if not stack:
                raise ValueError('a ")" without its "("')
            inner = max(size, 1)
            size, last = stack.pop()
            size, last, quantifiable = size + inner, inner, True
            out.append(")")
            i += 1
            continue
        if ch in "*+?{":
            interval = re.match(r"\{([0-9]{1,4})(,([0-9]{0,4}))?\}", pattern[i:]) if ch == "{" else None
            if ch == "{" and interval is None:
                atom("\\{")  # a "{" that opens no interval is itself
                i += 1
                continue
            if not quantifiable:
                raise ValueError(f'"{ch}" must follow something it repeats')
            if interval is not None:
                low = int(interval.group(1))
                high = int(interval.group(3)) if interval.group(3) else low
                if low > RE_DUP_MAX or high > RE_DUP_MAX or (interval.group(3) and high < low):
                    raise ValueError(f"the interval {interval.group(0)} is not one (at most {RE_DUP_MAX})")
                size += last * (max(low, high) - 1)
                last *= max(low, high, 1)
                if size > MAX_EXPANSION:
                    raise ValueError("its repetitions are too large")
                out.append(interval.group(0))
                i += len(interval.group(0))
            else:
                out.append(ch)
                i += 1
            quantifiable = False
            continue
        if ch in "|^":
            out.append(ch)
            quantifiable = False
            i += 1
            continue
        if ch == "$":
            out.append("\\Z")
            quantifiable = False
            i += 1
            continue
        atom(ch if ch == "." or ch.isalnum() else regex.escape(ch, special_only=False))
        i += 1
    if stack:
        raise ValueError('a "(" without its ")"')
    return "".join(out)


@lru_cache(maxsize=256)
def compile_regex(pattern: str, casefold: bool) -> regex.Pattern[str]:
    """The compiled `:regex` key (module notes); ValueError with the reason for one that is not valid."""
    flags = regex.POSIX | regex.DOTALL | regex.V0
    if casefold:
        flags |= regex.IGNORECASE | regex.ASCII
    try:
        return regex.compile(ere(pattern), flags)
    except (regex.error, OverflowError, RecursionError, MemoryError) as exc:
        raise ValueError(str(exc) or type(exc).__name__) from None


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


@lru_cache(maxsize=1024)
def _segments(tokens: tuple[object, ...]) -> tuple[tuple[re.Pattern[str], int], ...]:
    """The runs between the "*" of a key, each as a fixed-length pattern ("?" any one character) and its
    length."""
    runs: list[list[object]] = [[]]
    for token in tokens:
        if token is _STAR:
            runs.append([])
        else:
            runs[-1].append(token)
    return tuple(
        (re.compile("".join("." if t is _ONE else re.escape(str(t)) for t in run), re.DOTALL), len(run))
        for run in runs
    )


def glob(tokens: tuple[object, ...], text: str) -> bool:
    """Whether `text` matches the tokens whole: the first run at the start, the last at the end, each run
    between at its leftmost place after the one before (a "*" takes whatever lies between, so the leftmost
    place is never worse). Each run is searched by the regular expression engine as a fixed-length pattern,
    which cannot backtrack beyond its own length: at most len(run) * len(text) steps in C per run."""
    runs = _segments(tokens)
    if len(runs) == 1:
        return runs[0][1] == len(text) and runs[0][0].fullmatch(text) is not None
    (first, first_width), *middle, (last, last_width) = runs
    start, end = first_width, len(text) - last_width
    if end < start or first.match(text) is None or last.match(text, end) is None:
        return False
    for run, _width in middle:
        found = run.search(text, start, end)
        if found is None:
            return False
        start = found.end()
    return True


def _mask(text: str, ch: str) -> int:
    """The positions of `ch` in `text` as the bits of an integer."""
    bits = bytearray(len(text) // 8 + 1)
    for found in re.finditer(re.escape(ch), text):
        position = found.start()
        bits[position >> 3] |= 1 << (position & 7)
    return int.from_bytes(bits, "little")


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
                mask = char_masks[token] = _mask(text, token)
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


def numeric(text: str) -> tuple[int, int, str]:
    """i;ascii-numeric's order key: the leading digits as a number (compared by their count without leading
    zeros, then as text: no conversion, so any length is fine); none: positive infinity (RFC 4790 9.1)."""
    digits = re.match(r"[0-9]+", text)
    if digits is None:
        return (1, 0, "")
    value = digits.group().lstrip("0")
    return (0, len(value), value)


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

    def __init__(self, tags: Tags, *, capture: bool = False, deadline: float | None = None) -> None:
        self.tags = tags
        self.deadline = deadline  # time.monotonic() by which every `:regex` search of the run must end
        self.name = comparator_name(tags)
        self.capture = capture and ("matches" in tags or "regex" in tags)
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
        if "regex" in tags:
            timeout = REGEX_TIMEOUT
            if self.deadline is not None:
                timeout = min(timeout, self.deadline - time.monotonic())
                if timeout <= 0:
                    raise RegexTimeout("the script ran out of time in a regular expression")
            try:  # the whole value: a cut would move where "$" matches (the time is bounded instead)
                found = compile_regex(key, name == "i;ascii-casemap").search(value, timeout=timeout)
            except TimeoutError:
                raise RegexTimeout(f"the regular expression {key[:80]!r} took too long") from None
            except ValueError:
                return False  # a key made by variables that is no regular expression matches nothing
            if found is None:
                return False
            if self.capture:
                self.captures = [found.group(0), *(g or "" for g in found.groups())]
            return True
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
