"""The check of a parsed Sieve script (RFC 5228 sections 2.7-2.10, 3, 4, 5): every command and test known,
its arguments where they must be, its extensions required, and each node's tagged arguments gathered by name
for the interpreter.

`check(commands)` returns the script's `Checked` nodes or raises SieveCheckError with the line and column of
the node or argument at fault. What a command or test takes is written once as a `Spec`:
- `tags`: the tags it accepts, each with the kind of argument that follows it (None: no argument), and the
  capability the tag needs (":copy" needs "copy", a comparator other than the two built-in ones needs its
  "comparator-" capability);
- `groups`: tags of which at most one may be given (the match types, the address parts);
- `positional`: the kinds of its positional arguments, in order (STRING: one string, written without
  brackets or as a list of one; STRINGS: a string list; NUMBER);
- `test`: whether it takes one test, a test list, or none; `block`: whether a block follows.

The base language of RFC 5228 and every extension `SUPPORTED` lists (decisions 0084 and 0090) have their
specs here; what a spec cannot say is in `constraints` (and `regex` for :regex keys). The check goes on after
an error, to the next test and command: SieveCheckError is the first error, with every error in `errors`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

from postoffice.sieve.grammar import Argument, Command, Number, SieveSyntaxError, StringList, Tag, Test
from postoffice.sieve.matching import compile_regex


class SieveCheckError(SieveSyntaxError):
    """A script that parses but is not valid Sieve (an unknown command, a wrong argument, a missing
    `require`), and where; `errors` holds every error found, this one first (the check goes on after an
    error to the next command and test, as an editor showing a script's errors wants)."""

    errors: tuple[SieveCheckError, ...] = ()


class Kind(Enum):
    STRING = "a string"
    STRINGS = "a string list"
    NUMBER = "a number"


class Takes(Enum):
    NOTHING = 0
    TEST = 1
    TEST_LIST = 2


@dataclass(frozen=True)
class Spec:
    """What a command or test takes (see the module docstring)."""

    positional: tuple[Kind, ...] = ()
    tags: dict[str, Kind | None] = field(default_factory=dict)
    groups: tuple[frozenset[str], ...] = ()
    test: Takes = Takes.NOTHING
    block: bool = False
    needs: str | None = None  # the capability the command or test itself needs
    tag_needs: dict[str, str] = field(default_factory=dict)  # tag -> capability
    optional: int = 0  # how many of the first positional arguments may be left out
    optional_needs: str | None = None  # the capability that giving them needs
    trailing: int = 0  # how many of the last positional arguments may be left out


@dataclass(frozen=True)
class Checked:
    """A checked command or test: its tagged arguments by name (the argument that follows, or None), its
    positional arguments (strings as tuples, numbers as ints), its tests, and its block."""

    name: str
    tags: dict[str, tuple[str, ...] | int | None]
    positional: tuple[tuple[str, ...] | int, ...]
    tests: tuple[Checked, ...] = ()
    block: tuple[Checked, ...] | None = None
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)


#: Capabilities `require` accepts (RFC 5228 section 3.2: any other is an error).
SUPPORTED = frozenset(
    {
        "fileinto",
        "envelope",
        "encoded-character",
        "reject",
        "ereject",
        "copy",
        "comparator-i;octet",
        "comparator-i;ascii-casemap",
        "comparator-i;ascii-numeric",
        "vacation",
        "vacation-seconds",
        "imap4flags",
        "variables",
        "relational",
        "subaddress",
        "body",
        "date",
        "index",
        "ihave",
        "environment",
        "mailbox",
        "special-use",
        "mailboxid",
        "duplicate",
        "include",
        "enotify",
        "editheader",
        "spamtest",
        "spamtestplus",
        "virustest",
        "fcc",
        "regex",
        "mboxmetadata",
        "servermetadata",
    }
)
#: Comparators every script may name without `require` (RFC 5228 section 2.7.3).
BUILT_IN_COMPARATORS = frozenset({"i;octet", "i;ascii-casemap"})
#: RFC 5231 section 5: the relational operators of :value and :count.
RELATIONS = frozenset({"gt", "ge", "lt", "le", "eq", "ne"})
#: RFC 5260 section 4.2: the date parts of date and currentdate.
DATE_PARTS = frozenset(
    {
        "year",
        "month",
        "day",
        "date",
        "julian",
        "hour",
        "minute",
        "second",
        "time",
        "iso8601",
        "std11",
        "zone",
        "weekday",
    }
)

_MATCH_TYPES: dict[str, Kind | None] = {
    "is": None,
    "contains": None,
    "matches": None,
    "value": Kind.STRING,  # RFC 5231
    "count": Kind.STRING,
    "regex": None,  # draft-ietf-sieve-regex-01
}
_MATCH_NEEDS = {"value": "relational", "count": "relational", "regex": "regex"}
_ADDRESS_PARTS: dict[str, Kind | None] = {
    "localpart": None,
    "domain": None,
    "all": None,
    "user": None,
    "detail": None,
}
_ADDRESS_NEEDS = {"user": "subaddress", "detail": "subaddress"}
_COMPARATOR: dict[str, Kind | None] = {"comparator": Kind.STRING}
_MATCH_GROUPS = (frozenset(_MATCH_TYPES), frozenset({"comparator"}))
_INDEX: dict[str, Kind | None] = {"index": Kind.NUMBER, "last": None}  # RFC 5260 section 6
_INDEX_NEEDS = {"index": "index", "last": "index"}
_MATCHING = {**_MATCH_TYPES, **_COMPARATOR}
#: RFC 8580 section 3: ":fcc" and the tags that may go with it (which need their own extensions).
_FCC: dict[str, Kind | None] = {
    "fcc": Kind.STRING,
    "flags": Kind.STRINGS,
    "create": None,
    "specialuse": Kind.STRING,
    "mailboxid": Kind.STRING,
}
_FCC_NEEDS = {
    "fcc": "fcc",
    "flags": "imap4flags",
    "create": "mailbox",
    "specialuse": "special-use",
    "mailboxid": "mailboxid",
}
_FCC_COMPANIONS = frozenset({"flags", "create", "specialuse", "mailboxid"})

COMMANDS: dict[str, Spec] = {
    "require": Spec(positional=(Kind.STRINGS,)),
    "if": Spec(test=Takes.TEST, block=True),
    "elsif": Spec(test=Takes.TEST, block=True),
    "else": Spec(block=True),
    "stop": Spec(),
    "keep": Spec(tags={"flags": Kind.STRINGS}, tag_needs={"flags": "imap4flags"}),
    "discard": Spec(),
    "redirect": Spec(positional=(Kind.STRING,), tags={"copy": None}, tag_needs={"copy": "copy"}),
    "fileinto": Spec(
        positional=(Kind.STRING,),
        tags={
            "copy": None,
            "flags": Kind.STRINGS,
            "create": None,  # RFC 5490 section 3.2
            "specialuse": Kind.STRING,  # RFC 8579 section 4
            "mailboxid": Kind.STRING,  # RFC 9042 section 4.1
        },
        needs="fileinto",
        tag_needs={
            "copy": "copy",
            "flags": "imap4flags",
            "create": "mailbox",
            "specialuse": "special-use",
            "mailboxid": "mailboxid",
        },
        groups=(frozenset({"specialuse", "mailboxid"}),),
    ),
    # RFC 5232 section 3; the variable name in front needs "variables" (section 3 of RFC 5232 with RFC 5229)
    "setflag": Spec(
        positional=(Kind.STRING, Kind.STRINGS), optional=1, optional_needs="variables", needs="imap4flags"
    ),
    "addflag": Spec(
        positional=(Kind.STRING, Kind.STRINGS), optional=1, optional_needs="variables", needs="imap4flags"
    ),
    "removeflag": Spec(
        positional=(Kind.STRING, Kind.STRINGS), optional=1, optional_needs="variables", needs="imap4flags"
    ),
    "reject": Spec(positional=(Kind.STRING,), needs="reject"),
    "ereject": Spec(positional=(Kind.STRING,), needs="ereject"),
    # RFC 5230 section 4, with :seconds of RFC 6131 (which needs "vacation-seconds", section 2)
    "vacation": Spec(
        positional=(Kind.STRING,),
        tags={
            "days": Kind.NUMBER,
            "seconds": Kind.NUMBER,
            "subject": Kind.STRING,
            "from": Kind.STRING,
            "addresses": Kind.STRINGS,
            "mime": None,
            "handle": Kind.STRING,
            **_FCC,
        },
        groups=(frozenset({"days", "seconds"}), frozenset({"specialuse", "mailboxid"})),
        needs="vacation",
        tag_needs={"seconds": "vacation-seconds", **_FCC_NEEDS},
    ),
    # RFC 5229 section 4
    "set": Spec(
        positional=(Kind.STRING, Kind.STRING),
        tags={
            name: None
            for name in ("lower", "upper", "lowerfirst", "upperfirst", "quotewildcard", "length", "encodeurl")
        },
        groups=(frozenset({"lower", "upper"}), frozenset({"lowerfirst", "upperfirst"})),
        needs="variables",
        tag_needs={"encodeurl": "enotify"},  # RFC 5435 section 7
    ),
    "error": Spec(positional=(Kind.STRING,), needs="ihave"),  # RFC 5463 section 5
    # RFC 6609 section 3
    "include": Spec(
        positional=(Kind.STRING,),
        tags={"personal": None, "global": None, "once": None, "optional": None},
        groups=(frozenset({"personal", "global"}),),
        needs="include",
    ),
    "return": Spec(needs="include"),
    # RFC 5435 section 3
    "notify": Spec(
        positional=(Kind.STRING,),
        tags={
            "from": Kind.STRING,
            "importance": Kind.STRING,
            "options": Kind.STRINGS,
            "message": Kind.STRING,
            **_FCC,
        },
        groups=(frozenset({"specialuse", "mailboxid"}),),
        needs="enotify",
        tag_needs=_FCC_NEEDS,
    ),
    "global": Spec(positional=(Kind.STRINGS,), needs="include"),
    # RFC 5293 sections 4 and 5 (deleteheader's :index and :last are its own: no "index" needed)
    "addheader": Spec(positional=(Kind.STRING, Kind.STRING), tags={"last": None}, needs="editheader"),
    "deleteheader": Spec(
        positional=(Kind.STRING, Kind.STRINGS),
        trailing=1,
        tags={**_MATCHING, **_INDEX},
        groups=_MATCH_GROUPS,
        needs="editheader",
        tag_needs=_MATCH_NEEDS,
    ),
}

TESTS: dict[str, Spec] = {
    "address": Spec(
        positional=(Kind.STRINGS, Kind.STRINGS),
        tags={**_MATCHING, **_ADDRESS_PARTS, **_INDEX},
        groups=(*_MATCH_GROUPS, frozenset(_ADDRESS_PARTS)),
        tag_needs={**_MATCH_NEEDS, **_ADDRESS_NEEDS, **_INDEX_NEEDS},
    ),
    "envelope": Spec(
        positional=(Kind.STRINGS, Kind.STRINGS),
        tags={**_MATCHING, **_ADDRESS_PARTS},
        groups=(*_MATCH_GROUPS, frozenset(_ADDRESS_PARTS)),
        needs="envelope",
        tag_needs={**_MATCH_NEEDS, **_ADDRESS_NEEDS},
    ),
    "header": Spec(
        positional=(Kind.STRINGS, Kind.STRINGS),
        tags={**_MATCHING, **_INDEX},
        groups=_MATCH_GROUPS,
        tag_needs={**_MATCH_NEEDS, **_INDEX_NEEDS},
    ),
    "exists": Spec(positional=(Kind.STRINGS,)),
    "hasflag": Spec(  # RFC 5232 section 4
        positional=(Kind.STRINGS, Kind.STRINGS),
        optional=1,
        optional_needs="variables",
        tags=_MATCHING,
        groups=_MATCH_GROUPS,
        needs="imap4flags",
        tag_needs=_MATCH_NEEDS,
    ),
    "size": Spec(positional=(Kind.NUMBER,), tags={"over": None, "under": None}),
    "allof": Spec(test=Takes.TEST_LIST),
    "anyof": Spec(test=Takes.TEST_LIST),
    "not": Spec(test=Takes.TEST),
    "true": Spec(),
    "false": Spec(),
    "string": Spec(  # RFC 5229 section 5
        positional=(Kind.STRINGS, Kind.STRINGS),
        tags=_MATCHING,
        groups=_MATCH_GROUPS,
        needs="variables",
        tag_needs=_MATCH_NEEDS,
    ),
    "body": Spec(  # RFC 5173 section 4
        positional=(Kind.STRINGS,),
        tags={**_MATCHING, "raw": None, "content": Kind.STRINGS, "text": None},
        groups=(*_MATCH_GROUPS, frozenset({"raw", "content", "text"})),
        needs="body",
        tag_needs=_MATCH_NEEDS,
    ),
    "date": Spec(  # RFC 5260 section 4
        positional=(Kind.STRING, Kind.STRING, Kind.STRINGS),
        tags={**_MATCHING, **_INDEX, "zone": Kind.STRING, "originalzone": None},
        groups=(*_MATCH_GROUPS, frozenset({"zone", "originalzone"})),
        needs="date",
        tag_needs={**_MATCH_NEEDS, **_INDEX_NEEDS},
    ),
    "currentdate": Spec(
        positional=(Kind.STRING, Kind.STRINGS),
        tags={**_MATCHING, "zone": Kind.STRING},
        groups=_MATCH_GROUPS,
        needs="date",
        tag_needs=_MATCH_NEEDS,
    ),
    "ihave": Spec(positional=(Kind.STRINGS,), needs="ihave"),  # RFC 5463 section 4
    "environment": Spec(  # RFC 5183 section 4
        positional=(Kind.STRING, Kind.STRINGS),
        tags=_MATCHING,
        groups=_MATCH_GROUPS,
        needs="environment",
        tag_needs=_MATCH_NEEDS,
    ),
    "mailboxexists": Spec(positional=(Kind.STRINGS,), needs="mailbox"),  # RFC 5490 section 3.1
    "specialuse_exists": Spec(  # RFC 8579 section 3
        positional=(Kind.STRING, Kind.STRINGS), optional=1, needs="special-use"
    ),
    "mailboxidexists": Spec(positional=(Kind.STRINGS,), needs="mailboxid"),  # RFC 9042 section 5
    "valid_notify_method": Spec(positional=(Kind.STRINGS,), needs="enotify"),  # RFC 5435 section 5
    "notify_method_capability": Spec(  # RFC 5435 section 6
        positional=(Kind.STRING, Kind.STRING, Kind.STRINGS),
        tags=_MATCHING,
        groups=_MATCH_GROUPS,
        needs="enotify",
        tag_needs=_MATCH_NEEDS,
    ),
    # RFC 5235 sections 3.1-3.3 (":percent" is spamtestplus's)
    "spamtest": Spec(
        positional=(Kind.STRING,),
        tags={**_MATCHING, "percent": None},
        groups=_MATCH_GROUPS,
        needs="spamtest",
        tag_needs={**_MATCH_NEEDS, "percent": "spamtestplus"},
    ),
    "virustest": Spec(
        positional=(Kind.STRING,),
        tags=_MATCHING,
        groups=_MATCH_GROUPS,
        needs="virustest",
        tag_needs=_MATCH_NEEDS,
    ),
    # RFC 5490 sections 4.1-4.4
    "metadata": Spec(
        positional=(Kind.STRING, Kind.STRING, Kind.STRINGS),
        tags=_MATCHING,
        groups=_MATCH_GROUPS,
        needs="mboxmetadata",
        tag_needs=_MATCH_NEEDS,
    ),
    "metadataexists": Spec(positional=(Kind.STRING, Kind.STRINGS), needs="mboxmetadata"),
    "servermetadata": Spec(
        positional=(Kind.STRING, Kind.STRINGS),
        tags=_MATCHING,
        groups=_MATCH_GROUPS,
        needs="servermetadata",
        tag_needs=_MATCH_NEEDS,
    ),
    "servermetadataexists": Spec(positional=(Kind.STRINGS,), needs="servermetadata"),
    "duplicate": Spec(  # RFC 7352 section 3
        tags={
            "handle": Kind.STRING,
            "header": Kind.STRING,
            "uniqueid": Kind.STRING,
            "seconds": Kind.NUMBER,
            "last": None,
        },
        groups=(frozenset({"header", "uniqueid"}),),
        needs="duplicate",
    ),
}


def strings(value: tuple[str, ...] | int | None) -> tuple[str, ...]:
    """A value `_Checker.value` made of a string or string list (the specs say which values are)."""
    return value if isinstance(value, tuple) else ()


#: RFC 5229 section 3: the name `set` may give (match variables and namespaces are not set by name)
VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: RFC 6609 section 3.5: a variable of the "global" namespace
GLOBAL_NAME = re.compile(r"global\.[A-Za-z_][A-Za-z0-9_]*", re.IGNORECASE)
#: RFC 5293 section 4: the longest value addheader may add and field name it may name (the interpreter
#: holds values made by variables to the same)
MAX_ADDED_VALUE = 2048
MAX_FIELD_NAME = 200
#: RFC 5322 section 3.6.8: a header field name (printable ASCII but the colon)
FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")
#: RFC 5804 section 1.6 (script names): no control characters
SCRIPT_NAME_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
#: RFC 5228 section 2.4.2.4: "${hex: 41 42}" and "${unicode: 263a}" (white space around the numbers)
_ENCODED = re.compile(r"\$\{(hex|unicode):([0-9A-Fa-f \t\r\n]*)\}", re.IGNORECASE)


def decode_characters(text: str) -> str:
    """RFC 5228 section 2.4.2.4: the encoded characters of `text` decoded; a sequence that is not a valid
    encoding (a code point out of range, a surrogate) is left as it is."""
    if "${" not in text:
        return text

    def one(match: re.Match[str]) -> str:
        numbers = match.group(2).split()
        if not numbers or "\r" in match.group(2).replace("\r\n", ""):
            return match.group(0)
        if match.group(1).lower() == "hex":
            if any(len(n) > 2 for n in numbers):
                return match.group(0)
            raw = bytes(int(n, 16) for n in numbers)
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                return match.group(0)
        points = [int(n, 16) for n in numbers if len(n) <= 6]
        if len(points) != len(numbers) or any(p > 0x10FFFF or 0xD800 <= p <= 0xDFFF for p in points):
            return match.group(0)
        return "".join(map(chr, points))

    return _ENCODED.sub(one, text)


def _error(message: str, node: Command | Test | Argument) -> SieveCheckError:
    return SieveCheckError(message, node.line, node.column)


class _Checker:
    commands_spec: dict[str, Spec] = COMMANDS
    tests_spec: dict[str, Spec] = TESTS
    top_level: frozenset[str] = frozenset()

    def __init__(self, supported: frozenset[str]) -> None:
        self.supported = supported
        self.required: set[str] = set()
        self.errors: list[SieveCheckError] = []

    def require(self, node: Command, checked: Checked) -> None:
        unknown = [name for name in strings(checked.positional[0]) if name.lower() not in self.supported]
        for name in strings(checked.positional[0]):
            if name.lower() not in self.supported:
                continue
            self.required.add(name.lower())
            if name.lower() == "vacation-seconds":  # RFC 6131 section 2: it implies "vacation"
                self.required.add("vacation")
            if name.lower() == "spamtestplus":  # RFC 5235 section 3.2: it implies "spamtest"
                self.required.add("spamtest")
        if unknown:  # the others count as required: what uses them is not an error too
            raise _error(f'the extension "{unknown[0]}" is not supported', node.arguments[0])

    def needs(self, capability: str | None, what: str, node: Command | Test | Argument) -> None:
        if capability is not None and capability not in self.required:
            raise _error(f'{what} needs require "{capability}"', node)

    def node(self, node: Command | Test, spec: Spec, what: str) -> Checked:
        self.needs(spec.needs, f'the {what} "{node.name}"', node)
        tags: dict[str, tuple[str, ...] | int | None] = {}
        given: list[Argument] = []
        arguments = list(node.arguments)
        i = 0
        while i < len(arguments):
            argument = arguments[i]
            i += 1
            if isinstance(argument, Tag):
                if given:  # section 2.6.2: tagged arguments appear before positional arguments
                    raise _error(
                        f'the tag ":{argument.name}" must come before the positional arguments', argument
                    )
                if argument.name not in spec.tags:
                    raise _error(f'{node.name} has no tag ":{argument.name}"', argument)
                if argument.name in tags:
                    raise _error(f'the tag ":{argument.name}" is given twice', argument)
                for group in spec.groups:
                    if argument.name in group and group & tags.keys():
                        raise _error(
                            f'the tag ":{argument.name}" cannot go with ":{min(group & tags.keys())}"',
                            argument,
                        )
                self.needs(spec.tag_needs.get(argument.name), f'the tag ":{argument.name}"', argument)
                kind = spec.tags[argument.name]
                if kind is None:
                    tags[argument.name] = None
                    continue
                if i >= len(arguments):
                    raise _error(f'the tag ":{argument.name}" needs {kind.value} after it', argument)
                tags[argument.name] = self.value(arguments[i], kind, f'":{argument.name}"')
                i += 1
                if argument.name == "comparator":
                    self.comparator(tags["comparator"], arguments[i - 1])
                elif argument.name in ("value", "count"):
                    (relation,) = strings(tags[argument.name])
                    if relation.lower() not in RELATIONS:
                        raise _error(f'"{relation}" is not a relational operator', arguments[i - 1])
                    tags[argument.name] = (relation.lower(),)
            else:
                given.append(argument)
        kinds = spec.positional
        if spec.trailing and len(given) == len(kinds) - spec.trailing:
            kinds = kinds[: len(given)]
        elif spec.optional and len(given) == len(kinds) - spec.optional:
            kinds = kinds[spec.optional :]
        elif spec.optional and len(given) == len(kinds) and spec.optional_needs is not None:
            self.needs(spec.optional_needs, f"{node.name} with {len(kinds)} arguments", given[0])
        if len(given) > len(spec.positional):
            raise _error(f"{node.name} takes {len(spec.positional)} positional arguments", given[len(kinds)])
        if len(given) < len(kinds):
            missing = kinds[len(given)]
            raise _error(f"{node.name} needs {missing.value} as its argument {len(given) + 1}", node)
        values = [self.value(argument, kind, node.name) for argument, kind in zip(given, kinds, strict=True)]
        missing_args: list[tuple[str, ...] | int] = [() for _ in range(len(spec.positional) - len(kinds))]
        positional = values + missing_args if spec.trailing else missing_args + values
        self.constraints(node, tags, positional)
        tests = self.tests(node, spec)
        return Checked(node.name, tags, tuple(positional), tests, None, node.line, node.column)

    def constraints(
        self,
        node: Command | Test,
        tags: dict[str, tuple[str, ...] | int | None],
        positional: list[tuple[str, ...] | int],
    ) -> None:
        """What the specs cannot say: which combinations and values a command or test may have."""
        name = node.name
        if name == "size" and len(tags.keys() & {"over", "under"}) != 1:
            raise _error('size needs exactly one of ":over" and ":under"', node)
        comparator = strings(tags.get("comparator"))
        if (
            comparator
            and comparator[0].lower() == "i;ascii-numeric"
            and tags.keys() & {"contains", "matches"}
        ):
            raise _error("the comparator i;ascii-numeric has no substring match (RFC 4790 section 9.1)", node)
        if "last" in tags and "index" not in tags and name in ("header", "address", "date", "deleteheader"):
            raise _error('":last" needs ":index"', node)
        if isinstance(tags.get("index"), int) and tags["index"] == 0:
            raise _error('":index" counts from 1', node)
        if name in ("date", "currentdate"):
            (part,) = strings(positional[1 if name == "date" else 0])
            if "${" not in part and part.lower() not in DATE_PARTS:
                raise _error(f'"{part}" is not a date part', node)
        if name == "set":
            (variable,) = strings(positional[0])
            if not VARIABLE_NAME.fullmatch(variable) and not GLOBAL_NAME.fullmatch(variable):
                raise _error(f'"{variable}" is not a variable name', node)
        if name == "global":
            self.needs("variables", 'the command "global"', node)
            for variable in strings(positional[0]):
                if not VARIABLE_NAME.fullmatch(variable):
                    raise _error(f'"{variable}" is not a variable name', node)
        if name == "notify" and "importance" in tags:
            (importance,) = strings(tags["importance"])
            if importance not in ("1", "2", "3"):
                raise _error(':importance is "1", "2" or "3"', node)
        if "regex" in tags:
            self.regex(node, tags, positional)
        if name in ("addheader", "deleteheader"):
            (field_name,) = strings(positional[0])
            if "${" not in field_name and not FIELD_NAME.fullmatch(field_name):
                raise _error(f'the field name "{field_name}" is invalid', node)
            value = strings(positional[1])[0] if name == "addheader" else ""
            if "\0" in value:
                raise _error("the header field value is invalid (a NUL character)", node)
            if len(value.encode("utf-8", "surrogatepass")) > MAX_ADDED_VALUE:
                raise _error(f"the header field value is longer than {MAX_ADDED_VALUE} octets", node)
            if len(field_name) > MAX_FIELD_NAME:
                raise _error(f"the field name is longer than {MAX_FIELD_NAME} characters", node)
        if name in ("vacation", "notify") and "fcc" not in tags and tags.keys() & _FCC_COMPANIONS:
            raise _error(f'":{min(tags.keys() & _FCC_COMPANIONS)}" needs ":fcc" here (RFC 8580)', node)
        if name == "include":
            (script,) = strings(positional[0])
            if not script or "/" in script or SCRIPT_NAME_FORBIDDEN.search(script):
                raise _error(f'"{script}" is not a script name', node)

    def regex(
        self,
        node: Command | Test,
        tags: dict[str, tuple[str, ...] | int | None],
        positional: list[tuple[str, ...] | int],
    ) -> None:
        """draft-ietf-sieve-regex-01 section 3: only i;octet and i;ascii-casemap, and keys that are regular
        expressions (those with variables are checked when they are used)."""
        comparator = strings(tags.get("comparator"))
        name = comparator[0].lower() if comparator else "i;ascii-casemap"
        if name not in BUILT_IN_COMPARATORS:
            raise _error(f'the comparator "{name}" cannot go with ":regex"', node)
        keys = positional[-1] if node.name != "deleteheader" else positional[1]
        for key in strings(keys):
            if "${" in key and "variables" in self.required:
                continue
            try:
                compile_regex(key, name == "i;ascii-casemap")
            except ValueError as exc:
                raise _error(f'"{key[:80]}" is not a valid regular expression: {exc}', node) from None

    def unsupported_ihave(self, checked: Checked) -> bool:
        """Whether `checked` (an if or elsif) tests `ihave` with a capability we do not have; those we have
        count as required from here on."""
        if len(checked.tests) != 1 or checked.tests[0].name != "ihave":
            return False
        names = [name.lower() for name in strings(checked.tests[0].positional[0])]
        if any(name not in self.supported for name in names):
            return True
        self.required.update(names)
        return False

    def comparator(self, value: tuple[str, ...] | int | None, argument: Argument) -> None:
        (name,) = strings(value)
        if name.lower() not in BUILT_IN_COMPARATORS:
            self.needs(f"comparator-{name.lower()}", f'the comparator "{name}"', argument)

    def value(self, argument: Argument, kind: Kind, what: str) -> tuple[str, ...] | int:
        if kind is Kind.NUMBER:
            if not isinstance(argument, Number):
                raise _error(f"{what} needs a number here", argument)
            return argument.value
        if not isinstance(argument, StringList):
            raise _error(f"{what} needs {kind.value} here", argument)
        if kind is Kind.STRING and len(argument.values) != 1:
            raise _error(f"{what} needs a single string here", argument)
        if "encoded-character" in self.required:
            return tuple(map(decode_characters, argument.values))
        return argument.values

    def tests(self, node: Command | Test, spec: Spec) -> tuple[Checked, ...]:
        if spec.test is Takes.NOTHING:
            if node.tests:
                raise _error(f"{node.name} takes no test", node.tests[0])
            return ()
        if spec.test is Takes.TEST and (node.test_list or len(node.tests) != 1):
            raise _error(f"{node.name} needs one test", node)
        if spec.test is Takes.TEST_LIST and not node.test_list:
            raise _error(f"{node.name} needs a list of tests in parentheses", node)
        checked: list[Checked] = []
        for test in node.tests:
            try:
                checked.append(self.test(test))
            except SieveCheckError as exc:  # noted; the check goes on with the next test
                self.errors.append(exc)
        return tuple(checked)

    def test(self, node: Test) -> Checked:
        spec = self.tests_spec.get(node.name)
        if spec is None:
            raise _error(f'unknown test "{node.name}"', node)
        return self.node(node, spec, "test")

    def commands(self, nodes: tuple[Command, ...], top: bool) -> tuple[Checked, ...]:
        checked: list[Checked] = []
        previous: str | None = None
        requires_allowed = top
        for node in nodes:
            try:
                one = self.command(node, top, previous, requires_allowed)
            except SieveCheckError as exc:  # noted; the check goes on with the block and the next command
                self.errors.append(exc)
                if node.block is not None:
                    self.commands(node.block, False)
                previous = node.name
                requires_allowed = requires_allowed and node.name == "require"
                continue
            if node.name != "require":
                requires_allowed = False
            checked.append(one)
            previous = node.name
        return tuple(checked)

    def command(self, node: Command, top: bool, previous: str | None, requires_allowed: bool) -> Checked:
        """One command of `commands`, with its block."""
        spec = self.commands_spec.get(node.name)
        if spec is None:
            raise _error(f'unknown command "{node.name}"', node)
        if node.name in self.top_level and not top:
            raise _error(f'"{node.name}" must be at the top level', node)
        if node.name == "require" and not requires_allowed:
            raise _error('"require" must come before any other command', node)
        if node.name in ("elsif", "else") and previous not in ("if", "elsif"):
            raise _error(f'"{node.name}" must follow "if" or "elsif"', node)
        one = self.node(node, spec, "command")
        if spec.block != (node.block is not None):
            raise _error(f"{node.name} needs a block" if spec.block else f"{node.name} takes no block", node)
        block = None
        if node.block is not None:
            missing = self.unsupported_ihave(one)
            # RFC 5463 section 4: a block behind an ihave of what we do not have is never run, so it is
            # not checked against extensions we do not know; one we have acts as required in it
            block = () if missing else self.commands(node.block, False)
        if node.name == "require":
            self.require(node, one)
        return Checked(one.name, one.tags, one.positional, one.tests, block, node.line, node.column)


@dataclass(frozen=True)
class Extension:
    """Commands and tests beyond these specs, with the capability that names them (the test suite's
    vnd.dovecot.testsuite: tests/sieve/testsuite.py); `top_level` commands may not be nested."""

    capability: str
    commands: dict[str, Spec] = field(default_factory=dict)
    tests: dict[str, Spec] = field(default_factory=dict)
    top_level: frozenset[str] = frozenset()


def check(
    commands: tuple[Command, ...],
    *,
    supported: frozenset[str] = SUPPORTED,
    extension: Extension | None = None,
) -> tuple[Checked, ...]:
    """The checked commands of a parsed script (see the module docstring); SieveCheckError when it is not
    valid Sieve."""
    checker = _Checker(supported | {extension.capability} if extension is not None else supported)
    if extension is not None:
        checker.commands_spec = {**COMMANDS, **extension.commands}
        checker.tests_spec = {**TESTS, **extension.tests}
        checker.top_level = extension.top_level
    checked = checker.commands(commands, True)
    if checker.errors:
        first = checker.errors[0]
        first.errors = tuple(checker.errors)
        raise first
    return checked
