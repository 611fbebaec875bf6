"""`dersync mock-aemo`: its help and the README tell how to point dersync at it, and that works."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from pathlib import Path

from click.testing import CliRunner

from dersync.cli.main import cli
from dersync.mock import Simulator, SimulatorConfig
from dersync.testing import free_port, http_get, nmi_for, record, wait_for
from tests.cli.conftest import clean_environment, run_dersync

README = Path(__file__).parents[2] / "README.md"
#: What `dersync mock-aemo` listens on by default, and the participant id the README uses.
DEFAULT_PORT = 8085


def simulator_variables(text: str) -> dict[str, str]:
    """The `DERSYNC_<setting>=value` assignments in `text` (an `export` line may hold several)."""
    return dict(re.findall(r"\b(DERSYNC_[A-Z_]+)=(\S+)", text))


def expected_variables() -> dict[str, str]:
    """The settings the simulator's code says aim a client at it on the default port."""
    settings = Simulator(SimulatorConfig(), port=DEFAULT_PORT).client_settings()
    return {f"DERSYNC_{name.upper()}": value for name, value in settings.items()}


def readme_example() -> str:
    """The README's shell block that starts `dersync mock-aemo`."""
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), re.S)
    [block] = [b for b in blocks if "dersync mock-aemo" in b]
    return block


def test_help_and_readme_give_the_simulators_credentials_and_variables() -> None:
    """`dersync mock-aemo --help` and the README name the client id, secret and participant id the
    simulator accepts and every DERSYNC_* variable aiming dersync at it, with the values in the
    simulator's code."""
    expected = expected_variables()
    assert expected["DERSYNC_CLIENT_ID"] == "dersync-demo" and expected["DERSYNC_CLIENT_SECRET"] == "demo-secret"
    help_text = CliRunner().invoke(cli, ["mock-aemo", "--help"]).output
    for text in (help_text, readme_example()):
        shown = simulator_variables(text)
        assert {name: shown.get(name) for name in expected} == expected, text
        assert "DERSYNC_PARTICIPANT_ID" in shown, text
    assert "any participant id" in " ".join(help_text.split())


async def test_the_readme_example_points_dersync_at_the_simulator(tmp_path: Path) -> None:
    """The README's variables, with the port changed, let `dersync import` and `dersync sync`
    push a record to a `dersync mock-aemo` process."""
    port = free_port()
    variables = {name: value.replace(f":{DEFAULT_PORT}", f":{port}")
                 for name, value in simulator_variables(readme_example()).items()}
    env = clean_environment(**variables, DERSYNC_DATABASE_URL=f"sqlite:///{tmp_path}/dersync.db")
    (tmp_path / "records.jsonl").write_text(json.dumps(record(nmi_for(0))) + "\n")
    simulator = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dersync", "mock-aemo", "--port", str(port), env=clean_environment(), cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await wait_for(lambda: _answers(f"http://127.0.0.1:{port}/"), "the simulator to listen")
        imported = await run_dersync(["import", "records.jsonl"], env, tmp_path)
        synced = await run_dersync(["sync"], env, tmp_path)
    finally:
        simulator.send_signal(signal.SIGTERM)
        await simulator.wait()
    assert imported.returncode == 0, imported.stderr
    assert synced.returncode == 0 and synced.stdout.startswith("1 record: NMI details 1 created"), synced


async def _answers(url: str) -> bool:
    status, _body = await http_get(url)
    return status != 0
