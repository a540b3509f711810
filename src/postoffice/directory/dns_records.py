"""The DNS records a mail domain publishes for this server, and a check of what DNS says now (issue 12,
docs/decisions/0051). `postoffice dns records|check DOMAIN` and the admin page /admin/dns are two faces of it.

What is published (`expected_records`), all pointing at `[server] hostname`:
- MX (RFC 5321 section 5.1): `DOMAIN MX 10 HOSTNAME`.
- SPF (RFC 7208): one TXT `v=spf1 mx ~all` at the domain (with `a:SMARTHOST`, or `ip4:`/`ip6:` for an
  address, when `[queue] smarthost` sends the mail). `~all` rather than `-all`: a receiver that rejects on an
  SPF fail before DMARC runs would refuse mail that DKIM could still have saved (RFC 7489 section 10.1).
- DMARC (RFC 7489/9989): one TXT `v=DMARC1; p=none; rua=mailto:postmaster@DOMAIN` at `_dmarc.DOMAIN`. `p=none`
  still now that mail is DKIM-signed (docs/decisions/0056): a stricter policy is the owner's to choose once
  the DKIM records check right and reports show the domain's mail passing (DMARC reports: issue 13).
- SRV for mail programs (RFC 6186; `_submissions._tcp` from RFC 8314 section 5.1): `_submissions`,
  `_submission`, `_imaps`, `_imap`, `_pop3s`, `_pop3` under `._tcp.DOMAIN`, from `net.endpoints` (the list
  autoconfig advertises: enabled listeners with TLS, at their bound ports when the server runs). Priorities:
  implicit TLS before STARTTLS (RFC 8314 section 3), IMAP before POP3 (RFC 6186 section 3.4: priorities
  across the services say which the domain prefers). A service that does not run here gets `0 0 0 .`: a
  target of "." means "decidedly not available" (RFC 2782), so clients do not guess.
- When a web listener runs (autoconfig and Autodiscover are answered there, docs/decisions/0049):
  `autoconfig.DOMAIN` and `autodiscover.DOMAIN` as CNAMEs of the host name, and, with HTTPS,
  `_autodiscover._tcp.DOMAIN SRV 0 1 PORT HOSTNAME` (what Outlook asks when the names fail).
- DKIM (RFC 6376; docs/decisions/0056): one TXT record `SELECTOR._domainkey.DOMAIN` per key the domain
  publishes (pending, active and retiring: `mailauth.dkim_keys`), `v=DKIM1; k=rsa|ed25519; p=KEY`; a value
  longer than 255 octets is written as several strings (RFC 1035 section 3.3), which receivers join.
- MTA-STS (RFC 8461) and TLS reporting (RFC 8460), when `[mta_sts] mode` is not "off" and an HTTPS
  listener runs (it serves the policy: `web.mtasts`): `_mta-sts.DOMAIN TXT "v=STSv1; id=ID"`, the id derived
  from the policy's text (`mailauth.mtasts.policy_id`, so it changes exactly when the policy does);
  `mta-sts.DOMAIN` as a CNAME of the host name, like autoconfig (the certificate must name it); and
  `_smtp._tls.DOMAIN TXT "v=TLSRPTv1; rua=mailto:postmaster@DOMAIN"`, the mailbox DMARC reports go to.
- `not_yet` lists the records of features not built yet, shown as such and never checked: none now.

What "right" means (`check_records`; each record is "ok", "missing", "wrong" with what was found, or "error"
when DNS gave no answer now: SERVFAIL, timeout, refused):
- MX: one of the MX targets is the host name. None at all (NODATA or NXDOMAIN) is missing; a null MX (RFC
  7505) or only other hosts is wrong.
- SPF: exactly one TXT record that starts with `v=spf1` (RFC 7208 section 4.5; several is wrong: section 3.2,
  a permanent error for receivers), and it can authorise someone: a mechanism mx, a, ip4, ip6, include,
  exists or ptr that is not `-`, `~` or `?` qualified, or a `redirect=`; `+all` (everyone) is wrong. Whether
  it authorises this server's own addresses needs an SPF evaluator (issue 13) and is not judged here.
- DMARC: exactly one TXT record at `_dmarc.DOMAIN` whose first tag is `v=DMARC1` (others are not DMARC
  records, RFC 7489 section 6.6.3; several is wrong: receivers then apply none), with `p=` none, quarantine
  or reject.
- DKIM: exactly one key record at the name (a TXT record without v= or with v=DKIM1 first, RFC 6376 section
  3.6.1; several: receivers may use any, section 3.6.2.2), of our key's type (k=, default rsa), whose p= is
  our public key; an empty p= (a revoked key) or another key is wrong.
- SRV: a record with our target and port (priority and weight are the domain's choice). For a service not
  offered: only records with target "."; one pointing at a host is wrong.
- MTA-STS: exactly one TXT record at `_mta-sts.DOMAIN` beginning with `v=STSv1` (several: senders use none,
  RFC 8461 section 3.1), valid (`mailauth.mtasts.parse_record`), with the id of the policy served now (an
  old id: senders that have the old policy keep it). TLS reporting: exactly one record beginning with
  `v=TLSRPTv1` (RFC 8460 section 3), equal to ours but for white space around the `;`.
- autoconfig/autodiscover/mta-sts names: they resolve (A/AAAA, through a CNAME if there is one). A CNAME to
  the host name is right; otherwise their addresses must be among the host name's when the host name
  resolves (a client must reach this server there), and any address will do when it does not.

Implementation notes
- Every lookup goes through `net.dns.DnsResolver` with the server's resolver settings (`[queue] nameservers`
  and `dns_port`, as outbound delivery uses). One check asks each (name, type) once and all at once, so a
  broken resolver costs one lifetime, not one per record.
- Texts for people (`Text`) are English message ids with named values; the command line prints them as they
  are, the admin page through gettext (the zh_CN catalogue has them).
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import dns.name
import dns.rrset

from postoffice.directory.address import parse_domain
from postoffice.mailauth.dkim_keys import published, record_value, removable_at, txt_strings
from postoffice.mailauth.mtasts import StsError, parse_record, policy_id, served_policy
from postoffice.net.dns import DnsResolver, DnsTemporaryFailure, NoSuchDomain, a_label
from postoffice.net.endpoints import endpoints
from postoffice.store import NotFound

if TYPE_CHECKING:
    from postoffice.config import Config
    from postoffice.store import DkimKey, MailStore

Status = Literal["ok", "missing", "wrong", "error"]
Kind = Literal["mx", "spf", "dmarc", "dkim", "srv", "web-name", "mta-sts", "tlsrpt"]

#: SRV services (RFC 6186, RFC 8314 section 5.1) by (listener protocol, TLS mode): label, priority, name.
SRV_SERVICES: dict[tuple[str, str], tuple[str, int, str]] = {
    ("submission", "implicit"): ("_submissions", 0, "SMTP"),
    ("submission", "starttls"): ("_submission", 10, "SMTP"),
    ("imap", "implicit"): ("_imaps", 0, "IMAP"),
    ("imap", "starttls"): ("_imap", 10, "IMAP"),
    ("pop3", "implicit"): ("_pop3s", 20, "POP3"),
    ("pop3", "starttls"): ("_pop3", 30, "POP3"),
}
#: How many CNAMEs are followed from an autoconfig/autodiscover name before giving up.
MAX_CNAME_CHAIN = 8


@dataclass(frozen=True)
class Text:
    """A sentence for people: an English message id (the catalogue's) and the values it names."""

    message: str
    values: tuple[tuple[str, str], ...] = ()

    def render(self, gettext: Callable[[str], str] | None = None) -> str:
        text = gettext(self.message) if gettext is not None else self.message
        return text % dict(self.values) if self.values else text

    def __str__(self) -> str:
        return self.render()


def _(message: str, **values: object) -> Text:
    """A Text (the name marks the message for the catalogue, as gettext's `_` would)."""
    return Text(message, tuple((key, str(value)) for key, value in values.items()))


@dataclass(frozen=True)
class DnsRecord:
    """One record to publish: absolute name (A-labels, final dot), type, value in zone-file form (TXT without
    its quotes), why it is there, and which rule checks it."""

    name: str
    type: str
    value: str
    purpose: Text
    kind: Kind

    @property
    def published(self) -> str:
        """The value as a zone file writes it (TXT quoted)."""
        if self.type != "TXT":
            return self.value
        return " ".join(
            '"' + part.replace("\\", "\\\\").replace('"', '\\"') + '"' for part in txt_strings(self.value)
        )

    def zone_line(self, width: int = 0) -> str:
        return f"{self.name:<{width}} IN {self.type:<5} {self.published}"


@dataclass(frozen=True)
class NotYet:
    """A record the domain will publish once the feature behind it exists."""

    what: str
    name: str
    purpose: Text
    issue: int = 13


@dataclass(frozen=True)
class RecordCheck:
    """What DNS says now about one expected record: the status, what was found at the name (zone-file form;
    a TXT record as its text; addresses for the autoconfig/autodiscover names), and why it is wrong or what
    failed."""

    record: DnsRecord
    status: Status
    found: tuple[str, ...] = ()
    detail: Text | None = None


# -- what to publish ---------------------------------------------------------------------------------------


def server_resolver(config: Config, *, cache_size: int = 0) -> DnsResolver:
    """A resolver with the server's settings (the ones outbound delivery uses), with a TTL cache of
    `cache_size` answers (0: none)."""
    return DnsResolver(
        list(config.queue.nameservers) or None, port=config.queue.dns_port, cache_size=cache_size
    )


async def served_domain(store: MailStore, name: str) -> str:
    """The canonical form of `name` when this server serves it; AddressError if it is not a domain name,
    NotFound if it is not one of ours."""
    domain = parse_domain(name)
    if not any(d.name == domain for d in await store.list_domains()):
        raise NotFound(f"{domain} is not a domain served here")
    return domain


def _name(domain: str) -> str:
    """An absolute name as zone files write it: lowercase A-labels and the final dot."""
    return a_label(domain).lower() + "."


def expected_records(
    config: Config,
    domain: str,
    bound: Mapping[str, tuple[str, int]] | None = None,
    dkim: Sequence[DkimKey] = (),
) -> list[DnsRecord]:
    """The records `domain` publishes for this server (see the module docstring). `bound`: the ports the
    running listeners have (`net.bound`); without it, the configured ones. `dkim`: the domain's DKIM keys
    (`MailStore.dkim_keys`; those not published are left out)."""
    zone = _name(domain)
    host = _name(config.server.hostname)
    ports = bound or {}
    records = [
        DnsRecord(
            zone,
            "MX",
            f"10 {host}",
            _("Mail for the domain is delivered to this server (RFC 5321 section 5.1)."),
            "mx",
        )
    ]
    smarthost = config.queue.smarthost.strip().rstrip(".")
    if smarthost:
        spf = f"v=spf1 mx {_spf_host(smarthost)} ~all"
        spf_purpose = _(
            "Which hosts may send mail from the domain (RFC 7208): this server and the smarthost %(host)s.",
            host=smarthost,
        )
    else:
        spf = "v=spf1 mx ~all"
        spf_purpose = _("Which hosts may send mail from the domain (RFC 7208): this server, its MX host.")
    records.append(DnsRecord(zone, "TXT", spf, spf_purpose, "spf"))
    records.append(
        DnsRecord(
            "_dmarc." + zone,
            "TXT",
            f"v=DMARC1; p=none; rua=mailto:postmaster@{zone.rstrip('.')}",
            _("What receivers do with mail that fails SPF, and where reports go (RFC 7489)."),
            "dmarc",
        )
    )
    records += dkim_records(config, [key for key in dkim if key.domain == domain])
    offered: dict[str, list[DnsRecord]] = {}
    for point in endpoints(config, ports):
        label, priority, what = SRV_SERVICES[(point.protocol, point.tls)]
        purpose = (
            _("Mail programs find %(protocol)s with implicit TLS here (RFC 6186, RFC 8314).", protocol=what)
            if point.tls == "implicit"
            else _("Mail programs find %(protocol)s with STARTTLS here (RFC 6186).", protocol=what)
        )
        offered.setdefault(label, []).append(
            DnsRecord(f"{label}._tcp.{zone}", "SRV", f"{priority} 1 {point.port} {host}", purpose, "srv")
        )
    for (_protocol, tls), (label, _priority, what) in SRV_SERVICES.items():
        if label in offered:
            records.extend(offered[label])
            continue
        purpose = (
            _("Says that %(protocol)s with implicit TLS is not offered (RFC 2782, RFC 6186).", protocol=what)
            if tls == "implicit"
            else _("Says that %(protocol)s with STARTTLS is not offered (RFC 2782, RFC 6186).", protocol=what)
        )
        records.append(DnsRecord(f"{label}._tcp.{zone}", "SRV", "0 0 0 .", purpose, "srv"))
    web = [lst for lst in config.listeners.values() if lst.protocol == "http" and lst.status == "ready"]
    if web:
        for name, purpose in (
            (
                "autoconfig." + zone,
                _("Thunderbird and other mail programs fetch their settings from this name."),
            ),
            (
                "autodiscover." + zone,
                _("Outlook and many phones post their Autodiscover request to this name."),
            ),
        ):
            if name != host:  # a CNAME cannot sit at the host name itself
                records.append(DnsRecord(name, "CNAME", host, purpose, "web-name"))
        for point in endpoints(config, ports, ("http",)):
            records.append(
                DnsRecord(
                    "_autodiscover._tcp." + zone,
                    "SRV",
                    f"0 1 {point.port} {host}",
                    _("Outlook finds the Autodiscover server through this record."),
                    "srv",
                )
            )
            break  # one HTTPS listener is enough to be found
    records += mta_sts_records(config, zone, host)
    return records


def mta_sts_records(config: Config, zone: str, host: str) -> list[DnsRecord]:
    """MTA-STS and TLS reporting (the module docstring): none when the policy is off or not served."""
    text = served_policy(config.mta_sts, config.server.hostname)
    https = [
        lst
        for lst in config.listeners.values()
        if lst.protocol == "http" and lst.tls == "implicit" and lst.status == "ready"
    ]
    if text is None or not https:
        return []
    domain = zone.rstrip(".")
    records = [
        DnsRecord(
            "_mta-sts." + zone,
            "TXT",
            f"v=STSv1; id={policy_id(text)}",
            _(
                "MTA-STS (RFC 8461), mode %(mode)s; the id changes whenever the policy does.",
                mode=config.mta_sts.mode,
            ),
            "mta-sts",
        )
    ]
    if "mta-sts." + zone != host:  # a CNAME cannot sit at the host name itself
        records.append(
            DnsRecord(
                "mta-sts." + zone,
                "CNAME",
                host,
                _("Senders fetch the MTA-STS policy over HTTPS here: the certificate must name this host."),
                "web-name",
            )
        )
    records.append(
        DnsRecord(
            "_smtp._tls." + zone,
            "TXT",
            f"v=TLSRPTv1; rua=mailto:postmaster@{domain}",
            _("Where senders report on TLS to the domain (RFC 8460): postmaster@%(domain)s.", domain=domain),
            "tlsrpt",
        )
    )
    return records


_ALGORITHM_NAMES = {"rsa": "RSA", "ed25519": "Ed25519"}


def dkim_records(config: Config, keys: Sequence[DkimKey]) -> list[DnsRecord]:
    """The TXT records of the keys that are published (pending, active, retiring), in the order given."""
    records = []
    for key in published(keys):
        algorithm = _ALGORITHM_NAMES.get(key.algorithm, key.algorithm)
        if key.state == "active":
            purpose = _(
                "DKIM: the %(algorithm)s key that signs the domain's mail now (RFC 6376).",
                algorithm=algorithm,
            )
        elif key.state == "pending":
            purpose = _(
                "DKIM: a new %(algorithm)s key, not signing until postoffice dkim activate %(domain)s.",
                algorithm=algorithm,
                domain=key.domain,
            )
        else:
            until = time.strftime("%Y-%m-%d", time.gmtime(removable_at(key, config.queue.max_age)))
            purpose = _(
                "DKIM: a retired %(algorithm)s key; keep it for mail still on its way until %(date)s.",
                algorithm=algorithm,
                date=until,
            )
        name = a_label(key.selector) + "._domainkey." + _name(key.domain)
        records.append(DnsRecord(name, "TXT", record_value(key), purpose, "dkim"))
    return records


def _spf_host(host: str) -> str:
    """The SPF mechanism that authorises one host: ip4:/ip6: for an address, a: for a name."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return f"a:{a_label(host)}"
    return f"ip{address.version}:{address}"


def not_yet(domain: str) -> list[NotYet]:
    """The records of features not built yet: shown as such, never checked. None now (MTA-STS, the last
    one, is published by `expected_records`)."""
    return []


def zone_lines(records: Sequence[DnsRecord], pending: Sequence[NotYet] = ()) -> list[str]:
    """The records as zone-file lines, each after a comment saying why."""
    lines: list[str] = []
    width = max((len(record.name) for record in records), default=0)
    for record in records:
        lines.append(f"; {record.purpose}")
        lines.append(record.zone_line(width))
    lines += [f"; {item.what} ({item.name}): not yet: issue {item.issue}. {item.purpose}" for item in pending]
    return lines


# -- the check ---------------------------------------------------------------------------------------------


class _Lookups:
    """Each (name, type) asked once per check; the answers shared by every record that needs them."""

    def __init__(self, resolver: DnsResolver) -> None:
        self.resolver = resolver
        self._tasks: dict[tuple[str, str], asyncio.Task[dns.rrset.RRset | None]] = {}

    async def _ask(self, name: str, rdtype: str) -> dns.rrset.RRset | None:
        try:
            return await self.resolver.query(name, rdtype)
        except NoSuchDomain:
            return None  # for a record to publish, NXDOMAIN and NODATA are both "not there"

    async def get(self, name: str, rdtype: str) -> dns.rrset.RRset | None:
        key = (name.lower(), rdtype)
        if key not in self._tasks:
            self._tasks[key] = asyncio.ensure_future(self._ask(name, rdtype))
        return await self._tasks[key]

    def cancel(self) -> None:
        for task in self._tasks.values():
            task.cancel()

    async def addresses(self, name: str) -> tuple[str, list[str]]:
        """The name at the end of its CNAME chain, and its IPv4 and IPv6 addresses."""
        for _hop in range(MAX_CNAME_CHAIN):
            cname = await self.get(name, "CNAME")
            if not cname:
                break
            target = next(iter(cname))
            name = target.target.to_text()
        found: list[str] = []
        for rdtype in ("A", "AAAA"):
            answer = await self.get(name, rdtype)
            found += [str(ipaddress.ip_address(r.to_text())) for r in answer or ()]
        return name, found


def _host(name: str | dns.name.Name) -> str:
    """A host name to compare: lowercase A-labels without the final dot ("." for the root)."""
    text = name.to_text() if isinstance(name, dns.name.Name) else name
    return text.rstrip(".").lower() or "."


def _txt(rrset: dns.rrset.RRset | None) -> list[str]:
    """Each TXT record as one string (its character-strings joined, RFC 7208 section 3.3)."""
    return [b"".join(rdata.strings).decode("utf-8", "replace") for rdata in rrset or ()]


def _check_mx(record: DnsRecord, rrset: dns.rrset.RRset | None) -> RecordCheck:
    host = _host(record.value.split()[1])
    if not rrset:
        return RecordCheck(record, "missing")
    found = tuple(r.to_text() for r in rrset)
    targets = [_host(rdata.exchange) for rdata in rrset]
    if host in targets:
        return RecordCheck(record, "ok", found)
    if targets == ["."]:
        return RecordCheck(
            record, "wrong", found, _("A null MX (RFC 7505): the domain says it takes no mail.")
        )
    return RecordCheck(record, "wrong", found, _("No MX record names %(host)s.", host=host))


#: SPF mechanisms that can give "pass" (RFC 7208 section 5); `all` is judged on its own.
_SPF_PASSING = frozenset({"mx", "a", "ip4", "ip6", "include", "exists", "ptr"})


def _check_spf(record: DnsRecord, rrset: dns.rrset.RRset | None) -> RecordCheck:
    spf = [t for t in _txt(rrset) if t.lower() == "v=spf1" or t.lower().startswith("v=spf1 ")]
    found = tuple(spf)
    if not spf:
        return RecordCheck(record, "missing")
    if len(spf) > 1:
        return RecordCheck(
            record,
            "wrong",
            found,
            _("Several SPF records: receivers treat that as a permanent error (RFC 7208 section 3.2)."),
        )
    passing = False
    for term in spf[0].split()[1:]:
        term = term.lower()
        if term.startswith("redirect="):
            passing = True
            continue
        qualifier = term[0] if term[:1] in ("+", "-", "~", "?") else "+"
        mechanism = term.lstrip("+-~?").split(":", 1)[0].split("/", 1)[0]
        if mechanism == "all" and qualifier == "+":
            return RecordCheck(record, "wrong", found, _("The SPF record lets every host send (+all)."))
        if mechanism in _SPF_PASSING and qualifier == "+":
            passing = True
    if not passing:
        return RecordCheck(
            record,
            "wrong",
            found,
            _("The SPF record lets no host send: it needs mx, a, ip4, ip6 or include."),
        )
    return RecordCheck(record, "ok", found)


def _check_dmarc(record: DnsRecord, rrset: dns.rrset.RRset | None) -> RecordCheck:
    dmarc: list[tuple[str, dict[str, str]]] = []
    for text in _txt(rrset):
        tags = [part.strip().partition("=") for part in text.split(";") if part.strip()]
        if tags and tags[0][0].strip() == "v" and tags[0][2].strip() == "DMARC1":
            dmarc.append((text, {k.strip().lower(): v.strip() for k, _eq, v in tags}))
    found = tuple(text for text, _tags in dmarc)
    if not dmarc:
        return RecordCheck(record, "missing")
    if len(dmarc) > 1:
        return RecordCheck(
            record,
            "wrong",
            found,
            _("Several DMARC records: receivers apply none of them (RFC 7489 section 6.6.3)."),
        )
    if dmarc[0][1].get("p", "").lower() not in ("none", "quarantine", "reject"):
        return RecordCheck(
            record, "wrong", found, _("The DMARC record has no p= tag of none, quarantine or reject.")
        )
    return RecordCheck(record, "ok", found)


def _dkim_tags(text: str) -> dict[str, str] | None:
    """A DKIM key record's tags (RFC 6376 section 3.6.1, white space removed from values), None when the
    text is not one (no tag=value list, or a v= other than DKIM1 first)."""
    tags: dict[str, str] = {}
    for n, part in enumerate(p for p in text.split(";") if p.strip()):
        name, equals, value = part.partition("=")
        if not equals:
            return None
        name = name.strip()
        if name == "v" and (n or value.strip() != "DKIM1"):
            return None
        tags.setdefault(name, "".join(value.split()))
    return tags


def _check_dkim(record: DnsRecord, rrset: dns.rrset.RRset | None) -> RecordCheck:
    expected = _dkim_tags(record.value) or {}
    keys = [(text, tags) for text in _txt(rrset) if (tags := _dkim_tags(text)) is not None]
    found = tuple(text for text, _tags in keys)
    if not keys:
        return RecordCheck(record, "missing")
    if len(keys) > 1:
        return RecordCheck(
            record,
            "wrong",
            found,
            _("Several DKIM key records at this name: receivers may use any (RFC 6376 section 3.6.2.2)."),
        )
    tags = keys[0][1]
    if not tags.get("p"):
        return RecordCheck(record, "wrong", found, _("The published key is revoked (an empty p=)."))
    kind, ours = tags.get("k", "rsa").lower(), expected.get("k", "rsa")
    if kind != ours:
        return RecordCheck(
            record,
            "wrong",
            found,
            _("The record is for a key of type %(found)s, not %(ours)s.", found=kind, ours=ours),
        )
    if tags["p"] != expected.get("p"):
        return RecordCheck(record, "wrong", found, _("Another public key is published at this name."))
    return RecordCheck(record, "ok", found)


def _check_srv(record: DnsRecord, rrset: dns.rrset.RRset | None) -> RecordCheck:
    _priority, _weight, port, target = record.value.split()
    if not rrset:
        return RecordCheck(record, "missing")
    found = tuple(r.to_text() for r in rrset)
    there: list[tuple[str, int]] = [(_host(rdata.target), int(rdata.port)) for rdata in rrset]
    if target == ".":
        if all(t == "." for t, _p in there):
            return RecordCheck(record, "ok", found)
        return RecordCheck(
            record, "wrong", found, _("Points at a server, but this service does not run here.")
        )
    if (_host(target), int(port)) in there:
        return RecordCheck(record, "ok", found)
    if all(t == "." for t, _p in there):
        return RecordCheck(record, "wrong", found, _("Says the service is not offered, but it runs here."))
    return RecordCheck(
        record, "wrong", found, _("Expected %(target)s port %(port)s.", target=_host(target), port=port)
    )


async def _check_web_name(record: DnsRecord, lookups: _Lookups) -> RecordCheck:
    host = _host(record.value)
    end, addresses = await lookups.addresses(record.name)
    _host_end, host_addresses = await lookups.addresses(record.value)
    found = tuple(([f"CNAME {end}"] if _host(end) != _host(record.name) else []) + addresses)
    if _host(end) == host:
        return RecordCheck(record, "ok", found)
    if not addresses:
        if _host(end) != _host(record.name):
            return RecordCheck(
                record, "wrong", found, _("A CNAME to %(target)s, which has no address.", target=_host(end))
            )
        return RecordCheck(record, "missing", found)
    if host_addresses and not set(addresses) <= set(host_addresses):
        return RecordCheck(
            record,
            "wrong",
            found,
            _(
                "Not the addresses of %(host)s (%(addresses)s).",
                host=host,
                addresses=", ".join(host_addresses),
            ),
        )
    return RecordCheck(record, "ok", found)


def _starts_with_tag(text: str, version: str) -> bool:
    """Whether a TXT record begins with the tag `version` (followed by `;`, white space or nothing)."""
    return text.startswith(version) and text[len(version) : len(version) + 1] in ("", ";", " ", "\t")


def _check_mta_sts(record: DnsRecord, rrset: dns.rrset.RRset | None) -> RecordCheck:
    ours = parse_record(record.value)
    sts = [text for text in _txt(rrset) if _starts_with_tag(text, "v=STSv1")]
    found = tuple(sts)
    if not sts:
        return RecordCheck(record, "missing")
    if len(sts) > 1:
        return RecordCheck(
            record,
            "wrong",
            found,
            _("Several MTA-STS records: senders use none of them (RFC 8461 section 3.1)."),
        )
    try:
        theirs = parse_record(sts[0])
    except StsError:
        return RecordCheck(record, "wrong", found, _("Not a valid MTA-STS record (RFC 8461 section 3.1)."))
    if theirs != ours:
        return RecordCheck(
            record,
            "wrong",
            found,
            _(
                "Not the id of the policy served now (%(id)s): senders that have the old one keep it.",
                id=ours,
            ),
        )
    return RecordCheck(record, "ok", found)


def _tags(text: str) -> list[str]:
    return [part.strip() for part in text.split(";") if part.strip()]


def _check_tlsrpt(record: DnsRecord, rrset: dns.rrset.RRset | None) -> RecordCheck:
    reports = [text for text in _txt(rrset) if _starts_with_tag(text, "v=TLSRPTv1")]
    found = tuple(reports)
    if not reports:
        return RecordCheck(record, "missing")
    if len(reports) > 1:
        return RecordCheck(
            record,
            "wrong",
            found,
            _("Several TLS reporting records: senders use none of them (RFC 8460 section 3)."),
        )
    if _tags(reports[0]) != _tags(record.value):
        return RecordCheck(record, "wrong", found, _("Expected %(value)s.", value=record.value))
    return RecordCheck(record, "ok", found)


async def _check_one(record: DnsRecord, lookups: _Lookups) -> RecordCheck:
    try:
        if record.kind == "web-name":
            return await _check_web_name(record, lookups)
        rrset = await lookups.get(record.name, record.type)
        if record.kind == "mx":
            return _check_mx(record, rrset)
        if record.kind == "spf":
            return _check_spf(record, rrset)
        if record.kind == "dmarc":
            return _check_dmarc(record, rrset)
        if record.kind == "dkim":
            return _check_dkim(record, rrset)
        if record.kind == "mta-sts":
            return _check_mta_sts(record, rrset)
        if record.kind == "tlsrpt":
            return _check_tlsrpt(record, rrset)
        return _check_srv(record, rrset)
    except DnsTemporaryFailure as exc:
        return RecordCheck(record, "error", (), _("DNS gave no answer now: %(error)s", error=exc.text))


async def check_records(records: Sequence[DnsRecord], resolver: DnsResolver) -> list[RecordCheck]:
    """Resolve what each record's name holds now and judge it (see the module docstring), in the order
    given; every lookup at once."""
    lookups = _Lookups(resolver)
    try:
        return list(await asyncio.gather(*(_check_one(record, lookups) for record in records)))
    finally:
        lookups.cancel()  # only when the check itself was cancelled: otherwise every lookup was awaited
