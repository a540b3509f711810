"""The Sieve syntax (RFC 5228 section 8): what `postoffice.sieve.grammar.parse` makes of scripts, where it
says they are wrong, its limits, and `to_text` back."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.sieve import grammar
from postoffice.sieve.grammar import Command, Number, SieveSyntaxError, StringList, Tag, parse, to_text
from postoffice.sieve.grammar import Test as SieveTest
from tests.sieve.helpers import assert_refused


def s(*values: str) -> StringList:
    return StringList(values, True)


def one(value: str) -> StringList:
    return StringList((value,), False)


SCRIPT = """require ["fileinto", "vacation"];  # extensions
/* lists go to their folders */
if header :contains "List-Id" "<dev.lists.example.org>" {
    fileinto "Lists/dev";
    stop;
} elsif anyof (size :over 2M, not exists "From") {
    discard;
} else {
    vacation :days 7 :subject "Away" text: # the reply
Back on Monday.
..dot-stuffed line
.
;
}
"""


def test_a_usual_script_gives_its_commands_tests_and_arguments() -> None:
    commands = parse(SCRIPT.replace("\n", "\r\n"))
    assert commands == (
        Command("require", (s("fileinto", "vacation"),)),
        Command(
            "if",
            (),
            (SieveTest("header", (Tag("contains"), one("List-Id"), one("<dev.lists.example.org>"))),),
            block=(Command("fileinto", (one("Lists/dev"),)), Command("stop")),
        ),
        Command(
            "elsif",
            (),
            (
                SieveTest(
                    "anyof",
                    (),
                    (
                        SieveTest("size", (Tag("over"), Number(2 * 1024 * 1024))),
                        SieveTest("not", (), (SieveTest("exists", (one("From"),)),)),
                    ),
                    True,
                ),
            ),
            block=(Command("discard"),),
        ),
        Command(
            "else",
            block=(
                Command(
                    "vacation",
                    (
                        Tag("days"),
                        Number(7),
                        Tag("subject"),
                        one("Away"),
                        one("Back on Monday.\r\n.dot-stuffed line\r\n"),
                    ),
                ),
            ),
        ),
    )
    # where each was written
    assert (commands[1].line, commands[1].column) == (3, 1)
    assert (commands[2].tests[0].tests[1].line, commands[2].tests[0].tests[1].column) == (6, 31)
    # a script with bare LF line ends is the same script
    assert parse(SCRIPT) == commands


def test_names_tags_and_quantifiers_are_case_insensitive() -> None:
    assert parse('IF Header :IS "Subject" "x" { KEEP; }\r\nif size :UNDER 34m { Discard; }') == (
        Command(
            "if", (), (SieveTest("header", (Tag("is"), one("Subject"), one("x"))),), block=(Command("keep"),)
        ),
        Command(
            "if", (), (SieveTest("size", (Tag("under"), Number(34 * 2**20))),), block=(Command("discard"),)
        ),
    )
    assert [parse(f"x {n};")[0].arguments[0] for n in ("1k", "1K", "3g", "0", "007")] == [
        Number(1024),
        Number(1024),
        Number(3 * 2**30),
        Number(0),
        Number(7),
    ]


def test_quoted_strings_and_their_escapes() -> None:
    cases = {
        r'"plain"': "plain",
        r'"a\"b"': 'a"b',
        r'"back\\slash"': "back\\slash",
        r'"\a\b\c"': "abc",  # an undefined escape is the character alone (section 2.4.2)
        '"two\nlines"': "two\r\nlines",
        '"two\r\nlines"': "two\r\nlines",
        '"中文 ✓"': "中文 ✓",
        '""': "",
    }
    assert {text: parse(f"x {text};")[0].arguments[0] for text in cases} == {
        text: one(value) for text, value in cases.items()
    }
    assert parse('x ["a", "b" , "c"];')[0].arguments == (s("a", "b", "c"),)


def test_multi_line_strings() -> None:
    assert parse("x text:\r\nline 1\r\n\r\n..x\r\n.\r\n;")[0].arguments == (one("line 1\r\n\r\n.x\r\n"),)
    assert parse("x text: \t# why\n.\n;")[0].arguments == (one(""),)
    assert parse('x TEXT:\n"quoted" stays\n.\n;')[0].arguments == (one('"quoted" stays\r\n'),)


@pytest.mark.parametrize(
    ("script", "line", "column", "words"),
    [
        ("keep", 1, 5, 'expected ";" or a block'),
        ('keep;\r\n  fileinto "x"\r\n', 3, 1, 'expected ";" or a block'),
        ('x "open', 1, 3, "not closed"),
        ("/* open\r\nkeep;", 1, 1, "comment is not closed"),
        ("if true {\r\n keep;\r\n", 3, 1, '"}"'),
        ("keep; }", 1, 7, '"}" without'),
        ("x : y;", 1, 3, "a tag needs a name"),
        ("x [];", 1, 4, "expected a string"),
        ('x ["a" "b"];', 1, 8, '"," or "]"'),
        ("x\r;", 1, 2, "CR"),
        ("x # c\rd\r\n;", 1, 6, "CR"),
        ('x "a\rb";', 1, 5, "CR"),
        ("x 99999999999999999999999;", 1, 3, "too large"),
        ("x 9000000000G;", 1, 3, "too large"),
        ("x text: y\r\n.\r\n;", 1, 3, "end of the line"),
        ("x text:\r\nno end\r\n", 1, 3, 'line holding "."'),
        ("if (true;", 1, 9, '"," or ")"'),
        ("if anyof(true,) {}", 1, 15, "expected a test"),
        ('"s";', 1, 1, "expected a command"),
        ("x \0;", 1, 3, "NUL"),
        ("keep;\r\nx 1 2 ٣;", 2, 7, 'expected ";"'),
    ],
)
def test_errors_say_what_and_where(script: str, line: int, column: int, words: str) -> None:
    assert_refused(parse, SieveSyntaxError, script, (line, column), words)


def test_scripts_as_octets_must_be_utf8() -> None:
    assert parse("keep; # ü\r\n".encode()) == (Command("keep"),)
    with pytest.raises(SieveSyntaxError) as caught:
        parse(b"keep;\r\n# \xff\r\n")
    assert (caught.value.line, caught.value.column) == (2, 3)
    assert parse("\ufeffkeep;".encode()) == (Command("keep"),)  # a byte order mark at the start


def test_limits_on_size_and_nesting() -> None:
    deep_blocks = "if true {" * grammar.MAX_BLOCK_DEPTH + "keep;" + "}" * grammar.MAX_BLOCK_DEPTH
    assert parse(deep_blocks)[0].name == "if"
    with pytest.raises(SieveSyntaxError, match="blocks are nested deeper"):
        parse("if true {" + deep_blocks + "}")
    deep_tests = "if " + "not " * (grammar.MAX_TEST_DEPTH - 1) + "true { }"
    assert parse(deep_tests)[0].tests[0].name == "not"
    with pytest.raises(SieveSyntaxError, match="tests are nested deeper"):
        parse("if not " + deep_tests[3:])
    with pytest.raises(SieveSyntaxError, match="tests are nested deeper"):
        parse("if " + "anyof(" * 40 + "true" + ")" * 40 + " {}")
    big = "# " + "x" * grammar.MAX_SCRIPT_OCTETS + "\r\nkeep;"
    for script in (big, big.encode()):
        with pytest.raises(SieveSyntaxError, match="larger than"):
            parse(script)


def test_to_text_writes_what_parse_reads() -> None:
    commands = parse(SCRIPT)
    text = to_text(commands)
    assert parse(text) == commands
    assert 'fileinto "Lists/dev";\r\n' in text
    assert "text:\r\nBack on Monday.\r\n..dot-stuffed line\r\n.\r\n" in text


# ------------------------------------------------------------------------------------------ properties

_names = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0\r\n\ufeff"), max_size=12)
_values = st.one_of(
    _text, st.lists(_text, min_size=1, max_size=3).map(lambda lines: "\r\n".join(lines) + "\r\n")
)
_arguments = st.one_of(
    _names.map(Tag),
    st.integers(0, grammar.MAX_NUMBER).map(Number),
    _values.map(one),
    st.lists(_values, min_size=1, max_size=3).map(lambda values: StringList(tuple(values), True)),
)
_tests = st.recursive(
    st.builds(SieveTest, _names, st.lists(_arguments, max_size=3).map(tuple)),
    lambda inner: st.one_of(
        st.builds(
            SieveTest,
            _names,
            st.lists(_arguments, max_size=2).map(tuple),
            st.lists(inner, min_size=1, max_size=3).map(tuple),
            st.just(True),
        ),
        st.builds(
            SieveTest,
            _names,
            st.lists(_arguments, max_size=2).map(tuple),
            inner.map(lambda t: (t,)),
            st.just(False),
        ),
    ),
    max_leaves=6,
)
_commands = st.recursive(
    st.builds(
        Command,
        _names,
        st.lists(_arguments, max_size=3).map(tuple),
        st.one_of(st.just(()), _tests.map(lambda t: (t,))),
    ),
    lambda inner: st.builds(
        Command,
        _names,
        st.lists(_arguments, max_size=2).map(tuple),
        st.one_of(st.just(()), _tests.map(lambda t: (t,))),
        st.just(False),
        st.lists(inner, max_size=3).map(tuple),
    ),
    max_leaves=8,
)


@settings(max_examples=300)
@given(st.lists(_commands, max_size=4).map(tuple))
def test_any_tree_written_by_to_text_is_read_back_the_same(commands: tuple[Command, ...]) -> None:
    assert parse(to_text(commands)) == commands


@settings(max_examples=500)
@given(
    st.one_of(
        st.text(max_size=300),
        st.lists(
            st.sampled_from(
                [
                    '"',
                    "\\",
                    "text:",
                    "\r\n",
                    "\n",
                    "\r",
                    ".",
                    "/*",
                    "*/",
                    "#",
                    "[",
                    "]",
                    "(",
                    ")",
                    "{",
                    "}",
                    ",",
                    ";",
                    ":",
                    "if",
                    " ",
                    "1",
                    "K",
                    "a",
                    "ü",
                    "\0",
                ]
            ),
            max_size=60,
        ).map("".join),
    )
)
def test_any_text_is_a_script_or_a_syntax_error(text: str) -> None:
    error: SieveSyntaxError | None = None
    try:
        commands = parse(text)
    except SieveSyntaxError as exc:
        error = exc
    if error is not None:
        assert error.line >= 1
        assert 1 <= error.column <= len(text) + 1
    else:
        assert parse(to_text(commands)) == commands
