"""A plain reference movement detector, written the way a researcher would in a notebook.

It does the same job as the first stages of ``service.detect`` on a whole recording at once:

1. band-pass the raw signal to the movement band (2-20 Hz) with a 4th-order Butterworth filter
   run forwards and backwards (``scipy.signal.filtfilt``, zero phase), after a mains notch;
2. envelope: RMS over a centred 0.1-s rolling window (``pandas.Series.rolling``);
3. resting baseline: the typical heartbeat peak, i.e. the rolling 1-s maximum of the envelope
   (taken every 0.1 s), then its rolling 25th percentile over ``baseline_window_s`` (60 s,
   centred; a low percentile, because a rolling median is pulled up inside dense clusters of
   movements and then misses a quarter of them; 0.25 and 60 s were chosen on simulated seed 1);
4. thresholds with hysteresis: a movement is a run above ``k_off`` x baseline that reaches
   ``k_on`` x baseline somewhere; runs closer than ``min_off_s`` join, segments closer than
   ``merge_gap_s`` merge; a segment shorter than ``jerk_max_s`` must peak at
   ``jerk_min_intensity`` x baseline (the same rule values as the streaming detector).

It is an offline, non-causal baseline for the throughput comparison in bench_detector.py: the
streaming detector must do all of this (and more) causally, block by block. Nothing in the
service imports it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.signal import butter, correlate, filtfilt, find_peaks, iirnotch, sosfiltfilt

from service.detect.params import DetectorParams


def _filtered(x: np.ndarray, rate_hz: float, p: DetectorParams) -> tuple[np.ndarray, np.ndarray]:
    """(notched signal, movement band) of a whole recording (steps 1 of the module docstring)."""
    sig = np.asarray(x, dtype=np.float64).ravel()
    if sig.size == 0:
        raise ValueError("the reference needs a non-empty signal")
    if not rate_hz >= 10.0:
        raise ValueError(f"rate_hz must be at least 10 Hz, got {rate_hz!r}")
    sig = sig - np.median(sig)
    if p.mains_hz > 0 and p.mains_hz < 0.45 * rate_hz:
        bn, an = iirnotch(p.mains_hz, 30.0, fs=rate_hz)
        sig = filtfilt(bn, an, sig)
    hi = min(p.move_band_high_hz, 0.45 * rate_hz)
    b, a = butter(4, [p.move_band_low_hz, hi], btype="band", fs=rate_hz)
    return sig, filtfilt(b, a, sig)


def reference_movements(
    x: np.ndarray,
    rate_hz: float,
    params: DetectorParams | None = None,
    baseline_window_s: float = 60.0,
    quantile: float = 0.25,
) -> list[tuple[float, float, float]]:
    """Movement segments of a whole recording: (start_s, end_s, peak envelope / baseline).

    ``x`` is the raw 1-D signal at ``rate_hz``. ValueError for an empty signal or a rate below
    10 Hz (the movement band would not fit).
    """
    p = params if params is not None else DetectorParams()
    _, band = _filtered(x, rate_hz, p)
    return _movements(band, rate_hz, p, baseline_window_s, quantile)[0]


def _movements(
    band: np.ndarray, rate_hz: float, p: DetectorParams, baseline_window_s: float, quantile: float
) -> tuple[list[tuple[float, float, float]], np.ndarray, float]:
    """Steps 2-4: (movements, envelope / baseline every frame, frame length in seconds)."""
    frame = max(1, round(p.frame_s * rate_hz))
    env_full = pd.Series(band * band).rolling(frame, center=True, min_periods=1).mean().pow(0.5)
    env = env_full.iloc[::frame].reset_index(drop=True)  # one value per 0.1 s
    frame_s = frame / rate_hz
    hop = max(1, round(p.baseline_hop_s / frame_s))
    peaks = env.rolling(hop, center=True, min_periods=1).max()
    base = peaks.rolling(max(1, round(baseline_window_s / frame_s)), center=True, min_periods=1).quantile(
        quantile
    )
    base = base.clip(lower=1e-12)

    ratio = (env / base).to_numpy()
    active = ratio > p.k_off
    on = ratio > p.k_on
    edges = np.diff(np.concatenate(([0], active.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    n_off = max(1, round(p.min_off_s / frame_s))
    n_merge = max(0, round(p.merge_gap_s / frame_s))
    on_cum = np.concatenate(([0], np.cumsum(on)))
    # runs closer than min_off_s are one movement (it ends only after min_off_s below k_off)
    joined: list[list[int]] = []
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        if joined and s - joined[-1][1] < n_off:
            joined[-1][1] = e
        else:
            joined.append([s, e])
    # keep those that reach k_on, then merge movements closer than merge_gap_s
    segs: list[list[int]] = []
    for s, e in joined:
        if on_cum[e] - on_cum[s] == 0:
            continue
        if segs and s - segs[-1][1] < n_merge:
            segs[-1][1] = e
        else:
            segs.append([s, e])
    out = []
    for s, e in segs:
        peak = float(ratio[s:e].max())
        dur = (e - s) * frame_s
        if dur < p.jerk_max_s and peak < p.jerk_min_intensity:
            continue
        out.append((s * frame_s, e * frame_s, peak))
    return out, ratio, frame_s


# ---------------------------------------------------------------------- beyond stages 1-3
def _rate(
    w: np.ndarray, fs: float, min_per_min: float, max_per_min: float, harmonic_ratio: float
) -> tuple[float, float]:
    """Repetition rate (per minute) of one window by its autocorrelation, and the peak's height.

    The unbiased, normalised autocorrelation (``scipy.signal.correlate``); its peaks between
    the two rates (``scipy.signal.find_peaks``); the shortest lag whose peak reaches
    ``harmonic_ratio`` x the highest wins (so a multiple of the period does not), refined by
    a parabola through the peak and its neighbours.
    """
    w = w - w.mean()
    n = w.size
    ac = correlate(w, w, mode="full")[n - 1 :]
    ac = ac / (n - np.arange(n))
    if ac[0] <= 0:
        return float("nan"), 0.0
    ac = ac / ac[0]
    lo = int(np.floor(fs * 60.0 / max_per_min))
    hi = int(np.ceil(fs * 60.0 / min_per_min))
    peaks, _ = find_peaks(ac[: hi + 2])
    peaks = peaks[(peaks >= lo) & (peaks <= hi)]
    if peaks.size == 0 or ac[peaks].max() <= 0:
        return float("nan"), 0.0
    k = int(peaks[np.flatnonzero(ac[peaks] >= harmonic_ratio * ac[peaks].max())[0]])
    a, b, c = ac[k - 1], ac[k], ac[k + 1]
    shift = 0.5 * (a - c) / (a - 2 * b + c) if a - 2 * b + c < 0 else 0.0
    return 60.0 * fs / (k + shift), float(b)


def reference_analysis(x: np.ndarray, rate_hz: float, params: DetectorParams | None = None) -> dict[str, Any]:
    """Movements (as ``reference_movements``), plus heart and breathing rate and activity counts.

    The like-for-like counterpart of the streaming detector's main outputs beyond stages 1-3,
    written the same plain way on the whole recording:

    5. heart rate every ``vitals_hop_s`` (5 s) over the last ``vitals_window_s`` (20 s): the
       movement band squared, a centred 0.1-s rolling mean (pandas), its square root taken every
       0.04 s (25 Hz), then per window (a loop) the autocorrelation peak between
       ``heart_min_bpm`` and ``heart_max_bpm`` (shortest lag within 85 % of the highest);
    6. breathing rate the same way on the 0.05-1 Hz band (2nd-order Butterworth by
       ``sosfiltfilt``) taken every 0.2 s (5 Hz), 6-30 per minute (ratio 50 %);
       a rate is reported when its peak reaches ``vitals_min_periodicity`` and the window holds
       no movement;
    7. activity counts per ``epoch_s`` (30 s): envelope / baseline above ``count_k``, in
       baseline x seconds (a pandas groupby).

    Not done (the detector does them): sensor-fault repair, movement classification, PLM and
    restless series, presence, sleep/wake calls. Returns ``movements``, ``vitals`` (t_end_s,
    heart_bpm or None, breath_bpm or None) and ``epoch_counts``.
    """
    p = params if params is not None else DetectorParams()
    sig, band = _filtered(x, rate_hz, p)
    moves, ratio, frame_s = _movements(band, rate_hz, p, 60.0, 0.25)

    step_h = max(1, round(rate_hz / 25.0))
    smooth = max(1, round(0.1 * rate_hz))
    env = pd.Series(band * band).rolling(smooth, center=True, min_periods=1).mean().pow(0.5).to_numpy()
    heart = env[::step_h]
    sos = butter(2, [0.05, 1.0], btype="band", fs=rate_hz, output="sos")
    step_b = max(1, round(rate_hz / 5.0))
    breath = sosfiltfilt(sos, sig)[::step_b]
    fs_h, fs_b = rate_hz / step_h, rate_hz / step_b

    moving = np.zeros(int(np.ceil(sig.size / rate_hz)) + 1, bool)  # per second
    for s, e, _ in moves:
        moving[int(s) : int(np.ceil(e)) + 1] = True
    vitals: list[tuple[float, float | None, float | None]] = []
    t = p.vitals_window_s
    while t <= sig.size / rate_hz + 1e-9:
        t0 = t - p.vitals_window_s
        hr, hp = _rate(
            heart[round(t0 * fs_h) : round(t * fs_h)], fs_h, p.heart_min_bpm, p.heart_max_bpm, 0.85
        )
        br, bp = _rate(
            breath[round(t0 * fs_b) : round(t * fs_b)], fs_b, p.breath_min_bpm, p.breath_max_bpm, 0.5
        )
        still = not moving[int(t0) : int(np.ceil(t))].any()
        vitals.append(
            (
                t,
                round(hr, 1) if still and hp >= p.vitals_min_periodicity else None,
                round(br, 1) if still and bp >= p.vitals_min_periodicity else None,
            )
        )
        t += p.vitals_hop_s

    per_epoch = max(1, round(p.epoch_s / frame_s))
    counts = pd.Series(np.maximum(ratio - p.count_k, 0.0) * frame_s)
    epoch_counts = counts.groupby(np.arange(counts.size) // per_epoch).sum().to_numpy()
    return {"movements": moves, "vitals": vitals, "epoch_counts": epoch_counts}
