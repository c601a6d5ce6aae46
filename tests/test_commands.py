"""Command payloads with text JSON can carry but UTF-8 cannot (a lone UTF-16 surrogate): every string
field of every command either keeps its text with U+FFFD in place of the surrogate, or is refused."""

from __future__ import annotations

import sqlite3

import pytest

from service.commands import CommandError, MarkCommand, parse_command

LONE = ["\\ud800", "\\udbff", "\\udc00", "\\udfff"]


@pytest.mark.parametrize("escape", LONE)
def test_a_note_with_a_lone_surrogate_keeps_its_text_with_a_replacement_character(escape: str) -> None:
    command = parse_command("mark", f'{{"kind": "spasm", "note": "left {escape} leg"}}'.encode())
    assert command == MarkCommand("spasm", "left \ufffd leg")
    sqlite3.connect(":memory:").execute("SELECT ?", (command.note,))  # storable: no UnicodeEncodeError


def test_a_surrogate_pair_in_json_is_one_character_and_kept() -> None:
    command = parse_command("mark", b'{"kind": "spasm", "note": "\\ud83d\\ude00"}')
    assert command == MarkCommand("spasm", "\U0001f600")


@pytest.mark.parametrize(
    ("name", "payload"),
    [
        ("night", '{"action": "st\\ud800op"}'),
        ("night", '{"action": "\\udfff"}'),
        ("mark", '{"kind": "sp\\udc00asm"}'),
        ("profile", '{"profile": "aasm\\ud800"}'),
    ],
)
def test_a_lone_surrogate_in_an_action_kind_or_profile_is_refused_naming_the_field(
    name: str, payload: str
) -> None:
    with pytest.raises(CommandError) as err:
        parse_command(name, payload.encode())
    message = str(err.value)
    assert f"cmd/{name}" in message
    message.encode("utf-8")  # the log line it becomes is writable
