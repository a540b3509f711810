"""POP2 (RFC 937, port 109): the sans-IO protocol core (`postoffice.pop2.protocol`) and the asyncio glue
(`postoffice.pop2.server.serve_pop2`).

Implementation notes
- The legacy protocol, kept for old clients: plaintext only (RFC 937 has no TLS), so the pop2 listener is off
  by default and, off loopback, needs `[auth] allow_plaintext_auth = true` (config.py refuses it otherwise;
  `postoffice ports` says why).
- It shares with POP3 the `[pop3]` settings (autologout, max_errors, connection caps), the authenticator and
  the maildrop locks: one POP session per maildrop, whichever protocol.
- Invariants: "=n" is exactly the number of octets RETR sends; ACKD is answered only after the deletion is
  committed; nothing but ACKD deletes. The state machine and the glue contract are in the docstring of
  `postoffice.pop2.protocol`; where RFC 937 is vague, docs/decisions/0010-pop2.md records what we chose.
- Not supported: anything beyond RFC 937 (there are no POP2 extensions); folders are the account's mailboxes
  by exact name (INBOX case-insensitively), there is no folder listing in the protocol.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from postoffice.pop2.protocol import (
        ConnectionClosed,
        Delete,
        Event,
        Kept,
        Login,
        Pop2ServerProtocol,
        Pop2Settings,
        Pop2UsageError,
        Quit,
        Retrieve,
        SelectFolder,
        State,
    )

__all__ = [
    "ConnectionClosed",
    "Delete",
    "Event",
    "Kept",
    "Login",
    "Pop2ServerProtocol",
    "Pop2Settings",
    "Pop2UsageError",
    "Quit",
    "Retrieve",
    "SelectFolder",
    "State",
]


def __getattr__(name: str) -> Any:
    """The protocol core's names, imported on first use (PEP 562): the config imports
    postoffice.pop2.service, which must not load the protocol core."""
    if name in __all__:
        from postoffice.pop2 import protocol

        return getattr(protocol, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
