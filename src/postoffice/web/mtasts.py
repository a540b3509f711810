"""Our MTA-STS policy (RFC 8461 section 3.2): `GET https://mta-sts.DOMAIN/.well-known/mta-sts.txt` for each
domain this server serves.

Implementation notes
- The policy is `[mta_sts]` rendered by `mailauth.mtasts.served_policy` (the same text whose id
  `directory.dns_records` publishes in the `_mta-sts` TXT record, so the two cannot disagree), read from the
  config at each request.
- The domain is the `Host` header's (any case, a port and a final dot ignored) without `mta-sts.`; a host
  that is not `mta-sts.` and one of our domains (the store's list, A-labels as stored), `mode = "off"`, or a
  request that did not come over TLS gets 404. Only the HTTPS listener hooks this in (`app.build_app`):
  port 80 redirects every path to HTTPS as before, so nothing is served without TLS (section 3.3: senders
  fetch over HTTPS only and follow no redirect).
- `text/plain; charset=utf-8` (section 3.2's media type; senders compare the type, not its parameters) and
  a modest `Cache-Control` max-age: senders do not use HTTP caches (section 3.3), a proxy may.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from postoffice.mailauth.mtasts import POLICY_PATH, served_policy
from postoffice.mailauth.mtasts_settings import MtaStsConfig
from postoffice.net.service import ServiceContext

#: Seconds a cache between us and a sender may keep the policy.
CACHE_MAX_AGE = 300
#: The first label of the policy host of each domain.
POLICY_HOST_PREFIX = "mta-sts."


def is_policy_request(scope: Scope) -> bool:
    """Whether a request is for the MTA-STS policy (answered by `policy_app`, whatever the host)."""
    return scope.get("method") in ("GET", "HEAD") and scope.get("path") == POLICY_PATH


def policy_app(ctx: ServiceContext) -> ASGIApp:
    """The policy for requests `is_policy_request` picked (module notes)."""

    async def answer(request: Request) -> Response:
        if request.url.scheme != "https":
            return PlainTextResponse("MTA-STS policies are served over HTTPS only\n", status_code=404)
        text = served_policy(ctx.config.section(MtaStsConfig), ctx.config.server.hostname)
        host = (request.url.hostname or "").lower().rstrip(".")
        domain = host.removeprefix(POLICY_HOST_PREFIX)
        if (
            text is None
            or domain == host
            or not domain
            or not any(d.name == domain for d in await ctx.store.list_domains())
        ):
            return PlainTextResponse("no MTA-STS policy here\n", status_code=404)
        return PlainTextResponse(text, headers={"cache-control": f"max-age={CACHE_MAX_AGE}"})

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        response = await answer(Request(scope, receive))
        await response(scope, receive, send)

    return app


def with_policy(ctx: ServiceContext, app: ASGIApp) -> ASGIApp:
    """`app`, with the MTA-STS policy requests answered first (the HTTPS listener's, `app.build_app`)."""
    policy = policy_app(ctx)

    async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_policy_request(scope):
            await policy(scope, receive, send)
        else:
            await app(scope, receive, send)

    return dispatch
