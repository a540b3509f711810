"""The keyword limit of a mailbox, checked inside the write transaction (docs/decisions/0043).

Keywords (RFC 9051 section 2.3.2: flags without a backslash, created by clients) live in the `keywords`
column of each message row. "The keywords of a mailbox" are those some message of it carries now. A caller
(IMAP) passes `KeywordLimits`; a change that brings the mailbox a new keyword longer than `max_length`, or
beyond `max_keywords` distinct keywords, is refused (`LimitExceeded`, IMAP's NO [LIMIT]); COPY and MOVE
leave such keywords out of the copies instead. Checked in the same transaction as the change, on the single
writer, so concurrent sessions cannot go over the limit together. Keywords a mailbox has already (data from
before the limits) are never refused: only new ones are, as in Dovecot.

Cost: a change that adds only keywords the mailbox has already costs one indexed probe per keyword (it stops
at the first message that carries it); only a keyword new to the mailbox reads the distinct keyword strings of
the whole mailbox (as SELECT's `mailbox_status` does).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from postoffice.store.api import KeywordLimits, LimitExceeded

#: Up to this many candidate keywords are probed one by one; more read the mailbox's keywords at once.
_PROBES = 8


def mailbox_keywords(conn: sqlite3.Connection, mailbox_id: int) -> set[str]:
    """Every keyword some message of the mailbox carries."""
    found: set[str] = set()
    for (text,) in conn.execute(
        "SELECT DISTINCT keywords FROM messages WHERE mailbox_id = ? AND keywords != ''", (mailbox_id,)
    ):
        found.update(str(text).split(" "))
    return found


def _present(conn: sqlite3.Connection, mailbox_id: int, keyword: str) -> bool:
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM messages "
        "WHERE mailbox_id = ? AND instr(' ' || keywords || ' ', ?) > 0)",
        (mailbox_id, f" {keyword} "),
    ).fetchone()
    return bool(row[0])


def new_keywords(conn: sqlite3.Connection, mailbox_id: int, candidates: set[str]) -> tuple[set[str], int]:
    """(the candidates no message of the mailbox carries, how many keywords the mailbox has); the count is
    0 when every candidate is present (it was not needed, so not read)."""
    if len(candidates) <= _PROBES and all(_present(conn, mailbox_id, k) for k in candidates):
        return set(), 0
    existing = mailbox_keywords(conn, mailbox_id)
    return candidates - existing, len(existing)


def check_keyword_room(
    conn: sqlite3.Connection, mailbox_id: int, adding: Iterable[str], limits: KeywordLimits | None
) -> None:
    """LimitExceeded when the keywords `adding` (to be given to messages of the mailbox) include one new to
    it that is longer than `limits.max_length`, or would take it over `limits.max_keywords` distinct
    keywords. Counted before the change: one that removes the last use of a keyword and adds a new one is
    counted as adding."""
    candidates = set(adding)
    if limits is None or not candidates:
        return
    new, count = new_keywords(conn, mailbox_id, candidates)
    if not new:
        return
    if any(len(keyword) > limits.max_length for keyword in new):
        raise LimitExceeded(f"keywords are limited to {limits.max_length} characters")
    if count + len(new) > limits.max_keywords:
        raise LimitExceeded(f"a mailbox may have at most {limits.max_keywords} keywords")


def keywords_that_fit(
    conn: sqlite3.Connection, mailbox_id: int, wanted: set[str], limits: KeywordLimits | None
) -> set[str] | None:
    """COPY / MOVE: of the keywords `wanted` by the copies, those the target mailbox can take: the ones it
    has already, and new ones within `limits.max_length`, in sorted order while it stays within
    `limits.max_keywords`. None: all of them fit."""
    if limits is None or not wanted:
        return None
    new, count = new_keywords(conn, mailbox_id, wanted)
    if not new:
        return None
    room = max(limits.max_keywords - count, 0)
    fitting = sorted(k for k in new if len(k) <= limits.max_length)[:room]
    if len(fitting) == len(new):
        return None
    return (wanted - new) | set(fitting)


def keep_keywords(keywords: str, allowed: set[str] | None) -> str:
    """A row's keyword column with only the `allowed` keywords (all of them for None)."""
    if allowed is None or not keywords:
        return keywords
    return " ".join(k for k in keywords.split(" ") if k in allowed)


def keywords_of(conn: sqlite3.Connection, mailbox_id: int, uids: list[int]) -> set[str]:
    """The keywords the messages `uids` (ascending) of a mailbox carry, in one range read."""
    if not uids:
        return set()
    chosen = set(uids)
    found: set[str] = set()
    for uid, text in conn.execute(
        "SELECT uid, keywords FROM messages WHERE mailbox_id = ? AND uid BETWEEN ? AND ? AND keywords != ''",
        (mailbox_id, uids[0], uids[-1]),
    ):
        if uid in chosen:
            found.update(str(text).split(" "))
    return found
