"""The IMAP core without I/O (postoffice.imap.protocol, docs/decisions/0038): whole sessions from transcripts,
byte for byte; exchanges that span several client lines (AUTHENTICATE, IDLE) as states of the core; output
that does not depend on how the input was split; a failing connection is not a command's failure; and the
import boundaries that make it a core."""

from __future__ import annotations

import ast
import base64
import itertools
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import postoffice.imap
from postoffice.imap.protocol import ImapProtocol, Need
from postoffice.imap.state import FLUSH_THRESHOLD
from tests.imap.conftest import DEMO, OTHER, PASSWORD, message
from tests.imap.transcript import ImapHarness, MemoryTransport, drive

IMAP = Path(postoffice.imap.__file__).parent
LOGIN = f'a LOGIN {DEMO} "{PASSWORD}"\r\n'.encode()


def _greeting(core: ImapProtocol) -> str:
    return f"* OK [CAPABILITY {core.capabilities()}] Postoffice ready\r\n"


def test_a_session_from_a_transcript_byte_for_byte(imap: ImapHarness) -> None:
    imap.deliver(DEMO, message("one"), flags=("\\Seen",))
    imap.deliver(DEMO, message("two"))
    info = imap.call(imap.store.get_mailbox(imap.account_ids[DEMO], "INBOX"))
    assert info is not None
    core = imap.core()
    greeting = _greeting(core)
    commands = b"b SELECT INBOX\r\nc FETCH 1:2 (UID FLAGS)\r\nd UID SEARCH UNSEEN\r\n"
    out = imap.run(core, LOGIN + commands + b"e STORE 2 +FLAGS (\\Flagged)\r\n")
    after_login = core.capabilities()
    assert out.decode() == (
        greeting + f"a OK [CAPABILITY {after_login}] Logged in\r\n"
        "* FLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft)\r\n"
        "* OK [PERMANENTFLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft \\*)] Flags permitted\r\n"
        "* 2 EXISTS\r\n"
        "* 2 RECENT\r\n"
        "* OK [UNSEEN 2] First unseen message\r\n"
        f"* OK [UIDVALIDITY {info.uidvalidity}] UIDs valid\r\n"
        "* OK [UIDNEXT 3] Predicted next UID\r\n"
        f"* OK [MAILBOXID (M{info.uidvalidity})] Ok\r\n"
        "* OK [URLMECH INTERNAL] URLAUTH mechanisms\r\n"
        "b OK [READ-WRITE] SELECT completed\r\n"
        "* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent))\r\n"
        "* 2 FETCH (UID 2 FLAGS (\\Recent))\r\n"
        "c OK FETCH completed\r\n"
        "* SEARCH 2\r\n"
        "d OK UID SEARCH completed\r\n"
        "* 2 FETCH (FLAGS (\\Flagged \\Recent))\r\n"
        "e OK STORE completed\r\n"
    )
    assert imap.run(core, b"f LOGOUT\r\n") == b"* BYE Logging out\r\nf OK LOGOUT completed\r\n"
    assert imap.call(drive(core)) is Need.CLOSE
    transport = core.transport
    assert isinstance(transport, MemoryTransport)
    assert transport.logged_in


def test_authenticate_waits_for_each_response_without_reading(imap: ImapHarness) -> None:
    """AUTHENTICATE LOGIN takes three client lines: between them the core asks for input (it never reads)
    and answers each line as it comes, whatever else the client pipelined after it."""
    core = imap.core()
    assert imap.run(core).decode() == _greeting(core)
    assert imap.run(core, b"a AUTHENTICATE LOGIN\r\n") == b"+ VXNlcm5hbWU6\r\n"  # "Username:"
    assert core.exchange == "AUTHENTICATE"
    assert imap.run(core, base64.b64encode(DEMO.encode()) + b"\r\n") == b"+ UGFzc3dvcmQ6\r\n"
    out = imap.run(core, base64.b64encode(PASSWORD.encode()) + b"\r\nb NOOP\r\n").decode()
    assert out == f"a OK [CAPABILITY {core.capabilities()}] Logged in\r\nb OK NOOP completed\r\n"
    assert core.exchange is None
    # cancelled half way: BAD, and the next line is a command again
    other = imap.core()
    imap.run(other)
    assert imap.run(other, b"c AUTHENTICATE PLAIN\r\n") == b"+ \r\n"
    assert imap.run(other, b"*\r\nd NOOP\r\n") == b"c BAD Authentication cancelled\r\nd OK NOOP completed\r\n"


def test_idle_is_woken_by_a_change_and_reports_it_until_done(imap: ImapHarness) -> None:
    imap.deliver(DEMO, message("one"))
    wakes: list[int] = []
    transport = MemoryTransport()
    core = ImapProtocol(
        imap.store, imap.authenticator, imap.settings, transport, wake=lambda: wakes.append(1)
    )
    imap.cores.append(core)
    imap.call(drive(core, LOGIN + b"b SELECT INBOX\r\n"))
    transport.take()
    assert imap.call(drive(core, b"c IDLE\r\n")) is Need.IDLE
    assert transport.take() == b"+ idling\r\n"
    assert imap.call(drive(core)) is Need.IDLE
    assert transport.take() == b""
    writer = imap.connect()
    writer.login(OTHER)  # another account's change wakes nobody here
    writer.command("o", "APPEND INBOX {5+}\r\nhello")
    assert wakes == []
    imap.deliver(DEMO, message("two"))
    assert wakes == [1]
    assert imap.call(drive(core)) is Need.IDLE  # what the glue does when woken
    assert transport.take() == b"* 2 EXISTS\r\n* 2 RECENT\r\n"  # both are \\Recent in this session
    assert imap.call(drive(core, b"DONE\r\nd NOOP\r\n")) is Need.INPUT
    assert transport.take() == b"c OK IDLE terminated\r\nd OK NOOP completed\r\n"


SCRIPT = (
    LOGIN
    + b"b EXAMINE INBOX\r\n"
    + b'c LIST "" "*"\r\n'
    + b"d FETCH 1:* (UID FLAGS ENVELOPE BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n"
    + b"e SEARCH RETURN (MIN COUNT) SUBJECT two\r\n"
    + b"f STATUS Sent (MESSAGES UIDNEXT)\r\n"
    + b"g LOGIN {4}\r\nuser {4}\r\npass\r\n"  # "+" for each literal, though LOGIN is BAD here
    + b"h SEARCH CHARSET UTF-8 SUBJECT {3+}\r\ntwo\r\n"
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(min_value=1, max_value=len(SCRIPT) - 1), max_size=8))
def test_the_transcript_does_not_depend_on_how_the_input_is_split(imap: ImapHarness, cuts: list[int]) -> None:
    if not imap.call(imap.store.list_messages(imap.mailbox_id(DEMO, "INBOX"))):
        imap.deliver(DEMO, message("one"))
        imap.deliver(DEMO, message("two"))
    whole = imap.run(imap.core(), SCRIPT)
    assert whole.endswith(b"* SEARCH 2\r\nh OK SEARCH completed\r\n")
    assert b'* ESEARCH (TAG "e") MIN 2 COUNT 1\r\n' in whole
    assert b"+ Ready for literal data\r\n" in whole
    core = imap.core()
    out = b""
    bounds = [0, *sorted(set(cuts)), len(SCRIPT)]
    for start, end in itertools.pairwise(bounds):
        out += imap.run(core, SCRIPT[start:end])
    assert out == whole


class _BrokenTransport(MemoryTransport):
    async def write(self, data: bytes) -> None:
        raise ConnectionResetError("the client went away")


def test_a_connection_that_fails_in_the_middle_of_a_command_ends_the_session(imap: ImapHarness) -> None:
    """A write that fails while a FETCH is being answered is the connection's end, for the glue to handle;
    it is not the command's failure (no NO [SERVERBUG], nothing logged as an error)."""
    big = message("big", "x" * 76 + "\r\n") + b"y" * (FLUSH_THRESHOLD + 1000) + b"\r\n"
    imap.deliver(DEMO, big)
    core = ImapProtocol(imap.store, imap.authenticator, imap.settings, _BrokenTransport())
    imap.cores.append(core)
    assert imap.call(core.process()) is Need.INPUT
    core.receive_data(LOGIN + b"b SELECT INBOX\r\nc FETCH 1 BODY.PEEK[]\r\n")
    with pytest.raises(ConnectionResetError):
        imap.call(core.process())
    assert imap.failures() == []


def _imports(module: Path) -> set[str]:
    """The modules a source file imports (any level: function bodies and TYPE_CHECKING blocks too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_the_core_imports_neither_the_listener_nor_a_store_backend() -> None:
    """docs/decisions/0038: the core, the session state and the commands know no socket, no asyncio listener
    and no store backend; the commands see the session through `imap.state` only (no import cycle)."""
    outside = ("postoffice.net", "postoffice.store.sqlite")
    code = (
        f"import sys, postoffice.imap.protocol; print(*(m for m in sys.modules if m.startswith({outside})))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == ""
    for name in ("state.py", "commands_mailbox.py", "commands_message.py", "mailbox_view.py", "search.py"):
        imported = _imports(IMAP / name)
        assert not {
            m for m in imported if m.startswith(("postoffice.imap.session", "postoffice.imap.protocol"))
        }
        assert not {m for m in imported if m.startswith(("postoffice.net", "postoffice.store.sqlite"))}
    assert "asyncio" not in _imports(IMAP / "state.py") | _imports(IMAP / "protocol.py")
