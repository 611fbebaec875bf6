"""Reconciliation tests use the shared fixtures (real simulator, real store on both backends)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from dersync.aemo.client import AemoClient
from dersync.reconcile import ReconcileReport, reconcile
from dersync.settings import Settings
from dersync.store import Store


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AemoClient]:
    async with AemoClient(settings) as aemo:
        yield aemo


async def run_reconcile(settings: Settings, store: Store, **kwargs: Any) -> ReconcileReport:
    """One reconcile pass with its own client (as the CLI runs it)."""
    kwargs.setdefault("repair", True)
    async with AemoClient(settings) as aemo:
        return await reconcile(settings, store, aemo, **kwargs)


def writes(state: Any) -> int:
    """Write requests the simulator received (POST/PUT on the NMI and Installation APIs)."""
    return sum(state.count(route=route) for route in
               ("nmi_create", "nmi_update", "installation_create", "installation_update"))
