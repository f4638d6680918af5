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
    """``{"mid_swing_deg", "heel_strike_deg"}`` (and ``late_swing_deg`` with ``late``): the
    median the device measures on the unimpaired recording ``rec`` (its usable strides), plus
    ``margin_deg``. ``profile`` must have adaptive enabled (any target values: only the
    measurement is used); when its target has a path (``curve_deg``), the median path at the
    same points is measured too (``curve_deg``, ``curve_from_fraction``)."""
    if not profile.adaptive.enabled:
        raise ValueError("reference_target needs a profile with adaptive.enabled")
    frames, _ = recording_stream(rec)
    c = Controller(profile)
    feats = {}
    c.adaptive.listeners.append(lambda r: feats.__setitem__(r.stride, c.adaptive.features))
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
    t = profile.adaptive.target
    if t is not None and t.curve_deg is not None:
        # the same points of the target path as the profile's, measured on this walk
        path = np.array([feats[r.stride].curve_deg for r in good])
        out["curve_deg"] = [round(float(v) + margin_deg, 2) for v in np.median(path, axis=0)]
        out["curve_from_fraction"] = float(t.curve_from_fraction)
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


#: a pair is liftable when a fixed amplitude at the patient maximum keeps toe drag at or
#: below this many strides per 100 over the whole walk (the issue's target for the adaptive one)
LIFTABLE_PER_100 = 1.0


def lowest_clear_amplitude(run_at, guess_ma: float, lo_ma: float, hi_ma: float,
                           per_100: float = LIFTABLE_PER_100) -> float:
    """The lowest whole-mA amplitude in (lo_ma, hi_ma] whose walk ``run_at(ma)`` (a summary
    dict) has at most ``per_100`` toe-drag strides per 100: a bracket grown from ``guess_ma``
    (steps of 2, 4, 8 mA), then bisection. ``hi_ma`` must be clear (the caller checked) and
    ``lo_ma`` is taken as not clear (the motor threshold); toe drag is taken to fall with the
    amplitude (recruitment is monotone)."""
    def clear(ma):
        return ma >= hi_ma or run_at(ma)["toe_drag_per_100"] <= per_100

    bad, ok = float(np.floor(lo_ma)), float(hi_ma)
    g = float(min(hi_ma, max(bad + 1.0, np.round(guess_ma))))
    step = 2.0
    if clear(g):
        ok = g
        while ok - step > bad and clear(ok - step):
            ok -= step
            step *= 2.0
        bad = max(bad, ok - step)
    else:
        bad = g
        while bad + step < ok and not clear(bad + step):
            bad += step
            step *= 2.0
        ok = min(ok, bad + step)
    while ok - bad > 1.0:
        mid = float(np.floor((ok + bad) / 2.0))
        if clear(mid):
            ok = mid
        else:
            bad = mid
    return ok


def compare_on_patient(recording: str, side: str, population: str, seed: int, patient: int, minutes: float,
                       base_profile: str, adaptive: dict, margin_deg: float, max_ma: float) -> dict:
    """One patient walking ``minutes`` of ``recording`` with the adaptive profile (from the
    patient minimum = the motor threshold, rounded down) and with fixed amplitudes:

    * ``fixed_tuned``: the amplitude the adaptive one learned at minute 0 (the strides after
      it converged), as an orthotist tunes a fixed profile to the same lift;
    * ``fixed_max``: the patient maximum ``max_ma``; the pair is *liftable* when it keeps
      toe drag ≤ :data:`LIFTABLE_PER_100` per 100 strides over the whole walk;
    * ``fixed_high``: the fixed profile set high enough to avoid toe drag all walk — for a
      liftable pair the lowest whole-mA amplitude that keeps ≤ 1 per 100
      (:func:`lowest_clear_amplitude`), else the patient maximum (no lower one does better).

    The fixed runs do not depend on how the adaptive one was tuned except for the search's
    starting point. Returns plain numbers (runs on a dask worker)."""
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
    fixed_runs: dict[float, dict] = {}

    def fixed_at(ma: float) -> dict:
        ma = round(float(ma), 1)
        if ma not in fixed_runs:
            run = closed_loop_replay(walk, with_fixed_amplitude(prof, ma), p, spec.gait)
            fixed_runs[ma] = _summary(run, prof, walk.rate_hz)
        return fixed_runs[ma]

    tuned = fixed_at(tuned_ma)
    at_max = fixed_at(max_ma)
    liftable = at_max["toe_drag_per_100"] <= LIFTABLE_PER_100
    # the search starts from what the adaptive one settled at over the last quarter of the walk
    settled_ma = float(np.median([r.amplitude_ma for r in recs[-max(1, len(recs) // 4):]])) if recs else max_ma
    high_ma = lowest_clear_amplitude(fixed_at, settled_ma, lo, max_ma) if liftable else float(max_ma)
    saturated = [r for r in recs if r.reason.startswith("saturated")]
    return {"recording": recording, "patient": patient, "threshold_ma": p.threshold_charge_nc / pw,
            "saturation_ma": p.saturation_charge_nc / pw, "start_ma": lo, "target": target,
            "convergence_strides": conv, "adaptive": _summary(ad, prof, walk.rate_hz),
            "adaptive_amplitude_ma": {"minute0": tuned_ma, "max": max(r.amplitude_ma for r in recs),
                                      "last": recs[-1].amplitude_ma if recs else None},
            "frozen_strides": sum(r.status == "frozen" for r in recs),
            "saturated_strides": len(saturated),
            "liftable": liftable, "fixed_max": at_max,
            "fixed_tuned_ma": round(tuned_ma, 1), "fixed_tuned": tuned,
            "fixed_high_ma": high_ma, "fixed_high": fixed_at(high_ma),
            "fixed_runs_ma": sorted(fixed_runs), "min_fitness": float(ad.fitness.min())}
