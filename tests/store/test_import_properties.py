"""Hostile import files, end to end: import, one sync pass against the simulator.

Every line of a generated file is a valid record, a record with one broken field, a record
under a malformed NMI, or garbage (not UTF-8, not JSON, not an object, no NMI, unknown keys,
nested too deep, a lone surrogate escape, an NMI that cannot be a key). Garbage is an import
problem with its line number; every other line is stored; the sync pass refuses each broken
record locally with an exception naming the field and sends nothing invalid (the simulator never
answers 400, 413 or 422); every valid record in the same file arrives exactly as stored.
Sizes: just under and just over a lowered payload limit, and once at AEMO's real 10 MB.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from dersync.mock import Simulator
from dersync.models import check_record
from dersync.settings import Enumerations, Settings
from dersync.store import Store
from dersync.store.importer import MAX_NESTING, import_file
from dersync.sync import sync_once
from dersync.testing import connection, installation, nmi_details, nmi_for, read_back
from tests.models.strategies import broken_records, nested, valid_records

#: NMIs never repeat within a test, so examples sharing one store and simulator stay apart.
_numbers = itertools.count(100_000)


def fresh_nmi() -> str:
    return nmi_for(next(_numbers))


@dataclass(frozen=True)
class Line:
    kind: str
    raw: bytes
    nmi: str | None = None  # the store key, for lines that are stored
    refused_part: str | None = None  # "nmi" / "installation": what local validation refuses
    field: str | None = None  # the field its local exception names
    problem: str | None = None  # for garbage: a phrase of the import problem


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


@st.composite
def valid_line(draw: st.DrawFn) -> Line:
    nmi = fresh_nmi()
    return Line("valid", _json(draw(valid_records(nmi))), nmi)


@st.composite
def broken_line(draw: st.DrawFn) -> Line:
    nmi = fresh_nmi()
    broken = draw(broken_records(nmi, touch_nmi=False))
    return Line("broken", _json(broken.record), nmi, broken.part, broken.field)


BAD_NMI_FORMS: list[Callable[[str], str]] = [
    lambda n: n[:-1],  # nine characters
    lambda n: n + "7",  # eleven
    lambda n: "I" + n[1:],  # I and O are not used in NMIs
    lambda n: n[:-1] + "o",  # lower case
    lambda n: n.translate(str.maketrans("0123456789", "０１２３４５６７８９")),  # full-width digits
    lambda n: n[:5] + " " + n[5:],
    lambda n: n + "-" + "9" * 60,
]


@st.composite
def bad_nmi_line(draw: st.DrawFn) -> Line:
    nmi = draw(st.sampled_from(BAD_NMI_FORMS))(fresh_nmi())
    record = {"nmiDetails": nmi_details(nmi), "installation": installation(nmi)}
    return Line("bad_nmi", _json(record), nmi, "nmi", "nmi")


def _not_an_object(text: str) -> bool:
    try:
        return not isinstance(json.loads(text), dict)
    except (ValueError, RecursionError):
        return True


@st.composite
def garbage_line(draw: st.DrawFn) -> Line:
    nmi = fresh_nmi()
    kind = draw(st.sampled_from(["not_utf8", "not_json", "no_nmi", "unknown_key", "empty", "too_deep",
                                 "surrogate", "nmi_not_a_key"]))
    if kind == "not_utf8":
        raw = draw(st.binary(min_size=1, max_size=60).map(lambda b: b"\xff" + b.replace(b"\n", b"")))
        return Line(kind, raw, problem="not UTF-8")
    if kind == "not_json":
        text = draw(st.text(min_size=1, max_size=60).filter(
            lambda t: "\n" not in t and t.strip() != "" and _not_an_object(t)))
        return Line(kind, text.encode(), problem="")
    if kind == "no_nmi":
        nmi_value = draw(st.one_of(st.none(), st.just(""), st.just("   "), st.integers(), st.lists(st.integers())))
        details: dict[str, Any] = nmi_details(nmi)
        if nmi_value is None:
            del details["nmi"]
        else:
            details["nmi"] = nmi_value
        return Line(kind, _json({"nmiDetails": details}), problem="no NMI")
    if kind == "unknown_key":
        key = draw(st.text(min_size=1, max_size=20).filter(lambda k: k not in ("nmiDetails", "installation")))
        return Line(kind, _json({"nmiDetails": nmi_details(nmi), key: 1}), problem="unknown key")
    if kind == "empty":
        return Line(kind, b"{}", problem="neither nmiDetails nor installation")
    if kind == "too_deep":
        depth = draw(st.one_of(st.integers(MAX_NESTING, MAX_NESTING + 300), st.just(100_000)))
        return Line(kind, _json({"nmiDetails": {"nmi": nmi, "substation": nested(depth)}})
                    if depth < 5000 else b'{"nmiDetails": ' + b"[" * depth + b"]" * depth + b"}", problem="nested")
    if kind == "surrogate":
        where = draw(st.sampled_from(["substation", "nmi"]))
        details = nmi_details(nmi)
        details[where] = details[where] + "\ud800"
        return Line(kind, _json({"nmiDetails": details}), problem="surrogate" if where != "nmi" else "cannot be an NMI")
    bad = draw(st.sampled_from([nmi[:4] + "\x00" + nmi[5:], nmi[:4] + "\x07" + nmi[5:], nmi * 11]))
    return Line(kind, _json({"nmiDetails": nmi_details(bad)}), problem="cannot be an NMI")


files = st.tuples(valid_line(), st.lists(st.one_of(valid_line(), broken_line(), bad_nmi_line(), garbage_line()),
                                         min_size=1, max_size=10)).map(lambda t: [t[0], *t[1]])


async def import_lines(store: Store, folder: Path, lines: list[Line]):  # type: ignore[no-untyped-def]
    path = folder / f"import-{next(_numbers)}.jsonl"
    path.write_bytes(b"\n".join(line.raw for line in lines) + b"\n")
    return await import_file(store, path)


async def sync_state(store: Store, nmi: str) -> str:
    [row] = await store.load_records([nmi])
    return row.sync_state


def assert_nothing_invalid_reached(simulator: Simulator) -> None:
    for status in (400, 413, 422):
        assert simulator.state.count(status=status) == 0, (status, simulator.state.requests_by_route)


@hypothesis_settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(lines=files)
async def test_hostile_file_is_reported_by_line_and_nothing_valid_is_lost(
    lines: list[Line], settings: Settings, store: Store, simulator: Simulator, tmp_path: Path
) -> None:
    """Garbage lines are import problems with their line numbers and are skipped; every other
    line is stored; one sync pass refuses each broken record locally with an exception naming
    its field (nothing invalid reaches AEMO) and delivers every valid record exactly."""
    report = await import_lines(store, tmp_path, lines)

    garbage = [(number, line) for number, line in enumerate(lines, start=1) if line.problem is not None]
    assert [p.line for p in report.problems] == [number for number, _ in garbage], report.problems
    for problem, (_, line) in zip(report.problems, garbage, strict=False):
        assert line.problem in problem.message, (line.kind, problem)
    stored = [line for line in lines if line.problem is None]
    assert report.stored == len(stored) and report.lines == len(lines)

    await sync_once(settings, store)

    assert_nothing_invalid_reached(simulator)
    assert (await read_back(store, simulator.state)).ok
    state = simulator.state
    for line in stored:
        assert line.nmi is not None
        if line.refused_part is None:
            assert await sync_state(store, line.nmi) == "synced", line
            assert line.nmi in state.nmis and line.nmi in state.installations
            continue
        assert await sync_state(store, line.nmi) == "rejected", line
        found = await store.list_exceptions(open_only=True, nmi=line.nmi, level="local")
        part = "nmi" if line.refused_part == "nmi" else "installation"
        fields = [r["field"] or "" for r in found if r["part"] == part]
        assert any(f == line.field or f.startswith((f"{line.field}.", f"{line.field}[")) for f in fields), (
            line.kind, line.field, found)
        assert line.nmi not in state.installations and state.creates[line.nmi] == 0
        if line.refused_part == "nmi":
            assert line.nmi not in state.nmis


async def test_each_kind_of_hostile_line_in_one_file(store: Store, tmp_path: Path) -> None:
    """One file with every kind of line the importer refuses, between valid ones: each refused
    line is reported once with its line number and a reason, nothing else is lost, and the store
    stays usable (a lone surrogate or a NUL in an NMI used to abort the whole import)."""
    valid = [fresh_nmi() for _ in range(4)]
    nmi = fresh_nmi()
    raw = [
        _json({"nmiDetails": nmi_details(valid[0])}),
        b'{"nmiDetails": {"nmi": "' + nmi.encode() + b'", "substation": "Can\\udc00nington"}}',
        _json({"nmiDetails": nmi_details(valid[1])}),
        b'{"nmiDetails": {"nmi": "8001\\ud800"}}',
        b'{"nmiDetails": {"nmi": "8001\\u000000001"}}',
        _json({"nmiDetails": {"nmi": "8" * 100_000}}),
        _json({"nmiDetails": {"nmi": nmi, "substation": nested(MAX_NESTING)}}),
        b'{"nmiDetails": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b"\xff\xfe not text",
        _json({"nmiDetails": nmi_details(valid[2]), "installation": installation(valid[2])}),
        _json({"nmiDetails": {"nmi": nmi, "substation": nested(MAX_NESTING - 3)}}),  # deep, but storable
        _json({"nmiDetails": nmi_details(valid[3], substation="a\x00b")}),  # NUL inside a value is fine
    ]
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b"\n".join(raw) + b"\n")

    report = await import_file(store, path)

    assert [(p.line, p.message.split(" ")[0]) for p in report.problems] == [
        (2, "nmiDetails"), (4, "NMI"), (5, "NMI"), (6, "NMI"), (7, "JSON"), (8, "JSON"), (9, "not")]
    assert "surrogate" in report.problems[0].message and "nested" in report.problems[4].message
    assert report.stored == 5
    status = await store.status()
    assert status["records"]["pending"] == 5
    rows = {r.nmi: r for r in await store.load_records([*valid, nmi])}
    assert set(rows) == {*valid, nmi}
    assert json.loads(rows[valid[3]].nmi_details)["substation"] == "a\x00b"


async def test_hostile_elements_of_a_json_array(store: Store, tmp_path: Path) -> None:
    """In a JSON array file, refused elements are reported by element number and the others are
    stored, escaped surrogate pairs intact (a lone surrogate escape used to be stored as "?")."""
    valid = [fresh_nmi() for _ in range(3)]
    path = tmp_path / "records.json"
    path.write_bytes(b"[" + b",".join([
        _json({"nmiDetails": nmi_details(valid[0])}),
        _json({"nmiDetails": {"nmi": fresh_nmi() * 11}}),
        _json({"nmiDetails": {"nmi": fresh_nmi(), "tni": nested(MAX_NESTING + 5)}}),
        _json({"nmiDetails": nmi_details(valid[1])}),
        b'{"nmiDetails": {"nmi": "' + fresh_nmi().encode() + b'", "substation": "Can\\udc00nington"}}',
        b'{"nmiDetails": {"nmi": "' + valid[2].encode() + b'", "substation": "Sun \\ud83d\\ude00"}}',
    ]) + b"]")

    report = await import_file(store, path)

    assert [p.line for p in report.problems] == [2, 3, 5]
    assert "surrogate" in report.problems[2].message
    assert report.stored == 3
    rows = {r.nmi: r for r in await store.load_records(valid)}
    assert json.loads(rows[valid[2]].nmi_details)["substation"] == "Sun \U0001F600"


# --- payload size ----------------------------------------------------------------------------------


def padded(nmi: str, chars: int, *, noise: str = "") -> dict[str, Any]:
    """An installation carrying `chars` characters of serial numbers (up to 200 a serial, at most
    1000 serials a connection), growing by at least one byte per character. Serials are cut from
    `noise` when given (so they do not compress away), else they are all "S"."""
    connections = []
    index = offset = 0
    while chars > 0 or not connections:
        take = min(chars, 200 * 999)  # 999 full serials and a partial one
        lengths = [200] * (take // 200) + [take % 200]
        serials = []
        for length in lengths:
            serials.append(noise[offset:offset + length] if noise else "S" * length)
            offset = (offset + length) % max(1, len(noise) - 200)
        conn = connection(f"C-{nmi}-{index}")
        conn["details"]["serialNumbers"] = serials
        connections.append(conn)
        chars -= take
        index += 1
    return installation(nmi, connections=connections)


def fits(nmi: str, chars: int, limit: int) -> bool:
    checked = check_record(nmi, None, json.dumps(padded(nmi, chars)), Enumerations(), limit)
    assert checked.installation is not None
    return checked.installation.valid


async def test_payload_just_under_the_limit_is_sent_and_just_over_is_not(
    make_settings: Callable[..., Settings], simulator: Simulator, tmp_path: Path
) -> None:
    """With the payload limit lowered to 20,000 bytes at both ends, the largest record local
    validation lets through is accepted by AEMO (no 413) and arrives exactly; one character more
    is a local SIZE exception and is never sent; the records beside them are unaffected."""
    limit = 20_000
    simulator.config.max_payload_bytes = limit
    settings = make_settings(max_payload_bytes=limit)
    under, over, plain = fresh_nmi(), fresh_nmi(), fresh_nmi()
    low, high = 0, limit  # fits(low) and not fits(high)
    assert fits(under, low, limit) and not fits(under, high, limit)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(under, middle, limit) else (low, middle)
    store = await Store.open(settings.database_url)
    try:
        path = tmp_path / "sizes.jsonl"
        path.write_text("\n".join(json.dumps({"nmiDetails": nmi_details(n), "installation": inst}) for n, inst in [
            (under, padded(under, low)), (over, padded(over, low + 1)), (plain, installation(plain))]) + "\n")
        assert (await import_file(store, path)).stored == 3

        await sync_once(settings, store)

        assert_nothing_invalid_reached(simulator)
        assert (await read_back(store, simulator.state)).ok
        assert under in simulator.state.installations and plain in simulator.state.installations
        assert over not in simulator.state.installations and over in simulator.state.nmis
        [size] = await store.list_exceptions(open_only=True, nmi=over)
        assert (size["level"], size["code"], size["part"]) == ("local", "SIZE", "installation")
        assert f"{limit:,} bytes" in size["detail"]
        assert await store.list_exceptions(nmi=under) == []
    finally:
        await store.close()


async def test_real_ten_megabyte_records(settings: Settings, store: Store, simulator: Simulator,
                                         tmp_path: Path) -> None:
    """At AEMO's real 10 MB limit: an installation of 9.95 MB is sent and arrives exactly; one of
    10.05 MB is a local SIZE exception and is never sent."""
    noise = random.Random(7).randbytes(1_000_000).hex().upper()  # serials that do not compress away
    under, over = fresh_nmi(), fresh_nmi()
    records = {n: padded(n, chars, noise=noise) for n, chars in [(under, 9_800_000), (over, 9_900_000)]}
    sizes = {n: len(json.dumps(inst, separators=(",", ":"))) for n, inst in records.items()}
    assert 9_900_000 < sizes[under] < 9_990_000 and 10_000_000 < sizes[over] < 10_100_000, sizes
    path = tmp_path / "big.jsonl"
    path.write_text("\n".join(json.dumps({"nmiDetails": nmi_details(n), "installation": inst})
                              for n, inst in records.items()) + "\n")
    assert (await import_file(store, path)).stored == 2

    await sync_once(settings, store)

    assert_nothing_invalid_reached(simulator)
    assert (await read_back(store, simulator.state)).ok
    assert under in simulator.state.installations and (await sync_state(store, under)) == "synced"
    assert over not in simulator.state.installations and simulator.state.creates[over] == 0
    codes = [(r["level"], r["code"]) for r in await store.list_exceptions(open_only=True, nmi=over)]
    assert codes == [("local", "SIZE")]
