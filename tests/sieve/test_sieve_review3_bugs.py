"""Bugs a review found in the Sieve extensions of decision 0090 (editheader, regex, include), each kept as a
test: checker, interpreter and matching.py."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from postoffice.sieve.checker import SieveCheckError, check
from postoffice.sieve.grammar import parse
from postoffice.sieve.interpreter import (
    FileInto,
    SieveContext,
    SieveMessage,
    SieveRuntimeError,
    added_field,
    run,
)
from postoffice.sieve.matching import compile_regex

MESSAGE = b"From: alice@example.org\r\nSubject: hello\r\n\r\nbody\r\n"


def outcome(script: str, raw: bytes = MESSAGE, context: SieveContext | None = None):  # type: ignore[no-untyped-def]
    return run(
        check(parse(script)), SieveMessage.from_bytes(raw, "alice@example.org", "me@x.example"), context
    )


# -- editheader -------------------------------------------------------------------------------------------


def test_an_included_script_sees_and_keeps_the_edits() -> None:
    """RFC 5293 section 7 (tests see the header as edited so far) and RFC 6609 (an included script runs on
    the same message): interpreter.py include() starts the child _Run from the unedited message, and the
    child's edits are dropped when it returns (the implicit keep stores the parent's header)."""
    scripts = {
        "sub": check(
            parse(
                'require ["editheader", "fileinto"];\r\n'
                'if exists "X-Parent" { fileinto "SeenParentEdit"; }\r\n'
                'addheader "X-Child" "1";\r\n'
            )
        )
    }
    context = SieveContext(
        include=lambda name, is_global: scripts.get(name), mailboxes=frozenset({"SeenParentEdit"})
    )
    result = outcome(
        'require ["editheader", "include"];\r\naddheader "X-Parent" "1";\r\ninclude "sub";\r\n',
        context=context,
    )
    assert any(isinstance(a, FileInto) and a.mailbox == "SeenParentEdit" for a in result.actions), (
        result.actions
    )
    assert result.header is not None
    assert any(f.startswith(b"X-Child:") for f in result.header), result.header


def test_an_added_field_has_no_line_over_998_octets() -> None:
    """RFC 5293 section 4: a value that would not be valid RFC 5322 MUST be refused or encoded (folded) to be
    compliant; RFC 5322 2.1.1: lines MUST be at most 998 octets. A 2000-octet word (or a long field name)
    comes out on one line."""
    for name, value in (("X-Long", "a" * 2000), ("X-" + "N" * 1200, "v")):
        try:
            _shown, raw = added_field(name, value)
        except SieveRuntimeError:
            continue  # refusing it is allowed too
        longest = max(len(line) for line in raw.split(b"\r\n"))
        assert longest <= 998, f"{name[:10]}...: a line of {longest} octets"


def test_the_edited_header_has_a_bound() -> None:
    """MAX_HEADER_OCTETS bounds the header read, but not the header a script builds: a 40 KB script makes a
    4 MB header (a 256 KiB script, the default limit, about 25 MB per copy, for each of up to 64 actions)."""
    script = (
        'require ["editheader", "variables"];\r\n'
        f'set "a" "{"x" * 2000}";\r\n' + 'addheader "X-Pad" "${a}";\r\n' * 2000
    )
    assert len(script) < 64 * 1024
    try:
        result = outcome(script)
    except SieveRuntimeError:
        return
    assert result.header is not None
    size = sum(map(len, result.header))
    assert size <= 1024 * 1024, f"an edited header of {size} octets"


# -- regex ------------------------------------------------------------------------------------------------


def test_regex_dollar_is_the_end_of_the_string() -> None:
    """POSIX (IEEE 1003.1 9.4.9): "$" anchors to the end of the string (no REG_NEWLINE). Python's "$" also
    matches before a final newline, so "abc$" matches "abc\\n" (glibc's regexec does not)."""
    assert compile_regex("abc$", False).search("abc\n") is None
    # in a script: an encoded word decodes to a value ending in a newline
    raw = b"Subject: =?utf-8?q?abc=0A?=\r\n\r\nbody\r\n"
    assert outcome('require "regex"; if header :regex "subject" "abc$" { discard; }', raw).implicit_keep


@pytest.mark.parametrize(
    ("pattern", "value", "posix"),
    [
        ("a*+a", "aaa", (0, 3)),  # glibc: (a*)+a; `regex`: possessive, no match
        ("a{1,3}+a", "aaa", (0, 3)),
        ("a?+a", "a", (0, 1)),
        ("a+?", "", (0, 0)),  # glibc: (a+)? ; `regex`: lazy a+, needs one a
        ("a{2}?b", "b", (0, 1)),
    ],
)
def test_stacked_duplication_symbols_are_refused_or_read_as_posix_engines_do(
    pattern: str, value: str, posix: tuple[int, int]
) -> None:
    """ere()'s contract: refuse what POSIX leaves undefined and the module reads differently. Two duplication
    symbols (IEEE 1003.1 9.4.6: undefined) are passed through and become possessive / lazy quantifiers."""
    try:
        found = compile_regex(pattern, False).search(value)
    except ValueError:
        return
    assert found is not None
    assert found.span() == posix, (pattern, found)


@pytest.mark.parametrize("pattern", ["(*FAIL)", "(*F)|a", "(*PRUNE)a", "x(*SKIP)y", "^*a"])
def test_regex_module_verbs_are_not_posix(pattern: str) -> None:
    """ "(?" is refused but "(*VERB)" is not: the `regex` module's backtracking verbs are compiled; glibc's
    regcomp (Pigeonhole) refuses them (REG_BADRPT)."""
    with pytest.raises(SieveCheckError):
        check(parse(f'require "regex"; if header :regex "subject" "{pattern}" {{ discard; }}'))


def test_a_regex_key_cannot_exhaust_memory_when_the_script_is_checked() -> None:
    """A 23-octet key: compile_regex expands the counted repetitions (no bound, no timeout at compile time;
    "(a{1000}){1000}" alone is 0.9 s and ~140 MB kept in the lru_cache). Without a memory limit the process
    is killed by the OOM killer; under a 2 GB limit check() raises MemoryError, not SieveCheckError. The
    check runs in ManageSieve's PUTSCRIPT/CHECKSCRIPT, on the server's event loop."""
    code = textwrap.dedent(
        """
        import resource, time
        resource.setrlimit(resource.RLIMIT_AS, (2 * 1024**3, 2 * 1024**3))
        from postoffice.sieve.checker import SieveCheckError, check
        from postoffice.sieve.grammar import parse
        started = time.time()
        try:
            check(parse('require "regex"; if header :regex "subject" "((a{1000}){1000}){1000}" { discard; }'))
            print("accepted")
        except SieveCheckError as exc:
            print("SieveCheckError", exc)
        except BaseException as exc:
            print("ESCAPED", type(exc).__name__, round(time.time() - started, 1), "s")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    print(done.stdout, done.stderr[-500:])
    assert done.stdout.startswith("SieveCheckError"), done.stdout + done.stderr[-300:]


def test_regex_time_is_bounded_per_run_not_per_search() -> None:
    """Every search of a run shares the run's time: 60 slow fields end the run with an error."""
    raw = b"".join(b"X-A: " + b"x" * 180 + b"\r\n" for _ in range(60)) + b"Subject: s\r\n\r\nbody\r\n"
    with pytest.raises(SieveRuntimeError, match=r"too long|out of time|ran longer"):
        outcome('require "regex"; if header :regex "x-a" "(x+x+)+y" { discard; }', raw)


def test_an_included_scripts_edits_are_kept() -> None:
    """The child's addheader is lost when include returns (Outcome.header is the parent's: None)."""
    sub = check(parse('require "editheader"; addheader "X-Child" "1";'))
    result = outcome('require "include"; include "sub";', context=SieveContext(include=lambda n, g: sub))
    assert result.header is not None
    assert result.header[0] == b"X-Child: 1\r\n", result.header


def test_deleteheader_regex_timeout_is_a_runtime_error() -> None:
    """delete_header calls Matcher.any directly (not _Run.matches), so RegexTimeout escapes run() instead of
    SieveRuntimeError (the stage then logs an "unexpected error" traceback and sends "internal error")."""
    raw = b"X-A: " + b"x" * 2000 + b"\r\nSubject: s\r\n\r\nbody\r\n"
    with pytest.raises(SieveRuntimeError):
        outcome('require ["editheader", "regex"]; deleteheader :regex "x-a" "(x+x+)+y";', raw)


def test_regex_anchor_is_not_fooled_by_the_matched_prefix_cut() -> None:
    """Matcher.one searches value[:MAX_MATCHED]: "$" then matches at the cut. A sender pads the Subject past
    65536 characters and "^x*$" (a whole-value test) holds for "xxx...xy"."""
    raw = b"Subject: " + b"x" * 70000 + b"y\r\n\r\nbody\r\n"
    assert outcome('require "regex"; if header :regex "subject" "^x*$" { discard; }', raw).implicit_keep


def test_the_replaced_octets_are_the_header_the_script_edited() -> None:
    """The octets an edited header replaces end where the parse found the body to start."""
    import io

    from postoffice.message import parse_message
    from postoffice.sieve.stage import _header_of

    raw = b"Subject: lf header\nFrom: a@b.example\n\nfirst body paragraph\r\n\r\nsecond\r\n"
    replaced = _header_of(io.BytesIO(raw), parse_message(io.BytesIO(raw)).body.body_start)
    assert replaced == b"Subject: lf header\nFrom: a@b.example\n\n"
