"""Field-by-field comparison of the store's validated payload with AEMO's copy (pure functions).

Rules, from AEMO's documents and the register's semantics:

* Server-owned fields (`recordCreationDate`, `recordUpdateDate`, `recordConfirmedDate`,
  `installationStage`, `connectionId`, `deviceId`) are never compared.
* A field AEMO returns as `null` (or leaves out, or as an empty string, list or object) while the
  store has no value for it is equal: AEMO adds nulls for fields never sent. A non-null value AEMO
  holds for a field the store does not send *is* a difference (`store` is `None`).
* Numbers compare by value (5 == 5.0, and "5.0" == 5 when AEMO answers with a numeric string);
  a date equals the same date at midnight (`2024-03-01` == `2024-03-01T00:00:00Z`).
* AC connections pair by `nspConnectionId`, devices by `nspDeviceId`. AEMO's `connectionId` /
  `deviceId` are used only to pair an entry whose operator id was changed at AEMO (given the
  store's id map); they are never compared. Equipment the store lists that AEMO lacks, and
  equipment AEMO holds that the store no longer lists, are differences too.
* Paths are in AEMO's spelling, equipment named by the operator's ids:
  `acConnections[nspConnectionId=C1].devices[nspDeviceId=D1].details.nominalRatedCapacity`.

A difference is `{"path": ..., "store": <store value or None>, "aemo": <AEMO value or None>}`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from dersync.models import AEMO_STAMPS, SERVER_OWNED_FIELDS
from dersync.store.equipment import IdMap

SERVER_OWNED = SERVER_OWNED_FIELDS
#: Dropped from equipment objects shown in a difference; AEMO's ids stay, so an admin can name them.
_NOISE = AEMO_STAMPS
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MIDNIGHT = re.compile(r"^T00:00(:00(\.0+)?)?(Z|[+-]\d{2}:?\d{2})?$")

Diff = dict[str, Any]


def compare_installation(store: Mapping[str, Any], aemo: Mapping[str, Any], ids: IdMap | None = None) -> list[Diff]:
    """Differences between the store's installation payload and AEMO's installation."""
    diffs: list[Diff] = []
    _compare_object(store, aemo, "", diffs, skip={"acConnections"})
    _compare_connections(store.get("acConnections") or [], aemo.get("acConnections") or [], ids or {}, diffs)
    return diffs


def compare_nmi_details(store: Mapping[str, Any], aemo: Mapping[str, Any]) -> list[Diff]:
    """Differences between the store's NMI details and AEMO's NMI record."""
    diffs: list[Diff] = []
    _compare_object(store, aemo, "", diffs)
    return diffs


def conditional_equipment(aemo: Mapping[str, Any]) -> list[Diff]:
    """The connections and devices AEMO holds at installation stage Conditional."""
    found: list[Diff] = []
    if aemo.get("installationStage") == "Conditional":
        found.append({"path": "installationStage", "store": None, "aemo": "Conditional"})
    for connection in aemo.get("acConnections") or []:
        if not isinstance(connection, Mapping):
            continue
        base = _item_path("acConnections", "nspConnectionId", "connectionId", connection)
        if connection.get("installationStage") == "Conditional":
            found.append({"path": f"{base}.installationStage", "store": None, "aemo": "Conditional"})
        for device in connection.get("devices") or []:
            if isinstance(device, Mapping) and device.get("installationStage") == "Conditional":
                path = _item_path(f"{base}.devices", "nspDeviceId", "deviceId", device)
                found.append({"path": f"{path}.installationStage", "store": None, "aemo": "Conditional"})
    return found


def repairable(diff: Diff) -> bool:
    """Whether pushing the store's version fixes this difference.

    A push sends what the store holds; AEMO's PUT updates or adds and never removes, so a value
    (or equipment) AEMO holds that the store does not send stays: that needs action at AEMO.
    """
    return diff["store"] is not None


_WHOLE_ENTRY = re.compile(r"^acConnections\[[^\]]+\](\.devices\[[^\]]+\])?$")


def removed_entry(diff: Diff) -> bool:
    """A whole connection or device AEMO holds that the store's record does not list (the
    lifecycle's case, not a field difference)."""
    return diff["store"] is None and isinstance(diff["aemo"], Mapping) and bool(_WHOLE_ENTRY.match(diff["path"]))


def values_equal(store: Any, aemo: Any) -> bool:
    """JSON equality as AEMO means it: nulls equal absence, numbers by value, dates by day."""
    return _norm(store) == _norm(aemo) or _loosely_equal(store, aemo)


# --- internals -------------------------------------------------------------------------------------


def _compare_object(store: Mapping[str, Any] | None, aemo: Mapping[str, Any] | None, prefix: str,
                    diffs: list[Diff], skip: frozenset[str] | set[str] = frozenset()) -> None:
    store = store if isinstance(store, Mapping) else {}
    aemo = aemo if isinstance(aemo, Mapping) else {}
    keys = list(store) + [k for k in aemo if k not in store]
    for key in keys:
        if key in SERVER_OWNED or key in skip:
            continue
        mine, theirs = store.get(key), aemo.get(key)
        path = f"{prefix}.{key}" if prefix else key
        both_objects = (mine is None or isinstance(mine, Mapping)) and (theirs is None or isinstance(theirs, Mapping))
        if (isinstance(mine, Mapping) or isinstance(theirs, Mapping)) and both_objects:
            _compare_object(mine, theirs, path, diffs)
            continue
        if not values_equal(mine, theirs):
            diffs.append({"path": path, "store": _show(mine), "aemo": _show(theirs)})


def _compare_connections(store: Sequence[Any], aemo: Sequence[Any], ids: IdMap, diffs: list[Diff]) -> None:
    by_aemo_id = {aemo_id: nsp for (nsp, device), aemo_id in ids.items() if device == ""}
    for mine, theirs, path in _pair(store, aemo, "acConnections", "nspConnectionId", "connectionId", by_aemo_id):
        if theirs is None or mine is None:
            diffs.append({"path": path, "store": _show(mine), "aemo": _show(theirs)})
            continue
        _compare_object(mine, theirs, path, diffs, skip={"devices"})
        nsp = mine["nspConnectionId"]
        device_ids = {aemo_id: dev for (conn, dev), aemo_id in ids.items() if conn == nsp and dev != ""}
        for d_mine, d_theirs, d_path in _pair(mine.get("devices") or [], theirs.get("devices") or [],
                                              f"{path}.devices", "nspDeviceId", "deviceId", device_ids):
            if d_theirs is None or d_mine is None:
                diffs.append({"path": d_path, "store": _show(d_mine), "aemo": _show(d_theirs)})
            else:
                _compare_object(d_mine, d_theirs, d_path, diffs)


def _pair(store: Sequence[Any], aemo: Sequence[Any], field: str, key: str, id_key: str,
          nsp_by_aemo_id: Mapping[int, str]) -> list[tuple[Any, Any, str]]:
    """(store item or None, AEMO item or None, path): store order first, then AEMO's extras."""
    mine = {str(item[key]): item for item in store if isinstance(item, Mapping) and item.get(key) is not None}
    matched: dict[str, Any] = {}
    extras: list[Mapping[str, Any]] = []
    for item in aemo:
        if not isinstance(item, Mapping):
            continue
        nsp = item.get(key)
        if nsp is not None and str(nsp) in mine and str(nsp) not in matched:
            matched[str(nsp)] = item
        else:
            extras.append(item)
    unpaired: list[Mapping[str, Any]] = []
    for item in extras:  # an operator id changed at AEMO: pair by the id AEMO assigned
        nsp = nsp_by_aemo_id.get(_as_int(item.get(id_key)))  # type: ignore[arg-type]
        if nsp is not None and nsp in mine and nsp not in matched:
            matched[nsp] = item
        else:
            unpaired.append(item)
    pairs: list[tuple[Mapping[str, Any] | None, Mapping[str, Any] | None, str]] = [
        (item, matched.get(nsp), f"{field}[{key}={nsp}]") for nsp, item in mine.items()]
    seen: set[str] = set(mine)
    for item in unpaired:
        nsp = item.get(key)
        if nsp is None or str(nsp) in seen:  # no operator id, or a duplicate: name it by AEMO's id
            path = f"{field}[{id_key}={item.get(id_key)}]"
        else:
            path = f"{field}[{key}={nsp}]"
            seen.add(str(nsp))
        pairs.append((None, item, path))
    return pairs


def _item_path(field: str, key: str, id_key: str, item: Mapping[str, Any]) -> str:
    if item.get(key) is not None:
        return f"{field}[{key}={item[key]}]"
    return f"{field}[{id_key}={item.get(id_key)}]"


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _norm(value: Any) -> Any:
    if isinstance(value, bool):
        return ("bool", value)  # true is not 1 in JSON
    if value is None:
        return value
    if isinstance(value, (int, float, Decimal)):
        return float(value)
    if isinstance(value, Mapping):
        return {k: _norm(v) for k, v in value.items() if v is not None and k not in SERVER_OWNED}
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    return value


def _loosely_equal(store: Any, aemo: Any) -> bool:
    """A numeric string against a number, a date against the same date at midnight, or an empty
    value (`""`, `[]`, `{}`) against an absent one."""
    if store is None or aemo is None:
        other = aemo if store is None else store
        return other in ("", [], {}) or (isinstance(other, Mapping) and not _norm(other))
    if isinstance(store, (list, tuple)) and isinstance(aemo, (list, tuple)):
        return len(store) == len(aemo) and all(values_equal(a, b) for a, b in zip(store, aemo, strict=False))
    if isinstance(store, Mapping) and isinstance(aemo, Mapping):
        keys = (set(store) | set(aemo)) - SERVER_OWNED
        return all(values_equal(store.get(k), aemo.get(k)) for k in keys)
    for number, text in ((store, aemo), (aemo, store)):
        if _is_number(number) and isinstance(text, str):
            try:
                return float(text) == float(number)
            except ValueError:
                return False
    if isinstance(store, str) and isinstance(aemo, str):
        short, long = sorted((store, aemo), key=len)
        return bool(_DATE.match(short)) and long.startswith(short) and bool(_MIDNIGHT.match(long[len(short):]))
    return False


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def _show(value: Any) -> Any:
    """A value as a difference shows it: equipment without AEMO's dates and stages, no nulls."""
    if isinstance(value, Mapping):
        return {k: _show(v) for k, v in value.items() if k not in _NOISE and v is not None}
    if isinstance(value, (list, tuple)):
        return [_show(v) for v in value]
    return value
