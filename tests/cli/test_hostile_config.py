"""Hostile configuration, as an operator meets it: `dersync sync`, `dersync run` and the
commands that only use the store (`status`, `import`, `reconcile`) started as real processes with
a clean environment (no DERSYNC_* variables leak in from the test run, no config/dersync.toml in
the working folder).

Each case must give one clear `dersync: ...` line per problem on stderr, the README's exit code
(2: configuration missing or wrong; 1: the store cannot be reached) and no traceback unless
`--debug` is given. tests/cli/test_cli.py already pins `sync` for missing secrets, a
non-http token URL, a non-integer rate limit, a non-SQL store URL, a missing config file and a
missing client certificate; here are `run` for all of those kinds and the cases it lacks.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from dersync.testing import free_port

CONFIG, UNREACHABLE = 2, 1
SYNC, RUN = ("sync",), ("run",)
BOTH = SYNC + RUN
#: The other commands: each loads the settings, so each must report a bad setting as sync and run
#: do (`records.jsonl` is made by case_env).
STATUS, IMPORT, RECONCILE = ("status",), ("import records.jsonl",), ("reconcile",)
EVERY = BOTH + STATUS + IMPORT + RECONCILE
#: Identity and endpoints that pass the configuration check; AEMO itself is never reached.
VALID = {
    "DERSYNC_CLIENT_ID": "dersync-test",
    "DERSYNC_CLIENT_SECRET": "s3cret-value",
    "DERSYNC_PARTICIPANT_ID": "TESTNSP",
    "DERSYNC_OAUTH_TOKEN_URL": "http://127.0.0.1:9/oauth/v1/token",
    "DERSYNC_NMI_API_URL": "http://127.0.0.1:9/wem/v1/der-register",
    "DERSYNC_INSTALLATION_API_URL": "http://127.0.0.1:9/v2/der-register",
}


@dataclass(frozen=True)
class Case:
    id: str
    env: dict[str, str | None]  # None removes a variable from VALID; "{tmp}" is the test's folder
    exit_code: int
    lines: tuple[str, ...]  # one stderr line must contain each, and there are no other lines
    commands: tuple[str, ...] = BOTH
    skip_unless: str | None = None  # a path that must exist for the case to make sense


CASES = [
    # --- configuration: exit 2 -----------------------------------------------------------------
    # Settings that fail validation stop every command in the same place (before any command
    # code runs): each kind once, on `run` where test_cli.py already pins `sync`.
    Case("config-file-missing", {"DERSYNC_CONFIG": "/nonexistent/dersync.toml"}, CONFIG,
         ("DERSYNC_CONFIG: configuration file '/nonexistent/dersync.toml' does not exist",), commands=RUN),
    Case("rate-limit-not-a-number", {"DERSYNC_RATE_LIMIT_PER_MINUTE": "lots"}, CONFIG,
         ("DERSYNC_RATE_LIMIT_PER_MINUTE: Input should be a valid integer",), commands=RUN),
    Case("store-url-not-sql", {"DERSYNC_DATABASE_URL": "mysql://dersync@db/dersync"}, CONFIG,
         ("DERSYNC_DATABASE_URL: must be a sqlite:/// or postgresql:// URL",), commands=RUN),
    Case("sqlite-in-memory", {"DERSYNC_DATABASE_URL": "sqlite:///:memory:"}, CONFIG,
         ("DERSYNC_DATABASE_URL: names no database file: use sqlite:///PATH",), commands=RUN),
    Case("admin-port-out-of-range", {"DERSYNC_ADMIN_BIND": "127.0.0.1:70000"}, CONFIG,
         ("DERSYNC_ADMIN_BIND: must be HOST:PORT with a port up to 65535",), commands=RUN),
    Case("token-url-ftp", {"DERSYNC_OAUTH_TOKEN_URL": "ftp://x"}, CONFIG,
         ("DERSYNC_OAUTH_TOKEN_URL: must be an http(s) URL",), commands=RUN),
    Case("nmi-url-not-a-url", {"DERSYNC_NMI_API_URL": "partner.api.aemo.com.au/wem"}, CONFIG,
         ("DERSYNC_NMI_API_URL: must be an http(s) URL",), commands=SYNC),
    Case("installation-url-with-a-blank", {"DERSYNC_INSTALLATION_API_URL": "https://partner.api.aemo .com.au/v2"},
         CONFIG, ("DERSYNC_INSTALLATION_API_URL: must be an http(s) URL",), commands=RUN),
    Case("token-url-port-out-of-range", {"DERSYNC_OAUTH_TOKEN_URL": "https://api.aemo.com.au:99999/oauth/v1/token"},
         CONFIG, ("DERSYNC_OAUTH_TOKEN_URL: must be an http(s) URL",), commands=SYNC),
    Case("token-url-without-host", {"DERSYNC_OAUTH_TOKEN_URL": "https://:443/oauth/v1/token"},
         CONFIG, ("DERSYNC_OAUTH_TOKEN_URL: must be an http(s) URL",), commands=RUN),
    Case("client-cert-missing", {"DERSYNC_TLS_CLIENT_CERT": "/nonexistent/client.crt",
                                 "DERSYNC_TLS_CLIENT_KEY": "{tmp}/client.key"}, CONFIG,
         ("DERSYNC_TLS_CLIENT_CERT: file '/nonexistent/client.crt' does not exist",), commands=RUN),
    Case("client-key-missing", {"DERSYNC_TLS_CLIENT_CERT": "{tmp}/client.crt",
                                "DERSYNC_TLS_CLIENT_KEY": "/nonexistent/client.key"}, CONFIG,
         ("DERSYNC_TLS_CLIENT_KEY: file '/nonexistent/client.key' does not exist",), commands=SYNC),
    Case("ca-bundle-missing", {"DERSYNC_TLS_CA_BUNDLE": "/nonexistent/ca.pem"}, CONFIG,
         ("DERSYNC_TLS_CA_BUNDLE: file '/nonexistent/ca.pem' does not exist",), commands=RUN),
    # Also checked by the settings object while it is built (one setting, or several together),
    # so every command reports them the same way before it does any work.
    Case("time-zone-unknown", {"DERSYNC_TIMEZONE": "Mars/Olympus_Mons"}, CONFIG,
         ("DERSYNC_TIMEZONE: unknown time zone 'Mars/Olympus_Mons'",), commands=EVERY),
    Case("cron-four-fields", {"DERSYNC_RECONCILE_CRON": "0 2 * *"}, CONFIG,
         ("DERSYNC_RECONCILE_CRON: '0 2 * *' is not a crontab expression",), commands=STATUS + IMPORT + RUN),
    Case("cron-never-matches", {"DERSYNC_RECONCILE_CRON": "0 2 31 2 *"}, CONFIG,
         ("DERSYNC_RECONCILE_CRON: '0 2 31 2 *' never matches a date",), commands=RECONCILE + RUN),
    Case("client-cert-without-key", {"DERSYNC_TLS_CLIENT_CERT": "{tmp}/client.crt"}, CONFIG,
         ("DERSYNC_TLS_CLIENT_CERT: is set without DERSYNC_TLS_CLIENT_KEY",), commands=BOTH + STATUS),
    Case("client-key-without-cert", {"DERSYNC_TLS_CLIENT_KEY": "{tmp}/client.key"}, CONFIG,
         ("DERSYNC_TLS_CLIENT_KEY: is set without DERSYNC_TLS_CLIENT_CERT",), commands=IMPORT),
    Case("ca-bundle-not-pem", {"DERSYNC_TLS_CA_BUNDLE": "{tmp}/ca.pem"}, CONFIG,
         ("DERSYNC_TLS_CA_BUNDLE: '{tmp}/ca.pem' holds no usable CA certificate",), commands=BOTH + RECONCILE),
    Case("client-cert-and-key-not-pem", {"DERSYNC_TLS_CLIENT_CERT": "{tmp}/client.crt",
                                         "DERSYNC_TLS_CLIENT_KEY": "{tmp}/client.key"}, CONFIG,
         ("DERSYNC_TLS_CLIENT_CERT: cannot load '{tmp}/client.crt' with the key '{tmp}/client.key'",),
         commands=RUN + STATUS),
    # The client secret would leave in clear text: refused before anything starts, on every command.
    Case("secret-over-plain-http", {"DERSYNC_OAUTH_TOKEN_URL": "http://api.aemo.example/oauth/v1/token"}, CONFIG,
         ("DERSYNC_OAUTH_TOKEN_URL: refusing to send the client secret over plain http",), commands=BOTH + STATUS),
    # Names that are no setting (a typo would leave the default silently in force), said where
    # they are: the environment, or the file and its key.
    Case("variable-misspelt", {"DERSYNC_SYNC_INTERVALL_SECONDS": "5"}, CONFIG,
         ("DERSYNC_SYNC_INTERVALL_SECONDS is not a known setting (environment); "
          "did you mean DERSYNC_SYNC_INTERVAL_SECONDS?",), commands=STATUS + RUN),
    Case("file-key-misspelt", {"DERSYNC_CONFIG": "{tmp}/typo.toml"}, CONFIG,
         ("{tmp}/typo.toml: sync_intervall_seconds is not a known setting; did you mean sync_interval_seconds?",),
         commands=SYNC + IMPORT),
    Case("file-not-toml", {"DERSYNC_CONFIG": "{tmp}/broken.toml"}, CONFIG,
         ("{tmp}/broken.toml: is not valid TOML",), commands=RECONCILE),
    # Checked by each command that talks to AEMO before it starts work (sync: before the store;
    # run: at start).
    Case("missing-secrets", {"DERSYNC_CLIENT_ID": None, "DERSYNC_CLIENT_SECRET": None, "DERSYNC_PARTICIPANT_ID": None},
         CONFIG, ("DERSYNC_CLIENT_ID is not set", "DERSYNC_CLIENT_SECRET is not set",
                  "DERSYNC_PARTICIPANT_ID is not set"), commands=RUN),
    Case("blank-client-secret", {"DERSYNC_CLIENT_SECRET": ""}, CONFIG, ("DERSYNC_CLIENT_SECRET is not set",)),
    # Found when `run` opens its admin endpoint ({busy}: a port another process listens on).
    Case("admin-port-in-use", {"DERSYNC_ADMIN_BIND": "127.0.0.1:{busy}"}, CONFIG,
         ("DERSYNC_ADMIN_BIND: cannot listen on 127.0.0.1:{busy}: Address already in use",), commands=RUN),
    # --- the store cannot be reached: exit 1 ---------------------------------------------------
    Case("postgres-refuses-connections", {"DERSYNC_DATABASE_URL": "postgresql://dersync:pg-pass-word@127.0.0.1:1/x"},
         UNREACHABLE, ("store postgresql://dersync:***@127.0.0.1:1/x is unreachable",)),
    Case("sqlite-folder-is-a-file", {"DERSYNC_DATABASE_URL": "sqlite:///{tmp}/a-file/dersync.db"}, UNREACHABLE,
         ("store sqlite:///{tmp}/a-file/dersync.db is unreachable: cannot create folder",)),
    Case("sqlite-folder-not-creatable", {"DERSYNC_DATABASE_URL": "sqlite:////proc/dersync-test/dersync.db"},
         UNREACHABLE, ("is unreachable: cannot create folder '/proc/dersync-test'",), commands=SYNC,
         skip_unless="/proc/self"),
    Case("sqlite-folder-not-writable", {"DERSYNC_DATABASE_URL": "sqlite:////proc/dersync-test.db"}, UNREACHABLE,
         ("store sqlite:////proc/dersync-test.db is unreachable",), commands=RUN, skip_unless="/proc/self"),
]


def dersync(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m dersync ARGS` with only `env` on top of the test's non-dersync environment."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DERSYNC_")}
    clean.update(env)
    clean.setdefault("DERSYNC_ADMIN_BIND", f"127.0.0.1:{free_port()}")  # `run` gets this far in a few cases
    return subprocess.run([sys.executable, "-m", "dersync", *args], env=clean, cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def case_env(case: Case, folder: Path, busy_port: int = 0) -> dict[str, str]:
    """The case's environment, with throwaway files in `folder` (which is also the working folder)
    and `busy_port` for {busy}."""
    (folder / "a-file").write_text("not a folder")
    (folder / "ca.pem").write_text("not a certificate\n")
    (folder / "client.crt").write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
    (folder / "client.key").write_text("not a key\n")
    (folder / "records.jsonl").write_text('{"nmiDetails": {"nmi": "8001000001"}}\n')
    (folder / "typo.toml").write_text("sync_intervall_seconds = 5\n")
    (folder / "broken.toml").write_text("sync_interval_seconds = \n")
    env = {**VALID, "DERSYNC_DATABASE_URL": f"sqlite:///{folder}/store/dersync.db"}
    for name, value in case.env.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value.replace("{tmp}", str(folder)).replace("{busy}", str(busy_port))
    return env


RUNS = [(case, command) for case in CASES for command in case.commands]


def run_id(case: Case, command: str) -> str:
    return f"{case.id}-{command.split()[0]}"


@pytest.fixture(scope="module")
def busy_port() -> Iterator[int]:
    """A loopback port another process (this test) is listening on."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory,
             busy_port: int) -> dict[str, tuple[subprocess.CompletedProcess[str], Path, int]]:
    """Every case's process, started side by side (each pays the interpreter's start-up alone)."""

    def one(case: Case, command: str) -> tuple[subprocess.CompletedProcess[str], Path, int]:
        folder = tmp_path_factory.mktemp(case.id)
        return dersync(command.split(), case_env(case, folder, busy_port), folder), folder, busy_port

    wanted = [(c, cmd) for c, cmd in RUNS if not c.skip_unless or Path(c.skip_unless).exists()]
    tmp_path_factory.getbasetemp()  # made once here: threads making it at once each made their own
    with ThreadPoolExecutor(max_workers=max(2, 2 * (os.cpu_count() or 1))) as pool:
        futures = {run_id(c, cmd): pool.submit(one, c, cmd) for c, cmd in wanted}
        return {key: future.result() for key, future in futures.items()}


@pytest.mark.parametrize(("case", "command"), [pytest.param(c, cmd, id=run_id(c, cmd)) for c, cmd in RUNS])
def test_hostile_configuration_is_one_line_per_problem_and_the_documented_exit_code(
    case: Case, command: str, outcomes: dict[str, tuple[subprocess.CompletedProcess[str], Path, int]]
) -> None:
    """The command stops with the README's exit code, one `dersync:` line per problem on stderr
    naming the setting (secrets and passwords never shown), and no traceback."""
    if run_id(case, command) not in outcomes:
        pytest.skip(f"needs {case.skip_unless}")
    result, folder, busy = outcomes[run_id(case, command)]

    lines = result.stderr.strip().splitlines()
    assert result.returncode == case.exit_code, (result.returncode, result.stderr, result.stdout[-2000:])
    assert len(lines) == len(case.lines), lines
    for expected in case.lines:
        expected = expected.replace("{tmp}", str(folder)).replace("{busy}", str(busy))
        assert any(expected in line for line in lines), (expected, lines)
    prefix = "dersync: configuration: " if case.exit_code == CONFIG else "dersync: "
    assert all(line.startswith(prefix) for line in lines), lines
    output = result.stderr + result.stdout
    assert "Traceback" not in output and "unexpected" not in result.stderr
    assert "s3cret-value" not in output and "pg-pass-word" not in output


def test_debug_adds_the_traceback(tmp_path: Path) -> None:
    """With --debug the same failure also shows its traceback (and still fails)."""
    case = Case("debug", {"DERSYNC_DATABASE_URL": "sqlite:///{tmp}/a-file/dersync.db"}, UNREACHABLE, ())
    result = dersync(["--debug", "run"], case_env(case, tmp_path), tmp_path)
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "StoreUnavailable" in result.stderr


def test_a_creatable_sqlite_folder_is_created(tmp_path: Path) -> None:
    """A SQLite store in a folder that does not exist yet is no error for a command that writes
    (here `import`): the folder is made. (Read-only commands create nothing: test_read_only.py.)"""
    env = {**VALID, "DERSYNC_DATABASE_URL": f"sqlite:///{tmp_path}/new/deeper/dersync.db"}
    (tmp_path / "records.jsonl").write_text('{"nmiDetails": {"nmi": "8001000001"}}\n')
    result = dersync(["import", "records.jsonl"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "new" / "deeper" / "dersync.db").is_file()
