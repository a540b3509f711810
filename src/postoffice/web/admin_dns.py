"""The admin page of DNS records (issue 12, docs/decisions/0051): per domain, the records to publish and, on
"Check now", what DNS holds for each (right, missing, wrong, or a DNS failure).

Implementation notes
- The records and the check are `postoffice.directory.dns_records`, the functions behind `postoffice dns
  records|check DOMAIN`; this page only shows them. The SRV ports are the ones the listeners are bound to now;
  the DKIM records are those of the domain's keys in the store (docs/decisions/0056).
- The check only reads DNS, so it is a GET (`/admin/dns?domain=D&check=1`), without CSRF; it checks one
  domain at a time, all of its lookups at once with the server's resolver settings.
- Only administrators: the admin pages' one role check comes first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from postoffice.directory import dns_records
from postoffice.directory.address import AddressError
from postoffice.store import NotFound

if TYPE_CHECKING:
    from postoffice.web.admin import AdminPages


@dataclass(frozen=True)
class DomainRecords:
    """What the page shows for one domain: each record with its check (None when not checked)."""

    domain: str
    rows: list[tuple[dns_records.DnsRecord, dns_records.RecordCheck | None]]
    pending: list[dns_records.NotYet]
    checked: bool

    @property
    def all_ok(self) -> bool:
        return self.checked and all(check is not None and check.status == "ok" for _r, check in self.rows)


class AdminDnsPage:
    def __init__(self, admin: AdminPages) -> None:
        self.admin = admin

    def routes(self) -> list[Route]:
        return [Route("/admin/dns", self.dns, methods=["GET"])]

    async def dns(self, request: Request) -> Response:
        session, _account = await self.admin.admin(request)
        web = self.admin.web
        chosen = request.query_params.get("domain")
        if chosen is None:
            shown = [d.name for d in await web.store.list_domains()]
        else:
            try:
                shown = [await dns_records.served_domain(web.store, chosen)]
            except (AddressError, NotFound):
                raise HTTPException(404, "no such domain") from None
        check = chosen is not None and request.query_params.get("check") == "1"
        bound: dict[str, tuple[str, int]] = web.ctx.shared("net.bound", dict)
        sections = []
        for domain in shown:
            keys = await web.store.dkim_keys(domain)
            records = dns_records.expected_records(web.ctx.config, domain, bound, dkim=keys)
            rows: list[tuple[dns_records.DnsRecord, dns_records.RecordCheck | None]]
            if check:
                checks = await dns_records.check_records(records, dns_records.server_resolver(web.ctx.config))
                rows = list(zip(records, checks, strict=True))
            else:
                rows = [(record, None) for record in records]
            sections.append(DomainRecords(domain, rows, dns_records.not_yet(domain), check))
        return await self.admin.page(
            request, "admin_dns.html", session, sections=sections, single=chosen is not None
        )
