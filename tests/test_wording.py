"""Counts in messages read as English."""

from __future__ import annotations

from dersync.wording import plural


def test_plural_agrees_with_the_count() -> None:
    """One of a thing is singular; none or several are plural (irregular plurals given)."""
    assert [plural(n, "record") for n in (0, 1, 2)] == ["0 records", "1 record", "2 records"]
    assert plural(1, "connection or device", "connections or devices") == "1 connection or device"
    assert plural(3, "connection or device", "connections or devices") == "3 connections or devices"
