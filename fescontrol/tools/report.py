"""Walk reports for the orthotist: an HTML page with PNG figures (matplotlib).

Over 400 lines: the analysis of one walk and its HTML/PNG rendering; every figure reads the same
analysis.

NOT A CLEARED MEDICAL DEVICE.

``fes report --recording PATH --out DIR`` replays a recording through the device's own
controller (with a progress bar on long replays) and writes ``DIR/report.html`` plus
``DIR/*.png`` and ``DIR/report.json``:

* steps and walking time, cadence (from the detected onsets, and the stride period the walk
  itself shows, :func:`fescontrol.tools.calibration.gait_structure`);
* stimulation count and time on, peak current;
* onset timing against the detected events, per step: detected heel-off → first current,
  burst length, heel strike → end of stimulation;
* faults with their reasons and sensor times;
* parameter changes: the patient's profile history when a store is given;
* for recordings with reference events, the detection figures of :mod:`fescontrol.sim.scoring`.

``fes report SESSION --out DIR`` does the same for a session of the session database
(:mod:`fescontrol.session.log`, opened read-only: nothing is created, migrated or written):
the steps, bursts, faults and intensity changes the device logged, the delivered current
and the trigger signal when the session was logged with ``--log-frames``.
"""
from __future__ import annotations

import html
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fescontrol import DISCLAIMER
from fescontrol.core.profile import Profile

#: A replay of more frames than this shows a progress bar (about 10 minutes at 100 Hz).
PROGRESS_MIN_FRAMES = 60_000
CHUNK_FRAMES = 2_000


class ReportError(ValueError):
    """A report cannot be made (unknown session, no data)."""


def _open_session_log(db_path):
    """The session database, opened without creating or migrating anything (read-only use)."""
    from fescontrol.session.log import SessionLog, SessionLogError, default_db_path
    path = Path(db_path).expanduser() if db_path else default_db_path()
    try:
        return SessionLog(path, create=False, migrate=False)
    except SessionLogError as err:
        raise ReportError(str(err)) from None


def session_source(session_id: str | int, db_path: str | Path | None = None) -> dict:
    """Everything a report needs from one logged session (``fescontrol/session/log.py``):
    ``{"id", "row", "profile", "events", "bursts", "samples", "raw"}``. ``session_id`` is a
    number or ``last``. The database is only read. Raises :class:`ReportError` with what is
    wrong (no database, no such session)."""
    from fescontrol.core.profile import ProfileError, profile_from_dict
    from fescontrol.session.log import SessionLogError
    slog = _open_session_log(db_path)
    try:
        text = str(session_id)
        if text == "last":
            sid = slog.last_session_id()
            if sid is None:
                raise ReportError(f"{slog.path}: no sessions yet")
        else:
            try:
                sid = int(text)
            except ValueError:
                raise ReportError(f"SESSION must be a number (see `fes log list`) or 'last', "
                                  f"not {text!r}") from None
        try:
            row = slog.session(sid)
            samples = slog.samples(sid)
            raw = slog.raw_frames(sid) if row.get("frames_logged") else b""
        except SessionLogError as err:
            raise ReportError(str(err)) from None
        try:
            profile = profile_from_dict(json.loads(row["profile_json"]), f"session {sid} profile")
        except (ProfileError, ValueError) as err:
            raise ReportError(f"session {sid}: its logged profile cannot be read ({err})") from None
        return {"id": sid, "row": row, "profile": profile, "events": slog.events(sid),
                "bursts": slog.bursts(sid), "samples": samples, "raw": raw, "db": str(slog.path)}
    finally:
        slog.db.close()


# ----------------------------------------------------------------------------- replay
def replay_with_progress(recording, profile: Profile, *, implementation: str = "auto",
                         progress: bool | None = None, echo: Callable[[str], None] | None = None):
    """:func:`fescontrol.sim.replay.replay` fed in chunks, with a tqdm bar on long recordings.

    ``progress`` None: a bar when the recording has more than PROGRESS_MIN_FRAMES frames
    (tqdm hides it when the output is not a terminal); True/False force it.
    """
    from fescontrol.drivers.sensor_protocol import FRAME_LEN
    from fescontrol.sim.replay import check_channels, recording_stream, replay

    check_channels(recording, profile)
    frames, _ = recording_stream(recording)
    n = len(frames)
    show = progress if progress is not None else n > PROGRESS_MIN_FRAMES
    if not show:
        return replay(recording, profile, implementation=implementation, stream=frames.tobytes())
    from tqdm import tqdm
    bar = tqdm(total=n, unit="frame", unit_scale=True, desc=f"replay {recording.name}",
               disable=None if progress is None else False, leave=False)
    try:
        return replay(recording, profile, implementation=implementation, stream=frames.tobytes(),
                      progress=lambda n_bytes: bar.update(n_bytes // FRAME_LEN),
                      progress_bytes=CHUNK_FRAMES * FRAME_LEN)
    finally:
        bar.close()


# ----------------------------------------------------------------------------- figures
@dataclass
class StepRow:
    """One detected step: times in s from the recording start, delays in ms."""

    step: int
    heel_off_s: float
    onset_s: float | None
    onset_delay_ms: float | None      # detected heel-off → first current
    burst_ms: float | None
    heel_strike_s: float | None
    after_strike_ms: float | None     # heel strike → end of stimulation
    cutoff: bool = False


@dataclass
class WalkReport:
    """Everything the HTML shows (also written as report.json)."""

    recording: str
    side: str
    profile_name: str
    trigger_mode: str
    duration_s: float
    steps: int
    walking_time_s: float
    stride_s: float
    cadence_spm: float
    stimulations: int
    stimulation_time_s: float
    peak_current_ma: float
    onset_delay_ms: dict
    after_strike_ms: dict
    rows: list[StepRow]
    faults: list[dict]
    changes: list[dict]
    detection: dict | None
    kernel: str
    figures: dict = field(default_factory=dict)
    replay_s: float = 0.0
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        data = dict(self.__dict__)
        data["rows"] = [r.__dict__ for r in self.rows]
        return data


def _stats(values) -> dict:
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], float)
    if not v.size:
        return {"median": math.nan, "p5": math.nan, "p95": math.nan, "n": 0}
    p5, med, p95 = np.percentile(v, [5, 50, 95])
    return {"median": float(med), "p5": float(p5), "p95": float(p95), "n": int(v.size)}


def step_rows(result) -> list[StepRow]:
    """Per detected heel-off: the burst it started and the heel strike that ended the swing."""
    t0 = result.t0_us
    ev = [((e.t_us - t0) / 1e6, e.event) for e in result.events]
    offs = [t for t, name in ev if name == "heel_off"]
    strikes = np.array([t for t, name in ev if name == "heel_strike"])
    cut = np.array([t for t, name in ev if name == "timeout"])
    bursts = sorted(result.bursts_s)
    onsets = np.array([a for a, _ in bursts])
    rows = []
    for i, t in enumerate(offs):
        nxt = offs[i + 1] if i + 1 < len(offs) else math.inf
        j = int(np.searchsorted(onsets, t - 1e-6))
        burst = bursts[j] if j < len(bursts) and bursts[j][0] < nxt else None
        k = int(np.searchsorted(strikes, t, side="right"))
        hs = float(strikes[k]) if k < len(strikes) and strikes[k] < nxt else None
        c = bool(np.any((cut > t) & (cut < nxt)))
        rows.append(StepRow(
            i + 1, t, burst[0] if burst else None,
            1000.0 * (burst[0] - t) if burst else None,
            1000.0 * (burst[1] - burst[0]) if burst else None, hs,
            1000.0 * (burst[1] - hs) if burst and hs is not None else None, c))
    return rows


def analyse(recording, profile: Profile, result, *, changes: list[dict] | None = None) -> WalkReport:
    """The figures of one replay (no files written)."""
    from fescontrol.tools.calibration import CalibrationError, gait_structure, has_reference
    tr = result.trace
    dt = np.diff(tr["t_us"], append=tr["t_us"][-1:]) / 1e6 if len(tr["t_us"]) else np.zeros(0)
    on = tr["current_ma"] > 0
    rows = step_rows(result)
    try:
        structure = gait_structure(recording, profile.trigger.mode)
        walking_s, stride_s = structure.walking_s, structure.stride_s
    except CalibrationError:
        walking_s, stride_s = 0.0, math.nan
    offs = np.array([r.heel_off_s for r in rows])
    gaps = np.diff(offs) if len(offs) > 1 else np.zeros(0)
    steady = gaps[(gaps > 0.5 * stride_s) & (gaps < 1.5 * stride_s)] if stride_s == stride_s else gaps
    stride_med = float(np.median(steady)) if len(steady) else stride_s
    detection = None
    if has_reference(recording):
        from fescontrol.sim.scoring import score
        rep = score(recording, result.bursts_s, faults=[f.text for f in result.faults])
        detection = {k: v for k, v in rep.to_dict().items() if not k.endswith("_all") and k != "false_onsets_s"}
        detection["false_onsets_s"] = list(rep.false_onsets_s)
        detection["onset_errors_ms"] = list(rep.onset_errors_ms_all)
    faults = [{"t_s": (f.t_us - result.t0_us) / 1e6, "reason": f.reason.name.lower(), "text": f.text}
              for f in result.faults]
    return WalkReport(
        recording=recording.name, side=recording.side, profile_name=profile.name,
        trigger_mode=profile.trigger.mode.value, duration_s=recording.duration_s, steps=len(rows),
        walking_time_s=walking_s, stride_s=stride_med,
        cadence_spm=120.0 / stride_med if stride_med and stride_med == stride_med else math.nan,
        stimulations=len(result.bursts_s), stimulation_time_s=float(dt[on].sum()) if len(dt) else 0.0,
        peak_current_ma=float(tr["current_ma"].max()) if len(dt) else 0.0,
        onset_delay_ms=_stats(r.onset_delay_ms for r in rows),
        after_strike_ms=_stats(r.after_strike_ms for r in rows), rows=rows, faults=faults,
        changes=changes or [], detection=detection, kernel=result.implementation)


# ----------------------------------------------------------------------------- sessions
def _walking_s(events: list[dict], end_us: int | None) -> float:
    """Sensor time in walk mode: from each 'walk' mode record to the next mode record (or the end)."""
    modes = [e for e in events if e["kind"] == "mode" and e["t_us"] is not None]
    total = 0.0
    for i, m in enumerate(modes):
        if m["name"] != "walk":
            continue
        stop = modes[i + 1]["t_us"] if i + 1 < len(modes) else end_us
        total += max(0, (stop or m["t_us"]) - m["t_us"]) / 1e6
    return total


def _iso_wall(wall: float | None) -> str:
    import datetime as _dt
    if wall is None:
        return ""
    return _dt.datetime.fromtimestamp(wall).astimezone().isoformat(timespec="seconds")


def analyse_session(src: dict, *, changes: list[dict] | None = None) -> WalkReport:
    """The figures of a logged session (:func:`session_source`), from its bursts and events.

    Times are the sensor clock in s (as ``fes log show`` prints them). Steps are the logged
    walking bursts; the onset timing per step is heel-off → start of the ramp-up and heel
    strike → end of stimulation, as the device logged them. Parameter changes are the
    session's intensity changes (who: the command's cause) plus ``changes`` (the profile
    history, when a store is given). No detection figures: a session has no reference events.
    """
    row, profile, events, bursts = src["row"], src["profile"], src["events"], src["bursts"]
    t_samples, cur = src["samples"]
    times = [e["t_us"] for e in events if e["t_us"] is not None] + [b["end_us"] for b in bursts]
    if len(t_samples):
        times += [int(t_samples[0]), int(t_samples[-1])]
    start_us, end_us = (min(times), max(times)) if times else (0, 0)
    steps = [b for b in bursts if b["kind"] == "step"]
    rows = []
    for i, b in enumerate(steps):
        hoff = b["heel_off_us"] if b["heel_off_us"] is not None else b["onset_us"]
        hs = b["heel_strike_us"]
        rows.append(StepRow(i + 1, hoff / 1e6, b["onset_us"] / 1e6, (b["onset_us"] - hoff) / 1e3,
                            float(b["duration_ms"]), None if hs is None else hs / 1e6,
                            None if hs is None else (b["end_us"] - hs) / 1e3, bool(b["cut_off"])))
    offs = np.array([r.heel_off_s for r in rows])
    gaps = np.diff(offs) if len(offs) > 1 else np.zeros(0)
    from fescontrol.tools.calibration import STRIDE_MAX_S, STRIDE_MIN_S
    steady = gaps[(gaps >= STRIDE_MIN_S) & (gaps <= STRIDE_MAX_S)]
    stride = float(np.median(steady)) if len(steady) else math.nan
    faults, cleared = [], {}
    for e in events:
        if e["kind"] == "fault":
            faults.append({"t_s": None if e["t_us"] is None else e["t_us"] / 1e6, "reason": e["name"],
                           "text": e["detail"], "at": _iso_wall(e["wall"])})
        elif e["kind"] == "fault_cleared" and faults:
            cleared = {"by": e["name"], "at": _iso_wall(e["wall"])}
            faults[-1]["text"] += f" (cleared by {cleared['by']} at {cleared['at']})"
    session_changes = [{"at": _iso_wall(e["wall"]), "by": "patient" if e["name"] not in ("restored",) else "device",
                        "what": f"intensity {e['name']}: {e['detail']} → {e['value']:g} mA"
                        if e["value"] is not None else f"intensity {e['name']}",
                        "note": f"sensor time {e['t_us'] / 1e6:.2f} s" if e["t_us"] is not None else ""}
                       for e in events if e["kind"] == "intensity"]
    on_s = sum(b["duration_ms"] for b in bursts) / 1000.0
    kinds = {k: sum(b["kind"] == k for b in bursts) for k in ("step", "training", "test")}
    name = f"session {src['id']}"
    where = row.get("sim_recording") or row.get("sensor")
    report = WalkReport(
        recording=name + (f" ({where})" if where else ""), side=profile.side, profile_name=profile.name,
        trigger_mode=profile.trigger.mode.value, duration_s=(end_us - start_us) / 1e6, steps=len(steps),
        walking_time_s=_walking_s(events, end_us), stride_s=stride,
        cadence_spm=120.0 / stride if stride == stride else math.nan,
        stimulations=len(bursts), stimulation_time_s=on_s,
        peak_current_ma=max((float(b["peak_ma"]) for b in bursts), default=0.0),
        onset_delay_ms=_stats(r.onset_delay_ms for r in rows),
        after_strike_ms=_stats(r.after_strike_ms for r in rows), rows=rows, faults=faults,
        changes=session_changes + list(changes or []), detection=None, kernel=row["kernel"])
    report.extra = {"session_id": src["id"], "started": _iso_wall(row["started_wall"]),
                    "ended": _iso_wall(row["ended_wall"]), "end_reason": row["end_reason"],
                    "bursts_by_kind": kinds, "database": src.get("db", "")}
    return report


def write_session_report(session_id: str | int, out_dir: str | Path, *, db_path=None,
                         changes: list[dict] | None = None) -> WalkReport:
    """``fes report SESSION``: read the session (read-only), write report.html/.json and PNGs."""
    out = Path(out_dir)
    t = time.perf_counter()
    src = session_source(session_id, db_path)
    report = analyse_session(src, changes=changes)
    out.mkdir(parents=True, exist_ok=True)
    signal = signal_label = None
    t_sig = None
    if src["raw"]:
        from fescontrol.sim.recording import RecordingError
        from fescontrol.sim.sources.frames import recording_from_frames
        try:
            rec = recording_from_frames(src["raw"], name=report.recording, side=report.side)
        except RecordingError:
            rec = None
        if rec is not None:
            t_sig = rec.meta["first_timestamp_us"] / 1e6 + np.arange(rec.n_samples) / rec.rate_hz
            if rec.has_heel and profile_uses_heel(report.trigger_mode):
                signal, signal_label = rec.heel_n, "heel force (N)"
            elif rec.has_imu:
                from fescontrol.sim.recording import pitch_rate_dps
                signal, signal_label = pitch_rate_dps(rec), "toe-up rate (deg/s)"
    t_cur, cur = src["samples"]
    figs = {}
    if len(t_cur) or signal is not None:
        _overview_plot(t_sig, signal, signal_label, t_cur / 1e6 if len(t_cur) else None, cur if len(t_cur) else None,
                       report, out / "overview.png", t0_s=0.0)
        figs["overview"] = "overview.png"
    _timing_plot(report, out / "timing.png")
    figs["timing"] = "timing.png"
    report.figures = figs
    report.replay_s = time.perf_counter() - t
    (out / "report.html").write_text(render_html(report), encoding="utf-8")
    (out / "report.json").write_text(json.dumps(_json_safe(report.to_json()), indent=1), encoding="utf-8")
    return report


# ----------------------------------------------------------------------------- plots
def _overview_plot(t_sig, signal, signal_label, t_cur, current, report: WalkReport, path: Path,
                   t0_s: float = 0.0) -> None:
    """Whole walk: the trigger signal (when known) above the delivered current (when known)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [p for p in (("sig", t_sig, signal), ("cur", t_cur, current)) if p[2] is not None]
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 2.3 * len(panels) + 0.5), sharex=True, squeeze=False)
    for ax, (kind, t, y) in zip(axes[:, 0], panels):
        step = max(1, len(t) // 6000)
        ax.plot(np.asarray(t)[::step] - t0_s, np.asarray(y)[::step], lw=0.6 if kind == "sig" else 0.8,
                color="tab:blue" if kind == "sig" else "tab:red")
        ax.set_ylabel(signal_label if kind == "sig" else "current (mA)")
        for f in report.faults:
            if f.get("t_s") is not None:
                ax.axvline(f["t_s"], color="k", ls="--", lw=1)
    axes[-1, 0].set_xlabel("time (s)")
    fig.suptitle(f"{report.recording} ({report.side}): whole walk")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


#: Smallest y span of a timing panel (ms): nearly constant delays (the usual case: one loop
#: period) would otherwise be drawn on a 1e-11 scale with an offset such as "1e-11+1e1".
MIN_TIMING_SPAN_MS = 20.0


def _ms_axis(ax, values: list[float]) -> None:
    """Plain millisecond tick labels (no offset, no scientific notation) on a span of at
    least :data:`MIN_TIMING_SPAN_MS` around the values."""
    ax.ticklabel_format(axis="y", style="plain", useOffset=False)
    if values:
        lo, hi = min(values), max(values)
        if hi - lo < MIN_TIMING_SPAN_MS:
            mid = (lo + hi) / 2
            ax.set_ylim(mid - MIN_TIMING_SPAN_MS / 2, mid + MIN_TIMING_SPAN_MS / 2)


def _timing_figure(report: WalkReport):
    """Per step: detected heel-off → stimulation, and heel strike → end of stimulation (ms)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [r for r in report.rows if r.onset_delay_ms is not None]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    # rounded to the µs: the clocks are integer µs, the rest is float noise of the subtraction
    onset = [round(r.onset_delay_ms, 3) for r in rows]
    axes[0].plot([r.step for r in rows], onset, ".", color="tab:orange")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("heel-off → stimulation (ms)")
    _ms_axis(axes[0], onset)
    hs = [r for r in report.rows if r.after_strike_ms is not None]
    after = [round(r.after_strike_ms, 3) for r in hs]
    axes[1].plot([r.step for r in hs], after, ".", color="tab:purple")
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("heel strike → end of stimulation (ms)")
    _ms_axis(axes[1], after)
    fig.suptitle("onset and end of stimulation against the detected events, per step")
    fig.tight_layout()
    return fig


def _timing_plot(report: WalkReport, path: Path) -> None:
    import matplotlib.pyplot as plt
    fig = _timing_figure(report)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plots(recording, result, report: WalkReport, out: Path) -> dict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fescontrol.sim.plot import plot_replay
    figs = {}
    tr = result.trace
    t = tr["t_us"] / 1e6
    use_heel = recording.has_heel and profile_uses_heel(report.trigger_mode)
    signal = tr["heel_n"] if use_heel else tr["pitch_rate_dps"]
    _overview_plot(t, signal, "heel force (N)" if use_heel else "toe-up rate (deg/s)", t, tr["current_ma"],
                   report, out / "overview.png", t0_s=result.t0_us / 1e6)
    figs["overview"] = "overview.png"

    plot_replay(recording, result, str(out / "zoom.png"))
    figs["zoom"] = "zoom.png"

    _timing_plot(report, out / "timing.png")
    figs["timing"] = "timing.png"

    if report.detection and report.detection.get("onset_errors_ms"):
        fig, ax = plt.subplots(figsize=(6, 3.2))
        ax.hist(report.detection["onset_errors_ms"], bins=30, color="tab:green")
        ax.axvspan(-300, 20, color="tab:green", alpha=0.1)
        ax.set_xlabel("stimulation onset − reference toe-off (ms); shaded: on time")
        ax.set_ylabel("swings")
        fig.tight_layout()
        fig.savefig(out / "onset_error.png", dpi=90)
        plt.close(fig)
        figs["onset_error"] = "onset_error.png"
    return figs


def profile_uses_heel(mode: str) -> bool:
    return mode in ("heel", "heel+tilt")


# ----------------------------------------------------------------------------- html
def _f(x: Any, digits: int = 1, unit: str = "") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}f}{unit}" if isinstance(x, float) else f"{x}{unit}"


def _spread(stats: dict) -> str:
    return (f"median {_f(stats['median'], 0)} ms (5–95 %: {_f(stats['p5'], 0)}–{_f(stats['p95'], 0)} ms, "
            f"{stats['n']} steps)")


def _session_line(r: WalkReport) -> str:
    x = r.extra
    if not x.get("session_id"):
        return ""
    e = html.escape
    kinds = x.get("bursts_by_kind", {})
    return (f"<p id='session'>Session {x['session_id']} from {e(str(x.get('database', '')))}: "
            f"{e(x.get('started') or '')} → {e(x.get('ended') or 'not ended')} "
            f"({e(str(x.get('end_reason') or 'interrupted'))}); bursts: {kinds.get('step', 0)} steps, "
            f"{kinds.get('training', 0)} training, {kinds.get('test', 0)} test.</p>")


def render_html(report: WalkReport) -> str:
    e = html.escape
    r = report
    rows = []
    for s in r.rows:
        rows.append(f"<tr><td>{s.step}</td><td>{_f(s.heel_off_s, 2)}</td><td>{_f(s.onset_delay_ms, 0)}</td>"
                    f"<td>{_f(s.burst_ms, 0)}</td><td>{_f(s.heel_strike_s, 2)}</td>"
                    f"<td>{_f(s.after_strike_ms, 0)}</td><td>{'cut-off' if s.cutoff else ''}</td></tr>")
    faults = "".join(f"<li>{_f(f['t_s'], 2)} s — <b>{e(f['reason'])}</b>: {e(f['text'])}</li>" for f in r.faults) \
        or "<li>none</li>"
    changes = "".join(
        f"<li>{e(str(c.get('at', '')))} {e(str(c.get('by', '')))}: {e(str(c.get('what', '')))}"
        f"{(' — ' + e(str(c['note']))) if c.get('note') else ''}</li>" for c in r.changes) \
        or "<li>none recorded (give --store DIR and the patient to list the profile history)</li>"
    det = ""
    if r.detection:
        d = r.detection
        det = (f"<h2>Detection against the reference events</h2><table class='kv'>"
               f"<tr><th>reference swings</th><td>{d['swings_reference']}</td></tr>"
               f"<tr><th>detected (recall)</th><td>{d['swings_detected']} ({_f(d['swing_recall'], 3)})</td></tr>"
               f"<tr><th>precision</th><td>{_f(d['swing_precision'], 3)}</td></tr>"
               f"<tr><th>false onsets</th><td>{d['false_onsets']} ({_f(d['false_onsets_per_min'], 2)}/min); "
               f"while standing/quiet: {d['quiet_onsets'].get('total', 0)}</td></tr>"
               f"<tr><th>onset − toe-off</th><td>median {_f(d['onset_error_ms']['median'], 0)} ms, "
               f"IQR {_f(d['onset_error_ms']['iqr'], 0)} ms; on time (−300…+20 ms): "
               f"{_f(d['onset_in_window_fraction'], 3)}</td></tr></table>"
               + ("<img src='onset_error.png' alt='onset error histogram'>" if "onset_error" in r.figures else ""))
    imgs = "".join(f"<figure><img src='{e(f)}' alt='{e(k)}'><figcaption>{e(k)}</figcaption></figure>"
                   for k, f in r.figures.items() if k != "onset_error")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fes report — {e(r.recording)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1em 2em; color: #222; }}
.disclaimer {{ background: #fff4d6; padding: .4em .8em; border-left: 4px solid #e0a800; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: .15em .5em; text-align: right; }}
table.kv th {{ text-align: left; }} .steps {{ max-height: 30em; overflow-y: auto; display: inline-block; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>Walk report: {e(r.recording)} ({e(r.side)} leg)</h1>
<p class="disclaimer">{e(DISCLAIMER)}</p>
<p>Profile <b>{e(r.profile_name)}</b>, trigger {e(r.trigger_mode)}; {e(r.kernel)} kernel;
generated {e(time.strftime('%Y-%m-%d %H:%M'))}.</p>
{_session_line(r)}
<h2>Summary</h2>
<table class="kv">
<tr><th>recording length</th><td>{_f(r.duration_s, 1, ' s')}</td></tr>
<tr><th>steps (detected onsets)</th><td id="steps">{r.steps}</td></tr>
<tr><th>walking time</th><td>{_f(r.walking_time_s, 0, ' s')}</td></tr>
<tr><th>cadence</th><td>{_f(r.cadence_spm, 0, ' steps/min')} (stride {_f(r.stride_s, 2, ' s')})</td></tr>
<tr><th>stimulations</th><td id="stimulations">{r.stimulations}</td></tr>
<tr><th>stimulation time on</th><td>{_f(r.stimulation_time_s, 1, ' s')}</td></tr>
<tr><th>peak current</th><td>{_f(r.peak_current_ma, 1, ' mA')}</td></tr>
<tr><th>heel-off → stimulation</th><td>{_spread(r.onset_delay_ms)}</td></tr>
<tr><th>heel strike → end of stimulation</th><td>{_spread(r.after_strike_ms)}</td></tr>
</table>
<h2>Faults</h2><ul id="faults">{faults}</ul>
<h2>Parameter changes</h2><ul id="changes">{changes}</ul>
{det}
<h2>Figures</h2>{imgs}
<h2>Onset timing per step</h2>
<div class="steps"><table id="step-table"><tr><th>step</th><th>heel-off (s)</th><th>→ stim (ms)</th><th>burst (ms)</th>
<th>heel strike (s)</th><th>stim after strike (ms)</th><th></th></tr>
{''.join(rows)}</table></div>
</body></html>
"""


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return _json_safe(value.item())
    return value


def history_changes(store, patient_id: str) -> list[dict]:
    """The patient's profile history as report lines."""
    out = []
    for v in store.history(patient_id):
        what = "; ".join(f"{c.path} {c.old} → {c.new}" for c in v.changes) or "first version"
        out.append({"at": v.at, "by": v.by, "what": f"v{v.version} ({v.action}): {what}", "note": v.note})
    return out


def write_report(recording, profile: Profile, out_dir: str | Path, *, changes: list[dict] | None = None,
                 implementation: str = "auto", progress: bool | None = None) -> WalkReport:
    """Replay, analyse, plot and write ``report.html``, ``report.json`` and PNGs into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    result = replay_with_progress(recording, profile, implementation=implementation, progress=progress)
    replay_s = time.perf_counter() - t
    report = analyse(recording, profile, result, changes=changes)
    report.replay_s = replay_s
    report.figures = _plots(recording, result, report, out)
    (out / "report.html").write_text(render_html(report), encoding="utf-8")
    (out / "report.json").write_text(json.dumps(_json_safe(report.to_json()), indent=1), encoding="utf-8")
    return report
