"""The TOML configuration file: loading, validation and the commented default file.

Implementation notes
- One file, parsed with `tomllib`, turned into frozen dataclasses. Every setting has a default, so an empty
  file is a valid configuration (all standard listeners enabled on their standard ports, except pop2 and
  those whose protocol is not built yet, which could not start).
- Validation never stops at the first problem: `load_config` collects every problem it can find (unknown keys
  with a "did you mean" hint, wrong types, out-of-range values, port clashes, certificate files that are
  missing or do not load, users and groups that do not exist) and raises one `ConfigError` holding all of
  them. Each problem names the dotted key it is about (`listeners.smtp.port`), so an administrator can go
  straight to it.
- Problems are errors (the server will not start); `Config.warnings` are things the administrator should
  know but that do not stop the server, e.g. an enabled listener whose protocol is not part of this build.
- Relative paths are resolved against the directory holding the config file, never against the working
  directory, so `postoffice run` behaves the same from anywhere.
- The settings table `SETTINGS` is the single source for defaults, validation and `render_default_config`,
  so the generated file cannot drift from what the loader accepts (a test round-trips it).
"""

from __future__ import annotations

import difflib
import grp
import ipaddress
import json
import os
import pwd
import re
import socket
import ssl
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Protocols whose server is part of this build. Later work adds to this set as protocols are implemented.
BUILT_PROTOCOLS: set[str] = {"smtp", "submission", "pop2", "pop3", "imap"}

#: Every protocol a listener may speak.
PROTOCOLS: tuple[str, ...] = ("smtp", "submission", "pop3", "imap", "pop2", "http")

TLS_MODES: tuple[str, ...] = ("none", "starttls", "implicit")
TLS_VERSIONS: tuple[str, ...] = ("TLSv1.2", "TLSv1.3")
LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error")

PROTOCOL_PURPOSES: dict[str, str] = {
    "smtp": "other mail servers deliver mail to us",
    "submission": "users' mail programs send mail",
    "pop3": "mail programs download mail",
    "imap": "mail programs read and organise mail on the server",
    "pop2": "the legacy protocol; off by default",
    "http": "webmail and admin in a browser",
}

_SAME_WITH_TLS = "same, TLS from the first byte (RFC 8314)"

#: Why pop2 is off by default; shown by `postoffice ports`.
POP2_NOTE = (
    "POP2 (RFC 937) has no TLS and sends passwords in clear, so it is off by default; enabling it on an "
    "address other than loopback also needs [auth] allow_plaintext_auth = true"
)


@dataclass(frozen=True)
class StandardListener:
    name: str
    protocol: str
    port: int
    tls: str
    enabled: bool
    purpose: str


#: The standard listeners, in the order they are shown and written.
STANDARD_LISTENERS: dict[str, StandardListener] = {
    s.name: s
    for s in (
        StandardListener("smtp", "smtp", 25, "starttls", True, PROTOCOL_PURPOSES["smtp"]),
        StandardListener("submission", "submission", 587, "starttls", True, PROTOCOL_PURPOSES["submission"]),
        StandardListener("submissions", "submission", 465, "implicit", True, _SAME_WITH_TLS),
        StandardListener("pop3", "pop3", 110, "starttls", True, PROTOCOL_PURPOSES["pop3"]),
        StandardListener("pop3s", "pop3", 995, "implicit", True, _SAME_WITH_TLS),
        StandardListener("imap", "imap", 143, "starttls", True, PROTOCOL_PURPOSES["imap"]),
        StandardListener("imaps", "imap", 993, "implicit", True, _SAME_WITH_TLS),
        StandardListener("pop2", "pop2", 109, "none", False, PROTOCOL_PURPOSES["pop2"]),
        StandardListener("http", "http", 80, "none", True, "webmail and admin (redirects to https)"),
        StandardListener("https", "http", 443, "implicit", True, PROTOCOL_PURPOSES["http"]),
    )
}

DEFAULT_ADDRESS = "0.0.0.0"


def default_enabled(standard: StandardListener) -> bool:
    """Whether a standard listener is on when the config does not say: never one whose protocol is not built
    (it could not start; docs/decisions/0006)."""
    return standard.enabled and standard.protocol in BUILT_PROTOCOLS


# -- the configuration ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerConfig:
    hostname: str
    user: str
    group: str
    log_level: str
    shutdown_grace: float


@dataclass(frozen=True)
class TlsConfig:
    certificate: Path
    private_key: Path
    min_version: str


@dataclass(frozen=True)
class StoreConfig:
    path: Path
    spool_dir: Path
    min_free_space: int = 100 * 1024 * 1024
    disk_reserve: int = 16 * 1024 * 1024


@dataclass(frozen=True)
class LimitsConfig:
    """Every listener: how long a client may take to log in, how slowly it may send (docs/decisions/0028)."""

    login_timeout: float = 60.0
    min_data_rate: float = 500.0


@dataclass(frozen=True)
class SmtpConfig:
    max_message_size: int
    max_recipients: int
    max_connections: int
    max_connections_per_ip: int
    command_timeout: float
    data_timeout: float
    max_errors: int


@dataclass(frozen=True)
class SubmissionConfig:
    """Ports 587/465 (RFC 6409, RFC 8314): what an authenticated user may send."""

    max_messages_per_hour: int = 500
    max_recipients_per_message: int = 100
    received_client_address: bool = False


@dataclass(frozen=True)
class QueueConfig:
    """Outbound delivery and the durable queue (docs/decisions/0017, 0018)."""

    first_retry: float = 300.0
    max_retry_interval: float = 14400.0
    max_age: float = 432000.0
    delay_warning_after: float = 14400.0
    max_deliveries: int = 20
    max_per_destination: int = 4
    delivery_port: int = 25
    tls: str = "opportunistic"
    connect_timeout: float = 30.0
    command_timeout: float = 300.0
    nameservers: tuple[str, ...] = ()
    dns_port: int = 53
    smarthost: str = ""
    smarthost_port: int = 587
    smarthost_tls: str = "starttls"
    smarthost_ca_file: str = ""
    smarthost_username: str = ""
    smarthost_password: str = ""
    trusted_networks: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuthConfig:
    allow_plaintext_auth: bool
    failure_delay: float = 1.0
    ip_max_failures: int = 10
    account_max_failures: int = 10
    failure_window: float = 900.0
    lockout: float = 900.0
    verified_cache_ttl: float = 300.0
    max_pending_verifications: int = 64


@dataclass(frozen=True)
class Pop3Config:
    max_connections: int = 500
    max_connections_per_ip: int = 10
    autologout: float = 600.0
    max_errors: int = 20


@dataclass(frozen=True)
class ImapConfig:
    max_connections: int = 500
    max_connections_per_ip: int = 20
    autologout: float = 1800.0
    idle_timeout: float = 3600.0
    append_limit: int = 52428800
    max_mailboxes: int = 1000
    max_mailbox_name_length: int = 1024
    max_mailbox_depth: int = 32


@dataclass(frozen=True)
class Listener:
    name: str
    protocol: str
    enabled: bool
    address: str
    port: int
    tls: str  # "none" | "starttls" | "implicit"
    purpose: str

    @property
    def built(self) -> bool:
        return self.protocol in BUILT_PROTOCOLS

    @property
    def status(self) -> str:
        """ "ready", "not built yet" or "disabled"."""
        if not self.enabled:
            return "disabled"
        return "ready" if self.built else "not built yet"


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with the configuration. `key` is dotted (`listeners.smtp.port`); for a file that
    cannot be read or parsed it is the file name, and `line` is set for syntax errors."""

    key: str
    message: str
    hint: str = ""
    line: int | None = None

    def __str__(self) -> str:
        text = f"{self.key}: {self.message}" if self.key else self.message
        return f"{text} (hint: {self.hint})" if self.hint else text


@dataclass(frozen=True)
class Config:
    path: Path
    base_dir: Path
    server: ServerConfig
    tls: TlsConfig
    store: StoreConfig
    smtp: SmtpConfig
    auth: AuthConfig
    pop3: Pop3Config
    listeners: Mapping[str, Listener]
    warnings: tuple[ConfigProblem, ...] = field(default=())
    imap: ImapConfig = field(default_factory=ImapConfig)
    submission: SubmissionConfig = field(default_factory=SubmissionConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)

    def enabled_listeners(self) -> list[Listener]:
        return [listener for listener in self.listeners.values() if listener.enabled]


class ConfigError(Exception):
    """The configuration has problems; `problems` lists every one found (never only the first)."""

    def __init__(self, problems: list[ConfigProblem], warnings: list[ConfigProblem] | None = None) -> None:
        self.problems = problems
        self.warnings = warnings or []
        super().__init__("\n".join(str(p) for p in problems))


# -- the settings table (one source for defaults, validation and the default file) ---------------------------


@dataclass(frozen=True)
class Setting:
    name: str
    kind: str  # "str" | "path" | "choice" | "int" | "number" | "bool" | "list" (of strings)
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None  # inclusive lower bound for numbers
    positive: bool = False  # numbers must be > 0


SETTINGS: dict[str, tuple[Setting, ...]] = {
    "server": (
        Setting("hostname", "str", None, "name this server gives itself in greetings and Received headers"),
        Setting("user", "str", "", 'when started as root: drop to this user after binding ("" = stay)'),
        Setting("group", "str", "", 'group to drop to ("" = the primary group of `user`)'),
        Setting(
            "log_level",
            "choice",
            "info",
            "how much to log: debug | info | warning | error",
            choices=LOG_LEVELS,
        ),
        Setting(
            "shutdown_grace",
            "number",
            30,
            "seconds that transactions in flight may take after SIGTERM (0 = close at once)",
            minimum=0,
        ),
    ),
    "tls": (
        Setting("certificate", "path", "tls/cert.pem", "PEM certificate chain, leaf first"),
        Setting(
            "private_key", "path", "tls/key.pem", "PEM private key of the certificate (keep it mode 0600)"
        ),
        Setting(
            "min_version",
            "choice",
            "TLSv1.2",
            'oldest TLS version accepted: "TLSv1.2" | "TLSv1.3"',
            choices=TLS_VERSIONS,
        ),
    ),
    "store": (
        Setting("path", "path", "store/mail.sqlite3", "the SQLite mail store (WAL files live beside it)"),
        Setting("spool_dir", "path", "spool", "temporary files for messages being received"),
        Setting(
            "min_free_space",
            "int",
            104857600,
            "bytes; new mail is refused (SMTP 452 4.3.1) before it leaves less free on the store's disk",
            minimum=0,
        ),
        Setting(
            "disk_reserve",
            "int",
            16777216,
            "bytes kept in <store>.reserve, given back when the disk fills so that deleting mail works",
            minimum=0,
        ),
    ),
    "limits": (
        Setting(
            "login_timeout",
            "number",
            60,
            "seconds from connecting to a successful login (IMAP, POP3, POP2, submission); then closed",
            positive=True,
        ),
        Setting(
            "min_data_rate",
            "number",
            500,
            "bytes/s that extend a command's deadline by 1 s: slower clients meet it (0 = never extend)",
            minimum=0,
        ),
    ),
    "smtp": (
        Setting(
            "max_message_size", "int", 52428800, "bytes; announced in EHLO SIZE (RFC 1870)", positive=True
        ),
        Setting("max_recipients", "int", 1000, "RCPT TO per transaction (RFC 5321 4.5.3.1.8)", positive=True),
        Setting("max_connections", "int", 500, "simultaneous SMTP connections in total", positive=True),
        Setting(
            "max_connections_per_ip",
            "int",
            20,
            "simultaneous connections per client IP (IPv6: per /64)",
            positive=True,
        ),
        Setting(
            "command_timeout",
            "number",
            300,
            "seconds for each command to arrive in full (RFC 5321 4.5.3.2.7: 5 minutes)",
            positive=True,
        ),
        Setting(
            "data_timeout",
            "number",
            180,
            "seconds message data may stall; [limits] min_data_rate bounds trickling (RFC 5321 4.5.3.2.5/6)",
            positive=True,
        ),
        Setting(
            "max_errors", "int", 20, "protocol errors before the server closes the connection", positive=True
        ),
    ),
    "submission": (
        Setting(
            "max_messages_per_hour",
            "int",
            500,
            "messages one account may send per hour (a stolen password is not a spam cannon)",
            positive=True,
        ),
        Setting("max_recipients_per_message", "int", 100, "recipients per submitted message", positive=True),
        Setting(
            "received_client_address",
            "bool",
            False,
            "name the client's IP address in the Received header of submitted mail (privacy: off)",
        ),
    ),
    "queue": (
        Setting(
            "first_retry",
            "number",
            300,
            "seconds before the first retry of a temporary failure",
            positive=True,
        ),
        Setting(
            "max_retry_interval", "number", 14400, "seconds; retries back off (x2) up to this", positive=True
        ),
        Setting(
            "max_age",
            "number",
            432000,
            "seconds a message is retried before it bounces (5 days)",
            positive=True,
        ),
        Setting(
            "delay_warning_after",
            "number",
            14400,
            "seconds after which the sender is told of a delay, once (0 = never)",
            minimum=0,
        ),
        Setting("max_deliveries", "int", 20, "outbound SMTP connections at once", positive=True),
        Setting("max_per_destination", "int", 4, "outbound connections at once to one domain", positive=True),
        Setting(
            "delivery_port",
            "int",
            25,
            "TCP port of remote mail servers (25; other values for tests)",
            positive=True,
        ),
        Setting(
            "tls",
            "choice",
            "opportunistic",
            '"opportunistic" (STARTTLS whenever offered) | "required" | "none"',
            choices=("opportunistic", "required", "none"),
        ),
        Setting(
            "connect_timeout", "number", 30, "seconds to wait for a remote server to answer", positive=True
        ),
        Setting(
            "command_timeout", "number", 300, "seconds per SMTP command (RFC 5321 4.5.3.2)", positive=True
        ),
        Setting(
            "nameservers", "list", [], 'DNS servers for MX lookups, e.g. ["127.0.0.1"] ([] = the system\'s)'
        ),
        Setting("dns_port", "int", 53, "UDP/TCP port of those nameservers", positive=True),
        Setting(
            "smarthost", "str", "", 'send all outbound mail through this host ("" = deliver directly by MX)'
        ),
        Setting("smarthost_port", "int", 587, "the smarthost's port", positive=True),
        Setting(
            "smarthost_tls",
            "choice",
            "starttls",
            '"starttls" (certificate verified; implicit TLS on 465 is not supported) | "none"',
            choices=("starttls", "none"),
        ),
        Setting(
            "smarthost_ca_file", "str", "", 'PEM file of CAs to trust for the smarthost ("" = the system\'s)'
        ),
        Setting("smarthost_username", "str", "", 'AUTH user at the smarthost ("" = no AUTH)'),
        Setting("smarthost_password", "str", "", "AUTH password at the smarthost"),
        Setting(
            "trusted_networks",
            "list",
            [],
            'networks that may relay through port 25 without AUTH, e.g. ["192.0.2.0/24"] (default: none)',
        ),
    ),
    "auth": (
        Setting(
            "allow_plaintext_auth",
            "bool",
            False,
            "allow passwords over connections without TLS (needed for pop2 off loopback)",
        ),
        Setting(
            "failure_delay", "number", 1.0, "seconds every failed login waits before its answer", minimum=0
        ),
        Setting(
            "ip_max_failures",
            "int",
            10,
            "failed logins from one client IP within failure_window before that IP is locked out",
            positive=True,
        ),
        Setting(
            "account_max_failures",
            "int",
            10,
            "failed logins for one account within failure_window before it is locked for other IPs",
            positive=True,
        ),
        Setting(
            "failure_window", "number", 900, "seconds over which failed logins are counted", positive=True
        ),
        Setting("lockout", "number", 900, "seconds a lockout lasts", positive=True),
        Setting(
            "verified_cache_ttl",
            "number",
            300,
            "seconds a verified password is recognised without a new argon2 run (0 = never)",
            minimum=0,
        ),
        Setting(
            "max_pending_verifications",
            "int",
            64,
            "distinct password verifications running or waiting at once; more get a temporary failure",
            positive=True,
        ),
    ),
    "pop3": (
        Setting(
            "max_connections", "int", 500, "simultaneous POP3 and POP2 connections in total", positive=True
        ),
        Setting(
            "max_connections_per_ip",
            "int",
            10,
            "simultaneous connections per client IP (IPv6: per /64)",
            positive=True,
        ),
        Setting(
            "autologout",
            "number",
            600,
            "seconds the server waits for each command (RFC 1939 section 3: at least 600)",
            minimum=600,
        ),
        Setting(
            "max_errors", "int", 20, "protocol errors before the server closes the connection", positive=True
        ),
    ),
    "imap": (
        Setting("max_connections", "int", 500, "simultaneous IMAP connections in total", positive=True),
        Setting(
            "max_connections_per_ip",
            "int",
            20,
            "simultaneous connections per client IP (IPv6: per /64)",
            positive=True,
        ),
        Setting(
            "autologout",
            "number",
            1800,
            "seconds the server waits for each command (RFC 9051 section 5.4: at least 1800)",
            minimum=1800,
        ),
        Setting(
            "idle_timeout",
            "number",
            3600,
            "seconds an IDLE command may wait for DONE (clients renew IDLE every 29 minutes)",
            minimum=1800,
        ),
        Setting(
            "append_limit",
            "int",
            52428800,
            "largest message APPEND accepts, in octets (advertised as APPENDLIMIT, RFC 7889)",
            positive=True,
        ),
        Setting(
            "max_mailboxes",
            "int",
            1000,
            "mailboxes (and subscriptions) one account may have; CREATE beyond is NO [LIMIT]",
            positive=True,
        ),
        Setting(
            "max_mailbox_name_length",
            "int",
            1024,
            "longest mailbox name, in octets of its UTF-8 form with its parents' names",
            minimum=64,
        ),
        Setting(
            "max_mailbox_depth",
            "int",
            32,
            "hierarchy levels of a mailbox name ('a/b/c' has 3)",
            positive=True,
        ),
    ),
}

LISTENER_SETTINGS: tuple[Setting, ...] = (
    Setting("enabled", "bool", True, "start this listener"),
    Setting("address", "str", DEFAULT_ADDRESS, "IP address to bind: 0.0.0.0 = all IPv4, :: = all IPv6"),
    Setting("port", "int", None, "TCP port, 1..65535 (0: any free port, for tests)"),
    Setting(
        "tls", "choice", None, '"none" | "starttls" | "implicit" (TLS from the first byte)', choices=TLS_MODES
    ),
    Setting("protocol", "choice", None, "needed for names other than the standard ones", choices=PROTOCOLS),
)


# -- loading -------------------------------------------------------------------------------------------------


def _did_you_mean(word: str, candidates: list[str] | tuple[str, ...]) -> str:
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f'did you mean "{matches[0]}"?' if matches else ""


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


class _Collector:
    def __init__(self) -> None:
        self.problems: list[ConfigProblem] = []
        self.warnings: list[ConfigProblem] = []

    def problem(self, key: str, message: str, hint: str = "") -> None:
        self.problems.append(ConfigProblem(key, message, hint))

    def warning(self, key: str, message: str, hint: str = "") -> None:
        self.warnings.append(ConfigProblem(key, message, hint))


def _check_value(setting: Setting, key: str, value: Any, out: _Collector) -> bool:
    """True when `value` is acceptable for `setting`; otherwise records a problem."""
    kind = setting.kind
    if kind in ("str", "path", "choice"):
        if not isinstance(value, str):
            out.problem(
                key,
                f"expected a string, got {_type_name(value)}",
                f'write it in quotes: {key.rsplit(".")[-1]} = "..."',
            )
            return False
        if kind == "path" and not value.strip():
            out.problem(key, "must not be empty", f"the default is {json.dumps(setting.default)}")
            return False
        if kind == "choice" and value not in setting.choices:
            close = _did_you_mean(value, setting.choices)
            options = " | ".join(f'"{c}"' for c in setting.choices)
            out.problem(key, f'"{value}" is not one of {options}', close or f"use one of {options}")
            return False
        return True
    if kind == "list":
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            out.problem(key, f"expected a list of strings, got {_type_name(value)}", 'write ["a", "b"]')
            return False
        return True
    if kind == "bool":
        if not isinstance(value, bool):
            out.problem(
                key, f"expected true or false, got {_type_name(value)}", "write true or false without quotes"
            )
            return False
        return True
    if kind in ("int", "number"):
        ok_type = isinstance(value, int) if kind == "int" else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok_type:
            wanted = "an integer" if kind == "int" else "a number"
            out.problem(key, f"expected {wanted}, got {_type_name(value)}", "write the number without quotes")
            return False
        if setting.positive and value <= 0:
            out.problem(key, f"must be greater than 0, got {value}", f"the default is {setting.default}")
            return False
        if setting.minimum is not None and value < setting.minimum:
            out.problem(
                key, f"must be at least {setting.minimum}, got {value}", f"the default is {setting.default}"
            )
            return False
        return True
    raise AssertionError(f"unknown setting kind {kind}")  # pragma: no cover - table error


def _read_section(doc: Mapping[str, Any], section: str, out: _Collector) -> dict[str, Any]:
    """The values of one section with defaults filled in (None for any value that had a problem)."""
    settings = SETTINGS[section]
    raw = doc.get(section, {})
    values: dict[str, Any] = {s.name: s.default for s in settings}
    if not isinstance(raw, dict):
        out.problem(
            section,
            f"expected a table, got {_type_name(raw)}",
            f"write it as [{section}] with settings below",
        )
        return values
    names = [s.name for s in settings]
    for key in raw:
        if key not in names:
            out.problem(
                f"{section}.{key}",
                "unknown setting",
                _did_you_mean(key, names) or f"known: {', '.join(names)}",
            )
    for setting in settings:
        if setting.name in raw:
            value = raw[setting.name]
            values[setting.name] = (
                value if _check_value(setting, f"{section}.{setting.name}", value, out) else None
            )
    return values


def _resolve(base_dir: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base_dir / path


def _read_listeners(doc: Mapping[str, Any], out: _Collector) -> dict[str, Listener]:
    raw = doc.get("listeners", {})
    if not isinstance(raw, dict):
        out.problem(
            "listeners", f"expected a table, got {_type_name(raw)}", "write each listener as [listeners.NAME]"
        )
        raw = {}
    listeners: dict[str, Listener] = {}
    names = list(STANDARD_LISTENERS) + [n for n in raw if n not in STANDARD_LISTENERS]
    setting_names = [s.name for s in LISTENER_SETTINGS]
    by_name = {s.name: s for s in LISTENER_SETTINGS}
    for name in names:
        table = raw.get(name, {})
        key = f"listeners.{name}"
        if not isinstance(table, dict):
            out.problem(key, f"expected a table, got {_type_name(table)}", f"write it as [listeners.{name}]")
            continue
        for k in table:
            if k not in setting_names:
                out.problem(
                    f"{key}.{k}",
                    "unknown setting",
                    _did_you_mean(k, setting_names) or f"known: {', '.join(setting_names)}",
                )
        good: dict[str, Any] = {}
        for k, value in table.items():
            if k in by_name and _check_value(by_name[k], f"{key}.{k}", value, out):
                good[k] = value
        standard = STANDARD_LISTENERS.get(name)
        if standard is None and "protocol" not in table:
            close = _did_you_mean(name, list(STANDARD_LISTENERS))
            hint = (
                f"{close} The standard names are {', '.join(STANDARD_LISTENERS)}; other names need "
                f'protocol = "..." ({" | ".join(PROTOCOLS)})'
            ).strip()
            out.problem(key, "not a standard listener name and no protocol given", hint)
            continue
        if standard is None and "port" not in table:
            out.problem(
                f"{key}.port",
                "required for a listener that is not one of the standard names",
                "add port = ...",
            )
            continue
        if "protocol" in table and "protocol" not in good:
            continue  # a bad protocol was reported already
        protocol = good.get("protocol", standard.protocol if standard else "")
        port = good.get("port", standard.port if standard else 0)
        # Port 0 asks the system for a free port; the integration tests run whole servers that way.
        if "port" in good and not 0 <= port <= 65535:
            out.problem(
                f"{key}.port", f"must be between 1 and 65535, got {port}", "0 picks a free port (for tests)"
            )
            port = 0
        address = good.get("address", DEFAULT_ADDRESS)
        if "address" in good:
            try:
                address = str(ipaddress.ip_address(address))
            except ValueError:
                out.problem(
                    f"{key}.address",
                    f'"{address}" is not an IP address',
                    "use 0.0.0.0 (all IPv4 addresses), :: (all IPv6 addresses) or one address "
                    "such as 127.0.0.1",
                )
                address = ""
        if standard is not None and protocol == standard.protocol:
            purpose = standard.purpose
        else:
            purpose = PROTOCOL_PURPOSES.get(protocol, "")
        tls = good.get("tls", standard.tls if standard and protocol == standard.protocol else "none")
        enabled = good.get("enabled", default_enabled(standard) if standard else True)
        if ("tls" in table and "tls" not in good) or ("enabled" in table and "enabled" not in good):
            continue
        listeners[name] = Listener(name, protocol, enabled, address, port, tls, purpose)
    return listeners


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _check_listeners(
    listeners: Mapping[str, Listener], allow_plaintext_auth: bool | None, out: _Collector
) -> None:
    # Two enabled listeners clash when they would bind the same port on overlapping addresses: the same
    # address, or a wildcard and any address of the same family (Linux refuses that bind: EADDRINUSE).
    seen: list[Listener] = []
    for listener in listeners.values():
        if not listener.enabled or not listener.address or not listener.port:
            continue
        ip = ipaddress.ip_address(listener.address)
        for other in seen:
            other_ip = ipaddress.ip_address(other.address)
            if other.port != listener.port or ip.version != other_ip.version:
                continue
            if ip == other_ip or ip.is_unspecified or other_ip.is_unspecified:
                out.problem(
                    f"listeners.{listener.name}.port",
                    f"{listener.address} port {listener.port} clashes with listeners.{other.name} "
                    f"({other.address} port {other.port})",
                    f"give one of them another port, or set enabled = false on [listeners.{other.name}]",
                )
                break
        seen.append(listener)

    for listener in listeners.values():
        key = f"listeners.{listener.name}"
        if listener.protocol == "pop2" and listener.tls != "none":
            out.problem(f"{key}.tls", "POP2 has no TLS (RFC 937 defines none)", 'set tls = "none"')
        if listener.protocol == "http" and listener.tls == "starttls":
            out.problem(f"{key}.tls", "HTTP has no STARTTLS", 'use tls = "implicit" (https) or "none"')
        if (
            listener.enabled
            and listener.protocol == "pop2"
            and listener.address
            and not _is_loopback(listener.address)
            and allow_plaintext_auth is False
        ):
            out.problem(
                f"{key}.address",
                f"POP2 has no TLS; enabling it on {listener.address} would send passwords in clear "
                "over the network",
                "bind it to 127.0.0.1, or set allow_plaintext_auth = true in [auth] if you accept that",
            )
        if listener.enabled and listener.protocol not in BUILT_PROTOCOLS:
            out.warning(
                key,
                f'protocol "{listener.protocol}" is not built yet in this version; '
                "the listener will not start",
            )


def _check_tls_files(certificate: Path, private_key: Path, out: _Collector) -> None:
    readable = True
    for key, path in (("tls.certificate", certificate), ("tls.private_key", private_key)):
        if not path.exists():
            out.problem(
                key,
                f"file not found: {path}",
                "run `postoffice init` to create a self-signed certificate, or point this at your PEM file",
            )
            readable = False
        elif not path.is_file():
            out.problem(key, f"not a file: {path}", "point this at a PEM file")
            readable = False
        elif not os.access(path, os.R_OK):
            out.problem(key, f"not readable: {path}", "make it readable by the user that starts postoffice")
            readable = False
    if not readable:
        return
    # Load each file on its own first so the problem names the file that is wrong.
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        certs = x509.load_pem_x509_certificates(certificate.read_bytes())
    except (ValueError, OSError) as exc:
        out.problem(
            "tls.certificate",
            f"not a PEM certificate: {certificate} ({exc})",
            "the file must hold -----BEGIN CERTIFICATE-----",
        )
        return
    try:
        serialization.load_pem_private_key(private_key.read_bytes(), password=None)
    except TypeError:
        out.problem(
            "tls.private_key",
            f"the key is encrypted: {private_key}",
            "store the key without a passphrase (mode 0600)",
        )
        return
    except (ValueError, OSError) as exc:
        out.problem(
            "tls.private_key",
            f"not a PEM private key: {private_key} ({exc})",
            "the file must hold -----BEGIN PRIVATE KEY-----",
        )
        return
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certificate, private_key)
    except (ssl.SSLError, OSError) as exc:
        out.problem(
            "tls.private_key",
            f"the certificate and private key do not load together ({exc.__class__.__name__}: {exc})",
            "the key must be the one the certificate was issued for",
        )
        return
    import datetime

    not_after = certs[0].not_valid_after_utc
    if not_after < datetime.datetime.now(datetime.UTC):
        out.warning(
            "tls.certificate",
            f"the certificate expired on {not_after:%Y-%m-%d}",
            "renew it, then send SIGHUP to reload without a restart",
        )


def _syntax_problem(path: Path, exc: tomllib.TOMLDecodeError) -> ConfigProblem:
    text = str(exc)
    match = re.search(r"\(at line (\d+), column (\d+)\)", text)
    message = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", text)
    if match:
        line = int(match.group(1))
        return ConfigProblem(
            path.name,
            f"TOML syntax error at line {line}, column {match.group(2)}: {message}",
            'check quoting and brackets on that line; strings need "quotes"',
            line,
        )
    return ConfigProblem(path.name, f"TOML syntax error at the end of the file: {message}", "", None)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read, validate and return the configuration at `path`; raise `ConfigError` listing every problem."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            [
                ConfigProblem(
                    str(path),
                    "config file not found",
                    "create one with `postoffice init --data-dir DIR --domain DOMAIN`, or pass --config FILE",
                )
            ]
        ) from None
    except OSError as exc:
        raise ConfigError(
            [ConfigProblem(str(path), f"cannot read the config file: {exc.strerror or exc}")]
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            [ConfigProblem(path.name, f"not UTF-8 at line {line}", "TOML files must be UTF-8 encoded", line)]
        ) from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_syntax_problem(path, exc)]) from None
    return _build(doc, path.resolve())


def _build(doc: dict[str, Any], path: Path) -> Config:
    out = _Collector()
    base_dir = path.parent
    known = [*SETTINGS, "listeners"]
    for key in doc:
        if key not in known:
            out.problem(
                key, "unknown section", _did_you_mean(key, known) or f"known sections: {', '.join(known)}"
            )

    server = _read_section(doc, "server", out)
    tls = _read_section(doc, "tls", out)
    store = _read_section(doc, "store", out)
    smtp = _read_section(doc, "smtp", out)
    auth = _read_section(doc, "auth", out)
    pop3 = _read_section(doc, "pop3", out)
    imap = _read_section(doc, "imap", out)
    submission = _read_section(doc, "submission", out)
    queue = _read_section(doc, "queue", out)
    limits = _read_section(doc, "limits", out)
    listeners = _read_listeners(doc, out)
    for index, network in enumerate(queue["trusted_networks"] or ()):
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            out.problem(
                f"queue.trusted_networks[{index}]", f'"{network}" is not a network', 'write "192.0.2.0/24"'
            )
    for index, server_ip in enumerate(queue["nameservers"] or ()):
        try:
            ipaddress.ip_address(server_ip)
        except ValueError:
            out.problem(
                f"queue.nameservers[{index}]", f'"{server_ip}" is not an IP address', 'write "192.0.2.53"'
            )

    raw_server = doc.get("server")
    explicit_hostname = isinstance(raw_server, dict) and "hostname" in raw_server
    hostname = server["hostname"]
    if explicit_hostname and hostname is not None and not _valid_hostname(hostname):
        out.problem(
            "server.hostname",
            f'"{hostname}" is not a valid host name',
            "use a name such as mail.example.test",
        )
    if hostname is None:
        # No hostname in the file: the machine's name (not getfqdn(), which may wait for DNS).
        hostname = "" if explicit_hostname else socket.gethostname()
    if server["user"]:
        try:
            pwd.getpwnam(server["user"])
        except KeyError:
            out.problem(
                "server.user",
                f'no such user "{server["user"]}"',
                'create it, or leave user = "" to not drop privileges',
            )
    if server["group"]:
        try:
            grp.getgrnam(server["group"])
        except KeyError:
            out.problem(
                "server.group", f'no such group "{server["group"]}"', 'create it, or leave group = ""'
            )

    _check_listeners(listeners, auth["allow_plaintext_auth"], out)

    certificate = _resolve(base_dir, tls["certificate"]) if tls["certificate"] else None
    private_key = _resolve(base_dir, tls["private_key"]) if tls["private_key"] else None
    if any(lst.enabled and lst.tls != "none" for lst in listeners.values()) and certificate and private_key:
        _check_tls_files(certificate, private_key, out)

    if out.problems:
        raise ConfigError(out.problems, out.warnings)

    assert certificate is not None and private_key is not None
    return Config(
        path=path,
        base_dir=base_dir,
        server=ServerConfig(
            hostname=hostname.rstrip(".").lower(),
            user=server["user"],
            group=server["group"],
            log_level=server["log_level"],
            shutdown_grace=float(server["shutdown_grace"]),
        ),
        tls=TlsConfig(certificate=certificate, private_key=private_key, min_version=tls["min_version"]),
        store=StoreConfig(
            path=_resolve(base_dir, store["path"]),
            spool_dir=_resolve(base_dir, store["spool_dir"]),
            min_free_space=store["min_free_space"],
            disk_reserve=store["disk_reserve"],
        ),
        smtp=SmtpConfig(
            max_message_size=smtp["max_message_size"],
            max_recipients=smtp["max_recipients"],
            max_connections=smtp["max_connections"],
            max_connections_per_ip=smtp["max_connections_per_ip"],
            command_timeout=float(smtp["command_timeout"]),
            data_timeout=float(smtp["data_timeout"]),
            max_errors=smtp["max_errors"],
        ),
        auth=AuthConfig(
            allow_plaintext_auth=auth["allow_plaintext_auth"],
            failure_delay=float(auth["failure_delay"]),
            ip_max_failures=auth["ip_max_failures"],
            account_max_failures=auth["account_max_failures"],
            failure_window=float(auth["failure_window"]),
            lockout=float(auth["lockout"]),
            verified_cache_ttl=float(auth["verified_cache_ttl"]),
            max_pending_verifications=auth["max_pending_verifications"],
        ),
        pop3=Pop3Config(
            max_connections=pop3["max_connections"],
            max_connections_per_ip=pop3["max_connections_per_ip"],
            autologout=float(pop3["autologout"]),
            max_errors=pop3["max_errors"],
        ),
        imap=ImapConfig(
            max_connections=imap["max_connections"],
            max_connections_per_ip=imap["max_connections_per_ip"],
            autologout=float(imap["autologout"]),
            idle_timeout=float(imap["idle_timeout"]),
            append_limit=imap["append_limit"],
            max_mailboxes=imap["max_mailboxes"],
            max_mailbox_name_length=imap["max_mailbox_name_length"],
            max_mailbox_depth=imap["max_mailbox_depth"],
        ),
        submission=SubmissionConfig(
            max_messages_per_hour=submission["max_messages_per_hour"],
            max_recipients_per_message=submission["max_recipients_per_message"],
            received_client_address=submission["received_client_address"],
        ),
        queue=QueueConfig(
            first_retry=float(queue["first_retry"]),
            max_retry_interval=float(queue["max_retry_interval"]),
            max_age=float(queue["max_age"]),
            delay_warning_after=float(queue["delay_warning_after"]),
            max_deliveries=queue["max_deliveries"],
            max_per_destination=queue["max_per_destination"],
            delivery_port=queue["delivery_port"],
            tls=queue["tls"],
            connect_timeout=float(queue["connect_timeout"]),
            command_timeout=float(queue["command_timeout"]),
            nameservers=tuple(queue["nameservers"]),
            dns_port=queue["dns_port"],
            smarthost=queue["smarthost"],
            smarthost_port=queue["smarthost_port"],
            smarthost_tls=queue["smarthost_tls"],
            smarthost_ca_file=str(_resolve(base_dir, queue["smarthost_ca_file"]))
            if queue["smarthost_ca_file"]
            else "",
            smarthost_username=queue["smarthost_username"],
            smarthost_password=queue["smarthost_password"],
            trusted_networks=tuple(queue["trusted_networks"]),
        ),
        limits=LimitsConfig(
            login_timeout=float(limits["login_timeout"]),
            min_data_rate=float(limits["min_data_rate"]),
        ),
        listeners=listeners,
        warnings=tuple(out.warnings),
    )


_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def _valid_hostname(name: str) -> bool:
    name = name.rstrip(".").lower()
    return 0 < len(name) <= 253 and all(_LABEL.match(label) for label in name.split("."))


# -- the default file ----------------------------------------------------------------------------------------


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return json.dumps(value)  # a JSON array of strings is a valid TOML array
    raise TypeError(f"cannot write {value!r} as TOML")


def render_default_config(
    hostname: str, domain: str, port_offset: int = 0, address: str = DEFAULT_ADDRESS
) -> str:
    """A complete, commented config file: every setting with its default and one comment line explaining it.

    `port_offset` is added to every standard port (10000 gives 10025, 10587, ...), for running unprivileged;
    `address` is the bind address of every listener."""
    if port_offset < 0 or max(s.port for s in STANDARD_LISTENERS.values()) + port_offset > 65535:
        raise ValueError(f"port offset {port_offset} puts a port outside 1..65535")
    ipaddress.ip_address(address)  # ValueError for anything but an IP address literal
    lines = [
        f"# Postoffice configuration for {domain}.",
        "# Every setting is listed with its default. Relative paths are relative to this file's directory.",
        "# Check your changes with `postoffice check-config`; see docs/configuration.md for details.",
    ]
    for section, settings in SETTINGS.items():
        lines += ["", f"[{section}]"]
        for setting in settings:
            value = hostname if (section, setting.name) == ("server", "hostname") else setting.default
            lines.append(f"# {setting.help}")
            lines.append(f"{setting.name} = {_toml_value(value)}")
    lines += [
        "",
        "# Listeners: one table per listener. Each has",
        "#   enabled  = start it (true/false)",
        "#   address  = IP address to bind: 0.0.0.0 = all IPv4, :: = all IPv6, 127.0.0.1 = this machine only",
        "#   port     = TCP port, 1..65535 (0: the system picks a free port; for tests)",
        '#   tls      = "none" | "starttls" (upgrade on request) | "implicit" (TLS from the first byte)',
        f'# Names other than the ones below need protocol = "..." ({" | ".join(PROTOCOLS)}).',
    ]
    for standard in STANDARD_LISTENERS.values():
        lines += ["", f"[listeners.{standard.name}]", f"# {standard.purpose}"]
        if standard.name == "pop2":
            lines += [
                "# POP2 (RFC 937) has no TLS and sends passwords in clear; enabling it on an address",
                "# other than loopback also needs [auth] allow_plaintext_auth = true",
            ]
        if standard.protocol not in BUILT_PROTOCOLS:
            lines.append(f"# {standard.protocol} is not built in this version: the listener could not start")
        lines += [
            f"enabled = {_toml_value(default_enabled(standard))}",
            f"address = {_toml_value(address)}",
            f"port = {standard.port + port_offset}",
            f"tls = {_toml_value(standard.tls)}",
        ]
    return "\n".join(lines) + "\n"
