"""What the webmail pages show, read from the store API (no IMAP in between).

Implementation notes
- Every function takes the session's account id and checks that the mailbox it is given belongs to it: a
  mailbox or message id from another account is "not found", exactly like one that does not exist (no way
  to probe for ids).
- Folder order: INBOX, then the special-use folders in the order people expect (Drafts, Sent, Archive, Junk,
  Trash), then the others by name.
- A message is shown from its stored bytes, parsed with the standard library's `email` package (policy
  `default`: RFC 2047 words, RFC 2231 parameters, every charset Python has a codec for, GB18030 for GB2312
  and GBK text, which is what such mail really contains). HTML bodies are sanitised with nh3 and shown in a
  sandboxed frame (`postoffice.web.html`).
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import email.utils
import functools
import html as html_module
import re
from dataclasses import dataclass, field
from email.message import EmailMessage, MIMEPart
from email.utils import getaddresses, parseaddr

from postoffice.mailauth.results import claims_our_id, from_domain_of_results, read_results
from postoffice.message import ParsedMessage, envelope_addresses
from postoffice.store import MailboxInfo, MailStore, MessageInfo
from postoffice.web.query import Query

SPECIAL_ORDER = ("\\Drafts", "\\Sent", "\\Archive", "\\Junk", "\\Trash")
PAGE_SIZE = 50
#: Characters of a message's text shown after its subject in the list.
SNIPPET_LENGTH = 140
#: Bytes of a message body shown as text at most (the rest: "download the message").
TEXT_SHOWN = 2 * 1024 * 1024
#: Parts of a message considered at most (the MIME parser stores the same cap, decision 0023).
MAX_PARTS = 1000


class NotFound(Exception):
    """No such mailbox or message for this account."""


@dataclass(frozen=True)
class Folder:
    id: int
    name: str
    special_use: str | None
    messages: int
    unseen: int
    depth: int

    @property
    def label(self) -> str:
        return self.name.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Row:
    uid: int
    subject: str
    sender: str
    date: float | None
    size: int
    seen: bool
    flagged: bool
    answered: bool
    attachment: bool
    snippet: str = ""
    count: int = 1  # messages of the conversation this row stands for (conversations view)
    thread_id: int = 0


@dataclass(frozen=True)
class Page:
    folder: Folder
    rows: list[Row]
    number: int  # 1-based
    pages: int
    total: int
    #: conversations view: the bound of the older page (`?before=`) and of the newer (`?after=`), if any
    older: int | None = None
    newer: int | None = None
    query: str = ""  # what brought this page: "?page=3", "?before=1234", ... ("" for the first)


@dataclass
class Shown:
    """One message as the reading page shows it."""

    uid: int
    subject: str
    sender: str
    to: str
    cc: str
    date: float | None
    text: str | None = None  # a text/plain body
    html: str | None = None  # a sanitised text/html body
    #: (part number, file name, type, size)
    attachments: list[tuple[int, str, str, int]] = field(default_factory=list)
    truncated: bool = False
    marked_seen: bool = False  # opening it marked it read just now
    sender_address: str = ""  # the From address, lower case (for "always show images from")
    #: our checks at delivery (the Authentication-Results field with our authserv-id; decision 0054): the
    #: result of each method, e.g. {"dmarc": "pass", "spf": "fail"}; empty when the message had none
    authentication: dict[str, str] = field(default_factory=dict)
    verified_domain: str = ""  # the From domain DMARC verified ("" unless dmarc=pass)

    @property
    def forged_warning(self) -> bool:
        """The From domain's own authentication failed: the sender may be forged."""
        return self.authentication.get("dmarc") == "fail"


def _order(mailbox: MailboxInfo) -> tuple[int, str]:
    if mailbox.name.upper() == "INBOX":
        return (0, "")
    if mailbox.special_use in SPECIAL_ORDER:
        return (1 + SPECIAL_ORDER.index(mailbox.special_use), "")
    return (len(SPECIAL_ORDER) + 1, mailbox.name.casefold())


async def folders(store: MailStore, account_id: int) -> list[Folder]:
    mailboxes = sorted(await store.list_mailboxes(account_id), key=_order)
    unseen = await store.unseen_counts(account_id)
    return [
        Folder(mailbox.id, mailbox.name, mailbox.special_use, mailbox.messages, unseen.get(mailbox.id, 0), 0)
        for mailbox in mailboxes
    ]


def find_folder(all_folders: list[Folder], mailbox_id: int) -> Folder:
    for folder in all_folders:
        if folder.id == mailbox_id:
            return folder
    raise NotFound(f"no mailbox {mailbox_id}")


def inbox(all_folders: list[Folder]) -> Folder:
    for folder in all_folders:
        if folder.name.upper() == "INBOX":
            return folder
    raise NotFound("no INBOX")


def _has_attachment(body: object) -> bool:
    parts = getattr(body, "parts", None) or []
    disposition = getattr(body, "disposition", None)
    if (
        disposition
        and str(disposition[0] if isinstance(disposition, tuple) else disposition).lower() == "attachment"
    ):
        return True
    return any(_has_attachment(part) for part in parts)


async def page(store: MailStore, folder: Folder, number: int) -> Page:
    """A page of single messages, newest first."""
    total = folder.messages
    pages = max(1, -(-total // PAGE_SIZE))
    number = min(max(1, number), pages)
    chosen = await store.list_page(folder.id, (number - 1) * PAGE_SIZE, PAGE_SIZE)
    rows = await _rows(store, folder, chosen)
    return Page(folder, rows, number, pages, total, query=f"?page={number}" if number > 1 else "")


def _counted(folder: Folder, all_folders: list[Folder]) -> list[int]:
    """The folders whose messages a conversation row counts: all but Trash and Junk (the person's replies in
    Sent count), and the folder shown."""
    return [f.id for f in all_folders if f.special_use not in ("\\Trash", "\\Junk") or f.id == folder.id]


async def conversation_page(
    store: MailStore,
    account_id: int,
    all_folders: list[Folder],
    folder: Folder,
    *,
    before: int | None = None,
    after: int | None = None,
) -> Page:
    """A page of conversations (docs/decisions/0047), each at its newest message in the folder, newest
    first: the first page, the one below the UID `before`, or the one above the UID `after`."""
    heads = await store.conversations(folder.id, before=before, after=after, limit=PAGE_SIZE + 1)
    if after is None:
        more_older, more_newer = len(heads) > PAGE_SIZE, before is not None
        heads = heads[:PAGE_SIZE]
    else:
        more_older, more_newer = True, len(heads) > PAGE_SIZE
        heads = heads[-PAGE_SIZE:]
    summaries = await store.thread_summaries(
        account_id, [m.thread_id for m in heads], _counted(folder, all_folders)
    )
    rows = []
    for row in await _rows(store, folder, heads):
        summary = summaries.get(row.thread_id)
        if summary is not None:
            row = dataclasses.replace(
                row,
                count=max(1, summary.count),
                seen=row.seen and summary.unseen == 0,
                flagged=row.flagged or summary.flagged > 0,
            )
        rows.append(row)
    query = f"?before={before}" if before is not None else f"?after={after}" if after is not None else ""
    return Page(
        folder,
        rows,
        1,
        1,
        folder.messages,
        older=rows[-1].uid if rows and more_older else None,
        newer=rows[0].uid if rows and more_newer else None,
        query=query,
    )


async def _rows(store: MailStore, folder: Folder, chosen: list[MessageInfo]) -> list[Row]:
    parsed = await store.get_parsed_many([m.content_id for m in chosen])
    outgoing = folder.special_use in ("\\Sent", "\\Drafts")
    snippets = await store.snippets([m.content_id for m in chosen], SNIPPET_LENGTH * 6)
    return [
        dataclasses.replace(
            _row(info, parsed.get(info.content_id), recipients=outgoing),
            snippet=_snippet(snippets.get(info.content_id, "")),
        )
        for info in chosen
    ]


async def conversation_uids(
    store: MailStore, account_id: int, folder: Folder, thread_ids: list[int]
) -> list[int]:
    """The messages in `folder` of the conversations `thread_ids` (an action on a conversation row)."""
    found = await store.thread_messages(account_id, thread_ids, [folder.id], limit=100_000)
    return [m.uid for m in found]


_LOOKS_HTML = re.compile(r"<(?:!doctype|html|head|body|div|p|span|table|br|style|a|b|font)\b", re.IGNORECASE)
_HIDDEN = re.compile(r"<(style|script|head|title)\b.*?(?:</\1\s*>|$)", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^<>]{0,2000}>|<[a-z/!][^<>]*$", re.IGNORECASE)


def _snippet(text: str) -> str:
    """A list's preview line: the text without the markup of an HTML part (the index keeps it as written)."""
    if _LOOKS_HTML.search(text):
        text = html_module.unescape(_TAG.sub(" ", _HIDDEN.sub(" ", text)))
    return " ".join(text.split())[:SNIPPET_LENGTH]


def _recipients(structure: ParsedMessage) -> str:
    """Who a sent message went to, for the list: the To (then Cc) names, else addresses."""
    pairs = envelope_addresses(structure.envelope, (5, 6))
    return ", ".join(name or address for name, address in pairs[:3]) + ("…" if len(pairs) > 3 else "")


def _row(info: MessageInfo, structure: ParsedMessage | None, *, recipients: bool = False) -> Row:
    who = ""
    if structure is not None:
        who = _recipients(structure) if recipients else _short_sender(structure.from_display)
    return Row(
        uid=info.uid,
        subject=structure.subject if structure else "",
        sender=who,
        date=(structure.date if structure and structure.date else info.internaldate),
        size=info.size,
        seen="\\Seen" in info.flags,
        flagged="\\Flagged" in info.flags,
        answered="\\Answered" in info.flags,
        attachment=_has_attachment(structure.body) if structure else False,
        thread_id=info.thread_id,
    )


@functools.lru_cache(maxsize=8192)  # the same senders come back row after row
def _short_sender(from_display: str) -> str:
    """The name of a From field for a list ("Ada Lovelace <ada@...>" -> "Ada Lovelace"), else its address."""
    name, address = parseaddr(from_display)
    return name or address or from_display


def _addresses(message: EmailMessage, name: str) -> str:
    values = [str(v) for v in message.get_all(name, [])]
    pairs = getaddresses(values)
    return ", ".join(display or address for display, address in pairs if display or address)


async def _info(store: MailStore, folder: Folder, uid: int) -> MessageInfo:
    found = await store.get_messages(folder.id, [uid])
    if not found:
        raise NotFound(f"no message {uid} in mailbox {folder.id}")
    return found[0]


async def raw_message(store: MailStore, folder: Folder, uid: int) -> bytes:
    return await store.read_content((await _info(store, folder, uid)).content_id)


def text_of(message: EmailMessage) -> str:
    """The text a reply quotes or a forward repeats: the plain part, else the HTML part without its tags."""
    body = message.get_body(preferencelist=("plain", "html"))
    if body is None:
        return ""
    content = _content(body)[:TEXT_SHOWN]
    if body.get_content_type() == "text/html":
        import nh3

        content = nh3.clean(content, tags=set())
    return content


async def read(
    store: MailStore, folder: Folder, uid: int, *, mark_seen: bool = True, authserv_id: str = ""
) -> Shown:
    """The message for the reading page; `authserv_id` (our hostname) finds our own authentication results."""
    from postoffice.web.html import sanitise

    info = await _info(store, folder, uid)
    raw = await store.read_content(info.content_id)
    message = email.message_from_bytes(raw, policy=email.policy.default)
    if not isinstance(message, EmailMessage):  # policy.default always makes one
        raise TypeError("not an EmailMessage")
    parsed = await store.get_parsed(info.content_id)
    from_pairs = getaddresses([str(v) for v in message.get_all("from", [])])
    shown = Shown(
        sender_address=(from_pairs[0][1].lower() if from_pairs else ""),
        uid=uid,
        subject=parsed.subject,
        sender=_addresses(message, "from") or parsed.from_display,
        to=_addresses(message, "to"),
        cc=_addresses(message, "cc"),
        date=parsed.date or info.internaldate,
    )
    if authserv_id:
        for value in message.get_all("authentication-results", []):
            text = str(value)
            if claims_our_id(text, authserv_id):  # any other with our id was removed at delivery
                shown.authentication = read_results(text)
                if shown.authentication.get("dmarc") == "pass":
                    shown.verified_domain = from_domain_of_results(text)
                break
    for index, part in enumerate(leaf_parts(message)):
        filename = part.get_filename()
        disposition = part.get_content_disposition()
        if filename or disposition == "attachment":
            payload = part.get_payload(decode=True)
            size = len(payload) if isinstance(payload, bytes) else 0
            shown.attachments.append((index, filename or "", part.get_content_type(), size))
    body = message.get_body(preferencelist=("html", "plain"))  # as the sender meant it to look
    if body is not None:
        content = _content(body)
        if len(content) > TEXT_SHOWN:
            content, shown.truncated = content[:TEXT_SHOWN], True
        if body.get_content_type() == "text/html":
            shown.html = sanitise(content)
        else:
            shown.text = content
    if mark_seen and "\\Seen" not in info.flags:
        await store.store_flags(folder.id, [uid], ["\\Seen"], "add")
        shown.marked_seen = True
    return shown


#: Declared charsets decoded with a superset, as browsers do (WHATWG Encoding): mail labelled GB2312 is
#: nearly always GBK or GB18030, Big5 often Big5-HKSCS, ISO-8859-1 really Windows-1252, US-ASCII often UTF-8.
CHARSET_SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "euc-cn": "gb18030",
    "cp936": "gb18030",
    "big5": "big5hkscs",
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "us-ascii": "utf-8",
    "ascii": "utf-8",
    "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949",
}


def extension(kind: str) -> str:
    """A file name extension for a part without a name."""
    import mimetypes

    return mimetypes.guess_extension(kind) or ".bin"


def leaf_parts(message: EmailMessage) -> list[MIMEPart]:
    """The parts that hold content, in order (their index is a part's number in download URLs)."""
    parts: list[MIMEPart] = [part for part in message.walk() if not part.is_multipart()]
    return parts[:MAX_PARTS]


async def part(store: MailStore, folder: Folder, uid: int, index: int) -> MIMEPart:
    message = email.message_from_bytes(await raw_message(store, folder, uid), policy=email.policy.default)
    if not isinstance(message, EmailMessage):
        raise NotFound("not a message")
    parts = leaf_parts(message)
    if not 0 <= index < len(parts):
        raise NotFound(f"no part {index}")
    return parts[index]


async def part_by_content_id(store: MailStore, folder: Folder, uid: int, content_id: str) -> MIMEPart:
    message = email.message_from_bytes(await raw_message(store, folder, uid), policy=email.policy.default)
    if not isinstance(message, EmailMessage):
        raise NotFound("not a message")
    for candidate in leaf_parts(message):
        if str(candidate.get("content-id", "")).strip().strip("<>") == content_id:
            return candidate
    raise NotFound(f"no part with Content-ID {content_id}")


def _content(part: MIMEPart) -> str:
    """A text part's content as str, whatever its transfer encoding and charset (bad bytes become U+FFFD)."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = (part.get_content_charset() or "utf-8").strip().lower()
    charset = CHARSET_SUPERSETS.get(charset, charset)
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:
        return payload.decode("utf-8", errors="replace")


# -- conversations -----------------------------------------------------------------------------------------

#: Messages of one conversation shown at most.
THREAD_LIMIT = 50


async def conversation(
    store: MailStore, account_id: int, all_folders: list[Folder], folder: Folder, uid: int
) -> list[Found]:
    """The other messages of the message's conversation (docs/decisions/0047) in every folder but Trash and
    Junk (so the person's own replies in Sent are there), oldest first, the newest THREAD_LIMIT."""
    found_info = await store.get_messages(folder.id, [uid])
    if not found_info or not found_info[0].thread_id:
        return []
    info = found_info[0]
    places = {f.id: f for f in all_folders}
    members = [
        m
        for m in await store.thread_messages(
            account_id, [info.thread_id], _counted(folder, all_folders), limit=THREAD_LIMIT + 1
        )
        if (m.mailbox_id, m.uid) != (folder.id, uid) and m.mailbox_id in places
    ]
    parsed = await store.get_parsed_many([m.content_id for m in members])
    found = [Found(places[m.mailbox_id], _row(m, parsed.get(m.content_id))) for m in members]
    found.sort(key=lambda hit: hit.row.date or 0)
    return found[-THREAD_LIMIT:]


# -- address completion --------------------------------------------------------------------------------------

#: Messages looked at for the addresses a person writes to (Sent) and hears from (Inbox).
COMPLETION_MESSAGES = 500
#: Addresses offered at most.
COMPLETION_ADDRESSES = 300


async def known_addresses(store: MailStore, all_folders: list[Folder], own: str) -> list[str]:
    """Addresses for the To/Cc/Bcc completion: those written to (Sent: To, Cc) before those heard from
    (Inbox: From), most frequent first, as "Name <address>" when a name is known."""
    counts: dict[str, int] = {}
    names: dict[str, str] = {}
    sources: list[tuple[Folder, tuple[int, ...], int]] = []
    for folder in all_folders:
        if folder.special_use == "\\Sent":
            sources.append((folder, (5, 6), 3))  # To, Cc of what the person sent count more
        elif folder.name.upper() == "INBOX":
            sources.append((folder, (2,), 1))
    for folder, fields, weight in sources:
        infos = await store.list_page(folder.id, 0, COMPLETION_MESSAGES)
        parsed = await store.get_parsed_many([m.content_id for m in infos])
        for structure in parsed.values():
            for name, address in envelope_addresses(structure.envelope, fields):
                key = address.lower()
                if key == own.lower():
                    continue
                counts[key] = counts.get(key, 0) + weight
                if name and key not in names:
                    names[key] = name
    ranked = sorted(counts, key=lambda key: (-counts[key], key))[:COMPLETION_ADDRESSES]
    return [email.utils.formataddr((names.get(key, ""), key)) if key in names else key for key in ranked]


# -- search ------------------------------------------------------------------------------------------------

#: Results on a page (newest first).
SEARCH_PAGE = PAGE_SIZE
#: Pages of search results at most (the newest SEARCH_PAGE * SEARCH_PAGES matches); beyond, narrow the search.
SEARCH_PAGES = 20


@dataclass(frozen=True)
class Found:
    folder: Folder
    row: Row


async def search(
    store: MailStore, folders_searched: list[Folder], query: Query, page: int = 1
) -> tuple[list[Found], bool]:
    """A page (SEARCH_PAGE, newest first) of the messages matching the search box's query in
    `folders_searched`; and whether there are more after it."""
    page = min(max(1, page), SEARCH_PAGES)
    wanted = page * SEARCH_PAGE  # the newest `wanted` + 1 of all folders together decide this page
    hits: list[tuple[Folder, MessageInfo]] = []
    for folder in folders_searched:
        # the newest of each folder are enough: no page shows more than the newest `wanted` of them all
        uids = await store.search(folder.id, query.criteria, newest=wanted + 1)
        hits += [(folder, m) for m in await store.get_messages(folder.id, uids)]
    hits.sort(key=lambda hit: hit[1].internaldate, reverse=True)
    if query.has_attachment is None:
        chosen = hits[(page - 1) * SEARCH_PAGE : wanted + 1]
    else:
        chosen = hits  # the attachment filter reads structures: the page is counted after it
    parsed = await store.get_parsed_many([m.content_id for _, m in chosen[: wanted * 4 + 1]])
    found: list[Found] = []
    for folder, info in chosen:
        structure = parsed.get(info.content_id)
        if structure is None:
            continue
        row = _row(info, structure)
        if query.has_attachment is not None and row.attachment != query.has_attachment:
            continue
        found.append(Found(folder, row))
    if query.has_attachment is not None:
        found = found[(page - 1) * SEARCH_PAGE :]
    return found[:SEARCH_PAGE], len(found) > SEARCH_PAGE and page < SEARCH_PAGES


# -- actions -----------------------------------------------------------------------------------------------

#: Messages one action takes at most (a form with more is cut there).
MAX_SELECTED = 1000
#: Actions on selected messages; "delete" moves to Trash, or removes for good in Trash and Junk.
ACTIONS = ("read", "unread", "flag", "unflag", "delete", "archive", "junk", "move")


def special_folder_or_none(all_folders: list[Folder], use: str) -> Folder | None:
    return next((folder for folder in all_folders if folder.special_use == use), None)


def special_folder(all_folders: list[Folder], use: str) -> Folder:
    folder = special_folder_or_none(all_folders, use)
    if folder is None:
        raise NotFound(f"no {use} folder")
    return folder


async def act(
    store: MailStore,
    all_folders: list[Folder],
    folder: Folder,
    uids: list[int],
    action: str,
    target: int | None,
) -> int:
    """Apply `action` to the messages `uids` of `folder` (unknown UIDs are ignored); how many it took."""
    chosen = [m.uid for m in await store.get_messages(folder.id, uids[:MAX_SELECTED])]
    if not chosen:
        return 0
    if action in ("read", "unread", "flag", "unflag"):
        flag = "\\Seen" if action in ("read", "unread") else "\\Flagged"
        await store.store_flags(folder.id, chosen, [flag], "add" if action in ("read", "flag") else "remove")
        return len(chosen)
    if action == "delete" and folder.special_use in ("\\Trash", "\\Junk"):
        return len(await store.expunge(folder.id, chosen))
    if action == "move":
        if target is None:
            raise NotFound("no target folder")
        destination = find_folder(all_folders, target)
    else:
        use = {"delete": "\\Trash", "archive": "\\Archive", "junk": "\\Junk"}.get(action)
        if use is None:
            raise NotFound(f"no action {action}")
        destination = special_folder(all_folders, use)
    if destination.id == folder.id:
        return 0
    return len(await store.copy_messages(folder.id, chosen, destination.id, move=True))
