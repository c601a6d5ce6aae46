"""Commands that arrive on ``<base>/<unit>/cmd/<name>``: parsed and validated here (pure).

| topic            | payload                                           | effect                          |
|------------------|---------------------------------------------------|---------------------------------|
| ``cmd/night``    | ``start`` or ``stop`` (or ``{"action": ...}``)    | start or end tonight's tracking |
| ``cmd/mark``     | a kind (``spasm``) or ``{"kind": ..., "note": ...}`` | an annotation on tonight      |
| ``cmd/profile``  | ``aasm`` or ``wasm2016``                          | the PLM rule profile            |

Anything else is a :class:`CommandError` naming the problem; the daemon logs it and ignores
the message. No command deletes data. Text that JSON can carry but UTF-8 cannot (a lone UTF-16
surrogate such as ``"\\ud800"``) is replaced by U+FFFD in every string field, so a note keeps the
rest of its text and a kind, action or profile with one is refused as not one of the allowed words.
A retained command is never applied (see ``service.mqtt``): it would be applied again at every
reconnect.

The daemon applies commands and the bedside button's presses (:class:`ButtonPress`) one at a
time, in arrival order.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Final

from service.errors import BedsideError

MAX_PAYLOAD_BYTES: Final = 1024
MAX_NOTE_CHARS: Final = 500
PROFILES: Final = ("aasm", "wasm2016")
_KIND = re.compile(r"^[a-z][a-z_]{0,31}$")
_SURROGATE = re.compile("[\ud800-\udfff]")


class CommandError(BedsideError, ValueError):
    """A command that is malformed, unknown or out of range."""


@dataclass(frozen=True, slots=True)
class NightCommand:
    """Start or stop tonight's tracking."""

    action: str


@dataclass(frozen=True, slots=True)
class MarkCommand:
    """A user's mark on the night."""

    kind: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class ProfileCommand:
    """Switch the PLM rule profile."""

    profile: str


@dataclass(frozen=True, slots=True)
class ButtonPress:
    """The bedside button: ``"mark"`` (a short press) or ``"awake"`` (held)."""

    action: str


Command = NightCommand | MarkCommand | ProfileCommand


def _text(value: str) -> str:
    """``value`` with every lone UTF-16 surrogate (valid in JSON, not encodable as UTF-8) as U+FFFD."""
    return _SURROGATE.sub("\ufffd", value)


def _text_or_field(payload: bytes, field: str) -> tuple[str, dict[str, object]]:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise CommandError(f"payload of {len(payload)} bytes is over the {MAX_PAYLOAD_BYTES}-byte limit")
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise CommandError("payload is not UTF-8 text") from None
    if text.startswith("{"):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CommandError(f"payload is not valid JSON ({exc.msg})") from None
        if not isinstance(doc, dict):
            raise CommandError("JSON payload must be an object")
        value = doc.get(field)
        if not isinstance(value, str):
            raise CommandError(f"JSON payload needs a string {field!r}")
        return _text(value).strip(), doc
    return text, {}


def parse_command(name: str, payload: bytes) -> Command:
    """The command for topic suffix ``name`` and its payload, or CommandError saying what is wrong."""
    if name == "night":
        action, _ = _text_or_field(payload, "action")
        action = action.lower()
        if action not in ("start", "stop"):
            raise CommandError(f"cmd/night takes 'start' or 'stop', got {action[:40]!r}")
        return NightCommand(action)
    if name == "mark":
        kind, doc = _text_or_field(payload, "kind")
        kind = (kind or "spasm").lower()
        if not _KIND.match(kind):
            raise CommandError(f"cmd/mark kind must be a lower-case word (a-z, _), got {kind[:40]!r}")
        note = doc.get("note", "")
        if not isinstance(note, str):
            raise CommandError("cmd/mark note must be a string")
        if len(note) > MAX_NOTE_CHARS:
            raise CommandError(f"cmd/mark note is over {MAX_NOTE_CHARS} characters")
        return MarkCommand(kind, _text(note))
    if name == "profile":
        profile, _ = _text_or_field(payload, "profile")
        profile = profile.lower()
        if profile not in PROFILES:
            raise CommandError(f"cmd/profile takes one of {', '.join(PROFILES)}, got {profile[:40]!r}")
        return ProfileCommand(profile)
    raise CommandError(f"unknown command {name[:60]!r} (known: night, mark, profile)")
