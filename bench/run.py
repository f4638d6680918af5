"""`make bench`: throughput (compiled vs pure Python) and real-time latency over ptys.

Prints a table and writes bench/results.json. Not part of the test suite: figures
depend on the machine. Targets (issue 4): speedup ≥ 50×, ≤ 2 µs per sample,
p99 latency ≤ 1 ms at 1 kHz.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import latency  # noqa: E402
import throughput  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--latency-s", type=float, default=60.0, help="real-time run length (s)")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    args = ap.parse_args(argv)
    print("throughput: replaying a recorded walk through both kernels (1 kHz and 100 Hz) …", flush=True)
    tp = throughput.measure(rate_hz=1000.0)
    tp100 = throughput.measure(rate_hz=None, cython_samples=200_000, python_samples=20_000)
    print(f"latency: {args.latency_s:g} s at 1 kHz over real pseudo-terminals …", flush=True)
    lat = latency.measure(args.latency_s)
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
        "latency_ms": {k: round(v, 3) if isinstance(v, float) else v for k, v in lat["latency_ms"].items()},
        "missed_deadlines": lat["missed_deadlines"],
        "duration_s": round(lat["duration_s"], 2),
        "frames": lat["frames"],
        "frames_lost": lat["frames_lost"],
        "lateness_p99_us": lat["lateness_p99_us"],
        "stream": tp["stream"],
        "machine": f"{platform.machine()} {platform.processor() or ''} python {platform.python_version()}".strip(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    h = results["at_100_hz"]
    rows = [("Cython kernel, 1 kHz", f"{results['cython_samples_per_s']:,} samples/s",
             f"{results['us_per_sample']} µs/sample (target ≤ 2)"),
            ("pure-Python kernel, 1 kHz", f"{results['python_samples_per_s']:,} samples/s",
             f"{results['python_us_per_sample']} µs/sample"),
            ("speedup, 1 kHz", f"{results['speedup']}×", "target ≥ 50×"),
            ("Cython / Python, 100 Hz", f"{h['cython_samples_per_s']:,} / {h['python_samples_per_s']:,} samples/s",
             f"{h['speedup']}×, {h['us_per_sample']} µs/sample (event level weighs more)"),
            ("latency p50 / p99 / max", "{p50} / {p99} / {max} ms".format(**results["latency_ms"]),
             f"{results['latency_ms']['samples']} commands, target p99 ≤ 1 ms"),
            ("missed deadlines", str(results["missed_deadlines"]),
             f"of {results['frames']:,} frames in {results['duration_s']} s at 1 kHz")]
    width = max(len(r[0]) for r in rows)
    print()
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:<28} {note}")
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
