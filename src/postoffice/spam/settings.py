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


def controller_of(settings: SpamConfig) -> str:
    """The controller's address: `controller_url`, else rspamd_url's host on port 11334."""
    if settings.controller_url:
        return settings.controller_url
    host = urlsplit(settings.rspamd_url).hostname or "127.0.0.1"
    return f"http://{'[' + host + ']' if ':' in host else host}:11334"


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
    learn: bool = setting(
        True,
        "teach rspamd: a message moved into Junk is spam, one moved out of Junk is ham",
        doc=(
            "Teach rspamd from what people do: a message moved or copied into a Junk mailbox (IMAP, the "
            "webmail, any client) is learned as spam, one moved out of Junk (not into Trash) as ham, in the "
            "background, through rspamd's controller. rspamd's Bayes filter needs Redis "
            "(`redis-server`, and `servers` in rspamd's `local.d/redis.conf`)."
        ),
    )
    controller_url: str = setting(
        "",
        "rspamd's controller for learning; empty: rspamd_url's host on port 11334",
        doc="rspamd's controller (learning). Empty: the host of `rspamd_url`, port 11334 (Debian's).",
        check=_rspamd_url,
    )
    controller_password: str = setting(
        "",
        "the controller's password, when rspamd asks for one",
        doc="The controller's password, when it is not reached from an address rspamd trusts (`secure_ip`).",
    )
    max_scan_size: int = setting(
        20971520,
        "octets; larger messages are not scanned",
        doc="Octets (20 MiB); larger messages are delivered without a scan (spam is small).",
        positive=True,
    )
