"""The `[managesieve]` section: ManageSieve (RFC 5804) on port 4190.

Declarations only (`postoffice.settings`): imported by `postoffice.config`, so nothing heavy is imported here.
The limits on what an account may store are `[sieve]`'s.
"""

from __future__ import annotations

from dataclasses import dataclass

from postoffice.settings import section, setting


@section("managesieve")
@dataclass(frozen=True)
class ManageSieveConfig:
    max_connections: int = setting(
        200,
        "simultaneous ManageSieve connections in total",
        doc="Simultaneous ManageSieve connections in total; see `[limits]` for what happens at the cap.",
        positive=True,
    )
    max_connections_per_ip: int = setting(
        10,
        "simultaneous connections per client IP (IPv6: per /64)",
        doc="Simultaneous connections from one client address (IPv6: one /64).",
        positive=True,
    )
    timeout: float = setting(
        1800,
        "seconds the server waits for each command after login",
        doc=(
            "Seconds the server waits for each command after login before it ends the session with `BYE`. "
            "Before login, `[limits] login_timeout` applies."
        ),
        minimum=60,
    )
    max_errors: int = setting(
        20,
        "protocol errors before the server closes the connection",
        doc="Protocol errors after which the server closes the connection (`BYE`).",
        positive=True,
    )
