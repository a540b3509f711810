"""What a protocol tells the listener layer: its `Service`, registered in `postoffice.protocols`.

Implementation notes
- A protocol package declares its `Service` in a small `service.py` that imports nothing heavy: its name
  (`protocol = "..."` in `[listeners.NAME]`), its standard listeners (name, port, TLS mode, on or off by
  default, purpose), its settings section, the factory that builds the connection handler, the reply that
  refuses a connection over the caps, the connection-cap pool it counts in, whether it has a login (and so
  the `[limits] login_timeout` deadline) and which TLS modes it can speak. The factory and the refusal import
  the protocol's code when called, so reading the config never loads a protocol.
- Everything else is the listener layer's, the same for every protocol (docs/decisions/0032): the config
  checks of `[listeners.NAME]` tables, binding before the privilege drop, the one TLS context that SIGHUP
  reloads, the connection caps with pre-login eviction, the login and per-command deadlines, and graceful
  shutdown (`postoffice.server`, `postoffice.net.listener`).
- A service without a factory is "not built yet": its standard listeners are listed (`postoffice ports`) but
  off by default, and one that is enabled is a warning, not an error (docs/decisions/0006).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    import socket

    from postoffice.auth import Authenticator
    from postoffice.config import Config
    from postoffice.net.listener import AppListener, Handler, ListenerSpec, Refuser
    from postoffice.net.tls import TlsContexts
    from postoffice.store import MailStore

S = TypeVar("S")
T = TypeVar("T")

TLS_MODES: tuple[str, ...] = ("none", "starttls", "implicit")


class ConnectionCaps(Protocol):
    """A settings section with the caps of a connection pool (docs/decisions/0028)."""

    @property
    def max_connections(self) -> int: ...

    @property
    def max_connections_per_ip(self) -> int: ...


@dataclass(frozen=True)
class StandardPort:
    """A listener every config has unless it says otherwise (`[listeners.NAME]` overrides single keys)."""

    name: str
    port: int
    tls: str
    #: Whether it is on when the config does not say (never while its protocol is not built).
    enabled: bool = True
    #: Shown by `postoffice ports` and in the default file; the service's purpose when empty.
    purpose: str = ""
    #: Its port in a config written with a port offset (`postoffice init --port-offset`), instead of port +
    #: offset; for ports whose shifted number browsers refuse (10080 is on Chromium's list of unsafe ports).
    offset_port: int | None = None


class ServiceContext:
    """What a factory builds its handler from, besides its own settings: the whole configuration (read-only),
    the store, the one authenticator, and objects shared by the listeners of several services (e.g. the
    maildrop locks of POP3 and POP2), made on first use."""

    def __init__(
        self, config: Config, store: MailStore, authenticator: Authenticator, tls: TlsContexts | None = None
    ) -> None:
        self.config = config
        self.store = store
        self.authenticator = authenticator
        #: the server's TLS contexts (None when no listener uses TLS)
        self.tls = tls
        self._shared: dict[str, Any] = {}

    def shared(self, key: str, make: Callable[[], T]) -> T:
        """The object named `key`, made by `make()` the first time any service asks for it."""
        if key not in self._shared:
            self._shared[key] = make()
        value: T = self._shared[key]
        return value


#: Builds the connection handler of a service from its own settings section and the context.
Factory = Callable[[S, ServiceContext], "Handler"]

#: For a service served by a server of its own (the web): from its settings, the context and the listener,
#: what starts serving the sockets the listener layer bound for it.
AppFactory = Callable[
    [S, ServiceContext, "ListenerSpec"], Callable[["list[socket.socket]"], Awaitable["AppListener"]]
]


@dataclass(frozen=True)
class Service(Generic[S]):
    """A protocol the server can listen for (module notes)."""

    #: The protocol's name in the config (`protocol = "imap"`) and in logs.
    name: str
    #: What it is for, shown by `postoffice ports` for listeners without a purpose of their own.
    purpose: str
    #: Its standard listeners, in the order they are shown and written.
    ports: tuple[StandardPort, ...]
    #: Its own settings section (`postoffice.settings`); the factory receives it. None: nothing to set.
    settings: type[S] | None = None
    #: Builds the connection handler; None while the protocol is not built.
    factory: Factory[S] | None = None
    #: Or: serves its listeners with a server of its own (the web), on sockets the listener layer binds.
    app: AppFactory[S] | None = None
    #: Answers a connection over the caps (its "too busy" greeting) before it is closed.
    refuse: Refuser | None = None
    #: The pool of connection caps it counts in: services with the same pool share the caps.
    pool: str = ""
    #: The section whose `max_connections` and `max_connections_per_ip` are the pool's caps.
    caps: type[ConnectionCaps] | None = None
    #: Clients log in: the `[limits] login_timeout` deadline applies, and a connection that has not logged
    #: in yet may be evicted to make room (port 25 has no login: every session stays pre-login).
    login: bool = True
    #: The TLS modes its listeners may use, and the problem (message, hint) reported for another one.
    tls_modes: tuple[str, ...] = TLS_MODES
    tls_problem: tuple[str, str] = ("", "")
    #: The protocol has no TLS at all, so passwords travel in clear: enabling it on an address other than
    #: loopback needs `[auth] allow_plaintext_auth` (POP2). `label` names it in that problem.
    cleartext: bool = False
    label: str = ""
    #: A note `postoffice ports` prints under the table, and comment lines for the default file.
    note: str = ""
    file_note: tuple[str, ...] = ()

    @property
    def built(self) -> bool:
        return self.factory is not None or self.app is not None
