"""When a night starts and ends: bed entries and exits against the local clock (pure logic, no I/O).

Rules (``[sessions]`` in the config, local times):

- A bed entry with no session open starts one. Inside the evening window
  (``evening_start``..``evening_end``, e.g. 19:00 to 04:00) it is a *night*; outside it, a
  *daytime session* that becomes a night if it is still open when the evening window begins,
  or if it had at least ``night_min_in_bed_h`` in bed (shift work); otherwise it is a *nap*.
- A night ends at its last bed exit once that exit is after ``morning_start`` and the bed has
  stayed empty for ``exit_confirm_min`` (back in bed sooner: the night goes on). Bed exits
  before ``morning_start`` never end a night, so a long bathroom trip or an hour on the sofa
  at 3 a.m. does not split it. A night whose bed is empty at ``morning_end`` ends then (at its
  last exit), whatever the exit time was. The morning that counts is a night's *own*: the first
  ``morning_start`` after it began (or its start itself when it began inside the morning window),
  so a night started by command at 17:00 is not ended at once by the morning that already passed.
- A daytime session ends at its last exit after ``nap_end_min`` of empty bed.
- A command or the button can start a night at any time and a command can end it.
- ``night_date`` is the local date of the evening a session belongs to: sessions that begin
  before noon belong to the previous day's evening (a night from 00:30, a nap at 09:00 after
  the night ended).

Times are timezone-aware datetimes (the daemon's stream clock, so a jump of the wall clock
does not move them); the tracker converts them to local time for the windows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from service.config import SessionsConfig

Kind = Literal["night", "nap"]


@dataclass(frozen=True, slots=True)
class SessionRules:
    """The ``[sessions]`` settings in the form the tracker uses."""

    evening_start: time = time(19, 0)
    evening_end: time = time(4, 0)
    morning_start: time = time(5, 0)
    morning_end: time = time(13, 0)
    exit_confirm: timedelta = timedelta(minutes=20)
    nap_end: timedelta = timedelta(minutes=10)
    night_min_in_bed: timedelta = timedelta(hours=3)
    tz: tzinfo | None = None

    def local(self, t: datetime) -> datetime:
        """``t`` on the local clock (the configured zone, else the system's)."""
        return t.astimezone(self.tz) if self.tz is not None else t.astimezone()

    def in_evening(self, t: datetime) -> bool:
        """Whether ``t`` falls inside the evening window (which may wrap past midnight)."""
        clock = self.local(t).time()
        start, end = self.evening_start, self.evening_end
        if start <= end:
            return start <= clock < end
        return clock >= start or clock < end

    def in_morning(self, t: datetime) -> bool:
        """Whether ``t`` is at or after ``morning_start`` and before the evening window opens."""
        clock = self.local(t).time()
        return self.morning_start <= clock and not self.in_evening(t)

    def past_morning_end(self, t: datetime) -> bool:
        """Whether ``t`` is at or after ``morning_end`` (and before the evening window opens)."""
        clock = self.local(t).time()
        return self.morning_end <= clock and not self.in_evening(t)

    def own_morning(self, t: datetime) -> datetime:
        """The morning a session that began (or became a night) at ``t`` ends in: ``t`` itself when
        it lies inside the morning window, else the next ``morning_start`` on the local clock."""
        local = self.local(t)
        if self.in_morning(t) and not self.past_morning_end(t):
            return t
        tz = local.tzinfo
        morning = datetime.combine(local.date(), self.morning_start, tzinfo=tz)
        if morning <= local:
            morning = datetime.combine(local.date() + timedelta(days=1), self.morning_start, tzinfo=tz)
        return morning

    def night_date(self, t: datetime) -> date:
        """The evening a session starting at ``t`` belongs to."""
        local = self.local(t)
        return (local - timedelta(days=1)).date() if local.time() < time(12, 0) else local.date()


@dataclass(frozen=True, slots=True)
class Start:
    """Open a session at ``at``."""

    at: datetime
    night_date: date
    kind: Kind
    reason: str


@dataclass(frozen=True, slots=True)
class End:
    """Close the open session at ``at`` (the last bed exit, or the command's time)."""

    at: datetime
    kind: Kind
    reason: str


Action = Start | End


@dataclass
class _Open:
    started: datetime
    kind: Kind
    daytime: bool
    in_bed_since: datetime | None
    #: The morning rules end this session only from here on (``SessionRules.own_morning``).
    morning_from: datetime
    last_exit: datetime | None = None
    in_bed: timedelta = field(default_factory=timedelta)


class SessionTracker:
    """Feed it bed state changes, the passing of time and commands; it says when to start and end."""

    def __init__(self, rules: SessionRules) -> None:
        self.rules = rules
        self._open: _Open | None = None
        self._in_bed: bool | None = None

    @property
    def is_open(self) -> bool:
        """Whether a session is open."""
        return self._open is not None

    def resume(self, started: datetime, kind: Kind, *, in_bed: bool | None, at: datetime) -> None:
        """Continue a session the daemon had open before a restart."""
        self._open = _Open(
            started, kind, daytime=kind == "nap", in_bed_since=at if in_bed else None,
            morning_from=self.rules.own_morning(started),
        )  # fmt: skip
        if not in_bed:
            self._open.last_exit = at

    def bed(self, t: datetime, in_bed: bool) -> list[Action]:
        """The detector's in-bed state at ``t`` (call on every change; repeats are harmless)."""
        was, self._in_bed = self._in_bed, in_bed
        actions: list[Action] = []
        s = self._open
        if in_bed and was is not True:
            if s is None:
                evening = self.rules.in_evening(t)
                kind: Kind = "night" if evening else "nap"
                self._open = _Open(
                    t, kind, daytime=not evening, in_bed_since=t, morning_from=self.rules.own_morning(t)
                )
                actions.append(Start(t, self.rules.night_date(t), kind, "bed_entry"))
            else:
                s.in_bed_since, s.last_exit = t, None
        elif not in_bed and was is True and s is not None:
            if s.in_bed_since is not None:
                s.in_bed += t - s.in_bed_since
            s.in_bed_since, s.last_exit = None, t
        return actions + self.tick(t)

    def tick(self, t: datetime) -> list[Action]:
        """Time has reached ``t``: end the open session if its rule is met."""
        s = self._open
        if s is None:
            return []
        if s.daytime and self.rules.in_evening(t):
            s.daytime, s.kind = False, "night"  # still in bed as the evening begins: tonight's night
            s.morning_from = self.rules.own_morning(t)
        if s.last_exit is None:
            return []
        empty_for = t - s.last_exit
        if s.daytime:
            if empty_for >= self.rules.nap_end:
                kind: Kind = "night" if s.in_bed >= self.rules.night_min_in_bed else "nap"
                return [self._close(s.last_exit, kind, "bed_exit")]
            return []
        if t < s.morning_from:
            return []  # the night's own morning has not come yet
        morning_exit = s.last_exit >= s.morning_from and self.rules.in_morning(s.last_exit)
        if morning_exit and empty_for >= self.rules.exit_confirm:
            return [self._close(s.last_exit, "night", "bed_exit")]
        if self.rules.past_morning_end(t):
            return [self._close(s.last_exit, "night", "morning_limit")]
        return []

    def shift(self, delta: timedelta) -> None:
        """Move the open session's times by ``delta`` (the stream clock was re-anchored)."""
        s = self._open
        if s is None:
            return
        s.started += delta
        s.in_bed_since = None if s.in_bed_since is None else s.in_bed_since + delta
        s.last_exit = None if s.last_exit is None else s.last_exit + delta
        s.morning_from = self.rules.own_morning(s.started)  # the clock of day moved with the jump

    def command_start(self, t: datetime, reason: str = "command") -> list[Action]:
        """A command or the button starts a night now (nothing if one is open)."""
        if self._open is not None:
            return []
        self._open = _Open(
            t, "night", daytime=False, in_bed_since=t if self._in_bed else None,
            morning_from=self.rules.own_morning(t),
        )  # fmt: skip
        if not self._in_bed:
            self._open.last_exit = t
        return [Start(t, self.rules.night_date(t), "night", reason)]

    def command_stop(self, t: datetime, reason: str = "command") -> list[Action]:
        """A command ends the open session now (nothing if none is open)."""
        s = self._open
        if s is None:
            return []
        if s.in_bed_since is not None:
            s.in_bed += t - s.in_bed_since
        kind: Kind = "nap" if s.daytime and s.in_bed < self.rules.night_min_in_bed else "night"
        return [self._close(t, kind, reason)]

    def _close(self, at: datetime, kind: Kind, reason: str) -> End:
        self._open = None
        return End(at, kind, reason)


def rules_from_config(cfg: SessionsConfig) -> SessionRules:
    """SessionRules from the ``[sessions]`` config section."""

    def hhmm(text: str) -> time:
        h, m = text.split(":")
        return time(int(h), int(m))

    tz_name = cfg.timezone
    return SessionRules(
        evening_start=hhmm(cfg.evening_start),
        evening_end=hhmm(cfg.evening_end),
        morning_start=hhmm(cfg.morning_start),
        morning_end=hhmm(cfg.morning_end),
        exit_confirm=timedelta(minutes=cfg.exit_confirm_min),
        nap_end=timedelta(minutes=cfg.nap_end_min),
        night_min_in_bed=timedelta(hours=cfg.night_min_in_bed_h),
        tz=ZoneInfo(tz_name) if tz_name else None,
    )
