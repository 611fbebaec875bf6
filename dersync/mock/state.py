"""The simulated DER Register: what AEMO holds, plus counters tests and benchmarks read.

Register semantics (AEMO's documents leave these open; the choices are deliberate):

* ``installations[nmi]`` is the current version exactly as a GET returns it (server-owned
  ``recordCreationDate`` / ``recordUpdateDate`` on installation, connection, details and device;
  ``connectionId`` / ``deviceId`` / ``installationStage`` / ``recordConfirmedDate`` on connections
  and devices). Connection ids and device ids come from two global counters in different ranges
  (100001.. and 500001..) so a client that mixes them up is caught.
* PUT is a merge, never a delete: a connection/device carrying an id is updated field by field
  (a key sent with ``null`` is cleared, a key not sent is kept, ``serialNumbers`` is replaced
  whole); one without an id is added with a fresh id; connections/devices at AEMO but absent from
  the body are KEPT, because AEMO documents PUT as "update or add", not replace.
* Every successful create/update appends a full copy to ``history[nmi]`` (oldest first) with
  ``recordStartDate`` / ``recordEndDate`` (null on the current version).
* Second-level exceptions are re-assessed over the whole record on every write, so an exception
  disappears once its cause is fixed; the current list lives in ``exceptions[nmi]``.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from .validation import SERVER_OWNED

Assessor = Callable[[dict[str, Any]], tuple[list[dict[str, Any]], set[int], set[int]]]

FIRST_CONNECTION_ID = 100_001
FIRST_DEVICE_ID = 500_001
_MISSING = object()


class Served(NamedTuple):
    """One request as the simulator served it; `status` 0 means the connection was dropped.

    `agent` is the client's User-Agent header, so that tests can tell which process sent what.
    """

    at: float  # the simulator's monotonic clock when it answered
    method: str
    path: str
    route: str
    status: int
    transaction_id: str
    agent: str


class SimClock:
    """Monotonic and wall clocks that tests can push forward (token expiry, throttle window)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.offset)

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def iso(self) -> str:
        return self.now().isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _client_fields(sent: dict[str, Any], skip: Iterable[str] = ()) -> dict[str, Any]:
    """Client-owned, non-null fields of a sent object (server-owned values are ignored)."""
    skip = set(skip) | SERVER_OWNED
    return {k: copy.deepcopy(v) for k, v in sent.items() if k not in skip and v is not None}


def _merge(target: dict[str, Any], sent: dict[str, Any], skip: Iterable[str] = ()) -> bool:
    """Field-wise merge; returns whether anything changed."""
    skip = set(skip) | SERVER_OWNED
    changed = False
    for key, value in sent.items():
        if key in skip:
            continue
        if value is None:
            if key in target:
                del target[key]
                changed = True
        elif target.get(key) != value:
            target[key] = copy.deepcopy(value)
            changed = True
    return changed


def _walk_path(path: str | Sequence[Any]) -> list[Any]:
    if isinstance(path, str):
        return [int(p) if p.lstrip("-").isdigit() else p for p in path.split(".")]
    return list(path)


class RegisterState:
    """In-memory register with optional JSON persistence (``state_file``)."""

    def __init__(self, clock: SimClock | None = None, state_file: str | None = None) -> None:
        self.clock = clock or SimClock()
        self.state_file = state_file
        self.dirty = False
        self.nmis: dict[str, dict[str, Any]] = {}
        self.installations: dict[str, dict[str, Any]] = {}
        self.history: dict[str, list[dict[str, Any]]] = {}
        self.exceptions: dict[str, list[dict[str, Any]]] = {}
        self.next_connection_id = FIRST_CONNECTION_ID
        self.next_device_id = FIRST_DEVICE_ID
        self.reset_counters()
        if state_file and Path(state_file).exists():
            self.load()

    # ---------------------------------------------------------------- counters
    def reset_counters(self) -> None:
        """Zero every counter (the register itself is untouched)."""
        self.requests_total = 0
        #: (method, route_name, status); status 0 = connection dropped without an answer.
        self.requests_by_route: Counter[tuple[str, str, int]] = Counter()
        self.throttled_total = 0
        self.creates: Counter[str] = Counter()
        self.nmi_creates: Counter[str] = Counter()
        self.token_issued_total = 0
        self.max_requests_in_any_window = 0
        self.faults: Counter[str] = Counter()
        #: Recent requests, oldest first (see `Served`).
        self.request_log: deque[Served] = deque(maxlen=20_000)

    def record_request(self, method: str, path: str, route: str, status: int, txid: str, agent: str = "") -> None:
        self.requests_by_route[(method, route, status)] += 1
        self.request_log.append(Served(self.clock.monotonic(), method, path, route, status, txid, agent))

    def count(self, route: str | None = None, status: int | None = None, method: str | None = None) -> int:
        """Sum of ``requests_by_route`` entries matching the given parts."""
        return sum(
            n
            for (m, r, s), n in self.requests_by_route.items()
            if (route is None or r == route) and (status is None or s == status) and (method is None or m == method)
        )

    # ---------------------------------------------------------------- NMI records
    def create_nmi(self, body: dict[str, Any]) -> dict[str, Any]:
        now = self.clock.iso()
        record = {"nmi": body["nmi"], **_client_fields(body, skip={"nmi"})}
        record.update(recordCreationDate=now, recordUpdateDate=now)
        self.nmis[body["nmi"]] = record
        self.nmi_creates[body["nmi"]] += 1
        self.changed()
        return copy.deepcopy(record)

    def update_nmi(self, nmi: str, body: dict[str, Any]) -> dict[str, Any]:
        record = self.nmis[nmi]
        if _merge(record, body, skip={"nmi"}):
            record["recordUpdateDate"] = self.clock.iso()
        self.changed()
        return copy.deepcopy(record)

    # ---------------------------------------------------------------- installations
    def _new_details(self, sent: dict[str, Any] | None, now: str) -> dict[str, Any] | None:
        if sent is None:
            return None
        return {"recordCreationDate": now, "recordUpdateDate": now, **_client_fields(sent)}

    def _new_device(self, sent: dict[str, Any], now: str) -> dict[str, Any]:
        dev: dict[str, Any] = {
            "recordCreationDate": now,
            "recordUpdateDate": now,
            "deviceId": self.next_device_id,
            "installationStage": None,
            "recordConfirmedDate": None,
        }
        self.next_device_id += 1
        dev.update(_client_fields(sent, skip={"deviceId", "details"}))
        details = self._new_details(sent.get("details"), now)
        if details is not None:
            dev["details"] = details
        return dev

    def _new_connection(self, sent: dict[str, Any], now: str) -> dict[str, Any]:
        conn: dict[str, Any] = {
            "recordCreationDate": now,
            "recordUpdateDate": now,
            "connectionId": self.next_connection_id,
            "installationStage": None,
            "recordConfirmedDate": None,
        }
        self.next_connection_id += 1
        conn.update(_client_fields(sent, skip={"connectionId", "details", "devices"}))
        details = self._new_details(sent.get("details"), now)
        if details is not None:
            conn["details"] = details
        conn["devices"] = [self._new_device(d, now) for d in sent.get("devices") or []]
        return conn

    @staticmethod
    def _merge_details(item: dict[str, Any], sent: dict[str, Any], now: str) -> bool:
        if "details" not in sent:
            return False
        if sent["details"] is None:
            return item.pop("details", None) is not None
        if "details" not in item:
            item["details"] = {"recordCreationDate": now, "recordUpdateDate": now}
        if _merge(item["details"], sent["details"]):
            item["details"]["recordUpdateDate"] = now
            return True
        return False

    def _update_connection(self, conn: dict[str, Any], sent: dict[str, Any], now: str) -> None:
        changed = _merge(conn, sent, skip={"connectionId", "details", "devices"})
        changed |= self._merge_details(conn, sent, now)
        by_id = {d["deviceId"]: d for d in conn["devices"]}
        for sent_dev in sent.get("devices") or []:
            did = sent_dev.get("deviceId")
            if did is None:
                conn["devices"].append(self._new_device(sent_dev, now))
                continue
            dev = by_id[int(did)]
            dev_changed = _merge(dev, sent_dev, skip={"deviceId", "details"})
            dev_changed |= self._merge_details(dev, sent_dev, now)
            if dev_changed:
                dev["recordUpdateDate"] = now
        if changed:
            conn["recordUpdateDate"] = now

    def create_installation(self, data: dict[str, Any],
                            assess: Assessor) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """POST /installation after validation: assign ids, stamp dates, assess, store."""
        now = self.clock.iso()
        nmi = data["nmi"]
        inst: dict[str, Any] = {"recordCreationDate": now, "recordUpdateDate": now, "nmi": nmi}
        inst.update(_client_fields(data, skip={"nmi", "acConnections"}))
        inst["acConnections"] = [self._new_connection(c, now) for c in data.get("acConnections") or []]
        self.creates[nmi] += 1
        return self._commit(nmi, inst, assess, now)

    def update_installation(
        self, nmi: str, data: dict[str, Any], assess: Assessor
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """PUT /installation/{nmi} after validation (ids already checked): merge, assess, store."""
        now = self.clock.iso()
        inst = copy.deepcopy(self.installations[nmi])
        _merge(inst, data, skip={"nmi", "acConnections"})
        by_id = {c["connectionId"]: c for c in inst["acConnections"]}
        for sent in data.get("acConnections") or []:
            cid = sent.get("connectionId")
            if cid is None:
                inst["acConnections"].append(self._new_connection(sent, now))
            else:
                self._update_connection(by_id[int(cid)], sent, now)
        inst["recordUpdateDate"] = now
        return self._commit(nmi, inst, assess, now)

    def _commit(
        self, nmi: str, inst: dict[str, Any], assess: Assessor, now: str
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        exceptions, cond_conns, cond_devs = assess(inst)
        for conn in inst["acConnections"]:
            _set_stage(conn, conn["connectionId"] in cond_conns, now)
            for dev in conn["devices"]:
                _set_stage(dev, dev["deviceId"] in cond_devs, now)
        self.installations[nmi] = inst
        self.exceptions[nmi] = exceptions
        self._append_history(nmi, inst, now)
        self.changed()
        return copy.deepcopy(inst), copy.deepcopy(exceptions)

    def _append_history(self, nmi: str, inst: dict[str, Any], now: str) -> None:
        versions = self.history.setdefault(nmi, [])
        if versions:
            versions[-1]["recordEndDate"] = now
        versions.append({**copy.deepcopy(inst), "recordStartDate": now, "recordEndDate": None})

    def get_installation(self, nmi: str) -> dict[str, Any] | None:
        inst = self.installations.get(nmi)
        return copy.deepcopy(inst) if inst is not None else None

    def query(
        self, predicate: Callable[[dict[str, Any]], bool], candidates: Iterable[str] | None = None
    ) -> list[str]:
        """NMIs (sorted) whose current installation matches ``predicate``; ``candidates`` narrows the scan."""
        pool = (self.installations.keys() if candidates is None
                else (n for n in set(candidates) if n in self.installations))
        return sorted(n for n in pool if predicate(self.installations[n]))

    # ---------------------------------------------------------------- test helpers
    def tamper(
        self,
        nmi: str,
        change: Callable[[dict[str, Any]], dict[str, Any] | None] | str | Sequence[Any],
        value: Any = _MISSING,
        *,
        target: str = "installation",
        record_history: bool = True,
    ) -> dict[str, Any]:
        """Change a stored record behind the sync service's back (as an AEMO-side edit would).

        ``change`` is either a function that mutates (or returns a replacement for) the record, or
        a path (``"acConnections.0.details.modelNumber"`` or a sequence of keys/indices) with
        ``value`` to set there; ``value=None`` on a path deletes the key. ``target`` is
        ``"installation"`` or ``"nmi"``. No validation, no second-level re-assessment.
        """
        store = self.installations if target == "installation" else self.nmis
        record = store[nmi]
        if callable(change):
            replaced = change(record)
            if replaced is not None:
                store[nmi] = record = replaced
        else:
            keys = _walk_path(change)
            if value is _MISSING:
                raise TypeError("tamper with a path needs a value")
            node: Any = record
            for key in keys[:-1]:
                node = node[key]
            if value is None and isinstance(node, dict):
                node.pop(keys[-1], None)
            else:
                node[keys[-1]] = value
        now = self.clock.iso()
        record["recordUpdateDate"] = now
        if target == "installation" and record_history:
            self._append_history(nmi, record, now)
        self.changed()
        return copy.deepcopy(record)

    def delete_installation(self, nmi: str) -> bool:
        """Forget an installation (current version, history and exceptions)."""
        found = self.installations.pop(nmi, None) is not None
        self.history.pop(nmi, None)
        self.exceptions.pop(nmi, None)
        self.changed()
        return found

    def delete_nmi(self, nmi: str) -> bool:
        """Forget an NMI record (its installation, if any, is left alone)."""
        found = self.nmis.pop(nmi, None) is not None
        self.changed()
        return found

    def duplicate_equipment(self) -> list[dict[str, Any]]:
        """Signs of a client that re-added equipment instead of updating it.

        One entry per installation where two AC connections share an ``nspConnectionId``, or two
        devices within one connection share an ``nspDeviceId``.
        """
        found: list[dict[str, Any]] = []
        for nmi in sorted(self.installations):
            conns = self.installations[nmi].get("acConnections", [])
            for nsp, ids in _dupes((c.get("nspConnectionId"), c["connectionId"]) for c in conns):
                found.append({"nmi": nmi, "kind": "connection", "nspConnectionId": nsp, "connectionIds": ids})
            for conn in conns:
                for nsp, ids in _dupes((d.get("nspDeviceId"), d["deviceId"]) for d in conn.get("devices", [])):
                    found.append(
                        {
                            "nmi": nmi,
                            "kind": "device",
                            "connectionId": conn["connectionId"],
                            "nspDeviceId": nsp,
                            "deviceIds": ids,
                        }
                    )
        return found

    def snapshot(self) -> dict[str, Any]:
        """A deep, JSON-serialisable copy of the register and counters."""
        return {
            **self._register(),
            "counters": {
                **self.counters(),
                "creates": dict(self.creates),
                "nmi_creates": dict(self.nmi_creates),
            },
        }

    def counters(self) -> dict[str, Any]:
        """The counters without the register or per-NMI tallies (cheap at any register size)."""
        return {
            "requests_total": self.requests_total,
            "requests_by_route": [[m, r, s, n] for (m, r, s), n in sorted(self.requests_by_route.items())],
            "throttled_total": self.throttled_total,
            "token_issued_total": self.token_issued_total,
            "max_requests_in_any_window": self.max_requests_in_any_window,
            "faults": dict(self.faults),
            "nmis": len(self.nmis),
            "installations": len(self.installations),
            "duplicate_creates": sum(1 for n in self.creates.values() if n > 1),
            "duplicate_nmi_creates": sum(1 for n in self.nmi_creates.values() if n > 1),
        }

    # ---------------------------------------------------------------- persistence
    def _register(self) -> dict[str, Any]:
        # No copy: `save` serialises synchronously, so nothing changes the register meanwhile.
        return {
            "version": 1,
            "nmis": self.nmis,
            "installations": self.installations,
            "history": self.history,
            "exceptions": self.exceptions,
            "next_connection_id": self.next_connection_id,
            "next_device_id": self.next_device_id,
        }

    def changed(self) -> None:
        """Called after every register change: the next flush persists it.

        Writing the whole register after every change made a pass quadratic in its size
        (the demo spent 90% of its time re-serialising); the simulator flushes at most once
        a second and on stop instead.
        """
        self.dirty = True

    def flush(self) -> None:
        """Persist the register if it changed since the last save (and a state file is set)."""
        if self.dirty and self.state_file:
            self.save()

    def save(self, path: str | None = None) -> None:
        """Write the register atomically (temp file + rename); counters are not persisted."""
        target = Path(path or self.state_file or "")
        if not str(target):
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=target.name, suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self._register(), fh, indent=1, sort_keys=True)
            os.replace(tmp, target)
            self.dirty = False
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load(self, path: str | None = None) -> None:
        data = json.loads(Path(path or self.state_file or "").read_text(encoding="utf-8"))
        self.nmis = data.get("nmis", {})
        self.installations = data.get("installations", {})
        self.history = data.get("history", {})
        self.exceptions = data.get("exceptions", {})
        self.next_connection_id = int(data.get("next_connection_id", FIRST_CONNECTION_ID))
        self.next_device_id = int(data.get("next_device_id", FIRST_DEVICE_ID))


def _set_stage(item: dict[str, Any], conditional: bool, now: str) -> None:
    if conditional:
        item["installationStage"] = "Conditional"
        item["recordConfirmedDate"] = None
    else:
        if item.get("installationStage") != "Confirmed" or not item.get("recordConfirmedDate"):
            item["recordConfirmedDate"] = now
        item["installationStage"] = "Confirmed"


def _dupes(pairs: Iterable[tuple[Any, int]]) -> list[tuple[Any, list[int]]]:
    seen: dict[Any, list[int]] = {}
    for nsp, ident in pairs:
        if nsp is not None:
            seen.setdefault(nsp, []).append(ident)
    return [(nsp, ids) for nsp, ids in seen.items() if len(ids) > 1]
