"""The log scrubber: secrets never appear in a log line, and nothing else is hidden."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from dersync.logs import MASK, configure_logging
from dersync.settings import Settings

CLIENT_SECRET = "the-client-secret-value"


def logged(capsys: pytest.CaptureFixture[str], **fields: object) -> dict[str, object]:
    """One event through the real logging set-up (JSON, the daemon's stdout), as parsed back."""
    configure_logging(Settings(log_format="json", client_secret=CLIENT_SECRET), events_on_stdout=True)
    capsys.readouterr()
    structlog.get_logger("dersync.test").info("test.event", **fields)
    [line] = capsys.readouterr().out.splitlines()
    event: dict[str, object] = json.loads(line)
    return event


def test_fields_holding_secrets_are_masked(capsys: pytest.CaptureFixture[str]) -> None:
    """Tokens, secrets, passwords, API keys and Authorization values are masked by field name,
    whatever they hold; a registered secret is masked inside any other value too."""
    secret_fields = {
        "token": "t0k3n", "access_token": "a1", "acess_token": "a2", "refresh_token": "r1", "tokens": ["a", "b"],
        "client_secret": "c1", "secret": "c2", "password": "p1", "db_password": "p2", "api_key": "k1",
        "apikey": "k2", "x-apikey": "k3", "subscription_key": "k4", "Authorization": "Bearer abc", "authorization": "x",
    }
    event = logged(capsys, **secret_fields, note=f"sent {CLIENT_SECRET} to AEMO")
    assert {name: event[name] for name in secret_fields} == dict.fromkeys(secret_fields, MASK)
    assert event["note"] == f"sent {MASK} to AEMO"


def test_fields_merely_named_after_tokens_are_shown(capsys: pytest.CaptureFixture[str]) -> None:
    """URLs, counters and durations whose names contain "token" or "key" hold no secret and are
    logged as they are: the simulator's own token URL, token refreshes, a token's lifetime."""
    plain_fields = {
        "oauth_token_url": "http://127.0.0.1:8085/oauth/v1/token", "token_refreshes": 3,
        "token_lifetime_seconds": 3599, "token_type": "Bearer", "secret_file": "/run/secrets/dersync_client_secret",
        "key_count": 2, "nspConnectionId": "C-1",
    }
    event = logged(capsys, **plain_fields)
    assert {name: event[name] for name in plain_fields} == plain_fields


def test_standard_library_records_are_scrubbed_too(capsys: pytest.CaptureFixture[str]) -> None:
    """A library's own log line (standard logging) passes the same scrubber."""
    configure_logging(Settings(log_format="json", client_secret=CLIENT_SECRET), events_on_stdout=True)
    capsys.readouterr()
    logging.getLogger("some.library").warning("retrying with %s", CLIENT_SECRET)
    [line] = capsys.readouterr().out.splitlines()
    assert CLIENT_SECRET not in line and MASK in line
