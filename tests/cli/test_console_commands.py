"""The console's operations from the command line (`dersync redrive`, `park`, `unpark`, `admin
...`), as scripts run them: real subprocesses on the test's store, with or without a daemon."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sys
from pathlib import Path

import pytest

from dersync.console.passwords import verify_password
from dersync.settings import Settings
from dersync.store import Store
from dersync.sync import sync_once
from dersync.testing import load, nmi_for, record
from tests.cli.conftest import DersyncProcess, Ran, clean_environment
from tests.console.conftest import flagged_record

#: The store operations behind these commands run on both backends in tests/store and
#: tests/console; here it is the commands' contract (arguments, output, exit codes) that counts.
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


async def with_stdin(database_url: str, tmp_path: Path, stdin: str, *args: str) -> Ran:
    """`dersync ARGS` with `stdin` on its standard input (a password, as from a secret file)."""
    env = clean_environment(DERSYNC_DATABASE_URL=database_url, DERSYNC_LOG_FORMAT="json")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dersync", *args, env=env, cwd=tmp_path, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), 120)
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


async def test_console_users_are_made_from_stdin_listed_without_hashes_and_removed(
    database_url: str, tmp_path: Path, dersync: DersyncProcess, store: Store
) -> None:
    """add-user reads the password from standard input (never the command line) and stores only
    its argon2 hash; list-users prints name, role and times (JSON, or CSV with a fixed header);
    a weak password or a bad name is a usage error; remove-user of nobody exits 1."""
    ran = await with_stdin(database_url, tmp_path, "alice-long-password\n", "admin", "add-user", "alice",
                           "--role", "operator", "--password-stdin")
    assert ran.returncode == 0 and ran.stdout == "Created console user alice (role operator)\n", ran.stderr
    assert "alice-long-password" not in ran.stdout + ran.stderr
    stored = await store.credentials("alice")
    assert stored is not None and stored.password_hash.startswith("$argon2id$")
    assert await verify_password(stored.password_hash, "alice-long-password")

    listed = await dersync("admin", "list-users", "--format", "json")
    [user] = json.loads(listed.stdout)
    assert set(user) == {"name", "role", "created", "updated"} and user["role"] == "operator"
    assert "$argon2" not in listed.stdout

    for name, password in (("bob", "short\n"), ("bob smith", "a-long-enough-password\n"), ("b:ob", "x" * 20 + "\n")):
        ran = await with_stdin(database_url, tmp_path, password, "admin", "add-user", name, "--role", "viewer",
                               "--password-stdin")
        assert ran.returncode == 2 and ran.stdout == "" and password.strip() not in ran.stderr, name

    assert (await dersync("admin", "remove-user", "alice")).returncode == 0
    ran = await dersync("admin", "remove-user", "alice")
    assert ran.returncode == 1 and ran.stderr.strip().splitlines()[-1] == "dersync: no console user named alice"
    empty = await dersync("admin", "list-users", "--format", "csv")
    assert empty.stdout.splitlines() == ["name,role,created,updated"]
    assert [a["kind"] for a in await store.recent_actions()] == ["user_removed", "user_saved"]


async def test_redrive_park_and_unpark_act_on_the_store_and_are_logged(
    settings: Settings, store: Store, dersync: DersyncProcess
) -> None:
    """`redrive --level second --code 2023 --open --preview` lists the NMIs (JSON or a fixed CSV
    header) and changes nothing; `redrive --nmi` and the filter act, `park`/`unpark` too, each
    logged as cli:USER; unknown NMIs and missing selections are one-line errors."""
    await load(store, [flagged_record(i) for i in range(3)] + [record(nmi_for(i)) for i in range(3, 5)])
    await sync_once(settings, store)

    ran = await dersync("redrive", "--level", "second", "--code", "2023", "--open", "--preview", "--format", "json")
    assert ran.returncode == 0, ran.stderr
    preview = json.loads(ran.stdout)
    assert preview["count"] == 3 and [n["nmi"] for n in preview["nmis"]] == [nmi_for(i) for i in range(3)]
    ran = await dersync("redrive", "--level", "first", "--preview", "--format", "csv")
    assert ran.stdout.splitlines() == ["nmi,syncState,due,parked"]
    assert await store.count_due() == 0

    ran = await dersync("park", nmi_for(1), "--reason", "serials being fixed")
    assert ran.returncode == 0 and ran.stdout.startswith(f"Parked {nmi_for(1)}")
    ran = await dersync("redrive", "--level", "second", "--code", "2023", "--open", "--reason", "model approved",
                        "--expect", preview["fingerprint"], "--format", "json")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["count"] == 3 and json.loads(ran.stdout)["parked"] == 1
    assert await store.count_due() == 2
    assert (await dersync("unpark", nmi_for(1))).returncode == 0
    assert await store.count_due() == 3

    ran = await dersync("redrive", "--nmi", nmi_for(4), "--nmi", "8009999999")
    assert ran.returncode == 1 and ran.stderr.strip().splitlines()[-1] == "dersync: not in the store: 8009999999"
    for args in (["redrive"], ["redrive", "--nmi", nmi_for(4), "--level", "second"], ["redrive", "--code", "2023"],
                 ["park", nmi_for(4)]):
        ran = await dersync(*args)
        assert ran.returncode == 2 and ran.stdout == "", args
    actions = await store.actions_of(nmi_for(1))
    assert [a["kind"] for a in actions] == ["unpark", "redrive", "park"]
    assert all(a["actor"].startswith("cli:") for a in actions) and actions[1]["reason"] == "model approved"
    rows = list(csv.DictReader(io.StringIO((await dersync("redrive", "--nmi", nmi_for(4), "--preview", "--format",
                                                          "csv")).stdout)))
    assert rows == [{"nmi": nmi_for(4), "syncState": "synced", "due": "False", "parked": "False"}]
