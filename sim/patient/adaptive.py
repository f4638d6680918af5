"""Simulator side of adaptive stimulation (docs/adaptive.md): long walks, per-walker targets.

* :func:`long_walk` repeats a recording's typical strides, cut mid-stance (where the foot
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

from fescontrol.loop.controller import Controller
from fescontrol.core.profile import Profile, profile_from_dict
from ..recording import Recording
from ..replay import recording_stream


def _cut_points(rec: Recording) -> list[int]:
    """Sample indices halfway through each stance between two reference swings."""
    sw = rec.reference_swings()
    return [int(round((sw[k][1] + sw[k + 1][0]) / 2 * rec.rate_hz)) for k in range(len(sw) - 1)]


#: a stride whose recorded swing pitch (mid-swing or heel strike) lies more than this many
#: median absolute deviations (and 5°) from the walker's median is left out of a long walk
OUTLIER_MADS = 3.0


def typical_strides(rec: Recording) -> list[tuple[int, int]]:
    """``(start, stop)`` sample ranges, mid-stance to mid-stance, each holding one reference
    swing whose recorded foot path is typical of the walker. The toe-drag rule measures the
    toes against the recorded path as if the recorded toes had passed at the normal minimum
    clearance; in an atypical recorded swing (a foot lifted 20° higher than in every other
    stride, a turn) that is not so, and each repetition of it would count as a drag."""
    from .swing import swings_of
    cuts = _cut_points(rec)
    swings = {s.start: s for s in swings_of(rec)}
    segs = []
    for a, b in zip(cuts, cuts[1:]):
        inside = [s for t, s in swings.items() if a <= t < b]
        if len(inside) == 1:
            segs.append((a, b, inside[0]))
    if not segs:
        return []
    mid = np.array([s.recorded_pitch_deg[s.mid()] for _, _, s in segs])
    hs = np.array([s.recorded_pitch_deg[-1] for _, _, s in segs])

    def ok(x):
        dev = np.abs(x - np.median(x))
        return dev <= max(5.0, OUTLIER_MADS * float(np.median(dev)))

    keep = ok(mid) & ok(hs)
    return [(a, b) for (a, b, _), k in zip(segs, keep) if k]


def long_walk(rec: Recording, minutes: float) -> Recording:
    """The recording's typical strides (:func:`typical_strides`), in order, repeated until
    the walk lasts ``minutes``. ValueError with fewer than three such strides."""
    segs = typical_strides(rec)
    if len(segs) < 3:
        raise ValueError(f"recording {rec.name!r} has too few complete typical strides to repeat")
    idx = np.concatenate([np.arange(a, b) for a, b in segs])
    reps = max(1, int(np.ceil(minutes * 60.0 * rec.rate_hz / len(idx))))
    idx = np.tile(idx, reps)
    # new sample k plays old sample idx[k]; an event at old time t inside a segment moves
    # to the new time of the same sample
    new_of_old = {}
    for k, i in enumerate(idx):
        new_of_old.setdefault(int(i), []).append(k)

    def events(times):
        out = []
        for t in times:
            i = int(round(t * rec.rate_hz))
            frac = t - i / rec.rate_hz
            out.extend(k / rec.rate_hz + frac for k in new_of_old.get(i, ()))
        return np.array(sorted(out))

    def take(arr):
        return None if arr is None else np.asarray(arr)[idx]

    heel_off = None
    if rec.heel_off_s is not None:
        # keep the pairing with toe-offs: heel-off times follow their toe-off
        pairs = [(t, h) for t, h in zip(rec.toe_off_s, rec.heel_off_s)]
        moved = []
        for t, h in pairs:
            i = int(round(t * rec.rate_hz))
            for k in new_of_old.get(i, ()):
                moved.append((k / rec.rate_hz + t - i / rec.rate_hz, h - t))
        moved.sort()
        heel_off = np.array([t + d if np.isfinite(d) else np.nan for t, d in moved])
    return replace(rec, name=f"{rec.name}:typical-x{reps}", heel_n=take(rec.heel_n), acc_ms2=take(rec.acc_ms2),
                   gyro_dps=take(rec.gyro_dps), valid=take(rec.valid), toe_off_s=events(rec.toe_off_s),
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


def reference_target(rec: Recording, profile: Profile, *, margin_deg: float = 0.0, late: bool = True) -> dict:
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
    out = {"mid_swing_deg": round(float(np.median([r.mid_swing_deg for r in good])) + margin_deg, 2),
           "heel_strike_deg": round(float(np.median([r.heel_strike_deg for r in good])) + margin_deg, 2)}
    if late:
        out["late_swing_deg"] = round(float(np.median([r.late_swing_deg for r in good])) + margin_deg, 2)
    return out


# ----- fixed against adaptive on one patient (bench/adaptive.py, docs/adaptive.md) ---------------

#: the convergence rule of issue 15: within this of target (deg) ...
CONVERGED_DEG = 2.0
#: ... and the fixed profile "tuned at minute 0" takes the learned amplitude of these strides
TUNE_STRIDES = 10


def charge_mc(current_ma: np.ndarray, pulse_width_us: float, frequency_hz: float, rate_hz: float) -> float:
    """Charge delivered (one phase per pulse), mC: Σ I·PW per pulse × pulses per sample."""
    return float(np.sum(current_ma) * pulse_width_us * frequency_hz / rate_hz / 1e6)


def _summary(run, profile: Profile, rate_hz: float) -> dict:
    st = profile.stimulation
    drags = [bool(s.toe_drag) for s in run.strides]
    return {"strides": len(drags), "toe_drag_strides": int(sum(drags)),
            "toe_drag_per_100": 100.0 * sum(drags) / max(1, len(drags)),
            "charge_mc": charge_mc(run.current_ma, st.pulse_width_us, st.frequency_hz, rate_hz),
            "faults": [f.text for f in run.replay.faults],
            "peak_ma": float(run.current_ma.max()) if len(run.current_ma) else 0.0}


def compare_on_patient(recording: str, side: str, population: str, seed: int, patient: int, minutes: float,
                       base_profile: str, adaptive: dict, margin_deg: float, max_ma: float,
                       high_tries: int = 3) -> dict:
    """One patient walking ``minutes`` of ``recording`` three times: adaptive (from the
    patient minimum = the motor threshold, rounded down), fixed at the amplitude the adaptive
    one learned at minute 0 (strides after convergence), and fixed high enough for the whole
    walk (from the highest learned amplitude up, 2 mA at a time, ``high_tries`` at most, up to
    ``max_ma``). Returns plain numbers (runs on a dask worker)."""
    from fescontrol.core.profile import bundled_profile_path, load_profile
    from ..sources import load_recording
    from .closed_loop import closed_loop_replay
    from .params import BUNDLED_POPULATIONS, draw_population, load_population_spec

    spec = load_population_spec(BUNDLED_POPULATIONS.get(population, population))
    p = draw_population(spec, seed, n=patient + 1)[patient]
    rec = load_recording(recording, side=side)
    base = load_profile(bundled_profile_path(base_profile))
    pw = base.stimulation.pulse_width_us
    lo = float(np.floor(p.threshold_charge_nc / pw))
    target = reference_target(rec, with_adaptive(base, {**adaptive, "enabled": True}), margin_deg=margin_deg)
    prof = with_adaptive(base, {**adaptive, "enabled": True, "target": target}, amplitude_min_ma=lo,
                         amplitude_max_ma=max_ma)
    walk = long_walk(rec, minutes)
    ad = closed_loop_replay(walk, prof, p, spec.gait)
    recs = ad.meta["adaptive"]
    errors = [r.error_deg for r in recs]
    conv = next((i for i, e in enumerate(errors) if abs(e) <= CONVERGED_DEG), None)
    start = conv if conv is not None else 0
    tuned_ma = float(np.median([r.amplitude_ma for r in recs[start:start + TUNE_STRIDES]]))
    fixed = closed_loop_replay(walk, with_fixed_amplitude(prof, round(tuned_ma, 1)), p, spec.gait)
    ad_sum = _summary(ad, prof, walk.rate_hz)
    high_ma = min(max_ma, float(np.ceil(max(r.amplitude_ma for r in recs))))
    tries = []
    for _ in range(high_tries):
        run = closed_loop_replay(walk, with_fixed_amplitude(prof, high_ma), p, spec.gait)
        tries.append((high_ma, _summary(run, prof, walk.rate_hz)))
        if tries[-1][1]["toe_drag_strides"] <= ad_sum["toe_drag_strides"] or high_ma >= max_ma:
            break
        high_ma = min(max_ma, high_ma + 2.0)
    high_ma, high = tries[-1]
    return {"recording": recording, "patient": patient, "threshold_ma": p.threshold_charge_nc / pw,
            "saturation_ma": p.saturation_charge_nc / pw, "start_ma": lo, "target": target,
            "convergence_strides": conv, "adaptive": ad_sum,
            "adaptive_amplitude_ma": {"minute0": tuned_ma, "max": max(r.amplitude_ma for r in recs),
                                      "last": recs[-1].amplitude_ma if recs else None},
            "frozen_strides": sum(r.status == "frozen" for r in recs),
            "fixed_tuned_ma": round(tuned_ma, 1), "fixed_tuned": _summary(fixed, prof, walk.rate_hz),
            "fixed_high_ma": high_ma, "fixed_high": high, "fixed_high_tries": [t[0] for t in tries],
            "min_fitness": float(ad.fitness.min())}
