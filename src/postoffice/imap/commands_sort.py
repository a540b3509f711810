"""IMAP SORT (RFC 5256 section 3, with RFC 5957's DISPLAYFROM and DISPLAYTO and RFC 5267 section 3's ESORT)
and THREAD (RFC 5256: ORDEREDSUBJECT and REFERENCES).

Both search first, exactly as SEARCH does (the same keys, evaluated in the store's index), then order what
matched by what the store kept of each message at delivery (`MailStore.sort_fields`; `sort_columns` reads
only the fields a command compares):
- The comparison forms are made once per stored content and field, and kept in a per-store cache of at most
  KEY_CACHE_SIZE contents per field (a content never changes, and content ids are never reused,
  docs/decisions/0062):
  the RFC 5256 base subject and whether it came from a reply or forward, and every string key in the
  i;unicode-casemap form of RFC 5051 (each character titlecased, then decomposed: `unicode_casemap`), compared
  code point by code point, which orders as UTF-8 octets do. RFC 5256 asks SORT and THREAD to collate as
  I18NLEVEL=1 does, whose comparator that is (RFC 5255); for ASCII it is i;ascii-casemap. I18NLEVEL=1 itself
  is not advertised: SEARCH does not use that comparator (docs/decisions/0064).
- SORT: a stable sort per key, from the last to the first (REVERSE per key), over the mailbox order, so that
  messages equal under every key stay in mailbox order (RFC 5256 section 3). DATE is the sent date, or the
  internal date where the Date field is missing or invalid (section 2.2); a missing address or subject is the
  empty string, which sorts first.
- SORT RETURN (...) answers with ESEARCH (RFC 5267 section 3): MIN and MAX are the first and last in sort
  order, ALL lists the matches in sort order (ascending runs written as ranges), COUNT; SAVE keeps the
  matches for `$` (RFC 5182) as SEARCH's SAVE does (with MIN or MAX: the first or last in sort order). With a
  MODSEQ key the answer carries the highest MODSEQ of the messages it names (RFC 7162 section 3.1.5).
  CONTEXT=SORT (RFC 5267 section 4): PARTIAL m:n gives the matches at those positions of the sort order;
  UPDATE keeps the result up to date (`commands_context`, placing new matches with `SortOrder`).
- THREAD: `postoffice.imap.sort_thread`.
- Sorting and threading depend only on which messages take part (their contents, sizes and internal dates
  never change): the sorted UIDs of the last ANSWER_CACHE_SIZE (mailbox, UIDVALIDITY, criteria, matches),
  and the formatted THREAD answers likewise, are kept per store, so that a repeated SORT or THREAD of an
  unchanged mailbox (a webmail's every page, a client's every reconnect) costs the search and a lookup. The
  last order of each (mailbox, criteria) is kept too: when the mailbox has only gained messages since (new
  mail), they are placed into it by bisection rather than sorting the whole mailbox again (`_order`). The
  last REFERENCES threads of a mailbox are kept likewise and new mail is added to them when the algorithm
  would place it the same way (`_references_answer`, `sort_thread.ReferencesState`; decision 0078).
  SEARCH ALL, the usual search of both, is the session's own view, with no store read.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import string
import unicodedata
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple

from postoffice.imap import commands_context
from postoffice.imap import parser as p
from postoffice.imap import search as search_mod
from postoffice.imap.access import MailAccess
from postoffice.imap.mailbox_view import Columns, MailboxView
from postoffice.imap.sort_thread import (
    ReferencesState,
    ThreadInput,
    base_subject,
    collector_paused,
    format_threads,
    ordered_subject,
    references_state,
)
from postoffice.imap.state import Done, SessionState, bad, no
from postoffice.store.criteria import All, Criteria

#: Contents whose comparison forms a store's cache keeps (about 300 octets each).
KEY_CACHE_SIZE = 250_000
#: SORT orders and THREAD answers a store's cache keeps.
ANSWER_CACHE_SIZE = 8

_ASCII = frozenset(string.printable)


@functools.lru_cache(maxsize=4096)
def _casemap_char(ch: str) -> str:
    title = ch.title()
    return unicodedata.normalize("NFKD", title if len(title) == 1 else ch)


def unicode_casemap(text: str) -> str:
    """RFC 5051's titlecased canonicalised form: each character's (simple) titlecase mapping, fully
    decomposed (NFKD); plain ASCII is only upper-cased."""
    if _ASCII.issuperset(text):
        return text.upper()
    return "".join(map(_casemap_char, text))


#: The field of `SortFields` each SORT key compares (ARRIVAL and SIZE: the session's view has them).
_FIELD_OF = {
    "DATE": "sent",
    "SUBJECT": "subject",
    "FROM": "from_mailbox",
    "TO": "to_mailbox",
    "CC": "cc_mailbox",
    "DISPLAYFROM": "from_display",
    "DISPLAYTO": "to_display",
}
#: The fields THREAD compares.
_THREAD_FIELDS = ("sent", "subject", "message_id", "references")


def _subject_form(subject: str) -> tuple[str, bool]:
    """A subject's comparison form: its base subject, casemapped, and whether it is a reply or forward."""
    base, reply = base_subject(subject)
    return unicode_casemap(base), reply


def _as_kept(value: Any) -> Any:
    return value


#: How each field's comparison form is made of what the store kept (see the module docstring).
_FORMS: dict[str, Callable[[Any], Any]] = {
    "sent": _as_kept,
    "subject": _subject_form,
    "from_mailbox": unicode_casemap,
    "to_mailbox": unicode_casemap,
    "cc_mailbox": unicode_casemap,
    "from_display": unicode_casemap,
    "to_display": unicode_casemap,
    "message_id": _as_kept,
    "references": _as_kept,
}
#: The form of a message that is gone from the store meanwhile (an empty string for the others).
_GONE: dict[str, Any] = {"sent": None, "subject": ("", False), "message_id": None, "references": ()}


class _StoreCache:
    """What SORT and THREAD keep of one store (see the module docstring)."""

    def __init__(self) -> None:
        #: the comparison forms of each field (`_FORMS`) by content id, oldest first
        self.forms: dict[str, dict[int, Any]] = {}
        self.answers: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        #: the last order of each (mailbox, UIDVALIDITY, criteria), oldest first (`_order`)
        self.sorted: OrderedDict[tuple[Any, ...], _Sorted] = OrderedDict()
        #: the last REFERENCES of each (mailbox, UIDVALIDITY, by UID), oldest first (`_references_answer`)
        self.threads: OrderedDict[tuple[Any, ...], _Threaded] = OrderedDict()

    def answer(self, key: tuple[Any, ...]) -> Any:
        found = self.answers.get(key)
        if found is not None:
            self.answers.move_to_end(key)
        return found

    def keep(self, key: tuple[Any, ...], answer: Any) -> None:
        _put(self.answers, key, answer, ANSWER_CACHE_SIZE)


def _put(table: OrderedDict[tuple[Any, ...], Any], key: tuple[Any, ...], value: Any, size: int) -> None:
    """`table[key] = value` as the newest entry, forgetting the oldest beyond `size`."""
    table.pop(key, None)
    table[key] = value
    while len(table) > size:
        table.popitem(last=False)


_caches: weakref.WeakKeyDictionary[Any, _StoreCache] = weakref.WeakKeyDictionary()


def _cache_of(store: MailAccess) -> _StoreCache:
    try:
        return _caches.setdefault(store, _StoreCache())
    except TypeError:  # a store that cannot be weakly referenced: nothing kept
        return _StoreCache()


_ABSENT = object()  # not in the cache


async def _forms(
    store: MailAccess, content_ids: Sequence[int], fields: Sequence[str]
) -> dict[str, list[Any]]:
    """The comparison forms of `fields` of `content_ids`: for each field a list in the order of `content_ids`,
    from the cache, and what it lacks in one store read of only the fields it lacks (`MailStore.sort_columns`:
    a first SORT by DATE of a large mailbox reads the sent dates alone, makes no string forms). What the
    cache has is taken before the read: another command may trim the cache while this one waits for it."""
    cache = _cache_of(store).forms
    forms: dict[str, list[Any]] = {}
    reading: list[str] = []
    missing: dict[int, None] = {}
    for field in fields:
        get = cache.setdefault(field, {}).get
        values = forms[field] = [get(cid, _ABSENT) for cid in content_ids]
        if _ABSENT in values:
            reading.append(field)
            missing.update(
                (cid, None) for cid, value in zip(content_ids, values, strict=True) if value is _ABSENT
            )
    found = await store.sort_columns(list(missing), reading) if reading else {}
    with collector_paused():  # one form per message and field, made once: later sorts only look them up
        for field in reading:
            kept, form = found.get(field, {}), _FORMS[field]
            # each distinct text made once: a thread's messages share a subject, a sender's a name
            made = (
                kept
                if form is _as_kept
                else dict(zip(kept, map(functools.cache(form), kept.values()), strict=True))
            )
            table = cache.setdefault(field, {})
            table.update(made)
            get, gone = made.get, _GONE.get(field, "")
            forms[field] = [
                get(cid, gone) if value is _ABSENT else value
                for cid, value in zip(content_ids, forms[field], strict=True)
            ]
            _trim(table)
    return forms


def _trim(cache: dict[int, Any]) -> None:
    """Forget the oldest keys beyond KEY_CACHE_SIZE."""
    if len(cache) > KEY_CACHE_SIZE:
        for cid in list(itertools.islice(cache, len(cache) - KEY_CACHE_SIZE)):
            del cache[cid]


def _criteria(
    session: SessionState, view: MailboxView, command: p.Sort | p.Thread, saved: list[int]
) -> Criteria:
    """The store criteria of the search keys of `command`, `$` being `saved` (RFC 5182: the result saved
    before the command)."""
    try:
        return search_mod.to_criteria(
            command.keys,
            uids_by_seq=view.uids,
            saved=saved,
            recent=view.recent if not session.rev2 else None,
            charset=command.charset,
        )
    except search_mod.SearchBadCharset as exc:
        raise no(str(exc), "BADCHARSET (UTF-8 US-ASCII)") from None
    except search_mod.SearchBad as exc:
        raise bad(str(exc)) from None


async def _forms_for(
    store: MailAccess, content_ids: Sequence[int], criteria: Sequence[tuple[str, bool]]
) -> dict[str, list[Any]]:
    """What `sorted_order` needs of `content_ids` for `criteria` (`_forms`): nothing for ARRIVAL and SIZE."""
    fields = list(dict.fromkeys(_FIELD_OF[key] for key, _reverse in criteria if key in _FIELD_OF))
    return await _forms(store, content_ids, fields) if fields else {}


async def _matches(
    session: SessionState, view: MailboxView, command: p.Sort | p.Thread, criteria: Criteria | None = None
) -> list[int]:
    """The UIDs (ascending, in the view) the search keys of `command` (or their `criteria`) match, as SEARCH
    finds them."""
    if criteria is None:
        criteria = _criteria(session, view, command, session.saved_uids())
    gone = view.gone
    if isinstance(criteria, All):  # the common case: every message the session shows
        return [u for u in view.uids if u not in gone] if gone else list(view.uids)
    shown = set(view.uids)  # the store's answer is ascending: filtering keeps it so
    return [u for u in await session.store.search(view.mailbox_id, criteria) if u in shown and u not in gone]


# ------------------------------------------------------------------------------------------------ SORT


def _column(key: str, columns: Columns, forms: dict[str, list[Any]]) -> Sequence[Any]:
    """The sort key `key` of every match, in the order of `columns` (`forms`: `_forms_for`'s)."""
    if key == "ARRIVAL":
        return columns.internaldates
    if key == "SIZE":
        return columns.sizes
    values = forms[_FIELD_OF[key]]
    if key == "DATE":
        return [s if s is not None else d for s, d in zip(values, columns.internaldates, strict=True)]
    if key == "SUBJECT":
        return [subject for subject, _reply in values]
    return values


def sorted_order(
    criteria: Sequence[tuple[str, bool]], columns: Columns, forms: dict[str, list[Any]]
) -> list[int]:
    """Indexes into `columns` (mailbox order) in the order `criteria` give (RFC 5256 section 3)."""
    order = list(range(len(columns.content_ids)))
    for key, reverse in reversed(criteria):
        column = _column(key, columns, forms)
        order.sort(key=column.__getitem__, reverse=reverse)  # stable, also when reversed
    return order


#: Sequence numbers up to this one are written from texts kept (`_number_texts`): a few MB at most.
NUMBER_TEXTS = 1_000_000
_texts: list[str] = []  # str(i + 1) at index i


def _number_texts(count: int) -> list[str]:
    """The texts of the numbers 1 to at least `count`, the one of n at index n - 1."""
    if len(_texts) < count:
        _texts.extend(map(str, range(len(_texts) + 1, count + 1)))
    return _texts


#: At most this many new messages are placed one by one into the last order (`_order`); more: a whole sort.
MERGE_LIMIT = 2000


class _Sorted(NamedTuple):
    """The last whole order of some criteria over a mailbox's matches, kept to place new messages into."""

    matched: list[int]
    order: list[int]  # indexes into `matched`, in sort order
    #: the sort values in ascending order (the order's, or reversed when REVERSE); None when the keys'
    #: directions differ (then no message is placed into this order: `_order` sorts again)
    ascending: list[Any] | None


async def _order(
    store: MailAccess, view: MailboxView, criteria: Sequence[tuple[str, bool]], matched: list[int]
) -> list[int]:
    """`sorted_order` of `matched`. When the last order of these criteria over this mailbox was of a prefix
    of `matched` (the mailbox only gained messages since: new mail arriving), and every key has the same
    direction, the new messages are placed into it by bisection: a few dozen comparisons each instead of a
    sort of the whole mailbox. A new message has the highest sequence number, so among equal values it goes
    last either way (RFC 5256 section 3: ties in mailbox order)."""
    cache = _cache_of(store)
    criteria = tuple(criteria)
    last_key = (view.mailbox_id, view.info.uidvalidity, criteria)
    last: _Sorted | None = cache.sorted.get(last_key)
    reverse = {reverse for _key, reverse in criteria}
    if last is not None:
        cache.sorted.move_to_end(last_key)
        if last.matched == matched:
            return last.order
    if (
        last is not None
        and last.ascending is not None
        and 0 < len(matched) - len(last.matched) <= MERGE_LIMIT
        and matched[: len(last.matched)] == last.matched
    ):
        new = matched[len(last.matched) :]
        columns = view.columns(new)
        values = _values(criteria, columns, await _forms_for(store, columns.content_ids, criteria))
        order, ascending = last.order[:], last.ascending[:]
        descending = reverse == {True}
        for index, value in enumerate(values, len(last.matched)):
            if descending:  # `ascending` is the order reversed: equal values by falling index
                at = bisect.bisect_left(ascending, value)
                ascending.insert(at, value)
                order.insert(len(order) - at, index)
            else:
                at = bisect.bisect_right(ascending, value)
                ascending.insert(at, value)
                order.insert(at, index)
    else:
        columns = view.columns(matched)
        forms = await _forms_for(store, columns.content_ids, criteria)
        order = sorted_order(criteria, columns, forms)
        ascending = None
        if len(reverse) == 1:
            in_order = _values(criteria, columns, forms)
            ascending = list(map(in_order.__getitem__, reversed(order) if reverse == {True} else order))
    _put(cache.sorted, last_key, _Sorted(matched, order, ascending), ANSWER_CACHE_SIZE)
    return order


def _values(criteria: Sequence[tuple[str, bool]], columns: Columns, forms: dict[str, list[Any]]) -> list[Any]:
    """The sort value of each message of `columns`: the key's value for one criterion, else a tuple."""
    if len(criteria) == 1:
        return list(_column(criteria[0][0], columns, forms))
    return list(zip(*(_column(key, columns, forms) for key, _reverse in criteria), strict=True))


class SortOrder:
    """The order of a SORT's criteria over the messages of a view, for CONTEXT=SORT (`commands_context`
    places new matches in a result kept in it): the same values `sorted_order` compares."""

    def __init__(self, store: MailAccess, criteria: Sequence[tuple[str, bool]]) -> None:
        self.store = store
        self.criteria = tuple(criteria)
        self.reverse = tuple(reverse for _key, reverse in self.criteria)

    async def values(self, view: MailboxView, uids: list[int]) -> list[tuple[Any, ...]]:
        columns = view.columns(uids)
        forms = await _forms_for(self.store, columns.content_ids, self.criteria)
        return list(zip(*(_column(key, columns, forms) for key, _reverse in self.criteria), strict=True))

    async def sorted(self, view: MailboxView, uids: list[int]) -> list[int]:
        columns = view.columns(uids)
        forms = await _forms_for(self.store, columns.content_ids, self.criteria)
        return list(map(uids.__getitem__, sorted_order(self.criteria, columns, forms)))


async def sort(session: SessionState, command: p.Sort) -> Done:
    """SORT / UID SORT (RFC 5256 section 3; see the module docstring)."""
    view = session.selected_view
    commands_context.check_tag(session, command)  # RFC 5267 4.3: before anything is done
    # RFC 4731 3.1 (RFC 5267 section 3): RETURN () is RETURN (ALL); CONTEXT and UPDATE are no result data
    return_options = command.return_options
    options = search_mod.effective_options(return_options) if return_options is not None else None
    save = options is not None and "SAVE" in options
    saved = session.saved_uids()  # `$` in this command is the result saved before it (RFC 5182 2.1)
    previous = session.saved_result
    if save:
        session.saved_result = []  # RFC 5182 2.1: a SORT ... SAVE answered NO leaves the empty result
    by_modseq = search_mod.uses_modseq(command.keys)
    if by_modseq:
        session.enable_condstore()  # RFC 7162 3.1
    try:
        criteria = _criteria(session, view, command, saved)
        matched = await _matches(session, view, command, criteria)
    except Exception:
        session.saved_result = previous
        raise
    cache = _cache_of(session.store)
    matched_key = tuple(matched)
    order_key = ("SORT", view.mailbox_id, view.info.uidvalidity, command.criteria, matched_key)
    # the plain answer's octets, also kept: sequence numbers depend on the whole view
    everything = len(matched) == view.exists  # then sequence number = index in `matched` + 1
    numbering = None if command.uid else matched_key if everything else tuple(view.uids)
    answer_key = (order_key, numbering)
    highest = max((view.modseq_of(u) for u in matched), default=0) if by_modseq else None
    payload: bytes | None = cache.answer(answer_key) if options is None else None
    if payload is None:
        order = await _order(session.store, view, command.criteria, matched)  # indexes into `matched`
        if options is None:
            payload = _plain_answer(view, matched, order, command.uid, everything)
            cache.keep(answer_key, payload)
        else:
            numbers = _numbers(view, matched, order, command.uid, everything)
            modseqs = (  # RFC 7162 3.1.10: of what the answer names
                {n: view.modseq_of(matched[i]) for n, i in zip(numbers, order, strict=True)}
                if by_modseq
                else None
            )
            session.send(
                search_mod.esearch_response(
                    command.tag,
                    numbers,
                    tuple(options),
                    command.uid,
                    modseqs=modseqs,
                    sort_order=True,
                    partial=command.partial,
                )
            )
            if save or commands_context.wants_updates(command):
                # the UIDs in the sort order
                in_order = numbers if command.uid else list(map(matched.__getitem__, order))
                if save:  # RFC 5182 2.4, RFC 9394 3.2: MIN and MAX are the first and the last in sort order
                    session.saved_result = search_mod.saved_result(
                        in_order, tuple(options), partial=command.partial, in_order=True
                    )
                # RFC 5267 4.3: every match, whatever the other options (answer sent: NOUPDATE comes after)
                ordering = SortOrder(session.store, command.criteria)
                commands_context.start(session, command, criteria, saved, in_order, ordering)
    if payload is not None:
        tail = b" (MODSEQ %d)\r\n" % highest if highest is not None and payload else b"\r\n"
        session.send(b"* SORT" + (b" " if payload else b"") + payload + tail)
    return Done(f"{command.name} completed")


def _numbers(
    view: MailboxView, matched: list[int], order: list[int], by_uid: bool, everything: bool
) -> list[int]:
    """What a SORT answer names, in `order` (indexes into `matched`): UIDs, or sequence numbers."""
    if by_uid:
        return list(map(matched.__getitem__, order))
    if everything:  # sequence number = index in `matched` + 1
        return list(map((1).__add__, order))
    seqs = [seq for seq, _uid, _flags in view.positions(matched)]
    return list(map(seqs.__getitem__, order))


def _plain_answer(
    view: MailboxView, matched: list[int], order: list[int], by_uid: bool, everything: bool
) -> bytes:
    """The numbers of a `* SORT` response. The usual one, every message by sequence number, is written from
    texts made once per number."""
    if everything and not by_uid and len(order) <= NUMBER_TEXTS:
        return " ".join(map(_number_texts(len(order)).__getitem__, order)).encode()
    return " ".join(map(str, _numbers(view, matched, order, by_uid, everything))).encode()


# ---------------------------------------------------------------------------------------------- THREAD


async def thread(session: SessionState, command: p.Thread) -> Done:
    """THREAD / UID THREAD (RFC 5256 section 3; see the module docstring)."""
    view = session.selected_view
    matched = await _matches(session, view, command)
    numbering = tuple(view.uids) if not command.uid else ()  # sequence numbers depend on the whole view
    key = ("THREAD", view.mailbox_id, view.info.uidvalidity, command.algorithm, numbering, tuple(matched))
    cache = _cache_of(session.store)
    payload: bytes | None = cache.answer(key)
    if payload is None and command.algorithm == "REFERENCES":
        payload = await _references_answer(session.store, view, matched, command.uid, numbering)
        cache.keep(key, payload)
    elif payload is None:
        # Hundreds of thousands of new objects (inputs, the tree), all kept until the answer is written: no
        # collection passes over them meanwhile, and they are freed (no cycles) before collections resume.
        messages = await _thread_inputs(session.store, view, matched, command.uid)
        with collector_paused():
            payload = format_threads(ordered_subject(messages))
            del messages
        cache.keep(key, payload)
    session.send(b"* THREAD" + payload + b"\r\n")
    return Done(f"{command.name} completed")


async def _thread_inputs(
    store: MailAccess, view: MailboxView, uids: list[int], by_uid: bool
) -> list[ThreadInput]:
    """What the threading algorithms need of `uids` (ascending, in the view), numbered by UID or by sequence
    number."""
    columns = view.columns(uids)
    forms = await _forms(store, columns.content_ids, _THREAD_FIELDS)
    numbers = uids if by_uid else columns.seqs
    with collector_paused():
        return [
            ThreadInput(n, sent if sent is not None else d, subject, reply, message_id, references)
            for n, d, sent, (subject, reply), message_id, references in zip(
                numbers,
                columns.internaldates,
                forms["sent"],
                forms["subject"],
                forms["message_id"],
                forms["references"],
                strict=True,
            )
        ]


class _Threaded(NamedTuple):
    """THREAD=REFERENCES over some matches, kept to add new mail to (`_references_answer`)."""

    matched: list[int]
    numbering: tuple[int, ...]  # the view's UIDs then, for answers by sequence number; () by UID
    state: ReferencesState


#: REFERENCES states a store keeps (each holds its messages' inputs and tree: tens of MB for 100,000).
THREAD_STATES = 2


async def _references_answer(
    store: MailAccess, view: MailboxView, matched: list[int], by_uid: bool, numbering: tuple[int, ...]
) -> bytes:
    """THREAD=REFERENCES of `matched`. When the last one over this mailbox (answered by UID, or by sequence
    numbers that are still the same) was of a prefix of `matched`, the new messages are added to it
    (`ReferencesState.add`: new mail, in the common cases); otherwise, or when it declines, the algorithm
    runs over every message."""
    cache = _cache_of(store)
    slot = (view.mailbox_id, view.info.uidvalidity, by_uid)
    kept = cache.threads.get(slot)
    if (
        kept is not None
        and 0 < len(matched) - len(kept.matched) <= MERGE_LIMIT
        and matched[: len(kept.matched)] == kept.matched
        and numbering[: len(kept.numbering)] == kept.numbering
    ):
        messages = await _thread_inputs(store, view, matched[len(kept.matched) :], by_uid)
        # (another command may have used or replaced the state during the read: then it is not added to)
        if cache.threads.get(slot) is kept:
            with collector_paused():
                added = kept.state.add(messages)
            del cache.threads[slot]  # updated, or spoilt by a declined message
            if added:
                cache.threads[slot] = _Threaded(matched, numbering, kept.state)
                return kept.state.answer()
    messages = await _thread_inputs(store, view, matched, by_uid)
    state = references_state(messages)
    del messages
    _put(cache.threads, slot, _Threaded(matched, numbering, state), THREAD_STATES)
    return state.answer()


HANDLERS: dict[type[p.Command], Callable[[SessionState, Any], Awaitable[Done]]] = {
    p.Sort: sort,
    p.Thread: thread,
}
