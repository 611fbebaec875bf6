"""AEMO's WEM DER Installation API (v2): installations, their AC connections and devices.

Write bodies are wrapped: `{"data": installation}`. `POST /installation` is the first creation
for an NMI only; `PUT /installation/{nmi}` updates or *adds* (a connection or device without the
`connectionId`/`deviceId` AEMO assigned is added as new equipment, so the engine must send AEMO's
ids back). `find` is the cheap existence check and reconciliation read: the batched
`GET /installation?nmi=A,B,...` takes up to 100 NMIs a call.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from dersync.errors import FatalError

from .responses import AemoResponse
from .transport import Transport, quote_segment

#: AEMO accepts 25, 50 or 100 per page.
DEFAULT_PAGE_SIZE = 100
#: Headers some gateways use for paging a bare-list answer.
_TOTAL_PAGES_HEADERS = ("x-total-pages", "x-pagination-total-pages")


class InstallationApi:
    """`/installation` calls."""

    def __init__(self, transport: Transport, lookup_batch_size: int) -> None:
        self._transport = transport
        self._batch = lookup_batch_size

    async def create(self, installation: Mapping[str, Any]) -> AemoResponse:
        """POST /installation with `{"data": installation}` (the NMI's first installation)."""
        nmi = installation.get("nmi")
        return await self._transport.request("installation", "POST", "/installation",
                                             json_body={"data": dict(installation)},
                                             nmi=str(nmi) if nmi is not None else None,
                                             operation="installation.create")

    async def update(self, nmi: str, installation: Mapping[str, Any]) -> AemoResponse:
        """PUT /installation/{nmi} with `{"data": installation}`; 404 when AEMO holds none."""
        return await self._transport.request("installation", "PUT", f"/installation/{quote_segment(nmi)}",
                                             json_body={"data": dict(installation)}, nmi=nmi,
                                             operation="installation.update")

    async def get(self, nmi: str) -> AemoResponse:
        """GET /installation/{nmi}: the current version (404 comes back as a response)."""
        return await self._transport.request("installation", "GET", f"/installation/{quote_segment(nmi)}",
                                             nmi=nmi, operation="installation.get")

    async def history(self, nmi: str) -> AemoResponse:
        """GET /installation/{nmi}/history: every version AEMO kept."""
        return await self._transport.request("installation", "GET",
                                             f"/installation/{quote_segment(nmi)}/history",
                                             nmi=nmi, operation="installation.history")

    async def find(self, nmis: Sequence[str], **filters: str) -> dict[str, dict[str, Any]]:
        """{nmi: installation} for those of `nmis` AEMO holds (and that match `filters`).

        Batches `lookup_batch_size` NMIs per query and follows pages. `filters` are AEMO's query
        parameters (`installationStage`, `equipmentType`, ...); `pageSize` may be given to
        override the default of 100. A 404 answer means none held. Raises `FatalError` when AEMO
        rejects the query (a client bug) or pages misbehave; transport errors propagate.
        """
        wanted = list(dict.fromkeys(str(n) for n in nmis))
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(wanted), self._batch):
            chunk = wanted[start : start + self._batch]
            found.update(await self._find_chunk(chunk, filters))
        return found

    async def _find_chunk(self, chunk: list[str], filters: Mapping[str, str]) -> dict[str, dict[str, Any]]:
        params = {k: str(v) for k, v in filters.items() if v is not None}
        page_size = int(params.pop("pageSize", DEFAULT_PAGE_SIZE))
        requested = set(chunk)
        found: dict[str, dict[str, Any]] = {}
        async for items in self._pages({**params, "nmi": ",".join(chunk)}, page_size, "installation.find"):
            for item in items:
                nmi = str(item.get("nmi"))
                if nmi in requested:
                    found[nmi] = item
            if requested <= found.keys():
                break
        return found

    def sweep(self, filters: Mapping[str, str], *,
              page_size: int = DEFAULT_PAGE_SIZE) -> AsyncIterator[list[dict[str, Any]]]:
        """Every installation matching `filters` (AEMO needs at least one: a stage, a type, a
        commissioning date range), a page at a time: how reconciliation finds orphans without
        knowing their NMIs. Raises `RepeatedPage` if AEMO's paging repeats itself."""
        params = {k: str(v) for k, v in filters.items() if v is not None}
        return self._pages(params, page_size, "installation.sweep")

    async def _pages(self, params: Mapping[str, str], page_size: int,
                     operation: str) -> AsyncIterator[list[dict[str, Any]]]:
        """`GET /installation?<params>` page by page, until a short page or AEMO's last."""
        seen_pages: dict[tuple[str, ...], int] = {}
        page = 1
        while True:
            query = {**params, "pageSize": str(page_size), "page": str(page)}
            response = await self._transport.request("installation", "GET", "/installation", params=query,
                                                     operation=operation)
            items = _page_items(response, page)
            _refuse_repeated_page(items, page, seen_pages)
            yield items
            if _last_page(response, items, page, page_size):
                return
            page += 1


def _page_items(response: AemoResponse, page: int) -> list[dict[str, Any]]:
    """The installations on one page; 404 is an empty result, other refusals are client bugs."""
    if response.status == 404:
        return []
    if not response.ok:
        problem = response.errors[0].detail if response.errors else None
        raise FatalError(
            f"AEMO refused the installation lookup (HTTP {response.status}, page {page}): {problem}",
            status=response.status, transaction_id=response.transaction_id,
        )
    data = response.data
    if data is None:
        return []
    if isinstance(data, dict):  # a single object where a list was expected
        data = [data]
    if not isinstance(data, list):
        raise FatalError(f"AEMO's installation lookup answered an unexpected shape ({type(data).__name__})",
                         status=response.status, transaction_id=response.transaction_id)
    return [item for item in data if isinstance(item, dict)]


class RepeatedPage(FatalError):
    """AEMO's paging answered a page identical to an earlier one: following it would loop."""


def _refuse_repeated_page(items: list[dict[str, Any]], page: int, seen: dict[tuple[str, ...], int]) -> None:
    """An invariant: page N must not repeat an earlier page (it would otherwise loop for ever)."""
    if not items:
        return
    key = tuple(sorted(str(item.get("nmi")) for item in items))
    if key in seen:
        raise RepeatedPage(f"AEMO's installation lookup returned page {page} identical to page {seen[key]}; "
                         "refusing to loop")
    seen[key] = page


def _last_page(response: AemoResponse, items: list[dict[str, Any]], page: int, page_size: int) -> bool:
    """Stop on a short or empty page, or when AEMO's own paging says this was the last."""
    if len(items) < page_size:
        return True
    total_pages = _total_pages(response, page_size)
    return total_pages is not None and page >= total_pages


def _total_pages(response: AemoResponse, page_size: int) -> int | None:
    body = response.body if isinstance(response.body, dict) else {}
    for source in (body, body.get("paging") or body.get("pagination") or {}):
        if not isinstance(source, dict):
            continue
        if (value := _as_int(source.get("totalPages"))) is not None:
            return value
        if (records := _as_int(source.get("totalRecords"))) is not None:
            return math.ceil(records / page_size)
    lowered = {k.lower(): v for k, v in response.headers.items()}
    for name in _TOTAL_PAGES_HEADERS:
        if (value := _as_int(lowered.get(name))) is not None:
            return value
    return None


def _as_int(value: Any) -> int | None:
    try:
        return int(str(value)) if value is not None else None
    except ValueError:
        return None
