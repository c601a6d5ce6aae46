"""Detector accuracy on real recordings and simulated nights: prints tables, writes JSON.

(a) heart / breathing rate on the fibre-optic bed recording against its pulse oximeter;
(b) movements and sensor faults on the same recording;
(c) sleep scoring on the wrist actigraphy (.AWD) files: this detector's rule and the classic
    Cole-Kripke, per night, against the sleep diary where there is one;
(d) simulated nights with ground truth (hardware.simulated): event-level precision and recall
    per type, awakenings within 60 s, heart / breathing rate error;
(e) real background (bench/real_background.py): movements of known type and span laid on the
    quiet stretch of the real bed recording, at 50 and 250 Hz, both rule profiles: per-type
    precision and recall, PLM series found, onset / end / duration errors. Reported on the
    held-out seeds 101-110 only (seeds 1-10 are for tuning).

Usage: ``python bench/evaluate_detector.py [--seeds 1 2 3] [--hours 8] [--rate 250]
[--json bench/evaluate_detector.json]``. The shared data folder is ``../shared/data`` beside
the repository; parts whose data is missing are skipped with a message.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import zipfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from hardware import actigraphy  # noqa: E402
from service.detect import Detector, DetectorParams, analyze_array  # noqa: E402
from service.detect.sleep import cole_kripke, main_sleep, score_sleep  # noqa: E402
from service.detect.types import EVENT_TYPES, MOVEMENT_TYPES, Epoch, Event, Output, State, Vitals  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
RECORDING = SHARED / "bed-fibre-optic-50hz" / "recording.csv"
AWD_DIR = SHARED / "actigraphy-awd"


def events(out: list[Output]) -> list[Event]:
    return [o for o in out if isinstance(o, Event)]


# ------------------------------------------------------------------ (a)+(b) real recording
def eval_recording() -> dict[str, Any]:
    if not RECORDING.exists():
        print(f"(a,b) skipped: {RECORDING} not found")
        return {"skipped": True}
    data = np.loadtxt(RECORDING, delimiter=",", skiprows=1)
    x, ref = data[:, 1], data[:, 2]
    rate = 50.0
    params = DetectorParams()
    t0 = time.perf_counter()
    out = analyze_array(x, rate, params)
    dt = time.perf_counter() - t0
    evs = events(out)
    moves = [e for e in evs if e.type in MOVEMENT_TYPES]
    faults = [e for e in evs if e.type == "sensor_fault"]
    # quiet windows: vitals windows that overlap no detected movement or fault, after warm-up
    win = params.vitals_window_s
    busy = [(e.start_s - 1.0, e.end_s + 1.0) for e in moves + faults]
    rows = []
    for v in (o for o in out if isinstance(o, Vitals)):
        a, b = v.t_s - win, v.t_s
        if a < 0 or any(s < b and e > a for s, e in busy):
            continue
        i0, i1 = round(a * rate), round(b * rate)
        rows.append((v.t_s, v.heart_bpm, float(np.median(ref[i0:i1])), v.breath_bpm))
    with_hr = [(t, h, r) for t, h, r, _ in rows if h is not None]
    err = np.array([h - r for _, h, r in with_hr]) if with_hr else np.zeros(0)
    mae = float(np.mean(np.abs(err))) if err.size else float("nan")
    coverage = len(with_hr) / len(rows) if rows else 0.0
    br = [b for *_, b in rows if b is not None]
    bad_t = np.flatnonzero((x <= 0) | (x > 60000)) / rate
    covered = [bool(any(f.start_s <= t <= f.end_s for f in faults)) for t in bad_t]
    on_glitch = [e for e in moves if bad_t.size and e.start_s <= bad_t.max() and e.end_s >= bad_t.min()]
    early = [e for e in moves if e.start_s < 15.0]
    late = [e for e in moves if 1080.0 <= e.start_s <= 1100.0]
    quiet = [e for e in moves if 20.0 < e.start_s < 1080.0]
    res = {
        "seconds": round(len(x) / rate, 1),
        "analysis_s": round(dt, 3),
        "heart": {
            "quiet_windows": len(rows),
            "windows_with_rate": len(with_hr),
            "coverage": round(coverage, 3),
            "mae_bpm": round(mae, 2),
            "median_abs_err_bpm": round(float(np.median(np.abs(err))), 2) if err.size else None,
            "within_5_bpm": round(float(np.mean(np.abs(err) <= 5)), 3) if err.size else None,
            "goal": "MAE <= 3 bpm, coverage >= 0.8",
            "met": bool(mae <= 3.0 and coverage >= 0.8),
        },
        "breath": {
            "windows_with_rate": len(br),
            "median_bpm": round(float(np.median(br)), 1) if br else None,
            "p10_p90_bpm": [round(float(q), 1) for q in np.percentile(br, [10, 90])] if br else None,
            "reference": "none (the README says 14-19 /min is visible)",
        },
        "movements": {
            "all": [(e.type, round(e.start_s, 2), round(e.end_s, 2), e.intensity) for e in moves],
            "first_15_s": len(early),
            "around_1086_1100_s": len(late),
            "quiet_20_to_1080_s": len(quiet),
            "met": bool(early and late and len(quiet) <= 1),
        },
        "faults": {
            "events": [(round(f.start_s, 2), round(f.end_s, 2), f.details) for f in faults],
            "glitch_samples": len(bad_t),
            "glitch_samples_in_a_fault": int(sum(covered)),
            "movements_over_glitches": len(on_glitch),
            "met": bool(all(covered) and not on_glitch),
        },
    }
    h = res["heart"]
    print("\n(a) heart rate on bed-fibre-optic-50hz/recording.csv vs pulse oximeter")
    print(
        f"    quiet 20-s windows {h['quiet_windows']}, with a rate {h['windows_with_rate']}, "
        f"coverage {h['coverage']:.0%} (goal >= 80%)"
    )
    print(
        f"    MAE {h['mae_bpm']} bpm, median |err| {h['median_abs_err_bpm']} bpm, within 5 bpm "
        f"{h['within_5_bpm']} (goal MAE <= 3)  -> {'MET' if h['met'] else 'MISSED'}"
    )
    b = res["breath"]
    print(
        f"    breathing: {b['windows_with_rate']} windows, median {b['median_bpm']} /min, "
        f"p10-p90 {b['p10_p90_bpm']} (no reference)"
    )
    m = res["movements"]
    print("(b) movements on the same recording")
    for e in m["all"]:
        print(f"    {e[0]:<15} {e[1]:>8.2f} - {e[2]:>8.2f} s  intensity {e[3]}")
    print(
        f"    first 15 s: {m['first_15_s']}, 1080-1100 s: {m['around_1086_1100_s']}, quiet 20-1080 s: "
        f"{m['quiet_20_to_1080_s']} (goal <= 1)  -> {'MET' if m['met'] else 'MISSED'}"
    )
    f = res["faults"]
    for e in f["events"]:
        print(f"    sensor_fault {e[0]:.2f} - {e[1]:.2f} s {e[2]}")
    print(
        f"    glitch samples {f['glitch_samples']}, inside a sensor_fault {f['glitch_samples_in_a_fault']}, "
        f"movements over them {f['movements_over_glitches']}  -> {'MET' if f['met'] else 'MISSED'}"
    )
    return res


# ------------------------------------------------------------------ (c) actigraphy
def read_awd(path: Path) -> tuple[datetime, np.ndarray]:
    data = actigraphy.read_awd(path)
    assert data.start is not None
    return data.start, data.counts


def read_diary(path: Path) -> list[tuple[datetime, datetime]]:
    """NIGHT rows of the .ods sleep diary (stdlib zip + regex: no spreadsheet package)."""
    xml = zipfile.ZipFile(path).read("content.xml").decode()
    text = re.sub(r"<[^>]+>", " ", xml.replace("</table:table-row>", "\n"))
    out = []
    for m in re.finditer(r"NIGHT\s+(\S+ \S+)\s+(\S+ \S+)", text):
        out.append((datetime.fromisoformat(m.group(1)), datetime.fromisoformat(m.group(2))))
    return out


def eval_actigraphy() -> dict[str, Any]:
    files = sorted(AWD_DIR.glob("*.AWD")) if AWD_DIR.exists() else []
    if not files:
        print(f"(c) skipped: no .AWD files in {AWD_DIR}")
        return {"skipped": True}
    print("\n(c) sleep scoring on wrist actigraphy (1-min epochs): this rule vs Cole-Kripke (1992)")
    print("    night window 18:00-12:00; onset/offset of the main sleep (sleep runs >= 5 min joined")
    print("    across wake gaps < 60 min, longest block); waso = wake minutes inside it")
    res: dict[str, Any] = {}
    for path in files:
        start, counts = read_awd(path)
        diary_path = path.with_name(path.stem + "_sleepdiary.ods")
        diary = read_diary(diary_path) if diary_path.exists() else []
        ck = cole_kripke(counts)
        rows = []
        day0 = start.replace(hour=18, minute=0)
        if day0 < start:
            day0 -= timedelta(days=0)
        k = 0
        while True:
            w0 = day0 + timedelta(days=k)
            w1 = w0 + timedelta(hours=18)
            i0 = int((w0 - start).total_seconds() // 60)
            i1 = int((w1 - start).total_seconds() // 60)
            if i0 >= counts.size:
                break
            k += 1
            if i0 < 0 or i1 > counts.size:
                continue
            c = counts[i0:i1]
            ours = score_sleep(c, 60.0)
            row: dict[str, Any] = {"night": w0.date().isoformat()}
            for name, calls in (("ours", ours), ("cole_kripke", ck[i0:i1])):
                ms = main_sleep(calls, 60)
                if ms is None:
                    row[name] = None
                    continue
                on, off = (w0 + timedelta(minutes=ms[0]), w0 + timedelta(minutes=ms[1]))
                wake_in = int((~calls[ms[0] : ms[1]]).sum())
                row[name] = {
                    "onset": on.strftime("%H:%M"),
                    "offset": off.strftime("%H:%M"),
                    "waso_min": wake_in,
                    "_on": on,
                    "_off": off,
                }
            d = next(((a, b) for a, b in diary if w0 <= a < w1), None)
            if d is not None:
                row["diary"] = {"onset": d[0].strftime("%H:%M"), "offset": d[1].strftime("%H:%M")}
                for name in ("ours", "cole_kripke"):
                    if row.get(name):
                        row[name]["onset_err_min"] = round((row[name]["_on"] - d[0]).total_seconds() / 60)
                        row[name]["offset_err_min"] = round((row[name]["_off"] - d[1]).total_seconds() / 60)
            rows.append(row)
        print(
            f"  {path.name}: {counts.size} epochs from {start:%Y-%m-%d %H:%M}; diary: "
            f"{'yes' if diary else 'none (onset/offset not checked)'}"
        )
        print(
            f"    {'night':<11} {'ours on-off (waso)':<22} {'C-K on-off (waso)':<22} {'diary':<13} "
            f"{'err ours on/off':<16} err C-K on/off"
        )
        errs: dict[str, list[float]] = {
            "ours_on": [],
            "ours_off": [],
            "cole_kripke_on": [],
            "cole_kripke_off": [],
        }
        for r in rows:

            def fmt(v: dict[str, Any] | None) -> str:
                return f"{v['onset']}-{v['offset']} ({v['waso_min']})" if v else "-"

            dia = f"{r['diary']['onset']}-{r['diary']['offset']}" if "diary" in r else "-"
            e = ""
            e2 = ""
            if "diary" in r:
                for name, col in (("ours", "e"), ("cole_kripke", "e2")):
                    v = r.get(name)
                    if v:
                        errs[name + "_on"].append(abs(v["onset_err_min"]))
                        errs[name + "_off"].append(abs(v["offset_err_min"]))
                        s = f"{v['onset_err_min']:+d}/{v['offset_err_min']:+d}"
                        if col == "e":
                            e = s
                        else:
                            e2 = s
            print(
                f"    {r['night']:<11} {fmt(r.get('ours')):<22} {fmt(r.get('cole_kripke')):<22} {dia:<13} "
                f"{e:<16} {e2}"
            )
        summary = {k: (round(float(np.median(v)), 1) if v else None) for k, v in errs.items()}
        if diary:
            print(
                f"    median |error| vs diary (min): ours onset {summary['ours_on']}, offset "
                f"{summary['ours_off']}; Cole-Kripke onset {summary['cole_kripke_on']}, offset "
                f"{summary['cole_kripke_off']}"
            )
        agree = float(np.mean(score_sleep(counts, 60.0) == ck))
        print(f"    epoch agreement ours vs Cole-Kripke over the whole record: {agree:.1%}")
        for r in rows:
            for name in ("ours", "cole_kripke"):
                if r.get(name):
                    r[name].pop("_on", None)
                    r[name].pop("_off", None)
        res[path.name] = {"nights": rows, "median_abs_err_min": summary, "agreement_with_ck": round(agree, 3)}
    return res


# ------------------------------------------------------------------ (d) simulated nights
MATCH_INSTANT_S = 60.0


@dataclass
class Tally:
    tp_det: int = 0
    n_det: int = 0
    tp_truth: int = 0
    n_truth: int = 0

    def add(self, other: Tally) -> None:
        self.tp_det += other.tp_det
        self.n_det += other.n_det
        self.tp_truth += other.tp_truth
        self.n_truth += other.n_truth

    @property
    def precision(self) -> float:
        return self.tp_det / self.n_det if self.n_det else float("nan")

    @property
    def recall(self) -> float:
        return self.tp_truth / self.n_truth if self.n_truth else float("nan")


def match(det: list[tuple[float, float]], truth: list[tuple[float, float]], tol_s: float) -> Tally:
    """One-to-one greedy matching by overlap (intervals widened by tol_s)."""
    pairs = []
    for i, (a, b) in enumerate(det):
        for j, (c, d) in enumerate(truth):
            ov = min(b, d + tol_s) - max(a, c - tol_s)
            if ov >= 0 and (b > a or d > c or tol_s > 0):
                pairs.append((-(ov), abs(a - c), i, j))
    pairs.sort()
    used_d: set[int] = set()
    used_t: set[int] = set()
    for _, _, i, j in pairs:
        if i in used_d or j in used_t:
            continue
        used_d.add(i)
        used_t.add(j)
    return Tally(len(used_d), len(det), len(used_t), len(truth))


def match_starts(det: list[float], truth: list[float], tol_s: float) -> Tally:
    pairs = sorted(
        (abs(a - b), i, j) for i, a in enumerate(det) for j, b in enumerate(truth) if abs(a - b) <= tol_s
    )
    used_d: set[int] = set()
    used_t: set[int] = set()
    for _, i, j in pairs:
        if i in used_d or j in used_t:
            continue
        used_d.add(i)
        used_t.add(j)
    return Tally(len(used_d), len(det), len(used_t), len(truth))


TYPES = EVENT_TYPES


def eval_simulated(seeds: list[int], hours: float, rate: float, block_s: float) -> dict[str, Any]:
    try:
        from hardware.simulated import ADC_MAX, SimulatedNight
    except ImportError as exc:  # pragma: no cover - depends on the other helper's work
        print(f"(d) skipped: hardware.simulated not importable ({exc})")
        return {"skipped": True}
    print(
        f"\n(d) simulated nights: seeds {seeds}, {hours:g} h at {rate:g} Hz, "
        f"{'one pass' if block_s <= 0 else f'{block_s:g}-s blocks'}"
    )
    print("    match: same type and overlapping spans (movements, series, faults); awakening, fell_asleep,")
    print(
        f"    bed_entry, bed_exit: start within {MATCH_INSTANT_S:g} s. Detected movements inside a bed "
        "entry/exit"
    )
    print("    motion are not counted (the simulator does not list that motion as a movement).")
    params = DetectorParams(adc_full_scale_counts=float(ADC_MAX))
    total = {t: Tally() for t in TYPES}
    per_seed = []
    hr_err: list[float] = []
    br_err: list[float] = []
    hr_cov: list[int] = []
    confusion: dict[str, dict[str, int]] = {}
    for seed in seeds:
        night = SimulatedNight(seed=seed, rate_hz=rate, duration_s=hours * 3600.0)
        x = night.render_all()
        t0 = time.perf_counter()
        if block_s > 0:
            det = Detector(rate, params)
            bn = max(1, round(block_s * rate))
            out: list[Output] = []
            for i in range(0, x.size, bn):
                out += det.process(x[i : i + bn])
            out += det.flush()
        else:
            out = analyze_array(x, rate, params)
        dt = time.perf_counter() - t0
        evs = events(out)
        truth = night.truth
        motions = [(e.start_s, e.end_s) for e in truth if e.type in ("bed_entry", "bed_exit")]
        seed_res: dict[str, Any] = {"seed": seed, "analysis_s": round(dt, 2)}
        for t in TYPES:
            d = [e for e in evs if e.type == t]
            g = [e for e in truth if e.type == t]
            if t in MOVEMENT_TYPES:
                d = [e for e in d if not any(e.start_s < b and e.end_s > a for a, b in motions)]
            if t in ("awakening", "fell_asleep", "bed_entry", "bed_exit"):
                tal = match_starts([e.start_s for e in d], [e.start_s for e in g], MATCH_INSTANT_S)
            elif t == "sensor_fault":
                tal = match([(e.start_s, e.end_s) for e in d], [(e.start_s, e.end_s) for e in g], 0.05)
            else:
                tal = match([(e.start_s, e.end_s) for e in d], [(e.start_s, e.end_s) for e in g], 0.0)
            total[t].add(tal)
            seed_res[t] = [tal.tp_det, tal.n_det, tal.tp_truth, tal.n_truth]
        # movement confusion: each truth movement -> the detected movement type overlapping most
        dm = [e for e in evs if e.type in MOVEMENT_TYPES]
        for g in (e for e in truth if e.type in MOVEMENT_TYPES):
            best, ov = "missed", 0.0
            for e in dm:
                o = min(e.end_s, g.end_s) - max(e.start_s, g.start_s)
                if o > ov:
                    best, ov = e.type, o
            confusion.setdefault(g.type, {}).setdefault(best, 0)
            confusion[g.type][best] += 1
        n_win = 0
        n_hr = 0
        for v in (o for o in out if isinstance(o, Vitals)):
            tb = night.heart_bpm_at(v.t_s)
            if tb is None or not night.in_bed_at(v.t_s - 20.0):
                continue
            if any(e.start_s < v.t_s and e.end_s > v.t_s - 20.0 for e in truth if e.type in MOVEMENT_TYPES):
                continue
            n_win += 1
            if v.heart_bpm is not None:
                n_hr += 1
                hr_err.append(v.heart_bpm - tb)
            tr = night.breath_bpm_at(v.t_s)
            if v.breath_bpm is not None and tr is not None:
                br_err.append(v.breath_bpm - tr)
        hr_cov += [n_win, n_hr]
        states = sum(isinstance(o, State) for o in out)
        epochs = [o for o in out if isinstance(o, Epoch)]
        agree = np.mean([e.asleep == night.asleep_at(e.start_s + e.duration_s / 2) for e in epochs])
        seed_res.update({"states": states, "epoch_sleep_agreement": round(float(agree), 3)})
        per_seed.append(seed_res)
        print(
            f"    seed {seed}: {len(evs)} events, {states} states, analysis {dt:.1f} s, "
            f"epoch sleep/wake agreement {agree:.1%}"
        )
    print(
        f"\n    {'type':<15} {'precision':>9} {'recall':>7}   (detected matched/all, truth matched/all)"
        "  goal >= 0.9"
    )
    table = {}
    for t in TYPES:
        a = total[t]
        ok = a.precision >= 0.9 and a.recall >= 0.9
        print(
            f"    {t:<15} {a.precision:9.2f} {a.recall:7.2f}   "
            f"({a.tp_det}/{a.n_det}, {a.tp_truth}/{a.n_truth})"
            f"{'' if ok else '  <- missed'}"
        )
        table[t] = {
            "precision": round(a.precision, 3),
            "recall": round(a.recall, 3),
            "detected": a.n_det,
            "truth": a.n_truth,
            "met": bool(ok),
        }
    print("\n    truth movement -> detected type (largest overlap):")
    for g, row in confusion.items():
        print(f"    {g:<15} " + ", ".join(f"{k} {v}" for k, v in sorted(row.items(), key=lambda kv: -kv[1])))
    hr_e = np.abs(hr_err)
    cov = hr_cov[1::2]
    win = hr_cov[0::2]
    vit = {
        "heart_mae_bpm": round(float(hr_e.mean()), 2) if hr_e.size else None,
        "heart_coverage": round(sum(cov) / max(1, sum(win)), 3),
        "breath_mae_bpm": round(float(np.mean(np.abs(br_err))), 2) if br_err else None,
    }
    print(
        f"\n    vitals while still in bed: heart MAE {vit['heart_mae_bpm']} bpm, coverage "
        f"{vit['heart_coverage']:.0%}; breathing MAE {vit['breath_mae_bpm']} /min"
    )
    return {
        "types": table,
        "per_seed": per_seed,
        "vitals": vit,
        "confusion": confusion,
        "rate_hz": rate,
        "hours": hours,
        "block_s": block_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # seeds 1-5 were used while choosing the classification and sleep thresholds; 6-10 were not
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 11)))
    ap.add_argument("--hours", type=float, default=8.0)
    ap.add_argument("--rate", type=float, default=250.0)
    ap.add_argument("--block-s", type=float, default=0.0, help="feed the simulator in blocks (0: one pass)")
    ap.add_argument("--skip-sim", action="store_true")
    ap.add_argument("--skip-real-bg", action="store_true", help="skip (e), the real-background sets")
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "evaluate_detector.json")
    a = ap.parse_args()
    res: dict[str, Any] = {"recording": eval_recording(), "actigraphy": eval_actigraphy()}
    if not a.skip_real_bg:
        import real_background

        res["real_background"] = real_background.run(
            list(real_background.REPORT_SEEDS), [50.0, 250.0], ["aasm", "wasm2016"]
        )
    if not a.skip_sim:
        tuned = [k for k in a.seeds if k <= 5]
        held = [k for k in a.seeds if k > 5]
        res["simulated"] = {}
        for name, group in (("tuning_seeds", tuned), ("held_out_seeds", held)):
            if group:
                res["simulated"][name] = eval_simulated(group, a.hours, a.rate, a.block_s)
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(res, indent=1, default=str))
    print(f"\nJSON written to {a.json}")


if __name__ == "__main__":
    main()
