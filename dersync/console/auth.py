"""Who is asking: browser sessions, HTTP Basic for scripts, and a trusted single sign-on header.

* **Sessions.** Signing in with the form makes a random session id (32 bytes); the cookie holds
  it (HttpOnly, SameSite=Lax, Secure over TLS), the store only its SHA-256, with the session's
  CSRF token and its expiry: `admin_session_lifetime_seconds` after sign-in, or
  `admin_session_idle_seconds` after the last request, whichever comes first. Signing out, a
  new password and removing the user end it.
* **CSRF.** Every state-changing form carries the session's token (compared in constant time);
  an API write with the session cookie carries it in `X-CSRF-Token`; the sign-in form itself is
  guarded by a double-submit cookie. A token from an ended session matches nothing.
* **Guessing.** A wrong password is answered after `admin_signin_failure_delay_seconds`, and
  after `admin_signin_failures_per_user` failures for a name (or `..._per_address` from an
  address) within `admin_signin_window_seconds`, sign-in is refused (429) without checking,
  for forms and Basic alike. Unknown names cost the same hash check as known ones.
* **Scripts.** `/api/v1/` also takes HTTP Basic with the same users; a verified credential is
  remembered for a minute (keyed by an HMAC, never the password) so that a script's requests do
  not each cost an argon2 check.
* **Single sign-on.** With `admin_auth_proxy_header` set, a request from an address in
  `admin_auth_proxy_trusted` that carries the header is that user; the role is the highest of
  the stored user's, the name's and its groups' mapping (`admin_auth_proxy_roles`), else viewer.
  The header from any other address is ignored (and logged).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from aiohttp import web

from dersync.console.passwords import verify_password
from dersync.settings import Settings
from dersync.store import Session, Store
from dersync.vocabulary import Role

log = structlog.get_logger("dersync.console")

SESSION_COOKIE = "dersync_session"
SIGNIN_COOKIE = "dersync_signin"
CSRF_HEADER = "X-CSRF-Token"
#: How stale `last_seen_at` may get before a request writes it again (a write per minute per
#: session at most, not one per request; sooner when the idle limit is short).
TOUCH_EVERY = timedelta(seconds=60)
#: How long a verified Basic credential is remembered.
BASIC_CACHE_SECONDS = 60.0
#: Names and addresses the sign-in throttle remembers at most (the oldest are forgotten first).
THROTTLE_KEYS = 10_000
_ROLE_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1}


@dataclass(frozen=True)
class Identity:
    """A signed-in user, however they signed in."""

    name: str
    role: Role
    via: str  # "session" | "basic" | "proxy"
    csrf_token: str | None = None  # None for Basic (a script has no forms)
    session_id: str | None = None  # SHA-256 of the cookie

    @property
    def may_act(self) -> bool:
        return self.role == Role.OPERATOR


@dataclass
class Visit:
    """What the console learns about one request on its way through (one per request)."""

    identity: Identity | None = None
    #: A session cookie to set on the answer (a proxy user's first request).
    new_session: str | None = None
    #: The request's session cookie named a session that has ended (expired, signed out).
    session_ended: bool = False


VISIT = web.RequestKey("dersync.console.visit", Visit)


def visit(request: web.Request) -> Visit:
    found = request.get(VISIT)
    if found is None:
        found = Visit()
        request[VISIT] = found
    return found


class Refused(Exception):
    """Credentials were given and refused (401), or sign-in is throttled (429)."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class Throttle:
    """Failed sign-ins per user name and per address within a sliding window (in memory: each
    replica counts its own; behind a load balancer the limit applies per replica)."""

    def __init__(self, per_user: int, per_address: int, window: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = {"user": per_user, "address": per_address}
        self.window = window
        self._clock = clock
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()

    def wait(self, name: str, address: str) -> float | None:
        """Seconds until this name and address may try again; None when they may now."""
        now = self._clock()
        waits = []
        for kind, key in (("user", name.lower()), ("address", address)):
            failures = self._recent((kind, key), now)
            if failures is not None and len(failures) >= self.limits[kind]:
                waits.append(failures[0] + self.window - now)
        return max(waits) if waits else None

    def failed(self, name: str, address: str) -> None:
        now = self._clock()
        for key in (("user", name.lower()), ("address", address)):
            failures = self._recent(key, now) or deque()
            failures.append(now)
            self._failures[key] = failures
            self._failures.move_to_end(key)
        while len(self._failures) > THROTTLE_KEYS:
            self._failures.popitem(last=False)

    def succeeded(self, name: str) -> None:
        self._failures.pop(("user", name.lower()), None)

    def _recent(self, key: tuple[str, str], now: float) -> deque[float] | None:
        failures = self._failures.get(key)
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        return failures


def client_address(request: web.Request, trusted: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> str:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the last address
    it added to X-Forwarded-For."""
    peer = request.remote or ""
    if _in(peer, trusted):
        forwarded = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",") if part.strip()]
        if forwarded:
            return forwarded[-1]
    return peer


def _in(address: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    return any(parsed in network for network in networks)


def over_tls(request: web.Request, trusted: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    """Served over TLS: directly, or by a trusted proxy that says so (X-Forwarded-Proto)."""
    if request.secure:
        return True
    return _in(request.remote or "", trusted) and request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class Authenticator:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.lifetime = timedelta(seconds=settings.admin_session_lifetime_seconds)
        self.idle = timedelta(seconds=settings.admin_session_idle_seconds)
        self.touch_every = min(TOUCH_EVERY, self.idle / 4)
        self.throttle = Throttle(settings.admin_signin_failures_per_user, settings.admin_signin_failures_per_address,
                                 settings.admin_signin_window_seconds)
        self.trusted = settings.auth_proxy_networks if settings.admin_auth_proxy_header else []
        self.roles = settings.auth_proxy_role_map
        self._cache_key = secrets.token_bytes(32)
        self._verified: dict[str, tuple[float, str]] = {}

    # --- who is asking -------------------------------------------------------------------------

    async def identify(self, request: web.Request) -> Identity | None:
        """The request's user, or None (not signed in, or the session ended). Raises `Refused`
        for a Basic credential that is wrong or throttled. May note a new session cookie to set
        (`Visit.new_session`: proxy users get one for their CSRF token)."""
        session = await self._session(request)
        proxied = self._proxy_user(request)
        if proxied is not None:
            return await self._proxy_identity(request, proxied, session)
        authorization = request.headers.get("Authorization", "")
        if authorization[:6].lower() == "basic " and request.path.startswith("/api/"):
            return await self._basic(request, authorization[6:])
        if session is not None and session.via == "password" and session.role is not None:
            return Identity(session.user_name, Role(session.role), "session", session.csrf_token, session.id_sha256)
        return None

    async def _session(self, request: web.Request) -> Session | None:
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie or len(cookie) > 200:
            return None
        sid = _sha256(cookie)
        session = await self.store.session(sid)
        if session is None:
            visit(request).session_ended = True
            return None
        now = datetime.now(UTC)
        if session.expires_at <= now or session.last_seen_at <= now - self.idle:
            await self.store.end_session(sid)
            visit(request).session_ended = True
            return None
        if session.last_seen_at <= now - self.touch_every:
            await self.store.touch_session(sid)
        return session

    def _proxy_user(self, request: web.Request) -> str | None:
        header = self.settings.admin_auth_proxy_header
        if header is None or header not in request.headers:
            return None
        name = request.headers[header].strip()
        if not _in(request.remote or "", self.trusted):
            log.warning("console.auth_proxy.untrusted", address=request.remote, header=header,
                        detail="the sign-on header came from an address not in DERSYNC_ADMIN_AUTH_PROXY_TRUSTED; "
                               "ignored")
            return None
        if not name or len(name) > 256 or not name.isprintable():
            return None
        return name

    async def _proxy_identity(self, request: web.Request, name: str, session: Session | None) -> Identity:
        stored = await self.store.credentials(name)
        candidates = [Role.VIEWER]
        if stored is not None:
            candidates.append(Role(stored.role))
        if name in self.roles:
            candidates.append(Role(self.roles[name]))
        groups_header = self.settings.admin_auth_proxy_groups_header
        if groups_header is not None:
            for group in request.headers.get(groups_header, "").split(","):
                mapped = self.roles.get(f"group:{group.strip()}")
                if group.strip() and mapped is not None:
                    candidates.append(Role(mapped))
        role = max(candidates, key=lambda r: _ROLE_RANK[r])
        if session is None or session.via != "proxy" or session.user_name != name:
            cookie, session = await self._new_session(name, "proxy")
            visit(request).new_session = cookie
        return Identity(name, role, "proxy", session.csrf_token, session.id_sha256)

    async def _basic(self, request: web.Request, encoded: str) -> Identity:
        try:
            name, colon, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise Refused(401, "the Authorization header is not valid HTTP Basic") from None
        if not colon or not name:
            raise Refused(401, "the Authorization header is not valid HTTP Basic")
        address = client_address(request, self.trusted)
        stored = await self.store.credentials(name)
        key = hmac.new(self._cache_key, "\0".join((name, password, stored.password_hash if stored else "")).encode(),
                       hashlib.sha256).hexdigest()
        cached = self._verified.get(key)
        if stored is not None and cached is not None and cached[0] > time.monotonic():
            return Identity(stored.name, Role(stored.role), "basic")
        await self._check_password(name, password, address, stored.password_hash if stored else None)
        assert stored is not None
        if len(self._verified) > 1000:
            self._verified.clear()
        self._verified[key] = (time.monotonic() + BASIC_CACHE_SECONDS, name)
        return Identity(stored.name, Role(stored.role), "basic")

    async def _check_password(self, name: str, password: str, address: str, password_hash: str | None) -> None:
        """Return when the password is right; raise `Refused` (slowly) when not."""
        wait = self.throttle.wait(name, address)
        if wait is not None:
            log.warning("console.signin.throttled", user=name, address=address, retry_after_seconds=round(wait))
            raise Refused(429, f"too many failed sign-ins for this user or address: try again in "
                               f"{_minutes(wait)}", retry_after=wait)
        if await verify_password(password_hash, password):
            self.throttle.succeeded(name)
            return
        self.throttle.failed(name, address)
        log.warning("console.signin.failed", user=name, address=address,
                    reason="no such user" if password_hash is None else "wrong password")
        await asyncio.sleep(self.settings.admin_signin_failure_delay_seconds)
        raise Refused(401, "wrong user name or password")

    # --- signing in and out --------------------------------------------------------------------

    async def sign_in(self, request: web.Request, name: str, password: str) -> tuple[str, Identity]:
        """Check the form's credentials; (cookie value, identity) of a new session, or `Refused`."""
        address = client_address(request, self.trusted)
        stored = await self.store.credentials(name)
        await self._check_password(name, password, address, stored.password_hash if stored else None)
        assert stored is not None
        await self.store.end_expired_sessions(datetime.now(UTC) - self.idle)
        cookie, session = await self._new_session(stored.name, "password")
        log.info("console.signin", user=stored.name, role=stored.role, address=address)
        return cookie, Identity(stored.name, Role(stored.role), "session", session.csrf_token, session.id_sha256)

    async def _new_session(self, name: str, via: str) -> tuple[str, Session]:
        cookie = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        session = Session(_sha256(cookie), name, via, secrets.token_urlsafe(32), now, now, now + self.lifetime, None)
        await self.store.create_session(session)
        return cookie, session

    async def sign_out(self, identity: Identity) -> None:
        if identity.session_id is not None:
            await self.store.end_session(identity.session_id)
        log.info("console.signout", user=identity.name)

    # --- cookies and tokens ------------------------------------------------------------------------

    def set_session_cookie(self, request: web.Request, response: web.StreamResponse, value: str) -> None:
        # No Max-Age: the cookie goes with the browser; the store ends the session sooner (its
        # lifetime and idle limit), and the next page then says that the session ended.
        response.set_cookie(SESSION_COOKIE, value, path="/", httponly=True, samesite="Lax",
                            secure=over_tls(request, self.trusted))

    def clear_session_cookie(self, request: web.Request, response: web.StreamResponse) -> None:
        response.del_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Lax",
                            secure=over_tls(request, self.trusted))

    def signin_token(self, request: web.Request) -> tuple[str, bool]:
        """The sign-in form's double-submit token: the browser's cookie, or a new one (True)."""
        token = request.cookies.get(SIGNIN_COOKIE)
        if token and len(token) <= 100:
            return token, False
        return secrets.token_urlsafe(24), True

    def set_signin_cookie(self, request: web.Request, response: web.StreamResponse, token: str) -> None:
        response.set_cookie(SIGNIN_COOKIE, token, path="/login", httponly=True, samesite="Strict",
                            secure=over_tls(request, self.trusted))


def tokens_match(expected: str | None, given: object) -> bool:
    """A CSRF token check in constant time; nothing matches a missing token."""
    if not expected or not isinstance(given, str) or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def _minutes(seconds: float) -> str:
    minutes = max(1, round(seconds / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"
