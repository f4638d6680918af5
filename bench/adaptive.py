"""Adaptive stimulation on simulated drop-foot patients (issue 15, docs/adaptive.md).

Every patient of a seeded population walks a 20-minute walk made of a real walker's
strides (``fescontrol.sim.patient.adaptive.long_walk``), with the device's own controller in
the loop: with the adaptive profile from a conservative start (the patient's motor
threshold), and with fixed amplitudes — tuned at minute 0 to the lift the adaptive one
reached, at the patient maximum, and the lowest one that keeps the foot clear all walk
(``compare_on_patient``). Same patients, same walks for all. A pair is *liftable* when the
fixed patient maximum keeps toe drag ≤ 1 per 100 strides over the whole walk; figures are
given for all pairs and for the liftable ones. Written into bench/results.json under
``adaptive``; not a test.

    .venv/bin/python bench/adaptive.py [--minutes 20] [--patients 20] [--workers 2]
    nice -n 10 .venv/bin/python bench/adaptive.py --recordings ipol:1-1 --patients 6 --minutes 5 \
        --out /tmp/adaptive_subset.json     # a quick subset while iterating (not the bench figure)

Targets: convergence ≤ 5 strides to within 2° of target; toe-drag strides ≤ 1 per 100 with
the adaptive profile; charge ≥ 20 % below the fixed profile that avoids toe drag.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

RECORDINGS = ("ipol:1-1", "ipol:2-1", "ipol:3-1")     # three walkers, real timings
POPULATION = "drop-foot"
BASE_PROFILE = "adaptive"
MARGIN_DEG = 4.0            # target = the walker's reference walk + this
MAX_MA = 40.0               # patient maximum of every simulated patient


def measure(minutes: float = 20.0, patients: int = 20, recordings=RECORDINGS, workers: int | None = 2,
            echo=print) -> dict:
    from fescontrol.core.profile import bundled_profile_path, load_profile
    from fescontrol.sim.engine import dask_client, run_tasks
    from fescontrol.sim.patient.adaptive import compare_on_patient
    from fescontrol.sim.patient.params import BUNDLED_POPULATIONS, load_population_spec

    spec = load_population_spec(BUNDLED_POPULATIONS[POPULATION])
    section = load_profile(bundled_profile_path(BASE_PROFILE)).adaptive.model_dump(mode="json")
    tasks = [(rec, "left", POPULATION, spec.seed, k, minutes, BASE_PROFILE, section, MARGIN_DEG, MAX_MA)
             for rec in recordings for k in range(patients)]
    echo(f"adaptive: {patients} patients x {len(recordings)} walks x {minutes:g} min, adaptive / fixed tuned "
         f"at minute 0 / fixed high, " + (f"on {workers} dask workers ..." if workers else "in this process ..."))
    t0 = time.perf_counter()
    if workers == 0:
        pairs = [compare_on_patient(*t) for t in tasks]
    else:
        with dask_client(workers=workers) as client:
            pairs = run_tasks(client, compare_on_patient, tasks, desc="patients")
    wall_s = time.perf_counter() - t0
    return summarize(pairs, minutes, patients, recordings, wall_s, section)


def _per_100(pairs, key):
    strides = sum(p[key]["strides"] for p in pairs)
    return 100.0 * sum(p[key]["toe_drag_strides"] for p in pairs) / max(1, strides) if pairs else None


def _convergence(pairs) -> dict:
    conv = [p["convergence_strides"] for p in pairs]
    known = [c for c in conv if c is not None]
    return {"median": float(np.median(known)) if known else None,
            "p90": float(np.percentile(known, 90)) if known else None,
            "max": max(known) if known else None,
            "never": sum(c is None for c in conv),
            "within_5": sum(c is not None and c <= 5 for c in conv), "pairs": len(pairs)}


def _charge(pairs) -> dict:
    total_ad = sum(p["adaptive"]["charge_mc"] for p in pairs)
    total_hi = sum(p["fixed_high"]["charge_mc"] for p in pairs)
    ratio = [p["adaptive"]["charge_mc"] / p["fixed_high"]["charge_mc"] for p in pairs
             if p["fixed_high"]["charge_mc"] > 0]
    return {"adaptive_mc": total_ad, "fixed_high_mc": total_hi,
            "saving_total_percent": 100.0 * (1.0 - total_ad / total_hi) if total_hi else None,
            "saving_median_percent": 100.0 * (1.0 - float(np.median(ratio))) if ratio else None}


def summarize(pairs, minutes, patients, recordings, wall_s, section) -> dict:
    from fescontrol.sim.patient.adaptive import LIFTABLE_PER_100

    liftable = [p for p in pairs if p["liftable"]]
    drag = {}
    for name, group in (("all", pairs), ("liftable", liftable)):
        drag[name] = {"adaptive": _per_100(group, "adaptive"), "fixed_tuned_minute0": _per_100(group, "fixed_tuned"),
                      "fixed_high": _per_100(group, "fixed_high"), "fixed_max": _per_100(group, "fixed_max")}
    out = {
        "walks": list(recordings), "patients": patients, "minutes": minutes, "pairs": len(pairs),
        "profile": BASE_PROFILE, "adaptive_section": section, "target_margin_deg": MARGIN_DEG,
        "patient_max_ma": MAX_MA,
        "liftable_rule": f"a fixed amplitude at the patient maximum ({MAX_MA:g} mA) keeps toe drag "
                         f"<= {LIFTABLE_PER_100:g} per 100 strides over the whole walk",
        "liftable_pairs": len(liftable),
        "unliftable": [f"{p['recording']} patient {p['patient']}" for p in pairs if not p["liftable"]],
        "convergence_strides": _convergence(pairs), "convergence_strides_liftable": _convergence(liftable),
        "toe_drag_per_100": drag,
        "charge": _charge(pairs), "charge_liftable": _charge(liftable),
        "frozen_strides": sum(p["frozen_strides"] for p in pairs),
        "saturated_strides": sum(p["saturated_strides"] for p in pairs),
        "faults": sum(len(p[k]["faults"]) for p in pairs
                      for k in ("adaptive", "fixed_tuned", "fixed_high", "fixed_max")),
        "outputs_above_patient_max": sum(p["adaptive"]["peak_ma"] > MAX_MA for p in pairs),
        "min_fitness_median": float(np.median([p["min_fitness"] for p in pairs])),
        "wall_s": wall_s,
        "per_pair": pairs,
    }
    t = out
    out["targets"] = {
        "convergence_le_5_strides": t["convergence_strides"]["within_5"] == len(pairs),
        "toe_drag_adaptive_le_1_per_100": (drag["all"]["adaptive"] or 0.0) <= 1.0,
        "toe_drag_adaptive_le_1_per_100_liftable": (drag["liftable"]["adaptive"] or 0.0) <= 1.0,
        "charge_saving_ge_20_percent": (t["charge"]["saving_total_percent"] or 0.0) >= 20.0,
        "charge_saving_ge_20_percent_liftable": (t["charge_liftable"]["saving_total_percent"] or 0.0) >= 20.0,
        "zero_outputs_above_patient_max": t["outputs_above_patient_max"] == 0,
    }
    return out


def _num(x) -> float:
    return float("nan") if x is None else float(x)


def rows(r: dict) -> list[tuple[str, str, str]]:
    out = []
    for label, c, d, q in (("all pairs", r["convergence_strides"], r["toe_drag_per_100"]["all"], r["charge"]),
                           ("liftable", r["convergence_strides_liftable"], r["toe_drag_per_100"]["liftable"],
                            r["charge_liftable"])):
        out += [
            (f"adaptive, {label}: convergence", f"median {_num(c['median']):g}, max {c['max']} strides",
             f"{c['within_5']}/{c['pairs']} within 5 strides to 2° of target, {c['never']} never (target ≤ 5)"),
            (f"adaptive, {label}: toe drag /100", f"{_num(d['adaptive']):.2f} adaptive",
             f"fixed tuned at minute 0 {_num(d['fixed_tuned_minute0']):.2f}, fixed high {_num(d['fixed_high']):.2f}, "
             f"fixed at max {_num(d['fixed_max']):.2f} (target ≤ 1; {r['minutes']:g}-min walks)"),
            (f"adaptive, {label}: charge", f"{_num(q['saving_total_percent']):.1f} % less",
             f"than the fixed profile set high enough for the whole walk (median per pair "
             f"{_num(q['saving_median_percent']):.1f} %; target ≥ 20 %)"),
        ]
    out += [
        ("liftable pairs", f"{r['liftable_pairs']}/{r['pairs']}", r["liftable_rule"]),
        ("adaptive: safety", f"{r['outputs_above_patient_max']} outputs above max",
         f"{r['faults']} faults, {r['frozen_strides']} frozen, {r['saturated_strides']} saturated strides; "
         f"{r['wall_s']:.0f} s"),
    ]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--patients", type=int, default=20)
    ap.add_argument("--recordings", nargs="+", default=list(RECORDINGS), metavar="NAME",
                    help="walks whose timing the patients walk (default: %(default)s)")
    ap.add_argument("--workers", type=int, default=2, help="dask worker processes (0: in this process)")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    args = ap.parse_args(argv)
    r = measure(args.minutes, args.patients, tuple(args.recordings), workers=args.workers)
    for name, value, note in rows(r):
        print(f"  {name:<36}  {value:<28} {note}")
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    results["adaptive"] = r
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(f"\nwritten: {out} (key 'adaptive')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
