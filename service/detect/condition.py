"""Stage 1: remove DC, drift and mains hum, decimate, and split into bands (streaming IIR).

Raw samples go through a mains notch and an anti-alias low-pass at the input rate, are
decimated by an integer factor to an *internal rate* of at least ``internal_rate_hz`` (50 Hz
input is used as is), and are split there into

* the movement band (``move_band_low_hz`` to ``move_band_high_hz``, capped at 0.45 x the
  internal rate so that 50 Hz input works): limb and body movement, and the sharp BCG
  J-waves of a still sleeper, which set the resting baseline and, through their energy
  envelope, give the heart rate (on the reference fibre-optic recording the envelope of
  this band tracks the oximeter far better than a 1-10 Hz band, whose low end is dominated
  by breathing harmonics);
* the detection band: the movement band through a further ``move_edge_order`` high-pass at
  its low edge (a 4th-order edge in all by default). The movement envelope, its resting
  baseline and the movement boundaries use it: a real under-mattress sensor's heartbeat has
  much of its energy at 1-2 Hz (62 % of the movement band's energy on the reference
  recording), which the band filter's soft 2nd-order edge lets in, so the resting level
  came out 1.4-1.9x the energy actually in 2-20 Hz and every ``k_*`` ratio was that much
  harder to reach on a real bed than on the simulator (1.0x);
* the breath band (0.05 to 1 Hz): respiration and posture for breathing rate and presence.

Every filter is a Butterworth/notch second-order-section cascade run with SciPy's compiled
sosfilt kernel (``service.detect.filters``) and carried state, so results do not depend on
block size. Filters start (and restart after a sensor fault with a new level) in the steady state of the first
sample, so neither the DC offset nor a fault's level step rings through the bands.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.detect.filters import butter_sos, notch_sos, sosfilt_inplace, sosfilt_zi
from service.detect.params import DetectorParams


@dataclass(slots=True)
class Bands:
    """One block's output at the internal rate."""

    move: np.ndarray
    breath: np.ndarray
    fault: np.ndarray  # bool: the decimated sample was a repaired (held) value
    raw: np.ndarray  # the decimated signal before the band split (movement boundaries use it)
    det: np.ndarray  # the movement band with a steeper low edge (envelope, baseline, boundaries)


class _Sos:
    """One streaming SOS cascade (state carried between calls).

    Uses scipy's compiled ``_sosfilt`` kernel directly (the public ``sosfilt`` spends most of
    a small block's time validating arguments, and importing ``scipy.signal`` costs ~75 MB):
    see ``service.detect.filters``.
    """

    def __init__(self, sos: np.ndarray) -> None:
        self.sos = np.ascontiguousarray(sos, dtype=np.float64)
        self.zi_unit = sosfilt_zi(self.sos)
        self.zi: np.ndarray | None = None  # shape (1, sections, 2)

    def reset(self, value: float) -> None:
        """Steady state for a constant input ``value``."""
        self.zi = np.ascontiguousarray((self.zi_unit * value)[None, :, :])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if x.size == 0:
            return np.zeros(0)
        if self.zi is None:
            self.reset(float(x[0]))
        assert self.zi is not None
        y = np.array(x, dtype=np.float64, order="C").reshape(1, -1)
        sosfilt_inplace(self.sos, y, self.zi)
        return y[0]


def _band(low_hz: float, high_hz: float, fs: float, order: int = 2) -> np.ndarray:
    nyq = fs / 2
    high = min(high_hz, 0.45 * fs)
    low = min(low_hz, high / 4)
    if high >= nyq * 0.999:
        return butter_sos(order, low, "highpass", fs)
    return butter_sos(order, (low, high), "bandpass", fs)


class Conditioner:
    """Streaming notch + anti-alias + decimation + band split (one per stream)."""

    def __init__(self, rate_hz: float, params: DetectorParams) -> None:
        if rate_hz <= 0:
            raise ValueError(f"rate_hz must be positive, got {rate_hz}")
        self.rate_hz = rate_hz
        self.factor = max(1, int(rate_hz // params.internal_rate_hz))
        self.internal_hz = rate_hz / self.factor
        pre: list[np.ndarray] = []
        mains = params.mains_hz
        if mains > 0 and mains < 0.45 * rate_hz:
            pre.append(notch_sos(mains, 30.0, rate_hz))
        if self.factor > 1:
            pre.append(butter_sos(4, 0.4 * self.internal_hz, "lowpass", rate_hz))
        self.pre = _Sos(np.vstack(pre)) if pre else None
        fs = self.internal_hz
        self.move_band_hz = (
            min(params.move_band_low_hz, min(params.move_band_high_hz, 0.45 * fs) / 4),
            min(params.move_band_high_hz, 0.45 * fs),
        )
        self.move = _Sos(_band(params.move_band_low_hz, params.move_band_high_hz, fs))
        self.breath = _Sos(_band(0.05, 1.0, fs))
        edge = params.move_edge_order
        self.det = _Sos(butter_sos(edge, self.move_band_hz[0], "highpass", fs)) if edge > 0 else None
        self.n = 0  # raw samples seen
        self._pending_reset = False

    def _all(self) -> list[_Sos]:
        return [f for f in (self.pre, self.move, self.breath, self.det) if f is not None]

    def process(self, x: np.ndarray, fault: np.ndarray, resets: list[int]) -> Bands:
        """Filter one repaired block; ``resets`` are block indices where a new level starts."""
        pieces: list[tuple[np.ndarray, np.ndarray, bool]] = []
        cuts = sorted({r for r in resets if 0 <= r < x.size})
        bounds = sorted({0, *cuts, x.size})
        for k in range(len(bounds) - 1):
            a, b = bounds[k], bounds[k + 1]
            reset = a in cuts and (a > 0 or self.n > 0)
            if reset and self.pre is not None:
                self.pre.reset(float(x[a]))
            seg = x[a:b]
            y = self.pre(seg) if self.pre is not None else seg
            # keep raw samples whose global index i satisfies i % factor == factor - 1
            first = (self.factor - 1 - (self.n + a)) % self.factor
            keep = slice(first, None, self.factor)
            pieces.append((y[keep], fault[a:b][keep], reset))
        self.n += x.size
        yd = np.concatenate([p[0] for p in pieces]) if pieces else np.zeros(0)
        fd = np.concatenate([p[1] for p in pieces]) if pieces else np.zeros(0, bool)
        if len(pieces) == 1 and not pieces[0][2] and not self._pending_reset:
            mv = self.move(yd)
            return Bands(mv, self.breath(yd), fd, yd, self._det(mv))
        # internal-rate filters restart at the first decimated value after a reset
        move = np.empty_like(yd)
        breath = np.empty_like(yd)
        det = np.empty_like(yd)
        pos = 0
        pending_reset = self._pending_reset
        for y_k, _, reset in pieces:
            m = y_k.size
            pending_reset = pending_reset or reset
            if m == 0:
                continue
            if pending_reset:
                for f in (self.move, self.breath):
                    f.reset(float(y_k[0]))
                if self.det is not None:
                    self.det.reset(0.0)  # the band restarts in its steady state: output 0
                pending_reset = False
            move[pos : pos + m] = self.move(y_k)
            det[pos : pos + m] = self._det(move[pos : pos + m])
            breath[pos : pos + m] = self.breath(y_k)
            pos += m
        self._pending_reset = pending_reset
        return Bands(move, breath, fd, yd, det)

    def _det(self, move: np.ndarray) -> np.ndarray:
        return self.det(move) if self.det is not None else move
