"""Building what goes on the wire from a validated part and what AEMO already holds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dersync.store import IdMap


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
