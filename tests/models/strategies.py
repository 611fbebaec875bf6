"""Hypothesis strategies for AEMO records: valid ones, and one-field breakages that local
validation must refuse while naming the field it broke.

A *slot* is one field of a template record (an installation with one AC connection holding one
device, and the NMI details) with the kind of value AEMO expects there. A breakage puts a value
of the wrong JSON type, an absurd number (NaN, infinity, out of range), a huge string or list,
deep nesting or null into one slot, deletes a mandatory field, or adds a field AEMO does not
know; `field` is the path the local exception must name, in AEMO's spelling
(`acConnections[0].devices[0].count`).
"""

from __future__ import annotations

import copy
import datetime as dt
import math
import re
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from dersync.models import AcConnection, Device, Installation, NmiDetails
from dersync.models.base import MAX_JSON_INTEGER, NMI_PATTERN
from dersync.models.installation import AcConnectionDetails, DeviceDetails
from dersync.models.validation import format_location
from dersync.settings import Enumerations
from dersync.testing import connection, device, installation, nmi_details

Path = tuple[str | int, ...]
C0: Path = ("acConnections", 0)
D0: Path = (*C0, "devices", 0)
DELETE = object()


@dataclass(frozen=True)
class Slot:
    part: str  # "nmi" (the nmiDetails object) or "installation"
    path: Path
    kind: str
    mandatory: bool = False


SLOTS: tuple[Slot, ...] = (
    Slot("nmi", ("nmi",), "nmi", True),
    Slot("nmi", ("substation",), "status", True),
    Slot("nmi", ("postCode",), "postcode", True),
    Slot("nmi", ("tni",), "status", True),
    Slot("nmi", ("status",), "status", True),
    Slot("installation", ("nmi",), "nmi", True),
    Slot("installation", ("jobNumber",), "text"),
    Slot("installation", ("approvedCapacity",), "nonneg"),
    Slot("installation", ("exportLimitkW",), "nonneg"),
    Slot("installation", ("underFrequencyProtection",), "number"),
    Slot("installation", ("availablePhasesCount",), "phases"),
    Slot("installation", ("islandableInstallation",), "text"),
    Slot("installation", ("comments",), "text"),
    Slot("installation", ("acConnections",), "connections", True),
    Slot("installation", (*C0, "nspConnectionId"), "ownid", True),
    Slot("installation", (*C0, "commissioningDate"), "date"),
    Slot("installation", (*C0, "equipmentType"), "equipment_type", True),
    Slot("installation", (*C0, "count"), "count", True),
    Slot("installation", (*C0, "status"), "status", True),
    Slot("installation", (*C0, "equipmentInjectionCapacity"), "nonneg"),
    Slot("installation", (*C0, "voltageVectorShift"), "number"),
    Slot("installation", (*C0, "details"), "object"),
    Slot("installation", (*C0, "details", "manufacturerName"), "text"),
    Slot("installation", (*C0, "details", "serialNumbers"), "serials"),
    Slot("installation", (*C0, "details", "fixPowerFactor"), "number"),
    Slot("installation", (*C0, "devices"), "devices"),
    Slot("installation", (*D0, "nspDeviceId"), "ownid", True),
    Slot("installation", (*D0, "type"), "device_type", True),
    Slot("installation", (*D0, "count"), "count", True),
    Slot("installation", (*D0, "status"), "status", True),
    Slot("installation", (*D0, "details"), "object"),
    Slot("installation", (*D0, "details", "nominalRatedCapacity"), "nonneg"),
)

#: Objects of the template that refuse fields AEMO does not know, with their model.
OBJECTS: tuple[tuple[str, Path, Any], ...] = (
    ("nmi", (), NmiDetails),
    ("installation", (), Installation),
    ("installation", C0, AcConnection),
    ("installation", (*C0, "details"), AcConnectionDetails),
    ("installation", D0, Device),
    ("installation", (*D0, "details"), DeviceDetails),
)

ENUMERATIONS = Enumerations()
DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
POSTCODE = re.compile(r"[0-9]{4}")


def template(nmi: str) -> dict[str, Any]:
    """A valid import object: NMI details and an installation with one connection and one device."""
    return {"nmiDetails": nmi_details(nmi), "installation": installation(nmi)}


def put(record: dict[str, Any], slot_part: str, path: Path, value: Any) -> None:
    node = record["nmiDetails" if slot_part == "nmi" else "installation"]
    for key in path[:-1]:
        node = node[key]
    if value is DELETE:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value


def known_fields(model: Any) -> set[str]:
    return {info.alias or name for name, info in model.model_fields.items()}


# --- hostile values --------------------------------------------------------------------------------

def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


scalars = st.one_of(st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=20))
non_strings = st.one_of(st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                        st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=8), scalars, max_size=3))
non_numbers = st.one_of(st.booleans(), st.text(max_size=20), st.lists(scalars, max_size=3),
                        st.dictionaries(st.text(max_size=8), scalars, max_size=3))
non_finite = st.one_of(st.sampled_from([math.nan, math.inf, -math.inf]),
                       st.integers(min_value=2**1024, max_value=2**1100),
                       st.integers(min_value=2**1024, max_value=2**1100).map(lambda n: -n))
negatives = st.one_of(st.floats(max_value=-1e-300, allow_nan=False, allow_infinity=False),
                      st.integers(max_value=-1))
non_lists = st.one_of(st.booleans(), st.integers(), st.text(max_size=20),
                      st.dictionaries(st.text(max_size=8), scalars, max_size=3))
non_objects = st.one_of(st.booleans(), st.integers(), st.text(max_size=20), st.lists(scalars, max_size=3))
#: Longer than any text field allows (the longest, ShortText, takes 1000 characters).
huge_strings = st.integers(1001, 300_000).map(lambda n: "x" * n)
#: Nested arrays, deep but within what an import line may hold (see importer.MAX_NESTING).
deep = st.integers(2, 50).map(nested)


def long_text(minimum: int) -> st.SearchStrategy[str]:
    return st.integers(minimum, minimum + 5000).map(lambda n: "é" * n)


def bad_values(kind: str, mandatory: bool) -> st.SearchStrategy[Any]:
    """Values local validation must refuse in a slot of this kind (all kinds: huge, deep)."""
    by_kind: dict[str, st.SearchStrategy[Any]] = {
        "nmi": st.one_of(non_strings, st.text(max_size=30).filter(lambda s: not NMI_PATTERN.fullmatch(s)),
                         st.sampled_from(["800100000", "80010000011", "8001I00001", "8001O00001", "8001a00001",
                                          "８００１０００００１", "8001 00001", " 800100001"])),
        "postcode": st.one_of(non_strings, st.text(max_size=8).filter(lambda s: not POSTCODE.fullmatch(s)),
                              st.sampled_from(["６１０７", "610", "61070", "6 07"])),
        "status": st.one_of(non_strings, st.just(""), long_text(1001)),
        "text": st.one_of(non_strings, long_text(1001)),
        "ownid": st.one_of(non_strings, st.just(""), long_text(101), st.text(max_size=5).map(lambda t: t + "\x00")),
        "date": st.one_of(non_strings, st.text(max_size=12).filter(lambda s: not DATE.fullmatch(s)),
                          st.sampled_from(["01/03/2024", "2024-3-1", "２０２４-０３-０１", "2024-03-01T00:00"])),
        "equipment_type": st.one_of(non_strings,
                                    st.text(max_size=30).filter(lambda s: s not in ENUMERATIONS.equipment_types)),
        "device_type": st.one_of(non_strings,
                                 st.text(max_size=30).filter(lambda s: s not in ENUMERATIONS.device_types)),
        "number": st.one_of(non_numbers, non_finite),
        "nonneg": st.one_of(non_numbers, non_finite, negatives),
        "phases": st.one_of(non_numbers, st.integers(max_value=-1), st.integers(min_value=4),
                            st.floats(allow_nan=False, allow_infinity=False)),
        "count": st.one_of(non_numbers, non_finite, st.integers(max_value=0),
                           st.integers(min_value=MAX_JSON_INTEGER + 1), st.floats(allow_nan=False)),
        "connections": st.one_of(non_lists, st.just([]),
                                 st.just([connection(f"C{i}") for i in range(1001)])),
        "devices": st.one_of(non_lists, st.just([device(f"D{i}") for i in range(1001)])),
        "serials": st.one_of(non_lists, st.just(["S"] * 1001), st.lists(non_strings, min_size=1, max_size=3),
                             long_text(201).map(lambda s: [s])),
        "object": non_objects,
    }
    values = st.one_of(by_kind[kind], huge_strings, deep)
    return st.one_of(values, st.none()) if mandatory else values


# --- records ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Broken:
    record: dict[str, Any]
    part: str  # "nmi" or "installation": the part local validation must refuse
    field: str  # the field the local exception must name
    how: str


def names(path: Path) -> str:
    return format_location(path)


def broken(part: str, path: Path, value: Any, nmi: str = "8001000001") -> Broken:
    """One explicit breakage (for `@example`): `value` at `path`, or DELETE."""
    record = template(nmi)
    put(record, part, path, value)
    return Broken(record, part, names(path), "missing" if value is DELETE else f"{repr(value)[:60]}")


@st.composite
def broken_records(draw: st.DrawFn, nmi: str, *, touch_nmi: bool = True) -> Broken:
    """A valid record with exactly one slot broken (a bad value, a mandatory field deleted, or
    a field AEMO does not know added)."""
    record = template(nmi)
    how = draw(st.sampled_from(["value", "missing", "unknown"]))
    if how == "unknown":
        part, path, model = draw(st.sampled_from(OBJECTS))
        key = draw(st.text(min_size=1, max_size=30).filter(lambda k, m=model: k not in known_fields(m)))
        put(record, part, (*path, key), draw(scalars))
        return Broken(record, part, names((*path, key)), f"unknown field {key!r}")
    slots = [s for s in SLOTS if (touch_nmi or s.kind != "nmi") and (how == "value" or s.mandatory)]
    slot = draw(st.sampled_from(slots))
    if how == "missing":
        put(record, slot.part, slot.path, DELETE)
        return Broken(record, slot.part, names(slot.path), "missing")
    value = draw(bad_values(slot.kind, slot.mandatory))
    put(record, slot.part, slot.path, value)
    return Broken(record, slot.part, names(slot.path), f"{slot.kind} = {repr(value)[:60]}")


# --- valid variations -----------------------------------------------------------------------------

def text(max_size: int, min_size: int = 0) -> st.SearchStrategy[str]:
    """Any Unicode text (controls, NUL, emoji), with a visible character: AEMO reads a blank
    mandatory value as missing."""
    return st.text(min_size=max(min_size, 1), max_size=max_size).filter(lambda s: s.strip() != "")


def own_id() -> st.SearchStrategy[str]:
    """The operator's equipment id: any text but NUL (the store keeps ids as keys)."""
    characters = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
    return st.text(characters, max_size=100).filter(lambda s: s.strip() != "")


finite = st.one_of(st.floats(min_value=0, max_value=1e308, allow_nan=False, allow_infinity=False),
                   st.integers(0, 2**53), st.just(1e308), st.just(0))
signed = st.one_of(st.floats(min_value=-1e308, max_value=1e308, allow_nan=False, allow_infinity=False),
                   st.integers(-2**53, 2**53))
dates = st.dates(dt.date(1990, 1, 1), dt.date(2100, 12, 31)).map(dt.date.isoformat)


@st.composite
def valid_records(draw: st.DrawFn, nmi: str) -> dict[str, Any]:
    """A valid record with every varied slot at a random valid value (1e308 and 0 included)."""
    record = template(nmi)
    inst = record["installation"]
    record["nmiDetails"].update(substation=draw(text(1000)), postCode=draw(st.from_regex(POSTCODE, fullmatch=True)),
                                tni=draw(text(1000)), status=draw(text(1000)))
    inst.update(jobNumber=draw(text(1000)), approvedCapacity=draw(finite), exportLimitkW=draw(finite),
                underFrequencyProtection=draw(signed), availablePhasesCount=draw(st.integers(0, 3)),
                comments=draw(text(1000)))
    conn = inst["acConnections"][0]
    conn.update(nspConnectionId=draw(own_id()), commissioningDate=draw(dates),
                equipmentType=draw(st.sampled_from(ENUMERATIONS.equipment_types)),
                count=draw(st.integers(1, MAX_JSON_INTEGER)), status=draw(text(1000)),
                equipmentInjectionCapacity=draw(finite), voltageVectorShift=draw(signed))
    conn["details"].update(serialNumbers=draw(st.lists(text(200), max_size=5)), fixPowerFactor=draw(signed))
    dev = conn["devices"][0]
    dev.update(nspDeviceId=draw(own_id()), type=draw(st.sampled_from(ENUMERATIONS.device_types)),
               count=draw(st.integers(1, MAX_JSON_INTEGER)), status=draw(text(1000)))
    dev["details"]["nominalRatedCapacity"] = draw(finite)
    return copy.deepcopy(record)
