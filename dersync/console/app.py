"""The operator console: server-rendered pages, the JSON API and sign-in, mounted by the daemon
on its admin app (`DERSYNC_ADMIN_BIND`) beside `/healthz`, `/readyz` and `/metrics`.

Everything but those three paths, the sign-in page and the console's own static files needs a
signed-in user (deny by default: a route added later is protected without anyone remembering
to). Pages are plain HTML from jinja2 templates (autoescaped); the only script is the console's
own small file (refresh while a pass runs, confirmation dialogs); nothing is loaded from
elsewhere, and the Content-Security-Policy says so to the browser.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Awaitable, Callable
from datetime import datetime
from importlib import resources
from typing import Any
from urllib.parse import urlencode

import structlog
from aiohttp import web
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from dersync.cli.output import in_zone, local_time
from dersync.console.auth import Authenticator, Identity, Refused, tokens_match, visit
from dersync.console.forms import BadInput
from dersync.console.passwords import hash_password, verify_password
from dersync.console.runtime import Runtime
from dersync.errors import StoreUnavailable
from dersync.logs import redact
from dersync.settings import Settings
from dersync.store import NotInStore, Store
from dersync.vocabulary import ActionKind, Role

log = structlog.get_logger("dersync.console")

#: Paths answered without signing in: probes and Prometheus (unchanged by the console).
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
#: Paths of the console that need no user: the sign-in page and the console's own files.
PUBLIC_PATHS = frozenset({"/login"})
STATIC_PREFIX = "/static/"
ADMIN_USER = "admin"

_SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; "
                                "object-src 'none'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
_STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".svg": "image/svg+xml", ".png": "image/png"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Console:
    """One per serving process: its settings, the store, and what the daemon lends it."""

    def __init__(self, settings: Settings, store: Store, runtime: Runtime) -> None:
        self.settings = settings
        self.store = store
        self.runtime = runtime
        self.zone = settings.zone
        self.auth = Authenticator(settings, store)
        self.static = _static_files()
        self.static_version = hashlib.sha256(b"".join(body for body, _type in self.static.values())).hexdigest()[:10]
        self.templates = Environment(loader=PackageLoader("dersync.console", "templates"),
                                     autoescape=select_autoescape(["html"], default=True),
                                     undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self.templates.filters.update(when=self.when, number=_number, seconds=_seconds, query=_query,
                                      pretty=_pretty, compact=_compact)
        self.templates.globals.update(static=self.static_url, Role=Role)
        if settings.admin_password is not None:
            redact(settings.admin_password.get_secret_value())

    def mount(self, app: web.Application) -> None:
        """Add the console's routes and its sign-in guard to the admin app."""
        from dersync.console.api import Api
        from dersync.console.pages import Pages

        app.middlewares.append(self.guard)
        app.router.add_get(STATIC_PREFIX + "{name}", self.static_file)
        Pages(self).add_routes(app.router)
        Api(self).add_routes(app.router)

    async def ensure_admin_user(self) -> None:
        """`DERSYNC_ADMIN_PASSWORD` makes (or keeps) user `admin` an operator with that password,
        so that a container starts usable from a secret file; the secret file stays the truth
        (a changed secret changes the password at the next start, and ends admin's sessions)."""
        secret = self.settings.admin_password
        if secret is None:
            return
        password = secret.get_secret_value()
        for attempt in (1, 2):
            stored = await self.store.credentials(ADMIN_USER)
            same = stored is not None and await verify_password(stored.password_hash, password)
            if stored is not None and same and stored.role == Role.OPERATOR:
                return
            try:
                created = await self.store.save_user(ADMIN_USER, Role.OPERATOR,
                                                     None if same else await hash_password(password))
                break
            except StoreUnavailable:
                if attempt == 2:
                    raise  # a replica starting beside this one made the user first: look again
        await self.store.log_action(ActionKind.USER_SAVED, actor="DERSYNC_ADMIN_PASSWORD",
                                    detail={"user": ADMIN_USER, "role": Role.OPERATOR, "created": created,
                                            "password_changed": not same})
        log.info("console.admin_user", user=ADMIN_USER, created=created, password_changed=not same,
                 source="DERSYNC_ADMIN_PASSWORD")

    # --- the guard -----------------------------------------------------------------------------

    @web.middleware
    async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS:
            return await handler(request)
        api = request.path.startswith("/api/")
        try:
            if request.path not in PUBLIC_PATHS and not request.path.startswith(STATIC_PREFIX):
                try:
                    identity = await self.auth.identify(request)
                except Refused as exc:
                    return self.secured(self.refused(request, exc, api))
                if identity is None:
                    return self.secured(self.sign_in_first(request, api))
                visit(request).identity = identity
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:  # a redirect raised by a handler
                return self.secured(web.Response(status=exc.status, headers=exc.headers))
            reason = "no such page" if exc.reason == "Not Found" else exc.reason
            response = self.error(request, exc.status, reason[:1].lower() + reason[1:], api)
        except BadInput as exc:
            response = self.error(request, 400, str(exc), api)
        except NotInStore as exc:  # an action or page named an NMI the store does not hold
            response = self.error(request, 404, str(exc), api)
        except StoreUnavailable as exc:
            log.warning("console.store_unavailable", path=request.path, error=str(exc))
            response = self.error(request, 503, f"the store is unavailable: {exc}", api)
        except Exception as exc:  # a bug: logged with its traceback, answered in one line
            log.exception("console.failed", path=request.path, method=request.method, error_type=type(exc).__name__)
            response = self.error(request, 500, f"unexpected {type(exc).__name__} (logged by the daemon)", api)
        cookie = visit(request).new_session
        if cookie is not None:
            self.auth.set_session_cookie(request, response, cookie)
        return self.secured(response)

    @staticmethod
    def secured(response: web.StreamResponse) -> web.StreamResponse:
        for name, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    def sign_in_first(self, request: web.Request, api: bool) -> web.StreamResponse:
        if api:
            return web.json_response({"error": "sign in first: HTTP Basic with a console user, or the console's "
                                               "session"}, status=401,
                                     headers={"WWW-Authenticate": 'Basic realm="dersync", charset="UTF-8"'})
        target = request.path_qs if request.method == "GET" else "/"
        query = {"next": target}
        ended = visit(request).session_ended
        if ended:
            query["ended"] = "1"
        response = see_other("/login?" + urlencode(query))
        if ended:
            self.auth.clear_session_cookie(request, response)
        return response

    def refused(self, request: web.Request, exc: Refused, api: bool) -> web.StreamResponse:
        headers = {}
        if exc.retry_after is not None:
            headers["Retry-After"] = str(math.ceil(exc.retry_after))
        if exc.status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="dersync", charset="UTF-8"'
        if api:
            return web.json_response({"error": str(exc)}, status=exc.status, headers=headers)
        return self.error(request, exc.status, str(exc), api, headers=headers)

    def error(self, request: web.Request, status: int, message: str, api: bool,
              headers: dict[str, str] | None = None) -> web.Response:
        if api:
            return web.json_response({"error": message}, status=status, headers=headers)
        return self.render(request, "error.html", status=status, headers=headers, status_code=status,
                           message=message)

    # --- helpers for the handlers ----------------------------------------------------------------

    @staticmethod
    def identity(request: web.Request) -> Identity:
        identity = visit(request).identity
        assert identity is not None
        return identity

    def render(self, request: web.Request, template: str, *, status: int = 200,
               headers: dict[str, str] | None = None, **context: Any) -> web.Response:
        identity = visit(request).identity
        body = self.templates.get_template(template).render(
            identity=identity, path=request.path, role=self.runtime.role(), **context)
        return web.Response(text=body, status=status, content_type="text/html", charset="utf-8", headers=headers)

    def json(self, value: Any, status: int = 200) -> web.Response:
        """JSON as the CLI prints it: times in the operator's zone, with their offset."""
        return web.json_response(in_zone(value, self.zone), status=status,
                                 dumps=lambda v: json.dumps(v, default=str))

    def check_csrf(self, request: web.Request, given: object) -> None:
        """Refuse a state-changing request whose token is not its session's (403)."""
        identity = self.identity(request)
        if identity.via == "basic":
            return  # a script's credential in its own header: no ambient authority to forge
        if not tokens_match(identity.csrf_token, given):
            log.warning("console.csrf.refused", user=identity.name, path=request.path)
            raise Forbidden("the form's security token is missing or stale (the page was from an earlier "
                            "session): reload the page and try again")

    def require_operator(self, request: web.Request, what: str) -> Identity:
        identity = self.identity(request)
        if not identity.may_act:
            raise Forbidden(f"role {identity.role} may only read: {what} needs role operator")
        return identity

    def when(self, moment: datetime | None) -> str:
        return "" if moment is None else local_time(moment, self.zone)

    def static_url(self, name: str) -> str:
        return f"{STATIC_PREFIX}{name}?v={self.static_version}"

    async def static_file(self, request: web.Request) -> web.StreamResponse:
        found = self.static.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        body, content_type = found
        return web.Response(body=body, headers={"Content-Type": content_type,
                                                "Cache-Control": "public, max-age=86400"})


class Forbidden(web.HTTPForbidden):
    """403 with a reason a person can act on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason=reason)


def _static_files() -> dict[str, tuple[bytes, str]]:
    folder = resources.files("dersync.console") / "static"
    files = {}
    for item in folder.iterdir():
        suffix = "." + item.name.rpartition(".")[2]
        if item.is_file() and suffix in _STATIC_TYPES:
            files[item.name] = (item.read_bytes(), _STATIC_TYPES[suffix])
    return files


def _number(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, int | float):
        return f"{value:,}"
    return str(value)


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _compact(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 60:
        return f"{value:.1f} s"
    minutes, seconds = divmod(int(value), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {seconds:02d} s"


def _query(params: dict[str, Any], **changes: Any) -> str:
    """A query string of `params` with `changes` (None drops a key)."""
    merged = {k: v for k, v in {**params, **changes}.items() if v not in (None, "")}
    return urlencode(merged, doseq=True)


def see_other(location: str) -> web.Response:
    """303: go there with a GET (after a form, so that reloading never repeats the action)."""
    return web.Response(status=303, headers={"Location": location})
