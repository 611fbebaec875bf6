"""The Prometheus alerting rules shipped in deploy/prometheus/: valid for Prometheus, each alert
seen firing and staying quiet in promtool's unit tests, each telling on-call how bad it is and
what to do, and every metric they read one that a real `dersync run` exposes.

promtool comes with Debian's `prometheus` package, which .ci/run installs; where it is missing
the tests that run it are skipped, saying so.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from dersync.mock import Simulator
from dersync.testing import http_get
from tests.conftest import CertificateMaker
from tests.daemon.conftest import Cluster, cluster_environment

REPO = Path(__file__).resolve().parents[2]
RULES_DIR = REPO / "deploy" / "prometheus"
RULES = RULES_DIR / "alerts.yml"
RULE_TESTS = RULES_DIR / "alerts.test.yml"
README = REPO / "README.md"

#: Metrics the rules use that dersync does not expose (yet): `up` is Prometheus's own; the
#: compliance metrics come with the compliance work, and the rules' tests give them as series.
NOT_FROM_DERSYNC = {"up", "dersync_compliance_connections", "dersync_compliance_due_soon"}

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool is not installed (Debian package `prometheus`; .ci/run installs it)",
)


def promtool(*args: str, cwd: Path = RULES_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def alerts() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
            if "alert" in rule]


# --- promtool ---------------------------------------------------------------------------------


@needs_promtool
def test_promtool_check_rules_accepts_the_rules() -> None:
    """`promtool check rules` parses every rule and expression and finds no duplicate."""
    result = promtool("check", "rules", RULES.name)

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


@needs_promtool
def test_promtool_unit_tests_of_the_rules_pass() -> None:
    """`promtool test rules`: every alert fires on the series meant to fire it, with the labels
    and annotations expected, and stays quiet on the others."""
    result = promtool("test", "rules", RULE_TESTS.name)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_a_wrong_expectation_fails_the_unit_tests(tmp_path: Path) -> None:
    """The unit tests can fail: expecting the healthy leader, rather than the stuck one, to be
    reported stale makes `promtool test rules` exit non-zero and name the alert (run on the
    stale-sync tests alone, to be quick)."""
    shutil.copy(RULES, tmp_path / RULES.name)
    tests = yaml.safe_load(RULE_TESTS.read_text())
    tests["tests"] = [test for test in tests["tests"] if 'instance="stuck:8080"' in str(test["input_series"])]
    text = yaml.safe_dump(tests)
    assert len(tests["tests"]) == 1 and text.count("instance: stuck:8080") == 1
    (tmp_path / RULE_TESTS.name).write_text(text.replace("instance: stuck:8080", "instance: fresh:8080"))

    result = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)

    assert result.returncode != 0
    assert "DersyncSyncStale" in result.stdout + result.stderr


# --- what the rules and their tests say ---------------------------------------------------------


def test_every_alert_is_tested_firing_and_staying_quiet() -> None:
    """Each alert has a unit test where it fires and one where it is expected to be silent, and
    the tests name no alert the rules do not have."""
    cases = [case for test in yaml.safe_load(RULE_TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    names = {rule["alert"] for rule in alerts()}
    firing = {case["alertname"] for case in cases if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}

    assert {case["alertname"] for case in cases} <= names
    assert names - firing == set(), "never seen firing"
    assert names - quiet == set(), "never seen quiet"


def test_every_alert_says_how_bad_it_is_and_what_to_do() -> None:
    """Each alert has a `for:`, a severity (critical pages, warning is for working hours), a
    summary, and a description that points at something to run or read (a command, a log
    event, an endpoint, a setting)."""
    for rule in alerts():
        name = rule["alert"]
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), name
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert rule["annotations"]["summary"].strip(), name
        description = rule["annotations"]["description"]
        assert "`" in description or "DERSYNC_" in description, name


def test_the_readme_describes_every_alert() -> None:
    """The README's Alerts section names each alert the rules file holds."""
    readme = README.read_text()
    section = readme[readme.index("### Alerts"):]

    assert [rule["alert"] for rule in alerts() if f"`{rule['alert']}`" not in section] == []


# --- the metrics the rules read -----------------------------------------------------------------

#: PromQL words that look like metric names.
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (label matchers, ranges, grouping clauses,
    functions and keywords taken out)."""
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for found in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if expr[found.end():].lstrip().startswith("(") or found.group() in PROMQL_WORDS:
            continue  # a function, or a keyword
        names.add(found.group())
    return names


def test_metric_names_are_read_from_expressions() -> None:
    """The name reader used below finds metrics and nothing else in the shapes the rules use."""
    expr = ('(time() - max by (job, instance) (dersync_last_success_timestamp_seconds{task="sync"}))'
            ' > on (job, instance) 3 * dersync_sync_interval_seconds and on (job) dersync_leader == 1'
            ' or increase(dersync_aemo_throttled_total[15m]) > 0 unless up{job="dersync"}')

    assert metric_names(expr) == {"dersync_last_success_timestamp_seconds", "dersync_sync_interval_seconds",
                                  "dersync_leader", "dersync_aemo_throttled_total", "up"}


def exposed_names(metrics: str) -> set[str]:
    """The series names Prometheus stores from a /metrics text (counters with `_total`), and
    the declared names of families that have no sample yet (a failure that has not happened)."""
    names = set(re.findall(r"^# TYPE (\S+) ", metrics, re.MULTILINE))
    names |= {line.split("{")[0].split(" ")[0] for line in metrics.splitlines() if line and not line.startswith("#")}
    return names


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_every_metric_the_rules_use_is_one_dersync_exposes(
    database_url: str, simulator: Simulator, tmp_path: Path, client_certificate: CertificateMaker
) -> None:
    """Every metric name in the rules' expressions is on the /metrics of a real `dersync run`
    (with a client certificate, as in production), spelt as Prometheus stores it, apart from
    Prometheus's `up` and the compliance metrics still to come: a renamed metric cannot leave an
    alert silently watching nothing."""
    cert, key = client_certificate((datetime.now(UTC) + timedelta(days=100)).replace(microsecond=0))
    cluster = Cluster(cluster_environment(database_url, simulator), tmp_path)
    try:
        replica = await cluster.start(DERSYNC_TLS_CLIENT_CERT=str(cert), DERSYNC_TLS_CLIENT_KEY=str(key))
        await cluster.ready(replica)
        status, metrics = await http_get(replica.admin + "/metrics")
        await cluster.stop()
    finally:
        await cluster.close()
    assert status == 200
    used = {name for rule in alerts() for name in metric_names(rule["expr"])}

    assert {"dersync_ready", "dersync_leader", "dersync_tls_client_cert_expiry_timestamp_seconds"} <= used
    assert used - NOT_FROM_DERSYNC - exposed_names(metrics) == set()
