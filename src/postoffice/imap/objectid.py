"""IMAP object ids (RFC 8474, OBJECTID; docs/decisions/0062): MAILBOXID, EMAILID and THREADID made of
numbers the store never gives twice, each with a letter for its kind, so an id of one kind is never taken
for another.

- MAILBOXID: the mailbox's UIDVALIDITY (a store-wide counter; RENAME keeps it, a new mailbox of the same name
  gets a new one).
- EMAILID: the content's id (from a counter since schema 19): copies made by COPY, MOVE or one delivery to
  several mailboxes share their content, so they share the id; another message never gets it.
- THREADID: the conversation's id (docs/decisions/0047), from a counter too.
"""

from __future__ import annotations

from postoffice.store import MailboxInfo


def mailbox_objectid(info: MailboxInfo) -> str:
    return f"M{info.uidvalidity}"


def email_objectid(content_id: int) -> str:
    return f"E{content_id}"


def thread_objectid(thread_id: int) -> str:
    return f"T{thread_id}"


def objectid_number(objectid: str, kind: str) -> int | None:
    """The number in an object id of `kind` ("E", "T", "M"); None for one this server never gave."""
    digits = objectid[1:]
    if objectid[:1] != kind or not digits.isdigit() or digits[0] == "0" or len(digits) > 18:
        return None
    return int(digits)
