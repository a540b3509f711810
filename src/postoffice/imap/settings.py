"""The `[imap]` section (IMAP on 143 with STARTTLS, 993 with implicit TLS), and `ImapSettings`, what one IMAP
session is configured with (built from the section and the server's hostname by imap/service.py).

Declarations only (`postoffice.settings`): imported by `postoffice.config`, so nothing heavy is imported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from postoffice.settings import section, setting


@section("imap")
@dataclass(frozen=True)
class ImapConfig:
    max_connections: int = setting(
        500,
        "simultaneous IMAP connections in total",
        doc="Simultaneous IMAP connections in total; see `[limits]` for what happens at the cap.",
        positive=True,
    )
    max_connections_per_ip: int = setting(
        20,
        "simultaneous connections per client IP (IPv6: per /64)",
        doc=(
            "Simultaneous connections from one client address (IPv6: one /64; phones and laptops keep "
            "several open)."
        ),
        positive=True,
    )
    autologout: float = setting(
        1800,
        "seconds the server waits for each command (RFC 9051 section 5.4: at least 1800)",
        doc=(
            "Seconds the server waits for each command to arrive in full (a deadline per command, see "
            "`[limits] min_data_rate`) before the session ends (RFC 9051 section 5.4: at least 30 minutes; "
            "smaller values are refused). Before login, `[limits] login_timeout` applies."
        ),
        minimum=1800,
    )
    idle_timeout: float = setting(
        3600,
        "seconds an IDLE command may wait for DONE (clients renew IDLE every 29 minutes)",
        doc="Seconds an IDLE may wait for DONE; clients renew IDLE every 29 minutes (at least 1800).",
        minimum=1800,
    )
    append_limit: int = setting(
        52428800,
        "largest message APPEND accepts, in octets (advertised as APPENDLIMIT, RFC 7889)",
        doc=(
            "Largest message APPEND accepts, in octets, advertised as APPENDLIMIT (RFC 7889); a larger "
            "literal is refused before it is read."
        ),
        positive=True,
    )
    max_mailboxes: int = setting(
        1000,
        "mailboxes (and subscriptions) one account may have; CREATE beyond is NO [LIMIT]",
        doc=(
            "Mailboxes one account may have, and as many subscriptions; CREATE, RENAME (of INBOX, or making "
            "superiors) and SUBSCRIBE beyond are `NO [LIMIT]`. See docs/decisions/0021."
        ),
        positive=True,
    )
    max_mailbox_name_length: int = setting(
        1024,
        "longest mailbox name, in octets of its UTF-8 form with its parents' names",
        doc=(
            'Longest mailbox name, in octets of its UTF-8 form including its superiors ("a/b/c" is 5); at '
            "least 64. The patterns of one LIST or LSUB command may have twice this many characters "
            "together (docs/decisions/0020)."
        ),
        minimum=64,
    )
    max_mailbox_depth: int = setting(
        32,
        "hierarchy levels of a mailbox name ('a/b/c' has 3)",
        doc='Hierarchy levels of a mailbox name ("a/b/c" has 3); RENAME checks every inferior it moves.',
        positive=True,
    )
    max_keyword_length: int = setting(
        128,
        "longest keyword (a flag such as $Forwarded) a client may create, in characters",
        doc=(
            "Longest keyword (a flag without a backslash, such as `$Forwarded`) STORE or APPEND may give "
            "a mailbox, in characters (keywords are ASCII atoms); longer is `NO [LIMIT]`, and COPY and MOVE "
            "leave it out. Keywords a mailbox has already are never refused. At least 32. See "
            "docs/decisions/0043."
        ),
        minimum=32,
    )
    max_mailbox_keywords: int = setting(
        256,
        "distinct keywords one mailbox may have; STORE or APPEND of another is NO [LIMIT]",
        doc=(
            "Distinct keywords the messages of one mailbox may carry together; STORE and APPEND of a new "
            "keyword beyond are `NO [LIMIT]` and PERMANENTFLAGS stops offering `\\*`; COPY and MOVE leave "
            "out the keywords that do not fit. At least 32. See docs/decisions/0043."
        ),
        minimum=32,
    )


@dataclass(frozen=True)
class ImapSettings:
    hostname: str = "localhost"
    autologout: float = 1800.0
    idle_timeout: float = 3600.0
    append_limit: int = 50 * 1024 * 1024
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
    #: Keywords (docs/decisions/0043): the longest a client may create (characters), and the most one
    #: mailbox's messages may carry together; beyond either, STORE and APPEND are NO [LIMIT].
    max_keyword_length: int = 128
    max_mailbox_keywords: int = 256
