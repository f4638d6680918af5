"""Seeded synthetic gait with a heel force sensor AND a foot IMU, and exact events.

Over 400 lines: the scenario segments and the one generator that plays them, with exact events.

A scenario is a list of segments played one after the other::

    rec = synthesize([Stand(3), Walk(20, cadence_spm=100, pattern="hemiparetic"),
                      Turn(3), Walk(10, 110, cadence_end_spm=90), Sit(8), Stairs(8)],
                     rate_hz=100, seed=0)

Every segment starts and ends with the foot flat and the heel loaded, so segments join
without steps in the signals. Walking segments (:class:`Walk`, :class:`Stairs`) are whole
gait cycles from foot-flat to foot-flat; the time left over after the last cycle that
fits is flat stance. All other segments are quiet: their span goes into
``quiet_intervals_s`` (Stand → "standing", Sit → "sitting", WeightShift →
"weight_shift", Turn → "turning"), minus reference swings ± 0.3 s.

One gait cycle (stride time ``T = 120 / cadence_spm`` s, jittered by ``variability``)::

    foot flat ─ heel-off ─ toe-off ── swing ── heel strike ─ loading ─ foot flat
    heel_n:  loaded, tapers to 0 at heel-off; 0 from heel-off to heel strike; heel-strike
             transient to ``heel_peak_n``, settles to the flat level (0.75 × peak)
    toe-up pitch rate: 0 in flat stance; push-off dip from heel-off, peak
             ``pushoff_dip_dps`` 10 ms before toe-off, back to 0 60 ms after toe-off;
             mid-swing peak ``swing_peak_dps``; the loading bump after heel strike
             brings the foot angle back to exactly 0 (negative spike when the heel lands
             first with the toes up, positive when the forefoot lands first)

The foot angle is the exact integral of the pitch rate; the accelerometer is gravity
rotated into the pitched foot frame plus the swing's forward (min-jerk over the stride
length) and vertical (clearance, stair rise) acceleration. Events are exact (not on the
sample grid): heel-off = heel force reaches 0, toe-off, heel strike = heel force leaves 0.

Units: s, N, deg/s, m/s², m. Frame: the canonical IMU frame of :mod:`fescontrol.sim.recording`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Union

import numpy as np

from .recording import (GRAVITY_MS2, QUIET_SWING_MARGIN_S, Recording, quiet_without_swings)

PUSHOFF_FALL_S = 0.06      # dip returns to 0 this long after toe-off
PUSHOFF_PEAK_BEFORE_S = 0.01
SWING_END_GAP_S = 0.02     # swing bump ends this long before heel strike
HEEL_TRANSIENT_S = 0.05    # heel strike to heel force peak


@dataclass(frozen=True)
class GaitPattern:
    """How one foot walks. Units in the names; defaults are a healthy adult."""

    swing_fraction: float = 0.38     # swing / stride
    heel_off_lead_s: float = 0.18    # heel-off before toe-off (0 = heel and toe lift together)
    loading_s: float = 0.15          # heel strike to foot flat
    heel_peak_n: float = 600.0       # heel-strike transient peak; flat stance = 0.75 × this
    pushoff_dip_dps: float = -300.0  # toe-up pitch rate minimum near toe-off (<= 0)
    swing_peak_dps: float = 350.0    # mid-swing toe-up peak
    stride_length_m: float = 1.3
    clearance_m: float = 0.10        # peak foot lift in swing
    stride_rise_m: float = 0.0       # height gained per stride (stairs)

    def __post_init__(self) -> None:
        if not 0.15 <= self.swing_fraction <= 0.6:
            raise ValueError(f"swing_fraction {self.swing_fraction} outside 0.15..0.6")
        if self.heel_off_lead_s < 0 or self.loading_s < 0.08:
            raise ValueError("heel_off_lead_s must be >= 0 and loading_s >= 0.08 s")
        if self.pushoff_dip_dps > 0 or self.heel_peak_n < 0:
            raise ValueError("pushoff_dip_dps must be <= 0 and heel_peak_n >= 0")


#: Named patterns. "hemiparetic" is the affected (foot-drop) side: longer stance, weak
#: push-off, toe drag (heel-off only 40 ms before toe-off), low swing pitch peak, short
#: low steps. "stairs": forefoot contact, the heel barely loads, the foot rises.
PATTERNS: dict[str, GaitPattern] = {
    "normal": GaitPattern(),
    "hemiparetic": GaitPattern(swing_fraction=0.30, heel_off_lead_s=0.04, loading_s=0.12,
                               heel_peak_n=380.0, pushoff_dip_dps=-90.0, swing_peak_dps=110.0,
                               stride_length_m=0.7, clearance_m=0.03),
    "stairs": GaitPattern(swing_fraction=0.40, heel_off_lead_s=0.12, loading_s=0.12,
                          heel_peak_n=40.0, pushoff_dip_dps=-200.0, swing_peak_dps=60.0,
                          stride_length_m=0.56, clearance_m=0.08, stride_rise_m=0.34),
}


@dataclass(frozen=True)
class Noise:
    """White sensor noise (standard deviations). Heel noise only where the heel is loaded."""

    gyro_dps: float = 2.0
    acc_ms2: float = 0.05
    heel_n: float = 3.0


NO_NOISE = Noise(0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Walk:
    """Level walking; cadence changes linearly to ``cadence_end_spm`` if given."""

    duration_s: float
    cadence_spm: float = 105.0
    pattern: Union[str, GaitPattern] = "normal"
    cadence_end_spm: float | None = None


@dataclass(frozen=True)
class Stairs:
    """Stair climbing: walking with the "stairs" pattern (reference swings, not quiet)."""

    duration_s: float
    cadence_spm: float = 90.0
    pattern: Union[str, GaitPattern] = "stairs"


@dataclass(frozen=True)
class Stand:
    """Quiet standing: heel loaded with slow sway, foot still."""

    duration_s: float


@dataclass(frozen=True)
class Sit:
    """Sit down (``transition_s``), sit with the heel nearly unloaded, stand up; no foot rotation."""

    duration_s: float
    transition_s: float = 1.0
    seated_heel_n: float = 30.0


@dataclass(frozen=True)
class WeightShift:
    """Shifting weight in place: the heel force oscillates partially (to 1 - depth of standing)."""

    duration_s: float
    period_s: float = 2.0
    depth_fraction: float = 0.7


@dataclass(frozen=True)
class Turn:
    """Turning in place: yaw (gyro z) bumps, little pitch, heel partly unloading per pivot."""

    duration_s: float
    angle_deg: float = 180.0          # + = to the left (counter-clockwise seen from above)
    pivot_period_s: float = 0.8


Segment = Union[Walk, Stairs, Stand, Sit, WeightShift, Turn]
QUIET_KIND = {Stand: "standing", Sit: "sitting", WeightShift: "weight_shift", Turn: "turning"}


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _bump(t: np.ndarray, start: float, peak: float, end: float, amp: float) -> tuple[np.ndarray, np.ndarray]:
    """Asymmetric raised-cosine bump (value, exact running integral) on times ``t``.

    Rises from 0 at ``start`` to ``amp`` at ``peak``, falls to 0 at ``end``;
    area = amp × (end - start) / 2.
    """
    w1, w2 = peak - start, end - peak
    val = np.zeros_like(t)
    integ = np.zeros_like(t)
    a = (t > start) & (t <= peak)
    x = t[a] - start
    val[a] = amp * 0.5 * (1 - np.cos(np.pi * x / w1))
    integ[a] = amp * 0.5 * (x - w1 / np.pi * np.sin(np.pi * x / w1))
    b = (t > peak) & (t < end)
    x = t[b] - peak
    val[b] = amp * 0.5 * (1 + np.cos(np.pi * x / w2))
    integ[b] = amp * 0.5 * w1 + amp * 0.5 * (x + w2 / np.pi * np.sin(np.pi * x / w2))
    integ[t >= end] = amp * 0.5 * (w1 + w2)
    return val, integ


class _Signals:
    """Per-sample buffers being written by the segment builders."""

    def __init__(self, n: int, rate_hz: float, stand_heel_n: float):
        self.n = n
        self.rate_hz = rate_hz
        self.t = np.arange(n) / rate_hz
        self.heel = np.full(n, stand_heel_n)
        self.pitch_dps = np.zeros(n)     # toe-up pitch rate
        self.angle_deg = np.zeros(n)     # toe-up foot angle
        self.roll_dps = np.zeros(n)
        self.yaw_dps = np.zeros(n)
        self.a_fwd = np.zeros(n)         # world-frame linear acceleration, m/s²
        self.a_up = np.zeros(n)
        self.stand_heel_n = stand_heel_n

    def span(self, t0: float, t1: float) -> slice:
        """Samples i with t0 <= i / rate_hz < t1."""
        def idx(t: float) -> int:
            return min(self.n, max(0, int(np.ceil(t * self.rate_hz - 1e-9))))
        return slice(idx(t0), idx(t1))


def _pattern(p: Union[str, GaitPattern]) -> GaitPattern:
    if isinstance(p, GaitPattern):
        return p
    if p not in PATTERNS:
        raise ValueError(f"unknown gait pattern {p!r}; known: {sorted(PATTERNS)}")
    return PATTERNS[p]


def _walk(sig: _Signals, t0: float, t1: float, cad0: float, cad1: float, pat: GaitPattern,
          rng: np.random.Generator, variability: float, events: dict) -> None:
    """Whole cycles in [t0, t1); appends exact events to ``events``."""
    for cad in (cad0, cad1):
        if not 30.0 <= cad <= 180.0:
            raise ValueError(f"cadence {cad} steps/min outside 30..180")
    flat_level = 0.75 * pat.heel_peak_n
    c, first, cycles = t0, True, 0
    while True:
        frac = (c - t0) / max(t1 - t0, 1e-9)
        stride = 120.0 / (cad0 + (cad1 - cad0) * frac)
        stride *= 1.0 + variability * rng.standard_normal()
        if c + stride > t1 + 1e-9:
            break
        scale = 1.0 + 0.5 * variability * rng.standard_normal(3)
        hs = c + stride - pat.loading_s
        to = hs - pat.swing_fraction * stride
        ho = to - pat.heel_off_lead_s
        if ho < c + 0.05:
            raise ValueError(f"cadence {cad0}..{cad1} spm is too fast for this pattern: "
                             "no flat stance left before heel-off")
        sl = sig.span(c, c + stride)
        t = sig.t[sl]
        # heel force: taper to 0 at heel-off, transient after heel strike, settle to flat level
        start_level = sig.stand_heel_n if first else flat_level
        taper = start_level * (1 - _smoothstep((t - c - 0.2 * (ho - c)) / (0.8 * (ho - c))))
        heel = np.where(t < ho, taper, 0.0)
        u = t - hs
        rise = _smoothstep(u / HEEL_TRANSIENT_S)
        settle = 1 - 0.25 * _smoothstep((u - HEEL_TRANSIENT_S) / (pat.loading_s - HEEL_TRANSIENT_S))
        heel = np.where(t > hs, pat.heel_peak_n * scale[0] * rise * settle, heel)
        sig.heel[sl] = heel
        # pitch rate and its exact integral (foot angle)
        po_start = min(ho, to - PUSHOFF_PEAK_BEFORE_S - 0.03)
        po, po_i = _bump(t, po_start, to - PUSHOFF_PEAK_BEFORE_S, to + PUSHOFF_FALL_S,
                         pat.pushoff_dip_dps * scale[1])
        sw_a, sw_b = to + PUSHOFF_FALL_S, hs - SWING_END_GAP_S
        sw, sw_i = _bump(t, sw_a, sw_a + 0.4 * (sw_b - sw_a), sw_b, pat.swing_peak_dps * scale[2])
        net = (pat.pushoff_dip_dps * scale[1] * (to + PUSHOFF_FALL_S - po_start)
               + pat.swing_peak_dps * scale[2] * (sw_b - sw_a)) / 2
        ld_amp = -2 * net / pat.loading_s
        ld, ld_i = _bump(t, hs, hs + 0.35 * pat.loading_s, hs + pat.loading_s, ld_amp)
        sig.pitch_dps[sl] = po + sw + ld
        sig.angle_deg[sl] = po_i + sw_i + ld_i
        # swing translation: min-jerk forward and rise, sin² clearance
        d = hs - to
        s = np.clip((t - to) / d, 0.0, 1.0)
        in_swing = (t > to) & (t < hs)
        mj = (60 * s - 180 * s**2 + 120 * s**3) / d**2
        sig.a_fwd[sl] = np.where(in_swing, pat.stride_length_m * mj, 0.0)
        sig.a_up[sl] = np.where(in_swing, pat.stride_rise_m * mj
                                + pat.clearance_m * 2 * np.pi**2 / d**2 * np.cos(2 * np.pi * s), 0.0)
        events["heel_off"].append(ho)
        events["toe_off"].append(to)
        events["heel_strike"].append(hs)
        c += stride
        first = False
        cycles += 1
    if cycles == 0:
        raise ValueError(f"walking segment of {t1 - t0:.2f} s is shorter than one stride "
                         f"at {cad0} steps/min")
    sl = sig.span(c, t1)   # leftover flat stance: settle back to the standing level
    if sl.stop > sl.start:
        t = sig.t[sl]
        sig.heel[sl] = flat_level + (sig.stand_heel_n - flat_level) * _smoothstep((t - c) / max(t1 - c, 1e-3))


def _quiet(sig: _Signals, seg: Segment, t0: float, t1: float, rng: np.random.Generator,
           variability: float) -> None:
    sl = sig.span(t0, t1)
    t = sig.t[sl] - t0
    dur = t1 - t0
    stand = sig.stand_heel_n
    if isinstance(seg, Stand):
        sig.heel[sl] = stand * (1 + 0.03 * np.sin(2 * np.pi * 0.2 * t + rng.uniform(0, 6.3)))
        sig.pitch_dps[sl] = 1.5 * np.sin(2 * np.pi * 0.3 * t)
    elif isinstance(seg, Sit):
        tr = min(seg.transition_s, dur / 2)
        down = _smoothstep(t / tr) - _smoothstep((t - (dur - tr)) / tr)
        sig.heel[sl] = stand + (seg.seated_heel_n - stand) * down
    elif isinstance(seg, WeightShift):
        phase = 2 * np.pi * t / seg.period_s
        env = _smoothstep(t / 0.5) * _smoothstep((dur - t) / 0.5)
        sig.heel[sl] = stand * (1 - seg.depth_fraction * env * 0.5 * (1 - np.cos(phase)))
        sig.pitch_dps[sl] = 4.0 * env * np.sin(phase)
    elif isinstance(seg, Turn):
        n_piv = max(1, int(round(dur / seg.pivot_period_s)) - 1)
        width = min(0.6, 0.8 * seg.pivot_period_s)
        yaw = np.zeros_like(t)
        pitch = np.zeros_like(t)
        heel = np.full_like(t, stand)
        for k in range(n_piv):
            mid = (k + 1) * dur / (n_piv + 1)
            y, _ = _bump(t, mid - width / 2, mid, mid + width / 2, 2 * seg.angle_deg / n_piv / width)
            p, _ = _bump(t, mid - width / 2, mid - width / 4, mid, 25.0 * (1 + variability * rng.standard_normal()))
            p2, _ = _bump(t, mid, mid + width / 4, mid + width / 2, -25.0)
            yaw += y
            pitch += p + p2
            heel -= 0.7 * stand * np.abs(y) / max(np.abs(y).max(), 1e-9)
        sig.yaw_dps[sl] = yaw
        sig.pitch_dps[sl] = pitch
        sig.heel[sl] = heel
    else:  # pragma: no cover - guarded by synthesize
        raise TypeError(seg)


def synthesize(scenario: list[Segment], rate_hz: float = 100.0, seed: int = 0, *,
               side: str = "left", noise: Noise = Noise(), variability: float = 0.02,
               body_mass_kg: float = 75.0, name: str | None = None) -> Recording:
    """Build a :class:`Recording` (source "synthetic") from a list of segments.

    ``variability`` is the stride-time coefficient of variation (peaks jitter by half of
    it); ``noise`` the sensor noise; standing heel force = 0.45 × body weight. The same
    arguments give the same recording (``numpy.random.default_rng(seed)``).
    """
    if not scenario:
        raise ValueError("synthesize: the scenario is empty")
    if not rate_hz > 0:
        raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
    rng = np.random.default_rng(seed)
    durations = [float(seg.duration_s) for seg in scenario]
    if any(d <= 0 for d in durations):
        raise ValueError(f"segment durations must be > 0 s, got {durations}")
    total = float(sum(durations))
    n = int(round(total * rate_hz))
    sig = _Signals(n, rate_hz, 0.45 * body_mass_kg * GRAVITY_MS2)
    events: dict[str, list[float]] = {"heel_off": [], "toe_off": [], "heel_strike": []}
    quiet = []
    t0 = 0.0
    for seg, dur in zip(scenario, durations):
        t1 = t0 + dur
        if isinstance(seg, Walk):
            cad1 = seg.cadence_end_spm if seg.cadence_end_spm is not None else seg.cadence_spm
            _walk(sig, t0, t1, seg.cadence_spm, cad1, _pattern(seg.pattern), rng, variability, events)
        elif isinstance(seg, Stairs):
            _walk(sig, t0, t1, seg.cadence_spm, seg.cadence_spm, _pattern(seg.pattern), rng,
                  variability, events)
        elif type(seg) in QUIET_KIND:
            _quiet(sig, seg, t0, t1, rng, variability)
            quiet.append((t0, t1, QUIET_KIND[type(seg)]))
        else:
            raise TypeError(f"unknown segment {seg!r}; use Walk, Stairs, Stand, Sit, WeightShift, Turn")
        t0 = t1

    theta = np.radians(sig.angle_deg)
    g_up = sig.a_up + GRAVITY_MS2
    acc = np.stack([sig.a_fwd * np.cos(theta) + g_up * np.sin(theta),
                    np.zeros(n),
                    -sig.a_fwd * np.sin(theta) + g_up * np.cos(theta)], axis=1)
    gyro = np.stack([sig.roll_dps, -sig.pitch_dps, sig.yaw_dps], axis=1)
    heel = sig.heel.copy()
    if noise.gyro_dps > 0:
        gyro = gyro + noise.gyro_dps * rng.standard_normal(gyro.shape)
    if noise.acc_ms2 > 0:
        acc = acc + noise.acc_ms2 * rng.standard_normal(acc.shape)
    if noise.heel_n > 0:
        loaded = heel > 0
        heel[loaded] = heel[loaded] + noise.heel_n * rng.standard_normal(int(loaded.sum()))
    heel = np.clip(heel, 0.0, None)

    swings = list(zip(events["toe_off"], events["heel_strike"]))
    meta = {"scenario": [(type(s).__name__, asdict(s)) for s in scenario], "seed": seed,
            "noise": asdict(noise), "variability": variability, "body_mass_kg": body_mass_kg,
            "stand_heel_n": sig.stand_heel_n}
    return Recording(
        name=name or f"synthetic:seed{seed}", source="synthetic", side=side, rate_hz=rate_hz,
        heel_n=heel, acc_ms2=acc, gyro_dps=gyro, valid=np.ones(n, dtype=bool),
        toe_off_s=np.array(events["toe_off"]), heel_strike_s=np.array(events["heel_strike"]),
        heel_off_s=np.array(events["heel_off"]),
        quiet_intervals_s=quiet_without_swings(quiet, swings, QUIET_SWING_MARGIN_S), meta=meta)


#: Ready-made scenarios for ``named_scenario`` (and ``fes sim synthetic:<name>``).
SCENARIOS: dict[str, list[Segment]] = {
    "walk": [Stand(3), Walk(60, 105), Stand(3)],
    "hemiparetic": [Stand(3), Walk(60, 85, "hemiparetic"), Stand(3)],
    "stop_and_go": [Stand(3), Walk(15, 105), Stand(5), Walk(15, 95, cadence_end_spm=115),
                    Stand(5), Walk(15, 100, "hemiparetic"), Stand(3)],
    "stairs": [Stand(3), Stairs(20), Stand(3)],
    "sit": [Stand(3), Walk(10, 100), Sit(20), Walk(10, 100), Stand(3)],
    "weight_shift": [Stand(3), WeightShift(20), Walk(15, 100), WeightShift(10, period_s=1.2,
                                                                         depth_fraction=0.9)],
    "turn": [Stand(3), Walk(10, 105), Turn(4), Walk(10, 105), Turn(4, angle_deg=-180), Stand(3)],
    "mixed": [Stand(3), Walk(20, 105), Turn(3), Walk(15, 90, "hemiparetic"), Sit(10),
              WeightShift(8), Stairs(10), Walk(15, 120, cadence_end_spm=90), Stand(3)],
}


def named_scenario(name: str, side: str = "left", seed: int = 0, rate_hz: float = 100.0,
                   **kwargs) -> Recording:
    """Synthesize one of :data:`SCENARIOS` (``kwargs`` go to :func:`synthesize`)."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown synthetic scenario {name!r}; known: {', '.join(SCENARIOS)}")
    return synthesize(SCENARIOS[name], rate_hz=rate_hz, seed=seed, side=side,
                      name=f"synthetic:{name}", **kwargs)
