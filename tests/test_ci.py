"""What CI's PostgreSQL set-up (.ci/postgres.sh, sourced by .ci/run) leaves behind: nothing.

The test sources the real file in bash, as .ci/run does, and starts a real server on a free port
in a temporary folder of its own ($TMPDIR), so it never touches another run's server or files.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dersync.testing import free_port

REPO = Path(__file__).resolve().parents[1]
PG_BINARIES = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))

pytestmark = pytest.mark.skipif(not PG_BINARIES or shutil.which("bash") is None,
                                reason="needs bash and the PostgreSQL server binaries (Debian layout)")


@pytest.fixture
def tmpdir_for_ci() -> Iterator[Path]:
    """$TMPDIR for the run: world-traversable, because as root the server runs as `postgres`
    (pytest's own temporary folders are private to the user running the tests)."""
    folder = Path(tempfile.mkdtemp(prefix="dersync-test-ci-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_ci(body: str, tmpdir: Path, port: int) -> subprocess.CompletedProcess[str]:
    """`body` after `start_postgres`, in a shell set up like .ci/run's."""
    script = f"set -euo pipefail\nsource .ci/postgres.sh\nstart_postgres\n{body}\n"
    env = {**os.environ, "TMPDIR": str(tmpdir), "DERSYNC_CI_PG_PORT": str(port)}
    return subprocess.run(["bash", "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_a_failing_test_run_stops_the_server_and_removes_its_data_folder(tmpdir_for_ci: Path) -> None:
    """When the tests fail, the shell still exits with their status, the server is stopped and its
    data folder under $TMPDIR is gone: a CI machine does not fill /tmp run after run."""
    port = free_port()
    result = run_ci('"$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" && echo "server up in $PG_DIR"\nexit 3',
                    tmpdir_for_ci, port)

    assert result.returncode == 3, result.stderr
    assert f"server up in {tmpdir_for_ci}/dersync-ci-pg." in result.stdout
    assert list(tmpdir_for_ci.iterdir()) == []
    assert not listening(port)


def test_a_server_that_cannot_start_leaves_no_data_folder(tmpdir_for_ci: Path) -> None:
    """A server that fails to start (its port is taken) fails the run, and the data folder made
    for it is removed all the same."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        result = run_ci('echo "not reached"', tmpdir_for_ci, taken.getsockname()[1])

    assert result.returncode != 0 and "not reached" not in result.stdout
    assert list(tmpdir_for_ci.iterdir()) == []
