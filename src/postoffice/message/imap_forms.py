"""The IMAP forms of a parsed message: ENVELOPE and BODYSTRUCTURE (RFC 9051 7.5.2, RFC 3501 7.4.2), and the
string syntax they are written in (RFC 9051 4.3 and 9: quoted, literal, string, nstring, astring, number,
parenthesized lists).

They are deterministic functions of `ParsedMessage`, rendered once at delivery and kept by the store with the
content (`render_imap_forms`, docs/decisions/0016), so FETCH of many envelopes reads bytes instead of
rendering each parse again. They live here, not in `postoffice.imap`, so that the store depends on `message`
and not on a protocol (docs/decisions/0036); `postoffice.imap.wire` re-exports the string syntax and
`postoffice.imap.fetch` the renderers, so IMAP responses and the kept forms are encoded by the same code.

Implementation notes
- Every function returns bytes ready to be written to an IMAP connection.
- Quoted or literal (RFC 9051 4.3): a value goes out as a quoted string when the grammar allows it: no CR,
  LF or NUL (TEXT-CHAR excludes CR and LF, CHAR excludes NUL), `"` and `\\` escaped, and 8-bit bytes only
  when `utf8` is set and the bytes are valid UTF-8 (IMAP4rev2 / UTF8=ACCEPT, RFC 9051 4.3 and RFC 6855 3:
  QUOTED-CHAR includes UTF8-2/3/4). Otherwise, and for values longer than `MAX_QUOTED` bytes, it goes out as
  a synchronizing literal `{n}\\r\\n` + bytes, which may carry any octet but NUL (CHAR8).
- NUL never goes into a quoted string or a plain literal: `string` drops NUL characters from header-derived
  values (they cannot be represented and carry no meaning); `literal` replaces each NUL of section data by
  0x80, keeping the octet count (as Dovecot does), unless it is a literal8 (`binary=True`, RFC 3516 4.3).
- Case (docs/decisions/0012-imap-fetch.md): media type, subtype and disposition type are sent uppercase
  ("TEXT" "PLAIN", "ATTACHMENT"), as in the RFC examples; parameter names and values, the transfer encoding
  (the parser stores it uppercase), ids, descriptions, languages and locations are sent as stored.
- Strings: every value goes through `string` / `nstring` with the caller's `utf8` flag, so 8-bit header text
  (RFC 6532) is a quoted UTF-8 string for IMAP4rev2 / UTF8=ACCEPT clients and a literal otherwise. ENVELOPE
  strings are raw (encoded words not decoded) as RFC 3501 7.4.2 wants; the parser stores them so.
- Lists: `body-type-mpart = 1*body SP media-subtype` and `env-from = "(" 1*address ")"` have no separator
  between the bodies or addresses: `((...)(...) "MIXED")`. Empty parameter lists, dispositions, languages and
  address lists are NIL. One language tag or several are always sent as a list.
- Robustness: the renderers never raise for any `ParsedMessage` (also one read back from old JSON). A
  multipart without children (the parser never makes one) gets one empty text/plain child, because the
  grammar needs `1*body`; a message/rfc822 part without an embedded message is sent as
  APPLICATION/OCTET-STREAM, as the parser itself degrades such parts.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable
from typing import Any, NamedTuple

from postoffice.message.model import BodyPart, Params, ParsedMessage

#: The subtypes of message/* whose body is an embedded message (RFC 2046 5.2.1, RFC 6532 3.5).
MESSAGE_SUBTYPES = frozenset({"rfc822", "global"})


# -- strings (RFC 9051 4.3, 9) -------------------------------------------------------------------------------
#: The NIL atom.
NIL = b"NIL"
#: Values longer than this many bytes are sent as literals even when they could be quoted, so response
#: lines stay short for clients with line-length limits (RFC 9051 leaves the choice to the server).
MAX_QUOTED = 1024

# RFC 9051 9: atom-specials = "(" / ")" / "{" / SP / CTL / list-wildcards / quoted-specials / resp-specials.
_ATOM_SPECIALS = frozenset(b'(){ %*"\\]') | frozenset(range(0x20)) | {0x7F}
# ASTRING-CHAR = ATOM-CHAR / resp-specials: "]" is allowed in an astring's atom form.
_ASTRING_SPECIALS = _ATOM_SPECIALS - {ord("]")}


def _to_bytes(value: str | bytes) -> bytes:
    if isinstance(value, bytes):
        return value
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace")


def _quotable(data: bytes, utf8: bool) -> bool:
    if b"\r" in data or b"\n" in data or b"\x00" in data:
        return False
    if data.isascii():
        return True
    if not utf8:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _quote(data: bytes) -> bytes:
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def literal(data: bytes, *, binary: bool = False) -> bytes:
    """A synchronizing literal `{n}\\r\\n` + data, or a literal8 `~{n}\\r\\n` + data when `binary`.

    A plain literal cannot carry NUL (RFC 9051 4.3, CHAR8 is %x01-ff): each NUL becomes 0x80, same length."""
    if not binary and b"\x00" in data:
        data = data.replace(b"\x00", b"\x80")
    return b"%s{%d}\r\n%s" % (b"~" if binary else b"", len(data), data)


def quoted(value: str | bytes, *, utf8: bool = False) -> bytes:
    """`value` as a quoted string when the grammar allows (see the module notes), else as a literal."""
    data = _to_bytes(value)
    if _quotable(data, utf8):
        return _quote(data)
    return literal(data)


def string(value: str | bytes, *, utf8: bool) -> bytes:
    """An IMAP string for a header-derived value: quoted when possible and short, else a literal.

    NUL characters are dropped (they are representable neither quoted nor in a literal). `utf8`: the client
    accepts UTF-8 in quoted strings (IMAP4rev2 or UTF8=ACCEPT); without it 8-bit values go as literals."""
    data = _to_bytes(value)
    if b"\x00" in data:
        data = data.replace(b"\x00", b"")
    if len(data) <= MAX_QUOTED and _quotable(data, utf8):
        return _quote(data)
    return literal(data)


def nstring(value: str | bytes | None, *, utf8: bool = False) -> bytes:
    """NIL for None, else `string(value)`."""
    return NIL if value is None else string(value, utf8=utf8)


def astring(value: str | bytes, *, utf8: bool = False) -> bytes:
    """An atom when every byte is an ASTRING-CHAR (and the value is not empty), else `string(value)`."""
    data = _to_bytes(value)
    if data and data.isascii() and not any(b in _ASTRING_SPECIALS for b in data):
        return data
    return string(data, utf8=utf8)


def number(value: int) -> bytes:
    """An IMAP number (never negative: clamped to 0)."""
    return b"%d" % max(int(value), 0)


def fmt_list(items: Iterable[bytes], sep: bytes = b" ") -> bytes:
    """A parenthesized list of already encoded items: `(a b c)`; `sep=b""` gives `(ab)` (RFC 9051 `1*body`,
    `1*address`)."""
    return b"(" + sep.join(items) + b")"


# -- ENVELOPE ------------------------------------------------------------------------------------------------
def _env_string(value: Any, utf8: bool) -> bytes:
    return string(value, utf8=utf8) if isinstance(value, str) else NIL


def _address_list(value: Any, utf8: bool) -> bytes:
    if not isinstance(value, list):
        return NIL
    rendered = [
        fmt_list(_env_string(item, utf8) for item in address)
        for address in value
        if isinstance(address, list) and len(address) == 4
    ]
    return fmt_list(rendered, b"") if rendered else NIL


def envelope(env: list[Any] | None, *, utf8: bool) -> bytes:
    """The ENVELOPE (RFC 3501 7.4.2, RFC 9051 7.5.2) from `ParsedMessage.envelope` or `BodyPart.envelope`:
    (date subject from sender reply-to to cc bcc in-reply-to message-id).

    Addresses are (name adl mailbox host); group syntax comes as stored: a start marker (NIL NIL name NIL)
    and an end marker (NIL NIL NIL NIL). Missing or malformed entries are NIL."""
    fields = list(env) if isinstance(env, list) else []
    fields = (fields + [None] * 10)[:10]
    items = [_env_string(fields[0], utf8), _env_string(fields[1], utf8)]
    items += [_address_list(fields[i], utf8) for i in range(2, 8)]
    items += [_env_string(fields[8], utf8), _env_string(fields[9], utf8)]
    return fmt_list(items)


# -- BODY / BODYSTRUCTURE ------------------------------------------------------------------------------------
def _upper(value: str) -> str:
    return value.upper() if value.isascii() else value


#: RFC 2231 attribute-char besides letters and digits (no "*", "'", "%", space, CTLs or tspecials)
_ATTRIBUTE_CHARS = "!#$&+-.^_`|~"


def _params(params: Params, utf8: bool) -> bytes:
    if not params:
        return NIL
    items: list[bytes] = []
    for name, value in params:
        if name.endswith("*"):
            # RFC 9051 7.5.2: a charset-encoded parameter (RFC 2231) goes out as "name*", converted to
            # UTF-8 and joined: an extended value (RFC 2231 section 4), so it stays ASCII for every client
            value = "utf-8''" + urllib.parse.quote(value.encode("utf-8", "replace"), safe=_ATTRIBUTE_CHARS)
        items.append(string(name, utf8=utf8))
        items.append(string(value, utf8=utf8))
    return fmt_list(items)


def _extension(part: BodyPart, utf8: bool) -> list[bytes]:
    """body-fld-dsp SP body-fld-lang SP body-fld-loc (shared by single-part and multipart extension data)."""
    if part.disposition is None:
        disposition = NIL
    else:
        kind, params = part.disposition
        disposition = fmt_list([string(_upper(kind), utf8=utf8), _params(params, utf8)])
    language = fmt_list(string(tag, utf8=utf8) for tag in part.language) if part.language else NIL
    return [disposition, language, nstring(part.location, utf8=utf8)]


def _empty_text() -> BodyPart:
    return BodyPart(params=[("charset", "us-ascii")])


def _body(part: BodyPart, extended: bool, utf8: bool) -> bytes:
    if part.type == "multipart":
        children = part.parts or [_empty_text()]
        out = b"(" + b"".join(_body(child, extended, utf8) for child in children)
        out += b" " + string(_upper(part.subtype), utf8=utf8)
        if extended:
            out += b" " + b" ".join([_params(part.params, utf8), *_extension(part, utf8)])
        return out + b")"
    is_message = part.type == "message" and part.subtype in MESSAGE_SUBTYPES
    embedded = part.embedded if is_message else None
    if is_message and embedded is None:
        media, subtype, params = "APPLICATION", "OCTET-STREAM", []
    else:
        media, subtype, params = _upper(part.type), _upper(part.subtype), part.params
    items = [
        string(media, utf8=utf8),
        string(subtype, utf8=utf8),
        _params(params, utf8),
        nstring(part.id, utf8=utf8),
        nstring(part.description, utf8=utf8),
        string(part.encoding, utf8=utf8),
        number(part.size),
    ]
    if embedded is not None:
        # RFC 9051 7.5.2: message/rfc822 and message/global add envelope, body structure and lines.
        items += [envelope(part.envelope, utf8=utf8), _body(embedded, extended, utf8), number(part.lines)]
    elif part.type == "text":
        items.append(number(part.lines))
    if extended:
        items += [nstring(part.md5, utf8=utf8), *_extension(part, utf8)]
    return fmt_list(items)


def bodystructure(part: BodyPart, *, extended: bool, utf8: bool) -> bytes:
    """BODY (`extended=False`, no extension data) or BODYSTRUCTURE (`extended=True`) of `part`, usually
    `ParsedMessage.body` (RFC 9051 7.5.2, RFC 3501 7.4.2)."""
    return _body(part, extended, utf8)


# -- the forms kept with a stored message (MailStore.imap_renderings) ----------------------------------------
class ImapRendering(NamedTuple):
    """ENVELOPE and BODYSTRUCTURE of a stored message as IMAP sends them (RFC 9051 section 7.5.2), rendered
    once at delivery; the `_utf8` forms are for UTF8=ACCEPT / IMAP4rev2 sessions, None when the same. (A
    NamedTuple: FETCH reads thousands at a time.)"""

    envelope: bytes
    bodystructure: bytes
    envelope_utf8: bytes | None = None
    bodystructure_utf8: bytes | None = None


def render_imap_forms(parsed: ParsedMessage) -> ImapRendering:
    """ENVELOPE and BODYSTRUCTURE of a message, rendered once at delivery so that FETCH of many envelopes
    reads bytes instead of decoding and rendering each stored parse (docs/decisions/0016)."""
    env = envelope(parsed.envelope, utf8=False)
    body = bodystructure(parsed.body, extended=True, utf8=False)
    env8 = envelope(parsed.envelope, utf8=True) if _has_literal(env) else env
    body8 = bodystructure(parsed.body, extended=True, utf8=True) if _has_literal(body) else body
    return ImapRendering(env, body, None if env8 == env else env8, None if body8 == body else body8)


def _has_literal(rendered: bytes) -> bool:
    """Only a string sent as a literal can differ in the UTF8=ACCEPT form (every quoted string is ASCII,
    the same in both), and only a literal holds CRLF: without one the second rendering is skipped (most
    messages, so a delivery renders each item once)."""
    return b"\r\n" in rendered
