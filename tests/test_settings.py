"""The settings object: every check of a setting is made while it is built, so every command that
loads settings reports a bad one as one `DERSYNC_<NAME>: problem` line (the CLI adds its prefix
and exit code 2; tests/cli/test_hostile_config.py runs the commands themselves).

Each test gives load_settings a configuration file of its own, so the repository's
config/dersync.toml (in the working folder) plays no part.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dersync.errors import ConfigError
from dersync.settings import Settings, load_settings


def load(tmp_path: Path, toml: str = "", **overrides: Any) -> Settings:
    config = tmp_path / "dersync.toml"
    config.write_text(toml)
    return load_settings(config, **overrides)


def problems(tmp_path: Path, toml: str = "", **overrides: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, toml, **overrides)
    return caught.value.problems


@pytest.fixture
def not_pem(tmp_path: Path) -> Path:
    """Files that exist but are no PEM certificate or key."""
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    (tmp_path / "client.crt").write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
    (tmp_path / "client.key").write_text("not a key\n")
    return tmp_path


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"timezone": "Mars/Olympus_Mons"}, "DERSYNC_TIMEZONE: unknown time zone 'Mars/Olympus_Mons'"),
        ({"timezone": "/etc/localtime"}, "DERSYNC_TIMEZONE: unknown time zone '/etc/localtime'"),
        ({"reconcile_cron": "0 2 * *"}, "DERSYNC_RECONCILE_CRON: '0 2 * *' is not a crontab expression "
                                        "(minute hour day month weekday): Wrong number of fields"),
        ({"reconcile_cron": "61 2 * * *"}, "DERSYNC_RECONCILE_CRON: '61 2 * * *' is not a crontab expression"),
        ({"reconcile_cron": "0 2 31 2 *"}, "DERSYNC_RECONCILE_CRON: '0 2 31 2 *' never matches a date"),
        ({"oauth_token_url": "http://api.aemo.example/oauth/v1/token"},
         "DERSYNC_OAUTH_TOKEN_URL: refusing to send the client secret over plain http to 'api.aemo.example'"),
        ({"tls_ca_bundle": "{tmp}/ca.pem"}, "DERSYNC_TLS_CA_BUNDLE: '{tmp}/ca.pem' holds no usable CA certificate"),
        ({"tls_client_cert": "{tmp}/client.crt"},
         "DERSYNC_TLS_CLIENT_CERT: is set without DERSYNC_TLS_CLIENT_KEY: set both"),
        ({"tls_client_key": "{tmp}/client.key"},
         "DERSYNC_TLS_CLIENT_KEY: is set without DERSYNC_TLS_CLIENT_CERT: set both"),
        ({"tls_client_cert": "{tmp}/client.crt", "tls_client_key": "{tmp}/client.key"},
         "DERSYNC_TLS_CLIENT_CERT: cannot load '{tmp}/client.crt' with the key '{tmp}/client.key' "
         "(DERSYNC_TLS_CLIENT_KEY) as a PEM certificate and unencrypted key"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(not_pem: Path, overrides: dict[str, str], expected: str) -> None:
    """Time zone, cron, the token URL's scheme and the TLS files are checked by the settings
    object itself (not by the daemon or the token fetch), one line each."""
    values = {name: value.replace("{tmp}", str(not_pem)) for name, value in overrides.items()}
    lines = problems(not_pem, **values)
    assert len(lines) == 1, lines
    assert lines[0].startswith(expected.replace("{tmp}", str(not_pem))), lines


def test_problems_in_several_settings_are_all_reported(tmp_path: Path) -> None:
    """One run shows every bad setting at once, each on its own line, named as its variable."""
    lines = problems(tmp_path, 'timezone = "Perth"\nreconcile_cron = "@daily"\n',
                     oauth_token_url="http://aemo.example/token", rate_limit_per_minute="lots")
    assert sorted(line.split(":")[0] for line in lines) == [
        "DERSYNC_OAUTH_TOKEN_URL", "DERSYNC_RATE_LIMIT_PER_MINUTE", "DERSYNC_RECONCILE_CRON", "DERSYNC_TIMEZONE"]


@pytest.mark.parametrize("url", ["http://127.0.0.1:8085/oauth/v1/token", "http://localhost:8085/oauth/v1/token",
                                 "http://[::1]:8085/oauth/v1/token", "https://api.prod.aemo.com.au/oauth/v1/token"])
def test_plain_http_token_url_is_accepted_only_on_loopback(tmp_path: Path, url: str) -> None:
    """The simulator on loopback may be plain http (the demo, tests); anything else needs https."""
    assert load(tmp_path, oauth_token_url=url).oauth_token_url == url


def test_missing_credentials_are_left_to_the_commands_that_talk_to_aemo(tmp_path: Path) -> None:
    """Without client id, secret and participant id the settings load (status, import need none);
    problems_for_aemo names each for the commands that call AEMO."""
    settings = load(tmp_path)
    assert settings.problems_for_aemo() == [
        "DERSYNC_CLIENT_ID is not set (the API key from AEMO's API portal)",
        "DERSYNC_CLIENT_SECRET is not set (the API secret from AEMO's API portal)",
        "DERSYNC_PARTICIPANT_ID is not set (sent as X-initiatingParticipantID)",
    ]
    complete = load(tmp_path, client_id="id", client_secret="secret", participant_id="NETOP")
    assert complete.problems_for_aemo() == []
