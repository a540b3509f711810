"""Delivery status notifications (postoffice.smtp.dsn), checked by parsing them with Python's `email` package
and with `postoffice.message.parse_message`: structure (RFC 6522), fields (RFC 3464), RET (RFC 3461 section
4.3), the size cap, non-ASCII addresses (RFC 6533) and safety (no header injection, CRLF, line lengths)."""

from __future__ import annotations

import base64
import email
import email.message
import io
import quopri
import re
from email import policy
from email.utils import parsedate_to_datetime

import pytest

from postoffice.message import parse_message
from postoffice.smtp.dsn import (
    DsnRecipient,
    build_dsn,
    unitext_decode,
    unitext_encode,
)
from postoffice.smtp.xtext import decode_xtext, encode_xtext

NOW = 1_790_000_000.0
ARRIVED = NOW - 3 * 86400
ORIGINAL = (
    b"Return-Path: <demo@example.test>\r\n"
    b"From: Demo <demo@example.test>\r\n"
    b"To: x@remote.example, y@remote.example\r\n"
    b"Subject: the quarterly numbers\r\n"
    b"Message-ID: <q3.numbers@example.test>\r\n"
    b"\r\n"
    b"Here are the numbers.\r\n"
    b"-- \r\nDemo\r\n"
)
HEADER = ORIGINAL[: ORIGINAL.index(b"\r\n\r\n") + 4]

FAILED = DsnRecipient(
    final_recipient="x@remote.example",
    original_recipient="rfc822;x@remote.example",
    action="failed",
    status="5.1.1",
    diagnostic_code="smtp; 550 5.1.1 <x@remote.example>: no such user",
    remote_mta="mx1.remote.example",
    last_attempt_date=NOW - 60,
)
DELAYED = DsnRecipient(
    final_recipient="y@remote.example",
    action="delayed",
    status="4.4.1",
    diagnostic_code="smtp; 421 4.4.1 connection timed out",
    remote_mta="mx2.remote.example",
    last_attempt_date=NOW - 120,
    will_retry_until=NOW + 2 * 86400,
)
DELIVERED = DsnRecipient(
    final_recipient="z@remote.example",
    action="delivered",
    status="2.0.0",
    diagnostic_code="smtp; 250 2.0.0 queued as 4711",
    remote_mta="mx1.remote.example",
    last_attempt_date=NOW - 30,
)


def dsn(
    recipients: list[DsnRecipient] | None = None,
    *,
    original: bytes = ORIGINAL,
    ret: str | None = None,
    envid: str | None = "QQ314159",
    sender: str = "demo@example.test",
    max_full_size: int = 1024 * 1024,
    smtputf8: bool = False,
) -> bytes:
    return build_dsn(
        reporting_mta="mail.example.test",
        original_sender=sender,
        original=original,
        envid=envid,
        ret=ret,
        arrival_date=ARRIVED,
        recipients=recipients or [FAILED],
        now=NOW,
        message_id_domain="example.test",
        max_full_size=max_full_size,
        smtputf8=smtputf8,
    )


def parse(data: bytes) -> email.message.EmailMessage:
    msg = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    assert not msg.defects, msg.defects
    return msg


def raw_parts(data: bytes) -> list[tuple[bytes, bytes]]:
    """(header, body) of each part, split at the boundary as the bytes are."""
    boundary = re.search(rb'boundary="([^"]+)"', data)
    assert boundary is not None
    delimiter = b"\r\n--" + boundary.group(1)
    pieces = data.split(delimiter)
    assert pieces[-1] == b"--\r\n"
    parts = []
    for piece in pieces[1:-1]:
        assert piece.startswith(b"\r\n")
        header, _, body = piece[2:].partition(b"\r\n\r\n")
        parts.append((header + b"\r\n", body))
    return parts


def status_groups(data: bytes) -> list[dict[str, str]]:
    """The message/delivery-status part as field groups (unfolded), parsed by hand so that it works for
    message/global-delivery-status too."""
    _, body = raw_parts(data)[1]
    groups = []
    for block in body.decode("utf-8").rstrip("\r\n").split("\r\n\r\n"):
        fields: dict[str, str] = {}
        for line in re.sub(r"\r\n[ \t]+", " ", block).split("\r\n"):
            name, _, value = line.partition(":")
            assert name not in fields
            fields[name] = value.strip()
        groups.append(fields)
    return groups


def test_a_failure_report_is_a_multipart_report_with_explanation_status_and_headers() -> None:
    data = dsn()
    msg = parse(data)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert b'\r\nFrom: "Mail Delivery System" <MAILER-DAEMON@mail.example.test>\r\n' in b"\r\n" + data
    assert msg["From"].addresses[0].display_name == "Mail Delivery System"
    assert msg["From"].addresses[0].addr_spec == "MAILER-DAEMON@mail.example.test"
    assert msg["To"].addresses[0].addr_spec == "demo@example.test"
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    assert msg["Date"].datetime == parsedate_to_datetime("Mon, 21 Sep 2026 14:13:20 +0000")
    assert re.fullmatch(r"<[0-9a-f]+\.\d+@example\.test>", msg["Message-ID"])
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["MIME-Version"] == "1.0"
    assert msg["References"] == "<q3.numbers@example.test>"

    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == [
        "text/plain",
        "message/delivery-status",
        "text/rfc822-headers",
    ]
    explanation = parts[0].get_content()
    assert "could not be delivered" in explanation
    assert "<x@remote.example>" in explanation
    assert "550 5.1.1 <x@remote.example>: no such user" in explanation
    assert "mx1.remote.example" in explanation
    # RET not given: the header only (our documented default)
    assert raw_parts(data)[2][1] == HEADER
    assert b"Here are the numbers" not in data


def test_every_line_ends_in_crlf_and_no_line_is_longer_than_998_octets() -> None:
    long_reply = "smtp; 550 5.7.1 " + " ".join(["rejected-because-of-policy"] * 80) + " " + "x" * 1500
    data = dsn(
        [
            DsnRecipient(
                final_recipient="x@remote.example",
                action="failed",
                status="5.7.1",
                diagnostic_code=long_reply,
            )
        ],
        original=ORIGINAL.replace(b"\r\n", b"\n"),  # bare LF in what is returned becomes CRLF
        ret="FULL",
    )
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    (_, recipient) = status_groups(data)
    assert recipient["Diagnostic-Code"].startswith("smtp; 550 5.7.1 rejected-because-of-policy")
    assert recipient["Diagnostic-Code"].count("rejected-because-of-policy") == 80
    assert b"Here are the numbers.\r\n" in data


def test_delivery_status_fields_per_message_and_per_recipient() -> None:
    data = dsn([FAILED, DELAYED])
    per_message, failed, delayed = status_groups(data)
    assert per_message == {
        "Original-Envelope-Id": "QQ314159",
        "Reporting-MTA": "dns; mail.example.test",
        "Arrival-Date": "Fri, 18 Sep 2026 14:13:20 +0000",
    }
    assert failed == {
        "Original-Recipient": "rfc822; x@remote.example",
        "Final-Recipient": "rfc822; x@remote.example",
        "Action": "failed",
        "Status": "5.1.1",
        "Remote-MTA": "dns; mx1.remote.example",
        "Diagnostic-Code": "smtp; 550 5.1.1 <x@remote.example>: no such user",
        "Last-Attempt-Date": "Mon, 21 Sep 2026 14:12:20 +0000",
    }
    assert delayed == {
        "Final-Recipient": "rfc822; y@remote.example",
        "Action": "delayed",
        "Status": "4.4.1",
        "Remote-MTA": "dns; mx2.remote.example",
        "Diagnostic-Code": "smtp; 421 4.4.1 connection timed out",
        "Last-Attempt-Date": "Mon, 21 Sep 2026 14:11:20 +0000",
        "Will-Retry-Until": "Wed, 23 Sep 2026 14:13:20 +0000",
    }
    # Python's parser agrees: one block per group, the per-message fields first
    report = list(parse(data).iter_parts())[1]
    payload = report.get_payload()
    assert isinstance(payload, list)
    blocks = [b for b in payload if isinstance(b, email.message.Message)]
    assert len(blocks) == 3
    assert blocks[0].get("Reporting-MTA") == "dns; mail.example.test"
    assert [b.get("Action") for b in blocks[1:]] == ["failed", "delayed"]
    assert parsedate_to_datetime(per_message["Arrival-Date"]).timestamp() == ARRIVED


@pytest.mark.parametrize(
    ("recipients", "subject"),
    [
        ([FAILED], "Undelivered Mail Returned to Sender"),
        ([DELAYED], "Delivery Status Notification (Delay)"),
        ([DELIVERED], "Delivery Status Notification (Success)"),
        ([DELIVERED, DELAYED], "Delivery Status Notification (Delay)"),
        ([DELAYED, FAILED, DELIVERED], "Undelivered Mail Returned to Sender"),
    ],
    ids=["failed", "delayed", "delivered", "delivered+delayed", "mixed-with-failure"],
)
def test_the_subject_follows_the_most_serious_action(recipients: list[DsnRecipient], subject: str) -> None:
    msg = parse(dsn(recipients))
    assert msg["Subject"] == subject
    assert [g["Action"] for g in status_groups(dsn(recipients))[1:]] == [r.action for r in recipients]


def test_ret_full_returns_the_whole_message_in_a_failure_report() -> None:
    data = dsn(ret="FULL")
    parts = list(parse(data).iter_parts())
    assert parts[2].get_content_type() == "message/rfc822"
    returned = parts[2].get_content()
    assert returned["Subject"] == "the quarterly numbers"
    assert raw_parts(data)[2][1] == ORIGINAL  # the CRLF before the boundary is the delimiter's
    assert "Your message is attached." in parts[0].get_content()


@pytest.mark.parametrize(
    ("ret", "recipients"),
    [("HDRS", [FAILED]), (None, [FAILED]), ("FULL", [DELAYED]), ("FULL", [DELIVERED]), ("full", [DELIVERED])],
    ids=["hdrs", "unspecified", "full-but-only-delayed", "full-but-only-delivered", "full-lower-case"],
)
def test_other_reports_return_the_header_only(ret: str | None, recipients: list[DsnRecipient]) -> None:
    data = dsn(recipients, ret=ret)
    parts = list(parse(data).iter_parts())
    assert parts[2].get_content_type() == "text/rfc822-headers"
    assert raw_parts(data)[2][1] == HEADER
    assert b"Here are the numbers" not in data
    assert "header of your message is attached" in parts[0].get_content()


def test_ret_full_of_a_message_over_the_size_cap_returns_the_header_only() -> None:
    large = HEADER + b"".join(b"line %07d of a large attachment\r\n" % i for i in range(40_000))
    assert len(large) > 1024 * 1024
    data = dsn(original=large, ret="FULL")
    assert len(data) < 10_000
    parts = list(parse(data).iter_parts())
    assert parts[2].get_content_type() == "text/rfc822-headers"
    assert "too large to return whole" in parts[0].get_content()
    assert raw_parts(data)[2][1] == HEADER
    # the cap is the caller's to choose
    small_cap = dsn(ret="FULL", max_full_size=len(ORIGINAL) - 1)
    assert list(parse(small_cap).iter_parts())[2].get_content_type() == "text/rfc822-headers"
    at_cap = dsn(ret="FULL", max_full_size=len(ORIGINAL))
    assert list(parse(at_cap).iter_parts())[2].get_content_type() == "message/rfc822"


def test_a_header_only_original_is_returned_as_given() -> None:
    data = dsn(original=HEADER.removesuffix(b"\r\n"))
    assert raw_parts(data)[2][1] == HEADER


def test_a_non_ascii_recipient_in_a_7_bit_report_has_the_utf_8_address_type() -> None:
    recipient = DsnRecipient(
        final_recipient="jürgen@bücher.example",
        original_recipient="utf-8;j\\x{FC}rgen@b\\x{FC}cher.example",
        action="failed",
        status="5.1.1",
        diagnostic_code="smtp; 550 5.1.1 unbekannter Empfänger",
    )
    data = dsn([recipient])
    assert data.isascii()
    (_, fields) = status_groups(data)
    assert fields["Final-Recipient"] == "utf-8; j\\x{FC}rgen@b\\x{FC}cher.example"
    assert fields["Original-Recipient"] == "utf-8; j\\x{FC}rgen@b\\x{FC}cher.example"
    assert fields["Diagnostic-Code"] == "smtp; 550 5.1.1 unbekannter Empf\\x{E4}nger"
    assert unitext_decode(fields["Final-Recipient"].removeprefix("utf-8; ")) == "jürgen@bücher.example"
    text = next(iter(parse(data).iter_parts()))
    assert text["Content-Transfer-Encoding"] == "quoted-printable"
    assert "<jürgen@bücher.example>" in text.get_content()
    raw_text = raw_parts(data)[0][1]
    assert "jürgen".encode() in quopri.decodestring(raw_text)


def test_an_smtputf8_report_uses_the_global_types_and_raw_utf_8() -> None:
    original = (
        HEADER.replace(b"the quarterly numbers", "die Quartalszahlen für Jürgen".encode()) + b"Hallo\r\n"
    )
    recipient = DsnRecipient(final_recipient="jürgen@bücher.example", action="failed", status="5.1.1")
    data = dsn([recipient], original=original, sender="dëmo@example.test", smtputf8=True)
    msg = email.message_from_string(data.decode("utf-8"), policy=policy.default)  # RFC 6532 header fields
    assert msg["To"].addresses[0].addr_spec == "dëmo@example.test"
    assert [p.get_content_type() for p in msg.iter_parts()][1] == "message/global-delivery-status"
    types = [re.findall(rb"Content-Type: ([^;\r]+)", h) for h, _ in raw_parts(data)]
    assert types == [[b"text/plain"], [b"message/global-delivery-status"], [b"message/global-headers"]]
    (_, fields) = status_groups(data)
    assert fields["Final-Recipient"] == "utf-8; jürgen@bücher.example"
    assert raw_parts(data)[2][1] == original[: original.index(b"\r\n\r\n") + 4]
    full = dsn([recipient], original=original, ret="FULL", smtputf8=True)
    assert re.search(rb"Content-Type: message/global\r\n", full)
    assert raw_parts(full)[2][1] == original


def test_8_bit_header_fields_of_a_non_smtputf8_message_stay_intact_in_a_7_bit_report() -> None:
    original = HEADER.replace(b"the quarterly numbers", b"caf\xe9 latin-1") + b"body\r\n"
    data = dsn(original=original, ret="FULL")  # 8-bit header fields cannot be returned whole in 7 bits
    assert data.isascii()
    header, body = raw_parts(data)[2]
    assert b"Content-Type: text/rfc822-headers; charset=unknown-8bit" in header
    assert base64.b64decode(body) == original[: original.index(b"\r\n\r\n") + 4]


def test_envid_and_orcpt_are_xtext_decoded_and_re_encoded_when_they_are_not_plain_text() -> None:
    data = dsn(
        [
            DsnRecipient(
                final_recipient="a+b@remote.example",
                original_recipient="rfc822;a+2Bb@remote.example",
                action="failed",
                status="5.1.1",
            ),
            DsnRecipient(
                final_recipient="c@remote.example",
                original_recipient="x400;/C=US/ADMD=TEST/",
                action="failed",
                status="5.1.1",
            ),
        ],
        envid="id+2Bwith+3Dsigns",
    )
    per_message, first, second = status_groups(data)
    assert per_message["Original-Envelope-Id"] == "id+with=signs"
    assert first["Original-Recipient"] == "rfc822; a+b@remote.example"
    assert first["Final-Recipient"] == "rfc822; a+b@remote.example"
    assert second["Original-Recipient"] == "x400; /C=US/ADMD=TEST/"
    control = status_groups(dsn(envid="tab+09here"))[0]
    assert control["Original-Envelope-Id"] == "tab+09here"
    assert "Original-Envelope-Id" not in status_groups(dsn(envid=None))[0]


def test_xtext_and_unitext_round_trip() -> None:
    for text in ["plain", "a+b=c", "sp ace", "tab\there", "ü€𝄞"]:
        assert decode_xtext(encode_xtext(text)) == text
        assert unitext_decode(unitext_encode(text)) == text
        assert encode_xtext(text).isascii()
        assert unitext_encode(text).isascii()
    assert encode_xtext("a+b=c") == "a+2Bb+3Dc"
    assert unitext_encode("a\\b ü") == "a\\x{5C}b\\x{20}\\x{FC}"
    for bad in ["a+", "a+2b", "a=b", "a b"]:
        with pytest.raises(ValueError, match="xtext"):
            decode_xtext(bad)


def test_no_report_to_the_null_sender_and_no_report_without_recipients() -> None:
    with pytest.raises(ValueError, match="null sender"):
        dsn(sender="")
    with pytest.raises(ValueError, match="at least one recipient"):
        build_dsn(
            reporting_mta="mail.example.test",
            original_sender="demo@example.test",
            original=ORIGINAL,
            envid=None,
            ret=None,
            arrival_date=ARRIVED,
            recipients=[],
            now=NOW,
            message_id_domain="example.test",
        )
    with pytest.raises(ValueError, match="not a DSN action"):
        dsn([DsnRecipient(final_recipient="x@remote.example", action="bounced", status="5.0.0")])


def test_an_invalid_status_is_replaced_by_the_default_of_the_action() -> None:
    groups = status_groups(
        dsn(
            [
                DsnRecipient(final_recipient="a@r.example", action="failed", status="550"),
                DsnRecipient(final_recipient="b@r.example", action="delayed", status=""),
                DsnRecipient(final_recipient="c@r.example", action="delivered", status="2.0"),
            ]
        )
    )
    assert [g["Status"] for g in groups[1:]] == ["5.0.0", "4.0.0", "2.0.0"]


def test_a_diagnostic_without_a_type_is_an_smtp_one_and_cannot_inject_header_lines() -> None:
    data = dsn(
        [
            DsnRecipient(
                final_recipient="x@remote.example",
                action="failed",
                status="5.0.0",
                diagnostic_code="550 bad\r\nBcc: victim@example.org\r\n\r\nX-Injected: yes",
                remote_mta="mx.remote.example\r\nX-Evil: 1",
            )
        ],
        sender="demo@example.test\r\nBcc: victim@example.org",
    )
    assert not re.search(rb"(?m)^(Bcc|X-Injected|X-Evil):", data)
    (_, fields) = status_groups(data)
    assert fields["Diagnostic-Code"].startswith("smtp; 550 bad")
    assert len(list(parse(data).iter_parts())) == 3


@pytest.mark.parametrize("ret", [None, "FULL"])
@pytest.mark.parametrize("smtputf8", [False, True])
def test_postoffice_parses_the_report_cleanly(ret: str | None, smtputf8: bool) -> None:
    data = dsn([FAILED, DELAYED], ret=ret, smtputf8=smtputf8)
    parsed = parse_message(io.BytesIO(data))
    assert parsed.size == len(data)
    assert parsed.subject == "Undelivered Mail Returned to Sender"
    assert parsed.message_id is not None
    assert parsed.message_id.endswith("@example.test>")
    body = parsed.body
    assert (body.type, body.subtype) == ("multipart", "report")
    assert ("report-type", "delivery-status") in [(k.lower(), v) for k, v in body.params]
    status_subtype = "global-delivery-status" if smtputf8 else "delivery-status"
    if ret:
        third = ("message", "global" if smtputf8 else "rfc822")
    else:
        third = ("message", "global-headers") if smtputf8 else ("text", "rfc822-headers")
    assert [(p.type, p.subtype) for p in body.parts] == [
        ("text", "plain"),
        ("message", status_subtype),
        third,
    ]
    for part in body.parts:
        assert body.body_start <= part.header_start <= part.body_start <= part.body_end <= body.body_end
    returned = body.parts[2]
    if ret:
        assert returned.embedded is not None
        assert returned.envelope is not None
        assert returned.envelope[1] == "the quarterly numbers"
        assert data[returned.body_start : returned.body_end] == ORIGINAL
    else:
        assert data[returned.body_start : returned.body_end] == HEADER
