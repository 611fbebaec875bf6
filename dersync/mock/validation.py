"""The simulator's validation levels, as AEMO's API reference describes them.

* **JSON schema (HTTP 400, code "1020")** - the body is not JSON, not the documented envelope
  (the NMI API takes a bare object; the Installation API takes ``{"data": {...}}``), a field has the
  wrong JSON type (types follow the OpenAPI examples' ``string`` / ``number`` annotations; booleans
  are never numbers; ``null`` is accepted for any field and means "absent"), or (when
  ``reject_unknown_fields``) a field is not in AEMO's documented request example.
* **First level (HTTP 422, codes 1000-1999, one ``errors[]`` entry per problem)**:

  ====  =======================================================================================
  1000  NMI format: exactly 10 characters, digits or A-Z except I and O
  1001  NMI already exists (POST /nmi-details)
  1002  Installation already exists (POST /installation)
  1003  NMI not registered (POST /installation before POST /nmi-details)
  1004  Mandatory field missing. NMI API: ``nmi``, ``status``. Installation API: ``nmi``,
        ``acConnections`` (non-empty, on POST and PUT), each connection's ``equipmentType``,
        ``count``, ``status``; each device's ``type``, ``count``, ``status``
  1005  Path NMI differs from the body NMI (PUT)
  1006  equipmentType not in AEMO's enumeration
  1007  device type not in AEMO's enumeration
  1008  count is not a whole number >= 1
  1009  negative capacity / limit
  1010  connectionId unknown for this NMI (PUT)
  1011  deviceId unknown within that connection (PUT)
  1012  commissioningDate not a yyyy-mm-dd date
  1013  the same connectionId / deviceId appears twice in one request
  ====  =======================================================================================

* **Second level (Installation API only, still 200/201, data stored)**: 2023 a connection's
  inverter (details.manufacturerName + modelNumber) is not on the approved list; 2024 a device's
  manufacturer/model is not on the approved list; 2040 a connection's capacity
  (``equipmentInjectionCapacity`` when given, else the sum of its devices' ``nominalRatedCapacity``)
  exceeds the installation's ``approvedCapacity`` (skipped when that is absent). Equipment naming
  only one of manufacturer / model is "not on the list"; equipment naming neither is not assessed
  (there is nothing to look up). Matching is case-insensitive. Affected connections/devices become
  ``Conditional``; everything else is ``Confirmed``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# --------------------------------------------------------------------------------------------
# Enumerations (from the GET filter descriptions in the Installation v2 OpenAPI)
# --------------------------------------------------------------------------------------------
EQUIPMENT_TYPES = frozenset(
    {
        "Inverter",
        "Other",
        "Battery Storage Inverter",
        "Controllable Load",
        "Hybrid Inverter",
        "EVSE V2G",
        "EVSE no V2G",
        "Rotating Machine",
        "Solar PV Inverter",
    }
)
DEVICE_TYPES = frozenset(
    {
        "Solar PV",
        "Storage",
        "Controlled load",
        "Co Tri-generation",
        "Fossil",
        "Liquid fuel",
        "Other",
        "Small hydro / Hydro",
        "Small wind / Wind",
        "Waste to energy",
        "Unknown_Device",
    }
)
INSTALLATION_STAGES = frozenset({"Confirmed", "Conditional"})

NMI_RE = re.compile(r"^[A-HJ-NP-Z0-9]{10}$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

SCHEMA_CODE = "1020"


@dataclass(frozen=True)
class ApiError:
    """One entry of AEMO's ``errors[]`` array."""

    code: str
    title: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "title": self.title, "detail": self.detail}


def schema_error(detail: str) -> ApiError:
    return ApiError(SCHEMA_CODE, "JSON schema validation failed", detail)


# --------------------------------------------------------------------------------------------
# Field types, transcribed from the OpenAPI request examples
# --------------------------------------------------------------------------------------------
S = "string"
N = "number"


@dataclass(frozen=True)
class Obj:
    fields: Mapping[str, Any]


@dataclass(frozen=True)
class Arr:
    item: Any


NMI_FIELDS: dict[str, Any] = {"nmi": S, "substation": S, "postCode": S, "tni": S, "status": S}

DEVICE_DETAILS: dict[str, Any] = {
    "recordCreationDate": S,
    "recordUpdateDate": S,
    "manufacturerName": S,
    "modelNumber": S,
    "nominalRatedCapacity": N,
    "nominalLoadCapacity": N,
    "nominalStorageCapacity": N,
}
DEVICE: dict[str, Any] = {
    "recordCreationDate": S,
    "recordUpdateDate": S,
    "deviceId": N,
    "installationStage": S,
    "recordConfirmedDate": S,
    "nspDeviceId": S,
    "type": S,
    "comments": S,
    "count": N,
    "status": S,
    "details": Obj(DEVICE_DETAILS),
}
_CONN_DETAIL_STRINGS = [
    "manufacturerName", "modelNumber", "equipmentSeries", "equipmentStandard", "regionSetting",
    "additionalRequirements", "dredInverterInteraction", "invVoltWattRespMode", "invVoltVarRespMode",
    "invReactivePowerMode", "fixPowerFactorMode", "fixPowerFactorQuad", "powerRespMode", "powerFactorQuadAtP1",
    "powerFactorQuadAtP2", "powerRateLimitMode", "reactivePowerRegulation", "voltageSetPointUnit",
    "reactiveFixPowerFactorQuad", "generatorRampRate", "frequencySensitiveMode"
]
_CONN_DETAIL_NUMBERS = [
    "sustainOpOvervoltLimit", "stopAtOverFreq", "stopAtUnderFreq", "invWattRespV1", "invWattRespV2",
    "invWattRespV3", "invWattRespV4", "invWattRespPAtV1", "invWattRespPAtV2", "invWattRespPAtV3",
    "invWattRespPAtV4", "invVarRespV1", "invVarRespV2", "invVarRespV3", "invVarRespV4", "invVarRespQAtV1",
    "invVarRespQAtV2", "invVarRespQAtV3", "invVarRespQAtV4", "invFixReactivePower", "fixPowerFactor",
    "referencePointP1", "referencePointP2", "powerFactorAtP1", "powerFactorAtP2", "powerRampRate",
    "voltageSetPoint", "deadband", "droop", "baseForDroop", "reactivePowerSourceLimit", "reactivePowerSinkLimit",
    "reactiveFixPowerFactor", "powerRampGradient", "frequencyDeadband", "frequencyDroop"
]
CONNECTION_DETAILS: dict[str, Any] = {
    "recordCreationDate": S,
    "recordUpdateDate": S,
    "serialNumbers": Arr(S),
    **{k: S for k in _CONN_DETAIL_STRINGS},
    **{k: N for k in _CONN_DETAIL_NUMBERS},
}
CONNECTION: dict[str, Any] = {
    "recordCreationDate": S,
    "recordUpdateDate": S,
    "connectionId": N,
    "installationStage": S,
    "recordConfirmedDate": S,
    "nspConnectionId": S,
    "commissioningDate": S,
    "equipmentType": S,
    "count": N,
    "status": S,
    "equipmentInjectionCapacity": N,
    "equipmentWithdrawalCapacity": N,
    "evseOwnershipStatus": S,
    "authorisedAgent": S,
    "managementMethod": S,
    "frequencyRateOfChange": N,
    "voltageVectorShift": N,
    "interTripScheme": S,
    "neutralVoltageDisplacement": N,
    "details": Obj(CONNECTION_DETAILS),
    "devices": Arr(Obj(DEVICE)),
}
_INST_STRINGS = [
    "recordCreationDate", "recordUpdateDate", "nmi", "jobNumber", "islandableInstallation",
    "centralProtectionControl", "interTripScheme", "otherProtection", "installerId", "comments"
]
_INST_NUMBERS = [
    "approvedCapacity", "loadCapacity", "exportLimitkW", "importLimitKw", "availablePhasesCount",
    "installedPhasesCount", "underFrequencyProtection", "underFrequencyProtectionDelay", "overFrequencyProtection",
    "overFrequencyProtectionDelay", "underVoltageProtection", "underVoltageProtectionDelay",
    "overVoltageProtection", "overVoltageProtectionDelay", "sustainedOverVoltage", "sustainedOverVoltageDelay",
    "frequencyRateOfChange", "voltageVectorShift", "neutralVoltageDisplacement"
]
INSTALLATION: dict[str, Any] = {
    **{k: S for k in _INST_STRINGS},
    **{k: N for k in _INST_NUMBERS},
    "acConnections": Arr(Obj(CONNECTION)),
}

INSTALLATION_CAPACITIES = ("approvedCapacity", "loadCapacity", "exportLimitkW", "importLimitKw")
CONNECTION_CAPACITIES = ("equipmentInjectionCapacity", "equipmentWithdrawalCapacity")
DEVICE_CAPACITIES = ("nominalRatedCapacity", "nominalLoadCapacity", "nominalStorageCapacity")

#: Fields AEMO owns; values a client sends for them are ignored.
SERVER_OWNED = frozenset(
    {"recordCreationDate", "recordUpdateDate", "recordConfirmedDate", "installationStage"}
)


def _type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _check(value: Any, spec: Any, path: str, strict: bool, out: list[ApiError]) -> None:
    if value is None:
        return  # nullable everywhere: null means "absent"
    if isinstance(spec, str):
        if _type_name(value) != spec:
            out.append(schema_error(f"{path}: expected {spec}, got {_type_name(value)}"))
        return
    if isinstance(spec, Arr):
        if not isinstance(value, list):
            out.append(schema_error(f"{path}: expected array, got {_type_name(value)}"))
            return
        for i, item in enumerate(value):
            _check(item, spec.item, f"{path}[{i}]", strict, out)
        return
    if not isinstance(value, dict):
        out.append(schema_error(f"{path}: expected object, got {_type_name(value)}"))
        return
    for key, item in value.items():
        if key not in spec.fields:
            if strict:
                out.append(schema_error(f"{path}.{key}: unknown field"))
            continue
        _check(item, spec.fields[key], f"{path}.{key}", strict, out)


def parse_json(raw: bytes) -> tuple[Any, list[ApiError]]:
    """Decode a UTF-8 JSON body; a failure is a schema (400/1020) error. Nesting deeper than
    the decoder's recursion limit is one too (a 10 MB body can hold a million brackets)."""
    try:
        return json.loads(raw.decode("utf-8")), []
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return None, [schema_error(f"body is not valid JSON: {exc}")]


def schema_nmi(body: Any, strict: bool = True) -> list[ApiError]:
    """The NMI API takes the record itself, unwrapped, five string fields."""
    if not isinstance(body, dict):
        return [schema_error(f"body: expected object, got {_type_name(body)}")]
    out: list[ApiError] = []
    _check(body, Obj(NMI_FIELDS), "body", strict, out)
    return out


def schema_installation(body: Any, strict: bool = True, withdrawn: Iterable[str] = ()) -> list[ApiError]:
    """The Installation API takes ``{"data": {installation}}``."""
    if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
        return [schema_error('body: expected {"data": {installation}}')]
    out: list[ApiError] = [
        schema_error(f"data.{name}: field is not accepted") for name in withdrawn if name in body["data"]
    ]
    if strict:
        out.extend(schema_error(f"body.{k}: unknown field") for k in body if k != "data")
    _check(body["data"], Obj(INSTALLATION), "data", strict, out)
    return out


# --------------------------------------------------------------------------------------------
# First level (422)
# --------------------------------------------------------------------------------------------
def valid_nmi(nmi: Any) -> bool:
    return isinstance(nmi, str) and bool(NMI_RE.match(nmi))


def _missing(obj: Mapping[str, Any], key: str) -> bool:
    v = obj.get(key)
    return v is None or (isinstance(v, str) and not v.strip())


def _nmi_errors(nmi: Any, path_nmi: str | None, where: str) -> list[ApiError]:
    out: list[ApiError] = []
    if nmi is None or nmi == "":
        out.append(ApiError("1004", "Mandatory field missing", f"{where}.nmi is required"))
    elif not valid_nmi(nmi):
        out.append(
            ApiError(
                "1000",
                "Invalid NMI",
                f"{where}.nmi {nmi!r} must be 10 characters of digits or A-Z excluding I and O",
            )
        )
    if path_nmi is not None and nmi not in (None, "") and nmi != path_nmi:
        out.append(
            ApiError("1005", "NMI mismatch", f"path NMI {path_nmi!r} differs from {where}.nmi {nmi!r}")
        )
    return out


def first_level_nmi(body: Mapping[str, Any], path_nmi: str | None = None) -> list[ApiError]:
    """Structural first-level checks of an NMI record (existence is checked by the caller)."""
    out = _nmi_errors(body.get("nmi"), path_nmi, "body")
    if _missing(body, "status"):
        out.append(ApiError("1004", "Mandatory field missing", "body.status is required"))
    return out


def _is_whole(v: Any) -> bool:
    """A JSON number with no fraction. Python ints are whole however large (float() of one past
    1e308 overflows, which answered 500 to a huge count)."""
    if isinstance(v, bool):
        return False
    return isinstance(v, int) or (isinstance(v, float) and v.is_integer())


def _is_count(v: Any) -> bool:
    return _is_whole(v) and v >= 1


def _negatives(obj: Mapping[str, Any], keys: Iterable[str], path: str) -> list[ApiError]:
    return [
        ApiError("1009", "Negative capacity", f"{path}.{k} must not be negative (got {obj[k]})")
        for k in keys
        if isinstance(obj.get(k), (int, float)) and obj[k] < 0
    ]


def first_level_installation(data: Mapping[str, Any], path_nmi: str | None = None) -> list[ApiError]:
    """Structural first-level checks; existence and id checks need the register (see below)."""
    out = _nmi_errors(data.get("nmi"), path_nmi, "data")
    out += _negatives(data, INSTALLATION_CAPACITIES, "data")
    conns = data.get("acConnections") or []
    if not conns:
        out.append(
            ApiError("1004", "Mandatory field missing", "data.acConnections must hold at least one connection")
        )
    for i, conn in enumerate(conns):
        cp = f"data.acConnections[{i}]"
        for key in ("equipmentType", "count", "status"):
            if _missing(conn, key):
                out.append(ApiError("1004", "Mandatory field missing", f"{cp}.{key} is required"))
        et = conn.get("equipmentType")
        if et not in (None, "") and et not in EQUIPMENT_TYPES:
            out.append(ApiError("1006", "Invalid equipmentType", f"{cp}.equipmentType {et!r} is not allowed"))
        if conn.get("count") is not None and not _is_count(conn["count"]):
            out.append(ApiError("1008", "Invalid count", f"{cp}.count must be a whole number >= 1"))
        cd = conn.get("commissioningDate")
        if cd is not None and not _is_date(cd):
            out.append(ApiError("1012", "Invalid date", f"{cp}.commissioningDate {cd!r} is not yyyy-mm-dd"))
        out += _negatives(conn, CONNECTION_CAPACITIES, cp)
        for j, dev in enumerate(conn.get("devices") or []):
            dp = f"{cp}.devices[{j}]"
            for key in ("type", "count", "status"):
                if _missing(dev, key):
                    out.append(ApiError("1004", "Mandatory field missing", f"{dp}.{key} is required"))
            dtp = dev.get("type")
            if dtp not in (None, "") and dtp not in DEVICE_TYPES:
                out.append(ApiError("1007", "Invalid deviceType", f"{dp}.type {dtp!r} is not allowed"))
            if dev.get("count") is not None and not _is_count(dev["count"]):
                out.append(ApiError("1008", "Invalid count", f"{dp}.count must be a whole number >= 1"))
            out += _negatives(dev.get("details") or {}, DEVICE_CAPACITIES, f"{dp}.details")
    return out


def _is_date(v: Any) -> bool:
    if not isinstance(v, str) or not DATE_RE.match(v):
        return False
    try:
        dt.date.fromisoformat(v)
    except ValueError:
        return False
    return True


def _as_id(v: Any) -> int | None:
    return int(v) if _is_whole(v) else None


def check_ids(current: Mapping[str, Any] | None, data: Mapping[str, Any]) -> list[ApiError]:
    """PUT: every connectionId / deviceId sent must be one AEMO assigned to that NMI / connection."""
    known: dict[int, set[int]] = {}
    for conn in (current or {}).get("acConnections", []):
        known[conn["connectionId"]] = {d["deviceId"] for d in conn.get("devices", [])}
    out: list[ApiError] = []
    seen_conn: set[int] = set()
    seen_dev: set[int] = set()
    for i, conn in enumerate(data.get("acConnections") or []):
        cp = f"data.acConnections[{i}]"
        cid_raw = conn.get("connectionId")
        cid = _as_id(cid_raw)
        if cid_raw is not None:
            if cid is None or cid not in known:
                out.append(
                    ApiError("1010", "Unknown connectionId",
                             f"{cp}.connectionId {cid_raw!r} is not a connection of this NMI")
                )
            elif cid in seen_conn:
                out.append(ApiError("1013", "Duplicate id", f"{cp}.connectionId {cid} appears twice"))
            if cid is not None:
                seen_conn.add(cid)
        devs_known = known.get(cid, set()) if cid is not None else set()
        for j, dev in enumerate(conn.get("devices") or []):
            did_raw = dev.get("deviceId")
            if did_raw is None:
                continue
            did = _as_id(did_raw)
            if did is None or did not in devs_known:
                out.append(
                    ApiError(
                        "1011",
                        "Unknown deviceId",
                        f"{cp}.devices[{j}].deviceId {did_raw!r} is not a device of that connection",
                    )
                )
            elif did in seen_dev:
                out.append(ApiError("1013", "Duplicate id", f"{cp}.devices[{j}].deviceId {did} appears twice"))
            if did is not None:
                seen_dev.add(did)
    return out


# --------------------------------------------------------------------------------------------
# Second level (exceptions; data still stored)
# --------------------------------------------------------------------------------------------
def _norm(s: Any) -> str:
    return " ".join(str(s).split()).casefold() if s is not None else ""


def equipment_index(known: Iterable[tuple[str, str]]) -> frozenset[tuple[str, str]]:
    return frozenset((_norm(m), _norm(n)) for m, n in known)


def _approved(details: Mapping[str, Any] | None, index: frozenset[tuple[str, str]]) -> bool:
    """Named equipment must be on the list; equipment naming neither maker nor model is not assessed."""
    details = details or {}
    key = (_norm(details.get("manufacturerName")), _norm(details.get("modelNumber")))
    if not any(key):
        return True
    return all(key) and key in index


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        return float(v)
    except OverflowError:  # an integer past 1e308: compares as the infinity it is to a float
        return float("inf") if v > 0 else float("-inf")


def second_level(
    inst: Mapping[str, Any], index: frozenset[tuple[str, str]]
) -> tuple[list[dict[str, Any]], set[int], set[int]]:
    """Return (exceptions, conditional connectionIds, conditional deviceIds) for a stored record."""
    exceptions: list[dict[str, Any]] = []
    cond_conns: set[int] = set()
    cond_devs: set[int] = set()
    nmi = inst.get("nmi")
    approved_cap = _num(inst.get("approvedCapacity"))
    for conn in inst.get("acConnections", []):
        cid = conn["connectionId"]
        base = {"nmi": nmi, "connectionId": cid, "nspConnectionId": conn.get("nspConnectionId")}
        det = conn.get("details") or {}
        if not _approved(det, index):
            cond_conns.add(cid)
            exceptions.append(
                {
                    "code": 2023,
                    "title": "Inverter model not on approved list",
                    "detail": (
                        f"Inverter {det.get('manufacturerName')!r} {det.get('modelNumber')!r} "
                        "is not on the approved equipment list"
                    ),
                    **base,
                }
            )
        for dev in conn.get("devices", []):
            ddet = dev.get("details") or {}
            if not _approved(ddet, index):
                cond_devs.add(dev["deviceId"])
                exceptions.append(
                    {
                        "code": 2024,
                        "title": "Device model not on approved list",
                        "detail": (
                            f"Device {ddet.get('manufacturerName')!r} {ddet.get('modelNumber')!r} "
                            "is not on the approved equipment list"
                        ),
                        **base,
                        "deviceId": dev["deviceId"],
                        "nspDeviceId": dev.get("nspDeviceId"),
                    }
                )
        if approved_cap is not None:
            cap = _num(conn.get("equipmentInjectionCapacity"))
            if cap is None:
                caps = [_num((d.get("details") or {}).get("nominalRatedCapacity")) for d in conn.get("devices", [])]
                cap = sum(c for c in caps if c is not None) if any(c is not None for c in caps) else None
            if cap is not None and cap > approved_cap:
                cond_conns.add(cid)
                exceptions.append(
                    {
                        "code": 2040,
                        "title": "Capacity exceeds approved capacity",
                        "detail": f"Connection capacity {cap:g} exceeds approvedCapacity {approved_cap:g}",
                        **base,
                    }
                )
    return exceptions, cond_conns, cond_devs


# --------------------------------------------------------------------------------------------
# Batched GET query parameters (400 on bad values)
# --------------------------------------------------------------------------------------------
FILTER_KEYS = (
    "nmi",
    "installationStage",
    "equipmentType",
    "deviceType",
    "fromCommissioningDate",
    "toCommissioningDate",
)
PAGE_SIZES = (25, 50, 100)
DEFAULT_PAGE_SIZE = 25


@dataclass(frozen=True)
class ListQuery:
    nmis: tuple[str, ...] | None
    stage: str | None
    equipment_type: str | None
    device_type: str | None
    from_date: str | None
    to_date: str | None
    page: int
    page_size: int


def _bad_request(detail: str) -> ApiError:
    return ApiError("400", "Bad Request", detail)


def parse_list_query(q: Mapping[str, str], max_nmis: int) -> tuple[ListQuery | None, list[ApiError]]:
    """Validate the batched GET's query. Empty filter values count as not given."""
    vals = {k: q.get(k, "").strip() for k in FILTER_KEYS}
    out: list[ApiError] = []
    if not any(vals.values()):
        out.append(_bad_request(f"at least one filter is required: {', '.join(FILTER_KEYS)}"))
    nmis: tuple[str, ...] | None = None
    if vals["nmi"]:
        nmis = tuple(dict.fromkeys(n.strip() for n in vals["nmi"].split(",") if n.strip()))
        if len(nmis) > max_nmis:
            out.append(_bad_request(f"at most {max_nmis} NMIs per request (got {len(nmis)})"))
    if vals["installationStage"] and vals["installationStage"] not in INSTALLATION_STAGES:
        out.append(_bad_request("installationStage must be Confirmed or Conditional"))
    if vals["equipmentType"] and vals["equipmentType"] not in EQUIPMENT_TYPES:
        out.append(_bad_request(f"equipmentType {vals['equipmentType']!r} is not allowed"))
    if vals["deviceType"] and vals["deviceType"] not in DEVICE_TYPES:
        out.append(_bad_request(f"deviceType {vals['deviceType']!r} is not allowed"))
    for key in ("fromCommissioningDate", "toCommissioningDate"):
        if vals[key] and not _is_date(vals[key]):
            out.append(_bad_request(f"{key} must be yyyy-mm-dd"))
    page = _int_param(q.get("page"), 1)
    if page is None or page < 1:
        out.append(_bad_request("page must be a whole number >= 1"))
    size = _int_param(q.get("pageSize"), DEFAULT_PAGE_SIZE)
    if size not in PAGE_SIZES:
        out.append(_bad_request("pageSize must be one of 25, 50 or 100"))
    if out:
        return None, out
    assert page is not None and size is not None
    return (
        ListQuery(
            nmis=nmis,
            stage=vals["installationStage"] or None,
            equipment_type=vals["equipmentType"] or None,
            device_type=vals["deviceType"] or None,
            from_date=vals["fromCommissioningDate"] or None,
            to_date=vals["toCommissioningDate"] or None,
            page=page,
            page_size=size,
        ),
        [],
    )


def _int_param(raw: str | None, default: int) -> int | None:
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw.strip())
    except ValueError:
        return None


def installation_stage(inst: Mapping[str, Any]) -> str:
    """Installation-level stage: Conditional if any connection or device is Conditional."""
    for conn in inst.get("acConnections", []):
        if conn.get("installationStage") == "Conditional":
            return "Conditional"
        if any(d.get("installationStage") == "Conditional" for d in conn.get("devices", [])):
            return "Conditional"
    return "Confirmed"


def matches(inst: Mapping[str, Any], q: ListQuery) -> bool:
    """Does a current installation satisfy every given filter of the batched GET?"""
    if q.nmis is not None and inst.get("nmi") not in q.nmis:
        return False
    if q.stage and installation_stage(inst) != q.stage:
        return False
    conns = inst.get("acConnections", [])
    if q.equipment_type and not any(c.get("equipmentType") == q.equipment_type for c in conns):
        return False
    if q.device_type and not any(
        d.get("type") == q.device_type for c in conns for d in c.get("devices", [])
    ):
        return False
    if q.from_date or q.to_date:
        dates = [c.get("commissioningDate") for c in conns if isinstance(c.get("commissioningDate"), str)]
        lo, hi = q.from_date or "0000-00-00", q.to_date or "9999-99-99"
        if not any(lo <= d[:10] <= hi for d in dates):
            return False
    return True
