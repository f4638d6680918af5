"""Synthetic gait: determinism, exact event placement, magnitudes, non-walking segments."""
from __future__ import annotations

import numpy as np
import pytest

from fescontrol.sim.recording import GRAVITY_MS2, pitch_rate_dps
from fescontrol.sim.synthetic import (NO_NOISE, PATTERNS, GaitPattern, Noise, Sit, Stairs, Stand, Turn,
                           Walk, WeightShift, synthesize)

SCENARIO = [Stand(3), Walk(12, 105), Turn(3), Walk(10, 95, "hemiparetic"), Sit(6),
            WeightShift(6), Stairs(6), Walk(8, 120, cadence_end_spm=90), Stand(2)]


@pytest.fixture(scope="module")
def mixed():
    return synthesize(SCENARIO, rate_hz=100, seed=3)


def test_same_seed_same_recording_other_seed_differs() -> None:
    a = synthesize(SCENARIO, seed=7)
    b = synthesize(SCENARIO, seed=7)
    c = synthesize(SCENARIO, seed=8)
    for name in ("heel_n", "acc_ms2", "gyro_dps", "toe_off_s", "heel_strike_s", "heel_off_s"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.gyro_dps, c.gyro_dps)
    assert not np.array_equal(a.toe_off_s, c.toe_off_s)
    assert a.quiet_intervals_s == b.quiet_intervals_s


def test_exact_event_placement_without_jitter() -> None:
    p = PATTERNS["normal"]
    rec = synthesize([Walk(10.0, 120.0)], seed=0, noise=NO_NOISE, variability=0.0)
    stride = 1.0                                   # 120 steps/min = 60 strides/min
    hs = np.arange(10) * stride + stride - p.loading_s
    to = hs - p.swing_fraction * stride
    np.testing.assert_allclose(rec.heel_strike_s, hs, atol=1e-12)
    np.testing.assert_allclose(rec.toe_off_s, to, atol=1e-12)
    np.testing.assert_allclose(rec.heel_off_s, to - p.heel_off_lead_s, atol=1e-12)
    assert rec.quiet_intervals_s == () and rec.n_samples == 1000


def test_heel_force_zero_exactly_from_heel_off_to_heel_strike() -> None:
    exact = synthesize([Stand(1), Walk(10, 110), Stand(1)], seed=1, noise=NO_NOISE)
    rec = synthesize([Stand(1), Walk(10, 110), Stand(1)], seed=1, noise=Noise(heel_n=4.0))
    t = rec.t_s
    off = np.zeros(rec.n_samples, bool)
    for ho, hs in zip(rec.heel_off_s, rec.heel_strike_s):
        off |= (t >= ho) & (t <= hs)
    assert np.all(rec.heel_n[off] == 0.0)             # noise only where the heel is loaded
    assert np.all(exact.heel_n[~off] > 0.0)           # loaded everywhere else (incl. standing)
    stance_peaks = [rec.heel_n[(t > hs) & (t < hs + 0.3)].max() for hs in rec.heel_strike_s[:-1]]
    assert 500 < np.median(stance_peaks) < 700
    assert 300 < np.median(rec.heel_n[t < 0.9]) < 360   # standing: 0.45 × body weight


def test_pitch_rate_shape_around_events() -> None:
    rec = synthesize([Walk(10, 105)], seed=2, noise=NO_NOISE, variability=0.0)
    pr, t = pitch_rate_dps(rec), rec.t_s
    for to, hs in rec.reference_swings():
        swing = (t > to) & (t < hs)
        assert pr[swing].max() == pytest.approx(350.0, rel=0.02)
        k = np.argmax(np.where(swing, pr, -np.inf))
        assert to + 0.06 < t[k] < hs - 0.02
        dip = (t > to - 0.25) & (t < to + 0.06)
        assert pr[dip].min() == pytest.approx(-300.0, rel=0.02)
        assert abs(t[np.argmin(np.where(dip, pr, np.inf))] - (to - 0.01)) <= 0.011
        assert pr[(t >= hs) & (t < hs + 0.15)].min() < -150       # heel-strike spike
    flat = np.zeros_like(t, bool)
    for hs, ho in zip(rec.heel_strike_s[:-1], rec.heel_off_s[1:]):
        flat |= (t > hs + 0.16) & (t < ho)
    assert np.abs(pr[flat]).max() < 1e-9
    # foot angle back to 0 in flat stance: gravity only on z
    np.testing.assert_allclose(rec.acc_ms2[flat], np.tile([0, 0, GRAVITY_MS2], (flat.sum(), 1)), atol=1e-9)


def test_swing_and_stance_proportions(mixed) -> None:
    sw = np.array(mixed.reference_swings())
    stride = np.diff(sw[:, 0])
    frac = (sw[:-1, 1] - sw[:-1, 0]) / stride
    same_walk = stride < 1.5
    normal = frac[(sw[:-1, 0] > 3) & (sw[:-1, 0] < 14) & same_walk]
    hemi = frac[(sw[:-1, 0] > 18) & (sw[:-1, 0] < 27) & same_walk]
    assert len(normal) >= 8 and len(hemi) >= 6
    assert np.all(np.abs(normal - 0.38) < 0.03)
    assert np.all(np.abs(hemi - 0.30) < 0.03)
    lead = mixed.toe_off_s - mixed.heel_off_s
    assert np.all((lead > 0.0) & (lead < 0.26))


def test_hemiparetic_weak_pushoff_low_swing_peak_toe_drag() -> None:
    normal = synthesize([Walk(10, 100)], seed=0, noise=NO_NOISE)
    hemi = synthesize([Walk(10, 100, "hemiparetic")], seed=0, noise=NO_NOISE)
    def peaks(rec):
        pr, t = pitch_rate_dps(rec), rec.t_s
        return (np.median([pr[(t > a) & (t < b)].max() for a, b in rec.reference_swings()]),
                np.median([pr[(t > a - 0.2) & (t < a + 0.06)].min() for a, b in rec.reference_swings()]))
    (pk_n, dip_n), (pk_h, dip_h) = peaks(normal), peaks(hemi)
    assert pk_h < 0.4 * pk_n and dip_h > 0.4 * dip_n
    assert np.median(hemi.toe_off_s - hemi.heel_off_s) < 0.06
    assert np.median(normal.toe_off_s - normal.heel_off_s) > 0.1


def test_quiet_segments(mixed) -> None:
    kinds = [k for *_, k in mixed.quiet_intervals_s]
    assert kinds == ["standing", "turning", "sitting", "weight_shift", "standing"]
    t, heel, pr, yaw = mixed.t_s, mixed.heel_n, pitch_rate_dps(mixed), mixed.gyro_dps[:, 2]
    spans = {k: (a, b) for a, b, k in mixed.quiet_intervals_s}
    for to, hs in mixed.reference_swings():
        for a, b, _ in mixed.quiet_intervals_s:
            assert b <= to - 0.3 + 1e-9 or a >= hs + 0.3 - 1e-9
    a, b = spans["turning"]
    m = (t >= a) & (t < b)
    assert np.abs(yaw[m]).max() > 100 and np.abs(pr[m]).max() < 60 and heel[m].min() > 50
    a, b = spans["sitting"]
    mid = (t > a + 1.5) & (t < b - 1.5)
    assert heel[mid].max() < 50 and np.abs(mixed.gyro_dps[mid]).max() < 15
    a, b = spans["weight_shift"]
    m = (t >= a) & (t < b)
    assert heel[m].min() < 0.4 * heel[m].max() and heel[m].min() > 50
    stairs = [(to, hs) for to, hs in mixed.reference_swings() if 40 < to < 46]
    assert len(stairs) >= 3
    stance_heel = heel[(t > stairs[0][1]) & (t < stairs[1][0])]
    assert stance_heel.max() < 60                     # forefoot contact: heel barely loads


def test_cadence_change_within_a_walk() -> None:
    rec = synthesize([Walk(20, 120, cadence_end_spm=80)], seed=0, variability=0.0, noise=NO_NOISE)
    stride = np.diff(rec.heel_strike_s)
    assert np.all(np.diff(stride) > 0)
    assert stride[0] == pytest.approx(1.0, abs=0.02) and stride[-1] > 1.35


def test_noise_and_resampling() -> None:
    rec = synthesize([Stand(5)], seed=0, noise=Noise(gyro_dps=2.0, acc_ms2=0.05, heel_n=3.0))
    assert np.std(rec.gyro_dps[:, 0]) == pytest.approx(2.0, rel=0.1)
    assert np.mean(rec.acc_ms2[:, 2]) == pytest.approx(GRAVITY_MS2, abs=0.01)
    up = synthesize([Walk(5, 100)], seed=0).resampled(200.0)
    assert up.rate_hz == 200 and up.gyro_dps.shape == (up.n_samples, 3)


def test_bad_scenarios_are_refused() -> None:
    with pytest.raises(ValueError, match="shorter than one stride"):
        synthesize([Walk(0.8, 100)])
    with pytest.raises(ValueError, match="unknown gait pattern"):
        synthesize([Walk(5, 100, "moonwalk")])
    with pytest.raises(ValueError, match="cadence"):
        synthesize([Walk(5, 250)])
    with pytest.raises(ValueError):
        GaitPattern(swing_fraction=0.9)
    with pytest.raises(ValueError, match="empty"):
        synthesize([])


def test_named_scenarios() -> None:
    from fescontrol.sim.synthetic import SCENARIOS, named_scenario
    for name in SCENARIOS:
        rec = named_scenario(name, side="right")
        assert rec.name == f"synthetic:{name}" and rec.side == "right"
        assert len(rec.reference_swings()) >= 10
    with pytest.raises(ValueError, match="known: walk"):
        named_scenario("marathon")
