"""IMAP URLAUTH (RFC 4467) and URLAUTH=BINARY (RFC 5524): GENURLAUTH, RESETKEY, URLFETCH; decision 0071.
Keys, tokens and what a URL names are `postoffice.imap.urlauth`'s.

What it implements
- GENURLAUTH (section 7): for each (rump URL, mechanism) an authorized URL, all in one GENURLAUTH response,
  or none. Each rump is checked as section 7 requires, and any failure is BAD: an absolute URL of this
  server whose user is the session's own account (the key table's owner; "iuserauth is mandatory"), naming
  a message or a part of one (section 3: never a server, a mailbox or a search) of one of the account's own
  mailboxes (UIDVALIDITY, when given, the mailbox's), with ";URLAUTH=access" and no token yet, ;EXPIRE= (if
  any) still ahead. The message and the section must exist (section 7 (4), MAY). A mechanism other than
  INTERNAL is NO (section 7: "can't generate a URLAUTH"). The rump is kept as the client wrote it: the token
  is over those octets. Access identifiers: all four are made ("submit+" for a future BURL, RFC 4468; this
  server's URLFETCH never honours one, see `urlauth`).
- RESETKEY (section 7): without a mailbox every key of the account goes; with one, that mailbox gets a new
  key (mechanisms: INTERNAL only, else NO, before anything changes), and the tagged OK carries
  [URLMECH INTERNAL] (section 8: the tagged response may carry it). Every other session of the account with
  that mailbox selected (every mailbox, for RESETKEY without one) gets "* OK [URLMECH INTERNAL]" with its
  next untagged updates (section 7's MUST; `SessionState.notices`). SELECT and EXAMINE say it too
  (`selected`, section 8). URLMECH goes over TLS only (section 8's configuration "that will not return a
  URLMECH ... unless" the session is protected from snooping). The mailbox must be the account's own: NO
  [NONEXISTENT] otherwise.
- URLFETCH (section 7, RFC 5524 section 3): one "* URLFETCH url data" response per URL, in order, the URL as
  the client wrote it. NIL for every URL that is not valid (section 6), with no reason given: the same for
  a mailbox that does not exist as for a wrong token. The data is the section's octets as stored, streamed
  from the store in chunks (a literal; NUL, which a literal cannot carry, goes as 0x80, as FETCH does). The
  command never answers NO for a URL (section 7: NO is a server failure).
- RFC 5524: `(url param ...)` with BODYPARTSTRUCTURE, BINARY, BODY, each in its own parenthesis in the
  order asked: BODYPARTSTRUCTURE the part's body structure (RFC 5259's, as FETCH BODYSTRUCTURE; with BINARY
  it describes the decoded data: encoding "BINARY", its size; a URL whose section is not a MIME part, e.g.
  HEADER, has none: the URL is NIL then); BINARY the part without its transfer encoding (literal8 when it
  has NUL; "(BINARY NIL)" for an encoding this server cannot decode, RFC 5524 section 5); BODY as the
  plain form. `(url)` alone is the plain form (section 3). Duplicates and BINARY with BODY are BAD (the
  parser's).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from weakref import WeakSet

from postoffice.imap import acl, urlauth, wire
from postoffice.imap import fetch as f
from postoffice.imap import parser as p
from postoffice.imap.imapurl import ImapUrl, UrlError, parse_url
from postoffice.imap.state import FLUSH_THRESHOLD, Done, SessionState, State, bad, no
from postoffice.store import MailboxInfo

#: The response code that names the mechanisms (section 8).
URLMECH = f"URLMECH {urlauth.MECHANISM}"

#: Sessions that selected a mailbox, by (store, account id): the ones RESETKEY tells (section 7). This process
#: serves every connection (decision 0001); a session that went leaves the set with its last reference.
_SELECTED: dict[tuple[int, int], WeakSet[SessionState]] = {}


def _urlmech(session: SessionState) -> bool:
    """Section 8: a server "MUST implement a configuration that will not return a URLMECH status response
    code unless some mechanism is provided that protects the session from snooping": this one says URLMECH
    over TLS only (INTERNAL carries no key material, but a mechanism added later might)."""
    return session.transport.tls_active


def selected(session: SessionState) -> None:
    """SELECT and EXAMINE say which URLAUTH mechanisms the mailbox has (section 8: URLMECH in an untagged OK),
    and the session is one RESETKEY may have to tell."""
    account = session.logged_in_account
    _SELECTED.setdefault((id(session.store), account.id), WeakSet()).add(session)
    session.notices[:] = [n for n in session.notices if URLMECH not in n]  # for a mailbox no longer selected
    if _urlmech(session):
        session.untagged(f"OK [{URLMECH}] URLAUTH mechanisms")


def _tell_sessions(session: SessionState, mailbox_id: int | None) -> None:
    """Every session of the account with the mailbox selected (any mailbox, for all keys) hears of the new
    key(s) with its next untagged updates (section 7); this one too, unless its tagged OK says it."""
    account = session.logged_in_account
    for other in list(_SELECTED.get((id(session.store), account.id), ())):
        view = other.view
        if view is None or other.state is not State.SELECTED or not _urlmech(other):
            continue
        if other is session:
            if mailbox_id is None:
                session.untagged(f"OK [{URLMECH}] URLAUTH keys reset")
        elif mailbox_id is None or view.mailbox_id == mailbox_id:
            other.notices.append(f"OK [{URLMECH}] URLAUTH key reset")
            other.wake()


# -------------------------------------------------------------------------------------------- GENURLAUTH


async def _rump(session: SessionState, text: str) -> str:
    """The checks of section 7 for one rump URL (BAD when one fails); the rump as written."""
    try:
        url = parse_url(text)
    except UrlError as exc:
        raise bad(f"Invalid URL: {exc}") from None
    if not url.urlauth or url.token is not None or url.rump != text:
        raise bad("GENURLAUTH takes a URL that ends with ;URLAUTH=<access>, without a mechanism and token")
    if not url.server or url.user is None:
        raise bad("A URLAUTH URL is absolute and names its user: imap://user@host/... (RFC 4467 section 7)")
    if not urlauth.same_server(url, session.settings.hostname):
        raise bad(f"The URL names another server (this one is {session.settings.hostname})")
    store = session.store
    account = session.logged_in_account
    named = await store.get_account(url.user)
    if named is None or named.id != account.id:
        raise bad("A URLAUTH URL's user must be the logged-in user (the owner of the key)")
    if url.expire is not None and url.expire <= urlauth.now():
        raise bad("The URL's EXPIRE time has passed")
    mailbox = await _own_mailbox(session, url)
    if mailbox is None:
        raise bad("The URL names no mailbox of this account")
    if url.uidvalidity is not None and url.uidvalidity != mailbox.uidvalidity:
        raise bad("The URL's UIDVALIDITY is not the mailbox's")
    if await urlauth.own(session, _as_own(url)) is None:
        raise bad("The URL names no message (or no such part of one)")
    key = await urlauth.mailbox_key(store, mailbox, create=True)
    if key is None:  # pragma: no cover - made just now
        raise no("No key could be made for the mailbox")
    return f"{text}:{urlauth.MECHANISM}:{urlauth.token(key, text)}"


async def _own_mailbox(session: SessionState, url: ImapUrl) -> MailboxInfo | None:
    """One of the account's own mailboxes (not one shared with it: a URLAUTH is checked with its user's
    access alone, RFC 4467 section 7)."""
    if url.mailbox is None or acl.in_namespace(url.mailbox):
        return None
    return await session.store.get_mailbox(session.logged_in_account.id, url.mailbox)


def _as_own(url: ImapUrl) -> ImapUrl:
    """The URL without its URLAUTH part, as the session's own (for the check that its message exists)."""
    return ImapUrl(
        server=True,
        host=url.host,
        absolute=True,
        mailbox=url.mailbox,
        uidvalidity=url.uidvalidity,
        uid=url.uid,
        section=url.section,
        partial=url.partial,
    )


async def genurlauth(session: SessionState, command: p.GenUrlAuth) -> Done:
    for _, mechanism in command.urls:
        if mechanism != urlauth.MECHANISM:
            raise no(f"Unsupported URLAUTH mechanism {mechanism} (this server has INTERNAL)")
    urls = [await _rump(session, text) for text, _ in command.urls]
    session.untagged(b"GENURLAUTH " + b" ".join(wire.quoted(url) for url in urls))
    return Done("GENURLAUTH completed")


# ---------------------------------------------------------------------------------------------- RESETKEY


async def resetkey(session: SessionState, command: p.ResetKey) -> Done:
    for mechanism in command.mechanisms:
        if mechanism != urlauth.MECHANISM:
            raise no(f"Unsupported URLAUTH mechanism {mechanism} (this server has INTERNAL)")
    account = session.logged_in_account
    if command.mailbox is None:
        await urlauth.reset_all(session.store, account.id)
        _tell_sessions(session, None)
        return Done("All URLAUTH keys removed")
    mailbox = None
    if command.mailbox.valid and not acl.in_namespace(command.mailbox.name):
        mailbox = await session.store.get_mailbox(account.id, command.mailbox.name)
    if mailbox is None:
        raise no("Mailbox does not exist (or is not this account's)", "NONEXISTENT")
    await urlauth.reset_mailbox(session.store, mailbox)
    _tell_sessions(session, mailbox.id)
    return Done("URLAUTH key reset", URLMECH if _urlmech(session) else None)


# ---------------------------------------------------------------------------------------------- URLFETCH


async def urlfetch(session: SessionState, command: p.UrlFetch) -> Done:
    store = session.store
    account = session.logged_in_account
    for item in command.urls:
        found = None
        try:
            url = parse_url(item.url)
        except UrlError:
            url = None
        if url is not None and url.token is not None:
            found = await urlauth.authorized(store, session.settings.hostname, url, account=account)
        head = b"* URLFETCH " + wire.quoted(item.url, utf8=session.utf8) + b" "
        if found is not None and item.params and "BODYPARTSTRUCTURE" in item.params and not found.is_part:
            found = None  # RFC 5524 3.2: a body structure is a MIME part's; HEADER, TEXT, MIME have none
        if found is None:
            session.send(head + b"NIL\r\n")
        elif not item.params:
            session.send(head)
            await _stream(session, found)
            session.send(b"\r\n")
        else:
            await _extended(session, head, found, item.params)
        if session.pending_output() >= FLUSH_THRESHOLD:
            await session.flush()
    return Done("URLFETCH completed")


async def _stream(session: SessionState, found: urlauth.Found) -> None:
    """The section as a literal, read in chunks and written whenever enough is queued."""
    store = session.store
    session.send(b"{%d}\r\n" % await urlauth.size(store, found))
    async for chunk in urlauth.chunks(store, found):
        # a plain literal cannot carry NUL: 0x80 instead, same length (as `wire.literal` and FETCH)
        session.send(chunk.replace(b"\x00", b"\x80") if b"\x00" in chunk else chunk)
        if session.pending_output() >= FLUSH_THRESHOLD:
            await session.flush()


async def _extended(
    session: SessionState, head: bytes, found: urlauth.Found, params: tuple[str, ...]
) -> None:
    """RFC 5524 section 3.2: the URL, then one "(item value)" per parameter, in the order asked."""
    store = session.store
    data = await urlauth.decoded(store, found) if "BINARY" in params else None
    session.send(head.rstrip(b" "))
    for param in params:
        session.send(b" (" + param.encode() + b" ")
        if param == "BODYPARTSTRUCTURE":
            part = found.body_part()
            if part is None:  # pragma: no cover - such URLs are NIL (urlfetch)
                session.send(wire.NIL)
            else:
                if data is not None:
                    part = urlauth.decoded_structure(part, data)
                session.send(f.bodystructure(part, extended=True, utf8=session.utf8))
        elif param == "BINARY":
            session.send(wire.NIL if data is None else wire.literal(data, binary=b"\x00" in data))
        else:  # BODY: as the plain form
            await _stream(session, found)
        session.send(b")")
        if session.pending_output() >= FLUSH_THRESHOLD:
            await session.flush()
    session.send(b"\r\n")


Handler = Callable[[SessionState, Any], Awaitable[Done]]

HANDLERS: dict[type[p.Command], Handler] = {
    p.GenUrlAuth: genurlauth,
    p.ResetKey: resetkey,
    p.UrlFetch: urlfetch,
}
