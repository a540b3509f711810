"""The `[spam]` section: rspamd as the spam filter of mail from other servers (docs/decisions/0086); the
built-in checks for servers without it: DNS blocklists, greylisting and the built-in verdict
(docs/decisions/0089).

Declarations only (`postoffice.settings`): imported by `postoffice.config`, so nothing heavy is imported here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from postoffice.settings import network_problem, section, setting

#: Loopback, private (RFC 1918, RFC 6598, RFC 4193) and link-local networks: never looked up in a DNS
#: blocklist (they list public addresses only) nor greylisted, unless an administrator says otherwise.
LOCAL_NETWORKS = (
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "fc00::/7",
    "fe80::/10",
)

#: Longest DNSBL zone: room is left for the 32 nibbles of an IPv6 address in front of it (RFC 5782 section
#: 2.4: 64 octets with their dots) within the 253 of a domain name.
MAX_ZONE_LENGTH = 253 - 64
_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")


def zone_problem(zone: str) -> str | None:
    """Why `zone` (lower-case, without a trailing dot) cannot be a DNS blocklist's zone; None when it can: at
    least two labels of letters, digits, "-" and "_" (not at a label's ends), ASCII only, short enough for
    an IPv6 query name (MAX_ZONE_LENGTH)."""
    if not zone:
        return "an empty zone"
    if len(zone) > MAX_ZONE_LENGTH:
        return f"longer than {MAX_ZONE_LENGTH} characters"
    labels = zone.split(".")
    if len(labels) < 2:
        return "a single label"
    for label in labels:
        if not label.isascii() or not _LABEL.fullmatch(label):
            return f"the label {label!r} is not a DNS label"
    return None


def _zone(value: str) -> tuple[str, str] | None:
    problem = zone_problem(value.rstrip(".").lower())
    if problem is not None:
        return f'"{value}" is not a DNS blocklist zone: {problem}', 'write "zen.spamhaus.org"'
    return None


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
    dnsbl_zones: tuple[str, ...] = setting(
        (),
        'DNS blocklists asked about each client of port 25, e.g. ["zen.spamhaus.org"] (default: none)',
        doc=(
            "DNS blocklists (RFC 5782) asked about the address of each client that connects to port 25 "
            '(e.g. `["zen.spamhaus.org"]`), all at once, while the client says hello. An answer in '
            "127.0.0.0/8 lists it; 127.0.0.1 and 127.255.255.0/24 (Spamhaus's codes for refused queries, "
            "e.g. from a public resolver) are logged as warnings and list nothing. Answers are kept for "
            "their TTL (1 minute to 1 hour), answers of none for 5 minutes. Submission (587, 465) and "
            "`relay_networks` are never looked up. Empty (the default): no lookups."
        ),
        check=_zone,
        normalize=lambda zones: [str(zone).rstrip(".").lower() for zone in zones],
    )
    dnsbl_action: str = setting(
        "reject",
        "a listed client: reject (554 5.7.1 at RCPT, postmaster@ and abuse@ still reached) or junk",
        doc=(
            "What a listing does. `reject`: every recipient is refused at RCPT with `554 5.7.1` and the "
            "blocklist named, except postmaster@ and abuse@ (RFC 5321 section 4.5.1, RFC 2142), so that "
            "the client's operator can still reach us; `junk`: its mail is accepted into each recipient's "
            "Junk mailbox."
        ),
        choices=("reject", "junk"),
    )
    dnsbl_timeout: float = setting(
        5,
        "seconds the blocklists may take to answer, from the connection; slower: not listed",
        doc=(
            "Seconds, counted from the connection, that the blocklists' answers may take. A blocklist "
            "slower than that, or failing, lists nothing for that client (logged): a broken blocklist "
            "never stops mail."
        ),
        positive=True,
    )
    dnsbl_exempt: tuple[str, ...] = setting(
        LOCAL_NETWORKS,
        "networks never looked up in the blocklists (default: loopback, private and link-local)",
        doc=(
            "Networks whose clients are never looked up in the blocklists. The default holds loopback, "
            "the private ranges (RFC 1918, RFC 6598, RFC 4193) and link-local: keep them when adding "
            "others."
        ),
        check=network_problem,
    )
    greylisting: bool = setting(
        False,
        "greylisting (RFC 6647): 451 4.7.1 at RCPT for a new client, sender and recipient, until it retries",
        doc=(
            "Greylisting (RFC 6647) of mail from other servers (port 25): the first message of a triplet "
            "(the client's /24 for IPv4 or /64 for IPv6, the envelope sender, the recipient) is answered "
            "`451 4.7.1` at RCPT; the sender's server retries, and after `greylist_delay` it passes. "
            "Bounces (the null sender) are greylisted by the same triplet. The records are kept in the "
            "store (they survive a restart). Costs every new correspondent a delay of minutes to an hour. "
            "Bounded: a client network's new triplets are recorded up to 100 per `greylist_delay` + "
            "`greylist_retry_window` (more are answered `451` unrecorded), and a session with 20 "
            "greylisted recipients is closed with `421 4.7.0`."
        ),
    )
    greylist_delay: float = setting(
        300,
        "seconds from a triplet's first try before a retry passes",
        doc="Seconds from a triplet's first try before a retry passes (5 minutes).",
        minimum=0,
    )
    greylist_retry_window: float = setting(
        86400,
        "seconds after the delay during which a retry passes; later, the triplet starts again",
        doc=(
            "Seconds after `greylist_delay` during which a retry passes (a day); a triplet not retried "
            "within it is forgotten and starts again."
        ),
        positive=True,
    )
    greylist_expiry: float = setting(
        3024000,
        "seconds a triplet that passed stays known after its last message (35 days)",
        doc=(
            "Seconds a triplet that passed (and a client network counted for `greylist_auto_allowlist`) "
            "stays known after its last message: 35 days, so that monthly mail is not delayed again."
        ),
        positive=True,
    )
    greylist_auto_allowlist: int = setting(
        5,
        "deliveries (one per delay) a client network must pass before it is not greylisted (0: never)",
        doc=(
            "After this many deliveries of a client network (/24, /64) passed greylisting (triplets "
            "that pass count at most once per `greylist_delay`: one message retried to many recipients is "
            "one), its mail is no longer greylisted until `greylist_expiry` after its last message: a "
            "server that retries properly has shown it. 0: every triplet is greylisted."
        ),
        minimum=0,
    )
    greylist_exempt: tuple[str, ...] = setting(
        LOCAL_NETWORKS,
        "networks never greylisted (default: loopback, private and link-local)",
        doc=(
            "Networks whose clients are never greylisted: large senders that retry from other addresses "
            "than they first tried from, and the ones in the default (loopback, private, link-local: keep "
            "them when adding others)."
        ),
        check=network_problem,
    )
    builtin_filter: bool = setting(
        True,
        "without rspamd: Junk by the authentication results and DNSBL listings (X-Spam-* fields)",
        doc=(
            "Without `rspamd_url`: a built-in verdict on each message from another server, a score from "
            "our authentication results (SPF fail 4, softfail 1.5, DKIM fail without a pass 2, DMARC fail "
            "2, iprev fail 1) and DNSBL listings (3 each): from `junk_score` on, into Junk; a listing under "
            '`dnsbl_action = "junk"` always. `X-Spam-*` fields as with rspamd (`add_headers`). It never '
            "refuses (the DMARC policy is `[mailauth]`'s). A DMARC failure delivered because a "
            "`[mailauth] trusted_arc_sealers` forwarder vouched for the message scores nothing, nor do its "
            "SPF and DKIM failures. Off: no verdict without rspamd."
        ),
    )
