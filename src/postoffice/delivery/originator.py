"""The originator fields of a submitted message, read strictly: who the message says it is from (RFC 5322
sections 3.6.2 and 3.6.6), for the submission check that the account owns every such address (RFC 6409
section 6.1; docs/decisions/0024-submission-originator-fields.md), used by the submission policy
(`postoffice.delivery.submission`); `postoffice.smtp.originator` re-exports it.

Why its own parser: the store's (`message.addresses`) is lenient by design (it shows what a message says,
repairing what it can); the stdlib's `email.headerregistry` records defects but still yields an address for
most malformed forms, decodes an encoded word in a local part, and drops a field written "From :". A
submission must refuse what readers might interpret differently; lenient parsing is where spoofing hides.

The header block (RFC 5322 section 2.2)
- Every line up to the first empty line. Each line must open a field (a name of printable ASCII but ":",
  optional WSP before the colon (section 4.5.3, obs-optional: such a field counts), ":") or continue one (it
  starts with WSP and has more than WSP). Anything else, a continuation first, or a whitespace-only line is
  refused (554 5.6.0): readers disagree on where such a header ends, so a field behind it would be a From to
  some of them and body text to others. Line ends are CRLF already (the protocol core normalises them).
- Field names compare case-insensitively. From exactly once; Sender at most once; Resent-From and
  Resent-Sender any number of times (one per resent block, section 3.6.6).
- Field values must be UTF-8 (RFC 6532) without control characters (NUL, obs-utext and obs-qp are refused),
  line or paragraph separators; at most MAX_FIELD_OCTETS, MAX_ADDRESSES addresses in all.

Syntax (RFC 5322 section 3.4 with RFC 6532's UTF-8; anything else is refused, 553 5.7.1)
- From and Resent-From: mailbox *("," mailbox); Sender and Resent-Sender: one mailbox. Group syntax (RFC
  6854) is refused: a group names no author the account can vouch for.
- mailbox: addr-spec, or [display-name] "<" addr-spec ">". Display names may hold quoted strings, encoded
  words (RFC 2047) and periods (obs-phrase: "John Q. Public"); comments and folding white space may stand
  wherever CFWS may.
- addr-spec: a dot-atom local part, or a quoted one whose content is itself a dot-atom (it is then the same
  address, section 3.4.1); "@"; a dot-atom domain or a domain literal. Refused: obsolete source routes,
  CFWS inside a local part or domain (obs-local-part, obs-domain), empty list elements (obs-mbox-list), other
  quoted local parts (they can hide an "@"), encoded words (RFC 2047 section 5 forbids them there), non-ASCII
  outside an SMTPUTF8 transaction (RFC 6531 section 3.3), characters no address may hold
  (`smtp.address.disallowed_character`), local parts over 64 and domains over 255 octets (RFC 5321).
- A From with more than one mailbox needs a Sender (section 3.6.2).

What must be owned (`Claim`): every address of the four fields, and every address written in a display name
or comment of theirs ("bob@example.test" <alice@example.test>), found after RFC 2047 decoding, NFKC and
dropping invisible characters: "@" with a local part and a domain with a dot on either side.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from postoffice.message.headers import decode_words
from postoffice.smtp.address import (
    MAX_DOMAIN_OCTETS,
    MAX_LOCAL_PART_OCTETS,
    disallowed_character,
)

__all__ = [
    "MAX_ADDRESSES",
    "MAX_FIELD_OCTETS",
    "Claim",
    "OriginatorRefused",
    "mentions",
    "parse_mailbox_list",
    "read_claims",
]

#: Longest originator field value, folded lines included.
MAX_FIELD_OCTETS = 16 * 1024
#: Most addresses (and addresses in display names) across the originator fields of one message.
MAX_ADDRESSES = 100
#: Header lines are read in pieces of this size; a longer originator line is refused.
_LINE_PIECE = 64 * 1024

#: The originator fields and whether each holds a mailbox-list (else one mailbox).
_FIELDS = {"from": True, "sender": False, "resent-from": True, "resent-sender": False}
_DISPLAY_NAMES = {
    "from": "From",
    "sender": "Sender",
    "resent-from": "Resent-From",
    "resent-sender": "Resent-Sender",
}

# RFC 5322 section 3.6.8 field name, then the obsolete WSP before ":" (section 4.5.3); as message.headers.
_FIELD = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]*:")
# RFC 5322 section 3.2.3 atext; RFC 6532 section 3.2 adds every non-ASCII character.
_ATEXT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~")
_DOT_ATOM = re.compile(r"[^.]+(?:\.[^.]+)*")
_ENCODED_WORD = re.compile(r"=\?[^?]*\?[bBqQ]\?[^?]*\?=")
# An address written in text: "@" between a local part and a domain (`mentions` requires a dot in it).
_MENTION = re.compile(r"""([^\s<>()\[\]",;:@]+)@([^\s<>()\[\]",;:@]+)""")
# Full stops that IDNA treats as label separators (RFC 3490 section 3.1); NFKC maps the fullwidth "．" only.
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})


class OriginatorRefused(Exception):
    """The message is refused; `reply` is (code, enhanced status, text) for the end of data. The text names
    no client octets except as `reply_text` escapes them (the protocol core does)."""

    def __init__(self, code: int, enhanced: str, text: str) -> None:
        super().__init__(text)
        self.reply = (code, enhanced, text)


class _Unparsable(Exception):
    """A field value that is not the strict syntax; the message is a short fixed ASCII text."""


@dataclass(frozen=True)
class Claim:
    """An address the message claims for its author: it must be the account's own.

    `field` is the field's canonical name ("From"); `mentioned`: written in a display name or comment
    rather than as the address itself."""

    field: str
    address: str
    mentioned: bool = False


# -- the header block ---------------------------------------------------------------------------------------


def read_claims(fp: IO[bytes], start: int, *, smtputf8: bool) -> list[Claim]:
    """Read the header block of the message at offset `start` of `fp` and return what must be owned, From
    first. Raises OriginatorRefused. Reads the whole header block, however long, but keeps only the
    originator fields."""
    fields = _originator_fields(fp, start)
    counts = {name: sum(1 for n, _ in fields if n == name) for name in _FIELDS}
    if counts["from"] == 0:
        raise OriginatorRefused(553, "5.7.1", "The message has no From header field (RFC 5322 3.6)")
    if counts["from"] > 1:
        raise OriginatorRefused(
            553, "5.7.1", "The message has more than one From header field (RFC 5322 3.6)"
        )
    if counts["sender"] > 1:
        raise OriginatorRefused(
            553, "5.7.1", "The message has more than one Sender header field (RFC 5322 3.6)"
        )
    claims: list[Claim] = []
    from_count = 0
    order = sorted(fields, key=lambda f: list(_FIELDS).index(f[0]))  # From first: the one users see
    for name, raw in order:
        label = _DISPLAY_NAMES[name]
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise OriginatorRefused(
                553, "5.7.1", f"{label} header field is not valid UTF-8 (RFC 6532)"
            ) from None
        try:
            addresses, texts = parse_mailbox_list(value, smtputf8=smtputf8, single=not _FIELDS[name])
        except _Unparsable as exc:
            raise OriginatorRefused(553, "5.7.1", f"{label} header field cannot be parsed: {exc}") from None
        if name == "from":
            from_count = len(addresses)
        claims.extend(Claim(label, address) for address in addresses)
        claims.extend(Claim(label, mention, mentioned=True) for mention in mentions(texts))
        if len(claims) > MAX_ADDRESSES:
            raise OriginatorRefused(553, "5.7.1", "Too many addresses in the originator header fields")
    if from_count > 1 and counts["sender"] == 0:
        raise OriginatorRefused(
            553, "5.7.1", "A From header field with several addresses needs a Sender field (RFC 5322 3.6.2)"
        )
    return claims


def _originator_fields(fp: IO[bytes], start: int) -> list[tuple[str, bytes]]:
    """(lower-case name, raw unfolded value) of every originator field; checks the block's structure."""
    fp.seek(start)
    found: list[tuple[str, list[bytes]]] = []
    current: list[bytes] | None = None  # the pieces of the originator field being read
    size = 0
    number = 0
    for line, complete in _lines(fp):
        number += 1
        if not line and complete:
            break  # the empty line ending the header block (RFC 5322 section 2.1)
        if line[:1] in (b" ", b"\t"):
            if number == 1 or not line.strip(b" \t"):
                raise OriginatorRefused(
                    554, "5.6.0", f"Malformed header: line {number} is an empty or misplaced continuation"
                )
            if current is not None:
                size += len(line)
                if size > MAX_FIELD_OCTETS or not complete:
                    raise OriginatorRefused(553, "5.7.1", "Originator header field too long")
                current.append(line)  # unfolding (section 2.2.3): the CRLF goes, the WSP stays
            continue
        match = _FIELD.match(line)
        if match is None:
            raise OriginatorRefused(
                554, "5.6.0", f"Malformed header: line {number} is neither a header field nor a continuation"
            )
        name = match.group(1).decode("ascii").lower()
        current = None
        if name in _FIELDS:
            size = len(line)
            if size > MAX_FIELD_OCTETS or not complete:
                raise OriginatorRefused(553, "5.7.1", "Originator header field too long")
            current = [line[match.end() :]]
            found.append((name, current))
            if len(found) > MAX_ADDRESSES:
                raise OriginatorRefused(553, "5.7.1", "Too many originator header fields")
    return [(name, b"".join(pieces)) for name, pieces in found]


def _lines(fp: IO[bytes]) -> Iterator[tuple[bytes, bool]]:
    """Header lines without their CRLF, and whether each was complete (else: longer than _LINE_PIECE; only
    its first piece is returned and the rest is skipped)."""
    while True:
        piece = fp.readline(_LINE_PIECE)
        if not piece:
            return
        if piece.endswith(b"\n"):
            yield piece.rstrip(b"\r\n"), True
            continue
        if len(piece) < _LINE_PIECE:
            yield piece, True  # the last line of a message without a final CRLF (BDAT)
            return
        yield piece, False
        while True:  # skip the rest of the long line
            rest = fp.readline(_LINE_PIECE)
            if not rest or rest.endswith(b"\n"):
                break


# -- field values -------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Token:
    kind: str  # "atom", "qs" (quoted string), "dl" (domain literal), or the special character itself
    text: str  # atom text, quoted-string content with quoted pairs resolved, the literal, the special
    space: bool  # CFWS (white space or a comment) right before it


#: Deepest comment nesting read (RFC 5322 allows any; a bound keeps the scan trivially linear).
_MAX_COMMENT_DEPTH = 32


def parse_mailbox_list(value: str, *, smtputf8: bool, single: bool = False) -> tuple[list[str], list[str]]:
    """The addresses of a mailbox-list (`single`: of exactly one mailbox) in the strict syntax of the module
    notes, and the texts a reader sees beside them (display names, comments). Raises _Unparsable."""
    for ch in value:
        if (ch < " " and ch != "\t") or "\x7f" <= ch <= "\x9f" or ch in "\u2028\u2029":
            raise _Unparsable(f"control character {ord(ch):#04x}" if ch < "\x80" else "control character")
    texts: list[str] = []
    tokens = _tokenize(value, texts)
    parser = _MailboxParser(tokens, smtputf8, texts)
    addresses = [parser.mailbox()]
    while (token := parser.peek()) is not None:
        if token.kind != ",":
            raise _Unparsable(f"unexpected {_describe(token)} after an address")
        parser.pos += 1
        addresses.append(parser.mailbox())
    if single and len(addresses) != 1:
        raise _Unparsable("one address expected")
    return addresses, texts


def _describe(token: _Token) -> str:
    if token.kind in ("atom", "qs", "dl"):
        return {"atom": "word", "qs": "quoted string", "dl": "domain literal"}[token.kind]
    return f"'{token.kind}'"


def _tokenize(value: str, comments: list[str]) -> list[_Token]:
    """RFC 5322 section 3.2 lexical tokens; comment texts go to `comments`."""
    tokens: list[_Token] = []
    pos, end = 0, len(value)
    space = False
    while pos < end:
        ch = value[pos]
        if ch in " \t":
            space = True
            pos += 1
        elif ch == "(":
            text, pos = _comment(value, pos)
            comments.append(text)
            space = True
        elif ch == '"':
            text, pos = _quoted_string(value, pos)
            tokens.append(_Token("qs", text, space))
            space = False
        elif ch == "[":
            close = value.find("]", pos)
            literal = value[pos : close + 1]
            if close < 0 or "[" in literal[1:] or "\\" in literal:
                raise _Unparsable("malformed domain literal")
            tokens.append(_Token("dl", literal, space))
            pos = close + 1
            space = False
        elif ch in _ATEXT or ch > "\x7f":
            start = pos
            while pos < end and (value[pos] in _ATEXT or value[pos] > "\x7f"):
                pos += 1
            tokens.append(_Token("atom", value[start:pos], space))
            space = False
        elif ch in "<>@,:;.":
            tokens.append(_Token(ch, ch, space))
            pos += 1
            space = False
        else:
            raise _Unparsable(f"unexpected '{ch}'")
    return tokens


def _comment(value: str, pos: int) -> tuple[str, int]:
    """The text of the (nested) comment opening at value[pos], quoted pairs resolved; the index after it."""
    depth = 0
    out: list[str] = []
    end = len(value)
    while pos < end:
        ch = value[pos]
        if ch == "\\":
            if pos + 1 >= end:
                break
            out.append(value[pos + 1])
            pos += 2
            continue
        if ch == "(":
            depth += 1
            if depth > _MAX_COMMENT_DEPTH:
                raise _Unparsable("comments nested too deeply")
            if depth > 1:
                out.append(ch)
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return "".join(out), pos + 1
            out.append(ch)
        else:
            out.append(ch)
        pos += 1
    raise _Unparsable("unterminated comment")


def _quoted_string(value: str, pos: int) -> tuple[str, int]:
    """The content of the quoted string opening at value[pos], quoted pairs resolved; the index after it."""
    out: list[str] = []
    pos += 1
    end = len(value)
    while pos < end:
        ch = value[pos]
        if ch == '"':
            return "".join(out), pos + 1
        if ch == "\\":
            if pos + 1 >= end:
                break
            out.append(value[pos + 1])
            pos += 2
            continue
        out.append(ch)
        pos += 1
    raise _Unparsable("unterminated quoted string")


class _MailboxParser:
    """mailbox = name-addr / addr-spec over the tokens, strictly (module notes)."""

    def __init__(self, tokens: list[_Token], smtputf8: bool, texts: list[str]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.smtputf8 = smtputf8
        self.texts = texts

    def peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, what: str) -> _Token:
        token = self.peek()
        if token is None:
            raise _Unparsable(f"{what} missing")
        self.pos += 1
        return token

    def mailbox(self) -> str:
        words: list[_Token] = []
        while (token := self.peek()) is not None and (
            token.kind in ("atom", "qs") or (token.kind == "." and words)
        ):
            words.append(token)
            self.pos += 1
        token = self.peek()
        if token is not None and token.kind == "<":
            self.pos += 1
            if words:
                self.texts.append(_phrase(words))
            if (first := self.peek()) is not None and first.kind == "@":
                raise _Unparsable("source route (obsolete syntax)")
            local = self.local_part()
            self.expect("@")
            domain = self.domain()
            self.expect(">")
        elif token is not None and token.kind == "@" and words:
            local = _bare_local_part(words)
            self.pos += 1
            domain = self.domain()
        elif token is not None and token.kind == ":":
            raise _Unparsable("group syntax")
        elif words:
            raise _Unparsable("an address needs @ and a domain")
        elif token is None:
            raise _Unparsable("address missing")
        else:
            raise _Unparsable(f"unexpected {_describe(token)}")
        return _check_address(local, domain, smtputf8=self.smtputf8)

    def expect(self, kind: str) -> None:
        token = self.take(f"'{kind}'")
        if token.kind != kind:
            raise _Unparsable(f"'{kind}' expected, not {_describe(token)}")

    def local_part(self) -> str:
        token = self.take("local part")
        if token.kind == "qs":
            return _quoted_local_part(token.text)
        if token.kind != "atom":
            raise _Unparsable(f"local part expected, not {_describe(token)}")
        return self._dot_atom(token, "local part")

    def domain(self) -> str:
        token = self.take("domain")
        if token.kind == "dl":
            return token.text
        if token.kind != "atom":
            raise _Unparsable(f"domain expected, not {_describe(token)}")
        return self._dot_atom(token, "domain")

    def _dot_atom(self, first: _Token, what: str) -> str:
        """dot-atom-text from its first atom: "." and atoms with no CFWS between them (else obs-local-part /
        obs-domain)."""
        parts = [first.text]
        while (dot := self.peek()) is not None and dot.kind == ".":
            following = self.tokens[self.pos + 1] if self.pos + 1 < len(self.tokens) else None
            if dot.space or following is None or following.kind != "atom" or following.space:
                raise _Unparsable(f"malformed {what}")
            parts.append(following.text)
            self.pos += 2
        return ".".join(parts)


def _phrase(words: list[_Token]) -> str:
    """A display name as a reader sees it (quoted strings unquoted, encoded words not yet decoded)."""
    out: list[str] = []
    for word in words:
        if out and word.space:
            out.append(" ")
        out.append(word.text)
    return "".join(out)


def _bare_local_part(words: list[_Token]) -> str:
    """The local part of an addr-spec without angle brackets: one quoted string, or atoms joined by dots
    with no CFWS inside (the first may follow CFWS)."""
    if len(words) == 1 and words[0].kind == "qs":
        return _quoted_local_part(words[0].text)
    kinds = [w.kind for w in words]
    expected = ["atom", "."] * (len(words) // 2) + ["atom"]
    if kinds != expected:
        raise _Unparsable("malformed local part")
    if any(w.space for w in words[1:]):
        raise _Unparsable("display name without angle brackets, or CFWS inside a local part")
    return "".join(w.text for w in words)


def _quoted_local_part(content: str) -> str:
    """A quoted local part is taken only when its content is a dot-atom: then it is that address."""
    if not _DOT_ATOM.fullmatch(content) or not all(
        ch in _ATEXT or ch == "." or ch > "\x7f" for ch in content
    ):
        raise _Unparsable("quoted local part that is not a plain local part")
    return content


def _check_address(local: str, domain: str, *, smtputf8: bool) -> str:
    address = f"{local}@{domain}"
    if _ENCODED_WORD.search(address):
        raise _Unparsable("encoded word in an address (RFC 2047 section 5)")
    if not smtputf8 and not address.isascii():
        raise _Unparsable("non-ASCII address without SMTPUTF8 (RFC 6531)")
    if (bad := disallowed_character(address)) is not None:
        raise _Unparsable(f"the address contains U+{ord(bad):04X}")
    if len(local.encode("utf-8")) > MAX_LOCAL_PART_OCTETS or len(domain.encode("utf-8")) > MAX_DOMAIN_OCTETS:
        raise _Unparsable("address too long")
    return address


# -- addresses in display names and comments --------------------------------------------------------------


def mentions(texts: list[str]) -> list[str]:
    """Addresses written in display names or comments, as a reader would take them: after RFC 2047 decoding
    (also inside quoted strings: many readers decode there), NFKC (fullwidth and small "@" and "."), IDNA's
    other full stops, and with invisible characters dropped."""
    found: dict[str, None] = {}
    for text in texts:
        for candidate in {text, decode_words(text)}:
            normal = unicodedata.normalize("NFKC", candidate).translate(_DOTS)
            visible = "".join(_visible(ch) for ch in normal)
            for match in _MENTION.finditer(visible):
                local = match.group(1).lstrip("'`")
                domain = match.group(2).rstrip(".'`")
                if local and "." in domain:
                    found[f"{local}@{domain}"] = None
    return list(found)


def _visible(ch: str) -> str:
    if " " <= ch <= "~":
        return ch
    if disallowed_character(ch) is None:
        return ch
    return " " if unicodedata.category(ch) in ("Zs", "Zl", "Zp", "Cc") else ""
