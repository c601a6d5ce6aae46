"""A simulated night on a piezo bed sensor: physiological signal with ground truth, and its SampleSource."""

from __future__ import annotations

import logging
import math
from bisect import bisect_right
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Protocol

import numpy as np

from hardware.replay import PacedSource

logger = logging.getLogger(__name__)

TRUTH_TYPES: Final = (
    "jerk",
    "limb_movement",
    "spasm",
    "large_movement",
    "plm_series",
    "restless",
    "awakening",
    "fell_asleep",
    "bed_entry",
    "bed_exit",
    "sensor_fault",
)
"""Truth event types: the same strings as ``service.detect.types.EVENT_TYPES`` (written out,
because ``hardware`` must not import ``service``)."""

ADC_MAX: Final = 4095
"""Full scale of the simulated 12-bit ADC (MCP3208); a glitch reads 0 or this."""
ADC_MID: Final = 2047.5
"""Mid-rail: the piezo is biased here."""
MIN_RATE_HZ: Final = 50.0
MAX_RATE_HZ: Final = 1000.0
MAX_DURATION_S: Final = 48 * 3600.0
NOISE_SEGMENT_S: Final = 10.0
"""Sensor noise is drawn per fixed segment of this length, from an RNG keyed by (seed, segment)."""

_RAIL_KNEE: Final = 1600.0  # deviation from mid-rail where the amplifier starts to saturate softly
_RAIL_LIMIT: Final = 2040.0  # soft saturation never reaches the rails: only glitches read 0/4095
_TEMPLATE_HZ: Final = 5000.0  # resolution of the BCG complex lookup table
_TEMPLATE_S: Final = 0.62  # length of one BCG complex after the heartbeat
_CHUNK: Final = 1 << 17  # samples rendered per internal step (bounds temporary memory)
_CACHE_BURSTS: Final = 16

# RNG stream keys: every random draw comes from default_rng([seed, stream, ...]).
_STREAM_PLAN: Final = 1
_STREAM_NOISE: Final = 2
_STREAM_BURST: Final = 3
_STREAM_GLITCH: Final = 4  # own streams, so switching glitches or hum changes nothing else
_STREAM_HUM: Final = 5

# (BCG gain, breathing gain) by posture: lying on the sensor's side changes what it picks up.
_POSTURES: Final[dict[str, tuple[float, float]]] = {
    "supine": (1.0, 1.0),
    "left": (0.75, 0.8),
    "right": (0.8, 0.85),
    "prone": (0.6, 1.15),
}

# BCG complex (H, I, J, K, L, M waves): delay after the beat (s), relative amplitude, width (s).
_BCG_WAVES: Final = (
    (0.10, 0.25, 0.016),
    (0.15, -0.45, 0.018),
    (0.21, 1.00, 0.022),
    (0.28, -0.75, 0.026),
    (0.36, 0.30, 0.032),
    (0.44, -0.15, 0.036),
)


@dataclass(frozen=True, slots=True)
class TruthEvent:
    """One event the simulator put in the signal, in seconds from the start of the night.

    ``type`` is one of ``TRUTH_TYPES``. Movements span their whole burst (onset to the end
    of the decay). ``bed_entry`` / ``bed_exit`` span the getting in / out motion (rendered
    as a whole-body movement but not listed again as ``large_movement``); ``fell_asleep`` is
    an instant (start == end); ``awakening`` spans the wake bout; ``plm_series`` and
    ``restless`` span their member movements, which are also listed on their own;
    ``sensor_fault`` is one sample. ``note`` qualifies (``clonus``, ``hypnic``, ``plm``,
    ``restless``, ``final``, ``bathroom``, ``cause``, ``posture supine->left`` ...);
    ``details`` holds numbers such as ``rms_counts`` (burst RMS at full envelope),
    ``clonus_hz``, ``movements``, ``mean_interval_s``, ``value``.
    """

    type: str
    start_s: float
    end_s: float
    note: str = ""
    details: dict[str, float] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        """Length of the event in seconds (0 for instants)."""
        return self.end_s - self.start_s


@dataclass(frozen=True, slots=True)
class _Burst:
    """A rendered movement burst: band-limited noise times an envelope, in samples."""

    kind: str  # jerk, limb, spasm, clonus, large, entry, exit
    start_i: int
    n: int
    rms: float
    band_hz: tuple[float, float]
    clonus_hz: float = 0.0


class _Timeline:
    """Free time (s) left to place events in; a placement reserves its span plus margins."""

    def __init__(self, start_s: float, end_s: float) -> None:
        self.free: list[tuple[float, float]] = [(start_s, end_s)] if end_s > start_s else []

    def place(
        self,
        rng: np.random.Generator,
        length_s: float,
        margin_s: float,
        lo_s: float | None = None,
        hi_s: float | None = None,
    ) -> float | None:
        """Return a random start with [start - margin, start + length + margin] free, or None."""
        spans = []
        for a, b in self.free:
            first, last = a + margin_s, b - margin_s - length_s
            if lo_s is not None:
                first = max(first, lo_s)
            if hi_s is not None:
                last = min(last, hi_s)
            if last >= first:
                spans.append((first, last))
        if not spans:
            return None
        weights = np.array([b - a for a, b in spans]) + 1e-3
        a, b = spans[int(rng.choice(len(spans), p=weights / weights.sum()))]
        start = float(rng.uniform(a, b))
        self.reserve(start - margin_s, start + length_s + margin_s)
        return start

    def reserve(self, a: float, b: float) -> None:
        """Remove [a, b] from the free time."""
        out: list[tuple[float, float]] = []
        for fa, fb in self.free:
            if fb <= a or fa >= b:
                out.append((fa, fb))
                continue
            if fa < a:
                out.append((fa, a))
            if fb > b:
                out.append((b, fb))
        self.free = out


class SimulatedNight:
    """A night in bed as a 12-bit piezo ADC would see it, with the truth of what happened.

    Pure and deterministic: the same arguments give the same schedule and the same samples,
    and ``render`` gives the same samples whatever the chunking. The schedule (truth events,
    sleep and bed intervals, heartbeats and breaths) is planned in the constructor, which
    takes a few tens of milliseconds for 8 h; samples are rendered on demand.

    The signal, in ADC counts (float32 holding integers 0..4095): mid-rail bias near 2048
    with slow drift, a ballistocardiogram (J-wave complexes at a sleeping heart rate of
    about 50-75 bpm with respiratory sinus arrhythmia and beat-to-beat jitter), breathing at
    12-18 /min (a few times the BCG amplitude), both scaled by posture (which changes with
    every large movement), sensor noise of about 1-2 counts, optional mains hum, and
    movement bursts (band-limited noise times an envelope, tens of times the BCG) of every
    kind: jerks (< 0.5 s), limb movements (0.5-10 s), spasms (>= 2 s, some as 3-8 Hz clonus),
    large movements (3-45 s), PLM series (>= 4 limb movements 10-80 s apart), restless
    clusters, awakenings, a bathroom trip, bed entry and exit. An empty bed shows only
    noise, drift (and hum). Optional glitches are single samples at 0 or 4095.

    Options: ``occupied`` False gives an empty bed all night; ``bed_entry_s`` fixes when the
    sleeper gets in (default: 60-180 s, at most 10 % of the night); ``bathroom_trip``,
    ``plm_series``, ``restless`` switch those episodes; ``awakenings`` is the number of
    ordinary mid-night awakenings (default 2-4; not counting the bathroom trip, restless
    episodes or the final awakening); ``movements`` False leaves only bed entry/exit
    motions (a still sleeper, for vitals); ``glitches`` adds 3-8 single-sample faults;
    ``mains_hum_hz`` (e.g. 50.0) adds hum of 1-4 counts. Events that do not fit a short
    night are left out. Bad arguments raise ValueError.

    Not thread-safe: ``render`` keeps small caches; use one instance per thread.
    """

    def __init__(
        self,
        seed: int = 0,
        rate_hz: float = 250.0,
        duration_s: float = 8 * 3600.0,
        *,
        occupied: bool = True,
        bed_entry_s: float | None = None,
        bathroom_trip: bool = True,
        plm_series: bool = True,
        restless: bool = True,
        awakenings: int | None = None,
        movements: bool = True,
        glitches: bool = True,
        mains_hum_hz: float | None = None,
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if not (math.isfinite(rate_hz) and MIN_RATE_HZ <= rate_hz <= MAX_RATE_HZ):
            raise ValueError(f"rate_hz must be {MIN_RATE_HZ:g} to {MAX_RATE_HZ:g}, got {rate_hz!r}")
        if not (math.isfinite(duration_s) and 0 < duration_s <= MAX_DURATION_S):
            raise ValueError(f"duration_s must be > 0 and <= {MAX_DURATION_S:g}, got {duration_s!r}")
        if bed_entry_s is not None and not (math.isfinite(bed_entry_s) and bed_entry_s >= 0):
            raise ValueError(f"bed_entry_s must be >= 0 seconds, got {bed_entry_s!r}")
        if awakenings is not None and not 0 <= awakenings <= 20:
            raise ValueError(f"awakenings must be 0 to 20, got {awakenings!r}")
        if mains_hum_hz is not None and not (math.isfinite(mains_hum_hz) and mains_hum_hz > 0):
            raise ValueError(f"mains_hum_hz must be > 0 Hz, got {mains_hum_hz!r}")
        self._seed = int(seed)
        self._rate_hz = float(rate_hz)
        self._duration_s = float(duration_s)
        self._n_samples = max(1, math.floor(self._duration_s * self._rate_hz + 1e-9))
        self._occupied = occupied
        self._bed_entry_s = bed_entry_s
        self._want_bathroom = bathroom_trip
        self._want_plm = plm_series
        self._want_restless = restless
        self._want_awakenings = awakenings
        self._want_movements = movements
        self._want_glitches = glitches
        self._mains_hum_hz = mains_hum_hz

        self.truth: list[TruthEvent] = []
        """Every event, sorted by start time."""
        self.sleep_intervals: list[tuple[float, float]] = []
        """Half-open [start_s, end_s) spans asleep."""
        self.bed_intervals: list[tuple[float, float]] = []
        """Half-open [start_s, end_s) spans in bed, from the start of getting in to the end of
        getting out."""

        self._bursts: list[_Burst] = []
        self._burst_cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._noise_cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._plan()

    # ---------------------------------------------------------------- public, read-only

    @property
    def seed(self) -> int:
        """The seed everything random derives from."""
        return self._seed

    @property
    def rate_hz(self) -> float:
        """Samples per second."""
        return self._rate_hz

    @property
    def duration_s(self) -> float:
        """Length of the night in seconds."""
        return self._duration_s

    @property
    def n_samples(self) -> int:
        """Samples in the night: floor(duration_s * rate_hz)."""
        return self._n_samples

    def events_of(self, event_type: str) -> list[TruthEvent]:
        """The truth events of one type, by start time."""
        return [e for e in self.truth if e.type == event_type]

    def asleep_at(self, t_s: float) -> bool:
        """Whether the sleeper is asleep at ``t_s`` seconds into the night."""
        return _in_intervals(self.sleep_intervals, t_s)

    def in_bed_at(self, t_s: float) -> bool:
        """Whether someone is in bed at ``t_s`` seconds (including getting in and out)."""
        return _in_intervals(self.bed_intervals, t_s)

    def heart_bpm_at(self, t_s: float) -> float | None:
        """The true heart rate (bpm, smoothed: without sinus arrhythmia), None out of bed."""
        if not self.in_bed_at(t_s):
            return None
        return float(np.interp(t_s, self._grid_t, self._hr_bpm))

    def breath_bpm_at(self, t_s: float) -> float | None:
        """The true breathing rate (breaths per minute), None out of bed."""
        if not self.in_bed_at(t_s):
            return None
        return float(np.interp(t_s, self._grid_t, self._br_bpm))

    def render(self, start_index: int, n: int) -> np.ndarray:
        """Samples ``start_index`` to ``start_index + n`` as float32 ADC counts.

        The result is identical whatever the chunking. Raises ValueError for a range outside
        ``0 .. n_samples``. Cost is linear in ``n`` (about 0.2 us per sample) plus, for a
        range that cuts a long movement, that movement's whole burst (cached).
        """
        if n < 0 or start_index < 0 or start_index + n > self._n_samples:
            raise ValueError(
                f"render({start_index}, {n}) is outside the night's 0..{self._n_samples} samples"
            )
        out = np.empty(n, dtype=np.float32)
        for a in range(start_index, start_index + n, _CHUNK):
            b = min(a + _CHUNK, start_index + n)
            out[a - start_index : b - start_index] = self._render_chunk(a, b)
        return out

    def render_all(self) -> np.ndarray:
        """The whole night as float32 (8 h at 250 Hz: 7.2 M samples, 29 MB; a few seconds)."""
        return self.render(0, self._n_samples)

    def __repr__(self) -> str:
        return (
            f"SimulatedNight(seed={self._seed}, rate_hz={self._rate_hz:g}, "
            f"duration_s={self._duration_s:g}, events={len(self.truth)})"
        )

    # ---------------------------------------------------------------- planning

    def _plan(self) -> None:
        rng = np.random.default_rng([self._seed, _STREAM_PLAN])
        dur = self._duration_s
        # Person and sensor: amplitudes in ADC counts.
        self._bcg_pp = float(rng.uniform(12.0, 28.0))
        self._breath_pp = self._bcg_pp * float(rng.uniform(2.5, 5.0))
        self._noise_sd = float(rng.uniform(0.7, 1.8))
        self._dc0 = ADC_MID + float(rng.uniform(-40.0, 40.0))
        self._drift = [
            (
                float(rng.uniform(3.0, 15.0)),
                float(rng.uniform(900.0, 7200.0)),
                float(rng.uniform(0, 2 * math.pi)),
            )
            for _ in range(3)
        ]
        hum_rng = np.random.default_rng([self._seed, _STREAM_HUM])
        self._hum = (
            (
                float(hum_rng.uniform(1.0, 4.0)),
                float(hum_rng.uniform(0, 2 * math.pi)),
                float(hum_rng.uniform(0, 2 * math.pi)),
            )
            if self._mains_hum_hz is not None
            else None
        )
        self._template = _bcg_template(rng)

        events: list[TruthEvent] = []
        rate = self._rate_hz
        bursts: list[tuple[_Burst, str]] = []  # movement truth is made once postures are known

        def burst(kind: str, start_s: float, dur_s: float, note: str = "") -> tuple[float, float]:
            """Add a burst on the sample grid; return its (start_s, end_s) as rendered."""
            rms, band, clonus_hz = self._burst_params(rng, kind)
            start_i = min(round(start_s * rate), self._n_samples - 1)
            n = min(max(1, round(dur_s * rate)), self._n_samples - start_i)
            bursts.append((_Burst(kind, start_i, n, rms, band, clonus_hz), note))
            return start_i / rate, (start_i + n) / rate

        entry: tuple[float, float] | None = None
        exit_: tuple[float, float] | None = None
        if self._occupied and dur >= 120.0:
            delay = self._bed_entry_s
            if delay is None:
                delay = min(float(rng.uniform(60.0, 180.0)), 0.1 * dur)
            entry_len = float(rng.uniform(5.0, 12.0))
            if delay + entry_len + 60.0 <= dur:
                entry = (delay, delay + entry_len)
                tail = min(float(rng.uniform(60.0, 240.0)), 0.05 * dur)
                exit_len = float(rng.uniform(4.0, 10.0))
                if dur - tail - exit_len >= entry[1] + 30.0:
                    exit_ = (dur - tail - exit_len, dur - tail)
        in_bed: list[list[float]] = []
        sleep: list[list[float]] = []
        if entry is not None:
            entry = burst("entry", entry[0], entry[1] - entry[0])
            events.append(TruthEvent("bed_entry", *entry))
            if exit_ is not None:
                exit_ = burst("exit", exit_[0], exit_[1] - exit_[0])
                events.append(TruthEvent("bed_exit", *exit_))
            in_bed.append([entry[0], exit_[1] if exit_ else dur])
            self._plan_sleep(rng, entry, exit_, burst, events, in_bed, sleep)

        # Glitches: single samples at a rail, anywhere in the night.
        self._glitches: dict[int, float] = {}
        if self._want_glitches:
            glitch_rng = np.random.default_rng([self._seed, _STREAM_GLITCH])
            count = int(glitch_rng.integers(3, 9))
            idx = np.unique(glitch_rng.integers(0, self._n_samples, size=count))
            for i in idx.tolist():
                value = float(ADC_MAX if glitch_rng.random() < 0.5 else 0)
                self._glitches[i] = value
                t = i / self._rate_hz
                events.append(
                    TruthEvent(
                        "sensor_fault",
                        t,
                        (i + 1) / self._rate_hz,
                        note="full-scale" if value else "zero",
                        details={"value": value},
                    )
                )

        # Postures change with large movements; movement truth.
        bursts.sort(key=lambda item: item[0].start_i)
        posture = str(rng.choice(list(_POSTURES)))
        gains = self._posture_gains(rng, posture)
        post_x, post_b, post_r = [0.0], [gains[0]], [gains[1]]
        for b, note in bursts:
            self._bursts.append(b)
            kind, rms, clonus_hz = b.kind, b.rms, b.clonus_hz
            s, e = b.start_i / rate, (b.start_i + b.n) / rate
            if kind in ("large", "entry"):
                new = str(rng.choice([p for p in _POSTURES if p != posture or kind == "entry"]))
                if kind == "large":
                    note = f"{note} posture {posture}->{new}".strip()
                posture = new
                gains = self._posture_gains(rng, posture)
                post_x += [s, e]
                post_b += [post_b[-1], gains[0]]
                post_r += [post_r[-1], gains[1]]
            truth_type = {
                "jerk": "jerk",
                "limb": "limb_movement",
                "spasm": "spasm",
                "clonus": "spasm",
                "large": "large_movement",
            }.get(kind)
            if truth_type is not None:
                details = {"rms_counts": round(rms, 1)}
                if kind == "clonus":
                    details["clonus_hz"] = round(clonus_hz, 2)
                    note = f"clonus {note}".strip()
                events.append(TruthEvent(truth_type, s, e, note=note, details=details))
        self._post_x = np.array(post_x)
        self._post_bcg = np.array(post_b)
        self._post_breath = np.array(post_r)
        self._burst_starts = np.array([b.start_i for b in self._bursts], dtype=np.int64)
        self._burst_max_n = max((b.n for b in self._bursts), default=0)

        # Occupancy: 0 -> 1 while getting in, 1 -> 0 while getting out.
        occ_x: list[float] = []
        occ_y: list[float] = []
        for b in self._bursts:
            if b.kind in ("entry", "exit"):
                s, e = b.start_i / self._rate_hz, (b.start_i + b.n) / self._rate_hz
                occ_x += [s, e]
                occ_y += [0.0, 1.0] if b.kind == "entry" else [1.0, 0.0]
        self._occ_x = np.array(occ_x)
        self._occ_y = np.array(occ_y)

        self.bed_intervals = [(a, b) for a, b in in_bed]
        self.sleep_intervals = [(a, b) for a, b in sleep if b > a]
        self.truth = sorted(events, key=lambda ev: (ev.start_s, TRUTH_TYPES.index(ev.type)))
        self._plan_vitals(rng)
        # Bias and drift (periods >= 15 min) on the 1-s grid; rendering interpolates.
        g = self._grid_t
        self._dc_grid = self._dc0 + sum(a * np.sin(2 * np.pi / p * g + ph) for a, p, ph in self._drift)
        logger.debug("planned %r", self)

    def _plan_sleep(
        self,
        rng: np.random.Generator,
        entry: tuple[float, float],
        exit_: tuple[float, float] | None,
        burst: _BurstAdder,
        events: list[TruthEvent],
        in_bed: list[list[float]],
        sleep: list[list[float]],
    ) -> None:
        """Sleep onset, awakenings, episodes and scattered movements between entry and exit."""
        dur = self._duration_s
        bed_s, bed_e = entry[1], exit_[0] if exit_ else dur
        length = bed_e - bed_s
        onset = bed_s + min(float(rng.uniform(6.0, 25.0)) * 60.0, 0.25 * length)
        final_wake = bed_e - (min(float(rng.uniform(3.0, 15.0)) * 60.0, 0.1 * length) if exit_ else 0.0)
        moving = self._want_movements
        if final_wake - onset < 300.0:
            # Too short to sleep: awake in bed, a movement or two.
            tl = _Timeline(bed_s + 10.0, bed_e - 10.0)
            for _ in range(int(rng.integers(0, 3)) if moving else 0):
                d = float(rng.uniform(0.8, 4.0))
                s = tl.place(rng, d, 5.0)
                if s is not None:
                    burst("limb", s, d)
            return

        sleep.append([onset, final_wake])
        events.append(TruthEvent("fell_asleep", onset, onset))
        if exit_ is not None:
            events.append(TruthEvent("awakening", final_wake, exit_[0], note="final"))
        if moving:
            # Settling in before sleep onset: a turn or two and some limb movements; then
            # hypnic jerks around onset.
            tl = _Timeline(bed_s + 20.0, onset - 150.0)
            for kind, count in (("large", int(rng.integers(1, 3))), ("limb", int(rng.integers(1, 4)))):
                for _ in range(count):
                    d = self._draw_duration(rng, kind)
                    s = tl.place(rng, d, 15.0)
                    if s is not None:
                        burst(kind, s, d)
            tl = _Timeline(max(onset - 120.0, bed_s + 5.0), onset + 45.0)
            for _ in range(int(rng.integers(1, 4))):
                d = self._draw_duration(rng, "jerk")
                s = tl.place(rng, d, 8.0)
                if s is not None:
                    burst("jerk", s, d, "hypnic")
            if exit_ is not None:
                tl = _Timeline(final_wake + 10.0, exit_[0] - 10.0)
                for kind in ["limb"] * int(rng.integers(1, 3)) + ["large"] * int(rng.integers(0, 2)):
                    d = self._draw_duration(rng, kind)
                    s = tl.place(rng, d, 10.0)
                    if s is not None:
                        burst(kind, s, d)

        span = final_wake - onset
        tl = _Timeline(onset + 60.0, final_wake - 60.0)
        wakes: list[tuple[float, float, str]] = []

        # Bathroom trip mid-night: wake, get out, away, get back in, awake a while.
        if self._want_bathroom and span >= 2 * 3600.0:
            w1, ex, away, en, w2 = (
                float(rng.uniform(60.0, 180.0)),
                float(rng.uniform(4.0, 10.0)),
                float(rng.uniform(180.0, 600.0)),
                float(rng.uniform(5.0, 12.0)),
                float(rng.uniform(180.0, 600.0)),
            )
            total = w1 + ex + away + en + w2
            s = tl.place(rng, total, 120.0, onset + 0.35 * span, onset + 0.65 * span)
            if s is not None:
                ex_s = s + w1
                en_s = ex_s + ex + away
                out_span = burst("exit", ex_s, ex)
                in_span = burst("entry", en_s, en)
                events.append(TruthEvent("bed_exit", *out_span, note="bathroom"))
                events.append(TruthEvent("bed_entry", *in_span, note="bathroom"))
                in_bed[-1:] = [[in_bed[-1][0], out_span[1]], [in_span[0], in_bed[-1][1]]]
                wakes.append((s, s + total, "bathroom"))
                if moving:
                    sub = _Timeline(en_s + en + 20.0, s + total - 20.0)
                    for _ in range(int(rng.integers(1, 3))):
                        d = self._draw_duration(rng, "limb")
                        m = sub.place(rng, d, 8.0)
                        if m is not None:
                            burst("limb", m, d)

        # PLM series: 8-30 limb movements, onset to onset 10-80 s (typically 20-40 s), so
        # the series is one under both the AASM (5-90 s) and WASM 2016 (10-90 s) profiles.
        if self._want_plm and moving:
            for _ in range(int(rng.integers(1, 4))):
                count = int(rng.integers(8, 31))
                mean_i = float(rng.uniform(20.0, 40.0))
                lm = np.clip(rng.lognormal(math.log(1.5), 0.4, count), 0.6, 5.0)
                gaps = np.clip(rng.normal(mean_i, 0.15 * mean_i, count - 1), 10.0, 80.0)
                gaps = np.maximum(gaps, lm[:-1] + 3.0)
                onsets = np.concatenate([[0.0], np.cumsum(gaps)])
                total = float(onsets[-1] + lm[-1])
                s = tl.place(rng, total, 120.0)
                if s is None:
                    continue
                spans = [
                    burst("limb", s + o, d, "plm") for o, d in zip(onsets.tolist(), lm.tolist(), strict=True)
                ]
                events.append(
                    TruthEvent(
                        "plm_series",
                        spans[0][0],
                        spans[-1][1],
                        details={
                            "movements": float(count),
                            "mean_interval_s": (spans[-1][0] - spans[0][0]) / (count - 1),
                        },
                    )
                )

        # Restless episodes: a dense cluster of short movements that rouses the sleeper;
        # the wake bout outlasts the cluster by a few minutes.
        if self._want_restless and moving:
            for _ in range(int(rng.integers(1, 3))):
                cluster_s = float(rng.uniform(60.0, 150.0))
                after_s = float(rng.uniform(120.0, 360.0))
                s = tl.place(rng, cluster_s + after_s, 120.0)
                if s is None:
                    continue
                # Limb movements with onsets < 5 s apart (so no PLM series can form inside),
                # some with a jerk in the gap; every gap >= 1 s so movements stay distinct.
                t = s
                spans = []
                while t + 2.2 <= s + cluster_s:
                    d = float(rng.uniform(0.6, 1.8))
                    spans.append(burst("limb", t, d, "restless"))
                    if rng.random() < 0.3:
                        jd = float(rng.uniform(0.15, 0.3))
                        spans.append(burst("jerk", t + d + 1.0, jd, "restless"))
                        t += d + jd + 2.0 + float(rng.uniform(0.0, 4.8 - (d + jd + 2.0)))
                    else:
                        t += d + float(rng.uniform(1.0, 2.5))
                events.append(
                    TruthEvent(
                        "restless", spans[0][0], spans[-1][1], details={"movements": float(len(spans))}
                    )
                )
                wakes.append((spans[0][0], spans[-1][1] + after_s, "restless"))

        # Ordinary awakenings: a movement (the likely cause) 5-20 s before, wake 2-10 min
        # with a few movements.
        n_wake = self._want_awakenings if self._want_awakenings is not None else int(rng.integers(2, 5))
        for _ in range(n_wake):
            lead = float(rng.uniform(5.0, 20.0))
            wake_len = float(rng.uniform(120.0, 600.0))
            s = tl.place(rng, lead + wake_len, 120.0)
            if s is None:
                continue
            ws = s + lead
            wakes.append((ws, ws + wake_len, ""))
            if not moving:
                continue
            cause = str(rng.choice(["large", "large", "large", "spasm", "jerk"]))
            d = self._draw_duration(rng, cause)
            burst(cause, s, d, "cause")
            sub = _Timeline(s + d + 10.0, ws + wake_len - 20.0)
            for _ in range(int(rng.integers(1, 4))):
                kind = "limb" if rng.random() < 0.7 else "large"
                dd = self._draw_duration(rng, kind)
                m = sub.place(rng, dd, 8.0)
                if m is not None:
                    burst(kind, m, dd)

        for ws, we, note in wakes:
            events.append(TruthEvent("awakening", ws, we, note=note))
            events.append(TruthEvent("fell_asleep", we, we))
        cuts = sorted((ws, we) for ws, we, _ in wakes)
        sleep.clear()
        cur = onset
        for ws, we in cuts:
            sleep.append([cur, ws])
            cur = we
        sleep.append([cur, final_wake])

        if not moving:
            return
        # Scattered movements during sleep, spaced so that isolated limb movements never
        # chain into a PLM series (>= 100 s apart).
        n_large = int(span / float(rng.uniform(1200.0, 2400.0)))
        plan = (
            [("large", 20.0)] * n_large
            + [("limb", 50.0)] * int(rng.integers(12, 31))
            + [("spasm", 25.0)] * int(rng.integers(2, 6))
            + [("jerk", 15.0)] * int(rng.integers(4, 11))
        )
        for kind, margin in plan:
            if kind == "spasm" and rng.random() < 0.4:
                kind = "clonus"
            d = self._draw_duration(rng, kind)
            s = tl.place(rng, d, margin)
            if s is not None:
                burst(kind, s, d)

    def _draw_duration(self, rng: np.random.Generator, kind: str) -> float:
        """Duration (s) of one movement, inside its rule range with a margin."""
        if kind == "jerk":
            return float(rng.uniform(0.15, 0.42))
        if kind == "limb":
            return float(np.clip(rng.lognormal(math.log(1.8), 0.55), 0.6, 8.0))
        if kind in ("spasm", "clonus"):
            return float(rng.uniform(2.3, 8.0))
        if kind == "large":
            if rng.random() < 0.1:
                return float(rng.uniform(25.0, 40.0))
            return float(np.exp(rng.uniform(math.log(4.0), math.log(25.0))))
        raise ValueError(kind)

    def _burst_params(self, rng: np.random.Generator, kind: str) -> tuple[float, tuple[float, float], float]:
        """RMS (counts at full envelope), band (Hz) and clonus rate (Hz) of one burst."""
        ratio, band = {
            "jerk": ((10.0, 24.0), (2.0, 25.0)),
            "limb": ((4.0, 12.0), (1.0, 20.0)),
            "spasm": ((10.0, 20.0), (3.0, 25.0)),
            "clonus": ((10.0, 20.0), (6.0, 25.0)),
            "large": ((8.0, 18.0), (0.3, 12.0)),
            "entry": ((10.0, 20.0), (0.3, 12.0)),
            "exit": ((10.0, 20.0), (0.3, 12.0)),
        }[kind]
        rms = min(float(rng.uniform(*ratio)) * self._bcg_pp, 550.0)
        hi = min(band[1], 0.45 * self._rate_hz)
        clonus_hz = float(rng.uniform(3.5, 7.5)) if kind == "clonus" else 0.0
        return rms, (band[0], hi), clonus_hz

    @staticmethod
    def _posture_gains(rng: np.random.Generator, posture: str) -> tuple[float, float]:
        bcg, breath = _POSTURES[posture]
        return bcg * float(rng.uniform(0.9, 1.1)), breath * float(rng.uniform(0.9, 1.1))

    def _plan_vitals(self, rng: np.random.Generator) -> None:
        """Heart and breathing rate curves (1-s grid), then every breath and heartbeat time."""
        dur = self._duration_s
        step = 1.0
        t = np.arange(-20.0, dur + 20.0 + step, step)
        self._grid_t = t
        in_bed = np.zeros(t.size, dtype=bool)
        asleep = np.zeros(t.size, dtype=bool)
        for a, b in self.bed_intervals:
            in_bed |= (t >= a) & (t < b)
        for a, b in self.sleep_intervals:
            asleep |= (t >= a) & (t < b)
        awake = (in_bed & ~asleep).astype(float)
        # Awake <-> asleep changes settle over ~30 s (causal exponential smoothing).
        kernel = np.exp(-np.arange(0.0, 300.0, step) / 30.0)
        awake_s = np.convolve(awake, kernel / kernel.sum())[: awake.size]

        arousal = np.zeros(t.size)
        k = np.arange(0, 120.0, step)
        for burst in self._bursts:
            i0 = int((burst.start_i / self._rate_hz - t[0]) / step)
            rise = float(rng.uniform(3.0, 8.0)) if burst.kind not in ("entry", "exit") else 4.0
            seg = arousal[i0 : i0 + k.size]
            seg += rise * np.exp(-k[: seg.size] / 15.0)

        hr_base = float(rng.uniform(54.0, 66.0))
        hr = hr_base + _slow_wave(rng, t, 2.0, 4.0) - 3.0 * np.sin(np.pi * np.clip(t / max(dur, 1.0), 0, 1))
        hr += float(rng.uniform(6.0, 12.0)) * awake_s + arousal
        # Sleeping range on every grid point next to sleep too, so interpolation between
        # grid points never leaves it inside a sleep interval.
        near_sleep = asleep | np.roll(asleep, 1) | np.roll(asleep, -1)
        hr = np.where(near_sleep, np.clip(hr, 48.0, 78.0), np.clip(hr, 50.0, 95.0))
        br = float(rng.uniform(13.0, 16.0)) + _slow_wave(rng, t, 0.4, 0.8) + 1.5 * awake_s + 0.15 * arousal
        br = np.clip(br, 12.0, 18.0)
        self._hr_bpm = hr
        self._br_bpm = br

        # Breaths: integrate the rate, one onset per whole cycle, a little jitter.
        cyc = np.concatenate([[0.0], np.cumsum(br[:-1] / 60.0 * step)])
        phase0 = float(rng.uniform(0, 1))
        onsets = np.interp(np.arange(phase0, cyc[-1]), cyc, t)
        period = np.diff(onsets, append=onsets[-1] + 4.0)
        onsets = onsets + rng.normal(0, 0.05, onsets.size) * period
        self._breaths = _increasing(onsets, 1.5)
        breath_amp = 1.0 + rng.normal(0, 0.08, self._breaths.size)
        sighs = rng.random(self._breaths.size) < 0.01
        breath_amp[sighs] *= rng.uniform(1.6, 2.2, int(sighs.sum()))
        self._breath_amp = breath_amp
        f = float(rng.uniform(0.35, 0.45))  # inhale: fraction of the cycle
        px = np.linspace(0.0, 1.0, 2049)
        self._breath_tab_x = px
        self._breath_tab_y = (
            np.where(
                px < f, 0.5 - 0.5 * np.cos(np.pi * px / f), 0.5 + 0.5 * np.cos(np.pi * (px - f) / (1 - f))
            )
            - 0.5
        )

        # Heartbeats: rate with respiratory sinus arrhythmia, integrated on a 0.25-s grid.
        tf = np.arange(t[0], t[-1], 0.25)
        rsa = float(rng.uniform(0.02, 0.05))
        hr_f = np.interp(tf, t, hr) * (1.0 + rsa * np.sin(2 * np.pi * self._breath_phase(tf)))
        cyc = np.concatenate([[0.0], np.cumsum(hr_f[:-1] / 60.0 * 0.25)])
        beats = np.interp(np.arange(float(rng.uniform(0, 1)), cyc[-1]), cyc, tf)
        rr = np.diff(beats, append=beats[-1] + 1.0)
        beats = beats + rng.normal(0, 0.012, beats.size) * rr
        self._beats = _increasing(beats, 0.3)
        resp = 1.0 + 0.12 * np.sin(2 * np.pi * self._breath_phase(self._beats))
        self._beat_amp = (1.0 + rng.normal(0, 0.05, self._beats.size)) * resp * self._bcg_pp

    # ---------------------------------------------------------------- rendering

    def _breath_phase(self, t: np.ndarray) -> np.ndarray:
        """Fraction (0..1) of the current breath cycle at times ``t`` (s)."""
        on = self._breaths
        j = np.clip(np.searchsorted(on, t, side="right") - 1, 0, on.size - 2)
        return np.clip((t - on[j]) / (on[j + 1] - on[j]), 0.0, 1.0)

    @staticmethod
    def _last_at_or_before(times: np.ndarray, t: np.ndarray) -> np.ndarray:
        """``searchsorted(times, t, "right") - 1`` for ascending ``t``, in O(len(t)).

        Both are sorted, so place the few ``times`` inside the chunk among the samples and
        count; the float comparisons are the same, so the result is identical.
        """
        lo = int(np.searchsorted(times, t[0], side="right"))
        hi = int(np.searchsorted(times, t[-1], side="right"))
        marks = np.searchsorted(t, times[lo:hi], side="left")
        return lo - 1 + np.cumsum(np.bincount(marks, minlength=t.size)[: t.size])

    def _render_chunk(self, a: int, b: int) -> np.ndarray:
        t = np.arange(a, b, dtype=np.float64) / self._rate_hz
        x = np.interp(t, self._grid_t, self._dc_grid)
        if self._occ_x.size:
            occ = np.interp(t, self._occ_x, self._occ_y, left=0.0, right=0.0 if self._occ_y[-1] == 0 else 1.0)
            if occ.any():
                x += occ * (self._bcg(t) + self._breath(t))
        self._add_bursts(x, a, b)
        x += self._noise(a, b)
        if self._hum is not None and self._mains_hum_hz is not None:
            amp, ph1, ph3 = self._hum
            w = 2 * np.pi * self._mains_hum_hz
            x += amp * (np.sin(w * t + ph1) + 0.3 * np.sin(3 * w * t + ph3))
        # Soft saturation of the amplifier near the rails, then quantise.
        dev = x - ADC_MID
        big = np.abs(dev) > _RAIL_KNEE
        if big.any():
            room = _RAIL_LIMIT - _RAIL_KNEE
            d = dev[big]
            dev[big] = np.sign(d) * (_RAIL_KNEE + room * np.tanh((np.abs(d) - _RAIL_KNEE) / room))
        x = np.round(ADC_MID + dev)
        for i, value in self._glitches.items():
            if a <= i < b:
                x[i - a] = value
        return x

    def _bcg(self, t: np.ndarray) -> np.ndarray:
        """Ballistocardiogram: the last two beats' complexes, scaled by posture."""
        beats, tab = self._beats, self._template
        k = self._last_at_or_before(beats, t)
        out = np.zeros(t.size)
        for back in (0, 1):
            j = k - back
            valid = j >= 0
            jj = np.where(valid, j, 0)
            idx = ((t - beats[jj]) * _TEMPLATE_HZ).astype(np.int64)
            valid &= (idx >= 0) & (idx < tab.size)
            out += np.where(valid, tab[np.clip(idx, 0, tab.size - 1)] * self._beat_amp[jj], 0.0)
        return out * np.interp(t, self._post_x, self._post_bcg)

    def _breath(self, t: np.ndarray) -> np.ndarray:
        """Breathing: a fast rise (inhale) and slower fall per breath, scaled by posture."""
        on = self._breaths
        j = np.clip(self._last_at_or_before(on, t), 0, on.size - 2)
        p = (t - on[j]) / (on[j + 1] - on[j])
        shape = np.interp(p, self._breath_tab_x, self._breath_tab_y)
        gain = np.interp(t, self._post_x, self._post_breath)
        return shape * self._breath_amp[j] * self._breath_pp * gain

    def _noise(self, a: int, b: int) -> np.ndarray:
        """Sensor noise, drawn per fixed segment so any chunking gives the same values."""
        seg_n = max(1, round(NOISE_SEGMENT_S * self._rate_hz))
        parts = []
        for k in range(a // seg_n, (b - 1) // seg_n + 1):
            seg = self._noise_cache.get(k)
            if seg is None:
                rng = np.random.default_rng([self._seed, _STREAM_NOISE, k])
                seg = rng.standard_normal(seg_n) * self._noise_sd
                self._noise_cache[k] = seg
                while len(self._noise_cache) > 4:
                    self._noise_cache.popitem(last=False)
            lo, hi = max(a, k * seg_n) - k * seg_n, min(b, (k + 1) * seg_n) - k * seg_n
            parts.append(seg[lo:hi])
        return np.concatenate(parts)

    def _add_bursts(self, x: np.ndarray, a: int, b: int) -> None:
        lo = int(np.searchsorted(self._burst_starts, a - self._burst_max_n, side="left"))
        hi = int(np.searchsorted(self._burst_starts, b, side="left"))
        for k in range(lo, hi):
            burst = self._bursts[k]
            s, e = burst.start_i, burst.start_i + burst.n
            if e <= a:
                continue
            wave = self._burst_wave(k)
            x[max(s, a) - a : min(e, b) - a] += wave[max(s, a) - s : min(e, b) - s]

    def _burst_wave(self, k: int) -> np.ndarray:
        """Burst ``k`` in full (deterministic per seed and burst), cached for the next chunks."""
        cached = self._burst_cache.get(k)
        if cached is not None:
            self._burst_cache.move_to_end(k)
            return cached
        b = self._bursts[k]
        rng = np.random.default_rng([self._seed, _STREAM_BURST, k])
        wave = _band_noise(rng, b.n, self._rate_hz, *b.band_hz) * _envelope(rng, b, self._rate_hz) * b.rms
        self._burst_cache[k] = wave
        while len(self._burst_cache) > _CACHE_BURSTS:
            self._burst_cache.popitem(last=False)
        return wave


class _BurstAdder(Protocol):
    """Call signature of the planner's burst() helper."""

    def __call__(self, kind: str, start_s: float, dur_s: float, note: str = "") -> tuple[float, float]: ...


def _in_intervals(intervals: list[tuple[float, float]], t_s: float) -> bool:
    starts = [a for a, _ in intervals]
    k = bisect_right(starts, t_s) - 1
    return k >= 0 and t_s < intervals[k][1]


def _increasing(times: np.ndarray, min_step_s: float) -> np.ndarray:
    """Force a strictly increasing sequence with at least ``min_step_s`` between entries."""
    out = times.copy()
    for i in range(1, out.size):
        if out[i] < out[i - 1] + min_step_s:
            out[i] = out[i - 1] + min_step_s
    return out


def _slow_wave(rng: np.random.Generator, t: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Sum of two slow sinusoids (periods 40-120 min), total amplitude ``lo``..``hi``."""
    out = np.zeros(t.size)
    for _ in range(2):
        period_s = float(rng.uniform(2400.0, 7200.0))
        out += (
            float(rng.uniform(lo, hi))
            / 2
            * np.sin(2 * np.pi * t / period_s + float(rng.uniform(0, 2 * np.pi)))
        )
    return out


def _bcg_template(rng: np.random.Generator) -> np.ndarray:
    """One BCG complex sampled at ``_TEMPLATE_HZ``, peak-to-peak 1, tapered to zero."""
    t = np.arange(0.0, _TEMPLATE_S, 1.0 / _TEMPLATE_HZ)
    stretch = float(rng.uniform(0.9, 1.1))
    widen = float(rng.uniform(0.85, 1.2))
    y = np.zeros(t.size)
    for delay_s, amp, width_s in _BCG_WAVES:
        y += amp * np.exp(-0.5 * ((t - delay_s * stretch) / (width_s * widen)) ** 2)
    taper = np.clip((_TEMPLATE_S - t) / 0.05, 0.0, 1.0)
    ramp = np.clip(t / 0.03, 0.0, 1.0)
    y *= taper * ramp
    return y / (y.max() - y.min())


def _band_noise(rng: np.random.Generator, n: int, rate_hz: float, lo_hz: float, hi_hz: float) -> np.ndarray:
    """Unit-RMS noise limited to lo..hi Hz with a 1/sqrt(f) tilt (more energy low down)."""
    white = rng.standard_normal(n)
    spec = np.fft.rfft(white)
    f = np.fft.rfftfreq(n, 1.0 / rate_hz)
    mask = (f >= lo_hz) & (f <= hi_hz)
    weight = np.where(mask, 1.0 / np.sqrt(np.maximum(f, lo_hz)), 0.0)
    y = np.fft.irfft(spec * weight, n)
    rms = float(np.sqrt(np.mean(y**2)))
    if rms <= 0:  # too short for any bin in band: fall back to white noise
        return white
    return y / rms


def _raised(x: np.ndarray) -> np.ndarray:
    """0 -> 1 raised-cosine ramp for x in 0..1 (clipped outside)."""
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(x, 0.0, 1.0))


def _envelope(rng: np.random.Generator, b: _Burst, rate_hz: float) -> np.ndarray:
    """Amplitude envelope (peak about 1) of a burst: its onset, body and release by kind."""
    dur = b.n / rate_hz
    t = np.arange(b.n) / rate_hz
    if b.kind == "jerk":
        attack = min(float(rng.uniform(0.005, 0.02)), 0.2 * dur)
        env = _raised(t / max(attack, 1e-9)) * np.exp(-np.maximum(t - attack, 0) / (dur / 3))
        return env * _raised((dur - t) / (0.15 * dur))
    if b.kind in ("limb", "spasm", "clonus"):
        attack = min(
            float(rng.uniform(0.04, 0.15) if b.kind == "limb" else rng.uniform(0.08, 0.2)), 0.3 * dur
        )
        release = min(
            float(rng.uniform(0.08, 0.25) if b.kind == "limb" else rng.uniform(0.15, 0.3)), 0.3 * dur
        )
        env = _raised(t / attack) * _raised((dur - t) / release)
        if b.kind == "limb":
            wobble = _band_noise(rng, b.n, rate_hz, 0.2, 2.0)
            env *= 0.8 + 0.2 * np.tanh(wobble)
        if b.kind == "clonus":
            ph = float(rng.uniform(0, 2 * np.pi))
            env *= 0.1 + 0.9 * ((1 + np.cos(2 * np.pi * b.clonus_hz * t + ph)) / 2) ** 3
            env *= 1.5  # bursts, not the tonic level, carry the high intensity
        return env
    # large, entry, exit: whole-body, several lobes as the body rolls over.
    attack = min(float(rng.uniform(0.3, 0.8)), 0.25 * dur)
    release = min(float(rng.uniform(0.4, 1.0)), 0.25 * dur)
    lobes = np.zeros(b.n)
    for _ in range(1 + int(dur / 3.0)):
        c = float(rng.uniform(0, dur))
        w = float(rng.uniform(0.5, 2.0))
        lobes += float(rng.uniform(0.5, 1.0)) * np.exp(-0.5 * ((t - c) / w) ** 2)
    lobes /= max(float(lobes.max()), 1e-9)
    return (0.4 + 0.6 * lobes) * _raised(t / attack) * _raised((dur - t) / release)


class SimulatedSource(PacedSource):
    """A SimulatedNight served as a SampleSource: one channel of ADC counts in Blocks.

    ``start`` is the UTC time of sample 0 (default: now); ``speed`` 1 is real time, 60 is
    sixty times faster, 0 as fast as possible; ``block_s`` is the block length in seconds.
    Each block is rendered when it is due (memory stays small). Iterate once, on the
    asyncio loop; ``close()`` ends the iteration promptly. Iteration ends after the night's
    ``duration_s``.
    """

    def __init__(
        self,
        night: SimulatedNight,
        start: datetime | None = None,
        speed: float = 1.0,
        block_s: float = 0.1,
    ) -> None:
        super().__init__(
            rate_hz=night.rate_hz,
            total_samples=night.n_samples,
            start=start,
            speed=speed,
            block_s=block_s,
        )
        self._night = night

    @property
    def bits(self) -> int:
        """The simulated ADC's resolution (a 12-bit MCP3208: counts 0..4095)."""
        return 12

    @property
    def night(self) -> SimulatedNight:
        """The night being served (its truth is the ground truth of this stream)."""
        return self._night

    def _read(self, index: int, n: int) -> np.ndarray:
        return self._night.render(index, n)

    def __repr__(self) -> str:
        return f"SimulatedSource({self._night!r}, speed={self._speed:g})"
