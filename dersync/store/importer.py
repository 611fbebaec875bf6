"""`dersync import`: JSON Lines (or one JSON array) of records into the store.

Each object is `{"nmiDetails": {...}, "installation": {...}}`; either key may be absent, and a
present key replaces that part of the NMI's stored record. The file is streamed in batches, so a
file of millions of lines needs no more memory than one batch. A line that is not JSON (or not
UTF-8, or has no NMI, or cannot be stored faithfully: see `to_input_row`) is reported with its
line number and skipped; anything else is stored as it is: judging content is the sync pass's
job, which reports it per field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import ijson

from dersync.store import ABSENT, InputRow, Store
from dersync.wording import plural

BATCH_SIZE = 1000
PARTS = {"nmiDetails": "nmi_details", "installation": "installation"}
#: An import object nests at most 7 levels (installation, acConnections, a connection, devices,
#: a device, details, a value). Deeper lines are refused here: local validation's JSON reader
#: stops at about 250 levels and could then name no field.
MAX_NESTING = 64
#: An NMI is 10 characters. A longer or malformed one is stored and reported by the sync pass
#: against the field; text that cannot be a key (this long, or not printable) is refused here.
MAX_NMI_KEY_CHARS = 100


@dataclass(frozen=True)
class ImportProblem:
    line: int
    message: str
    #: Reading stopped here: nothing after this point of the file was looked at.
    stopped_reading: bool = False

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class ImportReport:
    lines: int = 0
    stored: int = 0
    problems: list[ImportProblem] = field(default_factory=list)
    #: False when a problem stopped the reading (a JSON array broken part-way).
    read_to_end: bool = True

    def failure(self) -> str | None:
        """Why the import failed as a whole, or None when it did its job.

        Skipped lines beside stored records are the source system's data problems, reported
        line by line; but a file not read to its end, or holding content of which nothing
        could be stored (a binary file, the wrong file), means the records did not arrive.
        """
        if not self.read_to_end:
            return f"was not read to its end (see the problem above); {plural(self.stored, 'record')} stored"
        if self.stored == 0 and self.lines > 0:
            return f"holds no record that could be stored ({plural(len(self.problems), 'problem')})"
        return None


async def import_file(
    store: Store,
    path: Path,
    *,
    on_progress: Callable[[int], None] | None = None,
    batch_size: int = BATCH_SIZE,
) -> ImportReport:
    """Stream `path` into the store; `on_progress` receives bytes read so far."""
    report = ImportReport()
    batch: list[InputRow] = []
    with path.open("rb") as handle:
        for number, item in _items(handle):
            report.lines = number
            if on_progress is not None and number % 200 == 0:
                on_progress(handle.tell())
            if isinstance(item, ImportProblem):
                report.problems.append(item)
                report.read_to_end = report.read_to_end and not item.stopped_reading
                continue
            row = to_input_row(item)
            if isinstance(row, str):
                report.problems.append(ImportProblem(number, row))
                continue
            batch.append(row)
            if len(batch) >= batch_size:
                await store.upsert_inputs(batch)
                report.stored += len(batch)
                batch = []
        if batch:
            await store.upsert_inputs(batch)
            report.stored += len(batch)
        if on_progress is not None:
            on_progress(handle.tell())
    return report


def _items(handle: BinaryIO) -> Iterator[tuple[int, Any]]:
    """Yield (line or element number, parsed object or ImportProblem)."""
    if _first_significant_byte(handle) == b"[":
        yield from _array_items(handle)
    else:
        yield from _line_items(handle)


def _first_significant_byte(handle: BinaryIO) -> bytes:
    start = handle.read(4096).lstrip(b"\xef\xbb\xbf").lstrip()
    handle.seek(0)
    return start[:1]


def _line_items(handle: BinaryIO) -> Iterator[tuple[int, Any]]:
    for number, raw in enumerate(handle, start=1):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            yield number, ImportProblem(number, f"not UTF-8 text (byte {exc.start + 1}); line skipped")
            continue
        try:
            yield number, json.loads(text)
        except json.JSONDecodeError as exc:
            yield number, ImportProblem(number, f"not valid JSON ({exc.msg} at column {exc.colno}); line skipped")
        except RecursionError:
            yield number, ImportProblem(number, "JSON nested too deeply; line skipped")


def _array_items(handle: BinaryIO) -> Iterator[tuple[int, Any]]:
    """Elements of a top-level JSON array; numbered from 1 (there are no lines to speak of)."""
    # The fast C parser turns a lone surrogate escape ("\ud800") into "?", silently changing the
    # record; the pure-Python one keeps it, so `to_input_row` can refuse that element by name.
    # It is 15 times slower, so it reads only files that hold such an escape.
    backend = ijson.get_backend("python") if _has_lone_surrogate_escape(handle) else ijson
    number = 0
    try:
        for number, item in enumerate(backend.items(handle, "item", use_float=True), start=1):
            yield number, item
    except (ijson.JSONError, UnicodeDecodeError) as exc:
        # yajl's message draws a caret under the text over several lines; one line is the report.
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        yield number + 1, ImportProblem(
            number + 1, f"array element {number + 1} is not valid JSON ({reason}); the rest of the file was not read",
            stopped_reading=True,
        )


_HIGH = rb"\\u[dD][89abAB][0-9a-fA-F]{2}"
_LOW = rb"\\u[dD][c-fC-F][0-9a-fA-F]{2}"
_LONE_SURROGATE = re.compile(_HIGH + b"(?!" + _LOW + b")|(?<!" + _HIGH + b")" + _LOW)
_ESCAPE = 6  # bytes in one \\uXXXX escape: a match's length, and the context either side


def _has_lone_surrogate_escape(handle: BinaryIO, chunk_size: int = 1 << 20) -> bool:
    """Whether the file holds a \\u escape of half a UTF-16 pair; reads it once, then rewinds.

    A match counts once the escape before and after it have been read too (the pair's other
    half may lie across a chunk boundary); the last three escapes' worth of bytes are carried
    into the next window for that. An escaped backslash before "ud800" also matches: that only
    costs the slower parser, never a wrong answer.
    """
    try:
        carried, at_start = b"", True
        while True:
            chunk = handle.read(max(chunk_size, 8 * _ESCAPE))
            window, final = carried + chunk, not chunk
            for match in _LONE_SURROGATE.finditer(window):
                seen_before = at_start or match.start() >= _ESCAPE
                seen_after = final or match.end() + _ESCAPE <= len(window)
                if seen_before and seen_after:
                    return True
            if final:
                return False
            carried, at_start = window[-3 * _ESCAPE :], at_start and len(window) <= 3 * _ESCAPE
    finally:
        handle.seek(0)


def to_input_row(item: Any) -> InputRow | str:
    """An import object as a store row, or the reason it cannot be one."""
    if not isinstance(item, dict):
        return f"expected a JSON object, got {type(item).__name__}; skipped"
    unknown = sorted(set(item) - set(PARTS))
    if unknown:
        return (f"unknown {'key' if len(unknown) == 1 else 'keys'} {', '.join(map(repr, unknown))} "
                "(expected nmiDetails and/or installation); skipped")
    if not item:
        return "neither nmiDetails nor installation is present; skipped"
    nmi = _nmi_of(item)
    if nmi is None:
        return "no NMI: nmiDetails.nmi or installation.nmi must be a non-empty string; skipped"
    if len(nmi) > MAX_NMI_KEY_CHARS or not nmi.isprintable():
        shown = ascii(nmi[:20]) + ("..." if len(nmi) > 20 else "")
        return (f"NMI {shown} ({len(nmi):,} characters) cannot be an NMI: at most {MAX_NMI_KEY_CHARS} "
                "printable characters; skipped")
    if _nesting(item) > MAX_NESTING:
        return f"JSON nested deeper than {MAX_NESTING} levels (no AEMO record is); skipped"
    parts: dict[str, Any] = {}
    for key, column in PARTS.items():
        if key in item:
            value = item[key]
            text = None if value is None else json.dumps(value, ensure_ascii=False)
            if text is not None and not _is_unicode(text):
                return (f"{key} holds a \\u escape of a lone surrogate, which is not Unicode text "
                        "(the source system wrote half of a UTF-16 pair); skipped")
            parts[column] = text
    return InputRow(nmi=nmi, nmi_details=parts.get("nmi_details", ABSENT),
                    installation=parts.get("installation", ABSENT))


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _nesting(value: Any) -> int:
    """How deeply objects and arrays nest in `value` (a scalar is 0), without recursion.

    Level by level, carrying only the containers: a record has a few dozen of them among
    hundreds of scalars, and this runs for every line of an import."""
    depth = 0
    level = [value] if type(value) in _CONTAINERS else []
    while level:
        depth += 1
        if depth > MAX_NESTING:
            return depth
        level = [child for node in level for child in (node.values() if type(node) is dict else node)
                 if type(child) in _CONTAINERS]
    return depth


#: What JSON parses objects and arrays to (exactly these types: `json` makes no subclasses).
_CONTAINERS = frozenset({dict, list})


def _nmi_of(item: dict[str, Any]) -> str | None:
    for key in PARTS:
        part = item.get(key)
        nmi = part.get("nmi") if isinstance(part, dict) else None
        if isinstance(nmi, str) and nmi.strip():
            return nmi.strip()
    return None
