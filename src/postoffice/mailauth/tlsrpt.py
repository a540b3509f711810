"""SMTP TLS Reporting (RFC 8460): the TXT record that asks for reports, and the JSON report, built for the
reports we send and read from the reports we receive. Pure functions, no I/O.

Implementation notes
- The record (section 3): TXT at `_smtp._tls.<domain>`, the strings of one record joined without spaces.
  `select_tlsrpt_record` keeps the records that begin with `v=TLSRPTv1` followed by the field delimiter
  (`*WSP ";"`; the version literal is case-sensitive, %s in the ABNF); any number but exactly one means the
  domain has no TLSRPT. `parse_tlsrpt_record` follows the ABNF: fields `name=value` separated by `*WSP ";"
  *WSP`, an optional trailing delimiter; `rua=` is required and is a comma list (with optional WSP around the
  commas) of URIs, which must escape "," and "!" (so neither may appear raw); extensions
  (`(ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")` "=" `1*(%x21-3A / %x3C / %x3E-7E)`) are skipped,
  as section 3 asks of unknown fields. Several rua fields are merged in order. The URIs returned are those
  with the two schemes section 3 defines, mailto: and https:, as written; a record whose rua names none of
  them is refused (`TlsRptError`), since nothing could be sent.
- The report (section 4.4, the JSON example in 4.5): `build_tlsrpt_json` writes the members in the order of
  4.4, dates as RFC 3339 UTC (`2016-04-01T00:00:00Z`), only the optional members that have a value. Values
  are checked first (policy-type one of tlsa / sts / no-policy-found; result-type one of the 4.3 list;
  counts >= 0; aware datetimes with start <= end; IP addresses): `TlsRptError`.
- Reading (`parse_tlsrpt_json`): strict about what a report needs - organization-name, date-range with both
  datetimes, contact-info, report-id, policies; per policy: policy with policy-type and policy-domain, and
  summary with both counts; per failure detail: result-type and failed-session-count - and about their JSON
  types. Unknown members are ignored, as are the optional ones' `null`s. Tolerated deviations seen in the
  wild: a datetime without a time zone (Microsoft sent such) is read as UTC; an `mx-host` given as one string
  (the RFC's own example did so before erratum 6241) becomes a one-element list. result-type values outside
  4.3 are kept as written (the IANA registry may grow); policy-type is checked. Counts must be JSON integers
  (not booleans, not floats) in 0..2**63-1; strings must not carry lone surrogates (they could not be stored
  as UTF-8). Input: UTF-8 (a BOM is skipped), at most MAX_JSON_BYTES; deep nesting, huge numbers, NaN and
  Infinity are refused. Never raises anything but `TlsRptError` for any input bytes (fuzzed by the tests).

Not done here: the mail around a report (report_mail.py); HTTPS delivery (section 5.4).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_JSON_BYTES",
    "POLICY_TYPES",
    "RESULT_TYPES",
    "FailureDetail",
    "PolicyResult",
    "TlsPolicy",
    "TlsReport",
    "TlsRptError",
    "build_tlsrpt_json",
    "parse_tlsrpt_json",
    "parse_tlsrpt_record",
    "select_tlsrpt_record",
]

#: Largest report read (the same bound report_mail.py puts on decompression).
MAX_JSON_BYTES = 10 * 1024 * 1024
#: Longest string value kept (policy-string lines, host names, free text).
MAX_STRING = 4096
#: Largest session count read (fits a signed 64-bit integer column).
MAX_COUNT = 2**63 - 1

#: policy-type values (section 4.4).
POLICY_TYPES = ("tlsa", "sts", "no-policy-found")
#: result-type values (section 4.3; the IANA "STARTTLS Validation Result Types" registry).
RESULT_TYPES = (
    "starttls-not-supported",
    "certificate-host-mismatch",
    "certificate-expired",
    "certificate-not-trusted",
    "validation-failure",
    "tlsa-invalid",
    "dnssec-invalid",
    "dane-required",
    "sts-policy-fetch-error",
    "sts-policy-invalid",
    "sts-webpki-invalid",
)

_VERSION = "v=TLSRPTv1"
_DELIMITER = re.compile(r"[ \t]*;[ \t]*")
_FIELD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
_EXT_VALUE = re.compile(r"[\x21-\x3a\x3c\x3e-\x7e]+")
# A URI (RFC 3986) without raw "," or "!" (section 3), scheme first; checked more closely per scheme below.
_URI = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):([\x23-\x2b\x2d-\x3a\x3c-\x7e]+)")
_URI_LIST_SEPARATOR = re.compile(r"[ \t]*,[ \t]*")
_SCHEMES = ("mailto", "https")
_SURROGATE = re.compile("[\ud800-\udfff]")
# RFC 3339 section 5.6 date-time; a missing offset is tolerated (read as UTC).
_DATE_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,9})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})?"
)


class TlsRptError(ValueError):
    """A TLSRPT record or report that cannot be read (or, when building, written); the text says why."""


# ---------------------------------------------------------------------------------------------------------
# The record (section 3)


def select_tlsrpt_record(txt_records: Iterable[str]) -> str | None:
    """The one TLSRPT record among the TXT records at `_smtp._tls.<domain>` (each its strings joined), or None
    when there is none or more than one (section 3: then the domain does not do TLSRPT)."""
    found = [txt for txt in txt_records if _is_tlsrpt(txt)]
    return found[0] if len(found) == 1 else None


def _is_tlsrpt(txt: str) -> bool:
    return txt.startswith(_VERSION) and _DELIMITER.match(txt, len(_VERSION)) is not None


def parse_tlsrpt_record(txt: str) -> list[str]:
    """The report URIs (mailto: and https:) of a TLSRPT record, in the record's order. `TlsRptError` when the
    record is not valid by section 3 or names no URI we could send to."""
    if not txt.startswith(_VERSION):
        raise TlsRptError(f"a TLSRPT record begins with {_VERSION}")
    position = len(_VERSION)
    uris: list[str] = []
    saw_rua = False
    while position < len(txt):
        delimiter = _DELIMITER.match(txt, position)
        if delimiter is None:
            raise TlsRptError(f"expected ';' at {_show(txt[position:])}")
        position = delimiter.end()
        if position == len(txt):
            break  # the optional trailing delimiter
        name = _FIELD_NAME.match(txt, position)
        if name is None or not txt.startswith("=", name.end()):
            raise TlsRptError(f"expected name=value at {_show(txt[position:])}")
        position = name.end() + 1
        if name.group() == "rua":
            saw_rua = True
            position = _read_uris(txt, position, uris)
        else:
            value = _EXT_VALUE.match(txt, position)
            if value is None:
                raise TlsRptError(f"empty or invalid value of {name.group()!r}")
            position = value.end()
    if not saw_rua:
        raise TlsRptError("the record has no rua field")
    if not uris:
        raise TlsRptError("rua names no mailto: or https: URI")
    return uris


def _read_uris(txt: str, position: int, uris: list[str]) -> int:
    while True:
        uri = _URI.match(txt, position)
        if uri is None:
            raise TlsRptError(f"expected a URI at {_show(txt[position:])}")
        if uri.group(1).lower() in _SCHEMES:
            _check_uri(uri.group(1).lower(), uri.group(2))
            uris.append(uri.group())
        position = uri.end()
        separator = _URI_LIST_SEPARATOR.match(txt, position)
        if separator is None:
            return position
        position = separator.end()


def _check_uri(scheme: str, rest: str) -> None:
    if "%" in rest and re.search(r"%(?![0-9A-Fa-f]{2})", rest):
        raise TlsRptError(f"bad percent escape in {_show(rest)}")
    if scheme == "mailto" and "@" not in rest:
        raise TlsRptError(f"mailto: without an address: {_show(rest)}")
    if scheme == "https" and (not rest.startswith("//") or len(rest) == 2 or rest[2] in "/?#"):
        raise TlsRptError(f"https: without a host: {_show(rest)}")


# ---------------------------------------------------------------------------------------------------------
# The report (section 4)


@dataclass(frozen=True)
class TlsPolicy:
    """policy (section 4.4): the policy the sessions were checked against."""

    policy_type: str  # POLICY_TYPES
    policy_domain: str
    policy_strings: tuple[str, ...] = ()  # the TLSA records or the lines of the MTA-STS policy
    mx_hosts: tuple[str, ...] = ()  # MX host patterns of an STS policy


@dataclass(frozen=True)
class FailureDetail:
    """One entry of failure-details (section 4.4): sessions that failed one way."""

    result_type: str  # RESULT_TYPES (reading keeps other registered values as written)
    failed_session_count: int
    sending_mta_ip: str | None = None
    receiving_mx_hostname: str | None = None
    receiving_mx_helo: str | None = None
    receiving_ip: str | None = None
    additional_information: str | None = None  # a URI
    failure_reason_code: str | None = None


@dataclass(frozen=True)
class PolicyResult:
    """One entry of policies (section 4.4): a policy, its summary counts and its failures."""

    policy: TlsPolicy
    total_successful_session_count: int
    total_failure_session_count: int
    failure_details: tuple[FailureDetail, ...] = ()


@dataclass(frozen=True)
class TlsReport:
    """A TLSRPT report (section 4.4) about one Policy Domain's sessions over one period."""

    organization_name: str
    start: datetime.datetime  # date-range start-datetime, timezone-aware (UTC when read)
    end: datetime.datetime  # end-datetime
    contact_info: str  # a contact point, typically an email address
    report_id: str
    policies: tuple[PolicyResult, ...]


def build_tlsrpt_json(report: TlsReport) -> bytes:
    """The report as RFC 8460 JSON (UTF-8). `TlsRptError` for a value the format cannot carry."""
    for name in ("organization_name", "contact_info", "report_id"):
        _check_string(name.replace("_", "-"), getattr(report, name), required=True)
    start, end = _utc(report.start, "start-datetime"), _utc(report.end, "end-datetime")
    if end < start:
        raise TlsRptError("date-range: end-datetime is before start-datetime")
    document = {
        "organization-name": report.organization_name,
        "date-range": {"start-datetime": _rfc3339(start), "end-datetime": _rfc3339(end)},
        "contact-info": report.contact_info,
        "report-id": report.report_id,
        "policies": [_policy_json(result, number) for number, result in enumerate(report.policies, 1)],
    }
    return json.dumps(document, ensure_ascii=False, indent=2).encode() + b"\n"


def _policy_json(result: PolicyResult, number: int) -> dict[str, Any]:
    where = f"policy {number}"
    policy = result.policy
    if policy.policy_type not in POLICY_TYPES:
        raise TlsRptError(
            f"{where}: policy-type {policy.policy_type!r} is not one of {', '.join(POLICY_TYPES)}"
        )
    _check_string(f"{where}: policy-domain", policy.policy_domain, required=True)
    for line in (*policy.policy_strings, *policy.mx_hosts):
        _check_string(f"{where}: policy-string or mx-host", line)
    policy_json: dict[str, Any] = {"policy-type": policy.policy_type}
    if policy.policy_strings:
        policy_json["policy-string"] = list(policy.policy_strings)
    policy_json["policy-domain"] = policy.policy_domain
    if policy.mx_hosts:
        policy_json["mx-host"] = list(policy.mx_hosts)
    for count in (result.total_successful_session_count, result.total_failure_session_count):
        _check_count(f"{where}: summary", count)
    entry: dict[str, Any] = {
        "policy": policy_json,
        "summary": {
            "total-successful-session-count": result.total_successful_session_count,
            "total-failure-session-count": result.total_failure_session_count,
        },
    }
    if result.failure_details:
        entry["failure-details"] = [_detail_json(detail, where) for detail in result.failure_details]
    return entry


def _detail_json(detail: FailureDetail, where: str) -> dict[str, Any]:
    if detail.result_type not in RESULT_TYPES:
        raise TlsRptError(f"{where}: result-type {detail.result_type!r} is not one of section 4.3's")
    out: dict[str, Any] = {"result-type": detail.result_type}
    optional = (
        ("sending-mta-ip", detail.sending_mta_ip, True),
        ("receiving-mx-hostname", detail.receiving_mx_hostname, False),
        ("receiving-mx-helo", detail.receiving_mx_helo, False),
        ("receiving-ip", detail.receiving_ip, True),
    )
    for key, value, is_ip in optional:
        if value is not None:
            out[key] = _ip(value, f"{where}: {key}") if is_ip else _checked(value, f"{where}: {key}")
    _check_count(f"{where}: failed-session-count", detail.failed_session_count)
    out["failed-session-count"] = detail.failed_session_count
    if detail.additional_information is not None:
        out["additional-information"] = _checked(
            detail.additional_information, f"{where}: additional-information"
        )
    if detail.failure_reason_code is not None:
        out["failure-reason-code"] = _checked(detail.failure_reason_code, f"{where}: failure-reason-code")
    return out


def _checked(value: str, where: str) -> str:
    _check_string(where, value)
    return value


def _check_string(where: str, value: str, *, required: bool = False) -> None:
    if required and not value.strip():
        raise TlsRptError(f"{where} must not be empty")
    if _SURROGATE.search(value):
        raise TlsRptError(f"{where}: lone surrogate")


def _check_count(where: str, count: int) -> None:
    if not 0 <= count <= MAX_COUNT:
        raise TlsRptError(f"{where}: count {count} out of range")


def _utc(moment: datetime.datetime, where: str) -> datetime.datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise TlsRptError(f"{where}: a datetime with a time zone is needed")
    return moment.astimezone(datetime.UTC)


def _rfc3339(moment: datetime.datetime) -> str:
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def _ip(value: str, where: str) -> str:
    try:
        return ipaddress.ip_address(value.strip()).compressed
    except ValueError:
        raise TlsRptError(f"{where}: {_show(value)} is not an IP address") from None


# Reading


def _refuse_constant(name: str) -> Any:
    raise TlsRptError(f"{name} is not a JSON number")


def parse_tlsrpt_json(data: bytes) -> TlsReport:
    """Read a TLSRPT report. `TlsRptError` for anything that is not one (see the module notes)."""
    if len(data) > MAX_JSON_BYTES:
        raise TlsRptError(f"report larger than {MAX_JSON_BYTES} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TlsRptError(f"not UTF-8: {exc}") from None
    try:
        document = json.loads(text, parse_constant=_refuse_constant)
    except TlsRptError:
        raise
    except RecursionError:
        raise TlsRptError("JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and integers with too many digits
        raise TlsRptError(f"not JSON: {exc}") from None
    report = _object(document, "the report")
    dates = _object(_member(report, "date-range", "the report"), "date-range")
    start = _datetime(dates, "start-datetime")
    end = _datetime(dates, "end-datetime")
    if end < start:
        raise TlsRptError("date-range: end-datetime is before start-datetime")
    policies = _array(_member(report, "policies", "the report"), "policies")
    return TlsReport(
        organization_name=_string(report, "organization-name", "the report"),
        start=start,
        end=end,
        contact_info=_string(report, "contact-info", "the report"),
        report_id=_string(report, "report-id", "the report"),
        policies=tuple(_policy_result(entry, number) for number, entry in enumerate(policies, 1)),
    )


def _policy_result(value: object, number: int) -> PolicyResult:
    where = f"policy {number}"
    entry = _object(value, where)
    policy = _object(_member(entry, "policy", where), f"{where}: policy")
    summary = _object(_member(entry, "summary", where), f"{where}: summary")
    policy_type = _string(policy, "policy-type", f"{where}: policy")
    if policy_type not in POLICY_TYPES:
        raise TlsRptError(
            f"{where}: policy-type {_show(policy_type)} is not one of {', '.join(POLICY_TYPES)}"
        )
    mx_hosts = policy.get("mx-host")
    details = entry.get("failure-details")
    return PolicyResult(
        policy=TlsPolicy(
            policy_type=policy_type,
            policy_domain=_string(policy, "policy-domain", f"{where}: policy"),
            policy_strings=_strings(policy.get("policy-string"), f"{where}: policy-string"),
            mx_hosts=(_bounded(mx_hosts, f"{where}: mx-host"),)
            if isinstance(mx_hosts, str)
            else _strings(mx_hosts, f"{where}: mx-host"),
        ),
        total_successful_session_count=_count(summary, "total-successful-session-count", f"{where}: summary"),
        total_failure_session_count=_count(summary, "total-failure-session-count", f"{where}: summary"),
        failure_details=()
        if details is None
        else tuple(
            _failure_detail(item, f"{where}: failure-detail {n}")
            for n, item in enumerate(_array(details, f"{where}: failure-details"), 1)
        ),
    )


def _failure_detail(value: object, where: str) -> FailureDetail:
    detail = _object(value, where)
    sending_ip = _optional_string(detail, "sending-mta-ip", where)
    receiving_ip = _optional_string(detail, "receiving-ip", where)
    return FailureDetail(
        result_type=_string(detail, "result-type", where).lower(),
        failed_session_count=_count(detail, "failed-session-count", where),
        sending_mta_ip=None if sending_ip is None else _ip(sending_ip, f"{where}: sending-mta-ip"),
        receiving_mx_hostname=_optional_string(detail, "receiving-mx-hostname", where),
        receiving_mx_helo=_optional_string(detail, "receiving-mx-helo", where),
        receiving_ip=None if receiving_ip is None else _ip(receiving_ip, f"{where}: receiving-ip"),
        additional_information=_optional_string(detail, "additional-information", where),
        failure_reason_code=_optional_string(detail, "failure-reason-code", where),
    )


def _object(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise TlsRptError(f"{where} is not a JSON object")
    return value


def _array(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise TlsRptError(f"{where} is not a JSON array")
    return value


def _member(parent: Mapping[str, Any], key: str, where: str) -> object:
    if parent.get(key) is None:
        raise TlsRptError(f"{where}: {key} is missing")
    return parent[key]


def _bounded(value: str, where: str) -> str:
    if len(value) > MAX_STRING:
        raise TlsRptError(f"{where}: longer than {MAX_STRING} characters")
    if _SURROGATE.search(value):
        raise TlsRptError(f"{where}: lone surrogate")
    return value


def _string(parent: Mapping[str, Any], key: str, where: str) -> str:
    value = _member(parent, key, where)
    if not isinstance(value, str):
        raise TlsRptError(f"{where}: {key} is not a string")
    value = _bounded(value, f"{where}: {key}").strip()
    if not value:
        raise TlsRptError(f"{where}: {key} is empty")
    return value


def _optional_string(parent: Mapping[str, Any], key: str, where: str) -> str | None:
    value = parent.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise TlsRptError(f"{where}: {key} is not a string")
    return _bounded(value, f"{where}: {key}").strip() or None


def _strings(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = _array(value, where)
    if not all(isinstance(item, str) for item in items):
        raise TlsRptError(f"{where} is not an array of strings")
    return tuple(_bounded(item, where) for item in items)


def _count(parent: Mapping[str, Any], key: str, where: str) -> int:
    value = _member(parent, key, where)
    if type(value) is not int or not 0 <= value <= MAX_COUNT:
        raise TlsRptError(f"{where}: {key} is not a count")
    return value


def _datetime(parent: Mapping[str, Any], key: str) -> datetime.datetime:
    text = _string(parent, key, "date-range")
    match = _DATE_TIME.fullmatch(text)
    if match is None:
        raise TlsRptError(f"date-range: {key} {_show(text)} is not an RFC 3339 date-time")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction, offset = match.group(7), match.group(8)
    microsecond = int((fraction[1:] + "000000")[:6]) if fraction else 0
    zone = datetime.UTC
    if offset and offset not in "Zz":
        sign = 1 if offset[0] == "+" else -1
        hours, minutes = int(offset[1:3]), int(offset[4:6])
        if hours > 23 or minutes > 59:
            raise TlsRptError(f"date-range: {key} has a bad offset {offset!r}")
        zone = datetime.timezone(sign * datetime.timedelta(hours=hours, minutes=minutes))
    if second == 60:
        second = 59  # a leap second (RFC 3339 5.7) is read as the second before it
    try:
        moment = datetime.datetime(year, month, day, hour, minute, second, microsecond, zone)
        return moment.astimezone(datetime.UTC)
    except (ValueError, OverflowError):
        raise TlsRptError(f"date-range: {key} {_show(text)} is not a valid date-time") from None


def _show(value: str, limit: int = 80) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")
