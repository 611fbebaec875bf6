"""Signing in: what stays open, sessions and their cookie, CSRF, guessing, the single sign-on
header, the admin password from a secret, and secrets never shown."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from yarl import URL

from dersync.console import Console
from dersync.mock import Simulator
from dersync.testing import load, nmi_for, record, wait_for
from tests.console.conftest import OPERATOR, VIEWER, Served, Visitor, api

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
PAGES = ["/", "/overview/live", "/exceptions", "/exceptions.csv", "/exceptions/codes", f"/nmi/{nmi_for(0)}",
         "/drift", "/activity", f"/redrive?nmi={nmi_for(0)}"]
FORMS = [f"/nmi/{nmi_for(0)}/park", f"/nmi/{nmi_for(0)}/unpark", f"/nmi/{nmi_for(0)}/redrive",
         f"/nmi/{nmi_for(0)}/aemo", "/redrive", "/logout"]


async def status_of(served: Served, method: str, path: str, **kwargs: Any) -> tuple[int, str | None]:
    async with (aiohttp.ClientSession() as http,
                http.request(method, served.url + path, allow_redirects=False, **kwargs) as response):
        await response.read()
        return response.status, response.headers.get("Location")


async def test_probes_and_metrics_stay_open_and_every_other_path_needs_a_user(served: Served) -> None:
    """/healthz, /readyz and /metrics answer without credentials; every page (and unknown path)
    sends a stranger to the sign-in page, every form post too, and the API answers 401."""
    for path in ("/healthz", "/readyz", "/metrics", "/login", "/static/console.css", "/static/console.js"):
        assert (await status_of(served, "GET", path))[0] == 200, path
    for path in [*PAGES, "/no-such-page"]:
        status, location = await status_of(served, "GET", path)
        assert status == 303 and location is not None and location.startswith("/login?next="), path
    for path in FORMS:
        status, location = await status_of(served, "POST", path, data={"reason": "x"})
        assert status == 303 and location is not None and location.startswith("/login"), path
    assert (await status_of(served, "GET", "/api/v1/summary"))[0] == 401


async def test_signing_in_returns_to_the_page_asked_for_but_never_elsewhere(served: Served, visitor: Visitor) -> None:
    """After signing in the browser goes to the page it first asked for; a `next` naming another
    site (or anything but a path here) goes to the overview instead."""
    response = await visitor.sign_in(*OPERATOR, next_path="/exceptions?level=second")
    assert response.status == 303 and response.headers["Location"] == "/exceptions?level=second"
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example", "exceptions"):
        other = Visitor(served.url)
        try:
            response = await other.sign_in(*VIEWER, next_path=target)
            assert response.headers["Location"] == "/", target
        finally:
            await other.close()


@SQLITE
@pytest.mark.parametrize("console_overrides", [{}, {"tls": True}], indirect=True, ids=["http", "tls"])
async def test_the_session_cookie_is_httponly_samesite_and_secure_over_tls(served: Served) -> None:
    """The session cookie is HttpOnly and SameSite=Lax, lives no longer than the browser, and is
    Secure when the console is served over TLS (DERSYNC_ADMIN_TLS_CERT/KEY)."""
    tls = served.url.startswith("https")
    visitor = Visitor(served.url, connector=aiohttp.TCPConnector(ssl=False))
    try:
        response = await visitor.sign_in(*OPERATOR)
        cookie = response.cookies["dersync_session"]
        assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/"
        assert not cookie["max-age"] and not cookie["expires"]  # gone with the browser; the store ends it sooner
        assert bool(cookie["secure"]) == tls
        assert (await visitor.get("/"))[0] == 200
    finally:
        await visitor.close()


async def test_signing_out_ends_the_session_and_its_csrf_token_goes_stale(served: Served, visitor: Visitor) -> None:
    """After signing out the old cookie opens nothing; in the next session a form carrying the
    earlier session's token is refused (403) and changes nothing, the new token works."""
    await load(served.store, [record(nmi_for(0))])
    await visitor.sign_in(*OPERATOR)
    await visitor.get(f"/nmi/{nmi_for(0)}")
    stale = visitor.csrf
    old_cookie = visitor.http.cookie_jar.filter_cookies(URL(served.url))["dersync_session"].value
    status, _body, location = await visitor.post("/logout")
    assert status == 303 and location == "/login"
    async with (aiohttp.ClientSession(cookies={"dersync_session": old_cookie}) as http,
                http.get(served.url + "/", allow_redirects=False) as response):
        assert response.status == 303 and "/login" in response.headers["Location"]

    await visitor.sign_in(*OPERATOR)
    await visitor.get(f"/nmi/{nmi_for(0)}")
    assert visitor.csrf != stale
    status, body, _ = await visitor.post(f"/nmi/{nmi_for(0)}/park", {"reason": "x"}, csrf=stale)
    assert status == 403 and "security token" in body
    assert (await served.store.status())["parked"] == 0
    status, _body, location = await visitor.post(f"/nmi/{nmi_for(0)}/park", {"reason": "x"})
    assert status == 303 and location == f"/nmi/{nmi_for(0)}?done=parked"


async def test_every_form_needs_the_session_token(served: Served, visitor: Visitor) -> None:
    """Each state-changing form posted without its token (or with a made-up one) is refused with
    403 and changes nothing, even for an operator who is signed in."""
    await load(served.store, [record(nmi_for(0))])
    await visitor.sign_in(*OPERATOR)
    await visitor.get("/")
    for path in FORMS:
        for token in ("", "made-up-token"):
            status, body, _ = await visitor.post(path, {"reason": "x", "nmi": nmi_for(0)}, csrf=token)
            assert status == 403 and "security token" in body, path
    assert (await served.store.status())["parked"] == 0 and await served.store.recent_actions() == []
    assert (await visitor.get("/"))[0] == 200  # still signed in: the refused sign-out did nothing


async def test_the_sign_in_form_has_its_own_token(served: Served) -> None:
    """A sign-in posted without the form's double-submit token (another site's form, or cookies
    off) is refused and makes no session."""
    fields = {"name": OPERATOR[0], "password": OPERATOR[1], "csrf": "guessed"}
    async with (aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http,
                http.post(served.url + "/login", data=fields, allow_redirects=False) as response):
        assert response.status == 403 and "dersync_session" not in response.cookies


@SQLITE
@pytest.mark.parametrize("console_overrides", [{"admin_session_lifetime_seconds": 1.0}], indirect=True)
async def test_a_session_ends_at_its_lifetime_however_busy(served: Served, visitor: Visitor) -> None:
    """A session ends at its lifetime even while pages are being read: the next page sends the
    browser to sign in again, saying the session ended."""
    await visitor.sign_in(*OPERATOR)
    assert (await visitor.get("/"))[0] == 200

    async def ended() -> str | None:
        async with visitor.http.get(served.url + "/", allow_redirects=False) as response:
            location = response.headers.get("Location", "")
            return location if response.status == 303 and "ended=1" in location else None

    location = await wait_for(ended, "the session to end", deadline=10, interval=0.1)
    status, page = await visitor.get(location)
    assert status == 200 and "Your session has ended" in page
    assert (await visitor.get("/"))[1] == visitor.page and "Sign in" in visitor.page  # the cookie was cleared


@SQLITE
@pytest.mark.parametrize("console_overrides", [{"admin_session_idle_seconds": 1.0}], indirect=True)
async def test_a_session_ends_after_its_idle_time(served: Served, visitor: Visitor) -> None:
    """Requests keep a session alive; once none came for the idle time, it has ended."""
    from sqlalchemy import select

    from dersync.store.tables import console_session

    await visitor.sign_in(*OPERATOR)
    started = time.monotonic()
    while time.monotonic() - started < 1.5:  # busy for longer than the idle time: still signed in
        assert (await visitor.get("/exceptions"))[0] == 200 and "Sign out" in visitor.page

    async def idle() -> bool:
        async with served.store.engine.connect() as connection:
            seen = (await connection.execute(select(console_session.c.last_seen_at))).scalar_one()
        return bool(datetime.now(UTC) - seen.replace(tzinfo=UTC) > timedelta(seconds=1.1))

    await wait_for(idle, "the session to be idle for longer than its idle time", deadline=10)
    async with visitor.http.get(served.url + "/", allow_redirects=False) as response:
        assert response.status == 303 and "ended=1" in response.headers["Location"]


@SQLITE
@pytest.mark.parametrize("console_overrides", [{"admin_signin_failures_per_user": 3,
                                                "admin_signin_failures_per_address": 5,
                                                "admin_signin_failure_delay_seconds": 0.2}], indirect=True)
async def test_wrong_passwords_are_answered_slowly_then_refused_per_user_and_per_address(served: Served) -> None:
    """Each wrong password takes at least the failure delay; after 3 failures for a name even the
    right password is refused (429 with Retry-After), for the form and Basic alike; other names
    still sign in until the address has 5 failures, then they are refused too."""
    visitor = Visitor(served.url)
    try:
        for _ in range(3):
            started = time.monotonic()
            response = await visitor.sign_in(OPERATOR[0], "wrong-password-x")
            assert response.status == 401 and time.monotonic() - started >= 0.2
        response = await visitor.sign_in(*OPERATOR)
        assert response.status == 429 and int(response.headers["Retry-After"]) > 0
        assert (await api(served, "GET", "/api/v1/summary"))[0] == 429
        response = await visitor.sign_in(*VIEWER)
        assert response.status == 303
        for _ in range(2):
            assert (await api(served, "GET", "/api/v1/summary", auth=("nobody", "wrong-password-x")))[0] == 401
        other = Visitor(served.url)
        try:
            assert (await other.sign_in(*VIEWER)).status == 429
        finally:
            await other.close()
    finally:
        await visitor.close()


PROXY = {"admin_auth_proxy_header": "X-Webauth-User", "admin_auth_proxy_trusted": "127.0.0.1, ::1",
         "admin_auth_proxy_roles": "pat=operator, group:grid-ops=operator",
         "admin_auth_proxy_groups_header": "X-Webauth-Groups"}


@SQLITE
@pytest.mark.parametrize("console_overrides", [PROXY], indirect=True)
async def test_the_sso_header_from_a_trusted_proxy_signs_in_with_mapped_roles(served: Served) -> None:
    """Behind the trusted proxy the header names the user: unknown names are viewers, a mapped
    name or group is an operator, a stored user keeps its role; a proxy user's forms carry a
    token of their own session and work."""
    await load(served.store, [record(nmi_for(0))])
    path = f"/api/v1/nmis/{nmi_for(0)}/park"
    expected = {"sam": 403, "pat": 200, "gus": 200, OPERATOR[0]: 200, VIEWER[0]: 403}
    def headers_of(user: str) -> dict[str, str]:
        return {"X-Webauth-User": user, "X-Webauth-Groups": "field, grid-ops" if user == "gus" else "field"}

    for user in expected:
        headers = headers_of(user)
        assert (await api(served, "GET", "/api/v1/summary", auth=None, headers=headers))[0] == 200, user
        got, answer = await api(served, "POST", path, auth=None, headers={**headers, "X-CSRF-Token": ""},
                                body={"reason": f"by {user}"})
        assert got == 403, (user, answer)  # the API write still needs the session's token
    for user, status in expected.items():
        visitor = Visitor(served.url, headers=headers_of(user))
        try:
            assert (await visitor.get(f"/nmi/{nmi_for(0)}"))[0] == 200
            assert f"{user} (" in visitor.page
            got, _body, _location = await visitor.post(f"/nmi/{nmi_for(0)}/park", {"reason": f"by {user}"})
            assert got == (303 if status == 200 else 403), user
        finally:
            await visitor.close()
    actions = await served.store.actions_of(nmi_for(0))
    assert sorted(a["actor"] for a in actions) == sorted(["pat", "gus", OPERATOR[0]])


@SQLITE
@pytest.mark.parametrize("console_overrides", [{**PROXY, "admin_auth_proxy_trusted": "10.0.0.0/8"}], indirect=True)
async def test_the_sso_header_from_anywhere_else_is_ignored(served: Served) -> None:
    """The header from an address outside DERSYNC_ADMIN_AUTH_PROXY_TRUSTED signs no one in."""
    headers = {"X-Webauth-User": OPERATOR[0]}
    assert (await api(served, "GET", "/api/v1/summary", auth=None, headers=headers))[0] == 401
    status, location = await status_of(served, "GET", "/", headers=headers)
    assert status == 303 and location is not None and location.startswith("/login")


@SQLITE
@pytest.mark.parametrize("console_overrides", [{"admin_password": "from-a-secret-file-1"}], indirect=True)
async def test_the_admin_password_setting_makes_an_operator_and_a_new_secret_replaces_it(
    served: Served, simulator: Simulator
) -> None:
    """DERSYNC_ADMIN_PASSWORD makes user admin an operator with that password; a changed secret
    at the next start changes the password (the old one stops working); no page or answer
    shows the password, its hash, the client secret or a token."""
    status, _ = await api(served, "GET", "/api/v1/summary", auth=("admin", "from-a-secret-file-1"))
    assert status == 200
    assert next((u["name"], u["role"]) for u in await served.store.list_users()) == ("admin", "operator")
    await load(served.store, [record(nmi_for(0))])
    visitor = Visitor(served.url)
    try:
        await visitor.sign_in("admin", "from-a-secret-file-1")
        seen = [(await visitor.get(path))[1] for path in [*PAGES, "/api/v1/nmis/" + nmi_for(0), "/api/v1/summary"]]
    finally:
        await visitor.close()
    token = await served.client.tokens.token()
    for text in seen:
        for secret in ("from-a-secret-file-1", "$argon2", served.settings.client_secret.get_secret_value(),  # type: ignore[union-attr]
                       token):
            assert secret not in text

    renewed = served.settings.model_copy(update={"admin_password": type(served.settings.admin_password)(
        "a-rotated-secret-22")})
    await Console(renewed, served.store, served.runtime).ensure_admin_user()
    assert (await api(served, "GET", "/api/v1/summary", auth=("admin", "from-a-secret-file-1")))[0] == 401
    assert (await api(served, "GET", "/api/v1/summary", auth=("admin", "a-rotated-secret-22")))[0] == 200


async def test_pages_load_nothing_from_elsewhere_and_say_so(served: Served, visitor: Visitor) -> None:
    """Every page sends a Content-Security-Policy allowing only this console, frames denied, and
    references only its own paths (no CDN, no other host)."""
    await load(served.store, [record(nmi_for(0))])
    await visitor.sign_in(*OPERATOR)
    for path in [*PAGES, "/login"]:
        async with visitor.http.get(served.url + path) as response:
            page = await response.text()
            csp = response.headers["Content-Security-Policy"]
            assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
            assert response.headers["X-Content-Type-Options"] == "nosniff"
        for reference in re.findall(r'(?:src|href|action)="([^"]*)"', page):
            assert reference.startswith(("/", "?", "#")) and not reference.startswith("//"), (path, reference)


async def test_sessions_are_kept_as_hashes_only(served: Served, visitor: Visitor) -> None:
    """The store holds the SHA-256 of a session's cookie, never the cookie itself, and a session
    row alone signs nobody in."""
    from sqlalchemy import select

    from dersync.store.tables import console_session

    await visitor.sign_in(*OPERATOR)
    cookie = visitor.http.cookie_jar.filter_cookies(URL(served.url))["dersync_session"].value
    async with served.store.engine.connect() as connection:
        rows = (await connection.execute(select(console_session))).mappings().all()
    assert len(rows) == 1 and cookie not in str(dict(rows[0]))
    async with (aiohttp.ClientSession(cookies={"dersync_session": rows[0]["id_sha256"]}) as http,
                http.get(served.url + "/", allow_redirects=False) as response):
        assert response.status == 303
    assert rows[0]["expires_at"].replace(tzinfo=UTC) > datetime.now(UTC)
