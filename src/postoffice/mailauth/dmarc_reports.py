"""DMARC aggregate reports: the XML document of RFC 9990 ("DMARC Aggregate Reporting", which obsoletes RFC
7489's appendix C), built for the reports we send and read from the reports we receive. Pure functions, no
I/O.

Text followed: draft-ietf-dmarc-aggregate-reporting-30 (March 2025), the last text at hand; RFC 9990 is its
revision 32, whose own text and XSD were not available to us. Section numbers below are the draft's: 2.1.1.x
are its element tables, which give the element names, multiplicities and order. Value sets come from the
working group's XSD (dmarc-xml-0.2.xsd, urn:ietf:params:xml:schema:dmarc-2.0); the copy at hand predates np
and generator, which are taken from the tables. Check both against the RFC when it is at hand.

Implementation notes
- Writing (`build_aggregate_xml`): UTF-8, namespace `urn:ietf:params:xml:ns:dmarc-2.0` as the default
  namespace of `<feedback>` (2.1.1.1), `<version>1.0</version>` first (2.1.1.2). Element order: the tables'
  order everywhere, also where the XSD says xs:all (report_metadata, policy_published, identifiers, dkim,
  spf), since the tables say "MUST appear in the order listed" for the sequences and list the rest in one
  order too:
  feedback: version, report_metadata, policy_published, record+ (no extension: we define none);
  report_metadata: org_name, email, extra_contact_info?, report_id, date_range, error*, generator?;
  policy_published: domain, discovery_method?, p, sp?, np?, fo?, adkim?, aspf?, testing?;
  record: row (source_ip, count, policy_evaluated: disposition, dkim, spf, reason*), identifiers (header_from,
  envelope_from?, envelope_to?), auth_results (dkim*, spf?); dkim: domain, selector, result, human_result?;
  spf: domain, scope?, result, human_result?. Every value is checked before anything is written (the
  enumerations, at least one record, at most one spf per record (2.1.1.11: "O"), scope only "mfrom"
  (2.1.1.13), IP addresses, counts >= 0, begin <= end, no character XML cannot carry): `ReportError`, since
  a report we write wrong is our bug, not the reader's.
- Reading (`parse_aggregate_xml`): RFC 9990 documents (that namespace, version 1.0) and the RFC 7489 form
  most reporters still send (no namespace; version absent or any; pct; sp required there; selector and
  envelope_from optional; several spf results). Also the pre-RFC namespace `http://dmarc.org/dmarc-xml/0.1`
  some reporters declare. Elements must be in the root's namespace or in none; elements in any other
  namespace (2.1.1.6/2.1.1.7 extensions) and unknown elements are skipped, subtree and all (2.2: "SHOULD NOT
  create an error"). Element order is not checked. Values are stripped of surrounding white space; domain
  names and enumerated values are lowercased.
- Strictness (2.1.1: a document that does not match "SHOULD" be discarded): required elements missing, given
  twice, or empty; counts and timestamps that are not non-negative decimal integers; source_ip that is not
  an IP address; end before begin; no record; and unknown values of the enumerations that decide what the
  report says (p, sp, np, adkim, aspf, testing, disposition, the evaluated dkim/spf, the dkim and spf
  results) give `ReportError`. RFC 7489 reporters' SPF "unknown" and "error" are read as temperror and
  permerror (the draft's XSD notes both as common). Informative values are kept: reason type, discovery_method
  and scope lowercased, fo as written. Free text (error, human_result, comment, extra_contact_info,
  generator) is cut to MAX_FREE_TEXT characters; other values longer than MAX_VALUE characters are refused.
- Safe XML (7.1, "XML bomb"): the document is parsed by pyexpat directly (the parser under ElementTree) with
  handlers that stop at any DOCTYPE, entity or notation declaration before expat acts on it, so neither
  entity expansion (billion laughs) nor external entities (XXE) can happen; parameter entities are never
  parsed. At most MAX_XML_BYTES of input, nesting at most MAX_XML_DEPTH. Only the elements we read are kept,
  and each `<record>` is converted and dropped when it closes, so memory follows the records, not the markup.
- Never raises anything but `ReportError` for any input bytes (fuzzed by the tests).

Not done here: extensions (4; none is defined), failure reports, choosing which DKIM signatures to list
(2.1.3: the caller orders and caps them, at most 100 per row), the mail around a report (report_mail.py).
"""

from __future__ import annotations

import ipaddress
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from xml.parsers import expat

__all__ = [
    "ALIGNMENT_MODES",
    "DISPOSITIONS",
    "DKIM_RESULTS",
    "DMARC_NAMESPACE",
    "LEGACY_NAMESPACE",
    "MAX_XML_BYTES",
    "OVERRIDE_REASONS",
    "POLICIES",
    "SPF_RESULTS",
    "AggregateReport",
    "DkimAuth",
    "PolicyEvaluated",
    "PolicyOverrideReason",
    "PolicyPublished",
    "ReportError",
    "ReportRecord",
    "SpfAuth",
    "build_aggregate_xml",
    "parse_aggregate_xml",
]

#: The RFC 9990 namespace (section 2.1.1.1; IANA registration in section 5).
DMARC_NAMESPACE = "urn:ietf:params:xml:ns:dmarc-2.0"
#: The namespace of the pre-RFC schema at dmarc.org, which a few RFC 7489 reporters declare.
LEGACY_NAMESPACE = "http://dmarc.org/dmarc-xml/0.1"
_NAMESPACES = frozenset({"", DMARC_NAMESPACE, LEGACY_NAMESPACE})

#: Largest document read (the same bound report_mail.py puts on decompression).
MAX_XML_BYTES = 10 * 1024 * 1024
#: Deepest element nesting read (a report needs 5; extensions may go a little deeper).
MAX_XML_DEPTH = 64
#: Longest value kept for a name, identifier or enumerated value.
MAX_VALUE = 1024
#: Free-text values (error, human_result, comment, extra_contact_info, generator) are cut to this length.
MAX_FREE_TEXT = 4096
#: Largest count or timestamp read (fits a signed 64-bit integer column).
MAX_INTEGER = 2**63 - 1

#: Domain Owner Assessment Policies (p, sp, np): DispositionType.
POLICIES = ("none", "quarantine", "reject")
#: policy_evaluated/disposition: ActionDispositionType ("pass": no action, DMARC passed).
DISPOSITIONS = ("none", "pass", "quarantine", "reject")
#: adkim, aspf: AlignmentType.
ALIGNMENT_MODES = ("r", "s")
#: auth_results/dkim/result: RFC 8601 section 2.7.1.
DKIM_RESULTS = ("none", "pass", "fail", "policy", "neutral", "temperror", "permerror")
#: auth_results/spf/result: RFC 8601 section 2.7.2.
SPF_RESULTS = ("none", "neutral", "pass", "fail", "softfail", "policy", "temperror", "permerror")
#: reason/type values we write (section 2.1.6, "Policy Override Reason").
OVERRIDE_REASONS = ("local_policy", "mailing_list", "other", "policy_test_mode", "trusted_forwarder")
_DMARC_RESULTS = ("pass", "fail")
_TESTING = ("n", "y")
_DISCOVERY_METHODS = ("psl", "treewalk")
# RFC 7489 era names of SPF results (the XSD's comments: "TempError commonly implemented as 'unknown'").
_SPF_ALIASES = {"unknown": "temperror", "error": "permerror"}

# XML 1.0 section 2.2 Char: what a document may contain at all.
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_DIGITS = re.compile(r"[0-9]+")


class ReportError(ValueError):
    """A DMARC aggregate report that cannot be read (or, when building, written); the text says why."""


@dataclass(frozen=True)
class PolicyPublished:
    """policy_published (section 2.1.1.5): the DMARC Policy Record that applied (absent tags: defaults)."""

    domain: str  # the DMARC Policy Domain
    p: str  # POLICIES
    sp: str | None = None  # POLICIES
    np: str | None = None  # POLICIES
    adkim: str | None = None  # ALIGNMENT_MODES
    aspf: str | None = None  # ALIGNMENT_MODES
    testing: str | None = None  # "n" | "y": the t tag
    discovery_method: str | None = None  # "psl" | "treewalk"; we discover by the tree walk (RFC 9989 4.10)
    fo: str | None = None  # failure reporting options, as published
    pct: int | None = None  # RFC 7489 only: read from old reports, never written


@dataclass(frozen=True)
class PolicyOverrideReason:
    """reason (section 2.1.1.14): why the disposition differs from the published policy."""

    type: str  # OVERRIDE_REASONS; reading keeps RFC 7489's forwarded, sampled_out and others as written
    comment: str | None = None


@dataclass(frozen=True)
class PolicyEvaluated:
    """policy_evaluated (section 2.1.1.9): the outcome of DMARC for the row's messages."""

    disposition: str  # DISPOSITIONS
    dkim: str  # "pass" | "fail": the DKIM identifier alignment test
    spf: str  # "pass" | "fail": the SPF identifier alignment test
    reasons: tuple[PolicyOverrideReason, ...] = ()


@dataclass(frozen=True)
class DkimAuth:
    """auth_results/dkim (section 2.1.1.12): one checked signature, uninterpreted with respect to DMARC."""

    domain: str  # d=
    selector: str  # s= ("" when an RFC 7489 report left it out)
    result: str  # DKIM_RESULTS
    human_result: str | None = None


@dataclass(frozen=True)
class SpfAuth:
    """auth_results/spf (section 2.1.1.13): the SPF check of the MAIL FROM identity."""

    domain: str
    result: str  # SPF_RESULTS
    scope: str | None = "mfrom"  # "mfrom" is the only value RFC 9990 allows; RFC 7489 also had "helo"
    human_result: str | None = None


@dataclass(frozen=True)
class ReportRecord:
    """record (section 2.1.1.7): messages from one source IP with one outcome and one set of identifiers."""

    source_ip: str  # normalised (ipaddress's compressed form)
    count: int
    evaluated: PolicyEvaluated
    header_from: str  # RFC5322.From domain
    envelope_from: str | None = None  # RFC5321.MailFrom domain; "" for a null reverse-path (2.1.1.10)
    envelope_to: str | None = None  # RFC5321.RcptTo domain
    dkim: tuple[DkimAuth, ...] = ()
    spf: tuple[SpfAuth, ...] = ()  # at most one is written; RFC 7489 reports may carry several


@dataclass(frozen=True)
class AggregateReport:
    """feedback (section 2.1.1.1): one report about one Policy Domain for one reporting period."""

    org_name: str
    email: str  # contact address of the Reporting Organization
    report_id: str  # unique among reports to this domain (2.5.1)
    begin: int  # date_range, seconds since the epoch (UTC)
    end: int
    policy: PolicyPublished
    records: tuple[ReportRecord, ...]
    extra_contact_info: str | None = None
    errors: tuple[str, ...] = ()  # report_metadata/error: problems with the DMARC Policy Record
    generator: str | None = None  # name and version of the software that wrote the report
    version: str | None = "1.0"  # as read (None: absent, as in many RFC 7489 reports); always written as 1.0
    namespace: str = DMARC_NAMESPACE  # as read ("" for the RFC 7489 form); always written as DMARC_NAMESPACE


# ---------------------------------------------------------------------------------------------------------
# Writing


def build_aggregate_xml(report: AggregateReport) -> bytes:
    """The report as an RFC 9990 XML document in UTF-8. `ReportError` for a value the format cannot carry."""
    _check_report(report)
    root = ET.Element("feedback", {"xmlns": DMARC_NAMESPACE})  # unprefixed children inherit it
    _text(root, "version", "1.0")
    meta = ET.SubElement(root, "report_metadata")
    _text(meta, "org_name", report.org_name)
    _text(meta, "email", report.email)
    _optional(meta, "extra_contact_info", report.extra_contact_info)
    _text(meta, "report_id", report.report_id)
    date_range = ET.SubElement(meta, "date_range")
    _text(date_range, "begin", str(report.begin))
    _text(date_range, "end", str(report.end))
    for error in report.errors:
        _text(meta, "error", error)
    _optional(meta, "generator", report.generator)
    policy = report.policy
    published = ET.SubElement(root, "policy_published")
    _text(published, "domain", policy.domain)
    _optional(published, "discovery_method", policy.discovery_method)
    _text(published, "p", policy.p)
    _optional(published, "sp", policy.sp)
    _optional(published, "np", policy.np)
    _optional(published, "fo", policy.fo)
    _optional(published, "adkim", policy.adkim)
    _optional(published, "aspf", policy.aspf)
    _optional(published, "testing", policy.testing)
    for record in report.records:
        element = ET.SubElement(root, "record")
        row = ET.SubElement(element, "row")
        _text(row, "source_ip", _normal_ip(record.source_ip))
        _text(row, "count", str(record.count))
        evaluated = ET.SubElement(row, "policy_evaluated")
        _text(evaluated, "disposition", record.evaluated.disposition)
        _text(evaluated, "dkim", record.evaluated.dkim)
        _text(evaluated, "spf", record.evaluated.spf)
        for reason in record.evaluated.reasons:
            reason_element = ET.SubElement(evaluated, "reason")
            _text(reason_element, "type", reason.type)
            _optional(reason_element, "comment", reason.comment)
        identifiers = ET.SubElement(element, "identifiers")
        _text(identifiers, "header_from", record.header_from)
        _optional(identifiers, "envelope_from", record.envelope_from)
        _optional(identifiers, "envelope_to", record.envelope_to)
        auth = ET.SubElement(element, "auth_results")
        for dkim in record.dkim:
            dkim_element = ET.SubElement(auth, "dkim")
            _text(dkim_element, "domain", dkim.domain)
            _text(dkim_element, "selector", dkim.selector)
            _text(dkim_element, "result", dkim.result)
            _optional(dkim_element, "human_result", dkim.human_result)
        for spf in record.spf:
            spf_element = ET.SubElement(auth, "spf")
            _text(spf_element, "domain", spf.domain)
            _optional(spf_element, "scope", spf.scope)
            _text(spf_element, "result", spf.result)
            _optional(spf_element, "human_result", spf.human_result)
    ET.indent(root, space="  ")
    document: bytes = ET.tostring(root, encoding="UTF-8", xml_declaration=True)
    return document + b"\n"


def _text(parent: ET.Element, name: str, value: str) -> None:
    ET.SubElement(parent, name).text = value


def _optional(parent: ET.Element, name: str, value: str | None) -> None:
    if value is not None:
        _text(parent, name, value)


def _check_report(report: AggregateReport) -> None:
    for name in ("org_name", "email", "report_id"):
        _check_text(name, getattr(report, name), required=True)
    _check_text("extra_contact_info", report.extra_contact_info)
    _check_text("generator", report.generator)
    for error in report.errors:
        _check_text("error", error)
    if not 0 <= report.begin <= report.end <= MAX_INTEGER:
        raise ReportError(f"date_range: need 0 <= begin <= end, got {report.begin}..{report.end}")
    policy = report.policy
    _check_text("policy_published/domain", policy.domain, required=True)
    _check_value("policy_published/p", policy.p, POLICIES)
    optional: tuple[tuple[str, str | None, tuple[str, ...]], ...] = (
        ("sp", policy.sp, POLICIES),
        ("np", policy.np, POLICIES),
        ("adkim", policy.adkim, ALIGNMENT_MODES),
        ("aspf", policy.aspf, ALIGNMENT_MODES),
        ("testing", policy.testing, _TESTING),
        ("discovery_method", policy.discovery_method, _DISCOVERY_METHODS),
    )
    for name, value, allowed in optional:
        _check_value(f"policy_published/{name}", value, allowed, optional=True)
    _check_text("policy_published/fo", policy.fo)
    if not report.records:
        raise ReportError("a report needs at least one record (section 2.1.1.2)")
    for number, record in enumerate(report.records, 1):
        _check_record(f"record {number}", record)


def _check_record(where: str, record: ReportRecord) -> None:
    _normal_ip(record.source_ip, where)
    if not 0 <= record.count <= MAX_INTEGER:
        raise ReportError(f"{where}: count {record.count} is out of range")
    evaluated = record.evaluated
    _check_value(f"{where}: disposition", evaluated.disposition, DISPOSITIONS)
    _check_value(f"{where}: policy_evaluated/dkim", evaluated.dkim, _DMARC_RESULTS)
    _check_value(f"{where}: policy_evaluated/spf", evaluated.spf, _DMARC_RESULTS)
    for reason in evaluated.reasons:
        _check_value(f"{where}: reason/type", reason.type, OVERRIDE_REASONS)
        _check_text(f"{where}: reason/comment", reason.comment)
    _check_text(f"{where}: header_from", record.header_from, required=True)
    _check_text(f"{where}: envelope_from", record.envelope_from)
    _check_text(f"{where}: envelope_to", record.envelope_to)
    for dkim in record.dkim:
        _check_text(f"{where}: dkim/domain", dkim.domain, required=True)
        _check_text(f"{where}: dkim/selector", dkim.selector)
        _check_value(f"{where}: dkim/result", dkim.result, DKIM_RESULTS)
        _check_text(f"{where}: dkim/human_result", dkim.human_result)
    if len(record.spf) > 1:
        raise ReportError(f"{where}: at most one spf result (section 2.1.1.11)")
    for spf in record.spf:
        _check_text(f"{where}: spf/domain", spf.domain, required=True)
        _check_value(f"{where}: spf/scope", spf.scope, ("mfrom",), optional=True)
        _check_value(f"{where}: spf/result", spf.result, SPF_RESULTS)
        _check_text(f"{where}: spf/human_result", spf.human_result)


def _check_text(where: str, value: str | None, *, required: bool = False) -> None:
    if value is None:
        if required:
            raise ReportError(f"{where} is required")
        return
    if required and not value.strip():
        raise ReportError(f"{where} must not be empty")
    bad = _NOT_XML_CHAR.search(value)
    if bad:
        raise ReportError(f"{where}: character {bad.group()!r} cannot be written in XML")


def _check_value(where: str, value: str | None, allowed: Iterable[str], *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if value is None or value not in allowed:
        raise ReportError(f"{where}: {value!r} is not one of {', '.join(allowed)}")


def _normal_ip(value: str, where: str = "source_ip") -> str:
    try:
        return ipaddress.ip_address(value.strip()).compressed
    except ValueError:
        raise ReportError(f"{where}: {_show(value)} is not an IP address") from None


# ---------------------------------------------------------------------------------------------------------
# Reading


class _Node:
    """An element we read: its text and the children we read, by local name."""

    __slots__ = ("children", "name", "text")

    def __init__(self, name: str) -> None:
        self.name = name
        self.text: list[str] = []
        self.children: dict[str, list[_Node]] = {}


# The elements read, by path of local names (below <feedback>); every other element is skipped whole.
_READ: dict[tuple[str, ...], frozenset[str]] = {
    (): frozenset({"feedback"}),
    ("feedback",): frozenset({"version", "report_metadata", "policy_published", "record"}),
    ("feedback", "report_metadata"): frozenset(
        {"org_name", "email", "extra_contact_info", "report_id", "date_range", "error", "generator"}
    ),
    ("feedback", "report_metadata", "date_range"): frozenset({"begin", "end"}),
    ("feedback", "policy_published"): frozenset(
        {"domain", "discovery_method", "p", "sp", "np", "fo", "adkim", "aspf", "testing", "pct"}
    ),
    ("feedback", "record"): frozenset({"row", "identifiers", "auth_results"}),
    ("feedback", "record", "row"): frozenset({"source_ip", "count", "policy_evaluated"}),
    ("feedback", "record", "row", "policy_evaluated"): frozenset({"disposition", "dkim", "spf", "reason"}),
    ("feedback", "record", "row", "policy_evaluated", "reason"): frozenset({"type", "comment"}),
    ("feedback", "record", "identifiers"): frozenset({"header_from", "envelope_from", "envelope_to"}),
    ("feedback", "record", "auth_results"): frozenset({"dkim", "spf"}),
    ("feedback", "record", "auth_results", "dkim"): frozenset(
        {"domain", "selector", "result", "human_result"}
    ),
    ("feedback", "record", "auth_results", "spf"): frozenset({"domain", "scope", "result", "human_result"}),
}
_RECORD_PATH = ("feedback", "record")


class _Reader:
    """pyexpat handlers: keep the elements of `_READ`, turn each closed <record> into a ReportRecord."""

    def __init__(self) -> None:
        self.namespace: str | None = None  # the root's
        self.path: list[str] = []  # local names of the open elements we keep
        self.nodes: list[_Node] = []
        self.root: _Node | None = None
        self.skipping = 0  # depth inside an element we skip
        self.depth = 0
        self.records: list[ReportRecord] = []

    def start(self, name: str, attributes: Any) -> None:
        self.depth += 1
        if self.depth > MAX_XML_DEPTH:
            raise ReportError(f"elements nested deeper than {MAX_XML_DEPTH}")
        if self.skipping:
            self.skipping += 1
            return
        namespace, _, local = name.rpartition("}")  # "}" is no name character: the last one separates
        if self.namespace is None:
            if local != "feedback":
                raise ReportError(f"the root element is <{_show(local, 40)}>, not <feedback>")
            if namespace not in _NAMESPACES:
                raise ReportError(f"unknown namespace {_show(namespace)} of <feedback>")
            self.namespace = namespace
        wanted = _READ.get(tuple(self.path), frozenset())
        if local not in wanted or namespace not in ("", self.namespace):
            self.skipping = 1
            return
        node = _Node(local)
        if self.nodes:
            self.nodes[-1].children.setdefault(local, []).append(node)
        else:
            self.root = node
        self.nodes.append(node)
        self.path.append(local)

    def end(self, name: str) -> None:
        self.depth -= 1
        if self.skipping:
            self.skipping -= 1
            return
        node = self.nodes.pop()
        if tuple(self.path) == _RECORD_PATH:
            self.records.append(_record(node, len(self.records) + 1))
            self.nodes[-1].children["record"].pop()  # converted: drop the markup
        self.path.pop()

    def data(self, text: str) -> None:
        if not self.skipping and self.nodes:
            self.nodes[-1].text.append(text)


def _refuse_declarations(*args: object) -> int:
    raise ReportError("DOCTYPE, entity and notation declarations are not accepted")


def parse_aggregate_xml(data: bytes) -> AggregateReport:
    """Read an aggregate report (RFC 9990 or RFC 7489 form). `ReportError` for anything else."""
    if len(data) > MAX_XML_BYTES:
        raise ReportError(f"report larger than {MAX_XML_BYTES} bytes")
    reader = _Reader()
    parser = expat.ParserCreate(namespace_separator="}")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    # Each of these is called before expat acts on the declaration, so a document with one stops there.
    parser.StartDoctypeDeclHandler = _refuse_declarations
    parser.EntityDeclHandler = _refuse_declarations
    parser.UnparsedEntityDeclHandler = _refuse_declarations
    parser.NotationDeclHandler = _refuse_declarations
    parser.ExternalEntityRefHandler = _refuse_declarations
    parser.StartElementHandler = reader.start
    parser.EndElementHandler = reader.end
    parser.CharacterDataHandler = reader.data
    parser.buffer_text = True
    try:
        parser.Parse(data, True)
    except ReportError:
        raise
    except expat.ExpatError as exc:
        raise ReportError(f"not well-formed XML: {exc}") from None
    except (ValueError, LookupError) as exc:  # encodings pyexpat cannot use (multi-byte codecs, ...)
        raise ReportError(f"unreadable XML: {exc}") from None
    if reader.root is None:
        raise ReportError("no <feedback> element")
    return _report(reader.root, reader.records, reader.namespace or "")


def _report(root: _Node, records: list[ReportRecord], namespace: str) -> AggregateReport:
    meta = _one(root, "report_metadata", "feedback")
    dates = _one(meta, "date_range", "report_metadata")
    begin = _integer(dates, "begin", "date_range")
    end = _integer(dates, "end", "date_range")
    if end < begin:
        raise ReportError(f"date_range: end {end} is before begin {begin}")
    if not records:
        raise ReportError("no <record> (section 2.1.1.2 asks for at least one)")
    return AggregateReport(
        org_name=_value(meta, "org_name", "report_metadata"),
        email=_value(meta, "email", "report_metadata"),
        report_id=_value(meta, "report_id", "report_metadata"),
        begin=begin,
        end=end,
        policy=_policy(_one(root, "policy_published", "feedback")),
        records=tuple(records),
        extra_contact_info=_free(meta, "extra_contact_info", "report_metadata"),
        errors=tuple(_cut(_joined(node)) for node in meta.children.get("error", ()) if _joined(node)),
        generator=_free(meta, "generator", "report_metadata"),
        version=_optional_value(root, "version", "feedback"),
        namespace=namespace,
    )


def _policy(node: _Node) -> PolicyPublished:
    where = "policy_published"
    pct = _optional_value(node, "pct", where)
    if pct is not None and not (_DIGITS.fullmatch(pct) and int(pct) <= 100):
        raise ReportError(f"{where}/pct: {_show(pct)} is not a percentage")
    return PolicyPublished(
        domain=_value(node, "domain", where).lower(),
        p=_enum(node, "p", where, POLICIES),
        sp=_optional_enum(node, "sp", where, POLICIES),
        np=_optional_enum(node, "np", where, POLICIES),
        adkim=_optional_enum(node, "adkim", where, ALIGNMENT_MODES),
        aspf=_optional_enum(node, "aspf", where, ALIGNMENT_MODES),
        testing=_optional_enum(node, "testing", where, _TESTING),
        discovery_method=_lower(_optional_value(node, "discovery_method", where)),
        fo=_optional_value(node, "fo", where),
        pct=None if pct is None else int(pct),
    )


def _record(node: _Node, number: int) -> ReportRecord:
    where = f"record {number}"
    row = _one(node, "row", where)
    evaluated = _one(row, "policy_evaluated", f"{where}: row")
    ev_where = f"{where}: policy_evaluated"
    reasons = tuple(
        PolicyOverrideReason(
            type=_value(reason, "type", f"{ev_where}/reason").lower(),
            comment=_free(reason, "comment", f"{ev_where}/reason"),
        )
        for reason in evaluated.children.get("reason", ())
    )
    identifiers = _one(node, "identifiers", where)
    id_where = f"{where}: identifiers"
    auth = _one(node, "auth_results", where)
    envelope_from = _optional_node(identifiers, "envelope_from", id_where)
    return ReportRecord(
        source_ip=_normal_ip(_value(row, "source_ip", f"{where}: row"), f"{where}: source_ip"),
        count=_integer(row, "count", f"{where}: row"),
        evaluated=PolicyEvaluated(
            disposition=_enum(evaluated, "disposition", ev_where, DISPOSITIONS),
            dkim=_enum(evaluated, "dkim", ev_where, _DMARC_RESULTS),
            spf=_enum(evaluated, "spf", ev_where, _DMARC_RESULTS),
            reasons=reasons,
        ),
        header_from=_value(identifiers, "header_from", id_where).lower(),
        # Present but empty is meaningful here: a null reverse-path (section 2.1.1.10).
        envelope_from=None if envelope_from is None else _bounded(_joined(envelope_from), id_where).lower(),
        envelope_to=_lower(_optional_value(identifiers, "envelope_to", id_where)),
        dkim=tuple(_dkim(d, f"{where}: auth_results/dkim") for d in auth.children.get("dkim", ())),
        spf=tuple(_spf(s, f"{where}: auth_results/spf") for s in auth.children.get("spf", ())),
    )


def _dkim(node: _Node, where: str) -> DkimAuth:
    return DkimAuth(
        domain=_value(node, "domain", where).lower(),
        selector=_optional_value(node, "selector", where) or "",
        result=_enum(node, "result", where, DKIM_RESULTS),
        human_result=_free(node, "human_result", where),
    )


def _spf(node: _Node, where: str) -> SpfAuth:
    result = _value(node, "result", where).lower()
    return SpfAuth(
        domain=_value(node, "domain", where).lower(),
        result=_allowed(_SPF_ALIASES.get(result, result), f"{where}/result", SPF_RESULTS),
        scope=_lower(_optional_value(node, "scope", where)),
        human_result=_free(node, "human_result", where),
    )


def _optional_node(parent: _Node, name: str, where: str) -> _Node | None:
    nodes = parent.children.get(name)
    if not nodes:
        return None
    if len(nodes) > 1:
        raise ReportError(f"{where}/{name} is given {len(nodes)} times")
    return nodes[0]


def _one(parent: _Node, name: str, where: str) -> _Node:
    node = _optional_node(parent, name, where)
    if node is None:
        raise ReportError(f"{where}/{name} is missing")
    return node


def _joined(node: _Node) -> str:
    return "".join(node.text).strip()


def _bounded(value: str, where: str) -> str:
    if len(value) > MAX_VALUE:
        raise ReportError(f"{where}: value longer than {MAX_VALUE} characters")
    return value


def _optional_value(parent: _Node, name: str, where: str) -> str | None:
    """The element's text; None when it is absent or empty (an empty optional element says nothing)."""
    node = _optional_node(parent, name, where)
    if node is None:
        return None
    return _bounded(_joined(node), f"{where}/{name}") or None


def _value(parent: _Node, name: str, where: str) -> str:
    node = _one(parent, name, where)
    value = _bounded(_joined(node), f"{where}/{name}")
    if not value:
        raise ReportError(f"{where}/{name} is empty")
    return value


def _free(parent: _Node, name: str, where: str) -> str | None:
    node = _optional_node(parent, name, where)
    if node is None:
        return None
    return _cut(_joined(node)) or None


def _cut(text: str) -> str:
    return text[:MAX_FREE_TEXT]


def _lower(value: str | None) -> str | None:
    return None if value is None else value.lower()


def _enum(parent: _Node, name: str, where: str, allowed: tuple[str, ...]) -> str:
    return _allowed(_value(parent, name, where).lower(), f"{where}/{name}", allowed)


def _optional_enum(parent: _Node, name: str, where: str, allowed: tuple[str, ...]) -> str | None:
    value = _optional_value(parent, name, where)
    return None if value is None else _allowed(value.lower(), f"{where}/{name}", allowed)


def _allowed(value: str, where: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ReportError(f"{where}: {_show(value)} is not one of {', '.join(allowed)}")
    return value


def _integer(parent: _Node, name: str, where: str) -> int:
    value = _value(parent, name, where)
    if not _DIGITS.fullmatch(value) or len(value) > 19 or int(value) > MAX_INTEGER:
        raise ReportError(f"{where}/{name}: {_show(value)} is not a non-negative integer")
    return int(value)


def _show(value: str, limit: int = 80) -> str:
    """A value for an error text: quoted, and cut when long."""
    return repr(value if len(value) <= limit else value[:limit] + "...")
