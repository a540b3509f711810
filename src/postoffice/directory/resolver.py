"""Recipient resolution: which accounts does a mail address deliver to?

Rules, applied in this order to the address in its canonical form (`postoffice.directory.address`: lowercased,
NFC local part, IDNA domain without a trailing dot):
1. A domain we do not serve: `foreign` (port 25 refuses it: never an open relay).
2. `postmaster` without a domain (RFC 5321 section 4.5.1 requires it to be accepted) is read as
   postmaster@<the first domain we serve>.
3. An alias for the exact address expands to its targets (aliases take precedence over an account of the same
   name, as in Postfix's virtual alias maps). Targets are resolved again, recursively, up to `MAX_ALIAS_DEPTH`
   levels; an address already expanded is not expanded again (loops end), and a target that names an account
   is delivered to that account.
4. An account with the exact address.
5. Plus-addressing, unless the domain has it off: `user+tag@domain` is tried as `user@domain` (steps 3
   and 4).
6. The domain's catch-all alias (`@domain`).
7. Otherwise: `unknown` (550 5.1.1).

Each account appears once in the result however many routes lead to it, so a message is stored once per
mailbox. The algorithm is pure: the store backend passes a `lookup` function that answers from its own data,
so the rules live here and the SQL stays in the backend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

# The one canonical form of addresses (directory/address.py); re-exported for the store and the protocols.
from postoffice.directory.address import normalize_address, split_address

__all__ = ["AddressLookup", "Resolution", "normalize_address", "resolve", "split_address"]

MAX_ALIAS_DEPTH = 10


@dataclass(frozen=True)
class AddressLookup:
    """What the store knows about one exact address."""

    domain_served: bool
    account_id: int | None = None
    alias_targets: tuple[str, ...] | None = None
    plus_addressing: bool = True  # the domain takes user+tag@ for user@ (step 5)


@dataclass
class Resolution:
    status: str  # "local" | "unknown" | "foreign"
    account_ids: list[int] = field(default_factory=list)
    #: targets outside our domains reached through aliases (forwarding needs the outbound queue)
    remote: list[str] = field(default_factory=list)


def resolve(
    address: str,
    lookup: Callable[[str], AddressLookup],
    first_domain: Callable[[], str | None],
) -> Resolution:
    local, domain = split_address(address.strip())
    if not domain:
        if local != "postmaster":
            return Resolution("unknown")
        served = first_domain()
        if served is None:
            return Resolution("unknown")
        domain = served
    result = Resolution("unknown")
    seen_accounts: set[int] = set()
    expanded: set[str] = set()

    def add_account(account_id: int) -> None:
        if account_id not in seen_accounts:
            seen_accounts.add(account_id)
            result.account_ids.append(account_id)

    def deliver_to(addr: str, depth: int) -> bool:
        """Resolve one address (no catch-all); True if it led anywhere."""
        info = lookup(addr)
        if not info.domain_served:
            if addr not in result.remote:
                result.remote.append(addr)
            return True
        if info.alias_targets is not None and addr not in expanded and depth < MAX_ALIAS_DEPTH:
            expanded.add(addr)
            any_target = False
            for target in info.alias_targets:
                tl, td = split_address(target)
                any_target |= deliver_to(f"{tl}@{td}" if td else tl, depth + 1)
            if any_target:
                return True
        if info.account_id is not None:
            add_account(info.account_id)
            return True
        return False

    full = f"{local}@{domain}"
    first = lookup(full)
    if not first.domain_served:
        return Resolution("foreign", remote=[full])
    found = deliver_to(full, 0)
    if not found and "+" in local and first.plus_addressing:
        base = local.split("+", 1)[0]
        if base:
            found = deliver_to(f"{base}@{domain}", 0)
    if not found:
        catch_all = lookup(f"@{domain}")
        if catch_all.alias_targets is not None:
            expanded.add(f"@{domain}")
            for target in catch_all.alias_targets:
                tl, td = split_address(target)
                found |= deliver_to(f"{tl}@{td}" if td else tl, 1)
    if found and (result.account_ids or result.remote):
        result.status = "local"
    return result
