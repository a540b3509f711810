"""LIST / LSUB pattern matching (RFC 9051 section 6.3.9): `ListPattern` against a definition-based reference,
its cost on the inputs that used to freeze the server (a regex with ".*" per "*" backtracked: 50 "*" took
32 s, `*a*a*a*a*a*ab` on a 150-character name minutes), the pattern length limit, and the same over a real
IMAP connection (docs/decisions/0020).

The wall-clock bounds are generous by orders of magnitude (the matcher takes milliseconds where the old one
took seconds to minutes): they prove "not pathological", they do not measure speed."""

from __future__ import annotations

import functools
import time
import unicodedata

from hypothesis import example, given, settings
from hypothesis import strategies as st

from postoffice.imap import wire
from postoffice.imap.commands_mailbox import ListPattern, NamePatterns
from postoffice.imap.mutf7 import MUtf7Error, decode_mutf7, encode_mutf7
from postoffice.imap.parser import CommandReader, List
from tests.imap.transcript import ImapHarness, Transcript

SLOW = 1.0  # seconds: far above what a linear matcher needs, far below what the backtracking one took


def reference(pattern: str, name: str) -> bool:
    """RFC 9051 6.3.9 spelled out: "*" matches zero or more characters, "%" the same without "/"; a pattern
    that begins with INBOX in any case, followed by its end, "/" or a wildcard, matches the first level of a
    name that is INBOX case-insensitively (its character may be the lower-case form of the name's); any other
    pattern matches INBOX as the upper-case string (decision 0043)."""
    inboxcase = pattern[:5].upper() == "INBOX" and pattern[5:6] in ("", "/", "*", "%")
    inbox = inboxcase and name[:5] == "INBOX" and name[5:6] in ("", "/")

    @functools.cache
    def match(i: int, j: int) -> bool:  # does pattern[i:] match name[j:]?
        if i == len(pattern):
            return j == len(name)
        char = pattern[i]
        if char == "*":
            return match(i + 1, j) or (j < len(name) and match(i, j + 1))
        if char == "%":
            return match(i + 1, j) or (j < len(name) and name[j] != "/" and match(i, j + 1))
        if j == len(name):
            return False
        same = char == name[j] or (inbox and j < 5 and char == name[j].lower())
        return same and match(i + 1, j + 1)

    return match(0, 0)


def reference_ancestor(patterns: list[str], name: str) -> str | None:
    parts = name.split("/")
    for i in range(len(parts) - 1, 0, -1):
        ancestor = "/".join(parts[:i])
        if any(reference(p, ancestor) for p in patterns):
            return ancestor
    return None


_PATTERN = st.builds(
    lambda head, rest: head + rest,
    st.sampled_from(["", "", "inbox", "INBOX", "iNbOx", "inbo", "inboxe"]),
    st.text(alphabet="ab/*%iIxX", max_size=10),
)
_NAME = st.builds(
    lambda head, rest: head + rest,
    st.sampled_from(["", "INBOX", "INBOX/", "inbox/", "INBOXa"]),
    st.text(alphabet="ab/I", max_size=10),
)


@settings(max_examples=1000)
@given(patterns=st.lists(_PATTERN, min_size=1, max_size=3), name=_NAME)
@example(patterns=["%"], name="a/b")
@example(patterns=["*"], name="/")
@example(patterns=["**", "b"], name="a//")
@example(patterns=["%*"], name="a/b/c")
@example(patterns=["*"], name="a/b")
@example(patterns=["a%*%b"], name="a/b")
@example(patterns=["inbox"], name="INBOX")
@example(patterns=["Inbox/%"], name="INBOX/a")
@example(patterns=["inbox*"], name="INBOXa")  # not INBOX: exact
@example(patterns=["*x"], name="INBOX")  # INBOX is the upper-case string here: no
@example(patterns=["*X"], name="INBOX")
@example(patterns=["%x", "i*"], name="INBOX/x")
@example(patterns=["inbox%"], name="INBOX")
@example(patterns=["inboxes"], name="INBOXes")
@example(patterns=["a", "b"], name="b")
@example(patterns=["a*", ""], name="")
def test_list_pattern_agrees_with_the_reference(patterns: list[str], name: str) -> None:
    pattern = ListPattern(patterns)
    assert pattern.matches(name) == any(reference(p, name) for p in patterns)
    assert pattern.deepest_ancestor(name) == reference_ancestor(patterns, name)


def test_percent_stops_at_the_separator_and_inbox_is_case_insensitive() -> None:
    assert ListPattern(["%"]).matches("Work")
    assert not ListPattern(["%"]).matches("Work/Projects")
    assert ListPattern(["*"]).matches("Work/Projects")
    assert ListPattern(["Work/%"]).matches("Work/Projects")
    assert ListPattern(["iNbOx/%"]).matches("INBOX/Sent")
    assert not ListPattern(["inbox"]).matches("INBOXES")


def test_inbox_is_case_insensitive_only_where_the_pattern_begins_with_it() -> None:
    """The tester's `LIST "" "*x"` listed INBOX: its "x" matched the name's "X". RFC 9051 6.3.9 lists INBOX
    when the upper-case string matches the pattern; INBOX in any case names INBOX (5.1) where the pattern
    begins with it (as Dovecot does for such patterns)."""
    for pattern in ("inbox", "Inbox", "inbox*", "inbox%", "INBOX", "*X", "%", "I*", "*B*"):
        assert ListPattern([pattern]).matches("INBOX"), pattern
    for pattern in ("*x", "%x", "i*", "*b*", "inboxes", "inbo*", "%nbox", "in%"):
        assert not ListPattern([pattern]).matches("INBOX"), pattern
    assert ListPattern(["inbox/*"]).matches("INBOX/a/b")
    assert not ListPattern(["*x/a"]).matches("INBOX/a")
    assert ListPattern(["*x", "inbox"]).matches("INBOX")  # either pattern may name it
    assert not ListPattern(["inbox*"]).matches("INBOXa")  # not INBOX: compared exactly
    assert ListPattern(["%"]).deepest_ancestor("a/b/c") == "a"
    assert ListPattern(["a/%"]).deepest_ancestor("a/b/c") == "a/b"
    assert ListPattern(["x/%"]).deepest_ancestor("a/b/c") is None


def _timed(pattern: list[str], names: list[str]) -> tuple[float, list[bool]]:
    started = time.process_time()
    compiled = ListPattern(pattern)
    results = [compiled.matches(name) for name in names]
    return time.process_time() - started, results


def test_the_inputs_that_froze_the_server_take_no_time() -> None:
    """40 "*" took 7 s, 50 took 32 s; `*a*a*a*a*a*ab` against a 150-character name over two minutes."""
    names = ["INBOX", "Sent", "Drafts", "Junk", "Trash", "Archive", "a" * 150, "a" * 149 + "b"]
    for pattern, expected in (
        ("*" * 40 + "x", [False] * 8),  # INBOX is matched as the upper-case string
        ("*" * 50 + "X", [True] + [False] * 7),
        ("*a*a*a*a*a*ab", [False] * 7 + [True]),
        ("%a%a%a%a%a%ab", [False] * 7 + [True]),
        ("*%" * 200 + "b", [False] * 7 + [True]),
    ):
        elapsed, results = _timed([pattern], names)
        assert results == expected, pattern
        assert elapsed < SLOW, (pattern, elapsed)


def test_longest_patterns_against_a_full_account_stay_linear() -> None:
    """The worst an account can hold within the default limits (1000 names of 1024 characters) against the
    longest patterns a command may send (2048 characters): one pass per name, no backtracking."""
    names = ["a" * 1023 + str(i % 10) for i in range(1000)]
    for pattern in ("*a" * 1023 + "*b", "%a" * 1023 + "%b"):
        elapsed, results = _timed([pattern], names)
        assert results == [False] * 1000
        assert elapsed < 20 * SLOW, elapsed  # about 0.3 s; the regex would not finish in a lifetime


@settings(max_examples=200)
@given(
    pattern=st.text(alphabet="a*%/", min_size=1, max_size=60),
    name=st.text(alphabet="a/b", max_size=300),
)
@example(pattern="*a*a*a*a*a*ab", name="a" * 300)
@example(pattern="*" * 50 + "x", name="a" * 300)
def test_every_match_call_is_fast(pattern: str, name: str) -> None:
    started = time.process_time()
    ListPattern([pattern]).matches(name)
    ListPattern([pattern]).deepest_ancestor(name)
    assert time.process_time() - started < SLOW


# -- through a session (tests/imap/transcript.py) ------------------------------------------------------


def _timed_command(raw: Transcript, tag: str, text: str) -> tuple[float, list[str]]:
    started = time.process_time()
    reply = raw.command(tag, text)
    return time.process_time() - started, reply


def test_list_with_fifty_stars_answers_at_once(imap: ImapHarness) -> None:
    raw = imap.connect()
    raw.login()
    long_name = "a" * 150
    assert raw.command("c1", f"CREATE {long_name}")[-1].startswith("c1 OK")
    assert raw.command("c2", f"SUBSCRIBE {long_name}")[-1].startswith("c2 OK")
    everything = ["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash", long_name]
    for tag, command, listed in (
        ("l1", 'LIST "" "' + "*" * 50 + 'X"', ["INBOX"]),
        ("l1b", 'LIST "" "' + "*" * 50 + 'x"', []),  # INBOX is matched as the upper-case string
        ("l2", 'LIST "" "' + "*" * 50 + '"', everything),
        ("l3", 'LIST "" "*a*a*a*a*a*ab"', []),
        ("l4", 'LIST "" ("*a*a*a*a*a*ab" "%a%a%a%a%a%ab" "' + "*" * 50 + 'a")', [long_name]),
        ("l5", 'LSUB "" "*a*a*a*a*a*ab"', []),
        ("l6", 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "*a*a*a*a*a*ab"', []),
    ):
        elapsed, reply = _timed_command(raw, tag, command)
        assert reply[-1].startswith(f"{tag} OK"), reply
        assert elapsed < 5 * SLOW, (command, elapsed)
        assert [line.rsplit(" ", 1)[-1].strip('"') for line in reply[:-1]] == listed, (command, reply)
    raw.close()


def test_list_patterns_over_the_limit_are_no_limit_and_the_session_goes_on(imap: ImapHarness) -> None:
    """The patterns of one command may have twice `max_mailbox_name_length` (1024) characters together."""
    raw = imap.connect()
    raw.login()
    assert raw.command("l1", 'LIST "" "' + "*" * 2048 + '"')[-1].startswith("l1 OK")
    reply = raw.command("l2", 'LIST "" "' + "*" * 2049 + '"')
    assert reply == ["l2 NO [LIMIT] The patterns of one command are limited to 2048 characters"]
    reply = raw.command("l3", 'LIST "' + "a" * 1000 + '" ("' + "%" * 1000 + '" "x")')
    assert reply[-1].startswith("l3 NO [LIMIT]")
    assert raw.command("l4", 'LSUB "" "' + "%" * 2049 + '"')[-1].startswith("l4 NO [LIMIT]")
    assert raw.command("n1", "NOOP")[-1] == "n1 OK NOOP completed"
    raw.close()


# -- patterns in modified UTF-7 (decisions 0020, 0043) ------------------------------------------------------


def _list_patterns(reference: str, pattern: str, *, utf8: bool = False) -> NamePatterns:
    """The patterns of `LIST reference pattern` as the parser gives them to the LIST command."""
    reader = CommandReader()
    reader.utf8 = utf8
    reader.feed(
        b"a LIST " + wire.quoted(reference, utf8=True) + b" " + wire.quoted(pattern, utf8=True) + b"\r\n"
    )
    command = reader.next()
    assert isinstance(command, List), command
    return NamePatterns(command.reference, command.patterns, utf8=utf8, max_chars=10_000)


def test_a_pattern_cut_inside_an_encoded_run_matches_the_names_it_was_cut_from() -> None:
    """The tester's case: `*&Jjo-*` listed `&Jjo-x` (U+263A then "x") and `*&Jjo*` did not. A pattern that is
    not modified UTF-7 is also matched as written against the names' modified UTF-7 form."""
    smiley = "\u263ax"  # "&Jjo-x"
    assert _list_patterns("", "*&Jjo-*").matches(smiley)
    assert _list_patterns("", "*&Jjo*").matches(smiley)
    assert _list_patterns("", "&Jjo").matches(smiley) is False  # a whole name: "&Jjo" is not "&Jjo-x"
    assert _list_patterns("", "&Jj%").matches(smiley)
    assert _list_patterns("&Jj", "*").matches("\u263a/a")  # the reference too
    assert _list_patterns("", "&Jjo%/%").deepest_ancestor("\u263ax/a/b") == "\u263ax/a"
    assert not _list_patterns("", "*Jjo*").matches(smiley)  # valid: the letters "Jjo", not a fragment
    assert not _list_patterns("", "*k*").matches("\u00e9")  # "&AOk-": letters of a run are not the name's
    assert not _list_patterns("", "*&Jjo*", utf8=True).matches(smiley)  # UTF-8 names: "&" is "&"
    assert _list_patterns("", "*&*").matches("a&b")
    assert _list_patterns("", "*&*").matches(smiley)


_UNICODE_NAME = st.text(alphabet="ab/&\u00e9\u263a\U0001f600", min_size=1, max_size=8)


@settings(max_examples=300)
@given(name=_UNICODE_NAME, data=st.data())
def test_every_fragment_of_a_names_encoding_that_is_not_modified_utf7_finds_it(
    name: str, data: st.DataObject
) -> None:
    encoded = encode_mutf7(name)
    start = data.draw(st.integers(0, len(encoded) - 1))
    fragment = encoded[start : data.draw(st.integers(start + 1, len(encoded)))]
    try:
        decode_mutf7(fragment)
    except MUtf7Error:
        assert _list_patterns("", f"*{fragment}*").matches(name), (fragment, encoded)


@settings(max_examples=500)
@given(
    raw=st.text(alphabet="&-Jjo,+*%/a", max_size=10),
    base=st.sampled_from(["", "&", "&Jjo-/", "a/"]),
    name=_UNICODE_NAME,
)
def test_name_patterns_agree_with_their_definition(raw: str, base: str, name: str) -> None:
    """Decoded (strictly, else leniently) and matched against the name; when the reference or the pattern is
    not modified UTF-7, also matched as written against the name's modified UTF-7 form."""
    patterns = _list_patterns(base, raw)

    def decoded(text: str) -> tuple[str, bool]:
        try:
            return decode_mutf7(text), True
        except MUtf7Error:
            return decode_mutf7(text, strict=False), False

    (ref, ref_valid), (pat, pat_valid) = decoded(base), decoded(raw)
    full = unicodedata.normalize("NFC", ref + pat)
    expected = reference(full, name) or (
        not (ref_valid and pat_valid) and reference(base + raw, encode_mutf7(name))
    )
    assert patterns.matches(name) == expected


def test_list_and_lsub_with_a_fragment_of_an_encoded_name(imap: ImapHarness) -> None:
    raw = imap.connect()
    raw.login()
    assert raw.command("c1", "CREATE &Jjo-x/&AOk-t&AOk-")[-1].startswith("c1 OK")
    assert raw.command("s1", "SUBSCRIBE &Jjo-x/&AOk-t&AOk-")[-1].startswith("s1 OK")
    parent = '* LIST (\\HasChildren) "/" "&Jjo-x"'  # CREATE made it
    child = '* LIST (\\HasNoChildren) "/" "&Jjo-x/&AOk-t&AOk-"'
    assert raw.command("l1", 'LIST "" "*&Jjo*"') == [parent, child, "l1 OK LIST completed"]
    assert raw.command("l2", 'LIST "" "&Jjo-*"') == [parent, child, "l2 OK LIST completed"]
    assert raw.command("l3", 'LIST "" "%/*t&AOk*"') == [child, "l3 OK LIST completed"]
    assert raw.command("l4", 'LIST "" "*Jjo*"') == ["l4 OK LIST completed"]  # valid: the letters only
    assert raw.command("l5", 'LSUB "" "&Jjo%"') == [
        '* LSUB (\\Noselect) "/" "&Jjo-x"',
        "l5 OK LSUB completed",
    ]
    raw.close()
