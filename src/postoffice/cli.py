"""The `postoffice` command line: set up a data directory, check the config, run the server,
administer domains, accounts, aliases, login lockouts and DKIM keys, and export mail.

Implementation notes
- `main(argv) -> int` never lets a traceback reach the terminal: every failure becomes one line on stderr
  and an exit code: 0 ok, 2 config or usage problems, 1 anything else (POSTOFFICE_DEBUG=1 re-raises).
- Every command reads the config named by --config, else $POSTOFFICE_CONFIG, else ./data/postoffice.toml;
  the store-backed commands take the store path from it and refuse to create a store that is not there (a
  typo in --config must not quietly create an empty store somewhere else).
- Store-backed commands run one coroutine under `asyncio.run` and always close the store, also on errors.
  Password hashing runs before the store is opened, so the store is open for the shortest time.
- Export writes messages byte for byte as stored: mbox in the mboxrd variant (quoting `>*From ` lines so
  that unquoting restores them exactly), Maildir with one file per message named after its internal date,
  UID and UIDVALIDITY, with the flags in the Maildir info suffix (https://cr.yp.to/proto/maildir.html).
- Addresses and domains are brought to the one canonical form (`postoffice.directory.address`: lowercase,
  NFC local part, IDNA domain without a trailing dot) and validated before they reach the store, so the CLI
  names exactly the keys that delivery, logins and the login guard use.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import ipaddress
import os
import sys
import time
import tomllib
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from postoffice import __version__
from postoffice.atomicfile import atomic_output, write_atomically
from postoffice.config import DEFAULT_ADDRESS, Config, ConfigError, load_config, render_default_config
from postoffice.directory.address import AddressError, parse_address, parse_domain
from postoffice.plural import counted
from postoffice.protocols import SERVICES

if TYPE_CHECKING:
    from postoffice.store import Account, DkimKey, MailboxInfo, MailStore

T = TypeVar("T")

DEFAULT_CONFIG = Path("data") / "postoffice.toml"
CONFIG_ENV = "POSTOFFICE_CONFIG"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    """A failure to report as one line on stderr, with the exit code to return."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# -- names ---------------------------------------------------------------------------------------------------


def _usage(error: AddressError) -> CliError:
    return CliError(str(error), EXIT_USAGE)


def normalize_domain(name: str) -> str:
    """The canonical domain (directory/address.py); CliError (usage) if it is not a domain name."""
    try:
        return parse_domain(name)
    except AddressError as exc:
        raise _usage(exc) from None


def normalize_address(address: str) -> str:
    """The canonical `local@domain` (directory/address.py); CliError (usage) if it is not a plain address."""
    try:
        return parse_address(address)
    except AddressError as exc:
        raise _usage(exc) from None


def normalize_alias_source(source: str) -> str:
    """An address, or `@domain` for the domain's catch-all."""
    from postoffice.directory.operations import parse_alias_source

    try:
        return parse_alias_source(source)
    except AddressError as exc:
        raise _usage(exc) from None


# -- config and store ----------------------------------------------------------------------------------------


def config_path(args: argparse.Namespace) -> Path:
    explicit = getattr(args, "config", None)
    if explicit:
        return Path(explicit)
    from_env = os.environ.get(CONFIG_ENV)
    return Path(from_env) if from_env else DEFAULT_CONFIG


def _print_problems(path: Path, error: ConfigError) -> None:
    count = len(error.problems)
    if count == 1 and error.problems[0].key in (str(path), path.name):  # the file itself: missing, bad TOML
        print(f"postoffice: {error.problems[0]}", file=sys.stderr)
        return
    print(f"postoffice: {count} problem{'s' if count != 1 else ''} in {path}:", file=sys.stderr)
    for problem in error.problems:
        print(f"  {problem}", file=sys.stderr)


def load(args: argparse.Namespace) -> Config:
    path = config_path(args)
    try:
        return load_config(path)
    except ConfigError as exc:
        _print_problems(path, exc)
        raise CliError("", EXIT_USAGE) from None


def with_store(args: argparse.Namespace, action: Callable[[MailStore], Awaitable[T]]) -> T:
    """Open the store named by the config, run `action` on it, close it (also on failure)."""
    config = load(args)
    if not config.store.path.exists():
        raise CliError(
            f"no store at {config.store.path}; create one with "
            f"`postoffice init --data-dir DIR --domain DOMAIN` or check --config ({config.path})"
        )
    from postoffice.store import open_store

    async def run() -> T:
        store = open_store(config.store)
        try:
            return await action(store)
        finally:
            await store.close()

    return asyncio.run(run())


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def read_password_stdin() -> str:
    line = sys.stdin.readline()
    password = line.rstrip("\r\n")
    if not password:
        raise CliError("no password on standard input (give it as one line)", EXIT_USAGE)
    return password


# -- init ----------------------------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    from postoffice.directory.passwords import generate_password, hash_password
    from postoffice.net.tls import generate_self_signed

    domain = normalize_domain(args.domain)
    hostname = normalize_domain(args.hostname) if args.hostname else f"mail.{domain}"
    demo = normalize_address(f"{args.demo_user}@{domain}") if args.demo_user else None
    try:
        address = str(ipaddress.ip_address(args.address))
    except ValueError:
        raise CliError(
            f"--address must be an IP address such as 0.0.0.0 or 127.0.0.1: {args.address!r}", EXIT_USAGE
        ) from None
    try:
        text = render_default_config(hostname, domain, port_offset=args.port_offset, address=address)
    except ValueError as exc:
        raise CliError(f"--port-offset {args.port_offset}: {exc}", EXIT_USAGE) from None

    data_dir = Path(args.data_dir).absolute()
    config_file = data_dir / "postoffice.toml"
    if config_file.exists() and not args.force:
        raise CliError(f"{config_file} exists already; not overwriting it (use --force to replace it)")
    if not data_dir.exists():
        data_dir.mkdir(mode=0o700, parents=True)
        data_dir.chmod(0o700)  # whatever the umask
        print(f"created {data_dir} (mode 0700)")
    elif not data_dir.is_dir():
        raise CliError(f"{data_dir} exists and is not a directory")

    # Paths come from the rendered file itself, so init creates exactly what the config names.
    doc = tomllib.loads(text)
    cert = data_dir / doc["tls"]["certificate"]
    key = data_dir / doc["tls"]["private_key"]
    store_path = data_dir / doc["store"]["path"]
    spool = data_dir / doc["store"]["spool_dir"]

    if args.force or not (cert.exists() and key.exists()):
        generate_self_signed(hostname, cert, key)
        print(f"wrote a self-signed certificate for {hostname}: {cert} (key {key}, mode 0600)")
    else:
        print(f"kept the existing certificate {cert}")

    spool.mkdir(mode=0o700, parents=True, exist_ok=True)
    store_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    password = generate_password() if demo else None
    password_hash = hash_password(password) if password else None

    from postoffice.directory.operations import dkim_generate
    from postoffice.store import AlreadyExists, open_store

    async def setup() -> None:
        store = open_store(store_path)
        try:
            try:
                await store.add_domain(domain)
                print(f"created the store {store_path} serving {domain}")
            except AlreadyExists:
                print(f"the store {store_path} serves {domain} already")
            keys, made = await dkim_generate(store, domain, by=_cli_user())
            if made:  # docs/decisions/0056: every domain signs its mail from the start
                print(f"made DKIM keys for {domain}: {_key_names(keys)} (`postoffice dns records {domain}`)")
            if demo and password_hash:
                if await store.get_account(demo) is None:
                    # the first account of an installation has the admin role (the web's admin pages)
                    first = not any(a.admin for a in await store.list_accounts())
                    await store.add_account(demo, password_hash, admin=first)
                else:
                    await store.set_password(demo, password_hash)
                # RFC 5321 section 4.5.1: every domain must accept mail for postmaster
                postmaster = f"postmaster@{domain}"
                if demo != postmaster and await store.get_alias(postmaster) is None:
                    await store.add_alias(postmaster, [demo])
                    print(f"{postmaster} -> {demo} (alias)")
        finally:
            await store.close()

    asyncio.run(setup())
    write_atomically(config_file, text.encode(), 0o600)
    print(f"wrote {config_file}")
    if demo:
        print(f"{demo} password: {password}")
    try:
        config = load_config(config_file)
    except ConfigError as exc:  # a bug: the rendered file must always load
        _print_problems(config_file, exc)
        return EXIT_FAILURE
    not_built = [lst.name for lst in config.listeners.values() if lst.status == "not built yet"]
    if not_built:
        print(f"not built yet in this version (will not start): {', '.join(not_built)}")
    if demo:
        print(f"(shown only now; `postoffice user passwd {demo}` sets a new one)")
    if not args.no_hint:
        print(f"to start the server: postoffice --config {config_file} run")
    return EXIT_OK


# -- ports, check-config, run --------------------------------------------------------------------------------


def cmd_ports(args: argparse.Namespace) -> int:
    config = load(args)
    rows = [
        (
            lst.name,
            lst.address,
            lst.port,
            lst.protocol,
            lst.tls,
            "yes" if lst.enabled else "no",
            lst.status,
            lst.purpose,
        )
        for lst in config.listeners.values()
    ]
    print_table(("NAME", "ADDRESS", "PORT", "PROTOCOL", "TLS", "ENABLED", "STATUS", "PURPOSE"), rows)
    for service in SERVICES.values():
        if service.note and any(lst.protocol == service.name for lst in config.listeners.values()):
            print()
            print(f"{service.name}: {service.note}.")
    web = [lst for lst in config.listeners.values() if lst.protocol == "http" and lst.tls == "implicit"]
    for lst in web:
        if lst.status == "ready" and lst.port:
            host = config.server.hostname
            print()
            print(f"webmail: https://{host}/" if lst.port == 443 else f"webmail: https://{host}:{lst.port}/")
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    config = load(args)
    print(f"configuration OK: {config.path}")
    for warning in config.warnings:
        print(f"warning: {warning}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    config = load(args)
    for warning in config.warnings:
        if warning.key.startswith("listeners."):
            continue  # the server logs each listener it does not start; do not say it twice
        print(f"warning: {warning}", file=sys.stderr)
    try:
        from postoffice.server import run_server
    except ImportError as exc:
        raise CliError(f"the server cannot be loaded: {exc}") from None
    result = run_server(config)
    if inspect.isawaitable(result):  # tolerate an async run_server
        result = asyncio.run(_await(result))
    return int(result or 0)


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


# -- domains, users, aliases, mailboxes ----------------------------------------------------------------------


def cmd_domain(args: argparse.Namespace) -> int:
    if args.action == "list":
        domains = with_store(args, lambda store: store.list_domains())
        for domain in domains:
            print(domain.name + ("" if domain.plus_addressing else "  (plus-addressing off)"))
        return EXIT_OK
    from postoffice.directory import operations

    name = normalize_domain(args.name)
    if args.action == "add":

        async def add(store: MailStore) -> list[DkimKey]:
            await operations.add_domain(store, name, by=_cli_user())  # with its DKIM keys
            return await store.dkim_keys(name)

        keys = with_store(args, add)
        print(f"added domain {name}")
        print(f"DKIM keys: {_key_names(keys)}; the records to publish: postoffice dns records {name}")
    elif args.action == "plus-addressing":
        on = args.state == "on"
        with_store(args, lambda store: operations.set_plus_addressing(store, name, on, by=_cli_user()))
        print(f"plus-addressing {args.state} for {name}")
    else:
        with_store(args, lambda store: operations.remove_domain(store, name, by=_cli_user()))
        print(f"removed domain {name}")
    return EXIT_OK


def _cli_user() -> str:
    """Who runs the command line, for the log of what it changed."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"cli:uid {os.getuid()}"


def cmd_user(args: argparse.Namespace) -> int:
    from postoffice.directory import operations

    if args.action == "list":
        domain = normalize_domain(args.domain) if args.domain else None

        async def listing(store: MailStore) -> tuple[list[Account], dict[int, int]]:
            return await store.list_accounts(domain), (await store.storage_used() if args.long else {})

        accounts, used = with_store(args, listing)
        if args.long:
            rows = [
                (
                    a.address,
                    "admin" if a.admin else "",
                    "disabled" if a.disabled else "",
                    _when(a.created),
                    operations.format_size(used.get(a.id, 0)),
                    operations.format_size(a.quota) if a.quota else "none",
                    f"{a.send_limit}/h" if a.send_limit else "default",
                )
                for a in accounts
            ]
            print_table(("ADDRESS", "ROLE", "STATE", "CREATED", "USED", "QUOTA", "SEND LIMIT"), rows)
        else:
            for account in accounts:
                print(account.address)
        return EXIT_OK
    address = normalize_address(args.address)
    by = _cli_user()
    try:
        if args.action == "add":
            chosen = read_password_stdin() if args.password_stdin else None
            _, generated = with_store(
                args, lambda store: operations.add_account(store, address, chosen, admin=args.admin, by=by)
            )
            print(f"added {address}" + (" (admin)" if args.admin else ""))
            if generated:
                print(f"{address} password: {generated}")
        elif args.action == "passwd":
            from postoffice.directory.passwords import generate_password

            password = None if args.password_stdin else generate_password()
            chosen_password = read_password_stdin() if password is None else password
            ended = with_store(
                args, lambda store: operations.change_password(store, address, chosen_password, by=by)
            )
            print(
                f"changed the password of {address}"
                + (f"; {counted(ended, 'web login')} ended" if ended else "")
            )
            if password:
                print(f"{address} password: {password}")
        elif args.action == "admin":
            grant = args.change == "grant"
            with_store(args, lambda store: operations.set_admin(store, address, grant, by=by))
            print(f"{address} {'has' if grant else 'no longer has'} the admin role")
        elif args.action in ("disable", "enable"):
            off = args.action == "disable"
            with_store(args, lambda store: operations.set_disabled(store, address, off, by=by))
            print(f"{args.action}d {address}" + ("; its logins and web sessions are refused" if off else ""))
        elif args.action == "two-factor-off":
            was_on = with_store(args, lambda store: operations.turn_off_second_factor(store, address, by=by))
            print(f"two-step login of {address} " + ("turned off" if was_on else "was not on"))
        elif args.action == "quota":
            try:
                quota = operations.parse_size(args.size)
            except ValueError as exc:
                raise CliError(str(exc), EXIT_USAGE) from None
            with_store(args, lambda store: operations.set_limits(store, address, quota=quota, by=by))
            shown = operations.format_size(quota) if quota else "none"
            print(f"{address}: storage quota {shown}" + (f" ({quota} octets)" if quota else ""))
        elif args.action == "send-limit":
            try:
                limit = operations.parse_send_limit(args.limit)
            except ValueError as exc:
                raise CliError(str(exc), EXIT_USAGE) from None
            with_store(args, lambda store: operations.set_limits(store, address, send_limit=limit, by=by))
            shown = f"{counted(limit, 'message')} per hour" if limit else "the server's default"
            print(f"{address}: sending limit {shown}")
        else:
            with_store(args, lambda store: operations.remove_account(store, address, by=by))
            print(f"removed {address} with its mailboxes and messages")
    except operations.LastAdmin as exc:
        raise CliError(
            f"{exc}: grant the role to another account first (`postoffice user admin grant`)"
        ) from None
    return EXIT_OK


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


def cmd_alias(args: argparse.Namespace) -> int:
    if args.action == "list":
        aliases = with_store(args, lambda store: store.list_aliases())
        for alias in aliases:
            print(f"{alias.source} -> {', '.join(alias.targets)}")
        return EXIT_OK
    from postoffice.directory import operations

    source = normalize_alias_source(args.source)
    if args.action == "add":
        targets = [normalize_address(t) for t in args.targets]
        alias = with_store(args, lambda store: operations.add_alias(store, source, targets, by=_cli_user()))
        print(f"added alias {alias.source} -> {', '.join(alias.targets)}")
    else:
        with_store(args, lambda store: operations.remove_alias(store, source, by=_cli_user()))
        print(f"removed alias {source}")
    return EXIT_OK


async def _account_id(store: MailStore, address: str) -> int:
    account = await store.get_account(address)
    if account is None:
        raise CliError(f"no account {address}")
    return account.id


def _age(seconds: float) -> str:
    """45s, 7m30s, 5h12m, 2d03h."""
    seconds = max(int(seconds), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def cmd_queue(args: argparse.Namespace) -> int:
    """The outbound queue: list, show, retry, delete (the running server picks changes up within seconds)."""
    now = time.time()
    if args.action == "list":
        messages = with_store(args, lambda store: store.queue_list())
        rows = []
        for m in messages:
            pending = [r for r in m.recipients if r.status == "pending"]
            next_try = min((r.next_attempt for r in pending), default=None)
            rows.append(
                (
                    m.id,
                    m.smtp_id or "-",
                    _age(now - m.created),
                    m.size,
                    f"<{m.sender}>",
                    f"{len(pending)}/{len(m.recipients)}",
                    "-" if next_try is None else ("now" if next_try <= now else f"in {_age(next_try - now)}"),
                )
            )
        print_table(("ID", "SMTP ID", "AGE", "SIZE", "SENDER", "PENDING", "NEXT"), rows)
        stats = with_store(args, lambda store: store.queue_stats())
        oldest = "-" if stats.oldest_created is None else _age(now - stats.oldest_created)
        waiting = counted(stats.recipients_pending, "recipient")
        print(f"{counted(stats.messages, 'message')}, {waiting} pending, oldest {oldest}")
        return EXIT_OK
    if args.action == "show":
        message = with_store(args, lambda store: store.queue_get(args.id))
        if message is None:
            raise CliError(f"no queued message {args.id}")
        print(f"id:        {message.id}")
        print(f"smtp id:   {message.smtp_id or '- (generated by this server)'}")
        print(f"sender:    <{message.sender}>")
        print(f"created:   {time.strftime('%Y-%m-%d %H:%M:%S %z', time.localtime(message.created))}")
        print(f"size:      {message.size}")
        for r in message.recipients:
            last = " ".join(str(x) for x in (r.last_code, r.last_enhanced, r.last_text) if x) or "-"
            when = "-" if r.status != "pending" else time.strftime("%H:%M:%S", time.localtime(r.next_attempt))
            print(f"  <{r.address}> {r.status} attempts={r.attempts} next={when} last: {last}")
        return EXIT_OK
    from postoffice.directory import operations

    if args.action == "retry":
        count = with_store(args, lambda store: operations.retry_queued(store, args.id, by=_cli_user()))
        print(f"{counted(count, 'recipient')} due now")
        return EXIT_OK
    if not with_store(args, lambda store: operations.delete_queued(store, args.id, by=_cli_user())):
        raise CliError(f"no queued message {args.id}")
    print(f"deleted queued message {args.id} (no notice is sent to its sender)")
    return EXIT_OK


def cmd_auth(args: argparse.Namespace) -> int:
    """The login guard's lockouts: list them, or lift those of an address or a client (docs/decisions/0027).
    The running server lifts them from memory on the next attempt that hits them."""
    from postoffice.auth.guard import parse_client_key
    from postoffice.directory.address import normalize_address as canonical
    from postoffice.store import LOGIN_LOCKOUT_KINDS

    now = time.time()
    if args.action == "lockouts":
        entries = with_store(args, lambda store: store.login_guard_entries(now))
        rows = [
            (
                e.kind,
                e.client or "-",
                e.account or "-",
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.since)),
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.until)),
                _age(e.until - now),
            )
            for e in entries
            if e.kind in LOGIN_LOCKOUT_KINDS
        ]
        if not rows:
            print("no lockouts")
            return EXIT_OK
        print_table(("LOCKED", "CLIENT", "ACCOUNT", "SINCE", "UNTIL", "LEFT"), rows)
        print(f"{len(rows)} lockout{'s' if len(rows) != 1 else ''} (IPv6 clients are locked per /64 network)")
        return EXIT_OK
    target: str = args.target
    client = parse_client_key(target)
    if client is not None:
        lifted = with_store(args, lambda store: store.login_guard_unlock(client=client))
        what = f"client {client}"
    else:
        account = canonical(target)  # the guard's key: any login name, also one without an account
        if not account:
            raise CliError("unlock what? give a login name or an IP address", EXIT_USAGE)
        lifted = with_store(args, lambda store: store.login_guard_unlock(account=account))
        what = f"account {account}"
    if not lifted:
        raise CliError(f"no lockout for {what}")
    for e in lifted:
        if e.kind == "client":
            print(f"lifted the lockout of client {e.client}")
        elif e.kind == "account":
            print(f"lifted the lockout of account {e.account}")
        else:
            print(f"lifted the lockout of account {e.account} from client {e.client}")
    return EXIT_OK


def cmd_mailbox(args: argparse.Namespace) -> int:
    address = normalize_address(args.address)

    async def mailboxes(store: MailStore) -> list[MailboxInfo]:
        return await store.list_mailboxes(await _account_id(store, address))

    rows = [(m.name, m.messages, m.size) for m in with_store(args, mailboxes)]
    print_table(("MAILBOX", "MESSAGES", "SIZE"), rows)
    return EXIT_OK


# -- dns -----------------------------------------------------------------------------------------------------


def cmd_dns(args: argparse.Namespace) -> int:
    """A domain's DNS records: what to publish (`records`), and what DNS says now (`check`: exit 0 only when
    every record is right). The same functions as the admin page /admin/dns (docs/decisions/0051)."""
    from postoffice.directory import dns_records
    from postoffice.store import NotFound

    config = load(args)
    name = normalize_domain(args.domain)

    async def served(store: MailStore) -> tuple[str, list[DkimKey]]:
        domain = await dns_records.served_domain(store, name)
        return domain, await store.dkim_keys(domain)

    try:
        domain, keys = with_store(args, served)
    except NotFound:
        raise CliError(f"{name} is not a domain served here (`postoffice domain list`)") from None
    records = dns_records.expected_records(config, domain, dkim=keys)
    pending = dns_records.not_yet(domain)
    no_keys = f"no DKIM keys: `postoffice dkim generate {domain}` makes them (docs/decisions/0056)"
    signs = any(record.kind == "dkim" for record in records)
    if args.action == "records":
        print(f"; DNS records for {domain}; `postoffice dns check {domain}` compares them with DNS")
        for line in dns_records.zone_lines(records, pending):
            print(line)
        if not signs:
            print(f"; {no_keys}")
        return EXIT_OK
    checks = asyncio.run(dns_records.check_records(records, dns_records.server_resolver(config)))
    status_width = max(len(c.status) for c in checks)
    type_width = max(len(c.record.type) for c in checks)
    name_width = max(len(c.record.name) for c in checks)
    indent = " " * (status_width + 2)
    for check in checks:
        record = check.record
        print(
            f"{check.status:<{status_width}}  {record.type:<{type_width}}  {record.name:<{name_width}}  "
            f"{record.published}"
        )
        if check.status != "ok":
            for found in check.found:
                print(f"{indent}found: {found}")
            if check.detail is not None:
                print(f"{indent}{check.detail}")
    for item in pending:
        print(f"not yet: issue {item.issue}: {item.what} ({item.name})")
    if not signs:
        print(no_keys)
    tally = {status: sum(c.status == status for c in checks) for status in ("ok", "missing", "wrong")}
    errors = len(checks) - sum(tally.values())
    print(
        f"{tally['ok']} ok, {tally['missing']} missing, {tally['wrong']} wrong, "
        f"{counted(errors, 'DNS error')}"
    )
    return EXIT_OK if tally["ok"] == len(checks) else EXIT_FAILURE


# -- reports -------------------------------------------------------------------------------------------------


def _report_period(begin: float, end: float) -> str:
    first = time.strftime("%Y-%m-%d", time.gmtime(begin))
    last = time.strftime("%Y-%m-%d", time.gmtime(max(begin, end - 1)))
    return first if first == last else f"{first}..{last}"


def cmd_reports(args: argparse.Namespace) -> int:
    """`postoffice reports list|show|send`: the DMARC and TLS reports received, and sending ours now."""
    import json

    if args.action == "list":
        kind = {"dmarc": "dmarc", "tls": "tlsrpt", "tlsrpt": "tlsrpt"}.get(args.kind or "")
        found = with_store(
            args, lambda store: store.received_reports(kind=kind, domain=args.domain, limit=args.limit)
        )
        rows = []
        for report in found:
            summary = json.loads(report.summary)
            if report.kind == "dmarc":
                outcome = f"{summary.get('pass', 0)} pass, {summary.get('fail', 0)} fail"
            else:
                outcome = f"{summary.get('ok', 0)} ok, {summary.get('failed', 0)} failed"
            rows.append(
                (
                    report.id,
                    "DMARC" if report.kind == "dmarc" else "TLS",
                    report.domain,
                    report.reporter,
                    _report_period(report.begin, report.end),
                    outcome,
                )
            )
        if not rows:
            print("no reports received")
            return 0
        print_table(("ID", "KIND", "DOMAIN", "FROM", "PERIOD", "MESSAGES"), rows)
        return 0
    if args.action == "show":
        chosen = with_store(args, lambda store: store.received_report(args.id))
        if chosen is None:
            raise CliError(f"no report with id {args.id}")
        summary = json.loads(chosen.summary)
        print(f"{'DMARC aggregate' if chosen.kind == 'dmarc' else 'TLS'} report {chosen.report_id}")
        print(f"  from {chosen.reporter}, about {chosen.domain}, {_report_period(chosen.begin, chosen.end)}")
        if chosen.kind == "dmarc":
            policy = summary.get("policy", {})
            print(
                f"  policy p={policy.get('p')}; {summary.get('pass', 0)} pass, {summary.get('fail', 0)} fail"
            )
            print_table(
                ("SOURCE", "COUNT", "DISPOSITION", "DKIM", "SPF", "FROM"),
                [
                    (r["ip"], r["count"], r["disposition"], r["dkim"], r["spf"], r["header_from"])
                    for r in summary.get("rows", [])
                ],
            )
            shown, total = len(summary.get("rows", [])), summary.get("rows_total", 0)
            if total > shown:
                print(f"  (the {shown} sources with the most messages; {total} in the report)")
        else:
            for policy in summary.get("policies", []):
                counts = f"{policy['ok']} ok, {policy['failed']} failed"
                print(f"  policy {policy['type']} for {policy['domain']}: {counts}")
                failures = policy.get("failures", [])
                for failure in failures:
                    print(
                        f"    {failure['count']} x {failure['result']} at {failure['mx']} [{failure['ip']}]"
                    )
                if policy.get("failures_total", 0) > len(failures):
                    print(f"    (the first {len(failures)} of {policy['failures_total']} kinds of failure)")
        return 0
    # send: what is counted for days before today, now (the server does it every hour by itself), DKIM-signed
    # as the server signs them: through a pipeline of the one stage that signs generated messages
    config = load(args)
    import ssl

    from postoffice.delivery.pipeline import DeliveryPipeline
    from postoffice.delivery.stages import STAGES, build_stages
    from postoffice.directory.dns_records import server_resolver
    from postoffice.mailauth.report_sender import ReportSender

    async def send(store: MailStore) -> int:
        signing = [registration for registration in STAGES if registration.name == "dkim-signing"]
        pipeline = DeliveryPipeline(
            store, build_stages(config, store, signing), hostname=config.server.hostname
        )
        sender = ReportSender(
            store,
            pipeline,
            server_resolver(config),
            hostname=config.server.hostname,
            report_from=config.mailauth.report_from,
            context=ssl.create_default_context(cafile=config.queue.tls_ca_file or None),
        )
        try:
            return await sender.send_due()
        finally:
            await pipeline.close()

    queued = with_store(args, send)
    print(f"{counted(queued, 'report')} queued")
    return 0


# -- dkim ----------------------------------------------------------------------------------------------------


def _key_names(keys: Sequence[DkimKey]) -> str:
    return ", ".join(f"{key.selector} ({key.algorithm}, {key.state})" for key in keys) or "none"


def _print_dkim_records(config: Config, keys: Sequence[DkimKey]) -> None:
    from postoffice.directory import dns_records

    for line in dns_records.zone_lines(dns_records.dkim_records(config, keys)):
        print(line)


def cmd_dkim(args: argparse.Namespace) -> int:
    """A domain's DKIM signing keys (docs/decisions/0056): make them, list them, rotate them (a new pair
    published first, activated once DNS has it), retire the old ones, print their DNS records."""
    from postoffice.directory import dns_records, operations
    from postoffice.mailauth.dkim_keys import published, removable_at, retiring_period
    from postoffice.store import NotFound

    config = load(args)
    by = _cli_user()
    if args.action == "list":
        domain = normalize_domain(args.domain) if args.domain else None
        keys = with_store(args, lambda store: store.dkim_keys(domain))
        rows = []
        for key in keys:
            if key.state == "removed" and not args.all:
                continue
            note = ""
            if key.state == "retiring":
                note = "remove after " + _when(removable_at(key, config.queue.max_age))
            elif key.state == "pending":
                note = "publish, then `postoffice dkim activate`"
            rows.append(
                (
                    key.domain,
                    key.selector,
                    key.algorithm,
                    key.state,
                    _when(key.created),
                    _when(key.changed),
                    note,
                )
            )
        if not rows:
            print("no DKIM keys" + (f" for {domain}" if domain else ""))
            return EXIT_OK
        print_table(("DOMAIN", "SELECTOR", "ALGORITHM", "STATE", "CREATED", "SINCE", "NOTE"), rows)
        return EXIT_OK
    name = normalize_domain(args.domain)
    try:
        domain = with_store(args, lambda store: dns_records.served_domain(store, name))
    except NotFound:
        raise CliError(f"{name} is not a domain served here (`postoffice domain list`)") from None
    try:
        if args.action == "generate":
            keys, new = with_store(args, lambda store: operations.dkim_generate(store, domain, by=by))
            if new:
                print(f"; made DKIM keys for {domain}: they sign its mail now; publish these records")
            else:
                print(f"; {domain} has DKIM keys already ({_key_names(keys)}); its records:")
            _print_dkim_records(config, keys)
        elif args.action == "records":
            keys = with_store(args, lambda store: store.dkim_keys(domain))
            if not published(keys):
                raise CliError(f"{domain} has no DKIM keys: `postoffice dkim generate {domain}`")
            print(f"; the DKIM records of {domain}; `postoffice dns check {domain}` compares them with DNS")
            _print_dkim_records(config, keys)
        elif args.action == "rotate":
            made, retired = with_store(
                args, lambda store: operations.dkim_rotate(store, domain, by=by, at_once=args.now)
            )
            if args.now:
                print(f"; {domain} signs with {_key_names(made)} now; retiring: {_key_names(retired)}")
                print("; publish the new records at once (mail signed with them fails DKIM until then):")
                _print_dkim_records(config, made)
            else:
                print(f"; new DKIM keys for {domain}: {_key_names(made)}; the old ones sign until you run")
                print(f";   postoffice dkim activate {domain}")
                print("; once DNS has these records:")
                _print_dkim_records(config, made)
        elif args.action == "activate":
            keys = with_store(args, lambda store: store.dkim_keys(domain))
            pending = [key for key in keys if key.state == "pending"]
            if pending and not args.force:
                records = dns_records.dkim_records(config, pending)
                checks = asyncio.run(dns_records.check_records(records, dns_records.server_resolver(config)))
                wrong = [check for check in checks if check.status != "ok"]
                for check in wrong:
                    detail = f": {check.detail}" if check.detail is not None else ""
                    print(f"{check.status}  {check.record.name}{detail}", file=sys.stderr)
                if wrong:
                    raise CliError(
                        f"DNS does not have the new keys' records yet (`postoffice dkim records {domain}`); "
                        "mail signed with them would fail DKIM. --force activates them all the same"
                    )
            activated, retired = with_store(
                args, lambda store: operations.dkim_activate(store, domain, by=by)
            )
            print(f"{domain} signs with {_key_names(activated)} now")
            if retired:
                keep = retiring_period(config.queue.max_age)
                until = _when(max(key.changed for key in retired) + keep)
                print(f"retiring, still published: {_key_names(retired)}; remove their records after {until}")
                print(f"  (then `postoffice dkim retire {domain}`)")
        else:
            keep = retiring_period(config.queue.max_age)
            removed, waiting = with_store(
                args,
                lambda store: operations.dkim_retire(store, domain, by=by, keep_for=keep, force=args.force),
            )
            if removed:
                print(f"removed {_key_names(removed)}: delete their DNS records")
                for key in removed:
                    print(f"  {key.selector}._domainkey.{key.domain}. TXT")
            for key in waiting:
                until = _when(removable_at(key, config.queue.max_age))
                print(
                    f"{key.selector} retires until {until}: mail it signed may be on its way (--force: now)"
                )
            if not removed and not waiting:
                print(f"{domain} has no retiring DKIM keys")
            if waiting and not removed:
                return EXIT_FAILURE
    except operations.DkimKeyError as exc:
        raise CliError(str(exc)) from None
    return EXIT_OK


# -- export --------------------------------------------------------------------------------------------------


def cmd_export(args: argparse.Namespace) -> int:
    from postoffice.transfer.mbox import mailbox_directory, write_maildir_message, write_mbox_message

    address = normalize_address(args.address)
    if args.format == "maildir" and not args.output:
        raise CliError("--format maildir needs --output DIR", EXIT_USAGE)

    async def export(store: MailStore) -> int:
        account_id = await _account_id(store, address)
        if args.mailbox or args.format == "mbox":
            name = args.mailbox or "INBOX"
            mailbox = await store.get_mailbox(account_id, name)
            if mailbox is None:
                raise CliError(f"{address} has no mailbox {name!r}")
            mailboxes = [mailbox]
        else:
            mailboxes = await store.list_mailboxes(account_id)
        count = 0
        if args.format == "mbox":
            messages = await store.list_messages(mailboxes[0].id)
            if args.output:
                with atomic_output(Path(args.output), 0o600) as f:
                    for message in messages:
                        await write_mbox_message(store, message, f)
            else:
                out = sys.stdout.buffer
                for message in messages:
                    await write_mbox_message(store, message, out)
                out.flush()
            return len(messages)
        root = Path(args.output)
        for mailbox in mailboxes:
            folder = mailbox_directory(root, mailbox.name)
            for sub in ("cur", "new", "tmp"):
                (folder / sub).mkdir(parents=True, exist_ok=True)
            for message in await store.list_messages(mailbox.id):
                await write_maildir_message(store, message, mailbox, folder)
                count += 1
        return count

    count = with_store(args, export)
    if args.output:
        print(
            f"exported {count} message{'s' if count != 1 else ''} of {address} to {args.output}",
            file=sys.stderr,
        )
    return EXIT_OK


# -- argument parsing ----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help=f"config file (default: ${CONFIG_ENV}, else {DEFAULT_CONFIG})",
    )
    parser = argparse.ArgumentParser(
        prog="postoffice",
        description="A mail server for one domain owner: SMTP, submission, POP3, IMAP and webmail.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"postoffice {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(
        name: str,
        handler: Callable[[argparse.Namespace], int],
        help: str,
        sub: argparse._SubParsersAction[argparse.ArgumentParser] | None = None,
    ) -> argparse.ArgumentParser:
        p = (sub or commands).add_parser(name, help=help, description=help, parents=[common])
        p.set_defaults(handler=handler)
        return p

    p = command("init", cmd_init, "create a data directory: config, self-signed certificate, store")
    p.add_argument("--data-dir", metavar="DIR", default="data", help="directory to create (default: ./data)")
    p.add_argument("--domain", required=True, help="the mail domain to serve, e.g. example.test")
    p.add_argument("--hostname", help="this server's host name (default: mail.DOMAIN)")
    p.add_argument(
        "--port-offset", type=int, default=0, metavar="N", help="add N to every port (10000: 10025...)"
    )
    p.add_argument(
        "--address",
        default=DEFAULT_ADDRESS,
        help=f"address every listener binds (default: {DEFAULT_ADDRESS})",
    )
    p.add_argument(
        "--demo-user", metavar="LOCALPART", help="also create LOCALPART@DOMAIN and print its password"
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing config and certificate")
    p.add_argument(
        "--no-hint", action="store_true", help="do not print how to start the server (make run starts it)"
    )

    command("ports", cmd_ports, "show the listeners: address, port, protocol, TLS, status")
    command("check-config", cmd_check_config, "validate the config file and report every problem")
    command("run", cmd_run, "run the server")

    p = command("domain", cmd_domain, "add, list or remove domains")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    command("add", cmd_domain, "serve a domain", sub).add_argument("name", metavar="DOMAIN")
    command("list", cmd_domain, "list the domains served", sub)
    q = command(
        "plus-addressing", cmd_domain, "whether user+tag@DOMAIN reaches user@DOMAIN (default on)", sub
    )
    q.add_argument("name", metavar="DOMAIN")
    q.add_argument("state", choices=("on", "off"))
    command(
        "remove", cmd_domain, "stop serving a domain (it must have no accounts or aliases)", sub
    ).add_argument("name", metavar="DOMAIN")

    p = command("user", cmd_user, "add, list, change or remove accounts")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = command("add", cmd_user, "create an account (prints a generated password)", sub)
    q.add_argument("address", metavar="ADDRESS")
    q.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    q.add_argument("--admin", action="store_true", help="with the admin role (the web's admin pages)")
    q = command("list", cmd_user, "list accounts", sub)
    q.add_argument("--domain", help="only accounts of this domain")
    q.add_argument(
        "--long",
        action="store_true",
        help="with role, state, creation time, storage used, storage quota and sending limit",
    )
    q = command("admin", cmd_user, "grant or revoke the admin role", sub)
    q.add_argument("change", choices=("grant", "revoke"))
    q.add_argument("address", metavar="ADDRESS")
    command(
        "disable", cmd_user, "refuse every login of an account (its mail is still accepted)", sub
    ).add_argument("address", metavar="ADDRESS")
    command("enable", cmd_user, "allow the logins of a disabled account again", sub).add_argument(
        "address", metavar="ADDRESS"
    )
    q = command("passwd", cmd_user, "set a new password (prints a generated one)", sub)
    q.add_argument("address", metavar="ADDRESS")
    q.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    command("remove", cmd_user, "remove an account with all its mail", sub).add_argument(
        "address", metavar="ADDRESS"
    )
    command(
        "two-factor-off", cmd_user, "turn off an account's two-step login (a lost phone)", sub
    ).add_argument("address", metavar="ADDRESS")
    q = command("quota", cmd_user, "set the storage quota of an account (mail it may keep)", sub)
    q.add_argument("address", metavar="ADDRESS")
    q.add_argument(
        "size", metavar="SIZE", help="octets, or with K, M, G or T (powers of 1024): 500M, 2G; 0 or none"
    )
    q = command("send-limit", cmd_user, "set how many messages an account may send per hour", sub)
    q.add_argument("address", metavar="ADDRESS")
    q.add_argument(
        "limit", metavar="N", help="messages per hour; 0 or default: [submission] max_messages_per_hour"
    )

    p = command("alias", cmd_alias, "add, list or remove aliases")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = command("add", cmd_alias, "deliver mail for SOURCE (address or @domain) to the targets", sub)
    q.add_argument("source", metavar="SOURCE")
    q.add_argument("targets", metavar="TARGET", nargs="+")
    command("list", cmd_alias, "list aliases", sub)
    command("remove", cmd_alias, "remove an alias", sub).add_argument("source", metavar="SOURCE")

    p = command("mailbox", cmd_mailbox, "show an account's mailboxes")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    command("list", cmd_mailbox, "list mailboxes with message counts and sizes", sub).add_argument(
        "address", metavar="ADDRESS"
    )

    p = command("queue", cmd_queue, "the outbound queue: list, show, retry or delete messages")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    command("list", cmd_queue, "list queued messages with age, sender and pending recipients", sub)
    command("show", cmd_queue, "show one queued message and its recipients", sub).add_argument("id", type=int)
    command("retry", cmd_queue, "make one message (or all) due for delivery now", sub).add_argument(
        "id", type=int, nargs="?"
    )
    command("delete", cmd_queue, "remove a queued message without notifying its sender", sub).add_argument(
        "id", type=int
    )

    p = command("auth", cmd_auth, "login lockouts: list them, or lift one")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    command("lockouts", cmd_auth, "list the clients and accounts locked out after failed logins", sub)
    command(
        "unlock", cmd_auth, "lift the lockout of a login name or a client (IP address, or IPv6 /64)", sub
    ).add_argument("target", metavar="ADDRESS|IP")

    p = command("dns", cmd_dns, "a domain's DNS records: what to publish, and whether DNS has them")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    command("records", cmd_dns, "print the records to publish, as zone-file lines", sub).add_argument(
        "domain", metavar="DOMAIN"
    )
    command(
        "check", cmd_dns, "resolve each record: ok, missing, wrong or error (exit 0 when all are ok)", sub
    ).add_argument("domain", metavar="DOMAIN")

    p = command("dkim", cmd_dkim, "a domain's DKIM signing keys: make, list, rotate, retire, their records")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    command(
        "generate",
        cmd_dkim,
        "make a domain's keys (Ed25519 and RSA) if it has none; print their records",
        sub,
    ).add_argument("domain", metavar="DOMAIN")
    q = command("list", cmd_dkim, "list the keys: selector, algorithm, state, when made", sub)
    q.add_argument("domain", metavar="DOMAIN", nargs="?")
    q.add_argument("--all", action="store_true", help="with the removed keys")
    q = command(
        "rotate", cmd_dkim, "make a new pair, published first; it signs after `dkim activate` (or --now)", sub
    )
    q.add_argument("domain", metavar="DOMAIN")
    q.add_argument("--now", action="store_true", help="sign with the new pair at once (not yet in DNS!)")
    q = command("activate", cmd_dkim, "sign with the new pair once DNS has it; the old one retires", sub)
    q.add_argument("domain", metavar="DOMAIN")
    q.add_argument("--force", action="store_true", help="without checking that DNS has the new records")
    q = command("retire", cmd_dkim, "remove retiring keys once no mail they signed can be on its way", sub)
    q.add_argument("domain", metavar="DOMAIN")
    q.add_argument("--force", action="store_true", help="remove them now, however recently they retired")
    command("records", cmd_dkim, "print the DKIM records to publish, as zone-file lines", sub).add_argument(
        "domain", metavar="DOMAIN"
    )

    p = command("reports", cmd_reports, "DMARC and TLS reports received about our domains; send ours now")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = command("list", cmd_reports, "the reports received, newest first", sub)
    q.add_argument("--kind", choices=("dmarc", "tlsrpt", "tls"), help="tls: the same as tlsrpt")
    q.add_argument("--domain", metavar="DOMAIN")
    q.add_argument("--limit", type=int, default=50)
    command("show", cmd_reports, "one received report's lines", sub).add_argument(
        "id", type=int, metavar="ID"
    )
    command("send", cmd_reports, "queue the reports other domains asked for (finished days) now", sub)

    p = command("export", cmd_export, "export an account's mail as mbox (mboxrd) or Maildir")
    p.add_argument("address", metavar="ADDRESS")
    p.add_argument(
        "--mailbox", metavar="NAME", help="one mailbox (mbox default: INBOX; maildir default: all)"
    )
    p.add_argument("--format", choices=("mbox", "maildir"), default="mbox")
    p.add_argument(
        "--output", metavar="PATH", help="mbox: file (default: standard output); maildir: directory"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help, --version (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return int(args.handler(args))
    except CliError as exc:
        if str(exc):
            print(f"postoffice: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`postoffice export ... | head`); keep Python from complaining at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILURE
    except Exception as exc:
        if os.environ.get("POSTOFFICE_DEBUG"):
            raise
        from postoffice.store import StoreError

        if isinstance(exc, StoreError):
            print(f"postoffice: {exc}", file=sys.stderr)
        elif isinstance(exc, OSError):
            where = f": {exc.filename}" if exc.filename else ""
            print(f"postoffice: {exc.strerror or exc}{where}", file=sys.stderr)
        else:
            print(f"postoffice: internal error: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
