"""SQLite compilation of search criteria (`postoffice.store.criteria`) for `MailStore.search`.

Implements the matching rules of RFC 9051 / RFC 3501 section 6.4.4 as documented in `criteria`, answered from
the store's columns and its FTS5 trigram index; see docs/decisions/0014-imap-search.md.

Implementation notes
- The whole tree becomes one WHERE clause on `messages` (alias m) of the mailbox; every atom is 0 or 1, never
  NULL, so NOT and OR are exact (a NULL would make NOT(x) drop the row too).
- Text atoms. SQLite's LIKE folds ASCII only; the trigram index folds Unicode. So the needle becomes a LIKE
  pattern of the same length in which every character that an ASCII-only comparison cannot decide (non-ASCII,
  the ASCII letters that a non-ASCII letter folds to: k and s, and the wildcards % and _ themselves) is the
  one-character wildcard `_`. No ESCAPE clause: with one, FTS5 does not use the index. Such a pattern
  matches a superset of the real matches (`criteria.fold` is one code point to one code point), which the
  SQL function `po_contains` (Python, `fold` on both sides) then narrows to the exact set; a pattern of plain
  ASCII is exact by itself and needs no Python. Header-field atoms always run `po_header_contains`, which
  looks for the needle in the named fields only. An address field (FROM, TO, CC, BCC) may match in its
  addresses without comments and folding, which are not stored: its LIKE patterns are made of the pieces of
  the needle between spaces, "@" and "." (`address_patterns`), each of which is in the stored text.
- Index or scan: a pattern with a run of 3 or more literal characters goes to the trigram index as an
  uncorrelated `m.content_id IN (SELECT rowid FROM content_search WHERE col LIKE ...)` (evaluated once, over
  the whole store); a shorter one cannot use trigrams, and is checked per message of the mailbox
  (`EXISTS (... WHERE rowid = m.content_id ...)`).
- A search for the newest N matches (`newest`, the webmail's first page) first walks the newest
  PROBE_MESSAGES (500) messages down, checking each message's text by its id in FTS5's content table; only
  when those hold fewer than N matches does it ask the index for every candidate (a word in most messages
  makes that list most of the mailbox).
- Truncated search text: when the parser cut a message's text (`contents.search_truncated`, rare: more than
  `postoffice.message.MAX_SEARCH_TEXT` characters), body needles are looked for in the text decoded again from
  the stored bytes with `postoffice.message.text.part_text`, leaf by leaf (memory: one leaf's text), before
  the query runs; those content ids are ORed into the body atom.
- Limits: header search sees `search_headers`, which the parser caps (MAX_SEARCH_HEADERS). A decoded header
  value containing a line break followed by "Name: " reads as two fields.
- The SQL text is built only from constant fragments, column names and operators taken from constant tables,
  and `int()`s; every value that comes from a client is a `?` parameter (`params`). The f-strings that ruff's
  S608 flags are marked so (docs/decisions/0044).
"""

from __future__ import annotations

import datetime
import functools
import json
import re
import sqlite3
from collections.abc import Iterable, Iterator
from typing import IO, cast

from postoffice.directory.address import normalize_address
from postoffice.message import ParsedMessage
from postoffice.message.text import part_text, text_leaves
from postoffice.store.api import SYSTEM_FLAGS
from postoffice.store.criteria import (
    ADDRESS_FIELDS,
    ADDRESS_SEPARATORS,
    ENVELOPE_ADDRESS_FIELDS,
    Address,
    All,
    And,
    Arrived,
    ContentIs,
    Criteria,
    Date,
    HasFlag,
    ModSeq,
    Not,
    Or,
    Size,
    Text,
    ThreadIs,
    UidIn,
    ascii_with_non_ascii_variants,
    fold,
    header_value_matches,
    needle_pieces,
)

#: Needle characters used for the LIKE pattern; longer needles are matched on this prefix, then verified
#: (SQLite refuses LIKE patterns over 50,000 bytes).
MAX_PATTERN_CHARS = 1000
#: UID ranges at most this wide are listed one by one (json_each); wider ones become BETWEEN terms.
_LIST_RANGE_WIDTH = 64
_SYSTEM_BITS = {name.lower(): 1 << i for i, name in enumerate(SYSTEM_FLAGS)}
_HEADER_LINE = re.compile(r"([\x21-\x39\x3b-\x7e]+): ?(.*)", re.DOTALL)
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x40\x5b-\x7e]+")  # lower case: no A-Z


def register_functions(conn: sqlite3.Connection) -> None:
    """The SQL functions search queries use; call once per connection that runs them."""
    conn.create_function("po_contains", 2, _sql_contains, deterministic=True)
    conn.create_function("po_header_contains", 3, _sql_header_contains, deterministic=True)


def _sql_contains(haystack: str | None, folded_needle: str) -> int:
    return 1 if haystack is not None and folded_needle in fold(haystack) else 0


@functools.lru_cache(maxsize=64)
def _field_starts(lower_name: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(lower_name) + ":", re.MULTILINE)


def _sql_header_contains(headers: str | None, lower_name: str, folded_needle: str) -> int:
    """`header_fields` semantics, but only the fields named `lower_name` are parsed: a line that starts with
    "name:" always starts a field, and only what follows it can be its continuation. Each field is matched
    by `criteria.header_value_matches` (address fields also without comments and folding).

    Linear: the field starts are found by a regular expression over the folded text (`fold` maps one code
    point to one, so positions agree with `headers`), and each line is read at most once as a continuation
    (the remaining lines were copied for every field: 20,000 "From:" lines took 0.8 s, 150,000 about a
    minute, per message searched)."""
    if headers is None or not _FIELD_NAME.fullmatch(lower_name):
        return 0  # `header_fields` never yields such a name
    folded = fold(headers)
    if not all(piece in folded for piece in needle_pieces(lower_name, folded_needle)):
        return 0  # no field can match: one pass in C, for most candidates of the index
    size = len(headers)
    # a "name:" line is never a continuation (it matches _HEADER_LINE), so the fields found do not overlap
    for m in _field_starts(lower_name).finditer(folded):
        if not headers[m.start() : m.end()].isascii():
            continue  # folded from a non-ASCII letter (K KELVIN SIGN): not a field name
        start = m.end() + 1 if headers.startswith(" ", m.end()) else m.end()
        end = headers.find("\n", m.end())
        end = size if end < 0 else end
        while end + 1 < size:
            nl = headers.find("\n", end + 1)
            nl = size if nl < 0 else nl
            if _HEADER_LINE.fullmatch(headers, end + 1, nl):
                break
            end = nl
        if folded_needle in folded[start:end] or header_value_matches(
            lower_name, headers[start:end], folded_needle
        ):
            return 1
    return 0


def header_fields(search_headers: str) -> Iterator[tuple[str, str]]:
    """(name, decoded value) of each field in `ParsedMessage.search_headers` ("Name: value" lines); a line
    that does not start a field continues the value before it."""
    name: str | None = None
    pieces: list[str] = []
    for line in search_headers.removesuffix("\n").split("\n"):
        m = _HEADER_LINE.fullmatch(line)
        if m is not None:
            if name is not None:
                yield name, "\n".join(pieces)
            name, pieces = m.group(1), [m.group(2)]
        elif name is not None:
            pieces.append(line)
    if name is not None:
        yield name, "\n".join(pieces)


def like_pattern(needle: str) -> tuple[str, bool, bool]:
    """(LIKE pattern without the enclosing %, exact, indexable) for a case-insensitive substring search.

    exact: the LIKE alone decides (the pattern has no substituted character); indexable: it has a run of 3+
    literal characters, from which FTS5 takes trigrams."""
    unsafe = ascii_with_non_ascii_variants()
    exact = len(needle) <= MAX_PATTERN_CHARS
    out: list[str] = []
    run = longest = 0
    for ch in needle[:MAX_PATTERN_CHARS]:
        if ch.isascii() and ch not in unsafe and ch not in "%_":
            out.append(ch)
            run += 1
            longest = max(longest, run)
        else:
            out.append("_")
            exact = False
            run = 0
    return "".join(out), exact, longest >= 3


def address_patterns(needle: str) -> tuple[str, str, bool]:
    """(candidate LIKE pattern, full LIKE pattern, indexable) for a search of an address field, whose match
    may be in the field's `address_text` rather than in its text.

    The needle is cut at spaces, "@" and "." (where `address_text` may have removed comments and
    whitespace); every piece is in the stored header text, in the order of the needle, so
    "%piece1%piece2%" is a superset of the matches; the candidates are found by the pieces before the last
    "@" (the local part, as `candidate_pattern` does), when they have 3 literal characters."""

    def joined(text: str) -> tuple[str, bool]:
        pieces = [like_pattern(piece) for piece in ADDRESS_SEPARATORS.split(text) if piece]
        return "%" + "".join(p + "%" for p, _, _ in pieces), any(indexable for _, _, indexable in pieces)

    full, indexable = joined(needle)
    local, at, _ = needle.rpartition("@")
    if at and local:
        candidates, local_indexable = joined(local)
        if local_indexable:
            return candidates, full, True
    return full, full, indexable


def candidate_pattern(needle: str) -> tuple[str, bool]:
    """(LIKE pattern, indexable) by which the trigram index finds the candidates for a substring search.

    For an address ("local@domain") only the part up to the "@": domains are shared by many messages, so
    their trigrams have long document lists that cost more to intersect than they exclude (SEARCH FROM of a
    full address: 4 ms -> 1 ms on 10,000 messages); the whole pattern is then checked on the candidates."""
    pattern, _, indexable = like_pattern(needle)
    local, at, _ = needle.rpartition("@")
    if at and local:
        local_pattern, _, local_indexable = like_pattern(local + "@")
        if local_indexable:
            return "%" + local_pattern + "%", True
    return "%" + pattern + "%", indexable


def _full_text_matches(conn: sqlite3.Connection, content_id: int, needles: set[str]) -> set[str]:
    """Which of the folded `needles` occur in the complete decoded text of the content (parts joined by
    "\\n", as `ParsedMessage.search_text`), decoded again from the stored bytes."""
    row = conn.execute("SELECT parsed FROM contents WHERE id = ?", (content_id,)).fetchone()
    if row is None:
        return set()
    parsed = ParsedMessage.from_json(str(row[0]))
    keep = max(len(n) for n in needles) - 1
    found: set[str] = set()
    carry: str | None = None
    with conn.blobopen("content_data", "data", content_id, readonly=True) as blob:
        for leaf in text_leaves(parsed.body):
            # sqlite3.Blob has the read/seek that part_text uses
            text, _cut = part_text(cast(IO[bytes], blob), leaf, 2 * leaf.size + 16)
            window = fold(text) if carry is None else carry + "\n" + fold(text)
            found.update(n for n in needles if n not in found and n in window)
            if len(found) == len(needles):
                break
            carry = window[len(window) - keep :] if keep > 0 else ""
    return found


def _or_terms(c: Or) -> list[Criteria]:
    """The terms of a chain of ORs (OR a OR b c), in order."""
    out: list[Criteria] = []
    stack: list[Criteria] = [c]
    while stack:
        term = stack.pop()
        if isinstance(term, Or):
            stack += [term.right, term.left]
        else:
            out.append(term)
    return out


def _uid_ranges(c: UidIn) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for low, high in sorted(c.ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(high, merged[-1][1]))
        else:
            merged.append((low, high))
    return merged


def _intersect(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    i = j = 0
    while i < len(a) and j < len(b):
        low, high = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if low <= high:
            out.append((low, high))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def _simplified(terms: Iterable[Criteria], *, union: bool) -> list[Criteria]:
    """The terms of an AND (or, with `union`, an OR) with duplicates dropped and every UidIn merged into
    one (their intersection, or union): the same answer, with one SQL term per distinct criterion (a SEARCH
    of 30,000 "1" keys made 30,000 subqueries per message)."""
    unique = list(dict.fromkeys(terms))
    uids = [t for t in unique if isinstance(t, UidIn)]
    if len(uids) < 2:
        return unique
    if union:
        ranges = _uid_ranges(UidIn(tuple(r for t in uids for r in t.ranges)))
    else:
        ranges = _uid_ranges(uids[0])
        for term in uids[1:]:
            ranges = _intersect(ranges, _uid_ranges(term))
    return [UidIn(tuple(ranges)), *(t for t in unique if not isinstance(t, UidIn))]


class _Compiler:
    def __init__(
        self, conn: sqlite3.Connection, mailbox_id: int, uidnext: int, *, correlated: bool = False
    ) -> None:
        self.conn = conn
        self.mailbox_id = mailbox_id
        self.uidnext = uidnext
        #: every text atom as a per-message check (`EXISTS ... rowid = m.content_id`), never the index's
        #: candidate list: for a walk over a few messages that stops early (`run_search` with `newest`)
        self.correlated = correlated
        self.params: list[object] = []
        self._fallback: dict[str, set[int]] | None = None

    def compile(self, c: Criteria) -> str:
        if isinstance(c, All):
            return "1"
        if isinstance(c, And):
            return self._join([self.compile(t) for t in _simplified(c.terms, union=False)], "AND", "1")
        if isinstance(c, Or):
            return self._join([self.compile(t) for t in _simplified(_or_terms(c), union=True)], "OR", "0")
        if isinstance(c, Not):
            return f"NOT {self.compile(c.criterion)}"
        if isinstance(c, UidIn):
            return self._uids(c)
        if isinstance(c, HasFlag):
            return self._flag(c)
        if isinstance(c, Size):
            self.params.append(c.n)
            return "(m.size > ?)" if c.op == "larger" else "(m.size < ?)"
        if isinstance(c, ModSeq):
            self.params.append(c.n)
            return "(m.modseq >= ?)"
        if isinstance(c, Arrived):
            self.params.append(c.when)
            return "(m.internaldate < ?)" if c.op == "before" else "(m.internaldate >= ?)"
        if isinstance(c, ContentIs):
            self.params.append(c.content_id)
            return "(m.content_id = ?)"
        if isinstance(c, ThreadIs):
            self.params.append(c.thread_id)
            return "(m.thread_id = ?)"
        if isinstance(c, Date):
            return self._date(c)
        if isinstance(c, Text):
            return self._text(c)
        if isinstance(c, Address):
            # table content_addresses (schema version 14): one row per address of a content's envelope lists
            fields = sorted({ENVELOPE_ADDRESS_FIELDS[f] for f in c.fields})
            self.params.append(normalize_address(c.address))
            self.params.extend(fields)
            marks = ",".join("?" * len(fields))
            if self.correlated:
                return (
                    "EXISTS (SELECT 1 FROM content_addresses a WHERE a.address = ? "  # noqa: S608
                    f"AND a.content_id = m.content_id AND a.field IN ({marks}))"
                )
            return (
                "(m.content_id IN (SELECT a.content_id FROM content_addresses a "  # noqa: S608
                f"WHERE a.address = ? AND a.field IN ({marks})))"
            )
        raise TypeError(f"not a search criterion: {c!r}")

    @staticmethod
    def _join(parts: list[str], op: str, empty: str) -> str:
        """Balanced, so that a long list stays within SQLite's expression depth limit."""
        if not parts:
            return empty
        if len(parts) == 1:
            return parts[0]
        half = len(parts) // 2
        return f"({_Compiler._join(parts[:half], op, empty)} {op} {_Compiler._join(parts[half:], op, empty)})"

    def _uids(self, c: UidIn) -> str:
        singles: list[int] = []
        terms: list[str] = []
        for low, high in c.ranges:
            low, high = max(low, 1), min(high, self.uidnext - 1)
            if low > high:
                continue
            if high - low < _LIST_RANGE_WIDTH:
                singles.extend(range(low, high + 1))
            else:
                terms.append(f"(m.uid BETWEEN {int(low)} AND {int(high)})")
        if singles:
            terms.append("(m.uid IN (SELECT value FROM json_each(?)))")
            self.params.append(json.dumps(singles))
        return self._join(terms, "OR", "0")

    def _flag(self, c: HasFlag) -> str:
        lowered = c.flag.lower()
        if lowered == "\\recent":
            raise ValueError("\\Recent is session state; search it with UidIn")
        bit = _SYSTEM_BITS.get(lowered)
        if bit is not None:
            return f"((m.flags & {bit}) {'!=' if c.present else '='} 0)"
        if c.flag.startswith("\\") or not c.flag or " " in c.flag:
            return "0" if c.present else "1"  # never stored
        self.params.append(f" {c.flag} ")
        return f"(instr(' ' || m.keywords || ' ', ?) {'>' if c.present else '='} 0)"

    def _date(self, c: Date) -> str:
        if c.field in ("internal", "saved"):
            column = "m.internaldate" if c.field == "internal" else "m.savedate"
            start = datetime.datetime.combine(c.date, datetime.time(), datetime.UTC).timestamp()
            if c.op == "before":
                self.params.append(start)
                return f"({column} < ?)"
            if c.op == "since":
                self.params.append(start)
                return f"({column} >= ?)"
            self.params.extend([start, start + 86400.0])
            return f"({column} >= ? AND {column} < ?)"
        op = {"before": "<", "on": "=", "since": ">="}[c.op]
        self.params.append(c.date.isoformat())
        # S608: an operator of the table above; the date is a parameter
        return f"coalesce((SELECT c.sent_date {op} ? FROM contents c WHERE c.id = m.content_id), 0)"  # noqa: S608

    def _text(self, c: Text) -> str:
        folded = fold(c.needle)
        if isinstance(c.field, tuple):
            name = c.field[1]
            name_pattern, _, name_indexable = like_pattern(name)
            like = "%" + name_pattern + ":%"
            if not c.needle:
                self.params.extend([like, name.lower(), folded])
                return self._fts("headers LIKE ? AND po_header_contains(headers, ?, ?)", name_indexable)
            candidates, full, indexable = _header_patterns(name, c.needle)
            # the index finds candidates by the needle (every message has a From: the field name would only
            # add trigrams that are in every document); the unindexed LIKE and the exact check follow
            self.params.extend([candidates, like + full[1:], name.lower(), folded])
            return self._fts(
                "headers LIKE ? AND +headers LIKE ? AND po_header_contains(headers, ?, ?)", indexable
            )
        if not c.needle:
            return "1"
        pattern, exact, _ = like_pattern(c.needle)
        like = "%" + pattern + "%"
        candidates, indexable = candidate_pattern(c.needle)
        terms: list[str] = []
        columns = {"headers": ("headers",), "body": ("body",), "text": ("headers", "body")}[c.field]
        for column in columns:
            cond = f"{column} LIKE ?"
            self.params.append(candidates)
            if candidates != like:
                cond += f" AND +{column} LIKE ?"
                self.params.append(like)
            if not exact:
                cond += f" AND po_contains({column}, ?)"
                self.params.append(folded)
            terms.append(self._fts(cond, indexable))
        if "body" in columns:
            ids = self._fallback_ids(folded)
            if ids:
                terms.append("(m.content_id IN (SELECT value FROM json_each(?)))")
                self.params.append(json.dumps(sorted(ids)))
        return self._join(terms, "OR", "0")

    def _fts(self, cond: str, indexable: bool) -> str:
        # S608: `cond` is made of constant fragments and column names, its values are parameters
        if self.correlated:
            # one message's text by its id from FTS5's own copy (table content_search_content, columns c0 =
            # headers, c1 = body: https://sqlite.org/fts5.html#the_content_option): a lookup by primary key,
            # where the virtual table would answer `rowid = ? AND col LIKE ?` from the trigram index
            shadow = re.sub(r"\bbody\b", "c1", re.sub(r"\bheaders\b", "c0", cond))
            return f"EXISTS (SELECT 1 FROM content_search_content WHERE id = m.content_id AND {shadow})"  # noqa: S608
        if indexable:
            return f"(m.content_id IN (SELECT rowid FROM content_search WHERE {cond}))"  # noqa: S608
        return f"EXISTS (SELECT 1 FROM content_search WHERE rowid = m.content_id AND {cond})"  # noqa: S608

    def _fallback_ids(self, folded: str) -> set[int]:
        """Contents of this mailbox whose search text was cut and whose full text contains `folded`."""
        if self._fallback is None:
            self._fallback = {}
        if folded not in self._fallback:
            ids = set()
            for (content_id,) in self.conn.execute(
                "SELECT DISTINCT m.content_id FROM contents c JOIN messages m ON m.content_id = c.id "
                "WHERE c.search_truncated = 1 AND m.mailbox_id = ?",
                (self.mailbox_id,),
            ).fetchall():
                if _full_text_matches(self.conn, int(content_id), {folded}):
                    ids.add(int(content_id))
            self._fallback[folded] = ids
        return self._fallback[folded]


def _header_patterns(name: str, needle: str) -> tuple[str, str, bool]:
    """(candidate pattern, full pattern, indexable) of a non-empty header-field needle."""
    if name.lower() in ADDRESS_FIELDS:
        return address_patterns(needle)
    pattern, _, _ = like_pattern(needle)
    candidates, indexable = candidate_pattern(needle)
    return candidates, "%" + pattern + "%", indexable


def _driven_by_index(c: Criteria) -> bool:
    """A header-field search (or a conjunction with one) whose needle the trigram index can look up, or
    an exact address (the address index)."""
    if isinstance(c, And):
        return any(_driven_by_index(term) for term in c.terms)
    if isinstance(c, Address):
        return True
    return (
        isinstance(c, Text)
        and isinstance(c.field, tuple)
        and bool(c.needle)
        and _header_patterns(c.field[1], c.needle)[2]
    )


def _has_address(c: Criteria) -> bool:
    """An `Address` criterion that every match must meet (a term of the top-level conjunction)."""
    if isinstance(c, And):
        return any(_has_address(term) for term in c.terms)
    return isinstance(c, Address)


#: Newest messages a search with `newest` checks one by one before it asks the index for every candidate.
PROBE_MESSAGES = 500


def _probe_newest(
    conn: sqlite3.Connection, mailbox_id: int, uidnext: int, criteria: Criteria, newest: int
) -> list[int] | None:
    """The `newest` highest matching UIDs if the newest PROBE_MESSAGES messages hold that many, else None.
    For a common word the index's candidate list is most of the mailbox (98,331 of 100,000 for a frequent
    word: a second), while walking the newest messages down finds the first page in a few hundred checks."""
    floor = conn.execute(
        "SELECT uid FROM messages WHERE mailbox_id = ? ORDER BY uid DESC LIMIT 1 OFFSET ?",
        (mailbox_id, PROBE_MESSAGES - 1),
    ).fetchone()
    compiler = _Compiler(conn, mailbox_id, uidnext, correlated=True)
    where = compiler.compile(criteria)
    # S608: `where` is the compiler's (module notes); the limits are int()s
    sql = (
        f"SELECT m.uid FROM messages m WHERE m.mailbox_id = ? AND m.uid >= ? AND {where} "  # noqa: S608
        f"ORDER BY m.uid DESC LIMIT {int(newest)}"
    )
    found = [
        int(r[0]) for r in conn.execute(sql, [mailbox_id, int(floor[0]) if floor else 0, *compiler.params])
    ]
    if len(found) < newest and floor is not None:
        return None  # not enough among the newest: the index's plan, over the whole mailbox
    return sorted(found)


def run_search(
    conn: sqlite3.Connection, mailbox_id: int, criteria: Criteria, *, newest: int | None = None
) -> list[int] | None:
    """UIDs of the mailbox's messages matching `criteria`, ascending (with `newest`: only that many of the
    highest); None when the mailbox does not exist. Runs inside the caller's read transaction; the
    connection needs `register_functions`."""
    row = conn.execute("SELECT uidnext FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()
    if row is None:
        return None
    if newest is not None and newest > 0 and not _has_address(criteria):
        # (an exact address is cheaper from its index than by walking the newest messages)
        probed = _probe_newest(conn, mailbox_id, int(row[0]), criteria, newest)
        if probed is not None:
            return probed
    compiler = _Compiler(conn, mailbox_id, int(row[0]))
    where = compiler.compile(criteria)
    # A header search that the trigram index answers selectively is driven by its candidates (looked up by
    # content id) instead of by a scan of every message of the mailbox: "+" keeps SQLite off the mailbox
    # index (SEARCH FROM of an address on 10,000 messages: 2.0 -> 0.9 ms).
    mailbox = "+m.mailbox_id" if _driven_by_index(criteria) else "m.mailbox_id"
    # S608: `where` is the compiler's (module notes: constant fragments; every value is a parameter)
    sql = f"SELECT m.uid FROM messages m WHERE {mailbox} = ? AND {where} ORDER BY m.uid"  # noqa: S608
    if newest is not None:
        # walks the (mailbox, uid) index from the top and stops after `newest` matches
        sql = sql + f" DESC LIMIT {max(0, int(newest))}"
        return sorted(int(r[0]) for r in conn.execute(sql, [mailbox_id, *compiler.params]))
    return [int(r[0]) for r in conn.execute(sql, [mailbox_id, *compiler.params])]
