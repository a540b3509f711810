"""The `[mta_sts]` section: the MTA-STS policy this server publishes for its domains (RFC 8461), served on the
HTTPS listener at `https://mta-sts.DOMAIN/.well-known/mta-sts.txt` (`postoffice.web.mtasts`) and announced by
the `_mta-sts.DOMAIN` TXT record (`postoffice.directory.dns_records`).

Declarations only (`postoffice.settings`): imported by `postoffice.config`, so nothing heavy is imported here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from postoffice.settings import section, setting

#: RFC 8461 section 3.2: the largest max_age a policy may have (a year of 365.25 days).
MAX_MAX_AGE = 31557600

#: An `mx` pattern (RFC 8461 section 3.2, `["*."] Domain` of RFC 5321 section 4.1.2): A-labels only.
_MX_PATTERN = re.compile(
    r"(\*\.)?[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
)


def _max_age_problem(value: int) -> tuple[str, str] | None:
    if value > MAX_MAX_AGE:
        return (
            f"must be at most {MAX_MAX_AGE} (a year, RFC 8461 section 3.2), got {value}",
            "the default is 604800",
        )
    return None


def _mx_problem(value: str) -> tuple[str, str] | None:
    name = value.strip().rstrip(".").lower()
    if len(name) > 253 or not _MX_PATTERN.fullmatch(name):
        return (
            f'"{value}" is not a host name or a pattern "*.DOMAIN"',
            "write a host name in A-labels (xn--...), or *. and a domain for any one label in front of it",
        )
    return None


def _mx_patterns(names: Any) -> list[str]:
    return [str(name).strip().rstrip(".").lower() for name in names]


@section("mta_sts")
@dataclass(frozen=True)
class MtaStsConfig:
    mode: str = setting(
        "testing",
        'the MTA-STS policy published for our domains: "testing" | "enforce" | "none" | "off" (nothing)',
        doc=(
            "The MTA-STS policy (RFC 8461) this server publishes for each of its domains, served at "
            "`https://mta-sts.DOMAIN/.well-known/mta-sts.txt` on the `https` listener and announced by the "
            "`_mta-sts.DOMAIN` TXT record (`postoffice dns records`). `testing`: senders deliver as before "
            "and only report failures (RFC 8460 reports go to postmaster@DOMAIN); `enforce`: senders that "
            "honour MTA-STS deliver only over TLS with a certificate valid for an `mx` name, and hold the "
            "mail otherwise; `none`: tells senders to drop a policy they have; `off`: nothing is served or "
            "published. `enforce` only once the certificate is trusted publicly and names this host and "
            "every `mta-sts.DOMAIN`: the default is `testing` because the server cannot know that."
        ),
        choices=("testing", "enforce", "none", "off"),
    )
    max_age: int = setting(
        604800,
        "seconds senders keep the policy (one week; at most 31557600)",
        doc=(
            "Seconds senders keep the policy once fetched (RFC 8461 section 3.2; at most 31557600, a year). "
            "Weeks or more make an attacker's interference at refresh time less likely to matter. A "
            "changed policy reaches senders as they next look up the TXT record: its id changes with the "
            "policy."
        ),
        minimum=0,
        check=_max_age_problem,
    )
    mx: tuple[str, ...] = setting(
        (),
        'MX host names senders may deliver to, e.g. ["mail.example.org", "*.example.net"] (empty: hostname)',
        doc=(
            "The MX host names the policy allows (its `mx` lines): host names in A-labels, or `*.DOMAIN` "
            "for any one label in front of DOMAIN. Empty: `[server] hostname`, the host the MX records "
            "name. Under `enforce`, a sender refuses every MX host not matched here."
        ),
        check=_mx_problem,
        normalize=_mx_patterns,
    )
