"""The `[web]` section: webmail and admin over HTTPS (443) with HTTP (80) redirecting to it.

Declarations only (`postoffice.settings`): imported by `postoffice.config`, so nothing heavy is imported here.
"""

from __future__ import annotations

from dataclasses import dataclass

from postoffice.settings import section, setting


@section("web")
@dataclass(frozen=True)
class WebConfig:
    max_connections: int = setting(
        1000,
        "simultaneous HTTP and HTTPS connections in total",
        doc="Simultaneous HTTP and HTTPS connections in total (open live-update streams count).",
        positive=True,
    )
    max_connections_per_ip: int = setting(
        50,
        "simultaneous connections per client IP (IPv6: per /64)",
        doc="Simultaneous connections from one client address (IPv6: one /64); a browser opens up to six.",
        positive=True,
    )
    session_lifetime: float = setting(
        1209600,
        "seconds a web login lasts at most (14 days)",
        doc="Seconds a web login lasts at most, however active; then the person logs in again.",
        positive=True,
    )
    session_idle_timeout: float = setting(
        86400,
        "seconds without any request after which a web login ends (1 day)",
        doc="Seconds without any request after which a web login ends.",
        positive=True,
    )
    keep_alive_timeout: float = setting(
        20,
        "seconds an idle HTTP keep-alive connection stays open",
        doc="Seconds an idle HTTP/1.1 keep-alive connection stays open between requests.",
        positive=True,
    )
    request_timeout: float = setting(
        30,
        "seconds a client has to send a request's line and header fields",
        doc=(
            "Seconds a client has, from connecting or from the end of its previous response, to send a "
            "request's line and header fields; then the connection is closed (no slow-header attacks)."
        ),
        positive=True,
    )
    max_request_header_size: int = setting(
        65536,
        "bytes of request line and header fields at most",
        doc="Bytes of the request line and header fields at most; more is refused with 431 / 400.",
        minimum=8192,
    )
    max_form_size: int = setting(
        1048576,
        "bytes of a form body (not an upload) at most",
        doc="Bytes of a form body (login, settings, a message being written) at most; more is refused (413).",
        minimum=65536,
    )
    max_import_size: int = setting(
        1073741824,
        "bytes of an mbox uploaded for import at most (1 GiB)",
        doc=(
            "Bytes of an mbox file uploaded on the settings page for import at most (it is spooled to a "
            "temporary file while it is read); more is refused (413)."
        ),
        minimum=1048576,
    )
