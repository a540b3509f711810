"""iprev (RFC 8601 section 3): does the client's address have a name whose forward lookup gives the address
back ("forward-confirmed reverse DNS", RFC 8601 section 2.7.3)?

Implementation notes
- PTR of the address, then A (IPv4) or AAAA (IPv6) of each name it gives, at most MAX_NAMES names (a PTR
  set can be large; RFC 8601 leaves the bound to the implementation). `pass` when one of them gives the
  address back, with that name; `fail` when there is no PTR record or none confirms; `temperror` when DNS
  failed and nothing confirmed; `permerror` for an address that is not one.
- iprev is recorded, not enforced: many legitimate small senders have no matching reverse DNS, and the
  spam filter (issue 15) weighs it.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass

import dns.reversename

from postoffice.net.dns import DnsResolver, DnsTemporaryFailure, NoSuchDomain

#: Names of a PTR set checked at most.
MAX_NAMES = 10


@dataclass(frozen=True)
class IprevResult:
    result: str  # pass | fail | temperror | permerror
    ip: str  # the client's address (policy.iprev)
    name: str  # the confirmed name ("" unless pass)
    reason: str  # for the log and the A-R comment


async def check_iprev(resolver: DnsResolver, ip: str) -> IprevResult:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return IprevResult("permerror", ip, "", "not an IP address")
    try:
        answer = await resolver.query(dns.reversename.from_address(str(address)), "PTR")
    except NoSuchDomain:
        return IprevResult("fail", ip, "", "no PTR record")
    except DnsTemporaryFailure as exc:
        return IprevResult("temperror", ip, "", exc.text)
    if answer is None:
        return IprevResult("fail", ip, "", "no PTR record")
    names = [record.target.to_text(omit_final_dot=True) for record in answer][:MAX_NAMES]
    kind = "A" if address.version == 4 else "AAAA"

    async def confirms(name: str) -> bool | None:
        try:
            found = await resolver.query(name, kind)
        except NoSuchDomain:
            return False
        except DnsTemporaryFailure:
            return None
        return found is not None and any(ipaddress.ip_address(r.address) == address for r in found)

    outcomes = await asyncio.gather(*(confirms(name) for name in names))
    for name, confirmed in zip(names, outcomes, strict=True):
        if confirmed:
            return IprevResult("pass", ip, name, "")
    if any(confirmed is None for confirmed in outcomes):
        return IprevResult("temperror", ip, "", "a forward lookup failed")
    return IprevResult(
        "fail", ip, "", f"no name of the PTR record ({', '.join(names)}) gives the address back"
    )
