"""The TLS client certificate's expiry, read from real certificate files: the gauge on /metrics
and the start-up warning (`tls.client_cert.expiring`) or error (`tls.client_cert.expired`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from dersync.admin import Metrics
from dersync.admin.certificates import check_client_certificate
from dersync.errors import ConfigError
from dersync.settings import Settings, load_settings
from tests.conftest import CertificateMaker

EXPIRY_GAUGE = "dersync_tls_client_cert_expiry_timestamp_seconds"


def in_days(days: float) -> datetime:
    """A notAfter `days` from now, to the second (what a certificate can hold)."""
    return (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0)


def tls_settings(client_certificate: CertificateMaker, not_after: datetime, **overrides: Any) -> Settings:
    cert, key = client_certificate(not_after, chain=overrides.pop("chain", False))
    return Settings(tls_client_cert=cert, tls_client_key=key, **overrides)


def exposed(metrics: Metrics) -> list[float]:
    """The gauge's samples, as Prometheus would read /metrics."""
    return [sample.value for family in text_string_to_metric_families(metrics.render().decode())
            if family.name == EXPIRY_GAUGE for sample in family.samples]


def check(settings: Settings, metrics: Metrics) -> list[dict[str, Any]]:
    """The events `check_client_certificate` logs."""
    with capture_logs() as events:
        check_client_certificate(settings, metrics)
    return [e for e in events if e["event"].startswith("tls.")]


def test_a_certificate_expiring_in_10_days_is_warned_about_and_exposed(client_certificate: CertificateMaker) -> None:
    """A client certificate 10 days from its end: one warning naming the file, the time it ends
    (in the operator's zone, Perth by default) and the days left; the gauge holds its notAfter."""
    not_after = in_days(10)
    settings = tls_settings(client_certificate, not_after)
    metrics = Metrics()

    events = check(settings, metrics)

    assert events == [{
        "event": "tls.client_cert.expiring", "log_level": "warning", "path": str(settings.tls_client_cert),
        "expires_at": not_after.astimezone(settings.zone).isoformat(timespec="seconds"),
        "days_left": 10.0, "warning_days": 30,
    }]
    assert events[0]["expires_at"].endswith("+08:00")
    assert exposed(metrics) == [not_after.timestamp()]


def test_a_certificate_expiring_in_100_days_is_exposed_without_a_warning(
    client_certificate: CertificateMaker,
) -> None:
    """100 days from its end (beyond the 30 days of the default): nothing is logged, and the
    gauge still holds its notAfter for the alert rules."""
    not_after = in_days(100)
    metrics = Metrics()

    assert check(tls_settings(client_certificate, not_after), metrics) == []
    assert exposed(metrics) == [not_after.timestamp()]


def test_the_warning_days_are_a_setting(client_certificate: CertificateMaker) -> None:
    """With DERSYNC_TLS_CLIENT_CERT_WARNING_DAYS at 120, a certificate 100 days from its end is
    warned about; at 5, one 10 days from its end is not."""
    warned = check(tls_settings(client_certificate, in_days(100), tls_client_cert_warning_days=120), Metrics())
    quiet = check(tls_settings(client_certificate, in_days(10), tls_client_cert_warning_days=5), Metrics())

    assert [(e["event"], e["days_left"], e["warning_days"]) for e in warned] == [
        ("tls.client_cert.expiring", 100.0, 120)]
    assert quiet == []


def test_an_expired_certificate_is_an_error_at_start(client_certificate: CertificateMaker) -> None:
    """A certificate that ended 2 days ago is logged at error level with when it expired; the
    gauge shows the past time, so the alert fires too."""
    not_after = in_days(-2)
    settings = tls_settings(client_certificate, not_after)
    metrics = Metrics()

    events = check(settings, metrics)

    assert events == [{
        "event": "tls.client_cert.expired", "log_level": "error", "path": str(settings.tls_client_cert),
        "expired_at": not_after.astimezone(settings.zone).isoformat(timespec="seconds"), "days_ago": 2.0,
    }]
    assert exposed(metrics) == [not_after.timestamp()]


def test_the_client_certificate_not_its_issuer_counts_in_a_chain_file(client_certificate: CertificateMaker) -> None:
    """A certificate file that holds the chain (client, then CA, which ends later) is judged by
    the client's certificate, the first in the file."""
    not_after = in_days(10)
    settings = tls_settings(client_certificate, not_after, chain=True)
    metrics = Metrics()

    events = check(settings, metrics)

    assert [e["event"] for e in events] == ["tls.client_cert.expiring"]
    assert exposed(metrics) == [not_after.timestamp()]


def test_without_a_client_certificate_the_gauge_has_no_sample() -> None:
    """No DERSYNC_TLS_CLIENT_CERT: nothing is logged and the gauge is declared with no value (a
    0 would read as a certificate that expired in 1970, and page)."""
    metrics = Metrics()

    assert check(Settings(), metrics) == []
    assert exposed(metrics) == []
    assert f"# TYPE {EXPIRY_GAUGE} gauge" in metrics.render().decode()


@pytest.mark.parametrize("days", ["0", "366", "soon"])
def test_warning_days_outside_1_to_365_are_a_configuration_problem(days: str) -> None:
    """DERSYNC_TLS_CLIENT_CERT_WARNING_DAYS must be a whole number of days from 1 to 365: anything
    else is one line naming the variable, as every setting."""
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={"DERSYNC_TLS_CLIENT_CERT_WARNING_DAYS": days}, secrets_dir=None)

    assert len(raised.value.problems) == 1
    assert raised.value.problems[0].startswith("DERSYNC_TLS_CLIENT_CERT_WARNING_DAYS: ")
