"""The console as the daemon serves it: the real admin app with the console mounted, on a free
loopback port, over the test's real store, lent a real AEMO client aimed at the simulator (the
leader's, whose guard lets it send, or a standby's, whose guard refuses as the sender lease does).

`Visitor` is an HTTP client that keeps cookies as a browser does, for the pages' forms; the JSON
API is called with HTTP Basic. Nothing here mocks the network, the store or the client.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dersync.admin import AdminServer, Metrics
from dersync.aemo.client import AemoClient
from dersync.console import Console, LiveJobs, Runtime
from dersync.console.passwords import hash_password
from dersync.errors import LeaseLost
from dersync.mock import Simulator, SimulatorConfig
from dersync.settings import Settings
from dersync.store import Store
from dersync.sync import sync_once
from dersync.testing import connection, installation, load, nmi_details, nmi_for, record
from tests.conftest import PARTICIPANT

OPERATOR = ("olivia", "olivia-passw0rd-long")
VIEWER = ("victor", "victor-passw0rd-long")
#: An inverter model the simulator's approved list lacks: every installation using it is
#: stored at AEMO at stage Conditional with a second-level 2023.
UNLISTED = ("Acme Power", "AP-5000-UNLISTED")


@pytest.fixture
def sim_config() -> SimulatorConfig:
    return SimulatorConfig(participant_id=PARTICIPANT, seed=9)


@pytest.fixture
def console_overrides(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """Settings a test changes for its console (`@pytest.mark.parametrize("console_overrides",
    [{...}], indirect=True)`); `{"tls": True}` serves over TLS with a fresh self-signed pair."""
    overrides = dict(getattr(request, "param", {}))
    if overrides.pop("tls", False):
        overrides["admin_tls_cert"], overrides["admin_tls_key"] = self_signed(tmp_path)
    return overrides


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1 made with the openssl command (skips without it)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = folder / "admin.pem", folder / "admin.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


@pytest.fixture
def console_settings(make_settings: Callable[..., Settings], console_overrides: dict[str, Any]) -> Settings:
    return make_settings(**{"admin_signin_failure_delay_seconds": 0.01, **console_overrides})


@pytest.fixture
async def users(store: Store) -> None:
    """An operator and a viewer in the store."""
    for (name, password), role in ((OPERATOR, "operator"), (VIEWER, "viewer")):
        await store.save_user(name, role, await hash_password(password))


@dataclass
class Served:
    """A console being served, and what it was lent."""

    url: str
    store: Store
    settings: Settings
    console: Console
    runtime: Runtime
    client: AemoClient
    passes_asked: list[bool] = field(default_factory=list)


@pytest.fixture
def console_role() -> str:
    """The serving replica's role: "leader" sends through its client, "standby" may not."""
    return "leader"


@pytest.fixture
async def served(console_settings: Settings, store: Store, users: None, console_role: str,
                 simulator: Simulator) -> AsyncIterator[Served]:
    def standby_guard() -> None:
        raise LeaseLost("this replica does not hold the sender lease")

    guard = standby_guard if console_role == "standby" else None
    async with AemoClient(console_settings, guard=guard) as client:
        asked: list[bool] = []

        def pass_soon() -> bool:
            asked.append(True)
            return console_role == "leader"

        runtime = Runtime(role=lambda: console_role, replica=lambda: "test-replica", token_state=lambda: "ok",
                          client=lambda: client, live=LiveJobs(client.stats, console_settings.rate_limit_per_minute),
                          pass_soon=pass_soon)
        console = Console(console_settings, store, runtime)
        await console.ensure_admin_user()

        async def ready() -> tuple[bool, dict[str, Any]]:
            return True, {"role": console_role}

        server = AdminServer("127.0.0.1", 0, Metrics(), ready, store.status, console=console,
                             ssl_context=console_settings.admin_tls)
        await server.start()
        try:
            yield Served(f"{server.scheme}://127.0.0.1:{server.port}", store, console_settings, console, runtime,
                         client, asked)
        finally:
            await server.stop()


class Visitor:
    """A browser's HTTP side: cookies kept (loopback addresses included), forms posted with the
    CSRF token of the last page read."""

    def __init__(self, url: str, **session: Any) -> None:
        self.url = url
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), **session)
        self.page = ""

    async def close(self) -> None:
        await self.http.close()

    async def get(self, path: str, **kwargs: Any) -> tuple[int, str]:
        async with self.http.get(self.url + path, **kwargs) as response:
            self.page = await response.text()
            return response.status, self.page

    @property
    def csrf(self) -> str:
        found = re.search(r'name="csrf" value="([^"]*)"', self.page)
        assert found is not None, "no CSRF token on the last page"
        return found.group(1)

    async def sign_in(self, name: str, password: str, next_path: str = "/") -> aiohttp.ClientResponse:
        await self.get("/login")
        async with self.http.post(self.url + "/login", data={"name": name, "password": password, "csrf": self.csrf,
                                                             "next": next_path}, allow_redirects=False) as response:
            await response.read()
            return response

    async def post(self, path: str, fields: dict[str, Any] | Sequence[tuple[str, str]] | None = None, *,
                   csrf: str | None = None, follow: bool = False) -> tuple[int, str, str | None]:
        data: list[tuple[str, str]] = list(fields.items()) if isinstance(fields, dict) else list(fields or [])
        data.append(("csrf", self.csrf if csrf is None else csrf))
        async with self.http.post(self.url + path, data=data, allow_redirects=follow) as response:
            body = await response.text()
            return response.status, body, response.headers.get("Location")


@pytest.fixture
async def visitor(served: Served) -> AsyncIterator[Visitor]:
    client = Visitor(served.url)
    try:
        yield client
    finally:
        await client.close()


async def api(served: Served, method: str, path: str, *, auth: tuple[str, str] | None = OPERATOR,
              body: Any = None, raw: bytes | None = None, headers: dict[str, str] | None = None
              ) -> tuple[int, Any]:
    """(status, parsed JSON) of an API call with HTTP Basic (or none)."""
    sent_headers = dict(headers or {})
    data: bytes | None = raw
    if body is not None:
        data = json.dumps(body).encode()
        sent_headers.setdefault("Content-Type", "application/json")
    if auth is not None:
        sent_headers["Authorization"] = aiohttp.encode_basic_auth(*auth)
    async with (aiohttp.ClientSession() as http,
                http.request(method, served.url + path, data=data, headers=sent_headers) as response):
        text = await response.text()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text


def flagged_record(index: int) -> dict[str, Any]:
    """A record AEMO stores at stage Conditional with a 2023 (its inverter model is unlisted)."""
    nmi = nmi_for(index)
    return {"nmiDetails": nmi_details(nmi),
            "installation": installation(nmi, connections=[connection(f"C-{nmi}-1", maker=UNLISTED)])}


async def flagged_store(settings: Settings, store: Store, flagged: int, clean: int = 0) -> list[str]:
    """`flagged` records with an unlisted inverter and `clean` approved ones, synced once to the
    simulator; returns the flagged NMIs."""
    await load(store, [flagged_record(i) for i in range(flagged)]
               + [record(nmi_for(i)) for i in range(flagged, flagged + clean)])
    await sync_once(settings, store)
    return [nmi_for(i) for i in range(flagged)]


@dataclass(frozen=True)
class SentRequest:
    """A ledger row as the AEMO client records one (see `dersync.store.ledger.SentRequest`)."""

    nmi: str | None
    method: str
    path: str
    status: int | None
    transaction_id: str | None
    api: str = "installation"
    sent_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    answered_at: datetime | None = field(default_factory=lambda: datetime.now(UTC))
    error: str | None = None
    codes: Sequence[str] = ()
    attempt: int = 1
    pass_id: int | None = None
    body_sha256: str | None = None
    body_gzip: bytes | None = None
