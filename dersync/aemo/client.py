"""The AEMO client the sync engine and reconciliation use: tokens, pacing and transport in one.

    async with AemoClient(settings) as client:
        await client.check_credentials()
        response = await client.installation.get("8001000001")

A `Pacer` may be injected so that several clients (or jobs) in one process share AEMO's one
request budget.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType

from dersync.settings import Settings

from .auth import TokenProvider
from .installation_api import InstallationApi
from .nmi_api import NmiApi
from .pacing import Pacer
from .sent import SentRequest
from .transport import Transport


@dataclass(frozen=True)
class ClientStats:
    """What the client has done so far (metrics and pass summaries read it, by difference)."""

    #: (api, method, status) -> answers
    requests_by: Mapping[tuple[str, str, int], int]
    throttled: int
    retries: int
    token_refreshes: int

    @property
    def requests(self) -> int:
        return sum(self.requests_by.values())


class AemoClient:
    """Owns a `TokenProvider`, a `Pacer` (unless given one) and a `Transport`."""

    def __init__(self, settings: Settings, pacer: Pacer | None = None,
                 guard: Callable[[], None] | None = None) -> None:
        """`guard` (the sender lease's check) runs before every NMI and Installation API request;
        token requests do not need it (a standby keeps its token fresh)."""
        self.settings = settings
        self.pacer = pacer if pacer is not None else Pacer(settings.rate_limit_per_minute)
        self.tokens = TokenProvider(settings)
        self.transport = Transport(settings, self.tokens, self.pacer, guard)
        self.nmi = NmiApi(self.transport)
        self.installation = InstallationApi(self.transport, settings.lookup_batch_size)

    async def __aenter__(self) -> AemoClient:
        await self.transport.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.transport.close()

    def stats(self) -> ClientStats:
        transport = self.transport.stats
        return ClientStats(requests_by=dict(transport.requests), throttled=transport.throttled,
                           retries=transport.retries, token_refreshes=self.tokens.refreshes)

    def take_sent(self, pass_id: int | None) -> list[SentRequest]:
        """Requests sent for this pass (None: outside any pass) and not yet taken: for the ledger."""
        return self.transport.sent.take(pass_id)

    def put_back_sent(self, requests: Sequence[SentRequest]) -> None:
        """Requests the store could not take now: they go with the next take."""
        self.transport.sent.put_back(requests)

    async def check_credentials(self) -> None:
        """Fetch a token now, so bad credentials fail fast with `AuthError` before any work."""
        await self.tokens.token()
