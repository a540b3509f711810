"""Mail addresses in their one canonical form: the key under which accounts and aliases are stored,
recipients are resolved, logins are looked up and the login guard counts failures.

Every path that turns text into an address key goes through `normalize_address` (or `split_address`): the
store (`add_account`, `get_account`, aliases, `resolve_recipient`), the authenticator (the guard's key and
the account lookup are one string), SMTP recipients, and the CLI (`parse_address` and `parse_domain` validate
the canonical form). docs/decisions/0026-canonical-addresses.md gives the reasons.

Rules
- The address splits at its last "@" (RFC 5321 section 4.1.2: a quoted local part may contain "@", the
  domain cannot). Only U+0040 separates: the fullwidth "＠" (U+FF20) is an ordinary character of the local
  part, as in every SMTP implementation.
- Whitespace around the whole address is removed (`str.strip`: Unicode whitespace, e.g. U+3000).
- Domain: lowercased; the label separators U+3002, U+FF0E and U+FF61 become "." (RFC 3490 section 3.1,
  which IDNA applies anyway); whitespace around it and trailing dots are dropped ("example.test." names the
  same domain as "example.test"); non-ASCII labels are IDNA-encoded (Python's IDNA 2003 codec, whose
  nameprep also folds width and compatibility forms: "ｅｘａｍｐｌｅ" -> "example"). Trailing dots that
  nameprep itself produces (U+2024 ONE DOT LEADER is "." under NFKC), and whitespace uncovered where it
  removed a character, are dropped too. A domain the codec refuses (an empty label, a label over 63 octets),
  or that it would turn into one containing "@" (NFKC of U+FF20), stays as lowercased text: it names no
  domain we serve.
- Local part: lowercased, then Unicode NFC (RFC 6532 section 3.1 asks for NFC; lowercase first, because
  lowercasing can produce a sequence that NFC composes, e.g. "H" + U+0331 -> "ẖ"). `str.lower`, not
  `casefold`: "strauß" and "strauss" stay different names.

Invariant: `normalize_address(normalize_address(x)) == normalize_address(x)` for every string
(property-tested in tests/directory/test_address_fuzz.py). Without it, a name normalised once for one purpose
and again for another (the guard's key, then the store's lookup) is two different keys, and a lockout can be
walked around by spelling the name differently.
"""

from __future__ import annotations

import re
import unicodedata

#: Full stops that IDNA treats as label separators (RFC 3490 section 3.1).
IDNA_DOTS = "\u3002\uff0e\uff61"
_DOTS_TO_ASCII = str.maketrans(dict.fromkeys(IDNA_DOTS, "."))

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
# RFC 5322 atext, plus any non-ASCII character (RFC 6531 allows UTF-8 local parts).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]"
_DOT_ATOM = re.compile(rf"^{_ATEXT}+(\.{_ATEXT}+)*$")


class AddressError(ValueError):
    """Text that is not a plain address or domain name (for the CLI, which refuses it)."""


def _lower_nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text.lower())


def _trim(domain: str) -> str:
    """Drop surrounding whitespace and trailing dots, in any mix ("example.test. ." -> "example.test")."""
    while True:
        trimmed = domain.rstrip(".").strip()
        if trimmed == domain:
            return domain
        domain = trimmed


def normalize_domain(domain: str) -> str:
    """The canonical form of a domain name (never raises; see the module docstring)."""
    domain = _trim(_lower_nfc(domain).translate(_DOTS_TO_ASCII))
    if domain.isascii():
        return domain
    try:
        encoded = _trim(domain.encode("idna").decode("ascii"))
    except UnicodeError:
        return domain
    # nameprep's NFKC turns "＠" (U+FF20) into "@": such a domain would split differently next time.
    return domain if "@" in encoded else encoded


def normalize_local_part(local: str) -> str:
    return _lower_nfc(local)


def split_address(address: str) -> tuple[str, str]:
    """(local part, domain) in canonical form; the domain is "" when there is no "@"."""
    local, sep, domain = address.strip().rpartition("@")
    if not sep:
        return normalize_local_part(domain), ""
    return normalize_local_part(local), normalize_domain(domain)


def normalize_address(address: str) -> str:
    """The canonical form of an address, or of a bare name (no "@"), for lookups and as a key."""
    sep = "@" in address.strip()
    local_part, domain = split_address(address)
    # "name@" keeps its "@": without it a name that itself contains "@" would split differently next time.
    return f"{local_part}@{domain}" if sep else local_part


def parse_domain(text: str) -> str:
    """The canonical form of a domain name given by an administrator; AddressError when it is not one
    (letters, digits and hyphens in labels of 1-63 octets, 253 octets in all, after IDNA)."""
    name = normalize_domain(text)
    if not name or len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
        raise AddressError(f"not a valid domain name: {text!r}")
    return name


def parse_address(text: str) -> str:
    """The canonical form of `local@domain` given by an administrator; AddressError when the local part is not
    a dot-atom of at most 64 octets (RFC 5321 section 4.5.3.1.1) or the domain is not a domain name."""
    if "@" not in text:
        raise AddressError(f"not a full address (local@domain): {text!r}")
    local, domain = split_address(text)
    if (
        not local
        or len(local.encode("utf-8", "surrogatepass")) > 64
        or not _DOT_ATOM.match(local)
        or not local.isprintable()
    ):
        raise AddressError(f"not a valid address: {text!r}")
    try:
        domain = parse_domain(domain)
    except AddressError:
        raise AddressError(f"not a valid address: {text!r}") from None
    return f"{local}@{domain}"
