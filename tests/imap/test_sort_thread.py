"""RFC 5256 SORT/THREAD algorithms (postoffice.imap.sort_thread): the base subject (section 2.1),
THREAD=ORDEREDSUBJECT and THREAD=REFERENCES (section 3) and the THREAD response grammar (section 4).

The algorithms are checked on hand-made mailboxes with the exact `* THREAD` text, against a literal
(object-per-container, step-by-step) rendering of the RFC's REFERENCES steps on random small mailboxes, and by
properties that any answer must have: every message exactly once, dummies only where the RFC leaves them, the
response parses with the RFC grammar, siblings in sent-date order, and no dependence on the input list order.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.imap.sort_thread import (
    ThreadInput,
    ThreadNode,
    base_subject,
    format_threads,
    ordered_subject,
    references,
    references_state,
)

# A parsed or expected tree: (number, children); number None is a dummy.
Shape = tuple[int | None, list["Shape"]]


def msg(
    number: int, sent: float, subject: str = "", mid: str | None = None, refs: Sequence[str] = ()
) -> ThreadInput:
    base, reply = base_subject(subject)
    return ThreadInput(number, sent, base, reply, mid, tuple(refs))


def thread_text(threads: Sequence[ThreadNode]) -> bytes:
    return b"* THREAD" + format_threads(threads)


# --- base subject (section 2.1) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "base", "reply"),
    [
        ("Hello world", "HELLO WORLD", False),
        ("Re: Hello", "HELLO", True),
        ("RE: re: Re: x", "X", True),
        ("re:re:re:x", "X", True),
        ("Fw: x", "X", True),
        ("FWD: x", "X", True),
        ("fwd:x", "X", True),
        ("Re: [list] Re: Fwd: x (fwd)", "X", True),
        ("[fwd: re: x]", "X", True),
        ("[Fwd: Re: Topic]", "TOPIC", True),
        ("[fwd: [fwd: x]]", "X", True),
        ("Re: [fwd: Re: x]", "X", True),
        ("[fwd: x] (fwd)", "X", True),
        ("[fwd:]", "", True),
        ("[fwd:x", "[FWD:X", False),  # no subj-fwd-trl, and not a blob either
        ("[fwd: x] y", "Y", False),  # a leading blob, not a forward wrapper: it does not end the subject
        ("[x]", "[X]", False),  # subj-base may be a blob when nothing else is left
        ("[list]", "[LIST]", False),
        ("Re: [list]", "[LIST]", True),
        ("[a] [b]", "[B]", False),
        ("[a][b][c] topic", "TOPIC", False),  # removing blobs does not make a reply
        ("[list] topic", "TOPIC", False),
        ("[list] Re: topic", "TOPIC", True),  # blobs before the subj-refwd
        ("[a][b] re: x", "X", True),
        ("[a] Re: [b] x", "X", True),
        ("re [blob]: x", "X", True),  # a blob inside the subj-refwd
        ("Re[2]: x", "X", True),
        ("Fwd [3] : x", "X", True),
        ("Re :x", "X", True),
        ("[[x]] y", "[[X]] Y", False),  # "[" cannot be inside a blob
        ("Re:", "", True),
        ("Re: ", "", True),
        ("Re: (fwd)", "", True),
        ("", "", False),
        ("   ", "", False),
        ("x (fwd)", "X", True),
        ("x(fwd)", "X", True),
        ("x (FWD) (fwd)", "X", True),
        ("(fwd)", "", True),
        ("x (fwd) y", "X (FWD) Y", False),  # only a trailer counts
        ("Re:\tfoo\r\n\tbar  baz ", "FOO BAR BAZ", True),  # unfolded, tabs and runs of spaces to one SP
        ("\r\n Re: x\n", "X", True),
        ("re: ärger über Ärger", "äRGER üBER ÄRGER", True),
        ("Straße", "STRAßE", False),  # i;ascii-casemap: only a-z change
        ("Ré: x", "Ré: X", False),  # not "re"
        ("Rex: hello", "REX: HELLO", False),
        ("Fwdx: y", "FWDX: Y", False),
        ("Fw d: y", "FW D: Y", False),
        ("Re Re: x", "RE RE: X", False),
        ("Subject [tag]", "SUBJECT [TAG]", False),
        ("AW: x", "AW: X", False),  # only the RFC's English markers
    ],
)
def test_base_subject_examples(subject: str, base: str, reply: bool) -> None:
    assert base_subject(subject) == (base, reply)


def test_base_subject_upper_cases_only_ascii_letters() -> None:
    assert base_subject("ǆ ß ﬁ ı é") == ("ǆ ß ﬁ ı é", False)
    assert base_subject("abc xyz ABC 09 {}") == ("ABC XYZ ABC 09 {}", False)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("subject", "base", "reply"),
    [
        ("[" * 200_000, "[" * 200_000, False),
        ("]" * 200_000, "]" * 200_000, False),
        ("re:" * 70_000, "", True),
        ("Re: " * 50_000 + "x", "X", True),
        ("(fwd)" * 40_000, "", True),
        ("(fwd) " * 40_000 + "x", "(FWD) " * 40_000 + "X", False),
        ("[a]" * 70_000, "[A]", False),
        ("[a] " * 50_000 + "re: x", "X", True),
        ("[fwd: " * 40_000 + "x" + "]" * 40_000, "X", True),
        ("[fwd:" * 40_000, "[FWD:" * 40_000, False),
        ("[fwd:[" * 35_000, "[FWD:[" * 35_000, False),
        ("[" + "a" * 200_000, "[" + "A" * 200_000, False),
        ("re [" + "a" * 200_000 + ":", "RE [" + "A" * 200_000 + ":", False),
        ("re: [" * 40_000, "[" + "RE: [" * 39_999, True),
        ("\t \r\n" * 50_000 + "x", "X", False),
    ],
)
def test_base_subject_is_linear_on_adversarial_subjects(subject: str, base: str, reply: bool) -> None:
    # A quadratic or backtracking extraction does not finish these 200 kB subjects within the timeout.
    assert base_subject(subject) == (base, reply)


_UPPER = {c: c - 32 for c in range(ord("a"), ord("z") + 1)}
_SUBJECT_CHARS = st.sampled_from(list("rReEfFwWdD:[]() \t\r\nxä"))
_subjects = st.text(_SUBJECT_CHARS, max_size=40) | st.text(max_size=40)


@given(_subjects)
def test_base_subject_is_idempotent(subject: str) -> None:
    base, _ = base_subject(subject)
    assert base_subject(base) == (base, False)


@given(_subjects)
def test_base_subject_is_normalised_text(subject: str) -> None:
    base, _ = base_subject(subject)
    assert base == base.strip(" ")
    assert "  " not in base
    assert not any(c in base for c in "\t\r\n")
    assert not any("a" <= c <= "z" for c in base)


@given(_subjects)
def test_base_subject_keeps_the_subject_when_there_is_no_marker(subject: str) -> None:
    # Without a bracket, a parenthesis or a colon nothing but white space can be removed.
    if not any(c in subject for c in "[](:"):
        words = [word for word in re.split(r"[ \t\r\n]+", subject) if word]
        assert base_subject(subject) == (" ".join(words).translate(_UPPER), False)


# --- the THREAD response grammar (section 4) -------------------------------------------------------------


class GrammarError(ValueError):
    pass


def parse_thread_data(data: bytes) -> list[Shape]:
    """The part after "* THREAD": "" / SP 1*thread-list (RFC 5256 section 4), as trees."""
    if data == b"":
        return []
    if data[:1] != b" ":
        raise GrammarError("no SP after THREAD")
    pos = 1
    threads: list[Shape] = []
    while True:
        thread, pos = _parse_thread_list(data, pos)
        threads.append(thread)
        if pos == len(data):
            return threads


def _parse_thread_list(data: bytes, pos: int) -> tuple[Shape, int]:
    # thread-list = "(" (thread-members / thread-nested) ")"
    pos = _expect(data, pos, b"(")
    if data[pos : pos + 1] == b"(":
        nested, pos = _parse_nested(data, pos)
        return (None, nested), _expect(data, pos, b")")
    # thread-members = nz-number *(SP nz-number) [SP thread-nested]
    numbers: list[int] = []
    tail: list[Shape] = []
    number, pos = _parse_nz_number(data, pos)
    numbers.append(number)
    while data[pos : pos + 1] == b" ":
        pos += 1
        if data[pos : pos + 1] == b"(":
            tail, pos = _parse_nested(data, pos)
            break
        number, pos = _parse_nz_number(data, pos)
        numbers.append(number)
    pos = _expect(data, pos, b")")
    shape: Shape = (numbers[-1], tail)
    for number in reversed(numbers[:-1]):
        shape = (number, [shape])
    return shape, pos


def _parse_nested(data: bytes, pos: int) -> tuple[list[Shape], int]:
    # thread-nested = 2*thread-list
    nested: list[Shape] = []
    while data[pos : pos + 1] == b"(":
        thread, pos = _parse_thread_list(data, pos)
        nested.append(thread)
    if len(nested) < 2:
        raise GrammarError(f"thread-nested with {len(nested)} thread-list at {pos}")
    return nested, pos


def _parse_nz_number(data: bytes, pos: int) -> tuple[int, int]:
    end = pos
    while data[end : end + 1].isdigit():
        end += 1
    if end == pos or data[pos : pos + 1] == b"0":
        raise GrammarError(f"no nz-number at {pos}")
    return int(data[pos:end]), end


def _expect(data: bytes, pos: int, token: bytes) -> int:
    if data[pos : pos + 1] != token:
        raise GrammarError(f"expected {token!r} at {pos} in {data!r}")
    return pos + 1


@pytest.mark.parametrize(
    "data", [b" ((2))", b" (1 (2))", b" ()", b" (0)", b" (1  2)", b" ", b" (1)(2) ", b"(1)", b" (1)x", b" (1"]
)
def test_the_grammar_checker_rejects_what_the_rfc_does_not_allow(data: bytes) -> None:
    with pytest.raises(GrammarError):
        parse_thread_data(data)


def test_the_grammar_checker_reads_the_rfc_examples() -> None:
    assert parse_thread_data(b" (2)(3 6 (4 23)(44 7 96))") == [
        (2, []),
        (3, [(6, [(4, [(23, [])]), (44, [(7, [(96, [])])])])]),
    ]
    assert parse_thread_data(b" ((3)(5))") == [(None, [(3, []), (5, [])])]


def node(number: int | None, *children: ThreadNode) -> ThreadNode:
    return ThreadNode(number, list(children))


def test_format_threads_writes_the_rfc_examples() -> None:
    threads = [node(2), node(3, node(6, node(4, node(23)), node(44, node(7, node(96)))))]
    assert thread_text(threads) == b"* THREAD (2)(3 6 (4 23)(44 7 96))"
    assert thread_text([node(None, node(3), node(5))]) == b"* THREAD ((3)(5))"
    assert format_threads([]) == b""


@pytest.mark.parametrize(
    ("threads", "expected"),
    [
        ([node(None, node(2))], b" (2)"),  # never "((2))"
        ([node(None, node(2, node(3)))], b" (2 3)"),
        ([node(None)], b""),
        ([node(None), node(4)], b" (4)"),
        ([node(1, node(None, node(2), node(3)))], b" (1 (2)(3))"),  # a dummy below the top is spliced
        ([node(1, node(None, node(2)))], b" (1 2)"),
        ([node(1, node(None))], b" (1)"),
        ([node(1, node(None), node(2))], b" (1 2)"),
        ([node(None, node(None, node(2)), node(None, node(3), node(None)))], b" ((2)(3))"),
        ([node(None, node(None, node(None, node(7))))], b" (7)"),
    ],
)
def test_format_threads_writes_any_tree_in_the_grammar(threads: list[ThreadNode], expected: bytes) -> None:
    assert format_threads(threads) == expected
    parse_thread_data(expected)


def expected_shapes(threads: Sequence[ThreadNode]) -> list[Shape]:
    """What `format_threads` must write for a tree with dummies anywhere (small trees: recursive)."""

    def messages(children: Sequence[ThreadNode]) -> list[ThreadNode]:
        found: list[ThreadNode] = []
        for child in children:
            found.extend(messages(child.children) if child.number is None else [child])
        return found

    def shape(message: ThreadNode) -> Shape:
        return (message.number, [shape(child) for child in messages(message.children)])

    shapes: list[Shape] = []
    for thread in threads:
        found = messages([thread])
        if len(found) == 1:
            shapes.append(shape(found[0]))
        elif found:
            shapes.append((None, [shape(child) for child in found]))
    return shapes


@st.composite
def trees(draw: st.DrawFn) -> list[ThreadNode]:
    counter = itertools.count(draw(st.integers(1, 10**9)))
    leaf: st.SearchStrategy[tuple[bool, list[Any]]] = st.booleans().map(lambda dummy: (dummy, []))
    shapes = st.recursive(
        leaf, lambda inner: st.tuples(st.booleans(), st.lists(inner, max_size=4)), max_leaves=25
    )

    def build(spec: tuple[bool, list[Any]]) -> ThreadNode:
        dummy, children = spec
        number = None if dummy else next(counter)
        return ThreadNode(number, [build(child) for child in children])

    return [build(spec) for spec in draw(st.lists(shapes, max_size=5))]


@given(trees())
def test_format_threads_round_trips_through_the_grammar(threads: list[ThreadNode]) -> None:
    assert parse_thread_data(format_threads(threads)) == expected_shapes(threads)


def test_format_threads_writes_a_deep_chain_without_recursion() -> None:
    top = current = node(1)
    for number in range(2, 200_001):
        child = node(number)
        current.children.append(child)
        current = child
    data = format_threads([top])
    assert data == b" (" + b" ".join(str(number).encode() for number in range(1, 200_001)) + b")"
    assert repr(top) == "ThreadNode(1, <1 children>)"


# --- THREAD=ORDEREDSUBJECT -------------------------------------------------------------------------------


def test_ordered_subject_groups_by_base_subject_and_sorts_by_date() -> None:
    messages = [
        msg(1, 10, "Hello"),
        msg(2, 30, "Re: hello"),
        msg(3, 20, "Other"),
        msg(4, 25, "RE: HELLO"),
        msg(5, 40, "Fwd: other"),
        msg(6, 5, "third"),
    ]
    assert thread_text(ordered_subject(messages)) == b"* THREAD (6)(1 (4)(2))(3 5)"


def test_ordered_subject_breaks_date_ties_by_mailbox_order() -> None:
    messages = [msg(5, 1, "x"), msg(3, 1, "x"), msg(9, 1, "y"), msg(4, 1, "Re: x")]
    assert thread_text(ordered_subject(messages)) == b"* THREAD (3 (4)(5))(9)"


def test_ordered_subject_has_no_grandchildren_and_ignores_references() -> None:
    messages = [
        msg(1, 1, "a", "<1>"),
        msg(2, 2, "Re: a", "<2>", ["<1>"]),
        msg(3, 3, "Re: a", "<3>", ["<1>", "<2>"]),
    ]
    assert thread_text(ordered_subject(messages)) == b"* THREAD (1 (2)(3))"


def test_ordered_subject_puts_empty_subjects_in_one_thread() -> None:
    assert thread_text(ordered_subject([msg(1, 1, ""), msg(2, 2, "Re:")])) == b"* THREAD (1 2)"


def test_ordered_subject_of_nothing_is_an_empty_response() -> None:
    assert ordered_subject([]) == []
    assert thread_text(ordered_subject([])) == b"* THREAD"


def test_ordered_subject_of_100000_messages_with_one_subject() -> None:
    threads = ordered_subject([msg(number, number // 3, "Re: same") for number in range(100_000, 0, -1)])
    assert len(threads) == 1
    assert threads[0].number == 1
    assert [child.number for child in threads[0].children] == list(range(2, 100_001))


# --- THREAD=REFERENCES -----------------------------------------------------------------------------------


def test_references_builds_the_rfc_example_shape() -> None:
    messages = [
        msg(2, 1, "Two", "<2>"),
        msg(3, 2, "Three", "<3>"),
        msg(6, 3, "Re: Three", "<6>", ["<3>"]),
        msg(4, 4, "Re: Three", "<4>", ["<3>", "<6>"]),
        msg(23, 5, "Re: Three", "<23>", ["<3>", "<6>", "<4>"]),
        msg(44, 6, "Re: Three", "<44>", ["<3>", "<6>"]),
        msg(7, 7, "Re: Three", "<7>", ["<3>", "<6>", "<44>"]),
        msg(96, 8, "Re: Three", "<96>", ["<3>", "<6>", "<44>", "<7>"]),
    ]
    assert thread_text(references(messages)) == b"* THREAD (2)(3 6 (4 23)(44 7 96))"


def test_references_keeps_a_dummy_for_two_replies_to_a_missing_message() -> None:
    messages = [msg(3, 1, "Re: lost", "<3>", ["<gone>"]), msg(5, 2, "Re: lost", "<5>", ["<gone>"])]
    threads = references(messages)
    assert thread_text(threads) == b"* THREAD ((3)(5))"
    assert threads[0].number is None


def test_references_promotes_the_only_reply_to_a_missing_message() -> None:
    assert thread_text(references([msg(7, 1, "Re: lost", "<7>", ["<gone>"])])) == b"* THREAD (7)"


def test_references_splices_a_missing_message_in_the_middle() -> None:
    messages = [msg(1, 1, "a", "<a>"), msg(2, 2, "Re: a", "<b>", ["<a>", "<missing>"])]
    assert thread_text(references(messages)) == b"* THREAD (1 2)"


def test_references_splices_missing_messages_below_a_dummy_at_the_top() -> None:
    messages = [
        msg(1, 1, "Re: x", "<1>", ["<g1>", "<g2>"]),
        msg(2, 2, "Re: x", "<2>", ["<g1>", "<g3>"]),
        msg(3, 3, "Re: x", "<3>", ["<g1>", "<g3>", "<g4>"]),
    ]
    assert thread_text(references(messages)) == b"* THREAD ((1)(2)(3))"


def test_references_never_makes_a_loop() -> None:
    messages = [msg(1, 1, "Loop", "<a>", ["<b>"]), msg(2, 2, "Re: loop", "<b>", ["<a>"])]
    assert thread_text(references(messages)) == b"* THREAD (2 1)"
    messages = [msg(1, 1, "Loop", "<b>", ["<a>"]), msg(2, 2, "Re: loop", "<a>", ["<b>"])]
    assert thread_text(references(messages)) == b"* THREAD (2 1)"


def test_references_ignores_a_message_referencing_itself() -> None:
    assert thread_text(references([msg(1, 1, "Self", "<a>", ["<a>"])])) == b"* THREAD (1)"
    # 1 names itself, then 2: the link 1 -> 2 is made, the link 2 -> 1 would be a loop.
    messages = [msg(1, 1, "Self", "<a>", ["<a>", "<b>"]), msg(2, 2, "Other", "<b>", ["<a>"])]
    assert thread_text(references(messages)) == b"* THREAD (1 2)"
    # ... and when 2 has no references of its own, step 1.B takes that parent away again.
    messages = [msg(1, 1, "Self", "<a>", ["<a>", "<b>"]), msg(2, 2, "Other", "<b>")]
    assert thread_text(references(messages)) == b"* THREAD (1)(2)"


def test_references_gives_a_duplicate_message_id_to_the_first_message_only() -> None:
    messages = [
        msg(1, 1, "First", "<a>"),
        msg(2, 2, "Second", "<a>"),
        msg(3, 3, "Re: first", "<c>", ["<a>"]),
    ]
    assert thread_text(references(messages)) == b"* THREAD (1 3)(2)"
    # "first" is the lowest number, not the earliest date
    messages = [msg(5, 1, "Early", "<a>"), msg(2, 2, "Late", "<a>"), msg(9, 3, "Reply", "<r>", ["<a>"])]
    assert thread_text(references(messages)) == b"* THREAD (5)(2 9)"


def test_references_message_without_references_has_no_parent() -> None:
    # Message 1's References made 2 a child of the dummy <x>; 2 has no references, so step 1.B leaves it
    # without a parent, and <x> keeps only message 3.
    messages = [
        msg(1, 3, "Re: b", "<c>", ["<x>", "<b>"]),
        msg(2, 1, "b", "<b>"),
        msg(3, 2, "other", "<d>", ["<x>"]),
    ]
    assert thread_text(references(messages)) == b"* THREAD (2 1)(3)"


def test_references_relinks_a_message_to_its_own_last_reference() -> None:
    messages = [
        msg(1, 3, "Re: a", "<r>", ["<wrong>", "<k>"]),
        msg(2, 2, "Re: a", "<k>", ["<right>"]),
        msg(3, 1, "a", "<right>"),
    ]
    assert thread_text(references(messages)) == b"* THREAD (3 2 1)"


def test_references_keeps_an_existing_parent_while_linking_references() -> None:
    # 3 names 1 -> 2; 4 names 5 -> 2, but 2 already has a parent: it stays under 1.
    messages = [
        msg(1, 1, "a", "<1>"),
        msg(2, 2, "Re: a", "<2>"),
        msg(3, 3, "Re: a", "<3>", ["<1>", "<2>"]),
        msg(4, 4, "Re: a", "<4>", ["<5>", "<2>"]),
        msg(5, 5, "b", "<5>"),
    ]
    assert thread_text(references(messages)) == b"* THREAD (1 2 (3)(4))(5)"


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        # a reply and its original without references: the reply goes under the original
        ([msg(1, 1, "Re: hello"), msg(2, 2, "hello")], b"(2 1)"),
        ([msg(1, 1, "hello"), msg(2, 2, "Hello")], b"((1)(2))"),  # two originals: a new dummy
        ([msg(1, 1, "Re: hello"), msg(2, 2, "Fwd: hello")], b"((1)(2))"),  # two replies: a new dummy
        ([msg(1, 1, "x"), msg(2, 2, "Re: x"), msg(3, 3, "x")], b"((1 2)(3))"),
        ([msg(1, 1, ""), msg(2, 2, "Re:")], b"(1)(2)"),  # an empty subject never merges
        ([msg(1, 1, "a"), msg(2, 2, "b"), msg(3, 3, "Re: a")], b"(1 3)(2)"),
        # a dummy at the top takes the others
        (
            [msg(1, 1, "topic"), msg(3, 2, "Re: topic", refs=["<g>"]), msg(4, 3, "Re: topic", refs=["<g>"])],
            b"((1)(3)(4))",
        ),
        # two dummies: their children become siblings
        (
            [
                msg(1, 1, "Re: s", refs=["<g1>"]),
                msg(2, 2, "Re: s", refs=["<g1>"]),
                msg(3, 3, "Re: s", refs=["<g2>"]),
                msg(4, 4, "Re: s", refs=["<g2>"]),
            ],
            b"((1)(2)(3)(4))",
        ),
        # the merged thread keeps its place by its root's date; its children are sorted by date
        ([msg(1, 5, "Re: x"), msg(2, 1, "other"), msg(3, 9, "x"), msg(4, 2, "Re: x")], b"(2)(3 (4)(1))"),
        # subjects are compared after extraction: "[fwd: x]" and "x (fwd)" are replies of "X"
        ([msg(1, 1, "[fwd: x]"), msg(2, 2, "x (fwd)"), msg(3, 3, "X")], b"(3 (1)(2))"),
    ],
)
def test_references_merges_threads_by_subject(messages: list[ThreadInput], expected: bytes) -> None:
    assert format_threads(references(messages)) == b" " + expected


def test_references_of_nothing_is_an_empty_response() -> None:
    assert references([]) == []
    assert thread_text(references([])) == b"* THREAD"


def _chain(numbers: Sequence[int]) -> list[ThreadInput]:
    """A reply chain: numbers[0] is the original, each next one replies to the one before."""
    messages = [msg(numbers[0], 0, "chain", f"<{numbers[0]}>")]
    for sent, (parent, number) in enumerate(itertools.pairwise(numbers), start=1):
        messages.append(ThreadInput(number, sent, "CHAIN", True, f"<{number}>", (f"<{parent}>",)))
    return messages


@pytest.mark.parametrize("reverse", [False, True])
def test_references_threads_a_100000_reply_chain_without_recursion(reverse: bool) -> None:
    numbers = list(range(1, 100_001))
    if reverse:
        numbers.reverse()  # the deepest reply is message 1
    threads = references(_chain(numbers))
    assert len(threads) == 1
    data = format_threads(threads)
    assert data == b" (" + b" ".join(str(number).encode() for number in numbers) + b")"


# --- a literal rendering of the RFC's REFERENCES steps, for the differential test -----------------------


class _Container:
    def __init__(self, message: ThreadInput | None = None) -> None:
        self.message = message
        self.parent: _Container | None = None
        self.children: list[_Container] = []

    def key(self) -> tuple[float, int]:
        first = self if self.message is not None else self.children[0]
        assert first.message is not None
        return (first.message.sent, first.message.number)

    def subject(self) -> str:
        first = self if self.message is not None else self.children[0]
        assert first.message is not None
        return first.message.subject


def _descends(container: _Container | None, ancestor: _Container) -> bool:
    while container is not None:
        if container is ancestor:
            return True
        container = container.parent
    return False


def _link(parent: _Container, child: _Container) -> None:
    child.parent = parent
    parent.children.append(child)


def literal_references(messages: Sequence[ThreadInput]) -> list[ThreadNode]:
    ordered = sorted(messages, key=lambda m: m.number)
    table: dict[str, _Container] = {}
    containers = [_Container(m) for m in ordered]
    for container in containers:
        assert container.message is not None
        if container.message.message_id is not None:
            table.setdefault(container.message.message_id, container)
    every = list(containers)
    for container in containers:  # step 1
        assert container.message is not None
        previous: _Container | None = None
        for ref in container.message.references:
            if ref not in table:
                table[ref] = _Container()
                every.append(table[ref])
            current = table[ref]
            if previous is not None and current.parent is None and not _descends(previous, current):
                _link(previous, current)
            previous = current
        if container.parent is not None and container.parent is not previous:
            container.parent.children.remove(container)
            container.parent = None
        if previous is not None and container.parent is None and not _descends(previous, container):
            _link(previous, container)
    roots = [container for container in every if container.parent is None]  # step 2

    def prune(level: list[_Container], top: bool) -> list[_Container]:  # step 3
        kept: list[_Container] = []
        for container in level:
            container.children = prune(container.children, False)
            if container.message is not None or (top and len(container.children) > 1):
                kept.append(container)
            else:
                kept.extend(container.children)
        return kept

    roots = prune(roots, True)
    for root in roots:  # step 4
        if root.message is None:
            root.children.sort(key=_Container.key)
    roots.sort(key=_Container.key)
    table2: dict[str, _Container] = {}  # step 5
    for root in roots:
        subject = root.subject()
        if not subject:
            continue
        held = table2.get(subject)
        if held is None:  # noqa: SIM114 (one branch per rule of the RFC, as it states them)
            table2[subject] = root
        elif held.message is not None and (
            root.message is None or (held.message.reply and not root.message.reply)
        ):
            table2[subject] = root
    merged: list[_Container] = []
    for root in list(roots):
        subject = root.subject()
        if not subject or table2[subject] is root or any(root is m for m in merged):
            continue
        held = table2[subject]
        if held.message is None and root.message is None:
            held.children.extend(root.children)
        elif held.message is None:  # noqa: SIM114 (one branch per rule of the RFC, as it states them)
            held.children.append(root)
        elif root.message is not None and root.message.reply and not held.message.reply:
            held.children.append(root)
        else:
            dummy = _Container()
            dummy.children = [held, root]
            table2[subject] = dummy
            roots[roots.index(held)] = dummy
            merged.append(held)
        merged.append(root)
    roots = [root for root in roots if all(root is not m for m in merged)]  # a merged dummy goes too

    def sort(level: list[_Container]) -> None:  # step 6
        for container in level:
            sort(container.children)
        level.sort(key=_Container.key)

    sort(roots)

    def to_node(container: _Container) -> ThreadNode:
        number = None if container.message is None else container.message.number
        return ThreadNode(number, [to_node(child) for child in container.children])

    return [to_node(root) for root in roots]


def literal_ordered_subject(messages: Sequence[ThreadInput]) -> list[ThreadNode]:
    ordered = sorted(messages, key=lambda m: (m.subject, m.sent, m.number))
    threads = [[m for m in group] for _, group in itertools.groupby(ordered, key=lambda m: m.subject)]
    threads.sort(key=lambda group: (group[0].sent, group[0].number))
    return [ThreadNode(group[0].number, [ThreadNode(m.number, []) for m in group[1:]]) for group in threads]


# --- properties on random mailboxes ---------------------------------------------------------------------

_ids = st.sampled_from(["<a>", "<b>", "<c>", "<d>", "<e>", "<f>", "<g>"])


@st.composite
def mailboxes(draw: st.DrawFn, max_size: int = 14) -> list[ThreadInput]:
    numbers = draw(st.lists(st.integers(1, 80), unique=True, max_size=max_size))
    return [
        ThreadInput(
            number,
            float(draw(st.integers(0, 6))),
            draw(st.sampled_from(["", "A", "B", "C"])),
            draw(st.booleans()),
            draw(st.none() | _ids),
            tuple(draw(st.lists(_ids, max_size=4))),
        )
        for number in numbers
    ]


def walk(threads: Sequence[ThreadNode]) -> Iterator[tuple[ThreadNode, ThreadNode | None, int]]:
    """(node, parent, depth) for every node, iteratively."""
    pending: list[tuple[ThreadNode, ThreadNode | None, int]] = [(thread, None, 0) for thread in threads]
    while pending:
        current, parent, depth = pending.pop()
        yield current, parent, depth
        pending.extend((child, current, depth + 1) for child in current.children)


def _sort_key(current: ThreadNode, sent: dict[int, float]) -> tuple[float, int]:
    first = current if current.number is not None else current.children[0]
    assert first.number is not None
    return (sent[first.number], first.number)


def check_answer(messages: Sequence[ThreadInput], threads: list[ThreadNode]) -> None:
    """What every answer of either algorithm must satisfy."""
    numbers = [current.number for current, _, _ in walk(threads) if current.number is not None]
    assert sorted(numbers) == sorted(m.number for m in messages)  # each message exactly once
    sent = {m.number: m.sent for m in messages}
    for current, parent, _ in walk(threads):
        if current.number is None:
            # A dummy only at the top, holding two or more messages (fewer would be pruned away, and the
            # grammar's thread-nested needs two).
            assert parent is None
            assert len(current.children) >= 2
            assert all(child.number is not None for child in current.children)
        keys = [_sort_key(child, sent) for child in current.children]
        assert keys == sorted(keys)  # siblings by sent date, ties by mailbox order
    keys = [_sort_key(thread, sent) for thread in threads]
    assert keys == sorted(keys)
    data = format_threads(threads)
    assert parse_thread_data(data) == expected_shapes(threads)


@settings(max_examples=400)
@given(mailboxes())
def test_references_matches_the_literal_rfc_steps(messages: list[ThreadInput]) -> None:
    assert format_threads(references(messages)) == format_threads(literal_references(messages))


@settings(max_examples=300)
@given(mailboxes())
def test_references_answer_is_well_formed(messages: list[ThreadInput]) -> None:
    check_answer(messages, references(messages))


@settings(max_examples=300)
@given(mailboxes())
def test_ordered_subject_answer_is_well_formed(messages: list[ThreadInput]) -> None:
    threads = ordered_subject(messages)
    check_answer(messages, threads)
    subject = {m.number: m.subject for m in messages}
    assert format_threads(threads) == format_threads(literal_ordered_subject(messages))
    thread_subjects = []
    for thread in threads:
        assert thread.number is not None  # no dummies
        thread_subjects.append(subject[thread.number])
        for child in thread.children:
            assert child.number is not None
            assert not child.children  # no grandchildren
            assert subject[child.number] == subject[thread.number]
    assert len(set(thread_subjects)) == len(thread_subjects)  # one thread per base subject


@given(mailboxes(), st.data())
def test_answers_do_not_depend_on_the_input_order(messages: list[ThreadInput], data: st.DataObject) -> None:
    shuffled = data.draw(st.permutations(messages))
    assert format_threads(references(shuffled)) == format_threads(references(messages))
    assert format_threads(ordered_subject(shuffled)) == format_threads(ordered_subject(messages))


@given(mailboxes())
def test_references_without_references_and_distinct_subjects_is_flat(messages: list[ThreadInput]) -> None:
    flat = [ThreadInput(m.number, m.sent, f"S{m.number}", m.reply, m.message_id, ()) for m in messages]
    expected = "".join(f"({m.number})" for m in sorted(flat, key=lambda m: (m.sent, m.number)))
    assert format_threads(references(flat)) == (f" {expected}".encode() if expected else b"")


# --- REFERENCES with messages added later (ReferencesState) -----------------------------------------------


@st.composite
def conversations(draw: st.DrawFn, max_size: int = 24) -> list[ThreadInput]:
    """Mail as it arrives: each message has its own Message-ID (now and then a duplicate or none) and
    replies to an earlier one with its References chain, or to a message that is not there, or starts a
    thread; few subjects and dates, so that ties and subject merges happen."""
    out: list[ThreadInput] = []
    chains: list[tuple[str, ...]] = []
    for number in range(1, draw(st.integers(0, max_size)) + 1):
        kind = draw(st.sampled_from(["new", "reply", "reply", "reply", "missing", "odd"]))
        refs: tuple[str, ...] = ()
        if kind == "reply" and chains:
            refs = draw(st.sampled_from(chains))
        elif kind == "missing":
            refs = (f"<gone{draw(st.integers(0, 3))}>",)
        elif kind == "odd":
            refs = tuple(draw(st.lists(_ids, max_size=3)))
        mid = draw(st.sampled_from([f"<m{number}>"] * 6 + ["<m1>", "<a>"]) | st.none())
        out.append(
            ThreadInput(
                number,
                float(draw(st.integers(0, 8))),
                draw(st.sampled_from(["", "A", "B", "C", "D", "E"])),
                draw(st.booleans()),
                mid,
                refs,
            )
        )
        if mid is not None:
            chains.append((*refs, mid)[-5:])
    return out


def _added_stepwise(messages: list[ThreadInput], cuts: list[int]) -> tuple[int, int]:
    """Thread `messages[:cuts[0]]`, then add the rest in the steps `cuts` give; after every step that `add`
    takes, its answer is what REFERENCES over all the messages so far gives. (steps taken, steps declined)"""
    ends = sorted({min(c, len(messages)) for c in cuts} | {len(messages)})
    state = references_state(messages[: ends[0]])
    assert state.answer() == format_threads(references(messages[: ends[0]]))
    taken = declined = 0
    for start, end in itertools.pairwise(ends):
        if state.add(messages[start:end]):
            taken += 1
            assert state.answer() == format_threads(references(messages[:end])), (start, end)
        else:
            declined += 1
            state = references_state(messages[:end])
    return taken, declined


@settings(max_examples=400, deadline=None)
@given(conversations(), st.lists(st.integers(0, 24), max_size=6))
def test_messages_added_to_kept_references_give_what_the_whole_algorithm_gives(
    messages: list[ThreadInput], cuts: list[int]
) -> None:
    _added_stepwise(messages, cuts)


@settings(max_examples=300, deadline=None)
@given(mailboxes(max_size=16), st.lists(st.integers(0, 16), max_size=4))
def test_adding_to_any_mailbox_is_exact_or_declined(messages: list[ThreadInput], cuts: list[int]) -> None:
    _added_stepwise(sorted(messages, key=lambda m: m.number), cuts)


def test_new_mail_is_added_without_threading_again() -> None:
    """Replies to messages that are there (also past references to missing ones) and new threads with a new
    subject (also replies to mail that is not there): every step taken."""
    first = [
        msg(1, 10, "lunch", "<1>"),
        msg(2, 20, "Re: lunch", "<2>", ["<1>"]),
        msg(3, 5, "budget", "<3>"),
        msg(4, 30, "Re: budget", "<4>", ["<3>"]),
    ]
    later = [
        msg(5, 25, "Re: lunch", "<5>", ["<1>", "<2>"]),  # the second reply to 2 (by date: between)
        msg(6, 15, "Re: lunch", "<6>", ["<1>"]),  # a reply to 1, dated before 2
        msg(7, 1, "trip", "<7>"),  # a new thread, the earliest of all
        msg(8, 40, "Re: trip", "<8>", ["<7>"]),
        msg(9, 12, "Re: my question", "<9>", ["<sent@me>"]),  # a reply to mail one sent: a new thread
        msg(10, 13, "Re: lunch", "<10>", ["<1>", "<sent2@me>"]),  # below 1, past a missing message
    ]
    assert _added_stepwise(first + later, [4, 5, 6, 7, 8, 9]) == (6, 0)
    assert _added_stepwise(first + later, [4]) == (1, 0)


def test_what_changes_earlier_threads_is_declined() -> None:
    first = [msg(1, 10, "lunch", "<1>", ["<0>"]), msg(2, 20, "other", "<2>", ["<0>"])]  # a dummy for <0>
    assert not references_state(first).add([msg(3, 5, "zero", "<0>")])  # the missing message arrives
    assert not references_state(first).add([msg(3, 5, "x", "<3>", ["<0>"])])  # its parent is a dummy
    assert not references_state(first).add([msg(3, 5, "x", "<3>", ["<9>", "<1>"])])  # 1 below a new dummy
    assert not references_state(first).add([msg(3, 5, "x", "<3>", ["<8>", "<9>", "<8>"])])  # a loop
    lone = [msg(1, 10, "lunch", "<1>"), msg(2, 20, "Re: other", "<2>")]
    assert not references_state(lone).add([msg(3, 5, "Re: lunch", "<3>")])  # merged by subject (5)
    assert not references_state(lone).add([msg(3, 5, "x", "<3>", ["<2>", "<1>"])])  # links 1 under 2
    assert not references_state(lone).add([msg(2, 5, "x", "<3>")])  # not after the last number
