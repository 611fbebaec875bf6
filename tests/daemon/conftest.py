"""Real `dersync run` replicas for the daemon tests, and the ways to hurt them.

Replicas are subprocesses with their own admin port and JSON log file. A replica can be killed
(SIGKILL), frozen (SIGSTOP, as a hung VM or a stuck event loop), or cut off from PostgreSQL by a
`NetworkCut` proxy that stops forwarding; the store itself can be a private PostgreSQL server
that a test restarts. Which replica sent a request is read from the simulator's own log (every
request carries the sender's pid in its User-Agent), not from the replicas' logs, so a request
whose answer never reached its sender is still attributed.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dersync.mock import Simulator
from dersync.mock.state import RegisterState, Served
from dersync.store import Store
from dersync.store.equipment import ids_from_installation
from dersync.testing import (
    as_environment,
    free_port,
    http_get,
    nmi_for,
    read_back,
    wait_for,
)

DEADLINE_SECONDS = 60
FAILOVER_SECONDS = 3.0
#: The request budget of every replica (DERSYNC_RATE_LIMIT_PER_MINUTE).
BUDGET_PER_MINUTE = 3000


# --- replicas ---------------------------------------------------------------------------------


@dataclass
class Replica:
    """One `dersync run` subprocess with its admin endpoint and its JSON log file."""

    name: str
    process: asyncio.subprocess.Process
    admin: str
    log: Path
    killed_at: float | None = None
    frozen_at: float | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        """Alive and able to answer (not killed, not frozen)."""
        return self.process.returncode is None and self.killed_at is None and self.frozen_at is None

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed or released by the process itself."""
        self.killed_at = time.monotonic()
        os.kill(self.process.pid, signal.SIGKILL)

    def freeze(self) -> None:
        """SIGSTOP: the process hangs as a frozen VM would; its sockets stay open."""
        self.frozen_at = time.monotonic()
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)
        self.frozen_at = None

    async def role(self) -> str | None:
        """`role` from /readyz (leader, standby or starting), or None while it does not answer."""
        status, body = await http_get(self.admin + "/readyz")
        if status not in (200, 503):
            return None
        return json.loads(body).get("role")

    async def leader_gauge(self) -> float | None:
        status, body = await http_get(self.admin + "/metrics")
        found = re.search(r"^dersync_leader (\S+)$", body, re.MULTILINE) if status == 200 else None
        return float(found.group(1)) if found else None

    def events(self) -> list[dict[str, Any]]:
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                found.append(event)
        return found

    def logged(self, name: str) -> bool:
        return any(event.get("event") == name for event in self.events())

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])


class Cluster:
    """The replicas of one test; whatever still runs at the end is killed."""

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        self.env = env
        self.folder = folder
        self.replicas: list[Replica] = []

    async def start(self, **env: str) -> Replica:
        name = f"replica-{len(self.replicas) + 1}"
        port = free_port()
        log = self.folder / f"{name}.log"
        with log.open("wb") as log_file:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "dersync", "run", cwd=self.folder, stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                env={**self.env, "DERSYNC_ADMIN_BIND": f"127.0.0.1:{port}", **env},
            )
        replica = Replica(name, process, f"http://127.0.0.1:{port}", log)
        self.replicas.append(replica)
        return replica

    def running(self) -> list[Replica]:
        return [r for r in self.replicas if r.running]

    def by_pid(self) -> dict[int, Replica]:
        return {r.pid: r for r in self.replicas}

    async def ready(self, replica: Replica) -> None:
        """Wait for `daemon.ready` in its log (not /readyz, which would also set its gauges)."""
        await wait_for(lambda: replica.logged("daemon.ready") or replica.process.returncode is not None,
                       f"{replica.name} to be ready")
        assert replica.process.returncode is None, f"{replica.name} exited:\n{replica.tail()}"

    async def leader(self, deadline: float = DEADLINE_SECONDS) -> Replica:
        """The one running replica whose /readyz says leader (waits until there is exactly one)."""

        async def one_leader() -> Replica | None:
            running = self.running()
            roles = await asyncio.gather(*(r.role() for r in running))
            leaders = [r for r, role in zip(running, roles, strict=True) if role == "leader"]
            assert len(leaders) <= 1, f"two leaders at once: {[r.name for r in leaders]}"
            return leaders[0] if leaders else None

        return await wait_for(one_leader, "a leader", deadline)

    async def stop(self) -> None:
        """SIGTERM every running replica; each must exit 0."""
        running = self.running()
        for replica in running:
            replica.process.send_signal(signal.SIGTERM)
        for replica in running:
            code = await asyncio.wait_for(replica.process.wait(), timeout=DEADLINE_SECONDS)
            assert code == 0, f"{replica.name} exited {code}:\n{replica.tail()}"

    async def close(self) -> None:
        for replica in self.replicas:
            if replica.process.returncode is None:
                if replica.frozen_at is not None:
                    replica.thaw()
                replica.process.kill()
                await replica.process.wait()


def cluster_environment(database_url: str, simulator: Simulator) -> dict[str, str]:
    return {
        **os.environ,
        **as_environment(simulator.client_settings()),
        "DERSYNC_DATABASE_URL": database_url,
        "DERSYNC_SYNC_INTERVAL_SECONDS": "0.5",
        "DERSYNC_FAILOVER_SECONDS": str(FAILOVER_SECONDS),
        "DERSYNC_CONCURRENCY": "4",
        "DERSYNC_STORE_BATCH_SIZE": "25",
        "DERSYNC_RATE_LIMIT_PER_MINUTE": str(BUDGET_PER_MINUTE),
        "DERSYNC_RETRY_BACKOFF_INITIAL_SECONDS": "0.05",
        "DERSYNC_RETRY_BACKOFF_MAX_SECONDS": "0.5",
        "DERSYNC_SHUTDOWN_GRACE_SECONDS": "20",
        "DERSYNC_LOG_FORMAT": "json",
        "DERSYNC_LOG_LEVEL": "DEBUG",
    }


@pytest.fixture
async def cluster(database_url: str, simulator: Simulator, tmp_path: Path) -> AsyncIterator[Cluster]:
    cluster = Cluster(cluster_environment(database_url, simulator), tmp_path)
    try:
        yield cluster
    finally:
        await cluster.close()


# --- who sent what, as the simulator saw it ---------------------------------------------------


def api_requests(state: RegisterState) -> list[Served]:
    """NMI and Installation API requests in the order the simulator answered them."""
    return sorted((s for s in state.request_log if s.route != "oauth_token"), key=lambda s: s.at)


def sender_pid(served: Served) -> int | None:
    found = re.search(r"pid (\d+)", served.agent)
    return int(found.group(1)) if found else None


def sending_runs(cluster: Cluster, state: RegisterState) -> list[tuple[str, int]]:
    """The API requests as runs of one sender: [(replica name, requests in the run), ...]."""
    names = {pid: replica.name for pid, replica in cluster.by_pid().items()}
    runs: list[tuple[str, int]] = []
    for served in api_requests(state):
        name = names.get(sender_pid(served) or -1, f"unknown ({served.agent})")
        if runs and runs[-1][0] == name:
            runs[-1] = (name, runs[-1][1] + 1)
        else:
            runs.append((name, 1))
    return runs


def acquisitions(cluster: Cluster) -> int:
    return sum(1 for r in cluster.replicas for e in r.events() if e.get("event") == "leader.acquired")


def assert_one_sender_at_a_time(cluster: Cluster, state: RegisterState) -> list[tuple[str, int]]:
    """Each run of one replica's requests began with that replica acquiring the lease: two
    replicas' requests never interleave (A, B, A would need A to acquire twice)."""
    runs = sending_runs(cluster, state)
    assert all(not name.startswith("unknown") for name, _ in runs), runs
    assert len(runs) <= acquisitions(cluster), (runs, acquisitions(cluster))
    return runs


def most_in_any_second(state: RegisterState) -> int:
    """The most NMI and Installation API requests the simulator served within any 1 s."""
    times = [s.at for s in api_requests(state)]
    most, start = 0, 0
    for end, at in enumerate(times):
        while times[start] <= at - 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


# --- the end state ----------------------------------------------------------------------------


async def all_synced(store: Store, records: int) -> bool:
    status = await store.status()
    return bool(status["records"]["synced"] == records and status["due"] == 0)


async def assert_store_matches_aemo(store: Store, simulator: Simulator, records: int) -> None:
    """Every record at AEMO exactly as in the store, each created once, nothing refused or
    duplicated, AEMO's ids remembered, and the budget kept (no 429, never over it in 60 s)."""
    state = simulator.state
    report = await read_back(store, state)
    assert report.ok and report.checked == records, report
    everything = {nmi_for(i) for i in range(records)}
    assert set(state.installations) == everything and set(state.nmis) == everything
    assert set(state.creates.values()) == {1} and set(state.nmi_creates.values()) == {1}
    # A second POST for an NMI AEMO already holds is refused (422) rather than counted as a
    # create: there must be none.
    refused = {route: state.count(route=route, status=422) for route in ("nmi_create", "installation_create")}
    assert refused == {"nmi_create": 0, "installation_create": 0}, refused
    # The ids recorded with each outcome are the ones AEMO assigned (same transaction as the state).
    known = await store.load_ids(sorted(everything))
    stored = {(nmi, conn, dev, aemo_id) for nmi, ids in known.items() for (conn, dev), aemo_id in ids.items()}
    held = {(nmi, e.nsp_connection_id, e.nsp_device_id, e.aemo_id)
            for nmi, inst in state.installations.items() for e in ids_from_installation(inst)}
    assert stored == held
    assert state.max_requests_in_any_window <= BUDGET_PER_MINUTE, state.max_requests_in_any_window
    # The runs are shorter than 60 s, so also hold them to the pacer's promise for any second
    # (at most 1/30 of the budget): two replicas sending at once would break it.
    assert most_in_any_second(state) <= BUDGET_PER_MINUTE / 30
    assert state.throttled_total == 0


# --- a network cut between a replica and PostgreSQL -------------------------------------------


@dataclass
class NetworkCut:
    """A TCP proxy in front of PostgreSQL that can stop forwarding, as a cut cable or a frozen
    switch would: connections stay open, bytes are held, nothing is refused or reset."""

    target_host: str
    target_port: int
    port: int = 0
    _flowing: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.AbstractServer | None = None
    _pipes: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> None:
        self._flowing.set()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def cut(self) -> None:
        self._flowing.clear()

    def mend(self) -> None:
        self._flowing.set()

    async def close(self) -> None:
        self._flowing.set()
        if self._server is not None:
            self._server.close()
        for pipe in self._pipes:
            pipe.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._flowing.wait()
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.close()
            return
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def network_cut(database_url: str) -> AsyncIterator[tuple[NetworkCut, str]]:
    """A proxy to the test's PostgreSQL database, and the database URL through it."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    cut = NetworkCut(url.host or "127.0.0.1", url.port or 5432)
    await cut.start()
    try:
        yield cut, url.set(host="127.0.0.1", port=cut.port).render_as_string(hide_password=False)
    finally:
        await cut.close()


# --- a private PostgreSQL server a test may restart -------------------------------------------


def _postgres_bin() -> Path | None:
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / "pg_ctl").exists():
            return folder
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


@dataclass
class PrivateServer:
    """A PostgreSQL server of the test's own (initdb in a temp folder), so it can be restarted."""

    bin: Path
    folder: Path
    port: int
    run_as: list[str]

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        subprocess.run([*self.run_as, str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), *args],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self) -> None:
        self._ctl("-l", str(self.folder / "log"), "-w", "-o",
                  f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self) -> None:
        self._ctl("-m", "fast", "-w", "stop")


@pytest.fixture
def private_postgres() -> Iterator[PrivateServer]:
    bin_folder = _postgres_bin()
    if bin_folder is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    # Not under pytest's temp folder: as root the server runs as `postgres`, who cannot enter it.
    folder = Path(tempfile.mkdtemp(prefix="dersync-test-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(folder, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*run_as, str(bin_folder / "initdb"), "-D", str(folder / "data"), "-U", "postgres",
                    "--auth=trust", "-E", "UTF8"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = PrivateServer(bin_folder, folder, free_port(), run_as)
    server.start()
    try:
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
