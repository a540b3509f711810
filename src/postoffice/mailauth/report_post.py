"""TLS reports delivered over HTTPS (RFC 8460 section 5.4): a POST of the gzip-compressed report to an
`https:` URI of the recipient domain's `_smtp._tls` record.

Implementation notes
- The request: `POST <path>` with `Content-Type: application/tlsrpt+gzip` and the body (section 5.4; section
  6.4 registers the media type), over TLS with the certificate checked against the URI's host (the same
  context as MTA-STS's fetches: `[queue] tls_ca_file` or the system's CAs). HTTP/1.1 by h11; the host's
  addresses through our resolver (`mtasts.host_addresses`).
- Success is any 2xx answer. Redirects are not followed (the RFC does not ask for it, and a report is not
  worth an open redirect), nor are failures retried: the report is one day's statistics, and the other
  `rua` URIs of the record get it too.
- Bounded: the whole exchange by `timeout`; the answer's body is not read beyond its status line and head.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.parse
from collections.abc import Sequence

import h11

from postoffice.mailauth.mtasts import StsFetchError, host_addresses
from postoffice.net.dns import DnsResolver

__all__ = ["ReportPostError", "post_report"]

_READ_SIZE = 16 * 1024


class ReportPostError(Exception):
    """The report could not be posted; the text says why."""


async def post_report(
    uri: str,
    body: bytes,
    *,
    resolver: DnsResolver,
    context: ssl.SSLContext,
    timeout: float = 60.0,  # noqa: ASYNC109 - the whole exchange, DNS included
    ip_versions: Sequence[int] = (4, 6),
) -> int:
    """POST the gzip-compressed report `body` to the `https:` `uri`; the HTTP status (2xx). ReportPostError
    for every failure (DNS, connection, TLS, HTTP, a status that is not 2xx)."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme.lower() != "https" or not parts.hostname:
        raise ReportPostError(f"not an https: URI: {uri!r}")
    host = parts.hostname
    try:
        port = parts.port or 443
    except ValueError:
        raise ReportPostError(f"bad port in {uri!r}") from None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        async with asyncio.timeout(timeout):
            try:
                addresses = await host_addresses(host, resolver, ip_versions)
            except StsFetchError as exc:
                raise ReportPostError(exc.text) from None
            return await _post(host, addresses, port, target, body, context)
    except TimeoutError:
        raise ReportPostError(f"{uri}: no answer within {timeout:g} seconds") from None


async def _post(
    host: str, addresses: list[str], port: int, target: str, body: bytes, context: ssl.SSLContext
) -> int:
    problems: list[str] = []
    for address in addresses:
        try:
            reader, writer = await asyncio.open_connection(address, port, ssl=context, server_hostname=host)
        except (OSError, ssl.SSLError) as exc:
            problems.append(f"{address} port {port}: {exc}")
            continue
        try:
            return await _exchange(reader, writer, host, port, target, body)
        except (OSError, ssl.SSLError, h11.ProtocolError) as exc:
            raise ReportPostError(f"{address} port {port}: {exc}") from None
        finally:
            writer.transport.abort()
    raise ReportPostError("; ".join(problems) or f"{host} has no address")


async def _exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    host: str,
    port: int,
    target: str,
    body: bytes,
) -> int:
    connection = h11.Connection(h11.CLIENT)
    request = h11.Request(
        method="POST",
        target=target,
        headers=[
            ("Host", host if port == 443 else f"{host}:{port}"),
            ("User-Agent", "postoffice"),
            ("Content-Type", "application/tlsrpt+gzip"),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
        ],
    )
    writer.write(
        (connection.send(request) or b"")
        + (connection.send(h11.Data(data=body)) or b"")
        + (connection.send(h11.EndOfMessage()) or b"")
    )
    await writer.drain()
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(_READ_SIZE)
            if not data:
                raise ReportPostError("the connection was closed before an answer")
            connection.receive_data(data)
        elif isinstance(event, h11.Response):
            status = event.status_code
            if not 200 <= status < 300:
                reason = event.reason.decode("latin-1")
                raise ReportPostError(f"HTTP {status}{f' {reason}' if reason else ''}")
            return status
        elif isinstance(event, h11.ConnectionClosed):
            raise ReportPostError("the connection was closed before an answer")
        # an InformationalResponse (1xx, e.g. 100 Continue) is followed by the real one
