"""IMAP message commands: APPEND, CLOSE, UNSELECT, EXPUNGE, UID EXPUNGE, FETCH, STORE, COPY, MOVE, SEARCH
(RFC 9051 sections 6.3.12, 6.4; RFC 3501 6.3.11, 6.4; UIDPLUS RFC 4315; MOVE RFC 6851; UNSELECT RFC 3691;
APPENDLIMIT RFC 7889).

Implementation notes
- APPEND streams the literal into a SpooledTemporaryFile (memory up to SPOOL_MEMORY, then a file), parses it
  once (`message.parse_message`, in a thread when large) and stores it with `store.append`; the tagged OK
  carries APPENDUID (RFC 4315) and is sent only after the store's commit. A missing mailbox is refused before
  any literal octet is read: "NO [TRYCREATE]". MULTIAPPEND (RFC 3502): the messages are spooled one by one
  and stored in order, in one store transaction (`MailStore.append_many`), when the command line ends: all
  or nothing, and no other session sees a part of them. APPENDUID then has a UID set. A zero-length
  message is NO and cancels the command (RFC 3502 6.3.11). CATENATE (RFC 4469, decision 0071): each
  catenated message is put together first (`postoffice.imap.commands_catenate`), then stored the same way.
- FETCH renders from the stored parse (`postoffice.imap.fetch`); a body section without .PEEK (and RFC822,
  RFC822.TEXT) sets \\Seen in a read-write mailbox before the data is sent, and FLAGS is then included in the
  response (RFC 9051 6.4.5). Messages expunged by another session but not reported yet are left out of FETCH
  responses (RFC 2180 4.1.3 allows it). Message bytes are read whole per message: streaming of large sections
  is future work.
- CONDSTORE (RFC 7162 section 3.1; docs/decisions/0061): FETCH MODSEQ and (CHANGEDSINCE n) (only messages
  with a MODSEQ above n, MODSEQ added), STORE (UNCHANGEDSINCE n) (`MailStore.store_flags_unchanged_since`:
  checked and changed in one transaction; the others named in MODIFIED), SEARCH MODSEQ (with the highest
  MODSEQ of the answer). Each is a CONDSTORE enabling command (`SessionState.enable_condstore`). The MODSEQs
  reported are the view's: what the session last read back, the same numbers its FETCH FLAGS come from.
  QRESYNC (RFC 7162 3.2): UID FETCH (CHANGEDSINCE n VANISHED), VANISHED in place of EXPUNGE (MOVE, and
  `SessionState.send_expunges`), UID in every FETCH that gives MODSEQ, `Done.expunged` for the tagged
  HIGHESTMODSEQ of EXPUNGE, UID EXPUNGE and MOVE.
- UIDONLY (RFC 9586, docs/decisions/0066): every FETCH response of FETCH and STORE is a UIDFETCH response
  (`SessionState.fetch_head`, `fetch_response`) with the UID data item only when the client asked for it;
  the forms without UID never get here (the protocol core answers BAD [UIDREQUIRED]).
- BINARY[part]<partial>, BINARY.PEEK and BINARY.SIZE (RFC 3516, RFC 9051 6.4.5) decode the part's transfer
  encoding (`fetch.binary_section`); the data goes as a literal8 `~{n}` only when it contains NUL. An encoding
  we cannot decode answers the command "NO [UNKNOWN-CTE]" (responses for earlier messages may have gone).
- STORE reads the mailbox back after the change and reports the resulting FLAGS (unless .SILENT); \\Recent
  cannot be stored and is ignored (RFC 9051 6.4.6).
- Keyword limits (docs/decisions/0043): STORE and APPEND that would give the mailbox a new keyword longer
  than `max_keyword_length`, or more than `max_mailbox_keywords` keywords, are NO [LIMIT] (RFC 5530) and
  change nothing; COPY and MOVE are never refused for keywords: the copies leave out those that do not fit.
  The store decides, in the transaction of the change (`KeywordLimits`).
- EXPUNGE / UID EXPUNGE / CLOSE remove only messages that carry \\Deleted in the store at that moment.
- MOVE sends "* OK [COPYUID ...]" untagged, then the EXPUNGE responses, then the tagged OK (RFC 6851 4.3).
- SEARCH / UID SEARCH evaluate in the store's index (`postoffice.imap.search` -> `MailStore.search`); RETURN
  gives ESEARCH (RFC 4731, MIN MAX COUNT ALL), as does every SEARCH of an IMAP4rev2 client (RFC 9051 6.4.4).
  SEARCHRES (RFC 5182): RETURN (SAVE) keeps the result as UIDs in the session (`saved_result`); `$` in any
  sequence set is that result minus the messages expunged since (`SessionState.saved_uids`).
  CONTEXT=SEARCH (RFC 5267 section 4): RETURN (PARTIAL m:n) gives the matches at those positions, CONTEXT
  is a hint, UPDATE keeps the result up to date (`postoffice.imap.commands_context`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from postoffice.imap import acl, commands_catenate, commands_context, wire
from postoffice.imap import fetch as f
from postoffice.imap import parser as p
from postoffice.imap import search as search_mod
from postoffice.imap.mailbox_view import Entry, MailboxView, flags_text
from postoffice.imap.objectid import email_objectid, thread_objectid
from postoffice.imap.sequence import format_sequence_set
from postoffice.imap.state import FLUSH_THRESHOLD, Done, SessionState, bad, no
from postoffice.message import PARSE_INLINE_LIMIT, ParsedMessage, parse_message
from postoffice.store import LimitExceeded
from postoffice.store.api import AppendItem, ImapRendering

if TYPE_CHECKING:
    from postoffice.imap.mailbox_view import MailboxView


def _view(session: SessionState) -> MailboxView:
    return session.selected_view


def _writable(session: SessionState) -> MailboxView:
    view = _view(session)
    if view.read_only:
        raise no("The mailbox is read-only", "READ-ONLY")
    return view


def _storable(flags: tuple[str, ...]) -> list[str]:
    return [flag for flag in flags if flag != "\\Recent"]


def _limit(exc: LimitExceeded) -> Exception:
    """A keyword limit of the store (docs/decisions/0043): NO [LIMIT] (RFC 5530), nothing changed."""
    text = str(exc)
    return no(text[:1].upper() + text[1:], "LIMIT")


# ------------------------------------------------------------------------------------------- APPEND


async def _store_spooled(
    session: SessionState,
    tag: str,
    messages: tuple[p.AppendMessage, ...],
    name: str,
    mailbox: p.MailboxName | None = None,
) -> tuple[int, list[int], bool]:
    """The spooled messages of an APPEND or REPLACE stored, all or none (one store transaction: MULTIAPPEND,
    RFC 3502 section 6.3.11); (the mailbox's UIDVALIDITY, their UIDs, whether the client may be told them:
    not without "r", RFC 4315 sections 3 and 5). CATENATE messages (RFC 4469) are put together first
    (`commands_catenate.assemble`)."""
    pending = session.take_append(tag)
    if any(message.catenate is not None for message in messages):
        replacing = name == "REPLACE"
        pending = await commands_catenate.assemble(
            session, pending, tag, mailbox, messages, replacing=replacing
        )
    if pending is None or len(pending.messages) != len(messages):
        if pending is not None:
            pending.close()
        raise bad(f"{name} message data missing")
    mailbox_id = pending.mailbox.id
    try:
        # the rights again, now that the message is in (RFC 4314 section 4: "i"; flags it may not set go)
        rights = await acl.rights_on(session, pending.mailbox)
        if "i" not in rights:  # (gone, or its id is another account's mailbox now: as missing, section 6)
            if "l" not in rights:
                raise no("Mailbox does not exist", "TRYCREATE")
            raise no("Permission denied: the i right is needed", "NOPERM")
        items: list[AppendItem] = []
        for item, message in zip(pending.messages, messages, strict=True):
            spool = item.spool
            spool.flush()
            spool.seek(0)
            if item.received <= PARSE_INLINE_LIMIT:
                parsed = parse_message(spool)
            else:
                parsed = await asyncio.to_thread(parse_message, spool)
            when = message.internal_date.timestamp() if message.internal_date is not None else None
            flags = acl.allowed_flags(_storable(message.flags), rights)
            items.append(AppendItem(spool, parsed, flags, when))
        try:
            copies = await session.store.append_many(mailbox_id, items, keyword_limits=session.keyword_limits)
        except LimitExceeded as exc:
            raise _limit(exc) from None
    finally:
        pending.close()
    uids = [copy.uid for copy in copies]
    view = session.view
    if view is not None and view.mailbox_id == mailbox_id:
        view.dirty = True
        session.added_to_selected(uids)
    return pending.mailbox.uidvalidity, uids, "r" in rights


async def append(session: SessionState, command: p.Append) -> Done:
    uidvalidity, uids, told = await _store_spooled(
        session, command.tag, command.messages, "APPEND", command.mailbox
    )
    return Done("APPEND completed", f"APPENDUID {uidvalidity} {format_sequence_set(uids)}" if told else None)


async def replace(session: SessionState, command: p.Replace) -> Done:
    """REPLACE / UID REPLACE (RFC 8508): the new message is appended first, then the one it replaces is
    expunged, so a failure never loses both (a failed append leaves the original; a crash between the two
    leaves both). The APPENDUID goes in an untagged OK before the EXPUNGE (or VANISHED) of the original."""
    view = _view(session)
    if view.read_only:  # refused before the literal too; the state may have changed since
        session.discard_append()
        raise no("The mailbox is read-only", "READ-ONLY")
    await acl.require_selected(session, "te")  # it expunges the original (RFC 4314 section 4)
    # as before a literal (`ImapProtocol._open_append`): a REPLACE with CATENATE of URLs alone has none
    if command.uid:
        if command.target not in view:
            raise no(f"There is no message with UID {command.target}")
        original = command.target
    elif 1 <= command.target <= view.reported_exists:
        original = view.uids[command.target - 1]
    else:
        raise bad(f"Invalid message sequence number: {command.target}")
    # the store's word, not the view's: another session may have expunged it since the view last read
    if (
        original
        and original not in view.gone
        and not await session.store.get_messages(view.mailbox_id, [original])
    ):
        view.dirty = True  # the expunge, told before the tagged reply
        original = 0
    if not original or original in view.gone:
        session.discard_append()
        raise no("The message to replace no longer exists", "EXPUNGEISSUED")
    uidvalidity, (uid,), told = await _store_spooled(
        session, command.tag, (command.message,), "REPLACE", command.mailbox
    )
    if told:  # not without "r" on the target (RFC 4315 sections 3 and 5)
        session.untagged(f"OK [APPENDUID {uidvalidity} {uid}] Replacement message ready")
    removed = await session.store.expunge(view.mailbox_id, [original])
    view.mark_gone(removed)
    view.dirty = True  # the expunge's own MODSEQ: read back before the tagged reply gives HIGHESTMODSEQ
    return Done(f"{command.name} completed", expunged=bool(removed))


# -------------------------------------------------------------------------- CLOSE UNSELECT EXPUNGE


async def _expunge_deleted(session: SessionState, only: set[int] | None) -> list[int]:
    view = _writable(session)
    if only is not None and not only:
        return []
    return await session.store.expunge_deleted(view.mailbox_id, only)


async def close(session: SessionState, command: p.Close) -> Done:
    view = _view(session)
    # RFC 4314 section 4: without "e" CLOSE expunges nothing, and does not fail for it
    if not view.read_only and "e" in await acl.selected_rights(session):
        await _expunge_deleted(session, None)  # silently: no EXPUNGE responses (RFC 9051 6.4.1)
    session.close_view()
    return Done("CLOSE completed")


async def unselect(session: SessionState, command: p.Unselect) -> Done:
    session.close_view()
    return Done("UNSELECT completed")


async def expunge(session: SessionState, command: p.Expunge | p.UidExpunge) -> Done:
    only = None
    if isinstance(command, p.UidExpunge):
        only = set(session.resolve(command.sequence, uid=True))
    _writable(session)
    await acl.require_selected(session, "e")  # RFC 4314 section 4: EXPUNGE needs "e"
    removed = await _expunge_deleted(session, only)
    view = _view(session)
    view.mark_gone(removed)
    view.dirty = True
    return Done(f"{command.name} completed", expunged=bool(removed))


# -------------------------------------------------------------------------------------------- FETCH

_SEEN_ITEMS = ("RFC822", "RFC822.TEXT")
_CONTENT_ITEMS = ("RFC822", "RFC822.HEADER", "RFC822.TEXT")


def _spec(section: p.Section) -> f.SectionSpec:
    kind: Any = section.text.value if section.text is not None else None
    return f.SectionSpec(section.part, kind, section.fields)


def _sets_seen(item: p.FetchItem) -> bool:
    if isinstance(item, p.FetchBody | p.FetchBinary):
        return not item.peek
    return isinstance(item, p.FetchAttribute) and item.name in _SEEN_ITEMS


#: PREVIEW gives at most this many characters (RFC 8970 3.1: the limit).
PREVIEW_LENGTH = 256
#: FETCH reads the store in batches of this many messages (one read for all their renderings or parses) ...
FETCH_BATCH = 500
#: ... and, when message bytes are needed, of at most this many octets (a larger message is read alone).
FETCH_BATCH_OCTETS = 1024 * 1024
#: Messages per slice of a metadata-only FETCH (about 20 KiB of responses).
METADATA_SLICE = 500
#: A message larger than this is never read whole by FETCH: its sections are streamed in chunks of
#: STREAM_CHUNK octets (`_fetch_large`).
STREAM_OCTETS = 1024 * 1024
STREAM_CHUNK = 256 * 1024


@dataclass(frozen=True)
class _FetchPlan:
    """What one FETCH command needs from the store, decided once for all its messages."""

    renderings: bool  # ENVELOPE / BODYSTRUCTURE: the renderings made at delivery
    parse: bool  # BODY, RFC822.HEADER/TEXT, sections with a part or a kind, BINARY: the stored parse
    content: bool  # message bytes
    previews: bool = False  # PREVIEW: the start of the text kept for search (RFC 8970)

    @classmethod
    def of(cls, items: list[p.FetchItem]) -> _FetchPlan:
        renderings = parse = content = previews = False
        for item in items:
            if isinstance(item, p.FetchAttribute):
                if item.name == "PREVIEW":
                    previews = True
                elif item.name in ("ENVELOPE", "BODYSTRUCTURE"):
                    renderings = True
                elif item.name == "BODY":
                    parse = True
                elif item.name in _CONTENT_ITEMS:
                    content = True
                    parse = parse or item.name != "RFC822"
            elif isinstance(item, p.FetchBody):
                content = True
                parse = parse or bool(item.section.part) or item.section.text is not None
            else:  # BINARY[...] and BINARY.SIZE[...]
                content = parse = True
        return cls(renderings, parse, content, previews)


async def fetch(session: SessionState, command: p.Fetch) -> Done:
    changed_since = command.changed_since
    if command.vanished:  # RFC 7162 3.2.6
        if not session.qresync:
            raise bad("VANISHED needs QRESYNC, which is not enabled")
        if not command.uid or changed_since is None:
            raise bad("VANISHED is for UID FETCH with CHANGEDSINCE")
    items = list(command.items)
    if changed_since is not None or _has_modseq(items):
        session.enable_condstore()  # RFC 7162 3.1
    view = _view(session)
    uids = [u for u in session.resolve(command.sequence, uid=command.uid) if u not in view.gone]
    if command.vanished and changed_since is not None:
        await session.send_vanished_earlier(view, command.sequence, changed_since)
    if changed_since is not None:
        # RFC 7162 3.1.4.1: only messages changed after it (strictly), and MODSEQ with them
        uids = [u for u in uids if view.modseq_of(u) > changed_since]
        if not _has_modseq(items):
            items.append(p.FetchAttribute("MODSEQ"))
    store = session.store
    if any(isinstance(i, p.FetchAttribute) and i.name in ("THREADID", "SAVEDATE") for i in items):
        missing = [u for u in uids if u not in view.infos]
        for info in await store.get_messages(view.mailbox_id, missing) if missing else ():
            view.infos[info.uid] = info
    # a body section sets \Seen, with the "s" right (RFC 4314 section 4: FETCH)
    sets_seen = not view.read_only and any(_sets_seen(item) for item in items)
    if sets_seen and "s" in await acl.selected_rights(session):
        unseen = [u for u in uids if "\\Seen" not in view.flags(u)]
        if unseen:
            await store.store_flags(view.mailbox_id, unseen, ["\\Seen"], "add")
            await session.read_back(view)
            uids = [u for u in uids if u not in view.gone]
            if not _has_flags(items):
                items.append(p.FetchAttribute("FLAGS"))
            if session.condstore and not _has_modseq(items):
                items.append(p.FetchAttribute("MODSEQ"))  # RFC 7162 3.1.4.2: the \Seen changed it
    has_uid = any(isinstance(i, p.FetchAttribute) and i.name == "UID" for i in items)
    if not has_uid and not session.uidonly and (command.uid or (session.condstore and _has_modseq(items))):
        # RFC 9051 6.4.9: UID FETCH always includes UID; RFC 7162 3.2.4: so does a FETCH that gives MODSEQ
        # once CONDSTORE is on. A UIDFETCH response names the UID already: UID only when asked (RFC 9586 3.3)
        items.insert(0, p.FetchAttribute("UID"))
    plan = _FetchPlan.of(items)
    with_flags = _has_flags(items)
    if not plan.renderings and not plan.parse and not plan.content and not plan.previews:
        # In slices, each written at once: the client reads one while the next is formatted (two cores
        # work on a `UID FETCH 1:* (FLAGS)` instead of one after the other).
        for start in range(0, len(uids), METADATA_SLICE):
            _fetch_metadata(session, view, uids[start : start + METADATA_SLICE], items)
            if start + METADATA_SLICE < len(uids):
                await session.flush()
    else:
        for batch in _batches(view.entries(uids), plan.content):
            if plan.content and len(batch) == 1 and batch[0][4] > STREAM_OCTETS:
                await _fetch_large(session, view, batch[0], items)
            else:
                await _fetch_batch(session, view, batch, items, plan)
            if session.pending_output() >= FLUSH_THRESHOLD:
                await session.flush()
    if with_flags:
        view.flag_updates.difference_update(uids)  # the client has just been told
    return Done(f"{command.name} completed")


def _batches(entries: Iterator[Entry], content: bool) -> Iterator[list[Entry]]:
    batch: list[Entry] = []
    octets = 0
    for entry in entries:
        size = entry[4] if content else 0
        if batch and (len(batch) >= FETCH_BATCH or octets + size > FETCH_BATCH_OCTETS):
            yield batch
            batch, octets = [], 0
        batch.append(entry)
        octets += size
    if batch:
        yield batch


def _has_flags(items: list[p.FetchItem]) -> bool:
    return any(isinstance(i, p.FetchAttribute) and i.name == "FLAGS" for i in items)


def _has_modseq(items: list[p.FetchItem]) -> bool:
    return any(isinstance(i, p.FetchAttribute) and i.name == "MODSEQ" for i in items)


def _fetch_metadata(
    session: SessionState, view: MailboxView, uids: list[int], items: list[p.FetchItem]
) -> None:
    """FETCH of UID, FLAGS, RFC822.SIZE and INTERNALDATE only: from the view, no store read, one formatted
    line per message (the common sync request `UID FETCH 1:* (UID FLAGS)`)."""
    names = [item.name for item in items if isinstance(item, p.FetchAttribute)]
    recent = not session.rev2
    uidonly = session.uidonly  # then UIDFETCH, numbered by UID (RFC 9586 3.3)
    response = "UIDFETCH" if uidonly else "FETCH"
    out = bytearray()
    if names in (["UID", "FLAGS"], ["FLAGS", "UID"], ["FLAGS"]):
        if names == ["FLAGS"]:
            template = "* %d " + response + " (FLAGS (%s))\r\n"
        elif names[0] == "UID":
            template = "* %d " + response + " (UID %d FLAGS (%s))\r\n"
        else:
            template = "* %d " + response + " (FLAGS (%s) UID %d)\r\n"
        uid_first = names[0] == "UID"
        texts: dict[frozenset[str], str] = {}  # flag list per combination, this command's cache
        lines: list[str] = []
        for seq, uid, flags in view.positions(uids):
            if recent and uid in view.recent:
                text = flags_text(flags, True)
            else:
                text = texts.get(flags)  # type: ignore[assignment]
                if text is None:
                    text = texts[flags] = flags_text(flags)
            number = uid if uidonly else seq
            if uid_first:
                lines.append(template % (number, uid, text))
            elif len(names) == 2:
                lines.append(template % (number, text, uid))
            else:
                lines.append(template % (number, text))
        session.send("".join(lines).encode())
        return
    for entry in view.entries(uids):
        out += session.fetch_head(entry[0], entry[1])
        out += b" ".join(_render(session, view, entry, items, None, None, b"")) + b")\r\n"
    session.send(bytes(out))


async def _fetch_batch(
    session: SessionState, view: MailboxView, entries: list[Entry], items: list[p.FetchItem], plan: _FetchPlan
) -> None:
    store = session.store
    content_ids = [entry[3] for entry in entries]
    renderings = await store.imap_renderings(content_ids) if plan.renderings else {}
    need_parse = content_ids if plan.parse else [cid for cid in content_ids if cid not in renderings]
    parses = await store.get_parsed_many(need_parse) if need_parse and (plan.parse or plan.renderings) else {}
    octets = sum(entry[4] for entry in entries)
    contents = await store.read_contents(content_ids, octets=octets) if plan.content else {}
    previews = await store.snippets(content_ids, PREVIEW_LENGTH) if plan.previews else {}
    binary_parts = [item.part for item in items if isinstance(item, (p.FetchBinary, p.FetchBinarySize))]
    for entry in entries:
        cid = entry[3]
        if (
            (plan.content and cid not in contents)
            or (plan.parse and cid not in parses)
            or (plan.renderings and cid not in renderings and cid not in parses)
        ):
            continue  # expunged (by another session) since the view was read: nothing left to show
        rendering, parsed = renderings.get(cid), parses.get(cid)
        if parsed is not None:
            for part in binary_parts:
                if not f.binary_decodable(parsed, part):
                    raise _unknown_cte(part)  # before any of this message's response is queued
        # Item by item, written whenever enough is queued: a FETCH naming the same section thousands of times
        # (the command line allows it) must not build thousands of copies of a message in memory.
        session.send(session.fetch_head(entry[0], entry[1]))
        for index, part_bytes in enumerate(
            _render(session, view, entry, items, rendering, parsed, contents.get(cid, b""), previews)
        ):
            session.send(b" " + part_bytes if index else part_bytes)
            if session.pending_output() >= FLUSH_THRESHOLD:
                await session.flush()
        session.send(b")\r\n")


async def _fetch_large(
    session: SessionState, view: MailboxView, entry: Entry, items: list[p.FetchItem]
) -> None:
    """One message too large to read whole: byte ranges (BODY[...] without a header filter, RFC822,
    RFC822.TEXT, BINARY[] of the whole message) go out as literals streamed from the store in chunks; every
    other item reads only the range it needs (a header block, one part), so memory stays bounded."""
    store = session.store
    content_id = entry[3]
    parsed = (await store.get_parsed_many([content_id])).get(content_id)
    if parsed is None:
        return  # expunged since the view was read
    rendering = (await store.imap_renderings([content_id])).get(content_id)
    previews = await store.snippets([content_id], PREVIEW_LENGTH) if _FetchPlan.of(items).previews else {}
    for item in items:
        if isinstance(item, (p.FetchBinary, p.FetchBinarySize)) and not f.binary_decodable(parsed, item.part):
            raise _unknown_cte(item.part)  # before any of the response is queued
    session.send(session.fetch_head(entry[0], entry[1]))
    for n, item in enumerate(items):
        if n:
            session.send(b" ")
        span = _streamed_span(item, parsed)
        if span is not None:
            label, start, end = span
            binary = isinstance(item, p.FetchBinary)  # literal8: NUL may be in the data (RFC 3516 4.2)
            session.send(label + (b" ~{%d}\r\n" if binary else b" {%d}\r\n") % (end - start))
            for offset in range(start, end, STREAM_CHUNK):
                chunk = await store.read_range(content_id, offset, min(STREAM_CHUNK, end - offset))
                # a plain literal cannot carry NUL: 0x80 instead, same length (as `wire.literal`)
                session.send(chunk if binary or b"\x00" not in chunk else chunk.replace(b"\x00", b"\x80"))
                if session.pending_output() >= FLUSH_THRESHOLD:
                    await session.flush()
            continue
        start, end = _needed_range(item, parsed)
        data = await store.read_range(content_id, start, end - start) if end > start else b""

        def read(offset: int, length: int, data: bytes = data, start: int = start) -> bytes:
            return data[offset - start : offset - start + length]

        (part,) = _render(session, view, entry, [item], rendering, parsed, read, previews)
        session.send(part)
    session.send(b")\r\n")


def _streamed_span(item: p.FetchItem, parsed: ParsedMessage) -> tuple[bytes, int, int] | None:
    """(label, start, end) when the item's data is a plain byte range of the stored message."""
    if isinstance(item, p.FetchAttribute):
        if item.name == "RFC822":
            return b"RFC822", 0, parsed.size
        if item.name == "RFC822.TEXT":
            location = f.locate_section(parsed, f.SectionSpec((), "TEXT"))
            return None if location is None else (b"RFC822.TEXT", location.start, location.end)
        return None
    if isinstance(item, p.FetchBinary) and not item.part:
        label = b"BINARY[]"
        start, end = 0, parsed.size
    elif isinstance(item, p.FetchBody):
        spec = _spec(item.section)
        location = f.locate_section(parsed, spec)
        if location is None or location.fields is not None:
            return None  # an empty section, or a header filter: rendered from the header block
        label = b"BODY[" + f.section_label(spec) + b"]"
        start, end = location.start, location.end
    else:
        return None
    partial = item.partial
    if partial is not None:
        label += b"<%d>" % partial.origin
        start = min(start + max(partial.origin, 0), end)
        if partial.length is not None:
            end = min(end, start + max(partial.length, 0))
    return label, start, end


def _needed_range(item: p.FetchItem, parsed: ParsedMessage) -> tuple[int, int]:
    """The range of the stored message that rendering `item` reads (the whole message when unsure)."""
    spec: f.SectionSpec | None = None
    if isinstance(item, p.FetchBody):
        spec = _spec(item.section)
    elif isinstance(item, p.FetchAttribute):
        if item.name == "RFC822.HEADER":
            spec = f.SectionSpec((), "HEADER")
        elif item.name not in _CONTENT_ITEMS:
            return 0, 0  # needs no message bytes
    elif isinstance(item, p.FetchBinary | p.FetchBinarySize) and item.part:
        spec = f.SectionSpec(item.part)
    if spec is None:
        return 0, parsed.size
    location = f.locate_section(parsed, spec)
    return (0, 0) if location is None else (location.start, location.end)


def _render(
    session: SessionState,
    view: MailboxView,
    entry: Entry,
    items: list[p.FetchItem],
    rendering: ImapRendering | None,
    parsed: ParsedMessage | None,
    content: f.Source,
    previews: Mapping[int, str] | None = None,
) -> Iterator[bytes]:
    """Each item's response, one at a time (so that a caller can write them as they come). `previews`: the
    PREVIEW texts by content id, when PREVIEW is asked for."""
    utf8 = session.utf8
    _, uid, flags, _, size, internaldate = entry
    for item in items:
        if isinstance(item, p.FetchAttribute):
            name = item.name
            if name == "UID":
                yield (b"UID %d" % uid)
            elif name == "MODSEQ":
                yield (b"MODSEQ (%d)" % view.modseq_of(uid))  # RFC 7162 3.1.4: parenthesized
            elif name == "PREVIEW":  # RFC 8970 3: at most 256 characters, UTF-8, "" for no text
                yield (
                    b"PREVIEW "
                    + wire.string(previews.get(entry[3], "") if previews else "", utf8=session.utf8)
                )
            elif name == "EMAILID":  # RFC 8474 5.1
                yield (b"EMAILID (%s)" % email_objectid(entry[3]).encode())
            elif name == "SAVEDATE":  # RFC 8514 4.1
                saved = view.infos.get(uid)
                yield b"SAVEDATE " + (wire.date_time(saved.savedate) if saved is not None else wire.NIL)
            elif name == "THREADID":  # RFC 8474 5.2: NIL for a message in no conversation
                thread = info.thread_id if (info := view.infos.get(uid)) is not None else 0
                yield (b"THREADID (%s)" % thread_objectid(thread).encode()) if thread else b"THREADID NIL"
            elif name == "FLAGS":
                recent = not session.rev2 and uid in view.recent
                yield (b"FLAGS (%s)" % flags_text(flags, recent).encode())
            elif name == "RFC822.SIZE":
                yield (b"RFC822.SIZE %d" % size)
            elif name == "INTERNALDATE":
                yield (b"INTERNALDATE " + wire.date_time(internaldate))
            elif name == "ENVELOPE":
                if rendering is not None:
                    env = rendering.envelope_utf8 if utf8 and rendering.envelope_utf8 else rendering.envelope
                elif parsed is not None:
                    env = f.envelope(parsed.envelope, utf8=utf8)
                else:
                    raise _unplanned(item)
                yield (b"ENVELOPE " + env)
            elif name == "BODYSTRUCTURE":
                if rendering is not None:
                    body = rendering.bodystructure
                    if utf8 and rendering.bodystructure_utf8:
                        body = rendering.bodystructure_utf8
                elif parsed is not None:
                    body = f.bodystructure(parsed.body, extended=True, utf8=utf8)
                else:
                    raise _unplanned(item)
                yield (b"BODYSTRUCTURE " + body)
            elif name == "BODY":
                if parsed is None:
                    raise _unplanned(item)
                yield (b"BODY " + f.bodystructure(parsed.body, extended=False, utf8=utf8))
            elif name == "RFC822":
                if not isinstance(content, bytes):  # a large message goes through `_fetch_large`
                    raise _unplanned(item)
                yield (b"RFC822 " + wire.literal(content))
            elif name in ("RFC822.HEADER", "RFC822.TEXT"):
                if parsed is None:
                    raise _unplanned(item)
                spec = f.SectionSpec((), "HEADER" if name == "RFC822.HEADER" else "TEXT")
                yield (name.encode() + b" " + wire.literal(f.section_bytes(content, parsed, spec)))
        elif isinstance(item, p.FetchBody):
            spec = _spec(item.section)
            partial = (item.partial.origin, item.partial.length) if item.partial is not None else None
            if parsed is None:  # BODY[] of the whole message: no structure needed
                if not isinstance(content, bytes):
                    raise _unplanned(item)
                data = f.apply_partial(content, partial)
            else:
                data = f.section_bytes(content, parsed, spec, partial)
            label = b"BODY[" + f.section_label(spec) + b"]"
            if item.partial is not None:
                label += b"<%d>" % item.partial.origin
            yield (label + b" " + wire.literal(data))
        elif isinstance(item, p.FetchBinary):
            if parsed is None:
                raise _unplanned(item)
            partial = (item.partial.origin, item.partial.length) if item.partial is not None else None
            decoded = f.binary_section(content, parsed, item.part, partial)
            if decoded is None:
                raise _unknown_cte(item.part)
            label = b"BINARY[" + _part_label(item.part) + b"]"
            if item.partial is not None:
                label += b"<%d>" % item.partial.origin
            # RFC 3516 4.2: literal8 only when the decoded data needs it (NUL); a plain literal otherwise.
            yield (label + b" " + wire.literal(decoded, binary=b"\x00" in decoded))
        elif isinstance(item, p.FetchBinarySize):
            if parsed is None:
                raise _unplanned(item)
            decoded_size = f.binary_size(content, parsed, item.part)
            if decoded_size is None:
                raise _unknown_cte(item.part)
            yield (b"BINARY.SIZE[" + _part_label(item.part) + b"] %d" % decoded_size)


def _unplanned(item: p.FetchItem) -> RuntimeError:
    """`_FetchPlan.of` did not ask for what `item` needs (a bug): the command fails, NO [SERVERBUG]."""
    return RuntimeError(f"FETCH item {item!r} rendered without the data it needs")


def _part_label(part: tuple[int, ...]) -> bytes:
    return ".".join(str(n) for n in part).encode()


def _unknown_cte(part: tuple[int, ...]) -> Exception:
    """RFC 3516 4.3 / RFC 9051 7.1: a transfer encoding the server cannot decode."""
    return no(f"Unknown Content-Transfer-Encoding in part {_part_label(part).decode()}", "UNKNOWN-CTE")


# -------------------------------------------------------------------------------------------- STORE


async def store(session: SessionState, command: p.Store) -> Done:
    """STORE / UID STORE (RFC 9051 6.4.6), and with UNCHANGEDSINCE (RFC 7162 3.1.3): each message whose
    MODSEQ is above it is left alone and named in MODIFIED (sequence numbers, or UIDs for UID STORE); so is
    a message expunged meanwhile. Once CONDSTORE is on, every message stored gets a FETCH with its MODSEQ,
    .SILENT or not (FLAGS only without .SILENT), and so does every message left alone."""
    unchanged_since = command.unchanged_since
    if unchanged_since is not None:
        session.enable_condstore()
    view = _writable(session)
    # RFC 4314 section 4: only the flags the rights let the user change ("s", "t", "w"); NO only when none
    rights = await acl.selected_rights(session)
    settable = acl.store_settable(_storable(command.flags), command.mode is p.StoreMode.REPLACE, rights)
    named = dict.fromkeys(session.resolve(command.sequence, uid=command.uid))
    uids = [u for u in named if u not in view.gone]
    modified: set[int] = set() if unchanged_since is None else {u for u in named if u in view.gone}
    mode = _STORE_MODES[command.mode]
    if uids:
        limits = session.keyword_limits
        flags = _storable(command.flags)
        try:
            if unchanged_since is None:
                await session.store.store_flags(
                    view.mailbox_id, uids, flags, mode, keyword_limits=limits, settable=settable
                )
            else:
                update = await session.store.store_flags_unchanged_since(
                    view.mailbox_id,
                    uids,
                    flags,
                    mode,
                    unchanged_since,
                    keyword_limits=limits,
                    settable=settable,
                )
                modified.update(update.modified)
        except LimitExceeded as exc:
            raise _limit(exc) from None
        await session.read_back(view)
    session.announce_keywords(view, uids)
    condstore = session.condstore
    for uid in uids:
        if uid in view.gone:
            continue
        view.flag_updates.discard(uid)
        stored = uid not in modified
        if command.silent and stored and not condstore:
            continue
        parts = []
        if not command.silent or not stored:  # RFC 7162 3.1.3: the flags of one left alone, unasked
            parts.append(f"FLAGS ({view.flags_of(uid, with_recent=not session.rev2)})")
        if condstore:
            parts.append(f"MODSEQ ({view.modseq_of(uid)})")
        # UID for UID STORE and once CONDSTORE is on (RFC 7162 3.2.4); UIDFETCH after UIDONLY (RFC 9586 3.3)
        session.fetch_response(view.seq_of(uid), uid, " ".join(parts), with_uid=command.uid or condstore)
    if modified:
        numbers = sorted(modified) if command.uid else sorted(n for u in modified if (n := view.seq_of(u)))
        return Done("Conditional STORE failed for some messages", f"MODIFIED {format_sequence_set(numbers)}")
    return Done(f"{command.name} completed")


_STORE_MODES = {p.StoreMode.ADD: "add", p.StoreMode.REMOVE: "remove", p.StoreMode.REPLACE: "replace"}


# ---------------------------------------------------------------------------------------- COPY MOVE


async def copy(session: SessionState, command: p.Copy | p.Move) -> Done:
    move = isinstance(command, p.Move)
    view = _writable(session) if move else _view(session)
    uids = [u for u in session.resolve(command.sequence, uid=command.uid) if u not in view.gone]
    if not command.mailbox.valid:  # not modified UTF-7: no mailbox has that name (decision 0020)
        raise no("Mailbox does not exist (the name is not valid modified UTF-7)", "NONEXISTENT")
    # RFC 4314 section 4: "i" on the target (its copies keep only the flags the user may set there), and for
    # MOVE "t" and "e" on the source, whose messages it expunges (RFC 6851)
    destination = await acl.mailbox(session, command.mailbox.name, "i", "TRYCREATE")
    target = destination.info
    if move:
        await acl.require_selected(session, "te")
    if not uids:
        return Done(f"{command.name} completed, nothing to do")
    pairs = await session.store.copy_messages(
        view.mailbox_id,
        uids,
        target.id,
        move=move,
        keyword_limits=session.keyword_limits,
        settable=acl.settable(destination.rights),
    )
    code = None
    if pairs and "r" in destination.rights:  # RFC 4315 sections 3 and 5: not without "r" on the target
        sources = format_sequence_set([s for s, _ in pairs], sort=False)
        targets = format_sequence_set([t for _, t in pairs], sort=False)
        code = f"COPYUID {target.uidvalidity} {sources} {targets}"
    if target.id == view.mailbox_id:
        view.dirty = True
        session.added_to_selected([t for _, t in pairs])
    if not move:
        return Done(f"{command.name} completed", code)
    if code is not None:
        session.untagged(f"OK [{code}] Moved")
    view.mark_gone(s for s, _ in pairs)
    view.dirty = True  # the MOVE's own MODSEQ: read back before the tagged reply gives HIGHESTMODSEQ
    session.send_expunges(view)
    return Done(f"{command.name} completed", expunged=bool(pairs))


# ------------------------------------------------------------------------------------------- SEARCH


async def search(session: SessionState, command: p.Search) -> Done:
    """SEARCH / UID SEARCH (RFC 9051 6.4.4), answered from the store's index (`postoffice.imap.search`);
    with RETURN (...) the answer is ESEARCH (RFC 4731). Expunges are not sent during SEARCH (7.5.1)."""
    view = _view(session)
    if command.charset is not None and session.utf8 and not session.rev2:
        # RFC 6855 3 (erratum 4029): after ENABLE UTF8=ACCEPT a client must not name a charset
        raise bad("SEARCH CHARSET is not allowed after ENABLE UTF8=ACCEPT")
    commands_context.check_tag(session, command)  # RFC 5267 4.3: UPDATE with a tag still updated is BAD
    save = command.return_options is not None and "SAVE" in {o.upper() for o in command.return_options}
    saved = session.saved_uids()  # `$` in this command is the result saved before it (RFC 5182 2.1)
    previous = session.saved_result
    if save:
        session.saved_result = []  # RFC 5182 2.1: a SEARCH ... SAVE answered NO leaves the empty result
    by_modseq = search_mod.uses_modseq(command.keys)
    if by_modseq:
        session.enable_condstore()  # RFC 7162 3.1
    try:
        criteria = search_mod.to_criteria(
            command.keys,
            uids_by_seq=view.uids,
            saved=saved,
            recent=view.recent if not session.rev2 else None,
            charset=command.charset,
        )
    except search_mod.SearchBadCharset as exc:
        raise no(str(exc), "BADCHARSET (UTF-8 US-ASCII)") from None
    except search_mod.SearchBad as exc:
        session.saved_result = previous  # RFC 9051 6.4.4.1: a SEARCH answered BAD leaves `$` as it was
        raise bad(str(exc)) from None
    uids = await session.store.search(view.mailbox_id, criteria)
    live = [u for u in uids if u not in view.gone]
    numbers = search_mod.result_numbers(live, view.uids, uid=command.uid)
    return_options = command.return_options
    if return_options is None and session.rev2:
        return_options = ("ALL",)  # RFC 9051 6.4.4: IMAP4rev2 answers SEARCH with ESEARCH, never SEARCH
    # RFC 7162 3.1.5 / 3.1.10: with a MODSEQ key, the highest MODSEQ of the messages the answer names
    modseqs = {u: view.modseq_of(u) for u in live} if by_modseq else None
    if return_options is None:
        highest = max(modseqs.values(), default=0) if modseqs is not None and numbers else None
        session.send(search_mod.search_response(numbers, modseq=highest))
    else:
        session.send(
            search_mod.esearch_response(
                command.tag,
                numbers,
                return_options,
                command.uid,
                modseqs=_by_number(modseqs, view, command.uid),
                partial=command.partial,  # RFC 5267 4.4
            )
        )
    if save or commands_context.wants_updates(command):  # the UIDs in the view, for `$` and for UPDATE
        in_view = numbers if command.uid else search_mod.result_numbers(live, view.uids, uid=True)
        if save:  # RFC 5182 2.4, RFC 9394 3.2 (PARTIAL)
            session.saved_result = search_mod.saved_result(
                in_view, return_options or (), partial=command.partial
            )
        commands_context.start(session, command, criteria, saved, in_view)  # RFC 5267 4.3: with UPDATE
    return Done(f"{command.name} completed")


def _by_number(modseqs: dict[int, int] | None, view: MailboxView, uid: bool) -> dict[int, int] | None:
    """MODSEQ by what the answer names: UIDs, or sequence numbers."""
    if modseqs is None or uid:
        return modseqs
    return {n: m for u, m in modseqs.items() if (n := view.seq_of(u)) is not None}


Handler = Callable[[SessionState, Any], Awaitable[Done]]


HANDLERS: dict[type[p.Command], Handler] = {
    p.Append: append,
    p.Replace: replace,
    p.Close: close,
    p.Unselect: unselect,
    p.Expunge: expunge,
    p.UidExpunge: expunge,
    p.Fetch: fetch,
    p.Store: store,
    p.Copy: copy,
    p.Move: copy,
    p.Search: search,
}
