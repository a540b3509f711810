"""Header fields of one MIME entity: splitting, unfolding, encoded words, parameters, dates.

Implements (header semantics, with the stdlib `email` package wherever it has the rule):
- RFC 5322 2.2 / 2.2.3: a field is `name ":" value`; a line starting with WSP continues the previous field;
  unfolding removes each CRLF that is followed by WSP. Field names compare case-insensitively and the first
  occurrence of a single-valued field wins. Lines in the header block that are neither fields nor
  continuations are skipped (as is a continuation with no field before it, e.g. after a skipped line).
- RFC 2047 encoded words, decoded for display and search with `email.header.decode_header` applied to one
  encoded word at a time (adjacent words of one charset are joined as bytes before charset decoding, so a
  character split across two words survives; whitespace between adjacent encoded words is dropped, RFC 2047
  6.2). Unknown charsets and undecodable bytes never raise: see `decode_charset`.
- RFC 2045 5.1 / RFC 2183 parameters, with RFC 2231 continuations, charsets and languages joined by
  `email.utils.decode_params` / `email.utils.decode_rfc2231`. The splitting into `name=value` pairs is done
  here in one linear pass (the stdlib splitter rescans the value for every `;`, which is quadratic).
- RFC 5322 3.3 dates via `email.utils.parsedate_to_datetime`, guarded.

Invariants: nothing in this module raises for any input string; every returned string is valid Unicode
without surrogates (so it can always be encoded as UTF-8); header bytes are decoded as UTF-8 (RFC 6532) when
valid and as Latin-1 otherwise, per field.
"""

from __future__ import annotations

import binascii
import codecs
import datetime
import email.charset
import email.header
import email.utils
import functools
import re
from collections.abc import Iterator

#: Field values longer than this are cut before parameter parsing (RFC 2045 5.1 / RFC 2231).
MAX_PARAM_VALUE = 16 * 1024
#: Parameters beyond this many per field are ignored.
MAX_PARAMS = 64

# RFC 5322 3.6.8 field name (printable US-ASCII except ":"); obsolete WSP before the colon (RFC 5322 4.5).
_FIELD = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]*:")
# A field at a line start (after CR or LF, or at the start; between the CR and LF of a CRLF comes LF, which
# no name starts with), its value (group 2) running over the continuation lines. Every repetition starts at
# a line end followed by WSP, so nothing backtracks over more than one line end.
_FIELD_WITH_CONTINUATIONS = re.compile(
    rb"(?<![^\r\n])([\x21-\x39\x3b-\x7e]+)[ \t]*:([^\r\n]*(?:(?:\r\n|\r|\n)[ \t][^\r\n]*)*)"
)
_LINE_END = re.compile(rb"\r\n|\r|\n")
_FOLD = re.compile(r"(?:\r\n|\r|\n)(?=[ \t])")
_SURROGATES = re.compile("[\ud800-\udfff]")
# RFC 2047 2: =?charset?encoding?encoded-text?=; lenient about the text, but never crossing a "?", so linear.
_ENCODED_WORD = re.compile(r"=\?([^?\s]*)\?([bBqQ])\?([^?]*)\?=")
_WSP_ONLY = re.compile(r"[ \t]*")
# As in email.quoprimime.header_decode.
_Q_ESCAPE = re.compile(r"=[a-fA-F0-9]{2}", re.ASCII)
# The line boundaries of str.splitlines, which email.header.decode_header splits its input at.
_SPLITLINES_AT = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
# One RFC 2045 5.1 parameter: name, then a quoted string (group 2) or a token (group 3), up to the next ";".
_PARAM = re.compile(r'([^=;]*)(?:=[ \t]*(?:"((?:[^"\\]|\\.)*)"?[^;]*|([^;]*)))?;?', re.S)
_QUOTED_PAIR = re.compile(r"\\(.)", re.S)


def is_field(line: bytes) -> bool:
    """Whether the line opens a header field: name ":" (RFC 5322 2.2, with the obsolete WSP before ":")."""
    return _FIELD.match(line) is not None


def starts_header(line: bytes) -> bool:
    """Whether the first line of an entity opens a header block: a field, a continuation, or an mbox
    "From " line (skipped). Anything else means the entity has no header and its body starts right there."""
    return _FIELD.match(line) is not None or line[:1] in (b" ", b"\t") or line.startswith(b"From ")


def unfold(value: str) -> str:
    """RFC 5322 2.2.3: remove every line terminator (CRLF, or a bare CR or LF) that is followed by WSP."""
    return _FOLD.sub("", value)


def clean_text(text: str) -> str:
    """Replace lone surrogates (from exotic codecs) so the text is encodable as UTF-8."""
    return _SURROGATES.sub("\ufffd", text) if _SURROGATES.search(text) else text


def decode_header_bytes(raw: bytes) -> tuple[str, str]:
    """Decode raw header bytes: UTF-8 if valid (RFC 6532), else Latin-1. Returns (text, codec)."""
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return raw.decode("latin-1"), "latin-1"


def header_block(message: bytes) -> bytes:
    """The header block of a message: up to and including the line end before its first empty line (CRLF, or
    a bare LF as in files written on Unix); the whole of it when it has no empty line."""
    ends = [at for at in (message.find(b"\r\n\r\n"), message.find(b"\n\n")) if at >= 0]
    if not ends:
        return message
    end = min(ends)
    return message[: end + (2 if message.startswith(b"\r\n", end) else 1)]


def iter_fields(block: bytes, *, only: frozenset[bytes] | None = None) -> Iterator[tuple[str, str, str]]:
    """Fields of a header block as (name, unfolded value, codec the value was decoded with); with `only`,
    the fields of those names (lowercase) only, the others not unfolded nor decoded.

    The value keeps its leading and trailing whitespace; see the module docstring for the rules. One match
    per field, in C: a field line and its continuation lines (lines that are neither, and continuation
    lines after them, are never matched)."""
    for m in _FIELD_WITH_CONTINUATIONS.finditer(block):
        if only is not None and m.group(1).lower() not in only:
            continue
        value = m.group(2)
        if b"\r" in value or b"\n" in value:
            value = _LINE_END.sub(b"", value)  # RFC 5322 2.2.3: each of them is followed by WSP
        text, codec = decode_header_bytes(value)
        yield m.group(1).decode("ascii"), text, codec


def split_fields(block: bytes) -> list[tuple[str | None, str, bytes]]:
    """A header block cut into its fields as `iter_fields` reads them, (name, unfolded value, octets with the
    line end that follows), and the octets between them that are no field (name None: a line that is neither
    field nor continuation, line ends); joined, the pieces are `block` octet for octet. For rewriting a header
    field by field (Sieve's editheader) without changing what is not edited."""
    pieces: list[tuple[str | None, str, bytes]] = []
    at = 0
    for m in _FIELD_WITH_CONTINUATIONS.finditer(block):
        if m.start() > at:
            pieces.append((None, "", block[at : m.start()]))
        end = m.end()
        end += 2 if block.startswith(b"\r\n", end) else 1 if block[end : end + 1] in (b"\r", b"\n") else 0
        value = m.group(2)
        if b"\r" in value or b"\n" in value:
            value = _LINE_END.sub(b"", value)
        text, _codec = decode_header_bytes(value)
        pieces.append((m.group(1).decode("ascii"), text, block[m.start() : end]))
        at = end
    if at < len(block):
        pieces.append((None, "", block[at:]))
    return pieces


# -- charsets ------------------------------------------------------------------------------------------------
_FALLBACK_CHARSETS = {
    "",
    "us-ascii",
    "ascii",
    "us_ascii",
    "646",
    "ansi_x3.4-1968",
    "unknown-8bit",
    "x-unknown",
}
# Text codecs that are not character sets of mail; treating them as such only produces garbage or errors.
_REFUSED_CODECS = {"idna", "punycode", "unicode_escape", "raw_unicode_escape", "undefined"}


@functools.lru_cache(maxsize=256)
def lookup_charset(charset: str | None) -> str | None:
    """The Python codec name for a MIME charset, or None for US-ASCII, unknown, or non-text codecs.

    None means "decode as UTF-8 if valid, else Latin-1" (see `decode_charset`)."""
    if not charset:
        return None
    name = charset.strip().strip('"').lower()
    name = name.split("*", 1)[0]  # RFC 2231 5: charset*language
    if name in _FALLBACK_CHARSETS or len(name) > 64:
        return None
    name = email.charset.ALIASES.get(name, name)
    try:
        info = codecs.lookup(name)
    except Exception:
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _REFUSED_CODECS:
        return None
    return info.name


def decode_charset(data: bytes, charset: str | None) -> str:
    """Decode bytes in a MIME charset with errors replaced; unknown charsets as UTF-8, else Latin-1."""
    codec = lookup_charset(charset)
    if codec is None:
        return _utf8_else_latin1(data)
    try:
        return clean_text(data.decode(codec, "replace"))
    except Exception:  # a codec that refuses "replace" or fails on odd input: decoded as if unknown
        return _utf8_else_latin1(data)


def _utf8_else_latin1(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


# -- encoded words -------------------------------------------------------------------------------------------
def _decode_word_stdlib(charset: str, encoding: str, text: str) -> bytes | None:
    word = f"=?{charset}?{encoding}?{text}?="
    try:
        decoded = email.header.decode_header(word)
    except Exception:
        return None
    if len(decoded) != 1 or not isinstance(decoded[0][0], bytes):
        return None
    return decoded[0][0]


def _decode_word(charset: str, encoding: str, text: str) -> bytes | None:
    """The bytes of one encoded word as `email.header.decode_header` gives them (RFC 2047 4.1 B: base64 with
    missing padding added; 4.2 Q: "_" is a space, "=XX" an octet), None when it cannot decode it. The same
    steps without its per-call overhead (a subject of 18,000 words took 75 ms); a text with a character at
    which `str.splitlines` splits (the stdlib cuts the word there) goes to the stdlib itself."""
    if _SPLITLINES_AT.search(text):
        return _decode_word_stdlib(charset, encoding, text)
    if encoding in "qQ":
        word = text.replace("_", " ")
        if "=" in word:
            word = _Q_ESCAPE.sub(_q_octet, word)
        return word.encode("raw-unicode-escape")
    rest = len(text) % 4
    if rest:
        text += "==="[: 4 - rest]
    if not text:
        return b""
    try:
        return binascii.a2b_base64(text.encode("raw-unicode-escape"))
    except binascii.Error:
        return None


def _q_octet(m: re.Match[str]) -> str:
    return chr(int(m.group()[1:], 16))


def decode_words(value: str) -> str:
    """Unfold and decode RFC 2047 encoded words for display and search; never raises."""
    value = unfold(value)
    if "=?" not in value:
        return clean_text(value)
    out: list[str] = []
    pending: list[bytes] = []
    pending_charset = ""
    pos = 0
    after_word = False
    for m in _ENCODED_WORD.finditer(value):
        data = _decode_word(m.group(1), m.group(2), m.group(3))
        if data is None:
            continue  # kept as it is, in the text before the next decoded word
        between = value[pos : m.start()]
        charset = m.group(1).lower()
        adjacent = after_word and _WSP_ONLY.fullmatch(between) is not None
        if not (adjacent and charset == pending_charset):
            if pending:
                out.append(decode_charset(b"".join(pending), pending_charset))
                pending.clear()
            if not adjacent:
                out.append(between)
        pending.append(data)
        pending_charset = charset
        pos = m.end()
        after_word = True
    if pending:
        out.append(decode_charset(b"".join(pending), pending_charset))
    out.append(value[pos:])
    return clean_text("".join(out))


# -- parameters ----------------------------------------------------------------------------------------------
def _split_params(text: str) -> list[tuple[str, str]]:
    """Split `;`-separated `name=value` pairs in one linear pass.

    Values come back unquoted; an unterminated quoted string runs to the end; text after a closing quote up
    to the next `;` is dropped."""
    params: list[tuple[str, str]] = []
    pos, n = 0, len(text)
    while pos < n and len(params) < MAX_PARAMS:
        m = _PARAM.match(text, pos)
        if m is None or m.end() == pos:
            break
        pos = m.end()
        name = m.group(1).strip(" \t").lower()
        if m.group(2) is not None:
            value = unquote_pairs(m.group(2))
        else:
            value = (m.group(3) or "").strip(" \t")
        if name:
            params.append((name, value))
    return params


def unquote_pairs(text: str) -> str:
    """RFC 5322 3.2.1 quoted-pairs resolved: a backslash and the character after it become that character;
    a backslash at the very end stays. Three `str.replace` calls instead of a substitution per pair (`re.sub`
    with a template expands it in Python for every match: a field of 128,000 pairs took 70 ms)."""
    if "\\" not in text:
        return text
    tail = ""
    if (len(text) - len(text.rstrip("\\"))) % 2:
        text, tail = text[:-1], "\\"
    for placeholder in ("\uffff", "\ufffe", "\U0010ffff"):
        if placeholder not in text:
            return text.replace("\\\\", placeholder).replace("\\", "").replace(placeholder, "\\") + tail
    return _QUOTED_PAIR.sub(lambda m: m.group(1), text) + tail


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return unquote_pairs(value[1:-1])
    return value


def _base_name(name: str) -> str:
    return name.split("*", 1)[0]


#: Parameters the MIME parser reads by name: never marked with "*" (see parse_params).
_PLAIN_NAMES = frozenset({"charset", "boundary"})


def parse_params(text: str) -> tuple[str, list[tuple[str, str]]]:
    """Split a Content-Type / Content-Disposition value into (main value, parameters).

    Names are lowercased; values are unquoted, RFC 2231 continuations joined and charset-decoded. A value that
    was charset-encoded (`name*=utf-8''...`, `name*0*=...`) keeps a "*" after its name ("name*") and is
    decoded to text: IMAP renders it back as a UTF-8 extended value (RFC 9051 7.5.2). The order is that of
    each parameter's first appearance."""
    text = unfold(text)[:MAX_PARAM_VALUE]
    main, _, rest = text.partition(";")
    raw = _split_params(rest)
    if not raw:
        return main, []
    if not any("*" in name or "\\" in value or '"' in value for name, value in raw):
        # No RFC 2231 name and nothing to escape: what `decode_params` would give, without its cost (a
        # message may have thousands of parts, each with its Content-Type).
        params = [(name, clean_text(value)) for name, value in raw]
        if len(params) > 1:
            first: dict[str, int] = {}
            for index, (name, _value) in enumerate(params):
                first.setdefault(name, index)
            params.sort(key=lambda p: first[p[0]])
        return main, params
    quoted = [(name, '"' + email.utils.quote(value) + '"') for name, value in raw]
    try:
        decoded = email.utils.decode_params([(main, ""), *quoted])[1:]
    except Exception:
        decoded = [(name, value) for name, value in quoted if "*" not in name]
    params = []
    for name, value in decoded:
        if isinstance(value, tuple):
            charset, _language, text_value = value
            text_value = _unquote(text_value)
            # RFC 9051 7.5.2: a charset-encoded value is returned, decoded to UTF-8 and joined, as "name*";
            # the name keeps the "*" (charset and boundary excepted: the parser reads them by name)
            marked = name if name in _PLAIN_NAMES else name + "*"
            try:
                data = text_value.encode("latin-1")
            except UnicodeEncodeError:
                params.append((marked, clean_text(text_value)))
                continue
            params.append((marked, decode_charset(data, charset)))
        else:
            params.append((name, clean_text(_unquote(value))))
    order: dict[str, int] = {}
    for index, (name, _value) in enumerate(quoted):
        order.setdefault(_base_name(name), index)
    params.sort(key=lambda p: order.get(p[0].removesuffix("*"), len(order)))
    return main, params


# -- dates ---------------------------------------------------------------------------------------------------
def parse_date(value: str) -> tuple[float | None, str | None]:
    """RFC 5322 3.3 date -> (POSIX timestamp, "YYYY-MM-DD" in the field's own zone); (None, None) if invalid.

    A date without zone (or with -0000, RFC 5322 3.3) is taken as UTC for the timestamp."""
    try:
        dt = email.utils.parsedate_to_datetime(unfold(value))
    except Exception:
        return None, None
    if dt is None:
        return None, None
    sent = dt.date().isoformat()
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.UTC)
    try:
        return dt.timestamp(), sent
    except (OverflowError, ValueError, OSError):
        return None, sent
