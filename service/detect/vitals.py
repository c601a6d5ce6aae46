"""Stage 7: heart rate (ballistocardiogram) and breathing rate from the still sleeper.

Heart rate: the movement band (2-20 Hz, where the BCG's sharp J-waves live) is squared and
smoothed over 0.1 s into a beat-energy envelope whose period is the beat interval whatever
the shape of the BCG complex (the H-I-J-K waves give one energy lobe per beat). Its
autocorrelation over the window (``vitals_window_s``, 20 s) is searched between
``heart_max_bpm`` and ``heart_min_bpm`` and the peak refined by parabolic interpolation.
Harmonics: the autocorrelation of a periodic envelope also peaks at 2, 3 ... beat intervals,
so the shortest lag whose peak reaches 85 % of the highest one wins (a multiple of the
period never beats the period itself). Breathing rate: the same search on the breath band
(0.05-1 Hz) decimated to about 5 Hz, between 6 and 30 breaths per minute (ratio 50 %: the
half-breath lag is anti-correlated, while alternating deep and shallow breaths make the
two-breath lag compete with the one-breath lag).

A rate is reported only when the autocorrelation peak reaches ``vitals_min_periodicity``;
the Detector asks only for windows that are still, fault-free and in bed.
"""

from __future__ import annotations

import functools
import math

import numpy as np

HEART_HARMONIC_RATIO = 0.85
BREATH_HARMONIC_RATIO = 0.5  # breathing's half-period lag is anti-correlated: safe to go low


@functools.cache
def fft_len(n: int) -> int:
    """The smallest 5-smooth length (2^a 3^b 5^c) at least ``n``: pocketfft is fast at those.

    An autocorrelation read up to lag L from an FFT of a signal of n samples needs at least
    n + L points (no circular wrap-around reaches lags 0..L); a power of two >= 2n (the usual
    choice) does nearly twice the work for the short lags read here.
    """
    best = 1 << max(0, int(n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def power_spectrum(f: np.ndarray) -> np.ndarray:
    """|f|^2 as a complex array (zero imaginary part), ready for ``np.fft.irfft``.

    The same numbers as ``f.real**2 + f.imag**2``; irfft of a real array first converts it
    to complex, which costs more than the transform itself.
    """
    out = np.empty(f.shape, dtype=np.complex128)
    np.add(f.real**2, f.imag**2, out=out.real)
    out.imag = 0.0
    return out


def _autocorr(x: np.ndarray, max_lag: int) -> np.ndarray:
    """Normalised autocorrelation for lags 0..max_lag (unbiased by overlap length)."""
    n = x.size
    x = x - x.mean()
    nfft = fft_len(n + max_lag + 1)
    f = np.fft.rfft(x, nfft)
    ac = np.fft.irfft(power_spectrum(f), nfft)[: max_lag + 1]
    if ac[0] <= 0:
        return np.zeros(max_lag + 1)
    ac = ac / (n - np.arange(max_lag + 1))  # unbiased
    return ac / ac[0]


def _peaks(ac: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Indices of local maxima of ``ac`` in [lo, hi]."""
    lo = max(lo, 1)
    hi = min(hi, ac.size - 2)
    if hi < lo:
        return np.zeros(0, int)
    seg = ac[lo - 1 : hi + 2]
    is_peak = (seg[1:-1] > seg[:-2]) & (seg[1:-1] >= seg[2:])
    return np.flatnonzero(is_peak) + lo


def _refine(ac: np.ndarray, k: int) -> float:
    """Parabolic interpolation of a peak position."""
    if 0 < k < ac.size - 1:
        a, b, c = ac[k - 1], ac[k], ac[k + 1]
        den = a - 2 * b + c
        if den < 0:
            return k + 0.5 * (a - c) / den
    return float(k)


def rate_from_autocorr(
    x: np.ndarray, fs: float, min_per_min: float, max_per_min: float, harmonic_ratio: float = 0.85
) -> tuple[float | None, float]:
    """Dominant repetition rate of ``x`` in events per minute, and its periodicity (0-1).

    The shortest lag whose autocorrelation peak reaches ``harmonic_ratio`` x the highest
    peak in range wins, so a multiple of the period never beats the period itself.
    """
    lo = int(np.floor(fs * 60.0 / max_per_min))
    hi = int(np.ceil(fs * 60.0 / min_per_min))
    if x.size < 2 * hi or hi < 2:
        return None, 0.0
    ac = _autocorr(x, hi + 1)
    pk = _peaks(ac, lo, hi)
    if pk.size == 0:
        return None, 0.0
    vals = ac[pk]
    best = float(vals.max())
    if best <= 0:
        return None, best
    k = int(pk[np.flatnonzero(vals >= harmonic_ratio * best)[0]])
    lag = _refine(ac, k)
    return 60.0 * fs / lag, float(ac[k])


def heart_rate(
    heart_band: np.ndarray, fs: float, min_bpm: float = 40.0, max_bpm: float = 150.0
) -> tuple[float | None, float]:
    """Heart rate (bpm) and periodicity from a movement-band (2-20 Hz) BCG window at ``fs``."""
    if fs < 5.0 or heart_band.size == 0:
        return None, 0.0
    e = heart_band * heart_band
    w = max(1, round(0.1 * fs))
    if w > 1:
        c = np.cumsum(np.concatenate(([0.0], e)))
        e = (c[w:] - c[:-w]) / w
    e = np.sqrt(e)
    return rate_from_autocorr(e, fs, min_bpm, max_bpm)


def breath_rate(
    breath_band: np.ndarray, fs: float, min_bpm: float = 6.0, max_bpm: float = 30.0
) -> tuple[float | None, float]:
    """Breathing rate (breaths/min) and periodicity from a breath-band window at ``fs``."""
    step = max(1, int(fs // 5.0))
    x = breath_band[::step]
    return rate_from_autocorr(x, fs / step, min_bpm, max_bpm, harmonic_ratio=BREATH_HARMONIC_RATIO)


# ---------------------------------------------------------------------- batched versions
def decimation(target: int, *lengths: int) -> int:
    """The largest factor <= ``target`` dividing every length (window and hop alignment)."""
    g = 0
    for n in lengths:
        g = math.gcd(g, int(n))
    for q in range(max(1, target), 0, -1):
        if g % q == 0:
            return q
    return 1


def batch_rates(
    windows: np.ndarray,
    fs: float,
    min_per_min: float,
    max_per_min: float,
    harmonic_ratio: float = 0.85,
    rows: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``rate_from_autocorr`` for every row of ``windows`` at once: (rates with NaN, periodicity).

    ``rows`` (bool per row), if given, selects the rows wanted: the others are not computed
    and come back as (NaN, 0).
    """
    h, n = windows.shape
    rates = np.full(h, np.nan)
    per = np.zeros(h)
    lo = max(1, int(np.floor(fs * 60.0 / max_per_min)))
    hi = int(np.ceil(fs * 60.0 / min_per_min))
    if h == 0 or n < 2 * hi or hi < 2 or hi < lo:
        return rates, per
    want = None
    if rows is not None and not rows.all():
        want = np.flatnonzero(rows)
        if want.size == 0:
            return rates, per
        windows = windows[want]
    x = windows - windows.mean(axis=1, keepdims=True)
    nfft = fft_len(n + hi + 2)  # lags 0..hi+1 are read
    f = np.fft.rfft(x, nfft, axis=1)
    ac = np.fft.irfft(power_spectrum(f), nfft, axis=1)[:, : hi + 2]
    ac = ac / (n - np.arange(hi + 2))
    ac0 = ac[:, 0].copy()
    valid = ac0 > 0
    ac = ac / np.where(valid, ac0, 1.0)[:, None]
    c = ac[:, lo : hi + 1]
    pk = (c > ac[:, lo - 1 : hi]) & (c >= ac[:, lo + 1 : hi + 2])
    best = np.where(pk, c, -np.inf).max(axis=1)
    good = valid & np.isfinite(best) & (best > 0)
    sel = pk & (c >= harmonic_ratio * best[:, None])
    kk = lo + np.argmax(sel, axis=1)
    idx = np.arange(kk.size)
    a, b, cc = ac[idx, kk - 1], ac[idx, kk], ac[idx, kk + 1]
    den = a - 2 * b + cc
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(den < 0, 0.5 * (a - cc) / den, 0.0)
    lag = kk + shift
    r = np.full(kk.size, np.nan)
    pr = np.zeros(kk.size)
    r[good] = 60.0 * fs / lag[good]
    pr[good] = b[good]
    if want is None:
        return r, pr
    rates[want] = r
    per[want] = pr
    return rates, per


def heart_envelope(x: np.ndarray, fs: float) -> tuple[np.ndarray, int]:
    """Beat-energy envelope: sqrt of the 0.1-s running mean of the squared heart band.

    ``env[i]`` covers ``x[i : i + w]`` ('valid'): returns (env, w - 1), the samples of
    history each value needs, so a window's envelope never depends on how the stream was cut.
    """
    w = max(1, round(0.1 * fs))
    e = x * x
    if w > 1:
        e = np.convolve(e, np.full(w, 1.0 / w), mode="valid")  # per-output sums: cut-independent
    return np.sqrt(np.maximum(e, 0.0)), w - 1
