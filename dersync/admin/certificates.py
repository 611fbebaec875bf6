"""The configured TLS client certificate's expiry: a gauge on /metrics and a warning at start.

AEMO's gateway refuses a handshake with an expired client certificate, after which no token and
no request gets through: renewing it in time is the operator's job, and this is the reminder.
The certificate is read once, at start, as the transport loads it then: a renewed file is used
(and shown) after the next restart.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import structlog

from dersync.admin.metrics import Metrics
from dersync.settings import Settings

log = structlog.get_logger("dersync.tls")

DAY_SECONDS = 86_400


def certificate_expiry(path: Path) -> datetime:
    """notAfter (UTC) of the first certificate in a PEM file: the client's own (a chain after it
    is the issuers')."""
    from cryptography import x509

    return x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc


def check_client_certificate(settings: Settings, metrics: Metrics, now: datetime | None = None) -> datetime | None:
    """Expose the client certificate's expiry and log `tls.client_cert.expiring` (warning) when it
    expires within `tls_client_cert_warning_days`, `tls.client_cert.expired` (error) when it has.
    Returns the expiry, or None when no client certificate is configured (or it cannot be read,
    which is logged: the settings already checked that it loads, so that is unexpected)."""
    path = settings.tls_client_cert
    if path is None:
        return None
    try:
        expires = certificate_expiry(path)
    except (OSError, ValueError) as exc:
        log.warning("tls.client_cert.unreadable", path=str(path), error=str(exc))
        return None
    metrics.client_cert_expiry.value = expires.timestamp()
    now = now or datetime.now(UTC)
    left = (expires - now).total_seconds()
    expires_at = expires.astimezone(settings.zone).isoformat(timespec="seconds")
    if left <= 0:
        log.error("tls.client_cert.expired", path=str(path), expired_at=expires_at,
                  days_ago=round(-left / DAY_SECONDS, 1))
    elif left <= settings.tls_client_cert_warning_days * DAY_SECONDS:
        log.warning("tls.client_cert.expiring", path=str(path), expires_at=expires_at,
                    days_left=round(left / DAY_SECONDS, 1), warning_days=settings.tls_client_cert_warning_days)
    return expires
