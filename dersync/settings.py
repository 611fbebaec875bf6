"""The one settings object.

Every setting can come from `config/dersync.toml` (or the file named by `DERSYNC_CONFIG`), and an
environment variable `DERSYNC_<NAME>` overrides the file; a container's secrets directory is read
last. Code below the CLI never reads the environment: it is handed a `Settings`.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal, Mapping
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from dersync.errors import ConfigError

ENV_PREFIX = "DERSYNC_"
DEFAULT_CONFIG_FILE = Path("config/dersync.toml")
DEFAULT_SECRETS_DIR = Path("/run/secrets")
#: AEMO's documented payload limit (10 MB per request or response, compressed or not).
MAX_PAYLOAD_BYTES = 10_000_000

_config_file: ContextVar[Path | None] = ContextVar("dersync_config_file", default=None)


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
    get_batch_size: int = Field(default=100, ge=1, le=100)
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

    @field_validator("tls_client_cert", "tls_client_key", "tls_ca_bundle")
    @classmethod
    def _file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"file {str(value)!r} does not exist")
        return value

    @field_validator("admin_bind")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"must be HOST:PORT with a port up to 65535, got {value!r}")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Explicit arguments, then environment, then the TOML file, then container secrets."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _config_file.get()
        if config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        if DEFAULT_SECRETS_DIR.is_dir():
            from pydantic_settings import SecretsSettingsSource

            sources.append(SecretsSettingsSource(settings_cls, secrets_dir=DEFAULT_SECRETS_DIR))
        return tuple(sources)

    # --- derived views -------------------------------------------------------------------------

    @property
    def admin_host(self) -> str:
        return self.admin_bind.rpartition(":")[0]

    @property
    def admin_port(self) -> int:
        return int(self.admin_bind.rpartition(":")[2])

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def resolved_log_format(self) -> Literal["json", "console"]:
        """JSON for containers and pipes, console for a person at a terminal."""
        if self.log_format is not None:
            return self.log_format
        return "console" if sys.stdout.isatty() else "json"

    def problems_for_aemo(self) -> list[str]:
        """What is missing before the service may talk to AEMO, one line per problem."""
        problems = []
        if not self.client_id:
            problems.append(f"{ENV_PREFIX}CLIENT_ID is not set (the API key from AEMO's API portal)")
        if self.client_secret is None or not self.client_secret.get_secret_value():
            problems.append(f"{ENV_PREFIX}CLIENT_SECRET is not set (the API secret from AEMO's API portal)")
        if not self.participant_id:
            problems.append(f"{ENV_PREFIX}PARTICIPANT_ID is not set (sent as X-initiatingParticipantID)")
        token_url = urlsplit(self.oauth_token_url)
        if token_url.scheme != "https" and not is_loopback_host(token_url.hostname):
            problems.append(
                f"{ENV_PREFIX}OAUTH_TOKEN_URL: refusing to send the client secret over plain http to "
                f"{token_url.hostname!r}; use https (plain http is allowed only on loopback, for the simulator)"
            )
        if (self.tls_client_cert is None) != (self.tls_client_key is None):
            problems.append(
                f"{ENV_PREFIX}TLS_CLIENT_CERT and {ENV_PREFIX}TLS_CLIENT_KEY must be set together"
            )
        return problems + self._tls_problems()

    def _tls_problems(self) -> list[str]:
        """TLS files that exist but cannot be used (not PEM, an encrypted key, a key that does not
        match the certificate): found at start, like every other configuration problem."""
        import ssl

        def reason(exc: Exception) -> str:
            return getattr(exc, "reason", None) or getattr(exc, "strerror", None) or type(exc).__name__

        problems = []
        if self.tls_ca_bundle is not None:
            try:
                ssl.create_default_context(cafile=str(self.tls_ca_bundle))
            except (ssl.SSLError, OSError, ValueError) as exc:
                problems.append(f"{ENV_PREFIX}TLS_CA_BUNDLE: {str(self.tls_ca_bundle)!r} holds no usable CA "
                                f"certificate ({reason(exc)})")
        if self.tls_client_cert is not None and self.tls_client_key is not None:
            try:
                ssl.create_default_context().load_cert_chain(
                    str(self.tls_client_cert), str(self.tls_client_key), password=lambda: b"")
            except (ssl.SSLError, OSError, ValueError) as exc:
                problems.append(f"{ENV_PREFIX}TLS_CLIENT_CERT and {ENV_PREFIX}TLS_CLIENT_KEY: cannot load "
                                f"{str(self.tls_client_cert)!r} with {str(self.tls_client_key)!r} as a PEM "
                                f"certificate and unencrypted key ({reason(exc)})")
        return problems

    def require_aemo(self) -> None:
        problems = self.problems_for_aemo()
        if problems:
            raise ConfigError(problems)


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


def _bad_url(value: str) -> bool:
    if any(character.isspace() for character in value):
        return True
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError when the port is not a number in range
    except ValueError:
        return True
    return not parts.hostname


def load_settings(
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings from file, environment and explicit overrides.

    Raises `ConfigError` with one readable line per bad setting, never a pydantic traceback.
    """
    environ = os.environ if environ is None else environ
    path = _pick_config_file(config_file, environ)
    token = _config_file.set(path)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    finally:
        _config_file.reset(token)


def _pick_config_file(explicit: str | Path | None, environ: Mapping[str, str]) -> Path | None:
    named = explicit or environ.get(f"{ENV_PREFIX}CONFIG")
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigError([f"{ENV_PREFIX}CONFIG: configuration file {str(path)!r} does not exist"])
        return path
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def _describe(exc: ValidationError) -> list[str]:
    lines = []
    for error in exc.errors():
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
