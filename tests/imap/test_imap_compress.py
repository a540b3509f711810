"""COMPRESS=DEFLATE (RFC 4978) over a real socket: after the tagged OK (sent uncompressed) both directions
are raw DEFLATE, responses flushed whole; a second COMPRESS and an unknown mechanism are NO; a client's data
that expands enormously is read in bounded pieces (a command line too long is refused as ever, and the
connection stays usable)."""

from __future__ import annotations

import socket
import ssl
import zlib

from tests.imap.conftest import DEMO, ImapServer, Raw, message


class Deflating:
    """A socket seen through raw DEFLATE both ways, as a COMPRESS client sees it."""

    def __init__(self, sock: socket.socket | ssl.SSLSocket) -> None:
        self.sock = sock
        self.deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
        self.inflate = zlib.decompressobj(-15)

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH))

    def recv(self, size: int) -> bytes:
        while True:
            data = self.sock.recv(size)
            if not data:
                return b""
            out = self.inflate.decompress(data)
            if out:
                return out

    def close(self) -> None:
        self.sock.close()


def _compressed(imap_server: ImapServer) -> Raw:
    raw = Raw(imap_server)
    assert "COMPRESS=DEFLATE" in raw.command("c", "CAPABILITY")[0].split()
    assert raw.command("z0", "COMPRESS DEFLATE")[-1].startswith("z0 BAD")  # not before login
    raw.login()
    assert raw.command("z", "COMPRESS DEFLATE") == ["z OK DEFLATE active"]
    raw.sock = Deflating(raw.sock)  # type: ignore[assignment]
    return raw


def test_after_compress_deflate_everything_is_compressed_both_ways(imap_server: ImapServer) -> None:
    body = "All work and no play makes Jack a dull boy.\r\n" * 400
    imap_server.deliver(DEMO, message("big", body))
    raw = _compressed(imap_server)
    assert raw.command("s", "SELECT INBOX")[-1].startswith("s OK")
    fetched = raw.command("f", "FETCH 1 (BODY.PEEK[TEXT])")
    assert fetched[-1] == "f OK FETCH completed"
    assert fetched[1] == body
    assert raw.command("z2", "COMPRESS DEFLATE")[-1].startswith("z2 NO [COMPRESSIONACTIVE]")
    assert raw.command("n", "NOOP") == ["n OK NOOP completed"]
    raw.close()


def test_an_unknown_mechanism_is_no_and_nothing_changes(imap_server: ImapServer) -> None:
    raw = Raw(imap_server)
    raw.login()
    assert raw.command("z", "COMPRESS LZMA")[-1].startswith("z NO [CANNOT]")
    assert raw.command("n", "NOOP") == ["n OK NOOP completed"]  # still plain
    raw.close()


def test_a_bomb_of_compressed_input_is_read_in_bounded_pieces(imap_server: ImapServer) -> None:
    """A few KiB that expand to 30 MB, one line: the line limit refuses it as it would uncompressed."""
    raw = _compressed(imap_server)
    raw.send(b"a NOOP " + b"x" * 30_000_000 + b"\r\n")
    reply = raw.until_tagged("a")
    assert reply[-1].startswith("a BAD")
    assert raw.command("n", "NOOP") == ["n OK NOOP completed"]
    raw.close()
