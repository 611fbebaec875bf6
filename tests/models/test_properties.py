"""Local validation against generated hostile records (hypothesis).

Whatever one field of a record holds (a wrong JSON type, NaN, infinity, a number out of range, a
huge string or list, deep nesting, null) and whichever mandatory field is missing or unknown
field is added, validation returns a problem naming that field, never raises, and leaves the
other part of the record sendable. Valid records, however odd their values, pass unchanged.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dersync.models import check_record
from dersync.models.base import MAX_JSON_INTEGER
from dersync.models.validation import PartCheck
from dersync.settings import MAX_PAYLOAD_BYTES

from .strategies import C0, D0, DELETE, ENUMERATIONS, Broken, broken, broken_records, nested, template, valid_records

NMI = "8001000001"
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(record: dict[str, Any]) -> tuple[PartCheck, PartCheck]:
    result = check_record(NMI, json.dumps(record["nmiDetails"]), json.dumps(record["installation"]),
                          ENUMERATIONS, MAX_PAYLOAD_BYTES)
    assert result.nmi_details is not None and result.installation is not None
    return result.nmi_details, result.installation


def names(problem_field: str, field: str) -> bool:
    """The problem is about `field` (or something inside it, as `serialNumbers[0]`)."""
    return problem_field == field or problem_field.startswith((field + ".", field + "["))


@PROPERTY
@given(broken=broken_records(NMI))
@example(broken=broken("installation", (*C0, "count"), MAX_JSON_INTEGER + 1))  # beyond what JSON carries
@example(broken=broken("installation", (*D0, "count"), 10**400))
@example(broken=broken("installation", ("approvedCapacity",), 10**400))
@example(broken=broken("installation", ("approvedCapacity",), math.nan))
@example(broken=broken("installation", ("exportLimitkW",), -math.inf))
@example(broken=broken("installation", (*D0, "details", "nominalRatedCapacity"), -1e-300))
@example(broken=broken("nmi", ("postCode",), "６１０７"))  # full-width digits
@example(broken=broken("installation", (*C0, "commissioningDate"), "２０２４-０３-０１"))
@example(broken=broken("nmi", ("nmi",), "8001i00001"))
@example(broken=broken("installation", ("nmi",), "8001O00001"))
@example(broken=broken("installation", ("comments",), nested(60)))
@example(broken=broken("installation", ("comments",), "x" * 1_000_001))
@example(broken=broken("installation", ("acConnections",), DELETE))
@example(broken=broken("installation", (*C0, "nspConnectionId"), "C\x001"))  # PostgreSQL text takes no NUL
@example(broken=broken("installation", (*D0, "bo\x00gus"), 1))  # an unknown field named with a NUL
def test_one_broken_field_is_a_local_problem_naming_it(broken: Broken) -> None:
    """A record with one broken field (wrong type, absurd number, huge or deep value, null,
    missing, unknown) is not sendable, and a local problem names that field; the other part of
    the record stays sendable (an installation's bad device never blocks its NMI details)."""
    details, inst = check(broken.record)

    refused, other = (details, inst) if broken.part == "nmi" else (inst, details)
    assert not refused.valid and refused.payload is None, broken.how
    assert any(names(p.field, broken.field) for p in refused.problems), (broken.how, broken.field,
                                                                       [str(p) for p in refused.problems])
    assert all(p.code == "LOCAL" and p.part == broken.part for p in refused.problems)
    assert other.valid, (broken.how, [str(p) for p in other.problems])


@PROPERTY
@given(record=valid_records(NMI))
@example(record=template(NMI))
def test_valid_records_pass_unchanged_and_hash_by_meaning(record: dict[str, Any]) -> None:
    """A valid record (any Unicode text, 0 and 1e308, counts up to 2**53 - 1) passes, its payload
    is exactly what was stored, and its content hash depends on the meaning, not the key order."""
    details, inst = check(record)

    assert details.valid and inst.valid, ([str(p) for p in details.problems + inst.problems])
    assert details.payload == record["nmiDetails"] and inst.payload == record["installation"]
    reordered = {part: _reversed_keys(value) for part, value in record.items()}
    details_again, inst_again = check(reordered)
    assert (details_again.content_hash, inst_again.content_hash) == (details.content_hash, inst.content_hash)


def _reversed_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reversed_keys(v) for k, v in reversed(list(value.items()))}
    if isinstance(value, list):
        return [_reversed_keys(v) for v in value]
    return value


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=50), garbage=st.binary(max_size=50))
def test_stored_text_that_is_not_json_is_a_local_problem(text: str, garbage: bytes) -> None:
    """A part stored as text that is not a JSON object (an ETL job writing the table directly)
    is a local problem on that part, not a crash."""
    for raw in (text, garbage.decode("latin-1"), "[]", "null", "1e999", '{"nmi": "8001000001"'):
        try:
            if isinstance(json.loads(raw), dict):
                continue
        except ValueError:
            pass
        result = check_record(NMI, raw, raw, ENUMERATIONS, MAX_PAYLOAD_BYTES)
        for part in (result.nmi_details, result.installation):
            assert part is not None and not part.valid and part.problems
