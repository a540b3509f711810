"""A client of rspamd's HTTP protocol (the `/checkv2` request of its normal worker): the message and what the
SMTP session knew of it in, the score, the action rspamd would take and the symbols it found out.

Implementation notes
- One connection per request (rspamd answers and closes; a local worker costs a few hundred microseconds to
  connect to), HTTP/1.1 with `Connection: close`, the message sent from the spool in chunks: memory does not
  grow with the message.
- The request's headers are rspamd's protocol fields: IP, Helo, From (the envelope sender; "<>" for the null
  one), one Rcpt per recipient, Queue-Id, User (an authenticated submitter), Hostname (ours).
- The answer is read up to MAX_ANSWER octets and must be JSON with a numeric `score`; anything else, a
  status other than 200, a closed connection or the deadline passing is `RspamdError` (the caller decides
  what a failure means: `[spam] on_failure`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO
from urllib.parse import urlsplit

#: Octets of rspamd's answer read at most.
MAX_ANSWER = 1024 * 1024
#: Octets of the message sent per write.
CHUNK = 64 * 1024


class RspamdError(Exception):
    """rspamd could not be asked, or did not answer as its protocol says."""


@dataclass(frozen=True)
class Verdict:
    """rspamd's answer: its score, the score its own config requires, the action it would take ("reject",
    "add header", "greylist", "no action", ...), and the symbols it found with their scores."""

    score: float
    required: float
    action: str
    symbols: dict[str, float]


@dataclass(frozen=True)
class ScanRequest:
    client_ip: str | None
    helo: str | None
    sender: str
    recipients: Sequence[str]
    queue_id: str | None = None
    user: str | None = None
    hostname: str | None = None


class RspamdClient:
    """Scans messages at one rspamd normal worker (`url`: http://host:port)."""

    def __init__(self, url: str, *, timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"an rspamd address is http://host:port, not {url!r}")
        self.host = parts.hostname
        self.port = parts.port or 11333
        self.path = (parts.path.rstrip("/") or "") + "/checkv2"
        self.timeout = timeout

    async def check(self, source: IO[bytes], size: int, request: ScanRequest) -> Verdict:
        """rspamd's verdict on the first `size` octets of `source`; RspamdError when there is none."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self._check(source, size, request)
        except TimeoutError:
            raise RspamdError(f"no answer within {self.timeout:g} s") from None
        except OSError as exc:
            raise RspamdError(str(exc) or type(exc).__name__) from None

    async def _check(self, source: IO[bytes], size: int, request: ScanRequest) -> Verdict:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            head = [
                f"POST {self.path} HTTP/1.1",
                f"Host: {self.host}",
                "Connection: close",
                f"Content-Length: {size}",
                f"From: {request.sender or '<>'}",
            ]
            head += [f"Rcpt: {rcpt}" for rcpt in request.recipients]
            optional = {
                "IP": request.client_ip,
                "Helo": request.helo,
                "Queue-Id": request.queue_id,
                "User": request.user,
                "Hostname": request.hostname,
            }
            head += [f"{name}: {value}" for name, value in optional.items() if value]
            if any("\r" in line or "\n" in line for line in head):
                raise RspamdError("a request field holds a line break")
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("utf-8", "surrogateescape"))
            source.seek(0)
            left = size
            while left > 0:
                chunk = source.read(min(CHUNK, left))
                if not chunk:
                    break
                writer.write(chunk)
                left -= len(chunk)
                await writer.drain()
            await writer.drain()
            status = await reader.readline()
            if not status.startswith(b"HTTP/1.") or status.split(b" ", 2)[1:2] != [b"200"]:
                raise RspamdError(f"rspamd answered {status[:80]!r}")
            length, chunked = None, False
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                key, value = name.strip().lower(), value.strip()
                if key == "content-length" and value.isdigit():
                    length = int(value)
                elif key == "transfer-encoding" and "chunked" in value.lower():
                    chunked = True
            if chunked:
                body = await _chunked(reader)
            elif length is not None:
                if length > MAX_ANSWER:
                    raise RspamdError("rspamd's answer is too large")
                body = await reader.readexactly(length)
            else:  # RFC 9112 section 6.3: without a length, the answer ends where the connection does
                body = await _to_the_end(reader)
        except asyncio.IncompleteReadError:
            raise RspamdError("rspamd closed the connection mid-answer") from None
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        return _verdict(body)


async def _to_the_end(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while chunk := await reader.read(65536):
        body += chunk
        if len(body) > MAX_ANSWER:
            raise RspamdError("rspamd's answer is too large")
    return bytes(body)


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    """An answer in the chunked transfer coding (RFC 9112 section 7.1), its trailer fields skipped."""
    body = bytearray()
    while True:
        size_line = await reader.readline()
        size_text = size_line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise RspamdError("a malformed chunk in rspamd's answer") from None
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            return bytes(body)
        if len(body) + size > MAX_ANSWER:
            raise RspamdError("rspamd's answer is too large")
        body += await reader.readexactly(size)
        await reader.readline()  # the chunk's CRLF


def _verdict(body: bytes) -> Verdict:
    try:
        answer = json.loads(body)
        score = float(answer["score"])
        required = float(answer.get("required_score", 0.0))
        action = str(answer.get("action", ""))
        symbols = {
            str(name): float(value.get("score", 0.0)) if isinstance(value, dict) else 0.0
            for name, value in (answer.get("symbols") or {}).items()
        }
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise RspamdError(f"rspamd's answer is not what its protocol says: {exc}") from None
    return Verdict(score, required, action, symbols)
