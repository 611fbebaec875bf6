"""Shared fixtures: a real store (SQLite file, and PostgreSQL when a server is given) and the
project's AEMO simulator over loopback HTTP. Nothing here mocks the network or the database.

PostgreSQL runs when `DERSYNC_TEST_POSTGRES_URL` names a server (`.ci/run` starts one); each
test then gets a fresh database of its own.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog

from dersync.mock import Simulator, SimulatorConfig, run_simulator
from dersync.settings import Settings
from dersync.store import Store

PARTICIPANT = "TESTNSP"
POSTGRES_URL = os.environ.get("DERSYNC_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(autouse=True)
def _reset_structlog() -> Any:
    """Tests may configure logging; restore structlog's defaults after each one."""
    yield
    structlog.reset_defaults()


@pytest.fixture(params=BACKENDS)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty store: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'dersync.db'}"
        return
    if not POSTGRES_URL:
        pytest.skip("DERSYNC_TEST_POSTGRES_URL is not set (no PostgreSQL server)")
    import asyncpg

    name = f"dersync_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base, _, _ = POSTGRES_URL.rpartition("/")
    yield f"{base}/{name}"
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def sim_config() -> SimulatorConfig:
    """Override in a test module (or parametrise) to switch simulator behaviour."""
    return SimulatorConfig(participant_id=PARTICIPANT, seed=1)


@pytest.fixture
async def simulator(sim_config: SimulatorConfig) -> AsyncIterator[Simulator]:
    async with run_simulator(sim_config) as sim:
        yield sim


@pytest.fixture
def make_settings(database_url: str, simulator: Simulator) -> Callable[..., Settings]:
    """Settings aimed at the simulator and the test store; keyword arguments override."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = dict(
            database_url=database_url,
            participant_id=PARTICIPANT,
            retry_backoff_initial_seconds=0.001,
            retry_backoff_max_seconds=0.01,
            log_format="json",
        )
        values.update(simulator.client_settings())
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    store = await Store.open(settings.database_url)
    try:
        yield store
    finally:
        await store.close()


#: `client_certificate(not_after)` -> (certificate file, key file)
CertificateMaker = Callable[..., tuple[Path, Path]]


@pytest.fixture
def client_certificate(tmp_path: Path) -> CertificateMaker:
    """`client_certificate(not_after, chain=False)`: a TLS client certificate valid until
    `not_after`, issued by a throwaway CA, and its unencrypted key, as PEM files under the test's
    folder. With `chain`, the certificate file holds the CA's certificate after the client's."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("dersync-test-ca")).issuer_name(name("dersync-test-ca"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - timedelta(days=400)).not_valid_after(now + timedelta(days=400))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    numbers = itertools.count(1)

    def make(not_after: datetime, *, chain: bool = False) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(name("dersync-client")).issuer_name(ca.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(min(now, not_after) - timedelta(days=30)).not_valid_after(not_after)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        number = next(numbers)
        cert_file, key_file = tmp_path / f"client-{number}.pem", tmp_path / f"client-{number}.key"
        pem = cert.public_bytes(serialization.Encoding.PEM)
        cert_file.write_bytes(pem + ca.public_bytes(serialization.Encoding.PEM) if chain else pem)
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return cert_file, key_file

    return make
