"""Running a checked Sieve script against one message for one recipient (RFC 5228 sections 2.7-2.10, 4, 5):
the tests, and the list of actions the delivery carries out.

`run(script, message)` gives an `Outcome`: the actions in the order the script took them, duplicates
left out (section 2.10.3), and whether the implicit keep still holds (section 2.10.2). Nothing is done
here; delivery carries the outcome out in one transaction (issue 15).
- Actions: `Keep` (the explicit keep, into the Inbox), `FileInto`, `Redirect`, `Discard`, `Reject` (reject
  and ereject, RFC 5429). `fileinto`, `redirect`, `discard` and `reject` cancel the implicit keep, except
  with `:copy` (RFC 3894). An explicit `keep` stands for the implicit one: the message is kept once.
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
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from postoffice.message.headers import decode_words, iter_fields
from postoffice.sieve.checker import Checked

#: Actions one run may take (a script that loops over nothing cannot take many, but a large one could).
MAX_ACTIONS = 64
#: Redirects one run may take (each one is a message sent on).
MAX_REDIRECTS = 4


class SieveRuntimeError(Exception):
    """The script cannot be carried out (too many actions, a reject with a keep): the caller keeps the
    message in the Inbox and tells the account (section 2.10.6)."""


@dataclass(frozen=True)
class Keep:
    pass


@dataclass(frozen=True)
class FileInto:
    mailbox: str
    copy: bool = False


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


Action = Keep | FileInto | Redirect | Discard | Reject


@dataclass
class Outcome:
    """What a run decided: the actions, and whether the implicit keep remains (then the message also goes
    into the Inbox, once)."""

    actions: list[Action] = field(default_factory=list)
    implicit_keep: bool = True

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
        end = min((at for at in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if at >= 0), default=len(raw))
        fields = tuple((name, value.strip()) for name, value, _codec in iter_fields(raw[: end + 2]))
        return cls(fields, len(raw), envelope_from, envelope_to)

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


class _Run:
    def __init__(self, message: SieveMessage) -> None:
        self.message = message
        self.outcome = Outcome()
        self.redirects = 0

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
            return all(self.message.values(header) for header in _strings(args[0]))
        if name == "header":
            values = [decode_words(v) for h in _strings(args[0]) for v in self.message.values(h)]
            return _any_match(tags, values, _strings(args[1]))
        if name == "address":
            addresses = [
                _address_part(tags, address)
                for h in _strings(args[0])
                for _display, address in email.utils.getaddresses(self.message.values(h))
                if address
            ]
            return _any_match(tags, addresses, _strings(args[1]))
        if name == "envelope":
            parts = [p.lower() for p in _strings(args[0])]
            found = [self.message.envelope_from] if "from" in parts else []
            found += [self.message.envelope_to] if "to" in parts else []
            # the null reverse path matches as "" (section 5.4); address parts of it are "" too
            return _any_match(tags, [_address_part(tags, a) for a in found], _strings(args[1]))
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
        if name == "keep":
            self.act(Keep(), cancels_keep=True)  # the explicit keep is the keep: not twice
        elif name == "discard":
            self.act(Discard(), cancels_keep=True)
        elif name == "fileinto":
            self.act(FileInto(_strings(args[0])[0], copy), cancels_keep=not copy)
        elif name == "redirect":
            self.act(Redirect(_strings(args[0])[0], copy), cancels_keep=not copy)
        elif name in ("reject", "ereject"):
            self.act(Reject(_strings(args[0])[0], name == "ereject"), cancels_keep=True)
        else:
            raise SieveRuntimeError(f'the command "{name}" cannot be run')


def _strings(value: tuple[str, ...] | int | None) -> tuple[str, ...]:
    return value if isinstance(value, tuple) else ()


def run(script: tuple[Checked, ...], message: SieveMessage) -> Outcome:
    """The outcome of `script` (checked) for `message` (see the module docstring). SieveRuntimeError when
    it cannot be carried out: the caller keeps the message."""
    running = _Run(message)
    running.commands(script)
    outcome = running.outcome
    rejects = [a for a in outcome.actions if isinstance(a, Reject)]
    if rejects and (
        len(rejects) > 1 or any(isinstance(a, (Keep, FileInto, Redirect)) for a in outcome.actions)
    ):
        # RFC 5429 2.1: reject cannot go with an action that delivers the message, nor with another reject
        raise SieveRuntimeError("reject cannot go with keep, fileinto, redirect or another reject")
    if any(isinstance(a, Keep) for a in outcome.actions):
        outcome.implicit_keep = False  # the explicit keep stands for it: the message is kept once
    return outcome
