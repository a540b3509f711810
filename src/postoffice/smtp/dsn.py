"""Delivery status notifications: the multipart/report messages the queue sends back to a message's sender.

Standards: RFC 3464 (message/delivery-status fields), RFC 3461 section 4 (RET, ENVID, ORCPT: xtext) and
section 6 (what a DSN contains), RFC 6522 (multipart/report, text/rfc822-headers), RFC 6533 (the "utf-8"
address type and message/global-delivery-status, message/global-headers for SMTPUTF8 messages), RFC 6532
section 3.7 (message/global), RFC 3834 section 5 (Auto-Submitted), RFC 5322 (dates, header lines).

Implementation notes
- `build_dsn` is pure: bytes in, bytes out, no I/O, no clock (the caller passes `now`), so it is tested by
  parsing what it makes.
- Loops: a DSN is sent from the null sender, always. That is the caller's duty (the envelope is not part of
  these bytes): queue it with `OutboundMessage(sender="")`; the store refuses generated messages with any
  other sender, and no DSN is ever made for a message whose sender is null (RFC 5321 section 4.5.5;
  `build_dsn` refuses an empty `original_sender`).
- What is returned (RFC 3461 section 4.3): the whole message only when RET=FULL was asked, the report has a
  failed recipient (RET speaks of "failed" DSNs; the sender of a delayed or delivered message still has it or
  will get it back on failure) and the message is at most `max_full_size` bytes. Otherwise, and when RET was
  not given, the header only: our default, as the RFC leaves it to the MTA; it is what senders need to
  recognise the message, and it keeps private bodies and large attachments out of bounces.
- ENVID and ORCPT are taken in their wire form (xtext, as received in MAIL/RCPT and as the queue stores them)
  and written decoded when the result is plain text, else re-encoded (RFC 3464 sections 2.2.1, 2.3.1).
- Non-ASCII addresses (RFC 6533 section 3): in an SMTPUTF8 report (`smtputf8=True`, or a non-ASCII sender)
  the parts are message/global-delivery-status and message/global(-headers) and addresses are raw UTF-8 with
  the "utf-8" type; otherwise the report stays 7-bit: a non-ASCII address is written as "utf-8;" with \\x{HEX}
  escapes, and an original header with 8-bit bytes is returned base64-encoded as text/rfc822-headers.
- Transport needs of the result: SMTPUTF8 exactly when the report is an SMTPUTF8 one (see above); 8BITMIME
  when `not data.isascii()` (an 8-bit original returned whole).
- Every line ends in CRLF and no line is longer than 998 octets (RFC 5322 section 2.1.1): long field values
  are folded at spaces, and words that still do not fit are cut.
"""

from __future__ import annotations

import base64
import re
import secrets
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import quoprimime
from email.utils import format_datetime

from postoffice.smtp.xtext import decode_xtext, encode_xtext

#: RFC 3464 section 2.3.3.
ACTIONS = ("failed", "delayed", "delivered", "relayed", "expanded")
#: A larger message is returned with its header only, whatever RET asked.
DEFAULT_MAX_FULL_SIZE = 1024 * 1024

_STATUS = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
_DEFAULT_STATUS = {"failed": "5.0.0", "delayed": "4.0.0"}
_UNITEXT = re.compile(r"\\x\{([0-9A-Fa-f]{1,6})\}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LINE_ENDS = re.compile(rb"\r\n|\r|\n")
_MESSAGE_ID = re.compile(rb"(?im)^message-id:[ \t]*(<[!-;=?-~]{1,900}>)[ \t]*\r?$")
MAX_LINE = 998
FOLD_AT = 78


@dataclass(frozen=True, kw_only=True)
class DsnRecipient:
    """The per-recipient fields of a report (RFC 3464 section 2.3)."""

    final_recipient: str  # the address delivery was attempted to
    original_recipient: str | None = None  # the ORCPT parameter as received: "rfc822;" + xtext
    action: str  # one of ACTIONS
    status: str  # RFC 3463 status, e.g. "5.1.1" (an invalid one is replaced by the action's default)
    diagnostic_code: str | None = None  # e.g. "smtp; 550 5.1.1 no such user" ("smtp; " is added if missing)
    remote_mta: str | None = None  # host name of the server that answered
    last_attempt_date: float | None = None
    will_retry_until: float | None = None  # for "delayed"


def unitext_decode(text: str) -> str:
    """RFC 6533 section 3: "\\x{HEX}" stands for one Unicode code point."""
    return _UNITEXT.sub(lambda m: chr(min(int(m.group(1), 16), 0x10FFFF)), text)


def unitext_encode(text: str) -> str:
    """RFC 6533 section 3 (utf-8-addr-xtext): every character but printable ASCII other than SP, "\\", "+"
    and "=" as "\\x{HEX}", so that the result is 7-bit."""
    return "".join(ch if "!" <= ch <= "~" and ch not in "\\+=" else f"\\x{{{ord(ch):02X}}}" for ch in text)


def build_dsn(
    *,
    reporting_mta: str,
    original_sender: str,
    original: bytes,
    envid: str | None,
    ret: str | None,
    arrival_date: float,
    recipients: Sequence[DsnRecipient],
    now: float,
    max_full_size: int = DEFAULT_MAX_FULL_SIZE,
    message_id_domain: str,
    smtputf8: bool = False,
) -> bytes:
    """A complete RFC 5322 message (CRLF line ends) reporting on `recipients` of the message `original`
    (its bytes as queued, or only its header when it is large and RET=FULL cannot apply) to
    `original_sender`. `envid` and each `original_recipient` are in their wire form (xtext); `ret` is
    "FULL", "HDRS" or None. `smtputf8`: the original message was sent with SMTPUTF8 (see the module notes).
    Send it from the null sender."""
    if not original_sender:
        raise ValueError("no DSN is sent about a message with the null sender (RFC 5321 section 4.5.5)")
    if not recipients:
        raise ValueError("a DSN reports on at least one recipient")
    for r in recipients:
        if r.action not in ACTIONS:
            raise ValueError(f"not a DSN action: {r.action!r}")
    utf8 = smtputf8 or not original_sender.isascii()
    actions = {r.action for r in recipients}
    if "failed" in actions:
        subject = "Undelivered Mail Returned to Sender"
    elif "delayed" in actions:
        subject = "Delivery Status Notification (Delay)"
    else:
        subject = "Delivery Status Notification (Success)"

    original = _LINE_ENDS.sub(b"\r\n", original)
    header = _header_of(original)
    full = (
        (ret or "").upper() == "FULL"
        and "failed" in actions
        and len(original) <= max_full_size
        and (utf8 or header.isascii())  # 8-bit header fields cannot travel in a 7-bit report
    )
    reporting_mta, message_id_domain = _clean(reporting_mta), _clean(message_id_domain)
    too_large = (ret or "").upper() == "FULL" and "failed" in actions and not full
    text = _human_text(reporting_mta, recipients, full=full, too_large=too_large)
    status = _delivery_status(reporting_mta, envid, arrival_date, recipients, utf8)
    parts = [
        _text_part(text, utf8),
        _part(
            [
                "Content-Description: Delivery report",
                f"Content-Type: message/{'global-' if utf8 else ''}delivery-status",
                f"Content-Transfer-Encoding: {'8bit' if utf8 and not status.isascii() else '7bit'}",
            ],
            status,
        ),
        _original_part(original if full else header, full=full, utf8=utf8),
    ]
    boundary = _boundary(parts)

    fields = [
        'From: "Mail Delivery System" <MAILER-DAEMON@' + reporting_mta + ">",
        f"To: <{_clean(original_sender)}>",
        f"Subject: {subject}",
        f"Date: {_date(now)}",
        f"Message-ID: <{secrets.token_hex(8)}.{int(now)}@{message_id_domain}>",
    ]
    found = _MESSAGE_ID.search(header)
    if found is not None:  # threads the report with the message in the sender's mail program
        fields.append("References: " + found.group(1).decode("ascii"))
    fields += [
        "Auto-Submitted: auto-replied",  # RFC 3834 section 5: no automatic answer to this one
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=delivery-status;",
        f'\tboundary="{boundary}"',
    ]
    out = bytearray("\r\n".join(fields).encode("utf-8") + b"\r\n\r\n")
    out += b"This is a MIME-encapsulated message.\r\n"
    for part in parts:
        out += b"\r\n--" + boundary.encode("ascii") + b"\r\n" + part
    out += b"\r\n--" + boundary.encode("ascii") + b"--\r\n"
    return bytes(out)


# -- the parts -----------------------------------------------------------------------------------------------
def _part(fields: list[str], body: bytes) -> bytes:
    return "\r\n".join(fields).encode("ascii") + b"\r\n\r\n" + body


def _text_part(text: str, utf8: bool) -> bytes:
    """RFC 6522 section 3: the first part is for people."""
    body = text.replace("\n", "\r\n")
    fields = ["Content-Description: Notification"]
    if body.isascii():
        data = body.encode("ascii")
        fields += ["Content-Type: text/plain; charset=us-ascii", "Content-Transfer-Encoding: 7bit"]
    elif utf8:
        data = body.encode("utf-8")
        fields += ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"]
    else:
        latin = body.replace("\r\n", "\n").encode("utf-8").decode("latin-1")
        data = quoprimime.body_encode(latin, maxlinelen=76, eol="\r\n").encode("ascii")
        fields += ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: quoted-printable"]
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return _part(fields, data)


def _original_part(data: bytes, *, full: bool, utf8: bool) -> bytes:
    """The message (message/rfc822, or message/global in an SMTPUTF8 report) or its header
    (text/rfc822-headers, RFC 6522 section 4, or message/global-headers, RFC 6533)."""
    if full:
        kind = "message/global" if utf8 else "message/rfc822"
        fields = ["Content-Description: Undelivered message", f"Content-Type: {kind}"]
    elif utf8:
        fields = ["Content-Description: Message headers", "Content-Type: message/global-headers"]
    elif not data.isascii():
        # 8-bit header fields in a 7-bit report: base64 keeps them intact (unknown-8bit: RFC 1428)
        try:
            data.decode("utf-8")
            charset = "utf-8"
        except UnicodeDecodeError:
            charset = "unknown-8bit"
        encoded = _base64_lines(data)
        return _part(
            [
                "Content-Description: Message headers",
                f"Content-Type: text/rfc822-headers; charset={charset}",
                "Content-Transfer-Encoding: base64",
            ],
            encoded,
        )
    else:
        fields = ["Content-Description: Message headers", "Content-Type: text/rfc822-headers"]
    fields.append(f"Content-Transfer-Encoding: {'7bit' if data.isascii() else '8bit'}")
    return _part(fields, data)


def _base64_lines(data: bytes) -> bytes:
    encoded = base64.b64encode(data)
    return b"".join(encoded[i : i + 76] + b"\r\n" for i in range(0, len(encoded), 76))


def _header_of(message: bytes) -> bytes:
    """The header section with the empty line that ends it (all of `message`, with that empty line added,
    if it has none: the caller gave the header only)."""
    if message.startswith(b"\r\n"):
        return b"\r\n"
    end = message.find(b"\r\n\r\n")
    if end >= 0:
        return message[: end + 4]
    return message.removesuffix(b"\r\n") + b"\r\n\r\n"


def _boundary(parts: Sequence[bytes]) -> str:
    """A boundary that occurs in no part (RFC 2046 section 5.1.1); "=_" cannot occur in quoted-printable or
    base64 text."""
    while True:
        boundary = f"=_postoffice-dsn-{secrets.token_hex(12)}"
        if not any(boundary.encode("ascii") in part for part in parts):
            return boundary


# -- the delivery-status fields ------------------------------------------------------------------------------
def _delivery_status(
    reporting_mta: str, envid: str | None, arrival: float, recipients: Sequence[DsnRecipient], utf8: bool
) -> bytes:
    """RFC 3464 section 2.1: the per-message fields, then one group of fields per recipient, each group
    after an empty line."""
    lines: list[str] = []
    if envid:
        lines += _field("Original-Envelope-Id", _envelope_id(envid))  # RFC 3464 section 2.2.1
    lines += _field("Reporting-MTA", f"dns; {reporting_mta}")  # 2.2.2
    lines += _field("Arrival-Date", _date(arrival))  # 2.2.5
    for r in recipients:
        lines.append("")
        if r.original_recipient:
            lines += _field("Original-Recipient", _original_recipient(r.original_recipient, utf8))  # 2.3.1
        lines += _field("Final-Recipient", _address_field("rfc822", r.final_recipient, utf8))  # 2.3.2
        lines += _field("Action", r.action)  # 2.3.3
        status = r.status.strip()
        if not _STATUS.fullmatch(status):
            status = _DEFAULT_STATUS.get(r.action, "2.0.0")
        lines += _field("Status", status)  # 2.3.4
        if r.remote_mta:
            lines += _field("Remote-MTA", f"dns; {r.remote_mta}")  # 2.3.5
        if r.diagnostic_code:
            lines += _field("Diagnostic-Code", _diagnostic(r.diagnostic_code))  # 2.3.6
        if r.last_attempt_date is not None:
            lines += _field("Last-Attempt-Date", _date(r.last_attempt_date))  # 2.3.7
        if r.will_retry_until is not None:
            lines += _field("Will-Retry-Until", _date(r.will_retry_until))  # 2.3.9
    text = "\r\n".join(lines) + "\r\n"
    # a 7-bit report: anything non-ASCII (a diagnostic in UTF-8, RFC 6533 section 4) as \x{HEX}
    return (text if utf8 else _escape_non_ascii(text)).encode("utf-8")


def _escape_non_ascii(text: str) -> str:
    return "".join(ch if ch.isascii() else f"\\x{{{ord(ch):02X}}}" for ch in text)


def _envelope_id(wire: str) -> str:
    """ENVID is xtext in MAIL (RFC 3461 section 4.4); the report carries the text itself (RFC 3464 section
    2.2.1: envelope-id = *text), re-encoded as xtext when that text is not printable ASCII."""
    try:
        decoded = decode_xtext(wire)
    except ValueError:
        decoded = wire
    if decoded.isascii() and not _CONTROL.search(decoded):
        return decoded
    return encode_xtext(decoded)


def _original_recipient(wire: str, utf8: bool) -> str:
    """The ORCPT parameter ("addr-type;xtext", RFC 3461 section 4.2) as an Original-Recipient value."""
    addr_type, sep, value = wire.partition(";")
    if not sep:
        addr_type, value = "rfc822", wire
    addr_type, value = addr_type.strip(), value.strip()
    if addr_type.lower() == "rfc822":
        try:
            return _address_field("rfc822", decode_xtext(value), utf8)
        except ValueError:
            return _address_field("rfc822", value, utf8)
    if addr_type.lower() == "utf-8":
        return _address_field("rfc822", unitext_decode(value), utf8)
    return f"{_clean(addr_type)}; {_clean(value)}"  # another address type: as given


def _address_field(addr_type: str, address: str, utf8: bool) -> str:
    """ "rfc822; addr", or the "utf-8" type of RFC 6533 section 3 for a non-ASCII address: raw in an SMTPUTF8
    report (utf-8-address), \\x{HEX}-escaped in a 7-bit one (utf-8-addr-xtext)."""
    if address.isascii():
        return f"{addr_type}; {address if not _CONTROL.search(address) else encode_xtext(address)}"
    return f"utf-8; {_CONTROL.sub(' ', address) if utf8 else unitext_encode(address)}"


def _diagnostic(code: str) -> str:
    """RFC 3464 section 2.3.6: diagnostic-type ";" text; a reply given without its type is an SMTP one."""
    code = _clean(code)
    if not re.match(r"[A-Za-z][A-Za-z0-9-]*[ \t]*;", code):
        code = f"smtp; {code}"
    return code


def _field(name: str, value: str) -> list[str]:
    """One header-style field, folded at spaces to about 78 characters; no line over 998 octets."""
    words = _clean(value).split(" ")
    lines: list[str] = []
    line = f"{name}:"
    for word in words:
        if not word:
            continue
        word = word[: MAX_LINE - 2]  # a word that cannot fit on any line is cut
        if len(line) + 1 + len(word) > FOLD_AT and line.strip() and not line.endswith(":"):
            lines.append(line)
            line = " " + word
        else:
            line = f"{line} {word}"
        while len(line.encode("utf-8")) > MAX_LINE:
            line = line[:-1]
    lines.append(line)
    return lines


def _clean(value: str) -> str:
    """No CR, LF or other control character may reach a header line (field injection)."""
    return _CONTROL.sub(" ", value).strip()


def _date(timestamp: float) -> str:
    """RFC 5322 section 3.3 date-time, in UTC (+0000)."""
    return format_datetime(datetime.fromtimestamp(timestamp, UTC).replace(microsecond=0))


# -- the text for people -------------------------------------------------------------------------------------
_ACTION_TEXT = {
    "failed": "could not be delivered; the mail system gave up",
    "delayed": "has not been delivered yet; the mail system is still trying",
    "delivered": "was delivered",
    "relayed": "was passed on to a server that sends no delivery notifications",
    "expanded": "was delivered to a list or alias, which passed it on",
}


def _human_text(
    reporting_mta: str, recipients: Sequence[DsnRecipient], *, full: bool, too_large: bool
) -> str:
    """Plain words for the sender (UTF-8; quoted-printable in a 7-bit report when an address needs it)."""
    actions = {r.action for r in recipients}
    lines = [f"This is the mail system at {reporting_mta}.", ""]
    if "failed" in actions:
        lines += [
            "Your message could not be delivered to one or more recipients.",
            "It has not been delivered to the failed recipients below; you may",
            "want to correct the address or send it again later.",
        ]
    elif "delayed" in actions:
        lines += [
            "Your message has not been delivered yet to one or more recipients.",
            "The mail system will go on trying; you do not need to send it again.",
        ]
    else:
        lines += ["This is the delivery report you asked for."]
    lines.append("")
    for r in recipients:
        lines.append(f"<{_clean(r.final_recipient)}>:")
        lines.append(f"    {_ACTION_TEXT[r.action]}.")
        if r.remote_mta:
            lines.append(f"    Server: {_clean(r.remote_mta)}")
        if r.diagnostic_code:
            reply = _clean(r.diagnostic_code)
            reply = reply.split(";", 1)[1].strip() if ";" in reply[:20] else reply
            lines += textwrap.wrap(
                reply[:2000],
                76,
                initial_indent="    Reply: ",
                subsequent_indent="      ",
                break_on_hyphens=False,
            )
        if r.will_retry_until is not None:
            lines.append(f"    Trying until: {_date(r.will_retry_until)}")
        lines.append("")
    if full:
        lines.append("Your message is attached.")
    elif too_large:
        lines.append("Your message is too large to return whole: its header is attached.")
    else:
        lines.append("The header of your message is attached (not its content).")
    return "\n".join(lines) + "\n"
