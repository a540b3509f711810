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
- Read back (`parse_results`) by RFC 8601's grammar: a ";" inside a quoted-string (a HELO name, a MAIL
  FROM domain) or a comment separates nothing, so no text a client chose becomes a result. The spam
  stage does not read the field: the authentication stage gives it the results as data
  (`DeliveryPlan.authentication`, `results_summary`).
- Folded at the methods (section 2.2 allows CFWS between them), so every line stays under 998 octets and
  the field passes `delivery.plan.header_field`'s check.
- `claims_our_id`: a field whose authserv-id is ours, found in an arriving message, was not written by us
  (RFC 8601 section 5: MUST be removed or renamed before delivery); the stage removes it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
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
        # no domain (the null sender with a HELO name that is no domain, RFC 7208 section 2.4): no property
        methods.append(f"spf={result}{_comment(reason)}" + (f" {prop}={_value(domain)}" if domain else ""))
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


def results_summary(
    *,
    iprev: IprevResult | None,
    spf: Sequence[tuple[str, str, str, str]],
    dkim: Sequence[DkimResult],
    dmarc: tuple[str, str, str] | None,
    arc: ArcResult | None = None,
) -> dict[str, tuple[str, ...]]:
    """The results `format_results` writes for the same arguments, by method, each method's in the field's
    order ({"spf": ("fail", "none"), ...}): what a later stage reads instead of parsing the field."""
    found: dict[str, tuple[str, ...]] = {}
    if iprev is not None:
        found["iprev"] = (iprev.result,)
    found["spf"] = tuple(result for result, _, _, _ in spf) or ("none",)
    found["dkim"] = tuple(signature.result for signature in dkim) or ("none",)
    if arc is not None:
        found["arc"] = (arc.result,)
    found["dmarc"] = (dmarc[0] if dmarc is not None else "none",)
    return found


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


@dataclass(frozen=True)
class ResultInfo:
    """One `resinfo` of a field (RFC 8601 section 2.2): a method's result and its properties, each
    (`ptype.property`, value) with quoted-string values unquoted, names in lower case."""

    method: str
    result: str
    properties: tuple[tuple[str, str], ...] = ()

    def value_of(self, name: str) -> str | None:
        """The first value of property `name` ("header.from"), None when there is none."""
        return next((value for key, value in self.properties if key == name), None)


def parse_results(value: str) -> tuple[str, list[ResultInfo]]:
    """A field's value as (its authserv-id in lower case, its resinfos in order). The grammar of RFC 8601
    section 2.2: ";" separates the authserv-id and each resinfo only outside quoted-strings and comments
    (nested, with quoted-pairs), so nothing a value or a comment says becomes a result. A part that is no
    `method=result` (the "none" of no results, or garbage) is left out; an unterminated quoted-string or
    comment runs to the end of the value."""
    parts = _split_resinfo(value)
    first = _WORD.match(parts[0])
    authserv_id = _unquoted(first.group(1)).strip().lower() if first is not None else ""
    found: list[ResultInfo] = []
    for part in parts[1:]:
        spec = _METHODSPEC.match(part)
        if spec is None:
            continue
        properties: list[tuple[str, str]] = []
        position = spec.end()
        while (item := _ITEM.match(part, position)) is not None:  # a propspec, or a word skipped whole
            if item.group("ptype") is not None:
                name = f"{item.group('ptype')}.{item.group('property')}".lower()
                properties.append((name, _unquoted(item.group("pvalue"))))
            position = item.end()
        found.append(ResultInfo(spec.group(1).lower(), spec.group(2).lower(), tuple(properties)))
    return authserv_id, found


_QUOTED_STRING = r'"(?:[^"\\]|\\.)*"?'  # unterminated: to the end
#: a word: a quoted-string or a run of other characters up to white space or a quote
_WORD = re.compile(rf'\s*({_QUOTED_STRING}|[^\s"]+)', re.DOTALL)
#: methodspec (with an optional method-version) and result
_METHODSPEC = re.compile(r"\s*([A-Za-z0-9_-]+)\s*(?:/\s*[0-9]+\s*)?=\s*([A-Za-z0-9_-]+)")
#: a propspec, or any other word (a reasonspec's: "reason" has no ptype)
_ITEM = re.compile(
    rf"\s*(?:(?P<ptype>[A-Za-z0-9_-]+)\s*\.\s*(?P<property>[A-Za-z0-9_.-]+)\s*=\s*"
    rf'(?P<pvalue>{_QUOTED_STRING}|[^\s"]+)|{_QUOTED_STRING}|[^\s"]+)',
    re.DOTALL,
)
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)', re.DOTALL)


def _split_resinfo(value: str) -> list[str]:
    """`value` cut at the ";" outside quoted-strings and comments, comments replaced by a space."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0  # comments nest (RFC 5322 section 3.2.2)
    quoted = escaped = False
    for ch in value:
        if escaped:  # the character after a backslash in a quoted-string or a comment: itself
            escaped = False
            if not depth:
                current.append(ch)
        elif ch == "\\" and (quoted or depth):
            escaped = True
            if not depth:
                current.append(ch)
        elif depth:
            depth += {"(": 1, ")": -1}.get(ch, 0)
            if not depth:
                current.append(" ")
        elif quoted:
            current.append(ch)
            quoted = ch != '"'
        elif ch == "(":
            depth = 1
        elif ch == ";":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
            quoted = ch == '"'
    parts.append("".join(current))
    return parts


def _unquoted(word: str) -> str:
    """A value as it means: a quoted-string without its quotes and quoted-pairs, a token as it is."""
    quoted = _QUOTED.match(word)
    if quoted is None:
        return word
    return re.sub(r"\\(.)", r"\1", quoted.group(1), flags=re.DOTALL)


def authserv_id_of(value: str) -> str:
    """The authserv-id of an Authentication-Results field's value ("" when it has none)."""
    return parse_results(value)[0]


def claims_our_id(value: str, authserv_id: str) -> bool:
    return authserv_id_of(value) == authserv_id.lower()


def read_results(value: str) -> dict[str, str]:
    """The result of each method in a field's value (the first one of a method): {"spf": "pass", ...}."""
    return {method: results[0] for method, results in results_by_method(value).items()}


def results_by_method(value: str) -> dict[str, list[str]]:
    """Every result of each method in a field's value, in the field's order: {"dkim": ["fail", "pass"],
    "spf": ["pass", "none"], ...} (our SPF results: the MAIL FROM identity's first, then HELO's)."""
    found: dict[str, list[str]] = {}
    for info in parse_results(value)[1]:
        found.setdefault(info.method, []).append(info.result)
    return found


def from_domain_of_results(value: str) -> str:
    """The `header.from` domain of a field's DMARC result, lowercase ("" when it has none)."""
    for info in parse_results(value)[1]:
        if info.method == "dmarc":
            return (info.value_of("header.from") or "").lower()
    return ""
