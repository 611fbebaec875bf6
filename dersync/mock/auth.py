"""AEMO's OAuth token endpoint and the bearer check in front of the NMI / Installation APIs.

From the OAuth v1 OpenAPI export: ``POST /oauth/v1/token`` with ``Authorization: Basic
base64(client_id:client_secret)`` and ``grant_type`` (a query parameter in AEMO's example; a form
body is accepted too, as OAuth clients normally send it). The documented 200 body is
non-standard (``acess_token`` sic, expiry as a string); ``token_body_style="standard"`` answers
RFC 6749 style instead so clients are proven against both. Tokens are opaque random strings,
valid for ``token_lifetime_seconds`` on the simulator's clock. Nothing secret is logged.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from .app import Simulator

TOKEN_PATH = "/oauth/v1/token"


class TokenStore:
    """Issued bearer tokens and their expiry on the simulator's monotonic clock."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._expiry: dict[str, float] = {}

    def issue(self, lifetime_seconds: float) -> str:
        now = self._clock()
        # Drop expired tokens so a long soak does not grow the table without bound.
        for tok in [t for t, exp in self._expiry.items() if exp <= now]:
            del self._expiry[tok]
        token = secrets.token_urlsafe(32)
        self._expiry[token] = now + lifetime_seconds
        return token

    def valid(self, token: str) -> bool:
        exp = self._expiry.get(token)
        return exp is not None and self._clock() < exp

    def revoke_all(self) -> None:
        """Invalidate every token (tests use it to force a 401 -> refresh path)."""
        self._expiry.clear()

    def __len__(self) -> int:
        return len(self._expiry)


def gateway_error(status: int, title: str, detail: str, source: str = "API Gateway") -> web.Response:
    """The OAuth API's error body: ``{"code": int, "title", "detail", "source"}``."""
    return web.json_response({"code": status, "title": title, "detail": detail, "source": source}, status=status)


def parse_basic(header: str | None) -> tuple[str, str] | None:
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def bearer_token(header: str | None) -> str | None:
    if not header or header[:7].lower() != "bearer ":
        return None
    token = header[7:].strip()
    return token or None


def api_key_ok(request: web.Request, expected: str | None) -> bool:
    """APIM subscription key: ``x-apikey`` header or ``subscription-key`` query parameter."""
    if expected is None:
        return True
    given = request.headers.get("x-apikey") or request.query.get("subscription-key") or ""
    return hmac.compare_digest(given.encode(), expected.encode())


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


async def token_endpoint(request: web.Request, sim: Simulator, txid: str) -> web.Response:
    """``POST /oauth/v1/token`` (the caller has already routed and applied latency/faults)."""
    cfg = sim.config
    if request.method != "POST":
        return gateway_error(
            405,
            "Method Not Allowed",
            f"Input request HTTP method is {request.method}, but operation accepts only [POST]",
            source="",
        )
    if not api_key_ok(request, cfg.api_key):
        return gateway_error(401, "Unauthorized", "Authorization failed")
    creds = parse_basic(request.headers.get("Authorization"))
    if creds is None or not (_same(creds[0], cfg.client_id) & _same(creds[1], cfg.client_secret)):
        return gateway_error(401, "Unauthorized", "Authorization failed")
    grant_type = request.query.get("grant_type")
    if grant_type is None and request.content_type == "application/x-www-form-urlencoded":
        form = await request.post()
        value = form.get("grant_type")
        grant_type = value if isinstance(value, str) else None
    if grant_type != "client_credentials":
        return gateway_error(400, "Bad Request", "grant_type must be client_credentials")
    lifetime = cfg.token_lifetime_seconds
    token = sim.tokens.issue(lifetime)
    sim.state.token_issued_total += 1
    body: dict[str, Any]
    if cfg.token_body_style == "aemo":
        body = {"transactionID": txid, "acess_token": token, "access_token_expires_in": str(lifetime)}
    else:
        body = {"access_token": token, "token_type": "Bearer", "expires_in": lifetime}
    return web.json_response(body, status=200)
