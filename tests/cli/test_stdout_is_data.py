"""stdout carries data only: every command with `--format json|csv` prints output a program can
parse, and its log events go to stderr; the daemon keeps its JSON events on stdout."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import signal
import sys
from pathlib import Path

import pytest

from dersync.mock import Simulator
from dersync.settings import Settings
from dersync.store import Store
from dersync.sync import sync_once
from dersync.testing import as_environment, connection, free_port, installation, load, nmi_details, nmi_for, record
from tests.cli.conftest import DersyncProcess, clean_environment
from tests.conftest import PARTICIPANT

#: Which stream gets the logs does not depend on the database: SQLite only.
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def events(stream: str) -> list[str]:
    """The `event` names of the JSON log lines in `stream` (other lines are ignored)."""
    names = []
    for line in stream.splitlines():
        if line.startswith("{"):
            names.append(json.loads(line)["event"])
    return names


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


async def prepared_store(settings: Settings, store: Store, simulator: Simulator) -> None:
    """Records with every kind of output: synced ones, a local rejection, a second-level flag,
    one changed since (due: the dry run has a row), one AEMO changed behind our back (drift)."""
    flagged, invalid = nmi_for(2), nmi_for(3)
    await load(store, [
        record(nmi_for(0)), record(nmi_for(1)),
        {"nmiDetails": nmi_details(flagged), "installation": installation(
            flagged, connections=[connection(f"C-{flagged}-1", maker=("Acme Solar", "X-1"))])},
        {"nmiDetails": nmi_details(invalid), "installation": installation(invalid, approvedCapacity="ten")},
    ])
    await sync_once(settings, store)
    simulator.state.tamper(nmi_for(0), "approvedCapacity", 42.0)
    await load(store, [{"installation": installation(nmi_for(1), approvedCapacity=11.0)}])


async def test_every_json_and_csv_output_parses_and_holds_the_data(
    settings: Settings, store: Store, simulator: Simulator, dersync: DersyncProcess
) -> None:
    """With JSON logs at INFO, `sync --dry-run`, `reconcile`, `drift list`, `exceptions list` (JSON
    and CSV) and `status --format json` print on stdout only what json.loads or a CSV reader
    reads back as the store's and AEMO's data; the log events of the commands that talk to AEMO
    are on stderr."""
    await prepared_store(settings, store, simulator)

    plan_json = await dersync("sync", "--dry-run", "--format", "json")
    plan_csv = await dersync("sync", "--dry-run", "--format", "csv")
    for ran in (plan_json, plan_csv):
        assert ran.returncode == 0, ran.stderr
        assert "aemo.token.fetched" in events(ran.stderr)
    [planned] = json.loads(plan_json.stdout)
    assert (planned["nmi"], planned["action"]) == (nmi_for(1), "update")
    assert planned["diff"] == [{"part": "installation", "path": "approvedCapacity", "store": 11.0, "aemo": 10.0}]
    [planned_row] = csv_rows(plan_csv.stdout)
    assert (planned_row["nmi"], planned_row["action"]) == (nmi_for(1), "update")
    assert "approvedCapacity: AEMO 10.0 / store 11.0" in planned_row["diff"]

    found_json = await dersync("reconcile", "--no-repair", "--format", "json")
    assert found_json.returncode == 0, found_json.stderr
    assert "reconcile.pass.finished" in events(found_json.stderr)
    found = {(f["nmi"], f["kind"]): f for f in json.loads(found_json.stdout)}
    assert found[(nmi_for(0), "different_at_aemo")]["fields"] == [
        {"path": "approvedCapacity", "store": 10.0, "aemo": 42.0}]
    found_csv = await dersync("reconcile", "--no-repair", "--format", "csv")
    assert found_csv.returncode == 0, found_csv.stderr
    assert {(r["nmi"], r["kind"]) for r in csv_rows(found_csv.stdout)} == set(found)

    _last, drift = await store.latest_drift()
    listed_json = await dersync("drift", "list", "--format", "json")
    listed_csv = await dersync("drift", "list", "--format", "csv")
    assert [(r["nmi"], r["kind"], r["fields"]) for r in json.loads(listed_json.stdout)] == [
        (r["nmi"], r["kind"], r["fields"]) for r in drift]
    assert [(r["nmi"], r["kind"]) for r in csv_rows(listed_csv.stdout)] == [(r["nmi"], r["kind"]) for r in drift]

    exceptions = await store.list_exceptions()
    assert {e["level"] for e in exceptions} == {"local", "second"}
    expected = [(e["nmi"], e["level"], e["code"], e["transactionId"] or "") for e in exceptions]
    shown_json = await dersync("exceptions", "list", "--format", "json")
    shown_csv = await dersync("exceptions", "list", "--format", "csv")
    shown = json.loads(shown_json.stdout)
    assert [(e["nmi"], e["level"], e["code"], e["transactionId"] or "") for e in shown] == expected
    assert [(e["nmi"], e["level"], e["code"], e["transactionId"]) for e in csv_rows(shown_csv.stdout)] == expected

    status = await dersync("status", "--format", "json")
    assert status.returncode == 0, status.stderr
    counts = json.loads(status.stdout)
    stored = await store.status()
    assert (counts["records"], counts["due"], counts["open_exceptions"]) == (
        stored["records"], stored["due"], stored["open_exceptions"])


async def test_the_daemon_keeps_its_json_events_on_stdout(database_url: str, simulator: Simulator,
                                                        tmp_path: Path) -> None:
    """`dersync run` (containers collect stdout) writes its JSON events to stdout, not stderr."""
    env = clean_environment(**{
        "DERSYNC_PARTICIPANT_ID": PARTICIPANT, **as_environment(simulator.client_settings()),
        "DERSYNC_DATABASE_URL": database_url, "DERSYNC_LOG_FORMAT": "json",
        "DERSYNC_ADMIN_BIND": f"127.0.0.1:{free_port()}"})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dersync", "run", env=env, cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        seen: list[str] = []
        while "daemon.ready" not in seen:
            line = await asyncio.wait_for(process.stdout.readline(), 60)
            assert line, f"stdout ended before daemon.ready; events seen: {seen}"
            seen += events(line.decode())
        process.send_signal(signal.SIGTERM)
        rest, err = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert "daemon.stopped" in events(rest.decode())
    assert events(err.decode()) == []
