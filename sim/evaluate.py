"""Cohort evaluation: score a profile on many recordings, on a Dask cluster (``fes evaluate``).

Over 400 lines: one engine (Dask tasks, per-worker cache, aggregation) and its Python API.

Python API::

    from fescontrol.sim.evaluate import expand_recordings, evaluate
    items = expand_recordings(["walks/", "manifest.csv", "physionet:GaCo01"], side="both")
    result = evaluate(items, profile=None)          # a LocalCluster, one worker per core
    result.pooled["swing_recall"], result.rows[0]["recording"]

Each (recording, foot) is replayed in batch mode through the device's own controller and
scored exactly as ``fes sim`` does: :func:`evaluate_foot` builds the same row as
``fes sim --json`` (:func:`fescontrol.sim.run.sim_report_row`), whatever the number of workers, and
the rows come back in the order of ``items``. With ``profile`` None every recording gets the
bundled default for its channels, as ``fes sim`` without ``--profile``.

RECORDINGS may be files (any supported format), globs, folders (searched recursively for
recordings), short names (``physionet:GaCo01``, ``synthetic:walk``) or a manifest CSV with
header ``path,side,subject`` (paths relative to the manifest; an empty side means ``side``).
"""
from __future__ import annotations

import csv
import glob
import io
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .scoring import DetectionReport, pooled

SIDE_CHOICES = ("left", "right", "both")
MANIFEST_HEADER = ("path", "side", "subject")


class RecordingSetError(ValueError):
    """A RECORDINGS argument names nothing usable (missing file, empty folder, bad manifest)."""


@dataclass(frozen=True)
class RecordingItem:
    """One foot of one recording to evaluate. ``source`` is a path or a short name."""

    source: str
    side: str
    subject: str | None = None


# ------------------------------------------------------------------------ expansion
def _is_manifest(path: Path) -> bool:
    if not path.name.endswith(".csv") or path.name.endswith(".events.csv"):
        return False
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip() and not line.startswith("#"):
                    return [c.strip() for c in line.split(",")][:1] == ["path"]
    except (OSError, UnicodeDecodeError):
        return False
    return False


def _read_manifest(path: Path, side: str) -> list[RecordingItem]:
    lines = [(k, ln) for k, ln in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if ln.strip() and not ln.startswith("#")]
    head = [c.strip() for c in next(csv.reader([lines[0][1]]))]
    if head[0] != "path" or any(c not in MANIFEST_HEADER for c in head):
        raise RecordingSetError(f"{path}, line {lines[0][0]}: a manifest's header is "
                                f"'path,side,subject' (side and subject optional), got {lines[0][1]!r}")
    items = []
    for k, line in lines[1:]:
        row = dict(zip(head, (c.strip() for c in next(csv.reader([line])))))
        src = row.get("path", "")
        if not src:
            raise RecordingSetError(f"{path}, line {k}, column path: empty")
        row_side = row.get("side") or side
        if row_side not in SIDE_CHOICES:
            raise RecordingSetError(f"{path}, line {k}, column side: {row_side!r}; allowed: left, right, both")
        target = src if ":" in src and not Path(src).is_absolute() and not (path.parent / src).exists() \
            else str((path.parent / src) if not Path(src).is_absolute() else Path(src))
        if ":" not in target and not Path(target).exists():
            raise RecordingSetError(f"{path}, line {k}, column path: {target} does not exist")
        items += _feet(target, row_side, row.get("subject") or None)
    return items


def _folder_recordings(folder: Path) -> list[Path]:
    """Recording files under ``folder`` (recursive), in sorted order. A folder's other files
    (events sidecars, READMEs, gaitmap stride lists, IPOL per-foot files) are left out."""
    from .sources import recording_kind
    from .sources.csv_recording import is_csv_recording
    found = []
    for p in sorted(folder.rglob("*")):
        name = p.name[:-3] if p.name.endswith(".gz") else p.name
        if not p.is_file() or name.endswith(".events.csv") or name.startswith("."):
            continue
        if name.endswith(".csv"):
            if is_csv_recording(p) or name.startswith("imu_"):
                found.append(p)
            continue
        if name.endswith(("_lf.txt", "_rf.txt")):
            continue      # an IPOL trial is listed once, by its .json
        if name.endswith(".json"):
            if p.with_name(name[:-5] + "_lf.txt").exists() or p.with_name(name[:-5] + "_lf.txt.gz").exists():
                found.append(p)
            continue
        if name.endswith(".txt"):
            try:
                if recording_kind(p) == "physionet":
                    found.append(p)
            except (ValueError, OSError, UnicodeDecodeError):
                pass
    return found


def _feet(source: str, side: str, subject: str | None) -> list[RecordingItem]:
    """The feet of one recording that ``side`` asks for (a CSV or IPOL per-foot file holds one)."""
    sides = ("left", "right") if side == "both" else (side,)
    name = source[:-3] if source.endswith(".gz") else source
    if name.endswith(".csv") and Path(source).exists() and not Path(name).name.startswith("imu_"):
        from .sources.csv_recording import csv_sides
        try:
            own = csv_sides(source)
        except ValueError:
            own = sides[:1]     # a broken file: evaluate() reports its error once
        if own:                 # the foot the file declares, if asked for
            sides = own if side == "both" else tuple(s for s in sides if s == own[0])
        else:                   # no '# side:' line: the foot asked for (both: left), as fes sim
            sides = ("left",) if side == "both" else sides
        if not sides:
            return []
    elif name.endswith("_lf.txt"):
        sides = tuple(s for s in sides if s == "left")
    elif name.endswith("_rf.txt"):
        sides = tuple(s for s in sides if s == "right")
    return [RecordingItem(source, s, subject) for s in sides]


def expand_recordings(args: Sequence[str], side: str = "both") -> list[RecordingItem]:
    """RECORDINGS arguments -> (recording, foot) items, duplicates removed, order kept
    (folders and globs in sorted order). Raises :class:`RecordingSetError`."""
    if side not in SIDE_CHOICES:
        raise RecordingSetError(f"side {side!r}; allowed: {', '.join(SIDE_CHOICES)}")
    items: list[RecordingItem] = []
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            files = _folder_recordings(path)
            if not files:
                raise RecordingSetError(f"{arg}: no recordings in this folder (looked for generic CSV, "
                                        "gaitpdb .txt, gaitmap imu_*.csv, IPOL trial .json; .gz too)")
            for f in files:
                items += _feet(str(f), side, None)
        elif path.is_file():
            items += _read_manifest(path, side) if _is_manifest(path) else _feet(arg, side, None)
        elif any(ch in arg for ch in "*?["):
            files = sorted(glob.glob(arg, recursive=True))
            if not files:
                raise RecordingSetError(f"{arg}: the pattern matches no file")
            for f in files:    # a pattern such as walks/*.csv also matches the events sidecars
                if Path(f).is_file() and not f.endswith((".events.csv", ".events.csv.gz")):
                    items += _feet(f, side, None)
        elif ":" in arg and not path.exists():
            items += _feet(arg, side, None)      # a short name; the loader checks it
        else:
            raise RecordingSetError(f"{arg}: no such file or folder")
    seen: dict[tuple, RecordingItem] = {}
    for it in items:
        seen.setdefault((it.source, it.side), it)
    return list(seen.values())


# ------------------------------------------------------------------------ worker side
@dataclass
class FootResult:
    """What a worker returns for one foot: the ``fes sim --json`` row and its report, or why
    the foot could not be evaluated (``error``)."""

    source: str
    side: str
    subject: str | None
    row: dict | None = None
    report: DetectionReport | None = None
    error: str | None = None
    skipped: bool = False            # the recording has no such foot (not an error)
    kernel: str | None = None
    seconds: float = 0.0             # wall time on the worker
    cpu_seconds: float = 0.0         # CPU time of the task's thread (independent of machine load)


def load_cached(source: str, side: str):
    """:func:`fescontrol.sim.load.load_any` with its per-process cache (a sweep replays each
    recording once per parameter block)."""
    from .load import load_any
    return load_any(source, side, cache=True)


def evaluate_foot(source: str, side: str, subject: str | None, profile=None,
                  implementation: str = "auto", cache: bool = False) -> FootResult:
    """Load, replay and score one foot exactly as ``fes sim`` does (runs on a worker).

    Expected problems (bad file, no such foot, profile/channel mismatch) come back as
    ``error``/``skipped``; anything else raises (a bug must not pass as a figure)."""
    from fescontrol.core.profile import ProfileError, default_profile_for, load_profile
    from .replay import replay
    from .run import delivered_summary, load_any, sim_report_row
    from .scoring import score
    from .sources.csv_recording import subject_of
    t0, c0 = time.perf_counter(), time.thread_time()
    out = FootResult(source, side, subject)
    try:
        rec = load_cached(source, side) if cache else load_any(source, side)
    except (ValueError, OSError) as err:
        text = str(err)
        out.skipped = "foot" in text and ("holds the" in text or "side=" in text)
        out.error = text
        return out
    out.subject = subject or subject_of(rec)
    try:
        prof = profile if profile is not None else load_profile(default_profile_for(rec.has_heel, rec.has_imu))
        # the row needs the bursts, the event counts and the current (delivered_summary), not
        # the other trace fields nor the event log
        result = replay(rec, prof, implementation=implementation, trace="current", events=False)
    except ProfileError as err:
        out.error = str(err)
        return out
    report = score(rec, result.bursts_s, faults=[f.text for f in result.faults])
    summary = delivered_summary(result) if result.trace else {}
    out.row = sim_report_row(rec, side, prof, report, summary, result.faults)
    out.report = report
    out.kernel = result.implementation
    out.seconds = time.perf_counter() - t0
    out.cpu_seconds = time.thread_time() - c0
    return out


def prepare_worker() -> None:
    """Once per worker process, before its first foot: the device's fault warnings ("fault
    latched: …") would flood the command's terminal, and they are in each foot's figures
    (``faults``) anyway; and the worker's heap (dask, numpy, the project, cached recordings) is
    moved out of the cyclic collector's way, since each full collection walked it all (~6 % of
    a replay's CPU). Idempotent."""
    import gc
    import logging
    logging.getLogger("fescontrol").setLevel(logging.ERROR)
    global _FROZEN
    if not _FROZEN:
        gc.collect()
        gc.freeze()
        _FROZEN = True


_FROZEN = False


def evaluate_batch(items: Sequence[tuple], profile=None, implementation: str = "auto") -> dict:
    """One task: the feet of one or more recording files (each foot loaded on the worker from
    its path, so no recording travels through the scheduler). Returns ``{"feet": [FootResult,
    ...]}``: dask serializes a task result that is a list or tuple element by element (a header
    and a pickle per foot, on the worker, the scheduler and the client); a dict of a list is one
    pickle."""
    prepare_worker()
    return {"feet": [evaluate_foot(src, side, subj, profile, implementation) for src, side, subj in items]}


# ------------------------------------------------------------------------ aggregation
def pooled_row(results: Sequence[FootResult], name: str = "pooled") -> dict:
    """A pooled row with the keys of a ``fes sim --json`` row (counts add up, rates and
    statistics come from the pooled swings; ``delivered`` sums, peak is the maximum)."""
    ok = [r for r in results if r.report is not None]
    if not ok:
        return {}
    rep = pooled([r.report for r in ok], name=name)
    data = rep.to_dict()
    for key in ("onset_errors_ms_all", "coverage_all", "after_heel_strike_ms_all", "false_onsets_s"):
        data[key] = list(data[key])
    delivered: dict[str, Any] = {}
    for r in ok:
        for k, v in (r.row.get("delivered") or {}).items():
            if k == "peak_current_ma":
                delivered[k] = max(delivered.get(k, 0.0), v)
            elif k == "kernel":
                kernels = set(filter(None, str(delivered.get(k, "")).split("+"))) | {v}
                delivered[k] = "+".join(sorted(kernels))
            elif isinstance(v, (int, float)):
                delivered[k] = delivered.get(k, 0) + v
    profiles = sorted({r.row["profile"] for r in ok})
    modes = sorted({r.row["trigger_mode"] for r in ok})
    sides = sorted({r.side for r in ok})
    data.update({"recording": name, "side": sides[0] if len(sides) == 1 else "both",
                 "profile": "+".join(profiles), "trigger_mode": "+".join(modes), "delivered": delivered,
                 "faults": [f for r in ok for f in r.row["faults"]],
                 "scored": any(r.row["scored"] for r in ok)})
    return data


def _summary(row: dict) -> dict:
    """The headline figures of a row (no per-swing lists)."""
    keys = ("recordings", "swings_reference", "swings_detected", "swing_recall", "swing_precision",
            "false_onsets", "false_onsets_per_min", "onset_error_ms", "onset_in_window_fraction",
            "swing_coverage_median", "quiet_onsets", "stim_after_heel_strike_ms")
    return {k: row[k] for k in keys if k in row}


@dataclass
class EvaluationResult:
    """What :func:`evaluate` found; :meth:`to_json` is the ``fes evaluate --json`` document."""

    items: list
    results: list                     # FootResult per item, in item order
    profile: str
    elapsed_s: float
    engine: dict = field(default_factory=dict)

    @property
    def evaluated(self) -> list[FootResult]:
        return [r for r in self.results if r.report is not None]

    @property
    def rows(self) -> list[dict]:
        return [r.row for r in self.evaluated]

    @property
    def errors(self) -> list[FootResult]:
        return [r for r in self.results if r.error and not r.skipped]

    @property
    def pooled(self) -> dict:
        return pooled_row(self.evaluated)

    def per_subject(self) -> list[dict]:
        groups: dict[str, list] = {}
        for r in self.evaluated:
            groups.setdefault(r.subject or r.row["recording"], []).append(r)
        return [{"subject": s, **_summary(pooled_row(rs, name=s))} for s, rs in sorted(groups.items())]

    def worst_decile(self) -> dict:
        """The scored feet with the lowest recall (then most false onsets per minute): the
        worst 10 % (at least one), with their pooled figures."""
        scored = [r for r in self.evaluated if r.row["scored"] and r.report.swings_reference > 0]
        if not scored:
            return {"recordings": [], "pooled": {}}
        order = sorted(scored, key=lambda r: (r.report.swing_recall, -_nan0(r.report.false_onsets_per_min),
                                              r.row["recording"], r.side))
        worst = order[:max(1, math.ceil(len(order) / 10))]
        return {"recordings": [f"{r.row['recording']} {r.side}" for r in worst],
                "pooled": _summary(pooled_row(worst, name="worst decile"))}

    def plots(self) -> dict:
        """Histograms (bin edges and counts) of per-foot recall and false onsets per minute,
        and of the pooled onset errors (ms)."""
        scored = [r for r in self.evaluated if r.row["scored"]]
        recall = [r.report.swing_recall for r in scored if not math.isnan(r.report.swing_recall)]
        fpm = [r.report.false_onsets_per_min for r in scored if not math.isnan(r.report.false_onsets_per_min)]
        errors = [e for r in scored for e in r.report.onset_errors_ms_all]
        return {"recall": _hist(recall, np.linspace(0, 1, 21)),
                "false_onsets_per_min": _hist(fpm, _auto_edges(fpm, 0.0, 0.25)),
                "onset_error_ms": _hist(errors, _auto_edges(errors, None, 20.0))}

    def to_json(self) -> dict:
        return {"profile": self.profile, "recordings": self.rows, "pooled": self.pooled,
                "subjects": self.per_subject(), "worst_decile": self.worst_decile(),
                "plots": self.plots(),
                "errors": [{"recording": r.source, "side": r.side, "error": r.error} for r in self.errors],
                "skipped": [{"recording": r.source, "side": r.side, "reason": r.error}
                            for r in self.results if r.skipped],
                "engine": {**self.engine, "elapsed_s": round(self.elapsed_s, 3),
                           "feet": len(self.results),
                           "feet_per_s": round(len(self.results) / self.elapsed_s, 2) if self.elapsed_s else None,
                           "kernels": sorted({r.kernel for r in self.evaluated if r.kernel})}}


def _nan0(x: float) -> float:
    return 0.0 if x is None or math.isnan(x) else x


def _auto_edges(values, lo: float | None, width: float) -> np.ndarray:
    if not len(values):
        return np.array([0.0, width])
    a = lo if lo is not None else math.floor(min(values) / width) * width
    b = max(a + width, math.ceil(max(values) / width) * width + (width if max(values) % width == 0 else 0))
    n = int(round((b - a) / width))
    if n > 200:      # keep the plot readable: widen the bins
        width *= math.ceil(n / 200)
        n = int(math.ceil((b - a) / width))
    return a + width * np.arange(n + 1)


def _hist(values, edges) -> dict:
    counts, edges = np.histogram(np.asarray(values, float), bins=edges)
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts], "n": int(len(values))}


def evaluate(items: Sequence[RecordingItem], profile=None, *, scheduler: str | None = None,
             workers: int | None = None, implementation: str = "auto", progress: bool | None = None,
             client=None) -> EvaluationResult:
    """Evaluate ``profile`` (a :class:`~fescontrol.core.profile.Profile`, or None for the bundled
    default per recording) on ``items`` on a Dask cluster (see :mod:`fescontrol.sim.engine`); a task
    holds whole recording files, several of them (:func:`_tasks`). Pass ``client`` to reuse a
    connected client."""
    from .engine import describe, run_tasks
    groups: dict[str, list] = {}
    for it in items:
        groups.setdefault(it.source, []).append((it.source, it.side, it.subject))
    t0 = time.perf_counter()

    def run(c):
        engine = describe(c)
        return run_tasks(c, evaluate_batch, _tasks(list(groups.values()), profile, implementation,
                                                   engine["workers"] or 1),
                         desc="evaluate", progress=progress), engine

    if client is None:
        from .engine import dask_client
        with dask_client(scheduler, workers) as c:
            batches, engine = run(c)
    else:
        batches, engine = run(client)
    elapsed = time.perf_counter() - t0
    by_key = {(r.source, r.side): r for batch in batches for r in batch["feet"]}
    results = [by_key[(it.source, it.side)] for it in items]
    name = profile.name if profile is not None else "bundled default per recording"
    return EvaluationResult(list(items), results, name, elapsed, engine)


#: feet per ``fes evaluate`` task at most (a task per foot cost the scheduler, the client and
#: the worker's comms more than the ~10 ms replay of a 2-minute walk)
FEET_PER_TASK = 16
#: feet per task at least, once the remaining feet are few (the last tasks of a run)
FEET_PER_TASK_MIN = 2


def _tasks(groups: list, profile, implementation: str, workers: int) -> list[tuple]:
    """Whole recordings (the feet of one file stay in one task) packed in order into tasks
    of decreasing size: each takes about the remaining feet / (2 × workers), at most
    :data:`FEET_PER_TASK`, at least :data:`FEET_PER_TASK_MIN` (guided self-scheduling). The
    workers then end together: the last tasks are short, so a worker that finished waits for
    at most a couple of feet on the other, not for a whole task of equal size (with 2 workers
    and 80 feet, equal tasks of 10 feet left one worker idle for up to ~0.1 s of a ~0.45 s
    run). One worker has no one to wait for: tasks of :data:`FEET_PER_TASK`."""
    workers = max(1, workers)
    left = sum(len(g) for g in groups)

    def size() -> int:
        if workers == 1:
            return FEET_PER_TASK
        return max(FEET_PER_TASK_MIN, min(FEET_PER_TASK, math.ceil(left / (2 * workers))))

    tasks, batch, target = [], [], size()
    for g in groups:
        if batch and len(batch) + len(g) > target:
            tasks.append((batch, profile, implementation))
            left -= len(batch)
            batch, target = [], size()
        batch = batch + list(g)
    if batch:
        tasks.append((batch, profile, implementation))
    return tasks


# ------------------------------------------------------------------------ text and HTML
def format_report(result: EvaluationResult) -> str:
    """Per-foot table with the pooled row, per-subject and worst-decile lines."""
    from .scoring import format_table
    lines = []
    reps = [r.report for r in result.evaluated]
    if reps:
        lines.append(format_table(reps))
    subjects = result.per_subject()
    if len(subjects) > 1:
        lines.append("")
        lines.append(f"{'subject':<20} {'feet':>4} {'ref':>5} {'recall':>6} {'prec':>6} {'false':>5} {'f/min':>6}")
        for s in subjects:
            lines.append(f"{s['subject'][:20]:<20} {s['recordings']:>4} {s['swings_reference']:>5} "
                         f"{_f(s['swing_recall'], 3):>6} {_f(s['swing_precision'], 3):>6} "
                         f"{s['false_onsets']:>5} {_f(s['false_onsets_per_min'], 2):>6}")
    worst = result.worst_decile()
    if worst["recordings"]:
        p = worst["pooled"]
        lines.append("")
        lines.append(f"worst decile ({len(worst['recordings'])} feet, lowest recall): recall "
                     f"{_f(p['swing_recall'], 3)}, {p['false_onsets']} false onsets "
                     f"({_f(p['false_onsets_per_min'], 2)}/min): " + ", ".join(worst["recordings"][:8])
                     + (" …" if len(worst["recordings"]) > 8 else ""))
    unscored = [r for r in result.evaluated if not r.row["scored"]]
    if unscored:
        lines.append(f"{len(unscored)} feet replayed without reference events (not scored)")
    for r in result.errors:
        lines.append(f"ERROR {r.source} ({r.side}): {r.error}")
    return "\n".join(lines)


def _f(x, digits: int) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _png_base64(fig) -> str:
    import base64
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plot_images(plots: dict) -> dict[str, str]:
    """The three histograms as base64 PNGs (matplotlib, Agg backend)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    titles = {"recall": ("swing recall per foot", "recall"),
              "false_onsets_per_min": ("false onsets per minute per foot", "false onsets / min"),
              "onset_error_ms": ("onset error (onset - toe-off), all matched swings", "ms")}
    out = {}
    for key, (title, xlabel) in titles.items():
        h = plots[key]
        fig, ax = plt.subplots(figsize=(5.2, 3.0))
        edges = np.asarray(h["edges"])
        ax.bar(edges[:-1], h["counts"], width=np.diff(edges), align="edge", color="#3b6ea8", edgecolor="white")
        ax.set_title(f"{title} (n = {h['n']})", fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("count")
        out[key] = _png_base64(fig)
        plt.close(fig)
    return out


def write_html(result: EvaluationResult, path: str | Path, title: str = "fes evaluate") -> Path:
    """A self-contained HTML page: pooled figures, plots (inline PNG), per-subject and
    per-foot tables, errors."""
    from html import escape
    doc = result.to_json()
    images = plot_images(doc["plots"])
    pooled_ = doc["pooled"]

    def row_cells(r: dict) -> str:
        err = r.get("onset_error_ms", {})
        return "".join(f"<td>{escape(str(v))}</td>" for v in (
            r.get("swings_reference"), r.get("swings_detected"), _f(r.get("swing_recall"), 3),
            _f(r.get("swing_precision"), 3), r.get("false_onsets"), _f(r.get("false_onsets_per_min"), 2),
            _f(err.get("median"), 0), _f(err.get("iqr"), 0), _f(r.get("onset_in_window_fraction"), 3)))

    head = ("<tr><th>{}</th><th>ref</th><th>det</th><th>recall</th><th>prec</th><th>false</th>"
            "<th>f/min</th><th>err med ms</th><th>err IQR ms</th><th>in window</th></tr>")
    feet = "".join(f"<tr><td>{escape(r['recording'])} {escape(r['side'])}"
                   f"{'' if r['scored'] else ' (not scored)'}</td>{row_cells(r)}</tr>" for r in doc["recordings"])
    subjects = "".join(f"<tr><td>{escape(s['subject'])}</td>{row_cells(s)}</tr>" for s in doc["subjects"])
    errors = "".join(f"<li>{escape(e['recording'])} ({e['side']}): {escape(e['error'])}</li>" for e in doc["errors"])
    worst = doc["worst_decile"]
    eng = doc["engine"]
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse}}
td,th{{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}}td:first-child,th:first-child{{text-align:left}}
.plots img{{margin:0 1em 1em 0}}.note{{color:#555}}</style></head><body>
<h1>{escape(title)}</h1>
<p class="note">fescontrol — NOT a cleared medical device. Profile: {escape(doc['profile'])};
{eng.get('feet')} feet in {eng.get('elapsed_s')} s on {eng.get('workers')} workers
({escape(str(eng.get('scheduler')))});
kernel: {escape(', '.join(eng.get('kernels', [])))}. Scoring rules: docs/scoring.md.</p>
<h2>Pooled</h2><table>{head.format('')}<tr><td>all feet ({pooled_.get('recordings', 0)})</td>{row_cells(pooled_)}</tr>
<tr><td>worst decile ({len(worst['recordings'])})</td>{row_cells(worst['pooled'])}</tr></table>
<div class="plots">{''.join(f'<img alt="{k}" src="data:image/png;base64,{v}">' for k, v in images.items())}</div>
<h2>Per subject</h2><table>{head.format('subject')}{subjects}</table>
<h2>Per foot</h2><table>{head.format('recording')}{feet}</table>
{'<h2>Errors</h2><ul>' + errors + '</ul>' if errors else ''}
</body></html>
"""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path


EchoFn = Callable[[str], None]
