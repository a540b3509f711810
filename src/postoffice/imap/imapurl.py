"""IMAP URLs (RFC 5092) with URLAUTH (RFC 4467 section 3): parsed into `ImapUrl`, formatted back. Sans-IO and
pure: what a URL names is found by `postoffice.imap.urlauth`.

What it implements
- Absolute URLs `imap://[user[;AUTH=type]@]host[:port]/...` (RFC 5092 section 6, `imapurl`), network-path
  (`//host/...`), absolute-path (`/mailbox...`) and relative-path references (section 7.1 `imapurl-rel`:
  `mailbox[;UIDVALIDITY=n]/;UID=n...`, `;UID=n...`, `;SECTION=s...`, `;PARTIAL=p`).
- The path: a mailbox (`enc-mailbox`) with an optional `;UIDVALIDITY=`, then either a search (`?enc-search`,
  a message list) or `/;UID=` with optional `/;SECTION=` and `/;PARTIAL=origin[.length]`; after a message
  part, URLAUTH's `[;EXPIRE=date-time];URLAUTH=access[:mechanism:token]` (RFC 4467 section 3, RFC 5092
  `iurlauth`).
- `ImapUrl.rump` is the URL text up to and including the access identifier, exactly as written: what an
  authorization token is computed over (RFC 4467 section 2.4 and 6), so it is never re-encoded.

Implementation notes
- Keywords (`;UID=`, `;urlauth=`, the access identifiers) are matched in any case (RFC 5092 section 6 shows
  them in upper case, RFC 4467's examples in lower case). Percent-escapes are decoded strictly
  (`urllib.parse.unquote`, after the checks it does not make): `%` must be followed by two hex digits and the
  octets of a user name, mailbox, section, search or access user must be UTF-8; they are written with
  `urllib.parse.quote`. Mailbox names are UTF-8 (RFC 5092 section 3.2; not the modified UTF-7 of RFC 2192).
- Character sets are RFC 5092's: `achar` for user names and AUTH types, `bchar` for mailboxes, sections and
  searches; anything else (space, non-ASCII, `"`, `<`, ...) must be percent-encoded, or the URL is refused.
  Since `bchar` has "/" but not ";", the "/" before `;UID=`, `;SECTION=` and `;PARTIAL=` is the separator.
- Numbers are RFC 9051's: UIDVALIDITY and UID non-zero 32-bit; a partial's origin 32-bit, its length
  non-zero 32-bit. EXPIRE is an RFC 3339 date-time with a time zone.
- Invariants: `parse_url` raises only `UrlError` whatever the text (property-tested), and
  `parse_url(format_url(u)) == u` for every `ImapUrl` it can give (property-tested). Work is linear in the
  length of the text.
"""

from __future__ import annotations

import datetime
import re
import urllib.parse
from dataclasses import dataclass, field

MAX_NUMBER = 2**32 - 1

#: The access identifiers of RFC 4467 section 3 (a "submit" or "user" one has a user name after "+").
ACCESS_KINDS = ("anonymous", "authuser", "submit", "user")


class UrlError(ValueError):
    """Not an IMAP URL this module can read (the text says why)."""


@dataclass(frozen=True)
class ImapUrl:
    """An IMAP URL, decoded. `server` says whether it names a server (`imap://` or `//`); `absolute` whether
    its path starts at the server's root (a server or a leading "/"); otherwise it is relative to a base
    (RFC 5092 section 7.1). A relative URL may leave out the mailbox (`mailbox` None: the base's)."""

    server: bool = False
    user: str | None = None
    auth: str | None = None  # ";AUTH=" type, "*" for any
    host: str | None = None
    port: int | None = None
    absolute: bool = False
    mailbox: str | None = None
    uidvalidity: int | None = None
    search: str | None = None  # a message list's search program, decoded (never with a UID)
    uid: int | None = None
    section: str | None = None  # the section-spec, decoded (e.g. "1.2.HEADER")
    partial: tuple[int, int | None] | None = None  # (origin, length or None: to the end)
    expire: datetime.datetime | None = None  # aware
    access: str | None = None  # one of ACCESS_KINDS
    access_user: str | None = None  # the user of "submit+" / "user+"
    mechanism: str | None = None  # as written, e.g. "INTERNAL"
    token: str | None = None  # hex, as written
    #: The text up to and including the access identifier (URLAUTH only), as written.
    rump: str | None = field(default=None, compare=False)

    @property
    def urlauth(self) -> bool:
        """The URL carries ;URLAUTH= (a rump, or a full URLAUTH-authorized URL when `token` is set)."""
        return self.access is not None


# RFC 5092 section 6 / RFC 3986: unreserved, sub-delims-sh, then achar and bchar (what is not in them is
# percent-encoded); the sets beyond unreserved are `quote`'s `safe` characters
_UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
_SUB_DELIMS_SH = "!$'()*+,"
_ACHAR_SAFE = _SUB_DELIMS_SH + "&="
_BCHAR_SAFE = _ACHAR_SAFE + ":@/"
_HOST_SAFE = "!$&'()*+,;="  # reg-name (RFC 3986 3.2.2)
_SEARCH_SAFE = _BCHAR_SAFE + "?"
ACHAR = frozenset(_UNRESERVED + _ACHAR_SAFE)
BCHAR = frozenset(_UNRESERVED + _BCHAR_SAFE)
_HOST_CHARS = frozenset(_UNRESERVED + _HOST_SAFE)  # before decoding
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_NZ = re.compile(r"[1-9][0-9]*")
_DIGITS = re.compile(r"[0-9]+")
_MECHANISM = re.compile(r"[A-Za-z0-9.-]+")
_TOKEN = re.compile(r"[0-9A-Fa-f]{32,}")
_DATE_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
)
_SEARCH_CHARS = frozenset(_UNRESERVED + _SEARCH_SAFE)
_KEYWORD = re.compile(r";(UIDVALIDITY|UID|SECTION|PARTIAL|EXPIRE|URLAUTH)=", re.IGNORECASE)


def _decode(text: str, allowed: frozenset[str], what: str) -> str:
    """Percent-decode `text` whose other characters must be in `allowed`; the octets must be UTF-8. Strict
    where `unquote` is lenient: a "%" not followed by two hex digits is an error, not a literal "%"."""
    if not text:
        raise UrlError(f"empty {what}")
    stray = set(text).difference(allowed, "%")
    if stray:
        c = next(c for c in text if c in stray)
        raise UrlError(f"character {c!r} is not allowed in the {what} (percent-encode it)")
    if _BAD_ESCAPE.search(text):
        raise UrlError(f"invalid percent-escape in the {what}")
    try:
        return urllib.parse.unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise UrlError(f"the {what} is not UTF-8") from None


def _encode(text: str, allowed: str) -> str:
    """Percent-encode every octet of the UTF-8 of `text` that is not in `allowed` (`quote` keeps the
    unreserved characters of RFC 3986 too, which every set here has)."""
    return urllib.parse.quote(text, safe=allowed)


def _number(text: str, what: str, *, nonzero: bool = True) -> int:
    if not (_NZ if nonzero else _DIGITS).fullmatch(text) or len(text) > 10 or int(text) > MAX_NUMBER:
        raise UrlError(f"invalid {what} {text[:20]!r}")
    return int(text)


def _date_time(text: str) -> datetime.datetime:
    m = _DATE_TIME.fullmatch(text)
    if m is None:
        raise UrlError("EXPIRE is not an RFC 3339 date-time")
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    fraction = m.group(7)
    micro = int((fraction[1:] + "000000")[:6]) if fraction else 0
    if m.group(8):
        zone = datetime.UTC
    else:
        hours, minutes = int(m.group(10)), int(m.group(11))
        if hours > 23 or minutes > 59:
            raise UrlError("EXPIRE has an invalid time zone")
        offset = datetime.timedelta(hours=hours, minutes=minutes)
        zone = datetime.timezone(-offset if m.group(9) == "-" else offset)
    try:
        return datetime.datetime(year, month, day, hour, minute, second, micro, tzinfo=zone)
    except ValueError:
        raise UrlError("EXPIRE is not a valid date and time") from None


def format_date_time(when: datetime.datetime) -> str:
    """RFC 3339 date-time (for `;EXPIRE=`): UTC as "Z", fractions only when there are some."""
    offset = when.utcoffset() or datetime.timedelta(0)
    text = (
        f"{when.year:04d}-{when.month:02d}-{when.day:02d}T{when.hour:02d}:{when.minute:02d}:{when.second:02d}"
    )
    if when.microsecond:
        text += f".{when.microsecond:06d}".rstrip("0")
    if not offset:
        return text + "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return f"{text}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


class _Path:
    """The keyword-separated pieces of a path: `head` (a mailbox, or "" when the path starts with ";"), then
    (keyword, value) pairs; a "/" that ends a piece before ;UID=, ;SECTION= or ;PARTIAL= is the separator."""

    def __init__(self, text: str) -> None:
        self.text = text
        marks = list(_KEYWORD.finditer(text))
        self.head = text[: marks[0].start()] if marks else text
        self.pairs: list[tuple[str, str, int]] = []  # (KEYWORD, value, start of the ";")
        for i, m in enumerate(marks):
            end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
            self.pairs.append((m.group(1).upper(), text[m.end() : end], m.start()))


def parse_url(text: str) -> ImapUrl:
    """An IMAP URL or relative reference (RFC 5092 sections 6 and 7.1); UrlError when it is not one."""
    if not text:
        raise UrlError("empty URL")
    if not text.isascii() or any(ord(c) <= 0x20 or c == "\x7f" for c in text):
        raise UrlError("a URL has only printable ASCII characters (percent-encode the others)")
    values: dict[str, object] = {}
    if text[:7].lower() == "imap://":
        rest = _server(text[7:], values)
    elif text.startswith("//"):
        rest = _server(text[2:], values)
    elif text.startswith("/"):
        values["absolute"] = True
        rest = text[1:]
    else:
        rest = text
    if rest:
        _path(rest, text, values)
    return ImapUrl(**values)  # type: ignore[arg-type]


def _server(text: str, values: dict[str, object]) -> str | None:
    """`iserver` and what follows it: the path after the "/" (None when there is no path)."""
    values["server"] = True
    values["absolute"] = True
    slash = text.find("/")
    authority, rest = (text, None) if slash < 0 else (text[:slash], text[slash + 1 :])
    if "?" in authority or "#" in authority:
        raise UrlError("no query or fragment after the server")
    if "@" in authority:
        userinfo, _, hostport = authority.rpartition("@")
        if "@" in userinfo:
            raise UrlError("a user name's @ must be percent-encoded (%40)")
        user, auth = userinfo, None
        m = re.search(r";AUTH=", userinfo, re.IGNORECASE)
        if m is not None:
            user, auth = userinfo[: m.start()], userinfo[m.end() :]
            values["auth"] = "*" if auth == "*" else _decode(auth, ACHAR, "AUTH type")
        if user:
            values["user"] = _decode(user, ACHAR, "user name")
        elif auth is None:
            raise UrlError("empty user name")
    else:
        hostport = authority
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0:
            raise UrlError("unterminated IP literal")
        host, after = hostport[: close + 1], hostport[close + 1 :]
        if not re.fullmatch(r"\[[0-9A-Fa-f:.]+\]|\[[vV][0-9A-Fa-f]+\.[A-Za-z0-9._~!$&'()*+,;=:-]+\]", host):
            raise UrlError("invalid IP literal")
    else:
        host, colon, port = hostport.partition(":")
        after = colon + port
        if not host or any(c not in _HOST_CHARS and c != "%" for c in host):
            raise UrlError("invalid host name")
        host = _decode(host, _HOST_CHARS, "host name")
    if after:
        if not after.startswith(":") or not re.fullmatch(r"[0-9]{1,5}", after[1:]) or int(after[1:]) > 65535:
            raise UrlError("invalid port")
        values["port"] = int(after[1:])
    values["host"] = host.lower()
    return rest


def _path(rest: str, text: str, values: dict[str, object]) -> None:
    """`icommand` (or a relative `imsg-or-part`) into `values`."""
    path = _Path(rest)
    pairs = path.pairs
    head = path.head
    if not head:
        if values.get("absolute"):
            raise UrlError("a path must start with a mailbox name")
        if not pairs or pairs[0][0] not in ("UID", "SECTION", "PARTIAL"):
            raise UrlError("a relative URL starts with a mailbox, ;UID=, ;SECTION= or ;PARTIAL=")
        _message_part(pairs, text, len(text) - len(rest), values)
        return
    if pairs and pairs[0][0] == "UIDVALIDITY":
        value = pairs[0][1]
        pairs = pairs[1:]
        if pairs:
            if pairs[0][0] != "UID" or not value.endswith("/"):
                raise UrlError("expected /;UID= after the UIDVALIDITY")
            value = value[:-1]
        elif "?" in value:
            value, _, search = value.partition("?")
            values["search"] = _decode(search, _SEARCH_CHARS, "search")
        values["uidvalidity"] = _number(value, "UIDVALIDITY")
    elif pairs:
        if pairs[0][0] != "UID" or not head.endswith("/"):
            raise UrlError("expected /;UID= or ;UIDVALIDITY= after the mailbox")
        head = head[:-1]
    elif "?" in head:
        head, _, search = head.partition("?")
        values["search"] = _decode(search, _SEARCH_CHARS, "search")
    values["mailbox"] = _decode(head, BCHAR, "mailbox name")
    _message_part(pairs, text, len(text) - len(rest), values)


def _message_part(
    pairs: list[tuple[str, str, int]], text: str, offset: int, values: dict[str, object]
) -> None:
    """`;UID=n` `[/;SECTION=s]` `[/;PARTIAL=p]` `[;EXPIRE=t]` `[;URLAUTH=access[:mech:token]]`, each part
    optional for a relative URL that starts after the UID; `offset`: where `pairs` begin in `text`."""
    order = ("UID", "SECTION", "PARTIAL", "EXPIRE", "URLAUTH")
    last = -1
    for n, (keyword, value, start) in enumerate(pairs):
        rank = order.index(keyword) if keyword in order else -1
        if rank <= last:
            raise UrlError(f";{keyword}= is not allowed here")
        last = rank
        following = pairs[n + 1][0] if n + 1 < len(pairs) else None
        if following in ("SECTION", "PARTIAL"):  # "/" separates them from what comes before
            if not value.endswith("/"):
                raise UrlError(f"expected /;{following}=")
            value = value[:-1]
        if keyword == "UID":
            values["uid"] = _number(value, "UID")
        elif keyword == "SECTION":
            values["section"] = _decode(value, BCHAR, "section")
        elif keyword == "PARTIAL":
            origin, dot, length = value.partition(".")
            values["partial"] = (
                _number(origin, "partial origin", nonzero=False),
                _number(length, "partial length") if dot else None,
            )
        elif keyword == "EXPIRE":
            values["expire"] = _date_time(value)
        else:  # URLAUTH
            _urlauth(value, text[: offset + start + len(";URLAUTH=")], values)
    if values.get("uid") is None and (values.get("expire") is not None or values.get("access") is not None):
        raise UrlError("URLAUTH is only for a message or a part of one (RFC 4467 section 3)")
    if values.get("expire") is not None and values.get("access") is None:
        raise UrlError(";EXPIRE= must be followed by ;URLAUTH=")


def _urlauth(value: str, before: str, values: dict[str, object]) -> None:
    """`access [":" mechanism ":" token]`; `before` is the URL text up to the access identifier."""
    access, colon, verifier = value.partition(":")
    lowered = access.lower()
    if lowered in ("anonymous", "authuser"):
        values["access"] = lowered
    elif lowered.startswith(("submit+", "user+")):
        kind, _, user = access.partition("+")
        values["access"] = kind.lower()
        values["access_user"] = _decode(user, ACHAR, "access user name")
    else:
        raise UrlError("unknown URLAUTH access identifier")
    values["rump"] = before + access
    if colon:
        mechanism, colon2, token = verifier.partition(":")
        if not colon2 or not _MECHANISM.fullmatch(mechanism) or not _TOKEN.fullmatch(token):
            raise UrlError("a URLAUTH verifier is :mechanism:token (32 or more hex digits)")
        values["mechanism"] = mechanism
        values["token"] = token


def _encode_mailbox(name: str, *, relative: bool) -> str:
    """A mailbox name for a path. A leading "/" is encoded (else "//" would start a server), and so is a ":"
    in the first segment of a relative path (else "imap:" would read as the scheme, RFC 3986 section 4.2)."""
    text = _encode(name, _BCHAR_SAFE)
    if text.startswith("/"):
        text = "%2F" + text[1:]
    if relative:
        first, slash, others = text.partition("/")
        text = first.replace(":", "%3A") + slash + others
    return text


def format_url(url: ImapUrl) -> str:
    """The URL as text, every component percent-encoded where RFC 5092 requires it. (`rump` is not used: a
    URLAUTH URL formatted again has its own.)"""
    out: list[str] = []
    if url.server:
        out.append("imap://")
        if url.user is not None or url.auth is not None:
            if url.user is not None:
                out.append(_encode(url.user, _ACHAR_SAFE))
            if url.auth is not None:
                out.append(";AUTH=" + ("*" if url.auth == "*" else _encode(url.auth, _ACHAR_SAFE)))
            out.append("@")
        host = url.host or ""
        out.append(host if host.startswith("[") else _encode(host, _HOST_SAFE))
        if url.port is not None:
            out.append(f":{url.port}")
        if url.mailbox is None and url.uid is None and url.section is None and url.partial is None:
            return "".join(out) + "/"
        out.append("/")
    elif url.absolute:
        out.append("/")
    if url.mailbox is not None:
        out.append(_encode_mailbox(url.mailbox, relative=not url.absolute))
        if url.uidvalidity is not None:
            out.append(f";UIDVALIDITY={url.uidvalidity}")
        if url.search is not None:
            out.append("?" + _encode(url.search, _SEARCH_SAFE))
            return "".join(out)
    pieces: list[str] = []
    if url.uid is not None:
        pieces.append(f";UID={url.uid}")
    if url.section is not None:
        pieces.append(";SECTION=" + _encode(url.section, _BCHAR_SAFE))
    if url.partial is not None:
        origin, length = url.partial
        pieces.append(f";PARTIAL={origin}" + (f".{length}" if length is not None else ""))
    if pieces and url.mailbox is not None:
        out.append("/")
    out.append("/".join(pieces))
    if url.expire is not None:
        out.append(";EXPIRE=" + format_date_time(url.expire))
    if url.access is not None:
        out.append(";URLAUTH=" + url.access)
        if url.access_user is not None:
            out.append("+" + _encode(url.access_user, _ACHAR_SAFE))
        if url.mechanism is not None and url.token is not None:
            out.append(f":{url.mechanism}:{url.token}")
    return "".join(out)


def resp_text(url: str) -> str:
    """A URL as the client sent it, made safe for `[BADURL url-resp-text]` (RFC 4469 section 5 with erratum
    2002: any TEXT-CHAR but "]"): "]", controls, space and 8-bit octets percent-encoded."""
    octets = url.encode("utf-8", "surrogateescape")
    return "".join(chr(o) if 0x21 <= o <= 0x7E and o != 0x5D else f"%{o:02X}" for o in octets) or "%20"
