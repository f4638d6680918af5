"""Score delivered stimulation bursts against a recording's reference swings.

Rules (full text and rationale: docs/scoring.md):

* A burst is ``(onset_s, offset_s)`` of delivered stimulation (> 0 mA), s from sample 0.
* Bursts are taken in onset order; a burst MATCHES the earliest not yet matched
  reference swing whose window ``[toe_off - 0.6 s, heel_strike)`` holds its onset
  (one-to-one, greedy in time).
* Excluded swings (not scored): partial swings cut by the file edges, swings outside the
  recording, swings whose toe-off comes within the match window (0.6 s) of the file's start
  (the stance before them is not in the file), swings with a run of invalid (dropped) samples
  of >= 0.05 s in ``[toe_off - 0.3 s, heel_strike]``. A burst matched to one, or an unmatched
  burst whose onset is in an excluded swing's window or in ``rec.unscored_intervals_s``, is IGNORED;
  so is an unmatched burst whose onset is within the match window (0.6 s) of the file's end
  and outside the quiet intervals (the toe-off it would match may come after the end).
* Every other unmatched burst is a FALSE ONSET; false onsets whose onset lies in a quiet
  interval are also counted in ``quiet_onsets`` by kind (a subset, not an addition).
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from .recording import QUIET_KINDS, Recording, merge_intervals

Burst = tuple[float, float]


@dataclass(frozen=True)
class ScoringRules:
    """The tunable numbers of the rules (defaults = docs/scoring.md)."""

    onset_window_before_s: float = 0.6       # a match may start this long before toe-off
    in_window_ms: tuple[float, float] = (-300.0, 20.0)   # "timely" onset error range
    max_invalid_run_s: float = 0.05          # invalid run this long excludes a swing
    invalid_check_before_s: float = 0.3      # ... looked for from toe_off - this


@dataclass(frozen=True)
class DetectionReport:
    """Result of :func:`score` (one recording) or :func:`pooled` (several).

    Rates are NaN when undefined (no reference swings, no scored bursts). Times in ms.
    ``report["key"]`` works like a dict; :meth:`to_dict` gives a plain dict.
    """

    name: str
    swings_reference: int
    swings_detected: int
    swing_recall: float
    swing_precision: float
    false_onsets: int
    false_onsets_per_min: float
    onset_error_ms: dict
    onset_in_window_fraction: float
    swing_coverage_median: float
    stim_after_heel_strike_ms: dict
    quiet_onsets: dict
    faults: list
    bursts: int = 0
    ignored_onsets: int = 0
    swings_excluded: int = 0
    scored_duration_s: float = 0.0
    recordings: int = 1
    onset_errors_ms_all: tuple = field(default=(), repr=False)
    coverage_all: tuple = field(default=(), repr=False)
    after_heel_strike_ms_all: tuple = field(default=(), repr=False)
    false_onsets_s: tuple = field(default=(), repr=False)

    def __getitem__(self, key: str) -> Any:
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def keys(self) -> list[str]:
        return list(self.__dataclass_fields__)

    def to_dict(self) -> dict:
        """The fields as a plain dict (what ``dataclasses.asdict`` gives: dicts and lists
        copied; the per-swing tuples, immutable, shared instead of deep-copied value by value,
        which was a tenth of ``fes evaluate``'s CPU per foot)."""
        return {k: _plain(getattr(self, k)) for k in self.__dataclass_fields__}


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


#: above this many values numpy's partition beats a Python sort; below it numpy's per-call
#: overhead (~25 µs per percentile) was a tenth of a sweep replay. Both give the same bits.
_NUMPY_FROM = 1000


def _exact_in_python(values: Sequence[float]) -> list[float] | None:
    """``values`` sorted, when :func:`_percentile` and :func:`_median` may compute numpy's
    figures themselves: fewer than ``_NUMPY_FROM`` finite values with no negative zero (the
    order of equal zeros, and so the sign of a zero result, is numpy's own); else None."""
    if len(values) >= _NUMPY_FROM or not all(map(math.isfinite, values)):
        return None
    s = sorted(values)
    lo = bisect.bisect_left(s, 0.0)
    if any(math.copysign(1.0, z) < 0 for z in s[lo:bisect.bisect_right(s, 0.0)]):
        return None
    return s


def _percentile(s: list[float], q: float) -> float:
    """``numpy.percentile(s, q)`` (method "linear") of a list from :func:`_exact_in_python`,
    step by step as numpy's ``_quantile`` and ``_lerp`` compute it (same floating-point
    operations in the same order; tests/test_scoring_stats.py compares the bits)."""
    n = len(s)
    virtual = (n - 1) * (q / 100)
    prev = math.floor(virtual)
    nxt = prev + 1
    if virtual >= n - 1:
        prev = nxt = -1
    a, b = s[prev], s[nxt]
    t = virtual - prev
    diff = b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t


def _median(s: list[float]) -> float:
    """``numpy.median`` of a list from :func:`_exact_in_python` (the mean of the middle one or two)."""
    h = len(s) // 2
    return s[h] / 1 if len(s) % 2 else (s[h - 1] + s[h]) / 2


def _stats(values: Sequence[float], absolute_p95: bool = True) -> dict:
    if len(values) == 0:
        return {"median": math.nan, "iqr": math.nan, "p95": math.nan, "n": 0}
    s = _exact_in_python(values)
    if s is None:
        v = np.asarray(values, float)
        q25, q50, q75 = np.percentile(v, [25, 50, 75])
        p95 = np.percentile(np.abs(v) if absolute_p95 else v, 95)
    else:
        q25, q50, q75 = _percentile(s, 25), _percentile(s, 50), _percentile(s, 75)
        p95 = _percentile(sorted(map(abs, s)) if absolute_p95 else s, 95)
    return {"median": float(q50), "iqr": float(q75 - q25), "p95": float(p95), "n": len(values)}


def _median_of(values: Sequence[float]) -> float:
    s = _exact_in_python(values)
    return float(np.median(values)) if s is None else float(_median(s))


def _in_any(t: float, intervals: Iterable[tuple]) -> bool:
    return any(iv[0] <= t < iv[1] for iv in intervals)


def _covered(a: float, b: float, union: list[tuple[float, float]],
             starts: list[float] | None = None, ends: list[float] | None = None) -> float:
    """Fraction of [a, b) inside ``union`` (sorted, disjoint). With ``starts``/``ends`` (the
    union's bounds) only the intervals that can overlap are visited: the others add exactly
    0.0, so the sum, and the result, are the same."""
    if b <= a:
        return 0.0
    if starts is not None and ends is not None:
        union = union[bisect.bisect_right(ends, a):bisect.bisect_left(starts, b)]
    return sum(max(0.0, min(b, q) - max(a, p)) for p, q in union) / (b - a)


def _swings_with_partials(rec: Recording, rules: ScoringRules) -> list[tuple[float, float, bool]]:
    """(toe_off, heel_strike, excluded) for complete and partial swings, in time order.
    Excluded by the file's edges: a swing outside the recording, a partial one, and one whose
    toe-off comes within the match window of the start (the stance before it, where a heel-off
    or push-off would be seen, is not in the file, as a swing cut by the end)."""
    dur, start_s = rec.duration_s, max(0.0, rules.onset_window_before_s)
    out = [(to, hs, to < start_s or hs > dur) for to, hs in rec.reference_swings()]
    paired_to = {to for to, _, _ in out}
    paired_hs = {hs for _, hs, _ in out}
    to_all = [float(t) for t in rec.toe_off_s]
    for i, to in enumerate(to_all):
        if to not in paired_to:   # no heel strike: the file ends (or the annotation stops)
            nxt = to_all[i + 1] if i + 1 < len(to_all) else dur
            out.append((to, max(min(nxt, dur), to), True))
    for hs in rec.heel_strike_s:
        if float(hs) not in paired_hs and (not len(rec.toe_off_s) or hs < rec.toe_off_s[0]):
            out.append((-math.inf, float(hs), True))     # file starts in swing
    return sorted(out, key=lambda s: (s[1], s[0]))


def _invalid_runs(rec: Recording, min_len: int) -> list[tuple[float, float]]:
    bad = ~rec.valid
    d = np.diff(np.concatenate([[0], bad.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    keep = ends - starts >= min_len
    return [(a / rec.rate_hz, b / rec.rate_hz) for a, b in zip(starts[keep], ends[keep])]


def match_onsets(onsets: Sequence[float], windows: Sequence[tuple[float, float]]) -> tuple[dict, list]:
    """One-to-one, greedy in time: each onset (in order) takes the earliest not yet matched
    window ``[lo, hi)`` that holds it. ``windows`` are sorted by ``hi`` (swings by heel strike).
    Returns ({window index: onset index}, [unmatched onset indices]).

    The same result as trying every window for every onset, without doing that: windows
    before ``bisect_right(his, onset)`` end at or before the onset, and none from ``j`` on can
    hold it once the lowest ``lo`` from ``j`` on is above it."""
    his = [hi for _, hi in windows]
    lo_from = [math.inf] * (len(windows) + 1)
    for j in range(len(windows) - 1, -1, -1):
        lo_from[j] = min(windows[j][0], lo_from[j + 1])
    match_of_window: dict[int, int] = {}
    unmatched: list[int] = []
    for k, onset in enumerate(onsets):
        j = bisect.bisect_right(his, onset)
        while lo_from[j] <= onset:
            lo, hi = windows[j]
            if lo <= onset < hi and j not in match_of_window:
                match_of_window[j] = k
                break
            j += 1
        else:
            unmatched.append(k)
    return match_of_window, unmatched


@dataclass(frozen=True)
class ScoringSetup:
    """What :func:`score` needs of one recording under one set of rules that does not depend
    on the bursts: the swings (complete and partial, in time order) with their exclusion and
    match window, and the scored duration. A sweep scores each recording once per point:
    :func:`prepare_scoring` once, then ``score(..., setup=)`` per point."""

    recording: Recording
    rules: ScoringRules
    swings: list               # (toe_off, heel_strike, excluded by the file edges) in time order
    excluded: tuple            # per swing: not scored (edges, invalid samples)
    windows: list              # per swing: the match window [toe_off - before, heel_strike)
    excluded_windows: list     # the windows of the excluded swings, in swing order
    scored_duration_s: float


def prepare_scoring(rec: Recording, rules: ScoringRules = ScoringRules()) -> ScoringSetup:
    """The burst-independent part of :func:`score` for ``rec`` (see :class:`ScoringSetup`)."""
    swings = _swings_with_partials(rec, rules)
    min_run = max(1, int(math.ceil(rules.max_invalid_run_s * rec.rate_hz - 1e-9)))
    invalid = _invalid_runs(rec, min_run)
    excluded = []
    for to, hs, exc in swings:
        lo = to - rules.invalid_check_before_s
        exc = exc or any(p < hs and q > lo for p, q in invalid)
        excluded.append(exc)
    windows = [(to - rules.onset_window_before_s, hs) for to, hs, _ in swings]
    unscored_s = sum(q - p for p, q in merge_intervals(
        [(max(0.0, a), min(rec.duration_s, b)) for a, b in rec.unscored_intervals_s]))
    return ScoringSetup(rec, rules, swings, tuple(excluded), windows,
                        [w for w, exc in zip(windows, excluded) if exc], rec.duration_s - unscored_s)


def score(rec: Recording, bursts: Sequence[Burst], faults: Sequence[Any] = (),
          rules: ScoringRules = ScoringRules(), setup: ScoringSetup | None = None) -> DetectionReport:
    """Match ``bursts`` [(onset_s, offset_s)] to ``rec``'s reference swings (module doc).
    ``setup``: :func:`prepare_scoring` of ``rec`` and ``rules`` (made here when None);
    ValueError for a setup of another recording or other rules."""
    bursts = sorted((float(a), float(b)) for a, b in bursts)
    for a, b in bursts:
        if not (math.isfinite(a) and math.isfinite(b)) or b < a:
            raise ValueError(f"burst ({a}, {b}): onset and offset must be finite, offset >= onset")
    if setup is None:
        setup = prepare_scoring(rec, rules)
    elif setup.recording is not rec or setup.rules != rules:
        raise ValueError("score: the setup was prepared for another recording or other rules")
    swings, excluded, windows = setup.swings, setup.excluded, setup.windows

    match_of_swing, unmatched = match_onsets([a for a, _ in bursts], windows)

    ignored = sum(1 for j in match_of_swing if excluded[j])
    false_times = []
    quiet = {kind: 0 for kind in QUIET_KINDS}
    end_window = rec.duration_s - rules.onset_window_before_s
    for k in unmatched:
        onset = bursts[k][0]
        kind = next((kind for a, b, kind in rec.quiet_intervals_s if a <= onset < b), None)
        if _in_any(onset, rec.unscored_intervals_s) or any(
                lo <= onset < hi for lo, hi in setup.excluded_windows) or (
                onset >= end_window and kind is None):
            # the last rule: the toe-off this onset would match may lie after the file's end
            ignored += 1
            continue
        false_times.append(onset)
        if kind is not None:
            quiet[kind] += 1
    _with_total(quiet)

    union = merge_intervals(bursts)
    starts, ends = [p for p, _ in union], [q for _, q in union]
    errors, after, coverage = [], [], []
    detected = 0
    scored = [j for j in range(len(swings)) if not excluded[j]]
    for j in scored:
        to, hs, _ = swings[j]
        coverage.append(_covered(to, hs, union, starts, ends))
        if j in match_of_swing:
            detected += 1
            onset, offset = bursts[match_of_swing[j]]
            errors.append(1000.0 * (onset - to))
            after.append(1000.0 * max(0.0, offset - hs))
    n_ref = len(scored)
    return _report(
        name=f"{rec.name} {rec.side}", n_ref=n_ref, detected=detected,
        false_times=false_times, quiet=quiet, errors=errors, after=after, coverage=coverage,
        faults=list(faults), bursts=len(bursts), ignored=ignored,
        excluded=sum(excluded), scored_s=setup.scored_duration_s, rules=rules, recordings=1)


def _statistics(errors, after, coverage, rules: ScoringRules) -> dict:
    """The statistics of a report from its per-swing values (lists, or the float64 arrays of
    :func:`_joined`: the same bits): ``onset_error_ms``, ``onset_in_window_fraction`` (the exact
    count over n, correctly rounded, as numpy's mean of booleans), ``swing_coverage_median``,
    ``stim_after_heel_strike_ms``. The one place :func:`score`, :func:`pooled` and
    :func:`pooled_statistics` compute them."""
    lo, hi = rules.in_window_ms
    n = len(errors)
    if not n:
        in_window = math.nan
    elif isinstance(errors, np.ndarray):
        in_window = int(np.count_nonzero((errors >= lo) & (errors <= hi))) / n
    else:
        in_window = sum(1 for e in errors if lo <= e <= hi) / n
    aft = _stats(after, absolute_p95=False)
    return {"onset_error_ms": _stats(errors), "onset_in_window_fraction": in_window,
            "swing_coverage_median": _median_of(coverage) if len(coverage) else math.nan,
            "stim_after_heel_strike_ms": {"median": aft["median"], "p95": aft["p95"], "n": aft["n"]}}


def _with_total(quiet: dict) -> dict:
    """Quiet onsets per kind (:data:`QUIET_KINDS`) with their ``total`` added."""
    quiet["total"] = sum(quiet.values())
    return quiet


def _pooled_quiet(reports: Sequence[DetectionReport]) -> dict:
    return _with_total({k: sum(r.quiet_onsets.get(k, 0) for r in reports) for k in QUIET_KINDS})


def _report(*, name, n_ref, detected, false_times, quiet, errors, after, coverage, faults,
            bursts, ignored, excluded, scored_s, rules, recordings) -> DetectionReport:
    n_false = len(false_times)
    stats = _statistics(errors, after, coverage, rules)
    return DetectionReport(
        name=name,
        swings_reference=n_ref,
        swings_detected=detected,
        swing_recall=detected / n_ref if n_ref else math.nan,
        swing_precision=detected / (detected + n_false) if detected + n_false else math.nan,
        false_onsets=n_false,
        false_onsets_per_min=n_false / (scored_s / 60.0) if scored_s > 0 else math.nan,
        onset_error_ms=stats["onset_error_ms"],
        onset_in_window_fraction=stats["onset_in_window_fraction"],
        swing_coverage_median=stats["swing_coverage_median"],
        stim_after_heel_strike_ms=stats["stim_after_heel_strike_ms"],
        quiet_onsets=dict(quiet),
        faults=faults,
        bursts=bursts, ignored_onsets=ignored, swings_excluded=excluded,
        scored_duration_s=float(scored_s), recordings=recordings,
        onset_errors_ms_all=tuple(errors), coverage_all=tuple(coverage),
        after_heel_strike_ms_all=tuple(after), false_onsets_s=tuple(false_times))


def pooled(reports: Sequence[DetectionReport], name: str = "pooled",
           rules: ScoringRules = ScoringRules()) -> DetectionReport:
    """Combine reports: counts and durations add up, rates and statistics are recomputed
    from the pooled swings (not averaged per recording)."""
    reports = list(reports)
    if not reports:
        raise ValueError("pooled: no reports to combine")
    return _report(
        name=name, n_ref=sum(r.swings_reference for r in reports),
        detected=sum(r.swings_detected for r in reports),
        false_times=[t for r in reports for t in r.false_onsets_s], quiet=_pooled_quiet(reports),
        errors=[e for r in reports for e in r.onset_errors_ms_all],
        after=[e for r in reports for e in r.after_heel_strike_ms_all],
        coverage=[c for r in reports for c in r.coverage_all],
        faults=[f for r in reports for f in r.faults], bursts=sum(r.bursts for r in reports),
        ignored=sum(r.ignored_onsets for r in reports),
        excluded=sum(r.swings_excluded for r in reports),
        scored_s=sum(r.scored_duration_s for r in reports), rules=rules,
        recordings=sum(r.recordings for r in reports))


def _stats_input(v: np.ndarray):
    """Joined float64 values as :func:`_statistics` takes them: the array from ``_NUMPY_FROM``
    values on (what :func:`_stats` turns a list of that length into), else a list of floats."""
    return v if len(v) >= _NUMPY_FROM else v.tolist()


def _joined(parts: Sequence[Sequence[float]]):
    """Per-report values joined in report order (:func:`_stats_input` of the float64 array)."""
    return _stats_input(np.concatenate([np.asarray(p, float) for p in parts]) if parts else np.zeros(0))


def pooled_statistics_of_values(errors: np.ndarray, after: np.ndarray, coverage: np.ndarray, quiet: dict,
                                rules: ScoringRules = ScoringRules()) -> dict:
    """:func:`pooled_statistics` of reports given by their per-swing values already joined in
    report order (float64 arrays: onset errors ms, stimulation after heel strike ms, coverage)
    and their quiet onsets added up per kind (:data:`QUIET_KINDS`): the same bits (``fes
    sweep`` gets these from its workers instead of a report per foot and point)."""
    return {**_statistics(_stats_input(errors), _stats_input(after), _stats_input(coverage), rules),
            "quiet_onsets": _with_total({k: quiet.get(k, 0) for k in QUIET_KINDS})}


def pooled_statistics(reports: Sequence[DetectionReport], rules: ScoringRules = ScoringRules()) -> dict:
    """``onset_error_ms``, ``onset_in_window_fraction``, ``swing_coverage_median``,
    ``stim_after_heel_strike_ms`` and ``quiet_onsets`` of :func:`pooled` ``(reports)``: the same
    function (:func:`_statistics`) on the reports' per-swing values joined as arrays, instead
    of Python lists of numpy scalars (a sweep pools every point over all feet: ~0.15 s per
    point of 284 feet). Raises ValueError for no reports, as :func:`pooled`."""
    reports = list(reports)
    if not reports:
        raise ValueError("pooled: no reports to combine")
    stats = _statistics(_joined([r.onset_errors_ms_all for r in reports]),
                        _joined([r.after_heel_strike_ms_all for r in reports]),
                        _joined([r.coverage_all for r in reports]), rules)
    return {**stats, "quiet_onsets": _pooled_quiet(reports)}


_COLUMNS = [
    ("recording", 26, lambda r: r.name[:26]),
    ("ref", 5, lambda r: f"{r.swings_reference}"),
    ("det", 5, lambda r: f"{r.swings_detected}"),
    ("recall", 6, lambda r: _f(r.swing_recall, 3)),
    ("prec", 6, lambda r: _f(r.swing_precision, 3)),
    ("false", 5, lambda r: f"{r.false_onsets}"),
    ("f/min", 6, lambda r: _f(r.false_onsets_per_min, 2)),
    ("quiet", 5, lambda r: f"{r.quiet_onsets.get('total', 0)}"),
    ("err_med", 7, lambda r: _f(r.onset_error_ms["median"], 0)),
    ("err_iqr", 7, lambda r: _f(r.onset_error_ms["iqr"], 0)),
    ("|err|95", 7, lambda r: _f(r.onset_error_ms["p95"], 0)),
    ("in_win", 6, lambda r: _f(r.onset_in_window_fraction, 3)),
    ("cover", 5, lambda r: _f(r.swing_coverage_median, 2)),
    ("postHS", 6, lambda r: _f(r.stim_after_heel_strike_ms["median"], 0)),
    ("pHS95", 6, lambda r: _f(r.stim_after_heel_strike_ms["p95"], 0)),
    ("faults", 6, lambda r: f"{len(r.faults)}"),
]


def _f(x: float, digits: int) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def table_legend(rules: ScoringRules | None = None) -> str:
    """What each column of :func:`format_table` means, with its JSON key (``fes sim --json``)."""
    lo, hi = (rules or ScoringRules()).in_window_ms
    rows = [
        ("ref / det", "reference swings (toe-off → heel strike) / swings with a detected onset",
         "swings_reference, swings_detected"),
        ("recall / prec", "det ÷ ref / det ÷ (det + false)", "swing_recall, swing_precision"),
        ("false, f/min", "onsets that match no swing: count, per minute", "false_onsets, false_onsets_per_min"),
        ("quiet", "false onsets while standing or sitting still", "quiet_onsets.total"),
        ("err_med/_iqr", "onset − toe-off, ms: median, interquartile range (negative = before toe-off)",
         "onset_error_ms.median, .iqr"),
        ("|err|95", "95th percentile of |onset − toe-off|, ms", "onset_error_ms.p95"),
        ("in_win", f"fraction of onsets on time ({lo:+.0f}..{hi:+.0f} ms of toe-off)", "onset_in_window_fraction"),
        ("cover", "median fraction of each swing that was stimulated", "swing_coverage_median"),
        ("postHS / pHS95", "stimulation after heel strike, ms: median / 95th percentile",
         "stim_after_heel_strike_ms.median, .p95"),
        ("faults", "faults latched during the replay", "faults"),
    ]
    width = max(len(r[0]) for r in rows)
    lines = ["columns (JSON key in brackets; rules: docs/scoring.md):"]
    lines += [f"  {name:<{width}}  {text} [{key}]" for name, text, key in rows]
    return "\n".join(lines)


def format_table(reports: DetectionReport | Sequence[DetectionReport], pool: bool = True,
                 legend: bool = False) -> str:
    """Fixed-width text table, one row per report (+ a pooled row for several); with
    ``legend``, :func:`table_legend` under it.

    err_* = onset - toe-off in ms (median, IQR, 95th percentile of |error|); in_win =
    fraction of matched onsets within the timely range; cover = median swing coverage;
    postHS = stimulation after heel strike, ms (median, p95).
    """
    rows = [reports] if isinstance(reports, DetectionReport) else list(reports)
    if pool and len(rows) > 1:
        rows = rows + [pooled(rows)]
    head = " ".join(f"{h:<{w}}" if i == 0 else f"{h:>{w}}" for i, (h, w, _) in enumerate(_COLUMNS))
    lines = [head, "-" * len(head)]
    for k, r in enumerate(rows):
        if pool and len(rows) > 1 and k == len(rows) - 1:
            lines.append("-" * len(head))
        lines.append(" ".join(f"{fn(r):<{w}}" if i == 0 else f"{fn(r):>{w}}"
                              for i, (_, w, fn) in enumerate(_COLUMNS)))
    if legend:
        lines += ["", table_legend()]
    return "\n".join(lines)
