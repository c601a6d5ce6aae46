"""Stage 4: label movement segments, and find PLM series and restless clusters.

Labels, in the order they are tried (thresholds are params; all are ratios to the adaptive
resting baseline or durations, none fitted to a recording):

* ``jerk``: shorter than ``jerk_max_s`` (0.5 s) by the shorter of its frame core and its span
  between the boundaries placed on the samples (``span_s``), and peaking at ``jerk_min_intensity`` or
  more (a weaker brief blip is not reported: label ""; strong heartbeats reach 2-3x the
  baseline). AASM 2012 scores movements under 0.5 s as not being limb movements; a
  hypnic or myoclonic jerk is such a brief, sharp twitch (AASM ICSD-3 "hypnic jerks";
  fragmentary myoclonus bursts are under 0.25 s).
* ``spasm`` (clonus): at least ``clonus_min_s`` with the movement band periodic at 3-8 Hz
  (autocorrelation peak >= ``clonus_min_periodicity``): clonus is rhythmic involuntary
  contraction at 3-8 Hz (spasticity literature, e.g. Boyraz 2015; ankle clonus 5-8 Hz).
* ``spasm`` (tonic): a core of at least ``spasm_min_s`` (2 s) that is high-pitched
  (``high_freq_ratio`` at least ``spasm_min_high_freq_ratio``, a spectral centroid near 10 Hz
  and up: muscle vibration) at any intensity; or, as before, a median envelope of at least
  ``spasm_sustain_k`` x baseline with energy almost all above 1 Hz (``low_freq_ratio`` at most
  ``spasm_max_low_freq_ratio``): a tonic contraction vibrates the bed without displacing the
  limb, where a limb movement or a posture change shifts weight (low frequencies).
* ``large_movement``: a core of ``large_min_s`` (3 s) to ``large_max_s`` (45 s) that is
  whole-body: low frequencies (``low_freq_ratio`` at least ``large_min_low_freq_ratio``) or a low
  pitch (``high_freq_ratio`` at most ``large_max_high_freq_ratio``), *and* a breath band raised to
  at least ``large_min_low_freq_excess`` x its RMS over the ``posture_window_s`` before the
  movement (``low_freq_excess``: a body roll shifts weight and posture, a limb does not; on a
  sensor whose real movements are all low-pitched the spectrum alone cannot tell them apart):
  the "large muscle group movement" of the IRLSSG / WASM 2016 rules (>= 3 s); also any movement
  longer than ``limb_max_s`` (10 s), which AASM and WASM exclude from limb movements.
* ``limb_movement``: 0.5 to 10 s (AASM 2012 / WASM 2016 limb movement duration).
* ``restless``: one continuous movement longer than ``large_max_s``.

PLM series (AASM 2012; WASM 2016): at least ``plm_min_movements`` (4) consecutive limb
movements whose onset-to-onset intervals are 5-90 s (``aasm``) or 10-90 s (``wasm2016``).
An interval out of range, or a large movement (longer than 10 s or whole-body: not a
candidate limb movement under WASM 2016) in between, ends the series; jerks and spasms are
not candidate limb movements and are skipped. A series is emitted when it ends, with
``details`` ``movements`` and ``mean_interval_s``.

Where the thresholds come from: durations (0.5, 2, 3, 10, 45 s), the PLM intervals and counts
are the published rules named above; the feature thresholds (``jerk_min_intensity``,
``spasm_sustain_k``, ``*_low_freq_ratio``, ``large_max_high_freq_ratio``,
``clonus_min_prominence``, ``core_fraction``) are no published rule: they are dimensionless
ratios chosen on simulated nights (seeds 1-5 of hardware.simulated) and checked on held-out
seeds 6-10 and on the real recording by bench/evaluate_detector.py;
``spasm_min_high_freq_ratio`` and ``large_min_low_freq_excess`` were chosen between the
simulated seeds 1-5 and the real-background tuning seeds 1-10 (bench/real_background.py) and
checked on the held-out seeds of both.

Restless: movements chained with gaps (end to next start) of at most ``restless_gap_s``,
at least ``restless_min_movements`` of them: a dense cluster, emitted when the chain breaks.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from service.detect.params import DetectorParams


@dataclass(frozen=True, slots=True)
class Label:
    """A segment's label and the numbers behind it."""

    type: str
    intensity: float
    confidence: float
    details: dict[str, float] = field(default_factory=dict)


def periodicity(x: np.ndarray, min_lag: int, max_lag: int) -> tuple[float, int]:
    """Highest normalised autocorrelation of ``x`` for lags in [min_lag, max_lag] (biased).

    Returns (peak value in -1..1, lag in samples); (0.0, 0) if the signal is too short.
    """
    x = np.asarray(x, float)
    n = x.size
    max_lag = min(max_lag, n // 2)
    if n < 4 or max_lag < max(1, min_lag):
        return 0.0, 0
    x = x - x.mean()
    nfft = 1 << int(np.ceil(np.log2(2 * n)))
    f = np.fft.rfft(x, nfft)
    ac = np.fft.irfft(f * np.conj(f), nfft)[: max_lag + 1]
    if ac[0] <= 0:
        return 0.0, 0
    ac = ac / ac[0]
    lo = max(1, min_lag)
    seg = ac[lo : max_lag + 1]
    k = int(np.argmax(seg))
    return float(seg[k]), lo + k


def segment_features(
    ratio: np.ndarray,
    move: np.ndarray,
    breath: np.ndarray,
    frame_s: float,
    band_rate_hz: float,
    params: DetectorParams,
    breath_before: np.ndarray | None = None,
) -> dict[str, float]:
    """Numbers describing one movement (all dimensionless or in seconds).

    ``ratio``: per-frame envelope / baseline; ``move`` and ``breath``: the movement and
    breath band samples over the movement at ``band_rate_hz``.

    * ``duration_s``: the whole segment (threshold to threshold);
    * ``core_s``: the span where the envelope stays above ``core_fraction`` of its peak
      (-20 dB): an intensity-independent duration, so a violent jerk's decay and the
      filters' ringing do not make it a limb movement;
    * ``intensity``: peak ratio; ``median_intensity``: median ratio over the core;
    * ``variability``: coefficient of variation of the core envelope (lobes of a body roll
      vs. the plateau of a tonic contraction);
    * ``low_freq_ratio``: RMS of the breath band (below 1 Hz) over RMS of the movement band during
      the movement: a whole-body shift moves the bed's low frequencies, a limb hardly does;
    * ``rise_s``: onset to peak;
    * ``high_freq_ratio``: RMS of the first difference over RMS of the movement band (a spectral
      centroid: tonic muscle activity and clonus buzz high, a body roll is low);
    * ``clonus_prominence`` / ``clonus_hz``: the spectral line of a rhythmic 3-8 Hz burst
      train in the movement energy (or the signal), over its broadband background.
    """
    p = params
    n = ratio.size
    f: dict[str, float] = {"duration_s": n * frame_s}
    if n == 0:
        return {
            **f,
            "core_s": 0.0,
            "intensity": 0.0,
            "median_intensity": 0.0,
            "variability": 0.0,
            "low_freq_ratio": 0.0,
            "rise_s": 0.0,
            "high_freq_ratio": 0.0,
            "clonus_prominence": 0.0,
            "clonus_hz": 0.0,
            "low_freq_excess": 0.0,
        }
    peak = float(ratio.max())
    k_peak = int(np.argmax(ratio))
    above = np.flatnonzero(ratio >= max(p.k_off, p.core_fraction * peak))
    c0, c1 = int(above[0]), int(above[-1]) + 1
    core = ratio[c0:c1]
    f["core_s"] = (c1 - c0) * frame_s
    f["intensity"] = peak
    f["median_intensity"] = _median(core)
    f["variability"] = float(np.std(core) / max(float(np.mean(core)), 1e-12))
    f["rise_s"] = k_peak * frame_s
    mv = float(np.sqrt(np.mean(move * move))) if move.size else 0.0
    br = float(np.sqrt(np.mean((breath - breath.mean()) ** 2))) if breath.size else 0.0
    f["low_freq_ratio"] = br / mv if mv > 0 else 0.0
    bb = breath_before if breath_before is not None else np.zeros(0)
    pre = float(np.sqrt(np.mean((bb - bb.mean()) ** 2))) if bb.size else 0.0
    f["low_freq_excess"] = br / pre if pre > 0 else 0.0
    d = np.diff(move) if move.size > 1 else np.zeros(1)
    f["high_freq_ratio"] = float(np.sqrt(np.mean(d * d))) / mv if mv > 0 else 0.0
    prom, hz = 0.0, 0.0
    if move.size >= 16 and f["core_s"] >= p.clonus_min_s:
        env = np.sqrt(np.convolve(d * d, np.ones(2) / 2, mode="same"))
        for sig in (env, move):
            pr, fr = spectral_prominence(sig, band_rate_hz, p.clonus_low_hz, p.clonus_high_hz)
            if pr > prom:
                prom, hz = pr, fr
    f["clonus_prominence"] = prom
    f["clonus_hz"] = hz
    return f


def _median(x: np.ndarray) -> float:
    """``float(np.median(x))`` of a short, non-empty, finite array, without np.median's overhead."""
    srt = np.sort(x)
    mid = srt.size // 2
    return float(srt[mid] if srt.size % 2 else (srt[mid - 1] + srt[mid]) / 2)


@functools.lru_cache(maxsize=64)
def _hanning(n: int) -> np.ndarray:
    """``np.hanning(n)``, made once per length (read-only)."""
    w = np.hanning(n)
    w.flags.writeable = False
    return w


@functools.lru_cache(maxsize=16)
def _rfftfreq(nfft: int, fs: float) -> np.ndarray:
    """``np.fft.rfftfreq(nfft, 1 / fs)``, made once per size and rate (read-only)."""
    f = np.fft.rfftfreq(nfft, 1.0 / fs)
    f.flags.writeable = False
    return f


def spectral_prominence(x: np.ndarray, fs: float, lo_hz: float, hi_hz: float) -> tuple[float, float]:
    """Highest power in [lo_hz, hi_hz] over the median power within 2.5 Hz of it, and where.

    A rhythmic burst train (clonus) puts a spectral line at its rate, tens of times above
    the broadband background of an ordinary movement's envelope.
    """
    y = (x - x.mean()) * _hanning(x.size)
    nfft = max(256, 1 << int(np.ceil(np.log2(x.size))))
    power = np.abs(np.fft.rfft(y, nfft)) ** 2
    freq = _rfftfreq(nfft, fs)
    band = (freq >= lo_hz) & (freq <= hi_hz)
    if not band.any():
        return 0.0, 0.0
    k = int(np.argmax(np.where(band, power, -1.0)))
    # the background is local (within 2.5 Hz of the peak): a line, not a sloping spectrum
    ref = (np.abs(freq - freq[k]) <= 2.5) & (freq >= 0.5)
    med = _median(power[ref]) if ref.any() else 0.0
    if med <= 0:
        return 0.0, 0.0
    return float(power[k]) / med, float(freq[k])


def classify_features(f: dict[str, float], params: DetectorParams) -> Label:
    """Label a movement from ``segment_features`` (rules in the module docstring)."""
    p = params
    peak = f["intensity"]
    core = f["core_s"]
    # brief or not: the shorter of two measures of the burst, each long for its own reason: the
    # core on the 0.1-s frames holds the band filters' ring after a brief burst; the span between
    # the boundaries placed on the samples (AASM 2012 times a movement from onset to end relative
    # to the resting level) holds a strong burst's decay and a heartbeat next to it
    brief = min(core, f.get("span_s", core))
    conf = float(min(1.0, max(0.0, (peak - p.k_on) / p.k_on + 0.5)))
    details = {k: round(v, 4) for k, v in f.items()}
    if brief < p.jerk_max_s:
        if peak < p.jerk_min_intensity:
            return Label("", peak, 0.0, details)
        sharp = f["rise_s"] <= 0.5 * p.jerk_max_s
        return Label("jerk", peak, conf if sharp else 0.5 * conf, details)
    if core >= p.clonus_min_s and f["clonus_prominence"] >= p.clonus_min_prominence:
        return Label("spasm", peak, conf, {**details, "clonus": 1.0})
    if core > p.large_max_s:
        return Label("restless", peak, conf, {**details, "continuous": 1.0})
    if core >= p.spasm_min_s and f["high_freq_ratio"] >= p.spasm_min_high_freq_ratio:
        return Label("spasm", peak, conf, {**details, "tonic": 1.0})
    whole_body = (
        f["low_freq_ratio"] >= p.large_min_low_freq_ratio
        or f["high_freq_ratio"] <= p.large_max_high_freq_ratio
    ) and f["low_freq_excess"] >= p.large_min_low_freq_excess
    if (core >= p.large_min_s and whole_body) or core > p.limb_max_s:
        return Label("large_movement", peak, conf, details)
    tonic = f["low_freq_ratio"] <= p.spasm_max_low_freq_ratio
    if core >= p.spasm_min_s and f["median_intensity"] >= p.spasm_sustain_k and tonic:
        return Label("spasm", peak, conf, {**details, "tonic": 1.0})
    return Label("limb_movement", peak, conf, details)


def classify_segment(
    ratio: np.ndarray,
    band: np.ndarray,
    frame_s: float,
    band_rate_hz: float,
    params: DetectorParams,
    breath: np.ndarray | None = None,
    breath_before: np.ndarray | None = None,
    span_s: float | None = None,
) -> Label:
    """Label one movement from its per-frame envelope/baseline ratios and band samples.

    ``span_s``: the movement's duration from its boundaries placed on the samples (the
    Detector's ``start_s`` to ``end_s``), if known; it decides jerk vs. longer movement."""
    br = breath if breath is not None else np.zeros(0)
    f = segment_features(ratio, band, br, frame_s, band_rate_hz, params, breath_before)
    if span_s is not None:
        f["span_s"] = span_s
    return classify_features(f, params)


def plm_interval_s(profile: str) -> float:
    """Shortest onset-to-onset interval inside a PLM series for the profile."""
    if profile == "aasm":
        return 5.0
    if profile == "wasm2016":
        return 10.0
    raise ValueError(f"unknown rule profile {profile!r}: use 'aasm' or 'wasm2016'")


@dataclass(slots=True)
class SeriesOut:
    """A finished PLM series or restless cluster (times in seconds)."""

    type: str
    start_s: float
    end_s: float
    decided_s: float
    movements: int
    mean_interval_s: float
    intensity: float
    timeout: bool = False  # decided by the time limit (decided_s), not by a movement


class PlmTracker:
    """Streaming PLM series finder over finished movements (in onset order)."""

    def __init__(self, params: DetectorParams) -> None:
        self.p = params
        self.min_iv = plm_interval_s(params.profile)
        self.onsets: list[float] = []
        self.ends: list[float] = []
        self.peaks: list[float] = []

    def _close(self, decided_s: float, timeout: bool) -> list[SeriesOut]:
        out: list[SeriesOut] = []
        if len(self.onsets) >= self.p.plm_min_movements:
            iv = float(np.mean(np.diff(self.onsets)))
            out.append(
                SeriesOut(
                    "plm_series",
                    self.onsets[0],
                    self.ends[-1],
                    decided_s,
                    len(self.onsets),
                    iv,
                    max(self.peaks),
                    timeout,
                )
            )
        self.onsets, self.ends, self.peaks = [], [], []
        return out

    def add(self, kind: str, start_s: float, end_s: float, intensity: float) -> list[SeriesOut]:
        """Feed one finished movement; returns a series that this movement ended, if any."""
        if kind in ("jerk", "spasm"):
            return []
        out: list[SeriesOut] = []
        if self.onsets and start_s - self.onsets[-1] > self.p.plm_max_interval_s:
            out = self._close(self.onsets[-1] + self.p.plm_max_interval_s, True)
        if kind != "limb_movement":
            return out + (self._close(end_s, False) if self.onsets else [])
        if self.onsets and start_s - self.onsets[-1] < self.min_iv:
            out = self._close(end_s, False)
        self.onsets.append(start_s)
        self.ends.append(end_s)
        self.peaks.append(intensity)
        return out

    def timeout(self, now_s: float, open_start_s: float | None) -> list[SeriesOut]:
        """Close the series if no limb movement can follow within the longest interval."""
        if not self.onsets:
            return []
        limit = self.onsets[-1] + self.p.plm_max_interval_s
        if now_s >= limit and (open_start_s is None or open_start_s > limit):
            return self._close(limit, True)
        return []

    def flush(self, now_s: float) -> list[SeriesOut]:
        """End of stream."""
        return self._close(now_s, False) if self.onsets else []


class RestlessTracker:
    """Streaming finder of dense movement clusters (in onset order)."""

    def __init__(self, params: DetectorParams) -> None:
        self.p = params
        self.starts: list[float] = []
        self.end = 0.0
        self.peak = 0.0

    def _close(self, decided_s: float, timeout: bool) -> list[SeriesOut]:
        out: list[SeriesOut] = []
        if len(self.starts) >= self.p.restless_min_movements:
            iv = float(np.mean(np.diff(self.starts)))
            out.append(
                SeriesOut(
                    "restless",
                    self.starts[0],
                    self.end,
                    decided_s,
                    len(self.starts),
                    iv,
                    self.peak,
                    timeout,
                )
            )
        self.starts = []
        self.peak = 0.0
        return out

    def add(self, start_s: float, end_s: float, intensity: float) -> list[SeriesOut]:
        """Feed one finished movement; returns a cluster that ended before it, if any."""
        out: list[SeriesOut] = []
        if self.starts and start_s - self.end > self.p.restless_gap_s:
            out = self._close(self.end + self.p.restless_gap_s, True)
        self.starts.append(start_s)
        self.end = max(self.end, end_s) if len(self.starts) > 1 else end_s
        self.peak = max(self.peak, intensity)
        return out

    def timeout(self, now_s: float, open_start_s: float | None) -> list[SeriesOut]:
        """Close the cluster when no movement started within the gap after its end."""
        if not self.starts:
            return []
        limit = self.end + self.p.restless_gap_s
        if now_s >= limit and (open_start_s is None or open_start_s > limit):
            return self._close(limit, True)
        return []

    def flush(self, now_s: float) -> list[SeriesOut]:
        """End of stream."""
        return self._close(now_s, False) if self.starts else []
