"""The `[mailauth]` section: sender authentication of mail arriving on port 25 (SPF, DKIM, DMARC, iprev, ARC;
docs/decisions/0054) and DKIM signing of outbound mail (docs/decisions/0056).

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
    sign: bool = setting(
        True,
        "DKIM-sign submitted mail, relayed mail and DSNs whose From domain has keys (postoffice dkim)",
        doc=(
            "DKIM-sign (RFC 6376; Ed25519 and RSA, RFC 8463) every message our users submit (587/465, the "
            "webmail), every message a `relay_networks` client relays, and the server's own DSNs, when its "
            "From domain (or a parent of it) is one of ours with active keys (`postoffice dkim`). Off: "
            "nothing is signed (for a server whose mail leaves through a smarthost that signs)."
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
    trusted_arc_sealers: tuple[str, ...] = setting(
        (),
        'domains whose valid ARC seal overrides a DMARC failure, e.g. ["lists.example.org"] (default: none)',
        doc=(
            "Domains (the d= of an ARC-Seal, RFC 8617) trusted to vouch for the mail they pass on: mailing "
            "lists and forwarders that change a message and so break its DKIM signature and its DMARC "
            "result. "
            "When a message fails DMARC but its ARC chain validates and its newest seal is one of these "
            "domains, the DMARC policy is not applied (it is delivered as usual; RFC 7960's local policy "
            "override) and the Authentication-Results field says so. Exact domains, no subdomains. Empty: "
            "ARC is checked and recorded, but overrides nothing."
        ),
        normalize=lambda names: [str(name).rstrip(".").lower() for name in names],
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
    dkim_processes: int = setting(
        1,
        "worker processes verifying DKIM signatures (0: threads of the server process)",
        doc=(
            "Worker processes that verify DKIM signatures (hashing the message, RSA and Ed25519): they use "
            "other CPU cores instead of the server process's. 0: threads of the server process "
            "(`check_threads`), for a machine with one core."
        ),
        minimum=0,
    )
    check_threads: int = setting(
        8,
        "threads for the blocking parts of the checks (SPF, DKIM)",
        doc=(
            "Threads for the parts of the checks that block (pyspf's SPF evaluation, dkimpy's DKIM and ARC "
            "checks)."
        ),
        positive=True,
    )
    send_reports: bool = setting(
        True,
        "send the daily DMARC aggregate reports (RFC 9990) and TLS reports (RFC 8460) domains ask for",
        doc=(
            "Send, once a day, the reports other domains ask for in their DNS: DMARC aggregate reports "
            "(RFC 9990) about the mail received from them (to their DMARC record's `rua`), and SMTP TLS "
            "reports (RFC 8460) about the TLS of the mail sent to them (to their `_smtp._tls` record's "
            "`rua`, by mail). Off: results are not counted and nothing is sent."
        ),
    )
    srs: bool = setting(
        True,
        "rewrite the envelope sender of forwarded mail (SRS) so that SPF holds at the next hop",
        doc=(
            "Forwarded mail (aliases to outside addresses) leaves with an SRS envelope sender "
            "(`SRS0=...@` the forwarding domain) so that SPF at the next hop checks this server, and "
            "bounces come back here to be sent on to the original sender (docs/decisions/0059). Off: the "
            "original sender is kept, and SPF fails wherever its domain does not list this server."
        ),
    )
    arc_seal: bool = setting(
        True,
        "ARC-seal forwarded mail (RFC 8617) with the forwarding domain's DKIM key",
        doc=(
            "Forwarded mail gets an ARC set (RFC 8617) signed with the forwarding domain's DKIM key (its "
            "RSA key; `postoffice dkim generate`): the results this server saw travel with it, for the "
            "next hop to trust. Domains without keys forward unsealed."
        ),
    )
    read_reports: bool = setting(
        True,
        "read the DMARC and TLS reports other servers send to postmaster@ our domains",
        doc=(
            "Read the DMARC aggregate reports and TLS reports that other servers send to postmaster@ each "
            "of our domains (the address the suggested DNS records name): each is kept as a summary "
            "(admin page Reports, `postoffice reports`) and its message delivered read, into the "
            '"Reports" folder when the account has one.'
        ),
    )
    report_from: str = setting(
        "",
        'the address reports are sent from ("" = postmaster@ the host name\'s domain, or the first domain)',
        doc=(
            "The From address and envelope sender of the reports this server sends, and the contact "
            "address in them. Empty: `postmaster@` the served domain the host name is in (else the first "
            "served domain)."
        ),
    )
