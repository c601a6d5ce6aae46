"""Parsing what users send: whole numbers, free text, the page after login, ids in URLs.

Every number, text field and redirect target the web app reads goes through one helper here,
so an odd value gets the same clear 4xx everywhere instead of a 500 from deep inside:

- ``parse_int``: ASCII digits only (``"²"`` and ``"٣"`` pass ``str.isdigit`` but are refused),
  within SQLite's int64 range and the caller's bounds; ``BadInput`` (400) names the field.
- ``clean_text``: user text as SQLite can store it: lone surrogates (``"\\ud800"``, possible in
  JSON) become U+FFFD, control characters other than tab and newline are dropped.
- ``safe_next``: the page after login, accepted only as a path on this site.
- ``Int64Converter``: the ``<id64:...>`` URL part; a number beyond int64 is a 404 naming it.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from werkzeug.exceptions import BadRequest, NotFound
from werkzeug.routing import BaseConverter, Map

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
"""SQLite's INTEGER range: a larger Python int raises OverflowError when bound."""

_DIGITS = re.compile(r"-?[0-9]{1,19}")
_PATH_CHARS = re.compile(r"[!#-~]*")
"""Printable ASCII without space, quote or DEL: what a redirect target may consist of."""


class BadInput(BadRequest):
    """A value the user sent that cannot be used (400); ``parameter`` names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(description=f"{field}: {message}")
        self.parameter = field


def parse_int(text: str, field: str, low: int = INT64_MIN, high: int = INT64_MAX) -> int:
    """``text`` as an int from ``low`` to ``high`` (both within int64), else ``BadInput``.

    Only ASCII digits with an optional leading ``-`` are accepted: no spaces, ``+``, ``_`` or
    other scripts' digits, which Python's ``int()`` would take.
    """
    low, high = max(low, INT64_MIN), min(high, INT64_MAX)
    expected = f"must be a whole number from {low} to {high}, got {text!r}"
    if not _DIGITS.fullmatch(text):
        raise BadInput(field, expected)
    value = int(text)
    if not low <= value <= high:
        raise BadInput(field, expected)
    return value


def clean_text(text: str) -> str:
    """User text as it may be stored: lone surrogates -> U+FFFD, control characters dropped.

    Tab, newline and carriage return are kept (a note may have lines). Everything else in
    Unicode category Cc (NUL, escape, ...) is removed. Length limits stay with
    ``service.history.user_data``, which names the field.
    """
    if text.isascii() and text.isprintable():
        return text
    kept = []
    for c in text:
        category = unicodedata.category(c)
        if category == "Cs":  # a lone surrogate: JSON can carry one, UTF-8 (and SQLite) cannot
            kept.append("\ufffd")
        elif category != "Cc" or c in "\t\n\r":
            kept.append(c)
    return "".join(kept)


def clean_json(value: Any) -> Any:
    """A parsed JSON value with every string in it (keys too) passed through ``clean_text``."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list):
        return [clean_json(v) for v in value]
    if isinstance(value, dict):
        return {clean_text(str(k)): clean_json(v) for k, v in value.items()}
    return value


def safe_next(target: str | None) -> str | None:
    """``target`` if it is a path on this site, else None (the caller picks its default page).

    Accepted: ``/`` followed by printable ASCII without spaces, backslashes or a second ``/``
    at the start. Browsers drop tabs and newlines from URLs, so ``/\\t/evil.example`` would
    become ``//evil.example`` (another site); any control character is refused, which also
    keeps CR/LF out of the ``Location`` header.
    """
    if not target or not target.startswith("/") or target.startswith("//"):
        return None
    if "\\" in target or not _PATH_CHARS.fullmatch(target):
        return None
    return target


class Int64Converter(BaseConverter):
    """``<id64:name>``: ASCII digits within int64; beyond it, 404 ``no such id`` (not a 500)."""

    regex = r"[0-9]+"
    part_isolating = True

    def __init__(self, map: Map, field: str = "id") -> None:
        super().__init__(map)
        self.field = field

    def to_python(self, value: str) -> int:
        try:
            return parse_int(value, self.field, 0, INT64_MAX)
        except BadInput:
            message = f"{self.field}: no item with id {value} (ids are at most {INT64_MAX})"
            raise NotFound(description=message) from None

    def to_url(self, value: Any) -> str:
        return str(int(value))
