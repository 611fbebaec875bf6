"""What AEMO's answers (and local validation) mean for a record: the outcome the store records.

The validation levels and what each answer means follow AEMO's documents: 400 is a JSON-schema
failure, 422 a first-level (business) failure, and a 200/201 carrying `exceptions` is a
second-level finding on data AEMO accepted but marked Conditional.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from dersync.aemo.responses import AemoProblem, AemoResponse
from dersync.store import EquipmentId, PartOutcome, ValidationException
from dersync.store.compliance import Accepted, aemo_time
from dersync.store.equipment import ids_from_installation
from dersync.sync.plan import PartNotSent, PartPlan, PartToSend
from dersync.vocabulary import AcceptanceRule, Action, Level, Part, Result

#: Which open exceptions an answer can confirm or clear (anything it does not report is gone).
AFTER_LOCAL_CHECK = frozenset({Level.LOCAL})
AFTER_REJECTION = frozenset({Level.LOCAL, Level.SCHEMA, Level.FIRST})
AFTER_ACCEPTANCE = frozenset(Level)


def without_http(plan: PartNotSent) -> PartOutcome:
    """Outcome of a part that needs no request: absent, unchanged, still rejected or invalid."""
    if plan.action == Action.INVALID:
        exceptions = [
            # The detail names the field too: tables and alerts often show the detail alone.
            ValidationException(level=Level.LOCAL, code=problem.code, field=problem.field or None,
                                detail=f"{problem.field}: {problem.message}" if problem.field else problem.message)
            for problem in plan.problems
        ]
        return PartOutcome(plan.part, Result.REJECTED, plan.content_hash, AFTER_LOCAL_CHECK, exceptions)
    if plan.action == Action.UNCHANGED:
        return PartOutcome(plan.part, Result.UNCHANGED, plan.content_hash, AFTER_LOCAL_CHECK)
    if plan.action == Action.STILL_REJECTED:
        return PartOutcome(plan.part, Result.REJECTED, plan.content_hash, AFTER_LOCAL_CHECK)
    return PartOutcome(plan.part, Result.ABSENT)


def too_large(plan: PartToSend, why: str) -> PartOutcome:
    """The body grew past AEMO's limit on the way out (AEMO's ids added): never sent."""
    exception = ValidationException(level=Level.LOCAL, code="SIZE", detail=why)
    return PartOutcome(plan.part, Result.REJECTED, plan.content_hash, AFTER_LOCAL_CHECK, [exception])


def blocked(plan: PartToSend, nmi: str) -> PartOutcome:
    """The installation cannot go before AEMO holds the NMI record it belongs to."""
    exception = ValidationException(
        level=Level.LOCAL,
        code="NMI_NOT_REGISTERED",
        detail=f"installation not sent: AEMO holds no NMI record for {nmi} yet and this pass could not "
               "create it (see the NMI details exceptions)",
    )
    # No hash is kept as rejected: once the NMI details change, the installation goes again.
    return PartOutcome(plan.part, Result.REJECTED, None, AFTER_LOCAL_CHECK, [exception])


def retry_later(plan: PartPlan) -> PartOutcome:
    """AEMO could not be reached or was busy: nothing is known, the record stays due."""
    return PartOutcome(plan.part, Result.RETRY, None, AFTER_LOCAL_CHECK)


def removed_in_store(item: EquipmentId, policy_hint: str) -> ValidationException:
    """An open exception for equipment AEMO still holds that the store no longer lists."""
    what = (f"AC connection {item.nsp_connection_id} (connectionId {item.aemo_id})" if item.nsp_device_id == ""
            else f"device {item.nsp_device_id} of AC connection {item.nsp_connection_id} (deviceId {item.aemo_id})")
    return ValidationException(
        level=Level.LOCAL, code="REMOVED_IN_STORE", field="acConnections" if item.nsp_device_id == "" else "devices",
        detail=f"AEMO holds {what}, which the store's record no longer lists: it stays active at AEMO ({policy_hint})",
        nsp_connection_id=item.nsp_connection_id, nsp_device_id=item.nsp_device_id or None,
        connection_id=item.aemo_id if item.nsp_device_id == "" else None,
        device_id=item.aemo_id if item.nsp_device_id != "" else None,
    )


def from_response(plan: PartToSend, response: AemoResponse, *, sent: dict[str, Any],
                  local: Sequence[ValidationException] = ()) -> PartOutcome:
    """Map an answer AEMO gave to a write; `sent` is the body that went out, `local` what this
    push found itself (equipment removed in the store, reported)."""
    transaction_id = response.transaction_id
    if response.ok:
        equipment = None
        exceptions: list[ValidationException] = []
        accepted: list[Accepted] = []
        if plan.part == Part.INSTALLATION:
            held = response.data if isinstance(response.data, dict) else {}
            equipment = ids_from_installation(held) or None
            exceptions = [_exception(Level.SECOND, e, transaction_id, held or sent) for e in response.exceptions]
            accepted = accepted_connections(sent, held)
        exceptions += local
        return PartOutcome(plan.part, Result.SYNCED, plan.content_hash, AFTER_ACCEPTANCE, exceptions,
                           at_aemo=True, transaction_id=transaction_id, equipment=equipment, accepted=accepted,
                           answered_at=datetime.now(UTC))
    level = Level.FIRST if response.status in (409, 422) else Level.SCHEMA
    problems = response.errors or (
        AemoProblem(code=str(response.status), title=None, detail=f"AEMO answered HTTP {response.status}"),
    )
    exceptions = [_exception(level, problem, transaction_id, sent) for problem in problems] + list(local)
    return PartOutcome(plan.part, Result.REJECTED, plan.content_hash, AFTER_REJECTION, exceptions,
                       transaction_id=transaction_id)


def accepted_connections(sent: dict[str, Any], held: dict[str, Any]) -> list[Accepted]:
    """The AC connections an accepted installation write submitted, each with the rule its first
    acceptance is judged by.

    A connection sent without AEMO's `connectionId` was added by this request: it was accepted
    when the answer came. One sent with it was held by AEMO before this request (registered
    through AEMO's portal, before dersync was deployed, or by an attempt whose answer was lost):
    it was accepted when AEMO created it, its `recordCreationDate` in the answer (read as UTC
    when it carries no offset); without a readable one, the answer's time stands in.
    """
    at_aemo = [c for c in held.get("acConnections") or [] if isinstance(c, dict)]
    by_id = {c["connectionId"]: c for c in at_aemo if c.get("connectionId") is not None}
    by_nsp = {str(c["nspConnectionId"]): c for c in at_aemo if c.get("nspConnectionId") is not None}
    found: list[Accepted] = []
    for connection in sent.get("acConnections") or []:
        if not isinstance(connection, dict) or connection.get("nspConnectionId") is None:
            continue
        nsp_connection = str(connection["nspConnectionId"])
        created = None
        if connection.get("connectionId") is not None:
            held_connection = by_id.get(connection["connectionId"]) or by_nsp.get(nsp_connection) or {}
            created = aemo_time(held_connection.get("recordCreationDate"))
        if created is None:
            found.append(Accepted(nsp_connection, AcceptanceRule.ANSWERED))
        else:
            found.append(Accepted(nsp_connection, AcceptanceRule.HELD_AT_AEMO, created))
    return found


def _exception(level: Level, problem: AemoProblem, transaction_id: str | None,
               installation: dict[str, Any]) -> ValidationException:
    nsp_connection, nsp_device = problem.nsp_connection_id, problem.nsp_device_id
    if nsp_connection is None and problem.connection_id is not None:
        nsp_connection, nsp_device = _nsp_ids(installation, problem.connection_id, problem.device_id)
    return ValidationException(
        level=level,
        code=problem.code,
        title=problem.title,
        detail=problem.detail or problem.title or f"code {problem.code}",
        transaction_id=transaction_id,
        connection_id=problem.connection_id,
        nsp_connection_id=nsp_connection,
        device_id=problem.device_id,
        nsp_device_id=nsp_device,
        raw=dict(problem.raw) if problem.raw else None,
    )


def _nsp_ids(installation: dict[str, Any], connection_id: int, device_id: int | None) -> tuple[str | None, str | None]:
    """Name the operator's own ids for equipment AEMO identified by its ids."""
    for connection in installation.get("acConnections") or []:
        if connection.get("connectionId") != connection_id:
            continue
        for device in connection.get("devices") or []:
            if device_id is not None and device.get("deviceId") == device_id:
                return connection.get("nspConnectionId"), device.get("nspDeviceId")
        return connection.get("nspConnectionId"), None
    return None, None
