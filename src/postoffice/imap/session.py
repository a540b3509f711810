"""IMAP session: the state machine of RFC 9051 / RFC 3501 around `CommandReader`, and its connection glue.

What it implements (docs/decisions/0013-imap-session.md)
- States (RFC 9051 section 3): not authenticated -> authenticated -> selected -> logout. A command in the
  wrong state is answered BAD; every parse error is answered BAD with the reader's reason (RFC 9051 section
  7.1.5). A BAD never ends a session: only `MAX_ERRORS` BAD replies in a row, with no command completing
  (OK or NO) between them, do, announced with BYE (docs/decisions/0020).
- Any state: CAPABILITY, NOOP, LOGOUT, ID (RFC 2971). Not authenticated: STARTTLS (section 6.2.1), LOGIN
  (6.2.3), AUTHENTICATE PLAIN/LOGIN with SASL-IR (6.2.2, RFC 4959), all through `auth.Authenticator`.
  Authenticated: ENABLE (RFC 5161: UTF8=ACCEPT, RFC 6855; IMAP4rev2 only when advertised), NAMESPACE, IDLE
  (RFC 2177) and the mailbox commands of `postoffice.imap.commands_mailbox`. Selected: the message commands of
  `postoffice.imap.commands_message`.
- Untagged updates (RFC 9051 section 5.2, 7.5.1): the store's change notifications mark the selected view
  dirty; at the end of every command in the selected state the view is read back (only what changed after the
  highest MODSEQ it has seen, `MailStore.changes_since`) and EXISTS / RECENT / FETCH (FLAGS) are sent before
  the tagged reply. EXPUNGE responses are held back during FETCH, STORE and SEARCH (not their UID forms) and
  sent at the end of the next command that allows them; IDLE sends them at once.

Implementation notes
- One place maps failures to replies (`_run_command`): `CommandFailed` gives the tagged NO/BAD it carries, a
  `StoreFull` "NO [OVERQUOTA]" (as Dovecot answers a full disk), another `StoreError` "NO [UNAVAILABLE]",
  anything else is logged with its traceback and answered "NO [SERVERBUG]"; the peer never sees a traceback.
- Output is queued and written when the reader needs more input, and whenever `FLUSH_THRESHOLD` octets are
  queued (the write waits for the socket to drain). Input is only read when the reader has no complete
  command left, so a client that pipelines without reading its responses stops being read (bounded
  pipelining): the session holds at most `max_line` octets of commands plus `FLUSH_THRESHOLD` of responses.
- Timeouts: each command (and the wait for it) has `autologout` (RFC 9051 section 5.4: at least 30
  minutes), a deadline per command rather than per read (`Connection.read`, docs/decisions/0028), then
  "* BYE"; IDLE waits `idle_timeout` instead. Before login the client has `[limits] login_timeout` in all
  ("* BYE Autologout; login took too long"); a pre-login session closed to make room for a new connection
  gets "* BYE [UNAVAILABLE]". At shutdown an idle session gets "* BYE" at once.
- STARTTLS: the reader drops everything buffered after the STARTTLS line, and `Connection.start_tls` drops
  what its own buffer holds (CVE-2011-0411).
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import IO, Literal

from postoffice.auth import Authenticator
from postoffice.auth.sasl import Challenge, Credentials, create_mechanism, decode_response, encode_challenge
from postoffice.imap import parser as p
from postoffice.imap import wire
from postoffice.imap.mailbox_view import InvalidSequence, MailboxView
from postoffice.net.listener import (
    Connection,
    ConnectionClosedError,
    Evicted,
    LoginTimeout,
    ReadTimeout,
    ShutdownRequested,
)
from postoffice.store import (
    SYSTEM_FLAGS,
    Account,
    ChangeEvent,
    MailboxInfo,
    MailStore,
    NotFound,
    StoreError,
    StoreFull,
)

log = logging.getLogger("postoffice.imap")

#: Above every UID (RFC 9051 section 2.3.1.1: UIDs are 32-bit).
NO_UID = 2**32

#: Queued response octets are written once they reach this size.
FLUSH_THRESHOLD = 256 * 1024
#: BAD replies in a row (no command completed between them) after which the server says BYE: a client
#: this confused is not an IMAP client. Like Dovecot's "bad commands in a row"; a command that completes
#: with OK or NO starts the count again, so a long session is never ended by BADs spread over it.
MAX_ERRORS = 50
#: APPEND messages are spooled in memory up to this size, then in a temporary file.
SPOOL_MEMORY = 1024 * 1024


def _text(text: str, utf8: bool) -> str:
    """Response text is ASCII unless the client enabled UTF-8 (RFC 9051 section 9 `text`, RFC 6855): text
    that quotes client input (a parse error near 8-bit octets) is escaped, so a strict client can parse it."""
    if utf8 or text.isascii():
        return text
    return text.encode("ascii", "backslashreplace").decode("ascii")


class State(Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


class CommandFailed(Exception):
    """A command's outcome other than OK: `status` "NO" or "BAD", an optional response code (RFC 9051 7.1)."""

    def __init__(self, status: str, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.code = code


def no(text: str, code: str | None = None) -> CommandFailed:
    return CommandFailed("NO", text, code)


def bad(text: str, code: str | None = None) -> CommandFailed:
    return CommandFailed("BAD", text, code)


@dataclass(frozen=True)
class Done:
    """A command's tagged OK."""

    text: str
    code: str | None = None


@dataclass(frozen=True)
class ImapSettings:
    hostname: str = "localhost"
    autologout: float = 1800.0
    idle_timeout: float = 3600.0
    append_limit: int = 50 * 1024 * 1024
    max_line: int = 64 * 1024
    spool_dir: Path | None = None
    #: Advertise IMAP4rev2 (RFC 9051) and act on ENABLE IMAP4rev2; clients that do not enable it keep the
    #: IMAP4rev1 behaviour (\\Recent, SEARCH responses, modified UTF-7 names).
    imap4rev2: bool = True
    #: Mailboxes (and subscriptions) per account, and the longest and deepest mailbox name (octets of its
    #: UTF-8 form, levels): CREATE / RENAME / SUBSCRIBE over them are NO [LIMIT] (docs/decisions/0021).
    max_mailboxes: int = 1000
    max_mailbox_name_length: int = 1024
    max_mailbox_depth: int = 32


_ANY_STATE = (State.NOT_AUTHENTICATED, State.AUTHENTICATED, State.SELECTED)
_AUTHENTICATED = (State.AUTHENTICATED, State.SELECTED)
_ALLOWED: dict[type[p.Command], tuple[State, ...]] = {
    p.Capability: _ANY_STATE,
    p.Noop: _ANY_STATE,
    p.Logout: _ANY_STATE,
    p.Id: _ANY_STATE,
    p.StartTls: (State.NOT_AUTHENTICATED,),
    p.Login: (State.NOT_AUTHENTICATED,),
    p.Authenticate: (State.NOT_AUTHENTICATED,),
    p.Enable: (State.AUTHENTICATED,),  # RFC 5161 section 3.1
    p.Namespace: _AUTHENTICATED,
    p.Idle: _AUTHENTICATED,
    p.Select: _AUTHENTICATED,
    p.Examine: _AUTHENTICATED,
    p.Create: _AUTHENTICATED,
    p.Delete: _AUTHENTICATED,
    p.Rename: _AUTHENTICATED,
    p.Subscribe: _AUTHENTICATED,
    p.Unsubscribe: _AUTHENTICATED,
    p.List: _AUTHENTICATED,
    p.Lsub: _AUTHENTICATED,
    p.Status: _AUTHENTICATED,
    p.Append: _AUTHENTICATED,
    p.Check: (State.SELECTED,),
    p.Close: (State.SELECTED,),
    p.Unselect: (State.SELECTED,),
    p.Expunge: (State.SELECTED,),
    p.UidExpunge: (State.SELECTED,),
    p.Search: (State.SELECTED,),
    p.Fetch: (State.SELECTED,),
    p.Store: (State.SELECTED,),
    p.Copy: (State.SELECTED,),
    p.Move: (State.SELECTED,),
}


def _expunge_allowed(command: p.Command) -> bool:
    """RFC 9051 section 7.5.1: no EXPUNGE while responding to FETCH, STORE or SEARCH; their UID forms may."""
    if isinstance(command, p.Fetch | p.Store | p.Search):
        return command.uid
    return True


@dataclass
class AppendSpool:
    """One message of an APPEND, spooled."""

    message: p.AppendMessage
    spool: IO[bytes]
    received: int = 0


@dataclass
class _AppendInProgress:
    """The messages of one APPEND command (several with MULTIAPPEND, RFC 3502), in order."""

    tag: str
    mailbox: MailboxInfo
    messages: list[AppendSpool]

    @property
    def current(self) -> AppendSpool:
        return self.messages[-1]

    def close(self) -> None:
        for item in self.messages:
            item.spool.close()


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
        self.store = store
        self.authenticator = authenticator
        self.settings = settings
        self.reader = p.CommandReader(max_line=settings.max_line, max_literal=settings.append_limit)
        self.state = State.NOT_AUTHENTICATED
        self.account: Account | None = None
        self.view: MailboxView | None = None
        self.rev2 = False
        self.utf8 = False  # UTF8=ACCEPT or IMAP4rev2 enabled: mailbox names and strings in UTF-8
        self._utf8_enabled = False  # UTF8=ACCEPT itself was enabled (RFC 6855)
        self.errors = 0
        self.result = "connection closed"
        self.started = time.monotonic()
        self._out = bytearray()
        self._wakeup = asyncio.Event()
        self._unsubscribe: Callable[[], None] | None = None
        self._append: _AppendInProgress | None = None
        #: RFC 5182: the UIDs saved by the last SEARCH RETURN (SAVE); None when there is none (`$` is empty).
        self.saved_result: list[int] | None = None
        #: Change notifications received; SELECT compares it before and after reading, so that a change
        #: committed while the view was being built is read back at once.
        self.changes_seen = 0
        #: Another session deleted the selected mailbox (`sync` ends the session).
        self.selected_deleted = False

    # ------------------------------------------------------------------------------------------ output

    def send(self, data: bytes) -> None:
        """Complete response lines (CRLF included), queued as they are."""
        self._out += data

    def pending_output(self) -> int:
        return len(self._out)

    def untagged(self, text: str | bytes) -> None:
        self._out += b"* " + (text.encode() if isinstance(text, str) else text) + b"\r\n"

    def _tagged(self, tag: str, status: str, text: str, code: str | None = None) -> None:
        self.errors = self.errors + 1 if status == "BAD" else 0  # a run of BADs (MAX_ERRORS)
        code_part = f"[{code}] " if code else ""
        self._out += f"{tag} {status} {code_part}{_text(text, self.utf8)}\r\n".encode()

    async def flush(self) -> None:
        if self._out:
            data = bytes(self._out)
            self._out.clear()
            await self.conn.write(data)

    async def _flush_quietly(self) -> None:
        try:
            await self.flush()
        except ConnectionClosedError:
            pass

    def mailbox_name(self, name: str) -> bytes:
        """A mailbox name for a response: UTF-8 after UTF8=ACCEPT / IMAP4rev2, else modified UTF-7."""
        from postoffice.imap.mutf7 import encode_mutf7

        if self.utf8:
            return wire.quoted(name, utf8=True)
        return wire.quoted(encode_mutf7(name))

    # ------------------------------------------------------------------------------------ capabilities

    def plaintext_allowed(self) -> bool:
        return self.authenticator.plaintext_allowed(self.conn.tls_active)  # decision 0035

    def capabilities(self) -> str:
        caps = ["IMAP4rev1"]
        if self.settings.imap4rev2:
            caps.append("IMAP4rev2")
        if self.state is State.NOT_AUTHENTICATED:
            if self.conn.starttls_available:
                caps.append("STARTTLS")
            if self.plaintext_allowed():
                caps += ["AUTH=PLAIN", "AUTH=LOGIN"]
            else:
                caps.append("LOGINDISABLED")
        caps += [
            "SASL-IR",
            "LITERAL+",
            "ENABLE",
            "ID",
            "IDLE",
            "NAMESPACE",
            "UNSELECT",
            "CHILDREN",
            "SPECIAL-USE",
            "CREATE-SPECIAL-USE",
            "UIDPLUS",
            "MOVE",
            "ESEARCH",
            "SEARCHRES",
            "BINARY",
            "MULTIAPPEND",
            "LIST-EXTENDED",
            "LIST-STATUS",
            "STATUS=SIZE",
            f"APPENDLIMIT={self.settings.append_limit}",
            "UTF8=ACCEPT",
        ]
        return " ".join(caps)

    # ---------------------------------------------------------------------------------------- the loop

    async def run(self) -> None:
        self.untagged(f"OK [CAPABILITY {self.capabilities()}] Postoffice ready")
        try:
            await self._loop()
        except ShutdownRequested:
            self.result = "server shutdown"
            self.untagged("BYE [UNAVAILABLE] Server shutting down")
            await self._flush_quietly()
        except Evicted:
            self.result = "closed to make room"
            self.untagged("BYE [UNAVAILABLE] Too many connections, closing this one; try again later")
            await self._flush_quietly()
        except LoginTimeout:
            self.result = "login timeout"
            self.untagged("BYE Autologout; login took too long")
            await self._flush_quietly()
        except ReadTimeout:
            self.result = "autologout"
            self.untagged("BYE Autologout; idle for too long")
            await self._flush_quietly()
        except ConnectionClosedError as exc:
            self.result = f"connection lost ({exc})" if str(exc) else "connection lost"
        except Exception:
            # The one place an unexpected failure ends a session: logged here, never sent to the peer.
            log.exception("imap client %s: session failed", self.conn.peer_ip)
            self.result = "internal error"
            self._out.clear()
            self.untagged("BYE [SERVERBUG] Internal server error")
            await self._flush_quietly()
        finally:
            self._discard_append()
            if self._unsubscribe is not None:
                self._unsubscribe()
                self._unsubscribe = None
            log.info(
                "imap session client=%s account=%s tls=%s result=%r duration=%.3fs",
                self.conn.peer_ip,
                self.account.address if self.account else "-",
                self.conn.tls_info or "no",
                self.result,
                time.monotonic() - self.started,
            )

    async def next_event(self, timeout: float) -> p.ReaderEvent | None:
        """The next reader event, reading as needed; None when the client closed the connection."""
        while True:
            event = self.reader.next()
            if event is not None:
                return event
            await self.flush()
            # Between commands the wait is idle (a shutdown ends it); inside one, the client owes us octets.
            data = await self.conn.read(timeout, idle=not self.reader.in_command)
            if not data:
                return None
            self.reader.feed(data)

    async def _loop(self) -> None:
        while self.state is not State.LOGOUT:
            event = await self.next_event(self.settings.autologout)
            if event is None:
                self.result = "closed by client"
                return
            await self._event(event)
            if self.errors >= MAX_ERRORS and self.state is not State.LOGOUT:
                self.untagged("BYE Too many invalid commands")
                self.result = "too many errors"
                self.state = State.LOGOUT
            if len(self._out) >= FLUSH_THRESHOLD:
                await self.flush()
        self.result = "LOGOUT"
        await self.flush()

    async def _event(self, event: p.ReaderEvent) -> None:
        if isinstance(event, p.Command):
            await self._run_command(event)
        elif isinstance(event, p.NeedContinuation):
            self._out += b"+ Ready for literal data\r\n"
        elif isinstance(event, p.AppendMessageStart):
            await self._append_start(event)
        elif isinstance(event, p.AppendData):
            if self._append is not None:
                current = self._append.current
                current.spool.write(event.data)
                current.received += len(event.data)
        elif isinstance(event, p.LiteralTooLarge):
            self._discard_append()
            status = "NO" if event.limit == self.reader.max_literal else "BAD"
            text = f"Literal of {event.size} octets is over the limit of {event.limit}"
            self._reply(event.tag, status, text, "TOOBIG")
        elif isinstance(event, p.ParseError):
            self._discard_append()
            self._reply(event.tag, "BAD", event.message)
        elif isinstance(event, p.UnsupportedCharset):
            if event.save and self.state is State.SELECTED:
                self.saved_result = []  # RFC 5182 2.1: a SEARCH ... SAVE answered NO empties `$`
            self._reply(event.tag, "NO", "Unsupported charset", "BADCHARSET (UTF-8 US-ASCII)")
        else:  # IdleDone or AuthenticateResponse out of their exchange: the reader never gives them so
            self._reply(None, "BAD", "Unexpected input")

    def _reply(self, tag: str | None, status: str, text: str, code: str | None = None) -> None:
        if tag is None:
            if status == "BAD":
                self.errors += 1
            code_part = f"[{code}] " if code else ""
            self.untagged(f"{status} {code_part}{_text(text, self.utf8)}")
        else:
            self._tagged(tag, status, text, code)

    async def _run_command(self, command: p.Command) -> None:
        """Run one command and send its tagged reply: the one place failures become replies."""
        allowed = _ALLOWED.get(type(command), ())
        if self.state not in allowed:
            self._discard_append()
            where = ", ".join(s.value for s in allowed) or "no"
            self._tagged(command.tag, "BAD", f"{command.name} is only valid in the {where} state")
            return
        try:
            done = await self._dispatch(command)
        except CommandFailed as failure:
            if self.state is State.SELECTED and self.view is not None:
                await self.sync(_expunge_allowed(command))
            self._tagged(command.tag, failure.status, failure.text, failure.code)
            return
        except StoreFull as exc:
            log.error("imap client %s: %s refused: %s", self.conn.peer_ip, command.name, exc)
            self._tagged(command.tag, "NO", "Not enough disk space", "OVERQUOTA")
            return
        except StoreError as exc:
            log.error("imap client %s: %s failed: %s", self.conn.peer_ip, command.name, exc)
            self._tagged(command.tag, "NO", "Temporary failure, try again", "UNAVAILABLE")
            return
        except (ConnectionClosedError, ShutdownRequested):
            raise
        except Exception:
            log.exception("imap client %s: %s failed", self.conn.peer_ip, command.name)
            self._tagged(command.tag, "NO", "Internal server error", "SERVERBUG")
            return
        finally:
            self._discard_append()
        if done is None:
            return  # the command wrote its own tagged reply (LOGOUT, STARTTLS, IDLE)
        if self.state is State.SELECTED and self.view is not None:
            await self.sync(_expunge_allowed(command))
        self._tagged(command.tag, "OK", done.text, done.code)

    async def _dispatch(self, command: p.Command) -> Done | None:
        from postoffice.imap import commands_mailbox as mbx
        from postoffice.imap import commands_message as msg

        if isinstance(command, p.Capability):
            self.untagged(f"CAPABILITY {self.capabilities()}")
            return Done("CAPABILITY completed")
        if isinstance(command, p.Noop):
            return Done("NOOP completed")
        if isinstance(command, p.Check):
            return Done("CHECK completed")
        if isinstance(command, p.Logout):
            self.untagged("BYE Logging out")
            self._tagged(command.tag, "OK", "LOGOUT completed")
            self.state = State.LOGOUT
            return None
        if isinstance(command, p.Id):
            self.untagged('ID ("name" "Postoffice")')
            return Done("ID completed")
        if isinstance(command, p.StartTls):
            return await self._starttls(command)
        if isinstance(command, p.Login):
            return await self._login(command)
        if isinstance(command, p.Authenticate):
            return await self._authenticate(command)
        if isinstance(command, p.Enable):
            return self._enable(command)
        if isinstance(command, p.Namespace):
            self.untagged('NAMESPACE (("" "/")) NIL NIL')
            return Done("NAMESPACE completed")
        if isinstance(command, p.Idle):
            await self._idle(command)
            return None
        handler = mbx.HANDLERS.get(type(command)) or msg.HANDLERS.get(type(command))
        if handler is None:
            raise bad(f"{command.name} is not implemented")
        return await handler(self, command)

    # ------------------------------------------------------------------------------- not authenticated

    async def _starttls(self, command: p.StartTls) -> Done | None:
        if not self.conn.starttls_available:
            raise bad("TLS is already active" if self.conn.tls_active else "STARTTLS is not available here")
        self._tagged(command.tag, "OK", "Begin TLS negotiation now")
        await self.flush()
        await self.conn.start_tls()  # drops plaintext its buffer holds; the reader dropped its own
        return None

    async def _login(self, command: p.Login) -> Done:
        if not self.plaintext_allowed():
            raise no("Plaintext authentication is disabled; use STARTTLS first", "PRIVACYREQUIRED")
        result = await self.authenticator.login(
            protocol="imap",
            client_ip=self.conn.peer_ip,
            username=command.username,
            password=command.password,
            mechanism="LOGIN",
            tls=self.conn.tls_active,
        )
        return self._logged_in(result)

    async def _authenticate(self, command: p.Authenticate) -> Done:
        mechanism = create_mechanism(command.mechanism)
        if mechanism is None:
            raise no(f"Unsupported authentication mechanism {command.mechanism}", "CANNOT")
        if not self.plaintext_allowed():
            raise no("Plaintext authentication is disabled; use STARTTLS first", "PRIVACYREQUIRED")
        step = mechanism.start(command.initial_response)
        while isinstance(step, Challenge):
            self._out += f"+ {encode_challenge(step.data)}\r\n".encode()
            self.reader.expect_authenticate_response()
            event = await self.next_event(self.settings.autologout)
            if event is None:
                raise ConnectionClosedError("closed during AUTHENTICATE")
            if isinstance(event, p.ParseError):
                raise bad(event.message)
            if not isinstance(event, p.AuthenticateResponse):
                raise bad("Expected an authentication response")
            if event.cancelled:
                raise bad("Authentication cancelled")
            decoded = decode_response(event.line.decode("ascii", "replace"))
            if decoded is None:
                raise bad("Invalid base64 in the authentication response")
            step = mechanism.step(decoded)
        if not isinstance(step, Credentials):
            raise no("Authentication failed", "AUTHENTICATIONFAILED")
        result = await self.authenticator.login_sasl(
            protocol="imap",
            client_ip=self.conn.peer_ip,
            credentials=step,
            mechanism=command.mechanism.upper(),
            tls=self.conn.tls_active,
        )
        return self._logged_in(result)

    def _logged_in(self, result: object) -> Done:
        from postoffice.auth import AuthResult

        assert isinstance(result, AuthResult)
        if result.status == "locked-out":
            raise no("Too many failed logins; try later", "UNAVAILABLE")
        if result.status == "unavailable":
            raise no("Authentication temporarily unavailable, try again later", "UNAVAILABLE")
        if not result.ok or result.account is None:
            raise no("Authentication failed", "AUTHENTICATIONFAILED")
        self.account = result.account
        self.state = State.AUTHENTICATED
        self.conn.mark_logged_in()
        self._unsubscribe = self.store.subscribe(result.account.id, self._on_change)
        return Done("Logged in", f"CAPABILITY {self.capabilities()}")

    # ---------------------------------------------------------------------------------- authenticated

    def _enable(self, command: p.Enable) -> Done:
        enabled: list[str] = []
        for capability in command.capabilities:
            name = capability.upper()
            # RFC 5161 3.1 / RFC 9051 6.3.1: ENABLED lists only what this command newly enabled
            if name == "IMAP4REV2" and self.settings.imap4rev2 and not self.rev2:
                self.rev2 = True
                enabled.append("IMAP4rev2")
            elif name == "UTF8=ACCEPT" and not self._utf8_enabled:
                self._utf8_enabled = True
                enabled.append("UTF8=ACCEPT")
            else:
                continue
            self.utf8 = True
            self.reader.utf8 = True
        self.untagged("ENABLED" + "".join(" " + e for e in enabled))
        return Done("ENABLE completed")

    async def _idle(self, command: p.Idle) -> None:
        """RFC 2177 / RFC 9051 section 6.3.13: report changes as they happen until DONE."""
        self._out += b"+ idling\r\n"
        self.reader.expect_idle_done()
        read: asyncio.Task[bytes] | None = None
        wake: asyncio.Task[Literal[True]] | None = None
        try:
            while True:
                event = self.reader.next()
                if event is not None:
                    if isinstance(event, p.IdleDone):
                        if self.view is not None:
                            await self.sync(True)
                        self._tagged(command.tag, "OK", "IDLE terminated")
                    else:
                        self._tagged(command.tag, "BAD", "Expected DONE to end IDLE")
                    return
                if self.view is not None:
                    await self.sync(True)
                if self.state is State.LOGOUT:  # the selected mailbox was deleted: BYE, no more IDLE
                    return
                await self.flush()
                if read is None:
                    read = asyncio.create_task(self.conn.read(self.settings.idle_timeout, idle=True))
                self._wakeup.clear()
                waker = asyncio.ensure_future(self._wakeup.wait())
                wake = waker
                await asyncio.wait((read, waker), return_when=asyncio.FIRST_COMPLETED)
                waker.cancel()
                if read.done():
                    data = read.result()
                    read = None
                    if not data:
                        raise ConnectionClosedError("closed during IDLE")
                    self.reader.feed(data)
        finally:
            if wake is not None:
                wake.cancel()
            if read is not None:
                read.cancel()

    # ---------------------------------------------------------------------------------------- updates

    def _on_change(self, event: ChangeEvent) -> None:
        self.changes_seen += 1
        view = self.view
        if view is None or event.mailbox_id != view.mailbox_id:
            return
        if event.kind != "mailbox":
            view.dirty = True
            self._wakeup.set()
        elif "deleted" in event.extra:
            self.selected_deleted = True
            self._wakeup.set()

    async def sync(self, allow_expunge: bool) -> None:
        """Send the untagged updates of the selected mailbox (RFC 9051 section 5.2); EXPUNGE only when
        `allow_expunge` (section 7.5.1)."""
        view = self.view
        if view is None:
            return
        if self.selected_deleted:
            # RFC 2180 3.3: the mailbox was deleted under this session; like Dovecot, say so and disconnect
            # (the session cannot go on: its messages are gone and its sequence numbers mean nothing).
            self.untagged("BYE The selected mailbox was deleted by another session")
            self.result = "selected mailbox deleted"
            self.close_view()
            self.state = State.LOGOUT
            return
        if view.dirty:
            new = await self.read_back(view)
            if new and not self.rev2 and view.read_only:
                # RFC 3501 2.3.2: a read-only session sees \Recent without claiming it (for a later SELECT)
                view.recent.update(new)
            elif new and not self.rev2:
                first_recent = await self.claim_recent(view.mailbox_id)
                view.recent.update(uid for uid in new if uid >= first_recent)
        if allow_expunge:
            for seq in view.take_expunges():
                self.untagged(f"{seq} EXPUNGE")
        self.announce_keywords(view, [*view.flag_updates, *view.uids[view.reported_exists :]])
        for uid in sorted(view.flag_updates):
            number = view.seq_of(uid)
            if number is not None and uid not in view.gone:
                # RFC 9051 7.5.2: an unsolicited FETCH MUST include UID (harmless for IMAP4rev1 clients)
                flags = view.flags_of(uid, with_recent=not self.rev2)
                self.untagged(f"{number} FETCH (UID {uid} FLAGS ({flags}))")
        view.flag_updates.clear()
        if view.exists != view.reported_exists:
            view.reported_exists = view.exists
            self.untagged(f"{view.exists} EXISTS")
            if not self.rev2:
                view.reported_recent = len(view.recent)
                self.untagged(f"{view.reported_recent} RECENT")

    def announce_keywords(self, view: MailboxView, uids: list[int]) -> None:
        """A keyword new to the mailbox is announced with FLAGS (and PERMANENTFLAGS when writable) before any
        FETCH response that shows it (RFC 9051 sections 7.3.5 and 7.1), so clients can cache the flag list."""
        new = view.unannounced_keywords(uids)
        if not new:
            return
        view.keywords |= new
        flags = " ".join((*SYSTEM_FLAGS, *sorted(view.keywords)))
        self.untagged(f"FLAGS ({flags})")
        if not view.read_only:
            self.untagged(f"OK [PERMANENTFLAGS ({flags} \\*)] Flags permitted")

    async def claim_recent(self, mailbox_id: int) -> int:
        """`MailStore.claim_recent`, except that a claim the store cannot write (a full disk) claims nothing:
        the mailbox opens all the same, and the messages stay \\Recent for the next session
        (docs/decisions/0030). Returns the first UID that is \\Recent here."""
        try:
            return await self.store.claim_recent(mailbox_id)
        except NotFound:
            raise
        except StoreError as exc:
            log.warning("imap client %s: \\Recent not claimed: %s", self.conn.peer_ip, exc)
            return NO_UID

    async def read_back(self, view: MailboxView) -> list[int]:
        """Bring `view` up to date with the store: only what changed after the MODSEQ it has seen (every
        message is gone when the mailbox no longer exists). Returns the new UIDs."""
        try:
            changes = await self.store.changes_since(view.mailbox_id, view.modseq)
        except NotFound:
            view.vanish()
            return []
        return view.apply(changes)

    def resolve(self, sequence: object, *, uid: bool) -> list[int]:
        from postoffice.imap.sequence import SequenceSet

        assert isinstance(sequence, SequenceSet) and self.view is not None
        if sequence.saved:
            # RFC 5182 2.1: "$" is the saved result (empty when there is none); expunged UIDs drop out.
            return self.saved_uids()
        try:
            return self.view.resolve(sequence, uid=uid)
        except InvalidSequence as exc:
            raise bad(f"Invalid message sequence number: {exc}") from None

    def saved_uids(self) -> list[int]:
        """The saved search result (RFC 5182) restricted to the messages still in the view, ascending."""
        view = self.view
        if view is None or not self.saved_result:
            return []
        return [uid for uid in self.saved_result if uid in view and uid not in view.gone]

    def close_view(self) -> None:
        self.view = None
        self.selected_deleted = False
        self.saved_result = None  # RFC 5182 2.1: SELECT, EXAMINE, CLOSE and UNSELECT reset it
        if self.state is State.SELECTED:
            self.state = State.AUTHENTICATED

    # ------------------------------------------------------------------------------------------ APPEND

    async def _append_start(self, event: p.AppendMessageStart) -> None:
        def refuse(status: str, text: str, code: str | None = None) -> None:
            if event.synchronizing:
                self.reader.refuse_literal()
            else:
                self.reader.discard_command()
            self._discard_append()
            self._tagged(event.tag, status, text, code)

        if self.state not in _AUTHENTICATED or self.account is None:
            refuse("BAD", "APPEND is only valid in the authenticated or selected state")
            return
        if event.message.utf8 and not self.utf8:
            refuse("BAD", "APPEND UTF8 needs ENABLE UTF8=ACCEPT first (RFC 6855 section 4)")
            return
        if event.message.size == 0:
            # RFC 3502 6.3.11: a zero-length message literal is an error (NO) and cancels the whole command
            refuse("NO", "An empty message cannot be appended; the APPEND is cancelled")
            return
        pending = self._append
        if event.index > 0 and pending is not None and pending.tag == event.tag:
            # MULTIAPPEND (RFC 3502): the next message of the same command, same mailbox.
            pending.messages.append(AppendSpool(event.message, self._new_spool(pending)))
            return
        if not event.mailbox.valid:
            refuse("NO", "Mailbox does not exist (the name is not valid modified UTF-7)", "NONEXISTENT")
            return
        try:
            mailbox = await self.store.get_mailbox(self.account.id, event.mailbox.name)
        except StoreError as exc:
            log.error("imap client %s: APPEND lookup failed: %s", self.conn.peer_ip, exc)
            refuse("NO", "Temporary failure, try again", "UNAVAILABLE")
            return
        if mailbox is None:
            refuse("NO", "Mailbox does not exist", "TRYCREATE")
            return
        self._discard_append()
        first = AppendSpool(event.message, self._new_spool(None))
        self._append = _AppendInProgress(event.tag, mailbox, [first])

    def _new_spool(self, pending: _AppendInProgress | None) -> IO[bytes]:
        # The messages of one command share SPOOL_MEMORY in memory; past that they go to files at once
        # (max_size 1: a SpooledTemporaryFile with max_size 0 would never roll over).
        used = sum(item.received for item in pending.messages) if pending is not None else 0
        return tempfile.SpooledTemporaryFile(  # closed by _discard_append
            max_size=max(SPOOL_MEMORY - used, 1),
            dir=str(self.settings.spool_dir) if self.settings.spool_dir is not None else None,
        )

    def take_append(self, tag: str) -> _AppendInProgress | None:
        append = self._append
        if append is None or append.tag != tag:
            return None
        self._append = None
        return append

    def _discard_append(self) -> None:
        if self._append is not None:
            self._append.close()
            self._append = None


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
