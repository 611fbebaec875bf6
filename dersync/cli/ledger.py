"""`dersync history`, `dersync ledger show` and `dersync ledger export`: the submission ledger
for people and auditors.

History is one NMI's timeline, newest first: every request dersync sent about it, what people
did to it (re-drive, park, unpark: from the console, its API or the CLI), and with `--aemo` the
versions AEMO itself kept (`GET /installation/{nmi}/history`, one request). Export
streams a period of the ledger (flat memory, any size) with the pinned field names scripts use.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

import click

from dersync.cli.commands import open_store
from dersync.cli.main import EXIT_FAILED
from dersync.cli.output import in_zone, render
from dersync.settings import Settings
from dersync.store import Store

HISTORY_COLUMNS = ("time", "source", "ledgerId", "method", "path", "status", "transactionId", "codes", "detail")
#: Scripts rely on these names and their order (issue-pinned); `error` says why no answer came.
EXPORT_FIELDS = ("id", "sentAt", "answeredAt", "nmi", "part", "method", "path", "status", "transactionId", "codes",
                 "attempt", "passId", "bodySha256", "error")


async def do_history(settings: Settings, nmi: str, *, fmt: str, aemo: bool) -> int:
    zone = settings.zone
    async with open_store(settings, create=False) as store:
        rows = [_ours(entry) for entry in await store.ledger_for_nmi(nmi)]
        rows += [_action(action) for action in await store.actions_of(nmi)]
        if aemo:
            rows += await _aemo_versions(settings, store, nmi)
    rows.sort(key=lambda row: row["time"] or datetime.min.replace(tzinfo=zone), reverse=True)
    render(rows, fmt, zone=zone, columns=HISTORY_COLUMNS, title=f"History of {nmi} (newest first)")
    return 0


def _ours(entry: Mapping[str, Any]) -> dict[str, Any]:
    detail = entry["error"] or ""
    if entry["attempt"] > 1:
        detail = f"attempt {entry['attempt']}" + (f": {detail}" if detail else "")
    return {"time": entry["sentAt"], "source": "dersync", "ledgerId": entry["id"], "method": entry["method"],
            "path": entry["path"], "status": entry["status"], "transactionId": entry["transactionId"],
            "codes": ",".join(entry["codes"]), "detail": detail}


def _action(action: Mapping[str, Any]) -> dict[str, Any]:
    """A person's action on the NMI, as a timeline row (source `person`)."""
    detail = f"{action['kind']} by {action['actor']}" + (f": {action['reason']}" if action["reason"] else "")
    return {"time": action["at"], "source": "person", "ledgerId": None, "method": None, "path": None,
            "status": None, "transactionId": None, "codes": "", "detail": detail}


async def _aemo_versions(settings: Settings, store: Store, nmi: str) -> list[dict[str, Any]]:
    """AEMO's own versions of the installation (one GET), as timeline rows."""
    from dersync.aemo.client import AemoClient

    settings.require_aemo()
    async with AemoClient(settings) as client:
        response = await client.installation.history(nmi)
        await store.append_ledger(client.take_sent(None))  # this request is in the ledger too
    if response.status == 404:
        return []
    versions = response.data if isinstance(response.data, list) else []
    return [_version(v, response.transaction_id) for v in versions if isinstance(v, Mapping)]


def _version(version: Mapping[str, Any], transaction_id: str | None) -> dict[str, Any]:
    connections = [c for c in version.get("acConnections") or [] if isinstance(c, Mapping)]
    devices = sum(len(c.get("devices") or []) for c in connections)
    stages = sorted({str(c.get("installationStage")) for c in connections if c.get("installationStage")})
    until = version.get("recordEndDate") or "now"
    return {"time": _parse_time(version.get("recordStartDate")), "source": "aemo", "ledgerId": None,
            "method": None, "path": None, "status": None, "transactionId": transaction_id, "codes": "",
            "detail": f"AEMO's version until {until}: {len(connections)} AC connection(s), {devices} device(s)"
                      + (f", stage {'/'.join(stages)}" if stages else "")}


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


async def do_ledger_show(settings: Settings, entry_id: int) -> int:
    async with open_store(settings, create=False) as store:
        found = await store.ledger_body(entry_id)
    if found is None:
        click.echo(f"dersync: no ledger entry {entry_id}", err=True)
        return EXIT_FAILED
    entry, body = found
    if body is None:
        why = "a read carries no body" if entry["method"] == "GET" else "its body was pruned after its retention"
        click.echo(f"dersync: ledger entry {entry_id} ({entry['method']} {entry['path']}) has no body: {why}",
                   err=True)
        return EXIT_FAILED
    try:
        sys.stdout.write(json.dumps(json.loads(body), indent=2, ensure_ascii=False) + "\n")
    except ValueError:
        sys.stdout.write(body.decode("utf-8", errors="replace") + "\n")
    return 0


async def do_ledger_export(settings: Settings, start: date, end: date, fmt: str) -> int:
    """Rows sent from the start of `start` to the end of `end`, in the operator's zone."""
    zone = settings.zone
    begin, finish = _day_start(start, zone), _day_start(end + timedelta(days=1), zone)
    writer = csv.DictWriter(sys.stdout, fieldnames=list(EXPORT_FIELDS), extrasaction="ignore") if fmt == "csv" else None
    if writer is not None:
        writer.writeheader()
    async with open_store(settings, create=False) as store:
        async for batch in store.ledger_between(begin, finish):
            _write(batch, writer, zone)
            sys.stdout.flush()
    return 0


def _write(batch: Sequence[Mapping[str, Any]], writer: csv.DictWriter[str] | None, zone: tzinfo) -> None:
    for row in batch:
        shown = {field: row[field] for field in EXPORT_FIELDS}
        shown = in_zone(shown, zone)
        if writer is None:
            sys.stdout.write(json.dumps(shown, ensure_ascii=False) + "\n")
        else:
            writer.writerow({**shown, "codes": json.dumps(shown["codes"])})


def _day_start(day: date, zone: tzinfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=zone)
