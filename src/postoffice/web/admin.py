"""The admin pages (issue 12): server status, domains, accounts, aliases, the outbound queue; DNS records
in admin_dns.py.

Implementation notes
- Only accounts with the admin role: every /admin URL answers 403 to any other signed-in account (and sends a
  visitor without a session to the login first). The check is one function that every handler calls first.
- The operations are `postoffice.directory.operations`, the same functions the command line calls; each logs
  what it did and who asked (`by=web:ADDRESS`). State changes are POSTs with the session's CSRF token.
- A generated password is shown once, in the answer to the POST that made it (never in a URL, a redirect or
  the log).
- Deleting an account with its mail asks for its address typed again.
"""

from __future__ import annotations

import collections
import datetime
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from cryptography import x509
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from postoffice import __version__
from postoffice.directory import operations
from postoffice.directory.address import AddressError
from postoffice.store import Account, AlreadyExists, NotFound, StoreError, WebSession
from postoffice.web import mailview
from postoffice.web.admin_dns import AdminDnsPage
from postoffice.web.admin_reports import AdminReportsPage

if TYPE_CHECKING:
    from postoffice.web.app import WebApp

log = logging.getLogger("postoffice.web")


def _(text: str) -> str:
    """Marks a message for the catalog; the template translates it when it shows it."""
    return text


#: Warnings and errors of the server's log shown on the status page.
RECENT_PROBLEMS = 30


class RecentProblems(logging.Handler):
    """The last RECENT_PROBLEMS warnings and errors logged by the server, for the status page."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: collections.deque[tuple[float, str, str]] = collections.deque(maxlen=RECENT_PROBLEMS)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.records.append((record.created, record.levelname, record.getMessage()[:500]))
        except Exception:  # a bad format string in someone's log call: never break the logging
            self.handleError(record)


class AdminPages:
    def __init__(self, web: WebApp) -> None:
        self.web = web
        self.started = time.time()
        self.problems = RecentProblems()
        logging.getLogger("postoffice").addHandler(self.problems)

    def routes(self) -> list[Route]:
        return [
            Route("/admin", self.status, methods=["GET"]),
            Route("/admin/domains", self.domains, methods=["GET", "POST"]),
            Route("/admin/accounts", self.accounts, methods=["GET", "POST"]),
            Route("/admin/aliases", self.aliases, methods=["GET", "POST"]),
            Route("/admin/queue", self.queue, methods=["GET", "POST"]),
            Route("/admin/queue/{queue_id:int}", self.queued, methods=["GET"]),
            *AdminDnsPage(self).routes(),
            *AdminReportsPage(self).routes(),
        ]

    async def admin(self, request: Request) -> tuple[WebSession, Account]:
        """The signed-in admin, or 403 (a visitor without a session goes to the login first)."""
        session = await self.web.require(request)
        account = await self.web.account(session)
        if not account.admin:
            raise HTTPException(403, "for administrators only")
        return session, account

    async def page(
        self, request: Request, template: str, session: WebSession, status: int = 200, **values: Any
    ) -> Response:
        return self.web.render(
            request,
            template,
            status=status,
            session=session,
            folders=await mailview.folders(self.web.store, session.account_id),
            admin_tab=template.removeprefix("admin_").removesuffix(".html"),
            **values,
        )

    async def changed(self, request: Request, session: WebSession) -> dict[str, str]:
        form = await self.web.form(request)
        await self.web.check_csrf(request, session, form)
        return {key: form.get(key) for key, _value in form.pairs}

    # -- status ----------------------------------------------------------------------------------------

    async def status(self, request: Request) -> Response:
        session, _ = await self.admin(request)
        ctx = self.web.ctx
        bound: dict[str, tuple[str, int]] = ctx.shared("net.bound", dict)
        listeners = [
            (
                lst.name,
                lst.protocol,
                bound.get(lst.name, (lst.address, lst.port))[1],
                lst.tls,
                lst.name in bound,
            )
            for lst in ctx.config.listeners.values()
            if lst.enabled
        ]
        accounts = await ctx.store.list_accounts()
        messages = 0
        for account in accounts:
            messages += sum(m.messages for m in await ctx.store.list_mailboxes(account.id))
        store_path = ctx.config.store.path
        store_size = sum(
            os.stat(p).st_size
            for p in (store_path, store_path.with_name(store_path.name + "-wal"))
            if p.exists()
        )
        return await self.page(
            request,
            "admin_status.html",
            session,
            version=__version__,
            uptime=time.time() - self.started,
            listeners=listeners,
            certificate=_certificate(ctx.config.tls.certificate),
            accounts=len(accounts),
            domains=len(await ctx.store.list_domains()),
            messages=messages,
            store_size=store_size,
            queue=await ctx.store.queue_stats(),
            problems=list(reversed(self.problems.records)),
        )

    # -- domains ---------------------------------------------------------------------------------------

    async def domains(self, request: Request) -> Response:
        session, admin = await self.admin(request)
        store = self.web.store
        error = ""
        if request.method == "POST":
            form = await self.changed(request, session)
            name, by = form.get("name", "").strip(), f"web:{admin.address}"
            try:
                if form.get("action") == "add":
                    await operations.add_domain(store, name, by=by)
                elif form.get("action") == "remove":
                    await operations.remove_domain(store, name, by=by)
                elif form.get("action") in ("plus-on", "plus-off"):
                    on = form.get("action") == "plus-on"
                    await operations.set_plus_addressing(store, name, on, by=by)
                return RedirectResponse("/admin/domains", 303)
            except AddressError:
                error = _("That is not a domain name.")
            except AlreadyExists:
                error = _("That domain is served already.")
            except NotFound:
                error = _("There is no such domain.")
            except StoreError:
                error = _("A domain with accounts or aliases cannot be removed.")
        accounts = collections.Counter(a.domain for a in await store.list_accounts())
        aliases = collections.Counter(a.source.rsplit("@", 1)[1] for a in await store.list_aliases())
        rows = [(d, accounts[d.name], aliases[d.name]) for d in await store.list_domains()]
        return await self.page(
            request, "admin_domains.html", session, status=400 if error else 200, rows=rows, error=error
        )

    # -- accounts --------------------------------------------------------------------------------------

    async def accounts(self, request: Request) -> Response:
        session, admin = await self.admin(request)
        store = self.web.store
        error, generated = "", None
        if request.method == "POST":
            form = await self.changed(request, session)
            address, action, by = (
                form.get("address", "").strip(),
                form.get("action", ""),
                f"web:{admin.address}",
            )
            try:
                if action == "add":
                    chosen = form.get("password", "") or None
                    if chosen is not None:
                        operations.check_chosen_password(chosen, address)
                    account, made = await operations.add_account(
                        store, address, chosen, admin=form.get("admin") == "1", by=by
                    )
                    generated = (account.address, made) if made else None
                elif action == "reset":
                    generated = (address, await operations.reset_password(store, address, by=by))
                elif action in ("disable", "enable"):
                    if address == admin.address and action == "disable":
                        raise operations.LastAdmin("not your own account")
                    await operations.set_disabled(store, address, action == "disable", by=by)
                elif action in ("grant", "revoke"):
                    await operations.set_admin(store, address, action == "grant", by=by)
                elif action == "limits":
                    try:
                        quota = operations.parse_size(form.get("quota", "") or "0")
                        send_limit = operations.parse_send_limit(form.get("send_limit", ""))
                    except ValueError:
                        error = _(
                            "Quota: a size such as 500M or 2G (0: none); sending limit: messages per hour."
                        )
                    else:
                        await operations.set_limits(store, address, quota=quota, send_limit=send_limit, by=by)
                elif action == "delete":
                    if form.get("confirm", "").strip().lower() != address.lower():
                        error = _("Type the address again to delete the account with all its mail.")
                    elif address == admin.address:
                        raise operations.LastAdmin("not your own account")
                    else:
                        await operations.remove_account(store, address, by=by)
                if not error and generated is None:
                    return RedirectResponse("/admin/accounts", 303)
            except AddressError:
                error = _("That is not an address.")
            except operations.PasswordRejected:
                error = _("Choose a password of at least %(n)d characters that is not your address.")
            except AlreadyExists:
                error = _("That account exists already.")
            except NotFound:
                error = _("There is no such account or domain.")
            except operations.LastAdmin:
                error = _("That would leave no administrator, or it is your own account.")
        used = await store.storage_used()
        rows = [
            (account, used.get(account.id, 0), operations.size_text(account.quota))
            for account in await store.list_accounts()
        ]
        return await self.page(
            request,
            "admin_accounts.html",
            session,
            status=400 if error else 200,
            rows=rows,
            error=error,
            generated=generated,
            me=admin.address,
            domains=[d.name for d in await store.list_domains()],
            min_password=operations.MIN_PASSWORD_LENGTH,
            default_send_limit=self.web.ctx.config.submission.max_messages_per_hour,
        )

    # -- aliases ---------------------------------------------------------------------------------------

    async def aliases(self, request: Request) -> Response:
        session, admin = await self.admin(request)
        store = self.web.store
        error = ""
        if request.method == "POST":
            form = await self.changed(request, session)
            source, by = form.get("source", "").strip(), f"web:{admin.address}"
            try:
                if form.get("action") == "add":
                    targets = [t for t in form.get("targets", "").replace(",", " ").split() if t]
                    await operations.add_alias(store, source, targets, by=by)
                elif form.get("action") == "remove":
                    await operations.remove_alias(store, source, by=by)
                return RedirectResponse("/admin/aliases", 303)
            except AddressError:
                error = _("An alias is an address or @domain, its targets addresses.")
            except AlreadyExists:
                error = _("That alias exists already, or is an account.")
            except NotFound:
                error = _("There is no such alias or domain.")
            except StoreError:
                error = _("An alias needs at least one target, and the targets of its domain must exist.")
        return await self.page(
            request,
            "admin_aliases.html",
            session,
            status=400 if error else 200,
            rows=await store.list_aliases(),
            error=error,
        )

    # -- the outbound queue -----------------------------------------------------------------------------

    async def queue(self, request: Request) -> Response:
        session, admin = await self.admin(request)
        store = self.web.store
        if request.method == "POST":
            form = await self.changed(request, session)
            by, raw = f"web:{admin.address}", form.get("id", "")
            if form.get("action") == "retry":
                await operations.retry_queued(store, int(raw) if raw.isdigit() else None, by=by)
            elif form.get("action") == "delete" and raw.isdigit():
                await operations.delete_queued(store, int(raw), by=by)
            return RedirectResponse("/admin/queue", 303)
        return await self.page(
            request,
            "admin_queue.html",
            session,
            messages=await store.queue_list(),
            stats=await store.queue_stats(),
        )

    async def queued(self, request: Request) -> Response:
        session, _ = await self.admin(request)
        message = await self.web.store.queue_get(int(request.path_params["queue_id"]))
        if message is None:
            raise HTTPException(404, "no such queued message")
        return await self.page(request, "admin_queued.html", session, message=message)


def _certificate(path: os.PathLike[str] | str) -> dict[str, Any] | None:
    """Subject, names and expiry of the certificate file in use (None if it cannot be read)."""
    try:
        with open(path, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
    except (OSError, ValueError):
        return None
    try:
        names = cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    expires = cert.not_valid_after_utc
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "names": names,
        "expires": expires.timestamp(),
        "days_left": (expires - datetime.datetime.now(datetime.UTC)).days,
        "self_signed": cert.issuer == cert.subject,
    }
