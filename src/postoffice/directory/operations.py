"""Operations on accounts that the command line and the web both offer: one implementation of each, with
`postoffice user ...` and the settings and admin pages as two faces (issue 12). Each logs what it did and who
asked ("by"): the CLI's user, or the web account.

Invariants
- A password change stores the new argon2id hash (made off the event loop) and ends the account's web
  sessions but the one that asked, in that order: a session that outlived its password cannot be used after
  the change returns. The verified-password cache is keyed by the stored hash, so the old password is not
  recognised from it after the change either.
"""

from __future__ import annotations

import logging

from postoffice.directory.address import normalize_address, parse_address, parse_domain
from postoffice.directory.passwords import generate_password, hash_password_async
from postoffice.store import Account, Alias, Domain, MailStore, NotFound

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


async def change_password(
    store: MailStore, address: str, password: str, *, by: str, keep_web_session: str | None = None
) -> int:
    """Set the account's password; end its web sessions except `keep_web_session` (a stored session id);
    return how many ended. NotFound for an unknown account."""
    address = normalize_address(address)
    account = await store.get_account(address)
    if account is None:
        raise NotFound(f"no account {address}")
    await store.set_password(address, await hash_password_async(password))
    ended = await store.web_sessions_end(account.id, keep=keep_web_session)
    log.info("password changed account=%s by=%s web_sessions_ended=%d", address, by, ended)
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
    account = await store.add_account(
        address, await hash_password_async(password if password is not None else str(generated)), admin=admin
    )
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
    domain = await store.add_domain(parse_domain(name))
    log.info("domain added domain=%s by=%s", domain.name, by)
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
