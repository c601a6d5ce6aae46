"""Stage 5: is someone in bed? Bed entry and exit with evidence, hysteresis and dwell.

Evidence per window (``presence_window_s``, evaluated every ``vitals_hop_s``):

* movement in the window is a body (occupied);
* otherwise the cardiorespiratory energy (RMS of the 0.05-10 Hz bands) is compared with the
  empty-bed noise floor: at least ``presence_k`` x the floor is occupied, below it is empty;
* until an empty bed has been seen (no floor yet), periodicity decides: a heartbeat or
  breathing autocorrelation peak of at least ``presence_min_periodicity`` is occupied.

The floor is learned from windows that are still, aperiodic and clearly quieter than the
occupied level seen so far; it only goes down (the quietest empty bed), or up slowly if it
turns out to be below the sensor's noise (no window reaches it for an hour).

The state changes only after the opposite evidence has held for ``presence_dwell_s``
(hysteresis with a minimum dwell: no flapping). The first decision sets the state without
an event (the stream may start with someone already in bed); later changes are
``bed_entry`` / ``bed_exit`` events dated from the first window of the new evidence.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.detect.params import DetectorParams


@dataclass(frozen=True, slots=True)
class PresenceChange:
    """A decided change of occupancy (times in seconds of the stream)."""

    in_bed: bool
    since_s: float  # when the new evidence began
    decided_s: float
    first: bool  # the first decision of the stream (no entry/exit event)


class PresenceTracker:
    """Streaming occupancy decision from per-window evidence (one per Detector)."""

    def __init__(self, params: DetectorParams) -> None:
        self.p = params
        self.state: bool | None = None
        self.floor: float | None = params.presence_floor_rms or None  # from calibration, if any
        self.occupied_level: float | None = None
        self.cand: bool | None = None
        self.cand_since = 0.0
        self._floor_age_s = 0.0

    def evidence(self, rms: float, periodicity: float, moving: bool) -> bool:
        """Occupied (True) or empty (False) for one window, updating the floor."""
        p = self.p
        if moving:
            return True
        periodic = periodicity >= p.presence_min_periodicity
        occupied = rms >= p.presence_k * self.floor if self.floor is not None else periodic
        if occupied:
            lvl = self.occupied_level
            self.occupied_level = rms if lvl is None else 0.95 * lvl + 0.05 * rms
        # learn the floor from aperiodic, quiet windows
        quiet = self.occupied_level is None or rms < self.occupied_level / p.presence_k
        if not periodic and quiet and rms > 0 and (self.floor is None or rms < self.floor):
            self.floor = rms
            self._floor_age_s = 0.0
            occupied = False
        return occupied

    def update(self, t_start_s: float, t_end_s: float, occupied: bool) -> PresenceChange | None:
        """Feed one window's evidence; return a decided change, if any."""
        if self.floor is not None:
            self._floor_age_s += self.p.vitals_hop_s
        if self.cand is None or occupied != self.cand:
            self.cand = occupied
            self.cand_since = t_start_s if self.state is None else t_end_s - self.p.vitals_hop_s
        if occupied == self.state:
            return None
        if t_end_s - self.cand_since >= self.p.presence_dwell_s:
            first = self.state is None
            self.state = occupied
            return PresenceChange(occupied, self.cand_since, t_end_s, first)
        return None
