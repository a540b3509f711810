"""`ImapSettings`: what an IMAP session is configured with (the `[imap]` section and the server's hostname).

Connection limits (max_connections, max_connections_per_ip) belong to the listener, not to a session; see
docs/configuration.md for every setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ImapSettings:
    hostname: str = "localhost"
    autologout: float = 1800.0
    idle_timeout: float = 3600.0
    append_limit: int = 50 * 1024 * 1024
    allow_plaintext_auth: bool = False
    max_line: int = 64 * 1024
    spool_dir: Path | None = None
    #: Advertise IMAP4rev2 (RFC 9051) and act on ENABLE IMAP4rev2; clients that do not enable it keep the
    #: IMAP4rev1 behaviour (\\Recent, SEARCH responses, modified UTF-7 names).
    imap4rev2: bool = True
    #: Mailboxes (and subscriptions) per account, and the longest and deepest mailbox name (octets of its
    #: UTF-8 form, levels): CREATE / RENAME / SUBSCRIBE over them are NO [LIMIT] (docs/decisions/0021).
    max_mailboxes: int = 1000
    max_mailbox_name_length: int = 1024
    max_mailbox_depth: int = 32
