"""HTTP to AEMO's NMI and Installation APIs: headers, bodies, pacing, retries, classification.

What each answer means for the caller (see `classify_status`):

* a *business answer* (2xx, 400, 404, 409, 413, 422) comes back as an `AemoResponse`: the engine
  records it;
* 401: the token is invalidated and the request retried with a fresh one; a fresh token refused
  again is an `AuthError` (never a loop). A 401 for a token AEMO had already accepted is an
  expiry or revocation, not a refusal of our credentials, so it does not count towards that rule
  (a request caught by two expiries in a row still goes through); at most
  `MAX_TOKEN_REFRESHES_PER_REQUEST` refreshes per request whatever happens;
* 403, 405, 411, 415 (and any other unexpected status): `FatalError`, never a loop;
* 429, 408, 5xx, timeouts and dropped connections are *retriable*, waiting as dersync's one
  retry policy says (`dersync.retry`: exponential backoff with jitter, `Retry-After` honoured,
  at most `max_retries` times), then `RetriesExhausted`.

Writes are not idempotent at AEMO (a repeated POST is a duplicate create; a PUT whose connection
lacks a `connectionId` adds equipment). So a POST/PUT is retried only when it provably did not
take effect: 429, 408 and 503 (refused before processing), and connection failures before
anything was sent (`ClientConnectorError`: refused, DNS; connect timeouts). After a 500/502/504, a
timeout or a drop mid-request the transport raises `AmbiguousWriteError` at once and the engine
reads AEMO's state before trying again. aiohttp's own silent one-shot retry of "idempotent"
methods (which includes PUT) on a dropped keep-alive connection is switched off for that reason.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote, urlencode

import aiohttp
import structlog

from dersync import __version__
from dersync.errors import (
    AmbiguousWriteError,
    AuthError,
    FatalError,
    PayloadTooLarge,
    RetriesExhausted,
)
from dersync.retry import RetryPolicy, parse_retry_after
from dersync.settings import Settings
from dersync.wording import plural

from .auth import TokenProvider
from .pacing import Pacer
from .responses import AemoResponse, parse_response
from .sent import CURRENT_PASS, SentBody, SentLog, SentRequest

log = structlog.get_logger("dersync.aemo")

Api = Literal["nmi", "installation"]
Outcome = Literal["response", "refresh_token", "fatal", "retry", "retry_safe"]

#: Answers the engine records as the outcome of a request (not errors of the transport).
BUSINESS_STATUSES = frozenset({400, 404, 409, 413, 422})
#: Client bugs or missing permissions: retrying cannot help.
FATAL_STATUSES = frozenset({403, 405, 411, 415})
#: The server refused the request before processing it: safe to repeat even for writes.
NOT_PROCESSED_STATUSES = frozenset({408, 429, 503})
#: Transient, but a write may or may not have been applied.
MAYBE_PROCESSED_STATUSES = frozenset({500, 502, 504})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Names the sending process, so that AEMO support (and the simulator's log) can tell replicas apart.
USER_AGENT = f"dersync/{__version__} ({socket.gethostname()}; pid {os.getpid()})"
#: Upper bound on token refreshes within one request, whatever the cause of the 401s.
MAX_TOKEN_REFRESHES_PER_REQUEST = 3


@dataclass
class TransportStats:
    """Counters read by metrics and pass summaries."""

    requests: Counter[tuple[str, str, int]] = field(default_factory=Counter)  # (api, method, status)
    throttled: int = 0  # 429 answers
    retries: int = 0  # attempts repeated after a retriable failure
    dropped: int = 0  # connections lost before an answer
    timeouts: int = 0  # no answer within request_timeout_seconds
    refused: int = 0  # could not connect at all


def classify_status(status: int, method: str) -> Outcome:
    """What to do with an HTTP status for this method (the failure table, as one function)."""
    if 200 <= status < 300 or status in BUSINESS_STATUSES:
        return "response"
    if status == 401:
        return "refresh_token"
    if status in NOT_PROCESSED_STATUSES:
        return "retry_safe"
    if status in MAYBE_PROCESSED_STATUSES or 500 <= status < 600:
        return "retry"
    return "fatal"  # 403/405/411/415 and anything unexpected (3xx, other 4xx)


@dataclass(frozen=True)
class _Failure:
    """A retriable failure of one attempt, before deciding to retry or give up."""

    reason: str
    status: int | None = None
    retry_after: float | None = None
    transaction_id: str | None = None
    safe_for_writes: bool = False


@dataclass
class _Progress:
    """Where one logical request stands."""

    attempts: int = 0
    retries: int = 0  # repeats after retriable failures (bounded by max_retries)
    refreshes: int = 0  # token refreshes after 401s
    refused_fresh: int = 0  # 401s for tokens AEMO had never accepted


def _failure_from(response: AemoResponse, *, safe_for_writes: bool) -> _Failure:
    return _Failure(
        reason=f"HTTP {response.status}",
        status=response.status,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
        transaction_id=response.transaction_id,
        safe_for_writes=safe_for_writes,
    )


def encode_body(json_body: Any, *, compress: bool, max_bytes: int) -> SentBody:
    """Serialise compactly, check AEMO's size limit before anything is sent, gzip if asked.

    Raises `PayloadTooLarge` naming the size, compressed or not (AEMO counts both).
    """
    raw = json.dumps(json_body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    if len(raw) > max_bytes:
        raise PayloadTooLarge(
            f"request body is {len(raw):,} bytes, over AEMO's limit of {max_bytes:,} bytes; it was not sent"
        )
    body = SentBody.of(raw, compress=compress)
    if len(body.wire) > max_bytes:  # incompressible and near the limit
        raise PayloadTooLarge(
            f"request body is {len(body.wire):,} bytes gzip-compressed, over AEMO's limit of {max_bytes:,} bytes; "
            "it was not sent"
        )
    return body


@dataclass(frozen=True)
class _Call:
    """One logical request: where it goes, what it carries, and how logs and the ledger name it."""

    api: Api
    method: str
    url: str
    params: Mapping[str, str] | None
    ledger_path: str  # below the API's base URL, with the query
    nmi: str | None
    operation: str
    body: SentBody | None

    @property
    def context(self) -> dict[str, Any]:
        return {"api": self.api, "method": self.method, "nmi": self.nmi, "operation": self.operation}


def make_ssl_context(settings: Settings) -> ssl.SSLContext:
    """Mutual TLS: AEMO's CA bundle when given (else the system's), and the client certificate."""
    context = ssl.create_default_context(cafile=str(settings.tls_ca_bundle) if settings.tls_ca_bundle else None)
    if settings.tls_client_cert is not None and settings.tls_client_key is not None:
        context.load_cert_chain(str(settings.tls_client_cert), str(settings.tls_client_key))
    return context


def quote_segment(value: str) -> str:
    """One URL path segment (an NMI), escaped so it can never change the path."""
    return quote(value, safe="")


class Transport:
    """One aiohttp session for both APIs; every attempt waits for the shared `Pacer`."""

    def __init__(self, settings: Settings, tokens: TokenProvider, pacer: Pacer,
                 guard: Callable[[], None] | None = None) -> None:
        """`guard` is called right before every request leaves, after its pacing wait: it raises
        (`LeaseLost`) when this process may no longer send, so nothing goes out after a pause."""
        self.settings = settings
        self.tokens = tokens
        self.pacer = pacer
        self._guard = guard
        self.stats = TransportStats()
        #: Requests sent and not yet stored in the ledger (their owners take them).
        self.sent = SentLog()
        self._bases: dict[str, str] = {"nmi": settings.nmi_api_url, "installation": settings.installation_api_url}
        self._session: aiohttp.ClientSession | None = None
        # In-flight requests never exceed the connection pool, so a request that passed the pacer
        # goes out at once instead of queueing for a connection (which would bunch requests up).
        self._slots = asyncio.Semaphore(settings.concurrency)
        self.retry_policy = RetryPolicy.from_settings(settings)
        # Tokens AEMO has accepted at least once (most recent last). A 401 for one of these means
        # it expired or was revoked, not that AEMO refuses our credentials.
        self._proven_tokens: deque[str] = deque(maxlen=8)

    async def start(self) -> None:
        """Open the session (idempotent)."""
        if self._session is not None:
            return
        s = self.settings
        connector = aiohttp.TCPConnector(limit=s.concurrency, ssl=make_ssl_context(s))
        session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=s.request_timeout_seconds),
            raise_for_status=False,
            # AEMO's APIs take a bearer token, never a cookie: a real jar only costs a filtering
            # walk per request and a parse per answer.
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        # aiohttp silently re-sends GET/PUT once when a kept-alive connection drops; a PUT that
        # AEMO applied before the drop would then be applied twice. Retries are ours alone.
        if hasattr(session, "_retry_connection"):
            session._retry_connection = False
        self._session = session

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # --- the request --------------------------------------------------------------------------

    async def request(
        self,
        api: Api,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        nmi: str | None = None,
        operation: str,
    ) -> AemoResponse:
        """Send one logical request (with its retries) and return AEMO's business answer."""
        method = method.upper()
        body = None
        if json_body is not None:
            body = encode_body(json_body, compress=self.settings.compress_requests,
                               max_bytes=self.settings.max_payload_bytes)
        call = _Call(api, method, self._bases[api] + path, params,
                     path + ("?" + urlencode(params) if params else ""), nmi, operation, body)
        progress = _Progress()
        while True:
            progress.attempts += 1
            token = await self.tokens.token()
            result = await self._attempt(call, token, progress.attempts)
            if isinstance(result, AemoResponse):
                outcome = classify_status(result.status, method)
                if outcome == "response":
                    self._mark_proven(token)
                    return result
                if outcome == "refresh_token":
                    await self._after_401(token, result, progress, method, path)
                    continue
                if outcome == "fatal":
                    raise FatalError(_fatal_message(result, method, path), status=result.status,
                                     transaction_id=result.transaction_id)
                result = _failure_from(result, safe_for_writes=outcome == "retry_safe")
            self._raise_unless_retriable(result, progress, method, path)
            progress.retries += 1
            self.stats.retries += 1
            await self.retry_policy.pause(progress.retries, retry_after=result.retry_after)

    async def _after_401(self, token: str, response: AemoResponse, progress: _Progress, method: str,
                         path: str) -> None:
        """Drop the refused token; raise AuthError if this is the second fresh token refused."""
        await self.tokens.invalidate(token)
        progress.refused_fresh += token not in self._proven_tokens
        progress.refreshes += 1
        if progress.refused_fresh >= 2 or progress.refreshes > MAX_TOKEN_REFRESHES_PER_REQUEST:
            raise AuthError(
                f"AEMO refused a freshly issued token (401) for {method} {path}"
                f" (transactionId {response.transaction_id})",
                status=401, transaction_id=response.transaction_id,
            )

    def _raise_unless_retriable(self, failure: _Failure, progress: _Progress, method: str, path: str) -> None:
        """Writes that may have been applied are never repeated; nothing is retried for ever."""
        if method in WRITE_METHODS and not failure.safe_for_writes:
            raise AmbiguousWriteError(
                f"{method} {path} failed ({failure.reason}) in a way that leaves unknown whether AEMO applied it;"
                " read AEMO's state before writing again",
                status=failure.status, transaction_id=failure.transaction_id,
            )
        if not self.retry_policy.may_retry(progress.retries):
            raise RetriesExhausted(
                f"{method} {path} still failing after {plural(progress.retries + 1, 'attempt')} ({failure.reason})",
                status=failure.status, retry_after=failure.retry_after, transaction_id=failure.transaction_id,
            )

    def _mark_proven(self, token: str) -> None:
        if token not in self._proven_tokens:
            self._proven_tokens.append(token)

    async def _attempt(self, call: _Call, token: str, attempt: int) -> AemoResponse | _Failure:
        """One HTTP exchange: an `AemoResponse` for any status, or a `_Failure` if none came back."""
        if self._session is None:
            raise RuntimeError("Transport.start() was not called")
        headers = self._headers(token, call.body.headers if call.body is not None else {})
        data = call.body.wire if call.body is not None else None
        async with self._slots:
            await self.pacer.acquire()
            if self._guard is not None:
                self._guard()
            started, sent_at = time.monotonic(), datetime.now(UTC)
            try:
                async with self._session.request(call.method, call.url, data=data, params=call.params,
                                                 headers=headers) as resp:
                    raw = await resp.read()
                    response = parse_response(resp.status, raw, resp.headers)
            except aiohttp.ClientConnectorCertificateError as exc:
                raise FatalError(f"TLS certificate check failed for {call.api} API: {exc.certificate_error}; "
                                 "check tls_ca_bundle") from None
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                # Nothing reached AEMO: safe to repeat, even a write.
                self.stats.refused += 1
                return self._no_answer(call, attempt, started, sent_at, "cannot connect", exc, safe=True)
            except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
                self.stats.timeouts += 1
                return self._no_answer(call, attempt, started, sent_at, "timed out", exc, safe=False)
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                self.stats.dropped += 1
                return self._no_answer(call, attempt, started, sent_at, "connection dropped", exc, safe=False)
        self._record(response, call, attempt, started, sent_at)
        return response

    def _headers(self, token: str, body_headers: Mapping[str, str]) -> dict[str, str]:
        s = self.settings
        headers = {
            "Authorization": f"Bearer {token}",
            "X-initiatingParticipantID": s.participant_id or "",
            "X-market": s.market,
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
            **body_headers,
        }
        if s.api_key is not None:
            headers["x-apikey"] = s.api_key.get_secret_value()
        return headers

    def _record(self, response: AemoResponse, call: _Call, attempt: int, started: float, sent_at: datetime) -> None:
        """Count the answer, log one event for it (never headers, tokens or bodies), and keep it
        for the ledger."""
        status = response.status
        self.stats.requests[(call.api, call.method, status)] += 1
        if status == 429:
            self.stats.throttled += 1
        quiet = response.ok and call.method == "GET"
        emit = log.debug if quiet else (log.info if status < 500 and status != 429 else log.warning)
        emit("aemo.response", **call.context, status=status, transactionId=response.transaction_id, attempt=attempt,
             ms=round((time.monotonic() - started) * 1000))
        codes = [p.code for p in (*response.errors, *response.exceptions) if p.code]
        self._keep(call, attempt, sent_at, status=status, transaction_id=response.transaction_id, codes=codes)

    def _no_answer(self, call: _Call, attempt: int, started: float, sent_at: datetime, what: str,
                   exc: BaseException, *, safe: bool) -> _Failure:
        reason = f"{what}: {type(exc).__name__}"
        log.warning("aemo.no_response", **call.context, status=None, transactionId=None, attempt=attempt,
                    error=reason, ms=round((time.monotonic() - started) * 1000))
        self._keep(call, attempt, sent_at, error=reason)
        return _Failure(reason=reason, safe_for_writes=safe)

    def _keep(self, call: _Call, attempt: int, sent_at: datetime, *, status: int | None = None,
              error: str | None = None, transaction_id: str | None = None, codes: Sequence[str] = ()) -> None:
        body = call.body
        self.sent.add(SentRequest(
            sent_at=sent_at, answered_at=datetime.now(UTC) if status is not None else None, nmi=call.nmi,
            api=call.api, method=call.method, path=call.ledger_path, status=status, error=error,
            transaction_id=transaction_id, codes=tuple(codes), attempt=attempt, pass_id=CURRENT_PASS.get(),
            body_sha256=body.sha256 if body is not None else None, body_gzip=body.gzipped if body is not None else None,
        ))


def _fatal_message(response: AemoResponse, method: str, path: str) -> str:
    detail = next((p.detail or p.title for p in response.errors if p.detail or p.title), None)
    text = f"AEMO answered HTTP {response.status} to {method} {path} (transactionId {response.transaction_id})"
    hint = {
        403: "the participant id lacks permission, or the client certificate is not authorised",
        405: "client bug: wrong method for this path",
        411: "client bug: no Content-Length",
        415: "client bug: wrong Content-Type or Content-Encoding",
    }.get(response.status)
    return "; ".join(x for x in (text, detail, hint) if x)
