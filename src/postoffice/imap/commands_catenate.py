"""IMAP CATENATE (RFC 4469): APPEND (and REPLACE, RFC 8508) of messages put together from TEXT literals and
the octets of messages, or parts of messages, that URLs name; docs/decisions/0071.

What it implements
- The extended append-data `CATENATE (TEXT {n} URL "url" ...)` (sections 3 and 5), with RFC 6855's
  `UTF8 (~{n})` parts, in any message of a MULTIAPPEND (RFC 3502) and as REPLACE's message (RFC 8508's
  append-message is APPEND's). The parser streams each TEXT literal (`CatenateTextStart`, then `AppendData`);
  the protocol core checks it as any APPEND or REPLACE literal (`ImapProtocol._open_append`), and
  `text_start` makes CATENATE's own checks and spools it on its own; when the command line ends, `assemble`
  puts each catenated message together in order in a new spool: the TEXT spools copied, each URL's octets
  read from the store in chunks (`urlauth.chunks`). The messages are then stored as any APPEND's: all or
  none, in one transaction. The URLs right before a TEXT literal are checked before it is read
  (`CatenateTextStart.urls`), so a client that waits for "+" is told BADURL without sending it; the others
  when the command is complete.
- URLs: what `urlauth.resolve` finds: the session's own messages (relative URLs against the base of section
  3: "imap://user@host/" or, selected, "imap://user@host/<mailbox>"; absolute-path; this server's
  absolute URLs), read with the "r" right (RFC 4314), and URLAUTH-authorized URLs of any account, valid for
  this session (RFC 4467; RFC 5550 section 5 asks CATENATE to take them). A UIDVALIDITY in a URL must be
  the mailbox's. A URL that refers to a message appended earlier in the same MULTIAPPEND names nothing yet
  (they are stored together at the end): BADURL.
- Failures (section 4): the first URL that names nothing usable: NO [BADURL url] with the URL as the client
  wrote it (url-resp-text: bare, errata 2002 and 4046; "]", space, controls and 8-bit percent-encoded); a
  message over APPENDLIMIT (section 4.2; RFC 7889): NO [TOOBIG], as soon as its TEXT literals (before the
  literal that would pass it is read) or the URLs read so far pass it; a message that comes out empty: NO,
  as a zero-length literal (RFC 3502 6.3.11). Nothing is appended then, no message of the command.
- The octets are copied as they are (section 3: no conversion, no check that the result is a message);
  reading a URL sets no flag (section 3: not \\Seen) and does not change the selected mailbox.

Memory: TEXT literals are spooled as APPEND's literals are (memory up to the command's share, then files);
the messages put together share ASSEMBLY_MEMORY in memory, then go to files; a URL's octets pass in chunks
of `urlauth.CHUNK`. Nothing holds a whole message.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO

from postoffice.imap import acl, urlauth
from postoffice.imap import parser as p
from postoffice.imap.imapurl import resp_text
from postoffice.imap.state import (
    AppendInProgress,
    AppendSpool,
    CommandFailed,
    SessionState,
    bad,
    no,
)
from postoffice.message import PARSE_INLINE_LIMIT

#: The catenated messages of one command share this much memory; past it they are put together in files.
ASSEMBLY_MEMORY = 1024 * 1024

_BADURL_TEXT = "The URL names no message this session may read"


@dataclass
class TextSpool(AppendSpool):
    """A TEXT literal of a catenated message, spooled; `index`: the message's place in the command."""

    index: int = 0


async def text_start(
    session: SessionState,
    event: p.CatenateTextStart,
    pending: AppendInProgress,
    new_spool: Callable[[AppendInProgress | None], IO[bytes]],
) -> TextSpool:
    """A TEXT literal begins, in the command's `pending` append: the protocol core has made the checks of
    every APPEND and REPLACE literal (`ImapProtocol._open_append`: state, the target mailbox and its "i"
    right, REPLACE's message); here CATENATE's own, before the literal is read, and its spool.
    CommandFailed when it is refused (the literal is not read then)."""
    # RFC 4469 4.1: a URL before this literal that names nothing is BADURL now, before the literal is read
    for url in event.urls:
        if await urlauth.resolve(session, url) is None:
            raise no(_BADURL_TEXT, f"BADURL {resp_text(url)}")
    # APPENDLIMIT (RFC 7889; RFC 4469 4.2): the TEXT literals of one message together, before this one is read
    octets = event.text.size
    for item in reversed(pending.messages):
        if not isinstance(item, TextSpool) or item.index != event.index:
            break
        octets += item.message.size
    limit = session.settings.append_limit
    if octets > limit:
        raise no(f"The message would be larger than the APPENDLIMIT of {limit} octets", "TOOBIG")
    return TextSpool(event.message, new_spool(pending), index=event.index)


def _too_big(limit: int) -> CommandFailed:
    return no(f"The catenated message would be larger than the APPENDLIMIT of {limit} octets", "TOOBIG")


async def _copy(source: IO[bytes], target: IO[bytes], size: int) -> None:
    source.flush()
    source.seek(0)
    if size <= PARSE_INLINE_LIMIT:
        shutil.copyfileobj(source, target)
    else:  # a TEXT spool this large is a file: its reads and writes stay off the event loop
        await asyncio.to_thread(shutil.copyfileobj, source, target, urlauth.CHUNK)


async def assemble(
    session: SessionState,
    pending: AppendInProgress | None,
    tag: str,
    mailbox: p.MailboxName | None,
    messages: tuple[p.AppendMessage, ...],
    *,
    replacing: bool,
) -> AppendInProgress:
    """The messages of an APPEND (or REPLACE) with CATENATE, each catenated one put together (see the
    module docstring): one spool per message, in order, as `_store_spooled` stores them. `pending` is what
    the command's literals left (None: it had none); it is closed here, and so is everything on failure."""
    created: list[IO[bytes]] = []
    try:
        if pending is not None:
            target = pending.mailbox
        elif mailbox is None or not mailbox.valid:
            raise no("Mailbox does not exist (the name is not valid modified UTF-7)", "NONEXISTENT")
        else:
            target = await acl.append_target(session, mailbox.name, replacing=replacing)
        entries = iter(pending.messages if pending is not None else ())
        assembled: list[AppendSpool] = []
        budget = ASSEMBLY_MEMORY
        for index, message in enumerate(messages):
            if message.catenate is None:
                item = next(entries, None)
                if item is None or isinstance(item, TextSpool):
                    raise bad("APPEND message data missing")
                assembled.append(item)
                continue
            # closed by the AppendInProgress returned, or below on failure
            spool: IO[bytes] = tempfile.SpooledTemporaryFile(  # noqa: SIM115
                max_size=max(budget, 1),
                dir=str(session.settings.spool_dir) if session.settings.spool_dir is not None else None,
            )
            created.append(spool)
            octets = await _catenate(session, message.catenate, index, entries, spool)
            if octets == 0:
                raise no("An empty message cannot be appended; the APPEND is cancelled")
            budget -= octets
            assembled.append(AppendSpool(message, spool, octets))
        if next(entries, None) is not None:
            raise bad("APPEND message data does not match the command")
    except BaseException:
        for made in created:
            made.close()
        if pending is not None:
            pending.close()
        raise
    # the TEXT spools were copied and closed; the literal messages' spools go on in the result
    return AppendInProgress(tag, target, assembled)


async def _catenate(
    session: SessionState,
    parts: tuple[p.CatenatePart, ...],
    index: int,
    entries: Iterator[AppendSpool],
    spool: IO[bytes],
) -> int:
    """Message `index` put together in `spool` from its parts, in order; its size."""
    limit = session.settings.append_limit
    store = session.store
    octets = 0
    for part in parts:
        if isinstance(part, p.CatenateText):
            item = next(entries, None)
            if not isinstance(item, TextSpool) or item.index != index:
                raise bad("CATENATE TEXT data missing")
            octets += item.received
            if octets > limit:  # pragma: no cover - `text_start` refused it before it was read
                raise _too_big(limit)
            await _copy(item.spool, spool, item.received)
            item.spool.close()
            continue
        found = await urlauth.resolve(session, part.url)
        if found is None:
            raise no(_BADURL_TEXT, f"BADURL {resp_text(part.url)}")
        octets += await urlauth.size(store, found)
        if octets > limit:
            raise _too_big(limit)
        async for chunk in urlauth.chunks(store, found):
            spool.write(chunk)
    return octets
