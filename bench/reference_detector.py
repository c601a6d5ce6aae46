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

import numpy as np
import pandas as pd
from scipy.signal import butter, filtfilt, iirnotch

from service.detect.params import DetectorParams


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
    sig = np.asarray(x, dtype=np.float64).ravel()
    if sig.size == 0:
        raise ValueError("reference_movements needs a non-empty signal")
    if not rate_hz >= 10.0:
        raise ValueError(f"rate_hz must be at least 10 Hz, got {rate_hz!r}")
    sig = sig - np.median(sig)
    if p.mains_hz > 0 and p.mains_hz < 0.45 * rate_hz:
        bn, an = iirnotch(p.mains_hz, 30.0, fs=rate_hz)
        sig = filtfilt(bn, an, sig)
    hi = min(p.move_band_high_hz, 0.45 * rate_hz)
    b, a = butter(4, [p.move_band_low_hz, hi], btype="band", fs=rate_hz)
    band = filtfilt(b, a, sig)

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
    return out
