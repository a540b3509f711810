"""IMAP message commands: APPEND, CLOSE, UNSELECT, EXPUNGE, UID EXPUNGE, FETCH, STORE, COPY, MOVE, SEARCH
(RFC 9051 sections 6.3.12, 6.4; RFC 3501 6.3.11, 6.4; UIDPLUS RFC 4315; MOVE RFC 6851; UNSELECT RFC 3691;
APPENDLIMIT RFC 7889).

Implementation notes
- APPEND streams the literal into a SpooledTemporaryFile (memory up to SPOOL_MEMORY, then a file), parses it
  once (`message.parse_message`, in a thread when large) and stores it with `store.append`; the tagged OK
  carries APPENDUID (RFC 4315) and is sent only after the store's commit. A missing mailbox is refused before
  any literal octet is read: "NO [TRYCREATE]". MULTIAPPEND (RFC 3502): the messages are spooled one by one
  and stored in order when the command line ends; if one fails, the ones already stored are expunged again
  (the store has no multi-message append transaction), so the command is all or nothing as far as the
  client can tell, though another session may see them come and go. APPENDUID then has a UID set.
- FETCH renders from the stored parse (`postoffice.imap.fetch`); a body section without .PEEK (and RFC822,
  RFC822.TEXT) sets \\Seen in a read-write mailbox before the data is sent, and FLAGS is then included in the
  response (RFC 9051 6.4.5). Messages expunged by another session but not reported yet are left out of FETCH
  responses (RFC 2180 4.1.3 allows it). Message bytes are read whole per message: streaming of large sections
  is future work. MODSEQ and CHANGEDSINCE are refused with BAD (not advertised).
- BINARY[part]<partial>, BINARY.PEEK and BINARY.SIZE (RFC 3516, RFC 9051 6.4.5) decode the part's transfer
  encoding (`fetch.binary_section`); the data goes as a literal8 `~{n}` only when it contains NUL. An encoding
  we cannot decode answers the command "NO [UNKNOWN-CTE]" (responses for earlier messages may have gone).
- STORE reads the mailbox back after the change and reports the resulting FLAGS (unless .SILENT); \\Recent
  cannot be stored and is ignored (RFC 9051 6.4.6).
- EXPUNGE / UID EXPUNGE / CLOSE remove only messages that carry \\Deleted in the store at that moment.
- MOVE sends "* OK [COPYUID ...]" untagged, then the EXPUNGE responses, then the tagged OK (RFC 6851 4.3).
- SEARCH / UID SEARCH evaluate in the store's index (`postoffice.imap.search` -> `MailStore.search`); RETURN
  gives ESEARCH (RFC 4731, MIN MAX COUNT ALL), as does every SEARCH of an IMAP4rev2 client (RFC 9051 6.4.4).
  SEARCHRES (RFC 5182): RETURN (SAVE) keeps the result as UIDs in the session (`saved_result`); `$` in any
  sequence set is that result minus the messages expunged since (`ImapSession.saved_uids`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from postoffice.imap import fetch as f
from postoffice.imap import parser as p
from postoffice.imap import search as search_mod
from postoffice.imap import wire
from postoffice.imap.sequence import format_sequence_set
from postoffice.imap.session import PARSE_INLINE_LIMIT, Done, bad, no
from postoffice.message import parse_message
from postoffice.store import MessageInfo

if TYPE_CHECKING:
    from postoffice.imap.mailbox_view import MailboxView
    from postoffice.imap.session import ImapSession


def _view(session: ImapSession) -> MailboxView:
    assert session.view is not None
    return session.view


def _writable(session: ImapSession) -> MailboxView:
    view = _view(session)
    if view.read_only:
        raise no("The mailbox is read-only", "READ-ONLY")
    return view


def _storable(flags: tuple[str, ...]) -> list[str]:
    return [flag for flag in flags if flag != "\\Recent"]


# ------------------------------------------------------------------------------------------- APPEND


async def append(session: ImapSession, command: p.Append) -> Done:
    pending = session.take_append(command.tag)
    if pending is None or len(pending.messages) != len(command.messages):
        if pending is not None:
            pending.close()
        raise bad("APPEND message data missing")
    mailbox_id = pending.mailbox.id
    uids: list[int] = []
    try:
        for item, message in zip(pending.messages, command.messages, strict=True):
            spool = item.spool
            spool.flush()
            spool.seek(0)
            if item.received <= PARSE_INLINE_LIMIT:
                parsed = parse_message(spool)
            else:
                parsed = await asyncio.to_thread(parse_message, spool)
            when = message.internal_date.timestamp() if message.internal_date is not None else None
            spool.seek(0)
            copy = await session.store.append(mailbox_id, spool, parsed, _storable(message.flags), when)
            uids.append(copy.uid)
    except Exception:
        # MULTIAPPEND is all or nothing (RFC 3502 section 6.3.11): the messages already stored go again.
        if uids:
            await session.store.expunge(mailbox_id, uids)
        raise
    finally:
        pending.close()
    view = session.view
    if view is not None and view.mailbox_id == mailbox_id:
        view.dirty = True
    return Done("APPEND completed", f"APPENDUID {pending.mailbox.uidvalidity} {format_sequence_set(uids)}")


# -------------------------------------------------------------------------- CLOSE UNSELECT EXPUNGE


async def _expunge_deleted(session: ImapSession, only: set[int] | None) -> list[int]:
    view = _writable(session)
    messages = await session.store.list_messages(view.mailbox_id)
    doomed = [m.uid for m in messages if "\\Deleted" in m.flags and (only is None or m.uid in only)]
    if not doomed:
        return []
    return await session.store.expunge(view.mailbox_id, doomed)


async def close(session: ImapSession, command: p.Close) -> Done:
    view = _view(session)
    if not view.read_only:
        await _expunge_deleted(session, None)  # silently: no EXPUNGE responses (RFC 9051 6.4.1)
    session.close_view()
    return Done("CLOSE completed")


async def unselect(session: ImapSession, command: p.Unselect) -> Done:
    session.close_view()
    return Done("UNSELECT completed")


async def expunge(session: ImapSession, command: p.Expunge | p.UidExpunge) -> Done:
    only = None
    if isinstance(command, p.UidExpunge):
        only = set(session.resolve(command.sequence, uid=True))
    removed = await _expunge_deleted(session, only)
    view = _view(session)
    view.mark_gone(removed)
    view.dirty = True
    return Done(f"{command.name} completed")


# -------------------------------------------------------------------------------------------- FETCH

_SEEN_ITEMS = ("RFC822", "RFC822.TEXT")
_PARSED_ITEMS = ("ENVELOPE", "BODY", "BODYSTRUCTURE")
_CONTENT_ITEMS = ("RFC822", "RFC822.HEADER", "RFC822.TEXT")


def _spec(section: p.Section) -> f.SectionSpec:
    kind: Any = section.text.value if section.text is not None else None
    return f.SectionSpec(section.part, kind, section.fields)


def _sets_seen(item: p.FetchItem) -> bool:
    if isinstance(item, p.FetchBody | p.FetchBinary):
        return not item.peek
    return isinstance(item, p.FetchAttribute) and item.name in _SEEN_ITEMS


async def fetch(session: ImapSession, command: p.Fetch) -> Done:
    if command.changed_since is not None:
        raise bad("CHANGEDSINCE needs CONDSTORE, which is not supported")
    for item in command.items:
        if isinstance(item, p.FetchAttribute) and item.name == "MODSEQ":
            raise bad("MODSEQ needs CONDSTORE, which is not supported")
    view = _view(session)
    uids = [u for u in session.resolve(command.sequence, uid=command.uid) if u not in view.gone]
    store = session.store
    items = list(command.items)
    if not view.read_only and any(_sets_seen(item) for item in items):
        unseen = [u for u in uids if "\\Seen" not in view.messages[u].flags]
        if unseen:
            await store.store_flags(view.mailbox_id, unseen, ["\\Seen"], "add")
            await session.read_back(view)
            uids = [u for u in uids if u not in view.gone]
            if not any(isinstance(i, p.FetchAttribute) and i.name == "FLAGS" for i in items):
                items.append(p.FetchAttribute("FLAGS"))
    needs_parse = any(
        not isinstance(i, p.FetchAttribute) or i.name in _PARSED_ITEMS + _CONTENT_ITEMS for i in items
    )
    needs_content = any(
        isinstance(i, p.FetchBody | p.FetchBinary | p.FetchBinarySize)
        or (isinstance(i, p.FetchAttribute) and i.name in _CONTENT_ITEMS)
        for i in items
    )
    for uid in uids:
        info = view.messages[uid]
        seq = view.seq_of(uid)
        parts = await _render(session, info, items, command.uid, needs_parse, needs_content)
        if _has_flags(items):
            view.flag_updates.discard(uid)  # the client has just been told
        session.untagged(f"{seq} FETCH (".encode() + b" ".join(parts) + b")")
    return Done(f"{command.name} completed")


def _has_flags(items: list[p.FetchItem]) -> bool:
    return any(isinstance(i, p.FetchAttribute) and i.name == "FLAGS" for i in items)


async def _render(
    session: ImapSession,
    info: MessageInfo,
    items: list[p.FetchItem],
    uid_command: bool,
    needs_parse: bool,
    needs_content: bool,
) -> list[bytes]:
    view = _view(session)
    utf8 = session.utf8
    parsed = await session.store.get_parsed(info.content_id) if needs_parse else None
    content = await session.store.read_content(info.content_id) if needs_content else b""
    out: list[bytes] = []
    if uid_command and not any(isinstance(i, p.FetchAttribute) and i.name == "UID" for i in items):
        out.append(b"UID %d" % info.uid)
    for item in items:
        if isinstance(item, p.FetchAttribute):
            name = item.name
            if name == "UID":
                out.append(b"UID %d" % info.uid)
            elif name == "FLAGS":
                flags = " ".join(view.flags_of(info.uid, with_recent=not session.rev2))
                out.append(f"FLAGS ({flags})".encode())
            elif name == "RFC822.SIZE":
                out.append(b"RFC822.SIZE %d" % info.size)
            elif name == "INTERNALDATE":
                out.append(b"INTERNALDATE " + wire.date_time(info.internaldate))
            elif name == "ENVELOPE":
                assert parsed is not None
                out.append(b"ENVELOPE " + f.envelope(parsed.envelope, utf8=utf8))
            elif name in ("BODY", "BODYSTRUCTURE"):
                assert parsed is not None
                extended = name == "BODYSTRUCTURE"
                out.append(name.encode() + b" " + f.bodystructure(parsed.body, extended=extended, utf8=utf8))
            elif name == "RFC822":
                out.append(b"RFC822 " + wire.literal(content))
            elif name in ("RFC822.HEADER", "RFC822.TEXT"):
                assert parsed is not None
                spec = f.SectionSpec((), "HEADER" if name == "RFC822.HEADER" else "TEXT")
                out.append(name.encode() + b" " + wire.literal(f.section_bytes(content, parsed, spec)))
        elif isinstance(item, p.FetchBody):
            assert parsed is not None
            spec = _spec(item.section)
            partial = (item.partial.origin, item.partial.length) if item.partial is not None else None
            data = f.section_bytes(content, parsed, spec, partial)
            label = b"BODY[" + f.section_label(spec) + b"]"
            if item.partial is not None:
                label += b"<%d>" % item.partial.origin
            out.append(label + b" " + wire.literal(data))
        elif isinstance(item, p.FetchBinary):
            assert parsed is not None
            partial = (item.partial.origin, item.partial.length) if item.partial is not None else None
            decoded = f.binary_section(content, parsed, item.part, partial)
            if decoded is None:
                raise _unknown_cte(item.part)
            label = b"BINARY[" + _part_label(item.part) + b"]"
            if item.partial is not None:
                label += b"<%d>" % item.partial.origin
            # RFC 3516 4.2: literal8 only when the decoded data needs it (NUL); a plain literal otherwise.
            out.append(label + b" " + wire.literal(decoded, binary=b"\x00" in decoded))
        elif isinstance(item, p.FetchBinarySize):
            assert parsed is not None
            size = f.binary_size(content, parsed, item.part)
            if size is None:
                raise _unknown_cte(item.part)
            out.append(b"BINARY.SIZE[" + _part_label(item.part) + b"] %d" % size)
    return out


def _part_label(part: tuple[int, ...]) -> bytes:
    return ".".join(str(n) for n in part).encode()


def _unknown_cte(part: tuple[int, ...]) -> Exception:
    """RFC 3516 4.3 / RFC 9051 7.1: a transfer encoding the server cannot decode."""
    return no(f"Unknown Content-Transfer-Encoding in part {_part_label(part).decode()}", "UNKNOWN-CTE")


# -------------------------------------------------------------------------------------------- STORE


async def store(session: ImapSession, command: p.Store) -> Done:
    if command.unchanged_since is not None:
        raise bad("UNCHANGEDSINCE needs CONDSTORE, which is not supported")
    view = _writable(session)
    uids = [u for u in session.resolve(command.sequence, uid=command.uid) if u not in view.gone]
    mode = _STORE_MODES[command.mode]
    if uids:
        await session.store.store_flags(view.mailbox_id, uids, _storable(command.flags), mode)
        await session.read_back(view)
    session.announce_keywords(view, uids)
    for uid in uids:
        if uid in view.gone:
            continue
        view.flag_updates.discard(uid)
        if command.silent:
            continue
        flags = " ".join(view.flags_of(uid, with_recent=not session.rev2))
        uid_part = f" UID {uid}" if command.uid else ""
        session.untagged(f"{view.seq_of(uid)} FETCH (FLAGS ({flags}){uid_part})")
    return Done(f"{command.name} completed")


_STORE_MODES = {p.StoreMode.ADD: "add", p.StoreMode.REMOVE: "remove", p.StoreMode.REPLACE: "replace"}


# ---------------------------------------------------------------------------------------- COPY MOVE


async def copy(session: ImapSession, command: p.Copy | p.Move) -> Done:
    move = isinstance(command, p.Move)
    view = _writable(session) if move else _view(session)
    assert session.account is not None
    uids = [u for u in session.resolve(command.sequence, uid=command.uid) if u not in view.gone]
    target = await session.store.get_mailbox(session.account.id, command.mailbox.name)
    if target is None:
        raise no("Mailbox does not exist", "TRYCREATE")
    if not uids:
        return Done(f"{command.name} completed, nothing to do")
    pairs = await session.store.copy_messages(view.mailbox_id, uids, target.id, move=move)
    code = None
    if pairs:
        sources = format_sequence_set([s for s, _ in pairs], sort=False)
        targets = format_sequence_set([t for _, t in pairs], sort=False)
        code = f"COPYUID {target.uidvalidity} {sources} {targets}"
    if target.id == view.mailbox_id:
        view.dirty = True
    if not move:
        return Done(f"{command.name} completed", code)
    if code is not None:
        session.untagged(f"OK [{code}] Moved")
    view.mark_gone(s for s, _ in pairs)
    for seq in view.take_expunges():
        session.untagged(f"{seq} EXPUNGE")
    return Done(f"{command.name} completed")


# ------------------------------------------------------------------------------------------- SEARCH


async def search(session: ImapSession, command: p.Search) -> Done:
    """SEARCH / UID SEARCH (RFC 9051 6.4.4), answered from the store's index (`postoffice.imap.search`);
    with RETURN (...) the answer is ESEARCH (RFC 4731). Expunges are not sent during SEARCH (7.5.1)."""
    view = _view(session)
    save = command.return_options is not None and "SAVE" in {o.upper() for o in command.return_options}
    saved = session.saved_uids()  # `$` in this command is the result saved before it (RFC 5182 2.1)
    if save:
        session.saved_result = []  # RFC 5182 2.1: a SEARCH ... SAVE that fails leaves the empty result
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
        raise bad(str(exc)) from None
    uids = await session.store.search(view.mailbox_id, criteria)
    live = [u for u in uids if u not in view.gone]
    numbers = search_mod.result_numbers(live, view.uids, uid=command.uid)
    return_options = command.return_options
    if return_options is None and session.rev2:
        return_options = ("ALL",)  # RFC 9051 6.4.4: IMAP4rev2 answers SEARCH with ESEARCH, never SEARCH
    if return_options is None:
        session.send(search_mod.search_response(numbers))
    else:
        session.send(search_mod.esearch_response(command.tag, numbers, return_options, command.uid))
    if save:
        in_view = search_mod.result_numbers(live, view.uids, uid=True)
        session.saved_result = search_mod.saved_result(in_view, return_options or ())
    return Done(f"{command.name} completed")


Handler = Callable[["ImapSession", Any], Awaitable[Done]]


HANDLERS: dict[type[p.Command], Handler] = {
    p.Append: append,
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
