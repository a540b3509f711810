"""Where to deliver mail for a domain: MX lookup, implicit MX, null MX, address literals (outbound, issue 5).

What it implements
- RFC 5321 section 5.1 (locating the target host): MX records ordered by preference, equal preferences in
  random order ("SHOULD be randomized to spread the load"); each MX host's A and AAAA records; no MX records
  at all (NODATA) -> the domain itself is the implicit MX with preference 0; MX targets without any address
  are skipped. If this host is one of the MX hosts (`local_names`), MX records with a preference equal to or
  worse than its own are dropped (section 5.1, "MUST NOT" deliver to itself or a less preferred host).
- RFC 7505 null MX: a single MX record with the root as target ("0 .") means the domain accepts no mail:
  `PermanentDnsError` 556 5.1.10. A "." among other MX records is ignored (it has no address anyway).
- RFC 5321 section 4.1.3 address literals: "[192.0.2.1]" and "[IPv6:2001:db8::1]" go straight to that
  address, without DNS.
- RFC 6531 (SMTPUTF8) / RFC 5890 (IDNA): a domain with U-labels is looked up by its A-labels (`to_a_label`).

Errors (the status codes a bounce or delay notice should carry, RFC 3463)
- NXDOMAIN of the domain: `PermanentDnsError` 550 5.1.2. The domain exists but has neither MX nor A/AAAA
  records: 550 5.1.2. MX records whose targets all have no address (NXDOMAIN or NODATA): 550 5.4.4. Mail
  would loop back to this host: 550 5.4.6. Bad domain syntax: 501 5.1.2.
- SERVFAIL, REFUSED, timeouts, no reachable nameserver, any other DNS failure: `TemporaryDnsError`
  451 4.4.3. When some MX hosts resolve and others fail temporarily, the resolving ones are returned: the
  others are skipped for this attempt (delivery to a less preferred MX is allowed by section 5.1).

DNSSEC (for DANE, RFC 7672 section 2.2; only with a resolver made with `dnssec=True`, see net/dns.py)
- `Host.secure` says whether DANE may apply to the host: the MX RRset was validated (AD) and so were all of
  this host's address lookups that answered (A and AAAA, NODATA included) (section 2.2.1). For the implicit
  MX (no MX records) the denial of the MX records and the domain's own address records must be validated
  (section 2.2.2, non-MX destinations). A CNAME on the way (the domain itself for the MX lookup, or an MX
  target, which RFC 5321 forbids but which happens) is covered: the resolver sets AD only when every RRset of
  the answer, each CNAME included, validated. A chain that is partly insecure is insecure as a whole: DANE
  then does not apply to that host (telling the links apart would take a lookup per CNAME; implementations
  that do so may still find TLSA records at a secure original name).
- `Host.expanded_name` is the CNAME-expanded host name (the owner of the address records) when it differs
  from `name`: the first candidate TLSA base domain (RFC 7672 section 2.2.2, mailauth/dane.py).
- Bogus answers come back from a validating resolver as SERVFAIL: a temporary failure, handled as above (a
  host whose addresses cannot be had now is skipped for this attempt; a bogus MX RRset delays the domain).
  Address literals are never secure: there is no name to look TLSA records up for.

Invariants and choices
- At most `max_hosts` MX records are followed (default 10), after ordering: a hostile or broken zone cannot
  make one delivery attempt resolve and try hundreds of hosts.
- Address order inside a host follows `ip_versions` (default (4, 6): all IPv4 addresses, then all IPv6). IPv4
  first because a small server's IPv6 address rarely has the reverse DNS that large receivers demand (they
  answer 5xx, which is final, where an unreachable IPv6 network would just fall through to IPv4). `(6, 4)`
  prefers IPv6; `(4,)` never asks for AAAA. Within a family the DNS order is kept.
- DNS itself is asked through `net.dns.DnsResolver` (the resolver settings, NXDOMAIN / NODATA / temporary
  failure, no cache of its own: the system's resolver caches). A queue runner that delivers many messages to
  one domain groups them per domain and resolves once per attempt.
- IDNA: `net.dns.a_label`; a domain that cannot be converted faithfully is refused (5.1.2).
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import dns.name
import dns.rdatatype
import dns.rrset

from postoffice.net.dns import BadDomainName, DnsResolver, DnsTemporaryFailure, NoSuchDomain, a_label

__all__ = [
    "DnsError",
    "Host",
    "MxResolver",
    "PermanentDnsError",
    "TemporaryDnsError",
    "to_a_label",
]


@dataclass
class Host:
    """One place to deliver to. `name` is the MX target (A-labels, no trailing dot), the domain itself for an
    implicit MX, or the address literal as written ("[192.0.2.1]"); it is the remote MTA's name for DSNs and
    the TLS server name. `addresses` are IP addresses in the order to try. `secure`: DNSSEC validated the
    path to this host (MX RRset and address records), so DANE applies to it (see the module docstring);
    `expanded_name`: the CNAME-expanded host name, "" when `name` has no CNAME."""

    name: str
    preference: int
    addresses: list[str]
    secure: bool = False
    expanded_name: str = ""


class DnsError(Exception):
    """Resolution failed; `code`/`enhanced`/`text` are what the sender's notice should say."""

    def __init__(self, code: int, enhanced: str, text: str) -> None:
        super().__init__(f"{code} {enhanced} {text}")
        self.code = code
        self.enhanced = enhanced
        self.text = text


class PermanentDnsError(DnsError):
    """The domain cannot receive mail (NXDOMAIN, null MX, no address anywhere): bounce."""


class TemporaryDnsError(DnsError):
    """DNS did not answer usefully now (SERVFAIL, timeout, no nameserver): try again later."""


class _Answer(NamedTuple):
    """One lookup's records as (preference or 0, text without trailing dot; "" for the root), None for
    NODATA; whether it was DNSSEC-validated; the owner of the records (after CNAMEs), None for NODATA."""

    records: list[tuple[int, str]] | None
    secure: bool
    owner: dns.name.Name | None


class _Addresses(NamedTuple):
    """A host's addresses; the text of a temporary failure of one of its lookups ("" when none failed);
    whether every lookup that answered was validated; the CNAME-expanded name ("" when none)."""

    addresses: list[str]
    failed: str
    secure: bool
    expanded_name: str


def _temporary(text: str) -> TemporaryDnsError:
    return TemporaryDnsError(451, "4.4.3", text)


def _nxdomain(domain: str) -> PermanentDnsError:
    return PermanentDnsError(550, "5.1.2", f"domain {domain} does not exist (NXDOMAIN)")


def to_a_label(domain: str) -> str:
    """The domain in ASCII (A-labels), without a trailing dot. Raises PermanentDnsError on bad syntax."""
    try:
        return a_label(domain)
    except BadDomainName as exc:
        raise PermanentDnsError(501, "5.1.2", str(exc)) from None


def _address_literal(domain: str) -> Host:
    """RFC 5321 section 4.1.3: "[IPv4]" or "[IPv6:addr]"."""
    inner = domain[1:-1]
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    try:
        if inner[:5].lower() == "ipv6:":
            address = ipaddress.IPv6Address(inner[5:])
        elif ":" in inner:
            raise ValueError("general address literal")
        else:
            address = ipaddress.IPv4Address(inner)
    except ValueError:
        raise PermanentDnsError(501, "5.1.2", f"unusable address literal {domain}") from None
    return Host(domain, 0, [str(address)])


class MxResolver:
    """Resolves a domain to the hosts to deliver to, in order (see the module docstring).

    `nameservers` (IP addresses) and `port` replace the system's resolver configuration (tests, or a chosen
    recursive resolver); without them /etc/resolv.conf is read. `timeout` bounds one query to one server,
    `lifetime` one whole lookup (all retries and servers). `local_names` are this host's own names, for the
    MX loop rule. `rng` orders equal preferences (tests pass a seeded one). `resolver`, when given, is used
    instead of one made from the first four settings (one resolver shared by every DNS user)."""

    def __init__(
        self,
        nameservers: Sequence[str] | None = None,
        *,
        port: int = 53,
        timeout: float = 3.0,
        lifetime: float = 10.0,
        ip_versions: Sequence[int] = (4, 6),
        max_hosts: int = 10,
        local_names: Iterable[str] = (),
        rng: random.Random | None = None,
        resolver: DnsResolver | None = None,
    ) -> None:
        if not ip_versions or any(v not in (4, 6) for v in ip_versions):
            raise ValueError("ip_versions must name 4 and/or 6")
        self._resolver = resolver or DnsResolver(nameservers, port=port, timeout=timeout, lifetime=lifetime)
        self.ip_versions = tuple(ip_versions)
        self.max_hosts = max_hosts
        self.local_names = {to_a_label(n).lower() for n in local_names}
        self._rng = rng or random.SystemRandom()

    async def destinations(self, domain: str) -> list[Host]:
        """The hosts to try for mail to `domain`, most preferred first; never empty (errors raise)."""
        if domain.startswith("[") and domain.endswith("]"):
            return [_address_literal(domain)]
        ascii_domain = to_a_label(domain)
        name = dns.name.from_text(ascii_domain)
        try:
            mx_answer = await self._query(name, "MX")
        except NoSuchDomain:
            raise _nxdomain(ascii_domain) from None
        mx_records = mx_answer.records

        if mx_records is None:  # NODATA: implicit MX, RFC 5321 section 5.1
            try:
                found = await self._addresses(name)
            except NoSuchDomain:
                raise _nxdomain(ascii_domain) from None
            if found.addresses:
                # RFC 7672 section 2.2.2: the validated denial of MX and the validated address records
                secure = mx_answer.secure and found.secure
                return [Host(ascii_domain, 0, found.addresses, secure, found.expanded_name)]
            if found.failed:
                raise _temporary(f"address lookup for {ascii_domain} failed: {found.failed}")
            raise PermanentDnsError(550, "5.1.2", f"domain {ascii_domain} has no MX, A or AAAA records")

        # RFC 7505 section 3: exactly one MX, target "." -> no mail service at all.
        if len(mx_records) == 1 and mx_records[0][1] == "":
            raise PermanentDnsError(556, "5.1.10", f"domain {ascii_domain} does not accept mail (null MX)")
        records = [(pref, target) for pref, target in mx_records if target != ""]
        records = self._order(records)
        records = self._drop_local(ascii_domain, records)[: self.max_hosts]

        results = await asyncio.gather(
            *(self._host(pref, target, mx_answer.secure) for pref, target in records)
        )
        hosts = [host for host, _ in results if host.addresses]
        if hosts:
            return hosts
        failures = [failure for _, failure in results if failure]
        if failures:
            raise _temporary(f"MX hosts of {ascii_domain} could not be resolved: {'; '.join(failures)}")
        names = ", ".join(target for _, target in records)
        raise PermanentDnsError(550, "5.4.4", f"no MX host of {ascii_domain} has an address ({names})")

    def _order(self, records: list[tuple[int, str]]) -> list[tuple[int, str]]:
        by_preference: dict[int, list[tuple[int, str]]] = {}
        for record in records:
            by_preference.setdefault(record[0], []).append(record)
        ordered: list[tuple[int, str]] = []
        for preference in sorted(by_preference):
            group = by_preference[preference]
            self._rng.shuffle(group)
            ordered += group
        return ordered

    def _drop_local(self, domain: str, records: list[tuple[int, str]]) -> list[tuple[int, str]]:
        """RFC 5321 section 5.1: if we are an MX host, only strictly more preferred hosts may be used."""
        own = [pref for pref, target in records if target.lower() in self.local_names]
        if not own:
            return records
        kept = [(pref, target) for pref, target in records if pref < min(own)]
        if not kept:
            raise PermanentDnsError(550, "5.4.6", f"mail for {domain} loops back to myself (MX)")
        return kept

    async def _host(self, preference: int, target: str, mx_secure: bool) -> tuple[Host, str]:
        """An MX host and its addresses; the text of a temporary failure, "" if none."""
        try:
            found = await self._addresses(dns.name.from_text(target))
        except NoSuchDomain:
            return Host(target, preference, []), ""
        # RFC 7672 section 2.2.1: DANE applies only through a validated MX RRset and validated addresses
        secure = mx_secure and found.secure
        return Host(target, preference, found.addresses, secure, found.expanded_name), found.failed

    async def _addresses(self, name: dns.name.Name) -> _Addresses:
        """A and AAAA (per ip_versions, in that order): the addresses, the text of a temporary failure of
        one of the lookups ("" when none failed), whether every lookup that answered was validated (False
        when none answered), and the CNAME-expanded name. NXDOMAIN is raised."""
        kinds = {4: "A", 6: "AAAA"}
        results = await asyncio.gather(
            *(self._query(name, kinds[v]) for v in self.ip_versions), return_exceptions=True
        )
        addresses: list[str] = []
        failures: list[str] = []
        nxdomain: BaseException | None = None
        answered: list[_Answer] = []
        for result in results:
            if isinstance(result, NoSuchDomain):
                nxdomain = result
            elif isinstance(result, TemporaryDnsError):
                failures.append(result.text)
            elif isinstance(result, BaseException):
                raise result
            else:
                answered.append(result)
                if result.records is not None:
                    addresses += [text for _, text in result.records]
        if nxdomain is not None and not addresses and not failures:
            raise nxdomain
        secure = bool(answered) and all(answer.secure for answer in answered)
        owners = [answer.owner for answer in answered if answer.owner is not None and answer.owner != name]
        expanded = owners[0].to_text(omit_final_dot=True) if owners else ""
        return _Addresses(addresses, "; ".join(failures), secure, expanded)

    async def _query(self, name: dns.name.Name, rdtype: str) -> _Answer:
        """One lookup (see `_Answer`). NXDOMAIN is raised as NoSuchDomain; every other failure as
        TemporaryDnsError. The DNSSEC verdict is asked for only when the resolver asks DNSSEC questions."""
        try:
            if self._resolver.dnssec:
                rrset, secure = await self._resolver.query_checked(name, rdtype)
            else:
                rrset, secure = await self._resolver.query(name, rdtype), False
        except DnsTemporaryFailure as exc:
            raise _temporary(exc.text) from None
        if rrset is None:
            return _Answer(None, secure, None)
        return _Answer(_records(rrset), secure, rrset.name)


def _records(rrset: dns.rrset.RRset) -> list[tuple[int, str]]:
    """MX records as (preference, target; "" for the root), address records as (0, address)."""
    records: list[tuple[int, str]] = []
    for rdata in rrset:
        if rrset.rdtype == dns.rdatatype.MX:
            exchange = rdata.exchange
            target = "" if exchange == dns.name.root else exchange.to_text(omit_final_dot=True)
            records.append((int(rdata.preference), target))
        else:
            records.append((0, str(rdata.address)))
    return records
