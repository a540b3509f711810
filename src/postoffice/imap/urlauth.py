"""What an IMAP URL names on this server, and URLAUTH (RFC 4467): the INTERNAL mechanism's keys and tokens,
the validation of URLAUTH-authorized URLs, and the message (or part of one) a URL names, read in chunks.
Used by GENURLAUTH, RESETKEY and URLFETCH (`postoffice.imap.commands_urlauth`) and by CATENATE
(`postoffice.imap.commands_catenate`); docs/decisions/0071.

Keys (RFC 4467 sections 2.2, 2.4.1)
- Each account has one secret of 32 random octets (`secrets`), kept hex in the account's settings
  (`MailStore.account_settings`, SECRET_SETTING), made the first time the account needs one (GENURLAUTH).
  A mailbox's access key is HMAC-SHA256(secret, "urlauth-mailbox-key", mailbox id, UIDVALIDITY, the
  mailbox's nonce): RESETKEY of a mailbox gives it a new nonce (NONCE_SETTING + its id), RESETKEY of all
  removes the secret. So each mailbox has its own key, as section 2.2 asks, made on demand; a mailbox deleted
  and made again, or with a new UIDVALIDITY, has a new one (its old URLs stop working); no table of keys
  grows with the mailboxes.
- The secret is made under a lock per account (this process serves every connection, decision 0001), so
  two sessions never make two secrets and sign with the one that lost.
- Token (section 2.4.1): "01", the algorithm's version (its SHOULD: a means to tell algorithms apart), and
  the hex HMAC-SHA256 of the rump URL as written, with the mailbox's key: 66 hex digits. Compared in
  constant time (`hmac.compare_digest`), in any case of the hex digits.

Validation of a URLAUTH-authorized URL (RFC 4467 section 6; `authorized`)
- It must be an absolute URL of this server (the host is `[imap] hostname`, any port) with a user, a mailbox,
  a UID and ";URLAUTH=access:INTERNAL:token"; ";EXPIRE=" not passed; the access identifier must allow the
  session: "anonymous" any session, "authuser" any logged-in one, "user+name" a session logged in as that
  account, "submit+name" only a message submission server acting for that account (none speaks IMAP
  here: SMTP BURL, RFC 4468, would call `authorized` with `submitter`). Then, with the access of the URL's
  user (the key's owner): the mailbox is that account's own mailbox of that name; its UIDVALIDITY, when the
  URL gives one; the token; the message and the section.
- Whatever fails, the answer is the same (None: URLFETCH's NIL, CATENATE's BADURL), and a URL whose user or
  mailbox does not exist, or that has no key yet, has its token computed with a random key all the same
  (section 6: no timing tells which mailbox names exist).

The URLs of the session's own account (CATENATE, RFC 4469 section 3; `own`)
- Relative URLs take the base "imap://user@host/" in the authenticated state and
  "imap://user@host/<selected mailbox>" in the selected state: `;UID=n...` is a message of the selected
  mailbox, `Name/;UID=n...` is resolved as RFC 3986 section 5.2.3 merges paths (the selected mailbox's
  parent, or the top). An absolute-path URL names a mailbox from the top. An `imap://` URL must be this
  server's, and its user (if any) the session's. Mailbox names go through `postoffice.imap.acl` (the
  session's mailboxes and those shared with it, with the "r" right: RFC 4314 section 4). Any other URL:
  None.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import hmac
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

from postoffice.imap import acl
from postoffice.imap import fetch as f
from postoffice.imap import parser as p
from postoffice.imap.access import MailAccess
from postoffice.imap.imapurl import ImapUrl, UrlError, parse_url
from postoffice.imap.state import CommandFailed, SessionState
from postoffice.message import ParsedMessage
from postoffice.message.model import BodyPart
from postoffice.store import Account, MailboxInfo

#: The account setting that holds the secret the mailbox keys are made from (hex).
SECRET_SETTING = "imap.urlauth.secret"  # noqa: S105 - a setting's name
#: The account setting (+ mailbox id) that holds a mailbox's nonce (hex; none until its first RESETKEY).
NONCE_SETTING = "imap.urlauth.mailbox."
#: The one mechanism (RFC 4467 section 2.4.1: INTERNAL is required), and the token's version prefix.
MECHANISM = "INTERNAL"
TOKEN_VERSION = "01"  # noqa: S105 - a format version
#: Message octets are read from the store in chunks of this size (CATENATE, URLFETCH).
CHUNK = 256 * 1024

_LOCKS: dict[tuple[int, int], asyncio.Lock] = {}


def now() -> datetime.datetime:
    """What ;EXPIRE= is compared with (RFC 4467 section 3: the URL is invalid after it)."""
    return datetime.datetime.now(datetime.UTC)


# ------------------------------------------------------------------------------------------------- keys


async def _setting(store: MailAccess, account_id: int, key: str) -> str | None:
    # a prefix read: exactly `key` among the settings that start with it
    return (await store.account_settings(account_id, key)).get(key)


async def _secret(store: MailAccess, account_id: int, *, create: bool) -> bytes | None:
    kept = await _setting(store, account_id, SECRET_SETTING)
    if kept is None and create:
        async with _LOCKS.setdefault((id(store), account_id), asyncio.Lock()):
            kept = await _setting(store, account_id, SECRET_SETTING)
            if kept is None:
                kept = secrets.token_bytes(32).hex()
                await store.set_account_setting(account_id, SECRET_SETTING, kept)
    try:
        return bytes.fromhex(kept) if kept else None
    except ValueError:
        return None


async def mailbox_key(store: MailAccess, mailbox: MailboxInfo, *, create: bool) -> bytes | None:
    """The access key of `mailbox` (its owner's), made when `create` and there is none yet."""
    secret = await _secret(store, mailbox.account_id, create=create)
    if secret is None:
        return None
    nonce = await _setting(store, mailbox.account_id, f"{NONCE_SETTING}{mailbox.id}") or ""
    data = f"urlauth-mailbox-key\0{mailbox.id}\0{mailbox.uidvalidity}\0{nonce}".encode()
    return hmac.new(secret, data, hashlib.sha256).digest()


def token(key: bytes, rump: str) -> str:
    """The INTERNAL mechanism's authorization token of a rump URL (section 2.4.1): version + HMAC-SHA256."""
    return TOKEN_VERSION + hmac.new(key, rump.encode("utf-8"), hashlib.sha256).hexdigest()


async def reset_mailbox(store: MailAccess, mailbox: MailboxInfo) -> None:
    """RESETKEY mailbox: a new key for it; the URLs made with the old one fail from now on."""
    await store.set_account_setting(mailbox.account_id, f"{NONCE_SETTING}{mailbox.id}", secrets.token_hex(16))


async def reset_all(store: MailAccess, account_id: int) -> None:
    """RESETKEY: every key of the account goes (a new secret is made when one is needed again)."""
    async with _LOCKS.setdefault((id(store), account_id), asyncio.Lock()):
        await store.set_account_setting(account_id, SECRET_SETTING, None)


# --------------------------------------------------------------------------------------- what a URL names


@dataclass(frozen=True)
class Found:
    """The message, or part of one, that a URL names: its content, the section (RFC 5092 ;SECTION=, a
    section-spec), the partial range (;PARTIAL=), and where the section is in the stored message, found once
    when the URL is resolved (`_message`) and used by every read of it."""

    content_id: int
    parsed: ParsedMessage
    section: p.Section
    partial: tuple[int, int | None] | None
    location: f.SectionLocation
    #: The MIME part (the message's top entity for a URL without a section); None for HEADER, TEXT, ...
    part: BodyPart | None

    @property
    def is_part(self) -> bool:
        """A MIME part (or the whole message): what BINARY and BODYPARTSTRUCTURE apply to (RFC 5524)."""
        return self.section.text is None

    def body_part(self) -> BodyPart | None:
        return self.part


def same_server(url: ImapUrl, hostname: str) -> bool:
    """An absolute URL's server is this one: its host is the configured host name (any port: 143 and 993
    are the same server)."""
    return url.host is not None and url.host.rstrip(".") == hostname.lower().rstrip(".")


async def _message(store: MailAccess, mailbox: MailboxInfo, url: ImapUrl) -> Found | None:
    """The message (part) `url` names in `mailbox`, which it was found in."""
    if url.uid is None or (url.uidvalidity is not None and url.uidvalidity != mailbox.uidvalidity):
        return None
    infos = await store.get_messages(mailbox.id, [url.uid])
    if not infos:
        return None
    content_id = infos[0].content_id
    parsed = (await store.get_parsed_many([content_id])).get(content_id)
    section = p.parse_section(url.section) if url.section is not None else p.Section()
    if parsed is None or section is None:
        return None
    kind = section.text.value if section.text is not None else None
    spec = f.SectionSpec(section.part, kind, section.fields)  # type: ignore[arg-type]
    location = f.locate_section(parsed, spec)
    if location is None:
        return None  # a part the message does not have (RFC 4469 4.1: "invalid body part")
    part = None
    if section.text is None:  # located above: the part is there
        part = parsed.body if not section.part else f.find_part(parsed.body, section.part)
    return Found(content_id, parsed, section, url.partial, location, part)


async def authorized(
    store: MailAccess,
    hostname: str,
    url: ImapUrl,
    *,
    account: Account | None,
    submitter: Account | None = None,
) -> Found | None:
    """The message part a URLAUTH-authorized URL names, for a session logged in as `account` (None: an
    anonymous one) or for the submission server acting for `submitter`; None when the URL is not valid for
    them (RFC 4467 section 6; see the module docstring)."""
    rump, presented = url.rump, url.token
    if (
        rump is None
        or presented is None
        or not url.server
        or url.user is None
        or url.mailbox is None
        or url.uid is None
        or (url.mechanism or "").upper() != MECHANISM
        or not same_server(url, hostname)
    ):
        return None
    if url.expire is not None and url.expire <= now():
        return None
    if not await _access_allowed(store, url, account, submitter):
        return None
    owner = await store.get_account(url.user)
    mailbox = None
    if owner is not None and not owner.disabled and not acl.in_namespace(url.mailbox):
        mailbox = await store.get_mailbox(owner.id, url.mailbox)
    key = await mailbox_key(store, mailbox, create=False) if mailbox is not None else None
    # section 6: the token is computed (with a random key when there is none) before any answer
    expected = token(key if key is not None else secrets.token_bytes(32), rump)
    valid = hmac.compare_digest(expected, presented.lower())
    if not valid or key is None or mailbox is None:
        return None
    return await _message(store, mailbox, url)


async def _access_allowed(
    store: MailAccess, url: ImapUrl, account: Account | None, submitter: Account | None
) -> bool:
    """RFC 4467 section 3: may a session logged in as `account` (or the submission server acting for
    `submitter`) use a URL with this access identifier?"""
    if url.access == "anonymous":
        return True
    if url.access == "authuser":
        return account is not None
    named = await store.get_account(url.access_user) if url.access_user is not None else None
    if named is None:
        return False
    if url.access == "user":
        return account is not None and account.id == named.id
    return url.access == "submit" and submitter is not None and submitter.id == named.id


async def own(session: SessionState, url: ImapUrl) -> Found | None:
    """The message part a URL without URLAUTH names among the session's mailboxes (CATENATE; see the
    module docstring), None when it names none."""
    account = session.logged_in_account
    store = session.store
    if url.server:
        if not same_server(url, session.settings.hostname):
            return None
        if url.user is not None:
            named = await store.get_account(url.user)
            if named is None or named.id != account.id:
                return None
    if url.mailbox is None:  # relative to the selected mailbox: ";UID=20/;SECTION=1"
        view = session.view
        if view is None:
            return None
        try:
            await acl.require_selected(session, "r")
        except CommandFailed:
            return None
        return await _message(store, view.info, url)
    name = url.mailbox
    view = session.view
    if not url.absolute and view is not None:
        base = view.info.name if session.selected_owner is None else ""
        name = base[: base.rfind("/") + 1] + name  # RFC 3986 5.2.3: the base's path up to its last "/"
    target = await acl.find(session, name)
    if target is None or "r" not in target.rights:
        return None
    return await _message(store, target.info, url)


async def resolve(session: SessionState, text: str) -> Found | None:
    """The message part the URL `text` names for this session (CATENATE): one of its own, or one a URLAUTH
    lets it read; None when it is not a URL or names nothing it may read."""
    try:
        url = parse_url(text)
    except UrlError:
        return None
    if url.urlauth:
        if url.token is None:
            return None  # a rump is not an authorization
        hostname = session.settings.hostname
        return await authorized(session.store, hostname, url, account=session.logged_in_account)
    return await own(session, url)


# ------------------------------------------------------------------------------------------- the octets


def span(found: Found) -> tuple[int, int]:
    """The byte range of the stored message that `found` is (a HEADER.FIELDS section: its header block)."""
    location = found.location
    start, end = location.start, location.end
    if location.fields is None and found.partial is not None:
        origin, length = found.partial
        start = min(start + origin, end)
        if length is not None:
            end = min(end, start + length)
    return start, end


async def chunks(store: MailAccess, found: Found) -> AsyncIterator[bytes]:
    """The section's octets as stored (RFC 4469 section 3: no conversion), in chunks of at most CHUNK octets
    read from the store one at a time; a HEADER.FIELDS section is cut from its header block."""
    location = found.location
    start, end = span(found)
    if location.fields is not None:
        block = await store.read_range(found.content_id, start, end - start)
        yield f.apply_partial(location.render(block), found.partial)
        return
    for offset in range(start, end, CHUNK):
        yield await store.read_range(found.content_id, offset, min(CHUNK, end - offset))


async def size(store: MailAccess, found: Found) -> int:
    """How many octets `chunks` gives (a HEADER.FIELDS section is read to know)."""
    location = found.location
    start, end = span(found)
    if location.fields is None:
        return end - start
    block = await store.read_range(found.content_id, start, end - start)
    return len(f.apply_partial(location.render(block), found.partial))


async def decoded(store: MailAccess, found: Found) -> bytes | None:
    """The part with its Content-Transfer-Encoding removed (RFC 5524 BINARY, as FETCH BINARY[part]<partial>:
    RFC 3516, decision 0022), the partial range counted in decoded octets; None for an encoding this server
    cannot decode. Built in memory, as FETCH BINARY is (at most APPENDLIMIT octets)."""
    part = found.body_part()
    if part is None or not found.section.part:
        return b"".join([chunk async for chunk in chunks(store, found)])
    if not f.binary_decodable(found.parsed, found.section.part):
        return None
    start, end = max(part.body_start, 0), max(part.body_end, part.body_start, 0)
    raw = await store.read_range(found.content_id, start, end - start)

    def read(offset: int, length: int) -> bytes:
        return raw[offset - start : offset - start + length]

    return f.binary_section(read, found.parsed, found.section.part, found.partial)


def decoded_structure(part: BodyPart, data: bytes) -> BodyPart:
    """The part as BINARY gives it (RFC 5524 section 3.2, BODYPARTSTRUCTURE with BINARY: the data has no
    transfer encoding any more): encoding "BINARY", the decoded size and lines."""
    if part.type == "multipart" or part.encoding.strip().upper() in ("7BIT", "8BIT", "BINARY"):
        return part
    lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    return replace(part, encoding="BINARY", body_start=0, body_end=len(data), lines=lines)
