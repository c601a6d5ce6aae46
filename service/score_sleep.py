"""`bedside score-sleep`: the detector's sleep/wake rule on any epoch counts (bed sensor or actigraphy)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np

from hardware.actigraphy import EpochCounts
from service.detect.params import DetectorParams
from service.detect.sleep import cole_kripke, find_awakenings, main_sleep, score_sleep, summarize_sleep


def _summary(asleep: np.ndarray, epoch_s: float, p: DetectorParams, offset_s: float = 0.0) -> dict[str, Any]:
    s = summarize_sleep(asleep, epoch_s, p.wake_bout_epochs, p.sleep_bout_epochs)
    return {
        "sleep_onset_s": None if s.sleep_onset_s is None else s.sleep_onset_s + offset_s,
        "sleep_offset_s": None if s.sleep_offset_s is None else s.sleep_offset_s + offset_s,
        "total_sleep_min": round(s.total_sleep_min, 1),
        "waso_min": round(s.waso_min, 1),
        "awakenings": s.awakenings,
        "efficiency": None if s.efficiency is None else round(s.efficiency, 3),
    }


#: A night is looked for from 18:00 to 12:00 the next day; its main sleep period is the longest
#: run of sleep joined across wake gaps shorter than an hour (the diary's NIGHT, not naps).
NIGHT_WINDOW = (18, 18.0)  # start hour, length in hours
MAIN_SLEEP_MAX_GAP_S = 3600.0


def _night_windows(start: datetime, n: int, epoch_s: float) -> list[tuple[int, int]]:
    w0 = start.replace(hour=NIGHT_WINDOW[0], minute=0, second=0, microsecond=0)
    if w0 > start:
        w0 -= timedelta(days=1)
    out: list[tuple[int, int]] = []
    while True:
        i0 = int((w0 - start).total_seconds() // epoch_s)
        i1 = i0 + int(NIGHT_WINDOW[1] * 3600 // epoch_s)
        if i0 >= n:
            return out
        if i0 >= 0 and i1 <= n:
            out.append((i0, i1))
        w0 += timedelta(days=1)


def _main_period(calls: np.ndarray, epoch_s: float, i0: int) -> dict[str, Any] | None:
    ms = main_sleep(calls, max(1, int(MAIN_SLEEP_MAX_GAP_S // epoch_s)))
    if ms is None:
        return None
    a, b = ms
    return {
        "sleep_onset_s": (i0 + a) * epoch_s,
        "sleep_offset_s": (i0 + b) * epoch_s,
        "waso_min": round(float((~calls[a:b]).sum()) * epoch_s / 60.0, 1),
    }


def _night(
    data: EpochCounts, asleep: np.ndarray, ck: np.ndarray | None, i0: int, i1: int, p: DetectorParams
) -> dict[str, Any]:
    assert data.start is not None
    night = data.start + timedelta(seconds=i0 * data.epoch_s)
    main = _main_period(asleep[i0:i1], data.epoch_s, i0)
    awakenings = 0
    if main is not None:
        a = int(main["sleep_onset_s"] // data.epoch_s)
        b = int(main["sleep_offset_s"] // data.epoch_s)
        awakenings = len(find_awakenings(asleep[a:b], p.wake_bout_epochs, p.sleep_bout_epochs))
    return {
        "night": night.date().isoformat(),
        "main_sleep": None if main is None else {**main, "awakenings": awakenings},
        "cole_kripke": None if ck is None else _main_period(ck[i0:i1], data.epoch_s, i0),
    }


def score_json(data: EpochCounts, params: DetectorParams) -> dict[str, Any]:
    """Per-epoch calls, awakenings, a summary, and, for a record over 36 h (actigraphy over weeks),
    each night's main sleep period with Cole-Kripke's beside it. Times are seconds from the first epoch."""
    e = data.epoch_s
    asleep = score_sleep(data.counts, e)
    doc: dict[str, Any] = {
        "recording": {"epochs": int(data.counts.size), "epoch_s": e, "source": data.source,
                      "start": None if data.start is None else data.start.isoformat()},
        "epochs": [{"t_s": i * e, "asleep": bool(a)} for i, a in enumerate(asleep)],
        "awakenings": [
            {"start_s": b.start * e, "end_s": b.end * e}
            for b in find_awakenings(asleep, params.wake_bout_epochs, params.sleep_bout_epochs)
        ],
        "summary": _summary(asleep, e, params),
    }  # fmt: skip
    if data.start is not None and data.counts.size * e > 36 * 3600:
        ck_all = cole_kripke(data.counts) if e == 60.0 else None
        doc["nights"] = [
            _night(data, asleep, ck_all, i0, i1, params)
            for i0, i1 in _night_windows(data.start, data.counts.size, e)
        ]
    return doc
