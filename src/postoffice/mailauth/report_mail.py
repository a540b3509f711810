"""The mail that carries DMARC aggregate reports (RFC 9990) and SMTP TLS reports (RFC 8460 section 5.3):
writing the messages we send, and finding the reports in the messages we receive. Pure functions, no I/O.

RFC 9990 sections are numbered as in draft-ietf-dmarc-aggregate-reporting-30, the text at hand (see
dmarc_reports.py): 2.5.2 "Email", 2.5.1 the Report-ID.

Implementation notes
- Writing, both kinds: an RFC 5322 message (From, To, Date, Message-ID, Subject, Auto-Submitted, MIME) with a
  short text/plain part first and the report, gzip-compressed (`mtime=0`, so a re-sent report is the same
  bytes), as an attachment. CRLF line ends; the `email` package's SMTP policy, or SMTPUTF8 when an address is
  not ASCII. Header lines are written up to 998 octets (RFC 5322 2.1.1's limit) instead of folded at 78, so
  that the long attachment filenames stay one quoted `filename="..."` instead of RFC 2231 `filename*0*=`
  pieces, which report processors read less reliably; bodies are still base64 in 76-character lines.
  `Auto-Submitted: auto-generated` (RFC 3834 section 5): reports are made by a program, and no one should
  answer them automatically (vacation responders, bounces of bounces).
- Report-ID and Message-ID: the Subject carries the report's report_id (RFC 9990 2.5.1 ridtxt, RFC 8460 5.3
  a msg-id), so it must be a dot-atom-text, "@" and dot-atom-text (`make_report_id` makes one from the
  policy domain, the period's start and our host name; the same report gets the same id when re-sent). The
  Message-ID is that id too (RFC 9990 2.5.2 allows it; a re-sent report then has the same Message-ID, which
  is what lets the receiver see the duplicate). DMARC's ridfmt also allows an id without "@": its
  Message-ID then gets `@message_id_domain`.
- DMARC (RFC 9990 2.5.2): Subject `Report Domain: <policy domain> Submitter: <our domain> Report-ID:
  <<id>>`; the XML as `application/gzip` named `receiver!policy-domain!begin!end[!unique-id].xml.gz`
  (receiver: our domain; begin/end: the report's date_range). RFC 9990 requires that report mail pass DMARC
  with alignment: the caller must DKIM-sign it for the From domain (postoffice.mailauth.dkim_sign).
- TLSRPT (RFC 8460 5.3): `multipart/report; report-type="tlsrpt"` (RFC 6522: the human-readable part first),
  `TLS-Report-Domain` (the Policy Domain) and `TLS-Report-Submitter` (our domain), the same Subject shape, the
  JSON as `application/tlsrpt+gzip` named `sender!policy-domain!begin-timestamp!end-timestamp[!unique-id]
  .json.gz` (5.1; sender: the domain of the report's contact-info address, which the caller passes as
  `submitter`; timestamps: the date-range in whole seconds since the epoch). `TLS-Required: No` (RFC 8689
  section 5) as well: 5.3 says a report about TLS failures must not be held back by the recipient's MTA-STS
  or DANE policy, and this field says so to every MTA on the way; the queue must deliver it that way too.
- Unique-id: the optional filename part (`1*(ALPHA / DIGIT)`), only when the caller gives one. RFC 9990
  2.1.4 wants it identical to the Report-ID "when used", which a Report-ID with "." or "@" cannot be; leaving
  it out is the way to keep both rules.
- Reading (`extract_reports`): every leaf part of the message (also inside attached messages, so forwarded
  reports count) that is a report by its media type - application/gzip, application/x-gzip,
  application/tlsrpt+gzip, application/zip (and its x- names), text/xml, application/xml,
  application/tlsrpt+json - or by its filename with any media type (application/octet-stream, as real
  reporters send): .xml.gz, .json.gz, .gz, .zip, .xml, .json. A single-part message whose whole body is a
  report is such a leaf too. MIME is parsed by postoffice.message (bounded, never raises). After the transfer
  decoding, the container is recognised by its bytes (gzip or zip magic; anything else is taken as the
  document itself: media types in the wild are often wrong), then the document by its first character:
  "{" a TLSRPT report, "<" a DMARC report.
- Decompression is bounded (RFC 9990 7.1, "zip bomb"): at most MAX_REPORT_BYTES out of any part. gzip
  through zlib with max_length, several members allowed; zip: exactly one file member (directories are
  ignored), stored or deflated only (bzip2 and LZMA cannot be bounded per read), not encrypted, its declared
  size within the bound and its read capped (zipfile checks the CRC and the declared size, so a member that
  lies about its size fails); at most MAX_ZIP_ENTRIES central-directory records before zipfile looks at the
  archive. The member's name is never used as a path. At most MAX_REPORT_PARTS report parts per message.
- Result: `ExtractedReports` with the reports read, each tagged with its kind, and one error text per part
  that looked like a report but could not be read; a message with one good and one broken report gives one
  of each. Nothing raises for any input bytes but a bug.
"""

from __future__ import annotations

import binascii
import datetime
import email.policy
import email.utils
import gzip
import io
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Literal

from postoffice.mailauth.dmarc_reports import (
    MAX_XML_BYTES,
    AggregateReport,
    ReportError,
    build_aggregate_xml,
    parse_aggregate_xml,
)
from postoffice.mailauth.tlsrpt import (
    MAX_JSON_BYTES,
    TlsReport,
    TlsRptError,
    build_tlsrpt_json,
    parse_tlsrpt_json,
)
from postoffice.message import BodyPart, parse_message
from postoffice.net.dns import BadDomainName, a_label

__all__ = [
    "MAX_MESSAGE_BYTES",
    "MAX_REPORT_BYTES",
    "MAX_REPORT_PARTS",
    "DmarcIncoming",
    "ExtractedReports",
    "IncomingReport",
    "TlsRptIncoming",
    "dmarc_report_filename",
    "dmarc_report_message",
    "extract_reports",
    "make_report_id",
    "tlsrpt_report_filename",
    "tlsrpt_report_message",
]

#: Most bytes decompressed from one part (and the largest report document read).
MAX_REPORT_BYTES = min(MAX_XML_BYTES, MAX_JSON_BYTES)
#: Largest message `extract_reports` looks into.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
#: Most report parts read from one message; further ones are skipped with one error.
MAX_REPORT_PARTS = 32
#: Most central-directory records a zip attachment may have (it must hold one file).
MAX_ZIP_ENTRIES = 8

_GZIP_TYPES = frozenset({"application/gzip", "application/x-gzip", "application/tlsrpt+gzip"})
_ZIP_TYPES = frozenset({"application/zip", "application/x-zip-compressed", "application/x-zip"})
_DOCUMENT_TYPES = frozenset({"text/xml", "application/xml", "application/tlsrpt+json"})
_REPORT_SUFFIXES = (".xml.gz", ".json.gz", ".gz", ".zip", ".xml", ".json")
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]+")
# RFC 5322 3.2.3 dot-atom-text.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = rf"{_ATEXT}(?:\.{_ATEXT})*"
_MSG_ID = re.compile(rf"{_DOT_ATOM}@{_DOT_ATOM}")
_RIDFMT = re.compile(rf"{_DOT_ATOM}(?:@{_DOT_ATOM})?")
_UNIQUE_ID = re.compile(r"[A-Za-z0-9]+")
_HOST_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*")
# Written up to RFC 5322's line limit (see the module notes); bodies are encoded before this policy applies.
_WRITE = email.policy.SMTP.clone(max_line_length=998)
_WRITE_UTF8 = email.policy.SMTPUTF8.clone(max_line_length=998)


# ---------------------------------------------------------------------------------------------------------
# Writing


def make_report_id(policy_domain: str, begin: int, submitter: str) -> str:
    """A Report-ID for the report about `policy_domain` for the period starting at `begin` (seconds since the
    epoch), made by `submitter` (our host name): `<begin>.<policy domain>@<submitter>`, in A-labels. The same
    report made again (a re-send) gets the same id; two reports never do, since a domain has one report per
    period."""
    return f"{begin}.{_domain(policy_domain, ValueError)}@{_domain(submitter, ValueError)}"


def dmarc_report_filename(report: AggregateReport, receiver: str, unique_id: str | None = None) -> str:
    """`receiver!policy-domain!begin!end[!unique-id].xml.gz` (RFC 9990 2.5.2)."""
    parts = [_domain(receiver, ReportError), _domain(report.policy.domain, ReportError)]
    parts += [str(report.begin), str(report.end)]
    return _filename(parts, unique_id, ".xml.gz", ReportError)


def tlsrpt_report_filename(
    report: TlsReport, sender: str, policy_domain: str | None = None, unique_id: str | None = None
) -> str:
    """`sender!policy-domain!begin-timestamp!end-timestamp[!unique-id].json.gz` (RFC 8460 5.1)."""
    domain = _domain(policy_domain or _tls_policy_domain(report), TlsRptError)
    parts = [_domain(sender, TlsRptError), domain, str(_seconds(report.start)), str(_seconds(report.end))]
    return _filename(parts, unique_id, ".json.gz", TlsRptError)


def dmarc_report_message(
    report: AggregateReport,
    *,
    from_address: str,
    to_address: str,
    submitter: str,
    date: datetime.datetime,
    message_id_domain: str | None = None,
    unique_id: str | None = None,
) -> bytes:
    """The mail that carries `report` to one rua address (RFC 9990 2.5.2). `submitter`: our domain (the Mail
    Receiver's), for the Subject and the filename. `message_id_domain`: needed only for a report_id without
    "@". `ReportError` when the report, an address or a name cannot be written. The caller DKIM-signs the
    result (see the module notes)."""
    if not _RIDFMT.fullmatch(report.report_id):
        raise ReportError(
            f"report_id {report.report_id!r} is not a Report-ID (2.5.1: dot-atom-text [@ dot-atom-text])"
        )
    if "@" in report.report_id:
        message_id = report.report_id
    elif message_id_domain:
        message_id = f"{report.report_id}@{_domain(message_id_domain, ReportError)}"
    else:
        raise ReportError("a report_id without '@' needs message_id_domain for the Message-ID")
    domain = _domain(report.policy.domain, ReportError)
    submitter = _domain(submitter, ReportError)
    xml = build_aggregate_xml(report)
    text = (
        f"This is a DMARC aggregate report for {domain} from {submitter},\r\n"
        f"covering {_utc_text(report.begin)} to {_utc_text(report.end)} (UTC).\r\n"
    )
    msg = _message(
        from_address=from_address,
        to_address=to_address,
        date=date,
        message_id=message_id,
        subject=f"Report Domain: {domain} Submitter: {submitter} Report-ID: <{report.report_id}>",
        extra=(),
        error=ReportError,
    )
    _body(msg, text, gzip.compress(xml, mtime=0), "gzip", dmarc_report_filename(report, submitter, unique_id))
    return msg.as_bytes(policy=_policy_for(from_address, to_address))


def tlsrpt_report_message(
    report: TlsReport,
    *,
    from_address: str,
    to_address: str,
    submitter: str,
    date: datetime.datetime,
    policy_domain: str | None = None,
    unique_id: str | None = None,
) -> bytes:
    """The mail that carries `report` to one rua mailto: address (RFC 8460 5.3). `submitter`: our domain, the
    domain of the report's contact-info. `policy_domain`: the TLS-Report-Domain, by default the one domain
    all the report's policies name. The report-id, a msg-id, is also the Message-ID. `TlsRptError` when
    something cannot be written."""
    if not _MSG_ID.fullmatch(report.report_id):
        raise TlsRptError(f"report-id {report.report_id!r} is not a msg-id (id-left@id-right, RFC 8460 5.3)")
    domain = _domain(policy_domain or _tls_policy_domain(report), TlsRptError)
    submitter = _domain(submitter, TlsRptError)
    document = build_tlsrpt_json(report)
    start, end = _seconds(report.start), _seconds(report.end)
    text = (
        f"This is an aggregate TLS report for {domain} from {submitter},\r\n"
        f"covering {_utc_text(start)} to {_utc_text(end)} (UTC).\r\n"
    )
    msg = _message(
        from_address=from_address,
        to_address=to_address,
        date=date,
        message_id=report.report_id,
        subject=f"Report Domain: {domain} Submitter: {submitter} Report-ID: <{report.report_id}>",
        extra=(("TLS-Report-Domain", domain), ("TLS-Report-Submitter", submitter), ("TLS-Required", "No")),
        error=TlsRptError,
    )
    filename = tlsrpt_report_filename(report, submitter, domain, unique_id)
    _body(msg, text, gzip.compress(document, mtime=0), "tlsrpt+gzip", filename)
    msg.set_type("multipart/report")
    msg.set_param("report-type", "tlsrpt")
    return msg.as_bytes(policy=_policy_for(from_address, to_address))


def _message(
    *,
    from_address: str,
    to_address: str,
    date: datetime.datetime,
    message_id: str,
    subject: str,
    extra: tuple[tuple[str, str], ...],
    error: type[ValueError],
) -> EmailMessage:
    for name, address in (("from_address", from_address), ("to_address", to_address)):
        if not re.fullmatch(r"[^\s<>@\"(),:;\[\]\\]+@[^\s<>@\"(),:;\[\]\\]+", address):
            raise error(f"{name} {address!r} is not a plain address")
    if date.tzinfo is None or date.utcoffset() is None:
        raise error("date needs a time zone")
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = from_address
    msg["To"] = to_address
    msg["Date"] = email.utils.format_datetime(date)
    msg["Message-ID"] = f"<{message_id}>"
    msg["Subject"] = subject
    for name, value in extra:
        msg[name] = value
    msg["Auto-Submitted"] = "auto-generated"
    return msg


def _body(msg: EmailMessage, text: str, attachment: bytes, subtype: str, filename: str) -> None:
    msg.set_content(text, charset="us-ascii" if text.isascii() else "utf-8")
    msg.add_attachment(attachment, maintype="application", subtype=subtype, filename=filename)
    for part in msg.iter_attachments():
        del part["MIME-Version"]  # add_attachment puts one in the part; only the message needs it


def _policy_for(*addresses: str) -> email.policy.EmailPolicy[EmailMessage]:
    return _WRITE if all(address.isascii() for address in addresses) else _WRITE_UTF8


def _domain(name: str, error: type[ValueError]) -> str:
    """`name` in A-labels, lowercase; it must be a host name (RFC 6376's domain-name, which the Subject
    ABNFs import): letters, digits and hyphens."""
    try:
        domain = a_label(name).lower()
    except BadDomainName as exc:
        raise error(str(exc)) from None
    if not _HOST_NAME.fullmatch(domain):
        raise error(f"bad domain name {name!r}: not a host name")
    return domain


def _filename(parts: list[str], unique_id: str | None, extension: str, error: type[ValueError]) -> str:
    if unique_id is not None:
        if not _UNIQUE_ID.fullmatch(unique_id):
            raise error(f"unique-id {unique_id!r} is not 1*(ALPHA / DIGIT)")
        parts = [*parts, unique_id]
    return "!".join(parts) + extension


def _tls_policy_domain(report: TlsReport) -> str:
    domains = {result.policy.policy_domain.lower().rstrip(".") for result in report.policies}
    if len(domains) != 1:
        raise TlsRptError(f"the report's policies name {len(domains)} domains: pass policy_domain")
    return domains.pop()


def _seconds(moment: datetime.datetime) -> int:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise TlsRptError("date-range needs datetimes with a time zone")
    return int(moment.timestamp())


def _utc_text(seconds: int) -> str:
    try:
        return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, ValueError, OSError):  # past year 9999: the number is still right
        return f"{seconds} seconds after the epoch"


# ---------------------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class DmarcIncoming:
    """A DMARC aggregate report found in a message."""

    report: AggregateReport
    filename: str | None  # the part's filename, when it had one
    kind: Literal["dmarc"] = "dmarc"


@dataclass(frozen=True)
class TlsRptIncoming:
    """An SMTP TLS report found in a message."""

    report: TlsReport
    filename: str | None
    kind: Literal["tlsrpt"] = "tlsrpt"


IncomingReport = DmarcIncoming | TlsRptIncoming


@dataclass(frozen=True)
class ExtractedReports:
    """What `extract_reports` found: the reports read, and one text per report part that could not be read."""

    reports: tuple[IncomingReport, ...] = ()
    errors: tuple[str, ...] = ()


class _PartError(Exception):
    """A report part that cannot be read; the text says why."""


def extract_reports(message: bytes) -> ExtractedReports:
    """The DMARC aggregate and TLSRPT reports in `message` (see the module notes)."""
    if len(message) > MAX_MESSAGE_BYTES:
        return ExtractedReports(errors=(f"message larger than {MAX_MESSAGE_BYTES} bytes: not read",))
    parsed = parse_message(io.BytesIO(message))
    reports: list[IncomingReport] = []
    errors: list[str] = []
    for number, (part, filename) in enumerate(_report_parts(parsed.body), 1):
        label = f"part {number} ({filename or part.type + '/' + part.subtype})"
        if number > MAX_REPORT_PARTS:
            errors.append(f"more than {MAX_REPORT_PARTS} report parts: the rest were not read")
            break
        try:
            document = _uncompressed(_transfer_decoded(message[part.body_start : part.body_end], part))
            reports.append(_read_document(document, filename))
        except _PartError as exc:
            errors.append(f"{label}: {exc}")
        except (ReportError, TlsRptError) as exc:
            errors.append(f"{label}: {exc}")
    return ExtractedReports(tuple(reports), tuple(errors))


def _report_parts(root: BodyPart) -> Iterator[tuple[BodyPart, str | None]]:
    """The leaves that are reports by media type or filename, in message order."""
    stack = [root]
    while stack:
        part = stack.pop()
        if part.parts:
            stack.extend(reversed(part.parts))
            continue
        if part.embedded is not None:
            stack.append(part.embedded)
            continue
        filename = _filename_of(part)
        media = f"{part.type}/{part.subtype}"
        named = filename is not None and filename.lower().endswith(_REPORT_SUFFIXES)
        if named or media in _GZIP_TYPES or media in _ZIP_TYPES or media in _DOCUMENT_TYPES:
            yield part, filename


def _filename_of(part: BodyPart) -> str | None:
    params = [*(part.disposition[1] if part.disposition else ()), *part.params]
    for name, value in params:
        if name in ("filename", "name") and value.strip():
            return str(value).strip()
    return None


def _transfer_decoded(body: bytes, part: BodyPart) -> bytes:
    if part.encoding == "BASE64":  # RFC 2045 6.8, leniently: characters outside the alphabet are ignored
        data = _NOT_BASE64.sub(b"", body)
        data = data[: len(data) - len(data) % 4 if len(data) % 4 == 1 else len(data)]
        try:
            return binascii.a2b_base64(data + b"=" * (-len(data) % 4))
        except binascii.Error as exc:
            raise _PartError(f"bad base64: {exc}") from None
    if part.encoding == "QUOTED-PRINTABLE":  # RFC 2045 6.7
        return binascii.a2b_qp(body)
    return body


def _uncompressed(data: bytes) -> bytes:
    if data.startswith(_GZIP_MAGIC):
        return _gunzip(data)
    if data.startswith(_ZIP_MAGIC):
        return _unzip(data)
    if len(data) > MAX_REPORT_BYTES:
        raise _PartError(f"report larger than {MAX_REPORT_BYTES} bytes")
    return data


def _gunzip(data: bytes) -> bytes:
    out = bytearray()
    while data.startswith(_GZIP_MAGIC):  # several members are one stream (RFC 1952 2.2)
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out += decompressor.decompress(data, MAX_REPORT_BYTES + 1 - len(out))
        except zlib.error as exc:
            raise _PartError(f"bad gzip data: {exc}") from None
        if len(out) > MAX_REPORT_BYTES:
            raise _PartError(f"decompresses to more than {MAX_REPORT_BYTES} bytes")
        if not decompressor.eof:
            raise _PartError("gzip data cut short")
        data = decompressor.unused_data  # anything but another member after the last one is ignored
    return bytes(out)


def _unzip(data: bytes) -> bytes:
    # zipfile makes one object per central-directory record, each of which starts with this signature.
    if data.count(b"PK\x01\x02") > MAX_ZIP_ENTRIES:
        raise _PartError("zip archive with many entries (a report zip holds one file)")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [info for info in archive.infolist() if not info.is_dir()]
            if len(members) != 1:
                raise _PartError(f"zip archive with {len(members)} files (a report zip holds one)")
            info = members[0]
            if info.flag_bits & 0x1:
                raise _PartError("encrypted zip member")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise _PartError(f"zip compression method {info.compress_type} is not read")
            if info.file_size > MAX_REPORT_BYTES:
                raise _PartError(f"zip member of {info.file_size} bytes, more than {MAX_REPORT_BYTES}")
            with archive.open(info) as member:
                content = member.read(MAX_REPORT_BYTES + 1)
    except _PartError:
        raise
    except Exception as exc:  # zipfile has no exception contract for hostile archives: any failure is theirs
        raise _PartError(f"bad zip archive: {type(exc).__name__}: {exc}") from None
    if len(content) > MAX_REPORT_BYTES:
        raise _PartError(f"zip member decompresses to more than {MAX_REPORT_BYTES} bytes")
    return content


def _read_document(document: bytes, filename: str | None) -> IncomingReport:
    start = document.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if start == b"{":
        return TlsRptIncoming(parse_tlsrpt_json(document), filename)
    if start == b"<" or document.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 XML starts with its BOM
        return DmarcIncoming(parse_aggregate_xml(document), filename)
    raise _PartError("neither a DMARC (XML) nor a TLSRPT (JSON) report")
