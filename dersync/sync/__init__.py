"""The sync engine: store → plan → validate → send → record outcome."""

from dersync.sync.engine import SyncEngine, sync_once
from dersync.sync.summary import PassSummary

__all__ = ["PassSummary", "SyncEngine", "sync_once"]
