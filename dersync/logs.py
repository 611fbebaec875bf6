"""Logging for admins: structlog events, one JSON object per line in containers.

Everything (our events and the libraries' standard-library logs) goes through one
`ProcessorFormatter`: to stdout for the daemon (containers collect stdout), to stderr for every
other command (their stdout is data a program may parse). Secrets never appear: values registered with `redact` are
masked wherever they occur, and fields whose names look secret are masked whatever they hold.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from dersync.settings import Settings

#: A field whose name ends with one of these words holds a secret (`access_token`, `client_secret`,
#: `db_password`, `Authorization`, `x-apikey`)...
_SECRET_WORDS = frozenset({"token", "tokens", "secret", "secrets", "password", "passwords", "passwd",
                           "authorization", "apikey", "credential", "credentials"})
#: ...or with one of these pairs (`api_key`, APIM's `subscription-key`). Only the ending counts:
#: `oauth_token_url`, `token_refreshes` and `secret_file` name a URL, a counter and a path, which
#: admins need to read (the simulator's own token URL was logged as "***").
_SECRET_PAIRS = frozenset({("api", "key"), ("subscription", "key"), ("private", "key"), ("access", "key")})
_secrets: set[str] = set()
MASK = "***"


def redact(value: str | None) -> None:
    """Register a secret value (client secret, access token) so no log line can show it."""
    if value and len(value) >= 4:
        _secrets.add(value)


def _mask(value: Any) -> Any:
    if isinstance(value, str):
        for secret in _secrets:
            if secret in value:
                value = value.replace(secret, MASK)
    return value


@functools.lru_cache(maxsize=1024)
def is_secret_field(name: str) -> bool:
    """Whether a field of this name holds a secret, judged by the last word(s) of the name
    (snake_case, kebab-case or camelCase).

    Remembered per name: events use a few dozen field names, and splitting each name into words
    on every event was 40% of an emitted event's cost (two events per installation pushed)."""
    words = re.findall(r"[a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower())
    return bool(words) and (words[-1] in _SECRET_WORDS or tuple(words[-2:]) in _SECRET_PAIRS)


def scrub_secrets(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if is_secret_field(key):
            event[key] = MASK
        else:
            event[key] = _mask(event[key])
    return event


def configure_logging(settings: Settings, *, events_on_stdout: bool = False) -> None:
    """Set up structlog and the standard library's root logger for one process.

    `events_on_stdout` is for `dersync run`: its JSON events are its only output, and container
    runtimes collect stdout. Every other command prints data on stdout (`--format json|csv`
    output, summaries), so its events go to stderr, where they cannot corrupt that data.
    """
    if settings.client_secret is not None:
        redact(settings.client_secret.get_secret_value())
    if settings.api_key is not None:
        redact(settings.api_key.get_secret_value())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        scrub_secrets,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if settings.resolved_log_format() == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        # Events below the level are dropped before any processor runs (a pass logs per record).
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    to_stdout = events_on_stdout and settings.resolved_log_format() == "json"
    handler = logging.StreamHandler(sys.stdout if to_stdout else sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer])
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    for noisy in ("aiohttp.access", "alembic", "apscheduler", "urllib3", "requests_oauthlib", "oauthlib"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(settings.log_level)))
