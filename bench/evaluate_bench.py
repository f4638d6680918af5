"""Cohort speed: `fes evaluate` feet per second with 1 and 2 workers, and a `fes sweep` over
the shared gaitpdb walks (issue 12).

* ``evaluate_recordings_per_s``: generic CSV walks (gaitpdb walks of ~2 min at 100 Hz,
  converted once into a temporary folder, one foot per file), evaluated end to end on a
  LocalCluster — load (binary CSV cache warm, as on a second run), replay through the
  compiled kernel, score, rows back to the client. Cluster start-up is not counted (it is
  reported separately). Targets: >= 50 feet/s per worker; 2 workers >= 1.7 x one (the median
  of the ratios of interleaved 1- and 2-worker runs, both clusters up: the VM's speed drifts).
* ``sweep``: real sweeps of ``--sweep-points`` / 2 and ``--sweep-points`` points (default 64
  and 128: 19 % of the work) of trigger.heel.off_fraction × every shared gaitpdb walk (both
  feet) with 2 workers, each with its cluster start-up, in the tasks of a 1,000-point sweep
  (64 points each); the time for 1,000 points is fitted as start-up + points × slope and
  printed with its inputs, what it assumes and the CPU per replay (tasks, client and
  scheduler); ``--full-sweep`` runs the 1,000 points (target: <= 15 min).

Usage: python bench/evaluate_bench.py [--walks 40] [--sweep-points 128] [--full-sweep] [--repeats 5]
* ``replay_cpu_ms_per_foot``: replay + score of one gaitpdb foot in this process, each delivery
  to the supervisor singly (the plain path: the baseline of the run) and batched (the default).

(updates the cohort keys of bench/results.json; ``make bench`` writes them with everything else)
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fescontrol.core.profile import bundled_profile_path, load_profile
from fescontrol.sim.engine import dask_client
from fescontrol.sim.evaluate import RecordingItem, evaluate
from fescontrol.sim.sources import list_available, shared_gait_data_dir

ROOT = Path(__file__).resolve().parents[1]


def gaitpdb_names() -> list[str]:
    return [n for n in list_available() if n.startswith("physionet:")]


def make_csv_walks(folder: Path, n_walks: int) -> list[RecordingItem]:
    """The first ``n_walks`` gaitpdb walks, both feet, as generic CSV files in ``folder``."""
    from fescontrol.sim.run import load_any
    from fescontrol.sim.sources.csv_recording import write_csv_recording
    items = []
    for name in gaitpdb_names()[:n_walks]:
        for side in ("left", "right"):
            out = folder / f"{name.split(':', 1)[1]}_{side}.csv"
            write_csv_recording(load_any(name, side), out)
            items.append(RecordingItem(str(out), side))
    return items


def _cpu_s(procs) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except Exception:      # a process that ended (psutil.Error)
            pass
    return total


class _EvaluateRig:
    """One LocalCluster of ``workers`` processes, warmed up (imports, CSV cache), that times
    one evaluate run of ``items`` at a time. ``engine_cpu`` per run: the CPU of this process
    (client, scheduler, nannies) and of the workers during the run, minus the tasks' own thread
    CPU: what the engine costs; on 2 cores with 2 workers it comes out of the workers' time,
    so it bounds the scaling."""

    def __init__(self, stack: contextlib.ExitStack, items: list[RecordingItem], workers: int, profile):
        import psutil
        t0 = time.perf_counter()
        self.client = stack.enter_context(dask_client(workers=workers))
        self.startup_s = time.perf_counter() - t0
        self.items, self.workers, self.profile = items, workers, profile
        evaluate(items, profile, client=self.client, progress=False)     # warm: imports, CSV cache
        me = psutil.Process()
        self.procs = [me] + me.children(recursive=True)
        self.runs, self.engine_cpu, self.last = [], [], None

    def run(self) -> float:
        c0 = _cpu_s(self.procs)
        res = evaluate(self.items, self.profile, client=self.client, progress=False)
        self.engine_cpu.append(_cpu_s(self.procs) - c0 - sum(r.cpu_seconds for r in res.results))
        self.runs.append(res.elapsed_s)
        self.last = res
        return res.elapsed_s

    def summary(self) -> dict:
        res, items = self.last, self.items
        best = statistics.median(self.runs)
        kernels = sorted({r.kernel for r in res.evaluated if r.kernel})
        per_foot_ms = 1000 * sum(r.seconds for r in res.evaluated) / max(1, len(res.evaluated))
        cpu_ms = 1000 * sum(r.cpu_seconds for r in res.evaluated) / max(1, len(res.evaluated))
        return {"workers": self.workers, "feet": len(items), "elapsed_s": round(best, 3),
                "runs_s": [round(r, 3) for r in self.runs],
                "feet_per_s": round(len(items) / best, 1), "worker_ms_per_foot": round(per_foot_ms, 1),
                "worker_cpu_ms_per_foot": round(cpu_ms, 1),
                "cpu_bound_feet_per_s_per_worker": round(1000 / cpu_ms, 1) if cpu_ms else None,
                "engine_cpu_ms_per_foot": round(1000 * statistics.median(self.engine_cpu) / max(1, len(items)), 2),
                "cluster_startup_s": round(self.startup_s, 2), "kernels": kernels,
                "loadavg_1min": round(os.getloadavg()[0], 2)}


def measure_evaluate(items: list[RecordingItem], repeats: int = 5) -> tuple[dict, dict, list[float]]:
    """1 and 2 workers, ``repeats`` rounds of one run on each, interleaved: both clusters stay up
    and each round times the 1-worker run and then the 2-worker run. This machine's speed drifts
    by more than 1.5x over minutes (a shared VM: the same 1-worker run measured 70-116 feet/s in
    one half hour), so two medians taken minutes apart can give any ratio; a ratio of two runs
    seconds apart cannot drift far. Returns the 1-worker summary, the 2-worker summary (medians
    over the rounds, every run kept in ``runs_s``) and the per-round scaling ratios."""
    profile = load_profile(bundled_profile_path("default"))
    with contextlib.ExitStack() as stack:
        one = _EvaluateRig(stack, items, 1, profile)
        two = _EvaluateRig(stack, items, 2, profile)
        ratios = [one.run() / two.run() for _ in range(repeats)]
        return one.summary(), two.summary(), ratios


def measure_sequential(items: list[RecordingItem]) -> dict:
    """Baseline in the same run: the same feet one after another in this process, no Dask;
    then the CPU of each step of a foot apart (load from the warm cache, wire frames, replay,
    score), in this process."""
    from fescontrol.sim.evaluate import evaluate_foot, prepare_worker
    from fescontrol.sim.load import load_any
    from fescontrol.sim.replay import recording_stream, replay
    from fescontrol.sim.scoring import score
    profile = load_profile(bundled_profile_path("default"))
    for it in items[:4]:
        evaluate_foot(it.source, it.side, None, profile)
    t0, c0 = time.perf_counter(), time.process_time()
    for it in items:
        evaluate_foot(it.source, it.side, None, profile)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    prepare_worker()         # as on a worker: the heap out of the cyclic collector's way
    steps = dict.fromkeys(("load", "frames", "replay", "score"), 0.0)
    for it in items:
        c = time.process_time()
        rec = load_any(it.source, it.side)
        c1 = time.process_time()
        stream = recording_stream(rec)[0].tobytes()
        c2 = time.process_time()
        result = replay(rec, profile, stream=stream, trace="current", events=False)
        c3 = time.process_time()
        score(rec, result.bursts_s, faults=[f.text for f in result.faults])
        c4 = time.process_time()
        for key, dt in zip(steps, (c1 - c, c2 - c1, c3 - c2, c4 - c3)):
            steps[key] += dt
    return {"feet": len(items), "elapsed_s": round(wall, 3), "feet_per_s": round(len(items) / wall, 1),
            "cpu_ms_per_foot": round(1000 * cpu / len(items), 1),
            "step_cpu_ms_per_foot": {k: round(1000 * v / len(items), 2) for k, v in steps.items()}}


def measure_replay_paths(walks: int = 20, repeats: int = 3) -> dict:
    """CPU ms per replay + score of a gaitpdb foot (the unit of a sweep) in this process, with
    each delivery sent to the supervisor singly (the plain path, the baseline of this run) and
    with a ramp's deliveries checked in one call (``Controller.BATCH_DELIVERIES``, the default);
    both give identical results (tests/test_batch_delivery.py). Median of ``repeats`` passes."""
    from fescontrol.loop.controller import Controller
    from fescontrol.sim.replay import recording_stream, replay
    from fescontrol.sim.run import load_any
    from fescontrol.sim.scoring import score
    profile = load_profile(bundled_profile_path("default"))
    feet = [load_any(n, s) for n in gaitpdb_names()[:walks] for s in ("left", "right")]
    streams = [recording_stream(rec)[0].tobytes() for rec in feet]
    out = {}
    for label, batch in (("plain_ms", False), ("batched_ms", True)):
        Controller.BATCH_DELIVERIES = batch
        passes = []
        try:
            for _ in range(repeats):
                c0 = time.thread_time()
                for rec, stream in zip(feet, streams):
                    result = replay(rec, profile, stream=stream)
                    score(rec, result.bursts_s, faults=[f.text for f in result.faults])
                passes.append(1000 * (time.thread_time() - c0) / len(feet))
        finally:
            Controller.BATCH_DELIVERIES = True
        out[label] = round(statistics.median(passes), 2)
    out.update({"feet": len(feet), "batched_vs_plain": round(out["plain_ms"] / out["batched_ms"], 2),
                "statistic": f"median of {repeats}, thread CPU time"})
    return out


#: points per task of a 1,000-point ``fes sweep`` (sim.sweep: min(64, ceil(points / 4)))
SWEEP_BLOCK = 64


def measure_sweep(points: int, workers: int = 2, block: int | None = None) -> dict:
    """One real ``fes sweep`` run (cluster start-up included) of ``points`` points of
    trigger.heel.off_fraction (spread over 0.005..0.105, the range of the 1,000-point run)
    over every shared gaitpdb walk, both feet, in tasks of ``block`` points (default: as a
    1,000-point sweep runs, :data:`SWEEP_BLOCK`)."""
    from fescontrol.sim.sweep import sweep
    names = gaitpdb_names()
    items = [RecordingItem(n, s) for n in names for s in ("left", "right")]
    base = load_profile(bundled_profile_path("default"))
    values = [{"trigger.heel.off_fraction": round(0.005 + 0.1 * k / max(1, points - 1), 6)} for k in range(points)]
    t0 = time.perf_counter()
    # each worker loads a recording once per task, then replays it for the whole block
    res = sweep(items, base, [], points=values, workers=workers, progress=False, block=block or SWEEP_BLOCK)
    total = time.perf_counter() - t0
    replays = res.feet * len(res.valid)
    cpu_ms = 1000 * res.engine["worker_cpu_s"] / max(1, replays)
    return {"points": points, "walks": len(names), "feet": res.feet, "workers": workers, "replays": replays,
            "points_per_task": res.engine["points_per_task"], "tasks": res.engine["tasks"],
            "elapsed_s": round(total, 1), "replays_per_s": round(replays / total, 1),
            "worker_cpu_ms_per_replay": round(cpu_ms, 2),
            "client_cpu_ms_per_replay": round(1000 * res.engine["client_cpu_s"] / max(1, replays), 2),
            "best": res.best.values if res.best else None}


def fit_sweep(runs: list[dict], target_points: int = 1000) -> dict:
    """The time of a ``target_points`` sweep fitted as start-up + points × slope through real
    sweeps of fewer points over ALL the walks, in the same tasks as the target (least squares
    over ``runs``); with the inputs and what the extrapolation assumes."""
    xs = [r["points"] for r in runs]
    ys = [r["elapsed_s"] for r in runs]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    startup = my - slope * mx
    return {"target_points": target_points, "slope_s_per_point": round(slope, 3), "startup_s": round(startup, 1),
            "projected_s": round(startup + slope * target_points, 1),
            "projected_min": round((startup + slope * target_points) / 60, 1),
            "fit": "elapsed_s = startup_s + points * slope_s_per_point (least squares)",
            "assumes": "every further block of points costs what the measured ones did: same feet, "
                       "same tasks (points per task), points from the same range, a client that keeps up",
            "runs": runs}


def measure_sweeps(points: int, workers: int = 2) -> dict:
    """Real sweeps of ``points // 2`` and ``points`` points (the smaller first) over every
    shared gaitpdb walk in the tasks of a 1,000-point sweep (:data:`SWEEP_BLOCK` points each),
    fitted to 1,000 points by :func:`fit_sweep`; a run of 1,000 points or more is reported as
    measured."""
    if points >= 1000:
        run = measure_sweep(points, workers)
        return {**run, "projected_min": round(run["elapsed_s"] / 60, 1), "extrapolated": False, "runs": [run]}
    runs = [measure_sweep(max(1, points // 2), workers), measure_sweep(points, workers)]
    fit = fit_sweep(runs)
    last = runs[-1]
    cpu_ms = last["worker_cpu_ms_per_replay"] + last["client_cpu_ms_per_replay"]
    return {**fit, "points": last["points"], "walks": last["walks"], "feet": last["feet"], "workers": workers,
            "elapsed_s": last["elapsed_s"], "replays_per_s": last["replays_per_s"],
            "worker_cpu_ms_per_replay": last["worker_cpu_ms_per_replay"],
            "client_cpu_ms_per_replay": last["client_cpu_ms_per_replay"],
            "cpu_bound_1000_points_min": round(cpu_ms * last["feet"] / workers / 60, 1),
            "share_of_1000_points": round(sum(r["points"] for r in runs) / 1000, 3),
            "extrapolated": True}


def measure(walks: int = 40, sweep_points: int = 128, echo=print, repeats: int = 5) -> dict:
    load_before = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("FES_CACHE_DIR", str(Path(tmp) / "cache"))
        items = make_csv_walks(Path(tmp), walks)
        echo(f"baseline: {len(items)} CSV feet sequentially in one process …")
        seq = measure_sequential(items)
        echo(f"evaluate: {len(items)} CSV feet, 1 and 2 workers, {repeats} interleaved rounds …")
        one, two, ratios = measure_evaluate(items, repeats)
    out = {"evaluate_recordings_per_s": {"1_worker": one["feet_per_s"], "2_workers": two["feet_per_s"],
                                         "scaling": round(statistics.median(ratios), 2),
                                         "scaling_per_round": [round(r, 2) for r in ratios],
                                         "sequential_baseline": seq["feet_per_s"],
                                         "1_worker_vs_sequential": round(one["feet_per_s"] / seq["feet_per_s"], 2),
                                         "detail": [seq, one, two],
                                         "conditions": {"cpus": os.cpu_count(), "loadavg_1min_before": load_before,
                                                        "repeats": repeats, "statistic": "median",
                                                        "scaling": "median of the per-round ratios "
                                                                   "(1-worker run / 2-worker run, interleaved)",
                                                        "note": "machine shared with other users"}}}
    if (shared_gait_data_dir() / "physionet_gaitpdb" / "data").is_dir():
        echo("replay + score per foot, plain vs batched deliveries …")
        out["replay_cpu_ms_per_foot"] = measure_replay_paths()
    if sweep_points and (shared_gait_data_dir() / "physionet_gaitpdb" / "data").is_dir():
        echo(f"sweep: {max(1, sweep_points // 2)} and {sweep_points} points × every shared gaitpdb walk, 2 workers …")
        out["sweep"] = measure_sweeps(sweep_points)
    return out


def rows(results: dict) -> list[tuple[str, str, str]]:
    ev = results["evaluate_recordings_per_s"]
    seq, d1, d2 = ev["detail"]
    steps = seq.get("step_cpu_ms_per_foot", {})
    out = [("evaluate baseline, no Dask", f"{seq['feet_per_s']} feet/s",
            f"sequential in one process, {seq['cpu_ms_per_foot']} ms CPU per foot, {seq['feet']} CSV feet "
            "of ~2 min at 100 Hz; steps, ms CPU per foot: " + ", ".join(f"{k} {v}" for k, v in steps.items())),
           ("evaluate, 1 worker", f"{ev['1_worker']} feet/s", f"target ≥ 50 per worker; "
            f"{ev['1_worker_vs_sequential']}× the baseline; {d1['worker_ms_per_foot']} ms wall, "
            f"{d1['worker_cpu_ms_per_foot']} ms CPU per foot on the worker "
            f"(= {d1['cpu_bound_feet_per_s_per_worker']} feet/s per unshared core)"),
           ("evaluate, 2 workers", f"{ev['2_workers']} feet/s", f"scaling {ev['scaling']}× (target ≥ 1.7×; median "
            f"of {len(ev['scaling_per_round'])} interleaved rounds: "
            + ", ".join(f"{r}" for r in ev["scaling_per_round"]) + "); "
            f"engine CPU (client, scheduler, nannies, workers outside the tasks) {d1['engine_cpu_ms_per_foot']} ms "
            f"per foot with 1 worker, {d2['engine_cpu_ms_per_foot']} with 2; load "
            f"{d1['loadavg_1min']} / {d2['loadavg_1min']} after the runs")]
    if "replay_cpu_ms_per_foot" in results:
        r = results["replay_cpu_ms_per_foot"]
        out.append(("replay + score, one foot", f"{r['batched_ms']} ms CPU",
                    f"{r['batched_vs_plain']}× faster than each delivery singly ({r['plain_ms']} ms, same run, "
                    f"{r['feet']} gaitpdb feet)"))
    if "sweep" in results:
        s = results["sweep"]
        if s["extrapolated"]:
            inputs = "; ".join(f"{r['points']} points in {r['elapsed_s']} s" for r in s["runs"])
            out.append(("sweep, 1,000 points × gaitpdb", f"{s['projected_min']} min",
                        f"fitted {s['startup_s']} s + 1000 × {s['slope_s_per_point']} s/point through real sweeps "
                        f"over all {s['walks']} walks ({s['feet']} feet, {s['workers']} workers, "
                        f"{s['runs'][-1]['points_per_task']} points per task as in the 1,000-point run; "
                        f"{100 * s['share_of_1000_points']:.1f} % of its replays): {inputs}; target ≤ 15 min; "
                        f"assumes {s['assumes']}; CPU per replay {s['worker_cpu_ms_per_replay']} ms in tasks + "
                        f"{s['client_cpu_ms_per_replay']} ms client and scheduler "
                        f"(= {s['cpu_bound_1000_points_min']} min on {s['workers']} unshared cores)"))
        else:
            out.append(("sweep, 1,000 points × gaitpdb", f"{s['projected_min']} min",
                        f"measured: {s['points']} points × {s['feet']} feet ({s['walks']} walks) in "
                        f"{s['elapsed_s']} s, {s['replays_per_s']} replays/s; target ≤ 15 min"))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--walks", type=int, default=40, help="gaitpdb walks converted to CSV (2 feet each)")
    ap.add_argument("--sweep-points", type=int, default=128,
                    help="the larger of the two fitted sweeps (the other: half of it); 0 skips")
    ap.add_argument("--full-sweep", action="store_true", help="run all 1,000 points (slow)")
    ap.add_argument("--repeats", type=int, default=5,
                    help="interleaved rounds of one 1-worker and one 2-worker evaluate run (medians reported)")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--results", default=str(Path(__file__).with_name("results.json")),
                    help="update these keys (evaluate_recordings_per_s, sweep) in this results file, keeping "
                         "the other benches' figures ('' to skip)")
    args = ap.parse_args(argv)
    results = measure(args.walks, 1000 if args.full_sweep else args.sweep_points, repeats=args.repeats)
    for name, value, note in rows(results):
        print(f"  {name:<30} {value:<14} {note}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if args.results:
        path = Path(args.results)
        doc = json.loads(path.read_text()) if path.is_file() else {}
        doc.update(results)
        doc.setdefault("cohort_date", None)
        doc["cohort_date"] = time.strftime("%Y-%m-%d %H:%M:%S")
        path.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"  -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
