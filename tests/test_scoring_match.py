"""The scorer's matching and the reference swings (``match_onsets``, bisected) is the plain rule of docs/scoring.md —
every onset in order takes the earliest free window that holds it, trying every window —
on hypothesis windows and onsets and on every bundled walk's real bursts (whole reports)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fescontrol.core.profile import default_profile_for, load_profile
from fescontrol.sim import scoring
from fescontrol.sim.recording import Recording
from fescontrol.sim.replay import replay
from fescontrol.sim.run import load_any
from fescontrol.sim.sources import list_bundled

pytestmark = pytest.mark.timeout(300)


def plain_match(onsets, windows):
    """The rule as written before it was bisected (the reference)."""
    match: dict[int, int] = {}
    unmatched: list[int] = []
    for k, onset in enumerate(onsets):
        hit = next((j for j, (lo, hi) in enumerate(windows) if lo <= onset < hi and j not in match), None)
        if hit is None:
            unmatched.append(k)
        else:
            match[hit] = k
    return match, unmatched


times = st.floats(-5.0, 60.0, allow_nan=False)
windows_st = st.lists(st.tuples(st.one_of(times, st.just(-math.inf)), st.floats(0.0, 1.5)),
                      max_size=40).map(lambda ws: sorted(((lo, (0.0 if lo == -math.inf else lo) + w)
                                                          for lo, w in ws), key=lambda x: (x[1], x[0])))


@settings(max_examples=300, deadline=None)
@given(windows=windows_st, onsets=st.lists(times, max_size=40))
def test_bisected_matching_is_the_plain_rule(windows, onsets):
    onsets = sorted(onsets)
    assert scoring.match_onsets(onsets, windows) == plain_match(onsets, windows)


@settings(max_examples=100, deadline=None)
@given(windows=windows_st, onsets=st.lists(times, max_size=40))
def test_bisected_matching_is_the_plain_rule_in_any_onset_order(windows, onsets):
    assert scoring.match_onsets(onsets, windows) == plain_match(onsets, windows)


@pytest.mark.parametrize("name", list_bundled())
def test_reports_identical_with_the_plain_matching(name, monkeypatch):
    for side in ("left", "right"):
        rec = load_any(name, side)
        result = replay(rec, load_profile(default_profile_for(rec.has_heel, rec.has_imu)))
        # a few extra onsets: inside swings, between them, before the first
        bursts = sorted(result.bursts_s + [(a + 0.05, b + 0.05) for a, b in result.bursts_s[::7]] + [(0.01, 0.2)])
        fast = scoring.score(rec, bursts).to_dict()
        monkeypatch.setattr(scoring, "match_onsets", plain_match)
        plain = scoring.score(rec, bursts).to_dict()
        monkeypatch.undo()
        assert repr(fast) == repr(plain)
        assert fast["swings_detected"] > 0


def plain_reference_swings(to, hs):
    """Recording.reference_swings as written before it was vectorised (the reference)."""
    swings = []
    for i, t in enumerate(to):
        nxt = to[i + 1] if i + 1 < len(to) else np.inf
        j = np.searchsorted(hs, t, side="right")
        if j < len(hs) and hs[j] < nxt:
            swings.append((float(t), float(hs[j])))
    return swings


sorted_times = st.lists(st.integers(0, 2000), unique=True, max_size=40).map(lambda v: np.array(sorted(v)) / 100.0)


@settings(max_examples=300, deadline=None)
@given(to=sorted_times, hs=sorted_times)
def test_reference_swings_are_the_plain_pairing(to, hs):
    rec = Recording(name="h", source="synthetic", side="left", rate_hz=100.0, heel_n=np.zeros(2100),
                    acc_ms2=None, gyro_dps=None, valid=np.ones(2100, bool), toe_off_s=to, heel_strike_s=hs,
                    heel_off_s=None, quiet_intervals_s=(), meta={}, unscored_intervals_s=())
    got = rec.reference_swings()
    assert got == plain_reference_swings(to, hs)
    assert all(type(x) is float for pair in got for x in pair)
