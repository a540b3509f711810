"""Writing mail in the browser: the message built from the form, sent through the same submission policy
and delivery pipeline as port 587, the copy kept in Sent (docs/decisions/0046, 0041).

Implementation notes
- The From field is the account's own address, or one of its identities (an address it owns, with a display
  name and a Reply-To; web.security): the form names an identity by id, never an address, so there is nothing
  to spoof; the submission policy still checks the message as it checks port 587's.
- A new message starts with the identity's signature below a "-- " line (RFC 3676 section 4.3), above any
  quoted or forwarded text.
- Recipients: To and Cc go into the header, Bcc only into the envelope. Every address is checked with the
  standard library's parser; local ones are resolved by the pipeline (an unknown local address is an error
  shown on the form, nothing is sent), remote ones are queued.
- The Sent copy is an APPEND (like a mail program's), after the delivery committed: if it fails, the message
  has gone anyway and the page says so.
- Replies carry In-Reply-To and References (RFC 5322 section 3.6.4) and set \\Answered on the original;
  forwards set $Forwarded.
"""

from __future__ import annotations

import email.policy
import email.utils
import io
import logging
import time
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage

from postoffice.delivery.pipeline import DeliveryError, DeliveryPipeline
from postoffice.delivery.plan import Envelope, Message, Origin, Recipient, Refusal
from postoffice.delivery.submission import SubmissionPolicy
from postoffice.message import parse_message
from postoffice.message.threads import message_ids
from postoffice.store import Account, Identity, MailStore, StoreError

log = logging.getLogger("postoffice.web")

#: Recipients of one message at most from the form (the policy has its own limit too).
MAX_FORM_RECIPIENTS = 500


@dataclass
class Draft:
    to: str = ""
    cc: str = ""
    bcc: str = ""
    subject: str = ""
    body: str = ""
    in_reply_to: str = ""
    references: str = ""
    html: str = ""  # formatted text from the editor ("" = plain text only); sanitised before it is used
    forward_ref: str = ""  # "<folder id>/<uid>" of a message forwarded as an attachment
    forwarded: bytes = b""  # that message, attached as message/rfc822 when the message is built
    attachments: list[tuple[str, str, bytes]] = field(default_factory=list)  # (file name, type, data)
    identity: str = ""  # the id of the identity it is sent as ("" = the account's own address)


@dataclass(frozen=True)
class Sender:
    """Who a message is from: the envelope sender and From address, its display name, its Reply-To."""

    address: str
    name: str = ""
    reply_to: str = ""


def sender_of(account: Account, identities: list[Identity], chosen: str) -> Sender:
    """Who the form sends as: identity id `chosen`; "0" the account's own address; "" the default identity
    (or the account's address when none is the default). SendError for an id not among the identities."""
    if chosen == "0":
        return Sender(account.address)
    if chosen:
        picked = next((i for i in identities if str(i.id) == chosen), None)
        if picked is None:
            raise SendError("no such identity")
    else:
        picked = next((i for i in identities if i.default), None)
    if picked is None:
        return Sender(account.address)
    return Sender(picked.address, picked.name, picked.reply_to)


def signature_block(signature: str) -> str:
    """The signature below its separator line, as a new message's text ends (RFC 3676 section 4.3)."""
    return "\n\n-- \n" + signature.replace("\r\n", "\n").strip("\n") + "\n" if signature.strip() else ""


class SendError(Exception):
    """Why the message was not sent (shown on the form)."""


def _one_line(text: str) -> str:
    return " ".join(text.replace("\r", " ").replace("\n", " ").split())


def parse_mailboxes(text: str) -> list[tuple[str, str]]:
    """The (name, address) pairs of a To/Cc/Bcc field as typed ("a@x, Bob <b@y>; c@z"); SendError naming
    the first part that is not an address."""
    found: list[tuple[str, str]] = []
    for piece in _one_line(text).replace(";", ",").split(","):
        if not piece.strip():
            continue
        pairs = email.utils.getaddresses([piece])
        if len(pairs) != 1:
            raise SendError(piece.strip()[:100])
        name, address = pairs[0]
        local, at, domain = address.rpartition("@")
        if not at or not local or "." not in domain or any(c.isspace() or ord(c) < 32 for c in address):
            raise SendError(piece.strip()[:100])
        found.append((name, address))
    return found


def parse_addresses(text: str) -> list[str]:
    return [address for _, address in parse_mailboxes(text)]


def _field(pairs: list[tuple[str, str]]) -> str:
    return ", ".join(email.utils.formataddr(pair, charset="utf-8") for pair in pairs)


def build(
    draft: Draft, sender: Sender, hostname: str, now: float | None = None, *, keep_bcc: bool = False
) -> bytes:
    """The message of the form. `keep_bcc`: a draft keeps its Bcc field (it is never sent as it is)."""
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = Address(display_name=_one_line(sender.name), addr_spec=sender.address)
    if sender.reply_to and (reply_to := parse_mailboxes(sender.reply_to)):
        message["Reply-To"] = _field(reply_to)
    if to := parse_mailboxes(draft.to):
        message["To"] = _field(to)
    if cc := parse_mailboxes(draft.cc):
        message["Cc"] = _field(cc)
    if keep_bcc and (bcc := parse_mailboxes(draft.bcc)):
        message["Bcc"] = _field(bcc)
    message["Subject"] = _one_line(draft.subject)
    message["Date"] = email.utils.formatdate(now if now is not None else time.time(), localtime=True)
    message["Message-ID"] = email.utils.make_msgid(domain=hostname)
    if in_reply_to := message_ids(draft.in_reply_to)[:1]:
        message["In-Reply-To"] = in_reply_to[0]
    if references := message_ids(draft.references):
        message["References"] = " ".join(references[-50:])
    message.set_content(draft.body.replace("\r\n", "\n"))
    if draft.html.strip():
        # multipart/alternative: the text part first, the formatted one after it (RFC 2046 section 5.1.4)
        message.add_alternative(
            _EDITOR_HEAD + sanitise_written(draft.html) + "</body></html>", subtype="html"
        )
    if draft.forwarded:
        inner = email.message_from_bytes(draft.forwarded, policy=email.policy.SMTP)
        message.add_attachment(inner, filename="forwarded.eml")  # message/rfc822 (RFC 2046 section 5.2.1)
    for name, kind, data in draft.attachments:
        maintype, _, subtype = kind.partition("/")
        if not subtype or maintype == "multipart":
            maintype, subtype = "application", "octet-stream"
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name or "attachment")
    return message.as_bytes()


#: What the editor may produce, and so what a written message's HTML keeps (nh3: everything else goes).
EDITOR_TAGS = {
    "p",
    "div",
    "br",
    "b",
    "strong",
    "i",
    "em",
    "u",
    "s",
    "ul",
    "ol",
    "li",
    "blockquote",
    "a",
    "pre",
    "code",
}
_EDITOR_HEAD = '<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>'


def sanitise_written(html: str) -> str:
    """The editor's HTML reduced to its own small set of tags (no attributes but a link's href)."""
    import nh3

    return nh3.clean(
        html,
        tags=EDITOR_TAGS,
        attributes={"a": {"href"}},
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer",
        strip_comments=True,
    )


@dataclass(frozen=True)
class Sent:
    message_id: str
    queue_id: int | None
    sent_copy: bool


async def send(
    store: MailStore,
    pipeline: DeliveryPipeline,
    policy: SubmissionPolicy,
    account: Account,
    draft: Draft,
    *,
    sender: Sender,
    hostname: str,
    client_ip: str,
    sent_mailbox_id: int | None,
) -> Sent:
    """Check, deliver and keep a copy (module notes); SendError with the reason shown to the person."""
    recipients = parse_addresses(draft.to) + parse_addresses(draft.cc) + parse_addresses(draft.bcc)
    if not recipients:
        raise SendError("no recipient")
    if len(recipients) > MAX_FORM_RECIPIENTS:
        raise SendError("too many recipients")
    data = build(draft, sender, hostname)
    parsed = parse_message(io.BytesIO(data))
    decision = await policy.check(
        account, sender.address, len(recipients), io.BytesIO(data), parsed, smtputf8=not data.isascii()
    )
    if decision.refusal is not None:
        raise SendError(decision.refusal.text)
    targets: list[Recipient] = []
    for address in dict.fromkeys(recipients):
        resolved = await pipeline.resolve(address, relay=True, sender=sender.address)
        if isinstance(resolved, Refusal):
            raise SendError(f"{address}: {resolved.text}")
        targets.append(resolved)
    envelope = Envelope(sender.address, smtputf8=not data.isascii(), eight_bit=not data.isascii())
    origin = Origin("submission", client_ip, None, True, account, None)
    try:
        outcome = await pipeline.deliver(Message(io.BytesIO(data), parsed), envelope, targets, origin)
    except (DeliveryError, StoreError) as exc:
        log.error("web: sending for %s failed: %s", account.address, exc)
        raise SendError("the message could not be stored; try again") from exc
    if outcome.refusal is not None:
        raise SendError(outcome.refusal.text)
    policy.sent(account)
    log.info(
        "web: sent account=%s client=%s recipients=%d queue_id=%s",
        account.address,
        client_ip,
        len(targets),
        outcome.queue_id,
    )
    kept = False
    if sent_mailbox_id is not None:
        try:
            await store.append(sent_mailbox_id, io.BytesIO(data), parsed, ["\\Seen"])
            kept = True
        except StoreError as exc:
            log.error("web: the Sent copy for %s failed: %s", account.address, exc)
    return Sent(str(parsed.message_id or ""), outcome.queue_id, kept)


async def save_draft(
    store: MailStore, sender: Sender, draft: Draft, *, hostname: str, drafts_id: int, replaces: int | None
) -> int:
    """Keep the form as a message in Drafts (\\Draft, \\Seen; Bcc kept), replacing the draft it was saved as
    before; the new draft's UID. Addresses that do not parse yet are kept as typed in no field: a draft is
    saved whatever state it is in, so an unreadable field is left out rather than refused."""
    for name in ("to", "cc", "bcc"):
        try:
            parse_mailboxes(getattr(draft, name))
        except SendError:
            setattr(draft, name, "")
    data = build(draft, sender, hostname, keep_bcc=True)
    copy = await store.append(
        drafts_id, io.BytesIO(data), parse_message(io.BytesIO(data)), ["\\Draft", "\\Seen"]
    )
    if replaces is not None:
        await discard_draft(store, drafts_id, replaces)
    return copy.uid


async def discard_draft(store: MailStore, drafts_id: int, uid: int) -> None:
    """Remove a saved draft (it was sent, or saved again): only a message of Drafts with \\Draft."""
    found = await store.get_messages(drafts_id, [uid])
    if found and "\\Draft" in found[0].flags:
        await store.expunge(drafts_id, [uid])


def draft_from(message: EmailMessage, text: str) -> Draft:
    """The form again from a saved draft."""
    return Draft(
        to=str(message.get("to", "")),
        cc=str(message.get("cc", "")),
        bcc=str(message.get("bcc", "")),
        subject=str(message.get("subject", "")),
        body=text,
        in_reply_to=str(message.get("in-reply-to", "")),
        references=str(message.get("references", "")),
    )


def reply_subject(subject: str, prefix: str) -> str:
    stripped = subject.strip()
    if stripped.lower().startswith(prefix.lower()):
        return stripped
    return f"{prefix} {stripped}"


def quote_text(text: str, attribution: str) -> str:
    lines = text.replace("\r\n", "\n").rstrip("\n").split("\n")
    return "\n\n" + attribution + "\n" + "\n".join(("> " + line) if line else ">" for line in lines) + "\n"
