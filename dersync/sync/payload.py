"""Building what goes on the wire from a validated part and what AEMO already holds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dersync.models import AEMO_STAMPS
from dersync.store import EquipmentId, IdMap


def with_aemo_ids(installation: Mapping[str, Any], ids: IdMap) -> dict[str, Any]:
    """Give every AC connection and device AEMO already holds the id AEMO assigned.

    Without its `connectionId` / `deviceId` AEMO treats an entry as new and adds it a second
    time; entries AEMO does not hold yet go without one, and AEMO adds them.
    """
    body = dict(installation)
    connections = []
    for connection in installation.get("acConnections") or []:
        nsp_connection = connection["nspConnectionId"]
        entry = dict(connection)
        if (nsp_connection, "") in ids:
            entry["connectionId"] = ids[(nsp_connection, "")]
        devices = []
        for device in connection.get("devices") or []:
            device_entry = dict(device)
            key = (nsp_connection, device["nspDeviceId"])
            if key in ids:
                device_entry["deviceId"] = ids[key]
            devices.append(device_entry)
        if "devices" in connection:
            entry["devices"] = devices
        connections.append(entry)
    body["acConnections"] = connections
    return body


def missing_ids(installation: Mapping[str, Any], ids: IdMap) -> bool:
    """True when some equipment has no known AEMO id: it may be new, or the map may be stale."""
    for connection in installation.get("acConnections") or []:
        nsp_connection = connection["nspConnectionId"]
        if (nsp_connection, "") not in ids:
            return True
        for device in connection.get("devices") or []:
            if (nsp_connection, device["nspDeviceId"]) not in ids:
                return True
    return False


def removed_in_store(installation: Mapping[str, Any], held: Sequence[EquipmentId],
                     decommissioned_status: str) -> list[EquipmentId]:
    """Equipment AEMO holds (and not as decommissioned) that the store's record no longer lists.

    AEMO's API has no DELETE and its PUT never removes, so such equipment stays active at AEMO
    unless something is done. A device whose whole connection is gone is not listed on its own:
    the connection stands for it.
    """
    listed = set(listed_keys(installation))
    gone = [item for item in held if item.key not in listed and not _decommissioned(item.status, decommissioned_status)]
    gone_connections = {item.nsp_connection_id for item in gone if item.nsp_device_id == ""}
    return [item for item in gone if item.nsp_device_id == "" or item.nsp_connection_id not in gone_connections]


def with_decommissioned(body: Mapping[str, Any], held_at_aemo: Mapping[str, Any], removed: Sequence[EquipmentId],
                        status: str) -> dict[str, Any]:
    """`body` plus each removed entry as AEMO holds it (its ids, its fields) with `status` set,
    so that the PUT marks it decommissioned instead of leaving it active. A removed connection
    takes its devices with it."""
    out = dict(body)
    connections = [dict(c) for c in out.get("acConnections") or []]
    by_nsp = {c["nspConnectionId"]: c for c in connections}
    for item in removed:
        theirs = _aemo_connection(held_at_aemo, item.nsp_connection_id)
        if theirs is None:
            continue
        if item.nsp_device_id == "":
            entry = _client_fields(theirs)
            entry["status"] = status
            entry["devices"] = [{**_client_fields(d), "status": status} for d in theirs.get("devices") or []]
            connections.append(entry)
            continue
        device = next((d for d in theirs.get("devices") or [] if d.get("nspDeviceId") == item.nsp_device_id), None)
        mine = by_nsp.get(item.nsp_connection_id)
        if device is None or mine is None:
            continue
        mine["devices"] = [*(mine.get("devices") or []), {**_client_fields(device), "status": status}]
    out["acConnections"] = connections
    return out


def listed_keys(installation: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(nspConnectionId, "") and (nspConnectionId, nspDeviceId) of every entry the store lists."""
    keys: list[tuple[str, str]] = []
    for connection in installation.get("acConnections") or []:
        nsp_connection = connection["nspConnectionId"]
        keys.append((nsp_connection, ""))
        keys.extend((nsp_connection, device["nspDeviceId"]) for device in connection.get("devices") or [])
    return keys


def _client_fields(entry: Mapping[str, Any]) -> dict[str, Any]:
    """An entry as AEMO holds it, without what AEMO stamps (its ids stay: they name the entry)."""
    out = {k: v for k, v in entry.items() if k not in AEMO_STAMPS and v is not None}
    if isinstance(out.get("details"), Mapping):
        out["details"] = {k: v for k, v in out["details"].items() if k not in AEMO_STAMPS and v is not None}
    return out


def _aemo_connection(held_at_aemo: Mapping[str, Any], nsp_connection_id: str) -> Mapping[str, Any] | None:
    for connection in held_at_aemo.get("acConnections") or []:
        if isinstance(connection, Mapping) and connection.get("nspConnectionId") == nsp_connection_id:
            return connection
    return None


def _decommissioned(status: str | None, decommissioned_status: str) -> bool:
    return status is not None and status.strip().lower() == decommissioned_status.strip().lower()
