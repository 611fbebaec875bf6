"""Running unattended: the scheduled service and the choice of which replica leads."""

from dersync.daemon.service import Service

__all__ = ["Service"]
