"""compose.yaml, checked without a Docker engine: it parses, takes the store's password from one
secret file only, mounts the files dersync's settings read under the names they read, and its
header names every file an operator must create.

Container paths are mapped into a temporary folder: the dersync service's secrets, as
/run/secrets/<name> files, are handed to load_settings as its secrets directory.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from dersync.settings import ENV_PREFIX, Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "compose.yaml"
SECRETS = "/run/secrets/"
#: What stands for each ${VARIABLE:?...} the file takes from the operator's shell.
SHELL = {"DERSYNC_CLIENT_ID": "dersync-client", "DERSYNC_PARTICIPANT_ID": "NETOP"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict)
    return document


def environment(service: dict[str, Any]) -> dict[str, str]:
    """The service's environment with the operator's ${VARIABLE:?message} values filled in."""
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)

    def fill(value: str) -> str:
        return re.sub(r"\$\{(\w+)(?::?[-?][^}]*)?\}", lambda m: SHELL[m.group(1)], value)

    return {name: fill(str(value)) for name, value in env.items()}


def mounted(service: dict[str, Any]) -> dict[str, str]:
    """/run/secrets/<target> -> the top-level secret it comes from, for each secret the service gets."""
    files = {}
    for item in service.get("secrets", []):
        source = item if isinstance(item, str) else item["source"]
        target = source if isinstance(item, str) else item.get("target", source)
        files[target if target.startswith("/") else SECRETS + target] = source
    return files


def setting_for_secret_file(path: str) -> str | None:
    """The setting dersync reads from a /run/secrets file (pydantic-settings names the file after the
    variable, in any case), or None."""
    name = path.removeprefix(SECRETS).lower()
    prefix = ENV_PREFIX.lower()
    field = name.removeprefix(prefix)
    return field if path.startswith(SECRETS) and name.startswith(prefix) and field in Settings.model_fields else None


def test_the_store_password_is_only_in_a_secret_file(compose: dict[str, Any]) -> None:
    """No password in any environment (nor a POSTGRES_PASSWORD the operator must repeat): the
    database server and dersync read the same file, so the password is written once."""
    assert "POSTGRES_PASSWORD" not in COMPOSE.read_text().replace("POSTGRES_PASSWORD_FILE", "")
    postgres, dersync = compose["services"]["postgres"], compose["services"]["dersync"]

    assert make_url(environment(dersync)[f"{ENV_PREFIX}DATABASE_URL"]).password is None
    server_reads = mounted(postgres)[environment(postgres)["POSTGRES_PASSWORD_FILE"]]
    dersync_reads = [source for path, source in mounted(dersync).items()
                     if setting_for_secret_file(path) == "database_password"]
    assert len(dersync_reads) == 1
    secrets = compose["secrets"]
    assert secrets[dersync_reads[0]]["file"] == secrets[server_reads]["file"]


def test_every_secret_file_dersync_gets_is_read_by_a_setting(compose: dict[str, Any]) -> None:
    """Each file mounted into the dersync service is either read by the settings themselves (named
    dersync_<setting>) or named by a DERSYNC_* variable; each /run/secrets path a variable names is
    mounted. A misnamed file would be silently ignored."""
    dersync = compose["services"]["dersync"]
    env = environment(dersync)
    files = mounted(dersync)
    named_by_variables = {value for name, value in env.items()
                          if name.startswith(ENV_PREFIX) and value.startswith(SECRETS)}
    assert {path for path in files if setting_for_secret_file(path) is None} == named_by_variables
    assert named_by_variables <= set(files)
    assert set(files.values()) <= set(compose["secrets"])
    for name in env:
        if name.startswith(ENV_PREFIX):
            assert name.removeprefix(ENV_PREFIX).lower() in Settings.model_fields, name


def test_the_header_lists_every_file_to_create(compose: dict[str, Any]) -> None:
    """The comment at the top names every file the secrets come from, so `docker compose up` does
    not stop on a missing one."""
    header = "".join(line for line in COMPOSE.read_text().splitlines(keepends=True) if line.startswith("#"))
    for secret in compose["secrets"].values():
        assert secret["file"].removeprefix("./") in header, secret["file"]


def test_dersync_in_the_container_builds_its_store_url_from_the_secret_file(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    """With the dersync service's environment and its secret files, the settings load and the
    store URL carries the password from the file (escaped, whatever it holds)."""
    password = "p@ss:w/rd with #specials"
    secrets_dir = tmp_path / "run-secrets"
    secrets_dir.mkdir()
    env = environment(compose["services"]["dersync"])
    for path in mounted(compose["services"]["dersync"]):
        content = password + "\n" if setting_for_secret_file(path) == "database_password" else "secret-value\n"
        (secrets_dir / path.removeprefix(SECRETS)).write_text(content)
    # The TLS files would need to be real certificates: tests/aemo/test_tls.py covers those.
    env = {name: value for name, value in env.items() if not value.startswith(SECRETS)}
    config = tmp_path / "dersync.toml"
    config.write_text("")

    settings = load_settings(config, env, secrets_dir=secrets_dir)

    url = make_url(settings.database_url)
    assert (url.username, url.password, url.host, url.database) == ("dersync", password, "postgres", "dersync")
    assert settings.client_secret is not None and settings.client_secret.get_secret_value() == "secret-value"
