"""The scorer's statistics computed in Python (``_stats``, ``_median_of``, the in-window
fraction) give numpy's figures bit for bit — numpy.percentile (method "linear"), numpy.median,
numpy.mean of a boolean mask — on hypothesis value lists (duplicates, zeros of both signs,
non-finite values, lists around the size where numpy takes over) and in whole reports."""
from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fescontrol.sim import scoring

pytestmark = [pytest.mark.timeout(300), pytest.mark.filterwarnings("ignore::RuntimeWarning")]


def numpy_stats(values, absolute_p95=True):
    """``_stats`` as it was written with numpy (the reference)."""
    v = np.asarray(values, float)
    if v.size == 0:
        return {"median": math.nan, "iqr": math.nan, "p95": math.nan, "n": 0}
    q25, q50, q75 = np.percentile(v, [25, 50, 75])
    p95 = np.percentile(np.abs(v) if absolute_p95 else v, 95)
    return {"median": float(q50), "iqr": float(q75 - q25), "p95": float(p95), "n": int(v.size)}


def bits(x):
    """Equality of the float's bits (signed zeros differ, NaN equals NaN)."""
    return struct.pack("<d", x) if isinstance(x, float) else x


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(bits(a[k]) == bits(b[k]) for k in a)


finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
few = st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, 2.5, 1e-300, 123.456, -20.0, 7.0])
values_st = st.one_of(
    st.lists(finite, max_size=60),
    st.lists(few, max_size=40),                                # many ties and zeros
    st.lists(st.one_of(finite, st.just(math.nan), st.just(math.inf), st.just(-math.inf)), max_size=20),
    st.lists(st.integers(-2000, 2000).map(lambda i: i / 8), min_size=990, max_size=1010),  # around _NUMPY_FROM
)


@settings(max_examples=400, deadline=None)
@given(values_st, st.booleans())
def test_stats_equal_numpy_bit_for_bit(values, absolute):
    assert same(scoring._stats(values, absolute_p95=absolute), numpy_stats(values, absolute_p95=absolute))
    # the pooled paths pass numpy scalars (a sweep's compact reports hold float64 arrays)
    arr = np.asarray(values, float)
    assert same(scoring._stats(list(arr), absolute_p95=absolute), numpy_stats(values, absolute_p95=absolute))


@settings(max_examples=400, deadline=None)
@given(values_st.filter(len))
def test_median_equals_numpy_bit_for_bit(values):
    assert bits(scoring._median_of(values)) == bits(float(np.median(values)))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(finite, st.just(-300.0), st.just(20.0), st.just(math.nan)), min_size=1, max_size=80))
def test_in_window_fraction_equals_numpy_mean(errors):
    lo, hi = scoring.ScoringRules().in_window_ms
    err = np.asarray(errors, float)
    rep = scoring._report(name="x", n_ref=len(errors), detected=len(errors), false_times=[], quiet={"total": 0},
                          errors=errors, after=[], coverage=[], faults=[], bursts=len(errors), ignored=0,
                          excluded=0, scored_s=60.0, rules=scoring.ScoringRules(), recordings=1)
    assert bits(rep.onset_in_window_fraction) == bits(float(np.mean((err >= lo) & (err <= hi))))


def test_python_path_taken_for_small_finite_lists():
    """The fast path is used where it matters (a foot's ~100 swings) and refused where numpy's
    own order of equal zeros decides a sign, or where values are not finite."""
    assert scoring._exact_in_python([3.0, 1.0, 2.0]) == [1.0, 2.0, 3.0]
    assert scoring._exact_in_python([0.0, 0.0, 1.0]) == [0.0, 0.0, 1.0]
    assert scoring._exact_in_python([0.0, -0.0, 1.0]) is None
    assert scoring._exact_in_python([1.0, math.nan]) is None
    assert scoring._exact_in_python([1.0, math.inf]) is None
    assert scoring._exact_in_python([1.0] * scoring._NUMPY_FROM) is None


def _report(errors, after, coverage, quiet):
    return scoring._report(name="r", n_ref=len(errors), detected=len(errors), false_times=[], quiet=quiet,
                           errors=errors, after=after, coverage=coverage, faults=[], bursts=len(errors),
                           ignored=0, excluded=0, scored_s=60.0, rules=scoring.ScoringRules(), recordings=1)


_SWING_VALUES = st.lists(st.floats(-900, 900, allow_nan=False).map(lambda x: round(x, 3)), max_size=400)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(_SWING_VALUES, st.integers(0, 3), st.booleans()), min_size=1, max_size=6))
def test_pooled_statistics_equal_pooled_bit_for_bit(feet):
    """The sweep's per-point statistics (arrays joined) are pooled()'s, on either side of the
    size where numpy takes over, with the per-swing values as tuples or as float64 arrays
    (sim.sweep keeps compact reports)."""
    from dataclasses import replace
    reports = []
    for k, (values, quiet, compact) in enumerate(feet):
        rep = _report(values * (1 + k), [abs(v) for v in values], [min(1.0, abs(v) / 900) for v in values],
                      {kind: quiet for kind in scoring.QUIET_KINDS})
        if compact:
            rep = replace(rep, onset_errors_ms_all=np.asarray(rep.onset_errors_ms_all, float),
                          coverage_all=np.asarray(rep.coverage_all, float),
                          after_heel_strike_ms_all=np.asarray(rep.after_heel_strike_ms_all, float))
        reports.append(rep)
    ref = scoring.pooled(reports)
    got = scoring.pooled_statistics(reports)
    assert same(got["onset_error_ms"], ref.onset_error_ms)
    assert same(got["stim_after_heel_strike_ms"], ref.stim_after_heel_strike_ms)
    assert bits(got["swing_coverage_median"]) == bits(ref.swing_coverage_median)
    assert bits(got["onset_in_window_fraction"]) == bits(ref.onset_in_window_fraction)
    assert got["quiet_onsets"] == ref.quiet_onsets
    # what fes sweep's client computes from its workers' FootBlocks: the values joined, quiet added up
    joined = [np.concatenate([np.asarray(getattr(r, name), float) for r in reports])
              for name in ("onset_errors_ms_all", "after_heel_strike_ms_all", "coverage_all")]
    quiet = {kind: sum(r.quiet_onsets[kind] for r in reports) for kind in scoring.QUIET_KINDS}
    of_values = scoring.pooled_statistics_of_values(*joined, quiet)
    assert list(of_values) == list(got)
    assert same(of_values["onset_error_ms"], ref.onset_error_ms)
    assert same(of_values["stim_after_heel_strike_ms"], ref.stim_after_heel_strike_ms)
    assert bits(of_values["swing_coverage_median"]) == bits(ref.swing_coverage_median)
    assert bits(of_values["onset_in_window_fraction"]) == bits(ref.onset_in_window_fraction)
    assert of_values["quiet_onsets"] == ref.quiet_onsets
    with pytest.raises(ValueError):
        scoring.pooled_statistics([])


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(st.tuples(st.floats(-1, 130, allow_nan=False), st.floats(0, 1.5)),
                         max_size=120), min_size=1, max_size=5))
def test_one_scoring_setup_serves_every_point(burst_sets):
    """A sweep prepares the swings of a recording once and scores every point with them: the
    reports are those of scoring each burst set on its own (the setup is not changed by a
    score), on a real walk with partial swings at both ends."""
    from fescontrol.sim.run import load_any
    rec = load_any("physionet:GaCo01", "left")
    setup = scoring.prepare_scoring(rec)
    for raw in burst_sets:
        bursts = [(a, a + d) for a, d in raw]
        assert repr(scoring.score(rec, bursts, setup=setup).to_dict()) == repr(scoring.score(rec, bursts).to_dict())
    assert setup.scored_duration_s == scoring.prepare_scoring(rec).scored_duration_s
    with pytest.raises(ValueError, match="another recording or other rules"):
        scoring.score(load_any("physionet:GaCo01", "right"), [], setup=setup)
    with pytest.raises(ValueError, match="another recording or other rules"):
        scoring.score(rec, [], rules=scoring.ScoringRules(onset_window_before_s=0.5), setup=setup)
