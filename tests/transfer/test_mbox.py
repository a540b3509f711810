"""Reading mbox files (`postoffice.transfer.mbox.read_mbox`): what mboxrd writes comes back byte for byte
(with CRLF line ends), the flags an mbox carries (Status, X-Status, X-Mozilla-Status) become flags and leave
the message, the "From " line's date is the internal date, oversized messages are skipped whole; and no
input makes it fail (property tests)."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.transfer.mbox import MboxMessage, MboxrdWriter, read_mbox


def written(messages: list[bytes]) -> bytes:
    out = io.BytesIO()
    for n, message in enumerate(messages):
        out.write(f"From sender{n}@example.test Thu Jan  1 00:00:0{n % 10} 2026\n".encode())
        writer = MboxrdWriter(out)
        writer.feed(message)
        writer.finish()
        out.write(b"\n")
    return out.getvalue()


def read(data: bytes, max_message: int = 1 << 20) -> list[MboxMessage | int]:
    return list(read_mbox(io.BytesIO(data), max_message))


def test_what_mboxrd_writes_comes_back_with_its_from_lines_unquoted() -> None:
    messages = [
        b"Subject: one\r\n\r\nFrom the start\r\n>From quoted once\r\n>>From twice\r\nend\r\n",
        b"Subject: two\r\n\r\nline\r\n\r\nFrom after a blank line\r\n",
        b"Subject: three\r\n\r\nno final newline",
    ]
    back = read(written(messages))
    assert [m.data for m in back if isinstance(m, MboxMessage)] == [
        messages[0],
        messages[1],
        messages[2] + b"\r\n",
    ]
    first = back[0]
    assert isinstance(first, MboxMessage)
    assert first.internaldate == 1767225600.0  # Thu Jan  1 00:00:00 2026 UTC
    assert first.flags == []


def test_flags_from_status_x_status_and_mozilla_fields_which_are_removed() -> None:
    mbox = (
        b"From a@b.test Mon Feb  2 10:00:00 2026\n"
        b"Subject: flagged\nStatus: RO\nX-Status: AF\n\nbody\n\n"
        b"From a@b.test Mon Feb  2 10:00:00 2026\n"
        b"Subject: thunderbird\nX-Mozilla-Status: 0005\nX-Mozilla-Status2: 00000000\n\nbody\n\n"
        b"From a@b.test Mon Feb  2 10:00:00 2026\n"
        b"Subject: draft\nX-Status: TD\nStatus:\n  O\n\nStatus: R in the body stays\n"
    )
    first, second, third = read(mbox)
    assert isinstance(first, MboxMessage)
    assert isinstance(second, MboxMessage)
    assert isinstance(third, MboxMessage)
    assert first.flags == ["\\Answered", "\\Flagged", "\\Seen"]
    assert first.data == b"Subject: flagged\r\n\r\nbody\r\n"
    assert second.flags == ["\\Flagged", "\\Seen"]
    assert second.data == b"Subject: thunderbird\r\n\r\nbody\r\n"
    assert third.flags == ["\\Deleted", "\\Draft"]
    assert third.data == b"Subject: draft\r\n\r\nStatus: R in the body stays\r\n"


def test_an_oversized_message_is_skipped_whole_and_counted_by_its_size() -> None:
    big = b"Subject: big\r\n\r\n" + b"x" * 5000 + b"\r\n"
    small = b"Subject: small\r\n\r\nok\r\n"
    out = read(written([big, small]), max_message=4096)
    assert isinstance(out[0], int)
    assert out[0] > 4096
    assert isinstance(out[1], MboxMessage)
    assert out[1].data == small


def test_text_before_the_first_from_line_is_not_a_message() -> None:
    assert read(b"garbage\nmore\n") == []
    assert read(b"") == []


_LINES = st.lists(
    st.one_of(
        st.sampled_from([b"From x", b">From y", b">>From z", b"", b"Subject: s", b"From ", b">"]),
        st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b"")),
    ),
    max_size=20,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_LINES, min_size=1, max_size=5))
def test_any_message_text_round_trips(bodies: list[list[bytes]]) -> None:
    messages = [b"Subject: m\r\n\r\n" + b"".join(line + b"\r\n" for line in body) for body in bodies]
    back = read(written(messages))
    assert [m.data for m in back if isinstance(m, MboxMessage)] == messages


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_are_read_without_error(data: bytes) -> None:
    for item in read_mbox(io.BytesIO(data), 500):
        assert isinstance(item, int | MboxMessage)
