"""Counts in messages, as English: `1 record`, `2 records`.

Operators read these lines (and quote them to colleagues); "1 records" or "after 1 attempts"
reads as careless, and careless output makes people doubt the numbers in it.
"""

from __future__ import annotations


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """`count` followed by the noun in the number it needs (`plural_form` for irregular nouns)."""
    noun = singular if count == 1 else (plural_form or singular + "s")
    return f"{count} {noun}"
