"""SMTP TLS Reporting (RFC 8460): the TXT record (section 3) and choosing it among TXT records, the JSON
report (section 4) written and read back, the RFC's own example and deviations seen in the wild, refusals of
malformed reports, and the parsers fuzzed."""

from __future__ import annotations

import dataclasses
import datetime
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from postoffice.mailauth.tlsrpt import (
    MAX_JSON_BYTES,
    POLICY_TYPES,
    RESULT_TYPES,
    FailureDetail,
    PolicyResult,
    TlsPolicy,
    TlsReport,
    TlsRptError,
    build_tlsrpt_json,
    parse_tlsrpt_json,
    parse_tlsrpt_record,
    select_tlsrpt_record,
)

DATA = Path(__file__).parent / "data" / "reports"
UTC = datetime.UTC

REPORT = TlsReport(
    organization_name="Postoffice at mail.example.org",
    start=datetime.datetime(2024, 3, 1, tzinfo=UTC),
    end=datetime.datetime(2024, 3, 1, 23, 59, 59, tzinfo=UTC),
    contact_info="tlsrpt@mail.example.org",
    report_id="1709251200.example.net@mail.example.org",
    policies=(
        PolicyResult(
            policy=TlsPolicy(
                policy_type="sts",
                policy_domain="example.net",
                policy_strings=("version: STSv1", "mode: enforce", "mx: mx1.example.net", "max_age: 86400"),
                mx_hosts=("mx1.example.net",),
            ),
            total_successful_session_count=41,
            total_failure_session_count=2,
            failure_details=(
                FailureDetail(
                    result_type="certificate-host-mismatch",
                    failed_session_count=2,
                    sending_mta_ip="192.0.2.25",
                    receiving_mx_hostname="mx1.example.net",
                    receiving_mx_helo="mx1.hosting.example",
                    receiving_ip="2001:db8::25",
                    additional_information="https://mail.example.org/tlsrpt/info",
                    failure_reason_code="X509_V_ERR_HOSTNAME_MISMATCH",
                ),
            ),
        ),
        PolicyResult(
            policy=TlsPolicy(policy_type="no-policy-found", policy_domain="example.net"),
            total_successful_session_count=0,
            total_failure_session_count=0,
        ),
    ),
)


# --- the record -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "uris"),
    [
        ("v=TLSRPTv1; rua=mailto:reports@example.com", ["mailto:reports@example.com"]),
        (
            "v=TLSRPTv1;rua=https://reporting.example.com/v1/tlsrpt",
            ["https://reporting.example.com/v1/tlsrpt"],
        ),
        (
            "v=TLSRPTv1; rua=mailto:a@example.com , https://r.example.com/x?y=1;",
            ["mailto:a@example.com", "https://r.example.com/x?y=1"],
        ),
        ("v=TLSRPTv1 ;\trua=mailto:a@example.com; ext.v-1=opaque:value; ", ["mailto:a@example.com"]),
        (
            "v=TLSRPTv1; rua=mailto:a@example.com; rua=mailto:b@example.com",
            ["mailto:a@example.com", "mailto:b@example.com"],
        ),
        ("v=TLSRPTv1; rua=ftp://x.example/,mailto:a%2Cb@example.com", ["mailto:a%2Cb@example.com"]),
        ("v=TLSRPTv1; rua=MAILTO:a@example.com", ["MAILTO:a@example.com"]),
    ],
)
def test_a_valid_record_gives_its_report_uris(record: str, uris: list[str]) -> None:
    assert parse_tlsrpt_record(record) == uris


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ("v=tlsrptv1; rua=mailto:a@example.com", "begins with"),
        ("v=TLSRPTv1", "no rua"),
        ("v=TLSRPTv1;", "no rua"),
        ("v=TLSRPTv1; ext=1", "no rua"),
        ("v=TLSRPTv1 rua=mailto:a@example.com", "expected ';'"),
        ("v=TLSRPTv1; rua=mailto:a@example.com!10m", "expected ';'"),
        ("v=TLSRPTv1; rua=", "expected a URI"),
        ("v=TLSRPTv1; rua=mailto:a@example.com,", "expected a URI"),
        ("v=TLSRPTv1; rua=ftp://x.example/", "no mailto: or https: URI"),
        ("v=TLSRPTv1; rua=mailto:nobody", "without an address"),
        ("v=TLSRPTv1; rua=https:/path", "without a host"),
        ("v=TLSRPTv1; rua=mailto:a%zz@example.com", "percent escape"),
        ("v=TLSRPTv1; rua=mailto:a@example.com; _ext=1", "name=value"),
        ("v=TLSRPTv1; rua=mailto:a@example.com; ext=", "invalid value"),
        ("v=TLSRPTv1; rua=mailto:a@example.com; " + "e" * 33 + "=1", "name=value"),
    ],
)
def test_an_invalid_record_is_refused(record: str, message: str) -> None:
    with pytest.raises(TlsRptError, match=message):
        parse_tlsrpt_record(record)


def test_exactly_one_record_must_begin_with_the_version() -> None:
    good = "v=TLSRPTv1; rua=mailto:a@example.com"
    assert select_tlsrpt_record(["v=spf1 -all", good, "some verification token"]) == good
    assert select_tlsrpt_record(["v=spf1 -all"]) is None
    assert select_tlsrpt_record([]) is None
    assert select_tlsrpt_record([good, "v=TLSRPTv1;rua=mailto:b@example.com"]) is None
    # "v=TLSRPTv1" has to be followed by the delimiter: these are not TLSRPT records, so the good one counts
    assert select_tlsrpt_record([good, "v=TLSRPTv10;rua=mailto:b@example.com", "v=TLSRPTv1"]) == good


@given(st.text(max_size=200))
@example("v=TLSRPTv1; rua=mailto:\x00@x")
def test_any_text_gives_uris_or_a_record_error(text: str) -> None:
    for candidate in (text, "v=TLSRPTv1; rua=" + text, "v=TLSRPTv1;" + text):
        try:
            uris = parse_tlsrpt_record(candidate)
        except TlsRptError:
            continue
        assert uris
        assert all(uri.lower().startswith(("mailto:", "https:")) for uri in uris)


# --- the report -------------------------------------------------------------------------------------------


def test_the_rfc_example_is_read() -> None:
    report = parse_tlsrpt_json((DATA / "rfc8460-example.json").read_bytes())
    assert report.organization_name == "Company-X"
    assert report.start == datetime.datetime(2016, 4, 1, tzinfo=UTC)
    assert report.end == datetime.datetime(2016, 4, 1, 23, 59, 59, tzinfo=UTC)
    assert report.contact_info == "sts-reporting@company-x.example"
    assert report.report_id == "5065427c-23d3-47ca-b6e0-946ea0e8c4be"
    (result,) = report.policies
    assert result.policy == TlsPolicy(
        "sts",
        "company-y.example",
        ("version: STSv1", "mode: testing", "mx: *.mail.company-y.example", "max_age: 86400"),
        ("*.mail.company-y.example",),
    )
    assert (result.total_successful_session_count, result.total_failure_session_count) == (5326, 303)
    expired, no_starttls, validation = result.failure_details
    assert expired == FailureDetail(
        "certificate-expired",
        100,
        sending_mta_ip="2001:db8:abcd:12::1",
        receiving_mx_hostname="mx1.mail.company-y.example",
    )
    assert no_starttls.receiving_ip == "203.0.113.56"
    assert no_starttls.additional_information is not None
    assert no_starttls.additional_information.endswith("#StarttlsNotSupported")
    assert validation.failure_reason_code == "X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED"
    assert parse_tlsrpt_json(build_tlsrpt_json(report)) == report


def test_a_built_report_reads_back_equal_with_the_members_in_the_rfc_order() -> None:
    data = build_tlsrpt_json(REPORT)
    assert parse_tlsrpt_json(data) == REPORT
    document = json.loads(data)
    assert list(document) == ["organization-name", "date-range", "contact-info", "report-id", "policies"]
    assert document["date-range"] == {
        "start-datetime": "2024-03-01T00:00:00Z",
        "end-datetime": "2024-03-01T23:59:59Z",
    }
    first, second = document["policies"]
    assert list(first) == ["policy", "summary", "failure-details"]
    assert list(first["policy"]) == ["policy-type", "policy-string", "policy-domain", "mx-host"]
    assert list(first["failure-details"][0]) == [
        "result-type",
        "sending-mta-ip",
        "receiving-mx-hostname",
        "receiving-mx-helo",
        "receiving-ip",
        "failed-session-count",
        "additional-information",
        "failure-reason-code",
    ]
    assert second == {
        "policy": {"policy-type": "no-policy-found", "policy-domain": "example.net"},
        "summary": {"total-successful-session-count": 0, "total-failure-session-count": 0},
    }


def _example(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((DATA / "rfc8460-example.json").read_bytes())
    document.update(changes)
    return document


def _parse(document: object) -> TlsReport:
    return parse_tlsrpt_json(json.dumps(document).encode())


def test_deviations_seen_in_the_wild_are_tolerated() -> None:
    document = _example(
        **{
            "date-range": {
                "start-datetime": "2024-01-01T00:00:00",
                "end-datetime": "2024-01-02T01:00:00.5+01:00",
            }
        }
    )
    document["policies"][0]["policy"]["mx-host"] = "*.mail.company-y.example"  # before erratum 6241
    document["policies"][0]["policy"]["policy-string"] = None
    document["policies"][0]["failure-details"][0]["receiving-mx-helo"] = None
    document["policies"][0]["failure-details"][0]["failure-reason-code"] = ""
    document["policies"][0]["failure-details"][1]["result-type"] = "Some-Future-Type"
    document["unknown-member"] = {"anything": [1, 2]}
    report = _parse(document)
    assert report.start == datetime.datetime(2024, 1, 1, tzinfo=UTC)
    assert report.end == datetime.datetime(2024, 1, 2, 0, 0, 0, 500000, tzinfo=UTC)
    policy = report.policies[0].policy
    assert (policy.mx_hosts, policy.policy_strings) == (("*.mail.company-y.example",), ())
    first, second, _ = report.policies[0].failure_details
    assert (first.receiving_mx_helo, first.failure_reason_code) == (None, None)
    assert second.result_type == "some-future-type"


def _without(path: list[str | int]) -> dict[str, Any]:
    document = _example()
    node: Any = document
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return document


@pytest.mark.parametrize(
    "path",
    [
        ["organization-name"],
        ["date-range"],
        ["date-range", "start-datetime"],
        ["date-range", "end-datetime"],
        ["contact-info"],
        ["report-id"],
        ["policies"],
        ["policies", 0, "policy"],
        ["policies", 0, "policy", "policy-type"],
        ["policies", 0, "policy", "policy-domain"],
        ["policies", 0, "summary"],
        ["policies", 0, "summary", "total-successful-session-count"],
        ["policies", 0, "summary", "total-failure-session-count"],
        ["policies", 0, "failure-details", 0, "result-type"],
        ["policies", 0, "failure-details", 0, "failed-session-count"],
    ],
    ids=lambda path: "/".join(map(str, path)),
)
def test_a_missing_required_member_is_refused(path: list[str | int]) -> None:
    with pytest.raises(TlsRptError, match=f"{path[-1]} is missing"):
        _parse(_without(path))


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "not a JSON object"),
        (_example(policies={}), "policies is not a JSON array"),
        (_example(**{"organization-name": 7}), "not a string"),
        (_example(**{"organization-name": " "}), "is empty"),
        (_example(**{"date-range": {"start-datetime": "yesterday", "end-datetime": "today"}}), "RFC 3339"),
        (
            _example(
                **{
                    "date-range": {
                        "start-datetime": "2024-02-30T00:00:00Z",
                        "end-datetime": "2024-03-01T00:00:00Z",
                    }
                }
            ),
            "not a valid",
        ),
        (
            _example(
                **{
                    "date-range": {
                        "start-datetime": "2024-03-02T00:00:00Z",
                        "end-datetime": "2024-03-01T00:00:00Z",
                    }
                }
            ),
            "before",
        ),
        (
            _example(
                **{
                    "date-range": {
                        "start-datetime": "2024-03-01T00:00:00+25:00",
                        "end-datetime": "2024-03-02T00:00:00Z",
                    }
                }
            ),
            "bad offset",
        ),
    ],
)
def test_malformed_reports_are_refused_with_a_reason(document: object, message: str) -> None:
    with pytest.raises(TlsRptError, match=message):
        _parse(document)


@pytest.mark.parametrize("count", [True, 1.0, "5", -1, 2**63, None])
def test_counts_must_be_non_negative_json_integers(count: object) -> None:
    document = _example()
    document["policies"][0]["summary"]["total-failure-session-count"] = count
    with pytest.raises(TlsRptError, match="total-failure-session-count"):
        _parse(document)


def test_policy_types_are_checked_and_ips_must_be_ips() -> None:
    document = _example()
    document["policies"][0]["policy"]["policy-type"] = "dane"
    with pytest.raises(TlsRptError, match="policy-type"):
        _parse(document)
    document = _example()
    document["policies"][0]["failure-details"][0]["sending-mta-ip"] = "mx.example"
    with pytest.raises(TlsRptError, match="not an IP address"):
        _parse(document)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"a": NaN}', "not a JSON number"),
        (b'{"a": -Infinity}', "not a JSON number"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply|not JSON"),
        (b'{"a": ' + b"9" * 5000 + b"}", "not JSON"),
        (json.dumps(_example(**{"organization-name": "\ud800"})).encode(), "lone surrogate"),
        (b"{", "not JSON"),
        (b" " * (MAX_JSON_BYTES + 1), "larger than"),
    ],
    ids=["utf-16", "nan", "infinity", "deep", "huge-int", "surrogate", "truncated", "too-large"],
)
def test_hostile_json_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(TlsRptError, match=message):
        parse_tlsrpt_json(data)


def test_a_utf8_bom_is_skipped() -> None:
    assert parse_tlsrpt_json(b"\xef\xbb\xbf" + build_tlsrpt_json(REPORT)) == REPORT


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"start": datetime.datetime(2024, 3, 1)}, "time zone"),
        ({"end": datetime.datetime(2024, 2, 1, tzinfo=UTC)}, "before"),
        ({"report_id": ""}, "must not be empty"),
        (
            {"policies": (dataclasses.replace(REPORT.policies[1], policy=TlsPolicy("dane", "example.net")),)},
            "policy-type",
        ),
        (
            {"policies": (dataclasses.replace(REPORT.policies[1], total_failure_session_count=-1),)},
            "out of range",
        ),
        (
            {
                "policies": (
                    dataclasses.replace(REPORT.policies[0], failure_details=(FailureDetail("novel", 1),)),
                )
            },
            "result-type",
        ),
        (
            {
                "policies": (
                    dataclasses.replace(
                        REPORT.policies[0],
                        failure_details=(FailureDetail("dane-required", 1, receiving_ip="x"),),
                    ),
                )
            },
            "not an IP address",
        ),
    ],
)
def test_the_builder_refuses_what_the_format_cannot_carry(change: dict[str, object], message: str) -> None:
    with pytest.raises(TlsRptError, match=message):
        build_tlsrpt_json(dataclasses.replace(REPORT, **change))  # type: ignore[arg-type]


def test_times_in_other_zones_are_written_in_utc() -> None:
    zone = datetime.timezone(datetime.timedelta(hours=2))
    report = dataclasses.replace(REPORT, start=datetime.datetime(2024, 3, 1, 2, 0, 0, 250000, tzinfo=zone))
    document = json.loads(build_tlsrpt_json(report))
    assert document["date-range"]["start-datetime"] == "2024-03-01T00:00:00.25Z"
    assert parse_tlsrpt_json(build_tlsrpt_json(report)).start == report.start


# --- properties -------------------------------------------------------------------------------------------

_texts = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=30).filter(
    lambda s: s.strip() == s and s != ""
)
_ips = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(lambda ip: ip.compressed)
_counts = st.integers(0, 2**63 - 1)
_moments = st.datetimes(
    min_value=datetime.datetime(1970, 1, 2), max_value=datetime.datetime(9999, 1, 1), timezones=st.just(UTC)
)
_details = st.builds(
    FailureDetail,
    result_type=st.sampled_from(RESULT_TYPES),
    failed_session_count=_counts,
    sending_mta_ip=st.none() | _ips,
    receiving_mx_hostname=st.none() | _texts,
    receiving_mx_helo=st.none() | _texts,
    receiving_ip=st.none() | _ips,
    additional_information=st.none() | _texts,
    failure_reason_code=st.none() | _texts,
)
_policies = st.builds(
    PolicyResult,
    policy=st.builds(
        TlsPolicy,
        policy_type=st.sampled_from(POLICY_TYPES),
        policy_domain=_texts,
        policy_strings=st.lists(st.text(max_size=20), max_size=3).map(tuple),
        mx_hosts=st.lists(st.text(max_size=20), max_size=2).map(tuple),
    ),
    total_successful_session_count=_counts,
    total_failure_session_count=_counts,
    failure_details=st.lists(_details, max_size=3).map(tuple),
)


@given(
    st.builds(
        TlsReport, _texts, _moments, _moments, _texts, _texts, st.lists(_policies, max_size=3).map(tuple)
    )
)
def test_every_buildable_report_reads_back_equal(report: TlsReport) -> None:
    if report.end < report.start:
        report = dataclasses.replace(report, start=report.end, end=report.start)
    assert parse_tlsrpt_json(build_tlsrpt_json(report)) == report


def _check_parse(data: bytes) -> None:
    try:
        parse_tlsrpt_json(data)
    except TlsRptError:
        pass


@given(st.binary(max_size=500))
def test_garbage_bytes_give_a_report_error_or_a_report(data: bytes) -> None:
    _check_parse(data)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
_KEYS = [
    "organization-name",
    "date-range",
    "start-datetime",
    "end-datetime",
    "contact-info",
    "report-id",
    "policies",
    "policy",
    "policy-type",
    "policy-domain",
    "policy-string",
    "mx-host",
    "summary",
    "total-successful-session-count",
    "total-failure-session-count",
    "failure-details",
    "result-type",
    "failed-session-count",
    "sending-mta-ip",
]


@given(_json_values)
def test_random_json_gives_a_report_error_or_a_report(value: object) -> None:
    _check_parse(json.dumps(value).encode())


@given(st.data())
def test_the_example_with_random_members_replaced_gives_a_report_error_or_a_report(
    data: st.DataObject,
) -> None:
    document: Any = _example()
    for _ in range(data.draw(st.integers(1, 4))):
        node = document
        while isinstance(node, (dict, list)) and node and data.draw(st.booleans()):
            key = data.draw(st.sampled_from(list(node) if isinstance(node, dict) else list(range(len(node)))))
            if not isinstance(node[key], (dict, list)):
                break
            node = node[key]
        if isinstance(node, dict):
            node[data.draw(st.sampled_from(_KEYS))] = data.draw(_json_values)
        elif isinstance(node, list) and node:
            node[data.draw(st.integers(0, len(node) - 1))] = data.draw(_json_values)
    _check_parse(json.dumps(document).encode())
