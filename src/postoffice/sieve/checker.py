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

Built so far: the base language of RFC 5228 and the extensions fileinto, envelope, reject and ereject (RFC
5429), copy (RFC 3894), vacation and vacation-seconds (RFC 5230, 6131), imap4flags (RFC 5232, without the
variable-name forms, which need "variables"), and the comparator i;ascii-numeric (RFC 4790). `SUPPORTED`
lists them; the other extensions of issue 15 add their specs here as they are built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from postoffice.sieve.grammar import Argument, Command, Number, SieveSyntaxError, StringList, Tag, Test


class SieveCheckError(SieveSyntaxError):
    """A script that parses but is not valid Sieve (an unknown command, a wrong argument, a missing
    `require`), and where."""


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
        "reject",
        "ereject",
        "copy",
        "comparator-i;octet",
        "comparator-i;ascii-casemap",
        "comparator-i;ascii-numeric",
        "vacation",
        "vacation-seconds",
        "imap4flags",
    }
)
#: Comparators every script may name without `require` (RFC 5228 section 2.7.3).
BUILT_IN_COMPARATORS = frozenset({"i;octet", "i;ascii-casemap"})

_MATCH_TYPES = {"is": None, "contains": None, "matches": None}
_ADDRESS_PARTS = {"localpart": None, "domain": None, "all": None}
_COMPARATOR = {"comparator": Kind.STRING}
_MATCH_GROUPS = (frozenset(_MATCH_TYPES), frozenset({"comparator"}))

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
        tags={"copy": None, "flags": Kind.STRINGS},
        needs="fileinto",
        tag_needs={"copy": "copy", "flags": "imap4flags"},
    ),
    # RFC 5232 section 3 (the form with a variable name needs "variables", which is not supported yet)
    "setflag": Spec(positional=(Kind.STRINGS,), needs="imap4flags"),
    "addflag": Spec(positional=(Kind.STRINGS,), needs="imap4flags"),
    "removeflag": Spec(positional=(Kind.STRINGS,), needs="imap4flags"),
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
        },
        groups=(frozenset({"days", "seconds"}),),
        needs="vacation",
        tag_needs={"seconds": "vacation-seconds"},
    ),
}

TESTS: dict[str, Spec] = {
    "address": Spec(
        positional=(Kind.STRINGS, Kind.STRINGS),
        tags={**_MATCH_TYPES, **_ADDRESS_PARTS, **_COMPARATOR},
        groups=(*_MATCH_GROUPS, frozenset(_ADDRESS_PARTS)),
    ),
    "envelope": Spec(
        positional=(Kind.STRINGS, Kind.STRINGS),
        tags={**_MATCH_TYPES, **_ADDRESS_PARTS, **_COMPARATOR},
        groups=(*_MATCH_GROUPS, frozenset(_ADDRESS_PARTS)),
        needs="envelope",
    ),
    "header": Spec(
        positional=(Kind.STRINGS, Kind.STRINGS), tags={**_MATCH_TYPES, **_COMPARATOR}, groups=_MATCH_GROUPS
    ),
    "exists": Spec(positional=(Kind.STRINGS,)),
    "hasflag": Spec(  # RFC 5232 section 4
        positional=(Kind.STRINGS,),
        tags={**_MATCH_TYPES, **_COMPARATOR},
        groups=_MATCH_GROUPS,
        needs="imap4flags",
    ),
    "size": Spec(positional=(Kind.NUMBER,), tags={"over": None, "under": None}),
    "allof": Spec(test=Takes.TEST_LIST),
    "anyof": Spec(test=Takes.TEST_LIST),
    "not": Spec(test=Takes.TEST),
    "true": Spec(),
    "false": Spec(),
}


def strings(value: tuple[str, ...] | int | None) -> tuple[str, ...]:
    """A value `_Checker.value` made of a string or string list (the specs say which values are)."""
    return value if isinstance(value, tuple) else ()


def _error(message: str, node: Command | Test | Argument) -> SieveCheckError:
    return SieveCheckError(message, node.line, node.column)


class _Checker:
    def __init__(self, supported: frozenset[str]) -> None:
        self.supported = supported
        self.required: set[str] = set()

    def require(self, node: Command, checked: Checked) -> None:
        for name in strings(checked.positional[0]):
            if name.lower() not in self.supported:
                raise _error(f'the extension "{name}" is not supported', node.arguments[0])
            self.required.add(name.lower())

    def needs(self, capability: str | None, what: str, node: Command | Test | Argument) -> None:
        if capability is not None and capability not in self.required:
            raise _error(f'{what} needs require "{capability}"', node)

    def node(self, node: Command | Test, spec: Spec, what: str) -> Checked:
        self.needs(spec.needs, f'the {what} "{node.name}"', node)
        tags: dict[str, tuple[str, ...] | int | None] = {}
        positional: list[tuple[str, ...] | int] = []
        arguments = list(node.arguments)
        i = 0
        while i < len(arguments):
            argument = arguments[i]
            i += 1
            if isinstance(argument, Tag):
                if positional:  # section 2.6.2: tagged arguments appear before positional arguments
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
            else:
                if len(positional) >= len(spec.positional):
                    raise _error(f"{node.name} takes {len(spec.positional)} positional arguments", argument)
                positional.append(self.value(argument, spec.positional[len(positional)], node.name))
        if len(positional) < len(spec.positional):
            missing = spec.positional[len(positional)]
            raise _error(f"{node.name} needs {missing.value} as its argument {len(positional) + 1}", node)
        if node.name == "size" and len(tags.keys() & {"over", "under"}) != 1:
            raise _error('size needs exactly one of ":over" and ":under"', node)
        tests = self.tests(node, spec)
        return Checked(node.name, tags, tuple(positional), tests, None, node.line, node.column)

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
        return tuple(self.test(test) for test in node.tests)

    def test(self, node: Test) -> Checked:
        spec = TESTS.get(node.name)
        if spec is None:
            raise _error(f'unknown test "{node.name}"', node)
        return self.node(node, spec, "test")

    def commands(self, nodes: tuple[Command, ...], top: bool) -> tuple[Checked, ...]:
        checked: list[Checked] = []
        previous: str | None = None
        requires_allowed = top
        for node in nodes:
            spec = COMMANDS.get(node.name)
            if spec is None:
                raise _error(f'unknown command "{node.name}"', node)
            if node.name == "require" and not requires_allowed:
                raise _error('"require" must come before any other command', node)
            if node.name != "require":
                requires_allowed = False
            if node.name in ("elsif", "else") and previous not in ("if", "elsif"):
                raise _error(f'"{node.name}" must follow "if" or "elsif"', node)
            one = self.node(node, spec, "command")
            if spec.block != (node.block is not None):
                raise _error(
                    f"{node.name} needs a block" if spec.block else f"{node.name} takes no block", node
                )
            block = self.commands(node.block, False) if node.block is not None else None
            if node.name == "require":
                self.require(node, one)
            checked.append(
                Checked(one.name, one.tags, one.positional, one.tests, block, node.line, node.column)
            )
            previous = node.name
        return tuple(checked)


def check(commands: tuple[Command, ...], *, supported: frozenset[str] = SUPPORTED) -> tuple[Checked, ...]:
    """The checked commands of a parsed script (see the module docstring); SieveCheckError when it is not
    valid Sieve."""
    return _Checker(supported).commands(commands, True)
