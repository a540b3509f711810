"""The protocols this server can listen for: one registration line each (docs/decisions/0032).

Adding a listener (ManageSieve, metrics, the web) is its own package with a `service.py` declaring a
`postoffice.net.service.Service` (and a `settings.py` for its section, if it has settings), plus one line in
`SERVICES` below. From that line the config accepts `protocol = "..."` and the service's section, its standard
listeners appear in `postoffice ports`, in the file `postoffice init` writes and in docs/configuration.md, and
the server binds them with the TLS, connection caps, deadlines and privilege drop every listener gets.

The order is the order of `postoffice ports`, of the default file and of the documentation.
"""

from __future__ import annotations

from typing import Any

from postoffice.imap.service import IMAP
from postoffice.managesieve.service import MANAGESIEVE
from postoffice.net.service import Service
from postoffice.pop2.service import POP2
from postoffice.pop3.service import POP3
from postoffice.smtp.service import SMTP, SUBMISSION
from postoffice.web.service import HTTP

#: Every registered protocol by name (tests may register more; readers look it up when they run).
SERVICES: dict[str, Service[Any]] = {
    service.name: service for service in (SMTP, SUBMISSION, POP3, IMAP, POP2, MANAGESIEVE, HTTP)
}
