"""Night sessions from bed entries and exits against the local clock (service/sessions.py)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from service.config import load_config
from service.sessions import End, SessionRules, SessionTracker, Start, rules_from_config

BERLIN = ZoneInfo("Europe/Berlin")
RULES = SessionRules(tz=BERLIN)


def at(day: int, hh: int, mm: int = 0) -> datetime:
    return datetime(2026, 11, day, hh, mm, tzinfo=BERLIN)


def run(steps: list[tuple[datetime, bool | None]], until: datetime) -> list[Start | End]:
    """Feed bed changes (None = just time passing), then tick every minute until ``until``."""
    tracker = SessionTracker(RULES)
    actions: list[Start | End] = []
    for t, in_bed in steps:
        actions += tracker.tick(t) if in_bed is None else tracker.bed(t, in_bed)
    t = steps[-1][0]
    while t < until:
        t += timedelta(minutes=1)
        actions += tracker.tick(t)
    return actions


def test_a_long_bathroom_trip_does_not_split_the_night_and_the_morning_exit_ends_it() -> None:
    actions = run(
        [(at(20, 22, 30), True), (at(21, 3, 0), False), (at(21, 3, 50), True), (at(21, 7, 10), False)],
        until=at(21, 9),
    )
    assert actions == [
        Start(at(20, 22, 30), date(2026, 11, 20), "night", "bed_entry"),
        End(at(21, 7, 10), "night", "bed_exit"),
    ]


def test_back_in_bed_after_a_morning_exit_keeps_the_night_going() -> None:
    actions = run(
        [(at(20, 23), True), (at(21, 7), False), (at(21, 7, 10), True), (at(21, 8), False)], until=at(21, 10)
    )
    assert [a for a in actions if isinstance(a, End)] == [End(at(21, 8), "night", "bed_exit")]


def test_the_exit_must_stay_empty_for_the_confirm_time() -> None:
    actions = run([(at(20, 23), True), (at(21, 7), False)], until=at(21, 7, 19))
    assert not any(isinstance(a, End) for a in actions)
    actions = run([(at(20, 23), True), (at(21, 7), False)], until=at(21, 7, 20))
    assert actions[-1] == End(at(21, 7), "night", "bed_exit")


def test_a_night_begun_after_midnight_belongs_to_the_previous_evening() -> None:
    actions = run([(at(21, 0, 30), True)], until=at(21, 1))
    assert actions == [Start(at(21, 0, 30), date(2026, 11, 20), "night", "bed_entry")]


def test_an_afternoon_nap_is_a_nap_ended_by_a_short_absence() -> None:
    actions = run([(at(21, 14), True), (at(21, 14, 40), False)], until=at(21, 15, 30))
    assert actions == [
        Start(at(21, 14), date(2026, 11, 21), "nap", "bed_entry"),
        End(at(21, 14, 40), "nap", "bed_exit"),
    ]


def test_in_bed_before_the_evening_window_becomes_the_night() -> None:
    actions = run(
        [(at(21, 18), True), (at(22, 2), False), (at(22, 2, 15), True), (at(22, 6, 30), False)],
        until=at(22, 8),
    )
    assert actions == [
        Start(at(21, 18), date(2026, 11, 21), "nap", "bed_entry"),
        End(at(22, 6, 30), "night", "bed_exit"),
    ]


def test_a_long_daytime_sleep_counts_as_a_night_for_shift_work() -> None:
    actions = run([(at(21, 8, 30), True), (at(21, 15), False)], until=at(21, 16))
    assert actions[-1] == End(at(21, 15), "night", "bed_exit")


def test_an_empty_bed_since_3am_ends_the_night_at_the_morning_limit() -> None:
    actions = run([(at(20, 22), True), (at(21, 3), False)], until=at(21, 14))
    assert actions[-1] == End(at(21, 3), "night", "morning_limit")
    assert sum(isinstance(a, End) for a in actions) == 1


def test_commands_start_and_stop_a_night_and_are_ignored_when_redundant() -> None:
    tracker = SessionTracker(RULES)
    assert tracker.command_start(at(21, 15)) == [Start(at(21, 15), date(2026, 11, 21), "night", "command")]
    assert tracker.command_start(at(21, 15, 5)) == []
    assert tracker.bed(at(21, 15, 10), True) == []  # already open: no second start
    assert tracker.command_stop(at(21, 16)) == [End(at(21, 16), "night", "command")]
    assert tracker.command_stop(at(21, 16, 1)) == []


def test_rules_follow_the_config() -> None:
    cfg = load_config(
        environ={},
        overrides={
            "sessions": {"evening_start": "21:00", "exit_confirm_min": 5.0, "timezone": "Europe/Berlin"}
        },
    )
    rules = rules_from_config(cfg.sessions)
    assert not rules.in_evening(at(21, 20, 30)) and rules.in_evening(at(21, 21, 0))
    assert rules.exit_confirm == timedelta(minutes=5)
    assert rules.local(at(21, 12)).utcoffset() == timedelta(hours=1)


def test_a_night_started_by_command_in_the_afternoon_waits_for_its_own_morning() -> None:
    """The morning rules count from the night's own morning: a night started at 17:00 with the bed
    still empty is not ended by the morning limit (13:00) that passed before it began."""
    tracker = SessionTracker(RULES)
    assert tracker.command_start(at(21, 17)) == [Start(at(21, 17), date(2026, 11, 21), "night", "command")]
    actions: list[Start | End] = []
    t = at(21, 17)
    while t < at(22, 4):
        t += timedelta(minutes=1)
        actions += tracker.tick(t)
        if t == at(21, 22, 40):
            actions += tracker.bed(t, True)
    assert actions == [], "nothing ends the night before its morning"
    actions += tracker.bed(at(22, 7, 5), False)
    t = at(22, 7, 5)
    while t < at(22, 8):
        t += timedelta(minutes=1)
        actions += tracker.tick(t)
    assert actions == [End(at(22, 7, 5), "night", "bed_exit")]


def test_a_night_never_slept_in_ends_at_its_own_morning_limit() -> None:
    tracker = SessionTracker(RULES)
    tracker.command_start(at(21, 16))
    assert tracker.tick(at(21, 16, 1)) == [] and tracker.tick(at(22, 12, 59)) == []
    assert tracker.tick(at(22, 13, 0)) == [End(at(21, 16), "night", "morning_limit")]


def test_a_night_started_by_command_inside_the_morning_window_uses_that_morning() -> None:
    """A day sleeper after a night shift: started at 06:00, up at 12:00, the night ends then."""
    tracker = SessionTracker(RULES)
    tracker.command_start(at(21, 6))
    tracker.bed(at(21, 6, 1), True)
    assert tracker.bed(at(21, 12), False) == []
    assert tracker.tick(at(21, 12, 19)) == []
    assert tracker.tick(at(21, 12, 20)) == [End(at(21, 12), "night", "bed_exit")]


def test_own_morning_is_the_next_morning_start_outside_the_morning_window() -> None:
    assert RULES.own_morning(at(21, 17)) == at(22, 5)
    assert RULES.own_morning(at(21, 23)) == at(22, 5)
    assert RULES.own_morning(at(22, 1)) == at(22, 5)
    assert RULES.own_morning(at(22, 6)) == at(22, 6)
    assert RULES.own_morning(at(22, 13)) == at(23, 5)
