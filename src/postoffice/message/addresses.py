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
"""

from __future__ import annotations

from dataclasses import dataclass

Address = list[str | None]

_SPECIALS = '()<>[]:;@\\,."'
_WSP = " \t\r\n"


@dataclass(slots=True)
class _Token:
    kind: str  # "atom", "qs" (quoted string), "dl" (domain literal), "comment", or the special itself
    text: str  # atom text, unquoted string, comment content, or the special character
    raw: str  # the source text (quoted string with its quotes)
    space_before: bool


def _tokenize(value: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(value)
    space = False
    while i < n:
        c = value[i]
        if c in _WSP:
            space = True
            i += 1
            continue
        start = i
        if c == '"':
            i += 1
            chars: list[str] = []
            while i < n and value[i] != '"':
                if value[i] == "\\" and i + 1 < n:
                    i += 1
                chars.append(value[i])
                i += 1
            i += 1  # the closing quote (or past the end)
            tokens.append(_Token("qs", "".join(chars), value[start:i], space))
        elif c == "(":
            depth = 0
            chars = []
            while i < n:
                ch = value[i]
                if ch == "\\" and i + 1 < n:
                    chars.append(value[i + 1])
                    i += 2
                    continue
                if ch == "(":
                    depth += 1
                    if depth > 1:
                        chars.append(ch)
                elif ch == ")":
                    depth -= 1
                    if depth == 0:
                        i += 1
                        break
                    chars.append(ch)
                else:
                    chars.append(ch)
                i += 1
            tokens.append(_Token("comment", "".join(chars).strip(), value[start:i], space))
        elif c == "[":
            end = value.find("]", i)
            i = n if end < 0 else end + 1
            tokens.append(_Token("dl", value[start:i], value[start:i], space))
        elif c in _SPECIALS:
            i += 1
            tokens.append(_Token(c, c, c, space))
        else:
            while i < n and value[i] not in _SPECIALS and value[i] not in _WSP:
                i += 1
            tokens.append(_Token("atom", value[start:i], value[start:i], space))
        space = False
    return tokens


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

    def _room(self) -> bool:
        # Inside a group one place stays reserved for the end marker.
        return len(self.out) < self.limit - (1 if self.in_group else 0)

    def add(self, address: Address) -> None:
        if self._room():
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


def parse_address_list(value: str, limit: int = 1000) -> list[Address] | None:
    """An address-list field value as ENVELOPE addresses; None when it holds no address and no group.

    At most `limit` entries are returned (group markers included, a started group is always closed)."""
    tokens = _tokenize(value)
    builder = _Builder(max(limit, 0))
    current: list[_Token] = []
    i, n = 0, len(tokens)
    while i < n:
        tok = tokens[i]
        kind = tok.kind
        if kind == "<":
            j = i + 1
            while j < n and tokens[j].kind != ">":
                j += 1
            _flush_angle(current, tokens[i + 1 : j], builder)
            current = []
            i = j + 1
            continue
        if kind == ",":
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
        i += 1
    _flush_plain(current, builder)
    builder.close_group()
    return builder.out or None
