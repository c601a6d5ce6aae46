"""EDF+ export of one night: the whole raw bed-sensor signal, with events, relabels and marks as annotations.

Layout (docs/exports.md): one signal labelled :data:`SIGNAL_LABEL` at the night's sample rate, in
ADC ``counts`` (``g`` for an accelerometer), starting at the night's start (to the millisecond,
through EDF+'s sub-second start). Chunks of raw signal that are missing inside the night are
filled with the night's median level and marked by a :data:`GAP_TEXT` annotation over their
span. Patient and recording fields are anonymous unless a patient code is given.

Annotation texts (at most 40 characters: edflib's limit):

- an event: ``limb_movement intensity=8.4`` over the event's span;
- a user's relabel of that event: ``relabel limb_movement->not_an_event`` over the same span;
- a mark (button, MQTT, dashboard): ``mark <kind>: <note>`` at its instant (duration 0);
- a filled gap: ``signal gap (filled)``.
"""

from __future__ import annotations

import logging
import math
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np

from service.export import ExportError, NightNotFoundError, RawSignalMissingError
from service.history.load import NightData, load_night
from service.store.signal_codec import CodecError, decode
from service.timefmt import parse_iso_utc

logger = logging.getLogger(__name__)

SIGNAL_LABEL: Final = "Bed sensor"
GAP_TEXT: Final = "signal gap (filled)"
EVENT_TEXT: Final = "{event_type} intensity={intensity:.1f}"
RELABEL_TEXT: Final = "relabel {event_type}->{label}"
MARK_TEXT: Final = "mark {kind}: {note}"
#: Longest annotation text edflib writes; longer texts are cut here rather than by the library.
MAX_TEXT_CHARS: Final = 40
_DIG_MIN, _DIG_MAX = -32768, 32767
_LEVELS = _DIG_MAX - _DIG_MIN

#: Progress callback: (records written, records in all).
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class RawNight:
    """A night's raw signal laid out from the night's start; ``gaps`` are (first sample, count) filled."""

    start: datetime
    rate_hz: float
    samples: np.ndarray
    gaps: list[tuple[int, int]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Annotation:
    """One EDF+ annotation: seconds from the recording's start, seconds long, text."""

    onset_s: float
    duration_s: float
    text: str


@dataclass(frozen=True, slots=True)
class EdfResult:
    """What :func:`write_edf` wrote."""

    path: Path
    start: datetime
    rate_hz: float
    samples: int
    gap_s: float
    annotations: int
    dimension: str


def read_raw_night(conn: sqlite3.Connection, night_id: str, night_start: datetime) -> RawNight:
    """Assemble the night's raw chunks into one array starting at ``night_start``.

    Raises RawSignalMissingError when the night has no raw chunks left, ExportError when the
    chunks disagree on their rate or cannot be decoded.
    """
    rows = conn.execute(
        "SELECT start_index, start_at, rate_hz, n, encoding, data FROM raw_chunks "
        "WHERE night_id = ? ORDER BY start_index",
        (night_id,),
    ).fetchall()
    if not rows:
        snippets = conn.execute("SELECT COUNT(*) FROM snippets WHERE night_id = ?", (night_id,)).fetchone()[0]
        raise RawSignalMissingError(
            f"night {night_id} has no whole-night raw signal any more (only {snippets} snippets around "
            "events are kept): whole nights are pruned after storage.raw_retention_days days; raise that "
            "setting to keep more nights for EDF export"
        )
    rates = {float(r[2]) for r in rows}
    if len(rates) != 1:
        raise ExportError(f"night {night_id}: raw chunks disagree on the sample rate ({sorted(rates)} Hz)")
    rate_hz = rates.pop()
    if not rate_hz > 0:
        raise ExportError(f"night {night_id}: raw chunks have a sample rate of {rate_hz} Hz")
    first_index, first_at = int(rows[0][0]), parse_iso_utc(rows[0][1])
    stream_zero = first_at - timedelta(seconds=first_index / rate_hz)
    offset = round((stream_zero - night_start).total_seconds() * rate_hz)
    end = max(offset + int(r[0]) + int(r[3]) for r in rows)
    if end <= 0:
        raise RawSignalMissingError(f"night {night_id}: its raw signal ends before the night starts")
    samples = np.full(end, np.nan, dtype=np.float64)
    for start_index, _at, _rate, n, encoding, blob in rows:
        try:
            block = decode(encoding, blob)
        except CodecError as exc:
            raise ExportError(f"night {night_id}: raw chunk at sample {start_index}: {exc}") from exc
        if block.size != n:
            raise ExportError(
                f"night {night_id}: raw chunk at sample {start_index} holds {block.size}, not {n}"
            )
        a = offset + int(start_index)
        if a < 0:  # samples before the night's start are not part of the night
            block, a = block[-a:], 0
        samples[a : a + block.size] = block
    missing = np.isnan(samples)
    gaps = _runs(missing)
    if gaps:
        samples[missing] = _fill_value(samples[~missing])
    return RawNight(start=night_start, rate_hz=rate_hz, samples=samples, gaps=gaps)


def night_annotations(data: NightData, start: datetime) -> list[Annotation]:
    """Every event (with its relabel, if any) and every mark of the night, as EDF+ annotations."""
    out: list[Annotation] = []
    for e in data.events:
        onset = (parse_iso_utc(e["start_at"]) - start).total_seconds()
        duration = max(0.0, float(e["duration_s"]))
        out.append(Annotation(onset, duration, _cut(EVENT_TEXT.format(**e))))
        if e.get("label"):
            out.append(Annotation(onset, duration, _cut(RELABEL_TEXT.format(**e))))
    for a in data.annotations:
        onset = (parse_iso_utc(a["at"]) - start).total_seconds()
        note = str(a.get("note") or "")
        text = MARK_TEXT.format(kind=a["kind"], note=note) if note else f"mark {a['kind']}"
        out.append(Annotation(onset, 0.0, _cut(text)))
    return sorted(out, key=lambda x: (x.onset_s, x.text))


def signal_dimension(source: str) -> str:
    """Physical dimension of the stored samples: ``g`` for the accelerometer, else ADC ``counts``."""
    return "g" if source.startswith("imu") else "counts"


def write_edf(
    conn: sqlite3.Connection,
    night_id: str,
    out_path: str | Path,
    *,
    patient_code: str = "",
    progress: ProgressFn | None = None,
) -> EdfResult:
    """Write the night as an EDF+ file at ``out_path``; see the module docstring for the layout.

    NightNotFoundError for an unknown id, RawSignalMissingError when the raw signal was pruned.
    """
    import pyedflib  # only the EDF export needs it

    data = load_night(conn, night_id)
    if data is None:
        raise NightNotFoundError(f"no night with id {night_id!r} in the database")
    start = parse_iso_utc(data.night["started_at"])
    raw = read_raw_night(conn, night_id, start)
    source = str(data.night.get("source") or "")
    dimension = signal_dimension(source)
    pmin, pmax = _physical_range(raw.samples)
    annotations = night_annotations(data, start)
    for lo, n in raw.gaps:
        annotations.append(Annotation(lo / raw.rate_hz, n / raw.rate_hz, GAP_TEXT))

    path = Path(out_path)
    writer = pyedflib.EdfWriter(str(path), 1, file_type=pyedflib.FILETYPE_EDFPLUS)
    try:
        writer.setSignalHeader(
            0,
            {
                "label": SIGNAL_LABEL,
                "dimension": dimension,
                "sample_frequency": raw.rate_hz,
                "physical_min": pmin,
                "physical_max": pmax,
                "digital_min": _DIG_MIN,
                "digital_max": _DIG_MAX,
                "transducer": "piezo film" if dimension == "counts" else "accelerometer",
                "prefilter": "none",
            },
        )
        # EDF holds a clock reading without zone: ours is UTC. pyedflib writes the sub-second
        # part in the wrong unit (x100 where edflib takes 100 ns units), so it is set below.
        writer.setStartdatetime(start.replace(tzinfo=None, microsecond=0))
        writer.setEquipment("Bedside")
        writer.setRecordingAdditional("UTC")
        if patient_code:
            writer.setPatientCode(patient_code)
        spr = int(writer.get_smp_per_record(0))
        samples = raw.samples
        pad = (-samples.size) % spr
        if pad:
            samples = np.concatenate([samples, np.full(pad, _fill_value(raw.samples))])
            annotations.append(Annotation(raw.samples.size / raw.rate_hz, pad / raw.rate_hz, GAP_TEXT))
        records = samples.size // spr
        writer.set_number_of_annotation_signals(min(64, 1 + math.ceil(len(annotations) / max(records, 1))))
        if start.microsecond:
            _set_subsecond_start(writer, start.microsecond)
        digital = _to_digital(samples, pmin, pmax)
        for r in range(records):
            writer.writeDigitalSamples(np.ascontiguousarray(digital[r * spr : (r + 1) * spr]))
            if progress is not None and (r % 600 == 0 or r == records - 1):
                progress(r + 1, records)
        for a in sorted(annotations, key=lambda x: x.onset_s):
            writer.writeAnnotation(a.onset_s, a.duration_s, a.text)
    finally:
        writer.close()
    gap_s = sum(n for _, n in raw.gaps) / raw.rate_hz
    logger.info("wrote %s: %d samples, %d annotations", path, samples.size, len(annotations))
    return EdfResult(path, start, raw.rate_hz, int(samples.size), gap_s, len(annotations), dimension)


def _set_subsecond_start(writer: Any, microsecond: int) -> None:
    """Write the start's fraction of a second (edflib: units of 100 ns) into the first TAL."""
    from pyedflib._extensions._pyedflib import set_starttime_subsecond

    if set_starttime_subsecond(writer.handle, microsecond * 10) != 0:
        raise ExportError(f"the EDF writer refused a start time fraction of {microsecond} us")


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first index, length) of each run of True in ``mask``."""
    if not mask.any():
        return []
    d = np.diff(mask.astype(np.int8), prepend=0, append=0)
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    return [(int(a), int(b - a)) for a, b in zip(starts, ends, strict=True)]


def _fill_value(recorded: np.ndarray) -> float:
    """The level a gap is filled with: the median of what was recorded (whole for whole-number data)."""
    if recorded.size == 0:
        return 0.0
    med = float(np.median(recorded))
    return float(np.rint(med)) if bool(np.all(recorded == np.rint(recorded))) else med


def _physical_range(x: np.ndarray) -> tuple[float, float]:
    """Physical min and max for the header (each fits EDF's 8 characters).

    Whole-number data spanning at most 65535 (ADC counts) get a range of exactly 65535, so one
    digital step is one count and the file holds the samples exactly.
    """
    lo, hi = float(x.min()), float(x.max())
    if bool(np.all(x == np.rint(x))) and hi - lo <= _LEVELS and lo > -1e7 and lo + _LEVELS < 1e8:
        return lo, lo + _LEVELS
    if hi <= lo:
        hi = lo + 1.0
    return _edf_number(lo, up=False), _edf_number(hi, up=True)


def _edf_number(value: float, *, up: bool) -> float:
    """``value`` rounded outward (down for a minimum, up for a maximum) to a number of <= 8 characters."""
    for decimals in range(7, -1, -1):
        q = 10.0**decimals
        r = (math.ceil(value * q) if up else math.floor(value * q)) / q
        text = f"{r:.{decimals}f}"
        if len(text) <= 8:
            return float(text)
    raise ExportError(f"signal value {value} does not fit an EDF header field (8 characters)")


def _to_digital(x: np.ndarray, pmin: float, pmax: float) -> np.ndarray:
    d = np.rint((x - pmin) / (pmax - pmin) * _LEVELS + _DIG_MIN)
    return np.clip(d, _DIG_MIN, _DIG_MAX).astype(np.int32)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT_CHARS else text[: MAX_TEXT_CHARS - 1] + "~"
