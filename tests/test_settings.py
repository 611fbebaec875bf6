"""The settings object: every check of a setting is made while it is built, so every command that
loads settings reports a bad one as one `DERSYNC_<NAME>: problem` line (the CLI adds its prefix
and exit code 2; tests/cli/test_hostile_config.py runs the commands themselves).

Each test gives load_settings a configuration file and an environment of its own, so neither the
repository's config/dersync.toml (in the working folder) nor the test run's environment plays a
part.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dersync.errors import ConfigError
from dersync.settings import Settings, load_settings


def load_with(tmp_path: Path, toml: str = "", environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """load_settings with a file of the test's own, `environ` (nothing by default) as the
    environment and no secrets directory."""
    config = tmp_path / "dersync.toml"
    config.write_text(toml)
    return load_settings(config, environ or {}, secrets_dir=None, **overrides)


def problems_for(tmp_path: Path, toml: str = "", environ: dict[str, str] | None = None, **overrides: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_with(tmp_path, toml, environ, **overrides)
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
    lines = problems_for(not_pem, **values)
    assert len(lines) == 1, lines
    assert lines[0].startswith(expected.replace("{tmp}", str(not_pem))), lines


def test_problems_in_several_settings_are_all_reported(tmp_path: Path) -> None:
    """One run shows every bad setting at once, each on its own line, named as its variable."""
    lines = problems_for(tmp_path, 'timezone = "Perth"\nreconcile_cron = "@daily"\n',
                     oauth_token_url="http://aemo.example/token", rate_limit_per_minute="lots")
    assert sorted(line.split(":")[0] for line in lines) == [
        "DERSYNC_OAUTH_TOKEN_URL", "DERSYNC_RATE_LIMIT_PER_MINUTE", "DERSYNC_RECONCILE_CRON", "DERSYNC_TIMEZONE"]


@pytest.mark.parametrize("url", ["http://127.0.0.1:8085/oauth/v1/token", "http://localhost:8085/oauth/v1/token",
                                 "http://[::1]:8085/oauth/v1/token", "https://api.prod.aemo.com.au/oauth/v1/token"])
def test_plain_http_token_url_is_accepted_only_on_loopback(tmp_path: Path, url: str) -> None:
    """The simulator on loopback may be plain http (the demo, tests); anything else needs https."""
    assert load_with(tmp_path, oauth_token_url=url).oauth_token_url == url


def test_missing_credentials_are_left_to_the_commands_that_talk_to_aemo(tmp_path: Path) -> None:
    """Without client id, secret and participant id the settings load (status, import need none);
    problems_for_aemo names each for the commands that call AEMO."""
    settings = load_with(tmp_path)
    assert settings.problems_for_aemo() == [
        "DERSYNC_CLIENT_ID is not set (the API key from AEMO's API portal)",
        "DERSYNC_CLIENT_SECRET is not set (the API secret from AEMO's API portal)",
        "DERSYNC_PARTICIPANT_ID is not set (sent as X-initiatingParticipantID)",
    ]
    complete = load_with(tmp_path, client_id="id", client_secret="secret", participant_id="NETOP")
    assert complete.problems_for_aemo() == []


# --- names that are no setting -------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
#: Files that spell unknown DERSYNC_* names on purpose, to test that they are reported.
MISSPELLING_ON_PURPOSE = {Path(__file__).resolve(), REPO / "tests" / "cli" / "test_hostile_config.py"}


def test_a_misspelt_environment_variable_is_reported_with_the_closest_setting(tmp_path: Path) -> None:
    """A DERSYNC_* variable that is no setting is a problem naming the variable and where it is
    (not silently ignored, leaving the default in force), with the closest setting's name."""
    lines = problems_for(tmp_path, environ={"DERSYNC_SYNC_INTERVALL_SECONDS": "5", "DERSYNC_NOT_A_THING": "1",
                                            "DERSYNC_ENUMERATIONS__DEVISE_TYPES": '["Solar PV"]'})
    assert lines == [
        "DERSYNC_ENUMERATIONS__DEVISE_TYPES is not a known setting (environment); "
        "did you mean DERSYNC_ENUMERATIONS__DEVICE_TYPES?",
        "DERSYNC_NOT_A_THING is not a known setting (environment)",
        "DERSYNC_SYNC_INTERVALL_SECONDS is not a known setting (environment); "
        "did you mean DERSYNC_SYNC_INTERVAL_SECONDS?",
    ]


def test_an_unknown_key_in_the_file_names_the_file_and_the_key(tmp_path: Path) -> None:
    """The same typo in the TOML file names the file and the key as written there (dotted when
    nested), not an environment variable the operator never set."""
    lines = problems_for(tmp_path, toml='sync_intervall_seconds = 5\n[enumerations]\ndevise_types = ["Solar PV"]\n')
    config = tmp_path / "dersync.toml"
    assert lines == [
        f"{config}: sync_intervall_seconds is not a known setting; did you mean sync_interval_seconds?",
        f"{config}: enumerations.devise_types is not a known setting; did you mean enumerations.device_types?",
    ]


def test_names_are_reported_alongside_bad_values(tmp_path: Path) -> None:
    """A misspelt name and a bad value are reported together, one line each."""
    lines = problems_for(tmp_path, toml='timezone = "Perth"\n', environ={"DERSYNC_MARKT": "WEM"})
    assert [line.split(" ")[0] for line in lines] == ["DERSYNC_MARKT", "DERSYNC_TIMEZONE:"]


def test_a_file_that_is_not_toml_is_one_line_naming_it(tmp_path: Path) -> None:
    """A syntax error in the file is a configuration problem (exit 2), not an unexpected error."""
    lines = problems_for(tmp_path, toml="database_url = \n")
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{tmp_path / 'dersync.toml'}: is not valid TOML (") and "line 1" in lines[0]


def test_variables_that_are_not_settings_and_nested_settings_are_accepted(tmp_path: Path) -> None:
    """DERSYNC_CONFIG and the test and CI variables are not reported; nested settings keep their
    `__` variables, in any case."""
    environ = {"DERSYNC_TEST_POSTGRES_URL": "postgresql://postgres@127.0.0.1:1/postgres", "DERSYNC_CI_PG_PORT": "1",
               "DERSYNC_ENUMERATIONS__DEVICE_TYPES": '["Solar PV", "Storage"]', "dersync_market": "WEM2"}
    settings = load_with(tmp_path, environ=environ)
    assert settings.enumerations.device_types == ["Solar PV", "Storage"]
    assert settings.market == "WEM2"
    config = tmp_path / "named.toml"
    config.write_text("market = 'WEM3'\n")
    assert load_settings(environ={"DERSYNC_CONFIG": str(config)}, secrets_dir=None).market == "WEM3"


def test_every_dersync_variable_the_repository_uses_is_a_setting_or_listed() -> None:
    """The variables CI, the tests, the benchmarks and the container files use are settings or in
    NON_SETTING_VARIABLES, the one list of the others: none of them is ever reported as a typo."""
    import re

    from dersync.settings import ENV_PREFIX, NON_SETTING_VARIABLES, _setting_paths

    known = {ENV_PREFIX + path.upper() for path in _setting_paths(Settings, "__")} | NON_SETTING_VARIABLES
    files = [*REPO.glob(".ci/*"), *REPO.glob("benchmarks/*.py"), *REPO.glob("tests/**/*.py"),
             *REPO.glob("dersync/**/*.py"), REPO / "Dockerfile", REPO / "compose.yaml", REPO / "README.md",
             REPO / "config" / "dersync.toml"]
    used = {(name, path.relative_to(REPO).as_posix())
            for path in files if path.resolve() not in MISSPELLING_ON_PURPOSE
            for name in re.findall(r"\bDERSYNC_[A-Z0-9_]*[A-Z0-9]\b", path.read_text())}
    assert {(name, where) for name, where in used if name not in known} == set()


# --- the store's password, from a secret file ----------------------------------------------------

def test_the_database_password_file_completes_the_store_url(tmp_path: Path) -> None:
    """/run/secrets/dersync_database_password (here a folder of the test's) is added to a
    PostgreSQL URL that has none, escaped, so the password is written only in that file."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "dersync_database_password").write_text("p@ss:w/rd%\n")
    config = tmp_path / "dersync.toml"
    config.write_text("")

    settings = load_settings(config, {"DERSYNC_DATABASE_URL": "postgresql://dersync@db:5432/dersync"},
                             secrets_dir=secrets)

    assert settings.database_url == "postgresql+asyncpg://dersync:p%40ss%3Aw%2Frd%25@db:5432/dersync"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///{tmp}/dersync.db", "DERSYNC_DATABASE_PASSWORD: is for a PostgreSQL store, but "
                                       "DERSYNC_DATABASE_URL names a SQLite file"),
        ("postgresql://dersync:other@db/dersync", "DERSYNC_DATABASE_PASSWORD: is set, and DERSYNC_DATABASE_URL "
                                                  "holds a password too: keep it in one place"),
        ("postgresql://db/dersync", "DERSYNC_DATABASE_URL: names no user for DERSYNC_DATABASE_PASSWORD"),
    ],
)
def test_a_database_password_that_cannot_apply_is_reported(tmp_path: Path, url: str, expected: str) -> None:
    """A password that would be ignored, or that competes with one in the URL, is a problem
    rather than a silent choice."""
    lines = problems_for(tmp_path, database_url=url.replace("{tmp}", str(tmp_path)), database_password="pw")
    assert len(lines) == 1 and lines[0].startswith(expected), lines


def test_an_empty_database_password_is_reported(tmp_path: Path) -> None:
    """An empty password file is a mistake, not a password."""
    lines = problems_for(tmp_path, database_url="postgresql://dersync@db/dersync", database_password="")
    assert lines == ["DERSYNC_DATABASE_PASSWORD: is empty"]


# --- the console's settings ------------------------------------------------------------------------

def test_the_admin_password_comes_from_a_secret_file_and_is_never_shown(tmp_path: Path) -> None:
    """/run/secrets/dersync_admin_password (here a folder of the test's) sets the console's admin
    password, its line end dropped; the settings' repr does not show it; a short one is refused."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "dersync_admin_password").write_text("from-the-secret-file\n")
    settings = load_settings(environ={}, secrets_dir=secrets)
    assert settings.admin_password is not None
    assert settings.admin_password.get_secret_value() == "from-the-secret-file"
    assert "from-the-secret-file" not in repr(settings)
    (secrets / "dersync_admin_password").write_text("short\n")
    with pytest.raises(ConfigError) as refused:
        load_settings(environ={}, secrets_dir=secrets)
    assert refused.value.problems == ["DERSYNC_ADMIN_PASSWORD: must be at least 12 characters long"]


@pytest.mark.parametrize(("environ", "expected"), [
    ({"DERSYNC_ADMIN_AUTH_PROXY_HEADER": "X-Webauth-User"},
     "DERSYNC_ADMIN_AUTH_PROXY_TRUSTED: must name the proxy's addresses when DERSYNC_ADMIN_AUTH_PROXY_HEADER is set "
     "(the header is honoured only from them)"),
    ({"DERSYNC_ADMIN_AUTH_PROXY_TRUSTED": "10.0.0.1"},
     "DERSYNC_ADMIN_AUTH_PROXY_TRUSTED: has no effect without DERSYNC_ADMIN_AUTH_PROXY_HEADER"),
    ({"DERSYNC_ADMIN_AUTH_PROXY_HEADER": "X User", "DERSYNC_ADMIN_AUTH_PROXY_TRUSTED": "10.0.0.1"},
     "DERSYNC_ADMIN_AUTH_PROXY_HEADER: must be an HTTP header name such as X-WEBAUTH-USER, got 'X User'"),
    ({"DERSYNC_ADMIN_AUTH_PROXY_HEADER": "X-User", "DERSYNC_ADMIN_AUTH_PROXY_TRUSTED": "10.0.0.300"},
     "DERSYNC_ADMIN_AUTH_PROXY_TRUSTED: '10.0.0.300' is not an IP address or network (such as 10.0.0.5 or "
     "10.0.0.0/24)"),
    ({"DERSYNC_ADMIN_AUTH_PROXY_HEADER": "X-User", "DERSYNC_ADMIN_AUTH_PROXY_TRUSTED": "10.0.0.1",
      "DERSYNC_ADMIN_AUTH_PROXY_ROLES": "pat=admin"},
     "DERSYNC_ADMIN_AUTH_PROXY_ROLES: 'pat=admin' is not NAME=ROLE (or group:NAME=ROLE) with a role of viewer, "
     "operator"),
    ({"DERSYNC_ADMIN_SESSION_IDLE_SECONDS": "0"}, "DERSYNC_ADMIN_SESSION_IDLE_SECONDS: Input should be greater than 0"),
])
def test_console_settings_are_checked_at_load(tmp_path: Path, environ: dict[str, str], expected: str) -> None:
    """Single sign-on settings that would be unsafe or do nothing, and bad values, are one line
    each naming the variable."""
    with pytest.raises(ConfigError) as refused:
        load_with(tmp_path, environ=environ)
    assert refused.value.problems == [expected]


def test_admin_tls_needs_both_files_and_a_loadable_pair(tmp_path: Path) -> None:
    """The console's TLS certificate without its key, or files that are no PEM pair, are reported
    at load, not at the first connection."""
    cert = tmp_path / "cert.pem"
    cert.write_text("not a certificate")
    with pytest.raises(ConfigError) as refused:
        load_with(tmp_path, environ={"DERSYNC_ADMIN_TLS_CERT": str(cert)})
    assert refused.value.problems == ["DERSYNC_ADMIN_TLS_CERT: is set without DERSYNC_ADMIN_TLS_KEY: set both "
                                      "(the certificate and its key) or neither"]
    with pytest.raises(ConfigError) as refused:
        load_with(tmp_path, environ={"DERSYNC_ADMIN_TLS_CERT": str(cert), "DERSYNC_ADMIN_TLS_KEY": str(cert)})
    assert refused.value.problems[0].startswith("DERSYNC_ADMIN_TLS_CERT: cannot load")
# --- compliance deadlines ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("toml", "environ"),
    [
        ('extra_non_business_days = [2026-12-31, "2026-12-24"]\n', {}),
        ("", {"DERSYNC_EXTRA_NON_BUSINESS_DAYS": "2026-12-24, 2026-12-31"}),
        ("", {"DERSYNC_EXTRA_NON_BUSINESS_DAYS": '["2026-12-31", "2026-12-24", "2026-12-24"]'}),
    ],
    ids=["toml-list", "env-commas", "env-json"],
)
def test_extra_non_business_days_are_read_from_a_toml_list_or_a_json_or_comma_list(
    tmp_path: Path, toml: str, environ: dict[str, str]
) -> None:
    """The extra days off come as a TOML list (dates or strings) in the file, and as a JSON list
    or comma-separated dates in the environment; each becomes one date, in order."""
    from datetime import date

    settings = load_with(tmp_path, toml, environ)
    assert settings.extra_non_business_days == [date(2026, 12, 24), date(2026, 12, 31)]
    assert load_with(tmp_path, "", {"DERSYNC_EXTRA_NON_BUSINESS_DAYS": ""}).extra_non_business_days == []


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"DERSYNC_EXTRA_NON_BUSINESS_DAYS": "2026-02-30,xmas,20261224"},
         ["DERSYNC_EXTRA_NON_BUSINESS_DAYS: '2026-02-30', 'xmas', '20261224' are no dates (YYYY-MM-DD)"]),
        ({"DERSYNC_EXTRA_NON_BUSINESS_DAYS": "[2026-12-24"},
         ["DERSYNC_EXTRA_NON_BUSINESS_DAYS: '[2026-12-24' is neither a JSON list nor comma-separated dates"]),
        ({"DERSYNC_SUBMISSION_DEADLINE_BUSINESS_DAYS": "0", "DERSYNC_DEADLINE_WARNING_DAYS": "-1"},
         ["DERSYNC_SUBMISSION_DEADLINE_BUSINESS_DAYS: Input should be greater than or equal to 1",
          "DERSYNC_DEADLINE_WARNING_DAYS: Input should be greater than or equal to 0"]),
    ],
)
def test_bad_deadline_settings_are_one_line_each(tmp_path: Path, environ: dict[str, str],
                                                  expected: list[str]) -> None:
    """A value that is no date (naming every bad one), a list that cannot be read, and a
    deadline or warning figure out of range are each one `DERSYNC_<NAME>: problem` line."""
    assert problems_for(tmp_path, "", environ) == expected
