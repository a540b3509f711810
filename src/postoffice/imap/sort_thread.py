"""The string and tree algorithms of IMAP SORT and THREAD (RFC 5256). Pure: no I/O, no store, no session.

- `base_subject`: the base subject of RFC 5256 section 2.1 (SORT SUBJECT, both THREAD algorithms) and whether
  the extraction removed a reply or forward marker (section 3, REFERENCES step 5).
- `ordered_subject`: THREAD=ORDEREDSUBJECT (section 3).
- `references`: THREAD=REFERENCES (section 3); `references_state` keeps what it built, so that new mail can
  be added without running it again (`ReferencesState.add`, for the cases where that gives the same tree).
- `format_threads`: the thread-list part of the THREAD response (section 4, `thread-data`); `format_pieces`
  the same per top-level thread.

The caller supplies what comes from the messages (`ThreadInput`): the number to answer with (a sequence number
or a UID), the sent date of section 2.2 (the Date header, else the internal date), the base subject, and the
Message-ID and references tokens.

Implementation notes
- Nothing recurses (a reply chain can be as long as the mailbox: 100,000 deep must work), and the cost is
  linear or n log n in the number of messages and references: `base_subject` keeps two indexes into
  one string instead of slicing it step by step, and finds a subj-blob's end with a single-character-class
  search that stops at the first bracket, so no input makes it quadratic or backtrack.
- Order is defined by `ThreadInput.number`, never by the order of the input list: both algorithms first sort
  the messages by number (the mailbox order, RFC 5256 section 2.2's tie-breaker and REFERENCES' "first
  (lowest sequence number)" message). Numbers must be distinct.
- "Sent date, ties by mailbox order" is one stable sort by date of the number-ordered messages. Everything
  that must come out in that order is built by walking the messages in it: ORDEREDSUBJECT's threads are a dict
  by subject filled in date order, and REFERENCES' last step (sort every set of siblings by date) appends each
  message to its parent's children in date order, so no list of children is sorted.
- REFERENCES keeps containers as integers (messages 0..n-1 in mailbox order, then the dummies created for
  unknown Message IDs) in lists, and builds `ThreadNode` objects only for the answer.
- The cyclic garbage collector is paused while a tree is built (then re-enabled if it was enabled): the
  200,000 objects of a 100,000-message answer otherwise set off repeated collections over the whole heap,
  which cost about as much as the algorithm. That is the only global state touched.
- What the RFC leaves open, and the choice made here:
  - Step 1.B, a message whose current parent is not its last reference: the existing link is broken first
    ("break the current parent/child link before creating the new correct one"), then the new link is made
    unless it would make a loop; so a message whose new link is refused ends up without a parent, as does a
    message without references ("if this message has no references, it will now have no parent").
  - Step 3, a dummy at the root: it is replaced by its children when, after the dummies below it have been
    spliced away, exactly one message is left under it (pruning bottom-up). So no dummy is ever left with
    fewer than two children, which the grammar needs (`thread-nested = 2*thread-list`).
  - Step 5.C can only meet a dummy as the current message when the subject table also holds a dummy (step
    5.B prefers the first dummy), so the four rules cover every case.
  - After step 5, dummies exist only among the top-level threads, each with two or more children that are all
    messages. `format_threads` still writes any tree validly: a dummy below the top is spliced into its
    parent's children, a top-level dummy with a single child is written as that child, one without children
    is left out.
- Only the English markers of the RFC are recognised ("Re:", "Fw:", "Fwd:", "(fwd)", "[fwd: ...]"), as the
  RFC requires for consistent results between servers and disconnected clients. Message IDs are compared
  exactly (case-sensitive, section 3); normalising their quoting is the caller's business.
"""

from __future__ import annotations

import bisect
import gc
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from operator import attrgetter
from typing import NamedTuple

__all__ = [
    "ReferencesState",
    "ThreadInput",
    "ThreadNode",
    "base_subject",
    "format_pieces",
    "format_threads",
    "ordered_subject",
    "references",
    "references_state",
]

_WSP_RUN = re.compile(r"[ \t\r\n]+")
_WSP_OTHER = re.compile(r"[\t\r\n]|  ")  # is there anything for step (1) to do?
_BRACKET = re.compile(r"[\[\]]")
_ASCII_UPPER = {c: c - 32 for c in range(ord("a"), ord("z") + 1)}  # i;ascii-casemap: a-z only


def base_subject(subject: str) -> tuple[str, bool]:
    """The base subject of RFC 5256 section 2.1, ASCII-upper-cased (i;ascii-casemap), and whether the
    extraction removed a subj-refwd, a "(fwd)" subj-trailer or a subj-fwd-hdr/subj-fwd-trl pair (the message
    is then "a reply or forward", section 3 REFERENCES step 5).

    `subject` is already decoded (RFC 2047 encoded-words turned into text); unfolding is done here.
    """
    # Upper-case first: the markers are matched case-insensitively, and mapping only a-z keeps every index.
    text = subject.upper() if subject.isascii() else subject.translate(_ASCII_UPPER)
    # (1) tabs and continuations to SP, runs of SP to one SP.
    if _WSP_OTHER.search(text) is not None:
        text = _WSP_RUN.sub(" ", text)
    if text and text[0] not in " [RF" and text[-1] not in " )":
        return text, False  # no step below can apply: nothing to remove at either end
    start = 0
    end = len(text)
    reply = False
    while True:
        # (2) trailing subj-trailer: "(fwd)" / WSP, until none is left.
        while end > start:
            if text[end - 1] == " ":
                end -= 1
            elif text.endswith("(FWD)", start, end):
                end -= 5
                reply = True
            else:
                break
        # (3)-(5): subj-leader = (*subj-blob subj-refwd) / WSP; then one leading subj-blob if a non-empty
        # subj-base remains; repeated until neither applies.
        while start < end:
            if text[start] == " ":
                start += 1
                continue
            # The leading blobs are determined (a blob ends at the first "]" and cannot contain "["), so the
            # leader either is these blobs plus a subj-refwd, or there is no leader at all.
            pos = start
            last_blob = -1
            while pos < end and text[pos] == "[":
                after = _blob_end(text, pos, end)
                if after < 0:
                    break
                last_blob = pos
                pos = after
            refwd_end = _refwd_end(text, pos, end)
            if refwd_end >= 0:
                start = refwd_end
                reply = True
                continue
            # No leader: step (4) removes the leading blobs one by one while something is left after them.
            # What follows them is not a blob, not WSP and not a subj-refwd, so nothing more comes off after.
            if last_blob >= 0:
                start = pos if pos < end else last_blob
            break
        # (6) "[fwd:" ... "]" around the whole rest: remove both and start again from (2).
        if end - start >= 6 and text.startswith("[FWD:", start, end) and text[end - 1] == "]":
            start += 5
            end -= 1
            reply = True
            continue
        return text[start:end], reply


def _blob_end(text: str, pos: int, end: int) -> int:
    """The index after the subj-blob ("[" *BLOBCHAR "]" *WSP) at `text[pos]` == "[", or -1 when there is
    none. BLOBCHAR is anything but "[" and "]"."""
    found = _BRACKET.search(text, pos + 1, end)
    if found is None or text[found.start()] == "[":
        return -1
    after = found.start() + 1
    if after < end and text[after] == " ":
        after += 1
    return after


def _refwd_end(text: str, pos: int, end: int) -> int:
    """The index after the subj-refwd (("re" / ("fw" ["d"])) *WSP [subj-blob] ":") at `pos`, or -1."""
    if text.startswith("RE", pos, end):
        pos += 2
    elif text.startswith("FWD", pos, end):
        pos += 3
    elif text.startswith("FW", pos, end):
        pos += 2
    else:
        return -1
    if pos < end and text[pos] == " ":
        pos += 1
    if pos < end and text[pos] == "[":
        pos = _blob_end(text, pos, end)
        if pos < 0:
            return -1
    if pos < end and text[pos] == ":":
        return pos + 1
    return -1


class ThreadInput(NamedTuple):
    """What the threading algorithms need of one message (a named tuple: 100,000 of them are made per
    THREAD, and a tuple is made several times faster than a frozen dataclass)."""

    number: int  # what the answer names (a sequence number or a UID); ascending numbers: the mailbox order
    sent: float  # the sent date (RFC 5256 2.2) as UTC epoch seconds: the Date header, else the internal date
    subject: str  # base_subject(...)[0]
    reply: bool  # base_subject(...)[1]
    message_id: str | None  # the Message-ID's "<id@host>" token, or None
    references: tuple[str, ...]  # the References ids in order, or In-Reply-To's first id without References


@dataclass(slots=True, eq=False, repr=False)
class ThreadNode:
    """One node of a thread tree: a message (`number`) or a dummy (`number` None) and its children.

    Identity equality and a repr without the children: generated ones would recurse, and a tree can be
    100,000 deep.
    """

    number: int | None
    children: list[ThreadNode]

    def __repr__(self) -> str:
        return f"ThreadNode({self.number!r}, <{len(self.children)} children>)"


_number_of = attrgetter("number")
_message_id_of = attrgetter("message_id")
_references_of = attrgetter("references")


def _in_mailbox_order(messages: Sequence[ThreadInput]) -> Sequence[ThreadInput]:
    """`messages` sorted by number (usually they already are: then without sorting)."""
    numbers = list(map(_number_of, messages))
    if numbers == sorted(numbers):
        return messages
    return [messages[index] for index in sorted(range(len(numbers)), key=numbers.__getitem__)]


def _date_order(msgs: Sequence[ThreadInput]) -> list[int]:
    """The indexes of `msgs` (in mailbox order) by sent date, ties in mailbox order (RFC 5256 section 2.2)."""
    sent = [m.sent for m in msgs]
    return sorted(range(len(sent)), key=sent.__getitem__)  # a stable sort keeps ties in index order


def ordered_subject(messages: Sequence[ThreadInput]) -> list[ThreadNode]:
    """THREAD=ORDEREDSUBJECT (RFC 5256 section 3): messages with the same base subject form one thread, in
    order of sent date; its first message is the parent of all the others (no grandchildren). Threads are in
    order of their first message's sent date."""
    with collector_paused():
        msgs = _in_mailbox_order(messages)
        # Taken in order of sent date, each subject's first message comes first, and the threads come in the
        # order of their first messages: the order in which the dict receives them.
        threads: dict[str, ThreadNode] = {}
        for index in _date_order(msgs):
            msg = msgs[index]
            node = ThreadNode(msg.number, [])
            head = threads.get(msg.subject)
            if head is None:
                threads[msg.subject] = node
            else:
                head.children.append(node)
        return list(threads.values())


def references(messages: Sequence[ThreadInput]) -> list[ThreadNode]:
    """THREAD=REFERENCES (RFC 5256 section 3), steps 1 to 6."""
    with collector_paused():
        return _references(_in_mailbox_order(messages))


def references_state(messages: Sequence[ThreadInput]) -> ReferencesState:
    """THREAD=REFERENCES of `messages`, kept so that later messages can be added (`ReferencesState.add`)."""
    with collector_paused():
        msgs = _in_mailbox_order(messages)
        keep: list[ReferencesState] = []
        _references(msgs, keep)
        return keep[0]


def _references(msgs: Sequence[ThreadInput], keep: list[ReferencesState] | None = None) -> list[ThreadNode]:
    n = len(msgs)
    # The id table. Containers 0..n-1 are the messages in mailbox order; dummies are appended. A message
    # without a Message-ID, or with one an earlier (lower-numbered) message already has, gets a unique id:
    # it is simply not in the table.
    ids: dict[str | None, int] = dict(
        zip(reversed(list(map(_message_id_of, msgs))), range(n - 1, -1, -1), strict=True)
    )
    ids.pop(None, None)  # later (lower) indexes overwrote higher ones: the first message keeps its id
    parent = [-1] * n
    child_count = [0] * n  # a container without children cannot be the ancestor of anything

    # (1) for each message, in mailbox order
    lookup = ids.get
    for index, refs in enumerate(map(_references_of, msgs)):
        # (1.A) link successive references as parent/child; keep an existing parent; never make a loop.
        previous = -1
        for ref in refs:
            container = lookup(ref)
            if container is None:  # unknown id: a new dummy, which has no parent and no children yet
                container = ids[ref] = len(parent)
                parent.append(previous)
                child_count.append(0)
                if previous >= 0:
                    child_count[previous] += 1
            elif (
                previous >= 0
                and parent[container] < 0
                and previous != container
                and (child_count[container] == 0 or not _is_ancestor(parent, container, previous))
            ):
                parent[container] = previous
                child_count[previous] += 1
            previous = container
        # (1.B) the last reference (or none) is the parent: break the current link, then link unless that
        # makes a loop.
        current = parent[index]
        if current != previous:
            if current >= 0:
                parent[index] = -1
                child_count[current] -= 1
            if (
                previous >= 0
                and previous != index
                and (child_count[index] == 0 or not _is_ancestor(parent, index, previous))
            ):
                parent[index] = previous
                child_count[previous] += 1

    # (2) the root set: containers without parent; (3) prune dummies. A dummy below the top is spliced into
    # its parent's children, repeatedly, so a message's place is its nearest ancestor that is a message or,
    # when there is none, the dummy at the top of its tree. `place[i]`: -1 for the root, else a container.
    place = parent[:n]
    held: dict[int, list[int]] = {}  # top-level dummy -> its messages
    if len(parent) > n:
        anchor = [-2] * (len(parent) - n)  # for each dummy: its nearest message ancestor or top dummy
        for index, up in enumerate(place):
            if up >= n:
                up = place[index] = _dummy_anchor(parent, anchor, n, up)
                if up >= n:
                    held.setdefault(up, []).append(index)
    # A top-level dummy holding one message is replaced by it; the others stay (each holds two or more) and
    # sort as their first child (step 4).
    sent = [msg.sent for msg in msgs]
    first: dict[int, int] = {}
    for dummy, members in held.items():
        if len(members) == 1:
            place[members[0]] = -1
        else:
            first[dummy] = min(members, key=sent.__getitem__)  # ties: the lowest index, as members ascend

    # (4) the top-level threads in order of sent date; a dummy comes with its first child, whose subject is
    # the thread's. (5) merge top-level threads with the same base subject: (5.B) one thread per subject in
    # the subject table: the first dummy, else the first that is not a reply, else the first.
    roots: list[int] = []
    subjects: list[str] = []
    table: dict[str, int] = {}
    order = sorted(range(n), key=sent.__getitem__)  # stable: ties in mailbox order (section 2.2)
    for index in order:
        root = place[index]
        if root < 0:
            root = index
        elif root < n or first[root] != index:
            continue
        roots.append(root)
        subject = msgs[index].subject
        subjects.append(subject)
        if not subject:
            continue
        holder = table.get(subject)
        if holder is None or (holder < n and (root >= n or (msgs[holder].reply and not msgs[index].reply))):
            table[subject] = root
    # (5.C) merge the others into it.
    next_dummy = len(parent)
    for root, subject in zip(roots, subjects, strict=True):
        if not subject:
            continue
        holder = table[subject]
        if holder == root:
            continue
        if holder >= n:
            if root >= n:  # both dummies: the children of both become siblings
                for member in held[root]:
                    place[member] = holder
            else:  # the holder is a dummy: the message becomes one of its children
                place[root] = holder
        # The holder is a message, so the current one is too (5.B gives the table to the first dummy).
        elif msgs[root].reply and not msgs[holder].reply:
            place[root] = holder
        else:  # a new dummy holds both
            place[root] = place[holder] = table[subject] = next_dummy
            next_dummy += 1

    # (6) every set of siblings in order of sent date: append in that order. A top-level dummy takes its
    # place among the threads with its first child.
    nodes = [ThreadNode(msg.number, []) for msg in msgs]
    dummies: dict[int, ThreadNode] = {}
    threads: list[ThreadNode] = []
    firsts: list[int] = []  # the message whose place in `order` put each thread there
    for index in order:
        up = place[index]
        if up < 0:
            threads.append(nodes[index])
            firsts.append(index)
        elif up < n:
            nodes[up].children.append(nodes[index])
        else:
            group = dummies.get(up)
            if group is None:
                group = dummies[up] = ThreadNode(None, [])
                threads.append(group)
                firsts.append(index)
            group.children.append(nodes[index])
    if keep is not None:
        keep.append(ReferencesState(msgs, ids, parent, child_count, nodes, threads, firsts, set(table)))
    return threads


class ReferencesState:
    """THREAD=REFERENCES of some messages, with what the algorithm built on the way, so that messages added
    to the mailbox after them (higher numbers: new mail) are placed without running it again (`add`), and the
    answer's text per top-level thread, so that only the threads that changed are written again.

    `add` handles the common cases and declines the others (then the caller runs the algorithm over every
    message): a new message whose Message-ID no earlier message referred to, whose known references are
    already linked as they say and come before any unknown one (step 1.A links nothing that exists; the
    unknown ones become new dummies below), and whose last known reference is a message (it becomes that
    message's child, among its siblings by date: step 6); or one whose references are all unknown or none (a
    reply to mail that is not in the mailbox, as in an INBOX to the mail one sent: a new dummy holding one
    message is that message) whose base subject no top-level thread has (a new thread, in date order: steps
    4, 5). In every such case the algorithm over all messages gives the same tree: what it builds for the
    earlier messages does not depend on a later message unless one of them referred to it (a dummy) or
    shares its subject at the top.
    """

    def __init__(
        self,
        msgs: Sequence[ThreadInput],
        ids: dict[str | None, int],
        parent: list[int],
        child_count: list[int],
        nodes: list[ThreadNode],
        threads: list[ThreadNode],
        firsts: list[int],
        subjects: set[str],
    ) -> None:
        self._ids = ids
        self._parent = parent
        self._child_count = child_count
        #: container -> node, of the messages only: a container not in it is a dummy
        self._nodes: dict[int, ThreadNode] = dict(enumerate(nodes))
        self._sent = {msg.number: msg.sent for msg in msgs}  # number -> sent date
        self.last_number = msgs[-1].number if msgs else 0
        self._subjects = subjects  # the base subjects of the top-level threads (step 5's table)
        self._top = threads
        self._top_keys = [(msgs[i].sent, msgs[i].number) for i in firsts]  # ascending: step 4's order
        self._top_key = dict(zip(threads, self._top_keys, strict=True))
        self._top_of: dict[int, ThreadNode] = {}  # number -> the top-level thread holding it
        for thread in threads:
            pending = [thread]
            while pending:
                node = pending.pop()
                if node.number is not None:
                    self._top_of[node.number] = thread
                pending.extend(node.children)
        self._pieces = format_pieces(threads)

    def answer(self) -> bytes:
        """`format_threads` of the threads."""
        text = "".join(self._pieces)
        return (" " + text).encode("ascii") if text else b""

    def add(self, messages: Sequence[ThreadInput]) -> bool:
        """Place `messages` (ascending numbers above `last_number`), one by one; False as soon as one is not a
        case handled here (see the class): the state is then unusable and the algorithm must run again."""
        ids, parent, child_count, nodes = self._ids, self._parent, self._child_count, self._nodes
        for msg in messages:
            if msg.number <= self.last_number:
                return False
            mid = msg.message_id
            known = ids.get(mid) if mid is not None else None
            if known is not None and known not in nodes:
                return False  # an earlier message referred to it: its dummy would be this message
            if mid is not None and mid in msg.references:
                return False  # a reference to itself
            # (1.A) the known references must be linked as they say already, and come first: the unknown
            # ones after them become a chain of new dummies below the last known one (nothing else moves)
            previous = -1
            unknown: list[str] = []
            for ref in msg.references:
                found = ids.get(ref)
                if found is None:
                    unknown.append(ref)
                    continue
                if unknown or (previous >= 0 and parent[found] < 0 and previous != found):
                    return False
                previous = found
            if len(set(unknown)) != len(unknown):
                return False
            anchor = previous  # the nearest message above it (steps 2-3 splice the new dummies away)
            if anchor >= 0 and anchor not in nodes:
                return False  # below a dummy
            for ref in unknown:
                ids[ref] = len(parent)
                parent.append(previous)
                child_count.append(0)
                if previous >= 0:
                    child_count[previous] += 1
                previous = len(parent) - 1
            container = len(parent)
            if mid is not None and known is None:
                ids[mid] = container
            parent.append(previous)  # (1.B) the last reference is the parent
            child_count.append(0)
            if previous >= 0:
                child_count[previous] += 1
            node = ThreadNode(msg.number, [])
            nodes[container] = node
            self._sent[msg.number] = msg.sent
            key = (msg.sent, msg.number)
            if anchor >= 0:
                up = nodes[anchor]
                if up.number is None:  # (never: `nodes` holds messages)
                    return False
                siblings = up.children  # messages only (dummies are top-level), in date order (step 6)
                at = bisect.bisect_right([(self._sent[c.number or 0], c.number or 0) for c in siblings], key)
                siblings.insert(at, node)
                top = self._top_of[up.number]
                self._top_of[msg.number] = top
                where = bisect.bisect_left(self._top_keys, self._top_key[top])
                self._pieces[where] = format_pieces([top])[0]
            else:  # a new thread: no references, or only unknown ones (a dummy holding one message is it)
                if msg.subject:
                    if msg.subject in self._subjects:
                        return False  # (5) it would be merged with a thread of that subject
                    self._subjects.add(msg.subject)
                where = bisect.bisect_right(self._top_keys, key)
                self._top.insert(where, node)
                self._top_keys.insert(where, key)
                self._top_key[node] = key
                self._top_of[msg.number] = node
                self._pieces.insert(where, f"({msg.number})")
            self.last_number = msg.number
        return True


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a tree is built: the objects built are all kept, and with a
    100,000-message mailbox the collector's passes over them cost more than building them."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _is_ancestor(parent: list[int], ancestor: int, container: int) -> bool:
    """Whether `ancestor` is `container` or one of its ancestors."""
    while container >= 0:
        if container == ancestor:
            return True
        container = parent[container]
    return False


def _dummy_anchor(parent: list[int], anchor: list[int], n: int, dummy: int) -> int:
    """The nearest ancestor of `dummy` that is a message, or the dummy at the top of its tree; memoised in
    `anchor` (indexed by dummy - n) along the path."""
    path: list[int] = []
    found = -2
    container = dummy
    while True:
        found = anchor[container - n]
        if found != -2:
            break
        path.append(container)
        up = parent[container]
        if up < 0:
            found = container
            break
        if up < n:
            found = up
            break
        container = up
    for passed in path:
        anchor[passed - n] = found
    return found


def format_threads(threads: Sequence[ThreadNode]) -> bytes:
    """The part of the THREAD response after "* THREAD" (RFC 5256 section 4): b"" for no threads, else
    SP 1*thread-list, e.g. b" (2)(3 6 (4 23)(44 7 96))".

        thread-list    = "(" (thread-members / thread-nested) ")"
        thread-members = nz-number *(SP nz-number) [SP thread-nested]
        thread-nested  = 2*thread-list
    """
    text = "".join(format_pieces(threads))
    return (" " + text).encode("ascii") if text else b""


def format_pieces(threads: Sequence[ThreadNode]) -> list[str]:
    """The thread-list of each thread (`format_threads`), "" for a thread that holds no message."""
    out: list[str] = []
    pieces: list[str] = []
    stack: list[ThreadNode | str] = []
    for position, thread in enumerate(threads):
        if position:  # the one before is written
            pieces.append("".join(out))
            out.clear()
        top = thread
        if top.number is None:
            members = _messages(top.children)
            if not members:
                continue
            if len(members) > 1:
                out.append("(")
                stack.append(")")
                _push_nested(stack, members)
                _write(out, stack)
                continue
            top = members[0]
        if not top.children:
            out.append(f"({top.number})")
            continue
        out.append("(")
        stack.append(")")
        stack.append(top)
        _write(out, stack)
    if threads:
        pieces.append("".join(out))
    return pieces


def _write(out: list[str], stack: list[ThreadNode | str]) -> None:
    """Write what is on `stack`: literals, and messages each followed by their descendants."""
    write = out.append
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            write(node)
            continue
        while True:  # thread-members: a chain of single children is written flat
            children = node.children
            if not children:
                write(str(node.number))
                break
            if len(children) == 1 and children[0].number is not None:
                write(f"{node.number} ")
                node = children[0]
                continue
            children = _messages(children)
            if len(children) == 1:
                write(f"{node.number} ")
                node = children[0]
                continue
            write(str(node.number))
            if children:
                write(" ")
                _push_nested(stack, children)
            break


def _push_nested(stack: list[ThreadNode | str], children: list[ThreadNode]) -> None:
    """Push "(" child ")" for each child (all messages) so that they come off the stack in order
    (thread-nested); a child without children is pushed as its finished text."""
    for child in reversed(children):
        if child.children:
            stack.append(")")
            stack.append(child)
            stack.append("(")
        else:
            stack.append(f"({child.number})")


def _messages(children: list[ThreadNode]) -> list[ThreadNode]:
    """`children` with every dummy replaced by its own children, recursively (iteratively)."""
    for child in children:
        if child.number is None:
            break
    else:
        return children
    found: list[ThreadNode] = []
    pending = list(reversed(children))
    while pending:
        child = pending.pop()
        if child.number is None:
            pending.extend(reversed(child.children))
        else:
            found.append(child)
    return found
