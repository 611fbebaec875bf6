"""The record shapes AEMO receives, defined once, and the local validation built on them."""

from dersync.models.installation import AEMO_IDS, AEMO_STAMPS, SERVER_OWNED_FIELDS, AcConnection, Device, Installation
from dersync.models.nmi import NmiDetails
from dersync.models.validation import LocalProblem, PartCheck, RecordCheck, check_record

__all__ = [
    "AEMO_IDS",
    "AEMO_STAMPS",
    "SERVER_OWNED_FIELDS",
    "AcConnection",
    "Device",
    "Installation",
    "LocalProblem",
    "NmiDetails",
    "PartCheck",
    "RecordCheck",
    "check_record",
]
