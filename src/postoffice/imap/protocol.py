"""The IMAP protocol core: the state machine of RFC 9051 / RFC 3501 around `CommandReader`, without I/O of
its own (docs/decisions/0013, 0038).

What it implements
- States (RFC 9051 section 3): not authenticated -> authenticated -> selected -> logout. A command in the
  wrong state is answered BAD; every parse error is answered BAD with the reader's reason (RFC 9051 section
  7.1.5). A BAD never ends a session: only `MAX_ERRORS` BAD replies in a row, with no command completing
  (OK or NO) between them, do, announced with BYE (docs/decisions/0020).
- Any state: CAPABILITY, NOOP, LOGOUT, ID (RFC 2971). Not authenticated: STARTTLS (section 6.2.1), LOGIN
  (6.2.3), AUTHENTICATE PLAIN/LOGIN with SASL-IR (6.2.2, RFC 4959), all through `auth.Authenticator`.
  Authenticated: ENABLE (RFC 5161: UTF8=ACCEPT, RFC 6855; IMAP4rev2 only when advertised; CONDSTORE,
  QRESYNC; UIDONLY, RFC 9586: then every command that names messages by number is refused with BAD
  [UIDREQUIRED] before it runs, `_names_messages_by_number`, docs/decisions/0066), NAMESPACE, IDLE
  (RFC 2177), the mailbox commands of `postoffice.imap.commands_mailbox`, GETMETADATA / SETMETADATA of
  `postoffice.imap.commands_metadata` (RFC 5464), SETACL / DELETEACL / GETACL / LISTRIGHTS / MYRIGHTS of
  `postoffice.imap.commands_acl` (RFC 4314; `imap.acl` checks every command's rights), GENURLAUTH /
  RESETKEY / URLFETCH of `postoffice.imap.commands_urlauth` (RFC 4467, RFC 5524) and APPEND's CATENATE
  (RFC 4469: each TEXT literal spooled by `commands_catenate.text_start`). Every literal of APPEND,
  MULTIAPPEND, REPLACE and CATENATE passes the same checks before it is read (`_open_append`).
  Selected: the message commands of `postoffice.imap.commands_message`.
- Untagged updates (RFC 9051 section 5.2, 7.5.1): at the end of every command in the selected state the
  view is brought up to date (`SessionState.sync`) and EXISTS / RECENT / FETCH (FLAGS) are sent before the
  tagged reply. EXPUNGE responses are held back during FETCH, STORE and SEARCH (not their UID forms) and sent
  at the end of the next command that allows them; IDLE sends them at once. After a NOTIFY (RFC 5465,
  `postoffice.imap.commands_notify`): only what it asks for, and also with no command in progress
  (`Need.NOTIFY`).

How it is driven (bytes in, bytes out)
    core = ImapProtocol(store, authenticator, settings, transport, wake=...)
    core.greeting()
    loop:
        need = await core.process()      # runs every complete command that is buffered
        Need.INPUT: flush, read from the client (`in_command` says whether a command is under way),
                    core.receive_data(data)
        Need.TLS:   flush, start TLS on the connection (the reader dropped what it had buffered)
        Need.COMPRESS: flush, then compress and decompress everything from now on (RFC 4978, DEFLATE)
        Need.IDLE:  flush, wait for input or for `wake` (a change to the selected mailbox), feed any input
        Need.NOTIFY: as IDLE, between commands after a NOTIFY (RFC 5465): no command is in progress, and a
                    change the client asked to hear of (`wake`) is told by the next `process` at once
        Need.CLOSE: flush and close: LOGOUT, BYE, or the selected mailbox was deleted
  `process` awaits the store (`MailAccess`) and the authenticator, and writes through the transport only
  when `FLUSH_THRESHOLD` octets are queued in the middle of a command. It never reads and never waits for
  the client: the exchanges that span several client lines (AUTHENTICATE challenges, IDLE ... DONE) are
  states of the core, continued by the next `process`. Reading, timeouts, TLS and the IDLE wait are the
  glue's (`postoffice.imap.session`); the transcript tests (tests/imap/transcript.py) drive the core the
  same way with no sockets.

Implementation notes
- One place maps failures to replies (`_run_command`): `CommandFailed` gives the tagged NO/BAD it carries, a
  `StoreFull` "NO [OVERQUOTA]" (as Dovecot answers a full disk), an `OverQuota` (APPEND or COPY beyond the
  account's storage quota, checked by the store: docs/decisions/0053) "NO [OVERQUOTA]" too (RFC 9051
  section 7.1; RFC 9208 section 4.3 for APPEND, COPY and MOVE; GETQUOTA and GETQUOTAROOT report it,
  SETQUOTA is refused: QUOTASET is not offered), another `StoreError` "NO [UNAVAILABLE]", anything else
  is logged with its traceback and answered "NO [SERVERBUG]"; the peer never sees a traceback.
  An exception from the transport is not a command's failure: it goes to the glue, which ends the session.
- Output is queued and written when the core needs more input, and whenever `FLUSH_THRESHOLD` octets are
  queued. Input is only fed when the reader has no complete command left, so a client that pipelines
  without reading its responses stops being read (bounded pipelining): the session holds at most
  `max_line` octets of commands plus `FLUSH_THRESHOLD` of responses.
- STARTTLS: the reader drops everything buffered after the STARTTLS line, and `Connection.start_tls` drops
  what its own buffer holds (CVE-2011-0411).
- COMPRESS DEFLATE (RFC 4978, docs/decisions/0063): after login, once; the tagged OK goes out as it is, then
  the glue has the connection compress and decompress (`Need.COMPRESS`).
"""

from __future__ import annotations

import functools
import logging
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import IO

from postoffice.auth import Authenticator, AuthResult, scram
from postoffice.auth.sasl import (
    Challenge,
    Credentials,
    NeedScramSecret,
    SaslMechanism,
    SaslStep,
    ScramOutcome,
    create_mechanism,
    decode_response,
    encode_challenge,
)
from postoffice.auth.scram import ScramMechanism, ScramPlusMechanism
from postoffice.imap import (
    acl,
    commands_acl,
    commands_catenate,
    commands_context,
    commands_mailbox,
    commands_message,
    commands_metadata,
    commands_notify,
    commands_sort,
    commands_urlauth,
)
from postoffice.imap import parser as p
from postoffice.imap import search as search_mod
from postoffice.imap.access import MailAccess
from postoffice.imap.settings import ImapSettings
from postoffice.imap.state import (
    FLUSH_THRESHOLD,
    AppendInProgress,
    AppendSpool,
    CommandFailed,
    Done,
    SessionState,
    State,
    Transport,
    bad,
    no,
)
from postoffice.store import OverQuota, StoreError, StoreFull

log = logging.getLogger("postoffice.imap")

#: BAD replies in a row (no command completed between them) after which the server says BYE: a client
#: this confused is not an IMAP client. Like Dovecot's "bad commands in a row"; a command that completes
#: with OK or NO starts the count again, so a long session is never ended by BADs spread over it.
MAX_ERRORS = 50
#: APPEND messages are spooled in memory up to this size, then in a temporary file.
SPOOL_MEMORY = 1024 * 1024
#: The text of BAD [UIDREQUIRED] (RFC 9586 3).
UIDREQUIRED_TEXT = "Message numbers are not allowed once UIDONLY is enabled"


class Need(Enum):
    """What the core needs from its driver before `process` can go on (see the module docstring)."""

    INPUT = "input"
    TLS = "tls"
    COMPRESS = "compress"
    IDLE = "idle"
    NOTIFY = "notify"
    CLOSE = "close"


def _text(text: str, utf8: bool) -> str:
    """Response text is ASCII unless the client enabled UTF-8 (RFC 9051 section 9 `text`, RFC 6855): text
    that quotes client input (a parse error near 8-bit octets) is escaped, so a strict client can parse it."""
    if utf8 or text.isascii():
        return text
    return text.encode("ascii", "backslashreplace").decode("ascii")


_ANY_STATE = (State.NOT_AUTHENTICATED, State.AUTHENTICATED, State.SELECTED)
_AUTHENTICATED = (State.AUTHENTICATED, State.SELECTED)
_ALLOWED: dict[type[p.Command], tuple[State, ...]] = {
    p.Capability: _ANY_STATE,
    p.Noop: _ANY_STATE,
    p.Logout: _ANY_STATE,
    p.Id: _ANY_STATE,
    p.StartTls: (State.NOT_AUTHENTICATED,),
    p.Compress: _AUTHENTICATED,  # RFC 4978 3: after login (compressed secrets invite CRIME-like attacks)
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
    p.GetQuota: _AUTHENTICATED,
    p.GetQuotaRoot: _AUTHENTICATED,
    p.SetQuota: _AUTHENTICATED,
    p.GetMetadata: _AUTHENTICATED,  # RFC 5464 4.2, 4.3: authenticated or selected
    p.SetMetadata: _AUTHENTICATED,
    p.SetAcl: _AUTHENTICATED,  # RFC 4314 section 7: command-auth
    p.DeleteAcl: _AUTHENTICATED,
    p.GetAcl: _AUTHENTICATED,
    p.ListRights: _AUTHENTICATED,
    p.MyRights: _AUTHENTICATED,
    p.Notify: _AUTHENTICATED,  # RFC 5465 section 8: command-auth
    p.GenUrlAuth: _AUTHENTICATED,  # RFC 4467 section 9: command-auth
    p.ResetKey: _AUTHENTICATED,
    p.UrlFetch: _AUTHENTICATED,
    p.Append: _AUTHENTICATED,
    p.Replace: (State.SELECTED,),
    p.Check: (State.SELECTED,),
    p.Close: (State.SELECTED,),
    p.Unselect: (State.SELECTED,),
    p.Expunge: (State.SELECTED,),
    p.UidExpunge: (State.SELECTED,),
    p.Search: (State.SELECTED,),
    p.Sort: (State.SELECTED,),
    p.Thread: (State.SELECTED,),
    p.CancelUpdate: (State.SELECTED,),  # RFC 5267 section 5: command-select
    p.Fetch: (State.SELECTED,),
    p.Store: (State.SELECTED,),
    p.Copy: (State.SELECTED,),
    p.Move: (State.SELECTED,),
}

#: Commands that leave the selected mailbox: no rights on it are needed to run them (`_dispatch`).
_LEAVES_MAILBOX = (p.Select, p.Examine, p.Close, p.Unselect)

_HANDLERS = {
    **commands_mailbox.HANDLERS,
    **commands_message.HANDLERS,
    **commands_sort.HANDLERS,
    **commands_metadata.HANDLERS,
    **commands_acl.HANDLERS,
    **commands_notify.HANDLERS,
    **commands_context.HANDLERS,
    **commands_urlauth.HANDLERS,
}


def _expunge_allowed(command: p.Command) -> bool:
    """RFC 9051 section 7.5.1: no EXPUNGE while responding to FETCH, STORE or SEARCH (nor SORT and THREAD,
    RFC 5256, which name messages as SEARCH does); their UID forms may."""
    if isinstance(command, p.Fetch | p.Store | p.Search | p.Sort | p.Thread):
        return command.uid
    return True


def _names_messages_by_number(command: p.Command) -> bool:
    """RFC 9586 3: what a session that enabled UIDONLY may not send (BAD [UIDREQUIRED]): the forms of FETCH,
    STORE, SEARCH, SORT, THREAD, COPY, MOVE and REPLACE without UID, and a search key that is a sequence set
    of message numbers in their UID forms. `$` (RFC 5182) names saved messages, not numbers: it stays."""
    numbered = p.Fetch | p.Store | p.Copy | p.Move | p.Replace | p.Search | p.Sort | p.Thread
    if isinstance(command, numbered) and not command.uid:
        return True
    if isinstance(command, p.Search | p.Sort | p.Thread):
        return search_mod.uses_sequence_numbers(command.keys)
    return False


def _append_name(event: p.AppendMessageStart | p.CatenateTextStart) -> str:
    """The command a literal belongs to, for its refusals and the log."""
    return "APPEND" if event.replace is None else "REPLACE"


@dataclass
class _SaslExchange:
    """An AUTHENTICATE waiting for the client's response to a challenge (RFC 9051 section 6.2.2)."""

    command: p.Authenticate
    mechanism: SaslMechanism


class ImapProtocol:
    def __init__(
        self,
        store: MailAccess,
        authenticator: Authenticator,
        settings: ImapSettings,
        transport: Transport,
        *,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.session = SessionState(store, settings, transport, wake=wake)
        self.authenticator = authenticator
        self.settings = settings
        self.transport = transport
        self.reader = p.CommandReader(max_line=settings.max_line, max_literal=settings.append_limit)
        self.errors = 0
        self._utf8_enabled = False  # UTF8=ACCEPT itself was enabled (RFC 6855)
        self._sasl: _SaslExchange | None = None
        self._idling: p.Idle | None = None
        self._tls_requested = False
        self._compress_requested = False
        #: COMPRESS DEFLATE is on (RFC 4978): the glue compresses and decompresses from the next octet
        self.compressing = False

    # ------------------------------------------------------------------------------------ the interface

    def greeting(self) -> None:
        self.session.untagged(f"OK [CAPABILITY {self.capabilities()}] Postoffice ready")

    def receive_data(self, data: bytes) -> None:
        self.reader.feed(data)

    @property
    def in_command(self) -> bool:
        """A command has been started and not completed: the client owes octets (not an idle wait)."""
        return self.reader.in_command

    @property
    def exchange(self) -> str | None:
        """The multi-line exchange under way ("AUTHENTICATE", "IDLE"), for the log when the client leaves."""
        if self._sasl is not None:
            return "AUTHENTICATE"
        if self._idling is not None:
            return "IDLE"
        return None

    async def flush(self) -> None:
        await self.session.flush()

    async def process(self) -> Need:
        """Handle everything the client has sent that can be handled now; what is needed to go on."""
        session = self.session
        while session.state is not State.LOGOUT:
            idling = self._idling
            if idling is not None:
                await self._run_command(idling, functools.partial(self._idle_turn, idling))
                if self._idling is not None:
                    return Need.IDLE
            else:
                event = self.reader.next()
                if event is None:
                    if session.notifications is None or self.reader.in_command:
                        return Need.INPUT
                    # RFC 5465 section 3: no command is in progress; what NOTIFY asks for goes now, and the
                    # glue waits for input or for the next change to tell (`wake`)
                    await commands_notify.push(session)
                    if session.ended:  # the selected mailbox was deleted: BYE
                        continue
                    return Need.NOTIFY if session.notifications is not None else Need.INPUT
                if self._sasl is not None:
                    step = functools.partial(self._authenticate_step, self._sasl, event)
                    await self._run_command(self._sasl.command, step)
                else:
                    await self._event(event)
            if self.errors >= MAX_ERRORS and not session.ended:  # the command may have ended the session
                session.untagged("BYE Too many invalid commands")
                session.end_reason = "too many errors"
                session.state = State.LOGOUT
            if self._tls_requested:
                self._tls_requested = False
                return Need.TLS
            if self._compress_requested:
                self._compress_requested = False
                self.compressing = True
                return Need.COMPRESS
            if session.pending_output() >= FLUSH_THRESHOLD:
                await session.flush()
        return Need.CLOSE

    def close(self) -> None:
        """The connection is gone: spooled APPEND data and the change subscription go."""
        self.session.close()

    # ------------------------------------------------------------------------------------------ output

    def _tagged(self, tag: str, status: str, text: str, code: str | None = None) -> None:
        self.errors = self.errors + 1 if status == "BAD" else 0  # a run of BADs (MAX_ERRORS)
        code_part = f"[{code}] " if code else ""
        self.session.send(f"{tag} {status} {code_part}{_text(text, self.session.utf8)}\r\n".encode())

    def _reply(self, tag: str | None, status: str, text: str, code: str | None = None) -> None:
        if tag is None:
            if status == "BAD":
                self.errors += 1
            code_part = f"[{code}] " if code else ""
            self.session.untagged(f"{status} {code_part}{_text(text, self.session.utf8)}")
        else:
            self._tagged(tag, status, text, code)

    # ------------------------------------------------------------------------------------ capabilities

    def plaintext_allowed(self) -> bool:
        return self.authenticator.plaintext_allowed(self.transport.tls_active)  # decision 0035

    def capabilities(self) -> str:
        caps = ["IMAP4rev1"]
        if self.settings.imap4rev2:
            caps.append("IMAP4rev2")
        if self.session.state is State.NOT_AUTHENTICATED:
            if self.transport.starttls_available:
                caps.append("STARTTLS")
            if self.plaintext_allowed():  # SCRAM too: a session without TLS is not safe after it (0068)
                caps += [f"AUTH={name}" for name in scram.offered(self.transport.channel_binding())]
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
            "REPLACE",
            "ESEARCH",
            "SEARCHRES",
            "SORT",
            "SORT=DISPLAY",
            "ESORT",
            "CONTEXT=SEARCH",
            "CONTEXT=SORT",
            "THREAD=ORDEREDSUBJECT",
            "THREAD=REFERENCES",
            "BINARY",
            "MULTIAPPEND",
            "CATENATE",
            "URLAUTH",
            "URLAUTH=BINARY",
            "LIST-EXTENDED",
            "LIST-STATUS",
            "STATUS=SIZE",
            "CONDSTORE",
            "QRESYNC",
            "UIDONLY",
            "OBJECTID",
            "PREVIEW",
            "QUOTA",
            "QUOTA=RES-STORAGE",
            "METADATA",
            "METADATA-SERVER",
            "ACL",  # RFC 4314, with the shared namespace (decision 0073)
            acl.RIGHTS_CAPABILITY,
            "LIST-MYRIGHTS",  # RFC 8440
            "NOTIFY",
            "WITHIN",
            "SAVEDATE",
            "COMPRESS=DEFLATE",
            f"APPENDLIMIT={self.settings.append_limit}",
            "UTF8=ACCEPT",
        ]
        return " ".join(caps)

    # ---------------------------------------------------------------------------------------- events

    async def _event(self, event: p.ReaderEvent) -> None:
        session = self.session
        if isinstance(event, p.Command):
            allowed = _ALLOWED.get(type(event), ())
            if session.state not in allowed:
                session.discard_append()
                where = ", ".join(s.value for s in allowed) or "no"
                self._tagged(event.tag, "BAD", f"{event.name} is only valid in the {where} state")
                return
            await self._run_command(event, lambda: self._dispatch(event))
        elif isinstance(event, p.NeedContinuation):
            session.send(b"+ Ready for literal data\r\n")
        elif isinstance(event, (p.AppendMessageStart, p.CatenateTextStart)):
            await self._literal_start(event)
        elif isinstance(event, p.AppendData):
            if session.pending_append is not None:
                current = session.pending_append.current
                current.spool.write(event.data)
                current.received += len(event.data)
        elif isinstance(event, p.LiteralTooLarge):
            session.discard_append()
            if event.command == "SETMETADATA" and session.state in _AUTHENTICATED:
                # RFC 5464 4.3: a value too large "MUST" be NO [METADATA MAXSIZE n], n what would be taken
                limit = min(commands_metadata.MAX_VALUE_SIZE, event.limit)
                text = f"Literal of {event.size} octets is over the limit of {limit}"
                self._reply(event.tag, "NO", text, f"METADATA MAXSIZE {limit}")
                return
            status = "NO" if event.limit == self.reader.max_literal else "BAD"
            text = f"Literal of {event.size} octets is over the limit of {event.limit}"
            self._reply(event.tag, status, text, "TOOBIG")
        elif isinstance(event, p.ParseError):
            session.discard_append()
            self._reply(event.tag, "BAD", event.message)
        elif isinstance(event, p.UnsupportedCharset):
            if event.save and session.state is State.SELECTED:
                session.saved_result = []  # RFC 5182 2.1: a SEARCH ... SAVE answered NO empties `$`
            self._reply(event.tag, "NO", "Unsupported charset", "BADCHARSET (UTF-8 US-ASCII)")
        else:  # IdleDone or AuthenticateResponse out of their exchange: the reader never gives them so
            self._reply(None, "BAD", "Unexpected input")

    async def _run_command(self, command: p.Command, run: Callable[[], Awaitable[Done | None]]) -> None:
        """Run (a step of) one command and send its tagged reply: the one place failures become replies."""
        session = self.session
        session.command = command  # (NOTIFY leaves out what this command changes, RFC 5465 section 5)
        try:
            done = await run()
        except CommandFailed as failure:
            if session.state is State.SELECTED and session.view is not None:
                await session.sync(_expunge_allowed(command))
                highest = session.closing_highest_modseq(False)
                if highest is not None:
                    session.untagged(f"OK [HIGHESTMODSEQ {highest}] Highest")
            self._tagged(command.tag, failure.status, failure.text, failure.code)
            return
        except OverQuota as exc:
            log.info("imap client %s: %s refused: %s", self.transport.peer_ip, command.name, exc)
            if session.state is State.SELECTED and session.view is not None:
                await session.sync(_expunge_allowed(command))
            text = "Message larger than the storage quota" if exc.permanent else "Over the storage quota"
            self._tagged(command.tag, "NO", text, "OVERQUOTA")
            return
        except StoreFull as exc:
            log.error("imap client %s: %s refused: %s", self.transport.peer_ip, command.name, exc)
            if session.state is State.SELECTED and session.view is not None:
                # an EXPUNGE that removed some messages before the disk stopped it says which (decision 0030)
                await session.sync(_expunge_allowed(command))
            self._tagged(command.tag, "NO", "Not enough disk space", "OVERQUOTA")
            return
        except StoreError as exc:
            log.error("imap client %s: %s failed: %s", self.transport.peer_ip, command.name, exc)
            self._tagged(command.tag, "NO", "Temporary failure, try again", "UNAVAILABLE")
            return
        except Exception as exc:
            if exc is session.transport_error:
                raise  # the connection failed: the glue ends the session
            log.exception("imap client %s: %s failed", self.transport.peer_ip, command.name)
            self._tagged(command.tag, "NO", "Internal server error", "SERVERBUG")
            return
        finally:
            session.command = None
            session.discard_append()
        if done is None:
            return  # the command wrote its own tagged reply (LOGOUT, STARTTLS, IDLE), or is not over yet
        code = done.code
        if session.state is State.SELECTED and session.view is not None:
            await session.sync(_expunge_allowed(command), expunged=done.expunged)
            highest = session.closing_highest_modseq(done.expunged)
            if highest is not None:
                if code is None:
                    code = f"HIGHESTMODSEQ {highest}"
                else:  # one response code per response: this one goes untagged, just before (RFC 7162 6)
                    session.untagged(f"OK [HIGHESTMODSEQ {highest}] Highest")
        self._tagged(command.tag, "OK", done.text, code)

    async def _dispatch(self, command: p.Command) -> Done | None:
        session = self.session
        if isinstance(command, p.Capability):
            session.untagged(f"CAPABILITY {self.capabilities()}")
            return Done("CAPABILITY completed")
        if isinstance(command, (p.Noop, p.Check)):
            # RFC 9051 6.1.2: the poll for updates reads the store whether or not a notification came: a
            # change committed a moment ago may have been seen by this session's last SEARCH or FETCH
            # already (the store read it) while its notification is still on its way from the writer
            if session.view is not None:
                session.view.dirty = True
            return Done(f"{command.name} completed")
        if isinstance(command, p.Logout):
            session.untagged("BYE Logging out")
            self._tagged(command.tag, "OK", "LOGOUT completed")
            session.state = State.LOGOUT
            return None
        if isinstance(command, p.Id):
            session.untagged('ID ("name" "Postoffice")')
            return Done("ID completed")
        if isinstance(command, p.Compress):
            return self._compress(command)
        if isinstance(command, p.StartTls):
            return self._starttls(command)
        if isinstance(command, p.Login):
            return await self._login(command)
        if isinstance(command, p.Authenticate):
            return await self._authenticate(command)
        if isinstance(command, p.Enable):
            return self._enable(command)
        if isinstance(command, p.Namespace):
            # RFC 2342: the personal namespace, and the other users' one of ACL (decision 0073); no shared one
            session.untagged(f'NAMESPACE (("" "/")) (("{acl.SHARED_PREFIX}" "/")) NIL')
            return Done("NAMESPACE completed")
        if isinstance(command, p.Idle):
            self._idle(command)
            return None
        if session.selected_deleted and not isinstance(command, (p.Select, p.Examine, p.Unselect)):
            # the selected mailbox was deleted: its id may be another mailbox's already (SQLite gives the
            # highest id again), maybe another account's: no command acts on it, BYE first (`sync`)
            await session.sync(False)
            return None
        # another account's mailbox is selected: "r" is read again before the command runs (RFC 4314 5.1.1);
        # without it the session ends with BYE, and nothing more of the mailbox is read
        leaves = isinstance(command, _LEAVES_MAILBOX)
        if session.selected_owner is not None and not leaves and not await session.shared_access():
            return None
        handler = _HANDLERS.get(type(command))
        if handler is None:
            raise bad(f"{command.name} is not implemented")
        if session.uidonly and _names_messages_by_number(command):
            raise bad(UIDREQUIRED_TEXT, "UIDREQUIRED")  # RFC 9586 3, before anything is done
        return await handler(session, command)

    # ------------------------------------------------------------------------------- not authenticated

    def _compress(self, command: p.Compress) -> Done | None:
        """RFC 4978: DEFLATE only, once per connection; the tagged OK goes out uncompressed, everything after
        it (both ways) is compressed (`Need.COMPRESS`)."""
        if self.compressing:
            raise no("Compression is already active", "COMPRESSIONACTIVE")
        if command.mechanism != "DEFLATE":
            raise no(f"Unknown compression mechanism {command.mechanism}", "CANNOT")
        self._tagged(command.tag, "OK", "DEFLATE active")
        self._compress_requested = True  # the reader has dropped what it had buffered after this line
        return None

    def _starttls(self, command: p.StartTls) -> Done | None:
        transport = self.transport
        if not transport.starttls_available:
            raise bad("TLS is already active" if transport.tls_active else "STARTTLS is not available here")
        self._tagged(command.tag, "OK", "Begin TLS negotiation now")
        self._tls_requested = True  # the reader has dropped what it had buffered after this line
        return None

    async def _login(self, command: p.Login) -> Done:
        if not self.plaintext_allowed():
            raise no("Plaintext authentication is disabled; use STARTTLS first", "PRIVACYREQUIRED")
        result = await self.authenticator.login(
            protocol="imap",
            client_ip=self.transport.peer_ip,
            username=command.username,
            password=command.password,
            mechanism="LOGIN",
            tls=self.transport.tls_active,
        )
        return self._logged_in(result)

    async def _authenticate(self, command: p.Authenticate) -> Done | None:
        if not self.plaintext_allowed():
            raise no("Authentication is disabled without TLS; use STARTTLS first", "PRIVACYREQUIRED")
        name = command.mechanism.upper()
        mechanism: SaslMechanism | None
        if name in (ScramMechanism.name, ScramPlusMechanism.name):
            # -PLUS only where the connection can bind (TLS 1.3, decision 0068)
            mechanism = scram.create(name, self.transport.channel_binding())
            if mechanism is None:
                raise no("SCRAM-SHA-256-PLUS needs a TLS 1.3 connection", "CANNOT")
        else:
            mechanism = create_mechanism(command.mechanism)
            if mechanism is None:
                raise no(f"Unsupported authentication mechanism {command.mechanism}", "CANNOT")
        exchange = _SaslExchange(command, mechanism)
        return await self._authenticate_next(exchange, mechanism.start(command.initial_response))

    async def _authenticate_step(self, exchange: _SaslExchange, event: p.ReaderEvent) -> Done | None:
        """The client's response to a challenge (any reader event: the reader expected a response line)."""
        self._sasl = None
        if isinstance(event, p.ParseError):
            raise bad(event.message)
        if not isinstance(event, p.AuthenticateResponse):
            raise bad("Expected an authentication response")
        if event.cancelled:
            raise bad("Authentication cancelled")
        decoded = decode_response(event.line.decode("ascii", "replace"))
        if decoded is None:
            raise bad("Invalid base64 in the authentication response")
        return await self._authenticate_next(exchange, exchange.mechanism.step(decoded))

    async def _authenticate_next(self, exchange: _SaslExchange, step: SaslStep) -> Done | None:
        if isinstance(step, Challenge):
            self.session.send(f"+ {encode_challenge(step.data)}\r\n".encode())
            self.reader.expect_authenticate_response()
            self._sasl = exchange
            return None  # continued by `_authenticate_step` with the client's next line
        if isinstance(step, NeedScramSecret) and isinstance(exchange.mechanism, ScramMechanism):
            secret = await self.authenticator.scram_secret(step.authcid, client_ip=self.transport.peer_ip)
            return await self._authenticate_next(exchange, exchange.mechanism.with_secret(secret))
        if isinstance(step, ScramOutcome):
            result = await self.authenticator.scram_finish(
                protocol="imap",
                client_ip=self.transport.peer_ip,
                outcome=step,
                mechanism=exchange.command.mechanism.upper(),
                tls=self.transport.tls_active,
            )
            return self._logged_in(result)
        if not isinstance(step, Credentials):
            raise no("Authentication failed", "AUTHENTICATIONFAILED")
        result = await self.authenticator.login_sasl(
            protocol="imap",
            client_ip=self.transport.peer_ip,
            credentials=step,
            mechanism=exchange.command.mechanism.upper(),
            tls=self.transport.tls_active,
        )
        return self._logged_in(result)

    def _logged_in(self, result: AuthResult) -> Done:
        if result.status == "locked-out":
            raise no("Too many failed logins; try later", "UNAVAILABLE")
        if result.status == "unavailable":
            raise no("Authentication temporarily unavailable, try again later", "UNAVAILABLE")
        if not result.ok or result.account is None:
            raise no("Authentication failed", "AUTHENTICATIONFAILED")
        self.session.logged_in(result.account)
        self.transport.mark_logged_in()
        return Done("Logged in", f"CAPABILITY {self.capabilities()}")

    # ---------------------------------------------------------------------------------- authenticated

    def _enable(self, command: p.Enable) -> Done:
        session = self.session
        enabled: list[str] = []
        for capability in command.capabilities:
            name = capability.upper()
            # RFC 5161 3.1 / RFC 9051 6.3.1: ENABLED lists only what this command newly enabled
            if name == "IMAP4REV2" and self.settings.imap4rev2 and not session.rev2:
                session.rev2 = True
                enabled.append("IMAP4rev2")
            elif name == "UTF8=ACCEPT" and not self._utf8_enabled:
                self._utf8_enabled = True
                enabled.append("UTF8=ACCEPT")
            elif name == "CONDSTORE":
                if not session.condstore:
                    session.enable_condstore()
                    enabled.append("CONDSTORE")
                continue
            elif name == "QRESYNC":
                # RFC 7162 3.2.3: QRESYNC implies CONDSTORE; ENABLED names what was asked for
                if not session.qresync:
                    session.enable_condstore()
                    session.qresync = True
                    enabled.append("QRESYNC")
                continue
            elif name == "UIDONLY":
                # RFC 9586 3: for the rest of the connection; it implies neither CONDSTORE nor QRESYNC
                if not session.uidonly:
                    session.uidonly = True
                    enabled.append("UIDONLY")
                continue
            else:
                continue
            session.utf8 = True
            self.reader.utf8 = True
        session.untagged("ENABLED" + "".join(" " + e for e in enabled))
        return Done("ENABLE completed")

    def _idle(self, command: p.Idle) -> None:
        """RFC 2177 / RFC 9051 section 6.3.13: report changes as they happen until DONE (`_idle_turn`)."""
        self.session.send(b"+ idling\r\n")
        self.reader.expect_idle_done()
        self._idling = command

    async def _idle_turn(self, command: p.Idle) -> None:
        """One turn of IDLE: DONE (or anything else) ends it; else the changes so far are sent and the core
        waits (Need.IDLE) for input or a wake-up. A failure ends IDLE too (`_idling` is cleared first)."""
        self._idling = None
        session = self.session
        event = self.reader.next()
        if event is not None:
            if isinstance(event, p.IdleDone):
                if session.view is not None:
                    await session.sync(True)
                self._tagged(command.tag, "OK", "IDLE terminated")
            else:
                self._tagged(command.tag, "BAD", "Expected DONE to end IDLE")
            return
        if session.view is not None:
            await session.sync(True)
        if session.notifications is not None and session.state is not State.LOGOUT:
            await commands_notify.push(session, selected=False)  # RFC 5465 4: the events NOTIFY asks for
        if session.state is not State.LOGOUT:  # the selected mailbox was deleted: BYE, no more IDLE
            self._idling = command

    # ------------------------------------------------------------------------------------------ APPEND

    async def _literal_start(self, event: p.AppendMessageStart | p.CatenateTextStart) -> None:
        """A literal of APPEND, MULTIAPPEND, REPLACE or UID REPLACE begins: a message, or a TEXT part of a
        CATENATE one (RFC 4469). It is checked before its first octet is read (`_open_append`), and then
        spooled; a refusal answers the tag instead, and the literal is never read (a synchronizing one gets
        no "+": RFC 9051 section 7.5, RFC 7888 section 4)."""
        session = self.session
        spool: AppendSpool
        try:
            pending = await self._open_append(event)
            if isinstance(event, p.CatenateTextStart):
                spool = await commands_catenate.text_start(session, event, pending, self._new_spool)
            else:
                spool = AppendSpool(event.message, self._new_spool(pending))
        except CommandFailed as failure:
            self._refuse_literal(event, failure.status, failure.text, failure.code)
            return
        except StoreError as exc:
            peer = self.transport.peer_ip
            log.error("imap client %s: %s lookup failed: %s", peer, _append_name(event), exc)
            self._refuse_literal(event, "NO", "Temporary failure, try again", "UNAVAILABLE")
            return
        pending.messages.append(spool)

    def _refuse_literal(
        self, event: p.AppendMessageStart | p.CatenateTextStart, status: str, text: str, code: str | None
    ) -> None:
        if event.synchronizing:
            self.reader.refuse_literal()
        else:
            self.reader.discard_command()
        self.session.discard_append()
        self._tagged(event.tag, status, text, code)

    async def _open_append(self, event: p.AppendMessageStart | p.CatenateTextStart) -> AppendInProgress:
        """The checks before any literal of an APPEND or REPLACE is read, the same for a message literal and
        a CATENATE TEXT one, and the command's `AppendInProgress` (opened by its first literal; MULTIAPPEND's
        and CATENATE's later literals go on in it, RFC 3502, RFC 4469). CommandFailed for a refusal:
        - the state: REPLACE only with a mailbox selected, and not READ-ONLY (RFC 8508 3.3), APPEND after
          login; REPLACE's message: by UID after ENABLE UIDONLY (BAD [UIDREQUIRED], RFC 9586 3), a message
          number the session was told of (BAD), a UID of the mailbox (NO);
        - UTF8 data only after ENABLE UTF8=ACCEPT (RFC 6855 section 4), no empty message literal (RFC 3502
          6.3.11: NO, and the whole command is cancelled);
        - for the first literal: the target mailbox and the "i" right on it (and "t e" on the selected one
          for REPLACE), NO [TRYCREATE] when it is missing (RFC 9051 6.3.12, RFC 4314 section 4: `acl`).
        APPENDLIMIT is the reader's for a message literal (`max_literal`: NO [TOOBIG] before it is read, RFC
        7889) and `commands_catenate.text_start`'s for a catenated message; the storage quota is the store's,
        when the messages are stored (NO [OVERQUOTA], RFC 9208 4.3). A StoreError goes to `_literal_start`."""
        session = self.session
        if event.replace is not None:
            if session.state is not State.SELECTED or session.view is None or session.account is None:
                raise bad("REPLACE is only valid in the selected state")
            view = session.view
            if view.read_only:
                raise no("The mailbox is read-only", "READ-ONLY")
            target, by_uid = event.replace
            if not by_uid and session.uidonly:
                raise bad(UIDREQUIRED_TEXT, "UIDREQUIRED")  # RFC 9586 3
            if not by_uid and not 1 <= target <= view.reported_exists:
                raise bad(f"Invalid message sequence number: {target}")
            if by_uid and (target not in view or target in view.gone):
                raise no(f"There is no message with UID {target}")
        elif session.state not in _AUTHENTICATED or session.account is None:
            raise bad("APPEND is only valid in the authenticated or selected state")
        utf8 = event.text.utf8 if isinstance(event, p.CatenateTextStart) else event.message.utf8
        if utf8 and not session.utf8:
            raise bad(f"{_append_name(event)} UTF8 needs ENABLE UTF8=ACCEPT first (RFC 6855 section 4)")
        if isinstance(event, p.AppendMessageStart) and event.message.size == 0:
            raise no(f"An empty message cannot be appended; the {_append_name(event)} is cancelled")
        pending = session.pending_append
        if pending is not None and pending.tag == event.tag:
            return pending  # a later literal of the same command: same mailbox, checked by the first
        if not event.mailbox.valid:
            raise no("Mailbox does not exist (the name is not valid modified UTF-7)", "NONEXISTENT")
        mailbox = await acl.append_target(session, event.mailbox.name, replacing=event.replace is not None)
        session.discard_append()
        session.pending_append = AppendInProgress(event.tag, mailbox, [])
        return session.pending_append

    def _new_spool(self, pending: AppendInProgress | None) -> IO[bytes]:
        # The messages of one command share SPOOL_MEMORY in memory; past that they go to files at once
        # (max_size 1: a SpooledTemporaryFile with max_size 0 would never roll over).
        used = sum(item.received for item in pending.messages) if pending is not None else 0
        return tempfile.SpooledTemporaryFile(  # closed by SessionState.discard_append
            max_size=max(SPOOL_MEMORY - used, 1),
            dir=str(self.settings.spool_dir) if self.settings.spool_dir is not None else None,
        )
