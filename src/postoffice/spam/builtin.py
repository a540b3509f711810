"""The built-in verdict on mail from other servers, for servers without rspamd (docs/decisions/0089): a score
from what the authentication stage found and from the DNS blocklists that list the client.

Implementation notes
- Inputs: the results of the authentication stage, which runs first, as data (`DeliveryPlan.authentication`:
  the results our Authentication-Results field says, by method; the field itself is not parsed again, so
  nothing a client wrote into it, such as its HELO name, can pass for a result) and the zones that list the
  client (`Origin.dnsbl`, from the SMTP session's lookups: `postoffice.spam.dnsbl`). Nothing is asked of
  DNS again here.
- A DMARC failure that the authentication stage delivered as usual because a trusted ARC sealer vouched for
  the message (`AuthenticationSummary.arc_override`, decision 0054) is not scored, and neither are the SPF
  and DKIM failures that forwarding explains (the forwarder's address is not the sender's, and a list's
  footer breaks the signature): the administrator trusts that forwarder's own checks.
- Symbols and their weights (WEIGHTS), named as rspamd names its own so that a reader of X-Spamd-Result
  recognises them: the MAIL FROM identity's SPF `fail` (the domain says this client may not send its mail:
  RFC 7208 section 8.4) 4, `softfail` 1.5; DKIM `fail` (or `permerror`) with no signature passing 2;
  DMARC `fail` 2; iprev `fail` (no name that maps back to the address, RFC 8601 section 3) 1; each DNSBL
  listing 3 (RBL_ and the zone in upper case). Passes subtract nothing: most spam passes SPF for its own
  throwaway domain, so a pass says little.
- The score is compared with `[spam] junk_score` (6 by default: SPF fail with a failing DKIM signature, SPF
  fail with a DMARC failure, or two listings reach it; one of them alone does not). The built-in verdict
  never refuses: refusing for DMARC is the domain owner's call (p=reject), which the authentication stage
  applies already, as it files p=quarantine failures into Junk (RFC 9989).
- A DNSBL listing under `dnsbl_action = "junk"` puts the message into Junk whatever the score (the
  administrator chose so; with "reject", only postmaster@ and abuse@ got such mail at all, and it stays in
  their Inbox unless the score says otherwise).
"""

from __future__ import annotations

from collections.abc import Sequence

from postoffice.delivery.plan import AuthenticationSummary
from postoffice.spam.rspamd import Verdict

#: The weight of each symbol (module notes).
WEIGHTS: dict[str, float] = {
    "R_SPF_FAIL": 4.0,
    "R_SPF_SOFTFAIL": 1.5,
    "R_DKIM_REJECT": 2.0,
    "DMARC_FAIL": 2.0,
    "IPREV_FAIL": 1.0,
}
#: The weight of one DNSBL listing.
DNSBL_WEIGHT = 3.0
#: The action a built-in verdict reports (what rspamd calls the decision; ours is the thresholds').
ACTION = "builtin"


def dnsbl_symbol(zone: str) -> str:
    """The symbol of a listing in `zone`: RBL_ and the zone in upper case, "." and "-" as "_"."""
    return "RBL_" + zone.upper().replace(".", "_").replace("-", "_")


def builtin_verdict(authentication: AuthenticationSummary | None, listings: Sequence[str]) -> Verdict:
    """The score and symbols for a message with these authentication results (None when none were checked)
    and DNSBL listings (module notes)."""
    symbols: dict[str, float] = {}
    found = authentication.results if authentication is not None else {}
    if authentication is None or not authentication.arc_override:
        spf = found.get("spf", ())
        if spf[:1] == ("fail",):
            symbols["R_SPF_FAIL"] = WEIGHTS["R_SPF_FAIL"]
        elif spf[:1] == ("softfail",):
            symbols["R_SPF_SOFTFAIL"] = WEIGHTS["R_SPF_SOFTFAIL"]
        dkim = found.get("dkim", ())
        if "pass" not in dkim and any(result in ("fail", "permerror") for result in dkim):
            symbols["R_DKIM_REJECT"] = WEIGHTS["R_DKIM_REJECT"]
        if "fail" in found.get("dmarc", ()):
            symbols["DMARC_FAIL"] = WEIGHTS["DMARC_FAIL"]
    if found.get("iprev", ())[:1] == ("fail",):
        symbols["IPREV_FAIL"] = WEIGHTS["IPREV_FAIL"]
    for zone in listings:
        symbols[dnsbl_symbol(zone)] = DNSBL_WEIGHT
    return Verdict(sum(symbols.values()), 0.0, ACTION, symbols)
