"""The `[auth]` section: logins on every protocol (docs/decisions/0008, 0027).

Declarations only (`postoffice.settings`): imported by `postoffice.config`, so nothing heavy is imported here.
"""

from __future__ import annotations

from dataclasses import dataclass

from postoffice.settings import section, setting


@section("auth")
@dataclass(frozen=True)
class AuthConfig:
    allow_plaintext_auth: bool = setting(
        False,
        "allow passwords over connections without TLS (needed for pop2 off loopback)",
        doc=(
            "Allow passwords over connections that are not protected by TLS. Leave it off unless every such "
            "connection stays on a trusted network. POP2 enabled on an address other than loopback requires "
            "it, because POP2 has no TLS."
        ),
    )
    failure_delay: float = setting(
        1.0,
        "seconds every failed login waits before its answer",
        doc="Seconds every failed login waits before its answer (slows guessing on one connection).",
        minimum=0,
    )
    ip_max_failures: int = setting(
        10,
        "failed logins from one client IP within failure_window before that IP is locked out",
        doc=(
            "Failed logins from one client address (IPv6: one /64) within `failure_window` before that "
            "address is locked out for `lockout` seconds."
        ),
        positive=True,
    )
    account_max_failures: int = setting(
        10,
        "failed logins for one account within failure_window before it is locked for other IPs",
        doc=(
            "Failed logins for one account within `failure_window` before the account is locked out for "
            "`lockout` seconds, except for addresses that logged in to it successfully within the last "
            "`lockout` seconds."
        ),
        positive=True,
    )
    failure_window: float = setting(
        900,
        "seconds over which failed logins are counted",
        doc="Seconds over which failed logins are counted.",
        positive=True,
    )
    lockout: float = setting(
        900,
        "seconds a lockout lasts",
        doc=(
            "Seconds a lockout lasts. Lockouts are logged (WARNING), apply to every protocol and are kept in "
            "the store across restarts; `postoffice auth lockouts` lists them and `postoffice auth unlock "
            "ADDRESS|IP` lifts one in the running server (docs/decisions/0027)."
        ),
        positive=True,
    )
    verified_cache_ttl: float = setting(
        300,
        "seconds a verified password is recognised without a new argon2 run (0 = never)",
        doc=(
            "Seconds a successfully verified password is recognised again from an in-memory HMAC without a "
            "new argon2id run (clients that poll log in often). `0` turns it off. See docs/decisions/0008."
        ),
        minimum=0,
    )
    max_pending_verifications: int = setting(
        64,
        "distinct password verifications running or waiting at once; more get a temporary failure",
        doc=(
            "Distinct password verifications (argon2id) running or waiting at once. Simultaneous logins "
            "with the same name and password share one verification and do not count twice. A login beyond "
            "the bound gets the protocol's temporary failure (SMTP 454 4.7.0, IMAP `NO [UNAVAILABLE]`, POP3 "
            "`-ERR [SYS/TEMP]`, POP2 `-`) and is not counted as a failed login. argon2 runs on one thread "
            "per CPU (at least 2, 64 MiB each), so the longest wait is about this number / threads x "
            "50-200 ms. See docs/decisions/0027."
        ),
        positive=True,
    )
