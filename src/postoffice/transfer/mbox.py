"""Mail moved in and out as files: mbox (mboxrd, as `postoffice export` and the settings page write it; mboxo,
mboxrd and Thunderbird's mboxes read) and Maildir, one message at a time (no mailbox is held in memory).

Implementation notes
- Writing (RFC 4155 "mboxrd"): a "From SENDER DATE" line, the message with every line matching ^>*From
  quoted by one more ">", a blank line. SENDER is Return-Path, else From, else MAILER-DAEMON.
- Reading: a message starts at a line "From " at the start of the file or after a blank line; ">From",
  ">>From"... lose one ">" (mboxrd; in mboxo only ">From" was quoted, which the same rule undoes except for
  a body line that was ">From " before, an ambiguity of the mboxo format itself). Line ends become CRLF (RFC
  5322). The flags an mbox carries come from its Status (R: \\Seen), X-Status (A: \\Answered, F: \\Flagged,
  T: \\Draft, D: \\Deleted) and X-Mozilla-Status (Thunderbird: 0x1 read, 0x2 replied, 0x4 flagged, 0x8
  deleted) fields, which are removed from the stored message as Dovecot does; the date of the "From " line
  is the internal date.
- Maildir: file names "TIME.UID_UIDVALIDITY.postoffice:2,FLAGS" (info letters in ASCII order), written to
  tmp/ and renamed into cur/.
"""

from __future__ import annotations

import calendar
import os
import re
import time
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from postoffice.store import MailboxInfo, MailStore, MessageInfo

#: IMAP system flag -> Maildir info letter; written in ASCII order of the letters (D F R S T).
MAILDIR_FLAGS = {"\\draft": "D", "\\flagged": "F", "\\answered": "R", "\\seen": "S", "\\deleted": "T"}

_FROM_LINE = re.compile(rb"^>*From ", re.MULTILINE)


def maildir_info(flags: frozenset[str]) -> str:
    """The Maildir info letters for the system flags; keywords have no letter and are left out."""
    return "".join(sorted({MAILDIR_FLAGS[f.lower()] for f in flags if f.lower() in MAILDIR_FLAGS}))


def maildir_filename(message: MessageInfo, uidvalidity: int) -> str:
    return (
        f"{int(message.internaldate)}.{message.uid}_{uidvalidity}.postoffice:2,{maildir_info(message.flags)}"
    )


def mailbox_path_parts(name: str) -> list[str]:
    """A mailbox's name as path components: hierarchy levels become directories; none may climb out."""
    return [
        "_" * max(len(part), 1) if part in ("", ".", "..") else part
        for part in name.replace("\0", "_").split("/")
    ]


def mailbox_directory(root: Path, name: str) -> Path:
    """The export directory of a mailbox (`mailbox_path_parts` below `root`)."""
    return root.joinpath(*mailbox_path_parts(name))


def envelope_sender(head: bytes) -> str:
    """The sender for an mbox "From " line: Return-Path, else the From address, else MAILER-DAEMON."""
    import email.parser
    import email.policy
    import email.utils

    headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(head)
    for name in ("Return-Path", "From"):
        value = headers.get(name)
        if value is None:
            continue
        address = email.utils.parseaddr(str(value))[1]
        if address and "@" in address and not re.search(r"[\s\x00-\x1f\x7f]", address):
            return address
    return "MAILER-DAEMON"


class MboxrdWriter:
    """Writes one message body with mboxrd quoting: every line matching ^>*From gets one more '>' (so a
    reader removes exactly one and gets the original back). Streams: memory use is bounded by the chunk size,
    except for a line made only of '>' characters."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.tail = b""  # the incomplete last line, from its start
        self.midline = False  # the current line started in an earlier chunk and was written already
        self.last_byte = b""

    def _write(self, data: bytes) -> None:
        if data:
            self.out.write(data)
            self.last_byte = data[-1:]

    def feed(self, chunk: bytes) -> None:
        data = self.tail + chunk
        self.tail = b""
        start = 0
        if self.midline:
            newline = data.find(b"\n")
            if newline < 0:
                self._write(data)
                return
            self._write(data[: newline + 1])
            start = newline + 1
            self.midline = False
        last = data.rfind(b"\n", start)
        if last >= 0:
            self._write(_FROM_LINE.sub(rb">\g<0>", data[start : last + 1]))
            start = last + 1
        rest = data[start:]
        if len(rest.lstrip(b">")) >= len(b"From "):  # enough of the line to decide whether to quote it
            self._write((b">" if _FROM_LINE.match(rest) else b"") + rest)
            self.midline = True
        else:
            self.tail = rest

    def finish(self) -> None:
        self._write(self.tail)
        self.tail = b""
        if self.last_byte != b"\n":
            self._write(b"\n")  # mbox needs a line end before the separating blank line


async def _content_chunks(store: MailStore, content_id: int) -> AsyncGenerator[bytes, None]:
    async for chunk in store.open_content(content_id):
        yield chunk


async def write_mbox_message(store: MailStore, message: MessageInfo, out: IO[bytes]) -> None:
    chunks = _content_chunks(store, message.content_id)
    try:
        # Read just enough for the headers, to find the sender for the "From " line.
        pending: list[bytes] = []
        head = b""
        async for chunk in chunks:
            pending.append(chunk)
            head += chunk
            if b"\n\n" in head or b"\r\n\r\n" in head or len(head) >= 65536:
                break
        sender = envelope_sender(head.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0])
        date = time.asctime(time.gmtime(message.internaldate))
        out.write(f"From {sender} {date}\n".encode())
        writer = MboxrdWriter(out)
        for chunk in pending:
            writer.feed(chunk)
        async for chunk in chunks:
            writer.feed(chunk)
        writer.finish()
        out.write(b"\n")
    finally:
        await chunks.aclose()


async def write_maildir_message(
    store: MailStore, message: MessageInfo, mailbox: MailboxInfo, folder: Path
) -> None:
    name = maildir_filename(message, mailbox.uidvalidity)
    tmp = folder / "tmp" / name.split(":", 1)[0]
    # `postoffice export` runs its own loop for this one job: a blocking write holds up no client
    with open(tmp, "wb") as f:  # noqa: ASYNC230
        async for chunk in store.open_content(message.content_id):
            f.write(chunk)
    final = folder / "cur" / name
    os.replace(tmp, final)  # Maildir delivery: write in tmp/, then rename into place
    os.utime(final, (message.internaldate, message.internaldate))


# -- reading ------------------------------------------------------------------------------------------------

#: Bytes of one message read from an mbox at most (larger ones are skipped and counted).
MAX_MESSAGE = 64 * 1024 * 1024
_QUOTED_FROM = re.compile(rb"^>(>*From )")
_MOZILLA_BITS = ((1, "\\Seen"), (2, "\\Answered"), (4, "\\Flagged"), (8, "\\Deleted"))
_STATE_FIELDS = (b"status:", b"x-status:", b"x-mozilla-status:", b"x-mozilla-status2:")


@dataclass
class MboxMessage:
    data: bytes  # with CRLF line ends, without the mbox state fields
    flags: list[str] = field(default_factory=list)
    internaldate: float | None = None


def _from_line_date(line: bytes) -> float | None:
    """The asctime date at the end of a "From SENDER DATE" line (UTC), if it has one."""
    parts = line.decode("latin-1").split()
    for width in (5, 6):  # "Thu Jan  1 00:00:00 1970" (and a trailing zone some writers add)
        if len(parts) >= 2 + width - 1:
            text = " ".join(parts[2 : 2 + 5])
            try:
                return float(calendar.timegm(time.strptime(text, "%a %b %d %H:%M:%S %Y")))
            except ValueError:
                continue
    return None


def _flags_and_header(lines: list[bytes]) -> tuple[list[str], list[bytes]]:
    """The flags of the mbox state fields of a message's header, and the message without those fields."""
    flags: set[str] = set()
    out: list[bytes] = []
    in_header, skipping = True, False
    for line in lines:
        if in_header:
            if line in (b"\r\n", b"\n"):
                in_header = False
            elif skipping and line[:1] in (b" ", b"\t"):
                continue
            else:
                skipping = False
                lower = line.lower()
                if lower.startswith(_STATE_FIELDS):
                    skipping = True
                    name, _, value = lower.partition(b":")
                    letters = value.strip().upper()
                    if name == b"status" and b"R" in letters:
                        flags.add("\\Seen")
                    elif name == b"x-status":
                        for letter, flag in (
                            (b"A", "\\Answered"),
                            (b"F", "\\Flagged"),
                            (b"T", "\\Draft"),
                            (b"D", "\\Deleted"),
                        ):
                            if letter in letters:
                                flags.add(flag)
                    elif name == b"x-mozilla-status":
                        try:
                            bits = int(value.strip()[:8], 16)
                        except ValueError:
                            bits = 0
                        for bit, flag in (
                            (1, "\\Seen"),
                            (2, "\\Answered"),
                            (4, "\\Flagged"),
                            (8, "\\Deleted"),
                        ):
                            if bits & bit:
                                flags.add(flag)
                    continue
        out.append(line)
    return sorted(flags), out


def read_mbox(fp: IO[bytes], max_message: int = MAX_MESSAGE) -> Iterator[MboxMessage | int]:
    """The messages of an mbox, in order; for a message over `max_message` bytes, its size instead (the
    caller counts it as skipped). Reads line by line: memory is one message."""
    lines: list[bytes] = []
    size = 0
    too_big = False
    from_line = b""
    previous_blank = True

    def finish() -> MboxMessage | int | None:
        if not from_line:
            return None
        if too_big:
            return size
        body = lines[:-1] if lines and lines[-1] in (b"\n", b"\r\n") else lines  # the separating blank line
        flags, kept = _flags_and_header(body)
        data = b"".join(line.rstrip(b"\r\n") + b"\r\n" for line in kept)
        return MboxMessage(data, flags, _from_line_date(from_line))

    for line in fp:
        if line.startswith(b"From ") and previous_blank:
            done = finish()
            if done is not None:
                yield done
            from_line, lines, size, too_big = line, [], 0, False
            previous_blank = False
            continue
        previous_blank = line in (b"\n", b"\r\n")
        if not from_line:
            continue  # text before the first "From " line is not a message
        size += len(line)
        if size > max_message:
            too_big = True
            lines = []
            continue
        if not too_big:
            lines.append(_QUOTED_FROM.sub(rb"\1", line))
    done = finish()
    if done is not None:
        yield done
