"""The admin page of reports received (docs/decisions/0058): DMARC aggregate reports (RFC 9990) and SMTP TLS
reports (RFC 8460) that other servers sent about our domains, as summaries instead of unread XML and JSON.

Implementation notes
- The reports are read by the delivery stage `mailauth.report_intake` when they arrive; this page lists the
  newest (`/admin/reports`, of one kind with `?kind=dmarc|tlsrpt`) and shows one (`/admin/reports/ID`):
  for DMARC, the sources that sent as the domain with their alignment results; for TLS, the sessions per
  policy and the failures by type. `postoffice reports list|show` prints the same.
- Only administrators: the admin pages' one role check comes first.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from postoffice.store import ReceivedReport

if TYPE_CHECKING:
    from postoffice.web.admin import AdminPages

#: Reports listed at most.
LISTED = 200


@dataclass(frozen=True)
class ShownReport:
    report: ReceivedReport
    summary: dict[str, Any]

    @property
    def period(self) -> str:
        first = time.strftime("%Y-%m-%d", time.gmtime(self.report.begin))
        last = time.strftime("%Y-%m-%d", time.gmtime(max(self.report.begin, self.report.end - 1)))
        return first if first == last else f"{first} – {last}"

    @property
    def good(self) -> int:
        return int(self.summary.get("pass" if self.report.kind == "dmarc" else "ok", 0))

    @property
    def bad(self) -> int:
        return int(self.summary.get("fail" if self.report.kind == "dmarc" else "failed", 0))


def _shown(report: ReceivedReport) -> ShownReport:
    try:
        summary = json.loads(report.summary)
    except ValueError:
        summary = {}
    return ShownReport(report, summary if isinstance(summary, dict) else {})


class AdminReportsPage:
    def __init__(self, admin: AdminPages) -> None:
        self.admin = admin

    def routes(self) -> list[Route]:
        return [
            Route("/admin/reports", self.reports, methods=["GET"]),
            Route("/admin/reports/{report_id:int}", self.report, methods=["GET"]),
        ]

    async def reports(self, request: Request) -> Response:
        session, _account = await self.admin.admin(request)
        kind = request.query_params.get("kind")
        if kind not in (None, "dmarc", "tlsrpt"):
            raise HTTPException(404, "no such kind of report")
        found = await self.admin.web.store.received_reports(kind=kind, limit=LISTED)
        return await self.admin.page(
            request, "admin_reports.html", session, reports=[_shown(r) for r in found], kind=kind, shown=None
        )

    async def report(self, request: Request) -> Response:
        session, _account = await self.admin.admin(request)
        wanted = int(request.path_params["report_id"])
        chosen = await self.admin.web.store.received_report(wanted)
        if chosen is None:
            raise HTTPException(404, "no such report")
        return await self.admin.page(
            request, "admin_reports.html", session, reports=[], kind=None, shown=_shown(chosen)
        )
