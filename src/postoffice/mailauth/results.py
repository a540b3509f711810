"""The Authentication-Results header field (RFC 8601): written for the checks of one message, read back (our
own, by the webmail), and recognised when a message arrives claiming to come from our checks already.

Implementation notes
- One field per message, `Authentication-Results: <authserv-id>; <method>=<result> <properties>; ...`
  (RFC 8601 section 2.2), with the server's hostname as authserv-id (section 2.5), methods in the order the
  checks ran: iprev, spf (the MAIL FROM identity, then the HELO identity when it was checked), dkim (one
  result per signature), arc (when it was checked: RFC 8617 section 7.2, with the sealers in a comment,
  `smtp.remote-ip` and `header.oldest-pass`), dmarc. A method with nothing to check says `none`. Reasons go
  into comments.
- Property values are written as RFC 8601 `pvalue`s: a domain, an address literal, or a quoted string
  when the value has other characters (section 2.2: `value` is an RFC 2045 token or quoted-string).
- Folded at the methods (section 2.2 allows CFWS between them), so every line stays under 998 octets and
  the field passes `delivery.plan.header_field`'s check.
- `claims_our_id`: a field whose authserv-id is ours, found in an arriving message, was not written by us
  (RFC 8601 section 5: MUST be removed or renamed before delivery); the stage removes it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the webmail reads results without loading the checks' libraries
    from postoffice.mailauth.arc import ArcResult
    from postoffice.mailauth.dkim_verify import DkimResult
    from postoffice.mailauth.iprev import IprevResult

_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`{|}~@]+")
_COMMENT_UNSAFE = re.compile(r"[()\\\r\n\x00-\x1f\x7f]")


def _value(text: str) -> str:
    """`text` as a property value: as it is when it is a token, else a quoted string."""
    if text and _TOKEN.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _comment(text: str) -> str:
    cleaned = _COMMENT_UNSAFE.sub(" ", text).strip()[:200]
    return f" ({cleaned})" if cleaned else ""


def format_results(
    authserv_id: str,
    *,
    iprev: IprevResult | None,
    spf: Sequence[tuple[str, str, str, str]],
    dkim: Sequence[DkimResult],
    dmarc: tuple[str, str, str] | None,
    arc: ArcResult | None = None,
    remote_ip: str = "",
) -> str:
    """The field's value. `spf`: (result, property "smtp.mailfrom"/"smtp.helo", domain, reason) per identity
    checked; `dmarc`: (result, header.from domain, reason), None when there was no single From domain;
    `arc`: the chain's result (None: not checked), recorded with the client's address `remote_ip`."""
    methods: list[str] = []
    if iprev is not None:
        methods.append(
            f"iprev={iprev.result}{_comment(iprev.name or iprev.reason)} policy.iprev={_value(iprev.ip)}"
        )
    if not spf:
        methods.append("spf=none")
    for result, prop, domain, reason in spf:
        methods.append(f"spf={result}{_comment(reason)} {prop}={_value(domain)}")
    if not dkim:
        methods.append("dkim=none")
    for signature in dkim:
        properties = f" header.d={_value(signature.domain)}" if signature.domain else ""
        if signature.selector:
            properties += f" header.s={_value(signature.selector)}"
        if signature.algorithm:
            properties += f" header.a={_value(signature.algorithm)}"
        if signature.signature_start:
            properties += f" header.b={_value(signature.signature_start)}"
        methods.append(f"dkim={signature.result}{_comment(signature.reason)}{properties}")
    if arc is not None:
        methods.append(_arc_method(arc, remote_ip))
    if dmarc is None:
        methods.append("dmarc=none")
    else:
        result, domain, reason = dmarc
        properties = f" header.from={_value(domain)}" if domain else ""
        methods.append(f"dmarc={result}{_comment(reason)}{properties}")
    return authserv_id + ";\r\n\t" + ";\r\n\t".join(methods)


def _arc_method(arc: ArcResult, remote_ip: str) -> str:
    notes = []
    if arc.sealers:
        notes.append("sealed by " + ", ".join(f"i={i} {d or '?'}" for i, d in enumerate(arc.sealers, 1)))
    if arc.reason:
        notes.append(arc.reason)
    properties = f" smtp.remote-ip={_value(remote_ip)}" if remote_ip else ""
    if arc.result == "pass" and arc.oldest_pass:
        properties += f" header.oldest-pass={arc.oldest_pass}"
    return f"arc={arc.result}{_comment('; '.join(notes))}{properties}"


def authserv_id_of(value: str) -> str:
    """The authserv-id of an Authentication-Results field's value ("" when it has none)."""
    text = re.sub(r"\([^()]*\)", " ", value)  # comments (not nested: enough to find the first token)
    first = text.strip().split(";", 1)[0].split()
    return first[0].lower() if first else ""


def claims_our_id(value: str, authserv_id: str) -> bool:
    return authserv_id_of(value) == authserv_id.lower()


def read_results(value: str) -> dict[str, str]:
    """The result of each method in a field's value (the first one of a method): {"spf": "pass", ...}."""
    return {method: results[0] for method, results in results_by_method(value).items()}


def results_by_method(value: str) -> dict[str, list[str]]:
    """Every result of each method in a field's value, in the field's order: {"dkim": ["fail", "pass"],
    "spf": ["pass", "none"], ...} (our SPF results: the MAIL FROM identity's first, then HELO's)."""
    found: dict[str, list[str]] = {}
    text = re.sub(r"\([^()]*\)", " ", value)
    for part in text.split(";")[1:]:
        match = re.match(r"\s*([A-Za-z0-9-]+)\s*=\s*([A-Za-z0-9-]+)", part)
        if match is not None:
            found.setdefault(match.group(1).lower(), []).append(match.group(2).lower())
    return found


def from_domain_of_results(value: str) -> str:
    """The `header.from` domain of a field's value, lowercase ("" when it has none)."""
    found = re.search(r"header\.from=([^\s;()]+)", value)
    return found.group(1).strip('"').lower() if found else ""
