"""The `[mailauth]` section: sender authentication of mail arriving on port 25 (SPF, DKIM, DMARC, iprev;
docs/decisions/0054).

Declarations only (`postoffice.settings`): imported by `postoffice.config`, so nothing heavy is imported here.
"""

from __future__ import annotations

from dataclasses import dataclass

from postoffice.settings import section, setting


@section("mailauth")
@dataclass(frozen=True)
class MailAuthConfig:
    verify: bool = setting(
        True,
        "check SPF, DKIM, DMARC and iprev of mail from other servers (port 25)",
        doc=(
            "Check SPF, DKIM, DMARC and iprev of every message from another server (port 25) and add one "
            "Authentication-Results header field (RFC 8601) with the results; apply the sender domain's "
            "DMARC policy. Off: no checks, no field (for a server behind another that checks)."
        ),
    )
    dmarc_reject: str = setting(
        "reject",
        "a DMARC failure under p=reject: reject (550 5.7.1 at the end of DATA) or quarantine (into Junk)",
        doc=(
            "What a message that fails DMARC under its domain's `p=reject` policy does: `reject` refuses it "
            "at the end of DATA (550 5.7.1, so the sender learns it was not delivered); `quarantine` "
            "delivers it into Junk. A `p=quarantine` failure always goes into Junk."
        ),
        choices=("reject", "quarantine"),
    )
    dns_cache_size: int = setting(
        10000,
        "DNS answers kept in memory for their TTL (SPF, DKIM keys, DMARC records)",
        doc=(
            "DNS answers the checks keep in memory, each for its TTL: the same senders' SPF, DKIM and DMARC "
            "records are asked for message after message."
        ),
        positive=True,
    )
    check_threads: int = setting(
        8,
        "threads for the blocking parts of the checks (SPF, DKIM)",
        doc="Threads for the parts of the checks that block (pyspf's SPF evaluation, dkimpy's verification).",
        positive=True,
    )
