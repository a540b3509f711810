"""The SMTP sections: `[smtp]` (every SMTP listener: 25, 587, 465, and who may relay through port 25),
`[submission]` (what an authenticated user may send, RFC 6409 / RFC 8314) and `[queue]` (outbound delivery
and the durable queue, docs/decisions/0017, 0018).

Declarations only (`postoffice.settings`): imported by `postoffice.config`, so nothing heavy is imported here.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from postoffice.settings import network_problem, section, setting


def _ip_address(value: str) -> tuple[str, str] | None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return f'"{value}" is not an IP address', 'write "192.0.2.53"'
    return None


@section("smtp")
@dataclass(frozen=True)
class SmtpConfig:
    max_message_size: int = setting(
        52428800,
        "bytes; announced in EHLO SIZE (RFC 1870)",
        doc="Largest message accepted, in bytes (50 MiB); announced in the EHLO `SIZE` keyword (RFC 1870).",
        positive=True,
    )
    max_recipients: int = setting(
        1000,
        "RCPT TO per transaction (RFC 5321 4.5.3.1.8)",
        doc="Recipients per transaction (RFC 5321 4.5.3.1.8 requires at least 100).",
        positive=True,
    )
    max_connections: int = setting(
        500,
        "simultaneous SMTP connections in total",
        doc=(
            "Simultaneous SMTP connections in total (ports 25, 587 and 465 together); see `[limits]` for "
            "what happens at the cap."
        ),
        positive=True,
    )
    max_connections_per_ip: int = setting(
        20,
        "simultaneous connections per client IP (IPv6: per /64)",
        doc="Simultaneous connections from one client address (IPv6: one /64).",
        positive=True,
    )
    command_timeout: float = setting(
        300,
        "seconds for each command to arrive in full (RFC 5321 4.5.3.2.7: 5 minutes)",
        doc=(
            "Seconds for each command line to arrive in full, counted from when the server waits for it "
            "(RFC 5321 4.5.3.2.7: 5 minutes); a deadline per command, not per read (`[limits] "
            "min_data_rate`). Then `421 4.4.2`."
        ),
        positive=True,
    )
    data_timeout: float = setting(
        180,
        "seconds message data may stall; [limits] min_data_rate bounds trickling (RFC 5321 4.5.3.2.5/6)",
        doc=(
            "Seconds the message data (DATA or a BDAT chunk) may stall; data arriving at `[limits] "
            "min_data_rate` or faster never meets it, a trickle does (RFC 5321 4.5.3.2.5/6). Then `421 "
            "4.4.2`, nothing stored."
        ),
        positive=True,
    )
    max_errors: int = setting(
        20,
        "protocol errors before the server closes the connection",
        doc="Protocol errors after which the server closes the connection.",
        positive=True,
    )
    relay_networks: tuple[str, ...] = setting(
        (),
        'networks that may relay through port 25 without AUTH, e.g. ["192.0.2.0/24"] (default: none)',
        doc=(
            'Networks (e.g. `["192.0.2.0/24"]`) whose clients may relay through port 25 without AUTH: their '
            "mail for other domains is queued for delivery. Empty: nobody; port 25 accepts mail for our own "
            "domains only. Formerly `[queue] trusted_networks`, a name still read, with a warning "
            "(docs/decisions/0033)."
        ),
        check=network_problem,
        renamed_from=("queue.trusted_networks",),
    )


@section("submission")
@dataclass(frozen=True)
class SubmissionConfig:
    """Ports 587/465 (RFC 6409, RFC 8314): what an authenticated user may send."""

    max_messages_per_hour: int = setting(
        500,
        "messages one account may send per hour (a stolen password is not a spam cannon)",
        doc=(
            "Messages one account may submit in any hour (450 4.7.1 beyond it): a stolen password is not a "
            "spam cannon. Counted in memory; a restart forgets it."
        ),
        positive=True,
    )
    max_recipients_per_message: int = setting(
        100,
        "recipients per submitted message",
        doc="Recipients per submitted message (452 4.5.3 beyond it).",
        positive=True,
    )
    received_client_address: bool = setting(
        False,
        "name the client's IP address in the Received header of submitted mail (privacy: off)",
        doc=(
            "Name the client's IP address in the Received header of submitted mail. Off: the header names "
            "only this server and the authenticated submission."
        ),
    )


@section("queue")
@dataclass(frozen=True)
class QueueConfig:
    """Outbound delivery and the durable queue (docs/decisions/0017, 0018)."""

    first_retry: float = setting(
        300,
        "seconds before the first retry of a temporary failure",
        doc="Seconds before the first retry after a temporary failure (4xx, no connection).",
        positive=True,
    )
    max_retry_interval: float = setting(
        14400,
        "seconds; retries back off (x2) up to this",
        doc="Retries back off (doubling) up to this many seconds apart.",
        positive=True,
    )
    max_age: float = setting(
        432000,
        "seconds a message is retried before it bounces (5 days)",
        doc="Seconds (5 days) a message is retried; then it bounces to its sender with status 4.4.7.",
        positive=True,
    )
    delay_warning_after: float = setting(
        14400,
        "seconds after which the sender is told of a delay, once (0 = never)",
        doc=(
            'Seconds after which the sender gets one "delayed" notice (RFC 3464) while retries go on; `0` '
            "= never."
        ),
        minimum=0,
    )
    max_deliveries: int = setting(
        20, "outbound SMTP connections at once", doc="Outbound SMTP connections at once.", positive=True
    )
    max_per_destination: int = setting(
        4,
        "outbound connections at once to one domain",
        doc="Outbound connections at once to one domain.",
        positive=True,
    )
    delivery_port: int = setting(
        25,
        "TCP port of remote mail servers (25; other values for tests)",
        doc="TCP port of remote mail servers; change only for tests.",
        positive=True,
    )
    tls: str = setting(
        "opportunistic",
        '"opportunistic" (STARTTLS whenever offered) | "required" | "none"',
        doc=(
            '`"opportunistic"`: STARTTLS whenever the remote offers it, certificates not verified (as '
            'Postfix\'s "may"); `"required"`: no delivery without TLS; `"none"`: never TLS. The client '
            "offers Python's default cipher list (TLS 1.2 AEAD suites first, CBC with SHA-2 after them): to "
            "another server, a CBC suite beats the plaintext that would be the alternative "
            "(docs/decisions/0029)."
        ),
        choices=("opportunistic", "required", "none"),
    )
    dane: str = setting(
        "auto",
        '"auto" (on when the nameservers are on this machine) | "on" | "off": DANE (RFC 7672)',
        doc=(
            "DANE (RFC 7672): authenticate remote servers by their DNSSEC-signed TLSA records, which "
            "makes TLS mandatory for them. It needs a DNSSEC-validating resolver that can be trusted, "
            'since its AD bit is believed as Postfix believes it: `"on"` uses the `nameservers` (or the '
            'system\'s) as such; `"auto"` does so only when they are all loopback addresses (a local '
            'validating resolver such as unbound); `"off"` never. With a resolver that does not validate, '
            "DANE simply never applies."
        ),
        choices=("auto", "on", "off"),
    )
    mta_sts: bool = setting(
        True,
        "apply the MTA-STS policies (RFC 8461) of the domains mail is sent to",
        doc=(
            "Apply the MTA-STS policy (RFC 8461) a recipient domain publishes: under `enforce`, mail goes "
            "only to the MX hosts the policy names, over TLS with a certificate valid for the host from a "
            "trusted CA (`tls_ca_file`); under `testing` failures are only reported (TLS reports, RFC "
            "8460). Policies are kept in the store until they expire. DANE comes first where it applies."
        ),
    )
    tls_ca_file: str = setting(
        "",
        'PEM file of the CAs trusted for verified TLS to remote servers ("" = the system\'s)',
        doc=(
            "PEM file of the CAs trusted when a remote server's certificate must be verified (MTA-STS, "
            '`tls = "required"`) and for fetching MTA-STS policies; empty: the system\'s CAs.'
        ),
        file=True,
    )
    mta_sts_port: int = setting(
        443,
        "HTTPS port MTA-STS policies are fetched from (443; other values for tests)",
        doc="HTTPS port MTA-STS policies are fetched from; change only for tests.",
        positive=True,
    )
    connect_timeout: float = setting(
        30,
        "seconds to wait for a remote server to answer",
        doc="Seconds to wait for a remote server's greeting.",
        positive=True,
    )
    command_timeout: float = setting(
        300,
        "seconds per SMTP command (RFC 5321 4.5.3.2)",
        doc="Seconds per SMTP command (RFC 5321 section 4.5.3.2 suggests 5 minutes and more for DATA).",
        positive=True,
    )
    nameservers: tuple[str, ...] = setting(
        (),
        'DNS servers for MX lookups, e.g. ["127.0.0.1"] ([] = the system\'s)',
        doc=(
            'DNS servers for MX lookups, e.g. `["127.0.0.1"]`; empty: the system\'s resolver configuration.'
        ),
        check=_ip_address,
    )
    dns_port: int = setting(
        53, "UDP/TCP port of those nameservers", doc="Port of those nameservers.", positive=True
    )
    smarthost: str = setting(
        "",
        'send all outbound mail through this host ("" = deliver directly by MX)',
        doc="Send all outbound mail through this host instead of looking up MX records.",
    )
    smarthost_port: int = setting(587, "the smarthost's port", doc="The smarthost's port.", positive=True)
    smarthost_tls: str = setting(
        "starttls",
        '"starttls" (certificate verified; implicit TLS on 465 is not supported) | "none"',
        doc=(
            '`"starttls"` (required, certificate verified against the smarthost\'s name) or `"none"`. '
            "Implicit TLS (port 465) is not supported for the smarthost; use its port 587."
        ),
        choices=("starttls", "none"),
    )
    smarthost_ca_file: str = setting(
        "",
        'PEM file of CAs to trust for the smarthost ("" = the system\'s)',
        doc=(
            "PEM file of the CAs to trust for the smarthost's certificate (e.g. a private CA); empty: the "
            "system's CAs."
        ),
        file=True,
    )
    smarthost_username: str = setting(
        "",
        'AUTH user at the smarthost ("" = no AUTH)',
        doc="AUTH user name at the smarthost; empty: no AUTH.",
    )
    smarthost_password: str = setting(
        "", "AUTH password at the smarthost", doc="AUTH password at the smarthost."
    )
