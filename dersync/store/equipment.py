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
    """One connection (`nsp_device_id` "") or device AEMO holds, as its latest answer showed it."""

    nsp_connection_id: str
    nsp_device_id: str
    aemo_id: int
    installation_stage: str | None
    status: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.nsp_connection_id, self.nsp_device_id)


def ids_from_installation(installation: Mapping[str, Any]) -> list[EquipmentId]:
    """Read the ids AEMO assigned out of an installation as AEMO returned it."""
    found: list[EquipmentId] = []
    for connection in installation.get("acConnections") or []:
        nsp_connection = connection.get("nspConnectionId")
        if nsp_connection is None or connection.get("connectionId") is None:
            continue
        found.append(EquipmentId(str(nsp_connection), "", int(connection["connectionId"]),
                                 _text(connection.get("installationStage")), _text(connection.get("status"))))
        for device in connection.get("devices") or []:
            if device.get("nspDeviceId") is None or device.get("deviceId") is None:
                continue
            found.append(EquipmentId(str(nsp_connection), str(device["nspDeviceId"]),
                                     int(device["deviceId"]), _text(device.get("installationStage")),
                                     _text(device.get("status"))))
    return found


async def load_ids(connection: AsyncConnection, nmis: Sequence[str]) -> dict[str, IdMap]:
    return {nmi: id_map(held) for nmi, held in (await load_equipment(connection, nmis)).items()}


async def load_equipment(connection: AsyncConnection, nmis: Sequence[str]) -> dict[str, list[EquipmentId]]:
    """What AEMO held for these NMIs at its latest answer, by NMI."""
    result = await connection.execute(
        select(equipment_id.c.nmi, equipment_id.c.nsp_connection_id, equipment_id.c.nsp_device_id,
               equipment_id.c.aemo_id, equipment_id.c.installation_stage, equipment_id.c.status)
        .where(equipment_id.c.nmi.in_(nmis))
    )
    held: dict[str, list[EquipmentId]] = {}
    for nmi, nsp_connection, nsp_device, aemo_id, stage, status in result:
        held.setdefault(nmi, []).append(EquipmentId(nsp_connection, nsp_device, aemo_id, stage, status))
    return held


def id_map(held: Sequence[EquipmentId]) -> IdMap:
    return {item.key: item.aemo_id for item in held}


def _text(value: Any) -> str | None:
    """AEMO's word for a stage or status as the store can keep it: PostgreSQL's text takes no
    NUL character, and a status that holds one is no status dersync compares with anyway, so a
    NUL becomes U+FFFD (the replacement character) instead of failing the outcome's transaction."""
    return None if value is None else str(value).replace("\x00", "\ufffd")


async def save_ids(connection: AsyncConnection, ids_by_nmi: Mapping[str, Sequence[EquipmentId]]) -> None:
    """Replace what is known for each NMI with AEMO's latest answer (AEMO is the authority).

    NMIs whose answer carried no ids keep what is known. Two statements however many NMIs.
    """
    ids_by_nmi = {nmi: ids for nmi, ids in ids_by_nmi.items() if ids}
    if not ids_by_nmi:
        return
    rows = [
        {"nmi": nmi, "nsp_connection_id": i.nsp_connection_id, "nsp_device_id": i.nsp_device_id,
         "aemo_id": i.aemo_id, "installation_stage": i.installation_stage, "status": i.status}
        for nmi, ids in ids_by_nmi.items()
        for i in ids
    ]
    await connection.execute(delete(equipment_id).where(equipment_id.c.nmi.in_(list(ids_by_nmi))))
    await connection.execute(equipment_id.insert(), rows)
