"""The console's pages: overview, exceptions inbox (and by code, and as CSV), one NMI, drift,
activity, the bulk re-drive preview, and sign-in. Forms that change something POST with the
session's CSRF token and answer with a redirect (so a reload never repeats an action)."""

from __future__ import annotations

import csv
import io
import math
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

import structlog
from aiohttp import web
from multidict import MultiMapping

from dersync.aemo.responses import AemoResponse
from dersync.cli.commands import EXCEPTION_CSV_COLUMNS
from dersync.cli.output import in_zone
from dersync.console.app import Console, see_other
from dersync.console.auth import SIGNIN_COOKIE, Refused, tokens_match
from dersync.console.compare_view import side_by_side
from dersync.console.forms import (
    PREVIEW_PAGE_SIZE,
    BadInput,
    exception_filter,
    nmi_value,
    page_count,
    page_of,
    reason_of,
)
from dersync.errors import AemoError, LeaseLost
from dersync.models import check_record
from dersync.reconcile.compare import compare_installation, compare_nmi_details
from dersync.store import ExceptionFilter, NothingSelected, Selection, SelectionChanged, utcnow
from dersync.vocabulary import DriftKind, ExceptionAge, ExceptionStatus, Level, Part, values

log = structlog.get_logger("dersync.console")

#: Messages a redirect may ask a page to show (`?done=`): fixed wording, never text from the URL.
DONE = {
    "redriven": "Re-driven: the next sync pass sends this record to AEMO (even though its content did not change).",
    "parked": "Parked: sync passes skip this record until it is unparked.",
    "reparked": "It was already parked: the reason is updated.",
    "unparked": "Unparked: the next sync pass takes it again if it is due.",
    "not_parked": "It was not parked: nothing changed.",
    "redrive": "Re-drive recorded: the next sync pass sends the re-driven records (parked ones wait until unparked).",
}
#: Drift findings shown on the drift page at most (all of them are in `dersync drift list`).
DRIFT_SHOWN = 1000


class Pages:
    def __init__(self, console: Console) -> None:
        self.c = console

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/login", self.login_form)
        router.add_post("/login", self.login)
        router.add_post("/logout", self.logout)
        router.add_get("/", self.overview)
        router.add_get("/overview/live", self.overview_live)
        router.add_get("/exceptions", self.exceptions)
        router.add_get("/exceptions.csv", self.exceptions_csv)
        router.add_get("/exceptions/codes", self.codes)
        router.add_get("/nmi", self.find_nmi)
        router.add_get("/nmi/{nmi}", self.nmi)
        router.add_post("/nmi/{nmi}/aemo", self.read_aemo)
        router.add_post("/nmi/{nmi}/redrive", self.redrive_one)
        router.add_post("/nmi/{nmi}/park", self.park)
        router.add_post("/nmi/{nmi}/unpark", self.unpark)
        router.add_get("/redrive", self.redrive_preview)
        router.add_post("/redrive", self.redrive)
        router.add_get("/drift", self.drift)
        router.add_get("/activity", self.activity)

    # --- signing in --------------------------------------------------------------------------------

    async def login_form(self, request: web.Request, *, message: str | None = None, status: int = 200,
                         name: str = "", headers: dict[str, str] | None = None,
                         next_path: str | None = None) -> web.Response:
        token, new = self.c.auth.signin_token(request)
        response = self.c.render(request, "login.html", status=status, headers=headers, message=message, name=name,
                                 next=_local_target(next_path or request.query.get("next")),
                                 ended=request.query.get("ended") == "1", token=token)
        if new:
            self.c.auth.set_signin_cookie(request, response, token)
        return response

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        name, password = str(form.get("name", "")).strip(), str(form.get("password", ""))
        next_path = str(form.get("next", ""))
        if not tokens_match(request.cookies.get(SIGNIN_COOKIE), form.get("csrf")):
            return await self.login_form(request, status=403, name=name, next_path=next_path,
                                         message="The sign-in form was stale (or cookies are off): try again.")
        if not name or not password:
            return await self.login_form(request, status=400, name=name, next_path=next_path,
                                         message="Enter a user name and password.")
        try:
            cookie, _identity = await self.c.auth.sign_in(request, name, password)
        except Refused as exc:
            headers = {"Retry-After": str(math.ceil(exc.retry_after))} if exc.retry_after is not None else None
            return await self.login_form(request, status=exc.status, name=name, headers=headers, next_path=next_path,
                                         message=str(exc)[0].upper() + str(exc)[1:] + ".")
        response = see_other(_local_target(next_path))
        self.c.auth.set_session_cookie(request, response, cookie)
        response.del_cookie(SIGNIN_COOKIE, path="/login")
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        self.c.check_csrf(request, form.get("csrf"))
        await self.c.auth.sign_out(self.c.identity(request))
        response = see_other("/login")
        self.c.auth.clear_session_cookie(request, response)
        return response

    # --- overview ------------------------------------------------------------------------------------

    async def _overview(self) -> dict[str, Any]:
        data = await self.c.store.console_overview()
        live = self.c.runtime.live.snapshot()
        running_here = {job["kind"] for job in live}
        elsewhere = [p for p in data["running"] if p["kind"] not in running_here]
        return {**data, "live": live, "running_elsewhere": elsewhere, "total": sum(data["records"].values()),
                "open_total": sum(data["open_exceptions"].values()), "token": self.c.runtime.token_state(),
                "replica": self.c.runtime.replica(), "store": self.c.store.description, "levels": values(Level),
                "now": utcnow()}

    async def overview(self, request: web.Request) -> web.Response:
        return self.c.render(request, "overview.html", **await self._overview())

    async def overview_live(self, request: web.Request) -> web.Response:
        """The overview's body alone, fetched by the page's script every few seconds."""
        return self.c.render(request, "_overview.html", **await self._overview())

    # --- exceptions ------------------------------------------------------------------------------------

    def _inbox_filter(self, request: web.Request) -> tuple[ExceptionFilter, dict[str, str]]:
        params = {k: request.query.get(k, "") for k in ("level", "code", "status", "nmi", "nmiPrefix", "age")}
        if "status" not in request.query:
            params["status"] = ExceptionStatus.OPEN  # the inbox opens on what needs action
        return exception_filter(params), {k: v for k, v in params.items() if v}

    async def exceptions(self, request: web.Request) -> web.Response:
        flt, params = self._inbox_filter(request)
        page, size = page_of(request.query)
        items, total = await self.c.store.exception_page(flt, page=page, page_size=size)
        pages = page_count(total, size)
        return self.c.render(request, "exceptions.html", items=items, total=total, page=page, size=size, pages=pages,
                             params=params, flt=flt, **_choices())

    async def exceptions_csv(self, request: web.Request) -> web.StreamResponse:
        """The filtered inbox as CSV, every row (streamed), with `exceptions list --format csv`'s
        fixed header."""
        flt, _params = self._inbox_filter(request)
        stamp = datetime.now(self.c.zone).strftime("%Y%m%d-%H%M")
        response = web.StreamResponse(headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="dersync-exceptions-{stamp}.csv"'})
        self.c.secured(response)  # streamed: the headers go before the guard sees the answer
        await response.prepare(request)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(EXCEPTION_CSV_COLUMNS), extrasaction="ignore")
        writer.writeheader()
        async for batch in self.c.store.exception_batches(flt):
            writer.writerows(_spreadsheet_safe(in_zone(row, self.c.zone)) for row in batch)
            await response.write(buffer.getvalue().encode())
            buffer.seek(0)
            buffer.truncate()
        await response.write(buffer.getvalue().encode())
        await response.write_eof()
        return response

    async def codes(self, request: web.Request) -> web.Response:
        flt, params = self._inbox_filter(request)
        groups = await self.c.store.exception_code_counts(flt)
        return self.c.render(request, "codes.html", groups=groups, params=params, flt=flt,
                             total=sum(g["count"] for g in groups), **_choices())

    # --- one NMI -----------------------------------------------------------------------------------------

    async def find_nmi(self, request: web.Request) -> web.StreamResponse:
        nmi = nmi_value("nmi", request.query.get("nmi"))
        if nmi is None:
            return see_other("/exceptions")
        return see_other("/nmi/" + _quoted(nmi))

    async def _nmi_page(self, request: web.Request, nmi: str, *, status: int = 200, message: str | None = None,
                        aemo: dict[str, Any] | None = None) -> web.Response:
        view = await self.c.store.nmi_view(nmi)
        if view is None:
            return self.c.render(request, "error.html", status=404, status_code=404,
                                 message=f"the store holds no record for NMI {nmi}")
        done = DONE.get(request.query.get("done", ""))
        return self.c.render(request, "nmi.html", status=status, nmi=nmi, view=view, aemo=aemo, message=message,
                             done=done, drift_rows=_drift_rows(view["drift"]))

    async def nmi(self, request: web.Request) -> web.Response:
        return await self._nmi_page(request, _nmi_of(request))

    async def read_aemo(self, request: web.Request) -> web.Response:
        """Read AEMO's copy now: one GET through the daemon's client (its budget, its lease)."""
        nmi = _nmi_of(request)
        form = await request.post()
        self.c.check_csrf(request, form.get("csrf"))
        part = Part.NMI if form.get("part") == Part.NMI else Part.INSTALLATION
        return await self._nmi_page(request, nmi, aemo=await self._aemo_copy(nmi, part))

    async def _aemo_copy(self, nmi: str, part: Part) -> dict[str, Any]:
        found: dict[str, Any] = {"part": part, "at": utcnow(), "rows": [], "diffs": [], "message": None}
        role = self.c.runtime.role()
        client = self.c.runtime.client()
        standby = (f"This replica is not the leader (role {role}): only the holder of the sender lease sends "
                   "requests to AEMO. Below: what the last reconciliation found.")
        if client is None or role != "leader":
            return {**found, "state": "standby", "message": standby}
        record = await self.c.store.record_view(nmi)
        assert record is not None
        try:
            if part == Part.NMI:
                response = await client.nmi.get(nmi)
            else:
                response = await client.installation.get(nmi)
        except LeaseLost:
            return {**found, "state": "standby", "message": standby}
        except AemoError as exc:
            return {**found, "state": "error", "message": f"AEMO could not be read: {exc}"}
        log.info("console.aemo_read", nmi=nmi, part=part, status=response.status,
                 transactionId=response.transaction_id)
        checked = check_record(nmi, record["nmi_details_json"], record["installation_json"],
                               self.c.settings.enumerations, self.c.settings.max_payload_bytes)
        part_check = checked.nmi_details if part == Part.NMI else checked.installation
        raw = record["nmi_details"] if part == Part.NMI else record["installation"]
        mine = part_check.payload if part_check is not None and part_check.valid else raw
        found["invalid_locally"] = part_check is not None and not part_check.valid
        found["transaction_id"] = response.transaction_id
        theirs = _copy_of(response)
        if theirs is None:
            found.update(state="absent", message=f"AEMO holds no {'NMI record' if part == Part.NMI else 'installation'}"
                                                 f" for {nmi} (HTTP {response.status}).")
            found["rows"] = side_by_side(mine if isinstance(mine, dict) else {}, None, [])
            return found
        if isinstance(mine, dict):
            if part == Part.NMI:
                diffs = compare_nmi_details(mine, theirs)
            else:
                ids = (await self.c.store.load_ids([nmi])).get(nmi, {})
                diffs = compare_installation(mine, theirs, ids)
        else:
            diffs = []
        found.update(state="read", diffs=diffs, rows=side_by_side(mine if isinstance(mine, dict) else {}, theirs,
                                                                   diffs))
        return found

    async def redrive_one(self, request: web.Request) -> web.StreamResponse:
        nmi = _nmi_of(request)
        form = await request.post()
        self.c.check_csrf(request, form.get("csrf"))
        identity = self.c.require_operator(request, "re-driving a record")
        try:
            reason = reason_of(form.get("reason"), required=False)
            await self.c.store.redrive(Selection(nmis=(nmi,)), actor=identity.name, reason=reason)
        except BadInput as exc:
            return await self._nmi_page(request, nmi, status=400, message=str(exc))
        log.info("console.redrive", user=identity.name, nmis=1, nmi=nmi)
        self.c.runtime.pass_soon()
        return see_other(f"/nmi/{_quoted(nmi)}?done=redriven")

    async def park(self, request: web.Request) -> web.StreamResponse:
        nmi = _nmi_of(request)
        form = await request.post()
        self.c.check_csrf(request, form.get("csrf"))
        identity = self.c.require_operator(request, "parking a record")
        try:
            reason = reason_of(form.get("reason"), required=True)
            assert reason is not None
            newly = await self.c.store.park(nmi, actor=identity.name, reason=reason)
        except BadInput as exc:
            return await self._nmi_page(request, nmi, status=400, message=str(exc))
        log.info("console.park", user=identity.name, nmi=nmi)
        return see_other(f"/nmi/{_quoted(nmi)}?done={'parked' if newly else 'reparked'}")

    async def unpark(self, request: web.Request) -> web.StreamResponse:
        nmi = _nmi_of(request)
        form = await request.post()
        self.c.check_csrf(request, form.get("csrf"))
        identity = self.c.require_operator(request, "unparking a record")
        try:
            reason = reason_of(form.get("reason"), required=False)
            changed = await self.c.store.unpark(nmi, actor=identity.name, reason=reason)
        except BadInput as exc:
            return await self._nmi_page(request, nmi, status=400, message=str(exc))
        if changed:
            log.info("console.unpark", user=identity.name, nmi=nmi)
            self.c.runtime.pass_soon()
        return see_other(f"/nmi/{_quoted(nmi)}?done={'unparked' if changed else 'not_parked'}")

    # --- bulk re-drive: preview, then confirm ------------------------------------------------------------

    @staticmethod
    def _selection(fields: MultiMapping[Any]) -> tuple[Selection, dict[str, Any]]:
        """The selection a preview or a confirmation names, and the fields that name it again."""
        nmis = [str(n) for n in fields.getall("nmi", [])] if fields.get("by") != "filter" else []
        if fields.get("by") == "filter":
            params = {k: str(fields.get(k, "")) for k in ("level", "code", "status", "nmi", "nmiPrefix", "age")}
            flt = exception_filter(params)
            if flt.empty:
                raise BadInput("a bulk re-drive needs a filter (a level, a code, a status, an NMI or an age)")
            return Selection(filter=flt), {"by": "filter", **{k: v for k, v in params.items() if v}}
        named = [n for n in (nmi_value("nmi", n) for n in nmis) if n is not None]
        if not named:
            raise BadInput("nothing to re-drive: select at least one NMI")
        return Selection(nmis=tuple(named)), {"nmi": sorted(set(named))}

    async def redrive_preview(self, request: web.Request, *, message: str | None = None,
                              status: int = 200, fields: MultiMapping[Any] | None = None) -> web.Response:
        selection, again = self._selection(fields if fields is not None else request.query)
        page = page_of({"page": request.query.get("page")}, PREVIEW_PAGE_SIZE)[0]
        resolved = await self.c.store.redrive_preview(selection)
        shown = resolved.nmis[(page - 1) * PREVIEW_PAGE_SIZE : page * PREVIEW_PAGE_SIZE]
        states = await self.c.store.record_states(shown)
        pages = page_count(len(resolved.nmis), PREVIEW_PAGE_SIZE)
        return self.c.render(request, "redrive.html", status=status, selection=selection, again=again,
                             resolved=resolved, shown=shown, states=states, page=page, pages=pages, message=message,
                             again_query=urlencode(again, doseq=True))

    async def redrive(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        self.c.check_csrf(request, form.get("csrf"))
        identity = self.c.require_operator(request, "re-driving records")
        selection, _again = self._selection(form)
        expect = str(form.get("expect", "")) or None
        try:
            reason = reason_of(form.get("reason"), required=False)
            action_id, resolved = await self.c.store.redrive(selection, actor=identity.name, reason=reason,
                                                             expect=expect)
        except (SelectionChanged, NothingSelected, BadInput) as exc:
            return await self.redrive_preview(request, message=str(exc), status=409 if isinstance(
                exc, SelectionChanged) else 400, fields=form)
        log.info("console.redrive", user=identity.name, nmis=len(resolved.nmis), parked=len(resolved.parked),
                 action_id=action_id, selection=selection.as_dict())
        self.c.runtime.pass_soon()
        return see_other(f"/activity?done=redrive&action={action_id}")

    # --- drift and activity -------------------------------------------------------------------------------

    async def drift(self, request: web.Request) -> web.Response:
        kind = request.query.get("kind") or None
        if kind is not None and kind not in values(DriftKind):
            raise BadInput(f"kind must be one of {', '.join(values(DriftKind))}, not {kind!r}")
        last, findings = await self.c.store.latest_drift(kind=kind)
        counts = await self.c.store.drift_counts()
        return self.c.render(request, "drift.html", last=last, findings=findings[:DRIFT_SHOWN], total=len(findings),
                             kind=kind, kinds=values(DriftKind), counts=counts, shown_at_most=DRIFT_SHOWN)

    async def activity(self, request: web.Request) -> web.Response:
        actions = await self.c.store.recent_actions(200)
        parked = await self.c.store.parked_records()
        done = DONE.get(request.query.get("done", ""))
        return self.c.render(request, "activity.html", actions=actions, parked=parked, done=done,
                             highlight=request.query.get("action", ""))


# --- helpers ----------------------------------------------------------------------------------------------


def _nmi_of(request: web.Request) -> str:
    nmi = nmi_value("NMI", request.match_info["nmi"])
    assert nmi is not None
    return nmi


def _quoted(nmi: str) -> str:
    return quote(nmi, safe="")


def _local_target(target: str | None) -> str:
    """Where to go after signing in: a path of this console only (never another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _choices() -> dict[str, Any]:
    return {"levels": values(Level), "statuses": values(ExceptionStatus), "ages": list(ExceptionAge)}


def _copy_of(response: AemoResponse) -> dict[str, Any] | None:
    if response.status != 200:
        return None
    data = response.data
    return data if isinstance(data, dict) else None


def _drift_rows(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"kind": f["kind"], "part": f["part"], "detail": f["detail"], "fields": f["fields"]} for f in findings]


#: Cells a spreadsheet would run as a formula start with one of these (OWASP's CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _spreadsheet_safe(row: dict[str, Any]) -> dict[str, Any]:
    """Text a spreadsheet would evaluate gets a leading apostrophe (numbers are left alone)."""
    safe = {}
    for key, value in row.items():
        if isinstance(value, str) and value.startswith(_FORMULA_STARTS) and not _is_number(value):
            value = "'" + value
        safe[key] = value
    return safe


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
