"""AEMO's WEM DER NMI API (v1): the NMI record an installation belongs to.

Bodies are *not* wrapped on this API: `POST /nmi-details` and `PUT /nmi-details/{nmi}` take
`{"nmi", "substation", "postCode", "tni", "status"}` as they are. Create the NMI record before the
NMI's first installation. Every method returns AEMO's answer (including 404, 400 and 422) as an
`AemoResponse`; transport failures raise (see `transport`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .responses import AemoResponse
from .transport import Transport, quote_segment


class NmiApi:
    """`/nmi-details` calls; `nmi=` is passed for log context."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    async def create(self, details: Mapping[str, Any]) -> AemoResponse:
        """POST /nmi-details (first registration of an NMI; a repeat is a 4xx, never a duplicate)."""
        return await self._transport.request("nmi", "POST", "/nmi-details", json_body=dict(details),
                                             nmi=_nmi_of(details), operation="nmi.create")

    async def update(self, nmi: str, details: Mapping[str, Any]) -> AemoResponse:
        """PUT /nmi-details/{nmi}; 404 means AEMO does not hold the NMI (create it instead)."""
        return await self._transport.request("nmi", "PUT", f"/nmi-details/{quote_segment(nmi)}",
                                             json_body=dict(details), nmi=nmi, operation="nmi.update")

    async def get(self, nmi: str) -> AemoResponse:
        """GET /nmi-details/{nmi}; 404 ("not registered") comes back as a response."""
        return await self._transport.request("nmi", "GET", f"/nmi-details/{quote_segment(nmi)}", nmi=nmi,
                                             operation="nmi.get")


def _nmi_of(body: Mapping[str, Any]) -> str | None:
    value = body.get("nmi")
    return str(value) if value is not None else None
