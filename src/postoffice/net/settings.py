"""The settings of the listener layer: `[tls]` (the certificate every listener offers) and `[limits]` (how
long a client may take to log in and how slowly it may send, on every listener; docs/decisions/0028).

Declarations only (`postoffice.settings`): imported by `postoffice.config`, so nothing heavy is imported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from postoffice.settings import section, setting

TLS_VERSIONS: tuple[str, ...] = ("TLSv1.2", "TLSv1.3")


@section("tls")
@dataclass(frozen=True)
class TlsConfig:
    certificate: Path = setting(
        Path("tls/cert.pem"),
        "PEM certificate chain, leaf first",
        doc="PEM certificate chain, server certificate first, then intermediates.",
    )
    private_key: Path = setting(
        Path("tls/key.pem"),
        "PEM private key of the certificate (keep it mode 0600)",
        doc="PEM private key of the certificate, not encrypted. Keep it mode 0600.",
    )
    min_version: str = setting(
        "TLSv1.2",
        'oldest TLS version accepted: "TLSv1.2" | "TLSv1.3"',
        doc='Oldest TLS version accepted: `"TLSv1.2"` or `"TLSv1.3"`.',
        choices=TLS_VERSIONS,
    )


@section("limits")
@dataclass(frozen=True)
class LimitsConfig:
    """Every listener: how long a client may take to log in, how slowly it may send (docs/decisions/0028)."""

    login_timeout: float = setting(
        60,
        "seconds from connecting to a successful login (IMAP, POP3, POP2, submission); then closed",
        doc=(
            "Seconds from connecting to a successful login on IMAP, POP3, POP2 and submission (587, 465), "
            "however busy the client keeps the connection. Then IMAP says `* BYE Autologout; login took too "
            "long`, POP3 `-ERR [SYS/TEMP] login took too long`, POP2 `- login took too long`, submission "
            "`421 4.4.2`, and the connection is closed. The TLS handshake and the server's writes count too. "
            "Port 25 has no login and no such deadline. Must be greater than 0."
        ),
        positive=True,
    )
    min_data_rate: float = setting(
        500,
        "bytes/s that extend a command's deadline by 1 s: slower clients meet it (0 = never extend)",
        doc=(
            "Bytes per second that keep a command or message coming: every timeout below is a deadline per "
            "command (it starts when the server waits for the command, and more reads do not restart it); "
            "each byte received moves it 1/`min_data_rate` s later, never to more than the timeout from now "
            "(as Postfix's `smtpd_min_data_rate`). A client trickling a byte every few seconds meets the "
            "deadline; a slow but steady upload does not. `0`: bytes never move it."
        ),
        minimum=0,
    )
