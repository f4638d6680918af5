"""Parameter sweeps over profile fields on a Dask cluster (``fes sweep``).

Over 400 lines: one engine (grid, cross-validation by subject, Dask tasks) and its Python API.

Python API (what the detection work tunes with)::

    from fescontrol.core.profile import load_profile
    from fescontrol.sim.evaluate import expand_recordings
    from fescontrol.sim.sweep import ParamSpec, sweep
    specs = [ParamSpec.parse("trigger.heel.off_fraction=0.01:0.05:0.005")]
    result = sweep(expand_recordings(["/data/gaitpdb"]), load_profile("configs/default.yaml"), specs,
                   cv_by="subject", folds=5)
    result.best.values, result.best.figures["swing_recall"], result.cv["held_out"]

* Points: the full grid of the ``ParamSpec`` values, or ``samples`` points drawn by Latin
  hypercube (``sampler="lhs"``) or uniformly at random (``"random"``) inside each range, with a
  fixed ``seed`` (integer fields are rounded). Every point is validated by the profile model
  first; an invalid point is reported with the model's reasons and not run.
* Tasks: one recording foot × a block of points, so a recording is loaded once per block and
  each worker keeps the recordings it has seen (see :func:`fescontrol.sim.evaluate.load_cached`).
  Results are pooled per point in recording order, so figures do not depend on the number
  of workers or the completion order.
* Figures per point are those of :func:`fescontrol.sim.scoring.pooled` over all feet. The objective is
  one of :data:`OBJECTIVES` (higher is better; ``false_onsets_per_min`` is minimised), with an
  optional ceiling on false onsets per minute.
* ``cv_by="subject"``: subjects are split into ``folds`` folds (sorted subjects dealt round
  robin after a seeded shuffle). For each fold the best point on the other folds is chosen and
  scored on the held-out fold; the held-out figures pooled over all folds are THE reported
  score (``result.cv["held_out"]``). ``result.best`` is the best point on all data: the
  profile ``--out`` writes.
"""
from __future__ import annotations

import itertools
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fescontrol.core.profile import Profile, ProfileError, _field_info, profile_from_dict
from .evaluate import RecordingItem
from .recording import QUIET_KINDS
from .scoring import DetectionReport, pooled_statistics_of_values

#: objective name -> (figure, sign): the objective value is sign × figure (higher is better).
OBJECTIVES = {"f1": ("swing_f1", 1.0), "recall": ("swing_recall", 1.0),
              "precision": ("swing_precision", 1.0), "timely_recall": ("timely_recall", 1.0),
              "false_onsets_per_min": ("false_onsets_per_min", -1.0)}
SAMPLERS = ("lhs", "random")
#: Additive counts kept per point and fold (enough for every objective and held-out figure).
COUNT_KEYS = ("swings_reference", "swings_detected", "false_onsets", "scored_duration_s", "timely",
              "quiet_onsets", "bursts", "recordings")
_INT_COUNT_KEYS = tuple(k for k in COUNT_KEYS if k != "scored_duration_s")
#: :attr:`FootBlock.counts` columns: the integer counts of :data:`COUNT_KEYS`, then the quiet
#: onsets per kind (what the pooled ``quiet_onsets`` adds up)
COUNT_COLUMNS = _INT_COUNT_KEYS + tuple(f"quiet_{k}" for k in QUIET_KINDS)


class SweepError(ValueError):
    """A --param, --objective or --cv-by setting is not usable; the message says why."""


# ------------------------------------------------------------------------ parameters
@dataclass(frozen=True)
class ParamSpec:
    """One swept profile field: ``path`` (dotted, e.g. ``trigger.heel.off_fraction``) and its
    values (a grid) or range (``lo``, ``hi``) for sampling; ``integer`` for int fields."""

    path: str
    values: tuple
    lo: float
    hi: float
    integer: bool = False

    @classmethod
    def parse(cls, text: str) -> "ParamSpec":
        """``PATH=START:STOP:STEP`` (inclusive of STOP), ``PATH=START:STOP`` (sampling range, or
        5 grid values), or ``PATH=V1,V2,...``. The path must name a numeric profile field."""
        path, sep, spec = text.partition("=")
        path = path.strip()
        if not sep or not spec.strip():
            raise SweepError(f"--param {text!r}: expected PATH=START:STOP:STEP or PATH=V1,V2,…")
        info = _field_info(Profile, tuple(path.split(".")))
        if info is None:
            raise SweepError(f"--param {text!r}: {path!r} is not a profile field "
                             f"(e.g. trigger.heel.off_fraction, envelope.extension_ms)")
        ann = info.annotation
        if ann not in (int, float):
            raise SweepError(f"--param {text!r}: {path} is not a number field ({getattr(ann, '__name__', ann)})")
        integer = ann is int
        try:
            if ":" in spec:
                parts = [float(p) for p in spec.split(":")]
                if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] <= 0) or parts[1] < parts[0]:
                    raise ValueError
                lo, hi = parts[0], parts[1]
                step = parts[2] if len(parts) == 3 else (hi - lo) / 4 or 1.0
                n = int(math.floor((hi - lo) / step + 1e-9)) + 1
                values = [lo + k * step for k in range(n)]
            else:
                values = [float(p) for p in spec.split(",")]
                lo, hi = min(values), max(values)
        except ValueError:
            raise SweepError(f"--param {text!r}: values must be numbers START:STOP[:STEP] with STOP >= START "
                             "and STEP > 0, or a comma list") from None
        values = [round(v, 12) for v in values]
        if integer:
            if any(abs(v - round(v)) > 1e-9 for v in values):
                raise SweepError(f"--param {text!r}: {path} takes whole numbers")
            values = [int(round(v)) for v in values]
        return cls(path, tuple(dict.fromkeys(values)), lo, hi, integer)


def grid_points(specs: Sequence[ParamSpec]) -> list[dict]:
    """Every combination of the specs' values (the last spec varies fastest)."""
    return [dict(zip((s.path for s in specs), combo)) for combo in itertools.product(*(s.values for s in specs))]


def sample_points(specs: Sequence[ParamSpec], n: int, sampler: str = "lhs", seed: int = 0) -> list[dict]:
    """``n`` points in the specs' ranges: Latin hypercube (each range cut in ``n`` strata,
    one point per stratum, strata shuffled independently per parameter) or uniform random."""
    if sampler not in SAMPLERS:
        raise SweepError(f"sampler {sampler!r}; allowed: {', '.join(SAMPLERS)}")
    if n < 1:
        raise SweepError(f"--samples must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    cols = []
    for s in specs:
        if sampler == "lhs":
            u = (rng.permutation(n) + rng.random(n)) / n
        else:
            u = rng.random(n)
        v = s.lo + u * (s.hi - s.lo)
        cols.append([int(round(x)) for x in v] if s.integer else [round(float(x), 12) for x in v])
    return [dict(zip((s.path for s in specs), row)) for row in zip(*cols)]


def _set(data: dict, path: str, value: Any) -> None:
    keys = path.split(".")
    node = data
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value


def point_profile(base: Profile, values: dict) -> Profile:
    """``base`` with the dotted fields set; raises :class:`ProfileError` (the model's reasons)."""
    data = base.model_dump(mode="json")
    for path, value in values.items():
        _set(data, path, value)
    return profile_from_dict(data, "point " + ", ".join(f"{k}={v}" for k, v in values.items()))


# ------------------------------------------------------------------------ worker side
@dataclass
class FootBlock:
    """One foot × a block of points, compact (what :func:`sweep_task` returns, instead of a
    report per point: a few arrays are a few pickle frames). Per point ``j``: ``counts[j]``
    the additive integer counts (:data:`COUNT_COLUMNS`), ``scored_s[j]`` the scored duration
    (s), and its per-swing values ``onset_errors_ms``, ``after_heel_strike_ms``, ``coverage``
    (float64, all points joined) in ``[offsets[j], offsets[j + 1])`` of each, as
    :func:`fescontrol.sim.scoring.pooled_statistics` joins a report's; ``errors[j]`` None when
    the point was scored, else why not (e.g. the profile's trigger needs a missing channel)."""

    counts: np.ndarray              # (points, len(COUNT_COLUMNS)) int64
    scored_s: np.ndarray            # (points,) float64
    onset_errors_ms: np.ndarray
    after_heel_strike_ms: np.ndarray
    coverage: np.ndarray
    offsets: np.ndarray             # (3, points + 1) int64: onset errors, after heel strike, coverage
    errors: list

    def values(self, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Point ``j``'s onset errors, stimulation after heel strike and coverage."""
        o = self.offsets
        return (self.onset_errors_ms[o[0, j]:o[0, j + 1]], self.after_heel_strike_ms[o[1, j]:o[1, j + 1]],
                self.coverage[o[2, j]:o[2, j + 1]])


def sweep_task(source: str, side: str, profiles: Sequence[Profile], implementation: str = "auto") -> dict:
    """One task: replay one foot with each profile of a block and score it (runs on a worker).
    Returns ``{"subject", "kernel", "block": FootBlock | None, "error", "cpu_seconds"}``."""
    from .evaluate import load_cached, prepare_worker
    prepare_worker()
    from .replay import check_channels, recording_stream, replay
    from .scoring import prepare_scoring, score
    from .sources.csv_recording import subject_of
    c0 = time.thread_time()
    try:
        rec = load_cached(source, side)
    except (ValueError, OSError) as err:
        return {"subject": None, "kernel": None, "block": None, "error": str(err), "cpu_seconds": 0.0}
    stream = recording_stream(rec)[0].tobytes()
    setup = prepare_scoring(rec)       # the same swings and exclusions for every point
    kernel = None
    n = len(profiles)
    counts = np.zeros((n, len(COUNT_COLUMNS)), np.int64)
    scored_s = np.zeros(n)
    parts: tuple[list, list, list] = ([], [], [])
    lengths = np.zeros((3, n + 1), np.int64)
    errors: list = [None] * n
    for j, prof in enumerate(profiles):
        try:
            check_channels(rec, prof)
        except ProfileError as err:
            errors[j] = str(err)
            continue
        # only the bursts are scored: no trace, no event log (same bursts and faults)
        result = replay(rec, prof, implementation=implementation, stream=stream, trace="none", events=False)
        kernel = result.implementation
        rep = score(rec, result.bursts_s, faults=[f.text for f in result.faults], setup=setup)
        c = counts_of([rep])
        counts[j] = [c[k] for k in _INT_COUNT_KEYS] + [rep.quiet_onsets.get(k, 0) for k in QUIET_KINDS]
        scored_s[j] = c["scored_duration_s"]
        for part, values in zip(parts, (rep.onset_errors_ms_all, rep.after_heel_strike_ms_all, rep.coverage_all)):
            part.append(np.asarray(values, float))
        lengths[:, j + 1] = [len(rep.onset_errors_ms_all), len(rep.after_heel_strike_ms_all), len(rep.coverage_all)]
    joined = [np.concatenate(part) if part else np.zeros(0) for part in parts]
    block = FootBlock(counts, scored_s, *joined, np.cumsum(lengths, axis=1), errors)
    return {"subject": subject_of(rec), "kernel": kernel, "block": block, "error": None,
            "cpu_seconds": time.thread_time() - c0}


# ------------------------------------------------------------------------ figures
def counts_of(reports: Sequence[DetectionReport], rules=None) -> dict:
    """Additive counts of a set of reports (see :data:`COUNT_KEYS`)."""
    from .scoring import ScoringRules
    lo, hi = (rules or ScoringRules()).in_window_ms
    c = dict.fromkeys(COUNT_KEYS, 0)
    c["scored_duration_s"] = 0.0
    for r in reports:
        c["swings_reference"] += r.swings_reference
        c["swings_detected"] += r.swings_detected
        c["false_onsets"] += r.false_onsets
        c["scored_duration_s"] += r.scored_duration_s
        c["quiet_onsets"] += r.quiet_onsets.get("total", 0)
        c["bursts"] += r.bursts
        c["recordings"] += r.recordings
        err = np.asarray(r.onset_errors_ms_all, float)
        c["timely"] += int(np.count_nonzero((err >= lo) & (err <= hi)))
    return c


def add_counts(a: dict, b: dict) -> dict:
    return {k: a.get(k, 0) + b.get(k, 0) for k in COUNT_KEYS}


def figures_from_counts(c: dict) -> dict:
    """Rates from additive counts (NaN where undefined), including swing F1 and the
    timely recall (matched within the timely window / reference swings)."""
    ref, det, false = c["swings_reference"], c["swings_detected"], c["false_onsets"]
    recall = det / ref if ref else math.nan
    precision = det / (det + false) if det + false else math.nan
    f1 = (2 * recall * precision / (recall + precision)
          if ref and det + false and recall + precision > 0 else (0.0 if ref else math.nan))
    return {**c, "swing_recall": recall, "swing_precision": precision, "swing_f1": f1,
            "false_onsets_per_min": false / (c["scored_duration_s"] / 60) if c["scored_duration_s"] > 0 else math.nan,
            "timely_recall": c["timely"] / ref if ref else math.nan}


def objective_value(fig: dict, objective: str, max_false_per_min: float | None = None) -> float:
    """Higher is better; -inf when undefined or over the false-onset ceiling."""
    key, sign = OBJECTIVES[objective]
    v = fig.get(key, math.nan)
    if v is None or math.isnan(v):
        return -math.inf
    if max_false_per_min is not None:
        fpm = fig.get("false_onsets_per_min", math.nan)
        if not math.isnan(fpm) and fpm > max_false_per_min:
            return -math.inf
    return sign * v


# ------------------------------------------------------------------------ results
@dataclass
class PointResult:
    index: int
    values: dict
    profile: Profile | None
    invalid: list | None = None            # the model's reasons when the point was refused
    figures: dict = field(default_factory=dict)      # pooled over all feet (sim.scoring.pooled keys)
    fold_counts: list = field(default_factory=list)  # additive counts per CV fold
    objective: float = -math.inf
    errors: list = field(default_factory=list)       # per-foot problems (e.g. channel mismatch)


@dataclass
class SweepResult:
    points: list                 # PointResult, in point order
    objective: str
    max_false_per_min: float | None
    cv: dict | None
    feet: int
    subjects: list
    elapsed_s: float
    engine: dict
    load_errors: list

    @property
    def valid(self) -> list[PointResult]:
        return [p for p in self.points if p.invalid is None and p.figures]

    @property
    def best(self) -> PointResult | None:
        """The best valid point on all data (ties: the earlier point)."""
        best = None
        for p in self.valid:
            if best is None or p.objective > best.objective:
                best = p
        return best

    def pareto(self) -> list[int]:
        """Indices of the points no other point beats on both recall (higher) and false onsets
        per minute (lower)."""
        pts = [(p.index, p.figures.get("swing_recall", math.nan), p.figures.get("false_onsets_per_min", math.nan))
               for p in self.valid]
        pts = [(i, r, f) for i, r, f in pts if not (math.isnan(r) or math.isnan(f))]
        front = []
        for i, r, f in pts:
            if not any((r2 >= r and f2 <= f) and (r2 > r or f2 < f) for _, r2, f2 in pts):
                front.append(i)
        return front

    def to_json(self) -> dict:
        best = self.best
        front = set(self.pareto())
        return {
            "objective": self.objective, "max_false_onsets_per_min": self.max_false_per_min,
            "feet": self.feet, "subjects": len(self.subjects),
            "points": [{"index": p.index, "values": p.values, "valid": p.invalid is None,
                        "invalid_reasons": p.invalid, "objective": _num(p.objective),
                        "pareto": p.index in front, "errors": p.errors[:5],
                        "figures": {k: _num(v) for k, v in p.figures.items()}} for p in self.points],
            "best": None if best is None else {"index": best.index, "values": best.values,
                                               "objective": _num(best.objective)},
            "cv": self.cv, "load_errors": self.load_errors,
            "engine": {**self.engine, "elapsed_s": round(self.elapsed_s, 3),
                       "replays": self.feet * len(self.valid),
                       "replays_per_s": round(self.feet * len(self.valid) / self.elapsed_s, 1)
                       if self.elapsed_s else None}}


def _num(v):
    if isinstance(v, dict):
        return {k: _num(x) for k, x in v.items()}
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _summary_figures(counts: dict, values: Sequence[tuple], quiet: dict) -> dict:
    """A point's figures: rates from the additive counts, statistics as :func:`pooled` of the
    feet's reports computes them (:func:`fescontrol.sim.scoring.pooled_statistics_of_values`
    of the feet's per-swing values in recording order)."""
    fig = figures_from_counts(counts)
    fig.update(pooled_statistics_of_values(*(np.concatenate([v[k] for v in values]) for k in range(3)), quiet))
    return fig


def assign_folds(subjects: Sequence[str], folds: int, seed: int = 0) -> dict[str, int]:
    """Subject -> fold: sorted unique subjects, shuffled with ``seed``, dealt round robin."""
    uniq = sorted(set(subjects))
    if folds < 2:
        raise SweepError(f"--folds must be >= 2, got {folds}")
    if len(uniq) < folds:
        raise SweepError(f"--cv-by subject with {folds} folds needs at least {folds} subjects; "
                         f"the recordings have {len(uniq)}")
    random.Random(seed).shuffle(uniq)
    return {s: k % folds for k, s in enumerate(uniq)}


def cross_validate(points: Sequence[PointResult], folds: int, objective: str,
                   max_false_per_min: float | None) -> dict:
    """Per fold: the best point on the other folds, scored on the held-out fold; the
    held-out counts of all folds pooled give the reported figures."""
    valid = [p for p in points if p.invalid is None and p.fold_counts]
    rows, held = [], dict.fromkeys(COUNT_KEYS, 0)
    for k in range(folds):
        best, best_v = None, -math.inf
        for p in valid:
            train = dict.fromkeys(COUNT_KEYS, 0)
            for j, c in enumerate(p.fold_counts):
                if j != k:
                    train = add_counts(train, c)
            v = objective_value(figures_from_counts(train), objective, max_false_per_min)
            if best is None or v > best_v:
                best, best_v = p, v
        if best is None:
            continue
        test = figures_from_counts(best.fold_counts[k])
        held = add_counts(held, best.fold_counts[k])
        rows.append({"fold": k, "chosen_index": best.index, "chosen_values": best.values,
                     "train_objective": _num(best_v),
                     "test_objective": _num(objective_value(test, objective, None)),
                     "test": {key: _num(test[key]) for key in ("swings_reference", "swing_recall", "swing_precision",
                                                                "false_onsets", "false_onsets_per_min", "swing_f1")}})
    fig = figures_from_counts(held)
    return {"by": "subject", "folds": folds, "per_fold": rows,
            "held_out": {k: _num(v) for k, v in fig.items()},
            "held_out_objective": _num(objective_value(fig, objective, None))}


def sweep(items: Sequence[RecordingItem], base: Profile, specs: Sequence[ParamSpec], *,
          samples: int | None = None, sampler: str = "lhs", seed: int = 0, objective: str = "f1",
          max_false_per_min: float | None = None, cv_by: str | None = None, folds: int = 5,
          scheduler: str | None = None, workers: int | None = None, block: int | None = None,
          implementation: str = "auto", progress: bool | None = None, client=None,
          points: Sequence[dict] | None = None) -> SweepResult:
    """Run the sweep (module doc). ``points`` overrides the grid/sampling with explicit
    ``{path: value}`` dicts. Raises :class:`SweepError` for unusable settings."""
    from .engine import dask_client, describe, run_tasks
    if objective not in OBJECTIVES:
        raise SweepError(f"--objective {objective!r}; allowed: {', '.join(OBJECTIVES)}")
    if cv_by not in (None, "subject"):
        raise SweepError(f"--cv-by {cv_by!r}; allowed: subject")
    if points is None:
        if not specs:
            raise SweepError("give at least one --param PATH=START:STOP:STEP")
        points = sample_points(specs, samples, sampler, seed) if samples else grid_points(specs)
    results: list[PointResult] = []
    for i, values in enumerate(points):
        try:
            results.append(PointResult(i, dict(values), point_profile(base, values)))
        except ProfileError as err:
            results.append(PointResult(i, dict(values), None, invalid=list(err.problems)))
    runnable = [p for p in results if p.invalid is None]
    items = list(items)
    size = block or max(1, min(64, math.ceil(len(runnable) / 4) if runnable else 1))
    blocks = [runnable[a:a + size] for a in range(0, len(runnable), size)]
    n_items = len(items)
    subjects: list = [it.subject for it in items]
    kernels: set = set()
    cpu = [0.0]
    load_errors: dict = {}
    per_block_reports: dict[int, list] = {}
    remaining = {b: n_items for b in range(len(blocks))}

    def finish_block(b: int) -> None:
        """Pool block ``b``'s points over the feet, in recording order: the counts added up
        foot by foot (so every float sum is the one a loop over the reports gives, bit for bit),
        per fold too, the per-swing values joined."""
        per_item = per_block_reports.pop(b)
        pts = blocks[b]
        n_pts = len(pts)
        total = np.zeros((n_pts, len(COUNT_COLUMNS)), np.int64)
        total_s = np.zeros(n_pts)
        seen = np.zeros(n_pts, bool)
        n_folds = folds if fold_of is not None else 0
        fold_total = np.zeros((n_folds, n_pts, len(COUNT_COLUMNS)), np.int64)
        fold_s = np.zeros((n_folds, n_pts))
        fold_seen = np.zeros((n_folds, n_pts), bool)
        scored_blocks = []
        for idx in range(n_items):
            out = per_item.get(idx)
            if out is None or out["error"]:
                continue
            fb = out["block"]
            ok = np.array([e is None for e in fb.errors], bool)
            for j in np.flatnonzero(~ok):
                if len(pts[j].errors) < 20:
                    pts[j].errors.append(fb.errors[j])
            total[ok] += fb.counts[ok]
            total_s[ok] += fb.scored_s[ok]
            seen |= ok
            if n_folds:
                k = fold_of[subjects[idx]]
                fold_total[k][ok] += fb.counts[ok]
                fold_s[k][ok] += fb.scored_s[ok]
                fold_seen[k] |= ok
            scored_blocks.append(fb)
        col = {name: c for c, name in enumerate(COUNT_COLUMNS)}

        def counts(row: np.ndarray, dur: float) -> dict:
            return {k: dur if k == "scored_duration_s" else int(row[col[k]]) for k in COUNT_KEYS}

        for j, p in enumerate(pts):
            if not seen[j]:
                continue
            values = [fb.values(j) for fb in scored_blocks if fb.errors[j] is None]
            quiet = {k: int(total[j, col[f"quiet_{k}"]]) for k in QUIET_KINDS}
            p.figures = _summary_figures(counts(total[j], float(total_s[j])), values, quiet)
            p.objective = objective_value(p.figures, objective, max_false_per_min)
            if n_folds:
                # a fold without a foot keeps the int zeros of dict.fromkeys(COUNT_KEYS, 0)
                p.fold_counts = [counts(fold_total[k, j], float(fold_s[k, j])) if fold_seen[k, j]
                                 else dict.fromkeys(COUNT_KEYS, 0) for k in range(n_folds)]

    fold_of: dict | None = None
    # subjects come from the recordings themselves: learn them with the first block (every
    # item is in it), then the folds are fixed before any point is pooled
    first_block_pending = True

    def on_result(i: int, out: dict) -> None:
        nonlocal first_block_pending, fold_of
        b, idx = divmod(i, n_items)
        if out["error"]:
            load_errors[idx] = out["error"]
        if out["kernel"]:
            kernels.add(out["kernel"])
        cpu[0] += out.get("cpu_seconds", 0.0)
        if subjects[idx] is None:
            subjects[idx] = out["subject"] or items[idx].source
        per_block_reports.setdefault(b, {})[idx] = out
        remaining[b] -= 1
        if first_block_pending and remaining[0] == 0:
            first_block_pending = False
            if cv_by:
                fold_of = assign_folds([s for k, s in enumerate(subjects) if k not in load_errors], folds, seed)
        if not first_block_pending:
            for bb in sorted(per_block_reports):
                if remaining[bb] == 0:
                    finish_block(bb)

    t0, c0 = time.perf_counter(), time.process_time()
    in_flight = max(2 * n_items, 8)

    def run(c) -> dict:
        engine = describe(c)
        # each block's profiles go to every worker once, and its tasks name them by key: pickled
        # into every task (one foot x 64 points), they cost ~10 ms of the client's CPU per task
        # (pickled by the client, unpickled and pickled again by the scheduler) and the
        # unpickling on the worker; kept until the run ends
        shared = [c.scatter([[p.profile for p in blk]], broadcast=True, hash=False)[0] for blk in blocks]
        tasks = [(it.source, it.side, shared[b], implementation) for b in range(len(blocks)) for it in items]
        run_tasks(c, sweep_task, tasks, desc="sweep", progress=progress, on_result=on_result,
                  max_in_flight=in_flight, keep=False)
        del shared
        return {**engine, "tasks": len(tasks)}

    if client is None:
        with dask_client(scheduler, workers) as c:
            engine = run(c)
    else:
        engine = run(client)
    elapsed = time.perf_counter() - t0
    # client_cpu_s: this process's CPU while the tasks ran (pooling, results, and a
    # LocalCluster's scheduler): on a machine of few cores it is taken from the workers
    engine = {**engine, "kernels": sorted(kernels), "points_per_task": size,
              "worker_cpu_s": round(cpu[0], 2), "client_cpu_s": round(time.process_time() - c0, 2)}
    cv = cross_validate(results, folds, objective, max_false_per_min) if cv_by and fold_of is not None else None
    ok_feet = n_items - len(load_errors)
    return SweepResult(results, objective, max_false_per_min, cv, ok_feet,
                       sorted({s for k, s in enumerate(subjects) if k not in load_errors and s}),
                       elapsed, engine,
                       [{"recording": items[k].source, "side": items[k].side, "error": e}
                        for k, e in sorted(load_errors.items())])


# ------------------------------------------------------------------------ output
def format_sweep(result: SweepResult, limit: int = 30) -> str:
    """Table of the points sorted by objective (best first), invalid points, CV summary."""
    specs = list(result.points[0].values) if result.points else []
    head = " ".join(f"{s.split('.')[-1][:14]:>14}" for s in specs)
    lines = [f"{'#':>4} {head} {'objective':>9} {'recall':>6} {'prec':>6} {'false':>5} {'f/min':>6} "
             f"{'timely':>6} {'err_med':>7} P"]
    front = set(result.pareto())
    order = sorted(result.valid, key=lambda p: (-p.objective, p.index))
    for p in order[:limit]:
        f = p.figures
        vals = " ".join(f"{v:>14g}" for v in p.values.values())
        lines.append(f"{p.index:>4} {vals} {_g(p.objective, 4):>9} {_g(f['swing_recall'], 4):>6} "
                     f"{_g(f['swing_precision'], 4):>6} {f['false_onsets']:>5} {_g(f['false_onsets_per_min'], 3):>6} "
                     f"{_g(f['timely_recall'], 3):>6} {_g(f['onset_error_ms']['median'], 0):>7} "
                     f"{'*' if p.index in front else ''}")
    if len(order) > limit:
        lines.append(f"… {len(order) - limit} more valid points (all in --json)")
    invalid = [p for p in result.points if p.invalid is not None]
    for p in invalid[:10]:
        lines.append(f"invalid point {p.index} {p.values}: {'; '.join(p.invalid)}")
    if len(invalid) > 10:
        lines.append(f"… {len(invalid) - 10} more invalid points")
    for e in result.load_errors:
        lines.append(f"ERROR {e['recording']} ({e['side']}): {e['error']}")
    best = result.best
    if best is not None:
        lines.append(f"\nbest on all data ({result.objective}): point {best.index} {best.values}, "
                     f"objective {_g(best.objective, 4)}")
    if result.cv:
        h = result.cv["held_out"]
        lines.append(f"held-out score ({result.cv['folds']}-fold by subject, {len(result.subjects)} subjects): "
                     f"{result.objective} {_g(result.cv['held_out_objective'], 4)}; recall {_g(h['swing_recall'], 4)}, "
                     f"precision {_g(h['swing_precision'], 4)}, {h['false_onsets']} false onsets "
                     f"({_g(h['false_onsets_per_min'], 3)}/min)")
        for row in result.cv["per_fold"]:
            lines.append(f"  fold {row['fold']}: chose point {row['chosen_index']} {row['chosen_values']} "
                         f"(train {_g(row['train_objective'], 4)}, held-out {_g(row['test_objective'], 4)})")
    return "\n".join(lines)


def _g(x, digits: int) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.{digits}f}"


def pareto_figure(result: SweepResult):
    """Recall vs false onsets per minute, every valid point; the Pareto front joined, the
    best point ringed. Returns a matplotlib Figure (Agg backend); the caller closes it."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    pts = [(p.figures["false_onsets_per_min"], p.figures["swing_recall"], p.index) for p in result.valid]
    pts = [(x, y, i) for x, y, i in pts if not (math.isnan(x) or math.isnan(y))]
    fig, ax = plt.subplots(figsize=(6, 4))
    if pts:
        ax.scatter([x for x, _, _ in pts], [y for _, y, _ in pts], s=12, color="#9aa9bd", label="points")
        front = sorted((x, y) for x, y, i in pts if i in set(result.pareto()))
        ax.plot([x for x, _ in front], [y for _, y in front], "-o", ms=4, color="#c0392b", label="Pareto front")
        best = result.best
        if best is not None:
            ax.scatter([best.figures["false_onsets_per_min"]], [best.figures["swing_recall"]], s=120,
                       facecolors="none", edgecolors="black", label=f"best ({result.objective})")
    ax.set_xlabel("false onsets per minute (pooled)")
    ax.set_ylabel("swing recall (pooled)")
    ax.set_title(f"fes sweep: {len(result.valid)} points × {result.feet} feet", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    return fig


def plot_pareto(result: SweepResult, path) -> str:
    """:func:`pareto_figure` written as a PNG; returns the path."""
    import matplotlib.pyplot as plt
    fig = pareto_figure(result)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return str(path)


def write_sweep_html(result: SweepResult, path, title: str = "fes sweep", base_profile: str = "") -> Path:
    """A self-contained HTML page (no outside links; the plot is an inline PNG): the Pareto
    plot, the best point, the held-out score with the choice per fold (with ``cv_by``), the
    table of every valid point sorted by objective (best first, Pareto points marked),
    invalid points with the profile model's reasons, recordings that could not be loaded.
    Returns the path written (parent folders are created)."""
    from html import escape

    import matplotlib.pyplot as plt

    from .evaluate import _png_base64
    fig = pareto_figure(result)
    image = _png_base64(fig)
    plt.close(fig)
    doc = result.to_json()
    eng = doc["engine"]
    front = set(result.pareto())
    params = list(result.points[0].values) if result.points else []

    def cells(values) -> str:
        return "".join(f"<td>{escape(str(v))}</td>" for v in values)

    def figure_cells(f: dict) -> str:
        err = f.get("onset_error_ms") or {}
        return cells((_g(f.get("swing_recall"), 4), _g(f.get("swing_precision"), 4), f.get("false_onsets", "-"),
                      _g(f.get("false_onsets_per_min"), 3), _g(f.get("timely_recall"), 3),
                      _g(err.get("median"), 0), f.get("swings_reference", "-")))

    fig_head = ("<th>recall</th><th>prec</th><th>false</th><th>f/min</th><th>timely</th><th>err med ms</th>"
                "<th>ref</th>")
    order = sorted(result.valid, key=lambda p: (-p.objective, p.index))
    mark = {True: '<tr class="point pareto">', False: '<tr class="point">'}
    rows = "".join(f"{mark[p.index in front]}<td>{p.index}</td>"
                   f"{cells(p.values[k] for k in params)}<td>{_g(p.objective, 4)}</td>{figure_cells(p.figures)}"
                   f"<td>{'*' if p.index in front else ''}</td></tr>" for p in order)
    param_head = "".join(f"<th>{escape(k)}</th>" for k in params)
    best = result.best
    best_html = "<p>No valid point was scored.</p>" if best is None else (
        f"<p>Best on all data ({escape(result.objective)}): point {best.index}, "
        + ", ".join(f"{escape(k)} = {escape(str(v))}" for k, v in best.values.items())
        + f"; objective {_g(best.objective, 4)}.</p>")
    cv_html = ""
    if result.cv:
        h = result.cv["held_out"]
        folds = "".join(
            f"<tr><td>{r['fold']}</td><td>{r['chosen_index']}</td>"
            f"<td>{escape(', '.join(f'{k}={v}' for k, v in r['chosen_values'].items()))}</td>"
            f"<td>{_g(r['train_objective'], 4)}</td><td>{_g(r['test_objective'], 4)}</td>"
            f"<td>{_g(r['test']['swing_recall'], 4)}</td><td>{r['test']['false_onsets']}</td></tr>"
            for r in result.cv["per_fold"])
        cv_html = (f"<h2>Held-out score ({result.cv['folds']}-fold by subject, {len(result.subjects)} subjects)</h2>"
                   f"<p>The reported score: {escape(result.objective)} {_g(result.cv['held_out_objective'], 4)}; "
                   f"recall {_g(h['swing_recall'], 4)}, precision {_g(h['swing_precision'], 4)}, "
                   f"{h['false_onsets']} false onsets ({_g(h['false_onsets_per_min'], 3)}/min).</p>"
                   "<table><tr><th>fold</th><th>chosen</th><th>values</th><th>train</th><th>held-out</th>"
                   f"<th>recall</th><th>false</th></tr>{folds}</table>")
    invalid = [p for p in result.points if p.invalid is not None]
    invalid_html = "" if not invalid else "<h2>Invalid points (not run)</h2><ul>" + "".join(
        f"<li>{p.index} {escape(str(p.values))}: {escape('; '.join(p.invalid))}</li>" for p in invalid) + "</ul>"
    errors_html = "" if not result.load_errors else "<h2>Recordings not loaded</h2><ul>" + "".join(
        f"<li>{escape(e['recording'])} ({escape(e['side'])}): {escape(e['error'])}</li>"
        for e in result.load_errors) + "</ul>"
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:80em}}table{{border-collapse:collapse}}
td,th{{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}}tr.pareto td{{background:#fdecea}}
.note{{color:#555}}</style></head><body>
<h1>{escape(title)}</h1>
<p class="note">fescontrol — NOT a cleared medical device. Base profile: {escape(base_profile or '-')};
objective {escape(result.objective)}{'' if result.max_false_per_min is None else
                                     f' with at most {result.max_false_per_min:g} false onsets/min'};
{len(result.points)} points ({len(result.valid)} valid) × {result.feet} feet of {len(result.subjects)} subjects;
{eng.get('replays')} replays in {eng.get('elapsed_s')} s on {eng.get('workers')} workers
({escape(str(eng.get('scheduler')))}); kernel {escape(', '.join(eng.get('kernels', [])))}.
Figures are pooled over all feet (docs/scoring.md).</p>
{best_html}
<img alt="recall vs false onsets per minute, Pareto front" src="data:image/png;base64,{image}">
{cv_html}
<h2>Points (best first; * = on the Pareto front of recall vs false onsets/min)</h2>
<table><tr><th>#</th>{param_head}<th>objective</th>{fig_head}<th>P</th></tr>{rows}</table>
{invalid_html}{errors_html}
</body></html>
"""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path
