"""DMARC evaluation of inbound mail: RFC 9989 ("DMARCbis", which obsoletes RFC 7489 and RFC 9091).

Section numbers below are those of draft-ietf-dmarc-dmarcbis-41, the last draft (in the RFC Editor's queue
then; issue 13 names the result RFC 9989); the RFC's own text was not at hand (docs/decisions/0055).

Implementation notes
- Author Domain (5.3.1): `from_domain_of` reads the one From field, lowercases every address's domain and
  turns it into A-labels (RFC 5890 section 2.3). Zero domains, several distinct domains, several From
  fields, a domain literal or a name that is not a host name: None, and DMARC is "not possible" (5.3.1,
  4.4). The caller records `dmarc=permerror` (11.5: such messages are mostly abusive; an A-R `none` would
  read as "the domain has no policy") and applies no policy. The reading is the store's lenient address
  parser (`message.addresses`, bounded, never raising), so that odd but valid syntax ("john doe"@x, groups)
  cannot dodge DMARC; and because its repairs could take another domain than a reader shows, every domain
  written after an "@" outside quoted strings and comments also counts: a field readable two ways names
  two domains. Display names and comments are display text (display-name attacks are out of scope, 11.4).
- Records (4.5, 4.7, 4.8): TXT at `_dmarc.<domain>`, the strings of one record joined (4.5). A record must
  begin with `v=DMARC1` (tag name case-insensitive like every ABNF literal, "DMARC1" case-sensitive; white
  space around the record is tolerated); other TXT records there are not DMARC records. Several DMARC
  records at one name: all discarded, as if none were there (4.10 step 2). Unknown tags (also RFC 7489's
  pct, rf, ri: historic, 9.3) are ignored. A known tag with a value outside its grammar (4.8, table 2) is
  ignored ("syntax errors ... discarded in favor of default values"), and so is a tag given twice (the
  tag-value syntax comes from DKIM, where a repeated tag is an error: RFC 6376 section 3.2); both are listed
  in `DmarcRecord.invalid_tags`. Keyword values are case-insensitive (ABNF); rua/ruf keep the URIs that are
  syntactically URIs (RFC 3986; commas and "!" must be escaped; RFC 7489's "!size" suffix is dropped).
- A record without a valid p, or with an invalid sp or np (4.10.1): with at least one valid rua URI it acts
  as if it said only p=none (so reports can still be made); otherwise no DMARC processing is applied and the
  result is `permerror` ("retrieval of an improperly formatted DMARC Policy Record", 9.2), policy none.
- Policy discovery by the DNS Tree Walk (4.10, 4.10.1), no Public Suffix List: `_dmarc.<author domain>`
  first; without a record there, the walk up: from a name of more than 8 labels straight to its 7 rightmost,
  else to the parent, then one label off at a time down to the top-level name (`_dmarc.com` is asked: that
  is where a PSD publishes, 5.2). A walk stops at a record with psd=y or psd=n. At most 8 queries per walk,
  however long the name. The record that applies: the Author Domain's; else the Organizational Domain's;
  else the Public Suffix Domain's (the psd=y record that stopped the walk). Nothing found: `none`.
- Organizational Domain (4.10.2), from the records one walk found, longest name first: psd=n there -> that
  name; psd=y at a name other than the start -> the start's name one label below it; otherwise the found
  name with the fewest labels; no record at all -> the start itself. When the org domain's record is not
  among those asked (psd=y found right after a >8-label shortcut), the PSD's record applies: asking a 9th
  name would break the query bound the walk exists for.
- Alignment (3.2.10, 4.4): strict = identical names; relaxed = same Organizational Domain. Names compare
  lowercased, in A-labels. An identical SPF or DKIM domain aligns in both modes without any query (4.10.2's
  notes: then no walk is needed, and `org_domain` stays "" when nothing else needed it). A name can only
  share the author's Organizational Domain if it lies at or under it (every walk's answer is the name or a
  parent of it), so only such names are walked; a DKIM d= of any other domain costs no query. SPF counts
  only with `pass` for the MAIL FROM domain (3.2.4; the caller passes the identity it checked), DKIM with
  each passing signature's d= (4.4.1). One aligned pass is enough (5.3.5).
- The policy on `fail` (4.10.1, 4.7): the record at the Author Domain -> p. A record of a parent (org domain
  or PSD) -> sp (else p) when the Author Domain exists, np (else sp, else p) when it does not. Existence is
  RFC 8020's (3.2.13, A.4): one query of the Author Domain (type A); NXDOMAIN means it does not exist,
  anything else (even NODATA) that it does. Not the RFC 5321 "resolvable" test: A.4 rejects it. Asked only
  when the answer could change the policy. Then t=y (4.7): one level lower (reject -> quarantine,
  quarantine -> none); pct is gone (A.6). `policy` is "none" for every result but `fail`.
- DNS failures (5.3.6, 4.10.1): a query that fails for now (SERVFAIL, timeout, ...) where its answer is
  needed gives `temperror` with policy none; whether to answer 4xx or deliver is the caller's decision. A
  failure does not spoil a pass that another identifier already gave. NXDOMAIN at `_dmarc.<name>` is "no
  record there"; a `_dmarc` name too long for DNS is never asked.
- Bounded work: each `_dmarc` name is asked at most once per check (answers and failures kept for the
  check); one walk is at most 8 queries; walks: the author's, and one per aligned-candidate identifier, at
  most 1 + MAX_RELAXED_CANDIDATES; plus the one existence query.

Not done here: aggregate reports (RFC 9990) and failure reports. rua, ruf and fo are parsed and kept in
`DmarcRecord` for them; nothing is sent. Several From domains are not evaluated one by one (11.5 allows it;
we report permerror instead). Local policy (trusted forwarders, ARC) is the caller's.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.rrset

from postoffice.message.addresses import parse_address_list
from postoffice.net.dns import BadDomainName, DnsResolver, DnsTemporaryFailure, NoSuchDomain, a_label

__all__ = [
    "MAX_RELAXED_CANDIDATES",
    "MAX_WALK_QUERIES",
    "DmarcRecord",
    "DmarcResult",
    "check_dmarc",
    "from_domain_of",
    "parse_record",
    "tree_walk_names",
]

#: Most `_dmarc` names one DNS Tree Walk asks (section 4.10).
MAX_WALK_QUERIES = 8
#: Most identifiers (SPF domain, DKIM d= domains) under the author's Organizational Domain whose own
#: Organizational Domain is looked up for relaxed alignment, in the order given.
MAX_RELAXED_CANDIDATES = 8
#: Most addresses read from a From field; a field with more names no single author domain here.
MAX_FROM_ADDRESSES = 100

POLICIES = ("none", "quarantine", "reject")
_WSP = " \t"
_VERSION = re.compile(r"[ \t]*[vV][ \t]*=[ \t]*DMARC1[ \t]*")
_TAG_NAME = re.compile(r"[A-Za-z]+")
# dmarc-value: any printing character but ";" (the split already removed every ";").
_VALUE = re.compile(r"[\x20-\x3a\x3c-\x7e]+")
# A URI (RFC 3986 section 3) with commas and "!" escaped (section 4.8), and RFC 7489's "!size" suffix.
_URI = re.compile(
    r"([A-Za-z][A-Za-z0-9+.-]*:(?:[A-Za-z0-9\-._~$&'()*+=:@/?#\[\]]|%[0-9A-Fa-f]{2})+)(?:!\d+[kmgtKMGT]?)?"
)
_AROUND_AT_OR_DOT = re.compile(r"\s*([@.])\s*")
_AFTER_AT = re.compile(r"@([^\s<>()\[\],;:\"@\\]*)")
# A host name in A-labels: letters, digits, hyphens inside labels.
_HOST_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*")


@dataclass(frozen=True)
class DmarcRecord:
    """One DMARC Policy Record as published (section 4.7). Absent or invalid tags have their defaults;
    `policy` is None when p is missing or invalid (section 4.10.1 decides what that means)."""

    raw: str
    policy: str | None = None  # p: none | quarantine | reject
    subdomain_policy: str | None = None  # sp, None when absent or invalid
    nonexistent_policy: str | None = None  # np, None when absent or invalid
    adkim: str = "r"  # r | s
    aspf: str = "r"  # r | s
    testing: bool = False  # t=y
    psd: str = "u"  # y | n | u
    rua: tuple[str, ...] = ()  # valid aggregate-report URIs, for RFC 9990 reports
    ruf: tuple[str, ...] = ()  # valid failure-report URIs
    failure_options: str = "0"  # fo, meaningful only with ruf
    invalid_tags: tuple[str, ...] = ()  # known tags ignored: a bad value, or given twice

    @property
    def policy_is_valid(self) -> bool:
        """p valid, and sp and np valid where present (the condition of section 4.10.1)."""
        return self.policy is not None and not {"sp", "np"}.intersection(self.invalid_tags)


@dataclass(frozen=True)
class DmarcResult:
    result: str  # pass | fail | none | temperror | permerror
    from_domain: str  # the RFC5322.From domain evaluated (A-labels, lowercase)
    policy: str  # the policy to apply: none | quarantine | reject ("none" unless result is fail)
    record_domain: str  # where the record was found ("" when none)
    org_domain: str  # the Organizational Domain of from_domain ("" when unknown or not needed)
    reason: str  # short text for logs and the Authentication-Results comment
    record: DmarcRecord | None
    # which authenticated identifiers were aligned (the aggregate report's policy_evaluated, RFC 9990)
    spf_aligned: bool = False
    dkim_aligned: bool = False


# -- records --------------------------------------------------------------------------------------------


def parse_record(text: str) -> DmarcRecord | None:
    """The record `text` publishes (sections 4.7, 4.8); None when it is not a DMARC record (it does not begin
    with the v=DMARC1 tag). Never raises."""
    parts = text.split(";")
    if not _VERSION.fullmatch(parts[0]):
        return None
    values: dict[str, str] = {}
    repeated: set[str] = set()
    for part in parts[1:]:
        name, equals, value = part.partition("=")
        name = name.strip(_WSP)
        if not equals or not _TAG_NAME.fullmatch(name):
            continue  # not a tag: a syntax error, ignored (section 4.8)
        name = name.lower()
        if name in values:
            repeated.add(name)
        else:
            values[name] = value.strip(_WSP)
    invalid: list[str] = []

    def value_of(name: str) -> str | None:
        """The tag's value if it is known, given once and made of dmarc-value characters."""
        value = values.get(name)
        if value is None:
            return None
        if name in repeated or not _VALUE.fullmatch(value):
            invalid.append(name)
            return None
        return value

    def keyword(name: str, allowed: tuple[str, ...], default: str | None) -> str | None:
        value = value_of(name)
        if value is None:
            return default
        if value.lower() not in allowed:
            invalid.append(name)
            return default
        return value.lower()

    def uris(name: str) -> tuple[str, ...]:
        value = value_of(name)
        if value is None:
            return ()
        found = tuple(m.group(1) for item in value.split(",") if (m := _URI.fullmatch(item.strip(_WSP))))
        if not found:
            invalid.append(name)
        return found

    fo = value_of("fo")
    failure_options = _failure_options(fo) if fo is not None else "0"
    if failure_options is None:
        invalid.append("fo")
    return DmarcRecord(
        raw=text,
        policy=keyword("p", POLICIES, None),
        subdomain_policy=keyword("sp", POLICIES, None),
        nonexistent_policy=keyword("np", POLICIES, None),
        adkim=keyword("adkim", ("r", "s"), "r") or "r",
        aspf=keyword("aspf", ("r", "s"), "r") or "r",
        testing=keyword("t", ("y", "n"), "n") == "y",
        psd=keyword("psd", ("y", "n", "u"), "u") or "u",
        rua=uris("rua"),
        ruf=uris("ruf"),
        failure_options=failure_options or "0",
        invalid_tags=tuple(invalid),
    )


def _failure_options(value: str) -> str | None:
    """fo (section 4.8 dmarc-fo): 0, 1, d, s separated by colons, each once, not both 0 and 1."""
    options = value.lower().split(":")
    if not set(options) <= {"0", "1", "d", "s"} or len(set(options)) != len(options):
        return None
    if "0" in options and "1" in options:
        return None
    return ":".join(options)


# -- the Author Domain ----------------------------------------------------------------------------------


def from_domain_of(from_header_values: Sequence[str]) -> str | None:
    """The one Author Domain of a message (section 5.3.1) from the values of its From fields, in A-labels and
    lowercase; None when there is not exactly one From field holding exactly one domain (see the module
    notes: the caller reports permerror and applies no policy). Never raises. The answers for recent From
    values are kept (a pure function of the text; the same senders write the same From message after
    message)."""
    if len(from_header_values) != 1:
        return None  # absent or repeated From (section 4.4)
    return _from_domain(from_header_values[0])


@functools.lru_cache(maxsize=4096)
def _from_domain(value: str) -> str | None:
    entries = parse_address_list(value, MAX_FROM_ADDRESSES) or []
    if len(entries) >= MAX_FROM_ADDRESSES:
        return None
    written = [host for entry in entries if (host := entry[3])]  # skips group markers and bare local parts
    domains: set[str] = set()
    for text in written + _domains_after_at(value):
        domains.add(_author_domain(text) or "\x00" + text)  # an unusable domain still counts as one
        if len(domains) > 1:
            return None
    if len(domains) != 1:
        return None
    (domain,) = domains
    return None if domain.startswith("\x00") else domain


def _domains_after_at(value: str) -> list[str]:
    """Every domain written after an "@" outside quoted strings and comments. The address parser repairs
    malformed fields ("b@bank.example a@attacker.example" is one address for it, "a@attacker.example" with a
    display name "b@bank.example"); a reader may show them otherwise. Counting each such domain makes a field
    that could be read two ways name several domains, so no single one is taken for the author's."""
    outside: list[str] = []
    depth, quoted, escaped = 0, False, False
    for ch in value:
        if escaped:
            escaped = False
        elif ch == "\\" and (quoted or depth):
            escaped = True
        elif quoted:
            quoted = ch != '"'
        elif depth:
            depth += {"(": 1, ")": -1}.get(ch, 0)
        elif ch == '"':
            quoted = True
            outside.append(" ")
        elif ch == "(":
            depth = 1
            outside.append(" ")
        else:
            outside.append(ch)
    text = _AROUND_AT_OR_DOT.sub(r"\1", "".join(outside))  # CFWS may stand around "@" and "." (RFC 5322 4.4)
    return [domain for domain in _AFTER_AT.findall(text) if domain]


def _author_domain(text: str) -> str | None:
    """`text` as a host name in lowercase A-labels, or None."""
    text = text.strip(_WSP)
    if not text or text.startswith("["):
        return None
    try:
        domain = a_label(text).lower()
    except (BadDomainName, ValueError):
        return None
    return domain if _HOST_NAME.fullmatch(domain) else None


# -- DNS: records and the tree walk ---------------------------------------------------------------------


def tree_walk_names(domain: str) -> list[str]:
    """The names a DNS Tree Walk from `domain` asks about, in order (section 4.10 steps 1-7): the name, then
    (more than 8 labels) its 7 rightmost labels or (else) its parent, then one label less each time, down to
    the top-level name. At most MAX_WALK_QUERIES names."""
    labels = domain.split(".")
    names = [domain]
    rest = labels[-7:] if len(labels) >= MAX_WALK_QUERIES else labels[1:]
    while rest:
        names.append(".".join(rest))
        rest = rest[1:]
    return names


class _Lookups:
    """One check's DMARC DNS: each `_dmarc` name asked once (records and failures kept), queries counted."""

    def __init__(self, resolver: DnsResolver) -> None:
        self.resolver = resolver
        self.queries = 0
        self.ambiguous: list[str] = []  # names with several DMARC records (all discarded)
        self._records: dict[str, DmarcRecord | None] = {}
        self._failures: dict[str, str] = {}

    async def record_at(self, domain: str) -> DmarcRecord | None:
        """The one DMARC record at `_dmarc.<domain>`, None when there is none (or several)."""
        if domain in self._failures:
            raise DnsTemporaryFailure(self._failures[domain])
        if domain in self._records:
            return self._records[domain]
        record = None
        try:
            name = dns.name.from_text(f"_dmarc.{domain}")
        except dns.exception.DNSException:
            pass  # too long for DNS: nothing can be published there
        else:
            self.queries += 1
            try:
                record = self._one_record(domain, await self.resolver.query(name, "TXT"))
            except NoSuchDomain:
                pass
            except DnsTemporaryFailure as exc:
                self._failures[domain] = exc.text
                raise
        self._records[domain] = record
        return record

    def _one_record(self, domain: str, rrset: dns.rrset.RRset | None) -> DmarcRecord | None:
        records = []
        for rdata in rrset or ():
            text = b"".join(getattr(rdata, "strings", ())).decode("utf-8", "replace")  # section 4.5
            record = parse_record(text)
            if record is not None:
                records.append(record)
        if len(records) > 1:
            self.ambiguous.append(f"_dmarc.{domain}")  # section 4.10 step 2: all discarded
            return None
        return records[0] if records else None

    async def walk(self, domain: str) -> list[tuple[str, DmarcRecord]]:
        """The records a DNS Tree Walk from `domain` finds, longest name first (section 4.10)."""
        found = []
        for name in tree_walk_names(domain):
            record = await self.record_at(name)
            if record is not None:
                found.append((name, record))
                if record.psd in ("y", "n"):
                    break
        return found

    async def organizational_domain(self, domain: str) -> str:
        return organizational_domain(domain, await self.walk(domain))

    async def exists(self, domain: str) -> bool:
        """RFC 8020 existence (section 3.2.13, appendix A.4): False only on NXDOMAIN."""
        self.queries += 1
        try:
            await self.resolver.query(domain, "A")
        except NoSuchDomain:
            return False
        return True


def organizational_domain(domain: str, found: Sequence[tuple[str, DmarcRecord]]) -> str:
    """The Organizational Domain of `domain` from the records its tree walk found (section 4.10.2)."""
    for name, record in found:
        if record.psd == "n":
            return name
        if record.psd == "y" and name != domain:
            return ".".join(domain.split(".")[-(name.count(".") + 2) :])
    return found[-1][0] if found else domain


# -- evaluation -----------------------------------------------------------------------------------------


async def check_dmarc(
    resolver: DnsResolver, *, from_domain: str, spf_result: str, spf_domain: str, dkim_passes: Sequence[str]
) -> DmarcResult:
    """The DMARC result for a message whose Author Domain is `from_domain` (section 5.3): SPF's result for
    the MAIL FROM identity `spf_domain`, and the d= domains of the DKIM signatures that passed."""
    author = _author_domain(from_domain)
    if author is None:
        return DmarcResult(
            "permerror", from_domain.lower(), "none", "", "", "the From domain is not a host name", None
        )
    lookups = _Lookups(resolver)
    evaluation = _Evaluation(lookups, author)
    try:
        return await evaluation.run(spf_result, spf_domain, dkim_passes)
    except DnsTemporaryFailure as exc:
        return evaluation.result("temperror", f"DNS: {exc.text}")


@dataclass
class _Evaluation:
    lookups: _Lookups
    author: str
    record_domain: str = ""
    record: DmarcRecord | None = None
    org_domain: str = ""

    def result(
        self, result: str, reason: str, policy: str = "none", *, spf: bool = False, dkim: bool = False
    ) -> DmarcResult:
        return DmarcResult(
            result, self.author, policy, self.record_domain, self.org_domain, reason, self.record, spf, dkim
        )

    async def run(self, spf_result: str, spf_domain: str, dkim_passes: Sequence[str]) -> DmarcResult:
        record = await self._discover()
        if record is None:
            ambiguous = self.lookups.ambiguous
            note = f" (several records at {', '.join(ambiguous)} are ignored)" if ambiguous else ""
            return self.result("none", f"no DMARC policy record{note}")
        if not record.policy_is_valid and not record.rua:
            return self.result(
                "permerror",
                f"the record at _dmarc.{self.record_domain} has no valid p=, sp= or np= and no rua=",
            )
        spf = [("SPF", spf_domain, record.aspf)] if spf_result.strip().lower() == "pass" else []
        dkim = [("DKIM", d, record.adkim) for d in dkim_passes]
        # each method on its own, for the aggregate report's two results; one aligned pass is enough
        failure: DnsTemporaryFailure | None = None
        found: list[str] = []
        for candidates in (spf, dkim):
            try:
                found.append(await self._aligned(candidates))
            except DnsTemporaryFailure as exc:
                failure = failure or exc
                found.append("")
        if any(found):
            return self.result("pass", found[0] or found[1], spf=bool(found[0]), dkim=bool(found[1]))
        if failure is not None:
            raise failure  # no pass, and an answer that might have given one is missing
        requested = await self._requested_policy(record)
        applied = _one_level_lower(requested) if record.testing else requested
        reason = "no aligned SPF or DKIM pass"
        if applied != requested:
            reason += f"; t=y: {requested} applied as {applied}"
        return self.result("fail", reason, applied)

    async def _discover(self) -> DmarcRecord | None:
        """The record that applies (section 4.10.1), None when there is none."""
        record = await self.lookups.record_at(self.author)
        if record is not None:
            self.record_domain, self.record = self.author, record
            if record.psd == "n":
                self.org_domain = self.author
            return record
        found = await self.lookups.walk(self.author)
        if not found:
            return None
        self.org_domain = organizational_domain(self.author, found)
        by_name = dict(found)
        # The org domain's record, else the PSD's: the psd=y record that ended the walk (module notes).
        self.record_domain = self.org_domain if self.org_domain in by_name else found[-1][0]
        self.record = by_name[self.record_domain]
        return self.record

    async def _aligned(self, identifiers: list[tuple[str, str, str]]) -> str:
        """Why one of the authenticated identifiers, (method, domain, alignment mode), is aligned with the
        author domain (sections 4.4, 4.10.2); "" when none is."""
        candidates = []  # (method, domain, mode), the domains in lowercase A-labels
        for method, text, mode in identifiers:
            domain = _author_domain(text)
            if domain == self.author:
                return f"{method} pass for {domain}, identical to the From domain"
            if domain is not None and mode == "r":
                candidates.append((method, domain))
        if not candidates:
            return ""
        if not self.org_domain:
            self.org_domain = await self.lookups.organizational_domain(self.author)
        org = self.org_domain
        under_org = [(m, d) for m, d in candidates if d == org or d.endswith("." + org)]
        failure: DnsTemporaryFailure | None = None
        for method, domain in list(dict.fromkeys(under_org))[:MAX_RELAXED_CANDIDATES]:
            try:
                if await self.lookups.organizational_domain(domain) == org:
                    return f"{method} pass for {domain}, aligned with the From domain (organizational {org})"
            except DnsTemporaryFailure as exc:
                failure = failure or exc
        if failure is not None:
            raise failure  # no pass, and an answer that might have given one is missing
        return ""

    async def _requested_policy(self, record: DmarcRecord) -> str:
        """The policy the record asks for this message (section 4.10.1)."""
        if not record.policy_is_valid or record.policy is None:
            return "none"  # section 4.10.1: it acts as a record with p=none (it has a valid rua)
        if self.record_domain == self.author:
            return record.policy
        existing = record.subdomain_policy or record.policy
        nonexistent = record.nonexistent_policy or existing
        if existing == nonexistent:
            return existing
        return existing if await self.lookups.exists(self.author) else nonexistent


def _one_level_lower(policy: str) -> str:
    """The policy t=y asks for (section 4.7): one level below the published one."""
    return {"reject": "quarantine", "quarantine": "none"}.get(policy, "none")
