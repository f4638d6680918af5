"""Per-stride foot features for adaptive stimulation, read from the kernel at a heel strike.

The kernel (both twins) integrates the foot's toe-up pitch rate from the last foot-flat and
keeps the pitch of every sample from the stride's onset (the push-off the detector fired
on, before the toes leave the ground) to its heel strike in
``kernel.swing_pitch[:kernel.swing_n]``. This module turns that into the numbers the
learning law uses, once per stride, at the event level. Angles are degrees of foot pitch
to the ground (toe-up positive, 0 at the foot-flat); durations in ms.

The stride's points are fractions of the time from onset to heel strike, so a longer or
shorter stride moves them with it. The onset, unlike the toe-off, does not depend on how
the foot answers the stimulation (the foot is still on the ground), so the same fraction
measures the same phase of the swing whether the foot drops or lifts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

#: a swing must follow a foot-flat within this time, else its pitch integral has run
#: across more than one stride and drifted (ms)
MAX_FLAT_AGE_MS = 2500.0
#: fewest samples from onset to heel strike that give the stride's points
MIN_SWING_SAMPLES = 8


@dataclass(frozen=True)
class StrideFeatures:
    """One swing as the device measured it. ``problem`` is "" when the numbers are usable,
    else why not (then the angles are NaN)."""

    swing_ms: float                  # onset to heel strike
    mid_swing_deg: float             # at mid_swing_fraction of it
    heel_strike_deg: float
    min_late_swing_deg: float        # lowest from mid-swing to heel strike
    problem: str = ""
    late_swing_deg: float = math.nan     # at late_swing_fraction
    curve_deg: tuple[float, ...] = ()    # at the target path's fractions (read_features' curve_fractions)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def read_features(kernel, flat_age_at_onset_us: int, onset_t_us: int, mid_swing_fraction: float,
                  late_swing_fraction: float = 0.85, curve_fractions=()) -> StrideFeatures:
    """Features of the swing that ended at the heel strike the kernel just reported.

    ``flat_age_at_onset_us`` is ``kernel.foot_flat_age_us`` read at the stride's onset
    event (how long the integral had run since a foot-flat); ``onset_t_us`` the sensor time
    of that onset (buffer sample 0; the heel strike, now, is the last). ``curve_fractions``
    (each in [0, 1]): also the pitch at each of them, in ``curve_deg``.
    """
    n = int(kernel.swing_n)
    swing_ms = (int(kernel.t_us) - onset_t_us) / 1000.0
    nan = math.nan
    if kernel.swing_overflow:
        return StrideFeatures(swing_ms, nan, nan, nan, "swing longer than the pitch buffer")
    if flat_age_at_onset_us > MAX_FLAT_AGE_MS * 1000:
        return StrideFeatures(swing_ms, nan, nan, nan, "no foot-flat before the swing (pitch not reset)")
    if n < MIN_SWING_SAMPLES:
        return StrideFeatures(swing_ms, nan, nan, nan, "swing too short to measure")
    buf = kernel.swing_pitch
    last = n - 1
    mid = int(round(mid_swing_fraction * last))
    late = int(round(late_swing_fraction * last))
    curve = tuple(float(buf[int(round(f * last))]) for f in curve_fractions)
    return StrideFeatures(swing_ms, float(buf[mid]), float(buf[last]), float(buf[mid:n].min()), "",
                          float(buf[late]), curve)
