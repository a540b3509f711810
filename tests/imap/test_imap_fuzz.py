"""Random bytes at a session (through the core, tests/imap/transcript.py): every answer is a protocol line,
the session ends cleanly or waits for more input, and the log has no traceback."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.imap.transcript import ImapHarness

COMMANDS = st.sampled_from(
    [
        b"a NOOP",
        b"b LOGIN x y",
        b"c SELECT INBOX",
        b"d FETCH 1:* (FLAGS)",
        b"e {5}",
        b"f APPEND INBOX {3+}",
        b"g IDLE",
        b"DONE",
        b"h UID STORE 1 +FLAGS (\\Seen)",
        b"* BAD",
        b'i LIST "" *',
        b"j AUTHENTICATE PLAIN",
    ]
)
#: A tagged reply (RFC 9051 section 9: `tag` is ASTRING-CHAR but "+"; no input here has 8-bit octets in one).
TAGGED = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\+]+ (OK|NO|BAD) .*')
CHUNKS = st.lists(st.one_of(st.binary(max_size=40), COMMANDS), max_size=12)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunks=CHUNKS)
def test_random_input_gets_protocol_answers_and_no_traceback(imap: ImapHarness, chunks: list[bytes]) -> None:
    raw = imap.connect()
    raw.login()
    # the input may leave the session waiting (literal, IDLE, SASL); that is not an error
    raw.send(b"\r\n".join(chunks) + b"\r\nzz9 LOGOUT\r\n")
    for line in raw.buf.split(b"\r\n"):
        assert not line.startswith(b"Traceback")
        assert line[:2] in (b"* ", b"+ ", b"") or TAGGED.fullmatch(line), line
    raw.close()
    assert imap.failures() == []
