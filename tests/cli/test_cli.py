"""The `dersync` command as an operator meets it: exit codes and one-line messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dersync.cli.main import cli


def invoke(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None):
    runner = CliRunner()
    base = {"DERSYNC_LOG_FORMAT": "json"}
    base.update(env or {})
    if cwd is not None:
        with runner.isolated_filesystem(temp_dir=cwd):
            return runner.invoke(cli, args, env=base, catch_exceptions=False)
    return runner.invoke(cli, args, env=base, catch_exceptions=False)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, ["DERSYNC_CLIENT_ID is not set", "DERSYNC_CLIENT_SECRET is not set", "DERSYNC_PARTICIPANT_ID is not set"]),
        ({"DERSYNC_CLIENT_ID": "a", "DERSYNC_CLIENT_SECRET": "b", "DERSYNC_PARTICIPANT_ID": "c",
          "DERSYNC_TLS_CLIENT_CERT": "/nonexistent/client.crt"},
         ["DERSYNC_TLS_CLIENT_CERT: file '/nonexistent/client.crt' does not exist"]),
        ({"DERSYNC_OAUTH_TOKEN_URL": "ftp://x"}, ["DERSYNC_OAUTH_TOKEN_URL: must be an http(s) URL"]),
        ({"DERSYNC_RATE_LIMIT_PER_MINUTE": "lots"}, ["DERSYNC_RATE_LIMIT_PER_MINUTE: Input should be a valid integer"]),
        ({"DERSYNC_DATABASE_URL": "mysql://x"}, ["DERSYNC_DATABASE_URL: must be a sqlite:/// or postgresql:// URL"]),
        ({"DERSYNC_CONFIG": "/nonexistent/dersync.toml"},
         ["DERSYNC_CONFIG: configuration file '/nonexistent/dersync.toml' does not exist"]),
    ],
)
def test_bad_configuration_exits_2_with_one_line_per_problem(tmp_path: Path, env: dict[str, str],
                                                             expected: list[str]) -> None:
    """Each configuration problem is one readable line on stderr, exit code 2, no traceback."""
    env = {"DERSYNC_DATABASE_URL": f"sqlite:///{tmp_path}/x.db", **env}
    result = invoke(["sync"], env=env, cwd=tmp_path)
    assert result.exit_code == 2
    for line in expected:
        assert line in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_store_exits_1_with_one_line(tmp_path: Path) -> None:
    """A store that cannot be reached is one line naming the store (password hidden), exit 1."""
    env = {"DERSYNC_DATABASE_URL": "postgresql://dersync:s3cret-pw@127.0.0.1:1/dersync"}
    result = invoke(["status"], env=env, cwd=tmp_path)
    assert result.exit_code == 1
    assert "unreachable" in result.stderr and "s3cret-pw" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_import_reports_bad_lines_and_stores_the_rest(tmp_path: Path) -> None:
    """Lines that are not JSON, not UTF-8 or name no NMI are reported by line number and skipped;
    every other line is stored."""
    path = tmp_path / "records.jsonl"
    good = {"nmiDetails": {"nmi": "8001000001", "substation": "Morley", "postCode": "6062", "tni": "WMOR",
                           "status": "Active"}}
    lines = [json.dumps(good).encode(), b"{not json", b"\xff\xfe bad bytes",
             json.dumps({"installation": {"x": 1}}).encode(),
             json.dumps({"nmiDetails": {"nmi": "8001000002", "status": 7}}).encode()]
    path.write_bytes(b"\n".join(lines) + b"\n")
    env = {"DERSYNC_DATABASE_URL": f"sqlite:///{tmp_path}/store.db"}

    result = invoke(["import", str(path)], env=env)
    status = invoke(["status", "--format", "json"], env=env)

    assert result.exit_code == 0
    assert "line 2: not valid JSON" in result.stderr
    assert "line 3: not UTF-8" in result.stderr
    assert "line 4: no NMI" in result.stderr
    assert "Imported 2 records" in result.stdout
    assert json.loads(status.stdout)["records"]["pending"] == 2


def test_import_accepts_a_json_array(tmp_path: Path) -> None:
    """A file holding one JSON array imports like JSON Lines."""
    path = tmp_path / "records.json"
    items = [{"nmiDetails": {"nmi": f"800100000{i}"}} for i in range(3)]
    path.write_text(json.dumps(items))
    result = invoke(["import", str(path)], env={"DERSYNC_DATABASE_URL": f"sqlite:///{tmp_path}/store.db"})
    assert result.exit_code == 0 and "Imported 3 records" in result.stdout


def test_shipped_config_file_matches_the_code_defaults() -> None:
    """config/dersync.toml shows every setting with the default the code uses."""
    from dersync.settings import Settings, load_settings

    shipped = load_settings(Path(__file__).parents[2] / "config" / "dersync.toml")
    assert shipped.model_dump() == Settings().model_dump()
    text = (Path(__file__).parents[2] / "config" / "dersync.toml").read_text()
    for name in Settings.model_fields:
        assert name in text, f"{name} is not documented in config/dersync.toml"


def test_sync_is_one_pass_and_has_no_flag_that_cannot_be_off(tmp_path: Path) -> None:
    """`dersync sync` runs one pass; `--once`, which could never be off, is gone from the help
    but still accepted, so that old scripts keep working."""
    assert "--once" not in invoke(["sync", "--help"], cwd=tmp_path).output
    env = {"DERSYNC_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    result = invoke(["sync", "--once"], env=env, cwd=tmp_path)
    assert result.exit_code == 2 and "DERSYNC_CLIENT_ID is not set" in result.stderr, result.stderr
