"""OAuth client-credentials tokens for AEMO's APIs.

AEMO's token endpoint (`POST {oauth}/token`, HTTP Basic `client_id:client_secret`,
`grant_type=client_credentials`) documents a non-standard 200 body:
`{"transactionID", "acess_token" (sic), "access_token_expires_in": "3599"}`. requests-oauthlib's
`OAuth2Session` has a compliance hook for exactly this (`access_token_response`): the hook maps
AEMO's body to the RFC 6749 one before oauthlib parses it, and standard bodies pass through. The
same hook turns non-2xx answers into our errors before oauthlib can misread them.

requests is synchronous, so each fetch runs in a worker thread (`asyncio.to_thread`). One
`asyncio.Lock` makes sure at most one fetch is under way; callers that queued behind it re-check
and reuse the fresh token (or the failure) instead of fetching again. Tokens are refreshed
`token_refresh_margin_seconds` before they expire (at most half their lifetime early), so a
request never leaves with a token about to lapse; a 401 from an API call still invalidates the
token (`invalidate`) and the transport retries once.

Neither the client secret nor any token ever appears in an exception message or a log event;
new tokens are registered with `dersync.logs.redact` in case some library logs them.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests
import structlog
from oauthlib.oauth2 import BackendApplicationClient, OAuth2Error
from requests.auth import HTTPBasicAuth
from requests_oauthlib import OAuth2Session

from dersync.errors import AuthError, FatalError, RetriesExhausted
from dersync.logs import redact
from dersync.retry import RetryPolicy, parse_retry_after
from dersync.settings import Settings
from dersync.wording import plural

from .responses import decode_json, find_transaction_id

log = structlog.get_logger("dersync.aemo")

#: Used when a token body gives no expiry: AEMO documents tokens of "about an hour" (3599 s).
DEFAULT_TOKEN_LIFETIME_SECONDS = 3599.0
_REFUSED = (400, 401, 403)


class _EndpointUnavailable(Exception):
    """A token fetch that may succeed later (5xx, 429, timeout, connection error); internal."""

    def __init__(self, reason: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


class TokenProvider:
    """Hands out a valid bearer token, fetching a new one only when needed and one at a time."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.monotonic) -> None:
        """`clock` (monotonic seconds) is injectable so tests can expire tokens without sleeping."""
        self._settings = settings
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self._refresh_at = 0.0
        self._fetch_generation = 0
        self._last_failure: BaseException | None = None
        #: How many tokens were fetched (the `dersync_token_refreshes` metric).
        self.refreshes = 0

    # --- public ---------------------------------------------------------------------------------

    async def token(self) -> str:
        """A token valid for at least the refresh margin; fetches one if needed."""
        if (cached := self._fresh_token()) is not None:
            return cached
        generation = self._fetch_generation
        async with self._lock:
            if (cached := self._fresh_token()) is not None:
                return cached
            if self._fetch_generation != generation and self._last_failure is not None:
                # A fetch failed while we queued: do not hammer the endpoint with the same request.
                raise self._last_failure
            return await self._refresh()

    async def invalidate(self, stale: str) -> None:
        """After a 401: forget the token, unless another task has already replaced it."""
        if self._token is not None and self._token == stale:
            self._token = None
            self._refresh_at = self._expires_at = 0.0

    @property
    def has_valid_token(self) -> bool:
        """A token is held and has not expired (for readiness checks)."""
        return self._token is not None and self._clock() < self._expires_at

    # --- refresh --------------------------------------------------------------------------------

    def _fresh_token(self) -> str | None:
        if self._token is not None and self._clock() < self._refresh_at:
            return self._token
        return None

    async def _refresh(self) -> str:
        started = self._clock()  # expiry counts from before the request: errs on the early side
        try:
            token, lifetime = await self._fetch_with_retries()
        except Exception as exc:
            self._last_failure = exc
            raise
        except BaseException:  # cancelled: queued callers must fetch for themselves
            self._last_failure = None
            raise
        finally:
            self._fetch_generation += 1  # counts finished fetches, for callers queued behind one
        self._last_failure = None
        redact(token)
        margin = min(self._settings.token_refresh_margin_seconds, lifetime / 2)
        self._token = token
        self._expires_at = started + lifetime
        self._refresh_at = self._expires_at - margin
        self.refreshes += 1
        log.info("aemo.token.fetched", lifetime_seconds=lifetime, refresh_in_seconds=round(lifetime - margin, 1),
                 token_refreshes=self.refreshes)
        return token

    async def _fetch_with_retries(self) -> tuple[str, float]:
        policy = RetryPolicy.from_settings(self._settings)
        try:
            return await policy.run(lambda: asyncio.to_thread(self._fetch_blocking),
                                    retry_on=(_EndpointUnavailable,), on_retry=_log_retry)
        except _EndpointUnavailable as exc:
            raise RetriesExhausted(
                f"AEMO's OAuth endpoint issued no token after {plural((policy.retries or 0) + 1, 'attempt')}: "
                f"{exc.reason}",
                status=exc.status,
                retry_after=exc.retry_after,
            ) from None

    # --- one blocking fetch (worker thread) -------------------------------------------------------

    def _fetch_blocking(self) -> tuple[str, float]:
        """One token request with requests-oauthlib; returns (access token, lifetime seconds)."""
        s = self._settings
        url = token_url_with_grant(s.oauth_token_url)
        secret = s.client_secret.get_secret_value() if s.client_secret is not None else ""
        session = OAuth2Session(client=BackendApplicationClient(client_id=s.client_id or ""))
        session.register_compliance_hook("access_token_response", _comply)
        if s.api_key is not None:
            session.headers["x-apikey"] = s.api_key.get_secret_value()
        try:
            with _transport_checked_by_settings(url):
                token = session.fetch_token(
                    token_url=url,
                    auth=HTTPBasicAuth(s.client_id or "", secret),
                    timeout=s.request_timeout_seconds,
                    # Passed per request: a session-wide setting would lose to REQUESTS_CA_BUNDLE
                    # in the environment. requests takes a bundle path; the stub says only bool.
                    verify=str(s.tls_ca_bundle) if s.tls_ca_bundle else True,  # type: ignore[arg-type]
                    cert=_client_cert(s),
                )
        except requests.Timeout:
            raise _EndpointUnavailable("the request timed out") from None
        except requests.exceptions.SSLError as exc:
            raise FatalError(f"TLS handshake with AEMO's OAuth endpoint failed: {type(exc).__name__}; "
                             "check the client certificate and CA bundle") from None
        except requests.ConnectionError as exc:
            raise _EndpointUnavailable(f"cannot connect ({type(exc).__name__})") from None
        except OAuth2Error as exc:
            raise FatalError(f"AEMO's OAuth endpoint answered 200 but the token body was unusable: "
                             f"{exc.description or exc.error}") from None
        finally:
            session.close()
        return str(token["access_token"]), _lifetime(token.get("expires_in"))


def _comply(response: requests.Response) -> requests.Response:
    """requests-oauthlib compliance hook: errors become ours, AEMO's body becomes standard."""
    status = response.status_code
    payload = decode_json(response.content)
    transaction_id = find_transaction_id(payload, response.headers)
    if status in _REFUSED:
        raise AuthError(f"AEMO's OAuth endpoint refused the client id/secret ({status})", status=status,
                        transaction_id=transaction_id)
    if status == 429 or status >= 500:
        raise _EndpointUnavailable(f"HTTP {status}", status=status,
                                   retry_after=parse_retry_after(response.headers.get("Retry-After")))
    if not 200 <= status < 300:
        raise FatalError(f"AEMO's OAuth endpoint answered HTTP {status}; check oauth_token_url", status=status,
                         transaction_id=transaction_id)
    if not isinstance(payload, dict):
        raise FatalError("AEMO's OAuth endpoint answered 200 without a JSON object", status=status)
    response._content = json.dumps(standard_token_body(payload)).encode()
    return response


def standard_token_body(body: dict[str, Any]) -> dict[str, Any]:
    """Map AEMO's documented token body (`acess_token`, string `access_token_expires_in`) to RFC 6749.

    A standard body passes through; unknown keys are kept.
    """
    out = dict(body)
    token = body.get("access_token") or body.get("acess_token") or body.get("accessToken")
    if token is not None:
        out["access_token"] = token
    out.pop("acess_token", None)
    expires = body.get("expires_in")
    if expires in (None, ""):
        expires = body.get("access_token_expires_in", body.get("expiresIn"))
    out.pop("access_token_expires_in", None)
    try:
        out["expires_in"] = int(float(str(expires)))
    except (TypeError, ValueError):
        out.pop("expires_in", None)  # unknown: the provider assumes AEMO's documented hour
    out.setdefault("token_type", "Bearer")
    return out


def _lifetime(expires_in: Any) -> float:
    try:
        lifetime = float(expires_in)
    except (TypeError, ValueError):
        return DEFAULT_TOKEN_LIFETIME_SECONDS
    return lifetime if lifetime > 0 else DEFAULT_TOKEN_LIFETIME_SECONDS


def token_url_with_grant(url: str) -> str:
    """AEMO's portal example passes `grant_type` as a query parameter; the form body carries it too."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "grant_type"]
    query.append(("grant_type", "client_credentials"))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _client_cert(settings: Settings) -> tuple[str, str] | None:
    """Settings accept a client certificate only together with its key."""
    if settings.tls_client_cert is None or settings.tls_client_key is None:
        return None
    return str(settings.tls_client_cert), str(settings.tls_client_key)


#: Serialises the moments oauthlib's process-wide switch is on (token fetches run in threads).
_INSECURE_SWITCH = threading.Lock()


@contextmanager
def _transport_checked_by_settings(url: str) -> Iterator[None]:
    """oauthlib refuses http:// token URLs, and its only switch is the process-wide environment
    variable OAUTHLIB_INSECURE_TRANSPORT. `Settings` already refuses plain http anywhere but
    loopback (the simulator), so for such a URL the switch is turned on for this one fetch and
    restored at once: nothing else in the process ever sees it."""
    if urlsplit(url).scheme == "https":
        yield
        return
    with _INSECURE_SWITCH:
        before = os.environ.get(_OAUTHLIB_SWITCH)
        os.environ[_OAUTHLIB_SWITCH] = "1"
        try:
            yield
        finally:
            if before is None:
                del os.environ[_OAUTHLIB_SWITCH]
            else:
                os.environ[_OAUTHLIB_SWITCH] = before


_OAUTHLIB_SWITCH = "OAUTHLIB_INSECURE_TRANSPORT"


def _log_retry(retry: int, exc: BaseException, wait: float) -> None:
    log.warning("aemo.token.retry", retry=retry, reason=getattr(exc, "reason", type(exc).__name__),
                status=getattr(exc, "status", None), retry_in_seconds=round(wait, 3))
