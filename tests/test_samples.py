"""The sample record generator: realistic, deterministic, and each flavour does what it claims."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from dersync import samples
from dersync.mock import validation as aemo
from dersync.mock.config import DEFAULT_KNOWN_EQUIPMENT
from dersync.models import RecordCheck, check_record
from dersync.settings import MAX_PAYLOAD_BYTES, Enumerations
from dersync.store.importer import to_input_row

COUNT = 300
WA_NMI = re.compile(r"^800[12]\d{6}$")


def check(record: dict[str, Any]) -> RecordCheck:
    nmi = (record.get("nmiDetails") or record["installation"])["nmi"]
    return check_record(
        nmi,
        json.dumps(record["nmiDetails"]) if "nmiDetails" in record else None,
        json.dumps(record["installation"]) if "installation" in record else None,
        Enumerations(),
        MAX_PAYLOAD_BYTES,
    )


def problems(result: RecordCheck) -> list[str]:
    return [str(p) for part in (result.nmi_details, result.installation) if part for p in part.problems]


def mixed() -> list[tuple[int, str, dict[str, Any]]]:
    return [(i, samples.flavour_of(i), r) for i, r in enumerate(samples.sample_records(COUNT))]


def with_aemo_ids(installation: dict[str, Any]) -> dict[str, Any]:
    """The installation as the simulator stores it: AEMO ids on every connection and device."""
    stored = json.loads(json.dumps(installation))
    for c, conn in enumerate(stored["acConnections"], start=1):
        conn["connectionId"] = c
        for d, dev in enumerate(conn["devices"], start=1):
            dev["deviceId"] = c * 100 + d
    return stored


def test_valid_records_pass_local_validation() -> None:
    """Every valid record (mixed or mix=False) passes check_record in both parts."""
    records = [r for _, f, r in mixed() if f == "valid"] + list(samples.sample_records(100, seed=7, mix=False))
    for record in records:
        result = check(record)
        assert problems(result) == [], record["installation"]["nmi"]
        assert result.nmi_details.valid and result.installation.valid


def test_flagged_and_first_level_records_pass_local_validation() -> None:
    """Flagged and first-level records are sendable: only AEMO can object to them."""
    for _, flavour, record in mixed():
        if flavour in ("flagged", "first_level"):
            assert problems(check(record)) == [], (flavour, record["installation"]["nmi"])


def test_local_invalid_records_fail_naming_the_field() -> None:
    """Each local_invalid record fails local validation with a problem naming the broken field,
    while its NMI details stay valid and the import stores it under its true NMI."""
    cases = [(i, r) for i, f, r in mixed() if f == "local_invalid"]
    cases += [(i, samples.sample_record(i, flavour="local_invalid")) for i in range(len(samples.LOCAL_INVALID_FIELDS))]
    for index, record in cases:
        result = check(record)
        field = samples.local_invalid_field(index)
        assert result.nmi_details.valid
        assert not result.installation.valid
        assert field in {p.field for p in result.installation.problems}, (field, problems(result))
        row = to_input_row(record)
        assert not isinstance(row, str) and row.nmi == samples.nmi_of(index)


def test_every_local_invalid_variant_appears_in_the_bundled_mix() -> None:
    """The 300-record mix rotates through every local_invalid variant."""
    fields = {samples.local_invalid_field(i) for i, f, _ in mixed() if f == "local_invalid"}
    assert fields == {field for _, field in samples.LOCAL_INVALID_FIELDS}


def test_generation_is_deterministic() -> None:
    """The same count and seed give identical records; another seed gives different ones; a
    record does not depend on how many others are generated."""
    first = list(samples.sample_records(COUNT))
    assert first == list(samples.sample_records(COUNT))
    assert first != list(samples.sample_records(COUNT, seed=1))
    assert first[:40] == list(samples.sample_records(40))
    for index in (0, 17, 299):
        assert first[index] == samples.sample_record(index, flavour=samples.flavour_of(index))


def test_nmis_are_unique_wa_nmis() -> None:
    """Record NMIs are unique, ten characters, Western Power style (8001/8002 + six digits)."""
    nmis = [r["nmiDetails"]["nmi"] for r in samples.sample_records(COUNT)]
    assert len(set(nmis)) == COUNT
    assert all(WA_NMI.fullmatch(n) and "I" not in n and "O" not in n for n in nmis)
    assert WA_NMI.fullmatch(samples.nmi_of(1_500_000))
    with pytest.raises(ValueError):
        samples.nmi_of(samples.MAX_INDEX)


def test_mix_shares_are_exact_per_hundred() -> None:
    """With mix=True each block of 100 holds exactly the documented share of each flavour;
    mix=False (and installation_only) never appear in the mix."""
    for block in range(3):
        counts = Counter(samples.flavour_of(i) for i in range(block * 100, block * 100 + 100))
        assert dict(counts) == samples.MIX_SHARES
    assert set(samples.MIX_SHARES) < set(samples.FLAVOURS)


def test_simulator_confirms_valid_and_flags_or_rejects_the_others() -> None:
    """Against the simulator's rules: valid records pass schema and first level with no
    second-level exception; flagged ones get exactly one 2023; first_level ones get a 1012."""
    known = aemo.equipment_index(DEFAULT_KNOWN_EQUIPMENT)
    for _, flavour, record in mixed():
        if flavour == "local_invalid":
            continue
        inst = record["installation"]
        assert aemo.schema_nmi(record["nmiDetails"]) == []
        assert aemo.first_level_nmi(record["nmiDetails"]) == []
        assert aemo.schema_installation({"data": inst}) == []
        errors = aemo.first_level_installation(inst)
        if flavour == "first_level":
            assert [e.code for e in errors] == ["1012"]
            continue
        assert errors == []
        codes = [e["code"] for e in aemo.second_level(with_aemo_ids(inst), known)[0]]
        assert codes == ([2023] if flavour == "flagged" else []), (flavour, inst["nmi"])


def test_records_are_physically_consistent() -> None:
    """Capacities fit the approved capacity, phases fit, postcodes are WA and each substation
    has one TNI; connection and device ids follow the operator's scheme."""
    tni_of: dict[str, str] = {}
    for record in samples.sample_records(COUNT, mix=False):
        details, inst = record["nmiDetails"], record["installation"]
        nmi = details["nmi"]
        assert 6000 <= int(details["postCode"]) <= 6770
        assert tni_of.setdefault(details["substation"], details["tni"]) == details["tni"]
        assert inst["availablePhasesCount"] in (1, 3) and inst["installedPhasesCount"] in (1, 3)
        assert inst["installedPhasesCount"] <= inst["availablePhasesCount"]
        assert 5.0 <= inst["approvedCapacity"] <= 30.0
        assert inst["exportLimitkW"] <= inst["approvedCapacity"]
        assert 1 <= len(inst["acConnections"]) <= 3
        for c, conn in enumerate(inst["acConnections"], start=1):
            assert conn["nspConnectionId"] == f"WP-C-{nmi}-{c}"
            assert "2015-01-01" <= conn["commissioningDate"] <= "2026-12-31"
            assert conn["equipmentInjectionCapacity"] <= inst["approvedCapacity"]
            rated = sum(d["details"]["nominalRatedCapacity"] for d in conn["devices"])
            assert rated <= inst["approvedCapacity"]
            for d, dev in enumerate(conn["devices"], start=1):
                assert dev["nspDeviceId"] == f"WP-D-{nmi}-{c}-{d}"
                assert (dev["type"] == "Storage") == ("nominalStorageCapacity" in dev["details"])
    assert len(set(tni_of.values())) == len(tni_of)


def test_installation_only_records_carry_only_the_installation() -> None:
    """The installation_only flavour has no nmiDetails key and imports under its NMI."""
    record = samples.sample_record(5, flavour="installation_only")
    assert list(record) == ["installation"]
    row = to_input_row(record)
    assert not isinstance(row, str) and row.nmi == samples.nmi_of(5)
    with pytest.raises(ValueError):
        samples.sample_record(5, flavour="bogus")


def test_write_jsonl_and_main_write_importable_lines(tmp_path: Path) -> None:
    """write_jsonl writes one JSON object per line and returns the count; the command line
    honours COUNT, --out, --seed and --no-mix."""
    path = tmp_path / "out" / "records.jsonl"
    assert samples.write_jsonl(path, samples.sample_records(25)) == 25
    assert [json.loads(line) for line in path.read_text("utf-8").splitlines()] == list(samples.sample_records(25))
    samples.main(["120", "--out", str(path), "--seed", "3", "--no-mix"])
    lines = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    assert lines == list(samples.sample_records(120, seed=3, mix=False))


def test_bundled_sample_file_matches_the_generator() -> None:
    """dersync/data/sample-records.jsonl is exactly `python -m dersync.samples` (300, seed 0)."""
    lines = samples.DEFAULT_OUT.read_text("utf-8").splitlines()
    assert [json.loads(line) for line in lines] == list(samples.sample_records(samples.DEFAULT_COUNT))
