"""The canonical in-memory gait recording that every source and the simulator share.

One :class:`Recording` holds ONE foot (``side``) on a uniform sample clock
(``rate_hz``; sample ``i`` is at ``t_s[i] = i / rate_hz``), the sensor channels the
source has, and the source's reference gait events in seconds from sample 0.

Channel names and units (the only names used for these quantities in ``sim``):

========================  =========  ====================================================
attribute                 shape      unit / meaning
========================  =========  ====================================================
``heel_n``                (n,)       heel force, N (>= 0; 0 when the heel is off the ground)
``acc_ms2``               (n, 3)     specific force, m/s², gravity included (+9.81 on z standing)
``gyro_dps``              (n, 3)     angular rate, deg/s
``valid``                 (n,)       False where the source dropped the sample; the values
                                     there are interpolated
========================  =========  ====================================================

IMU CANONICAL FRAME (every loader converts into it, for both feet): a foot-mounted IMU
with **x anterior** (toward the toes), **y to the subject's left**, **z superior** (up)
when standing flat; right-handed. The same frame on the left and the right foot (so the
roll and yaw rates are mirror images between feet, the pitch rate is not). This is also
the body frame of the project's sensor unit (``drivers/sensor_protocol.py``).

A positive rotation about +y turns +x toward -z (toes down), so the sagittal
**toe-up pitch rate is ``-gyro_dps[:, 1]``** (:func:`pitch_rate_dps`): about 0 in flat
stance, a negative push-off dip (-150 … -550 deg/s) that peaks near toe-off, a large
positive mid-swing peak (+250 … +450 deg/s), a negative spike at heel strike (foot flat).

Reference events:

* ``toe_off_s`` / ``heel_strike_s``: sorted times in s. :meth:`Recording.reference_swings`
  pairs each toe-off with the first heel strike after it (and before the next toe-off);
  a toe-off without one (the file ends in swing) or a heel strike without a toe-off
  (the file starts in swing) is a partial swing and is not scored.
* ``heel_off_s``: same length as ``toe_off_s``; ``heel_off_s[i]`` is the heel-off of the
  stance that ends at ``toe_off_s[i]``; NaN when the heel did not load in that stance.
  None when the source has no heel sensor.
* ``quiet_intervals_s``: ``(start_s, end_s, kind)``, kind in :data:`QUIET_KINDS`: no
  stimulation onset is wanted there.
* ``unscored_intervals_s``: ``(start_s, end_s)`` stretches the reference annotation does
  not vouch for (e.g. un-annotated steps at the file edges); an unmatched onset there is
  neither a false onset nor a quiet onset (see docs/scoring.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Sequence

import numpy as np

SOURCES = ("physionet_gaitpdb", "gaitmap_example", "ipol_healthy_imu", "synthetic", "csv")
SIDES = ("left", "right")
QUIET_KINDS = ("standing", "turning", "sitting", "weight_shift")

HEEL_N = "heel_n"
ACC_MS2 = "acc_ms2"
GYRO_DPS = "gyro_dps"
AXES = ("x", "y", "z")
PITCH_AXIS = 1            # gyro column of the sagittal axis (y); toe-up rate = -gyro[:, 1]
GRAVITY_MS2 = 9.80665

#: Margin (s) around a reference swing [toe_off - m, heel_strike + m] that loaders cut
#: out of quiet intervals: the stance just before and after a swing is not "quiet".
QUIET_SWING_MARGIN_S = 0.3


class RecordingError(ValueError):
    """A recording's content breaks the invariants documented in :mod:`fescontrol.sim.recording`."""


Interval = tuple[float, float]
QuietInterval = tuple[float, float, str]


@dataclass(frozen=True, eq=False)
class Recording:
    """One foot's recording on a uniform clock, with reference events (see module doc).

    Arrays are stored as read-only float64 (bool for ``valid``) copies.
    """

    name: str
    source: str
    side: str
    rate_hz: float
    heel_n: np.ndarray | None
    acc_ms2: np.ndarray | None
    gyro_dps: np.ndarray | None
    valid: np.ndarray
    toe_off_s: np.ndarray
    heel_strike_s: np.ndarray
    heel_off_s: np.ndarray | None
    quiet_intervals_s: tuple[QuietInterval, ...]
    meta: dict = field(default_factory=dict)
    unscored_intervals_s: tuple[Interval, ...] = ()

    def __post_init__(self) -> None:
        def fix(name: str, value: Any, dtype: type = np.float64) -> None:
            if value is None:
                return
            arr = np.array(value, dtype=dtype, copy=True)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

        for name in (HEEL_N, ACC_MS2, GYRO_DPS, "toe_off_s", "heel_strike_s", "heel_off_s"):
            fix(name, getattr(self, name))
        fix("valid", self.valid, bool)
        object.__setattr__(self, "rate_hz", float(self.rate_hz))
        object.__setattr__(self, "quiet_intervals_s", tuple(
            (float(a), float(b), str(k)) for a, b, k in self.quiet_intervals_s))
        object.__setattr__(self, "unscored_intervals_s", tuple(
            (float(a), float(b)) for a, b in self.unscored_intervals_s))
        object.__setattr__(self, "meta", dict(self.meta))
        self._check()

    # ------------------------------------------------------------------ checks
    def _fail(self, what: str) -> None:
        raise RecordingError(f"recording {self.name!r}: {what}")

    def _check(self) -> None:
        if self.source not in SOURCES:
            self._fail(f"source {self.source!r} is not one of {SOURCES}")
        if self.side not in SIDES:
            self._fail(f"side {self.side!r} is not one of {SIDES}")
        if not (np.isfinite(self.rate_hz) and self.rate_hz > 0):
            self._fail(f"rate_hz must be > 0, got {self.rate_hz}")
        n = self.valid.shape[0] if self.valid.ndim == 1 else -1
        if n < 2:
            self._fail(f"valid must be a 1-D bool array of >= 2 samples, shape {self.valid.shape}")
        if self.heel_n is None and self.acc_ms2 is None:
            self._fail("has neither a heel channel nor an IMU")
        if self.heel_n is not None and self.heel_n.shape != (n,):
            self._fail(f"heel_n shape {self.heel_n.shape} != ({n},)")
        if (self.acc_ms2 is None) != (self.gyro_dps is None):
            self._fail("acc_ms2 and gyro_dps must both be given or both be None")
        for name in (ACC_MS2, GYRO_DPS):
            arr = getattr(self, name)
            if arr is not None and arr.shape != (n, 3):
                self._fail(f"{name} shape {arr.shape} != ({n}, 3)")
        for name in (HEEL_N, ACC_MS2, GYRO_DPS):
            arr = getattr(self, name)
            if arr is not None and not np.all(np.isfinite(arr)):
                self._fail(f"{name} has non-finite values (interpolate gaps, mark them invalid)")
        for name in ("toe_off_s", "heel_strike_s"):
            ev = getattr(self, name)
            if ev.ndim != 1 or not np.all(np.isfinite(ev)):
                self._fail(f"{name} must be a 1-D array of finite times in s")
            if np.any(np.diff(ev) <= 0):
                self._fail(f"{name} must be strictly increasing")
        if self.heel_off_s is not None:
            if self.heel_off_s.shape != self.toe_off_s.shape:
                self._fail("heel_off_s must have one entry (or NaN) per toe-off")
            ok = np.isfinite(self.heel_off_s)
            if np.any(self.heel_off_s[ok] > self.toe_off_s[ok] + 1e-9):
                self._fail("a heel-off comes after its toe-off")
        for a, b, kind in self.quiet_intervals_s:
            if kind not in QUIET_KINDS:
                self._fail(f"quiet interval kind {kind!r} is not one of {QUIET_KINDS}")
            if not b > a:
                self._fail(f"quiet interval ({a}, {b}) is empty or reversed")
        for a, b in self.unscored_intervals_s:
            if not b > a:
                self._fail(f"unscored interval ({a}, {b}) is empty or reversed")

    # -------------------------------------------------------------- properties
    @property
    def n_samples(self) -> int:
        return int(self.valid.shape[0])

    @property
    def duration_s(self) -> float:
        """n_samples / rate_hz (each sample stands for one sample period)."""
        return self.n_samples / self.rate_hz

    @property
    def t_s(self) -> np.ndarray:
        """Sample times in s from sample 0: ``arange(n) / rate_hz``."""
        return np.arange(self.n_samples) / self.rate_hz

    @property
    def has_heel(self) -> bool:
        return self.heel_n is not None

    @property
    def has_imu(self) -> bool:
        return self.gyro_dps is not None

    # ------------------------------------------------------------------ events
    def reference_swings(self) -> list[tuple[float, float]]:
        """Complete swings ``(toe_off_s, heel_strike_s)`` in time order (see module doc)."""
        to = np.asarray(self.toe_off_s, dtype=float)
        hs = np.asarray(self.heel_strike_s, dtype=float)
        if not len(to) or not len(hs):
            return []
        # per toe-off: the first heel strike after it, kept when it comes before the next toe-off
        j = np.searchsorted(hs, to, side="right")
        nxt = np.append(to[1:], np.inf)
        ok = j < len(hs)
        keep = np.flatnonzero(ok)[hs[j[ok]] < nxt[ok]]
        return list(zip(to[keep].tolist(), hs[j[keep]].tolist()))

    def resampled(self, rate_hz: float) -> "Recording":
        """The same recording linearly interpolated onto ``arange(m) / rate_hz``.

        The new grid covers [0, last original sample time]. Events are unchanged.
        A new sample is valid only when both original neighbours are valid.
        """
        if not rate_hz > 0:
            raise RecordingError(f"resampled: rate_hz must be > 0, got {rate_hz}")
        t_old = self.t_s
        m = int(np.floor(t_old[-1] * rate_hz + 1e-9)) + 1
        t_new = np.arange(m) / rate_hz

        def interp(arr: np.ndarray | None) -> np.ndarray | None:
            if arr is None:
                return None
            if arr.ndim == 1:
                return np.interp(t_new, t_old, arr)
            return np.stack([np.interp(t_new, t_old, arr[:, k]) for k in range(arr.shape[1])], 1)

        valid = np.interp(t_new, t_old, self.valid.astype(float)) > 1 - 1e-9
        meta = dict(self.meta, resampled_from_hz=self.rate_hz)
        return replace(self, rate_hz=rate_hz, heel_n=interp(self.heel_n),
                       acc_ms2=interp(self.acc_ms2), gyro_dps=interp(self.gyro_dps),
                       valid=valid, meta=meta)

    def __repr__(self) -> str:
        chans = [c for c, a in ((HEEL_N, self.heel_n), ("imu", self.gyro_dps)) if a is not None]
        return (f"Recording({self.name!r}, {self.side}, {self.rate_hz:g} Hz, "
                f"{self.duration_s:.1f} s, {'+'.join(chans)}, {len(self.reference_swings())} swings)")


def pitch_rate_dps(rec: Recording) -> np.ndarray:
    """Sagittal toe-up pitch rate in deg/s, ``-gyro_dps[:, 1]`` (positive while the toes rise)."""
    if rec.gyro_dps is None:
        raise RecordingError(f"recording {rec.name!r} has no IMU, so no pitch rate")
    return -rec.gyro_dps[:, PITCH_AXIS]


# ------------------------------------------------------------------ intervals
def merge_intervals(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted union of (start_s, end_s) intervals; empty ones are dropped."""
    out: list[list[float]] = []
    for a, b in sorted((float(a), float(b)) for a, b in intervals if b > a):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def subtract_intervals(intervals: Iterable[Interval], cuts: Iterable[Interval],
                       min_len_s: float = 0.0) -> list[Interval]:
    """``intervals`` minus the union of ``cuts``; pieces shorter than ``min_len_s`` are dropped."""
    cuts_m = merge_intervals(cuts)
    out: list[Interval] = []
    for a, b in merge_intervals(intervals):
        pieces = [(a, b)]
        for c, d in cuts_m:
            nxt = []
            for p, q in pieces:
                if d <= p or c >= q:
                    nxt.append((p, q))
                    continue
                if c > p:
                    nxt.append((p, c))
                if d < q:
                    nxt.append((d, q))
            pieces = nxt
        out.extend((p, q) for p, q in pieces if q - p > max(min_len_s, 0.0))
    return out


def quiet_without_swings(quiet: Iterable[QuietInterval], swings: Sequence[tuple[float, float]],
                         margin_s: float = QUIET_SWING_MARGIN_S,
                         min_len_s: float = 0.1) -> tuple[QuietInterval, ...]:
    """Quiet intervals minus every reference swing widened by ``margin_s`` on both sides."""
    cuts = [(to - margin_s, hs + margin_s) for to, hs in swings]
    out: list[QuietInterval] = []
    for a, b, kind in quiet:
        out.extend((p, q, kind) for p, q in subtract_intervals([(a, b)], cuts, min_len_s))
    return tuple(sorted(out))
