"""xtext (RFC 3461 section 4), the encoding of the ENVID and ORCPT parameters of DSN and of the AUTH
parameter of MAIL (RFC 4954 section 5).

    xtext   = *( xchar / hexchar )
    xchar   = any ASCII character in 33..126 except "+" and "="
    hexchar = "+" 2(%x30-39 / %x41-46)      ; "+" and two upper-case hex digits: one octet

Implementation notes
- Decoding is strict: a lower-case hex digit, a "+" without two hex digits, "=", a space, a control character
  or a non-ASCII character is an error (ValueError), so that a value that passed the SMTP core is exactly the
  xtext the client sent and can be re-emitted unchanged on the way out.
- The decoded octets are returned as text decoded from UTF-8 (plain ASCII in practice: RFC 3461 limits ENVID
  and ORCPT to US-ASCII; the callers check that). Octets that are not UTF-8 are an error.
- Encoding is the inverse: every character outside 33..126, and "+" and "=", becomes "+HH" for each octet
  of its UTF-8 form, so `decode_xtext(encode_xtext(s)) == s` for every string without lone surrogates.
"""

from __future__ import annotations

__all__ = ["decode_xtext", "encode_xtext", "is_xchar"]

_HEX_DIGITS = "0123456789ABCDEF"


def is_xchar(ch: str) -> bool:
    """True for a character that xtext carries as itself (RFC 3461 section 4)."""
    return "!" <= ch <= "~" and ch not in "+="


def decode_xtext(text: str) -> str:
    """The value encoded by `text`; ValueError when `text` is not xtext (see the module notes)."""
    if "+" not in text:
        if not all(is_xchar(ch) for ch in text):
            raise ValueError("invalid character in xtext")
        return text
    octets = bytearray()
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "+":
            pair = text[i + 1 : i + 3]
            if len(pair) != 2 or pair[0] not in _HEX_DIGITS or pair[1] not in _HEX_DIGITS:
                raise ValueError('"+" in xtext must be followed by two upper-case hex digits')
            octets.append(int(pair, 16))
            i += 3
            continue
        if not is_xchar(ch):
            raise ValueError("invalid character in xtext")
        octets.append(ord(ch))
        i += 1
    try:
        return octets.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("xtext does not encode UTF-8") from None


def encode_xtext(value: str) -> str:
    """`value` as xtext: "+HH" for each octet of the characters that xtext cannot carry as themselves."""
    parts: list[str] = []
    for ch in value:
        if is_xchar(ch):
            parts.append(ch)
        else:
            parts.extend(f"+{octet:02X}" for octet in ch.encode("utf-8"))
    return "".join(parts)
