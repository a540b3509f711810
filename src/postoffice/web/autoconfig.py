"""Mail programs that configure themselves: Thunderbird's autoconfig document, Microsoft's Autodiscover (POX)
and an Apple configuration profile, each pointing at the listeners that are running, on HTTP and HTTPS
(docs/decisions/0049).

Implementation notes
- What is advertised: the enabled IMAP, POP3 and submission listeners that use TLS, implicit TLS first (RFC
  8314 section 3: clients should prefer it), each at the port it is bound to now (so a port offset or an
  ephemeral port is what clients get), at the server's host name (`[server] hostname`, the name its
  certificate is for). A listener without TLS is never advertised: a careful client must not send a password
  in clear. The login name is the full address; authentication is the password over TLS (PLAIN/LOGIN). That
  list is `net/endpoints.py`'s, shared with the DNS page's SRV records (docs/decisions/0051).
- Autoconfig (Thunderbird, also K-9/FairEmail/Evolution): `GET /.well-known/autoconfig/mail/config-v1.1.xml`
  and `GET /mail/config-v1.1.xml` (the `autoconfig.DOMAIN` host), format "clientConfig version 1.1" as
  documented at https://wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat. The domain comes
  from `emailaddress=` when given, else from the Host name without `autoconfig.`; a domain this server does
  not serve gets 404, and no answer says whether an account exists.
- Autodiscover: `POST /autodiscover/autodiscover.xml` (any case), the Outlook 2006 request schema; the
  answer is the 2006a "outlook" response with IMAP, POP3 and SMTP protocol blocks. Requests are at most
  64 KiB, and a document with a DTD is refused before parsing (no entity expansion).
- Apple: a `.mobileconfig` property list (`plistlib`) with one com.apple.mail.managed payload, offered on the
  account's settings page; no password in it (the device asks). Its UUIDs derive from the address and host
  name, so installing it again replaces the profile instead of adding a second account.
"""

from __future__ import annotations

import plistlib
import uuid
import xml.etree.ElementTree as ET

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from postoffice.net.endpoints import Endpoint
from postoffice.net.endpoints import running_endpoints as running_endpoints  # app.py's name for it
from postoffice.net.service import ServiceContext

#: The largest Autodiscover request read.
MAX_REQUEST = 64 * 1024

OUTLOOK_REQUEST = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
OUTLOOK_RESPONSE = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
AUTODISCOVER_RESPONSE = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"


class BadRequest(ValueError):
    """An Autodiscover request that cannot be answered."""


def _document(root: ET.Element) -> bytes:
    return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))


def _text(parent: ET.Element, tag: str, value: str) -> ET.Element:
    child = ET.SubElement(parent, tag)
    child.text = value
    return child


def thunderbird(domain: str, points: list[Endpoint]) -> bytes:
    """The clientConfig 1.1 document for `domain`."""
    root = ET.Element("clientConfig", version="1.1")
    provider = ET.SubElement(root, "emailProvider", id=domain)
    _text(provider, "domain", domain)
    _text(provider, "displayName", f"{domain} mail")
    _text(provider, "displayShortName", domain)
    for point in points:
        if point.protocol == "submission":
            server = ET.SubElement(provider, "outgoingServer", type="smtp")
        else:
            server = ET.SubElement(provider, "incomingServer", type=point.protocol)
        _text(server, "hostname", point.host)
        _text(server, "port", str(point.port))
        _text(server, "socketType", "SSL" if point.tls == "implicit" else "STARTTLS")
        _text(server, "authentication", "password-cleartext")
        _text(server, "username", "%EMAILADDRESS%")
    return _document(root)


def autodiscover_address(body: bytes) -> str:
    """The EMailAddress of an Outlook Autodiscover request (BadRequest for anything else)."""
    if len(body) > MAX_REQUEST:
        raise BadRequest("request too large")
    if b"<!" in body:  # a DTD or entity declaration: refused unparsed (no expansion, no external entities)
        raise BadRequest("document type declarations are not accepted")
    try:
        root = ET.fromstring(body)  # noqa: S314 - no DTD can be in it (above), so nothing expands
    except ET.ParseError as exc:
        raise BadRequest("not XML") from exc
    address = root.findtext(f"{{{OUTLOOK_REQUEST}}}Request/{{{OUTLOOK_REQUEST}}}EMailAddress")
    schema = root.findtext(f"{{{OUTLOOK_REQUEST}}}Request/{{{OUTLOOK_REQUEST}}}AcceptableResponseSchema")
    if schema is not None and schema.strip() != OUTLOOK_RESPONSE:
        raise BadRequest("only the outlook response schema (2006a) is served")
    if not address or "@" not in address or len(address) > 320:
        raise BadRequest("no EMailAddress")
    return address.strip()


def autodiscover(address: str, points: list[Endpoint]) -> bytes:
    """The Outlook 2006a answer for `address`."""
    root = ET.Element("Autodiscover", xmlns=AUTODISCOVER_RESPONSE)
    response = ET.SubElement(root, "Response", xmlns=OUTLOOK_RESPONSE)
    account = ET.SubElement(response, "Account")
    _text(account, "AccountType", "email")
    _text(account, "Action", "settings")
    for point in points:
        protocol = ET.SubElement(account, "Protocol")
        _text(protocol, "Type", {"imap": "IMAP", "pop3": "POP3", "submission": "SMTP"}[point.protocol])
        _text(protocol, "Server", point.host)
        _text(protocol, "Port", str(point.port))
        _text(protocol, "DomainRequired", "off")
        _text(protocol, "LoginName", address)
        _text(protocol, "SPA", "off")
        _text(protocol, "SSL", "on")  # older clients read only this; Encryption says which TLS, and wins
        _text(protocol, "Encryption", "SSL" if point.tls == "implicit" else "TLS")
        _text(protocol, "AuthRequired", "on")
        if point.protocol == "submission":
            _text(protocol, "UsePOPAuth", "off")
            _text(protocol, "SMTPLast", "off")
    return _document(root)


def autodiscover_error(code: int, message: str) -> bytes:
    root = ET.Element("Autodiscover", xmlns=AUTODISCOVER_RESPONSE)
    response = ET.SubElement(root, "Response")
    error = ET.SubElement(response, "Error")
    _text(error, "ErrorCode", str(code))
    _text(error, "Message", message)
    return _document(root)


def mobileconfig(address: str, display_name: str, points: list[Endpoint]) -> bytes:
    """An Apple configuration profile with one mail account (IMAP, else POP3; and SMTP submission)."""
    incoming = next((p for p in points if p.protocol == "imap"), None) or next(
        (p for p in points if p.protocol == "pop3"), None
    )
    outgoing = next((p for p in points if p.protocol == "submission"), None)
    if incoming is None or outgoing is None:
        raise LookupError("no TLS listener for incoming or outgoing mail")
    host = incoming.host
    base = uuid.uuid5(uuid.NAMESPACE_DNS, f"{address}.{host}.postoffice")
    account_uuid = uuid.uuid5(base, "mail")
    payload = {
        "PayloadType": "com.apple.mail.managed",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"postoffice.{host}.mail.{account_uuid}",
        "PayloadUUID": str(account_uuid).upper(),
        "PayloadDisplayName": address,
        "EmailAccountDescription": address,
        "EmailAccountName": display_name or address,
        "EmailAccountType": "EmailTypeIMAP" if incoming.protocol == "imap" else "EmailTypePOP",
        "EmailAddress": address,
        "IncomingMailServerAuthentication": "EmailAuthPassword",
        "IncomingMailServerHostName": incoming.host,
        "IncomingMailServerPortNumber": incoming.port,
        "IncomingMailServerUseSSL": True,
        "IncomingMailServerUsername": address,
        "OutgoingMailServerAuthentication": "EmailAuthPassword",
        "OutgoingMailServerHostName": outgoing.host,
        "OutgoingMailServerPortNumber": outgoing.port,
        "OutgoingMailServerUseSSL": True,
        "OutgoingMailServerUsername": address,
        "OutgoingPasswordSameAsIncomingPassword": True,
        "PreventMove": False,
        "PreventAppSheet": False,
        "SMIMEEnabled": False,
    }
    profile = {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"postoffice.{host}.{base}",
        "PayloadUUID": str(base).upper(),
        "PayloadDisplayName": f"{address} ({host})",
        "PayloadDescription": f"Mail account {address} on {host}",
        "PayloadRemovalDisallowed": False,
        "PayloadContent": [payload],
    }
    return plistlib.dumps(profile, fmt=plistlib.FMT_XML)


# -- the routes (on HTTPS with the webmail, and on HTTP without a redirect) ------------------------------


#: Where Thunderbird looks (the second on the autoconfig.DOMAIN host).
THUNDERBIRD_PATHS = ("/.well-known/autoconfig/mail/config-v1.1.xml", "/mail/config-v1.1.xml")
#: Where Outlook and phones post their Autodiscover request (matched in any case).
AUTODISCOVER_PATH = "/autodiscover/autodiscover.xml"


def is_setup_request(scope: Scope) -> bool:
    """Whether a request is for autoconfig or Autodiscover (both web listeners answer these themselves)."""
    method, path = str(scope.get("method", "")), str(scope.get("path", ""))
    if method in ("GET", "HEAD"):
        return path in THUNDERBIRD_PATHS
    return method == "POST" and path.lower() == AUTODISCOVER_PATH


def setup_app(ctx: ServiceContext) -> ASGIApp:
    """Autoconfig and Autodiscover, for requests `is_setup_request` picked."""

    async def served(domain: str) -> bool:
        name = domain.strip().rstrip(".").lower()
        return bool(name and any(d.name == name for d in await ctx.store.list_domains()))

    async def thunderbird_route(request: Request) -> Response:
        address = request.query_params.get("emailaddress", "")
        if "@" in address:
            domain = address.rsplit("@", 1)[1]
        else:
            domain = (request.url.hostname or "").lower().removeprefix("autoconfig.")
        if not await served(domain):
            return PlainTextResponse("no such mail domain here\n", status_code=404)
        return Response(
            thunderbird(domain.strip().rstrip(".").lower(), running_endpoints(ctx)),
            media_type="application/xml",
            headers={"cache-control": "no-cache"},
        )

    async def autodiscover_route(request: Request) -> Response:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_REQUEST:
                break
        try:
            address = autodiscover_address(body)
            if not await served(address.rsplit("@", 1)[1]):
                raise BadRequest("no such mail domain here")
        except BadRequest as exc:
            return Response(autodiscover_error(600, str(exc)), media_type="application/xml")
        return Response(autodiscover(address, running_endpoints(ctx)), media_type="application/xml")

    routes = [Route(path, thunderbird_route, methods=["GET"]) for path in THUNDERBIRD_PATHS]
    routes.append(Route(AUTODISCOVER_PATH, autodiscover_route, methods=["POST"]))
    inner = Starlette(routes=routes)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") == "POST":
            scope = dict(scope, path=AUTODISCOVER_PATH)  # any case
        await inner(scope, receive, send)

    return app
