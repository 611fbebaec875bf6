"""Raw HTTP helper and sample records for the AEMO simulator tests.

The helper deliberately knows nothing about dersync's client: it speaks HTTP the way AEMO's
documents describe, so these tests pin the simulator, not the client.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from dersync.mock import Simulator

NMI_A = "8001000001"
NMI_B = "8001000002"
NMI_C = "8001000003"


@dataclass
class Resp:
    status: int
    body: Any
    headers: Any


class Api:
    """Raw calls against a running simulator (token handling included)."""

    def __init__(self, sim: Simulator, session: aiohttp.ClientSession) -> None:
        self.sim = sim
        self.session = session
        self._token: str | None = None

    def basic(self, client_id: str | None = None, secret: str | None = None) -> str:
        cfg = self.sim.config
        raw = f"{client_id or cfg.client_id}:{secret or cfg.client_secret}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    async def fetch_token(self) -> str:
        async with self.session.post(
            self.sim.oauth_token_url, params={"grant_type": "client_credentials"},
            headers={"Authorization": self.basic()}
        ) as r:
            body = await r.json()
            assert r.status == 200, body
        return body.get("acess_token") or body["access_token"]

    async def token(self) -> str:
        if self._token is None:
            self._token = await self.fetch_token()
        return self._token

    async def headers(self, **extra: str) -> dict[str, str]:
        h = {
            "Authorization": f"Bearer {await self.token()}",
            "X-initiatingParticipantID": "WPNO",
            "X-market": "WEM",
        }
        h.update(extra)
        return h

    async def call(
        self,
        method: str,
        url: str,
        *,
        body: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: Any = None,
    ) -> Resp:
        h = await self.headers()
        if body is not None or data is not None:
            h["Content-Type"] = "application/json"
        if headers:
            h.update(headers)
        h = {k: v for k, v in h.items() if v is not None}
        if body is not None:
            data = json.dumps(body).encode()
        payload: Any = io.BytesIO(data) if isinstance(data, bytes) and len(data) > 1_000_000 else data
        async with self.session.request(method, url, data=payload, headers=h, params=params) as r:
            text = await r.text()
            parsed = json.loads(text) if text else None
            return Resp(r.status, parsed, r.headers)

    # conveniences -------------------------------------------------------------------------
    def nmi_url(self, suffix: str = "") -> str:
        return self.sim.nmi_api_url + "/nmi-details" + suffix

    def inst_url(self, suffix: str = "") -> str:
        return self.sim.installation_api_url + "/installation" + suffix

    async def create_nmi(self, nmi: str, **fields: Any) -> Resp:
        return await self.call("POST", self.nmi_url(), body=nmi_record(nmi, **fields))

    async def create_installation(self, data: dict[str, Any]) -> Resp:
        return await self.call("POST", self.inst_url(), body={"data": data})

    async def put_installation(self, nmi: str, data: dict[str, Any]) -> Resp:
        return await self.call("PUT", self.inst_url(f"/{nmi}"), body={"data": data})

    async def get_installation(self, nmi: str) -> Resp:
        return await self.call("GET", self.inst_url(f"/{nmi}"))

    async def register(self, nmi: str, data: dict[str, Any] | None = None) -> Resp:
        """NMI record + first installation; returns the installation create response."""
        r = await self.create_nmi(nmi)
        assert r.status == 201, r.body
        r = await self.create_installation(data or installation(nmi))
        assert r.status == 201, r.body
        return r


def nmi_record(nmi: str, **fields: Any) -> dict[str, Any]:
    record = {"nmi": nmi, "substation": "SUB1", "postCode": "6000", "tni": "WPRT", "status": "Active"}
    record.update(fields)
    return record


def connection(nsp: str = "C1", *, maker: str = "Fronius", model: str = "Primo 5.0-1", **extra: Any) -> dict[str, Any]:
    conn: dict[str, Any] = {
        "nspConnectionId": nsp,
        "commissioningDate": "2024-03-01",
        "equipmentType": "Solar PV Inverter",
        "count": 1,
        "status": "Active",
        "equipmentInjectionCapacity": 5,
        "details": {"manufacturerName": maker, "modelNumber": model, "serialNumbers": ["SN-1"]},
        "devices": [device()],
    }
    conn.update(extra)
    return conn


def device(nsp: str = "D1", *, maker: str = "Jinko Solar", model: str = "JKM415M-54HL4-V",
           **extra: Any) -> dict[str, Any]:
    dev: dict[str, Any] = {
        "nspDeviceId": nsp,
        "type": "Solar PV",
        "count": 12,
        "status": "Active",
        "details": {"manufacturerName": maker, "modelNumber": model, "nominalRatedCapacity": 5},
    }
    dev.update(extra)
    return dev


def installation(nmi: str, *connections: dict[str, Any], **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "nmi": nmi,
        "jobNumber": "JOB-1",
        "approvedCapacity": 10,
        "exportLimitkW": 5,
        "importLimitKw": 20,
        "availablePhasesCount": 1,
        "installedPhasesCount": 1,
        "islandableInstallation": "No",
        "acConnections": list(connections) or [connection()],
    }
    data.update(extra)
    return data


def body_of(resp: Resp, shape: str = "wrapped") -> Any:
    """The installation (or list) inside a success body of either shape."""
    return resp.body["data"] if shape == "wrapped" else resp.body


