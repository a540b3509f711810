"""What IMAP SORT and THREAD compare of a message (RFC 5256, RFC 5957), taken from its parsed form at delivery
and kept by the store beside it (so that sorting 100,000 messages reads a few narrow columns, not 100,000
parsed structures).

The fields are kept as the message has them; the comparison forms (base subject, i;ascii-casemap) are made by
`postoffice.imap.sort` when it needs them:
- `sent`: the Date field as UTC epoch seconds, None when it is missing or invalid (SORT DATE then uses the
  internal date, RFC 5256 section 2.2);
- `subject`: the decoded Subject;
- `from_mailbox`, `to_mailbox`, `cc_mailbox`: the local part (ENVELOPE addr-mailbox) of the first address of
  From, To and Cc, group markers left out (RFC 5256 section 3, SORT FROM / TO / CC), "" when there is none;
- `from_display`, `to_display`: RFC 5957's key of the first address: its display name, decoded (RFC 2047),
  or its addr-spec when it has none;
- `message_id` and `references`: the Message-ID's id, and what RFC 5256's REFERENCES algorithm links: the
  ids of References in order, or the first of In-Reply-To when References has none
  (`ParsedMessage.thread_references`, `postoffice.message.threads.thread_references`), for THREAD.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from postoffice.message.headers import decode_words
from postoffice.message.model import ParsedMessage
from postoffice.message.threads import message_ids

_FROM, _TO, _CC = 2, 5, 6  # ENVELOPE indexes (RFC 9051 section 7.5.2)


class SortFields(NamedTuple):
    """See the module docstring."""

    sent: float | None
    subject: str
    from_mailbox: str
    from_display: str
    to_mailbox: str
    to_display: str
    cc_mailbox: str
    message_id: str | None
    references: tuple[str, ...]


def _first_address(envelope: list[Any], index: int) -> tuple[str, str]:
    """(addr-mailbox, RFC 5957 display key) of the first complete address of an ENVELOPE address list."""
    entries = envelope[index] if index < len(envelope) else None
    for entry in entries if isinstance(entries, list) else ():
        if isinstance(entry, list) and len(entry) == 4 and entry[2] and entry[3]:
            mailbox, host = str(entry[2]), str(entry[3])
            name = decode_words(str(entry[0])).strip() if entry[0] else ""
            return mailbox, name or f"{mailbox}@{host}"
    return "", ""


def sort_fields(parsed: ParsedMessage) -> SortFields:
    """The sort fields of a parsed message."""
    envelope = parsed.envelope
    from_mailbox, from_display = _first_address(envelope, _FROM)
    to_mailbox, to_display = _first_address(envelope, _TO)
    cc_mailbox, _ = _first_address(envelope, _CC)
    ids = message_ids(parsed.message_id or "")
    return SortFields(
        sent=parsed.date,
        subject=parsed.subject,
        from_mailbox=from_mailbox,
        from_display=from_display,
        to_mailbox=to_mailbox,
        to_display=to_display,
        cc_mailbox=cc_mailbox,
        message_id=ids[0] if ids else None,
        references=tuple(parsed.references if parsed.thread_references is None else parsed.thread_references),
    )
