"""DNS lookups for everything that asks DNS: MX resolution today; SPF, DKIM, DMARC, MTA-STS and DANE next.

Implementation notes
- One `DnsResolver` wraps dnspython's asyncio resolver with the server's settings: `nameservers` (IP
  addresses) and `port` replace /etc/resolv.conf (tests, or a chosen recursive resolver); `timeout` bounds one
  query to one server, `lifetime` one whole lookup (all retries and servers). The `search` list of
  resolv.conf is never used: every name asked is absolute.
- Three outcomes, the ones every DNS-based check needs to tell apart (RFC 7208 section 5 "void lookups" and
  temperror, RFC 5321 section 5.1, RFC 7489/9989 DNS failures): an answer (the RRset); NODATA (None: the name
  exists, without records of that type); `NoSuchDomain` (NXDOMAIN). Everything else (SERVFAIL, REFUSED,
  timeouts, no reachable server, malformed answers) is `DnsTemporaryFailure`, with a text saying which.
- A cache only when asked for (`cache_size`): dnspython's LRU cache, which keeps each answer for its TTL and
  is shared by the asyncio resolver and the blocking one (`query_sync`, for libraries that ask DNS from a
  worker thread: pyspf, dkimpy). Mail authentication asks the same names for message after message (the
  sender's SPF, DKIM keys, DMARC records); the MX lookups of the queue and the admin's DNS check do not cache
  (the check must see what is published now).
- DNSSEC (`dnssec=True`, for DANE, RFC 7672): this process does not validate; it asks a validating recursive
  resolver whether it did. Queries carry the AD bit (RFC 6840 section 5.7: a resolver that validated the whole
  answer sets AD in the response) and EDNS0 with DO (RFC 3225; some resolvers set AD only then).
  `query_checked` returns the RRset with `secure` = the response's AD bit; a NXDOMAIN carries it as
  `NoSuchDomain.secure`. A validating resolver answers SERVFAIL for bogus data (RFC 4035 section 5.5), which
  stays a `DnsTemporaryFailure`. The AD bit is only as trustworthy as the path to that resolver (RFC 4035
  section 4.9.3): it must run on this host (loopback) or be reached over a network the operator trusts. Cached
  answers keep the response they came in (dnspython's `Answer` holds it), so an answer from the cache is as
  secure as when it was asked; every query of one resolver asks with the same flags, so a cache entry is never
  an answer to a question asked differently.
- `a_label` turns a domain into A-labels (RFC 5890) as dnspython does. Without the `idna` package that is IDNA
  2003, which maps the four "deviation" characters (ß, ς, ZWJ, ZWNJ) differently from IDNA 2008 (straße ->
  strasse): such a domain would be looked up as another domain, so it is refused (`BadDomainName`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.resolver
import dns.rrset

__all__ = ["BadDomainName", "DnsResolver", "DnsTemporaryFailure", "NoSuchDomain", "a_label"]

ResolverT = TypeVar("ResolverT", dns.resolver.Resolver, dns.asyncresolver.Resolver)

# Characters whose IDNA 2003 mapping differs from IDNA 2008 (RFC 5892 / UTS 46 "deviations").
_IDNA_DEVIATIONS = frozenset("\u00df\u03c2\u200c\u200d")


class NoSuchDomain(Exception):
    """NXDOMAIN: the name does not exist. `secure`: the denial was DNSSEC-validated (the response had the AD
    bit; always False when the resolver does not ask about DNSSEC)."""

    def __init__(self, text: str, secure: bool = False) -> None:
        super().__init__(text)
        self.secure = secure


class DnsTemporaryFailure(Exception):
    """DNS gave no usable answer now (SERVFAIL, REFUSED, timeout, no server); `text` says which."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class BadDomainName(ValueError):
    """Not a name DNS can be asked about (label or name too long, empty label, unconvertible Unicode)."""


def a_label(domain: str) -> str:
    """The domain in ASCII (A-labels), without a trailing dot; BadDomainName when it is not a valid name."""
    domain = domain.rstrip(".")
    if domain.isascii():
        try:
            dns.name.from_text(domain)  # label and name length checks
        except dns.exception.DNSException as exc:
            raise BadDomainName(f"bad domain name {domain!r}: {exc}") from None
        return domain
    if not dns.name.have_idna_2008 and _IDNA_DEVIATIONS.intersection(domain):
        raise BadDomainName(f"cannot convert {domain!r} to A-labels without IDNA 2008 (the idna package)")
    try:
        name = dns.name.from_unicode(domain)
    except (dns.exception.DNSException, UnicodeError) as exc:
        raise BadDomainName(f"bad domain name {domain!r}: {exc}") from None
    return name.to_text(omit_final_dot=True)


class DnsResolver:
    """Asks DNS with the server's resolver settings (see the module docstring)."""

    def __init__(
        self,
        nameservers: Sequence[str] | None = None,
        *,
        port: int = 53,
        timeout: float = 3.0,
        lifetime: float = 10.0,
        cache_size: int = 0,
        dnssec: bool = False,
    ) -> None:
        #: what made it, so that another process can make the same (`DnsResolver(*args, **kwargs)`)
        self.arguments: tuple[tuple[Sequence[str] | None], dict[str, float | int | bool]] = (
            (None if nameservers is None else list(nameservers),),
            {
                "port": port,
                "timeout": timeout,
                "lifetime": lifetime,
                "cache_size": cache_size,
                "dnssec": dnssec,
            },
        )
        #: whether queries ask the resolver for its DNSSEC verdict (see the module docstring)
        self.dnssec = dnssec
        cache = dns.resolver.LRUCache(cache_size) if cache_size > 0 else None
        #: the answers kept for their TTL, shared by `query` and `query_sync` (None without `cache_size`)
        self.cache = cache
        self._resolver = _configured(dns.asyncresolver.Resolver(configure=nameservers is None), nameservers)
        self._sync = _configured(dns.resolver.Resolver(configure=nameservers is None), nameservers)
        for resolver in (self._resolver, self._sync):
            resolver.port = port
            resolver.timeout = timeout
            resolver.lifetime = lifetime
            resolver.cache = cache
            if dnssec:
                resolver.flags = dns.flags.RD | dns.flags.AD
                resolver.use_edns(0, dns.flags.DO, 1232)

    async def query(self, name: dns.name.Name | str, rdtype: str) -> dns.rrset.RRset | None:
        """The records of type `rdtype` at `name`; None for NODATA. NoSuchDomain for NXDOMAIN, and
        DnsTemporaryFailure for every other failure."""
        rrset, _ = await self.query_checked(name, rdtype)
        return rrset

    async def query_checked(
        self, name: dns.name.Name | str, rdtype: str
    ) -> tuple[dns.rrset.RRset | None, bool]:
        """`query` with the DNSSEC verdict: (the RRset or None for NODATA, secure). `secure` is the AD bit of
        the response (the resolver validated the answer, or the denial of the type, and every CNAME on the
        way); always False when `dnssec` is off. NoSuchDomain (with its `secure`) for NXDOMAIN."""
        if isinstance(name, str):
            name = dns.name.from_text(name)
        try:
            answer = await self._resolver.resolve(name, rdtype, raise_on_no_answer=False, search=False)
        except dns.exception.DNSException as exc:
            raise self._failure(exc, name, rdtype) from None
        return answer.rrset, self._secure(answer.response)

    def query_sync(self, name: dns.name.Name | str, rdtype: str) -> dns.rrset.RRset | None:
        """`query` for code that runs in a worker thread (it blocks: never on the event loop)."""
        if isinstance(name, str):
            name = dns.name.from_text(name)
        try:
            answer = self._sync.resolve(name, rdtype, raise_on_no_answer=False, search=False)
        except dns.exception.DNSException as exc:
            raise self._failure(exc, name, rdtype) from None
        return answer.rrset

    def _secure(self, response: dns.message.Message | None) -> bool:
        return self.dnssec and response is not None and bool(response.flags & dns.flags.AD)

    def _failure(self, exc: dns.exception.DNSException, name: dns.name.Name, rdtype: str) -> Exception:
        failure = _failure(exc, name, rdtype)
        if isinstance(failure, NoSuchDomain) and isinstance(exc, dns.resolver.NXDOMAIN):
            # one response per name asked (never more than one here: no search list); from the cache, the
            # response that was cached
            by_name: dict[dns.name.Name, dns.message.Message] = exc.responses()  # type: ignore[no-untyped-call]
            responses = list(by_name.values())
            failure.secure = bool(responses) and all(self._secure(r) for r in responses)
        return failure


def _configured(resolver: ResolverT, nameservers: Sequence[str] | None) -> ResolverT:
    if nameservers is not None:
        resolver.nameservers = list(nameservers)
    return resolver


def _failure(exc: dns.exception.DNSException, name: dns.name.Name, rdtype: str) -> Exception:
    """The module's outcome (NoSuchDomain or DnsTemporaryFailure) for a failure of dnspython's."""
    what = f"{rdtype} lookup for {name.to_text(omit_final_dot=True)}"
    if isinstance(exc, dns.resolver.NXDOMAIN):
        return NoSuchDomain(what)
    if isinstance(exc, dns.resolver.LifetimeTimeout):
        return DnsTemporaryFailure(f"{what} timed out")
    if isinstance(exc, dns.resolver.NoNameservers):
        return DnsTemporaryFailure(f"{what} failed: no nameserver answered (SERVFAIL or refused)")
    return DnsTemporaryFailure(f"{what} failed: {exc.__class__.__name__}: {exc}")
