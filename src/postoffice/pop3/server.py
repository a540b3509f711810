"""POP3 glue: a connection, the sans-IO protocol core, the Authenticator, the maildrop lock and the store.

Implementation notes
- The protocol core (`postoffice.pop3.protocol`) decides everything about the wire format; this module only
  moves bytes and answers the core's decisions: logins (through `postoffice.auth.Authenticator` only, never a
  password check of its own), retrievals (streamed from the store) and the UPDATE state.
- The maildrop is the account's INBOX, snapshotted at login (RFC 1939 section 8): message numbers are fixed
  for the session, mail arriving during it shows up in the next one. The unique-id is
  "<UIDVALIDITY>.<UID>": UIDVALIDITY values come from one store-wide counter and UIDs only grow, so an id is
  stable across sessions and restarts and never reused.
- One session per maildrop (`MaildropLocks`, shared with POP2): the lock is taken after the credentials were
  accepted ([IN-USE] when held, RFC 2449 section 8.1.1) and released whenever the session ends.
- Only QUIT in the TRANSACTION state removes anything: `store.expunge` (durable, tombstones, IMAP sessions
  are notified) and only after it returned "+OK". A store failure answers "-ERR [SYS/TEMP]" (on a full disk
  the store may have removed some of them in steps, decision 0030: RFC 1939's "some deleted messages not
  removed"). A dropped connection, the autologout timer, a shutdown or too many errors remove nothing.
- RETR/TOP stream the stored octets (CRLF lines) through the core's dot-stuffer: messages up to
  `INLINE_RETRIEVE_LIMIT` are read in one store call, which also reads ahead the small messages that follow
  (up to `READ_AHEAD_BYTES`: clients retrieve in order, and a store call is a thread hop); larger ones are
  streamed in chunks from `open_content`. Output is flushed whenever `FLUSH_THRESHOLD` octets are queued, so
  memory does not grow with the message size.
- The connection loop is `net.driver.LineSession`'s (shared with SMTP and POP2: reads with the deadlines,
  STLS with the plaintext drop, shutdown, eviction): replies are written when the core needs more input (or
  the queue passes FLUSH_THRESHOLD), so pipelined commands (RFC 2449) are answered in few writes.
- Each command has `[pop3] autologout` seconds (RFC 1939 section 3: at least 10 minutes), a deadline per
  command, not per read (`Connection.read`, docs/decisions/0028); then the connection is closed without a
  reply, as section 3 says. Before login the client has `[limits] login_timeout` in all, then
  "-ERR [SYS/TEMP]"; so does a pre-login session closed to make room for a new connection. At shutdown
  an idle session is told "-ERR [SYS/TEMP] server shutting down"; a retrieval or UPDATE in progress
  finishes first.
- One log line per session: client, account, TLS, messages retrieved, messages deleted, result, duration.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

from postoffice.auth import Authenticator
from postoffice.net.driver import FLUSH_THRESHOLD, Ending, LineSession
from postoffice.net.listener import Connection, ConnectionClosedError
from postoffice.pop3 import protocol as p
from postoffice.pop3.locks import MaildropLocks
from postoffice.pop3.settings import Pop3Config
from postoffice.store import MailboxInfo, MailStore, NotFound, StoreError

log = logging.getLogger("postoffice.pop3")

#: Messages up to this size are read with one store call (one thread hop); larger ones are streamed.
INLINE_RETRIEVE_LIMIT = 256 * 1024
#: Chunk size when streaming a large message from the store.
STREAM_CHUNK = 64 * 1024
#: Read-ahead for clients that retrieve message after message: small messages following the one asked for
#: are fetched in the same store call, up to this many octets and messages (memory per session stays bounded).
READ_AHEAD_BYTES = 1024 * 1024
READ_AHEAD_MESSAGES = 64


async def serve_pop3(
    conn: Connection,
    *,
    hostname: str,
    store: MailStore,
    authenticator: Authenticator,
    config: Pop3Config,
    locks: MaildropLocks,
) -> None:
    """Run one POP3 session on `conn` (ports 110 with STLS and 995 with implicit TLS) until it ends."""
    session = Pop3Session(
        conn,
        hostname=hostname,
        store=store,
        authenticator=authenticator,
        config=config,
        locks=locks,
    )
    await session.run()


class Pop3Session(LineSession[p.Pop3ServerProtocol]):
    """One POP3 session: the connection loop is `net.driver.LineSession`'s; this class answers the core's
    events and says the protocol's goodbyes."""

    def __init__(
        self,
        conn: Connection,
        *,
        hostname: str,
        store: MailStore,
        authenticator: Authenticator,
        config: Pop3Config,
        locks: MaildropLocks,
    ) -> None:
        self.conn = conn
        self.store = store
        self.authenticator = authenticator
        self.config = config
        self.locks = locks
        self.account: str = "-"
        self.locked_account: int | None = None
        self.inbox: MailboxInfo | None = None
        self._maildrop: list[p.MaildropMessage] = []
        self._read_ahead: dict[int, bytes] = {}
        self.deleted = 0
        self.result = "connection closed"
        self.started = time.monotonic()
        # USER/PASS and AUTH before TLS only where the authenticator allows it (decision 0035)
        plaintext = authenticator.plaintext_allowed(False)
        self.proto = p.Pop3ServerProtocol(
            p.Pop3Settings(
                hostname=hostname,
                max_errors=config.max_errors,
                starttls_available=conn.starttls_available,
                plaintext_auth_allowed=plaintext,
            ),
            tls_active=conn.tls_active,
            channel_binding=conn.channel_binding,
        )

    async def run(self) -> None:
        self.proto.greeting()
        try:
            await self.drive()
        except ConnectionClosedError as exc:
            self.result = f"connection lost ({exc})" if str(exc) else "connection lost"
        except Exception:
            # The one place an unexpected failure becomes a reply: never a traceback to the peer.
            log.exception("pop3 client %s: session failed", self.conn.peer_ip)
            self.result = "internal error"
            self.proto.abort()
            await self._say_quietly(b"-ERR [SYS/TEMP] internal server error\r\n")
        finally:
            if self.locked_account is not None:
                self.locks.release(self.locked_account)
                self.locked_account = None
            log.info(
                "pop3 session client=%s account=%s tls=%s retrieved=%d deleted=%d result=%r duration=%.3fs",
                self.conn.peer_ip,
                self.account,
                self.conn.tls_info or "no",
                self.proto.retrieved_count,
                self.deleted,
                self.result,
                time.monotonic() - self.started,
            )

    # ------------------------------------------------------------------------------- net.driver hooks

    def read_timeout(self) -> tuple[float, bool]:
        # Every wait for a command is idle: POP3 has no multi-command transaction to protect.
        return self.config.autologout, True

    def goodbye(self, ending: Ending, timeout: float) -> None:
        ip = self.conn.peer_ip
        if ending is Ending.SHUTDOWN:
            self.result = "server shutdown"
            self.proto.close("server shutting down", "SYS/TEMP")
        elif ending is Ending.EVICTED:
            log.info("pop3 client %s: closed to make room for other clients", ip)
            self.result = "closed to make room"
            self.proto.close("too many connections, closing this one; try again later", "SYS/TEMP")
        elif ending is Ending.LOGIN_TIMEOUT:
            log.info("pop3 client %s: no login within the login timeout", ip)
            self.result = "login timeout"
            self.proto.close("login took too long", "SYS/TEMP")  # nothing to remove before login
        else:
            log.info("pop3 client %s: autologout after %.0f s", ip, timeout)
            self.result = "autologout"
            self.proto.close()  # RFC 1939 section 3: close without a response, nothing removed

    async def handle(self, event: p.Event) -> None:
        if isinstance(event, p.Login):
            await self._login(event)
        elif isinstance(event, p.ScramSecretNeeded):
            self.proto.scram_secret(
                await self.authenticator.scram_secret(event.username, client_ip=self.conn.peer_ip)
            )
        elif isinstance(event, p.Retrieve):
            await self._retrieve(event)
        elif isinstance(event, p.Update):
            await self._update(event)
        elif isinstance(event, p.Quit):
            self.result = "QUIT"
        elif isinstance(event, p.ConnectionClosed):
            self.result = "closed by client" if self.inbox is None else "closed by client before QUIT"

    # ------------------------------------------------------------------------------------------ login

    async def _login(self, event: p.Login) -> None:
        proto = self.proto
        tls = self.conn.tls_active
        if event.scram is not None:
            result = await self.authenticator.scram_finish(
                protocol="pop3",
                client_ip=self.conn.peer_ip,
                outcome=event.scram,
                mechanism=event.mechanism,
                tls=tls,
            )
        elif event.credentials is not None:
            result = await self.authenticator.login_sasl(
                protocol="pop3",
                client_ip=self.conn.peer_ip,
                credentials=event.credentials,
                mechanism=event.mechanism,
                tls=tls,
            )
        else:
            result = await self.authenticator.login(
                protocol="pop3",
                client_ip=self.conn.peer_ip,
                username=event.username,
                password=event.password,
                mechanism=event.mechanism,
                tls=tls,
            )
        if result.status in ("bad-credentials", "disabled") or (result.ok and result.account is None):
            proto.login_rejected("AUTH", "Authentication failed")
            return
        if result.status == "locked-out":
            # Temporary by nature: RFC 3206 section 4 [SYS/TEMP] tells the client to try again later.
            proto.login_rejected(
                "SYS/TEMP", _reply_text(result.reason or "Too many failed logins") + "; try later"
            )
            return
        if not result.ok or result.account is None:
            proto.login_rejected("SYS/TEMP", "Authentication temporarily unavailable, try again later")
            return
        account = result.account
        if not self.locks.acquire(account.id):
            # RFC 2449 section 8.1.1: the credentials were fine, the maildrop is busy.
            proto.login_rejected("IN-USE", "Maildrop already locked by another session")
            return
        try:
            inbox = await self.store.get_mailbox(account.id, "INBOX")
            if inbox is None:
                raise NotFound(f"account {account.address} has no INBOX")
            infos = await self.store.list_messages(inbox.id)
        except StoreError as exc:
            self.locks.release(account.id)
            log.error(
                "pop3 client %s: cannot open the maildrop of %s: %s", self.conn.peer_ip, account.address, exc
            )
            proto.login_rejected("SYS/TEMP", "Maildrop temporarily unavailable, try again later")
            return
        self.locked_account = account.id
        self.conn.mark_logged_in()
        self.account = account.address
        self.inbox = inbox
        self._maildrop = [
            p.MaildropMessage(i.uid, i.size, f"{inbox.uidvalidity}.{i.uid}", i.content_id) for i in infos
        ]
        proto.login_accepted(self._maildrop)

    # -------------------------------------------------------------------------------------- retrieval

    async def _retrieve(self, event: p.Retrieve) -> None:
        proto = self.proto
        message = event.message
        stream: AsyncIterator[bytes] | None = None
        first = b""
        try:
            body_start = None
            if event.top_lines is not None:
                body_start = (await self.store.get_parsed(message.content_id)).body.body_start
            if message.size <= INLINE_RETRIEVE_LIMIT:
                first = await self._small_content(event.number, message)
            else:
                stream = self.store.open_content(message.content_id, STREAM_CHUNK)
                first = await anext(stream, b"")  # a missing message fails here, before "+OK"
        except NotFound:
            await _close_stream(stream)
            proto.retrieve_failed(None, f"Message {event.number} was removed by another session")
            return
        except StoreError as exc:
            await _close_stream(stream)
            log.error("pop3 client %s: cannot read message uid %d: %s", self.conn.peer_ip, message.uid, exc)
            proto.retrieve_failed("SYS/TEMP", "Cannot read the message now, try again later")
            return
        proto.retrieve_begin(body_start)
        try:
            wants_more = proto.message_data(first)
            while stream is not None and wants_more:
                if proto.output_size >= FLUSH_THRESHOLD:
                    await self._flush()
                chunk = await anext(stream, None)
                if chunk is None:
                    break
                wants_more = proto.message_data(chunk)
        except StoreError as exc:
            # "+OK" is out and cannot be taken back: drop the connection without the terminator.
            log.error(
                "pop3 client %s: reading message uid %d failed: %s", self.conn.peer_ip, message.uid, exc
            )
            proto.abort()
            raise ConnectionClosedError("store read failed during RETR") from exc
        finally:
            await _close_stream(stream)
        proto.retrieve_end()

    # ----------------------------------------------------------------------------------------- update

    async def _small_content(self, number: int, message: p.MaildropMessage) -> bytes:
        """The message bytes, from the read-ahead cache or from one store call that also fetches the small
        messages after it (clients such as fetchmail and getmail retrieve in order)."""
        cached = self._read_ahead.pop(message.content_id, None)
        if cached is not None:
            return cached
        self._read_ahead.clear()
        wanted = [message.content_id]
        total = message.size
        for following in self._maildrop[number : number + READ_AHEAD_MESSAGES - 1]:
            if following.size > INLINE_RETRIEVE_LIMIT or total + following.size > READ_AHEAD_BYTES:
                break
            wanted.append(following.content_id)
            total += following.size
        found = await self.store.read_contents(wanted, octets=total)
        if message.content_id not in found:
            raise NotFound(f"content {message.content_id}")
        first = found.pop(message.content_id)
        self._read_ahead = found
        return first

    async def _update(self, event: p.Update) -> None:
        inbox = self.inbox
        if inbox is None:
            raise RuntimeError("UPDATE without a login: the core enters UPDATE only after one")
        try:
            if event.uids:
                await self.store.expunge(inbox.id, event.uids)  # durable when it returns
        except StoreError as exc:
            log.error("pop3 client %s: UPDATE of %s failed: %s", self.conn.peer_ip, self.account, exc)
            self.result = "QUIT, update failed"
            # RFC 1939 6: "-ERR some deleted messages not removed". On a full disk the store removes what it
            # can in steps (decision 0030), so some may be gone: the next session's listing tells.
            self.proto.update_failed("Some deleted messages were not removed, try again")
            return
        self.deleted = len(event.uids)
        self.result = "QUIT"
        self.proto.update_done()

    # ---------------------------------------------------------------------------------------- writing

    async def _flush(self) -> None:
        out = self.proto.data_to_send()
        if out:
            await self.conn.write(out)

    async def _say_quietly(self, data: bytes) -> None:
        try:
            await self.conn.write(data)
        except ConnectionClosedError:
            pass


async def _close_stream(stream: AsyncIterator[bytes] | None) -> None:
    """Close an open_content iterator early (TOP, errors) so its blob and read transaction are released."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except StoreError:
            pass


def _reply_text(text: str) -> str:
    cleaned = "".join(c if c.isprintable() else " " for c in text).strip()
    return cleaned[:1].upper() + cleaned[1:]
