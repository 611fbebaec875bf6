"""The record shapes AEMO receives, defined once, and the local validation built on them."""

from dersync.models.installation import AcConnection, Device, Installation
from dersync.models.nmi import NmiDetails
from dersync.models.validation import LocalProblem, PartCheck, RecordCheck, check_record

__all__ = [
    "AcConnection",
    "Device",
    "Installation",
    "LocalProblem",
    "NmiDetails",
    "PartCheck",
    "RecordCheck",
    "check_record",
]
