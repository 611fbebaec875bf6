"""The one settings object.

Every setting can come from `config/dersync.toml` (or the file named by `DERSYNC_CONFIG`), and an
environment variable `DERSYNC_<NAME>` overrides the file; a container's secrets directory is read
last. Code below the CLI never reads the environment: it is handed a `Settings`.

Every check of a setting's value is made here, while the settings are built, so that every
command reports a bad setting the same way (one `DERSYNC_<NAME>: problem` line each) before it
does any work: field validators check one setting, the model validator settings that are only
meaningful together. What some commands need on top of valid settings (the AEMO credentials, for
the commands that talk to AEMO) is `problems_for_aemo`.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re
import ssl
import sys
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from dersync.errors import ConfigError
from dersync.vocabulary import RemovedEquipment, Role, values

ENV_PREFIX = "DERSYNC_"
DEFAULT_CONFIG_FILE = Path("config/dersync.toml")
DEFAULT_SECRETS_DIR = Path("/run/secrets")
#: AEMO's documented payload limit (10 MB per request or response, compressed or not).
MAX_PAYLOAD_BYTES = 10_000_000

#: A day as the settings spell it (date.fromisoformat alone would also take 20261224 or 2026-W52-4).
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")

#: The error type of the model validator's problems; its context lists them (setting, problem).
_TOGETHER = "dersync_settings_together"

#: DERSYNC_* environment variables that are not settings, and so are never reported as misspelt
#: ones. This is the one list of them: add a variable here when the project starts using one.
NON_SETTING_VARIABLES = frozenset({
    "DERSYNC_CONFIG",  # names the settings file (load_settings)
    "DERSYNC_TEST_POSTGRES_URL",  # tests: the PostgreSQL server of the store tests (tests/conftest.py)
    "DERSYNC_CI_PG_PORT",  # CI: the port of the PostgreSQL server it starts (.ci/postgres.sh)
    "DERSYNC_CONSOLE_SCREENSHOT",  # tests: where the browser test saves the README's screenshot
})

#: A console password (DERSYNC_ADMIN_PASSWORD, `dersync admin add-user`) has at least this many characters.
MIN_PASSWORD_LENGTH = 12
#: An HTTP header name (RFC 9110 token).
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


@dataclass
class _Loading:
    """Where one `load_settings` call reads from. pydantic-settings builds the sources inside the
    `Settings` constructor, where no argument reaches them: hence a context variable."""

    config_file: Path | None
    environ: Mapping[str, str]
    secrets_dir: Path | None
    #: What the sources found wrong with the file or the environment themselves (names that are
    #: no setting, a file that is not TOML), one line each, naming where.
    problems: list[str] = field(default_factory=list)


_loading: ContextVar[_Loading | None] = ContextVar("dersync_settings_loading", default=None)


class Enumerations(BaseModel):
    """AEMO's documented value lists, kept in configuration so a value AEMO adds needs no release."""

    equipment_types: list[str] = [
        "Inverter",
        "Other",
        "Battery Storage Inverter",
        "Controllable Load",
        "Hybrid Inverter",
        "EVSE V2G",
        "EVSE no V2G",
        "Rotating Machine",
        "Solar PV Inverter",
    ]
    device_types: list[str] = [
        "Solar PV",
        "Storage",
        "Controlled load",
        "Co Tri-generation",
        "Fossil",
        "Liquid fuel",
        "Other",
        "Small hydro / Hydro",
        "Small wind / Wind",
        "Waste to energy",
        "Unknown_Device",
    ]
    installation_stages: list[str] = ["Confirmed", "Conditional"]


class Settings(BaseSettings):
    """Everything an operator can set. Field names map to `DERSYNC_<FIELD>` in upper case."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )

    # --- store
    database_url: str = "sqlite:///./dersync.db"
    #: PostgreSQL's password, kept out of the URL: in a container, the same secret file the
    #: database server reads (`/run/secrets/dersync_database_password`), so it is written once.
    database_password: SecretStr | None = None
    sqlite_busy_timeout_seconds: float = Field(default=30.0, gt=0)

    # --- AEMO endpoints (pre-production by default: production is an explicit choice)
    oauth_token_url: str = "https://api.preprod.aemo.com.au/oauth/v1/token"
    nmi_api_url: str = "https://partner.api.preprod.aemo.com.au/wem/v1/der-register"
    installation_api_url: str = "https://partner.api.preprod.aemo.com.au/v2/der-register"

    # --- identity
    client_id: str | None = None
    client_secret: SecretStr | None = None
    participant_id: str | None = None
    market: str = "WEM"
    api_key: SecretStr | None = Field(default=None, description="optional APIM x-apikey header")

    # --- mutual TLS
    tls_client_cert: Path | None = None
    tls_client_key: Path | None = None
    tls_ca_bundle: Path | None = None
    #: The daemon warns at start when the client certificate expires within this many days (it
    #: also exposes the expiry on /metrics, for an alert).
    tls_client_cert_warning_days: int = Field(default=30, ge=1, le=365)

    # --- transport
    rate_limit_per_minute: int = Field(default=6000, ge=1)
    request_timeout_seconds: float = Field(default=30.0, gt=0)
    concurrency: int = Field(default=16, ge=1, le=512)
    max_retries: int = Field(default=5, ge=0, le=50)
    retry_backoff_initial_seconds: float = Field(default=0.5, gt=0)
    retry_backoff_max_seconds: float = Field(default=30.0, gt=0)
    retry_jitter: bool = True
    token_refresh_margin_seconds: float = Field(default=120.0, ge=0)
    compress_requests: bool = True
    lookup_batch_size: int = Field(default=100, ge=1, le=100)
    max_payload_bytes: int = Field(default=MAX_PAYLOAD_BYTES, ge=1, le=MAX_PAYLOAD_BYTES)

    # --- sync engine
    store_batch_size: int = Field(default=500, ge=1)

    # --- logs
    log_format: Literal["json", "console"] | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # --- daemon and admin surface
    sync_interval_seconds: float = Field(default=300.0, gt=0)
    reconcile_cron: str = "0 2 * * *"
    timezone: str = "Australia/Perth"
    reconcile_repair: bool = True
    admin_bind: str = "127.0.0.1:8080"
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    failover_seconds: float = Field(default=30.0, ge=1)

    # --- the operator console (dersync.console), served by `dersync run` on admin_bind
    admin_console: bool = True
    #: The password of the console user `admin` (role operator), set at every daemon start: a
    #: container starts usable from a secret file (`/run/secrets/dersync_admin_password`).
    admin_password: SecretStr | None = None
    admin_session_lifetime_seconds: float = Field(default=43200.0, gt=0)
    admin_session_idle_seconds: float = Field(default=3600.0, gt=0)
    admin_signin_failures_per_user: int = Field(default=5, ge=1)
    admin_signin_failures_per_address: int = Field(default=20, ge=1)
    admin_signin_window_seconds: float = Field(default=900.0, gt=0)
    admin_signin_failure_delay_seconds: float = Field(default=1.0, ge=0, le=30)
    #: Trusted-header sign-in behind a single sign-on proxy (off unless a header is named).
    admin_auth_proxy_header: str | None = None
    #: Addresses or networks (comma-separated) whose requests may carry that header.
    admin_auth_proxy_trusted: str = ""
    #: `NAME=ROLE` pairs (comma-separated); `group:NAME=ROLE` maps a group of the groups header.
    admin_auth_proxy_roles: str = ""
    admin_auth_proxy_groups_header: str | None = None
    #: Serve the admin endpoints and the console over HTTPS with this certificate and key.
    admin_tls_cert: Path | None = None
    admin_tls_key: Path | None = None
    # --- the DER lifecycle: equipment the store no longer lists
    removed_equipment: RemovedEquipment = RemovedEquipment.REPORT
    decommissioned_status: str = Field(default="Decommissioned", min_length=1)

    # --- the submission ledger
    ledger_retention_days: int = Field(default=2555, ge=1)
    ledger_body_retention_days: int = Field(default=400, ge=0)

    # --- compliance deadlines (dersync.compliance)
    #: Business days after the commissioning date within which AEMO must have accepted an AC
    #: connection (the NEM's figure; set the WEM procedure's).
    submission_deadline_business_days: int = Field(default=20, ge=1, le=260)
    #: Days that are no business days beyond weekends and WA public holidays (the calendar of the
    #: `holidays` package): a TOML list of dates, or in the environment a JSON list or commas.
    extra_non_business_days: Annotated[list[date], NoDecode] = []
    #: A connection due within this many business days counts in dersync_compliance_due_soon.
    deadline_warning_days: int = Field(default=5, ge=0)

    enumerations: Enumerations = Enumerations()

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        """Operators write plain SQLAlchemy URLs; the store needs the asyncio drivers."""
        for plain, driver in (
            ("sqlite://", "sqlite+aiosqlite://"),
            ("postgresql://", "postgresql+asyncpg://"),
            ("postgres://", "postgresql+asyncpg://"),
        ):
            if value.startswith(plain):
                value = driver + value[len(plain) :]
                break
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        if value.startswith("sqlite") and _sqlite_in_memory(value):
            raise ValueError("names no database file: use sqlite:///PATH (an in-memory store would forget "
                             "what was sent to AEMO at every restart)")
        return value

    @field_validator("oauth_token_url", "nmi_api_url", "installation_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        """An absolute http(s) URL with a host (and a valid port, no blanks): checked here so a
        typo is a configuration error at start, not a failure deep inside a request."""
        if not value.startswith(("https://", "http://")) or len(value) < 10 or _bad_url(value):
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        return value.rstrip("/")

    @field_validator("oauth_token_url")
    @classmethod
    def _secret_never_in_clear_text(cls, value: str) -> str:
        """The client secret travels to this URL: plain http would show it to anyone on the path.
        Loopback is the exception, for the simulator (`dersync demo`, tests)."""
        parts = urlsplit(value)
        if parts.scheme != "https" and not is_loopback_host(parts.hostname):
            raise ValueError(f"refusing to send the client secret over plain http to {parts.hostname!r}; use https "
                             "(plain http is allowed only on loopback, for the simulator)")
        return value

    @field_validator("tls_client_cert", "tls_client_key", "tls_ca_bundle", "admin_tls_cert", "admin_tls_key")
    @classmethod
    def _file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"file {str(value)!r} does not exist")
        return value

    @field_validator("tls_ca_bundle")
    @classmethod
    def _usable_ca_bundle(cls, value: Path | None) -> Path | None:
        """A bundle that is not PEM would otherwise surface as a TLS failure on the first request."""
        if value is not None:
            try:
                ssl.create_default_context(cafile=str(value))
            except (ssl.SSLError, OSError, ValueError) as exc:
                raise ValueError(f"{str(value)!r} holds no usable CA certificate ({_reason(exc)})") from None
        return value

    @field_validator("admin_bind")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"must be HOST:PORT with a port up to 65535, got {value!r}")
        return value

    @field_validator("admin_password")
    @classmethod
    def _strong_enough(cls, value: SecretStr | None) -> SecretStr | None:
        """Checked here so a weak secret file stops the daemon at start, not at the first sign-in."""
        if value is not None and len(value.get_secret_value()) < MIN_PASSWORD_LENGTH:
            raise ValueError(f"must be at least {MIN_PASSWORD_LENGTH} characters long")
        return value

    @field_validator("admin_auth_proxy_header", "admin_auth_proxy_groups_header")
    @classmethod
    def _header_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value or not _HEADER_NAME.match(value):
            raise ValueError(f"must be an HTTP header name such as X-WEBAUTH-USER, got {value!r}")
        return value

    @field_validator("admin_auth_proxy_trusted")
    @classmethod
    def _networks(cls, value: str) -> str:
        for item in _items(value):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network (such as 10.0.0.5 or "
                                 "10.0.0.0/24)") from None
        return value

    @field_validator("admin_auth_proxy_roles")
    @classmethod
    def _role_map(cls, value: str) -> str:
        for item in _items(value):
            name, equals, role = item.rpartition("=")
            if not equals or not name.strip() or role.strip() not in values(Role):
                raise ValueError(f"{item!r} is not NAME=ROLE (or group:NAME=ROLE) with a role of "
                                 f"{', '.join(values(Role))}")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        """The reconciliation schedule is read in this zone; an unknown name would stop the daemon
        only when it builds its scheduler, and other commands would never notice."""
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as 'Australia/Perth')") from None
        return value

    @field_validator("extra_non_business_days", mode="before")
    @classmethod
    def _list_of_days(cls, value: Any) -> list[date]:
        """Dates as YYYY-MM-DD: a TOML list (of dates or strings), or from the environment a JSON
        list or a comma-separated list. Every value that is no such date is named in one line."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    value = json.loads(text)
                except ValueError:
                    raise ValueError(f"{text!r} is neither a JSON list nor comma-separated dates") from None
            else:
                value = [item for item in (part.strip() for part in text.split(",")) if item]
        if not isinstance(value, list | tuple):
            raise ValueError("must be a list of dates (YYYY-MM-DD)")
        days: set[date] = set()
        bad: list[str] = []
        for item in value:
            if isinstance(item, date) and not isinstance(item, datetime):
                days.add(item)
            elif isinstance(item, str) and _ISO_DAY.fullmatch(item.strip()):
                try:
                    days.add(date.fromisoformat(item.strip()))
                except ValueError:
                    bad.append(repr(item))
            else:
                bad.append(repr(item if isinstance(item, str) else str(item)))
        if bad:
            raise ValueError(f"{', '.join(bad)} {'is no date' if len(bad) == 1 else 'are no dates'} (YYYY-MM-DD)")
        return sorted(days)

    @field_validator("reconcile_cron")
    @classmethod
    def _crontab(cls, value: str) -> str:
        """The expression APScheduler will run reconciliation on; one that never matches a date
        (31 February) would silently never reconcile."""
        from apscheduler.triggers.cron import CronTrigger

        try:
            trigger = CronTrigger.from_crontab(value, timezone=UTC)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a crontab expression (minute hour day month weekday): {exc}") from None
        if trigger.get_next_fire_time(None, datetime.now(UTC)) is None:
            raise ValueError(f"{value!r} never matches a date")
        return value

    @model_validator(mode="after")
    def _settings_that_go_together(self) -> Settings:
        """Checks of several settings at once. Pydantic runs this only when every field is valid,
        so a missing file is reported once, by its field, and not again here."""
        problems = (self._tls_client_problems() + self._database_password_problems() + self._ledger_problems()
                    + self._auth_proxy_problems() + self._admin_tls_problems())
        if problems:
            summary = "; ".join(f"{name}: {problem}" for name, problem in problems)
            raise PydanticCustomError(_TOGETHER, "{summary}", {"summary": summary, "problems": problems})
        if self.database_password is not None:
            from sqlalchemy.engine import make_url

            # The store is opened with one URL; SQLAlchemy escapes what the password holds.
            url = make_url(self.database_url).set(password=self.database_password.get_secret_value())
            self.database_url = url.render_as_string(hide_password=False)
        return self

    def _ledger_problems(self) -> list[tuple[str, str]]:
        """Bodies go before their rows: a longer body retention would keep nothing more."""
        if self.ledger_body_retention_days > self.ledger_retention_days:
            return [("ledger_body_retention_days", f"{self.ledger_body_retention_days} is longer than "
                                                   f"{ENV_PREFIX}LEDGER_RETENTION_DAYS ({self.ledger_retention_days}): "
                                                   "a body is pruned with its row at the latest")]
        return []

    def _database_password_problems(self) -> list[tuple[str, str]]:
        """A password file that would be ignored, or that disagrees with a password in the URL,
        is a mistake to report rather than to resolve by picking one."""
        if self.database_password is None:
            return []
        if not self.database_password.get_secret_value():
            return [("database_password", "is empty")]
        if self.is_sqlite:
            return [("database_password", f"is for a PostgreSQL store, but {ENV_PREFIX}DATABASE_URL names a "
                                          "SQLite file")]
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(self.database_url)
        except (ArgumentError, ValueError) as exc:
            return [("database_url", f"cannot be read as a URL ({exc})")]
        if url.password is not None:
            return [("database_password", f"is set, and {ENV_PREFIX}DATABASE_URL holds a password too: keep "
                                          "it in one place")]
        if not url.username:
            return [("database_url", f"names no user for {ENV_PREFIX}DATABASE_PASSWORD: write "
                                     "postgresql://USER@HOST:PORT/DATABASE")]
        return []

    def _auth_proxy_problems(self) -> list[tuple[str, str]]:
        """Trusted-header sign-in needs both the header and the proxy's addresses: a header
        honoured from anywhere would let any client name any user."""
        header = self.admin_auth_proxy_header
        if header is not None and not _items(self.admin_auth_proxy_trusted):
            return [("admin_auth_proxy_trusted", f"must name the proxy's addresses when {ENV_PREFIX}"
                                                 "ADMIN_AUTH_PROXY_HEADER is set (the header is honoured "
                                                 "only from them)")]
        if header is None:
            unused = [name for name in ("admin_auth_proxy_trusted", "admin_auth_proxy_roles")
                      if _items(getattr(self, name))]
            if self.admin_auth_proxy_groups_header is not None:
                unused.append("admin_auth_proxy_groups_header")
            return [(name, f"has no effect without {ENV_PREFIX}ADMIN_AUTH_PROXY_HEADER") for name in unused]
        return []

    def _admin_tls_problems(self) -> list[tuple[str, str]]:
        cert, key = self.admin_tls_cert, self.admin_tls_key
        if cert is None and key is None:
            return []
        both = "set both (the certificate and its key) or neither"
        if key is None:
            return [("admin_tls_cert", f"is set without {ENV_PREFIX}ADMIN_TLS_KEY: {both}")]
        if cert is None:
            return [("admin_tls_key", f"is set without {ENV_PREFIX}ADMIN_TLS_CERT: {both}")]
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(str(cert), str(key),
                                                                                password=lambda: b"")
        except (ssl.SSLError, OSError, ValueError) as exc:
            return [("admin_tls_cert", f"cannot load {str(cert)!r} with the key {str(key)!r} "
                                       f"({ENV_PREFIX}ADMIN_TLS_KEY) as a PEM certificate and unencrypted key "
                                       f"({_reason(exc)})")]
        return []

    def _tls_client_problems(self) -> list[tuple[str, str]]:
        """The client certificate and its key: both or neither, and loadable together (PEM, an
        unencrypted key that matches the certificate), found at start rather than at the first
        TLS handshake."""
        cert, key = self.tls_client_cert, self.tls_client_key
        if cert is None and key is None:
            return []
        both = "set both (the client certificate and its key) or neither"
        if key is None:
            return [("tls_client_cert", f"is set without {ENV_PREFIX}TLS_CLIENT_KEY: {both}")]
        if cert is None:
            return [("tls_client_key", f"is set without {ENV_PREFIX}TLS_CLIENT_CERT: {both}")]
        try:
            ssl.create_default_context().load_cert_chain(str(cert), str(key), password=lambda: b"")
        except (ssl.SSLError, OSError, ValueError) as exc:
            return [("tls_client_cert", f"cannot load {str(cert)!r} with the key {str(key)!r} "
                                        f"({ENV_PREFIX}TLS_CLIENT_KEY) as a PEM certificate and unencrypted key "
                                        f"({_reason(exc)})")]
        return []

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Explicit arguments, then environment, then the TOML file, then container secrets.

        Built directly (`Settings(...)`, as tests and the simulator do), it reads the process's
        environment and secrets and no file, and names that are no setting go unreported: that
        report is `load_settings`'s, the one way commands load settings.
        """
        loading = _loading.get() or _Loading(config_file=None, environ=os.environ, secrets_dir=DEFAULT_SECRETS_DIR)
        sources: list[PydanticBaseSettingsSource] = [init_settings, _EnvSource(settings_cls, loading)]
        if loading.config_file is not None:
            sources.append(_TomlSource(settings_cls, loading))
        if loading.secrets_dir is not None and loading.secrets_dir.is_dir():
            sources.append(SecretsSettingsSource(settings_cls, secrets_dir=loading.secrets_dir))
        return tuple(sources)

    # --- derived views -------------------------------------------------------------------------

    @property
    def zone(self) -> ZoneInfo:
        """The zone operators read times in (checked when the settings were loaded)."""
        return ZoneInfo(self.timezone)

    @property
    def admin_host(self) -> str:
        return self.admin_bind.rpartition(":")[0]

    @property
    def admin_port(self) -> int:
        return int(self.admin_bind.rpartition(":")[2])

    @property
    def admin_tls(self) -> ssl.SSLContext | None:
        """The admin endpoints' server TLS context, when a certificate is set (checked at load)."""
        if self.admin_tls_cert is None or self.admin_tls_key is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.admin_tls_cert), str(self.admin_tls_key))
        return context

    @property
    def auth_proxy_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(item, strict=False) for item in _items(self.admin_auth_proxy_trusted)]

    @property
    def auth_proxy_role_map(self) -> dict[str, str]:
        """{user name or `group:NAME`: role} from `admin_auth_proxy_roles` (checked at load)."""
        pairs = (item.rpartition("=") for item in _items(self.admin_auth_proxy_roles))
        return {name.strip(): role.strip() for name, _equals, role in pairs}

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def resolved_log_format(self) -> Literal["json", "console"]:
        """JSON for containers and pipes, console for a person at a terminal."""
        if self.log_format is not None:
            return self.log_format
        return "console" if sys.stdout.isatty() else "json"

    def problems_for_aemo(self) -> list[str]:
        """What is missing before a command may talk to AEMO, one line per problem. Not part of
        validation: the commands that only use the store need no credentials."""
        problems = []
        if not self.client_id:
            problems.append(f"{ENV_PREFIX}CLIENT_ID is not set (the API key from AEMO's API portal)")
        if self.client_secret is None or not self.client_secret.get_secret_value():
            problems.append(f"{ENV_PREFIX}CLIENT_SECRET is not set (the API secret from AEMO's API portal)")
        if not self.participant_id:
            problems.append(f"{ENV_PREFIX}PARTICIPANT_ID is not set (sent as X-initiatingParticipantID)")
        return problems

    def require_aemo(self) -> None:
        problems = self.problems_for_aemo()
        if problems:
            raise ConfigError(problems)


def _items(value: str) -> list[str]:
    """The items of a comma-separated setting, blanks dropped."""
    return [item.strip() for item in value.split(",") if item.strip()]


def _sqlite_in_memory(url: str) -> bool:
    """`sqlite://`, `sqlite:///` and `:memory:` (or a URI with mode=memory) open a store that
    lives only as long as the process."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return False  # not ours to judge here: opening the store reports it
    database = parsed.database or ""
    return database in ("", ":memory:") or "mode=memory" in database or parsed.query.get("mode") == "memory"


def _reason(exc: Exception) -> str:
    """The short reason of an ssl or OS error (`NO_CERTIFICATE_OR_CRL_FOUND`, `No such file ...`)."""
    return str(getattr(exc, "reason", None) or getattr(exc, "strerror", None) or type(exc).__name__)


def _bad_url(value: str) -> bool:
    if any(character.isspace() for character in value):
        return True
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError when the port is not a number in range
    except ValueError:
        return True
    return not parts.hostname


class _EnvSource(EnvSettingsSource):
    """The environment `load_settings` was given (the process's unless a caller passes its own),
    noting DERSYNC_* variables that name no setting: pydantic-settings ignores those, so a typo
    would silently leave the default in force."""

    def __init__(self, settings_cls: type[BaseSettings], loading: _Loading) -> None:
        self._environ = loading.environ  # read by _load_env_vars, which the base constructor calls
        super().__init__(settings_cls)
        loading.problems.extend(_unknown_variables(settings_cls, loading.environ))

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {(name if self.case_sensitive else name.lower()): value for name, value in self._environ.items()}


class _TomlSource(TomlConfigSettingsSource):
    """The TOML file, less the keys that name no setting (noted with the file's name, since the
    environment-variable name pydantic would give them points at the wrong place)."""

    def __init__(self, settings_cls: type[BaseSettings], loading: _Loading) -> None:
        path = loading.config_file
        try:
            super().__init__(settings_cls, toml_file=path)
        except OSError as exc:
            loading.problems.append(f"{path}: cannot be read ({_reason(exc)})")
        except ValueError as exc:  # tomllib.TOMLDecodeError, UnicodeDecodeError
            loading.problems.append(f"{path}: is not valid TOML ({exc})")
        else:
            # From the file as read (not init_kwargs, which puts unknown keys last): in file order.
            self.init_kwargs, unknown = _split_unknown(settings_cls, self.toml_data)
            paths = _setting_paths(settings_cls, ".")
            loading.problems.extend(f"{path}: {key} is not a known setting{_did_you_mean(key, paths)}"
                                    for key in unknown)
            return
        InitSettingsSource.__init__(self, settings_cls, {})  # unreadable: the other sources still count


def _nested_model(info: FieldInfo) -> type[BaseModel] | None:
    annotation = info.annotation
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _setting_paths(model: type[BaseModel], separator: str, prefix: str = "") -> list[str]:
    """Every setting's name, nested ones joined by `separator` (`.` in TOML, `__` in variables)."""
    paths = []
    for name, info in model.model_fields.items():
        paths.append(prefix + name)
        nested = _nested_model(info)
        if nested is not None:
            paths.extend(_setting_paths(nested, separator, prefix + name + separator))
    return paths


def _split_unknown(model: type[BaseModel], data: Mapping[str, Any],
                   prefix: str = "") -> tuple[dict[str, Any], list[str]]:
    """`data` without the keys that name no setting, and those keys (dotted when nested)."""
    known: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in data.items():
        info = model.model_fields.get(key)
        if info is None:
            unknown.append(prefix + key)
            continue
        nested = _nested_model(info)
        if nested is not None and isinstance(value, Mapping):
            value, deeper = _split_unknown(nested, value, f"{prefix}{key}.")
            unknown.extend(deeper)
        known[key] = value
    return known, unknown


def _unknown_variables(settings_cls: type[BaseModel], environ: Mapping[str, str]) -> list[str]:
    variables = [ENV_PREFIX + path.upper() for path in _setting_paths(settings_cls, "__")]
    known = {*variables, *NON_SETTING_VARIABLES}
    return [
        f"{name} is not a known setting (environment){_did_you_mean(name.upper(), sorted(known), ENV_PREFIX)}"
        for name in sorted(environ)
        if name.upper().startswith(ENV_PREFIX) and name.upper() not in known
    ]


def _did_you_mean(name: str, candidates: Iterable[str], prefix: str = "") -> str:
    """The closest known name, compared without the prefix every candidate shares (which would
    make any two names look alike)."""
    stems = {candidate.removeprefix(prefix): candidate for candidate in candidates}
    close = difflib.get_close_matches(name.removeprefix(prefix), list(stems), n=1)
    return f"; did you mean {stems[close[0]]}?" if close else ""


def load_settings(
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    secrets_dir: Path | None = DEFAULT_SECRETS_DIR,
    **overrides: Any,
) -> Settings:
    """Build the settings from file, environment (`environ`, else the process's), container
    secrets and explicit overrides.

    Raises `ConfigError` with one readable line per problem, never a pydantic traceback: a
    misspelt name in the file or the environment is one too, since it would otherwise leave the
    default silently in force.
    """
    environ = os.environ if environ is None else environ
    loading = _Loading(_pick_config_file(config_file, environ), environ, secrets_dir)
    token = _loading.set(loading)
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError([*loading.problems, *_describe(exc)]) from None
    finally:
        _loading.reset(token)
    if loading.problems:
        raise ConfigError(loading.problems)
    return settings


def _pick_config_file(explicit: str | Path | None, environ: Mapping[str, str]) -> Path | None:
    named = explicit or environ.get(f"{ENV_PREFIX}CONFIG")
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigError([f"{ENV_PREFIX}CONFIG: configuration file {str(path)!r} does not exist"])
        return path
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def _describe(exc: ValidationError) -> list[str]:
    lines: list[str] = []
    for error in exc.errors():
        if error["type"] == _TOGETHER:
            problems: list[tuple[str, str]] = error["ctx"]["problems"]
            lines.extend(f"{ENV_PREFIX}{name.upper()}: {problem}" for name, problem in problems)
            continue
        name = "__".join(str(part) for part in error["loc"]).upper()
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "is not a known setting"
        lines.append(f"{ENV_PREFIX}{name}: {message}")
    return lines


def is_loopback_host(host: str | None) -> bool:
    """localhost or a loopback address: where plain http is acceptable (the simulator)."""
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
