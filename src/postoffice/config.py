"""The TOML configuration file: loading, validation and the commented default file.

Implementation notes
- One file, parsed with `tomllib`, turned into frozen dataclasses, one per section. Every setting has a
  default, so an empty file is a valid configuration (all standard listeners enabled on their standard
  ports, except pop2 and those whose protocol is not built yet, which could not start).
- Each section is declared once, by the package that uses it (`postoffice.settings`; e.g. `[smtp]` in
  `postoffice/smtp/settings.py`): its dataclass carries every setting's default, type, constraints and
  documentation. This module assembles the sections (`CORE_SECTIONS`, then the section of any registered
  protocol) and validates a file against them; `render_default_config` writes the file `postoffice init`
  creates and `postoffice.config_doc` the tables of docs/configuration.md from the same declarations, so
  neither can drift from what the loader accepts (tests round-trip both; docs/decisions/0033).
- The listeners come from the protocol registry (`postoffice.protocols`): the standard listener names,
  ports, TLS modes and purposes, which protocols are built, and the per-protocol listener rules (POP2 has
  no TLS, HTTP no STARTTLS).
- Validation never stops at the first problem: `load_config` collects every problem it can find (unknown keys
  with a "did you mean" hint, wrong types, out-of-range values, port clashes, certificate files that are
  missing or do not load, users and groups that do not exist) and raises one `ConfigError` holding all of
  them. Each problem names the dotted key it is about (`listeners.smtp.port`), so an administrator can go
  straight to it.
- Problems are errors (the server will not start); `Config.warnings` are things the administrator should
  know but that do not stop the server, e.g. an enabled listener whose protocol is not part of this build,
  or a setting under its old name (`[queue] trusted_networks`, now `[smtp] relay_networks`).
- Relative paths are resolved against the directory holding the config file, never against the working
  directory, so `postoffice run` behaves the same from anywhere.
"""

from __future__ import annotations

import grp
import ipaddress
import os
import pwd
import re
import socket
import ssl
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from postoffice.auth.settings import AuthConfig
from postoffice.imap.settings import ImapConfig
from postoffice.mailauth.mtasts_settings import MtaStsConfig
from postoffice.mailauth.settings import MailAuthConfig
from postoffice.net.service import TLS_MODES
from postoffice.net.settings import LimitsConfig, TlsConfig
from postoffice.pop3.settings import Pop3Config
from postoffice.protocols import SERVICES
from postoffice.settings import (
    Collector,
    ConfigProblem,
    Section,
    Setting,
    check_value,
    convert,
    declared,
    did_you_mean,
    section,
    setting,
    toml_value,
    type_name,
)
from postoffice.sieve.settings import SieveConfig
from postoffice.smtp.settings import QueueConfig, SmtpConfig, SubmissionConfig
from postoffice.spam.settings import SpamConfig
from postoffice.store.settings import StoreConfig

__all__ = [
    "CORE_SECTIONS",
    "DEFAULT_ADDRESS",
    "AuthConfig",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "ImapConfig",
    "LimitsConfig",
    "Listener",
    "MailAuthConfig",
    "MtaStsConfig",
    "Pop3Config",
    "QueueConfig",
    "ServerConfig",
    "SmtpConfig",
    "StandardListener",
    "StoreConfig",
    "SubmissionConfig",
    "TlsConfig",
    "config_sections",
    "default_enabled",
    "is_built",
    "listener_settings",
    "load_config",
    "protocol_names",
    "render_default_config",
    "standard_listeners",
]

S = TypeVar("S")

LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error")
# A mail server answers the world: every interface unless the config names one (`init --address`).
DEFAULT_ADDRESS = "0.0.0.0"  # noqa: S104


# -- [server] ------------------------------------------------------------------------------------------------

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def _valid_hostname(name: str) -> bool:
    name = name.rstrip(".").lower()
    return 0 < len(name) <= 253 and all(_LABEL.match(label) for label in name.split("."))


def _hostname_problem(value: str) -> tuple[str, str] | None:
    if _valid_hostname(value):
        return None
    return f'"{value}" is not a valid host name', "use a name such as mail.example.test"


def _user_problem(value: str) -> tuple[str, str] | None:
    if value:
        try:
            pwd.getpwnam(value)
        except (KeyError, ValueError):  # ValueError: a NUL character in the name
            return f'no such user "{value}"', 'create it, or leave user = "" to not drop privileges'
    return None


def _group_problem(value: str) -> tuple[str, str] | None:
    if value:
        try:
            grp.getgrnam(value)
        except (KeyError, ValueError):  # ValueError: a NUL character in the name
            return f'no such group "{value}"', 'create it, or leave group = ""'
    return None


@section("server")
@dataclass(frozen=True)
class ServerConfig:
    """The process: its name, the user it runs as, its log, its shutdown (`postoffice.server`)."""

    hostname: str = setting(
        "localhost",
        "name this server gives itself in greetings and Received headers",
        doc=(
            "The name this server gives itself in SMTP greetings, EHLO replies and Received headers. Must "
            "be a valid DNS name. `init` sets it to `mail.DOMAIN` unless `--hostname` is given."
        ),
        check=_hostname_problem,
        normalize=lambda name: name.rstrip(".").lower(),
        # The machine's name, not getfqdn(), which may wait for DNS.
        default_factory=socket.gethostname,
        doc_default="the machine's host name",
    )
    user: str = setting(
        "",
        'when started as root: drop to this user after binding ("" = stay)',
        doc=(
            'When started as root: the user to switch to once every port is bound. `""` = do not switch. '
            "Must exist (checked with the system user database)."
        ),
        check=_user_problem,
    )
    group: str = setting(
        "",
        'group to drop to ("" = the primary group of `user`)',
        doc='The group to switch to; `""` = the primary group of `user`. Must exist when set.',
        check=_group_problem,
    )
    log_level: str = setting(
        "info",
        "how much to log: debug | info | warning | error",
        doc='`"debug"`, `"info"`, `"warning"` or `"error"`. Logs go to standard error.',
        choices=LOG_LEVELS,
    )
    shutdown_grace: float = setting(
        30,
        "seconds that transactions in flight may take after SIGTERM (0 = close at once)",
        doc=(
            "Seconds that transactions in flight may take to finish after SIGTERM/SIGINT before they are "
            "cut off. `0` closes at once; negative values are errors."
        ),
        minimum=0,
    )


# -- the sections --------------------------------------------------------------------------------------------

#: The sections of every build, in the order of the default file and docs/configuration.md. A registered
#: protocol's own section follows them when it is not one of these.
CORE_SECTIONS: tuple[type, ...] = (
    ServerConfig,
    TlsConfig,
    StoreConfig,
    LimitsConfig,
    SmtpConfig,
    SubmissionConfig,
    QueueConfig,
    MailAuthConfig,
    MtaStsConfig,
    SpamConfig,
    SieveConfig,
    AuthConfig,
    Pop3Config,
    ImapConfig,
)


def config_sections() -> list[Section]:
    """Every section a config file may have, in order."""
    classes = list(CORE_SECTIONS)
    for service in SERVICES.values():
        if service.settings is not None and service.settings not in classes:
            classes.append(service.settings)
    return [declared(cls) for cls in classes]


# -- listeners -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StandardListener:
    name: str
    protocol: str
    port: int
    tls: str
    enabled: bool
    purpose: str
    offset_port: int | None = None

    def port_with_offset(self, offset: int) -> int:
        """Its port in a config written with a port offset (running unprivileged)."""
        if offset and self.offset_port is not None:
            return self.offset_port
        return self.port + offset


def standard_listeners() -> dict[str, StandardListener]:
    """The standard listeners of every registered protocol, in the order they are shown and written."""
    return {
        port.name: StandardListener(
            port.name,
            service.name,
            port.port,
            port.tls,
            port.enabled,
            port.purpose or service.purpose,
            port.offset_port,
        )
        for service in SERVICES.values()
        for port in service.ports
    }


def protocol_names() -> tuple[str, ...]:
    """Every protocol a listener may speak."""
    return tuple(SERVICES)


def is_built(protocol: str) -> bool:
    service = SERVICES.get(protocol)
    return service is not None and service.built


def default_enabled(standard: StandardListener) -> bool:
    """Whether a standard listener is on when the config does not say: never one whose protocol is not built
    (it could not start; docs/decisions/0006)."""
    return standard.enabled and is_built(standard.protocol)


def listener_settings() -> tuple[Setting, ...]:
    """The keys of a `[listeners.NAME]` table (their defaults come from the standard listener)."""
    protocols = protocol_names()
    return (
        Setting("enabled", "bool", True, "start this listener", doc="`true` or `false`."),
        Setting(
            "address",
            "str",
            DEFAULT_ADDRESS,
            "IP address to bind: 0.0.0.0 = all IPv4, :: = all IPv6",
            doc=(
                "IP address to bind: `0.0.0.0` = every IPv4 address, `::` = every IPv6 address, `127.0.0.1` "
                "= this machine only. Host names are not accepted."
            ),
        ),
        Setting(
            "port",
            "int",
            None,
            "TCP port, 1..65535 (0: any free port, for tests)",
            doc=(
                "TCP port, 1..65535. `0` lets the system pick a free port (the integration tests use it; the "
                "`postoffice ready:` line names the ports actually bound)."
            ),
        ),
        Setting(
            "tls",
            "choice",
            None,
            '"none" | "starttls" | "implicit" (TLS from the first byte)',
            doc=(
                '`"none"`; `"starttls"`: plain text first, upgraded when the client asks (RFC 3207, RFC '
                '2595); `"implicit"`: TLS from the first byte (RFC 8314).'
            ),
            choices=TLS_MODES,
        ),
        Setting(
            "protocol",
            "choice",
            None,
            "needed for names other than the standard ones",
            doc=(
                f"{', '.join(f'`{name}`' for name in protocols[:-1])} or `{protocols[-1]}`. Needed only for "
                "names other than the standard ones."
            ),
            choices=protocols,
        ),
    )


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
        return is_built(self.protocol)

    @property
    def status(self) -> str:
        """ "ready", "not built yet" or "disabled"."""
        if not self.enabled:
            return "disabled"
        return "ready" if self.built else "not built yet"


# -- the configuration ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    path: Path
    base_dir: Path
    #: Every section's settings, by section class (`section(SmtpConfig)`, or the properties below).
    sections: Mapping[type, object]
    listeners: Mapping[str, Listener]
    warnings: tuple[ConfigProblem, ...] = field(default=())

    def section(self, cls: type[S]) -> S:
        """The settings of the section declared by `cls` (a protocol's factory gets its own this way)."""
        value = self.sections[cls]
        if not isinstance(value, cls):  # only a Config assembled by hand can pair a class with another value
            raise TypeError(f"section {cls.__name__} holds a {type(value).__name__}")
        return value

    @property
    def server(self) -> ServerConfig:
        return self.section(ServerConfig)

    @property
    def tls(self) -> TlsConfig:
        return self.section(TlsConfig)

    @property
    def store(self) -> StoreConfig:
        return self.section(StoreConfig)

    @property
    def limits(self) -> LimitsConfig:
        return self.section(LimitsConfig)

    @property
    def smtp(self) -> SmtpConfig:
        return self.section(SmtpConfig)

    @property
    def submission(self) -> SubmissionConfig:
        return self.section(SubmissionConfig)

    @property
    def queue(self) -> QueueConfig:
        return self.section(QueueConfig)

    @property
    def mailauth(self) -> MailAuthConfig:
        return self.section(MailAuthConfig)

    @property
    def sieve(self) -> SieveConfig:
        return self.section(SieveConfig)

    @property
    def spam(self) -> SpamConfig:
        return self.section(SpamConfig)

    @property
    def mta_sts(self) -> MtaStsConfig:
        return self.section(MtaStsConfig)

    @property
    def auth(self) -> AuthConfig:
        return self.section(AuthConfig)

    @property
    def pop3(self) -> Pop3Config:
        return self.section(Pop3Config)

    @property
    def imap(self) -> ImapConfig:
        return self.section(ImapConfig)

    def enabled_listeners(self) -> list[Listener]:
        return [listener for listener in self.listeners.values() if listener.enabled]


class ConfigError(Exception):
    """The configuration has problems; `problems` lists every one found (never only the first)."""

    def __init__(self, problems: list[ConfigProblem], warnings: list[ConfigProblem] | None = None) -> None:
        self.problems = problems
        self.warnings = warnings or []
        super().__init__("\n".join(str(p) for p in problems))


# -- loading -------------------------------------------------------------------------------------------------


def _read_sections(
    doc: Mapping[str, Any], specs: list[Section], base_dir: Path, out: Collector
) -> dict[str, dict[str, Any]]:
    """Every section's values, converted, with defaults filled in (None for a value that had a problem).

    A setting under a name it had before (`renamed_from`) is read as the new one, with a warning."""
    renamed: dict[tuple[str, str], tuple[Section, Setting]] = {}
    for spec in specs:
        for item in spec.settings:
            for old in item.renamed_from:
                old_section, _, old_name = old.partition(".")
                renamed[(old_section, old_name)] = (spec, item)
    names = [spec.name for spec in specs]
    names += [name for name, _ in renamed if name not in names]
    known = [*names, "listeners"]
    for key in doc:
        if key not in known:
            out.problem(
                key, "unknown section", did_you_mean(key, known) or f"known sections: {', '.join(known)}"
            )

    by_name = {spec.name: spec for spec in specs}
    # (section, setting) -> every (dotted key as written, value) that sets it: the name and old names
    given: dict[tuple[str, str], list[tuple[str, Any]]] = {}
    for name in names:
        raw = doc.get(name, {})
        if not isinstance(raw, dict):
            out.problem(
                name, f"expected a table, got {type_name(raw)}", f"write it as [{name}] with settings below"
            )
            continue
        declaration = by_name.get(name)
        own = [item.name for item in declaration.settings] if declaration else []
        for key, value in raw.items():
            if key in own:
                given.setdefault((name, key), []).append((f"{name}.{key}", value))
            elif (name, key) in renamed:
                target, item = renamed[(name, key)]
                given.setdefault((target.name, item.name), []).append((f"{name}.{key}", value))
            else:
                out.problem(
                    f"{name}.{key}", "unknown setting", did_you_mean(key, own) or f"known: {', '.join(own)}"
                )

    values: dict[str, dict[str, Any]] = {}
    for spec in specs:
        section_values = values[spec.name] = {}
        for item in spec.settings:
            new_key = f"{spec.name}.{item.name}"
            found = given.get((spec.name, item.name), [])
            for key, _ in found:
                if key == new_key:
                    continue
                new_place = f"{item.name} in [{spec.name}]"
                if len(found) > 1:
                    out.problem(key, f"renamed to {new_place}, which is set too", f"remove {key}")
                else:
                    out.warning(
                        key,
                        f"renamed to {new_place}; the old name still works",
                        f"write it as {item.name} in [{spec.name}] instead",
                    )
            if len(found) > 1:
                section_values[item.name] = None
            elif found:
                key, value = found[0]
                good = check_value(item, key, value, out)
                section_values[item.name] = convert(item, value, base_dir) if good else None
            else:
                default = item.default_factory() if item.default_factory is not None else item.default
                section_values[item.name] = convert(item, default, base_dir)
    return values


def _read_listeners(doc: Mapping[str, Any], out: Collector) -> dict[str, Listener]:
    raw = doc.get("listeners", {})
    if not isinstance(raw, dict):
        out.problem(
            "listeners", f"expected a table, got {type_name(raw)}", "write each listener as [listeners.NAME]"
        )
        raw = {}
    standards = standard_listeners()
    protocols = protocol_names()
    listeners: dict[str, Listener] = {}
    names = list(standards) + [n for n in raw if n not in standards]
    settings = listener_settings()
    setting_names = [s.name for s in settings]
    by_name = {s.name: s for s in settings}
    for name in names:
        table = raw.get(name, {})
        key = f"listeners.{name}"
        if not isinstance(table, dict):
            out.problem(key, f"expected a table, got {type_name(table)}", f"write it as [listeners.{name}]")
            continue
        for k in table:
            if k not in setting_names:
                out.problem(
                    f"{key}.{k}",
                    "unknown setting",
                    did_you_mean(k, setting_names) or f"known: {', '.join(setting_names)}",
                )
        # check_value reports each bad value to `out`: every value is checked, in the file's order
        good: dict[str, Any] = {
            k: value
            for k, value in table.items()
            if k in by_name and check_value(by_name[k], f"{key}.{k}", value, out)
        }
        standard = standards.get(name)
        if standard is None and "protocol" not in table:
            close = did_you_mean(name, list(standards))
            hint = (
                f"{close} The standard names are {', '.join(standards)}; other names need "
                f'protocol = "..." ({" | ".join(protocols)})'
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
            purpose = SERVICES[protocol].purpose
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
    listeners: Mapping[str, Listener], allow_plaintext_auth: bool | None, out: Collector
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
        service = SERVICES[listener.protocol]
        if listener.tls not in service.tls_modes:
            out.problem(f"{key}.tls", *service.tls_problem)
        if (
            listener.enabled
            and service.cleartext
            and listener.address
            and not _is_loopback(listener.address)
            and allow_plaintext_auth is False
        ):
            out.problem(
                f"{key}.address",
                f"{service.label} has no TLS; enabling it on {listener.address} would send passwords in "
                "clear over the network",
                "bind it to 127.0.0.1, or set allow_plaintext_auth = true in [auth] if you accept that",
            )
        if listener.enabled and not service.built:
            out.warning(
                key,
                f'protocol "{listener.protocol}" is not built yet in this version; '
                "the listener will not start",
            )


def _check_tls_files(certificate: Path, private_key: Path, out: Collector) -> None:
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
    out = Collector()
    base_dir = path.parent
    specs = config_sections()
    values = _read_sections(doc, specs, base_dir, out)
    listeners = _read_listeners(doc, out)
    _check_listeners(listeners, values["auth"]["allow_plaintext_auth"], out)

    certificate, private_key = values["tls"]["certificate"], values["tls"]["private_key"]
    if any(lst.enabled and lst.tls != "none" for lst in listeners.values()) and certificate and private_key:
        _check_tls_files(certificate, private_key, out)

    if out.problems:
        raise ConfigError(out.problems, out.warnings)
    return Config(
        path=path,
        base_dir=base_dir,
        sections={spec.cls: spec.cls(**values[spec.name]) for spec in specs},
        listeners=listeners,
        warnings=tuple(out.warnings),
    )


# -- the default file ----------------------------------------------------------------------------------------


def render_default_config(
    hostname: str, domain: str, port_offset: int = 0, address: str = DEFAULT_ADDRESS
) -> str:
    """A complete, commented config file: every setting with its default and one comment line explaining it.

    `port_offset` is added to every standard port (10000 gives 10025, 10587, ...), for running unprivileged,
    except to those with a port of their own for that case (the web's 8080 and 8443: browsers refuse 10080);
    `address` is the bind address of every listener."""
    standards = standard_listeners()
    if port_offset < 0 or max(s.port for s in standards.values()) + port_offset > 65535:
        raise ValueError(f"port offset {port_offset} puts a port outside 1..65535")
    ipaddress.ip_address(address)  # ValueError for anything but an IP address literal
    lines = [
        f"# Postoffice configuration for {domain}.",
        "# Every setting is listed with its default. Relative paths are relative to this file's directory.",
        "# Check your changes with `postoffice check-config`; see docs/configuration.md for details.",
    ]
    for spec in config_sections():
        lines += ["", f"[{spec.name}]"]
        for item in spec.settings:
            value = hostname if (spec.name, item.name) == ("server", "hostname") else item.default
            lines.append(f"# {item.comment}")
            lines.append(f"{item.name} = {toml_value(value)}")
    lines += [
        "",
        "# Listeners: one table per listener. Each has",
        "#   enabled  = start it (true/false)",
        "#   address  = IP address to bind: 0.0.0.0 = all IPv4, :: = all IPv6, 127.0.0.1 = this machine only",
        "#   port     = TCP port, 1..65535 (0: the system picks a free port; for tests)",
        '#   tls      = "none" | "starttls" (upgrade on request) | "implicit" (TLS from the first byte)',
        f'# Names other than the ones below need protocol = "..." ({" | ".join(protocol_names())}).',
    ]
    for standard in standards.values():
        service = SERVICES[standard.protocol]
        lines += ["", f"[listeners.{standard.name}]", f"# {standard.purpose}"]
        lines += [f"# {line}" for line in service.file_note]
        if not service.built:
            lines.append(f"# {standard.protocol} is not built in this version: the listener could not start")
        lines += [
            f"enabled = {toml_value(default_enabled(standard))}",
            f"address = {toml_value(address)}",
            f"port = {standard.port_with_offset(port_offset)}",
            f"tls = {toml_value(standard.tls)}",
        ]
    return "\n".join(lines) + "\n"
