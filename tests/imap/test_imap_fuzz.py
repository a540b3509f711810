"""Random bytes at a live session: every answer is a protocol line, the session ends cleanly, and the log has
no traceback."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.imap.conftest import ImapServer, Raw

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
CHUNKS = st.lists(st.one_of(st.binary(max_size=40), COMMANDS), max_size=12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunks=CHUNKS)
def test_random_input_gets_protocol_answers_and_no_traceback(
    imap_server: ImapServer, chunks: list[bytes]
) -> None:
    raw = Raw(imap_server)
    raw.login()
    raw.sock.settimeout(5)
    raw.send(b"\r\n".join(chunks) + b"\r\nzz9 LOGOUT\r\n")
    received = raw.buf
    try:
        while True:
            chunk = raw.sock.recv(65536)
            if not chunk:
                break
            received += chunk
    except (TimeoutError, OSError):
        pass  # the input may leave the session waiting (literal, IDLE, SASL); that is not an error
    raw.close()
    for line in received.split(b"\r\n"):
        assert not line.startswith(b"Traceback")
    assert imap_server.failures() == []
