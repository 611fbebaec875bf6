"""The admin HTTP endpoints, for orchestrators (health, readiness) and Prometheus (metrics), and
the app the operator console (`dersync.console`) mounts itself on."""

from __future__ import annotations

import os
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog
from aiohttp import web

from dersync.admin.metrics import CONTENT_TYPE, Metrics
from dersync.errors import ConfigError

log = structlog.get_logger("dersync.admin")

#: Returns (ready, details) — details name what is wrong when not ready.
ReadinessCheck = Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]
StatusSource = Callable[[], Awaitable[dict[str, Any]]]


class Mountable(Protocol):
    """What adds routes to the admin app (the operator console)."""

    def mount(self, app: web.Application) -> None: ...


class AdminServer:
    def __init__(self, host: str, port: int, metrics: Metrics, readiness: ReadinessCheck, status: StatusSource,
                 *, console: Mountable | None = None, ssl_context: ssl.SSLContext | None = None) -> None:
        self.host, self.port = host, port
        self.metrics = metrics
        self.readiness = readiness
        self.status = status
        self.console = console
        self.ssl_context = ssl_context
        self._runner: web.AppRunner | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics_view)
        if self.console is not None:
            self.console.mount(app)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context)
        try:
            await site.start()
        except OSError as exc:
            await self.stop()
            # Another process on the port, or an address this host does not have: the operator
            # changes DERSYNC_ADMIN_BIND (or stops the other process); retrying cannot help.
            raise ConfigError([f"DERSYNC_ADMIN_BIND: cannot listen on {self.host}:{self.port}: "
                               f"{os.strerror(exc.errno) if exc.errno else exc}"]) from None
        sockets = getattr(site._server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        log.info("admin.listening", host=self.host, port=self.port, scheme=self.scheme,
                 console=self.console is not None)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def healthz(self, _request: web.Request) -> web.Response:
        """The process is alive and its event loop answers."""
        return web.json_response({"status": "alive"})

    async def readyz(self, _request: web.Request) -> web.Response:
        """Ready: the store answers and a valid AEMO token is held."""
        ready, details = await self.readiness()
        self.metrics.ready.set(1 if ready else 0)
        return web.json_response({"ready": ready, **details}, status=200 if ready else 503)

    async def metrics_view(self, _request: web.Request) -> web.Response:
        # `dersync_leader` and `dersync_ready` come from the readiness check: run it here too, so
        # a scrape is right even when nothing ever asks /readyz (it never raises).
        ready, _details = await self.readiness()
        self.metrics.ready.set(1 if ready else 0)
        try:
            self.metrics.update_from_status(await self.status())
        except Exception as exc:
            log.warning("admin.metrics.store_unavailable", error=str(exc))
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})
