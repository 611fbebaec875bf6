"""`dersync import` exit codes: 0 when the file was read to its end and gave records (some lines
may have been skipped), 1 when it could not be read to its end or held content but no record."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from dersync.cli.main import cli
from dersync.settings import Settings
from dersync.store import Store
from dersync.testing import nmi_for, record


async def run_import(path: Path, store_url: str) -> Result:
    """The command in a thread: it runs its own event loop."""
    env = {"DERSYNC_DATABASE_URL": store_url, "DERSYNC_LOG_FORMAT": "json", "DERSYNC_CONFIG": ""}
    return await asyncio.to_thread(CliRunner().invoke, cli, ["import", str(path)], env=env, catch_exceptions=False)


async def stored_nmis(store_url: str) -> list[str]:
    store = await Store.open(Settings(database_url=store_url).database_url, create=False)
    try:
        return [row.nmi for batch in [b async for b in store.due_batches(100)] for row in batch]
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("content", "exit_code", "stored", "last_line"),
    [
        pytest.param(bytes(range(256)) * 64, 1, 0, "holds no record", id="binary-file"),
        pytest.param(b"{not json\n[1]\n", 1, 0, "holds no record", id="every-line-skipped"),
        pytest.param(json.dumps([record(nmi_for(0)), record(nmi_for(1))]).encode()[:-300], 1, 1,
                     "was not read to its end", id="truncated-json-array"),
        pytest.param(b"", 0, 0, None, id="empty-file"),
        pytest.param(b"\n[]\n", 0, 0, None, id="empty-array"),
        pytest.param(json.dumps(record(nmi_for(0))).encode() + b"\n{not json\n", 0, 1, None,
                     id="some-lines-skipped"),
    ],
)
async def test_import_exit_code_says_whether_the_file_was_taken_in(
    tmp_path: Path, content: bytes, exit_code: int, stored: int, last_line: str | None
) -> None:
    """Exit 1 when the file could not be read to its end (a truncated JSON array) or held content
    of which nothing could be stored (a binary file, every line bad), with a last stderr line
    saying which; exit 0 when it was read to its end and every record in it was stored, even if
    other lines were skipped, or it was empty. Every stderr line is one whole message."""
    path = tmp_path / "records.jsonl"
    path.write_bytes(content)
    url = f"sqlite:///{tmp_path}/store.db"

    result = await run_import(path, url)

    assert result.exit_code == exit_code, result.output
    assert len(await stored_nmis(url)) == stored
    assert f"Imported {stored} record{'' if stored == 1 else 's'} from " in result.stdout
    assert all(line.startswith((f"{path}: ", "dersync: ", "... and ")) for line in result.stderr.splitlines()), (
        result.stderr)
    if last_line is None:
        assert "dersync:" not in result.stderr
    else:
        final = result.stderr.strip().splitlines()[-1]
        assert final.startswith(f"dersync: {path} ") and last_line in final, final
