"""The web application (Starlette): login, the mailbox and message pages, rendered on the server.

Implementation notes
- Every response carries the security headers (`SecurityHeaders`): a Content-Security-Policy without inline
  script (`script-src 'self'`), `frame-ancestors 'none'`, HSTS (on HTTPS), `Referrer-Policy: no-referrer`,
  `X-Content-Type-Options: nosniff`; pages are `Cache-Control: no-store`.
- Login goes through the server's one `Authenticator` (protocol "web"), so lockouts and the login guard apply
  to the browser as to IMAP. The form is a plain HTML form that works without script and that password
  managers fill.
- Every state-changing request (POST) passes `check_csrf` (`postoffice.web.sessions` notes). GET never
  changes state, except that opening a message marks it read, as every mail program does.
- Every id in a URL is looked up under the session's account (`postoffice.web.mailview`); another account's
  id is a 404 like a missing one.
- Redirects only ever go to paths of this site (`safe_path`).
- Errors are pages with their status code (or JSON for `Accept: application/json`), never a traceback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
import email.utils
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from email.message import EmailMessage
from importlib import resources
from typing import Any
from urllib.parse import quote, unquote

import jinja2
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from postoffice.delivery.pipeline import shared_pipeline
from postoffice.delivery.submission import shared_policy
from postoffice.directory.operations import (
    MIN_PASSWORD_LENGTH,
    PasswordRejected,
    change_password,
    check_chosen_password,
)
from postoffice.net.service import ServiceContext
from postoffice.store import Account, AlreadyExists, LimitExceeded, NotFound, OverQuota, WebSession
from postoffice.transfer.archive import export_archive, import_mbox
from postoffice.web import autoconfig, compose, mailview, mtasts
from postoffice.web.filter_pages import FilterPages
from postoffice.web.html import (
    FRAME_CSP,
    FRAME_CSP_WITH_IMAGES,
    frame_document,
    has_remote_images,
    text_to_html,
)
from postoffice.web.i18n import LANG_COOKIE, LANGUAGES, Formatter, choose_language, translations
from postoffice.web.query import parse_query
from postoffice.web.security import SecurityPages
from postoffice.web.sessions import (
    LOGIN_COOKIE,
    PENDING_COOKIE,
    SESSION_COOKIE,
    PendingLogins,
    Sessions,
    cookie_header,
    same_token,
)
from postoffice.web.settings import WebConfig

log = logging.getLogger("postoffice.web")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HSTS = "max-age=31536000"
STATIC_MAX_AGE = 3600
#: Characters of a login name or password accepted from the form.
MAX_CREDENTIAL = 1024
#: Fields of a form at most (a selection of messages is one field per message).
MAX_FORM_FIELDS = 1000
#: Files attached to one message at most.
MAX_ATTACHMENTS = 50
#: Seconds between keep-alive comments on a live-update stream.
EVENTS_KEEPALIVE = 25.0


class Form:
    """A submitted form: every value of every field, in order."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs

    def get(self, name: str, default: str = "") -> str:
        for key, value in self.pairs:
            if key == name:
                return value
        return default

    def getlist(self, name: str) -> list[str]:
        return [value for key, value in self.pairs if key == name]


class SecurityHeaders:
    """Adds the security headers (module notes) to every response of `app`."""

    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        self.app = app
        self.https = https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")
        started = time.perf_counter()

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                # the time the server took for the response head (W3C Server Timing), for benchmarks
                took = (time.perf_counter() - started) * 1000
                headers.append((b"server-timing", f"app;dur={took:.2f}".encode()))
                names = {name.lower() for name, _ in headers}
                extra = [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                    (b"cross-origin-opener-policy", b"same-origin"),
                    (b"cross-origin-resource-policy", b"same-origin"),
                    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), interest-cohort=()"),
                ]
                if b"content-security-policy" not in names:
                    extra.append((b"content-security-policy", CSP.encode()))
                if self.https:
                    extra.append((b"strict-transport-security", HSTS.encode()))
                if b"cache-control" not in names:
                    value = f"public, max-age={STATIC_MAX_AGE}" if static else "no-store"
                    extra.append((b"cache-control", value.encode()))
                message["headers"] = headers + [h for h in extra if h[0] not in names]
            await send(message)

        await self.app(scope, receive, with_headers)


def preference_cookie(name: str, value: str) -> str:
    """A cookie for a display preference (language, conversations): readable by the page, kept for a year."""
    return f"{name}={value}; Path=/; Secure; SameSite=Lax; Max-Age=31536000"


def safe_path(target: str | None, default: str = "/") -> str:
    """`target` when it is a path of this site ("/x", not "//host" or "/\\host" or a URL), else `default`."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return default
    if any(ord(c) < 0x20 or c == "\\" for c in target):
        return default
    return target


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


class WebApp:
    """The routes and their state (one per server)."""

    def __init__(self, ctx: ServiceContext, settings: WebConfig) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.settings = settings
        self.sessions = Sessions(ctx.store, settings.session_lifetime, settings.session_idle_timeout)
        self.pending_logins = PendingLogins()
        self.security = SecurityPages(self)
        self.filters = FilterPages(self)
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("postoffice.web", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    # -- helpers ---------------------------------------------------------------------------------------------
    def language(self, request: Request) -> str:
        return choose_language(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language"))

    def render(
        self,
        request: Request,
        template: str,
        status: int = 200,
        headers: dict[str, str] | None = None,
        **values: Any,
    ) -> HTMLResponse:
        language = self.language(request)
        catalog = translations(language)
        special = {
            "\\Drafts": catalog.gettext("Drafts"),
            "\\Sent": catalog.gettext("Sent"),
            "\\Archive": catalog.gettext("Archive"),
            "\\Junk": catalog.gettext("Junk"),
            "\\Trash": catalog.gettext("Trash"),
        }

        def folder_label(folder: mailview.Folder) -> str:
            if folder.name.upper() == "INBOX":
                return catalog.gettext("Inbox")
            if folder.special_use in special and "/" not in folder.name:
                return special[folder.special_use]
            return folder.label

        def mailtext(text: str) -> Markup:
            return text_to_html(text, catalog.gettext("Quoted text"))

        page = self.templates.get_template(template).render(
            mailtext=mailtext,
            _=catalog.gettext,
            folder_label=folder_label,
            ngettext=catalog.ngettext,
            lang=language,
            html_lang="zh-CN" if language == "zh_CN" else "en",
            languages=LANGUAGES,
            fmt=Formatter(language),
            now=time.time(),
            path=request.url.path,
            **values,
        )
        return HTMLResponse(page, status_code=status, headers=headers)

    async def session(self, request: Request) -> WebSession | None:
        return await self.sessions.find(request.cookies.get(SESSION_COOKIE))

    async def require(self, request: Request) -> WebSession:
        session = await self.session(request)
        if session is None:
            raise _LoginRequired(request.url.path)
        return session

    def check_origin(self, request: Request) -> None:
        """Refuse a request another site made the browser send: Sec-Fetch-Site when the browser sends it,
        else the Origin header. Under `Referrer-Policy: no-referrer` browsers send `Origin: null` even for
        this site's own forms, so "null" proves nothing either way; the CSRF token still must match."""
        fetch_site = request.headers.get("sec-fetch-site")
        if fetch_site is not None and fetch_site not in ("same-origin", "none"):
            raise HTTPException(403, "cross-site request refused")
        origin = request.headers.get("origin")
        if origin not in (None, "null") and origin != f"{request.url.scheme}://{request.url.netloc}":
            raise HTTPException(403, "cross-site request refused")

    async def form(self, request: Request) -> Form:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.settings.max_form_size):
            raise HTTPException(413, "request too large")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.settings.max_form_size:
                raise HTTPException(413, "request too large")
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            raise HTTPException(415, "a form is expected")
        from urllib.parse import parse_qsl

        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
        except (UnicodeDecodeError, ValueError) as exc:
            raise HTTPException(400, "malformed form") from exc
        return Form(pairs)

    async def check_csrf(self, request: Request, session: WebSession, form: Form) -> None:
        self.check_origin(request)
        if not same_token(form.get("csrf") or request.headers.get("x-csrf-token"), session.csrf):
            raise HTTPException(403, "the form has expired; reload the page and try again")

    # -- routes ----------------------------------------------------------------------------------------------
    async def home(self, request: Request) -> Response:
        session = await self.session(request)
        if session is None:
            return RedirectResponse("/login", 303)
        return RedirectResponse(await self.inbox_path(session.account_id), 303)

    async def inbox_path(self, account_id: int) -> str:
        """Where a logged-in person starts: their Inbox's page."""
        folder = mailview.inbox(await mailview.folders(self.store, account_id))
        return f"/box/{folder.id}"

    async def login_page(
        self, request: Request, *, error: str = "", status: int = 200, name: str = ""
    ) -> Response:
        if request.method == "GET" and await self.session(request) is not None:
            return RedirectResponse(safe_path(request.query_params.get("next")), 303)
        import secrets

        token = secrets.token_urlsafe(24)
        response = self.render(
            request,
            "login.html",
            status=status,
            login_token=token,
            error=error,
            name=name,
            next=safe_path(request.query_params.get("next"), ""),
        )
        response.headers.append("set-cookie", cookie_header(LOGIN_COOKIE, token))
        return response

    async def login(self, request: Request) -> Response:
        self.check_origin(request)
        form = await self.form(request)
        catalog = translations(self.language(request))
        expected = request.cookies.get(LOGIN_COOKIE)
        if not expected or not same_token(form.get("login_token"), expected):
            return await self.login_page(
                request, error=catalog.gettext("The form had expired. Please try again."), status=403
            )
        name = form.get("username", "")[:MAX_CREDENTIAL]
        password = form.get("password", "")[:MAX_CREDENTIAL]
        result = await self.ctx.authenticator.login(
            protocol="web",
            client_ip=_client_ip(request),
            username=name,
            password=password,
            mechanism="form",
            tls=request.url.scheme == "https",
        )
        if result.status == "second-factor" and result.account is not None:
            token = self.pending_logins.start(result.account.id, safe_path(form.get("next"), ""))
            response = await self.code_page(request)
            response.headers.append("set-cookie", cookie_header(PENDING_COOKIE, token))
            return response
        if not result.ok or result.account is None:
            return await self.login_page(
                request, error=login_error(catalog, result.status), status=401, name=name
            )
        return await self.signed_in(request, result.account.id, safe_path(form.get("next"), ""))

    async def signed_in(self, request: Request, account_id: int, next_path: str) -> Response:
        """A new session after a complete login, and on to where the person was going."""
        login = await self.sessions.create(
            account_id, _client_ip(request), request.headers.get("user-agent", "")
        )
        # Straight to the Inbox rather than to "/", whose own redirect would cost the browser another round
        # trip before the first page (bench/web_login_timing.py).
        target = next_path or await self.inbox_path(account_id)
        response = RedirectResponse(target, 303)
        response.headers.append("set-cookie", cookie_header(SESSION_COOKIE, login.token))
        response.headers.append("set-cookie", cookie_header(LOGIN_COOKIE, "", max_age=0))
        response.headers.append("set-cookie", cookie_header(PENDING_COOKIE, "", max_age=0))
        return response

    async def code_page(self, request: Request, *, error: str = "", status: int = 200) -> Response:
        """The login's second step: a code from the authenticator app, or a recovery code."""
        import secrets

        token = secrets.token_urlsafe(24)
        response = self.render(request, "login_code.html", status=status, login_token=token, error=error)
        response.headers.append("set-cookie", cookie_header(LOGIN_COOKIE, token))
        return response

    async def login_code(self, request: Request) -> Response:
        self.check_origin(request)
        form = await self.form(request)
        catalog = translations(self.language(request))
        expected = request.cookies.get(LOGIN_COOKIE)
        pending_token = request.cookies.get(PENDING_COOKIE)
        pending = self.pending_logins.find(pending_token)
        if pending is None or pending_token is None:
            return await self.login_page(
                request, error=catalog.gettext("The form had expired. Please try again."), status=403
            )
        if not expected or not same_token(form.get("login_token"), expected):
            return await self.code_page(
                request, error=catalog.gettext("The form had expired. Please try again."), status=403
            )
        account = await self.store.get_account_by_id(pending.account_id)
        if account is None:
            self.pending_logins.end(pending_token)
            return await self.login_page(request, error=login_error(catalog, "bad-credentials"), status=401)
        if not self.pending_logins.attempt(pending_token):  # counted before the check: no parallel guesses
            return await self.login_page(request, error=login_error(catalog, "bad-credentials"), status=401)
        result = await self.ctx.authenticator.second_factor(
            account=account, client_ip=_client_ip(request), code=form.get("code", "")[:MAX_CREDENTIAL]
        )
        if result.ok and result.account is not None:
            self.pending_logins.end(pending_token)
            return await self.signed_in(request, result.account.id, pending.next)
        if result.status == "bad-credentials" and self.pending_logins.find(pending_token) is not None:
            return await self.code_page(
                request, error=catalog.gettext("That code is not right. Please try again."), status=401
            )
        self.pending_logins.end(pending_token)
        return await self.login_page(request, error=login_error(catalog, result.status), status=401)

    async def logout(self, request: Request) -> Response:
        form = await self.form(request)
        session = await self.session(request)
        if session is not None:
            await self.check_csrf(request, session, form)
            await self.sessions.end(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/login", 303)
        response.headers.append("set-cookie", cookie_header(SESSION_COOKIE, "", max_age=0))
        return response

    async def trust_images(self, request: Request) -> Response:
        """Always show the remote images of mail from one sender (or stop doing so)."""
        session = await self.require(request)
        form = await self.form(request)
        await self.check_csrf(request, session, form)
        sender = form.get("sender").strip().lower()[:320]
        if "@" not in sender or any(c.isspace() or ord(c) < 32 for c in sender):
            raise HTTPException(400, "no sender")
        value = None if form.get("trust") == "0" else "1"
        await self.store.set_account_setting(session.account_id, f"images:{sender}", value)
        return RedirectResponse(safe_path(form.get("back"), "/"), 303)

    # -- account settings (issue 12) ----------------------------------------------------------------------

    async def settings_page(
        self,
        request: Request,
        *,
        error: str = "",
        status: int = 200,
        session: WebSession | None = None,
        new_app_password: tuple[str, str] | None = None,
    ) -> Response:
        session = session or await self.require(request)
        account = await self.account(session)
        return self.render(
            request,
            "settings.html",
            status=status,
            session=session,
            folders=await mailview.folders(self.store, session.account_id),
            account=account,
            endpoints=autoconfig.running_endpoints(self.ctx),
            web_sessions=await self.store.web_sessions_list(session.account_id, time.time()),
            error=error,
            done=request.query_params.get("done", ""),
            imported=request.query_params.get("imported", ""),
            skipped=request.query_params.get("skipped", ""),
            min_password=MIN_PASSWORD_LENGTH,
            new_app_password=new_app_password,
            headers={"cache-control": "no-store"} if new_app_password else None,
            **await self.security.settings_values(account),
            **await self.filters.settings_values(account),
        )

    async def password_error(self, request: Request, account: Account, password: str, mechanism: str) -> str:
        """ "" when `password` is the account's, through the authenticator (so lockouts apply; a second factor
        asked for means it was right), else what the form says."""
        result = await self.ctx.authenticator.login(
            protocol="web",
            client_ip=_client_ip(request),
            username=account.address,
            password=password[:MAX_CREDENTIAL],
            mechanism=mechanism,
            tls=request.url.scheme == "https",
        )
        if result.ok or result.status == "second-factor":
            return ""
        catalog = translations(self.language(request))
        if result.status == "locked-out":
            return str(catalog.gettext("Too many failed logins. Please wait a while and try again."))
        return str(catalog.gettext("The current password is not right."))

    async def change_password(self, request: Request) -> Response:
        """A new password: the current one first (through the authenticator, so lockouts apply), then the
        new one twice; the account's other web sessions end."""
        session = await self.require(request)
        form = await self.form(request)
        await self.check_csrf(request, session, form)
        account = await self.account(session)
        catalog = translations(self.language(request))
        new = form.get("new", "")[:MAX_CREDENTIAL]
        error = await self.password_error(request, account, form.get("current", ""), "password-change")
        if not error and new != form.get("repeat", ""):
            error = catalog.gettext("The new password and its repetition differ.")
        elif not error:
            try:
                check_chosen_password(new, account.address)
            except PasswordRejected:
                error = catalog.gettext(
                    "Choose a password of at least %(n)d characters that is not your address."
                ) % {"n": MIN_PASSWORD_LENGTH}
        if error:
            return await self.settings_page(request, error=error, status=400, session=session)
        await change_password(
            self.store, account.address, new, by=f"web:{account.address}", keep_web_session=session.id
        )
        return RedirectResponse("/settings?done=password", 303)

    async def end_sessions(self, request: Request) -> Response:
        """Sign out everywhere else: every web session of the account but this one."""
        session = await self.require(request)
        form = await self.form(request)
        await self.check_csrf(request, session, form)
        ended = await self.store.web_sessions_end(session.account_id, keep=session.id)
        log.info("web sessions ended account_id=%d ended=%d by=web", session.account_id, ended)
        return RedirectResponse("/settings?done=sessions", 303)

    async def export_mail(self, request: Request) -> Response:
        """All the account's mail as a ZIP download, streamed (`transfer.archive`): mbox or Maildir."""
        session = await self.require(request)
        account = await self.account(session)
        form = "maildir" if request.query_params.get("format") == "maildir" else "mbox"
        day = time.strftime("%Y-%m-%d")
        log.info("mail export account=%s format=%s by=web", account.address, form)
        return StreamingResponse(
            export_archive(self.store, account.id, form),
            media_type="application/zip",
            headers={
                "content-disposition": f'attachment; filename="mail-{account.address}-{day}-{form}.zip"',
                "cache-control": "no-store",
            },
        )

    async def import_mail(self, request: Request) -> Response:
        """An uploaded mbox appended to one of the account's folders, flags kept (`transfer.archive`)."""
        session = await self.require(request)
        check_length(request, self.settings.max_import_size + 65536, "the file is too large")
        self.check_origin(request)
        try:
            data = await request.form(max_files=1, max_fields=10, max_part_size=65536)
        except Exception as exc:  # python-multipart's errors: a malformed form
            raise HTTPException(400, "malformed form") from exc
        try:
            fields = Form([(k, v) for k, v in data.multi_items() if isinstance(v, str)])
            await self.check_csrf(request, session, fields)
            upload = data.get("mbox")
            if not isinstance(upload, UploadFile):
                raise HTTPException(400, "no file")
            chosen = fields.get("folder")
            try:
                all_folders = await mailview.folders(self.store, session.account_id)
                folder = mailview.find_folder(all_folders, int(chosen) if chosen.isdigit() else -1)
            except mailview.NotFound as exc:
                raise HTTPException(404, "no such folder") from exc
            result = await import_mbox(
                self.store, folder.id, upload.file, self.ctx.config.smtp.max_message_size
            )
        finally:
            await data.close()
        account = await self.account(session)
        log.info(
            "mail import account=%s folder=%s imported=%d skipped=%d by=web",
            account.address,
            folder.name,
            result.imported,
            result.skipped,
        )
        return RedirectResponse(
            f"/settings?done=import&imported={result.imported}&skipped={result.skipped}#transfer", 303
        )

    async def apple_profile(self, request: Request) -> Response:
        """The account as an Apple configuration profile (`web.autoconfig`)."""
        session = await self.require(request)
        account = await self.account(session)
        try:
            data = autoconfig.mobileconfig(
                account.address, account.address, autoconfig.running_endpoints(self.ctx)
            )
        except LookupError as exc:
            raise HTTPException(404, "no TLS listener for mail programs") from exc
        return Response(
            data,
            media_type="application/x-apple-aspen-config",
            headers={"content-disposition": f'attachment; filename="{account.domain}.mobileconfig"'},
        )

    async def set_view(self, request: Request) -> Response:
        """Conversations (the default) or single messages: a cookie, like the language."""
        self.check_origin(request)
        form = await self.form(request)
        response = RedirectResponse(safe_path(form.get("back"), "/"), 303)
        view = "flat" if form.get("view") == "flat" else "threads"
        response.headers.append("set-cookie", preference_cookie("view", view))
        return response

    async def set_language(self, request: Request) -> Response:
        self.check_origin(request)
        form = await self.form(request)
        language = form.get("lang", "")
        response = RedirectResponse(safe_path(form.get("back"), "/"), 303)
        if language in LANGUAGES:
            response.headers.append("set-cookie", preference_cookie(LANG_COOKIE, language))
        return response

    async def mailbox(self, request: Request) -> Response:
        session = await self.require(request)
        params = request.query_params
        try:
            all_folders, folder = await self.folder_of(request, session)
            number = int(params.get("page", "1"))
            before = int(params["before"]) if "before" in params else None
            after = int(params["after"]) if "after" in params and before is None else None
        except (mailview.NotFound, ValueError) as exc:
            raise HTTPException(404, "no such folder") from exc
        threads = request.cookies.get("view") != "flat"
        if threads:
            shown = await mailview.conversation_page(
                self.store, session.account_id, all_folders, folder, before=before, after=after
            )
        else:
            shown = await mailview.page(self.store, folder, number)
        return self.render(
            request,
            "mailbox.html",
            session=session,
            folders=all_folders,
            page=shown,
            threads=threads,
            sent=request.query_params.get("sent") == "1",
        )

    async def message(self, request: Request) -> Response:
        session = await self.require(request)
        try:
            all_folders, folder = await self.folder_of(request, session)
            shown = await mailview.read(
                self.store,
                folder,
                int(request.path_params["uid"]),
                authserv_id=self.ctx.config.server.hostname,
            )
        except mailview.NotFound as exc:
            raise HTTPException(404, "no such message") from exc
        trusted = await self.images_trusted(session, shown.sender_address)
        threads = request.cookies.get("view") != "flat"
        thread = (
            await mailview.conversation(self.store, session.account_id, all_folders, folder, shown.uid)
            if threads
            else []
        )
        if shown.marked_seen:  # the unread count just went down by one
            all_folders = [
                dataclasses.replace(f, unseen=max(0, f.unseen - 1)) if f.id == folder.id else f
                for f in all_folders
            ]
        return self.render(
            request,
            "message.html",
            session=session,
            folders=all_folders,
            folder=folder,
            message=shown,
            remote_images=shown.html is not None and has_remote_images(shown.html),
            thread=thread,
            threads=threads,
            images=request.query_params.get("images") == "1" or trusted,
            trusted=trusted,
        )

    async def search(self, request: Request) -> Response:
        session = await self.require(request)
        all_folders = await mailview.folders(self.store, session.account_id)
        text = request.query_params.get("q", "")[:500]
        scope = request.query_params.get("in", "")
        current: mailview.Folder | None = None
        if scope.isdigit():
            try:
                current = mailview.find_folder(all_folders, int(scope))
            except mailview.NotFound as exc:
                raise HTTPException(404, "no such folder") from exc
        query = parse_query(text)
        everywhere = current is None or query.all_folders
        searched = all_folders if everywhere or current is None else [current]
        raw_page = request.query_params.get("page", "1")
        page = min(int(raw_page), mailview.SEARCH_PAGES) if raw_page.isdigit() and raw_page != "0" else 1
        found, more = (
            await mailview.search(self.store, searched, query, page) if text.strip() else ([], False)
        )
        return self.render(
            request,
            "search.html",
            session=session,
            folders=all_folders,
            query=text,
            scope=current,
            everywhere=everywhere,
            found=found,
            more=more,
            page=page,
            last_page=page >= mailview.SEARCH_PAGES,
        )

    async def folder_of(
        self, request: Request, session: WebSession
    ) -> tuple[list[mailview.Folder], mailview.Folder]:
        """The account's folders and the one the URL names (`mailview.NotFound` when it is not theirs)."""
        all_folders = await mailview.folders(self.store, session.account_id)
        return all_folders, mailview.find_folder(all_folders, int(request.path_params["mailbox_id"]))

    async def images_trusted(self, session: WebSession, sender: str) -> bool:
        """Whether the person chose to see remote images of mail from `sender` always."""
        return bool(sender) and bool(
            await self.store.account_settings(session.account_id, f"images:{sender}")
        )

    async def account(self, session: WebSession) -> Account:
        account = await self.store.get_account_by_id(session.account_id)
        if account is None:
            raise _LoginRequired("/")
        return account

    async def original(
        self, session: WebSession, all_folders: list[mailview.Folder], ref: str
    ) -> tuple[mailview.Folder, int, EmailMessage] | None:
        """The message a reply or forward is about ("<folder id>/<uid>"), or None."""
        box, _, uid = ref.partition("/")
        if not box.isdigit() or not uid.isdigit():
            return None
        try:
            folder = mailview.find_folder(all_folders, int(box))
            raw = await mailview.raw_message(self.store, folder, int(uid))
        except mailview.NotFound:
            return None
        message = email.message_from_bytes(raw, policy=email.policy.default)
        return (folder, int(uid), message) if isinstance(message, EmailMessage) else None

    async def compose_page(self, request: Request) -> Response:
        session = await self.require(request)
        all_folders = await mailview.folders(self.store, session.account_id)
        account = await self.account(session)
        catalog = translations(self.language(request))
        draft = compose.Draft()
        identities = await self.store.list_identities(account.id)
        signature = next((i.signature for i in identities if i.default), "")
        mode, ref = "", ""
        for candidate in ("reply", "forward"):
            if request.query_params.get(candidate):
                mode, ref = candidate, request.query_params[candidate]
        draft_uid = ""
        draft_ref = request.query_params.get("draft", "")
        drafts = mailview.special_folder_or_none(all_folders, "\\Drafts")
        if draft_ref.isdigit() and drafts is not None:
            saved = await self.original(session, all_folders, f"{drafts.id}/{draft_ref}")
            if saved is not None:
                draft = compose.draft_from(saved[2], mailview.text_of(saved[2]))
                draft_uid = draft_ref
                saved_from = email.utils.parseaddr(str(saved[2].get("from", "")))[1].lower()
                draft.identity = next((str(i.id) for i in identities if i.address == saved_from), "")
        found = await self.original(session, all_folders, ref) if ref else None
        if found is not None:
            _folder, _uid, original = found
            subject = str(original.get("subject", ""))
            sender = str(original.get("reply-to") or original.get("from") or "")
            shown = mailview.text_of(original)
            when = str(original.get("date", ""))
            if mode == "reply":
                draft.to = sender
                if request.query_params.get("all"):
                    others = [
                        f"{name} <{address}>" if name else address
                        for name, address in email.utils.getaddresses(
                            [str(v) for v in original.get_all("to", []) + original.get_all("cc", [])]
                        )
                        if address and address.lower() != account.address.lower()
                    ]
                    draft.cc = ", ".join(others)
                draft.subject = compose.reply_subject(subject, "Re:")
                wrote = catalog.gettext("On %(date)s, %(sender)s wrote:")
                attribution = wrote % {"date": when, "sender": sender}
                draft.body = compose.quote_text(shown, attribution)
                message_id = str(original.get("message-id", "")).strip()
                draft.in_reply_to = message_id
                draft.references = " ".join(
                    part for part in (str(original.get("references", "")).strip(), message_id) if part
                )
            elif request.query_params.get("attach") == "1":  # forward as attachment (message/rfc822)
                draft.subject = compose.reply_subject(subject, "Fwd:")
                draft.forward_ref = ref
            else:
                draft.subject = compose.reply_subject(subject, "Fwd:")
                header = catalog.gettext("Forwarded message")
                lines = [f"---------- {header} ----------"]
                lines += [
                    f"{name}: {original.get(name)}"
                    for name in ("From", "Date", "Subject", "To", "Cc")
                    if original.get(name)
                ]
                draft.body = "\n\n" + "\n".join(lines) + "\n\n" + shown
        if not draft_uid and signature.strip():
            # the signature below the person's own text, above what is quoted or forwarded
            draft.body = compose.signature_block(signature) + draft.body
        return self.render(
            request,
            "compose.html",
            identities=identities,
            account_address=account.address,
            session=session,
            folders=all_folders,
            draft=draft,
            mode=mode,
            ref=ref if found is not None else "",
            error="",
            max_size=self.ctx.config.smtp.max_message_size,
            addresses=await mailview.known_addresses(self.store, all_folders, account.address),
            draft_uid=draft_uid,
        )

    async def save_draft(self, request: Request) -> Response:
        """Autosave of the message being written (JSON: the draft's new UID in Drafts)."""
        session = await self.require(request)
        form = await self.form(request)
        await self.check_csrf(request, session, form)
        all_folders = await mailview.folders(self.store, session.account_id)
        drafts = mailview.special_folder_or_none(all_folders, "\\Drafts")
        if drafts is None:
            raise HTTPException(409, "no Drafts folder")
        draft = compose.Draft(
            to=form.get("to")[:10000],
            cc=form.get("cc")[:10000],
            bcc=form.get("bcc")[:10000],
            subject=form.get("subject")[:1000],
            body=form.get("body"),
            in_reply_to=form.get("in_reply_to")[:1000],
            references=form.get("references")[:10000],
            identity=form.get("identity")[:20],
        )
        previous = form.get("draft_uid")
        account = await self.account(session)
        try:
            sender = compose.sender_of(account, await self.store.list_identities(account.id), draft.identity)
        except compose.SendError as exc:
            raise HTTPException(400, "no such identity") from exc
        uid = await compose.save_draft(
            self.store,
            sender,
            draft,
            hostname=self.ctx.config.server.hostname,
            drafts_id=drafts.id,
            replaces=int(previous) if previous.isdigit() else None,
        )
        return JSONResponse({"uid": uid})

    async def send(self, request: Request) -> Response:
        session = await self.require(request)
        limit = self.ctx.config.smtp.max_message_size
        # base64 makes attachments a third larger in the message
        check_length(request, limit * 4 // 3 + 65536, "the message is too large")
        self.check_origin(request)
        try:
            data = await request.form(max_files=MAX_ATTACHMENTS, max_fields=50, max_part_size=limit)
        except Exception as exc:  # python-multipart's errors: a malformed or oversized form
            raise HTTPException(400, "malformed form") from exc
        fields = Form([(k, v) for k, v in data.multi_items() if isinstance(v, str)])
        await self.check_csrf(request, session, fields)
        draft = compose.Draft(
            to=fields.get("to")[:10000],
            cc=fields.get("cc")[:10000],
            bcc=fields.get("bcc")[:10000],
            subject=fields.get("subject")[:1000],
            body=fields.get("body"),
            in_reply_to=fields.get("in_reply_to")[:1000],
            references=fields.get("references")[:10000],
            html=fields.get("html") if fields.get("format") == "html" else "",
            forward_ref=fields.get("forward_ref")[:100],
            identity=fields.get("identity")[:20],
        )
        all_folders = await mailview.folders(self.store, session.account_id)
        if draft.forward_ref:
            original = await self.original(session, all_folders, draft.forward_ref)
            if original is not None:
                draft.forwarded = bytes(original[2].as_bytes(policy=email.policy.SMTP))
        total = 0
        for _key, value in data.multi_items():
            if isinstance(value, UploadFile) and value.filename:
                content = await value.read()
                total += len(content)
                draft.attachments.append((value.filename, value.content_type or "", content))
        catalog = translations(self.language(request))
        account = await self.account(session)
        identities = await self.store.list_identities(account.id)
        error = ""
        if total > limit:
            error = catalog.gettext("The attachments are too large.")
        else:
            sent = mailview.special_folder_or_none(all_folders, "\\Sent")
            try:
                await compose.send(
                    self.store,
                    shared_pipeline(self.ctx),
                    shared_policy(self.ctx),
                    account,
                    draft,
                    sender=compose.sender_of(account, identities, draft.identity),
                    hostname=self.ctx.config.server.hostname,
                    client_ip=_client_ip(request),
                    sent_mailbox_id=None if sent is None else sent.id,
                )
            except compose.SendError as exc:
                error = catalog.gettext("Not sent: %(reason)s") % {"reason": str(exc)}
            else:
                drafts = mailview.special_folder_or_none(all_folders, "\\Drafts")
                if fields.get("draft_uid").isdigit() and drafts is not None:
                    await compose.discard_draft(self.store, drafts.id, int(fields.get("draft_uid")))
                ref = fields.get("ref")
                found = await self.original(session, all_folders, ref) if ref else None
                if found is not None:
                    flag = "\\Answered" if fields.get("mode") == "reply" else "$Forwarded"
                    await self.store.store_flags(found[0].id, [found[1]], [flag], "add")
                inbox_folder = mailview.inbox(all_folders)
                return RedirectResponse(f"/box/{inbox_folder.id}?sent=1", 303)
        draft.attachments = []  # uploads are not kept across a failed send: the person picks them again
        return self.render(
            request,
            "compose.html",
            status=400,
            account_address=account.address,
            session=session,
            folders=all_folders,
            draft=draft,
            mode=fields.get("mode"),
            ref=fields.get("ref"),
            error=error,
            max_size=limit,
            addresses=[],
            identities=identities,
            draft_uid=fields.get("draft_uid"),
        )

    async def folder_action(self, request: Request) -> Response:
        """Create a folder, or rename, delete or empty one (emptying: Trash and Junk only)."""
        session = await self.require(request)
        form = await self.form(request)
        await self.check_csrf(request, session, form)
        all_folders = await mailview.folders(self.store, session.account_id)
        action = form.get("action")
        name = " ".join(form.get("name").split())[:200].strip("/")
        limit = self.ctx.config.imap.max_mailboxes
        try:
            if action == "create":
                if not name or any(ord(c) < 32 for c in name):
                    raise HTTPException(400, "a folder needs a name")
                await self.store.create_mailbox(session.account_id, name, max_mailboxes=limit)
                return RedirectResponse("/", 303)
            folder = mailview.find_folder(all_folders, int(form.get("folder") or "0"))
            if action == "rename" and name and folder.special_use is None and folder.name.upper() != "INBOX":
                await self.store.rename_mailbox(session.account_id, folder.name, name, max_mailboxes=limit)
            elif action == "delete" and folder.special_use is None and folder.name.upper() != "INBOX":
                await self.store.delete_mailbox(session.account_id, folder.name)
            elif action == "empty" and folder.special_use in ("\\Trash", "\\Junk"):
                uids = [m.uid for m in await self.store.list_messages(folder.id)]
                await self.store.expunge(folder.id, uids)
                return RedirectResponse(f"/box/{folder.id}", 303)
            else:
                raise HTTPException(400, "not possible for this folder")
        except (mailview.NotFound, NotFound) as exc:
            raise HTTPException(404, "no such folder") from exc
        except (AlreadyExists, LimitExceeded) as exc:
            raise HTTPException(409, str(exc)) from exc
        return RedirectResponse("/", 303)

    async def raw(self, request: Request) -> Response:
        """A message's source, as text (never rendered)."""
        session = await self.require(request)
        try:
            _, folder = await self.folder_of(request, session)
            data = await mailview.raw_message(self.store, folder, int(request.path_params["uid"]))
        except mailview.NotFound as exc:
            raise HTTPException(404, "no such message") from exc
        return Response(
            data,
            media_type="text/plain; charset=utf-8",
            headers={"content-security-policy": PART_CSP, "content-disposition": "inline"},
        )

    async def act(self, request: Request) -> Response:
        session = await self.require(request)
        form = await self.form(request)
        await self.check_csrf(request, session, form)
        all_folders = await mailview.folders(self.store, session.account_id)
        action = form.get("action")
        try:
            folder = mailview.find_folder(all_folders, int(request.path_params["mailbox_id"]))
            uids = [int(uid) for uid in form.getlist("uid") if uid.isdigit()]
            if threads := [int(t) for t in form.getlist("thread") if t.isdigit()][: mailview.PAGE_SIZE]:
                # a conversation row: all its messages in this folder
                uids += await mailview.conversation_uids(self.store, session.account_id, folder, threads)
            target = int(form.get("target")) if form.get("target").isdigit() else None
            if action not in mailview.ACTIONS:
                raise mailview.NotFound(f"no action {action}")
            await mailview.act(self.store, all_folders, folder, uids, action, target)
        except mailview.NotFound as exc:
            raise HTTPException(404, str(exc)) from exc
        back = safe_path(form.get("back"), f"/box/{folder.id}")
        return RedirectResponse(back, 303)

    async def events(self, request: Request) -> Response:
        """Server-sent events: "change" after every committed change of the account (new mail, flags,
        expunges, folders) by any client; the page then fetches what it shows again."""
        session = await self.require(request)
        changed = asyncio.Event()
        stopping: asyncio.Event = self.ctx.shared("web.stopping", asyncio.Event)
        unsubscribe = self.store.subscribe(session.account_id, lambda _event: changed.set())

        async def stream() -> AsyncIterator[bytes]:
            try:
                yield b"retry: 2000\n\n"
                while not stopping.is_set():
                    waiter = asyncio.ensure_future(changed.wait())
                    stopper = asyncio.ensure_future(stopping.wait())
                    try:
                        await asyncio.wait(
                            {waiter, stopper}, timeout=EVENTS_KEEPALIVE, return_when="FIRST_COMPLETED"
                        )
                    finally:
                        waiter.cancel()
                        stopper.cancel()
                    if stopping.is_set():
                        break
                    if changed.is_set():
                        changed.clear()
                        yield b"event: change\ndata: {}\n\n"
                    else:
                        yield b": keep-alive\n\n"
            finally:
                unsubscribe()

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"x-accel-buffering": "no"}
        )

    async def download(self, request: Request) -> Response:
        """An attachment or other part, decoded; shown in the browser only when that is safe (images but SVG,
        PDF, plain text), else downloaded, with its file name (RFC 6266, RFC 8187 for non-ASCII names)."""
        session = await self.require(request)
        try:
            _, folder = await self.folder_of(request, session)
            uid = int(request.path_params["uid"])
            if "cid" in request.path_params:
                part = await mailview.part_by_content_id(self.store, folder, uid, request.path_params["cid"])
            else:
                part = await mailview.part(self.store, folder, uid, int(request.path_params["index"]))
        except mailview.NotFound as exc:
            raise HTTPException(404, "no such part") from exc
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        kind = part.get_content_type()
        inline = kind in INLINE_TYPES and request.query_params.get("download") != "1"
        if kind == "text/plain":
            media = f"text/plain; charset={part.get_content_charset() or 'utf-8'}"
        else:
            media = kind if inline else "application/octet-stream"
        name = part.get_filename() or ("message-part" + mailview.extension(kind))
        return Response(
            data,
            media_type=media,
            headers={
                "content-disposition": content_disposition("inline" if inline else "attachment", name),
                "content-security-policy": PART_CSP,
                "x-frame-options": "SAMEORIGIN",
            },
        )

    async def message_body(self, request: Request) -> Response:
        session = await self.require(request)
        try:
            _, folder = await self.folder_of(request, session)
            shown = await mailview.read(self.store, folder, int(request.path_params["uid"]), mark_seen=False)
        except mailview.NotFound as exc:
            raise HTTPException(404, "no such message") from exc
        base = f"/box/{folder.id}/{shown.uid}/cid/"
        images = request.query_params.get("images") == "1" or await self.images_trusted(
            session, shown.sender_address
        )
        return HTMLResponse(
            frame_document(cid_urls(shown.html or "", base)),
            headers={
                "content-security-policy": FRAME_CSP_WITH_IMAGES if images else FRAME_CSP,
                "x-frame-options": "SAMEORIGIN",
            },
        )


#: Types shown in the browser rather than downloaded (no SVG, no HTML: they can carry script).
INLINE_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "application/pdf", "text/plain"}
)
#: The policy of a part served on its own: it runs nothing and loads nothing.
PART_CSP = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; object-src 'self'"


def login_error(catalog: Any, status: str) -> str:
    """What the login form says for an authenticator status other than "ok"."""
    if status == "locked-out":
        return str(catalog.gettext("Too many failed logins. Please wait a while and try again."))
    if status == "unavailable":
        return str(catalog.gettext("Login is not possible right now. Please try again shortly."))
    if status == "disabled":
        return str(catalog.gettext("This account is disabled."))
    return str(catalog.gettext("Wrong email address or password."))


def content_disposition(kind: str, filename: str) -> str:
    """RFC 6266: an ASCII fallback `filename` and, for other names, `filename*` in UTF-8 (RFC 8187)."""
    cleaned = "".join(c for c in filename if c.isprintable() and c not in "\\/\r\n")[:200] or "attachment"
    fallback = "".join(c if c.isascii() and c not in '"%;' else "_" for c in cleaned)
    value = f'{kind}; filename="{fallback}"'
    if fallback != cleaned:
        value += f"; filename*=UTF-8''{quote(cleaned, safe='')}"
    return value


def cid_urls(html: str, base: str) -> str:
    """`cid:` URLs (RFC 2392) of a sanitised HTML part as URLs of this message's parts."""
    import re

    return re.sub(
        r'(src|href)="cid:([^"]{1,250})"',
        lambda m: f'{m.group(1)}="{base}{quote(unquote(m.group(2)), safe="")}"',
        html,
    )


def check_length(request: Request, limit: int, too_large: str) -> None:
    """An upload's announced length: 411 without one, 413 (`too_large`) above `limit`, before any is read."""
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        raise HTTPException(411, "a length is required")
    if int(length) > limit:
        raise HTTPException(413, too_large)


class _LoginRequired(Exception):
    def __init__(self, path: str) -> None:
        self.path = path


def build_app(ctx: ServiceContext, settings: WebConfig) -> ASGIApp:
    from postoffice.web.admin import AdminPages

    web = WebApp(ctx, settings)
    admin = AdminPages(web)
    static = resources.files("postoffice.web").joinpath("static")

    async def login_required(request: Request, exc: Exception) -> Response:
        path = exc.path if isinstance(exc, _LoginRequired) else "/"
        return RedirectResponse(f"/login?next={quote(safe_path(path), safe='/')}", 303)

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse({"error": detail}, status_code=status)
        try:
            return web.render(request, "error.html", status=status, status_code=status, detail=detail)
        except Exception:
            return PlainTextResponse(f"{status} {detail}\n", status_code=status)

    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("web: %s %s failed", request.method, request.url.path, exc_info=exc)
        return await http_error(request, HTTPException(500, "internal error"))

    async def over_quota(request: Request, exc: Exception) -> Response:
        # a draft, an import (the batches before it stay) or another APPEND beyond the account's storage
        # quota (docs/decisions/0053): 507 Insufficient Storage (RFC 4918 section 11.5); nothing more stored
        log.info("web: %s %s refused: %s", request.method, request.url.path, exc)
        return await http_error(request, HTTPException(507, "your mailbox is full: delete some mail first"))

    app = Starlette(
        routes=[
            Route("/", web.home),
            Route("/login", web.login_page, methods=["GET"]),
            Route("/login", web.login, methods=["POST"]),
            Route("/login/code", web.login_code, methods=["POST"]),
            Route("/logout", web.logout, methods=["POST"]),
            Route("/lang", web.set_language, methods=["POST"]),
            Route("/view", web.set_view, methods=["POST"]),
            Route("/images", web.trust_images, methods=["POST"]),
            Route("/box/{mailbox_id:int}", web.mailbox),
            Route("/box/{mailbox_id:int}/{uid:int}", web.message),
            Route("/box/{mailbox_id:int}/{uid:int}/body", web.message_body),
            Route("/box/{mailbox_id:int}/act", web.act, methods=["POST"]),
            Route("/folders", web.folder_action, methods=["POST"]),
            Route("/box/{mailbox_id:int}/{uid:int}/raw", web.raw),
            Route("/box/{mailbox_id:int}/{uid:int}/part/{index:int}", web.download),
            Route("/box/{mailbox_id:int}/{uid:int}/cid/{cid:path}", web.download),
            Route("/events", web.events),
            Route("/search", web.search),
            Route("/compose", web.compose_page, methods=["GET"]),
            Route("/compose", web.send, methods=["POST"]),
            Route("/drafts", web.save_draft, methods=["POST"]),
            Route("/settings", web.settings_page, methods=["GET"]),
            Route("/settings/password", web.change_password, methods=["POST"]),
            Route("/settings/sessions", web.end_sessions, methods=["POST"]),
            Route("/settings/profile.mobileconfig", web.apple_profile, methods=["GET"]),
            Route("/settings/export", web.export_mail, methods=["GET"]),
            Route("/settings/import", web.import_mail, methods=["POST"]),
            *web.security.routes(),
            *web.filters.routes(),
            *admin.routes(),
            Mount("/static", StaticFiles(directory=str(static)), name="static"),
        ],
        exception_handlers={
            _LoginRequired: login_required,
            HTTPException: http_error,
            OverQuota: over_quota,
            Exception: server_error,
        },
    )
    return SecurityHeaders(with_setup(ctx, mtasts.with_policy(ctx, app)), https=True)


def with_setup(ctx: ServiceContext, app: ASGIApp) -> ASGIApp:
    """`app`, with the autoconfiguration requests of mail programs answered first (`web.autoconfig`)."""
    setup = autoconfig.setup_app(ctx)

    async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and autoconfig.is_setup_request(scope):
            await setup(scope, receive, send)
        else:
            await app(scope, receive, send)

    return dispatch


def build_redirect_app(ctx: ServiceContext) -> ASGIApp:
    """Port 80: every request is redirected to the same path on HTTPS (module notes of the issue: later
    ACME challenges and autoconfiguration documents are served here too)."""
    ports: dict[str, int] = ctx.shared("web.ports", dict)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        host = ""
        for name, value in scope.get("headers", []):
            if name == b"host":
                host = value.decode("latin-1")
                break
        hostname = _host_only(host) or ctx.config.server.hostname
        port = ports.get("https", 443)
        authority = hostname if port == 443 else f"{hostname}:{port}"
        path = scope.get("raw_path") or scope.get("path", "/").encode()
        query = scope.get("query_string", b"")
        target = f"https://{authority}{safe_path(path.decode('latin-1'), '/')}"
        if query:
            target += "?" + query.decode("latin-1")
        await send(
            {
                "type": "http.response.start",
                "status": 308 if scope.get("method") not in ("GET", "HEAD") else 301,
                "headers": [(b"location", target.encode("latin-1")), (b"content-length", b"0")],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    return SecurityHeaders(with_setup(ctx, app), https=False)


def _host_only(host: str) -> str:
    """The host name of a Host header without its port, if it is a plausible name or address."""
    host = host.strip()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else ""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if not name or len(name) > 253 or any(not (c.isalnum() or c in ".-") for c in name):
        return ""
    return name.lower()
