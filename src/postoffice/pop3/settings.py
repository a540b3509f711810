"""The `[pop3]` section: POP3 (110, 995) and POP2 (109), which share its connection caps.

Declarations only (`postoffice.settings`): imported by `postoffice.config`, so nothing heavy is imported here.
"""

from __future__ import annotations

from dataclasses import dataclass

from postoffice.settings import section, setting


@section("pop3")
@dataclass(frozen=True)
class Pop3Config:
    max_connections: int = setting(
        500,
        "simultaneous POP3 and POP2 connections in total",
        doc=("Simultaneous POP3 and POP2 connections in total; see `[limits]` for what happens at the cap."),
        positive=True,
    )
    max_connections_per_ip: int = setting(
        10,
        "simultaneous connections per client IP (IPv6: per /64)",
        doc="Simultaneous connections from one client address (IPv6: one /64).",
        positive=True,
    )
    autologout: float = setting(
        600,
        "seconds the server waits for each command (RFC 1939 section 3: at least 600)",
        doc=(
            "Seconds the server waits for each command (a deadline per command, see `[limits] "
            "min_data_rate`) before the session ends without removing anything (RFC 1939 section 3: at "
            "least 10 minutes; smaller values are refused). Before login, `[limits] login_timeout` applies."
        ),
        minimum=600,
    )
    max_errors: int = setting(
        20,
        "protocol errors before the server closes the connection",
        doc="Protocol errors after which the server closes the connection.",
        positive=True,
    )
