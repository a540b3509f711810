"""The `[spam]` section: rspamd as the spam filter of mail from other servers (docs/decisions/0086).

Declarations only (`postoffice.settings`): imported by `postoffice.config`, so nothing heavy is imported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from postoffice.settings import section, setting


def _rspamd_url(value: str) -> tuple[str, str] | None:
    if not value:
        return None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises for a port that is no number
    except ValueError:
        parts = None
    if parts is None or parts.scheme != "http" or not parts.hostname:
        return f'"{value}" is not an http address of rspamd', 'write "http://127.0.0.1:11333"'
    return None


@section("spam")
@dataclass(frozen=True)
class SpamConfig:
    rspamd_url: str = setting(
        "",
        "rspamd's scanner (its normal worker), e.g. http://127.0.0.1:11333; empty: no spam filter",
        doc=(
            "The address of rspamd's scanner (the normal worker, `http://127.0.0.1:11333` with Debian's "
            "`rspamd` package). Each message from another server (port 25) is scanned there while the "
            "client waits for the reply to DATA; the score decides, by the two thresholds below. Empty "
            "(the default): no spam filter."
        ),
        check=_rspamd_url,
    )
    reject_score: float = setting(
        15.0,
        "score from which a message is refused at DATA (550 5.7.1)",
        doc="Score (rspamd's) from which a message is refused at the end of DATA with `550 5.7.1`.",
    )
    junk_score: float = setting(
        6.0,
        "score from which a message is delivered into Junk",
        doc=(
            "Score from which a message is delivered into each recipient's Junk mailbox (the one with the "
            "`\\\\Junk` attribute) instead of the Inbox; the recipients' Sieve scripts still run after it."
        ),
    )
    add_headers: bool = setting(
        True,
        "put X-Spam-Status, X-Spam-Score and X-Spamd-Result on delivered mail",
        doc=(
            "Put `X-Spam-Status`, `X-Spam-Score` and `X-Spamd-Result` (the symbols rspamd found) on top "
            "of each delivered copy, for mail programs and Sieve (`header`, `spamtest`)."
        ),
    )
    timeout: float = setting(
        15.0,
        "seconds to wait for rspamd's answer",
        doc="Seconds to wait for rspamd's answer before the message is treated as not scanned.",
        positive=True,
    )
    on_failure: str = setting(
        "accept",
        "when rspamd cannot be asked: accept (deliver unfiltered) or tempfail (451)",
        doc=(
            "What happens to a message when rspamd cannot be asked (not running, too slow, an error): "
            "`accept` (the default) delivers it unfiltered and logs a warning, never losing or refusing "
            "mail; `tempfail` answers `451 4.7.1` so that the sending server tries again later."
        ),
        choices=("accept", "tempfail"),
    )
    max_scan_size: int = setting(
        20971520,
        "octets; larger messages are not scanned",
        doc="Octets (20 MiB); larger messages are delivered without a scan (spam is small).",
        positive=True,
    )
