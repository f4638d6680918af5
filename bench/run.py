"""`make bench`: throughput (compiled vs pure Python) and real-time latency over ptys.

Prints a table and writes bench/results.json. Not part of the test suite: figures
depend on the machine. Targets (issues 4 and 16): speedup ≥ 50×, ≤ 2 µs per sample;
loop p99 ≤ 1 ms and ≤ 1.5× the minimal relay's p99 measured in the same run, idle and
under a one-core CPU hog (bench/load.py); 0 missed deadlines in 60 s at 1 kHz idle
(and under load with --rt where permitted); RSS growth ≤ 1 MB per walked hour
(bench/memory.py). ``--quick`` for development.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import adaptive as adaptive_bench
import evaluate_bench
import latency
import throughput
from load import CpuHog


def _round(d):
    if isinstance(d, dict):
        return {k: _round(v) for k, v in d.items()}
    return round(d, 3) if isinstance(d, float) else d


def _latency_pair(seconds: float, relay_s: float, *, rt: bool, loaded: bool) -> dict:
    """The loop and the relay under the same conditions, back to back (relay first)."""
    from contextlib import nullcontext
    label = ("loaded" if loaded else "idle") + (", --rt" if rt else "")
    with (CpuHog(cpu=0) if loaded else nullcontext()) as hog:
        load_before = os.getloadavg()[0]
        print(f"latency ({label}): relay {relay_s:g} s, then the loop {seconds:g} s at 1 kHz …", flush=True)
        relay = latency.measure_relay(relay_s, rt=rt)
        loop = latency.measure(seconds, rt=rt)
        conditions = {"loadavg_1min_before": round(load_before, 2), "loadavg_1min_after": round(os.getloadavg()[0], 2),
                      "rt": rt, "cpu_load": hog.description if hog is not None else "none (other users' work only)",
                      "stand_ins": loop["stand_ins"]}
    return {"loop": loop, "relay": relay, "vs_relay": latency.compare(loop, relay), "conditions": conditions}


def _floor(pair: dict) -> dict:
    """What the machine itself cost in the run: the relay's missed deadlines (the kernel's rule
    on the frames it read) and how late the sensor stand-in wrote (loop run and relay run)."""
    return {"relay_missed_deadlines": pair["relay"]["missed_deadlines"],
            "relay_frames": pair["relay"]["frames"],
            "sensor_stand_in_late_loop_run": _round(pair["loop"]["sensor_late"]),
            "sensor_stand_in_late_relay_run": _round(pair["relay"]["sensor_late"])}


def _targets(pair: dict, idle: bool) -> dict:
    loop, relay = pair["loop"]["latency_ms"], pair["relay"]["latency_ms"]
    out = {"p99_le_1ms": loop["p99"] <= 1.0, "p99_le_1.5x_relay": loop["p99"] <= 1.5 * relay["p99"],
           "no_fault": not pair["loop"]["faults"]}
    if idle:
        out["zero_missed_deadlines"] = pair["loop"]["missed_deadlines"] == 0
    return out


def _floor_row(pair):
    f = _floor(pair)
    late = f["sensor_stand_in_late_loop_run"]["missed_deadlines"]
    return ("  machine's floor", f"relay {f['relay_missed_deadlines']} missed",
            f"of {f['relay_frames']:,} frames; sensor stand-in wrote {late} frames late in the loop's run "
            f"({pair['conditions']['stand_ins'][0]})")


def _lat_row(name, pair):
    a, b, c = pair["loop"]["latency_ms"], pair["relay"]["latency_ms"], pair["vs_relay"]
    return (name, "{p50:.3f} / {p99:.3f} / {max:.3f} ms".format(**a),
            "relay {p50:.3f} / {p99:.3f} / {max:.3f} ms".format(**b)
            + f"; p99 {c['p99_diff_ms']:+.3f} ms, {c['p99_ratio']:.2f}× (target ≤ 1 ms and ≤ 1.5×)")


def _fault_rows(pair):
    loop = pair["loop"]
    return [("  FAULT (run ended)", f"after {loop['duration_s']:.1f} s", loop["faults"][0])] if loop["faults"] else []


def _realtime_part(args) -> tuple[dict, list, dict]:
    """The real-time part of `make bench`: the latency pairs (idle, idle on the P24 backend,
    under the hog, and both with --rt where permitted) and the RSS growth of a fast-forwarded
    walk. Returns (its keys of bench/results.json, its table rows, the idle pair's conditions)."""
    idle = _latency_pair(args.latency_s, args.relay_s, rt=False, loaded=False)
    print(f"latency (idle, P24): the loop {args.latency_s:g} s at 1 kHz on the ScienceMode4 driver "
          f"and the P24 emulator …", flush=True)
    p24_loop = latency.measure(args.latency_s, backend="p24")
    p24 = {"loop": p24_loop, "relay": idle["relay"], "vs_relay": latency.compare(p24_loop, idle["relay"])}
    loaded = _latency_pair(args.latency_s, args.relay_s, rt=False, loaded=True)
    rt_ok = args.rt == "yes" or (args.rt == "auto" and latency.rt_permitted())
    rt_idle = _latency_pair(args.latency_s, args.relay_s, rt=True, loaded=False) if rt_ok else None
    rt_loaded = _latency_pair(args.latency_s, args.relay_s, rt=True, loaded=True) if rt_ok else None
    print(f"memory: {args.walk_s:g} s of walking fast-forwarded through the loop …", flush=True)
    # a fresh process: the latency runs above locked (mlockall) and faulted in memory here
    mem_run = subprocess.run([sys.executable, str(Path(__file__).with_name("memory.py")), str(args.walk_s)],
                             capture_output=True, text=True, check=True)
    mem = json.loads(mem_run.stdout.strip().splitlines()[-1])
    lat = idle["loop"]
    results = {
        "latency_ms": _round(lat["latency_ms"]),
        "missed_deadlines": lat["missed_deadlines"],
        "duration_s": round(lat["duration_s"], 2),
        "frames": lat["frames"],
        "frames_lost": lat["frames_lost"],
        "lateness_p99_us": lat["lateness_p99_us"],
        "latency_baseline_ms": _round(idle["relay"]["latency_ms"]),
        "latency_vs_baseline": _round(idle["vs_relay"]),
        "latency_loaded_ms": _round(loaded["loop"]["latency_ms"]),
        "latency_baseline_loaded_ms": _round(loaded["relay"]["latency_ms"]),
        "latency_loaded_vs_baseline": _round(loaded["vs_relay"]),
        "missed_deadlines_loaded": loaded["loop"]["missed_deadlines"],
        "floor": {"idle": _floor(idle), "loaded": _floor(loaded),
                  "rt_idle": None if rt_idle is None else _floor(rt_idle),
                  "rt_loaded": None if rt_loaded is None else _floor(rt_loaded),
                  "note": "relay_missed_deadlines: frames the minimal relay read more than one period late "
                          "(the kernel's rule); sensor_stand_in_late: the stand-in's own late writes, which "
                          "count as the loop's misses too"},
        "p24_idle": {"latency_ms": _round(p24_loop["latency_ms"]), "vs_baseline": _round(p24["vs_relay"]),
                     "missed_deadlines": p24_loop["missed_deadlines"], "frames": p24_loop["frames"],
                     "faults": p24_loop["faults"],
                     "note": "same loop on the ScienceMode4 driver and the P24 emulator, against the "
                             "idle relay of the same run"},
        "faults": {"idle": idle["loop"]["faults"], "loaded": loaded["loop"]["faults"],
                   "rt_idle": None if rt_idle is None else rt_idle["loop"]["faults"],
                   "rt_loaded": None if rt_loaded is None else rt_loaded["loop"]["faults"]},
        "cpu_load": loaded["conditions"]["cpu_load"],
        "rt_idle": None if rt_idle is None else {
            "latency_ms": _round(rt_idle["loop"]["latency_ms"]),
            "latency_baseline_ms": _round(rt_idle["relay"]["latency_ms"]),
            "vs_baseline": _round(rt_idle["vs_relay"]),
            "missed_deadlines": rt_idle["loop"]["missed_deadlines"],
            "settings": rt_idle["loop"]["rt_settings"]},
        "rt_loaded": None if rt_loaded is None else {
            "latency_ms": _round(rt_loaded["loop"]["latency_ms"]),
            "latency_baseline_ms": _round(rt_loaded["relay"]["latency_ms"]),
            "vs_baseline": _round(rt_loaded["vs_relay"]),
            "missed_deadlines": rt_loaded["loop"]["missed_deadlines"],
            "steady_state_blocks": rt_loaded["loop"]["steady_state_blocks"],
            "steady_state_s": rt_loaded["loop"]["steady_state_s"],
            "settings": rt_loaded["loop"]["rt_settings"]},
        "rss_growth_kb_per_h": mem["rss_growth_kb_per_h"],
        "memory_walk": mem,
        "conditions": {"idle": idle["conditions"], "loaded": loaded["conditions"],
                       "rt_idle": None if rt_idle is None else rt_idle["conditions"],
                       "rt_loaded": None if rt_loaded is None else rt_loaded["conditions"],
                       "cpus": os.cpu_count(), "quick": args.quick,
                       "note": "machine shared with other users: absolute figures are noisy; the ratio "
                               "against the relay measured in the same run is the comparison"},
        "targets": {"idle": _targets(idle, True), "p24_idle": _targets(p24, True), "loaded": _targets(loaded, False),
                    "rt_idle": None if rt_idle is None else {
                        **_targets(rt_idle, True)},
                    "rt_loaded": None if rt_loaded is None else {
                        **_targets(rt_loaded, False),
                        "zero_missed_deadlines": rt_loaded["loop"]["missed_deadlines"] == 0},
                    "rss_le_1MB_per_h": mem["rss_growth_kb_per_h"] <= 1024},
        "realtime_date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    rows = [_lat_row("latency idle p50/p99/max", idle), *_fault_rows(idle),
            ("missed deadlines idle", str(lat["missed_deadlines"]),
             f"of {lat['frames']:,} frames in {lat['duration_s']:g} s at 1 kHz (target 0)"),
            _floor_row(idle),
            _lat_row("latency idle, P24", p24),
            ("missed deadlines idle, P24", str(p24_loop["missed_deadlines"]),
             f"of {p24_loop['frames']:,} frames" + (f"; FAULT {p24_loop['faults'][0]}" if p24_loop["faults"] else "")),
            _lat_row("latency loaded", loaded), *_fault_rows(loaded),
            ("missed deadlines loaded", str(loaded["loop"]["missed_deadlines"]), results["cpu_load"]),
            _floor_row(loaded)]
    if rt_idle is not None:
        rows += [_lat_row("latency idle --rt", rt_idle), *_fault_rows(rt_idle),
                 ("missed deadlines idle --rt", str(rt_idle["loop"]["missed_deadlines"]),
                  "target 0; " + next((line for line in rt_idle["loop"]["rt_settings"] if "sched_fifo" in line), "")),
                 _floor_row(rt_idle)]
    if rt_loaded is not None:
        rows += [_lat_row("latency loaded --rt", rt_loaded), *_fault_rows(rt_loaded),
                 ("missed deadlines loaded --rt", str(rt_loaded["loop"]["missed_deadlines"]),
                  f"target 0; steady-state blocks {rt_loaded['loop']['steady_state_blocks']:+} "
                  f"over {rt_loaded['loop']['steady_state_s']} s"),
                 _floor_row(rt_loaded)]
    else:
        rows.append(("--rt", "not measured", "SCHED_FIFO not permitted here (CAP_SYS_NICE / rtprio limit)"))
    rows.append(("RSS growth", f"{mem['rss_growth_kb_per_h']:g} kB per walked hour",
                 f"{mem['walk_s']:g} s walked at {mem['speed_x']:g}× real time; "
                 f"{mem['blocks_growth_per_h']:+} blocks/h (target ≤ 1024 kB/h)"))
    return results, rows, idle["conditions"]


def _throughput_part(args) -> tuple[dict, list]:
    """Compiled vs pure-Python kernel samples per second (1 kHz and 100 Hz) and one vs two
    channels. Returns (its keys of bench/results.json, its table rows)."""
    print("throughput: replaying a recorded walk through both kernels (1 kHz and 100 Hz) …", flush=True)
    scale = 10 if args.quick else 1
    tp = throughput.measure(rate_hz=1000.0, cython_samples=400_000 // scale, python_samples=40_000 // scale)
    tp100 = throughput.measure(rate_hz=None, cython_samples=200_000 // scale, python_samples=20_000 // scale)
    print("throughput: one channel vs two channels (configs/two_channel.yaml), compiled kernel …", flush=True)
    tp2 = throughput.measure_channels(samples=400_000 // scale)
    results = {
        "cython_samples_per_s": round(tp["cython_samples_per_s"]),
        "python_samples_per_s": round(tp["python_samples_per_s"]),
        "speedup": round(tp["speedup"], 1),
        "us_per_sample": round(tp["us_per_sample"], 3),
        "python_us_per_sample": round(tp["python_us_per_sample"], 2),
        "throughput_rate_hz": tp["rate_hz"],
        "at_100_hz": {"cython_samples_per_s": round(tp100["cython_samples_per_s"]),
                      "python_samples_per_s": round(tp100["python_samples_per_s"]),
                      "speedup": round(tp100["speedup"], 1), "us_per_sample": round(tp100["us_per_sample"], 3)},
        "two_channel": _round(tp2),
        "stream": tp["stream"],
    }
    h = results["at_100_hz"]
    rows = [("Cython kernel, 1 kHz", f"{results['cython_samples_per_s']:,} samples/s",
             f"{results['us_per_sample']} µs/sample (target ≤ 2)"),
            ("pure-Python kernel, 1 kHz", f"{results['python_samples_per_s']:,} samples/s",
             f"{results['python_us_per_sample']} µs/sample"),
            ("speedup, 1 kHz", f"{results['speedup']}×", "target ≥ 50×"),
            ("Cython / Python, 100 Hz", f"{h['cython_samples_per_s']:,} / {h['python_samples_per_s']:,} samples/s",
             f"{h['speedup']}×, {h['us_per_sample']} µs/sample (event level weighs more)"),
            ("one / two channels, 1 kHz", f"{results['two_channel']['one_channel_us_per_sample']} / "
             f"{results['two_channel']['two_channel_us_per_sample']} µs/sample",
             f"× {results['two_channel']['ratio']} (configs/two_channel.yaml, same run)")]
    return results, rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--latency-s", type=float, default=60.0, help="real-time loop run length (s)")
    ap.add_argument("--relay-s", type=float, default=30.0, help="baseline relay run length (s)")
    ap.add_argument("--walk-s", type=float, default=3600.0, help="fast-forwarded walk for memory growth (s)")
    ap.add_argument("--quick", action="store_true", help="development: 10 s runs, a 10-minute walk, "
                                                          "smaller throughput streams")
    ap.add_argument("--rt", choices=("auto", "yes", "no"), default="auto",
                    help="also measure idle and under load with real-time hardening (auto: where permitted)")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    ap.add_argument("--sweep-points", type=int, default=128,
                    help="fes sweep bench: the larger of two real sweeps over all walks (the other: half; "
                         "1,000 points fitted; 0 skips)")
    ap.add_argument("--only", choices=("realtime",),
                    help="realtime: only the latency pairs and the RSS growth (~6 min), merged into --out: "
                         "the other keys already there are kept")
    args = ap.parse_args(argv)
    if args.quick:
        args.latency_s, args.relay_s, args.walk_s = 10.0, 10.0, 600.0
    out = Path(args.out)
    if args.only == "realtime":
        results = json.loads(out.read_text()) if out.exists() else {}
        realtime_results, rows, idle_conditions = _realtime_part(args)
        results.update(realtime_results)
    else:
        results, rows = _throughput_part(args)
        realtime_results, realtime_rows, idle_conditions = _realtime_part(args)
        print("evaluate/sweep: fes evaluate on CSV walks with 1 and 2 workers, fes sweep on gaitpdb …", flush=True)
        cohort = evaluate_bench.measure(walks=10 if args.quick else 40,
                                        sweep_points=0 if args.quick else args.sweep_points,
                                        echo=lambda m: print("  " + m, flush=True))
        adaptive = adaptive_bench.measure(minutes=2.0 if args.quick else 20.0, patients=5 if args.quick else 20,
                                          echo=lambda m: print(m, flush=True))
        results.update(realtime_results)
        results.update({
            **cohort,
            "adaptive": adaptive,
            "machine": f"{platform.machine()} {platform.processor() or ''} python {platform.python_version()}".strip(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        })
        rows += realtime_rows + evaluate_bench.rows(cohort) + adaptive_bench.rows(adaptive)
    width = max(len(r[0]) for r in rows)
    print()
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:<30} {note}")
    print(f"\n  conditions: {os.cpu_count()} CPUs shared with other users (load average "
          f"{idle_conditions['loadavg_1min_before']:g} before the idle run); ratios against the relay "
          f"measured in the same run are the comparison")
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
