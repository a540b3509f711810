"""Pigeonhole's `vnd.dovecot.testsuite` Sieve extension and the runner of `.svtest` files (issue 15), for
tests only.

A `.svtest` file is a Sieve script that requires "vnd.dovecot.testsuite" and holds `test "name" { ... }`
blocks. `run_file(path)` checks it with our checker (the extension's commands and tests added), runs it top
to bottom with our interpreter (the extension's commands answered by `Runner`, a `Hooks`), and gives the
report Pigeonhole's `testsuite` tool prints: "Test case: <path>:", one line per block ("NN: Test '<name>'
SUCCEEDED" or "FAILED: <reason>"), and "PASS: N tests succeeded." or "FAIL: F of N tests failed.".

What the runner keeps for the whole file, never reset between blocks (as Pigeonhole does): the current
message (line ends made CRLF) and envelope, the shared result (the actions the file's own commands and
`test_script_run` took), the compiled script of `test_script_compile`, the test log (what `test_error`
reads: compile and run errors of sub-scripts, execution errors), the outbox (messages "sent" by executing a
result: redirects, vacation replies, rejections; one entry per recipient) and the mail store (mailboxes of
messages "stored" by executing a result; INBOX exists).

Supported: test, test_fail, test_set ("message", "envelope.from", "envelope.to", "envelope.orig_to",
"envelope.auth"), test_message (:smtp / :folder; command and test), test_result_reset,
test_result_execute, test_result_action, test_script_compile, test_script_run (:append_result),
test_error, test_mailbox_create, test_config_set / _unset / _reload (and the older `test_config :set /
:unset / :reload`; the settings of Pigeonhole's spamtest and virustest are honoured: the score read from a
header field, see `_spam_context`; others are kept and ignored), test_binary_save / _load,
test_message_print and test_result_print (no output); the names of older revisions (test_compile,
test_execute, test_result, test_mailbox :create, test_binary :save / :load). Executing a result stores and
sends each message with the header the script had edited when it took the action (editheader);
test_imap_metadata_set (the entries mboxmetadata and servermetadata read). Not supported:
test_multiscript.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from postoffice.sieve import grammar
from postoffice.sieve.checker import SUPPORTED, Checked, Extension, Kind, Spec, Takes, check, strings
from postoffice.sieve.grammar import SieveSyntaxError
from postoffice.sieve.interpreter import (
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
    _Run,
    addresses,
    required,
    run,
    vacation_refusal,
)
from postoffice.sieve.mailto import notification, parse_mailto
from postoffice.sieve.matching import Matcher
from postoffice.sieve.stage import vacation_reply

CAPABILITY = "vnd.dovecot.testsuite"
DEFAULT_MESSAGE = b"From: sender@example.com\r\nTo: recipient@example.org\r\nSubject: Frop!\r\n\r\nFriep!\r\n"

_MATCH = {
    "is": None,
    "contains": None,
    "matches": None,
    "value": Kind.STRING,
    "count": Kind.STRING,
    "comparator": Kind.STRING,
    "index": Kind.NUMBER,
}
_MATCH_GROUPS = (frozenset({"is", "contains", "matches", "value", "count"}),)
_MESSAGE = Spec(
    positional=(Kind.NUMBER,),
    tags={"smtp": None, "folder": Kind.STRING},
    groups=(frozenset({"smtp", "folder"}),),
)

TESTSUITE = Extension(
    CAPABILITY,
    commands={
        "test": Spec(positional=(Kind.STRING,), block=True),
        "test_fail": Spec(positional=(Kind.STRING,)),
        "test_set": Spec(positional=(Kind.STRING, Kind.STRING)),
        "test_message": _MESSAGE,
        "test_message_print": Spec(),
        "test_result_reset": Spec(),
        "test_result_print": Spec(),
        "test_mailbox_create": Spec(positional=(Kind.STRING,)),
        "test_config_set": Spec(positional=(Kind.STRING, Kind.STRING)),
        "test_config_unset": Spec(positional=(Kind.STRING,)),
        "test_config_reload": Spec(tags={"extension": Kind.STRING}),
        "test_config": Spec(
            positional=(Kind.STRING, Kind.STRING),
            trailing=1,
            tags={"set": None, "unset": None, "reload": None},
            groups=(frozenset({"set", "unset", "reload"}),),
        ),
        "test_binary_save": Spec(positional=(Kind.STRING,)),
        "test_imap_metadata_set": Spec(positional=(Kind.STRING, Kind.STRING), tags={"mailbox": Kind.STRING}),
        "test_binary_load": Spec(positional=(Kind.STRING,)),
        # the names of older Pigeonhole revisions
        "test_mailbox": Spec(positional=(Kind.STRING,), tags={"create": None}),
        "test_binary": Spec(
            positional=(Kind.STRING,),
            tags={"save": None, "load": None},
            groups=(frozenset({"save", "load"}),),
        ),
    },
    tests={
        "test_message": _MESSAGE,
        "test_script_compile": Spec(positional=(Kind.STRING,)),
        "test_script_run": Spec(tags={"append_result": None}),
        "test_result_execute": Spec(),
        "test_result_action": Spec(positional=(Kind.STRINGS,), tags=_MATCH, groups=_MATCH_GROUPS),
        "test_error": Spec(positional=(Kind.STRINGS,), tags=_MATCH, groups=_MATCH_GROUPS),
        # the names of older Pigeonhole revisions (test_script_compile, test_script_run, test_result_action)
        "test_compile": Spec(positional=(Kind.STRING,)),
        "test_execute": Spec(),
        "test_result": Spec(positional=(Kind.STRINGS,), tags=_MATCH, groups=_MATCH_GROUPS),
    },
    top_level=frozenset(),
)
assert all(spec.test is Takes.NOTHING for spec in TESTSUITE.tests.values())

_ACTION_NAMES = {
    Keep: "keep",
    FileInto: "store",
    Redirect: "redirect",
    Discard: "discard",
    Reject: "reject",
    Vacation: "vacation",
    Notify: "notify",
}


#: Mailboxes of these names have the special use of the same name (RFC 6154), as the store's defaults do.
_SPECIAL_USES = frozenset({"Archive", "Drafts", "Junk", "Sent", "Trash"})

#: The names older Pigeonhole revisions gave the tests.
_OLD_TESTS = {
    "test_compile": "test_script_compile",
    "test_execute": "test_script_run",
    "test_result": "test_result_action",
}


class _TestFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _CaseFailed(Exception):
    """The file cannot go on (a runtime error of its own script, a fatal testsuite command)."""


def _crlf(data: bytes) -> bytes:
    return re.sub(rb"\r?\n", b"\r\n", data)


def with_header(raw: bytes, header: tuple[bytes, ...] | None) -> bytes:
    """The message `raw` with its header and empty line replaced by what editheader left (None: as it is)."""
    if header is None:
        return raw
    return b"".join(header) + raw[len(SieveMessage.from_bytes(raw).head) :]


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _status(message: SieveMessage, setting: str | None) -> str | None:
    """Pigeonhole's "Name" or "Name:regex" setting: the field's value, or the regex's first group in it."""
    if not setting:
        return None
    name, colon, pattern = setting.partition(":")
    values = message.values(name.strip())
    if not values:
        return None
    if not colon:
        return values[0]
    found = re.search(pattern, values[0])
    if found is None:
        return None
    return found.group(1) if found.groups() else found.group(0)


def _spam_context(
    message: SieveMessage, config: dict[str, str]
) -> tuple[tuple[float, float] | None, int | None]:
    """The spam score and threshold, and the virus verdict, Pigeonhole's settings read from the message:
    sieve_{spamtest,virustest}_status_header, _status_type (value, score, strlen, text), _max_header,
    _max_value, _text_value/N."""
    spam: tuple[float, float] | None = None
    virus: int | None = None
    for kind in ("spamtest", "virustest"):
        status = _status(message, config.get(f"sieve_{kind}_status_header"))
        if status is None:
            continue
        form = config.get(f"sieve_{kind}_status_type", "score")
        if form == "text":
            top = 10 if kind == "spamtest" else 5
            level = next(
                (n for n in range(top + 1) if config.get(f"sieve_{kind}_text_value/{n}") == status.strip()),
                None,
            )
            if level is None:
                continue
            if kind == "virustest":
                virus = level if level > 0 else None
            else:
                spam = (level - 1.0, 9.0)
            continue
        score = float(len(status)) if form == "strlen" else _number(status.strip())
        maximum = _number(_status(message, config.get(f"sieve_{kind}_max_header")) or "")
        if maximum is None:
            maximum = _number(config.get(f"sieve_{kind}_max_value", ""))
        if score is None or maximum is None:
            continue
        if kind == "spamtest":
            spam = (score, maximum)
        else:
            virus = 1 + round(4 * min(max(score / maximum, 0.0), 1.0)) if maximum > 0 else None
    return spam, virus


def _first_address(message: SieveMessage, names: tuple[str, ...]) -> str | None:
    for name in names:
        for _display, address in addresses(message.values(name)):
            if address:
                return address
    return None


@dataclass
class Runner:
    """One `.svtest` file's run (the module docstring); the `Hooks` of its interpreter."""

    path: Path
    raw: bytes = DEFAULT_MESSAGE
    envelope: dict[str, str] = field(default_factory=dict)
    compiled: tuple[Checked, ...] | None = None
    binaries: dict[str, tuple[Checked, ...]] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    outbox: list[tuple[str, str, bytes]] = field(default_factory=list)
    store: dict[str, list[tuple[bytes, frozenset[str]]]] = field(default_factory=lambda: {"INBOX": []})
    config: dict[str, str] = field(default_factory=dict)
    metadata: dict[tuple[str, str], str] = field(default_factory=dict)  # (mailbox or "", entry): value
    seen: set[str] = field(default_factory=set)  # duplicate keys of results executed (RFC 7352)
    executed: int = 0  # actions of the shared result already carried out
    kept: bool = False  # its implicit keep carried out
    index: int = 0
    name: str | None = None
    failures: int = 0
    lines: list[str] = field(default_factory=list)
    main: _Run | None = None

    def __post_init__(self) -> None:
        self.envelope = self._derived(self.raw)

    # -- the message ------------------------------------------------------------------------------------

    def message(self) -> SieveMessage:
        return SieveMessage.from_bytes(self.raw, self.envelope.get("from", ""), self.envelope.get("to", ""))

    def _derived(self, raw: bytes) -> dict[str, str]:
        """Section 3 of the spec: the envelope taken from the message's header."""
        message = SieveMessage.from_bytes(raw)
        to = _first_address(message, ("Envelope-To", "To")) or "recipient@example.com"
        sender = _first_address(message, ("Return-Path", "Sender", "From")) or "sender@example.com"
        return {"from": sender, "to": to, "orig_to": to, "auth": "user"}

    def install(self, raw: bytes, envelope: dict[str, str] | None = None) -> None:
        self.raw = _crlf(raw)
        self.envelope = envelope if envelope is not None else self._derived(self.raw)
        if self.main is not None:
            self.main.message = self.message()

    def context(self) -> SieveContext:
        spam, virus = _spam_context(self.message(), self.config)
        forbid: dict[str, set[str]] = {"forbid_add": set(), "forbid_delete": set()}
        for key in self.config.get("sieve_editheader_header", "").split():
            field_name = self.config.get(f"sieve_editheader_header/{key}/name", key).lower()
            for what in forbid:
                if self.config.get(f"sieve_editheader_header/{key}/{what}") == "yes":
                    forbid[what].add(field_name)
        for what in forbid:
            forbid[what].update(self.config.get(f"sieve_editheader_{what}", "").lower().split())
            forbid[what].update(self.config.get("sieve_editheader_protected", "").lower().split())
        uses = {name: frozenset({f"\\{name.lower()}"}) for name in self.store if name in _SPECIAL_USES}
        return SieveContext(
            mailboxes=frozenset(self.store),
            special_uses=uses,
            mailbox_ids={f"MB-{name}": name for name in self.store},
            seen=self.seen.__contains__,
            environment={"name": "Postoffice", "phase": "during", "location": "MDA", "domain": "example.com"},
            include=self._include,
            spam=spam,
            virus=virus,
            metadata=lambda mailbox, entry: self.metadata.get((mailbox, entry.lower())),
            forbid_add=frozenset(forbid["forbid_add"]),
            forbid_delete=frozenset(forbid["forbid_delete"]),
        )

    def _include(self, name: str, is_global: bool) -> tuple[Checked, ...] | None:
        """RFC 6609 in the test suite: D/included/NAME.sieve, or D/included-global/NAME.sieve."""
        folder = self.path.parent / ("included-global" if is_global else "included")
        try:
            text = (folder / f"{name}.sieve").read_bytes()
        except (OSError, ValueError):
            return None
        try:
            return check(grammar.parse(text), extension=TESTSUITE)
        except SieveSyntaxError as exc:
            raise SieveRuntimeError(f'the included script "{name}" does not compile: {exc}') from None

    # -- hooks ------------------------------------------------------------------------------------------

    def command(self, running: _Run, node: Checked) -> bool | None:
        name, tags, args = node.name, node.tags, node.positional
        if not name.startswith("test"):
            return None
        if name == "test_mailbox":  # older: test_mailbox :create
            name = "test_mailbox_create"
        elif name == "test_binary":  # older: test_binary :save / :load
            name = "test_binary_load" if "load" in tags else "test_binary_save"
        if name == "test":
            self.index += 1
            self.name = running.str1(args[0])
            try:
                going = running.commands(node.block or ())
            except _TestFailed as failed:
                self._failed(failed.reason)
                return True
            self.lines.append(f"{self.index:2d}: Test '{self.name}' SUCCEEDED")
            self.name = None
            return going
        if name == "test_fail":
            raise _TestFailed(running.str1(args[0]))
        if name == "test_set":
            self._set(running, strings(args[0])[0].lower(), running.str1(args[1]))
        elif name == "test_message":
            if not self._message(running, tags, args):
                where = f"in folder '{running.str1(tags['folder'])}'" if "folder" in tags else "outgoing SMTP"
                raise _TestFailed(f"no {where} message with index {args[0]}")
        elif name == "test_result_reset":
            running.outcome = Outcome()
            running.redirects = 0
            self.executed, self.kept = 0, False
            self.outbox.clear()
        elif name == "test_mailbox_create":
            self.store.setdefault(running.str1(args[0]), [])
            running.context = self.context()
        elif name == "test_config_set" or (name == "test_config" and "set" in tags):
            self.config[running.str1(args[0])] = running.str1(args[1])
        elif name == "test_config_unset" or (name == "test_config" and "unset" in tags):
            self.config.pop(running.str1(args[0]), None)
        elif name == "test_config_reload" or name == "test_config":
            running.context = self.context()
        elif name == "test_imap_metadata_set":
            mailbox = running.str1(tags["mailbox"]) if "mailbox" in tags else ""
            self.metadata[mailbox, running.str1(args[0]).lower()] = running.str1(args[1])
            running.context = self.context()
        elif name == "test_binary_save":
            if self.compiled is None:
                raise _CaseFailed(f"no compiled binary to save as {running.str1(args[0])}")
            self.binaries[running.str1(args[0])] = self.compiled
        elif name == "test_binary_load":
            loaded = self.binaries.get(running.str1(args[0]))
            if loaded is None:
                raise _CaseFailed(f"failed to load binary {running.str1(args[0])}")
            self.compiled = loaded
        return True  # test_config_reload, test_message_print, test_result_print: nothing to do here

    def test(self, running: _Run, node: Checked) -> bool | None:
        name, tags, args = node.name, node.tags, node.positional
        if not name.startswith("test_"):
            return None
        name = _OLD_TESTS.get(name, name)
        if name == "test_message":
            return self._message(running, tags, args)
        if name == "test_script_compile":
            return self._compile(running.str1(args[0]))
        if name == "test_script_run":
            return self._run_script(running, "append_result" in tags)
        if name == "test_result_execute":
            done = self._execute(running.outcome, running.header())
            running.context = self.context()  # fileinto :create may have made mailboxes
            return done
        if name in ("test_result_action", "test_error"):
            values = (
                [_ACTION_NAMES[type(a)] for a in running.outcome.actions]
                if name == "test_result_action"
                else list(self.log)
            )
            index = tags.get("index")
            if isinstance(index, int) and index > 0:
                values = values[index - 1 : index]
            wanted = dict(tags)
            wanted.setdefault("comparator", ("i;octet",))
            return Matcher(wanted).any(values, running.strs(args[0]))
        return None

    # -- commands and tests -----------------------------------------------------------------------------

    def _failed(self, reason: str) -> None:
        self.failures += 1
        label = f"Test '{self.name}' FAILED" if self.name is not None else "Test FAILED"
        self.lines.append(f"{self.index:2d}: {label}" + (f": {reason}" if reason else ""))
        self.name = None

    def _set(self, running: _Run, target: str, value: str) -> None:
        if target == "message":
            self.install(value.encode("utf-8"))
            return
        member = target.removeprefix("envelope.")
        address = value.strip()
        if address.startswith("<") and address.endswith(">"):
            address = address[1:-1]
        if member == "to":
            self.envelope["to"] = self.envelope["orig_to"] = address
        elif member in ("from", "orig_to", "auth"):
            self.envelope[member] = address
        else:
            raise _CaseFailed(f"unknown testsuite object '{target}'")
        running.message = self.message()

    def _message(
        self, running: _Run, tags: dict[str, tuple[str, ...] | int | None], args: tuple[object, ...]
    ) -> bool:
        index = args[0] if isinstance(args[0], int) else -1
        if "folder" in tags:
            messages = self.store.get(running.str1(tags["folder"]), [])
            if not 0 <= index < len(messages):
                return False
            self.install(messages[index][0])
            return True
        if not 0 <= index < len(self.outbox):
            return False
        sender, recipient, data = self.outbox[index]
        self.install(data, {"from": sender, "to": recipient, "orig_to": recipient, "auth": "user"})
        return True

    def _compile(self, relative: str) -> bool:
        self.log.clear()
        try:
            text = (self.path.parent / relative).read_bytes()
        except OSError:
            self.log.append("script not found")
            return False
        try:
            self.compiled = check(grammar.parse(text), extension=TESTSUITE)
        except SieveSyntaxError as exc:
            found = getattr(exc, "errors", ()) or (exc,)
            self.log.extend(error.message for error in found)
            self.log.append(
                "validation failed" if type(exc).__name__ == "SieveCheckError" else "parse failed"
            )
            return False
        return True

    def _run_script(self, running: _Run, append: bool) -> bool:
        if self.compiled is None:
            self.log.append("testsuite: trying to run script, but no script compiled yet")
            return False
        if self.log:
            self.log.clear()
        try:
            outcome = run(self.compiled, self.message(), self.context(), hooks=self)
        except SieveRuntimeError as exc:
            self.log.append(str(exc))
            return False
        if append:
            running.outcome.actions.extend(a for a in outcome.actions if a not in running.outcome.actions)
            running.outcome.implicit_keep = running.outcome.implicit_keep and outcome.implicit_keep
            running.outcome.flags = outcome.flags
        else:
            running.outcome = outcome
            self.executed, self.kept = 0, False
        return True

    def _execute(self, outcome: Outcome, header: tuple[bytes, ...] | None = None) -> bool:
        """Carry the result out into the mail store and the outbox (the actions not carried out yet)."""
        if self.log:
            self.log.clear()
        ok = True
        message = self.message()
        sender, recipient = self.envelope.get("from", ""), self.envelope.get("to", "")
        for action in outcome.actions[self.executed :]:
            if isinstance(action, Keep):
                self.store["INBOX"].append((with_header(self.raw, action.header), frozenset(action.flags)))
            elif isinstance(action, FileInto):
                if action.mailbox not in self.store and not action.create:
                    self.log.append(f"failed to store into mailbox '{action.mailbox}': Mailbox doesn't exist")
                    ok = False
                    continue
                self.store.setdefault(action.mailbox, []).append(
                    (with_header(self.raw, action.header), frozenset(action.flags))
                )
            elif isinstance(action, Redirect):
                self.outbox.append((sender, action.address, with_header(self.raw, action.header)))
            elif isinstance(action, Reject):
                if sender:
                    text = f"Subject: Rejected: your message\r\n\r\n{action.reason}\r\n".encode()
                    self.outbox.append(("", sender, text))
            elif isinstance(action, Notify):
                mailto = parse_mailto(action.method)
                note = notification(
                    mailto,
                    from_address=action.from_address or recipient,
                    message=action.message,
                    original_subject=" ".join(message.values("Subject")[:1]),
                    original_from=sender,
                    hostname="example.com",
                    importance=action.importance,
                )
                self.outbox.extend(("", address, note) for address in mailto.recipients)
            elif isinstance(action, Vacation) and vacation_refusal(message, action, [recipient]) is None:
                reply = vacation_reply(
                    action,
                    message,
                    from_address=action.from_address or recipient,
                    to=sender,
                    hostname="example.com",
                )
                self.outbox.append(("", sender, reply))
        self.executed = len(outcome.actions)
        self.seen.update(key for key, _seconds, _last in outcome.duplicates)
        if not ok and not self.kept:  # as Pigeonhole: a result that failed falls back to keeping the original
            self.store["INBOX"].append((self.raw, frozenset()))
            self.kept = True
        if outcome.implicit_keep and not self.kept:
            self.store["INBOX"].append((with_header(self.raw, header), frozenset(outcome.flags)))
            self.kept = True
        return ok


@dataclass(frozen=True)
class FileReport:
    path: Path
    tests: int
    failures: int
    lines: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return self.failures == 0 and self.tests > 0

    def text(self) -> str:
        summary = (
            f"PASS: {self.tests} tests succeeded."
            if self.failures == 0
            else f"FAIL: {self.failures} of {self.tests} tests failed."
        )
        return "\n".join([f"Test case: {self.path}:", "", *self.lines, "", summary])


def run_file(path: Path) -> FileReport:
    """Run one `.svtest` file (the module docstring)."""
    runner = Runner(path)
    try:
        program = check(grammar.parse(path.read_bytes()), supported=SUPPORTED, extension=TESTSUITE)
    except SieveSyntaxError as exc:
        line = f"{path}: error: {exc}"
        return FileReport(path, 0, 1, (line, "XX: Test CASE FAILED: failed to compile testcase script"))
    main = _Run(runner.message(), runner.context(), required(program), runner)
    main.deadline = float("inf")  # a test file is one long run: the limit is for delivery
    runner.main = main
    try:
        main.commands(program)
    except _TestFailed as failed:  # test_fail outside a block: the file cannot go on
        runner._failed(failed.reason)
        runner.lines.append("XX: Test CASE FAILED: test script execution aborted due to error")
    except (SieveRuntimeError, _CaseFailed) as exc:
        runner.failures += 1
        runner.lines.append(f"error: {exc}")
        runner.lines.append("XX: Test CASE FAILED: test script execution aborted due to error")
    return FileReport(path, runner.index, runner.failures, tuple(runner.lines))


def run_directory(directory: Path) -> list[FileReport]:
    return [run_file(path) for path in sorted(directory.rglob("*.svtest"))]
