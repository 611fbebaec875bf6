"""`parse_response` reads every documented (or plausible) AEMO body shape without crashing.

One table of body shapes; each row pins what the engine will see: status, transaction id,
unwrapped data, errors and second-level exceptions.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from dersync.aemo import AemoProblem, parse_response

INSTALLATION = {"nmi": "8001000001", "jobNumber": "J1", "acConnections": [{"connectionId": 100001}]}
EXC_2023 = {"code": 2023, "title": "Inverter model not on approved list", "detail": "Fronius X not approved",
            "connectionId": 100001, "nspConnectionId": "C1"}


def _body(value: Any) -> bytes:
    return json.dumps(value).encode()


CASES = [
    pytest.param(
        201, _body({"transactionId": "T1", "data": INSTALLATION, "exceptions": []}), {},
        dict(transaction_id="T1", data=INSTALLATION, errors=(), exception_codes=()),
        id="wrapped-object",
    ),
    pytest.param(
        200, _body({**INSTALLATION, "transactionId": "T2", "exceptions": [EXC_2023]}), {},
        dict(transaction_id="T2", data=INSTALLATION, errors=(), exception_codes=("2023",)),
        id="bare-object-with-envelope-keys-removed",
    ),
    pytest.param(
        200, _body([INSTALLATION, {"nmi": "8001000002"}]), {"X-Transaction-Id": "H1"},
        dict(transaction_id="H1", data=[INSTALLATION, {"nmi": "8001000002"}], errors=(), exception_codes=()),
        id="bare-list-with-header-transaction-id",
    ),
    pytest.param(
        200, _body({"transactionId": "T3", "data": [INSTALLATION], "page": 1, "totalPages": 1}), {},
        dict(transaction_id="T3", data=[INSTALLATION], errors=(), exception_codes=()),
        id="wrapped-list-with-paging",
    ),
    pytest.param(
        201, _body({"transactionId": "T4", "data": {**INSTALLATION, "exceptions": [{"code": "2024", "message": "m"}]}}),
        {}, dict(transaction_id="T4", data=INSTALLATION, errors=(), exception_codes=("2024",)),
        id="exceptions-inside-data",
    ),
    pytest.param(
        201, _body({"transactionId": "T5", "data": INSTALLATION, "exceptions": [{"code": 2040}],
                    }), {},
        dict(transaction_id="T5", data=INSTALLATION, errors=(), exception_codes=("2040",)),
        id="numeric-code-at-top-level",
    ),
    pytest.param(
        201, _body({"transactionId": "T6", "data": {**INSTALLATION, "exceptions": [{"code": 2023.0}]},
                    "exceptions": [{"code": "2040"}]}), {},
        dict(transaction_id="T6", data=INSTALLATION, errors=(), exception_codes=("2040", "2023")),
        id="exceptions-both-places-top-level-first",
    ),
    pytest.param(
        200, _body({"transactionID": "T7", "data": {"nmi": "8001000001"}}), {},
        dict(transaction_id="T7", data={"nmi": "8001000001"}, errors=(), exception_codes=()),
        id="transactionID-spelling",
    ),
    pytest.param(
        200, _body({"data": {"transactionId": "T8", "nmi": "8001000001"}}), {},
        dict(transaction_id="T8", data={"nmi": "8001000001"}, errors=(), exception_codes=()),
        id="transaction-id-inside-data",
    ),
    pytest.param(
        422, _body({"transactionId": "T9", "errors": [{"code": "1001", "title": "NMI exists", "detail": "use PUT"},
                                                      {"code": 1005, "title": "Bad postcode"}]}), {},
        dict(transaction_id="T9", data=None, errors=("1001", "1005"), exception_codes=()),
        id="first-level-errors",
    ),
    pytest.param(
        400, _body({"transactionId": "T10", "errors": [{"code": "1020", "message": "schema"}]}), {},
        dict(transaction_id="T10", data=None, errors=("1020",), exception_codes=()),
        id="schema-error-with-message",
    ),
    pytest.param(
        401, _body({"code": 401, "title": "Unauthorized", "detail": "Authorization failed", "source": ""}), {},
        dict(transaction_id=None, data=None, errors=("401",), exception_codes=()),
        id="gateway-error-object",
    ),
    pytest.param(
        404, b"", {"x-transaction-id": "H2"},
        dict(transaction_id="H2", data=None, errors=(), exception_codes=()),
        id="empty-body",
    ),
    pytest.param(
        503, b"<html><body><h1>503 Service Unavailable</h1></body></html>", {},
        dict(transaction_id=None, data=None, errors=(), exception_codes=()),
        id="html-body",
    ),
    pytest.param(
        200, None, {}, dict(transaction_id=None, data=None, errors=(), exception_codes=()), id="no-body",
    ),
    pytest.param(
        200, "  ", {}, dict(transaction_id=None, data=None, errors=(), exception_codes=()), id="blank-text-body",
    ),
    pytest.param(
        200, b"\xff\xfe{not json", {}, dict(transaction_id=None, data=None, errors=(), exception_codes=()),
        id="undecodable-bytes",
    ),
    pytest.param(
        200, _body("just a string"), {}, dict(transaction_id=None, data=None, errors=(), exception_codes=()),
        id="json-scalar",
    ),
]


@pytest.mark.parametrize(("status", "body", "headers", "expected"), CASES)
def test_body_shapes(status: int, body: bytes | str | None, headers: dict[str, str], expected: dict[str, Any]) -> None:
    """Each AEMO body shape gives the same normalised view: transaction id from wherever it is,
    `data` unwrapped (envelope keys removed), error and exception codes always strings."""
    response = parse_response(status, body, headers)
    assert response.status == status
    assert response.transaction_id == expected["transaction_id"]
    assert response.data == expected["data"]
    assert tuple(p.code for p in response.errors) == expected["errors"]
    assert tuple(p.code for p in response.exceptions) == expected["exception_codes"]
    assert response.ok == (200 <= status < 300)


@pytest.mark.parametrize(
    ("entry", "title", "detail"),
    [
        ({"code": 1, "title": "T", "detail": "D", "message": "M"}, "T", "D"),
        ({"code": 1, "title": "T", "message": "M"}, "T", "M"),
        ({"code": 1, "title": "T"}, "T", "T"),
        ({"code": 1, "description": "X"}, None, "X"),
        ({"code": 1}, None, None),
    ],
)
def test_problem_text_prefers_detail_then_message_then_title(entry: dict[str, Any], title: str | None,
                                                             detail: str | None) -> None:
    """Text may sit under detail, message or title: `detail` takes the first present."""
    (problem,) = parse_response(201, _body({"data": {}, "exceptions": [entry]}), {}).exceptions
    assert (problem.title, problem.detail) == (title, detail)


def test_exception_keeps_equipment_ids_and_the_raw_object() -> None:
    """A second-level exception tied to a device names AEMO's and the operator's ids (numbers
    given as strings too), and keeps the original object for admins."""
    raw = {"code": "2024", "title": "Device not approved", "connectionId": "100001", "nspConnectionId": "C1",
           "deviceId": 500001, "nspDeviceId": "C1-D1", "extra": {"why": "list"}}
    (problem,) = parse_response(200, _body({"data": INSTALLATION, "exceptions": [raw]}), {}).exceptions
    assert problem == AemoProblem(code="2024", title="Device not approved", detail="Device not approved",
                                  connection_id=100001, nsp_connection_id="C1", device_id=500001,
                                  nsp_device_id="C1-D1", raw=raw)


def test_exception_ids_nested_in_a_reference_object_are_found() -> None:
    """AEMO has not published where an exception names its equipment; a nested `source` object
    is read too, and top-level keys win over nested ones."""
    raw = {"code": 2023, "detail": "d", "source": {"connectionId": 100002, "nspConnectionId": "C2"}}
    (problem,) = parse_response(200, _body({"data": {}, "exceptions": [raw]}), {}).exceptions
    assert (problem.connection_id, problem.nsp_connection_id) == (100002, "C2")


def test_odd_entries_never_crash() -> None:
    """A string entry, a non-list `exceptions` and an error without code still parse: errors
    without a code take the HTTP status, plain strings become the detail."""
    response = parse_response(422, _body({"errors": ["bad thing", {"title": "no code"}],
                                          "exceptions": {"code": 2023}}), {})
    assert [(p.code, p.detail) for p in response.errors] == [("422", "bad thing"), ("422", "no code")]
    assert [p.code for p in response.exceptions] == ["2023"]


def test_body_and_headers_are_kept_for_paging() -> None:
    """Beyond the agreed fields, the decoded body and headers stay readable (paging keys)."""
    response = parse_response(200, _body({"data": [], "page": 2, "totalPages": 3}), {"X-Total-Pages": "3"})
    assert response.body["totalPages"] == 3
    assert response.headers["X-Total-Pages"] == "3"


def test_headers_are_case_insensitive() -> None:
    """HTTP/2 gateways send lower-case header names: `Retry-After` must still be found."""
    response = parse_response(429, b"", {"retry-after": "4", "x-transaction-id": "H9"})
    assert response.headers.get("Retry-After") == "4"
    assert response.transaction_id == "H9"
