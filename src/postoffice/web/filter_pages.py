"""The webmail's filter and vacation-reply settings (issue 15, docs/decisions/0088): the account's active
Sieve script shown as rules and a vacation reply (`web.filters`), changed with forms or as text.

Implementation notes
- The script edited is the account's active one, whatever its name and whichever program wrote it. An
  account without one gets SCRIPT_NAME ("webmail-2", ... when an inactive script has that name: one is never
  overwritten), made active when it is first saved.
- Every form carries the version of the script it was made from (`SieveScript.version`, never reused). A
  POST that finds another version (a ManageSieve client or another browser saved meanwhile) changes nothing
  and answers 409 with the script as it is now, before it looks at anything else, so a block number never
  points at a block that moved. A rule's form also carries its block's key (`Block.key`, its name and
  text): the 409 form is made for the block with that key in the new version (at its new number), or, when
  no single block has it any more (changed or deleted meanwhile), the 409 is the list.
- Every text is checked by the delivery compiler before it is stored (`sieve.stage.compile_script`, the path
  ManageSieve's PUTSCRIPT takes) and stored within the `[sieve]` limits (SieveQuotaExceeded: a message). A
  text with an error is not stored: the editor shows it again with the error's line and column marked.
- A stored script that does not parse (stored before the checker knew better) is shown only in the text
  editor, with its error.
- The vacation reply's text is kept as the account preference VACATION_DRAFT too, so that turning it off and
  on again does not mean typing it again.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from postoffice.sieve.grammar import SieveSyntaxError
from postoffice.sieve.stage import compile_script
from postoffice.store import Account, SieveLimits, SieveQuotaExceeded, SieveScript, WebSession
from postoffice.web import filters, mailview
from postoffice.web.filters import Condition, FilterProblem, FilterScript, Rule, Vacation
from postoffice.web.i18n import translations

if TYPE_CHECKING:
    from postoffice.web.app import Form, WebApp

log = logging.getLogger("postoffice.web")

VACATION_DRAFT = "vacation:draft"
#: Lines of the script shown above an error, with the line at fault.
EXCERPT_LINES = 3
_ADDRESS_SPLIT = re.compile(r"[\s,;]+")


def _(text: str) -> str:
    """Marks a message for the catalog; `gettext` translates it when it is shown."""
    return text


@dataclass(frozen=True)
class Loaded:
    """The account's scripts as a request found them: the active one (None: none), its version (0: none),
    its blocks (None: it does not parse, `error` says why)."""

    scripts: list[SieveScript]
    active: SieveScript | None
    script: FilterScript | None
    error: SieveSyntaxError | None

    @property
    def version(self) -> int:
        return self.active.version if self.active is not None else 0

    @property
    def text(self) -> str:
        return self.active.text if self.active is not None else ""


@dataclass(frozen=True)
class ScriptError:
    """An error of a script as the editor shows it: where, what, and the lines before it with a caret."""

    line: int
    column: int
    message: str
    excerpt: list[tuple[int, str]]
    caret: str


def script_error(text: str, error: SieveSyntaxError) -> ScriptError:
    """The error as the editor shows it (tabs as spaces, so that the caret stands under the column)."""
    lines = text.replace("\r\n", "\n").split("\n")
    first = max(1, error.line - EXCERPT_LINES + 1)
    excerpt = [(n, lines[n - 1].expandtabs(4)) for n in range(first, min(error.line, len(lines)) + 1)]
    at_fault = lines[error.line - 1] if 0 < error.line <= len(lines) else ""
    caret = " " * len(at_fault[: max(error.column - 1, 0)].expandtabs(4)) + "^"
    return ScriptError(error.line, error.column, error.message, excerpt, caret)


class FilterPages:
    def __init__(self, web: WebApp) -> None:
        self.web = web
        self.store = web.store
        sieve = web.ctx.config.sieve
        self.limits = SieveLimits(sieve.max_scripts, sieve.max_script_size, sieve.max_storage)
        self.enabled = sieve.enabled

    def routes(self) -> list[Route]:
        return [
            Route("/settings/filters", self.list_page, methods=["GET"]),
            Route("/settings/filters", self.save_rule, methods=["POST"]),
            Route("/settings/filters/new", self.new_page, methods=["GET"]),
            Route("/settings/filters/{index:int}", self.edit_page, methods=["GET"]),
            Route("/settings/filters/arrange", self.arrange, methods=["POST"]),
            Route("/settings/filters/script", self.script_page, methods=["GET"]),
            Route("/settings/filters/script", self.save_script, methods=["POST"]),
            Route("/settings/vacation", self.vacation_page, methods=["GET"]),
            Route("/settings/vacation", self.save_vacation, methods=["POST"]),
        ]

    async def settings_values(self, account: Account) -> dict[str, Any]:
        """What the settings page shows of this module's part: how many rules, whether a reply is on."""
        loaded = await self._load(account.id)
        script = loaded.script
        return {
            "filter_count": len(script.shown()) if script is not None else 0,
            "vacation_on": script is not None and script.vacation is not None,
        }

    # -- helpers ---------------------------------------------------------------------------------------------
    async def _load(self, account_id: int) -> Loaded:
        scripts = await self.store.list_sieve_scripts(account_id)
        active = next((s for s in scripts if s.active), None)
        try:
            return Loaded(scripts, active, filters.read(active.text if active else ""), None)
        except SieveSyntaxError as exc:
            return Loaded(scripts, active, None, exc)

    async def _posted(self, request: Request) -> tuple[WebSession, Account, Form, Loaded]:
        session = await self.web.require(request)
        form = await self.web.form(request)
        await self.web.check_csrf(request, session, form)
        account = await self.web.account(session)
        return session, account, form, await self._load(account.id)

    def _gettext(self, request: Request, text: str, **values: object) -> str:
        translated = str(translations(self.web.language(request)).gettext(text))
        return translated % values if values else translated

    def _problem(self, request: Request, problem: FilterProblem) -> str:
        return self._gettext(request, problem.message, **problem.values)

    def _error_text(self, request: Request, error: SieveSyntaxError) -> str:
        where = self._gettext(
            request, _("Line %(line)d, column %(column)d:"), line=error.line, column=error.column
        )
        return f"{where} {error.message}"

    @staticmethod
    def _stale(form: Form, loaded: Loaded) -> bool:
        return form.get("version") != str(loaded.version)

    async def _store(self, request: Request, account: Account, loaded: Loaded, text: str) -> str:
        """Check and store `text` as the account's active script; "" when stored, else what went wrong."""
        try:
            compile_script(text)
        except SieveSyntaxError as exc:
            return self._error_text(request, exc)
        name = loaded.active.name if loaded.active is not None else _free_name(loaded.scripts)
        try:
            await self.store.put_sieve_script(account.id, name, text, self.limits)
            if loaded.active is None:
                await self.store.activate_sieve_script(account.id, name)
        except SieveQuotaExceeded as exc:
            if exc.kind == "maxsize":
                return self._gettext(
                    request,
                    _("Your filters would be larger than %(size)s, the most a script may be."),
                    size=filters.size_text(self.limits.max_script_octets),
                )
            if exc.kind == "maxscripts":
                return self._gettext(
                    request,
                    _("You have as many Sieve scripts as you may keep. Delete one in a mail program."),
                )
            return self._gettext(request, _("Your Sieve scripts together would be larger than you may keep."))
        log.info("sieve script %r saved account=%s by=web:%s", name, account.address, account.address)
        return ""

    def _render(
        self, request: Request, template: str, session: WebSession, account: Account, **values: Any
    ) -> Response:
        return self.web.render(
            request,
            template,
            session=session,
            account=account,
            sieve_enabled=self.enabled,
            **values,
        )

    # -- the list --------------------------------------------------------------------------------------------
    async def list_page(
        self,
        request: Request,
        *,
        error: str = "",
        status: int = 200,
        session: WebSession | None = None,
    ) -> Response:
        session = session or await self.web.require(request)
        account = await self.web.account(session)
        loaded = await self._load(account.id)
        if loaded.script is None:
            return RedirectResponse("/settings/filters/script", 303)
        return self._render(
            request,
            "filters.html",
            session,
            account,
            status=status,
            filters_tab="filters",
            folders=await mailview.folders(self.store, account.id),
            loaded=loaded,
            blocks=loaded.script.shown(),
            vacation=loaded.script.vacation,
            today=datetime.date.today().isoformat(),
            size_text=filters.size_text,
            error=error,
            done=request.query_params.get("done", ""),
        )

    async def arrange(self, request: Request) -> Response:
        """Move a rule up or down, or delete it."""
        session, account, form, loaded = await self._posted(request)
        if loaded.script is None:
            return RedirectResponse("/settings/filters/script", 303)
        if self._stale(form, loaded):
            error = self._gettext(request, _CHANGED)
            return await self.list_page(request, error=error, status=409, session=session)
        index = _index(form.get("index"))
        action = form.get("action")
        try:
            if action == "delete":
                script = filters.delete_block(loaded.script, index)
            elif action in ("up", "down"):
                script = filters.move_block(loaded.script, index, -1 if action == "up" else 1)
            else:
                raise HTTPException(400, "malformed form")
        except IndexError as exc:
            raise HTTPException(404, "no such filter") from exc
        error = await self._store(request, account, loaded, filters.render(script))
        if error:
            return await self.list_page(request, error=error, status=400, session=session)
        return RedirectResponse(f"/settings/filters?done={'deleted' if action == 'delete' else 'moved'}", 303)

    # -- one rule --------------------------------------------------------------------------------------------
    async def new_page(self, request: Request) -> Response:
        return await self._form_page(request, None)

    async def edit_page(self, request: Request) -> Response:
        return await self._form_page(request, int(request.path_params["index"]))

    async def _form_page(self, request: Request, index: int | None) -> Response:
        session = await self.web.require(request)
        account = await self.web.account(session)
        loaded = await self._load(account.id)
        if loaded.script is None:
            return RedirectResponse("/settings/filters/script", 303)
        rule = Rule()
        if index is not None:
            blocks = loaded.script.blocks
            if not 0 <= index < len(blocks) or blocks[index].rule is None:
                raise HTTPException(404, "no such filter")
            rule = blocks[index].rule or rule
        return await self._form(request, session, account, loaded, index, rule, _rows(rule))

    async def _form(
        self,
        request: Request,
        session: WebSession,
        account: Account,
        loaded: Loaded,
        index: int | None,
        rule: Rule,
        rows: list[tuple[str, str, str, str]],
        *,
        error: str = "",
        status: int = 200,
    ) -> Response:
        script = loaded.script
        return self._render(
            request,
            "filter_form.html",
            session,
            account,
            status=status,
            filters_tab="filters",
            folders=await mailview.folders(self.store, account.id),
            loaded=loaded,
            index=index,
            block_key=script.blocks[index].key if script is not None and index is not None else "",
            rule=rule,
            rows=rows,
            fields=filters.FIELDS,
            error=error,
        )

    async def save_rule(self, request: Request) -> Response:
        """Add a rule (index "new") or replace one."""
        session, account, form, loaded = await self._posted(request)
        if loaded.script is None:
            return RedirectResponse("/settings/filters/script", 303)
        index = None if form.get("index") == "new" else _index(form.get("index"))
        rule, rows, problem = _rule_from_form(form)
        if self._stale(form, loaded):
            # the form again, made from the script as it is now: for the same block at its new number, so
            # that saving again cannot hit another one; none when that block was changed or deleted meanwhile
            if index is not None:
                index = loaded.script.find_rule(form.get("block"))
                if index is None:
                    error = self._gettext(request, _CHANGED_RULE)
                    return await self.list_page(request, error=error, status=409, session=session)
            error = self._gettext(request, _CHANGED)
            return await self._form(
                request, session, account, loaded, index, rule, rows, error=error, status=409
            )
        existing = None
        if index is not None:
            blocks = loaded.script.blocks
            if not 0 <= index < len(blocks) or blocks[index].rule is None:
                raise HTTPException(404, "no such filter")
            existing = blocks[index].rule
        folders = {f.name for f in await mailview.folders(self.store, account.id)}
        kept_folder = existing is not None and existing.move_to == rule.move_to
        if problem is None and rule.move_to and rule.move_to not in folders and not kept_folder:
            problem = FilterProblem(_("Choose a folder."))
        error = self._problem(request, problem) if problem is not None else ""
        if not error:
            try:
                script = (
                    filters.add_rule(loaded.script, rule)
                    if index is None
                    else filters.replace_rule(loaded.script, index, rule)
                )
            except FilterProblem as refused:
                error = self._problem(request, refused)
            else:
                error = await self._store(request, account, loaded, filters.render(script))
        if error:
            return await self._form(
                request, session, account, loaded, index, rule, rows, error=error, status=400
            )
        return RedirectResponse("/settings/filters?done=saved", 303)

    # -- the text --------------------------------------------------------------------------------------------
    async def script_page(
        self,
        request: Request,
        *,
        text: str | None = None,
        error: SieveSyntaxError | None = None,
        message: str = "",
        status: int = 200,
        session: WebSession | None = None,
    ) -> Response:
        session = session or await self.web.require(request)
        account = await self.web.account(session)
        loaded = await self._load(account.id)
        shown = loaded.text if text is None else text
        if text is None and error is None:
            error = loaded.error
        line = request.query_params.get("line", "")
        return self._render(
            request,
            "filter_script.html",
            session,
            account,
            status=status,
            filters_tab="script",
            folders=await mailview.folders(self.store, account.id),
            loaded=loaded,
            text=shown,
            line_count=max(1, shown.replace("\r\n", "\n").count("\n") + (0 if shown.endswith("\n") else 1)),
            script_error=script_error(shown, error) if error is not None else None,
            error_text=self._error_text(request, error) if error is not None else "",
            message=message,
            focus_line=int(line) if line.isascii() and line.isdigit() and len(line) < 7 else 0,
            done=request.query_params.get("done", ""),
        )

    async def save_script(self, request: Request) -> Response:
        session, account, form, loaded = await self._posted(request)
        text = form.get("script")
        if self._stale(form, loaded):
            message = self._gettext(request, _CHANGED_TEXT)
            return await self.script_page(request, message=message, status=409, session=session)
        if not text.strip() and loaded.active is None:
            return RedirectResponse("/settings/filters/script?done=saved", 303)
        try:
            compile_script(text)
        except SieveSyntaxError as exc:
            return await self.script_page(request, text=text, error=exc, status=400, session=session)
        message = await self._store(request, account, loaded, text)
        if message:
            return await self.script_page(request, text=text, message=message, status=400, session=session)
        return RedirectResponse("/settings/filters/script?done=saved", 303)

    # -- the vacation reply ----------------------------------------------------------------------------------
    async def vacation_page(
        self,
        request: Request,
        *,
        values: Vacation | None = None,
        on: bool | None = None,
        error: str = "",
        status: int = 200,
        session: WebSession | None = None,
    ) -> Response:
        session = session or await self.web.require(request)
        account = await self.web.account(session)
        loaded = await self._load(account.id)
        current = loaded.script.vacation if loaded.script is not None else None
        if values is None:
            values = current or await self._draft(account.id)
        return self._render(
            request,
            "vacation.html",
            session,
            account,
            status=status,
            filters_tab="vacation",
            folders=await mailview.folders(self.store, account.id),
            loaded=loaded,
            vacation=values,
            current=current,
            on=current is not None if on is None else on,
            other_replies=loaded.script is not None and loaded.script.other_vacations(),
            today=datetime.date.today().isoformat(),
            time_zone=_time_zone(),
            error=error,
            done=request.query_params.get("done", ""),
        )

    async def _draft(self, account_id: int) -> Vacation:
        kept = (await self.store.account_settings(account_id, VACATION_DRAFT)).get(VACATION_DRAFT, "")
        try:
            value = json.loads(kept) if kept else {}
            draft = Vacation(
                str(value.get("text", "")),
                str(value.get("subject", "")),
                tuple(str(a) for a in value.get("addresses", ())),
                int(value.get("days", filters.DEFAULT_DAYS)),
            )
        except (ValueError, TypeError, AttributeError):
            return Vacation("")
        return (
            draft
            if filters.vacation_problem(dataclasses.replace(draft, text=draft.text or "x")) is None
            else Vacation("")
        )

    async def save_vacation(self, request: Request) -> Response:
        session, account, form, loaded = await self._posted(request)
        on = form.get("on") == "1"
        days = form.get("days").strip()
        vacation = Vacation(
            filters.clean_text(form.get("text")),
            filters.clean_line(form.get("subject"), filters.MAX_VALUE),
            tuple(a for a in _ADDRESS_SPLIT.split(filters.clean_line(form.get("addresses"), 5000)) if a),
            int(days) if days.isascii() and days.isdigit() and len(days) < 4 else 0,
            form.get("first_day").strip()[:10],
            form.get("last_day").strip()[:10],
        )
        problem = filters.vacation_problem(vacation) if on else None
        error = self._problem(request, problem) if problem is not None else ""
        if on and not error and vacation.last_day and vacation.last_day < datetime.date.today().isoformat():
            error = self._gettext(request, _("The last day has already passed."))
        status = 400
        if not error and loaded.script is None:
            error = self._gettext(
                request, _("Your filters have an error. Correct it under Edit as text first.")
            )
        if not error and self._stale(form, loaded):
            error, status = self._gettext(request, _CHANGED), 409
        if error:
            return await self.vacation_page(
                request, values=vacation, on=on, error=error, status=status, session=session
            )
        draft = {"text": vacation.text, "subject": vacation.subject, "addresses": list(vacation.addresses)}
        await self.store.set_account_setting(
            account.id, VACATION_DRAFT, json.dumps({**draft, "days": vacation.days or filters.DEFAULT_DAYS})
        )
        if loaded.script is not None and (on or loaded.script.vacation is not None):
            try:
                script = filters.set_vacation(loaded.script, vacation if on else None)
            except FilterProblem as refused:
                error = self._problem(request, refused)
            else:
                error = await self._store(request, account, loaded, filters.render(script))
            if error:
                return await self.vacation_page(
                    request, values=vacation, on=on, error=error, status=400, session=session
                )
        return RedirectResponse(f"/settings/vacation?done={'on' if on else 'off'}", 303)


_CHANGED = _("Your filters were changed elsewhere meanwhile. They are shown as they are now: try again.")
_CHANGED_RULE = _(
    "Your filters were changed elsewhere meanwhile, and the filter you edited was changed or deleted. "
    "Nothing was saved: here they are as they are now."
)
_CHANGED_TEXT = _(
    "Your filters were changed elsewhere meanwhile. This is the script as it is now: try again."
)


def _time_zone() -> str:
    """The server's time zone as people read it: "UTC+02:00", or "CEST, UTC+02:00"."""
    now = datetime.datetime.now().astimezone()
    offset = now.strftime("%z")
    written = f"UTC{offset[:3]}:{offset[3:]}"
    name = now.tzname() or ""
    return written if name in ("", "UTC") or name.startswith(("+", "-")) else f"{name}, {written}"


def _free_name(scripts: list[SieveScript]) -> str:
    """SCRIPT_NAME, or SCRIPT_NAME-2, -3, ... when an (inactive) script has that name already."""
    taken = {s.name for s in scripts}
    name, n = filters.SCRIPT_NAME, 1
    while name in taken:
        n += 1
        name = f"{filters.SCRIPT_NAME}-{n}"
    return name


def _index(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 6:
        raise HTTPException(400, "malformed form")
    return int(text)


def _rows(rule: Rule) -> list[tuple[str, str, str, str]]:
    """The condition rows of the form for `rule`: (field, header, op, value as shown); the form adds an empty
    one for a new condition."""
    return [
        (c.field, c.header, c.op, filters.size_text(int(c.value)) if c.field == "size" else c.value)
        for c in rule.conditions
    ]


def _rule_from_form(form: Form) -> tuple[Rule, list[tuple[str, str, str, str]], FilterProblem | None]:
    """The rule a filter form describes, its condition rows as typed, and what is wrong with it (or None)."""
    columns = [form.getlist(name) for name in ("field", "header", "op", "value")]
    if len({len(c) for c in columns}) != 1:
        raise HTTPException(400, "malformed form")
    rows: list[tuple[str, str, str, str]] = []
    conditions: list[Condition] = []
    problem: FilterProblem | None = None
    for field, header, op, value in zip(*columns, strict=True):
        header, value = filters.clean_line(header, 100), filters.clean_line(value)
        if not value and not (op.endswith("exists") and header):
            continue  # an empty row
        rows.append((field, header, op, value))
        if field == "size":
            octets = filters.parse_size(value)
            if octets is None:
                problem = problem or FilterProblem(_("Write a size such as 500 KB or 5 MB."))
                continue
            value = str(octets)
        if op.endswith("exists"):
            value = ""
        conditions.append(Condition(field, op, value, header if field == "header" else ""))
    checked = form.get
    rule = Rule(
        name=filters.clean_line(form.get("name"), filters.MAX_NAME),
        conditions=tuple(conditions),
        any_of=form.get("match") == "any" and len(conditions) > 1,
        mark_read=checked("read") == "1",
        flag=checked("flag") == "1",
        move_to=filters.clean_line(form.get("folder"), filters.MAX_VALUE) if checked("move") == "1" else "",
        forward_to=filters.clean_line(form.get("forward_to"), 320) if checked("forward") == "1" else "",
        keep=checked("keep") == "1",
        reply=filters.clean_text(form.get("reply_text")) if checked("reply") == "1" else "",
        discard=checked("discard") == "1",
        stop=checked("stop") == "1",
        # `redirect :copy` read from the script (module notes of web.filters): kept while forward and keep are
        copy=checked("copy") == "1" and checked("forward") == "1" and checked("keep") == "1",
    )
    if problem is None and checked("move") == "1" and not rule.move_to:
        problem = FilterProblem(_("Choose a folder."))
    if problem is None and checked("forward") == "1" and not rule.forward_to:
        problem = FilterProblem(_("Write the address to forward to."))
    if problem is None and checked("reply") == "1" and not rule.reply:
        problem = FilterProblem(_("Write the text of the reply."))
    return rule, rows, problem or filters.rule_problem(rule)
