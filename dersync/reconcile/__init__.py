"""Reconciliation: compare the store with what AEMO holds, report drift, repair by re-pushing.

`reconcile` (the nightly pass), `plan_dry_run` (what `sync --dry-run` prints), and the pure
comparison in `compare`.
"""

from dersync.reconcile.dry_run import plan_dry_run
from dersync.reconcile.findings import DriftFinding, ReconcileReport
from dersync.reconcile.reconciler import reconcile

__all__ = ["DriftFinding", "ReconcileReport", "plan_dry_run", "reconcile"]
