"""POP2 glue (RFC 937, port 109): a connection, the sans-IO protocol core, the authenticator and the store.

Implementation notes
- The protocol core (`postoffice.pop2.protocol`) decides everything about the wire format and the states;
  this module answers its decisions: HELO through `postoffice.auth.Authenticator` (which applies the failure
  delay and the lockouts and logs the login line), FOLD through the store, RETR by streaming the message from
  `MailStore.open_content`, ACKD by `MailStore.expunge`.
- Plaintext only: POP2 has no TLS. Passwords are taken from loopback clients, and from others only with
  `[auth] allow_plaintext_auth = true` (the config refuses a non-loopback pop2 listener without it; this is
  the same rule applied per connection, in case the listener is bound to a wildcard address); the
  authenticator decides (`Authenticator.plaintext_allowed`, decision 0035).
- The connection loop is `net.driver.LineSession`'s (shared with SMTP and POP3).
- One session per maildrop, shared with POP3 (`postoffice.pop3.locks.MaildropLocks`): taken right after a
  successful login, before "#n"; a second session gets "- maildrop in use" and is closed. Released in
  `finally`, however the session ends.
- Durability: ACKD answers only after `expunge` returned, i.e. after the store's commit (fsynced WAL).
  Nothing else deletes: a dropped connection, a timeout or a shutdown removes nothing that was not ACKD'ed.
- RETR sends exactly the octets announced by "=n" (the stored size, CRLF line ends, no dot-stuffing), chunk by
  chunk, never the whole message in memory. If the store cannot deliver exactly that many octets (the message
  was expunged by another protocol meanwhile, a store error) the framing is lost: the connection is closed
  without another reply.
- Limits: `[pop3] autologout` seconds for a command ends the session ("- autologout"; a deadline per
  command, not per read: docs/decisions/0028); without HELO within `[limits] login_timeout` it ends with
  "- login took too long", and a pre-login session closed to make room says so; `[pop3]
  max_errors` protocol errors end it; a server shutdown ends an idle session at once ("- server shutting
  down"). Commands are never interrupted halfway: ACKD's expunge and RETR's transfer finish first.
- One log line per session end: client, account, folder, retrieved, deleted, how it ended, duration.
"""

from __future__ import annotations

import logging
import time

from postoffice.auth import Authenticator, AuthResult
from postoffice.net.driver import Ending, LineSession
from postoffice.net.listener import Connection, ConnectionClosedError
from postoffice.plural import counted
from postoffice.pop2 import protocol as p
from postoffice.pop3.locks import MaildropLocks
from postoffice.pop3.settings import Pop3Config
from postoffice.store import Account, MailboxInfo, MailStore, MessageInfo, StoreError

log = logging.getLogger("postoffice.pop2")

_AUTH_FAILURE_TEXT = {
    "bad-credentials": "authentication failed",
    "disabled": "account disabled",
    "locked-out": "too many failed logins, try again later",
    "unavailable": "authentication is temporarily unavailable, try again later",
}


async def serve_pop2(
    conn: Connection,
    *,
    hostname: str,
    store: MailStore,
    authenticator: Authenticator,
    config: Pop3Config,
    locks: MaildropLocks,
) -> None:
    """Run one POP2 session on `conn` until QUIT, an error limit, a timeout, shutdown or the peer's close."""
    session = Pop2Session(
        conn,
        hostname=hostname,
        store=store,
        authenticator=authenticator,
        config=config,
        locks=locks,
    )
    await session.run()


def _reply_text(text: str) -> str:
    """Reply text without control characters (texts from other modules are not ours to trust blindly)."""
    return "".join(ch if 0x20 <= ord(ch) != 0x7F else " " for ch in text)


class Pop2Session(LineSession[p.Pop2ServerProtocol]):
    """One POP2 session: the connection loop is `net.driver.LineSession`'s; this class answers the core's
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
        self.proto = p.Pop2ServerProtocol(p.Pop2Settings(hostname=hostname, max_errors=config.max_errors))
        self.account: Account | None = None
        self.locked_account_id: int | None = None
        self.mailbox: MailboxInfo | None = None
        self.messages: list[MessageInfo] = []
        self.retrieved = 0
        self.deleted = 0
        self.ended = "closed"
        self.started = time.monotonic()

    async def run(self) -> None:
        self.proto.greeting()
        try:
            await self.drive()
        except ConnectionClosedError:
            self.ended = "connection lost"
        finally:
            if self.locked_account_id is not None:
                self.locks.release(self.locked_account_id)
                self.locked_account_id = None
            self._log_end()

    # ------------------------------------------------------------------------------- net.driver hooks

    def read_timeout(self) -> tuple[float, bool]:
        # Every wait is between commands (POP2 clients send nothing else), so a shutdown may interrupt any.
        return self.config.autologout, True

    def goodbye(self, ending: Ending, timeout: float) -> None:
        ip = self.conn.peer_ip
        if ending is Ending.SHUTDOWN:
            self.ended = "shutdown"
            self.proto.close("server shutting down")
        elif ending is Ending.EVICTED:
            self.ended = "closed to make room"
            log.info("pop2 client %s: closed to make room for other clients", ip)
            self.proto.close("too many connections, closing this one; try again later")
        elif ending is Ending.LOGIN_TIMEOUT:
            self.ended = "login timeout"
            log.info("pop2 client %s: no login within the login timeout", ip)
            self.proto.close("login took too long")
        else:
            self.ended = "autologout"
            log.info("pop2 client %s: autologout after %.0f s", ip, timeout)
            self.proto.close(f"autologout: no command for {timeout:.0f} seconds")

    async def handle(self, event: p.Event) -> None:
        if isinstance(event, p.Login):
            await self._login(event)
        elif isinstance(event, p.SelectFolder):
            await self._select_folder(event)
        elif isinstance(event, p.Retrieve):
            await self._retrieve(event)
        elif isinstance(event, p.Delete):
            await self._delete(event)
        elif isinstance(event, p.Kept):
            await self._keep(event)
        elif isinstance(event, p.Quit):
            self.ended = "QUIT"
        elif isinstance(event, p.ConnectionClosed):
            self.ended = "client closed"

    # ------------------------------------------------------------------------------------------ HELO

    async def _login(self, event: p.Login) -> None:
        proto = self.proto
        ip = self.conn.peer_ip
        # POP2 has no TLS: the authenticator allows a password from loopback, or with allow_plaintext_auth
        if not self.authenticator.plaintext_allowed(False, client_ip=ip, tls_offered=False):
            # RFC 8314 / RFC 2595 section 3.1 spirit: no cleartext passwords unless the administrator says so.
            log.info("pop2 client %s: HELO refused, plaintext passwords are not allowed", ip)
            self.ended = "plaintext refused"
            proto.reject("plaintext passwords are not allowed from your address")
            return
        result: AuthResult = await self.authenticator.login(
            protocol="pop2",
            client_ip=ip,
            username=event.username,
            password=event.password,
            mechanism="HELO",
            tls=self.conn.tls_active,
        )
        if not result.ok or result.account is None:
            # RFC 937: a failed HELO ends the session.
            self.ended = f"login {result.status}"
            text = result.reason or _AUTH_FAILURE_TEXT.get(result.status, "authentication failed")
            proto.reject(_reply_text(text))
            return
        account = result.account
        self.account = account
        if not self.locks.acquire(account.id):
            self.ended = "maildrop in use"
            proto.reject("maildrop in use")
            return
        self.locked_account_id = account.id
        self.conn.mark_logged_in()
        try:
            mailbox = await self.store.get_mailbox(account.id, "INBOX")
            messages = await self.store.list_messages(mailbox.id) if mailbox is not None else []
        except StoreError as exc:
            log.error("pop2 %s: cannot open INBOX: %s", account.address, exc)
            self.ended = "store error"
            proto.reject("mailbox temporarily unavailable, try again later")
            return
        self.mailbox = mailbox
        self.messages = messages
        proto.accept_login([m.size for m in messages], folder="INBOX")

    # ------------------------------------------------------------------------------------------ FOLD

    async def _select_folder(self, event: p.SelectFolder) -> None:
        account = self.account
        if account is None:
            raise RuntimeError("FOLD before HELO: the core asks about FOLD only after HELO")
        try:
            mailbox = await self.store.get_mailbox(account.id, event.name)
            messages = await self.store.list_messages(mailbox.id) if mailbox is not None else []
        except StoreError as exc:
            log.error("pop2 %s: cannot open folder: %s", account.address, exc)
            self.proto.reject("folder temporarily unavailable, try again later")
            return
        # RFC 937: a folder that does not exist is answered "#0" (an empty selection), not "-".
        self.mailbox = mailbox
        self.messages = messages
        self.proto.accept_folder([m.size for m in messages])

    # ------------------------------------------------------------------------------------------ RETR

    async def _retrieve(self, event: p.Retrieve) -> None:
        info = self.messages[event.number - 1]
        # The "=n" and any earlier replies go first; then exactly n octets, nothing around them.
        await self.conn.write(self.proto.data_to_send())
        sent = 0
        problem = ""
        chunks = self.store.open_content(info.content_id)
        try:
            async for chunk in chunks:
                if sent + len(chunk) > event.size:
                    problem = "the stored message is longer than its recorded size"
                    break
                await self.conn.write(chunk)
                sent += len(chunk)
        except StoreError as exc:
            problem = f"store error: {exc}"
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()  # releases the store's read transaction at once, also after a break
        if not problem and sent != event.size:
            problem = f"sent {sent} of {counted(event.size, 'octet')}"
        if problem:
            log.error("pop2 %s: RETR of uid %d failed: %s; closing", self._who(), info.uid, problem)
            self.ended = "RETR failed"
            self.proto.abort()
            return
        self.retrieved += 1
        self.proto.retrieved()

    # ------------------------------------------------------------------------------------------ ACKD

    async def _delete(self, event: p.Delete) -> None:
        mailbox = self.mailbox
        info = self.messages[event.number - 1]
        if mailbox is None:
            raise RuntimeError("ACKD without a mailbox: it follows a RETR, which needs a message in one")
        try:
            # Durable before the reply: expunge returns after the store's commit.
            await self.store.expunge(mailbox.id, [info.uid])
        except StoreError as exc:
            log.error("pop2 %s: ACKD of uid %d failed: %s", self._who(), info.uid, exc)
            self.proto.reject("message could not be deleted, it is kept")
            return
        self.deleted += 1
        self.proto.deleted()

    # ------------------------------------------------------------------------------------------ ACKS

    async def _keep(self, event: p.Kept) -> None:
        """ACKS: the client has the message and it stays; mark it \\Seen (UW ipop2d did the same)."""
        mailbox = self.mailbox
        info = self.messages[event.number - 1]
        if mailbox is None:
            raise RuntimeError("ACKS without a mailbox: it follows a RETR, which needs a message in one")
        try:
            await self.store.store_flags(mailbox.id, [info.uid], ["\\Seen"], "add")
        except StoreError as exc:  # the message is kept either way; a missing flag is not worth failing
            log.warning("pop2 %s: ACKS could not set \\Seen on uid %d: %s", self._who(), info.uid, exc)

    # --------------------------------------------------------------------------------------------- log

    def _who(self) -> str:
        return self.account.address if self.account is not None else "-"

    def _log_end(self) -> None:
        log.info(
            "pop2 session client=%s account=%s folder=%s retrieved=%d deleted=%d end=%s duration=%.3fs",
            self.conn.peer_ip,
            self._who(),
            self.proto.folder or "-",
            self.retrieved,
            self.deleted,
            self.ended,
            time.monotonic() - self.started,
        )
