"""SPF, the Sender Policy Framework (RFC 7208): may the client's address send mail for the HELO name and for
the MAIL FROM domain?

`SpfChecker.check(ip=, helo=, mail_from=)` gives one `SpfResult` per identity (RFC 7208 section 2.3 HELO,
section 2.4 MAIL FROM), each one of the seven results of section 2.6 (pass, fail, softfail, neutral, none,
temperror, permerror) with the domain checked and an explanation for a log line and the
Authentication-Results comment. It never raises for what a client or a DNS zone can send.

Implementation notes
- The evaluation is pyspf's (`spf.query(...).check()`, the `check_host()` function of RFC 7208 section 4):
  record selection (4.5), the mechanisms and modifiers (5, 6), macros (7), the explanation of `exp=` (6.2),
  the limits of section 4.6.4 (10 DNS-querying terms: `spf.MAX_LOOKUP`; 2 void lookups:
  `spf.MAX_VOID_LOOKUPS`; 10 MX and 10 PTR names), all kept as pyspf sets them. `strict=True` is pyspf's
  RFC 7208 mode: syntax errors anywhere in a record are permerror, only TXT records are used (type SPF, 99,
  was removed by RFC 7208 section 3.1 / 14.1: pyspf asks for it only in its "harsh" mode 2, which we never
  use, and our DNS hook answers nothing for it).
- What we wrap around it, before pyspf sees anything:
  - the identities (section 4.3): a HELO name or MAIL FROM domain that is not a multi-label domain name of
    LDH labels (an address literal, a bare address, no dot, an empty or over-long label, a numeric last label)
    is not checked. HELO: no result (`helo=None`, section 2.3 checks only a fully qualified domain name);
    MAIL FROM: `none`. A domain is checked in lower-case A-labels (a Unicode one: RFC 8616 section 4, via
    `net.dns.a_label`); that form is what the macros and `SpfResult.domain` show;
  - the sender is split at its last "@" (a quoted local part may hold one) and the parts are given to pyspf
    as they are: pyspf would split at the first. An empty local part is "postmaster" (section 4.3);
  - the null reverse-path (mail_from == "") is postmaster@HELO (section 2.4): the MAIL FROM result is then
    the HELO result itself, and `none` with no domain when the HELO name is not a domain (the client's
    text is no identity: Authentication-Results then names none). (Any MAIL FROM that makes the
    same check_host() call as the HELO check is evaluated once.);
  - the client address is parsed here (an IPv4-mapped IPv6 address is IPv4, section 5 and 5.6); one that is
    not an address gives permerror for every identity (pyspf raises then, and it would also take the words
    "list" and "list6" as modes of its own);
  - one fix of pyspf's `ptr` validation (`_Query.validated_ptrs`, section 5.5 and the `p` macro of 7.3): a
    DNS error of the PTR lookup makes the mechanism not match, and a DNS error of the A/AAAA lookup of one
    name skips that name, where pyspf would end the whole check in temperror;
  - every exception pyspf raises beyond its own PermError/TempError is permerror with its text, logged;
  - explanations and domains are made safe for a log line and a header comment: printable ASCII only
    (anything else backslash-escaped), at most `EXPLANATION_LIMIT` characters. An `exp=` explanation is the
    sender domain's own text (section 6.2): quote it, never trust it.
- DNS goes only through our resolver. pyspf asks DNS through its module function `spf.DNSLookup(name,
  qtype, strict, timeout)`; importing this module replaces it once, for the whole process, with
  `_pyspf_dns_lookup`, which finds the resolver of the check running on its thread in the context variable
  `_LOOKUPS` (a `contextvars.ContextVar` rather than a thread-local: the worker sets it around one
  evaluation and resets it after, and it stays right if an evaluation is ever run through
  `asyncio.to_thread` or `contextvars.copy_context().run`). A lookup outside a check is a TempError, so
  nothing in the process can ask DNS through pyspf around the resolver settings. The hook calls
  `DnsResolver.query_sync` (so the resolver's TTL cache, when it has one, serves SPF too) and maps: an
  answer to pyspf's value shapes (A/AAAA address text, MX (preference, exchange), PTR target, TXT the
  tuple of byte strings); NODATA and NXDOMAIN to an empty list (pyspf counts it as a void lookup);
  `DnsTemporaryFailure` to `spf.TempError` (temperror, section 2.6.6). CNAME chains are the resolver's
  business (a recursive resolver follows them): the records at the end of the chain are given to pyspf
  under the name it asked for. A name that cannot be asked (a non-ASCII local part put into a name by a
  macro: RFC 8616 section 4 says such terms match nothing; an empty or long label) is an empty answer.
- pyspf blocks, so it runs in a thread pool of its own (`threads`, 8 by default; never on the event loop).
  The HELO and the MAIL FROM evaluations run side by side. The whole check is bounded by `timeout` (RFC
  7208 section 4.6.4: at least 20 seconds, then temperror): `check` stops waiting at the deadline, and the
  worker, which cannot be interrupted inside a lookup, refuses every further lookup once the deadline has
  passed, so an abandoned evaluation ends after at most one resolver lifetime. Work still queued at the
  deadline is cancelled and never starts. `close()` does not wait for running evaluations, but the
  interpreter does at exit (concurrent.futures joins its workers): at most one resolver lifetime.
- Not supported: local policy (pyspf's `local=`), best-guess records for domains without SPF, the
  Received-SPF header (the Authentication-Results header carries the results: RFC 8601).
"""

from __future__ import annotations

import asyncio
import contextvars
import ipaddress
import logging
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.name
import dns.rdata
import spf

from postoffice.net.dns import BadDomainName, DnsResolver, DnsTemporaryFailure, NoSuchDomain, a_label

__all__ = ["EXPLANATION_LIMIT", "RESULTS", "SpfChecker", "SpfOutcome", "SpfResult"]

log = logging.getLogger("postoffice.mailauth.spf")

#: The results of RFC 7208 section 2.6, the only values of `SpfResult.result`.
RESULTS = frozenset({"pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"})

#: The longest explanation (and domain) kept, in characters, for log lines and header comments.
EXPLANATION_LIMIT = 300

# A domain label as a HELO name or a MAIL FROM domain must be (RFC 1123 section 2.1 LDH, plus the underscore
# that appears in real names); checked on the A-label form.
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?")


@dataclass(frozen=True)
class SpfResult:
    result: str  # pass | fail | softfail | neutral | none | temperror | permerror
    domain: str  # the domain checked (MAIL FROM's domain, or the HELO name)
    explanation: str  # pyspf's explanation / the reason, for a log line and the A-R comment ("" if none)


@dataclass(frozen=True)
class SpfOutcome:
    helo: SpfResult | None  # None when the HELO name is not a domain (an address literal, no dot)
    mail_from: SpfResult  # RFC 7208 2.4: for the null sender, postmaster@HELO (and then the HELO result)


@dataclass(frozen=True)
class _Identity:
    """One check_host() call (RFC 7208 section 4.1): <domain> and <sender> split into its parts."""

    domain: str  # A-labels
    local: str


class SpfChecker:
    """SPF for the HELO and MAIL FROM identities of a connection (see the module docstring)."""

    def __init__(
        self, resolver: DnsResolver, *, receiver: str, threads: int = 8, timeout: float = 20.0
    ) -> None:
        self._resolver = resolver
        self._receiver = receiver
        self._timeout = timeout
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="spf")
        self._closed = False

    async def check(self, *, ip: str, helo: str, mail_from: str) -> SpfOutcome:
        """SPF for `helo` (the HELO/EHLO argument) and `mail_from` (the reverse-path without its angle
        brackets, "" for the null sender) of a client at `ip`."""
        deadline = time.monotonic() + self._timeout
        helo_domain, helo_reason = _domain_of(helo)
        helo_identity = None if helo_domain is None else _Identity(helo_domain, "postmaster")
        mail_identity: _Identity | SpfResult
        if mail_from == "":  # RFC 7208 section 2.4: the null reverse-path is checked as postmaster@HELO
            # a HELO name that is no domain is no identity: not written as one (it is the client's text)
            mail_identity = helo_identity or _result(
                "none", "", f"null sender, and the HELO name is not a domain ({helo_reason})"
            )
        else:
            local, _, domain_text = mail_from.rpartition("@")
            domain, reason = _domain_of(domain_text)
            if domain is None:
                why = f"the MAIL FROM domain is not a domain name ({reason})"
                mail_identity = _result("none", domain_text, why)
            else:
                mail_identity = _Identity(domain, local or "postmaster")
        identities = [i for i in (helo_identity, mail_identity) if isinstance(i, _Identity)]
        results = await self._evaluate_all(identities, ip, helo_domain or helo, deadline)
        return SpfOutcome(
            helo=None if helo_identity is None else results[helo_identity],
            mail_from=results[mail_identity] if isinstance(mail_identity, _Identity) else mail_identity,
        )

    def close(self) -> None:
        """Stops the thread pool: queued evaluations are cancelled; a running one ends after its current
        lookup (it does not wait for that, so it may be called on the event loop)."""
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _evaluate_all(
        self, identities: list[_Identity], ip: str, helo: str, deadline: float
    ) -> dict[_Identity, SpfResult]:
        results: dict[_Identity, SpfResult] = {}
        pending = list(dict.fromkeys(identities))  # the null sender's identity is the HELO's: once
        if not pending:
            return results
        address = _client_address(ip)
        if address is None:
            why = f"the client address {_printable(ip)} is not an IP address"
            return {identity: _result("permerror", identity.domain, why) for identity in pending}
        if self._closed:
            return {
                identity: _result("temperror", identity.domain, "SPF checker stopped") for identity in pending
            }
        loop = asyncio.get_running_loop()
        futures = {
            identity: loop.run_in_executor(self._pool, self._evaluate, identity, address, helo, deadline)
            for identity in pending
        }
        try:
            await asyncio.wait(futures.values(), timeout=max(0.0, deadline - time.monotonic()))
        finally:
            for future in futures.values():
                future.cancel()  # no-op when done; otherwise a queued one never starts
        for identity, future in futures.items():
            if future.done() and not future.cancelled():
                results[identity] = future.result()
            else:
                why = f"the SPF check did not finish within {self._timeout:g} s (RFC 7208 section 4.6.4)"
                results[identity] = _result("temperror", identity.domain, why)
        return results

    def _evaluate(self, identity: _Identity, address: str, helo: str, deadline: float) -> SpfResult:
        """check_host() for one identity, in a worker thread (it blocks on DNS)."""
        domain = identity.domain
        if time.monotonic() >= deadline:
            why = f"the SPF check did not start within {self._timeout:g} s (RFC 7208 section 4.6.4)"
            return _result("temperror", domain, why)
        token = _LOOKUPS.set(_Lookups(self._resolver, deadline, self._timeout))
        try:
            query = _Query(
                i=address, s=f"{identity.local}@{domain}", h=helo, receiver=self._receiver, strict=True
            )
            # pyspf splits the sender at its first "@"; ours is split at the last one
            query.l, query.o, query.d = identity.local, domain, domain
            result, _code, explanation = query.check()
        except Exception as exc:  # pyspf's own errors are results; anything else is a record it choked on
            log.warning("SPF evaluation for %s failed", _printable(domain), exc_info=True)
            return _result("permerror", domain, f"SPF evaluation failed: {type(exc).__name__}: {exc}")
        finally:
            _LOOKUPS.reset(token)
        if result not in RESULTS:
            return _result("permerror", domain, f"unexpected SPF result {result!r}")
        if result == "none" and not explanation:
            explanation = f"no SPF record for {domain}"
        return _result(result, domain, str(explanation))


# ---------------------------------------------------------------------------------------------------------
# pyspf, and its DNS through our resolver


class _Query(spf.query):  # type: ignore[misc]  # pyspf has no type information
    def validated_ptrs(self) -> list[str]:
        """RFC 7208 section 5.5: the names of the PTR records of the client address (at most 10) whose A or
        AAAA records hold it. "If a DNS error occurs while doing the PTR RR lookup, then this mechanism fails
        to match. If a DNS error occurs while doing an A RR lookup, then that domain name is skipped and the
        search continues." pyspf lets both errors end the check in temperror; past the deadline they
        still do."""
        try:
            names: list[str] = self.dns_ptr(self.i)
        except _DeadlineExceeded:
            raise
        except spf.TempError:
            return []
        validated = []
        for name in names[: spf.MAX_PTR]:
            try:
                if self.cidrmatch(self.dns_a(name, self.A), self.cidrmax):
                    validated.append(name)
            except _DeadlineExceeded:
                raise
            except spf.TempError:
                continue
        return validated


class _DeadlineExceeded(spf.TempError):  # type: ignore[misc]  # pyspf has no type information
    """The check's time is up: no more lookups (temperror, RFC 7208 section 4.6.4)."""


@dataclass(frozen=True)
class _Lookups:
    """What the DNS hook needs to know about the check running on its thread."""

    resolver: DnsResolver
    deadline: float  # time.monotonic()
    timeout: float

    def lookup(self, name: str, qtype: str) -> list[tuple[tuple[str, str], Any]]:
        convert = _VALUES.get(qtype)
        if convert is None:
            return []  # type SPF (99) and anything else pyspf might ask: not used since RFC 7208
        if time.monotonic() >= self.deadline:
            raise _DeadlineExceeded(f"the SPF check took longer than {self.timeout:g} s")
        try:
            owner = _dns_name(name)
        except (ValueError, dns.exception.DNSException):
            return []  # a name DNS cannot be asked about does not exist
        try:
            rrset = self.resolver.query_sync(owner, qtype)
        except NoSuchDomain:
            return []
        except DnsTemporaryFailure as exc:
            raise spf.TempError(f"DNS: {exc.text}") from None
        if rrset is None:
            return []
        return [((name, qtype), convert(rdata)) for rdata in rrset]


_LOOKUPS: contextvars.ContextVar[_Lookups | None] = contextvars.ContextVar("spf_lookups", default=None)


def _pyspf_dns_lookup(
    name: str, qtype: str, strict: object = True, timeout: object = None
) -> list[tuple[tuple[str, str], Any]]:
    """pyspf's `DNSLookup` hook: a list of ((name, type), value); the resolver and the deadline are the
    running check's. pyspf's `strict` and per-lookup `timeout` are not used: the resolver's settings and
    the check's deadline decide."""
    lookups = _LOOKUPS.get()
    if lookups is None:
        raise spf.TempError("DNS lookup outside an SPF check (pyspf asks DNS only through SpfChecker)")
    return lookups.lookup(name, qtype)


spf.DNSLookup = _pyspf_dns_lookup


def _dns_name(name: str) -> dns.name.Name:
    """The absolute name pyspf means, label by label: no escapes are interpreted, no IDNA conversion (every
    name pyspf asks about is ASCII unless a macro put a non-ASCII local part in it; RFC 8616 section 4)."""
    if not name.isascii():
        raise ValueError("not an ASCII name")
    return dns.name.Name([*(label.encode("ascii") for label in name.rstrip(".").split(".")), b""])


def _name_text(name: dns.name.Name) -> str:
    """A name in the text pyspf compares and asks again with: its labels as they are, no escapes."""
    if name == dns.name.root:
        return ""  # the null MX (RFC 7505): no exchange to look up
    try:
        return ".".join(label.decode("ascii") for label in name.relativize(dns.name.root).labels)
    except UnicodeDecodeError:
        return name.to_text(omit_final_dot=True)


def _mx(rdata: Any) -> tuple[int, str]:
    return (rdata.preference, _name_text(rdata.exchange))


# pyspf's value for a record, by type (the shapes of spf.DNSLookup_dnspython)
_VALUES: dict[str, Callable[[Any], Any]] = {
    "A": lambda rdata: rdata.address,
    "AAAA": lambda rdata: rdata.address,
    "MX": _mx,
    "PTR": lambda rdata: _name_text(rdata.target),
    "TXT": lambda rdata: tuple(rdata.strings),
}


# ---------------------------------------------------------------------------------------------------------
# the identities and the client address


def _domain_of(text: str) -> tuple[str | None, str]:
    """(the domain in lower-case A-labels, "") when `text` is one SPF can check (RFC 7208 section 4.3:
    a multi-label domain name, not malformed), else (None, why not)."""
    if not text:
        return None, "empty"
    if text.startswith("["):
        return None, "an address literal"
    try:
        ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        return None, "an address"
    try:
        domain = a_label(text).lower()
    except (BadDomainName, UnicodeError) as exc:
        return None, _printable(str(exc))
    labels = domain.split(".")
    if len(labels) < 2:
        return None, "not a fully qualified domain name"
    if not all(_LABEL.fullmatch(label) for label in labels):
        return None, "not made of letters, digits and hyphens"
    if labels[-1].isdigit():
        return None, "a numeric top-level label"
    return domain, ""


def _client_address(ip: str) -> str | None:
    """The address as pyspf takes it (an IPv4-mapped IPv6 address as IPv4, no zone index); None if `ip`
    is not an address."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        if address.scope_id is not None:
            return str(ipaddress.IPv6Address(int(address)))
    return str(address)


def _result(result: str, domain: str, explanation: str) -> SpfResult:
    """An SpfResult whose texts are safe for a log line and a header comment (see `_printable`)."""
    return SpfResult(result, _printable(domain), _printable(explanation))


def _printable(text: str, limit: int = EXPLANATION_LIMIT) -> str:
    """`text` as printable ASCII (anything else backslash-escaped), at most `limit` characters."""
    safe = "".join(c if " " <= c <= "~" else c.encode("unicode_escape").decode("ascii") for c in text)
    return safe if len(safe) <= limit else safe[: limit - 3] + "..."
