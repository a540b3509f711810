"""What a delivery is about (`Message`, `Envelope`, `Origin`, `Recipient`) and what it will do
(`DeliveryPlan`: one `RecipientPlan` per local account, and the remote recipients to queue), which the
stages amend before the pipeline commits it (docs/decisions/0040).

Implementation notes
- One `RecipientPlan` per account, however many envelope recipients reach it (aliases, plus-addressing,
  the same address twice): an account gets one copy, as before this package. `addresses` keeps every
  envelope recipient that reached it, for the stages (Sieve's envelope "to") and for reports.
- A plan starts as "deliver to INBOX, no flags, no header fields" for every account, and "queue" for every
  remote recipient. Stages change a recipient's target mailbox (a name, or a special-use attribute such as
  \\Junk, RFC 6154), add flags and keywords (stored system flags, or IMAP atoms: RFC 9051 sections 2.3.2
  and 9; anything else is a ValueError), prepend header fields for that recipient only, reject it with a
  `Refusal`, or discard it.
- Header fields a stage prepends (RFC 5322 section 2.2, 3.6): a name of printable ASCII but ":", a value
  whose lines all end in CRLF, continuation lines starting with white space and holding more than white
  space (RFC 5322 section 2.2.3 folding), no NUL, bare CR or LF, no line over 998 octets (section 2.1.1).
  Anything else is a bug in the stage: ValueError, before anything is stored. Each field goes on top of
  those added before it, as trace fields do (RFC 5321 section 4.4, RFC 8601 section 5: prepended).
- A copy whose header a Sieve script edited (RFC 5293) carries a `Rewrite`: the header it has instead of
  the message's (and of the fields prepended for it, which the script saw and which the new header holds).
- Forwarding (docs/decisions/0059): an address of ours whose aliases lead outside (`Recipient.forwards`)
  adds `Forward`s to the plan, one per outside address (each once); the pipeline queues the message for
  them as a forward of its own (SRS sender, ARC seal). Stages see them and may drop them (`forwards`).
- A refused address's outcome (`DeliveryPlan.outcome`): an envelope recipient is refused when every
  account it reaches was rejected (the first rejection is its reply); it is delivered when any of them
  keeps a copy, and discarded when the others were discarded (discarding is silent, RFC 5228 section 4.4).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Literal, NamedTuple

from postoffice.store import SYSTEM_FLAGS, OutboundRecipient

if TYPE_CHECKING:
    from postoffice.message import ParsedMessage
    from postoffice.store import Account, DuplicateMark, GeneratedMessage, ScriptErrorNotice, VacationReply

#: Where a message comes from: port 25 ("mx"), a user's submission, a relaying client of `relay_networks`,
#: the queue's local deliveries (bounces and queued mail for our users).
Kind = Literal["mx", "submission", "relay", "queue"]
Action = Literal["deliver", "reject", "discard"]

#: Longest line of a header field a stage may add, without its CRLF (RFC 5322 section 2.1.1).
MAX_LINE_OCTETS = 998

_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")
_ENHANCED = re.compile(r"([45])\.[0-9]{1,3}\.[0-9]{1,3}")
#: RFC 9051 section 9: atom-specials other than SP and CTL (excluded by the printable range)
_ATOM_SPECIALS = frozenset('(){%*"\\]')


@dataclass(frozen=True)
class Refusal:
    """A refusal with the SMTP reply that says it (RFC 5321 section 4.2; RFC 3463 enhanced status), which
    callers that do not speak SMTP map by `code` and `enhanced` (JMAP: a SetError; the webmail: a message to
    the user). `reason` names the kind of refusal for them (e.g. "forbiddenFrom", "unknown")."""

    code: int
    enhanced: str
    text: str
    reason: str = ""

    def __post_init__(self) -> None:
        # a refusal is a 4xx or 5xx reply whose enhanced status has the same class (RFC 3463 section 2)
        match = _ENHANCED.fullmatch(self.enhanced)
        if not 400 <= self.code <= 599 or match is None or int(match.group(1)) != self.code // 100:
            raise ValueError(f"not a refusal: {self.code} {self.enhanced}")

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    @property
    def reply(self) -> tuple[int, str, str]:
        return self.code, self.enhanced, self.text


#: What a rejected copy answers when its stage gave no reason.
REFUSED = Refusal(550, "5.7.1", "Delivery to this recipient was refused", "rejected")


class Message(NamedTuple):
    """The message being delivered: `parsed.size` bytes from offset 0 of `source`, and their parse. (This
    and the other types made for every message are named tuples: cheaper than frozen dataclasses.)"""

    source: IO[bytes]
    parsed: ParsedMessage


class Envelope(NamedTuple):
    """The SMTP envelope (RFC 5321 section 2.3.1) with the DSN and transport parameters the queue keeps:
    `sender` "" is the null sender; `envid` and `ret` as received (RFC 3461 sections 4.3, 4.4);
    `require_tls`: MAIL had REQUIRETLS (RFC 8689), which the queue honours for the remote recipients."""

    sender: str
    envid: str | None = None
    ret: str | None = None
    smtputf8: bool = False
    eight_bit: bool = False
    require_tls: bool = False


class Origin(NamedTuple):
    """Who hands the message over: the kind of delivery and what the stages may judge it by."""

    kind: Kind
    client_ip: str | None = None
    helo: str | None = None
    tls: bool = False
    #: the authenticated account that submits it (submission; later the webmail and JMAP)
    account: Account | None = None
    #: the id of the SMTP transaction (kept with a queued message, shown in its log lines)
    id: str | None = None
    #: the DNS blocklists that list the client (port 25; `postoffice.spam.dnsbl`), for the spam stage
    dnsbl: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuthenticationSummary:
    """What the authentication stage found (docs/decisions/0054), as data for later stages: every result of
    each method in the order of our Authentication-Results field (`results`: {"spf": ("fail", "none"),
    ...}; SPF's MAIL FROM identity first), and whether the stage delivered a DMARC failure as usual because a
    trusted ARC sealer vouched for the message (`arc_override`: disposition "deliver-arc-override")."""

    results: Mapping[str, tuple[str, ...]]
    arc_override: bool = False


class Recipient(NamedTuple):
    """An envelope recipient, resolved: local (`account_ids`, the accounts it reaches, and `forwards`, the
    outside addresses its aliases lead to) or remote (neither: the queue delivers it to its own address).
    `orcpt` and `notify` are its DSN parameters as received (RFC 3461 section 4)."""

    address: str
    account_ids: tuple[int, ...] = ()
    orcpt: str | None = None
    notify: str | None = None
    forwards: tuple[str, ...] = ()

    @property
    def remote(self) -> bool:
        return not self.account_ids and not self.forwards


class Rewrite(NamedTuple):
    """A copy's own header (Sieve's editheader): `head` (its fields, each ending in CRLF, and the empty line)
    takes the place of the first `replaces` octets of the message (its header and empty line)."""

    head: bytes
    replaces: int


class Target(NamedTuple):
    """A further copy of an account's message (`RecipientPlan.also`): mailbox or special use, flags, and its
    own header when a Sieve script edited it (None: the account's copy's text)."""

    mailbox: str
    special_use: str | None = None
    flags: frozenset[str] = frozenset()
    rewrite: Rewrite | None = None


class SentCopy(NamedTuple):
    """A copy of a message a Sieve script sent (a notification's :fcc, RFC 8580) for an account's mailbox."""

    account_id: int
    target: Target
    data: bytes


@dataclass(eq=False, slots=True)
class RecipientPlan:
    """What happens to the copy of one local account (see the module notes)."""

    account_id: int
    addresses: list[str]
    mailbox: str = "INBOX"
    special_use: str | None = None
    flags: set[str] = field(default_factory=set)
    #: complete header fields (CRLF included) to prepend to this account's copy, top first
    header_fields: list[bytes] = field(default_factory=list)
    action: Action = "deliver"
    refusal: Refusal | None = None
    #: further copies of the same text into other mailboxes, when delivered (Sieve's fileinto with a keep)
    also: list[Target] = field(default_factory=list)
    #: the header of this copy when a Sieve script edited it (it holds `header_fields` too)
    rewrite: Rewrite | None = None

    def file_into(self, mailbox: str, *, special_use: str | None = None) -> None:
        """Store the copy in `mailbox` (or the account's mailbox with the `special_use` attribute); INBOX when
        it does not exist (RFC 5228 section 4.1 leaves the choice to the implementation)."""
        self.mailbox = mailbox
        self.special_use = special_use

    def add_flags(self, flags: Iterable[str]) -> None:
        """System flags (\\Seen, ...) and keywords (RFC 9051 section 2.3.2) the copy starts with; ValueError
        for anything else (`flag`), adding none of them."""
        self.flags.update([flag(f) for f in flags])

    def prepend_header(self, name: str, value: str) -> None:
        """Put the field `name: value` on top of this account's copy (ValueError for one that is not a
        well-formed header field: see the module notes). `value` may be folded ("...\\r\\n\\t...")."""
        self.header_fields.insert(0, header_field(name, value))

    def reject(self, refusal: Refusal = REFUSED) -> None:
        self.action = "reject"
        self.refusal = refusal
        self.also.clear()

    def discard(self) -> None:
        self.action = "discard"
        self.refusal = None
        self.also.clear()

    @property
    def copies(self) -> int:
        """How many copies are stored for this account (0 unless delivered)."""
        return 1 + len(self.also) if self.action == "deliver" else 0

    def keep(self) -> None:
        """Deliver after all (a later stage overrides an earlier rejection or discard)."""
        self.action = "deliver"
        self.refusal = None

    @property
    def prefix(self) -> bytes:
        return b"".join(self.header_fields)


def flag(name: str) -> str:
    """A flag a copy may start with, in its canonical spelling: a stored system flag (RFC 9051 section
    2.3.2; not \\Recent, which is a session's), or a keyword: an IMAP atom (printable ASCII without
    atom-specials, section 9), so that IMAP can send it back and the store can keep it. ValueError
    otherwise."""
    if name.startswith("\\"):
        for system in SYSTEM_FLAGS:
            if system.lower() == name.lower():
                return system
        raise ValueError(f"not a system flag a copy can start with: {name!r}")
    if not name or any(c in _ATOM_SPECIALS or not "\x21" <= c <= "\x7e" for c in name):
        raise ValueError(f"not an IMAP keyword: {name!r}")
    return name


def header_field(name: str, value: str) -> bytes:
    """`name: value` CRLF as octets, checked (module notes); ValueError otherwise."""
    raw_name = name.encode("utf-8", "surrogateescape")
    if not _FIELD_NAME.fullmatch(raw_name):
        raise ValueError(f"not a header field name: {name!r}")
    raw = raw_name + b": " + value.encode("utf-8", "surrogateescape")
    lines = raw.split(b"\r\n")
    for n, line in enumerate(lines):
        if b"\r" in line or b"\n" in line or b"\x00" in line:
            raise ValueError(f"{name} header field: a bare CR, LF or NUL")
        if len(line) > MAX_LINE_OCTETS:
            raise ValueError(f"{name} header field: a line longer than {MAX_LINE_OCTETS} octets")
        if n and (line[:1] not in (b" ", b"\t") or not line.strip(b" \t")):
            raise ValueError(f"{name} header field: a continuation line must be folded white space and text")
    return raw + b"\r\n"


@dataclass(frozen=True)
class RecipientOutcome:
    """What became of one envelope recipient: "delivered" (a copy kept), "discarded", "rejected" (with its
    refusal) or "queued" (remote)."""

    address: str
    result: Literal["delivered", "discarded", "rejected", "queued"]
    refusal: Refusal | None = None


@dataclass(frozen=True)
class Forward:
    """The message forwarded to `target` (outside) because it reached `via` (an address of ours);
    `redirect`: a Sieve redirect (the forwarded copy says so: X-Sieve-Redirected-From, for loop control)."""

    via: str
    target: str
    redirect: bool = False
    #: the header the forwarded copy has when a Sieve script edited it before redirecting (RFC 5293)
    rewrite: Rewrite | None = None


@dataclass(eq=False, slots=True)
class DeliveryPlan:
    """One delivery's plan: the `envelope` and `origin` it was made for, `recipients` (one per local account,
    in the order the envelope first reached them) and `outbound` (remote recipients the queue delivers).
    Stages amend it; the pipeline commits it."""

    envelope: Envelope
    origin: Origin
    recipients: list[RecipientPlan]
    outbound: list[OutboundRecipient]
    #: the envelope recipients, in order (for outcomes)
    envelope_recipients: Sequence[Recipient] = ()
    #: the message as a stage changed it for every recipient (forged Authentication-Results removed, RFC 8601
    #: section 5); later stages and the commit use it. None: the message as received.
    message: Message | None = None
    #: copies forwarded to outside addresses (aliases; docs/decisions/0059)
    forwards: list[Forward] = field(default_factory=list)
    #: our Authentication-Results value and the ARC chain's validity (the authentication stage's), for the
    #: ARC seal of forwarded copies: "" and "none" when nothing was checked
    authentication_results: str = ""
    arc_chain: str = "none"
    #: the same results as data (None: nothing was checked), for the spam stage's built-in verdict
    authentication: AuthenticationSummary | None = None
    #: Sieve vacation replies, each sent unless one went to its sender recently (the store decides)
    vacations: list[VacationReply] = field(default_factory=list)
    #: reports of Sieve script errors to their accounts (once per script version: the store decides)
    notices: list[ScriptErrorNotice] = field(default_factory=list)
    #: what Sieve duplicate tests saw, recorded with the delivery (RFC 7352)
    duplicates: list[DuplicateMark] = field(default_factory=list)
    #: messages Sieve scripts send (enotify's mailto notifications, RFC 5436), from the null sender
    notifications: list[GeneratedMessage] = field(default_factory=list)
    #: copies of what Sieve scripts sent, for their accounts' mailboxes (RFC 8580 :fcc)
    sent_copies: list[SentCopy] = field(default_factory=list)
    #: the spam filter's score and the score from which a message is spam (None: not scanned), for Sieve's
    #: spamtest (RFC 5235)
    spam_score: tuple[float, float] | None = None

    def account(self, account_id: int) -> RecipientPlan | None:
        return next((r for r in self.recipients if r.account_id == account_id), None)

    def refused(self) -> list[RecipientPlan]:
        return [r for r in self.recipients if r.action == "reject"]

    def temporary_refusal(self) -> Refusal | None:
        """The first temporary refusal of a copy (it defers the whole delivery), None when there is none."""
        for recipient in self.recipients:
            refusal = recipient.refusal
            if recipient.action == "reject" and refusal is not None and not refusal.permanent:
                return refusal
        return None

    def outcomes(self) -> list[RecipientOutcome]:
        """Per envelope recipient, in order (the module notes say how accounts add up)."""
        by_account = {r.account_id: r for r in self.recipients}
        queued = {r.address for r in self.outbound}
        found: list[RecipientOutcome] = []
        forwarded = {f.via for f in self.forwards}
        for recipient in self.envelope_recipients:
            if recipient.remote:
                kept = recipient.address in queued
                found.append(RecipientOutcome(recipient.address, "queued" if kept else "discarded"))
                continue
            plans = [by_account[a] for a in recipient.account_ids if a in by_account]
            if any(p.action == "deliver" for p in plans) or recipient.address in forwarded:
                found.append(RecipientOutcome(recipient.address, "delivered"))
            elif plans and all(p.action == "reject" for p in plans):
                found.append(RecipientOutcome(recipient.address, "rejected", plans[0].refusal or REFUSED))
            else:
                found.append(RecipientOutcome(recipient.address, "discarded"))
        return found


def initial_plan(envelope: Envelope, origin: Origin, recipients: Sequence[Recipient]) -> DeliveryPlan:
    """Every local account's copy to its INBOX, every remote recipient queued (see the module notes)."""
    plans: dict[int, RecipientPlan] = {}
    outbound: list[OutboundRecipient] = []
    forwards: list[Forward] = []
    for recipient in recipients:
        if recipient.remote:
            outbound.append(OutboundRecipient(recipient.address, recipient.orcpt, recipient.notify))
            continue
        for target in recipient.forwards:
            if all(f.target != target for f in forwards):
                forwards.append(Forward(recipient.address, target))
        for account_id in recipient.account_ids:
            plan = plans.get(account_id)
            if plan is None:
                plans[account_id] = RecipientPlan(account_id, [recipient.address])
            elif recipient.address not in plan.addresses:
                plan.addresses.append(recipient.address)
    return DeliveryPlan(envelope, origin, list(plans.values()), outbound, recipients, forwards=forwards)
