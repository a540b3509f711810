"""Operations on accounts that the command line and the web both offer: one implementation of each, with
`postoffice user ...` and the settings and admin pages as two faces (issue 12). Each logs what it did and who
asked ("by"): the CLI's user, or the web account. Also the DKIM key operations behind `postoffice dkim`
(docs/decisions/0056): a new domain gets its keys as it is added; no log line names a private key.

Invariants
- A password change stores the new argon2id hash (made off the event loop) and ends the account's web
  sessions but the one that asked, in that order: a session that outlived its password cannot be used after
  the change returns. The verified-password cache is keyed by the stored hash, so the old password is not
  recognised from it after the change either.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Sequence

from postoffice.auth.scram import derive_secret
from postoffice.directory.address import normalize_address, parse_address, parse_domain
from postoffice.directory.passwords import generate_password, hash_password_async
from postoffice.store import Account, Alias, DkimKey, Domain, MailStore, NotFound

log = logging.getLogger("postoffice.directory")

#: A password a person chooses has at least this many characters (generated ones have 20).
MIN_PASSWORD_LENGTH = 10
#: And at most this many (argon2 takes any length; a bound keeps a form post from costing much).
MAX_PASSWORD_LENGTH = 1024


class PasswordRejected(ValueError):
    """A chosen password that is not accepted (the message says why, for the person)."""


def check_chosen_password(password: str, address: str) -> None:
    """Reject a password a person chose that is too short, too long, or the address itself."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordRejected(f"a password has at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordRejected(f"a password has at most {MAX_PASSWORD_LENGTH} characters")
    folded = password.casefold()
    if folded in (address.casefold(), address.split("@", 1)[0].casefold()):
        raise PasswordRejected("a password is not the address")


async def _keep_scram_secret(store: MailStore, account_id: int, password_hash: str, password: str) -> None:
    """The SCRAM-SHA-256 secret of a password just set (decision 0068), made off the event loop; stored only
    while `password_hash` is still the account's (another change meanwhile wins, with its own secret)."""
    secret = await asyncio.to_thread(derive_secret, password)
    await store.set_password_derived(account_id, password_hash, secret.encode())


async def change_password(
    store: MailStore, address: str, password: str, *, by: str, keep_web_session: str | None = None
) -> int:
    """Set the account's password; end its web sessions except `keep_web_session` (a stored session id) and
    revoke its app passwords (one made with a stolen password must not outlive the change: decision 0052);
    return how many web sessions ended. NotFound for an unknown account."""
    address = normalize_address(address)
    account = await store.get_account(address)
    if account is None:
        raise NotFound(f"no account {address}")
    password_hash = await hash_password_async(password)
    await store.set_password(address, password_hash)
    await _keep_scram_secret(store, account.id, password_hash, password)
    ended = await store.web_sessions_end(account.id, keep=keep_web_session)
    revoked = 0
    for app_password in await store.list_app_passwords(account.id):
        revoked += await store.remove_app_password(account.id, app_password.id)
    log.info(
        "password changed account=%s by=%s web_sessions_ended=%d app_passwords_revoked=%d",
        address,
        by,
        ended,
        revoked,
    )
    return ended


class LastAdmin(ValueError):
    """The change would leave the installation without an account that has the admin role."""


async def _keep_an_admin(store: MailStore, address: str) -> None:
    """LastAdmin if `address` is the only enabled admin (about to lose the role, be disabled or removed)."""
    admins = [a.address for a in await store.list_accounts() if a.admin and not a.disabled]
    if admins == [address]:
        raise LastAdmin(f"{address} is the only admin")


async def add_account(
    store: MailStore, address: str, password: str | None, *, admin: bool = False, by: str
) -> tuple[Account, str | None]:
    """A new account with `password`, or a generated one (returned, to be shown once)."""
    address = normalize_address(address)
    generated = generate_password() if password is None else None
    chosen = password if password is not None else str(generated)
    account = await store.add_account(address, await hash_password_async(chosen), admin=admin)
    await _keep_scram_secret(store, account.id, account.password_hash, chosen)
    log.info("account added account=%s admin=%s by=%s", address, "yes" if admin else "no", by)
    return account, generated


async def reset_password(store: MailStore, address: str, *, by: str) -> str:
    """A generated password for the account (returned, to be shown once); its web sessions end."""
    password = generate_password()
    await change_password(store, address, password, by=by)
    return password


async def set_admin(store: MailStore, address: str, admin: bool, *, by: str) -> Account:
    """Grant or revoke the admin role; the last admin keeps it (LastAdmin)."""
    address = normalize_address(address)
    if not admin:
        await _keep_an_admin(store, address)
    account = await store.update_account(address, admin=admin)
    log.info("admin role %s account=%s by=%s", "granted" if admin else "revoked", address, by)
    return account


async def set_disabled(store: MailStore, address: str, disabled: bool, *, by: str) -> Account:
    """Disable (no login of any kind; its web sessions end; mail is still accepted) or enable an account;
    the last enabled admin cannot be disabled (LastAdmin)."""
    address = normalize_address(address)
    if disabled:
        await _keep_an_admin(store, address)
    account = await store.update_account(address, disabled=disabled)
    log.info("account %s account=%s by=%s", "disabled" if disabled else "enabled", address, by)
    return account


async def turn_off_second_factor(store: MailStore, address: str, *, by: str) -> bool:
    """Turn the account's two-step login off (a lost phone without recovery codes; docs/decisions/0052):
    its password alone opens the web and the mail protocols again; app passwords stay. Whether it was on."""
    address = normalize_address(address)
    account = await store.get_account(address)
    if account is None:
        raise NotFound(f"no account {address}")
    await store.set_second_factor(account.id, None)
    log.info("two-factor login off account=%s by=%s", address, by)
    return account.two_factor


async def remove_account(store: MailStore, address: str, *, by: str) -> None:
    """Remove the account with all its mail; the last admin stays (LastAdmin)."""
    address = normalize_address(address)
    await _keep_an_admin(store, address)
    await store.remove_account(address)
    log.info("account removed account=%s by=%s", address, by)


def parse_alias_source(source: str) -> str:
    """An address, or `@domain` for the domain's catch-all (AddressError if neither)."""
    if source.strip().startswith("@"):
        return "@" + parse_domain(source.strip()[1:])
    return parse_address(source)


async def add_domain(store: MailStore, name: str, *, by: str) -> Domain:
    """Serve a new domain, with a pair of DKIM keys that sign its mail (docs/decisions/0056)."""
    domain = await store.add_domain(parse_domain(name))
    log.info("domain added domain=%s by=%s", domain.name, by)
    await dkim_generate(store, domain.name, by=by)
    return domain


async def remove_domain(store: MailStore, name: str, *, by: str) -> None:
    """Stop serving a domain; refused (StoreError) while it has accounts or aliases."""
    await store.remove_domain(name)
    log.info("domain removed domain=%s by=%s", name, by)


async def add_alias(store: MailStore, source: str, targets: list[str], *, by: str) -> Alias:
    alias = await store.add_alias(parse_alias_source(source), [parse_address(t) for t in targets])
    log.info("alias added alias=%s targets=%s by=%s", alias.source, ",".join(alias.targets), by)
    return alias


async def remove_alias(store: MailStore, source: str, *, by: str) -> None:
    source = parse_alias_source(source)
    await store.remove_alias(source)
    log.info("alias removed alias=%s by=%s", source, by)


async def retry_queued(store: MailStore, queue_id: int | None, *, by: str) -> int:
    """Make one queued message (None: all) due now; how many recipients."""
    count = await store.queue_retry(queue_id)
    log.info("queue retry id=%s recipients=%d by=%s", "all" if queue_id is None else queue_id, count, by)
    return count


async def delete_queued(store: MailStore, queue_id: int, *, by: str) -> bool:
    """Remove a queued message without notifying its sender; False if there was none."""
    deleted = await store.queue_delete(queue_id)
    if deleted:
        log.info("queue delete id=%d by=%s", queue_id, by)
    return deleted


async def set_plus_addressing(store: MailStore, name: str, on: bool, *, by: str) -> Domain:
    """Whether user+tag@DOMAIN reaches user@DOMAIN (the resolver's step 5)."""
    domain = await store.update_domain(parse_domain(name), plus_addressing=on)
    log.info("plus-addressing %s domain=%s by=%s", "on" if on else "off", domain.name, by)
    return domain


# -- storage quota and sending limit (docs/decisions/0053) ---------------------------------------------------

#: K, M, G and T in a size are powers of 1024 (as Dovecot reads them, and as the web shows sizes).
_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
#: The largest quota or sending limit accepted (the store keeps a signed 64-bit integer).
MAX_LIMIT = (1 << 63) - 1
_SIZE = re.compile(r"([0-9]{1,20}(?:\.[0-9]{1,6})?)(?:([KMGT])(?:I?B)?|B)?")


def parse_size(text: str) -> int:
    """A storage quota as a person writes it: octets, or a number with K, M, G or T (powers of 1024; "500M",
    "2G", "1.5 GB", "10MiB"), 0 or "none" for no limit. ValueError for anything else."""
    cleaned = text.strip().upper().replace(" ", "")
    if cleaned in ("NONE", "UNLIMITED"):
        return 0
    match = _SIZE.fullmatch(cleaned)
    if match is None:
        raise ValueError(f"not a size: {text!r} (octets, or a number with K, M, G or T: 500M, 2G; 0 or none)")
    number, unit = match.group(1), match.group(2) or ""
    octets = int(float(number) * _SIZE_UNITS[unit]) if "." in number else int(number) * _SIZE_UNITS[unit]
    if octets > MAX_LIMIT:
        raise ValueError(f"not a size: {text!r} (too large)")
    return octets


def format_size(octets: int) -> str:
    """A size for people: "500 MB", "1.5 GB", "812 B" (units of 1024, one decimal at most)."""
    for unit in ("T", "G", "M", "K"):
        scale = _SIZE_UNITS[unit]
        if octets >= scale:
            return f"{octets / scale:.1f}".removesuffix(".0") + f" {unit}B"
    return f"{octets} B"


def size_text(octets: int) -> str:
    """A size exactly as `parse_size` reads it back, in the largest unit that divides it: "500M", "1536K",
    "1234"; "0" for none (the value of a form field)."""
    for unit in ("T", "G", "M", "K"):
        scale = _SIZE_UNITS[unit]
        if octets and octets % scale == 0:
            return f"{octets // scale}{unit}"
    return str(octets)


def parse_send_limit(text: str) -> int:
    """Messages per hour as a person writes it: a whole number, 0 or "default" for the server's limit."""
    cleaned = text.strip().lower()
    if cleaned in ("default", "none", ""):
        return 0
    if not cleaned.isdigit() or int(cleaned) > MAX_LIMIT:
        raise ValueError(f"not a number of messages per hour: {text!r} (0 or default: the server's limit)")
    return int(cleaned)


async def set_limits(
    store: MailStore, address: str, *, quota: int | None = None, send_limit: int | None = None, by: str
) -> Account:
    """Set the account's storage quota (octets, 0: none) and/or its sending limit (messages per hour, 0: the
    server's `[submission] max_messages_per_hour`); None leaves one as it is. ValueError for a negative
    value; NotFound for an unknown account. Mail kept already is never removed: an account over a lowered
    quota refuses new mail until it is under again (docs/decisions/0053)."""
    address = normalize_address(address)
    for value in (quota, send_limit):
        if value is not None and not 0 <= value <= MAX_LIMIT:
            raise ValueError("a quota or sending limit is a number from 0")
    account = await store.update_account(address, quota=quota, send_limit=send_limit)
    log.info(
        "limits set account=%s quota=%s send_limit=%s by=%s",
        address,
        "-" if quota is None else quota,
        "-" if send_limit is None else send_limit,
        by,
    )
    return account


# -- DKIM signing keys (docs/decisions/0056) -----------------------------------------------------------------


class DkimKeyError(ValueError):
    """A key operation that does not apply to the domain's keys now (the message says why)."""


def _selectors(keys: Sequence[DkimKey]) -> str:
    return ",".join(key.selector for key in keys) or "-"


async def _new_pair(store: MailStore, domain: str, *, state: str, now: float) -> list[DkimKey]:
    from postoffice.mailauth.dkim_keys import new_pair

    existing = await store.dkim_keys(domain)
    pair = await asyncio.to_thread(new_pair, domain, existing, state=state, now=now)  # RSA: ~0.1 s of CPU
    return await store.add_dkim_keys(pair)


async def dkim_generate(
    store: MailStore, name: str, *, by: str, now: float | None = None
) -> tuple[list[DkimKey], bool]:
    """A pair of keys that sign the domain's mail at once, unless it has active or pending keys already;
    (the domain's published keys, whether a pair was made). NotFound for a domain not served."""
    domain = parse_domain(name)
    if not any(d.name == domain for d in await store.list_domains()):
        raise NotFound(f"{domain} is not a domain served here")
    keys = await store.dkim_keys(domain)
    if any(key.state in ("pending", "active") for key in keys):
        return [key for key in keys if key.state != "removed"], False
    made = await _new_pair(store, domain, state="active", now=time.time() if now is None else now)
    log.info("dkim keys made domain=%s selectors=%s state=active by=%s", domain, _selectors(made), by)
    return [key for key in await store.dkim_keys(domain) if key.state != "removed"], True


async def dkim_rotate(
    store: MailStore, name: str, *, by: str, at_once: bool = False, now: float | None = None
) -> tuple[list[DkimKey], list[DkimKey]]:
    """Make the domain's next pair of keys: pending (published, not signing, until `dkim_activate` once DNS
    has it), or with `at_once` active at once, the active pair retiring; (the keys made, the keys retired).
    A pending pair made before is kept (and activated with `at_once`). DkimKeyError for a domain without
    keys (`dkim_generate` first)."""
    domain = parse_domain(name)
    when = time.time() if now is None else now
    keys = await store.dkim_keys(domain)
    if not any(key.state in ("pending", "active") for key in keys):
        raise DkimKeyError(
            f"{domain} has no DKIM keys yet: make them with `postoffice dkim generate {domain}`"
        )
    pending = [key for key in keys if key.state == "pending"]
    if not pending:
        pending = await _new_pair(store, domain, state="pending", now=when)
        log.info("dkim keys made domain=%s selectors=%s state=pending by=%s", domain, _selectors(pending), by)
    if not at_once:
        return pending, []
    return await dkim_activate(store, domain, by=by, now=when)


async def dkim_activate(
    store: MailStore, name: str, *, by: str, now: float | None = None
) -> tuple[list[DkimKey], list[DkimKey]]:
    """The pending pair signs from now on; the active one retires (still published: `dkim_retire` removes
    it once mail signed with it can no longer be on its way). (activated, retired). DkimKeyError when the
    domain has no pending keys. Whether DNS has the new records is the caller's question, asked first."""
    domain = parse_domain(name)
    keys = await store.dkim_keys(domain)
    pending = [key for key in keys if key.state == "pending"]
    if not pending:
        raise DkimKeyError(
            f"{domain} has no new DKIM keys to activate: `postoffice dkim rotate {domain}` first"
        )
    active = [key for key in keys if key.state == "active"]
    states = {key.id: "retiring" for key in active} | {key.id: "active" for key in pending}
    changed = await store.set_dkim_key_states(states, time.time() if now is None else now)
    activated = [key for key in changed if key.state == "active"]
    retired = [key for key in changed if key.state == "retiring"]
    log.info(
        "dkim keys activated domain=%s selectors=%s retiring=%s by=%s",
        domain,
        _selectors(activated),
        _selectors(retired),
        by,
    )
    return activated, retired


async def dkim_retire(
    store: MailStore, name: str, *, by: str, keep_for: float, force: bool = False, now: float | None = None
) -> tuple[list[DkimKey], list[DkimKey]]:
    """Remove the domain's retiring keys that have been retiring for `keep_for` seconds (every one with
    `force`): no longer published, private keys deleted. (removed, still retiring)."""
    domain = parse_domain(name)
    when = time.time() if now is None else now
    retiring = [key for key in await store.dkim_keys(domain) if key.state == "retiring"]
    due = [key for key in retiring if force or key.changed + keep_for <= when]
    waiting = [key for key in retiring if key not in due]
    if not due:
        return [], waiting
    removed = await store.set_dkim_key_states({key.id: "removed" for key in due}, when)
    log.info(
        "dkim keys removed domain=%s selectors=%s forced=%s by=%s",
        domain,
        _selectors(removed),
        "yes" if force and any(key.changed + keep_for > when for key in due) else "no",
        by,
    )
    return removed, waiting
