"""Calibration from a short walk: propose trigger thresholds, hysteresis, debounce and timing.

Over 400 lines: walk loading and recording, gait structure, figures and the Calibrator; these
four are the split (a tools/calibration/ package) still to do.

NOT A CLEARED MEDICAL DEVICE. A proposal is only a proposal: the orthotist sees the
before/after figures on the same walk and accepts it or not (``fes calibrate``).

How it works (full text: docs/orthotist.md):

* The walk is a :class:`fescontrol.sim.recording.Recording` (a bundled or file recording, a synthetic
  scenario, or one recorded from the sensor port through the real control loop, see
  :func:`record_walk`). It is encoded once into sensor frames and every candidate profile is
  replayed through the device's own controller (:func:`fescontrol.sim.replay.replay`; the compiled kernel
  when it is built: ~20–50 ms for 2 minutes of 100 Hz data).
* Candidates are built from the current profile by changing one detector parameter at a time
  over a small grid (:data:`AXES`; coordinate ascent, at most ``passes`` rounds). Every
  candidate goes through :func:`fescontrol.core.profile.profile_from_dict`: one the validator
  refuses (outside a hard cap, no hysteresis, …) is counted in ``rejected_`` and never
  evaluated, so no proposal can lie outside the caps.
* The objective, per walk (higher is better; a candidate replaces the current best only when
  strictly better, so the current profile is kept on ties):

  - **reference** (the recording has reference toe-off/heel-strike events):
    ``(timely + 0.5 × untimely − false_onsets) / reference_swings`` with the rules of
    :mod:`fescontrol.sim.scoring` (timely: onset −300…+20 ms from toe-off).
  - **structure** (no reference events): the gait's own structure. The stride period
    ``T`` comes from the autocorrelation of the trigger signal during walking (found by its
    moving standard deviation). A detected onset is *regular* when another onset lies
    0.7–1.3 ``T`` before or after it and its detected swing (onset → heel strike) lasts
    0.2–0.75 ``T``; *rhythmic but odd* when only the first holds; *isolated* otherwise
    (a false onset; "in the standing parts" when outside walking).
    ``(min(regular + 0.5 × odd, N) − isolated − excess) / N`` with ``N = walking time / T``
    expected strides and ``excess`` the rhythmic onsets beyond ``1.1 N`` (double detections).
    Being a proxy, it moves away from the current setting only for a gain of at least
    :data:`STRUCTURE_MIN_GAIN`.

Only the detector section of the profile for its trigger mode changes (``trigger.heel``
and/or ``trigger.tilt``); the envelope (amplitude, ramps, extension, max_stim_ms) is a
clinical choice this module never touches.
"""
from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fescontrol.drivers.sensor_protocol import SENSOR_BAUD_DEFAULT

from fescontrol.core.profile import Profile, ProfileError, TriggerMode, profile_from_dict
from fescontrol.core.profile_diff import Change, profile_changes


class CalibrationError(ValueError):
    """The walk cannot be used for calibration (no walking found, channels missing, …)."""


# ----------------------------------------------------------------------------- search grid
@dataclass(frozen=True)
class Axis:
    """One detector parameter the search varies. ``path`` is the profile field (dotted);
    ``partner`` a field kept at the same distance above it (hysteresis), if any."""

    name: str
    path: str
    values: tuple[float, ...]
    partner: str | None = None      # moved with ``path`` so that partner - path stays the same
    gap_of: str | None = None       # this axis IS the gap partner - path: sets partner = path + v

    def apply(self, data: dict, value: float) -> dict:
        out = copy.deepcopy(data)
        if self.gap_of is not None:
            base = _get(out, self.gap_of)
            _set(out, self.path, _num(base + value, self.path))
            return out
        old = _get(out, self.path)
        _set(out, self.path, _num(value, self.path))
        if self.partner is not None:
            gap = _get(out, self.partner) - old
            _set(out, self.partner, _num(value + gap, self.partner))
        return out


def _num(value: float, path: str):
    """Integer fields stay integers (the *_ms fields)."""
    return int(round(value)) if path.endswith("_ms") else round(float(value), 6)


def _get(data: dict, path: str):
    for part in path.split("."):
        data = data[part]
    return data


def _set(data: dict, path: str, value) -> None:
    *head, last = path.split(".")
    for part in head:
        data = data[part]
    data[last] = value


H, T = "trigger.heel.", "trigger.tilt."
HEEL_AXES = (
    Axis("heel-off fraction of stance peak", H + "off_fraction",
         (0.02, 0.03, 0.04, 0.06, 0.08, 0.10, 0.13, 0.16, 0.20, 0.25, 0.30), partner=H + "on_fraction"),
    Axis("heel hysteresis (on - off fraction)", H + "on_fraction",
         (0.05, 0.10, 0.15, 0.20, 0.30, 0.40), gap_of=H + "off_fraction"),
    Axis("heel-off floor (N)", H + "off_min_n", (0.0, 3.0, 5.0, 8.0, 12.0, 20.0, 30.0), partner=H + "on_min_n"),
    Axis("heel hysteresis (on - off N)", H + "on_min_n", (5.0, 10.0, 20.0, 40.0), gap_of=H + "off_min_n"),
    Axis("heel debounce (ms)", H + "debounce_ms", (0, 10, 20, 30, 50, 80)),
)
TILT_AXES = (
    Axis("push-off onset rate (deg/s)", T + "onset_rate_dps", (20, 30, 40, 50, 60, 80, 100, 130, 160)),
    Axis("swing confirm rate (deg/s)", T + "swing_rate_dps", (50, 75, 100, 150, 200)),
    Axis("heel-strike rate (deg/s)", T + "strike_rate_dps", (-60, -30, -10, 0, 20)),
    Axis("quiet-stance band (deg/s)", T + "stance_rate_dps", (20, 30, 40, 60, 90)),
    Axis("min stance before onset (ms)", T + "min_stance_ms", (50, 100, 150, 250, 400)),
    Axis("tilt debounce (ms)", T + "debounce_ms", (0, 10, 20, 40)),
)
AXES: dict[TriggerMode, tuple[Axis, ...]] = {
    TriggerMode.HEEL: HEEL_AXES,
    TriggerMode.TILT: TILT_AXES,
    TriggerMode.HEEL_AND_TILT: HEEL_AXES[:3] + HEEL_AXES[4:] + TILT_AXES[:5],
}

# structure objective constants (docs/orthotist.md)
STRIDE_MIN_S, STRIDE_MAX_S = 0.6, 2.5
RHYTHM_TOLERANCE = 0.3          # a neighbour onset 0.7..1.3 T away
SWING_FRACTION_RANGE = (0.2, 0.75)
EXCESS_FACTOR = 1.1
#: The structure objective is a proxy: a change must gain at least this much (2 strides in
#: 100) to replace the current setting. With reference events every gain counts.
STRUCTURE_MIN_GAIN = 0.02
UNLOADED_FRACTION, UNLOADED_MIN_N = 0.05, 5.0   # a swing unloads the heel below this
ACTIVITY_WINDOW_S = 1.5
ACTIVITY_FRACTION = 0.3          # walking: moving std above 30 % of its 95th percentile
MIN_ACTIVITY = {"heel": 20.0, "tilt": 20.0}   # N, deg/s: below this nothing walks


# ----------------------------------------------------------------------------- walks
def load_walk(name_or_path: str | Path, side: str | None = None):
    """A walk: :func:`fescontrol.sim.load.load_any` (bundled short name, file path of any loader
    format, raw ``.fesraw`` frames or ``synthetic:<scenario>``; the one recording loader)."""
    from fescontrol.sim.load import load_any
    return load_any(name_or_path, side)


def has_reference(recording) -> bool:
    """True when the recording carries reference swings to score against."""
    return len(recording.reference_swings()) > 0


def record_walk(port: str, seconds: float, profile: Profile, *, save_to: str | None = None,
                side: str | None = None, echo: Callable[[str], None] = print,
                baudrate: int = SENSOR_BAUD_DEFAULT):
    """Record a walk from the sensor port through the real control loop.

    A :class:`~fescontrol.session.sensor_tee.SensorTee` copies every byte from the port into a pipe
    that the controller's real-time loop (:meth:`Controller.run`, no stimulator) reads, so the
    walk is detected live with the current profile while the raw frames are kept. Returns ``(recording, raw_bytes,
    live_events)``; with ``save_to`` the raw frames are written there (``.fesraw``).
    """
    from fescontrol.loop.controller import Controller
    from fescontrol.loop.runner import open_sensor
    from fescontrol.session.sensor_tee import SensorTee

    link = open_sensor(port, baudrate)
    raw = bytearray()
    tee = SensorTee(link.fileno(), lambda batch: raw.extend(batch.data))
    controller = Controller(profile)
    t_end = time.monotonic() + seconds
    echo(f"recording the walk from {port} for {seconds:g} s (walk, stand still, walk again) …")
    tee.start()
    controller.start()
    try:
        controller.run(tee.read_fd, lambda: time.monotonic() >= t_end or bool(controller.kernel.fault))
    finally:
        tee.stop()  # the bytes relayed so far reach ``raw``
        link.close()
    fault = controller.supervisor.fault
    if fault is not None and time.monotonic() < t_end - 0.05:
        echo(f"note: the live loop stopped early: {fault.text}")
    if save_to:
        Path(save_to).write_bytes(bytes(raw))
        echo(f"raw walk saved: {save_to} ({len(raw)} bytes)")
    from fescontrol.sim.sources.frames import recording_from_frames
    rec = recording_from_frames(bytes(raw), name=f"walk from {port}", side=side or profile.side)
    return rec, bytes(raw), list(controller.events)


# ----------------------------------------------------------------------------- structure
@dataclass(frozen=True)
class GaitStructure:
    """What the walk itself tells, independent of any profile: stride period (s) from the
    autocorrelation, the walking samples, walking time (s) and expected strides."""

    stride_s: float
    walking: np.ndarray = field(repr=False)
    walking_s: float
    expected_strides: float
    signal: str
    unloaded: np.ndarray | None = field(default=None, repr=False)

    def unloads(self, a_s: float, b_s: float, rate_hz: float) -> bool:
        """True when the heel is unloaded somewhere in [a_s, b_s] (always True without heel)."""
        if self.unloaded is None:
            return True
        i, j = max(0, int(a_s * rate_hz)), min(len(self.unloaded), int(math.ceil(b_s * rate_hz)) + 1)
        return j > i and bool(self.unloaded[i:j].any())

    def is_walking(self, t_s: float, rate_hz: float) -> bool:
        i = int(round(t_s * rate_hz))
        return 0 <= i < len(self.walking) and bool(self.walking[i])


def gait_structure(recording, mode: TriggerMode) -> GaitStructure:
    """Stride period and walking time of ``recording`` from its trigger signal (see module doc)."""
    use_heel = recording.has_heel and (mode.needs_heel or not recording.has_imu)
    if use_heel:
        x, kind = np.asarray(recording.heel_n, float), "heel"
    else:
        from fescontrol.sim.recording import pitch_rate_dps
        x, kind = np.asarray(pitch_rate_dps(recording), float), "tilt"
    rate = recording.rate_hz
    w = max(3, int(round(ACTIVITY_WINDOW_S * rate)))
    kernel = np.ones(w) / w
    mean = np.convolve(x, kernel, mode="same")
    mstd = np.sqrt(np.maximum(np.convolve(x * x, kernel, mode="same") - mean * mean, 0.0))
    level = float(np.percentile(mstd, 95))
    if level < MIN_ACTIVITY[kind]:
        unit = "N" if kind == "heel" else "deg/s"
        hint = ("; if the patient did walk, the heel hardly loads (forefoot contact?): "
                "use a tilt (IMU) profile" if kind == "heel" else "")
        raise CalibrationError(f"{recording.name}: no walking found (the {kind} signal hardly "
                               f"varies: {level:.1f} {unit}, walking needs {MIN_ACTIVITY[kind]:g} {unit}); "
                               f"record a walk of at least 20 steps{hint}")
    walking = mstd > ACTIVITY_FRACTION * level
    if walking.sum() < 5 * rate:
        raise CalibrationError(f"{recording.name}: only {walking.sum() / rate:.1f} s of walking "
                               "found; record a walk of at least 20 steps")
    y = np.where(walking, x - x[walking].mean(), 0.0)
    nfft = 1 << int(np.ceil(np.log2(2 * len(y))))
    spec = np.fft.rfft(y, nfft)
    ac = np.fft.irfft(spec * np.conj(spec), nfft)[: len(y)]
    ac = ac / ac[0] if ac[0] > 0 else ac
    lo, hi = int(STRIDE_MIN_S * rate), min(len(ac) - 2, int(STRIDE_MAX_S * rate))
    seg = ac[lo:hi + 1]
    peaks = [i for i in range(1, len(seg) - 1) if seg[i] >= seg[i - 1] and seg[i] > seg[i + 1]]
    if not peaks:
        raise CalibrationError(f"{recording.name}: no stride rhythm found in {STRIDE_MIN_S}–"
                               f"{STRIDE_MAX_S} s; record a steady walk")
    best = max(seg[i] for i in peaks)
    first = next(i for i in peaks if seg[i] >= 0.8 * best)
    stride_s = (lo + first) / rate
    walking_s = float(walking.sum() / rate)
    unloaded = None
    if recording.has_heel:
        heel = np.asarray(recording.heel_n, float)
        unloaded = heel <= max(UNLOADED_MIN_N, UNLOADED_FRACTION * float(np.percentile(heel, 95)))
    return GaitStructure(stride_s, walking, walking_s, walking_s / stride_s, kind, unloaded)


# ----------------------------------------------------------------------------- figures
@dataclass(frozen=True)
class WalkFigures:
    """What one profile does on the walk. Times in s or ms as named; rates 0..1.

    Reference figures (``recall`` …) are NaN when the walk has no reference events.
    """

    objective: float
    objective_kind: str
    steps_detected: int
    regular_steps: int
    isolated_onsets: int
    standing_onsets: int
    walking_time_s: float
    stride_s: float
    cadence_spm: float
    swing_fraction_median: float
    onset_after_strike_pct: float
    timeouts: int
    bursts: int
    faults: int
    recall: float = math.nan
    precision: float = math.nan
    false_onsets: int = -1
    quiet_onsets: int = -1
    onset_error_median_ms: float = math.nan
    onset_error_iqr_ms: float = math.nan
    onset_in_window_fraction: float = math.nan
    reference_swings: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


FIGURE_ROWS = (
    ("objective (higher is better)", "objective", "{:.3f}"),
    ("steps detected (onsets)", "steps_detected", "{}"),
    ("regular steps", "regular_steps", "{}"),
    ("onsets off the stride rhythm", "isolated_onsets", "{}"),
    ("  of which in standing parts", "standing_onsets", "{}"),
    ("cadence (steps/min)", "cadence_spm", "{:.0f}"),
    ("detected swing / stride (median)", "swing_fraction_median", "{:.2f}"),
    ("onset, % of stride after heel strike", "onset_after_strike_pct", "{:.0f}"),
    ("max-stimulation cut-offs", "timeouts", "{}"),
    ("reference swings", "reference_swings", "{}"),
    ("recall", "recall", "{:.3f}"),
    ("precision", "precision", "{:.3f}"),
    ("false onsets", "false_onsets", "{}"),
    ("  of which while standing/quiet", "quiet_onsets", "{}"),
    ("onset - toe-off, median (ms)", "onset_error_median_ms", "{:.0f}"),
    ("onset - toe-off, IQR (ms)", "onset_error_iqr_ms", "{:.0f}"),
    ("onsets on time (-300..+20 ms)", "onset_in_window_fraction", "{:.3f}"),
)


def format_figures(before: WalkFigures, after: WalkFigures) -> str:
    """Before/after table as text."""
    lines = [f"{'':40} {'before':>10} {'after':>10}"]
    for label, key, fmt in FIGURE_ROWS:
        a, b = getattr(before, key), getattr(after, key)
        if key in ("recall", "precision", "onset_error_median_ms", "onset_error_iqr_ms",
                   "onset_in_window_fraction") and (isinstance(a, float) and math.isnan(a)):
            continue
        if key in ("false_onsets", "quiet_onsets", "reference_swings") and a in (-1, 0) and b in (-1, 0) \
                and math.isnan(before.recall):
            continue

        shown = ["-" if isinstance(v, float) and math.isnan(v) else fmt.format(v) for v in (a, b)]
        lines.append(f"{label:40} {shown[0]:>10} {shown[1]:>10}")
    return "\n".join(lines)


def _walk_figures(recording, result, structure: GaitStructure, kind: str) -> WalkFigures:
    t0 = result.t0_us
    onsets = np.array([(e.t_us - t0) / 1e6 for e in result.events if e.event == "heel_off"])
    strikes = np.array([(e.t_us - t0) / 1e6 for e in result.events if e.event == "heel_strike"])
    timeouts = sum(e.event == "timeout" for e in result.events)
    T = structure.stride_s
    lo, hi = (1 - RHYTHM_TOLERANCE) * T, (1 + RHYTHM_TOLERANCE) * T
    regular = odd = isolated = standing = 0
    swing_fractions, onset_pcts, intervals = [], [], []
    for i, t in enumerate(onsets):
        prev_gap = t - onsets[i - 1] if i > 0 else math.inf
        next_gap = onsets[i + 1] - t if i + 1 < len(onsets) else math.inf
        rhythmic = lo <= prev_gap <= hi or lo <= next_gap <= hi
        if lo <= next_gap <= hi:
            intervals.append(next_gap)
        j = np.searchsorted(strikes, t, side="right")
        limit = onsets[i + 1] if i + 1 < len(onsets) else math.inf
        swing = strikes[j] - t if j < len(strikes) and strikes[j] < limit else math.nan
        ok_swing = SWING_FRACTION_RANGE[0] * T <= swing <= SWING_FRACTION_RANGE[1] * T
        end = t + (swing if swing == swing else SWING_FRACTION_RANGE[1] * T)
        rhythmic = rhythmic and structure.unloads(t, end, recording.rate_hz)
        if not math.isnan(swing):
            swing_fractions.append(swing / T)
        if j > 0:
            since = t - strikes[j - 1]
            if 0 < since < STRIDE_MAX_S:
                onset_pcts.append(100.0 * since / T)
        if rhythmic and ok_swing:
            regular += 1
        elif rhythmic:
            odd += 1
        else:
            isolated += 1
            if not structure.is_walking(t, recording.rate_hz):
                standing += 1
    n_exp = max(structure.expected_strides, 1.0)
    excess = max(0.0, regular + odd - EXCESS_FACTOR * n_exp)
    structure_j = (min(regular + 0.5 * odd, n_exp) - isolated - excess) / n_exp
    stride = float(np.median(intervals)) if intervals else math.nan
    extra: dict[str, Any] = {}
    objective = structure_j
    if kind == "reference":
        from fescontrol.sim.scoring import ScoringRules, score
        rep = score(recording, result.bursts_s)
        lo_ms, hi_ms = ScoringRules().in_window_ms
        errs = np.asarray(rep.onset_errors_ms_all, float)
        timely = int(np.sum((errs >= lo_ms) & (errs <= hi_ms)))
        untimely = len(errs) - timely
        n_ref = max(rep.swings_reference, 1)
        objective = (timely + 0.5 * untimely - rep.false_onsets) / n_ref
        extra = dict(recall=rep.swing_recall, precision=rep.swing_precision, false_onsets=rep.false_onsets,
                     quiet_onsets=rep.quiet_onsets.get("total", 0),
                     onset_error_median_ms=rep.onset_error_ms["median"],
                     onset_error_iqr_ms=rep.onset_error_ms["iqr"],
                     onset_in_window_fraction=rep.onset_in_window_fraction,
                     reference_swings=rep.swings_reference)
    return WalkFigures(
        objective=float(objective), objective_kind=kind, steps_detected=len(onsets),
        regular_steps=regular, isolated_onsets=isolated, standing_onsets=standing,
        walking_time_s=structure.walking_s, stride_s=stride,
        cadence_spm=120.0 / stride if stride == stride and stride > 0 else math.nan,
        swing_fraction_median=float(np.median(swing_fractions)) if swing_fractions else math.nan,
        onset_after_strike_pct=float(np.median(onset_pcts)) if onset_pcts else math.nan,
        timeouts=int(timeouts), bursts=len(result.bursts_s), faults=len(result.faults), **extra)


# ----------------------------------------------------------------------------- calibrator
class Calibrator:
    """Propose detector settings for a profile's trigger mode from one walk.

    Parameters (stored only; :meth:`fit` does the work):
      profile         the current profile (its trigger mode decides what is searched);
      objective       "auto" (reference when the walk has reference events, else
                      structure), "reference" or "structure";
      passes          rounds of coordinate ascent over :data:`AXES` (1..4);
      implementation  kernel: "auto", "cython" or "python";
      progress        optional callable(done, total) for a progress bar;
      axes            the grid (default :data:`AXES` for the profile's trigger mode).

    Results after :meth:`fit` (names end in ``_``): ``proposed_`` (validated Profile),
    ``before_``/``after_`` (:class:`WalkFigures` of the current and proposed profile on the
    walk), ``changes_`` (:class:`Change` list), ``evaluated_`` / ``rejected_`` candidate
    counts, ``objective_`` (kind used), ``structure_`` (:class:`GaitStructure`),
    ``elapsed_s_``, ``before_result_``/``after_result_`` (replays, for figures).
    """

    def __init__(self, profile: Profile, *, objective: str = "auto", passes: int = 2,
                 implementation: str = "auto", progress: Callable[[int, int], None] | None = None,
                 axes: tuple[Axis, ...] | None = None):
        if objective not in ("auto", "reference", "structure"):
            raise ValueError(f"objective={objective!r}; allowed auto, reference, structure")
        if not 1 <= passes <= 4:
            raise ValueError(f"passes={passes}; allowed 1..4")
        self.profile = profile
        self.objective = objective
        self.passes = passes
        self.implementation = implementation
        self.progress = progress
        self.axes = axes

    def fit(self, recording) -> "Calibrator":
        from fescontrol.sim.replay import check_channels, recording_stream, replay
        t_start = time.perf_counter()
        check_channels(recording, self.profile)
        kind = self.objective
        if kind == "auto":
            kind = "reference" if has_reference(recording) else "structure"
        if kind == "reference" and not has_reference(recording):
            raise CalibrationError(f"{recording.name}: objective 'reference' needs reference events, "
                                   "and this walk has none; use 'structure'")
        mode = self.profile.trigger.mode
        structure = gait_structure(recording, mode)
        frames, _ = recording_stream(recording)
        stream = frames.tobytes()
        axes = self.axes if self.axes is not None else AXES[mode]
        cache: dict[str, tuple[float, Any]] = {}
        self.evaluated_ = self.rejected_ = 0
        total = self.passes * sum(len(a.values) for a in axes)
        done = 0

        def key_of(data: dict) -> str:
            return json.dumps(data["trigger"], sort_keys=True)

        def evaluate(data: dict) -> tuple[float, Any] | None:
            key = key_of(data)
            if key in cache:
                return cache[key]
            try:
                prof = profile_from_dict(data, "calibration candidate")
            except ProfileError:
                self.rejected_ += 1
                cache[key] = None
                return None
            result = replay(recording, prof, implementation=self.implementation, stream=stream)
            figures = _walk_figures(recording, result, structure, kind)
            self.evaluated_ += 1
            cache[key] = (figures.objective, (prof, figures, result))
            return cache[key]

        best_data = self.profile.model_dump(mode="json")
        min_gain = STRUCTURE_MIN_GAIN if kind == "structure" else 1e-9
        first = evaluate(best_data)
        assert first is not None  # the current profile is valid
        best_j, (_, before, before_result) = first
        for _ in range(self.passes):
            improved = False
            for axis in axes:
                base = best_data
                for value in axis.values:
                    done += 1
                    if self.progress:
                        self.progress(done, total)
                    got = evaluate(axis.apply(base, value))
                    if got is not None and got[0] >= best_j + min_gain:
                        best_j, best_data, improved = got[0], axis.apply(base, value), True
            if not improved:
                break
        if self.progress:
            self.progress(total, total)
        _, (proposed, after, after_result) = cache[key_of(best_data)]
        self.proposed_ = proposed
        self.before_, self.after_ = before, after
        self.before_result_, self.after_result_ = before_result, after_result
        self.changes_ = profile_changes(self.profile, proposed)
        self.objective_ = kind
        self.structure_ = structure
        self.elapsed_s_ = time.perf_counter() - t_start
        return self

    def summary(self) -> str:
        """Text for the orthotist: what changes and the before/after figures."""
        s = self.structure_
        basis = "reference events" if self.objective_ == "reference" else "gait structure"
        lines = [f"objective: {self.objective_} ({basis}); "
                 f"stride period {s.stride_s:.2f} s from the {s.signal} signal, {s.walking_s:.0f} s of walking; "
                 f"{self.evaluated_} candidates replayed, {self.rejected_} refused by the validator, "
                 f"{self.elapsed_s_:.1f} s"]
        if self.changes_:
            lines.append("proposed changes:")
            lines += [f"  {c.path}: {c.old} -> {c.new}" for c in self.changes_]
        else:
            lines.append("no change proposed: the current settings score best on this walk")
        lines.append("")
        lines.append(format_figures(self.before_, self.after_))
        return "\n".join(lines)


def calibrate(profile: Profile, recording, **kwargs) -> Calibrator:
    """Shortcut: ``Calibrator(profile, **kwargs).fit(recording)``."""
    return Calibrator(profile, **kwargs).fit(recording)


def plot_before_after(cal: Calibrator, recording, path: str, window_s: tuple[float, float] | None = None) -> str:
    """PNG: trigger signal with the before/after thresholds' detections and delivered current."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res_b, res_a = cal.before_result_, cal.after_result_
    t = res_b.trace["t_us"] / 1e6 - res_b.t0_us / 1e6
    if window_s is None:
        swings = recording.reference_swings()
        start = max(0.0, swings[0][0] - 1.0) if swings else float(np.argmax(cal.structure_.walking)) / recording.rate_hz
        window_s = (start, start + 10.0)
    a, b = window_s
    sel = (t >= a) & (t <= b)
    use_heel = cal.structure_.signal == "heel"
    signal = res_b.trace["heel_n" if use_heel else "pitch_rate_dps"]
    fig, axes = plt.subplots(3, 1, figsize=(11, 6.5), sharex=True)
    axes[0].plot(t[sel], signal[sel], lw=1, color="tab:blue")
    axes[0].set_ylabel("heel force (N)" if use_heel else "toe-up rate (deg/s)")
    for ax, res, label in ((axes[1], res_b, "before"), (axes[2], res_a, "after")):
        tt = res.trace["t_us"] / 1e6 - res.t0_us / 1e6
        ss = (tt >= a) & (tt <= b)
        ax.plot(tt[ss], res.trace["current_ma"][ss], color="tab:red", lw=1.2)
        on = [(e.t_us - res.t0_us) / 1e6 for e in res.events if e.event == "heel_off"]
        ax.plot([x for x in on if a <= x <= b], [0] * sum(a <= x <= b for x in on), "^", color="tab:orange")
        ax.set_ylabel(f"{label}: mA")
    for ax in axes:
        for to, hs in recording.reference_swings():
            if hs >= a and to <= b:
                ax.axvspan(to, hs, color="tab:green", alpha=0.12, lw=0)
    axes[-1].set_xlabel("time (s); shaded: reference swing; ▲ detected onset")
    axes[-1].set_xlim(a, b)
    fig.suptitle(f"calibration on {recording.name} ({recording.side}): before / after")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _json_default(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(type(value).__name__)


def calibration_json(cal: Calibrator) -> str:
    """The result as JSON (changes, figures, counts)."""
    data = {"objective": cal.objective_, "stride_s": cal.structure_.stride_s,
            "walking_s": cal.structure_.walking_s, "evaluated": cal.evaluated_, "rejected": cal.rejected_,
            "elapsed_s": cal.elapsed_s_, "changes": [asdict(c) for c in cal.changes_],
            "before": cal.before_.to_dict(), "after": cal.after_.to_dict()}
    return json.dumps(data, indent=2, default=_json_default,
                      allow_nan=True).replace("NaN", "null")


__all__ = ["AXES", "Axis", "CalibrationError", "Calibrator", "Change", "GaitStructure", "WalkFigures",
           "calibrate", "calibration_json", "format_figures", "gait_structure", "has_reference",
           "load_walk", "plot_before_after", "profile_changes", "record_walk"]
