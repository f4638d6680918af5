"""Simulator side of adaptive stimulation (docs/adaptive.md): long walks, per-walker targets.

* :func:`long_walk` repeats a recording's complete strides, cut mid-stance (where the foot
  is flat and the recording can be joined to itself), until it lasts ``minutes``: a
  20-minute walk with the timing and stance motion of a real walker.
* :func:`reference_target` is the per-walker reference of the toe-drag rule: the patient
  model's toe drag is measured against the walker's *recorded* (unimpaired) foot path, and
  normal mid-swing pitch ranges from about −7° to −20° between recordings, so one fixed
  angle cannot be the target for all. The target is the median pitch the device itself
  measures (its kernel features) at mid-swing and heel strike on the unimpaired recording,
  plus an optional margin: what an orthotist gets from a reference walk.
* :func:`adaptive_profile` puts an ``adaptive:`` section and patient bounds on a profile.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from fescontrol.controller import Controller
from fescontrol.profile import Profile, profile_from_dict
from ..recording import Recording
from ..replay import recording_stream


def _cut_points(rec: Recording) -> list[int]:
    """Sample indices halfway through each stance between two reference swings."""
    sw = rec.reference_swings()
    return [int(round((sw[k][1] + sw[k + 1][0]) / 2 * rec.rate_hz)) for k in range(len(sw) - 1)]


def long_walk(rec: Recording, minutes: float) -> Recording:
    """``rec``'s strides from its first to its last mid-stance, repeated to ``minutes``.
    ValueError when the recording has fewer than three complete strides."""
    cuts = _cut_points(rec)
    if len(cuts) < 3:
        raise ValueError(f"recording {rec.name!r} has too few complete strides to repeat")
    a, b = cuts[0], cuts[-1]
    span = b - a
    reps = max(1, int(np.ceil(minutes * 60.0 * rec.rate_hz / span)))
    t_span = span / rec.rate_hz
    t0 = a / rec.rate_hz

    def tile(arr):
        return None if arr is None else np.concatenate([arr[a:b]] * reps)

    def events(times):
        inside = times[(times >= t0) & (times < t0 + t_span)] - t0
        return np.concatenate([inside + r * t_span for r in range(reps)])

    to = rec.toe_off_s
    keep = (to >= t0) & (to < t0 + t_span)
    heel_off = None
    if rec.heel_off_s is not None:
        inside = rec.heel_off_s[keep] - t0
        heel_off = np.concatenate([inside + r * t_span for r in range(reps)])
    return replace(rec, name=f"{rec.name}x{reps}", heel_n=tile(rec.heel_n), acc_ms2=tile(rec.acc_ms2),
                   gyro_dps=tile(rec.gyro_dps), valid=tile(rec.valid), toe_off_s=events(to),
                   heel_strike_s=events(rec.heel_strike_s), heel_off_s=heel_off, quiet_intervals_s=(),
                   unscored_intervals_s=())


def with_adaptive(profile: Profile, adaptive: dict, *, amplitude_min_ma: float | None = None,
                  amplitude_max_ma: float | None = None) -> Profile:
    """``profile`` with its ``adaptive`` section replaced (a dict as in YAML) and, when
    given, the patient bounds changed (stimulation.amplitude_ma follows the maximum)."""
    data = profile.model_dump(mode="json")
    data["adaptive"] = adaptive
    if amplitude_min_ma is not None:
        data["patient"]["amplitude_min_ma"] = float(amplitude_min_ma)
    if amplitude_max_ma is not None:
        data["patient"]["amplitude_max_ma"] = float(amplitude_max_ma)
        data["stimulation"]["amplitude_ma"] = max(float(amplitude_max_ma), data["stimulation"]["amplitude_ma"])
    return profile_from_dict(data, f"{profile.name}+adaptive")


def with_fixed_amplitude(profile: Profile, amplitude_ma: float) -> Profile:
    """``profile`` without learning, stimulating every stride at ``amplitude_ma``."""
    data = profile.model_dump(mode="json")
    data["adaptive"] = {"enabled": False}
    data["patient"]["amplitude_min_ma"] = min(data["patient"]["amplitude_min_ma"], float(amplitude_ma))
    data["patient"]["amplitude_max_ma"] = float(amplitude_ma)
    data["stimulation"]["amplitude_ma"] = max(float(amplitude_ma), data["stimulation"]["amplitude_ma"])
    return profile_from_dict(data, f"{profile.name}@{amplitude_ma:g}mA")


def reference_target(rec: Recording, profile: Profile, *, margin_deg: float = 0.0) -> dict:
    """``{"mid_swing_deg", "heel_strike_deg"}``: the median the device measures on the
    unimpaired recording ``rec`` (its usable strides), plus ``margin_deg``. ``profile``
    must have adaptive enabled (any target: only the measurement is used)."""
    if not profile.adaptive.enabled:
        raise ValueError("reference_target needs a profile with adaptive.enabled")
    frames, _ = recording_stream(rec)
    c = Controller(profile)
    c.start()
    c.feed(frames.tobytes())
    c.finish()
    good = [r for r in c.adaptive.records if r.status != "frozen" or r.reason.startswith("swing")]
    good = [r for r in good if np.isfinite(r.mid_swing_deg)]
    if len(good) < 3:
        raise ValueError(f"recording {rec.name!r}: fewer than 3 strides the device could measure")
    return {"mid_swing_deg": round(float(np.median([r.mid_swing_deg for r in good])) + margin_deg, 2),
            "heel_strike_deg": round(float(np.median([r.heel_strike_deg for r in good])) + margin_deg, 2)}
