"""`dersync sync --dry-run`: what the next sync pass would do to each due record, without writing.

For every due record, local validation and the sync plan decide each part (as the pass would);
for parts the pass would send, AEMO's copy is read (batched `GET /installation?nmi=...`, and
`GET /nmi-details/{nmi}` for NMI details the pass would send) and compared field by field
(`compare.py`). Only GETs go out; the store is not written.

Per record: `action` is `create` (AEMO holds no copy of a part the pass would send), `update`
(AEMO's copy differs), `unchanged` (nothing to send, or AEMO already holds exactly this) or
`invalid` (local validation fails, nothing is sent); a part whose copy AEMO would not show
reads `unknown`. `requests` lists the writes the pass would
send (a PUT is sent even when AEMO already holds the same content, because the store's record of
what it pushed changed), `diff` the field differences `{part, path, store, aemo}`, `problems` the
local validation problems.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from dersync.aemo.client import AemoClient
from dersync.aemo.responses import AemoResponse
from dersync.reconcile.compare import compare_installation, compare_nmi_details
from dersync.settings import Settings
from dersync.store import Store
from dersync.sync.plan import PartPlan, PartToSend, RecordPlan, plan_record
from dersync.vocabulary import Action, Part

#: How the plan's part actions read for an admin when no request is involved.
_QUIET = {Action.ABSENT: "absent", Action.UNCHANGED: "unchanged", Action.STILL_REJECTED: "rejected",
          Action.INVALID: "invalid"}


async def plan_dry_run(settings: Settings, store: Store, client: AemoClient) -> list[dict[str, Any]]:
    """One row per due record, in NMI order (read-only: GETs to AEMO, no writes anywhere)."""
    rows: list[dict[str, Any]] = []
    limit = asyncio.Semaphore(settings.concurrency)
    async for batch in store.due_batches(settings.store_batch_size):
        plans = [plan_record(record, settings) for record in batch]
        inst_nmis = [p.nmi for p in plans if isinstance(p.installation, PartToSend)]
        held = await client.installation.find(inst_nmis) if inst_nmis else {}
        ids = await store.load_ids([nmi for nmi in inst_nmis if nmi in held])

        async def nmi_copy(nmi: str) -> AemoResponse:
            async with limit:
                return await client.nmi.get(nmi)

        nmi_plans = [p for p in plans if isinstance(p.nmi_details, PartToSend)]
        answers = await asyncio.gather(*(nmi_copy(p.nmi) for p in nmi_plans))
        nmi_held = {p.nmi: answer for p, answer in zip(nmi_plans, answers, strict=True)}
        for plan in plans:
            rows.append(_row(plan, held.get(plan.nmi), nmi_held.get(plan.nmi), ids.get(plan.nmi, {})))
    return rows


def _row(plan: RecordPlan, installation: Mapping[str, Any] | None, nmi_answer: AemoResponse | None,
         ids: Mapping[tuple[str, str], int]) -> dict[str, Any]:
    diff: list[dict[str, Any]] = []
    requests: list[str] = []
    nmi_action = _nmi_action(plan.nmi_details, nmi_answer, diff, requests)
    inst_action = _installation_action(plan.installation, installation, ids, diff, requests)
    actions = {nmi_action, inst_action}
    if "create" in actions:
        action = "create"
    elif "update" in actions:
        action = "update"
    elif "invalid" in actions:
        action = "invalid"
    else:
        action = "unchanged"
    problems = [str(p) for part in plan.parts for p in part.problems]
    return {"nmi": plan.nmi, "action": action, "nmi_details": nmi_action, "installation": inst_action,
            "requests": requests, "diff": diff, "problems": problems}


def _nmi_action(part: PartPlan, answer: AemoResponse | None, diff: list[dict[str, Any]],
                requests: list[str]) -> str:
    if not isinstance(part, PartToSend):
        return _QUIET[part.action]
    payload = part.payload
    if answer is None or answer.status == 404:
        requests.append("POST nmi-details")
        return "create"
    if not answer.ok or not isinstance(answer.data, Mapping):  # AEMO's answer says nothing usable
        requests.append("POST or PUT nmi-details")
        return "unknown"
    requests.append("PUT nmi-details")
    found = compare_nmi_details(payload, answer.data)
    diff.extend({"part": Part.NMI, **d} for d in found)
    return "update" if found else "unchanged"


def _installation_action(part: PartPlan, held: Mapping[str, Any] | None, ids: Mapping[tuple[str, str], int],
                         diff: list[dict[str, Any]], requests: list[str]) -> str:
    if not isinstance(part, PartToSend):
        return _QUIET[part.action]
    payload = part.payload
    if held is None:
        requests.append("POST installation")
        return "create"
    requests.append("PUT installation")
    found = compare_installation(payload, held, dict(ids))
    diff.extend({"part": Part.INSTALLATION, **d} for d in found)
    return "update" if found else "unchanged"
