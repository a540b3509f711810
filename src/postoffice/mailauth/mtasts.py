"""MTA-STS (RFC 8461): the policies of the domains we deliver to, and the policy we publish for ours.

What it implements
- The `_mta-sts` TXT record (section 3.1): `parse_record` (its `id`) and `pick_record` (the one STS record
  among a name's TXT records).
- The policy (section 3.2): `parse_policy` into an `StsPolicy`; `StsPolicy.matches` (section 4.1: an MX host
  against the `mx` patterns).
- Fetching a policy (section 3.3): `fetch_policy`, HTTPS through our resolver and `h11`.
- Discovery, caching and refresh (sections 3.3, 5 and 5.1): `MtaSts.policy_for`, the policy one delivery
  applies, with a `PolicyCache` (`MemoryPolicyCache` here; the store keeps them across restarts).
- Our own policy: `served_policy` / `render_policy` (the text served by `postoffice.web.mtasts`) and
  `policy_id` (the id of the `_mta-sts` record `postoffice.directory.dns_records` publishes).

Implementation notes
- Syntax is the RFC's ABNF, exactly, case-sensitive where it is (`v=STSv1`, `id=`, `version`, `mode`
  values): a record or policy that does not match it is an `StsError`, which discovery treats as no record
  or a failed fetch. Where the ABNF lets a known field's name also read as an extension (`id=` with 33
  characters, `mode: bogus`), the first occurrence of a known field must have a valid value (else
  `StsError`); later occurrences of a field other than `mx` are ignored (section 3.2, "all entries except for
  the first SHOULD be ignored", applied to the TXT record too). TXT: white space is allowed around each `;`
  (the ABNF's `*WSP ";" *WSP`; erratum 6285), a final one included, nowhere else. Of several TXT
  records, those beginning `v=STSv1` followed by `;`, white space or nothing are STS records; not exactly one
  -> no record (section 3.1). A TXT record's strings are joined without spaces.
- Policy: lines end with LF or CRLF, the last one optionally; no empty lines, no white space before a key
  or `:`, white space after the value allowed. `max_age` is 1-10 digits; above 31557600 (the RFC's maximum)
  it is taken as 31557600 rather than refusing the policy (a sender may keep a policy for less). `mx`
  patterns are `["*."] Domain` (RFC 5321 letters, digits, hyphens: A-labels; a U-label or a trailing dot is
  invalid), kept in lowercase; required unless `mode: none`.
- Matching (section 4.1): the host name in A-labels, lowercase, without its trailing dot; `*.example.com`
  matches exactly one label in front of `example.com`, never `example.com` itself.
- Fetching: `https://mta-sts.DOMAIN/.well-known/mta-sts.txt` only, on `port` (443 outside tests). The host's
  A/AAAA records come from our `DnsResolver` (families and order as `ip_versions`, IPv4 first by default as
  the queue does); each address is tried until a TLS connection stands (`context` checks the certificate
  against `mta-sts.DOMAIN`: `ssl.create_default_context()` in production). HTTP/1.1 through `h11`; only a
  200 with media type `text/plain` (any parameters) counts; a 3xx is a failure and never followed; a body
  over `max_size` octets (64 KiB, section 3.3's suggestion) is a failure and is not read further; everything
  (DNS, connection, TLS, request, body) within `timeout` (section 3.3 suggests a minute). No HTTP cache
  (section 3.3). The body must be UTF-8. Every failure is an `StsFetchError` whose text says what failed.
- Discovery (`policy_for`), every call: the TXT record is asked (so a new policy is noticed before a
  delivery fails for good, section 5.1 step 3). Same id as a cached, unexpired policy -> that one; a new id,
  or nothing unexpired cached -> fetch. No usable TXT record, a DNS failure, or a failed fetch -> the cached
  policy while it has not expired (sections 3.3 and 5.1: absence of a record does not remove it). A fetched
  policy is stored with the TXT record's id, also one with `mode: none`, which applies no policy (None).
- Refresh (sections 3.3 and 10.2): a background refresh of cached policies before they expire (the RFC's
  SHOULD) is not done. Instead, a cached policy that is used and older than `refresh_after` (a day, the
  RFC's suggested frequency) is fetched again even with the same id; a failure keeps the cached one. So the
  policy of a domain that mail goes to more often than its `max_age` less a day never lapses; a domain not
  written to for longer loses its policy (and it is fetched anew on the next delivery).
- After a failed fetch, the same domain and id are not fetched again for `retry_after` (five minutes:
  section 3.3's SHOULD), the cached policy, if any, applies meanwhile. Concurrent deliveries to one domain
  share one fetch. Each fetch logs one line on "postoffice.mtasts": info, or warning when the refresh of a
  policy in force failed (section 3.3: alert administrators, unless the mode is "none").
- Not here: applying the policy (the queue: MX names checked with `matches`, then STARTTLS with a verified
  certificate naming the MX host, section 4; `testing` delivers regardless and only reports), TLS reports
  (RFC 8460), and refusing policy hosts on private addresses.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, cast

import dns.exception
import dns.rrset
import h11

from postoffice.mailauth.mtasts_settings import MAX_MAX_AGE
from postoffice.net.dns import BadDomainName, DnsResolver, DnsTemporaryFailure, NoSuchDomain, a_label

if TYPE_CHECKING:
    from postoffice.mailauth.mtasts_settings import MtaStsConfig

__all__ = [
    "MAX_MAX_AGE",
    "POLICY_PATH",
    "CachedPolicy",
    "MemoryPolicyCache",
    "MtaSts",
    "PolicyCache",
    "StsError",
    "StsFetchError",
    "StsPolicy",
    "fetch_policy",
    "parse_policy",
    "parse_record",
    "pick_record",
    "policy_id",
    "render_policy",
    "served_policy",
]

log = logging.getLogger("postoffice.mtasts")

Mode = Literal["enforce", "testing", "none"]
MODES: tuple[Mode, ...] = ("enforce", "testing", "none")
#: Where the policy is (section 3.3), on the host `mta-sts.DOMAIN`.
POLICY_PATH = "/.well-known/mta-sts.txt"
#: Section 3.3's suggestions: the time a fetch may take, and the size of a policy.
FETCH_TIMEOUT = 60.0
MAX_POLICY_SIZE = 65536
#: Seconds before the same domain and id are fetched again after a failure (section 3.3: five minutes).
RETRY_AFTER = 300.0
#: Seconds after which a cached policy in use is fetched again (section 3.3: "once per day").
REFRESH_AFTER = 86400.0
#: Octets read from the connection at a time.
_READ_SIZE = 16384


class StsError(ValueError):
    """A TXT record or policy that is not valid MTA-STS syntax (the text says why)."""


class StsFetchError(Exception):
    """No policy could be fetched; `text` says what failed (DNS, connection, TLS, HTTP, the policy itself),
    `result_type` the RFC 8460 section 4.3 type for a TLS report: "sts-webpki-invalid" (the policy host's
    certificate), "sts-policy-invalid" (the policy), else "sts-policy-fetch-error"."""

    def __init__(self, text: str, result_type: str = "sts-policy-fetch-error") -> None:
        super().__init__(text)
        self.text = text
        self.result_type = result_type


# -- the TXT record (section 3.1) ----------------------------------------------------------------------------

_VERSION = "v=STSv1"
_DELIMITER = re.compile(r"[ \t]*;[ \t]*")
_RECORD_ID = re.compile(r"[A-Za-z0-9]{1,32}")
# sts-ext-name and sts-ext-value
_EXT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
_EXT_VALUE = re.compile(r"[\x21-\x3a\x3c\x3e-\x7e]+")


def _is_sts_record(text: str) -> bool:
    return text.startswith(_VERSION) and text[len(_VERSION) : len(_VERSION) + 1] in ("", ";", " ", "\t")


def parse_record(txt: str) -> str:
    """The `id` of an `_mta-sts` TXT record (its strings joined); StsError when it is not a valid one."""
    if not txt.startswith(_VERSION):
        raise StsError("not an MTA-STS record: it does not begin with v=STSv1")
    fields = _DELIMITER.split(txt[len(_VERSION) :])
    if fields[0]:
        raise StsError("v=STSv1 must be followed by ';'")
    fields = fields[1:]
    if fields and not fields[-1]:
        fields.pop()  # the optional final ";"
    record_id = ""
    for field in fields:
        name, equals, value = field.partition("=")
        if not equals or not _EXT_NAME.fullmatch(name) or not _EXT_VALUE.fullmatch(value):
            raise StsError(f"not a field name=value: {field!r}")
        if name == "id" and not record_id:
            if not _RECORD_ID.fullmatch(value):
                raise StsError(f"the id must be 1 to 32 letters and digits: {value!r}")
            record_id = value
    if not record_id:
        raise StsError("the record has no id")
    return record_id


def pick_record(records: Iterable[Sequence[bytes]]) -> str:
    """The `id` of the one STS record among a name's TXT records (each given as its character-strings, joined
    here without spaces). StsError when there is none, more than one (senders then use none, section 3.1),
    or it is invalid."""
    texts = [b"".join(strings).decode("ascii", "replace") for strings in records]
    sts = [text for text in texts if _is_sts_record(text)]
    if not sts:
        raise StsError("no TXT record beginning with v=STSv1")
    if len(sts) > 1:
        raise StsError(f"{len(sts)} TXT records beginning with v=STSv1: none is used (RFC 8461 section 3.1)")
    return parse_record(sts[0])


# -- the policy (section 3.2) --------------------------------------------------------------------------------

_VCHAR = "[\\x21-\\x7e\\x80-\\U0010ffff]"  # sts-policy-vchar: visible ASCII, and UTF-8 beyond ASCII
_VALUE = f"{_VCHAR}(?:(?: |{_VCHAR})*{_VCHAR})?"  # sts-policy-ext-value: no leading or trailing space
_POLICY_LINE = re.compile(rf"(?P<key>[A-Za-z0-9][A-Za-z0-9_.-]{{0,31}}):[ \t]*(?P<value>{_VALUE})[ \t]*")
_LINE_END = re.compile(r"\r?\n")
_MAX_AGE = re.compile(r"[0-9]{1,10}")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_MX_PATTERN = re.compile(rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})*")


@dataclass(frozen=True)
class StsPolicy:
    """A policy as fetched: its mode, `mx` patterns (lowercase A-labels), `max_age` in seconds and text."""

    mode: Mode
    mx: tuple[str, ...]
    max_age: int
    text: str

    def matches(self, host: str) -> bool:
        """Whether the MX host name `host` is one the policy allows (section 4.1)."""
        try:
            name = a_label(host).lower()
        except BadDomainName:
            return False
        for pattern in self.mx:
            if pattern.startswith("*."):
                first, dot, rest = name.partition(".")
                if first and dot and rest == pattern[2:]:
                    return True
            elif name == pattern:
                return True
        return False


def parse_policy(text: str) -> StsPolicy:
    """The policy of a policy file's text (section 3.2); StsError when it is not a valid one."""
    lines = _LINE_END.split(text)
    if len(lines) > 1 and not lines[-1]:
        lines.pop()  # the final line's end
    version: str | None = None
    mode: Mode | None = None
    max_age: int | None = None
    mx: list[str] = []
    for number, line in enumerate(lines, 1):
        match = _POLICY_LINE.fullmatch(line)
        if match is None:
            raise StsError(f"line {number} is not 'key: value': {line[:80]!r}")
        key, value = match["key"], match["value"]
        if key == "version" and version is None:
            if value != "STSv1":
                raise StsError(f"version is {value[:40]!r}, not STSv1")
            version = value
        elif key == "mode" and mode is None:
            if value not in MODES:
                raise StsError(f"mode is {value[:40]!r}, not enforce, testing or none")
            mode = cast(Mode, value)
        elif key == "max_age" and max_age is None:
            if not _MAX_AGE.fullmatch(value):
                raise StsError(f"max_age is {value[:40]!r}, not 1 to 10 digits")
            max_age = min(int(value), MAX_MAX_AGE)
        elif key == "mx":
            if len(value) > 255 or not _MX_PATTERN.fullmatch(value):
                raise StsError(f"mx {value[:80]!r} is not a host name or *. and a domain (A-labels)")
            mx.append(value.lower())
    if version is None:
        raise StsError("the policy has no version")
    if mode is None:
        raise StsError("the policy has no mode")
    if max_age is None:
        raise StsError("the policy has no max_age")
    if not mx and mode != "none":
        raise StsError(f"the policy has no mx, which mode {mode} needs")
    return StsPolicy(mode, tuple(mx), max_age, text)


# -- our own policy ------------------------------------------------------------------------------------------


def render_policy(mode: str, mx: Sequence[str], max_age: int) -> str:
    """A policy file (CRLF lines, `version: STSv1` first); StsError when the values make no valid one."""
    lines = ["version: STSv1", f"mode: {mode}", *(f"mx: {pattern}" for pattern in mx), f"max_age: {max_age}"]
    text = "".join(line + "\r\n" for line in lines)
    if parse_policy(text).max_age != max_age:
        raise StsError(f"max_age {max_age} is over {MAX_MAX_AGE}")
    return text


def policy_id(text: str) -> str:
    """The `id` of the TXT record that announces a policy: 20 characters of the base32 SHA-256 of its text,
    so that it changes exactly when the policy does."""
    return base64.b32encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")[:20]


def served_policy(settings: MtaStsConfig, hostname: str) -> str | None:
    """The text of the policy this server publishes (`[mta_sts]`), None when it publishes none (`off`)."""
    if settings.mode == "off":
        return None
    return render_policy(settings.mode, settings.mx or (hostname.rstrip(".").lower(),), settings.max_age)


# -- fetching (section 3.3) ----------------------------------------------------------------------------------


async def fetch_policy(
    domain: str,
    *,
    resolver: DnsResolver,
    context: ssl.SSLContext,
    port: int = 443,
    timeout: float = FETCH_TIMEOUT,  # noqa: ASYNC109 - the bound of the whole fetch, DNS included
    max_size: int = MAX_POLICY_SIZE,
    ip_versions: Sequence[int] = (4, 6),
) -> StsPolicy:
    """The policy served at `https://mta-sts.DOMAIN/.well-known/mta-sts.txt` (module notes); StsFetchError
    for every failure."""
    try:
        host = "mta-sts." + a_label(domain).lower()
    except BadDomainName as exc:
        raise StsFetchError(str(exc)) from None
    url = f"https://{host}{POLICY_PATH}"
    try:
        async with asyncio.timeout(timeout):
            addresses = await host_addresses(host, resolver, ip_versions)
            body = await _get(host, addresses, port, context, max_size)
    except TimeoutError:
        raise StsFetchError(f"{url}: no complete answer within {timeout:g} seconds") from None
    except StsFetchError as exc:
        raise StsFetchError(f"{url}: {exc.text}", exc.result_type) from None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise StsFetchError(f"{url}: the policy is not UTF-8", "sts-policy-invalid") from None
    try:
        return parse_policy(text)
    except StsError as exc:
        raise StsFetchError(f"{url}: not a valid policy: {exc}", "sts-policy-invalid") from None


async def host_addresses(host: str, resolver: DnsResolver, ip_versions: Sequence[int]) -> list[str]:
    """The addresses of `host` through our resolver (StsFetchError when it has none, or DNS failed)."""
    kinds = [{4: "A", 6: "AAAA"}[version] for version in ip_versions]
    answers = await asyncio.gather(*(resolver.query(host, kind) for kind in kinds), return_exceptions=True)
    addresses: list[str] = []
    failures: list[str] = []
    for answer in answers:
        if isinstance(answer, DnsTemporaryFailure):
            failures.append(answer.text)
        elif isinstance(answer, NoSuchDomain):
            pass
        elif isinstance(answer, dns.exception.DNSException):  # a name DNS cannot be asked about
            failures.append(f"{host}: {answer}")
        elif isinstance(answer, BaseException):
            raise answer
        elif answer is not None:
            addresses += [rdata.to_text() for rdata in answer]
    if not addresses:
        raise StsFetchError("; ".join(failures) if failures else f"{host} has no address")
    return addresses


async def _get(host: str, addresses: list[str], port: int, context: ssl.SSLContext, max_size: int) -> bytes:
    """The body of the policy host's answer, from the first address that takes a TLS connection."""
    problems: list[str] = []
    result_type = "sts-policy-fetch-error"
    for address in addresses:
        try:
            reader, writer = await asyncio.open_connection(
                address, port, ssl=context, server_hostname=host, limit=_READ_SIZE
            )
        except (OSError, ssl.SSLError) as exc:  # refused, unreachable, the TLS handshake or certificate
            problems.append(f"{address} port {port}: {_describe(exc)}")
            if isinstance(exc, ssl.SSLCertVerificationError):
                result_type = "sts-webpki-invalid"
            continue
        try:
            return await _exchange(reader, writer, host, max_size)
        except (OSError, ssl.SSLError) as exc:
            raise StsFetchError(f"{address} port {port}: {_describe(exc)}") from None
        except h11.ProtocolError as exc:
            raise StsFetchError(f"{address} port {port}: not an HTTP/1.1 answer: {exc}") from None
        finally:
            writer.transport.abort()  # the answer is read (or will not be): no TLS close to wait for
    raise StsFetchError("; ".join(problems), result_type)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not accepted: {exc.verify_message or exc.reason}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, max_size: int
) -> bytes:
    connection = h11.Connection(h11.CLIENT, max_incomplete_event_size=_READ_SIZE)
    request = h11.Request(
        method="GET",
        target=POLICY_PATH,
        headers=[
            ("Host", host),
            ("User-Agent", "postoffice"),
            ("Accept", "text/plain"),
            ("Connection", "close"),
        ],
    )
    writer.write((connection.send(request) or b"") + (connection.send(h11.EndOfMessage()) or b""))
    await writer.drain()
    body = bytearray()
    closed = False
    while True:
        try:
            event = connection.next_event()
        except h11.RemoteProtocolError as exc:
            if closed:
                raise StsFetchError("the connection was closed before the end of the answer") from None
            raise StsFetchError(f"not an HTTP/1.1 answer: {exc}") from None
        if event is h11.NEED_DATA:
            data = await reader.read(_READ_SIZE)
            closed = not data
            connection.receive_data(data)
        elif isinstance(event, h11.Response):
            _check_head(event, max_size)
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > max_size:
                raise StsFetchError(f"the policy is longer than {max_size} octets")
        elif isinstance(event, h11.EndOfMessage):
            return bytes(body)
        elif isinstance(event, h11.ConnectionClosed):
            raise StsFetchError("the connection was closed before the end of the answer")
        # an InformationalResponse (1xx) is followed by the real one


def _check_head(response: h11.Response, max_size: int) -> None:
    status = response.status_code
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in response.headers}
    if 300 <= status < 400:
        where = headers.get("location", "")
        raise StsFetchError(
            f"HTTP {status}: a redirect{f' to {where}' if where else ''}, not followed (RFC 8461 section 3.3)"
        )
    if status != 200:
        reason = response.reason.decode("latin-1")
        raise StsFetchError(f"HTTP {status}{f' {reason}' if reason else ''}, not 200")
    media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "text/plain":
        raise StsFetchError(f"media type {media_type or '(none)'!r}, not text/plain (RFC 8461 section 3.2)")
    length = headers.get("content-length", "")
    if length.isdigit() and int(length) > max_size:
        raise StsFetchError(f"the policy is {length} octets, more than {max_size}")


# -- discovery and the cache (sections 3.3, 5) ---------------------------------------------------------------


@dataclass(frozen=True)
class CachedPolicy:
    """A policy as the cache keeps it: the id of the TXT record it was fetched for, and when (epoch s)."""

    policy_id: str
    policy: StsPolicy
    fetched: float

    @property
    def expires(self) -> float:
        return self.fetched + self.policy.max_age


class PolicyCache(Protocol):
    """Where `MtaSts` keeps the policies it fetched, by domain (lowercase A-labels)."""

    async def get(self, domain: str) -> CachedPolicy | None: ...

    async def put(self, domain: str, cached: CachedPolicy) -> None: ...


class MemoryPolicyCache:
    """A `PolicyCache` in memory (tests; a server without a persistent one)."""

    def __init__(self) -> None:
        self.policies: dict[str, CachedPolicy] = {}

    async def get(self, domain: str) -> CachedPolicy | None:
        return self.policies.get(domain)

    async def put(self, domain: str, cached: CachedPolicy) -> None:
        self.policies[domain] = cached


def _in_force(cached: CachedPolicy | None) -> StsPolicy | None:
    """The policy a delivery applies from a cached one: none for mode "none"."""
    if cached is None or cached.policy.mode == "none":
        return None
    return cached.policy


class MtaSts:
    """Policy discovery for outbound delivery (module notes): `await policy_for(domain)` per attempt."""

    def __init__(
        self,
        resolver: DnsResolver,
        cache: PolicyCache,
        *,
        context: ssl.SSLContext | None = None,
        port: int = 443,
        clock: Callable[[], float] = time.time,
        fetch_timeout: float = FETCH_TIMEOUT,
        max_size: int = MAX_POLICY_SIZE,
        ip_versions: Sequence[int] = (4, 6),
        refresh_after: float = REFRESH_AFTER,
        retry_after: float = RETRY_AFTER,
        on_failure: Callable[[str, StsFetchError], None] | None = None,
    ) -> None:
        self.resolver = resolver
        self.cache = cache
        self.context = context if context is not None else ssl.create_default_context()
        self.port = port
        self.clock = clock
        self.fetch_timeout = fetch_timeout
        self.max_size = max_size
        self.ip_versions = tuple(ip_versions)
        self.refresh_after = refresh_after
        self.retry_after = retry_after
        #: told of every failed fetch (domain, error): TLS reporting counts it (RFC 8460 section 4.3.2)
        self.on_failure = on_failure
        self._fetching: dict[str, asyncio.Task[CachedPolicy | None]] = {}
        self._failed: dict[tuple[str, str], float] = {}

    async def policy_for(self, domain: str) -> StsPolicy | None:
        """The policy one delivery to `domain` applies, or None when there is none (module notes). Never
        raises for DNS, network, TLS or HTTP problems."""
        try:
            name = a_label(domain).lower()
        except BadDomainName:
            return None
        if not name:
            return None
        try:
            record = await self._record_id(name)
        except DnsTemporaryFailure as exc:
            cached = await self._unexpired(name)
            log.debug("mta-sts: %s: no TXT record now (%s): %s", name, exc.text, _what(cached))
            return _in_force(cached)
        cached = await self._unexpired(name)
        if record is None:
            return _in_force(cached)
        now = self.clock()
        if cached is not None and cached.policy_id == record and now - cached.fetched < self.refresh_after:
            return _in_force(cached)
        failed = self._failed.get((name, record))
        if failed is not None and now - failed < self.retry_after:
            return _in_force(cached)
        fetched = await self._fetch_once(name, record, cached)
        return _in_force(fetched if fetched is not None else cached)

    async def _unexpired(self, name: str) -> CachedPolicy | None:
        cached = await self.cache.get(name)
        if cached is None or cached.expires <= self.clock():
            return None
        return cached

    async def _record_id(self, name: str) -> str | None:
        """The id of the domain's STS record; None when it has no valid one. DnsTemporaryFailure."""
        try:
            rrset = await self.resolver.query(f"_mta-sts.{name}", "TXT")
        except NoSuchDomain:
            return None
        except dns.exception.DNSException:  # a name too long to ask about
            return None
        if rrset is None:
            return None
        try:
            return pick_record(_txt_strings(rrset))
        except StsError as exc:
            log.debug("mta-sts: %s: no usable TXT record: %s", name, exc)
            return None

    async def _fetch_once(self, name: str, record: str, cached: CachedPolicy | None) -> CachedPolicy | None:
        """A fetch for `name`, shared with the deliveries that want it at the same time."""
        task = self._fetching.get(name)
        if task is None:
            task = asyncio.ensure_future(self._fetch(name, record, cached))
            self._fetching[name] = task
            task.add_done_callback(lambda done: self._fetched(name, done))
        # one waiter cancelled does not cancel the fetch the others wait for
        return await asyncio.shield(task)

    def _fetched(self, name: str, task: asyncio.Task[CachedPolicy | None]) -> None:
        if self._fetching.get(name) is task:
            del self._fetching[name]
        if not task.cancelled():
            task.exception()  # retrieved: whoever awaited it has it

    async def _fetch(self, name: str, record: str, cached: CachedPolicy | None) -> CachedPolicy | None:
        try:
            policy = await fetch_policy(
                name,
                resolver=self.resolver,
                context=self.context,
                port=self.port,
                timeout=self.fetch_timeout,
                max_size=self.max_size,
                ip_versions=self.ip_versions,
            )
        except StsFetchError as exc:
            now = self.clock()
            self._failed = {key: when for key, when in self._failed.items() if now - when < self.retry_after}
            self._failed[(name, record)] = now
            if self.on_failure is not None:
                self.on_failure(name, exc)
            in_force = _in_force(cached) is not None
            log.log(
                logging.WARNING if in_force else logging.INFO,
                "mta-sts: %s: fetching policy %s failed: %s; %s",
                name,
                record,
                exc.text,
                _what(cached),
            )
            return None
        fetched = CachedPolicy(record, policy, self.clock())
        await self.cache.put(name, fetched)
        log.info(
            "mta-sts: %s: fetched policy %s: mode %s, mx %s, max_age %d",
            name,
            record,
            policy.mode,
            " ".join(policy.mx) or "-",
            policy.max_age,
        )
        return fetched


def _what(cached: CachedPolicy | None) -> str:
    """What applies meanwhile, for the log."""
    if cached is None:
        return "no policy applies"
    expires = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(cached.expires))
    return f"the cached policy {cached.policy_id} (mode {cached.policy.mode}) applies until {expires}"


def _txt_strings(rrset: dns.rrset.RRset) -> list[Sequence[bytes]]:
    return [tuple(rdata.strings) for rdata in rrset]
