"""IMAP connection glue: one `Connection` (net.listener) driving one `ImapProtocol` (docs/decisions/0038).

The protocol itself, the session state and the commands are sans-IO (`postoffice.imap.protocol`,
`postoffice.imap.state`, the command modules); this module only reads, writes, upgrades to TLS, waits and
times out, and turns the ways a connection ends into the last line the client gets and one log line.

Implementation notes
- Reads happen only when the core needs input (`Need.INPUT`), so pipelining is bounded (see the core).
- Timeouts: each command (and the wait for it) has `autologout` (RFC 9051 section 5.4: at least 30
  minutes), a deadline per command rather than per read (`Connection.read`, docs/decisions/0028), then
  "* BYE"; IDLE waits `idle_timeout` instead, and a change to the selected mailbox (the core's `wake`) ends
  the wait early so that it is reported at once. After a NOTIFY (RFC 5465) the wait between commands is
  the same (`Need.NOTIFY`), with `autologout`: what the client asked to hear of is told at once, with no
  command in progress. Before login the client has `[limits] login_timeout` in
  all ("* BYE Autologout; login took too long"); a pre-login session closed to make room for a new
  connection gets "* BYE [UNAVAILABLE]". At shutdown an idle session gets "* BYE" at once.
- STARTTLS: the core answers OK and asks for TLS (`Need.TLS`); `Connection.start_tls` drops what its own
  buffer holds (CVE-2011-0411), as the reader dropped its own.
- One place for unexpected failures: `run` logs them with their traceback and sends only
  "* BYE [SERVERBUG]"; the peer never sees a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Literal

from postoffice.auth import Authenticator
from postoffice.imap.protocol import MAX_ERRORS, ImapProtocol, Need
from postoffice.imap.settings import ImapSettings
from postoffice.net.listener import (
    Connection,
    ConnectionClosedError,
    Evicted,
    LoginTimeout,
    ReadTimeout,
    ShutdownRequested,
)
from postoffice.store import MailStore

__all__ = ["MAX_ERRORS", "ImapSession", "ImapSettings", "refuse_imap_connection", "serve_imap"]

log = logging.getLogger("postoffice.imap")


class ImapSession:
    def __init__(
        self,
        conn: Connection,
        *,
        store: MailStore,
        authenticator: Authenticator,
        settings: ImapSettings,
    ) -> None:
        self.conn = conn
        self.settings = settings
        self._wakeup = asyncio.Event()
        self.core = ImapProtocol(store, authenticator, settings, conn, wake=self._wakeup.set)
        self.result = "connection closed"
        self.started = time.monotonic()

    async def run(self) -> None:
        core = self.core
        core.greeting()
        try:
            await self._loop()
        except ShutdownRequested:
            self.result = "server shutdown"
            core.session.untagged("BYE [UNAVAILABLE] Server shutting down")
            await self._flush_quietly()
        except Evicted:
            self.result = "closed to make room"
            core.session.untagged("BYE [UNAVAILABLE] Too many connections, closing this one; try again later")
            await self._flush_quietly()
        except LoginTimeout:
            self.result = "login timeout"
            core.session.untagged("BYE Autologout; login took too long")
            await self._flush_quietly()
        except ReadTimeout:
            self.result = "autologout"
            core.session.untagged("BYE Autologout; idle for too long")
            await self._flush_quietly()
        except ConnectionClosedError as exc:
            self.result = f"connection lost ({exc})" if str(exc) else "connection lost"
        except Exception:
            # The one place an unexpected failure ends a session: logged here, never sent to the peer.
            log.exception("imap client %s: session failed", self.conn.peer_ip)
            self.result = "internal error"
            core.session.discard_output()
            core.session.untagged("BYE [SERVERBUG] Internal server error")
            await self._flush_quietly()
        finally:
            core.close()
            account = core.session.account
            log.info(
                "imap session client=%s account=%s tls=%s result=%r duration=%.3fs",
                self.conn.peer_ip,
                account.address if account else "-",
                self.conn.tls_info or "no",
                self.result,
                time.monotonic() - self.started,
            )

    async def _flush_quietly(self) -> None:
        try:
            await self.core.flush()
        except ConnectionClosedError:
            pass

    async def _loop(self) -> None:
        core, conn = self.core, self.conn
        need = await core.process()
        while True:
            if need is Need.INPUT:
                await core.flush()
                # Between commands the wait is idle (a shutdown ends it); inside one, the client owes octets.
                data = await conn.read(self.settings.autologout, idle=not core.in_command)
                if not data:
                    if core.exchange is not None:
                        raise ConnectionClosedError(f"closed during {core.exchange}")
                    self.result = "closed by client"
                    return
                core.receive_data(data)
            elif need is Need.TLS:
                await core.flush()
                await conn.start_tls()  # drops plaintext its buffer holds; the reader dropped its own
            elif need is Need.COMPRESS:
                await core.flush()  # the tagged OK, uncompressed
                conn.start_compression()
            elif need in (Need.IDLE, Need.NOTIFY):
                after = await self._idle(need)
                if after is None:  # the client left between commands (NOTIFY)
                    self.result = "closed by client"
                    return
                need = after
                continue
            else:
                self.result = core.session.end_reason or "LOGOUT"
                await core.flush()
                return
            need = await core.process()

    async def _idle(self, waiting: Need) -> Need | None:
        """RFC 2177: while the core idles, wait for the client (DONE) or for a change to report, whichever
        comes first; one read stays pending across wake-ups, so its deadline is the whole IDLE's. The same
        between commands after a NOTIFY (RFC 5465 section 3, `Need.NOTIFY`), with the deadline of a command;
        None when the client closes the connection there."""
        core, conn = self.core, self.conn
        timeout = self.settings.idle_timeout if waiting is Need.IDLE else self.settings.autologout
        read: asyncio.Task[bytes] | None = None
        wake: asyncio.Task[Literal[True]] | None = None
        try:
            while True:
                await core.flush()
                if read is None:
                    read = asyncio.create_task(conn.read(timeout, idle=True))
                waker = asyncio.ensure_future(self._wakeup.wait())
                wake = waker
                await asyncio.wait((read, waker), return_when=asyncio.FIRST_COMPLETED)
                waker.cancel()
                if read.done():
                    data = read.result()
                    read = None
                    if not data:
                        if waiting is Need.IDLE:
                            raise ConnectionClosedError("closed during IDLE")
                        return None
                    core.receive_data(data)
                # cleared before the core looks, not before the wait: a change that comes while the core
                # writes (the flush above) is not lost, it ends the next wait at once
                self._wakeup.clear()
                need = await core.process()
                if need is not waiting:
                    return need
        finally:
            if wake is not None:
                wake.cancel()
            if read is not None:
                read.cancel()


async def serve_imap(
    conn: Connection, *, store: MailStore, authenticator: Authenticator, settings: ImapSettings
) -> None:
    """Run one IMAP session on `conn` (port 143 with STARTTLS, 993 with implicit TLS) until it ends."""
    await ImapSession(conn, store=store, authenticator=authenticator, settings=settings).run()


async def refuse_imap_connection(conn: Connection, reason: str) -> None:
    """Over the connection caps: an untagged BYE as the greeting (RFC 9051 section 7.1.5)."""
    try:
        await conn.write(f"* BYE [UNAVAILABLE] {reason}, try again later\r\n".encode())
    except ConnectionClosedError:
        pass
