"""The operator console: pages, a JSON API and sign-in, served by `dersync run` on the admin
bind address (see `dersync.console.app`)."""

from dersync.console.app import Console
from dersync.console.live import LiveJobs
from dersync.console.runtime import Runtime

__all__ = ["Console", "LiveJobs", "Runtime"]
