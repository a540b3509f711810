"""The syntax of Sieve scripts (RFC 5228 section 8): text to a tree of commands and tests, and back.

`parse(text)` gives the script's commands or raises SieveSyntaxError with the line and column (both counted
from 1) of what is wrong. It checks the grammar only; which commands, tests and tags exist, and what
arguments they take, is the checker's work (later). Choices where the RFC leaves room, or where practice
differs from its letter:
- Line ends are CRLF, as the RFC writes, or a bare LF (scripts written on Unix; Pigeonhole accepts them). A
  CR that does not start a CRLF is an error outside strings.
- Identifiers, tags and number quantifiers are case-insensitive: names are kept in lower case, and "10k" is
  10 * 1024 (Pigeonhole's compile tests expect this of every implementation).
- Quoted strings: `\\\\` is a backslash and `\\"` a quote; any other backslash is dropped ("\\a" is "a",
  section 2.4.2). A line end inside a quoted string is kept as CRLF.
- Multi-line strings ("text:"): the lines up to a line that holds a single ".", each with its line end as
  CRLF; a line that starts with ".." loses its first dot (dot-stuffing, sections 2.4.2 and 8.1); ".x" stays.
- Numbers: 1*DIGIT with an optional K, M or G (2^10, 2^20, 2^30); a value above 2^63 - 1 is an error.
- The script must be UTF-8 (section 2.2); a NUL character anywhere is an error.
- Bracket comments do not nest; one left open at the end is an error.
- Limits, so that a script from a client costs bounded work: MAX_SCRIPT_OCTETS of text, MAX_BLOCK_DEPTH
  nested blocks, MAX_TEST_DEPTH nested tests.

`parse_spans(text)` is `parse` with the offsets of each top-level command in the text, for an editor that
keeps the text of what it does not change (the webmail's filters, docs/decisions/0088).

`to_text(commands)` writes a tree back as a script that `parse` reads to the same tree (strings quoted, or
as multi-line strings when they hold line ends), for scripts made from forms (the webmail's filters).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: The largest script text accepted, in octets (Pigeonhole's default sieve_max_script_size is 1 MiB).
MAX_SCRIPT_OCTETS = 1024 * 1024
#: Blocks ("{ ... }") nested deeper than this are an error.
MAX_BLOCK_DEPTH = 32
#: Tests nested deeper than this ("not not not ...", "allof(anyof(...))") are an error.
MAX_TEST_DEPTH = 32
#: The largest number a script may write (after its quantifier).
MAX_NUMBER = 2**63 - 1

_QUANTIFIERS = {"k": 2**10, "m": 2**20, "g": 2**30}


class SieveSyntaxError(ValueError):
    """What is wrong with a script, and where (line and column from 1)."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.message = message
        self.line = line
        self.column = column


@dataclass(frozen=True)
class StringList:
    """A string-list argument; `bracketed` False: a single string written without brackets."""

    values: tuple[str, ...]
    bracketed: bool = True
    line: int = field(default=0, compare=False)  # where it was written: not part of what it is
    column: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Number:
    value: int
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Tag:
    """A tagged argument (":name"), its name in lower case without the colon."""

    name: str
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)


Argument = StringList | Number | Tag


@dataclass(frozen=True)
class Test:
    """A test: its name in lower case, its arguments, and its tests (`test_list`: written in parentheses)."""

    name: str
    arguments: tuple[Argument, ...] = ()
    tests: tuple[Test, ...] = ()
    test_list: bool = False
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Command:
    """A command: as a test, plus its block (None: the command ends with ";")."""

    name: str
    arguments: tuple[Argument, ...] = ()
    tests: tuple[Test, ...] = ()
    test_list: bool = False
    block: tuple[Command, ...] | None = None
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)


# ------------------------------------------------------------------------------------------------ lexer

# One token at a position; white space and comments between tokens are skipped by `_skip`.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"([0-9]+)([KkMmGg]?)")
_WHITE = re.compile(r"(?:[ \t\n]|\r\n)+")
_HASH_COMMENT = re.compile(r"#[^\r\n]*(?:\r\n|\n|\Z)")
_TEXT_START = re.compile(r"text:[ \t]*(?:#[^\r\n]*)?(?:\r\n|\n)", re.IGNORECASE)
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\n)")
_SURROGATE = re.compile("[\ud800-\udfff]")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.line_start = 0  # the offset of the current line's first character
        self.spans: list[tuple[int, int]] = []  # (start, end) offsets of the top-level commands

    # -- positions and errors

    def where(self, pos: int | None = None) -> tuple[int, int]:
        """(line, column) of `pos` (default: the current position)."""
        if pos is None or pos == self.pos:
            return self.line, self.pos - self.line_start + 1
        line = self.text.count("\n", 0, pos) + 1
        return line, pos - (self.text.rfind("\n", 0, pos) + 1) + 1

    def error(self, message: str, pos: int | None = None) -> SieveSyntaxError:
        line, column = self.where(pos)
        return SieveSyntaxError(message, line, column)

    def advance(self, end: int) -> None:
        """Move to `end`, counting the line ends passed."""
        newlines = self.text.count("\n", self.pos, end)
        if newlines:
            self.line += newlines
            self.line_start = self.text.rfind("\n", self.pos, end) + 1
        self.pos = end

    def near(self) -> str:
        if self.pos >= len(self.text):
            return "the end of the script"
        return repr(self.text[self.pos : self.pos + 12])

    # -- white space and comments

    def skip(self) -> None:
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            white = _WHITE.match(text, self.pos)
            if white is not None:
                self.advance(white.end())
            elif ch == "#":
                comment = _HASH_COMMENT.match(text, self.pos)
                if comment is None:  # a CR in the comment that does not start its line end
                    raise self.error("a CR that does not start a line end", text.index("\r", self.pos))
                self.advance(comment.end())
            elif text.startswith("/*", self.pos):
                end = text.find("*/", self.pos + 2)
                if end < 0:
                    raise self.error("a /* comment is not closed")
                self.advance(end + 2)
            elif ch == "\r":
                raise self.error("a CR that does not start a line end")
            else:
                return

    def take(self, char: str) -> bool:
        self.skip()
        if self.text.startswith(char, self.pos):
            self.advance(self.pos + len(char))
            return True
        return False

    def expect(self, char: str, what: str) -> None:
        if not self.take(char):
            raise self.error(f"expected {what} but found {self.near()}")

    # -- tokens

    def identifier(self) -> str | None:
        self.skip()
        m = _IDENTIFIER.match(self.text, self.pos)
        if m is None:
            return None
        self.advance(m.end())
        return m.group().lower()

    def quoted(self) -> str:
        """A quoted string; the position is at its opening quote."""
        start = self.pos
        text = self.text
        out: list[str] = []
        i = self.pos + 1
        while True:
            j = i
            while j < len(text) and text[j] not in '"\\\r\n':
                j += 1
            out.append(text[i:j])
            if j >= len(text):
                raise self.error("a quoted string is not closed", start)
            ch = text[j]
            if ch == '"':
                self.advance(j + 1)
                return "".join(out)
            if ch == "\\":
                if j + 1 >= len(text):
                    raise self.error("a quoted string is not closed", start)
                nxt = text[j + 1]
                if nxt in "\r\n":  # a backslash before a line end: the line end stays, the backslash goes
                    i = j + 1
                    continue
                out.append(nxt)
                i = j + 2
            elif text.startswith("\r\n", j) or ch == "\n":
                out.append("\r\n")
                i = j + (2 if ch == "\r" else 1)
            else:
                raise self.error("a CR that does not start a line end", j)

    def multiline(self) -> str:
        """A multi-line string; the position is at "text:"."""
        start = self.pos
        m = _TEXT_START.match(self.text, self.pos)
        if m is None:
            raise self.error('"text:" must be followed by the end of the line', start)
        i = m.end()
        lines: list[str] = []
        while True:
            line = _LINE.match(self.text, i)
            if line is None:
                raise self.error('a multi-line string is not ended by a line holding "."', start)
            body = line.group().rstrip("\r\n")
            if "\r" in body:
                raise self.error("a CR that does not start a line end", i + body.index("\r"))
            i = line.end()
            if body == ".":
                break
            # section 8.1 (multiline-dotstart): a leading "." is removed only when another one follows
            lines.append((body[1:] if body.startswith("..") else body) + "\r\n")
        self.advance(i)
        return "".join(lines)

    def string(self) -> str | None:
        self.skip()
        if self.text.startswith('"', self.pos):
            return self.quoted()
        if self.text[self.pos : self.pos + 5].lower() == "text:":
            return self.multiline()
        return None

    def argument(self) -> Argument | None:
        self.skip()
        line, column = self.where()
        text, pos = self.text, self.pos
        if pos >= len(text):
            return None
        ch = text[pos]
        if ch == ":":
            m = _IDENTIFIER.match(text, pos + 1)
            if m is None:
                raise self.error("a tag needs a name after the colon")
            self.advance(m.end())
            return Tag(m.group().lower(), line, column)
        number = _NUMBER.match(text, pos)
        if number is not None:
            digits, quantifier = number.groups()
            value = (
                int(digits) * _QUANTIFIERS.get(quantifier.lower(), 1) if len(digits) <= 20 else MAX_NUMBER + 1
            )
            if value > MAX_NUMBER:
                raise self.error(f"the number {digits[:20]}{quantifier} is too large")
            self.advance(number.end())
            return Number(value, line, column)
        if ch == "[":
            self.advance(pos + 1)
            values = [self.required_string()]
            while self.take(","):
                values.append(self.required_string())
            self.expect("]", 'a "," or "]"')
            return StringList(tuple(values), True, line, column)
        single = self.string()
        return None if single is None else StringList((single,), False, line, column)

    def required_string(self) -> str:
        value = self.string()
        if value is None:
            raise self.error(f"expected a string but found {self.near()}")
        return value

    # -- grammar

    def arguments(self, depth: int) -> tuple[tuple[Argument, ...], tuple[Test, ...], bool]:
        """`*argument [ test / test-list ]`."""
        arguments: list[Argument] = []
        while (argument := self.argument()) is not None:
            arguments.append(argument)
        if self.take("("):
            tests = [self.test(depth + 1)]
            while self.take(","):
                tests.append(self.test(depth + 1))
            self.expect(")", 'a "," or ")"')
            return tuple(arguments), tuple(tests), True
        self.skip()
        if _IDENTIFIER.match(self.text, self.pos):
            return tuple(arguments), (self.test(depth + 1),), False
        return tuple(arguments), (), False

    def test(self, depth: int) -> Test:
        if depth > MAX_TEST_DEPTH:
            raise self.error(f"tests are nested deeper than {MAX_TEST_DEPTH}")
        self.skip()
        line, column = self.where()
        name = self.identifier()
        if name is None:
            raise self.error(f"expected a test but found {self.near()}")
        arguments, tests, test_list = self.arguments(depth)
        return Test(name, arguments, tests, test_list, line, column)

    def commands(self, depth: int) -> tuple[Command, ...]:
        """`*command`, up to the end of the script (depth 0) or a "}"."""
        found: list[Command] = []
        while True:
            self.skip()
            if self.pos >= len(self.text) or self.text.startswith("}", self.pos):
                return tuple(found)
            line, column = self.where()
            start = self.pos
            name = self.identifier()
            if name is None:
                raise self.error(f"expected a command but found {self.near()}")
            arguments, tests, test_list = self.arguments(0)
            block: tuple[Command, ...] | None = None
            if self.take("{"):
                if depth + 1 > MAX_BLOCK_DEPTH:
                    raise self.error(f"blocks are nested deeper than {MAX_BLOCK_DEPTH}")
                block = self.commands(depth + 1)
                self.expect("}", 'a command or "}"')
            elif not self.take(";"):
                raise self.error(f'expected ";" or a block after {name} but found {self.near()}')
            found.append(Command(name, arguments, tests, test_list, block, line, column))
            if depth == 0:
                self.spans.append((start, self.pos))


def parse(script: str | bytes) -> tuple[Command, ...]:
    """The commands of a Sieve script (see the module docstring); SieveSyntaxError when it is not one."""
    return _parse(script).commands


@dataclass(frozen=True)
class Spans:
    """A parsed script with where its top-level commands are in the text: `spans[i]` is the (start, end)
    offsets in `text` of `commands[i]`, from its name to just after its ";" or "}" (comments and white space
    between commands belong to none)."""

    text: str
    commands: tuple[Command, ...]
    spans: tuple[tuple[int, int], ...]


def parse_spans(script: str) -> Spans:
    """`parse`, with the source offsets of the top-level commands (for editors that keep the text of the
    commands they do not change: the webmail's filters)."""
    return _parse(script)


def _parse(script: str | bytes) -> Spans:
    if isinstance(script, bytes):
        raw = script
        if len(raw) > MAX_SCRIPT_OCTETS:
            raise SieveSyntaxError(f"the script is larger than {MAX_SCRIPT_OCTETS} octets", 1, 1)
        try:
            script = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
            raise SieveSyntaxError("the script is not valid UTF-8", line, column) from None
    elif len(script) > MAX_SCRIPT_OCTETS or len(script.encode("utf-8", "surrogatepass")) > MAX_SCRIPT_OCTETS:
        raise SieveSyntaxError(f"the script is larger than {MAX_SCRIPT_OCTETS} octets", 1, 1)
    parser = _Parser(script)
    for bad, what in (("\0", "a NUL character"), ("\ufeff", "a byte order mark")):
        at = script.find(bad, 1 if bad == "\ufeff" else 0)
        if at >= 0:
            raise parser.error(f"{what} is not allowed in a script", at)
    surrogate = _SURROGATE.search(script)
    if surrogate is not None:
        raise parser.error("the script is not valid UTF-8", surrogate.start())
    if script.startswith("\ufeff"):  # a byte order mark at the start, as some editors write: skipped
        parser.advance(1)
        parser.line_start = 1
    commands = parser.commands(0)
    if parser.pos < len(script):
        raise parser.error('a "}" without its "{"')
    return Spans(script, commands, tuple(parser.spans))


# ------------------------------------------------------------------------------------------ back to text


def _quote(value: str) -> str:
    if "\n" in value or "\r" in value:
        lines = value.replace("\r\n", "\n").split("\n")
        if lines[-1] == "":
            lines.pop()
            body = "".join(("." + line if line.startswith(".") else line) + "\r\n" for line in lines)
            return "text:\r\n" + body + ".\r\n"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _argument_text(argument: Argument) -> str:
    if isinstance(argument, Tag):
        return ":" + argument.name
    if isinstance(argument, Number):
        return str(argument.value)
    if not argument.bracketed and len(argument.values) == 1:
        return _quote(argument.values[0])
    return "[" + ", ".join(map(_quote, argument.values)) + "]"


def _test_text(node: Test | Command) -> str:
    parts = [node.name, *map(_argument_text, node.arguments)]
    if node.test_list:
        parts.append("(" + ", ".join(map(_test_text, node.tests)) + ")")
    elif node.tests:
        parts.append(_test_text(node.tests[0]))
    return " ".join(parts)


def to_text(commands: tuple[Command, ...] | list[Command], indent: str = "") -> str:
    """A script that `parse` reads to `commands` (CRLF line ends, blocks indented by two spaces). A string
    with line ends is written as a multi-line string when it ends with one, else quoted (a quoted string may
    hold line ends, kept as CRLF)."""
    out: list[str] = []
    for command in commands:
        head = indent + _test_text(command)
        if command.block is None:
            out.append(head + ";\r\n")
        else:
            out.append(head + " {\r\n" + to_text(command.block, indent + "  ") + indent + "}\r\n")
    return "".join(out)
