"""Realistic, deterministic sample records of a Western Australian network operator.

Used by `dersync demo` (the bundled `data/sample-records.jsonl`), the tests and the benchmarks.
Every record is an import object `{"nmiDetails": {...}, "installation": {...}}` for a Western
Power style NMI (`8001` + six digits), in a real-sounding zone substation area, with equipment
from AEMO's approved list (as the simulator knows it): rooftop PV, hybrid and AC-coupled batteries,
EV chargers.

A record is a pure function of `(index, seed, flavour)`: the same arguments give the same record
on every machine and Python run (`random.Random` seeded with a string is stable). With `mix=True`
a realistic share of records carry a problem, in fixed slots: in every block of 100 consecutive
indices exactly `MIX_SHARES[flavour]` records have that flavour, shuffled by the seed.

Flavours (what AEMO, or dersync before it, does with the record):

* `valid`: accepted, every connection and device `Confirmed`, no exceptions.
* `flagged`: accepted with a second-level exception (2023): the first connection's inverter is not
  on the approved equipment list, so it becomes `Conditional`.
* `local_invalid`: caught by local validation, never sent; one clear problem per record, rotating
  through `LOCAL_INVALID_FIELDS` (a number sent as a string, a misspelt field, an equipmentType
  outside the enumeration, an NMI typed with a letter O, a connection without its status).
* `first_level`: passes local validation but AEMO rejects it with a 422 first-level error (1012):
  a commissioningDate shaped yyyy-mm-dd that is not a calendar date ("2023-02-29").
* `installation_only`: only the `installation` key (the NMI details are supposed to be known
  already). Not part of the mix: on an empty register AEMO would reject it (1003, NMI not
  registered); ask for it explicitly with `sample_record(..., flavour="installation_only")`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import math
import os
import random
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from dersync.wording import plural

FLAVOURS: tuple[str, ...] = ("valid", "flagged", "local_invalid", "first_level", "installation_only")

#: Records of each flavour in every block of 100 consecutive indices when `mix=True`.
MIX_SHARES: dict[str, int] = {"valid": 90, "flagged": 4, "local_invalid": 3, "first_level": 3}

#: The local_invalid variants, in rotation order, and the field path local validation names.
LOCAL_INVALID_FIELDS: tuple[tuple[str, str], ...] = (
    ("number_as_string", "approvedCapacity"),
    ("misspelt_field", "exportLimitKW"),
    ("unknown_equipment_type", "acConnections[0].equipmentType"),
    ("nmi_with_letter_o", "nmi"),
    ("missing_connection_status", "acConnections[0].status"),
)

#: Dates shaped yyyy-mm-dd that are not calendar dates: AEMO's first level rejects them (1012).
IMPOSSIBLE_DATES: tuple[str, ...] = (
    "2023-02-29", "2022-04-31", "2021-09-31", "2019-06-31", "2024-02-30", "2020-11-31",
)

#: Inverters that are not on the approved equipment list (second-level exception 2023).
UNAPPROVED_INVERTERS: tuple[tuple[str, str], ...] = (
    ("Acme Solar", "X-1000"),
    ("Sunray Power", "SR-5K-1P"),
    ("Voltek", "VT5000-S"),
)

DEFAULT_COUNT = 300
DEFAULT_OUT = Path(__file__).parent / "data" / "sample-records.jsonl"
MAX_INDEX = 2_000_000  # 8001000000..8001999999 then 8002000000..8002999999

# --- the network: zone substations, their TNI and the postcodes they supply -----------------------
# (name, TNI, postcodes, weight): metropolitan areas carry most of the rooftop PV.
SUBSTATIONS: tuple[tuple[str, str, tuple[str, ...], int], ...] = (
    ("Cannington", "WCNG", ("6107", "6102", "6147", "6155"), 10),
    ("Joondalup", "WJDP", ("6027", "6028", "6025", "6026"), 10),
    ("Morley", "WMOR", ("6062", "6061", "6063", "6054"), 9),
    ("Rockingham", "WRKM", ("6168", "6169", "6170", "6167"), 9),
    ("Mandurah", "WMDH", ("6210", "6211", "6208"), 8),
    ("Bunbury Harbour", "WBHR", ("6230", "6233", "6232"), 6),
    ("Midland Junction", "WMJX", ("6056", "6055", "6057"), 7),
    ("Wanneroo", "WWNO", ("6065", "6069", "6030", "6031"), 9),
    ("Kalamunda", "WKDA", ("6076", "6058", "6073"), 5),
    ("Osborne Park", "WOPK", ("6017", "6018", "6016"), 6),
    ("Busselton", "WBSN", ("6280", "6281", "6285"), 4),
    ("Geraldton", "WGTN", ("6530", "6532"), 3),
    ("Albany", "WALB", ("6330", "6333"), 3),
)

# --- equipment (every pair below is on the simulator's approved list) ------------------------------
PV_INVERTERS: tuple[tuple[str, str], ...] = (
    ("Fronius", "Primo 5.0-1"),
    ("SMA", "Sunny Boy 5.0"),
    ("Enphase", "IQ7PLUS-72-2-INT"),
    ("SolarEdge", "SE5000H"),
    ("GoodWe", "GW5000D-NS"),
    ("Sungrow", "SG5.0RS"),
    ("Huawei", "SUN2000-5KTL-L1"),
    ("Growatt", "MIN 5000TL-X"),
)
HYBRID_INVERTERS: tuple[tuple[str, str], ...] = (("Redback", "SH5000"), ("Alpha ESS", "SMILE5"))
# (maker, model, rated kW, storage kWh)
HYBRID_BATTERIES: tuple[tuple[str, str, float, float], ...] = (
    ("BYD", "Battery-Box Premium HVS 10.2", 5.0, 10.24),
    ("LG Energy Solution", "RESU10H", 5.0, 9.8),
)
AC_BATTERY = ("Tesla", "Powerwall 2", 5.0, 13.5)
EV_CHARGERS: tuple[tuple[str, str], ...] = (("Zappi", "ZAPPI-2H07UW"), ("Wallbox", "Pulsar Plus"))
# (maker, model, panel kW)
PV_MODULES: tuple[tuple[str, str, float], ...] = (
    ("Jinko Solar", "JKM415M-54HL4-V", 0.415),
    ("Trina Solar", "TSM-DE09.08", 0.4),
    ("LONGi", "LR5-54HPH-410M", 0.41),
    ("REC", "REC400AA", 0.4),
    ("Canadian Solar", "CS6R-410MS", 0.41),
)
SERIAL_PREFIX = {
    "Fronius": "3", "SMA": "30", "Enphase": "1221", "SolarEdge": "7E", "GoodWe": "55000DNS",
    "Sungrow": "A2", "Huawei": "HV", "Growatt": "DDD", "Redback": "RB", "Alpha ESS": "AL",
    "Tesla": "TG1", "Zappi": "2", "Wallbox": "WB",
}

FIRST_DATE = dt.date(2015, 1, 1)
LAST_DATE = dt.date(2025, 12, 31)
STANDARD_2020_FROM = dt.date(2021, 12, 18)  # AS/NZS 4777.2:2020 mandatory for new installations


# --- flavours -----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def _block_slots(seed: int, block: int) -> tuple[str, ...]:
    """The flavour of each of the 100 indices of one block, shuffled by seed and block."""
    slots = [flavour for flavour, share in MIX_SHARES.items() for _ in range(share)]
    random.Random(f"dersync-samples:{seed}:mix:{block}").shuffle(slots)
    return tuple(slots)


def flavour_of(index: int, seed: int = 0) -> str:
    """The flavour `sample_records(..., mix=True)` gives the record at `index`."""
    _check_index(index)
    return _block_slots(seed, index // 100)[index % 100]


def _variant(index: int, seed: int, flavour: str, choices: int) -> int:
    """Which variant of a problem flavour a record gets: rotating through the mix."""
    if flavour_of(index, seed) != flavour:
        return index % choices
    block, position = divmod(index, 100)
    slots = _block_slots(seed, block)
    rank = block * MIX_SHARES[flavour] + slots[:position].count(flavour)
    return rank % choices


def local_invalid_field(index: int, seed: int = 0) -> str:
    """The field path local validation names for `sample_record(index, flavour="local_invalid")`."""
    return LOCAL_INVALID_FIELDS[_variant(index, seed, "local_invalid", len(LOCAL_INVALID_FIELDS))][1]


# --- records ------------------------------------------------------------------------------------
def nmi_of(index: int) -> str:
    """The record's NMI: Western Power style, ten digits, unique per index."""
    _check_index(index)
    prefix, number = divmod(index, 1_000_000)
    return f"800{1 + prefix}{number:06d}"


def sample_record(index: int, *, seed: int = 0, flavour: str = "valid") -> dict[str, Any]:
    """One import object of the given flavour; the same arguments always give the same record."""
    if flavour not in FLAVOURS:
        raise ValueError(f"unknown flavour {flavour!r}; expected one of {', '.join(FLAVOURS)}")
    rng = random.Random(f"dersync-samples:{seed}:{index}")
    nmi = nmi_of(index)
    record = {"nmiDetails": _nmi_details(rng, nmi), "installation": _installation(rng, nmi, index)}
    if flavour == "flagged":
        details = record["installation"]["acConnections"][0]["details"]
        maker, model = UNAPPROVED_INVERTERS[_variant(index, seed, flavour, len(UNAPPROVED_INVERTERS))]
        details["manufacturerName"], details["modelNumber"] = maker, model
        details["serialNumbers"] = [f"{maker[:2].upper()}{rng.randrange(10**7, 10**8)}"]
    elif flavour == "local_invalid":
        _break_locally(record["installation"], _variant(index, seed, flavour, len(LOCAL_INVALID_FIELDS)))
    elif flavour == "first_level":
        date = IMPOSSIBLE_DATES[_variant(index, seed, flavour, len(IMPOSSIBLE_DATES))]
        record["installation"]["acConnections"][0]["commissioningDate"] = date
    elif flavour == "installation_only":
        del record["nmiDetails"]
    return record


def sample_records(count: int, *, seed: int = 0, mix: bool = True) -> Iterator[dict[str, Any]]:
    """`count` records from index 0; with `mix=False` every record is valid and Confirmed-clean."""
    if count < 0:
        raise ValueError("count must be >= 0")
    for index in range(count):
        yield sample_record(index, seed=seed, flavour=flavour_of(index, seed) if mix else "valid")


def write_jsonl(path: str | os.PathLike[str], records: Iterable[dict[str, Any]]) -> int:
    """Write one JSON object per line (UTF-8); returns the number written. "-" means stdout."""
    if str(path) == "-":
        return _write_lines(sys.stdout, records)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with partial.open("w", encoding="utf-8", newline="\n") as handle:
        written = _write_lines(handle, records)
    partial.replace(target)
    return written


def _write_lines(handle: Any, records: Iterable[dict[str, Any]]) -> int:
    written = 0
    for record in records:
        handle.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
        handle.write("\n")
        written += 1
    return written


# --- building blocks ----------------------------------------------------------------------------
def _check_index(index: int) -> None:
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < MAX_INDEX:
        raise ValueError(f"index must be an int in 0..{MAX_INDEX - 1}, got {index!r}")


def _nmi_details(rng: random.Random, nmi: str) -> dict[str, Any]:
    name, tni, postcodes, _ = rng.choices(SUBSTATIONS, weights=[s[3] for s in SUBSTATIONS])[0]
    return {"nmi": nmi, "substation": name, "postCode": rng.choice(postcodes), "tni": tni,
            "status": "Active"}


def _installation(rng: random.Random, nmi: str, index: int) -> dict[str, Any]:
    three_phase = rng.random() < 0.25
    kinds = _equipment_mix(rng, three_phase)
    first = FIRST_DATE + dt.timedelta(days=rng.randrange((LAST_DATE - FIRST_DATE).days + 1))
    connections = []
    for number, kind in enumerate(kinds, start=1):
        # equipment added after the first installation is commissioned on the same day or later
        date = first if number == 1 or rng.random() < 0.5 else \
            first + dt.timedelta(days=rng.randrange((LAST_DATE - first).days + 1))
        connections.append(_connection(rng, nmi, number, kind, date, three_phase))
    injection = sum(c["equipmentInjectionCapacity"] for c in connections)
    device_peak = max(
        sum(d["details"]["nominalRatedCapacity"] for d in c["devices"]) for c in connections
    )
    needed = max(5.0, injection, device_peak) + rng.choice((0.0, 0.0, 0.0, 0.5, 1.0))
    approved = math.ceil(round(needed * 10, 6)) / 10  # kW to one decimal, never below what is needed
    export_limit = 1.5 if rng.random() < 0.15 else (15.0 if three_phase else 5.0)
    storage = any(d["type"] == "Storage" for c in connections for d in c["devices"])
    generating = sum(1 for kind in kinds if kind != "evse")
    return {
        "nmi": nmi,
        "jobNumber": f"DA{first.year}-{index:07d}",
        "approvedCapacity": approved,
        "exportLimitkW": min(export_limit, approved),
        "importLimitKw": 45.0 if three_phase else 15.0,
        "availablePhasesCount": 3 if three_phase else 1,
        "installedPhasesCount": 3 if three_phase and (generating > 1 or rng.random() < 0.3) else 1,
        "islandableInstallation": "Yes" if storage and rng.random() < 0.5 else "No",
        "centralProtectionControl": "No",
        "installerId": f"EC{rng.randrange(1000, 16000):06d}",
        "acConnections": connections,
    }


def _equipment_mix(rng: random.Random, three_phase: bool) -> list[str]:
    """What sits behind the meter: 'pv', 'hybrid', 'battery' (AC-coupled), 'evse'."""
    roll = rng.random()
    if roll < 0.72:
        return ["pv"] * (rng.choice((1, 2, 3)) if three_phase else 1)
    if roll < 0.80:
        return ["hybrid"]
    if roll < 0.88:
        return ["pv", "battery"]
    if roll < 0.95:
        return ["pv", "evse"]
    if roll < 0.98:
        return ["pv", "battery", "evse"]
    return ["hybrid", "evse"]


def _connection(rng: random.Random, nmi: str, number: int, kind: str, date: dt.date,
                three_phase: bool) -> dict[str, Any]:
    own_id = f"WP-C-{nmi}-{number}"
    devices: list[dict[str, Any]] = []
    if kind == "pv":
        equipment_type, (maker, model), capacity = "Solar PV Inverter", rng.choice(PV_INVERTERS), 5.0
        devices.append(_pv_device(rng, nmi, number, 1))
    elif kind == "hybrid":
        equipment_type, (maker, model), capacity = "Hybrid Inverter", rng.choice(HYBRID_INVERTERS), 5.0
        devices.append(_pv_device(rng, nmi, number, 1))
        battery = ("Alpha ESS", "SMILE5", 5.0, 10.1) if maker == "Alpha ESS" else rng.choice(HYBRID_BATTERIES)
        devices.append(_battery_device(nmi, number, 2, battery))
    elif kind == "battery":
        equipment_type, (maker, model), capacity = "Battery Storage Inverter", AC_BATTERY[:2], AC_BATTERY[2]
        devices.append(_battery_device(nmi, number, 1, AC_BATTERY))
    else:  # an EV charger without vehicle-to-grid: it draws power, injects none, has no DER device
        equipment_type, (maker, model), capacity = "EVSE no V2G", rng.choice(EV_CHARGERS), 0.0
    connection: dict[str, Any] = {
        "nspConnectionId": own_id,
        "commissioningDate": date.isoformat(),
        "equipmentType": equipment_type,
        "count": 1,
        "status": "Active",
        "equipmentInjectionCapacity": capacity,
    }
    if kind == "evse":
        connection["equipmentWithdrawalCapacity"] = 22.0 if three_phase and maker == "Wallbox" else 7.0
    connection["details"] = {
        "manufacturerName": maker,
        "modelNumber": model,
        "serialNumbers": [f"{SERIAL_PREFIX.get(maker, 'SN')}{rng.randrange(10**7, 10**8)}"],
        **(_inverter_settings(date) if kind != "evse" else {}),
    }
    connection["devices"] = devices
    return connection


def _inverter_settings(date: dt.date) -> dict[str, Any]:
    """Power quality settings as AS/NZS 4777.2 requires for the inverter's vintage."""
    if date < STANDARD_2020_FROM:
        return {"equipmentStandard": "AS/NZS 4777.2:2015", "regionSetting": "WA",
                "sustainOpOvervoltLimit": 255.0, "stopAtOverFreq": 52.0, "stopAtUnderFreq": 47.0,
                "invVoltWattRespMode": "Disabled", "invVoltVarRespMode": "Disabled"}
    return {
        "equipmentStandard": "AS/NZS 4777.2:2020", "regionSetting": "Australia A",
        "sustainOpOvervoltLimit": 258.0, "stopAtOverFreq": 52.0, "stopAtUnderFreq": 47.0,
        "invVoltWattRespMode": "Enabled",
        "invWattRespV1": 207.0, "invWattRespV2": 220.0, "invWattRespV3": 253.0, "invWattRespV4": 260.0,
        "invWattRespPAtV1": 100.0, "invWattRespPAtV2": 100.0, "invWattRespPAtV3": 100.0,
        "invWattRespPAtV4": 20.0,
        "invVoltVarRespMode": "Enabled",
        "invVarRespV1": 207.0, "invVarRespV2": 220.0, "invVarRespV3": 240.0, "invVarRespV4": 258.0,
        "invVarRespQAtV1": 44.0, "invVarRespQAtV2": 0.0, "invVarRespQAtV3": 0.0, "invVarRespQAtV4": -60.0,
    }


def _pv_device(rng: random.Random, nmi: str, connection: int, number: int) -> dict[str, Any]:
    """A rooftop array of identical panels (one device; the rating is the array's)."""
    maker, model, panel_kw = rng.choice(PV_MODULES)
    panels = rng.randrange(12, 17)  # 4.8 kW to 6.6 kW: up to the 133% oversizing inverters allow
    return {
        "nspDeviceId": f"WP-D-{nmi}-{connection}-{number}",
        "type": "Solar PV",
        "count": 1,
        "status": "Active",
        "details": {"manufacturerName": maker, "modelNumber": model,
                    "nominalRatedCapacity": round(panels * panel_kw, 2)},
    }


def _battery_device(nmi: str, connection: int, number: int,
                    battery: tuple[str, str, float, float]) -> dict[str, Any]:
    maker, model, rated_kw, storage_kwh = battery
    return {
        "nspDeviceId": f"WP-D-{nmi}-{connection}-{number}",
        "type": "Storage",
        "count": 1,
        "status": "Active",
        "details": {"manufacturerName": maker, "modelNumber": model,
                    "nominalRatedCapacity": rated_kw, "nominalStorageCapacity": storage_kwh},
    }


def _break_locally(installation: dict[str, Any], variant: int) -> None:
    """Introduce exactly one problem local validation catches (see LOCAL_INVALID_FIELDS)."""
    name = LOCAL_INVALID_FIELDS[variant][0]
    first = installation["acConnections"][0]
    if name == "number_as_string":
        installation["approvedCapacity"] = str(installation["approvedCapacity"])
    elif name == "misspelt_field":
        installation["exportLimitKW"] = installation.pop("exportLimitkW")
    elif name == "unknown_equipment_type":
        first["equipmentType"] = "Solar Inverter"
    elif name == "nmi_with_letter_o":
        # a zero typed as the letter O; nmiDetails keeps the true NMI, so the import stores the
        # record under it and the installation part is reported
        nmi = installation["nmi"]
        at = nmi.find("0", 4)
        at = 4 if at < 0 else at
        installation["nmi"] = nmi[:at] + "O" + nmi[at + 1:]
    else:
        del first["status"]


# --- command line -------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m dersync.samples",
        description="Write realistic, deterministic sample DER records as JSON Lines.",
    )
    parser.add_argument("count", nargs="?", type=int, default=DEFAULT_COUNT,
                        help=f"number of records (default {DEFAULT_COUNT})")
    parser.add_argument("--out", default=str(DEFAULT_OUT),
                        help="output file, '-' for stdout (default: the bundled sample file)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--no-mix", action="store_true",
                        help="only valid, clean records (no rejected or flagged ones)")
    args = parser.parse_args(argv)
    if args.count < 0:
        parser.error("count must be >= 0")
    written = write_jsonl(args.out, sample_records(args.count, seed=args.seed, mix=not args.no_mix))
    if args.out != "-":
        print(f"wrote {plural(written, 'record')} to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
