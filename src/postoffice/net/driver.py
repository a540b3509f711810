"""The connection loop of the line-oriented protocols (SMTP, POP3, POP2): one place that moves bytes between a
`Connection` and a `LineProtocol` core, so that deadlines, shutdown, eviction and the STARTTLS upgrade behave
the same in every one of them.

Implementation notes
- The loop (`LineSession.drive`): take the core's events one by one and hand each to the session's `handle`;
  when the core needs input, write what it queued, then read with the session's deadline
  (`read_timeout`: seconds per command, and whether the wait is idle, i.e. between transactions) and feed
  it. Queued output is also written once it reaches `flush_threshold` (long multi-line replies such as POP3
  RETR), so memory does not grow with a message. Replies to pipelined commands (RFC 2920, RFC 2449) go out
  in one write, when the core has answered all that arrived.
- STARTTLS (RFC 3207 section 4.2, RFC 2595 section 4): for the core's upgrade event (`lineproto.TlsUpgrade`)
  the loop writes the core's "go ahead" reply, upgrades the connection (`Connection.start_tls` drops what the
  stream reader buffered; the core has dropped what it was fed: CVE-2011-0411), lets the session forget what
  it knew (`tls_started`) and tells the core. A failed handshake ends the session (ConnectionClosedError).
- How a session ends from our side (`Ending`), each with the protocol's own goodbye (`goodbye`: the session
  logs and calls the core's close(); the loop writes the result, ignoring a peer that is gone):
  SHUTDOWN     the server is stopping and the session was idle (`ShutdownRequested`; a command or a
               transaction in progress finishes first, net.listener)
  EVICTED      a pre-login connection closed to make room for a new one (docs/decisions/0028)
  LOGIN_TIMEOUT  no login within `[limits] login_timeout` (0028)
  TIMEOUT      the command's deadline passed (RFC 5321 section 4.5.3.2; POP3/POP2 autologout)
  A peer that closes or resets is fed to the core as b"" (it then emits its ConnectionClosed); after
  `connection_lost` (a hook for a log line). The loop returns once the core is closed and its last output
  is written (a write error then is ignored: the session is over either way).
- Errors: ConnectionClosedError from a write or a handler ends the loop (it propagates). Any other exception
  from `handle` goes to `internal_error`, the session's one place that maps it to a protocol reply (SMTP:
  451/421); by default it propagates, and the listener logs it and closes the connection.
- Cost: per read one `read_timeout` call; per event one `handle` call and one size check. Nothing per line:
  the core hands message data over in large chunks.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar, Generic, TypeVar

from postoffice.net.lineproto import LineProtocol, TlsUpgrade
from postoffice.net.listener import (
    Connection,
    ConnectionClosedError,
    Evicted,
    LoginTimeout,
    ReadTimeout,
    ShutdownRequested,
)

__all__ = ["FLUSH_THRESHOLD", "Ending", "LineSession"]

#: Queued reply octets are written out once they reach this size (and always before waiting for input).
FLUSH_THRESHOLD = 256 * 1024


ProtocolT = TypeVar("ProtocolT", bound=LineProtocol[Any])


class Ending(enum.Enum):
    """Why the server ends a session (the module notes)."""

    SHUTDOWN = "shutdown"
    EVICTED = "evicted"
    LOGIN_TIMEOUT = "login timeout"
    TIMEOUT = "timeout"


class LineSession(Generic[ProtocolT]):
    """The glue of one line-protocol session: subclasses set `conn` and `proto` and implement the hooks."""

    flush_threshold: ClassVar[int] = FLUSH_THRESHOLD

    conn: Connection
    proto: ProtocolT

    # -------------------------------------------------------------------------------------------- hooks

    def read_timeout(self) -> tuple[float, bool]:
        """Seconds the next command may take (a deadline per command, `Connection.read`), and whether the
        wait is idle (between transactions: a shutdown ends it at once)."""
        raise NotImplementedError

    async def handle(self, event: Any) -> None:
        """Answer one event of the core (its decisions through the core's methods)."""
        raise NotImplementedError

    def goodbye(self, ending: Ending, timeout: float) -> None:
        """The server ends the session: log it and queue the protocol's last words on the core (its close()).
        `timeout` is the deadline that passed (for TIMEOUT)."""
        raise NotImplementedError

    def tls_started(self) -> None:
        """The connection is now TLS: forget what the upgrade invalidates (RFC 3207 section 4.2)."""

    def connection_lost(self) -> None:
        """The peer closed or reset the connection while the session waited for input."""

    async def internal_error(self, event: Any, exc: Exception) -> None:
        """`handle` raised `exc`: answer the peer (the one place per protocol) or let it propagate."""
        raise exc

    # ---------------------------------------------------------------------------------------- the loop

    async def drive(self) -> None:
        """Run the session until the core is closed or the server ends it; ConnectionClosedError propagates
        when a write fails or the TLS handshake does."""
        conn = self.conn
        proto = self.proto
        threshold = self.flush_threshold
        while True:
            event = proto.next_event()
            if event is None:
                out = proto.data_to_send()
                if proto.closed:
                    await self._write_quietly(out)
                    return
                if out:
                    await conn.write(out)
                timeout, idle = self.read_timeout()
                try:
                    data = await conn.read(timeout, idle=idle)
                except Evicted:
                    await self._end(Ending.EVICTED, timeout)
                    return
                except LoginTimeout:
                    await self._end(Ending.LOGIN_TIMEOUT, timeout)
                    return
                except ReadTimeout:
                    await self._end(Ending.TIMEOUT, timeout)
                    return
                except ShutdownRequested:
                    await self._end(Ending.SHUTDOWN, timeout)
                    return
                except ConnectionClosedError:
                    self.connection_lost()
                    data = b""
                proto.receive_data(data)
                continue
            if isinstance(event, TlsUpgrade):
                await self._start_tls()
                continue
            try:
                await self.handle(event)
            except ConnectionClosedError:
                raise
            except Exception as exc:
                await self.internal_error(event, exc)
            if proto.output_size >= threshold:
                await conn.write(proto.data_to_send())

    async def _start_tls(self) -> None:
        await self.conn.write(self.proto.data_to_send())  # the "go ahead" reply, in plaintext
        await self.conn.start_tls()  # drops the plaintext the reader buffered (CVE-2011-0411)
        self.tls_started()
        self.proto.tls_started()

    async def _end(self, ending: Ending, read_timeout: float) -> None:
        self.goodbye(ending, read_timeout)
        await self._write_quietly(self.proto.data_to_send())

    async def _write_quietly(self, data: bytes) -> None:
        try:
            await self.conn.write(data)
        except ConnectionClosedError:
            pass
