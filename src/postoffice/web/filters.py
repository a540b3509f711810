"""The webmail's filters (issue 15, docs/decisions/0088): an account's Sieve script (RFC 5228) read as form
rules, one vacation reply (RFC 5230) and text kept as it was, and written back. Sans-IO: text in, text out.

Implementation notes
- `read(text)` cuts the script at its top-level commands (`grammar.parse_spans`). A block is the comments
  and white space before a command (its gap), the command itself, and the comments after it on the same
  line (its trail: `} # why` belongs to the `}`); an `if` with the `elsif`s and `else` after it is one block.
  A block the forms can show exactly becomes a `Rule`, or THE `Vacation` (the first one found); every other
  block is "advanced" and kept as its text. `render` writes each block it was not asked to change as it was,
  byte for byte, so a script from a ManageSieve client (sieve-connect, Thunderbird, Roundcube) loses nothing
  when a rule is added, changed, moved or deleted with the forms. A byte order mark at the start (which the
  parser skips) is set aside by `read` and written first again by `render`.
- A rule is an `if` whose test is one condition, allof/anyof of conditions, or `true` (every message), and
  whose block holds its actions in this order: addflag of \\Seen and \\Flagged (RFC 5232), fileinto,
  redirect, keep, the reply, discard, stop. Conditions: `address` :is/:contains/:matches on From, or on To
  and Cc together; `header` on Subject or a named field; `exists` of a named field; `size` :over/:under;
  each but size may be negated with `not`. Nothing else is read as a rule (no comparators, no other tags,
  one key per test), so a rule saved back does what the person saw: `parse(generate(rule)) == rule`
  (property-tested). `redirect :copy` (RFC 3894) reads as a forward plus "keep a copy" with `copy` set, and
  is written back as `redirect :copy` while both stay chosen (an explicit `keep` is not the same: a later
  fileinto or discard does not cancel it).
- A rule's name is the comment line directly before it, `# rule:[NAME]` (Roundcube's form, which other tools
  read): the gap's last comment, a hash comment on a line of its own. Text inside bracket comments, and
  comments further up, are never read or changed as names.
- Replies: RFC 5230 section 4.7 allows one vacation action per run (the interpreter fails the run on a
  second one, and the message is kept unfiltered). A script with one reply (a rule's `vacation :days 1`, or
  the vacation reply) needs nothing more. With two or more, every reply the forms know is written guarded
  by the variable REPLIED (RFC 5229): the vacation reply, first, sets it; a rule's reply is
  `if string :is "${REPLIED}" "" { set REPLIED; vacation ...; }`. `render` rewrites the replies it reads
  unguarded (written by another program) when the script has two, and puts the vacation reply first. A
  reply that would make such a script unsafe is refused (`reply_problem`, FilterProblem from `add_rule`,
  `replace_rule`, `set_vacation`): another vacation in an advanced block that is not guarded so (it cannot
  be rewritten); a "${" in an advanced block of a script that does not require "variables" yet (it would
  start to mean a variable); REPLIED used by an advanced block other than as such a guard.
- The vacation reply: `if <dates> { [set REPLIED;] vacation ...; }`, the dates `currentdate :value "ge"/"le"
  "date"` (RFC 5260, RFC 5231) on the server's clock, `true` for no dates; with neither dates nor guard it is
  the `vacation` command alone (`if true { vacation :days 1 "..."; }` would read as a rule's reply). It goes
  first, after `require`, so that a rule's `stop` never skips it (a vacation action does not cancel the
  implicit keep: the rules after it still file the message). One written by another program (a bare
  `vacation`, or one inside a date test) is read too, if it has no other tags than :days, :subject and
  :addresses.
- `require` is recomputed: what the rules and the vacation reply need (walked with the checker's specs);
  while advanced blocks remain, every capability the script required before stays required as well (what
  they need is not worked out), and a require that names the same capabilities as before is kept as text.
- Values the forms take never hold "${" (with "variables" required that would be a variable reference, and
  Sieve has no escape for it), nor control characters; multi-line texts have CRLF line ends (what `parse`
  gives back).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass, field
from datetime import date

from postoffice.sieve.checker import COMMANDS, TESTS
from postoffice.sieve.grammar import Argument, Command, Number, StringList, Tag, Test, parse_spans, to_text
from postoffice.sieve.mailto import ADDRESS

#: The variable that says a reply went out in this run (module notes).
REPLIED = "auto_reply_sent"
#: The name of the script the webmail makes when the account has no active one.
SCRIPT_NAME = "webmail"
#: What the form fields take at most.
MAX_CONDITIONS = 20
MAX_VALUE = 1000
MAX_NAME = 100
MAX_TEXT = 10000
MAX_ADDRESSES = 20
MAX_DAYS = 90
#: What the interpreter uses when :days is not given (RFC 5230 section 4.1 leaves it to the site).
DEFAULT_DAYS = 7

FIELDS = ("from", "to", "subject", "header", "size")
TEXT_OPS = ("contains", "not-contains", "is", "not-is", "matches", "not-matches")
HEADER_OPS = (*TEXT_OPS, "exists", "not-exists")
SIZE_OPS = ("over", "under")
_FLAGS = ("\\Seen", "\\Flagged")
_MATCH_TAGS = frozenset({"is", "contains", "matches"})
_FIELD_NAME = re.compile(r"[!-9;-~]{1,100}")  # RFC 5322 section 3.6.8: ftext
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u2028\u2029\ufeff]")  # and the BOM, refused by parse
_RULE_NAME = re.compile(r"#[ \t]*rule:[ \t]*(?:\[(.*)\]|(.*?))[ \t]*")  # a hash comment, without its line end
_BOM = "\ufeff"
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_SIZE = re.compile(r"([0-9]{1,12})(?:[.,]([0-9]{1,3}))?\s*([kmg]?)(?:i?b|bytes?)?", re.IGNORECASE)


@dataclass(frozen=True)
class Condition:
    """One condition of a rule: `field` is one of FIELDS; `op` one of HEADER_OPS (from, to and subject: one
    of TEXT_OPS) or SIZE_OPS; `value` the text compared (size: octets, in decimal digits); `header` the
    field name for "header"."""

    field: str
    op: str
    value: str = ""
    header: str = ""


@dataclass(frozen=True)
class Rule:
    """A filter rule as the form shows it (module notes): its conditions (none: every message; `any_of`:
    one of them is enough, with two or more) and its actions."""

    name: str = ""
    conditions: tuple[Condition, ...] = ()
    any_of: bool = False
    mark_read: bool = False
    flag: bool = False
    move_to: str = ""
    forward_to: str = ""
    keep: bool = False
    reply: str = ""
    discard: bool = False
    stop: bool = False
    copy: bool = False  # forward and keep written as `redirect :copy` (module notes)


@dataclass(frozen=True)
class Vacation:
    """The vacation reply (RFC 5230): its text, subject (empty: "Auto: " and the original's), the account's
    other addresses (section 4.5), the days between two replies to one sender, and the first and last day
    it answers ("YYYY-MM-DD"; empty: no bound)."""

    text: str
    subject: str = ""
    addresses: tuple[str, ...] = ()
    days: int = DEFAULT_DAYS
    first_day: str = ""
    last_day: str = ""


@dataclass(frozen=True)
class Block:
    """A piece of the script: `gap` (the white space and comments before it), `text` (its commands) and
    `trail` (the comments after them on the same line, without its line end). `kind`: "require", "rule",
    "vacation" or "advanced". `changed`: written from `rule` or `vacation` on render instead of kept as
    `text`; `moved`: put in another place (so it starts on a line of its own)."""

    kind: str
    gap: str
    text: str
    rule: Rule | None = None
    vacation: Vacation | None = None
    changed: bool = False
    moved: bool = False
    commands: tuple[Command, ...] = field(default=(), compare=False, repr=False)
    trail: str = ""

    @property
    def name(self) -> str:
        """The block's name from its `# rule:[NAME]` comment ("" when it has none)."""
        return rule_name(self.gap)

    @property
    def key(self) -> str:
        """What identifies the block in a form across versions of the script (its name and text), so that a
        form made from an older version finds its block again, or none."""
        return hashlib.sha256(f"{self.name}\0{self.text}".encode("utf-8", "surrogatepass")).hexdigest()[:20]

    @property
    def line(self) -> int:
        """The line of the script where the block's commands start (0: a block not yet written)."""
        return self.commands[0].line if self.commands else 0


@dataclass(frozen=True)
class FilterScript:
    """A script cut into blocks (module notes): the blocks, the text after the last one, the capabilities
    its require commands named (in their order), its line ends, and whether it was edited."""

    blocks: tuple[Block, ...] = ()
    tail: str = ""
    requires: tuple[str, ...] = ()
    newline: str = "\r\n"
    edited: bool = False  # whether a block was added, changed, moved or deleted since `read`
    bom: bool = False  # whether the text started with a byte order mark (written first again)

    @property
    def vacation(self) -> Vacation | None:
        for block in self.blocks:
            if block.vacation is not None:
                return block.vacation
        return None

    def shown(self) -> list[tuple[int, Block]]:
        """The blocks the filter list shows (rules and advanced ones), with their index among `blocks`."""
        return [(i, b) for i, b in enumerate(self.blocks) if b.kind in ("rule", "advanced")]

    def other_vacations(self) -> bool:
        """Whether an advanced block holds a vacation action not guarded by REPLIED (another reply the forms
        do not show, and cannot go with one of theirs: module notes)."""
        return any(b.kind == "advanced" and _unguarded(b.commands) for b in self.blocks)

    def find_rule(self, key: str) -> int | None:
        """The index among `blocks` of the one rule whose `key` is `key`, or None (none, or several)."""
        found = [i for i, b in enumerate(self.blocks) if b.kind == "rule" and b.key == key]
        return found[0] if len(found) == 1 else None


class FilterProblem(ValueError):
    """A rule or vacation reply the forms cannot write; the message is for people (translated when shown,
    with `values` put in)."""

    def __init__(self, message: str, **values: object) -> None:
        super().__init__(message)
        self.message = message
        self.values = values


def _(text: str) -> str:
    """Marks a message for the catalog; the web layer translates it when it is shown."""
    return text


# ------------------------------------------------------------------------------------------------ reading


def comments(gap: str) -> list[tuple[int, int, bool]]:
    """The comments of `gap`, text the parser skipped between commands (white space and comments only):
    (start, end, whether it is a hash comment) of each; a hash comment's end is after its line end, if it
    has one. A "#" inside a bracket comment, or a "/*" after a "#", starts nothing (RFC 5228 section 2.3)."""
    found: list[tuple[int, int, bool]] = []
    i = 0
    while i < len(gap):
        if gap.startswith("#", i):
            end = gap.find("\n", i)
            end = len(gap) if end < 0 else end + 1
            found.append((i, end, True))
        elif gap.startswith("/*", i):
            end = gap.find("*/", i + 2)
            end = len(gap) if end < 0 else end + 2
            found.append((i, end, False))
        else:
            i += 1
            continue
        i = end
    return found


def _name_span(gap: str) -> tuple[int, int] | None:
    """Where the `# rule:[NAME]` line of `gap` is (from its line's start to after its line end): the gap's
    last comment, a hash comment on a line of its own, so directly before the command."""
    found = comments(gap)
    if not found:
        return None
    start, end, hashed = found[-1]
    line_start = gap.rfind("\n", 0, start) + 1
    if not hashed or gap[line_start:start].strip(" \t"):
        return None
    if not _RULE_NAME.fullmatch(gap[start:end].rstrip("\r\n")):
        return None
    return line_start, end


def rule_name(gap: str) -> str:
    """The name in the `# rule:[NAME]` (or `# rule: NAME`) comment line directly before a command, the last
    comment of its gap `gap` ("" when there is none)."""
    span = _name_span(gap)
    if span is None:
        return ""
    match = _RULE_NAME.fullmatch(gap[span[0] : span[1]].strip(" \t\r\n"))
    if match is None:
        return ""
    bracketed, plain = match.groups()
    return str(bracketed or plain or "").strip()


def _trail_end(text: str, at: int, stop: int) -> int:
    """Where the comments after a command that ends at `at` end on its line (`at` when there are none; a
    hash comment without its line end), not beyond `stop` (where the next command starts)."""
    i = end = at
    while i < stop:
        if text[i] in " \t":
            i += 1
        elif text.startswith("#", i):
            newline = text.find("\n", i, stop)
            newline = stop if newline < 0 else newline
            return newline - 1 if text[newline - 1] == "\r" else newline
        elif text.startswith("/*", i):
            i = end = text.index("*/", i + 2) + 2
        else:
            break
    return end


def read(text: str) -> FilterScript:
    """The script `text` cut into blocks (module notes); grammar.SieveSyntaxError when it does not parse."""
    bom = text.startswith(_BOM)
    text = text.removeprefix(_BOM)
    parsed = parse_spans(text)
    blocks: list[Block] = []
    requires: list[str] = []
    end = 0
    starts = [start for start, _stop in parsed.spans[1:]] + [len(text)] * bool(parsed.spans)
    for command, (start, stop), following in zip(parsed.commands, parsed.spans, starts, strict=True):
        gap, own = text[end:start], text[start:stop]
        end = _trail_end(text, stop, following)
        trail = text[stop:end]
        if command.name in ("elsif", "else") and blocks and blocks[-1].kind != "require":
            # an elsif or else makes its if advanced, even when the if alone would have been a rule
            last = blocks[-1]
            text_of = last.text + last.trail + gap + own
            blocks[-1] = Block("advanced", last.gap, text_of, commands=(*last.commands, command), trail=trail)
            continue
        if command.name == "require":
            for argument in command.arguments:
                if isinstance(argument, StringList):
                    requires.extend(v.lower() for v in argument.values if v.lower() not in requires)
            blocks.append(Block("require", gap, own, commands=(command,), trail=trail))
            continue
        rule = read_rule(command)
        if rule is not None:
            rule = dataclasses.replace(rule, name=rule_name(gap))
            blocks.append(Block("rule", gap, own, rule=rule, commands=(command,), trail=trail))
            continue
        vacation = None if any(b.kind == "vacation" for b in blocks) else read_vacation(command)
        if vacation is not None:
            blocks.append(Block("vacation", gap, own, vacation=vacation, commands=(command,), trail=trail))
            continue
        blocks.append(Block("advanced", gap, own, commands=(command,), trail=trail))
    newline = "\n" if "\n" in text and "\r\n" not in text else "\r\n"
    return FilterScript(tuple(blocks), text[end:], tuple(requires), newline, bom=bom)


def _tags_and_positional(arguments: tuple[Argument, ...]) -> tuple[list[Tag], list[Argument]] | None:
    """The tags (before) and the positional arguments (after) of a node, None when a tag follows a
    positional argument or a tag takes an argument (none of the recognised shapes has one)."""
    tags: list[Tag] = []
    positional: list[Argument] = []
    for argument in arguments:
        if isinstance(argument, Tag):
            if positional:
                return None
            tags.append(argument)
        else:
            positional.append(argument)
    return tags, positional


def _one_string(argument: Argument) -> str | None:
    if isinstance(argument, StringList) and len(argument.values) == 1 and "${" not in argument.values[0]:
        return argument.values[0]
    return None


def _strings(argument: Argument) -> tuple[str, ...] | None:
    if isinstance(argument, StringList) and all("${" not in v for v in argument.values):
        return argument.values
    return None


def read_condition(test: Test) -> Condition | None:
    """The condition a test is, or None when it is not one the form shows (module notes)."""
    negated = test.name == "not"
    if negated:
        if len(test.tests) != 1 or test.test_list or test.arguments:
            return None
        test = test.tests[0]
    if test.tests or test.test_list:
        return None
    split = _tags_and_positional(test.arguments)
    if split is None:
        return None
    tags, positional = split
    names = [t.name for t in tags]
    prefix = "not-" if negated else ""
    if test.name in ("header", "address"):
        allowed = _MATCH_TAGS | ({"all"} if test.name == "address" else set())
        if len(names) != len(set(names)) or not set(names) <= allowed or len(set(names) & _MATCH_TAGS) > 1:
            return None
        if len(positional) != 2:
            return None
        fields, value = _strings(positional[0]), _one_string(positional[1])
        if not fields or value is None:
            return None
        match = next((n for n in names if n in _MATCH_TAGS), "is")
        lowered = tuple(f.lower() for f in fields)
        if test.name == "address":
            if lowered == ("from",):
                return Condition("from", prefix + match, value)
            if lowered == ("to", "cc"):
                return Condition("to", prefix + match, value)
            return None
        if len(fields) != 1 or not _FIELD_NAME.fullmatch(fields[0]):
            return None
        if lowered == ("subject",):
            return Condition("subject", prefix + match, value)
        return Condition("header", prefix + match, value, fields[0])
    if test.name == "exists":
        if tags or len(positional) != 1:
            return None
        name = _one_string(positional[0])
        if name is None or not _FIELD_NAME.fullmatch(name):
            return None
        return Condition("header", prefix + "exists", "", name)
    if test.name == "size" and not negated:
        if len(tags) != 1 or names[0] not in SIZE_OPS or len(positional) != 1:
            return None
        if not isinstance(positional[0], Number):
            return None
        return Condition("size", names[0], str(positional[0].value))
    return None


def _read_test(test: Test) -> tuple[tuple[Condition, ...], bool] | None:
    """(conditions, any_of) of a rule's test."""
    if test.name == "true" and not test.arguments and not test.tests:
        return (), False
    if test.name in ("allof", "anyof") and test.test_list and not test.arguments:
        conditions = tuple(read_condition(t) for t in test.tests)
        if len(conditions) < 2 or len(conditions) > MAX_CONDITIONS or any(c is None for c in conditions):
            return None
        return tuple(c for c in conditions if c is not None), test.name == "anyof"
    one = read_condition(test)
    return None if one is None else ((one,), False)


def _is_guard(test: Test) -> bool:
    """`string :is "${REPLIED}" ""`: the test before a reply (module notes)."""
    return test == Test(
        "string", (Tag("is"), StringList(("${" + REPLIED + "}",), False), StringList(("",), False))
    )


def _is_set(command: Command) -> bool:
    """`set REPLIED "..."` (any value)."""
    if command.name != "set" or command.block is not None or command.tests or len(command.arguments) != 2:
        return False
    name, value = command.arguments
    return _one_string(name) == REPLIED and isinstance(value, StringList) and len(value.values) == 1


def _read_reply(command: Command) -> str | None:
    """The text of a rule's reply: the guarded `vacation :days 1 "text"` the webmail writes, or a bare one."""
    if (
        command.name == "if"
        and len(command.tests) == 1
        and not command.test_list
        and command.block is not None
    ):
        if not _is_guard(command.tests[0]) or command.arguments or len(command.block) != 2:
            return None
        if not _is_set(command.block[0]):
            return None
        command = command.block[1]
    if (
        command.name != "vacation"
        or command.block is not None
        or command.tests
        or len(command.arguments) != 3
    ):
        return None
    days, number, reason = command.arguments
    if days != Tag("days") or number != Number(1):
        return None
    return _one_string(reason)


def read_rule(command: Command) -> Rule | None:
    """The rule an `if` is, or None (module notes)."""
    if command.name != "if" or command.arguments or command.test_list or len(command.tests) != 1:
        return None
    if command.block is None:
        return None
    test = _read_test(command.tests[0])
    if test is None:
        return None
    conditions, any_of = test
    values: dict[str, object] = {}
    order = ("flags", "fileinto", "redirect", "keep", "reply", "discard", "stop")
    position = 0
    for action in command.block:
        kind = _action_kind(action)
        if kind is None or kind not in order[position:]:
            return None
        position = order.index(kind) + (0 if kind == "flags" else 1)
        if kind == "flags":
            flags = _read_flags(action)
            if flags is None:
                return None
            for flag in flags:
                key = "mark_read" if flag == "\\seen" else "flag"
                if key in values:
                    return None
                values[key] = True
        elif kind == "fileinto":
            if (
                len(action.arguments) != 1
                or (folder := _one_string(action.arguments[0])) is None
                or not folder
            ):
                return None
            values["move_to"] = folder
        elif kind == "redirect":
            address = _read_redirect(action)
            if address is None:
                return None
            values["forward_to"], copy = address
            if copy:
                values["keep"] = values["copy"] = True
        elif kind == "keep":
            if action.arguments or "copy" in values:  # `redirect :copy; keep;` is not what the form writes
                return None
            values["keep"] = True
        elif kind == "reply":
            reply = _read_reply(action)
            if reply is None or not reply:
                return None
            values["reply"] = reply
        elif kind == "discard":
            if action.arguments:
                return None
            values["discard"] = True
        else:
            if action.arguments:
                return None
            values["stop"] = True
    if not values:
        return None
    rule = Rule(conditions=conditions, any_of=any_of, **values)  # type: ignore[arg-type]
    return rule if not rule_problem(rule) else None


def _action_kind(action: Command) -> str | None:
    if action.tests and action.name != "if":
        return None
    if action.block is not None and action.name != "if":
        return None
    if action.name == "addflag":
        return "flags"
    if action.name in ("fileinto", "redirect", "keep", "discard", "stop"):
        return action.name
    if action.name in ("if", "vacation"):
        return "reply"
    return None


def _read_flags(action: Command) -> list[str] | None:
    if len(action.arguments) != 1:
        return None
    flags = _strings(action.arguments[0])
    if not flags:
        return None
    lowered = [f.lower() for f in flags]
    if len(set(lowered)) != len(lowered) or not set(lowered) <= {"\\seen", "\\flagged"}:
        return None
    return lowered


def _read_redirect(action: Command) -> tuple[str, bool] | None:
    split = _tags_and_positional(action.arguments)
    if split is None:
        return None
    tags, positional = split
    if [t.name for t in tags] not in ([], ["copy"]) or len(positional) != 1:
        return None
    address = _one_string(positional[0])
    if address is None or not _address(address):
        return None
    return address, bool(tags)


def _read_dates(test: Test) -> tuple[str, str] | None:
    """(first day, last day) of the vacation reply's test: `true`, currentdate "ge" or "le", or allof both."""
    if test.name == "true" and not test.arguments and not test.tests:
        return "", ""
    if test.name == "allof" and test.test_list and len(test.tests) == 2:
        first, last = _read_day(test.tests[0]), _read_day(test.tests[1])
        if first is None or last is None or first[0] != "ge" or last[0] != "le":
            return None
        return first[1], last[1]
    one = _read_day(test)
    if one is None:
        return None
    return (one[1], "") if one[0] == "ge" else ("", one[1])


def _read_day(test: Test) -> tuple[str, str] | None:
    """("ge" or "le", "YYYY-MM-DD") of `currentdate :value "ge" "date" "YYYY-MM-DD"`."""
    if test.name != "currentdate" or test.tests or len(test.arguments) != 4:
        return None
    tag, relation, part, key = test.arguments
    if tag != Tag("value") or _one_string(part) != "date":
        return None
    relation_text, day = _one_string(relation), _one_string(key)
    if relation_text not in ("ge", "le") or day is None or not _valid_day(day):
        return None
    return relation_text, day


def _valid_day(day: str) -> bool:
    if not _DAY.fullmatch(day):
        return False
    try:
        date.fromisoformat(day)
    except ValueError:
        return False
    return True


def read_vacation(command: Command) -> Vacation | None:
    """The vacation reply a top-level command is, or None (module notes)."""
    first = last = ""
    if command.name == "if":
        if command.arguments or command.test_list or len(command.tests) != 1 or not command.block:
            return None
        dates = _read_dates(command.tests[0])
        if dates is None:
            return None
        first, last = dates
        inner = command.block
        if len(inner) == 2 and _is_set(inner[0]):
            inner = inner[1:]
        if len(inner) != 1:
            return None
        command = inner[0]
    if command.name != "vacation" or command.block is not None or command.tests:
        return None
    arguments = list(command.arguments)
    values: dict[str, object] = {}
    i = 0
    while i < len(arguments) - 1:
        tag = arguments[i]
        if not isinstance(tag, Tag) or tag.name not in ("days", "subject", "addresses") or tag.name in values:
            return None
        value = arguments[i + 1]
        if tag.name == "days":
            if not isinstance(value, Number) or not 1 <= value.value <= MAX_DAYS:
                return None
            values["days"] = value.value
        elif tag.name == "subject":
            subject = _one_string(value)
            if subject is None:
                return None
            values["subject"] = subject
        else:
            addresses = _strings(value)
            if addresses is None or not all(map(_address, addresses)):
                return None
            values["addresses"] = tuple(addresses)
        i += 2
    if i != len(arguments) - 1:
        return None
    text = _one_string(arguments[-1])
    if text is None:
        return None
    vacation = Vacation(text, first_day=first, last_day=last, **values)  # type: ignore[arg-type]
    return vacation if vacation_problem(vacation) is None else None


# ---------------------------------------------------------------------------------------------- checking


def clean_line(value: str, limit: int = MAX_VALUE) -> str:
    """A one-line form value: surrounding white space and control characters gone, at most `limit`."""
    return _CONTROL.sub("", value.replace("\r", " ").replace("\n", " ").replace("\t", " ")).strip()[:limit]


def clean_text(value: str, limit: int = MAX_TEXT) -> str:
    """A multi-line form value: each line with CRLF after it (what Sieve strings hold, written as a multi-line
    string), no white space at line ends, no control characters, at most `limit` characters; "" for none."""
    text = _CONTROL.sub("", value.replace("\r\n", "\n").replace("\r", "\n"))[:limit].rstrip()
    return "".join(line.rstrip() + "\r\n" for line in text.split("\n")) if text else ""


def _one_line(value: str) -> bool:
    """Whether `value` can be written as a one-line value (no line end, no control character)."""
    return "\r" not in value and "\n" not in value and not _CONTROL.search(value)


def _lines(value: str) -> bool:
    """Whether `value` is text that `parse` gives back as it is: CRLF line ends, no control character."""
    return not _CONTROL.search(value) and _one_line(value.replace("\r\n", ""))


def _address(value: str) -> bool:
    """Whether `value` is an address a redirect or :addresses may name (mailto.ADDRESS, no control
    character, no variable)."""
    return bool(ADDRESS.fullmatch(value)) and _one_line(value) and "${" not in value


def _value_problem(value: str) -> FilterProblem | None:
    if "${" in value:
        return FilterProblem(_('Filters cannot contain "${".'))
    return None


def condition_problem(condition: Condition) -> FilterProblem | None:
    """Why the form cannot write `condition`, or None."""
    if condition.field not in FIELDS:
        return FilterProblem(_("Choose what the condition looks at."))
    if condition.field == "size":
        if condition.op not in SIZE_OPS:
            return FilterProblem(_("A size is larger or smaller than a number."))
        if not (condition.value.isascii() and condition.value.isdigit()) or len(condition.value) > 15:
            return FilterProblem(_("Write a size such as 500 KB or 5 MB."))
        return None
    if condition.op not in (HEADER_OPS if condition.field == "header" else TEXT_OPS):
        return FilterProblem(_("Choose how the condition compares."))
    if condition.field == "header" and (
        not _FIELD_NAME.fullmatch(condition.header) or "${" in condition.header
    ):
        return FilterProblem(_("Write the name of a header field, such as List-Id."))
    if condition.field != "header" and condition.header:
        return FilterProblem(_("Only a header condition names a header field."))
    if condition.op.endswith("exists"):
        return None if not condition.value else FilterProblem(_("Whether a field exists takes no text."))
    if not condition.value:
        return FilterProblem(_("Write the text the condition looks for."))
    if not _one_line(condition.value):
        return FilterProblem(_("A condition's text is one line."))
    return _value_problem(condition.value)


def rule_problem(rule: Rule) -> FilterProblem | None:
    """Why the form cannot write `rule`, or None."""
    if not _one_line(rule.name):
        return FilterProblem(_("A filter's name is one line."))
    if len(rule.conditions) > MAX_CONDITIONS:
        return FilterProblem(_("A filter has at most %(n)d conditions."), n=MAX_CONDITIONS)
    if rule.any_of and len(rule.conditions) < 2:
        return FilterProblem(_('"Any of" needs two conditions or more.'))
    for condition in rule.conditions:
        problem = condition_problem(condition)
        if problem is not None:
            return problem
    acts = (
        rule.mark_read,
        rule.flag,
        rule.move_to,
        rule.forward_to,
        rule.keep,
        rule.reply,
        rule.discard,
        rule.stop,
    )
    if not any(acts):
        return FilterProblem(_("Choose at least one thing the filter does."))
    if rule.discard and (rule.move_to or rule.forward_to or rule.keep):
        return FilterProblem(_("A filter that deletes a message cannot also move, forward or keep it."))
    if rule.move_to and (not _one_line(rule.move_to) or _value_problem(rule.move_to)):
        return FilterProblem(_("Choose a folder."))
    if rule.forward_to and not _address(rule.forward_to):
        return FilterProblem(_("The address to forward to is not a valid email address."))
    if rule.copy and not (rule.forward_to and rule.keep):  # `redirect :copy` is a forward that keeps
        return FilterProblem(_("This filter cannot be written as it is."))
    if rule.reply and (not _lines(rule.reply) or _value_problem(rule.reply)):
        return _value_problem(rule.reply) or FilterProblem(_("The reply cannot be written as it is."))
    return None


def vacation_problem(vacation: Vacation) -> FilterProblem | None:
    """Why the form cannot write `vacation`, or None."""
    if not vacation.text:
        return FilterProblem(_("Write the message of the reply."))
    if not _lines(vacation.text) or not _one_line(vacation.subject):
        return FilterProblem(_("The reply cannot be written as it is."))
    problem = _value_problem(vacation.text) or _value_problem(vacation.subject)
    if problem is not None:
        return problem
    if not 1 <= vacation.days <= MAX_DAYS:
        return FilterProblem(_("Reply to a sender again after 1 to %(n)d days."), n=MAX_DAYS)
    if len(vacation.addresses) > MAX_ADDRESSES:
        return FilterProblem(_("At most %(n)d other addresses."), n=MAX_ADDRESSES)
    for address in vacation.addresses:
        if not _address(address):
            return FilterProblem(_("%(address)s is not a valid email address."), address=address)
    for day in (vacation.first_day, vacation.last_day):
        if day and not _valid_day(day):
            return FilterProblem(_("Write days as year-month-day."))
    if vacation.first_day and vacation.last_day and vacation.first_day > vacation.last_day:
        return FilterProblem(_("The last day comes before the first day."))
    return None


def parse_size(text: str) -> int | None:
    """Octets of a size as people write it ("500 KB", "5MB", "1.5 M", "2048"); None when it is not one."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        return None
    whole, fraction, unit = match.groups()
    scale = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit.lower()]
    octets = int(whole) * scale + (int(fraction) * scale // 10 ** len(fraction) if fraction else 0)
    return octets if 0 < octets < 2**53 else None


def size_text(octets: int) -> str:
    """A size as the form shows it: in MB or KB when it is a whole number of them, else in bytes."""
    for unit, scale in (("MB", 1024**2), ("KB", 1024)):
        if octets >= scale and octets % scale == 0:
            return f"{octets // scale} {unit}"
    return str(octets)


# ------------------------------------------------------------------------------------------------ writing


def _string(value: str) -> StringList:
    return StringList((value,), False)


def condition_test(condition: Condition) -> Test:
    """The test of a condition (module notes)."""
    if condition.field == "size":
        return Test("size", (Tag(condition.op), Number(int(condition.value))))
    negated = condition.op.startswith("not-")
    op = condition.op.removeprefix("not-")
    if op == "exists":
        test = Test("exists", (_string(condition.header),))
    elif condition.field == "from":
        test = Test("address", (Tag(op), _string("from"), _string(condition.value)))
    elif condition.field == "to":
        test = Test("address", (Tag(op), StringList(("to", "cc")), _string(condition.value)))
    else:
        name = "subject" if condition.field == "subject" else condition.header
        test = Test("header", (Tag(op), _string(name), _string(condition.value)))
    return Test("not", tests=(test,)) if negated else test


def rule_command(rule: Rule, guarded: bool = False) -> Command:
    """The `if` of a rule (module notes); `guarded`: its reply written inside the REPLIED guard."""
    if not rule.conditions:
        test = Test("true")
    elif len(rule.conditions) == 1:
        test = condition_test(rule.conditions[0])
    else:
        tests = tuple(map(condition_test, rule.conditions))
        test = Test("anyof" if rule.any_of else "allof", tests=tests, test_list=True)
    actions: list[Command] = []
    flags = [flag for flag, on in zip(_FLAGS, (rule.mark_read, rule.flag), strict=True) if on]
    if flags:
        actions.append(Command("addflag", (StringList(tuple(flags), len(flags) > 1),)))
    if rule.move_to:
        actions.append(Command("fileinto", (_string(rule.move_to),)))
    copy = rule.copy and bool(rule.forward_to) and rule.keep
    if rule.forward_to:
        actions.append(Command("redirect", (*((Tag("copy"),) if copy else ()), _string(rule.forward_to))))
    if rule.keep and not copy:
        actions.append(Command("keep"))
    if rule.reply:
        reply = Command("vacation", (Tag("days"), Number(1), _string(rule.reply)))
        actions.append(_guarded((reply,)) if guarded else reply)
    if rule.discard:
        actions.append(Command("discard"))
    if rule.stop:
        actions.append(Command("stop"))
    return Command("if", tests=(test,), block=tuple(actions))


def _set_replied() -> Command:
    return Command("set", (_string(REPLIED), _string("yes")))


def _guard() -> Test:
    return Test("string", (Tag("is"), _string("${" + REPLIED + "}"), _string("")))


def _guarded(commands: tuple[Command, ...]) -> Command:
    return Command("if", tests=(_guard(),), block=(_set_replied(), *commands))


def vacation_command(vacation: Vacation, guarded: bool = False) -> Command:
    """The vacation reply's command (module notes): its `if`, or without dates and unguarded the `vacation`
    alone (`if true { vacation :days 1 ...; }` is a rule's reply); `guarded`: it sets REPLIED before it
    answers."""
    days = [
        Test("currentdate", (Tag("value"), _string(relation), _string("date"), _string(day)))
        for relation, day in (("ge", vacation.first_day), ("le", vacation.last_day))
        if day
    ]
    if not days:
        test = Test("true")
    elif len(days) == 1:
        test = days[0]
    else:
        test = Test("allof", tests=tuple(days), test_list=True)
    arguments: list[Argument] = [Tag("days"), Number(vacation.days)]
    if vacation.subject:
        arguments += [Tag("subject"), _string(vacation.subject)]
    if vacation.addresses:
        arguments += [Tag("addresses"), StringList(vacation.addresses)]
    arguments.append(_string(vacation.text))
    reply = Command("vacation", tuple(arguments))
    if not days and not guarded:
        return reply
    return Command("if", tests=(test,), block=(_set_replied(), reply) if guarded else (reply,))


def needs(nodes: tuple[Command, ...] | tuple[Test, ...]) -> set[str]:
    """The capabilities `nodes` need, from the checker's specs (exact for the shapes this module reads and
    writes; not for every script: see the module notes on `require`)."""
    found: set[str] = set()
    for node in nodes:
        spec = COMMANDS.get(node.name) if isinstance(node, Command) else TESTS.get(node.name)
        if spec is not None:
            if spec.needs:
                found.add(spec.needs)
            for argument in node.arguments:
                if isinstance(argument, Tag) and argument.name in spec.tag_needs:
                    found.add(spec.tag_needs[argument.name])
        found |= needs(node.tests)
        if isinstance(node, Command) and node.block:
            found |= needs(node.block)
    return found


# ------------------------------------------------------------------------------------------------ replies


def _is_guard_if(command: Command) -> bool:
    """`if string :is "${REPLIED}" "" { set REPLIED "..."; ... }`: what guards a reply (module notes)."""
    return (
        command.name == "if"
        and len(command.tests) == 1
        and _is_guard(command.tests[0])
        and bool(command.block)
        and _is_set((command.block or ())[0])
    )


def _unguarded(commands: tuple[Command, ...]) -> int:
    """How many vacation actions `commands` hold outside the REPLIED guard."""
    count = 0
    for command in commands:
        if _is_guard_if(command):
            continue
        count += command.name == "vacation"
        count += _unguarded(command.block or ())
    return count


def _values(nodes: tuple[Command, ...] | tuple[Test, ...], blocks: bool = True) -> list[str]:
    """Every string `nodes` hold (their arguments, tests and, with `blocks`, blocks)."""
    found: list[str] = []
    for node in nodes:
        for argument in node.arguments:
            if isinstance(argument, StringList):
                found += argument.values
        found += _values(node.tests)
        if blocks and isinstance(node, Command) and node.block:
            found += _values(node.block)
    return found


def _uses_replied(commands: tuple[Command, ...]) -> bool:
    """Whether `commands` name the variable REPLIED other than in the guards of replies."""
    for command in commands:
        inner = command.block or ()
        if _is_guard_if(command):
            inner = inner[1:]
        elif any(REPLIED in value.lower() for value in _values((command,), blocks=False)):
            return True
        if _uses_replied(inner):
            return True
    return False


def _replies(block: Block) -> int:
    """How many vacation actions `block` holds (as it will be written)."""
    if block.kind == "rule":
        return 1 if block.rule is not None and block.rule.reply else 0
    if block.kind == "vacation":
        return 1
    if block.kind == "advanced":
        return _count(block.commands, "vacation")
    return 0


def _count(commands: tuple[Command, ...], name: str) -> int:
    return sum((c.name == name) + _count(c.block or (), name) for c in commands)


def reply_problem(script: FilterScript) -> FilterProblem | None:
    """Why `script`, with two replies or more, cannot be written so that one message gets one reply at most
    (module notes), or None."""
    if sum(map(_replies, script.blocks)) < 2:
        return None
    advanced = [b for b in script.blocks if b.kind == "advanced"]
    if any(_unguarded(b.commands) for b in advanced):
        return FilterProblem(_OTHER_REPLY)
    if "variables" not in script.requires and any(
        "${" in value for b in advanced for value in _values(b.commands)
    ):
        return FilterProblem(
            _(
                'Two automatic replies need the Sieve extension "variables", which would change what "${" '
                'means in the part of your filters written as text. Remove that "${" (under Edit as text) '
                "or keep to one automatic reply."
            )
        )
    if any(_uses_replied(b.commands) for b in advanced):
        return FilterProblem(
            _(
                'The part of your filters written as text uses the variable "%(name)s", which the automatic '
                "replies need for themselves. Rename it (under Edit as text) or keep to one automatic reply."
            ),
            name=REPLIED,
        )
    return None


_OTHER_REPLY = _(
    "Your filters have another automatic reply, written as text (see Edit as text). A message may get only "
    "one automatic reply: remove that one first, or do without this one."
)


def _guarding(script: FilterScript) -> bool:
    """Whether the replies the forms write in `script` are guarded (module notes)."""
    return sum(map(_replies, script.blocks)) >= 2 and reply_problem(script) is None


def _settled(script: FilterScript) -> FilterScript:
    """`script` with the replies the forms know guarded, and the vacation reply first, when it has two
    replies or more (module notes): the ones written by other programs are rewritten."""
    if not _guarding(script):
        return script
    blocks = list(script.blocks)
    at = sum(1 for b in blocks if b.kind == "require")
    for i, block in enumerate(blocks):
        if block.kind == "vacation":
            inner = (block.commands[0].block or ()) if block.commands else ()
            guarded = block.changed or (bool(inner) and _is_set(inner[0]))
            if i != at or not guarded:
                del blocks[i]
                gap = block.gap if block.gap.strip() else script.newline * 2
                blocks.insert(at, dataclasses.replace(block, gap=gap, changed=True, moved=i != at))
            break
    for i, block in enumerate(blocks):
        replies = block.kind == "rule" and block.rule is not None and bool(block.rule.reply)
        if replies and not block.changed and not any(map(_is_guard_if, block.commands[0].block or ())):
            blocks[i] = dataclasses.replace(block, changed=True)
    return dataclasses.replace(script, blocks=tuple(blocks))


# ------------------------------------------------------------------------------------------------ writing


def _commands_text(commands: tuple[Command, ...], newline: str) -> str:
    text = to_text(commands).rstrip("\r\n")
    return text.replace("\r\n", newline) if newline != "\r\n" else text


def _name_gap(gap: str, name: str, newline: str) -> str:
    """`gap` with its `# rule:[...]` line for `name` (replaced, added, or removed when `name` is "")."""
    span = _name_span(gap)
    kept = gap[: span[0]] + gap[span[1] :] if span is not None else gap
    if not kept.endswith("\n"):
        kept += newline
    return kept + (f"# rule:[{name}]{newline}" if name else "")


def generated(block: Block, newline: str, guarded: bool = False) -> Block:
    """`block` with its text written from its rule or vacation reply (`guarded`: module notes)."""
    if block.rule is not None:
        command = rule_command(block.rule, guarded)
        gap = _name_gap(block.gap, block.rule.name, newline)
    elif block.vacation is not None:
        command = vacation_command(block.vacation, guarded)
        gap = block.gap
    else:
        return block
    return dataclasses.replace(block, gap=gap, text=_commands_text((command,), newline), commands=(command,))


def capabilities(script: FilterScript) -> list[str]:
    """What the script's require names after `render` (module notes): as before while nothing was edited."""
    if not script.edited:
        return list(script.requires)
    script = _settled(script)
    guarded = _guarding(script)
    wanted: set[str] = set()
    advanced = False
    for block in script.blocks:
        if block.kind in ("rule", "vacation"):
            wanted |= needs(generated(block, "\r\n", guarded).commands if block.changed else block.commands)
        advanced = advanced or block.kind == "advanced"
    if advanced:
        return [*script.requires, *sorted(wanted - set(script.requires))]
    return sorted(wanted)


def _open_comment(piece: str) -> bool:
    """Whether `piece` (a trail) ends in a hash comment without its line end: what follows it must start a
    new line."""
    found = comments(piece)
    return bool(found) and found[-1][2] and not piece.endswith("\n")


def render(script: FilterScript) -> str:
    """The script's text (module notes): unchanged blocks as they were, changed ones written anew."""
    newline = script.newline
    wanted = capabilities(script)
    if script.edited:
        script = _settled(script)
    guarded = _guarding(script)
    requires = [b for b in script.blocks if b.kind == "require"]
    out: list[str] = []
    fresh = False  # whether the last piece written is new text (so the next one starts on a line of its own)
    hashed = False  # whether the last piece written ends in a hash comment without its line end
    if requires and set(wanted) == set(script.requires):
        out += [b.gap + b.text + b.trail for b in requires]
        hashed = _open_comment(requires[-1].trail)
    else:
        if wanted:
            require = Command("require", (StringList(tuple(wanted)),))
            first = requires[0] if requires else Block("require", "", "")
            out.append(first.gap + _commands_text((require,), newline) + first.trail)
            # the blocks after it start on a new line, but after comments it had on its line, as before
            fresh, hashed = not first.trail, _open_comment(first.trail)
        for block in requires[1 if wanted else 0 :]:  # their comments stay
            if (block.gap + block.trail).strip():
                gap = newline + block.gap if hashed and not block.gap.startswith("\n") else block.gap
                out.append(gap + block.trail)
                hashed = _open_comment(block.trail)
    for block in script.blocks:
        if block.kind == "require":
            continue
        new = block.changed or block.moved
        if block.changed:
            block = generated(block, newline, guarded)
        gap = block.gap
        if not "".join(out).strip():
            gap = gap.lstrip("\r\n") if new or fresh or requires else gap
        elif (new or fresh or hashed) and not gap.startswith(("\n", "\r\n")):
            gap = newline + gap
        out.append(gap + block.text + block.trail)
        fresh, hashed = new, _open_comment(block.trail)
    tail = script.tail
    if (fresh or (hashed and tail)) and not tail.startswith(("\n", "\r\n")):
        tail = newline + tail
    return (_BOM if script.bom else "") + "".join(out) + tail


# ------------------------------------------------------------------------------------------------ editing


def _checked(script: FilterScript, replies: bool) -> FilterScript:
    """`script`, or FilterProblem when the edit gave it a reply (`replies`) it cannot have (module notes)."""
    problem = reply_problem(script) if replies else None
    if problem is not None:
        raise problem
    return script


def add_rule(script: FilterScript, rule: Rule) -> FilterScript:
    """`script` with `rule` added after the last block (FilterProblem: `reply_problem`)."""
    gap = script.newline * 2
    block = Block("rule", gap, "", rule=rule, changed=True)
    added = dataclasses.replace(script, blocks=(*script.blocks, block), edited=True)
    return _checked(added, bool(rule.reply))


def replace_rule(script: FilterScript, index: int, rule: Rule) -> FilterScript:
    """`script` with the rule at `index` of `blocks` replaced (IndexError when that is no rule;
    FilterProblem: `reply_problem`)."""
    block = _block(script, index, ("rule",))
    blocks = list(script.blocks)
    blocks[index] = dataclasses.replace(block, rule=rule, changed=True)
    return _checked(dataclasses.replace(script, blocks=tuple(blocks), edited=True), bool(rule.reply))


def delete_block(script: FilterScript, index: int) -> FilterScript:
    """`script` without the rule or advanced block at `index` (IndexError when there is none). The comments
    before the script's first command stay (its header), but for the deleted block's name."""
    block = _block(script, index, ("rule", "advanced"))
    blocks = list(script.blocks)
    del blocks[index]
    tail = script.tail
    span = _name_span(block.gap)
    header = (block.gap[: span[0]] + block.gap[span[1] :] if span is not None else block.gap).rstrip()
    if index == 0 and header:
        if blocks:
            blocks[0] = dataclasses.replace(
                blocks[0], gap=header + script.newline + blocks[0].gap.lstrip("\r\n")
            )
        else:
            tail = header + script.newline + tail.lstrip("\r\n")
    return dataclasses.replace(script, blocks=tuple(blocks), tail=tail, edited=True)


def move_block(script: FilterScript, index: int, step: int) -> FilterScript:
    """`script` with the rule or advanced block at `index` swapped with the shown one `step` (-1 or 1) away
    (each with its comments); the same script when there is none that way (IndexError when `index` is not a
    shown block)."""
    _block(script, index, ("rule", "advanced"))
    shown = [i for i, _ in script.shown()]
    position = shown.index(index) + step
    if not 0 <= position < len(shown):
        return script
    other = shown[position]
    blocks = list(script.blocks)
    blocks[index] = dataclasses.replace(script.blocks[other], moved=True)
    blocks[other] = dataclasses.replace(script.blocks[index], moved=True)
    return dataclasses.replace(script, blocks=tuple(blocks), edited=True)


def set_vacation(script: FilterScript, vacation: Vacation | None) -> FilterScript:
    """`script` with its vacation reply replaced by `vacation` and put first (after require), or removed
    (FilterProblem: `reply_problem`)."""
    blocks = [b for b in script.blocks if b.kind != "vacation"]
    if vacation is not None:
        at = sum(1 for b in blocks if b.kind == "require")
        old = next((b for b in script.blocks if b.kind == "vacation"), None)
        gap = old.gap if old is not None and old.gap.strip() else script.newline * 2
        blocks.insert(at, Block("vacation", gap, "", vacation=vacation, changed=True))
    return _checked(dataclasses.replace(script, blocks=tuple(blocks), edited=True), vacation is not None)


def _block(script: FilterScript, index: int, kinds: tuple[str, ...]) -> Block:
    if not 0 <= index < len(script.blocks) or script.blocks[index].kind not in kinds:
        raise IndexError(index)
    return script.blocks[index]
