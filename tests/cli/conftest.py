"""Running `dersync` as an operator does: `python -m dersync ...` in a subprocess, aimed at the
test's simulator and store through DERSYNC_* variables only (nothing leaks in from the test run)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from dersync.mock import Simulator
from dersync.testing import as_environment
from tests.conftest import PARTICIPANT

PROCESS_TIMEOUT_SECONDS = 120


@dataclass(frozen=True)
class Ran:
    """A finished `dersync` process."""

    returncode: int
    stdout: str
    stderr: str


DersyncProcess = Callable[..., Awaitable[Ran]]


def clean_environment(**variables: str) -> dict[str, str]:
    """The test's environment without any DERSYNC_* variable, plus `variables`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DERSYNC_")}
    env.update(variables)
    return env


async def run_dersync(args: list[str], env: dict[str, str], cwd: Path) -> Ran:
    """Run `python -m dersync ARGS` without blocking the event loop (the simulator lives on it)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dersync", *args, env=env, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), PROCESS_TIMEOUT_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


@pytest.fixture
def dersync(database_url: str, simulator: Simulator, tmp_path: Path) -> DersyncProcess:
    """`await dersync("status", "--format", "json", COLUMNS="80")`: the command against the test's
    simulator and store, JSON logs at INFO (so that any event on the wrong stream shows), run in
    an empty folder; keyword arguments add environment variables."""

    async def run(*args: str, **variables: str) -> Ran:
        env = clean_environment(**{
            "DERSYNC_PARTICIPANT_ID": PARTICIPANT, **as_environment(simulator.client_settings()),
            "DERSYNC_DATABASE_URL": database_url, "DERSYNC_LOG_FORMAT": "json", "DERSYNC_LOG_LEVEL": "INFO",
            **variables})
        return await run_dersync(list(args), env, tmp_path)

    return run
