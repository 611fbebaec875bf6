"""The NMI page's side-by-side view: every field of the store's record next to AEMO's copy,
paired as reconciliation pairs them (equipment by the operator's ids, AEMO's ids when the
operator's is missing), a row flagged where reconciliation's comparison finds a difference."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from dersync.reconcile.compare import SERVER_OWNED

#: Equipment lists and how their items are named in a path (operator's id, else AEMO's).
_LISTS = {"acConnections": ("nspConnectionId", "connectionId"), "devices": ("nspDeviceId", "deviceId")}


def leaves(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(path, value) for every scalar (and list of scalars) in a record, paths as reconciliation
    spells them: `acConnections[nspConnectionId=C1].devices[nspDeviceId=D1].details.model`."""
    found: list[tuple[str, Any]] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if key in _LISTS and isinstance(item, list) and all(isinstance(i, Mapping) for i in item):
                own, theirs = _LISTS[key]
                for entry in item:
                    name = f"{own}={entry[own]}" if entry.get(own) is not None else f"{theirs}={entry.get(theirs)}"
                    found.extend(leaves(entry, f"{path}[{name}]"))
            elif isinstance(item, Mapping):
                found.extend(leaves(item, path))
            else:
                found.append((path, item))
    else:
        found.append((prefix, value))
    return found


def side_by_side(store: Mapping[str, Any] | None, aemo: Mapping[str, Any] | None,
                 diffs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows {path, store, aemo, differs, serverOwned}: the store's fields in its order, then those
    only AEMO holds. `differs` follows `diffs` (reconciliation's comparison), so that both views
    agree on what differs: a row under a path it names (a whole connection AEMO lacks) is one."""
    mine = dict(leaves(store or {}))
    theirs = dict(leaves(aemo or {}))
    paths = list(mine) + [path for path in theirs if path not in mine]
    different = [str(d["path"]) for d in diffs]
    rows = []
    for path in paths:
        last = path.rsplit(".", 1)[-1]
        rows.append({
            "path": path,
            "store": shown(mine.get(path)) if path in mine else None,
            "aemo": shown(theirs.get(path)) if path in theirs else None,
            "differs": any(path == d or path.startswith((d + ".", d + "[")) for d in different),
            "serverOwned": last in SERVER_OWNED,
        })
    return rows


def shown(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)
