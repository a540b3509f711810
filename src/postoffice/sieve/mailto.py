"""The mailto notification method of Sieve's enotify (RFC 5436): its URIs (RFC 6068) and the notification
message it sends.

- `parse_mailto(uri)`: the recipients (the path's addresses and the to, cc and bcc header fields), the other
  header fields of the URI (subject, ...) and its body; ValueError for a URI that is not a mailto URI with at
  least one recipient, or has more than MAX_RECIPIENTS.
- `notification(...)`: the message (RFC 5436 section 2.7): From the :from address or the recipient's,
  To and Cc as in the URI (Bcc recipients get it without being named), Subject the URI's, else the
  :message, else "Notification: " and the original subject; the body the URI's, else the :message and a
  summary of the message; `Auto-Submitted: auto-notified`. Header fields of the URI that could lie about
  the message's origin or route (From, Sender, Message-ID, Received, Return-Path, Auto-Submitted, Date, ...)
  are ignored (section 2.3).
"""

from __future__ import annotations

import email.message
import email.policy
import email.utils
import re
from dataclasses import dataclass, field
from urllib.parse import unquote

#: Recipients one notification may have at most.
MAX_RECIPIENTS = 10
#: An address a notification or a redirect may go to (an addr-spec without comments or quoting).
ADDRESS = re.compile(r"[^\s<>()@,;:\\\"\[\]]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+")
#: RFC 5436 section 2.3: the URI's header fields that are not taken.
_IGNORED = frozenset(
    {
        "from",
        "sender",
        "reply-to",
        "message-id",
        "received",
        "return-path",
        "auto-submitted",
        "date",
        "resent-from",
        "resent-sender",
        "resent-to",
        "resent-cc",
        "resent-bcc",
        "resent-date",
        "resent-message-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
    }
)


@dataclass(frozen=True)
class Mailto:
    to: tuple[str, ...]
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None

    @property
    def recipients(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.to, *self.cc, *self.bcc)))


def _addresses(text: str) -> list[str]:
    found = []
    for part in unquote(text, errors="strict").split(","):
        part = part.strip()
        if not part:
            continue
        _display, address = email.utils.parseaddr(part)
        if not ADDRESS.fullmatch(address):
            raise ValueError(f"not an address: {part!r}")
        found.append(address)
    return found


def parse_mailto(uri: str) -> Mailto:
    """The parts of a mailto URI (the module notes); ValueError when it cannot be used."""
    if uri[:7].lower() != "mailto:":
        raise ValueError("not a mailto URI")
    if any(c.isspace() for c in uri):
        raise ValueError("a mailto URI holds no white space")
    path, _, query = uri[7:].partition("?")
    to = _addresses(path)
    cc: list[str] = []
    bcc: list[str] = []
    headers: dict[str, str] = {}
    body = None
    for item in query.split("&") if query else ():
        name, equals, value = item.partition("=")
        if not equals:
            raise ValueError(f"a header field without a value: {item!r}")
        key = unquote(name).lower()
        if key == "to":
            to += _addresses(value)
        elif key == "cc":
            cc += _addresses(value)
        elif key == "bcc":
            bcc += _addresses(value)
        elif key == "body":
            body = unquote(value, errors="strict")
        elif key not in _IGNORED:
            headers[key] = " ".join(unquote(value, errors="strict").split())
    made = Mailto(tuple(to), tuple(cc), tuple(bcc), headers, body)
    if not made.recipients:
        raise ValueError("a mailto URI without a recipient")
    if len(made.recipients) > MAX_RECIPIENTS:
        raise ValueError(f"more than {MAX_RECIPIENTS} recipients")
    return made


def notification(
    mailto: Mailto,
    *,
    from_address: str,
    message: str | None,
    original_subject: str,
    original_from: str,
    hostname: str,
    importance: str | None = None,
) -> bytes:
    """The notification message (the module notes). ValueError when a field cannot be written. UTF-8
    addresses are written as UTF-8 (RFC 6532), never as encoded words (RFC 2047 section 5)."""
    utf8 = not all(a.isascii() for a in (*mailto.recipients, from_address))
    policy = (email.policy.SMTPUTF8 if utf8 else email.policy.SMTP).clone(max_line_length=998)
    made = email.message.EmailMessage(policy=policy)
    made["From"] = " ".join(from_address.split())
    if mailto.to:
        made["To"] = ", ".join(mailto.to)
    if mailto.cc:
        made["Cc"] = ", ".join(mailto.cc)
    subject = mailto.headers.get("subject") or (" ".join(message.split()) if message else "")
    made["Subject"] = subject or f"Notification: {original_subject or '(no subject)'}"
    made["Date"] = email.utils.formatdate(localtime=False)
    made["Message-ID"] = email.utils.make_msgid(domain=hostname)
    made["Auto-Submitted"] = "auto-notified"  # RFC 5436 section 2.7
    if importance in ("1", "3"):  # RFC 5435 section 3.4: 1 high, 3 low
        made["Importance"] = "high" if importance == "1" else "low"
    for name, value in mailto.headers.items():
        if name != "subject" and re.fullmatch(r"[A-Za-z0-9-]{1,64}", name):
            made[name] = value
    text = mailto.body
    if text is None:
        text = (
            message + "\n\n" if message else ""
        ) + f"A message arrived from {original_from or '(no sender)'}: "
        text += f"{original_subject or '(no subject)'}\n"
    made.set_content(text.replace("\r\n", "\n"), charset="utf-8")
    return made.as_bytes(policy=policy)
