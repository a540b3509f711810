"""The parsed form of a message, stored as JSON at delivery and read back for IMAP FETCH and SEARCH.

Structure invariants (checked by the tests for every message the parser produces):
- 0 <= header_start <= body_start <= body_end <= size for every part.
- The children of a multipart lie inside its body, in order, without overlapping.
- type == "multipart" implies at least one child; (type, subtype) in {message/rfc822, message/global} implies
  `embedded` and `envelope` are set, with embedded.header_start == body_start and embedded.body_end ==
  body_end. Every other part has no children and no embedded message. (Input that cannot satisfy this is
  degraded to a leaf by the parser; see `postoffice.message.parser`.)
- Every string is valid Unicode without surrogates.
- `from_json(to_json())` gives back an equal object.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

Params = list[tuple[str, str]]


@dataclass
class BodyPart:
    """One MIME entity (RFC 2045 / RFC 2046) with the byte offsets of its header and body in the message."""

    type: str = "text"
    subtype: str = "plain"
    params: Params = field(default_factory=list)
    id: str | None = None
    description: str | None = None
    encoding: str = "7BIT"
    md5: str | None = None
    disposition: tuple[str, Params] | None = None
    language: list[str] | None = None
    location: str | None = None
    header_start: int = 0
    body_start: int = 0
    body_end: int = 0
    lines: int = 0
    parts: list[BodyPart] = field(default_factory=list)
    envelope: list[Any] | None = None
    embedded: BodyPart | None = None

    @property
    def size(self) -> int:
        """Body size in bytes as stored (IMAP body-fld-octets)."""
        return self.body_end - self.body_start

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "subtype": self.subtype,
            "params": [list(p) for p in self.params],
            "id": self.id,
            "description": self.description,
            "encoding": self.encoding,
            "md5": self.md5,
            "disposition": None
            if self.disposition is None
            else [self.disposition[0], [list(p) for p in self.disposition[1]]],
            "language": self.language,
            "location": self.location,
            "header_start": self.header_start,
            "body_start": self.body_start,
            "body_end": self.body_end,
            "lines": self.lines,
            "parts": [p.to_dict() for p in self.parts],
            "envelope": self.envelope,
            "embedded": None if self.embedded is None else self.embedded.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BodyPart:
        disposition = d["disposition"]
        return cls(
            type=d["type"],
            subtype=d["subtype"],
            params=[(str(k), str(v)) for k, v in d["params"]],
            id=d["id"],
            description=d["description"],
            encoding=d["encoding"],
            md5=d["md5"],
            disposition=None
            if disposition is None
            else (disposition[0], [(str(k), str(v)) for k, v in disposition[1]]),
            language=d["language"],
            location=d["location"],
            header_start=d["header_start"],
            body_start=d["body_start"],
            body_end=d["body_end"],
            lines=d["lines"],
            parts=[cls.from_dict(p) for p in d["parts"]],
            envelope=d["envelope"],
            embedded=None if d["embedded"] is None else cls.from_dict(d["embedded"]),
        )


@dataclass
class ParsedMessage:
    """Everything IMAP needs about a message without reading it again (see the package docstring)."""

    size: int
    envelope: list[Any]
    body: BodyPart
    date: float | None = None
    sent_date: str | None = None
    subject: str = ""
    from_display: str = ""
    message_id: str | None = None
    search_headers: str = ""
    search_text: str = ""
    search_truncated: bool = False
    references: list[str] = field(default_factory=list)  # ancestors' Message-IDs (message.threads)
    #: what IMAP THREAD=REFERENCES links (message.threads.thread_references); None in what was stored before
    #: schema version 26 (whose content_sort rows that version's migration rewrote from the stored header)
    thread_references: list[str] | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "size": self.size,
                "envelope": self.envelope,
                "body": self.body.to_dict(),
                "date": self.date,
                "sent_date": self.sent_date,
                "subject": self.subject,
                "from_display": self.from_display,
                "message_id": self.message_id,
                "search_headers": self.search_headers,
                "search_text": self.search_text,
                "search_truncated": self.search_truncated,
                "references": self.references,
                "thread_references": self.thread_references,
            },
            separators=(",", ":"),
            ensure_ascii=False,  # every string is valid Unicode (no surrogates), so the JSON is valid UTF-8
        )

    @classmethod
    def from_json(cls, s: str) -> ParsedMessage:
        d = json.loads(s)
        return cls(
            size=d["size"],
            envelope=d["envelope"],
            body=BodyPart.from_dict(d["body"]),
            date=d["date"],
            sent_date=d["sent_date"],
            subject=d["subject"],
            from_display=d["from_display"],
            message_id=d["message_id"],
            search_headers=d["search_headers"],
            search_text=d["search_text"],
            search_truncated=d["search_truncated"],
            references=d.get("references", []),  # absent in what was stored before schema version 12
            thread_references=d.get("thread_references"),
        )


def envelope_addresses(envelope: list[Any], fields: tuple[int, ...]) -> list[tuple[str, str]]:
    """(display name, "mailbox@host") of the address lists `fields` of an ENVELOPE (RFC 9051 7.5.2: 2 from,
    5 to, 6 cc, 7 bcc), in order, as the parser wrote them; group markers and incomplete entries left out."""
    found: list[tuple[str, str]] = []
    for index in fields:
        entries = envelope[index] if index < len(envelope) else None
        found += [
            (str(entry[0] or ""), f"{entry[2]}@{entry[3]}")
            for entry in (entries if isinstance(entries, list) else [])
            if isinstance(entry, list) and len(entry) == 4 and entry[2] and entry[3]
        ]
    return found
