"""Address lists (RFC 5322 3.4, with the obsolete syntax of 4.4) as IMAP ENVELOPE addresses (RFC 3501 7.4.2).

Why not the stdlib: `email.utils.getaddresses` flattens groups (the group name is lost) and drops source
routes, both of which the ENVELOPE must show; `email._header_value_parser` decodes encoded words in display
names (the ENVELOPE sends them raw), is private, and is slow on pathological input. This tokenizer is linear
and lenient, and never raises.

Output, per RFC 3501 7.4.2: each address is [name, adl, mailbox, host].
- name: the display name as written, with quoted strings unquoted and encoded words NOT decoded; comment text
  when there is no display name ("user@host (Real Name)"); None when neither exists.
- adl: the obsolete source route "@a,@b" of an angle address, else None.
- mailbox, host: split at the last "@"; the local part keeps its quotes ("\"john doe\"") so that
  mailbox + "@" + host is the address again. An address without "@" has host "" (never None: host None marks
  group syntax); an empty angle address "<>" has mailbox "" and host "".
- Groups: [None, None, group name, None], the members, then [None, None, None, None]; empty groups too.
  An unterminated group is closed at the end of the field.
- Lenient repairs: a missing "," between "a <x@y> b <z@w>" splits after ">"; words before a bare addr-spec
  ("John Doe john@x") become its display name; ";" outside a group acts as ",".

`address_text` is the other view of a field, for SEARCH FROM/TO/CC/BCC: the field with comments removed
and the CFWS around "@" and "." gone (RFC 5322 3.2.2 and 3.4.1 allow CFWS between the tokens of an
addr-spec): `<user (c)@ (c) example.org>` reads `<user@example.org>`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from postoffice.message.headers import unquote_pairs

Address = list[str | None]


@dataclass(slots=True)
class _Token:
    kind: str  # "atom", "qs" (quoted string), "dl" (domain literal), "comment", or the special itself
    text: str  # atom text, unquoted string, comment content, or the special character
    raw: str  # the source text (quoted string with its quotes)
    space_before: bool


# One token at a time; comments are handled separately because they nest. Every alternative consumes at
# least one character and none backtracks over more than its own token, so tokenizing is linear.
_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r\n]+)
    | "(?P<qs>(?:[^"\\]|\\.)*)(?:"|\\?$)
    | (?P<dl>\[[^\]]*(?:\]|$))
    | (?P<atom>[^ \t\r\n()<>\[\]:;@\\,."]+)
    | (?P<comment>\()
    | (?P<special>.)
    """,
    re.X | re.S,
)
# Comment text, an escaped character, a run of "(" or a run of ")": a run is one step however long it is.
_COMMENT_PIECE = re.compile(r"[^()\\]+|\\.?|\(+|\)+", re.S)


class TokenBudget:
    """Tokens (and pieces of comments) that `parse_address_list` calls sharing this object may still read:
    a per-message cap on the Python work of address parsing."""

    __slots__ = ("left",)

    def __init__(self, left: int) -> None:
        self.left = left


def _comment(value: str, i: int, budget: TokenBudget | None) -> tuple[str, int]:
    """The text of the (nested) comment opening at value[i], and the index after it. A comment that the
    budget does not cover runs to the end of the value."""
    depth = 0
    pieces: list[str] = []
    for m in _COMMENT_PIECE.finditer(value, i):
        if budget is not None:
            budget.left -= 1
            if budget.left < 0:
                break
        piece = m.group()
        if piece[0] == "(":
            if depth == 0:
                piece = piece[1:]  # the opening parenthesis is not text; nested ones are
            depth += len(m.group())
        elif piece[0] == ")":
            if len(piece) >= depth:
                pieces.append(piece[: depth - 1])
                return "".join(pieces).strip(), m.start() + depth
            depth -= len(piece)
        elif piece[0] == "\\":
            piece = piece[1:]
        pieces.append(piece)
    return "".join(pieces).strip(), len(value)


def _tokenize(value: str, budget: TokenBudget | None = None) -> Iterator[_Token]:
    """The tokens of `value`; with a budget, each token and comment piece uses one, and tokenizing stops
    when none is left."""
    i, n = 0, len(value)
    space = False
    while i < n:
        if budget is not None:
            budget.left -= 1
            if budget.left < 0:
                return
        m = _TOKEN.match(value, i)
        if m is None:  # unreachable: the last alternative matches any character
            return
        kind = m.lastgroup or "special"
        if kind == "ws":
            space = True
            i = m.end()
            continue
        raw = m.group()
        if kind == "qs":
            yield _Token("qs", unquote_pairs(m.group("qs")), raw, space)
        elif kind == "comment":
            text, end = _comment(value, i, budget)
            yield _Token("comment", text, value[i:end], space)
            i = end
            space = False
            continue
        elif kind == "special":
            yield _Token(raw, raw, raw, space)
        else:
            yield _Token(kind, raw, raw, space)
        i = m.end()
        space = False


def _phrase(tokens: list[_Token]) -> str | None:
    """Display text of phrase tokens: quoted strings unquoted, words separated by one space where the source
    had whitespace."""
    out: list[str] = []
    for tok in tokens:
        if tok.kind == "comment":
            continue
        if out and tok.space_before:
            out.append(" ")
        out.append(tok.text)
    text = "".join(out).strip()
    return text or None


def _addr_spec(tokens: list[_Token]) -> tuple[str, str]:
    """(mailbox, host) from addr-spec tokens, split at the last "@"."""
    words = [t for t in tokens if t.kind != "comment"]
    at = max((i for i, t in enumerate(words) if t.kind == "@"), default=-1)
    if at < 0:
        return "".join(t.raw for t in words), ""
    return "".join(t.raw for t in words[:at]), "".join(t.raw for t in words[at + 1 :])


class _Builder:
    """Collects addresses up to a limit, keeping group markers balanced."""

    def __init__(self, limit: int) -> None:
        self.out: list[Address] = []
        self.limit = limit
        self.in_group = False

    def has_room(self) -> bool:
        # Inside a group one place stays reserved for the end marker.
        return len(self.out) < self.limit - (1 if self.in_group else 0)

    def add(self, address: Address) -> None:
        if self.has_room():
            self.out.append(address)

    def open_group(self, name: str | None) -> None:
        self.close_group()
        if len(self.out) < self.limit - 1:
            self.out.append([None, None, name or "", None])
            self.in_group = True

    def close_group(self) -> None:
        if self.in_group:
            self.out.append([None, None, None, None])
            self.in_group = False


def _flush_plain(tokens: list[_Token], builder: _Builder) -> None:
    """An address without angle brackets: an addr-spec, maybe with words before it or a comment after it."""
    words = [t for t in tokens if t.kind != "comment"]
    if not words:
        return
    comments = [t.text for t in tokens if t.kind == "comment" and t.text]
    at = max((i for i, t in enumerate(words) if t.kind == "@"), default=-1)
    name_words: list[_Token] = []
    if at > 0:
        # The local part is the run of tokens before "@" not separated by whitespace (dots may be spaced).
        k = at - 1
        while k > 0 and (not words[k].space_before or words[k].kind == "." or words[k - 1].kind == "."):
            k -= 1
        name_words, words = words[:k], words[k:]
    mailbox, host = _addr_spec(words)
    name = _phrase(name_words) or (comments[-1] if comments else None)
    builder.add([name, None, mailbox, host])


def _flush_angle(phrase: list[_Token], inner: list[_Token], builder: _Builder) -> None:
    words = [t for t in inner if t.kind != "comment"]
    adl = None
    colon = max((i for i, t in enumerate(words) if t.kind == ":"), default=-1)
    if colon >= 0:
        adl = "".join(t.raw for t in words[:colon]) or None
        words = words[colon + 1 :]
    mailbox, host = _addr_spec(words)
    builder.add([_phrase(phrase), adl, mailbox, host])


def parse_address_list(
    value: str, limit: int = 1000, *, budget: TokenBudget | None = None
) -> list[Address] | None:
    """An address-list field value as ENVELOPE addresses; None when it holds no address and no group.

    At most `limit` entries are returned (group markers included, a started group is always closed);
    tokenizing stops once the limit is reached, or once `budget` has no tokens left (the field is then read
    as if it ended there)."""
    builder = _Builder(max(limit, 0))
    current: list[_Token] = []
    angle: list[_Token] | None = None  # tokens inside "<...>" while one is open
    for tok in _tokenize(value, budget):
        if not builder.has_room():
            break
        kind = tok.kind
        if angle is not None:
            if kind == ">":
                _flush_angle(current, angle, builder)
                current, angle = [], None
            else:
                angle.append(tok)
        elif kind == "<":
            angle = []
        elif kind == ",":
            _flush_plain(current, builder)
            current = []
        elif kind == ":":
            builder.open_group(_phrase(current))
            current = []
        elif kind == ";":
            _flush_plain(current, builder)
            current = []
            builder.close_group()
        elif kind != ">":
            current.append(tok)
    if angle is not None:
        _flush_angle(current, angle, builder)
    else:
        _flush_plain(current, builder)
    builder.close_group()
    return builder.out or None


#: Tokens that an address joins without space: CFWS around them is not part of the address (RFC 5322 3.4.1).
_TIGHT = frozenset({"@", "."})


def address_text(value: str) -> str:
    """An address field as its addresses read without comments and folding: the tokens of `value` (unfolded)
    in order, comments left out, joined by one space where the source had whitespace or a comment between
    them, and by nothing around "@" and "." (and where the source had nothing).

    So a substring of the result that has no space, "@" or "." is a substring of `value` too: the search
    index can look for the pieces of a needle in the stored header text. Linear; never raises."""
    out: list[str] = []
    gap = False
    previous = ""
    for tok in _tokenize(value):
        if tok.kind == "comment":
            gap = True
            continue
        if out and (gap or tok.space_before) and tok.kind not in _TIGHT and previous not in _TIGHT:
            out.append(" ")
        out.append(tok.raw)
        previous = tok.kind
        gap = False
    return "".join(out)
