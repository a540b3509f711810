"""IMAP SEARCH: parsed search keys -> store criteria, and the SEARCH / ESEARCH responses. Sans-IO.

Implements RFC 9051 6.4.4 and RFC 3501 6.4.4 (search keys), RFC 4731 (ESEARCH: RETURN MIN MAX ALL COUNT),
RFC 5182 (SEARCHRES: SAVE and `$`), RFC 5267 section 4.4 (PARTIAL; CONTEXT and UPDATE are `HINTS` here,
the updates are `postoffice.imap.commands_context`'s) and RFC 9051 7.3.4 / RFC 3501 7.2.5 (the SEARCH
response). Matching itself is the store's business (`MailStore.search`, rules in `postoffice.store.criteria`);
nothing here reads mail.

How the session uses it (a [UID] SEARCH command `cmd` in the selected mailbox)
1. `criteria = to_criteria(cmd.keys, uids_by_seq=..., saved=..., recent=..., charset=cmd.charset)`
   - `uids_by_seq`: the session's view, the UID of message sequence number i at index i - 1 (ascending);
   - `saved`: the UIDs saved by the last SEARCH ... RETURN (SAVE) (RFC 5182), None when there is none (then
     `$` is the empty set);
   - `recent`: the UIDs that are \\Recent in this session (claimed with `MailStore.claim_recent`), None or
     empty when none is;
   - raises `SearchBad` (answer "tag BAD <message>") or `SearchBadCharset` (answer
     "tag NO [BADCHARSET (UTF-8 US-ASCII)] ...").
2. `uids = await store.search(mailbox_id, criteria)`: matching UIDs, ascending (ValueError cannot happen for
   criteria from step 1).
3. `numbers = result_numbers(uids, uids_by_seq, uid=cmd.uid)`: restricted to the session's view (messages
   not yet announced with EXISTS are left out) and, for SEARCH without UID, turned into sequence numbers.
4. Reply: `cmd.return_options is None` -> `search_response(numbers)` ("* SEARCH 2 5"); else
   `esearch_response(cmd.tag, numbers, cmd.return_options, cmd.uid, partial=cmd.partial)` (may be b"" for
   RETURN (SAVE)). With SAVE among the options, store `saved_result(uids_in_view, cmd.return_options,
   partial=cmd.partial)` (UIDs, not sequence numbers: they survive expunges) as the new saved result, or the
   empty list when the search failed.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Collection, Iterator, Mapping, Sequence

from postoffice.imap.objectid import objectid_number
from postoffice.imap.parser import (
    SearchAnd,
    SearchDate,
    SearchFlag,
    SearchHeader,
    SearchKey,
    SearchKeyword,
    SearchModSeq,
    SearchNot,
    SearchObjectId,
    SearchOr,
    SearchSequence,
    SearchSize,
    SearchText,
    SearchUid,
    SearchWithin,
)
from postoffice.imap.sequence import SequenceSet, format_sequence_set
from postoffice.store.criteria import (
    All,
    And,
    Arrived,
    ContentIs,
    Criteria,
    Date,
    DateField,
    DateOp,
    HasFlag,
    ModSeq,
    Not,
    Or,
    Size,
    Text,
    ThreadIs,
    UidIn,
)

__all__ = [
    "SearchBad",
    "SearchBadCharset",
    "esearch_response",
    "result_numbers",
    "saved_result",
    "search_response",
    "to_criteria",
]

#: RFC 9051 6.4.4: UTF-8 must be supported; US-ASCII is its subset.
CHARSETS = ("UTF-8", "US-ASCII")

_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True),
    "DELETED": ("\\Deleted", True),
    "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True),
    "SEEN": ("\\Seen", True),
    "UNANSWERED": ("\\Answered", False),
    "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False),
    "UNSEEN": ("\\Seen", False),
}
_DATE_KEYS: dict[str, tuple[DateField, DateOp]] = {
    "BEFORE": ("internal", "before"),
    "ON": ("internal", "on"),
    "SINCE": ("internal", "since"),
    "SENTBEFORE": ("sent", "before"),
    "SENTON": ("sent", "on"),
    "SENTSINCE": ("sent", "since"),
    "SAVEDBEFORE": ("saved", "before"),  # RFC 8514
    "SAVEDON": ("saved", "on"),
    "SAVEDSINCE": ("saved", "since"),
}


class SearchBad(ValueError):
    """The command cannot be carried out as sent: answer "tag BAD <str(exc)>"."""


class SearchBadCharset(ValueError):
    """A CHARSET we do not support: answer "tag NO [BADCHARSET (UTF-8 US-ASCII)] <str(exc)>"."""


def to_criteria(
    keys: Sequence[SearchKey],
    *,
    uids_by_seq: Sequence[int],
    saved: Sequence[int] | None,
    recent: Collection[int] | None,
    charset: str | None,
    now: float | None = None,
) -> Criteria:
    """The store criteria for the search keys of one command (ANDed, RFC 9051 6.4.4); see the module
    docstring for the arguments; `now`: the moment OLDER and YOUNGER count back from (the clock's when
    None)."""
    if charset is not None and charset.upper() not in CHARSETS:
        raise SearchBadCharset(f"charset {charset} is not supported")
    translator = _Translator(uids_by_seq, saved, recent, time.time() if now is None else now)
    terms = [translator.key(k) for k in keys]
    return terms[0] if len(terms) == 1 else And(tuple(terms))


class _Translator:
    def __init__(
        self,
        uids_by_seq: Sequence[int],
        saved: Sequence[int] | None,
        recent: Collection[int] | None,
        now: float,
    ) -> None:
        self.now = now
        self.uids_by_seq = uids_by_seq
        self.saved = saved
        self._recent = recent
        self._recent_criteria: Criteria | None = None

    @property
    def recent(self) -> Criteria:
        """The \\Recent messages as criteria, made when a key needs them (a first session's set can hold
        every message of a large mailbox)."""
        if self._recent_criteria is None:
            recent = self._recent
            self._recent_criteria = UidIn.of(sorted(recent)) if recent else Not(All())
        return self._recent_criteria

    def key(self, k: SearchKey) -> Criteria:
        if isinstance(k, SearchFlag):
            return self.flag(k.name)
        if isinstance(k, SearchText):
            if k.field == "BODY":
                return Text("body", k.value)
            if k.field == "TEXT":
                return Text("text", k.value)
            return Text(("header", k.field.lower()), k.value)  # BCC CC FROM SUBJECT TO
        if isinstance(k, SearchHeader):
            return Text(("header", k.name), k.value)
        if isinstance(k, SearchKeyword):
            return HasFlag(k.keyword, k.present)
        if isinstance(k, SearchDate):
            field, op = _DATE_KEYS[k.field]
            return Date(field, op, k.date)
        if isinstance(k, SearchSize):
            return Size("larger" if k.field == "LARGER" else "smaller", k.size)
        if isinstance(k, SearchSequence):
            return self.sequence(k.sequence)
        if isinstance(k, SearchUid):
            return self.uid(k.sequence)
        if isinstance(k, SearchNot):
            return Not(self.key(k.key))
        if isinstance(k, SearchOr):
            return Or(self.key(k.left), self.key(k.right))
        if isinstance(k, SearchAnd):
            return And(tuple(self.key(sub) for sub in k.keys))
        if isinstance(k, SearchWithin):
            # RFC 5032: from the moment of the search; the session passes it in (`now`)
            cutoff = self.now - k.seconds
            return Arrived("before" if k.field == "OLDER" else "since", cutoff)
        if isinstance(k, SearchObjectId):
            # RFC 8474 6: an id this server never gave matches nothing
            if k.field == "EMAILID":
                number = objectid_number(k.objectid, "E")
                return Not(All()) if number is None else ContentIs(number)
            number = objectid_number(k.objectid, "T")
            return Not(All()) if number is None else ThreadIs(number)
        if isinstance(k, SearchModSeq):
            # RFC 7162 3.1.5: one MODSEQ per message here, so the entry name and type change nothing
            return ModSeq(k.modseq)
        raise SearchBad(f"unsupported search key {k!r}")

    def flag(self, name: str) -> Criteria:
        if name in ("ALL", "SAVEDATESUPPORTED"):  # RFC 8514 4.2: every mailbox here keeps save dates
            return All()
        if name in _FLAG_KEYS:
            flag, present = _FLAG_KEYS[name]
            return HasFlag(flag, present)
        if name == "RECENT":
            return self.recent
        if name == "NEW":  # RFC 3501 6.4.4: (RECENT UNSEEN)
            return And((self.recent, HasFlag("\\Seen", False)))
        if name == "OLD":  # NOT RECENT
            return Not(self.recent)
        raise SearchBad(f"unknown search key {name}")

    def saved_uids(self) -> Criteria:
        return UidIn.of(self.saved or ())  # RFC 5182 2.1: no saved result is the empty set

    def sequence(self, seq: SequenceSet) -> Criteria:
        if seq.saved:
            return self.saved_uids()
        count = len(self.uids_by_seq)
        # In SEARCH a sequence set is a criterion, not a reference to messages (RFC 9051 6.4.4): numbers above
        # the message count match nothing ("1000" among 5 messages finds nothing, "3:1000" finds 3 to 5), and
        # "1:*" in an empty mailbox finds nothing. (FETCH, STORE and COPY answer BAD for them, RFC 9051 9.)
        # Each range of sequence numbers is the range of UIDs from its first message to its last: the store
        # has no other message between them (UIDs only grow, and later messages have larger ones), and the
        # result is restricted to the view anyway (`result_numbers`). O(ranges), not O(messages): a line of
        # 2,000 "1:*" keys on 100,000 messages listed 200 million UIDs on the event loop (25 s).
        by_seq = self.uids_by_seq
        ranges = [(max(low, 1), min(high, count)) for low, high in seq.resolve(count)]
        return UidIn(tuple((by_seq[low - 1], by_seq[high - 1]) for low, high in ranges if low <= high))

    def uid(self, seq: SequenceSet) -> Criteria:
        if seq.saved:
            return self.saved_uids()
        largest = self.uids_by_seq[-1] if self.uids_by_seq else 0  # "*" is the largest UID in use
        return UidIn(tuple(seq.resolve(largest)))


def result_numbers(uids: Sequence[int], uids_by_seq: Sequence[int], *, uid: bool) -> list[int]:
    """The matching UIDs (ascending) restricted to the session's view: as UIDs for UID SEARCH, else as
    message sequence numbers. `uids_by_seq` must be ascending (it is: UIDs grow with sequence numbers)."""
    out: list[int] = []
    for u in uids:
        i = bisect.bisect_left(uids_by_seq, u)
        if i < len(uids_by_seq) and uids_by_seq[i] == u:
            out.append(u if uid else i + 1)
    return out


def search_response(numbers: Sequence[int], *, modseq: int | None = None) -> bytes:
    """`* SEARCH 2 3 5` (RFC 9051 7.3.4); `* SEARCH` when nothing matched; with `modseq` (a search with a
    MODSEQ key that matched, RFC 7162 3.1.5) `* SEARCH 2 3 5 (MODSEQ 917)`."""
    tail = b" (MODSEQ %d)\r\n" % modseq if modseq is not None and numbers else b"\r\n"
    return b"".join([b"* SEARCH", *(b" %d" % n for n in numbers), tail])


def all_keys(keys: Sequence[SearchKey]) -> Iterator[SearchKey]:
    """Every search key of `keys`, at any depth (inside NOT, OR and parenthesised lists)."""
    for key in keys:
        yield key
        if isinstance(key, SearchNot):
            yield from all_keys([key.key])
        elif isinstance(key, SearchOr):
            yield from all_keys([key.left, key.right])
        elif isinstance(key, SearchAnd):
            yield from all_keys(key.keys)


def uses_modseq(keys: Sequence[SearchKey]) -> bool:
    """Whether a MODSEQ key is among `keys`, at any depth (RFC 7162 3.1.5)."""
    return any(isinstance(k, SearchModSeq) for k in all_keys(keys))


def uses_sequence_numbers(keys: Sequence[SearchKey]) -> bool:
    """Whether a sequence set of message numbers is among `keys`, at any depth (RFC 9586 3: refused once
    UIDONLY is enabled). `$` (RFC 5182) is not one: it names the saved messages."""
    return any(isinstance(k, SearchSequence) and not k.sequence.saved for k in all_keys(keys))


#: RETURN options that ask for no result data: CONTEXT is a hint (RFC 5267 section 4.2) and UPDATE asks for
#: later notifications (4.3); "there is no interaction" between them and the others
HINTS = frozenset({"CONTEXT", "UPDATE"})


def effective_options(return_options: Sequence[str]) -> set[str]:
    """The RETURN options that shape the answer (upper-case, without HINTS); none left is ALL, as RETURN ()
    is (RFC 4731 3.1): RETURN (UPDATE) answers with ALL too, the result the updates then change."""
    options = {o.upper() for o in return_options} - HINTS
    if not options:
        return {"ALL"}  # RFC 4731 3.1: RETURN () is RETURN (ALL)
    return options


def partial_results(numbers: Sequence[int], partial: tuple[int, int]) -> Sequence[int]:
    """RFC 5267 section 4.4: the results at the 1-based positions of the range (either order) within
    `numbers` (in the requested order); positions beyond the results give fewer, or none."""
    low, high = sorted(partial)
    return numbers[low - 1 : high]


def esearch_response(
    tag: str,
    uids_or_seqs: Sequence[int],
    return_options: Sequence[str],
    uid: bool,
    *,
    modseqs: Mapping[int, int] | None = None,
    sort_order: bool = False,
    partial: tuple[int, int] | None = None,
) -> bytes:
    """The ESEARCH response (RFC 4731 3.1 and 3.2) for SEARCH RETURN (...), with the `(TAG "x")`
    correlator and `UID` for UID SEARCH. `uids_or_seqs`: what `result_numbers` gave (ascending), or with
    `sort_order` the numbers in the order a SORT gave them (ESORT, RFC 5267 section 3: MIN and MAX are then
    the first and the last, and ALL keeps the order). With PARTIAL among the options, `partial` is its range
    (RFC 5267 section 4.4): `PARTIAL (range results)`, the range as sent, NIL when no result is in it.

    MIN, MAX and ALL are left out when nothing matched; COUNT and PARTIAL are always sent when asked for.
    RETURN (SAVE) alone gives no ESEARCH response (RFC 5182 2.1): b""."""
    options = effective_options(return_options)
    if options == {"SAVE"}:
        return b""
    quoted = tag.replace("\\", "\\\\").replace('"', '\\"')
    out = [f'* ESEARCH (TAG "{quoted}")']
    if uid:
        out.append("UID")
    numbers = list(uids_or_seqs) if sort_order else sorted(set(uids_or_seqs))
    if numbers:
        if "MIN" in options:
            out.append(f"MIN {numbers[0]}")
        if "MAX" in options:
            out.append(f"MAX {numbers[-1]}")
        if "ALL" in options:
            out.append(f"ALL {in_sort_order(numbers) if sort_order else format_sequence_set(numbers)}")
    if "COUNT" in options:
        out.append(f"COUNT {len(numbers)}")
    picked: Sequence[int] = ()
    if "PARTIAL" in options and partial is not None:
        picked = partial_results(numbers, partial)
        listed = (in_sort_order(picked) if sort_order else format_sequence_set(picked)) if picked else "NIL"
        out.append(f"PARTIAL ({partial[0]}:{partial[1]} {listed})")
    if modseqs is not None and numbers:
        # RFC 7162 3.1.10 (RFC 4731 3.2): of the messages MIN, MAX and PARTIAL name when only they are asked
        # for, else of every match
        if options & {"ALL", "COUNT"} or not options & {"MIN", "MAX", "PARTIAL"}:
            named = numbers
        else:
            named = [n for n, o in ((numbers[0], "MIN"), (numbers[-1], "MAX")) if o in options]
            named += picked
        if named:
            out.append(f"MODSEQ {max(modseqs.get(n, 0) for n in named)}")
    return (" ".join(out) + "\r\n").encode("ascii")


def in_sort_order(numbers: Sequence[int]) -> str:
    """ESORT's ALL (RFC 5267 section 3): the numbers in the order given, only ascending runs as ranges (a
    range says nothing about order)."""
    out: list[str] = []
    i, n = 0, len(numbers)
    while i < n:
        j = i
        while j + 1 < n and numbers[j + 1] == numbers[j] + 1:
            j += 1
        out.append(str(numbers[i]) if j == i else f"{numbers[i]}:{numbers[j]}")
        i = j + 1
    return ",".join(out)


def saved_result(
    uids: Sequence[int],
    return_options: Sequence[str],
    *,
    partial: tuple[int, int] | None = None,
    in_order: bool = False,
) -> list[int]:
    """What RETURN (... SAVE ...) saves (RFC 5182 2.4, RFC 9394 3.2 for PARTIAL): every match, or only the
    messages MIN, MAX and PARTIAL return when SAVE comes with some of them but without ALL or COUNT. Pass
    UIDs: ascending, or with `in_order` in the requested order (a SORT's: MIN is its first). Ascending."""
    options = effective_options(return_options)
    ordered = list(uids) if in_order else sorted(set(uids))
    if not ordered or options & {"ALL", "COUNT"} or not options & {"MIN", "MAX", "PARTIAL"}:
        return sorted(set(ordered))
    picked = set()
    if "MIN" in options:
        picked.add(ordered[0])
    if "MAX" in options:
        picked.add(ordered[-1])
    if "PARTIAL" in options and partial is not None:
        picked.update(partial_results(ordered, partial))
    return sorted(picked)
