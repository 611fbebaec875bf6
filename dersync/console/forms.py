"""Reading what a person or a script sent: query parameters, form fields and JSON bodies, each
checked against the vocabulary, with one readable line for whatever is wrong."""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

from dersync.store import ExceptionFilter, Selection
from dersync.vocabulary import ExceptionAge, ExceptionStatus, Level, values

#: Largest JSON body the API reads (bigger ones are refused before they are read whole).
MAX_BODY_BYTES = 1024 * 1024
PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
MAX_REASON_LENGTH = 1000
#: Filter keys, as the API and the pages' query strings spell them.
FILTER_KEYS = ("level", "code", "status", "nmi", "nmiPrefix", "age")
_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
#: "any" (or nothing) is no filter on that field.
_ANY = ("", "any")


class BadInput(Exception):
    """What was sent cannot be used; the message is one line for the person or script."""


def _choice(name: str, value: Any, words: Iterable[str]) -> str | None:
    if value is None or value in _ANY:
        return None
    allowed = list(words)
    if not isinstance(value, str) or value not in allowed:
        raise BadInput(f"{name} must be one of {', '.join(allowed)}, not {_shown(value)}")
    return str(value)


def nmi_value(name: str, value: Any) -> str | None:
    """An NMI as a filter or path names it: printable, no blanks, at most 100 characters."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadInput(f"{name} must be a string, not {_shown(value)}")
    text = value.strip()
    if not text or len(text) > 100 or not all(c.isprintable() and not c.isspace() for c in text):
        raise BadInput(f"{name} must be an NMI (printable, no blanks, at most 100 characters), not {_shown(text)}")
    return text


def exception_filter(params: Mapping[str, Any]) -> ExceptionFilter:
    """The inbox filter from query parameters or a JSON object (keys as in FILTER_KEYS)."""
    code = params.get("code")
    if code in _ANY or code is None:
        code = None
    elif not isinstance(code, str | int) or not _CODE.match(str(code)):
        raise BadInput(f"code must be an exception code such as 2023 or LOCAL, not {_shown(code)}")
    return ExceptionFilter(
        level=Level(level) if (level := _choice("level", params.get("level"), values(Level))) else None,
        code=None if code is None else str(code),
        status=ExceptionStatus(status) if (status := _choice("status", params.get("status"),
                                                             values(ExceptionStatus))) else None,
        nmi=nmi_value("nmi", params.get("nmi")),
        nmi_prefix=nmi_value("nmiPrefix", params.get("nmiPrefix")),
        age=ExceptionAge(age) if (age := _choice("age", params.get("age"), values(ExceptionAge))) else None,
    )


#: NMIs a re-drive preview shows a page (the page and the API alike).
PREVIEW_PAGE_SIZE = 100


def page_count(items: int, size: int) -> int:
    """Pages of `size` that `items` fill; an empty list is still one (empty) page."""
    return max(1, math.ceil(items / size))


def page_of(params: Mapping[str, Any], default_size: int = PAGE_SIZE) -> tuple[int, int]:
    """(page, pageSize): a page from 1, a size from 1 to MAX_PAGE_SIZE."""
    page = _whole("page", params.get("page"), 1, 1, 10_000_000)
    size = _whole("pageSize", params.get("pageSize"), default_size, 1, MAX_PAGE_SIZE)
    return page, size


def _whole(name: str, value: Any, default: int, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, int | str) or not re.fullmatch(r"\d{1,9}", str(value)):
        raise BadInput(f"{name} must be a whole number from {low} to {high}, not {_shown(value)}")
    number = int(value)
    if not low <= number <= high:
        raise BadInput(f"{name} must be a whole number from {low} to {high}, not {number}")
    return number


def only_known(params: Mapping[str, Any], known: Iterable[str], where: str) -> None:
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise BadInput(f"unknown {where} {', '.join(_shown(k) for k in unknown)} (known: {', '.join(known)})")


def reason_of(value: Any, *, required: bool) -> str | None:
    """A reason as typed: trimmed, at most MAX_REASON_LENGTH characters, no control characters
    other than line breaks."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise BadInput("a reason is required (what is being fixed, and by whom)")
        return None
    if not isinstance(value, str):
        raise BadInput(f"reason must be a string, not {_shown(value)}")
    text = value.strip()
    if len(text) > MAX_REASON_LENGTH:
        raise BadInput(f"a reason has at most {MAX_REASON_LENGTH} characters")
    if any(unicodedata.category(c) == "Cc" and c not in "\r\n\t" for c in text):
        raise BadInput("a reason cannot hold control characters")
    return text


def selection_of(body: Mapping[str, Any]) -> Selection:
    """`{"nmis": [...]}` or `{"filter": {...}}` (exactly one), as the API and the pages send it."""
    has_nmis, has_filter = "nmis" in body, "filter" in body
    if has_nmis == has_filter:
        raise BadInput('name the NMIs to re-drive: either "nmis" (a list) or "filter" (an object), not '
                       f"{'both' if has_nmis else 'neither'}")
    if has_nmis:
        nmis = body["nmis"]
        if not isinstance(nmis, list):
            raise BadInput(f'"nmis" must be a list of NMIs, not {_shown(nmis)}')
        named = [nmi_value("nmis[]", nmi) for nmi in nmis]
        if not named:
            raise BadInput('nothing to re-drive: "nmis" is empty')
        return Selection(nmis=tuple(nmi for nmi in named if nmi is not None))
    given = body["filter"]
    if not isinstance(given, dict):
        raise BadInput(f'"filter" must be an object with some of {", ".join(FILTER_KEYS)}, not {_shown(given)}')
    only_known(given, FILTER_KEYS, "filter key")
    flt = exception_filter(given)
    if flt.empty:
        raise BadInput(f'a re-drive filter needs at least one of {", ".join(FILTER_KEYS)} (an empty filter would '
                       "select every NMI with any exception)")
    return Selection(filter=flt)


async def json_body(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    """The request's JSON object; refused before reading when over MAX_BODY_BYTES."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise BadInput(f"the body is larger than {MAX_BODY_BYTES // 1024} KiB")
    raw = await request.content.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise BadInput(f"the body is larger than {MAX_BODY_BYTES // 1024} KiB")
    if not raw.strip() and optional:
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadInput("the body is not JSON") from None
    if not isinstance(body, dict):
        raise BadInput(f"the body must be a JSON object, not {type(body).__name__}")
    return body


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
