"""Compliance deadlines: has AEMO accepted each AC connection within the deadline after its
commissioning date? `rules` is the pure arithmetic (business days, deadlines, states; "today" is
always passed in), `report` judges the store's connections (streamed) for the CLI and metrics."""

from dersync.compliance.report import (
    ComplianceCounts,
    ComplianceRow,
    Selection,
    Summary,
    compliance_counts,
    compliance_rows,
)
from dersync.compliance.rules import BusinessCalendar, DeadlineRules, Judgement, commissioning_date

__all__ = [
    "BusinessCalendar", "ComplianceCounts", "ComplianceRow", "DeadlineRules", "Judgement", "Selection", "Summary",
    "commissioning_date", "compliance_counts", "compliance_rows",
]
