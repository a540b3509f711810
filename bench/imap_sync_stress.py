"""IMAP sync under stress: several concurrent clients work on ONE mailbox (the INBOX of one account) for a
bounded time, each doing random operations, and each checks that the server never contradicts itself.

What it is: a load generator and a consistency checker in one. Every client keeps a model of the mailbox built
only from what the server told it (RFC 9051 sections 2.3.1, 5.2, 7.4, 7.5; RFC 7162 for CONDSTORE and
QRESYNC) and checks every response against it. A contradiction is recorded (client, session, command, the
last lines exchanged) and never stops the run; a client whose model can no longer be trusted logs out and
starts afresh. At the end it prints commands per second (all clients), the number of each operation and of
each command, the load generator's own CPU (time.process_time), NO replies, and the contradictions found;
the exit status is 1 when there is any.

    .venv/bin/python bench/imap_sync_stress.py [--clients 10] [--seconds 600] [--mode plain|condstore|qresync]
                                               [--seed 0] [--tls] [--host H --port P --user U --password W]

Without --port it starts its own server (`postoffice run` through tests/integration/harness.py: a fresh data
directory in a temporary folder, loopback, ephemeral ports, `allow_plaintext_auth = true` so the plaintext
port can be used; --tls uses the implicit-TLS port with the data directory's certificate) and also prints the
server's CPU. `run_stress` is the same run as a function, for tests/integration/test_imap_sync_stress.py.

Modes: `plain` never uses a CONDSTORE feature (and a MODSEQ or VANISHED from the server is a contradiction);
`condstore` selects with `SELECT INBOX (CONDSTORE)` and fetches MODSEQ; `qresync` sends `ENABLE QRESYNC`
after the login, and on a reconnect resumes with `SELECT INBOX (QRESYNC (uidvalidity highestmodseq
known-uids))` from the model it kept, then checks the resynchronised model against a fresh
`UID FETCH 1:* (UID FLAGS MODSEQ)` (RFC 7162 3.2: a client must lose no change across a disconnection).

Operations (random, weighted; the weights keep the INBOX between about LOW_WATER and HIGH_WATER messages):
NOOP; NOOP then `UID FETCH 1:* (UID FLAGS [MODSEQ])` compared with the model; `FETCH n (UID BODY.PEEK[])`;
`STORE n +FLAGS/-FLAGS` (\\Flagged, \\Seen, $K1..$K3); `STORE n +FLAGS.SILENT (\\Deleted)` + `EXPUNGE`;
`UID STORE` + `UID EXPUNGE`; `APPEND INBOX` with LITERAL+; `UID COPY` and `UID MOVE` to Archive;
`UID SEARCH ALL`; in qresync mode `UID FETCH 1:* ... (CHANGEDSINCE h VANISHED)`; now and then LOGOUT and a
new login.

The model and its invariants (each broken one is a recorded violation)
- The message list is the UIDs in sequence-number order; a message whose UID the client has not learned yet
  is an unknown slot. EXISTS appends unknown slots and is never below the count (the count only goes down
  by EXPUNGE or VANISHED); after each operation the client learns them with `FETCH first:last (UID FLAGS)`.
  `n EXPUNGE` needs 1 <= n <= count and removes position n. `VANISHED uids` (QRESYNC only) names UIDs the
  list has (or that fit an unknown slot between its known neighbours: unknown slots are interchangeable).
  UIDs strictly increase along the list.
- Every `n FETCH` has 1 <= n <= count, and its UID, when given, is the list's UID at n (or fills the unknown
  slot n, between its neighbours). FLAGS in a FETCH replace the model's flags for that UID.
- EXPUNGE and VANISHED never come during FETCH, STORE or SEARCH (RFC 9051 7.5.1; RFC 7162 3.2.10);
  `VANISHED (EARLIER)` only in reply to SELECT ... QRESYNC or UID FETCH ... VANISHED, and then never for a
  UID the session still lists. Once QRESYNC is on, EXPUNGE is never used (RFC 7162 3.2.10).
- After a command, the session's view is what it was told: after NOOP, `UID FETCH 1:* (UID FLAGS)` must give
  exactly the model's UIDs and flags (and MODSEQs), except for messages the same command reports expunged.
  This holds for this server because it reports changes at the end of every command and answers FETCH of
  UID/FLAGS/MODSEQ from what the session already read (imap/mailbox_view.py, imap/state.py), so the first
  FETCH response for each UID in that command is the session's view as of the end of the NOOP. A server that
  reads changes at the start of a FETCH may legitimately report them in the FETCH data; against such a
  server this check would flag a change that was reported, just late.
- A message the server leaves out of a FETCH BODY.PEEK[] or UID SEARCH ALL answer (RFC 2180 4.1.3 lets it
  leave out expunged messages) must be reported expunged by the time the next NOOP + UID FETCH 1:* check
  ends, which is always after the change notification reached the session.
- After `EXPUNGE` / `UID EXPUNGE` of a message this session set \\Deleted on (STORE answered OK; no client
  ever removes \\Deleted), and after `UID MOVE` of a message (COPYUID names it), the message is gone from the
  list when the tagged OK arrives (RFC 9051 6.4.3, RFC 4315 2.1, RFC 6851 4.3). This server reports the
  expunges of every other session at the end of such commands too.
- \\Recent (RFC 3501 2.3.2): a UID is \\Recent in at most one session ever (a dict shared by all clients),
  and within a session a UID is either always \\Recent or never.
- MODSEQ (condstore and qresync): per UID never decreases, and grows when the flags change; HIGHESTMODSEQ
  never decreases within a session, nor across a QRESYNC resumption. Every FETCH that carries FLAGS also
  carries MODSEQ, and after ENABLE QRESYNC every FETCH with FLAGS or MODSEQ carries UID (RFC 7162 3.2.4).
  Without CONDSTORE the server never sends MODSEQ.
- Conformance notes are kept apart from contradictions (they do not fail a run): a FETCH with FLAGS or
  MODSEQ but no UID after a CONDSTORE enabling command without QRESYNC enabled. RFC 7162 3.2.4 ("once a
  CONDSTORE enabling command is issued by the client, the server MUST automatically include both UID and
  mod-sequence data in all subsequent untagged FETCH responses ...", in the section on QRESYNC servers)
  asks for the UID; some servers read it as applying once QRESYNC is enabled. The client still knows which
  message it is by its sequence number, so nothing is contradicted.
- The content of a UID never changes: the SHA-256 of every APPENDed message and of every BODY[] fetched is
  kept per UID in a dict shared by all clients.
- Responses are parsed strictly (tagged replies, untagged lines, literals `{n}` read to the octet,
  parenthesized lists); anything unparseable, a BAD reply, an unexpected BYE, a lost connection and a
  command without a reply after `--timeout` seconds are violations.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import os
import random
import re
import shutil
import ssl
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.harness import ServerProcess, make_data_dir

MODES = ("plain", "condstore", "qresync")
COMMAND_TIMEOUT = 30.0
#: The load keeps the INBOX between these sizes (appends stop above, removals stop below).
LOW_WATER = 20
HIGH_WATER = 150
#: Messages in the INBOX before the clients start.
INITIAL_MESSAGES = 40
ARCHIVE = "Archive"
STORE_FLAGS = ("\\Flagged", "\\Seen", "$K1", "$K2", "$K3")
#: Lines (sent and received) kept per client, shown with each violation.
HISTORY_LINES = 14
#: Violations kept with their details; the rest are only counted.
MAX_KEPT_VIOLATIONS = 200
MAX_LITERAL = 64 * 1024 * 1024
LEARN_ATTEMPTS = 4
#: The words of the random message bodies.
WORD_LIST = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
    "quebec romeo sierra tango uniform victor whiskey xray yankee zulu mailbox server client message"
)
WORDS = tuple(WORD_LIST.split())

BASE_WEIGHTS: dict[str, int] = {
    "noop": 8,
    "sync_check": 8,
    "fetch_body": 12,
    "store": 24,
    "expunge": 5,
    "uid_expunge": 5,
    "append": 12,
    "copy": 3,
    "move": 3,
    "search": 6,
    "reconnect": 1,
}


# --------------------------------------------------------------------------------------------- parsing

#: A parsed value: an atom (str), a string or literal (bytes), or a parenthesized list.
Value: TypeAlias = str | bytes | list["Value"]


class ProtocolError(Exception):
    """A response this checker cannot parse, or a broken connection: the session cannot go on."""


class CommandTimeout(Exception):
    """No tagged reply in time."""


_LINE_LITERAL = re.compile(rb"~?\{(\d+)\}\r\n\Z")
_LITERAL = re.compile(rb"~?\{(\d+)\}")
_ATOM = re.compile(rb'[^\x00-\x20()"{\[\]\x7f]+(?:\[[^\]\r\n]*\](?:<\d+>)?)?')
_NUMBER = re.compile(r"[1-9][0-9]*\Z")
_TAGGED = re.compile(rb"(\S+) (OK|NO|BAD)(?: \[([^\]]*)\])?(?: (.*))?\Z", re.DOTALL)
_STATUS = re.compile(rb"\* (OK|NO|BAD|BYE|PREAUTH)(?: \[([^\]]*)\])?(?: (.*))?\Z", re.DOTALL)
_MESSAGE_DATA = re.compile(rb"\* (\d+) (EXISTS|RECENT|EXPUNGE|FETCH)(?: |\Z)")
_VANISHED = re.compile(rb"\* VANISHED (\(EARLIER\) )?([0-9:,]+)\Z")
_SEARCH = re.compile(rb"\* SEARCH((?: [0-9]+)*)(?: \(MODSEQ [0-9]+\))?\Z")
_OTHER_DATA = re.compile(rb"\* (FLAGS|ENABLED|CAPABILITY|ID|LIST|LSUB|STATUS|ESEARCH|NAMESPACE)(?: |\Z)")


@dataclass
class Response:
    """One complete response: its text with each literal's `{n}` marker in place (line ends removed), and
    the literals' octets in order."""

    text: bytes
    literals: list[bytes]


class _Values:
    """A strict reader of IMAP values (RFC 9051 section 4) in a response's text."""

    def __init__(self, response: Response, pos: int) -> None:
        self.text = response.text
        self.literals = response.literals
        self.pos = pos
        self.next_literal = 0

    def peek(self) -> int:
        if self.pos >= len(self.text):
            raise ProtocolError("response ends inside a value")
        return self.text[self.pos]

    def value(self) -> Value:
        c = self.peek()
        if c == 0x28:  # (
            return self.parse_list()
        if c == 0x22:  # "
            return self.quoted()
        literal = _LITERAL.match(self.text, self.pos)
        if literal is not None:
            if self.next_literal >= len(self.literals):
                raise ProtocolError("literal marker without literal data")
            data = self.literals[self.next_literal]
            self.next_literal += 1
            if len(data) != int(literal.group(1)):
                raise ProtocolError("literal of the wrong size")
            self.pos = literal.end()
            return data
        atom = _ATOM.match(self.text, self.pos)
        if atom is None:
            raise ProtocolError(f"unexpected {self.text[self.pos : self.pos + 20]!r}")
        self.pos = atom.end()
        return atom.group().decode("ascii", "replace")

    def parse_list(self) -> list[Value]:
        if self.peek() != 0x28:
            raise ProtocolError("expected a parenthesized list")
        self.pos += 1
        items: list[Value] = []
        if self.peek() == 0x29:
            self.pos += 1
            return items
        while True:
            items.append(self.value())
            c = self.peek()
            self.pos += 1
            if c == 0x29:  # )
                return items
            if c != 0x20:
                raise ProtocolError("list items must be separated by one space")

    def quoted(self) -> bytes:
        text, pos = self.text, self.pos + 1
        out = bytearray()
        while pos < len(text):
            c = text[pos]
            if c == 0x5C:  # backslash: only \\ and \" are quoted-specials
                if pos + 1 >= len(text) or text[pos + 1] not in b'\\"':
                    raise ProtocolError("bad escape in a quoted string")
                out.append(text[pos + 1])
                pos += 2
            elif c == 0x22:
                self.pos = pos + 1
                return bytes(out)
            elif c in (0x0D, 0x0A):
                raise ProtocolError("line end in a quoted string")
            else:
                out.append(c)
                pos += 1
        raise ProtocolError("unterminated quoted string")

    def end(self) -> None:
        if self.pos != len(self.text) or self.next_literal != len(self.literals):
            raise ProtocolError("trailing data after the response")


def parse_fetch(response: Response, pos: int) -> dict[str, Value]:
    """The msg-att list of `* n FETCH (...)` starting at `pos`, by upper-cased item name."""
    reader = _Values(response, pos)
    items = reader.parse_list()
    reader.end()
    if len(items) % 2:
        raise ProtocolError("FETCH item without a value")
    out: dict[str, Value] = {}
    for name, value in zip(items[::2], items[1::2], strict=True):
        if not isinstance(name, str):
            raise ProtocolError("FETCH item name is not an atom")
        key = name.upper()
        if key in out:
            raise ProtocolError(f"FETCH item {key} given twice")
        out[key] = value
    return out


def number(value: Value | bytes | None, what: str) -> int:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str) or not _NUMBER.match(value):
        raise ProtocolError(f"{what} is not a number: {value!r}")
    return int(value)


def parse_set(text: str) -> list[int]:
    """A sequence set of numbers without `*` (RFC 9051 section 9 `sequence-set`), expanded, ascending."""
    out: set[int] = set()
    for part in text.split(","):
        low, _, high = part.partition(":")
        a, b = number(low, "set member"), number(high or low, "set member")
        if abs(a - b) > 10_000_000:
            raise ProtocolError("sequence set range too large")
        out.update(range(min(a, b), max(a, b) + 1))
    return sorted(out)


def format_set(uids: Iterable[int]) -> str:
    """Ascending UIDs as a compact sequence set (`1:3,7`)."""
    ranges: list[list[int]] = []
    for uid in sorted(uids):
        if ranges and uid == ranges[-1][1] + 1:
            ranges[-1][1] = uid
        else:
            ranges.append([uid, uid])
    return ",".join(str(a) if a == b else f"{a}:{b}" for a, b in ranges)


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ------------------------------------------------------------------------------------------ connection


class Connection:
    """One IMAP connection: reads complete responses (literals included), keeps the last lines for reports."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, history: deque[str]
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.history = history

    @classmethod
    async def open(
        cls, host: str, port: int, tls_context: ssl.SSLContext | None, server_hostname: str | None
    ) -> Connection:
        reader, writer = await asyncio.open_connection(
            host,
            port,
            ssl=tls_context,
            server_hostname=(server_hostname or host) if tls_context is not None else None,
            limit=1 << 20,
        )
        return cls(reader, writer, deque(maxlen=HISTORY_LINES))

    async def read(self) -> Response:
        text = bytearray()
        literals: list[bytes] = []
        try:
            while True:
                line = await self.reader.readuntil(b"\r\n")
                marker = _LINE_LITERAL.search(line)
                text += line[:-2]
                if marker is None:
                    break
                size = int(marker.group(1))
                if size > MAX_LITERAL:
                    raise ProtocolError(f"literal of {size} octets")
                literals.append(await self.reader.readexactly(size))
        except asyncio.IncompleteReadError:
            raise ProtocolError("the server closed the connection") from None
        except asyncio.LimitOverrunError:
            raise ProtocolError("response line over 1 MiB") from None
        except OSError as exc:
            raise ProtocolError(f"connection failed: {exc}") from None
        shown = bytes(text[:300]).decode("latin-1")
        self.history.append("S: " + shown + ("..." if len(text) > 300 else ""))
        return Response(bytes(text), literals)

    def write(self, data: bytes, shown: str) -> None:
        self.history.append("C: " + shown)
        self.writer.write(data)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, asyncio.TimeoutError, ssl.SSLError):
            async with asyncio.timeout(5):
                await self.writer.wait_closed()


# ------------------------------------------------------------------------------------------ the model


@dataclass
class Model:
    """The mailbox as one session was told it: UIDs in sequence-number order (None: not learned yet)."""

    uids: list[int | None] = field(default_factory=list)
    flags: dict[int, frozenset[str]] = field(default_factory=dict)
    modseqs: dict[int, int] = field(default_factory=dict)
    uidvalidity: int | None = None
    highestmodseq: int | None = None

    def known(self) -> list[int]:
        return [u for u in self.uids if u is not None]

    def first_unknown(self) -> int | None:
        """The sequence number of the first message whose UID is not known, or None."""
        for i, uid in enumerate(self.uids):
            if uid is None:
                return i + 1
        return None

    def index(self, uid: int) -> int | None:
        for i, u in enumerate(self.uids):
            if u == uid:
                return i
        return None

    def neighbours(self, i: int) -> tuple[int, int]:
        """The known UIDs just before and just after position i (0 and 2**63 when there are none)."""
        below = next((u for u in reversed(self.uids[:i]) if u is not None), 0)
        above = next((u for u in self.uids[i + 1 :] if u is not None), 2**63)
        return below, above

    def unknown_slot_for(self, uid: int) -> int | None:
        """An unknown slot the UID fits in, between its known neighbours (any of them: they are alike)."""
        for i, u in enumerate(self.uids):
            if u is None:
                below, above = self.neighbours(i)
                if below < uid < above:
                    return i
            elif u > uid:
                return None
        return None

    def remove_at(self, i: int) -> int | None:
        uid = self.uids.pop(i)
        if uid is not None:
            self.flags.pop(uid, None)
            self.modseqs.pop(uid, None)
        return uid

    def resumable(self) -> Model:
        """What a QRESYNC client keeps across a disconnection: known UIDs, flags without the session's
        \\Recent, MODSEQs, UIDVALIDITY and the last HIGHESTMODSEQ."""
        known = self.known()
        return Model(
            list(known),
            {u: self.flags[u] - {"\\Recent"} for u in known if u in self.flags},
            {u: self.modseqs[u] for u in known if u in self.modseqs},
            self.uidvalidity,
            self.highestmodseq,
        )


@dataclass
class Violation:
    client: int
    session: int
    command: str
    message: str
    recent: list[str]

    def format(self) -> str:
        lines = "\n".join(f"      {line}" for line in self.recent)
        return f"  [client {self.client} session {self.session}] {self.command}: {self.message}\n{lines}"


#: Numbers in a finding's message, except RFC and section numbers: replaced by N to count findings by kind.
_VARYING_NUMBER = re.compile(r"(?<!RFC )(?<![.\d])\d+(?![.\d])")


@dataclass
class Findings:
    """Findings of one kind (contradictions, or conformance notes): the first ones in full, all counted."""

    title: str
    kept: list[Violation] = field(default_factory=list)
    count: int = 0
    kinds: Counter[str] = field(default_factory=Counter)

    def add(self, finding: Violation) -> None:
        self.count += 1
        self.kinds[_VARYING_NUMBER.sub("N", finding.message)[:140]] += 1
        if len(self.kept) < MAX_KEPT_VIOLATIONS:
            self.kept.append(finding)

    def format(self, shown: int = MAX_KEPT_VIOLATIONS) -> str:
        if not self.count:
            return f"{self.title}: none"
        head = f"{self.title}: {self.count}, by kind:\n" + "\n".join(
            f"  {count:6d}  {kind}" for kind, count in self.kinds.most_common()
        )
        return head + "\nthe first ones in full:\n" + "\n".join(v.format() for v in self.kept[:shown])


@dataclass
class Shared:
    """What every client checks against: content per UID, the one session \\Recent was given to; and what
    they found."""

    content: dict[int, tuple[str, str]] = field(default_factory=dict)  # UID -> (sha256, who learned it)
    recent_owner: dict[int, tuple[int, int]] = field(default_factory=dict)  # UID -> (client, session)
    violations: Findings = field(default_factory=lambda: Findings("contradictions"))
    notes: Findings = field(
        default_factory=lambda: Findings("conformance notes (not contradictions; see the module docstring)")
    )


@dataclass
class StressResult:
    mode: str
    clients: int
    elapsed: float
    commands: Counter[str]
    operations: Counter[str]
    refusals: Counter[str]
    cpu_seconds: float
    violations: Findings
    notes: Findings

    @property
    def total_commands(self) -> int:
        return sum(self.commands.values())

    @property
    def rate(self) -> float:
        return self.total_commands / self.elapsed if self.elapsed > 0 else 0.0

    def report(self) -> str:
        lines = [
            f"mode {self.mode}, {self.clients} clients, {self.elapsed:.1f} s: "
            f"{self.total_commands} commands, {self.rate:,.0f} commands/s (all clients)",
            f"load generator CPU: {self.cpu_seconds:.1f} s "
            f"({self.cpu_seconds * 100 / max(self.elapsed, 1e-9):.0f} % of one core)",
            "operations: " + ", ".join(f"{k} {v}" for k, v in sorted(self.operations.items())),
            "commands: " + ", ".join(f"{k} {v}" for k, v in sorted(self.commands.items())),
            "NO replies: " + (", ".join(f"{k} {v}" for k, v in sorted(self.refusals.items())) or "none"),
            self.notes.format(shown=3),
            self.violations.format(),
        ]
        return "\n".join(line for line in lines if line)


# ------------------------------------------------------------------------------------------ one client


@dataclass
class Reply:
    status: str
    code: str | None
    text: str


@dataclass
class FetchSeen:
    seq: int
    uid: int | None
    flags: frozenset[str] | None
    modseq: int | None
    body: bytes | None


@dataclass
class Exchange:
    """One command and what came back for it."""

    label: str
    expunge_allowed: bool
    earlier_allowed: bool = False
    #: SELECT (QRESYNC): the model resumed from, until the resynchronisation data has been read (`resync`)
    resume: Model | None = None
    logout: bool = False
    reply: Reply = field(default_factory=lambda: Reply("", None, ""))
    exists_seen: int = 0
    fetches: list[FetchSeen] = field(default_factory=list)
    expunged: list[int] = field(default_factory=list)  # known UIDs removed from the model meanwhile
    earlier: list[int] = field(default_factory=list)
    search: list[int] | None = None
    codes: list[str] = field(default_factory=list)  # response codes of untagged OK responses

    @property
    def ok(self) -> bool:
        return self.reply.status == "OK"


class Reconnect(Exception):
    """The session cannot go on (a broken model, a failed SELECT): log out and start afresh."""


@dataclass
class Settings:
    host: str
    port: int
    user: str
    password: str
    mode: str
    tls_context: ssl.SSLContext | None
    server_hostname: str | None
    timeout: float
    history_lines: int = HISTORY_LINES


class StressClient:
    def __init__(self, cid: int, settings: Settings, shared: Shared, seed: int, deadline: float) -> None:
        self.cid = cid
        self.settings = settings
        self.shared = shared
        self.rng = random.Random(f"{seed}-{cid}")
        self.deadline = deadline
        self.condstore = settings.mode != "plain"
        self.qresync = settings.mode == "qresync"
        self.conn: Connection | None = None
        self.history: deque[str] = deque(maxlen=settings.history_lines)
        self.session = 0
        self.tags = 0
        self.model = Model()
        self.broken = False
        self.current = ""
        self.session_recent: dict[int, bool] = {}
        self.pending_gone: dict[int, str] = {}  # UID -> which answer left it out
        self.commands: Counter[str] = Counter()
        self.operations: Counter[str] = Counter()
        self.refusals: Counter[str] = Counter()
        self.failed_connects = 0
        self.ops: dict[str, Callable[[], Awaitable[None]]] = {
            "noop": self.op_noop,
            "sync_check": self.op_sync_check,
            "fetch_body": self.op_fetch_body,
            "store": self.op_store,
            "expunge": self.op_expunge,
            "uid_expunge": self.op_uid_expunge,
            "append": self.op_append,
            "copy": self.op_copy,
            "move": self.op_move,
            "search": self.op_search,
            "reconnect": self.op_reconnect,
            "fetch_vanished": self.op_fetch_vanished,
        }

    # -- reporting -------------------------------------------------------------------------------------
    def violate(self, message: str, *, broken: bool = True) -> None:
        """Record a contradiction; `broken`: the model can no longer be trusted (start afresh after it)."""
        self.shared.violations.add(
            Violation(self.cid, self.session, self.current, message, list(self.history))
        )
        if broken:
            self.broken = True

    def note(self, message: str) -> None:
        """Record a conformance note: a deviation that contradicts nothing the session was told."""
        self.shared.notes.add(Violation(self.cid, self.session, self.current, message, list(self.history)))

    # -- the command loop ------------------------------------------------------------------------------
    async def command(
        self,
        text: str,
        label: str,
        *,
        expunge_allowed: bool,
        literal: bytes | None = None,
        earlier_allowed: bool = False,
        resume: Model | None = None,
        logout: bool = False,
    ) -> Exchange:
        conn = self.conn
        if conn is None:
            raise Reconnect
        self.tags += 1
        tag = f"c{self.cid}x{self.tags}"
        self.current = f"{label} ({tag})"
        self.commands[label] += 1
        ex = Exchange(label, expunge_allowed, earlier_allowed, resume, logout)
        shown = f"{tag} LOGIN ..." if text.startswith("LOGIN ") else f"{tag} {text}"
        data = f"{tag} {text}".encode()
        if literal is not None:
            data += b" {%d+}\r\n" % len(literal) + literal
            shown += f" {{{len(literal)}+}}"
        try:
            async with asyncio.timeout(self.settings.timeout):
                conn.write(data + b"\r\n", shown)
                await conn.writer.drain()
                while True:
                    response = await conn.read()
                    if response.text.startswith(tag.encode() + b" "):
                        ex.reply = self.tagged(response)
                        break
                    if response.text.startswith(b"* "):
                        self.untagged(response, ex)
                    elif response.text.startswith(b"+"):
                        raise ProtocolError("a continuation request, but LITERAL+ needs none")
                    else:
                        self.violate(f"unparseable response {response.text[:80]!r}")
        except TimeoutError:
            raise CommandTimeout(f"no tagged reply within {self.settings.timeout:.0f} s") from None
        except OSError as exc:
            raise ProtocolError(f"connection failed: {exc}") from None
        if ex.reply.status == "NO":
            self.refusals[label] += 1
        elif ex.reply.status == "BAD":
            self.violate(f"BAD reply: {ex.reply.text}")
        return ex

    def tagged(self, response: Response) -> Reply:
        match = _TAGGED.match(response.text)
        if match is None or response.literals:
            self.violate(f"unparseable tagged reply {response.text[:80]!r}")
            return Reply("BAD", None, "")
        status = match.group(2).decode()
        code = match.group(3).decode("latin-1") if match.group(3) is not None else None
        if code is not None and status == "OK":
            self.response_code(code)
        return Reply(status, code, (match.group(4) or b"").decode("latin-1"))

    def response_code(self, code: str) -> None:
        name, _, rest = code.partition(" ")
        name = name.upper()
        try:
            if name == "HIGHESTMODSEQ":
                value = number(rest, "HIGHESTMODSEQ")
                previous = self.model.highestmodseq
                if previous is not None and value < previous:
                    self.violate(
                        f"HIGHESTMODSEQ went down within a session: {previous} -> {value}", broken=False
                    )
                self.model.highestmodseq = value
            elif name == "UIDVALIDITY":
                value = number(rest, "UIDVALIDITY")
                if self.model.uidvalidity is not None and value != self.model.uidvalidity:
                    self.violate(f"UIDVALIDITY changed within a session: {self.model.uidvalidity} -> {value}")
                self.model.uidvalidity = value
        except ProtocolError as exc:
            self.violate(f"bad response code [{code}]: {exc}")

    # -- untagged responses ------------------------------------------------------------------------------
    def untagged(self, response: Response, ex: Exchange) -> None:
        text = response.text
        try:
            match = _MESSAGE_DATA.match(text)
            if match is not None:
                n = int(match.group(1))
                kind = match.group(2)
                if kind == b"FETCH":
                    self.on_fetch(n, parse_fetch(response, match.end()), ex)
                elif response.literals or len(text) != match.end():
                    raise ProtocolError("trailing data")
                elif kind == b"EXISTS":
                    ex.exists_seen += 1
                    if ex.exists_seen > 1:
                        self.resync(ex)  # a second EXISTS is news after the resynchronisation
                    self.on_exists(n)
                elif kind == b"EXPUNGE":
                    self.on_expunge(n, ex)
                elif n > len(self.model.uids):  # RECENT
                    self.violate(f"{n} RECENT, but the session has {len(self.model.uids)} messages")
                return
            match = _VANISHED.match(text)
            if match is not None:
                self.on_vanished(parse_set(match.group(2).decode()), match.group(1) is not None, ex)
                return
            match = _STATUS.match(text)
            if match is not None:
                status = match.group(1)
                if match.group(2) is not None and status == b"OK":
                    code = match.group(2).decode("latin-1")
                    ex.codes.append(code)
                    self.response_code(code)
                if status == b"BYE" and not ex.logout:
                    self.violate(f"unexpected BYE: {text[:120]!r}")
                elif status == b"BAD":
                    self.violate(f"untagged BAD: {text[:120]!r}")
                return
            match = _SEARCH.match(text)
            if match is not None:
                ex.search = [int(n) for n in match.group(1).split()]
                return
            if _OTHER_DATA.match(text) is not None:
                return
            raise ProtocolError("unknown untagged response")
        except ProtocolError as exc:
            self.violate(f"unparseable untagged response ({exc}): {text[:120]!r}")

    def on_exists(self, n: int) -> None:
        model = self.model
        if n < len(model.uids):
            self.violate(
                f"{n} EXISTS, but the session has {len(model.uids)} messages and was told of no expunge"
            )
            return
        model.uids.extend([None] * (n - len(model.uids)))

    def on_expunge(self, n: int, ex: Exchange) -> None:
        model = self.model
        if self.qresync:
            self.violate(f"{n} EXPUNGE after ENABLE QRESYNC (RFC 7162 3.2.10: VANISHED instead)")
        if not ex.expunge_allowed:
            self.violate(f"{n} EXPUNGE during {ex.label} (RFC 9051 7.5.1 forbids it there)")
        if not 1 <= n <= len(model.uids):
            self.violate(f"{n} EXPUNGE, but the session has {len(model.uids)} messages")
            return
        uid = model.remove_at(n - 1)
        if uid is not None:
            ex.expunged.append(uid)

    def on_vanished(self, uids: list[int], earlier: bool, ex: Exchange) -> None:
        model = self.model
        if not self.qresync:
            self.violate("VANISHED without ENABLE QRESYNC")
            return
        if earlier:
            if not ex.earlier_allowed:
                self.violate(f"VANISHED (EARLIER) during {ex.label}")
            if ex.resume is not None:
                ex.earlier.extend(uids)
                return
            listed = sorted(set(uids) & set(model.known()))
            if listed:  # unknown UIDs are fine: the client may have never seen them
                self.violate(
                    f"VANISHED (EARLIER) names UIDs {format_set(listed)} that the session still lists "
                    "(it was never told they were expunged)"
                )
            ex.earlier.extend(uids)
            return
        if not ex.expunge_allowed:
            self.violate(f"VANISHED during {ex.label} (RFC 7162 3.2.10 / RFC 9051 7.5.1 forbid it there)")
        self.resync(ex)  # a live VANISHED comes after the resynchronisation data
        model = self.model
        for uid in uids:
            i = model.index(uid)
            if i is None:
                i = model.unknown_slot_for(uid)
                if i is None:
                    self.violate(f"VANISHED names UID {uid}, which the session does not have")
                    continue
            model.remove_at(i)
            ex.expunged.append(uid)

    def on_fetch(self, seq: int, items: dict[str, Value], ex: Exchange) -> None:
        model = self.model
        uid = number(items["UID"], "UID") if "UID" in items else None
        flags: frozenset[str] | None = None
        if "FLAGS" in items:
            value = items["FLAGS"]
            if not isinstance(value, list) or not all(isinstance(f, str) for f in value):
                raise ProtocolError("FLAGS is not a list of atoms")
            flags = frozenset(str(f) for f in value)
        modseq: int | None = None
        if "MODSEQ" in items:
            value = items["MODSEQ"]
            if not isinstance(value, list) or len(value) != 1:
                raise ProtocolError("MODSEQ is not a list of one number")
            modseq = number(value[0], "MODSEQ")
            if not self.condstore:
                self.violate("MODSEQ in a FETCH response without CONDSTORE enabled", broken=False)
        body = items.get("BODY[]")
        if body is not None and not isinstance(body, bytes):
            raise ProtocolError("BODY[] is not a string")
        if self.condstore and flags is not None and modseq is None:
            self.violate(f"FETCH of message {seq} with FLAGS but without MODSEQ after CONDSTORE was enabled")
        if self.condstore and (flags is not None or modseq is not None) and uid is None:
            what = f"FETCH of message {seq} with {'FLAGS' if flags is not None else 'MODSEQ'} but without UID"
            if self.qresync:
                self.violate(f"{what} after ENABLE QRESYNC (RFC 7162 3.2.4)", broken=False)
            else:
                self.note(f"{what} after a CONDSTORE enabling command (RFC 7162 3.2.4, see the docstring)")
        seen = FetchSeen(seq, uid, flags, modseq, body)
        if ex.resume is not None:  # resynchronisation data: the model is rebuilt from it (`resync`)
            if uid is None or flags is None or modseq is None:
                self.violate("a FETCH during SELECT (QRESYNC) without UID, FLAGS and MODSEQ")
            else:
                self.check_recent(uid, flags)
            ex.fetches.append(seen)
            return
        if not 1 <= seq <= len(model.uids):
            self.violate(f"FETCH for message {seq}, but the session has {len(model.uids)} messages")
            return
        current = model.uids[seq - 1]
        if uid is not None:
            if current is None:
                below, above = model.neighbours(seq - 1)
                if not below < uid < above:
                    self.violate(
                        f"FETCH says message {seq} is UID {uid}, but its neighbours are UIDs {below} and "
                        f"{above} (UIDs must increase along the mailbox)"
                    )
                    return
                model.uids[seq - 1] = uid
            elif current != uid:
                self.violate(
                    f"FETCH says message {seq} is UID {uid}, but the session's message {seq} is {current}"
                )
                return
        else:
            uid = current
        ex.fetches.append(FetchSeen(seq, uid, flags, modseq, body))
        if uid is None:
            return  # flags of a message whose UID is not known yet: the learning FETCH gets them again
        if flags is not None:
            self.check_recent(uid, flags)
            old = model.flags.get(uid)
            old_modseq = model.modseqs.get(uid)
            if (
                old is not None
                and modseq is not None
                and old_modseq is not None
                and old - {"\\Recent"} != flags - {"\\Recent"}
                and modseq <= old_modseq
            ):
                self.violate(
                    f"flags of UID {uid} changed ({sorted(old)} -> {sorted(flags)}) but its MODSEQ did not "
                    f"grow ({old_modseq} -> {modseq})",
                    broken=False,
                )
            model.flags[uid] = flags
        if modseq is not None:
            old_modseq = model.modseqs.get(uid)
            if old_modseq is not None and modseq < old_modseq:
                self.violate(f"MODSEQ of UID {uid} went down: {old_modseq} -> {modseq}", broken=False)
            model.modseqs[uid] = modseq
        if body is not None:
            self.check_content(uid, body, f"FETCH by client {self.cid}")

    def check_recent(self, uid: int, flags: frozenset[str]) -> None:
        recent = "\\Recent" in flags
        before = self.session_recent.setdefault(uid, recent)
        if before != recent:
            self.violate(
                f"UID {uid} was {'' if before else 'not '}\\Recent in this session and now is "
                f"{'' if recent else 'not'} (RFC 3501 2.3.2: \\Recent lasts the whole session)",
                broken=False,
            )
        if recent:
            owner = self.shared.recent_owner.setdefault(uid, (self.cid, self.session))
            if owner != (self.cid, self.session):
                self.violate(
                    f"UID {uid} is \\Recent in this session, but was \\Recent in session {owner[1]} of "
                    f"client {owner[0]} already (RFC 3501 2.3.2: one session only)",
                    broken=False,
                )

    def check_content(self, uid: int, data: bytes, where: str) -> None:
        digest = hashlib.sha256(data).hexdigest()
        known = self.shared.content.setdefault(uid, (digest, where))
        if known[0] != digest:
            self.violate(
                f"content of UID {uid} changed: {len(data)} octets with sha256 {digest[:16]}..., but "
                f"{known[1]} saw sha256 {known[0][:16]}...",
                broken=False,
            )

    # -- sessions ----------------------------------------------------------------------------------------
    async def connect(self, resume: Model | None) -> None:
        settings = self.settings
        self.session += 1
        self.session_recent = {}
        self.pending_gone = {}
        self.broken = False
        self.model = Model()
        self.current = "connect"
        try:
            async with asyncio.timeout(settings.timeout):
                self.conn = await Connection.open(
                    settings.host, settings.port, settings.tls_context, settings.server_hostname
                )
                self.conn.history = self.history
                greeting = await self.conn.read()
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            self.conn = None
            raise ProtocolError(f"cannot connect: {exc!r}") from None
        if not greeting.text.startswith(b"* OK"):
            raise ProtocolError(f"greeting {greeting.text[:80]!r}")
        login = await self.command(
            f"LOGIN {quote(settings.user)} {quote(settings.password)}", "LOGIN", expunge_allowed=False
        )
        if not login.ok:
            raise ProtocolError(f"LOGIN answered {login.reply.status} {login.reply.text}")
        if self.qresync:
            enable = await self.command("ENABLE QRESYNC", "ENABLE", expunge_allowed=False)
            if not enable.ok:
                raise ProtocolError("ENABLE QRESYNC refused")
        if resume is not None and resume.uidvalidity is not None and resume.highestmodseq is not None:
            await self.select_qresync(resume)
            await self.learn()
            await self.full_fetch_check("after SELECT (QRESYNC) resynchronisation")
        else:
            await self.select()
            await self.learn()
        self.failed_connects = 0

    async def select(self) -> None:
        self.model = Model()
        condstore = " (CONDSTORE)" if self.settings.mode == "condstore" else ""
        ex = await self.command(f"SELECT INBOX{condstore}", "SELECT", expunge_allowed=True)
        if not ex.ok:
            self.violate(f"SELECT INBOX answered {ex.reply.status} {ex.reply.text}")
            raise Reconnect
        if self.condstore and self.model.highestmodseq is None:
            self.violate(
                "SELECT with CONDSTORE enabled gave no HIGHESTMODSEQ (RFC 7162 3.1.2.1)", broken=False
            )

    async def select_qresync(self, saved: Model) -> None:
        """SELECT INBOX (QRESYNC (uidvalidity highestmodseq known-uids)) from the saved model (RFC 7162
        3.2.5); the model is rebuilt from the answer (`resync`), then live updates apply to it."""
        self.model = Model()
        known = format_set(saved.known())
        params = f"{saved.uidvalidity} {saved.highestmodseq}" + (f" {known}" if known else "")
        ex = await self.command(
            f"SELECT INBOX (QRESYNC ({params}))",
            "SELECT (QRESYNC)",
            expunge_allowed=True,
            earlier_allowed=True,
            resume=saved,
        )
        self.resync(ex)
        if not ex.ok:
            self.violate(f"SELECT (QRESYNC) answered {ex.reply.status} {ex.reply.text}")
            raise Reconnect

    def resync(self, ex: Exchange) -> None:
        """The model after the resynchronisation part of a SELECT (QRESYNC) answer (EXISTS, VANISHED
        (EARLIER), FETCH of the changed messages): the saved UIDs minus the vanished ones, plus the fetched
        ones, then unknown slots up to EXISTS. Called at the first live update (a VANISHED, a second EXISTS)
        or at the tagged reply, whichever comes first; later FETCHes are live updates of this model."""
        saved = ex.resume
        if saved is None:
            return
        ex.resume = None
        told = self.model
        exists = len(told.uids)
        if told.uidvalidity != saved.uidvalidity or saved.highestmodseq is None:
            return  # a new mailbox: nothing to resume (the unknown slots are learned afresh)
        if told.highestmodseq is None:
            self.violate("SELECT (QRESYNC) gave no HIGHESTMODSEQ")
        elif told.highestmodseq < saved.highestmodseq:
            self.violate(
                f"HIGHESTMODSEQ went down across sessions: {saved.highestmodseq} -> {told.highestmodseq}",
                broken=False,
            )
        gone = set(ex.earlier)
        remaining = [u for u in saved.known() if u not in gone]
        fetched: dict[int, FetchSeen] = {}
        for seen in ex.fetches:
            if seen.uid is None:
                continue
            if seen.modseq is not None and seen.modseq <= saved.highestmodseq:
                self.violate(
                    f"SELECT (QRESYNC) reported UID {seen.uid} with MODSEQ {seen.modseq}, not above the "
                    f"client's {saved.highestmodseq} (RFC 7162 3.2.5.1: only messages changed since)",
                    broken=False,
                )
            fetched[seen.uid] = seen
        # Only the saved UIDs have known places: a message the client never learned (an unknown slot when it
        # left, or one that came since) is in no known-uids, so the server says nothing of it (RFC 7162
        # 3.2.5.1), and a live FETCH at the end of the SELECT may name one. The places are checked when the
        # saved model had no unknown slot (then every message below the highest saved UID is a saved one);
        # the new messages are learned afterwards (`learn`, then the full check).
        listed = sorted(set(remaining))
        if len(listed) > exists:
            self.violate(
                f"after SELECT (QRESYNC) the session knows {len(listed)} messages but EXISTS says {exists}: "
                f"a message count that does not add up (VANISHED (EARLIER) {format_set(gone) or 'none'})"
            )
            return
        position = {u: i + 1 for i, u in enumerate(listed)}
        if None not in saved.uids:
            for seen in ex.fetches:
                if seen.uid is not None and seen.uid in position and position[seen.uid] != seen.seq:
                    self.violate(
                        f"SELECT (QRESYNC) FETCH says message {seen.seq} is UID {seen.uid}, but after the "
                        f"VANISHED (EARLIER) the known UIDs put it at {position[seen.uid]}"
                    )
        fetched = {uid: seen for uid, seen in fetched.items() if uid in position}
        flags = {u: saved.flags[u] for u in remaining if u in saved.flags}
        modseqs = {u: saved.modseqs[u] for u in remaining if u in saved.modseqs}
        for uid, seen in fetched.items():
            if seen.flags is not None:
                flags[uid] = seen.flags
            if seen.modseq is not None:
                if uid in modseqs and seen.modseq < modseqs[uid]:
                    self.violate(
                        f"MODSEQ of UID {uid} went down across sessions: {modseqs[uid]} -> {seen.modseq}",
                        broken=False,
                    )
                modseqs[uid] = seen.modseq
        uids: list[int | None] = [*listed, *([None] * (exists - len(listed)))]
        self.model = Model(uids, flags, modseqs, told.uidvalidity, told.highestmodseq)

    async def learn(self) -> None:
        """Learn the UIDs (and flags) of the messages announced by EXISTS: FETCH first:last (UID FLAGS),
        again while new EXISTS keep coming (bounded by the deadline). A message the FETCH leaves out must be
        expunged: a NOOP then reports it; one left out LEARN_ATTEMPTS times after a NOOP is a violation."""
        modseq = " MODSEQ" if self.condstore else ""
        left_out = 0
        while not self.broken and self.model.first_unknown() is not None:
            if left_out >= LEARN_ATTEMPTS:
                self.violate(
                    f"message {self.model.first_unknown()} is in the count, but FETCH never gives its UID "
                    "and no EXPUNGE/VANISHED removes it"
                )
                return
            if left_out:  # the FETCH left a message out: expunged meanwhile, which NOOP reports
                await self.command("NOOP", "NOOP (learn)", expunge_allowed=True)
            first = self.model.first_unknown()
            if first is None:
                return
            last = len(self.model.uids)
            span = str(first) if first == last else f"{first}:{last}"
            await self.command(
                f"FETCH {span} (UID FLAGS{modseq})", "FETCH (learn UIDs)", expunge_allowed=False
            )
            # no EXPUNGE during FETCH: positions first..last are the same messages; slots after `last` are
            # new messages announced at the end of this FETCH (learned in the next round)
            if None in self.model.uids[first - 1 : last]:
                left_out += 1
            elif time.monotonic() > self.deadline + self.settings.timeout:
                return  # appends outpace the learning: stop chasing, the run is over

    async def full_fetch_check(self, why: str) -> None:
        """`UID FETCH 1:* (UID FLAGS [MODSEQ])` against the model: the same UIDs, flags and MODSEQs, except
        for messages this command reports expunged (see the module docstring for why this is sound here)."""
        model = self.model
        if self.broken or model.first_unknown() is not None:
            return
        uids = model.known()
        flags = dict(model.flags)
        modseqs = dict(model.modseqs)
        modseq = " MODSEQ" if self.condstore else ""
        ex = await self.command(
            f"UID FETCH 1:* (UID FLAGS{modseq})", "UID FETCH 1:* (check)", expunge_allowed=True
        )
        if not ex.ok:
            return
        first: dict[int, FetchSeen] = {}
        for fetched in ex.fetches:
            if fetched.uid is not None:
                first.setdefault(fetched.uid, fetched)
        expunged = set(ex.expunged)
        for uid in uids:
            if uid in expunged:
                continue
            seen = first.get(uid)
            if seen is None:
                self.violate(
                    f"{why}: UID FETCH 1:* left out UID {uid}, which the session still lists (no EXPUNGE or "
                    "VANISHED for it): a message count that does not add up"
                )
            elif seen.flags != flags.get(uid):
                self.violate(
                    f"{why}: UID {uid} has flags {sorted(seen.flags or ())} but the session was told "
                    f"{sorted(flags.get(uid, ()))}: a flag changed without an untagged FETCH"
                )
            elif self.condstore and uid in modseqs and seen.modseq != modseqs[uid]:
                self.violate(
                    f"{why}: UID {uid} has MODSEQ {seen.modseq} but the session was told {modseqs[uid]}: "
                    "a change without an untagged FETCH",
                    broken=False,
                )
        listed = set(uids)
        extra = sorted(u for u in first if u not in listed)
        if extra and not self.broken:
            self.violate(f"{why}: UID FETCH 1:* gave UIDs {format_set(extra)} the session was never told of")
        for uid, where in self.pending_gone.items():
            if model.index(uid) is not None:
                self.violate(
                    f"{where} left out UID {uid} (as if expunged), but after NOOP and UID FETCH 1:* the "
                    "session still lists it"
                )
        self.pending_gone = {}

    async def logout(self) -> None:
        if self.conn is None:
            return
        with contextlib.suppress(ProtocolError, CommandTimeout, Reconnect):
            await self.command("LOGOUT", "LOGOUT", expunge_allowed=True, logout=True)
        await self.drop()

    async def drop(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            await conn.close()

    # -- the run -----------------------------------------------------------------------------------------
    def choose(self) -> str:
        weights = dict(BASE_WEIGHTS)
        if self.qresync:
            weights["fetch_vanished"] = 4
        count = len(self.model.uids)
        if count >= HIGH_WATER:
            weights["append"] = 0
        elif count < LOW_WATER:
            weights["append"] *= 4
            for name in ("expunge", "uid_expunge", "move"):
                weights[name] = 0
        names = list(weights)
        return self.rng.choices(names, [weights[n] for n in names])[0]

    async def run(self) -> None:
        """Random operations until the deadline; a session whose model broke is left for a fresh one."""
        while time.monotonic() < self.deadline:
            connecting = self.conn is None
            try:
                if connecting:
                    await self.connect(None)
                op = self.choose()
                self.operations[op] += 1
                await self.ops[op]()
                await self.learn()
            except Reconnect:
                self.broken = True
            except (ProtocolError, CommandTimeout) as exc:
                self.violate(str(exc))
                if connecting:
                    self.failed_connects += 1
                    if self.failed_connects >= 3:  # the server is gone: stop this client
                        await self.drop()
                        return
            if self.broken:
                await self.drop()
        await self.logout()

    def pick(self) -> tuple[int, int] | None:
        """A random message whose UID is known: (sequence number, UID)."""
        known = [(i + 1, u) for i, u in enumerate(self.model.uids) if u is not None]
        return self.rng.choice(known) if known else None

    # -- operations ------------------------------------------------------------------------------------
    async def op_noop(self) -> None:
        await self.command("NOOP", "NOOP", expunge_allowed=True)

    async def op_sync_check(self) -> None:
        await self.command("NOOP", "NOOP", expunge_allowed=True)
        await self.learn()
        await self.full_fetch_check("after NOOP")

    async def op_fetch_body(self) -> None:
        pick = self.pick()
        if pick is None:
            return
        seq, uid = pick
        ex = await self.command(f"FETCH {seq} (UID BODY.PEEK[])", "FETCH BODY.PEEK[]", expunge_allowed=False)
        if ex.ok and not any(seen.uid == uid and seen.body is not None for seen in ex.fetches):
            self.pending_gone[uid] = f"FETCH {seq} (UID BODY.PEEK[])"

    async def op_store(self) -> None:
        pick = self.pick()
        if pick is None:
            return
        seq, _ = pick
        flag = self.rng.choice(STORE_FLAGS)
        sign = self.rng.choice("+-")
        await self.command(f"STORE {seq} {sign}FLAGS ({flag})", "STORE", expunge_allowed=False)

    async def op_expunge(self) -> None:
        pick = self.pick()
        if pick is None:
            return
        seq, uid = pick
        store = await self.command(f"STORE {seq} +FLAGS.SILENT (\\Deleted)", "STORE", expunge_allowed=False)
        if not store.ok or self.broken:
            return
        ex = await self.command("EXPUNGE", "EXPUNGE", expunge_allowed=True)
        if ex.ok and self.model.index(uid) is not None:
            self.violate(
                f"EXPUNGE completed, but UID {uid}, which this session set \\Deleted on (STORE OK), is still "
                "listed: no EXPUNGE/VANISHED reported it"
            )

    async def op_uid_expunge(self) -> None:
        pick = self.pick()
        if pick is None:
            return
        _, uid = pick
        store = await self.command(
            f"UID STORE {uid} +FLAGS.SILENT (\\Deleted)", "UID STORE", expunge_allowed=True
        )
        if not store.ok or self.broken:
            return
        ex = await self.command(f"UID EXPUNGE {uid}", "UID EXPUNGE", expunge_allowed=True)
        if ex.ok and self.model.index(uid) is not None:
            self.violate(
                f"UID EXPUNGE {uid} completed, but the message (\\Deleted by this session) is still listed: "
                "no EXPUNGE/VANISHED reported it"
            )

    def message(self) -> bytes:
        rng = self.rng
        token = f"{rng.getrandbits(64):016x}"
        lines = [
            "From: Stress <stress@example.test>",
            f"To: {self.settings.user}",
            f"Subject: stress {self.cid} {token}",
            f"Message-ID: <{token}.{self.cid}@stress.example.test>",
            "Date: Thu, 01 Jan 2026 00:00:00 +0000",
            "",
        ]
        lines += [" ".join(rng.choices(WORDS, k=rng.randint(3, 12))) for _ in range(rng.randint(2, 30))]
        return ("\r\n".join(lines) + "\r\n").encode()

    async def op_append(self) -> None:
        data = self.message()
        flags = self.rng.choice(["", "(\\Seen) ", "($K1) ", "(\\Flagged $K2) "])
        ex = await self.command(
            f"APPEND INBOX {flags}".rstrip(), "APPEND", expunge_allowed=True, literal=data
        )
        if not ex.ok:
            return
        code = (ex.reply.code or "").split()
        if len(code) != 3 or code[0].upper() != "APPENDUID":
            self.violate(f"APPEND OK without APPENDUID (RFC 4315 3): [{ex.reply.code}]", broken=False)
            return
        try:
            uidvalidity = number(code[1], "APPENDUID uidvalidity")
            uid = number(code[2], "APPENDUID uid")
        except ProtocolError as exc:
            self.violate(str(exc), broken=False)
            return
        if self.model.uidvalidity is not None and uidvalidity != self.model.uidvalidity:
            self.violate(f"APPENDUID {uidvalidity} is not the INBOX's UIDVALIDITY {self.model.uidvalidity}")
        self.check_content(uid, data, f"APPEND by client {self.cid}")

    async def op_copy(self) -> None:
        pick = self.pick()
        if pick is None:
            return
        _, uid = pick
        ex = await self.command(f"UID COPY {uid} {ARCHIVE}", "UID COPY", expunge_allowed=True)
        if ex.ok and ex.reply.code is not None:
            self.check_copyuid(ex.reply.code, uid)

    def check_copyuid(self, code: str, uid: int) -> bool:
        """Whether COPYUID names `uid` as copied; a COPYUID that names other source UIDs is a violation."""
        parts = code.split()
        if not parts or parts[0].upper() != "COPYUID":
            return False
        try:
            if len(parts) != 4:
                raise ProtocolError(f"COPYUID takes three arguments: [{code}]")
            sources, targets = parse_set(parts[2]), parse_set(parts[3])
        except ProtocolError as exc:
            self.violate(str(exc), broken=False)
            return False
        if sources != [uid] or len(targets) != 1:
            self.violate(f"UID COPY/MOVE of UID {uid} answered [{code}]", broken=False)
        return uid in sources

    async def op_move(self) -> None:
        pick = self.pick()
        if pick is None:
            return
        _, uid = pick
        ex = await self.command(f"UID MOVE {uid} {ARCHIVE}", "UID MOVE", expunge_allowed=True)
        if not ex.ok:
            return
        moved = any(self.check_copyuid(code, uid) for code in [*ex.codes, ex.reply.code or ""])
        if self.model.index(uid) is not None:
            what = "moved it (COPYUID)" if moved else "moved nothing"
            self.violate(
                f"UID MOVE {uid} {what}, but the session still lists the message: no EXPUNGE/VANISHED for it "
                "(RFC 6851 4.3)"
            )

    async def op_search(self) -> None:
        before = self.model.known()
        ex = await self.command("UID SEARCH ALL", "UID SEARCH ALL", expunge_allowed=True)
        if not ex.ok:
            return
        if ex.search is None:
            self.violate("UID SEARCH completed without a SEARCH response")
            return
        listed = set(before)
        highest = max(before, default=0)
        strange = sorted(u for u in ex.search if u not in listed and u <= highest)
        if strange:
            self.violate(
                f"UID SEARCH ALL names UIDs {format_set(strange)} the session never saw", broken=False
            )
        found = set(ex.search)
        for uid in before:
            if uid not in found:
                self.pending_gone.setdefault(uid, "UID SEARCH ALL")

    async def op_fetch_vanished(self) -> None:
        since = self.model.highestmodseq
        if since is None:
            return
        await self.command(
            f"UID FETCH 1:* (UID FLAGS MODSEQ) (CHANGEDSINCE {since} VANISHED)",
            "UID FETCH (CHANGEDSINCE VANISHED)",
            expunge_allowed=True,
            earlier_allowed=True,
        )

    async def op_reconnect(self) -> None:
        saved = self.model.resumable() if self.qresync and not self.broken else None
        await self.logout()
        await self.connect(saved)


# ------------------------------------------------------------------------------------------------ the run


async def prepare(settings: Settings, shared: Shared, seed: int) -> None:
    """Archive exists and the INBOX has INITIAL_MESSAGES messages before the clients start (not measured;
    what this client finds counts all the same)."""
    client = StressClient(-1, dataclasses.replace(settings, mode="plain"), shared, seed, 0.0)
    await client.connect(None)
    try:
        await client.command(f"CREATE {ARCHIVE}", "CREATE", expunge_allowed=True)  # NO when it exists
        for _ in range(max(0, INITIAL_MESSAGES - len(client.model.uids))):
            await client.op_append()
    finally:
        await client.logout()


async def run_stress(
    host: str,
    port: int,
    user: str,
    password: str,
    *,
    clients: int = 10,
    seconds: float = 600.0,
    mode: str = "plain",
    seed: int = 0,
    tls_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    command_timeout: float = COMMAND_TIMEOUT,
    history_lines: int = HISTORY_LINES,
) -> StressResult:
    """Run `clients` concurrent checking clients on the INBOX of `user` for `seconds`; the counts and the
    contradictions they found."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    settings = Settings(
        host, port, user, password, mode, tls_context, server_hostname, command_timeout, history_lines
    )
    shared = Shared()
    await prepare(settings, shared, seed)
    cpu0 = time.process_time()
    started = time.monotonic()
    deadline = started + seconds
    workers = [StressClient(i, settings, shared, seed, deadline) for i in range(clients)]
    await asyncio.gather(*(worker.run() for worker in workers))
    elapsed = time.monotonic() - started
    total: dict[str, Counter[str]] = {"commands": Counter(), "operations": Counter(), "refusals": Counter()}
    for worker in workers:
        total["commands"].update(worker.commands)
        total["operations"].update(worker.operations)
        total["refusals"].update(worker.refusals)
    return StressResult(
        mode,
        clients,
        elapsed,
        total["commands"],
        total["operations"],
        total["refusals"],
        time.process_time() - cpu0,
        shared.violations,
        shared.notes,
    )


# ------------------------------------------------------------------------------------------------ main


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def start_server(root: Path, clients: int) -> tuple[ServerProcess, str, str]:
    """`postoffice run` on a fresh data directory: the server, the user and the password."""
    data = make_data_dir(root / "data", users=("demo",))
    text = data.config.read_text()
    text = re.sub(r"(?m)^allow_plaintext_auth = false$", "allow_plaintext_auth = true", text)
    text = re.sub(
        r"(?m)^max_connections_per_ip = \d+$", f"max_connections_per_ip = {max(20, clients + 10)}", text
    )
    data.config.write_text(text)
    user = "demo@example.test"
    return ServerProcess(data).start(), user, data.passwords[user]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--mode", choices=MODES, default="plain")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=COMMAND_TIMEOUT, help="seconds per command")
    parser.add_argument("--history", type=int, default=HISTORY_LINES, help="lines shown per finding")
    parser.add_argument("--tls", action="store_true", help="implicit TLS (imaps) instead of plaintext")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, help="an existing server's port (default: start one)")
    parser.add_argument("--user", default="demo@example.test")
    parser.add_argument("--password", default="")
    parser.add_argument("--cafile", help="with --tls and --port: the CA to verify the server with")
    args = parser.parse_args()
    root: Path | None = None
    server: ServerProcess | None = None
    context: ssl.SSLContext | None = None
    try:
        if args.port is None:
            root = Path(tempfile.mkdtemp(prefix="postoffice-sync-stress-"))
            server, user, password = start_server(root, args.clients)
            port = server.port("imaps" if args.tls else "imap")
            if args.tls:
                context = ssl.create_default_context(cafile=str(server.data.root / "tls" / "cert.pem"))
                context.check_hostname = False  # the certificate names localhost; we connect to 127.0.0.1
        else:
            user, password, port = args.user, args.password, args.port
            if args.tls:
                context = ssl.create_default_context(cafile=args.cafile)
        assert server is None or server.proc is not None
        server_cpu0 = process_cpu_seconds(server.proc.pid) if server is not None and server.proc else 0.0
        result = asyncio.run(
            run_stress(
                args.host,
                port,
                user,
                password,
                clients=args.clients,
                seconds=args.seconds,
                mode=args.mode,
                seed=args.seed,
                tls_context=context,
                command_timeout=args.timeout,
                history_lines=args.history,
            )
        )
        print(result.report())
        if server is not None and server.proc is not None:
            server_cpu = process_cpu_seconds(server.proc.pid) - server_cpu0
            per_command = server_cpu * 1e6 / max(1, result.total_commands)
            print(
                f"server CPU: {server_cpu:.1f} s ({per_command:.0f} us per command, the preparation included)"
            )
    finally:
        if server is not None:
            print(f"server exit: {server.stop()}")
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
    sys.exit(1 if result.violations.count else 0)


if __name__ == "__main__":
    main()
