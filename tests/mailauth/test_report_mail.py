"""The mail around reports: DMARC aggregate report messages (RFC 9990, section 2.5.2 of
draft-ietf-dmarc-aggregate-reporting-30) and TLSRPT messages (RFC 8460 section 5.3) as we write them, and
finding reports in the messages we receive: the shapes reporters send, one broken part beside a good one,
zip and gzip bombs, and garbage."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import email
import email.policy
import gzip
import io
import struct
import zipfile
import zlib
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postoffice.mailauth.dmarc_reports import AggregateReport, build_aggregate_xml, parse_aggregate_xml
from postoffice.mailauth.report_mail import (
    MAX_REPORT_BYTES,
    MAX_REPORT_PARTS,
    DmarcIncoming,
    ExtractedReports,
    TlsRptIncoming,
    dmarc_report_filename,
    dmarc_report_message,
    extract_reports,
    make_report_id,
    tlsrpt_report_filename,
    tlsrpt_report_message,
)
from postoffice.mailauth.tlsrpt import TlsReport, TlsRptError, parse_tlsrpt_json
from tests.mailauth.test_dmarc_reports import FULL as DMARC_REPORT
from tests.mailauth.test_tlsrpt import REPORT as TLS_REPORT

DATA = Path(__file__).parent / "data" / "reports"
DATE = datetime.datetime(2024, 3, 2, 1, 2, 3, tzinfo=datetime.UTC)
GOOGLE_XML = (DATA / "rfc7489-google-style.xml").read_bytes()
RFC_JSON = (DATA / "rfc8460-example.json").read_bytes()


def _dmarc_mail(report: AggregateReport = DMARC_REPORT, /, **changes: object) -> bytes:
    arguments: dict[str, object] = {
        "from_address": "dmarc-reports@mail.example.org",
        "to_address": "rua@example.com",
        "submitter": "mail.example.org",
        "date": DATE,
    }
    arguments.update(changes)
    return dmarc_report_message(report, **arguments)  # type: ignore[arg-type]


def _tls_mail(report: TlsReport = TLS_REPORT, /, **changes: object) -> bytes:
    arguments: dict[str, object] = {
        "from_address": "tlsrpt@mail.example.org",
        "to_address": "tls-reports@example.net",
        "submitter": "mail.example.org",
        "date": DATE,
    }
    arguments.update(changes)
    return tlsrpt_report_message(report, **arguments)  # type: ignore[arg-type]


def _read(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _only_crlf(raw: bytes) -> bool:
    return raw.count(b"\n") == raw.count(b"\r\n") and raw.count(b"\r") == raw.count(b"\r\n")


# --- writing ----------------------------------------------------------------------------------------------


def test_a_dmarc_report_mail_has_the_rfc_subject_and_a_gzip_attachment() -> None:
    raw = _dmarc_mail()
    assert _only_crlf(raw)
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    message = _read(raw)
    assert message["From"] == "dmarc-reports@mail.example.org"
    assert message["To"] == "rua@example.com"
    assert message["Date"] == "Sat, 02 Mar 2024 01:02:03 +0000"
    assert message["Message-ID"] == "<1700000000.example.com@mail.example.org>"
    assert message["Subject"] == (
        "Report Domain: example.com Submitter: mail.example.org"
        " Report-ID: <1700000000.example.com@mail.example.org>"
    )
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["MIME-Version"] == "1.0"
    text, attachment = message.iter_parts()
    assert text.get_content_type() == "text/plain"
    assert "DMARC aggregate report for example.com" in text.get_content()
    assert attachment.get_content_type() == "application/gzip"
    assert attachment.get_filename() == "mail.example.org!example.com!1700000000!1700086399.xml.gz"
    assert (
        b'filename="mail.example.org!example.com!1700000000!1700086399.xml.gz"' in raw
    )  # no RFC 2231 pieces
    payload = attachment.get_content()
    assert isinstance(payload, bytes)
    assert gzip.decompress(payload) == build_aggregate_xml(DMARC_REPORT)
    again = list(_read(_dmarc_mail()).iter_parts())[1].get_content()
    assert again == payload  # a re-sent report is the same bytes (gzip mtime 0)


def test_a_tlsrpt_mail_is_a_multipart_report_with_the_rfc_fields() -> None:
    raw = _tls_mail()
    assert _only_crlf(raw)
    message = _read(raw)
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "tlsrpt"
    assert message["TLS-Report-Domain"] == "example.net"
    assert message["TLS-Report-Submitter"] == "mail.example.org"
    assert message["TLS-Required"] == "No"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"] == "<1709251200.example.net@mail.example.org>"
    assert message["Subject"] == (
        "Report Domain: example.net Submitter: mail.example.org"
        " Report-ID: <1709251200.example.net@mail.example.org>"
    )
    text, attachment = message.iter_parts()  # RFC 6522: the human-readable part first
    assert text.get_content_type() == "text/plain"
    assert attachment.get_content_type() == "application/tlsrpt+gzip"
    assert attachment.get_filename() == "mail.example.org!example.net!1709251200!1709337599.json.gz"
    payload = attachment.get_content()
    assert isinstance(payload, bytes)
    assert parse_tlsrpt_json(gzip.decompress(payload)) == TLS_REPORT


def test_the_mails_we_write_are_read_back() -> None:
    found = extract_reports(_dmarc_mail())
    assert found == ExtractedReports(
        (DmarcIncoming(DMARC_REPORT, "mail.example.org!example.com!1700000000!1700086399.xml.gz"),)
    )
    found = extract_reports(_tls_mail())
    assert found.errors == ()
    (incoming,) = found.reports
    assert isinstance(incoming, TlsRptIncoming)
    assert (incoming.kind, incoming.report) == ("tlsrpt", TLS_REPORT)


def test_filenames_and_report_ids() -> None:
    assert (
        make_report_id("Example.COM.", 1700000000, "mail.example.org")
        == "1700000000.example.com@mail.example.org"
    )
    assert (
        make_report_id("bücher.example", 1, "mail.example.org") == "1.xn--bcher-kva.example@mail.example.org"
    )
    assert dmarc_report_filename(DMARC_REPORT, "mail.example.org", "abc123").endswith(
        "!1700086399!abc123.xml.gz"
    )
    assert tlsrpt_report_filename(TLS_REPORT, "mail.example.org", unique_id="7") == (
        "mail.example.org!example.net!1709251200!1709337599!7.json.gz"
    )
    with pytest.raises(ValueError, match="unique-id"):
        dmarc_report_filename(DMARC_REPORT, "mail.example.org", "not-alnum")


def test_a_period_beyond_year_9999_is_still_written() -> None:
    far = dataclasses.replace(DMARC_REPORT, begin=2**62, end=2**62)
    assert extract_reports(_dmarc_mail(far)).reports[0].report == far


def test_an_address_outside_ascii_is_written_as_smtputf8() -> None:
    raw = _dmarc_mail(to_address="rapporte@bücher.example")
    assert "To: rapporte@bücher.example\r\n".encode() in raw
    assert extract_reports(raw).reports[0].report == DMARC_REPORT


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"date": datetime.datetime(2024, 3, 2)}, "time zone"),
        ({"from_address": "Reports <r@example.org>"}, "not a plain address"),
        ({"to_address": "r@example.org\r\nBcc: x@example.org"}, "not a plain address"),
        ({"submitter": "no spaces allowed.example"}, "bad domain name"),
        ({"unique_id": "a-b"}, "unique-id"),
    ],
)
def test_what_cannot_be_written_is_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _dmarc_mail(**changes)
    with pytest.raises(TlsRptError, match=message):
        _tls_mail(**changes)


def test_report_ids_must_fit_the_subject() -> None:
    with pytest.raises(ValueError, match="dot-atom-text"):
        _dmarc_mail(dataclasses.replace(DMARC_REPORT, report_id="has space"))
    with pytest.raises(ValueError, match="message_id_domain"):
        _dmarc_mail(dataclasses.replace(DMARC_REPORT, report_id="r1"))
    message = _read(
        _dmarc_mail(dataclasses.replace(DMARC_REPORT, report_id="r1"), message_id_domain="mail.example.org")
    )
    assert (message["Message-ID"], message["Subject"].endswith("Report-ID: <r1>")) == (
        "<r1@mail.example.org>",
        True,
    )
    with pytest.raises(TlsRptError, match="msg-id"):
        _tls_mail(dataclasses.replace(TLS_REPORT, report_id="5065427c-23d3-47ca-b6e0-946ea0e8c4be"))
    two_domains = dataclasses.replace(
        TLS_REPORT,
        policies=(
            TLS_REPORT.policies[0],
            dataclasses.replace(
                TLS_REPORT.policies[1],
                policy=dataclasses.replace(TLS_REPORT.policies[1].policy, policy_domain="b.example"),
            ),
        ),
    )
    with pytest.raises(TlsRptError, match="pass policy_domain"):
        _tls_mail(two_domains)
    assert _read(_tls_mail(two_domains, policy_domain="example.net"))["TLS-Report-Domain"] == "example.net"


# --- reading what reporters send --------------------------------------------------------------------------


def _part(content_type: str, body: bytes, *, filename: str | None = None, encoding: str = "base64") -> bytes:
    lines = [f"Content-Type: {content_type}"]
    if filename is not None:
        lines.append(f'Content-Disposition: attachment; filename="{filename}"')
    lines.append(f"Content-Transfer-Encoding: {encoding}")
    if encoding == "base64":
        body = base64.encodebytes(body).replace(b"\n", b"\r\n")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _mail(*parts: bytes, content_type: str = "multipart/mixed") -> bytes:
    head = b"From: noreply-dmarc-support@google.com\r\nTo: rua@example.org\r\nSubject: Report\r\n"
    head += b"MIME-Version: 1.0\r\n"
    if len(parts) == 1 and content_type == "single":
        return head + parts[0]
    body = b"".join(b"--BOUNDARY\r\n" + part + b"\r\n" for part in parts)
    return (
        head
        + f'Content-Type: {content_type}; boundary="BOUNDARY"\r\n\r\n'.encode()
        + body
        + b"--BOUNDARY--\r\n"
    )


def _zip(name: str, content: bytes, method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        archive.writestr(name, content)
    return buffer.getvalue()


def _dmarc_reports(found: ExtractedReports) -> list[AggregateReport]:
    return [incoming.report for incoming in found.reports if isinstance(incoming, DmarcIncoming)]


@pytest.mark.parametrize(
    "message",
    [
        _mail(
            _part(
                "application/gzip", gzip.compress(GOOGLE_XML), filename="google.com!example.org!1!2.xml.gz"
            ),
            content_type="single",
        ),
        _mail(
            _part(
                "application/zip",
                _zip("google.com!example.org!1706832000!1706918399.xml", GOOGLE_XML),
                filename="report.zip",
            ),
            content_type="single",
        ),
        _mail(
            _part("text/plain", b"Report attached"),
            _part("application/x-zip-compressed", _zip("r.xml", GOOGLE_XML)),
        ),
        _mail(
            _part(
                "application/octet-stream",
                gzip.compress(GOOGLE_XML),
                filename="google.com!example.org!1!2.xml.gz",
            )
        ),
        _mail(
            _part("application/octet-stream", _zip("r.xml", GOOGLE_XML, zipfile.ZIP_STORED), filename="x.ZIP")
        ),
        _mail(
            _part("application/x-gzip", gzip.compress(GOOGLE_XML) + gzip.compress(b"")), content_type="single"
        ),
        _mail(_part("text/xml", GOOGLE_XML.replace(b"\n", b"\r\n"), encoding="7bit"), content_type="single"),
        _mail(
            _part(
                'application/xml; charset="utf-8"',
                GOOGLE_XML.replace(b"=", b"=3D"),
                encoding="quoted-printable",
            )
        ),
        _mail(_part("application/gzip", _zip("r.xml", GOOGLE_XML), filename="mislabelled.xml.gz")),
    ],
    ids=[
        "gzip-body",
        "zip-body",
        "zip-attachment",
        "octet-stream-gz",
        "octet-stream-zip",
        "two-gzip-members",
        "text-xml",
        "quoted-printable",
        "zip-labelled-gzip",
    ],
)
def test_dmarc_reports_in_the_shapes_reporters_send_are_found(message: bytes) -> None:
    found = extract_reports(message)
    assert found.errors == ()
    assert _dmarc_reports(found) == [parse_aggregate_xml(GOOGLE_XML)]


@pytest.mark.parametrize(
    "message",
    [
        _mail(
            _part("text/plain", b"hi"),
            _part("application/tlsrpt+gzip", gzip.compress(RFC_JSON)),
            content_type='multipart/report; report-type="tlsrpt"',
        ),
        _mail(_part("application/tlsrpt+json", RFC_JSON, encoding="8bit"), content_type="single"),
        _mail(
            _part(
                "application/octet-stream",
                gzip.compress(RFC_JSON),
                filename="google.com!example.net!1!2.json.gz",
            )
        ),
    ],
    ids=["multipart-report", "json-body", "octet-stream"],
)
def test_tlsrpt_reports_are_found(message: bytes) -> None:
    found = extract_reports(message)
    assert found.errors == ()
    assert [incoming.report for incoming in found.reports] == [parse_tlsrpt_json(RFC_JSON)]


def test_a_forwarded_report_is_found() -> None:
    forwarded = _mail(
        _part("text/plain", b"FYI", encoding="7bit"), b"Content-Type: message/rfc822\r\n\r\n" + _dmarc_mail()
    )
    assert _dmarc_reports(extract_reports(forwarded)) == [DMARC_REPORT]


def test_one_good_and_one_broken_part_give_one_report_and_one_error() -> None:
    found = extract_reports(
        _mail(
            _part("application/gzip", gzip.compress(GOOGLE_XML), filename="good.xml.gz"),
            _part(
                "application/gzip",
                gzip.compress(GOOGLE_XML.replace(b"<p>quarantine</p>", b"<p>maybe</p>")),
                filename="bad.xml.gz",
            ),
            _part("image/png", b"\x89PNG", filename="logo.png"),
        )
    )
    assert len(found.reports) == 1
    assert found.reports[0].filename == "good.xml.gz"
    (error,) = found.errors
    assert error.startswith("part 2 (bad.xml.gz): ")
    assert "'maybe'" in error


@pytest.mark.parametrize(
    ("part", "message"),
    [
        (_part("application/gzip", gzip.compress(GOOGLE_XML)[:-30]), "cut short"),
        (_part("application/gzip", gzip.compress(b"")[:10] + b"\xff" * 20), "bad gzip data"),
        (_part("application/zip", b"PK\x03\x04garbage"), "bad zip archive"),
        (_part("application/zip", b"not a zip at all"), "neither a DMARC"),
        (_part("text/xml", b"<feedback>", encoding="7bit"), "not well-formed"),
        (
            _part("application/tlsrpt+json", b'{"organization-name": 1}', encoding="7bit"),
            "date-range is missing",
        ),
        (_part("application/gzip", b""), "neither a DMARC"),
    ],
)
def test_broken_report_parts_are_errors(part: bytes, message: str) -> None:
    found = extract_reports(_mail(part))
    assert found.reports == ()
    (error,) = found.errors
    assert message in error


def test_zip_archives_must_hold_one_plainly_compressed_file() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.xml", GOOGLE_XML)
        archive.writestr("b.xml", GOOGLE_XML)
    assert "2 files" in extract_reports(_mail(_part("application/zip", buffer.getvalue()))).errors[0]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("dir/", b"")
        archive.writestr("dir/a.xml", GOOGLE_XML)
    assert extract_reports(_mail(_part("application/zip", buffer.getvalue()))).errors == ()
    bzip2 = _zip("a.xml", GOOGLE_XML, zipfile.ZIP_BZIP2)
    assert "compression method 12" in extract_reports(_mail(_part("application/zip", bzip2))).errors[0]
    many = b"PK\x03\x04" + b"PK\x01\x02" * 20
    assert "many entries" in extract_reports(_mail(_part("application/zip", many))).errors[0]


def test_too_many_report_parts_are_cut_off() -> None:
    part = _part("application/gzip", gzip.compress(GOOGLE_XML))
    found = extract_reports(_mail(*[part] * (MAX_REPORT_PARTS + 3)))
    assert len(found.reports) == MAX_REPORT_PARTS
    assert found.errors == (f"more than {MAX_REPORT_PARTS} report parts: the rest were not read",)


# --- bombs ------------------------------------------------------------------------------------------------

GIB = 1 << 30


def _zeros_deflate(size: int) -> tuple[bytes, int]:
    """A raw deflate stream of `size` zero bytes (a multiple of 1 MiB) and their CRC-32, made without holding
    the data: one fully flushed 1 MiB block refers to nothing before it, so repeating it is a valid stream."""
    mib = bytes(1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(mib) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(size >> 20):
        crc = zlib.crc32(mib, crc)
    return block * (size >> 20) + zlib.compressobj(9, zlib.DEFLATED, -15).flush(), crc


@pytest.fixture(scope="module")
def gigabyte_of_zeros() -> tuple[bytes, int]:
    return _zeros_deflate(GIB)


def _gzip(deflated: bytes, crc: int, size: int) -> bytes:
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + deflated + struct.pack("<II", crc, size & 0xFFFFFFFF)


def _zip_raw(name: bytes, deflated: bytes, crc: int, declared_size: int) -> bytes:
    """A zip archive of one deflated member, its headers saying `declared_size` (true or not)."""
    local = struct.pack(
        "<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(deflated), declared_size, len(name), 0
    )
    central = struct.pack(
        "<IHHHHHHIIIHHHHHII",
        0x02014B50,
        20,
        20,
        0,
        8,
        0,
        0x21,
        crc,
        len(deflated),
        declared_size,
        len(name),
        0,
        0,
        0,
        0,
        0,
        0,
    )
    directory = central + name
    offset = len(local) + len(name) + len(deflated)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(directory), offset, 0)
    return local + name + deflated + directory + end


def test_a_gzip_bomb_stops_at_the_bound(gigabyte_of_zeros: tuple[bytes, int]) -> None:
    deflated, crc = gigabyte_of_zeros
    bomb = _gzip(deflated, crc, GIB)
    assert len(bomb) < 2 * 1024 * 1024
    found = extract_reports(_mail(_part("application/gzip", bomb, filename="bomb.xml.gz")))
    assert found.reports == ()
    assert found.errors == (f"part 1 (bomb.xml.gz): decompresses to more than {MAX_REPORT_BYTES} bytes",)


def test_a_zip_bomb_is_refused_by_its_size(gigabyte_of_zeros: tuple[bytes, int]) -> None:
    deflated, crc = gigabyte_of_zeros
    bomb = _zip_raw(b"bomb.xml", deflated, crc, GIB)
    with zipfile.ZipFile(io.BytesIO(bomb)) as archive:  # an archive zipfile reads, of one 1 GiB member
        assert [(info.filename, info.file_size) for info in archive.infolist()] == [("bomb.xml", GIB)]
    found = extract_reports(_mail(_part("application/zip", bomb)))
    assert found.errors == (
        f"part 1 (application/zip): zip member of {GIB} bytes, more than {MAX_REPORT_BYTES}",
    )


def test_a_zip_bomb_that_lies_about_its_size_is_stopped(gigabyte_of_zeros: tuple[bytes, int]) -> None:
    deflated, crc = gigabyte_of_zeros
    found = extract_reports(_mail(_part("application/zip", _zip_raw(b"bomb.xml", deflated, crc, 1000))))
    assert found.reports == ()
    assert (
        "bad zip archive" in found.errors[0]
    )  # zipfile stops after the declared size: the CRC does not match


def test_decompressing_to_exactly_the_bound_is_allowed() -> None:
    document = GOOGLE_XML + b" " * (MAX_REPORT_BYTES - len(GOOGLE_XML))
    found = extract_reports(_mail(_part("application/gzip", gzip.compress(document))))
    assert found.errors == ()
    found = extract_reports(_mail(_part("application/gzip", gzip.compress(document + b" "))))
    assert "more than" in found.errors[0]


# --- garbage ----------------------------------------------------------------------------------------------


def _check(message: bytes) -> None:
    found = extract_reports(message)
    assert isinstance(found, ExtractedReports)
    assert all(isinstance(error, str) for error in found.errors)


@given(st.binary(max_size=3000))
def test_garbage_bytes_never_raise(message: bytes) -> None:
    _check(message)


_CONTENT_TYPES = [
    "application/gzip",
    "application/x-gzip",
    "application/zip",
    "application/tlsrpt+gzip",
    "application/tlsrpt+json",
    "text/xml",
    "application/octet-stream",
    "multipart/mixed",
    "message/rfc822",
    "text/plain",
]
_payloads = st.one_of(
    st.binary(max_size=200),
    st.binary(max_size=200).map(gzip.compress),
    st.binary(max_size=200).map(lambda data: gzip.compress(data)[: len(data) // 2 + 5]),
    st.binary(max_size=200).map(lambda data: _zip("r.xml", data)),
    st.sampled_from([GOOGLE_XML, RFC_JSON, gzip.compress(GOOGLE_XML), gzip.compress(RFC_JSON)]),
    st.sampled_from([GOOGLE_XML, RFC_JSON]).flatmap(
        lambda document: st.integers(0, len(document)).map(lambda cut: document[:cut])
    ),
)


@st.composite
def _parts(draw: st.DrawFn) -> bytes:
    content_type = draw(st.sampled_from(_CONTENT_TYPES))
    encoding = draw(st.sampled_from(["base64", "quoted-printable", "7bit", "8bit", "x-unknown"]))
    filename = draw(
        st.none() | st.sampled_from(["r.xml.gz", "r.json.gz", "r.zip", "r.xml", "x.json", "a.gz", "ünï.xml"])
    )
    payload = draw(_payloads)
    if draw(st.booleans()):
        payload = draw(st.binary(max_size=50)) + payload
    return _part(content_type, payload, filename=filename, encoding=encoding)


@given(
    st.lists(_parts(), min_size=1, max_size=5),
    st.sampled_from(["multipart/mixed", "multipart/report", "single"]),
)
def test_garbage_mime_never_raises(parts: list[bytes], content_type: str) -> None:
    _check(_mail(*(parts[:1] if content_type == "single" else parts), content_type=content_type))
