"""Tests of the simulated night (signal, truth, determinism) and of SimulatedSource pacing."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from scipy import signal

from hardware.block import Block, SampleSource
from hardware.simulated import ADC_MAX, TRUTH_TYPES, SimulatedNight, SimulatedSource, TruthEvent
from service.detect.types import EVENT_TYPES

MOVEMENTS = ("jerk", "limb_movement", "spasm", "large_movement")
DISTURBANCES = (*MOVEMENTS, "bed_entry", "bed_exit", "sensor_fault")


@pytest.fixture(scope="module")
def nights() -> dict[int, SimulatedNight]:
    """Default 8-h nights for a few seeds (planning only: about 40 ms each)."""
    return {seed: SimulatedNight(seed) for seed in (0, 1, 2, 3, 4)}


def quiet_windows(night: SimulatedNight, window_s: float, count: int) -> list[float]:
    """Starts of windows asleep, with no movement within 20 s, spread over the night."""
    busy = [e for e in night.truth if e.type in DISTURBANCES]
    found: list[float] = []
    t = 600.0
    while t + window_s < night.duration_s and len(found) < count:
        still = all(e.end_s < t - 20 or e.start_s > t + window_s for e in busy)
        if still and night.asleep_at(t) and night.asleep_at(t + window_s):
            found.append(t)
            t += 3600.0
        else:
            t += 37.0
    return found


def window(night: SimulatedNight, start_s: float, length_s: float) -> np.ndarray:
    return night.render(round(start_s * night.rate_hz), round(length_s * night.rate_hz)).astype(float)


def spectral_peak_per_min(x: np.ndarray, rate_hz: float, lo_per_min: float, hi_per_min: float) -> float:
    """Frequency (per minute) of the largest spectral peak of ``x`` between the bounds."""
    nfft = 1 << 18
    f = np.fft.rfftfreq(nfft, 1 / rate_hz) * 60
    power = np.abs(np.fft.rfft((x - x.mean()) * np.hanning(x.size), nfft))
    band = (f >= lo_per_min) & (f <= hi_per_min)
    return float(f[band][np.argmax(power[band])])


def heartbeat_envelope(x: np.ndarray, rate_hz: float) -> np.ndarray:
    """Energy of the BCG band (4-15 Hz), smoothed: one pulse per heartbeat."""
    bcg = signal.sosfiltfilt(signal.butter(4, [4, 15], "bandpass", fs=rate_hz, output="sos"), x - x.mean())
    return signal.sosfiltfilt(signal.butter(4, 3, "lowpass", fs=rate_hz, output="sos"), bcg**2)


# ------------------------------------------------------------------ determinism


def test_same_seed_gives_the_same_night_and_another_seed_a_different_one() -> None:
    a, b, c = SimulatedNight(7, 100, 1800), SimulatedNight(7, 100, 1800), SimulatedNight(8, 100, 1800)
    assert a.truth == b.truth
    assert a.sleep_intervals == b.sleep_intervals
    assert np.array_equal(a.render_all(), b.render_all())
    assert a.truth != c.truth
    assert not np.array_equal(a.render(0, 6000), c.render(0, 6000))


@pytest.mark.parametrize("rate_hz", [50.0, 250.0, 333.3, 1000.0])
def test_render_is_identical_whatever_the_chunking(rate_hz: float) -> None:
    night = SimulatedNight(3, rate_hz, 1200)
    whole = night.render_all()
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.choice(np.arange(1, night.n_samples), size=40, replace=False))
    bounds = [0, *cuts.tolist(), night.n_samples]
    pieces = [night.render(a, b - a) for a, b in itertools.pairwise(bounds)]
    assert np.array_equal(whole, np.concatenate(pieces))
    assert np.array_equal(
        night.render(0, 1000), np.concatenate([night.render(0, 300), night.render(300, 700)])
    )
    # A fresh instance (empty caches) renders a late range the same as one that rendered it all.
    fresh = SimulatedNight(3, rate_hz, 1200)
    k = night.n_samples // 2
    assert np.array_equal(fresh.render(k, 777), whole[k : k + 777])


def test_chunking_through_a_large_movement_of_a_full_night(nights: dict[int, SimulatedNight]) -> None:
    night = nights[0]
    move = night.events_of("large_movement")[3]
    a = round((move.start_s - 2) * night.rate_hz)
    n = round((move.duration_s + 4) * night.rate_hz)
    whole = night.render(a, n)
    blocks = [night.render(i, min(25, a + n - i)) for i in range(a, a + n, 25)]
    assert np.array_equal(whole, np.concatenate(blocks))


# ------------------------------------------------------------------ truth


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_a_default_night_contains_every_event_type(nights: dict[int, SimulatedNight], seed: int) -> None:
    types = Counter(e.type for e in nights[seed].truth)
    assert set(types) == set(TRUTH_TYPES)
    assert types["awakening"] >= 3
    assert types["bed_entry"] == types["bed_exit"] == 2  # the bathroom trip and the night


def test_truth_types_are_the_detector_event_types() -> None:
    assert tuple(TRUTH_TYPES) == tuple(EVENT_TYPES)


def test_movement_durations_follow_the_scoring_rules(nights: dict[int, SimulatedNight]) -> None:
    for night in nights.values():
        for e in night.truth:
            if e.type == "jerk":
                assert 0 < e.duration_s < 0.5, e
            elif e.type == "limb_movement":
                assert 0.5 <= e.duration_s <= 10.0, e
            elif e.type == "spasm":
                assert 2.0 <= e.duration_s <= 15.0, e
            elif e.type == "large_movement":
                assert 3.0 <= e.duration_s <= 45.0, e
            assert 0.0 <= e.start_s <= e.end_s <= night.duration_s, e


def test_some_spasms_are_clonus_at_3_to_8_hz(nights: dict[int, SimulatedNight]) -> None:
    clonus = [e for night in nights.values() for e in night.events_of("spasm") if "clonus" in e.note]
    assert clonus
    assert all(3.0 <= e.details["clonus_hz"] <= 8.0 for e in clonus)


def test_clonus_bursts_are_rhythmic_at_their_rate(nights: dict[int, SimulatedNight]) -> None:
    night = next(n for n in nights.values() if any("clonus" in e.note for e in n.events_of("spasm")))
    e = next(e for e in night.events_of("spasm") if "clonus" in e.note)
    x = window(night, e.start_s + 0.3, e.duration_s - 0.6)
    hp = signal.sosfiltfilt(signal.butter(4, 10, "highpass", fs=night.rate_hz, output="sos"), x - x.mean())
    envelope = signal.sosfiltfilt(signal.butter(4, 12, "lowpass", fs=night.rate_hz, output="sos"), np.abs(hp))
    peak = spectral_peak_per_min(envelope, night.rate_hz, 2.5 * 60, 9 * 60) / 60
    assert peak == pytest.approx(e.details["clonus_hz"], abs=0.5)


def _plm_members(night: SimulatedNight, series: TruthEvent) -> list[TruthEvent]:
    return [
        e for e in night.events_of("limb_movement") if series.start_s <= e.start_s and e.end_s <= series.end_s
    ]


def test_plm_series_are_four_or_more_limb_movements_5_to_90_s_apart(
    nights: dict[int, SimulatedNight],
) -> None:
    for night in nights.values():
        for series in night.events_of("plm_series"):
            members = _plm_members(night, series)
            assert len(members) >= 4
            assert len(members) == series.details["movements"]
            intervals = np.diff([m.start_s for m in members])
            assert intervals.min() >= 10.0  # valid under WASM 2016 (10-90 s) as well as AASM (5-90 s)
            assert intervals.max() <= 90.0
            assert 15.0 <= float(np.median(intervals)) <= 45.0  # typically 20-40 s


def test_limb_movements_outside_plm_series_never_chain_into_one(nights: dict[int, SimulatedNight]) -> None:
    for night in nights.values():
        series = night.events_of("plm_series")
        outside = [
            e
            for e in night.events_of("limb_movement")
            if not any(s.start_s <= e.start_s <= s.end_s for s in series)
        ]
        run = longest = 1
        for prev, cur in itertools.pairwise(outside):
            run = run + 1 if 5.0 <= cur.start_s - prev.start_s <= 90.0 else 1
            longest = max(longest, run)
        assert longest < 4


def test_restless_is_a_dense_cluster_that_rouses_the_sleeper(nights: dict[int, SimulatedNight]) -> None:
    for night in nights.values():
        for r in night.events_of("restless"):
            members = [e for e in night.truth if e.type in MOVEMENTS and r.start_s <= e.start_s < r.end_s]
            assert len(members) == r.details["movements"]
            assert len(members) / (r.duration_s / 60) >= 10  # at least 10 movements a minute
            assert any(a.start_s == r.start_s for a in night.events_of("awakening"))


def test_sleep_and_bed_truth_agree_with_the_events(nights: dict[int, SimulatedNight]) -> None:
    for night in nights.values():
        bed, sleep = night.bed_intervals, night.sleep_intervals
        assert [e.start_s for e in night.events_of("bed_entry")] == [a for a, _ in bed]
        assert [e.end_s for e in night.events_of("bed_exit")] == [b for _, b in bed]
        assert [e.start_s for e in night.events_of("fell_asleep")] == [a for a, _ in sleep]
        for a, b in sleep:
            assert any(x <= a and b <= y for x, y in bed)  # asleep only in bed
        awakenings = night.events_of("awakening")
        assert [e.start_s for e in awakenings] == [b for _, b in sleep]  # each sleep bout ends in one
        assert awakenings[-1].note == "final"
        assert all(e.duration_s >= 60.0 for e in awakenings)
        for t in np.linspace(0, night.duration_s - 1, 400):
            assert not night.asleep_at(t) or night.in_bed_at(t)
        assert not night.in_bed_at(1.0)
        assert not night.in_bed_at(night.duration_s - 1.0)
        assert night.heart_bpm_at(1.0) is None


def test_awakenings_are_mostly_preceded_by_a_movement(nights: dict[int, SimulatedNight]) -> None:
    for night in nights.values():
        ordinary = [a for a in night.events_of("awakening") if not a.note]
        causes = [
            a
            for a in ordinary
            if any(e.type in MOVEMENTS and 0 <= a.start_s - e.start_s <= 30 for e in night.truth)
        ]
        assert len(causes) == len(ordinary)


def test_large_movements_change_posture(nights: dict[int, SimulatedNight]) -> None:
    for e in nights[1].events_of("large_movement"):
        before, after = e.note.split("posture ")[1].split("->")
        assert before != after


def test_movement_amplitudes_vary_between_seeds_and_events(nights: dict[int, SimulatedNight]) -> None:
    amplitudes = {
        round(e.details["rms_counts"]) for n in nights.values() for e in n.truth if e.type in MOVEMENTS
    }
    assert len(amplitudes) > 50


# ------------------------------------------------------------------ signal


def test_samples_are_12_bit_counts_around_mid_rail() -> None:
    night = SimulatedNight(2, 250, 1800)
    x = night.render_all()
    assert x.dtype == np.float32
    assert np.array_equal(x, np.round(x))
    assert x.min() >= 0 and x.max() <= ADC_MAX
    assert 1900 < float(np.median(x)) < 2200


def test_heart_and_breath_rates_stay_in_sleeping_ranges(nights: dict[int, SimulatedNight]) -> None:
    for night in nights.values():
        for a, b in night.sleep_intervals:
            for t in np.arange(a, b, 30.0):
                heart, breath = night.heart_bpm_at(t), night.breath_bpm_at(t)
                assert heart is not None and 48.0 <= heart <= 78.0
                assert breath is not None and 12.0 <= breath <= 18.0


@pytest.mark.parametrize("seed", [0, 3])
def test_spectral_peaks_of_a_quiet_window_match_the_true_rates(
    nights: dict[int, SimulatedNight], seed: int
) -> None:
    night = nights[seed]
    starts = quiet_windows(night, 60.0, 2)
    assert len(starts) == 2
    for start in starts:
        x = window(night, start, 60.0)
        times = np.arange(start, start + 60.0, 1.0)
        heart = float(np.mean([night.heart_bpm_at(t) for t in times]))
        breath = float(np.mean([night.breath_bpm_at(t) for t in times]))
        lowpassed = signal.sosfiltfilt(signal.butter(2, 0.7, "lowpass", fs=night.rate_hz, output="sos"), x)
        assert spectral_peak_per_min(lowpassed, night.rate_hz, 6, 30) == pytest.approx(breath, abs=1.5)
        beats = heartbeat_envelope(x, night.rate_hz)
        assert spectral_peak_per_min(beats, night.rate_hz, 40, 110) == pytest.approx(heart, abs=2.0)


def test_breathing_is_larger_than_the_heartbeat_and_movements_tens_of_times_larger(
    nights: dict[int, SimulatedNight],
) -> None:
    for night in (nights[2], nights[4]):
        rate = night.rate_hz
        edge = round(2 * rate)
        quiet = window(night, quiet_windows(night, 30.0, 1)[0], 30.0)
        lowpass = signal.butter(2, 0.7, "lowpass", fs=rate, output="sos")
        breath = np.ptp(signal.sosfiltfilt(lowpass, quiet)[edge:-edge])
        bcg_band = signal.butter(4, [4, 15], "bandpass", fs=rate, output="sos")
        bcg = np.ptp(signal.sosfiltfilt(bcg_band, quiet)[edge:-edge])
        assert breath > 2 * bcg
        movement_band = signal.butter(4, [1, 20], "bandpass", fs=rate, output="sos")
        for kind in MOVEMENTS:
            ratios = [
                np.ptp(signal.sosfiltfilt(movement_band, window(night, e.start_s - 2, e.duration_s + 4)))
                / bcg
                for e in night.events_of(kind)
            ]
            assert min(ratios) > 5, kind
            assert float(np.median(ratios)) > 15, kind


def test_glitches_are_single_rail_samples_flagged_as_sensor_faults() -> None:
    night = SimulatedNight(5, 250, 1800)
    x = night.render_all()
    faults = night.events_of("sensor_fault")
    assert 3 <= len(faults) <= 8
    at_rail = set(np.flatnonzero((x == 0) | (x == ADC_MAX)).tolist())
    assert at_rail == {round(e.start_s * night.rate_hz) for e in faults}
    for e in faults:
        assert e.duration_s == pytest.approx(1 / night.rate_hz)


def test_no_glitches_when_disabled_and_nothing_else_changes() -> None:
    night = SimulatedNight(5, 250, 1800, glitches=False)
    x = night.render_all()
    assert not night.events_of("sensor_fault")
    assert x.min() > 0 and x.max() < ADC_MAX
    with_glitches = SimulatedNight(5, 250, 1800)
    differ = np.flatnonzero(with_glitches.render_all() != x)
    faults = with_glitches.events_of("sensor_fault")
    assert differ.tolist() == [round(e.start_s * 250) for e in faults]
    assert [e for e in with_glitches.truth if e.type != "sensor_fault"] == night.truth


def test_an_empty_bed_shows_only_noise_and_drift() -> None:
    night = SimulatedNight(4, 250, 1200, occupied=False, glitches=False)
    assert night.truth == [] and night.bed_intervals == [] and night.sleep_intervals == []
    x = night.render_all().astype(float)
    residual = x - signal.sosfiltfilt(signal.butter(2, 0.05, "lowpass", fs=250, output="sos"), x)
    assert float(np.std(residual)) < 2.5
    assert float(np.max(np.abs(residual))) < 15


def test_the_bed_is_quiet_before_entry_and_busy_after() -> None:
    night = SimulatedNight(0, glitches=False)
    entry = night.events_of("bed_entry")[0]
    edge = round(night.rate_hz)
    hp = signal.butter(2, 0.1, "highpass", fs=night.rate_hz, output="sos")
    before = signal.sosfiltfilt(hp, window(night, 0, entry.start_s))[edge:-edge]
    after = signal.sosfiltfilt(hp, window(night, entry.end_s + 5, 60))[edge:-edge]
    assert np.std(before) < 2.5
    assert np.std(after) > 5 * np.std(before)


def test_mains_hum_is_there_only_when_asked_for() -> None:
    rate = 500.0
    quiet = SimulatedNight(6, rate, 60, occupied=False, glitches=False).render_all()
    hum = SimulatedNight(6, rate, 60, occupied=False, glitches=False, mains_hum_hz=50.0).render_all()
    f = np.fft.rfftfreq(quiet.size, 1 / rate)
    at_50 = np.argmin(np.abs(f - 50))

    def line(x: np.ndarray) -> float:
        spectrum = np.abs(np.fft.rfft(x - x.mean()))
        return float(spectrum[at_50] / np.median(spectrum[(f > 30) & (f < 70)]))

    assert line(hum) > 20
    assert line(quiet) < 10


def test_short_nights_keep_their_truth_inside_the_night() -> None:
    for duration_s in (0.5, 2.0, 119.0, 600.0, 1800.0):
        night = SimulatedNight(1, 100, duration_s)
        assert night.render_all().size == night.n_samples == int(duration_s * 100)
        assert all(0 <= e.start_s <= e.end_s <= duration_s for e in night.truth)


def test_a_still_sleeper_has_no_movements_but_keeps_vitals() -> None:
    night = SimulatedNight(2, movements=False)
    assert not [e for e in night.truth if e.type in (*MOVEMENTS, "plm_series", "restless")]
    assert night.heart_bpm_at(night.sleep_intervals[0][0] + 60) is not None


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"rate_hz": 20.0}, "rate_hz"),
        ({"rate_hz": 5000.0}, "rate_hz"),
        ({"rate_hz": float("nan")}, "rate_hz"),
        ({"duration_s": 0.0}, "duration_s"),
        ({"duration_s": 1e9}, "duration_s"),
        ({"seed": -1}, "seed"),
        ({"bed_entry_s": -5.0}, "bed_entry_s"),
        ({"awakenings": -1}, "awakenings"),
        ({"mains_hum_hz": 0.0}, "mains_hum_hz"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs: dict[str, float], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        SimulatedNight(**kwargs)  # type: ignore[arg-type]


def test_rendering_outside_the_night_raises() -> None:
    night = SimulatedNight(0, 100, 10)
    with pytest.raises(ValueError, match="outside"):
        night.render(990, 20)
    with pytest.raises(ValueError, match="outside"):
        night.render(-1, 5)
    assert night.render(1000, 0).size == 0


# ------------------------------------------------------------------ source


async def collect(source: SimulatedSource) -> list[Block]:
    return [block async for block in source]


def test_source_is_a_sample_source_with_one_channel() -> None:
    source = SimulatedSource(SimulatedNight(0, 100, 2))
    assert isinstance(source, SampleSource)
    assert source.rate_hz == 100 and source.channels == 1


def test_speed_0_yields_every_block_contiguously_and_ends() -> None:
    night = SimulatedNight(1, 100, 20.05)
    start = datetime(2026, 1, 2, 22, 0, tzinfo=UTC)
    blocks = asyncio.run(collect(SimulatedSource(night, start=start, speed=0, block_s=0.1)))
    assert len(blocks) == 201  # 200 full blocks and a last one of 5 samples
    index = 0
    for block in blocks:
        assert block.index == index
        assert block.rate_hz == 100 and block.samples.dtype == np.float32
        assert block.t0 == start + timedelta(seconds=index / 100)
        index += block.n
    assert index == night.n_samples
    assert blocks[-1].n == 5
    assert np.array_equal(np.concatenate([b.samples for b in blocks]), night.render_all())


def test_speed_0_leaves_the_loop_responsive() -> None:
    async def main() -> tuple[int, int]:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        blocks = await collect(SimulatedSource(SimulatedNight(1, 100, 60), speed=0, block_s=0.1))
        done.set()
        await task
        return ticks, len(blocks)

    ticks, blocks = asyncio.run(main())
    assert blocks == 600
    assert ticks >= blocks // 2


def test_speed_50_plays_a_2_s_night_in_about_40_ms() -> None:
    night = SimulatedNight(2, 250, 2)
    begun = time.monotonic()
    blocks = asyncio.run(collect(SimulatedSource(night, speed=50, block_s=0.1)))
    elapsed = time.monotonic() - begun
    assert [b.index for b in blocks] == list(range(0, 500, 25))
    assert 0.035 <= elapsed < 1.0  # paced (not instant), and nowhere near real time (2 s)


def test_real_time_pacing_releases_each_block_when_it_is_due() -> None:
    async def main() -> list[float]:
        source = SimulatedSource(SimulatedNight(2, 200, 0.5), speed=1, block_s=0.1)
        begun = time.monotonic()
        return [time.monotonic() - begun async for _ in source]

    arrivals = asyncio.run(main())
    assert len(arrivals) == 5
    for k, t in enumerate(arrivals, start=1):
        assert t >= 0.1 * k - 0.01  # never early
    assert arrivals[-1] < 1.5  # and not drifting far behind


def test_close_ends_iteration_promptly_even_mid_wait() -> None:
    async def main() -> tuple[int, float]:
        source = SimulatedSource(SimulatedNight(0, 100, 3600), speed=1, block_s=0.5)
        first = asyncio.Event()
        received = 0

        async def consume() -> None:
            nonlocal received
            async for _ in source:
                received += 1
                first.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(first.wait(), timeout=5)
        begun = time.monotonic()
        await source.close()  # the consumer already waits (0.5 s) for the next block
        await asyncio.wait_for(task, timeout=1.0)
        return received, time.monotonic() - begun

    received, took = asyncio.run(main())
    assert received == 1
    assert took < 0.25


def test_close_before_iterating_yields_nothing_and_a_source_iterates_once() -> None:
    async def main() -> None:
        source = SimulatedSource(SimulatedNight(0, 100, 10), speed=0)
        await source.close()
        assert await collect(source) == []
        with pytest.raises(RuntimeError, match="once"):
            source.__aiter__()

    asyncio.run(main())


def test_source_rejects_naive_start_and_bad_pacing() -> None:
    night = SimulatedNight(0, 100, 10)
    with pytest.raises(ValueError, match="timezone"):
        SimulatedSource(night, start=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="speed"):
        SimulatedSource(night, speed=-1)
    with pytest.raises(ValueError, match="block_s"):
        SimulatedSource(night, block_s=0)


def test_source_start_defaults_to_now_in_utc() -> None:
    before = datetime.now(UTC)
    source = SimulatedSource(SimulatedNight(0, 100, 1))
    assert before <= source.start <= datetime.now(UTC)
    assert source.start.tzinfo is UTC
