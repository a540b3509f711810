"""Modified UTF-7 for IMAP mailbox names (RFC 3501 section 5.1.3, RFC 9051 section 5.1 and appendix A).

IMAP4rev1 clients (and IMAP4rev2 servers talking to them) send mailbox names in modified UTF-7:
- printable US-ASCII (0x20-0x7E) except "&" represents itself;
- "&" is sent as "&-";
- every run of other characters is sent as "&" + modified BASE64 of its UTF-16BE form + "-", where modified
  BASE64 is RFC 2045 base64 with "," instead of "/" and without "=" padding.

Implementation notes
- Strict decoding (the default) accepts only the canonical encoding, the one `encode_mutf7` produces. That is
  how RFC 3501 5.1.3 is enforced without a list of special cases: "modified BASE64 MUST NOT be used to
  represent any printing US-ASCII character which can represent itself" ("&AGE-" for "a"), a bare "&" with no
  "-", raw 8-bit or control characters, non-zero padding bits, an odd number of UTF-16 octets, unpaired
  surrogates and two adjacent encoded runs ("&AOk-&AOk-" instead of "&AOkA6Q-") are all errors (`MUtf7Error`).
  Canonical names matter because a name is compared as a string: two spellings of one name must not make two
  mailboxes.
- Lenient decoding (`strict=False`) never raises: an encoded run that does not decode is kept verbatim, and
  raw non-ASCII is passed through. Use it only to display names that came from elsewhere (e.g. an import).
- Encoding never fails: every Python string without lone surrogates has exactly one encoding. Lone surrogates
  (which UTF-16 cannot carry) raise `MUtf7Error`.
"""

from __future__ import annotations

import base64
import binascii
import re

__all__ = ["MUtf7Error", "decode_mutf7", "encode_mutf7"]


class MUtf7Error(ValueError):
    """The text is not (canonical) modified UTF-7, or cannot be encoded as such."""


_DIRECT = re.compile(r"[\x20-\x25\x27-\x7e]+")  # printable ASCII except "&"
_SHIFTED = re.compile(r"&([A-Za-z0-9+,]*)-")


def encode_mutf7(name: str) -> str:
    """Encode `name` in modified UTF-7 (RFC 3501 section 5.1.3)."""
    out: list[str] = []
    pos = 0
    while pos < len(name):
        m = _DIRECT.match(name, pos)
        if m:
            out.append(m.group())
            pos = m.end()
            continue
        if name[pos] == "&":
            out.append("&-")
            pos += 1
            continue
        end = pos
        while end < len(name) and not ("\x20" <= name[end] <= "\x7e"):
            end += 1
        try:
            raw = name[pos:end].encode("utf-16-be")
        except UnicodeEncodeError as exc:
            raise MUtf7Error(f"cannot encode lone surrogate at position {exc.start + pos}") from None
        out.append("&" + base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",") + "-")
        pos = end
    return "".join(out)


def _decode_run(b64: str) -> str:
    """Decode the modified BASE64 between "&" and "-" (non-empty)."""
    padded = b64.replace(",", "/") + "=" * (-len(b64) % 4)
    try:
        raw = base64.b64decode(padded, validate=True)
        if len(raw) % 2:
            raise MUtf7Error("odd number of UTF-16 octets")
        return raw.decode("utf-16-be")  # strict: unpaired surrogates raise
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise MUtf7Error(f"invalid modified BASE64 run &{b64}-") from exc


def decode_mutf7(text: str | bytes, *, strict: bool = True) -> str:
    """Decode a modified UTF-7 mailbox name.

    `strict=True` raises `MUtf7Error` unless `text` is the canonical encoding of the result; `strict=False`
    never raises (see the module docstring).
    """
    if isinstance(text, bytes):
        if strict:
            try:
                text = text.decode("ascii")
            except UnicodeDecodeError:
                raise MUtf7Error("8-bit octet in a modified UTF-7 name") from None
        else:
            text = text.decode("utf-8", "replace")
    out: list[str] = []
    pos = 0
    while pos < len(text):
        amp = text.find("&", pos)
        if amp < 0:
            out.append(text[pos:])
            break
        out.append(text[pos:amp])
        m = _SHIFTED.match(text, amp)
        if m is None:
            if strict:
                raise MUtf7Error(f"'&' at position {amp} does not start a valid '&...-' sequence")
            out.append("&")
            pos = amp + 1
            continue
        if m.group(1) == "":
            out.append("&")
        else:
            try:
                out.append(_decode_run(m.group(1)))
            except MUtf7Error:
                if strict:
                    raise
                out.append(m.group())
        pos = m.end()
    result = "".join(out)
    if strict and encode_mutf7(result) != text:
        raise MUtf7Error(f"not the canonical modified UTF-7 encoding (that is {encode_mutf7(result)!r})")
    return result
