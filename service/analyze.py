"""``bedside analyze``: the live detector run over a whole recording as fast as the CPU allows.

The JSON it prints is the contract the detector is checked by (keep it stable, extend it):
``recording`` (rate_hz, duration_s, samples), ``events`` (id, type, start_s, end_s,
duration_s, intensity, profile, confidence, cause), ``vitals`` (t_s, heart_bpm, breath_bpm),
``epochs`` (t_s, count, asleep, in_bed), ``states`` and ``summary``.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np

from service.detect import Detector, DetectorParams
from service.detect.types import MOVEMENT_TYPES, Epoch, Event, Output, State, Vitals

#: Samples handed to the detector at a time: the same streaming code path as the daemon.
CHUNK_SAMPLES = 65536


def run_detector(samples: np.ndarray, rate_hz: float, params: DetectorParams) -> list[Output]:
    """Every output of a fresh Detector over ``samples``, fed in chunks, then flushed."""
    det = Detector(rate_hz=rate_hz, params=params)
    outs: list[Output] = []
    for i in range(0, samples.shape[0], CHUNK_SAMPLES):
        outs.extend(det.process(samples[i : i + CHUNK_SAMPLES]))
    outs.extend(det.flush())
    return outs


def _num(x: float | None, nd: int = 3) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), nd)


def analysis_json(samples: np.ndarray, rate_hz: float, params: DetectorParams) -> dict[str, Any]:
    """The whole ``bedside analyze --json`` document for one recording."""
    outs = run_detector(samples, rate_hz, params)
    events = [o for o in outs if isinstance(o, Event)]
    epochs = [o for o in outs if isinstance(o, Epoch)]
    vitals = [o for o in outs if isinstance(o, Vitals)]
    states = [o for o in outs if isinstance(o, State)]
    counts = Counter(e.type for e in events)
    hr = [v.heart_bpm for v in vitals if v.heart_bpm is not None]
    br = [v.breath_bpm for v in vitals if v.breath_bpm is not None]
    asleep_epochs = [e for e in epochs if e.asleep]
    duration_s = samples.shape[0] / rate_hz
    return {
        "recording": {
            "rate_hz": rate_hz,
            "duration_s": round(duration_s, 3),
            "samples": int(samples.shape[0]),
        },
        "events": [
            {
                "id": f"e{e.seq}",
                "type": e.type,
                "start_s": _num(e.start_s),
                "end_s": _num(e.end_s),
                "duration_s": _num(e.duration_s),
                "intensity": _num(e.intensity, 2),
                "profile": e.profile,
                "confidence": _num(e.confidence),
                "cause": None if e.cause_seq is None else f"e{e.cause_seq}",
                "details": {k: _num(v) for k, v in e.details.items()},
            }
            for e in events
        ],
        "vitals": [
            {"t_s": _num(v.t_s), "heart_bpm": _num(v.heart_bpm, 1), "breath_bpm": _num(v.breath_bpm, 1)}
            for v in vitals
        ],
        "epochs": [
            {"t_s": _num(e.start_s), "count": _num(e.count), "asleep": e.asleep, "in_bed": e.in_bed}
            for e in epochs
        ],
        "states": [
            {"t_s": _num(s.t_s), "in_bed": s.in_bed, "moving": s.moving, "asleep": s.asleep} for s in states
        ],
        "summary": {
            "profile": params.profile,
            "counts": dict(sorted(counts.items())),
            "movements": sum(counts[t] for t in MOVEMENT_TYPES),
            "epochs": len(epochs),
            "sleep_min": round(sum(e.duration_s for e in asleep_epochs) / 60.0, 1),
            "heart_bpm_mean": _num(float(np.mean(hr)), 1) if hr else None,
            "breath_bpm_mean": _num(float(np.mean(br)), 1) if br else None,
            "vitals_coverage": round(len(hr) / len(vitals), 3) if vitals else None,
        },
    }
