"""The reconciliation commands as an operator runs them: `dersync reconcile`, `dersync drift list`
and `dersync sync --dry-run`, against the simulator and the test store."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from click.testing import CliRunner, Result

from dersync.cli.main import cli
from dersync.mock import Simulator
from dersync.settings import Settings
from dersync.store import Store
from dersync.sync import sync_once
from dersync.testing import installation, load, nmi_for, record


def environment(settings: Settings) -> dict[str, str]:
    assert settings.client_secret is not None
    return {
        "DERSYNC_DATABASE_URL": settings.database_url,
        "DERSYNC_OAUTH_TOKEN_URL": settings.oauth_token_url,
        "DERSYNC_NMI_API_URL": settings.nmi_api_url,
        "DERSYNC_INSTALLATION_API_URL": settings.installation_api_url,
        "DERSYNC_CLIENT_ID": settings.client_id or "",
        "DERSYNC_CLIENT_SECRET": settings.client_secret.get_secret_value(),
        "DERSYNC_PARTICIPANT_ID": settings.participant_id or "",
        "DERSYNC_LOG_FORMAT": "json",
        "DERSYNC_LOG_LEVEL": "WARNING",  # JSON logs share stdout; keep the command's output alone
        "DERSYNC_CONFIG": "",
    }


async def invoke(args: list[str], env: dict[str, str]) -> Result:
    """Run the command in a thread, so the simulator on this event loop keeps answering."""
    return await asyncio.to_thread(CliRunner().invoke, cli, args, env=env, catch_exceptions=False)


async def test_reconcile_then_drift_list(settings: Settings, store: Store, simulator: Simulator) -> None:
    """`dersync reconcile` prints the findings and exits 0; `dersync drift list` shows the same
    findings from the store afterwards, as JSON, CSV or a table."""
    nmi = nmi_for(1)
    await load(store, [record(nmi_for(0)), record(nmi)])
    await sync_once(settings, store)
    simulator.state.tamper(nmi, "approvedCapacity", 42.0)
    env = environment(settings)

    ran = await invoke(["reconcile", "--format", "json", "--no-repair"], env)
    assert ran.exit_code == 0, ran.output
    found = json.loads(ran.stdout)
    assert [(f["nmi"], f["kind"], f["part"]) for f in found] == [(nmi, "different_at_aemo", "installation")]
    assert found[0]["fields"] == [{"path": "approvedCapacity", "store": 10.0, "aemo": 42.0}]
    assert "1 different" in ran.stderr

    listed = await invoke(["drift", "list", "--format", "json"], env)
    assert listed.exit_code == 0
    rows: list[dict[str, Any]] = json.loads(listed.stdout)
    assert [(r["nmi"], r["kind"], r["fields"]) for r in rows] == [(nmi, "different_at_aemo", found[0]["fields"])]

    csv_out = await invoke(["drift", "list", "--format", "csv", "--kind", "different_at_aemo"], env)
    assert csv_out.stdout.splitlines()[0] == "nmi,kind,part,fields,detail,found_at,reconcile_pass_id"
    assert "approvedCapacity: AEMO 42.0 / store 10.0" in csv_out.stdout
    table = await invoke(["drift", "list"], env)
    assert table.exit_code == 0 and nmi in table.stdout


async def test_sync_dry_run_prints_the_plan(settings: Settings, store: Store, simulator: Simulator) -> None:
    """`dersync sync --dry-run` prints the plan with the diff and sends no write."""
    nmi = nmi_for(2)
    await load(store, [record(nmi)])
    await sync_once(settings, store)
    await load(store, [{"installation": installation(nmi, approvedCapacity=11.0)}])
    simulator.state.reset_counters()

    result = await invoke(["sync", "--dry-run", "--format", "json"], environment(settings))

    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    assert row["nmi"] == nmi and row["action"] == "update"
    assert row["diff"] == [{"part": "installation", "path": "approvedCapacity", "store": 11.0, "aemo": 10.0}]
    table = await invoke(["sync", "--dry-run"], environment(settings))
    assert table.exit_code == 0 and "1 due record: 1 update" in table.stdout
    assert simulator.state.count(method="PUT") == 0
    assert simulator.state.installations[nmi]["approvedCapacity"] == 10.0
    assert (await store.status())["due"] == 1
