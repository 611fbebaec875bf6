"""The JSON API under `/api/v1/` (pinned: scripts rely on it). HTTP Basic or the console's
session; 401 without credentials, 403 for a viewer on a write; bad input is 400 (an NMI the
store does not hold 404) with `{"error": "one line"}`, and changes nothing.

* `GET /api/v1/summary`: the counts of `dersync status --format json`;
* `GET /api/v1/exceptions?level=&code=&status=&nmi=&nmiPrefix=&age=&page=&pageSize=`: `items` as
  `dersync exceptions list --format json` prints them, newest first, with `page`, `pageSize`,
  `total` and `pages`;
* `GET /api/v1/nmis/{nmi}`: the store's record, sync state, park, equipment ids, exceptions,
  actions, drift and the requests sent to AEMO;
* `POST /api/v1/redrive`: `{"nmis": [...]}` or `{"filter": {...}}`, `"preview": true|false`,
  optional `reason` and `expect` (a preview's fingerprint);
* `POST /api/v1/nmis/{nmi}/park` with `{"reason": "..."}`, `POST /api/v1/nmis/{nmi}/unpark`.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from dersync.console.app import Console, Forbidden
from dersync.console.auth import CSRF_HEADER
from dersync.console.forms import (
    FILTER_KEYS,
    PREVIEW_PAGE_SIZE,
    BadInput,
    exception_filter,
    json_body,
    nmi_value,
    only_known,
    page_count,
    page_of,
    reason_of,
    selection_of,
)
from dersync.store import NothingSelected, SelectionChanged

log = structlog.get_logger("dersync.console")


class Api:
    def __init__(self, console: Console) -> None:
        self.c = console

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/api/v1/summary", self.summary)
        router.add_get("/api/v1/exceptions", self.exceptions)
        router.add_get("/api/v1/nmis/{nmi}", self.nmi)
        router.add_post("/api/v1/redrive", self.redrive)
        router.add_post("/api/v1/nmis/{nmi}/park", self.park)
        router.add_post("/api/v1/nmis/{nmi}/unpark", self.unpark)

    def _write(self, request: web.Request, what: str) -> str:
        """Checks every write makes: JSON content (also for unpark's optional body: a form another
        site posts cannot have it), CSRF for a browser session, role operator. Returns the
        actor's name."""
        if request.content_type != "application/json":
            raise BadInput("send the body as JSON (Content-Type: application/json)")
        self.c.check_csrf(request, request.headers.get(CSRF_HEADER))
        return self.c.require_operator(request, what).name

    async def summary(self, request: web.Request) -> web.Response:
        return self.c.json(await self.c.store.status())

    async def exceptions(self, request: web.Request) -> web.Response:
        only_known(request.query, (*FILTER_KEYS, "page", "pageSize"), "parameter")
        flt = exception_filter(request.query)
        page, size = page_of(request.query)
        items, total = await self.c.store.exception_page(flt, page=page, page_size=size)
        return self.c.json({"items": items, "page": page, "pageSize": size, "total": total,
                            "pages": page_count(total, size), "filter": flt.as_dict()})

    async def nmi(self, request: web.Request) -> web.Response:
        nmi = _nmi(request)
        view = await self.c.store.nmi_view(nmi)
        if view is None:
            raise web.HTTPNotFound(reason=f"the store holds no record for NMI {nmi}")
        record = view["record"]
        parked = record["parked"]
        return self.c.json({
            "nmi": nmi,
            "record": {"nmiDetails": record["nmi_details"], "installation": record["installation"]},
            "sync": {"state": record["sync_state"], "due": record["due"], "revision": record["revision"],
                     "lastAttemptAt": record["last_attempt_at"], "lastSyncedAt": record["last_synced_at"],
                     "lastTransactionId": record["last_transaction_id"], "lastError": record["last_error"],
                     "attemptStartedAt": record["attempt_started_at"], "nmiAtAemo": record["nmi_at_aemo"],
                     "installationAtAemo": record["inst_at_aemo"]},
            "parked": {"at": record["parked_at"], "by": record["parked_by"], "reason": record["parked_reason"]}
            if parked else None,
            "equipment": view["equipment"],
            "exceptions": view["exceptions"],
            "actions": view["actions"],
            "drift": {"reconcilePassId": view["reconciliation"]["id"] if view["reconciliation"] else None,
                      "reconciledAt": view["reconciliation"]["started_at"] if view["reconciliation"] else None,
                      "findings": [{k: f[k] for k in ("kind", "part", "detail", "fields")} for f in view["drift"]]},
            "requests": view["ledger"],
        })

    async def redrive(self, request: web.Request) -> web.Response:
        actor = self._write(request, "re-driving records")
        body = await json_body(request)
        only_known(body, ("nmis", "filter", "preview", "reason", "expect", "page", "pageSize"), "key")
        preview = body.get("preview", False)
        if not isinstance(preview, bool):
            raise BadInput(f'"preview" must be true or false, not {preview!r}')
        selection = selection_of(body)
        reason = reason_of(body.get("reason"), required=False)
        expect = body.get("expect")
        if expect is not None and not isinstance(expect, str):
            raise BadInput('"expect" must be the fingerprint a preview answered')
        try:
            if preview:
                page, size = page_of(body, PREVIEW_PAGE_SIZE)
                resolved = await self.c.store.redrive_preview(selection)
                if not resolved.nmis:
                    raise NothingSelected("nothing to re-drive: the selection holds no NMI the store has")
                shown = resolved.nmis[(page - 1) * size : page * size]
                states = await self.c.store.record_states(shown)
                return self.c.json({
                    "preview": True, "count": len(resolved.nmis), "parked": len(resolved.parked),
                    "fingerprint": resolved.fingerprint, "page": page, "pageSize": size,
                    "pages": page_count(len(resolved.nmis), size),
                    "nmis": [{"nmi": nmi, **states.get(nmi, {})} for nmi in shown]})
            action_id, resolved = await self.c.store.redrive(selection, actor=actor, reason=reason, expect=expect)
        except NothingSelected as exc:
            raise BadInput(str(exc)) from None
        except SelectionChanged as exc:
            return self.c.json({"error": str(exc), "count": exc.count}, status=409)
        log.info("console.redrive", user=actor, nmis=len(resolved.nmis), parked=len(resolved.parked),
                 action_id=action_id, selection=selection.as_dict(), via="api")
        return self.c.json({"preview": False, "count": len(resolved.nmis), "parked": len(resolved.parked),
                            "fingerprint": resolved.fingerprint, "actionId": action_id,
                            "passRequested": self.c.runtime.pass_soon()})

    async def park(self, request: web.Request) -> web.Response:
        actor = self._write(request, "parking a record")
        nmi = _nmi(request)
        body = await json_body(request)
        only_known(body, ("reason",), "key")
        reason = reason_of(body.get("reason"), required=True)
        assert reason is not None
        newly = await self.c.store.park(nmi, actor=actor, reason=reason)
        log.info("console.park", user=actor, nmi=nmi, via="api")
        return self.c.json({"nmi": nmi, "parked": True, "changed": newly, "reason": reason})

    async def unpark(self, request: web.Request) -> web.Response:
        actor = self._write(request, "unparking a record")
        nmi = _nmi(request)
        body = await json_body(request, optional=True)
        only_known(body, ("reason",), "key")
        reason = reason_of(body.get("reason"), required=False)
        changed = await self.c.store.unpark(nmi, actor=actor, reason=reason)
        if changed:
            log.info("console.unpark", user=actor, nmi=nmi, via="api")
            self.c.runtime.pass_soon()
        return self.c.json({"nmi": nmi, "parked": False, "changed": changed})


def _nmi(request: web.Request) -> str:
    nmi = nmi_value("NMI", request.match_info["nmi"])
    assert nmi is not None
    return nmi


__all__ = ["Api", "Forbidden"]
