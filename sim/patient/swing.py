"""Gait kinematics a patient walks with, taken from a recording (docs/patient-model.md).

The patient keeps the recording's timing (toe-off, heel strike) and its stance: outside
swing the foot IMU reads exactly what was recorded. In swing the recorded foot pitch is
split into the shank's motion and an unimpaired ankle trajectory; the patient's own ankle
(:class:`fescontrol.sim.patient.model.FootPendulum`) then replaces the unimpaired one.

Foot pitch is integrated from the recorded pitch rate between the foot-flat before the
toe-off and the foot-flat after the heel strike (the stillest 100 ms of each stance),
with the linear drift removed so the foot is flat (0°) at both.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..recording import Recording, pitch_rate_dps

#: Unimpaired ankle angle in swing (deg, dorsiflexion positive): plantarflexed at toe-off,
#: back to neutral by 60 % of swing, held to heel strike (Winter 2009, Perry 2010 sagittal
#: ankle kinematics of normal gait).
HEALTHY_TOE_OFF_ANKLE_DEG = -15.0
HEALTHY_SWING_ANKLE_DEG = 0.0
HEALTHY_NEUTRAL_AT_FRACTION = 0.6
#: Stillness window (s) that marks a foot-flat, and the time (s) a foot that lands in a
#: different pitch than recorded takes to come flat after heel strike (foot slap).
FOOT_FLAT_WINDOW_S = 0.1
LANDING_S = 0.08


def healthy_ankle_deg(fraction: np.ndarray) -> np.ndarray:
    """Unimpaired ankle angle at swing fractions in [0, 1] (smoothstep to neutral)."""
    x = np.clip(np.asarray(fraction, float) / HEALTHY_NEUTRAL_AT_FRACTION, 0.0, 1.0)
    s = x * x * (3.0 - 2.0 * x)
    return HEALTHY_TOE_OFF_ANKLE_DEG + (HEALTHY_SWING_ANKLE_DEG - HEALTHY_TOE_OFF_ANKLE_DEG) * s


@dataclass(frozen=True)
class Swing:
    """One modelled swing. Sample indices into the recording; arrays over [start, stop]."""

    start: int                       # toe-off sample
    stop: int                        # heel-strike sample (inclusive)
    landing_stop: int                # last sample of the landing correction (exclusive)
    recorded_pitch_deg: np.ndarray   # foot pitch to the ground as recorded
    shank_deg: np.ndarray
    shank_rate_dps: np.ndarray
    shank_acc_dps2: np.ndarray

    @property
    def n(self) -> int:
        return self.stop - self.start + 1

    def mid(self) -> int:
        """Offset (from start) of mid-swing."""
        return (self.n - 1) // 2


def _foot_flat(rate: np.ndarray, lo: int, hi: int, win: int) -> int | None:
    """The centre of the stillest ``win`` samples in [lo, hi) (None if too short)."""
    if hi - lo < win:
        return None
    mag = np.convolve(np.abs(rate[lo:hi]), np.ones(win) / win, mode="valid")
    return lo + int(np.argmin(mag)) + win // 2


def swings_of(rec: Recording) -> list[Swing]:
    """The recording's complete reference swings that have a foot-flat on both sides."""
    rate_hz = rec.rate_hz
    w = pitch_rate_dps(rec)
    win = max(3, int(round(FOOT_FLAT_WINDOW_S * rate_hz)))
    ref = rec.reference_swings()
    to_idx = [int(round(a * rate_hz)) for a, _ in ref]
    hs_idx = [int(round(b * rate_hz)) for _, b in ref]
    out: list[Swing] = []
    landing = max(2, int(round(LANDING_S * rate_hz)))
    for k, (a, b) in enumerate(zip(to_idx, hs_idx)):
        lo = hs_idx[k - 1] if k else max(0, a - int(1.5 * rate_hz))
        hi = to_idx[k + 1] if k + 1 < len(to_idx) else min(rec.n_samples, b + int(1.5 * rate_hz))
        before = _foot_flat(w, lo, a, win)
        after = _foot_flat(w, b + landing, hi, win)
        if before is None or after is None or b - a < 4 or b + landing >= rec.n_samples:
            continue
        seg = w[before:after + 1]
        theta = np.concatenate([[0.0], np.cumsum((seg[1:] + seg[:-1]) / 2.0) / rate_hz])
        theta -= np.linspace(0.0, theta[-1], len(theta))   # flat (0°) at both foot-flats
        pitch = theta[a - before:b - before + 1]
        frac = np.linspace(0.0, 1.0, b - a + 1)
        shank = pitch - healthy_ankle_deg(frac)
        shank_rate = np.gradient(shank) * rate_hz
        shank_acc = np.gradient(shank_rate) * rate_hz
        out.append(Swing(a, b, b + landing, pitch, shank, shank_rate, shank_acc))
    return out
