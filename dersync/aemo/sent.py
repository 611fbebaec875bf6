"""What the client sent to AEMO, request by request: the submission ledger's rows before they are
stored.

The transport adds one `SentRequest` per HTTP attempt (answered or not: a request that got no
answer may still have landed). Whoever owns the work takes its requests and stores them: the sync
engine with the outcomes they led to (same transaction), reconciliation with its findings, a
command when it is done. Requests belong to the pass under way in their task's context
(`CURRENT_PASS`), so that sync and reconciliation sharing one client take only their own.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

#: The pass (sync_pass.id) the current task works for; set by the sync engine and reconciliation.
CURRENT_PASS: ContextVar[int | None] = ContextVar("dersync_current_pass", default=None)


@dataclass(frozen=True)
class SentBody:
    """A body as it goes on the wire, and what the ledger keeps of it."""

    wire: bytes
    headers: dict[str, str]
    sha256: str
    gzipped: bytes

    @classmethod
    def of(cls, raw: bytes, *, compress: bool) -> SentBody:
        packed = gzip.compress(raw, compresslevel=6)
        if compress:
            return cls(packed, {"Content-Encoding": "gzip"}, hashlib.sha256(raw).hexdigest(), packed)
        return cls(raw, {}, hashlib.sha256(raw).hexdigest(), packed)


class SentRequest(NamedTuple):
    """One HTTP attempt to the NMI or Installation API (the shape `dersync.store.ledger` appends).

    A named tuple, not a dataclass: one is built per request, and a frozen dataclass's
    field-by-field `__init__` cost several times a tuple's."""

    sent_at: datetime
    answered_at: datetime | None
    nmi: str | None
    api: str
    method: str
    path: str
    status: int | None
    error: str | None
    transaction_id: str | None
    codes: Sequence[str]
    attempt: int
    pass_id: int | None
    body_sha256: str | None
    body_gzip: bytes | None


class SentLog:
    """Requests not yet stored, by the pass they belong to."""

    def __init__(self) -> None:
        self._by_pass: dict[int | None, list[SentRequest]] = {}

    def add(self, request: SentRequest) -> None:
        self._by_pass.setdefault(request.pass_id, []).append(request)

    def take(self, pass_id: int | None) -> list[SentRequest]:
        """The pass's requests so far (None: those sent outside any pass), removed from the log."""
        return self._by_pass.pop(pass_id, [])

    def put_back(self, requests: Sequence[SentRequest]) -> None:
        """Requests that could not be stored (the store was away): they go with the next take."""
        for pass_id in {request.pass_id for request in requests}:
            mine = [request for request in requests if request.pass_id == pass_id]
            self._by_pass[pass_id] = mine + self._by_pass.get(pass_id, [])
