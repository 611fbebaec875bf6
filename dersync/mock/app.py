"""HTTP face of the AEMO simulator: routing, gateway checks, handlers, lifecycle.

Per NMI / Installation API request, in this order (first failure answers):

1. throttle (429; rejected requests do not count toward the window)
2. an outage window (``outage_after_requests`` / ``outage_seconds``: 503 for a fixed time), then
   fault injection (``fault_rate``: 500, 503, drop, drop_after_apply, or slow)
3. routing: unknown path 404, known path with the wrong method 405
4. ``x-apikey`` when configured, then the bearer token (401)
5. ``X-initiatingParticipantID`` and ``X-market: WEM`` (400), participant mismatch (403)
6. for POST/PUT: chunked or no Content-Length 411, Content-Type not application/json 415,
   unknown Content-Encoding 415, payload over 10 MB compressed or uncompressed 413,
   undecodable body / JSON 400 (code 1020)
7. the handler: JSON schema 400 (1020), 404, first level 422 (1000-1999), success 200/201 with
   second-level ``exceptions``.

Every response carries a ``transactionId`` (in the body where the body is an object, and always in
the ``X-Transaction-Id`` header). ``latency_seconds`` is added before every answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import re
import signal
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web

from . import validation as v
from .auth import TOKEN_PATH, TokenStore, api_key_ok, bearer_token, token_endpoint
from .config import SimulatorConfig
from .state import RegisterState, SimClock
from .throttle import SlidingWindowThrottle

log = structlog.get_logger("dersync.mock")

NMI_PREFIX = "/wem/v1/der-register"
INSTALLATION_PREFIX = "/v2/der-register"
TXID_HEADER = "X-Transaction-Id"
#: aiohttp's own body cap; the simulator applies AEMO's 10 MB rule itself, below this.
_CLIENT_MAX_SIZE = 64 * 1024 * 1024
#: How often a simulator with a state file persists a changed register.
STATE_FLUSH_SECONDS = 1.0


# ------------------------------------------------------------------------------------- lifecycle
class Simulator:
    """One simulated AEMO: config, register state, tokens, throttle, fault RNG and the server."""

    def __init__(self, config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config or SimulatorConfig()
        self.clock = SimClock()
        self.state = RegisterState(self.clock, self.config.state_file)
        self.tokens = TokenStore(self.clock.monotonic)
        self.throttle = SlidingWindowThrottle(self.config.rate_limit_per_minute, self.clock.monotonic)
        seed = self.config.seed
        self._fault_rng = random.Random(seed)
        self._oauth_rng = random.Random(None if seed is None else seed + 1)
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self._flusher: asyncio.Task[None] | None = None
        #: NMI / Installation API requests that passed the throttle (what starts an outage).
        self.admitted = 0
        #: When the configured outage began (the simulator's monotonic clock), once it has.
        self.outage_started: float | None = None

    # URLs -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    @property
    def oauth_token_url(self) -> str:
        return self.url + TOKEN_PATH

    @property
    def nmi_api_url(self) -> str:
        return self.url + NMI_PREFIX

    @property
    def installation_api_url(self) -> str:
        return self.url + INSTALLATION_PREFIX

    def client_settings(self) -> dict[str, str]:
        """The settings that aim a dersync client at this simulator with credentials it accepts
        (the demo and the tests); the participant id only when the simulator insists on one."""
        values = {
            "oauth_token_url": self.oauth_token_url,
            "nmi_api_url": self.nmi_api_url,
            "installation_api_url": self.installation_api_url,
            "client_id": self.config.client_id,
            "client_secret": self.config.client_secret,
        }
        if self.config.participant_id:
            values["participant_id"] = self.config.participant_id
        return values

    @property
    def running(self) -> bool:
        return self._runner is not None

    # start / stop ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Listen (again) on ``host:port``; after the first start the port stays fixed."""
        if self._runner is not None:
            return
        runner = web.AppRunner(
            create_app(self),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=0.5,
            auto_decompress=False,  # Content-Encoding is the simulator's business (413 rules)
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self.port = runner.addresses[0][1]
        self._runner = runner
        if self.config.state_file:
            self._flusher = asyncio.create_task(self._flush_every(STATE_FLUSH_SECONDS))
        log.info("aemo_simulator_started", url=self.url, response_shape=self.config.response_shape)

    async def stop(self) -> None:
        """Stop listening (clients then get connection refused); register state is kept."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        await runner.cleanup()
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        self.state.flush()
        log.info("aemo_simulator_stopped", url=self.url)

    async def _flush_every(self, seconds: float) -> None:
        """Persist the register periodically, so a killed simulator loses at most `seconds`."""
        while True:
            await asyncio.sleep(seconds)
            self.state.flush()

    # faults ---------------------------------------------------------------------------------
    def pick_fault(self) -> str | None:
        """Seeded draw: None (answer normally) or one of ``config.fault_kinds``."""
        cfg = self.config
        if cfg.fault_rate <= 0 or self._fault_rng.random() >= cfg.fault_rate:
            return None
        return self._fault_rng.choice(cfg.fault_kinds)

    def in_outage(self) -> bool:
        """Count one admitted API request; True while the configured outage lasts.

        The outage begins with the first request after ``outage_after_requests`` have been
        admitted and lasts ``outage_seconds`` by the simulator's clock, whatever is sent meanwhile.
        """
        self.admitted += 1
        cfg = self.config
        if cfg.outage_after_requests is None or cfg.outage_seconds <= 0:
            return False
        now = self.clock.monotonic()
        if self.outage_started is None:
            if self.admitted <= cfg.outage_after_requests:
                return False
            self.outage_started = now
            log.warning("aemo_simulator_outage_started", seconds=cfg.outage_seconds)
        return now < self.outage_started + cfg.outage_seconds

    def outage(self) -> dict[str, float | None]:
        """When the outage began and ends (monotonic clock; None before it began)."""
        started = self.outage_started
        return {"started": started, "ends": None if started is None else started + self.config.outage_seconds}

    def oauth_fault(self) -> bool:
        rate = self.config.oauth_fault_rate
        return rate > 0 and self._oauth_rng.random() < rate


@asynccontextmanager
async def run_simulator(
    config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[Simulator]:
    """Run a simulator on ``host:port`` (0 = a free port) for the duration of the block."""
    sim = Simulator(config, host=host, port=port)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


async def serve_forever(config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
    """Serve until SIGINT/SIGTERM (the ``dersync mock-aemo`` command)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        async with run_simulator(config, host, port) as sim:
            log.info(
                "aemo_simulator_urls",
                oauth_token_url=sim.oauth_token_url,
                nmi_api_url=sim.nmi_api_url,
                installation_api_url=sim.installation_api_url,
            )
            await stop.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


# ----------------------------------------------------------------------------------- responses
@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


def error_reply(status: int, txid: str, errors: list[v.ApiError] | v.ApiError,
                headers: dict[str, str] | None = None) -> Reply:
    errs = [errors] if isinstance(errors, v.ApiError) else errors
    return Reply(status, {"transactionId": txid, "errors": [e.as_dict() for e in errs]}, headers or {})


def _e(code: int | str, title: str, detail: str) -> v.ApiError:
    return v.ApiError(str(code), title, detail)


def _not_found(txid: str, detail: str = "ID not found") -> Reply:
    return error_reply(404, txid, _e(404, "Not found", detail))


# ------------------------------------------------------------------------------------- routing
@dataclass(frozen=True)
class Route:
    api: str  # "oauth" | "nmi" | "installation"
    pattern: re.Pattern[str]
    methods: dict[str, str]  # method -> route name


ROUTES = (
    Route("oauth", re.compile(re.escape(TOKEN_PATH) + "$"), {"POST": "oauth_token"}),
    Route("nmi", re.compile(re.escape(NMI_PREFIX) + r"/nmi-details$"), {"POST": "nmi_create"}),
    Route(
        "nmi",
        re.compile(re.escape(NMI_PREFIX) + r"/nmi-details/(?P<nmi>[^/]+)$"),
        {"GET": "nmi_get", "PUT": "nmi_update"},
    ),
    Route(
        "installation",
        re.compile(re.escape(INSTALLATION_PREFIX) + r"/installation$"),
        {"POST": "installation_create", "GET": "installation_list"},
    ),
    Route(
        "installation",
        re.compile(re.escape(INSTALLATION_PREFIX) + r"/installation/(?P<nmi>[^/]+)$"),
        {"GET": "installation_get", "PUT": "installation_update"},
    ),
    Route(
        "installation",
        re.compile(re.escape(INSTALLATION_PREFIX) + r"/installation/(?P<nmi>[^/]+)/history$"),
        {"GET": "installation_history"},
    ),
)


def resolve(path: str) -> tuple[Route | None, dict[str, str]]:
    for route in ROUTES:
        m = route.pattern.match(path)
        if m:
            return route, m.groupdict()
    return None, {}


def api_of(path: str) -> str | None:
    if path.startswith(NMI_PREFIX + "/") or path == NMI_PREFIX:
        return "nmi"
    if path.startswith(INSTALLATION_PREFIX + "/") or path == INSTALLATION_PREFIX:
        return "installation"
    return None


@dataclass
class Ctx:
    request: web.Request
    sim: Simulator
    txid: str
    params: dict[str, str]
    body: Any = None

    @property
    def cfg(self) -> SimulatorConfig:
        return self.sim.config

    @property
    def state(self) -> RegisterState:
        return self.sim.state


Handler = Callable[[Ctx], Awaitable[Reply]]


# -------------------------------------------------------------------------------- gateway checks
def check_headers(ctx: Ctx) -> Reply | None:
    req, cfg, txid = ctx.request, ctx.cfg, ctx.txid
    if not api_key_ok(req, cfg.api_key):
        return error_reply(401, txid, _e(401, "Unauthorised", "Authorization failed"))
    token = bearer_token(req.headers.get("Authorization"))
    if token is None or not ctx.sim.tokens.valid(token):
        return error_reply(401, txid, _e(401, "Unauthorised", "Authorization failed"))
    errs: list[v.ApiError] = []
    participant = req.headers.get("X-initiatingParticipantID", "").strip()
    market = req.headers.get("X-market", "").strip()
    if not participant:
        errs.append(_e(400, "Bad Request", "X-initiatingParticipantID header is required"))
    if not market:
        errs.append(_e(400, "Bad Request", "X-market header is required"))
    elif market != "WEM":
        errs.append(_e(400, "Bad Request", f"X-market must be WEM (got {market!r})"))
    if errs:
        return error_reply(400, txid, errs)
    if cfg.participant_id is not None and participant != cfg.participant_id:
        return error_reply(403, txid, _e(403, "Forbidden", "Insufficient privileges"))
    return None


def _decompress(raw: bytes, encoding: str, limit: int) -> bytes:
    """Inflate with a hard output cap (a zip bomb must not eat the simulator's memory)."""
    if encoding in ("", "identity"):
        return raw
    attempts = (31,) if encoding in ("gzip", "x-gzip") else (15, -15)  # deflate: zlib or raw
    last: Exception | None = None
    for wbits in attempts:
        d = zlib.decompressobj(wbits=wbits)
        try:
            out = d.decompress(raw, limit + 1)
        except zlib.error as exc:
            last = exc
            continue
        if len(out) > limit:
            raise OverflowError
        if not d.eof:
            raise ValueError("compressed body is truncated")
        return out
    raise ValueError(f"cannot decode {encoding} body: {last}")


async def read_json_body(ctx: Ctx) -> Reply | None:
    """Body gateway rules (411, 415, 413, 400); on success sets ``ctx.body``."""
    req, txid, limit = ctx.request, ctx.txid, ctx.cfg.max_payload_bytes
    if "chunked" in req.headers.get("Transfer-Encoding", "").lower() or "Content-Length" not in req.headers:
        return error_reply(411, txid, _e(411, "Length Required", "Content-Length header is required"))
    if "Content-Type" not in req.headers or req.content_type != "application/json":
        return error_reply(415, txid, _e(415, "Unsupported Media Type", "Content-Type must be application/json"))
    encoding = req.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity", "gzip", "x-gzip", "deflate"):
        return error_reply(
            415, txid,
            _e(415, "Unsupported Media Type", f"Content-Encoding {encoding!r} is not supported (gzip, deflate)"),
        )
    too_big = _e(413, "Payload Too Large", f"payload exceeds {limit} bytes (compressed or uncompressed)")
    if (req.content_length or 0) > limit:
        if (req.content_length or 0) <= _CLIENT_MAX_SIZE:
            # Drain (not store) the body so the connection stays usable and shutdown is prompt.
            while await req.content.readany():
                pass
        return error_reply(413, txid, too_big)
    raw = await req.read()
    if len(raw) > limit:
        return error_reply(413, txid, too_big)
    try:
        plain = _decompress(raw, encoding, limit)
    except OverflowError:
        return error_reply(413, txid, too_big)
    except ValueError as exc:
        return error_reply(400, txid, _e(400, "Bad Request", str(exc)))
    body, errs = v.parse_json(plain)
    if errs:
        return error_reply(400, txid, errs)
    ctx.body = body
    return None


# ------------------------------------------------------------------------------------ handlers
async def nmi_create(ctx: Ctx) -> Reply:
    body, st = ctx.body, ctx.state
    if errs := v.schema_nmi(body, ctx.cfg.reject_unknown_fields):
        return error_reply(400, ctx.txid, errs)
    errs = v.first_level_nmi(body)
    if v.valid_nmi(body.get("nmi")) and body["nmi"] in st.nmis:
        errs.append(_e(1001, "NMI already exists", f"NMI {body['nmi']} is already registered; use PUT"))
    if errs:
        return error_reply(422, ctx.txid, errs)
    return Reply(201, {"transactionId": ctx.txid, "data": st.create_nmi(body)})


async def nmi_get(ctx: Ctx) -> Reply:
    record = ctx.state.nmis.get(ctx.params["nmi"])
    if record is None:
        return _not_found(ctx.txid, f"ID not found: NMI {ctx.params['nmi']}")
    return Reply(200, {"transactionId": ctx.txid, "data": dict(record)})


async def nmi_update(ctx: Ctx) -> Reply:
    body, st, nmi = ctx.body, ctx.state, ctx.params["nmi"]
    if errs := v.schema_nmi(body, ctx.cfg.reject_unknown_fields):
        return error_reply(400, ctx.txid, errs)
    if nmi not in st.nmis:
        return _not_found(ctx.txid, f"ID not found: NMI {nmi}")
    if errs := v.first_level_nmi(body, path_nmi=nmi):
        return error_reply(422, ctx.txid, errs)
    return Reply(200, {"transactionId": ctx.txid, "data": st.update_nmi(nmi, body)})


def _assessor(ctx: Ctx) -> Callable[[dict[str, Any]], tuple[list[dict[str, Any]], set[int], set[int]]]:
    index = v.equipment_index(ctx.cfg.known_equipment)
    return lambda inst: v.second_level(inst, index)


def shape_one(ctx: Ctx, inst: dict[str, Any], exceptions: list[dict[str, Any]]) -> dict[str, Any]:
    if ctx.cfg.response_shape == "wrapped":
        return {"transactionId": ctx.txid, "data": inst, "exceptions": exceptions}
    return {**inst, "transactionId": ctx.txid, "exceptions": exceptions}


async def installation_create(ctx: Ctx) -> Reply:
    body, st = ctx.body, ctx.state
    if errs := v.schema_installation(body, ctx.cfg.reject_unknown_fields, ctx.cfg.withdrawn_fields):
        return error_reply(400, ctx.txid, errs)
    data = body["data"]
    errs = v.first_level_installation(data)
    nmi = data.get("nmi")
    if v.valid_nmi(nmi):
        if nmi in st.installations:
            errs.append(_e(1002, "Installation already exists", f"NMI {nmi} already has an installation; use PUT"))
        if nmi not in st.nmis:
            errs.append(_e(1003, "NMI not registered",
                           f"NMI {nmi} has no NMI record; create it with the NMI API first"))
    if errs:
        return error_reply(422, ctx.txid, errs)
    inst, exceptions = st.create_installation(data, _assessor(ctx))
    return Reply(201, shape_one(ctx, inst, exceptions))


async def installation_update(ctx: Ctx) -> Reply:
    body, st, nmi = ctx.body, ctx.state, ctx.params["nmi"]
    if errs := v.schema_installation(body, ctx.cfg.reject_unknown_fields, ctx.cfg.withdrawn_fields):
        return error_reply(400, ctx.txid, errs)
    if nmi not in st.installations:
        return _not_found(ctx.txid, f"ID not found: no installation for NMI {nmi}")
    data = body["data"]
    errs = v.first_level_installation(data, path_nmi=nmi) + v.check_ids(st.installations[nmi], data)
    if errs:
        return error_reply(422, ctx.txid, errs)
    inst, exceptions = st.update_installation(nmi, data, _assessor(ctx))
    return Reply(200, shape_one(ctx, inst, exceptions))


async def installation_get(ctx: Ctx) -> Reply:
    nmi = ctx.params["nmi"]
    inst = ctx.state.get_installation(nmi)
    if inst is None:
        return _not_found(ctx.txid, f"ID not found: no installation for NMI {nmi}")
    return Reply(200, shape_one(ctx, inst, list(ctx.state.exceptions.get(nmi, []))))


async def installation_history(ctx: Ctx) -> Reply:
    nmi = ctx.params["nmi"]
    versions = ctx.state.history.get(nmi)
    if nmi not in ctx.state.installations or not versions:
        return _not_found(ctx.txid, f"ID not found: no installation for NMI {nmi}")
    data = [dict(x) for x in versions]
    if ctx.cfg.response_shape == "bare":
        return Reply(200, data)
    return Reply(200, {"transactionId": ctx.txid, "data": data, "exceptions": list(ctx.state.exceptions.get(nmi, []))})


async def installation_list(ctx: Ctx) -> Reply:
    query, errs = v.parse_list_query(ctx.request.query, ctx.cfg.max_nmis_per_query)
    if errs or query is None:
        return error_reply(400, ctx.txid, errs)
    found = ctx.state.query(lambda inst: v.matches(inst, query), query.nmis)
    total = len(found)
    pages = math.ceil(total / query.page_size)
    start = (query.page - 1) * query.page_size
    page = [inst for nmi in found[start : start + query.page_size] if (inst := ctx.state.get_installation(nmi))]
    exceptions = [e for inst in page for e in ctx.state.exceptions.get(inst["nmi"], [])]
    paging = {"page": query.page, "pageSize": query.page_size, "totalPages": pages, "totalRecords": total}
    if ctx.cfg.response_shape == "bare":
        headers = {}
        if ctx.cfg.bare_list_paging_headers:
            headers = {
                "X-Page": str(query.page),
                "X-Page-Size": str(query.page_size),
                "X-Total-Pages": str(pages),
                "X-Total-Records": str(total),
            }
        return Reply(200, page, headers)
    return Reply(200, {"transactionId": ctx.txid, "data": page, "exceptions": exceptions, **paging})


HANDLERS: dict[str, Handler] = {
    "nmi_create": nmi_create,
    "nmi_get": nmi_get,
    "nmi_update": nmi_update,
    "installation_create": installation_create,
    "installation_update": installation_update,
    "installation_get": installation_get,
    "installation_history": installation_history,
    "installation_list": installation_list,
}


async def handle_api(ctx: Ctx, route: Route | None, name: str) -> Reply:
    """Steps 3-7 of the module docstring for one NMI / Installation API request."""
    req, txid = ctx.request, ctx.txid
    if route is None:
        return _not_found(txid, f"Resource not found: {req.path}")
    if name == "method_not_allowed":
        return error_reply(
            405,
            txid,
            _e(405, "Method Not Allowed", f"Invalid method {req.method} for path {req.path}"),
            {"Allow": ", ".join(route.methods)},
        )
    if failure := check_headers(ctx):
        return failure
    if req.method in ("POST", "PUT") and (failure := await read_json_body(ctx)):
        return failure
    return await HANDLERS[name](ctx)


# ------------------------------------------------------------------------------------ dispatch
def _route_name(route: Route | None, method: str) -> str:
    if route is None:
        return "unknown"
    return route.methods.get(method, "method_not_allowed")


def _respond(reply: Reply, txid: str) -> web.Response:
    headers = {TXID_HEADER: txid, **reply.headers}
    if reply.body is None:
        return web.Response(status=reply.status, headers=headers)
    return web.json_response(reply.body, status=reply.status, headers=headers)


async def _drop(request: web.Request) -> web.Response:
    """Close the connection without an answer (the client sees a disconnect)."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    return web.Response(status=500)  # never reaches the client


async def dispatch(request: web.Request) -> web.StreamResponse:
    sim: Simulator = request.app[SIM_KEY]
    st, cfg = sim.state, sim.config
    path, method = request.path, request.method
    if path.startswith("/_sim/"):
        return await admin(request, sim)
    st.requests_total += 1
    txid = str(uuid.uuid4())
    agent = request.headers.get("User-Agent", "")
    route, params = resolve(path)
    name = _route_name(route, method)
    api = route.api if route is not None else api_of(path)

    if api == "oauth":
        if cfg.latency_seconds:
            await asyncio.sleep(cfg.latency_seconds)
        if sim.oauth_fault():
            st.faults["oauth_500"] += 1
            response = web.json_response(
                {"code": 500, "title": "Internal Server Error", "detail": "Internal Server Error", "source": ""},
                status=500,
            )
        else:
            response = await token_endpoint(request, sim, txid)
        response.headers[TXID_HEADER] = txid
        st.record_request(method, path, name, response.status, txid, agent)
        return response

    if api is None:  # outside every API: the gateway's 404
        reply = _not_found(txid, f"Resource not found: {path}")
        st.record_request(method, path, name, reply.status, txid, agent)
        return _respond(reply, txid)

    # 1. throttle ------------------------------------------------------------------------
    sim.throttle.limit = cfg.rate_limit_per_minute
    if not sim.throttle.try_acquire():
        st.throttled_total += 1
        headers: dict[str, str] = {}
        if cfg.retry_after_seconds is not None:
            headers["Retry-After"] = str(max(0, math.ceil(cfg.retry_after_seconds)))
        reply = error_reply(
            429,
            txid,
            _e(429, "Too Many Requests",
               f"DER Register calls allow a maximum of {cfg.rate_limit_per_minute} requests per minute"),
            headers,
        )
        if cfg.latency_seconds:
            await asyncio.sleep(cfg.latency_seconds)
        st.record_request(method, path, name, 429, txid, agent)
        return _respond(reply, txid)
    st.max_requests_in_any_window = max(st.max_requests_in_any_window, sim.throttle.max_in_window)

    # 2. outage, then faults ------------------------------------------------------------------
    if sim.in_outage():
        # AEMO's API is down behind its gateway: 503, nothing applied, however often it is asked.
        st.faults["outage_503"] += 1
        if cfg.latency_seconds:
            await asyncio.sleep(cfg.latency_seconds)
        st.record_request(method, path, name, 503, txid, agent)
        return _respond(error_reply(503, txid, _e(503, "Service Unavailable", "The API is not currently available")),
                        txid)
    fault = sim.pick_fault()
    if fault is not None:
        st.faults[fault] += 1
    if fault in ("500", "503"):
        status = int(fault)
        title = "Internal Server error" if status == 500 else "Service Unavailable"
        detail = "Internal Server error" if status == 500 else "The API is not currently available"
        if cfg.latency_seconds:
            await asyncio.sleep(cfg.latency_seconds)
        st.record_request(method, path, name, status, txid, agent)
        return _respond(error_reply(status, txid, _e(status, title, detail)), txid)
    if fault == "drop":
        with contextlib.suppress(Exception):
            await request.read()
        st.record_request(method, path, name, 0, txid, agent)
        return await _drop(request)

    # 3-7. the API proper --------------------------------------------------------------------
    reply = await handle_api(Ctx(request, sim, txid, params), route, name)
    if fault == "drop_after_apply":
        st.record_request(method, path, name, 0, txid, agent)
        return await _drop(request)
    if fault == "slow":  # applied, but the answer comes after the client has given up
        await asyncio.sleep(cfg.slow_fault_seconds)
    if cfg.latency_seconds:
        await asyncio.sleep(cfg.latency_seconds)
    st.record_request(method, path, name, reply.status, txid, agent)
    return _respond(reply, txid)


async def admin(request: web.Request, sim: Simulator) -> web.Response:
    """Unauthenticated, unthrottled, uncounted helpers for demos: health and a state dump."""
    if request.path == "/_sim/health":
        return web.json_response({"status": "ok"})
    if request.path == "/_sim/state" and request.method == "GET":
        return web.json_response(sim.state.snapshot())
    if request.path == "/_sim/counters" and request.method == "GET":
        # The counters alone: a register of a million installations is no per-second poll.
        return web.json_response({**sim.state.counters(), "outage": sim.outage()})
    return web.json_response({"errors": [{"code": "404", "title": "Not found", "detail": request.path}]}, status=404)


SIM_KEY = web.AppKey("dersync_simulator", Simulator)


def create_app(sim: Simulator) -> web.Application:
    """An aiohttp application serving ``sim`` (one catch-all route; routing is ours)."""
    app = web.Application(client_max_size=_CLIENT_MAX_SIZE)
    app[SIM_KEY] = sim
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app
