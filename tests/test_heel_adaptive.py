"""The heel detector adapts to the walker, causally, from a cold start (issue 11).

* swing floor: a sensor that keeps an offset through swing still gives heel-offs, also a
  preload above floor_max_n once flat swing plateaus show it;
* weak heels: a heel that loads only ~20 N still gives heel strikes;
* onset delay: when heel-off leads toe-off by much more than usual, onsets move later,
  learned from the walker's own strides and bounded by ``max_onset_delay_ms``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from .conftest import heel_walk, profile_with, stream
from .helpers import bursts, run_stream


def _heel_offs(c) -> list[int]:
    return [e.t_us for e in c.events if e.event == "heel_off"]


@pytest.mark.timeout(60)
def test_offset_through_swing_still_gives_heel_offs(default_profile, kernel_impl):
    heel = heel_walk(20, load_n=400.0)
    heel = np.where(heel < 1.0, 14.0, heel)          # the sensor keeps 14 N through every swing
    c, tr = run_stream(default_profile, stream(heel, np.zeros(len(heel))), kernel_impl)
    assert len(_heel_offs(c)) >= 18                 # all but the first strides (cold start)
    assert c.kernel.heel_floor == pytest.approx(14.0, abs=0.5)
    assert c.supervisor.fault is None


@pytest.mark.timeout(60)
def test_the_floor_holds_while_standing(default_profile, kernel_impl):
    heel = np.concatenate([heel_walk(5, load_n=400.0, standing_s=0.1), np.full(1000, 250.0)])
    c, tr = run_stream(default_profile, stream(heel, np.zeros(len(heel))), kernel_impl)
    assert c.kernel.heel_floor < 1.0                # standing load is not an unloaded level
    assert len(bursts(tr)) == 5                     # one burst per stride, none while standing


@pytest.mark.timeout(60)
def test_weak_heel_still_gives_heel_strikes(default_profile, kernel_impl):
    heel = heel_walk(20, load_n=18.0)               # below on_min_n (20 N): the heel barely loads
    c, _ = run_stream(default_profile, stream(heel, np.zeros(len(heel))), kernel_impl)
    strikes = [e for e in c.events if e.event == "heel_strike"]
    assert len(_heel_offs(c)) >= 18 and len(strikes) >= 18


@pytest.mark.timeout(60)
def test_onset_delay_is_learned_and_bounded(kernel_impl):
    """A slow walker: stride 1.6 s, heel unloaded 1.0 s (heel-off long before toe-off)."""
    profile = profile_with("default")
    heel = heel_walk(15, stride_s=1.6, stance_fraction=1 - 1.0 / 1.6, load_n=400.0)
    c, tr = run_stream(profile, stream(heel, np.zeros(len(heel))), kernel_impl)
    h = profile.trigger.heel
    lag_us = 1.0e6 - h.swing_fraction * 1.6e6 - h.onset_lead_ms * 1000
    assert c.kernel.heel_delay_us == pytest.approx(min(lag_us, h.max_onset_delay_ms * 1000), abs=20_000)
    # cold start: the first strides start at heel-off; later ones later by the learned delay
    b = bursts(tr)
    off_i = np.flatnonzero(np.diff((heel < 1).astype(int)) == 1) + 1          # heel-off samples
    first_lag = b[0][0] - off_i[0]
    last_lag = b[-1][0] - off_i[len(b) - 1]
    assert first_lag < 10 and (last_lag - first_lag) * 10_000 == pytest.approx(c.kernel.heel_delay_us, abs=20_000)


@pytest.mark.timeout(60)
def test_no_delay_when_disabled(kernel_impl):
    profile = profile_with("default", trigger={"heel": {"max_onset_delay_ms": 0}})
    heel = heel_walk(15, stride_s=1.6, stance_fraction=1 - 1.0 / 1.6, load_n=400.0)
    c, _ = run_stream(profile, stream(heel, np.zeros(len(heel))), kernel_impl)
    assert c.kernel.heel_delay_us == 0


@pytest.mark.timeout(120)
def test_tilt_thresholds_follow_weak_push_offs(kernel_impl):
    """A walker whose push-off (-60 deg/s) and swing (90 deg/s) stay under the fixed tilt
    thresholds: found once the detector has learned its own peaks (cold start: fixed)."""
    from fescontrol.core.profile import load_profile
    from fescontrol.sim.replay import replay
    from fescontrol.sim.scoring import score
    from fescontrol.sim.synthetic import GaitPattern, Stand, Walk, WeightShift, synthesize
    weak = GaitPattern(swing_fraction=0.32, heel_off_lead_s=0.06, heel_peak_n=400, pushoff_dip_dps=-60,
                       swing_peak_dps=90, stride_length_m=0.8, clearance_m=0.04)
    rec = synthesize([Stand(3), Walk(40, 90, weak), WeightShift(10), Stand(3)], seed=1)
    adaptive = load_profile(Path(__file__).resolve().parent.parent / "configs" / "walkaide_tilt.yaml")
    # fixed thresholds and no late onsets (tests/test_tilt_adaptive.py): the profile of issue 5
    fixed = profile_with("walkaide_tilt", trigger={"tilt": {"adapt_fraction": 0.0, "late_onset_dps": 0.0}})
    got = score(rec, replay(rec, adaptive, implementation=kernel_impl).bursts_s)
    before = score(rec, replay(rec, fixed, implementation=kernel_impl).bursts_s)
    assert before.swings_detected == 0
    # all but the cold-start strides (learn_strides) are found; nothing while standing or shifting weight
    assert got.swings_detected >= got.swings_reference - adaptive.trigger.tilt.learn_strides
    assert got.quiet_onsets["total"] == 0
    # after the cold start (found late, in the swing) at the push-off, in the onset window
    in_window = round(got.onset_in_window_fraction * got.swings_detected)
    assert in_window >= got.swings_reference - adaptive.trigger.tilt.learn_strides


@pytest.mark.timeout(60)
@pytest.mark.parametrize("flat_n, heel_offs_at_least", [(4.0, 18), (0.0, 0)])
def test_a_sensor_preload_shown_by_flat_swings_becomes_the_floor(flat_n, heel_offs_at_least, kernel_impl):
    """60 N of preload through every swing (15 % of a 400 N heel: above floor_max_n and
    floor_max_fraction): the flat swing plateau confirms it as the unloaded level. With the
    plateau rule off (floor_flat_n 0) the heel never 'unloads' and nothing triggers."""
    profile = profile_with(trigger={"heel": {"floor_flat_n": flat_n}})
    heel = heel_walk(20, load_n=400.0)
    heel = np.where(heel < 1.0, 60.0, heel)
    c, _ = run_stream(profile, stream(heel, np.zeros(len(heel))), kernel_impl)
    assert c.supervisor.fault is None
    if heel_offs_at_least:
        assert len(_heel_offs(c)) >= heel_offs_at_least      # all but the first strides (cold start)
        assert c.kernel.heel_floor == pytest.approx(60.0, abs=0.5)
    else:
        assert _heel_offs(c) == [] and c.kernel.heel_floor < 1.0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("preload_n", [0.0, 30.0, 45.0])
def test_no_onset_in_quiet_scenarios_and_every_swing_with_a_preloaded_sensor(preload_n, default_profile, kernel_impl):
    """The plateau rule must not take standing, a seated foot resting on the floor (30 N),
    weight shifting or turning on the spot for a foot in the air, whatever the preload."""
    from dataclasses import replace
    from fescontrol.sim.replay import replay
    from fescontrol.sim.scoring import score
    from fescontrol.sim.synthetic import named_scenario
    for name in ("walk", "sit", "weight_shift", "turn", "mixed"):
        plain = named_scenario(name)
        rec = replace(plain, heel_n=plain.heel_n + preload_n)
        rep = score(rec, replay(rec, default_profile, implementation=kernel_impl).bursts_s)
        assert rep.false_onsets == 0 and rep.quiet_onsets["total"] == 0, (name, preload_n)
        # the preload costs at most the first swing (cold start: it is learned from a flat swing)
        without = score(plain, replay(plain, default_profile, implementation=kernel_impl).bursts_s)
        assert rep.swings_detected >= without.swings_detected - 1, (name, preload_n, rep.swing_recall)


def _light_stances(heel: np.ndarray, strides: tuple[int, ...], level_n: float, *, rate_hz: float = 100.0,
                   standing_s: float = 1.0, stride_s: float = 1.0) -> np.ndarray:
    """``heel`` with the stance of the given strides (0-based) loading the heel only ``level_n``."""
    out = heel.copy()
    for k in strides:
        a = int((standing_s + k * stride_s) * rate_hz)
        b = a + int(0.8 * stride_s * rate_hz)            # the whole stance (its swing stays 0 N)
        out[a:b] = np.minimum(out[a:b], level_n)
    return out


@pytest.mark.timeout(60)
@pytest.mark.parametrize("light_n, heel_offs", [(6.0, 20), (0.0, 18)])
def test_a_light_heel_contact_ends_the_burst_and_the_next_swing_gets_one(light_n, heel_offs, kernel_impl):
    """Two steps that load the heel only 10 N after 400 N strides (a forefoot step): under the
    strike threshold (10 % of the peak), so without the light-contact rule the burst runs on
    through that stance to max_stim_ms and the next swing gets none; with it, the 10 N rise
    after the walker's usual unloaded time is the strike, the heel-off below 5 N the onset."""
    profile = profile_with("default", trigger={"heel": {"light_strike_n": light_n}})
    heel = _light_stances(heel_walk(20, load_n=400.0), (8, 14), 10.0)
    c, tr = run_stream(profile, stream(heel, np.zeros(len(heel))), kernel_impl)
    assert c.supervisor.fault is None
    assert len(_heel_offs(c)) == heel_offs
    assert len(bursts(tr)) == heel_offs
    longest = max(b - a for a, b in bursts(tr))
    if light_n:
        assert longest <= 80                    # 0.8 s: no burst runs on through a stance
    else:
        assert longest >= 120                   # through the light stance, ended only by max_stim_ms


@pytest.mark.timeout(60)
def test_a_bump_in_the_swing_is_not_a_light_contact(default_profile, kernel_impl):
    """A 10 N bump in the middle of every swing (a sensor knock, the heel brushing): before the
    walker's usual unloaded time, so no strike; each burst still ends at the real heel strike."""
    heel = heel_walk(20, load_n=400.0)
    in_swing = heel < 1.0
    starts = np.flatnonzero(np.diff(in_swing.astype(int)) == 1) + 1
    for s in starts:
        heel[s + 12:s + 18] = 10.0                              # 120-180 ms into a 380 ms swing
    c, tr = run_stream(default_profile, stream(heel, np.zeros(len(heel))), kernel_impl)
    strikes = [e.t_us for e in c.events if e.event == "heel_strike"]
    assert len(_heel_offs(c)) == len(strikes) == 20
    assert len(bursts(tr)) == 20


@pytest.mark.timeout(120)
@pytest.mark.parametrize("scale", [0.3, 0.4, 0.5, 0.6])
def test_a_low_reading_insole_takes_no_weight_shift_for_a_swing(scale, default_profile, kernel_impl):
    """Another insole calibration or a light walker: every heel force × ``scale`` (the stress
    table of docs/detection.md). A weight shift's minimum (28 N of a 330 N shift as synthesised)
    then falls under the absolute floor_max_n (20 N); the walking-peak bound (floor_walk_fraction,
    5 % of the learned walking stance peak) keeps it from becoming the unloaded level, so the shift
    gives no onset. Without the bound (0) the same shifts give 5-6 onsets; walking is unchanged."""
    from dataclasses import replace
    from fescontrol.sim.replay import replay
    from fescontrol.sim.scoring import score
    from fescontrol.sim.synthetic import named_scenario
    off = profile_with(trigger={"heel": {"floor_walk_fraction": 0.0}})
    plain = named_scenario("weight_shift")
    rec = replace(plain, heel_n=plain.heel_n * scale)
    got = score(rec, replay(rec, default_profile, implementation=kernel_impl).bursts_s)
    before = score(rec, replay(rec, off, implementation=kernel_impl).bursts_s)
    assert before.quiet_onsets["total"] >= 4          # the failure the bound fixes
    assert got.quiet_onsets["total"] == 0 and got.false_onsets == 0
    assert got.swings_detected == got.swings_reference
    for name in ("walk", "mixed"):
        plain = named_scenario(name)
        rec = replace(plain, heel_n=plain.heel_n * scale)
        rep = score(rec, replay(rec, default_profile, implementation=kernel_impl).bursts_s)
        assert rep.swings_detected == rep.swings_reference and rep.quiet_onsets["total"] == 0, name


@pytest.mark.timeout(60)
def test_the_walking_peak_is_learned_from_strides_and_bounds_the_floor(kernel_impl):
    """The walking stance peak is learned at the heel strikes of real strides (cold start: none;
    the floor is bounded by floor_max_n alone). Then ten heel dips to 10 N of a 150 N heel (6.7 %:
    under floor_max_n and floor_max_fraction) are not an unloaded level with floor_walk_fraction
    0.05 (7.5 N): the floor holds at 0 N and they give no heel-off; with the bound off they become
    the floor and the dips are heel-offs. (The flat-plateau rule is off here: it is the other
    path to a raised floor, for a constant sensor preload.)"""
    walk = heel_walk(10, load_n=150.0)
    dips = np.where(heel_walk(10, load_n=150.0, standing_s=0.0) < 1.0, 10.0, 150.0)
    heel = np.concatenate([walk, dips, np.full(100, 150.0)])
    counts = {}
    for fraction in (0.05, 0.0):
        profile = profile_with(trigger={"heel": {"floor_walk_fraction": fraction, "floor_flat_n": 0.0}})
        c, _ = run_stream(profile, stream(heel, np.zeros(len(heel))), kernel_impl)
        assert c.supervisor.fault is None
        assert c.kernel.heel_walk_peak == pytest.approx(150.0, rel=0.05)
        counts[fraction] = len(_heel_offs(c))
        if fraction:
            assert c.kernel.heel_floor < 1.0
    assert counts[0.05] <= 10                  # the walk's strides only
    assert counts[0.0] >= counts[0.05] + 7     # and (all but the first dips, the floor window) the dips


def test_floor_walk_fraction_is_bounded():
    from fescontrol.core.profile import ProfileError, profile_from_dict
    data = profile_with().model_dump(mode="json")
    for bad in (-0.01, 0.25):
        bad_data = {**data, "trigger": {**data["trigger"], "heel": {**data["trigger"]["heel"],
                                                                    "floor_walk_fraction": bad}}}
        with pytest.raises(ProfileError, match="floor_walk_fraction"):
            profile_from_dict(bad_data, "bad")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["x0.35", "x0.5", "x0.6", "quantised 10 N"])
def test_a_seated_foot_is_no_swing_plateau_on_a_low_or_coarse_sensor(how, default_profile, kernel_impl):
    """A seated foot resting on the floor (25-35 N as synthesised) reads flat within floor_flat_n
    on an insole reading × 0.35-0.6, or rounded to 10 N steps (a coarse ADC): a plateau. Such a
    plateau used to count as a swing as soon as the force left the band upwards (1-2 onsets while
    seated); it now counts only when the heel then loads past the strike threshold with the plateau
    as the floor (a heel strike), within max_stim_ms. Walking is unchanged (the preloaded sensor:
    test_no_onset_in_quiet_scenarios_and_every_swing_with_a_preloaded_sensor)."""
    from dataclasses import replace
    from fescontrol.sim.replay import replay
    from fescontrol.sim.scoring import score
    from fescontrol.sim.synthetic import named_scenario

    def stressed(h):
        return 10.0 * np.round(h / 10.0) if how.startswith("quantised") else h * float(how[1:])
    for name in ("sit", "mixed", "walk"):
        plain = named_scenario(name)
        rec = replace(plain, heel_n=stressed(plain.heel_n))
        rep = score(rec, replay(rec, default_profile, implementation=kernel_impl).bursts_s)
        assert rep.quiet_onsets["total"] == 0 and rep.false_onsets == 0, (name, how)
        assert rep.swings_detected == rep.swings_reference, (name, how)
