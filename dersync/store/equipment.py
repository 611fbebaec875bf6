"""AEMO's equipment ids, remembered against the operator's own ids.

On a PUT, an AC connection or device that AEMO already holds must carry the `connectionId` /
`deviceId` AEMO assigned, or AEMO adds it again. These rows are how dersync knows them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from dersync.store.tables import equipment_id

#: (nspConnectionId, nspDeviceId or "" for the connection itself) -> AEMO id
IdMap = dict[tuple[str, str], int]


@dataclass(frozen=True)
class EquipmentId:
    nsp_connection_id: str
    nsp_device_id: str
    aemo_id: int
    installation_stage: str | None


def ids_from_installation(installation: Mapping[str, Any]) -> list[EquipmentId]:
    """Read the ids AEMO assigned out of an installation as AEMO returned it."""
    found: list[EquipmentId] = []
    for connection in installation.get("acConnections") or []:
        nsp_connection = connection.get("nspConnectionId")
        if nsp_connection is None or connection.get("connectionId") is None:
            continue
        found.append(EquipmentId(str(nsp_connection), "", int(connection["connectionId"]),
                                 connection.get("installationStage")))
        for device in connection.get("devices") or []:
            if device.get("nspDeviceId") is None or device.get("deviceId") is None:
                continue
            found.append(EquipmentId(str(nsp_connection), str(device["nspDeviceId"]),
                                     int(device["deviceId"]), device.get("installationStage")))
    return found


async def load_ids(connection: AsyncConnection, nmis: Sequence[str]) -> dict[str, IdMap]:
    result = await connection.execute(
        select(equipment_id.c.nmi, equipment_id.c.nsp_connection_id, equipment_id.c.nsp_device_id,
               equipment_id.c.aemo_id).where(equipment_id.c.nmi.in_(nmis))
    )
    maps: dict[str, IdMap] = {}
    for nmi, nsp_connection, nsp_device, aemo_id in result:
        maps.setdefault(nmi, {})[(nsp_connection, nsp_device)] = aemo_id
    return maps


async def save_ids(connection: AsyncConnection, ids_by_nmi: Mapping[str, Sequence[EquipmentId]]) -> None:
    """Replace what is known for each NMI with AEMO's latest answer (AEMO is the authority).

    NMIs whose answer carried no ids keep what is known. Two statements however many NMIs.
    """
    ids_by_nmi = {nmi: ids for nmi, ids in ids_by_nmi.items() if ids}
    if not ids_by_nmi:
        return
    rows = [
        {"nmi": nmi, "nsp_connection_id": i.nsp_connection_id, "nsp_device_id": i.nsp_device_id,
         "aemo_id": i.aemo_id, "installation_stage": i.installation_stage}
        for nmi, ids in ids_by_nmi.items()
        for i in ids
    ]
    await connection.execute(delete(equipment_id).where(equipment_id.c.nmi.in_(list(ids_by_nmi))))
    await connection.execute(equipment_id.insert(), rows)
