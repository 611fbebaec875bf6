"""`dersync demo`, the README's first command, run as a user runs it: a subprocess in an empty folder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

DEMO_TIMEOUT_SECONDS = 240


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DERSYNC_")}
    env["DERSYNC_DATABASE_URL"] = "sqlite:///dersync-demo.db"  # only read by `status`
    return subprocess.run([sys.executable, "-m", "dersync", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=DEMO_TIMEOUT_SECONDS, check=False)


def summary_count(output: str, label: str) -> int:
    match = re.search(rf"{re.escape(label)}\s*\S\s*(\d+)", output)
    assert match, f"no '{label}' row in:\n{output}"
    return int(match.group(1))


def test_demo_syncs_the_samples_and_a_second_run_sends_nothing(tmp_path: Path) -> None:
    """The first demo run exits 0 having pushed every sample record (none left due, the AEMO
    simulator's register holding every synced NMI) and shows rejected and flagged records, with
    no log event among its output; the second run in the same folder makes no HTTP request at
    all and says so: every record unchanged since the last run (not "0 records looked at")."""
    first = run(["demo"], tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "aemo_simulator_started" not in first.stdout
    assert summary_count(first.stdout, "records looked at") == 300
    assert summary_count(first.stdout, "left due for retry") == 0
    assert summary_count(first.stdout, "rejected by AEMO: first level (422)") > 0
    assert summary_count(first.stdout, "flagged Conditional (second level)") > 0

    status = run(["status", "--format", "json"], tmp_path)
    assert status.returncode == 0, status.stderr
    counts = json.loads(status.stdout)
    assert counts["due"] == 0
    register = json.loads((tmp_path / "dersync-demo-aemo.json").read_text())
    assert len(register["nmis"]) >= counts["records"]["synced"] > 0

    second = run(["demo"], tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "300 records unchanged since the last run: no requests sent" in second.stdout
    assert "records looked at" not in second.stdout
