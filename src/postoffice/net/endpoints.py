"""What the server tells mail programs about itself: the listeners that run with TLS, at its host name.

One list for every place that advertises the server (docs/decisions/0049, 0051): Thunderbird's autoconfig,
Autodiscover and the Apple profile (`web/autoconfig.py`), and the RFC 6186 SRV records of the DNS page
(`directory/dns_records.py`).

Implementation notes
- An endpoint is an enabled listener of a built protocol that uses TLS, implicit TLS first within each
  protocol (RFC 8314 section 3: clients should prefer it), at `[server] hostname` (the name its certificate
  is for). A listener without TLS is never advertised: a careful client must not send a password in clear.
- The port is the one the listener layer bound when it is known (`net.bound`: a port offset or an ephemeral
  port is what clients get), else the configured one (the command line, which runs no listener).
- Imports no web or protocol code, so the command line and the directory can use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from postoffice.config import Config
    from postoffice.net.service import ServiceContext

#: Listener protocols a mail program is told of, in the order documents list them.
PROTOCOLS = ("imap", "pop3", "submission")


@dataclass(frozen=True)
class Endpoint:
    protocol: str  # "imap" | "pop3" | "submission" (or "http" when asked for)
    host: str
    port: int
    tls: str  # "implicit" | "starttls"


def endpoints(
    config: Config, bound: Mapping[str, tuple[str, int]], protocols: tuple[str, ...] = PROTOCOLS
) -> list[Endpoint]:
    """The TLS listeners of `protocols` that run, implicit TLS first within each protocol; each at its bound
    port (`bound`: listener name -> (address, port), as the listener layer keeps it), else its configured
    one."""
    found: list[Endpoint] = []
    for protocol in protocols:
        mine = [
            lst
            for lst in config.listeners.values()
            if lst.protocol == protocol and lst.enabled and lst.status == "ready" and lst.tls != "none"
        ]
        mine.sort(key=lambda lst: (lst.tls != "implicit", lst.port))
        for lst in mine:
            port = bound[lst.name][1] if lst.name in bound else lst.port
            found.append(Endpoint(protocol, config.server.hostname, int(port), lst.tls))
    return found


def running_endpoints(ctx: ServiceContext, protocols: tuple[str, ...] = PROTOCOLS) -> list[Endpoint]:
    """`endpoints` of the server's configuration at the ports the listener layer bound (`net.bound`)."""
    bound: dict[str, tuple[str, int]] = ctx.shared("net.bound", dict)
    return endpoints(ctx.config, bound, protocols)
