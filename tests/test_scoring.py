"""Burst-to-swing scoring on hand-made recordings (rules: docs/scoring.md)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from fescontrol.sim.recording import Recording
from fescontrol.sim.scoring import DetectionReport, ScoringRules, format_table, pooled, score

SWINGS = [(2.0 + 1.2 * k, 2.45 + 1.2 * k) for k in range(10)]      # 2.0 .. 13.25 s
REQUIRED_KEYS = ("swings_reference", "swings_detected", "swing_recall", "swing_precision",
                 "false_onsets", "false_onsets_per_min", "onset_error_ms",
                 "onset_in_window_fraction", "swing_coverage_median",
                 "stim_after_heel_strike_ms", "quiet_onsets", "faults")


def make_rec(swings=SWINGS, duration_s=20.0, quiet=((0.0, 1.5, "standing"), (15.0, 20.0, "standing")),
             unscored=(), invalid=(), toe_off_extra=(), name="hand") -> Recording:
    n = int(duration_s * 100)
    valid = np.ones(n, bool)
    for a, b in invalid:
        valid[int(a * 100):int(b * 100)] = False
    to = sorted([s[0] for s in swings] + list(toe_off_extra))
    return Recording(name=name, source="synthetic", side="left", rate_hz=100.0,
                     heel_n=np.zeros(n), acc_ms2=None, gyro_dps=None, valid=valid,
                     toe_off_s=np.array(to), heel_strike_s=np.array([s[1] for s in swings]),
                     heel_off_s=None, quiet_intervals_s=quiet, meta={},
                     unscored_intervals_s=unscored)


def bursts_for(swings, onset_ms=-100.0, after_hs_ms=150.0):
    return [(to + onset_ms / 1000, hs + after_hs_ms / 1000) for to, hs in swings]


def test_perfect_bursts() -> None:
    rep = score(make_rec(), bursts_for(SWINGS))
    for key in REQUIRED_KEYS:
        assert key in rep.keys()
    assert rep["swings_reference"] == rep["swings_detected"] == 10
    assert rep.swing_recall == 1.0 and rep.swing_precision == 1.0
    assert rep.false_onsets == 0 and rep.false_onsets_per_min == 0.0
    assert rep.onset_error_ms["median"] == pytest.approx(-100.0)
    assert rep.onset_error_ms["iqr"] == pytest.approx(0.0, abs=1e-9)
    assert rep.onset_error_ms["p95"] == pytest.approx(100.0)       # of |error|
    assert rep.onset_in_window_fraction == 1.0
    assert rep.swing_coverage_median == pytest.approx(1.0)
    assert rep.stim_after_heel_strike_ms["median"] == pytest.approx(150.0)
    assert rep.quiet_onsets["total"] == 0 and rep.faults == []
    assert set(rep.to_dict()) >= set(REQUIRED_KEYS)


def test_missing_swing_lowers_recall_only() -> None:
    bursts = bursts_for(SWINGS)
    del bursts[4]
    rep = score(make_rec(), bursts)
    assert rep.swings_detected == 9 and rep.swing_recall == pytest.approx(0.9)
    assert rep.swing_precision == 1.0 and rep.false_onsets == 0
    assert sorted(rep.coverage_all)[0] == 0.0


def test_extra_burst_while_standing_is_a_quiet_false_onset() -> None:
    rep = score(make_rec(), bursts_for(SWINGS) + [(16.0, 16.5)])
    assert rep.false_onsets == 1 and rep.quiet_onsets == {
        "standing": 1, "turning": 0, "sitting": 0, "weight_shift": 0, "total": 1}
    assert rep.swing_precision == pytest.approx(10 / 11) and rep.swing_recall == 1.0
    assert rep.false_onsets_per_min == pytest.approx(1 / (20 / 60))


def test_false_onset_outside_quiet_is_not_a_quiet_onset() -> None:
    rep = score(make_rec(), bursts_for(SWINGS) + [(14.0, 14.2)])
    assert rep.false_onsets == 1 and rep.quiet_onsets["total"] == 0


def test_onset_error_sign_and_timely_window() -> None:
    late = score(make_rec(), bursts_for(SWINGS, onset_ms=+50))
    assert late.onset_error_ms["median"] == pytest.approx(50.0)
    assert late.onset_in_window_fraction == 0.0          # +50 ms is after the +20 ms limit
    early = score(make_rec(), bursts_for(SWINGS, onset_ms=-250))
    assert early.onset_error_ms["median"] == pytest.approx(-250.0)
    assert early.onset_in_window_fraction == 1.0
    too_early = score(make_rec(), bursts_for(SWINGS, onset_ms=-450))
    assert too_early.swing_recall == 1.0 and too_early.onset_in_window_fraction == 0.0
    mixed = bursts_for(SWINGS[:5], onset_ms=-100) + bursts_for(SWINGS[5:], onset_ms=+10)
    rep = score(make_rec(), mixed)
    assert rep.onset_error_ms["median"] == pytest.approx(-45.0)
    assert rep.onset_error_ms["iqr"] == pytest.approx(110.0)


def test_match_window_edges() -> None:
    to, hs = SWINGS[0]
    rep = score(make_rec(swings=[SWINGS[0]]), [(to - 0.6, hs)])        # first moment allowed
    assert rep.swings_detected == 1
    rep = score(make_rec(swings=[SWINGS[0]]), [(to - 0.61, hs)])       # just too early
    assert rep.swings_detected == 0 and rep.false_onsets == 1
    rep = score(make_rec(swings=[SWINGS[0]]), [(hs, hs + 0.2)])        # at heel strike: too late
    assert rep.swings_detected == 0 and rep.false_onsets == 1


def test_one_to_one_greedy_in_time() -> None:
    to, hs = SWINGS[0]
    rep = score(make_rec(), [(to - 0.1, to), (to + 0.1, hs)] + bursts_for(SWINGS[1:]))
    assert rep.swings_detected == 10 and rep.false_onsets == 1         # the double trigger
    assert rep.onset_error_ms["n"] == 10 and min(rep.onset_errors_ms_all) == pytest.approx(-100)
    # a burst in the overlap of two windows goes to the earlier unmatched swing
    close = [(2.0, 2.4), (2.9, 3.3)]            # window of swing 2 starts at 2.3 s
    rep = score(make_rec(swings=close, quiet=()), [(2.35, 2.5), (2.38, 3.4)])
    assert rep.swings_detected == 2 and sorted(np.round(rep.onset_errors_ms_all)) == [-520.0, 350.0]


def test_coverage_and_stim_after_heel_strike() -> None:
    bursts = [(to, to + 0.5 * (hs - to)) for to, hs in SWINGS]        # half the swing, stops early
    rep = score(make_rec(), bursts)
    assert rep.swing_coverage_median == pytest.approx(0.5, abs=0.01)
    assert rep.stim_after_heel_strike_ms["median"] == 0.0
    rep = score(make_rec(), bursts_for(SWINGS, after_hs_ms=300))
    assert rep.stim_after_heel_strike_ms["p95"] == pytest.approx(300.0)


def test_unscored_invalid_and_partial_swings_are_ignored() -> None:
    rec = make_rec(unscored=((14.0, 15.0),), invalid=((5.4, 5.5),), toe_off_extra=(19.8,))
    # swing 3 is (5.6, 6.05): the 0.1 s gap at 5.4 s is within toe_off - 0.3 s -> excluded
    assert rec.reference_swings()[-1] == SWINGS[-1]
    bursts = bursts_for(SWINGS) + [(14.5, 14.8), (19.7, 20.0)]
    rep = score(rec, bursts)
    assert rep.swings_excluded == 2                      # the gap swing and the cut-off one
    assert rep.swings_reference == 9 and rep.swings_detected == 9
    assert rep.false_onsets == 0 and rep.ignored_onsets == 3
    assert rep.scored_duration_s == pytest.approx(19.0)
    strict = score(rec, bursts, rules=ScoringRules(max_invalid_run_s=0.2))
    assert strict.swings_reference == 10


def test_an_onset_in_the_last_match_window_of_the_file_is_not_scored_unless_quiet() -> None:
    # the walk goes on past the file's end: the toe-off an onset 0.5 s before the end would
    # match may lie after it (docs/scoring.md rule 5); 0.7 s before the end it is false
    rec = make_rec(quiet=((0.0, 1.5, "standing"),))
    rep = score(rec, bursts_for(SWINGS) + [(19.5, 19.9)])
    assert rep.false_onsets == 0 and rep.ignored_onsets == 1 and rep.swing_precision == 1.0
    assert score(rec, bursts_for(SWINGS) + [(19.3, 19.9)]).false_onsets == 1
    # standing until the end: the reference does vouch for that, the onset stays false
    rep = score(make_rec(), bursts_for(SWINGS) + [(19.5, 19.9)])
    assert rep.false_onsets == 1 and rep.quiet_onsets["standing"] == 1


def test_a_swing_within_the_first_match_window_of_the_file_is_not_scored() -> None:
    # recorded already walking: the stance before a toe-off at 0.5 s is not in the file, so no
    # heel-off could be seen (docs/scoring.md rule 5); a toe-off at 0.7 s has its stance
    first = [(0.5, 0.95)] + SWINGS
    rec = make_rec(swings=first, quiet=())
    missed = score(rec, bursts_for(SWINGS))
    assert missed.swings_excluded == 1 and missed.swings_reference == 10 and missed.swing_recall == 1.0
    hit = score(rec, bursts_for(first))
    assert hit.swings_reference == 10 and hit.ignored_onsets == 1 and hit.false_onsets == 0
    later = [(0.7, 1.15)] + SWINGS
    scored = score(make_rec(swings=later, quiet=()), bursts_for(SWINGS))
    assert scored.swings_excluded == 0 and scored.swings_reference == 11 and scored.swings_detected == 10


def test_faults_passed_through_and_pooling() -> None:
    a = score(make_rec(name="a"), bursts_for(SWINGS), faults=["SENSOR_STALE at 3.2 s"])
    b = score(make_rec(name="b"), bursts_for(SWINGS[:5], onset_ms=+10) + [(16.0, 16.2)])
    both = pooled([a, b])
    assert both.faults == ["SENSOR_STALE at 3.2 s"] and both.recordings == 2
    assert both.swings_reference == 20 and both.swings_detected == 15
    assert both.swing_recall == pytest.approx(0.75)
    assert both.swing_precision == pytest.approx(15 / 16)
    assert both.false_onsets_per_min == pytest.approx(1 / (40 / 60))
    assert both.onset_error_ms["median"] == pytest.approx(-100.0)
    assert both.quiet_onsets["standing"] == 1


def test_nothing_to_score_gives_nan_not_errors() -> None:
    rep = score(make_rec(swings=[], quiet=()), [])
    assert rep.swings_reference == 0 and math.isnan(rep.swing_recall)
    assert math.isnan(rep.swing_precision) and math.isnan(rep.onset_error_ms["median"])
    with pytest.raises(ValueError):
        score(make_rec(), [(3.0, 2.0)])
    with pytest.raises(ValueError):
        pooled([])


def test_format_table() -> None:
    a = score(make_rec(name="walk-a"), bursts_for(SWINGS))
    b = score(make_rec(name="walk-b"), bursts_for(SWINGS[:8]))
    one = format_table(a)
    assert "walk-a left" in one and "recall" in one and "pooled" not in one
    text = format_table([a, b])
    lines = text.splitlines()
    assert lines[-1].startswith("pooled") and "0.900" in lines[-1]
    assert len({len(line) for line in lines}) == 1      # fixed width
    assert isinstance(a, DetectionReport)
