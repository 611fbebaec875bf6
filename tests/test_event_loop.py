"""Every command runs on uvloop where it is installed (a dependency on Linux, so in the container
and in CI), and on asyncio's own loop where it is not (see dersync.event_loop)."""

from __future__ import annotations

import asyncio
import sys

import pytest

from dersync.event_loop import chosen_loop_name, loop_factory, run, running_loop_name


def test_uvloop_is_installed_where_the_package_depends_on_it() -> None:
    """pyproject.toml depends on uvloop everywhere but Windows: a build without it would quietly
    run on the slower loop."""
    if sys.platform == "win32":
        pytest.skip("uvloop is not a dependency on Windows")
    assert loop_factory() is not None


def test_run_returns_the_result_and_runs_on_the_chosen_loop() -> None:
    async def main() -> tuple[str, int]:
        await asyncio.sleep(0)
        return running_loop_name(), 42

    name, answer = run(main())

    assert answer == 42
    assert name == chosen_loop_name()


def test_an_error_in_the_command_reaches_the_caller() -> None:
    """A command's exception propagates as with asyncio.run: the CLI turns it into an exit code."""
    async def main() -> None:
        raise LookupError("no such NMI")

    with pytest.raises(LookupError, match="no such NMI"):
        run(main())
