"""Running a checked Sieve script against one message for one recipient (RFC 5228 sections 2.7-2.10, 4, 5):
the tests, and the list of actions the delivery carries out.

`run(script, message)` gives an `Outcome`: the actions in the order the script took them, duplicates
left out (section 2.10.3), and whether the implicit keep still holds (section 2.10.2). Nothing is done
here; delivery carries the outcome out in one transaction (issue 15).
- Actions: `Keep` (the explicit keep, into the Inbox), `FileInto`, `Redirect`, `Discard`, `Reject` (reject
  and ereject, RFC 5429), `Vacation` (RFC 5230 and 6131; `vacation_refusal` says when RFC 3834 forbids the
  reply; the caller keeps the per-sender record of replies sent). `fileinto`, `redirect`, `discard` and
  `reject` cancel the implicit keep, except with `:copy` (RFC 3894); `vacation` does not. An explicit
  `keep` stands for the implicit one: the message is kept once.
- imap4flags (RFC 5232): setflag, addflag and removeflag change the run's internal variable (flag names
  case-insensitive, each once); keep and fileinto take `:flags` or the variable's value when they run, the
  implicit keep its value at the end (`Outcome.flags`); hasflag matches each flag of the variable.
- Tests read a `SieveMessage`: the header fields of the message as delivery stored it (RFC 2047 words
  decoded for `header`, section 5.7; addresses parsed for `address`, section 5.1), its size, and the
  envelope of this delivery (section 5.4: "from" is the reverse path, "" for the null one; "to" the
  recipient).
- Match types (section 2.7.1): `:is`, `:contains`, `:matches` ("*" any run, "?" one character, "\\\\" quotes
  the next character). Comparators (section 2.7.3, RFC 4790): i;octet (code points), i;ascii-casemap (ASCII
  letters folded; the default), i;ascii-numeric (the leading digits as a number; a value without them is
  positive infinity; equality only, here).
- Limits: at most MAX_ACTIONS actions and MAX_REDIRECTS redirects per run (more is a runtime error: the
  caller keeps the message, section 2.10.6).
"""

from __future__ import annotations

import email.utils
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from postoffice.message.headers import decode_words, header_block, iter_fields
from postoffice.sieve.checker import Checked, strings

#: Actions one run may take (a script that loops over nothing cannot take many, but a large one could).
MAX_ACTIONS = 64
#: Redirects one run may take (each one is a message sent on).
MAX_REDIRECTS = 4


class SieveRuntimeError(Exception):
    """The script cannot be carried out (too many actions, a reject with a keep): the caller keeps the
    message in the Inbox and tells the account (section 2.10.6)."""


@dataclass(frozen=True)
class Keep:
    flags: tuple[str, ...] = ()  # RFC 5232: the flags the kept copy gets


@dataclass(frozen=True)
class FileInto:
    mailbox: str
    copy: bool = False
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Redirect:
    address: str
    copy: bool = False


@dataclass(frozen=True)
class Discard:
    pass


@dataclass(frozen=True)
class Reject:
    reason: str
    extended: bool = False  # ereject: refuse in the SMTP dialogue when possible (RFC 5429 2.1)


#: RFC 5230 section 4.1: the days between two replies to one sender when the script does not say, and the
#: bounds a script's :days or :seconds (RFC 6131) is held to ("sites may impose a minimum and a maximum").
VACATION_DAYS = 7
VACATION_MIN_SECONDS = 0  # RFC 6131 section 2: ":seconds 0" replies every time
VACATION_MAX_SECONDS = 90 * 86400


@dataclass(frozen=True)
class Vacation:
    """An auto-reply (RFC 5230), to be sent when `vacation_refusal` finds no reason not to and none was sent
    to the same sender with the same `handle` in the last `seconds`."""

    reason: str
    subject: str | None = None
    from_address: str | None = None
    addresses: tuple[str, ...] = ()
    mime: bool = False
    handle: str = ""
    seconds: int = VACATION_DAYS * 86400


Action = Keep | FileInto | Redirect | Discard | Reject | Vacation


@dataclass
class Outcome:
    """What a run decided: the actions, and whether the implicit keep remains (then the message also goes
    into the Inbox, once)."""

    actions: list[Action] = field(default_factory=list)
    implicit_keep: bool = True
    #: RFC 5232 section 3: the internal flags variable at the end, which the implicit keep uses
    flags: tuple[str, ...] = ()

    def delivered_to(self) -> list[str]:
        """The mailboxes the message goes into ("INBOX" for a keep), each once, in order."""
        boxes: list[str] = []
        for action in self.actions:
            box = (
                "INBOX"
                if isinstance(action, Keep)
                else action.mailbox
                if isinstance(action, FileInto)
                else None
            )
            if box is not None and box not in boxes:
                boxes.append(box)
        if self.implicit_keep and "INBOX" not in boxes:
            boxes.append("INBOX")
        return boxes


@dataclass(frozen=True)
class SieveMessage:
    """What the tests read of a message: its header fields in order as (name, raw unfolded value), its size
    in octets, and this delivery's envelope."""

    fields: tuple[tuple[str, str], ...]
    size: int
    envelope_from: str = ""
    envelope_to: str = ""

    @classmethod
    def from_bytes(cls, raw: bytes, envelope_from: str = "", envelope_to: str = "") -> SieveMessage:
        return cls.from_header(raw, len(raw), envelope_from, envelope_to)

    @classmethod
    def from_header(
        cls, head: bytes, size: int, envelope_from: str = "", envelope_to: str = ""
    ) -> SieveMessage:
        """Of a message's header block (or the message: what follows the header is not read) and its size."""
        fields = tuple((name, value.strip()) for name, value, _codec in iter_fields(header_block(head)))
        return cls(fields, size, envelope_from, envelope_to)

    def values(self, name: str) -> list[str]:
        wanted = name.lower()
        return [value for field_name, value in self.fields if field_name.lower() == wanted]


# --------------------------------------------------------------------------------------- match and compare


_STAR, _ONE = object(), object()


@lru_cache(maxsize=1024)
def _wildcard(pattern: str) -> tuple[object, ...]:
    """A `:matches` key as tokens: _STAR ("*"), _ONE ("?") or a character (a backslash quotes the next)."""
    tokens: list[object] = []
    escaped = False
    for ch in pattern:
        if escaped:
            tokens.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "*":
            if not tokens or tokens[-1] is not _STAR:  # "**" is "*"
                tokens.append(_STAR)
        elif ch == "?":
            tokens.append(_ONE)
        else:
            tokens.append(ch)
    return tuple(tokens)


def _glob(tokens: tuple[object, ...], text: str) -> bool:
    """Whether `text` matches the tokens whole. Greedy, going back only to the last "*": at most
    len(tokens) * len(text) steps, whatever the key (a regular expression of many "*" could take
    exponential time on a long header)."""
    p = t = 0
    star, mark = -1, 0
    while t < len(text):
        token = tokens[p] if p < len(tokens) else None
        if token is _ONE or (token is not None and token is not _STAR and token == text[t]):
            p += 1
            t += 1
        elif token is _STAR:
            star, mark = p, t
            p += 1
        elif star >= 0:
            p, mark = star + 1, mark + 1
            t = mark
        else:
            return False
    while p < len(tokens) and tokens[p] is _STAR:
        p += 1
    return p == len(tokens)


def _fold(text: str) -> str:
    """i;ascii-casemap: ASCII letters upper-cased, every other character as it is."""
    return text.upper() if text.isascii() else "".join(c.upper() if c.isascii() else c for c in text)


def _numeric(text: str) -> float:
    """i;ascii-numeric: the leading digits as a number; none: positive infinity (RFC 4790 9.1)."""
    digits = re.match(r"[0-9]+", text)
    return float("inf") if digits is None else int(digits.group())


def _matcher(tags: dict[str, tuple[str, ...] | int | None]) -> Callable[[str, str], bool]:
    comparator = tags.get("comparator")
    name = comparator[0].lower() if isinstance(comparator, tuple) else "i;ascii-casemap"
    if "matches" in tags:
        if name == "i;ascii-casemap":
            return lambda value, key: _glob(_wildcard(_fold(key)), _fold(value))
        return lambda value, key: _glob(_wildcard(key), value)
    if name == "i;ascii-numeric":
        return lambda value, key: _numeric(value) == _numeric(key)  # :is (:contains is not defined for it)
    prepare: Callable[[str], str] = _fold if name == "i;ascii-casemap" else str
    if "contains" in tags:
        return lambda value, key: prepare(key) in prepare(value)
    return lambda value, key: prepare(value) == prepare(key)


def _any_match(
    tags: dict[str, tuple[str, ...] | int | None], values: Sequence[str], keys: Sequence[str]
) -> bool:
    match = _matcher(tags)
    return any(match(value, key) for value in values for key in keys)


def _address_part(tags: dict[str, tuple[str, ...] | int | None], address: str) -> str:
    local, at, domain = address.rpartition("@")
    if not at:
        local, domain = address, ""
    if "localpart" in tags:
        return local
    if "domain" in tags:
        return domain
    return address


# -------------------------------------------------------------------------------------------------- run


def flag_list(values: Sequence[str]) -> list[str]:
    """RFC 5232 section 3: a list of flags from strings, each a space-separated list; each flag once (flag
    names are case-insensitive: the first spelling is kept)."""
    flags: dict[str, str] = {}
    for value in values:
        for name in value.split():
            flags.setdefault(name.lower(), name)
    return list(flags.values())


class _Run:
    def __init__(self, message: SieveMessage) -> None:
        self.message = message
        self.outcome = Outcome()
        self.redirects = 0
        self.flags: list[str] = []  # RFC 5232's internal variable

    def act(self, action: Action, cancels_keep: bool) -> None:
        if action not in self.outcome.actions:  # section 2.10.3: the same action twice is one
            if len(self.outcome.actions) >= MAX_ACTIONS:
                raise SieveRuntimeError(f"more than {MAX_ACTIONS} actions")
            if isinstance(action, Redirect):
                self.redirects += 1
                if self.redirects > MAX_REDIRECTS:
                    raise SieveRuntimeError(f"more than {MAX_REDIRECTS} redirects")
            self.outcome.actions.append(action)
        if cancels_keep:
            self.outcome.implicit_keep = False

    def test(self, node: Checked) -> bool:
        name, tags, args = node.name, node.tags, node.positional
        if name == "true":
            return True
        if name == "false":
            return False
        if name == "not":
            return not self.test(node.tests[0])
        if name == "allof":
            return all(self.test(t) for t in node.tests)
        if name == "anyof":
            return any(self.test(t) for t in node.tests)
        if name == "size":
            limit = args[0] if isinstance(args[0], int) else 0
            return self.message.size > limit if "over" in tags else self.message.size < limit
        if name == "exists":
            return all(self.message.values(header) for header in strings(args[0]))
        if name == "hasflag":  # RFC 5232 section 4: any flag of the variable matches any of the keys
            return _any_match(tags, self.flags, strings(args[0]))
        if name == "header":
            values = [decode_words(v) for h in strings(args[0]) for v in self.message.values(h)]
            return _any_match(tags, values, strings(args[1]))
        if name == "address":
            addresses = [
                _address_part(tags, address)
                for h in strings(args[0])
                for _display, address in email.utils.getaddresses(self.message.values(h))
                if address
            ]
            return _any_match(tags, addresses, strings(args[1]))
        if name == "envelope":
            parts = [p.lower() for p in strings(args[0])]
            found = [self.message.envelope_from] if "from" in parts else []
            found += [self.message.envelope_to] if "to" in parts else []
            # the null reverse path matches as "" (section 5.4); address parts of it are "" too
            return _any_match(tags, [_address_part(tags, a) for a in found], strings(args[1]))
        raise SieveRuntimeError(f'the test "{name}" cannot be run')

    def commands(self, nodes: tuple[Checked, ...]) -> bool:
        """Run `nodes`; False when a `stop` ended the script."""
        branch_taken = False
        for node in nodes:
            name = node.name
            if name == "if":
                branch_taken = self.test(node.tests[0])
                if branch_taken and not self.commands(node.block or ()):
                    return False
                continue
            if name in ("elsif", "else"):
                if branch_taken:
                    continue
                branch_taken = name == "else" or self.test(node.tests[0])
                if branch_taken and not self.commands(node.block or ()):
                    return False
                continue
            if name == "stop":
                return False
            self.action(node)
        return True

    def action(self, node: Checked) -> None:
        name, tags, args = node.name, node.tags, node.positional
        copy = "copy" in tags
        if name == "require":
            return
        if name in ("setflag", "addflag", "removeflag"):
            given = flag_list(strings(args[0]))
            if name == "setflag":
                self.flags = given
            elif name == "addflag":
                self.flags = flag_list([*self.flags, *given])
            else:
                gone = {flag.lower() for flag in given}
                self.flags = [flag for flag in self.flags if flag.lower() not in gone]
            return
        flags = tuple(flag_list(strings(tags["flags"]))) if "flags" in tags else tuple(self.flags)
        if name == "keep":
            self.act(Keep(flags), cancels_keep=True)  # the explicit keep is the keep: not twice
        elif name == "discard":
            self.act(Discard(), cancels_keep=True)
        elif name == "fileinto":
            self.act(FileInto(strings(args[0])[0], copy, flags), cancels_keep=not copy)
        elif name == "redirect":
            self.act(Redirect(strings(args[0])[0], copy), cancels_keep=not copy)
        elif name in ("reject", "ereject"):
            self.act(Reject(strings(args[0])[0], name == "ereject"), cancels_keep=True)
        elif name == "vacation":
            self.act(_vacation(tags, strings(args[0])[0]), cancels_keep=False)
        else:
            raise SieveRuntimeError(f'the command "{name}" cannot be run')


def _vacation(tags: dict[str, tuple[str, ...] | int | None], reason: str) -> Vacation:
    """The Vacation of a `vacation` command: its period held to the bounds, and its handle (RFC 5230 4.2:
    without :handle, one made of the reason and the other arguments that change the reply)."""
    subject, from_address = strings(tags.get("subject")), strings(tags.get("from"))
    days, seconds = tags.get("days"), tags.get("seconds")
    if isinstance(seconds, int):
        period = seconds
    else:
        period = max(days, 1) * 86400 if isinstance(days, int) else VACATION_DAYS * 86400
    handle = strings(tags.get("handle"))
    made = hashlib.sha256(
        "\0".join((reason, *subject, "\1", *from_address, "\1", "mime" if "mime" in tags else "")).encode()
    ).hexdigest()[:32]
    return Vacation(
        reason,
        subject[0] if subject else None,
        from_address[0] if from_address else None,
        strings(tags.get("addresses")),
        "mime" in tags,
        handle[0] if handle else made,
        min(max(period, VACATION_MIN_SECONDS), VACATION_MAX_SECONDS),
    )


#: Senders that are programs, not people (RFC 5230 section 4.6, RFC 3834 section 2): no replies to them.
_PROGRAM_SENDERS = re.compile(r"(?i)^(?:mailer-daemon|listserv|majordomo|owner-.*|.*-request|.*-bounces?)$")


def vacation_refusal(message: SieveMessage, vacation: Vacation, own: Sequence[str]) -> str | None:
    """Why no auto-reply goes to this message (None: one may, if none went to this sender with this handle
    within `vacation.seconds`). `own`: the recipient account's addresses, to which `vacation.addresses` add
    (RFC 5230 section 4.5). RFC 3834 section 2 and RFC 5230 sections 4.5-4.6."""
    sender = message.envelope_from
    if not sender:
        return "the reverse path is null"
    mine = {a.lower() for a in (*own, *vacation.addresses)}
    if sender.lower() in mine:
        return "the sender is the recipient"
    if _PROGRAM_SENDERS.match(sender.rpartition("@")[0] or sender):
        return "the sender is a program"
    auto = [v.strip().lower() for v in message.values("Auto-Submitted")]
    if any(v.split(";")[0].strip() != "no" for v in auto):
        return "the message was sent automatically (Auto-Submitted)"
    if any(v.strip().lower() in ("bulk", "list", "junk") for v in message.values("Precedence")):
        return "the message is bulk or list mail (Precedence)"
    if any(message.values(h) for h in ("List-Id", "List-Unsubscribe", "List-Post")):
        return "the message came through a mailing list"
    named = {
        address.lower()
        for h in ("To", "Cc", "Bcc", "Resent-To", "Resent-Cc", "Resent-Bcc")
        for _display, address in email.utils.getaddresses(message.values(h))
    }
    if not named & mine:
        return "none of the recipient's addresses is in To, Cc or Bcc"
    return None


def run(script: tuple[Checked, ...], message: SieveMessage) -> Outcome:
    """The outcome of `script` (checked) for `message` (see the module docstring). SieveRuntimeError when
    it cannot be carried out: the caller keeps the message."""
    running = _Run(message)
    running.commands(script)
    outcome = running.outcome
    outcome.flags = tuple(running.flags)
    rejects = [a for a in outcome.actions if isinstance(a, Reject)]
    if rejects and (
        len(rejects) > 1 or any(isinstance(a, (Keep, FileInto, Redirect, Vacation)) for a in outcome.actions)
    ):
        # RFC 5429 2.1: reject cannot go with an action that delivers the message or with vacation, nor with
        # another reject
        raise SieveRuntimeError("reject cannot go with keep, fileinto, redirect, vacation or another reject")
    if sum(isinstance(a, Vacation) for a in outcome.actions) > 1:
        raise SieveRuntimeError("more than one vacation")
    if any(isinstance(a, Keep) for a in outcome.actions):
        outcome.implicit_keep = False  # the explicit keep stands for it: the message is kept once
    return outcome
