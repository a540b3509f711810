"""Bugs a review found in the Sieve grammar and checker: dot-stuffing of multi-line strings, and
vacation-seconds implying vacation."""

from __future__ import annotations

from postoffice.sieve.grammar import StringList, parse


def test_a_multiline_line_with_one_leading_dot_keeps_it() -> None:
    # RFC 5228 section 2.4.2: "a line that begins with a dot followed by a non-dot character is not
    # interpreted as dot-stuffed; that is, ".foo" is interpreted as ".foo"" (section 8.1: remove a leading
    # '.' only if followed by another '.'). The parser drops the dot of every line that starts with one.
    (command,) = parse("vacation text:\r\n.signature follows\r\n..two\r\n.\r\n;")
    assert command.arguments[0] == StringList((".signature follows\r\n.two\r\n",), bracketed=False)


def test_require_vacation_seconds_alone_allows_vacation() -> None:
    # RFC 6131 section 2: '"vacation-seconds" implies "vacation", and a script with "vacation-seconds" in a
    # "require" list MAY omit "vacation" from that list'. The checker refuses such a script (and so does
    # PUTSCRIPT, which uses it).
    from postoffice.sieve.stage import compile_script

    compile_script('require "vacation-seconds";\r\nvacation :seconds 3600 "away";\r\n')
