"""The Dockerfile's install and start steps, replayed without a Docker engine.

The test reads the Dockerfile and follows it rather than restating it: the build stage's COPY
lines give the build context, its `pip wheel` step builds the wheels, the final stage's
`pip install` installs exactly those wheels (no index) into a clean virtualenv standing in for
the image's Python, its `mkdir`/`chown` steps lay out the directories, and its ENV, WORKDIR,
USER, VOLUME, EXPOSE, HEALTHCHECK and CMD say how the process starts and is probed. Container
paths (`/src`, `/wheels`, `/app`, `/data`, ...) are mapped into one temporary "root" directory.

Deliberate differences from a real container, each because this machine has no Docker engine:
the process runs as `nobody` (or the current user when not root) instead of the image's user;
the admin endpoint binds 127.0.0.1 on a free port (the HEALTHCHECK URL is rewritten to match);
the store path under the VOLUME lives in the temporary root; AEMO is the project's simulator.
A Dockerfile step the test does not know how to replay fails the test, so the two cannot drift
apart silently.
"""

from __future__ import annotations

import asyncio
import glob
import itertools
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dersync.mock import Simulator, SimulatorConfig
from dersync.testing import as_environment, free_port
from tests.conftest import PARTICIPANT

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
DEADLINE_SECONDS = 60
#: PATH of the python:*-slim images, with the virtualenv (the image's Python) in front.
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# --------------------------------------------------------------------------- Dockerfile parsing
@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [rest for kw, rest in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None


def parse_dockerfile(text: str) -> list[Stage]:
    """Logical instructions per stage: comments dropped, backslash continuations joined."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append((current + stripped).strip())
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"

    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, rest))
    assert stages, "no FROM in the Dockerfile"
    return stages


def parse_env(rest: str) -> dict[str, str]:
    """`ENV a=1 b="two words"` or the legacy `ENV key value with spaces`."""
    tokens = shlex.split(rest)
    if all("=" in token for token in tokens):
        return dict(token.split("=", 1) for token in tokens)
    key, _, value = rest.partition(" ")
    return {key: value.strip()}


def parse_exec_or_shell(rest: str) -> list[str]:
    """Exec form (a JSON array) as is; shell form runs under /bin/sh -c, as Docker does."""
    if rest.startswith("["):
        command = json.loads(rest)
        assert isinstance(command, list) and command and all(isinstance(a, str) for a in command), rest
        return command
    return ["/bin/sh", "-c", rest]


def parse_healthcheck(rest: str) -> tuple[dict[str, str], list[str]]:
    match = re.fullmatch(r"((?:--[\w-]+=\S+\s+)*)CMD\s+(.+)", rest, flags=re.S)
    assert match, f"HEALTHCHECK without a CMD: {rest!r}"
    options = dict(opt[2:].split("=", 1) for opt in match.group(1).split())
    return options, parse_exec_or_shell(match.group(2).strip())


def parse_list(rest: str) -> list[str]:
    return json.loads(rest) if rest.startswith("[") else rest.split()


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"([\d.]+)(ms|s|m|h)", duration):
        total += float(number) * units[unit]
    return total


def run_segments(rest: str) -> list[list[str]]:
    """A shell-form RUN split into its `&&`-joined commands, each as argv."""
    segments: list[list[str]] = [[]]
    for token in shlex.split(rest):
        if token == "&&":
            segments.append([])
        else:
            segments[-1].append(token)
    return [segment for segment in segments if segment]


def pip_args(argv: list[str]) -> list[str] | None:
    """The arguments after `pip` for `pip ...`, `pip3 ...` or `python -m pip ...`, else None."""
    if argv[0] in ("pip", "pip3"):
        return argv[1:]
    if argv[0].startswith("python") and argv[1:3] == ["-m", "pip"]:
        return argv[3:]
    return None


# ------------------------------------------------------------------------- the machine's side
@dataclass
class RunAs:
    prefix: list[str]
    uid: int
    gid: int
    name: str


def run_as_user() -> RunAs:
    """Non-root: the current user. Root: `nobody`, through setpriv or runuser."""
    if os.geteuid() != 0:
        return RunAs([], os.getuid(), os.getgid(), pwd.getpwuid(os.getuid()).pw_name)
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("running as root and there is no `nobody` user to start the service as")
    if setpriv := shutil.which("setpriv"):
        prefix = [setpriv, f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
    elif runuser := shutil.which("runuser"):
        prefix = [runuser, "-u", nobody.pw_name, "-p", "--"]  # -p: keep the environment we give
    else:
        pytest.skip("running as root and neither setpriv nor runuser exists to drop to a non-root user")
    return RunAs(prefix, nobody.pw_uid, nobody.pw_gid, nobody.pw_name)


def image_python(base_image: str, user: RunAs) -> str:
    """An interpreter standing in for the base image's Python, usable by `user`.

    The base image's version (`python:3.11-slim` -> 3.11) is preferred; the test's own interpreter
    comes first. Under root that interpreter may live where `nobody` cannot reach (a pyenv in
    /root), so another one of the same version on the system PATH is taken instead.
    """
    tag = base_image.partition(":")[2]
    wanted = re.match(r"\d+\.\d+", tag)
    names = [f"python{wanted.group(0)}"] if wanted else []
    candidates = [sys.executable] + [p for n in [*names, "python3"] if (p := shutil.which(n, path=IMAGE_PATH))]
    probe = "import sys, venv, ensurepip; print('%d.%d' % sys.version_info[:2])"
    usable: list[tuple[str, str]] = []
    for candidate in dict.fromkeys(candidates):
        if not reachable(Path(os.path.realpath(candidate)), user):
            continue
        result = subprocess.run([*user.prefix, candidate, "-c", probe], capture_output=True, text=True, cwd="/")
        if result.returncode == 0:
            usable.append((candidate, result.stdout.strip()))
    for candidate, version in usable:
        if not wanted or version == wanted.group(0):
            return candidate
    usable = [(c, v) for c, v in usable if tuple(map(int, v.split("."))) >= (3, 11)]
    if usable:
        return usable[0][0]
    pytest.fail(
        f"no Python >= 3.11 with venv and ensurepip that user {user.name!r} can run "
        f"(tried {list(dict.fromkeys(candidates))}): the start step cannot be replayed"
    )


def reachable(path: Path, user: RunAs) -> bool:
    """Every directory above `path` lets `user` through (a pyenv under a 0700 /root does not)."""
    groups = {user.gid} if user.prefix else {user.gid, *os.getgroups()}
    for directory in path.parents:
        info = directory.stat()
        if info.st_uid == user.uid:
            bit = stat.S_IXUSR
        elif info.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            return False
    return True


def open_up(root: Path) -> None:
    """Directories 755 and files world-readable, so the non-root user can read the tree."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        if path.is_dir():
            path.chmod(stat.S_IMODE(mode) | 0o755)
        else:
            extra = 0o044 | (0o011 if mode & stat.S_IXUSR else 0)
            path.chmod(stat.S_IMODE(mode) | extra)


def build_env() -> dict[str, str]:
    """The test's environment without what would leak the test's Python into the image's
    (PYTHONPATH and friends, an active virtualenv). The machine's pip settings stay: they are how
    it reaches the package index, as the Docker build would."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}


def run_step(argv: list[str], what: str, log_dir: Path, **kwargs: Any) -> None:
    """Run one build/install command; on failure, fail (never skip) with the end of its output."""
    log_path = log_dir / f"{what.replace(' ', '-')}.log"
    with log_path.open("wb") as log_file:
        result = subprocess.run(argv, stdout=log_file, stderr=subprocess.STDOUT, timeout=300, **kwargs)
    if result.returncode != 0:
        tail = log_path.read_text(errors="replace")[-4000:]
        pytest.fail(f"{what} failed (exit {result.returncode}): {shlex.join(map(str, argv))}\n{tail}")


# ------------------------------------------------------------------------------------ the image
@dataclass
class Image:
    """What the Dockerfile's steps left behind, with the container's settings."""

    root: Path
    venv: Path
    user: RunAs
    env: dict[str, str]
    workdir: str
    home: str
    volumes: list[str]
    exposed: list[str]
    image_user: str | None
    healthcheck_options: dict[str, str]
    healthcheck: list[str]
    cmd: list[str]

    def host(self, container_path: str) -> Path:
        return self.root / container_path.lstrip("/")


def build_image(base: Path) -> Image:
    stages = parse_dockerfile(DOCKERFILE.read_text())
    final = stages[-1]
    user = run_as_user()
    python = image_python(final.base, user)
    root = base / "root"
    venv = base / "venv"
    logs = base / "logs"
    logs.mkdir()

    def host(path: str, workdir: str = "/") -> Path:
        return root / os.path.join(workdir, path).lstrip("/")

    for index, stage in enumerate(stages):
        is_final = index == len(stages) - 1
        workdir = "/"
        image_user = None
        home = "/"
        if is_final:
            run_step([python, "-m", "venv", str(venv)], "venv", logs, env=build_env())
        for keyword, rest in stage.instructions:
            if keyword == "WORKDIR":
                workdir = os.path.join(workdir, rest)
                host(workdir).mkdir(parents=True, exist_ok=True)
            elif keyword == "COPY":
                args = shlex.split(rest)
                flags = [a for a in args if a.startswith("--")]
                *sources, dest = [a for a in args if not a.startswith("--")]
                source_root = root if any(f.startswith("--from=") for f in flags) else REPO
                target = host(dest, workdir)
                for source in sources:  # Docker's rules: a directory's contents go into dest
                    src = source_root / source.lstrip("/")
                    into = target / src.name if src.is_file() and (dest.endswith("/") or len(sources) > 1) else target
                    if src.resolve() == into.resolve():
                        continue  # the same path in our one shared root
                    into.parent.mkdir(parents=True, exist_ok=True)
                    if src.is_dir():
                        shutil.copytree(src, into, dirs_exist_ok=True,
                                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                    else:
                        shutil.copy2(src, into)
            elif keyword == "RUN":
                for argv in run_segments(rest):
                    home = replay_run(argv, stage_is_final=is_final, python=python, venv=venv, user=user,
                                      host=lambda p, w=workdir: host(p, w), cwd=host(workdir), logs=logs) or home
            elif keyword == "USER":
                image_user = rest
            elif keyword in ("ENV", "VOLUME", "EXPOSE", "HEALTHCHECK", "CMD", "ARG", "LABEL"):
                pass  # read from the final stage below
            else:
                pytest.fail(f"Dockerfile instruction {keyword} {rest!r} is not replayed by {__name__}: extend the test")

    env: dict[str, str] = {}
    for rest in final.all("ENV"):
        env.update(parse_env(rest))
    healthcheck = final.last("HEALTHCHECK")
    cmd = final.last("CMD")
    assert healthcheck, "the final stage has no HEALTHCHECK"
    assert cmd, "the final stage has no CMD"
    options, probe = parse_healthcheck(healthcheck)
    volumes = [v for rest in final.all("VOLUME") for v in parse_list(rest)]
    exposed = [p.split("/")[0] for rest in final.all("EXPOSE") for p in rest.split()]
    open_up(base)
    for volume in volumes:  # a named volume starts with the image directory's ownership
        assert host(volume).is_dir(), f"VOLUME {volume} is not created by the image"
    return Image(root, venv, user, env, workdir, home, volumes, exposed, image_user, options, probe,
                 parse_exec_or_shell(cmd))


def replay_run(argv: list[str], *, stage_is_final: bool, python: str, venv: Path, user: RunAs,
               host: Any, cwd: Path, logs: Path) -> str | None:
    """Replay one command of a RUN line; returns the home directory when it creates the user."""
    pip = pip_args(argv) if len(argv) > 1 else None

    def paths(args: list[str]) -> list[str]:
        mapped: list[str] = []
        for arg in args:
            if not arg.startswith("/"):
                mapped.append(arg)
            elif any(ch in arg for ch in "*?["):
                matches = sorted(glob.glob(str(host(arg))))
                assert matches, f"{arg} matches nothing: the build step left nothing to install"
                mapped.extend(matches)
            else:
                mapped.append(str(host(arg)))
        return mapped

    if pip and pip[0] == "wheel":
        run_step([python, "-m", "pip", *paths(pip)], "pip wheel", logs, cwd=cwd, env=build_env())
    elif pip and pip[0] == "install":
        assert stage_is_final, "pip install in a build stage is not replayed"
        # --no-index and no pip configuration: exactly the wheels the build stage made, nothing else.
        env = {k: v for k, v in build_env().items() if not k.startswith("PIP_")}
        env["PIP_CONFIG_FILE"] = os.devnull
        run_step([str(venv / "bin" / "pip"), "install", "--no-index", *paths(pip[1:])], "pip install", logs,
                 cwd=cwd, env=env)
    elif argv[0] == "useradd":
        for option, value in itertools.pairwise(argv):
            if option in ("--home-dir", "-d"):
                return value
        return "/"
    elif argv[0] == "mkdir":
        for path in (a for a in argv[1:] if not a.startswith("-")):
            host(path).mkdir(parents=True, exist_ok=True)
    elif argv[0] == "chown":
        for path in (a for a in argv[2:] if not a.startswith("-")):
            if os.geteuid() == 0:
                os.chown(host(path), user.uid, user.gid)  # the image's user, here `nobody`
    elif argv[:2] == ["rm", "-rf"]:
        pass  # clean-up inside the image; the temporary root goes at the end of the test
    else:
        pytest.fail(f"Dockerfile RUN command {shlex.join(argv)!r} is not replayed by {__name__}: extend the test")
    return None


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A temporary tree the non-root user can reach (pytest's tmp_path sits under a 0700 dir)."""
    base = Path(tempfile.mkdtemp(prefix="dersync-container-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        for path in [base, *base.rglob("*")]:  # the read-only workdir must be writable to remove it
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def sim_config() -> SimulatorConfig:
    return SimulatorConfig(participant_id=PARTICIPANT)


# ---------------------------------------------------------------------------------------- test
async def run_healthcheck(image: Image, argv: list[str], env: dict[str, str], timeout: float) -> tuple[int, str]:
    """One HEALTHCHECK run as Docker does it: the image's user, env and WORKDIR, its --timeout."""
    process = await asyncio.create_subprocess_exec(
        *image.user.prefix, *argv, env=env, cwd=image.host(image.workdir),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout=timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        return -1, f"timed out after {timeout} s"
    return process.returncode or 0, out.decode(errors="replace")[-2000:]


async def get_status(url: str) -> int:
    async with aiohttp.ClientSession() as session:
        try:
            async with session.get(url) as response:
                return response.status
        except aiohttp.ClientConnectionError:
            return 0


@pytest.fixture
async def started(scratch: Path, simulator: Simulator) -> AsyncIterator[dict[str, Any]]:
    image = build_image(scratch)
    admin_host, _, image_port = image.env["DERSYNC_ADMIN_BIND"].rpartition(":")
    port = free_port()
    env = {
        "PATH": f"{image.venv / 'bin'}:{IMAGE_PATH}",
        "LANG": "C.UTF-8",
        "HOME": str(image.host(image.home)),
    }
    for key, value in image.env.items():
        for volume in image.volumes:  # sqlite:////data/dersync.db -> the volume in the temporary root
            value = value.replace(f"sqlite:///{volume.rstrip('/')}/", f"sqlite:///{image.host(volume)}/")
        env[key] = value
    env["DERSYNC_ADMIN_BIND"] = f"127.0.0.1:{port}"
    env.update(as_environment(simulator.client_settings()))
    executable = shutil.which(image.cmd[0], path=env["PATH"])
    assert executable and Path(executable).parent == image.venv / "bin", (
        f"CMD {image.cmd[0]!r} is not a script the install step put in the image's bin directory"
    )
    workdir = image.host(image.workdir)
    workdir.chmod(0o555)  # like /app in the image: owned by root, not writable by the service
    stdout_path, stderr_path = scratch / "logs" / "stdout.log", scratch / "logs" / "stderr.log"
    with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            *image.user.prefix, executable, *image.cmd[1:], env=env, cwd=workdir, stdout=stdout, stderr=stderr,
        )
        try:
            yield {
                "image": image, "env": env, "process": process, "port": port, "image_port": image_port,
                "admin_host": admin_host, "stdout": stdout_path, "stderr": stderr_path,
            }
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


def output(started: dict[str, Any]) -> str:
    return (f"--- stdout\n{started['stdout'].read_text(errors='replace')[-3000:]}"
            f"\n--- stderr\n{started['stderr'].read_text(errors='replace')[-3000:]}")


@pytest.mark.timeout(240)
async def test_image_builds_starts_as_non_root_passes_its_healthcheck_and_stops_cleanly(
    started: dict[str, Any], simulator: Simulator
) -> None:
    """The Dockerfile's steps, replayed: wheels built from the COPY'd sources install with no
    index into a clean Python; `CMD` started from that install as a non-root user, in the
    image's (read-only, empty-config) WORKDIR with only the image's ENV plus AEMO's endpoints
    and credentials, passes the image's own HEALTHCHECK command within 60 s and becomes ready;
    on SIGTERM it exits 0; its stdout is JSON lines without the client secret; the SQLite store
    is created on the VOLUME, owned by the service's user."""
    image: Image = started["image"]
    process = started["process"]

    # The image's settings agree with each other: a non-root USER, the admin port exposed and probed.
    assert image.image_user and image.image_user not in ("root", "0"), "the image must not run as root"
    assert started["image_port"] in image.exposed, "DERSYNC_ADMIN_BIND's port is not EXPOSEd"
    probe = [arg.replace(f":{started['image_port']}/", f":{started['port']}/") for arg in image.healthcheck]
    assert probe != image.healthcheck, "the HEALTHCHECK does not probe DERSYNC_ADMIN_BIND's port"
    assert started["admin_host"] in ("0.0.0.0", "::", ""), "the admin endpoint must listen beyond the container"
    assert not any(image.host(image.workdir).rglob("*.toml")), "the WORKDIR must not ship a config file"

    timeout = seconds(image.healthcheck_options.get("timeout", "30s")) or 30.0
    loop = asyncio.get_running_loop()
    end = loop.time() + DEADLINE_SECONDS
    while (result := await run_healthcheck(image, probe, started["env"], timeout))[0] != 0:
        assert process.returncode is None, (f"the service exited ({process.returncode}) before it was healthy\n"
                                            f"{output(started)}")
        assert loop.time() < end, (f"HEALTHCHECK {shlex.join(probe)!r} still failing after {DEADLINE_SECONDS} s: "
                                   f"exit {result[0]}, {result[1]}\n{output(started)}")
        await asyncio.sleep(0.2)

    readyz = f"http://127.0.0.1:{started['port']}/readyz"
    while await get_status(readyz) != 200:
        assert process.returncode is None, (f"the service exited ({process.returncode}) before it was ready\n"
                                            f"{output(started)}")
        assert loop.time() < end, f"/readyz not 200 after {DEADLINE_SECONDS} s\n{output(started)}"
        await asyncio.sleep(0.1)

    process.send_signal(signal.SIGTERM)
    try:
        code = await asyncio.wait_for(process.wait(), timeout=DEADLINE_SECONDS)
    except TimeoutError:
        pytest.fail(f"no exit within {DEADLINE_SECONDS} s of SIGTERM\n{output(started)}")
    assert code == 0, f"exit code {code} after SIGTERM\n{output(started)}"

    stdout = started["stdout"].read_text()
    stderr = started["stderr"].read_text()
    events = []
    for line in filter(None, stdout.splitlines()):
        try:
            events.append(json.loads(line)["event"])
        except (ValueError, KeyError, TypeError):
            pytest.fail(f"stdout line is not a JSON log event: {line!r}")
    assert "daemon.ready" in events and events[-1] == "daemon.stopped", events
    secret = simulator.config.client_secret
    assert secret not in stdout and secret not in stderr, "the client secret reached the logs"
    assert stderr == "", f"unexpected output on stderr:\n{stderr[-3000:]}"

    stores = [p for volume in image.volumes for p in image.host(volume).iterdir()]
    assert stores, "the store was not created on the VOLUME"
    assert all(p.stat().st_uid == image.user.uid for p in stores), "the store is not owned by the service's user"


def test_healthcheck_restarts_a_hung_replica_only_well_after_a_standby_took_over() -> None:
    """The HEALTHCHECK is a liveness probe on /healthz (answered from the event loop, so a hung
    process fails it), and it gives up only after at least twice the default failover setting:
    a standby has long taken over (within DERSYNC_FAILOVER_SECONDS) before the hung replica is
    declared unhealthy and restarted."""
    from dersync.settings import Settings

    healthcheck = parse_dockerfile(DOCKERFILE.read_text())[-1].last("HEALTHCHECK")
    assert healthcheck is not None
    options, probe = parse_healthcheck(healthcheck)
    assert any("/healthz" in part for part in probe), probe
    interval = seconds(options.get("interval", "30s"))
    retries = int(options.get("retries", "3"))
    assert interval is not None and interval * retries >= 2 * Settings.model_fields["failover_seconds"].default
