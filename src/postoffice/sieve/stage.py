"""Sieve at delivery: the stage that runs each recipient's active script and carries its outcome into the
delivery plan (RFC 5228 section 2.10; docs/decisions/0082).

Implementation notes
- The stage runs last among the stages (`delivery.stages.STAGES`): a script sees the header fields the
  earlier stages added for its account (Authentication-Results, spam headers), and its keep goes where they
  left the copy (a spam stage's Junk: section 2.10.2's "default action"); `fileinto "INBOX"` is the Inbox.
- One read for all recipients (`MailStore.active_sieve_scripts`), and nothing else for accounts without a
  script. Checked scripts are cached by (script id, version): a version is never reused, so the cache never
  serves an old text.
- The outcome becomes the plan: the first target is the copy's mailbox, the others `RecipientPlan.also`
  (stored in the one delivery transaction with the rest, section 2.10.1's all-or-nothing); no target is a
  discard; `redirect` is a forward (`delivery.forwarding`: SRS envelope sender, ARC seal, loop check, all in
  the same transaction); `reject`/`ereject` (RFC 5429) refuse the copy (550 5.7.1 with the reason, the
  pipeline answers in the SMTP dialogue when every recipient refused, else by a DSN), and a message from the
  null reverse path is discarded instead (there is nobody to tell, RFC 5429 section 2.1.2); `vacation` makes
  a reply (RFC 5230 section 5, RFC 3834) that the store queues only when none went to that sender with that
  handle within the period (`VacationReply`), so two deliveries at once do not both reply.
- A script that does not compile (one stored before the checker knew better) or fails at run time keeps the
  message where the plan had it (section 2.10.6: the implicit keep), logs the error and tells the account
  with a message in its Inbox once per version of the script (`ScriptErrorNotice`).
- What the tests read: the header block (read once from the spool, at most MAX_HEADER_OCTETS) after the
  account's own added fields; the size of the account's copy; the envelope (from: the reverse path; to: the
  first address of ours that reached the account); the spam stage's score (`DeliveryPlan.spam_score`, for
  spamtest; virustest answers "not scanned": no virus scanner is built in); the account's metadata (RFC
  5490, read from the store for the entries a run asks, and the script run again with them, as for
  duplicate).
- editheader (RFC 5293): each copy and redirect carries the header as the script had edited it when it
  took the action (`plan.Rewrite`: the new header replaces the message's header and the fields added for
  the account), the implicit keep the header at the end. A message whose header is larger than
  MAX_HEADER_OCTETS cannot be edited (a runtime error: kept unedited).
- :fcc (RFC 8580): a copy of a vacation reply goes into the mailbox only when the reply goes (the store
  decides, `VacationReply.fcc`); of a notification always (`DeliveryPlan.sent_copies`). A mailbox that does
  not exist without :create is INBOX, as for fileinto.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.errors
import email.message
import email.policy
import email.utils
import io
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING

from postoffice import __version__
from postoffice.delivery.forwarding import REDIRECTED_FROM
from postoffice.delivery.plan import Forward, Refusal, Rewrite, SentCopy, Target, flag
from postoffice.imap.objectid import mailbox_objectid
from postoffice.message import parse_message
from postoffice.message.headers import decode_words
from postoffice.sieve import checker, grammar
from postoffice.sieve.interpreter import (
    MAX_BODY_OCTETS,
    Discard,
    FileInto,
    Keep,
    Notify,
    Outcome,
    Redirect,
    Reject,
    SieveContext,
    SieveMessage,
    SieveRuntimeError,
    Vacation,
    required,
    run,
    vacation_refusal,
)
from postoffice.sieve.mailto import ADDRESS, parse_mailto
from postoffice.sieve.mailto import notification as mailto_notification
from postoffice.store import (
    DuplicateMark,
    FccCopy,
    GeneratedMessage,
    MessageText,
    OutboundMessage,
    OutboundRecipient,
    ScriptErrorNotice,
    SieveScript,
    StoreError,
    VacationReply,
)

if TYPE_CHECKING:
    from postoffice.config import Config
    from postoffice.delivery.plan import DeliveryPlan, Message, RecipientPlan
    from postoffice.store import MailStore

log = logging.getLogger("postoffice.sieve")

#: Octets of the header block a script's tests read (a larger header is read this far).
MAX_HEADER_OCTETS = 1024 * 1024
#: Checked scripts kept in memory, by (script id, version).
COMPILED_CACHE_SIZE = 1000
#: Sieve redirects a message may have been through (X-Sieve-Redirected-From fields) to be redirected again.
MAX_REDIRECT_HOPS = 8
#: Runs of a script with duplicate or metadata tests at most (each after reading what the run before asked).
DUPLICATE_RUNS = 4
#: Longest reject reason put into an SMTP reply line (RFC 5321 section 4.5.3.1.5: 512 octets in all).
MAX_REASON = 300


class ScriptError(Exception):
    """The script cannot be compiled or carried out; the message is kept (module notes)."""


def compile_script(text: str) -> tuple[checker.Checked, ...]:
    """The checked program of a script's text; grammar.SieveSyntaxError (or its SieveCheckError) with the line
    and column of the first error."""
    return checker.check(grammar.parse(text))


def _header_of(source: IO[bytes], end: int, limit: int = MAX_HEADER_OCTETS) -> bytes:
    """The header of the message in `source`: its first `end` octets (where the parse found the body to
    start: the header block and its empty line), at most `limit`."""
    source.seek(0)
    return source.read(min(end, limit))


def reject_refusal(reason: str) -> Refusal:
    """The SMTP refusal of a reject or ereject (RFC 5429 section 2.1: 550 5.7.1): the reason on one line of
    printable ASCII (other characters as "?"), at most MAX_REASON characters."""
    flat = " ".join(reason.split())
    flat = (
        "".join(c if " " <= c <= "~" else "?" for c in flat)[:MAX_REASON]
        or "Rejected by the recipient's filter"
    )
    return Refusal(550, "5.7.1", flat, "sieve")


class SieveStage:
    """The delivery stage of the users' Sieve scripts (see the module notes)."""

    name = "sieve"

    def __init__(
        self,
        store: MailStore,
        hostname: str,
        *,
        max_mailboxes: int = 1000,
        global_scripts: Path | None = None,
    ) -> None:
        self.store = store
        self.hostname = hostname
        self.global_scripts = global_scripts  # include :global (RFC 6609): NAME.sieve files here
        self.max_mailboxes = max_mailboxes  # what fileinto :create may bring an account to ([imap])
        self._compiled: OrderedDict[tuple[int, int], tuple[checker.Checked, ...] | ScriptError] = (
            OrderedDict()
        )

    def compiled(self, script: SieveScript) -> tuple[checker.Checked, ...]:
        """The checked program of `script`, from the cache; ScriptError when it does not compile."""
        key = (script.id, script.version)
        found = self._compiled.get(key)
        if found is None:
            try:
                found = compile_script(script.text)
            except grammar.SieveSyntaxError as exc:
                found = ScriptError(str(exc))
            self._compiled[key] = found
            while len(self._compiled) > COMPILED_CACHE_SIZE:
                self._compiled.popitem(last=False)
        else:
            self._compiled.move_to_end(key)
        if isinstance(found, ScriptError):
            raise found
        return found

    async def run(self, message: Message, plan: DeliveryPlan) -> None:
        kept = [r for r in plan.recipients if r.action == "deliver"]
        if not kept:
            return
        scripts = await self.store.active_sieve_scripts([r.account_id for r in kept])
        if not scripts:
            return
        head = _header_of(message.source, message.parsed.body.body_start)
        for recipient in kept:
            script = scripts.get(recipient.account_id)
            if script is not None:
                await self._filter(script, head, message, plan, recipient)

    async def _filter(
        self, script: SieveScript, head: bytes, message: Message, plan: DeliveryPlan, recipient: RecipientPlan
    ) -> None:
        prefix = recipient.prefix
        source = message.source

        def whole() -> bytes:  # for the body test only: read when a script asks
            source.seek(0)
            return prefix + source.read(MAX_BODY_OCTETS)

        sieve_message = SieveMessage.from_header(
            prefix + head,
            message.parsed.size + len(prefix),
            envelope_from=plan.envelope.sender,
            envelope_to=recipient.addresses[0],
            source=whole,
        )
        try:
            program = self.compiled(script)
            context = dataclasses.replace(
                await self._context(recipient.account_id, plan), spam=plan.spam_score
            )
            if "include" in required(program):
                context = dataclasses.replace(context, include=await self._includes(recipient.account_id))
            outcome = await self._run(program, sieve_message, context, recipient.account_id)
            created = self._carry_out(outcome, script, sieve_message, plan, recipient, context, head)
        except (ScriptError, SieveRuntimeError) as exc:
            log.warning(
                "delivery id=%s account_id=%d sieve script %r failed, message kept: %s",
                plan.origin.id or "-",
                recipient.account_id,
                script.name,
                exc,
            )
            if not script.error_reported:
                plan.notices.append(self._notice(script, str(exc), sieve_message))
            return
        except (StoreError, OSError):
            raise  # the store or the spool failing is the delivery's failure: temporary, nothing stored
        except Exception as exc:  # a bug, or input nobody foresaw: this recipient's copy is kept, never lost
            log.exception(
                "delivery id=%s account_id=%d sieve script %r: unexpected error, message kept",
                plan.origin.id or "-",
                recipient.account_id,
                script.name,
            )
            error = f"internal error while running the script ({type(exc).__name__})"
            if not script.error_reported:
                plan.notices.append(self._notice(script, error, sieve_message))
            return
        plan.duplicates.extend(
            DuplicateMark(recipient.account_id, key, seconds, last)
            for key, seconds, last in outcome.duplicates
        )
        for name in created:  # fileinto :create (RFC 5490 3.2); a failure leaves the copy to go to INBOX
            try:
                await self.store.create_mailbox(recipient.account_id, name, max_mailboxes=self.max_mailboxes)
            except StoreError as exc:
                log.info("sieve: fileinto :create %r for account_id=%d: %s", name, recipient.account_id, exc)

    async def _run(
        self,
        program: tuple[checker.Checked, ...],
        message: SieveMessage,
        context: SieveContext,
        account_id: int,
    ) -> Outcome:
        """The run; a script with duplicate tests (RFC 7352) or metadata tests (RFC 5490) runs again with the
        answers for what the last run asked (the store is read between runs), until it asks nothing new (at
        most DUPLICATE_RUNS)."""
        needs = required(program)
        threaded = "regex" in needs  # its searches may take up to the run's time limit: off the event loop

        async def once(context: SieveContext) -> Outcome:
            if threaded:
                return await asyncio.to_thread(run, program, message, context)
            return run(program, message, context)

        if not needs & {"duplicate", "mboxmetadata", "servermetadata", "include"}:
            return await once(context)
        known: dict[str, bool] = {}
        asked: set[str] = set()
        entries: dict[tuple[str, str], str | None] = {}
        wanted: set[tuple[str, str]] = set()

        def entry(mailbox: str, name: str) -> str | None:
            key = (mailbox, name.lower())
            if key not in entries:
                wanted.add(key)
            return entries.get(key)

        context = dataclasses.replace(context, seen=lambda key: known.get(key, False), metadata=entry)
        for _attempt in range(DUPLICATE_RUNS):
            wanted.clear()
            outcome = await once(context)
            new = {key for key, _seconds, _last in outcome.duplicates} - asked
            if not new and not wanted:
                return outcome
            asked |= new
            if new:
                seen = await self.store.sieve_duplicates_seen(account_id, sorted(new), time.time())
                known.update((key, key in seen) for key in new)
            if wanted:
                entries.update(await self._metadata(account_id, wanted))
        return await once(context)

    async def _metadata(
        self, account_id: int, wanted: set[tuple[str, str]]
    ) -> dict[tuple[str, str], str | None]:
        """The metadata entries (mailbox name, "" for the server's; entry name) of the account (RFC 5464)."""
        ids = {info.name: info.id for info in await self.store.list_mailboxes(account_id)}
        found: dict[tuple[str, str], str | None] = dict.fromkeys(wanted)
        by_mailbox: dict[str, list[str]] = {}
        for mailbox, name in wanted:
            by_mailbox.setdefault(mailbox, []).append(name)
        for mailbox, names in by_mailbox.items():
            mailbox_id = ids.get(mailbox) if mailbox else None
            if mailbox and mailbox_id is None:
                continue
            values = await self.store.get_metadata(account_id, mailbox_id, sorted(names))
            for name, value in values.items():
                found[mailbox, name.lower()] = value.decode("utf-8", "replace")
        return found

    async def _includes(self, account_id: int) -> Callable[[str, bool], tuple[checker.Checked, ...] | None]:
        """RFC 6609: the account's scripts by name (read once), and the administrator's global ones."""
        personal = {s.name: s for s in await self.store.list_sieve_scripts(account_id)}

        def resolve(name: str, is_global: bool) -> tuple[checker.Checked, ...] | None:
            if not is_global:
                script = personal.get(name)
                return None if script is None else self.compiled(script)
            return self.global_script(name)

        return resolve

    def global_script(self, name: str) -> tuple[checker.Checked, ...] | None:
        """The checked global script `name` (cached by its file's modification time and size)."""
        if self.global_scripts is None or "/" in name or name.startswith("."):
            return None
        path = self.global_scripts / f"{name}.sieve"
        try:
            stat = path.stat()
            key = (-stat.st_ino or -1, int(stat.st_mtime_ns % (2**62)) ^ stat.st_size)
            found = self._compiled.get(key)
            if found is None:
                found = compile_script(path.read_text("utf-8"))
                self._compiled[key] = found
        except (OSError, UnicodeDecodeError):
            return None
        except grammar.SieveSyntaxError as exc:
            raise ScriptError(f'the global script "{name}": {exc}') from None
        if isinstance(found, ScriptError):
            raise found
        return found

    async def _context(self, account_id: int, plan: DeliveryPlan) -> SieveContext:
        """The account's mailboxes and the environment (RFC 5183) of this delivery."""
        mailboxes = await self.store.list_mailboxes(account_id)
        uses: dict[str, frozenset[str]] = {}
        for info in mailboxes:
            if info.special_use:
                uses[info.name] = frozenset(u.lower() for u in info.special_use.split())
        origin = plan.origin
        environment = {
            "domain": self.hostname.partition(".")[2] or self.hostname,
            "host": self.hostname,
            "location": "MDA",
            "name": "Postoffice",
            "phase": "during",
            "version": __version__,
        }
        if origin.client_ip:
            environment["remote-ip"] = origin.client_ip
        if origin.helo:
            environment["remote-host"] = origin.helo
        return SieveContext(
            mailboxes=frozenset(info.name for info in mailboxes),
            special_uses=uses,
            mailbox_ids={mailbox_objectid(info): info.name for info in mailboxes},
            environment=environment,
        )

    def _carry_out(
        self,
        outcome: Outcome,
        script: SieveScript,
        message: SieveMessage,
        plan: DeliveryPlan,
        recipient: RecipientPlan,
        context: SieveContext,
        head: bytes,
    ) -> list[str]:
        """The outcome into the plan (module notes); SieveRuntimeError before anything is changed when it
        cannot be carried out. Returns the mailboxes to create (fileinto :create of one that is missing).
        `head`: the message's header block and its empty line, which an edited header replaces."""
        known = context.mailboxes or frozenset()
        created: list[str] = []

        def rewrite(header: tuple[bytes, ...] | None, *, sent: bool = False) -> Rewrite | None:
            if header is None:
                return None
            if len(head) >= MAX_HEADER_OCTETS:
                raise SieveRuntimeError("the message's header is too large to be edited")
            if sent:  # RFC 5321 section 4.4: Return-Path is for the final delivery, not a redirect
                header = tuple(f for f in header if not f[:12].lower().startswith(b"return-path:"))
            text = b"".join(header)
            if not text.endswith((b"\r\n\r\n", b"\n\n")) and message.size > len(message.head):
                text += b"\r\n"  # a message that had no empty line before its body gets one
            return Rewrite(text, len(head))

        def place(action: FileInto) -> str:
            mailbox = action.mailbox
            if action.mailbox_id is not None and action.mailbox_id in context.mailbox_ids:
                mailbox = context.mailbox_ids[action.mailbox_id]  # RFC 9042 4.1: the id first
            elif action.special_use is not None:  # RFC 8579 4: the mailbox with the attribute first
                named = [n for n, uses in context.special_uses.items() if action.special_use.lower() in uses]
                mailbox = named[0] if named else mailbox
            if mailbox.upper() == "INBOX":
                return "INBOX"
            if mailbox not in known:
                if action.create and mailbox not in created:
                    created.append(mailbox)
                elif not action.create:
                    return "INBOX"  # section 4.1: what does not exist is INBOX
            return mailbox

        targets: list[Target] = []  # mailbox "": where the plan had the copy (the keep)
        forwards: list[tuple[str, Rewrite | None]] = []
        vacation: Vacation | None = None
        rejected: Reject | None = None
        for action in outcome.actions:
            if isinstance(action, Keep):
                targets.append(Target("", None, _flags(action.flags), rewrite(action.header)))
            elif isinstance(action, FileInto):
                targets.append(Target(place(action), None, _flags(action.flags), rewrite(action.header)))
            elif isinstance(action, Redirect):
                address = action.address.strip()
                if address.startswith("<") and address.endswith(">"):
                    address = address[1:-1]
                if not ADDRESS.fullmatch(address):
                    raise SieveRuntimeError(f"redirect to an address that is not one: {action.address!r}")
                if _redirect_loop(message, recipient):
                    # section 4.2's loop control: it came round; kept instead, so that nothing is lost
                    log.info(
                        "sieve: redirect of account_id=%d to <%s> would loop; kept",
                        recipient.account_id,
                        address,
                    )
                    targets.append(Target("", None, _flags(outcome.flags), rewrite(action.header)))
                    continue
                forwards.append((address, rewrite(action.header, sent=True)))
            elif isinstance(action, Reject):
                rejected = action
            elif isinstance(action, Vacation):
                vacation = action
            elif isinstance(action, Discard):
                pass
        if outcome.implicit_keep:  # with the flags the script left (RFC 5232 section 3)
            targets.append(Target("", None, _flags(outcome.flags), rewrite(outcome.header)))
        if outcome.header is not None:  # RFC 5293 section 7: vacation and notify read the header as edited
            message = dataclasses.replace(
                message, fields=SieveMessage.from_header(b"".join(outcome.header), message.size).fields
            )
        reply = self._vacation(script, vacation, message, recipient) if vacation is not None else None
        if reply is not None and vacation is not None and vacation.fcc is not None:
            fcc = vacation.fcc
            reply = reply._replace(
                fcc=FccCopy(place(fcc), None, tuple(sorted(_flags(fcc.flags))), _text(reply.message.data))
            )
        notes: list[tuple[GeneratedMessage, FileInto | None]] = []
        for action in outcome.actions:
            if isinstance(action, Notify):
                note = self._notification(action, message, recipient)
                if note is not None:
                    notes.append((note, action.fcc))
        copies = [
            SentCopy(recipient.account_id, Target(place(fcc), None, _flags(fcc.flags)), note.data)
            for note, fcc in notes
            if fcc is not None
        ]
        # the plan changes only now: nothing above may fail halfway
        via = recipient.addresses[0]
        for address, edited in forwards:
            if all(f.target.lower() != address.lower() for f in plan.forwards):
                plan.forwards.append(Forward(via, address, redirect=True, rewrite=edited))
        if reply is not None:
            plan.vacations.append(reply)
        plan.notifications.extend(note for note, _fcc in notes)
        plan.sent_copies.extend(copies)
        if rejected is not None:
            if plan.envelope.sender:
                recipient.reject(reject_refusal(rejected.reason))
            else:  # RFC 5429 2.1.2: nobody to tell of a message from the null reverse path
                recipient.discard()
            return []
        # each mailbox once (section 2.10.3; INBOX in any case is INBOX), with the flags of all its targets
        # and those earlier stages gave the copy
        chosen: dict[tuple[str, str | None], Target] = {}
        for target in targets:
            if not target.mailbox:
                target = Target(recipient.mailbox, recipient.special_use, target.flags, target.rewrite)
            where = _place(target, context)
            before = chosen.get(where)
            flags = target.flags | (before.flags if before is not None else recipient.flags)
            edited = before.rewrite if before is not None else target.rewrite  # the first copy's text
            chosen[where] = target._replace(flags=frozenset(flags), rewrite=edited)
        if not chosen:
            recipient.discard()
            return []
        first, *others = chosen.values()
        recipient.file_into(first.mailbox, special_use=first.special_use)
        recipient.add_flags(first.flags)
        recipient.rewrite = first.rewrite
        recipient.also.extend(others)
        return created

    def _vacation(
        self, script: SieveScript, vacation: Vacation, message: SieveMessage, recipient: RecipientPlan
    ) -> VacationReply | None:
        own = [script.address, *recipient.addresses]
        refusal = vacation_refusal(message, vacation, own)
        if refusal is not None:
            log.info("sieve vacation of account_id=%d not sent: %s", recipient.account_id, refusal)
            return None
        sender = message.envelope_from
        from_address = " ".join((vacation.from_address or recipient.addresses[0]).split())
        try:
            data = vacation_reply(
                vacation, message, from_address=from_address, to=sender, hostname=self.hostname
            )
        except (ValueError, TypeError, IndexError, email.errors.MessageError) as exc:
            # a :from that is no address, or a field the library cannot write: the script's error
            raise SieveRuntimeError(f"the vacation reply cannot be made: {exc}") from None
        outbound = OutboundMessage(
            sender="",  # RFC 3834 section 3.3 / RFC 5230 section 5.1: from the null reverse path
            recipients=[OutboundRecipient(sender, notify="NEVER")],
            smtputf8=not sender.isascii() or not data.partition(b"\r\n\r\n")[0].isascii(),  # RFC 6531
            eight_bit=not data.isascii(),
        )
        return VacationReply(
            recipient.account_id,
            vacation.handle,
            sender,
            float(vacation.seconds),
            GeneratedMessage(data, outbound),
        )

    def _notification(
        self, notify: Notify, message: SieveMessage, recipient: RecipientPlan
    ) -> GeneratedMessage | None:
        """The mailto notification (RFC 5436); None for a message that was sent automatically (section 2.7:
        no notifications of automatic mail, so that two systems cannot notify each other for ever)."""
        auto = [v.split(";")[0].strip().lower() for v in message.values("Auto-Submitted")]
        if any(value != "no" for value in auto):
            log.info(
                "sieve notify of account_id=%d not sent: the message was sent automatically",
                recipient.account_id,
            )
            return None
        try:
            mailto = parse_mailto(notify.method)
            data = mailto_notification(
                mailto,
                from_address=notify.from_address or recipient.addresses[0],
                message=notify.message,
                original_subject=" ".join(decode_words(_first(message, "Subject")).split()),
                original_from=message.envelope_from,
                hostname=self.hostname,
                importance=notify.importance,
            )
        except (ValueError, TypeError, email.errors.MessageError) as exc:
            raise SieveRuntimeError(f"the notification cannot be made: {exc}") from None
        outbound = OutboundMessage(
            sender="",  # no bounce of a notification can start a loop
            recipients=[OutboundRecipient(address, notify="NEVER") for address in mailto.recipients],
            smtputf8=not data.partition(b"\r\n\r\n")[0].isascii(),  # RFC 6531: UTF-8 addresses or fields
            eight_bit=not data.isascii(),
        )
        return GeneratedMessage(data, outbound)

    def _notice(self, script: SieveScript, error: str, message: SieveMessage) -> ScriptErrorNotice:
        data = error_notice(script, error, message, hostname=self.hostname)
        return ScriptErrorNotice(
            script.account_id,
            script.id,
            script.version,
            _text(data),
        )


def _text(data: bytes) -> MessageText:
    return MessageText(io.BytesIO(data), parse_message(io.BytesIO(data)))


def _flags(names: tuple[str, ...]) -> frozenset[str]:
    """The flags of `names` a copy can start with (system flags canonical, keywords as IMAP atoms); others
    (\\Recent, text that is no atom) are left out, as RFC 5232 section 3 allows."""
    valid = []
    for name in names:
        try:
            valid.append(flag(name))
        except ValueError:
            log.info("sieve: the flag %r is left out: not one a message can have", name)
    return frozenset(valid)


def _place(target: Target, context: SieveContext) -> tuple[str, str | None]:
    """Where a target puts a copy, for telling two targets apart: a special use is the mailbox that has it
    (the store's rule, `NewCopy`), when there is one."""
    if target.special_use is not None:
        wanted = target.special_use.lower()
        for name, uses in context.special_uses.items():
            if wanted in uses:
                return ("INBOX" if name.upper() == "INBOX" else name, None)
    return (
        target.mailbox.upper() if target.mailbox.upper() == "INBOX" else target.mailbox,
        target.special_use,
    )


def _redirect_loop(message: SieveMessage, recipient: RecipientPlan) -> bool:
    """Whether the message has been redirected by this account's script before (it came round), or too often
    by any (section 4.2's loop control; the field `delivery.forwarding` puts on redirected copies)."""
    seen = [" ".join(v.split()).strip("<>").lower() for v in message.values(REDIRECTED_FROM)]
    mine = {a.lower() for a in recipient.addresses}
    return len(seen) >= MAX_REDIRECT_HOPS or any(address in mine for address in seen)


def _first(message: SieveMessage, name: str) -> str:
    values = message.values(name)
    return " ".join(values[0].split()) if values else ""


def _one_line(text: str) -> str:
    """A header field's text on one line (line breaks and runs of white space as one space)."""
    return " ".join(text.split())


def vacation_reply(
    vacation: Vacation, message: SieveMessage, *, from_address: str, to: str, hostname: str
) -> bytes:
    """The reply of RFC 5230 section 5: Subject (the script's, else "Auto: " and the original's, 5.6),
    In-Reply-To and References (5.8), Auto-Submitted: auto-replied (RFC 3834 5), From the recipient or
    the script's :from, To the reverse path; the reason as text/plain UTF-8, or as the MIME entity it is with
    :mime (section 4.8). Message ids are written as they are (never as encoded words), and a reply to a UTF-8
    address is written with UTF-8 header fields (RFC 6532), not encoded words. ValueError when a field
    cannot be written."""
    subject = vacation.subject
    if subject is None:
        original = _one_line(decode_words(_first(message, "Subject")))
        subject = f"Auto: {original}" if original else "Auto: (no subject)"
    utf8 = not to.isascii() or not from_address.isascii()
    policy = (email.policy.SMTPUTF8 if utf8 else email.policy.SMTP).clone(max_line_length=998)
    reply = email.message.EmailMessage(policy=policy)
    reply["From"] = _one_line(from_address)
    reply["To"] = to
    reply["Subject"] = _one_line(subject)
    reply["Date"] = email.utils.formatdate(localtime=False)
    reply["Message-ID"] = email.utils.make_msgid(domain=hostname)
    message_id = _first(message, "Message-ID")
    if message_id and message_id.isascii() and len(message_id) <= 900:
        reply["In-Reply-To"] = message_id
        ids = [i for i in _first(message, "References").split() if i.isascii() and len(i) <= 900]
        reply["References"] = " ".join([*ids, message_id][-20:])
    reply["Auto-Submitted"] = "auto-replied (vacation)"
    if vacation.mime:
        head = reply.as_bytes(policy=policy)  # the header section and its empty line
        entity = vacation.reason.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")
        return head.rstrip(b"\r\n") + b"\r\nMIME-Version: 1.0\r\n" + entity
    reply.set_content(vacation.reason.replace("\r\n", "\n"), charset="utf-8")  # lines end in CRLF on output
    return reply.as_bytes(policy=policy)


def error_notice(script: SieveScript, error: str, message: SieveMessage, *, hostname: str) -> bytes:
    """The message that tells an account its script failed, with what failed and where the mail went."""
    notice = email.message.EmailMessage(policy=email.policy.SMTP)
    notice["From"] = f"Mail Delivery System <MAILER-DAEMON@{hostname}>"
    notice["To"] = script.address
    notice["Subject"] = f'Your mail filter "{script.name}" failed'
    notice["Date"] = email.utils.formatdate(localtime=False)
    notice["Message-ID"] = email.utils.make_msgid(domain=hostname)
    notice["Auto-Submitted"] = "auto-generated"
    subject = decode_words(_first(message, "Subject")) or "(no subject)"
    sender = message.envelope_from or "(no sender)"
    notice.set_content(
        f'Your Sieve filter "{script.name}" could not be carried out:\n\n'
        f"    {error}\n\n"
        f'The message "{subject}" from {sender} was kept in your Inbox, and so will be every message while\n'
        "the filter fails. Correct the filter in the webmail's settings or in your mail program's filter\n"
        "editor; this is the only notice about this version of the filter.\n",
        charset="utf-8",
    )
    return notice.as_bytes(policy=email.policy.SMTP)


def make_stage(config: Config, store: MailStore) -> SieveStage | None:
    """The stage for this configuration (`delivery.stages.STAGES`); None when [sieve] enabled is off."""
    if not config.sieve.enabled:
        return None
    folder = config.sieve.global_scripts
    return SieveStage(
        store,
        config.server.hostname,
        max_mailboxes=config.imap.max_mailboxes,
        global_scripts=Path(folder) if folder else None,
    )
