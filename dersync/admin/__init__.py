"""The admin surface: /healthz, /readyz and /metrics over HTTP (aiohttp.web)."""

from dersync.admin.http import AdminServer
from dersync.admin.metrics import Metrics

__all__ = ["AdminServer", "Metrics"]
