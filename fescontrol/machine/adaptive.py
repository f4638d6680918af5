"""Adaptive stimulation: the next stride's plateau amplitude learned from this stride's foot pitch.

Run-to-run (iterative) learning after Seel, Werner, Raisch & Schauer 2016 (Control Eng
Practice 48:87–97): after each swing the error between the target foot pitch and the pitch
the foot reached corrects the amplitude of the next stride,

    e_k     = max(target_mid − mid_k, target_hs − hs_k[, target_late − late_k][, max_i path_i − p_k(f_i)])
              (deg; > 0: too low; the path: target.curve_deg at target.curve_fractions())
    Δ_k     = clip(g · e_k, −max_step, +max_step)      (0 when |e_k| ≤ deadband)
              g = gain when e_k > 0, decrease_fraction · gain when e_k < 0
    u_{k+1} = clip(u_k + Δ_k, amplitude_min_ma, amplitude_max_ma)

With ``error_median_strides`` N a decrease follows the median error of the last N learning
strides; with ``band`` a stride less than ``proportional_beyond_deg`` below target moves the
amplitude only by ``band.gain · median`` (decreases × decrease_fraction), so strides that
no current lifts do not ratchet it up (docs/adaptive.md, "the band"). The first climb of a
walk (``approach``) uses the proportional law also in the band, until a stride is within
``approach.settle_within_deg`` of target; the median starts again at the first stride that
reaches target. In that climb a stride still below target steps by its error over the lift
per mA measured between it and the walk's previous learning stride
(``approach.newton_min_lift_deg_per_ma``; a Newton step on this foot's recruitment slope, at
most ``max_step_ma``), where that lift is large enough to be the muscle's and not noise.
With ``floor`` (:class:`LowCurrentFloor`) a stride far below target, once the walk reached
it, keeps the current from coming back down below the amplitude that let it fall.

The larger of the two errors decides, so the amplitude settles at the least current that
brings both points up to their targets. Invariants (tests/test_adaptive.py, hypothesis):
``u`` never leaves the patient bounds; consecutive strides' amplitudes never differ by more
than ``max_step_ma``. Any doubt freezes the learning and holds the last good amplitude:
no heel strike (burst cut off, or a new onset first), a fault in the stride, sensor frames
lost in the swing, features the kernel could not measure, a swing longer or shorter than
normal, a patient's own intensity change (which wins: it holds for the rest of the walk).
A short swing with the foot below target is taken as an early toe contact caused by too
little current, and learned from (one full step up) instead of frozen.

Wind-up guard (``adaptive.saturation``, :class:`SaturationGuard`): an integrating law keeps
climbing while the foot stays low, also when more current no longer lifts it (recruitment
saturated, or a fatigued muscle at its floor) — charge and fatigue for nothing. When the
recent strides show no lift per mA, the climb stops at the lowest amplitude of that window
(reached from above at most ``max_step_ma`` per stride); the status and every logged stride
say ``saturated``. One step more is tried every ``probe_strides``; a foot that lifts ends it.

This runs at the event level, once per stride, on the sensor clock; the per-sample pitch
integration is in the kernel (:mod:`fescontrol.machine.stride_features`). New amplitudes go through
:meth:`fescontrol.safety.supervisor.SafetySupervisor.request_amplitude`, and the kernel applies
them only while the output is zero (from the next burst on).
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Callable

from fescontrol.core.profile import Adaptive, PatientBounds, Profile
from fescontrol.machine.onset_delay import OnsetDelayLearner, push_off_ms
from fescontrol.machine.stride_features import StrideFeatures, read_features

#: accepted swings whose median is the "normal" swing length
SWING_HISTORY = 5
#: the patient's +/- holds the amplitude (no learning) for the rest of the walk
PATIENT_CAUSES = frozenset({"up", "down", "set"})
#: the reason of a stride that ended early with the foot low (too little current)
EARLY_CONTACT = "early contact, foot low"


@dataclass(frozen=True)
class AdaptiveStride:
    """The learned state after one stride (one row of the session log's adaptive_strides)."""

    stride: int              # 1, 2, … in the session
    frame: int               # sensor frames processed when it was decided
    t_us: int                # sensor clock
    amplitude_ma: float      # plateau this stride was stimulated with
    next_ma: float           # plateau of the next stride
    error_deg: float         # target − measured at the limiting point (NaN: not measured)
    mid_swing_deg: float
    heel_strike_deg: float
    swing_ms: float
    status: str              # learn | hold | frozen
    reason: str = ""
    late_swing_deg: float = math.nan
    onset_delay_ms: float = 0.0    # zero output after the push-off for the next stride (adaptive.onset_delay)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class LearningLaw:
    """The update rule alone (pure, no state): see the module docstring."""

    def __init__(self, cfg: Adaptive, bounds: PatientBounds):
        if not cfg.enabled:
            raise ValueError("the learning law needs an enabled adaptive section")
        self.cfg = cfg
        self.lo = float(bounds.amplitude_min_ma)
        self.hi = float(bounds.amplitude_max_ma)
        self.gain = float(cfg.gain_ma_per_deg)
        self.max_step = float(cfg.max_step_ma)
        self.deadband = float(cfg.deadband_deg)
        self.decrease_fraction = float(cfg.decrease_fraction)
        self.band = cfg.band
        self.curve_fractions = tuple(cfg.target.curve_fractions()) if cfg.target is not None else ()

    def error_deg(self, f: StrideFeatures) -> float:
        t = self.cfg.target
        e = max(t.mid_swing_deg - f.mid_swing_deg, t.heel_strike_deg - f.heel_strike_deg)
        if t.late_swing_deg is not None:
            e = max(e, t.late_swing_deg - f.late_swing_deg)
        if t.curve_deg is not None:
            if len(f.curve_deg) != len(t.curve_deg):
                raise ValueError(f"the stride has {len(f.curve_deg)} points of the target path, "
                                 f"the target {len(t.curve_deg)}")
            e = max(e, max(want - got for want, got in zip(t.curve_deg, f.curve_deg)))
        return e

    def next_amplitude(self, amplitude_ma: float, error_deg: float, median_deg: float | None = None, *,
                       approaching: bool = False) -> float:
        """u + clip(gain·e, ±max_step), kept in [lo, hi]; with a band, near target a step by
        the band's gain times the median error. A decrease by the proportional law follows
        ``median_deg`` (the median error of the last strides), not one stride. ``approaching``
        (the walk's first climb is not over: no stride has reached target yet, or with
        ``approach.settle_within_deg`` none has come that close to it) with an ``approach``
        section: the proportional law also inside the band (with ``settle_within_deg`` also for
        a foot above target). ValueError for a non-finite error."""
        if not math.isfinite(error_deg):
            raise ValueError(f"pitch error {error_deg!r} is not a finite number")
        med = error_deg if median_deg is None else median_deg
        b = self.band
        a = self.cfg.approach
        if approaching and b is not None and a is not None and (
                error_deg > self.deadband or a.settle_within_deg is not None):
            b = None
        if b is not None and error_deg <= b.proportional_beyond_deg:
            far = float(b.proportional_beyond_deg)
            step = float(b.gain_ma_per_deg) * min(far, max(-far, med))
            if step < 0.0:
                step *= self.decrease_fraction
            return self.bounded(amplitude_ma + min(self.max_step, max(-self.max_step, step)))
        if error_deg <= 0.0:
            error_deg = min(0.0, med)
        step = 0.0 if abs(error_deg) <= self.deadband else self.gain * error_deg
        if step < 0.0:
            step *= self.decrease_fraction
        step = min(self.max_step, max(-self.max_step, step))
        return self.bounded(amplitude_ma + step)

    def secant(self, below: tuple[float, float], used_ma: float, error_deg: float) -> float | None:
        """The first stride that reached target overshot it by more than
        ``approach.secant_overshoot_deg``: ``approach.secant_fraction`` of the way from
        ``used_ma`` down to where the line through ``below`` (amplitude, error > 0 of the last
        stride below target) and this stride crosses 0, at most ``max_step_ma`` under
        ``used_ma`` and never above it; None when the overshoot is smaller, the points do not
        bracket the target, or there is no approach."""
        a = self.cfg.approach
        u0, e0 = below
        if a is None or not error_deg < -float(a.secant_overshoot_deg) or not e0 > 0.0 or not u0 < used_ma:
            return None
        cross = u0 + e0 / (e0 - error_deg) * (used_ma - u0)
        cross = used_ma - float(a.secant_fraction) * (used_ma - cross)
        return self.bounded(max(used_ma - self.max_step, min(used_ma, cross)))

    def newton(self, last: tuple[float, float] | None, used_ma: float, error_deg: float) -> float | None:
        """A foot below target in the approach: ``used_ma`` + error / lift per mA, the lift
        measured between ``last`` (amplitude, error of the walk's previous learning stride)
        and this stride, at most ``max_step_ma`` more, kept in the bounds; None without
        ``approach.newton_min_lift_deg_per_ma``, with the foot not below target (error within
        the deadband or above it), the amplitudes closer than ``newton_min_span_ma``, or a
        lift per mA below ``newton_min_lift_deg_per_ma`` (below the motor threshold, or
        stride noise: the fixed gain then). Never lowers the amplitude."""
        a = self.cfg.approach
        if a is None or a.newton_min_lift_deg_per_ma is None or last is None or not error_deg > self.deadband:
            return None
        u0, e0 = last
        if not abs(used_ma - u0) >= float(a.newton_min_span_ma):
            return None
        lift = (e0 - error_deg) / (used_ma - u0)
        if not lift >= float(a.newton_min_lift_deg_per_ma):
            return None
        return self.bounded(used_ma + min(self.max_step, error_deg / lift))

    def bounded(self, amplitude_ma: float) -> float:
        return min(self.hi, max(self.lo, amplitude_ma))

    def swing_check(self, swing_ms: float, normal_ms: float | None) -> int:
        """-1 short, +1 long, 0 normal: against the profile's range and, once known, within
        ``max_change_fraction`` of the median of the last accepted swings."""
        s = self.cfg.swing
        lo, hi = float(s.min_ms), float(s.max_ms)
        if normal_ms is not None:
            lo = max(lo, normal_ms * (1.0 - s.max_change_fraction))
            hi = min(hi, normal_ms * (1.0 + s.max_change_fraction))
        return -1 if swing_ms < lo else (1 if swing_ms > hi else 0)


#: strides whose mean pitch error tells the descent toward the knee that the foot drops
KNEE_STRIDES = 4


class SaturationGuard:
    """The wind-up guard alone (see the module docstring). ``ceiling_ma`` is None while the
    foot answers the current, else the amplitude the learning may not climb above.

    Phases once more current stopped lifting the foot: ``descend`` — the ceiling comes down
    ``descend_ma`` per stride from the lowest amplitude of the flat window while the foot
    keeps the lift it had there (mean error of the last KNEE_STRIDES strides within
    ``knee_tol_deg``); when it drops, the ceiling goes back up above that knee and the phase
    is ``hold``; after ``probe_strides`` strides ``probe`` allows one ``max_step_ma`` more:
    a flat window starts a new descent, a foot that lifts per mA again ends the guard. A
    descent stops at ``knee_ma``, the hold an earlier descent found (kept for the session:
    fatigue moves the knee up, and a descent that finds the foot dropping above it sets the
    new one), instead of finding it again through strides that drag.

    Invariant: the amplitude it returns is never above the law's and never below
    ``min(law's, max(ceiling, used - max_step))``: the step and bound invariants hold."""

    def __init__(self, cfg, law: LearningLaw):
        self.cfg = cfg
        self.law = law
        self.points: deque[tuple[float, float]] = deque(maxlen=int(cfg.window_strides))
        creep = cfg.creep_window_strides
        self.long: deque[tuple[float, float]] | None = deque(maxlen=int(creep)) if creep else None
        self.ceiling_ma: float | None = None
        self.phase = ""
        self.level_deg = 0.0     # mean error where the current stopped lifting
        self.recent: deque[float] = deque(maxlen=KNEE_STRIDES)
        self.since = 0
        self.knee_ma: float | None = None   # the hold a descent found; later descents stop there

    @staticmethod
    def lift_deg_per_ma(points) -> float:
        """Least-squares lift of the foot per mA (−d error / d amplitude) over ``points``
        [(amplitude_ma, error_deg)]; NaN when the amplitudes do not vary."""
        n = len(points)
        ma = sum(a for a, _ in points) / n
        me = sum(e for _, e in points) / n
        var = sum((a - ma) ** 2 for a, _ in points)
        if var <= 0.0:
            return math.nan
        return -sum((a - ma) * (e - me) for a, e in points) / var

    def _window_lift(self, points=None) -> float:
        """The window's lift per mA, NaN while it is not full or spans too little current."""
        points = self.points if points is None else points
        if len(points) < points.maxlen:
            return math.nan
        amps = [a for a, _ in points]
        if max(amps) - min(amps) < self.cfg.min_span_ma:
            return math.nan
        return self.lift_deg_per_ma(points)

    def _pinned(self) -> bool:
        """The whole window at the patient maximum with the foot below target on most strides."""
        if len(self.points) < self.points.maxlen:
            return False
        if any(a < self.law.hi - 1e-6 for a, _ in self.points):
            return False
        return sum(e > 0.0 for _, e in self.points) * 2 > len(self.points)

    def _saturated(self, points=None) -> None:
        points = self.points if points is None else points
        self.ceiling_ma = min(a for a, _ in points)
        # the lift it kept: the window's upper half of amplitudes (a climb may have crossed
        # the knee inside the window, and strides below it are lower)
        upper = sorted(points, reverse=True)[:max(1, len(points) // 2)]
        self.level_deg = sum(e for _, e in upper) / len(upper)
        self.phase = "descend"
        self.recent.clear()
        self.since = 0
        if self.knee_ma is not None and self.ceiling_ma <= self.knee_ma:
            self.ceiling_ma, self.phase = self.knee_ma, "hold"

    def forget_window(self) -> None:
        """The next strides are stimulated with another onset delay: the lift per mA is fitted
        again from them (a window spanning two delays mixes the delay's effect on the error
        into the slope and can find "no lift per mA" where the current still lifts the foot)."""
        self.points.clear()
        if self.long is not None:
            self.long.clear()

    def limit(self, used_ma: float, error_deg: float, nxt_ma: float) -> float:
        """The next amplitude after a stride the law learned from (used, error → nxt)."""
        cfg = self.cfg
        self.points.append((used_ma, error_deg))
        if self.long is not None:
            self.long.append((used_ma, error_deg))
        lift = self._window_lift()
        if self.ceiling_ma is None or self.phase == "probe":
            creep = math.nan
            if self.ceiling_ma is None and self.long is not None and not lift <= cfg.min_lift_deg_per_ma:
                creep = self._window_lift(self.long)
            if lift <= cfg.min_lift_deg_per_ma:
                self._saturated()
            elif self.ceiling_ma is None and self._pinned():
                # at the patient maximum for a whole window and the foot still below target:
                # no spread of amplitudes to fit, but no current left either; look for the knee below
                self._saturated()
            elif creep <= cfg.min_lift_deg_per_ma:
                # a slow climb: too little current per short window to see, no lift over the long one
                self._saturated(self.long)
            elif lift > cfg.min_lift_deg_per_ma and self.phase == "probe":
                self.ceiling_ma, self.phase = None, ""
            elif self.phase == "probe":
                self.since += 1
                if self.since >= cfg.window_strides:
                    # the step more showed no lift per mA (often none at all: the amplitude sat
                    # at the probed limit): back to the limit before the probe
                    self.ceiling_ma = self.law.bounded(self.ceiling_ma - self.law.max_step)
                    self.phase, self.since = "hold", 0
        elif self.phase == "descend":
            self.recent.append(error_deg)
            if len(self.recent) == KNEE_STRIDES and sum(self.recent) / KNEE_STRIDES > self.level_deg + cfg.knee_tol_deg:
                # the foot dropped: the knee is above; go back over it and hold there
                self.ceiling_ma = self.law.bounded(self.ceiling_ma + (KNEE_STRIDES + 1) * cfg.descend_ma)
                self.phase, self.since, self.knee_ma = "hold", 0, self.ceiling_ma
            elif self.knee_ma is not None and self.ceiling_ma - cfg.descend_ma <= self.knee_ma:
                # down at the knee an earlier descent found: below it the foot drops (the strides
                # that tell it so drag); hold there
                self.ceiling_ma, self.phase, self.since = self.knee_ma, "hold", 0
            else:
                self.ceiling_ma = self.law.bounded(self.ceiling_ma - cfg.descend_ma)
        else:
            self.since += 1
            if self.since >= cfg.probe_strides:
                self.ceiling_ma = self.law.bounded(self.ceiling_ma + self.law.max_step)
                self.phase, self.since = "probe", 0
        if self.ceiling_ma is None:
            return nxt_ma
        return min(nxt_ma, max(self.ceiling_ma, used_ma - self.law.max_step))


class LowCurrentFloor:
    """``adaptive.floor`` alone: memory of an amplitude found too low (docs/adaptive.md, "The
    floor"). Once the walk reached its target, a stride whose foot fell more than
    ``beyond_deg`` below it sets ``floor_ma`` = the amplitude it had + ``fraction`` of the step
    up the law took after it, for ``strides`` learning strides (a new one renews it). While it
    lasts a decrease stops at ``floor_ma``.

    Why: near target the band moves the current by the median error, so it comes down while
    most strides are above target, until a walker's hardest strides (a few in every few dozen,
    the same ones each time round) fall below it and drag; the step up after them is undone
    again within a cycle (a saw-tooth, the steep feet's toe drag). The floor keeps what those
    strides taught.

    Invariant: the amplitude returned lies between the law's ``nxt_ma`` and ``used_ma`` (it
    only holds a decrease back, never raises): bounds and step limit hold."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.floor_ma: float | None = None
        self.left = 0

    def reset(self) -> None:
        """A new walk: nothing learned about this walk's strides yet."""
        self.floor_ma, self.left = None, 0

    def limit(self, used_ma: float, error_deg: float, nxt_ma: float, reached: bool) -> float:
        """The next amplitude after a learning stride (used, error → the law's nxt);
        ``reached``: a stride of this walk has reached target (the climb is over)."""
        if self.left > 0:
            self.left -= 1
            if self.left == 0:
                self.floor_ma = None
        if reached and error_deg > self.cfg.beyond_deg:
            self.floor_ma = used_ma + float(self.cfg.fraction) * max(0.0, nxt_ma - used_ma)
            self.left = int(self.cfg.strides)
        if self.floor_ma is None or nxt_ma >= used_ma:
            return nxt_ma
        return max(nxt_ma, min(used_ma, self.floor_ma))


class AdaptiveStimulation:
    """The learning loop on one controller: fed every logged kernel event (after the gait
    machine handled it), it decides the next stride's amplitude at each heel strike.

    ``records`` keeps the newest ``history`` :class:`AdaptiveStride` (all when None);
    ``listeners`` get every one (the session log, the patient modes)."""

    def __init__(self, profile: Profile, kernel, supervisor, *, history: int | None = None, machine=None):
        """``machine`` (the gait machine) gets the learned onset delay (``onset_delay_us``)
        when ``adaptive.onset_delay`` is set; without it the delay is learned and logged only."""
        self.profile = profile
        self.machine = machine
        self.kernel = kernel
        self.supervisor = supervisor
        self.law = LearningLaw(profile.adaptive, profile.patient)
        sat = profile.adaptive.saturation
        self.guard = SaturationGuard(sat, self.law) if sat is not None else None
        fl = profile.adaptive.floor
        self.floor = LowCurrentFloor(fl) if fl is not None else None
        od = profile.adaptive.onset_delay
        self.onset_delay = OnsetDelayLearner(od) if od is not None else None
        self._push_ms = math.nan
        self._delay_ms = 0.0
        self.records: list[AdaptiveStride] | deque[AdaptiveStride] = [] if history is None else deque(maxlen=history)
        self.listeners: list[Callable[[AdaptiveStride], None]] = []
        self.amplitude_ma = self.law.lo          # last good amplitude (what the next stride gets)
        self.strides = 0
        self.walks = 0
        self.patient_hold = False
        self.status = "waiting for the first stride"
        self._swings: deque[float] = deque(maxlen=SWING_HISTORY)
        self._errors: deque[float] = deque(maxlen=int(profile.adaptive.error_median_strides))
        self._open = False
        self._reached = False        # a learning stride of this walk reached its target
        self._settled = False        # ... and the approach is over (approach.settle_within_deg)
        self._below: tuple[float, float] | None = None   # (amplitude, error) of the last stride below it
        self._last: tuple[float, float] | None = None    # (amplitude, error) of the walk's last learning stride
        self._onset_lost = 0
        self._onset_t_us = 0
        self._onset_flat_age_us = 0
        self._onset_faults = 0
        self.features: StrideFeatures | None = None    # of the last stride that ended at a heel strike
        supervisor.fault_listeners.append(self.on_fault)

    # ----- from the controller and the patient modes ------------------------------------------
    def begin_walk(self) -> None:
        """A walk starts: the session's first at the patient minimum (the conservative
        start), later ones at the last good amplitude. A patient's hold from the last walk ends."""
        if self.walks == 0:
            self.amplitude_ma = self.law.lo
        self.walks += 1
        self.patient_hold = False
        self._open = False
        self._errors.clear()
        self._reached = False
        self._settled = False
        self._below = None
        self._last = None
        if self.floor is not None:
            self.floor.reset()
        self._request(self.amplitude_ma)
        self.status = f"learning from {self.amplitude_ma:g} mA"

    def on_patient_intensity(self, level_ma: float, cause: str) -> None:
        """The patient (or a replay of them) set the intensity: it wins. ``restored`` (a
        remembered level) is not the patient's choice for this walk and is ignored."""
        if cause not in PATIENT_CAUSES:
            return
        self.amplitude_ma = float(level_ma)
        self.patient_hold = True
        self.status = f"held at {level_ma:g} mA: your intensity change (until the next walk)"

    def on_event(self, entry) -> None:
        """A kernel event as the controller logged it (``entry.event``: the trigger name)."""
        name = entry.event
        if name == "heel_off":
            if self._open:
                self._frozen("no heel strike before the next onset")
            k = self.kernel
            self._open = True
            self._onset_lost = int(k.frames_lost)
            self._onset_t_us = int(k.t_us)
            self._onset_flat_age_us = int(k.foot_flat_age_us)
            self._onset_faults = len(self.supervisor.faults)
        elif name == "heel_strike" and self._open:
            self._open = False
            self._stride_end()
        elif name == "timeout" and self._open:
            self._open = False
            self._frozen("no heel strike: the burst was cut off at max_stim_ms")

    def on_fault(self, _reason=None) -> None:
        """A fault latched (the supervisor's listener): a stride in progress is not learned from."""
        if self._open:
            self._open = False
            self._frozen("fault in the stride")

    # ----- the decision --------------------------------------------------------------------------
    def _stride_end(self) -> None:
        k = self.kernel
        cfg = self.profile.adaptive
        f = read_features(k, self._onset_flat_age_us, self._onset_t_us, cfg.mid_swing_fraction,
                          cfg.late_swing_fraction, self.law.curve_fractions)
        self.features = f
        if self.onset_delay is not None:
            self._push_ms = push_off_ms(k.swing_pitch, int(k.swing_n), int(k.p.period_us))
        used = float(k.amplitude_ma)
        if self.patient_hold:
            return self._frozen("patient intensity change (holds until the next walk)", f)
        if len(self.supervisor.faults) != self._onset_faults or k.fault:
            return self._frozen("fault in the stride", f)
        if int(k.frames_lost) != self._onset_lost:
            return self._frozen("sensor frames lost in the swing", f)
        if f.problem:
            return self._frozen(f.problem, f)
        error = self.law.error_deg(f)
        normal = sorted(self._swings)[len(self._swings) // 2] if len(self._swings) >= 3 else None
        length = self.law.swing_check(f.swing_ms, normal)
        if length > 0:
            return self._frozen("swing longer than normal", f, error)
        if length < 0:
            if error <= self.law.deadband:
                return self._frozen("swing shorter than normal", f, error)
            # early toe contact with the foot low: too little current; one full step up
            nxt = self.law.bounded(used + self.law.max_step)
            return self._record(used, nxt, error, f, "learn", EARLY_CONTACT)
        self._swings.append(f.swing_ms)
        self._errors.append(error)
        nxt = self.law.next_amplitude(used, error, self._median_error(), approaching=not self._settled)
        if not self._settled:
            # the climb: by this foot's own lift per mA where the last two strides measured it
            climb = self.law.newton(self._last, used, error)
            nxt = nxt if climb is None else climb
        self._last = (used, error)
        a = self.profile.adaptive.approach
        if a is not None and a.settle_within_deg is not None:
            self._settled = self._settled or abs(error) <= a.settle_within_deg
        else:
            self._settled = self._reached or error <= self.law.deadband
        if not self._reached:
            if error <= self.law.deadband:
                self._reached = True
                # the climb's errors (far lower currents) say nothing about the error near
                # this one: the median starts again from this stride
                self._errors.clear()
                self._errors.append(error)
                cross = None if self._below is None else self.law.secant(self._below, used, error)
                if cross is not None:
                    nxt = cross
            else:
                self._below = (used, error)
        reason = ""
        if self.floor is not None:
            law_nxt, nxt = nxt, self.floor.limit(used, error, nxt, self._reached)
            if nxt > law_nxt:
                reason = f"floor: held at {nxt:.1f} mA (a stride fell far below target at less)"
        if self.guard is not None:
            nxt = self.guard.limit(used, error, nxt)
            if self.guard.ceiling_ma is not None:
                reason = (f"saturated: more current no longer lifts the foot ({self.guard.phase}, at most "
                          f"{self.guard.ceiling_ma:.1f} mA)")
        self._record(used, nxt, error, f, "hold" if nxt == used else "learn", reason)

    def _median_error(self) -> float:
        """The median of the last ``error_median_strides`` learning strides' errors (all
        there are at the start of a walk; the stride's own with 1)."""
        e = sorted(self._errors)
        n = len(e)
        return e[n // 2] if n % 2 else 0.5 * (e[n // 2 - 1] + e[n // 2])

    def _frozen(self, reason: str, f: StrideFeatures | None = None, error: float = math.nan) -> None:
        self._record(float(self.kernel.amplitude_ma), self.amplitude_ma, error, f, "frozen", reason, learn=False)

    def _record(self, used: float, nxt: float, error: float, f: StrideFeatures | None, status: str,
                reason: str = "", *, learn: bool = True) -> None:
        if learn:
            self.amplitude_ma = nxt
        self._request(self.amplitude_ma)
        delay_ms = self._learn_delay(status, reason, error, f)
        self.strides += 1
        k = self.kernel
        nan = math.nan
        rec = AdaptiveStride(self.strides, int(k.frames), int(k.t_us), used, self.amplitude_ma,
                             float(error), f.mid_swing_deg if f else nan, f.heel_strike_deg if f else nan,
                             f.swing_ms if f else nan, status, reason, f.late_swing_deg if f else nan,
                             delay_ms)
        self.records.append(rec)
        if status == "frozen":
            self.status = f"frozen at {self.amplitude_ma:g} mA: {reason}"
        elif reason.startswith("saturated"):
            self.status = (f"saturated at {self.amplitude_ma:.1f} mA: more current no longer lifts the foot "
                           f"(pitch error {error:+.1f}°)")
        else:
            self.status = f"{status} {self.amplitude_ma:.1f} mA (pitch error {error:+.1f}°)"
        if self.onset_delay is not None:
            self.status += f", onset delay {delay_ms:.0f} ms"
        for listener in self.listeners:
            listener(rec)

    def _learn_delay(self, status: str, reason: str, error: float, f: StrideFeatures | None) -> float:
        """The next stride's onset delay (ms) from this stride (``adaptive.onset_delay``; 0
        without it), handed to the gait machine."""
        od = self.onset_delay
        if od is None:
            return 0.0
        if status == "frozen":
            delay = od.frozen()
        elif self.guard is not None and self.guard.ceiling_ma is not None:
            # more current no longer lifts the foot: what a delay takes from the lift cannot
            # be made up with current
            delay = od.saturated()
        elif reason == EARLY_CONTACT:
            delay = od.early_contact()
        else:
            mid_short = self.profile.adaptive.target.mid_swing_deg - f.mid_swing_deg
            delay = od.learned(error, mid_short, self._push_ms, may_lengthen=self._settled)
        self._push_ms = math.nan
        if self.guard is not None and delay > self._delay_ms:
            self.guard.forget_window()
        self._delay_ms = delay
        if self.machine is not None:
            self.machine.onset_delay_us = int(round(delay * 1000.0))
        return delay

    def _request(self, amplitude_ma: float) -> None:
        if self.kernel.fault:
            return           # output is zero; the amplitude is asked for again at the next walk
        self.supervisor.request_amplitude(amplitude_ma, self.law.lo, self.law.hi)
