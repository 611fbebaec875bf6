"""Test helpers shipped with dersync (as structlog ships `structlog.testing`).

Record builders for tests and benchmarks, and `read_back`: the delivery check that trusted
queue systems use (compare what was acknowledged with what is finally present): after a run,
every record the store calls synced must be at the simulator exactly as in the store, with no
NMI created twice and no equipment duplicated.
"""

from __future__ import annotations

import asyncio
import copy
import json
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dersync.models.installation import SERVER_OWNED_FIELDS
from dersync.models.nmi import SERVER_OWNED_NMI_FIELDS
from dersync.models.validation import strip_server_owned
from dersync.store import InputRow, Store
from dersync.vocabulary import SyncState


def nmi_for(index: int) -> str:
    """A valid WA-style NMI, unique per index (0 to 999,999: beyond that it would not be an NMI)."""
    if not 0 <= index < 1_000_000:
        raise ValueError(f"nmi_for covers indices 0 to 999,999, not {index}")
    return f"8001{index:06d}"


def nmi_details(nmi: str, **changes: Any) -> dict[str, Any]:
    details = {"nmi": nmi, "substation": "Cannington", "postCode": "6107", "tni": "WCNG", "status": "Active"}
    details.update(changes)
    return details


def device(nsp_device_id: str, *, kind: str = "Solar PV", kw: float = 5.0,
           maker: tuple[str, str] = ("Fronius", "Primo 5.0-1")) -> dict[str, Any]:
    return {
        "nspDeviceId": nsp_device_id,
        "type": kind,
        "count": 1,
        "status": "Active",
        "details": {"manufacturerName": maker[0], "modelNumber": maker[1], "nominalRatedCapacity": kw},
    }


def commissioned(item: Mapping[str, Any], day: str | None) -> dict[str, Any]:
    """A copy of an AC connection commissioned on `day` (None: without a commissioning date)."""
    copy = dict(item)
    if day is None:
        copy.pop("commissioningDate", None)
    else:
        copy["commissioningDate"] = day
    return copy


def connection(nsp_connection_id: str, *, devices: Iterable[Mapping[str, Any]] | None = None,
               maker: tuple[str, str] = ("Fronius", "Primo 5.0-1"), kw: float = 5.0,
               equipment_type: str = "Solar PV Inverter") -> dict[str, Any]:
    return {
        "nspConnectionId": nsp_connection_id,
        "commissioningDate": "2024-03-01",
        "equipmentType": equipment_type,
        "count": 1,
        "status": "Active",
        "equipmentInjectionCapacity": kw,
        "details": {"manufacturerName": maker[0], "modelNumber": maker[1],
                    "serialNumbers": [f"SN-{nsp_connection_id}"]},
        "devices": [dict(d) for d in (devices if devices is not None else [device(f"{nsp_connection_id}-D1", kw=kw)])],
    }


def installation(nmi: str, *, connections: Iterable[Mapping[str, Any]] | None = None, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "nmi": nmi,
        "jobNumber": f"JOB-{nmi}",
        "approvedCapacity": 10.0,
        "exportLimitkW": 5.0,
        "availablePhasesCount": 1,
        "installedPhasesCount": 1,
        "islandableInstallation": "No",
        "acConnections": [dict(c) for c in (connections if connections is not None else [connection(f"C-{nmi}-1")])],
    }
    body.update(changes)
    return body


def record(nmi: str, *, with_details: bool = True, with_installation: bool = True) -> dict[str, Any]:
    """An import object with both parts, valid and approved-equipment only."""
    item: dict[str, Any] = {}
    if with_details:
        item["nmiDetails"] = nmi_details(nmi)
    if with_installation:
        item["installation"] = installation(nmi)
    return item


async def load(store: Store, items: Iterable[Mapping[str, Any]]) -> None:
    """Write import objects into the store as `dersync import` would."""
    from dersync.store.importer import to_input_row

    rows = []
    for item in items:
        row = to_input_row(dict(item))
        assert isinstance(row, InputRow), row
        rows.append(row)
    await store.upsert_inputs(rows)


# --- read-back --------------------------------------------------------------------------------


@dataclass
class ReadBack:
    """What a full read-back of the simulator found, against the store."""

    checked: int = 0
    missing: list[str] = field(default_factory=list)
    different: list[tuple[str, str]] = field(default_factory=list)
    duplicate_creates: list[str] = field(default_factory=list)
    duplicate_equipment: list[Any] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.different or self.duplicate_creates or self.duplicate_equipment)


async def read_back(store: Store, state: Any, *, only_synced: bool = True) -> ReadBack:
    """Compare every synced record in the store with the simulator's register (`sim.state`)."""
    report = ReadBack()
    async for batch in store.record_batches(1000):
        for stored in batch:
            if only_synced and stored.sync_state != SyncState.SYNCED:
                continue
            report.checked += 1
            if stored.nmi_details is not None:
                _compare(report, stored.nmi, "nmiDetails", json.loads(stored.nmi_details), state.nmis.get(stored.nmi),
                         SERVER_OWNED_NMI_FIELDS)
            if stored.installation is not None:
                _compare(report, stored.nmi, "installation", json.loads(stored.installation),
                         state.installations.get(stored.nmi), SERVER_OWNED_FIELDS)
    report.duplicate_creates = sorted(n for n, c in state.creates.items() if c > 1)
    report.duplicate_creates += sorted(n for n, c in state.nmi_creates.items() if c > 1)
    report.duplicate_equipment = list(state.duplicate_equipment())
    return report


def _compare(report: ReadBack, nmi: str, part: str, local: Any, held: Any, server_owned: frozenset[str]) -> None:
    if held is None:
        report.missing.append(f"{nmi} {part}")
        return
    mine = _normalise(strip_server_owned(local, server_owned))
    theirs = _normalise(strip_server_owned(copy.deepcopy(held), server_owned))
    theirs = _keep_keys(theirs, mine) if part == "installation" else {k: v for k, v in theirs.items() if k in mine}
    if mine != theirs:
        report.different.append((nmi, part))


def _keep_keys(held: Any, local: Any) -> Any:
    """Drop what AEMO adds (nulls for fields never sent, equipment the store does not list)."""
    if isinstance(local, dict) and isinstance(held, dict):
        out = {}
        for key, value in local.items():
            if key == "acConnections":
                out[key] = _match_list(held.get(key) or [], value, "nspConnectionId")
            elif key == "devices":
                out[key] = _match_list(held.get(key) or [], value, "nspDeviceId")
            else:
                out[key] = _keep_keys(held.get(key), value)
        return out
    return held


def _match_list(held: list[Any], local: list[Any], key: str) -> list[Any]:
    by_id = {item.get(key): item for item in held if isinstance(item, dict)}
    return [_keep_keys(by_id.get(item.get(key)), item) for item in local]


def _normalise(value: Any) -> Any:
    """Numbers compare by value (5 == 5.0), as JSON means them."""
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return value


def api_requests(state: Any) -> int:
    """Requests the simulator received on the NMI and Installation APIs (OAuth not counted)."""
    return sum(n for (_method, route, _status), n in state.requests_by_route.items() if route != "oauth_token")


def as_environment(settings: Mapping[str, object]) -> dict[str, str]:
    """Settings as the DERSYNC_* variables a `dersync` process reads (for subprocess tests)."""
    return {f"DERSYNC_{name.upper()}": str(value) for name, value in settings.items()}


# --- waiting on processes and servers (no fixed sleeps as synchronisation) -------------------
def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_for(condition: Callable[[], Any], what: str, deadline: float = 60.0, *,
                   interval: float = 0.05) -> Any:
    """Poll until `condition` (a function, or one returning an awaitable) returns something
    true, and return it; fail naming `what` after `deadline` seconds."""
    end = time.monotonic() + deadline
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline:g} s waiting for {what}")
        await asyncio.sleep(interval)


async def http_get(url: str) -> tuple[int, str]:
    """(status, body) of a GET, or (0, "") while nothing answers (a process still starting)."""
    import aiohttp

    try:
        async with (aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
                    session.get(url) as response):
            return response.status, await response.text()
    except (TimeoutError, aiohttp.ClientError):
        return 0, ""
