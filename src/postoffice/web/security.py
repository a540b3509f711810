"""Account settings beyond the password (issue 12, docs/decisions/0052): two-step login with TOTP and its
recovery codes, app passwords for mail programs, and the identities the account sends as.

Implementation notes
- Turning TOTP on: the secret is made when the enrolment page is first shown and kept as the account's
  preference "totp:pending" until a code from it is typed (so a reload shows the same QR code, and a secret
  never becomes active without proof that the app has it). The confirming code's time step is used up, so it
  cannot log in again. The recovery codes are shown once, in the answer to that POST, and kept as SHA-256.
- Turning TOTP off and making new recovery codes ask for the account password again (through the
  authenticator, so lockouts apply): a browser left signed in must not be enough to remove the second factor.
- An app password is shown once, in the answer to the POST that made it; the store keeps its SHA-256. It
  opens IMAP, POP3, POP2 and SMTP submission, never the web (`Authenticator.login`).
- An identity's address must be one the account owns by the submission policy's rule (`owns`: it reaches this
  account and no other), checked when it is saved and again by the policy at every send.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from postoffice.auth import factors
from postoffice.delivery.submission import owns
from postoffice.directory import operations
from postoffice.directory.address import AddressError, parse_address
from postoffice.store import Account, AlreadyExists, Identity, NotFound, WebSession
from postoffice.web import compose, mailview
from postoffice.web.i18n import translations

if TYPE_CHECKING:
    from postoffice.web.app import Form, WebApp

log = logging.getLogger("postoffice.web")

PENDING_SECRET = "totp:pending"  # noqa: S105 - the name of a preference: "SECRET:UNIX TIME"
#: Seconds a secret shown for enrolment stays valid (then the page shows a new one).
PENDING_SECRET_LIFETIME = 900
MAX_APP_PASSWORDS = 50
MAX_IDENTITIES = 50
MAX_NAME = 100
MAX_SIGNATURE = 4000
#: Recent logins shown on the settings page.
LOGINS_SHOWN = 15


def _(text: str) -> str:
    """Marks a message for the catalog; `gettext` translates it when it is shown."""
    return text


class SecurityPages:
    def __init__(self, web: WebApp) -> None:
        self.web = web
        self.store = web.store

    def routes(self) -> list[Route]:
        return [
            Route("/settings/two-factor", self.enrol_page, methods=["GET"]),
            Route("/settings/two-factor", self.enrol, methods=["POST"]),
            Route("/settings/two-factor/off", self.turn_off, methods=["POST"]),
            Route("/settings/two-factor/codes", self.new_codes, methods=["POST"]),
            Route("/settings/app-passwords", self.add_app_password, methods=["POST"]),
            Route("/settings/app-passwords/revoke", self.revoke_app_password, methods=["POST"]),
            Route("/settings/identities", self.save_identity, methods=["POST"]),
            Route("/settings/identities/delete", self.remove_identity, methods=["POST"]),
        ]

    async def settings_values(self, account: Account) -> dict[str, Any]:
        """What the settings page shows of this module's part."""
        return {
            "second_factor": await self.store.second_factor(account.id),
            "app_passwords": await self.store.list_app_passwords(account.id),
            "logins": await self.store.recent_logins(account.id, LOGINS_SHOWN),
            "identities": await self.store.list_identities(account.id),
        }

    async def _posted(self, request: Request) -> tuple[WebSession, Account, Form]:
        session = await self.web.require(request)
        form = await self.web.form(request)
        await self.web.check_csrf(request, session, form)
        return session, await self.web.account(session), form

    def _gettext(self, request: Request, text: str) -> str:
        return str(translations(self.web.language(request)).gettext(text))

    # -- two-step login --------------------------------------------------------------------------------------
    async def enrol_page(self, request: Request, *, error: str = "", status: int = 200) -> Response:
        session = await self.web.require(request)
        account = await self.web.account(session)
        if account.two_factor:
            return RedirectResponse("/settings#security", 303)
        pending = await self._pending_secret(account)
        if not pending:
            pending = factors.new_totp_secret()
            await self.store.set_account_setting(account.id, PENDING_SECRET, f"{pending}:{int(time.time())}")
        issuer = self.web.ctx.config.server.hostname
        return self.web.render(
            request,
            "two_factor.html",
            status=status,
            session=session,
            folders=await mailview.folders(self.store, account.id),
            account=account,
            qr=factors.qr_svg(factors.otpauth_uri(pending, account.address, issuer)),
            secret=" ".join(pending[i : i + 4] for i in range(0, len(pending), 4)),
            error=error,
            recovery_codes=[],
        )

    async def _pending_secret(self, account: Account) -> str:
        """The secret being enrolled, while it is younger than PENDING_SECRET_LIFETIME; else ""."""
        kept = (await self.store.account_settings(account.id, PENDING_SECRET)).get(PENDING_SECRET, "")
        secret, _, made = kept.partition(":")
        if form_id(made) is None or not 0 <= time.time() - int(made) < PENDING_SECRET_LIFETIME:
            return ""
        return secret

    async def enrol(self, request: Request) -> Response:
        session, account, form = await self._posted(request)
        if account.two_factor:
            return RedirectResponse("/settings#security", 303)
        error = await self.web.password_error(request, account, form.get("password"), "confirm")
        if error:
            return await self.enrol_page(request, error=error, status=400)
        pending = await self._pending_secret(account)
        step = None if not pending else factors.matching_step(pending, form.get("code"), time.time())
        if not pending or step is None:
            error = self._gettext(
                request, _("That code is not right. Check the time on your phone and try again.")
            )
            return await self.enrol_page(request, error=error, status=400)
        codes = factors.new_recovery_codes()
        await self.store.set_second_factor(account.id, pending, [factors.secret_hash(c) for c in codes])
        await self.store.use_totp_step(account.id, step)
        await self.store.set_account_setting(account.id, PENDING_SECRET, None)
        log.info("two-factor login on account=%s by=web:%s", account.address, account.address)
        return await self._codes_page(request, session, account, codes)

    async def _codes_page(
        self, request: Request, session: WebSession, account: Account, codes: list[str]
    ) -> Response:
        return self.web.render(
            request,
            "two_factor.html",
            session=session,
            folders=await mailview.folders(self.store, account.id),
            account=account,
            qr="",
            secret="",
            error="",
            recovery_codes=codes,
            headers={"cache-control": "no-store"},
        )

    async def turn_off(self, request: Request) -> Response:
        session, account, form = await self._posted(request)
        error = await self.web.password_error(request, account, form.get("password"), "confirm")
        if error:
            return await self.web.settings_page(request, error=error, status=400, session=session)
        await operations.turn_off_second_factor(self.store, account.address, by=f"web:{account.address}")
        return RedirectResponse("/settings?done=two-factor-off#security", 303)

    async def new_codes(self, request: Request) -> Response:
        session, account, form = await self._posted(request)
        factor = await self.store.second_factor(account.id)
        if factor is None:
            return RedirectResponse("/settings#security", 303)
        error = await self.web.password_error(request, account, form.get("password"), "confirm")
        if error:
            return await self.web.settings_page(request, error=error, status=400, session=session)
        codes = factors.new_recovery_codes()
        await self.store.set_second_factor(account.id, factor.secret, [factors.secret_hash(c) for c in codes])
        log.info("new recovery codes account=%s by=web:%s", account.address, account.address)
        return await self._codes_page(request, session, account, codes)

    # -- app passwords ---------------------------------------------------------------------------------------
    async def add_app_password(self, request: Request) -> Response:
        session, account, form = await self._posted(request)
        name = " ".join(form.get("name").split())[:MAX_NAME]
        error = await self.web.password_error(request, account, form.get("password"), "confirm")
        if error:  # a signed-in browser alone does not make a password that outlives the session
            return await self.web.settings_page(request, error=error, status=400, session=session)
        if not name:
            error = self._gettext(request, _("Give the app password a name, such as the program or device."))
            return await self.web.settings_page(request, error=error, status=400, session=session)
        if len(await self.store.list_app_passwords(account.id)) >= MAX_APP_PASSWORDS:
            error = self._gettext(request, _("You have too many app passwords. Revoke some first."))
            return await self.web.settings_page(request, error=error, status=400, session=session)
        password = factors.new_app_password()
        try:
            await self.store.add_app_password(account.id, name, factors.secret_hash(password), time.time())
        except AlreadyExists:
            error = self._gettext(request, _("An app password of that name exists already."))
            return await self.web.settings_page(request, error=error, status=400, session=session)
        log.info("app password added account=%s name=%r by=web:%s", account.address, name, account.address)
        return await self.web.settings_page(request, session=session, new_app_password=(name, password))

    async def revoke_app_password(self, request: Request) -> Response:
        _session, account, form = await self._posted(request)
        chosen = form_id(form.get("id"))
        if chosen is None or not await self.store.remove_app_password(account.id, chosen):
            raise HTTPException(404, "no such app password")
        log.info("app password revoked account=%s id=%s by=web:%s", account.address, chosen, account.address)
        return RedirectResponse("/settings?done=revoked#security", 303)

    # -- identities ------------------------------------------------------------------------------------------
    async def save_identity(self, request: Request) -> Response:
        session, account, form = await self._posted(request)
        chosen = form_id(form.get("id") or "0")
        if chosen is None:
            raise HTTPException(400, "malformed form")
        try:
            address = parse_address(form.get("address").strip())  # the canonical form, as the directory's
        except AddressError:
            address = ""
        reply_to = form.get("reply_to").strip()
        error = ""
        if not await owns(self.store, account.id, address):
            error = _("You can send only as your own address or an alias that reaches you alone.")
        elif reply_to and not _one_address(reply_to):
            error = _("The reply-to address is not a valid email address.")
        elif chosen == 0 and len(await self.store.list_identities(account.id)) >= MAX_IDENTITIES:
            error = _("You have too many identities. Remove some first.")
        if error:
            return await self.web.settings_page(
                request, error=self._gettext(request, error), status=400, session=session
            )
        identity = Identity(
            chosen,
            account.id,
            address,
            " ".join(form.get("name").split())[:MAX_NAME],
            form.get("signature").replace("\r\n", "\n")[:MAX_SIGNATURE],
            reply_to,
            default=form.get("default") == "1",
        )
        try:
            await self.store.save_identity(identity)
        except NotFound as exc:
            raise HTTPException(404, "no such identity") from exc
        return RedirectResponse("/settings?done=identity#identities", 303)

    async def remove_identity(self, request: Request) -> Response:
        _session, account, form = await self._posted(request)
        chosen = form_id(form.get("id"))
        if chosen is None or not await self.store.remove_identity(account.id, chosen):
            raise HTTPException(404, "no such identity")
        return RedirectResponse("/settings?done=identity#identities", 303)


def form_id(text: str) -> int | None:
    """A row id from a form field: ASCII digits that fit a 64-bit integer, or None."""
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        return None
    return int(text)


def _one_address(text: str) -> bool:
    try:
        return len(compose.parse_mailboxes(text)) == 1
    except compose.SendError:
        return False
