"""Transport security of outbound mail: the TLS each MX host of a destination needs, and what is reported of
it (docs/decisions/0057).

What it implements
- The order of RFC 8461 section 2 and RFC 7672: DANE first. When the MX hosts were found through DNSSEC-
  validated answers (`Host.secure`, from a trusted validating resolver) their TLSA records are looked up
  (`mailauth.dane`); if any host has a TLSA RRset, the destination is a DANE destination ("tlsa" in TLS
  reports): hosts with usable records must present a matching certificate (RFC 7672 section 3), hosts with
  only unusable records get mandatory but unauthenticated TLS (section 2.2), and the other hosts the usual
  opportunistic TLS. A host whose TLSA lookup failed is not used for this attempt (section 2.2: its
  records cannot be known; another MX host, or a later attempt, may do). MTA-STS is not applied then.
- Otherwise MTA-STS (`mailauth.mtasts`, RFC 8461): under an "enforce" policy only the MX hosts the policy
  names are used (section 4.1; none left: the attempt is deferred with 4.7.5) and each must offer STARTTLS
  with a certificate valid for its name, from a CA we trust (section 4.2: WebPKI, `ca_file` or the system's),
  or it is skipped; under "testing" mail goes as without a policy, but the same checks are made and their
  failures reported (section 5, RFC 8460).
- Without either: opportunistic TLS (RFC 7435), as the queue's `tls` setting says.
- Every connection's TLS result is counted for the daily TLS report (RFC 8460, `mailauth.reporting`), with
  the policy that applied: "tlsa" (the TLSA records), "sts" (the policy's lines) or "no-policy-found".

- A policy that cannot be fetched is counted too ("sts-policy-fetch-error", "sts-policy-invalid",
  "sts-webpki-invalid": RFC 8460 section 4.3.2), once per fetch tried.

Not done: MTA-STS policies are not refreshed ahead of use (RFC 8461 section 10.2 allows it; the next
delivery fetches).
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import ipaddress
import logging
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import dns.exception
import dns.resolver
from cryptography import x509
from cryptography.x509 import verification

from postoffice.mailauth import dane
from postoffice.mailauth.mtasts import CachedPolicy, MtaSts, StsError, StsFetchError, StsPolicy, parse_policy
from postoffice.mailauth.reporting import ReportCounter
from postoffice.net.dns import DnsResolver
from postoffice.smtp.delivery import HostTls, TlsSession, unverified_context
from postoffice.smtp.mx import Host
from postoffice.store import StoredStsPolicy

if TYPE_CHECKING:
    from postoffice.smtp.settings import QueueConfig
    from postoffice.store import MailStore

log = logging.getLogger("postoffice.transport")

#: Longest failure text kept in a TLS report line.
DETAIL_LIMIT = 200


@dataclass(frozen=True)
class ReportPolicy:
    """The policy of a TLS report line (RFC 8460 section 4.4): its type and its strings."""

    type: str  # "tlsa" | "sts" | "no-policy-found"
    strings: tuple[str, ...] = ()


@dataclass
class Destination:
    """How to deliver to one domain now: the hosts to try (in order), each host's TLS, and the policy for
    reporting. `refusal` (code, enhanced, text): no host may be used now (the attempt is deferred)."""

    hosts: list[Host]
    policy: ReportPolicy
    per_host: dict[str, HostTls] = field(default_factory=dict)
    refusal: tuple[int, str, str] | None = None
    #: every MX host, before a policy left some out
    all_hosts: list[Host] = field(default_factory=list)
    #: the MTA-STS policy that applied (None: none, or DANE)
    sts: StsPolicy | None = None

    def host_tls(self, host: Host) -> HostTls | None:
        return self.per_host.get(host.name)

    @property
    def enforced(self) -> bool:
        """A policy may stop a delivery (DANE, MTA-STS enforce): what "TLS-Required: No" relaxes."""
        return self.refusal is not None or any(t.required for t in self.per_host.values())


class TransportSecurity:
    """Decides each destination's TLS (see the module notes). `dane_resolver`: a resolver of a trusted,
    validating recursive server (None: no DANE); `mta_sts`: the policy lookup (None: no MTA-STS); `ca_file`:
    the CAs for MTA-STS's certificate checks ("" or None: the system's); `counter`: where TLS results are
    counted (None: nowhere); `port`: the SMTP port of remote servers (the TLSA name's port)."""

    def __init__(
        self,
        *,
        dane_resolver: DnsResolver | None = None,
        mta_sts: MtaSts | None = None,
        ca_file: str | None = None,
        counter: ReportCounter | None = None,
        port: int = 25,
    ) -> None:
        self.dane_resolver = dane_resolver
        self.mta_sts = mta_sts
        self.ca_file = ca_file or None
        self.counter = counter
        self.port = port
        self._verifying: ssl.SSLContext | None = None
        if mta_sts is not None and mta_sts.on_failure is None:
            mta_sts.on_failure = self._policy_fetch_failed

    def _policy_fetch_failed(self, domain: str, error: StsFetchError) -> None:
        """A TLS report line for a policy that could not be fetched (RFC 8460 section 4.3.2)."""
        if self.counter is not None:
            line = {
                "type": "sts",
                "policy": [],
                "mx": "",
                "ip": "",
                "result": error.result_type,
                "detail": error.text[:DETAIL_LIMIT],
            }
            self.counter.add("tlsrpt", domain, line)

    async def destination(self, domain: str, hosts: Sequence[Host]) -> Destination:
        """The TLS to use for `domain`'s `hosts` (from `MxResolver.destinations`). Never raises for DNS or
        network problems."""
        if self.dane_resolver is not None and any(host.secure for host in hosts):
            found = await self._dane(self.dane_resolver, domain, hosts)
            if found is not None:
                return found
        policy = await self.mta_sts.policy_for(domain) if self.mta_sts is not None else None
        if policy is None:
            return Destination(list(hosts), ReportPolicy("no-policy-found"), all_hosts=list(hosts))
        return await self._sts(domain, hosts, policy)

    async def strict(self, destination: Destination) -> Destination:
        """The destination for a REQUIRETLS message (RFC 8689 section 4.2.1): only hosts whose name is
        vouched for (a DNSSEC-validated MX lookup, or an MTA-STS policy of any mode naming the host) over
        TLS whose certificate is authenticated (DANE-EE/TA matches, or WebPKI for the host's name).
        Hosts with DANE but only unusable TLSA records (unauthenticated TLS) are left out; no host left:
        550 5.7.30."""
        strict = Destination([], destination.policy, all_hosts=destination.all_hosts, sts=destination.sts)
        verifying = await self._verifying_context()
        for host in destination.hosts:
            current = destination.per_host.get(host.name)
            if current is not None and current.required and current.enforce and current.check is not None:
                strict.per_host[host.name] = current  # DANE: the TLSA records authenticate
            elif (
                current is not None
                and current.required
                and current.context is not None
                and current.context.verify_mode != ssl.CERT_NONE
            ):
                strict.per_host[host.name] = current  # MTA-STS enforce: WebPKI for the host's name
            elif current is not None and current.required:
                continue  # DANE with unusable records only: encrypted, not authenticated
            elif host.secure or (destination.sts is not None and destination.sts.matches(host.name)):
                strict.per_host[host.name] = HostTls(True, verifying)
            else:
                continue
            strict.hosts.append(host)
        if not strict.hosts:
            strict.refusal = destination.refusal or (
                550,
                "5.7.30",
                "REQUIRETLS support required: no MX host can be authenticated (no DNSSEC-validated MX "
                "records, no MTA-STS policy naming them)",
            )
        return strict

    def reporter(self, domain: str, destination: Destination) -> Callable[[TlsSession], None] | None:
        """What `deliver` calls with each connection's TLS: counts a TLS report line for `domain`."""
        counter = self.counter
        if counter is None:
            return None
        policy = destination.policy

        def count(session: TlsSession) -> None:
            line: dict[str, object] = {
                "type": policy.type,
                "policy": list(policy.strings),
                "mx": session.host.name,
                "ip": session.address,
                "result": session.failure or "",
                "detail": session.text[:DETAIL_LIMIT] if session.failure else "",
            }
            counter.add("tlsrpt", domain, line)

        return count

    # -- DANE ------------------------------------------------------------------------------------------------
    async def _dane(self, resolver: DnsResolver, domain: str, hosts: Sequence[Host]) -> Destination | None:
        secure = [host for host in hosts if host.secure]
        found = await asyncio.gather(*(dane.lookup(resolver, host, self.port) for host in secure))
        by_host = dict(zip((host.name for host in secure), found, strict=True))
        applies = {name: d for name, d in by_host.items() if d.status in ("authenticate", "encrypt")}
        failed = {name for name, d in by_host.items() if d.status == "temporary"}
        if not applies and not failed:
            return None  # no TLSA records anywhere: DANE does not apply (MTA-STS may)
        usable = [host for host in hosts if host.name not in failed]
        strings = tuple(
            f"{host.name} {record.usage} {record.selector} {record.matching} {record.data.hex()}"
            for host in secure
            if host.name in applies
            for record in applies[host.name].records
        )
        destination = Destination(usable, ReportPolicy("tlsa", strings), all_hosts=list(hosts))
        context = unverified_context()  # the TLSA records authenticate, not a CA
        for name, found_dane in applies.items():
            if found_dane.status == "encrypt":
                destination.per_host[name] = HostTls(True, context)
            else:  # RFC 7672 section 8.1: the SNI is the TLSA base domain
                sni = found_dane.base_domain or None
                destination.per_host[name] = HostTls(
                    True, context, check=_dane_check(found_dane), server_name=sni
                )
        if not usable:
            texts = "; ".join(by_host[name].text for name in sorted(failed))
            destination.refusal = (451, "4.7.5", f"TLSA lookup for the MX hosts of {domain} failed: {texts}")
        return destination

    # -- MTA-STS ---------------------------------------------------------------------------------------------
    async def _sts(self, domain: str, hosts: Sequence[Host], policy: StsPolicy) -> Destination:
        strings = tuple(line for line in policy.text.replace("\r\n", "\n").split("\n") if line.strip())
        report = ReportPolicy("sts", strings)
        if policy.mode == "enforce":
            matching = [host for host in hosts if policy.matches(host.name)]
            destination = Destination(matching, report, all_hosts=list(hosts), sts=policy)
            context = await self._verifying_context()
            for host in matching:
                destination.per_host[host.name] = HostTls(True, context)
            if not matching:
                names = ", ".join(host.name for host in hosts)
                text = f"no MX host of {domain} ({names}) is named by its MTA-STS policy (RFC 8461 4.1)"
                destination.refusal = (451, "4.7.5", text)
            return destination
        # "testing": checked and reported, not enforced
        destination = Destination(list(hosts), report, all_hosts=list(hosts), sts=policy)
        store = await asyncio.to_thread(_trust_store, self.ca_file)
        for host in hosts:
            check = functools.partial(_sts_testing_check, store, policy, host.name)
            destination.per_host[host.name] = HostTls(False, None, check=check, enforce=False)
        return destination

    async def _verifying_context(self) -> ssl.SSLContext:
        if self._verifying is None:
            self._verifying = await asyncio.to_thread(ssl.create_default_context, cafile=self.ca_file)
        return self._verifying


def _dane_check(found: dane.DaneHost) -> Callable[[list[bytes]], tuple[str, str] | None]:
    def check(chain: list[bytes]) -> tuple[str, str] | None:
        problem = dane.check_chain(found, chain)
        return None if problem is None else ("validation-failure", problem)

    return check


@functools.cache
def _trust_store(ca_file: str | None) -> verification.Store | None:
    """The CAs for WebPKI checks (cryptography's verifier): `ca_file`, or the system's bundle. None when
    none can be read (then every "testing" check reports the certificate as not trusted)."""
    path = ca_file or ssl.get_default_verify_paths().cafile or ssl.get_default_verify_paths().openssl_cafile
    try:
        with open(path, "rb") as file:
            pem = file.read()
    except OSError:
        return None
    certificates = []
    end = b"-----END CERTIFICATE-----"
    for block in pem.split(end)[:-1]:
        try:  # one certificate the strict parser refuses must not lose the others
            certificates.append(x509.load_pem_x509_certificate(block + end))
        except ValueError:
            continue
    return verification.Store(certificates) if certificates else None


def _sts_testing_check(
    store: verification.Store | None, policy: StsPolicy, name: str, chain: list[bytes]
) -> tuple[str, str] | None:
    """RFC 8461 section 4.2's checks of one MX host, for reporting only: the host is named by the policy, and
    its certificate is valid for its name and issued by a trusted CA."""
    if not policy.matches(name):
        return "validation-failure", f"the MX host {name} is not named by the MTA-STS policy"
    return webpki_problem(store, name, chain)


def webpki_problem(
    store: verification.Store | None, name: str, chain: Sequence[bytes]
) -> tuple[str, str] | None:
    """None when `chain` (DER, leaf first) is valid for the DNS name `name` under `store`'s CAs; else the
    RFC 8460 result type and why."""
    if not chain:
        return "certificate-not-trusted", "the server sent no certificate"
    try:
        leaf = x509.load_der_x509_certificate(chain[0])
        intermediates = [x509.load_der_x509_certificate(der) for der in chain[1:]]
    except ValueError as exc:
        return "certificate-not-trusted", f"unreadable certificate: {exc}"
    now = datetime.datetime.now(datetime.UTC)
    if leaf.not_valid_after_utc < now:
        return "certificate-expired", f"the certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d}"
    if store is None:
        return "certificate-not-trusted", "no trusted CAs could be read"
    try:
        verifier = (
            verification.PolicyBuilder().store(store).time(now).build_server_verifier(x509.DNSName(name))
        )
        verifier.verify(leaf, intermediates)
    except verification.VerificationError as exc:
        if not _names_match(leaf, name):
            return "certificate-host-mismatch", f"the certificate is not for {name}"
        return "certificate-not-trusted", str(exc)[:DETAIL_LIMIT]
    except ValueError as exc:  # a name the verifier cannot take
        return "certificate-host-mismatch", str(exc)[:DETAIL_LIMIT]
    return None


def _names_match(leaf: x509.Certificate, name: str) -> bool:
    """Whether a DNS name of the certificate's subjectAltName covers `name` (one leftmost wildcard label)."""
    try:
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    wanted = name.lower().rstrip(".")
    for pattern in names.get_values_for_type(x509.DNSName):
        pattern = pattern.lower().rstrip(".")
        if pattern == wanted:
            return True
        if pattern.startswith("*.") and "." in wanted and wanted.split(".", 1)[1] == pattern[2:]:
            return True
    return False


class StorePolicyCache:
    """The MTA-STS policy cache in the store (RFC 8461 section 5: a policy outlives a restart)."""

    def __init__(self, store: MailStore) -> None:
        self.store = store

    async def get(self, domain: str) -> CachedPolicy | None:
        stored = await self.store.mta_sts_policy(domain)
        if stored is None:
            return None
        try:
            policy = parse_policy(stored.policy)
        except StsError:  # cannot happen for what put() stored; a policy that cannot be read is none
            return None
        return CachedPolicy(stored.policy_id, policy, stored.fetched)

    async def put(self, domain: str, cached: CachedPolicy) -> None:
        await self.store.save_mta_sts_policy(
            StoredStsPolicy(domain, cached.policy_id, cached.policy.text, cached.fetched)
        )


def dane_enabled(setting: str, nameservers: Sequence[str]) -> bool:
    """Whether DANE applies: "on", or "auto" with only loopback nameservers (configured, else the system's
    resolv.conf): a validating resolver on this machine is the only one whose AD bit is believed unasked."""
    if setting != "auto":
        return setting == "on"
    servers = list(nameservers)
    if not servers:
        try:
            servers = [str(s) for s in dns.resolver.Resolver(configure=True).nameservers]
        except dns.exception.DNSException:
            return False
    try:
        return bool(servers) and all(ipaddress.ip_address(s).is_loopback for s in servers)
    except ValueError:
        return False


def build_transport(
    config: QueueConfig, store: MailStore, counter: ReportCounter | None, resolver: DnsResolver
) -> TransportSecurity:
    """The transport security of the queue's configuration, asking DNS through the queue's `resolver` (made
    with `dnssec=True` exactly when DANE is on: `dane_enabled`)."""
    mta_sts = None
    if config.mta_sts:
        context = ssl.create_default_context(cafile=config.tls_ca_file or None)
        mta_sts = MtaSts(resolver, StorePolicyCache(store), context=context, port=config.mta_sts_port)
    return TransportSecurity(
        dane_resolver=resolver if resolver.dnssec else None,
        mta_sts=mta_sts,
        ca_file=config.tls_ca_file or None,
        counter=counter,
        port=config.delivery_port,
    )
