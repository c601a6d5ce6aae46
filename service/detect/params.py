"""Detector thresholds and windows: one documented place for each, units in the names.

Every field carries ``metadata={"doc": ...}``; the config model is built from these fields,
so a threshold is defined once and shows up in ``[detector]`` of the TOML file with its doc.
Ratios (``k_*``) are dimensionless multiples of an adaptive resting baseline, so no default
is tied to one sensor's units.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PROFILES = ("aasm", "wasm2016")


def param(default: Any, doc: str) -> Any:
    """A documented dataclass field (the doc becomes the config field's description)."""
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True, slots=True)
class DetectorParams:
    """All tunable detector settings. Defaults follow the published scoring rules."""

    profile: str = param("aasm", "Rule profile for PLM series: 'aasm' (5-90 s) or 'wasm2016' (10-90 s).")
    k_on: float = param(
        3.0, "A movement starts when the envelope exceeds k_on x resting baseline (typical heartbeat peak)."
    )
    k_off: float = param(1.5, "A movement ends after min_off_s below k_off x resting baseline.")
    min_off_s: float = param(0.5, "Seconds below k_off x baseline that end a movement (AASM: 0.5).")
    merge_gap_s: float = param(0.5, "Movements separated by less than this many seconds merge.")
    onset_lookback_s: float = param(
        1.0,
        "A movement's reported start moves back over up to this many seconds of its rise before it "
        "crossed k_on: samples whose 0.1-s RMS stays at or above onset_k x baseline.",
    )
    onset_k: float = param(
        1.0, "... the samples moved over are at or above onset_k x baseline (the resting heartbeat peak)."
    )
    onset_gap_s: float = param(
        0.1, "... dips below onset_k shorter than this (a slow carrier's zero crossings) do not stop it."
    )
    end_k: float = param(
        1.0,
        "A movement's reported end is the last sample whose edge envelope (boundary_highpass_s, "
        "boundary_smooth_s) is at or above end_k x baseline: its own energy, not the band filters' ring.",
    )
    end_rest_s: float = param(
        1.2,
        "... end_k is raised to end_rest_k x the largest edge envelope over this many seconds before "
        "the movement's start (its resting heartbeat peaks on this envelope), at most k_off.",
    )
    end_rest_k: float = param(1.2, "... (see end_rest_s).")
    boundary_highpass_s: float = param(
        0.15,
        "The edge envelope's signal: the decimated input minus its centred moving mean over this many "
        "seconds (a short symmetric high-pass that rings for at most this long).",
    )
    boundary_smooth_s: float = param(0.04, "The edge envelope's centred RMS window, seconds.")
    baseline_window_s: float = param(30.0, "Window of the robust resting baseline (median), seconds.")
    epoch_s: float = param(30.0, "Sleep/wake epoch length, seconds.")
    wake_bout_epochs: int = param(2, "Consecutive wake epochs that make an awakening.")
    cause_window_s: float = param(
        30.0, "A movement this many seconds before an awakening is its likely cause."
    )

    # --- stage 1: conditioning -------------------------------------------------------------
    mains_hz: float = param(50.0, "Mains frequency notched out before band-splitting (0 disables).")
    move_band_low_hz: float = param(2.0, "Lower edge of the movement band, Hz.")
    move_band_high_hz: float = param(
        20.0, "Upper edge of the movement band, Hz (capped at 0.45 x the internal rate)."
    )
    move_edge_order: int = param(
        2,
        "Extra Butterworth high-pass order at move_band_low_hz for the movement envelope, its "
        "baseline and the boundaries (0: the band filter's soft 2nd-order edge alone, which lets "
        "a real sensor's 1-2 Hz heartbeat energy into the resting level).",
    )
    internal_rate_hz: float = param(
        50.0, "Input is low-passed and decimated by an integer factor to at least this rate, Hz."
    )

    # --- stage 2: envelope and baseline ----------------------------------------------------
    frame_s: float = param(0.1, "Envelope frame (RMS window and hop), seconds.")
    baseline_hop_s: float = param(1.0, "The baseline is updated once per this many seconds.")
    baseline_warmup_s: float = param(
        30.0,
        "At stream start, decisions wait this long; the first baseline is the median of the quietest "
        "seconds.",
    )
    baseline_max_freeze_s: float = param(
        60.0,
        "A baseline frozen by movement for longer than this re-learns the current level (posture or "
        "occupancy change).",
    )

    baseline_steady_s: float = param(
        6.0, "Frozen hops that stay this long within baseline_steady_ratio are a new resting level, s."
    )
    baseline_steady_periodicity: float = param(
        0.3, "... and pulse at a heart rate (envelope autocorrelation peak at least this, 0-1)."
    )
    baseline_steady_ratio: float = param(
        1.6, "Largest over smallest hop value of a steady (re-learnable) level."
    )

    # --- stage 4: classification -----------------------------------------------------------
    jerk_max_s: float = param(0.5, "Movements shorter than this are jerks (hypnic / myoclonic), seconds.")
    jerk_beat_ratio: float = param(
        2.0,
        "A brief burst starting one heart period (60/heart_max_bpm to 60/heart_min_bpm s) after the "
        "previous brief burst, peaking within this factor of it, is a heartbeat the baseline has not "
        "learned yet (just after getting into bed), not a jerk (a jerk is a single burst); 0 disables.",
    )
    jerk_min_intensity: float = param(
        8.0,
        "A movement shorter than jerk_max_s must peak at this x baseline to be a jerk; weaker ones "
        "are dropped (strong heartbeats reach 2-3x).",
    )
    core_fraction: float = param(
        0.2, "A movement's core is where its envelope stays above this fraction of its peak."
    )
    limb_max_s: float = param(10.0, "Longest limb movement (AASM / WASM: 10 s), seconds.")
    large_min_s: float = param(3.0, "Shortest large (whole-body) movement (IRLSSG: 3 s), seconds.")
    large_max_s: float = param(
        45.0, "Longest large movement, seconds; longer continuous movement is 'restless'."
    )
    large_min_low_freq_ratio: float = param(
        0.75, "Breath-band (< 1 Hz) RMS over movement-band RMS that makes a movement whole-body."
    )
    spasm_max_low_freq_ratio: float = param(
        0.18, "A tonic spasm barely displaces: breath-band over movement-band RMS at most this."
    )
    posture_window_s: float = param(
        10.0,
        "The breath band's RMS over this many seconds before a movement is its resting level "
        "(breathing and posture): a whole-body movement's low-frequency excess is measured against it.",
    )
    large_max_high_freq_ratio: float = param(
        0.82, "A movement this low-pitched (first-difference RMS over band RMS) is whole-body."
    )
    large_min_low_freq_excess: float = param(
        2.0,
        "A whole-body movement also shifts the bed's low frequencies: breath-band RMS during it at "
        "least this x the breath band's RMS over posture_window_s before it (breathing alone: about 1).",
    )
    spasm_min_high_freq_ratio: float = param(
        1.2,
        "A sustained movement (spasm_min_s or longer) this high-pitched (first-difference RMS over band "
        "RMS; about 1.2 is a 10-Hz centroid at a 50-Hz internal rate) is muscle vibration: a tonic spasm.",
    )
    spasm_min_s: float = param(2.0, "Shortest sustained spasm, seconds.")
    spasm_sustain_k: float = param(
        26.0, "A tonic spasm's median envelope over its core is at least this x baseline."
    )
    clonus_low_hz: float = param(3.0, "Lowest burst rate of clonus (rhythmic 3-8 Hz), Hz.")
    clonus_high_hz: float = param(8.0, "Highest burst rate of clonus, Hz.")
    clonus_min_prominence: float = param(
        20.0, "Spectral line at 3-8 Hz over its local background (+-2.5 Hz) that makes clonus."
    )
    clonus_min_s: float = param(2.0, "Shortest clonus episode, seconds.")
    plm_min_movements: int = param(4, "Limb movements that make a PLM series (AASM / WASM: 4).")
    plm_max_interval_s: float = param(90.0, "Longest onset-to-onset interval inside a PLM series, seconds.")
    restless_gap_s: float = param(
        10.0, "Movements closer than this (end to next start) chain into one cluster, seconds."
    )
    restless_min_movements: int = param(5, "Movements in a cluster that make it 'restless'.")

    # --- stage 5: presence -----------------------------------------------------------------
    presence_window_s: float = param(20.0, "Window over which bed occupancy evidence is measured, seconds.")
    presence_floor_rms: float = param(
        0.0,
        "Empty-bed cardiorespiratory RMS measured by `bedside calibrate` (0: learn it from the night).",
    )
    presence_dwell_s: float = param(30.0, "Occupancy must persist this long before bed_entry / bed_exit.")
    presence_min_periodicity: float = param(
        0.35, "Heart or breath autocorrelation peak that shows a body in bed (0-1)."
    )
    presence_k: float = param(
        4.0, "Cardiorespiratory-band RMS above this x the empty-bed floor shows a body."
    )

    # --- stage 6: sleep --------------------------------------------------------------------
    sleep_bout_epochs: int = param(2, "Consecutive sleep epochs that make falling asleep (and sleep onset).")
    sleep_threshold: float = param(
        7.0, "Weighted activity (log-compressed baseline-relative counts) that scores wake by itself."
    )
    sleep_hr_drop_bpm: float = param(
        4.0, "Awake -> asleep when the heart rate falls this far below the recent waking level, bpm."
    )
    wake_hr_rise_bpm: float = param(
        4.0, "Asleep -> awake when the heart rate rises this far above the recent sleeping level, bpm."
    )
    sleep_hr_settle_s: float = param(
        15.0, "Heart rates for sleep staging come from windows starting this long after a movement, s."
    )
    sleep_lookahead_epochs: int = param(
        6, "Epochs the sleep call waits for (a movement is judged by the heart rate after it)."
    )
    count_k: float = param(1.5, "Activity counts integrate the envelope above count_k x baseline.")

    # --- stage 7: vitals -------------------------------------------------------------------
    vitals_window_s: float = param(20.0, "Window for heart and breathing rate, seconds.")
    vitals_hop_s: float = param(5.0, "A Vitals output every this many seconds.")
    heart_min_bpm: float = param(40.0, "Lowest heart rate searched, beats per minute.")
    heart_max_bpm: float = param(150.0, "Highest heart rate searched, beats per minute.")
    breath_min_bpm: float = param(6.0, "Lowest breathing rate searched (0.1 Hz), breaths per minute.")
    breath_max_bpm: float = param(30.0, "Highest breathing rate searched (0.5 Hz), breaths per minute.")
    vitals_min_periodicity: float = param(
        0.3, "Autocorrelation peak below which a rate is not reported (0-1)."
    )

    # --- stage 8: sensor health ------------------------------------------------------------
    glitch_jump_k: float = param(
        100.0,
        "A sample-to-sample jump above this x the reference jump (typical and last per-second "
        "maximum) is implausible.",
    )
    disturbance_jump_k: float = param(
        300.0, "A jump above this x the typical per-second maximum jump is implausible even during movement."
    )
    glitch_max_samples: int = param(
        4, "Implausible runs up to this many samples that return to the level are glitches."
    )
    resync_s: float = param(
        1.0, "After an implausible jump, this long a self-consistent run accepts the new level, seconds."
    )
    stuck_s: float = param(60.0, "Identical consecutive samples for this long are a stuck sensor, seconds.")
    flat_s: float = param(
        5.0,
        "Identical consecutive samples for this long are no measurement (a stuck or disconnected ADC): "
        "from then on they count as fault samples, so the baseline, presence and sleep ignore them, s.",
    )
    adc_full_scale_counts: float = param(
        0.0, "ADC full scale; samples at <= 0 or >= it are rail values (0: unknown, rule off)."
    )
    fault_merge_s: float = param(
        5.0, "Sensor faults closer than this merge into one sensor_fault event, seconds."
    )
