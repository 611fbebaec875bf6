"""AEMO's answers, read tolerantly into one shape the sync engine can rely on.

AEMO's published material (its WEM DER API Reference and OpenAPI exports; tests/data/aemo-openapi/
holds copies of the NMI and Installation exports) shows examples, not strict schemas, and leaves
several things open: a body may be wrapped (`{"transactionId", "data": X}`) or bare (the record
itself with `transactionId`/`exceptions` beside its fields); list GETs may answer with a bare JSON
list; the transaction id is spelt `transactionId` or `transactionID`; second-level `exceptions`
may sit at the top level or inside `data`, with numeric or string codes and text under `title`,
`detail` or `message`. `parse_response` accepts every variant and never raises: an empty or
non-JSON body (a gateway's HTML error page) gives `data=None`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy

#: Keys that carry AEMO's transaction id, in the order they are tried.
TRANSACTION_KEYS = ("transactionId", "transactionID", "transactionid", "TransactionId")
#: Response headers that may carry it when the body does not (the simulator sends the first).
TRANSACTION_HEADERS = ("x-transaction-id", "x-transactionid", "transactionid", "x-correlation-id")
#: Envelope keys removed from a bare object so that `data` is the record alone.
_ENVELOPE_KEYS = frozenset({*TRANSACTION_KEYS, "exceptions", "errors"})
#: Places inside one exception object where AEMO might name the equipment it is about.
_NESTED_REFERENCE_KEYS = ("source", "reference", "target", "context", "entity", "location")


@dataclass(frozen=True)
class AemoProblem:
    """One entry of `errors[]` (400/422) or `exceptions[]` (second level), normalised."""

    code: str
    title: str | None
    detail: str | None
    connection_id: int | None = None
    nsp_connection_id: str | None = None
    device_id: int | None = None
    nsp_device_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AemoResponse:
    """One HTTP answer from the NMI or Installation API, unwrapped.

    `body` (the decoded JSON as sent) and `headers` are kept beyond the agreed interface so that
    paging fields (`page`, `totalPages`) and paging headers stay readable; the engine need not
    look at them.
    """

    status: int
    transaction_id: str | None
    data: Any
    errors: tuple[AemoProblem, ...] = ()
    exceptions: tuple[AemoProblem, ...] = ()
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """AEMO accepted the request (200/201; second-level exceptions may still be listed)."""
        return 200 <= self.status < 300


def parse_response(status: int, body: bytes | str | None, headers: Mapping[str, str]) -> AemoResponse:
    """Read any documented (or plausible) AEMO body; never raises on odd content."""
    payload = decode_json(body)
    data = unwrap_data(status, payload)
    return AemoResponse(
        status=status,
        transaction_id=find_transaction_id(payload, headers),
        data=data,
        errors=tuple(problems(_errors_of(status, payload), default_code=str(status))),
        exceptions=tuple(problems(_exceptions_of(payload), default_code="")),
        body=payload,
        headers=CIMultiDictProxy(CIMultiDict(headers or {})),  # case-insensitive, as HTTP is
    )


# ---------------------------------------------------------------------------------- body parts
def decode_json(body: bytes | str | None) -> Any:
    """The JSON value of `body`, or None when it is empty or not JSON (e.g. an HTML page)."""
    if body is None:
        return None
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    body = body.strip()
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def find_transaction_id(payload: Any, headers: Mapping[str, str] | None) -> str | None:
    """AEMO support asks for this id: look at the top level, then inside `data`, then headers."""
    for holder in (payload, payload.get("data") if isinstance(payload, dict) else None):
        if isinstance(holder, dict):
            for key in TRANSACTION_KEYS:
                value = holder.get(key)
                if value not in (None, ""):
                    return str(value)
    if headers:
        lowered = {str(k).lower(): v for k, v in headers.items()}
        for name in TRANSACTION_HEADERS:
            if lowered.get(name):
                return str(lowered[name])
    return None


def unwrap_data(status: int, payload: Any) -> Any:
    """`{"data": X}` gives X; a bare object gives itself minus envelope keys; a list stays a list.

    An error answer (4xx/5xx) has no record, so its `data` is None unless it sent one explicitly.
    """
    if isinstance(payload, list):
        return payload
    if not isinstance(payload, dict):
        return None
    if "data" in payload:
        return _strip_envelope(payload["data"])
    if not 200 <= status < 300:
        return None
    return _strip_envelope(payload)


def _strip_envelope(value: Any) -> Any:
    if isinstance(value, dict) and _ENVELOPE_KEYS.intersection(value):
        return {k: v for k, v in value.items() if k not in _ENVELOPE_KEYS}
    return value


def _errors_of(status: int, payload: Any) -> list[Any]:
    """`errors[]` as documented; a gateway's lone `{"code","title","detail"}` object counts too."""
    if not isinstance(payload, dict):
        return []
    errors = payload.get("errors")
    if errors is not None:
        return _as_list(errors)
    if status >= 400 and {"code", "title", "detail", "message"}.intersection(payload):
        return [payload]
    return []


def _exceptions_of(payload: Any) -> list[Any]:
    """Second-level exceptions from the top level and from inside `data`, in that order."""
    if not isinstance(payload, dict):
        return []
    found = _as_list(payload.get("exceptions"))
    data = payload.get("data")
    if isinstance(data, dict):
        found += _as_list(data.get("exceptions"))
    return found


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


# -------------------------------------------------------------------------------------- problems
def problems(items: Iterable[Any], *, default_code: str) -> list[AemoProblem]:
    """Normalise each entry; entries that are plain strings become a detail-only problem."""
    return [to_problem(item, default_code=default_code) for item in items]


def to_problem(item: Any, *, default_code: str = "") -> AemoProblem:
    """One `errors[]`/`exceptions[]` entry as an `AemoProblem`, keeping the original in `raw`."""
    if not isinstance(item, dict):
        text = None if item is None else str(item)
        return AemoProblem(code=default_code, title=None, detail=text, raw={"value": item})
    title = _text(item.get("title"))
    detail = _text(item.get("detail")) or _text(item.get("message")) or _text(item.get("description")) or title
    refs = _references(item)
    return AemoProblem(
        code=_code(_first(item, "code", "errorCode", "exceptionCode"), default_code),
        title=title,
        detail=detail,
        connection_id=_int(refs.get("connectionId")),
        nsp_connection_id=_text(refs.get("nspConnectionId")),
        device_id=_int(refs.get("deviceId")),
        nsp_device_id=_text(refs.get("nspDeviceId")),
        raw=item,
    )


def _references(item: Mapping[str, Any]) -> dict[str, Any]:
    """Equipment ids named by an exception: top-level keys win over nested reference objects."""
    refs: dict[str, Any] = {}
    for key in _NESTED_REFERENCE_KEYS:
        nested = item.get(key)
        if isinstance(nested, dict):
            refs.update({k: v for k, v in nested.items() if v is not None})
    refs.update({k: v for k, v in item.items() if v is not None})
    return refs


def _first(item: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if item.get(key) not in (None, ""):
            return item[key]
    return None


def _code(value: Any, default: str) -> str:
    """Codes arrive as 2023, "2023" or 2023.0; always hand back "2023"."""
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None
