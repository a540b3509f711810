"""Envelope paths of the SMTP MAIL and RCPT commands (RFC 5321 section 4.1.2, RFC 6531 section 3.3).

Implementation notes
- Input is the command argument already decoded from UTF-8. Non-ASCII characters are accepted wherever
  RFC 6531 section 3.3 allows them (atext, qtextSMTP, sub-domain as U-label); whether the session may use them
  (the MAIL command carried SMTPUTF8) is decided by the protocol core, not here.
- The result is the mailbox as the client wrote it, without angle brackets and without the obsolete source
  route (RFC 5321 section 4.1.1.3 and appendix C: a server SHOULD ignore the route). Case is preserved: the
  local part is case sensitive (RFC 5321 section 2.4); folding domains and aliases is the directory's job.
- `<postmaster>` without a domain (RFC 5321 section 4.1.1.3) is returned as the string "postmaster".
- Deliberately lenient: a dot-string local part may have leading, trailing or doubled dots ("first..last",
  "user."); such addresses exist in the wild (notably at Japanese mobile carriers) and rejecting them protects
  nothing. Everything else follows the RFC 5321 grammar.
- Size limits of RFC 5321 section 4.5.3.1: local part 64 octets (4.5.3.1.1), domain 255 octets (4.5.3.1.2),
  path 256 octets including the angle brackets (4.5.3.1.3). Octets are counted in UTF-8.
- Address literals: IPv4 and IPv6 (RFC 5321 section 4.1.3). General address literals with other standardized
  tags are rejected: none has been registered.
- Characters no address may hold (`disallowed_character`, docs/decisions/0025): RFC 6531 lets any non-ASCII
  character into an address, but an address ends up in Return-Path, Received, logs and reply texts, and is
  read by people. Refused, after the FreeformClass of RFC 8264 (section 4.3, derived properties of section
  9): controls (Cc: NEL U+0085 and the other C1 controls), format characters (Cf: the bidi marks, embeddings,
  overrides and isolates U+200E/F, U+202A-E, U+2066-9, zero-width characters, the BOM), line and paragraph
  separators (Zl, Zp), private use (Co), surrogates (Cs), unassigned code points and noncharacters (Cn, as
  of the Unicode version of this Python), other Default_Ignorable_Code_Points (variation selectors, Hangul
  fillers, tags) and old Hangul jamo; and, as the IdentifierClass does, spaces other than the ASCII space
  (Zs: U+00A0, U+3000, ...), which look like nothing. The protocol core answers 553 5.1.7 (MAIL) / 553
  5.1.3 (RCPT): the address is well-formed but not an allowed mailbox name (RFC 5321 section 4.2.2, RFC
  3463 X.1.7 / X.1.3).
"""

from __future__ import annotations

import ipaddress
import unicodedata

__all__ = [
    "MAX_DOMAIN_OCTETS",
    "MAX_LOCAL_PART_OCTETS",
    "MAX_PATH_OCTETS",
    "AddressSyntaxError",
    "disallowed_character",
    "parse_forward_path",
    "parse_reverse_path",
]

MAX_LOCAL_PART_OCTETS = 64  # RFC 5321 section 4.5.3.1.1
MAX_DOMAIN_OCTETS = 255  # RFC 5321 section 4.5.3.1.2
MAX_PATH_OCTETS = 256  # RFC 5321 section 4.5.3.1.3, including "<" and ">"

# atext of RFC 5322 section 3.2.3, as used by Dot-string in RFC 5321 section 4.1.2.
_ATEXT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~")
_LET_DIG = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_DOMAIN_CHARS = _LET_DIG | frozenset("-.")


#: Unicode general categories no address may hold (see the module notes; RFC 8264 sections 9.11-9.14).
_DISALLOWED_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"})
#: Default_Ignorable_Code_Point (Unicode DerivedCoreProperties.txt) outside the categories above, and old
#: Hangul jamo (RFC 8264 section 9.9: Hangul_Syllable_Type L, V, T): inclusive ranges.
_DISALLOWED_RANGES = (
    (0x034F, 0x034F),  # combining grapheme joiner
    (0x115F, 0x1160),  # Hangul fillers (inside the jamo below too)
    (0x1100, 0x11FF),  # Hangul jamo
    (0x17B4, 0x17B5),  # Khmer inherent vowels
    (0x180B, 0x180F),  # Mongolian free variation selectors
    (0x3164, 0x3164),  # Hangul filler
    (0xA960, 0xA97F),  # Hangul jamo extended-A
    (0xD7B0, 0xD7FF),  # Hangul jamo extended-B
    (0xFE00, 0xFE0F),  # variation selectors
    (0xFFA0, 0xFFA0),  # halfwidth Hangul filler
    (0xE0100, 0xE01EF),  # variation selectors supplement
)


def disallowed_character(text: str) -> str | None:
    """The first character of `text` that no address may hold (see the module notes), or None."""
    if text.isascii() and text.isprintable():
        return None
    for ch in text:
        if " " <= ch <= "~":
            continue
        category = unicodedata.category(ch)
        if category in _DISALLOWED_CATEGORIES or category == "Zs":
            return ch
        code = ord(ch)
        if any(low <= code <= high for low, high in _DISALLOWED_RANGES):
            return ch
    return None


class AddressSyntaxError(ValueError):
    """The path does not follow RFC 5321 section 4.1.2, or exceeds a size limit of section 4.5.3.1.

    `too_long` tells the two apart; the message is short, ASCII and safe to put in a reply.
    """

    def __init__(self, message: str, *, too_long: bool = False) -> None:
        super().__init__(message)
        self.too_long = too_long


def parse_reverse_path(text: str) -> tuple[str, int]:
    """Parse `Reverse-path` at the start of `text`: "<>" or a Path (RFC 5321 section 4.1.2).

    Returns the mailbox ("" for the null reverse path) and the index just after the closing ">".
    """
    if text.startswith("<>"):
        return "", 2
    return _PathParser(text, postmaster_alone=False).parse()


def parse_forward_path(text: str) -> tuple[str, int]:
    """Parse `Forward-path` at the start of `text`, including "<Postmaster>" without a domain.

    Returns the mailbox and the index just after the closing ">".
    """
    return _PathParser(text, postmaster_alone=True).parse()


def _is_atext(ch: str) -> bool:
    # RFC 6531 section 3.3: atext =/ UTF8-non-ascii
    return ch in _ATEXT or ord(ch) > 0x7F


def _is_qtext(ch: str) -> bool:
    # qtextSMTP = %d32-33 / %d35-91 / %d93-126 (RFC 5321 section 4.1.2), =/ UTF8-non-ascii (RFC 6531)
    o = ord(ch)
    return o in (32, 33) or 35 <= o <= 91 or 93 <= o <= 126 or o > 0x7F


def _is_domain_char(ch: str) -> bool:
    return ch in _DOMAIN_CHARS or ord(ch) > 0x7F


_HELO_LABEL_CHARS = _LET_DIG | frozenset("-_")


def trace_helo(name: str) -> str | None:
    """`name` (a HELO/EHLO argument) as it may stand in a Received header's From-domain, or None.

    RFC 5321 4.4: `From-domain = "FROM" FWS Extended-Domain`, where Extended-Domain is a Domain or an
    address-literal. The argument is taken as given at HELO time (checking it is policy, 4.1.1.1), so only a
    syntactically valid one may be copied into the header: anything else could forge trace information
    (`EHLO x) by evil.example (...); date`). Underscores are tolerated in labels (Windows host names)."""
    if name.startswith("["):
        if not name.endswith("]"):
            return None
        inner = name[1:-1]
        try:
            if inner[:5].lower() == "ipv6:":
                ipaddress.IPv6Address(inner[5:])
            else:
                ipaddress.IPv4Address(inner)
        except ValueError:
            return None
        return name
    domain = name[:-1] if name.endswith(".") else name
    if not domain or len(domain) > 253:
        return None
    for label in domain.split("."):
        if not label or len(label) > 63 or not set(label) <= _HELO_LABEL_CHARS:
            return None
        if label[0] == "-" or label[-1] == "-":
            return None
    return name


class _PathParser:
    """Recursive-descent parser over one path; `pos` moves forward only."""

    def __init__(self, text: str, *, postmaster_alone: bool) -> None:
        self.text = text
        self.pos = 0
        self.postmaster_alone = postmaster_alone

    def parse(self) -> tuple[str, int]:
        self._expect("<", "address must be enclosed in <>")
        if self._peek() == "@":
            self._source_route()
        local = self._local_part()
        if self._peek() == ">" and self.postmaster_alone and local.lower() == "postmaster":
            self.pos += 1
            return "postmaster", self.pos
        self._expect("@", "missing @domain")
        if self._peek() == "[":
            domain = self._address_literal()
        else:
            domain = self._domain()
        self._expect(">", "missing > after address")
        if len(local.encode("utf-8")) > MAX_LOCAL_PART_OCTETS:
            raise AddressSyntaxError("local part longer than 64 octets", too_long=True)
        mailbox = f"{local}@{domain}"  # _domain() enforced the domain limit; a literal is far shorter
        if len(mailbox.encode("utf-8")) + 2 > MAX_PATH_OCTETS:
            raise AddressSyntaxError("path longer than 256 octets", too_long=True)
        return mailbox, self.pos

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _expect(self, ch: str, message: str) -> None:
        if self._peek() != ch:
            raise AddressSyntaxError(message)
        self.pos += 1

    def _source_route(self) -> None:
        # A-d-l = At-domain *( "," At-domain ) ":" ; At-domain = "@" Domain. Parsed, then ignored
        # (RFC 5321 section 4.1.1.3, appendix C).
        while True:
            self._expect("@", "bad source route")
            self._domain()
            if self._peek() == ",":
                self.pos += 1
                continue
            self._expect(":", "bad source route")
            return

    def _local_part(self) -> str:
        start = self.pos
        if self._peek() == '"':
            self.pos += 1
            while True:
                ch = self._peek()
                if ch == "":
                    raise AddressSyntaxError("unterminated quoted local part")
                if ch == '"':
                    self.pos += 1
                    return self.text[start : self.pos]
                if ch == "\\":
                    # quoted-pairSMTP = %d92 %d32-126
                    nxt = self.text[self.pos + 1 : self.pos + 2]
                    if not nxt or not 32 <= ord(nxt) <= 126:
                        raise AddressSyntaxError("bad quoted pair in local part")
                    self.pos += 2
                    continue
                if not _is_qtext(ch):
                    raise AddressSyntaxError("invalid character in quoted local part")
                self.pos += 1
        seen_atext = False
        while True:
            ch = self._peek()
            if ch and _is_atext(ch):
                seen_atext = True
            elif ch != ".":
                break
            self.pos += 1
        if not seen_atext:
            raise AddressSyntaxError("empty or invalid local part")
        return self.text[start : self.pos]

    def _domain(self) -> str:
        # Domain = sub-domain *("." sub-domain); sub-domain = Let-dig [Ldh-str] (RFC 5321 section 4.1.2),
        # sub-domain =/ U-label (RFC 6531 section 3.3; IDNA validity is not checked here).
        start = self.pos
        while (ch := self._peek()) and _is_domain_char(ch):
            self.pos += 1
        domain = self.text[start : self.pos]
        if not domain:
            raise AddressSyntaxError("missing domain")
        if len(domain.encode("utf-8")) > MAX_DOMAIN_OCTETS:
            raise AddressSyntaxError("domain longer than 255 octets", too_long=True)
        for label in domain.split("."):
            if not label or label.startswith("-") or label.endswith("-"):
                raise AddressSyntaxError("invalid domain")
        return domain

    def _address_literal(self) -> str:
        # address-literal = "[" ( IPv4-address-literal / IPv6-address-literal / General-address-literal ) "]"
        end = self.text.find("]", self.pos)
        if end < 0:
            raise AddressSyntaxError("unterminated address literal")
        literal = self.text[self.pos + 1 : end]
        if literal[:5].lower() == "ipv6:":
            value = literal[5:]
            try:
                ipaddress.IPv6Address(value)
            except ValueError:
                raise AddressSyntaxError("invalid IPv6 address literal") from None
            if "%" in value:  # zone identifiers are not part of the RFC 5321 syntax
                raise AddressSyntaxError("invalid IPv6 address literal")
        else:
            parts = literal.split(".")
            if len(parts) != 4 or not all(p.isascii() and p.isdigit() and len(p) <= 3 for p in parts):
                raise AddressSyntaxError("unsupported address literal")
            if not all(int(p) <= 255 for p in parts):
                raise AddressSyntaxError("invalid IPv4 address literal")
        self.pos = end + 1
        return self.text[self.pos - len(literal) - 2 : self.pos]
